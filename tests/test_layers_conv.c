/* The convolution family: grouped Conv2D, DepthwiseConv2D, SeparableConv2D
 * and Conv2DTranspose. Keras 3's outputs, input gradients and weight
 * gradients (tests/fixtures/layers/conv.safetensors, made by make_conv.py)
 * on every backend; the depthwise op, fused and composed, against a direct
 * sum on every backend; finite-difference gradients; shapes, weight
 * layouts and argument errors with file:line:column; and a MobileNet-style
 * model trained and summarised through the kerasc binary. */
#include "tests/layercheck.h"

#include "core/safetensors.h"
#include "tests/clitest.h"

/* ---- registry, shapes and weight layouts ---- */

static void expect_param(const kc_layer *l, int i, const char *name, kc_shape shape) {
    char a[160], b[160];
    ck_assert_int_gt(l->nparams, i);
    ck_assert_str_eq(l->params[i].name, name);
    ck_assert_msg(kc_shape_equal(&l->params[i].shape, &shape), "%s %s: %s, expected %s", l->name,
                  name, kc_shape_str(&l->params[i].shape, 0, a, sizeof a),
                  kc_shape_str(&shape, 0, b, sizeof b));
}

START_TEST(test_shapes_and_weights) {
    tl t;
    kc_layer *l =
        must_build(&t, "Conv2D", "{filters: 6, kernel_size: 3, groups: 3}", kc_shape3(5, 5, 9));
    expect_shape(l, kc_shape3(3, 3, 6));
    expect_param(l, 0, "kernel", kc_shape4(3, 3, 3, 6));
    expect_param(l, 1, "bias", kc_shape1(6));
    tl_free(&t);
    l = must_build(&t, "DepthwiseConv2D", "{kernel_size: 3, strides: 2, depth_multiplier: 2}",
                   kc_shape3(7, 6, 3));
    expect_shape(l, kc_shape3(3, 2, 6));
    expect_param(l, 0, "kernel", kc_shape4(3, 3, 3, 2));
    expect_param(l, 1, "bias", kc_shape1(6));
    tl_free(&t);
    l = must_build(&t, "SeparableConv2D",
                   "{filters: 5, kernel_size: 3, padding: same, depth_multiplier: 2}",
                   kc_shape3(4, 4, 3));
    expect_shape(l, kc_shape3(4, 4, 5));
    expect_param(l, 0, "depthwise_kernel", kc_shape4(3, 3, 3, 2));
    expect_param(l, 1, "pointwise_kernel", kc_shape4(1, 1, 6, 5));
    expect_param(l, 2, "bias", kc_shape1(5));
    tl_free(&t);
    /* each weight takes its own regularizer and constraint */
    l = must_build(&t, "SeparableConv2D",
                   "{filters: 2, kernel_size: 3, depthwise_regularizer: {L2: {l2: 0.5}},\n"
                   " pointwise_regularizer: {L1: {l1: 0.25}}, pointwise_constraint: non_neg,\n"
                   " bias_regularizer: {L2: {l2: 0.125}}}",
                   kc_shape3(4, 4, 3));
    ck_assert(l->params[0].regularizer.l2 == 0.5 && l->params[0].regularizer.l1 == 0.0);
    ck_assert(l->params[1].regularizer.l1 == 0.25 &&
              l->params[1].constraint.kind != KC_CONSTRAINT_NONE);
    ck_assert(l->params[0].constraint.kind == KC_CONSTRAINT_NONE &&
              l->params[2].regularizer.l2 == 0.125);
    tl_free(&t);
    l = must_build(&t, "DepthwiseConv2D",
                   "{kernel_size: 2, depthwise_regularizer: {L1: {l1: 0.5}}, use_bias: false}",
                   kc_shape3(4, 4, 3));
    ck_assert_int_eq(l->nparams, 1);
    ck_assert(l->params[0].regularizer.l1 == 0.5);
    tl_free(&t);
    ck_assert_ptr_eq(kc_layer_class_find("SeparableConvolution2D"),
                     kc_layer_class_find("SeparableConv2D"));
    ck_assert_ptr_eq(kc_layer_class_find("Convolution2DTranspose"),
                     kc_layer_class_find("Conv2DTranspose"));
    /* Keras's output sizes: (in - 1) s + k (+ max(k, s) - k) valid, in s same,
     * (in - 1) s + k % 2 + output_padding same with output_padding */
    struct {
        const char *args;
        int h, w;
    } tr[] = {
        {"{filters: 2, kernel_size: 3}", 6, 7},
        {"{filters: 2, kernel_size: 3, strides: 2, padding: same}", 8, 10},
        {"{filters: 2, kernel_size: 3, strides: 2}", 9, 11},
        {"{filters: 2, kernel_size: 2, strides: 3}", 12, 15},
        {"{filters: 2, kernel_size: 3, strides: 2, padding: same, output_padding: 0}", 7, 9},
        {"{filters: 2, kernel_size: 4, strides: 3, output_padding: 2}", 15, 18},
        {"{filters: 2, kernel_size: 3, dilation_rate: 2}", 8, 9},
    };
    for (size_t i = 0; i < sizeof tr / sizeof tr[0]; i++) {
        l = must_build(&t, "Conv2DTranspose", tr[i].args, kc_shape3(4, 5, 3));
        expect_shape(l, kc_shape3(tr[i].h, tr[i].w, 2));
        expect_param(l, 0, "kernel",
                     kc_shape4(l->params[0].shape.d[0], l->params[0].shape.d[1], 2, 3));
        tl_free(&t);
    }
}
END_TEST

