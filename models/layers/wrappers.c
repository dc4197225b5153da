/* Keras's layer wrappers: TimeDistributed (the inner layer applied to every
 * step of axis 0, the steps folded into the batch) and Bidirectional (a
 * recurrent layer run forwards and backwards, the outputs merged).
 *
 * A wrapper creates its inner layers through the layer interface and keeps
 * them inside its own state (layers have no destructor, so nothing is
 * allocated beyond that state). It exposes the inner layers' parameters as
 * its own under Keras's weight paths ("dense/kernel" in a TimeDistributed,
 * "forward_lstm/lstm_cell/kernel" in a Bidirectional); the model assigns
 * their buffers, which are handed to the inner layers before every call. */
#include <limits.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "models/layers/common.h"

/* Bytes of class state an inner layer may have. */
#define WRAP_TD_STATE (96 * 1024)
#define WRAP_BIDI_STATE (16 * 1024)
/* Argument pairs an inner layer's map may hold when the wrapper overrides some. */
#define WRAP_MAX_PAIRS 64
#define WRAP_NAME 192

/* ------------------------------------------------------------ inner args --- */

/* An inner layer's argument map with some values replaced (Bidirectional's
 * backward copy: go_backwards true). Kept in the wrapper's state, since a
 * class may hold on to argument nodes for later messages. */
typedef struct wrap_map {
    kc_node map;
    kc_node *items[2 * (WRAP_MAX_PAIRS + 2)];
    kc_node keys[2], vals[2];
} wrap_map;

typedef struct wrap_override {
    const char *key;
    int value; /* a boolean */
} wrap_override;

/* Where an inner layer was declared and what it was told. */
typedef struct wrap_spec {
    const kc_layer_class *cls;
    kc_node *cls_node; /* the class name: errors about the layer point here */
    kc_node *args;     /* its argument map, or NULL */
} wrap_spec;

/* `layer:` written as `LSTM`, `{LSTM: {units: 8}}` or `{class_name: LSTM,
 * config: {...}}` (what Keras's JSON holds). */
static int split_inner(kc_node *v, const char *owner, const char *key, wrap_spec *sp, kc_error *e) {
    memset(sp, 0, sizeof *sp);
    if (v->kind == KC_NODE_SCALAR && !kc_node_is_null(v)) {
        sp->cls_node = v;
    } else if (v->kind == KC_NODE_MAP && v->n > 0 && kc_map_get(v, "class_name")) {
        sp->cls_node = kc_map_get(v, "class_name");
        if (sp->cls_node->kind != KC_NODE_SCALAR)
            return kc_node_fail(e, sp->cls_node, "%s argument '%s': class_name must be a string",
                                owner, key);
        kc_node *cfg = kc_map_get(v, "config");
        if (cfg && !kc_node_is_null(cfg) && cfg->kind != KC_NODE_MAP)
            return kc_node_fail(e, cfg, "%s argument '%s': config must be a mapping of arguments",
                                owner, key);
        sp->args = cfg && cfg->kind == KC_NODE_MAP ? cfg : NULL;
        static const char *const known[] = {"class_name", "config", NULL};
        char where[96];
        snprintf(where, sizeof where, "%s argument '%s'", owner, key);
        int rc = kc_map_check_unused(v, where, known, e);
        if (rc) return rc;
    } else if (v->kind == KC_NODE_MAP && v->n == 1) {
        sp->cls_node = kc_map_key(v, 0);
        sp->cls_node->used = 1;
        kc_node *a = kc_map_val(v, 0);
        if (!kc_node_is_null(a) && a->kind != KC_NODE_MAP)
            return kc_node_fail(e, a,
                                "the arguments of %s must be a mapping (e.g. {units: 8}), got %s",
                                sp->cls_node->str, kc_node_kind_name(a));
        sp->args = kc_node_is_null(a) ? NULL : a;
    } else {
        return kc_node_fail(e, v,
                            "%s argument '%s' must be a layer such as `{LSTM: {units: 8}}` or "
                            "`{class_name: LSTM, config: {units: 8}}`, got %s",
                            owner, key, kc_node_kind_name(v));
    }
    sp->cls = kc_layer_class_find(sp->cls_node->str);
    if (!sp->cls)
        return kc_node_fail(e, sp->cls_node, "%s argument '%s': unknown layer '%s'", owner, key,
                            sp->cls_node->str);
    int lo, hi;
    kc_layer_class_arity(sp->cls, &lo, &hi);
    if (lo > 1)
        return kc_node_fail(
            e, sp->cls_node,
            "%s cannot wrap %s: it takes several inputs (a wrapped layer takes one)", owner,
            sp->cls->class_name);
    return KC_OK;
}

/* An inner layer's call on one tensor, whichever entry points its class has. */
static int inner_forward(kc_layer *in, const kc_exec *ex, kc_buf x, kc_buf y) {
    if (kc_layer_class_is_multi(in->cls)) return in->cls->forward_n(in, ex, &x, y);
    return in->cls->forward(in, ex, x, y);
}

static int inner_backward(kc_layer *in, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy,
                          kc_buf dx) {
    if (kc_layer_class_is_multi(in->cls)) return in->cls->backward_n(in, ex, &x, y, dy, &dx);
    return in->cls->backward(in, ex, x, y, dy, dx);
}

static void set_scalar(kc_node *n, const kc_node *at, const char *text) {
    memset(n, 0, sizeof *n);
    n->kind = KC_NODE_SCALAR;
    n->file = at->file;
    n->line = at->line;
    n->col = at->col;
    n->str = (char *)text;
}

