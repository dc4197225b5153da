/* Layer test rig: layers built from YAML argument text, device plumbing
 * for one layer's forward and backward, and the finite-difference gradient
 * check every layer suite runs on every backend of the registry. */
#ifndef KC_TESTS_LAYERCHECK_H
#define KC_TESTS_LAYERCHECK_H

#include "models/layer.h"
#include "tests/devices.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdint.h>

#include "core/rng.h"
#include "core/safetensors.h"
#include "models/yaml.h"

/* ---- building layers from YAML argument text ---- */

typedef struct tl {
    kc_doc *doc;
    kc_layer *l;
} tl;

/* Creates class `cls` with the arguments in `yaml` (NULL: none), finishes
 * the arguments and, with `in`, builds. Returns the first error's code. */
static inline int tl_make(tl *t, const char *cls, const char *yaml, const kc_shape *in,
                          kc_error *e) {
    memset(t, 0, sizeof *t);
    memset(e, 0, sizeof *e);
    const kc_layer_class *c = kc_layer_class_find(cls);
    ck_assert_msg(c != NULL, "no class %s", cls);
    kc_node *map = NULL;
    if (yaml) {
        int rc = kc_doc_parse(&t->doc, "layer.yaml", yaml, strlen(yaml), e);
        ck_assert_msg(rc == 0, "yaml: %s", e->msg);
        map = t->doc->root;
    }
    kc_args a;
    kc_args_init(&a, map, map, c->class_name);
    int rc = kc_layer_create(c, &a, map, &t->l, e);
    if (!rc) rc = kc_args_finish(&a, e);
    if (!rc && in) rc = kc_layer_build(t->l, in, e);
    return rc;
}

static inline void tl_free(tl *t) {
    kc_layer_free(t->l);
    kc_doc_free(t->doc);
    memset(t, 0, sizeof *t);
}

/* A layer that must build. */
static inline kc_layer *must_build(tl *t, const char *cls, const char *yaml, kc_shape in) {
    kc_error e;
    int rc = tl_make(t, cls, yaml, &in, &e);
    ck_assert_msg(rc == 0, "%s(%s): %s", cls, yaml ? yaml : "", e.msg);
    return t->l;
}

static inline void expect_shape(const kc_layer *l, kc_shape want) {
    char a[160], b[160];
    ck_assert_msg(kc_shape_equal(&l->out_shape, &want), "%s: output %s, expected %s", l->name,
                  kc_shape_str(&l->out_shape, 1, a, sizeof a), kc_shape_str(&want, 1, b, sizeof b));
}

/* The error of creating (and, with `in`, building) must start with `where`
 * (file:line:column) and contain `part`. */
static inline void expect_error(const char *cls, const char *yaml, const kc_shape *in,
                                const char *where, const char *part) {
    tl t;
    kc_error e;
    int rc = tl_make(&t, cls, yaml, in, &e);
    ck_assert_msg(rc == KC_ECONFIG, "%s(%s) accepted", cls, yaml ? yaml : "");
    ck_assert_msg(strncmp(e.msg, where, strlen(where)) == 0, "'%s' does not start with '%s'", e.msg,
                  where);
    ck_assert_msg(strstr(e.msg, part) != NULL, "'%s' lacks '%s'", e.msg, part);
    tl_free(&t);
}

/* ---- device plumbing ---- */

typedef struct rig {
    kc_device *d;
    kc_layer *l;
    int batch;
    size_t nin, nout;        /* values per batch */
    kc_buf x, y, dy, dx, ws; /* device */
} rig;

static inline kc_buf dev_alloc(kc_device *d, size_t n) {
    return kc_test_alloc(d, n * sizeof(float));
}

static inline void put(kc_device *d, kc_buf dst, const float *src, size_t n) {
    kc_test_put(d, dst, src, n * sizeof(float));
}

static inline void get(kc_device *d, float *dst, kc_buf src, size_t n) {
    kc_test_get(d, dst, src, n * sizeof(float));
}

static inline void rig_init(rig *r, kc_device *d, kc_layer *l, int batch) {
    memset(r, 0, sizeof *r);
    r->d = d;
    r->l = l;
    r->batch = batch;
    r->nin = (size_t)kc_shape_numel(&l->in_shape) * (size_t)batch;
    r->nout = (size_t)kc_shape_numel(&l->out_shape) * (size_t)batch;
    r->x = dev_alloc(d, r->nin);
    r->dx = dev_alloc(d, r->nin);
    r->y = dev_alloc(d, r->nout);
    r->dy = dev_alloc(d, r->nout);
    for (int i = 0; i < l->nparams; i++) {
        size_t n = (size_t)kc_shape_numel(&l->params[i].shape);
        l->params[i].value = dev_alloc(d, n);
        l->params[i].grad = dev_alloc(d, n);
    }
    size_t buf = l->cls->buffer_bytes ? l->cls->buffer_bytes(l, batch, d) : 0;
    l->buf = buf ? kc_test_alloc(d, buf) : KC_BUF_NULL;
    size_t ws = l->cls->workspace_bytes ? l->cls->workspace_bytes(l, batch, d) : 0;
    r->ws = ws ? kc_test_alloc(d, ws) : KC_BUF_NULL;
}