START_TEST(test_argument_errors) {
    kc_shape in = kc_shape3(6, 6, 4);
    expect_error("Conv2D", "filters: 6\nkernel_size: 3\ngroups: 4\n", NULL,
                 "layer.yaml:3:9:", "evenly divisible");
    expect_error("Conv2D", "filters: 6\nkernel_size: 3\ngroups: 0\n", NULL,
                 "layer.yaml:3:9:", "groups");
    expect_error("Conv2D", "filters: 6\nkernel_size: 3\ngroups: 3\n", &in,
                 "layer.yaml:1:1:", "input channels must be evenly divisible");
    expect_error("DepthwiseConv2D", "kernel_size: 3\ndepth_multiplier: 0\n", NULL,
                 "layer.yaml:2:19:", "depth_multiplier");
    expect_error("DepthwiseConv2D", "kernel_size: 3\nstrides: 2\ndilation_rate: 2\n", NULL,
                 "layer.yaml:3:16:", "dilation_rate");
    expect_error("DepthwiseConv2D", "kernel_size: 3\ndepthwise_initializer: nope\n", NULL,
                 "layer.yaml:2:24:", "nope");
    expect_error("DepthwiseConv2D", "kernel_size: 3\nkernel_initializer: zeros\n", NULL,
                 "layer.yaml:2:1:", "kernel_initializer");
    expect_error("DepthwiseConv2D", "kernel_size: 7\n", &in, "layer.yaml:1:1:", "does not fit");
    expect_error("SeparableConv2D", "kernel_size: 3\n", NULL, "layer.yaml:1:1:", "filters");
    expect_error("SeparableConv2D", "filters: 2\nkernel_size: 3\npointwise_regularizer: x\n", NULL,
                 "layer.yaml:3:24:", "x");
    expect_error("Conv2DTranspose", "filters: 2\nkernel_size: 3\noutput_padding: 1\n", NULL,
                 "layer.yaml:3:17:", "strictly less than strides");
    expect_error("Conv2DTranspose", "filters: 2\nkernel_size: 3\nstrides: 2\ndilation_rate: 2\n",
                 NULL, "layer.yaml:4:16:", "dilation_rate");
    expect_error("Conv2DTranspose", "filters: 2\nkernel_size: 3\npadding: full\n", NULL,
                 "layer.yaml:3:10:", "padding");
    kc_shape flat = kc_shape1(5);
    expect_error("Conv2DTranspose", "filters: 2\nkernel_size: 3\n", &flat,
                 "layer.yaml:1:1:", "(height, width, channels)");
}
END_TEST

/* ---- Keras-made fixture ---- */

static kc_st_file *fixture(void) {
    return layer_fixture("conv");
}

static const kc_st_tensor *tensor_of(const char *cs, const char *what) {
    return layer_fixture_tensor(fixture(), cs, what);
}

static void expect_near(const char *what, const char *dev, const float *got, const float *want,
                        size_t n) {
    expect_near_keras(what, dev, got, want, n, 1e-5f);
}

