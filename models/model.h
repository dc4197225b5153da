/* A model: the layers parsed from the `model:` section and the graph of their
 * calls, its shapes and parameters, and - once planned on a backend - every
 * buffer a training step needs, allocated once.
 *
 * A Sequential stack is the simple case of the graph: each layer is called
 * once, on the entry before it. In general (Keras's functional API) a node is
 * one call of a layer on the outputs of earlier nodes; a layer called several
 * times (a shared layer) has several nodes and one set of weights. Nodes are
 * stored in the order of the `layers:` list, which is a topological order. */
#ifndef KC_MODEL_H
#define KC_MODEL_H

#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/tensor.h"
#include "models/layer.h"
#include "models/yaml.h"

/* Most inputs and outputs a model has. */
#define KC_MODEL_MAX_IO 16

/* One call of a layer (or one Input) in the graph. */
typedef struct kc_model_node {
    kc_layer *layer; /* NULL for an Input */
    int input;       /* the model input it is, when layer is NULL */
    int call;        /* Keras's node index: which call of the layer this is */
    int nin;
    int in[KC_LAYER_MAX_INPUTS];   /* producer nodes, in argument order */
    int in_t[KC_LAYER_MAX_INPUTS]; /* which tensor of each producer (0 for most) */
    int ntensors;                  /* tensors the node returns (layer->noutputs; 1 for an Input) */
    kc_shape shape;                /* output shape per sample (tensor 0's) */
    const kc_node *where;          /* the entry that made it, for errors */
    int nconsumers;                /* how many (node, argument) pairs read it */
    /* Masks (Keras's _keras_mask), decided by kc_model_parse: whether
     * tensor 0 carries one, and how it is made: */
    int masked;
    int mask_src;  /* KC_MASK_SRC_*: own buffer or another node's */
    int mask_from; /* for KC_MASK_SRC_ALIAS: the node whose mask it is */
    int in_masks;  /* how many of the arguments carry a mask */
    /* ---- after kc_model_plan ---- */
    kc_buf z, y;    /* pre-activation and output (one buffer without activation);
                     * several tensors lie one after another (models/layer.h) */
    kc_buf g;       /* gradient w.r.t. y during backward */
    kc_buf buf;     /* the layer's buffer_bytes() for this call */
    kc_buf mask;    /* tensor 0's mask (max_batch x steps floats), or null */
    kc_buf in_mask; /* the call's ex.mask: the AND of its arguments' masks, or null */
} kc_model_node;

/* Where a node's mask comes from. */
enum {
    KC_MASK_SRC_NONE = 0,
    KC_MASK_SRC_ALIAS,   /* tensor 0 passes the input's mask on unchanged */
    KC_MASK_SRC_PRODUCE, /* the layer writes it (ex.mask_out) */
    KC_MASK_SRC_OR,      /* a merge layer: the OR of its arguments' masks (Keras) */
};

typedef struct kc_model_input {
    char name[128]; /* the Input's name (Keras: input_layer, input_layer_1, ...) */
    kc_shape shape; /* per sample */
    const kc_node *where;
    int node;
    kc_buf x; /* after kc_model_plan: where the host uploads the batch */
} kc_model_input;

typedef struct kc_model_output {
    char name[128]; /* the output layer's name: keys of losses and logs; a second
                       output from the same layer is named `layer[node][tensor]` */
    int node;
    int tensor; /* which of the node's tensors */
    const kc_node *where;
    kc_buf dy; /* after kc_model_plan with training: gradient of the loss */
} kc_model_output;

