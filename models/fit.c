#include "models/fit.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"

/* ---------------------------------------------------------------- data --- */

static int load_source(const kc_source_spec *src, const char *what, kc_array *x, kc_array *y, kc_error *e) {
    int rc;
    if (src->csv_path) {
        rc = kc_csv_load(src->csv_path, src->label_column ? src->label_column : "-1", src->csv_header, x, y, e);
    } else {
        rc = kc_array_load(src->x_path, src->x_key, x, e);
        if (!rc) rc = kc_array_load(src->y_path, src->y_key, y, e);
    }
    if (rc) return kc_node_fail(e, src->node, "cannot load the %s data: %s", what, e->msg);
    if (kc_array_rows(x) != kc_array_rows(y)) {
        rc = kc_node_fail(e, src->node, "the %s data has %lld samples in x but %lld labels in y", what,
                          (long long)kc_array_rows(x), (long long)kc_array_rows(y));
        kc_array_free(x);
        kc_array_free(y);
    }
    return rc;
}

static int load_data(kc_session *s, int need, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    if (!d->node)
        return kc_fail(e, KC_ECONFIG, "%s: the file has no `data:` section; it is needed to train or evaluate",
                       s->cfg->path);
    int rc;
    if (d->dataset) {
        rc = kc_dataset_load(d->dataset, d->path, &s->x_train, &s->y_train, &s->x_test, &s->y_test, e);
        if (rc) return rc;
        s->has_train = s->has_test = 1;
        if (!(need & KC_NEED_TRAIN)) {
            kc_array_free(&s->x_train);
            kc_array_free(&s->y_train);
            s->has_train = 0;
        }
    } else {
        if ((need & KC_NEED_TRAIN) && d->has_train) {
            if ((rc = load_source(&d->train, "train", &s->x_train, &s->y_train, e))) return rc;
            s->has_train = 1;
        }
        if (d->has_test && ((need & KC_NEED_TEST) || d->validation_is_test)) {
            if ((rc = load_source(&d->test, "test", &s->x_test, &s->y_test, e))) return rc;
            s->has_test = 1;
        }
    }
    if ((need & KC_NEED_TRAIN) && !s->has_train)
        return kc_node_fail(e, d->node, "training needs data: add `dataset:` or `train:` to the data section");
    if ((need & KC_NEED_TEST) && !s->has_test)
        return kc_node_fail(e, d->node, "evaluation needs test data: add `dataset:` or `test:` to the data section");
    if (need & KC_NEED_TRAIN) {
        if (d->has_validation) {
            if ((rc = load_source(&d->validation, "validation", &s->x_val, &s->y_val, e))) return rc;
            s->has_val = 1;
        } else if (s->cfg->fit.validation_split > 0) {
            int64_t n = kc_array_rows(&s->x_train);
            /* Keras: the last n - floor(n (1 - split)) samples, before shuffling */
            int64_t keep = (int64_t)floor((double)n * (1.0 - s->cfg->fit.validation_split));
            if (keep < 1 || keep == n)
                return kc_node_fail(e, s->cfg->fit.validation_split_node,
                                    "validation_split %g of %lld samples leaves %s", s->cfg->fit.validation_split,
                                    (long long)n, keep < 1 ? "no training data" : "no validation data");
            if ((rc = kc_array_split_tail(&s->x_train, n - keep, &s->x_val, e))) return rc;
            if ((rc = kc_array_split_tail(&s->y_train, n - keep, &s->y_val, e))) return rc;
            s->has_val = 1;
        } else if (d->validation_is_test) {
            if (!s->has_test)
                return kc_node_fail(e, d->node, "`validation: test` needs test data in the data section");
            s->has_val = 2; /* borrows the test arrays */
        }
    }
    return KC_OK;
}

static const char *shape_s(const kc_shape *sh, char *buf, size_t n) { return kc_shape_str(sh, 1, buf, n); }

