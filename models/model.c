#include "models/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

static const char *const model_keys[] = {"name", "layers", "class_name", NULL};
static const char *const input_keys[] = {"shape", "batch_shape", "name", "dtype", "sparse",
                                         "ragged", "optional", NULL};

void kc_model_free(kc_model *m) {
    if (!m) return;
    if (m->be) {
        m->be->free(m->arena);
        m->be->free(m->values);
        m->be->free(m->grads);
        m->be->free(m->ws);
        for (int i = 0; i < m->nlayers; i++) m->be->free(m->layers[i]->buf);
    }
    for (int i = 0; i < m->nlayers; i++) {
        if (m->be) m->layers[i]->buf = NULL;
        kc_layer_free(m->layers[i]);
    }
    free(m->layers);
    free(m->z);
    free(m->y);
    free(m);
}

static int name_taken(const kc_model *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i]->name, name)) return 1;
    return 0;
}

static void auto_name(const kc_model *m, const char *base, char *out, size_t n) {
    snprintf(out, n, "%s", base);
    for (int k = 1; name_taken(m, out); k++) snprintf(out, n, "%s_%d", base, k);
}

/* A shape given as a list of positive ints (Input shape, input_shape). */
static int read_shape(kc_args *a, const char *key, int with_batch, kc_shape *out, kc_error *e) {
    kc_node *n = kc_args_node(a, key);
    if (!n || n->kind != KC_NODE_SEQ || n->n == 0 || n->n > KC_MAX_RANK)
        return kc_node_fail(e, n ? n : a->where, "%s '%s' must be a list of dimensions, e.g. [28, 28, 1]",
                            a->owner, key);
    size_t first = 0;
    if (with_batch) {
        if (!kc_node_is_null(n->items[0]))
            return kc_node_fail(e, n->items[0], "%s '%s': the batch dimension must be null (None)",
                                a->owner, key);
        first = 1;
    }
    out->rank = 0;
    for (size_t i = first; i < n->n; i++) {
        long long v;
        if (kc_node_int(n->items[i], &v, e)) return e->code;
        if (v < 1)
            return kc_node_fail(e, n->items[i], "%s '%s': dimensions must be >= 1, got %lld",
                                a->owner, key, v);
        out->d[out->rank++] = v;
    }
    if (out->rank == 0)
        return kc_node_fail(e, n, "%s '%s' needs at least one dimension besides the batch", a->owner, key);
    return KC_OK;
}

static int parse_input(kc_model *m, kc_node *item, kc_node *args_map, const char *cls, kc_error *e) {
    if (m->nlayers > 0 || m->input_node)
        return kc_node_fail(e, item, "%s must be the first entry of the layer list", cls);
    kc_args a;
    kc_args_init(&a, args_map, item, cls);
    int rc;
    if (kc_args_has(&a, "batch_shape"))
        rc = read_shape(&a, "batch_shape", 1, &m->input_shape, e);
    else
        rc = read_shape(&a, "shape", 0, &m->input_shape, e);
    if (rc) return rc;
    const char *dtype;
    if ((rc = kc_args_str(&a, "dtype", 0, "float32", &dtype, e))) return rc;
    if (strcmp(dtype, "float32"))
        return kc_node_fail(e, kc_args_node(&a, "dtype"), "%s dtype '%s' is not supported (kerasc computes in float32)",
                            cls, dtype);
    const char *name;
    if ((rc = kc_args_str(&a, "name", 0, NULL, &name, e))) return rc;
    (void)name; /* Sequential models do not list the input layer */
    int flag;
    if ((rc = kc_args_bool(&a, "sparse", 0, &flag, e))) return rc;
    if (flag) return kc_node_fail(e, kc_args_node(&a, "sparse"), "%s: sparse inputs are not supported", cls);
    if ((rc = kc_args_bool(&a, "ragged", 0, &flag, e))) return rc;
    if (flag) return kc_node_fail(e, kc_args_node(&a, "ragged"), "%s: ragged inputs are not supported", cls);
    if ((rc = kc_args_bool(&a, "optional", 0, &flag, e))) return rc;
    (void)input_keys;
    m->input_node = item;
    return kc_args_finish(&a, e);
}