/* sp->args with the overrides applied, in *m. */
static int override_args(wrap_spec *sp, const wrap_override *ov, int nov, wrap_map *m,
                         kc_error *e) {
    memset(m, 0, sizeof *m);
    m->map.kind = KC_NODE_MAP;
    m->map.file = sp->cls_node->file;
    m->map.line = sp->cls_node->line;
    m->map.col = sp->cls_node->col;
    m->map.items = m->items;
    size_t n = 0, have = sp->args ? sp->args->n : 0;
    if (have > WRAP_MAX_PAIRS)
        return kc_node_fail(e, sp->args, "%s has more than %d arguments", sp->cls->class_name,
                            WRAP_MAX_PAIRS);
    const kc_node *at[2] = {sp->cls_node, sp->cls_node};
    for (size_t i = 0; i < have; i++) {
        kc_node *k = kc_map_key(sp->args, i);
        int skip = 0;
        for (int o = 0; o < nov; o++)
            if (!strcmp(k->str, ov[o].key)) {
                at[o] = kc_map_val(sp->args, i);
                k->used = 1;
                skip = 1;
            }
        if (skip) continue;
        m->items[2 * n] = k;
        m->items[2 * n + 1] = kc_map_val(sp->args, i);
        n++;
    }
    for (int o = 0; o < nov; o++) {
        set_scalar(&m->keys[o], at[o], ov[o].key);
        set_scalar(&m->vals[o], at[o], ov[o].value ? "true" : "false");
        m->items[2 * n] = &m->keys[o];
        m->items[2 * n + 1] = &m->vals[o];
        n++;
    }
    m->map.n = n;
    sp->args = &m->map;
    return KC_OK;
}

/* dtype of an inner layer: "float32", or the DTypePolicy Keras's JSON holds. */
static int inner_dtype(kc_args *a, kc_error *e) {
    kc_node *n = kc_args_node(a, "dtype");
    if (!n || kc_node_is_null(n)) return KC_OK;
    kc_node *name = n;
    if (n->kind == KC_NODE_MAP) {
        kc_node *cfg = kc_map_get(n, "config");
        name = cfg && cfg->kind == KC_NODE_MAP ? kc_map_get(cfg, "name") : NULL;
    }
    if (name && name->kind == KC_NODE_SCALAR && !strcmp(name->str, "float32")) return KC_OK;
    return kc_node_fail(e, n, "%s dtype is not supported (kerasc computes in float32)", a->owner);
}

static int name_known(const kc_args *a, const char *key) {
    for (int i = 0; i < a->nknown; i++)
        if (!strcmp(a->known[i], key)) return 1;
    return 0;
}

/* What creating an inner layer learnt besides the layer. */
typedef struct wrap_made {
    const char *name; /* its `name:`, or NULL */
    int trainable;
    int knows_go_backwards, knows_zero_output;
} wrap_made;

/* Creates the inner layer of sp into dst (its class state in state_buf of
 * cap bytes). */
static int make_inner(const char *owner, wrap_spec *sp, kc_layer *dst, void *state_buf, size_t cap,
                      wrap_made *info, kc_error *e) {
    if (sp->cls->state_size > cap)
        return kc_node_fail(e, sp->cls_node, "%s cannot wrap %s (its state is too large)", owner,
                            sp->cls->class_name);
    kc_args a;
    kc_args_init(&a, sp->args, sp->cls_node, sp->cls->class_name);
    memset(info, 0, sizeof *info);
    int rc = kc_args_str(&a, "name", 0, NULL, &info->name, e);
    if (!rc) rc = kc_args_bool(&a, "trainable", 1, &info->trainable, e);
    if (!rc) rc = inner_dtype(&a, e);
    if (rc) return rc;
    kc_layer *made = NULL;
    if ((rc = kc_layer_create(sp->cls, &a, sp->cls_node, &made, e))) return rc;
    rc = kc_args_finish(&a, e);
    info->knows_go_backwards = name_known(&a, "go_backwards");
    info->knows_zero_output = name_known(&a, "zero_output_for_mask");
    if (!rc && kc_regularizer_active(&made->activity_regularizer))
        rc = kc_node_fail(e, kc_map_get(sp->args, "activity_regularizer"),
                          "%s argument 'activity_regularizer' is not supported inside %s (set it "
                          "on the %s)",
                          sp->cls->class_name, owner, owner);
    if (rc) {
        kc_layer_free(made);
        return rc;
    }
    /* the layer moves into the wrapper's state; its own allocations go */
    *dst = *made;
    if (sp->cls->state_size) memcpy(state_buf, made->state, sp->cls->state_size);
    dst->state = sp->cls->state_size ? state_buf : NULL;
    free(made->state);
    free(made);
    dst->trainable = info->trainable;
    if (info->name)
        snprintf(dst->name, sizeof dst->name, "%s", info->name);
    else
        snprintf(dst->name, sizeof dst->name, "%s", sp->cls->base_name);
    return KC_OK;
}

/* ------------------------------------------------------------ shared --- */

static size_t round_floats(size_t n) {
    return (n + 63) / 64 * 64;
}

static size_t out_floats(const kc_layer *l, int k, size_t batch) {
    return (size_t)kc_shape_numel(&l->out_shapes[k]) * batch;
}

static size_t all_out_floats(const kc_layer *l, size_t batch) {
    size_t n = 0;
    for (int k = 0; k < l->noutputs; k++)
        n += out_floats(l, k, batch);
    return n;
}

