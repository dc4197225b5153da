#include "models/config.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/callbacks.h"
#include "models/keras_import.h"

static const char *const top_keys[] = {"model", "compile", "data", "fit", NULL};
static const char *const compile_keys[] = {"optimizer", "loss", "loss_weights", "metrics", NULL};
static const char *const data_keys[] = {"dataset", "path",    "train",   "test",    "validation",
                                        "rescale", "offset",  "reshape", "one_hot", "num_classes",
                                        "inputs",  "targets", NULL};
static const char *const source_keys[] = {"x", "y", "csv", "label_column", "header", NULL};
static const char *const file_keys[] = {"path", "key", NULL};
static const char *const fit_keys[] = {"epochs",  "batch_size",       "shuffle",
                                       "seed",    "validation_split", "steps_per_epoch",
                                       "verbose", "callbacks",        NULL};
static const char *const datasets[] = {"mnist", "fashion_mnist", NULL};

static void source_free(kc_source_spec *s) {
    for (int i = 0; i < s->nnamed; i++) {
        free(s->named[i].path);
        free(s->named[i].key);
    }
    free(s->x_path);
    free(s->x_key);
    free(s->y_path);
    free(s->y_key);
    free(s->csv_path);
    free(s->label_column);
}

void kc_config_free(kc_config *c) {
    if (!c) return;
    kc_model_free(c->model);
    source_free(&c->data.train);
    source_free(&c->data.test);
    source_free(&c->data.validation);
    free(c->data.dataset);
    free(c->data.path);
    kc_doc_free(c->doc);
    kc_doc_free(c->model_doc);
    free(c->path);
    free(c);
}

static int want_map(kc_node *n, const char *what, kc_error *e) {
    if (n->kind != KC_NODE_MAP)
        return kc_node_fail(e, n, "%s must be a mapping, got %s", what, kc_node_kind_name(n));
    return KC_OK;
}

static int want_str(kc_node *n, const char *what, kc_error *e) {
    if (n->kind != KC_NODE_SCALAR || kc_node_is_null(n))
        return kc_node_fail(e, n, "%s must be a string, got %s", what, kc_node_kind_name(n));
    return KC_OK;
}

/* Relative paths are relative to the directory of the model file; ~ is $HOME. */
static int resolve_path(const char *base_dir, kc_node *n, const char *what, char **out,
                        kc_error *e) {
    if (want_str(n, what, e)) return e->code;
    const char *s = n->str;
    char buf[PATH_MAX];
    if (s[0] == '~' && (s[1] == '/' || !s[1])) {
        const char *home = getenv("HOME");
        snprintf(buf, sizeof buf, "%s%s", home ? home : "", s + 1);
    } else if (s[0] == '/' || !base_dir || !*base_dir) {
        snprintf(buf, sizeof buf, "%s", s);
    } else {
        snprintf(buf, sizeof buf, "%s/%s", base_dir, s);
    }
    *out = strdup(buf);
    return *out ? KC_OK : kc_fail(e, KC_ERUNTIME, "out of memory");
}

/* `x: file.npy` or `x: {path: file.npz, key: x_train}` */
static int parse_file(const char *base, kc_node *n, const char *what, char **path, char **key,
                      kc_error *e) {
    if (n->kind == KC_NODE_MAP) {
        kc_node *p = kc_map_get(n, "path"), *k = kc_map_get(n, "key");
        if (!p) return kc_node_fail(e, n, "%s needs `path:`", what);
        if (resolve_path(base, p, what, path, e)) return e->code;
        if (k) {
            if (want_str(k, "key", e)) return e->code;
            *key = strdup(k->str);
        }
        return kc_map_check_unused(n, what, file_keys, e);
    }
    return resolve_path(base, n, what, path, e);
}

