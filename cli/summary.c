#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/table.h"

static const char usage[] =
    "Usage: kerasc summary CONFIG|CHECKPOINT\n"
    "\n"
    "Prints the Keras summary table of the model: each layer with its type,\n"
    "output shape and parameter count, then the totals.\n"
    "\n"
    "  -h, --help   show this help\n";

int kc_cmd_summary(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        return kc_cli_usage_error("summary", "unknown option");
    }
    if (optind != argc - 1) return kc_cli_usage_error("summary", "expected one CONFIG or CHECKPOINT file");
    kc_error e = {0};
    kc_config *cfg;
    int is_ckpt;
    if (kc_cli_load_config(argv[optind], &cfg, &is_ckpt, &e)) return kc_cli_report("summary", &e);
    kc_model *m = cfg->model;
    kc_summary_row *rows = calloc((size_t)m->nlayers, sizeof *rows);
    char (*names)[300] = calloc((size_t)m->nlayers, sizeof *names);
    char (*shapes)[200] = calloc((size_t)m->nlayers, sizeof *shapes);
    if (!rows || !names || !shapes) {
        free(rows);
        free(names);
        free(shapes);
        kc_config_free(cfg);
        fprintf(stderr, "kerasc summary: out of memory\n");
        return 1;
    }
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        snprintf(names[i], sizeof names[i], "%s (%s)", l->name, l->cls->class_name);
        kc_shape_str(&l->out_shape, 1, shapes[i], sizeof shapes[i]);
        rows[i].name_type = names[i];
        rows[i].shape = shapes[i];
        rows[i].params = kc_layer_param_count(l, 0);
    }
    int64_t total = kc_model_param_count(m, 0), trainable = kc_model_param_count(m, 1);
    int tty = isatty(STDOUT_FILENO);
    kc_summary_print(stdout, m->name, rows, m->nlayers, 0, trainable, total - trainable, -1,
                     kc_summary_line_length(0, tty), tty && !getenv("NO_COLOR"));
    free(rows);
    free(names);
    free(shapes);
    kc_config_free(cfg);
    return fflush(stdout) ? 1 : 0;
}
