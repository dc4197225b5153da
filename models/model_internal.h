/* What the model's files share: models/model.c (parsing), model_plan.c
 * (buffers), model_exec.c (the passes) and model_order.c (Keras's order).
 * The backward plan is fixed once by kc_model_plan so that a backward pass
 * only reads it. */
#ifndef KC_MODEL_INTERNAL_H
#define KC_MODEL_INTERNAL_H

#include "models/model.h"

/* How backward runs one layer node. */
typedef struct kc_backward_step {
    kc_buf gz;                      /* activation-backward result, or null */
    kc_buf dx[KC_LAYER_MAX_INPUTS]; /* where argument j's gradient goes (null: none) */
    char add[KC_LAYER_MAX_INPUTS];  /* dx[j] is scratch to add into the producer's g */
    int output;                     /* model output index, or -1 */
    unsigned written;               /* several tensors: those a consumer's gradient
                                     * lands in directly (the others are zeroed) */
    int first_of_layer;             /* the layer's first node in backward order */
} kc_backward_step;

struct kc_backward_plan {
    kc_backward_step *steps; /* per node (unused for Inputs) */
};

static inline int kc_layer_has_activation(const kc_layer *l) {
    return l->activation.act != KC_ACT_LINEAR;
}

/* Elements of node id's outputs (all its tensors) for `batch` samples. */
static inline size_t kc_model_node_numel(const kc_model *m, int id, int batch) {
    size_t n = 0;
    for (int t = 0; t < m->nodes[id].ntensors; t++)
        n += (size_t)kc_shape_numel(kc_model_tensor_shape(m, id, t));
    return n * (size_t)batch;
}

/* "lstm", "lstm[1]", "lstm[0][2]", "image": how references name tensor t of node id. */
const char *kc_model_tensor_label(const kc_model *m, int id, int t, char *buf, size_t n);

/* Decides which tensors carry a mask (models/model_graph.c); after shapes. */
int kc_model_decide_masks(kc_model *m, kc_error *e);

/* How many nodes call layer l. */
int kc_model_count_calls(const kc_model *m, const kc_layer *l);

#endif
