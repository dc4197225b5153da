/* Keras JSON model descriptions converted to kerasc's YAML model section.
 *
 * The JSON tree is turned into one entry per layer call. Each entry's
 * arguments are built as kc_node maps whose nodes carry the JSON file and the
 * line:column of the value they came from, and are checked by the layer
 * class's own configure function - so whatever kerasc cannot honour is
 * reported by the same code that reads YAML files, at the JSON position.
 * The entries are then written out as YAML text, leaving out arguments equal
 * to Keras's defaults. */
#include "models/keras_import.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "models/args.h"
#include "models/data/data.h"
#include "models/layer.h"

/* A config.json beyond this is not a model description. */
#define KX_MAX_CONFIG_BYTES (256u << 20)

/* ------------------------------------------------------------ context */

typedef struct kx {
    char *file; /* name in errors; every built node points at it */
    kc_error *e;
    int oom; /* a node allocation failed; reported once at the end */
} kx;

static int kx_oom(kx *x) {
    return kc_fail(x->e, KC_ERUNTIME, "%s: out of memory", x->file);
}

/* "file:line:col: layer 'name' (Class): message" */
static int kx_fail(kx *x, const kc_json *at, const char *layer, const char *cls, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
static int kx_fail(kx *x, const kc_json *at, const char *layer, const char *cls, const char *fmt,
                   ...) {
    char msg[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char where[600];
    if (kc_json_line(at) > 0)
        snprintf(where, sizeof where, "%s:%d:%d", x->file, kc_json_line(at), kc_json_col(at));
    else
        snprintf(where, sizeof where, "%s", x->file);
    if (layer) return kc_fail(x->e, KC_ECONFIG, "%s: layer '%s' (%s): %s", where, layer, cls, msg);
    return kc_fail(x->e, KC_ECONFIG, "%s: %s", where, msg);
}

/* Inserts "layer 'name' (Class): " after the location of a message that a
 * layer's configure function produced at one of our nodes. */
static void name_layer_in_error(kx *x, const char *layer, const char *cls) {
    char *m = x->e->msg;
    size_t fl = strlen(x->file);
    size_t at = 0;
    if (!strncmp(m, x->file, fl) && m[fl] == ':') {
        const char *p = m + fl + 1;
        int colons = 0;
        while (*p && colons < 2) {
            if (*p == ':')
                colons++;
            else if (*p < '0' || *p > '9')
                break;
            p++;
        }
        if (colons == 2 && *p == ' ') at = (size_t)(p + 1 - m);
    }
    char rest[sizeof x->e->msg];
    snprintf(rest, sizeof rest, "%s", m + at);
    char head[sizeof x->e->msg];
    snprintf(head, sizeof head, "%.*s", (int)at, m);
    snprintf(m, sizeof x->e->msg, "%slayer '%s' (%s): %s", head, layer, cls, rest);
}

/* ------------------------------------------------------------ nodes */

static kc_node *nd_new(kx *x, kc_node_kind kind, const kc_json *at) {
    kc_node *n = calloc(1, sizeof *n);
    if (!n) {
        x->oom = 1;
        return NULL;
    }
    n->kind = kind;
    n->file = x->file;
    n->line = kc_json_line(at);
    n->col = kc_json_col(at);
    return n;
}

static void nd_free(kc_node *n) {
    if (!n) return;
    size_t count = n->kind == KC_NODE_MAP ? 2 * n->n : n->n;
    for (size_t i = 0; i < count; i++)
        nd_free(n->items[i]);
    free(n->items);
    free(n->str);
    free(n);
}

static kc_node *nd_scalar(kx *x, const kc_json *at, const char *s, int quoted) {
    kc_node *n = nd_new(x, KC_NODE_SCALAR, at);
    if (!n) return NULL;
    n->str = strdup(s);
    n->quoted = quoted;
    if (!n->str) {
        free(n);
        x->oom = 1;
        return NULL;
    }
    return n;
}

static void nd_append(kx *x, kc_node *parent, kc_node *child) {
    if (!parent || !child) {
        if (!child) x->oom = 1;
        nd_free(child);
        return;
    }
    size_t count = parent->kind == KC_NODE_MAP ? 2 * parent->n : parent->n;
    size_t add = parent->kind == KC_NODE_MAP ? 2 : 1;
    kc_node **items = realloc(parent->items, (count + add) * sizeof *items);
    if (!items) {
        x->oom = 1;
        nd_free(child);
        return;
    }
    parent->items = items;
    items[count] = child;
    parent->n++;
}

/* Adds key: val to a map; the key node sits where the value was written
 * (JSON keeps no position of its own for keys). */
static void nd_put(kx *x, kc_node *map, const char *key, kc_node *val) {
    kc_node *k = nd_scalar(x, NULL, key, 0);
    if (!k || !val || !map) {
        nd_free(k);
        nd_free(val);
        if (map) x->oom = 1;
        return;
    }
    k->line = val->line;
    k->col = val->col;
    size_t count = 2 * map->n;
    kc_node **items = realloc(map->items, (count + 2) * sizeof *items);
    if (!items) {
        x->oom = 1;
        nd_free(k);
        nd_free(val);
        return;
    }
    map->items = items;
    items[count] = k;
    items[count + 1] = val;
    map->n++;
}

static kc_node *nd_lookup(kc_node *map, const char *key) {
    for (size_t i = 0; map && i < map->n; i++)
        if (!strcmp(kc_map_key(map, i)->str, key)) return kc_map_val(map, i);
    return NULL;
}

static int json_is_serialized(const kc_json *v) {
    return kc_json_kind_of(v) == KC_JSON_OBJECT && kc_json_str(kc_json_get(v, "class_name")) &&
           kc_json_get(v, "config");
}

static kc_node *from_json(kx *x, const kc_json *v);

/* {module, class_name, config, registered_name} -> `ClassName` when the
 * config holds nothing but nulls (Keras's defaults), else {class_name: X,
 * config: {...}} without the nulls. A built-in activation serialized as a
 * function becomes its name. */
static kc_node *from_serialized(kx *x, const kc_json *v) {
    const kc_json *cn = kc_json_get(v, "class_name"), *cfg = kc_json_get(v, "config");
    const char *cls = kc_json_str(cn);
    if (!strcmp(cls, "function") && kc_json_str(cfg)) return nd_scalar(x, cfg, kc_json_str(cfg), 1);
    kc_node *inner = NULL;
    if (kc_json_kind_of(cfg) == KC_JSON_OBJECT) {
        for (size_t i = 0; i < kc_json_len(cfg); i++) {
            const kc_json *val = kc_json_at(cfg, i);
            if (kc_json_is_null(val)) continue;
            if (!inner) inner = nd_new(x, KC_NODE_MAP, cfg);
            nd_put(x, inner, kc_json_key_at(cfg, i), from_json(x, val));
        }
    } else if (!kc_json_is_null(cfg)) {
        inner = from_json(x, cfg);
    }
    if (!inner) return nd_scalar(x, cn, cls, 1);
    kc_node *m = nd_new(x, KC_NODE_MAP, v);
    nd_put(x, m, "class_name", nd_scalar(x, cn, cls, 1));
    nd_put(x, m, "config", inner);
    return m;
}

static kc_node *from_json(kx *x, const kc_json *v) {
    switch (kc_json_kind_of(v)) {
    case KC_JSON_BOOL:
        return nd_scalar(x, v, kc_json_bool(v) ? "true" : "false", 0);
    case KC_JSON_NUMBER: {
        const char *t = kc_json_num_text(v);
        if (!strcmp(t, "NaN"))
            t = ".nan";
        else if (!strcmp(t, "Infinity"))
            t = ".inf";
        else if (!strcmp(t, "-Infinity"))
            t = "-.inf";
        return nd_scalar(x, v, t, 0);
    }
    case KC_JSON_STRING:
        return nd_scalar(x, v, kc_json_str(v), 1);
    case KC_JSON_ARRAY: {
        kc_node *s = nd_new(x, KC_NODE_SEQ, v);
        for (size_t i = 0; i < kc_json_len(v); i++)
            nd_append(x, s, from_json(x, kc_json_at(v, i)));
        return s;
    }
    case KC_JSON_OBJECT: {
        if (json_is_serialized(v)) return from_serialized(x, v);
        kc_node *m = nd_new(x, KC_NODE_MAP, v);
        for (size_t i = 0; i < kc_json_len(v); i++)
            nd_put(x, m, kc_json_key_at(v, i), from_json(x, kc_json_at(v, i)));
        return m;
    }
    default:
        return nd_scalar(x, v, "null", 0);
    }
}

/* ------------------------------------------------------------ entries */

typedef struct kx_entry {
    const char *cls;  /* class written: "Input", "Dense", ...; NULL for a repeated shared call */
    const char *name; /* the layer's name */
    kc_node *args;    /* class arguments (a map, owned) */
    int trainable;
    char **inputs; /* references written as `inputs:`; none: the entry before */
    int ninputs;
} kx_entry;

typedef struct kx_model {
    char name[128];
    int functional;
    kx_entry *entries;
    int nentries;
    char **inputs, **outputs; /* model inputs/outputs (functional) */
    int ninputs, noutputs;
    const char *keras_format; /* "Keras 3" or "Keras 2" */
} kx_model;

static void strv_free(char **v, int n) {
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void model_free(kx_model *m) {
    for (int i = 0; i < m->nentries; i++) {
        nd_free(m->entries[i].args);
        strv_free(m->entries[i].inputs, m->entries[i].ninputs);
    }
    free(m->entries);
    strv_free(m->inputs, m->ninputs);
    strv_free(m->outputs, m->noutputs);
    memset(m, 0, sizeof *m);
}

static kx_entry *add_entry(kx *x, kx_model *m) {
    kx_entry *ne = realloc(m->entries, (size_t)(m->nentries + 1) * sizeof *ne);
    if (!ne) {
        x->oom = 1;
        return NULL;
    }
    m->entries = ne;
    kx_entry *en = &m->entries[m->nentries++];
    memset(en, 0, sizeof *en);
    en->trainable = 1;
    return en;
}

static int strv_push(char ***v, int *n, const char *s) {
    char **nv = realloc(*v, (size_t)(*n + 1) * sizeof *nv);
    if (!nv) return -1;
    *v = nv;
    if (!(nv[*n] = strdup(s))) return -1;
    (*n)++;
    return 0;
}

/* ------------------------------------------------------------ classes */

static int is_input_class(const char *cls) {
    return !strcmp(cls, "InputLayer") || !strcmp(cls, "Input");
}

/* "InputLayer, Dense, Conv2D, ..." for messages. */
static void supported_list(char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "InputLayer");
    for (size_t i = 0; kc_layer_classes[i] && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, ", %s", kc_layer_classes[i]->class_name);
}

static int unsupported_class(kx *x, const kc_json *at, const char *name, const char *cls) {
    if (!strcmp(cls, "Sequential") || !strcmp(cls, "Functional") || !strcmp(cls, "Model"))
        return kx_fail(x, at, name, cls,
                       "a model nested inside a model is not supported; kerasc reads one level "
                       "of layers");
    char list[1024];
    supported_list(list, sizeof list);
    return kx_fail(x, at, name, cls,
                   "kerasc does not support the layer class '%s' (it supports %s)", cls, list);
}

/* ------------------------------------------------------------ arguments */

/* The dtype of a layer or input: a string (Keras 2, InputLayer) or a
 * DTypePolicy object (Keras 3). Only float32 computes as Keras would. */
static int check_dtype(kx *x, const kc_json *v, const char *layer, const char *cls) {
    if (kc_json_is_null(v) || !v) return KC_OK;
    const char *name = kc_json_str(v);
    if (!name && kc_json_kind_of(v) == KC_JSON_OBJECT) {
        const kc_json *cfg = kc_json_get(v, "config");
        name = kc_json_str(kc_json_get(cfg, "name"));
        if (!name) name = kc_json_str(kc_json_get(v, "name"));
    }
    if (!name) return kx_fail(x, v, layer, cls, "dtype must be a name such as \"float32\"");
    if (strcmp(name, "float32"))
        return kx_fail(x, v, layer, cls, "dtype '%s' is not supported (kerasc computes in float32)",
                       name);
    return KC_OK;
}

/* A layer's config -> its class arguments. name, trainable and dtype are
 * handled here; nulls are Keras's "not set" and are dropped; the first
 * layer's batch_input_shape (Keras 2) is read by the caller. */
static int layer_args(kx *x, const kc_json *cfg, const char *layer, const char *cls, kx_entry *en) {
    en->args = nd_new(x, KC_NODE_MAP, cfg);
    for (size_t i = 0; i < kc_json_len(cfg); i++) {
        const char *key = kc_json_key_at(cfg, i);
        const kc_json *v = kc_json_at(cfg, i);
        if (!strcmp(key, "name") || !strcmp(key, "batch_input_shape") ||
            !strcmp(key, "input_shape") || !strcmp(key, "batch_size") || kc_json_is_null(v))
            continue;
        if (!strcmp(key, "trainable")) {
            if (kc_json_kind_of(v) != KC_JSON_BOOL)
                return kx_fail(x, v, layer, cls, "trainable must be true or false");
            en->trainable = kc_json_bool(v);
            continue;
        }
        if (!strcmp(key, "dtype")) {
            int rc = check_dtype(x, v, layer, cls);
            if (rc) return rc;
            continue;
        }
        nd_put(x, en->args, key, from_json(x, v));
    }
    return x->oom ? kx_oom(x) : KC_OK;
}

/* Runs the class's own argument reader on the converted map, so anything
 * kerasc would reject in a YAML file is rejected here at the JSON position. */
static int validate_args(kx *x, const kc_json *cls_at, const char *layer, const kc_layer_class *lc,
                         kc_node *args) {
    kc_node *where = nd_scalar(x, cls_at, lc->class_name, 1);
    if (!where) return kx_oom(x);
    kc_args a;
    kc_args_init(&a, args, where, lc->class_name);
    kc_layer *l = NULL;
    int rc = kc_layer_create(lc, &a, where, &l, x->e);
    kc_layer_free(l);
    if (!rc) rc = kc_args_finish(&a, x->e);
    nd_free(where);
    if (rc && rc != KC_ERUNTIME) name_layer_in_error(x, layer, lc->class_name);
    return rc;
}

/* ------------------------------------------------------------ defaults */

/* Arguments equal to these are Keras's (and kerasc's) defaults and are left
 * out of the YAML; `cls` lists the classes a row is for. A numeric default
 * also matches a tuple of that number (strides [1, 1]). An initializer
 * written with arguments ({class_name: RandomUniform, config: {minval:
 * -0.05, maxval: 0.05}}) matches `value` with exactly the `config` entries
 * "key=value key=value". */
typedef struct kx_default {
    const char *cls, *key, *value, *alt, *config;
} kx_default;

#define CONV "Conv1D Conv2D"
#define RNN "SimpleRNN LSTM GRU"
#define POOL1D "MaxPooling1D AveragePooling1D"
#define GLOBAL1D "GlobalAveragePooling1D GlobalMaxPooling1D"

static const kx_default defaults[] = {
    {"Dense", "activation", "linear", NULL, NULL},
    {"Dense", "use_bias", "true", NULL, NULL},
    {"Dense", "kernel_initializer", "GlorotUniform", "glorot_uniform", NULL},
    {"Dense", "bias_initializer", "Zeros", "zeros", NULL},
    {CONV, "strides", "1", NULL, NULL},
    {CONV, "padding", "valid", NULL, NULL},
    {CONV, "data_format", "channels_last", NULL, NULL},
    {CONV, "dilation_rate", "1", NULL, NULL},
    {CONV, "groups", "1", NULL, NULL},
    {CONV, "activation", "linear", NULL, NULL},
    {CONV, "use_bias", "true", NULL, NULL},
    {CONV, "kernel_initializer", "GlorotUniform", "glorot_uniform", NULL},
    {CONV, "bias_initializer", "Zeros", "zeros", NULL},
    {"MaxPooling2D", "pool_size", "2", NULL, NULL},
    {"MaxPooling2D", "padding", "valid", NULL, NULL},
    {"MaxPooling2D", "data_format", "channels_last", NULL, NULL},
    {"AveragePooling2D", "padding", "valid", NULL, NULL},
    {"AveragePooling2D", "data_format", "channels_last", NULL, NULL},
    {"Flatten", "data_format", "channels_last", NULL, NULL},
    {"Concatenate", "axis", "-1", NULL, NULL},
    {"Dot", "normalize", "false", NULL, NULL},
    /* the sequence layers */
    {"MaxPooling1D", "pool_size", "2", NULL, NULL},
    {POOL1D, "padding", "valid", NULL, NULL},
    {POOL1D, "data_format", "channels_last", NULL, NULL},
    {GLOBAL1D, "data_format", "channels_last", NULL, NULL},
    {GLOBAL1D, "keepdims", "false", NULL, NULL},
    {"ZeroPadding1D", "padding", "1", NULL, NULL},
    {"ZeroPadding1D", "data_format", "channels_last", NULL, NULL},
    {"Cropping1D", "cropping", "1", NULL, NULL},
    {"UpSampling1D", "size", "2", NULL, NULL},
    {"Embedding", "embeddings_initializer", "RandomUniform", NULL, "minval=-0.05 maxval=0.05"},
    {"Embedding", "embeddings_initializer", "uniform", NULL, NULL},
    {"Embedding", "mask_zero", "false", NULL, NULL},
    {RNN, "activation", "tanh", NULL, NULL},
    {"LSTM GRU", "recurrent_activation", "sigmoid", NULL, NULL},
    {RNN, "use_bias", "true", NULL, NULL},
    {RNN, "kernel_initializer", "GlorotUniform", "glorot_uniform", NULL},
    {RNN, "recurrent_initializer", "Orthogonal", "orthogonal", NULL},
    {RNN, "recurrent_initializer", "Orthogonal", NULL, "gain=1"},
    {RNN, "bias_initializer", "Zeros", "zeros", NULL},
    {"LSTM", "unit_forget_bias", "true", NULL, NULL},
    {"GRU", "reset_after", "true", NULL, NULL},
    {RNN, "dropout", "0", NULL, NULL},
    {RNN, "recurrent_dropout", "0", NULL, NULL},
    {RNN, "return_sequences", "false", NULL, NULL},
    {RNN, "return_state", "false", NULL, NULL},
    {RNN, "go_backwards", "false", NULL, NULL},
    {RNN, "stateful", "false", NULL, NULL},
    {RNN, "unroll", "false", NULL, NULL},
    {RNN, "zero_output_for_mask", "false", NULL, NULL},
    {"Bidirectional", "merge_mode", "concat", NULL, NULL},
    /* mean and variance null: adapted; axis [] (None) stays */
    {"Normalization", "axis", "-1", NULL, NULL},
    {"Normalization", "invert", "false", NULL, NULL},
};

/* Whether cls is one of the space-separated names in list. */
static int class_in(const char *list, const char *cls) {
    size_t n = strlen(cls);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ' ');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, cls, n)) return 1;
        p += len;
        while (*p == ' ')
            p++;
    }
    return 0;
}

