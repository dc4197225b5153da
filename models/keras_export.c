/* kerasc models as Keras 3 JSON (models/keras_export.h): the inverse of
 * models/keras_import.c.
 *
 * Each layer is written from the `layers:` entry it was declared with (its
 * arguments as the user wrote them, in Keras's names) and from what the
 * parsed model knows (names, shapes, the graph). Arguments go through the
 * same readers kerasc uses (initializers, regularizers, constraints,
 * activations), so every form kerasc accepts comes out in the one form
 * Keras 3 writes. The JSON is built as a tree and serialized once. */
#include "models/keras_export.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "models/activations.h"
#include "models/initializers.h"
#include "models/losses.h"
#include "models/optimizers.h"
#include "models/regularizers.h"
#include "models/schedules.h"

/* ------------------------------------------------------------ context */

typedef struct kj {
    kc_error *e;
    int oom;       /* an allocation failed: reported once at the end */
    int failed;    /* e holds an error */
    int64_t batch; /* the fixed batch size stateful RNNs need; 0: None */
} kj;

static int kj_fail(kj *x, const kc_node *at, const char *layer, const char *cls, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
static int kj_fail(kj *x, const kc_node *at, const char *layer, const char *cls, const char *fmt,
                   ...) {
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    x->failed = 1;
    if (layer) return kc_node_fail(x->e, at, "layer '%s' (%s): %s", layer, cls, msg);
    return kc_node_fail(x->e, at, "%s", msg);
}

/* An argument reader's own error: it stays, and export stops. */
static kc_json *kj_reader_failed(kj *x) {
    x->failed = 1;
    return NULL;
}

/* ------------------------------------------------------------ JSON values */

static kc_json *j_obj(kj *x) {
    kc_json *v = kc_json_new_object();
    if (!v) x->oom = 1;
    return v;
}

static kc_json *j_arr(kj *x) {
    kc_json *v = kc_json_new_array();
    if (!v) x->oom = 1;
    return v;
}

static kc_json *j_str(kj *x, const char *s) {
    kc_json *v = kc_json_new_str(s);
    if (!v) x->oom = 1;
    return v;
}

static kc_json *j_null(kj *x) {
    kc_json *v = kc_json_new_null();
    if (!v) x->oom = 1;
    return v;
}

static kc_json *j_bool(kj *x, int b) {
    kc_json *v = kc_json_new_bool(b);
    if (!v) x->oom = 1;
    return v;
}

static kc_json *j_int(kj *x, int64_t n) {
    kc_json *v = kc_json_new_int(n);
    if (!v) x->oom = 1;
    return v;
}

/* A number node that writes exactly `text` (a valid JSON number). */
static kc_json *j_num_text(kj *x, const char *text) {
    kc_error ignored = {0};
    kc_json *v = kc_json_parse(text, strlen(text), &ignored);
    if (v && kc_json_kind_of(v) != KC_JSON_NUMBER) {
        kc_json_free(v);
        v = NULL;
    }
    if (!v) x->oom = 1;
    return v;
}

/* A float as Python's repr writes it: the shortest text that reads back,
 * with ".0" on whole numbers ("0.001", "1e-05", "2.0"). */
static kc_json *j_float(kj *x, double d) {
    kc_strbuf b = {0};
    kc_json_write_double(&b, d);
    const char *t = kc_strbuf_str(&b);
    if (isfinite(d) && !strpbrk(t, ".eE")) kc_strbuf_puts(&b, ".0");
    kc_json *v = b.failed ? NULL : j_num_text(x, kc_strbuf_str(&b));
    if (!v) x->oom = 1;
    kc_strbuf_free(&b);
    return v;
}

/* A count kept in a double (decay_steps): an integer when it is one. */
static kc_json *j_count(kj *x, double d) {
    if (d == floor(d) && fabs(d) < 9e15) return j_int(x, (int64_t)d);
    return j_float(x, d);
}

static void j_put(kj *x, kc_json *obj, const char *key, kc_json *v) {
    if (kc_json_put(obj, key, v)) x->oom = 1;
}

static void j_push(kj *x, kc_json *arr, kc_json *v) {
    if (kc_json_push(arr, v)) x->oom = 1;
}

/* {"module": ..., "class_name": ..., "config": ..., "registered_name": null} */
static kc_json *keras_object(kj *x, const char *module, const char *cls, kc_json *config) {
    kc_json *o = j_obj(x);
    j_put(x, o, "module", j_str(x, module));
    j_put(x, o, "class_name", j_str(x, cls));
    j_put(x, o, "config", config ? config : j_obj(x));
    j_put(x, o, "registered_name", j_null(x));
    return o;
}

static kc_json *dtype_policy(kj *x) {
    kc_json *cfg = j_obj(x);
    j_put(x, cfg, "name", j_str(x, "float32"));
    return keras_object(x, "keras", "DTypePolicy", cfg);
}

/* A per-sample shape with the batch axis in front: [null, 28, 28, 1]. */
static kc_json *shape_json(kj *x, const kc_shape *s) {
    kc_json *a = j_arr(x);
    j_push(x, a, x->batch ? j_int(x, x->batch) : j_null(x));
    for (int i = 0; i < s->rank; i++)
        j_push(x, a, j_int(x, s->d[i]));
    return a;
}

/* ------------------------------------------------------------ YAML values */

static int key_is(const kc_node *k, const char *s) {
    return k && k->kind == KC_NODE_SCALAR && !strcmp(k->str, s);
}

/* Map lookup that leaves the `used` marks alone. */
static kc_node *map_find(const kc_node *map, const char *key) {
    if (!map || map->kind != KC_NODE_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (key_is(map->items[2 * i], key)) return map->items[2 * i + 1];
    return NULL;
}

static int is_bool_text(const char *s, int *out) {
    static const char *const yes[] = {"true", "True", "TRUE", "yes", NULL};
    static const char *const no[] = {"false", "False", "FALSE", "no", NULL};
    for (int i = 0; yes[i]; i++)
        if (!strcmp(s, yes[i])) return *out = 1, 1;
    for (int i = 0; no[i]; i++)
        if (!strcmp(s, no[i])) return *out = 0, 1;
    return 0;
}

/* A number written as JSON writes one (keeps its text, so a value Keras
 * wrote comes back as Keras wrote it). */
static int json_number_text(const char *s) {
    kc_error ignored = {0};
    kc_json *v = kc_json_parse(s, strlen(s), &ignored);
    int yes = v && kc_json_kind_of(v) == KC_JSON_NUMBER && strcmp(s, "NaN") &&
              strcmp(s, "Infinity") && strcmp(s, "-Infinity");
    kc_json_free(v);
    return yes;
}

/* A YAML scalar as YAML reads it: null, a bool, a number or a string. */
static kc_json *scalar_json(kj *x, const kc_node *n) {
    if (n->quoted) return j_str(x, n->str);
    if (kc_node_is_null(n)) return j_null(x);
    int b;
    if (is_bool_text(n->str, &b)) return j_bool(x, b);
    if (json_number_text(n->str)) return j_num_text(x, n->str);
    kc_error ignored = {0};
    long long i;
    double d;
    if (!kc_node_int(n, &i, &ignored) && !strpbrk(n->str, ".eE")) return j_int(x, i);
    if (!kc_node_float(n, &d, &ignored)) return j_float(x, d); /* 1/255, .5, .inf */
    return j_str(x, n->str);
}

static kc_json *node_json(kj *x, const kc_node *n) {
    if (!n) return j_null(x);
    if (n->kind == KC_NODE_SCALAR) return scalar_json(x, n);
    if (n->kind == KC_NODE_SEQ) {
        kc_json *a = j_arr(x);
        for (size_t i = 0; i < n->n; i++)
            j_push(x, a, node_json(x, n->items[i]));
        return a;
    }
    kc_json *o = j_obj(x);
    for (size_t i = 0; i < n->n; i++)
        j_put(x, o, n->items[2 * i]->str, node_json(x, n->items[2 * i + 1]));
    return o;
}

/* A number an object's reader took from `given` (NULL: its default): the
 * text written there when it is a JSON number, else the value. */
static kc_json *num_json(kj *x, const kc_node *given, double v) {
    if (given && given->kind == KC_NODE_SCALAR && !given->quoted && json_number_text(given->str))
        return j_num_text(x, given->str);
    return j_float(x, v);
}

/* Argument `key` of an object written as a name, {class_name: X, key: v},
 * {class_name: X, config: {key: v}} or {X: {key: v}}; NULL when absent. */
static const kc_node *spec_arg(const kc_node *spec, const char *key) {
    if (!spec || spec->kind != KC_NODE_MAP) return NULL;
    if (map_find(spec, "class_name")) {
        const kc_node *cfg = map_find(spec, "config");
        return cfg ? map_find(cfg, key) : map_find(spec, key);
    }
    return spec->n == 1 ? map_find(spec->items[1], key) : NULL;
}

/* The name an object is given by: the scalar, its class_name or its key. */
static const char *spec_name(const kc_node *spec) {
    if (!spec) return "";
    if (spec->kind == KC_NODE_SCALAR) return spec->str;
    const kc_node *cn = map_find(spec, "class_name");
    if (cn && cn->kind == KC_NODE_SCALAR) return cn->str;
    return spec->kind == KC_NODE_MAP && spec->n == 1 ? spec->items[0]->str : "";
}

/* ------------------------------------------------------------ objects */

/* Keras's initializer classes, by kind. */
static const char *const init_class[] = {
    [KC_INIT_GLOROT_UNIFORM] = "GlorotUniform",
    [KC_INIT_GLOROT_NORMAL] = "GlorotNormal",
    [KC_INIT_HE_UNIFORM] = "HeUniform",
    [KC_INIT_HE_NORMAL] = "HeNormal",
    [KC_INIT_LECUN_UNIFORM] = "LecunUniform",
    [KC_INIT_LECUN_NORMAL] = "LecunNormal",
    [KC_INIT_RANDOM_UNIFORM] = "RandomUniform",
    [KC_INIT_RANDOM_NORMAL] = "RandomNormal",
    [KC_INIT_TRUNCATED_NORMAL] = "TruncatedNormal",
    [KC_INIT_ZEROS] = "Zeros",
    [KC_INIT_ONES] = "Ones",
    [KC_INIT_CONSTANT] = "Constant",
    [KC_INIT_ORTHOGONAL] = "Orthogonal",
};

static void put_seed(kj *x, kc_json *cfg, const kc_initializer *in) {
    j_put(x, cfg, "seed", in->has_seed ? j_int(x, in->seed) : j_null(x));
}

/* The config Keras 3 writes for each kind ({"seed": null}, {"seed",
 * "minval", "maxval"}, ...). */
static kc_json *init_config(kj *x, const kc_node *spec, const kc_initializer *in) {
    kc_json *cfg = j_obj(x);
    static const char *const pair[][2] = {
        [KC_INIT_RANDOM_UNIFORM] = {"minval", "maxval"},
        [KC_INIT_RANDOM_NORMAL] = {"mean", "stddev"},
        [KC_INIT_TRUNCATED_NORMAL] = {"mean", "stddev"},
    };
    switch (in->kind) {
    case KC_INIT_ZEROS:
    case KC_INIT_ONES:
        break;
    case KC_INIT_CONSTANT:
        j_put(x, cfg, "value", num_json(x, spec_arg(spec, "value"), in->a));
        break;
    case KC_INIT_ORTHOGONAL:
        put_seed(x, cfg, in);
        j_put(x, cfg, "gain", num_json(x, spec_arg(spec, "gain"), in->a));
        break;
    case KC_INIT_RANDOM_UNIFORM:
    case KC_INIT_RANDOM_NORMAL:
    case KC_INIT_TRUNCATED_NORMAL:
        put_seed(x, cfg, in);
        j_put(x, cfg, pair[in->kind][0], num_json(x, spec_arg(spec, pair[in->kind][0]), in->a));
        j_put(x, cfg, pair[in->kind][1], num_json(x, spec_arg(spec, pair[in->kind][1]), in->b));
        break;
    default:
        put_seed(x, cfg, in);
    }
    return cfg;
}

/* An initializer argument. null is what Keras's add_weight makes of None:
 * glorot_uniform, whatever the argument's default. */
static kc_json *init_json(kj *x, kc_node *n) {
    kc_initializer in = {.kind = KC_INIT_GLOROT_UNIFORM};
    if (!kc_node_is_null(n) && kc_initializer_parse(n, &in, x->e)) return kj_reader_failed(x);
    return keras_object(x, "keras.initializers", init_class[in.kind], init_config(x, n, &in));
}

/* L1, L2 or L1L2, as the regularizer was named. */
static const char *reg_class(const char *name) {
    char s[16];
    size_t k = 0;
    for (const char *p = name; *p && k + 1 < sizeof s; p++)
        if (*p != '_') s[k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    s[k] = 0;
    return !strcmp(s, "l1") ? "L1" : !strcmp(s, "l2") ? "L2" : "L1L2";
}

static kc_json *reg_json(kj *x, kc_node *n) {
    if (kc_node_is_null(n)) return j_null(x);
    kc_regularizer r;
    if (kc_regularizer_parse(n, "", &r, x->e)) return kj_reader_failed(x);
    const char *cls = reg_class(spec_name(n));
    kc_json *cfg = j_obj(x);
    if (strcmp(cls, "L2")) j_put(x, cfg, "l1", num_json(x, spec_arg(n, "l1"), r.l1));
    if (strcmp(cls, "L1")) j_put(x, cfg, "l2", num_json(x, spec_arg(n, "l2"), r.l2));
    return keras_object(x, "keras.regularizers", cls, cfg);
}

static kc_json *axis_json(kj *x, const kc_node *spec, const kc_constraint *c) {
    const kc_node *given = spec_arg(spec, "axis");
    if (given) return node_json(x, given);
    if (c->all_axes) return j_null(x);
    if (c->naxes == 1) return j_int(x, c->axes[0]);
    kc_json *a = j_arr(x);
    for (int i = 0; i < c->naxes; i++)
        j_push(x, a, j_int(x, c->axes[i]));
    return a;
}

static kc_json *con_json(kj *x, kc_node *n) {
    if (kc_node_is_null(n)) return j_null(x);
    kc_constraint c;
    if (kc_constraint_parse(n, "", &c, x->e)) return kj_reader_failed(x);
    static const char *const cls[] = {
        [KC_CONSTRAINT_NONE] = "Constraint",         [KC_CONSTRAINT_MAX_NORM] = "MaxNorm",
        [KC_CONSTRAINT_MIN_MAX_NORM] = "MinMaxNorm", [KC_CONSTRAINT_NON_NEG] = "NonNeg",
        [KC_CONSTRAINT_UNIT_NORM] = "UnitNorm",
    };
    kc_json *cfg = j_obj(x);
    if (c.kind == KC_CONSTRAINT_MIN_MAX_NORM)
        j_put(x, cfg, "min_value", num_json(x, spec_arg(n, "min_value"), c.min_value));
    if (c.kind == KC_CONSTRAINT_MAX_NORM || c.kind == KC_CONSTRAINT_MIN_MAX_NORM)
        j_put(x, cfg, "max_value", num_json(x, spec_arg(n, "max_value"), c.max_value));
    if (c.kind == KC_CONSTRAINT_MIN_MAX_NORM)
        j_put(x, cfg, "rate", num_json(x, spec_arg(n, "rate"), c.rate));
    if (c.kind != KC_CONSTRAINT_NON_NEG && c.kind != KC_CONSTRAINT_NONE)
        j_put(x, cfg, "axis", axis_json(x, n, &c));
    return keras_object(x, "keras.constraints", cls[c.kind], cfg);
}

/* An activation by the name Keras 3 writes for it (null: linear). */
static kc_json *act_json(kj *x, kc_node *n) {
    if (kc_node_is_null(n)) return j_str(x, "linear");
    kc_activation a;
    if (kc_activation_parse(n, &a, x->e)) return kj_reader_failed(x);
    return j_str(x, kc_activation_name(a.act)); /* swish -> silu, as Keras 3 writes it */
}

/* ------------------------------------------------------------ layer arguments */

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

#define CONV2D "Conv2D DepthwiseConv2D SeparableConv2D Conv2DTranspose"
#define POOL2D "MaxPooling2D AveragePooling2D"
#define POOL1D "MaxPooling1D AveragePooling1D"
#define RNN "SimpleRNN LSTM GRU"

typedef enum kj_rule_kind {
    KJ_TUPLE,     /* an int or a list: a list of n */
    KJ_EDGES,     /* ZeroPadding2D's int / (h, w) / ((top, bottom), (left, right)) */
    KJ_RENAME,    /* Keras 3's name for an older spelling */
    KJ_DROP,      /* checked by kerasc, not part of Keras 3's config */
    KJ_KEEP_NULL, /* null is not the default: write it */
    KJ_ALWAYS,    /* written with `to` (its default) when absent: Keras reads it */
} kj_rule_kind;

typedef struct kj_rule {
    const char *classes, *key;
    kj_rule_kind kind;
    int n;
    const char *to;
} kj_rule;

/* How arguments differ between what kerasc reads and what Keras 3 writes;
 * every other argument is written as given. */
static const kj_rule rules[] = {
    {CONV2D, "kernel_size", KJ_TUPLE, 2, NULL},
    {CONV2D, "strides", KJ_TUPLE, 2, NULL},
    {CONV2D, "dilation_rate", KJ_TUPLE, 2, NULL},
    {"Conv2DTranspose", "output_padding", KJ_TUPLE, 2, NULL},
    {"Conv1D", "kernel_size", KJ_TUPLE, 1, NULL},
    {"Conv1D", "strides", KJ_TUPLE, 1, NULL},
    {"Conv1D", "dilation_rate", KJ_TUPLE, 1, NULL},
    {POOL2D, "pool_size", KJ_TUPLE, 2, NULL},
    {POOL2D, "strides", KJ_TUPLE, 2, NULL},
    {POOL1D, "pool_size", KJ_TUPLE, 1, NULL},
    {POOL1D, "strides", KJ_TUPLE, 1, NULL},
    {"UpSampling2D", "size", KJ_TUPLE, 2, NULL},
    {"ZeroPadding1D", "padding", KJ_TUPLE, 2, NULL},
    {"Cropping1D", "cropping", KJ_TUPLE, 2, NULL},
    {"ZeroPadding2D", "padding", KJ_EDGES, 0, NULL},
    {"Cropping2D", "cropping", KJ_EDGES, 0, NULL},
    {"LeakyReLU", "alpha", KJ_RENAME, 0, "negative_slope"},
    {"Embedding", "input_length", KJ_DROP, 0, NULL}, /* Keras 3 ignores it */
    {RNN, "implementation", KJ_DROP, 0, NULL},       /* the same numbers either way */
    {"LSTM GRU", "use_cudnn", KJ_DROP, 0, NULL},     /* a speed hint Keras does not save */
    {"Bidirectional", "merge_mode", KJ_KEEP_NULL, 0, NULL},
    {"Rescaling", "offset", KJ_ALWAYS, 0, "0.0"}, /* its from_config reads config["offset"] */
};

static const kj_rule *rule_for(const char *cls, const char *key) {
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (!strcmp(rules[i].key, key) && class_in(rules[i].classes, cls)) return &rules[i];
    return NULL;
}

/* Keras 3 classes whose constructor takes no base-layer keywords
 * (trainable, activity_regularizer): only rate, seed, name and dtype, which
 * their config holds as a string. */
static int takes_no_layer_kwargs(const char *cls) {
    return class_in("SpatialDropout1D SpatialDropout2D", cls);
}

static kc_json *repeat_json(kj *x, const kc_node *v, int n) {
    kc_json *a = j_arr(x);
    for (int i = 0; i < n; i++)
        j_push(x, a, node_json(x, v));
    return a;
}

/* Keras's ((top, bottom), (left, right)). */
static kc_json *edges_json(kj *x, const kc_node *v) {
    kc_json *a = j_arr(x);
    for (size_t k = 0; k < 2; k++) {
        const kc_node *side = v->kind == KC_NODE_SEQ && v->n == 2 ? v->items[k] : v;
        j_push(x, a, side->kind == KC_NODE_SEQ ? node_json(x, side) : repeat_json(x, side, 2));
    }
    return a;
}

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The `layers:` entry forms: `Flatten`, `Dense: {...}`, `{class_name: Dense,
 * config: {...}}` or `{class_name: Dense, units: ...}`: the node naming the
 * class and the argument map (NULL when none). */
static void entry_parts(const kc_node *item, const kc_node **cls_node, kc_node **args) {
    *cls_node = NULL;
    *args = NULL;
    if (item->kind == KC_NODE_SCALAR) {
        *cls_node = item;
        return;
    }
    if (item->kind != KC_NODE_MAP || item->n == 0) return;
    kc_node *cn = map_find(item, "class_name");
    if (cn) {
        kc_node *cfg = map_find(item, "config");
        *cls_node = cn;
        *args = cfg ? (cfg->kind == KC_NODE_MAP ? cfg : NULL) : (kc_node *)item;
        return;
    }
    if (item->n == 1) {
        *cls_node = item->items[0];
        *args = item->items[1]->kind == KC_NODE_MAP ? item->items[1] : NULL;
    }
}

/* Keys every layer's entry may hold that are not class arguments, or that
 * the writer puts itself. */
static int common_key(const char *key) {
    static const char *const keys[] = {
        "name",        "trainable",         "dtype", "inputs", "class_name",
        "input_shape", "batch_input_shape", NULL};
    for (int i = 0; keys[i]; i++)
        if (!strcmp(key, keys[i])) return 1;
    return 0;
}

static int is_wrapper(const char *cls) {
    return class_in("TimeDistributed Bidirectional", cls);
}

/* One argument's value in Keras's form. */
static kc_json *arg_json(kj *x, const char *cls, const char *key, kc_node *v) {
    const kj_rule *r = rule_for(cls, key);
    if (has_suffix(key, "_initializer")) return init_json(x, v);
    if (has_suffix(key, "_regularizer")) return reg_json(x, v);
    if (has_suffix(key, "_constraint")) return con_json(x, v);
    if (!strcmp(key, "activation") || !strcmp(key, "recurrent_activation")) return act_json(x, v);
    if (r && r->kind == KJ_TUPLE && v->kind == KC_NODE_SCALAR) return repeat_json(x, v, r->n);
    if (r && r->kind == KJ_EDGES) return edges_json(x, v);
    return node_json(x, v);
}

/* The class arguments of `args` into cfg; `skip` (may be NULL) is written
 * by the caller. */
static int put_args(kj *x, kc_json *cfg, const char *cls, kc_node *args, const char *skip,
                    const char *layer) {
    for (size_t i = 0; args && i < args->n; i++) {
        const char *key = args->items[2 * i]->str;
        kc_node *v = args->items[2 * i + 1];
        const kj_rule *r = rule_for(cls, key);
        if (common_key(key) || (skip && !strcmp(key, skip)) || (r && r->kind == KJ_DROP) ||
            (is_wrapper(cls) && (!strcmp(key, "layer") || !strcmp(key, "backward_layer"))))
            continue;
        /* null is Keras's default too, but for initializers (glorot_uniform) */
        if (kc_node_is_null(v) && !has_suffix(key, "_initializer") &&
            !(r && r->kind == KJ_KEEP_NULL))
            continue;
        if (takes_no_layer_kwargs(cls) && !strcmp(key, "activity_regularizer"))
            return kj_fail(x, v, layer, cls,
                           "Keras's %s takes no activity_regularizer; put an "
                           "ActivityRegularization layer after it",
                           cls);
        kc_json *jv = arg_json(x, cls, key, v);
        if (x->failed) {
            kc_json_free(jv);
            return x->e->code;
        }
        j_put(x, cfg, r && r->kind == KJ_RENAME ? r->to : key, jv);
    }
    return KC_OK;
}

/* ------------------------------------------------------------ wrapped layers */

typedef struct kj_inner {
    const kc_layer_class *lc;
    kc_node *args; /* NULL: none */
    const kc_node *at;
} kj_inner;

/* A wrapper's `layer:` / `backward_layer:`: `LSTM`, `{LSTM: {...}}` or
 * `{class_name: LSTM, config: {...}}`. 0 when it is none of them. */
static int inner_parts(const kc_node *v, kj_inner *out) {
    const kc_node *cls_node;
    memset(out, 0, sizeof *out);
    if (!v || kc_node_is_null(v)) return 0;
    entry_parts(v, &cls_node, &out->args);
    out->at = cls_node;
    out->lc =
        cls_node && cls_node->kind == KC_NODE_SCALAR ? kc_layer_class_find(cls_node->str) : NULL;
    return out->lc != NULL;
}

static const char *inner_name(const kj_inner *in) {
    const kc_node *n = map_find(in->args, "name");
    return n && n->kind == KC_NODE_SCALAR && !kc_node_is_null(n) ? n->str : in->lc->base_name;
}

static int inner_trainable(const kj_inner *in) {
    const kc_node *n = map_find(in->args, "trainable");
    int b = 1;
    if (n && n->kind == KC_NODE_SCALAR) is_bool_text(n->str, &b);
    return b;
}

static kc_json *layer_config(kj *x, const kc_layer_class *lc, kc_node *args, const char *name,
                             int trainable, const char *flip);

/* The arguments Keras's from_config reads without a default, when the
 * entry leaves them out. */
static void put_required(kj *x, kc_json *cfg, const char *cls, const kc_node *args) {
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        const kj_rule *r = &rules[i];
        if (r->kind != KJ_ALWAYS || !class_in(r->classes, cls)) continue;
        const kc_node *v = map_find(args, r->key);
        if (!v || kc_node_is_null(v)) j_put(x, cfg, r->key, j_num_text(x, r->to));
    }
}

/* {"module": "keras.layers", "class_name": ..., "config": ...} of a wrapped
 * layer, named `name`; `flip` (may be NULL) is a flag written true. */
static kc_json *inner_object(kj *x, const kj_inner *in, const char *name, const char *flip) {
    kc_json *cfg = layer_config(x, in->lc, in->args, name, inner_trainable(in), flip);
    if (!cfg) return NULL;
    return keras_object(x, "keras.layers", in->lc->class_name, cfg);
}

static int required_inner(kj *x, kc_node *args, const char *key, const char *owner, kj_inner *in) {
    kc_node *v = map_find(args, key);
    if (inner_parts(v, in)) return KC_OK;
    return kj_fail(x, v ? v : args, NULL, NULL, "%s: '%s' is not a layer kerasc knows", owner, key);
}

/* Keras's Bidirectional names: forward_<name>, and backward_<name> for the
 * reversed copy it makes - written out, as Keras writes them. */
static int put_bidirectional(kj *x, kc_json *cfg, kc_node *args) {
    kj_inner f, b;
    int rc = required_inner(x, args, "layer", "Bidirectional", &f);
    if (rc) return rc;
    const char *base = inner_name(&f);
    if (!strncmp(base, "forward_", 8)) base += 8; /* Keras's own forward_lstm */
    char fname[200], bname[200];
    snprintf(fname, sizeof fname, "forward_%s", base);
    snprintf(bname, sizeof bname, "backward_%s", base);
    kc_json *fj = inner_object(x, &f, fname, NULL);
    if (!fj) return x->failed ? x->e->code : KC_ERUNTIME;
    j_put(x, cfg, "layer", fj);
    kc_json *bj = inner_parts(map_find(args, "backward_layer"), &b)
                      ? inner_object(x, &b, inner_name(&b), NULL)
                      : inner_object(x, &f, bname, "go_backwards");
    if (!bj) return x->failed ? x->e->code : KC_ERUNTIME;
    j_put(x, cfg, "backward_layer", bj);
    return KC_OK;
}

static int put_time_distributed(kj *x, kc_json *cfg, kc_node *args) {
    kj_inner in;
    int rc = required_inner(x, args, "layer", "TimeDistributed", &in);
    if (rc) return rc;
    kc_json *ij = inner_object(x, &in, inner_name(&in), NULL);
    if (!ij) return x->failed ? x->e->code : KC_ERUNTIME;
    j_put(x, cfg, "layer", ij);
    return KC_OK;
}

/* A layer's config: name, trainable, dtype, then its arguments. */
static kc_json *layer_config(kj *x, const kc_layer_class *lc, kc_node *args, const char *name,
                             int trainable, const char *flip) {
    const char *cls = lc->class_name;
    kc_json *cfg = j_obj(x);
    j_put(x, cfg, "name", j_str(x, name));
    if (!takes_no_layer_kwargs(cls)) j_put(x, cfg, "trainable", j_bool(x, trainable));
    j_put(x, cfg, "dtype", takes_no_layer_kwargs(cls) ? j_str(x, "float32") : dtype_policy(x));
    int rc = put_args(x, cfg, cls, args, flip, name);
    if (!rc) put_required(x, cfg, cls, args);
    if (!rc && !strcmp(cls, "Bidirectional")) rc = put_bidirectional(x, cfg, args);
    if (!rc && !strcmp(cls, "TimeDistributed")) rc = put_time_distributed(x, cfg, args);
    if (!rc && flip) j_put(x, cfg, flip, j_bool(x, 1));
    if (rc) {
        kc_json_free(cfg);
        return NULL;
    }
    return cfg;
}

/* stateful: true on the layer or a layer it wraps. */
static int args_stateful(const kc_node *args) {
    const kc_node *s = map_find(args, "stateful");
    int b = 0;
    if (s && s->kind == KC_NODE_SCALAR && !s->quoted && is_bool_text(s->str, &b) && b) return 1;
    kj_inner in;
    if (inner_parts(map_find(args, "layer"), &in) && args_stateful(in.args)) return 1;
    return inner_parts(map_find(args, "backward_layer"), &in) && args_stateful(in.args);
}

/* ------------------------------------------------------------ the graph */

/* The argument map of the `layers:` entry that declared l. */
static kc_node *layer_args(const kc_model *m, const kc_layer *l) {
    const kc_node *layers = map_find(m->node, "layers");
    for (size_t i = 0; layers && layers->kind == KC_NODE_SEQ && i < layers->n; i++) {
        const kc_node *cls_node;
        kc_node *args;
        entry_parts(layers->items[i], &cls_node, &args);
        if (cls_node == l->node) return args;
    }
    return NULL;
}

static int is_rnn(const kc_layer *l) {
    return class_in(RNN, l->cls->class_name);
}

/* Several tensors passed as one list argument (Add()([a, b])). */
static int takes_list(const kc_layer *l) {
    return kc_layer_class_is_multi(l->cls) && !is_rnn(l);
}

/* {"class_name": "__keras_tensor__", "config": {"shape", "dtype",
 * "keras_history": [layer, node, tensor]}} for tensor t of node id. */
static kc_json *tensor_json(kj *x, const kc_model *m, int id, int t) {
    const kc_model_node *nd = &m->nodes[id];
    kc_json *h = j_arr(x);
    j_push(x, h, j_str(x, nd->layer ? nd->layer->name : m->inputs[nd->input].name));
    j_push(x, h, j_int(x, nd->layer ? nd->call : 0));
    j_push(x, h, j_int(x, t));
    kc_json *cfg = j_obj(x);
    j_put(x, cfg, "shape", shape_json(x, kc_model_tensor_shape(m, id, t)));
    j_put(x, cfg, "dtype", j_str(x, "float32"));
    j_put(x, cfg, "keras_history", h);
    kc_json *o = j_obj(x);
    j_put(x, o, "class_name", j_str(x, "__keras_tensor__"));
    j_put(x, o, "config", cfg);
    return o;
}

/* One call: {"args": [...], "kwargs": {...}}; an RNN's extra inputs are
 * its initial_state. */
static kc_json *call_json(kj *x, const kc_model *m, int id) {
    const kc_model_node *nd = &m->nodes[id];
    kc_json *args = j_arr(x), *kwargs = j_obj(x);
    if (takes_list(nd->layer)) {
        kc_json *list = j_arr(x);
        for (int j = 0; j < nd->nin; j++)
            j_push(x, list, tensor_json(x, m, nd->in[j], nd->in_t[j]));
        j_push(x, args, list);
    } else {
        j_push(x, args, tensor_json(x, m, nd->in[0], nd->in_t[0]));
    }
    if (is_rnn(nd->layer) && nd->nin > 1) {
        kc_json *states = j_arr(x);
        for (int j = 1; j < nd->nin; j++)
            j_push(x, states, tensor_json(x, m, nd->in[j], nd->in_t[j]));
        j_put(x, kwargs, "initial_state", states);
    }
    kc_json *o = j_obj(x);
    j_put(x, o, "args", args);
    j_put(x, o, "kwargs", kwargs);
    return o;
}

/* The shapes a layer is built for (its first call's inputs). */
static kc_json *build_config(kj *x, const kc_model *m, int id) {
    const kc_model_node *nd = &m->nodes[id];
    kc_json *bc = j_obj(x);
    if (is_rnn(nd->layer) && nd->nin > 1) {
        kc_json *sd = j_obj(x), *states = j_arr(x);
        j_put(x, sd, "sequences_shape",
              shape_json(x, kc_model_tensor_shape(m, nd->in[0], nd->in_t[0])));
        for (int j = 1; j < nd->nin; j++)
            j_push(x, states, shape_json(x, kc_model_tensor_shape(m, nd->in[j], nd->in_t[j])));
        j_put(x, sd, "initial_state_shape", states);
        j_put(x, bc, "shapes_dict", sd);
    } else if (takes_list(nd->layer)) {
        kc_json *list = j_arr(x);
        for (int j = 0; j < nd->nin; j++)
            j_push(x, list, shape_json(x, kc_model_tensor_shape(m, nd->in[j], nd->in_t[j])));
        j_put(x, bc, "input_shape", list);
    } else {
        j_put(x, bc, "input_shape",
              shape_json(x, kc_model_tensor_shape(m, nd->in[0], nd->in_t[0])));
    }
    return bc;
}

static kc_json *layer_entry(kj *x, const kc_model *m, const kc_layer *l, int functional) {
    kc_json *cfg = layer_config(x, l->cls, layer_args(m, l), l->name, l->trainable, NULL);
    if (!cfg) return NULL;
    kc_json *o = keras_object(x, "keras.layers", l->cls->class_name, cfg);
    kc_json *calls = j_arr(x);
    int first = -1;
    for (int i = 0; i < m->nnodes; i++) {
        if (m->nodes[i].layer != l) continue;
        if (first < 0) first = i;
        j_push(x, calls, call_json(x, m, i));
    }
    if (first < 0) { /* the parser makes every layer lead to an output */
        kc_json_free(calls);
        kc_json_free(o);
        kj_fail(x, l->node, l->name, l->cls->class_name, "the layer is never called");
        return NULL;
    }
    j_put(x, o, "build_config", build_config(x, m, first));
    if (functional) {
        j_put(x, o, "name", j_str(x, l->name));
        j_put(x, o, "inbound_nodes", calls);
    } else {
        kc_json_free(calls);
    }
    return o;
}

/* `optional:` of an Input entry, as written (false by default). */
static int input_optional(const kc_node *where) {
    const kc_node *cls_node;
    kc_node *args;
    entry_parts(where, &cls_node, &args);
    const kc_node *o = cls_node && cls_node != where ? map_find(args, "optional") : NULL;
    int b = 0;
    if (o && o->kind == KC_NODE_SCALAR && !o->quoted) is_bool_text(o->str, &b);
    return b;
}

static kc_json *input_entry(kj *x, const kc_model *m, int i, int functional) {
    const kc_model_input *in = &m->inputs[i];
    kc_json *cfg = j_obj(x);
    j_put(x, cfg, "batch_shape", shape_json(x, &in->shape));
    j_put(x, cfg, "dtype", j_str(x, "float32"));
    j_put(x, cfg, "sparse", j_bool(x, 0));
    j_put(x, cfg, "ragged", j_bool(x, 0));
    j_put(x, cfg, "name", j_str(x, in->name));
    j_put(x, cfg, "optional", j_bool(x, in->where && input_optional(in->where)));
    kc_json *o = keras_object(x, "keras.layers", "InputLayer", cfg);
    if (functional) {
        j_put(x, o, "name", j_str(x, in->name));
        j_put(x, o, "inbound_nodes", j_arr(x));
    }
    return o;
}

/* A layer list entry, or NULL with x->failed / x->oom set. */
static int push_entry(kj *x, kc_json *layers, kc_json *entry) {
    if (!entry) return x->failed ? x->e->code : KC_ERUNTIME;
    j_push(x, layers, entry);
    return KC_OK;
}

/* Keras's Sequential: the InputLayer, then each layer on the one before. */
static kc_json *sequential_json(kj *x, const kc_model *m) {
    kc_json *layers = j_arr(x);
    int rc = push_entry(x, layers, input_entry(x, m, 0, 0));
    for (int i = 0; !rc && i < m->nlayers; i++)
        rc = push_entry(x, layers, layer_entry(x, m, m->layers[i], 0));
    if (rc) {
        kc_json_free(layers);
        return NULL;
    }
    kc_json *cfg = j_obj(x);
    j_put(x, cfg, "name", j_str(x, m->name));
    j_put(x, cfg, "trainable", j_bool(x, 1));
    j_put(x, cfg, "dtype", dtype_policy(x));
    j_put(x, cfg, "layers", layers);
    j_put(x, cfg, "build_input_shape", shape_json(x, &m->inputs[0].shape));
    kc_json *root = keras_object(x, "keras", "Sequential", cfg);
    kc_json *bc = j_obj(x);
    j_put(x, bc, "input_shape", shape_json(x, &m->inputs[0].shape));
    j_put(x, root, "build_config", bc);
    return root;
}

static kc_json *triple(kj *x, const char *name, int node, int tensor) {
    kc_json *a = j_arr(x);
    j_push(x, a, j_str(x, name));
    j_push(x, a, j_int(x, node));
    j_push(x, a, j_int(x, tensor));
    return a;
}

/* input_layers / output_layers: one triple, or a list of them. */
static kc_json *io_json(kj *x, const kc_model *m, int outputs) {
    int n = outputs ? m->noutputs : m->ninputs;
    kc_json *list = n > 1 ? j_arr(x) : NULL, *one = NULL;
    for (int k = 0; k < n; k++) {
        if (outputs) {
            const kc_model_node *nd = &m->nodes[m->outputs[k].node];
            one = triple(x, nd->layer->name, nd->call, m->outputs[k].tensor);
        } else {
            one = triple(x, m->inputs[k].name, 0, 0);
        }
        if (list) j_push(x, list, one);
    }
    return list ? list : one;
}

/* Keras's Functional: every layer once, in Keras's order
 * (Functional.operations), with its calls as inbound nodes. */
static kc_json *functional_json(kj *x, const kc_model *m) {
    int *ops = calloc((size_t)(m->ninputs + m->nlayers), sizeof *ops);
    if (!ops) {
        x->oom = 1;
        return NULL;
    }
    int n = kc_model_keras_order(m, ops), rc = KC_OK;
    kc_json *layers = j_arr(x);
    for (int i = 0; !rc && i < n; i++)
        rc = push_entry(x, layers,
                        ops[i] >= 0 ? layer_entry(x, m, m->layers[ops[i]], 1)
                                    : input_entry(x, m, -1 - ops[i], 1));
    free(ops);
    if (rc) {
        kc_json_free(layers);
        return NULL;
    }
    kc_json *cfg = j_obj(x);
    j_put(x, cfg, "name", j_str(x, m->name));
    j_put(x, cfg, "trainable", j_bool(x, 1));
    j_put(x, cfg, "layers", layers);
    j_put(x, cfg, "input_layers", io_json(x, m, 0));
    j_put(x, cfg, "output_layers", io_json(x, m, 1));
    kc_json *root = j_obj(x);
    j_put(x, root, "module", j_str(x, "keras.src.models.functional"));
    j_put(x, root, "class_name", j_str(x, "Functional"));
    j_put(x, root, "config", cfg);
    j_put(x, root, "registered_name", j_str(x, "Functional"));
    kc_json *bc = j_obj(x);
    j_put(x, bc, "input_shape", j_null(x));
    j_put(x, root, "build_config", bc);
    return root;
}

/* A stack Keras's Sequential can hold: one input, one output, and layers
 * that each return one tensor. */
static int sequential_ok(const kc_model *m) {
    if (m->functional || m->ninputs != 1 || m->noutputs != 1) return 0;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i]->noutputs != 1) return 0;
    return 1;
}

