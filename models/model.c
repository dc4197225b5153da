/* The model as parsed: `model:` read into layers and the graph of their
 * calls, with shapes, names and counts. Planning buffers is model_plan.c,
 * the passes model_exec.c, Keras's display order model_order.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_internal.h"

static const char *const model_keys[] = {"name", "layers", "class_name", "inputs", "outputs", NULL};
static const char *const call_keys[] = {"layer", "inputs", NULL};

/* ------------------------------------------------------------ lifetime --- */

void kc_model_free(kc_model *m) {
    if (!m) return;
    kc_model_unplan(m);
    for (int i = 0; i < m->nlayers; i++)
        kc_layer_free(m->layers[i]);
    free(m->layers);
    free(m->nodes);
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
    kc_model_node node = {
        .layer = NULL, .input = m->ninputs, .ntensors = 1, .shape = *shape, .where = where};
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

/* Splits "name", "name[3]" or "name[3][1]" (Keras's layer[node][tensor]). */
static int split_ref(const kc_node *at, const char *ref, char *name, size_t n, long *call,
                     long *tensor, kc_error *e) {
    const char *br = strchr(ref, '[');
    size_t len = br ? (size_t)(br - ref) : strlen(ref);
    *call = *tensor = 0;
    if (len == 0 || len >= n)
        return kc_node_fail(e, at, "'%s' is not a layer name (expected `name` or `name[node]`)",
                            ref);
    memcpy(name, ref, len);
    name[len] = 0;
    if (!br) return KC_OK;
    char *end;
    long v = strtol(br + 1, &end, 10);
    if (end == br + 1 || *end != ']' || v < 0 || v > 1000000)
        return kc_node_fail(e, at, "'%s': expected `%s[node]` with a node index >= 0", ref, name);
    *call = v;
    const char *rest = end + 1;
    if (*rest) {
        long t = rest[0] == '[' ? strtol(rest + 1, &end, 10) : -1;
        if (rest[0] != '[' || end == rest + 1 || *end != ']' || end[1] || t < 0 ||
            t >= KC_LAYER_MAX_OUTPUTS)
            return kc_node_fail(e, at,
                                "'%s': expected `%s[%ld][tensor]` with a tensor index from 0 to %d",
                                ref, name, v, KC_LAYER_MAX_OUTPUTS - 1);
        *tensor = t;
    }
    return KC_OK;
}

int kc_model_count_calls(const kc_model *m, const kc_layer *l) {
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
    return kc_model_tensor_label(m, id, 0, buf, n);
}

const char *kc_model_tensor_label(const kc_model *m, int id, int t, char *buf, size_t n) {
    const kc_model_node *nd = &m->nodes[id];
    if (!nd->layer)
        snprintf(buf, n, "%s", m->inputs[nd->input].name);
    else if (t > 0)
        snprintf(buf, n, "%s[%d][%d]", nd->layer->name, nd->call, t);
    else if (nd->call == 0)
        snprintf(buf, n, "%s", nd->layer->name);
    else
        snprintf(buf, n, "%s[%d]", nd->layer->name, nd->call);
    return buf;
}

/* Resolves one reference written in `inputs:` or `outputs:` to a node. */
/* Call `call` of layer l, which must be above this point. */
static int layer_call_node(const kc_model *m, kc_node *at, kc_layer *l, long call, int *out,
                           kc_error *e) {
    int id = node_of_call(m, l, call);
    if (id >= 0) {
        *out = id;
        return KC_OK;
    }
    int calls = kc_model_count_calls(m, l);
    char have[300];
    if (calls == 1)
        snprintf(have, sizeof have, "%s[0]", l->name);
    else
        snprintf(have, sizeof have, "%s[0] .. %s[%d]", l->name, l->name, calls - 1);
    return kc_node_fail(e, at,
                        "'%s': layer '%s' is called %d time%s above this point (%s); entries "
                        "may only use entries above them",
                        at->str, l->name, calls, calls == 1 ? "" : "s", have);
}

/* A name that is neither an Input nor a layer above: a cycle, a forward
 * reference (the list is the graph's order) or a typo. */
static int unresolved_ref(parse_ctx *p, kc_node *at, const char *user, const char *name,
                          kc_error *e) {
    const kc_model *m = p->m;
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

/* Tensor t of node id must exist. */
static int check_tensor(const kc_model *m, kc_node *at, int id, long t, kc_error *e) {
    const kc_model_node *nd = &m->nodes[id];
    if (t < nd->ntensors) return KC_OK;
    char lb[160];
    node_label(m, id, lb, sizeof lb);
    if (nd->ntensors == 1)
        return kc_node_fail(e, at, "'%s': '%s' returns one tensor, %s[%d][0]", at->str, lb,
                            nd->layer->name, nd->call);
    return kc_node_fail(e, at, "'%s': '%s' returns %d tensors, %s[%d][0] .. %s[%d][%d]", at->str,
                        lb, nd->ntensors, nd->layer->name, nd->call, nd->layer->name, nd->call,
                        nd->ntensors - 1);
}

static int resolve_ref(parse_ctx *p, kc_node *at, const char *user, int *out, int *tensor,
                       kc_error *e) {
    kc_model *m = p->m;
    if (at->kind != KC_NODE_SCALAR || kc_node_is_null(at))
        return kc_node_fail(e, at, "expected the name of a layer or Input, got %s",
                            kc_node_kind_name(at));
    char name[128];
    long call, t;
    int rc = split_ref(at, at->str, name, sizeof name, &call, &t, e);
    if (rc) return rc;
    *tensor = (int)t;
    int in = input_named(m, name);
    if (in >= 0) {
        if (call != 0 || t != 0)
            return kc_node_fail(e, at, "'%s': the Input '%s' has one node and one tensor, %s",
                                at->str, name, name);
        *out = m->inputs[in].node;
        return KC_OK;
    }
    kc_layer *l = layer_named(m, name);
    if (l) {
        rc = layer_call_node(m, at, l, call, out, e);
        return rc ? rc : check_tensor(m, at, *out, t, e);
    }
    return unresolved_ref(p, at, user, name, e);
}

/* `inputs:` of an entry: one reference or a list; absent: the entry before. */
static int read_inputs(parse_ctx *p, kc_node *ins, const kc_node *entry, const char *user, int *ids,
                       int *ts, int *n, kc_error *e) {
    *n = 0;
    if (!ins) {
        ts[0] = 0;
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
            int rc = resolve_ref(p, ins->items[i], user, &ids[*n], &ts[*n], e);
            if (rc) return rc;
            (*n)++;
        }
        return KC_OK;
    }
    int rc = resolve_ref(p, ins, user, &ids[0], &ts[0], e);
    if (!rc) *n = 1;
    return rc;
}

/* "'f1' (None, 1600), 'd1' (None, 64)" */
static void describe_inputs(const kc_model *m, const int *ids, const int *ts, int n, char *buf,
                            size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n && used + 8 < cap; i++) {
        char lb[160], sb[160];
        used += (size_t)snprintf(
            buf + used, cap - used, "%s'%s' %s", i ? ", " : "",
            kc_model_tensor_label(m, ids[i], ts[i], lb, sizeof lb),
            kc_shape_str(kc_model_tensor_shape(m, ids[i], ts[i]), 1, sb, sizeof sb));
    }
}

