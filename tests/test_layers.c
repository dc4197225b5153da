/* Layers and activations: Keras's output shapes and parameter counts, every
 * argument error with its file:line:column, hand-computed forward values,
 * and finite-difference gradient checks of every layer and activation on
 * every backend of the registry that opens here (tests/devices.h). */
#include "tests/layercheck.h"

/* ---- registry ---- */

START_TEST(test_registry) {
    const char *names[] = {"Dense",   "Conv2D",  "MaxPooling2D", "AveragePooling2D",
                           "Flatten", "Reshape", "Dropout",      "Activation"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const kc_layer_class *c = kc_layer_class_find(names[i]);
        ck_assert_ptr_nonnull(c);
        ck_assert_str_eq(c->class_name, names[i]);
    }
    ck_assert_str_eq(kc_layer_class_find("Convolution2D")->class_name, "Conv2D");
    ck_assert_str_eq(kc_layer_class_find("MaxPool2D")->class_name, "MaxPooling2D");
    ck_assert_str_eq(kc_layer_class_find("AvgPool2D")->class_name, "AveragePooling2D");
    ck_assert_ptr_null(kc_layer_class_find("dense")); /* Keras class names are case-sensitive */
    ck_assert_ptr_null(kc_layer_class_find("Conv3D"));
    ck_assert_str_eq(kc_layer_class_find("MaxPooling2D")->base_name, "max_pooling2d");
    ck_assert_str_eq(kc_layer_class_find("AveragePooling2D")->base_name, "average_pooling2d");
    ck_assert_str_eq(kc_layer_class_find("Conv2D")->base_name, "conv2d");
}
END_TEST

/* ---- shapes and parameter counts ---- */

START_TEST(test_seed_cnn_shapes) {
    tl t[7];
    kc_layer *l;
    l = must_build(&t[0], "Conv2D", "filters: 32\nkernel_size: [3, 3]\nactivation: relu\n",
                   kc_shape3(28, 28, 1));
    expect_shape(l, kc_shape3(26, 26, 32));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 320);
    ck_assert_int_eq(l->activation.act, KC_ACT_RELU);
    ck_assert_int_eq(l->nparams, 2);
    ck_assert_str_eq(l->params[0].name, "kernel");
    ck_assert(kc_shape_equal(&l->params[0].shape, &(kc_shape){4, {3, 3, 1, 32}}));
    ck_assert_str_eq(l->params[1].name, "bias");
    ck_assert_int_eq(l->params[0].init.kind, KC_INIT_GLOROT_UNIFORM);
    ck_assert_int_eq(l->params[1].init.kind, KC_INIT_ZEROS);
    ck_assert_int_eq(l->cls->flops(l), 2LL * 26 * 26 * 32 * 9);

    l = must_build(&t[1], "MaxPooling2D", "pool_size: [2, 2]\n", kc_shape3(26, 26, 32));
    expect_shape(l, kc_shape3(13, 13, 32));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 0);

    l = must_build(&t[2], "Conv2D", "filters: 64\nkernel_size: 3\nactivation: relu\n",
                   kc_shape3(13, 13, 32));
    expect_shape(l, kc_shape3(11, 11, 64));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 18496);

    l = must_build(&t[3], "MaxPooling2D", NULL, kc_shape3(11, 11, 64));
    expect_shape(l, kc_shape3(5, 5, 64));

    l = must_build(&t[4], "Flatten", NULL, kc_shape3(5, 5, 64));
    expect_shape(l, kc_shape1(1600));

    l = must_build(&t[5], "Dense", "units: 64\nactivation: relu\n", kc_shape1(1600));
    expect_shape(l, kc_shape1(64));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 102464);
    ck_assert_int_eq(kc_layer_param_count(l, 1), 102464);
    ck_assert_int_eq(l->cls->flops(l), 2LL * 1600 * 64);
    ck_assert(kc_shape_equal(&l->params[0].shape, &(kc_shape){2, {1600, 64}}));

    l = must_build(&t[6], "Dense", "units: 10\nactivation: softmax\n", kc_shape1(64));
    expect_shape(l, kc_shape1(10));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 650);
    ck_assert_int_eq(l->activation.act, KC_ACT_SOFTMAX);
    l->trainable = 0;
    ck_assert_int_eq(kc_layer_param_count(l, 1), 0);
    ck_assert_int_eq(kc_layer_param_count(l, 0), 650);
    for (int i = 0; i < 7; i++)
        tl_free(&t[i]);
}
END_TEST

static void conv_shape(const char *yaml, kc_shape in, kc_shape want) {
    tl t;
    kc_layer *l = must_build(&t, "Conv2D", yaml, in);
    expect_shape(l, want);
    tl_free(&t);
}