/* The wrapper's params: the inner layers' under "<inner>/<param>". */
static int adopt_params(kc_layer *l, kc_layer *const *inner, int n, char (*names)[WRAP_NAME],
                        kc_error *e) {
    l->nparams = 0;
    for (int k = 0; k < n; k++)
        for (int j = 0; j < inner[k]->nparams; j++) {
            if (l->nparams == KC_LAYER_MAX_PARAMS)
                return kc_layer_fail(l, e, "the wrapped layers hold more than %d weights",
                                     KC_LAYER_MAX_PARAMS);
            kc_param *p = &l->params[l->nparams];
            *p = inner[k]->params[j];
            snprintf(names[l->nparams], WRAP_NAME, "%s/%s", inner[k]->name,
                     inner[k]->params[j].name);
            p->name = names[l->nparams];
            p->trainable = p->trainable && inner[k]->trainable;
            p->value = p->grad = KC_BUF_NULL;
            l->nparams++;
        }
    return KC_OK;
}

/* Hands the wrapper's param buffers (from index first) to an inner layer. */
static void hand_params(const kc_layer *l, kc_layer *in, int first, int own_trainable) {
    in->trainable = own_trainable && l->trainable;
    in->index = l->index;
    for (int j = 0; j < in->nparams; j++) {
        const kc_param *p = &l->params[first + j];
        in->params[j].value = p->value;
        in->params[j].grad = l->trainable ? p->grad : KC_BUF_NULL;
    }
}

/* The wrapper's own (empty) group, then each inner layer's groups under
 * its attribute (forward_layer/, backward_layer/, layer/), with the inner
 * param indices moved to the wrapper's. */
static int wrap_keras_vars(const kc_layer *l, kc_layer *const *inner, const char *const *attr,
                           int n, kc_keras_vars *out, int max) {
    kc_keras_vars_plain(l, "vars", l->name, &out[0]);
    out[0].nparams = 0;
    int count = 1, first = 0;
    for (int k = 0; k < n; k++) {
        kc_keras_vars sub[8];
        int ns = kc_layer_keras_vars(inner[k], sub, 8);
        for (int g = 0; g < ns && count < max; g++) {
            kc_keras_vars *o = &out[count++];
            *o = sub[g];
            snprintf(o->path, sizeof o->path, "%s/%s", attr[k], sub[g].path);
            for (int j = 0; j < o->nparams; j++)
                o->params[j] += first;
        }
        first += inner[k]->nparams;
    }
    return count;
}

/* ------------------------------------------------------ TimeDistributed --- */

typedef struct td_state {
    kc_layer inner;
    int inner_trainable;
    int64_t steps;
    char names[KC_LAYER_MAX_PARAMS][WRAP_NAME];
    alignas(max_align_t) unsigned char inner_state[WRAP_TD_STATE];
} td_state;

/* The inner layer, its state where the wrapper's state now is. */
static kc_layer *td_inner(kc_layer *l) {
    td_state *s = l->state;
    if (s->inner.cls->state_size) s->inner.state = s->inner_state;
    for (int j = 0; j < l->nparams; j++)
        l->params[j].name = s->names[j];
    return &s->inner;
}

static int td_configure(kc_layer *l, kc_args *a, kc_error *e) {
    td_state *s = l->state;
    kc_node *v = kc_args_node(a, "layer");
    if (!v || kc_node_is_null(v))
        return kc_node_fail(e, a->where, "TimeDistributed requires the argument 'layer'");
    wrap_spec sp;
    wrap_made info;
    int rc = split_inner(v, "TimeDistributed", "layer", &sp, e);
    if (!rc)
        rc = make_inner("TimeDistributed", &sp, &s->inner, s->inner_state, sizeof s->inner_state,
                        &info, e);
    if (rc) return rc;
    s->inner_trainable = info.trainable;
    /* the inner activation applies to every element alike: the model applies it */
    l->activation = s->inner.activation;
    s->inner.activation.act = KC_ACT_LINEAR;
    return KC_OK;
}

static int td_build(kc_layer *l, kc_error *e) {
    td_state *s = l->state;
    kc_layer *in = td_inner(l);
    char buf[160];
    if (l->in_shape.rank < 2)
        return kc_layer_fail(l, e,
                             "expects an input with at least 2 axes besides the batch (steps, "
                             "...), got %s",
                             kc_shape_str(&l->in_shape, 1, buf, sizeof buf));
    s->steps = l->in_shape.d[0];
    kc_shape child = {l->in_shape.rank - 1, {0}};
    for (int i = 1; i < l->in_shape.rank; i++)
        child.d[i - 1] = l->in_shape.d[i];
    int rc = kc_layer_build(in, &child, e);
    if (rc) return rc;
    if (in->noutputs != 1)
        return kc_layer_fail(l, e, "cannot wrap '%s', which returns %d tensors", in->name,
                             in->noutputs);
    /* statistics adapted to the data (Normalization without mean/variance)
     * would see the wrapper's input, not the steps the layer is given */
    if (in->cls->adapt && in->nparams)
        return kc_layer_fail(l, e,
                             "cannot wrap '%s' (%s) whose statistics are adapted to the data; "
                             "give them (mean, variance), or put the layer outside the wrapper",
                             in->name, in->cls->class_name);
    if (in->out_shape.rank + 1 > KC_MAX_RANK)
        return kc_layer_fail(l, e, "the output of '%s' has too many axes", in->name);
    l->out_shape.rank = in->out_shape.rank + 1;
    l->out_shape.d[0] = s->steps;
    for (int i = 0; i < in->out_shape.rank; i++)
        l->out_shape.d[i + 1] = in->out_shape.d[i];
    kc_layer *inner[1] = {in};
    if ((rc = adopt_params(l, inner, 1, s->names, e))) return rc;
    td_inner(l);
    return KC_OK;
}

