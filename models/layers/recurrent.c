/* SimpleRNN, LSTM, GRU (Keras 3 semantics): arguments, weights, and the
 * sequence driver shared by the cells of rnn_cells.c.
 *
 * Forward projects the inputs of every step with one gemm (B T x F) x
 * (F x K U), then runs the steps: the recurrent product (B x U) x (U x K U),
 * the cell's gate math, and the masked carry of h (and c). Backward runs the
 * steps in reverse - only the gradient of h through the recurrent kernel is
 * sequential - collecting the gate gradients of every step, then forms the
 * kernel, recurrent kernel, bias and input gradients with one product (or
 * reduction) each over all steps. Every product of the backward pass reads
 * its right-hand side untransposed (R and W are transposed once per call),
 * which the cpu backend runs on its own SIMD kernels.
 *
 * Calls take [x] or [x, initial states...] (LSTM: [x, h0, c0]) and return
 * output, then with return_state the final states (LSTM: [output, h, c]).
 * With a mask, a masked step keeps the previous state, and its output is the
 * previous output (zeros before the first kept step; zeros always with
 * zero_output_for_mask), as Keras's backend rnn does. */
#include "models/layers/recurrent.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/rng.h"

/* ---------------------------------------------------------- copies --- */

int kc_rnn_copy2(kc_device *d, kc_copy_mode mode, kc_buf src, int64_t ss, kc_buf dst, int64_t ds,
                 int64_t rows, int64_t cols) {
    kc_copy_desc g = {2, {rows, cols}, {ss, 1}, {ds, 1}};
    return kc_copy_strided(d, mode, &g, src, dst);
}

int kc_rnn_planes_to_rows(kc_device *d, const rnn_state *s, int batch, kc_buf pl, kc_buf dst,
                          int64_t ld, int gates) {
    int64_t u = s->units, bu = (int64_t)batch * u;
    kc_copy_desc g = {3, {gates, batch, u}, {bu, u, 1}, {u, ld, 1}};
    return kc_copy_strided(d, KC_COPY_SET, &g, pl, dst);
}

int kc_rnn_rows_to_planes(kc_device *d, kc_copy_mode mode, const rnn_state *s, int batch,
                          kc_buf src, int64_t ld, kc_buf pl, int gates) {
    int64_t u = s->units, bu = (int64_t)batch * u;
    kc_copy_desc g = {3, {gates, batch, u}, {u, ld, 1}, {bu, u, 1}};
    return kc_copy_strided(d, mode, &g, src, pl);
}

kc_buf kc_rnn_dg(const rnn_state *s, const rnn_bufs *b, int batch, int step, int64_t *ld) {
    int64_t ku = (int64_t)s->cell->gates * s->units;
    if (ld) *ld = s->cell->dg_is_dp ? s->steps * ku : ku;
    if (s->cell->dg_is_dp) {
        int t = s->go_back ? (int)s->steps - 1 - step : step;
        return kc_buf_f(b->p, (size_t)t * (size_t)ku);
    }
    return kc_buf_f(b->dg, (size_t)step * (size_t)batch * (size_t)ku);
}

/* ---------------------------------------------------------- layout --- */

/* A bump allocator over floats; an overflow makes the total SIZE_MAX. */
typedef struct bump {
    kc_buf base;
    size_t used; /* floats */
    int overflow;
} bump;

static size_t mul3(size_t a, size_t b, size_t c, int *overflow) {
    if (b && a > SIZE_MAX / b) return *overflow = 1, 0;
    size_t ab = a * b;
    if (c && ab > SIZE_MAX / c) return *overflow = 1, 0;
    return ab * c;
}

static kc_buf take(bump *p, size_t a, size_t b, size_t c) {
    size_t n = mul3(a, b, c, &p->overflow);
    kc_buf r = kc_buf_ok(p->base) ? kc_buf_f(p->base, p->used) : KC_BUF_NULL;
    if (n > SIZE_MAX / 4 - p->used)
        p->overflow = 1;
    else
        p->used += n;
    return r;
}

static size_t bump_bytes(const bump *p) {
    return p->overflow || p->used > SIZE_MAX / 4 ? SIZE_MAX : p->used * 4;
}

/* Lays out the kept buffer (buf) and the workspace (ws) for `batch`; either
 * may be KC_BUF_NULL to size only. */
static void rnn_layout(const kc_layer *l, int batch, kc_buf buf, kc_buf ws, rnn_bufs *b,
                       size_t *buf_bytes, size_t *ws_bytes) {
    const rnn_state *s = l->state;
    size_t B = (size_t)batch, T = (size_t)s->steps, U = (size_t)s->units, F = (size_t)s->features;
    size_t K = (size_t)s->cell->gates, ns = (size_t)s->cell->nstates;
    int lstm = ns == 2, gru = s->cell == &kc_rnn_gru_cell;
    bump k = {buf, 0, 0}, w = {ws, 0, 0};
    memset(b, 0, sizeof *b);
    b->state = take(&k, ns, B, s->stateful ? U : 0);
    b->z = take(&k, T * K, B, U);
    b->a = take(&k, T * K, B, U);
    b->h = take(&k, T + 1, B, U);
    b->c = take(&k, T + 1, B, lstm ? U : 0);
    b->cn = take(&k, T, B, lstm ? U : 0);
    b->tc = take(&k, T, B, lstm ? U : 0);
    b->gh = take(&k, T, B, gru ? U : 0);
    b->m = take(&k, T, B, 1);
    b->dm = take(&k, (size_t)kc_rnn_input_masks(s), B, F);
    b->rm = take(&k, (size_t)kc_rnn_recurrent_masks(s), B, U);
    b->p = take(&w, B * T, K, U);
    b->dg = take(&w, T * B, K, s->cell->dg_is_dp ? 0 : U);
    b->ht = take(&w, B * T, U, s->cell->dg_is_dp ? 1 : 0);
    b->g = take(&w, B, K, U);
    b->dpl = take(&w, K, B, U);
    kc_buf *v[] = {&b->hn, &b->cnew, &b->t1,  &b->t2,  &b->t3,  &b->gh_,
                   &b->gc, &b->go,   &b->ghn, &b->gcn, &b->ghp, &b->gcp};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        *v[i] = take(&w, B, U, 1);
    b->om = take(&w, B, 1, 1);
    b->xd = take(&w, B * T, F, s->dropout > 0 ? 1 : 0);
    b->hm = take(&w, T, B, s->rec_dropout > 0 ? U : 0);
    int any = s->dropout > 0 || s->rec_dropout > 0;
    b->ds = take(&w, 2, B, any ? (F > U ? F : U) : 0);
    b->rt = take(&w, K, U, U);
    b->wt = take(&w, K, U, F);
    if (buf_bytes) *buf_bytes = bump_bytes(&k);
    if (ws_bytes) *ws_bytes = bump_bytes(&w);
}