/* Per-sample shape of x after the data section's reshape must be the model's input. */
static int check_x(kc_session *s, kc_array *x, const char *what, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    const kc_shape *in = &s->model->input_shape;
    kc_shape row = {0};
    row.rank = x->shape.rank - 1;
    for (int i = 1; i < x->shape.rank; i++) row.d[i - 1] = x->shape.d[i];
    char a[128], b[128];
    if (d->has_reshape) {
        if (kc_shape_numel(&d->reshape) != kc_array_row_size(x))
            return kc_node_fail(e, d->reshape_node, "reshape %s does not fit the %s samples of shape %s",
                                shape_s(&d->reshape, a, sizeof a), what, shape_s(&row, b, sizeof b));
        row = d->reshape;
    }
    if (!kc_shape_equal(&row, in)) {
        if (kc_shape_numel(&row) == kc_shape_numel(in) && !d->has_reshape) {
            char list[128];
            size_t used = 0;
            for (int i = 0; i < in->rank; i++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%lld", i ? ", " : "[",
                                         (long long)in->d[i]);
            snprintf(list + used, sizeof list - used, "]");
            return kc_node_fail(e, d->node,
                                "the %s samples have shape %s but the model input is %s: add `reshape: %s` "
                                "to the data section",
                                what, shape_s(&row, a, sizeof a), shape_s(in, b, sizeof b), list);
        }
        return kc_node_fail(e, s->model->input_node, "the model input %s does not fit the %s samples of shape %s",
                            shape_s(in, a, sizeof a), what, shape_s(&row, b, sizeof b));
    }
    x->shape.rank = 1 + row.rank;
    for (int i = 0; i < row.rank; i++) x->shape.d[i + 1] = row.d[i];
    return KC_OK;
}

/* Labels are class indices (and may become one-hot) or dense targets shaped like the output. */
static int check_y(kc_session *s, const kc_array *y, const char *what, kc_error *e) {
    int64_t per = kc_array_row_size(y);
    int64_t out_numel = s->out_rows * s->out_cols;
    const kc_node *at = s->cfg->data.node;
    if (s->sparse_targets) {
        if (per != s->out_rows)
            return kc_node_fail(e, at, "the %s labels have %lld values per sample, but the loss %s expects one class "
                                       "index per output row (%lld)",
                                what, (long long)per, s->loss.name, (long long)s->out_rows);
        int64_t n = kc_array_rows(y) * per;
        for (int64_t i = 0; i < n; i++) {
            double v = y->dtype == KC_DT_U8 ? ((const uint8_t *)y->data)[i] : ((const float *)y->data)[i];
            if (!(v >= 0 && v < s->out_cols && v == floor(v)))
                return kc_node_fail(e, at, "%s label %g of sample %lld is not a class index in [0, %d): the model "
                                           "has %d outputs",
                                    what, v, (long long)(i / per), s->out_cols, s->out_cols);
        }
        return KC_OK;
    }
    if (per != out_numel) {
        char a[128];
        return kc_node_fail(e, at, "the %s targets have %lld values per sample but the model output %s has %lld; "
                                   "for class labels use sparse_categorical_crossentropy or `one_hot: true`",
                            what, (long long)per, shape_s(kc_model_output_shape(s->model), a, sizeof a),
                            (long long)out_numel);
    }
    return KC_OK;
}

/* ------------------------------------------------------------- session --- */

static int parse_compile(kc_session *s, int training, int need, kc_error *e) {
    kc_config *c = s->cfg;
    int rc;
    const kc_shape *out = kc_model_output_shape(s->model);
    s->out_cols = out->rank ? (int)out->d[out->rank - 1] : 1;
    s->out_rows = kc_shape_numel(out) / s->out_cols;
    if (c->loss) {
        if ((rc = kc_loss_parse(c->loss, &s->loss, e))) return rc;
        s->has_loss = 1;
    } else if (!training && !need) {
        return KC_OK; /* prediction needs no loss */
    } else {
        return kc_node_fail(e, c->compile_node ? c->compile_node : c->doc->root,
                            "no loss given: add `compile: {loss: ...}` (e.g. sparse_categorical_crossentropy)");
    }
    int sparse_loss = kc_loss_sparse_targets(&s->loss);
    int ce = !strcmp(kc_loss_class_name(&s->loss), "CategoricalCrossentropy");
    int want_one_hot = c->data.one_hot == 1 || (c->data.one_hot == -1 && ce);
    s->sparse_targets = sparse_loss || want_one_hot;
    s->one_hot = !sparse_loss && want_one_hot;
    if (c->metrics) {
        kc_node *list = c->metrics;
        size_t n = list->kind == KC_NODE_SEQ ? list->n : 1;
        if (n > KC_MAX_METRICS) return kc_node_fail(e, list, "at most %d metrics", KC_MAX_METRICS);
        for (size_t i = 0; i < n; i++) {
            kc_node *mn = list->kind == KC_NODE_SEQ ? list->items[i] : list;
            /* metrics see one-hot targets when the labels were expanded */
            rc = kc_metric_parse(mn, s->out_cols, s->sparse_targets && !s->one_hot, &s->metrics[i], e);
            if (rc) return rc;
            s->nmetrics++;
        }
    }
    if (training) {
        if ((rc = kc_optimizer_parse(c->optimizer, &s->opt, e))) return rc;
    }
    return KC_OK;
}

static int alloc_staging(kc_session *s, kc_error *e) {
    size_t bs = (size_t)s->batch_size;
    size_t in = (size_t)kc_shape_numel(&s->model->input_shape);
    size_t out = (size_t)(s->out_rows * s->out_cols);
    s->hx = malloc(bs * in * sizeof(float));
    s->hy = malloc(bs * out * sizeof(float));
    s->hpred = malloc(bs * out * sizeof(float));
    s->hz = malloc(bs * out * sizeof(float));
    s->hgrad = malloc(bs * out * sizeof(float));
    if (!s->hx || !s->hy || !s->hpred || !s->hz || !s->hgrad) return kc_fail(e, KC_ERUNTIME, "out of memory");
    return KC_OK;
}

static int build_optimizer(kc_session *s, kc_error *e) {
    kc_param_ref refs[256];
    int n = kc_model_params(s->model, refs, 256);
    if (n > 256) return kc_fail(e, KC_ERUNTIME, "too many weights (%d)", n);
    size_t sizes[256];
    const char *names[256];
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!refs[i].param->trainable || !refs[i].layer->trainable) continue;
        sizes[k] = (size_t)kc_shape_numel(&refs[i].param->shape);
        names[k] = strdup(refs[i].name);
        k++;
    }
    int rc = kc_optimizer_build(s->opt, s->be, k, sizes, names, e);
    for (int i = 0; i < k; i++) free((void *)names[i]);
    return rc;
}

