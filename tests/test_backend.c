/* Backend conformance. Every op of core/ops.h runs on every backend of the
 * registry (tests/devices.h) other than the reference backend, over awkward
 * sizes (1, 7, 1000 and more), with every operand at its own offset inside a
 * larger allocation fenced by guard values, over broadcasting shapes and long
 * reductions, and is compared against the reference backend with a tolerance
 * that fits the op: the same values where each element is one correctly
 * rounded float operation or a selection, the same bits where the cpu backend
 * repeats the reference's float operations in the reference's order, a few
 * ulps or a relative bound elsewhere. Every fused op is held against its
 * composition from the primitive core on every backend, and test-only
 * tables (the cpu backend with fused slots removed or declined) show that
 * ops.c then composes it, down to a small CNN trained on the primitives
 * alone. The registry, broadcasting geometry, sticky device errors and
 * traffic counters are checked directly; small cases against hand-computed
 * values and the op gradients against central finite differences, on every
 * backend, from the ops and from their compositions. */
#include "core/backend.h"
#include "core/ops.h"
#include "core/rng.h"
#include "models/config.h"
#include "models/losses.h"
#include "models/model.h"
#include "models/optimizers.h"
#include "models/regularizers.h"
#include "tests/convcase.h"
#include "tests/devices.h"
#include "tests/testutil.h"

#include <stddef.h>
#include <stdint.h>

/* The cpu backend's table, copied into the test-only tables below. */
extern const kc_backend kc_cpu_backend;

/* Check records a checkpoint for every passing assertion; inside loops over
 * elements only a failure should reach it. */
#define expect(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                    \
    } while (0)

/* Large sizes shrink under KERASC_QUICK (the sanitizer run). */
static size_t big(size_t full, size_t quick) {
    return kc_test_quick() ? quick : full;
}

/* ---------------------------------------------------------------- helpers */

static float *host(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Uniform in [lo, hi) from a stream of its own, so every input is reproducible. */
static float *random_host(size_t n, float lo, float hi, uint64_t stream) {
    float *p = host(n);
    for (size_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * kc_rng_uniform(2024, stream, i);
    return p;
}

static float *copy_host(const float *src, size_t n) {
    float *p = host(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}

static float *nan_host(size_t n) {
    float *p = host(n);
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

static double max_abs(const float *p, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(p[i])) m = fmax(m, fabs(p[i]));
    return m;
}

/* ------------------------------------------------------------- tolerances */

enum { TOL_CLOSE = 0, TOL_SAME, TOL_BITS };

typedef struct tol {
    double atol, rtol; /* |got - want| <= atol + rtol |want| */
    int mode;          /* TOL_SAME: equal values; TOL_BITS: equal bits */
} tol;

static const tol SAME = {0, 0, TOL_SAME};
static const tol BITS = {0, 0, TOL_BITS};

static tol close_to(double atol, double rtol) {
    tol t = {atol, rtol, TOL_CLOSE};
    return t;
}

/* Bit for bit where the backend repeats the reference's operations
 * (kc_test_repeats_reference), else the op's tolerance. */
static tol pinned(const kc_device *d, tol other) {
    return kc_test_repeats_reference(d) ? BITS : other;
}

/* A device that sums and evaluates math functions in float (float_math)
 * rounds differently from the double-accumulating reference: its results
 * are held to float accuracy instead of the op's own tolerance. */
static tol for_device(const kc_device *d, tol t) {
    if (!d || !d->float_math) return t;
    return close_to(fmax(t.atol, 1e-6), fmax(t.rtol, 2e-4));
}

/* Sums in the same blocks and order: the same bits on every backend that
 * accumulates in double, float accuracy on a float_math device. */
static int same_sum(const kc_device *d, double got, double want) {
    if (d->float_math) return fabs(got - want) <= 1e-6 * fabs(want) + 1e-12;
    return !memcmp(&got, &want, sizeof got);
}

/* NaN matches NaN (any payload); infinities must be equal. */
static void compare(const char *what, const kc_device *d, const float *got, const float *want,
                    size_t n, tol t) {
    const char *dn = d ? d->name : "host";
    t = for_device(d, t);
    for (size_t i = 0; i < n; i++) {
        float g = got[i], w = want[i];
        if (isnan(g) || isnan(w)) {
            expect(isnan(g) && isnan(w), "%s on %s: [%zu] = %.9g, expected %.9g", what, dn, i, g,
                   w);
            continue;
        }
        if (t.mode == TOL_BITS) {
            expect(!memcmp(&g, &w, sizeof g), "%s on %s: [%zu] = %.9g, expected exactly %.9g", what,
                   dn, i, g, w);
        } else if (t.mode == TOL_SAME || isinf(g) || isinf(w)) {
            expect(g == w, "%s on %s: [%zu] = %.9g, expected %.9g", what, dn, i, g, w);
        } else {
            expect(fabs((double)g - w) <= t.atol + t.rtol * fabs((double)w),
                   "%s on %s: [%zu] = %.9g, expected %.9g", what, dn, i, g, w);
        }
    }
}

static void compare_i32(const char *what, const kc_device *d, const int32_t *got,
                        const int32_t *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        expect(got[i] == want[i], "%s on %s: [%zu] = %d, expected %d", what, d->name, i, got[i],
               want[i]);
}

/* --------------------------------------------------- operands on a device */

/* An operand of an op: n floats (or int32s) at an offset inside a larger
 * allocation, with guard values before and after that no op may touch, so
 * every op must honour kc_buf offsets and stay inside its operands. */
enum { GUARD = 5 };
static const float GUARD_VALUE = -8191.25f;

typedef struct dbuf {
    kc_device *d;
    kc_buf mem, at; /* the allocation, and the operand inside it */
    size_t n, lead; /* floats of the operand, and of the guard before it */
} dbuf;

/* Operands start at offsets that differ from one to the next. */
static size_t next_lead(void) {
    static const size_t leads[] = {3, 0, 17, 1, 8};
    static unsigned k;
    return leads[k++ % 5];
}

static dbuf dput_lead(kc_device *d, const void *h, size_t n, size_t lead) {
    dbuf b = {.d = d, .n = n, .lead = lead};
    size_t total = lead + n + GUARD;
    float *stage = host(total);
    for (size_t i = 0; i < total; i++)
        stage[i] = GUARD_VALUE;
    if (h)
        memcpy(stage + lead, h, n * sizeof(float));
    else
        memset(stage + lead, 0, n * sizeof(float));
    b.mem = kc_test_alloc(d, total * sizeof(float));
    kc_test_put(d, b.mem, stage, total * sizeof(float));
    free(stage);
    b.at = kc_buf_f(b.mem, lead);
    return b;
}

/* n floats of h (zeros when h is NULL) */
static dbuf dput(kc_device *d, const float *h, size_t n) {
    return dput_lead(d, h, n, next_lead());
}

static dbuf dput_i32(kc_device *d, const int32_t *h, size_t n) {
    return dput_lead(d, h, n, next_lead());
}

/* NaN everywhere: an op that must overwrite its output may not read it */
static dbuf dnan(kc_device *d, size_t n) {
    float *h = nan_host(n);
    dbuf b = dput(d, h, n);
    free(h);
    return b;
}

/* One double accumulator (the penalties' out), 8-byte aligned. */
static dbuf dput_double(kc_device *d, double v) {
    static const size_t leads[] = {0, 2, 6, 4};
    static unsigned k;
    float two[2];
    memcpy(two, &v, sizeof v);
    return dput_lead(d, two, 2, leads[k++ % 4]);
}

static void dfree(dbuf *b) {
    kc_free(b->d, &b->mem);
    b->at = KC_BUF_NULL;
}

/* Downloads the operand into h (when not NULL) and checks the guards. */
static void dget(const char *what, dbuf *b, void *h) {
    kc_test_ok(b->d, what);
    size_t total = b->lead + b->n + GUARD;
    float *all = host(total);
    kc_test_get(b->d, all, b->mem, total * sizeof(float));
    for (size_t i = 0; i < total; i++) {
        if (i == b->lead) i += b->n;
        if (i >= total) break;
        expect(!memcmp(&all[i], &GUARD_VALUE, sizeof(float)),
               "%s on %s wrote outside its operand: %s guard float %zu is %.9g", what, b->d->name,
               i < b->lead ? "leading" : "trailing", i < b->lead ? i : i - b->lead - b->n, all[i]);
    }
    if (h) memcpy(h, all + b->lead, b->n * sizeof(float));
    free(all);
}

/* dget into a new host array, then frees the operand. */
static float *dtake(const char *what, dbuf *b) {
    float *h = host(b->n);
    dget(what, b, h);
    dfree(b);
    return h;
}

static double dget_double(const char *what, dbuf *b) {
    float two[2];
    dget(what, b, two);
    double v;
    memcpy(&v, two, sizeof v);
    return v;
}

/* Device scratch for a conv: its workspace, or none when it needs none. */
static kc_buf conv_ws(kc_device *d, const kc_conv2d_desc *g) {
    size_t bytes = kc_conv2d_workspace(d, g);
    return bytes ? kc_test_alloc(d, bytes) : KC_BUF_NULL;
}

/* ------------------------------------------------------------- registry */

START_TEST(test_registry) {
    int n = kc_test_backend_count();
    ck_assert_int_ge(n, 2);
    ck_assert_ptr_null(kc_backends[n]);            /* NULL-terminated, and all of it is tested */
    ck_assert_str_eq(kc_backends[0]->name, "cpu"); /* the default comes first */
    ck_assert_ptr_nonnull(kc_backend_by_name("reference"));
#ifdef KC_HAVE_OPENCL
    ck_assert_ptr_nonnull(kc_backend_by_name("opencl"));
#endif
    char want[512] = "";
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        const kc_backend *be = kc_backends[i];
        ck_assert_ptr_nonnull(be->name);
        ck_assert_msg(be->name[0] != 0, "backend %d has an empty name", i);
        /* the first entry of that name is this one: names are unique */
        ck_assert_ptr_eq(kc_backend_by_name(be->name), be);
        ck_assert_msg(be->description && be->description[0], "%s has no description", be->name);
        used += (size_t)snprintf(want + used, sizeof want - used, "%s%s", i ? ", " : "", be->name);
        /* the primitive core every backend fills */
        ck_assert_msg(be->open && be->close && be->list_devices, "%s: lifetime slots", be->name);
        ck_assert_msg(be->alloc && be->free && be->upload && be->download && be->copy &&
                          be->copy2d && be->copy_strided,
                      "%s: memory slots", be->name);
        ck_assert_msg(be->fill && be->scale && be->axpy && be->unary && be->binary && be->select &&
                          be->reduce && be->gemm,
                      "%s: math slots", be->name);
        ck_assert_msg(be->act_forward && be->act_backward && be->dropout_forward &&
                          be->l1l2_penalty && be->sum_squares,
                      "%s: activation, dropout and penalty slots", be->name);
        ck_assert_msg(be->rng_normal, "%s: random normal slot", be->name);
    }
    ck_assert_str_eq(kc_backend_names(), want);
    ck_assert_ptr_null(kc_backend_by_name("gpu"));
    ck_assert_ptr_null(kc_backend_by_name("CPU")); /* names are case-sensitive */
    ck_assert_ptr_null(kc_backend_by_name(""));
    ck_assert_ptr_null(kc_backend_by_name(NULL));
}
END_TEST

/* Opening: every registry entry that opens here names itself, lists its
 * devices and can run every op (natively or composed); by name, NULL is the
 * cpu backend and an unknown name lists what is built in. */
START_TEST(test_device_open) {
    for (int i = 0; i < kc_test_backend_count(); i++) {
        const kc_backend *be = kc_backends[i];
        kc_device *d = kc_test_device(i);
        char list[4096] = "";
        int nd = be->list_devices(list, sizeof list);
        if (!d) continue; /* skipped, and said so on stderr */
        ck_assert_ptr_eq(d->be, be);
        ck_assert_msg(d->name[0] != 0, "%s: an opened device has no name", be->name);
        ck_assert_int_eq(d->index, 0);
        ck_assert_int_eq(kc_device_status(d), KC_OK);
        ck_assert_msg(nd >= 1, "%s opens but lists %d devices: %s", be->name, nd, list);
        ck_assert_msg(!strncmp(list, "0: ", 3), "%s: device list '%s'", be->name, list);
        for (int op = 0; op < KC_OP_COUNT; op++)
            ck_assert_msg(kc_op_available(d, (kc_op)op, NULL), "%s cannot run op %d at all",
                          d->name, op);
        /* one past the devices it lists: refused with a reason, the device cleared */
        kc_device past;
        kc_error pe = {0};
        kc_device_opts po = {.device = nd};
        ck_assert_msg(kc_device_open(&past, be, &po, &pe) != KC_OK, "%s opened device %d of %d",
                      be->name, nd, nd);
        ck_assert_msg(strstr(pe.msg, be->name), "%s: '%s'", be->name, pe.msg);
        ck_assert_ptr_null(past.be);
    }
    kc_device d;
    kc_error e = {0};
    ck_assert_int_eq(kc_device_open_name(&d, NULL, NULL, &e), KC_OK);
    ck_assert_str_eq(d.be->name, "cpu");
    kc_device_close(&d);
    ck_assert_ptr_null(d.be); /* a closed device is cleared */
    kc_device_close(&d);      /* and closing it again does nothing */

    kc_device_opts three = {.threads = 3};
    ck_assert_int_eq(kc_device_open_name(&d, "cpu", &three, &e), KC_OK);
    ck_assert_int_eq(d.threads, 3);
    kc_device_close(&d);

    memset(&e, 0, sizeof e);
    ck_assert_int_eq(kc_device_open_name(&d, "nope", NULL, &e), KC_ECONFIG);
    ck_assert_int_eq(e.code, KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "unknown backend 'nope'"), "%s", e.msg);
    ck_assert_msg(strstr(e.msg, kc_backend_names()), "%s", e.msg);
    ck_assert_ptr_null(d.be);

    kc_device_opts neg = {.device = -1};
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(kc_device_open(&d, kc_backends[0], &neg, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "--device -1"), "%s", e.msg);
    ck_assert_ptr_null(d.be);
}
END_TEST

/* -------------------------------------------------------- broadcasting */

typedef struct bc_want {
    int ra, rb;
    int64_t a[8], b[8];
    int rc;
    int rank;
    int64_t dims[4], sa[4], sb[4];
    size_t n;
} bc_want;

START_TEST(test_bcast_make) {
    static const bc_want cases[] = {
        /* equal shapes merge into one axis */
        {3, 3, {2, 3, 4}, {2, 3, 4}, KC_OK, 1, {24}, {1}, {1}, 24},
        /* bias-like: b over the rows of a */
        {2, 1, {5, 4}, {4}, KC_OK, 2, {5, 4}, {4, 1}, {0, 1}, 20},
        /* one value per row */
        {2, 2, {5, 4}, {5, 1}, KC_OK, 2, {5, 4}, {4, 1}, {1, 0}, 20},
        /* a scalar (rank 0) against anything */
        {3, 0, {2, 3, 4}, {0}, KC_OK, 1, {24}, {1}, {0}, 24},
        {0, 0, {0}, {0}, KC_OK, 1, {1}, {0}, {0}, 1},
        /* unit axes drop out; an outer product keeps two */
        {3, 1, {1, 5, 1}, {5}, KC_OK, 2, {5, 5}, {1, 0}, {0, 1}, 25},
        {3, 3, {2, 1, 3}, {1, 4, 1}, KC_OK, 3, {2, 4, 3}, {3, 0, 1}, {0, 1, 0}, 24},
        {3, 3, {3, 4, 5}, {3, 1, 5}, KC_OK, 3, {3, 4, 5}, {20, 5, 1}, {5, 0, 1}, 60},
        /* leading axes broadcast together merge, so do trailing dense ones */
        {4, 4, {2, 3, 4, 5}, {1, 1, 4, 5}, KC_OK, 2, {6, 20}, {20, 1}, {0, 1}, 120},
        /* four axes that cannot merge still fit */
        {4, 4, {2, 1, 2, 1}, {1, 2, 1, 2}, KC_OK, 4, {2, 2, 2, 2}, {2, 0, 1, 0}, {0, 2, 0, 1}, 16},
        /* an empty axis: nothing to compute */
        {2, 1, {0, 3}, {3}, KC_OK, 2, {0, 3}, {3, 1}, {0, 1}, 0},
        /* shapes that do not broadcast */
        {1, 1, {3}, {4}, KC_ECONFIG, 0, {0}, {0}, {0}, 0},
        {2, 2, {2, 3}, {3, 2}, KC_ECONFIG, 0, {0}, {0}, {0}, 0},
        {1, 1, {0}, {3}, KC_ECONFIG, 0, {0}, {0}, {0}, 0},
        /* five axes after merging are more than KC_BCAST_RANK */
        {5, 5, {2, 1, 2, 1, 2}, {1, 2, 1, 2, 1}, KC_ECONFIG, 0, {0}, {0}, {0}, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const bc_want *c = &cases[k];
        kc_bcast g;
        memset(&g, 0x5a, sizeof g);
        size_t n = 12345;
        int rc = kc_bcast_make(&g, c->a, c->ra, c->b, c->rb, &n);
        ck_assert_msg(rc == c->rc, "case %zu: rc %d, expected %d", k, rc, c->rc);
        if (rc) continue;
        ck_assert_msg(g.rank == c->rank, "case %zu: rank %d, expected %d", k, g.rank, c->rank);
        ck_assert_msg(n == c->n, "case %zu: %zu elements, expected %zu", k, n, c->n);
        for (int r = 0; r < c->rank; r++)
            ck_assert_msg(g.dims[r] == c->dims[r] && g.sa[r] == c->sa[r] && g.sb[r] == c->sb[r],
                          "case %zu axis %d: dims %lld sa %lld sb %lld, expected %lld %lld %lld", k,
                          r, (long long)g.dims[r], (long long)g.sa[r], (long long)g.sb[r],
                          (long long)c->dims[r], (long long)c->sa[r], (long long)c->sb[r]);
        /* n may be NULL */
        ck_assert_int_eq(kc_bcast_make(&g, c->a, c->ra, c->b, c->rb, NULL), KC_OK);
    }
    int64_t deep[17];
    for (int i = 0; i < 17; i++)
        deep[i] = 1;
    kc_bcast g;
    ck_assert_int_eq(kc_bcast_make(&g, deep, 17, deep, 1, NULL), KC_ECONFIG);

    g = kc_bcast_same(7);
    ck_assert_int_eq(g.rank, 1);
    ck_assert(g.dims[0] == 7 && g.sa[0] == 1 && g.sb[0] == 1);
    g = kc_bcast_rows(3, 5);
    ck_assert_int_eq(g.rank, 2);
    ck_assert(g.dims[0] == 3 && g.dims[1] == 5 && g.sa[0] == 5 && g.sa[1] == 1);
    ck_assert(g.sb[0] == 0 && g.sb[1] == 1);
    g = kc_bcast_cols(3, 5);
    ck_assert(g.dims[0] == 3 && g.dims[1] == 5 && g.sa[0] == 5 && g.sa[1] == 1);
    ck_assert(g.sb[0] == 1 && g.sb[1] == 0);
}
END_TEST

/* ------------------------------------------------ sticky errors, traffic */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* After a failure every op returns its code without running, a later failure
 * does not replace it, kc_device_error copies it, and clearing it lets the
 * device run again with its memory as it was. */
START_TEST(test_sticky_errors) {
    KC_FOR_EACH_DEVICE(d) {
        ck_assert_int_eq(kc_device_status(d), KC_OK);
        const float vals[4] = {1, 2, 3, 4};
        kc_buf b = kc_test_from(d, vals, 4), c = kc_test_alloc(d, 16);
        kc_error e = {.code = 99, .msg = "untouched"};
        ck_assert_int_eq(kc_device_error(d, &e), KC_OK);
        ck_assert_int_eq(e.code, 99); /* nothing to copy */
        ck_assert_str_eq(e.msg, "untouched");

        int code;
        if (!UNDER_ASAN) {
            /* a real failure of the backend: more memory than anyone has */
            kc_buf huge;
            code = kc_alloc(d, (size_t)1 << 62, &huge);
            ck_assert_msg(code != KC_OK, "%s allocated 2^62 bytes", d->name);
            ck_assert(!kc_buf_ok(huge));
            ck_assert_msg(d->err.msg[0] != 0, "%s failed without a message", d->name);
        } else {
            code = kc_device_fail(d, KC_ERUNTIME, "injected failure %d", 7);
            ck_assert_str_eq(d->err.msg, "injected failure 7");
        }
        ck_assert_int_eq(kc_device_status(d), code);
        char first[sizeof d->err.msg];
        snprintf(first, sizeof first, "%s", d->err.msg);

        /* the first failure wins */
        ck_assert_int_eq(kc_device_fail(d, KC_ECONFIG, "second"), code);
        ck_assert_str_eq(d->err.msg, first);

        /* every op is now a no-op returning the same code */
        kc_buf out;
        ck_assert_int_eq(kc_alloc(d, 64, &out), code);
        ck_assert(!kc_buf_ok(out));
        ck_assert_int_eq(kc_fill(d, b, 9.0f, 4), code);
        ck_assert_int_eq(kc_fill(d, b, 9.0f, 0), code);
        ck_assert_int_eq(kc_scale(d, b, 2.0f, 4), code);
        ck_assert_int_eq(kc_unary(d, KC_UN_NEG, 0.0f, b, b, 4), code);
        ck_assert_int_eq(kc_binary_n(d, KC_BIN_ADD, b, b, b, 4), code);
        ck_assert_int_eq(kc_gemm(d, 0, 0, 2, 2, 2, 1.0f, b, 2, b, 2, 0.0f, c, 2), code);
        ck_assert_int_eq(kc_mul(d, b, b, c, 4), code);
        ck_assert_int_eq(kc_fallback_clip(d, b, c, 0.0f, 1.0f, 4), code);
        ck_assert_int_eq(kc_copy(d, c, b, 16), code);
        ck_assert_int_eq(kc_upload(d, b, vals, 16), code);
        ck_assert_int_eq(kc_synchronize(d), code);
        float got[4] = {-1, -1, -1, -1};
        ck_assert_int_eq(kc_download(d, got, b, 16), code);
        ck_assert(got[0] == -1.0f && got[3] == -1.0f); /* the download did not run */

        memset(&e, 0, sizeof e);
        ck_assert_int_eq(kc_device_error(d, &e), code);
        ck_assert_int_eq(e.code, code);
        ck_assert_str_eq(e.msg, first);
        ck_assert_int_eq(kc_device_error(d, NULL), code);

        kc_device_clear_error(d);
        ck_assert_int_eq(kc_device_status(d), KC_OK);
        ck_assert_int_eq(kc_device_error(d, NULL), KC_OK);
        kc_test_get(d, got, b, sizeof got);
        compare("memory across a failure", d, got, vals, 4, BITS);
        ck_assert_int_eq(kc_fill(d, b, 9.0f, 4), KC_OK);
        kc_test_get(d, got, b, sizeof got);
        ck_assert(got[0] == 9.0f && got[3] == 9.0f);
        kc_free(d, &b);
        kc_free(d, &c);
    }
}
END_TEST

/* Uploads and downloads count bytes and transfers; ops, empty transfers and
 * transfers refused after a failure do not. */
START_TEST(test_traffic) {
    KC_FOR_EACH_DEVICE(d) {
        float h[16] = {0};
        kc_buf b = kc_test_alloc(d, sizeof h), c = kc_test_alloc(d, sizeof h);
        kc_device_reset_traffic(d);
        ck_assert(d->bytes_up == 0 && d->bytes_down == 0 && d->transfers == 0);
        kc_test_put(d, b, h, 40);
        ck_assert_uint_eq(d->bytes_up, 40);
        ck_assert_uint_eq(d->transfers, 1);
        ck_assert_int_eq(kc_upload_async(d, kc_buf_f(b, 4), h, 12), KC_OK);
        ck_assert_int_eq(kc_synchronize(d), KC_OK);
        ck_assert_uint_eq(d->bytes_up, 52);
        ck_assert_uint_eq(d->transfers, 2);
        kc_test_get(d, h, b, 20);
        ck_assert_uint_eq(d->bytes_down, 20);
        ck_assert_uint_eq(d->transfers, 3);
        ck_assert_int_eq(kc_upload(d, b, h, 0), KC_OK);
        ck_assert_int_eq(kc_download(d, h, b, 0), KC_OK);
        ck_assert_int_eq(kc_fill(d, b, 1.0f, 16), KC_OK);
        ck_assert_int_eq(kc_copy(d, c, b, sizeof h), KC_OK);
        ck_assert_int_eq(kc_synchronize(d), KC_OK);
        ck_assert(d->bytes_up == 52 && d->bytes_down == 20 && d->transfers == 3);
        kc_device_fail(d, KC_ERUNTIME, "stop");
        kc_upload(d, b, h, 40);
        kc_download(d, h, b, 40);
        ck_assert(d->bytes_up == 52 && d->bytes_down == 20 && d->transfers == 3);
        kc_device_clear_error(d);
        kc_device_reset_traffic(d);
        ck_assert(d->bytes_up == 0 && d->bytes_down == 0 && d->transfers == 0);
        kc_free(d, &b);
        kc_free(d, &c);
    }
}
END_TEST

/* ----------------------------------------------------- memory, copies */

START_TEST(test_memory) {
    const size_t n = 1001, cap = 3000;
    float *src = random_host(n, -1, 1, 1), *h = host(cap), *model = host(cap);
    KC_FOR_EACH_DEVICE(d) {
        /* zero-filled */
        kc_buf a = kc_test_alloc(d, cap * sizeof(float));
        kc_test_get(d, h, a, cap * sizeof(float));
        for (size_t i = 0; i < cap; i++)
            expect(h[i] == 0.0f, "%s: alloc not zero-filled at %zu", d->name, i);
        /* an upload at an offset changes only those floats */
        kc_test_put(d, kc_buf_f(a, 37), src, n * sizeof(float));
        kc_test_get(d, h, a, cap * sizeof(float));
        for (size_t i = 0; i < cap; i++)
            model[i] = i >= 37 && i < 37 + n ? src[i - 37] : 0.0f;
        compare("upload at an offset", d, h, model, cap, BITS);
        /* byte offsets reach the same places */
        float two[2];
        ck_assert(kc_buf_eq(kc_buf_bytes(a, 38 * 4), kc_buf_f(a, 38)));
        kc_test_get(d, two, kc_buf_bytes(a, 38 * 4), sizeof two);
        compare("download at a byte offset", d, two, src + 1, 2, BITS);
        /* between allocations, at offsets */
        kc_buf b = kc_test_alloc(d, 2000 * sizeof(float));
        ck_assert_int_eq(kc_copy(d, kc_buf_f(b, 5), kc_buf_f(a, 37), n * sizeof(float)), KC_OK);
        kc_test_get(d, h, kc_buf_f(b, 5), n * sizeof(float));
        compare("copy", d, h, src, n, BITS);
        /* overlapping copies, either way, as memmove */
        ck_assert_int_eq(kc_copy(d, kc_buf_f(a, 40), kc_buf_f(a, 37), n * sizeof(float)), KC_OK);
        memmove(model + 40, model + 37, n * sizeof(float));
        ck_assert_int_eq(kc_copy(d, kc_buf_f(a, 30), kc_buf_f(a, 40), n * sizeof(float)), KC_OK);
        memmove(model + 30, model + 40, n * sizeof(float));
        kc_test_get(d, h, a, cap * sizeof(float));
        compare("overlapping copies", d, h, model, cap, BITS);
        ck_assert_int_eq(kc_copy(d, a, a, cap * sizeof(float)), KC_OK); /* onto itself */
        /* a queued upload is complete after synchronize; the host buffer is then free */
        float *q = random_host(n, -5, 5, 2), *q0 = copy_host(q, n);
        ck_assert_int_eq(kc_upload_async(d, kc_buf_f(b, 11), q, n * sizeof(float)), KC_OK);
        ck_assert_int_eq(kc_synchronize(d), KC_OK);
        q[0] = 99.0f;
        kc_test_get(d, h, kc_buf_f(b, 11), n * sizeof(float));
        compare("queued upload", d, h, q0, n, BITS);
        /* empty transfers do nothing */
        ck_assert_int_eq(kc_upload(d, b, src, 0), KC_OK);
        ck_assert_int_eq(kc_download(d, h, b, 0), KC_OK);
        ck_assert_int_eq(kc_copy(d, a, b, 0), KC_OK);
        kc_free(d, &a);
        ck_assert(!kc_buf_ok(a));
        kc_free(d, &a); /* freeing the null handle is a no-op */
        kc_free(d, &b);
        kc_test_ok(d, "memory");
        free(q), free(q0);
    }
    free(src), free(h), free(model);
}
END_TEST

START_TEST(test_copy2d) {
    static const size_t cases[][4] = {
        /* rows, cols, lds, ldd */
        {13, 7, 11, 9}, {1, 1, 1, 1}, {5, 8, 8, 8}, {300, 129, 131, 130}, {7, 1000, 1003, 1000},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t rows = cases[k][0], cols = cases[k][1], lds = cases[k][2], ldd = cases[k][3];
        size_t ns = (rows - 1) * lds + cols, nd = (rows - 1) * ldd + cols;
        float *src = random_host(ns, -1, 1, 3 + k), *dst0 = random_host(nd, 5, 6, 9 + k);
        float *want = copy_host(dst0, nd);
        for (size_t r = 0; r < rows; r++)
            memcpy(want + r * ldd, src + r * lds, cols * sizeof(float));
        KC_FOR_EACH_DEVICE(d) {
            dbuf s = dput(d, src, ns), t = dput(d, dst0, nd);
            ck_assert_int_eq(kc_copy2d(d, t.at, ldd, s.at, lds, rows, cols), KC_OK);
            ck_assert_int_eq(kc_copy2d(d, t.at, ldd, s.at, lds, 0, cols), KC_OK);
            ck_assert_int_eq(kc_copy2d(d, t.at, ldd, s.at, lds, rows, 0), KC_OK);
            float *got = dtake("copy2d", &t);
            compare("copy2d", d, got, want, nd, BITS);
            dfree(&s);
            free(got);
        }
        free(src), free(dst0), free(want);
    }
}
END_TEST

/* The strided copy on the host, element by element. */
static void copy_strided_host(kc_copy_mode mode, const kc_copy_desc *g, const float *src,
                              float *dst) {
    int64_t idx[KC_COPY_RANK] = {0}, total = 1;
    for (int k = 0; k < g->rank; k++)
        total *= g->dims[k];
    for (int64_t t = 0; t < total; t++) {
        int64_t so = 0, dof = 0;
        for (int k = 0; k < g->rank; k++)
            so += idx[k] * g->ss[k], dof += idx[k] * g->ds[k];
        if (mode == KC_COPY_ADD)
            dst[dof] += src[so];
        else
            memcpy(&dst[dof], &src[so], sizeof(float));
        for (int k = g->rank - 1; k >= 0 && ++idx[k] == g->dims[k]; k--)
            idx[k] = 0;
    }
}

/* Floats one past the last element a side of the copy reaches. */
static size_t copy_reach(const kc_copy_desc *g, int dst) {
    size_t r = 1;
    for (int k = 0; k < g->rank; k++)
        r += (size_t)(g->dims[k] - 1) * (size_t)(dst ? g->ds[k] : g->ss[k]);
    return r;
}

/* Gathers (im2col), scatters (col2im), transposes, broadcasts from a stride
 * 0, every rank up to KC_COPY_RANK, axes the dispatcher merges or drops, and
 * runs long enough for threads; elements the copy does not reach keep their
 * values. SET moves bits (NaN payloads, -0, denormals, int32s). */
START_TEST(test_copy_strided) {
    static const kc_copy_desc cases[] = {
        {1, {1000}, {3}, {2}},
        {2, {7, 13}, {1, 7}, {13, 1}},                            /* transpose */
        {4, {2, 3, 4, 5}, {120, 20, 2, 1}, {60, 20, 5, 1}},       /* a tap of im2col */
        {4, {2, 3, 4, 5}, {60, 20, 5, 1}, {130, 40, 9, 1}},       /* its col2im */
        {2, {4, 6}, {0, 0}, {6, 1}},                              /* one value, repeated */
        {3, {3, 4, 5}, {20, 5, 1}, {40, 10, 2}},                  /* merges to one axis */
        {5, {2, 1, 3, 1, 4}, {1, 99, 2, 7, 6}, {12, 5, 4, 3, 1}}, /* unit axes */
        {8, {2, 2, 3, 1, 2, 2, 1, 3}, {1, 2, 4, 0, 12, 24, 0, 48}, {144, 72, 24, 0, 12, 6, 0, 2}},
        {2, {300, 129}, {131, 1}, {1, 300}},  /* threads */
        {3, {5, 0, 7}, {1, 1, 1}, {1, 1, 1}}, /* empty */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int mode = 0; mode < KC_COPY_MODE_COUNT; mode++) {
            const kc_copy_desc *g = &cases[k];
            size_t ns = copy_reach(g, 0), nd = copy_reach(g, 1);
            float *src = random_host(ns, -4, 4, 30 + k), *dst0 = random_host(nd, -1, 1, 40 + k);
            if (mode == KC_COPY_SET && ns >= 4) {
                const uint32_t odd[4] = {0x7fa00001u, 0x80000000u, 0x00000001u, 123456789u};
                memcpy(src, odd, sizeof odd);
            }
            float *want = copy_host(dst0, nd);
            copy_strided_host((kc_copy_mode)mode, g, src, want);
            KC_FOR_EACH_DEVICE(d) {
                dbuf ds = dput(d, src, ns), dd = dput(d, dst0, nd);
                ck_assert_int_eq(kc_copy_strided(d, (kc_copy_mode)mode, g, ds.at, dd.at), KC_OK);
                float *got = dtake("copy_strided", &dd);
                char what[48];
                snprintf(what, sizeof what, "copy_strided case %zu, mode %d", k, mode);
                /* each element is moved or is one float addition */
                compare(what, d, got, want, nd, mode == KC_COPY_SET ? BITS : SAME);
                if (mode == KC_COPY_SET) /* NaN payloads too */
                    for (size_t i = 0; i < nd; i++)
                        expect(!memcmp(&got[i], &want[i], sizeof(float)), "%s on %s: bits of [%zu]",
                               what, d->name, i);
                dfree(&ds);
                free(got);
            }
            free(src), free(dst0), free(want);
        }
}
END_TEST

/* Geometries outside the contract are refused by name, before the backend. */
START_TEST(test_copy_strided_refused) {
    const kc_copy_desc bad[] = {
        {0, {1}, {1}, {1}},
        {KC_COPY_RANK + 1, {1}, {1}, {1}},
        {2, {2, -1}, {1, 1}, {1, 1}},
        {2, {2, 2}, {-1, 1}, {2, 1}},
        {1, {INT64_MAX / 2}, {8}, {1}},
    };
    KC_FOR_EACH_DEVICE(d) {
        kc_buf b = kc_test_alloc(d, 64);
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            ck_assert_int_eq(kc_copy_strided(d, KC_COPY_SET, &bad[k], b, kc_buf_f(b, 8)),
                             KC_ECONFIG);
            ck_assert_msg(strstr(d->err.msg, "strided copy"), "%s", d->err.msg);
            kc_device_clear_error(d);
        }
        kc_copy_desc one = {1, {4}, {1}, {1}};
        ck_assert_int_eq(kc_copy_strided(d, (kc_copy_mode)7, &one, b, kc_buf_f(b, 8)), KC_ECONFIG);
        ck_assert_msg(strstr(d->err.msg, "unknown mode"), "%s", d->err.msg);
        kc_device_clear_error(d);
        kc_free(d, &b);
    }
}
END_TEST

/* ------------------------------------------------------- elementwise */

/* fill, axpy, scale and mul in place: y = 3 (0.75 - 1.5 a) b; and each alone */
static void run_elementwise(kc_device *d, const float *a, const float *b, size_t n, float *chain,
                            float *filled, float *scaled, float *prod, float *axpy) {
    dbuf da = dput(d, a, n), db = dput(d, b, n), dy = dnan(d, n);
    kc_fill(d, dy.at, 0.75f, n);
    kc_axpy(d, -1.5f, da.at, dy.at, n); /* y = 0.75 - 1.5 a */
    kc_scale(d, dy.at, 3.0f, n);        /* y = 3 (0.75 - 1.5 a) */
    kc_mul(d, dy.at, db.at, dy.at, n);  /* in place: y = y b */
    dget("fill, axpy, scale, mul", &dy, chain);
    kc_fill(d, dy.at, -2.5f, n);
    dget("fill", &dy, filled);
    kc_copy(d, dy.at, da.at, n * sizeof(float));
    kc_scale(d, dy.at, 3.0f, n);
    dget("scale", &dy, scaled);
    kc_mul(d, da.at, db.at, dy.at, n);
    dget("mul", &dy, prod);
    kc_copy(d, dy.at, db.at, n * sizeof(float));
    kc_axpy(d, -1.5f, da.at, dy.at, n);
    dget("axpy", &dy, axpy);
    dfree(&da), dfree(&db), dfree(&dy);
}

START_TEST(test_elementwise) {
    size_t sizes[] = {1, 7, 1001, big(100003, 4099)};
    kc_device *ref = kc_test_reference();
    for (int s = 0; s < 4; s++) {
        size_t n = sizes[s];
        float *a = random_host(n, -2, 2, 10), *b = random_host(n, -2, 2, 11);
        float *want[5], *got[5];
        for (int k = 0; k < 5; k++)
            want[k] = host(n), got[k] = host(n);
        run_elementwise(ref, a, b, n, want[0], want[1], want[2], want[3], want[4]);
        for (size_t i = 0; i < n; i++) {
            float chain = (3.0f * (0.75f + -1.5f * a[i])) * b[i], t = -1.5f * a[i];
            expect(want[0][i] == chain, "reference[%zu] = %g, expected %g", i, want[0][i], chain);
            expect(want[1][i] == -2.5f, "reference fill[%zu]", i);
            expect(want[2][i] == a[i] * 3.0f, "reference scale[%zu]", i);
            expect(want[3][i] == a[i] * b[i], "reference mul[%zu]", i);
            expect(want[4][i] == b[i] + t, "reference axpy[%zu]", i);
        }
        KC_FOR_EACH_TESTED_DEVICE(d) {
            run_elementwise(d, a, b, n, got[0], got[1], got[2], got[3], got[4]);
            compare("elementwise chain", d, got[0], want[0], n, pinned(d, close_to(1e-6, 1e-6)));
            compare("fill", d, got[1], want[1], n, SAME);
            compare("scale", d, got[2], want[2], n, SAME);
            compare("mul", d, got[3], want[3], n, SAME);
            compare("axpy", d, got[4], want[4], n, pinned(d, close_to(1e-7, 2.5e-7)));
        }
        free(a), free(b);
        for (int k = 0; k < 5; k++)
            free(want[k]), free(got[k]);
    }
}
END_TEST

/* ------------------------------------------------------------- unary */

typedef struct un_case {
    kc_unary_op op;
    const char *name;
    float a, lo, hi; /* the op's scalar; inputs uniform in [lo, hi) */
    double rtol;     /* 0: the same value on every backend */
    int specials;    /* inputs include NaN, infinities, zeros and a itself */
} un_case;

static const un_case un_cases[] = {
    {KC_UN_NEG, "neg", 0, -3, 3, 0, 1},
    {KC_UN_ABS, "abs", 0, -3, 3, 0, 1},
    {KC_UN_SIGN, "sign", 0, -3, 3, 0, 1},
    {KC_UN_SQUARE, "square", 0, -30, 30, 0, 0},
    {KC_UN_SQRT, "sqrt", 0, 0, 50, 1e-6, 0},
    {KC_UN_RSQRT, "rsqrt", 0, 0.01f, 50, 1e-6, 0},
    {KC_UN_RECIP, "recip", 0, 0.05f, 20, 1e-6, 0},
    {KC_UN_RECIP, "recip of negatives", 0, -20, -0.05f, 1e-6, 0},
    {KC_UN_EXP, "exp", 0, -20, 20, 1e-6, 0},
    {KC_UN_LOG, "log", 0, 1e-3f, 100, 1e-6, 0},
    {KC_UN_LOG1P, "log1p", 0, -0.9f, 10, 1e-6, 0},
    {KC_UN_TANH, "tanh", 0, -8, 8, 1e-6, 0},
    {KC_UN_SIGMOID, "sigmoid", 0, -30, 30, 1e-6, 0},
    {KC_UN_FLOOR, "floor", 0, -5, 5, 0, 1},
    {KC_UN_ADD, "add", 0.375f, -3, 3, 0, 1},
    {KC_UN_MUL, "mul", -1.75f, -3, 3, 0, 1},
    {KC_UN_DIV, "div", 3.1f, -3, 3, 1e-6, 0},
    {KC_UN_RSUB, "rsub", 2.5f, -3, 3, 0, 1},
    {KC_UN_POW, "pow 2.5", 2.5f, 0.01f, 4, 4e-6, 0},
    {KC_UN_POW, "pow -1.5", -1.5f, 0.05f, 4, 4e-6, 0},
    {KC_UN_POW, "pow 3 of any sign", 3.0f, -3, 3, 4e-6, 0},
    {KC_UN_MAX, "max", 0.25f, -3, 3, 0, 1},
    {KC_UN_MIN, "min", -0.5f, -3, 3, 0, 1},
    {KC_UN_GT, "gt", 0.125f, -1, 1, 0, 1},
    {KC_UN_GE, "ge", 0.0f, -1, 1, 0, 1},
    {KC_UN_LT, "lt", 0.125f, -1, 1, 0, 1},
    {KC_UN_LE, "le", 0.0f, -1, 1, 0, 1},
    {KC_UN_EQ, "eq", 0.5f, -1, 1, 0, 1},
};
#define N_UN (sizeof un_cases / sizeof un_cases[0])

/* The exact ops by their definitions in core/backend.h (NaN: 1 when it is NaN). */
static int un_host(const un_case *c, float x, float *y) {
    float a = c->a;
    switch (c->op) {
    case KC_UN_NEG:
        *y = -x;
        return 1;
    case KC_UN_ABS:
        *y = fabsf(x);
        return 1;
    case KC_UN_SIGN:
        *y = x > 0 ? 1.0f : x < 0 ? -1.0f : x;
        return 1; /* +-0, NaN kept */
    case KC_UN_SQUARE:
        *y = x * x;
        return 1;
    case KC_UN_FLOOR:
        *y = floorf(x);
        return 1;
    case KC_UN_ADD:
        *y = x + a;
        return 1;
    case KC_UN_MUL:
        *y = x * a;
        return 1;
    case KC_UN_RSUB:
        *y = a - x;
        return 1;
    case KC_UN_MAX:
        *y = isnan(x) || isnan(a) ? NAN : x > a ? x : a;
        return 1;
    case KC_UN_MIN:
        *y = isnan(x) || isnan(a) ? NAN : x < a ? x : a;
        return 1;
    case KC_UN_GT:
        *y = x > a;
        return 1;
    case KC_UN_GE:
        *y = x >= a;
        return 1;
    case KC_UN_LT:
        *y = x < a;
        return 1;
    case KC_UN_LE:
        *y = x <= a;
        return 1;
    case KC_UN_EQ:
        *y = x == a;
        return 1;
    default:
        return 0;
    }
}

static float *un_inputs(const un_case *c, size_t n, uint64_t stream) {
    float *x = random_host(n, c->lo, c->hi, stream);
    if (c->specials && n >= 32) {
        const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, c->a, -c->a, 1.0f, -1.0f};
        for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++)
            x[i * 3 + 1] = sp[i];
    }
    return x;
}

