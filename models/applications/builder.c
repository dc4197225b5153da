/* The layer graph of a Keras Application and its `model:` section. */
#include "models/applications/builder.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IN 2
#define MAX_AUTO 16

typedef struct app_node {
    const char *cls; /* NULL: the Input */
    char name[80];
    char *args; /* ", filters: 64, ..." (malloc'd) */
    int in[MAX_IN], nin;
    kc_app_shape shape;
    int index, depth, seen; /* Keras's layer order */
} app_node;

struct kc_app_builder {
    app_node *nodes;
    int n, cap;
    struct {
        char base[40];
        int count;
    } auto_names[MAX_AUTO];
    int nauto;
    char model_name[80];
    kc_app_shape input;
    kc_error err;
    int failed;
};

kc_app_builder *kc_app_builder_new(const long long input_shape[3]) {
    kc_app_builder *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->input.rank = 3;
    for (int i = 0; i < 3; i++)
        b->input.d[i] = input_shape[i];
    return b;
}

void kc_app_builder_free(kc_app_builder *b) {
    if (!b) return;
    for (int i = 0; i < b->n; i++)
        free(b->nodes[i].args);
    free(b->nodes);
    free(b);
}

void kc_app_set_name(kc_app_builder *b, const char *name) {
    snprintf(b->model_name, sizeof b->model_name, "%s", name);
}

int kc_app_fail(kc_app_builder *b, int code, const char *fmt, ...) {
    if (b->failed) return -1;
    b->failed = code;
    b->err.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err.msg, sizeof b->err.msg, fmt, ap);
    va_end(ap);
    return -1;
}

const kc_app_shape *kc_app_shape_of(const kc_app_builder *b, int x) {
    return x >= 0 && x < b->n ? &b->nodes[x].shape : NULL;
}

/* Keras's naming.uniquify: base, base_1, base_2, ... per base name. */
static void auto_name(kc_app_builder *b, const char *base, char *out, size_t n) {
    int i = 0;
    while (i < b->nauto && strcmp(b->auto_names[i].base, base))
        i++;
    if (i == b->nauto) {
        if (b->nauto == MAX_AUTO) {
            kc_app_fail(b, KC_ERUNTIME, "too many automatic layer names");
            return;
        }
        snprintf(b->auto_names[b->nauto++].base, sizeof b->auto_names[0].base, "%s", base);
    }
    int k = b->auto_names[i].count++;
    if (k)
        snprintf(out, n, "%s_%d", base, k);
    else
        snprintf(out, n, "%s", base);
}

/* Adds a layer; `args` (", key: value, ...") is taken over. */
static int add_node(kc_app_builder *b, const char *cls, const char *base, const char *name,
                    const int *in, int nin, kc_app_shape shape, kc_strbuf *args) {
    if (nin > MAX_IN) kc_app_fail(b, KC_ERUNTIME, "a layer takes at most %d inputs", MAX_IN);
    for (int i = 0; i < nin && !b->failed; i++)
        if (in[i] < 0 || in[i] >= b->n) kc_app_fail(b, KC_ERUNTIME, "a layer's input is missing");
    if (b->failed || args->failed || (b->n == b->cap && b->cap > (1 << 20))) {
        kc_strbuf_free(args);
        return b->failed ? -1 : kc_app_fail(b, KC_ERUNTIME, "out of memory");
    }
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 256;
        app_node *nodes = realloc(b->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            kc_strbuf_free(args);
            return kc_app_fail(b, KC_ERUNTIME, "out of memory");
        }
        b->nodes = nodes;
        b->cap = cap;
    }
    app_node *nd = &b->nodes[b->n];
    memset(nd, 0, sizeof *nd);
    nd->cls = cls;
    if (name)
        snprintf(nd->name, sizeof nd->name, "%s", name);
    else
        auto_name(b, base, nd->name, sizeof nd->name);
    nd->args = kc_strbuf_take(args);
    if (b->failed || !nd->args) {
        free(nd->args);
        return b->failed ? -1 : kc_app_fail(b, KC_ERUNTIME, "out of memory");
    }
    if (nin) memcpy(nd->in, in, (size_t)nin * sizeof *in);
    nd->nin = nin;
    nd->shape = shape;
    return b->n++;
}

static const kc_app_shape *input_shape(kc_app_builder *b, int x) {
    return b->failed || x < 0 || x >= b->n ? NULL : &b->nodes[x].shape;
}

