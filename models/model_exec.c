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

/* The outputs of node nd's producers. */
static void node_inputs(const kc_model *m, const kc_model_node *nd, kc_buf *xs) {
    for (int j = 0; j < nd->nin; j++)
        xs[j] = m->nodes[nd->in[j]].y;
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
    int rc;
    if (kc_layer_class_is_multi(l->cls)) {
        kc_buf xs[KC_LAYER_MAX_INPUTS];
        node_inputs(m, nd, xs);
        rc = l->cls->forward_n(l, lex, xs, nd->z);
    } else {
        rc = l->cls->forward(l, lex, m->nodes[nd->in[0]].y, nd->z);
    }
    if (!rc && kc_layer_has_activation(l)) {
        int rows, cols;
        activation_dims(l, ex->batch, &rows, &cols);
        rc = kc_activation_forward(d, &l->activation, nd->z, nd->y, rows, cols);
    }
    if (!rc && kc_regularizer_active(&l->activity_regularizer))
        rc = kc_activity_penalty(d, &l->activity_regularizer, nd->y, KC_BUF_NULL,
                                 (size_t)kc_shape_numel(&nd->shape) * (size_t)ex->batch, ex->batch,
                                 m->activity);
    return layer_status(d, l, rc);
}

int kc_model_forward(kc_model *m, const kc_exec *ex) {
    kc_exec lex = *ex;
    lex.dev = m->dev;
    lex.ws = m->ws;
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
    for (int j = 0; j < nd->nin; j++)
        if (st->add[j])
            kc_axpy(m->dev, 1.0f, st->dx[j], m->nodes[nd->in[j]].g,
                    kc_model_node_numel(m, nd->in[j], batch));
    return kc_device_status(m->dev);
}

static int backward_node(kc_model *m, kc_exec *lex, const kc_exec *ex, int i, const int *pre) {
    kc_model_node *nd = &m->nodes[i];
    kc_layer *l = nd->layer;
    const kc_backward_step *st = &m->bplan->steps[i];
    int rc = KC_OK;
    /* the activity penalty's gradient joins the gradient w.r.t. the output
     * (the trainer keeps such outputs off the fused logits path) */
    if (kc_regularizer_active(&l->activity_regularizer) && kc_buf_ok(nd->g))
        rc = kc_activity_penalty(m->dev, &l->activity_regularizer, nd->y, nd->g,
                                 (size_t)kc_shape_numel(&nd->shape) * (size_t)ex->batch, ex->batch,
                                 activity_sink(m));
    kc_buf gz;
    if (!rc) rc = node_grad_z(m, i, st, ex->batch, pre, &gz);
    if (rc) return rc;
    lex->accumulate = ex->accumulate || !st->first_of_layer;
    l->buf = nd->buf;
    if (kc_layer_class_is_multi(l->cls)) {
        kc_buf xs[KC_LAYER_MAX_INPUTS];
        node_inputs(m, nd, xs);
        rc = l->cls->backward_n(l, lex, xs, nd->z, gz, st->dx);
    } else {
        rc = l->cls->backward(l, lex, m->nodes[nd->in[0]].y, nd->z, gz, st->dx[0]);
    }
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