int kc_session_open(kc_session *s, kc_config *cfg, const kc_run_opts *o, int need, int training,
                    kc_error *e) {
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->model = cfg->model;
    s->be = kc_backend_by_name(o->backend ? o->backend : "cpu");
    if (!s->be) return kc_fail(e, KC_ECONFIG, "unknown backend '%s' (use cpu or reference)", o->backend);
    s->threads = o->threads;
    s->be->set_threads(o->threads);
    s->seed = (uint64_t)(o->has_seed ? o->seed : cfg->fit.seed);
    s->batch_size = o->batch_size ? o->batch_size : cfg->fit.batch_size;
    int rc;
    if ((rc = parse_compile(s, training, need, e))) return rc;
    if (need && (rc = load_data(s, need, e))) return rc;
    const char *names[3] = {"training", "validation", "test"};
    kc_array *xs[3] = {&s->x_train, &s->x_val, &s->x_test}, *ys[3] = {&s->y_train, &s->y_val, &s->y_test};
    int have[3] = {s->has_train, s->has_val == 1, s->has_test};
    for (int i = 0; i < 3; i++) {
        if (!have[i]) continue;
        if ((rc = check_x(s, xs[i], names[i], e))) return rc;
        if ((rc = check_y(s, ys[i], names[i], e))) return rc;
    }
    if ((rc = kc_model_plan(s->model, s->be, (int)s->batch_size, training, e))) return rc;
    kc_model_init_weights(s->model, s->seed);
    if ((rc = alloc_staging(s, e))) return rc;
    if (training && (rc = build_optimizer(s, e))) return rc;
    return KC_OK;
}

