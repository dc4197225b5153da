/* The compile section as a session reads it: each output's loss (given per
 * output, as a list or for all), loss_weights, metrics, and the optimizer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/fit_internal.h"

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

static int init_outputs(kc_session *s, kc_error *e) {
    const kc_model *m = s->model;
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
    return KC_OK;
}

/* Class-index targets and their one-hot expansion, from the losses. */
static int target_kinds(kc_session *s, kc_error *e) {
    const kc_config *c = s->cfg;
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
    return KC_OK;
}

/* Every output a loss or metric reads needs targets, and the logs must fit. */
static int check_targets(kc_session *s, kc_error *e) {
    const kc_config *c = s->cfg;
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
    return KC_OK;
}

int kc_session_compile(kc_session *s, int training, int need, kc_error *e) {
    kc_config *c = s->cfg;
    int rc = init_outputs(s, e);
    if (rc) return rc;
    if (!c->loss) {
        if (!training && !need) return KC_OK; /* prediction needs no loss */
        return kc_node_fail(
            e, c->compile_node ? c->compile_node : c->doc->root,
            "no loss given: add `compile: {loss: ...}` (e.g. sparse_categorical_crossentropy)");
    }
    if ((rc = parse_losses(s, e)) || (rc = parse_loss_weights(s, e))) return rc;
    if ((rc = target_kinds(s, e)) || (rc = parse_metrics(s, e)) || (rc = check_targets(s, e)))
        return rc;
    if (training && (rc = kc_optimizer_parse(c->optimizer, &s->opt, e))) return rc;
    return KC_OK;
}
