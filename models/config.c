#include "models/config.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const top_keys[] = {"model", "compile", "data", "fit", NULL};
static const char *const compile_keys[] = {"optimizer", "loss", "metrics", NULL};
static const char *const data_keys[] = {"dataset", "path", "train", "test", "validation", "rescale",
                                        "offset", "reshape", "one_hot", "num_classes", NULL};
static const char *const source_keys[] = {"x", "y", "csv", "label_column", "header", NULL};
static const char *const file_keys[] = {"path", "key", NULL};
static const char *const fit_keys[] = {"epochs", "batch_size", "shuffle", "seed", "validation_split",
                                       "steps_per_epoch", "verbose", NULL};
static const char *const datasets[] = {"mnist", "fashion_mnist", NULL};

static void source_free(kc_source_spec *s) {
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
static int resolve_path(const char *base_dir, kc_node *n, const char *what, char **out, kc_error *e) {
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
static int parse_file(const char *base, kc_node *n, const char *what, char **path, char **key, kc_error *e) {
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

static int parse_source(const char *base, kc_node *n, const char *what, kc_source_spec *s, kc_error *e) {
    s->node = n;
    s->csv_header = -1;
    if (want_map(n, what, e)) return e->code;
    kc_node *x = kc_map_get(n, "x"), *y = kc_map_get(n, "y"), *csv = kc_map_get(n, "csv");
    kc_node *lc = kc_map_get(n, "label_column"), *hd = kc_map_get(n, "header");
    int rc;
    if (csv) {
        if (x || y)
            return kc_node_fail(e, x ? x : y, "%s: give either `csv:` or `x:`/`y:`, not both", what);
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
        if (lc || hd) return kc_node_fail(e, lc ? lc : hd, "%s: label_column and header apply to `csv:` sources", what);
        if ((rc = parse_file(base, x, "x", &s->x_path, &s->x_key, e))) return rc;
        if ((rc = parse_file(base, y, "y", &s->y_path, &s->y_key, e))) return rc;
    }
    char where[64];
    snprintf(where, sizeof where, "data.%s", what);
    return kc_map_check_unused(n, where, source_keys, e);
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
        for (int i = 0; datasets[i]; i++) ok |= !strcmp(v->str, datasets[i]);
        if (!ok) {
            const char *near = kc_closest(v->str, datasets, 2);
            return kc_node_fail(e, v, "unknown dataset '%s'%s%s%s (kerasc knows mnist and fashion_mnist; other data "
                                      "goes in `train:`/`test:` as IDX, NPY, NPZ or CSV files)",
                                v->str, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
        d->dataset = strdup(v->str);
        d->dataset_node = v;
    }
    if ((v = kc_map_get(n, "path"))) {
        if (!d->dataset) return kc_node_fail(e, v, "`path:` locates a named dataset; add `dataset:` or use `train:`");
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
    if ((v = kc_map_get(n, "reshape"))) {
        if (v->kind != KC_NODE_SEQ || v->n == 0 || v->n > KC_MAX_RANK)
            return kc_node_fail(e, v, "reshape must be a list of dimensions, e.g. [28, 28, 1]");
        d->reshape.rank = (int)v->n;
        for (size_t i = 0; i < v->n; i++) {
            long long x;
            if ((rc = kc_node_int(v->items[i], &x, e))) return rc;
            if (x < 1) return kc_node_fail(e, v->items[i], "reshape dimensions must be >= 1");
            d->reshape.d[i] = x;
        }
        d->has_reshape = 1;
        d->reshape_node = v;
    }
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
        return kc_node_fail(e, n, "the data section needs `dataset:` (mnist, fashion_mnist) or `train:`/`test:` files");
    return kc_map_check_unused(n, "the data section", data_keys, e);
}

static int fit_int(kc_node *map, const char *key, long long min, long long *out, kc_error *e) {
    kc_node *v = kc_map_get(map, key);
    if (!v || kc_node_is_null(v)) return KC_OK;
    int rc = kc_node_int(v, out, e);
    if (rc) return kc_node_fail(e, v, "fit.%s: expected an integer, got %s%s%s", key,
                                v->kind == KC_NODE_SCALAR ? "'" : "", v->kind == KC_NODE_SCALAR ? v->str : kc_node_kind_name(v),
                                v->kind == KC_NODE_SCALAR ? "'" : "");
    if (*out < min) return kc_node_fail(e, v, "fit.%s must be >= %lld, got %lld", key, min, *out);
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
    if ((rc = fit_int(n, "epochs", 1, &f->epochs, e))) return rc;
    if ((rc = fit_int(n, "batch_size", 1, &f->batch_size, e))) return rc;
    if ((rc = fit_int(n, "steps_per_epoch", 1, &f->steps_per_epoch, e))) return rc;
    if ((rc = fit_int(n, "seed", 0, &f->seed, e))) return rc;
    kc_node *v;
    if ((v = kc_map_get(n, "shuffle")) && (rc = kc_node_bool(v, &f->shuffle, e))) return rc;
    if ((v = kc_map_get(n, "validation_split"))) {
        if ((rc = kc_node_float(v, &f->validation_split, e))) return rc;
        if (!(f->validation_split >= 0 && f->validation_split < 1))
            return kc_node_fail(e, v, "fit.validation_split must be in [0, 1), got %g", f->validation_split);
        f->validation_split_node = v;
    }
    if ((v = kc_map_get(n, "verbose"))) {
        long long vb;
        if (v->kind == KC_NODE_SCALAR && !strcmp(v->str, "auto")) {
            f->verbose = -1;
        } else {
            if ((rc = kc_node_int(v, &vb, e))) return kc_node_fail(e, v, "fit.verbose must be 0, 1, 2 or auto");
            if (vb < 0 || vb > 2) return kc_node_fail(e, v, "fit.verbose must be 0, 1, 2 or auto, got %lld", vb);
            f->verbose = (int)vb;
        }
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
    char stem[128];
    stem_of(name, stem, sizeof stem);
    if ((rc = kc_model_parse(model, NULL, &c->model, e))) goto fail;
    /* runs/<model name>, or the file's name when the model is unnamed */
    snprintf(c->run_name, sizeof c->run_name, "%s", kc_map_get(model, "name") ? c->model->name : stem);

    kc_node *compile = kc_map_get(root, "compile");
    if (compile) {
        c->compile_node = compile;
        if ((rc = want_map(compile, "the compile section", e))) goto fail;
        c->optimizer = kc_map_get(compile, "optimizer");
        c->loss = kc_map_get(compile, "loss");
        c->metrics = kc_map_get(compile, "metrics");
        if (c->metrics && kc_node_is_null(c->metrics)) c->metrics = NULL;
        if (c->metrics && c->metrics->kind == KC_NODE_MAP) {
            rc = kc_node_fail(e, c->metrics, "metrics must be a list, e.g. [accuracy]");
            goto fail;
        }
        if ((rc = kc_map_check_unused(compile, "the compile section", compile_keys, e))) goto fail;
    }
    c->data.rescale = 1.0;
    c->data.one_hot = -1;
    kc_node *data = kc_map_get(root, "data");
    if (data && (rc = parse_data(base_dir, data, &c->data, e))) goto fail;
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