/* Stateful RNNs need a fixed batch size in Keras: fit's. */
static int fixed_batch(kj *x, const kc_config *cfg, const kc_model *m) {
    for (int i = 0; i < m->nlayers; i++) {
        const kc_layer *l = m->layers[i];
        if (!args_stateful(layer_args(m, l))) continue;
        if (cfg && cfg->fit.batch_size > 0) {
            x->batch = cfg->fit.batch_size;
            return KC_OK;
        }
        return kj_fail(x, l->node, l->name, l->cls->class_name,
                       "stateful: true needs a fixed batch size in Keras (the input's "
                       "batch_shape), and no fit settings give one");
    }
    return KC_OK;
}

/* ------------------------------------------------------------ compile */

static kc_json *schedule_json(kj *x, const kc_schedule *s, const kc_node *spec) {
    kc_json *c = j_obj(x);
    int cosine = s->kind == KC_SCHEDULE_COSINE_DECAY,
        poly = s->kind == KC_SCHEDULE_POLYNOMIAL_DECAY;
    if (s->kind == KC_SCHEDULE_PIECEWISE_CONSTANT_DECAY) {
        kc_json *b = j_arr(x), *v = j_arr(x);
        for (int i = 0; i < s->nboundaries; i++)
            j_push(x, b, j_int(x, s->boundaries[i]));
        for (int i = 0; i <= s->nboundaries; i++)
            j_push(x, v, j_float(x, s->values[i]));
        j_put(x, c, "boundaries", b);
        j_put(x, c, "values", v);
    } else {
        j_put(x, c, "initial_learning_rate",
              num_json(x, spec_arg(spec, "initial_learning_rate"), s->initial_learning_rate));
        j_put(x, c, "decay_steps", j_count(x, s->decay_steps));
    }
    if (s->kind == KC_SCHEDULE_EXPONENTIAL_DECAY || s->kind == KC_SCHEDULE_INVERSE_TIME_DECAY) {
        j_put(x, c, "decay_rate", num_json(x, spec_arg(spec, "decay_rate"), s->decay_rate));
        j_put(x, c, "staircase", j_bool(x, s->staircase));
    }
    if (poly) {
        j_put(x, c, "end_learning_rate",
              num_json(x, spec_arg(spec, "end_learning_rate"), s->end_learning_rate));
        j_put(x, c, "power", num_json(x, spec_arg(spec, "power"), s->power));
        j_put(x, c, "cycle", j_bool(x, s->cycle));
    }
    if (cosine) j_put(x, c, "alpha", num_json(x, spec_arg(spec, "alpha"), s->alpha));
    j_put(x, c, "name", j_str(x, s->name));
    if (cosine) {
        j_put(x, c, "warmup_target", s->has_warmup ? j_float(x, s->warmup_target) : j_null(x));
        j_put(x, c, "warmup_steps", j_count(x, s->warmup_steps));
    }
    return keras_object(x, "keras.optimizers.schedules", kc_schedule_class_name(s->kind), c);
}

