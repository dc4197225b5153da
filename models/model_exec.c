/* The forward and backward passes over the planned buffers, on the device
 * the model was planned on. Each returns the device's status; after a
 * failure the rest of a pass is skipped. */
#include "core/rng.h"
#include "models/model_internal.h"

static void activation_dims(const kc_layer *l, int batch, int *rows, int *cols) {
    int64_t c = l->out_shape.rank ? l->out_shape.d[l->out_shape.rank - 1] : 1;
    *cols = (int)c;
    *rows = (int)(kc_shape_numel(&l->out_shape) / c * batch);
}

/* ------------------------------------------------------------- tensors --- */

/* Floats before tensor t in node id's y at `batch` samples. */
static size_t tensor_offset(const kc_model *m, int id, int t, int batch) {
    size_t off = 0;
    for (int k = 0; k < t; k++)
        off += kc_model_tensor_numel(m, id, k, batch);
    return off;
}

size_t kc_model_tensor_numel(const kc_model *m, int id, int t, int batch) {
    return (size_t)kc_shape_numel(kc_model_tensor_shape(m, id, t)) * (size_t)batch;
}

kc_buf kc_model_tensor_y(const kc_model *m, int id, int t, int batch) {
    return kc_buf_f(m->nodes[id].y, tensor_offset(m, id, t, batch));
}

kc_buf kc_model_tensor_z(const kc_model *m, int id, int t, int batch) {
    return kc_buf_f(m->nodes[id].z, tensor_offset(m, id, t, batch));
}

kc_buf kc_model_output_y(const kc_model *m, int k) {
    return kc_model_tensor_y(m, m->outputs[k].node, m->outputs[k].tensor, m->cur_batch);
}

kc_buf kc_model_output_z(const kc_model *m, int k) {
    const kc_model_output *o = &m->outputs[k];
    return kc_model_tensor_z(m, o->node, o->tensor, m->cur_batch);
}

kc_buf kc_model_output_mask(const kc_model *m, int k) {
    return kc_model_output_masked(m, k) ? m->nodes[m->outputs[k].node].mask : KC_BUF_NULL;
}

/* The tensors node nd's layer is called on. */
static void node_inputs(const kc_model *m, const kc_model_node *nd, int batch, kc_buf *xs) {
    for (int j = 0; j < nd->nin; j++)
        xs[j] = kc_model_tensor_y(m, nd->in[j], nd->in_t[j], batch);
}

/* Steps of the mask of node id's tensor 0. */
static size_t mask_numel(const kc_model *m, int id, int batch) {
    return (size_t)m->nodes[id].shape.d[0] * (size_t)batch;
}

/* The call's input mask (an AND of several) before it, a merge's output
 * mask (an OR) after it. */
static int combine_masks(kc_model *m, const kc_model_node *nd, int batch, int after) {
    kc_buf out = after ? nd->mask : nd->in_mask;
    kc_binary_op op = after ? KC_BIN_MAX : KC_BIN_MUL;
    int first = 1;
    for (int j = 0; j < nd->nin; j++) {
        const kc_model_node *src = &m->nodes[nd->in[j]];
        if (nd->in_t[j] != 0 || !src->masked) continue;
        size_t n = mask_numel(m, nd->in[j], batch);
        if (first)
            kc_copy(m->dev, out, src->mask, n * sizeof(float));
        else
            kc_binary_n(m->dev, op, out, src->mask, out, n);
        first = 0;
    }
    return kc_device_status(m->dev);
}

/* A layer's status, recorded on the device when the layer returned a failure
 * without one, so that the device's error stays the one to report. */
static int layer_status(kc_device *d, const kc_layer *l, int rc) {
    if (rc && !kc_device_status(d))
        kc_device_fail(d, rc, "layer '%s' (%s) failed", l->name, l->cls->class_name);
    return kc_device_status(d);
}

/* Where backward's activity penalties put their value (see plan_activity). */
static kc_buf activity_sink(const kc_model *m) {
    return kc_buf_bytes(m->activity, sizeof(double));
}

/* ------------------------------------------------------------- forward --- */