/* `x: {image: a.npy, features: {path: b.npz, key: f}}`: one array per name. */
static int parse_named(const char *base, kc_node *map, int is_x, kc_source_spec *s, kc_error *e) {
    if (map->n == 0) return kc_node_fail(e, map, "%s: an empty mapping", is_x ? "x" : "y");
    for (size_t i = 0; i < map->n; i++) {
        kc_node *k = kc_map_key(map, i), *v = kc_map_val(map, i);
        k->used = 1;
        if (s->nnamed >= KC_DATA_MAX_ARRAYS)
            return kc_node_fail(e, k, "a source holds at most %d named arrays", KC_DATA_MAX_ARRAYS);
        if (!*k->str || strlen(k->str) >= sizeof s->named[0].name)
            return kc_node_fail(e, k,
                                "array names must be non-empty and shorter than 128 characters");
        for (int j = 0; j < s->nnamed; j++)
            if (!strcmp(s->named[j].name, k->str))
                return kc_node_fail(e, k, "array '%s' is named twice in this source", k->str);
        kc_array_spec *a = &s->named[s->nnamed++];
        snprintf(a->name, sizeof a->name, "%s", k->str);
        a->is_x = is_x;
        a->node = v;
        if (parse_file(base, v, k->str, &a->path, &a->key, e)) return e->code;
    }
    return KC_OK;
}

/* A side (x or y) is one file, `{path:, key:}`, or a mapping of names to files. */
static int parse_side(const char *base, kc_node *n, int is_x, kc_source_spec *s, kc_error *e) {
    if (n->kind == KC_NODE_MAP && !kc_map_get(n, "path")) return parse_named(base, n, is_x, s, e);
    return is_x ? parse_file(base, n, "x", &s->x_path, &s->x_key, e)
                : parse_file(base, n, "y", &s->y_path, &s->y_key, e);
}

static int parse_source(const char *base, kc_node *n, const char *what, kc_source_spec *s,
                        kc_error *e) {
    s->node = n;
    s->csv_header = -1;
    if (want_map(n, what, e)) return e->code;
    kc_node *x = kc_map_get(n, "x"), *y = kc_map_get(n, "y"), *csv = kc_map_get(n, "csv");
    kc_node *lc = kc_map_get(n, "label_column"), *hd = kc_map_get(n, "header");
    int rc;
    if (csv) {
        if (x || y)
            return kc_node_fail(e, x ? x : y, "%s: give either `csv:` or `x:`/`y:`, not both",
                                what);
        if ((rc = resolve_path(base, csv, "csv", &s->csv_path, e))) return rc;
        if (lc) {
            if ((rc = want_str(lc, "label_column", e))) return rc;
            s->label_column = strdup(lc->str);
        }
        if (hd && !kc_node_is_null(hd)) {
            if (hd->kind == KC_NODE_SCALAR && !strcmp(hd->str, "auto"))
                s->csv_header = -1;
            else if ((rc = kc_node_bool(hd, &s->csv_header, e)))
                return rc;
        }
    } else {
        if (!x || !y) return kc_node_fail(e, n, "%s needs both `x:` and `y:` (or `csv:`)", what);
        if (lc || hd)
            return kc_node_fail(e, lc ? lc : hd,
                                "%s: label_column and header apply to `csv:` sources", what);
        if ((rc = parse_side(base, x, 1, s, e))) return rc;
        if ((rc = parse_side(base, y, 0, s, e))) return rc;
    }
    char where[64];
    snprintf(where, sizeof where, "data.%s", what);
    return kc_map_check_unused(n, where, source_keys, e);
}

/* reshape: [28, 28, 1] */
static int parse_dims(kc_node *v, kc_shape *out, kc_error *e) {
    if (v->kind != KC_NODE_SEQ || v->n == 0 || v->n > KC_MAX_RANK)
        return kc_node_fail(e, v, "reshape must be a list of dimensions, e.g. [28, 28, 1]");
    out->rank = (int)v->n;
    for (size_t i = 0; i < v->n; i++) {
        long long x;
        int rc = kc_node_int(v->items[i], &x, e);
        if (rc) return rc;
        if (x < 1) return kc_node_fail(e, v->items[i], "reshape dimensions must be >= 1");
        out->d[i] = x;
    }
    return KC_OK;
}

