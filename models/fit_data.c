/* The session's data: the arrays of each split (datasets, plain files, CSV,
 * named arrays), validation_split, the feeds that map them onto the model's
 * inputs and outputs, and the checks that shapes and labels fit the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/fit_internal.h"

/* Loads a source's arrays: x and y (plain files or a CSV) and the named ones. */
static int load_source(const kc_source_spec *src, const char *what, kc_array *x, kc_array *y,
                       kc_named_arrays *named, kc_error *e) {
    int rc = KC_OK;
    if (src->csv_path) {
        rc = kc_csv_load(src->csv_path, src->label_column ? src->label_column : "-1",
                         src->csv_header, x, y, e);
    } else {
        if (src->x_path) rc = kc_array_load(src->x_path, src->x_key, x, e);
        if (!rc && src->y_path) rc = kc_array_load(src->y_path, src->y_key, y, e);
    }
    for (int i = 0; !rc && i < src->nnamed; i++) {
        const kc_array_spec *a = &src->named[i];
        snprintf(named->names[i], sizeof named->names[i], "%s", a->name);
        named->is_x[i] = a->is_x;
        rc = kc_array_load(a->path, a->key, &named->arr[i], e);
        named->n = i + 1;
    }
    if (rc) return kc_node_fail(e, src->node, "cannot load the %s data: %s", what, e->msg);
    /* every array of a source holds the same samples, and some */
    const kc_array *all[2 + KC_DATA_MAX_ARRAYS];
    const char *names[2 + KC_DATA_MAX_ARRAYS], *paths[2 + KC_DATA_MAX_ARRAYS];
    int n = 0;
    if (x->data)
        all[n] = x, names[n] = "x", paths[n++] = src->csv_path ? src->csv_path : src->x_path;
    if (y->data)
        all[n] = y, names[n] = "y", paths[n++] = src->csv_path ? src->csv_path : src->y_path;
    for (int i = 0; i < named->n; i++)
        all[n] = &named->arr[i], names[n] = named->names[i], paths[n++] = src->named[i].path;
    for (int i = 0; i < n; i++) {
        int64_t r = kc_array_rows(all[i]);
        char sh[256];
        if (r == 0)
            return kc_node_fail(e, src->node, "the %s data in %s has no samples (shape %s)", what,
                                paths[i], kc_shape_str(&all[i]->shape, 0, sh, sizeof sh));
        if (r != kc_array_rows(all[0]))
            return kc_node_fail(e, src->node, "the %s data has %lld samples in %s but %lld in %s",
                                what, (long long)kc_array_rows(all[0]), names[0], (long long)r,
                                names[i]);
    }
    return KC_OK;
}

static void named_free(kc_named_arrays *n) {
    for (int i = 0; i < n->n; i++)
        kc_array_free(&n->arr[i]);
    memset(n, 0, sizeof *n);
}

void kc_session_free_data(kc_session *s) {
    kc_array_free(&s->x_train);
    kc_array_free(&s->y_train);
    kc_array_free(&s->x_test);
    kc_array_free(&s->y_test);
    kc_array_free(&s->x_val);
    kc_array_free(&s->y_val);
    for (int i = 0; i < 3; i++)
        named_free(&s->named[i]);
}

/* Keras's validation_split: the last fraction of every training array. */
static int split_validation(kc_session *s, kc_error *e) {
    const kc_fit_spec *f = &s->cfg->fit;
    kc_named_arrays *tr = &s->named[KC_SPLIT_TRAIN], *va = &s->named[KC_SPLIT_VAL];
    const kc_array *any = s->x_train.data   ? &s->x_train
                          : s->y_train.data ? &s->y_train
                                            : &tr->arr[0];
    int64_t n = kc_array_rows(any);
    /* Keras: the last n - floor(n (1 - split)) samples, before shuffling */
    int64_t keep = (int64_t)floor((double)n * (1.0 - f->validation_split));
    if (keep < 1 || keep == n)
        return kc_node_fail(e, f->validation_split_node,
                            "validation_split %g of %lld samples leaves %s", f->validation_split,
                            (long long)n, keep < 1 ? "no training data" : "no validation data");
    int rc;
    if (s->x_train.data && (rc = kc_array_split_tail(&s->x_train, n - keep, &s->x_val, e)))
        return rc;
    if (s->y_train.data && (rc = kc_array_split_tail(&s->y_train, n - keep, &s->y_val, e)))
        return rc;
    for (int i = 0; i < tr->n; i++) {
        snprintf(va->names[i], sizeof va->names[i], "%s", tr->names[i]);
        va->is_x[i] = tr->is_x[i];
        if ((rc = kc_array_split_tail(&tr->arr[i], n - keep, &va->arr[i], e))) return rc;
        va->n = i + 1;
    }
    s->has_val = 1;
    return KC_OK;
}

