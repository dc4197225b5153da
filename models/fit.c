#include "models/fit.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/rng.h"

/* ---------------------------------------------------------------- data --- */

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
    /* every array of a source holds the same samples */
    int64_t rows = -1;
    const char *first = NULL;
    const kc_array *all[2 + KC_DATA_MAX_ARRAYS];
    const char *names[2 + KC_DATA_MAX_ARRAYS];
    int n = 0;
    if (x->data) all[n] = x, names[n++] = "x";
    if (y->data) all[n] = y, names[n++] = "y";
    for (int i = 0; i < named->n; i++)
        all[n] = &named->arr[i], names[n++] = named->names[i];
    for (int i = 0; i < n; i++) {
        int64_t r = kc_array_rows(all[i]);
        if (rows < 0) {
            rows = r;
            first = names[i];
        } else if (r != rows) {
            return kc_node_fail(e, src->node, "the %s data has %lld samples in %s but %lld in %s",
                                what, (long long)rows, first, (long long)r, names[i]);
        }
    }
    return KC_OK;
}

static void named_free(kc_named_arrays *n) {
    for (int i = 0; i < n->n; i++)
        kc_array_free(&n->arr[i]);
    memset(n, 0, sizeof *n);
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

static int load_data(kc_session *s, int need, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    if (!d->node)
        return kc_fail(e, KC_ECONFIG,
                       "%s: the file has no `data:` section; it is needed to train or evaluate",
                       s->cfg->path);
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
    } else {
        if ((need & KC_NEED_TRAIN) && d->has_train) {
            if ((rc = load_source(&d->train, "train", &s->x_train, &s->y_train,
                                  &s->named[KC_SPLIT_TRAIN], e)))
                return rc;
            s->has_train = 1;
        }
        if (d->has_test && ((need & KC_NEED_TEST) || d->validation_is_test)) {
            if ((rc = load_source(&d->test, "test", &s->x_test, &s->y_test,
                                  &s->named[KC_SPLIT_TEST], e)))
                return rc;
            s->has_test = 1;
        }
    }
    if ((need & KC_NEED_TRAIN) && !s->has_train)
        return kc_node_fail(e, d->node,
                            "training needs data: add `dataset:` or `train:` to the data section");
    if ((need & KC_NEED_TEST) && !s->has_test)
        return kc_node_fail(
            e, d->node,
            "evaluation needs test data: add `dataset:` or `test:` to the data section");
    if (need & KC_NEED_TRAIN) {
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
    }
    return KC_OK;
}

/* The arrays one pass reads: per model input, per output (NULL: no target). */
typedef struct feed {
    const kc_array *x[KC_MODEL_MAX_IO];
    const kc_array *y[KC_MODEL_MAX_IO];
    int64_t rows;
} feed;

static const kc_array *array_named(const kc_array *x, const kc_array *y, const kc_named_arrays *nm,
                                   const char *name) {
    if (!strcmp(name, "x") && x && x->data) return x;
    if (!strcmp(name, "y") && y && y->data) return y;
    for (int i = 0; nm && i < nm->n; i++)
        if (!strcmp(nm->names[i], name)) return &nm->arr[i];
    return NULL;
}

