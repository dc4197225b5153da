/* Evaluation and prediction: batches in order through kc_infer_batch. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/fit_internal.h"

/* Rows b * bs ... of n, as indices; returns the batch's size. */
static int batch_rows(int64_t b, int64_t bs, int64_t n, int64_t *idx) {
    int nb = (int)((b + 1) * bs <= n ? bs : n - b * bs);
    for (int i = 0; i < nb; i++)
        idx[i] = b * bs + i;
    return nb;
}

static int hook_wants_logs(const kc_hooks *h, int64_t step, int64_t steps) {
    if (!h || !h->batch_end) return 0;
    return !h->wants_batch_logs || h->wants_batch_logs(h->ctx, step, steps);
}

/* The loss and metrics run on the device; they are read at the end, and per
 * batch only when the hook asks. */
static int evaluate_batches(kc_session *s, const kc_feed *f, const kc_hooks *h, int64_t *idx,
                            kc_logs *out, kc_error *e) {
    int64_t n = f->rows, bs = s->batch_size, steps = (n + bs - 1) / bs;
    double count = 0;
    kc_session_reset_running(s);
    if (kc_model_reset_states(s->model)) return kc_device_error(&s->dev, e);
    if (h && h->epoch_begin) h->epoch_begin(h->ctx, -1, 0, steps);
    for (int64_t b = 0; b < steps; b++) {
        int nb = batch_rows(b, bs, n, idx);
        int rc = kc_infer_batch(s, f, idx, nb, 1, e);
        if (rc) return rc;
        count += nb;
        if (hook_wants_logs(h, b + 1, steps)) {
            kc_logs l = {0};
            if ((rc = kc_session_logs(s, &l, "", count, e))) return rc;
            h->batch_end(h->ctx, b + 1, steps, &l);
        }
    }
    memset(out, 0, sizeof *out);
    int rc = kc_session_logs(s, out, "", count, e);
    if (rc) return rc;
    if (h && h->epoch_end) h->epoch_end(h->ctx, -1, steps, out);
    return KC_OK;
}

static int evaluate_feed(kc_session *s, const kc_feed *f, const kc_hooks *h, kc_logs *out,
                         kc_error *e) {
    int64_t *idx = malloc((size_t)s->batch_size * sizeof *idx);
    if (!idx) return kc_fail(e, KC_ERUNTIME, "out of memory");
    int rc = evaluate_batches(s, f, h, idx, out, e);
    free(idx);
    return rc;
}

int kc_evaluate_split(kc_session *s, int split, const kc_hooks *h, kc_logs *out, kc_error *e) {
    kc_feed f;
    int rc = kc_session_feed(s, split, &f, e);
    return rc ? rc : evaluate_feed(s, &f, h, out, e);
}

int kc_evaluate(kc_session *s, const kc_array *x, const kc_array *y, const kc_hooks *h,
                kc_logs *out, kc_error *e) {
    kc_feed f;
    int rc = kc_feed_arrays(s, x, y, NULL, "given", &f, e);
    return rc ? rc : evaluate_feed(s, &f, h, out, e);
}

static size_t output_size(const kc_session *s, int k) {
    return (size_t)(s->outs[k].out_rows * s->outs[k].out_cols);
}

/* Every output's rows for n samples, or none when one allocation fails. */
static int alloc_outputs(kc_session *s, int64_t n, float **outs, kc_error *e) {
    int ok = 1;
    for (int k = 0; k < s->nouts; k++) {
        size_t count = (size_t)n * output_size(s, k);
        outs[k] = malloc((count ? count : 1) * sizeof(float));
        ok &= outs[k] != NULL;
    }
    if (ok) return KC_OK;
    for (int k = 0; k < s->nouts; k++)
        free(outs[k]), outs[k] = NULL;
    return kc_fail(e, KC_ERUNTIME, "out of memory for %lld predictions", (long long)n);
}

static int predict_batches(kc_session *s, const kc_feed *f, int64_t *idx, float **outs,
                           kc_error *e) {
    int64_t n = f->rows, bs = s->batch_size;
    if (kc_model_reset_states(s->model)) return kc_device_error(&s->dev, e);
    for (int64_t b = 0; b * bs < n; b++) {
        int nb = batch_rows(b, bs, n, idx);
        int rc = kc_infer_batch(s, f, idx, nb, 0, e);
        if (rc) return rc;
        for (int k = 0; k < s->nouts; k++) {
            size_t per = output_size(s, k);
            memcpy(outs[k] + (size_t)(b * bs) * per, s->outs[k].hpred,
                   (size_t)nb * per * sizeof(float));
        }
    }
    return KC_OK;
}

