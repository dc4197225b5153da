#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/json.h"

static const char usage[] =
    "Usage: kerasc evaluate CONFIG --weights CHECKPOINT [options]\n"
    "       kerasc evaluate CHECKPOINT [options]\n"
    "\n"
    "Loss and metrics of the model on the test data of its data section, with\n"
    "the weights from CHECKPOINT (a checkpoint carries its own config).\n"
    "\n"
    "  --weights FILE        checkpoint to load (with a CONFIG)\n"
    "  --json                print the results as one JSON object\n"
    "  --batch-size N        override fit.batch_size\n"
    "  --threads N           compute threads (default: all cores)\n"
    "  --verbose 0|1|2       progress display\n"
    "  --backend NAME        cpu (default) or reference\n"
    "  -h, --help            show this help\n";

enum { O_BATCH = 257, O_THREADS = 260, O_VERBOSE = 262, O_BACKEND = 263, O_WEIGHTS = 300, O_JSON };

int kc_cli_parse_run_opt(const char *verb, int c, const char *arg, kc_run_opts *o, long long *verbose);

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

int kc_cmd_evaluate(int argc, char **argv) {
    static const struct option opts[] = {
        {"weights", required_argument, 0, O_WEIGHTS}, {"json", no_argument, 0, O_JSON},
        {"batch-size", required_argument, 0, O_BATCH}, {"threads", required_argument, 0, O_THREADS},
        {"verbose", required_argument, 0, O_VERBOSE}, {"backend", required_argument, 0, O_BACKEND},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    kc_run_opts o = {0};
    long long verbose = -1;
    const char *weights = NULL;
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        if (c == '?' || c == ':')
            return kc_cli_usage_error("evaluate", "unknown or incomplete option '%s'", argv[optind - 1]);
        if (c == O_WEIGHTS) {
            weights = optarg;
        } else if (c == O_JSON) {
            json = 1;
        } else if (kc_cli_parse_run_opt("evaluate", c, optarg, &o, &verbose)) {
            return 2;
        }
    }
    if (optind != argc - 1) return kc_cli_usage_error("evaluate", "expected one CONFIG or CHECKPOINT file");
    const char *target = argv[optind];
    kc_error e = {0};
    kc_config *cfg;
    int is_ckpt;
    if (kc_cli_load_config(target, &cfg, &is_ckpt, &e)) return kc_cli_report("evaluate", &e);
    if (!is_ckpt && !weights) {
        kc_config_free(cfg);
        return kc_cli_usage_error("evaluate", "%s is a model file: give the trained weights with --weights CHECKPOINT",
                                  target);
    }
    if (!weights) weights = target;
    int vb = json ? 0 : verbose >= 0 ? (int)verbose : kc_cli_verbose(-1);

    kc_session s;
    int status = 0;
    if (kc_session_open(&s, cfg, &o, KC_NEED_TEST, 0, &e) || kc_checkpoint_load(&s, weights, &e)) {
        status = kc_cli_report("evaluate", &e);
        kc_session_close(&s);
        kc_config_free(cfg);
        return status;
    }
    kc_cli_progress *p = kc_cli_progress_new(vb, 0);
    kc_hooks h = {0};
    kc_cli_progress_hooks(p, &h);
    kc_logs l;
    if (kc_evaluate_split(&s, KC_SPLIT_TEST, vb ? &h : NULL, &l, &e))
        status = kc_cli_report("evaluate", &e);
    else if (json)
        print_json(&l);
    kc_cli_progress_free(p);
    kc_session_close(&s);
    kc_config_free(cfg);
    if (fflush(stdout) && !status) status = 1;
    return status;
}