/* y = op(x), out of place and in place */
static void run_unary(kc_device *d, const un_case *c, const float *x, size_t n, float *y,
                      float *in_place) {
    dbuf dx = dput(d, x, n), dy = dnan(d, n);
    kc_unary(d, c->op, c->a, dx.at, dy.at, n);
    dget(c->name, &dy, y);
    kc_unary(d, c->op, c->a, dx.at, dx.at, n);
    dget(c->name, &dx, in_place);
    dfree(&dx), dfree(&dy);
}

START_TEST(test_unary) {
    size_t sizes[] = {1, 7, 1001, big(100003, 4099)};
    kc_device *ref = kc_test_reference();
    for (size_t k = 0; k < N_UN; k++)
        for (int s = 0; s < 4; s++) {
            const un_case *c = &un_cases[k];
            size_t n = sizes[s];
            float *x = un_inputs(c, n, 30 + k), *want = host(n), *want2 = host(n);
            float *got = host(n), *got2 = host(n);
            run_unary(ref, c, x, n, want, want2);
            char what[96];
            snprintf(what, sizeof what, "unary %s, n %zu", c->name, n);
            compare(what, ref, want2, want, n, BITS); /* in place changes nothing */
            for (size_t i = 0; i < n; i++) {
                float h;
                if (un_host(c, x[i], &h))
                    expect(isnan(h) ? isnan(want[i])
                                    : want[i] == h && !signbit(want[i]) == !signbit(h),
                           "reference %s(%.9g) = %.9g, expected %.9g", c->name, x[i], want[i], h);
                else if (c->op == KC_UN_SQRT) /* the reference rounds once */
                    expect(want[i] == (float)sqrt((double)x[i]), "reference sqrt(%.9g) = %.9g",
                           x[i], want[i]);
            }
            /* exact ops keep the bits, zero signs included */
            tol t = c->rtol ? close_to(1e-30, c->rtol) : BITS;
            KC_FOR_EACH_TESTED_DEVICE(d) {
                run_unary(d, c, x, n, got, got2);
                compare(what, d, got, want, n, t);
                compare(what, d, got2, want, n, t);
            }
            free(x), free(want), free(want2), free(got), free(got2);
        }
}
END_TEST

/* ------------------------------------------------------------ binary */

typedef struct bin_shape {
    int ra, rb;
    int64_t a[4], b[4];
} bin_shape;

/* numel of a shape */
static size_t shape_numel(const int64_t *s, int r) {
    size_t n = 1;
    for (int k = 0; k < r; k++)
        n *= (size_t)s[k];
    return n;
}

/* For each element of the broadcast output (numpy rules on the shapes as
 * given, before any merging), the index it reads in a and in b. */
static size_t bcast_indices(const bin_shape *s, size_t **ia, size_t **ib) {
    int r = s->ra > s->rb ? s->ra : s->rb;
    int64_t da[4], db[4], dy[4];
    for (int k = 0; k < r; k++) {
        da[k] = k - (r - s->ra) >= 0 ? s->a[k - (r - s->ra)] : 1;
        db[k] = k - (r - s->rb) >= 0 ? s->b[k - (r - s->rb)] : 1;
        dy[k] = da[k] == 0 || db[k] == 0 ? 0 : da[k] > db[k] ? da[k] : db[k];
    }
    size_t n = shape_numel(dy, r);
    *ia = calloc(n ? n : 1, sizeof(size_t));
    *ib = calloc(n ? n : 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        size_t rest = i, oa = 0, ob = 0, sa = 1, sb = 1;
        for (int k = r - 1; k >= 0; k--) {
            size_t idx = rest % (size_t)dy[k];
            rest /= (size_t)dy[k];
            if (da[k] != 1) oa += idx * sa;
            if (db[k] != 1) ob += idx * sb;
            sa *= (size_t)da[k];
            sb *= (size_t)db[k];
        }
        (*ia)[i] = oa;
        (*ib)[i] = ob;
    }
    return n;
}

typedef struct bin_op {
    kc_binary_op op;
    const char *name;
    double rtol; /* 0: the same value on every backend */
} bin_op;

static const bin_op bin_ops[] = {
    {KC_BIN_ADD, "add", 0},    {KC_BIN_SUB, "sub", 0}, {KC_BIN_MUL, "mul", 0},
    {KC_BIN_DIV, "div", 1e-6}, {KC_BIN_MAX, "max", 0}, {KC_BIN_MIN, "min", 0},
    {KC_BIN_POW, "pow", 4e-6}, {KC_BIN_GT, "gt", 0},   {KC_BIN_GE, "ge", 0},
    {KC_BIN_LT, "lt", 0},      {KC_BIN_LE, "le", 0},   {KC_BIN_EQ, "eq", 0},
    {KC_BIN_NE, "ne", 0},
};
#define N_BIN (sizeof bin_ops / sizeof bin_ops[0])

/* The definitions of core/backend.h; 0 for the ops held to a tolerance. */
static int bin_host(kc_binary_op op, float a, float b, float *y) {
    switch (op) {
    case KC_BIN_ADD:
        *y = a + b;
        return 1;
    case KC_BIN_SUB:
        *y = a - b;
        return 1;
    case KC_BIN_MUL:
        *y = a * b;
        return 1;
    case KC_BIN_MAX:
        *y = isnan(a) || isnan(b) ? NAN : a >= b ? a : b;
        return 1;
    case KC_BIN_MIN:
        *y = isnan(a) || isnan(b) ? NAN : a <= b ? a : b;
        return 1;
    case KC_BIN_GT:
        *y = a > b;
        return 1;
    case KC_BIN_GE:
        *y = a >= b;
        return 1;
    case KC_BIN_LT:
        *y = a < b;
        return 1;
    case KC_BIN_LE:
        *y = a <= b;
        return 1;
    case KC_BIN_EQ:
        *y = a == b;
        return 1;
    case KC_BIN_NE:
        *y = a != b;
        return 1;
    default:
        return 0;
    }
}

/* Comparisons, max and min get values from a small set (ties everywhere) and
 * a few NaNs; pow a positive base; div a divisor away from zero. */
static void bin_inputs(kc_binary_op op, size_t na, size_t nb, float **a, float **b) {
    *a = random_host(na, -3, 3, 40);
    *b = random_host(nb, -3, 3, 41);
    if (op == KC_BIN_POW) {
        for (size_t i = 0; i < na; i++)
            (*a)[i] = 0.1f + fabsf((*a)[i]);
        for (size_t i = 0; i < nb; i++)
            (*b)[i] *= 0.7f;
    } else if (op == KC_BIN_DIV) {
        for (size_t i = 0; i < nb; i++)
            (*b)[i] = copysignf(0.25f + fabsf((*b)[i]), (*b)[i]);
    } else if (op >= KC_BIN_MAX && op != KC_BIN_POW) {
        static const float set[] = {-1, -0.5f, 0.5f, 1, 2};
        for (size_t i = 0; i < na; i++)
            (*a)[i] = set[kc_rng_below(5, 42, i, 5)];
        for (size_t i = 0; i < nb; i++)
            (*b)[i] = set[kc_rng_below(5, 43, i, 5)];
        if (na > 3) (*a)[1] = NAN;
        if (nb > 3) (*b)[2] = NAN;
    }
}

static void run_binary(kc_device *d, kc_binary_op op, const kc_bcast *g, const float *a, size_t na,
                       const float *b, size_t nb, size_t n, float *y, float *in_a, float *in_b) {
    dbuf da = dput(d, a, na), db = dput(d, b, nb), dy = dnan(d, n);
    ck_assert_int_eq(kc_binary(d, op, g, da.at, db.at, dy.at), KC_OK);
    dget("binary", &dy, y);
    /* in place where that operand is not broadcast */
    if (in_a) {
        kc_binary(d, op, g, da.at, db.at, da.at);
        dget("binary in place (a)", &da, in_a);
        kc_test_put(d, da.at, a, na * sizeof(float));
    }
    if (in_b) {
        kc_binary(d, op, g, da.at, db.at, db.at);
        dget("binary in place (b)", &db, in_b);
    }
    dfree(&da), dfree(&db), dfree(&dy);
}

START_TEST(test_binary) {
    size_t large = big(100003, 4099);
    const bin_shape shapes[] = {
        {1, 1, {1}, {1}},
        {1, 1, {7}, {7}},
        {1, 1, {1001}, {1001}},
        {1, 1, {(int64_t)large}, {(int64_t)large}},
        {2, 1, {37, 29}, {29}},       /* bias-like */
        {2, 2, {37, 29}, {37, 1}},    /* one value per row */
        {1, 2, {29}, {37, 29}},       /* a broadcast */
        {3, 3, {5, 1, 7}, {1, 6, 1}}, /* both broadcast */
        {4, 4, {3, 4, 5, 6}, {3, 1, 5, 1}},
        {4, 4, {2, 3, 1, 5}, {1, 3, 4, 1}},
        {0, 1, {0}, {1001}}, /* a scalar */
        {1, 0, {1001}, {0}},
        {2, 2, {1000, 3}, {1000, 3}}, /* merges into one axis */
        {3, 1, {4, 250, 3}, {3}},     /* a long broadcast */
        {2, 2, {0, 5}, {1, 5}},       /* empty */
    };
    kc_device *ref = kc_test_reference();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const bin_shape *sh = &shapes[s];
        kc_bcast g;
        size_t n;
        ck_assert_int_eq(kc_bcast_make(&g, sh->a, sh->ra, sh->b, sh->rb, &n), KC_OK);
        size_t *ia, *ib;
        ck_assert_uint_eq(bcast_indices(sh, &ia, &ib), n);
        size_t na = shape_numel(sh->a, sh->ra), nb = shape_numel(sh->b, sh->rb);
        int a_full = na == n && n > 0, b_full = nb == n && n > 0;
        for (size_t k = 0; k < N_BIN; k++) {
            const bin_op *o = &bin_ops[k];
            float *a, *b;
            bin_inputs(o->op, na, nb, &a, &b);
            float *want = host(n), *wa = host(n), *wb = host(n);
            float *got = host(n), *ga = host(n), *gb = host(n);
            char what[128];
            snprintf(what, sizeof what, "binary %s, shape case %zu", o->name, s);
            run_binary(ref, o->op, &g, a, na, b, nb, n, want, a_full ? wa : NULL,
                       b_full ? wb : NULL);
            for (size_t i = 0; i < n; i++) {
                float h;
                if (bin_host(o->op, a[ia[i]], b[ib[i]], &h))
                    expect(isnan(h) ? isnan(want[i]) : want[i] == h,
                           "reference %s: [%zu] %s(%.9g, %.9g) = %.9g, expected %.9g", what, i,
                           o->name, a[ia[i]], b[ib[i]], want[i], h);
            }
            if (a_full) compare(what, ref, wa, want, n, BITS);
            if (b_full) compare(what, ref, wb, want, n, BITS);
            tol t = o->rtol ? close_to(1e-30, o->rtol) : BITS;
            KC_FOR_EACH_TESTED_DEVICE(d) {
                run_binary(d, o->op, &g, a, na, b, nb, n, got, a_full ? ga : NULL,
                           b_full ? gb : NULL);
                compare(what, d, got, want, n, t);
                if (a_full) compare(what, d, ga, want, n, t);
                if (b_full) compare(what, d, gb, want, n, t);
            }
            free(a), free(b), free(want), free(wa), free(wb), free(got), free(ga), free(gb);
        }
        free(ia), free(ib);
    }
}
END_TEST