static void check_param_grads(kc_device *be, kc_layer *l, const char *cs) {
    char key[256];
    for (int p = 0; p < l->nparams; p++) {
        snprintf(key, sizeof key, "dw.%s", l->params[p].name);
        const kc_st_tensor *dw = tensor_of(cs, key);
        size_t np = (size_t)kc_shape_numel(&dw->shape);
        float *g = malloc(np * sizeof(float));
        get(be, g, l->params[p].grad, np);
        snprintf(key, sizeof key, "%s d%s", cs, l->params[p].name);
        expect_near(key, be->name, g, dw->data, np);
        free(g);
    }
}

static void run_case(kc_device *be, const char *cs) {
    char key[256];
    snprintf(key, sizeof key, "%s.class", cs);
    const char *cls = kc_st_meta(fixture(), key);
    snprintf(key, sizeof key, "%s.args", cs);
    const char *args = kc_st_meta(fixture(), key);
    ck_assert_msg(cls && args, "fixture lacks the class or args of %s", cs);
    const kc_st_tensor *x = tensor_of(cs, "x"), *c = tensor_of(cs, "c"), *y = tensor_of(cs, "y"),
                       *dx = tensor_of(cs, "dx");
    kc_shape in = kc_shape3(x->shape.d[1], x->shape.d[2], x->shape.d[3]);
    tl t;
    kc_layer *l = must_build(&t, cls, args, in);
    rig r;
    rig_init(&r, be, l, (int)x->shape.d[0]);
    ck_assert_uint_eq(r.nout, (size_t)kc_shape_numel(&y->shape));
    for (int p = 0; p < l->nparams; p++) {
        snprintf(key, sizeof key, "w.%s", l->params[p].name);
        const kc_st_tensor *w = tensor_of(cs, key);
        ck_assert(kc_shape_equal(&w->shape, &l->params[p].shape));
        set_param(&r, p, w->data);
    }
    float *got = run_forward(&r, x->data, 1);
    snprintf(key, sizeof key, "%s output", cs);
    expect_near(key, be->name, got, y->data, r.nout);
    free(got);
    kc_exec ex = rig_exec(&r, 1);
    put(be, r.dy, c->data, r.nout);
    layer_backward(&r, &ex, r.dx);
    got = malloc(r.nin * sizeof(float));
    get(be, got, r.dx, r.nin);
    snprintf(key, sizeof key, "%s dx", cs);
    expect_near(key, be->name, got, dx->data, r.nin);
    free(got);
    check_param_grads(be, l, cs);
    rig_free(&r);
    tl_free(&t);
}

START_TEST(test_keras_fixture) {
    KC_LOOP_DEVICE(be);
    const char *list = kc_st_meta(fixture(), "cases");
    ck_assert_ptr_nonnull(list);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    int count = 0;
    for (char *save = NULL, *cs = strtok_r(buf, ",", &save); cs; cs = strtok_r(NULL, ",", &save)) {
        run_case(be, cs);
        count++;
    }
    ck_assert_int_ge(count, 19);
}
END_TEST

/* ---- the depthwise op: fused and composed, against a direct sum ---- */

static size_t dw_in(const kc_conv2d_desc *g) {
    return (size_t)g->n * g->h * g->w * g->c;
}
static size_t dw_out(const kc_conv2d_desc *g) {
    return (size_t)g->n * g->oh * g->ow * g->oc;
}
static size_t dw_w(const kc_conv2d_desc *g) {
    return (size_t)g->kh * g->kw * g->oc;
}

/* The input cell tap (ky, kx) of output (oy, ox) reads, or -1. */
static long dw_cell(const kc_conv2d_desc *g, int n, int oy, int ox, int ky, int kx) {
    int iy = oy * g->sh + ky * g->dh - g->pad_t, ix = ox * g->sw + kx * g->dw - g->pad_l;
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) return -1;
    return (((long)n * g->h + iy) * g->w + ix) * g->c;
}

/* y, dx and dw (of sum y * c) by direct sums in double. */
static void dw_direct(const kc_conv2d_desc *g, const float *x, const float *w, const float *c,
                      double *y, double *dx, double *dw) {
    int m = g->oc / g->c;
    memset(dx, 0, dw_in(g) * sizeof *dx);
    memset(dw, 0, dw_w(g) * sizeof *dw);
    for (int n = 0; n < g->n; n++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int o = 0; o < g->oc; o++) {
                    size_t yi = (((size_t)n * g->oh + oy) * g->ow + ox) * g->oc + o;
                    double s = 0;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            long xi = dw_cell(g, n, oy, ox, ky, kx);
                            if (xi < 0) continue;
                            size_t wi = ((size_t)ky * g->kw + kx) * g->oc + o;
                            s += (double)x[xi + o / m] * w[wi];
                            dx[xi + o / m] += (double)c[yi] * w[wi];
                            dw[wi] += (double)c[yi] * x[xi + o / m];
                        }
                    y[yi] = s;
                }
}