START_TEST(test_conv_shape_rules) {
    conv_shape("filters: 4\nkernel_size: 3\npadding: same\n", kc_shape3(28, 28, 1),
               kc_shape3(28, 28, 4));
    /* same, stride 2: ceil(7/2) = 4, total pad (4-1)2 + 3 - 7 = 2 */
    conv_shape("filters: 2\nkernel_size: 3\nstrides: 2\npadding: same\n", kc_shape3(7, 8, 3),
               kc_shape3(4, 4, 2));
    /* even input, stride 2: total (4-1)2 + 3 - 8 = 1, before 0 (extra goes after) */
    conv_shape("filters: 2\nkernel_size: 3\nstrides: 2\npadding: same\n", kc_shape3(8, 8, 3),
               kc_shape3(4, 4, 2));
    /* valid, stride 2: floor((7-3)/2) + 1 = 3 */
    conv_shape("filters: 5\nkernel_size: 3\nstrides: [2, 3]\n", kc_shape3(7, 10, 1),
               kc_shape3(3, 3, 5));
    /* dilation 2: k_eff = 5, 10 - 5 + 1 = 6 */
    conv_shape("filters: 1\nkernel_size: 3\ndilation_rate: 2\n", kc_shape3(10, 10, 2),
               kc_shape3(6, 6, 1));
    /* dilation 2 same: size kept, total pad 4 split 2 + 2 */
    conv_shape("filters: 1\nkernel_size: 3\ndilation_rate: 2\npadding: SAME\n", kc_shape3(10, 9, 2),
               kc_shape3(10, 9, 1));
    conv_shape("filters: 3\nkernel_size: [3, 5]\n", kc_shape3(10, 12, 2), kc_shape3(8, 8, 3));
    /* a kernel larger than the input with "same" still gives ceil(n/s) */
    conv_shape("filters: 1\nkernel_size: 5\npadding: same\n", kc_shape3(2, 2, 1),
               kc_shape3(2, 2, 1));

    tl t;
    kc_layer *l = must_build(&t, "Conv2D", "filters: 8\nkernel_size: 3\nuse_bias: false\n",
                             kc_shape3(5, 5, 2));
    ck_assert_int_eq(l->nparams, 1);
    ck_assert_int_eq(kc_layer_param_count(l, 0), 3 * 3 * 2 * 8);
    tl_free(&t);
}
END_TEST

START_TEST(test_pool_shape_rules) {
    tl t;
    kc_layer *l = must_build(&t, "MaxPooling2D", "pool_size: 3\nstrides: 2\n", kc_shape3(7, 7, 4));
    expect_shape(l, kc_shape3(3, 3, 4));
    tl_free(&t);
    l = must_build(&t, "MaxPooling2D", "padding: same\n", kc_shape3(11, 11, 4));
    expect_shape(l, kc_shape3(6, 6, 4));
    tl_free(&t);
    l = must_build(&t, "AveragePooling2D", "pool_size: [2, 3]\nstrides: null\n",
                   kc_shape3(9, 9, 1));
    expect_shape(l, kc_shape3(4, 3, 1));
    tl_free(&t);
    l = must_build(&t, "AveragePooling2D", "pool_size: 2\nstrides: 1\npadding: same\n",
                   kc_shape3(5, 4, 3));
    expect_shape(l, kc_shape3(5, 4, 3));
    tl_free(&t);
    l = must_build(&t, "AvgPool2D", "pool_size: 2\n", kc_shape3(5, 4, 3));
    expect_shape(l, kc_shape3(2, 2, 3));
    ck_assert_str_eq(l->cls->class_name, "AveragePooling2D");
    tl_free(&t);
}
END_TEST

START_TEST(test_reshape_rules) {
    tl t;
    kc_layer *l = must_build(&t, "Reshape", "target_shape: [28, 28, 1]\n", kc_shape1(784));
    expect_shape(l, kc_shape3(28, 28, 1));
    tl_free(&t);
    l = must_build(&t, "Reshape", "target_shape: [-1, 7]\n", kc_shape2(28, 28));
    expect_shape(l, kc_shape2(112, 7));
    tl_free(&t);
    l = must_build(&t, "Reshape", "target_shape: [4, -1, 2]\n", kc_shape3(2, 3, 4));
    expect_shape(l, kc_shape3(4, 3, 2));
    tl_free(&t);
    l = must_build(&t, "Reshape", "target_shape: 24\n", kc_shape3(2, 3, 4));
    expect_shape(l, kc_shape1(24));
    tl_free(&t);
    l = must_build(&t, "Flatten", NULL, kc_shape1(10));
    expect_shape(l, kc_shape1(10));
    tl_free(&t);
    l = must_build(&t, "Dense", "units: 4\n", kc_shape2(5, 3));
    expect_shape(l, kc_shape2(5, 4));
    ck_assert_int_eq(kc_layer_param_count(l, 0), 3 * 4 + 4);
    ck_assert_int_eq(l->cls->flops(l), 2LL * 5 * 3 * 4);
    tl_free(&t);
    l = must_build(&t, "Dropout", "rate: 0.3\n", kc_shape2(5, 3));
    expect_shape(l, kc_shape2(5, 3));
    tl_free(&t);
    l = must_build(&t, "Activation", "activation: tanh\n", kc_shape3(2, 2, 2));
    expect_shape(l, kc_shape3(2, 2, 2));
    ck_assert_int_eq(l->activation.act, KC_ACT_TANH);
    tl_free(&t);
}
END_TEST

/* ---- argument and shape errors ---- */

START_TEST(test_dense_errors) {
    expect_error("Dense", "activation: relu\n", NULL, "layer.yaml:1:1:", "'units'");
    expect_error("Dense", "units: 0\n", NULL, "layer.yaml:1:8:", ">= 1");
    expect_error("Dense", "units: 3000000000\n", NULL, "layer.yaml:1:8:", "too large");
    expect_error("Dense", "units: ten\n", NULL, "layer.yaml:1:8:", "expected an integer");
    expect_error("Dense", "units: 2.5\n", NULL, "layer.yaml:1:8:", "expected an integer");
    expect_error("Dense", "units: 10\nactivaton: relu\n", NULL,
                 "layer.yaml:2:1:", "did you mean 'activation'");
    expect_error("Dense", "units: 10\nactivation: rellu\n", NULL,
                 "layer.yaml:2:13:", "did you mean 'relu'");
    expect_error("Dense", "units: 10\nactivation: [relu]\n", NULL,
                 "layer.yaml:2:13:", "activation");
    expect_error("Dense", "units: 10\nuse_bias: maybe\n", NULL,
                 "layer.yaml:2:11:", "expected true or false");
    expect_error("Dense", "units: 10\nkernel_initializer: glorot_unifrom\n", NULL,
                 "layer.yaml:2:21:", "did you mean 'glorot_uniform'");
    expect_error("Dense", "units: 10\nkernel_regularizer: l3\n", NULL, "layer.yaml:2:21:",
                 "Dense argument 'kernel_regularizer': unknown regularizer 'l3'");
    expect_error("Dense", "units: 10\nbias_constraint: non_negative\n", NULL,
                 "layer.yaml:2:18:", "did you mean 'non_neg'");
    expect_error("Dense", "units: 10\nactivity_regularizer: {L1: {l1: -1}}\n", NULL,
                 "layer.yaml:2:33:", "L1 argument 'l1' must be >= 0");
    expect_error("Dense", "units: 10\nkernel_constraint: {MaxNorm: {axis: 2}}\n",
                 &(kc_shape){1, {4}},
                 "layer.yaml:2:37:", "layer 'dense' kernel_constraint: axis 2 is out of range");
    /* explicit nulls are what Keras writes for absent options */
    tl t;
    kc_layer *l = must_build(&t, "Dense",
                             "units: 3\nkernel_regularizer: null\nbias_constraint: ~\n"
                             "activation: null\n",
                             kc_shape1(2));
    ck_assert_int_eq(l->activation.act, KC_ACT_LINEAR);
    tl_free(&t);
}
END_TEST