static void append_msg(kc_error *e, const char *fmt, const char *a, const char *b) {
    size_t len = strlen(e->msg);
    snprintf(e->msg + len, sizeof e->msg - len, fmt, a, b);
}

static int check_arity(const kc_layer *l, int n, const char *desc, const kc_node *ins_at,
                       kc_error *e) {
    int lo, hi;
    kc_layer_class_arity(l->cls, &lo, &hi);
    if (n >= lo && n <= hi) return KC_OK;
    char want[64];
    if (lo == hi)
        snprintf(want, sizeof want, "exactly %d input%s", lo, lo == 1 ? "" : "s");
    else if (hi >= KC_LAYER_MAX_INPUTS)
        snprintf(want, sizeof want, "at least %d input%s", lo, lo == 1 ? "" : "s");
    else
        snprintf(want, sizeof want, "%d to %d inputs", lo, hi);
    return kc_node_fail(
        e, ins_at, "layer '%s' (%s) takes %s, got %d: %s%s", l->name, l->cls->class_name, want, n,
        desc, lo == 1 && hi == 1 ? " (join them first, e.g. with Concatenate or Add)" : "");
}

/* The first call builds the layer; a failure says where its inputs come from. */
static int build_first_call(const kc_model *m, kc_layer *l, const int *ids, int n,
                            const kc_shape *shapes, const char *desc, kc_error *e) {
    int rc = kc_layer_build_n(l, shapes, n, e);
    if (!rc) return KC_OK;
    const kc_model_node *src = &m->nodes[ids[0]];
    if (n == 1 && src->layer) {
        char b[160];
        append_msg(e, " (input comes from layer '%s' with output shape %s)", src->layer->name,
                   kc_shape_str(&shapes[0], 1, b, sizeof b));
    } else if (n > 1) {
        append_msg(e, " (inputs: %s%s)", desc, "");
    }
    return rc;
}

