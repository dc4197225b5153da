/* The layer interface. A layer class registers its Keras name and a table of
 * functions; the model owns buffers and calls them. Layers compute only
 * through the backend table (core/backend.h).
 *
 * Shapes here are per sample (no batch axis). Buffers passed to forward and
 * backward hold ex->batch samples, row-major, channels-last.
 *
 * A layer's `activation` (Dense(activation="relu"), Activation("tanh"), ...)
 * is applied by the model after forward and undone before backward, so a
 * layer's own forward writes the pre-activation output and its backward
 * receives the gradient with respect to it. */
#ifndef KC_LAYER_H
#define KC_LAYER_H

#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "models/activations.h"
#include "models/args.h"
#include "models/initializers.h"
#include "models/regularizers.h"

#define KC_LAYER_MAX_PARAMS 8
/* Most tensors one call of a layer takes (merge layers take several). */
#define KC_LAYER_MAX_INPUTS 32
/* Most tensors one call of a layer returns (an LSTM with return_state: 3;
 * a Bidirectional one: 5). */
#define KC_LAYER_MAX_OUTPUTS 8

typedef struct kc_param {
    const char *name; /* "kernel", "bias" - Keras's variable names */
    kc_shape shape;   /* Keras's layout: Dense (in, out), Conv2D (kh, kw, in, out) */
    kc_initializer init;
    int trainable;
    kc_regularizer regularizer; /* kernel_regularizer / bias_regularizer */
    kc_constraint constraint;   /* kernel_constraint / bias_constraint */
    int keras_int64;            /* Keras keeps it as int64 (8 bytes in summaries) */
    kc_buf value;               /* device memory, assigned by the model */
    kc_buf grad;                /* device memory, assigned by the model; null when not trained */
} kc_param;

/* What one forward/backward call runs with. */
typedef struct kc_exec {
    kc_device *dev;
    int batch;      /* samples in this call (<= the planned maximum) */
    int training;   /* dropout on, etc. */
    uint64_t seed;  /* the run's seed */
    uint64_t step;  /* global training step, for per-step random streams */
    int accumulate; /* backward adds into param grads instead of overwriting */
    kc_buf ws;      /* device scratch of workspace_bytes(), shared by all layers */
    /* Masks, as Keras's: one float per step of axis 0 of the per-sample shape
     * (1 keep, 0 masked), `batch` rows. `mask` is the mask of the call's
     * input (argument 0; a multi-input layer gets the AND of its inputs'
     * masks), KC_BUF_NULL when it carries none. `mask_out` is where a layer
     * whose mask_rule is KC_MASK_PRODUCE writes its output's mask (forward
     * only). The model sets both for each call. */
    kc_buf mask;
    kc_buf mask_out;
    /* Optional, for profiling: called after each layer's forward (phase 0,
     * activation included) and backward (phase 1) with the layer's index. */
    void (*on_layer)(void *ctx, int layer, int phase);
    void *hook_ctx;
} kc_exec;

typedef struct kc_layer kc_layer;
typedef struct kc_layer_class kc_layer_class;

/* Where Keras 3 keeps a layer's variables in a .weights.h5 file: groups
 * below the layer's own (layers/<key>/), each a `vars` group whose `name`
 * attribute names the object and whose datasets "0", "1", ... are some of
 * the layer's params in Keras's order. An LSTM has two: "vars" (its own,
 * empty) and "cell/vars" (the lstm_cell's kernel, recurrent_kernel, bias). */
typedef struct kc_keras_vars {
    char path[160]; /* "vars", "cell/vars", "forward_layer/cell/vars", ... */
    char name[128]; /* the `name` attribute: "lstm", "lstm_cell", ... */
    int nparams;
    int params[KC_LAYER_MAX_PARAMS]; /* indices into l->params */
} kc_keras_vars;

/* The data a layer adapts on (kc_layer_class.adapt), batch by batch: next
 * sets *x to `*rows` samples of the layer's input, rows x numel(in_shape)
 * host floats valid until the next call, and *rows to 0 after the last. */