START_TEST(test_conv_errors) {
    expect_error("Conv2D", "kernel_size: 3\n", NULL, "layer.yaml:1:1:", "'filters'");
    expect_error("Conv2D", "filters: 4\n", NULL, "layer.yaml:1:1:", "'kernel_size'");
    expect_error("Conv2D", "filters: 0\nkernel_size: 3\n", NULL, "layer.yaml:1:10:", ">= 1");
    expect_error("Conv2D", "filters: 4\nkernel_size: [3, 3, 3]\n", NULL,
                 "layer.yaml:2:14:", "list of 2 integers");
    expect_error("Conv2D", "filters: 4\nkernel_size: [3, 0]\n", NULL,
                 "layer.yaml:2:18:", "'kernel_size' must be >= 1, got 0");
    expect_error("Conv2D", "filters: 4\nkernel_size: 3\nstrides: 0\n", NULL,
                 "layer.yaml:3:10:", "'strides' must be >= 1");
    expect_error("Conv2D", "filters: 4\nkernel_size: 3\npadding: smae\n", NULL,
                 "layer.yaml:3:10:", "did you mean 'same'");
    expect_error("Conv2D", "filters: 4\nkernel_size: 3\npadding: causal\n", NULL,
                 "layer.yaml:3:10:", "padding");
    expect_error("Conv2D", "filters: 4\nkernel_size: 3\nstrides: 2\ndilation_rate: 2\n", NULL,
                 "layer.yaml:4:16:", "dilation_rate > 1");
    expect_error("Conv2D", "filters: 4\nkernel_size: 3\ndata_format: channels_first\n", NULL,
                 "layer.yaml:3:14:", "not supported yet by kerasc");
    expect_error("Conv2D", "filters: 3\nkernel_size: 3\ngroups: 2\n", NULL,
                 "layer.yaml:3:9:", "divisible");
    expect_error("Conv2D", "filters: 4\nkernel_size: 3\nkernel_sise: 3\n", NULL,
                 "layer.yaml:3:1:", "did you mean 'kernel_size'");
    expect_error("Conv2D", "filters: 4\nkernel_size: 3\nbias_regularizer: {L2: {l3: 0.1}}\n", NULL,
                 "layer.yaml:3:25:", "unknown key 'l3'");
    /* shape errors name the layer and the shapes */
    kc_shape flat = kc_shape1(784);
    expect_error("Conv2D", "filters: 4\nkernel_size: 3\n", &flat, "layer.yaml:1:1:",
                 "layer 'conv2d' (Conv2D): expects an input of shape (height, width, channels), "
                 "got (None, 784)");
    kc_shape small = kc_shape3(2, 5, 1);
    expect_error("Conv2D", "filters: 4\nkernel_size: 3\n", &small,
                 "layer.yaml:1:1:", "does not fit input (None, 2, 5, 1)");
}
END_TEST

