#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/download_progress.h"
#include "core/json.h"
#include "models/keras_weights.h"

static const char usage[] =
    "Usage: kerasc evaluate CONFIG --weights WEIGHTS [options]\n"
    "       kerasc evaluate CHECKPOINT [options]\n"
    "\n"
    "Loss and metrics of the model on the test data of its data section, with\n"
    "the weights from WEIGHTS: a kerasc checkpoint, a Keras .keras archive, a\n"
    ".weights.h5 or a legacy .h5 (a checkpoint carries its own config).\n"
    "\n"
    "  --weights FILE        weights to load (with a CONFIG)\n"
    "  --json                print the results as one JSON object\n"
    "  --batch-size N        override fit.batch_size\n"
    "  --threads N           compute threads (default: all cores)\n"
    "  --verbose 0|1|2       progress display\n"
    "  --backend NAME        where to compute: cpu (default), reference, ...\n"
    "                        (kerasc --list-devices shows what this build has)\n"
    "  --device N            the backend's device (default: $KERASC_DEVICE, else 0)\n"
    "  --offline             never download a dataset (also KERASC_OFFLINE=1); without\n"
    "                        it, a Keras dataset found nowhere is downloaded into\n"
    "                        $KERAS_HOME/datasets (default ~/.keras/datasets)\n"
    "  -h, --help            show this help\n";

enum { O_WEIGHTS = 300, O_JSON, O_OFFLINE };

static void print_json(const kc_logs *l) {
    kc_strbuf b = {0};
    kc_strbuf_putc(&b, '{');
    for (int i = 0; i < l->n; i++) {
        if (i) kc_strbuf_puts(&b, ", ");
        kc_json_write_string(&b, l->keys[i]);
        kc_strbuf_puts(&b, ": ");
        kc_json_write_double(&b, l->vals[i]);
    }
    kc_strbuf_putc(&b, '}');
    printf("%s\n", kc_strbuf_str(&b));
    kc_strbuf_free(&b);
}

typedef struct eval_args {
    kc_run_opts o;
    long long verbose;
    const char *weights, *target;
    int json, offline;
} eval_args;

/* Returns 0, -1 after --help, or the exit status of a usage error. */
static int parse_args(int argc, char **argv, eval_args *a) {
    static const struct option opts[] = {{"weights", required_argument, 0, O_WEIGHTS},
                                         {"json", no_argument, 0, O_JSON},
                                         {"batch-size", required_argument, 0, KC_OPT_BATCH},
                                         {"threads", required_argument, 0, KC_OPT_THREADS},
                                         {"verbose", required_argument, 0, KC_OPT_VERBOSE},
                                         {"backend", required_argument, 0, KC_OPT_BACKEND},
                                         {"device", required_argument, 0, KC_OPT_DEVICE},
                                         {"offline", no_argument, 0, O_OFFLINE},
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
            return kc_cli_usage_error("evaluate", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        if (c == O_OFFLINE)
            a->offline = 1;
        else if (c == O_WEIGHTS)
            a->weights = optarg;
        else if (c == O_JSON)
            a->json = 1;
        else if (kc_cli_parse_run_opt("evaluate", c, optarg, &a->o, &a->verbose))
            return 2;
    }
    if (optind != argc - 1)
        return kc_cli_usage_error("evaluate", "expected one CONFIG or CHECKPOINT file");
    if (kc_cli_run_opts_finish("evaluate", &a->o)) return 2;
    a->target = argv[optind];
    kc_cli_download_setup(a->offline);
    return 0;
}

static int evaluate(kc_config *cfg, const eval_args *a, const char *weights, kc_error *e) {
    int vb = a->json ? 0 : a->verbose >= 0 ? (int)a->verbose : kc_cli_verbose(-1);
    kc_session s;
    int status = 0;
    kc_cli_warn_mask_dropped("evaluate", cfg);
    if (kc_session_open(&s, cfg, &a->o, KC_NEED_TEST, 0, e) || kc_weights_load(&s, weights, e)) {
        status = kc_cli_report("evaluate", e);
        kc_session_close(&s);
        return status;
    }
    kc_cli_progress *p = kc_cli_progress_new(vb, 0);
    kc_hooks h = {0};
    kc_cli_progress_hooks(p, &h);
    kc_logs l;
    if (kc_evaluate_split(&s, KC_SPLIT_TEST, vb ? &h : NULL, &l, e))
        status = kc_cli_report("evaluate", e);
    else if (a->json)
        print_json(&l);
    kc_cli_progress_free(p);
    kc_session_close(&s);
    return status;
}

int kc_cmd_evaluate(int argc, char **argv) {
    eval_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    kc_error e = {0};
    kc_config *cfg;
    int is_ckpt;
    if (kc_cli_load_config(a.target, &cfg, &is_ckpt, &e)) return kc_cli_report("evaluate", &e);
    if (!is_ckpt && !a.weights) {
        kc_config_free(cfg);
        return kc_cli_usage_error(
            "evaluate", "%s is a model file: give the trained weights with --weights CHECKPOINT",
            a.target);
    }
    int status = evaluate(cfg, &a, a.weights ? a.weights : a.target, &e);
    kc_config_free(cfg);
    return status; /* kc_cli_finish checks standard output */
}
