#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/download_progress.h"
#include "core/atomic_file.h"
#include "models/keras_weights.h"

static const char usage[] =
    "Usage: kerasc train CONFIG [options]\n"
    "\n"
    "Trains the model described in CONFIG (a YAML model file) with Keras-style\n"
    "progress, and writes DIR/history.csv, DIR/last.safetensors and\n"
    "DIR/best.safetensors (best by val_loss, or loss without validation data).\n"
    "\n"
    "  --epochs N            override fit.epochs\n"
    "  --batch-size N        override fit.batch_size\n"
    "  --steps-per-epoch N   override fit.steps_per_epoch\n"
    "  --seed N              override fit.seed\n"
    "  --threads N           compute threads (default: all cores)\n"
    "  --output DIR          where to write (default: runs/<model name>)\n"
    "  --verbose 0|1|2       override fit.verbose\n"
    "  --backend NAME        where to compute: cpu (default), reference, ...\n"
    "                        (kerasc --list-devices shows what this build has)\n"
    "  --device N            the backend's device (default: $KERASC_DEVICE, else 0)\n"
    "  --offline             never download a dataset (also KERASC_OFFLINE=1); without\n"
    "                        it, a Keras dataset found nowhere is downloaded into\n"
    "                        $KERAS_HOME/datasets (default ~/.keras/datasets)\n"
    "  --weights FILE        start from these weights instead of the initializers\n"
    "                        (overrides fit.initial_weights): a kerasc checkpoint\n"
    "                        (its weights only), a Keras .keras, .weights.h5 or .h5\n"
    "  --resume CKPT         continue a run from a checkpoint it wrote (weights, optimizer,\n"
    "                        position in the data, callback state): the result is the\n"
    "                        same as a run that never stopped\n"
    "  --log-json FILE       append one JSON line per epoch to FILE\n"
    "  --log-json-every N    ... and one every N training steps\n"
    "  -h, --help            show this help\n"
    "\n"
    "Ctrl-C (or SIGTERM) finishes the current step, writes DIR/last.safetensors and\n"
    "exits with status 130; a second Ctrl-C stops at once. When the progress output\n"
    "(standard output, --log-json FILE) cannot be written, training stops the same\n"
    "way and exits with status 1. Every place the run writes is checked before it\n"
    "starts.\n";

enum { O_RESUME = 300, O_LOG_JSON, O_LOG_EVERY, O_OFFLINE, O_WEIGHTS };

static void print_logs(const char *title, const kc_logs *l) {
    printf("%s", title);
    for (int i = 0; i < l->n; i++)
        printf(" - %s: %.4f", l->keys[i], l->vals[i]);
    printf("\n");
}

typedef struct train_args {
    kc_run_opts o;
    long long verbose, log_every;
    const char *resume, *log_json, *config, *weights;
    int offline;
} train_args;

/* Returns 0, -1 after --help, or the exit status of a usage error. */
static int parse_args(int argc, char **argv, train_args *a) {
    static const struct option opts[] = {{"epochs", required_argument, 0, KC_OPT_EPOCHS},
                                         {"batch-size", required_argument, 0, KC_OPT_BATCH},
                                         {"steps-per-epoch", required_argument, 0, KC_OPT_STEPS},
                                         {"seed", required_argument, 0, KC_OPT_SEED},
                                         {"threads", required_argument, 0, KC_OPT_THREADS},
                                         {"output", required_argument, 0, KC_OPT_OUTPUT},
                                         {"verbose", required_argument, 0, KC_OPT_VERBOSE},
                                         {"backend", required_argument, 0, KC_OPT_BACKEND},
                                         {"device", required_argument, 0, KC_OPT_DEVICE},
                                         {"resume", required_argument, 0, O_RESUME},
                                         {"log-json", required_argument, 0, O_LOG_JSON},
                                         {"log-json-every", required_argument, 0, O_LOG_EVERY},
                                         {"offline", no_argument, 0, O_OFFLINE},
                                         {"weights", required_argument, 0, O_WEIGHTS},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    kc_cli_run_opts_init(&a->o);
    a->verbose = -1;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return -1;
        }
        if (c == '?' || c == ':')
            return kc_cli_usage_error("train", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        if (c == O_OFFLINE)
            a->offline = 1;
        else if (c == O_RESUME)
            a->resume = optarg;
        else if (c == O_WEIGHTS)
            a->weights = optarg;
        else if (c == O_LOG_JSON)
            a->log_json = optarg;
        else if (c == O_LOG_EVERY) {
            if (kc_cli_parse_count("train", "--log-json-every", optarg, 1, &a->log_every)) return 2;
        } else if (kc_cli_parse_run_opt("train", c, optarg, &a->o, &a->verbose))
            return 2;
    }
    if (a->log_every && !a->log_json)
        return kc_cli_usage_error("train", "--log-json-every needs --log-json FILE");
    if (optind != argc - 1) return kc_cli_usage_error("train", "expected one CONFIG file");
    if (kc_cli_run_opts_finish("train", &a->o)) return 2;
    a->config = argv[optind];
    kc_cli_download_setup(a->offline);
    return 0;
}

/* Every place the run writes, checked before anything is loaded or
 * trained: the run directory (made when missing, when first written), the
 * files fit writes there, the JSON log and the callbacks' files. Stale
 * temporaries that killed runs left beside those files are removed.
 * Status 1 for the command line's locations, 2 for a wrong path in the
 * model file. */