/* Later calls of a shared layer take the shapes of its first. */
static int check_shared_call(const kc_layer *l, int n, const kc_shape *shapes, const char *desc,
                             const kc_node *ins_at, kc_error *e) {
    int same = l->ninputs == n;
    for (int i = 0; same && i < n; i++)
        same = kc_shape_equal(&shapes[i], &l->in_shapes[i]);
    if (same) return KC_OK;
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

/* Makes the node for a call of `l` on nodes ids[0..n): checks the count, builds
 * the layer on its first call, checks the shapes of later calls. */
static int call_layer(parse_ctx *p, kc_layer *l, const int *ids, const int *ts, int n,
                      const kc_node *where, const kc_node *ins_at, kc_error *e) {
    kc_model *m = p->m;
    char desc[1024];
    describe_inputs(m, ids, ts, n, desc, sizeof desc);
    int rc = check_arity(l, n, desc, ins_at, e);
    if (rc) return rc;
    kc_shape shapes[KC_LAYER_MAX_INPUTS];
    for (int i = 0; i < n; i++)
        shapes[i] = *kc_model_tensor_shape(m, ids[i], ts[i]);
    int call = kc_model_count_calls(m, l);
    rc = call == 0 ? build_first_call(m, l, ids, n, shapes, desc, e)
                   : check_shared_call(l, n, shapes, desc, ins_at, e);
    if (rc) return rc;
    kc_model_node node = {.layer = l,
                          .input = -1,
                          .call = call,
                          .nin = n,
                          .ntensors = l->noutputs > 0 ? l->noutputs : 1,
                          .shape = l->out_shape,
                          .where = where};
    for (int i = 0; i < n; i++) {
        node.in[i] = ids[i];
        node.in_t[i] = ts[i];
    }
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
        int dummy, dummy_t;
        rc2 = resolve_ref(p, ln, NULL, &dummy, &dummy_t,
                          e); /* the located "unknown"/"below" message */
        return rc2 ? rc2 : kc_node_fail(e, ln, "'%s' is not a layer", ln->str);
    }
    int ids[KC_LAYER_MAX_INPUTS], ts[KC_LAYER_MAX_INPUTS], n;
    if ((rc = read_inputs(p, ins, item, l->name, ids, ts, &n, e))) return rc;
    return call_layer(p, l, ids, ts, n, item, ins ? ins : item, e);
}

/* The arguments every layer takes: name, trainable and dtype. */
static int common_args(const kc_model *m, kc_args *a, const kc_layer_class *cls, const char **name,
                       int *trainable, kc_error *e) {
    const char *dtype;
    int rc;
    if ((rc = kc_args_str(a, "name", 0, NULL, name, e))) return rc;
    if ((rc = kc_args_bool(a, "trainable", 1, trainable, e))) return rc;
    if ((rc = kc_args_str(a, "dtype", 0, "float32", &dtype, e))) return rc;
    if (strcmp(dtype, "float32"))
        return kc_node_fail(e, kc_args_node(a, "dtype"),
                            "%s dtype '%s' is not supported (kerasc computes in float32)",
                            cls->class_name, dtype);
    if (*name && (rc = check_name(m, kc_args_node(a, "name"), *name, e))) return rc;
    return KC_OK;
}

/* input_shape / batch_input_shape on the first layer of a stack: its Input. */
static int implicit_input(parse_ctx *p, kc_args *a, const kc_node *ins, kc_error *e) {
    if (!kc_args_has(a, "input_shape") && !kc_args_has(a, "batch_input_shape")) return KC_OK;
    const char *key = kc_args_has(a, "input_shape") ? "input_shape" : "batch_input_shape";
    kc_node *at = kc_args_node(a, key);
    if (p->m->nnodes > 0 || ins)
        return kc_node_fail(e, at, "%s is only allowed on the first layer of a stack", key);
    kc_shape shape;
    int rc = read_shape(a, key, !strcmp(key, "batch_input_shape"), &shape, e);
    return rc ? rc : new_input(p, NULL, &shape, at, e);
}

