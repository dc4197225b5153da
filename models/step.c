/* The training step and the inference batch (models/step.h), and the
 * running losses and metrics they feed, which stay on the device.
 *
 * The session's running block (s->running) holds, in this order:
 *   two doubles: penalty sums, each over batches of penalty_rows[c] rows
 *     (the penalties come out of their ops as doubles, which no op turns
 *     into floats, so they are summed per batch size and scaled when read);
 *   the loss sums, KC_KAHAN_FLOATS(nouts + 1) floats: entry 0 the weighted
 *     total of the output losses, entry 1 + k output k's loss, each times the
 *     batch's samples;
 *   every output's metrics' counters, output by output, in order.
 * One download of the block is all a report needs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"
#include "models/fit_internal.h"

#define PENALTY_BYTES (2 * sizeof(double))

static size_t loss_sums(const kc_session *s) {
    return (size_t)s->nouts + 1;
}

static kc_buf loss_acc(const kc_session *s) {
    return kc_buf_bytes(s->running, PENALTY_BYTES);
}

/* the batch slots of the loss sums */
static kc_buf loss_batch(const kc_session *s) {
    return kc_buf_f(loss_acc(s), 2 * loss_sums(s));
}

/* ------------------------------------------------------------- staging --- */

static void stage_inputs(kc_session *s, const kc_feed *f, const int64_t *idx, int n) {
    kc_model *m = s->model;
    for (int i = 0; i < m->ninputs; i++) {
        size_t in = (size_t)kc_shape_numel(&m->inputs[i].shape);
        kc_session_gather_input(s, i, f->x[i], idx, n, s->hxs[i]);
        kc_upload(&s->dev, m->inputs[i].x, s->hxs[i], (size_t)n * in * sizeof(float));
    }
}

/* y = [labels[r] == j] for rows x cols: one-hot rows made on the device */
static void expand_one_hot(kc_device *d, kc_buf labels, kc_buf iota, kc_buf y, int64_t rows,
                           int cols) {
    int64_t a[2] = {rows, 1}, b[2] = {1, cols};
    kc_bcast g;
    if (kc_bcast_make(&g, a, 2, b, 2, NULL)) {
        kc_device_fail(d, KC_ECONFIG, "one-hot targets: no broadcast for %lld x %d",
                       (long long)rows, cols);
        return;
    }
    kc_binary(d, KC_BIN_EQ, &g, labels, iota, y);
}

static void stage_target(kc_session *s, kc_session_output *o, const kc_array *y, const int64_t *idx,
                         int n) {
    const kc_data_spec *d = &s->cfg->data;
    int64_t rows = (int64_t)n * o->out_rows;
    if (o->one_hot) {
        /* the indices go up, not the rows they expand to */
        kc_array_gather(y, idx, n, 1.0f, 0.0f, o->hy);
        kc_upload(&s->dev, o->labels, o->hy, (size_t)rows * sizeof(float));
        expand_one_hot(&s->dev, o->labels, o->iota, o->target, rows, o->out_cols);
        return;
    }
    float scale = o->target_is_x ? (float)d->rescale : 1.0f,
          offset = o->target_is_x ? (float)d->offset : 0.0f;
    size_t per = o->sparse_targets ? 1 : (size_t)o->out_cols;
    kc_array_gather(y, idx, n, scale, offset, o->hy);
    kc_upload(&s->dev, o->target, o->hy, (size_t)rows * per * sizeof(float));
}

static void stage_batch(kc_session *s, const kc_feed *f, const int64_t *idx, int n) {
    stage_inputs(s, f, idx, n);
    for (int k = 0; k < s->nouts; k++)
        if (f->y[k]) stage_target(s, &s->outs[k], f->y[k], idx, n);
}

/* ---------------------------------------------------------------- loss --- */

static int fused_logits(const kc_session *s, int k) {
    const kc_session_output *o = &s->outs[k];
    const kc_layer *last = s->model->nodes[s->model->outputs[k].node].layer;
    /* an activity penalty's gradient is w.r.t. the output, so it keeps the plain path */
    return o->has_loss && !o->loss.from_logits && kc_loss_has_logits_form(&o->loss) &&
           !kc_regularizer_active(&last->activity_regularizer) &&
           last->activation.act != KC_ACT_LINEAR &&
           last->activation.act == kc_loss_logits_activation(&o->loss);
}

/* Whether output k's loss and metrics count only its unmasked steps: it
 * carries a mask over the rows they see (a (steps, classes) output). */