START_TEST(test_pool_dropout_reshape_errors) {
    expect_error("MaxPooling2D", "pool_size: 0\n", NULL,
                 "layer.yaml:1:12:", "MaxPooling2D argument 'pool_size' must be >= 1, got 0");
    expect_error("MaxPooling2D", "pool: 2\n", NULL, "layer.yaml:1:1:", "did you mean 'pool_size'");
    expect_error("MaxPooling2D", "padding: full\n", NULL, "layer.yaml:1:10:", "'full'");
    expect_error("AveragePooling2D", "padding: same\n", NULL,
                 "layer.yaml:1:1:", "requires the argument 'pool_size'");
    expect_error("MaxPooling2D", "strides: [2, 2, 2]\n", NULL, "layer.yaml:1:10:", "2 integers");
    kc_shape flat = kc_shape1(10), tiny = kc_shape3(1, 4, 2);
    expect_error("MaxPooling2D", "pool_size: 2\n", &flat,
                 "layer.yaml:1:1:", "layer 'max_pooling2d' (MaxPooling2D)");
    expect_error("MaxPooling2D", "pool_size: 2\n", &tiny,
                 "layer.yaml:1:1:", "does not fit input (None, 1, 4, 2)");

    expect_error("Dropout", "seed: 1\n", NULL, "layer.yaml:1:1:", "'rate'");
    expect_error("Dropout", "rate: 1\n", NULL, "layer.yaml:1:7:", "[0, 1)");
    expect_error("Dropout", "rate: -0.1\n", NULL, "layer.yaml:1:7:", "[0, 1)");
    expect_error("Dropout", "rate: high\n", NULL, "layer.yaml:1:7:", "expected a number");
    expect_error("Dropout", "rate: 0.5\nnoise_shape: [1, 4]\n", NULL,
                 "layer.yaml:2:14:", "not supported yet by kerasc");
    expect_error("Dropout", "rate: 0.5\nsed: 3\n", NULL, "layer.yaml:2:1:", "did you mean 'seed'");

    expect_error("Reshape", "shape: [2, 2]\n", NULL, "layer.yaml:1:1:", "target_shape");
    expect_error("Reshape", "target_shape: [-1, -1]\n", NULL,
                 "layer.yaml:1:15:", "at most one dimension can be -1");
    expect_error("Reshape", "target_shape: [0, 4]\n", NULL, "layer.yaml:1:15:", "positive");
    expect_error("Reshape", "target_shape: [2, -3]\n", NULL, "layer.yaml:1:19:", "-1");
    expect_error("Reshape", "target_shape: abc\n", NULL, "layer.yaml:1:15:", "integer");
    kc_shape in = kc_shape2(3, 4);
    expect_error("Reshape", "target_shape: [5, 2]\n", &in, "layer.yaml:1:1:",
                 "cannot reshape input (3, 4) (12 values per sample) to target_shape (5, 2)");
    expect_error("Reshape", "target_shape: [5, -1]\n", &in,
                 "layer.yaml:1:1:", "to target_shape (5, -1)");

    expect_error("Flatten", "data_format: channels_first\n", NULL,
                 "layer.yaml:1:14:", "not supported yet");
    expect_error("Flatten", "activity_regularizer: [l2]\n", NULL,
                 "layer.yaml:1:23:", "expected a regularizer name");
    expect_error("Flatten", "units: 3\n", NULL, "layer.yaml:1:1:", "unknown key 'units'");

    expect_error("Activation", "name: act\nactivation: sigmoidd\n", NULL,
                 "layer.yaml:2:13:", "did you mean 'sigmoid'");
    expect_error("Activation", "activation: celu\n", NULL,
                 "layer.yaml:1:13:", "'celu' is not supported yet by kerasc");
    expect_error("Activation", "activaton: relu\n", NULL, "layer.yaml:1:1:", "'activation'");
}
END_TEST

/* ---- forward values against hand computation ---- */

START_TEST(test_dense_forward) {
    KC_LOOP_DEVICE(be);
    tl t;
    kc_layer *l = must_build(&t, "Dense", "units: 2\n", kc_shape1(3));
    rig r;
    rig_init(&r, be, l, 2);
    const float w[] = {1, 0, 0, 1, 1, -1}, b[] = {0.5f, -0.5f};
    set_param(&r, 0, w);
    set_param(&r, 1, b);
    const float x[] = {1, 2, 3, -1, 0, 2};
    float *y = run_forward(&r, x, 0);
    /* row 0: (1 + 3, 2 - 3) + b; row 1: (-1 + 2, 0 - 2) + b */
    const double want[] = {4.5, -1.5, 1.5, -2.5};
    assert_values(y, want, 4, 1e-6);
    free(y);
    rig_free(&r);
    tl_free(&t);

    /* rank 2 input: the same rows as leading axis of one sample */
    l = must_build(&t, "Dense", "units: 2\n", kc_shape2(2, 3));
    rig_init(&r, be, l, 1);
    set_param(&r, 0, w);
    set_param(&r, 1, b);
    y = run_forward(&r, x, 0);
    assert_values(y, want, 4, 1e-6);
    free(y);
    rig_free(&r);
    tl_free(&t);
}
END_TEST

START_TEST(test_conv_forward_same_stride2) {
    KC_LOOP_DEVICE(be);
    tl t;
    kc_layer *l =
        must_build(&t, "Conv2D", "filters: 2\nkernel_size: 3\nstrides: 2\npadding: same\n",
                   kc_shape3(4, 4, 1));
    expect_shape(l, kc_shape3(2, 2, 2));
    rig r;
    rig_init(&r, be, l, 1);
    float x[16];
    for (int i = 0; i < 16; i++)
        x[i] = (float)(i + 1); /* x[i][j] = 4i + j + 1 */
    /* filter 0: 1 at (0,0), 10 at (2,2); filter 1: all ones. HWIO: [ky][kx][c][o] */
    float w[18] = {0};
    for (int k = 0; k < 9; k++)
        w[k * 2 + 1] = 1;
    w[0 * 2 + 0] = 1;
    w[8 * 2 + 0] = 10;
    const float b[2] = {0.5f, -1};
    set_param(&r, 0, w);
    set_param(&r, 1, b);
    float *y = run_forward(&r, x, 0);
    /* total pad = (2-1)2 + 3 - 4 = 1: none before, one row/column after.
     * Windows start at rows/cols 0 and 2; row/col 4 is padding. */
    const double want[] = {
        1 + 10 * 11 + 0.5, 54 - 1, /* (0,0): x00 + 10 x22; sum rows 0-2 cols 0-2 */
        3 + 0.5,           45 - 1, /* (0,1): x02; rows 0-2 cols 2-3 */
        9 + 0.5,           72 - 1, /* (1,0): x20; rows 2-3 cols 0-2 */
        11 + 0.5,          54 - 1, /* (1,1): x22; rows 2-3 cols 2-3 */
    };
    assert_values(y, want, 8, 1e-6);
    free(y);
    rig_free(&r);
    tl_free(&t);
}
END_TEST

START_TEST(test_conv_forward_channels) {
    KC_LOOP_DEVICE(be);
    tl t;
    kc_layer *l = must_build(&t, "Conv2D", "filters: 2\nkernel_size: [1, 2]\nuse_bias: false\n",
                             kc_shape3(1, 3, 2));
    expect_shape(l, kc_shape3(1, 2, 2));
    rig r;
    rig_init(&r, be, l, 2);
    /* two samples, x[n][0][col][c] */
    const float x[] = {1, 2, 3, 4, 5, 6, -1, 0, 2, 1, 0, 3};
    /* w[0][kx][c][o] */
    const float w[] = {1, 0, 0, 1, 2, 0, 0, -1};
    set_param(&r, 0, w);
    float *y = run_forward(&r, x, 0);
    /* o0 = x[col][0] + 2 x[col+1][0]; o1 = x[col][1] - x[col+1][1] */
    const double want[] = {1 + 6, 2 - 4, 3 + 10, 4 - 6, -1 + 4, 0 - 1, 2 + 0, 1 - 3};
    assert_values(y, want, 8, 1e-6);
    free(y);
    rig_free(&r);
    tl_free(&t);
}
END_TEST