static int scalar_is(const kc_node *n, const char *text) {
    if (!n || n->kind != KC_NODE_SCALAR) return 0;
    if (!strcmp(n->str, text)) return 1;
    if (n->quoted) return 0;
    char *e1, *e2;
    double a = strtod(n->str, &e1), b = strtod(text, &e2);
    return e1 != n->str && !*e1 && e2 != text && !*e2 && a == b;
}

static int node_is(const kc_node *n, const char *text) {
    if (n && n->kind == KC_NODE_SEQ && n->n > 0) {
        for (size_t i = 0; i < n->n; i++)
            if (!scalar_is(n->items[i], text)) return 0;
        return 1;
    }
    return scalar_is(n, text);
}

/* Both scalars or both sequences, item by item; a scalar equals a tuple of
 * itself (pool_size 2 and strides [2, 2]). */
static int same_tuple(const kc_node *a, const kc_node *b) {
    if (!a || !b) return 0;
    if (a->kind == KC_NODE_SCALAR) return node_is(b, a->str);
    if (b->kind == KC_NODE_SCALAR) return node_is(a, b->str);
    if (a->kind != KC_NODE_SEQ || b->kind != KC_NODE_SEQ || a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (!scalar_is(a->items[i], b->items[i]->kind == KC_NODE_SCALAR ? b->items[i]->str : ""))
            return 0;
    return 1;
}

/* {class_name: value, config: {k: v, ...}} with exactly config's entries. */
static int initializer_is(const kc_node *n, const char *value, const char *config) {
    if (!n || n->kind != KC_NODE_MAP) return 0;
    const kc_node *cfg = nd_lookup((kc_node *)n, "config");
    if (!scalar_is(nd_lookup((kc_node *)n, "class_name"), value) || n->n != (cfg ? 2u : 1u))
        return 0;
    size_t want = 0;
    for (const char *p = config; *p;) {
        char key[64], val[64];
        int used = 0;
        if (sscanf(p, " %63[^=]=%63s%n", key, val, &used) != 2 || used <= 0) return 0;
        if (!scalar_is(nd_lookup((kc_node *)cfg, key), val)) return 0;
        want++;
        p += used;
        while (*p == ' ')
            p++;
    }
    return (cfg ? cfg->n : 0) == want;
}

static int is_default(const char *cls, kc_node *args, const char *key, const kc_node *v) {
    int pool = !strcmp(cls, "MaxPooling2D") || !strcmp(cls, "AveragePooling2D") ||
               !strcmp(cls, "MaxPooling1D") || !strcmp(cls, "AveragePooling1D");
    if (pool && !strcmp(key, "strides")) {
        kc_node *ps = nd_lookup(args, "pool_size");
        return ps ? same_tuple(ps, v) : node_is(v, "2"); /* None means pool_size */
    }
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        const kx_default *d = &defaults[i];
        if (!class_in(d->cls, cls) || strcmp(d->key, key)) continue;
        if (d->config ? initializer_is(v, d->value, d->config)
                      : node_is(v, d->value) || (d->alt && node_is(v, d->alt)))
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ inputs */

/* A shape list -> the `shape:` node; with_batch: the first entry is the
 * batch axis, which must be None. */
static int shape_node(kx *x, const kc_json *shape, int with_batch, const char *layer,
                      kc_node **out) {
    *out = NULL;
    size_t n = kc_json_len(shape);
    if (kc_json_kind_of(shape) != KC_JSON_ARRAY || n < (size_t)with_batch + 1)
        return kx_fail(x, shape, layer, "InputLayer", "the shape must be a list of dimensions");
    const kc_json *b = kc_json_at(shape, 0);
    if (with_batch && !kc_json_is_null(b))
        return kx_fail(x, b, layer, "InputLayer",
                       "a fixed batch size (%s) is not supported: kerasc models take batches of "
                       "any size (the batch size is set in fit)",
                       kc_json_num_text(b) ? kc_json_num_text(b) : "?");
    kc_node *dims = nd_new(x, KC_NODE_SEQ, shape);
    for (size_t i = (size_t)with_batch; i < n; i++) {
        const kc_json *d = kc_json_at(shape, i);
        int64_t v;
        if (kc_json_is_null(d)) {
            nd_free(dims);
            return kx_fail(x, d, layer, "InputLayer",
                           "input dimension %zu is None; kerasc needs every dimension but the "
                           "batch",
                           i);
        }
        if (kc_json_int64(d, &v) || v < 1) {
            nd_free(dims);
            return kx_fail(x, d, layer, "InputLayer", "dimensions must be positive integers");
        }
        nd_append(x, dims, from_json(x, d));
    }
    if (x->oom) {
        nd_free(dims);
        return kx_oom(x);
    }
    *out = dims;
    return KC_OK;
}

static int add_input(kx *x, kx_model *m, const char *name, const kc_json *at, kc_node *dims) {
    kx_entry *en = add_entry(x, m);
    if (!en) {
        nd_free(dims);
        return kx_oom(x);
    }
    en->cls = "Input";
    en->name = name;
    en->args = nd_new(x, KC_NODE_MAP, at);
    nd_put(x, en->args, "shape", dims);
    return x->oom ? kx_oom(x) : KC_OK;
}

/* InputLayer config -> `Input: {name, shape}`. */
static int input_entry(kx *x, const kc_json *entry, kx_model *m) {
    const kc_json *cfg = kc_json_get(entry, "config");
    const char *name = kc_json_str(kc_json_get(cfg, "name"));
    if (!name) name = kc_json_str(kc_json_get(entry, "name"));
    if (!name) return kx_fail(x, cfg, NULL, NULL, "an InputLayer needs a name");
    const kc_json *shape = NULL;
    int with_batch = 1;
    for (size_t i = 0; i < kc_json_len(cfg); i++) {
        const char *key = kc_json_key_at(cfg, i);
        const kc_json *v = kc_json_at(cfg, i);
        if (kc_json_is_null(v) || !strcmp(key, "name")) continue;
        if (!strcmp(key, "batch_shape") || !strcmp(key, "batch_input_shape")) {
            shape = v;
            with_batch = 1;
        } else if (!strcmp(key, "shape")) {
            if (!shape) {
                shape = v;
                with_batch = 0;
            }
        } else if (!strcmp(key, "dtype")) {
            int rc = check_dtype(x, v, name, "InputLayer");
            if (rc) return rc;
        } else if (!strcmp(key, "sparse") || !strcmp(key, "ragged") || !strcmp(key, "optional")) {
            if (kc_json_kind_of(v) != KC_JSON_BOOL)
                return kx_fail(x, v, name, "InputLayer", "%s must be true or false", key);
            if (kc_json_bool(v))
                return kx_fail(x, v, name, "InputLayer", "%s inputs are not supported", key);
        } else {
            return kx_fail(x, v, name, "InputLayer", "the setting '%s' is not supported", key);
        }
    }
    if (!shape) return kx_fail(x, cfg, name, "InputLayer", "the input has no shape");
    kc_node *dims;
    int rc = shape_node(x, shape, with_batch, name, &dims);
    return rc ? rc : add_input(x, m, name, cfg, dims);
}

/* ------------------------------------------------------------ layers */

static const char *entry_class(kx *x, const kc_json *entry, int *rc) {
    const char *cls = kc_json_str(kc_json_get(entry, "class_name"));
    *rc = KC_OK;
    if (kc_json_kind_of(entry) != KC_JSON_OBJECT || !cls)
        *rc = kx_fail(x, entry, NULL, NULL, "a layer must be an object with a \"class_name\"");
    else if (kc_json_kind_of(kc_json_get(entry, "config")) != KC_JSON_OBJECT)
        *rc = kx_fail(x, entry, NULL, NULL, "layer of class '%s' has no \"config\" object", cls);
    return cls;
}

static const char *layer_name(const kc_json *entry) {
    const char *n = kc_json_str(kc_json_get(kc_json_get(entry, "config"), "name"));
    return n ? n : kc_json_str(kc_json_get(entry, "name"));
}

/* A non-input layer's first (or only) call. */
static int layer_entry(kx *x, const kc_json *entry, const char *name, kx_model *m, kx_entry **out) {
    int rc;
    const char *cls = entry_class(x, entry, &rc);
    if (rc) return rc;
    const kc_json *cls_at = kc_json_get(entry, "class_name");
    const kc_layer_class *lc = kc_layer_class_find(cls);
    if (!lc) return unsupported_class(x, cls_at, name, cls);
    kx_entry *en = add_entry(x, m);
    if (!en) return kx_oom(x);
    en->cls = lc->class_name;
    en->name = name;
    if ((rc = layer_args(x, kc_json_get(entry, "config"), name, cls, en))) return rc;
    if ((rc = validate_args(x, cls_at, name, lc, en->args))) return rc;
    *out = en;
    return KC_OK;
}

/* ------------------------------------------------------------ Sequential */

/* A Sequential without an InputLayer: Keras 2 puts the input shape on the
 * first layer (batch_input_shape); a model built with build() records
 * build_input_shape. */
static int sequential_input(kx *x, const kc_json *cfg, const kc_json *first, kx_model *m) {
    const kc_json *bis = kc_json_get(kc_json_get(first, "config"), "batch_input_shape");
    const char *name = layer_name(first);
    if (kc_json_is_null(bis)) bis = NULL;
    if (!bis) bis = kc_json_get(cfg, "build_input_shape");
    if (kc_json_is_null(bis) || !bis)
        return kx_fail(x, first, NULL, NULL,
                       "the model has no input shape (it was saved before being built); start it "
                       "with keras.Input(shape) in Keras");
    kc_node *dims;
    int rc = shape_node(x, bis, 1, name, &dims);
    return rc ? rc : add_input(x, m, NULL, bis, dims);
}

static int convert_sequential(kx *x, const kc_json *cfg, kx_model *m) {
    const kc_json *layers =
        kc_json_kind_of(cfg) == KC_JSON_ARRAY ? cfg : kc_json_get(cfg, "layers");
    if (kc_json_kind_of(layers) != KC_JSON_ARRAY || kc_json_len(layers) == 0)
        return kx_fail(x, cfg, NULL, NULL, "the Sequential config has no \"layers\" list");
    const char *mname = kc_json_str(kc_json_get(cfg, "name"));
    snprintf(m->name, sizeof m->name, "%s", mname ? mname : "sequential");
    int rc;
    for (size_t i = 0; i < kc_json_len(layers); i++) {
        const kc_json *entry = kc_json_at(layers, i);
        const char *cls = entry_class(x, entry, &rc);
        if (rc) return rc;
        if (is_input_class(cls)) {
            if (i > 0)
                return kx_fail(x, entry, layer_name(entry), cls,
                               "an InputLayer must be the first layer of a Sequential model");
            if ((rc = input_entry(x, entry, m))) return rc;
            continue;
        }
        if (i == 0 && (rc = sequential_input(x, cfg, entry, m))) return rc;
        const char *name = layer_name(entry);
        if (!name) return kx_fail(x, entry, NULL, NULL, "layer of class '%s' has no name", cls);
        const kc_layer_class *lc = kc_layer_class_find(cls);
        /* the RNNs take extra inputs (initial states) but need only one */
        if (lc && kc_layer_class_is_multi(lc) &&
            (lc->min_inputs > 1 || !strcmp(lc->class_name, "Concatenate")))
            return kx_fail(x, kc_json_get(entry, "class_name"), name, cls,
                           "a merge layer needs several inputs, which a Sequential model cannot "
                           "give it");
        kx_entry *en;
        if ((rc = layer_entry(x, entry, name, m, &en))) return rc;
    }
    return x->oom ? kx_oom(x) : KC_OK;
}

/* ------------------------------------------------------------ Functional */

typedef struct kx_ref {
    size_t layer, node, tensor;
} kx_ref;

typedef struct kx_call {
    const kc_json *at; /* the inbound node, for errors */
    kx_ref *refs;      /* the tensor arguments, then the initial_state tensors */
    size_t n;
    size_t nargs;  /* how many of refs are tensor arguments */
    kx_ref *masks; /* the `mask` keyword: one per argument */
    int *has_mask; /* ... where it is a tensor (not null) */
    size_t nmasks; /* 0: no mask given */
    const kc_json *mask_at;
    int cmp_zero; /* a NotEqual op: its second argument is the number 0 */
} kx_call;

typedef struct kx_layer {
    const kc_json *entry;
    const char *name, *cls;
    int is_input;
    int is_mask_op; /* Keras 3's NotEqual, which only a mask may come from */
    int rule;       /* its kc_mask_rule + 1 once known, 0 before */
    kx_call *calls; /* one per inbound node */
    size_t ncalls;
    size_t emitted; /* calls already written */
} kx_layer;

typedef struct kx_graph {
    kx_layer *layers;
    size_t n;
} kx_graph;

static void graph_free(kx_graph *g) {
    for (size_t i = 0; i < g->n; i++) {
        for (size_t k = 0; k < g->layers[i].ncalls; k++) {
            free(g->layers[i].calls[k].refs);
            free(g->layers[i].calls[k].masks);
            free(g->layers[i].calls[k].has_mask);
        }
        free(g->layers[i].calls);
    }
    free(g->layers);
}

static size_t find_layer(const kx_graph *g, const char *name) {
    for (size_t i = 0; i < g->n; i++)
        if (!strcmp(g->layers[i].name, name)) return i;
    return (size_t)-1;
}

/* Calls of a layer, for node numbers: an input has its own single node. */
static size_t call_count(const kx_layer *l) {
    return l->is_input ? 1 : l->ncalls;
}

/* Keras 3 records the masks it passes between layers as operations of
 * their own (`NotEqual(ids, 0)` for an Embedding with mask_zero). */
static int is_mask_op_class(const char *cls) {
    return !strcmp(cls, "NotEqual");
}

static int push_ref(kx *x, kx_ref **refs, size_t *n, kx_ref r) {
    kx_ref *nr = realloc(*refs, (*n + 1) * sizeof *nr);
    if (!nr) return kx_oom(x);
    *refs = nr;
    nr[(*n)++] = r;
    return KC_OK;
}

/* [layer_name, node_index, tensor_index(, kwargs)] -> a reference. */
static int parse_history(kx *x, const kx_graph *g, const kc_json *h, const char *layer,
                         const char *cls, kx_ref *out) {
    int64_t node, tensor;
    const char *name = kc_json_str(kc_json_at(h, 0));
    if (kc_json_kind_of(h) != KC_JSON_ARRAY || kc_json_len(h) < 3 || !name ||
        kc_json_int64(kc_json_at(h, 1), &node) || kc_json_int64(kc_json_at(h, 2), &tensor) ||
        node < 0 || tensor < 0)
        return kx_fail(x, h, layer, cls,
                       "a tensor reference must be [layer name, node index, tensor index]");
    size_t li = find_layer(g, name);
    if (li == (size_t)-1)
        return kx_fail(x, h, layer, cls, "refers to a layer '%s' that the model does not have",
                       name);
    if (tensor >= KC_LAYER_MAX_OUTPUTS)
        return kx_fail(x, h, layer, cls,
                       "takes tensor %lld of layer '%s'; kerasc layers return at most %d",
                       (long long)tensor, name, KC_LAYER_MAX_OUTPUTS);
    out->layer = li;
    out->node = (size_t)node;
    out->tensor = (size_t)tensor;
    return KC_OK;
}

/* Keras 3 call arguments: tensors, possibly inside lists (merge layers). */
static int collect_k3(kx *x, const kx_graph *g, const kc_json *v, kx_call *c, const char *layer,
                      const char *cls) {
    if (kc_json_kind_of(v) == KC_JSON_ARRAY) {
        for (size_t i = 0; i < kc_json_len(v); i++) {
            int rc = collect_k3(x, g, kc_json_at(v, i), c, layer, cls);
            if (rc) return rc;
        }
        return KC_OK;
    }
    const char *tcls = kc_json_str(kc_json_get(v, "class_name"));
    if (!tcls || strcmp(tcls, "__keras_tensor__"))
        return kx_fail(x, v, layer, cls,
                       "a call argument that is %s, not a tensor, is not supported",
                       kc_json_kind_name(kc_json_kind_of(v)));
    kx_ref r;
    int rc =
        parse_history(x, g, kc_json_get(kc_json_get(v, "config"), "keras_history"), layer, cls, &r);
    return rc ? rc : push_ref(x, &c->refs, &c->n, r);
}

/* A tensor inside keyword arguments: Keras 3's {"class_name":
 * "__keras_tensor__", ...} or Keras 2's [name, node, tensor]. */
static int kw_tensor(const kc_json *v, int k3) {
    if (k3) {
        const char *c = kc_json_str(kc_json_get(v, "class_name"));
        return c && !strcmp(c, "__keras_tensor__");
    }
    return kc_json_kind_of(v) == KC_JSON_ARRAY && kc_json_str(kc_json_at(v, 0));
}

static int kw_ref(kx *x, const kx_graph *g, const kc_json *v, int k3, const char *layer,
                  const char *cls, kx_ref *r) {
    const kc_json *h = k3 ? kc_json_get(kc_json_get(v, "config"), "keras_history") : v;
    return parse_history(x, g, h, layer, cls, r);
}

/* initial_state: one tensor or a list of them, after the call's inputs (an
 * RNN takes [x, h0(, c0)]). */
static int kw_initial_state(kx *x, const kx_graph *g, const kc_json *v, int k3, kx_call *c,
                            const char *layer, const char *cls) {
    if (kc_json_is_null(v)) return KC_OK;
    int one = kw_tensor(v, k3);
    if (!one && kc_json_kind_of(v) != KC_JSON_ARRAY)
        return kx_fail(x, v, layer, cls, "initial_state must be a tensor or a list of tensors");
    size_t n = one ? 1 : kc_json_len(v);
    for (size_t i = 0; i < n; i++) {
        const kc_json *t = one ? v : kc_json_at(v, i);
        kx_ref r;
        if (!kw_tensor(t, k3)) return kx_fail(x, t, layer, cls, "initial_state must list tensors");
        int rc = kw_ref(x, g, t, k3, layer, cls, &r);
        if (!rc) rc = push_ref(x, &c->refs, &c->n, r);
        if (rc) return rc;
    }
    return KC_OK;
}

/* mask: null, a tensor, or a list with one entry (tensor or null) per
 * argument. Checked against the graph's own masks once every call is read
 * (check_masks). */
static int kw_mask(kx *x, const kx_graph *g, const kc_json *v, int k3, kx_call *c,
                   const char *layer, const char *cls) {
    if (kc_json_is_null(v)) return KC_OK;
    int one = kw_tensor(v, k3);
    if (!one && kc_json_kind_of(v) != KC_JSON_ARRAY)
        return kx_fail(x, v, layer, cls, "mask must be a tensor or a list of tensors");
    size_t n = one ? 1 : kc_json_len(v);
    c->masks = calloc(n ? n : 1, sizeof *c->masks);
    c->has_mask = calloc(n ? n : 1, sizeof *c->has_mask);
    if (!c->masks || !c->has_mask) return kx_oom(x);
    c->nmasks = n;
    c->mask_at = v;
    for (size_t i = 0; i < n; i++) {
        const kc_json *t = one ? v : kc_json_at(v, i);
        if (kc_json_is_null(t)) continue;
        if (!kw_tensor(t, k3)) return kx_fail(x, t, layer, cls, "mask must list tensors");
        int rc = kw_ref(x, g, t, k3, layer, cls, &c->masks[i]);
        if (rc) return rc;
        c->has_mask[i] = 1;
    }
    return KC_OK;
}

/* Keyword arguments of a call: null ones are Keras's defaults; Keras 3's
 * functional models override a recorded training flag with their own
 * (fit trains, evaluate and predict infer), as kerasc does, while Keras 2
 * keeps it; initial_state adds inputs and a mask must be the one the graph
 * passes anyway. Anything else changes the computation. */
static int read_kwargs(kx *x, const kx_graph *g, const kc_json *kw, int k3, kx_call *c,
                       const char *layer, const char *cls) {
    if (!kw || kc_json_is_null(kw)) return KC_OK;
    if (kc_json_kind_of(kw) != KC_JSON_OBJECT)
        return kx_fail(x, kw, layer, cls, "call keyword arguments must be an object");
    for (size_t i = 0; i < kc_json_len(kw); i++) {
        const char *key = kc_json_key_at(kw, i);
        const kc_json *v = kc_json_at(kw, i);
        int rc = KC_OK;
        if (kc_json_is_null(v)) continue;
        if (k3 && !strcmp(key, "training") && kc_json_kind_of(v) == KC_JSON_BOOL) continue;
        if (!strcmp(key, "initial_state"))
            rc = kw_initial_state(x, g, v, k3, c, layer, cls);
        else if (!strcmp(key, "mask"))
            rc = kw_mask(x, g, v, k3, c, layer, cls);
        else
            rc = kx_fail(x, v, layer, cls, "the call argument '%s' is not supported", key);
        if (rc) return rc;
    }
    return KC_OK;
}

/* NotEqual(x, 0): the tensor, and whether the other argument is 0. */
static int parse_mask_op(kx *x, const kx_graph *g, const kc_json *node, kx_call *c,
                         const char *layer, const char *cls) {
    const kc_json *args = kc_json_get(node, "args");
    c->at = node;
    if (kc_json_kind_of(node) != KC_JSON_OBJECT || kc_json_kind_of(args) != KC_JSON_ARRAY ||
        kc_json_len(args) != 2 || !kw_tensor(kc_json_at(args, 0), 1))
        return kx_fail(x, node, layer, cls, "expected NotEqual(tensor, value)");
    kx_ref r;
    int rc = kw_ref(x, g, kc_json_at(args, 0), 1, layer, cls, &r);
    if (!rc) rc = push_ref(x, &c->refs, &c->n, r);
    c->nargs = c->n;
    c->cmp_zero = kc_json_num(kc_json_at(args, 1)) == 0.0; /* NaN for anything else */
    return rc;
}

static int parse_call(kx *x, const kx_graph *g, const kc_json *node, kx_call *c, const char *layer,
                      const char *cls) {
    c->at = node;
    if (kc_json_kind_of(node) == KC_JSON_OBJECT) { /* Keras 3: {args, kwargs} */
        const kc_json *args = kc_json_get(node, "args");
        if (kc_json_kind_of(args) != KC_JSON_ARRAY)
            return kx_fail(x, node, layer, cls, "an inbound node needs an \"args\" list");
        int rc = collect_k3(x, g, args, c, layer, cls);
        c->nargs = c->n;
        return rc ? rc : read_kwargs(x, g, kc_json_get(node, "kwargs"), 1, c, layer, cls);
    }
    if (kc_json_kind_of(node) != KC_JSON_ARRAY) /* Keras 2: [[name, node, tensor, kwargs], ...] */
        return kx_fail(x, node, layer, cls, "an inbound node must be a list or an object");
    for (size_t i = 0; i < kc_json_len(node); i++) {
        kx_ref r;
        int rc = parse_history(x, g, kc_json_at(node, i), layer, cls, &r);
        if (!rc) rc = push_ref(x, &c->refs, &c->n, r);
        if (rc) return rc;
    }
    /* Keras 2 repeats the keyword arguments on each tensor of the first argument */
    c->nargs = c->n;
    return read_kwargs(x, g, kc_json_at(kc_json_at(node, 0), 3), 0, c, layer, cls);
}

static int read_layers(kx *x, const kc_json *layers, kx_graph *g) {
    g->layers = calloc(kc_json_len(layers) ? kc_json_len(layers) : 1, sizeof *g->layers);
    if (!g->layers) return kx_oom(x);
    int rc;
    for (size_t i = 0; i < kc_json_len(layers); i++) {
        const kc_json *entry = kc_json_at(layers, i);
        kx_layer *l = &g->layers[g->n];
        l->entry = entry;
        if (!(l->cls = entry_class(x, entry, &rc))) return rc;
        if (rc) return rc;
        l->name = kc_json_str(kc_json_get(entry, "name"));
        if (!l->name) l->name = layer_name(entry);
        if (!l->name)
            return kx_fail(x, entry, NULL, NULL, "layer of class '%s' has no name", l->cls);
        if (find_layer(g, l->name) != (size_t)-1)
            return kx_fail(x, entry, l->name, l->cls, "a second layer has the name '%s'", l->name);
        l->is_input = is_input_class(l->cls);
        l->is_mask_op = is_mask_op_class(l->cls);
        g->n++;
    }
    /* inbound nodes only after every name is known */
    for (size_t i = 0; i < g->n; i++) {
        kx_layer *l = &g->layers[i];
        const kc_json *nodes = kc_json_get(l->entry, "inbound_nodes");
        if (l->is_input) {
            if (kc_json_len(nodes) > 0)
                return kx_fail(x, nodes, l->name, l->cls, "an input layer takes no inputs");
            continue;
        }
        if (kc_json_kind_of(nodes) != KC_JSON_ARRAY || kc_json_len(nodes) == 0)
            return kx_fail(x, l->entry, l->name, l->cls,
                           "the layer is not connected (no \"inbound_nodes\")");
        l->calls = calloc(kc_json_len(nodes), sizeof *l->calls);
        if (!l->calls) return kx_oom(x);
        for (size_t k = 0; k < kc_json_len(nodes); k++) {
            l->ncalls++;
            rc = l->is_mask_op
                     ? parse_mask_op(x, g, kc_json_at(nodes, k), &l->calls[k], l->name, l->cls)
                     : parse_call(x, g, kc_json_at(nodes, k), &l->calls[k], l->name, l->cls);
            if (rc) return rc;
        }
    }
    return KC_OK;
}

/* Every reference names an existing call, and each layer gets as many
 * inputs as it takes. */
static int check_graph(kx *x, const kx_graph *g) {
    for (size_t i = 0; i < g->n; i++) {
        const kx_layer *l = &g->layers[i];
        if (l->is_input) continue;
        for (size_t k = 0; k < l->ncalls; k++)
            for (size_t j = 0; j < l->calls[k].n; j++) {
                const kx_layer *src = &g->layers[l->calls[k].refs[j].layer];
                if (src->is_mask_op)
                    return kx_fail(x, l->calls[k].at, l->name, l->cls,
                                   "takes the output of '%s' (%s), an operation kerasc does not "
                                   "support; it may only be a layer's mask",
                                   src->name, src->cls);
            }
        if (l->is_mask_op) continue;
        const kc_layer_class *lc = kc_layer_class_find(l->cls);
        if (!lc) return unsupported_class(x, kc_json_get(l->entry, "class_name"), l->name, l->cls);
        int lo, hi;
        kc_layer_class_arity(lc, &lo, &hi);
        for (size_t k = 0; k < l->ncalls; k++) {
            const kx_call *c = &l->calls[k];
            for (size_t j = 0; j < c->n; j++) {
                const kx_layer *src = &g->layers[c->refs[j].layer];
                if (c->refs[j].node >= call_count(src))
                    return kx_fail(x, c->at, l->name, l->cls,
                                   "takes node %zu of layer '%s', which is called only %zu time%s",
                                   c->refs[j].node, src->name, call_count(src),
                                   call_count(src) == 1 ? "" : "s");
            }
            if (c->n < (size_t)lo || c->n > (size_t)hi)
                return kx_fail(x, c->at, l->name, l->cls,
                               "is called with %zu input%s; it takes %s %d", c->n,
                               c->n == 1 ? "" : "s",
                               lo == hi            ? "exactly"
                               : c->n < (size_t)lo ? "at least"
                                                   : "at most",
                               c->n < (size_t)lo ? lo : hi);
        }
    }
    return KC_OK;
}

/* `name` for a layer's first call, `name[k]` for later ones (Keras's node
 * numbering). */
static void ref_text(const kx_graph *g, kx_ref r, char *buf, size_t n) {
    if (r.tensor != 0)
        snprintf(buf, n, "%s[%zu][%zu]", g->layers[r.layer].name, r.node, r.tensor);
    else if (r.node == 0)
        snprintf(buf, n, "%s", g->layers[r.layer].name);
    else
        snprintf(buf, n, "%s[%zu]", g->layers[r.layer].name, r.node);
}

/* input_layers / output_layers: one [name, node, tensor] triple, or a list
 * or dict of them. */
static int collect_io(kx *x, const kx_graph *g, const kc_json *v, kx_ref **refs, size_t *n,
                      const char *what) {
    kc_json_kind k = kc_json_kind_of(v);
    if (k == KC_JSON_ARRAY && kc_json_str(kc_json_at(v, 0))) {
        kx_ref r;
        int rc = parse_history(x, g, v, NULL, NULL, &r);
        return rc ? rc : push_ref(x, refs, n, r);
    }
    if (k != KC_JSON_ARRAY && k != KC_JSON_OBJECT)
        return kx_fail(x, v, NULL, NULL, "\"%s\" must list [layer name, node, tensor] entries",
                       what);
    for (size_t i = 0; i < kc_json_len(v); i++) {
        int rc = collect_io(x, g, kc_json_at(v, i), refs, n, what);
        if (rc) return rc;
    }
    return KC_OK;
}

static int ref_ready(const kx_graph *g, const kx_call *c) {
    for (size_t j = 0; j < c->n; j++)
        if (g->layers[c->refs[j].layer].emitted <= c->refs[j].node) return 0;
    return 1;
}

/* Writes the next call of layer li as an entry. */
static int emit_call(kx *x, kx_graph *g, size_t li, kx_model *m, kx_ref *prev) {
    kx_layer *l = &g->layers[li];
    size_t k = l->emitted;
    int rc;
    if (l->is_input) {
        if ((rc = input_entry(x, l->entry, m))) return rc;
        l->emitted = 1;
        *prev = (kx_ref){li, 0, 0};
        return KC_OK;
    }
    kx_entry *en;
    if (k == 0) {
        if ((rc = layer_entry(x, l->entry, l->name, m, &en))) return rc;
    } else {
        if (!(en = add_entry(x, m))) return kx_oom(x);
        en->name = l->name; /* a repeated call: `{layer: name, inputs: ...}` */
    }
    const kx_call *c = &l->calls[k];
    int implicit = k == 0 && c->n == 1 && prev->layer != (size_t)-1 && prev->node == 0 &&
                   c->refs[0].layer == prev->layer && c->refs[0].node == 0 &&
                   c->refs[0].tensor == 0;
    for (size_t j = 0; !implicit && j < c->n; j++) {
        char buf[300];
        ref_text(g, c->refs[j], buf, sizeof buf);
        if (strv_push(&en->inputs, &en->ninputs, buf)) return kx_oom(x);
    }
    l->emitted++;
    *prev = (kx_ref){li, k, 0};
    return KC_OK;
}

/* Entries in an order where every call follows the calls it takes inputs
 * from: the earliest ready call in Keras's layer order first, so a model
 * without shared layers keeps Keras's order exactly. */
static int emit_graph(kx *x, kx_graph *g, kx_model *m) {
    size_t total = 0, done = 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->layers[i].is_mask_op)
            g->layers[i].emitted = call_count(&g->layers[i]); /* never written */
        else
            total += call_count(&g->layers[i]);
    kx_ref prev = {(size_t)-1, 0, 0};
    while (done < total) {
        size_t pick = (size_t)-1;
        for (size_t i = 0; i < g->n && pick == (size_t)-1; i++) {
            kx_layer *l = &g->layers[i];
            if (l->emitted >= call_count(l)) continue;
            if (l->is_input || ref_ready(g, &l->calls[l->emitted])) pick = i;
        }
        if (pick == (size_t)-1) {
            for (size_t i = 0; i < g->n; i++) {
                kx_layer *l = &g->layers[i];
                if (l->emitted < call_count(l))
                    return kx_fail(x, l->calls[l->emitted].at, l->name, l->cls,
                                   "its inputs form a cycle");
            }
            return kx_fail(x, NULL, NULL, NULL, "the layer graph cannot be ordered");
        }
        int rc = emit_call(x, g, pick, m, &prev);
        if (rc) return rc;
        done++;
    }
    return KC_OK;
}

static int io_names(kx *x, const kx_graph *g, const kc_json *v, const char *what, int inputs,
                    char ***names, int *n) {
    kx_ref *refs = NULL;
    size_t nr = 0;
    int rc = collect_io(x, g, v, &refs, &nr, what);
    if (!rc && nr == 0) rc = kx_fail(x, v, NULL, NULL, "\"%s\" is empty", what);
    for (size_t i = 0; !rc && i < nr; i++) {
        const kx_layer *l = &g->layers[refs[i].layer];
        char buf[300];
        if (inputs && !l->is_input)
            rc = kx_fail(x, v, NULL, NULL, "model input '%s' is not an InputLayer", l->name);
        else if (l->is_mask_op)
            rc = kx_fail(x, v, NULL, NULL,
                         "model output '%s' is a %s operation, which kerasc does not support",
                         l->name, l->cls);
        else if (refs[i].node >= call_count(l))
            rc = kx_fail(x, v, NULL, NULL,
                         "\"%s\" names node %zu of layer '%s', which is called "
                         "only %zu time%s",
                         what, refs[i].node, l->name, call_count(l), call_count(l) == 1 ? "" : "s");
        if (rc) break;
        ref_text(g, refs[i], buf, sizeof buf);
        if (strv_push(names, n, buf)) rc = kx_oom(x);
    }
    free(refs);
    return rc;
}

/* ------------------------------------------------------------ masks */

/* What layer l does with masks in kerasc (its class's mask_rule for its
 * arguments), kept in l->rule. */
static int layer_rule(kx *x, kx_layer *l, kc_mask_rule *out) {
    if (l->rule) {
        *out = (kc_mask_rule)(l->rule - 1);
        return KC_OK;
    }
    const kc_layer_class *lc = kc_layer_class_find(l->cls);
    kx_entry en = {0};
    int rc = layer_args(x, kc_json_get(l->entry, "config"), l->name, l->cls, &en);
    kc_node *where = rc ? NULL : nd_scalar(x, kc_json_get(l->entry, "class_name"), l->cls, 1);
    if (!rc && !where) rc = kx_oom(x);
    kc_layer *made = NULL;
    if (!rc) {
        kc_args a;
        kc_args_init(&a, en.args, where, lc->class_name);
        rc = kc_layer_create(lc, &a, where, &made, x->e);
    }
    kc_mask_rule r = KC_MASK_NONE;
    if (!rc && lc->mask_rule) r = lc->mask_rule(made);
    kc_layer_free(made);
    nd_free(where);
    nd_free(en.args);
    if (rc) return rc;
    l->rule = (int)r + 1;
    *out = r;
    return KC_OK;
}

/* Follows tensor r back to where its mask is made, as kerasc passes masks
 * on: *found is set when an Embedding(mask_zero) makes it, with *ids the
 * tensor the Embedding was called on (whose `!= 0` the mask is). A mask
 * made otherwise (Masking, a merge's OR) or none at all leaves it 0. */
static int mask_origin(kx *x, kx_graph *g, kx_ref r, kx_ref *ids, int *found) {
    *found = 0;
    for (size_t hops = 0; hops <= g->n * 64; hops++) {
        kx_layer *l = &g->layers[r.layer];
        if (l->is_input || l->is_mask_op || r.tensor != 0 || r.node >= l->ncalls) return KC_OK;
        const kx_call *c = &l->calls[r.node];
        kc_mask_rule rule;
        int rc = layer_rule(x, l, &rule);
        if (rc) return rc;
        if (rule == KC_MASK_PRODUCE) {
            if (!strcmp(l->cls, "Embedding") && c->n >= 1) {
                *ids = c->refs[0];
                *found = 1;
            }
            return KC_OK;
        }
        if ((rule != KC_MASK_PROPAGATE && rule != KC_MASK_CONSUME_PROPAGATE) || c->nargs != 1)
            return KC_OK;
        r = c->refs[0];
    }
    return KC_OK;
}

static int same_ref(kx_ref a, kx_ref b) {
    return a.layer == b.layer && a.node == b.node && a.tensor == b.tensor;
}

/* A mask given to argument j of call c must be the one the graph gives it
 * anyway: NotEqual(ids, 0) of the ids whose Embedding(mask_zero) output
 * reaches the argument through layers that pass masks on. */
static int check_call_mask(kx *x, kx_graph *g, const kx_layer *l, const kx_call *c, size_t j) {
    char arg[300], mask[300];
    ref_text(g, c->refs[j], arg, sizeof arg);
    ref_text(g, c->masks[j], mask, sizeof mask);
    const kx_layer *m = &g->layers[c->masks[j].layer];
    const kx_call *mc = m->is_mask_op && c->masks[j].node < m->ncalls && c->masks[j].tensor == 0
                            ? &m->calls[c->masks[j].node]
                            : NULL;
    kx_ref ids;
    int found;
    int rc = mask_origin(x, g, c->refs[j], &ids, &found);
    if (rc) return rc;
    if (mc && mc->cmp_zero && found && same_ref(mc->refs[0], ids)) return KC_OK;
    if (!mc || !mc->cmp_zero)
        return kx_fail(x, c->mask_at, l->name, l->cls,
                       "is given the mask '%s' (%s), which kerasc cannot compute; a layer's mask "
                       "can only be the one its input carries (an Embedding with mask_zero)",
                       mask, m->cls);
    char want[300];
    ref_text(g, mc->refs[0], want, sizeof want);
    if (!found)
        return kx_fail(x, c->mask_at, l->name, l->cls,
                       "is given the mask '%s' (%s != 0), but its input '%s' carries no mask in "
                       "kerasc; masks come from Embedding(mask_zero) through layers that pass "
                       "them on",
                       mask, want, arg);
    char have[300];
    ref_text(g, ids, have, sizeof have);
    return kx_fail(x, c->mask_at, l->name, l->cls,
                   "is given the mask '%s' (%s != 0), but its input '%s' carries the mask of "
                   "'%s' != 0",
                   mask, want, arg, have);
}

static int check_masks(kx *x, kx_graph *g) {
    for (size_t i = 0; i < g->n; i++) {
        const kx_layer *l = &g->layers[i];
        for (size_t k = 0; !l->is_input && !l->is_mask_op && k < l->ncalls; k++) {
            const kx_call *c = &l->calls[k];
            if (c->nmasks && c->nmasks != c->nargs)
                return kx_fail(x, c->mask_at, l->name, l->cls, "is given %zu masks for %zu inputs",
                               c->nmasks, c->nargs);
            for (size_t j = 0; j < c->nmasks; j++) {
                int rc = c->has_mask[j] ? check_call_mask(x, g, l, c, j) : KC_OK;
                if (rc) return rc;
            }
        }
    }
    return KC_OK;
}

static int convert_functional(kx *x, const kc_json *cfg, kx_model *m) {
    const kc_json *layers = kc_json_get(cfg, "layers");
    if (kc_json_kind_of(layers) != KC_JSON_ARRAY || kc_json_len(layers) == 0)
        return kx_fail(x, cfg, NULL, NULL, "the model config has no \"layers\" list");
    const char *mname = kc_json_str(kc_json_get(cfg, "name"));
    snprintf(m->name, sizeof m->name, "%s", mname ? mname : "functional");
    m->functional = 1;
    kx_graph g = {0};
    int rc = read_layers(x, layers, &g);
    if (!rc) rc = check_graph(x, &g);
    if (!rc) rc = check_masks(x, &g);
    if (!rc) {
        const kc_json *in = kc_json_get(cfg, "input_layers"),
                      *out = kc_json_get(cfg, "output_layers");
        if (!in || !out)
            rc = kx_fail(x, cfg, NULL, NULL,
                         "the model config needs \"input_layers\" and \"output_layers\"");
        if (!rc) rc = io_names(x, &g, in, "input_layers", 1, &m->inputs, &m->ninputs);
        if (!rc) rc = io_names(x, &g, out, "output_layers", 0, &m->outputs, &m->noutputs);
    }
    if (!rc) rc = emit_graph(x, &g, m);
    graph_free(&g);
    return rc;
}

/* ------------------------------------------------------------ YAML text */

/* Plain YAML scalars that read back as the same string (not a number,
 * bool or null, no indicator characters). */
static int plain_ok(const char *s) {
    static const char *const reserved[] = {"null", "none", "true",     "false", "yes",
                                           "no",   "on",   "off",      "y",     "n",
                                           "inf",  "nan",  "infinity", NULL};
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return 0;
    for (int i = 0; reserved[i]; i++)
        if (!strcasecmp(s, reserved[i])) return 0;
    return 1;
}

/* Length of the UTF-8 sequence at p and its code point; 0 when the bytes
 * there are not one (names come from the JSON parser, which lets only valid
 * UTF-8 through, but a file name need not be). */
static size_t utf8_next(const unsigned char *p, unsigned *cp) {
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : 4;
    if ((p[0] & 0xC0) == 0x80 || (p[0] & 0xF8) == 0xF8) return 0;
    unsigned c = len == 1 ? p[0] : p[0] & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        c = c << 6 | (p[i] & 0x3Fu);
    }
    if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

/* Characters a YAML reader refuses (control characters, U+FFFE, U+FFFF) or
 * reads as a line break inside a quoted scalar (U+0085, U+2028, U+2029),
 * and the byte order mark. */
static int yaml_unprintable(unsigned cp) {
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF;
}

static void put_str(kc_strbuf *b, const char *s, int quoted) {
    if (!quoted || plain_ok(s)) {
        kc_strbuf_puts(b, s);
        return;
    }
    kc_strbuf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned cp = 0;
        size_t k = utf8_next(p, &cp);
        if (!k) {
            kc_strbuf_printf(b, "\\x%02x", *p);
            k = 1;
        } else if (cp == '"' || cp == '\\') {
            kc_strbuf_printf(b, "\\%c", (char)cp);
        } else if (cp == '\n') {
            kc_strbuf_puts(b, "\\n");
        } else if (cp == '\t') {
            kc_strbuf_puts(b, "\\t");
        } else if (yaml_unprintable(cp)) {
            kc_strbuf_printf(b, cp <= 0xFF ? "\\x%02x" : "\\u%04x", cp);
        } else {
            kc_strbuf_append(b, (const char *)p, k);
        }
        p += k;
    }
    kc_strbuf_putc(b, '"');
}