static int masked_loss(const kc_session *s, int k) {
    const kc_model *m = s->model;
    return kc_model_output_masked(m, k) &&
           s->outs[k].out_rows == kc_model_output_shape_n(m, k)->d[0];
}

/* Each output's loss times the batch's samples into its batch slot, and
 * their weighted sum into slot 0; with grad each output's gradient, times
 * its weight, goes straight into the model's dy. */
static void output_losses(kc_session *s, const kc_feed *f, int n, int grad) {
    kc_device *d = &s->dev;
    kc_model *m = s->model;
    kc_buf batch = loss_batch(s);
    kc_fill(d, batch, 0.0f, loss_sums(s));
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        if (!o->has_loss || !f->y[k]) continue;
        kc_buf slot = kc_buf_f(batch, (size_t)(1 + k));
        kc_buf pred = o->fused ? kc_model_output_z(m, k) : kc_model_output_y(m, k);
        kc_buf mask = masked_loss(s, k) ? kc_model_output_mask(m, k) : KC_BUF_NULL;
        kc_loss_device_run_masked(&o->dloss, pred, o->target, (int)(n * o->out_rows),
                                  (float)o->weight, grad ? kc_model_dy_n(m, k) : KC_BUF_NULL, slot,
                                  (float)n, mask);
        kc_axpy(d, (float)o->weight, slot, batch, 1);
    }
}

/* ----------------------------------------------------------- penalties --- */

/* The penalty sum that an n-row batch adds to: one for full batches, one
 * for the other size an epoch has (its last batch). Should a third size
 * come, the second sum is rescaled to stand for it. */
static kc_buf penalty_sum(kc_session *s, int n) {
    int c = n == s->batch_size ? 0 : 1;
    kc_buf at = kc_buf_bytes(s->running, (size_t)c * sizeof(double));
    if (c == 1 && s->penalty_rows[1] != n) {
        if (s->penalty_rows[1] > 0) {
            double v = 0;
            kc_download(&s->dev, &v, at, sizeof v);
            v = v * s->penalty_rows[1] / n;
            kc_upload(&s->dev, at, &v, sizeof v);
        }
        s->penalty_rows[1] = n;
    }
    return at;
}

/* The activity penalties into acc, as the forward pass computed them: the
 * forward's own sum is zeroed by every pass and cannot be added to a
 * running one without a read. */
static void activity_penalties(kc_session *s, int n, kc_buf acc) {
    const kc_model *m = s->model;
    for (int i = 0; i < m->nnodes; i++) {
        const kc_model_node *nd = &m->nodes[i];
        if (!nd->layer || !kc_regularizer_active(&nd->layer->activity_regularizer)) continue;
        size_t count = 0; /* every tensor of the call, as Keras regularizes each */
        for (int t = 0; t < nd->ntensors; t++)
            count += kc_model_tensor_numel(m, i, t, n);
        kc_activity_penalty(&s->dev, &nd->layer->activity_regularizer, nd->y, KC_BUF_NULL, count, n,
                            acc);
    }
}

/* ------------------------------------------------------- running values --- */

static void update_metrics(kc_session *s, const kc_feed *f, int n) {
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        if (!f->y[k]) continue;
        kc_buf pred = kc_model_output_y(s->model, k);
        kc_buf mask = masked_loss(s, k) ? kc_model_output_mask(s->model, k) : KC_BUF_NULL;
        for (int i = 0; i < o->nmetrics; i++)
            kc_metric_device_update_masked(&o->dmetrics[i], pred, o->target, (int)(n * o->out_rows),
                                           mask);
    }
    kc_kahan_add(&s->dev, loss_acc(s), loss_sums(s));
}

void kc_session_reset_running(kc_session *s) {
    s->penalty_rows[0] = (double)s->batch_size;
    s->penalty_rows[1] = 0;
    if (kc_buf_ok(s->running)) kc_fill(&s->dev, s->running, 0.0f, s->running_bytes / sizeof(float));
}

static const float *host_sums(const kc_session *s) {
    return (const float *)((const char *)s->hrunning + PENALTY_BYTES);
}

int kc_session_read_running(kc_session *s, kc_error *e) {
    if (!kc_buf_ok(s->running)) return KC_OK;
    kc_download(&s->dev, s->hrunning, s->running, s->running_bytes);
    int rc = kc_device_error(&s->dev, e);
    if (rc) return rc;
    double pen[2];
    memcpy(pen, s->hrunning, sizeof pen);
    const float *acc = host_sums(s);
    size_t m = loss_sums(s), at = KC_KAHAN_FLOATS(m);
    s->epoch_loss_sum =
        (double)acc[0] - (double)acc[m] + s->penalty_rows[0] * pen[0] + s->penalty_rows[1] * pen[1];
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        o->loss_sum = (double)acc[1 + k] - (double)acc[m + 1 + k];
        for (int i = 0; i < o->nmetrics; i++) {
            kc_metric_device_decode(&o->dmetrics[i], acc + at, &o->metrics[i]);
            at += kc_metric_device_acc_floats(&o->metrics[i]);
        }
    }
    return KC_OK;
}