static size_t rnn_buffer_bytes(const kc_layer *l, int max_batch, const kc_device *d) {
    rnn_bufs b;
    size_t n;
    rnn_layout(l, max_batch, KC_BUF_NULL, KC_BUF_NULL, &b, &n, NULL);
    return n;
}

static size_t rnn_workspace_bytes(const kc_layer *l, int max_batch, const kc_device *d) {
    rnn_bufs b;
    size_t n;
    rnn_layout(l, max_batch, KC_BUF_NULL, KC_BUF_NULL, &b, NULL, &n);
    return n;
}

/* ------------------------------------------------------- arguments --- */

static int read_units(kc_layer *l, kc_args *a, kc_error *e) {
    rnn_state *s = l->state;
    long long units;
    int rc = kc_args_int(a, "units", 1, 0, 1, LLONG_MAX, &units, e);
    if (!rc && units > (1 << 24))
        rc = kc_node_fail(e, kc_args_node(a, "units"), "%s argument 'units' is too large: %lld",
                          l->cls->class_name, units);
    s->units = (int)units;
    return rc;
}

static int read_rate(kc_args *a, const char *key, double *out, kc_error *e) {
    int rc = kc_args_float(a, key, 0, 0.0, -INFINITY, INFINITY, out, e);
    if (rc) return rc;
    if (!(*out >= 0.0 && *out < 1.0))
        return kc_node_fail(e, kc_args_node(a, key), "%s argument '%s' must be in [0, 1), got %g",
                            a->owner, key, *out);
    return KC_OK;
}

/* Arguments every recurrent class reads; the cell's own come first. */
static int read_common(kc_layer *l, kc_args *a, kc_error *e) {
    rnn_state *s = l->state;
    int unroll, rc = read_units(l, a, e);
    if (!rc) rc = kc_args_activation(a, "activation", "tanh", &s->act, e);
    if (!rc) rc = kc_args_bool(a, "use_bias", 1, &s->use_bias, e);
    if (!rc) rc = kc_args_initializer(a, "kernel_initializer", "glorot_uniform", &s->kinit, e);
    if (!rc) rc = kc_args_initializer(a, "recurrent_initializer", "orthogonal", &s->rinit, e);
    if (!rc) rc = kc_args_initializer(a, "bias_initializer", "zeros", &s->binit, e);
    if (!rc) rc = kc_args_weight_opts(a, "kernel", &s->kopt, e);
    if (!rc) rc = kc_args_weight_opts(a, "recurrent", &s->ropt, e);
    if (!rc) rc = kc_args_weight_opts(a, "bias", &s->bopt, e);
    if (!rc) rc = read_rate(a, "dropout", &s->dropout, e);
    if (!rc) rc = read_rate(a, "recurrent_dropout", &s->rec_dropout, e);
    if (!rc) rc = kc_args_bool(a, "return_sequences", 0, &s->ret_seq, e);
    if (!rc) rc = kc_args_bool(a, "return_state", 0, &s->ret_state, e);
    if (!rc) rc = kc_args_bool(a, "go_backwards", 0, &s->go_back, e);
    if (!rc) rc = kc_args_bool(a, "stateful", 0, &s->stateful, e);
    if (!rc) rc = kc_args_bool(a, "unroll", 0, &unroll, e); /* the same numbers either way */
    if (!rc) rc = kc_args_bool(a, "zero_output_for_mask", 0, &s->zero_output, e);
    if (!rc && kc_args_has(a, "seed")) {
        s->has_seed = 1;
        rc = kc_args_int(a, "seed", 0, 0, LLONG_MIN, LLONG_MAX, &s->seed, e);
    }
    long long impl = 2;
    if (!rc && kc_args_has(a, "implementation"))
        rc = kc_args_int(a, "implementation", 0, 2, 1, 2, &impl, e);
    s->implementation = s->rec_dropout > 0 ? 1 : (int)impl; /* as Keras's cells decide */
    return rc;
}

static int simple_configure(kc_layer *l, kc_args *a, kc_error *e) {
    rnn_state *s = l->state;
    s->cell = &kc_rnn_simple_cell;
    return read_common(l, a, e);
}

static int lstm_configure(kc_layer *l, kc_args *a, kc_error *e) {
    rnn_state *s = l->state;
    s->cell = &kc_rnn_lstm_cell;
    s->has_rec_act = 1;
    int rc = kc_args_activation(a, "recurrent_activation", "sigmoid", &s->rec_act, e);
    if (!rc) rc = kc_args_bool(a, "unit_forget_bias", 1, &s->unit_forget, e);
    if (!rc && kc_args_has(a, "use_cudnn")) kc_args_node(a, "use_cudnn");
    if (!rc) rc = read_common(l, a, e);
    return rc;
}

static int gru_configure(kc_layer *l, kc_args *a, kc_error *e) {
    rnn_state *s = l->state;
    s->cell = &kc_rnn_gru_cell;
    s->has_rec_act = 1;
    int rc = kc_args_activation(a, "recurrent_activation", "sigmoid", &s->rec_act, e);
    if (!rc) rc = kc_args_bool(a, "reset_after", 1, &s->reset_after, e);
    if (!rc && kc_args_has(a, "use_cudnn")) kc_args_node(a, "use_cudnn");
    if (!rc) rc = read_common(l, a, e);
    return rc;
}

/* ----------------------------------------------------------- build --- */