/* The name a failure message gives the layer about to be added. */
static const char *layer_label(const char *name, const char *cls) {
    return name ? name : cls;
}

static void put_num(kc_strbuf *s, const char *key, double v) {
    kc_strbuf_printf(s, ", %s: ", key);
    kc_json_write_double(s, v);
}

int kc_app_input(kc_app_builder *b) {
    kc_strbuf args = {0};
    return add_node(b, NULL, "input_layer", NULL, NULL, 0, b->input, &args);
}

/* One spatial size through a window: Keras's "valid" and "same". */
static int window(kc_app_builder *b, const char *label, long long in, int k, int s,
                  const char *padding, long long *out) {
    if (padding && !strcmp(padding, "same")) {
        *out = (in + s - 1) / s;
        return 0;
    }
    if (in < k)
        return kc_app_fail(b, KC_ECONFIG,
                           "the input shape (%lld, %lld, %lld) is too small: layer '%s' gets "
                           "a size of %lld for its window of %d",
                           b->input.d[0], b->input.d[1], b->input.d[2], label, in, k);
    *out = (in - k) / s + 1;
    return 0;
}

static int spatial(kc_app_builder *b, int x, const char *label, int k, int s, const char *padding,
                   long long channels, kc_app_shape *out) {
    const kc_app_shape *in = input_shape(b, x);
    if (!in) return -1;
    if (in->rank != 3) return kc_app_fail(b, KC_ERUNTIME, "layer '%s' needs a 3D input", label);
    out->rank = 3;
    out->d[2] = channels > 0 ? channels : in->d[2];
    if (window(b, label, in->d[0], k, s, padding, &out->d[0])) return -1;
    return window(b, label, in->d[1], k, s, padding, &out->d[1]);
}

static void put_conv_args(kc_strbuf *s, kc_app_conv_args a, const char *init_key) {
    if (a.strides > 1) kc_strbuf_printf(s, ", strides: %d", a.strides);
    if (a.padding && strcmp(a.padding, "valid")) kc_strbuf_printf(s, ", padding: %s", a.padding);
    if (a.activation) kc_strbuf_printf(s, ", activation: %s", a.activation);
    if (a.no_bias) kc_strbuf_puts(s, ", use_bias: false");
    if (a.initializer) kc_strbuf_printf(s, ", %s: %s", init_key, a.initializer);
}

static int strides_of(kc_app_conv_args a) {
    return a.strides > 1 ? a.strides : 1;
}

int kc_app_conv2d_(kc_app_builder *b, int x, const char *name, long long filters, int kernel,
                   kc_app_conv_args a) {
    kc_app_shape sh;
    if (spatial(b, x, layer_label(name, "conv2d"), kernel, strides_of(a), a.padding, filters, &sh))
        return -1;
    kc_strbuf args = {0};
    kc_strbuf_printf(&args, ", filters: %lld, kernel_size: %d", filters, kernel);
    put_conv_args(&args, a, "kernel_initializer");
    return add_node(b, "Conv2D", "conv2d", name, &x, 1, sh, &args);
}

int kc_app_depthwise_(kc_app_builder *b, int x, const char *name, int kernel, kc_app_conv_args a) {
    kc_app_shape sh;
    if (spatial(b, x, layer_label(name, "depthwise_conv2d"), kernel, strides_of(a), a.padding, 0,
                &sh))
        return -1;
    kc_strbuf args = {0};
    kc_strbuf_printf(&args, ", kernel_size: %d", kernel);
    put_conv_args(&args, a, "depthwise_initializer");
    return add_node(b, "DepthwiseConv2D", "depthwise_conv2d", name, &x, 1, sh, &args);
}

int kc_app_separable_(kc_app_builder *b, int x, const char *name, long long filters, int kernel,
                      kc_app_conv_args a) {
    kc_app_shape sh;
    if (spatial(b, x, layer_label(name, "separable_conv2d"), kernel, strides_of(a), a.padding,
                filters, &sh))
        return -1;
    kc_strbuf args = {0};
    kc_strbuf_printf(&args, ", filters: %lld, kernel_size: %d", filters, kernel);
    put_conv_args(&args, a, "depthwise_initializer");
    return add_node(b, "SeparableConv2D", "separable_conv2d", name, &x, 1, sh, &args);
}

