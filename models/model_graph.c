/* The graph's masks (Keras's _keras_mask), decided once the shapes are
 * known: which tensors carry one and where each comes from. A layer's
 * mask_rule says what it does with them (models/layer.h). As in Keras 3:
 * - a layer that does not support masking drops the mask (Keras warns;
 *   the model keeps the first such layer in mask_dropped);
 * - a merge layer's output is masked only when every input is, with the OR
 *   of their masks (base_merge.compute_mask);
 * - a layer with several inputs passes on the mask of its first
 *   (Layer.__call__'s previous_mask), and only its first output carries it
 *   (RNN.compute_mask gives the states none). */
#include <stdio.h>
#include <string.h>

#include "models/model_internal.h"

static kc_mask_rule rule_of(const kc_layer *l) {
    return l->cls->mask_rule ? l->cls->mask_rule(l) : KC_MASK_NONE;
}

/* Whether argument j of node nd carries a mask. */
static int arg_masked(const kc_model *m, const kc_model_node *nd, int j) {
    return nd->in_t[j] == 0 && m->nodes[nd->in[j]].masked;
}

/* The node whose mask buffer node id's tensor-0 mask is. */
static int mask_owner(const kc_model *m, int id) {
    while (m->nodes[id].mask_src == KC_MASK_SRC_ALIAS)
        id = m->nodes[id].mask_from;
    return id;
}

static int steps_of(const kc_model *m, int id) {
    return (int)m->nodes[id].shape.d[0];
}

/* Masks of several arguments are combined step by step: they must agree. */
static int check_steps(const kc_model *m, int id, int want, kc_error *e) {
    const kc_model_node *nd = &m->nodes[id];
    for (int j = 0; j < nd->nin; j++) {
        if (!arg_masked(m, nd, j) || steps_of(m, nd->in[j]) == want) continue;
        char a[160], b[160];
        return kc_node_fail(e, nd->where,
                            "layer '%s' (%s): the masks of its inputs cover different steps "
                            "('%s' %d, '%s' %d)",
                            nd->layer->name, nd->layer->cls->class_name,
                            kc_model_tensor_label(m, nd->in[0], 0, a, sizeof a), want,
                            kc_model_tensor_label(m, nd->in[j], 0, b, sizeof b),
                            steps_of(m, nd->in[j]));
    }
    return KC_OK;
}

/* A mask passed on must still fit the output's first axis. */
static int check_fits(const kc_model *m, int id, int from, kc_error *e) {
    const kc_model_node *nd = &m->nodes[id];
    if (nd->shape.rank >= 1 && steps_of(m, id) == steps_of(m, from)) return KC_OK;
    char sb[160];
    return kc_node_fail(e, nd->where,
                        "layer '%s' (%s) passes on a mask over %d steps, but its output %s has "
                        "no such first axis",
                        nd->layer->name, nd->layer->cls->class_name, steps_of(m, from),
                        kc_shape_str(&nd->shape, 1, sb, sizeof sb));
}

static void note_dropped(kc_model *m, const kc_model_node *nd) {
    if (m->mask_dropped[0]) return;
    char lb[160];
    int j = 0;
    while (j < nd->nin && !arg_masked(m, nd, j))
        j++;
    snprintf(m->mask_dropped, sizeof m->mask_dropped,
             "layer '%s' (%s) does not support masking: the mask of '%s' ends there",
             nd->layer->name, nd->layer->cls->class_name,
             kc_model_tensor_label(m, nd->in[j], 0, lb, sizeof lb));
}

static int decide_node(kc_model *m, int id, kc_error *e) {
    kc_model_node *nd = &m->nodes[id];
    nd->masked = 0;
    nd->mask_src = KC_MASK_SRC_NONE;
    nd->in_masks = 0;
    if (!nd->layer) return KC_OK;
    for (int j = 0; j < nd->nin; j++)
        nd->in_masks += arg_masked(m, nd, j);
    kc_mask_rule r = rule_of(nd->layer);
    int first = -1;
    for (int j = 0; j < nd->nin && first < 0; j++)
        if (arg_masked(m, nd, j)) first = j;
    if (nd->in_masks > 1) {
        int rc = check_steps(m, id, steps_of(m, nd->in[first]), e);
        if (rc) return rc;
    }
    switch (r) {
    case KC_MASK_NONE:
        if (nd->in_masks) note_dropped(m, nd);
        return KC_OK;
    case KC_MASK_CONSUME:
        return KC_OK;
    case KC_MASK_PRODUCE:
        if (nd->shape.rank < 1)
            return kc_node_fail(e, nd->where, "layer '%s' makes a mask but its output has no axis",
                                nd->layer->name);
        nd->masked = 1;
        nd->mask_src = KC_MASK_SRC_PRODUCE;
        return KC_OK;
    case KC_MASK_PROPAGATE:
    case KC_MASK_CONSUME_PROPAGATE:
        break;
    }
    int merge = kc_layer_class_is_multi(nd->layer->cls) && r == KC_MASK_PROPAGATE;
    if (merge && nd->nin > 1) {
        if (nd->in_masks < nd->nin) return KC_OK; /* an unmasked input: none */
        nd->masked = 1;
        nd->mask_src = KC_MASK_SRC_OR;
        return check_fits(m, id, nd->in[0], e);
    }
    if (!arg_masked(m, nd, 0)) return KC_OK; /* the first argument's mask, if any */
    nd->masked = 1;
    nd->mask_src = KC_MASK_SRC_ALIAS;
    nd->mask_from = mask_owner(m, nd->in[0]);
    return check_fits(m, id, nd->in[0], e);
}

int kc_model_decide_masks(kc_model *m, kc_error *e) {
    m->mask_dropped[0] = 0;
    for (int i = 0; i < m->nnodes; i++) {
        int rc = decide_node(m, i, e);
        if (rc) return rc;
    }
    return KC_OK;
}

/* The rules most layers share (their classes' mask_rule). */
kc_mask_rule kc_mask_propagate(const kc_layer *l) {
    (void)l;
    return KC_MASK_PROPAGATE;
}

kc_mask_rule kc_mask_consume(const kc_layer *l) {
    (void)l;
    return KC_MASK_CONSUME;
}