/* Resolves the data section's choices against one split's arrays. */
static int make_feed(kc_session *s, const kc_array *x, const kc_array *y, const kc_named_arrays *nm,
                     const char *what, feed *f, kc_error *e) {
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

static int split_feed(kc_session *s, int split, feed *f, kc_error *e) {
    static const char *const what[] = {"training", "validation", "test"};
    if (split == KC_SPLIT_VAL && s->has_val == 2) split = KC_SPLIT_TEST;
    const kc_array *x = split == KC_SPLIT_TRAIN ? &s->x_train
                        : split == KC_SPLIT_VAL ? &s->x_val
                                                : &s->x_test;
    const kc_array *y = split == KC_SPLIT_TRAIN ? &s->y_train
                        : split == KC_SPLIT_VAL ? &s->y_val
                                                : &s->y_test;
    return make_feed(s, x, y, &s->named[split], what[split], f, e);
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

static int check_split(kc_session *s, int split, kc_error *e) {
    static const char *const what[] = {"training", "validation", "test"};
    feed f;
    int rc = split_feed(s, split, &f, e);
    for (int i = 0; !rc && i < s->model->ninputs; i++)
        rc = check_x(s, i, f.x[i], what[split], e);
    for (int k = 0; !rc && k < s->nouts; k++)
        if (f.y[k]) rc = check_y(s, k, f.y[k], what[split], e);
    return rc;
}

/* ------------------------------------------------------------- compile --- */

/* A loss mapping keyed by output names (`{class: ..., recon: ...}`), as opposed to
 * one loss object such as `{CategoricalCrossentropy: {...}}`. */
static int keyed_by_outputs(const kc_session *s, const kc_node *n) {
    if (n->kind != KC_NODE_MAP || kc_map_get((kc_node *)n, "class_name")) return 0;
    for (size_t i = 0; i < n->n; i++)
        for (int k = 0; k < s->nouts; k++)
            if (!strcmp(kc_map_key((kc_node *)n, i)->str, s->outs[k].name)) return 1;
    return 0;
}

/* Keys of a per-output mapping must be the model's outputs. */
static int check_output_keys(const kc_session *s, kc_node *map, const char *what, kc_error *e) {
    const char *names[KC_MODEL_MAX_IO];
    for (int k = 0; k < s->nouts; k++)
        names[k] = s->outs[k].name;
    for (size_t i = 0; i < map->n; i++) {
        kc_node *key = kc_map_key(map, i);
        int known = 0;
        for (int k = 0; k < s->nouts; k++)
            known |= !strcmp(key->str, names[k]);
        if (known) continue;
        const char *near = kc_closest(key->str, names, (size_t)s->nouts);
        char list[1024] = "";
        size_t used = 0;
        for (int k = 0; k < s->nouts && used + 4 < sizeof list; k++)
            used +=
                (size_t)snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "", names[k]);
        return kc_node_fail(e, key, "%s: the model has no output '%s'%s%s%s (its outputs: %s)",
                            what, key->str, near ? " (did you mean '" : "", near ? near : "",
                            near ? "'?)" : "", list);
    }
    return KC_OK;
}

/* The node of output k's entry in a value given per output (mapping, list) or for all. */
static int per_output(const kc_session *s, kc_node *v, const char *what, int keyed, kc_node **out,
                      kc_error *e) {
    if (keyed) {
        int rc = check_output_keys(s, v, what, e);
        if (rc) return rc;
        for (int k = 0; k < s->nouts; k++)
            out[k] = kc_map_get(v, s->outs[k].name);
        return KC_OK;
    }
    if (v->kind == KC_NODE_SEQ) {
        if ((int)v->n != s->nouts)
            return kc_node_fail(e, v,
                                "%s: a list gives one entry per output, in order (%d), got %zu",
                                what, s->nouts, v->n);
        for (int k = 0; k < s->nouts; k++)
            out[k] = v->items[k];
        return KC_OK;
    }
    for (int k = 0; k < s->nouts; k++)
        out[k] = v;
    return KC_OK;
}

static int parse_losses(kc_session *s, kc_error *e) {
    kc_config *c = s->cfg;
    kc_node *per[KC_MODEL_MAX_IO];
    int keyed = keyed_by_outputs(s, c->loss);
    /* a list gives one loss per output, in order (as Keras, also for a single output) */
    int rc = per_output(s, c->loss, "loss", keyed, per, e);
    if (rc) return rc;
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        if (keyed && !per[k])
            return kc_node_fail(e, c->loss,
                                "loss: no entry for output '%s' (give `%s: null` for an output "
                                "trained by no loss)",
                                o->name, o->name);
        if (kc_node_is_null(per[k])) continue;
        if ((rc = kc_loss_parse(per[k], &o->loss, e))) return rc;
        o->has_loss = 1;
    }
    return KC_OK;
}

static int parse_loss_weights(kc_session *s, kc_error *e) {
    kc_node *v = s->cfg->loss_weights;
    for (int k = 0; k < s->nouts; k++)
        s->outs[k].weight = 1.0;
    if (!v) return KC_OK;
    kc_node *per[KC_MODEL_MAX_IO];
    int rc = per_output(s, v, "loss_weights", v->kind == KC_NODE_MAP, per, e);
    for (int k = 0; !rc && k < s->nouts; k++) {
        if (!per[k] || kc_node_is_null(per[k])) continue;
        if ((rc = kc_node_float(per[k], &s->outs[k].weight, e))) break;
        if (!isfinite(s->outs[k].weight))
            rc = kc_node_fail(e, per[k], "loss_weights: expected a finite number, got %s",
                              per[k]->str);
    }
    return rc;
}

/* One output's metrics: a list (or one metric). */
static int parse_output_metrics(kc_session_output *o, kc_node *list, kc_error *e) {
    if (!list || kc_node_is_null(list)) return KC_OK;
    size_t n = list->kind == KC_NODE_SEQ ? list->n : 1;
    if (n > KC_MAX_METRICS) return kc_node_fail(e, list, "at most %d metrics", KC_MAX_METRICS);
    for (size_t i = 0; i < n; i++) {
        kc_node *mn = list->kind == KC_NODE_SEQ ? list->items[i] : list;
        /* metrics see one-hot targets when the labels were expanded */
        int rc = kc_metric_parse(mn, o->out_cols, o->sparse_targets && !o->one_hot,
                                 &o->metrics[o->nmetrics], e);
        if (rc) return rc;
        o->nmetrics++;
    }
    return KC_OK;
}

/* `metrics:` - a list for every output, a list of lists in output order, or a
 * mapping from output names to lists. */