/* A clip or decay kerasc keeps as 0 when it is None. */
static kc_json *opt_none(kj *x, const kc_node *spec, const char *key, double v) {
    return v != 0.0 ? num_json(x, spec_arg(spec, key), v) : j_null(x);
}

/* The hyperparameters each class adds after the base optimizer's. */
static void optimizer_own(kj *x, kc_json *c, const kc_node *spec, const kc_optimizer_config *o) {
    static const char *const own[][5] = {
        [KC_OPTIMIZER_SGD] = {"momentum", "nesterov"},
        [KC_OPTIMIZER_RMSPROP] = {"rho", "momentum", "epsilon", "centered"},
        [KC_OPTIMIZER_ADAM] = {"beta_1", "beta_2", "epsilon", "amsgrad"},
        [KC_OPTIMIZER_ADAMW] = {"beta_1", "beta_2", "epsilon", "amsgrad"},
        [KC_OPTIMIZER_ADAGRAD] = {"initial_accumulator_value", "epsilon"},
        [KC_OPTIMIZER_ADADELTA] = {"rho", "epsilon"},
        [KC_OPTIMIZER_ADAMAX] = {"beta_1", "beta_2", "epsilon"},
        [KC_OPTIMIZER_NADAM] = {"beta_1", "beta_2", "epsilon"},
        [KC_OPTIMIZER_LION] = {"beta_1", "beta_2"},
    };
    for (int i = 0; i < 5 && own[o->kind][i]; i++) {
        const char *k = own[o->kind][i];
        const double v = !strcmp(k, "momentum")  ? o->momentum
                         : !strcmp(k, "rho")     ? o->rho
                         : !strcmp(k, "epsilon") ? o->epsilon
                         : !strcmp(k, "beta_1")  ? o->beta_1
                         : !strcmp(k, "beta_2")  ? o->beta_2
                                                 : o->initial_accumulator_value;
        if (!strcmp(k, "nesterov") || !strcmp(k, "centered") || !strcmp(k, "amsgrad"))
            j_put(x, c, k,
                  j_bool(x, !strcmp(k, "nesterov")   ? o->nesterov
                            : !strcmp(k, "centered") ? o->centered
                                                     : o->amsgrad));
        else
            j_put(x, c, k, num_json(x, spec_arg(spec, k), v));
    }
}