/* Creates the layer from its class arguments and adds it to the model. */
static int add_new_layer(kc_model *m, const kc_layer_class *cls, kc_args *a, kc_node *cls_node,
                         const char *name, int trainable, kc_layer **out, kc_error *e) {
    kc_layer *l = NULL;
    int rc = kc_layer_create(cls, a, cls_node, &l, e);
    if (rc) return rc;
    if ((rc = kc_args_finish(a, e))) {
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
    *out = l;
    return KC_OK;
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
    const char *name = NULL;
    int trainable;
    if ((rc = common_args(m, &a, cls, &name, &trainable, e))) return rc;
    kc_node *ins = kc_args_node(&a, "inputs");
    if ((rc = implicit_input(p, &a, ins, e))) return rc;
    int ids[KC_LAYER_MAX_INPUTS], ts[KC_LAYER_MAX_INPUTS], n;
    if ((rc = read_inputs(p, ins, cls_node, name, ids, ts, &n, e))) return rc;
    kc_layer *l = NULL;
    if ((rc = add_new_layer(m, cls, &a, cls_node, name, trainable, &l, e))) return rc;
    return call_layer(p, l, ids, ts, n, cls_node, ins ? ins : cls_node, e);
}

/* References in the model's `inputs:` / `outputs:`: one or a list. */
static int read_model_refs(parse_ctx *p, kc_node *v, const char *key, int *ids, int *ts, int *n,
                           kc_error *e) {
    *n = 0;
    size_t count = v->kind == KC_NODE_SEQ ? v->n : 1;
    if (count == 0) return kc_node_fail(e, v, "the model's `%s:` is an empty list", key);
    if (count > KC_MODEL_MAX_IO)
        return kc_node_fail(e, v, "a model has at most %d %s", KC_MODEL_MAX_IO, key);
    p->entry = p->layers->n; /* every entry is above */
    for (size_t i = 0; i < count; i++) {
        kc_node *r = v->kind == KC_NODE_SEQ ? v->items[i] : v;
        int id, t, rc = resolve_ref(p, r, NULL, &id, &t, e);
        if (rc) return rc;
        for (int j = 0; j < *n; j++)
            if (ids[j] == id && ts[j] == t)
                return kc_node_fail(e, r, "'%s' is listed twice in the model's `%s:`", r->str, key);
        ts[*n] = t;
        ids[(*n)++] = id;
    }
    return KC_OK;
}

static int set_inputs(parse_ctx *p, kc_node *v, kc_error *e) {
    kc_model *m = p->m;
    int ids[KC_MODEL_MAX_IO], ts[KC_MODEL_MAX_IO], n;
    int rc = read_model_refs(p, v, "inputs", ids, ts, &n, e);
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

/* Without `outputs:`, the last entry, which must be the graph's only end. */
static int last_entry_output(const kc_model *m, int *ids, int *ts, int *n, kc_error *e) {
    ids[0] = m->nnodes - 1;
    ts[0] = 0;
    *n = 1;
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
    if (!others) return KC_OK;
    return kc_node_fail(e, m->node,
                        "the graph has several ends (%s): list the model's outputs, e.g. "
                        "`outputs: [%s]`",
                        ends, ends);
}

static int set_outputs(parse_ctx *p, kc_node *v, kc_error *e) {
    kc_model *m = p->m;
    int ids[KC_MODEL_MAX_IO], ts[KC_MODEL_MAX_IO], n;
    int rc =
        v ? read_model_refs(p, v, "outputs", ids, ts, &n, e) : last_entry_output(m, ids, ts, &n, e);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        const kc_model_node *nd = &m->nodes[ids[i]];
        const kc_node *at = v ? (v->kind == KC_NODE_SEQ ? v->items[i] : v) : nd->where;
        if (!nd->layer)
            return kc_node_fail(e, at, "'%s' is an Input; a model's outputs are layers",
                                m->inputs[nd->input].name);
        /* named after the layer, as Keras; a later output of the same layer
         * goes by its reference so that names stay unique keys */
        int taken = 0;
        for (int j = 0; j < i; j++)
            taken |= m->nodes[ids[j]].layer == nd->layer;
        kc_model_output *o = &m->outputs[i];
        memset(o, 0, sizeof *o);
        if (taken)
            snprintf(o->name, sizeof o->name, "%s[%d][%d]", nd->layer->name, nd->call, ts[i]);
        else
            snprintf(o->name, sizeof o->name, "%s", nd->layer->name);
        o->node = ids[i];
        o->tensor = ts[i];
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
    if ((rc = check_reach(m, e))) return rc;
    return kc_model_decide_masks(m, e);
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
