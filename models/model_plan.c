/* Planning: every buffer a pass needs, allocated once on the model's device.
 * One arena holds the inputs, each node's pre-activation and output, the
 * outputs' loss gradients and a pool of gradient slots reused once dead; the
 * parameters and their gradients are one block each. Places inside them are
 * offsets (kc_buf_f), never host pointers. Forward buffers are never shared:
 * after a pass every node's z and y still hold its values, which
 * kc_predict_tensors reads for any node (predict --layer, --logits); a plan
 * that reused them would have to keep those it is asked for, as outputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "models/model_internal.h"

/* ------------------------------------------------------- gradient slots --- */

/* Gradient buffers are reused once dead: a slot pool sized during planning.
 * A slot grows to the largest buffer it ever holds. */
typedef struct slot_pool {
    size_t *size;
    char *busy;
    int n, cap;
} slot_pool;

static int pool_grow(slot_pool *p) {
    int cap = p->cap ? 2 * p->cap : 16;
    size_t *s = realloc(p->size, (size_t)cap * sizeof *s);
    if (!s) return -1;
    p->size = s;
    char *b = realloc(p->busy, (size_t)cap);
    if (!b) return -1;
    p->busy = b;
    p->cap = cap;
    return 0;
}

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
        if (p->n == p->cap && pool_grow(p)) return -1;
        best = p->n++;
        p->size[best] = 0;
    }
    if (p->size[best] < need) p->size[best] = need;
    p->busy[best] = 1;
    return best;
}

/* Slot numbers of every gradient buffer, turned into offsets once the pool is laid out. */
typedef struct slot_use {
    int *g;                         /* per node: slot of g, -1 none, -2 an output's dy */
    int *gz;                        /* per node */
    int (*dx)[KC_LAYER_MAX_INPUTS]; /* per node and argument: -1 direct / none */
} slot_use;

static void slots_free(slot_pool *pool, slot_use *use) {
    free(pool->size);
    free(pool->busy);
    free(use->g);
    free(use->gz);
    free(use->dx);
}

static int output_of(const kc_model *m, int id) {
    for (int k = 0; k < m->noutputs; k++)
        if (m->outputs[k].node == id) return k;
    return -1;
}

static size_t node_floats(const kc_model *m, int id) {
    return kc_model_node_numel(m, id, m->max_batch);
}

/* ------------------------------------------------------- backward plan --- */

static void init_use(kc_model *m, slot_use *u, kc_backward_step *steps) {
    for (int i = 0; i < m->nnodes; i++) {
        u->g[i] = u->gz[i] = -1;
        for (int j = 0; j < KC_LAYER_MAX_INPUTS; j++)
            u->dx[i][j] = -1;
        steps[i].output = output_of(m, i);
        if (steps[i].output >= 0 && m->nodes[i].nconsumers == 0 && m->nodes[i].ntensors == 1)
            u->g[i] = -2;
    }
}

/* Decides node i's buffers in backward order: the first consumer to reach a
 * producer writes its gradient directly, later ones go through scratch and
 * are added. Returns -1 when out of memory. */
