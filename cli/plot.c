#include "cli/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/atomic_file.h"

extern char **environ;

static const char usage[] =
    "Usage: kerasc plot CONFIG|CHECKPOINT -o FILE [options]\n"
    "\n"
    "Draws the model's layer graph like Keras's plot_model(show_shapes=True,\n"
    "show_layer_names=True): a box per layer with its name, class and input and\n"
    "output shapes. FILE ending in .dot gets the Graphviz text; .png, .svg or\n"
    ".pdf are rendered by Graphviz's `dot` program (apt-get install graphviz).\n"
    "Without `dot`, the .dot file is written next to FILE and the message says\n"
    "how to render it.\n"
    "\n"
    "  -o, --output FILE     .png, .svg, .pdf or .dot\n"
    "  --rankdir TB|LR       top to bottom (default) or left to right\n"
    "  --dpi N               resolution of a .png (default 200, as Keras)\n"
    "  -h, --help            show this help\n";

/* ------------------------------------------------------------------ DOT --- */

static void put_html(kc_strbuf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '&')
            kc_strbuf_puts(b, "&amp;");
        else if (*s == '<')
            kc_strbuf_puts(b, "&lt;");
        else if (*s == '>')
            kc_strbuf_puts(b, "&gt;");
        else if (*s == '"')
            kc_strbuf_puts(b, "&quot;");
        else
            kc_strbuf_putc(b, *s);
    }
}

static void put_shape(kc_strbuf *b, const kc_shape *s) {
    char buf[200];
    put_html(b, kc_shape_str(s, 1, buf, sizeof buf));
}

/* Keras's make_layer_label: a title row, then the shapes. */
/* One shape, or "[a, b]" for several. */
static void put_shapes(kc_strbuf *b, const kc_shape *s, int n) {
    if (n > 1) kc_strbuf_putc(b, '[');
    for (int i = 0; i < n; i++) {
        if (i) kc_strbuf_puts(b, ", ");
        put_shape(b, &s[i]);
    }
    if (n > 1) kc_strbuf_putc(b, ']');
}

static void put_label(kc_strbuf *b, const char *name, const char *cls, const kc_shape *in, int nin,
                      const kc_shape *out, int nout) {
    kc_strbuf_puts(
        b, "<<table border=\"0\" cellborder=\"1\" bgcolor=\"black\" cellpadding=\"10\">"
           "<tr><td colspan=\"2\" bgcolor=\"black\"><font point-size=\"16\" color=\"white\"><b>");
    put_html(b, name);
    kc_strbuf_puts(b, "</b> (");
    put_html(b, cls);
    kc_strbuf_puts(b, ")</font></td></tr><tr>");
    if (in) {
        kc_strbuf_puts(b, "<td bgcolor=\"white\"><font point-size=\"14\">Input shape: <b>");
        put_shapes(b, in, nin);
        kc_strbuf_puts(b, "</b></font></td>");
    }
    kc_strbuf_puts(b, "<td bgcolor=\"white\"><font point-size=\"14\">Output shape: <b>");
    put_shapes(b, out, nout);
    kc_strbuf_puts(b, "</b></font></td></tr></table>>");
}

static void put_node(kc_strbuf *b, int op, const kc_model *m) {
    if (op < 0) {
        const kc_model_input *in = &m->inputs[-1 - op];
        kc_strbuf_printf(b, "  \"input_%d\" [label=", -1 - op);
        put_label(b, in->name, "InputLayer", NULL, 0, &in->shape, 1);
    } else {
        const kc_layer *l = m->layers[op];
        kc_strbuf_printf(b, "  \"layer_%d\" [label=", op);
        put_label(b, l->name, l->cls->class_name, l->in_shapes, l->ninputs, l->out_shapes,
                  l->noutputs > 1 ? l->noutputs : 1);
    }
    kc_strbuf_puts(b, ", fontname=\"Helvetica\", border=\"0\", margin=\"0\"];\n");
}

static void op_id(const kc_model *m, int node, char *buf, size_t n) {
    const kc_model_node *nd = &m->nodes[node];
    if (nd->layer)
        snprintf(buf, n, "layer_%d", nd->layer->index);
    else
        snprintf(buf, n, "input_%d", nd->input);
}