/* The optimizer with every argument Keras 3's get_config writes (null:
 * Keras's default, rmsprop). */
static kc_json *optimizer_json(kj *x, kc_node *spec) {
    kc_optimizer *opt;
    if (kc_optimizer_parse(spec, &opt, x->e)) return kj_reader_failed(x);
    const kc_optimizer_config *o = kc_optimizer_get_config(opt);
    kc_json *c = j_obj(x);
    j_put(x, c, "name", j_str(x, o->name));
    const kc_node *lr = spec_arg(spec, "learning_rate");
    j_put(x, c, "learning_rate",
          o->schedule.kind != KC_SCHEDULE_NONE ? schedule_json(x, &o->schedule, lr)
                                               : num_json(x, lr, o->learning_rate));
    j_put(x, c, "weight_decay",
          o->kind == KC_OPTIMIZER_ADAMW
              ? num_json(x, spec_arg(spec, "weight_decay"), o->weight_decay)
              : opt_none(x, spec, "weight_decay", o->weight_decay));
    j_put(x, c, "clipnorm", opt_none(x, spec, "clipnorm", o->clipnorm));
    j_put(x, c, "global_clipnorm", opt_none(x, spec, "global_clipnorm", o->global_clipnorm));
    j_put(x, c, "clipvalue", opt_none(x, spec, "clipvalue", o->clipvalue));
    j_put(x, c, "use_ema", j_bool(x, 0));
    j_put(x, c, "ema_momentum", j_float(x, 0.99));
    j_put(x, c, "ema_overwrite_frequency", j_null(x));
    j_put(x, c, "loss_scale_factor", j_null(x));
    j_put(x, c, "gradient_accumulation_steps", j_null(x));
    optimizer_own(x, c, spec, o);
    kc_json *out = keras_object(x, "keras.optimizers", kc_optimizer_name(opt), c);
    kc_optimizer_free(opt);
    return out;
}