/* Layers that keep their input's shape. */
static int same_shape(kc_app_builder *b, int x, const char *cls, const char *base, const char *name,
                      kc_strbuf *args) {
    const kc_app_shape *in = input_shape(b, x);
    if (!in) {
        kc_strbuf_free(args);
        return -1;
    }
    return add_node(b, cls, base, name, &x, 1, *in, args);
}

int kc_app_bn_(kc_app_builder *b, int x, const char *name, kc_app_bn_args a) {
    kc_strbuf args = {0};
    if (a.axis) kc_strbuf_printf(&args, ", axis: %d", a.axis);
    if (a.epsilon > 0) put_num(&args, "epsilon", a.epsilon);
    if (a.momentum > 0) put_num(&args, "momentum", a.momentum);
    return same_shape(b, x, "BatchNormalization", "batch_normalization", name, &args);
}

int kc_app_activation(kc_app_builder *b, int x, const char *name, const char *activation) {
    kc_strbuf args = {0};
    kc_strbuf_printf(&args, ", activation: %s", activation);
    return same_shape(b, x, "Activation", "activation", name, &args);
}

int kc_app_relu(kc_app_builder *b, int x, const char *name, double max_value) {
    kc_strbuf args = {0};
    put_num(&args, "max_value", max_value);
    return same_shape(b, x, "ReLU", "re_lu", name, &args);
}

int kc_app_dropout(kc_app_builder *b, int x, const char *name, double rate) {
    kc_strbuf args = {0};
    put_num(&args, "rate", rate);
    return same_shape(b, x, "Dropout", "dropout", name, &args);
}

int kc_app_rescaling(kc_app_builder *b, int x, const char *name, double scale) {
    kc_strbuf args = {0};
    put_num(&args, "scale", scale);
    return same_shape(b, x, "Rescaling", "rescaling", name, &args);
}

int kc_app_normalization(kc_app_builder *b, int x, const char *name, int axis) {
    kc_strbuf args = {0};
    kc_strbuf_printf(&args, ", axis: %d", axis);
    return same_shape(b, x, "Normalization", "normalization", name, &args);
}

int kc_app_zero_pad(kc_app_builder *b, int x, const char *name, int top, int bottom, int left,
                    int right) {
    const kc_app_shape *in = input_shape(b, x);
    if (!in) return -1;
    kc_app_shape sh = *in;
    sh.d[0] += top + bottom;
    sh.d[1] += left + right;
    kc_strbuf args = {0};
    kc_strbuf_printf(&args, ", padding: [[%d, %d], [%d, %d]]", top, bottom, left, right);
    return add_node(b, "ZeroPadding2D", "zero_padding2d", name, &x, 1, sh, &args);
}

static int pool2d(kc_app_builder *b, int x, const char *cls, const char *base, const char *name,
                  int pool, int strides, const char *padding) {
    kc_app_shape sh;
    if (spatial(b, x, layer_label(name, base), pool, strides ? strides : pool, padding, 0, &sh))
        return -1;
    kc_strbuf args = {0};
    kc_strbuf_printf(&args, ", pool_size: %d", pool);
    if (strides) kc_strbuf_printf(&args, ", strides: %d", strides);
    if (padding && strcmp(padding, "valid")) kc_strbuf_printf(&args, ", padding: %s", padding);
    return add_node(b, cls, base, name, &x, 1, sh, &args);
}

int kc_app_max_pool(kc_app_builder *b, int x, const char *name, int pool, int strides,
                    const char *padding) {
    return pool2d(b, x, "MaxPooling2D", "max_pooling2d", name, pool, strides, padding);
}

int kc_app_avg_pool(kc_app_builder *b, int x, const char *name, int pool, int strides) {
    return pool2d(b, x, "AveragePooling2D", "average_pooling2d", name, pool, strides, NULL);
}

/* Layers whose output is one vector of n values. */
static int to_vector(kc_app_builder *b, int x, const char *cls, const char *base, const char *name,
                     long long n, kc_strbuf *args) {
    kc_app_shape sh = {.rank = 1, .d = {n}};
    return add_node(b, cls, base, name, &x, 1, sh, args);
}

static int global_pool(kc_app_builder *b, int x, const char *cls, const char *base,
                       const char *name) {
    const kc_app_shape *in = input_shape(b, x);
    if (!in) return -1;
    kc_strbuf args = {0};
    return to_vector(b, x, cls, base, name, in->d[in->rank - 1], &args);
}