int kc_plot_dot(const kc_model *m, const kc_plot_opts *o, kc_strbuf *b) {
    kc_strbuf_puts(b, "digraph \"");
    for (const char *p = m->name; *p; p++) {
        if (*p == '"' || *p == '\\') kc_strbuf_putc(b, '\\');
        kc_strbuf_putc(b, *p);
    }
    kc_strbuf_puts(b, "\" {\n");
    kc_strbuf_printf(b, "  rankdir=\"%s\";\n  concentrate=true;\n  dpi=%d;\n  splines=\"ortho\";\n",
                     o->rankdir ? o->rankdir : "TB", o->dpi > 0 ? o->dpi : 200);
    kc_strbuf_puts(b, "  node [shape=\"record\"];\n");
    int nops = m->nlayers + m->ninputs;
    int *ops = malloc((size_t)nops * sizeof *ops);
    char(*edges)[2][32] = malloc((size_t)(m->nnodes * KC_LAYER_MAX_INPUTS + 1) * sizeof *edges);
    if (!ops || !edges) {
        free(ops);
        free(edges);
        return KC_ERUNTIME;
    }
    /* a Sequential stack shows no Input box, as Keras's Sequential.layers has none */
    int n = 0;
    if (m->functional) {
        n = kc_model_keras_order(m, ops);
    } else {
        for (int i = 0; i < m->nlayers; i++)
            ops[n++] = i;
    }
    for (int i = 0; i < n; i++)
        put_node(b, ops[i], m);
    int nedges = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const kc_model_node *nd = &m->nodes[i];
        for (int j = 0; nd->layer && j < nd->nin; j++) {
            if (!m->functional && !m->nodes[nd->in[j]].layer) continue;
            char from[32], to[32];
            op_id(m, nd->in[j], from, sizeof from);
            op_id(m, i, to, sizeof to);
            int seen = 0;
            for (int k = 0; k < nedges && !seen; k++)
                seen = !strcmp(edges[k][0], from) && !strcmp(edges[k][1], to);
            if (seen) continue;
            memcpy(edges[nedges][0], from, sizeof from);
            memcpy(edges[nedges][1], to, sizeof to);
            nedges++;
            kc_strbuf_printf(b, "  \"%s\" -> \"%s\" [penwidth=\"2\"];\n", from, to);
        }
    }
    kc_strbuf_puts(b, "}\n");
    free(ops);
    free(edges);
    return b->failed ? KC_ERUNTIME : KC_OK;
}

/* -------------------------------------------------------------- writing --- */

static const char *extension(const char *path) {
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    return dot && (!slash || dot > slash) ? dot + 1 : "";
}

static int write_file(const char *path, const char *text, kc_error *e) {
    kc_atomic_file a;
    int rc = kc_atomic_open(&a, path, e);
    if (rc) return rc;
    fputs(text, a.f); /* a failed write is found by the commit */
    return kc_atomic_commit(&a, e);
}

/* Runs `dot -T<fmt> -o out in`, its messages collected in err. Returns the
 * exit status, or -1 with errno set when it could not be started. */
static int run_dot(const char *fmt, const char *in, const char *out, char *err, size_t errn) {
    int pipefd[2];
    if (pipe(pipefd)) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    char tflag[32], oflag[4200];
    snprintf(tflag, sizeof tflag, "-T%s", fmt);
    snprintf(oflag, sizeof oflag, "-o%s", out);
    char *argv[] = {"dot", tflag, oflag, (char *)in, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "dot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (rc) {
        close(pipefd[0]);
        errno = rc;
        return -1;
    }
    size_t len = 0;
    ssize_t got;
    char sink[256];
    while ((got = read(pipefd[0], len + 1 < errn ? err + len : sink,
                       len + 1 < errn ? errn - 1 - len : sizeof sink)) > 0)
        if (len + 1 < errn) len += (size_t)got;
    err[len < errn ? len : errn - 1] = 0;
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    /* the shell's "not found" status when dot could not be executed */
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        errno = ENOENT;
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* The DOT text beside `out`: model.png -> model.dot. */
static void dot_path_for(const char *out, char *buf, size_t n) {
    snprintf(buf, n, "%s", out);
    char *dot = strrchr(buf, '.'), *slash = strrchr(buf, '/');
    if (dot && (!slash || dot > slash)) *dot = 0;
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, ".dot");
}