/* Text inside a comment: what a YAML reader could not take there becomes '?'. */
static void put_comment_text(kc_strbuf *b, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned cp = 0;
        size_t k = utf8_next(p, &cp);
        if (!k || yaml_unprintable(cp)) {
            kc_strbuf_putc(b, '?');
            k = k ? k : 1;
        } else {
            kc_strbuf_append(b, (const char *)p, k);
        }
        p += k;
    }
}

static void put_flow(kc_strbuf *b, const kc_node *n) {
    if (n->kind == KC_NODE_SCALAR) {
        put_str(b, n->str, n->quoted);
    } else if (n->kind == KC_NODE_SEQ) {
        kc_strbuf_putc(b, '[');
        for (size_t i = 0; i < n->n; i++) {
            if (i) kc_strbuf_puts(b, ", ");
            put_flow(b, n->items[i]);
        }
        kc_strbuf_putc(b, ']');
    } else {
        kc_strbuf_putc(b, '{');
        for (size_t i = 0; i < n->n; i++) {
            if (i) kc_strbuf_puts(b, ", ");
            put_str(b, n->items[2 * i]->str, 1);
            kc_strbuf_puts(b, ": ");
            put_flow(b, n->items[2 * i + 1]);
        }
        kc_strbuf_putc(b, '}');
    }
}

