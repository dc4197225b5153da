/* The model: parsing `model:` into layers and the graph of their calls,
 * shapes, and the forward and backward passes over planned buffers. */
#include "models/model.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "models/regularizers.h"

static const char *const model_keys[] = {"name", "layers", "class_name", "inputs", "outputs", NULL};
static const char *const call_keys[] = {"layer", "inputs", NULL};

/* ------------------------------------------------------------ lifetime --- */

static void backward_plan_free(struct kc_backward_plan *p);

void kc_model_free(kc_model *m) {
    if (!m) return;
    if (m->be) {
        m->be->free(m->arena);
        m->be->free(m->values);
        m->be->free(m->grads);
        m->be->free(m->ws);
        for (int i = 0; i < m->nnodes; i++)
            m->be->free(m->nodes[i].buf);
    }
    free(m->host_ws);
    backward_plan_free(m->bplan);
    for (int i = 0; i < m->nlayers; i++) {
        m->layers[i]->buf = NULL; /* the nodes own the buffers */
        kc_layer_free(m->layers[i]);
    }
    free(m->layers);
    free(m->nodes);
    free(m->z);
    free(m->y);
    free(m);
}

/* --------------------------------------------------------------- names --- */

static kc_layer *layer_named(const kc_model *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i]->name, name)) return m->layers[i];
    return NULL;
}

static int input_named(const kc_model *m, const char *name) {
    for (int i = 0; i < m->ninputs; i++)
        if (!strcmp(m->inputs[i].name, name)) return i;
    return -1;
}

static int name_taken(const kc_model *m, const char *name) {
    return layer_named(m, name) || input_named(m, name) >= 0;
}

static void auto_name(const kc_model *m, const char *base, char *out, size_t n) {
    snprintf(out, n, "%s", base);
    for (int k = 1; name_taken(m, out); k++)
        snprintf(out, n, "%s_%d", base, k);
}

/* A user-given name: unique, non-empty, no '/' (weights are "layer/kernel"). */
static int check_name(const kc_model *m, const kc_node *at, const char *name, kc_error *e) {
    if (!*name || strlen(name) >= 128 || strchr(name, '/') || strchr(name, '['))
        return kc_node_fail(e, at,
                            "layer name '%s' must be non-empty, shorter than 128 characters and "
                            "without '/' or '['",
                            name);
    if (name_taken(m, name))
        return kc_node_fail(e, at, "a layer named '%s' already exists; layer names must be unique",
                            name);
    return KC_OK;
}

int kc_model_input_index(const kc_model *m, const char *name) {
    return input_named(m, name);
}

int kc_model_output_index(const kc_model *m, const char *name) {
    for (int i = 0; i < m->noutputs; i++)
        if (!strcmp(m->outputs[i].name, name)) return i;
    return -1;
}

/* --------------------------------------------------------------- parse --- */

/* What the parser tracks besides the model. */
typedef struct parse_ctx {
    kc_model *m;
    kc_node *layers; /* the `layers:` list */
    size_t entry;    /* index of the entry being parsed */
    int prev;        /* node made by the previous entry, -1 before the first */
    int graph;       /* graph syntax seen: the model is Functional */
} parse_ctx;

static int add_node(kc_model *m, kc_model_node *out) {
    kc_model_node *nn = realloc(m->nodes, (size_t)(m->nnodes + 1) * sizeof *nn);
    if (!nn) return -1;
    m->nodes = nn;
    m->nodes[m->nnodes] = *out;
    return m->nnodes++;
}

static int add_layer(kc_model *m, kc_layer *l) {
    kc_layer **nl = realloc(m->layers, (size_t)(m->nlayers + 1) * sizeof *nl);
    if (!nl) return -1;
    m->layers = nl;
    l->index = m->nlayers;
    m->layers[m->nlayers++] = l;
    return 0;
}

/* A shape given as a list of positive ints (Input shape, input_shape). */
static int read_shape(kc_args *a, const char *key, int with_batch, kc_shape *out, kc_error *e) {
    kc_node *n = kc_args_node(a, key);
    if (!n || n->kind != KC_NODE_SEQ || n->n == 0 || n->n > KC_MAX_RANK)
        return kc_node_fail(e, n ? n : a->where,
                            "%s '%s' must be a list of dimensions, e.g. [28, 28, 1]", a->owner,
                            key);
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
        return kc_node_fail(e, n, "%s '%s' needs at least one dimension besides the batch",
                            a->owner, key);
    return KC_OK;
}

/* Adds model input `name` (NULL: automatic) and its node. */
static int new_input(parse_ctx *p, const char *name, const kc_shape *shape, const kc_node *where,
                     kc_error *e) {
    kc_model *m = p->m;
    if (m->ninputs >= KC_MODEL_MAX_IO)
        return kc_node_fail(e, where, "a model takes at most %d inputs", KC_MODEL_MAX_IO);
    kc_model_input *in = &m->inputs[m->ninputs];
    memset(in, 0, sizeof *in);
    if (name)
        snprintf(in->name, sizeof in->name, "%s", name);
    else
        auto_name(m, "input_layer", in->name, sizeof in->name);
    in->shape = *shape;
    in->where = where;
    kc_model_node node = {.layer = NULL, .input = m->ninputs, .shape = *shape, .where = where};
    int id = add_node(m, &node);
    if (id < 0) return kc_fail(e, KC_ERUNTIME, "out of memory");
    in->node = id;
    if (m->ninputs == 0) {
        m->input_shape = *shape;
        m->input_node = where;
    }
    m->ninputs++;
    p->prev = id;
    return KC_OK;
}

static int parse_input(parse_ctx *p, kc_node *item, kc_node *args_map, const char *cls,
                       kc_error *e) {
    kc_args a;
    kc_args_init(&a, args_map, item, cls);
    kc_shape shape;
    int rc;
    if (kc_args_has(&a, "batch_shape"))
        rc = read_shape(&a, "batch_shape", 1, &shape, e);
    else
        rc = read_shape(&a, "shape", 0, &shape, e);
    if (rc) return rc;
    const char *dtype;
    if ((rc = kc_args_str(&a, "dtype", 0, "float32", &dtype, e))) return rc;
    if (strcmp(dtype, "float32"))
        return kc_node_fail(e, kc_args_node(&a, "dtype"),
                            "%s dtype '%s' is not supported (kerasc computes in float32)", cls,
                            dtype);
    const char *name;
    if ((rc = kc_args_str(&a, "name", 0, NULL, &name, e))) return rc;
    if (name && (rc = check_name(p->m, kc_args_node(&a, "name"), name, e))) return rc;
    int flag;
    if ((rc = kc_args_bool(&a, "sparse", 0, &flag, e))) return rc;
    if (flag)
        return kc_node_fail(e, kc_args_node(&a, "sparse"), "%s: sparse inputs are not supported",
                            cls);
    if ((rc = kc_args_bool(&a, "ragged", 0, &flag, e))) return rc;
    if (flag)
        return kc_node_fail(e, kc_args_node(&a, "ragged"), "%s: ragged inputs are not supported",
                            cls);
    if ((rc = kc_args_bool(&a, "optional", 0, &flag, e))) return rc;
    kc_node *ins = kc_args_node(&a, "inputs");
    if (ins)
        return kc_node_fail(e, ins, "an %s takes no `inputs:`: it is where data enters the model",
                            cls);
    if ((rc = kc_args_finish(&a, e))) return rc;
    return new_input(p, name, &shape, item, e);
}