typedef struct kc_model {
    char name[128];
    const kc_node *node;  /* the model: section */
    int functional;       /* written with graph syntax: Keras shows it as a Functional model */
    kc_shape input_shape; /* input 0's, per sample */
    const kc_node *input_node;
    kc_layer **layers; /* each layer once, in declaration order */
    int nlayers;
    kc_model_node *nodes;
    int nnodes;
    kc_model_input inputs[KC_MODEL_MAX_IO];
    int ninputs;
    kc_model_output outputs[KC_MODEL_MAX_IO];
    int noutputs;
    /* The first layer that drops a mask it was given, as Keras warns of
     * ("... does not support masking ..."), or "". */
    char mask_dropped[400];

    /* ---- after kc_model_plan ---- */
    kc_device *dev; /* the device it is planned on (not owned) */
    int max_batch;
    int training;         /* planned with gradient buffers */
    kc_buf x;             /* input 0's batch (device) */
    kc_buf *z, *y;        /* per layer: its first call's pre-activation and output */
    kc_buf values, grads; /* all parameters, contiguous (kc_model_params order) */
    int64_t nvalues;
    kc_buf ws;
    size_t ws_bytes;
    /* one double on the device: the activity regularizer penalties of the
     * last forward pass (zeroed by each forward, read by the caller) */
    kc_buf activity;
    int has_activity; /* some layer has an activity regularizer */
    kc_buf arena;     /* activations and gradients */
    kc_buf masks;     /* every planned mask */
    struct kc_backward_plan *bplan;
    int cur_batch; /* the batch of the last forward pass */
} kc_model;

/* Parses `model:` (a Sequential stack or a graph: README, "Layer graphs").
 * Automatic names follow Keras (conv2d, conv2d_1, ...); shapes are propagated
 * and every layer built, so shape and graph errors come out here with
 * file:line:column. */
int kc_model_parse(kc_node *model_node, const char *default_name, kc_model **out, kc_error *e);
/* Frees the model; a planned model's device must still be open. */
void kc_model_free(kc_model *m);

int64_t kc_model_param_count(const kc_model *m, int trainable_only);
/* Output 0's shape per sample. */
const kc_shape *kc_model_output_shape(const kc_model *m);
/* Per-sample shape of tensor t of node id. */
static inline const kc_shape *kc_model_tensor_shape(const kc_model *m, int id, int t) {
    const kc_model_node *nd = &m->nodes[id];
    return nd->layer ? &nd->layer->out_shapes[t] : &nd->shape;
}
static inline const kc_shape *kc_model_output_shape_n(const kc_model *m, int k) {
    return kc_model_tensor_shape(m, m->outputs[k].node, m->outputs[k].tensor);
}
/* Whether output k carries a mask (kc_model_output_mask after a forward pass). */
static inline int kc_model_output_masked(const kc_model *m, int k) {
    return m->outputs[k].tensor == 0 && m->nodes[m->outputs[k].node].masked;
}
int64_t kc_model_flops(const kc_model *m); /* forward FLOPs per sample */
/* Index of the model input or output with that name, or -1. */
int kc_model_input_index(const kc_model *m, const char *name);
int kc_model_output_index(const kc_model *m, const char *name);

/* Allocates every buffer for batches up to max_batch; `training` adds the
 * gradient buffers. Parameters are allocated here too (uninitialised until
 * kc_model_init_weights or a checkpoint load). */
int kc_model_plan(kc_model *m, kc_device *d, int max_batch, int training, kc_error *e);
/* Frees every device buffer of the plan (m->dev must still be open) and
 * returns the model to its parsed state; a no-op when it is not planned.
 * kc_model_free calls it; a session calls it before closing its device,
 * since the config that owns the model is freed after the session. */
void kc_model_unplan(kc_model *m);
/* Draws every parameter from its initializer with the run's seed. */
int kc_model_init_weights(kc_model *m, uint64_t seed, kc_error *e);

/* Parameter iteration in a fixed order (layer order, then each layer's
 * params): names are "layer/param" (Keras's weight paths). A shared layer's
 * weights appear once. */
typedef struct kc_param_ref {
    char name[200];
    kc_layer *layer;
    kc_param *param;
} kc_param_ref;
int kc_model_params(const kc_model *m, kc_param_ref *out, int max); /* returns count */

