/* `kerasc bench` run as users run it ($KERASC names the binary): the
 * per-layer table, the JSON form, inference-only runs and the usage errors,
 * on a small convnet over 8x8 images written here. */
#include "clitest.h"

static void setup(void) {
    kerasc = getenv("KERASC");
    dir = kc_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
    int n = 96;
    float *x = calloc((size_t)n * 64, sizeof *x), *y = calloc((size_t)n, sizeof *y);
    ck_assert(x && y);
    for (int i = 0; i < n * 64; i++)
        x[i] = 255.0f * kc_rng_uniform(5, 1, (uint64_t)i);
    for (int i = 0; i < n; i++)
        y[i] = (float)kc_rng_below(5, 2, (uint64_t)i, 3);
    write_npy("x.npy", x, kc_shape3(n, 8, 8));
    write_npy("y.npy", y, kc_shape1(n));
    free(x), free(y);
    char p[4200];
    snprintf(p, sizeof p, "%s/m.yaml", dir);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs("model:\n"
          "  name: tiny\n"
          "  layers:\n"
          "    - Input: {shape: [8, 8, 1]}\n"
          "    - Conv2D: {filters: 4, kernel_size: 3, activation: relu}\n"
          "    - MaxPooling2D\n"
          "    - Flatten\n"
          "    - Dense: {units: 3, activation: softmax}\n"
          "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
          "data:\n"
          "  train: {x: x.npy, y: y.npy}\n"
          "  test: {x: x.npy, y: y.npy}\n"
          "  rescale: 1/255\n"
          "  reshape: [8, 8, 1]\n"
          "fit: {batch_size: 16, seed: 3}\n",
          f);
    fclose(f);
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

START_TEST(test_table) {
    if (!kerasc) return;
    ck_assert_int_eq(run("bench m.yaml --steps 4 --warmup 2 --threads 1"), 0);
    ck_assert_msg(strstr(out_buf, "kerasc bench: tiny, batch 16, 1 thread, cpu backend"), "%s",
                  out_buf);
    /* one row per layer with its class, then the step parts */
    const char *rows[] = {"conv2d (Conv2D)", "max_pooling2d (MaxPooling2D)", "flatten (Flatten)",
                          "dense (Dense)",   "batch gather + upload",        "update (Adam)"};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        ck_assert_msg(strstr(out_buf, rows[i]), "no row '%s' in\n%s", rows[i], out_buf);
    /* conv2d: 6x6x4 outputs of 9 taps, 2 FLOPs each, 16 samples = 0.04 MFLOP;
     * dense: 36 inputs x 3 units x 2 x 16 = 0.00 */
    const char *conv = strstr(out_buf, "conv2d (Conv2D)");
    const char *eol = conv ? strchr(conv, '\n') : NULL;
    ck_assert_ptr_nonnull(eol);
    double fwd, bwd, mflop;
    ck_assert_int_eq(sscanf(conv + strlen("conv2d (Conv2D)"), "%lf %lf %lf", &fwd, &bwd, &mflop),
                     3);
    ck_assert_close(mflop, 0.04, 0.005, 0);
    ck_assert(fwd > 0 && bwd > 0);
    ck_assert_msg(strstr(out_buf, "training: "), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "inference: 96 test images"), "%s", out_buf);
    ck_assert_msg(strstr(out_buf, "peak memory: "), "%s", out_buf);
}
END_TEST

START_TEST(test_json) {
    if (!kerasc) return;
    ck_assert_int_eq(run("bench m.yaml --steps 3 --warmup 0 --json --batch-size 8"), 0);
    ck_assert_msg(out_buf[0] == '{', "%s", out_buf);
    const char *keys[] = {"\"batch_size\": 8",   "\"ms_per_step\": ",
                          "\"samples_per_s\": ", "\"layers\": [{\"name\": \"conv2d\"",
                          "\"images_per_s\": ",  "\"peak_rss_mb\": "};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        ck_assert_msg(strstr(out_buf, keys[i]), "no %s in %s", keys[i], out_buf);
    /* inference only: no training keys */
    ck_assert_int_eq(run("bench m.yaml --inference --json"), 0);
    ck_assert_msg(strstr(out_buf, "\"images_per_s\": "), "%s", out_buf);
    ck_assert_msg(!strstr(out_buf, "ms_per_step"), "%s", out_buf);
}
END_TEST

START_TEST(test_usage_errors) {
    if (!kerasc) return;
    ck_assert_int_eq(run("bench"), 2);
    ck_assert_int_eq(run("bench m.yaml --steps 0"), 2);
    ck_assert_msg(strstr(err_buf, "--steps"), "%s", err_buf);
    ck_assert_int_eq(run("bench m.yaml --frobnicate"), 2);
    ck_assert_int_eq(run("bench m.yaml --inference --no-inference"), 2);
    ck_assert_int_eq(run("bench m.yaml --batch-size 500 --no-inference"), 2);
    ck_assert_msg(strstr(err_buf, "fewer than one batch"), "%s", err_buf);
    ck_assert_int_eq(run("bench missing.yaml"), 2);
    ck_assert_int_eq(run("bench --help"), 0);
    ck_assert_msg(strstr(out_buf, "Usage: kerasc bench CONFIG"), "%s", out_buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("bench");
    TCase *t = tcase_create("cli");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_table);
    tcase_add_test(t, test_json);
    tcase_add_test(t, test_usage_errors);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}