/* An object's arguments as a Keras config (without the spec's own keys). */
static kc_json *spec_config(kj *x, const kc_node *args) {
    kc_json *c = j_obj(x);
    for (size_t i = 0; args && i < args->n; i++) {
        const char *key = args->items[2 * i]->str;
        if (!strcmp(key, "class_name") || !strcmp(key, "module") || !strcmp(key, "registered_name"))
            continue;
        j_put(x, c, key, node_json(x, args->items[2 * i + 1]));
    }
    return c;
}

static int spec_has_args(const kc_args *a) {
    for (size_t i = 0; a->map && i < a->map->n; i++) {
        const char *key = a->map->items[2 * i]->str;
        if (strcmp(key, "class_name") && strcmp(key, "module") && strcmp(key, "registered_name"))
            return 1;
    }
    return 0;
}

/* A loss by name (Keras 3's spelling) or as a Keras object. */
static kc_json *loss_json(kj *x, kc_node *n) {
    if (!n || kc_node_is_null(n)) return j_null(x);
    kc_loss l;
    const char *name;
    const kc_node *at;
    kc_args a;
    if (kc_loss_parse(n, &l, x->e) || kc_object_spec(n, "loss", &name, &at, &a, x->e))
        return kj_reader_failed(x);
    static const char *const renamed[][2] = {{"kullback_leibler_divergence", "kl_divergence"},
                                             {"logcosh", "log_cosh"}};
    for (size_t i = 0; i < sizeof renamed / sizeof renamed[0]; i++)
        if (!strcmp(name, renamed[i][0])) name = renamed[i][1];
    if (!spec_has_args(&a))
        return j_str(x, n->kind == KC_NODE_SCALAR ? name : kc_loss_class_name(&l));
    return keras_object(x, "keras.losses", kc_loss_class_name(&l), spec_config(x, a.map));
}