void kc_logs_add(kc_logs *l, const char *prefix, const char *key, double v) {
    if (l->n >= KC_MAX_LOGS) return;
    snprintf(l->keys[l->n], sizeof l->keys[0], "%s%s", prefix, key);
    l->vals[l->n++] = v;
}

static void metric_logs(kc_session *s, kc_logs *l, const char *prefix) {
    char key[300];
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        for (int i = 0; i < o->nmetrics; i++) {
            if (s->nouts > 1)
                snprintf(key, sizeof key, "%s_%s", o->name, kc_metric_name(&o->metrics[i]));
            else
                snprintf(key, sizeof key, "%s", kc_metric_name(&o->metrics[i]));
            kc_logs_add(l, prefix, key, kc_metric_result(&o->metrics[i]));
        }
    }
}

int kc_session_logs(kc_session *s, kc_logs *l, const char *prefix, double count, kc_error *e) {
    int rc = kc_session_read_running(s, e);
    if (rc) return rc;
    kc_logs_add(l, prefix, "loss", count ? s->epoch_loss_sum / count : 0);
    metric_logs(s, l, prefix);
    int nloss = 0;
    for (int k = 0; k < s->nouts; k++)
        nloss += s->outs[k].has_loss;
    if (nloss < 2) return KC_OK;
    char key[300];
    for (int k = 0; k < s->nouts; k++)
        if (s->outs[k].has_loss) {
            snprintf(key, sizeof key, "%s_loss", s->outs[k].name);
            kc_logs_add(l, prefix, key, count ? s->outs[k].loss_sum / count : 0);
        }
    return KC_OK;
}

/* ------------------------------------------------------ raw running state --- */

/* Each sum's value and compensation: the loss sums, then every metric's. */
size_t kc_session_running_floats(const kc_session *s) {
    size_t n = 2 * loss_sums(s);
    for (int k = 0; k < s->nouts; k++)
        for (int i = 0; i < s->outs[k].nmetrics; i++)
            n += 2 * (size_t)s->outs[k].dmetrics[i].ncount;
    return n;
}

/* Copies between the raw vector and a host image of the block (to_raw:
 * image -> raw). */
static void raw_copy(const kc_session *s, float *img, float *raw, int to_raw) {
    size_t m = loss_sums(s), at = 0, r = 0;
#define KC_RAW_XFER(count)                                                                         \
    do {                                                                                           \
        size_t len_ = 2 * (size_t)(count);                                                         \
        if (to_raw)                                                                                \
            memcpy(raw + r, img + at, len_ * sizeof(float));                                       \
        else                                                                                       \
            memcpy(img + at, raw + r, len_ * sizeof(float));                                       \
        r += len_;                                                                                 \
    } while (0)
    KC_RAW_XFER(m);
    at = KC_KAHAN_FLOATS(m);
    for (int k = 0; k < s->nouts; k++)
        for (int i = 0; i < s->outs[k].nmetrics; i++) {
            KC_RAW_XFER(s->outs[k].dmetrics[i].ncount);
            at += KC_KAHAN_FLOATS(s->outs[k].dmetrics[i].ncount);
        }
#undef KC_RAW_XFER
}

void kc_session_running_pack(const kc_session *s, float *raw, double *penalty) {
    if (!s->hrunning) { /* a session without planned outputs keeps no sums */
        memset(raw, 0, kc_session_running_floats(s) * sizeof *raw);
        memset(penalty, 0, KC_RUNNING_PENALTY * sizeof *penalty);
        return;
    }
    double pen[2];
    memcpy(pen, s->hrunning, sizeof pen);
    penalty[0] = pen[0];
    penalty[1] = s->penalty_rows[0];
    penalty[2] = pen[1];
    penalty[3] = s->penalty_rows[1];
    raw_copy(s, (float *)((char *)s->hrunning + PENALTY_BYTES), raw, 1);
}

