#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "models/keras_weights.h"

static const char usage[] =
    "Usage: kerasc predict MODEL --input FILE [--output FILE] [options]\n"
    "       kerasc predict CONFIG --weights WEIGHTS --input FILE ...\n"
    "\n"
    "MODEL is a trained model: a kerasc checkpoint, or Keras's .keras or .h5\n"
    "(a full model). A model file (YAML, Keras .json) takes its weights from\n"
    "--weights: any of those, or a Keras .weights.h5.\n"
    "\n"
    "Runs the trained model on every sample of FILE (IDX, NPY, NPZ or CSV of\n"
    "features) and writes one row of outputs per sample - class probabilities\n"
    "for a classifier - as CSV (stdout, or a .csv file) or NPY (a .npy file).\n"
    "Inputs get the model file's preprocessing (rescale, offset, reshape).\n"
    "A text model (a `text:` block in its data section) reads raw text, one\n"
    "sample per line, tokenized with the vocabulary saved in the checkpoint;\n"
    "its .npy/.npz/.csv inputs hold token ids.\n"
    "An image model (an `images:` folder in its data section) reads PNG and\n"
    "JPEG files - several --input files, or a folder of them - decoded and\n"
    "resized as its training images were, and prints each file's most likely\n"
    "classes, named as the training folder's subfolders (--output still\n"
    "writes the probabilities).\n"
    "\n"
    "A model with several inputs takes one --input NAME=FILE per input; with\n"
    "several outputs, --output NAME=FILE writes each output to its own file,\n"
    "and a single CSV holds every output side by side, in the model's order.\n"
    "\n"
    "Features: --layer NAME writes that layer's output instead of the model's -\n"
    "Keras's layer.output, after the layer's activation, as\n"
    "keras.Model(model.inputs, model.get_layer(NAME).output).predict(x) gives.\n"
    "Several --layer options are written as several outputs are, in the order\n"
    "given: side by side in one CSV, or one --output NAME=FILE each. A layer\n"
    "that returns several tensors (an LSTM with return_state) writes them all,\n"
    "named NAME, NAME[0][1], NAME[0][2], ...; NAME[node][tensor] picks one, and\n"
    "a layer called several times (shared) needs NAME[node]. An Input's name\n"
    "writes the values the model reads (after rescale and reshape).\n"
    "--logits writes each output before its final activation: for an output\n"
    "layer with an activation (Dense with activation: softmax) its values before\n"
    "that activation (the values before softmax); for an output that is an\n"
    "activation layer (Activation, Softmax, ReLU, LeakyReLU, ELU, PReLU) the\n"
    "input of that layer; otherwise the output itself. --output NAME=FILE names\n"
    "them as the outputs; --logits does not combine with --layer.\n"
    "With image files, --layer and --logits write values (CSV on stdout, or\n"
    "--output) instead of printing the top classes.\n"
    "\n"
    "  --input [NAME=]FILE   samples to predict (NAME: the model input)\n"
    "  --key [NAME=]KEY      array inside an .npz input (default: its only array)\n"
    "  --output [NAME=]FILE  .csv or .npy (default: CSV on stdout)\n"
    "  --layer NAME          write this layer's output (repeatable; see above)\n"
    "  --logits              write each output before its final activation\n"
    "  --weights FILE        the weights, for a model file (CONFIG)\n"
    "  --top N               classes printed per image (default 3)\n"
    "  --batch-size N        samples per batch\n"
    "  --threads N           compute threads (default: all cores)\n"
    "  --backend NAME        where to compute: cpu (default), reference, ...\n"
    "                        (kerasc --list-devices shows what this build has)\n"
    "  --device N            the backend's device (default: $KERASC_DEVICE, else 0)\n"
    "  -h, --help            show this help\n";

enum { O_INPUT = 400, O_OUTPUT_FILE, O_KEY, O_TOP, O_LAYER, O_LOGITS, O_WEIGHTS };

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* "NAME=VALUE" or "VALUE": the name part (empty when absent) and the value. */
typedef struct named_arg {
    char name[128];
    const char *value;
} named_arg;