/* ---- the layer a wrapper (Bidirectional, TimeDistributed) holds ---- */

static int is_wrapper(const char *cls) {
    return !strcmp(cls, "Bidirectional") || !strcmp(cls, "TimeDistributed");
}

/* {class_name: X, config: {...}}: X and the config, or 0. */
static int inner_parts(const kc_node *v, const char **cls, kc_node **cfg) {
    if (!v || v->kind != KC_NODE_MAP) return 0;
    kc_node *c = nd_lookup((kc_node *)v, "class_name");
    *cfg = nd_lookup((kc_node *)v, "config");
    if (!c || c->kind != KC_NODE_SCALAR || !*cfg || (*cfg)->kind != KC_NODE_MAP) return 0;
    *cls = c->str;
    return 1;
}

/* An inner layer's argument that says nothing: a default of its class,
 * trainable true, its dtype (only float32 converts). */
static int inner_default(const char *cls, kc_node *cfg, const char *key, const kc_node *v) {
    return !strcmp(key, "dtype") || (!strcmp(key, "trainable") && scalar_is(v, "true")) ||
           is_default(cls, cfg, key, v);
}

static void put_inner(kc_strbuf *b, const kc_node *v) {
    const char *cls;
    kc_node *cfg;
    if (!inner_parts(v, &cls, &cfg) || v->n != 2) {
        put_flow(b, v);
        return;
    }
    kc_strbuf_puts(b, "{class_name: ");
    put_str(b, cls, 1);
    kc_strbuf_puts(b, ", config: {");
    const char *sep = "";
    for (size_t i = 0; i < cfg->n; i++) {
        const char *key = kc_map_key(cfg, i)->str;
        const kc_node *val = kc_map_val(cfg, i);
        if (inner_default(cls, cfg, key, val)) continue;
        kc_strbuf_puts(b, sep);
        put_str(b, key, 1);
        kc_strbuf_puts(b, ": ");
        put_flow(b, val);
        sep = ", ";
    }
    kc_strbuf_puts(b, "}}");
}