static int forward_node(kc_model *m, kc_exec *lex, const kc_exec *ex, kc_model_node *nd) {
    kc_layer *l = nd->layer;
    kc_device *d = m->dev;
    l->buf = nd->buf;
    /* a shared layer's later calls draw their own random numbers (dropout masks) */
    lex->seed = nd->call ? ex->seed ^ kc_rng_stream("call", (uint64_t)nd->call, 0) : ex->seed;
    lex->mask = nd->in_mask;
    lex->mask_out = nd->mask_src == KC_MASK_SRC_PRODUCE ? nd->mask : KC_BUF_NULL;
    int rc = nd->in_masks > 1 ? combine_masks(m, nd, ex->batch, 0) : KC_OK;
    kc_buf xs[KC_LAYER_MAX_INPUTS];
    node_inputs(m, nd, ex->batch, xs);
    if (rc)
        ;
    else if (kc_layer_class_is_multi(l->cls))
        rc = l->cls->forward_n(l, lex, xs, nd->z);
    else
        rc = l->cls->forward(l, lex, xs[0], nd->z);
    if (!rc && nd->mask_src == KC_MASK_SRC_OR) rc = combine_masks(m, nd, ex->batch, 1);
    if (!rc && kc_layer_has_activation(l)) {
        int rows, cols;
        activation_dims(l, ex->batch, &rows, &cols);
        rc = kc_activation_forward(d, &l->activation, nd->z, nd->y, rows, cols);
    }
    if (!rc && kc_regularizer_active(&l->activity_regularizer))
        rc = kc_activity_penalty(d, &l->activity_regularizer, nd->y, KC_BUF_NULL,
                                 kc_model_node_numel(m, (int)(nd - m->nodes), ex->batch), ex->batch,
                                 m->activity);
    return layer_status(d, l, rc);
}

int kc_model_forward(kc_model *m, const kc_exec *ex) {
    kc_exec lex = *ex;
    lex.dev = m->dev;
    lex.ws = m->ws;
    m->cur_batch = ex->batch;
    /* both doubles: the penalties about to be summed and backward's sink */
    if (m->has_activity && kc_fill(m->dev, m->activity, 0.0f, 4)) return kc_device_status(m->dev);
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd = &m->nodes[i];
        if (!nd->layer) continue;
        int rc = forward_node(m, &lex, ex, nd);
        if (rc) return rc;
        if (ex->on_layer) ex->on_layer(ex->hook_ctx, nd->layer->index, 0);
    }
    return kc_device_status(m->dev);
}

/* ------------------------------------------------------------ backward --- */

/* The gradient w.r.t. the node's pre-activation output in *gz, completing it
 * first with the loss's share when the node is a model output. */
static int node_grad_z(kc_model *m, int id, const kc_backward_step *st, int batch, const int *pre,
                       kc_buf *gz) {
    kc_model_node *nd = &m->nodes[id];
    const kc_layer *l = nd->layer;
    kc_device *d = m->dev;
    size_t n = kc_model_node_numel(m, id, batch);
    int k = st->output, act = kc_layer_has_activation(l);
    int rows, cols;
    activation_dims(l, batch, &rows, &cols);
    *gz = act ? st->gz : nd->g;
    if (k < 0 || nd->nconsumers == 0) {
        /* g is the consumers' sum, or the loss's dy itself */
        if ((k >= 0 && pre[k]) || !act) {
            *gz = nd->g;
            return kc_device_status(d);
        }
        return kc_activation_backward(d, &l->activation, nd->z, nd->y, nd->g, st->gz, rows, cols);
    }
    kc_buf dy = m->outputs[k].dy;
    if (pre[k] && act) { /* consumers' part through the activation, the loss's part as given */
        kc_activation_backward(d, &l->activation, nd->z, nd->y, nd->g, st->gz, rows, cols);
        return kc_axpy(d, 1.0f, dy, st->gz, n);
    }
    kc_axpy(d, 1.0f, dy, nd->g, n);
    if (!act) return kc_device_status(d);
    return kc_activation_backward(d, &l->activation, nd->z, nd->y, nd->g, st->gz, rows, cols);
}

/* Adds the gradients that went through scratch into their producers' g. */
static int add_scratch(kc_model *m, const kc_model_node *nd, const kc_backward_step *st,
                       int batch) {
    for (int j = 0; j < nd->nin; j++) {
        if (!st->add[j]) continue;
        int src = nd->in[j], t = nd->in_t[j];
        kc_axpy(m->dev, 1.0f, st->dx[j], kc_buf_f(m->nodes[src].g, tensor_offset(m, src, t, batch)),
                kc_model_tensor_numel(m, src, t, batch));
    }
    return kc_device_status(m->dev);
}

/* Where each argument's gradient goes at this batch size: a slice of a
 * producer of several tensors, or the planned buffer. */