static const float pool_x4[16] = {1, 5, 2, 0, 3, 4, 8, 7, 9, -1, 6, 6, 0, 2, 5, 11};
static const float pool_x3[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

static void pool_case(kc_device *be, const char *cls, const char *yaml, kc_shape in, const float *x,
                      const double *want, size_t nwant) {
    tl t;
    kc_layer *l = must_build(&t, cls, yaml, in);
    rig r;
    rig_init(&r, be, l, 1);
    ck_assert_uint_eq(r.nout, nwant);
    float *y = run_forward(&r, x, 0);
    assert_values(y, want, nwant, 1e-6);
    free(y);
    rig_free(&r);
    tl_free(&t);
}

START_TEST(test_pool_forward) {
    KC_LOOP_DEVICE(be);
    const double max4[] = {5, 8, 9, 11}, avg4[] = {3.25, 4.25, 2.5, 7};
    pool_case(be, "MaxPooling2D", NULL, kc_shape3(4, 4, 1), pool_x4, max4, 4);
    pool_case(be, "AveragePooling2D", "pool_size: 2\n", kc_shape3(4, 4, 1), pool_x4, avg4, 4);
    /* same on 3x3: windows rows {0,1},{2}; padding is ignored by max and not counted by avg */
    const double max3[] = {5, 6, 8, 9}, avg3[] = {3, 4.5, 7.5, 9};
    pool_case(be, "MaxPooling2D", "padding: same\n", kc_shape3(3, 3, 1), pool_x3, max3, 4);
    pool_case(be, "AveragePooling2D", "pool_size: 2\npadding: same\n", kc_shape3(3, 3, 1), pool_x3,
              avg3, 4);
    /* overlapping windows: pool 2, stride 1 on 3x3 */
    const double max31[] = {5, 6, 8, 9}, avg31[] = {3, 4, 6, 7};
    pool_case(be, "MaxPooling2D", "strides: 1\n", kc_shape3(3, 3, 1), pool_x3, max31, 4);
    pool_case(be, "AveragePooling2D", "pool_size: 2\nstrides: 1\n", kc_shape3(3, 3, 1), pool_x3,
              avg31, 4);
    /* channels pool separately: two channels interleaved */
    float xc[8] = {1, -1, 2, -2, 3, -3, 4, -4};
    const double maxc[] = {4, -1}, avgc[] = {2.5, -2.5};
    pool_case(be, "MaxPooling2D", NULL, kc_shape3(2, 2, 2), xc, maxc, 2);
    pool_case(be, "AveragePooling2D", "pool_size: 2\n", kc_shape3(2, 2, 2), xc, avgc, 2);
}
END_TEST

START_TEST(test_dropout_forward) {
    KC_LOOP_DEVICE(be);
    size_t n = kc_test_quick() ? 2000 : 20000;
    tl t;
    kc_layer *l = must_build(&t, "Dropout", "rate: 0.25\n", kc_shape1((int64_t)n));
    l->index = 3;
    rig r;
    rig_init(&r, be, l, 1);
    float *x = malloc(n * sizeof(float)), *mask = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = 1.0f + (float)(i % 7);
    /* inference: identity, bit for bit */
    float *y = run_forward(&r, x, 0);
    ck_assert_mem_eq(y, x, n * sizeof(float));
    free(y);
    /* training: the mask the backend contract defines, keyed by (seed, layer, step) */
    y = run_forward(&r, x, 1);
    uint64_t stream = kc_rng_stream("dropout", 3, 7);
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        int keep = kc_rng_uniform(1234, stream, i) >= 0.25f;
        double want = keep ? x[i] / 0.75 : 0.0;
        ck_assert_msg(fabs(y[i] - want) <= 1e-6 * (1 + fabs(want)), "y[%zu] = %g, expected %g", i,
                      y[i], want);
        dropped += !keep;
    }
    ck_assert_close((double)dropped / (double)n, 0.25, 0.03, 0);
    get(be, mask, l->buf, n);
    for (size_t i = 0; i < n; i++)
        ck_assert(mask[i] == 0.0f || fabsf(mask[i] - 4.0f / 3) < 1e-6f);
    /* backward multiplies by the kept mask; at inference it passes dy through */
    kc_exec ex = rig_exec(&r, 1);
    float *ones = malloc(n * sizeof(float)), *dx = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        ones[i] = 1;
    put(be, r.dy, ones, n);
    layer_backward(&r, &ex, r.dx);
    get(be, dx, r.dx, n);
    ck_assert_mem_eq(dx, mask, n * sizeof(float));
    ex.training = 0;
    layer_backward(&r, &ex, r.dx);
    get(be, dx, r.dx, n);
    ck_assert_mem_eq(dx, ones, n * sizeof(float));
    free(x), free(y), free(mask), free(ones), free(dx);
    rig_free(&r);
    tl_free(&t);
}
END_TEST