/* The feed of the inputs xs[i], which must have equal row counts. */
static int predict_feed(const kc_session *s, const kc_array *const *xs, kc_feed *f, kc_error *e) {
    const kc_model *m = s->model;
    memset(f, 0, sizeof *f);
    f->rows = kc_array_rows(xs[0]);
    for (int i = 0; i < m->ninputs; i++) {
        f->x[i] = xs[i];
        if (kc_array_rows(xs[i]) != f->rows)
            return kc_fail(
                e, KC_ECONFIG,
                "the inputs have different numbers of samples: %lld for '%s', %lld for '%s'",
                (long long)f->rows, m->inputs[0].name, (long long)kc_array_rows(xs[i]),
                m->inputs[i].name);
    }
    return KC_OK;
}

int kc_predict_n(kc_session *s, const kc_array *const *xs, float **outs, kc_error *e) {
    kc_feed f;
    int rc = predict_feed(s, xs, &f, e);
    if (rc) return rc;
    int64_t *idx = malloc((size_t)s->batch_size * sizeof *idx);
    if (!idx)
        return kc_fail(e, KC_ERUNTIME, "out of memory for %lld predictions", (long long)f.rows);
    rc = alloc_outputs(s, f.rows, outs, e);
    if (!rc) rc = predict_batches(s, &f, idx, outs, e);
    free(idx);
    return rc;
}

/* ------------------------------------------------------ chosen tensors --- */

static size_t tensor_size(const kc_model *m, const kc_model_tensor *t) {
    return (size_t)kc_shape_numel(kc_model_tensor_shape(m, t->node, t->tensor));
}

/* Each tensor's rows for n samples, or none when one allocation fails. */
static int alloc_tensors(const kc_session *s, const kc_model_tensor *t, int nt, int64_t n,
                         float **outs, kc_error *e) {
    int ok = 1;
    for (int j = 0; j < nt; j++) {
        size_t per = tensor_size(s->model, &t[j]);
        outs[j] = NULL;
        if (per && (uint64_t)n > SIZE_MAX / sizeof(float) / per) {
            ok = 0;
            continue;
        }
        size_t count = (size_t)n * per;
        outs[j] = malloc((count ? count : 1) * sizeof(float));
        ok &= outs[j] != NULL;
    }
    if (ok) return KC_OK;
    for (int j = 0; j < nt; j++)
        free(outs[j]), outs[j] = NULL;
    return kc_fail(e, KC_ERUNTIME, "out of memory for %lld samples of the chosen tensors",
                   (long long)n);
}

/* Each batch's tensors go straight from the device into their rows of outs. */
static int tensor_batches(kc_session *s, const kc_feed *f, const kc_model_tensor *t, int nt,
                          int64_t *idx, float **outs, kc_error *e) {
    const kc_model *m = s->model;
    int64_t n = f->rows, bs = s->batch_size;
    if (kc_model_reset_states(s->model)) return kc_device_error(&s->dev, e);
    for (int64_t b = 0; b * bs < n; b++) {
        int nb = batch_rows(b, bs, n, idx);
        int rc = kc_infer_batch(s, f, idx, nb, 0, e);
        if (rc) return rc;
        for (int j = 0; j < nt; j++) {
            size_t per = tensor_size(m, &t[j]);
            kc_buf src = t[j].pre ? kc_model_tensor_z(m, t[j].node, t[j].tensor, nb)
                                  : kc_model_tensor_y(m, t[j].node, t[j].tensor, nb);
            kc_download(&s->dev, outs[j] + (size_t)(b * bs) * per, src,
                        (size_t)nb * per * sizeof(float));
        }
        if ((rc = kc_device_error(&s->dev, e))) return rc;
    }
    return KC_OK;
}

int kc_predict_tensors(kc_session *s, const kc_array *const *xs, const kc_model_tensor *t, int nt,
                       float **outs, kc_error *e) {
    for (int j = 0; j < nt; j++)
        if (t[j].node < 0 || t[j].node >= s->model->nnodes || t[j].tensor < 0 ||
            t[j].tensor >= s->model->nodes[t[j].node].ntensors)
            return kc_fail(e, KC_ECONFIG, "'%s' is not a tensor of the model", t[j].name);
    kc_feed f;
    int rc = predict_feed(s, xs, &f, e);
    if (rc) return rc;
    int64_t *idx = malloc((size_t)s->batch_size * sizeof *idx);
    if (!idx)
        return kc_fail(e, KC_ERUNTIME, "out of memory for %lld predictions", (long long)f.rows);
    rc = alloc_tensors(s, t, nt, f.rows, outs, e);
    if (!rc) rc = tensor_batches(s, &f, t, nt, idx, outs, e);
    free(idx);
    return rc;
}

int kc_predict(kc_session *s, const kc_array *x, float **out, kc_error *e) {
    if (s->model->ninputs != 1 || s->nouts != 1)
        return kc_fail(e, KC_ECONFIG, "the model has %d inputs and %d outputs; name each one",
                       s->model->ninputs, s->nouts);
    const kc_array *xs[1] = {x};
    return kc_predict_n(s, xs, out, e);
}