typedef struct kc_adapt_source {
    int (*next)(void *ctx, const float **x, int64_t *rows, kc_error *e);
    void *ctx;
} kc_adapt_source;

/* What a layer does with masks (Keras's supports_masking / compute_mask). */
typedef enum kc_mask_rule {
    KC_MASK_NONE = 0,          /* takes none: a masked input is a config error naming the layer */
    KC_MASK_PROPAGATE,         /* ignores it; output 0 carries the input's mask unchanged */
    KC_MASK_CONSUME,           /* reads ex->mask; its outputs carry no mask */
    KC_MASK_CONSUME_PROPAGATE, /* reads ex->mask; output 0 carries it unchanged */
    KC_MASK_PRODUCE,           /* writes output 0's own mask to ex->mask_out (Embedding, Masking) */
} kc_mask_rule;

/* mask_rule functions for classes whose rule does not depend on arguments
 * (models/model_graph.c): Keras's supports_masking with the mask passed on,
 * and supports_masking with no output mask. */
kc_mask_rule kc_mask_propagate(const kc_layer *l);
kc_mask_rule kc_mask_consume(const kc_layer *l);

struct kc_layer {
    const kc_layer_class *cls;
    char name[128];      /* Keras name: user's `name:` or automatic (conv2d_1) */
    const kc_node *node; /* where the layer was declared, for errors */
    int index;           /* position in the model */
    int trainable;
    kc_activation activation; /* KC_ACT_LINEAR when the layer has none */
    kc_regularizer activity_regularizer;
    kc_shape in_shape, out_shape; /* in_shape is in_shapes[0]; out_shape is out_shapes[0] */
    /* Tensors one call returns. A layer with several outputs (an RNN with
     * return_state) sets noutputs and out_shapes in build; kc_layer_build
     * sets noutputs 1 and out_shapes[0] = out_shape for the others. Forward
     * writes the outputs one after another into y (output k starts after
     * batch * numel(out_shapes[j]) floats for each j < k) and backward gets dy
     * in the same layout (zeros for outputs nothing reads). A layer with
     * several outputs has no `activation` (KC_ACT_LINEAR). */
    int noutputs;
    kc_shape out_shapes[KC_LAYER_MAX_OUTPUTS];
    int ninputs; /* tensors per call: 1, or several for merge layers */
    kc_shape in_shapes[KC_LAYER_MAX_INPUTS];
    kc_param params[KC_LAYER_MAX_PARAMS];
    int nparams;
    void *state; /* cls->state_size bytes, zeroed: the class's own fields */
    kc_buf buf;  /* buffer_bytes() of device memory kept from forward to backward */
};

struct kc_layer_class {
    const char *class_name;     /* "Conv2D" */
    const char *base_name;      /* "conv2d": automatic names are base_name, base_name_1, ... */
    const char *const *aliases; /* other accepted class names (NULL-terminated) or NULL */
    size_t state_size;
    /* Reads the class's arguments (common ones - name, trainable, dtype,
     * input_shape - are read by the model). Sets l->activation if the class
     * has one. */
    int (*configure)(kc_layer *l, kc_args *a, kc_error *e);
    /* l->in_shape is set: check it, set l->out_shape and declare l->params.
     * Shape errors name the layer and both shapes. */
    int (*build)(kc_layer *l, kc_error *e);
    /* Device bytes kept from forward to backward (pool argmax, dropout mask). NULL = 0. */
    size_t (*buffer_bytes)(const kc_layer *l, int max_batch, const kc_device *d);
    /* Scratch bytes needed during one call (im2col ...). NULL = 0. */
    size_t (*workspace_bytes)(const kc_layer *l, int max_batch, const kc_device *d);
    /* y = layer(x) before activation. Returns the device's status. */
    int (*forward)(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y);
    /* Given dy (gradient of the pre-activation output), writes param grads
     * (added when ex->accumulate) and dx; dx is null (KC_BUF_NULL) when the input needs no
     * gradient. x and y are the forward's input and pre-activation output. */
    int (*backward)(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx);
    /* Forward FLOPs per sample (2 per multiply-add). NULL = 0. */
    int64_t (*flops)(const kc_layer *l);
    /* What the built layer does with masks; NULL = KC_MASK_NONE. */
    kc_mask_rule (*mask_rule)(const kc_layer *l);
    /* Stateful layers (RNNs with stateful: true) keep state across calls in
     * their own device memory; this zeroes it (Keras's reset_states), at the
     * start of every epoch and before evaluate / predict. NULL = no state. */
    int (*reset_states)(kc_layer *l, kc_device *d);