int kc_session_running_unpack(kc_session *s, const float *raw, const double *penalty, kc_error *e) {
    if (!kc_buf_ok(s->running)) return KC_OK;
    /* the batch slots and temporaries are written before every read, so zeros do */
    memset(s->hrunning, 0, s->running_bytes);
    double pen[2] = {penalty[0], penalty[2]};
    memcpy(s->hrunning, pen, sizeof pen);
    s->penalty_rows[0] = penalty[1];
    s->penalty_rows[1] = penalty[3];
    raw_copy(s, (float *)((char *)s->hrunning + PENALTY_BYTES), (float *)raw, 0);
    kc_upload(&s->dev, s->running, s->hrunning, s->running_bytes);
    return kc_device_error(&s->dev, e);
}

/* value and compensation such that value - compensation is v as closely
 * as two floats hold it */
static void encode_sum(float *value, float *comp, double v) {
    *value = (float)v;
    *comp = (float)((double)*value - v);
}

int kc_session_running_from_host(kc_session *s, kc_error *e) {
    size_t n = kc_session_running_floats(s), m = loss_sums(s);
    float *raw = calloc(n ? n : 1, sizeof *raw);
    if (!raw) return kc_fail(e, KC_ERUNTIME, "out of memory");
    encode_sum(&raw[0], &raw[m], s->epoch_loss_sum);
    for (int k = 0; k < s->nouts; k++)
        encode_sum(&raw[1 + k], &raw[m + 1 + k], s->outs[k].loss_sum);
    size_t at = 2 * m;
    for (int k = 0; k < s->nouts; k++)
        for (int i = 0; i < s->outs[k].nmetrics; i++) {
            const kc_metric_device *md = &s->outs[k].dmetrics[i];
            kc_metric_device_encode(md, &s->outs[k].metrics[i], raw + at);
            at += 2 * (size_t)md->ncount;
        }
    /* the old total already holds the penalties */
    double pen[KC_RUNNING_PENALTY] = {0, (double)s->batch_size, 0, 0};
    int rc = kc_session_running_unpack(s, raw, pen, e);
    free(raw);
    return rc;
}

/* ------------------------------------------------------------ planning --- */

static int plan_output(kc_session *s, int k, kc_buf metrics_at, kc_error *e) {
    kc_device *d = &s->dev;
    kc_session_output *o = &s->outs[k];
    int rows = (int)(s->batch_size * o->out_rows), cols = o->out_cols;
    o->fused = fused_logits(s, k);
    if (o->needs_target) kc_alloc(d, (size_t)rows * (size_t)cols * sizeof(float), &o->target);
    if (o->one_hot) {
        float *iota = malloc((size_t)cols * sizeof *iota);
        if (!iota) return kc_fail(e, KC_ERUNTIME, "out of memory");
        for (int j = 0; j < cols; j++)
            iota[j] = (float)j;
        kc_alloc(d, (size_t)rows * sizeof(float), &o->labels);
        if (kc_alloc(d, (size_t)cols * sizeof(float), &o->iota) == KC_OK)
            kc_upload(d, o->iota, iota, (size_t)cols * sizeof(float));
        free(iota);
    }
    int rc = kc_device_error(d, e);
    if (!rc && o->has_loss)
        rc = kc_loss_device_plan(&o->dloss, d, &o->loss, rows, cols, o->fused, e);
    if (!rc && o->has_loss && masked_loss(s, k)) rc = kc_loss_device_plan_mask(&o->dloss, e);
    for (int i = 0; !rc && i < o->nmetrics; i++) {
        rc =
            kc_metric_device_plan_at(&o->dmetrics[i], d, &o->metrics[i], rows, cols, metrics_at, e);
        if (!rc && masked_loss(s, k)) rc = kc_metric_device_plan_mask(&o->dmetrics[i], e);
        metrics_at = kc_buf_f(metrics_at, kc_metric_device_acc_floats(&o->metrics[i]));
    }
    if (rc) return kc_error_prefix(e, "output '%s'", o->name);
    return KC_OK;
}

int kc_session_plan_outputs(kc_session *s, kc_error *e) {
    size_t floats = KC_KAHAN_FLOATS(loss_sums(s));
    for (int k = 0; k < s->nouts; k++)
        for (int i = 0; i < s->outs[k].nmetrics; i++)
            floats += kc_metric_device_acc_floats(&s->outs[k].metrics[i]);
    s->running_bytes = PENALTY_BYTES + floats * sizeof(float);
    s->hrunning = calloc(1, s->running_bytes);
    if (!s->hrunning) return kc_fail(e, KC_ERUNTIME, "out of memory");
    if (kc_alloc(&s->dev, s->running_bytes, &s->running)) return kc_device_error(&s->dev, e);
    kc_buf at = kc_buf_f(loss_acc(s), KC_KAHAN_FLOATS(loss_sums(s)));
    for (int k = 0; k < s->nouts; k++) {
        int rc = plan_output(s, k, at, e);
        if (rc) return rc;
        for (int i = 0; i < s->outs[k].nmetrics; i++)
            at = kc_buf_f(at, kc_metric_device_acc_floats(&s->outs[k].metrics[i]));
    }
    kc_session_reset_running(s);
    return kc_device_error(&s->dev, e);
}