static int rnn_build_n(kc_layer *l, kc_error *e) {
    rnn_state *s = l->state;
    const kc_shape *in = &l->in_shapes[0];
    char a[160], b[160];
    if (in->rank != 2)
        return kc_layer_fail(l, e,
                             "expects input of shape (timesteps, features) (ndim=3 with the "
                             "batch), got %s",
                             kc_shape_str(in, 1, a, sizeof a));
    int ns = s->cell->nstates;
    if (l->ninputs != 1 && l->ninputs != 1 + ns)
        return kc_layer_fail(l, e, "takes its input and %d initial state%s, got %d tensors", ns,
                             ns > 1 ? "s" : "", l->ninputs);
    kc_shape st = kc_shape1(s->units);
    for (int i = 1; i < l->ninputs; i++)
        if (!kc_shape_equal(&l->in_shapes[i], &st))
            return kc_layer_fail(l, e, "initial state %d has shape %s, expected %s", i - 1,
                                 kc_shape_str(&l->in_shapes[i], 1, a, sizeof a),
                                 kc_shape_str(&st, 1, b, sizeof b));
    s->steps = in->d[0];
    s->features = in->d[1];
    if (s->steps > INT_MAX / 2 || s->features > INT_MAX / 2)
        return kc_layer_fail(l, e, "input %s is too large", kc_shape_str(in, 1, a, sizeof a));
    int64_t ku = (int64_t)s->cell->gates * s->units;
    l->out_shape = s->ret_seq ? kc_shape2(s->steps, s->units) : kc_shape1(s->units);
    l->noutputs = 1;
    l->out_shapes[0] = l->out_shape;
    if (s->ret_state)
        for (int i = 0; i < ns; i++)
            l->out_shapes[l->noutputs++] = st;
    kc_param *k = kc_layer_add_param(l, "kernel", kc_shape2(s->features, ku), &s->kinit, 1);
    int rc = kc_param_set_opts(k, &s->kopt, l->name, e);
    kc_param *r = kc_layer_add_param(l, "recurrent_kernel", kc_shape2(s->units, ku), &s->rinit, 1);
    if (!rc) rc = kc_param_set_opts(r, &s->ropt, l->name, e);
    if (!rc && s->use_bias) {
        kc_shape bs = s->reset_after ? kc_shape2(2, ku) : kc_shape1(ku);
        kc_param *bp = kc_layer_add_param(l, "bias", bs, &s->binit, 1);
        if (s->unit_forget) bp->init.forget_units = s->units;
        rc = kc_param_set_opts(bp, &s->bopt, l->name, e);
    }
    return rc;
}

static int rnn_build(kc_layer *l, kc_error *e) {
    return rnn_build_n(l, e);
}

static kc_mask_rule rnn_mask_rule(const kc_layer *l) {
    const rnn_state *s = l->state;
    return s->ret_seq ? KC_MASK_CONSUME_PROPAGATE : KC_MASK_CONSUME;
}

static int64_t rnn_flops(const kc_layer *l) {
    const rnn_state *s = l->state;
    int64_t ku = (int64_t)s->cell->gates * s->units;
    return 2 * s->steps * ku * (s->features + s->units);
}

/* ---------------------------------------------------------- forward --- */

static int step_time(const rnn_state *s, int step) {
    return s->go_back ? (int)s->steps - 1 - step : step;
}

/* y = a + m (b - a) with m one value per row (B rows of U): the masked carry. */
static int masked_blend(kc_device *d, const rnn_state *s, int batch, kc_buf m, kc_buf a, kc_buf b,
                        kc_buf y, kc_buf tmp) {
    size_t bu = (size_t)batch * (size_t)s->units;
    kc_bcast g = kc_bcast_cols((size_t)batch, (size_t)s->units);
    kc_binary_n(d, KC_BIN_SUB, b, a, tmp, bu);
    kc_binary(d, KC_BIN_MUL, &g, tmp, m, tmp);
    return kc_binary_n(d, KC_BIN_ADD, a, tmp, y, bu);
}

/* rows x cols of y scaled by one value of v per row. */
static int scale_rows(kc_device *d, kc_buf y, kc_buf v, int rows, int cols, kc_buf out) {
    kc_bcast g = kc_bcast_cols((size_t)rows, (size_t)cols);
    return kc_binary(d, KC_BIN_MUL, &g, y, v, out);
}

/* ---- dropout: masks fixed over the steps of one call ---- */

int kc_rnn_input_masks(const rnn_state *s) {
    if (!(s->dropout > 0)) return 0;
    return s->implementation == 1 ? s->cell->gates : 1;
}

int kc_rnn_recurrent_masks(const rnn_state *s) {
    return s->rec_dropout > 0 ? s->cell->gates : 0;
}

/* n masks of len values each into dst, drawn from the run's counter RNG. */
static int draw_masks(const kc_layer *l, const kc_exec *ex, const rnn_bufs *b, const char *tag,
                      double rate, kc_buf dst, int n, size_t len) {
    const rnn_state *s = l->state;
    kc_device *d = ex->dev;
    uint64_t seed = s->has_seed ? (uint64_t)s->seed : ex->seed;
    uint64_t stream = kc_rng_stream(tag, (uint64_t)l->index, ex->step);
    kc_fill(d, b->ds, 1.0f, len);
    for (int g = 0; g < n; g++)
        kc_dropout_forward(d, b->ds, kc_buf_f(b->ds, len), kc_buf_f(dst, (size_t)g * len), len,
                           (float)rate, seed, kc_rng_stream(tag, stream, (uint64_t)g));
    return kc_device_status(d);
}

static int draw_dropout(kc_layer *l, const kc_exec *ex, const rnn_bufs *b) {
    const rnn_state *s = l->state;
    size_t bf = (size_t)ex->batch * (size_t)s->features, bu = (size_t)ex->batch * (size_t)s->units;
    if (kc_rnn_input_masks(s))
        draw_masks(l, ex, b, "rnn_dropout", s->dropout, b->dm, kc_rnn_input_masks(s), bf);
    if (kc_rnn_recurrent_masks(s))
        draw_masks(l, ex, b, "rnn_recurrent_dropout", s->rec_dropout, b->rm,
                   kc_rnn_recurrent_masks(s), bu);
    return kc_device_status(ex->dev);
}