static int parse_metrics(kc_session *s, kc_error *e) {
    kc_node *v = s->cfg->metrics;
    if (!v) return KC_OK;
    kc_node *per[KC_MODEL_MAX_IO];
    int rc;
    if (v->kind == KC_NODE_MAP && !kc_map_get(v, "class_name") && keyed_by_outputs(s, v)) {
        rc = per_output(s, v, "metrics", 1, per, e);
    } else if (v->kind == KC_NODE_SEQ && s->nouts > 1 && v->n > 0 &&
               v->items[0]->kind == KC_NODE_SEQ) {
        rc = per_output(s, v, "metrics", 0, per, e);
    } else {
        for (int k = 0; k < s->nouts; k++)
            per[k] = v;
        rc = KC_OK;
    }
    for (int k = 0; !rc && k < s->nouts; k++)
        rc = parse_output_metrics(&s->outs[k], per[k], e);
    return rc;
}

static int parse_compile(kc_session *s, int training, int need, kc_error *e) {
    kc_config *c = s->cfg;
    kc_model *m = s->model;
    int rc;
    s->outs = calloc((size_t)m->noutputs, sizeof *s->outs);
    if (!s->outs) return kc_fail(e, KC_ERUNTIME, "out of memory");
    s->nouts = m->noutputs;
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        snprintf(o->name, sizeof o->name, "%s", m->outputs[k].name);
        const kc_shape *out = kc_model_output_shape_n(m, k);
        o->out_cols = out->rank ? (int)out->d[out->rank - 1] : 1;
        o->out_rows = kc_shape_numel(out) / o->out_cols;
        o->weight = 1.0;
    }
    if (!c->loss) {
        if (!training && !need) return KC_OK; /* prediction needs no loss */
        return kc_node_fail(
            e, c->compile_node ? c->compile_node : c->doc->root,
            "no loss given: add `compile: {loss: ...}` (e.g. sparse_categorical_crossentropy)");
    }
    if ((rc = parse_losses(s, e)) || (rc = parse_loss_weights(s, e))) return rc;
    int any = 0;
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        any |= o->has_loss;
        if (!o->has_loss) continue;
        int sparse_loss = kc_loss_sparse_targets(&o->loss);
        int ce = !strcmp(kc_loss_class_name(&o->loss), "CategoricalCrossentropy");
        int want_one_hot = c->data.one_hot == 1 || (c->data.one_hot == -1 && ce);
        o->sparse_targets = sparse_loss || want_one_hot;
        o->one_hot = !sparse_loss && want_one_hot;
    }
    if (!any)
        return kc_node_fail(e, c->loss,
                            "loss: every output's loss is null; nothing would be trained");
    if ((rc = parse_metrics(s, e))) return rc;
    int keys = 1;
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        o->needs_target = o->has_loss || o->nmetrics > 0;
        keys += o->nmetrics + (o->has_loss ? 1 : 0);
        if (o->needs_target && c->data.node && !c->data.targets[k].array[0])
            return kc_node_fail(
                e, c->data.node,
                "output '%s' has a %s but no targets: say which array it learns, e.g. "
                "`targets: {%s: y}` in the data section",
                o->name, o->has_loss ? "loss" : "metric", o->name);
    }
    if (2 * keys > KC_MAX_LOGS)
        return kc_node_fail(e, c->compile_node,
                            "too many losses and metrics to log (at most %d values)",
                            KC_MAX_LOGS / 2);
    if (training && (rc = kc_optimizer_parse(c->optimizer, &s->opt, e))) return rc;
    return KC_OK;
}

/* ------------------------------------------------------------- session --- */