static void class_names_for_hint(const char **buf, size_t max) {
    size_t n = 0;
    for (size_t i = 0; kc_layer_classes[i] && n + 3 < max; i++)
        buf[n++] = kc_layer_classes[i]->class_name;
    buf[n++] = "Input";
    buf[n++] = "InputLayer";
    buf[n] = NULL;
}

static int unknown_class(kc_node *at, const char *cls, kc_error *e) {
    const char *names[128];
    class_names_for_hint(names, 128);
    size_t n = 0;
    while (names[n])
        n++;
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
static int split_entry(kc_node *item, const char **cls, kc_node **cls_node, kc_node **args,
                       kc_error *e) {
    *args = NULL;
    if (item->kind == KC_NODE_SCALAR) {
        *cls = item->str;
        *cls_node = item;
        return KC_OK;
    }
    if (item->kind != KC_NODE_MAP || item->n == 0)
        return kc_node_fail(
            e, item,
            "a layer must be a class name or a mapping such as `Dense: {units: 10}`, "
            "got %s",
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
        return kc_node_fail(
            e, kc_map_key(item, 1),
            "a layer entry holds one class (`Dense: {units: 10}`); '%s' looks like an "
            "argument: indent it under %s",
            kc_map_key(item, 1)->str, kc_map_key(item, 0)->str);
    *cls_node = kc_map_key(item, 0);
    *cls = (*cls_node)->str;
    kc_map_key(item, 0)->used = 1;
    kc_node *v = kc_map_val(item, 0);
    if (!kc_node_is_null(v) && v->kind != KC_NODE_MAP)
        return kc_node_fail(e, v,
                            "the arguments of %s must be a mapping (e.g. {units: 10}), got %s",
                            *cls, kc_node_kind_name(v));
    *args = kc_node_is_null(v) ? NULL : v;
    return KC_OK;
}

/* The explicit `name:` of entry i, if any (to tell a forward reference from a typo). */
static const char *entry_name(kc_node *item) {
    if (!item || item->kind != KC_NODE_MAP) return NULL;
    kc_node *args = item;
    kc_node *cfg = NULL;
    for (size_t i = 0; i < item->n; i++) {
        kc_node *k = kc_map_key(item, i);
        if (!strcmp(k->str, "config")) cfg = kc_map_val(item, i);
    }
    if (cfg && cfg->kind == KC_NODE_MAP)
        args = cfg;
    else if (item->n == 1 && kc_map_val(item, 0)->kind == KC_NODE_MAP)
        args = kc_map_val(item, 0);
    for (size_t i = 0; i < args->n; i++) {
        kc_node *k = kc_map_key(args, i), *v = kc_map_val(args, i);
        if (!strcmp(k->str, "name") && v->kind == KC_NODE_SCALAR) return v->str;
    }
    return NULL;
}

/* Splits "name", "name[3]" or "name[3][0]" (Keras's layer[node][tensor]). */
static int split_ref(const kc_node *at, const char *ref, char *name, size_t n, long *call,
                     kc_error *e) {
    const char *br = strchr(ref, '[');
    size_t len = br ? (size_t)(br - ref) : strlen(ref);
    *call = 0;
    if (len == 0 || len >= n)
        return kc_node_fail(e, at, "'%s' is not a layer name (expected `name` or `name[node]`)",
                            ref);
    memcpy(name, ref, len);
    name[len] = 0;
    if (!br) return KC_OK;
    char *end;
    long v = strtol(br + 1, &end, 10);
    if (end == br + 1 || *end != ']' || v < 0)
        return kc_node_fail(e, at, "'%s': expected `%s[node]` with a node index >= 0", ref, name);
    *call = v;
    const char *rest = end + 1;
    if (*rest) { /* [tensor]: kerasc layers have one output tensor */
        long t = strtol(rest + 1, &end, 10);
        if (rest[0] != '[' || end == rest + 1 || *end != ']' || end[1] || t != 0)
            return kc_node_fail(e, at,
                                "'%s': only `%s[%ld][0]` exists (kerasc layers have one output)",
                                ref, name, v);
    }
    return KC_OK;
}

static int count_calls(const kc_model *m, const kc_layer *l) {
    int n = 0;
    for (int i = 0; i < m->nnodes; i++)
        n += m->nodes[i].layer == l;
    return n;
}

static int node_of_call(const kc_model *m, const kc_layer *l, long call) {
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].layer == l && m->nodes[i].call == call) return i;
    return -1;
}

/* The name a node goes by in messages: "d1", "encoder[1]", "image". */
static const char *node_label(const kc_model *m, int id, char *buf, size_t n) {
    const kc_model_node *nd = &m->nodes[id];
    if (!nd->layer)
        snprintf(buf, n, "%s", m->inputs[nd->input].name);
    else if (nd->call == 0)
        snprintf(buf, n, "%s", nd->layer->name);
    else
        snprintf(buf, n, "%s[%d]", nd->layer->name, nd->call);
    return buf;
}

/* Resolves one reference written in `inputs:` or `outputs:` to a node. */
static int resolve_ref(parse_ctx *p, kc_node *at, const char *user, int *out, kc_error *e) {
    kc_model *m = p->m;
    if (at->kind != KC_NODE_SCALAR || kc_node_is_null(at))
        return kc_node_fail(e, at, "expected the name of a layer or Input, got %s",
                            kc_node_kind_name(at));
    char name[128];
    long call;
    int rc = split_ref(at, at->str, name, sizeof name, &call, e);
    if (rc) return rc;
    int in = input_named(m, name);
    if (in >= 0) {
        if (call != 0)
            return kc_node_fail(e, at, "'%s': the Input '%s' has one node, %s[0]", at->str, name,
                                name);
        *out = m->inputs[in].node;
        return KC_OK;
    }
    kc_layer *l = layer_named(m, name);
    if (l) {
        int id = node_of_call(m, l, call);
        if (id >= 0) {
            *out = id;
            return KC_OK;
        }
        int calls = count_calls(m, l);
        char have[300];
        if (calls == 1)
            snprintf(have, sizeof have, "%s[0]", name);
        else
            snprintf(have, sizeof have, "%s[0] .. %s[%d]", name, name, calls - 1);
        return kc_node_fail(e, at,
                            "'%s': layer '%s' is called %d time%s above this point (%s); entries "
                            "may only use entries above them",
                            at->str, name, calls, calls == 1 ? "" : "s", have);
    }
    /* declared further down? then it is a forward reference (the list is the graph's order) */
    if (p->layers) {
        if (user && !strcmp(user, name))
            return kc_node_fail(e, at, "'%s' takes its own output as input: that is a cycle", name);
        for (size_t i = p->entry + 1; i < p->layers->n; i++) {
            const char *later = entry_name(p->layers->items[i]);
            if (later && !strcmp(later, name))
                return kc_node_fail(
                    e, at,
                    "'%s' is declared below this entry (line %d); a layer may only "
                    "take inputs from entries above it, which also rules out cycles",
                    name, p->layers->items[i]->line);
        }
    }
    const char *cands[512];
    size_t nc = 0;
    for (int i = 0; i < m->ninputs && nc < 511; i++)
        cands[nc++] = m->inputs[i].name;
    for (int i = 0; i < m->nlayers && nc < 511; i++)
        cands[nc++] = m->layers[i]->name;
    cands[nc] = NULL;
    const char *near = kc_closest(name, cands, nc);
    if (near)
        return kc_node_fail(e, at, "unknown layer or Input '%s' (did you mean '%s'?)", name, near);
    return kc_node_fail(e, at, "unknown layer or Input '%s'%s", name,
                        nc ? "" : " (no layer or Input is declared above it)");
}