/* out = x * DM_g, the mask broadcast over the steps. */
static int apply_dropout(const rnn_state *s, kc_device *d, int batch, kc_buf x, kc_buf dm,
                         kc_buf out) {
    int64_t xa[3] = {batch, s->steps, s->features}, ma[3] = {batch, 1, s->features};
    kc_bcast g;
    if (kc_bcast_make(&g, xa, 3, ma, 3, NULL))
        return kc_device_fail(d, KC_ECONFIG, "dropout geometry");
    return kc_binary(d, KC_BIN_MUL, &g, x, dm, out);
}

static kc_buf input_mask(const rnn_state *s, const rnn_bufs *b, int batch, int g) {
    return kc_buf_f(b->dm, (size_t)g * (size_t)batch * (size_t)s->features);
}

static kc_buf rec_mask(const rnn_state *s, const rnn_bufs *b, int batch, int g) {
    return kc_buf_f(b->rm, (size_t)g * (size_t)batch * (size_t)s->units);
}

static int rec_dropping(const rnn_state *s) {
    return s->had_dropout && kc_rnn_recurrent_masks(s) > 0;
}

kc_buf kc_rnn_rec_dropped(const kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, kc_buf hp,
                          int g, kc_buf out) {
    const rnn_state *s = l->state;
    if (!rec_dropping(s)) return hp;
    kc_mul(d, hp, rec_mask(s, b, batch, g), out, (size_t)batch * (size_t)s->units);
    return out;
}

int kc_rnn_rec_forward(const kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, kc_buf hp,
                       int g0, int ng, kc_buf out, int ldo) {
    const rnn_state *s = l->state;
    int u = s->units, ku = s->cell->gates * u;
    kc_buf r = l->params[1].value;
    if (!rec_dropping(s))
        return kc_gemm(d, 0, 0, batch, ng * u, u, 1.0f, hp, u, kc_buf_f(r, (size_t)g0 * u), ku,
                       0.0f, out, ldo);
    for (int g = g0; g < g0 + ng; g++) {
        kc_buf hm = kc_rnn_rec_dropped(l, d, b, batch, hp, g, b->t3);
        kc_gemm(d, 0, 0, batch, u, u, 1.0f, hm, u, kc_buf_f(r, (size_t)g * u), ku, 0.0f,
                kc_buf_f(out, (size_t)(g - g0) * u), ldo);
    }
    return kc_device_status(d);
}

int kc_rnn_rec_add_planes(const kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, kc_buf hp,
                          int g0, int ng, kc_buf planes) {
    const rnn_state *s = l->state;
    int u = s->units, ku = s->cell->gates * u;
    size_t bu = (size_t)batch * (size_t)u;
    kc_buf r = kc_buf_f(l->params[1].value, (size_t)g0 * u);
    /* One small product per gate, each on one thread: splitting products this
     * small between threads costs more in waiting than it gains, the more so
     * when other programs hold the cores. */
    for (int g = 0; g < ng; g++) {
        kc_buf hm = kc_rnn_rec_dropped(l, d, b, batch, hp, g0 + g, b->t3);
        kc_gemm(d, 0, 0, batch, u, u, 1.0f, hm, u, kc_buf_f(r, (size_t)g * u), ku, 1.0f,
                kc_buf_f(planes, (size_t)g * bu), u);
    }
    return kc_device_status(d);
}

int kc_rnn_rec_backward(const kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, kc_buf dg,
                        int ldg, int g0, int ng, float beta, kc_buf ghp) {
    const rnn_state *s = l->state;
    int u = s->units;
    size_t bu = (size_t)batch * (size_t)u;
    size_t uu = (size_t)u * (size_t)u;
    if (!rec_dropping(s))
        return kc_gemm(d, 0, 0, batch, u, ng * u, 1.0f, dg, ldg, kc_buf_f(b->rt, (size_t)g0 * uu),
                       u, beta, ghp, u);
    for (int g = g0; g < g0 + ng; g++) {
        kc_gemm(d, 0, 0, batch, u, u, 1.0f, kc_buf_f(dg, (size_t)(g - g0) * u), ldg,
                kc_buf_f(b->rt, (size_t)g * uu), u, 0.0f, b->t3, u);
        kc_mul(d, b->t3, rec_mask(s, b, batch, g), b->t3, bu);
        if (g == g0 && beta == 0.0f)
            kc_copy(d, ghp, b->t3, bu * 4);
        else
            kc_binary_n(d, KC_BIN_ADD, ghp, b->t3, ghp, bu);
    }
    return kc_device_status(d);
}

/* P = x W + input bias, rows (b, t); while training with dropout, x is
 * dropped out by one mask, or by each gate's own. */
static int project_inputs(kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, kc_buf x) {
    const rnn_state *s = l->state;
    int rows = batch * (int)s->steps, f = (int)s->features, u = s->units;
    int ku = s->cell->gates * u, nm = s->had_dropout ? kc_rnn_input_masks(s) : 0;
    kc_buf w = l->params[0].value;
    if (nm <= 1) {
        kc_buf xin = x;
        if (nm) apply_dropout(s, d, batch, x, b->dm, xin = b->xd);
        kc_gemm(d, 0, 0, rows, ku, f, 1.0f, xin, f, w, ku, 0.0f, b->p, ku);
    } else {
        for (int g = 0; g < nm; g++) {
            apply_dropout(s, d, batch, x, input_mask(s, b, batch, g), b->xd);
            kc_gemm(d, 0, 0, rows, u, f, 1.0f, b->xd, f, kc_buf_f(w, (size_t)g * u), ku, 0.0f,
                    kc_buf_f(b->p, (size_t)g * u), ku);
        }
    }
    if (s->use_bias) kc_bias_add(d, b->p, l->params[2].value, rows, ku);
    return kc_device_status(d);
}