static int alloc_staging(kc_session *s, kc_error *e) {
    size_t bs = (size_t)s->batch_size;
    const kc_model *m = s->model;
    for (int i = 0; i < m->ninputs; i++) {
        s->hxs[i] = malloc(bs * (size_t)kc_shape_numel(&m->inputs[i].shape) * sizeof(float));
        if (!s->hxs[i]) return kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        size_t out = (size_t)(o->out_rows * o->out_cols);
        o->hy = malloc(bs * out * sizeof(float));
        o->hpred = malloc(bs * out * sizeof(float));
        o->hz = malloc(bs * out * sizeof(float));
        o->hgrad = malloc(bs * out * sizeof(float));
        if (!o->hy || !o->hpred || !o->hz || !o->hgrad)
            return kc_fail(e, KC_ERUNTIME, "out of memory");
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
    s->hz = o->hz;
    s->hgrad = o->hgrad;
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
    for (int i = 0; i < k; i++)
        free((void *)names[i]);
    return rc;
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

/* Callbacks and the history of completed epochs. */
static int prepare_training(kc_session *s, kc_error *e) {
    int rc = kc_callbacks_parse(s->cfg->fit.callbacks, &s->callbacks, e);
    if (rc) return rc;
    if (kc_callbacks_log_lr(s->callbacks) && kc_optimizer_has_schedule(s->opt))
        return kc_node_fail(e, s->cfg->fit.callbacks,
                            "ReduceLROnPlateau and LearningRateScheduler set the learning rate, but the optimizer's "
                            "learning_rate is a schedule; use one or the other");
    s->history = calloc((size_t)s->cfg->fit.epochs, sizeof *s->history);
    if (!s->history) return kc_fail(e, KC_ERUNTIME, "out of memory");
    return KC_OK;
}

int kc_session_open(kc_session *s, kc_config *cfg, const kc_run_opts *o, int need, int training,
                    kc_error *e) {
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->model = cfg->model;
    s->be = kc_backend_by_name(o->backend ? o->backend : "cpu");
    if (!s->be)
        return kc_fail(e, KC_ECONFIG, "unknown backend '%s' (use cpu or reference)", o->backend);
    s->threads = o->threads;
    s->be->set_threads(o->threads);
    s->seed = (uint64_t)(o->has_seed ? o->seed : cfg->fit.seed);
    s->batch_size = o->batch_size ? o->batch_size : cfg->fit.batch_size;
    int rc;
    if ((rc = parse_compile(s, training, need, e))) return rc;
    mark_x_arrays(s);
    if (need && (rc = load_data(s, need, e))) return rc;
    if (s->has_train && (rc = check_split(s, KC_SPLIT_TRAIN, e))) return rc;
    if (s->has_val == 1 && (rc = check_split(s, KC_SPLIT_VAL, e))) return rc;
    if (s->has_test && (rc = check_split(s, KC_SPLIT_TEST, e))) return rc;
    if ((rc = kc_model_plan(s->model, s->be, (int)s->batch_size, training, e))) return rc;
    kc_model_init_weights(s->model, s->seed);
    /* the weights regularizers and constraints act on: Keras takes the
     * trainable weights of trainable layers */
    kc_param_ref refs[256];
    int np = kc_model_params(s->model, refs, 256);
    for (int i = 0; i < np && i < 256; i++)
        if (refs[i].param->trainable && refs[i].layer->trainable) s->reg[s->nreg++] = refs[i].param;
    if ((rc = alloc_staging(s, e))) return rc;
    if (training && (rc = build_optimizer(s, e))) return rc;
    if (training && (rc = prepare_training(s, e))) return rc;
    return KC_OK;
}

void kc_session_close(kc_session *s) {
    kc_optimizer_free(s->opt);
    kc_callbacks_free(s->callbacks);
    free(s->history);
    free(s->snapshot);
    kc_array_free(&s->x_train);
    kc_array_free(&s->y_train);
    kc_array_free(&s->x_test);
    kc_array_free(&s->y_test);
    kc_array_free(&s->x_val);
    kc_array_free(&s->y_val);
    for (int i = 0; i < 3; i++)
        named_free(&s->named[i]);
    for (int i = 0; i < KC_MODEL_MAX_IO; i++)
        free(s->hxs[i]);
    for (int k = 0; k < s->nouts; k++) {
        free(s->outs[k].hy);
        free(s->outs[k].hpred);
        free(s->outs[k].hz);
        free(s->outs[k].hgrad);
    }
    free(s->outs);
    free(s->idx);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------- batches --- */

static void gather_y(kc_session *s, kc_session_output *o, const kc_array *y, const int64_t *idx,
                     int n) {
    const kc_data_spec *d = &s->cfg->data;
    float scale = o->target_is_x ? (float)d->rescale : 1.0f,
          offset = o->target_is_x ? (float)d->offset : 0.0f;
    if (o->one_hot) {
        /* class indices -> one-hot rows */
        int64_t rows = (int64_t)n * o->out_rows;
        float *tmp = o->hz; /* free until the forward pass */
        kc_array_gather(y, idx, n, 1.0f, 0.0f, tmp);
        memset(o->hy, 0, (size_t)(rows * o->out_cols) * sizeof(float));
        for (int64_t r = 0; r < rows; r++)
            o->hy[r * o->out_cols + (int64_t)tmp[r]] = 1.0f;
    } else {
        kc_array_gather(y, idx, n, scale, offset, o->hy);
    }
}

static int fused_logits(const kc_session *s, int k) {
    const kc_session_output *o = &s->outs[k];
    const kc_layer *last = s->model->nodes[s->model->outputs[k].node].layer;
    /* an activity penalty's gradient is w.r.t. the output, so it keeps the plain path */
    return o->has_loss && !o->loss.from_logits && kc_loss_has_logits_form(&o->loss) &&
           !kc_regularizer_active(&last->activity_regularizer) &&
           last->activation.act != KC_ACT_LINEAR &&
           last->activation.act == kc_loss_logits_activation(&o->loss);
}

/* Forward on rows idx[0..n) of the feed; fills each output's hpred and returns
 * the weighted total loss, leaving each output's unweighted loss in *losses.
 * With grad, also the loss gradients (uploaded into the model's dy buffers)
 * and which of them are w.r.t. the pre-activation (fused). */
static double run_batch(kc_session *s, const feed *f, const int64_t *idx, int n, const kc_exec *ex,
                        int grad, double *losses, int *fused) {
    kc_model *m = s->model;
    const kc_data_spec *d = &s->cfg->data;
    for (int i = 0; i < m->ninputs; i++) {
        size_t in = (size_t)kc_shape_numel(&m->inputs[i].shape);
        float scale = s->input_is_x[i] ? (float)d->rescale : 1.0f;
        float offset = s->input_is_x[i] ? (float)d->offset : 0.0f;
        kc_array_gather(f->x[i], idx, n, scale, offset, s->hxs[i]);
        s->be->upload(m->inputs[i].x, s->hxs[i], (size_t)n * in * sizeof(float));
    }
    for (int k = 0; k < s->nouts; k++)
        if (f->y[k]) gather_y(s, &s->outs[k], f->y[k], idx, n);
    kc_model_forward(m, ex);
    double total = 0;
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        int rows = (int)(n * o->out_rows), c = o->out_cols;
        size_t bytes = (size_t)rows * (size_t)c * sizeof(float);
        s->be->download(o->hpred, kc_model_output_y(m, k), bytes);
        fused[k] = fused_logits(s, k);
        losses[k] = 0;
        if (!o->has_loss || !f->y[k]) continue;
        float *g = grad ? o->hgrad : NULL;
        if (fused[k]) {
            s->be->download(o->hz, kc_model_output_z(m, k), bytes);
            losses[k] = kc_loss_compute(&o->loss, o->hz, o->hy, rows, c, 1, NULL, g);
        } else {
            losses[k] = kc_loss_compute(&o->loss, o->hpred, o->hy, rows, c, 0, NULL, g);
        }
        total += o->weight * losses[k];
        if (!grad) continue;
        if (o->weight != 1.0)
            for (size_t i = 0; i < (size_t)rows * (size_t)c; i++)
                g[i] = (float)(g[i] * o->weight);
        s->be->upload(kc_model_dy_n(m, k), g, bytes);
    }
    /* Keras adds the penalties after the reduction, to the total only; in
     * training the weight penalty (and its gradient) joins after backward */
    total += m->activity_loss;
    if (!grad && s->nreg) total += kc_regularization_apply(s->be, s->reg, s->nreg, 0);
    return total;
}

static void update_metrics(kc_session *s, int n) {
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        int rows = (int)(n * o->out_rows);
        for (int i = 0; i < o->nmetrics; i++)
            kc_metric_update(&o->metrics[i], o->hpred, o->hy, rows, o->out_cols);
    }
}

static void reset_running(kc_session *s) {
    for (int k = 0; k < s->nouts; k++) {
        s->outs[k].loss_sum = 0;
        for (int i = 0; i < s->outs[k].nmetrics; i++)
            kc_metric_reset(&s->outs[k].metrics[i]);
    }
}

static void add_losses(kc_session *s, const double *losses, int n) {
    for (int k = 0; k < s->nouts; k++)
        s->outs[k].loss_sum += losses[k] * n;
}

static void logs_add(kc_logs *l, const char *prefix, const char *key, double v) {
    if (l->n >= KC_MAX_LOGS) return;
    snprintf(l->keys[l->n], sizeof l->keys[0], "%s%s", prefix, key);
    l->vals[l->n++] = v;
}

/* Keras 3's order: loss, the compiled metrics, then each output's loss when
 * several outputs have one. */
static void logs_collect(kc_session *s, kc_logs *l, const char *prefix, double loss, double count) {
    logs_add(l, prefix, "loss", loss);
    char key[300];
    for (int k = 0; k < s->nouts; k++) {
        kc_session_output *o = &s->outs[k];
        for (int i = 0; i < o->nmetrics; i++) {
            if (s->nouts > 1)
                snprintf(key, sizeof key, "%s_%s", o->name, kc_metric_name(&o->metrics[i]));
            else
                snprintf(key, sizeof key, "%s", kc_metric_name(&o->metrics[i]));
            logs_add(l, prefix, key, kc_metric_result(&o->metrics[i]));
        }
    }
    int nloss = 0;
    for (int k = 0; k < s->nouts; k++)
        nloss += s->outs[k].has_loss;
    if (nloss < 2) return;
    for (int k = 0; k < s->nouts; k++)
        if (s->outs[k].has_loss) {
            snprintf(key, sizeof key, "%s_loss", s->outs[k].name);
            logs_add(l, prefix, key, count ? s->outs[k].loss_sum / count : 0);
        }
}

static int evaluate_feed(kc_session *s, const feed *f, const kc_hooks *h, kc_logs *out,
                         kc_error *e) {
    int64_t n = f->rows;
    int64_t bs = s->batch_size;
    int64_t steps = (n + bs - 1) / bs;
    int64_t *idx = malloc((size_t)bs * sizeof *idx);
    if (!idx) return kc_fail(e, KC_ERUNTIME, "out of memory");
    reset_running(s);
    double loss_sum = 0, count = 0, losses[KC_MODEL_MAX_IO];
    int fused[KC_MODEL_MAX_IO];
    kc_exec ex = {.be = s->be, .training = 0, .seed = s->seed, .step = (uint64_t)s->step};
    if (h && h->epoch_begin) h->epoch_begin(h->ctx, -1, 0, steps);
    for (int64_t b = 0; b < steps; b++) {
        int nb = (int)((b + 1) * bs <= n ? bs : n - b * bs);
        for (int i = 0; i < nb; i++)
            idx[i] = b * bs + i;
        ex.batch = nb;
        double loss = run_batch(s, f, idx, nb, &ex, 0, losses, fused);
        loss_sum += loss * nb;
        count += nb;
        add_losses(s, losses, nb);
        update_metrics(s, nb);
        if (h && h->batch_end) {
            kc_logs l = {0};
            logs_collect(s, &l, "", loss_sum / count, count);
            h->batch_end(h->ctx, b + 1, steps, &l);
        }
    }
    free(idx);
    memset(out, 0, sizeof *out);
    logs_collect(s, out, "", count ? loss_sum / count : 0, count);
    if (h && h->epoch_end) h->epoch_end(h->ctx, -1, steps, out);
    return KC_OK;
}

int kc_evaluate_split(kc_session *s, int split, const kc_hooks *h, kc_logs *out, kc_error *e) {
    feed f;
    int rc = split_feed(s, split, &f, e);
    return rc ? rc : evaluate_feed(s, &f, h, out, e);
}

int kc_evaluate(kc_session *s, const kc_array *x, const kc_array *y, const kc_hooks *h,
                kc_logs *out, kc_error *e) {
    feed f;
    int rc = make_feed(s, x, y, NULL, "given", &f, e);
    return rc ? rc : evaluate_feed(s, &f, h, out, e);
}

int kc_predict_n(kc_session *s, const kc_array *const *xs, float **outs, kc_error *e) {
    kc_model *m = s->model;
    int64_t n = kc_array_rows(xs[0]), bs = s->batch_size;
    for (int i = 1; i < m->ninputs; i++)
        if (kc_array_rows(xs[i]) != n)
            return kc_fail(
                e, KC_ECONFIG,
                "the inputs have different numbers of samples: %lld for '%s', %lld for '%s'",
                (long long)n, m->inputs[0].name, (long long)kc_array_rows(xs[i]),
                m->inputs[i].name);
    int64_t *idx = malloc((size_t)bs * sizeof *idx);
    int ok = idx != NULL;
    for (int k = 0; k < s->nouts; k++) {
        size_t per = (size_t)(s->outs[k].out_rows * s->outs[k].out_cols);
        size_t count = (size_t)n * per;
        outs[k] = malloc((count ? count : 1) * sizeof(float));
        ok &= outs[k] != NULL;
    }
    if (!ok) {
        free(idx);
        for (int k = 0; k < s->nouts; k++)
            free(outs[k]), outs[k] = NULL;
        return kc_fail(e, KC_ERUNTIME, "out of memory for %lld predictions", (long long)n);
    }
    const kc_data_spec *d = &s->cfg->data;
    kc_exec ex = {.be = s->be, .training = 0, .seed = s->seed};
    for (int64_t b = 0; b * bs < n; b++) {
        int nb = (int)((b + 1) * bs <= n ? bs : n - b * bs);
        for (int i = 0; i < nb; i++)
            idx[i] = b * bs + i;
        for (int i = 0; i < m->ninputs; i++) {
            size_t in = (size_t)kc_shape_numel(&m->inputs[i].shape);
            float scale = s->input_is_x[i] ? (float)d->rescale : 1.0f;
            float offset = s->input_is_x[i] ? (float)d->offset : 0.0f;
            kc_array_gather(xs[i], idx, nb, scale, offset, s->hxs[i]);
            s->be->upload(m->inputs[i].x, s->hxs[i], (size_t)nb * in * sizeof(float));
        }
        ex.batch = nb;
        kc_model_forward(m, &ex);
        for (int k = 0; k < s->nouts; k++) {
            size_t per = (size_t)(s->outs[k].out_rows * s->outs[k].out_cols);
            s->be->download(outs[k] + (size_t)(b * bs) * per, kc_model_output_y(m, k),
                            (size_t)nb * per * sizeof(float));
        }
    }
    free(idx);
    return KC_OK;
}

int kc_predict(kc_session *s, const kc_array *x, float **out, kc_error *e) {
    if (s->model->ninputs != 1 || s->nouts != 1)
        return kc_fail(e, KC_ECONFIG, "the model has %d inputs and %d outputs; name each one",
                       s->model->ninputs, s->nouts);
    const kc_array *xs[1] = {x};
    return kc_predict_n(s, xs, out, e);
}

/* ----------------------------------------------------------------- fit --- */

static void permutation(int64_t *p, int64_t n, uint64_t seed, int64_t epoch, int shuffle) {
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
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

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int history_write(const history *h, const char *path, kc_error *e) {
    if (h->rows == 0) return KC_OK;
    const kc_logs *first = &h->logs[0];
    const char *keys[KC_MAX_LOGS];
    for (int i = 0; i < first->n; i++)
        keys[i] = first->keys[i];
    qsort(keys, (size_t)first->n, sizeof *keys, cmp_str);
    kc_atomic_file a;
    int rc = kc_atomic_open(&a, path, e);
    if (rc) return rc;
    FILE *f = a.f;
    fprintf(f, "epoch");
    for (int i = 0; i < first->n; i++)
        fprintf(f, ",%s", keys[i]);
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
    return kc_atomic_commit(&a, e);
}

static double find_log(const kc_logs *l, const char *key) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->keys[i], key)) return l->vals[i];
    return NAN;
}