/* kc_binary_n is the same-shape case. */
START_TEST(test_binary_n) {
    size_t n = 1001;
    float *a = random_host(n, -2, 2, 44), *b = random_host(n, -2, 2, 45), *y = host(n);
    float *want = host(n);
    for (size_t i = 0; i < n; i++)
        want[i] = a[i] - b[i];
    KC_FOR_EACH_DEVICE(d) {
        dbuf da = dput(d, a, n), db = dput(d, b, n), dy = dnan(d, n);
        ck_assert_int_eq(kc_binary_n(d, KC_BIN_SUB, da.at, db.at, dy.at, n), KC_OK);
        ck_assert_int_eq(kc_binary_n(d, KC_BIN_SUB, da.at, db.at, dy.at, 0), KC_OK);
        dget("binary_n", &dy, y);
        compare("binary_n sub", d, y, want, n, SAME);
        dfree(&da), dfree(&db), dfree(&dy);
    }
    free(a), free(b), free(y), free(want);
}
END_TEST

/* ------------------------------------------------------------ select */

START_TEST(test_select) {
    size_t sizes[] = {1, 7, 1001, big(100003, 4099)};
    for (int s = 0; s < 4; s++) {
        size_t n = sizes[s];
        float *c = host(n), *a = random_host(n, -1, 1, 50), *b = random_host(n, 2, 3, 51);
        float *want = host(n), *y = host(n);
        static const float conds[] = {0.0f, 1.0f, -0.0f, 2.5f, NAN, -1e-30f};
        for (size_t i = 0; i < n; i++) {
            c[i] = conds[kc_rng_below(5, 52, i, 6)];
            want[i] = c[i] != 0 ? a[i] : b[i];
        }
        KC_FOR_EACH_DEVICE(d) {
            dbuf dc = dput(d, c, n), da = dput(d, a, n), db = dput(d, b, n), dy = dnan(d, n);
            ck_assert_int_eq(kc_select(d, dc.at, da.at, db.at, dy.at, n), KC_OK);
            dget("select", &dy, y);
            compare("select", d, y, want, n, SAME);
            /* y may be any input */
            kc_select(d, dc.at, da.at, db.at, da.at, n);
            dget("select into a", &da, y);
            compare("select into a", d, y, want, n, SAME);
            kc_test_put(d, da.at, a, n * sizeof(float));
            kc_select(d, dc.at, da.at, db.at, db.at, n);
            dget("select into b", &db, y);
            compare("select into b", d, y, want, n, SAME);
            kc_test_put(d, db.at, b, n * sizeof(float));
            kc_select(d, dc.at, da.at, db.at, dc.at, n);
            dget("select into cond", &dc, y);
            compare("select into cond", d, y, want, n, SAME);
            dfree(&dc), dfree(&da), dfree(&db), dfree(&dy);
        }
        free(c), free(a), free(b), free(want), free(y);
    }
}
END_TEST

/* ------------------------------------------------------------ reduce */

typedef struct red_op {
    kc_reduce_op op;
    const char *name;
} red_op;

static const red_op red_ops[] = {
    {KC_RED_SUM, "sum"},       {KC_RED_MEAN, "mean"},   {KC_RED_MAX, "max"},
    {KC_RED_MIN, "min"},       {KC_RED_SUMSQ, "sumsq"}, {KC_RED_SUMABS, "sumabs"},
    {KC_RED_ARGMAX, "argmax"},
};
#define N_RED (sizeof red_ops / sizeof red_ops[0])

static int red_sums(kc_reduce_op op) {
    return op == KC_RED_SUM || op == KC_RED_MEAN || op == KC_RED_SUMSQ || op == KC_RED_SUMABS;
}

/* The definition in double: R over l of x[o, l, i], and the magnitude that bounds its rounding. */
static void red_host(kc_reduce_op op, const kc_reduce_desc *g, const float *x, double *r,
                     double *mag) {
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < g->inner; i++) {
            double acc = op == KC_RED_MAX ? -INFINITY : op == KC_RED_MIN ? INFINITY : 0, m = 0;
            int64_t best = 0;
            for (int64_t l = 0; l < g->len; l++) {
                double v = x[(o * g->len + l) * g->inner + i];
                switch (op) {
                case KC_RED_SUM:
                case KC_RED_MEAN:
                    acc += v;
                    break;
                case KC_RED_SUMSQ:
                    acc += v * v;
                    break;
                case KC_RED_SUMABS:
                    acc += fabs(v);
                    break;
                case KC_RED_MAX:
                    acc = isnan(acc) || isnan(v) ? NAN : fmax(acc, v);
                    break;
                case KC_RED_MIN:
                    acc = isnan(acc) || isnan(v) ? NAN : fmin(acc, v);
                    break;
                case KC_RED_ARGMAX:
                    if (v > x[(o * g->len + best) * g->inner + i]) best = l;
                    break;
                default:
                    break;
                }
                m += op == KC_RED_SUMSQ ? v * v : fabs(v);
            }
            if (op == KC_RED_MEAN) acc /= (double)g->len, m /= g->len ? (double)g->len : 1.0;
            if (op == KC_RED_ARGMAX) acc = (double)best;
            if (!red_sums(op))
                m = isfinite(acc) ? fabs(acc) : 0; /* a selection: its own rounding */
            r[o * g->inner + i] = acc;
            mag[o * g->inner + i] = m;
        }
}

static void run_reduce(kc_device *d, kc_reduce_op op, const kc_reduce_desc *g, float alpha,
                       const float *x, float beta, const float *y0, float *y) {
    size_t nx = (size_t)(g->outer * g->len * g->inner), ny = (size_t)(g->outer * g->inner);
    dbuf dx = dput(d, x, nx), dy = beta == 0.0f ? dnan(d, ny) : dput(d, y0, ny);
    ck_assert_int_eq(kc_reduce(d, op, g, alpha, dx.at, beta, dy.at), KC_OK);
    dget("reduce", &dy, y);
    dfree(&dx), dfree(&dy);
}

START_TEST(test_reduce) {
    const kc_reduce_desc shapes[] = {
        {1, 1, 1},
        {1, 7, 1},
        {3, 1000, 1},
        {1, 1000, 5},
        {3, 0, 2}, /* len 0 */
        {4, 33, 7},
        {5, 1, 9},
        {7, 129, 2},
        {1, (int64_t)big(4099, 1031), 3},
        {2, (int64_t)big(100003, 20011), 1},
    };
    const float ab[][2] = {{1, 0}, {0.5f, 0}, {2, 0.5f}, {1, 1}};
    kc_device *ref = kc_test_reference();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const kc_reduce_desc *g = &shapes[s];
        size_t nx = (size_t)(g->outer * g->len * g->inner), ny = (size_t)(g->outer * g->inner);
        float *y0 = random_host(ny, -1, 1, 61), *want = host(ny), *got = host(ny);
        double *r = calloc(ny, sizeof *r), *mag = calloc(ny, sizeof *mag);
        for (size_t k = 0; k < N_RED; k++)
            for (int variant = 0; variant < 3; variant++) {
                /* continuous values; a small set with ties; one NaN per output (max, min) */
                kc_reduce_op op = red_ops[k].op;
                if (variant == 1 && red_sums(op)) continue;
                if (variant == 2 && op != KC_RED_MAX && op != KC_RED_MIN) continue;
                float *x = random_host(nx, -1, 1, 60 + s);
                if (variant >= 1)
                    for (size_t i = 0; i < nx; i++)
                        x[i] = (float)kc_rng_below(6, 62 + s, i, 4) - 1.5f;
                if (variant == 2)
                    for (size_t i = 0; i < ny; i++) {
                        int64_t o = (int64_t)i / g->inner, in = (int64_t)i % g->inner;
                        if (!g->len) break;
                        int64_t l = (int64_t)kc_rng_below(6, 63, i, (uint64_t)g->len);
                        x[(o * g->len + l) * g->inner + in] = NAN;
                    }
                red_host(op, g, x, r, mag);
                for (int v = 0; v < 4; v++) {
                    float alpha = ab[v][0], beta = ab[v][1];
                    char what[128];
                    snprintf(what, sizeof what, "reduce %s (%lld, %lld, %lld) alpha %g beta %g%s",
                             red_ops[k].name, (long long)g->outer, (long long)g->len,
                             (long long)g->inner, alpha, beta,
                             variant == 1   ? " ties"
                             : variant == 2 ? " NaN"
                                            : "");
                    run_reduce(ref, op, g, alpha, x, beta, y0, want);
                    double worst = 0;
                    for (size_t i = 0; i < ny; i++) {
                        double w = alpha * r[i] + (beta == 0.0f ? 0.0 : (double)beta * y0[i]);
                        double bound = 1e-6 * (fabs(alpha) * mag[i] + fabs(beta * y0[i])) + 1e-7;
                        worst = fmax(worst, bound);
                        if (!isfinite(w))
                            expect(isnan(w) ? isnan(want[i]) : want[i] == w,
                                   "reference %s: [%zu] = %g, expected %g", what, i, want[i], w);
                        else
                            expect(fabs(want[i] - w) <= bound,
                                   "reference %s: [%zu] = %.9g, want %.9g", what, i, want[i], w);
                    }
                    tol t = red_sums(op)              ? close_to(2 * worst, 1e-6)
                            : alpha == 1 && beta == 0 ? SAME
                                                      : close_to(1e-7, 1e-6);
                    KC_FOR_EACH_TESTED_DEVICE(d) {
                        run_reduce(d, op, g, alpha, x, beta, y0, got);
                        /* the host backends sum in the same lanes */
                        compare(what, d, got, want, ny, red_sums(op) ? pinned(d, t) : t);
                    }
                }
                free(x);
            }
        free(y0), free(want), free(got), free(r), free(mag);
    }
}
END_TEST

/* -------------------------------------------------------------- gemm */

typedef struct gemm_args {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
    size_t na, nb, nc;
} gemm_args;

static gemm_args gemm_shape(int ta, int tb, int m, int n, int k, float alpha, float beta) {
    gemm_args g = {.ta = ta, .tb = tb, .m = m, .n = n, .k = k, .alpha = alpha, .beta = beta};
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    g.lda = ac + 3, g.ldb = bc + 1, g.ldc = n + 2;
    g.na = (size_t)ar * g.lda, g.nb = (size_t)br * g.ldb, g.nc = (size_t)m * g.ldc;
    return g;
}

static void run_gemm(kc_device *d, const gemm_args *g, const float *a, const float *b,
                     const float *c0, float *c) {
    dbuf da = dput(d, a, g->na), db = dput(d, b, g->nb), dc = dput(d, c0, g->nc);
    ck_assert_int_eq(kc_gemm(d, g->ta, g->tb, g->m, g->n, g->k, g->alpha, da.at, g->lda, db.at,
                             g->ldb, g->beta, dc.at, g->ldc),
                     KC_OK);
    dget("gemm", &dc, c);
    dfree(&da), dfree(&db), dfree(&dc);
}

static void gemm_case(int ta, int tb, int m, int n, int k, float alpha, float beta) {
    gemm_args g = gemm_shape(ta, tb, m, n, k, alpha, beta);
    float *a = random_host(g.na, -1, 1, 20), *b = random_host(g.nb, -1, 1, 21);
    float *c0 = random_host(g.nc, -1, 1, 22);
    if (beta == 0.0f)
        for (size_t i = 0; i < g.nc; i++)
            c0[i] = NAN; /* must not be read */
    float *want = host(g.nc), *got = host(g.nc);
    run_gemm(kc_test_reference(), &g, a, b, c0, want);
    /* spot-check the reference against a direct sum */
    double s = 0;
    for (int p = 0; p < k; p++)
        s += (double)(ta ? a[(size_t)p * g.lda + (m - 1)] : a[(size_t)(m - 1) * g.lda + p]) *
             (tb ? b[(size_t)(n - 1) * g.ldb + p] : b[(size_t)p * g.ldb + (n - 1)]);
    double w = alpha * s + (beta == 0.0f ? 0.0 : beta * c0[(size_t)(m - 1) * g.ldc + n - 1]);
    ck_assert_close(want[(size_t)(m - 1) * g.ldc + n - 1], w, 1e-5, 1e-5);
    double scale = max_abs(want, g.nc);
    char what[96];
    snprintf(what, sizeof what, "gemm %c%c m%d n%d k%d alpha %g beta %g", ta ? 'T' : 'N',
             tb ? 'T' : 'N', m, n, k, alpha, beta);
    KC_FOR_EACH_TESTED_DEVICE(d) {
        run_gemm(d, &g, a, b, c0, got);
        for (int i = 0; i < m; i++) {
            compare(what, d, got + (size_t)i * g.ldc, want + (size_t)i * g.ldc, (size_t)n,
                    close_to(1e-5 * scale, 1e-4));
            /* the padding between rows stays untouched */
            for (int j = n; j < g.ldc && i < m - 1; j++)
                expect(!memcmp(&got[(size_t)i * g.ldc + j], &c0[(size_t)i * g.ldc + j], 4),
                       "%s on %s wrote C[%d][%d] beyond n", what, d->name, i, j);
        }
    }
    free(a), free(b), free(c0), free(want), free(got);
}

START_TEST(test_gemm) {
    int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {128, 64, 300}, {5, 200, 9}};
    for (int s = 0; s < 5; s++)
        for (int t = 0; t < 4; t++) {
            gemm_case(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f);
            gemm_case(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], 0.5f, 0.25f);
        }
}
END_TEST

/* Batched products: A_i = a + i sa floats, likewise B_i and C_i. */
typedef struct batched_args {
    gemm_args g;
    size_t sa, sb, sc, na, nb, nc;
    int batch;
} batched_args;

static batched_args batched_shape(int ta, int tb, int m, int n, int k, float alpha, float beta,
                                  int batch) {
    batched_args b = {.g = gemm_shape(ta, tb, m, n, k, alpha, beta), .batch = batch};
    b.sa = b.g.na + 5, b.sb = b.g.nb + 2, b.sc = b.g.nc + 3;
    b.na = b.sa * (size_t)batch, b.nb = b.sb * (size_t)batch, b.nc = b.sc * (size_t)batch;
    return b;
}

static void run_gemm_batched(kc_device *d, const batched_args *b, const float *x, const float *w,
                             const float *c0, float *c, int composed) {
    const gemm_args *g = &b->g;
    dbuf da = dput(d, x, b->na), db = dput(d, w, b->nb), dc = dput(d, c0, b->nc);
    int rc = composed ? kc_fallback_gemm_batched(d, g->ta, g->tb, g->m, g->n, g->k, g->alpha, da.at,
                                                 g->lda, b->sa, db.at, g->ldb, b->sb, g->beta,
                                                 dc.at, g->ldc, b->sc, b->batch)
                      : kc_gemm_batched(d, g->ta, g->tb, g->m, g->n, g->k, g->alpha, da.at, g->lda,
                                        b->sa, db.at, g->ldb, b->sb, g->beta, dc.at, g->ldc, b->sc,
                                        b->batch);
    ck_assert_int_eq(rc, KC_OK);
    dget(composed ? "gemm_batched composed" : "gemm_batched", &dc, c);
    dfree(&da), dfree(&db), dfree(&dc);
}

static const int batched_cases[][6] = {
    /* ta, tb, m, n, k, batch */
    {0, 0, 1, 1, 1, 1},  {0, 1, 7, 5, 3, 4},    {1, 0, 12, 9, 33, 3},
    {1, 1, 3, 17, 6, 7}, {0, 0, 16, 16, 40, 2},
};

START_TEST(test_gemm_batched) {
    for (size_t k = 0; k < sizeof batched_cases / sizeof batched_cases[0]; k++)
        for (int ab = 0; ab < 2; ab++) {
            const int *c = batched_cases[k];
            batched_args b = batched_shape(c[0], c[1], c[2], c[3], c[4], ab ? 0.5f : 1.0f,
                                           ab ? 0.25f : 0.0f, c[5]);
            float *x = random_host(b.na, -1, 1, 23), *w = random_host(b.nb, -1, 1, 24);
            float *c0 = ab ? random_host(b.nc, -1, 1, 25) : nan_host(b.nc);
            float *want = host(b.nc), *got = host(b.nc);
            run_gemm_batched(kc_test_reference(), &b, x, w, c0, want, 0);
            /* each product is one gemm: the reference against its own gemm */
            for (int i = 0; i < b.batch; i++) {
                float *one = host(b.g.nc);
                run_gemm(kc_test_reference(), &b.g, x + i * b.sa, w + i * b.sb, c0 + i * b.sc, one);
                compare("gemm_batched, one product", kc_test_reference(), want + i * b.sc, one,
                        b.g.nc, close_to(1e-6, 1e-5));
                free(one);
            }
            double scale = max_abs(want, b.nc);
            KC_FOR_EACH_TESTED_DEVICE(d) {
                run_gemm_batched(d, &b, x, w, c0, got, 0);
                compare("gemm_batched", d, got, want, b.nc, close_to(1e-5 * scale, 1e-4));
            }
            free(x), free(w), free(c0), free(want), free(got);
        }
}
END_TEST

/* -------------------------------------------------------------- bias */

static void run_bias(kc_device *d, const float *y, const float *b, const float *db0, int rows,
                     int cols, float *ys, float *acc, float *fresh, float *half) {
    size_t n = (size_t)rows * cols;
    dbuf dyv = dput(d, y, n), dbv = dput(d, b, (size_t)cols);
    dbuf dacc = dput(d, db0, (size_t)cols), dfr = dnan(d, (size_t)cols);
    dbuf dhalf = dput(d, db0, (size_t)cols);
    kc_bias_grad(d, dacc.at, dyv.at, rows, cols, 1.0f); /* accumulates */
    kc_bias_grad(d, dfr.at, dyv.at, rows, cols, 0.0f);  /* overwrites, never reads */
    kc_bias_grad(d, dhalf.at, dyv.at, rows, cols, 0.5f);
    kc_bias_add(d, dyv.at, dbv.at, rows, cols);
    dget("bias_add", &dyv, ys);
    dget("bias_grad beta 1", &dacc, acc);
    dget("bias_grad beta 0", &dfr, fresh);
    dget("bias_grad beta 0.5", &dhalf, half);
    dfree(&dyv), dfree(&dbv), dfree(&dacc), dfree(&dfr), dfree(&dhalf);
}

START_TEST(test_bias) {
    int shapes[][2] = {{1, 1}, {7, 10}, {300, 129}, {(int)big(21632, 2163), 32}, {3, 1001}};
    kc_device *ref = kc_test_reference();
    for (int s = 0; s < 5; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)rows * cols;
        float *y = random_host(n, -1, 1, 30), *b = random_host((size_t)cols, -1, 1, 31);
        float *db0 = random_host((size_t)cols, -1, 1, 32);
        float *ys[2], *acc[2], *fresh[2], *half[2];
        for (int e = 0; e < 2; e++)
            ys[e] = host(n), acc[e] = host((size_t)cols), fresh[e] = host((size_t)cols),
            half[e] = host((size_t)cols);
        run_bias(ref, y, b, db0, rows, cols, ys[0], acc[0], fresh[0], half[0]);
        for (int j = 0; j < cols; j++) {
            double s2 = 0;
            for (int r = 0; r < rows; r++)
                s2 += y[(size_t)r * cols + j];
            ck_assert_close(fresh[0][j], s2, 1e-6, 1e-6);
            ck_assert_close(acc[0][j], s2 + db0[j], 1e-6, 1e-6);
            ck_assert_close(half[0][j], s2 + 0.5 * db0[j], 1e-6, 1e-6);
        }
        for (size_t i = 0; i < n; i++)
            expect(ys[0][i] == y[i] + b[i % (size_t)cols], "reference bias_add[%zu]", i);
        KC_FOR_EACH_TESTED_DEVICE(d) {
            run_bias(d, y, b, db0, rows, cols, ys[1], acc[1], fresh[1], half[1]);
            compare("bias_add", d, ys[1], ys[0], n, SAME);
            compare("bias_grad beta 1", d, acc[1], acc[0], (size_t)cols, close_to(1e-6, 1e-6));
            compare("bias_grad beta 0", d, fresh[1], fresh[0], (size_t)cols, close_to(1e-6, 1e-6));
            compare("bias_grad beta 0.5", d, half[1], half[0], (size_t)cols, close_to(1e-6, 1e-6));
        }
        free(y), free(b), free(db0);
        for (int e = 0; e < 2; e++)
            free(ys[e]), free(acc[e]), free(fresh[e]), free(half[e]);
    }
    /* without rows: db = beta db */
    const int cols = 7;
    float *db0 = random_host(cols, -1, 1, 33), got[7], want[7];
    KC_FOR_EACH_DEVICE(d) {
        const float betas[] = {0.0f, 1.0f, 0.5f};
        for (int k = 0; k < 3; k++) {
            dbuf g = dput(d, db0, cols);
            ck_assert_int_eq(kc_bias_grad(d, g.at, KC_BUF_NULL, 0, cols, betas[k]), KC_OK);
            dget("bias_grad without rows", &g, got);
            dfree(&g);
            for (int j = 0; j < cols; j++)
                want[j] = betas[k] == 0.0f ? 0.0f : betas[k] * db0[j];
            compare("bias_grad without rows", d, got, want, cols, SAME);
        }
    }
    free(db0);
}
END_TEST

/* ------------------------------------------------------- activations */

typedef struct act_case {
    kc_act act;
    float alpha;
    const char *name;
} act_case;

static const act_case act_cases[] = {
    {KC_ACT_LINEAR, 0, "linear"},
    {KC_ACT_RELU, 0, "relu"},
    {KC_ACT_SIGMOID, 0, "sigmoid"},
    {KC_ACT_TANH, 0, "tanh"},
    {KC_ACT_ELU, 1.0f, "elu"},
    {KC_ACT_ELU, 0.5f, "elu(0.5)"},
    {KC_ACT_SELU, 0, "selu"},
    {KC_ACT_SOFTPLUS, 0, "softplus"},
    {KC_ACT_SOFTSIGN, 0, "softsign"},
    {KC_ACT_SWISH, 0, "swish"},
    {KC_ACT_GELU, 0, "gelu"},
    {KC_ACT_LEAKY_RELU, 0.2f, "leaky_relu"},
    {KC_ACT_LEAKY_RELU, 0.01f, "leaky_relu(0.01)"},
    {KC_ACT_HARD_SIGMOID, 0, "hard_sigmoid"},
    {KC_ACT_EXPONENTIAL, 0, "exponential"},
    {KC_ACT_RELU6, 0, "relu6"},
    {KC_ACT_HARD_SILU, 0, "hard_silu"},
    {KC_ACT_MISH, 0, "mish"},
};
#define N_ACT (sizeof act_cases / sizeof act_cases[0])

/* Inputs over [-8, 8] plus far tails, where naive sigmoid/softplus overflow. */
static float *act_inputs(size_t n, uint64_t stream) {
    float *x = random_host(n, -8, 8, stream);
    const float tails[] = {-100, -60, -30, -3, 0, 3, 30, 60, 80};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0] && i < n; i++)
        x[i] = tails[i];
    return x;
}

static void run_act_forward(kc_device *d, kc_act act, float alpha, const float *x, float *y,
                            size_t n) {
    dbuf dx = dput(d, x, n), dy = dnan(d, n);
    ck_assert_int_eq(kc_act_forward(d, act, alpha, dx.at, dy.at, n), KC_OK);
    dget("act_forward", &dy, y);
    dfree(&dx), dfree(&dy);
}

static void run_act_backward(kc_device *d, kc_act act, float alpha, const float *x, const float *y,
                             const float *dy, float *dx, size_t n) {
    dbuf d_x = dput(d, x, n), d_y = dput(d, y, n), d_dy = dput(d, dy, n), d_dx = dnan(d, n);
    ck_assert_int_eq(kc_act_backward(d, act, alpha, d_x.at, d_y.at, d_dy.at, d_dx.at, n), KC_OK);
    dget("act_backward", &d_dx, dx);
    dfree(&d_x), dfree(&d_y), dfree(&d_dy), dfree(&d_dx);
}

START_TEST(test_activations) {
    size_t n = big(70001, 7001);
    float *x = act_inputs(n, 40), *dy = random_host(n, -1, 1, 41);
    kc_device *ref = kc_test_reference();
    for (size_t a = 0; a < N_ACT; a++) {
        const act_case *ac = &act_cases[a];
        float *y[2], *dx[2];
        y[0] = host(n), y[1] = host(n), dx[0] = host(n), dx[1] = host(n);
        run_act_forward(ref, ac->act, ac->alpha, x, y[0], n);
        /* every backward pass sees the same forward output */
        run_act_backward(ref, ac->act, ac->alpha, x, y[0], dy, dx[0], n);
        for (size_t i = 0; i < n; i++) {
            int inf_ok = ac->act == KC_ACT_EXPONENTIAL && x[i] > 80;
            expect(isfinite(y[0][i]) || inf_ok, "%s(%g) not finite", ac->name, x[i]);
        }
        char what[64], whatb[64];
        snprintf(what, sizeof what, "%s forward", ac->name);
        snprintf(whatb, sizeof whatb, "%s backward", ac->name);
        KC_FOR_EACH_TESTED_DEVICE(d) {
            run_act_forward(d, ac->act, ac->alpha, x, y[1], n);
            run_act_backward(d, ac->act, ac->alpha, x, y[0], dy, dx[1], n);
            compare(what, d, y[1], y[0], n, close_to(1e-6, 2e-6));
            compare(whatb, d, dx[1], dx[0], n, close_to(1e-6, 4e-6));
        }
        for (int e = 0; e < 2; e++)
            free(y[e]), free(dx[e]);
    }
    free(x), free(dy);
}
END_TEST

/* ----------------------------------------------------------- softmax */

static void run_softmax_forward(kc_device *d, const float *x, float *y, int rows, int cols,
                                int composed) {
    size_t n = (size_t)rows * cols;
    dbuf dx = dput(d, x, n), dy = dnan(d, n);
    ck_assert_int_eq(composed ? kc_fallback_softmax_forward(d, dx.at, dy.at, rows, cols)
                              : kc_softmax_forward(d, dx.at, dy.at, rows, cols),
                     KC_OK);
    dget("softmax_forward", &dy, y);
    dfree(&dx), dfree(&dy);
}

static void run_softmax_backward(kc_device *d, const float *y, const float *dy, float *dx, int rows,
                                 int cols, int composed) {
    size_t n = (size_t)rows * cols;
    dbuf d_y = dput(d, y, n), d_dy = dput(d, dy, n), d_dx = dnan(d, n);
    ck_assert_int_eq(composed
                         ? kc_fallback_softmax_backward(d, d_y.at, d_dy.at, d_dx.at, rows, cols)
                         : kc_softmax_backward(d, d_y.at, d_dy.at, d_dx.at, rows, cols),
                     KC_OK);
    dget("softmax_backward", &d_dx, dx);
    dfree(&d_y), dfree(&d_dy), dfree(&d_dx);
}

static const int softmax_shapes[][2] = {{1, 1}, {1, 10}, {32, 10}, {7, 1000}, {4096, 17}, {3, 1}};