static const char *class_names_for_hint(const char **buf, size_t max) {
    size_t n = 0;
    for (size_t i = 0; kc_layer_classes[i] && n + 3 < max; i++) buf[n++] = kc_layer_classes[i]->class_name;
    buf[n++] = "Input";
    buf[n++] = "InputLayer";
    buf[n] = NULL;
    return NULL;
}

static int unknown_class(kc_node *at, const char *cls, kc_error *e) {
    const char *names[128];
    class_names_for_hint(names, 128);
    size_t n = 0;
    while (names[n]) n++;
    const char *near = kc_closest(cls, names, n);
    if (near) return kc_node_fail(e, at, "unknown layer '%s' (did you mean %s?)", cls, near);
    char list[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof list - 40; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
    return kc_node_fail(e, at, "unknown layer '%s' (kerasc knows: %s)", cls, list);
}

/* One entry of `layers:`: `Flatten`, `Conv2D: {...}`, or `{class_name: Conv2D, ...}`
 * (arguments inline or under `config:`). */
static int split_entry(kc_node *item, const char **cls, kc_node **cls_node, kc_node **args, kc_error *e) {
    *args = NULL;
    if (item->kind == KC_NODE_SCALAR) {
        *cls = item->str;
        *cls_node = item;
        return KC_OK;
    }
    if (item->kind != KC_NODE_MAP || item->n == 0)
        return kc_node_fail(e, item, "a layer must be a class name or a mapping such as `Dense: {units: 10}`, got %s",
                            kc_node_kind_name(item));
    kc_node *cn = kc_map_get(item, "class_name");
    if (cn) {
        if (cn->kind != KC_NODE_SCALAR) return kc_node_fail(e, cn, "class_name must be a string");
        *cls = cn->str;
        *cls_node = cn;
        kc_node *cfg = kc_map_get(item, "config");
        if (cfg) {
            if (cfg->kind != KC_NODE_MAP && !kc_node_is_null(cfg))
                return kc_node_fail(e, cfg, "config must be a mapping of arguments");
            *args = cfg;
            /* nothing else may sit beside class_name + config */
            static const char *const k[] = {"class_name", "config", NULL};
            return kc_map_check_unused(item, "a layer entry", k, e);
        }
        *args = item; /* arguments inline; class_name is marked used */
        return KC_OK;
    }
    if (item->n != 1)
        return kc_node_fail(e, kc_map_key(item, 1),
                            "a layer entry holds one class (`Dense: {units: 10}`); '%s' looks like an argument: indent it under %s",
                            kc_map_key(item, 1)->str, kc_map_key(item, 0)->str);
    *cls_node = kc_map_key(item, 0);
    *cls = (*cls_node)->str;
    kc_map_key(item, 0)->used = 1;
    kc_node *v = kc_map_val(item, 0);
    if (!kc_node_is_null(v) && v->kind != KC_NODE_MAP)
        return kc_node_fail(e, v, "the arguments of %s must be a mapping (e.g. {units: 10}), got %s", *cls,
                            kc_node_kind_name(v));
    *args = kc_node_is_null(v) ? NULL : v;
    return KC_OK;
}

static int add_layer(kc_model *m, kc_layer *l) {
    kc_layer **nl = realloc(m->layers, (size_t)(m->nlayers + 1) * sizeof *nl);
    if (!nl) return -1;
    m->layers = nl;
    l->index = m->nlayers;
    m->layers[m->nlayers++] = l;
    return 0;
}

static int parse_layer(kc_model *m, kc_node *item, kc_error *e) {
    const char *cls_name = NULL;
    kc_node *cls_node = NULL, *args_map = NULL;
    int rc = split_entry(item, &cls_name, &cls_node, &args_map, e);
    if (rc) return rc;
    if (!strcmp(cls_name, "Input") || !strcmp(cls_name, "InputLayer"))
        return parse_input(m, item, args_map, cls_name, e);
    const kc_layer_class *cls = kc_layer_class_find(cls_name);
    if (!cls) return unknown_class(cls_node, cls_name, e);

    kc_args a;
    kc_args_init(&a, args_map, cls_node, cls->class_name);
    if (args_map && args_map == item) kc_args_node(&a, "class_name");
    const char *name, *dtype;
    int trainable;
    if ((rc = kc_args_str(&a, "name", 0, NULL, &name, e))) return rc;
    if ((rc = kc_args_bool(&a, "trainable", 1, &trainable, e))) return rc;
    if ((rc = kc_args_str(&a, "dtype", 0, "float32", &dtype, e))) return rc;
    if (strcmp(dtype, "float32"))
        return kc_node_fail(e, kc_args_node(&a, "dtype"),
                            "%s dtype '%s' is not supported (kerasc computes in float32)", cls->class_name, dtype);
    if (kc_args_has(&a, "input_shape") || kc_args_has(&a, "batch_input_shape")) {
        kc_node *at = kc_args_node(&a, kc_args_has(&a, "input_shape") ? "input_shape" : "batch_input_shape");
        if (m->nlayers > 0 || m->input_node)
            return kc_node_fail(e, at, "input_shape is only allowed on the first layer");
        if (kc_args_has(&a, "input_shape"))
            rc = read_shape(&a, "input_shape", 0, &m->input_shape, e);
        else
            rc = read_shape(&a, "batch_input_shape", 1, &m->input_shape, e);
        if (rc) return rc;
        m->input_node = at;
    }
    kc_layer *l = NULL;
    if ((rc = kc_layer_create(cls, &a, cls_node, &l, e))) return rc;
    if ((rc = kc_args_finish(&a, e))) {
        kc_layer_free(l);
        return rc;
    }
    l->node = cls_node;
    l->trainable = trainable;
    if (name) {
        if (!*name || strlen(name) >= sizeof l->name || strchr(name, '/')) {
            kc_layer_free(l);
            return kc_node_fail(e, kc_args_node(&a, "name"),
                                "layer name '%s' must be non-empty, shorter than %zu characters and without '/'",
                                name, sizeof l->name);
        }
        if (name_taken(m, name)) {
            kc_layer_free(l);
            return kc_node_fail(e, kc_args_node(&a, "name"), "a layer named '%s' already exists; layer names must be unique",
                                name);
        }
        snprintf(l->name, sizeof l->name, "%s", name);
    } else {
        auto_name(m, cls->base_name, l->name, sizeof l->name);
    }
    if (add_layer(m, l)) {
        kc_layer_free(l);
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    return KC_OK;
}

static int build_all(kc_model *m, kc_error *e) {
    kc_shape cur = m->input_shape;
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        int rc = kc_layer_build(l, &cur, e);
        if (rc) {
            if (i > 0) {
                char buf[128];
                kc_layer *prev = m->layers[i - 1];
                /* say which layer produced the shape that does not fit */
                size_t len = strlen(e->msg);
                snprintf(e->msg + len, sizeof e->msg - len, " (input comes from layer '%s' with output shape %s)",
                         prev->name, kc_shape_str(&prev->out_shape, 1, buf, sizeof buf));
            }
            return rc;
        }
        cur = l->out_shape;
    }
    return KC_OK;
}

int kc_model_parse(kc_node *node, const char *default_name, kc_model **out, kc_error *e) {
    *out = NULL;
    if (!node || node->kind != KC_NODE_MAP)
        return kc_node_fail(e, node, "the model section must be a mapping with `layers:`");
    kc_model *m = calloc(1, sizeof *m);
    if (!m) return kc_fail(e, KC_ERUNTIME, "out of memory");
    m->node = node;
    int rc = KC_OK;
    kc_node *cn = kc_map_get(node, "class_name");
    if (cn && (cn->kind != KC_NODE_SCALAR || strcmp(cn->str, "Sequential"))) {
        rc = kc_node_fail(e, cn, "model class_name '%s' is not supported; kerasc builds Sequential models",
                          cn->kind == KC_NODE_SCALAR ? cn->str : "?");
        goto fail;
    }
    kc_node *nn = kc_map_get(node, "name");
    const char *name = default_name ? default_name : "sequential";
    if (nn) {
        if (nn->kind != KC_NODE_SCALAR || !*nn->str || strlen(nn->str) >= sizeof m->name ||
            strchr(nn->str, '/')) {
            rc = kc_node_fail(e, nn, "model name must be a non-empty string without '/'");
            goto fail;
        }
        name = nn->str;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    kc_node *layers = kc_map_get(node, "layers");
    if (!layers) {
        rc = kc_node_fail(e, node, "the model section needs a `layers:` list");
        goto fail;
    }
    if (layers->kind != KC_NODE_SEQ || layers->n == 0) {
        rc = kc_node_fail(e, layers, "`layers:` must be a non-empty list of layers");
        goto fail;
    }
    if ((rc = kc_map_check_unused(node, "the model section", model_keys, e))) goto fail;
    for (size_t i = 0; i < layers->n; i++)
        if ((rc = parse_layer(m, layers->items[i], e))) goto fail;
    if (!m->input_node) {
        rc = kc_node_fail(e, layers,
                          "the model has no input shape: start the list with `- Input: {shape: [28, 28, 1]}` "
                          "or give the first layer `input_shape:`");
        goto fail;
    }
    if (m->nlayers == 0) {
        rc = kc_node_fail(e, layers, "the model has an input but no layers");
        goto fail;
    }
    if ((rc = build_all(m, e))) goto fail;
    *out = m;
    return KC_OK;
fail:
    kc_model_free(m);
    return rc;
}

int64_t kc_model_param_count(const kc_model *m, int trainable_only) {
    int64_t n = 0;
    for (int i = 0; i < m->nlayers; i++) {
        if (trainable_only && !m->layers[i]->trainable) continue;
        n += kc_layer_param_count(m->layers[i], trainable_only);
    }
    return n;
}

const kc_shape *kc_model_output_shape(const kc_model *m) {
    return &m->layers[m->nlayers - 1]->out_shape;
}

int64_t kc_model_flops(const kc_model *m) {
    int64_t f = 0;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i]->cls->flops) f += m->layers[i]->cls->flops(m->layers[i]);
    return f;
}