    /* ---- layers that take several tensors per call (Add, Concatenate, Dot ...) ----
     * Such a class sets min_inputs >= 1 and the *_n functions instead of build,
     * forward and backward; max_inputs 0 means up to KC_LAYER_MAX_INPUTS. Other
     * classes leave these zero and take exactly one tensor. */
    int min_inputs, max_inputs;
    /* l->in_shapes[0 .. l->ninputs) are set: check them (errors name the layer and
     * every shape), set l->out_shape and declare l->params. */
    int (*build_n)(kc_layer *l, kc_error *e);
    /* y = layer(x[0], ..., x[ninputs - 1]) before activation. */
    int (*forward_n)(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y);
    /* Writes (overwrites) dx[i] for every i whose dx[i] is not null, and the param
     * grads as backward does. The dx[i] are distinct buffers. */
    int (*backward_n)(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y, kc_buf dy,
                      const kc_buf *dx);

    /* Keras weight files: the layer's variable groups (kc_keras_vars), at
     * most max of them; returns the count. NULL: one group "vars" named as
     * the layer, trainable params first, as Keras saves a plain layer. */
    int (*keras_vars)(const kc_layer *l, kc_keras_vars *out, int max);

    /* Preprocessing layers whose weights are statistics of the data (Keras's
     * adapt): before training starts, pulls the training data that reaches
     * the layer from `src` and sets its weights from it. A layer with nothing
     * to adapt (statistics given) returns without pulling. NULL: the class
     * never adapts. */
    int (*adapt)(kc_layer *l, kc_device *d, const kc_adapt_source *src, kc_error *e);
};

/* Registry: every class, NULL-terminated, and lookup by class name or alias. */
extern const kc_layer_class *const kc_layer_classes[];
const kc_layer_class *kc_layer_class_find(const char *name);

/* Creates a layer of class `cls`, reading class arguments from `args` (which
 * the caller finishes). Name and index are set by the caller. */
int kc_layer_create(const kc_layer_class *cls, kc_args *args, const kc_node *where, kc_layer **out,
                    kc_error *e);
/* Sets in_shape and calls build. */
int kc_layer_build(kc_layer *l, const kc_shape *in_shape, kc_error *e);
/* Sets in_shapes[0 .. n) and builds: build_n for multi-input classes, build for
 * the others (which take n == 1). The caller checks n against the class's range. */
int kc_layer_build_n(kc_layer *l, const kc_shape *in_shapes, int n, kc_error *e);
/* How many tensors one call takes: [*min, *max]. */
void kc_layer_class_arity(const kc_layer_class *cls, int *min, int *max);
static inline int kc_layer_class_is_multi(const kc_layer_class *cls) {
    return cls->min_inputs > 0;
}
void kc_layer_free(kc_layer *l);
/* The layer's Keras variable groups (its class's keras_vars, or the plain
 * layer's single "vars" group): at most max; returns the count. */
int kc_layer_keras_vars(const kc_layer *l, kc_keras_vars *out, int max);
/* The plain layer's group into *out: `path`, named `name`, l's params
 * trainable first. */
void kc_keras_vars_plain(const kc_layer *l, const char *path, const char *name, kc_keras_vars *out);
int64_t kc_layer_param_count(const kc_layer *l, int trainable_only);

/* Helpers for layer code. */
static inline kc_param *kc_layer_add_param(kc_layer *l, const char *name, kc_shape shape,
                                           const kc_initializer *init, int trainable) {
    kc_param *p = &l->params[l->nparams++];
    p->name = name;
    p->shape = shape;
    p->init = *init;
    p->trainable = trainable;
    p->keras_int64 = 0;
    p->value = p->grad = KC_BUF_NULL;
    return p;
}

#endif