/* `inputs:` of an entry: one reference or a list; absent: the entry before. */
static int read_inputs(parse_ctx *p, kc_node *ins, const kc_node *entry, const char *user, int *ids,
                       int *n, kc_error *e) {
    *n = 0;
    if (!ins) {
        if (p->prev < 0)
            return kc_node_fail(e, entry,
                                "the model has no input shape: start the list with `- Input: "
                                "{shape: [28, 28, 1]}` or give the first layer `input_shape:`");
        ids[(*n)++] = p->prev;
        return KC_OK;
    }
    p->graph = 1;
    if (ins->kind == KC_NODE_SEQ) {
        if (ins->n == 0) return kc_node_fail(e, ins, "`inputs:` is an empty list");
        if (ins->n > KC_LAYER_MAX_INPUTS)
            return kc_node_fail(e, ins, "a layer takes at most %d inputs", KC_LAYER_MAX_INPUTS);
        for (size_t i = 0; i < ins->n; i++) {
            int rc = resolve_ref(p, ins->items[i], user, &ids[*n], e);
            if (rc) return rc;
            (*n)++;
        }
        return KC_OK;
    }
    int rc = resolve_ref(p, ins, user, &ids[0], e);
    if (!rc) *n = 1;
    return rc;
}

/* "'f1' (None, 1600), 'd1' (None, 64)" */
static void describe_inputs(const kc_model *m, const int *ids, int n, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n && used + 8 < cap; i++) {
        char lb[160], sb[160];
        used += (size_t)snprintf(buf + used, cap - used, "%s'%s' %s", i ? ", " : "",
                                 node_label(m, ids[i], lb, sizeof lb),
                                 kc_shape_str(&m->nodes[ids[i]].shape, 1, sb, sizeof sb));
    }
}

static void append_msg(kc_error *e, const char *fmt, const char *a, const char *b) {
    size_t len = strlen(e->msg);
    snprintf(e->msg + len, sizeof e->msg - len, fmt, a, b);
}

/* Makes the node for a call of `l` on nodes ids[0..n): checks the count, builds
 * the layer on its first call, checks the shapes of later calls. */
static int call_layer(parse_ctx *p, kc_layer *l, const int *ids, int n, const kc_node *where,
                      const kc_node *ins_at, kc_error *e) {
    kc_model *m = p->m;
    int lo, hi;
    kc_layer_class_arity(l->cls, &lo, &hi);
    char desc[1024];
    describe_inputs(m, ids, n, desc, sizeof desc);
    if (n < lo || n > hi) {
        char want[64];
        if (lo == hi)
            snprintf(want, sizeof want, "exactly %d input%s", lo, lo == 1 ? "" : "s");
        else if (hi >= KC_LAYER_MAX_INPUTS)
            snprintf(want, sizeof want, "at least %d input%s", lo, lo == 1 ? "" : "s");
        else
            snprintf(want, sizeof want, "%d to %d inputs", lo, hi);
        return kc_node_fail(
            e, ins_at, "layer '%s' (%s) takes %s, got %d: %s%s", l->name, l->cls->class_name, want,
            n, desc, lo == 1 && hi == 1 ? " (join them first, e.g. with Concatenate or Add)" : "");
    }
    kc_shape shapes[KC_LAYER_MAX_INPUTS];
    for (int i = 0; i < n; i++)
        shapes[i] = m->nodes[ids[i]].shape;
    int call = count_calls(m, l);
    if (call == 0) {
        int rc = kc_layer_build_n(l, shapes, n, e);
        if (rc) {
            const kc_model_node *src = &m->nodes[ids[0]];
            if (n == 1 && src->layer) {
                char b[160];
                append_msg(e, " (input comes from layer '%s' with output shape %s)",
                           src->layer->name, kc_shape_str(&src->shape, 1, b, sizeof b));
            } else if (n > 1) {
                append_msg(e, " (inputs: %s%s)", desc, "");
            }
            return rc;
        }
    } else {
        int same = l->ninputs == n;
        for (int i = 0; same && i < n; i++)
            same = kc_shape_equal(&shapes[i], &l->in_shapes[i]);
        if (!same) {
            char first[1024] = "";
            size_t used = 0;
            for (int i = 0; i < l->ninputs && used + 8 < sizeof first; i++) {
                char sb[160];
                used += (size_t)snprintf(first + used, sizeof first - used, "%s%s", i ? ", " : "",
                                         kc_shape_str(&l->in_shapes[i], 1, sb, sizeof sb));
            }
            return kc_node_fail(e, ins_at,
                                "layer '%s' is shared: this call gets %s but its first call "
                                "(%s:%d:%d) got %s; every call of a layer takes the same shapes",
                                l->name, desc, l->node->file, l->node->line, l->node->col, first);
        }
    }
    kc_model_node node = {
        .layer = l, .input = -1, .call = call, .nin = n, .shape = l->out_shape, .where = where};
    for (int i = 0; i < n; i++)
        node.in[i] = ids[i];
    int id = add_node(m, &node);
    if (id < 0) return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int i = 0; i < n; i++)
        m->nodes[ids[i]].nconsumers++;
    p->prev = id;
    return KC_OK;
}

/* `- {layer: encoder, inputs: right}`: another call of a declared layer. */
static int parse_call(parse_ctx *p, kc_node *item, kc_node *ln, kc_error *e) {
    kc_node *ins = kc_map_get(item, "inputs");
    int rc = kc_map_check_unused(item, "a shared-layer entry", call_keys, e);
    if (rc) return rc;
    if (ln->kind != KC_NODE_SCALAR || kc_node_is_null(ln))
        return kc_node_fail(e, ln, "`layer:` names a layer declared above, got %s",
                            kc_node_kind_name(ln));
    p->graph = 1;
    kc_layer *l = layer_named(p->m, ln->str);
    if (!l) {
        if (input_named(p->m, ln->str) >= 0)
            return kc_node_fail(e, ln, "'%s' is an Input; `layer:` calls a layer again", ln->str);
        int rc2 = 0;
        int dummy;
        rc2 = resolve_ref(p, ln, NULL, &dummy, e); /* the located "unknown"/"below" message */
        return rc2 ? rc2 : kc_node_fail(e, ln, "'%s' is not a layer", ln->str);
    }
    int ids[KC_LAYER_MAX_INPUTS], n;
    if ((rc = read_inputs(p, ins, item, l->name, ids, &n, e))) return rc;
    return call_layer(p, l, ids, n, item, ins ? ins : item, e);
}