START_TEST(test_softmax) {
    kc_device *ref = kc_test_reference();
    for (size_t s = 0; s < sizeof softmax_shapes / sizeof softmax_shapes[0]; s++) {
        int rows = softmax_shapes[s][0], cols = softmax_shapes[s][1];
        size_t n = (size_t)rows * cols;
        float *x = random_host(n, -10, 10, 50), *dy = random_host(n, -1, 1, 51);
        x[0] = 500.0f; /* exp would overflow without the row max */
        float *y[2] = {host(n), host(n)}, *dx[2] = {host(n), host(n)};
        run_softmax_forward(ref, x, y[0], rows, cols, 0);
        run_softmax_backward(ref, y[0], dy, dx[0], rows, cols, 0);
        for (int r = 0; r < rows; r++) {
            double sum = 0;
            for (int j = 0; j < cols; j++)
                sum += y[0][(size_t)r * cols + j];
            ck_assert_close(sum, 1.0, 1e-6, 0);
        }
        KC_FOR_EACH_TESTED_DEVICE(d) {
            run_softmax_forward(d, x, y[1], rows, cols, 0);
            run_softmax_backward(d, y[0], dy, dx[1], rows, cols, 0);
            compare("softmax forward", d, y[1], y[0], n, close_to(1e-7, 2e-6));
            compare("softmax backward", d, dx[1], dx[0], n, close_to(1e-7, 1e-5));
        }
        free(x), free(dy);
        for (int e = 0; e < 2; e++)
            free(y[e]), free(dx[e]);
    }
}
END_TEST

/* -------------------------------------------------------------- conv */

typedef struct pool_case {
    int n, h, w, c, ph, pw, sh, sw, same;
} pool_case;

static kc_pool2d_desc pool_desc(pool_case k) {
    kc_pool2d_desc d = {
        .n = k.n, .h = k.h, .w = k.w, .c = k.c, .ph = k.ph, .pw = k.pw, .sh = k.sh, .sw = k.sw};
    keras_geometry(k.h, k.ph, k.sh, k.same, &d.oh, &d.pad_t);
    keras_geometry(k.w, k.pw, k.sw, k.same, &d.ow, &d.pad_l);
    return d;
}

static size_t conv_x_size(const kc_conv2d_desc *d) {
    return (size_t)d->n * d->h * d->w * d->c;
}
static size_t conv_y_size(const kc_conv2d_desc *d) {
    return (size_t)d->n * d->oh * d->ow * d->oc;
}
static size_t conv_w_size(const kc_conv2d_desc *d) {
    return (size_t)d->kh * d->kw * d->c * d->oc;
}
static size_t pool_x_size(const kc_pool2d_desc *d) {
    return (size_t)d->n * d->h * d->w * d->c;
}
static size_t pool_y_size(const kc_pool2d_desc *d) {
    return (size_t)d->n * d->oh * d->ow * d->c;
}

/* While set, the run_* helpers of conv, pooling and the norm projection call
 * core/ops.c's compositions (kc_fallback_*) instead of the ops. */
static int composed_ops;

static void run_conv_forward(kc_device *d, const kc_conv2d_desc *g, const float *x, const float *w,
                             float *y) {
    dbuf dx = dput(d, x, conv_x_size(g)), dw = dput(d, w, conv_w_size(g));
    dbuf dy = dnan(d, conv_y_size(g));
    kc_buf ws = conv_ws(d, g);
    int rc = composed_ops ? kc_fallback_conv2d_forward(d, g, dx.at, dw.at, dy.at, ws)
                          : kc_conv2d_forward(d, g, dx.at, dw.at, dy.at, ws);
    ck_assert_int_eq(rc, KC_OK);
    dget("conv2d_forward", &dy, y);
    dfree(&dx), dfree(&dw), dfree(&dy);
    kc_free(d, &ws);
}

/* dx starts as NaN on the device: the op must overwrite it. */
static void run_conv_backward_data(kc_device *d, const kc_conv2d_desc *g, const float *dy,
                                   const float *w, float *dx) {
    dbuf d_dy = dput(d, dy, conv_y_size(g)), d_w = dput(d, w, conv_w_size(g));
    dbuf d_dx = dnan(d, conv_x_size(g));
    kc_buf ws = conv_ws(d, g);
    int rc = composed_ops ? kc_fallback_conv2d_backward_data(d, g, d_dy.at, d_w.at, d_dx.at, ws)
                          : kc_conv2d_backward_data(d, g, d_dy.at, d_w.at, d_dx.at, ws);
    ck_assert_int_eq(rc, KC_OK);
    dget("conv2d_backward_data", &d_dx, dx);
    dfree(&d_dy), dfree(&d_w), dfree(&d_dx);
    kc_free(d, &ws);
}

/* dw holds the initial value on entry (beta dw + gradient). */
static void run_conv_backward_filter(kc_device *d, const kc_conv2d_desc *g, const float *x,
                                     const float *dy, float *dw, float beta) {
    dbuf d_x = dput(d, x, conv_x_size(g)), d_dy = dput(d, dy, conv_y_size(g));
    dbuf d_dw = dput(d, dw, conv_w_size(g));
    kc_buf ws = conv_ws(d, g);
    int rc = composed_ops
                 ? kc_fallback_conv2d_backward_filter(d, g, d_x.at, d_dy.at, d_dw.at, beta, ws)
                 : kc_conv2d_backward_filter(d, g, d_x.at, d_dy.at, d_dw.at, beta, ws);
    ck_assert_int_eq(rc, KC_OK);
    dget("conv2d_backward_filter", &d_dw, dw);
    dfree(&d_x), dfree(&d_dy), dfree(&d_dw);
    kc_free(d, &ws);
}

static const conv_case conv_cases[] = {
    {1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 0},    /* smallest, batch 1 */
    {3, 7, 9, 3, 3, 2, 5, 2, 1, 1, 1, 1},    /* non-square kernel, stride 2, asymmetric same */
    {2, 11, 10, 4, 3, 3, 6, 1, 1, 2, 2, 1},  /* dilation 2 */
    {2, 8, 8, 2, 1, 1, 3, 1, 1, 1, 1, 0},    /* 1x1: the input is the patch matrix */
    {2, 9, 9, 3, 1, 1, 4, 2, 2, 1, 1, 1},    /* 1x1 with stride 2 */
    {5, 13, 13, 8, 3, 3, 16, 1, 1, 1, 1, 0}, /* seed CNN's second conv, smaller */
    {2, 10, 9, 3, 5, 3, 4, 2, 3, 2, 1, 1},   /* mixed strides and dilation, odd sizes */
    {1, 6, 5, 2, 4, 4, 3, 3, 2, 1, 1, 1},    /* even kernel: padding 1 before, 2 after */
    {2, 5, 5, 2, 3, 3, 2, 1, 1, 3, 3, 1},    /* dilation 3: windows mostly padding */
    {3, 28, 28, 1, 3, 3, 8, 1, 1, 1, 1, 0},  /* seed CNN's first conv, smaller */
    {4, 64, 64, 16, 3, 3, 8, 1, 1, 1, 1, 1}, /* patch matrix beyond one workspace chunk */
};
#define N_CONV (sizeof conv_cases / sizeof conv_cases[0])

static const pool_case pool_cases[] = {
    {2, 8, 8, 3, 2, 2, 2, 2, 0},    /* the usual 2x2 */
    {3, 7, 9, 4, 3, 3, 2, 2, 1},    /* same: windows overhang bottom/right */
    {1, 5, 6, 2, 2, 3, 1, 2, 1},    /* non-square pool, mixed strides */
    {2, 6, 5, 3, 3, 3, 1, 1, 1},    /* stride 1 same: padding on both sides */
    {2, 9, 9, 5, 3, 2, 3, 1, 0},    /* valid with leftover rows */
    {2, 26, 26, 32, 2, 2, 2, 2, 0}, /* seed CNN's pool, batch 2 */
    {1, 3, 3, 1, 4, 4, 1, 1, 1},    /* pool larger than the image */
};
#define N_POOL (sizeof pool_cases / sizeof pool_cases[0])

/* One device's four results: forward, backward data, backward filter with
 * beta 1 (from w0) and with beta 0 (from NaN, which it must not read). */
static void conv_results(kc_device *dev, const kc_conv2d_desc *d, const float *x, const float *w,
                         const float *g, const float *w0, float *y, float *dx, float *dw_acc,
                         float *dw_new) {
    size_t nw = conv_w_size(d);
    memcpy(dw_acc, w0, nw * sizeof(float));
    for (size_t i = 0; i < nw; i++)
        dw_new[i] = NAN;
    run_conv_forward(dev, d, x, w, y);
    run_conv_backward_data(dev, d, g, w, dx);
    run_conv_backward_filter(dev, d, x, g, dw_acc, 1.0f);
    run_conv_backward_filter(dev, d, x, g, dw_new, 0.0f);
}

static void conv_conformance(const conv_case *cc) {
    kc_conv2d_desc d = conv_desc(*cc);
    size_t nx = conv_x_size(&d), ny = conv_y_size(&d), nw = conv_w_size(&d);
    float *x = random_host(nx, -1, 1, 60), *w = random_host(nw, -1, 1, 61);
    float *g = random_host(ny, -1, 1, 62), *w0 = random_host(nw, -1, 1, 63);
    float *y[2], *dx[2], *dw_acc[2], *dw_new[2];
    for (int e = 0; e < 2; e++)
        y[e] = host(ny), dx[e] = host(nx), dw_acc[e] = host(nw), dw_new[e] = host(nw);
    conv_results(kc_test_reference(), &d, x, w, g, w0, y[0], dx[0], dw_acc[0], dw_new[0]);
    for (size_t i = 0; i < nw; i++) /* beta 1 adds exactly the beta 0 gradient */
        expect(fabs(dw_acc[0][i] - (w0[i] + dw_new[0][i])) <= 1e-5 * (1 + fabs(dw_acc[0][i])),
               "dw beta 1 [%zu] = %g, beta 0 + dw0 = %g", i, dw_acc[0][i], w0[i] + dw_new[0][i]);
    char what[96], part[160];
    snprintf(what, sizeof what, "conv %dx%dx%d k%dx%d s%d,%d d%d,%d", d.h, d.w, d.c, d.kh, d.kw,
             d.sh, d.sw, d.dh, d.dw);
    KC_FOR_EACH_TESTED_DEVICE(dev) {
        conv_results(dev, &d, x, w, g, w0, y[1], dx[1], dw_acc[1], dw_new[1]);
        snprintf(part, sizeof part, "%s forward", what);
        compare(part, dev, y[1], y[0], ny, close_to(1e-5 * max_abs(y[0], ny), 1e-4));
        snprintf(part, sizeof part, "%s backward data", what);
        compare(part, dev, dx[1], dx[0], nx, close_to(1e-5 * max_abs(dx[0], nx), 1e-4));
        snprintf(part, sizeof part, "%s backward filter (beta 1)", what);
        compare(part, dev, dw_acc[1], dw_acc[0], nw, close_to(1e-5 * max_abs(dw_acc[0], nw), 1e-4));
        snprintf(part, sizeof part, "%s backward filter (beta 0)", what);
        compare(part, dev, dw_new[1], dw_new[0], nw, close_to(1e-5 * max_abs(dw_new[0], nw), 1e-4));
    }
    free(x), free(w), free(g), free(w0);
    for (int e = 0; e < 2; e++)
        free(y[e]), free(dx[e]), free(dw_acc[e]), free(dw_new[e]);
}

START_TEST(test_conv2d) {
    for (size_t i = 0; i < N_CONV; i++)
        conv_conformance(&conv_cases[i]);
}
END_TEST

/* The cpu backend allocates its own scratch when given none. */
START_TEST(test_conv2d_without_workspace) {
    kc_device *cpu = kc_test_device_named("cpu", 0);
    ck_assert_ptr_nonnull(cpu);
    kc_conv2d_desc d = conv_desc(conv_cases[1]);
    size_t nx = conv_x_size(&d), ny = conv_y_size(&d), nw = conv_w_size(&d);
    ck_assert_uint_gt(kc_conv2d_workspace(cpu, &d), 0);
    float *x = random_host(nx, -1, 1, 64), *w = random_host(nw, -1, 1, 65);
    float *want = host(ny), *got = host(ny);
    run_conv_forward(kc_test_reference(), &d, x, w, want);
    dbuf dx = dput(cpu, x, nx), dw = dput(cpu, w, nw), dy = dnan(cpu, ny);
    ck_assert_int_eq(kc_conv2d_forward(cpu, &d, dx.at, dw.at, dy.at, KC_BUF_NULL), KC_OK);
    dget("conv forward, no workspace", &dy, got);
    compare("conv forward, no workspace", cpu, got, want, ny,
            close_to(1e-5 * max_abs(want, ny), 1e-4));
    dfree(&dx), dfree(&dw), dfree(&dy);
    free(x), free(w), free(want), free(got);
}
END_TEST

/* ----------------------------------------------------------- pooling */

static void run_maxpool_forward(kc_device *d, const kc_pool2d_desc *g, const float *x, float *y,
                                int32_t *argmax) {
    size_t ny = pool_y_size(g);
    dbuf d_x = dput(d, x, pool_x_size(g)), d_y = dnan(d, ny), d_arg = dput(d, NULL, ny);
    int rc = composed_ops ? kc_fallback_maxpool2d_forward(d, g, d_x.at, d_y.at, d_arg.at)
                          : kc_maxpool2d_forward(d, g, d_x.at, d_y.at, d_arg.at);
    ck_assert_int_eq(rc, KC_OK);
    dget("maxpool2d_forward", &d_y, y);
    dget("maxpool2d_forward argmax", &d_arg, argmax);
    dfree(&d_x), dfree(&d_y), dfree(&d_arg);
}

static void run_maxpool_backward(kc_device *d, const kc_pool2d_desc *g, const float *dy,
                                 const int32_t *argmax, float *dx) {
    size_t ny = pool_y_size(g), nx = pool_x_size(g);
    dbuf d_dy = dput(d, dy, ny), d_dx = dnan(d, nx), d_arg = dput_i32(d, argmax, ny);
    int rc = composed_ops ? kc_fallback_maxpool2d_backward(d, g, d_dy.at, d_arg.at, d_dx.at)
                          : kc_maxpool2d_backward(d, g, d_dy.at, d_arg.at, d_dx.at);
    ck_assert_int_eq(rc, KC_OK);
    dget("maxpool2d_backward", &d_dx, dx);
    dfree(&d_dy), dfree(&d_dx), dfree(&d_arg);
}

static void run_avgpool_forward(kc_device *d, const kc_pool2d_desc *g, const float *x, float *y) {
    dbuf d_x = dput(d, x, pool_x_size(g)), d_y = dnan(d, pool_y_size(g));
    int rc = composed_ops ? kc_fallback_avgpool2d_forward(d, g, d_x.at, d_y.at)
                          : kc_avgpool2d_forward(d, g, d_x.at, d_y.at);
    ck_assert_int_eq(rc, KC_OK);
    dget("avgpool2d_forward", &d_y, y);
    dfree(&d_x), dfree(&d_y);
}

static void run_avgpool_backward(kc_device *d, const kc_pool2d_desc *g, const float *dy,
                                 float *dx) {
    dbuf d_dy = dput(d, dy, pool_y_size(g)), d_dx = dnan(d, pool_x_size(g));
    int rc = composed_ops ? kc_fallback_avgpool2d_backward(d, g, d_dy.at, d_dx.at)
                          : kc_avgpool2d_backward(d, g, d_dy.at, d_dx.at);
    ck_assert_int_eq(rc, KC_OK);
    dget("avgpool2d_backward", &d_dx, dx);
    dfree(&d_dy), dfree(&d_dx);
}

/* Values from a random permutation, so maxima are unique; or from {0, 1, 2},
 * so ties are everywhere and the tie rule must agree. */
static float *pool_inputs(size_t n, int ties, uint64_t stream) {
    float *x = host(n);
    for (size_t i = 0; i < n; i++)
        x[i] = ties ? (float)kc_rng_below(7, stream, i, 3) : (float)i * 0.05f;
    if (!ties)
        for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
            size_t j = kc_rng_below(7, stream, i, i);
            float t = x[i - 1];
            x[i - 1] = x[j], x[j] = t;
        }
    return x;
}

static void pool_conformance(const pool_case *pc, int ties) {
    kc_pool2d_desc d = pool_desc(*pc);
    size_t nx = pool_x_size(&d), ny = pool_y_size(&d);
    float *x = pool_inputs(nx, ties, 70), *g = random_host(ny, -1, 1, 71);
    float *y[2], *dx[2], *ay[2], *adx[2];
    int32_t *arg[2];
    for (int e = 0; e < 2; e++) {
        y[e] = host(ny), dx[e] = host(nx), ay[e] = host(ny), adx[e] = host(nx);
        arg[e] = calloc(ny, sizeof(int32_t));
    }
    kc_device *ref = kc_test_reference();
    run_maxpool_forward(ref, &d, x, y[0], arg[0]);
    run_maxpool_backward(ref, &d, g, arg[0], dx[0]);
    run_avgpool_forward(ref, &d, x, ay[0]);
    run_avgpool_backward(ref, &d, g, adx[0]);
    for (size_t i = 0; i < ny; i++) {
        expect(arg[0][i] >= 0 && (size_t)arg[0][i] < nx, "argmax[%zu] = %d out of range", i,
               arg[0][i]);
        expect(y[0][i] == x[arg[0][i]], "max[%zu] is not x[argmax]", i);
    }
    /* gradients conserve mass: every dy lands on exactly one cell (max) or is
     * spread over the real cells (average) */
    double sg = 0, smax = 0, savg = 0;
    for (size_t i = 0; i < ny; i++)
        sg += g[i];
    for (size_t i = 0; i < nx; i++)
        smax += dx[0][i], savg += adx[0][i];
    ck_assert_close(smax, sg, 1e-4, 1e-5);
    ck_assert_close(savg, sg, 1e-4, 1e-5);
    KC_FOR_EACH_TESTED_DEVICE(dev) {
        run_maxpool_forward(dev, &d, x, y[1], arg[1]);
        run_maxpool_backward(dev, &d, g, arg[0], dx[1]);
        run_avgpool_forward(dev, &d, x, ay[1]);
        run_avgpool_backward(dev, &d, g, adx[1]);
        compare_i32(ties ? "maxpool argmax (ties)" : "maxpool argmax", dev, arg[1], arg[0], ny);
        compare("maxpool forward", dev, y[1], y[0], ny, SAME);
        compare("maxpool backward", dev, dx[1], dx[0], nx, pinned(dev, close_to(1e-6, 1e-6)));
        compare("avgpool forward", dev, ay[1], ay[0], ny, close_to(1e-6, 1e-6));
        compare("avgpool backward", dev, adx[1], adx[0], nx, close_to(1e-6, 1e-6));
    }
    free(x), free(g);
    for (int e = 0; e < 2; e++)
        free(y[e]), free(dx[e]), free(ay[e]), free(adx[e]), free(arg[e]);
}

START_TEST(test_pooling) {
    for (size_t i = 0; i < N_POOL; i++) {
        pool_conformance(&pool_cases[i], 0);
        pool_conformance(&pool_cases[i], 1);
    }
}
END_TEST

/* ----------------------------------------------------------- dropout */

static void run_dropout(kc_device *d, const float *x, float *y, float *mask, size_t n, float rate,
                        uint64_t seed, uint64_t stream) {
    dbuf d_x = dput(d, x, n), d_y = dnan(d, n), d_m = dnan(d, n);
    ck_assert_int_eq(kc_dropout_forward(d, d_x.at, d_y.at, d_m.at, n, rate, seed, stream), KC_OK);
    dget("dropout output", &d_y, y);
    dget("dropout mask", &d_m, mask);
    dfree(&d_x), dfree(&d_y), dfree(&d_m);
}

START_TEST(test_dropout) {
    size_t n = big(100003, 10007);
    float *x = random_host(n, -1, 1, 80);
    float rates[] = {0.0f, 0.3f, 0.5f, 0.9f};
    kc_device *ref = kc_test_reference();
    for (int r = 0; r < 4; r++) {
        float rate = rates[r], keep = 1.0f / (1.0f - rate);
        float *y[2] = {host(n), host(n)}, *m[2] = {host(n), host(n)};
        run_dropout(ref, x, y[0], m[0], n, rate, 99, 5);
        size_t dropped = 0;
        for (size_t i = 0; i < n; i++) {
            int kept = kc_rng_uniform(99, 5, i) >= rate;
            expect(m[0][i] == (kept ? keep : 0.0f), "mask[%zu] = %g", i, m[0][i]);
            expect(y[0][i] == x[i] * m[0][i], "dropout y[%zu]", i);
            dropped += !kept;
        }
        ck_assert_close((double)dropped / n, rate, 0.01, 0);
        KC_FOR_EACH_TESTED_DEVICE(d) {
            /* the mask is a function of (seed, stream, index): the same on every backend */
            run_dropout(d, x, y[1], m[1], n, rate, 99, 5);
            compare("dropout mask", d, m[1], m[0], n, BITS);
            compare("dropout output", d, y[1], y[0], n, SAME);
        }
        for (int e = 0; e < 2; e++)
            free(y[e]), free(m[e]);
    }
    /* another stream draws another mask */
    float *y = host(n), *m1 = host(n), *m2 = host(n);
    KC_FOR_EACH_DEVICE(d) {
        run_dropout(d, x, y, m1, n, 0.5f, 99, 5);
        run_dropout(d, x, y, m2, n, 0.5f, 99, 6);
        size_t differ = 0;
        for (size_t i = 0; i < n; i++)
            differ += m1[i] != m2[i];
        ck_assert_close((double)differ / n, 0.5, 0.02, 0);
    }
    free(x), free(y), free(m1), free(m2);
}
END_TEST

/* ----------------------------------------------------- random normals */

static void run_rng_normal(kc_device *d, float *y, size_t n, float mean, float stddev,
                           uint64_t seed, uint64_t stream) {
    dbuf d_y = dnan(d, n);
    ck_assert_int_eq(kc_rng_normal_fill(d, d_y.at, n, mean, stddev, seed, stream), KC_OK);
    dget("rng_normal", &d_y, y);
    dfree(&d_y);
}

START_TEST(test_rng_normal) {
    size_t n = big(100003, 20011);
    kc_device *ref = kc_test_reference();
    float *want = host(n), *got = host(n);
    run_rng_normal(ref, want, n, 0.5f, 2.0f, 99, 5);
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        expect(want[i] == (float)(0.5 + 2.0 * kc_rng_normal(99, 5, i)), "normal[%zu]", i);
        s += want[i], s2 += (double)want[i] * want[i];
    }
    double mean = s / n, var = s2 / n - mean * mean;
    ck_assert_close(mean, 0.5, 0.05, 0);
    ck_assert_close(var, 4.0, 0.2, 0);
    KC_FOR_EACH_TESTED_DEVICE(d) {
        /* a function of (seed, stream, index), to the rounding of log and cos */
        run_rng_normal(d, got, n, 0.5f, 2.0f, 99, 5);
        compare("rng_normal", d, got, want, n, close_to(1e-5, 1e-5));
    }
    KC_FOR_EACH_DEVICE(d) {
        run_rng_normal(d, got, n, 0.5f, 2.0f, 99, 6);
        size_t same = 0;
        for (size_t i = 0; i < n; i++)
            same += got[i] == want[i];
        ck_assert_msg(same < n / 100, "%s: another stream repeats %zu of %zu", d->name, same, n);
    }
    free(want), free(got);
}
END_TEST

/* --------------------------------------------------------- optimizers */

enum { OPT_SGD, OPT_RMSPROP, OPT_ADAM };

typedef struct opt_case {
    int kind;
    float lr, p1, p2; /* sgd: momentum, nesterov; rmsprop: rho, momentum; adam: b1, b2 */
    int flag;         /* rmsprop: centered; adam: amsgrad */
} opt_case;

static const opt_case opt_cases[] = {
    {OPT_SGD, 0.01f, 0, 0, 0},
    {OPT_SGD, 0.01f, 0.9f, 0, 0},
    {OPT_SGD, 0.01f, 0.9f, 1, 0},
    {OPT_RMSPROP, 0.001f, 0.9f, 0, 0},
    {OPT_RMSPROP, 0.001f, 0.9f, 0, 1},
    {OPT_RMSPROP, 0.001f, 0.9f, 0.5f, 0},
    {OPT_RMSPROP, 0.001f, 0.9f, 0.5f, 1},
    {OPT_ADAM, 0.001f, 0.9f, 0.999f, 0},
    {OPT_ADAM, 0.001f, 0.9f, 0.999f, 1},
};
#define N_OPT (sizeof opt_cases / sizeof opt_cases[0])

/* Runs steps updates with fresh random gradients; out holds w then 4 slot
 * arrays (unused ones stay zero). `composed` runs core/ops.c's composition. */
static void run_optimizer(kc_device *d, const opt_case *oc, size_t n, int steps, float *out,
                          int composed) {
    float *w0 = random_host(n, -1, 1, 90);
    dbuf s[5];
    s[0] = dput(d, w0, n);
    for (int k = 1; k < 5; k++)
        s[k] = dput(d, NULL, n);
    for (int t = 1; t <= steps; t++) {
        float *gh = random_host(n, -1, 1, 100 + (uint64_t)t);
        dbuf g = dput(d, gh, n);
        kc_buf v = oc->p1 != 0 ? s[1].at : KC_BUF_NULL;
        if (oc->kind == OPT_SGD) {
            if (composed)
                kc_fallback_sgd_update(d, s[0].at, g.at, v, n, oc->lr, oc->p1, (int)oc->p2);
            else
                kc_sgd_update(d, s[0].at, g.at, v, n, oc->lr, oc->p1, (int)oc->p2);
        } else if (oc->kind == OPT_RMSPROP) {
            kc_buf mg = oc->flag ? s[2].at : KC_BUF_NULL, mom = oc->p2 > 0 ? s[3].at : KC_BUF_NULL;
            if (composed)
                kc_fallback_rmsprop_update(d, s[0].at, g.at, s[1].at, mg, mom, n, oc->lr, oc->p1,
                                           1.0f - oc->p1, oc->p2, 1e-7f, oc->flag);
            else
                kc_rmsprop_update(d, s[0].at, g.at, s[1].at, mg, mom, n, oc->lr, oc->p1,
                                  1.0f - oc->p1, oc->p2, 1e-7f, oc->flag);
        } else {
            float alpha =
                oc->lr * sqrtf(1.0f - powf(oc->p2, (float)t)) / (1.0f - powf(oc->p1, (float)t));
            kc_buf vhat = oc->flag ? s[3].at : KC_BUF_NULL;
            if (composed)
                kc_fallback_adam_update(d, s[0].at, g.at, s[1].at, s[2].at, vhat, n, alpha,
                                        1.0f - oc->p1, 1.0f - oc->p2, 1e-7f, oc->flag);
            else
                kc_adam_update(d, s[0].at, g.at, s[1].at, s[2].at, vhat, n, alpha, 1.0f - oc->p1,
                               1.0f - oc->p2, 1e-7f, oc->flag);
        }
        /* the gradient is read, never written */
        float *gd = dtake("optimizer gradient", &g);
        compare("optimizer gradient after the update", d, gd, gh, n, BITS);
        free(gh), free(gd);
    }
    for (int k = 0; k < 5; k++)
        dget("optimizer state", &s[k], out + (size_t)k * n), dfree(&s[k]);
    free(w0);
}

/* Float32 state after a few steps: within a few ulps of each value, plus
 * room for a rounding that lands on a different side of a small slot. */