int kc_app_global_avg_pool(kc_app_builder *b, int x, const char *name) {
    return global_pool(b, x, "GlobalAveragePooling2D", "global_average_pooling2d", name);
}

int kc_app_global_max_pool(kc_app_builder *b, int x, const char *name) {
    return global_pool(b, x, "GlobalMaxPooling2D", "global_max_pooling2d", name);
}

int kc_app_flatten(kc_app_builder *b, int x, const char *name) {
    const kc_app_shape *in = input_shape(b, x);
    if (!in) return -1;
    long long n = 1;
    for (int i = 0; i < in->rank; i++)
        n *= in->d[i]; /* each size is bounded by the input's checks */
    kc_strbuf args = {0};
    return to_vector(b, x, "Flatten", "flatten", name, n, &args);
}

int kc_app_dense(kc_app_builder *b, int x, const char *name, long long units,
                 const char *activation, const char *initializer) {
    if (!input_shape(b, x)) return -1;
    kc_strbuf args = {0};
    kc_strbuf_printf(&args, ", units: %lld", units);
    if (activation && *activation) kc_strbuf_printf(&args, ", activation: %s", activation);
    if (initializer) kc_strbuf_printf(&args, ", kernel_initializer: %s", initializer);
    return to_vector(b, x, "Dense", "dense", name, units, &args);
}

int kc_app_reshape(kc_app_builder *b, int x, const char *name, long long rows, long long cols,
                   long long channels) {
    if (!input_shape(b, x)) return -1;
    kc_app_shape sh = {.rank = 3, .d = {rows, cols, channels}};
    kc_strbuf args = {0};
    kc_strbuf_printf(&args, ", target_shape: [%lld, %lld, %lld]", rows, cols, channels);
    return add_node(b, "Reshape", "reshape", name, &x, 1, sh, &args);
}

/* Two inputs: Add and Multiply broadcast, Concatenate joins the channels. */
static int merge(kc_app_builder *b, const char *cls, const char *base, const char *name, int x,
                 int y, int concat, kc_strbuf *args) {
    const kc_app_shape *p = input_shape(b, x), *q = input_shape(b, y);
    if (!p || !q) {
        kc_strbuf_free(args);
        return -1;
    }
    if (p->rank != q->rank) {
        kc_strbuf_free(args);
        return kc_app_fail(b, KC_ERUNTIME, "layer '%s': inputs of different ranks",
                           layer_label(name, base));
    }
    kc_app_shape sh = *p;
    for (int i = 0; i < sh.rank; i++)
        sh.d[i] = q->d[i] > sh.d[i] ? q->d[i] : sh.d[i];
    if (concat) sh.d[sh.rank - 1] = p->d[sh.rank - 1] + q->d[sh.rank - 1];
    int in[2] = {x, y};
    return add_node(b, cls, base, name, in, 2, sh, args);
}

int kc_app_add(kc_app_builder *b, const char *name, int x, int y) {
    kc_strbuf args = {0};
    return merge(b, "Add", "add", name, x, y, 0, &args);
}

int kc_app_multiply(kc_app_builder *b, const char *name, int x, int y) {
    kc_strbuf args = {0};
    return merge(b, "Multiply", "multiply", name, x, y, 0, &args);
}

int kc_app_concat(kc_app_builder *b, const char *name, int axis, int x, int y) {
    kc_strbuf args = {0};
    kc_strbuf_printf(&args, ", axis: %d", axis);
    return merge(b, "Concatenate", "concatenate", name, x, y, 1, &args);
}

int kc_app_pooling(kc_app_builder *b, int x, const kc_app_opts *o, const char *avg_name,
                   const char *max_name) {
    if (o->pooling == KC_APP_POOL_AVG) return kc_app_global_avg_pool(b, x, avg_name);
    if (o->pooling == KC_APP_POOL_MAX) return kc_app_global_max_pool(b, x, max_name);
    return x;
}

int kc_app_predictions(kc_app_builder *b, int x, const kc_app_opts *o, const char *initializer) {
    return kc_app_dense(b, x, "predictions", o->classes, o->classifier_activation, initializer);
}

