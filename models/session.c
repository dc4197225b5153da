/* Opening and closing a session: the device, the compile settings, the data,
 * the planned model with its initial weights, host staging, the weights the
 * optimizer and regularizers act on, and the optimizer's slots. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/fit_internal.h"
#include "models/model_internal.h"

/* n floats for each of bs samples, or NULL when that does not fit in memory. */
static float *alloc_rows(size_t bs, int64_t n) {
    size_t bytes;
    if (n < 0 || __builtin_mul_overflow(bs, (size_t)n, &bytes) ||
        __builtin_mul_overflow(bytes, sizeof(float), &bytes))
        return NULL;
    return malloc(bytes ? bytes : 1);
}

static int alloc_staging(kc_session *s, kc_error *e) {
    size_t bs = (size_t)s->batch_size;
    const kc_model *m = s->model;
    for (int i = 0; i < m->ninputs; i++) {
        s->hxs[i] = alloc_rows(bs, kc_shape_numel(&m->inputs[i].shape));
        if (!s->hxs[i]) return kc_fail(e, KC_ERUNTIME, "out of memory for a batch of inputs");
    }
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        int64_t out;
        if (__builtin_mul_overflow(o->out_rows, (int64_t)o->out_cols, &out)) out = -1;
        o->hy = alloc_rows(bs, out);
        o->hpred = alloc_rows(bs, out);
        if (!o->hy || !o->hpred)
            return kc_fail(e, KC_ERUNTIME, "out of memory for a batch of outputs");
    }
    /* the single-output view */
    const kc_session_output *o = &s->outs[0];
    s->loss = o->loss;
    s->has_loss = o->has_loss;
    s->sparse_targets = o->sparse_targets;
    s->one_hot = o->one_hot;
    s->out_cols = o->out_cols;
    s->out_rows = o->out_rows;
    s->hx = s->hxs[0];
    s->hy = o->hy;
    s->hpred = o->hpred;
    return KC_OK;
}

/* Which inputs and targets read x arrays: rescale and offset apply to them. */
static void mark_x_arrays(kc_session *s) {
    const kc_data_spec *d = &s->cfg->data;
    for (int i = 0; i < s->model->ninputs; i++)
        s->input_is_x[i] = 1;
    if (!d->node) return;
    const kc_source_spec *srcs[3] = {&d->train, &d->test, &d->validation};
    int have[3] = {d->has_train, d->has_test, d->has_validation};
    for (int pass = 0; pass < 2; pass++) {
        int n = pass ? s->nouts : s->model->ninputs;
        for (int i = 0; i < n; i++) {
            const char *name = pass ? d->targets[i].array : d->inputs[i].array;
            int is_x = !strcmp(name, "x");
            for (int t = 0; t < 3 && strcmp(name, "x") && strcmp(name, "y"); t++)
                for (int j = 0; have[t] && j < srcs[t]->nnamed; j++)
                    if (!strcmp(srcs[t]->named[j].name, name)) is_x = srcs[t]->named[j].is_x;
            if (pass)
                s->outs[i].target_is_x = is_x;
            else
                s->input_is_x[i] = is_x;
        }
    }
}

static int trained(const kc_param_ref *r) {
    return r->param->trainable && r->layer->trainable;
}

/* The weights regularizers, constraints and the optimizer act on: Keras
 * takes the trainable weights of trainable layers. *refs (the caller frees
 * it) holds every weight of the model, *np of them. */
static int collect_weights(kc_session *s, kc_param_ref **refs, int *np, kc_error *e) {
    int n = kc_model_params(s->model, NULL, 0);
    size_t cap = (size_t)(n ? n : 1);
    *refs = malloc(cap * sizeof **refs);
    s->reg = malloc(cap * sizeof *s->reg);
    s->wts = malloc(cap * sizeof *s->wts);
    s->grs = malloc(cap * sizeof *s->grs);
    if (!*refs || !s->reg || !s->wts || !s->grs)
        return kc_fail(e, KC_ERUNTIME, "out of memory for %d weights", n);
    *np = kc_model_params(s->model, *refs, n);
    for (int i = 0; i < *np; i++) {
        if (!trained(&(*refs)[i])) continue;
        kc_param *p = (*refs)[i].param;
        s->reg[s->nreg] = p;
        s->wts[s->nreg] = p->value;
        s->grs[s->nreg] = p->grad;
        s->nreg++;
    }
    s->has_penalty = kc_regularization_any(s->reg, s->nreg);
    return KC_OK;
}

/* Slots for the weights collect_weights chose, in the same order. */
static int build_optimizer(kc_session *s, const kc_param_ref *refs, int np, kc_error *e) {
    size_t cap = (size_t)(s->nreg ? s->nreg : 1);
    size_t *sizes = malloc(cap * sizeof *sizes);
    const char **names = malloc(cap * sizeof *names);
    int rc = KC_OK, k = 0;
    if (!sizes || !names) rc = kc_fail(e, KC_ERUNTIME, "out of memory for %d weights", s->nreg);
    for (int i = 0; !rc && i < np; i++) {
        if (!trained(&refs[i])) continue;
        sizes[k] = (size_t)kc_shape_numel(&refs[i].param->shape);
        names[k++] = refs[i].name;
    }
    if (!rc) rc = kc_optimizer_build(s->opt, &s->dev, k, sizes, names, e);
    free(sizes);
    free(names);
    return rc;
}