static int simulate_node(kc_model *m, int i, slot_pool *pool, slot_use *u, kc_backward_step *st) {
    const kc_model_node *nd = &m->nodes[i];
    int scratch[KC_LAYER_MAX_INPUTS], ns = 0;
    if (kc_layer_has_activation(nd->layer) &&
        (u->gz[i] = pool_acquire(pool, node_floats(m, i))) < 0)
        return -1;
    /* a node of several tensors that no consumer reached (an output) */
    if (nd->ntensors > 1 && u->g[i] == -1 && (u->g[i] = pool_acquire(pool, node_floats(m, i))) < 0)
        return -1;
    for (int j = 0; j < nd->nin; j++) {
        int src = nd->in[j], t = nd->in_t[j], slot;
        if (!m->nodes[src].layer) continue; /* Inputs need no gradient */
        if (m->nodes[src].ntensors > 1) {
            /* the node's g holds every tensor's; each tensor's first consumer
             * writes its slice, later ones go through scratch */
            if (u->g[src] == -1 && (u->g[src] = pool_acquire(pool, node_floats(m, src))) < 0)
                return -1;
            kc_backward_step *ps = &m->bplan->steps[src];
            if (!(ps->written & (1u << t))) {
                ps->written |= 1u << t;
                continue;
            }
            size_t tn = kc_model_tensor_numel(m, src, t, m->max_batch);
            if ((slot = pool_acquire(pool, tn)) < 0) return -1;
            u->dx[i][j] = scratch[ns++] = slot;
            st->add[j] = 1;
            continue;
        }
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
    return 0;
}

/* Walks the nodes in backward order, as kc_model_backward will. */
static int simulate_backward(kc_model *m, slot_pool *pool, slot_use *u, kc_backward_step *steps,
                             char *seen_layer) {
    init_use(m, u, steps);
    for (int i = m->nnodes - 1; i >= 0; i--) {
        const kc_layer *l = m->nodes[i].layer;
        if (!l) continue;
        steps[i].first_of_layer = !seen_layer[l->index];
        seen_layer[l->index] = 1;
        if (simulate_node(m, i, pool, u, &steps[i])) return -1;
    }
    return 0;
}

/* Decides every gradient buffer; *pool_floats receives the pool's size. */
static int plan_backward(kc_model *m, size_t *pool_floats, slot_pool *pool, slot_use *u) {
    kc_backward_step *steps = calloc((size_t)m->nnodes, sizeof *steps);
    char *seen = calloc((size_t)m->nlayers ? (size_t)m->nlayers : 1, 1);
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
static int bind_backward(kc_model *m, kc_buf pool_base, const slot_pool *pool, const slot_use *u) {
    kc_buf *slot = malloc((size_t)(pool->n ? pool->n : 1) * sizeof *slot);
    if (!slot) return -1;
    kc_buf p = pool_base;
    for (int s = 0; s < pool->n; s++) {
        slot[s] = p;
        p = kc_buf_f(p, pool->size[s]);
    }
    kc_backward_step *steps = m->bplan->steps;
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd = &m->nodes[i];
        nd->g = u->g[i] >= 0 ? slot[u->g[i]] : KC_BUF_NULL;
        if (u->g[i] == -2) nd->g = m->outputs[steps[i].output].dy;
        steps[i].gz = u->gz[i] >= 0 ? slot[u->gz[i]] : KC_BUF_NULL;
    }
    for (int i = 0; i < m->nnodes; i++) {
        const kc_model_node *nd = &m->nodes[i];
        if (!nd->layer) continue;
        for (int j = 0; j < nd->nin; j++) {
            int src = nd->in[j];
            if (!m->nodes[src].layer)
                steps[i].dx[j] = KC_BUF_NULL;
            else
                steps[i].dx[j] = steps[i].add[j] ? slot[u->dx[i][j]] : m->nodes[src].g;
        }
    }
    free(slot);
    return 0;
}

/* ---------------------------------------------------------- allocation --- */

/* A device allocation; failures say what it was for and why the device refused. */
static int plan_alloc(kc_model *m, size_t bytes, kc_buf *out, const char *what, kc_error *e) {
    if (!kc_alloc(m->dev, bytes, out)) return KC_OK;
    return kc_fail(e, KC_ERUNTIME, "cannot allocate %s: %s", what, m->dev->err.msg);
}

static int plan_buffers(kc_model *m, int max_batch, kc_error *e) {
    size_t ws = 0;
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        if (!l->cls->workspace_bytes) continue;
        size_t w = l->cls->workspace_bytes(l, max_batch, m->dev);
        if (w > ws) ws = w;
    }
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd = &m->nodes[i];
        if (!nd->layer || !nd->layer->cls->buffer_bytes) continue;
        size_t b = nd->layer->cls->buffer_bytes(nd->layer, max_batch, m->dev);
        if (b && plan_alloc(m, b, &nd->buf, "layer buffers", e)) return e->code;
    }
    char what[64];
    snprintf(what, sizeof what, "%zu MB of scratch", ws >> 20);
    if (ws && plan_alloc(m, ws, &m->ws, what, e)) return e->code;
    m->ws_bytes = ws;
    return KC_OK;
}

static int plan_params(kc_model *m, int training, kc_error *e) {
    int64_t nv = 0;
    for (int i = 0; i < m->nlayers; i++)
        nv += kc_layer_param_count(m->layers[i], 0);
    m->nvalues = nv;
    if (nv > 0) {
        char what[64];
        snprintf(what, sizeof what, "%lld parameters", (long long)nv);
        size_t bytes = (size_t)nv * sizeof(float);
        if (plan_alloc(m, bytes, &m->values, what, e)) return e->code;
        if (training && plan_alloc(m, bytes, &m->grads, what, e)) return e->code;
    }
    size_t off = 0;
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        for (int j = 0; j < l->nparams; j++) {
            l->params[j].value = kc_buf_f(m->values, off);
            l->params[j].grad = training ? kc_buf_f(m->grads, off) : KC_BUF_NULL;
            off += (size_t)kc_shape_numel(&l->params[j].shape);
        }
    }
    return KC_OK;
}