START_TEST(test_dropout_streams) {
    KC_LOOP_DEVICE(be);
    size_t n = 512;
    float x[512];
    for (size_t i = 0; i < n; i++)
        x[i] = 1;
    tl t;
    kc_layer *l = must_build(&t, "Dropout", "rate: 0.5\n", kc_shape1((int64_t)n));
    rig r;
    rig_init(&r, be, l, 1);
    float *a = run_forward(&r, x, 1), *b = run_forward(&r, x, 1);
    ck_assert_mem_eq(a, b, n * sizeof(float)); /* same step: same mask */
    kc_exec ex = rig_exec(&r, 1);
    ex.step = 8;
    layer_forward(&r, &ex);
    float c[512];
    get(be, c, r.y, n);
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += a[i] == c[i];
    ck_assert_msg(same < n * 3 / 4, "next step repeats %zu of %zu", same, n);
    for (size_t i = 0; i < n; i++)
        ck_assert(a[i] == 0.0f || a[i] == 2.0f);
    free(a), free(b);
    rig_free(&r);
    tl_free(&t);

    /* an explicit seed: argument replaces the run's seed */
    l = must_build(&t, "Dropout", "rate: 0.5\nseed: 99\n", kc_shape1((int64_t)n));
    rig_init(&r, be, l, 1);
    a = run_forward(&r, x, 1);
    uint64_t stream = kc_rng_stream("dropout", 0, 7);
    for (size_t i = 0; i < n; i++)
        ck_assert_float_eq(a[i], kc_rng_uniform(99, stream, i) >= 0.5f ? 2.0f : 0.0f);
    free(a);
    rig_free(&r);
    tl_free(&t);

    /* rate 0 never drops, even while training */
    l = must_build(&t, "Dropout", "rate: 0\n", kc_shape1((int64_t)n));
    rig_init(&r, be, l, 1);
    a = run_forward(&r, x, 1);
    ck_assert_mem_eq(a, x, n * sizeof(float));
    free(a);
    rig_free(&r);
    tl_free(&t);
}
END_TEST

START_TEST(test_copy_layers_forward) {
    KC_LOOP_DEVICE(be);
    const char *cls[] = {"Flatten", "Reshape", "Activation"};
    const char *args[] = {NULL, "target_shape: [3, -1]\n", "activation: relu\n"};
    for (int k = 0; k < 3; k++) {
        tl t;
        kc_layer *l = must_build(&t, cls[k], args[k], kc_shape3(2, 3, 2));
        rig r;
        rig_init(&r, be, l, 2);
        float x[24];
        for (int i = 0; i < 24; i++)
            x[i] = (float)i - 11.5f;
        float *y = run_forward(&r, x, 1);
        /* row-major order is kept; the activation is the model's job, not the layer's */
        ck_assert_mem_eq(y, x, sizeof x);
        free(y);
        rig_free(&r);
        tl_free(&t);
    }
}
END_TEST

START_TEST(test_grad_dense) {
    KC_LOOP_DEVICE(be);
    gradcheck(be, "Dense", "units: 5\n", kc_shape1(7), 3, 0, 1);
    gradcheck(be, "Dense", "units: 4\nuse_bias: false\n", kc_shape1(6), 2, 0, 1);
    gradcheck(be, "Dense", "units: 3\n", kc_shape2(4, 5), 2, 0, 1);
}
END_TEST

START_TEST(test_grad_conv) {
    KC_LOOP_DEVICE(be);
    gradcheck(be, "Conv2D", "filters: 3\nkernel_size: 3\n", kc_shape3(5, 6, 2), 2, 0, 1);
    gradcheck(be, "Conv2D", "filters: 2\nkernel_size: 3\nstrides: 2\npadding: same\n",
              kc_shape3(7, 6, 3), 2, 0, 1);
    gradcheck(be, "Conv2D", "filters: 2\nkernel_size: [2, 3]\nstrides: [1, 2]\n",
              kc_shape3(5, 7, 2), 2, 0, 1);
    gradcheck(be, "Conv2D", "filters: 2\nkernel_size: 3\ndilation_rate: 2\npadding: same\n",
              kc_shape3(6, 5, 2), 1, 0, 1);
    gradcheck(be, "Conv2D", "filters: 4\nkernel_size: 1\nuse_bias: false\n", kc_shape3(3, 3, 3), 2,
              0, 1);
}
END_TEST

START_TEST(test_grad_pools) {
    KC_LOOP_DEVICE(be);
    gradcheck(be, "MaxPooling2D", NULL, kc_shape3(6, 6, 2), 2, 1, 1);
    gradcheck(be, "MaxPooling2D", "pool_size: 3\nstrides: 2\npadding: same\n", kc_shape3(7, 6, 2),
              2, 1, 1);
    gradcheck(be, "MaxPooling2D", "pool_size: [2, 3]\nstrides: 1\n", kc_shape3(4, 5, 1), 1, 1, 1);
    gradcheck(be, "AveragePooling2D", "pool_size: 2\n", kc_shape3(6, 6, 2), 2, 0, 1);
    gradcheck(be, "AveragePooling2D", "pool_size: 3\nstrides: 2\npadding: same\n",
              kc_shape3(7, 6, 2), 2, 0, 1);
    gradcheck(be, "AveragePooling2D", "pool_size: [2, 3]\nstrides: 1\n", kc_shape3(4, 5, 1), 1, 0,
              1);
}
END_TEST

START_TEST(test_grad_shape_layers) {
    KC_LOOP_DEVICE(be);
    gradcheck(be, "Flatten", NULL, kc_shape3(3, 2, 2), 2, 0, 1);
    gradcheck(be, "Reshape", "target_shape: [2, -1]\n", kc_shape3(3, 2, 2), 2, 0, 1);
    gradcheck(be, "Activation", "activation: sigmoid\n", kc_shape1(5), 3, 0, 1);
    /* training: the mask is fixed by (seed, layer, step), so every forward reuses it */
    gradcheck(be, "Dropout", "rate: 0.4\n", kc_shape2(6, 5), 2, 0, 1);
    gradcheck(be, "Dropout", "rate: 0.4\n", kc_shape2(6, 5), 2, 0, 0);
}
END_TEST

/* ---- activations ---- */