/* ---- what callbacks may do (models/callbacks.h) ---- */

static int env_save(void *ctx, const char *path, int weights_only, kc_error *e) {
    kc_session *s = ctx;
    const kc_logs *last = s->nhistory ? &s->history[s->nhistory - 1] : NULL;
    return kc_checkpoint_write(s, path, last, weights_only, e);
}

static int env_snapshot(void *ctx, kc_error *e) {
    kc_session *s = ctx;
    size_t n = (size_t)s->model->nvalues;
    if (!s->snapshot && !(s->snapshot = malloc((n ? n : 1) * sizeof(float))))
        return kc_fail(e, KC_ERUNTIME, "out of memory for a copy of the weights");
    s->be->download(s->snapshot, s->model->values, n * sizeof(float));
    return KC_OK;
}

static int env_restore(void *ctx, kc_error *e) {
    kc_session *s = ctx;
    if (s->snapshot) s->be->upload(s->model->values, s->snapshot, (size_t)s->model->nvalues * sizeof(float));
    return KC_OK;
}

/* The learning rate as Keras reads it: the float32 variable. */
static double env_get_lr(void *ctx) { return (float)kc_optimizer_learning_rate(((kc_session *)ctx)->opt); }
static void env_set_lr(void *ctx, double lr) { kc_optimizer_set_learning_rate(((kc_session *)ctx)->opt, lr); }