static int same_text(const kc_node *a, const kc_node *b) {
    if (!a || !b) return a == b;
    kc_strbuf x = {0}, y = {0};
    put_flow(&x, a);
    put_flow(&y, b);
    int same = x.len == y.len && !memcmp(kc_strbuf_str(&x), kc_strbuf_str(&y), x.len);
    kc_strbuf_free(&x);
    kc_strbuf_free(&y);
    return same;
}

/* The backward layer Keras writes for a Bidirectional is the one kerasc
 * makes itself when it is a copy of the forward layer running backwards:
 * the same class and arguments but its name and go_backwards. */
/* The backward layer's name is the one Keras gives the copy it makes:
 * backward_<name> for the forward layer forward_<name> (or <name>). */
static int default_backward_name(kc_node *f, kc_node *bk) {
    const kc_node *fn = nd_lookup(f, "name"), *bn = nd_lookup(bk, "name");
    if (!bn) return 1;
    if (!fn || fn->kind != KC_NODE_SCALAR || bn->kind != KC_NODE_SCALAR) return 0;
    const char *base = fn->str;
    if (!strncmp(base, "forward_", 8)) base += 8;
    return !strncmp(bn->str, "backward_", 9) && !strcmp(bn->str + 9, base);
}

static int mirrors_forward(kc_node *args, const kc_node *bwd) {
    const char *fc, *bc;
    kc_node *f, *bk;
    if (!inner_parts(nd_lookup(args, "layer"), &fc, &f) || !inner_parts(bwd, &bc, &bk) ||
        strcmp(fc, bc))
        return 0;
    kc_node *maps[2] = {f, bk};
    for (int m = 0; m < 2; m++)
        for (size_t i = 0; i < maps[m]->n; i++) {
            const char *key = kc_map_key(maps[m], i)->str;
            if (!strcmp(key, "name") || !strcmp(key, "go_backwards")) continue;
            if (!same_text(nd_lookup(f, key), nd_lookup(bk, key))) return 0;
        }
    kc_node *fg = nd_lookup(f, "go_backwards"), *bg = nd_lookup(bk, "go_backwards");
    return scalar_is(fg, "true") != scalar_is(bg, "true") && default_backward_name(f, bk);
}