/* Samples the inner layer sees for `batch` of the wrapper's; 0 when too many. */
static int td_rows(const td_state *s, int64_t batch) {
    int64_t n = batch * s->steps;
    return n > INT_MAX ? 0 : (int)n;
}

static size_t td_mask_floats(const kc_layer *in, int rows) {
    kc_mask_rule r = in->cls->mask_rule ? in->cls->mask_rule(in) : KC_MASK_NONE;
    if (r != KC_MASK_PRODUCE) return 0;
    return round_floats((size_t)rows * (size_t)(in->out_shape.rank ? in->out_shape.d[0] : 1));
}

static size_t td_buffer_bytes(const kc_layer *l, int max_batch, const kc_device *d) {
    kc_layer *in = td_inner((kc_layer *)l);
    int rows = td_rows(l->state, max_batch);
    if (!rows) return SIZE_MAX;
    return in->cls->buffer_bytes ? in->cls->buffer_bytes(in, rows, d) : 0;
}

static size_t td_ws_inner(const kc_layer *in, int rows, const kc_device *d) {
    size_t w = in->cls->workspace_bytes ? in->cls->workspace_bytes(in, rows, d) : 0;
    return round_floats((w + 3) / 4) * 4;
}

static size_t td_workspace_bytes(const kc_layer *l, int max_batch, const kc_device *d) {
    kc_layer *in = td_inner((kc_layer *)l);
    int rows = td_rows(l->state, max_batch);
    if (!rows) return SIZE_MAX;
    return td_ws_inner(in, rows, d) + td_mask_floats(in, rows) * sizeof(float);
}

/* The inner layer's call: the steps are more samples. */
static int td_exec(kc_layer *l, const kc_exec *ex, kc_exec *ix) {
    td_state *s = l->state;
    kc_layer *in = td_inner(l);
    hand_params(l, in, 0, s->inner_trainable);
    in->buf = l->buf;
    *ix = *ex;
    ix->batch = td_rows(s, ex->batch);
    if (!ix->batch)
        return kc_device_fail(ex->dev, KC_ERUNTIME,
                              "layer '%s': %d samples of %lld steps are too many", l->name,
                              ex->batch, (long long)s->steps);
    ix->mask = KC_BUF_NULL;
    ix->mask_out = KC_BUF_NULL;
    if (td_mask_floats(in, ix->batch) && kc_buf_ok(ex->ws))
        ix->mask_out = kc_buf_bytes(ex->ws, td_ws_inner(in, ix->batch, ex->dev));
    ix->on_layer = NULL;
    return KC_OK;
}

static int td_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    kc_exec ix;
    int rc = td_exec(l, ex, &ix);
    if (rc) return rc;
    kc_layer *in = td_inner(l);
    return inner_forward(in, &ix, x, y);
}

static int td_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    kc_exec ix;
    int rc = td_exec(l, ex, &ix);
    if (rc) return rc;
    kc_layer *in = td_inner(l);
    return inner_backward(in, &ix, x, y, dy, dx);
}

static int64_t td_flops(const kc_layer *l) {
    const td_state *s = l->state;
    kc_layer *in = td_inner((kc_layer *)l);
    return in->cls->flops ? in->cls->flops(in) * s->steps : 0;
}

static kc_mask_rule td_mask_rule(const kc_layer *l) {
    (void)l;
    return KC_MASK_PROPAGATE;
}

static int td_reset_states(kc_layer *l, kc_device *d) {
    kc_layer *in = td_inner(l);
    return in->cls->reset_states ? in->cls->reset_states(in, d) : KC_OK;
}

static int td_keras_vars(const kc_layer *l, kc_keras_vars *out, int max) {
    kc_layer *in = td_inner((kc_layer *)l);
    static const char *const attr[] = {"layer"};
    return wrap_keras_vars(l, &in, attr, 1, out, max);
}

const kc_layer_class kc_time_distributed_class = {
    .class_name = "TimeDistributed",
    .base_name = "time_distributed",
    .state_size = sizeof(td_state),
    .configure = td_configure,
    .build = td_build,
    .buffer_bytes = td_buffer_bytes,
    .workspace_bytes = td_workspace_bytes,
    .forward = td_forward,
    .backward = td_backward,
    .flops = td_flops,
    .mask_rule = td_mask_rule,
    .reset_states = td_reset_states,
    .keras_vars = td_keras_vars,
};

/* -------------------------------------------------------- Bidirectional --- */

enum { MERGE_CONCAT, MERGE_SUM, MERGE_MUL, MERGE_AVE, MERGE_NONE };

typedef struct bidi_state {
    kc_layer dir[2]; /* forward, backward */
    int dir_trainable[2];
    int merge;
    int seq;          /* the layers return sequences: the backward one's is reversed in time */
    int64_t t, r, u;  /* output 0 of a direction per sample: (t, r, u), t = 1 without sequences */
    int plan_batch;   /* the batch the buffer was sized for: its layout stays put */
    wrap_map maps[2]; /* the arguments the directions were made from */
    char names[KC_LAYER_MAX_PARAMS][WRAP_NAME];
    alignas(max_align_t) unsigned char dir_state[2][WRAP_BIDI_STATE];
} bidi_state;

static kc_layer *bidi_dir(kc_layer *l, int k) {
    bidi_state *s = l->state;
    if (s->dir[k].cls->state_size) s->dir[k].state = s->dir_state[k];
    for (int j = 0; j < l->nparams; j++)
        l->params[j].name = s->names[j];
    return &s->dir[k];
}