static inline void rig_free(rig *r) {
    kc_layer *l = r->l;
    for (int i = 0; i < l->nparams; i++) {
        kc_free(r->d, &l->params[i].value);
        kc_free(r->d, &l->params[i].grad);
    }
    kc_free(r->d, &l->buf);
    kc_free(r->d, &r->ws);
    kc_free(r->d, &r->x);
    kc_free(r->d, &r->dx);
    kc_free(r->d, &r->y);
    kc_free(r->d, &r->dy);
    kc_test_ok(r->d, "layer rig");
}

static inline kc_exec rig_exec(const rig *r, int training) {
    kc_exec ex = {0};
    ex.dev = r->d;
    ex.batch = r->batch;
    ex.training = training;
    ex.seed = 1234;
    ex.step = 7;
    ex.ws = r->ws;
    return ex;
}

static inline void set_param(rig *r, int i, const float *host) {
    put(r->d, r->l->params[i].value, host, (size_t)kc_shape_numel(&r->l->params[i].shape));
}

/* The layer's forward and backward, which must succeed. */
static inline void layer_forward(rig *r, const kc_exec *ex) {
    int rc = r->l->cls->forward(r->l, ex, r->x, r->y);
    ck_assert_msg(rc == KC_OK, "%s forward on %s: %s", r->l->name, r->d->name, r->d->err.msg);
}

static inline void layer_backward(rig *r, const kc_exec *ex, kc_buf dx) {
    int rc = r->l->cls->backward(r->l, ex, r->x, r->y, r->dy, dx);
    ck_assert_msg(rc == KC_OK, "%s backward on %s: %s", r->l->name, r->d->name, r->d->err.msg);
}

/* Runs forward on host x and returns host y (caller frees). */
static inline float *run_forward(rig *r, const float *x, int training) {
    kc_exec ex = rig_exec(r, training);
    put(r->d, r->x, x, r->nin);
    layer_forward(r, &ex);
    float *y = malloc(r->nout * sizeof(float));
    get(r->d, y, r->y, r->nout);
    return y;
}

static inline void assert_values(const float *got, const double *want, size_t n, double tol) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * (1 + fabs(want[i])),
                      "value %zu: %.7g, expected %.7g", i, got[i], want[i]);
}

/* ---- finite-difference gradient checks ---- */

static inline void fill_random(float *v, size_t n, uint64_t stream, float lo, float hi) {
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * kc_rng_uniform(2024, stream, i);
}

/* Distinct values 0.1 apart in random order, so max pooling has no ties within eps. */
static inline void fill_distinct(float *v, size_t n, uint64_t stream) {
    for (size_t i = 0; i < n; i++)
        v[i] = (float)i * 0.1f - (float)n * 0.05f;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)kc_rng_below(2024, stream, i, i);
        float tmp = v[i - 1];
        v[i - 1] = v[j];
        v[j] = tmp;
    }
}

/* sum c * layer(x) in double */
static inline double objective(rig *r, const float *x, const float *c, int training) {
    float *y = run_forward(r, x, training);
    double s = 0;
    for (size_t i = 0; i < r->nout; i++)
        s += (double)c[i] * y[i];
    free(y);
    return s;
}

static inline void check_close_grad(const char *what, size_t i, double num, double ana) {
    double tol = 2e-3 + 1e-2 * fmax(fabs(num), fabs(ana));
    ck_assert_msg(fabs(num - ana) <= tol, "%s[%zu]: numeric %.6g, analytic %.6g", what, i, num,
                  ana);
}

/* At most `limit` indices of n, spread out (every index when n is small). */
static inline size_t stride_for(size_t n, size_t limit) {
    return n <= limit ? 1 : (n + limit - 1) / limit;
}