/* The initial states: given inputs, the stateful carry, or zeros. */
static int initial_states(kc_layer *l, const kc_exec *ex, const rnn_bufs *b, const kc_buf *x) {
    const rnn_state *s = l->state;
    kc_device *d = ex->dev;
    size_t bu = (size_t)ex->batch * (size_t)s->units;
    kc_buf dst[2] = {b->h, b->c};
    for (int i = 0; i < s->cell->nstates; i++) {
        if (l->ninputs > 1)
            kc_copy(d, dst[i], x[1 + i], bu * 4);
        else if (s->stateful)
            kc_copy(d, dst[i], kc_buf_f(b->state, (size_t)i * bu), bu * 4);
        else
            kc_fill(d, dst[i], 0.0f, bu);
    }
    return kc_device_status(d);
}

/* M slot s = the mask of time t(s). */
static int gather_mask(const rnn_state *s, const kc_exec *ex, const rnn_bufs *b) {
    int64_t T = s->steps;
    if (!s->go_back) {
        kc_copy_desc g = {2, {T, ex->batch}, {1, T}, {ex->batch, 1}};
        return kc_copy_strided(ex->dev, KC_COPY_SET, &g, ex->mask, b->m);
    }
    for (int st = 0; st < T; st++)
        kc_rnn_copy2(ex->dev, KC_COPY_SET, kc_buf_f(ex->mask, (size_t)step_time(s, st)), T,
                     kc_buf_f(b->m, (size_t)st * (size_t)ex->batch), 1, ex->batch, 1);
    return kc_device_status(ex->dev);
}

static int stateful_check(kc_layer *l, const kc_exec *ex) {
    rnn_state *s = l->state;
    if (!s->stateful) return KC_OK;
    if (s->state_batch && s->state_batch != ex->batch)
        return kc_device_fail(ex->dev, KC_ECONFIG,
                              "layer '%s' (%s) is stateful: every batch must have %d samples "
                              "(the batch of its state), got %d",
                              l->name, l->cls->class_name, s->state_batch, ex->batch);
    s->state_batch = ex->batch;
    return KC_OK;
}

/* Writes output 0 for step st (return_sequences) from o. */
static int write_step_output(const rnn_state *s, kc_device *d, int batch, int st, kc_buf o,
                             kc_buf y) {
    int64_t U = s->units;
    return kc_rnn_copy2(d, KC_COPY_SET, o, U, kc_buf_f(y, (size_t)st * (size_t)U), s->steps * U,
                        batch, U);
}

/* Z's gate planes of every step from P: one rank-4 copy, or by step where
 * steps run backwards (a copy has no negative strides). */
static int load_planes(const rnn_state *s, kc_device *d, const rnn_bufs *b, int B) {
    int64_t U = s->units, T = s->steps, K = s->cell->gates, KU = K * U;
    if (!s->go_back) {
        kc_copy_desc g = {4, {T, K, B, U}, {KU, U, T * KU, 1}, {K * B * U, B * U, U, 1}};
        return kc_copy_strided(d, KC_COPY_SET, &g, b->p, b->z);
    }
    for (int st = 0; st < T; st++)
        kc_rnn_rows_to_planes(d, KC_COPY_SET, s, B,
                              kc_buf_f(b->p, (size_t)step_time(s, st) * (size_t)KU), T * KU,
                              rnn_plane(b->z, s, B, st, 0), (int)K);
    return kc_device_status(d);
}

static int run_steps(kc_layer *l, const kc_exec *ex, const rnn_bufs *b, kc_buf y) {
    const rnn_state *s = l->state;
    kc_device *d = ex->dev;
    int B = ex->batch, ns = s->cell->nstates, masked = kc_buf_ok(ex->mask);
    int64_t U = s->units, T = s->steps;
    size_t bu = (size_t)B * (size_t)U;
    kc_buf o = b->go; /* running output, masked case */
    if (masked) kc_fill(d, o, 0.0f, bu);
    load_planes(s, d, b, B);
    for (int st = 0; st < T; st++) {
        kc_buf hp = rnn_slot(b->h, s, B, st), hs = rnn_slot(b->h, s, B, st + 1);
        kc_buf cp = ns > 1 ? rnn_slot(b->c, s, B, st) : KC_BUF_NULL;
        kc_buf cs = ns > 1 ? rnn_slot(b->c, s, B, st + 1) : KC_BUF_NULL;
        kc_buf cn = ns > 1 ? rnn_slot(b->cn, s, B, st) : KC_BUF_NULL;
        s->cell->step_forward(l, d, b, B, st, hp, cp, b->hn, cn);
        kc_buf out = b->hn;
        if (!masked) {
            kc_copy(d, hs, b->hn, bu * 4);
            if (ns > 1) kc_copy(d, cs, cn, bu * 4);
        } else {
            kc_buf m = kc_buf_f(b->m, (size_t)st * (size_t)B);
            masked_blend(d, s, B, m, hp, b->hn, hs, b->t1);
            if (ns > 1) masked_blend(d, s, B, m, cp, cn, cs, b->t1);
            if (s->zero_output)
                scale_rows(d, b->hn, m, B, (int)U, o);
            else
                masked_blend(d, s, B, m, o, b->hn, o, b->t1);
            out = o;
        }
        if (s->ret_seq)
            write_step_output(s, d, B, st, out, y);
        else if (st == T - 1)
            kc_copy(d, y, out, bu * 4);
    }
    return kc_device_status(d);
}

static int rnn_forward_n(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y) {
    rnn_state *s = l->state;
    kc_device *d = ex->dev;
    rnn_bufs b;
    rnn_layout(l, ex->batch, l->buf, ex->ws, &b, NULL, NULL);
    int rc = stateful_check(l, ex);
    if (rc) return rc;
    int B = ex->batch, ns = s->cell->nstates;
    size_t bu = (size_t)B * (size_t)s->units;
    s->had_dropout = ex->training && (s->dropout > 0 || s->rec_dropout > 0);
    if (s->had_dropout) draw_dropout(l, ex, &b);
    project_inputs(l, d, &b, B, x[0]);
    initial_states(l, ex, &b, x);
    s->had_mask = kc_buf_ok(ex->mask);
    if (s->had_mask) gather_mask(s, ex, &b);
    run_steps(l, ex, &b, y);
    size_t n0 = (size_t)kc_shape_numel(&l->out_shapes[0]) * (size_t)B;
    kc_buf last[2] = {rnn_slot(b.h, s, B, (int)s->steps), rnn_slot(b.c, s, B, (int)s->steps)};
    for (int i = 0; s->ret_state && i < ns; i++)
        kc_copy(d, kc_buf_f(y, n0 + (size_t)i * bu), last[i], bu * 4);
    for (int i = 0; s->stateful && i < ns; i++)
        kc_copy(d, kc_buf_f(b.state, (size_t)i * bu), last[i], bu * 4);
    return kc_device_status(d);
}