static void split_named(const char *arg, named_arg *out) {
    const char *eq = strchr(arg, '=');
    const char *slash = strchr(arg, '/');
    out->name[0] = 0;
    out->value = arg;
    if (!eq || (slash && slash < eq) || (size_t)(eq - arg) >= sizeof out->name) return;
    memcpy(out->name, arg, (size_t)(eq - arg));
    out->name[eq - arg] = 0;
    out->value = eq + 1;
}

static int load_input(const char *path, const char *key, kc_array *x, kc_error *e) {
    if (ends_with(path, ".csv") || ends_with(path, ".CSV"))
        return kc_csv_load(path, NULL, -1, x, NULL, e);
    return kc_array_load(path, key, x, e);
}

/* A text model (a `text:` block) reads raw text, one sample per line, from
 * any --input but .npy/.npz/.csv, which hold token ids. */
static int is_raw_text(const kc_session *s, const char *path) {
    return s->cfg->data.has_text && !ends_with(path, ".npy") && !ends_with(path, ".npz") &&
           !ends_with(path, ".csv");
}

static int load_text_input(const kc_session *s, const char *path, kc_array *x, kc_error *e) {
    kc_texts t;
    int rc = kc_text_read_lines(path, &t, e);
    if (!rc && t.n == 0) rc = kc_fail(e, KC_ECONFIG, "%s: no lines of text to predict", path);
    if (!rc) rc = kc_session_vectorize(s, &t, x, e);
    kc_texts_free(&t);
    return rc;
}

/* Rows must hold the model input's values; reshape as the data section says. */
static int fit_input(kc_session *s, int i, kc_array *x, const char *path, kc_error *e) {
    const kc_shape *in = &s->model->inputs[i].shape;
    if (kc_array_row_size(x) != kc_shape_numel(in)) {
        char a[128];
        return kc_fail(
            e, KC_ECONFIG, "%s: samples have %lld values but the model input %s%s%s needs %lld",
            path, (long long)kc_array_row_size(x),
            s->model->ninputs > 1 ? s->model->inputs[i].name : "", s->model->ninputs > 1 ? " " : "",
            kc_shape_str(in, 1, a, sizeof a), (long long)kc_shape_numel(in));
    }
    x->shape.rank = 1 + in->rank;
    for (int k = 0; k < in->rank; k++)
        x->shape.d[k + 1] = in->d[k];
    return KC_OK;
}

/* What predict writes: the model's outputs, or the tensors --layer or
 * --logits chose, each with its name and per-sample shape. */
typedef struct pred_set {
    int n;
    int layers; /* chosen by --layer: named as layers, not outputs */
    char name[KC_MODEL_MAX_IO][160];
    kc_shape shape[KC_MODEL_MAX_IO];
    float *v[KC_MODEL_MAX_IO];
} pred_set;

static int64_t set_cols(const pred_set *p, int k) {
    return kc_shape_numel(&p->shape[k]);
}

/* Every tensor side by side, one sample per row; stops at a write error,
 * which the stream keeps for whoever closes it. */
static void write_csv(FILE *f, const pred_set *p, int64_t rows) {
    for (int64_t r = 0; r < rows && !ferror(f); r++)
        for (int k = 0; k < p->n; k++) {
            int64_t cols = set_cols(p, k);
            for (int64_t c = 0; c < cols; c++)
                fprintf(f, "%.9g%c", p->v[k][r * cols + c],
                        c + 1 == cols && k + 1 == p->n ? '\n' : ',');
        }
}

static int write_one(const pred_set *p, int k, int64_t rows, const char *path, kc_error *e) {
    if (ends_with(path, ".npy")) {
        const kc_shape *sh = &p->shape[k];
        kc_shape full = {.rank = sh->rank + 1};
        full.d[0] = rows;
        for (int i = 0; i < sh->rank; i++)
            full.d[i + 1] = sh->d[i];
        return kc_npy_write(path, p->v[k], &full, e);
    }
    return kc_csv_write(path, p->v[k], rows, set_cols(p, k), NULL, e);
}