/* Forward pass of ex->batch samples already in every input's x; returns the
 * device's status. Each output's post-activation is in kc_model_output_y, its
 * pre-activation in kc_model_output_z (for a single-output stack also
 * m->z[nlayers - 1]). */
int kc_model_forward(kc_model *m, const kc_exec *ex);
/* Output k's buffers after a forward pass (at that pass's batch size). */
kc_buf kc_model_output_y(const kc_model *m, int k);
kc_buf kc_model_output_z(const kc_model *m, int k);
/* Output k's mask ((batch, steps) floats, 1 keep) after a forward pass, or
 * KC_BUF_NULL when it carries none. */
kc_buf kc_model_output_mask(const kc_model *m, int k);
/* Tensor t of node id for `batch` samples: where it starts in the node's y
 * (in its z: before the activation), and its element count. Every node has
 * its own z and y, which hold the last forward pass's values until the next
 * one, so that any tensor can be read after a pass. */
kc_buf kc_model_tensor_y(const kc_model *m, int id, int t, int batch);
kc_buf kc_model_tensor_z(const kc_model *m, int id, int t, int batch);
size_t kc_model_tensor_numel(const kc_model *m, int id, int t, int batch);
/* Zeroes the state of every stateful layer (Keras's reset_states): fit calls
 * it at the start of each epoch, evaluate and predict before they run. */
int kc_model_reset_states(kc_model *m);
/* Where the caller puts the gradient of the loss w.r.t. output k (batch x
 * output size) before kc_model_backward. */
static inline kc_buf kc_model_dy_n(kc_model *m, int k) {
    return m->outputs[k].dy;
}
static inline kc_buf kc_model_dy(kc_model *m) {
    return m->outputs[0].dy;
}
/* Backward from the gradients in every kc_model_dy_n() - w.r.t. the outputs,
 * or, where dy_is_preactivation[k], w.r.t. output k's pre-activation. Writes
 * every parameter gradient (a shared layer's gradients add up over its calls;
 * with ex->accumulate they add to what the grads already hold). Returns the
 * device's status. */
int kc_model_backward_n(kc_model *m, const kc_exec *ex, const int *dy_is_preactivation);
/* The same with one flag for every output. */
int kc_model_backward(kc_model *m, const kc_exec *ex, int dy_is_preactivation);

/* ---- tensors read in place of the outputs (models/model_select.c) ---- */

/* Tensor `tensor` of node `node`, before its activation where `pre`; `name`
 * labels it as references do ("dense", "enc[1]", "lstm[0][2]"). */
typedef struct kc_model_tensor {
    char name[160];
    int node, tensor, pre;
} kc_model_tensor;

/* Appends to out[*n ..] (at most max in all) the tensors `ref` names, as
 * Keras's layer.output: "NAME" every tensor of the layer's one call (a layer
 * called several times needs "NAME[node]"), "NAME[node]" every tensor of
 * that call, "NAME[node][tensor]" one; an Input's name gives its values.
 * Errors (KC_ECONFIG) do not repeat ref; an unknown name gets the closest. */
int kc_model_find_tensors(const kc_model *m, const char *ref, kc_model_tensor *out, int max, int *n,
                          kc_error *e);
/* Output k before its final activation, named as the output: the output
 * layer's pre-activation when it has an `activation`; the input of an output
 * that is an activation layer (Activation, Softmax, ReLU, LeakyReLU, ELU,
 * PReLU); otherwise the output itself. */
kc_model_tensor kc_model_output_logits(const kc_model *m, int k);

/* ---- the graph as Keras shows it (summary, plot) ---- */

/* Keras's list of a functional model's operations: depth-first from the
 * outputs, grouped by depth from the inputs (Functional._operations). Each
 * entry is a layer index >= 0, or -1 - i for model input i. Returns the count
 * (ninputs + nlayers). */
int kc_model_keras_order(const kc_model *m, int *ops);
/* Keras's "sequential-like" test for summaries: one node per depth, each
 * with at most one input tensor, and no layer called twice. */
int kc_model_sequential_like(const kc_model *m);

#endif