static int rnn_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    return rnn_forward_n(l, ex, &x, y);
}

/* --------------------------------------------------------- backward --- */

/* a (rows x cols, row-major) transposed into t (cols x rows) */
static int transpose(kc_device *d, kc_buf a, int64_t rows, int64_t cols, kc_buf t) {
    kc_copy_desc g = {2, {cols, rows}, {1, cols}, {rows, 1}};
    return kc_copy_strided(d, KC_COPY_SET, &g, a, t);
}

/* RT = R^T, and WT = W^T when the input gradient is wanted. */
static int transpose_weights(const kc_layer *l, kc_device *d, const rnn_bufs *b, int want_dx) {
    const rnn_state *s = l->state;
    int64_t ku = (int64_t)s->cell->gates * s->units;
    transpose(d, l->params[1].value, s->units, ku, b->rt);
    if (want_dx) transpose(d, l->params[0].value, s->features, ku, b->wt);
    return kc_device_status(d);
}

/* gH, gC, gO at the end: the gradients of the returned values. */
static int seed_gradients(const kc_layer *l, const kc_exec *ex, const rnn_bufs *b, kc_buf dy) {
    const rnn_state *s = l->state;
    kc_device *d = ex->dev;
    int B = ex->batch, ns = s->cell->nstates;
    size_t bu = (size_t)B * (size_t)s->units;
    size_t n0 = (size_t)kc_shape_numel(&l->out_shapes[0]) * (size_t)B;
    kc_buf carry[2] = {b->gh_, b->gc};
    for (int i = 0; i < ns; i++)
        if (s->ret_state)
            kc_copy(d, carry[i], kc_buf_f(dy, n0 + (size_t)i * bu), bu * 4);
        else
            kc_fill(d, carry[i], 0.0f, bu);
    if (s->ret_seq)
        kc_fill(d, b->go, 0.0f, bu);
    else
        kc_copy(d, b->go, dy, bu * 4);
    return kc_device_status(d);
}

/* ghn (and gcn) for step st from the carries; leaves the carries into
 * step st - 1 in gH, gC, gO (before the cell adds its part). */
static int split_carries(const rnn_state *s, kc_device *d, const rnn_bufs *b, int B, int st,
                         kc_buf dy) {
    size_t bu = (size_t)B * (size_t)s->units;
    int ns = s->cell->nstates;
    if (s->ret_seq)
        kc_rnn_copy2(d, KC_COPY_ADD, kc_buf_f(dy, (size_t)st * (size_t)s->units),
                     s->steps * s->units, b->go, s->units, B, s->units);
    if (!s->had_mask) {
        kc_binary_n(d, KC_BIN_ADD, b->gh_, b->go, b->ghn, bu);
        kc_fill(d, b->go, 0.0f, bu);
        if (ns > 1) kc_copy(d, b->gcn, b->gc, bu * 4);
        return kc_device_status(d);
    }
    kc_buf m = kc_buf_f(b->m, (size_t)st * (size_t)B);
    kc_unary(d, KC_UN_RSUB, 1.0f, m, b->om, (size_t)B); /* 1 - m */
    kc_binary_n(d, KC_BIN_ADD, b->gh_, b->go, b->ghn, bu);
    scale_rows(d, b->ghn, m, B, s->units, b->ghn);
    scale_rows(d, b->gh_, b->om, B, s->units, b->gh_);
    if (s->zero_output)
        kc_fill(d, b->go, 0.0f, bu);
    else
        scale_rows(d, b->go, b->om, B, s->units, b->go);
    if (ns > 1) {
        scale_rows(d, b->gc, m, B, s->units, b->gcn);
        scale_rows(d, b->gc, b->om, B, s->units, b->gc);
    }
    return kc_device_status(d);
}

/* Without a mask the carries pass straight on: the gradient of step st's
 * new h is the carry from step st + 1 plus the output gradient at st, and
 * the cell's gradients of hp (and cp) are the next carries (the buffers
 * swap). Leaves the gradients of the initial states in carry. */
static int back_steps_plain(kc_layer *l, const kc_exec *ex, const rnn_bufs *b, kc_buf dy,
                            kc_buf carry[2]) {
    const rnn_state *s = l->state;
    kc_device *d = ex->dev;
    int B = ex->batch, ns = s->cell->nstates;
    size_t bu = (size_t)B * (size_t)s->units;
    int64_t T = s->steps, U = s->units, KU = (int64_t)s->cell->gates * U;
    kc_buf gh = b->gh_, gc = b->gc, ph = b->ghp, pc = b->gcp;
    if (!s->ret_seq) kc_binary_n(d, KC_BIN_ADD, gh, dy, gh, bu); /* the last output's */
    for (int st = (int)T - 1; st >= 0; st--) {
        if (s->ret_seq)
            kc_rnn_copy2(d, KC_COPY_ADD, kc_buf_f(dy, (size_t)st * (size_t)U), T * U, gh, U, B, U);
        kc_buf hp = rnn_slot(b->h, s, B, st);
        kc_buf cp = ns > 1 ? rnn_slot(b->c, s, B, st) : KC_BUF_NULL;
        s->cell->step_backward(l, d, b, B, st, hp, cp, gh, ns > 1 ? gc : KC_BUF_NULL, ph,
                               ns > 1 ? pc : KC_BUF_NULL);
        if (!s->cell->dg_is_dp)
            kc_rnn_planes_to_rows(d, s, B, b->dpl,
                                  kc_buf_f(b->p, (size_t)step_time(s, st) * (size_t)KU), T * KU,
                                  s->cell->gates);
        kc_buf t = gh;
        gh = ph, ph = t;
        t = gc, gc = pc, pc = t;
    }
    carry[0] = gh, carry[1] = gc;
    return kc_device_status(d);
}