/* Side-by-side CSV written to a temporary file and renamed into place. */
static int write_all_csv(const pred_set *p, int64_t rows, const char *path, kc_error *e) {
    kc_atomic_file a;
    int rc = kc_atomic_open(&a, path, e);
    if (rc) return rc;
    write_csv(a.f, p, rows);
    return kc_atomic_commit(&a, e); /* reports a failed write */
}

static int set_index(const pred_set *p, const char *name) {
    for (int k = 0; k < p->n; k++)
        if (!strcmp(p->name[k], name)) return k;
    return -1;
}

typedef struct predict_args {
    named_arg inputs[KC_MODEL_MAX_IO], keys[KC_MODEL_MAX_IO], outputs[KC_MODEL_MAX_IO];
    int ninputs, nkeys, noutputs;
    const char *layers[KC_MODEL_MAX_IO]; /* --layer, in the order given */
    int nlayers, logits;
    int top;
    const char *weights;   /* --weights, for a model file */
    kc_image_index images; /* an image model's input files, in row order */
} predict_args;

/* ------------------------------------------------------------- images --- */

static int is_dir(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

/* An image model with one input takes image files and folders of them. */
static int image_inputs(const kc_session *s, const predict_args *a) {
    if (!kc_config_image_source(s->cfg) || s->model->ninputs != 1) return 0;
    for (int j = 0; j < a->ninputs; j++)
        if (!is_dir(a->inputs[j].value) && !kc_image_is_image_name(a->inputs[j].value)) return 0;
    return 1;
}

static int add_path(kc_image_index *ix, const char *p, kc_error *e) {
    char **np = realloc(ix->path, (size_t)(ix->n + 1) * sizeof *np);
    if (!np) return kc_fail(e, KC_ERUNTIME, "out of memory");
    ix->path = np;
    if (!(np[ix->n] = strdup(p))) return kc_fail(e, KC_ERUNTIME, "out of memory");
    ix->n++;
    return KC_OK;
}

/* Every file given, folders expanded to their images (sorted, walked down). */
static int load_image_inputs(kc_session *s, predict_args *a, kc_array *x, kc_error *e) {
    kc_image_index *all = &a->images;
    int rc = KC_OK;
    for (int j = 0; !rc && j < a->ninputs; j++) {
        if (a->inputs[j].name[0] && strcmp(a->inputs[j].name, s->model->inputs[0].name))
            return kc_fail(e, KC_ECONFIG, "--input %s=...: the model has no input '%s'",
                           a->inputs[j].name, a->inputs[j].name);
        if (!is_dir(a->inputs[j].value)) {
            rc = add_path(all, a->inputs[j].value, e);
            continue;
        }
        kc_text_dir_opts o = {0};
        kc_image_index ix;
        if ((rc = kc_image_index_directory(a->inputs[j].value, &o, &ix, e))) break;
        for (int64_t i = 0; !rc && i < ix.n; i++)
            rc = add_path(all, ix.path[i], e);
        kc_image_index_free(&ix);
    }
    const kc_source_spec *src = kc_config_image_source(s->cfg);
    if (!rc) rc = kc_image_load_all((const char *const *)all->path, all->n, &src->image, x, e);
    if (!rc) rc = fit_input(s, 0, x, all->path[0], e);
    return rc;
}

/* file: class p, class p, ... for every image, the most likely first. */
static void print_top(const kc_session *s, const predict_args *a, const pred_set *ps,
                      int64_t rows) {
    const kc_data_spec *d = &s->cfg->data;
    const float *p = ps->v[0];
    int64_t cols = set_cols(ps, 0);
    int top = a->top < cols ? a->top : (int)cols;
    for (int64_t r = 0; r < rows && !ferror(stdout); r++) {
        const float *v = p + r * cols;
        printf("%s:", a->images.path[r]);
        for (int k = 0, used[64] = {0}; k < top && k < 64; k++) {
            int64_t best = -1;
            for (int64_t c = 0; c < cols; c++) {
                int taken = 0;
                for (int q = 0; q < k; q++)
                    taken |= used[q] == c;
                if (!taken && (best < 0 || v[c] > v[best])) best = c;
            }
            used[k] = (int)best;
            printf("%s %s %.4f", k ? "," : "", d->image_classes[best], v[best]);
        }
        putchar('\n');
    }
}

/* The top classes replace the CSV when the classes are known and fit the
 * output, unless --layer or --logits chose what to write. */
static int prints_classes(const kc_session *s, const predict_args *a, const pred_set *ps) {
    const kc_data_spec *d = &s->cfg->data;
    return a->images.n && !a->noutputs && !a->nlayers && !a->logits && ps->n == 1 &&
           d->image_classes && set_cols(ps, 0) == d->nimage_classes;
}

/* Matches --input/--key arguments to the model's inputs: x[i] feeds input i. */
static int load_inputs(kc_session *s, predict_args *a, kc_array *x, kc_error *e) {
    const kc_model *m = s->model;
    if (image_inputs(s, a)) return load_image_inputs(s, a, x, e);
    if (a->ninputs != m->ninputs)
        return kc_fail(e, KC_ECONFIG,
                       "the model has %d input%s; give one --input NAME=FILE for each", m->ninputs,
                       m->ninputs == 1 ? "" : "s");
    for (int j = 0; j < a->ninputs; j++) {
        int i = 0;
        if (a->inputs[j].name[0] && (i = kc_model_input_index(m, a->inputs[j].name)) < 0)
            return kc_fail(e, KC_ECONFIG, "--input %s=...: the model has no input '%s'",
                           a->inputs[j].name, a->inputs[j].name);
        if (!a->inputs[j].name[0] && m->ninputs > 1)
            return kc_fail(e, KC_ECONFIG,
                           "the model has %d inputs: name each, e.g. --input %s=FILE", m->ninputs,
                           m->inputs[0].name);
        if (x[i].data)
            return kc_fail(e, KC_ECONFIG, "input '%s' is given twice", m->inputs[i].name);
        const char *key = NULL;
        for (int k = 0; k < a->nkeys; k++)
            if (!a->keys[k].name[0] || !strcmp(a->keys[k].name, m->inputs[i].name))
                key = a->keys[k].value;
        int rc = is_raw_text(s, a->inputs[j].value)
                     ? load_text_input(s, a->inputs[j].value, &x[i], e)
                     : load_input(a->inputs[j].value, key, &x[i], e);
        if (!rc) rc = fit_input(s, i, &x[i], a->inputs[j].value, e);
        if (rc) return rc;
    }
    return KC_OK;
}

/* "--output X=...: the model has no output 'X'", or for --layer the names chosen. */
static int no_such_output(const pred_set *p, const char *name, kc_error *e) {
    if (!p->layers)
        return kc_fail(e, KC_ECONFIG, "--output %s=...: the model has no output '%s'", name, name);
    char list[600] = "";
    size_t used = 0;
    for (int k = 0; k < p->n && used < sizeof list - 170; k++)
        used +=
            (size_t)snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "", p->name[k]);
    return kc_fail(e, KC_ECONFIG, "--output %s=...: --layer chose no '%s' (it chose: %s)", name,
                   name, list);
}