/* What Bidirectional compares between its two layers (Keras's _verify_layer_config). */
typedef struct rnn_flags {
    int go_backwards, return_sequences, return_state, stateful;
} rnn_flags;

static int peek_flags(const wrap_spec *sp, rnn_flags *f, kc_error *e) {
    kc_args a;
    kc_args_init(&a, sp->args, sp->cls_node, sp->cls->class_name);
    int rc = kc_args_bool(&a, "go_backwards", 0, &f->go_backwards, e);
    if (!rc) rc = kc_args_bool(&a, "return_sequences", 0, &f->return_sequences, e);
    if (!rc) rc = kc_args_bool(&a, "return_state", 0, &f->return_state, e);
    if (!rc) rc = kc_args_bool(&a, "stateful", 0, &f->stateful, e);
    return rc;
}

/* Creates direction k from sp, applying Keras's overrides: the backward copy
 * runs backwards, and both zero the outputs of masked steps when they return
 * sequences (Bidirectional's force_zero_output_for_mask). */
static int bidi_make(kc_layer *l, int k, wrap_spec sp, int backwards_override, const rnn_flags *f,
                     wrap_made *info, kc_error *e) {
    bidi_state *s = l->state;
    /* a first pass learns which of the overridden arguments the class takes */
    kc_layer probe;
    int rc = make_inner("Bidirectional", &sp, &probe, s->dir_state[k], WRAP_BIDI_STATE, info, e);
    if (rc) return rc;
    if (!info->knows_go_backwards)
        return kc_node_fail(e, sp.cls_node,
                            "Bidirectional cannot wrap %s: it has no go_backwards argument "
                            "(Bidirectional wraps recurrent layers such as LSTM, GRU and "
                            "SimpleRNN)",
                            sp.cls->class_name);
    wrap_override ov[2];
    int nov = 0;
    if (backwards_override) ov[nov++] = (wrap_override){"go_backwards", 1};
    if (info->knows_zero_output)
        ov[nov++] = (wrap_override){"zero_output_for_mask", f->return_sequences};
    if (nov && (rc = override_args(&sp, ov, nov, &s->maps[k], e))) return rc;
    return make_inner("Bidirectional", &sp, &s->dir[k], s->dir_state[k], WRAP_BIDI_STATE, info, e);
}

static const char *strip_prefix(const char *s, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) ? s : s + n;
}

static int flags_differ(const kc_node *at, const rnn_flags *a, const rnn_flags *b, kc_error *e) {
    if (a->go_backwards == b->go_backwards)
        return kc_node_fail(e, at,
                            "Bidirectional: the forward and backward layers must have different "
                            "go_backwards values (both are %s)",
                            a->go_backwards ? "true" : "false");
    const char *what = a->stateful != b->stateful                   ? "stateful"
                       : a->return_sequences != b->return_sequences ? "return_sequences"
                       : a->return_state != b->return_state         ? "return_state"
                                                                    : NULL;
    if (what)
        return kc_node_fail(e, at,
                            "Bidirectional: the forward and backward layers must have the same "
                            "'%s'",
                            what);
    return KC_OK;
}

static int bidi_merge_mode(kc_args *a, int *merge, kc_error *e) {
    static const char *const modes[] = {"concat", "sum", "mul", "ave", NULL};
    kc_node *n = kc_args_node(a, "merge_mode");
    if (n && kc_node_is_null(n)) {
        *merge = MERGE_NONE;
        return KC_OK;
    }
    return kc_args_enum(a, "merge_mode", "concat", modes, merge, e);
}

static int bidi_configure(kc_layer *l, kc_args *a, kc_error *e) {
    bidi_state *s = l->state;
    static const char *const unsupported[] = {"weights", NULL};
    int rc = bidi_merge_mode(a, &s->merge, e);
    if (!rc) rc = kc_layer_reject_unsupported(a, unsupported, e);
    if (rc) return rc;
    kc_node *v = kc_args_node(a, "layer"), *bv = kc_args_node(a, "backward_layer");
    if (!v || kc_node_is_null(v))
        return kc_node_fail(e, a->where, "Bidirectional requires the argument 'layer'");
    wrap_spec fs, bs;
    rnn_flags ff, bf;
    wrap_made fi, bi;
    if ((rc = split_inner(v, "Bidirectional", "layer", &fs, e))) return rc;
    if ((rc = peek_flags(&fs, &ff, e))) return rc;
    int given = bv && !kc_node_is_null(bv);
    if (given) {
        if ((rc = split_inner(bv, "Bidirectional", "backward_layer", &bs, e))) return rc;
        if ((rc = peek_flags(&bs, &bf, e))) return rc;
    } else {
        bs = fs;
        bf = ff;
        bf.go_backwards = 1;
    }
    if ((rc = flags_differ(given ? bs.cls_node : fs.cls_node, &ff, &bf, e))) return rc;
    if ((rc = bidi_make(l, 0, fs, 0, &ff, &fi, e))) return rc;
    if ((rc = bidi_make(l, 1, bs, !given, &bf, &bi, e))) return rc;
    s->dir_trainable[0] = fi.trainable;
    s->dir_trainable[1] = bi.trainable;
    s->seq = ff.return_sequences;
    /* Keras's names: forward_<layer>, and backward_<layer> for the copy */
    const char *base = fi.name ? fi.name : fs.cls->base_name;
    snprintf(s->dir[0].name, sizeof s->dir[0].name, "forward_%s", strip_prefix(base, "forward_"));
    if (!given)
        snprintf(s->dir[1].name, sizeof s->dir[1].name, "backward_%s",
                 strip_prefix(base, "backward_"));
    for (int k = 0; k < 2; k++)
        if (s->dir[k].activation.act != KC_ACT_LINEAR)
            return kc_node_fail(e, s->dir[k].node,
                                "Bidirectional cannot wrap %s with an output activation",
                                s->dir[k].cls->class_name);
    return KC_OK;
}