void kc_app_correct_pad(const kc_app_builder *b, int x, int kernel, int pad[4]) {
    const kc_app_shape *s = kc_app_shape_of(b, x);
    int c = kernel / 2;
    int adjust_r = s && s->rank == 3 ? 1 - (int)(s->d[0] % 2) : 1;
    int adjust_c = s && s->rank == 3 ? 1 - (int)(s->d[1] % 2) : 1;
    pad[0] = c - adjust_r;
    pad[1] = c;
    pad[2] = c - adjust_c;
    pad[3] = c;
}

/* ------------------------------------------------------------ the order */

/* Keras's _build_map: a depth-first walk from the output through each
 * layer's inputs in order; a layer's index is when it was first reached,
 * and `post` lists the layers inputs first. */
static void walk(kc_app_builder *b, int id, int *post, int *npost, int *counter) {
    app_node *nd = &b->nodes[id];
    if (nd->seen) return;
    nd->seen = 1;
    nd->index = (*counter)++;
    for (int i = 0; i < nd->nin; i++)
        walk(b, nd->in[i], post, npost, counter);
    post[(*npost)++] = id;
}

typedef struct ranked {
    int depth, index, id;
} ranked;

static int by_depth_then_index(const void *pa, const void *pb) {
    const ranked *a = pa, *c = pb;
    if (a->depth != c->depth) return a->depth > c->depth ? -1 : 1;
    return a->index < c->index ? -1 : a->index > c->index;
}

/* map_graph: a layer's depth is the longest path from it to the output;
 * Functional.layers lists the deepest first, ties in walk order. */
static int keras_order(kc_app_builder *b, int out, int *order, ranked *r) {
    int npost = 0, counter = 0;
    for (int i = 0; i < b->n; i++)
        b->nodes[i].seen = b->nodes[i].depth = 0;
    walk(b, out, order, &npost, &counter);
    for (int k = npost - 1; k >= 0; k--) {
        const app_node *nd = &b->nodes[order[k]];
        for (int i = 0; i < nd->nin; i++) {
            app_node *p = &b->nodes[nd->in[i]];
            if (p->depth < nd->depth + 1) p->depth = nd->depth + 1;
        }
    }
    for (int k = 0; k < npost; k++)
        r[k] = (ranked){b->nodes[order[k]].depth, b->nodes[order[k]].index, order[k]};
    qsort(r, (size_t)npost, sizeof *r, by_depth_then_index);
    for (int k = 0; k < npost; k++)
        order[k] = r[k].id;
    return npost;
}

static void put_layer(kc_strbuf *s, const kc_app_builder *b, const app_node *nd, int prev) {
    if (!nd->cls) {
        kc_strbuf_printf(s, "    - Input: {name: %s, shape: [%lld, %lld, %lld]}\n", nd->name,
                         nd->shape.d[0], nd->shape.d[1], nd->shape.d[2]);
        return;
    }
    kc_strbuf_printf(s, "    - %s: {name: %s%s", nd->cls, nd->name, nd->args);
    if (nd->nin == 1 && nd->in[0] != prev)
        kc_strbuf_printf(s, ", inputs: %s", b->nodes[nd->in[0]].name);
    if (nd->nin > 1) {
        kc_strbuf_puts(s, ", inputs: [");
        for (int i = 0; i < nd->nin; i++)
            kc_strbuf_printf(s, "%s%s", i ? ", " : "", b->nodes[nd->in[i]].name);
        kc_strbuf_putc(s, ']');
    }
    kc_strbuf_puts(s, "}\n");
}

int kc_app_builder_write(kc_app_builder *b, int out, kc_strbuf *s, kc_error *e) {
    if (b->failed || out < 0 || out >= b->n) {
        if (!b->failed) kc_app_fail(b, KC_ERUNTIME, "the model has no output layer");
        *e = b->err;
        return e->code;
    }
    int *order = malloc((size_t)b->n * sizeof *order);
    ranked *r = malloc((size_t)b->n * sizeof *r);
    if (!order || !r) {
        free(order);
        free(r);
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    int n = keras_order(b, out, order, r);
    free(r);
    kc_strbuf_printf(s, "model:\n  name: %s\n  outputs: [%s]\n  layers:\n", b->model_name,
                     b->nodes[out].name);
    for (int k = 0; k < n; k++)
        put_layer(s, b, &b->nodes[order[k]], k ? order[k - 1] : -1);
    free(order);
    return s->failed ? kc_fail(e, KC_ERUNTIME, "out of memory") : KC_OK;
}