static int parse_layer(parse_ctx *p, kc_node *item, kc_error *e) {
    kc_model *m = p->m;
    if (item->kind == KC_NODE_MAP && !kc_map_get(item, "class_name")) {
        kc_node *ln = kc_map_get(item, "layer");
        if (ln) return parse_call(p, item, ln, e);
    }
    const char *cls_name = NULL;
    kc_node *cls_node = NULL, *args_map = NULL;
    int rc = split_entry(item, &cls_name, &cls_node, &args_map, e);
    if (rc) return rc;
    if (!strcmp(cls_name, "Input") || !strcmp(cls_name, "InputLayer"))
        return parse_input(p, item, args_map, cls_name, e);
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
                            "%s dtype '%s' is not supported (kerasc computes in float32)",
                            cls->class_name, dtype);
    if (name && (rc = check_name(m, kc_args_node(&a, "name"), name, e))) return rc;
    kc_node *ins = kc_args_node(&a, "inputs");
    if (kc_args_has(&a, "input_shape") || kc_args_has(&a, "batch_input_shape")) {
        const char *key = kc_args_has(&a, "input_shape") ? "input_shape" : "batch_input_shape";
        kc_node *at = kc_args_node(&a, key);
        if (m->nnodes > 0 || ins)
            return kc_node_fail(e, at, "%s is only allowed on the first layer of a stack", key);
        kc_shape shape;
        if ((rc = read_shape(&a, key, !strcmp(key, "batch_input_shape"), &shape, e))) return rc;
        if ((rc = new_input(p, NULL, &shape, at, e))) return rc;
    }
    int ids[KC_LAYER_MAX_INPUTS], n;
    if ((rc = read_inputs(p, ins, cls_node, name, ids, &n, e))) return rc;

    kc_layer *l = NULL;
    if ((rc = kc_layer_create(cls, &a, cls_node, &l, e))) return rc;
    if ((rc = kc_args_finish(&a, e))) {
        kc_layer_free(l);
        return rc;
    }
    l->node = cls_node;
    l->trainable = trainable;
    if (name)
        snprintf(l->name, sizeof l->name, "%s", name);
    else
        auto_name(m, cls->base_name, l->name, sizeof l->name);
    if (add_layer(m, l)) {
        kc_layer_free(l);
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    return call_layer(p, l, ids, n, cls_node, ins ? ins : cls_node, e);
}

/* References in the model's `inputs:` / `outputs:`: one or a list. */
static int read_model_refs(parse_ctx *p, kc_node *v, const char *key, int *ids, int *n,
                           kc_error *e) {
    *n = 0;
    size_t count = v->kind == KC_NODE_SEQ ? v->n : 1;
    if (count == 0) return kc_node_fail(e, v, "the model's `%s:` is an empty list", key);
    if (count > KC_MODEL_MAX_IO)
        return kc_node_fail(e, v, "a model has at most %d %s", KC_MODEL_MAX_IO, key);
    p->entry = p->layers->n; /* every entry is above */
    for (size_t i = 0; i < count; i++) {
        kc_node *r = v->kind == KC_NODE_SEQ ? v->items[i] : v;
        int id, rc = resolve_ref(p, r, NULL, &id, e);
        if (rc) return rc;
        for (int j = 0; j < *n; j++)
            if (ids[j] == id)
                return kc_node_fail(e, r, "'%s' is listed twice in the model's `%s:`", r->str, key);
        ids[(*n)++] = id;
    }
    return KC_OK;
}

static int set_inputs(parse_ctx *p, kc_node *v, kc_error *e) {
    kc_model *m = p->m;
    int ids[KC_MODEL_MAX_IO], n, rc = read_model_refs(p, v, "inputs", ids, &n, e);
    if (rc) return rc;
    kc_model_input sorted[KC_MODEL_MAX_IO];
    for (int i = 0; i < n; i++) {
        const kc_model_node *nd = &m->nodes[ids[i]];
        if (nd->layer) {
            char lb[160];
            return kc_node_fail(e, v->kind == KC_NODE_SEQ ? v->items[i] : v,
                                "'%s' is a layer, not an Input; the model's `inputs:` lists Inputs",
                                node_label(m, ids[i], lb, sizeof lb));
        }
        sorted[i] = m->inputs[nd->input];
    }
    for (int i = 0; i < m->ninputs; i++) {
        int listed = 0;
        for (int j = 0; j < n; j++)
            listed |= m->nodes[ids[j]].input == i;
        if (!listed)
            return kc_node_fail(
                e, m->inputs[i].where,
                "Input '%s' is not listed in the model's `inputs:` (%s:%d:%d); every "
                "Input must be fed",
                m->inputs[i].name, v->file, v->line, v->col);
    }
    for (int i = 0; i < n; i++) {
        m->inputs[i] = sorted[i];
        m->nodes[m->inputs[i].node].input = i;
    }
    m->input_shape = m->inputs[0].shape;
    m->input_node = m->inputs[0].where;
    return KC_OK;
}

static int set_outputs(parse_ctx *p, kc_node *v, kc_error *e) {
    kc_model *m = p->m;
    int ids[KC_MODEL_MAX_IO], n;
    if (v) {
        int rc = read_model_refs(p, v, "outputs", ids, &n, e);
        if (rc) return rc;
    } else {
        /* the last entry; any other end of the graph needs `outputs:` */
        ids[0] = m->nnodes - 1;
        n = 1;
        char ends[1024] = "";
        size_t used = 0;
        int others = 0;
        for (int i = 0; i < m->nnodes; i++)
            if (m->nodes[i].nconsumers == 0 && m->nodes[i].layer && used + 8 < sizeof ends) {
                char lb[160];
                used += (size_t)snprintf(ends + used, sizeof ends - used, "%s%s", used ? ", " : "",
                                         node_label(m, i, lb, sizeof lb));
                others += i != ids[0];
            }
        if (others)
            return kc_node_fail(e, m->node,
                                "the graph has several ends (%s): list the model's outputs, e.g. "
                                "`outputs: [%s]`",
                                ends, ends);
    }
    for (int i = 0; i < n; i++) {
        const kc_model_node *nd = &m->nodes[ids[i]];
        const kc_node *at = v ? (v->kind == KC_NODE_SEQ ? v->items[i] : v) : nd->where;
        if (!nd->layer)
            return kc_node_fail(e, at, "'%s' is an Input; a model's outputs are layers",
                                m->inputs[nd->input].name);
        for (int j = 0; j < i; j++)
            if (m->nodes[ids[j]].layer == nd->layer)
                return kc_node_fail(e, at,
                                    "two outputs come from layer '%s'; outputs are named after "
                                    "their layers, so each must come from a different layer",
                                    nd->layer->name);
        kc_model_output *o = &m->outputs[i];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", nd->layer->name);
        o->node = ids[i];
        o->where = at;
    }
    m->noutputs = n;
    return KC_OK;
}