/* Output 0 of a direction as (t, r, u) per sample. */
static int bidi_geometry(kc_layer *l, kc_error *e) {
    bidi_state *s = l->state;
    const kc_shape *o = &s->dir[0].out_shapes[0];
    char a[160], b[160];
    if (!kc_shape_equal(o, &s->dir[1].out_shapes[0]) || s->dir[0].noutputs != s->dir[1].noutputs)
        return kc_layer_fail(l, e, "the forward layer returns %s, the backward layer %s",
                             kc_shape_str(o, 1, a, sizeof a),
                             kc_shape_str(&s->dir[1].out_shapes[0], 1, b, sizeof b));
    if (o->rank < 1 || (s->seq && o->rank < 2))
        return kc_layer_fail(l, e, "the wrapped layer returns %s, not a sequence of vectors",
                             kc_shape_str(o, 1, a, sizeof a));
    s->u = o->d[o->rank - 1];
    s->t = s->seq ? o->d[0] : 1;
    s->r = kc_shape_numel(o) / (s->t * s->u);
    return KC_OK;
}

static int bidi_build(kc_layer *l, kc_error *e) {
    bidi_state *s = l->state;
    kc_layer *d[2] = {bidi_dir(l, 0), bidi_dir(l, 1)};
    int rc;
    for (int k = 0; k < 2; k++)
        if ((rc = kc_layer_build(d[k], &l->in_shape, e))) return rc;
    if ((rc = bidi_geometry(l, e))) return rc;
    int nstates = d[0]->noutputs - 1, nmerged = s->merge == MERGE_NONE ? 2 : 1;
    if (nmerged + 2 * nstates > KC_LAYER_MAX_OUTPUTS)
        return kc_layer_fail(l, e, "would return more than %d tensors", KC_LAYER_MAX_OUTPUTS);
    kc_shape o = d[0]->out_shapes[0];
    if (s->merge == MERGE_CONCAT) o.d[o.rank - 1] *= 2;
    int n = 0;
    for (int m = 0; m < nmerged; m++)
        l->out_shapes[n++] = o;
    for (int k = 0; k < 2; k++)
        for (int j = 1; j < d[k]->noutputs; j++)
            l->out_shapes[n++] = d[k]->out_shapes[j];
    l->noutputs = n;
    l->out_shape = l->out_shapes[0];
    if ((rc = adopt_params(l, d, 2, s->names, e))) return rc;
    bidi_dir(l, 0);
    return KC_OK;
}

static size_t dir_buffer(const kc_layer *d, int batch, const kc_device *dev) {
    size_t b = d->cls->buffer_bytes ? d->cls->buffer_bytes(d, batch, dev) : 0;
    return round_floats((b + 3) / 4) * 4;
}

static size_t dir_ws(const kc_layer *d, int batch, const kc_device *dev) {
    size_t b = d->cls->workspace_bytes ? d->cls->workspace_bytes(d, batch, dev) : 0;
    return round_floats((b + 3) / 4) * 4;
}

/* The buffer: each direction's own buffer, then each direction's outputs. */
typedef struct bidi_bufs {
    kc_buf own[2], y[2];
} bidi_bufs;

/* Laid out for the planned batch, so that a stateful direction's state stays
 * where it is whatever the batch of a call. */
static bidi_bufs bidi_buffers(kc_layer *l, int batch, const kc_device *dev) {
    bidi_state *s = l->state;
    int max_batch = s->plan_batch > batch ? s->plan_batch : batch;
    bidi_bufs b;
    kc_buf p = l->buf;
    for (int k = 0; k < 2; k++) {
        b.own[k] = p;
        p = kc_buf_bytes(p, dir_buffer(bidi_dir(l, k), max_batch, dev));
    }
    for (int k = 0; k < 2; k++) {
        b.y[k] = p;
        p = kc_buf_f(
            p, round_floats(all_out_floats(&((bidi_state *)l->state)->dir[k], (size_t)max_batch)));
    }
    return b;
}

static size_t bidi_buffer_bytes(const kc_layer *l, int max_batch, const kc_device *dev) {
    ((bidi_state *)l->state)->plan_batch = max_batch;
    size_t n = 0;
    for (int k = 0; k < 2; k++) {
        kc_layer *d = bidi_dir((kc_layer *)l, k);
        n += dir_buffer(d, max_batch, dev) +
             round_floats(all_out_floats(d, (size_t)max_batch)) * sizeof(float);
    }
    return n;
}

/* Scratch: the directions' own, then dy for each direction, dx of the
 * backward one, and one reversed output. */
typedef struct bidi_ws {
    kc_buf own, dy[2], dx, rev;
} bidi_ws;

static bidi_ws bidi_scratch(kc_layer *l, int batch, const kc_device *dev, kc_buf base,
                            size_t *total) {
    bidi_state *s = l->state;
    size_t own = 0;
    for (int k = 0; k < 2; k++) {
        size_t b = dir_ws(bidi_dir(l, k), batch, dev);
        if (b > own) own = b;
    }
    bidi_ws w;
    w.own = base;
    kc_buf p = kc_buf_bytes(base, own);
    for (int k = 0; k < 2; k++) {
        w.dy[k] = p;
        p = kc_buf_f(p, round_floats(all_out_floats(&s->dir[k], (size_t)batch)));
    }
    w.dx = p;
    p = kc_buf_f(p, round_floats((size_t)kc_shape_numel(&l->in_shape) * (size_t)batch));
    w.rev = p;
    p = kc_buf_f(p, round_floats(out_floats(&s->dir[0], 0, (size_t)batch)));
    if (total) *total = p.off - base.off;
    return w;
}