void kc_session_close(kc_session *s) {
    kc_optimizer_free(s->opt);
    kc_array_free(&s->x_train);
    kc_array_free(&s->y_train);
    kc_array_free(&s->x_test);
    kc_array_free(&s->y_test);
    if (s->has_val == 1) {
        kc_array_free(&s->x_val);
        kc_array_free(&s->y_val);
    }
    free(s->hx);
    free(s->hy);
    free(s->hpred);
    free(s->hz);
    free(s->hgrad);
    free(s->idx);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------- batches --- */

static void gather_y(kc_session *s, const kc_array *y, const int64_t *idx, int n) {
    if (s->one_hot) {
        /* class indices -> one-hot rows */
        int64_t rows = (int64_t)n * s->out_rows;
        float *tmp = s->hz; /* free until the forward pass */
        kc_array_gather(y, idx, n, 1.0f, 0.0f, tmp);
        memset(s->hy, 0, (size_t)(rows * s->out_cols) * sizeof(float));
        for (int64_t r = 0; r < rows; r++) s->hy[r * s->out_cols + (int64_t)tmp[r]] = 1.0f;
    } else {
        kc_array_gather(y, idx, n, 1.0f, 0.0f, s->hy);
    }
}

static int fused_logits(const kc_session *s) {
    const kc_layer *last = s->model->layers[s->model->nlayers - 1];
    return !s->loss.from_logits && kc_loss_has_logits_form(&s->loss) &&
           last->activation.act != KC_ACT_LINEAR && last->activation.act == kc_loss_logits_activation(&s->loss);
}

/* Forward on rows idx[0..n) of (x, y); fills hpred and returns the batch loss.
 * With grad, also the loss gradient (uploaded into the model's dy buffer). */
static double run_batch(kc_session *s, const kc_array *x, const kc_array *y, const int64_t *idx, int n,
                        const kc_exec *ex, int grad, int *fused_out) {
    kc_model *m = s->model;
    const kc_data_spec *d = &s->cfg->data;
    size_t in = (size_t)kc_shape_numel(&m->input_shape);
    kc_array_gather(x, idx, n, (float)d->rescale, (float)d->offset, s->hx);
    s->be->upload(m->x, s->hx, (size_t)n * in * sizeof(float));
    gather_y(s, y, idx, n);
    const float *out = kc_model_forward(m, ex);
    int rows = (int)(n * s->out_rows), c = s->out_cols;
    size_t bytes = (size_t)rows * (size_t)c * sizeof(float);
    s->be->download(s->hpred, out, bytes);
    int fused = fused_logits(s);
    double loss;
    const float *target = s->hy;
    if (fused) {
        s->be->download(s->hz, m->z[m->nlayers - 1], bytes);
        loss = kc_loss_compute(&s->loss, s->hz, target, rows, c, 1, NULL, grad ? s->hgrad : NULL);
    } else {
        loss = kc_loss_compute(&s->loss, s->hpred, target, rows, c, 0, NULL, grad ? s->hgrad : NULL);
    }
    if (grad) s->be->upload(kc_model_dy(m), s->hgrad, bytes);
    *fused_out = fused;
    return loss;
}

static void update_metrics(kc_session *s, int n) {
    int rows = (int)(n * s->out_rows);
    for (int i = 0; i < s->nmetrics; i++) kc_metric_update(&s->metrics[i], s->hpred, s->hy, rows, s->out_cols);
}

static void logs_add(kc_logs *l, const char *prefix, const char *key, double v) {
    if (l->n >= KC_MAX_LOGS) return;
    snprintf(l->keys[l->n], sizeof l->keys[0], "%s%s", prefix, key);
    l->vals[l->n++] = v;
}

static void logs_collect(kc_session *s, kc_logs *l, const char *prefix, double loss) {
    logs_add(l, prefix, "loss", loss);
    for (int i = 0; i < s->nmetrics; i++)
        logs_add(l, prefix, kc_metric_name(&s->metrics[i]), kc_metric_result(&s->metrics[i]));
}

int kc_evaluate(kc_session *s, const kc_array *x, const kc_array *y, const kc_hooks *h, kc_logs *out,
                kc_error *e) {
    int64_t n = kc_array_rows(x);
    int64_t bs = s->batch_size;
    int64_t steps = (n + bs - 1) / bs;
    int64_t *idx = malloc((size_t)bs * sizeof *idx);
    if (!idx) return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int i = 0; i < s->nmetrics; i++) kc_metric_reset(&s->metrics[i]);
    double loss_sum = 0, count = 0;
    kc_exec ex = {.be = s->be, .training = 0, .seed = s->seed, .step = (uint64_t)s->step};
    if (h && h->epoch_begin) h->epoch_begin(h->ctx, -1, 0, steps);
    for (int64_t b = 0; b < steps; b++) {
        int nb = (int)((b + 1) * bs <= n ? bs : n - b * bs);
        for (int i = 0; i < nb; i++) idx[i] = b * bs + i;
        ex.batch = nb;
        int fused;
        double loss = run_batch(s, x, y, idx, nb, &ex, 0, &fused);
        loss_sum += loss * nb;
        count += nb;
        update_metrics(s, nb);
        if (h && h->batch_end) {
            kc_logs l = {0};
            logs_collect(s, &l, "", loss_sum / count);
            h->batch_end(h->ctx, b + 1, steps, &l);
        }
    }
    free(idx);
    memset(out, 0, sizeof *out);
    logs_collect(s, out, "", count ? loss_sum / count : 0);
    if (h && h->epoch_end) h->epoch_end(h->ctx, -1, steps, out);
    return KC_OK;
}