static inline void gradcheck(kc_device *be, const char *cls, const char *yaml, kc_shape in,
                             int batch, int distinct_inputs, int training) {
    tl t;
    kc_layer *l = must_build(&t, cls, yaml, in);
    l->index = 2;
    rig r;
    rig_init(&r, be, l, batch);
    const float eps = 1e-2f;
    size_t limit = kc_test_quick() ? 40 : 400;
    char what[256];

    float *x = malloc(r.nin * sizeof(float)), *c = malloc(r.nout * sizeof(float));
    if (distinct_inputs)
        fill_distinct(x, r.nin, 1);
    else
        fill_random(x, r.nin, 1, -1, 1);
    fill_random(c, r.nout, 2, -1, 1);
    float *pv[KC_LAYER_MAX_PARAMS];
    for (int p = 0; p < l->nparams; p++) {
        size_t n = (size_t)kc_shape_numel(&l->params[p].shape);
        pv[p] = malloc(n * sizeof(float));
        fill_random(pv[p], n, 10 + (uint64_t)p, -1, 1);
        set_param(&r, p, pv[p]);
    }

    /* analytic: dy = c */
    float *fy = run_forward(&r, x, training);
    free(fy);
    kc_exec ex = rig_exec(&r, training);
    put(be, r.dy, c, r.nout);
    layer_backward(&r, &ex, r.dx);
    float *dx = malloc(r.nin * sizeof(float));
    get(be, dx, r.dx, r.nin);
    float *pg[KC_LAYER_MAX_PARAMS];
    for (int p = 0; p < l->nparams; p++) {
        size_t n = (size_t)kc_shape_numel(&l->params[p].shape);
        pg[p] = malloc(n * sizeof(float));
        get(be, pg[p], l->params[p].grad, n);
    }

    /* numeric, input */
    snprintf(what, sizeof what, "%s %s(%s) on %s: dx", be->name, cls, yaml ? yaml : "", be->name);
    for (size_t i = 0; i < r.nin; i += stride_for(r.nin, limit)) {
        float keep = x[i];
        x[i] = keep + eps;
        double fp = objective(&r, x, c, training);
        x[i] = keep - eps;
        double fm = objective(&r, x, c, training);
        x[i] = keep;
        check_close_grad(what, i, (fp - fm) / (2.0 * eps), dx[i]);
    }
    /* numeric, every parameter */
    for (int p = 0; p < l->nparams; p++) {
        size_t n = (size_t)kc_shape_numel(&l->params[p].shape);
        snprintf(what, sizeof what, "%s %s(%s): d%s", be->name, cls, yaml ? yaml : "",
                 l->params[p].name);
        for (size_t i = 0; i < n; i += stride_for(n, limit)) {
            float keep = pv[p][i];
            pv[p][i] = keep + eps;
            set_param(&r, p, pv[p]);
            double fp = objective(&r, x, c, training);
            pv[p][i] = keep - eps;
            set_param(&r, p, pv[p]);
            double fm = objective(&r, x, c, training);
            pv[p][i] = keep;
            set_param(&r, p, pv[p]);
            check_close_grad(what, i, (fp - fm) / (2.0 * eps), pg[p][i]);
        }
    }

    /* accumulate adds into the grads; a null dx still writes the param grads */
    if (l->nparams) {
        fy = run_forward(&r, x, training);
        free(fy);
        ex.accumulate = 1;
        layer_backward(&r, &ex, KC_BUF_NULL);
        for (int p = 0; p < l->nparams; p++) {
            size_t n = (size_t)kc_shape_numel(&l->params[p].shape);
            float *twice = malloc(n * sizeof(float));
            get(be, twice, l->params[p].grad, n);
            for (size_t i = 0; i < n; i++)
                ck_assert_msg(fabsf(twice[i] - 2 * pg[p][i]) <= 1e-5f * (1 + fabsf(pg[p][i])),
                              "%s %s accumulate: %g vs 2 x %g", be->name, cls, twice[i], pg[p][i]);
            free(twice);
        }
    }

    for (int p = 0; p < l->nparams; p++)
        free(pv[p]), free(pg[p]);
    free(x), free(c), free(dx);
    rig_free(&r);
    tl_free(&t);
}

/* ---- Keras-made fixtures (tests/fixtures/layers/FAMILY.safetensors) ---- */

/* The family's fixture file, opened once per process (one family per suite). */
static inline kc_st_file *layer_fixture(const char *family) {
    static kc_st_file *f;
    if (!f) {
        const char *src = getenv("KERASC_SRC");
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/fixtures/layers/%s.safetensors",
                 src && *src ? src : ".", family);
        kc_error e = {0};
        ck_assert_msg(kc_st_open(path, &f, &e) == 0, "%s", e.msg);
    }
    return f;
}

/* Tensor "CASE.WHAT" of the fixture, which must be float32. */
static inline const kc_st_tensor *layer_fixture_tensor(kc_st_file *f, const char *cs,
                                                       const char *what) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", cs, what);
    const kc_st_tensor *t = kc_st_find(f, key);
    ck_assert_msg(t && t->dtype == KC_ST_F32, "fixture lacks %s", key);
    return t;
}

/* got within 1e-5 relative (plus atol) of Keras's values. */
static inline void expect_near_keras(const char *what, const char *dev, const float *got,
                                     const float *want, size_t n, float atol) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-5f * fabsf(want[i]) + atol,
                      "%s on %s [%zu]: %.8g, Keras %.8g", what, dev, i, got[i], want[i]);
}

#endif