static int back_steps(kc_layer *l, const kc_exec *ex, const rnn_bufs *b, kc_buf dy,
                      kc_buf carry[2]) {
    const rnn_state *s = l->state;
    kc_device *d = ex->dev;
    int B = ex->batch, ns = s->cell->nstates;
    size_t bu = (size_t)B * (size_t)s->units;
    int64_t T = s->steps, KU = (int64_t)s->cell->gates * s->units;
    seed_gradients(l, ex, b, dy);
    if (!s->had_mask) return back_steps_plain(l, ex, b, dy, carry);
    for (int st = (int)T - 1; st >= 0; st--) {
        split_carries(s, d, b, B, st, dy);
        kc_buf hp = rnn_slot(b->h, s, B, st);
        kc_buf cp = ns > 1 ? rnn_slot(b->c, s, B, st) : KC_BUF_NULL;
        s->cell->step_backward(l, d, b, B, st, hp, cp, b->ghn, b->gcn, b->ghp, b->gcp);
        if (!s->cell->dg_is_dp)
            kc_rnn_planes_to_rows(d, s, B, b->dpl,
                                  kc_buf_f(b->p, (size_t)step_time(s, st) * (size_t)KU), T * KU,
                                  s->cell->gates);
        kc_binary_n(d, KC_BIN_ADD, b->gh_, b->ghp, b->gh_, bu);
        if (ns > 1) kc_binary_n(d, KC_BIN_ADD, b->gc, b->gcp, b->gc, bu);
    }
    carry[0] = b->gh_, carry[1] = b->gc;
    return kc_device_status(d);
}

/* c (m x n) = beta c + a^T b, a (rows x m) and b (rows x n): a weight
 * gradient summed over every step of every sample. The rows go in chunks
 * whose right-hand side stays in cache between the output tiles (one pass
 * over all rows re-reads it from memory for each); a chunk is a multiple of
 * the cpu kernel's own block of the reduction, so the sums are the same. */
#define RNN_GRAD_ROWS 256
static int grad_gemm(kc_device *d, int m, int n, int rows, kc_buf a, int lda, kc_buf b, int ldb,
                     float beta, kc_buf c, int ldc) {
    int r0 = 0;
    do {
        int nr = rows - r0 < RNN_GRAD_ROWS ? rows - r0 : RNN_GRAD_ROWS;
        kc_gemm(d, 1, 0, m, n, nr, 1.0f, kc_buf_f(a, (size_t)r0 * (size_t)lda), lda,
                kc_buf_f(b, (size_t)r0 * (size_t)ldb), ldb, r0 ? 1.0f : beta, c, ldc);
        r0 += nr;
    } while (r0 < rows);
    return kc_device_status(d);
}

/* Kernel gradient and, for non-null dx, the input gradient from dP. */
static int input_grads(kc_layer *l, const kc_exec *ex, const rnn_bufs *b, kc_buf x, kc_buf dx) {
    const rnn_state *s = l->state;
    kc_device *d = ex->dev;
    int rows = ex->batch * (int)s->steps, f = (int)s->features, u = s->units;
    int ku = s->cell->gates * u, nm = s->had_dropout ? kc_rnn_input_masks(s) : 0;
    float beta = ex->accumulate ? 1.0f : 0.0f;
    kc_param *w = &l->params[0];
    size_t n = (size_t)rows * (size_t)f;
    if (nm <= 1) {
        kc_buf xin = x;
        if (nm) apply_dropout(s, d, ex->batch, x, b->dm, xin = b->xd);
        if (kc_layer_wants_grad(l, w))
            grad_gemm(d, f, ku, rows, xin, f, b->p, ku, beta, w->grad, ku);
        if (kc_buf_ok(dx)) {
            kc_gemm(d, 0, 0, rows, f, ku, 1.0f, b->p, ku, b->wt, f, 0.0f, dx, f);
            if (nm) apply_dropout(s, d, ex->batch, dx, b->dm, dx);
        }
        return kc_device_status(d);
    }
    for (int g = 0; g < nm; g++) { /* each gate saw its own dropped-out x */
        kc_buf m = input_mask(s, b, ex->batch, g), pg = kc_buf_f(b->p, (size_t)g * u);
        if (kc_layer_wants_grad(l, w)) {
            apply_dropout(s, d, ex->batch, x, m, b->xd);
            grad_gemm(d, f, u, rows, b->xd, f, pg, ku, beta, kc_buf_f(w->grad, (size_t)g * u), ku);
        }
        if (!kc_buf_ok(dx)) continue;
        kc_gemm(d, 0, 0, rows, f, u, 1.0f, pg, ku, kc_buf_f(b->wt, (size_t)g * u * (size_t)f), f,
                0.0f, b->xd, f);
        apply_dropout(s, d, ex->batch, b->xd, m, b->xd);
        if (g == 0)
            kc_copy(d, dx, b->xd, n * 4);
        else
            kc_binary_n(d, KC_BIN_ADD, dx, b->xd, dx, n);
    }
    return kc_device_status(d);
}

/* HT (b, t) = the h that step t(s) multiplied, H slot s (b). */
static int h_by_sample(const rnn_state *s, kc_device *d, const rnn_bufs *b, int B) {
    int64_t T = s->steps, U = s->units;
    if (!s->go_back) {
        kc_copy_desc g = {3, {B, T, U}, {U, B * U, 1}, {T * U, U, 1}};
        return kc_copy_strided(d, KC_COPY_SET, &g, b->h, b->ht);
    }
    for (int st = 0; st < T; st++)
        kc_rnn_copy2(d, KC_COPY_SET, rnn_slot(b->h, s, B, st), U,
                     kc_buf_f(b->ht, (size_t)step_time(s, st) * (size_t)U), T * U, B, U);
    return kc_device_status(d);
}

/* dR[:, g0 u .. (g0 + ng) u] from the h each step multiplied: H, or with
 * recurrent_dropout each gate's dropped-out H; in the order of the rows of
 * the gate gradients (by step in DG, by sample and time in dP). */