int kc_model_params(const kc_model *m, kc_param_ref *out, int max) {
    int n = 0;
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        for (int j = 0; j < l->nparams; j++) {
            if (n < max) {
                snprintf(out[n].name, sizeof out[n].name, "%s/%s", l->name, l->params[j].name);
                out[n].layer = l;
                out[n].param = &l->params[j];
            }
            n++;
        }
    }
    return n;
}

static int has_activation(const kc_layer *l) { return l->activation.act != KC_ACT_LINEAR; }

int kc_model_plan(kc_model *m, const kc_backend *be, int max_batch, int training, kc_error *e) {
    m->be = be;
    m->max_batch = max_batch;
    m->training = training;
    m->z = calloc((size_t)m->nlayers, sizeof *m->z);
    m->y = calloc((size_t)m->nlayers, sizeof *m->y);
    if (!m->z || !m->y) return kc_fail(e, KC_ERUNTIME, "out of memory");

    /* one arena: input, per-layer z (and y when activated), gradient buffers */
    size_t floats = (size_t)kc_shape_numel(&m->input_shape) * (size_t)max_batch;
    size_t widest = floats;
    for (int i = 0; i < m->nlayers; i++) {
        size_t o = (size_t)kc_shape_numel(&m->layers[i]->out_shape) * (size_t)max_batch;
        floats += has_activation(m->layers[i]) ? 2 * o : o;
        if (o > widest) widest = o;
    }
    if (training) floats += 3 * widest;
    m->arena = be->alloc(floats * sizeof(float));
    if (!m->arena) return kc_fail(e, KC_ERUNTIME, "cannot allocate %zu MB for activations", floats * 4 >> 20);
    float *p = m->arena;
    m->x = p;
    p += (size_t)kc_shape_numel(&m->input_shape) * (size_t)max_batch;
    for (int i = 0; i < m->nlayers; i++) {
        size_t o = (size_t)kc_shape_numel(&m->layers[i]->out_shape) * (size_t)max_batch;
        m->z[i] = p;
        p += o;
        if (has_activation(m->layers[i])) {
            m->y[i] = p;
            p += o;
        } else {
            m->y[i] = m->z[i];
        }
    }
    if (training) {
        m->grad_a = p;
        m->grad_b = p + widest;
        m->grad_z = p + 2 * widest;
    }

    /* parameters: contiguous values and grads */
    int64_t nv = 0;
    for (int i = 0; i < m->nlayers; i++) nv += kc_layer_param_count(m->layers[i], 0);
    m->nvalues = nv;
    if (nv > 0) {
        m->values = be->alloc((size_t)nv * sizeof(float));
        m->grads = training ? be->alloc((size_t)nv * sizeof(float)) : NULL;
        if (!m->values || (training && !m->grads))
            return kc_fail(e, KC_ERUNTIME, "cannot allocate %lld parameters", (long long)nv);
    }
    int64_t off = 0;
    size_t ws = 0;
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        for (int j = 0; j < l->nparams; j++) {
            l->params[j].value = m->values + off;
            l->params[j].grad = m->grads ? m->grads + off : NULL;
            off += kc_shape_numel(&l->params[j].shape);
        }
        if (l->cls->buffer_bytes) {
            size_t b = l->cls->buffer_bytes(l, max_batch, be);
            if (b) {
                l->buf = be->alloc(b);
                if (!l->buf) return kc_fail(e, KC_ERUNTIME, "cannot allocate layer buffers");
            }
        }
        if (l->cls->workspace_bytes) {
            size_t w = l->cls->workspace_bytes(l, max_batch, be);
            if (w > ws) ws = w;
        }
    }
    if (ws) {
        m->ws = be->alloc(ws);
        if (!m->ws) return kc_fail(e, KC_ERUNTIME, "cannot allocate %zu MB of scratch", ws >> 20);
    }
    m->ws_bytes = ws;
    return KC_OK;
}

