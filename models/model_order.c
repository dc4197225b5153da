/* The graph as Keras shows it: Functional._operations' order for summaries
 * and plots, and Keras's "sequential-like" test. */
#include <stdlib.h>

#include "models/model_internal.h"

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

/* Depths: an output is 0, a node's inputs lie at least one deeper, and an
 * operation takes the deepest of its nodes. */
static void op_depths(const order_ctx *c, int *node_depth, int *op_depth) {
    const kc_model *m = c->m;
    for (int q = c->npost - 1; q >= 0; q--) {
        int node = c->post[q], op = op_of(m, node);
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
}

/* Deepest first, ties in traversal order (a stable insertion sort). */
static void sort_ops(int *ops, int count, const int *op_depth, const int *op_index) {
    for (int a = 1; a < count; a++) {
        int v = ops[a], b = a - 1;
        while (b >= 0) {
            int u = ops[b];
            int before = op_depth[u] > op_depth[v] ||
                         (op_depth[u] == op_depth[v] && op_index[u] <= op_index[v]);
            if (before) break;
            ops[b + 1] = u;
            b--;
        }
        ops[b + 1] = v;
    }
}

static int order_ops(order_ctx *c, int *node_depth, int *op_depth, int *ops) {
    const kc_model *m = c->m;
    int nops = m->nlayers + m->ninputs;
    for (int i = 0; i < nops; i++)
        c->op_index[i] = -1, op_depth[i] = -1;
    for (int i = 0; i < m->nnodes; i++)
        node_depth[i] = -1;
    for (int k = 0; k < m->noutputs; k++)
        build_map(c, m->outputs[k].node);
    op_depths(c, node_depth, op_depth);
    for (int i = 0; i < nops; i++)
        ops[i] = i;
    sort_ops(ops, nops, op_depth, c->op_index);
    for (int i = 0; i < nops; i++)
        ops[i] = ops[i] < m->nlayers ? ops[i] : -1 - (ops[i] - m->nlayers);
    return nops;
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
    if (c.finished && c.in_progress && c.post && c.op_index && node_depth && op_depth)
        count = order_ops(&c, node_depth, op_depth, ops);
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
        if (kc_model_count_calls(m, m->layers[i]) > 1) return 0;
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
