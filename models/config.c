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
static const char *const data_keys[] = {
    "dataset",    "path",       "train",      "test",        "validation", "rescale",
    "offset",     "reshape",    "one_hot",    "num_classes", "inputs",     "targets",
    "text",       "timeseries", "num_words",  "skip_top",    "maxlen",     "seed",
    "start_char", "oov_char",   "index_from", "test_split",  "label_mode", "preprocess_input",
    NULL};
static const char *const source_keys[] = {"x", "y", "csv", "label_column", "header", NULL};
static const char *const text_source_keys[] = {
    "text",      "labels",    "csv",        "text_column", "label_column",     "header",
    "delimiter", "directory", "label_mode", "class_names", "validation_split", "subset",
    "seed",      "shuffle",   "max_length", "records",     "separator",        NULL};
static const char *const text_keys[] = {
    "tokenizer",  "num_words", "filters",     "lower",      "split",
    "char_level", "oov_token", "standardize", "max_tokens", "output_sequence_length",
    "ngrams",     "maxlen",    "padding",     "truncating", "value",
    NULL};
static const char *const image_source_keys[] = {"images",
                                                "labels",
                                                "label_mode",
                                                "class_names",
                                                "color_mode",
                                                "image_size",
                                                "interpolation",
                                                "crop_to_aspect_ratio",
                                                "validation_split",
                                                "subset",
                                                "seed",
                                                "shuffle",
                                                NULL};
static const char *const file_keys[] = {"path", "key", NULL};
static const char *const fit_keys[] = {
    "epochs",  "batch_size", "shuffle",         "seed", "validation_split", "steps_per_epoch",
    "verbose", "callbacks",  "initial_weights", NULL};
static const char *const datasets[] = {"mnist",          "fashion_mnist", "imdb",     "reuters",
                                       "boston_housing", "cifar10",       "cifar100", NULL};
/* load_data's options, in the data section next to `dataset:` */
static const char *const seq_opt_keys[] = {"num_words",  "skip_top",   "maxlen",
                                           "seed",       "start_char", "oov_char",
                                           "index_from", "test_split", NULL};
static const char *const ts_keys[] = {"csv",
                                      "npy",
                                      "header",
                                      "columns",
                                      "target",
                                      "sequence_length",
                                      "sequence_stride",
                                      "sampling_rate",
                                      "shuffle",
                                      "seed",
                                      "train",
                                      "validation",
                                      "test",
                                      NULL};
static const char *const ts_split_keys[] = {"start_index", "end_index", "shuffle", "seed", NULL};
static const char *const ts_target_keys[] = {"column", "columns", "offset", NULL};

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
    free(s->text_path);
    free(s->labels_path);
    free(s->text_column);
    free(s->directory);
    for (int i = 0; s->class_names && i < s->dir.nclass_names; i++)
        free(s->class_names[i]);
    free(s->class_names);
    for (int i = 0; i < s->nrecords; i++)
        free(s->records[i]);
    free(s->records);
    free(s->separator);
    free(s->images);
}

static void ts_columns_free(kc_ts_columns *c) {
    for (int i = 0; i < c->n; i++)
        free(c->name[i]);
    free(c->name);
    free(c->node);
    memset(c, 0, sizeof *c);
}

static void ts_free(kc_ts_spec *t) {
    free(t->csv_path);
    free(t->npy_path);
    free(t->npy_key);
    ts_columns_free(&t->columns);
    ts_columns_free(&t->target);
}