static void expect_close(const char *what, const kc_device *d, const float *got, const double *want,
                         size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= 1e-5 * fabs(want[i]) + 1e-5,
                      "%s on %s [%zu]: %.8g, expected %.8g", what, d->name, i, got[i], want[i]);
}

static void dw_op_case(kc_device *be, kc_conv2d_desc g, int composed) {
    size_t nx = dw_in(&g), ny = dw_out(&g), nw = dw_w(&g);
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *c = malloc(ny * 4), *w0 = malloc(nw * 4);
    double *y = malloc(ny * 8), *dx = malloc(nx * 8), *dw = malloc(nw * 8);
    fill_random(x, nx, 11, -1, 1), fill_random(w, nw, 12, -1, 1);
    fill_random(c, ny, 13, -1, 1), fill_random(w0, nw, 14, -1, 1);
    dw_direct(&g, x, w, c, y, dx, dw);
    kc_buf bx = kc_test_from(be, x, nx), bw = kc_test_from(be, w, nw), bc = kc_test_from(be, c, ny);
    kc_buf by = dev_alloc(be, ny), bdx = dev_alloc(be, nx), bdw = kc_test_from(be, w0, nw);
    if (composed) {
        kc_fallback_depthwise_conv2d_forward(be, &g, bx, bw, by);
        kc_fallback_depthwise_conv2d_backward_data(be, &g, bc, bw, bdx);
        kc_fallback_depthwise_conv2d_backward_filter(be, &g, bx, bc, bdw, 0.5f);
    } else {
        kc_depthwise_conv2d_forward(be, &g, bx, bw, by);
        kc_depthwise_conv2d_backward_data(be, &g, bc, bw, bdx);
        kc_depthwise_conv2d_backward_filter(be, &g, bx, bc, bdw, 0.5f);
    }
    kc_test_ok(be, "depthwise op");
    const char *how = composed ? "composed" : "op";
    float *got = kc_test_fetch(be, by, ny);
    expect_close(how, be, got, y, ny);
    free(got);
    got = kc_test_fetch(be, bdx, nx);
    expect_close(composed ? "composed backward data" : "backward data", be, got, dx, nx);
    free(got);
    for (size_t i = 0; i < nw; i++)
        dw[i] += 0.5 * w0[i];
    got = kc_test_fetch(be, bdw, nw);
    expect_close(composed ? "composed backward filter" : "backward filter", be, got, dw, nw);
    free(got);
    kc_buf *bufs[] = {&bx, &bw, &bc, &by, &bdx, &bdw};
    for (size_t i = 0; i < 6; i++)
        kc_free(be, bufs[i]);
    free(x), free(w), free(c), free(w0), free(y), free(dx), free(dw);
}

START_TEST(test_depthwise_op) {
    KC_LOOP_DEVICE(be);
    /* n h w c kh kw oc sh sw dh dw pad_t pad_l oh ow */
    kc_conv2d_desc cases[] = {
        {2, 5, 6, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 5, 6},   /* same */
        {2, 7, 6, 3, 3, 3, 6, 2, 2, 1, 1, 0, 0, 3, 2},   /* multiplier 2, strided */
        {1, 6, 7, 2, 3, 3, 2, 1, 1, 2, 2, 2, 2, 6, 7},   /* dilated same */
        {3, 4, 5, 5, 3, 2, 15, 2, 1, 1, 1, 1, 0, 2, 5},  /* rectangular, multiplier 3 */
        {1, 3, 3, 4, 5, 5, 4, 1, 1, 1, 1, 2, 2, 3, 3},   /* kernel larger than the image */
        {2, 9, 9, 17, 3, 3, 17, 1, 1, 1, 1, 1, 1, 9, 9}, /* odd channel count */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dw_op_case(be, cases[k], 0);
        dw_op_case(be, cases[k], 1);
    }
    /* every built-in backend runs the op itself */
    ck_assert(kc_supports_op(be, KC_OP_DEPTHWISE_CONV2D, NULL));
    /* one thread and many give the same bits on cpu */
    if (!strcmp(be->name, "cpu")) {
        kc_device *one = kc_test_device_named("cpu", 1);
        ck_assert_ptr_nonnull(one);
        kc_conv2d_desc g = {4, 16, 16, 32, 3, 3, 32, 1, 1, 1, 1, 1, 1, 16, 16};
        size_t nx = dw_in(&g), ny = dw_out(&g), nw = dw_w(&g);
        float *x = malloc(nx * 4), *c = malloc(ny * 4), *r[2];
        fill_random(x, nx, 21, -1, 1), fill_random(c, ny, 22, -1, 1);
        kc_device *ds[2] = {be, one};
        for (int i = 0; i < 2; i++) {
            kc_buf bx = kc_test_from(ds[i], x, nx), bc = kc_test_from(ds[i], c, ny);
            kc_buf bdw = dev_alloc(ds[i], nw);
            kc_depthwise_conv2d_backward_filter(ds[i], &g, bx, bc, bdw, 0.0f);
            r[i] = kc_test_fetch(ds[i], bdw, nw);
            kc_free(ds[i], &bx), kc_free(ds[i], &bc), kc_free(ds[i], &bdw);
        }
        ck_assert(!memcmp(r[0], r[1], nw * 4));
        free(r[0]), free(r[1]), free(x), free(c);
    }
}
END_TEST