/* Keras's metric class for a snake_case name: precision -> Precision,
 * top_k_categorical_accuracy -> TopKCategoricalAccuracy. */
static void metric_class(const char *name, char *out, size_t n) {
    static const char *const abbrev[][2] = {{"auc", "AUC"},
                                            {"mse", "MeanSquaredError"},
                                            {"mae", "MeanAbsoluteError"},
                                            {"mape", "MeanAbsolutePercentageError"},
                                            {"msle", "MeanSquaredLogarithmicError"}};
    for (size_t i = 0; i < sizeof abbrev / sizeof abbrev[0]; i++)
        if (!strcasecmp(name, abbrev[i][0])) {
            snprintf(out, n, "%s", abbrev[i][1]);
            return;
        }
    size_t k = 0;
    for (int up = 1; *name && k + 1 < n; name++) {
        if (*name == '_') {
            up = 1;
            continue;
        }
        out[k++] = up && *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
        up = 0;
    }
    out[k] = 0;
}

static kc_json *metric_json(kj *x, kc_node *n) {
    const char *name;
    const kc_node *at;
    kc_args a;
    if (kc_object_spec(n, "metric", &name, &at, &a, x->e)) return kj_reader_failed(x);
    if (!spec_has_args(&a)) return j_str(x, name);
    char cls[128];
    metric_class(name, cls, sizeof cls);
    return keras_object(x, "keras.metrics", cls, spec_config(x, a.map));
}