/* Every node must lead to an output: anything else would be computed for nothing. */
static int check_reach(kc_model *m, kc_error *e) {
    char *reach = calloc((size_t)m->nnodes, 1);
    if (!reach) return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int k = 0; k < m->noutputs; k++)
        reach[m->outputs[k].node] = 1;
    for (int i = m->nnodes - 1; i >= 0; i--)
        if (reach[i])
            for (int j = 0; j < m->nodes[i].nin; j++)
                reach[m->nodes[i].in[j]] = 1;
    char outs[512] = "";
    size_t used = 0;
    for (int k = 0; k < m->noutputs && used + 4 < sizeof outs; k++)
        used += (size_t)snprintf(outs + used, sizeof outs - used, "%s%s", k ? ", " : "",
                                 m->outputs[k].name);
    int rc = KC_OK;
    /* a dead-end layer says more than the Input feeding it: report layers first */
    for (int pass = 0; pass < 2 * m->nnodes && !rc; pass++) {
        int i = pass % m->nnodes;
        if (reach[i] || (pass < m->nnodes) != (m->nodes[i].layer != NULL)) continue;
        const kc_model_node *nd = &m->nodes[i];
        char lb[160];
        if (!nd->layer && nd->nconsumers == 0)
            rc = kc_node_fail(e, nd->where, "Input '%s' is not used by any layer",
                              m->inputs[nd->input].name);
        else if (!nd->layer)
            rc = kc_node_fail(e, nd->where, "Input '%s' does not lead to any output (outputs: %s)",
                              m->inputs[nd->input].name, outs);
        else
            rc = kc_node_fail(e, nd->where,
                              "layer '%s' (%s) does not lead to any output (outputs: %s): remove "
                              "it or list it in the model's `outputs:`",
                              node_label(m, i, lb, sizeof lb), nd->layer->cls->class_name, outs);
    }
    free(reach);
    return rc;
}