static const tol OPT_TOL = {1e-6, 2e-5, TOL_CLOSE};

START_TEST(test_optimizers_match) {
    size_t sizes[] = {1, 7, 1001, big(100003, 4099)};
    kc_device *ref = kc_test_reference();
    for (int s = 0; s < 4; s++)
        for (size_t c = 0; c < N_OPT; c++) {
            size_t n = sizes[s];
            float *a = host(5 * n), *b = host(5 * n);
            run_optimizer(ref, &opt_cases[c], n, 5, a, 0);
            float *w0 = random_host(n, -1, 1, 90);
            ck_assert(memcmp(a, w0, n * sizeof(float)) != 0); /* something moved */
            char what[48];
            snprintf(what, sizeof what, "optimizer case %zu, n %zu", c, n);
            KC_FOR_EACH_TESTED_DEVICE(d) {
                run_optimizer(d, &opt_cases[c], n, 5, b, 0);
                compare(what, d, b, a, 5 * n, pinned(d, OPT_TOL));
            }
            free(w0), free(a), free(b);
        }
}
END_TEST

/* The other Keras 3 optimizers: every slot and weight after a few steps. */
enum { OPT2_ADAGRAD, OPT2_ADADELTA, OPT2_ADAMAX, OPT2_NADAM, OPT2_LION, OPT2_COUNT };

static void nadam_coef_at(int t, float *prod, kc_nadam_coef *c) {
    float u = 0.9f * (1.0f - 0.5f * powf(0.96f, (float)t));
    float u_next = 0.9f * (1.0f - 0.5f * powf(0.96f, (float)(t + 1)));
    *prod = *prod * u;
    *c = (kc_nadam_coef){.lr = 0.002f,
                         .eps = 1e-7f,
                         .one_minus_b1 = 0.1f,
                         .one_minus_b2 = 0.001f,
                         .u_next = u_next,
                         .one_minus_u = 1.0f - u,
                         .one_minus_prod_next = 1.0f - *prod * u_next,
                         .one_minus_prod = 1.0f - *prod,
                         .one_minus_b2_power = 1.0f - powf(0.999f, (float)t)};
}

static void run_optimizer2(kc_device *d, int kind, size_t n, int steps,
                           float *out /* 3n: w, two slots */, int composed) {
    float *w0 = random_host(n, -1, 1, 91);
    dbuf s[3] = {dput(d, w0, n), dput(d, NULL, n), dput(d, NULL, n)};
    if (kind == OPT2_ADAGRAD) kc_fill(d, s[1].at, 0.1f, n);
    float prod = 1.0f;
    for (int t = 1; t <= steps; t++) {
        float *gh = random_host(n, -1, 1, 110 + (uint64_t)t);
        dbuf g = dput(d, gh, n);
        kc_nadam_coef c;
        switch (kind) {
        case OPT2_ADAGRAD:
            (composed ? kc_fallback_adagrad_update : kc_adagrad_update)(d, s[0].at, g.at, s[1].at,
                                                                        n, 0.01f, 1e-7f);
            break;
        case OPT2_ADADELTA:
            (composed ? kc_fallback_adadelta_update : kc_adadelta_update)(
                d, s[0].at, g.at, s[1].at, s[2].at, n, 1.0f, 0.95f, 0.05f, 1e-7f);
            break;
        case OPT2_ADAMAX:
            (composed ? kc_fallback_adamax_update
                      : kc_adamax_update)(d, s[0].at, g.at, s[1].at, s[2].at, n, 0.002f, 0.1f,
                                          0.999f, 1.0f - powf(0.9f, (float)t), 1e-7f);
            break;
        case OPT2_NADAM:
            nadam_coef_at(t, &prod, &c);
            (composed ? kc_fallback_nadam_update : kc_nadam_update)(d, s[0].at, g.at, s[1].at,
                                                                    s[2].at, n, &c);
            break;
        default:
            (composed ? kc_fallback_lion_update : kc_lion_update)(d, s[0].at, g.at, s[1].at, n,
                                                                  0.001f, 0.9f, 0.99f);
            break;
        }
        float *gd = dtake("optimizer gradient", &g);
        compare("optimizer gradient after the update", d, gd, gh, n, BITS);
        free(gh), free(gd);
    }
    for (int k = 0; k < 3; k++)
        dget("optimizer state", &s[k], out + (size_t)k * n), dfree(&s[k]);
    free(w0);
}

START_TEST(test_more_optimizers_match) {
    size_t sizes[] = {1, 7, 1001, big(100003, 4099)};
    kc_device *ref = kc_test_reference();
    for (int s = 0; s < 4; s++)
        for (int k = 0; k < OPT2_COUNT; k++) {
            size_t n = sizes[s];
            float *a = host(3 * n), *b = host(3 * n);
            run_optimizer2(ref, k, n, 5, a, 0);
            float *w0 = random_host(n, -1, 1, 91);
            ck_assert(memcmp(a, w0, n * sizeof(float)) != 0); /* something moved */
            char what[48];
            snprintf(what, sizeof what, "optimizer kind %d, n %zu", k, n);
            KC_FOR_EACH_TESTED_DEVICE(d) {
                run_optimizer2(d, k, n, 5, b, 0);
                /* Lion moves each weight by exactly lr sign(.): the weights match to a
                 * rounding, while a slot may differ as the others' do */
                compare(what, d, b, a, 3 * n, pinned(d, OPT_TOL));
            }
            free(w0), free(a), free(b);
        }
}
END_TEST

/* ------------------------------------------- clipping and weight decay */

static double run_sum_squares(kc_device *d, const float *x, size_t n, double start) {
    dbuf dx = dput(d, x, n), out = dput_double(d, start);
    ck_assert_int_eq(kc_sum_squares(d, dx.at, n, out.at), KC_OK);
    double v = dget_double("sum_squares", &out);
    dfree(&dx), dfree(&out);
    return v;
}

static void run_clip_decay(kc_device *d, const float *x, size_t n, float *sd, float *cl,
                           float *chain) {
    dbuf dx = dput(d, x, n), dy = dnan(d, n);
    kc_scale_div(d, dx.at, dy.at, 0.7f, 2.3f, n);
    dget("scale_div", &dy, sd);
    kc_clip(d, dx.at, dy.at, -1.5f, 0.5f, n);
    dget("clip", &dy, cl);
    /* in place, as the optimizer's weights */
    kc_weight_decay(d, dx.at, 0.004f, 0.01f, n);
    kc_scale_div(d, dx.at, dx.at, 1.25f, 1.0f, n);
    dget("weight_decay then scale_div in place", &dx, chain);
    dfree(&dx), dfree(&dy);
}

START_TEST(test_clip_decay_match) {
    size_t sizes[] = {1, 7, 1001, big(100003, 4099)};
    kc_device *ref = kc_test_reference();
    for (int s = 0; s < 4; s++) {
        size_t n = sizes[s];
        float *x = random_host(n, -3, 3, 120);
        if (n > 3) x[2] = NAN; /* clip keeps it; the others carry it */
        double want = 0;
        for (size_t i = 0; i < n; i++)
            if (!isnan(x[i])) want += (double)x[i] * x[i];
        float *xs = copy_host(x, n); /* sum_squares of finite values */
        if (n > 3) xs[2] = 0.5f, want += 0.25;
        double sr = run_sum_squares(ref, xs, n, 0.0);
        ck_assert_close(sr, want, 0, 1e-12);
        /* it adds to what out holds */
        double sr2 = run_sum_squares(ref, xs, n, 1.5);
        ck_assert_msg(sr2 == 1.5 + sr, "sum_squares from 1.5: %.17g, expected %.17g", sr2,
                      1.5 + sr);
        float *a[3] = {host(n), host(n), host(n)}, *b[3] = {host(n), host(n), host(n)};
        run_clip_decay(ref, x, n, a[0], a[1], a[2]);
        for (size_t i = 0; i < n; i++) {
            float c = isnan(x[i]) ? x[i] : x[i] < -1.5f ? -1.5f : x[i] > 0.5f ? 0.5f : x[i];
            expect(isnan(c) ? isnan(a[1][i]) : a[1][i] == c, "reference clip[%zu]", i);
            float sd = (x[i] * 0.7f) / 2.3f;
            expect(isnan(sd) ? isnan(a[0][i]) : a[0][i] == sd, "reference scale_div[%zu]", i);
        }
        ck_assert(memcmp(a[2], x, n * sizeof(float)) != 0);
        KC_FOR_EACH_TESTED_DEVICE(d) {
            /* the same blocks in the same order: the same bits on every backend */
            for (int threads = 0; threads <= 2; threads++) {
                kc_device *dt = kc_test_device_threads(kc_fe_i_, threads);
                ck_assert_msg(dt != NULL, "%s does not open with %d threads", d->name, threads);
                double sc = run_sum_squares(dt, xs, n, 0.0);
                expect(same_sum(dt, sc, sr), "sum_squares on %s (%d threads): %.17g vs %.17g",
                       dt->name, threads, sc, sr);
            }
            run_clip_decay(d, x, n, b[0], b[1], b[2]);
            compare("scale_div", d, b[0], a[0], n, pinned(d, close_to(1e-30, 6e-7)));
            compare("clip", d, b[1], a[1], n, SAME);
            compare("weight_decay then scale_div in place", d, b[2], a[2], n,
                    pinned(d, close_to(1e-30, 6e-7)));
        }
        for (int k = 0; k < 3; k++)
            free(a[k]), free(b[k]);
        free(x), free(xs);
    }
}
END_TEST

/* ------------------------------------------------ penalties and constraints */

/* The penalty added to `start`; g (when not NULL) gets the gradient added. */
static double run_penalty(kc_device *d, const float *x, float *g, size_t n, float l1, float l2,
                          double start) {
    dbuf dx = dput(d, x, n), out = dput_double(d, start), dg = {0};
    if (g) dg = dput(d, g, n);
    ck_assert_int_eq(kc_l1l2_penalty(d, dx.at, g ? dg.at : KC_BUF_NULL, n, l1, l2, out.at), KC_OK);
    double p = dget_double("l1l2_penalty", &out);
    if (g) dget("l1l2_penalty gradient", &dg, g), dfree(&dg);
    dfree(&dx), dfree(&out);
    return p;
}

/* Every backend sums in the same fixed blocks: the same bits, on any thread count. */
START_TEST(test_penalty_match) {
    size_t sizes[] = {1, 7, 63, 1001, big(100003, 4099)};
    float coef[][2] = {{0.01f, 0.0f}, {0.0f, 0.03f}, {0.002f, 0.005f}};
    kc_device *ref = kc_test_reference();
    for (int s = 0; s < 5; s++) {
        size_t n = sizes[s];
        float *x = random_host(n, -2, 2, 400), *g0 = random_host(n, -1, 1, 401);
        for (int c = 0; c < 3; c++) {
            float *gr = copy_host(g0, n), *gc = host(n);
            double pr = run_penalty(ref, x, gr, n, coef[c][0], coef[c][1], 0.0);
            double want = 0;
            for (size_t i = 0; i < n; i++)
                want += coef[c][0] * fabs(x[i]) + coef[c][1] * (double)x[i] * x[i];
            ck_assert_close(pr, want, 0, 1e-6);
            /* it adds to what out holds */
            double pr2 = run_penalty(ref, x, NULL, n, coef[c][0], coef[c][1], 0.25);
            ck_assert_msg(pr2 == 0.25 + pr, "penalty from 0.25: %.17g, expected %.17g", pr2,
                          0.25 + pr);
            KC_FOR_EACH_TESTED_DEVICE(d) {
                for (int threads = 0; threads <= 2; threads++) {
                    kc_device *dt = kc_test_device_threads(kc_fe_i_, threads);
                    ck_assert_msg(dt != NULL, "%s does not open with %d threads", d->name, threads);
                    memcpy(gc, g0, n * sizeof(float));
                    double pc = run_penalty(dt, x, gc, n, coef[c][0], coef[c][1], 0.0);
                    expect(same_sum(dt, pc, pr),
                           "penalty n=%zu on %s (%d threads): %.17g, reference %.17g", n, dt->name,
                           threads, pc, pr);
                    compare("penalty gradient", dt, gc, gr, n, pinned(d, close_to(1e-7, 2.5e-7)));
                }
            }
            free(gr), free(gc);
        }
        /* without g only the value */
        KC_FOR_EACH_TESTED_DEVICE(d) {
            double pc = run_penalty(d, x, NULL, n, 0.5f, 0.0f, 0.0);
            double pr = run_penalty(ref, x, NULL, n, 0.5f, 0.0f, 0.0);
            expect(same_sum(d, pc, pr), "penalty without g on %s: %.17g vs %.17g", d->name, pc, pr);
        }
        free(x), free(g0);
    }
}
END_TEST

static void run_norm(kc_device *d, float *w, const int64_t *dims, int rank, unsigned reduce,
                     float lo, float hi, float rate) {
    size_t n = 1;
    for (int a = 0; a < rank; a++)
        n *= (size_t)dims[a];
    dbuf dw = dput(d, w, n);
    int rc = composed_ops
                 ? kc_fallback_norm_rescale(d, dw.at, dims, rank, reduce, lo, hi, rate, 1e-7f)
                 : kc_norm_rescale(d, dw.at, dims, rank, reduce, lo, hi, rate, 1e-7f);
    ck_assert_int_eq(rc, KC_OK);
    dget("norm_rescale", &dw, w);
    dfree(&dw);
}

typedef struct norm_case {
    int rank;
    int64_t dims[5];
    unsigned reduce;
} norm_case;

static const norm_case norm_cases[] = {
    {2, {300, 70}, 1u},          /* Dense kernel, axis 0 */
    {2, {300, 70}, 2u},          /* axis 1 */
    {2, {300, 70}, 3u},          /* the whole matrix */
    {2, {300, 70}, 0u},          /* every value alone */
    {3, {5, 50, 129}, 2u},       /* (outer, span, inner) */
    {4, {3, 3, 16, 33}, 7u},     /* Conv2D kernel, axes [0, 1, 2] */
    {4, {3, 3, 16, 33}, 5u},     /* axes [0, 2]: no single span */
    {4, {3, 1, 16, 33}, 5u},     /* ... unless the gap has size 1 */
    {5, {2, 3, 4, 5, 3}, 0x15u}, /* axes [0, 2, 4]: three spans around two gaps */
    {1, {1}, 1u},                /* one value */
    {1, {7}, 1u},
};
#define N_NORM (sizeof norm_cases / sizeof norm_cases[0])

/* lo, hi, rate: MaxNorm(0.5), MinMaxNorm(0.9, 1.1, 0.3), UnitNorm */
static const float norm_bounds[][3] = {{0.0f, 0.5f, 1.0f}, {0.9f, 1.1f, 0.3f}, {1.0f, 1.0f, 1.0f}};

static size_t norm_size(const norm_case *c) {
    size_t n = 1;
    for (int a = 0; a < c->rank; a++)
        n *= (size_t)c->dims[a];
    return n;
}

START_TEST(test_norm_rescale_match) {
    const norm_case *cases = norm_cases;
    const float(*bounds)[3] = norm_bounds;
    kc_device *ref = kc_test_reference();
    for (size_t k = 0; k < N_NORM; k++) {
        size_t n = norm_size(&cases[k]);
        float *w = random_host(n, -1, 1, 410 + k);
        for (int b = 0; b < 3; b++) {
            float *wr = copy_host(w, n), *wc = host(n), *w1 = host(n);
            run_norm(ref, wr, cases[k].dims, cases[k].rank, cases[k].reduce, bounds[b][0],
                     bounds[b][1], bounds[b][2]);
            KC_FOR_EACH_TESTED_DEVICE(d) {
                for (int threads = 0; threads <= 2; threads++) {
                    kc_device *dt = kc_test_device_threads(kc_fe_i_, threads);
                    ck_assert_msg(dt != NULL, "%s does not open with %d threads", d->name, threads);
                    memcpy(wc, w, n * sizeof(float));
                    run_norm(dt, wc, cases[k].dims, cases[k].rank, cases[k].reduce, bounds[b][0],
                             bounds[b][1], bounds[b][2]);
                    compare("norm_rescale", dt, wc, wr, n, pinned(d, close_to(1e-7, 1e-6)));
                    /* the norms are summed in one fixed order: any thread count, same bits */
                    if (threads == 0)
                        memcpy(w1, wc, n * sizeof(float));
                    else
                        compare("norm_rescale across thread counts", dt, wc, w1, n, BITS);
                }
            }
            free(wr), free(wc), free(w1);
        }
        free(w);
    }
}
END_TEST

/* The non_neg constraint runs relu in place. */
START_TEST(test_relu_in_place) {
    const float w[] = {-1.5f, 0.0f, 2.0f, -0.0f};
    KC_FOR_EACH_DEVICE(d) {
        dbuf dw = dput(d, w, 4);
        ck_assert_int_eq(kc_act_forward(d, KC_ACT_RELU, 0.0f, dw.at, dw.at, 4), KC_OK);
        float h[4];
        dget("relu in place", &dw, h);
        dfree(&dw);
        ck_assert_close(h[0], 0.0, 0, 0);
        ck_assert_close(h[1], 0.0, 0, 0);
        ck_assert_close(h[2], 2.0, 0, 0);
        ck_assert_close(h[3], 0.0, 0, 0);
    }
}
END_TEST

/* ------------------------------------------------------------- determinism */

/* On one thread count a rerun gives the same bits; the elementwise ops,
 * dropout, pooling and the reductions give the same bits on 1 and 2 threads. */
START_TEST(test_deterministic) {
    kc_conv2d_desc cd = conv_desc(conv_cases[5]);
    size_t nx = conv_x_size(&cd), ny = conv_y_size(&cd), nw = conv_w_size(&cd);
    float *x = random_host(nx, -1, 1, 300), *w = random_host(nw, -1, 1, 301);
    float *g = random_host(ny, -1, 1, 302);
    float *y1 = host(ny), *y2 = host(ny), *dx1 = host(nx), *dx2 = host(nx);
    float *dw1 = host(nw), *dw2 = host(nw);
    size_t n = big(200003, 20011);
    float *a = act_inputs(n, 310);
    kc_pool2d_desc pd = pool_desc(pool_cases[5]);
    size_t px = pool_x_size(&pd), py = pool_y_size(&pd);
    float *pin = random_host(px, -1, 1, 311);
    kc_reduce_desc rd = {3, (int64_t)(n / 3), 1};
    float *o[2] = {host(n), host(n)}, *m[2] = {host(n), host(n)}, *ge[2] = {host(n), host(n)};
    float *p[2] = {host(py), host(py)}, *r[2] = {host(3), host(3)};
    KC_FOR_EACH_TESTED_DEVICE(d) {
        for (int threads = 1; threads <= 2; threads++) {
            kc_device *dt = kc_test_device_threads(kc_fe_i_, threads);
            ck_assert_msg(dt != NULL, "%s does not open with %d threads", d->name, threads);
            run_conv_forward(dt, &cd, x, w, y1);
            run_conv_backward_data(dt, &cd, g, w, dx1);
            memset(dw1, 0, nw * sizeof(float));
            run_conv_backward_filter(dt, &cd, x, g, dw1, 0.0f);
            run_conv_forward(dt, &cd, x, w, y2);
            run_conv_backward_data(dt, &cd, g, w, dx2);
            memset(dw2, 0, nw * sizeof(float));
            run_conv_backward_filter(dt, &cd, x, g, dw2, 0.0f);
            compare("conv forward rerun", dt, y2, y1, ny, BITS);
            compare("conv backward data rerun", dt, dx2, dx1, nx, BITS);
            compare("conv backward filter rerun", dt, dw2, dw1, nw, BITS);
            int t = threads - 1;
            run_act_forward(dt, KC_ACT_GELU, 0, a, ge[t], n);
            run_dropout(dt, a, o[t], m[t], n, 0.4f, 1, 2);
            run_avgpool_forward(dt, &pd, pin, p[t]);
            run_reduce(dt, KC_RED_SUM, &rd, 1.0f, a, 0.0f, NULL, r[t]);
        }
        compare("gelu, 1 vs 2 threads", d, ge[1], ge[0], n, BITS);
        compare("dropout output, 1 vs 2 threads", d, o[1], o[0], n, BITS);
        compare("dropout mask, 1 vs 2 threads", d, m[1], m[0], n, BITS);
        compare("avgpool, 1 vs 2 threads", d, p[1], p[0], py, BITS);
        compare("reduce sum, 1 vs 2 threads", d, r[1], r[0], 3, BITS);
    }
    for (int t = 0; t < 2; t++)
        free(o[t]), free(m[t]), free(ge[t]), free(p[t]), free(r[t]);
    free(a), free(pin);
    free(x), free(w), free(g), free(y1), free(y2), free(dx1), free(dx2), free(dw1), free(dw2);
}
END_TEST

/* ---------------------------------------- fused ops against compositions */

/* Every fused op core/ops.c can compose, native (or whatever kc_<op> picks)
 * against kc_fallback_<op> on the same device. */
START_TEST(test_fused_match_compositions) {
    const size_t sizes[] = {1, 7, 1001, big(100003, 4099)};
    KC_FOR_EACH_DEVICE(d) {
        for (int s = 0; s < 4; s++) {
            size_t n = sizes[s];
            float *a = random_host(n, -2, 2, 500), *b = random_host(n, -2, 2, 501);
            float *p = host(n), *q = host(n);
            if (n > 3) a[1] = NAN;
            /* mul: one rounding either way */
            dbuf da = dput(d, a, n), db = dput(d, b, n), dy = dnan(d, n), dz = dnan(d, n);
            kc_mul(d, da.at, db.at, dy.at, n);
            kc_fallback_mul(d, da.at, db.at, dz.at, n);
            dget("mul", &dy, p), dget("mul composed", &dz, q);
            compare("mul against its composition", d, p, q, n, SAME);
            /* scale_div: (x a) / b */
            kc_scale_div(d, da.at, dy.at, 0.7f, 2.3f, n);
            kc_fallback_scale_div(d, da.at, dz.at, 0.7f, 2.3f, n);
            dget("scale_div", &dy, p), dget("scale_div composed", &dz, q);
            compare("scale_div against its composition", d, p, q, n, close_to(1e-30, 6e-7));
            /* clip, NaN kept */
            kc_clip(d, da.at, dy.at, -1.5f, 0.5f, n);
            kc_fallback_clip(d, da.at, dz.at, -1.5f, 0.5f, n);
            dget("clip", &dy, p), dget("clip composed", &dz, q);
            compare("clip against its composition", d, p, q, n, SAME);
            /* clip in place */
            kc_copy(d, dy.at, da.at, n * sizeof(float));
            kc_clip(d, dy.at, dy.at, -1.5f, 0.5f, n);
            dget("clip in place", &dy, p);
            compare("clip in place", d, p, q, n, SAME);
            /* weight_decay in place */
            kc_copy(d, dy.at, db.at, n * sizeof(float));
            kc_copy(d, dz.at, db.at, n * sizeof(float));
            kc_weight_decay(d, dy.at, 0.004f, 0.01f, n);
            kc_fallback_weight_decay(d, dz.at, 0.004f, 0.01f, n);
            dget("weight_decay", &dy, p), dget("weight_decay composed", &dz, q);
            compare("weight_decay against its composition", d, p, q, n, close_to(1e-30, 2.5e-7));
            dfree(&da), dfree(&db), dfree(&dy), dfree(&dz);
            free(a), free(b), free(p), free(q);

            /* the updates, a few steps each */
            float *u = host(5 * n), *v = host(5 * n);
            char what[64];
            for (size_t c = 0; c < N_OPT; c++) { /* every option of SGD, RMSprop, Adam */
                run_optimizer(d, &opt_cases[c], n, 3, u, 0);
                run_optimizer(d, &opt_cases[c], n, 3, v, 1);
                snprintf(what, sizeof what, "optimizer case %zu against its composition", c);
                compare(what, d, u, v, 5 * n, OPT_TOL);
            }
            for (int k = 0; k < OPT2_COUNT; k++) {
                run_optimizer2(d, k, n, 3, u, 0);
                run_optimizer2(d, k, n, 3, v, 1);
                snprintf(what, sizeof what, "optimizer kind %d against its composition", k);
                compare(what, d, u, v, 3 * n, OPT_TOL);
            }
            free(u), free(v);
        }
        /* bias_add, bias_grad */
        static const int bias_shapes[][2] = {{1, 1}, {7, 10}, {300, 129}, {3, 1001}};
        for (int s = 0; s < 4; s++) {
            int rows = bias_shapes[s][0], cols = bias_shapes[s][1];
            size_t n = (size_t)rows * cols;
            float *y = random_host(n, -1, 1, 510), *b = random_host((size_t)cols, -1, 1, 511);
            float *p = host(n), *q = host(n);
            dbuf dy = dput(d, y, n), dz = dput(d, y, n), dbv = dput(d, b, (size_t)cols);
            kc_bias_add(d, dy.at, dbv.at, rows, cols);
            kc_fallback_bias_add(d, dz.at, dbv.at, rows, cols);
            dget("bias_add", &dy, p), dget("bias_add composed", &dz, q);
            compare("bias_add against its composition", d, p, q, n, SAME);
            const float betas[] = {0.0f, 1.0f, 0.5f};
            for (int k = 0; k < 3; k++) {
                dbuf g1 = betas[k] == 0 ? dnan(d, (size_t)cols) : dput(d, b, (size_t)cols);
                dbuf g2 = betas[k] == 0 ? dnan(d, (size_t)cols) : dput(d, b, (size_t)cols);
                kc_bias_grad(d, g1.at, dy.at, rows, cols, betas[k]);
                kc_fallback_bias_grad(d, g2.at, dy.at, rows, cols, betas[k]);
                dget("bias_grad", &g1, p), dget("bias_grad composed", &g2, q);
                compare("bias_grad against its composition", d, p, q, (size_t)cols,
                        close_to(1e-6, 1e-6));
                dfree(&g1), dfree(&g2);
            }
            dfree(&dy), dfree(&dz), dfree(&dbv);
            free(y), free(b), free(p), free(q);
        }
        /* gemm_batched */
        for (size_t k = 0; k < sizeof batched_cases / sizeof batched_cases[0]; k++) {
            const int *c = batched_cases[k];
            batched_args ba = batched_shape(c[0], c[1], c[2], c[3], c[4], 0.5f, 0.25f, c[5]);
            float *x = random_host(ba.na, -1, 1, 520), *w = random_host(ba.nb, -1, 1, 521);
            float *c0 = random_host(ba.nc, -1, 1, 522), *p = host(ba.nc), *q = host(ba.nc);
            run_gemm_batched(d, &ba, x, w, c0, p, 0);
            run_gemm_batched(d, &ba, x, w, c0, q, 1);
            compare("gemm_batched against its composition", d, p, q, ba.nc,
                    close_to(1e-5 * max_abs(q, ba.nc), 1e-4));
            free(x), free(w), free(c0), free(p), free(q);
        }
        /* softmax forward and backward */
        for (size_t s = 0; s < sizeof softmax_shapes / sizeof softmax_shapes[0]; s++) {
            int rows = softmax_shapes[s][0], cols = softmax_shapes[s][1];
            size_t n = (size_t)rows * cols;
            float *x = random_host(n, -10, 10, 530), *dy = random_host(n, -1, 1, 531);
            x[0] = 500.0f;
            float *y = host(n), *yc = host(n), *dx = host(n), *dxc = host(n);
            run_softmax_forward(d, x, y, rows, cols, 0);
            run_softmax_forward(d, x, yc, rows, cols, 1);
            compare("softmax forward against its composition", d, y, yc, n, close_to(1e-7, 2e-6));
            run_softmax_backward(d, y, dy, dx, rows, cols, 0);
            run_softmax_backward(d, y, dy, dxc, rows, cols, 1);
            compare("softmax backward against its composition", d, dx, dxc, n,
                    close_to(1e-7, 1e-5));
            free(x), free(dy), free(y), free(yc), free(dx), free(dxc);
        }
    }
}
END_TEST