static int write_outputs(const predict_args *a, const pred_set *p, int64_t rows, kc_error *e) {
    if (a->noutputs == 0) {
        write_csv(stdout, p, rows); /* kc_cli_finish checks standard output */
        return KC_OK;
    }
    if (a->noutputs == 1 && !a->outputs[0].name[0]) {
        const char *path = a->outputs[0].value;
        if (p->n == 1) return write_one(p, 0, rows, path, e);
        if (ends_with(path, ".npy"))
            return kc_fail(e, KC_ECONFIG,
                           "%s %d %s: name each, e.g. --output %s=FILE.npy, or write one .csv "
                           "holding them side by side",
                           p->layers ? "--layer chose" : "the model has", p->n,
                           p->layers ? "tensors" : "outputs", p->name[0]);
        return write_all_csv(p, rows, path, e);
    }
    for (int j = 0; j < a->noutputs; j++) {
        if (!a->outputs[j].name[0] && p->n > 1)
            return kc_fail(e, KC_ECONFIG,
                           "--output %s: %s %d %s; name each file, e.g. --output %s=FILE",
                           a->outputs[j].value, p->layers ? "--layer chose" : "the model has", p->n,
                           p->layers ? "tensors" : "outputs", p->name[0]);
        int k = a->outputs[j].name[0] ? set_index(p, a->outputs[j].name) : 0;
        if (k < 0) return no_such_output(p, a->outputs[j].name, e);
        int rc = write_one(p, k, rows, a->outputs[j].value, e);
        if (rc) return rc;
    }
    return KC_OK;
}