static int parse_name(kc_model *m, kc_node *node, const char *default_name, kc_error *e) {
    kc_node *nn = kc_map_get(node, "name");
    const char *name = default_name ? default_name : m->functional ? "functional" : "sequential";
    if (nn) {
        if (nn->kind != KC_NODE_SCALAR || !*nn->str || strlen(nn->str) >= sizeof m->name ||
            strchr(nn->str, '/'))
            return kc_node_fail(e, nn, "model name must be a non-empty string without '/'");
        name = nn->str;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    return KC_OK;
}

static int parse_graph(parse_ctx *p, kc_node *node, kc_error *e) {
    kc_model *m = p->m;
    kc_node *cn = kc_map_get(node, "class_name");
    if (cn) {
        int ok = cn->kind == KC_NODE_SCALAR &&
                 (!strcmp(cn->str, "Sequential") || !strcmp(cn->str, "Functional") ||
                  !strcmp(cn->str, "Model"));
        if (!ok)
            return kc_node_fail(e, cn,
                                "model class_name '%s' is not supported; kerasc builds Sequential "
                                "and Functional models",
                                cn->kind == KC_NODE_SCALAR ? cn->str : "?");
        if (strcmp(cn->str, "Sequential")) p->graph = 1;
    }
    kc_node *layers = kc_map_get(node, "layers");
    if (!layers) return kc_node_fail(e, node, "the model section needs a `layers:` list");
    if (layers->kind != KC_NODE_SEQ || layers->n == 0)
        return kc_node_fail(e, layers, "`layers:` must be a non-empty list of layers");
    kc_node *ins = kc_map_get(node, "inputs"), *outs = kc_map_get(node, "outputs");
    kc_map_get(node, "name"); /* read by parse_name once the kind of model is known */
    int rc = kc_map_check_unused(node, "the model section", model_keys, e);
    if (rc) return rc;
    p->layers = layers;
    for (size_t i = 0; i < layers->n; i++) {
        p->entry = i;
        if ((rc = parse_layer(p, layers->items[i], e))) return rc;
    }
    if (m->ninputs == 0)
        return kc_node_fail(e, layers,
                            "the model has no input shape: start the list with `- Input: {shape: "
                            "[28, 28, 1]}` or give the first layer `input_shape:`");
    if (m->nlayers == 0) return kc_node_fail(e, layers, "the model has an input but no layers");
    if (m->ninputs > 1 || ins || outs) p->graph = 1;
    if (ins && (rc = set_inputs(p, ins, e))) return rc;
    if ((rc = set_outputs(p, outs, e))) return rc;
    return check_reach(m, e);
}

int kc_model_parse(kc_node *node, const char *default_name, kc_model **out, kc_error *e) {
    *out = NULL;
    if (!node || node->kind != KC_NODE_MAP)
        return kc_node_fail(e, node, "the model section must be a mapping with `layers:`");
    kc_model *m = calloc(1, sizeof *m);
    if (!m) return kc_fail(e, KC_ERUNTIME, "out of memory");
    m->node = node;
    parse_ctx p = {.m = m, .prev = -1};
    int rc = parse_graph(&p, node, e);
    if (!rc) {
        m->functional = p.graph;
        rc = parse_name(m, node, default_name, e);
    }
    if (rc) {
        kc_model_free(m);
        return rc;
    }
    *out = m;
    return KC_OK;
}

/* -------------------------------------------------------------- counts --- */

int64_t kc_model_param_count(const kc_model *m, int trainable_only) {
    int64_t n = 0;
    for (int i = 0; i < m->nlayers; i++) {
        if (trainable_only && !m->layers[i]->trainable) continue;
        n += kc_layer_param_count(m->layers[i], trainable_only);
    }
    return n;
}

const kc_shape *kc_model_output_shape(const kc_model *m) {
    return kc_model_output_shape_n(m, 0);
}

int64_t kc_model_flops(const kc_model *m) {
    int64_t f = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const kc_layer *l = m->nodes[i].layer;
        if (l && l->cls->flops) f += l->cls->flops(l);
    }
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

/* ---------------------------------------------------------------- plan --- */

static int has_activation(const kc_layer *l) {
    return l->activation.act != KC_ACT_LINEAR;
}

static size_t node_floats(const kc_model *m, int id) {
    return (size_t)kc_shape_numel(&m->nodes[id].shape) * (size_t)m->max_batch;
}

/* How backward runs one layer node, fixed by kc_model_plan. */
typedef struct backward_step {
    float *gz;                      /* activation-backward result, or NULL */
    float *dx[KC_LAYER_MAX_INPUTS]; /* where argument j's gradient goes (NULL: none) */
    char add[KC_LAYER_MAX_INPUTS];  /* dx[j] is scratch to add into the producer's g */
    int output;                     /* model output index, or -1 */
    int first_of_layer;             /* the layer's first node in backward order */
} backward_step;

struct kc_backward_plan {
    backward_step *steps; /* per node (unused for Inputs) */
};

static void backward_plan_free(struct kc_backward_plan *p) {
    if (p) free(p->steps);
    free(p);
}

/* Gradient buffers are reused once dead: a slot pool sized during planning.
 * A slot grows to the largest buffer it ever holds. */
typedef struct slot_pool {
    size_t *size;
    char *busy;
    int n, cap;
} slot_pool;

static int pool_acquire(slot_pool *p, size_t need) {
    int best = -1;
    for (int i = 0; i < p->n; i++) { /* the smallest free slot that fits */
        if (p->busy[i] || p->size[i] < need) continue;
        if (best < 0 || p->size[i] < p->size[best]) best = i;
    }
    if (best < 0)
        for (int i = 0; i < p->n; i++) /* else the largest free one, grown */
            if (!p->busy[i] && (best < 0 || p->size[i] > p->size[best])) best = i;
    if (best < 0) {
        if (p->n == p->cap) {
            int cap = p->cap ? 2 * p->cap : 16;
            size_t *s = realloc(p->size, (size_t)cap * sizeof *s);
            if (!s) return -1;
            p->size = s;
            char *b = realloc(p->busy, (size_t)cap);
            if (!b) return -1;
            p->busy = b;
            p->cap = cap;
        }
        best = p->n++;
        p->size[best] = 0;
    }
    if (p->size[best] < need) p->size[best] = need;
    p->busy[best] = 1;
    return best;
}

/* Slot numbers of every gradient buffer, turned into pointers once the pool is laid out. */
typedef struct slot_use {
    int *g;                         /* per node: slot of g, -1 none, -2 an output's dy */
    int *gz;                        /* per node */
    int (*dx)[KC_LAYER_MAX_INPUTS]; /* per node and argument: -1 direct / none */
} slot_use;

static int output_of(const kc_model *m, int id) {
    for (int k = 0; k < m->noutputs; k++)
        if (m->outputs[k].node == id) return k;
    return -1;
}

/* Walks the nodes in backward order, as kc_model_backward will, deciding each
 * buffer: the first consumer to reach a producer writes its gradient directly,
 * later ones go through scratch and are added. Returns -1 when out of memory. */
static int simulate_backward(kc_model *m, slot_pool *pool, slot_use *u, backward_step *steps,
                             char *seen_layer) {
    for (int i = 0; i < m->nnodes; i++) {
        u->g[i] = u->gz[i] = -1;
        for (int j = 0; j < KC_LAYER_MAX_INPUTS; j++)
            u->dx[i][j] = -1;
        steps[i].output = output_of(m, i);
        if (steps[i].output >= 0 && m->nodes[i].nconsumers == 0) u->g[i] = -2;
    }
    for (int i = m->nnodes - 1; i >= 0; i--) {
        const kc_model_node *nd = &m->nodes[i];
        if (!nd->layer) continue;
        backward_step *st = &steps[i];
        st->first_of_layer = !seen_layer[nd->layer->index];
        seen_layer[nd->layer->index] = 1;
        int scratch[KC_LAYER_MAX_INPUTS], ns = 0;
        if (has_activation(nd->layer) && (u->gz[i] = pool_acquire(pool, node_floats(m, i))) < 0)
            return -1;
        for (int j = 0; j < nd->nin; j++) {
            int src = nd->in[j], slot;
            if (!m->nodes[src].layer) continue; /* Inputs need no gradient */
            if ((slot = pool_acquire(pool, node_floats(m, src))) < 0) return -1;
            if (u->g[src] == -1) {
                u->g[src] = slot;
            } else {
                u->dx[i][j] = scratch[ns++] = slot;
                st->add[j] = 1;
            }
        }
        /* everything this step used dies with it */
        for (int s = 0; s < ns; s++)
            pool->busy[scratch[s]] = 0;
        if (u->gz[i] >= 0) pool->busy[u->gz[i]] = 0;
        if (u->g[i] >= 0) pool->busy[u->g[i]] = 0;
    }
    return 0;
}

/* Decides every gradient buffer; *pool_floats receives the pool's size. */
static int plan_backward(kc_model *m, size_t *pool_floats, slot_pool *pool, slot_use *u) {
    backward_step *steps = calloc((size_t)m->nnodes, sizeof *steps);
    char *seen = calloc((size_t)m->nlayers, 1);
    m->bplan = calloc(1, sizeof *m->bplan);
    u->g = malloc((size_t)m->nnodes * sizeof *u->g);
    u->gz = malloc((size_t)m->nnodes * sizeof *u->gz);
    u->dx = malloc((size_t)m->nnodes * sizeof *u->dx);
    if (!steps || !seen || !m->bplan || !u->g || !u->gz || !u->dx) {
        free(steps);
        free(seen);
        return -1;
    }
    m->bplan->steps = steps;
    int rc = simulate_backward(m, pool, u, steps, seen);
    free(seen);
    if (rc) return rc;
    size_t total = 0;
    for (int s = 0; s < pool->n; s++)
        total += pool->size[s];
    *pool_floats = total;
    return 0;
}

/* Offsets of the pool's slots once the arena exists. */
static void bind_backward(kc_model *m, float *pool_base, const slot_pool *pool, const slot_use *u) {
    float **slot = malloc((size_t)(pool->n ? pool->n : 1) * sizeof *slot);
    if (!slot) return;
    float *p = pool_base;
    for (int s = 0; s < pool->n; s++) {
        slot[s] = p;
        p += pool->size[s];
    }
    backward_step *steps = m->bplan->steps;
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd = &m->nodes[i];
        nd->g = u->g[i] >= 0 ? slot[u->g[i]] : NULL;
        if (u->g[i] == -2) nd->g = m->outputs[steps[i].output].dy;
        steps[i].gz = u->gz[i] >= 0 ? slot[u->gz[i]] : NULL;
    }
    for (int i = 0; i < m->nnodes; i++) {
        const kc_model_node *nd = &m->nodes[i];
        if (!nd->layer) continue;
        for (int j = 0; j < nd->nin; j++) {
            int src = nd->in[j];
            if (!m->nodes[src].layer)
                steps[i].dx[j] = NULL;
            else
                steps[i].dx[j] = steps[i].add[j] ? slot[u->dx[i][j]] : m->nodes[src].g;
        }
    }
    free(slot);
}

static int plan_buffers(kc_model *m, const kc_backend *be, int max_batch, kc_error *e) {
    size_t ws = 0, hws = 0;
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        if (l->cls->workspace_bytes) {
            size_t w = l->cls->workspace_bytes(l, max_batch, be);
            if (w > ws) ws = w;
        }
        if (l->cls->host_workspace_bytes) {
            size_t w = l->cls->host_workspace_bytes(l, max_batch);
            if (w > hws) hws = w;
        }
    }
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd = &m->nodes[i];
        if (!nd->layer || !nd->layer->cls->buffer_bytes) continue;
        size_t b = nd->layer->cls->buffer_bytes(nd->layer, max_batch, be);
        if (b && !(nd->buf = be->alloc(b)))
            return kc_fail(e, KC_ERUNTIME, "cannot allocate layer buffers");
    }
    if (ws && !(m->ws = be->alloc(ws)))
        return kc_fail(e, KC_ERUNTIME, "cannot allocate %zu MB of scratch", ws >> 20);
    m->ws_bytes = ws;
    if (hws && !(m->host_ws = malloc(hws)))
        return kc_fail(e, KC_ERUNTIME, "cannot allocate %zu MB of host scratch", hws >> 20);
    return KC_OK;
}