static void put_names(kc_strbuf *b, char **v, int n) {
    if (n == 1) {
        put_str(b, v[0], 1);
        return;
    }
    kc_strbuf_putc(b, '[');
    for (int i = 0; i < n; i++) {
        if (i) kc_strbuf_puts(b, ", ");
        put_str(b, v[i], 1);
    }
    kc_strbuf_putc(b, ']');
}

static void put_entry(kc_strbuf *b, const kx_entry *en) {
    kc_strbuf_puts(b, "    - ");
    if (!en->cls) { /* a shared layer called again */
        kc_strbuf_puts(b, "{layer: ");
        put_str(b, en->name, 1);
        kc_strbuf_puts(b, ", inputs: ");
        put_names(b, en->inputs, en->ninputs);
        kc_strbuf_puts(b, "}\n");
        return;
    }
    kc_strbuf_puts(b, en->cls);
    kc_strbuf_puts(b, ": {");
    const char *sep = "";
    if (en->name) {
        kc_strbuf_puts(b, "name: ");
        put_str(b, en->name, 1);
        sep = ", ";
    }
    for (size_t i = 0; en->args && i < en->args->n; i++) {
        const char *key = kc_map_key(en->args, i)->str;
        const kc_node *v = kc_map_val(en->args, i);
        if (strcmp(en->cls, "Input") && is_default(en->cls, en->args, key, v)) continue;
        int wrapped =
            is_wrapper(en->cls) && (!strcmp(key, "layer") || !strcmp(key, "backward_layer"));
        if (wrapped && !strcmp(key, "backward_layer") && mirrors_forward(en->args, v)) continue;
        kc_strbuf_puts(b, sep);
        put_str(b, key, 1);
        kc_strbuf_puts(b, ": ");
        if (wrapped)
            put_inner(b, v);
        else
            put_flow(b, v);
        sep = ", ";
    }
    if (!en->trainable) {
        kc_strbuf_puts(b, sep);
        kc_strbuf_puts(b, "trainable: false");
        sep = ", ";
    }
    if (en->ninputs) {
        kc_strbuf_puts(b, sep);
        kc_strbuf_puts(b, "inputs: ");
        put_names(b, en->inputs, en->ninputs);
    }
    kc_strbuf_puts(b, "}\n");
}