void kc_config_free(kc_config *c) {
    if (!c) return;
    ts_free(&c->data.ts);
    kc_model_free(c->model);
    source_free(&c->data.train);
    source_free(&c->data.test);
    source_free(&c->data.validation);
    free(c->fit.initial_weights);
    free(c->data.dataset);
    free(c->data.path);
    if (c->data.vocab) kc_vocab_free(c->data.vocab);
    free(c->data.vocab);
    for (int i = 0; i < c->data.nimage_classes; i++)
        free(c->data.image_classes[i]);
    free(c->data.image_classes);
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

static int parse_text_source(const char *base, kc_node *n, const char *what, kc_source_spec *s,
                             kc_error *e);
static int parse_image_source(const char *base, kc_node *n, const char *what, kc_source_spec *s,
                              kc_error *e);

static int is_text_source(kc_node *n) {
    static const char *const marks[] = {"text", "text_column", "directory", "records"};
    for (size_t i = 0; i < sizeof marks / sizeof *marks; i++)
        for (size_t k = 0; n->kind == KC_NODE_MAP && k < n->n; k++)
            if (!strcmp(kc_map_key(n, k)->str, marks[i])) return 1;
    return 0;
}

static int parse_source(const char *base, kc_node *n, const char *what, kc_source_spec *s,
                        kc_error *e) {
    s->node = n;
    s->csv_header = -1;
    if (want_map(n, what, e)) return e->code;
    if (kc_map_get(n, "images")) return parse_image_source(base, n, what, s, e);
    if (is_text_source(n)) return parse_text_source(base, n, what, s, e);
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

/* ------------------------------------------------------ text sources --- */

static int opt_str(kc_node *n, const char *key, char **out, kc_error *e) {
    kc_node *v = kc_map_get(n, key);
    if (!v) return KC_OK;
    if (want_str(v, key, e)) return e->code;
    *out = strdup(v->str);
    return *out ? KC_OK : kc_fail(e, KC_ERUNTIME, "out of memory");
}

static int one_of(kc_node *v, const char *what, const char *const *names, int *out, kc_error *e) {
    if (want_str(v, what, e)) return e->code;
    for (int i = 0; names[i]; i++)
        if (!strcmp(v->str, names[i])) return *out = i, KC_OK;
    char list[256] = "";
    size_t used = 0;
    for (int i = 0; names[i]; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
    return kc_node_fail(e, v, "%s must be one of %s, got '%s'", what, list, v->str);
}

/* validation_split, subset, seed, shuffle of a directory or records source. */
static int text_split_keys(kc_node *n, kc_source_spec *s, kc_error *e) {
    kc_node *v;
    int rc;
    if ((v = kc_map_get(n, "validation_split"))) {
        if ((rc = kc_node_float(v, &s->dir.validation_split, e))) return rc;
        if (!(s->dir.validation_split > 0 && s->dir.validation_split < 1))
            return kc_node_fail(e, v, "validation_split must be in (0, 1)");
    }
    if ((v = kc_map_get(n, "subset"))) {
        static const char *const subsets[] = {"both", "training", "validation", NULL};
        if ((rc = one_of(v, "subset", subsets, &s->dir.subset, e))) return rc;
        if (s->dir.subset == 0)
            return kc_node_fail(e, v,
                                "give subset: training in `train:` and subset: validation "
                                "in `validation:` (the same directory and seed)");
        if (s->dir.validation_split <= 0)
            return kc_node_fail(e, v, "subset needs validation_split");
    } else if (s->dir.validation_split > 0) {
        return kc_node_fail(e, kc_map_get(n, "validation_split"),
                            "validation_split needs subset: training or validation");
    }
    long long x;
    if ((v = kc_map_get(n, "seed"))) {
        if ((rc = kc_node_int(v, &x, e))) return rc;
        if (x < 0 || x > UINT32_MAX) return kc_node_fail(e, v, "seed must be in 0..4294967295");
        s->dir.seed = (uint64_t)x;
    }
    if ((v = kc_map_get(n, "shuffle")) && (rc = kc_node_bool(v, &s->dir.shuffle, e))) return rc;
    return KC_OK;
}

static int text_dir(const char *base, kc_node *n, kc_source_spec *s, kc_error *e) {
    kc_node *v;
    int rc;
    s->text_kind = KC_TEXT_SRC_DIRECTORY;
    s->dir.inferred = 1;
    s->dir.shuffle = 1;
    s->dir.seed = 1337;
    if ((rc = resolve_path(base, kc_map_get(n, "directory"), "directory", &s->directory, e)))
        return rc;
    if ((v = kc_map_get(n, "labels")) && kc_node_is_null(v)) {
        s->dir.inferred = 0;
        s->label_mode = KC_LABELS_NONE;
    } else if (v && (v->kind != KC_NODE_SCALAR || strcmp(v->str, "inferred"))) {
        return kc_node_fail(e, v,
                            "a directory's labels are `inferred` (from the subfolders) or null");
    }
    if ((v = kc_map_get(n, "class_names"))) {
        if (v->kind != KC_NODE_SEQ || !v->n)
            return kc_node_fail(e, v, "class_names must be a list of subfolder names");
        s->class_names = calloc(v->n, sizeof *s->class_names);
        if (!s->class_names) return kc_fail(e, KC_ERUNTIME, "out of memory");
        for (size_t i = 0; i < v->n; i++) {
            if (want_str(v->items[i], "a class name", e)) return e->code;
            s->class_names[i] = strdup(v->items[i]->str);
            s->dir.nclass_names = (int)i + 1;
        }
        s->dir.class_names = (const char *const *)s->class_names;
    }
    if ((rc = text_split_keys(n, s, e))) return rc;
    long long x;
    if ((v = kc_map_get(n, "max_length"))) {
        if ((rc = kc_node_int(v, &x, e))) return rc;
        if (x < 1) return kc_node_fail(e, v, "max_length must be >= 1");
        s->dir.max_length = x;
    }
    return KC_OK;
}

static int text_records(const char *base, kc_node *n, kc_source_spec *s, kc_error *e) {
    kc_node *v = kc_map_get(n, "records");
    s->text_kind = KC_TEXT_SRC_RECORDS;
    s->dir.shuffle = 1;
    s->dir.seed = 1337;
    int rc0 = text_split_keys(n, s, e);
    if (rc0) return rc0;
    size_t cnt = v->kind == KC_NODE_SEQ ? v->n : 1;
    if (!cnt || cnt > 100000) return kc_node_fail(e, v, "records: one file or a list of files");
    s->records = calloc(cnt, sizeof *s->records);
    if (!s->records) return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        kc_node *f = v->kind == KC_NODE_SEQ ? v->items[i] : v;
        if (resolve_path(base, f, "a records file", &s->records[i], e)) return e->code;
        s->nrecords = (int)i + 1;
    }
    int rc = opt_str(n, "separator", &s->separator, e);
    if (!rc && !s->separator) s->separator = strdup("%");
    if (!rc && !*s->separator)
        return kc_node_fail(e, kc_map_get(n, "separator"), "separator must not be empty");
    return rc;
}

/* Which keys each text source takes. */
static int text_keys_fit(kc_node *n, const char *what, kc_text_source k, kc_error *e) {
    static const char *const per[][12] = {
        [KC_TEXT_SRC_LINES] = {"text", "labels", "label_mode", NULL},
        [KC_TEXT_SRC_CSV] = {"csv", "text_column", "label_column", "header", "delimiter",
                             "label_mode", NULL},
        [KC_TEXT_SRC_DIRECTORY] = {"directory", "labels", "label_mode", "class_names",
                                   "validation_split", "subset", "seed", "shuffle", "max_length",
                                   NULL},
        [KC_TEXT_SRC_RECORDS] = {"records", "separator", "label_mode", "validation_split", "subset",
                                 "seed", "shuffle", NULL},
    };
    static const char *const kind[] = {"", "a line file (`text:`)", "a text CSV (`csv:`)",
                                       "a directory (`directory:`)", "a records file (`records:`)"};
    for (size_t i = 0; i < n->n; i++) {
        kc_node *key = kc_map_key(n, i);
        int ok = 0, known = 0;
        for (int j = 0; per[k][j]; j++)
            ok |= !strcmp(per[k][j], key->str);
        for (int j = 0; text_source_keys[j]; j++)
            known |= !strcmp(text_source_keys[j], key->str);
        if (known && !ok)
            return kc_node_fail(e, key, "data.%s: `%s` does not apply to %s", what, key->str,
                                kind[k]);
    }
    return KC_OK;
}

static int parse_text_source(const char *base, kc_node *n, const char *what, kc_source_spec *s,
                             kc_error *e) {
    kc_node *v;
    int rc = KC_OK;
    kc_text_source k = kc_map_get(n, "directory") ? KC_TEXT_SRC_DIRECTORY
                       : kc_map_get(n, "records") ? KC_TEXT_SRC_RECORDS
                       : kc_map_get(n, "csv")     ? KC_TEXT_SRC_CSV
                                                  : KC_TEXT_SRC_LINES;
    if ((rc = text_keys_fit(n, what, k, e))) return rc;
    s->label_mode = KC_LABELS_INT;
    if ((v = kc_map_get(n, "label_mode"))) {
        static const char *const modes[] = {"int", "categorical", "binary", NULL};
        int m;
        if (kc_node_is_null(v))
            m = KC_LABELS_NONE;
        else if ((rc = one_of(v, "label_mode", modes, &m, e)))
            return rc;
        s->label_mode = (kc_label_mode)m;
    }
    s->text_kind = k;
    if (k == KC_TEXT_SRC_DIRECTORY) {
        rc = text_dir(base, n, s, e);
    } else if (k == KC_TEXT_SRC_RECORDS) {
        rc = text_records(base, n, s, e);
    } else if (k == KC_TEXT_SRC_CSV) {
        s->delimiter = ',';
        if (!(rc = resolve_path(base, kc_map_get(n, "csv"), "csv", &s->csv_path, e)) &&
            !(rc = opt_str(n, "text_column", &s->text_column, e)))
            rc = opt_str(n, "label_column", &s->label_column, e);
        if (!rc && !s->text_column)
            return kc_node_fail(e, n, "data.%s: a text CSV needs `text_column:` (a name or index)",
                                what);
        if (!rc && (v = kc_map_get(n, "delimiter"))) {
            if (want_str(v, "delimiter", e)) return e->code;
            if (strlen(v->str) != 1 || v->str[0] == '"' || v->str[0] == '\n')
                return kc_node_fail(e, v,
                                    "delimiter must be one character (e.g. \",\" or \"\\t\")");
            s->delimiter = v->str[0];
        }
        if (!rc && (v = kc_map_get(n, "header")) && !kc_node_is_null(v)) {
            if (v->kind == KC_NODE_SCALAR && !strcmp(v->str, "auto"))
                s->csv_header = -1;
            else
                rc = kc_node_bool(v, &s->csv_header, e);
        }
    } else {
        if (!(rc = resolve_path(base, kc_map_get(n, "text"), "text", &s->text_path, e)) &&
            (v = kc_map_get(n, "labels")))
            rc = resolve_path(base, v, "labels", &s->labels_path, e);
    }
    if (rc) return rc;
    char where[64];
    snprintf(where, sizeof where, "data.%s", what);
    return kc_map_check_unused(n, where, text_source_keys, e);
}

/* ----------------------------------------------------- image folders --- */

static int known_keys_first(kc_node *n, const char *where, const char *const *keys, kc_error *e);

static int image_class_names(kc_node *v, kc_source_spec *s, kc_error *e) {
    if (v->kind != KC_NODE_SEQ || !v->n)
        return kc_node_fail(e, v, "class_names must be a list of subfolder names");
    if (!(s->class_names = calloc(v->n, sizeof *s->class_names)))
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (size_t i = 0; i < v->n; i++) {
        if (want_str(v->items[i], "a class name", e)) return e->code;
        if (!(s->class_names[i] = strdup(v->items[i]->str)))
            return kc_fail(e, KC_ERUNTIME, "out of memory");
        s->dir.nclass_names = (int)i + 1;
    }
    s->dir.class_names = (const char *const *)s->class_names;
    return KC_OK;
}

/* image_size: [height, width] */
static int image_size(kc_node *v, kc_image_opts *o, kc_error *e) {
    long long d[2];
    if (v->kind != KC_NODE_SEQ || v->n != 2)
        return kc_node_fail(e, v, "image_size must be [height, width], e.g. [256, 256]");
    for (int i = 0; i < 2; i++) {
        if (kc_node_int(v->items[i], &d[i], e)) return e->code;
        if (d[i] < 1 || d[i] > KC_IMAGE_MAX_SIDE)
            return kc_node_fail(e, v->items[i], "image_size values must be in 1..%d, got %lld",
                                KC_IMAGE_MAX_SIDE, d[i]);
    }
    o->height = d[0];
    o->width = d[1];
    return KC_OK;
}

static int image_opts(kc_node *n, kc_image_opts *o, kc_error *e) {
    static const char *const colors[] = {"grayscale", "rgb", "rgba", NULL};
    static const char *const interps[] = {"bilinear", "nearest", NULL};
    static const int channels[] = {1, 3, 4};
    kc_node *v;
    int rc, k;
    kc_image_opts_default(o);
    if ((v = kc_map_get(n, "color_mode"))) {
        if ((rc = one_of(v, "color_mode", colors, &k, e))) return rc;
        o->channels = channels[k];
    }
    if ((v = kc_map_get(n, "image_size")) && (rc = image_size(v, o, e))) return rc;
    if ((v = kc_map_get(n, "interpolation"))) {
        if ((rc = one_of(v, "interpolation", interps, &k, e))) return rc;
        o->interpolation = (kc_interpolation)k;
    }
    if ((v = kc_map_get(n, "crop_to_aspect_ratio")) &&
        (rc = kc_node_bool(v, &o->crop_to_aspect_ratio, e)))
        return rc;
    return KC_OK;
}

/* {images: DIR, labels: inferred, label_mode: int, class_names: [...],
 * color_mode: rgb, image_size: [256, 256], interpolation: bilinear,
 * crop_to_aspect_ratio: false, validation_split:, subset:, seed:, shuffle:} */
static int parse_image_source(const char *base, kc_node *n, const char *what, kc_source_spec *s,
                              kc_error *e) {
    char where[64];
    snprintf(where, sizeof where, "data.%s", what);
    if (known_keys_first(n, where, image_source_keys, e)) return e->code;
    kc_node *v;
    int rc;
    s->dir.inferred = 1;
    s->dir.shuffle = 1;
    s->dir.seed = 1337;
    s->label_mode = KC_LABELS_INT;
    if ((rc = resolve_path(base, kc_map_get(n, "images"), "images", &s->images, e))) return rc;
    if ((v = kc_map_get(n, "labels")) && kc_node_is_null(v)) {
        s->dir.inferred = 0;
        s->label_mode = KC_LABELS_NONE;
    } else if (v && (v->kind != KC_NODE_SCALAR || strcmp(v->str, "inferred"))) {
        return kc_node_fail(e, v,
                            "an image folder's labels are `inferred` (from the subfolders) or "
                            "null");
    }
    if ((v = kc_map_get(n, "label_mode"))) {
        static const char *const modes[] = {"int", "categorical", "binary", NULL};
        int m = KC_LABELS_NONE;
        if (!kc_node_is_null(v) && (rc = one_of(v, "label_mode", modes, &m, e))) return rc;
        if (m != KC_LABELS_NONE && !s->dir.inferred)
            return kc_node_fail(e, v, "label_mode needs labels: inferred");
        s->label_mode = (kc_label_mode)m;
    }
    if ((v = kc_map_get(n, "class_names"))) {
        if (!s->dir.inferred) return kc_node_fail(e, v, "class_names needs labels: inferred");
        if ((rc = image_class_names(v, s, e))) return rc;
    }
    if ((rc = text_split_keys(n, s, e)) || (rc = image_opts(n, &s->image, e))) return rc;
    return kc_map_check_unused(n, where, image_source_keys, e);
}

const kc_source_spec *kc_config_image_source(const kc_config *c) {
    const kc_data_spec *d = &c->data;
    if (d->has_train && d->train.images) return &d->train;
    if (d->has_validation && d->validation.images) return &d->validation;
    if (d->has_test && d->test.images) return &d->test;
    return NULL;
}

/* ------------------------------------------------------ the text block --- */

static int text_int(kc_node *n, const char *key, long long min, int64_t *out, kc_error *e) {
    kc_node *v = kc_map_get(n, key);
    if (!v || kc_node_is_null(v)) return KC_OK;
    long long x;
    int rc = kc_node_int(v, &x, e);
    if (rc) return rc;
    if (x < min || x > INT32_MAX)
        return kc_node_fail(e, v, "text.%s must be in %lld..%d, got %lld", key, min, INT32_MAX, x);
    *out = x;
    return KC_OK;
}

static int text_chars(kc_node *n, const char *key, char *out, size_t cap, int nonempty,
                      kc_error *e) {
    kc_node *v = kc_map_get(n, key);
    if (!v) return KC_OK;
    if (v->kind != KC_NODE_SCALAR)
        return kc_node_fail(e, v, "text.%s must be a string, got %s", key, kc_node_kind_name(v));
    if (strlen(v->str) >= cap || (nonempty && !*v->str) ||
        kc_utf8_check(v->str, strlen(v->str)) >= 0)
        return kc_node_fail(e, v, "text.%s must be %sUTF-8 text of at most %zu bytes", key,
                            nonempty ? "non-empty " : "", cap - 1);
    snprintf(out, cap, "%s", v->str);
    return KC_OK;
}

/* A key of the other mode is a mistake worth naming. */
static int text_mode_keys(kc_node *n, kc_text_mode mode, kc_error *e) {
    static const char *const tok_only[] = {"num_words", "filters", "lower",   "char_level",
                                           "oov_token", "maxlen",  "padding", "truncating",
                                           "value",     NULL};
    static const char *const vec_only[] = {"standardize", "max_tokens", "output_sequence_length",
                                           "ngrams", NULL};
    const char *const *bad = mode == KC_TEXT_TOKENIZER ? vec_only : tok_only;
    for (int i = 0; bad[i]; i++) {
        kc_node *v = kc_map_get(n, bad[i]);
        if (v) {
            /* the key node for the location */
            for (size_t k = 0; k < n->n; k++)
                if (!strcmp(kc_map_key(n, k)->str, bad[i])) v = kc_map_key(n, k);
            return kc_node_fail(e, v, "text.%s is a %s option; this block uses %s", bad[i],
                                mode == KC_TEXT_TOKENIZER ? "text_vectorization" : "tokenizer",
                                mode == KC_TEXT_TOKENIZER ? "tokenizer: tokenizer"
                                                          : "tokenizer: text_vectorization");
        }
    }
    return KC_OK;
}

static int parse_pad(kc_node *n, kc_pad_opts *p, kc_error *e) {
    static const char *const sides[] = {"pre", "post", NULL};
    kc_node *v;
    int rc, side;
    if ((rc = text_int(n, "maxlen", 1, &p->maxlen, e))) return rc;
    if ((v = kc_map_get(n, "padding"))) {
        if ((rc = one_of(v, "text.padding", sides, &side, e))) return rc;
        p->padding = (kc_pad_side)side;
    }
    if ((v = kc_map_get(n, "truncating"))) {
        if ((rc = one_of(v, "text.truncating", sides, &side, e))) return rc;
        p->truncating = (kc_pad_side)side;
    }
    double val;
    if ((v = kc_map_get(n, "value"))) {
        if ((rc = kc_node_float(v, &val, e))) return rc;
        p->value = (float)val;
    }
    return KC_OK;
}

static int parse_vectorization(kc_node *n, kc_text_opts *t, kc_error *e) {
    static const char *const stds[] = {"lower_and_strip_punctuation", "lower", "strip_punctuation",
                                       "none", NULL};
    static const char *const splits[] = {"whitespace", "character", NULL};
    kc_node *v;
    int rc, x;
    if ((v = kc_map_get(n, "standardize"))) {
        if (kc_node_is_null(v))
            t->standardize = KC_STD_NONE;
        else if ((rc = one_of(v, "text.standardize", stds, &x, e)))
            return rc;
        else
            t->standardize = (kc_standardize)x;
    }
    if ((v = kc_map_get(n, "split"))) {
        if ((rc = one_of(v, "text.split", splits, &x, e))) return rc;
        t->split_character = x;
    }
    if ((v = kc_map_get(n, "ngrams")) && !kc_node_is_null(v) &&
        !(v->kind == KC_NODE_SCALAR && !strcmp(v->str, "none")))
        return kc_node_fail(e, v, "text.ngrams: only none is supported");
    if ((rc = text_int(n, "max_tokens", 3, &t->max_tokens, e))) return rc;
    return text_int(n, "output_sequence_length", 1, &t->output_sequence_length, e);
}

static int parse_tokenizer(kc_node *n, kc_text_opts *t, kc_error *e) {
    kc_node *v;
    int rc;
    if ((rc = text_int(n, "num_words", 1, &t->num_words, e))) return rc;
    if ((rc = text_chars(n, "filters", t->filters, sizeof t->filters, 0, e))) return rc;
    if ((rc = text_chars(n, "split", t->split, sizeof t->split, 1, e))) return rc;
    if ((v = kc_map_get(n, "lower")) && (rc = kc_node_bool(v, &t->lower, e))) return rc;
    if ((v = kc_map_get(n, "char_level")) && (rc = kc_node_bool(v, &t->char_level, e))) return rc;
    if ((v = kc_map_get(n, "oov_token")) && !kc_node_is_null(v)) {
        if ((rc = text_chars(n, "oov_token", t->oov_token, sizeof t->oov_token, 1, e))) return rc;
        t->has_oov = 1;
    }
    return KC_OK;
}

static int parse_text(kc_node *n, kc_data_spec *d, kc_error *e) {
    if (want_map(n, "data.text", e)) return e->code;
    static const char *const modes[] = {"tokenizer", "text_vectorization", NULL};
    int mode = 0, rc;
    kc_node *v = kc_map_get(n, "tokenizer");
    if (v && (rc = one_of(v, "text.tokenizer", modes, &mode, e))) return rc;
    kc_text_opts_default(&d->text, mode ? KC_TEXT_VECTORIZATION : KC_TEXT_TOKENIZER);
    d->pad = (kc_pad_opts){0};
    if ((rc = text_mode_keys(n, d->text.mode, e))) return rc;
    rc = mode ? parse_vectorization(n, &d->text, e) : parse_tokenizer(n, &d->text, e);
    if (!rc && !mode) rc = parse_pad(n, &d->pad, e);
    if (rc) return rc;
    d->has_text = 1;
    d->text_node = n;
    return kc_map_check_unused(n, "data.text", text_keys, e);
}

/* Text sources need the text block, and it needs them. */
static int check_text_sources(kc_data_spec *d, kc_error *e) {
    kc_source_spec *src[3] = {&d->train, &d->test, &d->validation};
    int have[3] = {d->has_train, d->has_test, d->has_validation};
    int ntext = 0, nplain = 0;
    const kc_node *first_text = NULL, *first_plain = NULL;
    for (int i = 0; i < 3; i++) {
        if (!have[i]) continue;
        if (src[i]->text_kind) {
            ntext++;
            if (!first_text) first_text = src[i]->node;
        } else {
            nplain++;
            if (!first_plain) first_plain = src[i]->node;
        }
    }
    if (ntext && nplain)
        return kc_node_fail(e, first_plain, "every source must be text when one is (see %s:%d)",
                            first_text->file, first_text->line);
    if (ntext && !d->has_text)
        return kc_node_fail(e, first_text,
                            "text sources need a `text:` block in the data section (e.g. "
                            "`text: {num_words: 10000, maxlen: 200}`)");
    if (d->has_text && !ntext && !d->dataset)
        return kc_node_fail(e, d->text_node,
                            "data.text applies to text sources ({text: FILE}, {csv: FILE, "
                            "text_column: ...}, {directory: DIR}, {records: FILES})");
    if (d->has_text && d->has_test && !d->has_train && ntext)
        return kc_node_fail(e, d->text_node,
                            "data.text fits its vocabulary on `train:`; add the training texts");
    return KC_OK;
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

/* ------------------------------------- imdb, reuters, boston_housing --- */

/* The key node of `key` in a map (for error locations), or NULL. */
static kc_node *key_node(kc_node *map, const char *key) {
    for (size_t i = 0; map->kind == KC_NODE_MAP && i < map->n; i++)
        if (!strcmp(kc_map_key(map, i)->str, key)) return kc_map_key(map, i);
    return NULL;
}

static int is_seq_dataset(const char *ds) {
    return ds && (!strcmp(ds, "imdb") || !strcmp(ds, "reuters"));
}

/* The options of each dataset's load_data, as Keras's signatures. */
static const char *seq_opts_of(const char *ds) {
    if (!strcmp(ds, "imdb"))
        return "num_words, skip_top, maxlen, seed, start_char, oov_char, index_from";
    if (!strcmp(ds, "reuters"))
        return "num_words, skip_top, maxlen, test_split, seed, start_char, oov_char, index_from";
    if (!strcmp(ds, "boston_housing")) return "test_split, seed";
    if (!strcmp(ds, "cifar100")) return "label_mode";
    return "";
}

static int seq_opt_applies(const char *ds, const char *key) {
    if (!strcmp(ds, "imdb")) return strcmp(key, "test_split") != 0;
    if (!strcmp(ds, "reuters")) return 1;
    if (!strcmp(ds, "boston_housing")) return !strcmp(key, "seed") || !strcmp(key, "test_split");
    return 0;
}

/* An integer option; null is Python's None where Keras allows it. */
static int seq_int(kc_node *v, const char *key, long long min, long long max, int nullable,
                   int64_t *out, kc_error *e) {
    if (kc_node_is_null(v)) {
        if (!nullable) return kc_node_fail(e, v, "data.%s cannot be null", key);
        *out = KC_SEQ_NONE;
        return KC_OK;
    }
    long long x;
    if (kc_node_int(v, &x, e)) return e->code;
    if (x < min || x > max)
        return kc_node_fail(e, v, "data.%s must be in %lld..%lld%s, got %lld", key, min, max,
                            nullable ? " (or null)" : "", x);
    *out = x;
    return KC_OK;
}

static int seq_opt(kc_node *v, const char *key, kc_seq_opts *o, kc_error *e) {
    int64_t x = 0;
    int rc = KC_OK;
    if (!strcmp(key, "num_words")) rc = seq_int(v, key, 1, INT32_MAX, 1, &o->num_words, e);
    if (!strcmp(key, "skip_top")) rc = seq_int(v, key, 0, INT32_MAX, 0, &o->skip_top, e);
    if (!strcmp(key, "maxlen")) rc = seq_int(v, key, 1, INT32_MAX, 1, &o->maxlen, e);
    if (!strcmp(key, "start_char")) rc = seq_int(v, key, 0, INT32_MAX, 1, &o->start_char, e);
    if (!strcmp(key, "oov_char")) rc = seq_int(v, key, 0, INT32_MAX, 1, &o->oov_char, e);
    if (!strcmp(key, "index_from")) rc = seq_int(v, key, 0, INT32_MAX, 0, &o->index_from, e);
    if (!strcmp(key, "seed") && !(rc = seq_int(v, key, 0, UINT32_MAX, 0, &x, e)))
        o->seed = (uint32_t)x;
    if (!strcmp(key, "test_split")) {
        if ((rc = kc_node_float(v, &o->test_split, e))) return rc;
        if (!(o->test_split >= 0 && o->test_split < 1))
            return kc_node_fail(e, v, "data.test_split must be in [0, 1), got %g", o->test_split);
    }
    return rc;
}

/* num_words, maxlen, ... next to `dataset:`: only those its load_data takes. */
static int parse_seq_opts(kc_node *n, kc_data_spec *d, kc_error *e) {
    kc_seq_opts_default(&d->seq);
    for (int i = 0; seq_opt_keys[i]; i++) {
        kc_node *k = key_node(n, seq_opt_keys[i]);
        if (!k) continue;
        if (!d->dataset)
            return kc_node_fail(
                e, k,
                "data.%s is an option of the imdb, reuters and boston_housing "
                "datasets (`dataset:`)%s",
                k->str,
                !strcmp(k->str, "maxlen") ? "; the padded length of texts is text.maxlen" : "");
        if (!seq_opt_applies(d->dataset, k->str))
            return kc_node_fail(
                e, k, "data.%s does not apply to the %s dataset (%s%s)", k->str, d->dataset,
                *seq_opts_of(d->dataset) ? "it takes: " : "it has no options but path",
                seq_opts_of(d->dataset));
        int rc = seq_opt(kc_map_get(n, k->str), k->str, &d->seq, e);
        if (rc) return rc;
    }
    return KC_OK;
}

/* `text:` next to imdb / reuters: pad_sequences's keys only (the ids are given). */
static int parse_dataset_pad(kc_node *n, kc_data_spec *d, kc_error *e) {
    static const char *const pad_keys[] = {"maxlen", "padding", "truncating", "value", NULL};
    if (!is_seq_dataset(d->dataset))
        return kc_node_fail(e, n,
                            "data.text applies to text sources and to the padding of the imdb "
                            "and reuters sequences; the %s dataset has none",
                            d->dataset);
    if (want_map(n, "data.text", e)) return e->code;
    for (size_t i = 0; i < n->n; i++) {
        kc_node *k = kc_map_key(n, i);
        int ok = 0;
        for (int j = 0; pad_keys[j]; j++)
            ok |= !strcmp(k->str, pad_keys[j]);
        if (ok) continue;
        int known = 0;
        for (int j = 0; text_keys[j]; j++)
            known |= !strcmp(k->str, text_keys[j]);
        if (!known) break; /* reported below with a suggestion */
        return kc_node_fail(e, k,
                            "text.%s: the %s sequences are token ids already; with a dataset "
                            "the text block takes only maxlen, padding, truncating and value%s",
                            k->str, d->dataset,
                            !strcmp(k->str, "num_words")
                                ? " (load_data's num_words goes in the data section)"
                                : "");
    }
    d->pad = (kc_pad_opts){0};
    int rc = parse_pad(n, &d->pad, e);
    if (rc) return rc;
    d->pad_node = n;
    return kc_map_check_unused(n, "data.text", pad_keys, e);
}

/* ------------------------------------------------------- time series --- */

/* A column (name or index) or a list of them. */
static int ts_columns(kc_node *v, const char *what, kc_ts_columns *c, kc_error *e) {
    size_t n = v->kind == KC_NODE_SEQ ? v->n : 1;
    if (v->kind == KC_NODE_MAP || kc_node_is_null(v) || n == 0 || n > 4096)
        return kc_node_fail(e, v, "%s: a column (a name or an index) or a list of them", what);
    c->name = calloc(n, sizeof *c->name);
    c->node = calloc(n, sizeof *c->node);
    if (!c->name || !c->node) return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (size_t i = 0; i < n; i++) {
        kc_node *f = v->kind == KC_NODE_SEQ ? v->items[i] : v;
        if (f->kind != KC_NODE_SCALAR || kc_node_is_null(f) || !*f->str)
            return kc_node_fail(e, f, "%s: a column is a name or an index, got %s", what,
                                kc_node_kind_name(f));
        if (!(c->name[i] = strdup(f->str))) return kc_fail(e, KC_ERUNTIME, "out of memory");
        c->node[i] = f;
        c->n = (int)i + 1;
    }
    return KC_OK;
}

/* Steps and counts: at most 2^40 (a series longer than that does not fit memory). */
static int ts_int(kc_node *map, const char *key, long long min, int64_t *out, kc_error *e) {
    kc_node *v = kc_map_get(map, key);
    if (!v) return KC_OK;
    long long x;
    if (kc_node_int(v, &x, e)) return e->code;
    const long long max = 1LL << 40;
    if (x < min || x > max)
        return kc_node_fail(e, v, "timeseries.%s must be in %lld..%lld, got %lld", key, min, max,
                            x);
    *out = x;
    return KC_OK;
}

static int ts_shuffle_seed(kc_node *n, int *shuffle, uint32_t *seed, kc_error *e) {
    kc_node *v;
    int rc;
    if ((v = kc_map_get(n, "shuffle")) && (rc = kc_node_bool(v, shuffle, e))) return rc;
    if ((v = kc_map_get(n, "seed"))) {
        long long x;
        if ((rc = kc_node_int(v, &x, e))) return rc;
        if (x < 0 || x > UINT32_MAX) return kc_node_fail(e, v, "seed must be in 0..4294967295");
        *seed = (uint32_t)x;
    }
    return KC_OK;
}

/* train: {start_index: 0, end_index: 200}: the steps that split's windows use. */
static int ts_split(kc_node *v, const char *what, kc_ts_spec *t, kc_ts_split *sp, kc_error *e) {
    sp->present = 1;
    sp->node = v;
    sp->shuffle = t->opts.shuffle;
    sp->seed = t->opts.seed;
    if (kc_node_is_null(v)) return KC_OK; /* `train:` alone: the whole series */
    char where[64];
    snprintf(where, sizeof where, "timeseries.%s", what);
    if (want_map(v, where, e)) return e->code;
    int rc;
    if ((rc = ts_int(v, "start_index", -(1LL << 40), &sp->start_index, e))) return rc;
    kc_node *end = kc_map_get(v, "end_index");
    if (end && !kc_node_is_null(end)) {
        if ((rc = ts_int(v, "end_index", -(1LL << 40), &sp->end_index, e))) return rc;
        if (sp->end_index == 0)
            return kc_node_fail(e, end,
                                "%s.end_index is one past the last step used: it must not be 0 "
                                "(leave it out for the end of the series)",
                                where);
        sp->has_end = 1;
    }
    if ((rc = ts_shuffle_seed(v, &sp->shuffle, &sp->seed, e))) return rc;
    return kc_map_check_unused(v, where, ts_split_keys, e);
}

/* target: {column: C, offset: K} (or columns: [...]); offset defaults to the
 * step after the window. */
static int ts_target(kc_node *v, kc_ts_spec *t, kc_error *e) {
    t->target_node = v;
    t->has_target = 1;
    const kc_ts_opts *o = &t->opts;
    t->offset = (o->sequence_length - 1) * o->sampling_rate + 1;
    if (kc_node_is_null(v)) return KC_OK;
    if (v->kind != KC_NODE_MAP)
        return kc_node_fail(e, v,
                            "timeseries.target must be a mapping, e.g. {column: SUNACTIVITY, "
                            "offset: %lld}",
                            (long long)t->offset);
    kc_node *c = kc_map_get(v, "column"), *cs = kc_map_get(v, "columns");
    int rc;
    if (c && cs)
        return kc_node_fail(e, cs, "timeseries.target: give `column:` or `columns:`, not both");
    if (c && c->kind != KC_NODE_SCALAR)
        return kc_node_fail(e, c,
                            "timeseries.target.column is one column; use `columns:` for "
                            "several");
    if ((c || cs) && (rc = ts_columns(c ? c : cs, "timeseries.target", &t->target, e))) return rc;
    if ((rc = ts_int(v, "offset", 0, &t->offset, e))) return rc;
    return kc_map_check_unused(v, "timeseries.target", ts_target_keys, e);
}

static int ts_source(const char *base, kc_node *n, kc_ts_spec *t, kc_error *e) {
    kc_node *csv = kc_map_get(n, "csv"), *npy = kc_map_get(n, "npy"), *hd = kc_map_get(n, "header");
    int rc;
    if (csv && npy) return kc_node_fail(e, npy, "timeseries: give `csv:` or `npy:`, not both");
    if (!csv && !npy)
        return kc_node_fail(e, n, "timeseries needs the series: `csv: FILE` or `npy: FILE`");
    t->csv_header = -1;
    if (csv) {
        if ((rc = resolve_path(base, csv, "csv", &t->csv_path, e))) return rc;
    } else if ((rc = parse_file(base, npy, "npy", &t->npy_path, &t->npy_key, e))) {
        return rc;
    }
    if (hd && !csv) return kc_node_fail(e, hd, "timeseries.header applies to `csv:` series");
    if (hd && !kc_node_is_null(hd) && !(hd->kind == KC_NODE_SCALAR && !strcmp(hd->str, "auto")) &&
        (rc = kc_node_bool(hd, &t->csv_header, e)))
        return rc;
    kc_node *cols = kc_map_get(n, "columns");
    return cols ? ts_columns(cols, "timeseries.columns", &t->columns, e) : KC_OK;
}

/* Unknown keys first, so a misspelt required key is named as such. */
static int known_keys_first(kc_node *n, const char *where, const char *const *keys, kc_error *e) {
    for (size_t i = 0; i < n->n; i++)
        for (int j = 0; keys[j]; j++)
            if (!strcmp(kc_map_key(n, i)->str, keys[j])) kc_map_key(n, i)->used = 1;
    return kc_map_check_unused(n, where, keys, e);
}

static int parse_timeseries(const char *base, kc_node *n, kc_data_spec *d, kc_error *e) {
    kc_ts_spec *t = &d->ts;
    t->node = n;
    if (want_map(n, "data.timeseries", e)) return e->code;
    if (known_keys_first(n, "data.timeseries", ts_keys, e)) return e->code;
    kc_ts_opts_default(&t->opts);
    t->opts.seed = 1337;
    int rc;
    if ((rc = ts_source(base, n, t, e))) return rc;
    kc_node *sl = kc_map_get(n, "sequence_length");
    if (!sl) return kc_node_fail(e, n, "timeseries needs `sequence_length:` (steps per window)");
    if ((rc = ts_int(n, "sequence_length", 1, &t->opts.sequence_length, e))) return rc;
    if ((rc = ts_int(n, "sequence_stride", 1, &t->opts.sequence_stride, e))) return rc;
    if ((rc = ts_int(n, "sampling_rate", 1, &t->opts.sampling_rate, e))) return rc;
    if ((rc = ts_shuffle_seed(n, &t->opts.shuffle, &t->opts.seed, e))) return rc;
    kc_node *v = kc_map_get(n, "target");
    if (v && (rc = ts_target(v, t, e))) return rc;
    static const char *const names[] = {"train", "validation", "test"};
    int any = 0;
    for (int i = 0; i < 3; i++)
        if ((v = kc_map_get(n, names[i]))) {
            if ((rc = ts_split(v, names[i], t, &t->split[i], e))) return rc;
            any = 1;
        }
    if (!any) { /* no split given: the whole series trains */
        t->split[0].present = 1;
        t->split[0].node = n;
        t->split[0].shuffle = t->opts.shuffle;
        t->split[0].seed = t->opts.seed;
    }
    d->has_timeseries = 1;
    d->has_train = t->split[0].present;
    d->has_validation = t->split[1].present;
    d->has_test = t->split[2].present;
    return kc_map_check_unused(n, "data.timeseries", ts_keys, e);
}

/* The timeseries block holds the splits: no other source goes with it. */
static int timeseries_alone(kc_node *n, kc_error *e) {
    static const char *const others[] = {"dataset", "path", "train", "test", "validation", NULL};
    for (int i = 0; others[i]; i++) {
        kc_node *k = key_node(n, others[i]), *v = kc_map_get(n, others[i]);
        if (!k) continue;
        if (!strcmp(others[i], "validation") && v->kind == KC_NODE_SCALAR &&
            !strcmp(v->str, "test"))
            continue;
        return kc_node_fail(e, k,
                            "data.%s does not go with `timeseries:`: give the splits inside it "
                            "(timeseries.train / validation / test with start_index, end_index)",
                            others[i]);
    }
    return KC_OK;
}

/* -------------------------------------------------- cifar10, cifar100 --- */

/* `label_mode: fine | coarse` next to `dataset: cifar100`, load_data's
 * argument (fine by default): coarse reaches the loader as the dataset name
 * "cifar100:coarse" (models/data/data.h). */
static int parse_cifar_label_mode(kc_node *n, kc_data_spec *d, kc_error *e) {
    static const char *const modes[] = {"fine", "coarse", NULL};
    kc_node *v = kc_map_get(n, "label_mode");
    if (!v) return KC_OK;
    if (!d->dataset || strcmp(d->dataset, "cifar100"))
        return kc_node_fail(e, key_node(n, "label_mode"),
                            "data.label_mode is an option of the cifar100 dataset (fine or "
                            "coarse)%s%s",
                            d->dataset ? "; the dataset here is " : "",
                            d->dataset ? d->dataset : "");
    int m = 0;
    if (one_of(v, "data.label_mode", modes, &m, e)) return e->code;
    if (m == 1) {
        char *coarse = strdup("cifar100:coarse");
        if (!coarse) return kc_fail(e, KC_ERUNTIME, "out of memory");
        free(d->dataset);
        d->dataset = coarse;
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
    if ((v = kc_map_get(n, "timeseries"))) {
        if ((rc = timeseries_alone(n, e)) || (rc = parse_timeseries(base, v, d, e))) return rc;
    }
    if ((v = kc_map_get(n, "dataset"))) {
        if ((rc = want_str(v, "dataset", e))) return rc;
        int ok = 0;
        for (int i = 0; datasets[i]; i++)
            ok |= !strcmp(v->str, datasets[i]);
        if (!ok) {
            const char *near = kc_closest(v->str, datasets, sizeof datasets / sizeof *datasets - 1);
            return kc_node_fail(
                e, v,
                "unknown dataset '%s'%s%s%s (kerasc knows mnist, fashion_mnist, cifar10, cifar100, "
                "imdb, reuters and boston_housing; other data goes in `train:`/`test:` as IDX, "
                "NPY, NPZ, CSV or "
                "text files, or in `timeseries:`)",
                v->str, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
        d->dataset = strdup(v->str);
        d->dataset_node = v;
    }
    if ((rc = parse_seq_opts(n, d, e))) return rc;
    if ((rc = parse_cifar_label_mode(n, d, e))) return rc;
    if ((v = kc_map_get(n, "path"))) {
        if (!d->dataset)
            return kc_node_fail(e, v,
                                "`path:` locates a named dataset; add `dataset:` or use `train:`");
        if ((rc = resolve_path(base, v, "path", &d->path, e))) return rc;
    }
    if (!d->has_timeseries && (v = kc_map_get(n, "train"))) {
        if (d->dataset) return kc_node_fail(e, v, "give either `dataset:` or `train:`, not both");
        if ((rc = parse_source(base, v, "train", &d->train, e))) return rc;
        d->has_train = 1;
    }
    if (!d->has_timeseries && (v = kc_map_get(n, "test"))) {
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
    d->preprocess_node = kc_map_get(n, "preprocess_input"); /* checked in resolve_feeds */
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
    if ((v = kc_map_get(n, "text"))) {
        if (d->has_timeseries)
            return kc_node_fail(e, key_node(n, "text"),
                                "data.text applies to text sources, not to `timeseries:`");
        if ((rc = d->dataset ? parse_dataset_pad(v, d, e) : parse_text(v, d, e))) return rc;
    }
    if ((rc = check_text_sources(d, e))) return rc;
    if (!d->dataset && !d->has_train && !d->has_test && !d->has_timeseries)
        return kc_node_fail(e, n,
                            "the data section needs `dataset:` (mnist, fashion_mnist, cifar10, "
                            "cifar100, imdb, reuters, boston_housing), `train:`/`test:` files or "
                            "`timeseries:`");
    return kc_map_check_unused(n, "the data section", data_keys, e);
}

/* --------------------------------------------------- feeding the model --- */

/* A text source's labels: a labels file, a label column, class folders or files. */
static int text_has_y(const kc_source_spec *s) {
    if (s->label_mode == KC_LABELS_NONE) return 0;
    switch (s->text_kind) {
    case KC_TEXT_SRC_LINES:
        return s->labels_path != NULL;
    case KC_TEXT_SRC_CSV:
        return s->label_column != NULL;
    case KC_TEXT_SRC_DIRECTORY:
        return s->dir.inferred;
    case KC_TEXT_SRC_RECORDS:
        return s->nrecords > 1;
    default:
        return 0;
    }
}

/* Does the source hold array `name`? */
static int source_has(const kc_source_spec *s, const char *name) {
    if (s->images)
        return !strcmp(name, "x") || (!strcmp(name, "y") && s->label_mode != KC_LABELS_NONE);
    if (s->text_kind) return !strcmp(name, "x") || (!strcmp(name, "y") && text_has_y(s));
    if (!strcmp(name, "x") && (s->x_path || s->csv_path)) return 1;
    if (!strcmp(name, "y") && (s->y_path || s->csv_path)) return 1;
    for (int i = 0; i < s->nnamed; i++)
        if (!strcmp(s->named[i].name, name)) return 1;
    return 0;
}

static void source_names(const kc_source_spec *s, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    if (s->images) {
        snprintf(buf, n, "%s", s->label_mode != KC_LABELS_NONE ? "x, y" : "x (no labels)");
        return;
    }
    if (s->text_kind) {
        snprintf(buf, n, "%s", text_has_y(s) ? "x, y" : "x (no labels)");
        return;
    }
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
    if (d->has_timeseries) {
        const kc_node *ts = d->ts.node;
        if (!strcmp(name, "x") || (!strcmp(name, "y") && d->ts.has_target)) return KC_OK;
        if (!strcmp(name, "y"))
            return kc_node_fail(
                e, at,
                "%s takes array 'y', but data.timeseries (%s:%d:%d) has no "
                "`target:` (e.g. target: {column: NAME, offset: %lld})",
                io, ts->file, ts->line, ts->col,
                (long long)((d->ts.opts.sequence_length - 1) * d->ts.opts.sampling_rate + 1));
        return kc_node_fail(e, at,
                            "%s takes array '%s', but data.timeseries has only x (the windows) "
                            "and y (the targets)",
                            io, name);
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

/* preprocess_input: MODE for input i; caffe and torch work on RGB pixels. */
static int preprocess_mode(kc_config *c, int i, kc_node *v, kc_error *e) {
    static const char *const modes[] = {"caffe", "tf", "torch", NULL};
    const kc_model_input *in = &c->model->inputs[i];
    int m;
    if (one_of(v, "data.preprocess_input", modes, &m, e)) return e->code;
    kc_feed_spec *f = &c->data.inputs[i];
    f->preprocess = (kc_preprocess_mode)(KC_PREPROCESS_CAFFE + m);
    f->preprocess_node = v;
    const kc_shape *sh = &in->shape;
    if (f->preprocess != KC_PREPROCESS_TF && (sh->rank < 1 || sh->d[sh->rank - 1] != 3)) {
        char buf[128];
        return kc_node_fail(e, v,
                            "data.preprocess_input %s needs RGB images, whose last axis is 3 "
                            "channels; the model input '%s' is %s",
                            v->str, in->name, kc_shape_str(sh, 1, buf, sizeof buf));
    }
    return KC_OK;
}

/* `preprocess_input: MODE` for a single input, or {input: MODE, ...}. */
static int resolve_preprocess(kc_config *c, kc_error *e) {
    const kc_model *m = c->model;
    kc_node *v = (kc_node *)c->data.preprocess_node;
    if (!v) return KC_OK;
    if (v->kind != KC_NODE_MAP) {
        if (m->ninputs > 1)
            return kc_node_fail(e, v,
                                "the model has %d inputs: give preprocess_input per input, e.g. "
                                "`preprocess_input: {%s: caffe}`",
                                m->ninputs, m->inputs[0].name);
        return preprocess_mode(c, 0, v, e);
    }
    const char *names[KC_MODEL_MAX_IO];
    for (int i = 0; i < m->ninputs; i++)
        names[i] = m->inputs[i].name;
    int rc = check_io_keys(v, "preprocess_input", names, m->ninputs, "inputs", e);
    for (int i = 0; i < m->ninputs && !rc; i++) {
        kc_node *p = kc_map_get(v, names[i]);
        if (p) rc = preprocess_mode(c, i, p, e);
    }
    return rc;
}

/* Which array feeds each model input and output, checked against the sources. */
static int resolve_feeds(kc_config *c, kc_error *e) {
    if (!c->data.node) return KC_OK;
    int rc = resolve_inputs(c, e);
    if (!rc) rc = resolve_targets(c, e);
    if (!rc) rc = resolve_reshape(c, e);
    if (!rc) rc = resolve_preprocess(c, e);
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

static int parse_fit(const char *base_dir, kc_node *n, kc_fit_spec *f, kc_error *e) {
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
    if ((v = kc_map_get(n, "initial_weights")) && !kc_node_is_null(v) &&
        (rc = resolve_path(base_dir, v, "fit.initial_weights", &f->initial_weights, e)))
        return rc;
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
    if ((rc = parse_fit(base_dir, kc_map_get(root, "fit"), &c->fit, e))) goto fail;
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