/* Two device doubles: [0] the activity penalties of the last forward pass,
 * [1] where backward's penalty calls put their value, which only their
 * gradient is wanted for, so that [0] keeps what forward measured. */
static int plan_activity(kc_model *m, kc_error *e) {
    for (int i = 0; i < m->nlayers; i++)
        m->has_activity |= kc_regularizer_active(&m->layers[i]->activity_regularizer);
    if (!m->has_activity) return KC_OK;
    return plan_alloc(m, 2 * sizeof(double), &m->activity, "the activity penalty", e);
}

/* -------------------------------------------------------------- arena --- */

static size_t forward_floats(const kc_model *m) {
    size_t floats = 0;
    for (int i = 0; i < m->nnodes; i++) {
        size_t o = node_floats(m, i);
        const kc_layer *l = m->nodes[i].layer;
        floats += l && kc_layer_has_activation(l) ? 2 * o : o;
    }
    return floats;
}

/* Each node's z and y (one buffer without activation); returns what follows. */
static kc_buf bind_forward(kc_model *m, kc_buf p) {
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd = &m->nodes[i];
        size_t o = node_floats(m, i);
        nd->z = nd->y = p;
        p = kc_buf_f(p, o);
        if (nd->layer && kc_layer_has_activation(nd->layer)) {
            nd->y = p;
            p = kc_buf_f(p, o);
        }
        if (!nd->layer) m->inputs[nd->input].x = nd->y;
        if (nd->layer && nd->call == 0) {
            m->z[nd->layer->index] = nd->z;
            m->y[nd->layer->index] = nd->y;
        }
    }
    m->x = m->inputs[0].x;
    return p;
}

/* The outputs' dy buffers; returns what follows. */
static kc_buf bind_dy(kc_model *m, kc_buf p) {
    for (int k = 0; k < m->noutputs; k++) {
        m->outputs[k].dy = p;
        p = kc_buf_f(
            p, kc_model_tensor_numel(m, m->outputs[k].node, m->outputs[k].tensor, m->max_batch));
    }
    return p;
}

static int plan_arena(kc_model *m, kc_error *e) {
    slot_pool pool = {0};
    slot_use use = {0};
    size_t pool_floats = 0, dy_floats = 0;
    int rc = KC_OK;
    if (m->training) {
        for (int k = 0; k < m->noutputs; k++)
            dy_floats +=
                kc_model_tensor_numel(m, m->outputs[k].node, m->outputs[k].tensor, m->max_batch);
        if (plan_backward(m, &pool_floats, &pool, &use)) {
            rc = kc_fail(e, KC_ERUNTIME, "out of memory");
            goto done;
        }
    }
    size_t total = forward_floats(m) + dy_floats + pool_floats;
    char what[64];
    snprintf(what, sizeof what, "%zu MB for activations", total * 4 >> 20);
    if ((rc = plan_alloc(m, (total ? total : 1) * sizeof(float), &m->arena, what, e))) goto done;
    kc_buf p = bind_forward(m, m->arena);
    if (m->training && bind_backward(m, bind_dy(m, p), &pool, &use))
        rc = kc_fail(e, KC_ERUNTIME, "out of memory");
done:
    slots_free(&pool, &use);
    return rc;
}

/* -------------------------------------------------------------- masks --- */

/* Floats of the mask of node id's tensor 0 (0 without a first axis). */
static size_t mask_floats(const kc_model *m, int id) {
    const kc_model_node *nd = &m->nodes[id];
    return nd->shape.rank ? (size_t)nd->shape.d[0] * (size_t)m->max_batch : 0;
}

/* The first masked argument of node nd. */
static int first_masked(const kc_model *m, const kc_model_node *nd) {
    for (int j = 0; j < nd->nin; j++)
        if (nd->in_t[j] == 0 && m->nodes[nd->in[j]].masked) return j;
    return -1;
}

/* Own buffers for the masks layers make or merges combine and for the ANDs
 * of several; every other mask is its producer's buffer. `p` walks the
 * block (or is null while counting). Returns the floats used. */