/* A composed max pool's window position (a float in argmax) as the flat
 * input index the ops store; -1 stays -1. */
static int32_t window_to_flat(const kc_pool2d_desc *d, size_t o, int32_t bits) {
    float k;
    memcpy(&k, &bits, sizeof k);
    if (k < 0) return -1;
    long c = (long)(o % (size_t)d->c), t = (long)(o / (size_t)d->c);
    long ox = t % d->ow, oy = (t / d->ow) % d->oh, n = t / d->ow / d->oh;
    long iy = oy * d->sh - d->pad_t + (long)k / d->pw, ix = ox * d->sw - d->pad_l + (long)k % d->pw;
    return (int32_t)(((n * d->h + iy) * d->w + ix) * d->c + c);
}

static void conv_against_composition(kc_device *dev, const conv_case *cc) {
    kc_conv2d_desc d = conv_desc(*cc);
    size_t nx = conv_x_size(&d), ny = conv_y_size(&d), nw = conv_w_size(&d);
    float *x = random_host(nx, -1, 1, 560), *w = random_host(nw, -1, 1, 561);
    float *g = random_host(ny, -1, 1, 562), *w0 = random_host(nw, -1, 1, 563);
    float *y[2], *dx[2], *dw_acc[2], *dw_new[2];
    for (int e = 0; e < 2; e++) {
        y[e] = host(ny), dx[e] = host(nx), dw_acc[e] = host(nw), dw_new[e] = host(nw);
        composed_ops = e;
        conv_results(dev, &d, x, w, g, w0, y[e], dx[e], dw_acc[e], dw_new[e]);
    }
    composed_ops = 0;
    char what[160];
    snprintf(what, sizeof what, "conv %dx%dx%dx%d k%dx%d s%d,%d d%d,%d against its composition",
             d.n, d.h, d.w, d.c, d.kh, d.kw, d.sh, d.sw, d.dh, d.dw);
    compare(what, dev, y[1], y[0], ny, close_to(1e-5 * max_abs(y[0], ny), 1e-4));
    compare(what, dev, dx[1], dx[0], nx, close_to(1e-5 * max_abs(dx[0], nx), 1e-4));
    compare(what, dev, dw_acc[1], dw_acc[0], nw, close_to(1e-5 * max_abs(dw_acc[0], nw), 1e-4));
    compare(what, dev, dw_new[1], dw_new[0], nw, close_to(1e-5 * max_abs(dw_new[0], nw), 1e-4));
    free(x), free(w), free(g), free(w0);
    for (int e = 0; e < 2; e++)
        free(y[e]), free(dx[e]), free(dw_acc[e]), free(dw_new[e]);
}

/* Each side's backward reads the argmax its own forward wrote. */
static void pool_against_composition(kc_device *dev, const pool_case *pc, int ties) {
    kc_pool2d_desc d = pool_desc(*pc);
    size_t nx = pool_x_size(&d), ny = pool_y_size(&d);
    float *x = pool_inputs(nx, ties, 570), *g = random_host(ny, -1, 1, 571);
    float *y[2], *dx[2], *ay[2], *adx[2];
    int32_t *arg[2];
    for (int e = 0; e < 2; e++) {
        y[e] = host(ny), dx[e] = host(nx), ay[e] = host(ny), adx[e] = host(nx);
        arg[e] = calloc(ny, sizeof(int32_t));
        composed_ops = e;
        run_maxpool_forward(dev, &d, x, y[e], arg[e]);
        run_maxpool_backward(dev, &d, g, arg[e], dx[e]);
        run_avgpool_forward(dev, &d, x, ay[e]);
        run_avgpool_backward(dev, &d, g, adx[e]);
    }
    composed_ops = 0;
    for (size_t i = 0; i < ny; i++)
        expect(window_to_flat(&d, i, arg[1][i]) == arg[0][i],
               "composed maxpool on %s%s: output %zu picks %d, the op %d", dev->name,
               ties ? " (ties)" : "", i, window_to_flat(&d, i, arg[1][i]), arg[0][i]);
    compare("maxpool forward against its composition", dev, y[1], y[0], ny, SAME);
    compare("maxpool backward against its composition", dev, dx[1], dx[0], nx,
            close_to(1e-6, 1e-6));
    compare("avgpool forward against its composition", dev, ay[1], ay[0], ny, close_to(1e-6, 1e-6));
    compare("avgpool backward against its composition", dev, adx[1], adx[0], nx,
            close_to(1e-6, 1e-6));
    free(x), free(g);
    for (int e = 0; e < 2; e++)
        free(y[e]), free(dx[e]), free(ay[e]), free(adx[e]), free(arg[e]);
}

static void norm_against_composition(kc_device *dev) {
    for (size_t k = 0; k < N_NORM; k++) {
        const norm_case *c = &norm_cases[k];
        size_t n = norm_size(c);
        float *w = random_host(n, -1, 1, 580 + k);
        for (int b = 0; b < 3; b++) {
            float *p = copy_host(w, n), *q = copy_host(w, n);
            const float *lhr = norm_bounds[b];
            run_norm(dev, p, c->dims, c->rank, c->reduce, lhr[0], lhr[1], lhr[2]);
            composed_ops = 1;
            run_norm(dev, q, c->dims, c->rank, c->reduce, lhr[0], lhr[1], lhr[2]);
            composed_ops = 0;
            char what[80];
            snprintf(what, sizeof what, "norm_rescale case %zu, bounds %d against its composition",
                     k, b);
            compare(what, dev, q, p, n, close_to(1e-7, 1e-6));
            free(p), free(q);
        }
        free(w);
    }
}

/* Convolution, pooling and the norm projection against their compositions
 * on every backend, over the conformance geometries: strides, dilation,
 * "same" and "valid", odd sizes, batch and channels above 1, and pools with
 * ties everywhere, where the composition must pick the op's cell. */
START_TEST(test_conv_pool_norm_match_compositions) {
    KC_FOR_EACH_DEVICE(d) {
        for (size_t i = 0; i < N_CONV; i++)
            conv_against_composition(d, &conv_cases[i]);
        for (size_t i = 0; i < N_POOL; i++)
            for (int ties = 0; ties < 2; ties++)
                pool_against_composition(d, &pool_cases[i], ties);
        norm_against_composition(d);
    }
}
END_TEST

/* --------------------------------------- test-only tables: composition */

/* "cpu-lean": the cpu backend without any fused op. "cpu-picky": the cpu
 * backend that counts its fused calls and declines some ops in supports_op
 * (conv2d for kernels larger than 3x3: a decline by geometry). */
static kc_backend lean_be, picky_be;
static int native_calls[KC_OP_COUNT];
static int fail_fill; /* the next fill fails without a message */

static int lean_fill(kc_device *d, kc_buf y, float v, size_t n) {
    if (fail_fill) {
        fail_fill = 0;
        return KC_ERUNTIME;
    }
    return kc_cpu_backend.fill(d, y, v, n);
}

static int picky_mul(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    native_calls[KC_OP_MUL]++;
    return kc_cpu_backend.mul(d, a, b, y, n);
}
static int picky_bias_add(kc_device *d, kc_buf y, kc_buf b, int rows, int cols) {
    native_calls[KC_OP_BIAS_ADD]++;
    return kc_cpu_backend.bias_add(d, y, b, rows, cols);
}
static int picky_softmax_forward(kc_device *d, kc_buf x, kc_buf y, int rows, int cols) {
    native_calls[KC_OP_SOFTMAX]++;
    return kc_cpu_backend.softmax_forward(d, x, y, rows, cols);
}
static int picky_clip(kc_device *d, kc_buf x, kc_buf y, float lo, float hi, size_t n) {
    native_calls[KC_OP_CLIP]++;
    return kc_cpu_backend.clip(d, x, y, lo, hi, n);
}
static int picky_adam(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, kc_buf vhat, size_t n,
                      float alpha, float one_minus_b1, float one_minus_b2, float eps, int amsgrad) {
    native_calls[KC_OP_ADAM]++;
    return kc_cpu_backend.adam_update(d, w, g, m, v, vhat, n, alpha, one_minus_b1, one_minus_b2,
                                      eps, amsgrad);
}
static int picky_conv_forward(kc_device *d, const kc_conv2d_desc *g, kc_buf x, kc_buf w, kc_buf y,
                              kc_buf ws) {
    native_calls[KC_OP_CONV2D]++;
    return kc_cpu_backend.conv2d_forward(d, g, x, w, y, ws);
}

static int picky_supports(const kc_device *d, kc_op op, const void *desc) {
    (void)d;
    switch (op) {
    case KC_OP_MUL:
    case KC_OP_SOFTMAX:
    case KC_OP_ADAM:
        return 0;
    case KC_OP_CONV2D:
        return desc && ((const kc_conv2d_desc *)desc)->kh <= 3;
    default:
        return 1;
    }
}

static void make_test_tables(void) {
    lean_be = kc_cpu_backend;
    lean_be.name = "cpu-lean";
    lean_be.description = "the cpu backend without fused ops (tests only)";
    lean_be.supports_op = NULL;
    lean_be.fill = lean_fill;
    lean_be.mul = NULL;
    lean_be.bias_add = NULL;
    lean_be.bias_grad = NULL;
    lean_be.gemm_batched = NULL;
    lean_be.softmax_forward = NULL;
    lean_be.softmax_backward = NULL;
    lean_be.conv2d_workspace = NULL;
    lean_be.conv2d_forward = NULL;
    lean_be.conv2d_backward_data = NULL;
    lean_be.conv2d_backward_filter = NULL;
    lean_be.maxpool2d_forward = NULL;
    lean_be.maxpool2d_backward = NULL;
    lean_be.avgpool2d_forward = NULL;
    lean_be.avgpool2d_backward = NULL;
    lean_be.norm_rescale = NULL;
    lean_be.scale_div = NULL;
    lean_be.clip = NULL;
    lean_be.weight_decay = NULL;
    lean_be.sgd_update = NULL;
    lean_be.rmsprop_update = NULL;
    lean_be.adam_update = NULL;
    lean_be.adagrad_update = NULL;
    lean_be.adadelta_update = NULL;
    lean_be.adamax_update = NULL;
    lean_be.nadam_update = NULL;
    lean_be.lion_update = NULL;
    lean_be.depthwise_conv2d_forward = NULL;
    lean_be.depthwise_conv2d_backward_data = NULL;
    lean_be.depthwise_conv2d_backward_filter = NULL;
    lean_be.embedding_forward = NULL;
    lean_be.embedding_backward = NULL;

    picky_be = kc_cpu_backend;
    picky_be.name = "cpu-picky";
    picky_be.description = "the cpu backend declining some fused ops (tests only)";
    picky_be.supports_op = picky_supports;
    picky_be.mul = kc_cpu_backend.mul ? picky_mul : NULL;
    picky_be.bias_add = kc_cpu_backend.bias_add ? picky_bias_add : NULL;
    picky_be.softmax_forward = kc_cpu_backend.softmax_forward ? picky_softmax_forward : NULL;
    picky_be.clip = kc_cpu_backend.clip ? picky_clip : NULL;
    picky_be.adam_update = kc_cpu_backend.adam_update ? picky_adam : NULL;
    picky_be.conv2d_forward = kc_cpu_backend.conv2d_forward ? picky_conv_forward : NULL;
}

/* The results of a device's ops in one run, or of the compositions on another
 * device (composed_ops): conv (forward, both backwards), pools, norms. */
static void lean_conv_pool_norm(kc_device *lean, kc_device *cpu) {
    conv_case cc[] = {conv_cases[1], conv_cases[2], conv_cases[3], conv_cases[4], conv_cases[7]};
    for (size_t k = 0; k < sizeof cc / sizeof cc[0]; k++) {
        kc_conv2d_desc d = conv_desc(cc[k]);
        ck_assert_uint_eq(kc_conv2d_workspace(lean, &d), 0);
        size_t nx = conv_x_size(&d), ny = conv_y_size(&d), nw = conv_w_size(&d);
        float *x = random_host(nx, -1, 1, 620), *w = random_host(nw, -1, 1, 621);
        float *g = random_host(ny, -1, 1, 622), *w0 = random_host(nw, -1, 1, 623);
        float *r[2][4];
        for (int e = 0; e < 2; e++) {
            r[e][0] = host(ny), r[e][1] = host(nx), r[e][2] = host(nw), r[e][3] = host(nw);
            composed_ops = e;
            conv_results(e ? cpu : lean, &d, x, w, g, w0, r[e][0], r[e][1], r[e][2], r[e][3]);
        }
        composed_ops = 0;
        compare("conv forward, composed", lean, r[0][0], r[1][0], ny, BITS);
        compare("conv backward data, composed", lean, r[0][1], r[1][1], nx, BITS);
        compare("conv backward filter, composed", lean, r[0][2], r[1][2], nw, BITS);
        compare("conv backward filter (beta 0), composed", lean, r[0][3], r[1][3], nw, BITS);
        free(x), free(w), free(g), free(w0);
        for (int e = 0; e < 2; e++)
            for (int i = 0; i < 4; i++)
                free(r[e][i]);
    }
    for (size_t k = 0; k < N_POOL; k++) {
        kc_pool2d_desc d = pool_desc(pool_cases[k]);
        size_t nx = pool_x_size(&d), ny = pool_y_size(&d);
        float *x = pool_inputs(nx, 1, 624), *g = random_host(ny, -1, 1, 625);
        float *r[2][4];
        int32_t *arg[2] = {calloc(ny, 4), calloc(ny, 4)};
        for (int e = 0; e < 2; e++) {
            kc_device *dev = e ? cpu : lean;
            r[e][0] = host(ny), r[e][1] = host(nx), r[e][2] = host(ny), r[e][3] = host(nx);
            composed_ops = e;
            run_maxpool_forward(dev, &d, x, r[e][0], arg[e]);
            run_maxpool_backward(dev, &d, g, arg[e], r[e][1]);
            run_avgpool_forward(dev, &d, x, r[e][2]);
            run_avgpool_backward(dev, &d, g, r[e][3]);
        }
        composed_ops = 0;
        compare_i32("maxpool argmax, composed", lean, arg[0], arg[1], ny);
        compare("maxpool, composed", lean, r[0][0], r[1][0], ny, BITS);
        compare("maxpool backward, composed", lean, r[0][1], r[1][1], nx, BITS);
        compare("avgpool, composed", lean, r[0][2], r[1][2], ny, BITS);
        compare("avgpool backward, composed", lean, r[0][3], r[1][3], nx, BITS);
        free(x), free(g), free(arg[0]), free(arg[1]);
        for (int e = 0; e < 2; e++)
            for (int i = 0; i < 4; i++)
                free(r[e][i]);
    }
    for (size_t k = 0; k < N_NORM; k++) {
        size_t n = norm_size(&norm_cases[k]);
        float *p = random_host(n, -1, 1, 626), *q = copy_host(p, n);
        const norm_case *c = &norm_cases[k];
        run_norm(lean, p, c->dims, c->rank, c->reduce, 0.0f, 0.5f, 1.0f);
        composed_ops = 1;
        run_norm(cpu, q, c->dims, c->rank, c->reduce, 0.0f, 0.5f, 1.0f);
        composed_ops = 0;
        compare("norm_rescale, composed", lean, p, q, n, BITS);
        free(p), free(q);
    }
}

/* A backend without fused ops runs every one of them through core/ops.c's
 * composition, with the results the composition gives on the cpu backend
 * itself. */
START_TEST(test_missing_ops_are_composed) {
    make_test_tables();
    kc_device lean, *cpu = kc_test_device_named("cpu", 0);
    ck_assert_ptr_nonnull(cpu);
    kc_error e = {0};
    ck_assert_msg(kc_device_open(&lean, &lean_be, NULL, &e) == KC_OK, "%s", e.msg);
    for (int op = 0; op < KC_OP_COUNT; op++) {
        ck_assert_msg(!kc_supports_op(&lean, (kc_op)op, NULL), "cpu-lean supports op %d", op);
        ck_assert_msg(kc_op_available(&lean, (kc_op)op, NULL), "op %d is not available", op);
    }
    ck_assert(!kc_op_available(&lean, KC_OP_COUNT, NULL));
    size_t n = 1001;
    float *a = random_host(n, -2, 2, 600), *b = random_host(n, -2, 2, 601);
    float *p = host(5 * n), *q = host(5 * n);
    /* elementwise fused ops */
    dbuf la = dput(&lean, a, n), lb = dput(&lean, b, n), ly = dnan(&lean, n);
    dbuf ca = dput(cpu, a, n), cb = dput(cpu, b, n), cy = dnan(cpu, n);
    ck_assert_int_eq(kc_mul(&lean, la.at, lb.at, ly.at, n), KC_OK);
    kc_fallback_mul(cpu, ca.at, cb.at, cy.at, n);
    dget("mul on cpu-lean", &ly, p), dget("mul composed on cpu", &cy, q);
    compare("mul, composed", &lean, p, q, n, BITS);
    ck_assert_int_eq(kc_scale_div(&lean, la.at, ly.at, 0.7f, 2.3f, n), KC_OK);
    kc_fallback_scale_div(cpu, ca.at, cy.at, 0.7f, 2.3f, n);
    dget("scale_div on cpu-lean", &ly, p), dget("scale_div composed on cpu", &cy, q);
    compare("scale_div, composed", &lean, p, q, n, BITS);
    ck_assert_int_eq(kc_clip(&lean, la.at, ly.at, -1.0f, 0.5f, n), KC_OK);
    kc_fallback_clip(cpu, ca.at, cy.at, -1.0f, 0.5f, n);
    dget("clip on cpu-lean", &ly, p), dget("clip composed on cpu", &cy, q);
    compare("clip, composed", &lean, p, q, n, BITS);
    ck_assert_int_eq(kc_weight_decay(&lean, la.at, 0.01f, 0.1f, n), KC_OK);
    kc_fallback_weight_decay(cpu, ca.at, 0.01f, 0.1f, n);
    dget("weight_decay on cpu-lean", &la, p), dget("weight_decay composed on cpu", &ca, q);
    compare("weight_decay, composed", &lean, p, q, n, BITS);
    /* bias, batched gemm, softmax */
    ck_assert_int_eq(kc_bias_add(&lean, la.at, lb.at, 7, 143), KC_OK);
    kc_fallback_bias_add(cpu, ca.at, cb.at, 7, 143);
    dget("bias_add on cpu-lean", &la, p), dget("bias_add composed on cpu", &ca, q);
    compare("bias_add, composed", &lean, p, q, n, BITS);
    ck_assert_int_eq(kc_bias_grad(&lean, ly.at, la.at, 7, 143, 0.0f), KC_OK);
    kc_fallback_bias_grad(cpu, cy.at, ca.at, 7, 143, 0.0f);
    dget("bias_grad on cpu-lean", &ly, p), dget("bias_grad composed on cpu", &cy, q);
    compare("bias_grad, composed", &lean, p, q, 143, BITS);
    ck_assert_int_eq(kc_softmax_forward(&lean, la.at, ly.at, 7, 143), KC_OK);
    kc_fallback_softmax_forward(cpu, ca.at, cy.at, 7, 143);
    dget("softmax on cpu-lean", &ly, p), dget("softmax composed on cpu", &cy, q);
    compare("softmax forward, composed", &lean, p, q, n, BITS);
    ck_assert_int_eq(kc_softmax_backward(&lean, ly.at, lb.at, la.at, 7, 143), KC_OK);
    kc_fallback_softmax_backward(cpu, cy.at, cb.at, ca.at, 7, 143);
    dget("softmax backward on cpu-lean", &la, p), dget("softmax backward composed on cpu", &ca, q);
    compare("softmax backward, composed", &lean, p, q, n, BITS);
    dfree(&la), dfree(&lb), dfree(&ly), dfree(&ca), dfree(&cb), dfree(&cy);
    {
        batched_args ba = batched_shape(0, 1, 7, 5, 3, 0.5f, 0.25f, 4);
        float *x = random_host(ba.na, -1, 1, 602), *w = random_host(ba.nb, -1, 1, 603);
        float *c0 = random_host(ba.nc, -1, 1, 604), *r1 = host(ba.nc), *r2 = host(ba.nc);
        run_gemm_batched(&lean, &ba, x, w, c0, r1, 0);
        run_gemm_batched(cpu, &ba, x, w, c0, r2, 1);
        compare("gemm_batched, composed", &lean, r1, r2, ba.nc, BITS);
        free(x), free(w), free(c0), free(r1), free(r2);
    }
    /* the updates, every option */
    for (size_t c = 0; c < N_OPT; c++) {
        run_optimizer(&lean, &opt_cases[c], n, 3, p, 0);
        run_optimizer(cpu, &opt_cases[c], n, 3, q, 1);
        compare("update, composed", &lean, p, q, 5 * n, BITS);
    }
    for (int k = 0; k < OPT2_COUNT; k++) {
        run_optimizer2(&lean, k, n, 3, p, 0);
        run_optimizer2(cpu, k, n, 3, q, 1);
        compare("update (more optimizers), composed", &lean, p, q, 3 * n, BITS);
    }
    lean_conv_pool_norm(&lean, cpu);
    ck_assert_int_eq(kc_device_status(&lean), KC_OK);

    /* a primitive failing inside a composition fails the op, and the failure sticks */
    kc_buf x = kc_test_alloc(&lean, 64 * 4);
    kc_pool2d_desc pd = {
        .n = 1, .h = 2, .w = 2, .c = 1, .ph = 2, .pw = 2, .sh = 2, .sw = 2, .oh = 1, .ow = 1};
    fail_fill = 1;
    ck_assert_int_eq(kc_maxpool2d_forward(&lean, &pd, x, kc_buf_f(x, 8), kc_buf_f(x, 16)),
                     KC_ERUNTIME);
    ck_assert_str_eq(lean.err.msg, "cpu-lean backend: fill failed");
    ck_assert_int_eq(kc_mul(&lean, x, x, x, 4), KC_ERUNTIME);
    kc_device_clear_error(&lean);

    /* a slot that fails without a message gets one from core/ops.c */
    fail_fill = 1;
    ck_assert_int_eq(kc_fill(&lean, x, 1.0f, 4), KC_ERUNTIME);
    ck_assert_str_eq(lean.err.msg, "cpu-lean backend: fill failed");
    kc_device_clear_error(&lean);
    kc_free(&lean, &x);
    kc_device_close(&lean);
    free(a), free(b), free(p), free(q);
}
END_TEST

/* supports_op declining an op (for every geometry, or for some) sends it to
 * the composition without calling the slot. */
START_TEST(test_declined_ops_are_composed) {
    make_test_tables();
    memset(native_calls, 0, sizeof native_calls);
    kc_device picky, *cpu = kc_test_device_named("cpu", 0);
    ck_assert_ptr_nonnull(cpu);
    kc_error e = {0};
    ck_assert_msg(kc_device_open(&picky, &picky_be, NULL, &e) == KC_OK, "%s", e.msg);
    ck_assert(!kc_supports_op(&picky, KC_OP_MUL, NULL));
    ck_assert(kc_op_available(&picky, KC_OP_MUL, NULL));
    size_t n = 1001;
    float *a = random_host(n, -2, 2, 610), *b = random_host(n, -2, 2, 611);
    float *p = host(5 * n), *q = host(5 * n);
    dbuf pa = dput(&picky, a, n), pb = dput(&picky, b, n), py = dnan(&picky, n);
    dbuf ca = dput(cpu, a, n), cb = dput(cpu, b, n), cy = dnan(cpu, n);
    /* declined: composed, the slot never called */
    kc_mul(&picky, pa.at, pb.at, py.at, n);
    kc_fallback_mul(cpu, ca.at, cb.at, cy.at, n);
    dget("declined mul", &py, p), dget("mul composed", &cy, q);
    compare("declined mul", &picky, p, q, n, BITS);
    kc_softmax_forward(&picky, pa.at, py.at, 7, 143);
    kc_fallback_softmax_forward(cpu, ca.at, cy.at, 7, 143);
    dget("declined softmax", &py, p), dget("softmax composed", &cy, q);
    compare("declined softmax", &picky, p, q, n, BITS);
    ck_assert_int_eq(native_calls[KC_OP_MUL], 0);
    ck_assert_int_eq(native_calls[KC_OP_SOFTMAX], 0);
    /* accepted: the slot runs */
    if (picky_be.clip) {
        kc_clip(&picky, pa.at, py.at, -1, 1, n);
        ck_assert_int_eq(native_calls[KC_OP_CLIP], 1);
    }
    if (picky_be.bias_add) {
        kc_bias_add(&picky, pa.at, pb.at, 7, 143);
        ck_assert_int_eq(native_calls[KC_OP_BIAS_ADD], 1);
    }
    dfree(&pa), dfree(&pb), dfree(&py), dfree(&ca), dfree(&cb), dfree(&cy);
    run_optimizer(&picky, &opt_cases[8], n, 2, p, 0); /* adam, amsgrad */
    run_optimizer(cpu, &opt_cases[8], n, 2, q, 1);
    compare("declined adam", &picky, p, q, 5 * n, BITS);
    ck_assert_int_eq(native_calls[KC_OP_ADAM], 0);
    ck_assert_int_eq(kc_device_status(&picky), KC_OK);

    /* declined by geometry: a 3x3 conv runs natively, a 5x3 one is composed */
    if (picky_be.conv2d_forward) {
        kc_conv2d_desc small = conv_desc(conv_cases[1]), large = conv_desc(conv_cases[6]);
        ck_assert(kc_supports_op(&picky, KC_OP_CONV2D, &small));
        ck_assert(!kc_supports_op(&picky, KC_OP_CONV2D, &large));
        ck_assert(kc_op_available(&picky, KC_OP_CONV2D, &large));
        ck_assert_uint_eq(kc_conv2d_workspace(&picky, &large), 0);
        size_t nx = conv_x_size(&small), nw = conv_w_size(&small), ny = conv_y_size(&small);
        float *x = random_host(nx, -1, 1, 612), *w = random_host(nw, -1, 1, 613);
        float *y = host(ny), *want = host(ny);
        run_conv_forward(&picky, &small, x, w, y);
        run_conv_forward(cpu, &small, x, w, want);
        compare("conv on cpu-picky", &picky, y, want, ny, BITS);
        ck_assert_int_eq(native_calls[KC_OP_CONV2D], 1);
        free(x), free(w), free(y), free(want);
        nx = conv_x_size(&large), nw = conv_w_size(&large), ny = conv_y_size(&large);
        x = random_host(nx, -1, 1, 614), w = random_host(nw, -1, 1, 615);
        y = host(ny), want = host(ny);
        run_conv_forward(&picky, &large, x, w, y);
        run_conv_forward(cpu, &large, x, w, want);
        compare("declined conv on cpu-picky", &picky, y, want, ny,
                close_to(1e-5 * max_abs(want, ny), 1e-4));
        ck_assert_int_eq(native_calls[KC_OP_CONV2D], 1);
        ck_assert_int_eq(kc_device_status(&picky), KC_OK);
        free(x), free(w), free(y), free(want);
    }
    kc_device_close(&picky);
    free(a), free(b), free(p), free(q);
}
END_TEST