/* A mapping keyed by output names rather than one object (as the compile
 * section is read). */
static int keyed_by_outputs(const kc_model *m, const kc_node *n) {
    if (!n || n->kind != KC_NODE_MAP || map_find(n, "class_name")) return 0;
    for (size_t i = 0; i < n->n; i++)
        for (int k = 0; k < m->noutputs; k++)
            if (key_is(n->items[2 * i], m->outputs[k].name)) return 1;
    return 0;
}

/* Output k's entry of a value given per output (mapping, list) or for all. */
static kc_node *output_entry(const kc_model *m, kc_node *v, int keyed, int k) {
    if (keyed) return map_find(v, m->outputs[k].name);
    if (v->kind == KC_NODE_SEQ) return k < (int)v->n ? v->items[k] : NULL;
    return v;
}

/* One value per output: itself for a single output, else a mapping from
 * output names (Keras's dict form). */
static kc_json *per_output(kj *x, const kc_model *m, kc_json **vals) {
    if (m->noutputs == 1) return vals[0];
    kc_json *o = j_obj(x);
    for (int k = 0; k < m->noutputs; k++)
        j_put(x, o, m->outputs[k].name, vals[k]);
    return o;
}

static kc_json *losses_json(kj *x, const kc_config *cfg, const kc_model *m) {
    if (!cfg->loss) return j_null(x);
    kc_json *vals[KC_MODEL_MAX_IO];
    int keyed = keyed_by_outputs(m, cfg->loss);
    for (int k = 0; k < m->noutputs; k++)
        if (!(vals[k] = loss_json(x, output_entry(m, cfg->loss, keyed, k)))) {
            while (k--)
                kc_json_free(vals[k]);
            return NULL;
        }
    return per_output(x, m, vals);
}