static size_t bind_masks(kc_model *m, kc_buf p, int bind) {
    size_t used = 0;
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd = &m->nodes[i];
        if (!nd->layer) continue;
        int j = first_masked(m, nd);
        if (nd->in_masks > 1) {
            if (bind) nd->in_mask = kc_buf_f(p, used);
            used += mask_floats(m, nd->in[j]);
        } else if (bind) {
            nd->in_mask = j >= 0 ? m->nodes[nd->in[j]].mask : KC_BUF_NULL;
        }
        if (nd->mask_src == KC_MASK_SRC_PRODUCE || nd->mask_src == KC_MASK_SRC_OR) {
            if (bind) nd->mask = kc_buf_f(p, used);
            used += mask_floats(m, i);
        } else if (bind) {
            nd->mask =
                nd->mask_src == KC_MASK_SRC_ALIAS ? m->nodes[nd->mask_from].mask : KC_BUF_NULL;
        }
    }
    return used;
}

static int plan_masks(kc_model *m, kc_error *e) {
    size_t n = bind_masks(m, KC_BUF_NULL, 0);
    if (n && plan_alloc(m, n * sizeof(float), &m->masks, "masks", e)) return e->code;
    bind_masks(m, m->masks, 1);
    return KC_OK;
}

/* ------------------------------------------------------------ the plan --- */

int kc_model_plan(kc_model *m, kc_device *d, int max_batch, int training, kc_error *e) {
    m->dev = d;
    m->max_batch = max_batch;
    m->training = training;
    m->z = calloc((size_t)m->nlayers, sizeof *m->z);
    m->y = calloc((size_t)m->nlayers, sizeof *m->y);
    if (!m->z || !m->y) return kc_fail(e, KC_ERUNTIME, "out of memory");
    int rc = plan_arena(m, e);
    if (!rc) rc = plan_params(m, training, e);
    if (!rc) rc = plan_buffers(m, max_batch, e);
    if (!rc) rc = plan_activity(m, e);
    if (!rc) rc = plan_masks(m, e);
    return rc;
}

void kc_model_unplan(kc_model *m) {
    if (m->dev) {
        kc_free(m->dev, &m->arena);
        kc_free(m->dev, &m->values);
        kc_free(m->dev, &m->grads);
        kc_free(m->dev, &m->ws);
        kc_free(m->dev, &m->activity);
        kc_free(m->dev, &m->masks);
        for (int i = 0; i < m->nnodes; i++)
            kc_free(m->dev, &m->nodes[i].buf);
    }
    if (m->bplan) free(m->bplan->steps);
    free(m->bplan);
    free(m->z);
    free(m->y);
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd = &m->nodes[i];
        nd->z = nd->y = nd->g = nd->buf = nd->mask = nd->in_mask = KC_BUF_NULL;
    }
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        l->buf = KC_BUF_NULL;
        for (int j = 0; j < l->nparams; j++)
            l->params[j].value = l->params[j].grad = KC_BUF_NULL;
    }
    for (int i = 0; i < m->ninputs; i++)
        m->inputs[i].x = KC_BUF_NULL;
    for (int k = 0; k < m->noutputs; k++)
        m->outputs[k].dy = KC_BUF_NULL;
    m->dev = NULL;
    m->bplan = NULL;
    m->z = m->y = NULL;
    m->x = KC_BUF_NULL;
    m->nvalues = 0;
    m->ws_bytes = 0;
    m->max_batch = m->training = m->has_activity = 0;
}

/* --------------------------------------------------------------- weights --- */

int kc_model_init_weights(kc_model *m, uint64_t seed, kc_error *e) {
    size_t biggest = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            size_t n = (size_t)kc_shape_numel(&m->layers[i]->params[j].shape);
            if (n > biggest) biggest = n;
        }
    float *host = malloc((biggest ? biggest : 1) * sizeof *host);
    if (!host) return kc_fail(e, KC_ERUNTIME, "out of memory for the initial weights");
    for (int i = 0; i < m->nlayers; i++) {
        kc_layer *l = m->layers[i];
        for (int j = 0; j < l->nparams; j++) {
            kc_param *p = &l->params[j];
            size_t n = (size_t)kc_shape_numel(&p->shape);
            /* keyed by the layer's position and the weight, not by draw order */
            uint64_t stream = kc_rng_stream(p->name, (uint64_t)i, 0);
            kc_initializer_fill(&p->init, &p->shape, host, seed, stream);
            kc_upload(m->dev, p->value, host, n * sizeof *host);
        }
    }
    free(host);
    return kc_device_error(m->dev, e);
}
