/* Keras activation names and their dispatch to the backend. */
#include "models/activations.h"

#include <stdio.h>
#include <string.h>

typedef struct act_entry {
    const char *name;
    kc_act act;
    float alpha;
} act_entry;

/* Keras 3 semantics: leaky_relu's negative slope is 0.2 and elu's alpha 1.0;
 * swish is Keras 3's alias of silu and hard_swish of hard_silu; gelu is the
 * exact (erf) form, Keras 3's default approximate=False; hard_sigmoid is
 * relu6(x + 3) / 6. softmax and log_softmax run over the last axis. */
static const act_entry table[] = {
    {"linear", KC_ACT_LINEAR, 0.0f},
    {"relu", KC_ACT_RELU, 0.0f},
    {"sigmoid", KC_ACT_SIGMOID, 0.0f},
    {"tanh", KC_ACT_TANH, 0.0f},
    {"softmax", KC_ACT_SOFTMAX, 0.0f},
    {"elu", KC_ACT_ELU, 1.0f},
    {"selu", KC_ACT_SELU, 0.0f},
    {"softplus", KC_ACT_SOFTPLUS, 0.0f},
    {"softsign", KC_ACT_SOFTSIGN, 0.0f},
    {"swish", KC_ACT_SWISH, 0.0f},
    {"silu", KC_ACT_SWISH, 0.0f},
    {"gelu", KC_ACT_GELU, 0.0f},
    {"leaky_relu", KC_ACT_LEAKY_RELU, 0.2f},
    {"hard_sigmoid", KC_ACT_HARD_SIGMOID, 0.0f},
    {"exponential", KC_ACT_EXPONENTIAL, 0.0f},
    {"relu6", KC_ACT_RELU6, 0.0f},
    {"hard_silu", KC_ACT_HARD_SILU, 0.0f},
    {"hard_swish", KC_ACT_HARD_SILU, 0.0f},
    {"mish", KC_ACT_MISH, 0.0f},
    {"log_softmax", KC_ACT_LOG_SOFTMAX, 0.0f},
};
#define NTABLE (sizeof table / sizeof table[0])

const char *const kc_activation_names[] = {
    "linear",      "relu",     "sigmoid",   "tanh",       "softmax", "elu",         "selu",
    "softplus",    "softsign", "swish",     "silu",       "gelu",    "leaky_relu",  "hard_sigmoid",
    "exponential", "relu6",    "hard_silu", "hard_swish", "mish",    "log_softmax", NULL,
};

/* Names Keras 3 knows that kerasc has no kernel for: these get a "not
 * supported yet" answer instead of "unknown". */
static const char *const keras_only[] = {
    "celu",      "squareplus",     "soft_shrink", "sparse_plus", "glu",         "tanh_shrink",
    "threshold", "sparse_sigmoid", "hard_tanh",   "hard_shrink", "log_sigmoid", "sparsemax",
    NULL,
};

static const act_entry *lookup(const char *name) {
    for (size_t i = 0; i < NTABLE; i++)
        if (!strcmp(table[i].name, name)) return &table[i];
    return NULL;
}

static void list_names(char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; kc_activation_names[i] && used + 1 < n; i++)
        used +=
            (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", kc_activation_names[i]);
}

/* ctx prefixes messages ("Dense argument 'activation': ") after the location. */
static int parse_at(const kc_node *node, const char *ctx, kc_activation *out, kc_error *e) {
    out->act = KC_ACT_LINEAR;
    out->alpha = 0.0f;
    if (!node || kc_node_is_null(node)) return KC_OK; /* None means linear */
    if (node->kind != KC_NODE_SCALAR)
        return kc_node_fail(e, node, "%sexpected an activation name such as 'relu', got %s", ctx,
                            kc_node_kind_name(node));
    const act_entry *t = lookup(node->str);
    if (t) {
        out->act = t->act;
        out->alpha = t->alpha;
        return KC_OK;
    }
    char list[512];
    list_names(list, sizeof list);
    for (size_t i = 0; keras_only[i]; i++)
        if (!strcmp(keras_only[i], node->str))
            return kc_node_fail(e, node,
                                "%sactivation '%s' is not supported yet by kerasc (supported: %s)",
                                ctx, node->str, list);
    const char *near = kc_closest(node->str, kc_activation_names, NTABLE);
    if (near)
        return kc_node_fail(e, node, "%sunknown activation '%s' (did you mean '%s'?)", ctx,
                            node->str, near);
    return kc_node_fail(e, node, "%sunknown activation '%s' (valid: %s)", ctx, node->str, list);
}

int kc_activation_parse(const kc_node *node, kc_activation *out, kc_error *e) {
    return parse_at(node, "", out, e);
}

int kc_args_activation(kc_args *a, const char *key, const char *def, kc_activation *out,
                       kc_error *e) {
    kc_node *n = kc_args_node(a, key);
    if (n) {
        char ctx[160];
        snprintf(ctx, sizeof ctx, "%s argument '%s': ", a->owner, key);
        return parse_at(n, ctx, out, e);
    }
    const act_entry *t = lookup(def ? def : "linear");
    out->act = t ? t->act : KC_ACT_LINEAR;
    out->alpha = t ? t->alpha : 0.0f;
    return KC_OK;
}

const char *kc_activation_name(kc_act act) {
    if (act == KC_ACT_SWISH) return "silu"; /* what Keras 3 serializes */
    if (act == KC_ACT_HARD_SILU) return "hard_silu";
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].act == act) return table[i].name;
    return "unknown";
}

int kc_activation_forward(kc_device *d, const kc_activation *a, kc_buf x, kc_buf y, int rows,
                          int cols) {
    size_t n = (size_t)rows * (size_t)cols;
    switch (a->act) {
    case KC_ACT_LINEAR:
        return kc_copy(d, y, x, n * sizeof(float));
    case KC_ACT_SOFTMAX:
        return kc_softmax_forward(d, x, y, rows, cols);
    case KC_ACT_LOG_SOFTMAX:
        return kc_softmax_axis_forward(d, 1, &(kc_reduce_desc){rows, cols, 1}, x, y);
    default:
        return kc_act_forward(d, a->act, a->alpha, x, y, n);
    }
}

int kc_activation_backward(kc_device *d, const kc_activation *a, kc_buf x, kc_buf y, kc_buf dy,
                           kc_buf dx, int rows, int cols) {
    size_t n = (size_t)rows * (size_t)cols;
    switch (a->act) {
    case KC_ACT_LINEAR:
        return kc_copy(d, dx, dy, n * sizeof(float));
    case KC_ACT_SOFTMAX:
        return kc_softmax_backward(d, y, dy, dx, rows, cols);
    case KC_ACT_LOG_SOFTMAX:
        return kc_softmax_axis_backward(d, 1, &(kc_reduce_desc){rows, cols, 1}, y, dy, dx);
    default:
        return kc_act_backward(d, a->act, a->alpha, x, y, dy, dx, n);
    }
}