static kc_json *loss_weights_json(kj *x, const kc_config *cfg, const kc_model *m) {
    if (!cfg->loss_weights) return j_null(x);
    kc_json *vals[KC_MODEL_MAX_IO];
    for (int k = 0; k < m->noutputs; k++) {
        const kc_node *w =
            output_entry(m, cfg->loss_weights, cfg->loss_weights->kind == KC_NODE_MAP, k);
        double d = 1.0;
        kc_error ignored = {0};
        if (w && !kc_node_is_null(w)) kc_node_float(w, &d, &ignored);
        vals[k] = w && !kc_node_is_null(w) ? num_json(x, w, d) : j_float(x, 1.0);
    }
    if (m->noutputs > 1) return per_output(x, m, vals);
    kc_json *one = j_arr(x);
    j_push(x, one, vals[0]);
    return one;
}

/* Output k's metrics as a list. */
static kc_json *metric_list(kj *x, kc_node *v) {
    kc_json *list = j_arr(x);
    size_t n = !v || kc_node_is_null(v) ? 0 : v->kind == KC_NODE_SEQ ? v->n : 1;
    for (size_t i = 0; i < n; i++) {
        kc_json *one = metric_json(x, v->kind == KC_NODE_SEQ ? v->items[i] : v);
        if (!one) {
            kc_json_free(list);
            return NULL;
        }
        j_push(x, list, one);
    }
    return list;
}

static kc_json *metrics_json(kj *x, const kc_config *cfg, const kc_model *m) {
    kc_node *v = cfg->metrics;
    if (!v) return j_null(x);
    int keyed = keyed_by_outputs(m, v);
    int nested =
        v->kind == KC_NODE_SEQ && m->noutputs > 1 && v->n > 0 && v->items[0]->kind == KC_NODE_SEQ;
    kc_json *vals[KC_MODEL_MAX_IO];
    for (int k = 0; k < m->noutputs; k++)
        if (!(vals[k] = metric_list(x, keyed || nested ? output_entry(m, v, keyed, k) : v))) {
            while (k--)
                kc_json_free(vals[k]);
            return NULL;
        }
    return per_output(x, m, vals);
}

/* What model.compile() was given, as Keras 3's compile_config holds it. */
static kc_json *compile_json(kj *x, const kc_config *cfg, const kc_model *m) {
    kc_json *parts[4] = {optimizer_json(x, cfg->optimizer), NULL, NULL, NULL};
    if (parts[0]) parts[1] = losses_json(x, cfg, m);
    if (parts[1]) parts[2] = loss_weights_json(x, cfg, m);
    if (parts[2]) parts[3] = metrics_json(x, cfg, m);
    if (!parts[3]) {
        for (int i = 0; i < 4; i++)
            kc_json_free(parts[i]);
        return NULL;
    }
    static const char *const keys[] = {"optimizer", "loss", "loss_weights", "metrics"};
    kc_json *c = j_obj(x);
    for (int i = 0; i < 4; i++)
        j_put(x, c, keys[i], parts[i]);
    j_put(x, c, "weighted_metrics", j_null(x));
    j_put(x, c, "run_eagerly", j_bool(x, 0));
    j_put(x, c, "steps_per_execution", j_int(x, 1));
    j_put(x, c, "jit_compile", j_bool(x, 0));
    return c;
}

/* ------------------------------------------------------------ public */

static int finish(kj *x, kc_json *root, kc_strbuf *out) {
    int rc = KC_OK;
    if (x->failed)
        rc = x->e->code ? x->e->code : KC_ECONFIG;
    else if (x->oom || !root)
        rc = kc_fail(x->e, KC_ERUNTIME, "out of memory writing the Keras model");
    if (!rc) {
        kc_strbuf b = {0};
        kc_json_write(&b, root, 0);
        if (b.failed)
            rc = kc_fail(x->e, KC_ERUNTIME, "out of memory writing the Keras model");
        else
            kc_strbuf_append(out, b.s, b.len);
        kc_strbuf_free(&b);
    }
    kc_json_free(root);
    return rc;
}

int kc_keras_export_json(const kc_config *cfg, const kc_model *m, kc_strbuf *out, kc_error *e) {
    kj x = {.e = e};
    if (!m || m->ninputs < 1 || m->noutputs < 1)
        return kc_fail(e, KC_ECONFIG, "no model to write as Keras JSON");
    if (fixed_batch(&x, cfg, m)) return e->code;
    kc_json *root = sequential_ok(m) ? sequential_json(&x, m) : functional_json(&x, m);
    if (root && cfg && cfg->compile_node && !x.failed) {
        kc_json *c = compile_json(&x, cfg, m);
        if (c) j_put(&x, root, "compile_config", c);
    }
    return finish(&x, root, out);
}

int kc_keras_export_metadata(kc_strbuf *out, kc_error *e) {
    /* The format written is Keras 3.15's (its layer, optimizer and
     * InputLayer configs, checked by tests/fixtures/keras/check_export.py
     * against Keras 3.15.1), so that is the version the archive claims. */
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm) || !strftime(date, sizeof date, "%Y-%m-%d@%H:%M:%S", &tm))
        return kc_fail(e, KC_ERUNTIME, "cannot read the clock for metadata.json");
    if (kc_strbuf_printf(out, "{\"keras_version\": \"%s\", \"date_saved\": \"%s\"}",
                         KC_KERAS_EXPORT_VERSION, date))
        return kc_fail(e, KC_ERUNTIME, "out of memory writing metadata.json");
    return KC_OK;
}