/* The tensors --layer or --logits chose, in the order given. */
static int choose_tensors(const kc_model *m, const predict_args *a, kc_model_tensor *t, int *nt,
                          kc_error *e) {
    *nt = 0;
    if (a->logits) {
        for (int k = 0; k < m->noutputs; k++)
            t[(*nt)++] = kc_model_output_logits(m, k);
        return KC_OK;
    }
    for (int j = 0; j < a->nlayers; j++) {
        int first = *nt;
        if (kc_model_find_tensors(m, a->layers[j], t, KC_MODEL_MAX_IO, nt, e))
            return kc_error_prefix(e, "--layer %s", a->layers[j]);
        for (int q = first; q < *nt; q++)
            for (int r = 0; r < q; r++)
                if (t[r].node == t[q].node && t[r].tensor == t[q].tensor)
                    return kc_fail(e, KC_ECONFIG, "--layer %s: '%s' is chosen twice", a->layers[j],
                                   t[q].name);
    }
    return KC_OK;
}

/* Runs the model on the inputs and fills *p with what is to be written. */
static int predict_set(kc_session *s, const predict_args *a, const kc_array *x, pred_set *p,
                       int *usage, kc_error *e) {
    const kc_model *m = s->model;
    const kc_array *xs[KC_MODEL_MAX_IO];
    for (int i = 0; i < m->ninputs; i++)
        xs[i] = &x[i];
    kc_model_tensor t[KC_MODEL_MAX_IO];
    memset(t, 0, sizeof t);
    int nt = 0;
    if (a->nlayers || a->logits) {
        int rc = choose_tensors(m, a, t, &nt, e);
        *usage = rc != 0;
        if (rc) return rc;
    } else {
        for (int k = 0; k < m->noutputs; k++, nt++) {
            snprintf(t[k].name, sizeof t[k].name, "%s", m->outputs[k].name);
            t[k].node = m->outputs[k].node;
            t[k].tensor = m->outputs[k].tensor;
        }
    }
    p->n = nt;
    p->layers = a->nlayers > 0;
    for (int k = 0; k < nt; k++) {
        snprintf(p->name[k], sizeof p->name[k], "%s", t[k].name);
        p->shape[k] = *kc_model_tensor_shape(m, t[k].node, t[k].tensor);
    }
    if (a->nlayers || a->logits) return kc_predict_tensors(s, xs, t, nt, p->v, e);
    return kc_predict_n(s, xs, p->v, e);
}

/* Before anything runs: every --output file can be written. */
static int check_outputs(const predict_args *a, kc_error *e) {
    for (int j = 0; j < a->noutputs; j++) {
        int rc = kc_cli_prepare_output(a->outputs[j].value, "--output file", e);
        if (rc) return rc;
    }
    return KC_OK;
}