void kc_session_free_outputs(kc_session *s) {
    kc_device *d = &s->dev;
    for (int k = 0; s->outs && k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        kc_loss_device_free(&o->dloss);
        for (int i = 0; i < o->nmetrics; i++)
            kc_metric_device_free(&o->dmetrics[i]);
        kc_free(d, &o->target);
        kc_free(d, &o->labels);
        kc_free(d, &o->iota);
    }
    kc_free(d, &s->running);
    free(s->hrunning);
    s->hrunning = NULL;
}

/* ---------------------------------------------------------------- steps --- */

static void phase_end(const kc_step_probe *p, kc_step_phase phase) {
    if (p && p->on_phase) p->on_phase(p->ctx, phase);
}

/* The optimizer's apply and the constraints after it. */
static void update_weights(kc_session *s) {
    kc_optimizer_step(s->opt, s->wts, s->grs);
    if (s->nreg) kc_constraints_apply(&s->dev, s->reg, s->nreg);
}

int kc_train_step(kc_session *s, const kc_feed *f, const int64_t *idx, int n,
                  const kc_step_probe *probe, kc_error *e) {
    int fused[KC_MODEL_MAX_IO];
    for (int k = 0; k < s->nouts; k++)
        fused[k] = s->outs[k].fused;
    kc_exec ex = {.dev = &s->dev,
                  .batch = n,
                  .training = 1,
                  .seed = s->seed,
                  .step = (uint64_t)s->step,
                  .on_layer = probe ? probe->on_layer : NULL,
                  .hook_ctx = probe ? probe->ctx : NULL};
    stage_batch(s, f, idx, n);
    phase_end(probe, KC_PHASE_DATA);
    if (kc_model_forward(s->model, &ex)) return kc_device_error(&s->dev, e);
    phase_end(probe, KC_PHASE_FORWARD);
    output_losses(s, f, n, 1);
    /* Keras adds the penalties after the reduction, to the total only */
    int penalized = s->has_penalty || s->model->has_activity;
    kc_buf pen = penalized ? penalty_sum(s, n) : KC_BUF_NULL;
    if (s->model->has_activity) activity_penalties(s, n, pen);
    phase_end(probe, KC_PHASE_LOSS);
    kc_model_backward_n(s->model, &ex, fused);
    phase_end(probe, KC_PHASE_BACKWARD);
    if (s->has_penalty) kc_regularization_apply(&s->dev, s->reg, s->nreg, 1, pen);
    update_weights(s);
    phase_end(probe, KC_PHASE_UPDATE);
    update_metrics(s, f, n);
    phase_end(probe, KC_PHASE_METRICS);
    s->step++;
    return kc_device_error(&s->dev, e);
}

int kc_infer_batch(kc_session *s, const kc_feed *f, const int64_t *idx, int n, int score,
                   kc_error *e) {
    kc_exec ex = {
        .dev = &s->dev, .batch = n, .training = 0, .seed = s->seed, .step = (uint64_t)s->step};
    if (score)
        stage_batch(s, f, idx, n);
    else
        stage_inputs(s, f, idx, n);
    if (kc_model_forward(s->model, &ex)) return kc_device_error(&s->dev, e);
    if (!score) {
        for (int k = 0; k < s->nouts; k++) {
            kc_session_output *o = &s->outs[k];
            size_t bytes = (size_t)(n * o->out_rows) * (size_t)o->out_cols * sizeof(float);
            kc_download(&s->dev, o->hpred, kc_model_output_y(s->model, k), bytes);
        }
        return kc_device_error(&s->dev, e);
    }
    output_losses(s, f, n, 0);
    if (s->has_penalty || s->model->has_activity) {
        kc_buf pen = penalty_sum(s, n);
        if (s->model->has_activity) activity_penalties(s, n, pen);
        if (s->has_penalty) kc_regularization_apply(&s->dev, s->reg, s->nreg, 0, pen);
    }
    update_metrics(s, f, n);
    return kc_device_error(&s->dev, e);
}