static size_t bidi_workspace_bytes(const kc_layer *l, int max_batch, const kc_device *dev) {
    size_t total;
    bidi_scratch((kc_layer *)l, max_batch, dev, KC_BUF_NULL, &total);
    return total;
}

static bidi_ws bidi_ws_at(kc_layer *l, const kc_exec *ex) {
    return bidi_scratch(l, ex->batch, ex->dev, ex->ws, NULL);
}

/* Per sample (t, r, u) blocks: dst[t'] (= src[t] or src[t - 1 - t'] when
 * reversed), u wide; ldd / lds are the floats between rows of u. */
static int copy_steps(kc_device *d, kc_copy_mode mode, const bidi_state *s, int batch, int reverse,
                      kc_buf src, int64_t lds, kc_buf dst, int64_t ldd) {
    kc_copy_desc g = {3, {batch, s->r, s->u}, {0}, {0}};
    g.ss[0] = s->t * s->r * lds, g.ss[1] = lds, g.ss[2] = 1;
    g.ds[0] = s->t * s->r * ldd, g.ds[1] = ldd, g.ds[2] = 1;
    if (!reverse || s->t == 1) {
        g.rank = 4;
        g.dims[1] = s->t, g.dims[2] = s->r, g.dims[3] = s->u;
        g.ss[1] = s->r * lds, g.ss[2] = lds, g.ss[3] = 1;
        g.ds[1] = s->r * ldd, g.ds[2] = ldd, g.ds[3] = 1;
        return kc_copy_strided(d, mode, &g, src, dst);
    }
    for (int64_t t = 0; t < s->t; t++) {
        kc_buf a = kc_buf_f(src, (size_t)(t * s->r * lds));
        kc_buf b = kc_buf_f(dst, (size_t)((s->t - 1 - t) * s->r * ldd));
        kc_copy_strided(d, mode, &g, a, b);
    }
    return kc_device_status(d);
}

/* The inner call of direction k: its params, buffer, scratch and random stream. */
static kc_layer *bidi_call(kc_layer *l, int k, const kc_exec *ex, const bidi_bufs *b,
                           const bidi_ws *w, kc_exec *ix) {
    bidi_state *s = l->state;
    kc_layer *d = bidi_dir(l, k);
    hand_params(l, d, k ? s->dir[0].nparams : 0, s->dir_trainable[k]);
    d->buf = b->own[k];
    *ix = *ex;
    ix->ws = w->own;
    ix->mask_out = KC_BUF_NULL;
    ix->on_layer = NULL;
    if (k) ix->seed = ex->seed ^ kc_rng_stream("backward_layer", (uint64_t)l->index, 0);
    return d;
}

/* Output 0 of both directions merged into y (and y's second output for merge_mode null). */
static int bidi_merge(kc_layer *l, const kc_exec *ex, const bidi_bufs *b, const bidi_ws *w,
                      kc_buf y) {
    bidi_state *s = l->state;
    kc_device *d = ex->dev;
    int batch = ex->batch;
    size_t n0 = out_floats(&s->dir[0], 0, (size_t)batch);
    switch (s->merge) {
    case MERGE_CONCAT:
        copy_steps(d, KC_COPY_SET, s, batch, 0, b->y[0], s->u, y, 2 * s->u);
        return copy_steps(d, KC_COPY_SET, s, batch, s->seq, b->y[1], s->u,
                          kc_buf_f(y, (size_t)s->u), 2 * s->u);
    case MERGE_NONE:
        kc_copy(d, y, b->y[0], n0 * sizeof(float));
        return copy_steps(d, KC_COPY_SET, s, batch, s->seq, b->y[1], s->u, kc_buf_f(y, n0), s->u);
    default:
        break;
    }
    kc_buf rev = s->seq ? w->rev : b->y[1];
    if (s->seq) copy_steps(d, KC_COPY_SET, s, batch, 1, b->y[1], s->u, rev, s->u);
    kc_binary_n(d, s->merge == MERGE_MUL ? KC_BIN_MUL : KC_BIN_ADD, b->y[0], rev, y, n0);
    if (s->merge == MERGE_AVE) kc_scale(d, y, 0.5f, n0);
    return kc_device_status(d);
}

/* Where output k of the wrapper starts in y. */
static kc_buf out_at(const kc_layer *l, kc_buf y, int k, int batch) {
    for (int j = 0; j < k; j++)
        y = kc_buf_f(y, out_floats(l, j, (size_t)batch));
    return y;
}

/* The states (outputs 1.. of each direction) after the merged outputs, or back. */
static int bidi_states(kc_layer *l, const kc_exec *ex, kc_buf *dirs, kc_buf y, int to_y) {
    bidi_state *s = l->state;
    int o = s->merge == MERGE_NONE ? 2 : 1;
    for (int k = 0; k < 2; k++)
        for (int j = 1; j < s->dir[k].noutputs; j++, o++) {
            kc_buf a = out_at(&s->dir[k], dirs[k], j, ex->batch), b = out_at(l, y, o, ex->batch);
            size_t n = out_floats(l, o, (size_t)ex->batch) * sizeof(float);
            if (to_y)
                kc_copy(ex->dev, b, a, n);
            else
                kc_copy(ex->dev, a, b, n);
        }
    return kc_device_status(ex->dev);
}