int kc_predict(kc_session *s, const kc_array *x, float **out, kc_error *e) {
    int64_t n = kc_array_rows(x), bs = s->batch_size;
    size_t per = (size_t)(s->out_rows * s->out_cols);
    size_t in = (size_t)kc_shape_numel(&s->model->input_shape);
    float *res = malloc((size_t)n * per * sizeof(float));
    int64_t *idx = malloc((size_t)bs * sizeof *idx);
    if (!res || !idx) {
        free(res);
        free(idx);
        return kc_fail(e, KC_ERUNTIME, "out of memory for %lld predictions", (long long)n);
    }
    kc_exec ex = {.be = s->be, .training = 0, .seed = s->seed};
    for (int64_t b = 0; b * bs < n; b++) {
        int nb = (int)((b + 1) * bs <= n ? bs : n - b * bs);
        for (int i = 0; i < nb; i++) idx[i] = b * bs + i;
        kc_array_gather(x, idx, nb, (float)s->cfg->data.rescale, (float)s->cfg->data.offset, s->hx);
        s->be->upload(s->model->x, s->hx, (size_t)nb * in * sizeof(float));
        ex.batch = nb;
        const float *o = kc_model_forward(s->model, &ex);
        s->be->download(res + (size_t)(b * bs) * per, o, (size_t)nb * per * sizeof(float));
    }
    free(idx);
    *out = res;
    return KC_OK;
}

/* ----------------------------------------------------------------- fit --- */

static void permutation(int64_t *p, int64_t n, uint64_t seed, int64_t epoch, int shuffle) {
    for (int64_t i = 0; i < n; i++) p[i] = i;
    if (!shuffle) return;
    uint64_t stream = kc_rng_stream("shuffle", (uint64_t)epoch, 0);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)kc_rng_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

static int mkdir_p(const char *dir, kc_error *e) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) && errno != EEXIST)
            return kc_fail(e, KC_ERUNTIME, "cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST)
        return kc_fail(e, KC_ERUNTIME, "cannot create directory %s: %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) || !S_ISDIR(st.st_mode))
        return kc_fail(e, KC_ERUNTIME, "%s exists and is not a directory", buf);
    return KC_OK;
}

/* The whole history, rewritten atomically each epoch (Keras CSVLogger's columns:
 * epoch from 0, then the keys in alphabetical order). */
typedef struct history {
    int rows, cap;
    kc_logs *logs;
} history;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int history_write(const history *h, const char *path, kc_error *e) {
    if (h->rows == 0) return KC_OK;
    const kc_logs *first = &h->logs[0];
    const char *keys[KC_MAX_LOGS];
    for (int i = 0; i < first->n; i++) keys[i] = first->keys[i];
    qsort(keys, (size_t)first->n, sizeof *keys, cmp_str);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return kc_fail(e, KC_ERUNTIME, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "epoch");
    for (int i = 0; i < first->n; i++) fprintf(f, ",%s", keys[i]);
    fprintf(f, "\n");
    for (int r = 0; r < h->rows; r++) {
        fprintf(f, "%d", r);
        for (int i = 0; i < first->n; i++) {
            double v = NAN;
            for (int j = 0; j < h->logs[r].n; j++)
                if (!strcmp(h->logs[r].keys[j], keys[i])) v = h->logs[r].vals[j];
            fprintf(f, ",%.17g", v);
        }
        fprintf(f, "\n");
    }
    int bad = fflush(f) != 0 || ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        unlink(tmp);
        return kc_fail(e, KC_ERUNTIME, "cannot write %s: %s", path, strerror(errno));
    }
    return KC_OK;
}

static double find_log(const kc_logs *l, const char *key) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->keys[i], key)) return l->vals[i];
    return NAN;
}

static void note(const kc_hooks *h, const char *fmt, const char *a, const char *b) {
    if (!h || !h->note) return;
    char msg[8400];
    snprintf(msg, sizeof msg, fmt, a, b);
    h->note(h->ctx, msg);
}