/* ---- finite differences ---- */

START_TEST(test_gradients_conv) {
    KC_LOOP_DEVICE(be);
    gradcheck(be, "Conv2D", "{filters: 4, kernel_size: 3, padding: same, groups: 2}",
              kc_shape3(4, 5, 4), 2, 0, 1);
    gradcheck(be, "Conv2D", "{filters: 6, kernel_size: 2, strides: 2, groups: 3}",
              kc_shape3(5, 5, 3), 2, 0, 1);
    gradcheck(be, "DepthwiseConv2D", "{kernel_size: 3, depth_multiplier: 2, padding: same}",
              kc_shape3(4, 5, 3), 2, 0, 1);
    gradcheck(be, "SeparableConv2D", "{filters: 3, kernel_size: 3, strides: 2}", kc_shape3(6, 5, 2),
              2, 0, 1);
    gradcheck(be, "Conv2DTranspose",
              "{filters: 3, kernel_size: 3, strides: 2, padding: same, output_padding: 1}",
              kc_shape3(3, 4, 2), 2, 0, 1);
}
END_TEST

/* Backward with ex->accumulate adds to the weight gradients: a second
 * accumulating pass doubles them. */
START_TEST(test_gradients_accumulate) {
    KC_LOOP_DEVICE(be);
    const char *cases[][2] = {
        {"Conv2D", "{filters: 4, kernel_size: 3, groups: 2}"},
        {"Conv2D", "{filters: 8, kernel_size: 3, groups: 4}"},
        {"DepthwiseConv2D", "{kernel_size: 3, depth_multiplier: 2}"},
        {"SeparableConv2D", "{filters: 3, kernel_size: 3}"},
        {"Conv2DTranspose", "{filters: 3, kernel_size: 3, strides: 2}"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tl t;
        kc_layer *l = must_build(&t, cases[k][0], cases[k][1], kc_shape3(5, 4, 4));
        rig r;
        rig_init(&r, be, l, 2);
        float *x = malloc(r.nin * 4), *c = malloc(r.nout * 4);
        fill_random(x, r.nin, 31, -1, 1), fill_random(c, r.nout, 32, -1, 1);
        for (int p = 0; p < l->nparams; p++) {
            size_t n = (size_t)kc_shape_numel(&l->params[p].shape);
            float *w = malloc(n * 4);
            fill_random(w, n, 33 + (uint64_t)p, -1, 1);
            set_param(&r, p, w);
            free(w);
        }
        free(run_forward(&r, x, 1));
        put(be, r.dy, c, r.nout);
        float *once[KC_LAYER_MAX_PARAMS];
        for (int pass = 0; pass < 2; pass++) {
            kc_exec ex = rig_exec(&r, 1);
            ex.accumulate = pass;
            layer_backward(&r, &ex, KC_BUF_NULL);
            for (int p = 0; p < l->nparams; p++) {
                size_t n = (size_t)kc_shape_numel(&l->params[p].shape);
                float *g = kc_test_fetch(be, l->params[p].grad, n);
                if (!pass) {
                    once[p] = g;
                    continue;
                }
                for (size_t i = 0; i < n; i++)
                    ck_assert_msg(fabsf(g[i] - 2 * once[p][i]) <= 1e-5f * fabsf(g[i]) + 1e-6f,
                                  "%s %s %s[%zu] on %s: %g after two passes, %g after one",
                                  cases[k][0], cases[k][1], l->params[p].name, i, be->name, g[i],
                                  once[p][i]);
                free(g), free(once[p]);
            }
        }
        free(x), free(c);
        rig_free(&r);
        tl_free(&t);
    }
}
END_TEST

/* ---- end to end through the kerasc binary ---- */

static const char *conv_model =
    "model:\n"
    "  name: mobile\n"
    "  layers:\n"
    "    - Input: {shape: [8, 8, 1]}\n"
    "    - Conv2D: {filters: 8, kernel_size: 3, strides: 2, padding: same, activation: relu}\n"
    "    - DepthwiseConv2D: {kernel_size: 3, padding: same, activation: relu}\n"
    "    - Conv2D: {filters: 8, kernel_size: 1, groups: 2, activation: relu}\n"
    "    - SeparableConv2D: {filters: 12, kernel_size: 3, padding: same, depth_multiplier: 2,\n"
    "                        activation: relu}\n"
    "    - Conv2DTranspose: {filters: 4, kernel_size: 3, strides: 2, padding: same}\n"
    "    - Flatten\n"
    "    - Dense: {units: 4, activation: softmax}\n"
    "compile:\n"
    "  optimizer: {Adam: {learning_rate: 0.01}}\n"
    "  loss: sparse_categorical_crossentropy\n"
    "  metrics: [accuracy]\n"
    "data:\n"
    "  train: {x: train_x.npy, y: train_y.npy}\n"
    "  rescale: 1/255\n"
    "  reshape: [8, 8, 1]\n"
    "fit: {epochs: 1, batch_size: 16, steps_per_epoch: 2, seed: 5}\n";

static void cli_setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_blobs("train_x.npy", "train_y.npy", 64, 11);
    write_file("mobile.yaml", conv_model);
}