static int prepare_weights(kc_session *s, int training, kc_error *e) {
    kc_param_ref *refs = NULL;
    int np = 0;
    int rc = collect_weights(s, &refs, &np, e);
    if (!rc && training) rc = build_optimizer(s, refs, np, e);
    free(refs);
    return rc;
}

/* Callbacks and the history of completed epochs. */
static int prepare_training(kc_session *s, kc_error *e) {
    int rc = kc_callbacks_parse(s->cfg->fit.callbacks, &s->callbacks, e);
    if (rc) return rc;
    if (kc_callbacks_log_lr(s->callbacks) && kc_optimizer_has_schedule(s->opt))
        return kc_node_fail(
            e, s->cfg->fit.callbacks,
            "ReduceLROnPlateau and LearningRateScheduler set the learning rate, "
            "but the optimizer's learning_rate is a schedule; use one or the other");
    /* room for the first epochs; kc_session_history_push grows it */
    s->nhistory = 0;
    s->history_cap = s->cfg->fit.epochs < 16 ? s->cfg->fit.epochs : 16;
    s->history = calloc((size_t)(s->history_cap ? s->history_cap : 1), sizeof *s->history);
    if (!s->history) return kc_fail(e, KC_ERUNTIME, "out of memory");
    return KC_OK;
}

kc_logs *kc_session_history_push(kc_session *s, const kc_logs *l) {
    if (s->nhistory >= s->cfg->fit.epochs) return NULL;
    if (s->nhistory == s->history_cap) {
        int cap =
            s->history_cap > s->cfg->fit.epochs / 2 ? s->cfg->fit.epochs : s->history_cap * 2 + 1;
        kc_logs *h = realloc(s->history, (size_t)cap * sizeof *h);
        if (!h) return NULL;
        s->history = h;
        s->history_cap = cap;
    }
    s->history[s->nhistory] = *l;
    return &s->history[s->nhistory++];
}

/* The compile settings and the data, checked against the model. */
static int prepare_data(kc_session *s, int need, int training, kc_error *e) {
    int rc = kc_session_compile(s, training, need, e);
    if (rc) return rc;
    mark_x_arrays(s);
    if (need && (rc = kc_session_load_data(s, need, e))) return rc;
    if (s->has_train && (rc = kc_session_check_split(s, KC_SPLIT_TRAIN, e))) return rc;
    if (s->has_val == 1 && (rc = kc_session_check_split(s, KC_SPLIT_VAL, e))) return rc;
    if (s->has_test && (rc = kc_session_check_split(s, KC_SPLIT_TEST, e))) return rc;
    return KC_OK;
}

/* The model's buffers and initial weights, and the outputs' losses,
 * metrics and running sums. */
static int prepare_device(kc_session *s, int training, kc_error *e) {
    int rc = kc_model_plan(s->model, &s->dev, (int)s->batch_size, training, e);
    if (rc || (rc = kc_model_init_weights(s->model, s->seed, e))) return rc;
    return kc_session_plan_outputs(s, e);
}

int kc_session_open(kc_session *s, kc_config *cfg, const kc_run_opts *o, int need, int training,
                    kc_error *e) {
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->model = cfg->model;
    s->threads = o->threads;
    s->seed = (uint64_t)(o->has_seed ? o->seed : cfg->fit.seed);
    s->batch_size = o->batch_size ? o->batch_size : cfg->fit.batch_size;
    /* batches and epochs are counted in ints on the device and in the hooks */
    if (s->batch_size < 1 || s->batch_size > INT_MAX)
        return kc_fail(e, KC_ECONFIG, "%s: batch size %lld is outside 1..%d", cfg->path,
                       s->batch_size, INT_MAX);
    if (training && (cfg->fit.epochs < 1 || cfg->fit.epochs > INT_MAX))
        return kc_fail(e, KC_ECONFIG, "%s: epochs %lld is outside 1..%d", cfg->path,
                       (long long)cfg->fit.epochs, INT_MAX);
    kc_device_opts dopts = {.device = o->device, .threads = o->threads};
    int rc = kc_device_open_name(&s->dev, o->backend, &dopts, e);
    if (rc || (rc = prepare_data(s, need, training, e))) return rc;
    if ((rc = prepare_device(s, training, e))) return rc;
    if ((rc = alloc_staging(s, e)) || (rc = prepare_weights(s, training, e))) return rc;
    if (training && (rc = prepare_training(s, e))) return rc;
    /* a run that loads its weights next has its statistics there */
    if (training && !o->loads_weights && (rc = kc_session_adapt(s, e))) return rc;
    return KC_OK;
}

/* Device buffers go back while the device is still open. */
static void release_device(kc_session *s) {
    kc_optimizer_free(s->opt);
    s->opt = NULL;
    if (s->dev.be) kc_session_free_outputs(s);
    if (s->model && s->model->dev == &s->dev) kc_model_unplan(s->model);
    kc_device_close(&s->dev);
}

void kc_session_close(kc_session *s) {
    release_device(s);
    kc_callbacks_free(s->callbacks);
    free(s->history);
    free(s->snapshot);
    kc_session_free_data(s);
    for (int i = 0; i < KC_MODEL_MAX_IO; i++)
        free(s->hxs[i]);
    for (int k = 0; k < s->nouts; k++) {
        free(s->outs[k].hy);
        free(s->outs[k].hpred);
    }
    free(s->outs);
    free(s->idx);
    free(s->reg);
    free(s->wts);
    free(s->grs);
    memset(s, 0, sizeof *s);
}
