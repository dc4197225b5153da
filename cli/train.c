#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"

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
    "  --backend NAME        cpu (default) or reference\n"
    "  --resume CKPT         continue a run from a checkpoint it wrote (weights, optimizer,\n"
    "                        position in the data, callback state): the result is the\n"
    "                        same as a run that never stopped\n"
    "  --log-json FILE       append one JSON line per epoch to FILE\n"
    "  --log-json-every N    ... and one every N training steps\n"
    "  -h, --help            show this help\n"
    "\n"
    "Ctrl-C (or SIGTERM) finishes the current step, writes DIR/last.safetensors and\n"
    "exits with status 130; a second Ctrl-C stops at once.\n";

enum { O_EPOCHS = 256, O_BATCH, O_STEPS, O_SEED, O_THREADS, O_OUTPUT, O_VERBOSE, O_BACKEND };
enum { O_RESUME = 500, O_LOG_JSON, O_LOG_EVERY };

int kc_cli_parse_run_opt(const char *verb, int c, const char *arg, kc_run_opts *o, long long *verbose);

int kc_cli_parse_run_opt(const char *verb, int c, const char *arg, kc_run_opts *o, long long *verbose) {
    long long v;
    switch (c) {
    case O_EPOCHS:
        return kc_cli_parse_count(verb, "--epochs", arg, 1, &o->epochs);
    case O_BATCH:
        return kc_cli_parse_count(verb, "--batch-size", arg, 1, &o->batch_size);
    case O_STEPS:
        return kc_cli_parse_count(verb, "--steps-per-epoch", arg, 1, &o->steps_per_epoch);
    case O_SEED:
        o->has_seed = 1;
        return kc_cli_parse_count(verb, "--seed", arg, 0, &o->seed);
    case O_THREADS:
        if (kc_cli_parse_count(verb, "--threads", arg, 0, &v)) return 2;
        o->threads = (int)v;
        return 0;
    case O_OUTPUT:
        o->output_dir = arg;
        return 0;
    case O_VERBOSE:
        if (kc_cli_parse_count(verb, "--verbose", arg, 0, verbose)) return 2;
        if (*verbose > 2) return kc_cli_usage_error(verb, "--verbose expects 0, 1 or 2");
        return 0;
    case O_BACKEND:
        if (!kc_backend_by_name(arg)) return kc_cli_usage_error(verb, "unknown backend '%s' (cpu, reference)", arg);
        o->backend = arg;
        return 0;
    }
    return 2;
}

static void print_logs(const char *title, const kc_logs *l) {
    printf("%s", title);
    for (int i = 0; i < l->n; i++) printf(" - %s: %.4f", l->keys[i], l->vals[i]);
    printf("\n");
}

int kc_cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"epochs", required_argument, 0, O_EPOCHS},   {"batch-size", required_argument, 0, O_BATCH},
        {"steps-per-epoch", required_argument, 0, O_STEPS}, {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, O_THREADS}, {"output", required_argument, 0, O_OUTPUT},
        {"verbose", required_argument, 0, O_VERBOSE}, {"backend", required_argument, 0, O_BACKEND},
        {"resume", required_argument, 0, O_RESUME},   {"log-json", required_argument, 0, O_LOG_JSON},
        {"log-json-every", required_argument, 0, O_LOG_EVERY},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    kc_run_opts o = {0};
    long long verbose = -1, log_every = 0;
    const char *resume = NULL, *log_json = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        if (c == '?' || c == ':')
            return kc_cli_usage_error("train", "unknown or incomplete option '%s'", argv[optind - 1]);
        if (c == O_RESUME)
            resume = optarg;
        else if (c == O_LOG_JSON)
            log_json = optarg;
        else if (c == O_LOG_EVERY) {
            if (kc_cli_parse_count("train", "--log-json-every", optarg, 1, &log_every)) return 2;
        } else if (kc_cli_parse_run_opt("train", c, optarg, &o, &verbose))
            return 2;
    }
    if (log_every && !log_json) return kc_cli_usage_error("train", "--log-json-every needs --log-json FILE");
    if (optind != argc - 1) return kc_cli_usage_error("train", "expected one CONFIG file");

    kc_error e = {0};
    kc_config *cfg;
    int is_ckpt;
    if (kc_cli_load_config(argv[optind], &cfg, &is_ckpt, &e)) return kc_cli_report("train", &e);
    if (o.epochs) cfg->fit.epochs = o.epochs;
    if (o.steps_per_epoch) cfg->fit.steps_per_epoch = o.steps_per_epoch;
    if (verbose >= 0) cfg->fit.verbose = (int)verbose;
    int vb = kc_cli_verbose(cfg->fit.verbose);

    char out_dir[4096];
    snprintf(out_dir, sizeof out_dir, "%s", o.output_dir ? o.output_dir : "runs/");
    if (!o.output_dir) snprintf(out_dir, sizeof out_dir, "runs/%s", cfg->run_name);

    kc_session s;
    int need = KC_NEED_TRAIN | (cfg->data.dataset || cfg->data.has_test ? KC_NEED_TEST : 0);
    int status = 0;
    if (kc_session_open(&s, cfg, &o, need, 1, &e) || (resume && kc_checkpoint_load(&s, resume, &e))) {
        status = kc_cli_report("train", &e);
        kc_session_close(&s);
        goto out;
    }
    if (resume && s.epoch >= cfg->fit.epochs)
        fprintf(stderr, "kerasc train: %s already completed %lld of %lld epochs; nothing to train (raise --epochs)\n",
                resume, (long long)s.epoch, cfg->fit.epochs);
    kc_cli_progress *p = kc_cli_progress_new(vb, 1);
    kc_hooks h = {0};
    kc_cli_progress_hooks(p, &h);
    if (log_json && kc_cli_progress_log_json(p, log_json, log_every, &e)) {
        status = kc_cli_report("train", &e);
        kc_cli_progress_free(p);
        kc_session_close(&s);
        goto out;
    }
    kc_cli_signals_install();
    if (kc_fit(&s, out_dir, &h, &e)) {
        status = kc_cli_report("train", &e);
    } else if (s.has_test) {
        kc_logs tl;
        if (kc_evaluate_split(&s, KC_SPLIT_TEST, NULL, &tl, &e)) {
            status = kc_cli_report("train", &e);
        } else if (vb) {
            print_logs("Test", &tl);
        }
    }
    kc_cli_progress_free(p);
    kc_session_close(&s);
out:
    kc_config_free(cfg);
    if (fflush(stdout) && !status) status = 1;
    return status;
}