static int env_direction(void *ctx, const char *key) {
    kc_session *s = ctx;
    const char *base = strncmp(key, "val_", 4) ? key : key + 4;
    for (int k = 0; k < s->nouts; k++)
        for (int i = 0; i < s->outs[k].nmetrics; i++) {
            const kc_metric *m = &s->outs[k].metrics[i];
            char full[256];
            snprintf(full, sizeof full, "%s_%s", s->outs[k].name, kc_metric_name(m));
            if (!strcmp(base, kc_metric_name(m)) || !strcmp(base, full)) return kc_metric_direction(m);
        }
    return 0;
}

static int env_resume(void *ctx, const char *path, kc_error *e) { return kc_checkpoint_load(ctx, path, e); }

static void env_print(void *ctx, const char *msg) {
    const kc_session *s = ctx;
    if (s->hooks && s->hooks->note) s->hooks->note(s->hooks->ctx, msg);
}

static kc_callback_env make_env(kc_session *s, const char *out_dir) {
    return (kc_callback_env){s,          env_save,   env_snapshot, env_restore,
                             env_get_lr, env_set_lr, env_direction, env_resume,
                             env_print,  out_dir};
}

/* One training step on rows idx[0..nb) of the feed: forward, loss, backward,
 * regularization, update, constraints, metrics. Returns the step's loss. */