void kc_model_init_weights(kc_model *m, uint64_t seed) {
    size_t biggest = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            size_t n = (size_t)kc_shape_numel(&m->layers[i]->params[j].shape);
            if (n > biggest) biggest = n;
        }
    float *host = malloc((biggest ? biggest : 1) * sizeof *host);
    if (!host) return;
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        for (int j = 0; j < l->nparams; j++) {
            kc_param *p = &l->params[j];
            size_t n = (size_t)kc_shape_numel(&p->shape);
            /* keyed by the layer's position and the weight, not by draw order */
            uint64_t stream = kc_rng_stream(p->name, (uint64_t)i, 0);
            kc_initializer_fill(&p->init, &p->shape, host, seed, stream);
            m->be->upload(p->value, host, n * sizeof *host);
        }
    }
    free(host);
}

const float *kc_model_forward(kc_model *m, const kc_exec *ex) {
    const float *x = m->x;
    kc_exec lex = *ex;
    lex.ws = m->ws;
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        l->cls->forward(l, &lex, x, m->z[i]);
        if (has_activation(l)) {
            int64_t cols = l->out_shape.rank ? l->out_shape.d[l->out_shape.rank - 1] : 1;
            int64_t rows = kc_shape_numel(&l->out_shape) / cols * ex->batch;
            kc_activation_forward(m->be, &l->activation, m->z[i], m->y[i], (int)rows, (int)cols);
        }
        if (ex->on_layer) ex->on_layer(ex->hook_ctx, i, 0);
        x = m->y[i];
    }
    return x;
}

void kc_model_backward(kc_model *m, const kc_exec *ex, int dy_is_preactivation) {
    kc_exec lex = *ex;
    lex.ws = m->ws;
    const float *g = m->grad_b;
    float *bufs[2] = {m->grad_a, m->grad_b};
    int which = 0;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        kc_layer *l = m->layers[i];
        const float *gz = g;
        if (has_activation(l) && !(i == m->nlayers - 1 && dy_is_preactivation)) {
            int64_t cols = l->out_shape.rank ? l->out_shape.d[l->out_shape.rank - 1] : 1;
            int64_t rows = kc_shape_numel(&l->out_shape) / cols * ex->batch;
            kc_activation_backward(m->be, &l->activation, m->z[i], m->y[i], g, m->grad_z, (int)rows,
                                   (int)cols);
            gz = m->grad_z;
        }
        const float *x = i > 0 ? m->y[i - 1] : m->x;
        float *dx = i > 0 ? bufs[which] : NULL;
        l->cls->backward(l, &lex, x, m->z[i], gz, dx);
        if (ex->on_layer) ex->on_layer(ex->hook_ctx, i, 1);
        if (dx) {
            g = dx;
            which ^= 1;
        }
    }
}
