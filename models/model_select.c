/* Tensors of the graph named as Keras users name them, to be read in place
 * of the model's outputs: a layer's output (Keras's layer.output), one
 * call's or one tensor's (NAME[node][tensor], as `inputs:` references write
 * them), and each output's values before its final activation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_internal.h"
#include "models/yaml.h"

/* "NAME", "NAME[node]" or "NAME[node][tensor]"; -1 for a missing index.
 * Returns 0, or -1 when the brackets are malformed. */
static int split_ref(const char *ref, char *name, size_t n, long *call, long *tensor) {
    const char *br = strchr(ref, '[');
    size_t len = br ? (size_t)(br - ref) : strlen(ref);
    *call = *tensor = -1;
    if (len == 0 || len >= n) return -1;
    memcpy(name, ref, len);
    name[len] = 0;
    for (int k = 0; br && *br; k++) {
        char *end;
        long v = br[0] == '[' ? strtol(br + 1, &end, 10) : -1;
        if (k > 1 || br[0] != '[' || end == br + 1 || *end != ']' || v < 0 || v > 1000000)
            return -1;
        *(k ? tensor : call) = v;
        br = end + 1;
    }
    return 0;
}

static const kc_layer *layer_named(const kc_model *m, const char *name) {
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i]->name, name)) return m->layers[i];
    return NULL;
}

/* The node of call `call` of layer l, or -1. */
static int call_node(const kc_model *m, const kc_layer *l, long call) {
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].layer == l && m->nodes[i].call == call) return i;
    return -1;
}

/* "the model has no layer 'x' (did you mean 'y'?)", or its layers listed. */
static int unknown_name(const kc_model *m, const char *name, kc_error *e) {
    const char **cands = malloc((size_t)(m->ninputs + m->nlayers + 1) * sizeof *cands);
    if (!cands) return kc_fail(e, KC_ERUNTIME, "out of memory");
    size_t nc = 0;
    for (int i = 0; i < m->ninputs; i++)
        cands[nc++] = m->inputs[i].name;
    for (int i = 0; i < m->nlayers; i++)
        cands[nc++] = m->layers[i]->name;
    cands[nc] = NULL;
    const char *near = kc_closest(name, cands, nc);
    char list[600] = "";
    size_t used = 0, j = 0;
    for (; j < nc && used < sizeof list - 140; j++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", cands[j]);
    if (j < nc) snprintf(list + used, sizeof list - used, ", ...");
    int rc =
        near
            ? kc_fail(e, KC_ECONFIG, "the model has no layer '%s' (did you mean '%s'?)", name, near)
            : kc_fail(e, KC_ECONFIG, "the model has no layer '%s' (its layers: %s)", name, list);
    free(cands);
    return rc;
}

static int add_tensor(const kc_model *m, int id, int t, kc_model_tensor *out, int max, int *n,
                      kc_error *e) {
    if (*n >= max) return kc_fail(e, KC_ECONFIG, "at most %d tensors can be read at once", max);
    kc_model_tensor *o = &out[(*n)++];
    kc_model_tensor_label(m, id, t, o->name, sizeof o->name);
    o->node = id;
    o->tensor = t;
    o->pre = 0;
    return KC_OK;
}

/* Node id's tensor t, or all its tensors when t < 0. */
static int add_node(const kc_model *m, int id, long t, kc_model_tensor *out, int max, int *n,
                    kc_error *e) {
    const kc_model_node *nd = &m->nodes[id];
    if (t >= nd->ntensors) {
        char lb[160];
        kc_model_tensor_label(m, id, 0, lb, sizeof lb);
        if (nd->ntensors == 1)
            return kc_fail(e, KC_ECONFIG, "'%s' returns one tensor, %s[%d][0]", lb, nd->layer->name,
                           nd->call);
        return kc_fail(e, KC_ECONFIG, "'%s' returns %d tensors, %s[%d][0] .. %s[%d][%d]", lb,
                       nd->ntensors, nd->layer->name, nd->call, nd->layer->name, nd->call,
                       nd->ntensors - 1);
    }
    for (int k = t < 0 ? 0 : (int)t; k < (t < 0 ? nd->ntensors : (int)t + 1); k++) {
        int rc = add_tensor(m, id, k, out, max, n, e);
        if (rc) return rc;
    }
    return KC_OK;
}

/* A layer's call: the one there is, or the one `call` names. */
static int layer_node(const kc_model *m, const kc_layer *l, long call, int *id, kc_error *e) {
    int calls = kc_model_count_calls(m, l);
    if (calls == 0) return kc_fail(e, KC_ECONFIG, "layer '%s' is never called", l->name);
    if (call < 0 && calls > 1)
        return kc_fail(e, KC_ECONFIG,
                       "layer '%s' is called %d times (a shared layer): name one call, %s[0] .. "
                       "%s[%d]",
                       l->name, calls, l->name, l->name, calls - 1);
    if ((*id = call_node(m, l, call < 0 ? 0 : call)) >= 0) return KC_OK;
    if (calls == 1)
        return kc_fail(e, KC_ECONFIG, "layer '%s' is called once, %s[0]", l->name, l->name);
    return kc_fail(e, KC_ECONFIG, "layer '%s' is called %d times, %s[0] .. %s[%d]", l->name, calls,
                   l->name, l->name, calls - 1);
}

int kc_model_find_tensors(const kc_model *m, const char *ref, kc_model_tensor *out, int max, int *n,
                          kc_error *e) {
    char name[128];
    long call, t;
    if (split_ref(ref, name, sizeof name, &call, &t))
        return kc_fail(e, KC_ECONFIG,
                       "not a layer reference: expected NAME, NAME[node] or NAME[node][tensor]");
    int in = kc_model_input_index(m, name);
    if (in >= 0) {
        if (call > 0 || t > 0)
            return kc_fail(e, KC_ECONFIG, "the Input '%s' has one node and one tensor, %s", name,
                           name);
        return add_tensor(m, m->inputs[in].node, 0, out, max, n, e);
    }
    const kc_layer *l = layer_named(m, name);
    if (!l) return unknown_name(m, name, e);
    int id, rc = layer_node(m, l, call, &id, e);
    return rc ? rc : add_node(m, id, t, out, max, n, e);
}

/* Layers whose whole work is an activation: their input is the logits. */
static const char *const activation_layers[] = {"Activation", "Softmax", "ReLU",
                                                "LeakyReLU",  "ELU",     "PReLU"};

static int is_activation_layer(const kc_layer *l) {
    for (size_t i = 0; i < sizeof activation_layers / sizeof *activation_layers; i++)
        if (!strcmp(l->cls->class_name, activation_layers[i])) return 1;
    return 0;
}

kc_model_tensor kc_model_output_logits(const kc_model *m, int k) {
    const kc_model_output *o = &m->outputs[k];
    const kc_model_node *nd = &m->nodes[o->node];
    kc_model_tensor r = {.node = o->node, .tensor = o->tensor};
    snprintf(r.name, sizeof r.name, "%s", o->name);
    if (!nd->layer) return r;
    if (is_activation_layer(nd->layer) && nd->nin == 1) {
        r.node = nd->in[0];
        r.tensor = nd->in_t[0];
    } else {
        r.pre = kc_layer_has_activation(nd->layer);
    }
    return r;
}