static double train_step(kc_session *s, const feed *f, const int64_t *idx, int nb, float *const *wts,
                         const float *const *grs) {
    double losses[KC_MODEL_MAX_IO];
    int fused[KC_MODEL_MAX_IO];
    kc_exec ex = {.be = s->be, .batch = nb, .training = 1, .seed = s->seed, .step = (uint64_t)s->step};
    double loss = run_batch(s, f, idx, nb, &ex, 1, losses, fused);
    kc_model_backward_n(s->model, &ex, fused);
    if (s->nreg) loss += kc_regularization_apply(s->be, s->reg, s->nreg, 1);
    kc_optimizer_step(s->opt, wts, grs);
    if (s->nreg) kc_constraints_apply(s->be, s->reg, s->nreg);
    update_metrics(s, nb);
    add_losses(s, losses, nb);
    s->step++;
    return loss;
}

static int fit_run(kc_session *s, const char *out_dir, const kc_hooks *h, kc_error *e) {
    kc_fit_spec *f = &s->cfg->fit;
    int rc = mkdir_p(out_dir, e);
    if (rc) return rc;
    feed train;
    if ((rc = split_feed(s, KC_SPLIT_TRAIN, &train, e))) return rc;
    int64_t n = train.rows;
    int64_t bs = s->batch_size;
    int64_t full_steps = (n + bs - 1) / bs;
    int64_t steps = f->steps_per_epoch ? f->steps_per_epoch : full_steps;
    s->idx = malloc((size_t)(n ? n : 1) * sizeof *s->idx);
    if (!s->idx) return kc_fail(e, KC_ERUNTIME, "out of memory");
    char p_hist[4200], p_last[4200], p_best[4200];
    snprintf(p_hist, sizeof p_hist, "%s/history.csv", out_dir);
    snprintf(p_last, sizeof p_last, "%s/last.safetensors", out_dir);
    snprintf(p_best, sizeof p_best, "%s/best.safetensors", out_dir);

    /* the optimizer was built over the same weights, in the same order */
    float *wts[256], *grs[256];
    for (int i = 0; i < s->nreg; i++) {
        wts[i] = s->reg[i]->value;
        grs[i] = s->reg[i]->grad;
    }
    const char *monitor = s->has_val ? "val_loss" : "loss";
    kc_callback_env env = make_env(s, out_dir);
    if ((rc = kc_callbacks_train_begin(s->callbacks, &env, e))) return rc;
    int stop = 0;
    for (int64_t epoch = s->epoch; epoch < f->epochs && !stop; epoch++) {
        int resumed = s->batch > 0; /* a checkpoint written inside this epoch */
        if (!resumed) {
            reset_running(s);
            s->epoch_loss_sum = s->epoch_count = 0;
        }
        if (h && h->epoch_begin) h->epoch_begin(h->ctx, (int)epoch, (int)f->epochs, steps);
        if ((rc = kc_callbacks_epoch_begin(s->callbacks, &env, (int)epoch, e))) return rc;
        int64_t perm_pass = -1;
        for (int64_t b = s->batch; b < steps && !stop; b++) {
            /* steps beyond one pass continue on the next permutation */
            int64_t pass = b / full_steps, bi = b % full_steps;
            if (pass != perm_pass) {
                permutation(s->idx, n, s->seed, epoch * 1000003 + pass, f->shuffle);
                perm_pass = pass;
            }
            int nb = (int)((bi + 1) * bs <= n ? bs : n - bi * bs);
            double loss = train_step(s, &train, s->idx + bi * bs, nb, wts, (const float *const *)grs);
            s->epoch_loss_sum += loss * nb;
            s->epoch_count += nb;
            s->batch = b + 1;
            kc_logs l = {0};
            logs_collect(s, &l, "", s->epoch_loss_sum / s->epoch_count, s->epoch_count);
            if (h && h->batch_end) h->batch_end(h->ctx, b + 1, steps, &l);
            if ((rc = kc_callbacks_batch_end(s->callbacks, &env, (int)epoch, b, &l, &stop, e))) return rc;
            if (h && h->interrupted && h->interrupted(h->ctx)) {
                if ((rc = kc_checkpoint_save(s, p_last, &l, e))) return rc;
                char msg[4400];
                snprintf(msg, sizeof msg, "\nInterrupted after step %lld of epoch %lld; saved %s", (long long)(b + 1),
                         (long long)(epoch + 1), p_last);
                env_print(s, msg);
                return kc_fail(e, KC_EINTERRUPTED, "interrupted; resume with --resume %s", p_last);
            }
        }
        kc_logs logs = {0};
        logs_collect(s, &logs, "", s->epoch_count ? s->epoch_loss_sum / s->epoch_count : 0, s->epoch_count);
        if (s->has_val) {
            kc_logs vl;
            if ((rc = kc_evaluate_split(s, KC_SPLIT_VAL, NULL, &vl, e))) return rc;
            for (int i = 0; i < vl.n; i++) logs_add(&logs, "val_", vl.keys[i], vl.vals[i]);
        }
        s->epoch = epoch + 1;
        s->batch = 0;
        if (s->nhistory < (int)f->epochs) s->history[s->nhistory++] = logs;
        /* user callbacks first: what they log (learning_rate) reaches the
         * progress line and the history, as in Keras */
        if ((rc = kc_callbacks_epoch_end(s->callbacks, &env, (int)epoch, &logs, &stop, e))) return rc;
        s->history[s->nhistory - 1] = logs;
        if (h && h->epoch_end) h->epoch_end(h->ctx, (int)epoch, steps, &logs);
        history hist = {.rows = s->nhistory, .logs = s->history};
        if ((rc = history_write(&hist, p_hist, e))) return rc;
        /* like Keras 3's ModelCheckpoint: the first epoch always counts as an improvement */
        double cur = find_log(&logs, monitor);
        int improved = !s->has_best || cur < s->best;
        if (improved) {
            s->best = cur;
            s->has_best = 1;
        }
        if ((rc = kc_checkpoint_save(s, p_last, &logs, e))) return rc;
        if (improved && (rc = kc_checkpoint_save(s, p_best, &logs, e))) return rc;
        if (h && h->interrupted && h->interrupted(h->ctx) && epoch + 1 < f->epochs) {
            char msg[4400];
            snprintf(msg, sizeof msg, "\nInterrupted after epoch %lld; saved %s", (long long)(epoch + 1), p_last);
            env_print(s, msg);
            return kc_fail(e, KC_EINTERRUPTED, "interrupted; resume with --resume %s", p_last);
        }
    }
    if ((rc = kc_callbacks_train_end(s->callbacks, &env, (int)s->epoch - 1, e))) return rc;
    char saved[8600];
    snprintf(saved, sizeof saved, "Saved %s, %s (lowest %s) and %s", p_last, p_best, monitor, p_hist);
    env_print(s, saved);
    return KC_OK;
}

int kc_fit(kc_session *s, const char *out_dir, const kc_hooks *h, kc_error *e) {
    s->hooks = h; /* callbacks' messages go through the caller's hooks while fit runs */
    int rc = fit_run(s, out_dir, h, e);
    s->hooks = NULL;
    return rc;
}