static int plan_params(kc_model *m, const kc_backend *be, int training, kc_error *e) {
    int64_t nv = 0;
    for (int i = 0; i < m->nlayers; i++)
        nv += kc_layer_param_count(m->layers[i], 0);
    m->nvalues = nv;
    if (nv > 0) {
        m->values = be->alloc((size_t)nv * sizeof(float));
        m->grads = training ? be->alloc((size_t)nv * sizeof(float)) : NULL;
        if (!m->values || (training && !m->grads))
            return kc_fail(e, KC_ERUNTIME, "cannot allocate %lld parameters", (long long)nv);
    }
    int64_t off = 0;
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        for (int j = 0; j < l->nparams; j++) {
            l->params[j].value = m->values + off;
            l->params[j].grad = m->grads ? m->grads + off : NULL;
            off += kc_shape_numel(&l->params[j].shape);
        }
    }
    return KC_OK;
}

int kc_model_plan(kc_model *m, const kc_backend *be, int max_batch, int training, kc_error *e) {
    m->be = be;
    m->max_batch = max_batch;
    m->training = training;
    m->z = calloc((size_t)m->nlayers, sizeof *m->z);
    m->y = calloc((size_t)m->nlayers, sizeof *m->y);
    if (!m->z || !m->y) return kc_fail(e, KC_ERUNTIME, "out of memory");

    /* one arena: inputs, per-node z (and y when activated), outputs' dy, gradient pool */
    size_t floats = 0;
    for (int i = 0; i < m->nnodes; i++) {
        size_t o = node_floats(m, i);
        floats += m->nodes[i].layer && has_activation(m->nodes[i].layer) ? 2 * o : o;
    }
    slot_pool pool = {0};
    slot_use use = {0};
    size_t pool_floats = 0, dy_floats = 0;
    int rc = KC_OK;
    if (training) {
        for (int k = 0; k < m->noutputs; k++)
            dy_floats += node_floats(m, m->outputs[k].node);
        if (plan_backward(m, &pool_floats, &pool, &use)) {
            rc = kc_fail(e, KC_ERUNTIME, "out of memory");
            goto done;
        }
    }
    size_t total = floats + dy_floats + pool_floats;
    m->arena = be->alloc((total ? total : 1) * sizeof(float));
    if (!m->arena) {
        rc = kc_fail(e, KC_ERUNTIME, "cannot allocate %zu MB for activations", total * 4 >> 20);
        goto done;
    }
    float *p = m->arena;
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd = &m->nodes[i];
        size_t o = node_floats(m, i);
        nd->z = nd->y = p;
        p += o;
        if (nd->layer && has_activation(nd->layer)) {
            nd->y = p;
            p += o;
        }
        if (!nd->layer) m->inputs[nd->input].x = nd->y;
        if (nd->layer && nd->call == 0) {
            m->z[nd->layer->index] = nd->z;
            m->y[nd->layer->index] = nd->y;
        }
    }
    m->x = m->inputs[0].x;
    if (training) {
        for (int k = 0; k < m->noutputs; k++) {
            m->outputs[k].dy = p;
            p += node_floats(m, m->outputs[k].node);
        }
        bind_backward(m, p, &pool, &use);
    }
    if ((rc = plan_params(m, be, training, e))) goto done;
    rc = plan_buffers(m, be, max_batch, e);
done:
    free(pool.size);
    free(pool.busy);
    free(use.g);
    free(use.gz);
    free(use.dx);
    return rc;
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

/* ------------------------------------------------------------- passes --- */

static void activation_dims(const kc_layer *l, int batch, int *rows, int *cols) {
    int64_t c = l->out_shape.rank ? l->out_shape.d[l->out_shape.rank - 1] : 1;
    *cols = (int)c;
    *rows = (int)(kc_shape_numel(&l->out_shape) / c * batch);
}

const float *kc_model_forward(kc_model *m, const kc_exec *ex) {
    kc_exec lex = *ex;
    lex.ws = m->ws;
    lex.host_ws = m->host_ws;
    m->activity_loss = 0;
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd = &m->nodes[i];
        kc_layer *l = nd->layer;
        if (!l) continue;
        l->buf = nd->buf;
        /* a shared layer's later calls draw their own random numbers (dropout masks) */
        lex.seed = nd->call ? ex->seed ^ kc_rng_stream("call", (uint64_t)nd->call, 0) : ex->seed;
        if (kc_layer_class_is_multi(l->cls)) {
            const float *xs[KC_LAYER_MAX_INPUTS];
            for (int j = 0; j < nd->nin; j++)
                xs[j] = m->nodes[nd->in[j]].y;
            l->cls->forward_n(l, &lex, xs, nd->z);
        } else {
            l->cls->forward(l, &lex, m->nodes[nd->in[0]].y, nd->z);
        }
        if (has_activation(l)) {
            int rows, cols;
            activation_dims(l, ex->batch, &rows, &cols);
            kc_activation_forward(m->be, &l->activation, nd->z, nd->y, rows, cols);
        }
        if (kc_regularizer_active(&l->activity_regularizer))
            m->activity_loss += kc_activity_penalty(
                m->be, &l->activity_regularizer, nd->y, NULL,
                (size_t)kc_shape_numel(&nd->shape) * (size_t)ex->batch, ex->batch);
        if (ex->on_layer) ex->on_layer(ex->hook_ctx, l->index, 0);
    }
    return kc_model_output_y(m, 0);
}

/* The gradient w.r.t. the node's pre-activation output, completing it first
 * with the loss's share when the node is a model output. */
static const float *node_grad_z(kc_model *m, int id, const backward_step *st, int batch,
                                const int *pre) {
    kc_model_node *nd = &m->nodes[id];
    const kc_layer *l = nd->layer;
    size_t n = (size_t)kc_shape_numel(&nd->shape) * (size_t)batch;
    int k = st->output, act = has_activation(l);
    int rows, cols;
    activation_dims(l, batch, &rows, &cols);
    if (k < 0 || nd->nconsumers == 0) {
        /* g is the consumers' sum, or the loss's dy itself */
        if (k >= 0 && pre[k]) return nd->g;
        if (!act) return nd->g;
        kc_activation_backward(m->be, &l->activation, nd->z, nd->y, nd->g, st->gz, rows, cols);
        return st->gz;
    }
    const float *dy = m->outputs[k].dy;
    if (pre[k] && act) { /* consumers' part through the activation, the loss's part as given */
        kc_activation_backward(m->be, &l->activation, nd->z, nd->y, nd->g, st->gz, rows, cols);
        m->be->axpy(1.0f, dy, st->gz, n);
        return st->gz;
    }
    m->be->axpy(1.0f, dy, nd->g, n);
    if (!act) return nd->g;
    kc_activation_backward(m->be, &l->activation, nd->z, nd->y, nd->g, st->gz, rows, cols);
    return st->gz;
}