/* A dataset (both splits at once) or the train and test sources. */
static int load_splits(kc_session *s, int need, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    int rc;
    if (d->dataset) {
        rc = kc_dataset_load(d->dataset, d->path, &s->x_train, &s->y_train, &s->x_test, &s->y_test,
                             e);
        if (rc) return rc;
        s->has_train = s->has_test = 1;
        if (!(need & KC_NEED_TRAIN)) {
            kc_array_free(&s->x_train);
            kc_array_free(&s->y_train);
            s->has_train = 0;
        }
        return KC_OK;
    }
    if ((need & KC_NEED_TRAIN) && d->has_train) {
        if ((rc = load_source(&d->train, "train", &s->x_train, &s->y_train,
                              &s->named[KC_SPLIT_TRAIN], e)))
            return rc;
        s->has_train = 1;
    }
    if (d->has_test && ((need & KC_NEED_TEST) || d->validation_is_test)) {
        if ((rc = load_source(&d->test, "test", &s->x_test, &s->y_test, &s->named[KC_SPLIT_TEST],
                              e)))
            return rc;
        s->has_test = 1;
    }
    return KC_OK;
}

/* Validation data: its own source, validation_split, or the test arrays. */
static int load_validation(kc_session *s, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    int rc;
    if (d->has_validation) {
        if ((rc = load_source(&d->validation, "validation", &s->x_val, &s->y_val,
                              &s->named[KC_SPLIT_VAL], e)))
            return rc;
        s->has_val = 1;
    } else if (s->cfg->fit.validation_split > 0) {
        if ((rc = split_validation(s, e))) return rc;
    } else if (d->validation_is_test) {
        if (!s->has_test)
            return kc_node_fail(e, d->node,
                                "`validation: test` needs test data in the data section");
        s->has_val = 2; /* borrows the test arrays */
    }
    return KC_OK;
}

int kc_session_load_data(kc_session *s, int need, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    if (!d->node)
        return kc_fail(e, KC_ECONFIG,
                       "%s: the file has no `data:` section; it is needed to train or evaluate",
                       s->cfg->path);
    int rc = load_splits(s, need, e);
    if (rc) return rc;
    if ((need & KC_NEED_TRAIN) && !s->has_train)
        return kc_node_fail(e, d->node,
                            "training needs data: add `dataset:` or `train:` to the data section");
    if ((need & KC_NEED_TEST) && !s->has_test)
        return kc_node_fail(
            e, d->node,
            "evaluation needs test data: add `dataset:` or `test:` to the data section");
    return need & KC_NEED_TRAIN ? load_validation(s, e) : KC_OK;
}

static const kc_array *array_named(const kc_array *x, const kc_array *y, const kc_named_arrays *nm,
                                   const char *name) {
    if (!strcmp(name, "x") && x && x->data) return x;
    if (!strcmp(name, "y") && y && y->data) return y;
    for (int i = 0; nm && i < nm->n; i++)
        if (!strcmp(nm->names[i], name)) return &nm->arr[i];
    return NULL;
}

/* Resolves the data section's choices against one split's arrays. */
int kc_feed_arrays(kc_session *s, const kc_array *x, const kc_array *y, const kc_named_arrays *nm,
                   const char *what, kc_feed *f, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    const kc_model *m = s->model;
    memset(f, 0, sizeof *f);
    f->rows = -1;
    for (int i = 0; i < m->ninputs; i++) {
        const char *name = d->inputs[i].array;
        if (!(f->x[i] = array_named(x, y, nm, name)))
            return kc_node_fail(e, d->node, "the %s data has no array '%s' for model input '%s'",
                                what, name, m->inputs[i].name);
        f->rows = kc_array_rows(f->x[i]);
    }
    for (int k = 0; k < s->nouts; k++) {
        if (!s->outs[k].needs_target) continue;
        const char *name = d->targets[k].array;
        if (!(f->y[k] = array_named(x, y, nm, name)))
            return kc_node_fail(e, d->node,
                                "the %s data has no array '%s' for the targets of output '%s'",
                                what, name, s->outs[k].name);
        if (f->rows < 0) f->rows = kc_array_rows(f->y[k]);
    }
    if (f->rows < 0) f->rows = 0;
    return KC_OK;
}

int kc_session_feed(kc_session *s, int split, kc_feed *f, kc_error *e) {
    static const char *const what[] = {"training", "validation", "test"};
    if (split == KC_SPLIT_VAL && s->has_val == 2) split = KC_SPLIT_TEST;
    const kc_array *x = split == KC_SPLIT_TRAIN ? &s->x_train
                        : split == KC_SPLIT_VAL ? &s->x_val
                                                : &s->x_test;
    const kc_array *y = split == KC_SPLIT_TRAIN ? &s->y_train
                        : split == KC_SPLIT_VAL ? &s->y_val
                                                : &s->y_test;
    return kc_feed_arrays(s, x, y, &s->named[split], what[split], f, e);
}

