/* What a parsed model must satisfy (the figures `kerasc summary` prints),
 * and a session that plans it on the cpu backend and runs one batch of
 * zeros through it, as `kerasc predict` would, when it is small enough. */
#ifndef KC_FUZZ_MODEL_H
#define KC_FUZZ_MODEL_H

#include "tests/fuzz/fuzz_util.h"

#include "models/fit.h"

/* Models larger than this are parsed and summarised but not planned: a
 * model file may rightly ask for gigabytes, the fuzzer should not. */
#define FUZZ_MAX_ELEMS (1 << 20) /* parameters, and values of one node per sample */
#define FUZZ_MAX_FLOPS (1 << 23) /* forward FLOPs per sample */

/* Keras's operation order lists every layer and input exactly once. */
static inline void fuzz_check_order(const kc_model *m) {
    int nops = m->nlayers + m->ninputs;
    int *ops = malloc((size_t)(nops ? nops : 1) * sizeof *ops);
    char *seen = calloc((size_t)(nops ? nops : 1), 1);
    FUZZ_CHECK(ops && seen, "out of memory");
    FUZZ_CHECK(kc_model_keras_order(m, ops) == nops, "keras order count");
    for (int i = 0; i < nops; i++) {
        int at = ops[i] >= 0 ? ops[i] : m->nlayers + (-1 - ops[i]);
        FUZZ_CHECK(ops[i] < m->nlayers && at >= 0 && at < nops && !seen[at], "operation %d",
                   ops[i]);
        seen[at] = 1;
    }
    free(ops);
    free(seen);
}

static inline void fuzz_check_model(const kc_model *m) {
    FUZZ_CHECK(m->ninputs >= 1 && m->ninputs <= KC_MODEL_MAX_IO, "%d inputs", m->ninputs);
    FUZZ_CHECK(m->noutputs >= 1 && m->noutputs <= KC_MODEL_MAX_IO, "%d outputs", m->noutputs);
    int64_t total = kc_model_param_count(m, 0), trainable = kc_model_param_count(m, 1);
    FUZZ_CHECK(total >= 0 && trainable >= 0 && trainable <= total, "parameter counts %lld, %lld",
               (long long)total, (long long)trainable);
    for (int i = 0; i < m->nnodes; i++) {
        char sh[512];
        kc_shape_str(&m->nodes[i].shape, 1, sh, sizeof sh);
        FUZZ_CHECK(kc_shape_numel(&m->nodes[i].shape) >= 0, "node %d has shape %s", i, sh);
    }
    for (int i = 0; i < m->ninputs; i++)
        FUZZ_CHECK(kc_model_input_index(m, m->inputs[i].name) == i, "input '%s'",
                   m->inputs[i].name);
    for (int k = 0; k < m->noutputs; k++)
        FUZZ_CHECK(kc_model_output_index(m, m->outputs[k].name) == k, "output '%s'",
                   m->outputs[k].name);
    fuzz_check_order(m);
    kc_model_sequential_like(m);
}

static inline int fuzz_model_small(const kc_model *m) {
    if (kc_model_param_count(m, 0) > FUZZ_MAX_ELEMS) return 0;
    int64_t flops = kc_model_flops(m);
    if (flops < 0 || flops > FUZZ_MAX_FLOPS) return 0;
    for (int i = 0; i < m->nnodes; i++) {
        int64_t n = kc_shape_numel(&m->nodes[i].shape);
        if (n < 0 || n > FUZZ_MAX_ELEMS || m->nodes[i].shape.rank >= KC_MAX_RANK) return 0;
    }
    return 1;
}

/* One batch of two zero samples through every input. */
static inline void fuzz_predict(kc_session *s) {
    const kc_model *m = s->model;
    kc_array x[KC_MODEL_MAX_IO] = {{0}};
    const kc_array *xs[KC_MODEL_MAX_IO];
    kc_error e = {0};
    for (int i = 0; i < m->ninputs; i++) {
        kc_shape sh = {.rank = m->inputs[i].shape.rank + 1, .d = {2}};
        for (int k = 0; k < m->inputs[i].shape.rank; k++)
            sh.d[k + 1] = m->inputs[i].shape.d[k];
        FUZZ_CHECK(kc_array_alloc(&x[i], KC_DT_F32, &sh, &e) == KC_OK, "%s", e.msg);
        xs[i] = &x[i];
    }
    float *outs[KC_MODEL_MAX_IO] = {0};
    if (kc_predict_n(s, xs, outs, &e) == KC_OK)
        for (int k = 0; k < s->nouts; k++)
            fuzz_touch(outs[k],
                       2 * sizeof(float) * (size_t)kc_shape_numel(kc_model_output_shape_n(m, k)));
    for (int k = 0; k < KC_MODEL_MAX_IO; k++)
        free(outs[k]);
    for (int i = 0; i < m->ninputs; i++)
        kc_array_free(&x[i]);
}

/* Opens a session on the config without its data, as `kerasc summary` of
 * the model and then `predict` would, with small run settings. */
static inline void fuzz_run_model(kc_config *cfg) {
    fuzz_check_model(cfg->model);
    if (!fuzz_model_small(cfg->model)) return;
    if (cfg->fit.epochs > 4) cfg->fit.epochs = 4;
    kc_run_opts o = {.threads = 1, .batch_size = 2};
    kc_session s;
    kc_error e = {0};
    int training = cfg->loss != NULL;
    if (kc_session_open(&s, cfg, &o, 0, training, &e) == KC_OK) fuzz_predict(&s);
    kc_session_close(&s);
    /* the data files and their checks against the model (not a named
     * dataset: those are the real, large ones) */
    const kc_data_spec *d = &cfg->data;
    int need = (d->has_train ? KC_NEED_TRAIN : 0) | (d->has_test ? KC_NEED_TEST : 0);
    if (!need || d->dataset) return;
    kc_session_open(&s, cfg, &o, need, training, &e);
    kc_session_close(&s);
}

#endif