static void put_model(kc_strbuf *b, const kx_model *m) {
    kc_strbuf_puts(b, "model:\n  name: ");
    put_str(b, m->name, 1);
    kc_strbuf_putc(b, '\n');
    if (m->functional && m->ninputs > 1) {
        kc_strbuf_puts(b, "  inputs: ");
        put_names(b, m->inputs, m->ninputs);
        kc_strbuf_putc(b, '\n');
    }
    if (m->functional) {
        kc_strbuf_puts(b, "  outputs: [");
        for (int i = 0; i < m->noutputs; i++) {
            if (i) kc_strbuf_puts(b, ", ");
            put_str(b, m->outputs[i], 1);
        }
        kc_strbuf_puts(b, "]\n");
    }
    kc_strbuf_puts(b, "  layers:\n");
    for (int i = 0; i < m->nentries; i++)
        put_entry(b, &m->entries[i]);
}

/* ------------------------------------------------------------ reading */

static int convert_root(kx *x, const kc_json *root, kx_model *m) {
    if (kc_json_kind_of(root) != KC_JSON_OBJECT)
        return kx_fail(x, root, NULL, NULL,
                       "expected a Keras model description (an object with \"class_name\" and "
                       "\"config\"), got %s",
                       kc_json_kind_name(kc_json_kind_of(root)));
    const kc_json *cn = kc_json_get(root, "class_name");
    const char *cls = kc_json_str(cn);
    const char *ver = kc_json_str(kc_json_get(root, "keras_version"));
    m->keras_format = ver && ver[0] == '2' ? "Keras 2" : "Keras 3";
    if (!cls && kc_json_get(root, "layers")) /* a bare get_config() dict */
        return kc_json_get(root, "input_layers") ? convert_functional(x, root, m)
                                                 : convert_sequential(x, root, m);
    if (!cls)
        return kx_fail(x, root, NULL, NULL,
                       "expected a Keras model description with \"class_name\" and \"config\" "
                       "(the output of model.to_json())");
    const kc_json *cfg = kc_json_get(root, "config");
    if (!strcmp(cls, "Sequential")) return convert_sequential(x, cfg, m);
    if (!strcmp(cls, "Functional") || !strcmp(cls, "Model")) return convert_functional(x, cfg, m);
    return kx_fail(x, cn, NULL, NULL,
                   "a model of class '%s' cannot be read: kerasc reads Sequential and Functional "
                   "models (a subclassed model's layers are not in its config)",
                   cls);
}

static int kx_init(kx *x, const char *name, kc_error *e) {
    memset(x, 0, sizeof *x);
    x->e = e;
    x->file = strdup(name);
    return x->file ? KC_OK : kc_fail(e, KC_ERUNTIME, "out of memory");
}

/* Parses and converts; on success the caller owns *root (the model's
 * strings point into it) and *m. */
static int import_text(kx *x, const char *text, size_t len, kc_json **root, kx_model *m) {
    memset(m, 0, sizeof *m);
    *root = kc_json_parse(text, len, x->e);
    if (!*root) {
        char msg[sizeof x->e->msg];
        snprintf(msg, sizeof msg, "%s", x->e->msg);
        return kc_fail(x->e, x->e->code, "%s:%s", x->file, msg);
    }
    int rc = convert_root(x, *root, m);
    if (!rc && x->oom) rc = kx_oom(x);
    if (rc) {
        model_free(m);
        kc_json_free(*root);
        *root = NULL;
    }
    return rc;
}

