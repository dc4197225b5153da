/* Layer lifecycle, the class registry lookup, and the helpers every layer
 * family shares (models/layers/common.h). */
#include "models/layer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/layers/common.h"

const kc_layer_class *kc_layer_class_find(const char *name) {
    if (!name) return NULL;
    for (const kc_layer_class *const *c = kc_layer_classes; *c; c++) {
        if (!strcmp((*c)->class_name, name)) return *c;
        for (const char *const *al = (*c)->aliases; al && *al; al++)
            if (!strcmp(*al, name)) return *c;
    }
    return NULL;
}

int kc_layer_create(const kc_layer_class *cls, kc_args *args, const kc_node *where, kc_layer **out,
                    kc_error *e) {
    *out = NULL;
    kc_layer *l = calloc(1, sizeof *l);
    if (!l) return kc_fail(e, KC_ERUNTIME, "out of memory creating a %s layer", cls->class_name);
    l->cls = cls;
    l->node = where;
    l->trainable = 1;
    l->activation.act = KC_ACT_LINEAR;
    snprintf(l->name, sizeof l->name, "%s", cls->base_name);
    if (cls->state_size) {
        l->state = calloc(1, cls->state_size);
        if (!l->state) {
            kc_layer_free(l);
            return kc_fail(e, KC_ERUNTIME, "out of memory creating a %s layer", cls->class_name);
        }
    }
    /* Every Keras 3 layer accepts activity_regularizer (Layer.__init__). */
    int rc = kc_args_regularizer(args, "activity_regularizer", &l->activity_regularizer, e);
    if (!rc) rc = cls->configure(l, args, e);
    if (rc) {
        kc_layer_free(l);
        return rc;
    }
    *out = l;
    return KC_OK;
}

int kc_layer_build(kc_layer *l, const kc_shape *in_shape, kc_error *e) {
    return kc_layer_build_n(l, in_shape, 1, e);
}

void kc_layer_class_arity(const kc_layer_class *cls, int *min, int *max) {
    if (!kc_layer_class_is_multi(cls)) {
        *min = *max = 1;
        return;
    }
    *min = cls->min_inputs;
    *max = cls->max_inputs > 0 ? cls->max_inputs : KC_LAYER_MAX_INPUTS;
}

int kc_layer_build_n(kc_layer *l, const kc_shape *in_shapes, int n, kc_error *e) {
    int lo, hi;
    kc_layer_class_arity(l->cls, &lo, &hi);
    if (n < lo || n > hi || n > KC_LAYER_MAX_INPUTS)
        return kc_layer_fail(l, e, "takes %d to %d inputs, got %d", lo, hi, n);
    l->ninputs = n;
    for (int i = 0; i < n; i++)
        l->in_shapes[i] = in_shapes[i];
    l->in_shape = in_shapes[0];
    memset(&l->out_shape, 0, sizeof l->out_shape);
    memset(l->params, 0, sizeof l->params);
    l->nparams = 0;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < in_shapes[k].rank; i++)
            if (in_shapes[k].d[i] <= 0) {
                char s[160];
                kc_shape_str(&in_shapes[k], 1, s, sizeof s);
                return kc_layer_fail(l, e, "input shape %s has a dimension that is not positive",
                                     s);
            }
    l->noutputs = 0;
    memset(l->out_shapes, 0, sizeof l->out_shapes);
    int rc = kc_layer_class_is_multi(l->cls) ? l->cls->build_n(l, e) : l->cls->build(l, e);
    if (rc) return rc;
    if (l->noutputs <= 0) {
        l->noutputs = 1;
        l->out_shapes[0] = l->out_shape;
    } else {
        l->out_shape = l->out_shapes[0];
    }
    return KC_OK;
}

void kc_layer_free(kc_layer *l) {
    if (!l) return;
    free(l->state);
    free(l);
}

void kc_keras_vars_plain(const kc_layer *l, const char *path, const char *name,
                         kc_keras_vars *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    snprintf(out->name, sizeof out->name, "%s", name);
    for (int pass = 1; pass >= 0; pass--)
        for (int i = 0; i < l->nparams; i++)
            if (!l->params[i].trainable == !pass) out->params[out->nparams++] = i;
}

int kc_layer_keras_vars(const kc_layer *l, kc_keras_vars *out, int max) {
    if (max < 1) return 0;
    if (l->cls->keras_vars) return l->cls->keras_vars(l, out, max);
    kc_keras_vars_plain(l, "vars", l->name, out);
    return 1;
}

int64_t kc_layer_param_count(const kc_layer *l, int trainable_only) {
    int64_t n = 0;
    for (int i = 0; i < l->nparams; i++) {
        const kc_param *p = &l->params[i];
        if (trainable_only && !(p->trainable && l->trainable)) continue;
        n += kc_shape_numel(&p->shape);
    }
    return n;
}

/* ---- helpers for the layer families ---- */

int kc_layer_reject_unsupported(kc_args *a, const char *const *keys, kc_error *e) {
    for (; *keys; keys++) {
        kc_node *n = kc_args_node(a, *keys);
        if (n && !kc_node_is_null(n))
            return kc_node_fail(e, n,
                                "%s argument '%s' is not supported yet by kerasc "
                                "(remove it or set it to null)",
                                a->owner, *keys);
    }
    return KC_OK;
}

int kc_layer_data_format(kc_args *a, kc_error *e) {
    static const char *const formats[] = {"channels_last", "channels_first", NULL};
    int f = 0;
    int rc = kc_args_enum(a, "data_format", "channels_last", formats, &f, e);
    if (rc) return rc;
    if (f != 0)
        return kc_node_fail(e, kc_args_node(a, "data_format"),
                            "%s argument 'data_format': 'channels_first' is not supported yet by "
                            "kerasc (images are channels_last: height, width, channels)",
                            a->owner);
    return KC_OK;
}

int kc_layer_padding(kc_args *a, int *same, kc_error *e) {
    static const char *const paddings[] = {"valid", "same", NULL};
    kc_node *n = kc_args_node(a, "padding");
    /* Keras's standardize_padding calls .lower() on the value, so null is an error there */
    if (n && kc_node_is_null(n))
        return kc_node_fail(e, n, "%s argument 'padding': expected 'valid' or 'same', got null",
                            a->owner);
    return kc_args_enum(a, "padding", "valid", paddings, same, e);
}

int64_t kc_window_out(int64_t n, int k, int s, int d, int same) {
    if (same) return (n + s - 1) / s;
    int64_t k_eff = (int64_t)d * (k - 1) + 1;
    if (n < k_eff) return 0;
    return (n - k_eff) / s + 1;
}

int kc_window_pad_before(int64_t n, int64_t out, int k, int s, int d, int same) {
    if (!same) return 0;
    int64_t k_eff = (int64_t)d * (k - 1) + 1;
    int64_t total = (out - 1) * s + k_eff - n;
    if (total < 0) total = 0;
    return (int)(total / 2);
}

int kc_layer_fail(const kc_layer *l, kc_error *e, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kc_node_fail(e, l->node, "layer '%s' (%s): %s", l->name, l->cls->class_name, msg);
}
