#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "models/keras_weights.h"

static const char usage[] =
    "Usage: kerasc export MODEL -o FILE.keras|FILE.weights.h5 [options]\n"
    "       kerasc export CONFIG --weights WEIGHTS -o FILE\n"
    "\n"
    "Writes a trained model in Keras 3's formats, for Python's Keras:\n"
    "  FILE.keras       the whole model (config.json, metadata.json and\n"
    "                   model.weights.h5 in a zip): keras.models.load_model(FILE)\n"
    "  FILE.weights.h5  the weights only: model.load_weights(FILE) on the same\n"
    "                   architecture\n"
    "MODEL is a kerasc checkpoint or a Keras .keras / .h5 model; a model file\n"
    "(YAML, .json) takes its weights from --weights (any of those, or a\n"
    ".weights.h5). The file is written to a temporary name and renamed into\n"
    "place when complete.\n"
    "\n"
    "  -o, --output FILE     the file to write (.keras or .weights.h5)\n"
    "  --weights FILE        the weights, for a model file\n"
    "  -h, --help            show this help\n";

enum { O_WEIGHTS = 300 };

typedef struct export_args {
    const char *model, *weights, *output;
} export_args;

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Returns 0, -1 after --help, or the exit status of a usage error. */
static int parse_args(int argc, char **argv, export_args *a) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"weights", required_argument, 0, O_WEIGHTS},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return -1;
        }
        if (c == 'o')
            a->output = optarg;
        else if (c == O_WEIGHTS)
            a->weights = optarg;
        else
            return kc_cli_usage_error("export", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
    }
    if (optind != argc - 1) return kc_cli_usage_error("export", "expected one MODEL file");
    a->model = argv[optind];
    if (!a->output)
        return kc_cli_usage_error("export", "-o FILE.keras|FILE.weights.h5 is required");
    if (!ends_with(a->output, ".keras") && !ends_with(a->output, ".weights.h5"))
        return kc_cli_usage_error("export", "-o must end in .keras or .weights.h5, got '%s'",
                                  a->output);
    return 0;
}

int kc_cmd_export(int argc, char **argv) {
    export_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    kc_error e = {0};
    kc_config *cfg = NULL;
    int carries;
    if (kc_cli_load_config(a.model, &cfg, &carries, &e)) return kc_cli_report("export", &e);
    if (!carries && !a.weights) {
        kc_config_free(cfg);
        return kc_cli_usage_error("export", "%s is a model file: give its weights with --weights",
                                  a.model);
    }
    kc_run_opts o;
    kc_cli_run_opts_init(&o);
    if (kc_cli_run_opts_finish("export", &o)) {
        kc_config_free(cfg);
        return 2;
    }
    kc_session s;
    memset(&s, 0, sizeof s);
    int status = 0;
    if (kc_cli_prepare_output(a.output, "output file", &e) ||
        kc_session_open(&s, cfg, &o, 0, 0, &e) ||
        kc_weights_load(&s, a.weights ? a.weights : a.model, &e))
        status = kc_cli_report("export", &e);
    else if ((rc = ends_with(a.output, ".keras")
                       ? kc_keras_archive_save(cfg, s.model, NULL, a.output, &e)
                       : kc_keras_weights_save(s.model, NULL, a.output, &e))) {
        kc_cli_output_failure(rc, &e);
        status = kc_cli_report("export", &e);
    } else
        fprintf(stderr, "kerasc export: wrote %s\n", a.output);
    kc_session_close(&s);
    kc_config_free(cfg);
    return status;
}