static int read_all(const char *path, char **text, size_t *len, kc_error *e) {
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return kc_fail(e, KC_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
    kc_strbuf b = {0};
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (b.len + got > KX_MAX_CONFIG_BYTES) {
            fclose(f);
            kc_strbuf_free(&b);
            return kc_fail(e, KC_ERUNTIME, "%s: larger than a model description can be", path);
        }
        kc_strbuf_append(&b, buf, got);
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        kc_strbuf_free(&b);
        return kc_fail(e, KC_ERUNTIME, "%s: read error", path);
    }
    if (b.failed) {
        kc_strbuf_free(&b);
        return kc_fail(e, KC_ERUNTIME, "%s: out of memory", path);
    }
    *len = b.len;
    *text = kc_strbuf_take(&b);
    return *text ? KC_OK : kc_fail(e, KC_ERUNTIME, "%s: out of memory", path);
}

/* A .keras archive by its zip signature, whatever the name. */
static int is_zip(const char *text, size_t len) {
    return len >= 4 && !memcmp(text, "PK\3\4", 4);
}

static int import_file(const char *path, kx *x, kc_json **root, kx_model *m, kc_error *e) {
    char *text;
    size_t len;
    int rc = read_all(path, &text, &len, e);
    if (rc) return rc;
    char name[PATH_MAX + 32];
    snprintf(name, sizeof name, "%s", path);
    if (is_zip(text, len)) {
        free(text);
        snprintf(name, sizeof name, "%s[config.json]", path);
        if ((rc = kc_zip_read_member(path, "config.json", KX_MAX_CONFIG_BYTES, &text, &len, e))) {
            if (rc == KC_ECONFIG)
                kc_fail(e, KC_ECONFIG, "%s: not a .keras model archive: it has no config.json",
                        path);
            return rc;
        }
    }
    if ((rc = kx_init(x, name, e))) {
        free(text);
        return rc;
    }
    rc = import_text(x, text, len, root, m);
    free(text);
    if (rc) {
        free(x->file);
        x->file = NULL;
    }
    return rc;
}

static char *emit(const kx_model *m, kc_error *e) {
    kc_strbuf b = {0};
    put_model(&b, m);
    if (b.failed) {
        kc_strbuf_free(&b);
        kc_fail(e, KC_ERUNTIME, "out of memory");
        return NULL;
    }
    return kc_strbuf_take(&b);
}

/* Nodes point at x->file, so it lives until the model is freed. */
static void release(kx *x, kc_json *root, kx_model *m) {
    model_free(m);
    kc_json_free(root);
    free(x->file);
    x->file = NULL;
}

/* ------------------------------------------------------------ public */

int kc_keras_is_model_path(const char *path) {
    size_t n = path ? strlen(path) : 0;
    return (n > 5 && !strcasecmp(path + n - 5, ".json")) ||
           (n > 6 && !strcasecmp(path + n - 6, ".keras"));
}

void kc_keras_converted_name(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s (converted)", path);
}

int kc_keras_import_text(const char *name, const char *text, size_t len, char **yaml_model_section,
                         kc_error *e) {
    *yaml_model_section = NULL;
    kx x;
    int rc = kx_init(&x, name, e);
    if (rc) return rc;
    kc_json *root;
    kx_model m;
    rc = import_text(&x, text, len, &root, &m);
    if (rc) {
        free(x.file);
        return rc;
    }
    *yaml_model_section = emit(&m, e);
    release(&x, root, &m);
    return *yaml_model_section ? KC_OK : KC_ERUNTIME;
}

int kc_keras_import(const char *path, char **yaml_model_section, kc_error *e) {
    *yaml_model_section = NULL;
    kx x;
    kc_json *root;
    kx_model m;
    int rc = import_file(path, &x, &root, &m, e);
    if (rc) return rc;
    *yaml_model_section = emit(&m, e);
    release(&x, root, &m);
    return *yaml_model_section ? KC_OK : KC_ERUNTIME;
}

/* `[28, 28, 1]` of an Input entry. */
static void put_shape(kc_strbuf *b, const kx_entry *en) {
    const kc_node *shape = nd_lookup(en->args, "shape");
    if (shape) put_flow(b, shape);
}

/* Commented compile/data/fit lines shaped for this model's inputs and
 * outputs. */
static void put_skeleton(kc_strbuf *b, const kx_model *m) {
    int nin = 0;
    for (int i = 0; i < m->nentries; i++)
        nin += m->entries[i].cls && !strcmp(m->entries[i].cls, "Input");
    kc_strbuf_puts(b, "\n# compile:\n#   optimizer: adam\n");
    if (m->noutputs > 1) {
        kc_strbuf_puts(b, "#   loss: {");
        for (int i = 0; i < m->noutputs; i++) {
            kc_strbuf_puts(b, i ? ", " : "");
            put_str(b, m->outputs[i], 1);
            kc_strbuf_puts(b, ": sparse_categorical_crossentropy");
        }
        kc_strbuf_puts(b, "}\n");
    } else {
        kc_strbuf_puts(b, "#   loss: sparse_categorical_crossentropy\n");
    }
    kc_strbuf_puts(b, "#   metrics: [accuracy]\n#\n# data:\n#   dataset: fashion_mnist            "
                      "# or train: {x: x.npy, y: y.npy}, test: {...}\n#   rescale: 1/255\n");
    if (nin > 1) {
        kc_strbuf_puts(b, "#   inputs: {");
        const char *sep = "";
        for (int i = 0; i < m->nentries; i++)
            if (m->entries[i].cls && !strcmp(m->entries[i].cls, "Input")) {
                kc_strbuf_puts(b, sep);
                put_str(b, m->entries[i].name, 1);
                kc_strbuf_puts(b, ": x");
                sep = ", ";
            }
        kc_strbuf_puts(b, "}\n");
    }
    if (m->noutputs > 1) {
        kc_strbuf_puts(b, "#   targets: {");
        for (int i = 0; i < m->noutputs; i++) {
            kc_strbuf_puts(b, i ? ", " : "");
            put_str(b, m->outputs[i], 1);
            kc_strbuf_puts(b, ": y");
        }
        kc_strbuf_puts(b, "}\n");
    }
    kc_strbuf_puts(b, "#   reshape: ");
    if (nin > 1) kc_strbuf_putc(b, '{');
    const char *sep = "";
    for (int i = 0; i < m->nentries; i++) {
        const kx_entry *en = &m->entries[i];
        if (!en->cls || strcmp(en->cls, "Input")) continue;
        kc_strbuf_puts(b, sep);
        if (nin > 1) {
            put_str(b, en->name, 1);
            kc_strbuf_puts(b, ": ");
        }
        put_shape(b, en);
        sep = ", ";
    }
    if (nin > 1) kc_strbuf_putc(b, '}');
    kc_strbuf_puts(b,
                   "\n#\n# fit:\n#   epochs: 5\n#   batch_size: 32\n#   validation_split: 0.1\n");
}

int kc_keras_model_file(const char *path, char **text, kc_error *e) {
    *text = NULL;
    kx x;
    kc_json *root;
    kx_model m;
    int rc = import_file(path, &x, &root, &m, e);
    if (rc) return rc;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    kc_strbuf b = {0};
    kc_strbuf_printf(&b, "# The %s %s model in ", m.keras_format,
                     m.functional ? "functional" : "Sequential");
    put_comment_text(&b, base);
    kc_strbuf_puts(&b, ", as a kerasc model file.\n"
                       "# Fill in the compile, data and fit sections below to train it.\n\n");
    put_model(&b, &m);
    put_skeleton(&b, &m);
    release(&x, root, &m);
    if (b.failed) {
        kc_strbuf_free(&b);
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    *text = kc_strbuf_take(&b);
    return *text ? KC_OK : kc_fail(e, KC_ERUNTIME, "out of memory");
}

/* A kerasc model file written in JSON (YAML's subset): a top-level "model"
 * and no "class_name". */
static int is_kerasc_json(const char *path) {
    char *text;
    size_t len;
    kc_error ignored = {0};
    if (read_all(path, &text, &len, &ignored)) return 0;
    kc_json *root = is_zip(text, len) ? NULL : kc_json_parse(text, len, &ignored);
    int yes = kc_json_get(root, "model") && !kc_json_get(root, "class_name");
    kc_json_free(root);
    free(text);
    return yes;
}

int kc_keras_config_load(const char *path, kc_config **out, kc_error *e) {
    *out = NULL;
    if (is_kerasc_json(path)) return kc_config_load(path, out, e);
    char *text;
    int rc = kc_keras_import(path, &text, e);
    if (rc) return rc;
    char name[PATH_MAX + 32], dir[PATH_MAX];
    kc_keras_converted_name(path, name, sizeof name);
    char *copy = strdup(path);
    if (!copy || !realpath(dirname(copy), dir)) snprintf(dir, sizeof dir, ".");
    free(copy);
    rc = kc_config_parse_text(name, dir, text, strlen(text), out, e);
    free(text);
    return rc;
}

int kc_keras_model_node(const kc_node *value, const char *base_dir, kc_doc **doc, kc_node **model,
                        kc_error *e) {
    *doc = NULL;
    *model = NULL;
    if (!value || value->kind != KC_NODE_SCALAR || !kc_keras_is_model_path(value->str))
        return kc_node_fail(e, value,
                            "model: expected a mapping with `layers:`, or the path of a Keras "
                            "model file (.json or .keras)%s%s%s",
                            value && value->kind == KC_NODE_SCALAR ? ", got '" : "",
                            value && value->kind == KC_NODE_SCALAR ? value->str : "",
                            value && value->kind == KC_NODE_SCALAR ? "'" : "");
    char path[PATH_MAX];
    const char *s = value->str;
    if (s[0] == '~' && s[1] == '/') {
        const char *home = getenv("HOME");
        snprintf(path, sizeof path, "%s%s", home ? home : "", s + 1);
    } else if (s[0] == '/' || !base_dir || !*base_dir) {
        snprintf(path, sizeof path, "%s", s);
    } else {
        snprintf(path, sizeof path, "%s/%s", base_dir, s);
    }
    char *text;
    int rc = kc_keras_import(path, &text, e);
    if (rc == KC_ERUNTIME) {
        char msg[sizeof e->msg];
        snprintf(msg, sizeof msg, "%s", e->msg);
        return kc_node_fail(e, value, "cannot read the Keras model: %s", msg);
    }
    if (rc) return rc;
    char name[PATH_MAX + 32];
    kc_keras_converted_name(path, name, sizeof name);
    rc = kc_doc_parse(doc, name, text, strlen(text), e);
    free(text);
    if (rc) return rc;
    *model = kc_map_get((*doc)->root, "model");
    if (!*model) { /* the converter always writes one */
        kc_doc_free(*doc);
        *doc = NULL;
        return kc_fail(e, KC_ERUNTIME, "%s: no model section", name);
    }
    return KC_OK;
}