START_TEST(test_activation_names) {
    kc_doc *doc = NULL;
    kc_error e = {0};
    const char *text = "a: relu\nb: swish\nc: silu\nd: leaky_relu\ne: elu\nf: null\n"
                       "g: hard_sigmoid\nh: Relu\ni: softmaxx\nj: celu\nk: 3\n";
    ck_assert_int_eq(kc_doc_parse(&doc, "act.yaml", text, strlen(text), &e), 0);
    kc_activation a;
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "a"), &a, &e), 0);
    ck_assert_int_eq(a.act, KC_ACT_RELU);
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "b"), &a, &e), 0);
    ck_assert_int_eq(a.act, KC_ACT_SWISH);
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "c"), &a, &e), 0);
    ck_assert_int_eq(a.act, KC_ACT_SWISH);
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "d"), &a, &e), 0);
    ck_assert_int_eq(a.act, KC_ACT_LEAKY_RELU);
    ck_assert_float_eq(a.alpha, 0.2f);
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "e"), &a, &e), 0);
    ck_assert_int_eq(a.act, KC_ACT_ELU);
    ck_assert_float_eq(a.alpha, 1.0f);
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "f"), &a, &e), 0);
    ck_assert_int_eq(a.act, KC_ACT_LINEAR);
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "g"), &a, &e), 0);
    ck_assert_int_eq(a.act, KC_ACT_HARD_SIGMOID);
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "h"), &a, &e), KC_ECONFIG);
    ck_assert_str_eq(e.msg, "act.yaml:8:4: unknown activation 'Relu' (did you mean 'relu'?)");
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "i"), &a, &e), KC_ECONFIG);
    ck_assert_str_eq(e.msg,
                     "act.yaml:9:4: unknown activation 'softmaxx' (did you mean 'softmax'?)");
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "j"), &a, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "act.yaml:10:4: activation 'celu' is not supported yet"), "%s",
                  e.msg);
    ck_assert_int_eq(kc_activation_parse(kc_map_get(doc->root, "k"), &a, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "act.yaml:11:4:") == e.msg, "%s", e.msg);
    kc_doc_free(doc);

    ck_assert_str_eq(kc_activation_name(KC_ACT_RELU), "relu");
    ck_assert_str_eq(kc_activation_name(KC_ACT_SWISH), "silu");
    ck_assert_str_eq(kc_activation_name(KC_ACT_LINEAR), "linear");
    ck_assert_str_eq(kc_activation_name(KC_ACT_HARD_SIGMOID), "hard_sigmoid");
    size_t n = 0;
    while (kc_activation_names[n])
        n++;
    ck_assert_uint_eq(n, 20);
}
END_TEST

static kc_activation act_of(const char *name) {
    kc_doc *doc = NULL;
    kc_error e = {0};
    char text[64];
    snprintf(text, sizeof text, "a: %s\n", name);
    ck_assert_int_eq(kc_doc_parse(&doc, "act.yaml", text, strlen(text), &e), 0);
    kc_activation a;
    ck_assert_msg(kc_activation_parse(kc_map_get(doc->root, "a"), &a, &e) == 0, "%s", e.msg);
    kc_doc_free(doc);
    return a;
}

/* Keras 3 values at a few points. */
START_TEST(test_activation_values) {
    KC_LOOP_DEVICE(be);
    const float xs[4] = {-4.0f, -1.0f, 0.5f, 1.5f};
    struct {
        const char *name;
        double y[4];
    } cases[] = {
        {"linear", {-4, -1, 0.5, 1.5}},
        {"relu", {0, 0, 0.5, 1.5}},
        {"leaky_relu", {-0.8, -0.2, 0.5, 1.5}},
        {"hard_sigmoid", {0, 1.0 / 3, 0.5833333333, 0.75}},
        {"elu", {exp(-4.0) - 1, exp(-1.0) - 1, 0.5, 1.5}},
        {"selu",
         {1.0507009873554805 * 1.6732632423543772 * (exp(-4.0) - 1),
          1.0507009873554805 * 1.6732632423543772 * (exp(-1.0) - 1), 1.0507009873554805 * 0.5,
          1.0507009873554805 * 1.5}},
        {"sigmoid",
         {1 / (1 + exp(4.0)), 1 / (1 + exp(1.0)), 1 / (1 + exp(-0.5)), 1 / (1 + exp(-1.5))}},
        {"tanh", {tanh(-4.0), tanh(-1.0), tanh(0.5), tanh(1.5)}},
        {"softplus", {log1p(exp(-4.0)), log1p(exp(-1.0)), log1p(exp(0.5)), log1p(exp(1.5))}},
        {"softsign", {-0.8, -0.5, 0.5 / 1.5, 0.6}},
        {"silu",
         {-4 / (1 + exp(4.0)), -1 / (1 + exp(1.0)), 0.5 / (1 + exp(-0.5)), 1.5 / (1 + exp(-1.5))}},
        {"gelu",
         {-4 * 0.5 * (1 + erf(-4 / sqrt(2.0))), -0.5 * (1 + erf(-1 / sqrt(2.0))),
          0.25 * (1 + erf(0.5 / sqrt(2.0))), 0.75 * (1 + erf(1.5 / sqrt(2.0)))}},
        {"exponential", {exp(-4.0), exp(-1.0), exp(0.5), exp(1.5)}},
    };
    kc_buf x = dev_alloc(be, 4), y = dev_alloc(be, 4);
    put(be, x, xs, 4);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        kc_activation a = act_of(cases[k].name);
        ck_assert_int_eq(kc_activation_forward(be, &a, x, y, 2, 2), KC_OK);
        float got[4];
        get(be, got, y, 4);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(fabs(got[i] - cases[k].y[i]) <= 2e-6 * (1 + fabs(cases[k].y[i])),
                          "%s %s(%g) = %.8g, expected %.8g", be->name, cases[k].name, xs[i], got[i],
                          cases[k].y[i]);
    }
    /* softmax over each row of 2 */
    kc_activation sm = act_of("softmax");
    ck_assert_int_eq(kc_activation_forward(be, &sm, x, y, 2, 2), KC_OK);
    float got[4];
    get(be, got, y, 4);
    double p0 = 1 / (1 + exp(3.0)), p1 = 1 / (1 + exp(1.0));
    const double want[4] = {p0, 1 - p0, p1, 1 - p1};
    assert_values(got, want, 4, 1e-6);
    kc_free(be, &x);
    kc_free(be, &y);
}
END_TEST