static int parse_data(const char *base, kc_node *n, kc_data_spec *d, kc_error *e) {
    d->node = n;
    d->rescale = 1.0;
    d->one_hot = -1;
    if (want_map(n, "the data section", e)) return e->code;
    int rc;
    kc_node *v;
    if ((v = kc_map_get(n, "dataset"))) {
        if ((rc = want_str(v, "dataset", e))) return rc;
        int ok = 0;
        for (int i = 0; datasets[i]; i++)
            ok |= !strcmp(v->str, datasets[i]);
        if (!ok) {
            const char *near = kc_closest(v->str, datasets, 2);
            return kc_node_fail(
                e, v,
                "unknown dataset '%s'%s%s%s (kerasc knows mnist and fashion_mnist; other data "
                "goes in `train:`/`test:` as IDX, NPY, NPZ or CSV files)",
                v->str, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
        d->dataset = strdup(v->str);
        d->dataset_node = v;
    }
    if ((v = kc_map_get(n, "path"))) {
        if (!d->dataset)
            return kc_node_fail(e, v,
                                "`path:` locates a named dataset; add `dataset:` or use `train:`");
        if ((rc = resolve_path(base, v, "path", &d->path, e))) return rc;
    }
    if ((v = kc_map_get(n, "train"))) {
        if (d->dataset) return kc_node_fail(e, v, "give either `dataset:` or `train:`, not both");
        if ((rc = parse_source(base, v, "train", &d->train, e))) return rc;
        d->has_train = 1;
    }
    if ((v = kc_map_get(n, "test"))) {
        if (d->dataset) return kc_node_fail(e, v, "give either `dataset:` or `test:`, not both");
        if ((rc = parse_source(base, v, "test", &d->test, e))) return rc;
        d->has_test = 1;
    }
    if ((v = kc_map_get(n, "validation"))) {
        if (v->kind == KC_NODE_SCALAR && !strcmp(v->str, "test")) {
            d->validation_is_test = 1;
        } else {
            if ((rc = parse_source(base, v, "validation", &d->validation, e))) return rc;
            d->has_validation = 1;
        }
    }
    if ((v = kc_map_get(n, "rescale")) && (rc = kc_node_float(v, &d->rescale, e))) return rc;
    if ((v = kc_map_get(n, "offset")) && (rc = kc_node_float(v, &d->offset, e))) return rc;
    if ((v = kc_map_get(n, "reshape")) && v->kind != KC_NODE_MAP) {
        if ((rc = parse_dims(v, &d->reshape, e))) return rc;
        d->has_reshape = 1;
        d->reshape_node = v;
    } else if (v) {
        d->reshape_node = v; /* per input: checked against the model in resolve_feeds */
    }
    d->inputs_node = kc_map_get(n, "inputs");
    d->targets_node = kc_map_get(n, "targets");
    if ((v = kc_map_get(n, "one_hot"))) {
        if (v->kind == KC_NODE_SCALAR && !strcmp(v->str, "auto"))
            d->one_hot = -1;
        else if ((rc = kc_node_bool(v, &d->one_hot, e)))
            return rc;
    }
    if ((v = kc_map_get(n, "num_classes"))) {
        if ((rc = kc_node_int(v, &d->num_classes, e))) return rc;
        if (d->num_classes < 1) return kc_node_fail(e, v, "num_classes must be >= 1");
    }
    if (!d->dataset && !d->has_train && !d->has_test)
        return kc_node_fail(
            e, n,
            "the data section needs `dataset:` (mnist, fashion_mnist) or `train:`/`test:` files");
    return kc_map_check_unused(n, "the data section", data_keys, e);
}

/* --------------------------------------------------- feeding the model --- */

/* Does the source hold array `name`? */
static int source_has(const kc_source_spec *s, const char *name) {
    if (!strcmp(name, "x") && (s->x_path || s->csv_path)) return 1;
    if (!strcmp(name, "y") && (s->y_path || s->csv_path)) return 1;
    for (int i = 0; i < s->nnamed; i++)
        if (!strcmp(s->named[i].name, name)) return 1;
    return 0;
}

static void source_names(const kc_source_spec *s, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    if (s->x_path || s->csv_path) used += (size_t)snprintf(buf + used, n - used, "x");
    if (s->y_path || s->csv_path)
        used += (size_t)snprintf(buf + used, n - used, "%sy", used ? ", " : "");
    for (int i = 0; i < s->nnamed && used + 4 < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", s->named[i].name);
}

typedef struct source_ref {
    const kc_source_spec *s;
    const char *what;
} source_ref;

static int present_sources(const kc_data_spec *d, source_ref *out) {
    int n = 0;
    if (d->has_train) out[n++] = (source_ref){&d->train, "train"};
    if (d->has_test) out[n++] = (source_ref){&d->test, "test"};
    if (d->has_validation) out[n++] = (source_ref){&d->validation, "validation"};
    return n;
}

/* Every source must hold the array an input or output takes. */
static int check_array(const kc_data_spec *d, const char *name, const kc_node *at, const char *io,
                       kc_error *e) {
    if (d->dataset) {
        if (!strcmp(name, "x") || !strcmp(name, "y")) return KC_OK;
        return kc_node_fail(e, at, "%s takes array '%s', but the dataset %s has only x and y", io,
                            name, d->dataset);
    }
    source_ref src[3];
    int n = present_sources(d, src);
    for (int i = 0; i < n; i++)
        if (!source_has(src[i].s, name)) {
            char have[512];
            source_names(src[i].s, have, sizeof have);
            return kc_node_fail(e, at,
                                "%s takes array '%s', but data.%s (%s:%d:%d) has no such array "
                                "(it has: %s)",
                                io, name, src[i].what, src[i].s->node->file, src[i].s->node->line,
                                src[i].s->node->col, have);
        }
    return KC_OK;
}

/* A named x (want_x) or y array called `name` in the sources, for the default feed. */
static int named_default(const kc_data_spec *d, const char *name, int want_x) {
    source_ref src[3];
    int n = present_sources(d, src);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < src[i].s->nnamed; j++)
            if (!strcmp(src[i].s->named[j].name, name) && src[i].s->named[j].is_x == want_x)
                return 1;
    return 0;
}

/* Keys of `inputs:`/`targets:`/`reshape:` must name model inputs (outputs). */
static int check_io_keys(kc_node *map, const char *where, const char *const *names, int n,
                         const char *kind, kc_error *e) {
    if (map->kind != KC_NODE_MAP)
        return kc_node_fail(e, map, "data.%s must be a mapping of model %s to arrays, e.g. {%s: x}",
                            where, kind, n ? names[0] : "input");
    for (size_t i = 0; i < map->n; i++) {
        kc_node *k = kc_map_key(map, i);
        int known = 0;
        for (int j = 0; j < n; j++)
            known |= !strcmp(names[j], k->str);
        if (known) continue;
        char list[1024] = "";
        size_t used = 0;
        for (int j = 0; j < n && used + 4 < sizeof list; j++)
            used +=
                (size_t)snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", names[j]);
        const char *near = kc_closest(k->str, names, (size_t)n);
        return kc_node_fail(e, k, "data.%s: the model has no %s '%s'%s%s%s (its %s: %s)", where,
                            kind[0] == 'i' ? "input" : "output", k->str,
                            near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "",
                            kind, list);
    }
    return KC_OK;
}

static int resolve_inputs(kc_config *c, kc_error *e) {
    kc_data_spec *d = &c->data;
    const kc_model *m = c->model;
    const char *names[KC_MODEL_MAX_IO];
    for (int i = 0; i < m->ninputs; i++)
        names[i] = m->inputs[i].name;
    kc_node *map = (kc_node *)d->inputs_node;
    int rc;
    if (map && (rc = check_io_keys(map, "inputs", names, m->ninputs, "inputs", e))) return rc;
    for (int i = 0; i < m->ninputs; i++) {
        kc_feed_spec *f = &d->inputs[i];
        kc_node *v = map ? kc_map_get(map, names[i]) : NULL;
        if (v) {
            if ((rc = want_str(v, "an array name", e))) return rc;
            snprintf(f->array, sizeof f->array, "%s", v->str);
            f->node = v;
        } else if (named_default(d, names[i], 1)) {
            snprintf(f->array, sizeof f->array, "%s", names[i]);
        } else if (m->ninputs == 1) {
            snprintf(f->array, sizeof f->array, "x");
        } else {
            return kc_node_fail(e, map ? map : d->node,
                                "model input '%s' takes no data: say which array feeds it, e.g. "
                                "`inputs: {%s: x}` in the data section",
                                names[i], names[i]);
        }
        char io[200];
        snprintf(io, sizeof io, "model input '%s'", names[i]);
        if ((rc = check_array(d, f->array, f->node ? f->node : d->node, io, e))) return rc;
    }
    return KC_OK;
}

static int resolve_targets(kc_config *c, kc_error *e) {
    kc_data_spec *d = &c->data;
    const kc_model *m = c->model;
    const char *names[KC_MODEL_MAX_IO];
    for (int i = 0; i < m->noutputs; i++)
        names[i] = m->outputs[i].name;
    kc_node *map = (kc_node *)d->targets_node;
    int rc;
    if (map && (rc = check_io_keys(map, "targets", names, m->noutputs, "outputs", e))) return rc;
    for (int k = 0; k < m->noutputs; k++) {
        kc_feed_spec *f = &d->targets[k];
        kc_node *v = map ? kc_map_get(map, names[k]) : NULL;
        if (v) {
            if ((rc = want_str(v, "an array name", e))) return rc;
            snprintf(f->array, sizeof f->array, "%s", v->str);
            f->node = v;
        } else if (named_default(d, names[k], 0)) {
            snprintf(f->array, sizeof f->array, "%s", names[k]);
        } else if (m->noutputs == 1) {
            snprintf(f->array, sizeof f->array, "y");
        } else {
            continue; /* fine for an output without loss or metrics; the session checks */
        }
        char io[200];
        snprintf(io, sizeof io, "model output '%s'", names[k]);
        if ((rc = check_array(d, f->array, f->node ? f->node : d->node, io, e))) return rc;
    }
    return KC_OK;
}

static int resolve_reshape(kc_config *c, kc_error *e) {
    kc_data_spec *d = &c->data;
    const kc_model *m = c->model;
    kc_node *v = (kc_node *)d->reshape_node;
    if (!v) return KC_OK;
    if (d->has_reshape) {
        if (m->ninputs > 1)
            return kc_node_fail(e, v,
                                "the model has %d inputs: give reshape per input, e.g. "
                                "`reshape: {%s: [...]}`",
                                m->ninputs, m->inputs[0].name);
        d->inputs[0].has_reshape = 1;
        d->inputs[0].reshape = d->reshape;
        d->inputs[0].reshape_node = v;
        return KC_OK;
    }
    const char *names[KC_MODEL_MAX_IO];
    for (int i = 0; i < m->ninputs; i++)
        names[i] = m->inputs[i].name;
    int rc = check_io_keys(v, "reshape", names, m->ninputs, "inputs", e);
    for (int i = 0; i < m->ninputs && !rc; i++) {
        kc_node *r = kc_map_get(v, names[i]);
        if (!r) continue;
        if ((rc = parse_dims(r, &d->inputs[i].reshape, e))) break;
        d->inputs[i].has_reshape = 1;
        d->inputs[i].reshape_node = r;
    }
    return rc;
}

/* Which array feeds each model input and output, checked against the sources. */
static int resolve_feeds(kc_config *c, kc_error *e) {
    if (!c->data.node) return KC_OK;
    int rc = resolve_inputs(c, e);
    if (!rc) rc = resolve_targets(c, e);
    if (!rc) rc = resolve_reshape(c, e);
    return rc;
}

static int fit_int(kc_node *map, const char *key, long long min, long long max, long long *out,
                   kc_error *e) {
    kc_node *v = kc_map_get(map, key);
    if (!v || kc_node_is_null(v)) return KC_OK;
    int rc = kc_node_int(v, out, e);
    if (rc)
        return kc_node_fail(e, v, "fit.%s: expected an integer, got %s%s%s", key,
                            v->kind == KC_NODE_SCALAR ? "'" : "",
                            v->kind == KC_NODE_SCALAR ? v->str : kc_node_kind_name(v),
                            v->kind == KC_NODE_SCALAR ? "'" : "");
    if (*out < min) return kc_node_fail(e, v, "fit.%s must be >= %lld, got %lld", key, min, *out);
    if (*out > max) return kc_node_fail(e, v, "fit.%s must be <= %lld, got %lld", key, max, *out);
    return KC_OK;
}

static int parse_fit(kc_node *n, kc_fit_spec *f, kc_error *e) {
    f->epochs = 1;
    f->batch_size = 32;
    f->shuffle = 1;
    f->seed = 1337;
    f->verbose = -1;
    if (!n) return KC_OK;
    if (want_map(n, "the fit section", e)) return e->code;
    int rc;
    if ((rc = fit_int(n, "epochs", 1, INT_MAX, &f->epochs, e))) return rc;
    if ((rc = fit_int(n, "batch_size", 1, INT_MAX, &f->batch_size, e))) return rc;
    if ((rc = fit_int(n, "steps_per_epoch", 1, INT_MAX, &f->steps_per_epoch, e))) return rc;
    if ((rc = fit_int(n, "seed", 0, LLONG_MAX, &f->seed, e))) return rc;
    kc_node *v;
    if ((v = kc_map_get(n, "shuffle")) && (rc = kc_node_bool(v, &f->shuffle, e))) return rc;
    if ((v = kc_map_get(n, "validation_split"))) {
        if ((rc = kc_node_float(v, &f->validation_split, e))) return rc;
        if (!(f->validation_split >= 0 && f->validation_split < 1))
            return kc_node_fail(e, v, "fit.validation_split must be in [0, 1), got %g",
                                f->validation_split);
        f->validation_split_node = v;
    }
    if ((v = kc_map_get(n, "verbose"))) {
        long long vb;
        if (v->kind == KC_NODE_SCALAR && !strcmp(v->str, "auto")) {
            f->verbose = -1;
        } else {
            if ((rc = kc_node_int(v, &vb, e)))
                return kc_node_fail(e, v, "fit.verbose must be 0, 1, 2 or auto");
            if (vb < 0 || vb > 2)
                return kc_node_fail(e, v, "fit.verbose must be 0, 1, 2 or auto, got %lld", vb);
            f->verbose = (int)vb;
        }
    }
    if ((v = kc_map_get(n, "callbacks")) && !kc_node_is_null(v)) {
        /* checked here so a mistake is reported before any data is read */
        kc_callbacks *cbs;
        if ((rc = kc_callbacks_parse(v, &cbs, e))) return rc;
        kc_callbacks_free(cbs);
        f->callbacks = v;
    }
    return kc_map_check_unused(n, "the fit section", fit_keys, e);
}

static void stem_of(const char *path, char *out, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, n, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

int kc_config_parse_text(const char *name, const char *base_dir, const char *text, size_t len,
                         kc_config **out, kc_error *e) {
    *out = NULL;
    kc_config *c = calloc(1, sizeof *c);
    if (!c) return kc_fail(e, KC_ERUNTIME, "out of memory");
    c->path = strdup(name);
    int rc = kc_doc_parse(&c->doc, name, text, len, e);
    if (rc) goto fail;
    kc_node *root = c->doc->root;
    kc_node *model = kc_map_get(root, "model");
    if (!model) {
        rc = kc_node_fail(e, root, "the file has no `model:` section");
        goto fail;
    }
    /* `model: model.json` (or .keras): a Keras model description, converted */
    if (model->kind == KC_NODE_SCALAR &&
        (rc = kc_keras_model_node(model, base_dir, &c->model_doc, &model, e)))
        goto fail;
    char stem[128];
    stem_of(name, stem, sizeof stem);
    if ((rc = kc_model_parse(model, NULL, &c->model, e))) goto fail;
    /* runs/<model name>, or the file's name when the model is unnamed */
    snprintf(c->run_name, sizeof c->run_name, "%s",
             kc_map_get(model, "name") ? c->model->name : stem);

    kc_node *compile = kc_map_get(root, "compile");
    if (compile) {
        c->compile_node = compile;
        if ((rc = want_map(compile, "the compile section", e))) goto fail;
        c->optimizer = kc_map_get(compile, "optimizer");
        c->loss = kc_map_get(compile, "loss");
        c->metrics = kc_map_get(compile, "metrics");
        c->loss_weights = kc_map_get(compile, "loss_weights");
        if (c->metrics && kc_node_is_null(c->metrics)) c->metrics = NULL;
        if (c->loss_weights && kc_node_is_null(c->loss_weights)) c->loss_weights = NULL;
        if ((rc = kc_map_check_unused(compile, "the compile section", compile_keys, e))) goto fail;
    }
    c->data.rescale = 1.0;
    c->data.one_hot = -1;
    kc_node *data = kc_map_get(root, "data");
    if (data && (rc = parse_data(base_dir, data, &c->data, e))) goto fail;
    if ((rc = resolve_feeds(c, e))) goto fail;
    if ((rc = parse_fit(kc_map_get(root, "fit"), &c->fit, e))) goto fail;
    if ((rc = kc_map_check_unused(root, "the file", top_keys, e))) goto fail;
    *out = c;
    return KC_OK;
fail:
    kc_config_free(c);
    return rc;
}

int kc_config_load(const char *path, kc_config **out, kc_error *e) {
    kc_doc *d;
    int rc = kc_doc_load(&d, path, e);
    if (rc) return rc;
    char *copy = strdup(path);
    char *dir = copy ? dirname(copy) : ".";
    char abs[PATH_MAX];
    if (!realpath(dir, abs)) snprintf(abs, sizeof abs, "%s", dir);
    rc = kc_config_parse_text(path, abs, d->text, d->text_len, out, e);
    free(copy);
    kc_doc_free(d);
    return rc;
}