/* dot reads the graph from one temporary beside `out` and writes the
 * picture into another, which is then renamed over `out`: both are named as
 * every temporary is (core/atomic_file.h), so a killed run's are removed by
 * the next. */
static int render(const char *dot_text, const char *out, const char *fmt, kc_error *e) {
    char err[2048];
    kc_atomic_file src, dst;
    int rc = kc_atomic_open(&src, out, e);
    if (rc) return rc;
    if (fputs(dot_text, src.f) == EOF || fflush(src.f) != 0) {
        int er = errno;
        kc_atomic_abort(&src);
        return kc_fail(e, KC_ERUNTIME, "cannot write %s: %s", out, strerror(er));
    }
    if ((rc = kc_atomic_open(&dst, out, e))) {
        kc_atomic_abort(&src);
        return rc;
    }
    int st = run_dot(fmt, src.tmp, dst.tmp, err, sizeof err);
    int dot_errno = errno;
    kc_atomic_abort(&src);
    if (st == 0) return kc_atomic_commit(&dst, e); /* dot's file, synced and renamed */
    kc_atomic_abort(&dst);
    errno = dot_errno;
    if (st < 0 && errno == ENOENT) {
        char beside[4200];
        dot_path_for(out, beside, sizeof beside);
        if ((rc = write_file(beside, dot_text, e))) return rc;
        fprintf(stderr,
                "kerasc plot: Graphviz's `dot` program was not found, so the graph went to %s;\n"
                "render it with `dot -T%s %s -o %s` (Graphviz: apt-get install graphviz)\n",
                beside, fmt, beside, out);
        return KC_OK;
    }
    if (st < 0) return kc_fail(e, KC_ERUNTIME, "cannot run Graphviz's dot: %s", strerror(errno));
    return kc_fail(e, KC_ERUNTIME, "Graphviz's dot failed (status %d)%s%s", st, *err ? ": " : "",
                   err);
}

int kc_cmd_plot(int argc, char **argv) {
    enum { O_RANKDIR = 256, O_DPI };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"rankdir", required_argument, 0, O_RANKDIR},
                                         {"dpi", required_argument, 0, O_DPI},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    kc_plot_opts po = {.rankdir = "TB", .dpi = 200};
    const char *out = NULL;
    long long dpi;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        if (c == 'o') {
            out = optarg;
        } else if (c == O_RANKDIR) {
            if (strcmp(optarg, "TB") && strcmp(optarg, "LR"))
                return kc_cli_usage_error("plot", "--rankdir expects TB or LR, got '%s'", optarg);
            po.rankdir = optarg;
        } else if (c == O_DPI) {
            if (kc_cli_parse_count("plot", "--dpi", optarg, 1, &dpi)) return 2;
            po.dpi = dpi > 10000 ? 10000 : (int)dpi;
        } else {
            return kc_cli_usage_error("plot", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return kc_cli_usage_error("plot", "expected one CONFIG or CHECKPOINT file");
    if (!out) return kc_cli_usage_error("plot", "-o FILE is required (.png, .svg, .pdf or .dot)");
    const char *ext = extension(out);
    if (strcmp(ext, "png") && strcmp(ext, "svg") && strcmp(ext, "pdf") && strcmp(ext, "dot"))
        return kc_cli_usage_error("plot", "-o must end in .png, .svg, .pdf or .dot, got '%s'", out);

    kc_error e = {0};
    kc_config *cfg;
    int is_ckpt;
    if (kc_cli_prepare_output(out, "output file", &e) ||
        kc_cli_load_config(argv[optind], &cfg, &is_ckpt, &e))
        return kc_cli_report("plot", &e);
    kc_strbuf dot = {0};
    int rc = kc_plot_dot(cfg->model, &po, &dot);
    if (rc)
        kc_fail(&e, KC_ERUNTIME, "out of memory");
    else if (!strcmp(ext, "dot"))
        rc = write_file(out, kc_strbuf_str(&dot), &e);
    else
        rc = render(kc_strbuf_str(&dot), out, ext, &e);
    kc_strbuf_free(&dot);
    kc_config_free(cfg);
    return rc ? kc_cli_report("plot", &e) : 0;
}