/* Points kept away from the kinks of relu, leaky_relu, elu, selu (0) and
 * hard_sigmoid (+-3), and small enough for exponential. */
static void kink_free_inputs(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v;
        uint64_t k = 0;
        do {
            v = -4.5f + 9.0f * kc_rng_uniform(77, i, k++);
        } while (fabsf(v) < 0.1f || fabsf(fabsf(v) - 3.0f) < 0.1f);
        x[i] = v;
    }
}

START_TEST(test_activation_gradients) {
    KC_LOOP_DEVICE(be);
    const int rows = 3, cols = 7;
    const size_t n = (size_t)rows * cols;
    float xs[21], c[21], dx[21], y[21];
    kink_free_inputs(xs, n);
    fill_random(c, n, 5, -1, 1);
    kc_buf dx_d = dev_alloc(be, n), x_d = dev_alloc(be, n), y_d = dev_alloc(be, n),
           dy_d = dev_alloc(be, n);
    const float eps = 1e-3f;
    for (size_t k = 0; kc_activation_names[k]; k++) {
        kc_activation a = act_of(kc_activation_names[k]);
        put(be, x_d, xs, n);
        ck_assert_int_eq(kc_activation_forward(be, &a, x_d, y_d, rows, cols), KC_OK);
        put(be, dy_d, c, n);
        ck_assert_int_eq(kc_activation_backward(be, &a, x_d, y_d, dy_d, dx_d, rows, cols), KC_OK);
        get(be, dx, dx_d, n);
        for (size_t i = 0; i < n; i++) {
            double f[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                float xp[21];
                memcpy(xp, xs, sizeof xp);
                xp[i] += sgn ? -eps : eps;
                put(be, x_d, xp, n);
                ck_assert_int_eq(kc_activation_forward(be, &a, x_d, y_d, rows, cols), KC_OK);
                get(be, y, y_d, n);
                f[sgn] = 0;
                for (size_t j = 0; j < n; j++)
                    f[sgn] += (double)c[j] * y[j];
            }
            double num = (f[0] - f[1]) / (2.0 * eps);
            char what[96];
            snprintf(what, sizeof what, "%s %s dx", be->name, kc_activation_names[k]);
            check_close_grad(what, i, num, dx[i]);
        }
    }
    kc_free(be, &dx_d);
    kc_free(be, &x_d);
    kc_free(be, &y_d);
    kc_free(be, &dy_d);
}
END_TEST

START_TEST(test_activation_in_place) {
    /* the model may run a linear activation in place: no copy onto itself */
    KC_LOOP_DEVICE(be);
    kc_buf x = dev_alloc(be, 4);
    const float xs[4] = {1, -2, 3, -4};
    put(be, x, xs, 4);
    kc_activation lin = act_of("linear"), relu = act_of("relu");
    ck_assert_int_eq(kc_activation_forward(be, &lin, x, x, 1, 4), KC_OK);
    ck_assert_int_eq(kc_activation_backward(be, &lin, x, x, x, x, 1, 4), KC_OK);
    float got[4];
    get(be, got, x, 4);
    ck_assert_mem_eq(got, xs, sizeof xs);
    ck_assert_int_eq(kc_activation_forward(be, &relu, x, x, 1, 4), KC_OK);
    get(be, got, x, 4);
    const double want[4] = {1, 0, 3, 0};
    assert_values(got, want, 4, 0);
    kc_free(be, &x);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("config");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_seed_cnn_shapes);
    tcase_add_test(tc, test_conv_shape_rules);
    tcase_add_test(tc, test_pool_shape_rules);
    tcase_add_test(tc, test_reshape_rules);
    tcase_add_test(tc, test_dense_errors);
    tcase_add_test(tc, test_conv_errors);
    tcase_add_test(tc, test_pool_dropout_reshape_errors);
    tcase_add_test(tc, test_activation_names);
    suite_add_tcase(s, tc);

    TCase *tv = tcase_create("compute");
    tcase_set_timeout(tv, 120);
    int nb = kc_test_backend_count();
    tcase_add_loop_test(tv, test_dense_forward, 0, nb);
    tcase_add_loop_test(tv, test_conv_forward_same_stride2, 0, nb);
    tcase_add_loop_test(tv, test_conv_forward_channels, 0, nb);
    tcase_add_loop_test(tv, test_pool_forward, 0, nb);
    tcase_add_loop_test(tv, test_dropout_forward, 0, nb);
    tcase_add_loop_test(tv, test_dropout_streams, 0, nb);
    tcase_add_loop_test(tv, test_copy_layers_forward, 0, nb);
    tcase_add_loop_test(tv, test_grad_dense, 0, nb);
    tcase_add_loop_test(tv, test_grad_conv, 0, nb);
    tcase_add_loop_test(tv, test_grad_pools, 0, nb);
    tcase_add_loop_test(tv, test_grad_shape_layers, 0, nb);
    tcase_add_loop_test(tv, test_activation_values, 0, nb);
    tcase_add_loop_test(tv, test_activation_gradients, 0, nb);
    tcase_add_loop_test(tv, test_activation_in_place, 0, nb);
    suite_add_tcase(s, tv);
    return kc_test_run(s);
}