/* ------------------------------------------------- a model on cpu-lean */

/* A small CNN with both poolings, "same" and "valid", a stride, and norm
 * constraints on two axis layouts. */
static const char *lean_cnn =
    "model:\n"
    "  layers:\n"
    "    - Input: {shape: [9, 8, 2]}\n"
    "    - Conv2D: {filters: 4, kernel_size: 3, padding: same, activation: relu,"
    " kernel_constraint: {MaxNorm: {max_value: 0.6, axis: [0, 2]}}}\n"
    "    - MaxPooling2D: {pool_size: 2, padding: same}\n"
    "    - Conv2D: {filters: 3, kernel_size: [2, 3], strides: [1, 2], activation: tanh}\n"
    "    - AveragePooling2D: {pool_size: 2, strides: 1, padding: same}\n"
    "    - Flatten\n"
    "    - Dense: {units: 3, activation: softmax, kernel_constraint: max_norm}\n";

/* Every weight after `steps` training steps of an optimizer on device d:
 * forward, sparse crossentropy on the host, backward, update, constraints. */
static float *train_lean_cnn(kc_device *d, kc_optimizer_kind kind, int steps, size_t *nv) {
    kc_error e = {0};
    kc_config *cfg = NULL;
    ck_assert_msg(kc_config_parse_text("t.yaml", ".", lean_cnn, strlen(lean_cnn), &cfg, &e) == 0,
                  "%s", e.msg);
    kc_model *m = cfg->model;
    const int n = 4;
    ck_assert_msg(kc_model_plan(m, d, n, 1, &e) == 0, "%s", e.msg);
    ck_assert_msg(kc_model_init_weights(m, 5, &e) == 0, "%s", e.msg);
    kc_loss loss;
    ck_assert_int_eq(kc_loss_init(&loss, "sparse_categorical_crossentropy", &e), 0);
    int in = (int)kc_shape_numel(&m->input_shape),
        out = (int)kc_shape_numel(kc_model_output_shape(m));
    float *x = random_host((size_t)(n * in), -1, 1, 700), *y = host((size_t)n);
    float *pred = host((size_t)(n * out)), *grad = host((size_t)(n * out));
    for (int i = 0; i < n; i++)
        y[i] = (float)(i % out);
    kc_test_put(d, m->x, x, sizeof(float) * (size_t)(n * in));
    kc_optimizer_config oc;
    kc_optimizer_config_default(kind, &oc);
    oc.learning_rate = 0.01;
    kc_optimizer *opt;
    ck_assert_msg(kc_optimizer_create(&oc, &opt, &e) == 0, "%s", e.msg);
    kc_param_ref refs[16];
    int np = kc_model_params(m, refs, 16);
    size_t sizes[16];
    const char *names[16];
    kc_buf w[16], g[16];
    kc_param *ps[16];
    for (int i = 0; i < np; i++) {
        sizes[i] = (size_t)kc_shape_numel(&refs[i].param->shape);
        names[i] = refs[i].name;
        w[i] = refs[i].param->value, g[i] = refs[i].param->grad, ps[i] = refs[i].param;
    }
    ck_assert_msg(kc_optimizer_build(opt, d, np, sizes, names, &e) == 0, "%s", e.msg);
    for (int t = 0; t < steps; t++) {
        kc_exec ex = {.dev = d, .batch = n, .training = 1, .seed = 3, .step = (uint64_t)t};
        ck_assert_int_eq(kc_model_forward(m, &ex), KC_OK);
        kc_test_get(d, pred, m->z[m->nlayers - 1], sizeof(float) * (size_t)(n * out));
        kc_loss_compute(&loss, pred, y, n, out, 1, NULL, grad);
        kc_test_put(d, kc_model_dy(m), grad, sizeof(float) * (size_t)(n * out));
        ck_assert_int_eq(kc_model_backward(m, &ex, 1), KC_OK);
        ck_assert_int_eq(kc_optimizer_step(opt, w, g), KC_OK);
        ck_assert_int_eq(kc_constraints_apply(d, ps, np), KC_OK);
    }
    *nv = (size_t)m->nvalues;
    float *v = kc_test_fetch(d, m->values, *nv);
    kc_test_ok(d, "training the CNN");
    kc_optimizer_free(opt);
    kc_config_free(cfg);
    free(x), free(y), free(pred), free(grad);
    return v;
}

/* The CNN trained a few steps with only the primitive core (every conv,
 * pooling, constraint and update composed) ends where the cpu backend's
 * fused ops take it. */
START_TEST(test_lean_cnn_trains_like_cpu) {
    make_test_tables();
    kc_device lean, *cpu = kc_test_device_named("cpu", 0);
    ck_assert_ptr_nonnull(cpu);
    kc_error e = {0};
    ck_assert_msg(kc_device_open(&lean, &lean_be, NULL, &e) == KC_OK, "%s", e.msg);
    const kc_optimizer_kind kinds[] = {KC_OPTIMIZER_NADAM, KC_OPTIMIZER_RMSPROP};
    for (int k = 0; k < 2; k++) {
        size_t na, nb;
        float *a = train_lean_cnn(&lean, kinds[k], 4, &na),
              *b = train_lean_cnn(cpu, kinds[k], 4, &nb);
        ck_assert_uint_eq(na, nb);
        compare("CNN weights after training on cpu-lean", &lean, a, b, na, close_to(1e-5, 1e-5));
        float *w0 = train_lean_cnn(cpu, kinds[k], 0, &nb);
        ck_assert_msg(memcmp(w0, b, nb * sizeof(float)) != 0, "training moved no weight");
        free(a), free(b), free(w0);
    }
    kc_device_close(&lean);
}
END_TEST

/* ------------------------------------------------------ hand-computed values */

/* x = 1..16 as a 4x4 image; kernel [[1,2,0],[0,1,-1],[3,0,1]]; each output
 * is the window sum by hand, e.g. valid (0,0) = 1+4+6-7+27+11 = 42 and each
 * step right adds sum(w) = 7, each step down adds 4*7. */
static void conv_by_hand(kc_device *dev) {
    float x[16], w[9] = {1, 2, 0, 0, 1, -1, 3, 0, 1};
    for (int i = 0; i < 16; i++)
        x[i] = (float)(i + 1);
    const float valid[4] = {42, 49, 70, 77};
    const float same[16] = {5, 21, 25, 25, 11, 42, 49, 52, 23, 70, 77, 80, 17, 28, 31, 51};
    const float same_s2[4] = {42, 52, 28, 51}; /* padding 0 top/left, 1 bottom/right */
    {
        float y[16];
        kc_conv2d_desc d = conv_desc((conv_case){1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 0});
        run_conv_forward(dev, &d, x, w, y);
        compare("valid", dev, y, valid, 4, close_to(1e-5, 0));
        d = conv_desc((conv_case){1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1});
        run_conv_forward(dev, &d, x, w, y);
        compare("same", dev, y, same, 16, close_to(1e-5, 0));
        d = conv_desc((conv_case){1, 4, 4, 1, 3, 3, 1, 2, 2, 1, 1, 1});
        ck_assert_int_eq(d.pad_t, 0);
        ck_assert_int_eq(d.oh, 2);
        run_conv_forward(dev, &d, x, w, y);
        compare("same stride 2", dev, y, same_s2, 4, close_to(1e-5, 0));
        /* backward data of the valid conv with dy = 1: each input pixel sums
         * the kernel taps that touch it, e.g. the corner sees only w[0][0] */
        d = conv_desc((conv_case){1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 0});
        float ones[4] = {1, 1, 1, 1}, dx[16];
        run_conv_backward_data(dev, &d, ones, w, dx);
        ck_assert_float_eq_tol(dx[0], 1, 1e-6);
        ck_assert_float_eq_tol(dx[1], 1 + 2, 1e-6);
        ck_assert_float_eq_tol(dx[5], 1 + 2 + 0 + 1, 1e-6);
        ck_assert_float_eq_tol(dx[15], 1, 1e-6);
        /* backward filter with dy = 1: tap (ky, kx) sums x over a 2x2 block */
        float dw[9] = {0};
        run_conv_backward_filter(dev, &d, x, ones, dw, 0.0f);
        ck_assert_float_eq_tol(dw[0], 1 + 2 + 5 + 6, 1e-5);
        ck_assert_float_eq_tol(dw[8], 11 + 12 + 15 + 16, 1e-5);
    }
}

/* The same values from the ops and from their compositions. */
START_TEST(test_conv_by_hand) {
    KC_FOR_EACH_DEVICE(dev) {
        for (composed_ops = 0; composed_ops < 2; composed_ops++)
            conv_by_hand(dev);
        composed_ops = 0;
    }
}
END_TEST

/* 3x3 image [[1,5,2],[7,3,9],[4,8,6]], pool 2x2 stride 2 "same": windows
 * overhang one row and column; only real cells count. */
static void pool_by_hand(kc_device *dev) {
    const float x[9] = {1, 5, 2, 7, 3, 9, 4, 8, 6};
    {
        kc_pool2d_desc d = pool_desc((pool_case){1, 3, 3, 1, 2, 2, 2, 2, 1});
        ck_assert_int_eq(d.oh, 2);
        ck_assert_int_eq(d.pad_t, 0);
        float y[9], dx[9];
        int32_t arg[4], flat[4];
        run_maxpool_forward(dev, &d, x, y, arg);
        const float want_max[4] = {7, 9, 8, 6};
        const int32_t want_arg[4] = {3, 5, 7, 8};
        compare("maxpool", dev, y, want_max, 4, SAME);
        for (size_t i = 0; i < 4; i++) /* a composition stores window positions */
            flat[i] = composed_ops ? window_to_flat(&d, i, arg[i]) : arg[i];
        compare_i32("maxpool argmax", dev, flat, want_arg, 4);
        const float g[4] = {1, 2, 3, 4};
        run_maxpool_backward(dev, &d, g, arg, dx);
        const float want_dx[9] = {0, 0, 0, 1, 0, 2, 0, 3, 4};
        compare("maxpool backward", dev, dx, want_dx, 9, SAME);

        run_avgpool_forward(dev, &d, x, y);
        const float want_avg[4] = {(1 + 5 + 7 + 3) / 4.0f, (2 + 9) / 2.0f, (4 + 8) / 2.0f, 6};
        compare("avgpool", dev, y, want_avg, 4, close_to(1e-6, 0));
        run_avgpool_backward(dev, &d, g, dx);
        const float want_adx[9] = {0.25f, 0.25f, 1, 0.25f, 0.25f, 1, 1.5f, 1.5f, 4};
        compare("avgpool backward", dev, dx, want_adx, 9, close_to(1e-6, 0));

        /* 3x3 stride 1 "same": padding on every side; the corner averages 4 cells */
        d = pool_desc((pool_case){1, 3, 3, 1, 3, 3, 1, 1, 1});
        ck_assert_int_eq(d.pad_t, 1);
        run_avgpool_forward(dev, &d, x, y);
        ck_assert_float_eq_tol(y[0], (1 + 5 + 7 + 3) / 4.0f, 1e-6);
        ck_assert_float_eq_tol(y[4], 45 / 9.0f, 1e-6);
        ck_assert_float_eq_tol(y[5], (5 + 2 + 3 + 9 + 8 + 6) / 6.0f, 1e-6);
    }
}

/* The same values from the ops and from their compositions. */
START_TEST(test_pool_by_hand) {
    KC_FOR_EACH_DEVICE(dev) {
        for (composed_ops = 0; composed_ops < 2; composed_ops++)
            pool_by_hand(dev);
        composed_ops = 0;
    }
}
END_TEST

typedef struct act_point {
    kc_act act;
    float alpha, x;
    double y, dydx;
} act_point;

/* Values from the formulas in KERAS.md section 5, evaluated in double. */
static const act_point act_points[] = {
    {KC_ACT_RELU6, 0, 7, 6, 0},
    {KC_ACT_RELU6, 0, 2.5f, 2.5, 1},
    {KC_ACT_HARD_SILU, 0, 1.5f, 1.125, 1.0},
    {KC_ACT_HARD_SILU, 0, -4, 0, 0},
    {KC_ACT_MISH, 0, 1, 0.8650983882673103, 1.0490362200997922},
    {KC_ACT_MISH, 0, -2, -0.2525014826957089, -0.1083550924203939},
    {KC_ACT_LINEAR, 0, -1.5f, -1.5, 1},
    {KC_ACT_RELU, 0, -1, 0, 0},
    {KC_ACT_RELU, 0, 2, 2, 1},
    {KC_ACT_SIGMOID, 0, 0, 0.5, 0.25},
    {KC_ACT_SIGMOID, 0, 2, 0.8807970779778823, 0.10499358540350662},
    {KC_ACT_SIGMOID, 0, -30, 9.3576229688393e-14, 9.357622968838424e-14},
    {KC_ACT_TANH, 0, 1, 0.7615941559557649, 0.41997434161402614},
    {KC_ACT_ELU, 1, -1, -0.6321205588285577, 0.36787944117144233},
    {KC_ACT_ELU, 0.5f, -1, -0.31606027941427883, 0.18393972058572117},
    {KC_ACT_ELU, 1, 2, 2, 1},
    {KC_ACT_SELU, 0, -1, -1.1113307378125625, 0.646768603034814},
    {KC_ACT_SELU, 0, 2, 2.101401974710961, 1.0507009873554805},
    {KC_ACT_SOFTPLUS, 0, 0, 0.6931471805599453, 0.5},
    {KC_ACT_SOFTPLUS, 0, -20, 2.061153620314381e-09, 2.0611536181902033e-09},
    {KC_ACT_SOFTPLUS, 0, 3, 3.048587351573742, 0.9525741268224334},
    {KC_ACT_SOFTPLUS, 0, 100, 100, 1},
    {KC_ACT_SOFTSIGN, 0, 3, 0.75, 0.0625},
    {KC_ACT_SWISH, 0, 1, 0.7310585786300049, 0.9276705118714867},
    {KC_ACT_SWISH, 0, -2, -0.2384058440442351, -0.09078424878489547},
    {KC_ACT_GELU, 0, 1, 0.8413447460685429, 1.0833154705876864},
    {KC_ACT_GELU, 0, -1, -0.15865525393145707, -0.08331547058768629},
    {KC_ACT_LEAKY_RELU, 0.2f, -2, -0.4, 0.2},
    {KC_ACT_LEAKY_RELU, 0.2f, 3, 3, 1},
    {KC_ACT_HARD_SIGMOID, 0, 1, 0.6666666666666666, 1.0 / 6},
    {KC_ACT_HARD_SIGMOID, 0, -4, 0, 0},
    {KC_ACT_HARD_SIGMOID, 0, 4, 1, 0},
    {KC_ACT_EXPONENTIAL, 0, 1, 2.718281828459045, 2.718281828459045},
    {KC_ACT_EXPONENTIAL, 0, -2, 0.1353352832366127, 0.1353352832366127},
};

START_TEST(test_activations_by_hand) {
    for (size_t i = 0; i < sizeof act_points / sizeof act_points[0]; i++) {
        const act_point *p = &act_points[i];
        KC_FOR_EACH_DEVICE(d) {
            float y, dx, one = 1;
            run_act_forward(d, p->act, p->alpha, &p->x, &y, 1);
            run_act_backward(d, p->act, p->alpha, &p->x, &y, &one, &dx, 1);
            ck_assert_msg(fabs(y - p->y) <= 3e-7 * fabs(p->y), "%s act %d at %g: %.9g vs %.9g",
                          d->name, p->act, p->x, y, p->y);
            ck_assert_msg(fabs(dx - p->dydx) <= 3e-6 * fabs(p->dydx),
                          "%s act %d slope at %g: %.9g vs %.9g", d->name, p->act, p->x, dx,
                          p->dydx);
        }
    }
}
END_TEST

/* Single values on a device, each at its own offset of one allocation. */
typedef struct cells {
    kc_device *d;
    kc_buf b;
} cells;

enum { NCELLS = 16 };

static cells cells_new(kc_device *d) {
    cells c = {d, kc_test_alloc(d, NCELLS * sizeof(float))};
    return c;
}

static kc_buf cell(cells *c, int k) {
    return kc_buf_f(c->b, (size_t)k);
}

static void cell_set(cells *c, int k, float v) {
    kc_test_put(c->d, cell(c, k), &v, sizeof v);
}

static float cell_get(cells *c, int k) {
    float v;
    kc_test_get(c->d, &v, cell(c, k), sizeof v);
    return v;
}

/* One step each, values worked out in double (see the comments). */
START_TEST(test_optimizers_by_hand) {
    enum { W, G, V, MS, MG, MOM, M, VV, G2, VHAT };
    KC_FOR_EACH_DEVICE(d) {
        cells c = cells_new(d);
        /* SGD nesterov, lr 0.1, momentum 0.9: v = 0.9*0.2 - 0.1*0.5 = 0.13;
         * w = 1 + 0.9*0.13 - 0.05 = 1.067 */
        cell_set(&c, W, 1), cell_set(&c, G, 0.5f), cell_set(&c, V, 0.2f);
        kc_sgd_update(d, cell(&c, W), cell(&c, G), cell(&c, V), 1, 0.1f, 0.9f, 1);
        ck_assert_float_eq_tol(cell_get(&c, V), 0.13f, 1e-7);
        ck_assert_float_eq_tol(cell_get(&c, W), 1.067f, 1e-6);
        /* plain SGD */
        cell_set(&c, W, 1);
        kc_sgd_update(d, cell(&c, W), cell(&c, G), KC_BUF_NULL, 1, 0.1f, 0.0f, 0);
        ck_assert_float_eq_tol(cell_get(&c, W), 0.95f, 1e-7);

        /* RMSprop centered, lr 0.01, rho 0.9: ms = 0.09 + 0.1*0.25 = 0.115,
         * mg = 0.09 + 0.05 = 0.14, inc = 0.005 / sqrt(0.115 - 0.0196 + 1e-7) */
        cell_set(&c, MS, 0.1f), cell_set(&c, MG, 0.1f), cell_set(&c, MOM, 0.02f);
        cell_set(&c, W, 1);
        kc_rmsprop_update(d, cell(&c, W), cell(&c, G), cell(&c, MS), cell(&c, MG), KC_BUF_NULL, 1,
                          0.01f, 0.9f, 0.1f, 0.0f, 1e-7f, 1);
        ck_assert_float_eq_tol(cell_get(&c, MS), 0.115f, 1e-7);
        ck_assert_float_eq_tol(cell_get(&c, MG), 0.14f, 1e-7);
        ck_assert_float_eq_tol(cell_get(&c, W), 0.9838119107783668f, 1e-6);
        /* the same with momentum 0.5 from mom = 0.02: mom = 0.01 + inc */
        cell_set(&c, MS, 0.1f), cell_set(&c, MG, 0.1f), cell_set(&c, W, 1);
        kc_rmsprop_update(d, cell(&c, W), cell(&c, G), cell(&c, MS), cell(&c, MG), cell(&c, MOM), 1,
                          0.01f, 0.9f, 0.1f, 0.5f, 1e-7f, 1);
        ck_assert_float_eq_tol(cell_get(&c, MOM), 0.026188089221633133f, 1e-6);
        ck_assert_float_eq_tol(cell_get(&c, W), 0.9738119107783668f, 1e-6);

        /* Adam, two steps, lr 0.001: alpha_t = lr sqrt(1-b2^t)/(1-b1^t);
         * t=1: m = 0.05, v = 0.00025; t=2 with g = -0.25: m = 0.02, v = 0.00031225 */
        cell_set(&c, M, 0), cell_set(&c, VV, 0), cell_set(&c, W, 1);
        float a1 = 0.001f * sqrtf(1 - 0.999f) / (1 - 0.9f);
        kc_adam_update(d, cell(&c, W), cell(&c, G), cell(&c, M), cell(&c, VV), KC_BUF_NULL, 1, a1,
                       0.1f, 0.001f, 1e-7f, 0);
        ck_assert_float_eq_tol(cell_get(&c, M), 0.05f, 1e-7);
        ck_assert_float_eq_tol(cell_get(&c, VV), 0.00025f, 1e-8);
        ck_assert_float_eq_tol(cell_get(&c, W), 0.9990000063245154f, 2e-7);
        float a2 = 0.001f * sqrtf(1 - 0.999f * 0.999f) / (1 - 0.81f);
        cell_set(&c, G2, -0.25f);
        kc_adam_update(d, cell(&c, W), cell(&c, G2), cell(&c, M), cell(&c, VV), KC_BUF_NULL, 1, a2,
                       0.1f, 0.001f, 1e-7f, 0);
        ck_assert_float_eq_tol(cell_get(&c, M), 0.02f, 1e-7);
        ck_assert_float_eq_tol(cell_get(&c, VV), 0.00031225f, 1e-8);
        ck_assert_float_eq_tol(cell_get(&c, W), 0.9987336707920792f, 2e-7);
        /* amsgrad keeps the larger second moment: vhat = 0.01 > v */
        cell_set(&c, VHAT, 0.01f);
        cell_set(&c, M, 0), cell_set(&c, VV, 0), cell_set(&c, W, 1);
        kc_adam_update(d, cell(&c, W), cell(&c, G), cell(&c, M), cell(&c, VV), cell(&c, VHAT), 1,
                       a1, 0.1f, 0.001f, 1e-7f, 1);
        ck_assert_float_eq_tol(cell_get(&c, VHAT), 0.01f, 1e-9);
        ck_assert_float_eq_tol(cell_get(&c, W), 1 - a1 * 0.05f / (0.1f + 1e-7f), 1e-7);
        kc_test_ok(d, "updates by hand");
        kc_free(d, &c.b);
    }
}
END_TEST

/* The other optimizers' kernels, one element each, worked out in double. */
START_TEST(test_more_optimizers_by_hand) {
    enum { W, G, S1, S2, GN, Z, V0 = 8, Y0 = 12 };
    KC_FOR_EACH_DEVICE(d) {
        cells c = cells_new(d);
        /* Adagrad, lr 0.01: acc = 0.1 + 0.25; w = 1 - 0.005 / sqrt(0.35 + 1e-7) */
        cell_set(&c, W, 1), cell_set(&c, G, 0.5f), cell_set(&c, S1, 0.1f), cell_set(&c, S2, 0.2f);
        kc_adagrad_update(d, cell(&c, W), cell(&c, G), cell(&c, S1), 1, 0.01f, 1e-7f);
        ck_assert_float_eq_tol(cell_get(&c, S1), 0.35f, 1e-7);
        ck_assert_float_eq_tol(cell_get(&c, W), 1 - 0.005 / sqrt(0.3500001), 1e-7);
        /* Adadelta, lr 1, rho 0.95: ag = 0.095 + 0.0125 = 0.1075;
         * d = -sqrt(0.2000001) 0.5 / sqrt(0.1075001) = -0.68199; ad = 0.19 + 0.05 d^2 */
        cell_set(&c, W, 1), cell_set(&c, S1, 0.1f), cell_set(&c, S2, 0.2f);
        kc_adadelta_update(d, cell(&c, W), cell(&c, G), cell(&c, S1), cell(&c, S2), 1, 1.0f, 0.95f,
                           0.05f, 1e-7f);
        double dd = -sqrt(0.2000001) * 0.5 / sqrt(0.1075001);
        ck_assert_float_eq_tol(cell_get(&c, S1), 0.1075f, 1e-8);
        ck_assert_float_eq_tol(cell_get(&c, S2), 0.19 + 0.05 * dd * dd, 1e-7);
        ck_assert_float_eq_tol(cell_get(&c, W), 1 + dd, 1e-6);
        /* Adamax, lr 0.002, t = 1: m = 0.1 + (-0.5 - 0.1) 0.1 = 0.04;
         * u = max(0.999 * 0.6, 0.5) = 0.5994; w = 1 - 0.002 * 0.04 / (0.1 (0.5994 + 1e-7)) */
        cell_set(&c, GN, -0.5f);
        cell_set(&c, W, 1), cell_set(&c, S1, 0.1f), cell_set(&c, S2, 0.6f);
        kc_adamax_update(d, cell(&c, W), cell(&c, GN), cell(&c, S1), cell(&c, S2), 1, 0.002f, 0.1f,
                         0.999f, 0.1f, 1e-7f);
        ck_assert_float_eq_tol(cell_get(&c, S1), 0.04f, 1e-8);
        ck_assert_float_eq_tol(cell_get(&c, S2), 0.5994f, 1e-7);
        ck_assert_float_eq_tol(cell_get(&c, W), 1 - 0.002 * 0.04 / (0.1 * 0.5994001), 1e-7);
        /* Nadam, t = 1: u1 = 0.468, u2 = 0.48528; m = 0.05, v = 0.00025;
         * m_hat = u2 m / (1 - u1 u2) + g; v_hat = 0.25 */
        kc_nadam_coef nc = {.lr = 0.002f,
                            .eps = 1e-7f,
                            .one_minus_b1 = 0.1f,
                            .one_minus_b2 = 0.001f,
                            .u_next = 0.48528f,
                            .one_minus_u = 0.532f,
                            .one_minus_prod_next = (float)(1 - 0.468 * 0.48528),
                            .one_minus_prod = 0.532f,
                            .one_minus_b2_power = 0.001f};
        cell_set(&c, W, 1), cell_set(&c, S1, 0), cell_set(&c, S2, 0);
        kc_nadam_update(d, cell(&c, W), cell(&c, G), cell(&c, S1), cell(&c, S2), 1, &nc);
        double m_hat = 0.48528 * 0.05 / (1 - 0.468 * 0.48528) + 0.5;
        ck_assert_float_eq_tol(cell_get(&c, S1), 0.05f, 1e-8);
        ck_assert_float_eq_tol(cell_get(&c, S2), 0.00025f, 1e-10);
        ck_assert_float_eq_tol(cell_get(&c, W), 1 - 0.002 * m_hat / (0.5 + 1e-7), 1e-7);
        /* Lion: sign(0.9 * 0.2 + 0.1 * -0.5) = sign(0.13) = 1; m = 0.198 - 0.005 */
        cell_set(&c, W, 1), cell_set(&c, S1, 0.2f);
        kc_lion_update(d, cell(&c, W), cell(&c, GN), cell(&c, S1), 1, 0.001f, 0.9f, 0.99f);
        ck_assert_float_eq_tol(cell_get(&c, W), 0.999f, 1e-7);
        ck_assert_float_eq_tol(cell_get(&c, S1), 0.193f, 1e-7);
        /* ... and a zero combination leaves w alone */
        cell_set(&c, Z, 0), cell_set(&c, W, 1), cell_set(&c, S1, 0);
        kc_lion_update(d, cell(&c, W), cell(&c, Z), cell(&c, S1), 1, 0.001f, 0.9f, 0.99f);
        ck_assert_float_eq(cell_get(&c, W), 1.0f);

        /* clipping and weight decay */
        const float v[4] = {3, 4, 0, 0};
        kc_test_put(d, cell(&c, V0), v, sizeof v);
        dbuf out = dput_double(d, 0.0);
        kc_sum_squares(d, cell(&c, V0), 4, out.at);
        ck_assert_double_eq(dget_double("sum_squares", &out), 25.0);
        kc_test_put(d, out.at, &(double){0.0}, sizeof(double));
        kc_sum_squares(d, cell(&c, V0), 0, out.at);
        ck_assert_double_eq(dget_double("sum_squares of nothing", &out), 0.0);
        dfree(&out);
        kc_scale_div(d, cell(&c, V0), cell(&c, Y0), 3.0f, 4.0f, 2);
        ck_assert_float_eq(cell_get(&c, Y0), 2.25f);
        ck_assert_float_eq(cell_get(&c, Y0 + 1), 3.0f);
        const float c4[4] = {-2.0f, 0.5f, NAN, 7.0f};
        kc_test_put(d, cell(&c, V0), c4, sizeof c4);
        kc_clip(d, cell(&c, V0), cell(&c, V0), -1.0f, 1.0f, 4);
        ck_assert_float_eq(cell_get(&c, V0), -1.0f);
        ck_assert_float_eq(cell_get(&c, V0 + 1), 0.5f);
        ck_assert(isnan(cell_get(&c, V0 + 2)));
        ck_assert_float_eq(cell_get(&c, V0 + 3), 1.0f);
        cell_set(&c, W, 2);
        kc_weight_decay(d, cell(&c, W), 0.1f, 0.5f, 1);
        ck_assert_float_eq_tol(cell_get(&c, W), 1.9f, 1e-7);
        kc_test_ok(d, "updates by hand");
        kc_free(d, &c.b);
    }
}
END_TEST