static int parse_args(int argc, char **argv, kc_run_opts *o, predict_args *a) {
    static const struct option opts[] = {{"input", required_argument, 0, O_INPUT},
                                         {"output", required_argument, 0, O_OUTPUT_FILE},
                                         {"key", required_argument, 0, O_KEY},
                                         {"top", required_argument, 0, O_TOP},
                                         {"layer", required_argument, 0, O_LAYER},
                                         {"logits", no_argument, 0, O_LOGITS},
                                         {"weights", required_argument, 0, O_WEIGHTS},
                                         {"batch-size", required_argument, 0, KC_OPT_BATCH},
                                         {"threads", required_argument, 0, KC_OPT_THREADS},
                                         {"backend", required_argument, 0, KC_OPT_BACKEND},
                                         {"device", required_argument, 0, KC_OPT_DEVICE},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    long long verbose = -1;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return -1;
        }
        if (c == '?' || c == ':')
            return kc_cli_usage_error("predict", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        if (c == O_TOP) {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 64)
                return kc_cli_usage_error("predict", "--top takes 1..64, got '%s'", optarg);
            a->top = (int)v;
            continue;
        }
        if (c == O_LOGITS) {
            a->logits = 1;
            continue;
        }
        if (c == O_WEIGHTS) {
            a->weights = optarg;
            continue;
        }
        if (c == O_LAYER) {
            if (a->nlayers >= KC_MODEL_MAX_IO)
                return kc_cli_usage_error("predict", "at most %d --layer options", KC_MODEL_MAX_IO);
            if (!*optarg) return kc_cli_usage_error("predict", "--layer needs a layer name");
            a->layers[a->nlayers++] = optarg;
            continue;
        }
        named_arg *list = c == O_INPUT         ? a->inputs
                          : c == O_KEY         ? a->keys
                          : c == O_OUTPUT_FILE ? a->outputs
                                               : NULL;
        int *n = c == O_INPUT ? &a->ninputs : c == O_KEY ? &a->nkeys : &a->noutputs;
        if (list) {
            if (*n >= KC_MODEL_MAX_IO)
                return kc_cli_usage_error(
                    "predict", "at most %d of each of --input, --key, --output", KC_MODEL_MAX_IO);
            split_named(optarg, &list[(*n)++]);
        } else if (kc_cli_parse_run_opt("predict", c, optarg, o, &verbose)) {
            return 2;
        }
    }
    if (optind != argc - 1) return kc_cli_usage_error("predict", "expected one MODEL file");
    if (kc_cli_run_opts_finish("predict", o)) return 2;
    if (!a->ninputs) return kc_cli_usage_error("predict", "--input FILE is required");
    if (a->logits && a->nlayers)
        return kc_cli_usage_error("predict", "--logits and --layer cannot be combined");
    for (int j = 0; j < a->noutputs; j++)
        if (!ends_with(a->outputs[j].value, ".csv") && !ends_with(a->outputs[j].value, ".npy"))
            return kc_cli_usage_error("predict", "--output must end in .csv or .npy, got '%s'",
                                      a->outputs[j].value);
    return 0;
}

int kc_cmd_predict(int argc, char **argv) {
    kc_run_opts o;
    kc_cli_run_opts_init(&o);
    predict_args a;
    memset(&a, 0, sizeof a);
    a.top = 3;
    int st = parse_args(argc, argv, &o, &a);
    if (st) return st < 0 ? 0 : st;
    const char *model = argv[optind];
    kc_error e = {0};
    kc_config *cfg = NULL;
    int carries;
    if (kc_cli_load_config(model, &cfg, &carries, &e)) return kc_cli_report("predict", &e);
    if (!carries && !a.weights) {
        kc_config_free(cfg);
        return kc_cli_usage_error("predict", "%s is a model file: give its weights with --weights",
                                  model);
    }
    kc_session s;
    kc_array x[KC_MODEL_MAX_IO];
    pred_set ps;
    int status = 0, usage = 0;
    memset(&s, 0, sizeof s);
    memset(x, 0, sizeof x);
    memset(&ps, 0, sizeof ps);
    kc_cli_warn_mask_dropped("predict", cfg);
    if (check_outputs(&a, &e) || kc_session_open(&s, cfg, &o, 0, 0, &e) ||
        kc_weights_load(&s, a.weights ? a.weights : model, &e) || load_inputs(&s, &a, x, &e)) {
        status = kc_cli_report("predict", &e);
    } else if (predict_set(&s, &a, x, &ps, &usage, &e)) {
        status = usage ? kc_cli_usage_error("predict", "%s", e.msg) : kc_cli_report("predict", &e);
    } else if (prints_classes(&s, &a, &ps)) {
        print_top(&s, &a, &ps, kc_array_rows(&x[0]));
    } else if (write_outputs(&a, &ps, kc_array_rows(&x[0]), &e)) {
        status = kc_cli_report("predict", &e);
    }
    for (int k = 0; k < KC_MODEL_MAX_IO; k++)
        free(ps.v[k]);
    for (int i = 0; i < KC_MODEL_MAX_IO; i++)
        kc_array_free(&x[i]);
    kc_image_index_free(&a.images);
    kc_session_close(&s);
    kc_config_free(cfg);
    return status;
}