static int check_outputs(kc_config *cfg, const train_args *a, const char *out_dir, kc_error *e) {
    static const char *const files[] = {"history.csv", "last.safetensors", "best.safetensors"};
    int rc = kc_check_dir_writable(out_dir, "run directory", 1, e);
    for (size_t i = 0; !rc && i < sizeof files / sizeof files[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", out_dir, files[i]);
        if (!(rc = kc_check_file_writable(path, "run file", 0, 1, e))) kc_atomic_remove_stale(path);
    }
    if (!rc && a->log_json) rc = kc_check_file_writable(a->log_json, "--log-json file", 1, 0, e);
    if (rc) return kc_cli_output_failure(rc, e);
    kc_callbacks *cbs = NULL;
    if (!(rc = kc_callbacks_parse(cfg->fit.callbacks, &cbs, e)))
        rc = kc_callbacks_check_outputs(cbs, out_dir, e);
    kc_callbacks_free(cbs);
    return rc;
}

/* The progress output failed (o): said with what became of the run, whose
 * state is on disk either way. Returns the exit status. */
static int output_failed(int fit_rc, const kc_error *e, const kc_error *o, const char *out_dir) {
    if (fit_rc == KC_EINTERRUPTED && !kc_cli_interrupted()) {
        fprintf(stderr,
                "kerasc train: %s; training stopped after saving its state (continue with "
                "--resume %s/last.safetensors)\n",
                o->msg, out_dir);
        return 1;
    }
    if (fit_rc == KC_OK) {
        fprintf(stderr, "kerasc train: %s (training completed and its files are saved)\n", o->msg);
        return 1;
    }
    int status = kc_cli_report("train", e);
    fprintf(stderr, "kerasc train: %s\n", o->msg);
    return status;
}

/* fit, then the test data's figures when there is test data. A failed
 * write of the progress output stops training after its state is saved
 * (cli/progress_hooks.c), and the exit status is 1. */
static int fit_and_test(kc_session *s, const char *out_dir, kc_cli_progress *p, int vb,
                        kc_error *e) {
    kc_hooks h = {0};
    kc_cli_progress_hooks(p, &h);
    kc_cli_signals_install();
    int rc = kc_fit(s, out_dir, &h, e);
    kc_error o = {0};
    if (kc_cli_progress_output_error(p, &o)) return output_failed(rc, e, &o, out_dir);
    if (rc) return kc_cli_report("train", e);
    if (!s->has_test) return 0;
    kc_logs tl;
    if (kc_evaluate_split(s, KC_SPLIT_TEST, NULL, &tl, e)) return kc_cli_report("train", e);
    if (vb) print_logs("Test", &tl);
    return 0;
}

/* The session (resumed from a checkpoint when asked), progress, and the run. */
static int train(kc_config *cfg, const train_args *a, const char *out_dir, int vb, kc_error *e) {
    if (check_outputs(cfg, a, out_dir, e)) return kc_cli_report("train", e);
    kc_cli_warn_mask_dropped("train", cfg);
    kc_session s;
    int need = KC_NEED_TRAIN | (cfg->data.dataset || cfg->data.has_test ? KC_NEED_TEST : 0);
    int status = 0;
    /* a resumed run has its weights in the checkpoint */
    const char *initial = a->resume ? NULL : a->weights ? a->weights : cfg->fit.initial_weights;
    kc_run_opts o = a->o;
    o.loads_weights = a->resume || initial;
    if (kc_session_open(&s, cfg, &o, need, 1, e) ||
        (a->resume && kc_checkpoint_load(&s, a->resume, e)) ||
        (initial && kc_weights_load(&s, initial, e))) {
        status = kc_cli_report("train", e);
        kc_session_close(&s);
        return status;
    }
    if (a->resume && s.epoch >= cfg->fit.epochs)
        fprintf(stderr,
                "kerasc train: %s already completed %lld of %lld epochs; nothing to train (raise "
                "--epochs)\n",
                a->resume, (long long)s.epoch, cfg->fit.epochs);
    kc_cli_progress *p = kc_cli_progress_new(vb, 1);
    if (!p)
        status = kc_cli_report("train", &(kc_error){KC_ERUNTIME, "out of memory"});
    else if (a->log_json && kc_cli_progress_log_json(p, a->log_json, a->log_every, e))
        status = kc_cli_report("train", e);
    else
        status = fit_and_test(&s, out_dir, p, vb, e);
    kc_cli_progress_free(p);
    kc_session_close(&s);
    return status;
}

int kc_cmd_train(int argc, char **argv) {
    train_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    kc_error e = {0};
    kc_config *cfg;
    int is_ckpt;
    if (kc_cli_load_config(a.config, &cfg, &is_ckpt, &e)) return kc_cli_report("train", &e);
    if (a.o.epochs) cfg->fit.epochs = a.o.epochs;
    if (a.o.steps_per_epoch) cfg->fit.steps_per_epoch = a.o.steps_per_epoch;
    if (a.verbose >= 0) cfg->fit.verbose = (int)a.verbose;
    char out_dir[4096];
    if (a.o.output_dir)
        snprintf(out_dir, sizeof out_dir, "%s", a.o.output_dir);
    else
        snprintf(out_dir, sizeof out_dir, "runs/%s", cfg->run_name);
    int status = train(cfg, &a, out_dir, kc_cli_verbose(cfg->fit.verbose), &e);
    kc_config_free(cfg);
    return status; /* kc_cli_finish checks standard output */
}