static void arg_grads(const kc_model *m, const kc_model_node *nd, const kc_backward_step *st,
                      int batch, kc_buf *dx) {
    for (int j = 0; j < nd->nin; j++) {
        dx[j] = st->dx[j];
        int src = nd->in[j];
        if (!st->add[j] && kc_buf_ok(dx[j]) && m->nodes[src].ntensors > 1)
            dx[j] = kc_buf_f(dx[j], tensor_offset(m, src, nd->in_t[j], batch));
    }
}

/* A node of several tensors: the slices no consumer wrote are zero, then
 * the losses' gradients of the tensors that are model outputs join in. */
static int multi_grad(kc_model *m, int id, const kc_backward_step *st, int batch) {
    kc_model_node *nd = &m->nodes[id];
    for (int t = 0; t < nd->ntensors; t++)
        if (!(st->written & (1u << t)))
            kc_fill(m->dev, kc_buf_f(nd->g, tensor_offset(m, id, t, batch)), 0.0f,
                    kc_model_tensor_numel(m, id, t, batch));
    for (int k = 0; k < m->noutputs; k++) {
        const kc_model_output *o = &m->outputs[k];
        if (o->node != id) continue;
        kc_axpy(m->dev, 1.0f, o->dy, kc_buf_f(nd->g, tensor_offset(m, id, o->tensor, batch)),
                kc_model_tensor_numel(m, id, o->tensor, batch));
    }
    return kc_device_status(m->dev);
}

static int backward_node(kc_model *m, kc_exec *lex, const kc_exec *ex, int i, const int *pre) {
    kc_model_node *nd = &m->nodes[i];
    kc_layer *l = nd->layer;
    const kc_backward_step *st = &m->bplan->steps[i];
    int multi = nd->ntensors > 1;
    int rc = multi ? multi_grad(m, i, st, ex->batch) : KC_OK;
    /* the activity penalty's gradient joins the gradient w.r.t. the output
     * (the trainer keeps such outputs off the fused logits path) */
    if (!rc && kc_regularizer_active(&l->activity_regularizer) && kc_buf_ok(nd->g))
        rc = kc_activity_penalty(m->dev, &l->activity_regularizer, nd->y, nd->g,
                                 kc_model_node_numel(m, i, ex->batch), ex->batch, activity_sink(m));
    kc_buf gz = nd->g;
    if (!rc && !multi) rc = node_grad_z(m, i, st, ex->batch, pre, &gz);
    if (rc) return rc;
    lex->accumulate = ex->accumulate || !st->first_of_layer;
    lex->mask = nd->in_mask;
    lex->mask_out = KC_BUF_NULL;
    l->buf = nd->buf;
    kc_buf xs[KC_LAYER_MAX_INPUTS], dx[KC_LAYER_MAX_INPUTS];
    node_inputs(m, nd, ex->batch, xs);
    arg_grads(m, nd, st, ex->batch, dx);
    if (kc_layer_class_is_multi(l->cls))
        rc = l->cls->backward_n(l, lex, xs, nd->z, gz, dx);
    else
        rc = l->cls->backward(l, lex, xs[0], nd->z, gz, dx[0]);
    if ((rc = layer_status(m->dev, l, rc))) return rc;
    return add_scratch(m, nd, st, ex->batch);
}

int kc_model_backward_n(kc_model *m, const kc_exec *ex, const int *dy_is_preactivation) {
    kc_exec lex = *ex;
    lex.dev = m->dev;
    lex.ws = m->ws;
    for (int i = m->nnodes - 1; i >= 0; i--) {
        const kc_layer *l = m->nodes[i].layer;
        if (!l) continue;
        int rc = backward_node(m, &lex, ex, i, dy_is_preactivation);
        if (rc) return rc;
        if (ex->on_layer) ex->on_layer(ex->hook_ctx, l->index, 1);
    }
    return kc_device_status(m->dev);
}

int kc_model_backward(kc_model *m, const kc_exec *ex, int dy_is_preactivation) {
    int pre[KC_MODEL_MAX_IO];
    for (int k = 0; k < KC_MODEL_MAX_IO; k++)
        pre[k] = dy_is_preactivation;
    return kc_model_backward_n(m, ex, pre);
}

/* -------------------------------------------------------------- states --- */

int kc_model_reset_states(kc_model *m) {
    if (!m->dev) return KC_OK;
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        if (!l->cls->reset_states) continue;
        int rc = layer_status(m->dev, l, l->cls->reset_states(l, m->dev));
        if (rc) return rc;
    }
    return kc_device_status(m->dev);
}