void kc_model_backward_n(kc_model *m, const kc_exec *ex, const int *dy_is_preactivation) {
    kc_exec lex = *ex;
    lex.ws = m->ws;
    lex.host_ws = m->host_ws;
    const backward_step *steps = m->bplan->steps;
    for (int i = m->nnodes - 1; i >= 0; i--) {
        kc_model_node *nd = &m->nodes[i];
        kc_layer *l = nd->layer;
        if (!l) continue;
        const backward_step *st = &steps[i];
        /* the activity penalty's gradient joins the gradient w.r.t. the output
         * (the trainer keeps such outputs off the fused logits path) */
        if (kc_regularizer_active(&l->activity_regularizer) && nd->g)
            kc_activity_penalty(m->be, &l->activity_regularizer, nd->y, nd->g,
                                (size_t)kc_shape_numel(&nd->shape) * (size_t)ex->batch, ex->batch);
        const float *gz = node_grad_z(m, i, st, ex->batch, dy_is_preactivation);
        lex.accumulate = ex->accumulate || !st->first_of_layer;
        l->buf = nd->buf;
        if (kc_layer_class_is_multi(l->cls)) {
            const float *xs[KC_LAYER_MAX_INPUTS];
            for (int j = 0; j < nd->nin; j++)
                xs[j] = m->nodes[nd->in[j]].y;
            l->cls->backward_n(l, &lex, xs, nd->z, gz, st->dx);
        } else {
            l->cls->backward(l, &lex, m->nodes[nd->in[0]].y, nd->z, gz, st->dx[0]);
        }
        for (int j = 0; j < nd->nin; j++)
            if (st->add[j]) {
                const kc_model_node *src = &m->nodes[nd->in[j]];
                m->be->axpy(1.0f, st->dx[j], src->g,
                            (size_t)kc_shape_numel(&src->shape) * (size_t)ex->batch);
            }
        if (ex->on_layer) ex->on_layer(ex->hook_ctx, l->index, 1);
    }
}

void kc_model_backward(kc_model *m, const kc_exec *ex, int dy_is_preactivation) {
    int pre[KC_MODEL_MAX_IO];
    for (int k = 0; k < KC_MODEL_MAX_IO; k++)
        pre[k] = dy_is_preactivation;
    kc_model_backward_n(m, ex, pre);
}

/* ------------------------------------------------- Keras's view of it --- */

/* Operations are numbered 0..nops: layers first, then inputs (nlayers + i). */
static int op_of(const kc_model *m, int node) {
    const kc_model_node *nd = &m->nodes[node];
    return nd->layer ? nd->layer->index : m->nlayers + nd->input;
}

typedef struct order_ctx {
    const kc_model *m;
    char *finished, *in_progress;
    int *post, npost; /* nodes in decreasing depth (DFS post-order) */
    int *op_index, nindexed;
} order_ctx;

/* Keras's _build_map_helper: DFS from an output through the node's inputs. */
static void build_map(order_ctx *c, int node) {
    if (c->finished[node] || c->in_progress[node]) return;
    int op = op_of(c->m, node);
    if (c->op_index[op] < 0) c->op_index[op] = c->nindexed++;
    c->in_progress[node] = 1;
    const kc_model_node *nd = &c->m->nodes[node];
    for (int j = 0; j < nd->nin; j++)
        build_map(c, nd->in[j]);
    c->finished[node] = 1;
    c->in_progress[node] = 0;
    c->post[c->npost++] = node;
}

int kc_model_keras_order(const kc_model *m, int *ops) {
    int nops = m->nlayers + m->ninputs;
    order_ctx c = {.m = m};
    c.finished = calloc((size_t)m->nnodes, 1);
    c.in_progress = calloc((size_t)m->nnodes, 1);
    c.post = malloc((size_t)m->nnodes * sizeof *c.post);
    c.op_index = malloc((size_t)nops * sizeof *c.op_index);
    int *node_depth = malloc((size_t)m->nnodes * sizeof *node_depth);
    int *op_depth = malloc((size_t)nops * sizeof *op_depth);
    int count = 0;
    if (!c.finished || !c.in_progress || !c.post || !c.op_index || !node_depth || !op_depth)
        goto done;
    for (int i = 0; i < nops; i++)
        c.op_index[i] = -1, op_depth[i] = -1;
    for (int i = 0; i < m->nnodes; i++)
        node_depth[i] = -1;
    for (int k = 0; k < m->noutputs; k++)
        build_map(&c, m->outputs[k].node);
    /* depths: an output is 0, a node's inputs lie at least one deeper, and an
     * operation takes the deepest of its nodes */
    for (int q = c.npost - 1; q >= 0; q--) {
        int node = c.post[q], op = op_of(m, node);
        int d = node_depth[node] < 0 ? 0 : node_depth[node];
        if (op_depth[op] > d) d = op_depth[op];
        op_depth[op] = d;
        node_depth[node] = d;
        const kc_model_node *nd = &m->nodes[node];
        for (int j = 0; j < nd->nin; j++)
            if (node_depth[nd->in[j]] < d + 1) node_depth[nd->in[j]] = d + 1;
    }
    for (int i = 0; i < m->ninputs; i++) /* inputs reaching no output (never, once parsed) */
        if (op_depth[m->nlayers + i] < 0) op_depth[m->nlayers + i] = 0;
    /* deepest first, ties in traversal order (unreached inputs count as -1) */
    for (int i = 0; i < nops; i++)
        ops[count++] = i;
    for (int a = 1; a < count; a++) {
        int v = ops[a], b = a - 1;
        while (b >= 0) {
            int u = ops[b];
            int before = op_depth[u] > op_depth[v] ||
                         (op_depth[u] == op_depth[v] && c.op_index[u] <= c.op_index[v]);
            if (before) break;
            ops[b + 1] = u;
            b--;
        }
        ops[b + 1] = v;
    }
    for (int i = 0; i < count; i++)
        ops[i] = ops[i] < m->nlayers ? ops[i] : -1 - (ops[i] - m->nlayers);
done:
    free(c.finished);
    free(c.in_progress);
    free(c.post);
    free(c.op_index);
    free(node_depth);
    free(op_depth);
    return count;
}

int kc_model_sequential_like(const kc_model *m) {
    for (int i = 0; i < m->nlayers; i++)
        if (count_calls(m, m->layers[i]) > 1) return 0;
    /* node depths as Keras computes them, then one node per depth with at most one input */
    int *depth = malloc((size_t)m->nnodes * sizeof *depth);
    int *per = calloc((size_t)m->nnodes + 1, sizeof *per);
    int ok = depth && per;
    if (ok) {
        for (int i = 0; i < m->nnodes; i++)
            depth[i] = -1;
        for (int k = 0; k < m->noutputs; k++)
            depth[m->outputs[k].node] = 0;
        for (int i = m->nnodes - 1; i >= 0; i--) {
            if (depth[i] < 0) continue;
            for (int j = 0; j < m->nodes[i].nin; j++)
                if (depth[m->nodes[i].in[j]] < depth[i] + 1)
                    depth[m->nodes[i].in[j]] = depth[i] + 1;
        }
        for (int i = 0; i < m->nnodes && ok; i++) {
            if (depth[i] < 0) continue;
            if (depth[i] > m->nnodes || ++per[depth[i]] > 1 || m->nodes[i].nin > 1) ok = 0;
        }
    }
    free(depth);
    free(per);
    return ok;
}