int64_t kc_session_steps_per_epoch(kc_session *s, int64_t rows) {
    if (rows <= 0 || s->batch_size < 1) return 0;
    if (s->cfg->fit.steps_per_epoch > 0) return s->cfg->fit.steps_per_epoch;
    return rows / s->batch_size + (rows % s->batch_size != 0);
}

static const char *shape_s(const kc_shape *sh, char *buf, size_t n) {
    return kc_shape_str(sh, 1, buf, n);
}

/* Per-sample shape of input i's array after the data section's reshape must be the model's. */
static int check_x(kc_session *s, int i, const kc_array *x, const char *what, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    const kc_feed_spec *fs = &d->inputs[i];
    const kc_model_input *mi = &s->model->inputs[i];
    const kc_shape *in = &mi->shape;
    kc_shape row = {0};
    row.rank = x->shape.rank - 1;
    for (int k = 1; k < x->shape.rank; k++)
        row.d[k - 1] = x->shape.d[k];
    char a[128], b[128], who[200] = "";
    if (s->model->ninputs > 1) snprintf(who, sizeof who, " '%s'", mi->name);
    if (fs->has_reshape) {
        if (kc_shape_numel(&fs->reshape) != kc_array_row_size(x))
            return kc_node_fail(
                e, fs->reshape_node, "reshape %s does not fit the %s samples of shape %s",
                shape_s(&fs->reshape, a, sizeof a), what, shape_s(&row, b, sizeof b));
        row = fs->reshape;
    }
    if (kc_shape_equal(&row, in)) return KC_OK;
    if (kc_shape_numel(&row) == kc_shape_numel(in) && !fs->has_reshape) {
        char list[128];
        size_t used = 0;
        for (int k = 0; k < in->rank; k++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%lld", k ? ", " : "[",
                                     (long long)in->d[k]);
        snprintf(list + used, sizeof list - used, "]");
        if (s->model->ninputs > 1)
            return kc_node_fail(
                e, d->node,
                "the %s samples for input%s have shape %s but the model input is %s: add "
                "`reshape: {%s: %s}` to the data section",
                what, who, shape_s(&row, a, sizeof a), shape_s(in, b, sizeof b), mi->name, list);
        return kc_node_fail(
            e, d->node,
            "the %s samples have shape %s but the model input is %s: add `reshape: %s` "
            "to the data section",
            what, shape_s(&row, a, sizeof a), shape_s(in, b, sizeof b), list);
    }
    return kc_node_fail(e, mi->where,
                        "the model input%s %s does not fit the %s samples of shape %s", who,
                        shape_s(in, a, sizeof a), what, shape_s(&row, b, sizeof b));
}

/* Targets are class indices (and may become one-hot) or dense values shaped like the output. */
static int check_y(kc_session *s, int k, const kc_array *y, const char *what, kc_error *e) {
    const kc_session_output *o = &s->outs[k];
    int64_t per = kc_array_row_size(y);
    int64_t out_numel = o->out_rows * o->out_cols;
    const kc_node *at = s->cfg->data.node;
    char who[200] = "";
    if (s->nouts > 1) snprintf(who, sizeof who, " of output '%s'", o->name);
    if (o->sparse_targets) {
        if (per != o->out_rows)
            return kc_node_fail(
                e, at,
                "the %s labels%s have %lld values per sample, but the loss %s expects one "
                "class index per output row (%lld)",
                what, who, (long long)per, o->loss.name, (long long)o->out_rows);
        int64_t n = kc_array_rows(y) * per;
        for (int64_t i = 0; i < n; i++) {
            double v =
                y->dtype == KC_DT_U8 ? ((const uint8_t *)y->data)[i] : ((const float *)y->data)[i];
            if (!(v >= 0 && v < o->out_cols && v == floor(v)))
                return kc_node_fail(
                    e, at,
                    "%s label %g of sample %lld%s is not a class index in [0, %d): the model "
                    "has %d outputs",
                    what, v, (long long)(i / per), who, o->out_cols, o->out_cols);
        }
        return KC_OK;
    }
    if (per != out_numel) {
        char a[128];
        return kc_node_fail(
            e, at,
            "the %s targets%s have %lld values per sample but the model output %s has %lld; "
            "for class labels use sparse_categorical_crossentropy or `one_hot: true`",
            what, who, (long long)per, shape_s(kc_model_output_shape_n(s->model, k), a, sizeof a),
            (long long)out_numel);
    }
    return KC_OK;
}

int kc_session_check_split(kc_session *s, int split, kc_error *e) {
    static const char *const what[] = {"training", "validation", "test"};
    kc_feed f;
    int rc = kc_session_feed(s, split, &f, e);
    for (int i = 0; !rc && i < s->model->ninputs; i++)
        rc = check_x(s, i, f.x[i], what[split], e);
    for (int k = 0; !rc && k < s->nouts; k++)
        if (f.y[k]) rc = check_y(s, k, f.y[k], what[split], e);
    return rc;
}
