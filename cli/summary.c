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
    "output shape and parameter count, then the totals. Models written as\n"
    "graphs list their Input layers too, and those that are not a plain chain\n"
    "add Keras's \"Connected to\" column.\n"
    "\n"
    "  -h, --help   show this help\n";

/* The strings of one row, owned here. */
typedef struct row_text {
    char name[300];
    char shape[200];
    char *connected;
} row_text;

/* "layer[node][tensor]" for every tensor a layer's calls take, joined by ", ". */
static char *connections(const kc_model *m, const kc_layer *l) {
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const kc_model_node *nd = &m->nodes[i];
        if (nd->layer != l) continue;
        for (int j = 0; j < nd->nin; j++) {
            const kc_model_node *src = &m->nodes[nd->in[j]];
            const char *name = src->layer ? src->layer->name : m->inputs[src->input].name;
            size_t need = len + strlen(name) + 40;
            if (need > cap) {
                cap = 2 * need;
                char *t = realloc(s, cap);
                if (!t) {
                    free(s);
                    return NULL;
                }
                s = t;
            }
            len += (size_t)snprintf(s + len, cap - len, "%s%s[%d][%d]", len ? ", " : "", name,
                                    src->layer ? src->call : 0, nd->in_t[j]);
        }
    }
    return s;
}

/* Keras's "Output Shape": one shape, or a list of every tensor's:
 * "[(None, 5, 8), (None, 8), (None, 8)]". */
static void output_shapes(const kc_layer *l, char *buf, size_t cap) {
    if (l->noutputs <= 1) {
        kc_shape_str(&l->out_shape, 1, buf, cap);
        return;
    }
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int t = 0; t < l->noutputs && len < cap; t++) {
        char one[160];
        kc_shape_str(&l->out_shapes[t], 1, one, sizeof one);
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", t ? ", " : "", one);
    }
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* Rows in Keras's order: a Sequential lists its layers; a Functional model
 * lists its operations (Inputs included) as Functional._operations orders them. */
static int fill_rows(const kc_model *m, int four, row_text *text, kc_summary_row *rows) {
    int n, *order = malloc((size_t)(m->nlayers + m->ninputs) * sizeof *order);
    if (!order) return -1;
    if (m->functional) {
        n = kc_model_keras_order(m, order);
    } else {
        n = m->nlayers;
        for (int i = 0; i < n; i++)
            order[i] = i;
    }
    for (int r = 0; r < n; r++) {
        row_text *t = &text[r];
        if (order[r] < 0) {
            const kc_model_input *in = &m->inputs[-1 - order[r]];
            snprintf(t->name, sizeof t->name, "%s (InputLayer)", in->name);
            kc_shape_str(&in->shape, 1, t->shape, sizeof t->shape);
            rows[r].params = 0;
        } else {
            const kc_layer *l = m->layers[order[r]];
            snprintf(t->name, sizeof t->name, "%s (%s)", l->name, l->cls->class_name);
            output_shapes(l, t->shape, sizeof t->shape);
            rows[r].params = kc_layer_param_count(l, 0);
            if (four && !(t->connected = connections(m, l))) {
                free(order);
                return -1;
            }
        }
        rows[r].name_type = t->name;
        rows[r].shape = t->shape;
        rows[r].connected = t->connected && *t->connected ? t->connected : NULL;
    }
    free(order);
    return n;
}

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
    if (optind != argc - 1)
        return kc_cli_usage_error("summary", "expected one CONFIG or CHECKPOINT file");
    kc_error e = {0};
    kc_config *cfg;
    int is_ckpt;
    if (kc_cli_load_config(argv[optind], &cfg, &is_ckpt, &e)) return kc_cli_report("summary", &e);
    kc_model *m = cfg->model;
    int four = m->functional && !kc_model_sequential_like(m);
    size_t cap = (size_t)(m->nlayers + m->ninputs);
    kc_summary_row *rows = calloc(cap, sizeof *rows);
    row_text *text = calloc(cap, sizeof *text);
    int n = rows && text ? fill_rows(m, four, text, rows) : -1;
    int status = 0;
    if (n < 0) {
        fprintf(stderr, "kerasc summary: out of memory\n");
        status = 1;
    } else {
        int64_t total = kc_model_param_count(m, 0), trainable = kc_model_param_count(m, 1);
        int tty = isatty(STDOUT_FILENO);
        /* a failed write is said by kc_cli_finish, which sees the stream's error */
        /* Keras counts 8 bytes for its int64 variables (Normalization's count) */
        int64_t wide = 0;
        for (int i = 0; i < m->nlayers; i++)
            for (int j = 0; j < m->layers[i]->nparams; j++)
                if (m->layers[i]->params[j].keras_int64)
                    wide += kc_shape_numel(&m->layers[i]->params[j].shape);
        kc_summary_totals t = {.trainable = trainable,
                               .trainable_bytes = trainable * 4,
                               .non_trainable = total - trainable,
                               .non_trainable_bytes = (total - trainable) * 4 + wide * 4,
                               .optimizer = -1};
        if (kc_summary_print_totals(stdout, m->name, rows, n, four, &t,
                                    kc_summary_line_length(four, tty),
                                    tty && !getenv("NO_COLOR"))) {
            fprintf(stderr, "kerasc summary: out of memory\n");
            status = 1;
        }
    }
    for (size_t i = 0; text && i < cap; i++)
        free(text[i].connected);
    free(rows);
    free(text);
    kc_config_free(cfg);
    return status; /* kc_cli_finish checks standard output */
}