START_TEST(test_penalty_by_hand) {
    const float x[] = {1, -2, 0, 3};
    KC_FOR_EACH_DEVICE(d) {
        float g[4] = {0, 0, 0, 0.5f};
        /* 0.1 * (1 + 2 + 0 + 3) + 0.01 * (1 + 4 + 0 + 9) */
        ck_assert_close(run_penalty(d, x, g, 4, 0.1f, 0.01f, 0.0), 0.74, 1e-7, 0);
        /* g += 0.1 sign(x) + 0.02 x; sign(0) = 0 */
        ck_assert_close(g[0], 0.12, 1e-7, 0);
        ck_assert_close(g[1], -0.14, 1e-7, 0);
        ck_assert_close(g[2], 0.0, 0, 0);
        ck_assert_close(g[3], 0.5 + 0.16, 1e-7, 0);
        /* a zero factor skips its term, so an infinite weight gives no 0 * inf */
        const float big_w[] = {INFINITY, 1};
        float gb[2] = {0, 0};
        ck_assert_close(run_penalty(d, big_w, gb, 2, 0.0f, 0.0f, 0.0), 0.0, 0, 0);
        ck_assert_close(gb[0], 0.0, 0, 0);
        ck_assert_close(run_penalty(d, NULL, NULL, 0, 1.0f, 1.0f, 0.0), 0.0, 0, 0);
    }
}
END_TEST

START_TEST(test_norm_rescale_by_hand) {
    KC_FOR_EACH_DEVICE(d) {
        /* columns of a (2, 2) matrix: norms 5 and 0.5 */
        const int64_t dims[] = {2, 2};
        float w[] = {3, 0.3f, 4, 0.4f};
        run_norm(d, w, dims, 2, 1u, 0.0f, 2.0f, 1.0f); /* MaxNorm(2): 5 -> 2, 0.5 stays */
        ck_assert_close(w[0], 3 * 2 / (5 + 1e-7), 1e-6, 0);
        ck_assert_close(w[2], 4 * 2 / (5 + 1e-7), 1e-6, 0);
        ck_assert_close(w[1], 0.3 * 0.5 / (0.5 + 1e-7), 1e-6, 0);
        /* rows instead: norms |(3, .3)| and |(4, .4)| pinned to 1 */
        float u[] = {3, 0.3f, 4, 0.4f};
        run_norm(d, u, dims, 2, 2u, 1.0f, 1.0f, 1.0f);
        double r0 = sqrt(9 + 0.09), r1 = sqrt(16 + 0.16);
        ck_assert_close(u[0], 3 / (r0 + 1e-7), 1e-6, 0);
        ck_assert_close(u[3], 0.4 / (r1 + 1e-7), 1e-6, 0);
        /* MinMaxNorm(min 1, max 2, rate 0.5): norm 0.5 -> 0.5 * 1 + 0.5 * 0.5 = 0.75 */
        float m[] = {0.3f, 0.4f};
        const int64_t one[] = {2};
        run_norm(d, m, one, 1, 1u, 1.0f, 2.0f, 0.5f);
        ck_assert_close(m[0], 0.3 * 0.75 / (0.5 + 1e-7), 1e-6, 0);
        ck_assert_close(m[1], 0.4 * 0.75 / (0.5 + 1e-7), 1e-6, 0);
        /* a zero slice stays zero */
        float z[] = {0, 0};
        run_norm(d, z, one, 1, 1u, 1.0f, 1.0f, 1.0f);
        ck_assert_close(z[0], 0.0, 0, 0);
    }
}
END_TEST

/* ------------------------------------------- finite differences, every backend */

/* L(p) = sum r * f(p); the analytic gradient of each parameter is compared
 * with the central difference in double, stepping by eps (the step actually
 * taken, after rounding to float, is what divides). */
typedef double (*loss_fn)(void *ctx);

static void check_numeric_grad(const char *what, const kc_device *d, float *param,
                               const float *grad, size_t n, float eps, loss_fn f, void *ctx,
                               double atol, double rtol) {
    for (size_t i = 0; i < n; i++) {
        float keep = param[i];
        param[i] = keep + eps;
        float hi = param[i];
        double lp = f(ctx);
        param[i] = keep - eps;
        float lo = param[i];
        double lm = f(ctx);
        param[i] = keep;
        double num = (lp - lm) / ((double)hi - (double)lo);
        expect(fabs(num - grad[i]) <= atol + rtol * fabs(num),
               "%s on %s d/dp[%zu]: analytic %.7g, numeric %.7g", what, d->name, i, grad[i], num);
    }
}

static double weighted_sum(const float *y, const float *r, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)y[i] * r[i];
    return s;
}

typedef struct conv_ctx {
    kc_device *dev;
    kc_conv2d_desc d;
    float *x, *w, *r, *y;
} conv_ctx;

static double conv_loss(void *p) {
    conv_ctx *c = p;
    run_conv_forward(c->dev, &c->d, c->x, c->w, c->y);
    return weighted_sum(c->y, c->r, conv_y_size(&c->d));
}

START_TEST(test_conv2d_gradients) {
    const conv_case cases[] = {
        {2, 5, 6, 2, 3, 2, 3, 2, 1, 1, 1, 1},
        {1, 7, 7, 2, 3, 3, 2, 1, 1, 2, 2, 1},
        {1, 5, 5, 1, 2, 2, 2, 1, 1, 1, 1, 0},
        {2, 6, 5, 2, 3, 3, 2, 2, 2, 1, 1, 0},
    };
    KC_FOR_EACH_DEVICE(dev) /* the ops, then their compositions */
    for (composed_ops = 0; composed_ops < 2; composed_ops++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            conv_ctx c = {.dev = dev, .d = conv_desc(cases[k])};
            size_t nx = conv_x_size(&c.d), ny = conv_y_size(&c.d), nw = conv_w_size(&c.d);
            c.x = random_host(nx, -1, 1, 200), c.w = random_host(nw, -1, 1, 201);
            c.r = random_host(ny, -1, 1, 202), c.y = host(ny);
            float *dx = host(nx), *dw = host(nw);
            run_conv_backward_data(dev, &c.d, c.r, c.w, dx);
            run_conv_backward_filter(dev, &c.d, c.x, c.r, dw, 0.0f);
            check_numeric_grad(composed_ops ? "composed conv2d data" : "conv2d data", dev, c.x, dx,
                               nx, 1e-2f, conv_loss, &c, 1e-4, 1e-3);
            check_numeric_grad(composed_ops ? "composed conv2d filter" : "conv2d filter", dev, c.w,
                               dw, nw, 1e-2f, conv_loss, &c, 1e-4, 1e-3);
            free(c.x), free(c.w), free(c.r), free(c.y), free(dx), free(dw);
        }
    composed_ops = 0;
}
END_TEST

typedef struct pool_ctx {
    kc_device *dev;
    kc_pool2d_desc d;
    int max;
    float *x, *r, *y;
    int32_t *arg;
} pool_ctx;

static double pool_loss(void *p) {
    pool_ctx *c = p;
    if (c->max)
        run_maxpool_forward(c->dev, &c->d, c->x, c->y, c->arg);
    else
        run_avgpool_forward(c->dev, &c->d, c->x, c->y);
    return weighted_sum(c->y, c->r, pool_y_size(&c->d));
}

START_TEST(test_pool_gradients) {
    const pool_case cases[] = {
        {2, 5, 5, 2, 2, 2, 2, 2, 1},
        {1, 6, 7, 3, 3, 3, 2, 2, 0},
        {1, 5, 4, 2, 3, 2, 1, 1, 1},
    };
    KC_FOR_EACH_DEVICE(dev) /* the ops, then their compositions */
    for (composed_ops = 0; composed_ops < 2; composed_ops++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
            for (int max = 0; max < 2; max++) {
                pool_ctx c = {.dev = dev, .d = pool_desc(cases[k]), .max = max};
                size_t nx = pool_x_size(&c.d), ny = pool_y_size(&c.d);
                /* distinct values 0.05 apart: a step of 0.01 never changes a max */
                c.x = pool_inputs(nx, 0, 210), c.r = random_host(ny, -1, 1, 211), c.y = host(ny);
                c.arg = calloc(ny, sizeof(int32_t));
                float *dx = host(nx);
                if (max) {
                    run_maxpool_forward(dev, &c.d, c.x, c.y, c.arg);
                    run_maxpool_backward(dev, &c.d, c.r, c.arg, dx);
                } else {
                    run_avgpool_backward(dev, &c.d, c.r, dx);
                }
                static const char *const names[2][2] = {{"avgpool", "maxpool"},
                                                        {"composed avgpool", "composed maxpool"}};
                check_numeric_grad(names[composed_ops][max], dev, c.x, dx, nx, 1e-2f, pool_loss, &c,
                                   1e-4, 1e-3);
                free(c.x), free(c.r), free(c.y), free(c.arg), free(dx);
            }
    composed_ops = 0;
}
END_TEST

typedef struct act_ctx {
    kc_device *dev;
    kc_act act;
    float alpha;
    float *x, *r, *y;
    size_t n;
} act_ctx;

static double act_loss(void *p) {
    act_ctx *c = p;
    run_act_forward(c->dev, c->act, c->alpha, c->x, c->y, c->n);
    return weighted_sum(c->y, c->r, c->n);
}

/* Points stay 0.05 away from kinks (0, and +-3 for hard_sigmoid). */
static float away_from_kinks(float x) {
    const float kinks[] = {0, -3, 3};
    for (int k = 0; k < 3; k++)
        if (fabsf(x - kinks[k]) < 0.05f) x = kinks[k] + (x < kinks[k] ? -0.1f : 0.1f);
    return x;
}

START_TEST(test_activation_gradients) {
    size_t n = 64;
    KC_FOR_EACH_DEVICE(dev) {
        for (size_t a = 0; a < N_ACT; a++) {
            act_ctx c = {.dev = dev, .act = act_cases[a].act, .alpha = act_cases[a].alpha, .n = n};
            c.x = random_host(n, -5, 5, 220), c.r = random_host(n, -1, 1, 221), c.y = host(n);
            for (size_t i = 0; i < n; i++)
                c.x[i] = away_from_kinks(c.x[i]);
            float *dx = host(n);
            run_act_forward(dev, c.act, c.alpha, c.x, c.y, n);
            run_act_backward(dev, c.act, c.alpha, c.x, c.y, c.r, dx, n);
            check_numeric_grad(act_cases[a].name, dev, c.x, dx, n, 1e-2f, act_loss, &c, 2e-4, 2e-3);
            free(c.x), free(c.r), free(c.y), free(dx);
        }
    }
}
END_TEST

typedef struct softmax_ctx {
    kc_device *dev;
    int rows, cols;
    float *x, *r, *y;
} softmax_ctx;

static double softmax_loss(void *p) {
    softmax_ctx *c = p;
    run_softmax_forward(c->dev, c->x, c->y, c->rows, c->cols, 0);
    return weighted_sum(c->y, c->r, (size_t)c->rows * c->cols);
}

START_TEST(test_softmax_gradients) {
    KC_FOR_EACH_DEVICE(dev) {
        softmax_ctx c = {.dev = dev, .rows = 3, .cols = 7};
        size_t n = 21;
        c.x = random_host(n, -3, 3, 230), c.r = random_host(n, -1, 1, 231), c.y = host(n);
        float *dx = host(n);
        run_softmax_forward(dev, c.x, c.y, c.rows, c.cols, 0);
        run_softmax_backward(dev, c.y, c.r, dx, c.rows, c.cols, 0);
        check_numeric_grad("softmax", dev, c.x, dx, n, 1e-2f, softmax_loss, &c, 1e-4, 1e-3);
        free(c.x), free(c.r), free(c.y), free(dx);
    }
}
END_TEST

/* ---- depthwise convolution: every backend, fused and composed, against
 * the reference; the lean table's composition against the cpu's, bit for bit */

static const kc_conv2d_desc dw_cases[] = {
    /* n h w c kh kw oc sh sw dh dw pad_t pad_l oh ow */
    {2, 5, 6, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 5, 6}, {2, 7, 6, 3, 3, 3, 6, 2, 2, 1, 1, 0, 0, 3, 2},
    {1, 6, 7, 2, 3, 3, 4, 1, 1, 2, 2, 2, 2, 6, 7}, {3, 4, 5, 5, 3, 2, 15, 2, 1, 1, 1, 1, 0, 2, 5},
    {1, 3, 3, 4, 5, 5, 4, 1, 1, 1, 1, 2, 2, 3, 3},
};

/* y, dx, dw (beta 0.5 over w0) of g on d, natively or composed. */
static void dw_results(kc_device *d, const kc_conv2d_desc *g, int composed, const float *x,
                       const float *w, const float *dy, const float *w0, float *y, float *dx,
                       float *dw) {
    size_t nx = (size_t)g->n * g->h * g->w * g->c, ny = (size_t)g->n * g->oh * g->ow * g->oc;
    size_t nw = (size_t)g->kh * g->kw * g->oc;
    dbuf bx = dput(d, x, nx), bw = dput(d, w, nw), bg = dput(d, dy, ny), bw0 = dput(d, w0, nw);
    dbuf by = dnan(d, ny), bdx = dnan(d, nx);
    if (composed) {
        kc_fallback_depthwise_conv2d_forward(d, g, bx.at, bw.at, by.at);
        kc_fallback_depthwise_conv2d_backward_data(d, g, bg.at, bw.at, bdx.at);
        kc_fallback_depthwise_conv2d_backward_filter(d, g, bx.at, bg.at, bw0.at, 0.5f);
    } else {
        kc_depthwise_conv2d_forward(d, g, bx.at, bw.at, by.at);
        kc_depthwise_conv2d_backward_data(d, g, bg.at, bw.at, bdx.at);
        kc_depthwise_conv2d_backward_filter(d, g, bx.at, bg.at, bw0.at, 0.5f);
    }
    dget("depthwise forward", &by, y), dget("depthwise backward data", &bdx, dx);
    dget("depthwise backward filter", &bw0, dw);
    dfree(&bx), dfree(&bw), dfree(&bg), dfree(&bw0), dfree(&by), dfree(&bdx);
}

START_TEST(test_depthwise_conv2d) {
    make_test_tables();
    kc_device lean, *ref = kc_test_reference(), *cpu = kc_test_device_named("cpu", 0);
    kc_error e = {0};
    ck_assert_msg(kc_device_open(&lean, &lean_be, NULL, &e) == KC_OK, "%s", e.msg);
    for (size_t k = 0; k < sizeof dw_cases / sizeof dw_cases[0]; k++) {
        const kc_conv2d_desc *g = &dw_cases[k];
        size_t nx = (size_t)g->n * g->h * g->w * g->c, ny = (size_t)g->n * g->oh * g->ow * g->oc;
        size_t nw = (size_t)g->kh * g->kw * g->oc;
        float *x = random_host(nx, -1, 1, 700), *w = random_host(nw, -1, 1, 701);
        float *dy = random_host(ny, -1, 1, 702), *w0 = random_host(nw, -1, 1, 703);
        float *r[3] = {host(ny), host(nx), host(nw)}, *o[3] = {host(ny), host(nx), host(nw)};
        dw_results(ref, g, 0, x, w, dy, w0, r[0], r[1], r[2]);
        KC_FOR_EACH_TESTED_DEVICE(d) {
            for (int composed = 0; composed < 2; composed++) {
                dw_results(d, g, composed, x, w, dy, w0, o[0], o[1], o[2]);
                compare("depthwise forward", d, o[0], r[0], ny, close_to(1e-5, 1e-5));
                compare("depthwise backward data", d, o[1], r[1], nx, close_to(1e-5, 1e-5));
                compare("depthwise backward filter", d, o[2], r[2], nw, close_to(1e-5, 1e-5));
            }
        }
        dw_results(&lean, g, 0, x, w, dy, w0, r[0], r[1], r[2]);
        dw_results(cpu, g, 1, x, w, dy, w0, o[0], o[1], o[2]);
        compare("depthwise forward, composed", &lean, r[0], o[0], ny, BITS);
        compare("depthwise backward data, composed", &lean, r[1], o[1], nx, BITS);
        compare("depthwise backward filter, composed", &lean, r[2], o[2], nw, BITS);
        free(x), free(w), free(dy), free(w0);
        for (int i = 0; i < 3; i++)
            free(r[i]), free(o[i]);
    }
    kc_device_close(&lean);
}
END_TEST

/* ---- embedding lookup: fused on every backend and thread count against
 * the reference bit for bit, the composition on every backend, invalid ids */

typedef struct emb_case {
    size_t n, rows, dim;
} emb_case;

static const emb_case emb_cases[] = {
    {7, 5, 3}, {40, 13, 6}, {300, 50, 33}, {5000, 300, 16}, {64, 1, 4}, {3, 2000, 8},
};

static float *emb_ids(size_t n, size_t rows, uint64_t stream) {
    float *p = host(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)kc_rng_below(2024, stream, i, rows);
    return p;
}

/* y, and dw0 + scatter of dy, on d, fused or composed. */
static void emb_results(kc_device *d, const emb_case *c, int composed, const float *ids,
                        const float *w, const float *dy, const float *dw0, float *y, float *dw) {
    size_t ny = c->n * c->dim, nw = c->rows * c->dim;
    dbuf bi = dput(d, ids, c->n), bw = dput(d, w, nw), bg = dput(d, dy, ny);
    dbuf bdw = dput(d, dw0, nw), by = dnan(d, ny);
    if (composed) {
        kc_fallback_embedding_forward(d, bi.at, bw.at, by.at, c->n, c->rows, c->dim);
        kc_fallback_embedding_backward(d, bi.at, bg.at, bdw.at, c->n, c->rows, c->dim);
    } else {
        kc_embedding_forward(d, bi.at, bw.at, by.at, c->n, c->rows, c->dim);
        kc_embedding_backward(d, bi.at, bg.at, bdw.at, c->n, c->rows, c->dim);
    }
    dget("embedding forward", &by, y), dget("embedding backward", &bdw, dw);
    dfree(&bi), dfree(&bw), dfree(&bg), dfree(&bdw), dfree(&by);
}

START_TEST(test_embedding) {
    kc_device *ref = kc_test_reference();
    for (size_t k = 0; k < sizeof emb_cases / sizeof emb_cases[0]; k++) {
        const emb_case *c = &emb_cases[k];
        size_t ny = c->n * c->dim, nw = c->rows * c->dim;
        float *ids = emb_ids(c->n, c->rows, 800 + k), *w = random_host(nw, -1, 1, 801);
        float *dy = random_host(ny, -1, 1, 802), *dw0 = random_host(nw, -1, 1, 803);
        float *ry = host(ny), *rdw = host(nw), *y = host(ny), *dw = host(nw);
        emb_results(ref, c, 0, ids, w, dy, dw0, ry, rdw);
        for (size_t i = 0; i < c->n; i++) /* the definition itself */
            expect(!memcmp(ry + i * c->dim, w + (size_t)ids[i] * c->dim, c->dim * 4),
                   "reference embedding row %zu", i);
        KC_FOR_EACH_DEVICE(d) {
            for (int threads = 1; threads <= 2; threads++) {
                kc_device *dt = kc_test_device_threads(kc_fe_i_, threads);
                ck_assert_msg(dt != NULL, "%s does not open with %d threads", d->name, threads);
                emb_results(dt, c, 0, ids, w, dy, dw0, y, dw);
                compare("embedding forward", dt, y, ry, ny, BITS);
                compare("embedding backward", dt, dw, rdw, nw, BITS);
            }
            emb_results(d, c, 1, ids, w, dy, dw0, y, dw);
            compare("embedding forward, composed", d, y, ry, ny, SAME);
            compare("embedding backward, composed", d, dw, rdw, nw, close_to(1e-6, 1e-5));
        }
        free(ids), free(w), free(dy), free(dw0), free(ry), free(rdw), free(y), free(dw);
    }
}
END_TEST

/* Ids that are not whole numbers in [0, rows): zero rows forward, nothing
 * added backward, and on the cpu and reference backends a failure naming
 * the first one and its position. */
START_TEST(test_embedding_invalid_ids) {
    enum { N = 8, ROWS = 4, DIM = 3 };
    const float ids[N] = {1, 3, 2.5f, 0, -1, 4, NAN, 2};
    const int valid[N] = {1, 1, 0, 1, 0, 0, 0, 1};
    float *w = random_host(ROWS * DIM, -1, 1, 810), *dy = random_host(N * DIM, -1, 1, 811);
    float y[N * DIM], dw[ROWS * DIM], want_dw[ROWS * DIM] = {0};
    for (int i = 0; i < N; i++)
        for (int j = 0; valid[i] && j < DIM; j++)
            want_dw[(int)ids[i] * DIM + j] += dy[i * DIM + j];
    KC_FOR_EACH_DEVICE(d) {
        for (int composed = 0; composed < 2; composed++) {
            dbuf bi = dput(d, ids, N), bw = dput(d, w, ROWS * DIM), bg = dput(d, dy, N * DIM);
            dbuf by = dnan(d, N * DIM), bdw = dput(d, NULL, ROWS * DIM);
            int tells =
                !composed && (!strcmp(d->be->name, "cpu") || !strcmp(d->be->name, "reference"));
            for (int pass = 0; pass < 2; pass++) {
                int rc = composed ? pass ? kc_fallback_embedding_backward(d, bi.at, bg.at, bdw.at,
                                                                          N, ROWS, DIM)
                                         : kc_fallback_embedding_forward(d, bi.at, bw.at, by.at, N,
                                                                         ROWS, DIM)
                         : pass ? kc_embedding_backward(d, bi.at, bg.at, bdw.at, N, ROWS, DIM)
                                  : kc_embedding_forward(d, bi.at, bw.at, by.at, N, ROWS, DIM);
                if (tells) {
                    ck_assert_int_eq(rc, KC_ERUNTIME);
                    ck_assert_msg(strstr(d->err.msg, "id 2.5 at position 2") &&
                                      strstr(d->err.msg, "[0, 4)"),
                                  "%s: %s", d->name, d->err.msg);
                    kc_device_clear_error(d);
                } else {
                    ck_assert_msg(rc == KC_OK, "%s: %s", d->name, d->err.msg);
                }
            }
            dget("embedding forward", &by, y), dget("embedding backward", &bdw, dw);
            for (int i = 0; i < N; i++)
                for (int j = 0; j < DIM; j++)
                    expect(y[i * DIM + j] == (valid[i] ? w[(int)ids[i] * DIM + j] : 0.0f),
                           "%s%s: y[%d, %d] = %g", d->name, composed ? " composed" : "", i, j,
                           y[i * DIM + j]);
            compare("embedding backward, invalid ids", d, dw, want_dw, ROWS * DIM,
                    composed ? close_to(1e-6, 1e-6) : BITS);
            dfree(&bi), dfree(&bw), dfree(&bg), dfree(&by), dfree(&bdw);
        }
    }
    free(w), free(dy);
}
END_TEST

int main(void) {
    Suite *s = suite_create("backend");
    TCase *reg = tcase_create("registry");
    tcase_add_test(reg, test_registry);
    tcase_add_test(reg, test_device_open);
    tcase_add_test(reg, test_bcast_make);
    tcase_add_test(reg, test_sticky_errors);
    tcase_add_test(reg, test_traffic);
    tcase_add_test(reg, test_missing_ops_are_composed);
    tcase_add_test(reg, test_declined_ops_are_composed);
    tcase_add_test(reg, test_lean_cnn_trains_like_cpu);
    suite_add_tcase(s, reg);

    TCase *conf = tcase_create("conformance");
    tcase_set_timeout(conf, 600);
    tcase_add_test(conf, test_memory);
    tcase_add_test(conf, test_copy2d);
    tcase_add_test(conf, test_copy_strided);
    tcase_add_test(conf, test_copy_strided_refused);
    tcase_add_test(conf, test_elementwise);
    tcase_add_test(conf, test_unary);
    tcase_add_test(conf, test_binary);
    tcase_add_test(conf, test_binary_n);
    tcase_add_test(conf, test_select);
    tcase_add_test(conf, test_reduce);
    tcase_add_test(conf, test_gemm);
    tcase_add_test(conf, test_gemm_batched);
    tcase_add_test(conf, test_bias);
    tcase_add_test(conf, test_activations);
    tcase_add_test(conf, test_softmax);
    tcase_add_test(conf, test_conv2d);
    tcase_add_test(conf, test_conv2d_without_workspace);
    tcase_add_test(conf, test_pooling);
    tcase_add_test(conf, test_dropout);
    tcase_add_test(conf, test_rng_normal);
    tcase_add_test(conf, test_optimizers_match);
    tcase_add_test(conf, test_more_optimizers_match);
    tcase_add_test(conf, test_clip_decay_match);
    tcase_add_test(conf, test_penalty_match);
    tcase_add_test(conf, test_norm_rescale_match);
    tcase_add_test(conf, test_relu_in_place);
    tcase_add_test(conf, test_deterministic);
    suite_add_tcase(s, conf);

    TCase *comp = tcase_create("compositions");
    tcase_set_timeout(comp, 600);
    tcase_add_test(comp, test_fused_match_compositions);
    tcase_add_test(comp, test_conv_pool_norm_match_compositions);
    tcase_add_test(comp, test_depthwise_conv2d);
    tcase_add_test(comp, test_embedding);
    tcase_add_test(comp, test_embedding_invalid_ids);
    suite_add_tcase(s, comp);

    TCase *hand = tcase_create("by_hand");
    tcase_add_test(hand, test_conv_by_hand);
    tcase_add_test(hand, test_pool_by_hand);
    tcase_add_test(hand, test_activations_by_hand);
    tcase_add_test(hand, test_optimizers_by_hand);
    tcase_add_test(hand, test_more_optimizers_by_hand);
    tcase_add_test(hand, test_penalty_by_hand);
    tcase_add_test(hand, test_norm_rescale_by_hand);
    suite_add_tcase(s, hand);

    TCase *grad = tcase_create("gradients");
    tcase_set_timeout(grad, 600);
    tcase_add_test(grad, test_conv2d_gradients);
    tcase_add_test(grad, test_pool_gradients);
    tcase_add_test(grad, test_activation_gradients);
    tcase_add_test(grad, test_softmax_gradients);
    suite_add_tcase(s, grad);
    return kc_test_run(s);
}