int kc_fit(kc_session *s, const char *out_dir, const kc_hooks *h, kc_error *e) {
    kc_fit_spec *f = &s->cfg->fit;
    int rc = mkdir_p(out_dir, e);
    if (rc) return rc;
    int64_t n = kc_array_rows(&s->x_train);
    int64_t bs = s->batch_size;
    int64_t full_steps = (n + bs - 1) / bs;
    int64_t steps = f->steps_per_epoch ? f->steps_per_epoch : full_steps;
    s->idx = malloc((size_t)n * sizeof *s->idx);
    history hist = {0};
    hist.logs = calloc((size_t)f->epochs, sizeof *hist.logs);
    if (!s->idx || !hist.logs) {
        free(hist.logs);
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    char p_hist[4200], p_last[4200], p_best[4200];
    snprintf(p_hist, sizeof p_hist, "%s/history.csv", out_dir);
    snprintf(p_last, sizeof p_last, "%s/last.safetensors", out_dir);
    snprintf(p_best, sizeof p_best, "%s/best.safetensors", out_dir);

    kc_param_ref refs[256];
    int np = kc_model_params(s->model, refs, 256);
    float *wts[256], *grs[256];
    int k = 0;
    for (int i = 0; i < np && i < 256; i++) {
        if (!refs[i].param->trainable || !refs[i].layer->trainable) continue;
        wts[k] = refs[i].param->value;
        grs[k] = refs[i].param->grad;
        k++;
    }
    double best = INFINITY;
    int saved_best = 0;
    const char *monitor = s->has_val ? "val_loss" : "loss";
    for (int64_t epoch = s->epoch; epoch < f->epochs; epoch++) {
        if (h && h->epoch_begin) h->epoch_begin(h->ctx, (int)epoch, (int)f->epochs, steps);
        for (int i = 0; i < s->nmetrics; i++) kc_metric_reset(&s->metrics[i]);
        double loss_sum = 0, count = 0;
        int64_t perm_epoch = -1;
        for (int64_t b = 0; b < steps; b++) {
            /* steps beyond one pass continue on the next permutation */
            int64_t pass = b / full_steps, bi = b % full_steps;
            if (pass != perm_epoch) {
                permutation(s->idx, n, s->seed, epoch * 1000003 + pass, f->shuffle);
                perm_epoch = pass;
            }
            int nb = (int)((bi + 1) * bs <= n ? bs : n - bi * bs);
            kc_exec ex = {.be = s->be, .batch = nb, .training = 1, .seed = s->seed, .step = (uint64_t)s->step};
            int fused;
            double loss = run_batch(s, &s->x_train, &s->y_train, s->idx + bi * bs, nb, &ex, 1, &fused);
            kc_model_backward(s->model, &ex, fused);
            kc_optimizer_step(s->opt, wts, (const float *const *)grs);
            update_metrics(s, nb);
            loss_sum += loss * nb;
            count += nb;
            s->step++;
            if (h && h->batch_end) {
                kc_logs l = {0};
                logs_collect(s, &l, "", loss_sum / count);
                h->batch_end(h->ctx, b + 1, steps, &l);
            }
        }
        kc_logs logs = {0};
        logs_collect(s, &logs, "", loss_sum / count);
        if (s->has_val) {
            kc_logs vl;
            const kc_array *xv = s->has_val == 1 ? &s->x_val : &s->x_test;
            const kc_array *yv = s->has_val == 1 ? &s->y_val : &s->y_test;
            if ((rc = kc_evaluate(s, xv, yv, NULL, &vl, e))) goto done;
            for (int i = 0; i < vl.n; i++) logs_add(&logs, "val_", vl.keys[i], vl.vals[i]);
        }
        s->epoch = epoch + 1;
        hist.logs[hist.rows++] = logs;
        if (h && h->epoch_end) h->epoch_end(h->ctx, (int)epoch, steps, &logs);
        if ((rc = history_write(&hist, p_hist, e))) goto done;
        if ((rc = kc_checkpoint_save(s, p_last, &logs, e))) goto done;
        /* like Keras 3's ModelCheckpoint: the first epoch always counts as an improvement */
        double cur = find_log(&logs, monitor);
        if (!saved_best || cur < best) {
            best = cur;
            saved_best = 1;
            if ((rc = kc_checkpoint_save(s, p_best, &logs, e))) goto done;
        }
    }
    char saved[8600];
    snprintf(saved, sizeof saved, "Saved %s, %s (lowest %s) and %s", p_last, p_best, monitor, p_hist);
    note(h, "%s%s", saved, "");
done:
    free(hist.logs);
    return rc;
}
