/* kerasc convert: a Keras model description as a kerasc model file. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "models/keras_import.h"

static const char usage[] =
    "Usage: kerasc convert MODEL.json|MODEL.keras [-o FILE.yaml]\n"
    "\n"
    "Writes the kerasc model file for a Keras model: the JSON Keras writes with\n"
    "model.to_json(), or a .keras archive (its config.json). The file holds the\n"
    "model section - every layer with its Keras name and arguments - and\n"
    "commented compile, data and fit lines to fill in before training.\n"
    "Layers, arguments or settings kerasc cannot run are errors naming the\n"
    "JSON file:line:column and the layer.\n"
    "\n"
    "  -o, --output FILE   where to write; - or no -o: standard output\n"
    "  -h, --help          show this help\n";

/* Written beside the target and renamed over it, so an interrupted run never
 * leaves half a file. */
static int write_atomic(const char *path, const char *text, kc_error *e) {
    kc_atomic_file a;
    int rc = kc_atomic_open(&a, path, e);
    if (rc) return rc;
    fputs(text, a.f); /* a failed write is found by the commit */
    return kc_atomic_commit(&a, e);
}

static int same_file(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

int kc_cmd_convert(int argc, char **argv) {
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *output = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        if (c == 'o')
            output = optarg;
        else
            return kc_cli_usage_error("convert", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
    }
    if (optind != argc - 1)
        return kc_cli_usage_error("convert", "expected one Keras model file (.json or .keras)");
    const char *input = argv[optind];
    int to_stdout = !output || !strcmp(output, "-");
    if (!to_stdout && same_file(input, output))
        return kc_cli_usage_error("convert", "the output '%s' is the input file", output);
    kc_error e = {0};
    char *text;
    if ((!to_stdout && kc_cli_prepare_output(output, "output file", &e)) ||
        kc_keras_model_file(input, &text, &e))
        return kc_cli_report("convert", &e);
    int rc = 0;
    if (to_stdout) {
        fputs(text, stdout); /* kc_cli_finish checks standard output */
    } else if (write_atomic(output, text, &e)) {
        rc = kc_cli_report("convert", &e);
    }
    free(text);
    return rc;
}