static int rec_kernel_grad(kc_layer *l, const kc_exec *ex, const rnn_bufs *b, int g0, int ng,
                           float beta) {
    const rnn_state *s = l->state;
    kc_device *d = ex->dev;
    int rows = ex->batch * (int)s->steps, u = s->units, ku = s->cell->gates * u;
    kc_param *r = &l->params[1];
    int by_sample = s->cell->dg_is_dp;
    kc_buf h = by_sample ? b->ht : b->h, dg = by_sample ? b->p : b->dg;
    if (by_sample) h_by_sample(s, d, b, ex->batch);
    if (!rec_dropping(s))
        return grad_gemm(d, u, ng * u, rows, h, u, kc_buf_f(dg, (size_t)g0 * u), ku, beta,
                         kc_buf_f(r->grad, (size_t)g0 * u), ku);
    int64_t hs[3] = {s->steps, ex->batch, u}, m[3] = {1, ex->batch, u};
    if (by_sample) hs[0] = ex->batch, hs[1] = s->steps, m[0] = ex->batch, m[1] = 1;
    kc_bcast bc;
    if (kc_bcast_make(&bc, hs, 3, m, 3, NULL)) return kc_device_fail(d, KC_ECONFIG, "geometry");
    for (int g = g0; g < g0 + ng; g++) {
        kc_binary(d, KC_BIN_MUL, &bc, h, rec_mask(s, b, ex->batch, g), b->hm);
        grad_gemm(d, u, u, rows, b->hm, u, kc_buf_f(dg, (size_t)g * u), ku, beta,
                  kc_buf_f(r->grad, (size_t)g * u), ku);
    }
    return kc_device_status(d);
}

/* Recurrent kernel and bias gradients from DG and dP. */
static int param_grads(kc_layer *l, const kc_exec *ex, const rnn_bufs *b) {
    const rnn_state *s = l->state;
    kc_device *d = ex->dev;
    int rows = ex->batch * (int)s->steps, u = s->units, k = s->cell->gates, ku = k * u;
    float beta = ex->accumulate ? 1.0f : 0.0f;
    kc_param *r = &l->params[1];
    if (kc_layer_wants_grad(l, r)) {
        /* GRU without reset_after multiplies its last u columns by r * h */
        int gru_v1 = s->cell == &kc_rnn_gru_cell && !s->reset_after;
        rec_kernel_grad(l, ex, b, 0, gru_v1 ? 2 : k, beta);
        if (gru_v1)
            grad_gemm(d, u, u, rows, b->gh, u, kc_buf_f(b->dg, 2 * (size_t)u), ku, beta,
                      kc_buf_f(r->grad, 2 * (size_t)u), ku);
    }
    if (s->use_bias && kc_layer_wants_grad(l, &l->params[2])) {
        kc_bias_grad(d, l->params[2].grad, b->p, rows, ku, beta);
        if (s->reset_after)
            kc_bias_grad(d, kc_buf_f(l->params[2].grad, (size_t)ku), b->dg, rows, ku, beta);
    }
    return kc_device_status(d);
}

static int rnn_backward_n(kc_layer *l, const kc_exec *ex, const kc_buf *x, kc_buf y, kc_buf dy,
                          const kc_buf *dx) {
    const rnn_state *s = l->state;
    kc_device *d = ex->dev;
    rnn_bufs b;
    rnn_layout(l, ex->batch, l->buf, ex->ws, &b, NULL, NULL);
    size_t bu = (size_t)ex->batch * (size_t)s->units;
    kc_buf carry[2];
    transpose_weights(l, d, &b, kc_buf_ok(dx[0]));
    back_steps(l, ex, &b, dy, carry);
    param_grads(l, ex, &b);
    input_grads(l, ex, &b, x[0], dx[0]);
    for (int i = 1; i < l->ninputs; i++)
        if (kc_buf_ok(dx[i])) kc_copy(d, dx[i], carry[i - 1], bu * 4);
    return kc_device_status(d);
}

static int rnn_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    return rnn_backward_n(l, ex, &x, y, dy, &dx);
}

static int rnn_reset_states(kc_layer *l, kc_device *d) {
    rnn_state *s = l->state;
    if (!s->stateful || !kc_buf_ok(l->buf) || !s->state_batch) return kc_device_status(d);
    rnn_bufs b;
    rnn_layout(l, s->state_batch, l->buf, KC_BUF_NULL, &b, NULL, NULL);
    return kc_fill(d, b.state, 0.0f,
                   (size_t)s->cell->nstates * (size_t)s->state_batch * (size_t)s->units);
}

/* Keras keeps an RNN's weights in its cell: layers/lstm/cell/vars. */
static int rnn_keras_vars(const kc_layer *l, kc_keras_vars *out, int max) {
    char cell[160];
    snprintf(cell, sizeof cell, "%s_cell", l->cls->base_name);
    kc_keras_vars_plain(l, "vars", l->name, &out[0]);
    out[0].nparams = 0;
    if (max < 2) return 1;
    kc_keras_vars_plain(l, "cell/vars", cell, &out[1]);
    return 2;
}

#define RNN_CLASS(cname, bname, conf, maxin)                                                       \
    {                                                                                              \
        .class_name = cname, .base_name = bname, .state_size = sizeof(rnn_state),                  \
        .configure = conf, .build = rnn_build, .buffer_bytes = rnn_buffer_bytes,                   \
        .workspace_bytes = rnn_workspace_bytes, .forward = rnn_forward, .backward = rnn_backward,  \
        .flops = rnn_flops, .mask_rule = rnn_mask_rule, .reset_states = rnn_reset_states,          \
        .min_inputs = 1, .max_inputs = maxin, .build_n = rnn_build_n, .forward_n = rnn_forward_n,  \
        .backward_n = rnn_backward_n, .keras_vars = rnn_keras_vars,                                \
    }

const kc_layer_class kc_simple_rnn_class =
    RNN_CLASS("SimpleRNN", "simple_rnn", simple_configure, 2);
const kc_layer_class kc_lstm_class = RNN_CLASS("LSTM", "lstm", lstm_configure, 3);
const kc_layer_class kc_gru_class = RNN_CLASS("GRU", "gru", gru_configure, 2);