static void cli_teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

START_TEST(test_cli_trains_and_summarises) {
    int st = run("summary mobile.yaml");
    ck_assert_msg(st == 0, "summary failed (%d): %s", st, err_buf);
    /* Keras 3's count (make_conv.py's model.params): 80 + 80 + 40 + 348 + 436 + 1028 */
    ck_assert_str_eq(kc_st_meta(fixture(), "model.params"), "2012");
    ck_assert_msg(strstr(out_buf, " Total params: 2,012 (7.86 KB)"), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, " Trainable params: 2,012 (7.86 KB)"), "%s", out_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "(DepthwiseConv2D)"));
    ck_assert_ptr_nonnull(strstr(out_buf, "(SeparableConv2D)"));
    ck_assert_ptr_nonnull(strstr(out_buf, "(Conv2DTranspose)"));
    st = run("train mobile.yaml --output run");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    const char *loss = strstr(out_buf, " - loss: ");
    ck_assert_ptr_nonnull(loss);
    double v = NAN;
    ck_assert_int_eq(sscanf(loss, " - loss: %lf", &v), 1);
    ck_assert_msg(isfinite(v) && v > 0, "loss %g", v);
    ck_assert(file_exists("run/last.safetensors"));

    char bad[4096];
    const char *what = "groups: 2,", *from = strstr(conv_model, what);
    snprintf(bad, sizeof bad, "%.*sgroups: 3,%s", (int)(from - conv_model), conv_model,
             from + strlen(what));
    write_file("bad.yaml", bad);
    ck_assert_int_eq(run("summary bad.yaml"), 2);
    ck_assert_msg(strstr(err_buf, "bad.yaml:7:52:") && strstr(err_buf, "divisible"), "%s", err_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layers_conv");
    TCase *tc = tcase_create("config");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_shapes_and_weights);
    tcase_add_test(tc, test_argument_errors);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("compute");
    tcase_set_timeout(tv, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tv, test_keras_fixture, 0, nb);
    tcase_add_loop_test(tv, test_depthwise_op, 0, nb);
    tcase_add_loop_test(tv, test_gradients_conv, 0, nb);
    tcase_add_loop_test(tv, test_gradients_accumulate, 0, nb);
    suite_add_tcase(s, tv);

    TCase *cli = tcase_create("cli");
    tcase_set_timeout(cli, 120);
    tcase_add_checked_fixture(cli, cli_setup, cli_teardown);
    tcase_add_test(cli, test_cli_trains_and_summarises);
    suite_add_tcase(s, cli);
    return kc_test_run(s);
}