static int bidi_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    bidi_bufs b = bidi_buffers(l, ex->batch, ex->dev);
    bidi_ws w = bidi_ws_at(l, ex);
    for (int k = 0; k < 2; k++) {
        kc_exec ix;
        kc_layer *d = bidi_call(l, k, ex, &b, &w, &ix);
        int rc = inner_forward(d, &ix, x, b.y[k]);
        if (rc) return rc;
    }
    int rc = bidi_merge(l, ex, &b, &w, y);
    if (!rc) rc = bidi_states(l, ex, b.y, y, 1);
    return rc;
}

/* dy of output 0 split into each direction's dy (output 0 of each). */
static int bidi_unmerge(kc_layer *l, const kc_exec *ex, const bidi_bufs *b, const bidi_ws *w,
                        kc_buf dy) {
    bidi_state *s = l->state;
    kc_device *d = ex->dev;
    int batch = ex->batch;
    size_t n0 = out_floats(&s->dir[0], 0, (size_t)batch);
    kc_buf df = w->dy[0], db = w->dy[1];
    switch (s->merge) {
    case MERGE_CONCAT:
        copy_steps(d, KC_COPY_SET, s, batch, 0, dy, 2 * s->u, df, s->u);
        return copy_steps(d, KC_COPY_SET, s, batch, s->seq, kc_buf_f(dy, (size_t)s->u), 2 * s->u,
                          db, s->u);
    case MERGE_NONE:
        kc_copy(d, df, dy, n0 * sizeof(float));
        return copy_steps(d, KC_COPY_SET, s, batch, s->seq, kc_buf_f(dy, n0), s->u, db, s->u);
    case MERGE_MUL: { /* y = f * R(b): df = dy R(b), db = R(dy f) */
        kc_buf rev = s->seq ? w->rev : b->y[1];
        if (s->seq) copy_steps(d, KC_COPY_SET, s, batch, 1, b->y[1], s->u, rev, s->u);
        kc_binary_n(d, KC_BIN_MUL, dy, rev, df, n0);
        kc_binary_n(d, KC_BIN_MUL, dy, b->y[0], s->seq ? w->rev : db, n0);
        if (s->seq) copy_steps(d, KC_COPY_SET, s, batch, 1, w->rev, s->u, db, s->u);
        return kc_device_status(d);
    }
    default: /* sum, ave */
        kc_copy(d, df, dy, n0 * sizeof(float));
        if (s->merge == MERGE_AVE) kc_scale(d, df, 0.5f, n0);
        return copy_steps(d, KC_COPY_SET, s, batch, s->seq, df, s->u, db, s->u);
    }
}

static int bidi_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    (void)y;
    bidi_bufs b = bidi_buffers(l, ex->batch, ex->dev);
    bidi_ws w = bidi_ws_at(l, ex);
    int rc = bidi_unmerge(l, ex, &b, &w, dy);
    if (!rc) rc = bidi_states(l, ex, w.dy, dy, 0);
    for (int k = 0; k < 2 && !rc; k++) {
        kc_exec ix;
        kc_layer *d = bidi_call(l, k, ex, &b, &w, &ix);
        kc_buf to = k && kc_buf_ok(dx) ? w.dx : dx;
        rc = inner_backward(d, &ix, x, b.y[k], w.dy[k], to);
    }
    if (!rc && kc_buf_ok(dx))
        kc_axpy(ex->dev, 1.0f, w.dx, dx, (size_t)kc_shape_numel(&l->in_shape) * (size_t)ex->batch);
    return rc ? rc : kc_device_status(ex->dev);
}

static int64_t bidi_flops(const kc_layer *l) {
    int64_t f = 0;
    for (int k = 0; k < 2; k++) {
        kc_layer *d = bidi_dir((kc_layer *)l, k);
        if (d->cls->flops) f += d->cls->flops(d);
    }
    return f;
}

static kc_mask_rule bidi_mask_rule(const kc_layer *l) {
    const bidi_state *s = l->state;
    return s->seq ? KC_MASK_CONSUME_PROPAGATE : KC_MASK_CONSUME;
}

static int bidi_reset_states(kc_layer *l, kc_device *dev) {
    for (int k = 0; k < 2; k++) {
        kc_layer *d = bidi_dir(l, k);
        if (!d->cls->reset_states) continue;
        d->buf = bidi_buffers(l, 0, dev).own[k];
        int rc = d->cls->reset_states(d, dev);
        if (rc) return rc;
    }
    return KC_OK;
}

static int bidi_keras_vars(const kc_layer *l, kc_keras_vars *out, int max) {
    kc_layer *dir[2] = {bidi_dir((kc_layer *)l, 0), bidi_dir((kc_layer *)l, 1)};
    static const char *const attr[] = {"forward_layer", "backward_layer"};
    return wrap_keras_vars(l, dir, attr, 2, out, max);
}

const kc_layer_class kc_bidirectional_class = {
    .class_name = "Bidirectional",
    .base_name = "bidirectional",
    .state_size = sizeof(bidi_state),
    .configure = bidi_configure,
    .build = bidi_build,
    .buffer_bytes = bidi_buffer_bytes,
    .workspace_bytes = bidi_workspace_bytes,
    .forward = bidi_forward,
    .backward = bidi_backward,
    .flops = bidi_flops,
    .mask_rule = bidi_mask_rule,
    .reset_states = bidi_reset_states,
    .keras_vars = bidi_keras_vars,
};
