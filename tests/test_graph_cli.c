/* Layer graphs from the command line: Keras's summary of functional models
 * (byte for byte), training, evaluating and predicting a two-input,
 * two-output model end to end, `kerasc plot`, and graph errors' exit status
 * and location. $KERASC names the binary under test. */
#include "clitest.h"

/* The blobs (clitest.h) as raw-valued images and the same pixels flattened
 * and scaled to [0, 1]: PREFIX_x (n, 8, 8), PREFIX_f (n, 64), PREFIX_y (n,). */
static void make_blob_views(const char *prefix, int n, uint64_t seed) {
    float *x = calloc((size_t)n * 64, sizeof *x), *f = calloc((size_t)n * 64, sizeof *f);
    float *y = calloc((size_t)n, sizeof *y);
    blob_pixels(x, y, n, seed);
    for (int k = 0; k < n * 64; k++)
        f[k] = x[k] / 255.0f;
    char name[256];
    snprintf(name, sizeof name, "%s_x.npy", prefix);
    write_npy(name, x, kc_shape3(n, 8, 8));
    snprintf(name, sizeof name, "%s_f.npy", prefix);
    write_npy(name, f, kc_shape2(n, 64));
    snprintf(name, sizeof name, "%s_y.npy", prefix);
    write_npy(name, y, kc_shape1(n));
    free(x);
    free(f);
    free(y);
}

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
    make_blob_views("train", 400, 11);
    make_blob_views("test", 100, 12);
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

/* ------------------------------------------------------------ summary --- */

/* Keras 3 on a pipe (76 columns): Input rows, depth order, 21/19/12/19 widths,
 * "Connected to" wrapped at the comma. */
static const char *small_summary =
    "Model: \"small\"\n"
    "┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓\n"
    "┃ Layer (type)        ┃ Output Shape      ┃    Param # ┃ Connected to      ┃\n"
    "┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩\n"
    "│ a (InputLayer)      │ (None, 4)         │          0 │ -                 │\n"
    "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
    "│ b (InputLayer)      │ (None, 4)         │          0 │ -                 │\n"
    "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
    "│ da (Dense)          │ (None, 3)         │         15 │ a[0][0]           │\n"
    "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
    "│ db (Dense)          │ (None, 3)         │         15 │ b[0][0]           │\n"
    "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
    "│ sum (Add)           │ (None, 3)         │          0 │ da[0][0],         │\n"
    "│                     │                   │            │ db[0][0]          │\n"
    "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
    "│ out (Dense)         │ (None, 2)         │          8 │ sum[0][0]         │\n"
    "└─────────────────────┴───────────────────┴────────────┴───────────────────┘\n"
    " Total params: 38 (152.00 B)\n"
    " Trainable params: 38 (152.00 B)\n"
    " Non-trainable params: 0 (0.00 B)\n";

/* A shared layer lists the inputs of both its calls; its consumer names them
 * enc[0][0] and enc[1][0]. */
static const char *siamese_summary =
    "Model: \"siamese\"\n"
    "┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓\n"
    "┃ Layer (type)        ┃ Output Shape      ┃    Param # ┃ Connected to      ┃\n"
    "┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩\n"
    "│ left (InputLayer)   │ (None, 4)         │          0 │ -                 │\n"
    "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
    "│ right (InputLayer)  │ (None, 4)         │          0 │ -                 │\n"
    "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
    "│ enc (Dense)         │ (None, 3)         │         15 │ left[0][0],       │\n"
    "│                     │                   │            │ right[0][0]       │\n"
    "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
    "│ both (Concatenate)  │ (None, 6)         │          0 │ enc[0][0],        │\n"
    "│                     │                   │            │ enc[1][0]         │\n"
    "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
    "│ out (Dense)         │ (None, 2)         │         14 │ both[0][0]        │\n"
    "└─────────────────────┴───────────────────┴────────────┴───────────────────┘\n"
    " Total params: 29 (116.00 B)\n"
    " Trainable params: 29 (116.00 B)\n"
    " Non-trainable params: 0 (0.00 B)\n";

/* A functional chain keeps three columns but shows its InputLayer. */
static const char *chain_summary =
    "Model: \"functional\"\n"
    "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓\n"
    "┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃\n"
    "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩\n"
    "│ input_layer (InputLayer)        │ (None, 3)              │             0 │\n"
    "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
    "│ dense (Dense)                   │ (None, 2)              │             8 │\n"
    "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
    "│ dense_1 (Dense)                 │ (None, 1)              │             3 │\n"
    "└─────────────────────────────────┴────────────────────────┴───────────────┘\n"
    " Total params: 11 (44.00 B)\n"
    " Trainable params: 11 (44.00 B)\n"
    " Non-trainable params: 0 (0.00 B)\n";

START_TEST(summary_connected_to_matches_keras) {
    write_file("small.yaml", "model:\n"
                             "  name: small\n"
                             "  layers:\n"
                             "    - Input: {shape: [4], name: a}\n"
                             "    - Input: {shape: [4], name: b}\n"
                             "    - Dense: {units: 3, name: da, inputs: a}\n"
                             "    - Dense: {units: 3, name: db, inputs: b}\n"
                             "    - Add: {name: sum, inputs: [da, db]}\n"
                             "    - Dense: {units: 2, name: out}\n");
    int st = run("summary small.yaml");
    ck_assert_msg(st == 0, "summary failed: %s", err_buf);
    ck_assert_str_eq(out_buf, small_summary);
    write_file("siamese.yaml", "model:\n"
                               "  name: siamese\n"
                               "  layers:\n"
                               "    - Input: {shape: [4], name: left}\n"
                               "    - Input: {shape: [4], name: right}\n"
                               "    - Dense: {units: 3, name: enc, inputs: left}\n"
                               "    - {layer: enc, inputs: right}\n"
                               "    - Concatenate: {name: both, inputs: [enc, 'enc[1]']}\n"
                               "    - Dense: {units: 2, name: out}\n");
    ck_assert_int_eq(run("summary siamese.yaml"), 0);
    ck_assert_str_eq(out_buf, siamese_summary);
    write_file("chain.yaml", "model:\n  outputs: dense_1\n  layers:\n    - Input: {shape: [3]}\n"
                             "    - Dense: {units: 2}\n    - Dense: {units: 1}\n");
    ck_assert_int_eq(run("summary chain.yaml"), 0);
    ck_assert_str_eq(out_buf, chain_summary);
}
END_TEST

/* Functional models written by Keras 3 (tests/fixtures/keras, made by
 * make_fixtures.py): the summary Keras printed, byte for byte - Input rows,
 * Keras's depth order (a shared layer's second Input comes late), "Connected
 * to" over every call of a shared layer. */
START_TEST(summary_of_keras_written_graphs) {
    const char *src = getenv("KERASC_SRC");
    ck_assert_msg(src && *src, "set KERASC_SRC to the source tree");
    const char *names[] = {"merges_k3", "residual_k3", "two_in_two_out_k3", "shared_k3"};
    static char want[1 << 16];
    char p[4200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/tests/fixtures/keras/%s.summary.txt", src, names[i]);
        slurp(p, want, sizeof want);
        ck_assert_msg(*want, "missing fixture %s", p);
        int st = run("summary '%s/tests/fixtures/keras/%s.json'", src, names[i]);
        ck_assert_msg(st == 0, "summary of %s failed: %s", names[i], err_buf);
        ck_assert_msg(!strcmp(out_buf, want), "summary of %s differs from Keras's", names[i]);
    }
    /* the last one again through a model file whose `model:` names the Keras file */
    char yaml[4400];
    snprintf(yaml, sizeof yaml, "model: %s/tests/fixtures/keras/shared_k3.json\n", src);
    write_file("from_json.yaml", yaml);
    ck_assert_int_eq(run("summary from_json.yaml"), 0);
    ck_assert_str_eq(out_buf, want);
}
END_TEST

/* ---------------------------------------------------------- training --- */

static const char *two_io_model =
    "model:\n"
    "  name: two_io\n"
    "  outputs: [class, recon]\n"
    "  layers:\n"
    "    - Input: {shape: [8, 8, 1], name: image}\n"
    "    - Conv2D: {filters: 4, kernel_size: 3, padding: same, activation: relu}\n"
    "    - MaxPooling2D\n"
    "    - Flatten: {name: flat}\n"
    "    - Input: {shape: [64], name: pixels}\n"
    "    - Dense: {units: 16, activation: relu, name: code, inputs: pixels}\n"
    "    - Concatenate: {name: merged, inputs: [flat, code]}\n"
    "    - Dense: {units: 4, activation: softmax, name: class}\n"
    "    - Dense: {units: 64, activation: sigmoid, name: recon, inputs: merged}\n"
    "compile:\n"
    "  optimizer: {Adam: {learning_rate: 0.01}}\n"
    "  loss: {class: sparse_categorical_crossentropy, recon: mse}\n"
    "  loss_weights: {class: 1.0, recon: 0.5}\n"
    "  metrics: {class: [accuracy], recon: [mae]}\n";

START_TEST(two_inputs_two_outputs_end_to_end) {
    char cfg[4096];
    /* one pair of arrays feeds both inputs; the reconstruction target is x itself */
    snprintf(cfg, sizeof cfg,
             "%sdata:\n"
             "  train: {x: train_x.npy, y: train_y.npy}\n"
             "  test: {x: test_x.npy, y: test_y.npy}\n"
             "  inputs: {image: x, pixels: x}\n"
             "  targets: {class: y, recon: x}\n"
             "  reshape: {image: [8, 8, 1], pixels: [64]}\n"
             "  rescale: 1/255\n"
             "fit: {epochs: 4, batch_size: 16, validation_split: 0.2, seed: 5}\n",
             two_io_model);
    write_file("two.yaml", cfg);
    int st = run("train two.yaml --output run --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    /* Keras 3's keys: the weighted total, metrics per output, each output's loss */
    ck_assert_ptr_nonnull(strstr(out_buf, " - loss: "));
    ck_assert_ptr_nonnull(strstr(out_buf, " - class_accuracy: "));
    ck_assert_ptr_nonnull(strstr(out_buf, " - recon_mae: "));
    ck_assert_ptr_nonnull(strstr(out_buf, " - class_loss: "));
    ck_assert_ptr_nonnull(strstr(out_buf, " - val_recon_loss: "));
    char hist[8192];
    slurp(path_in("run/history.csv"), hist, sizeof hist);
    const char *header =
        "epoch,class_accuracy,class_loss,loss,recon_loss,recon_mae,val_class_accuracy,"
        "val_class_loss,val_loss,val_recon_loss,val_recon_mae\n";
    ck_assert_msg(!strncmp(hist, header, strlen(header)), "history: %s", hist);
    /* the last epoch: loss = class_loss + 0.5 recon_loss, for training and validation */
    char *last = hist;
    for (char *p = hist; *p; p++)
        if (*p == '\n' && p[1]) last = p + 1;
    double v[11];
    ck_assert_int_eq(sscanf(last, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1],
                            &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10]),
                     11);
    ck_assert_int_eq((int)v[0], 3);
    ck_assert_close(v[3], v[2] + 0.5 * v[4], 1e-6, 1e-5);
    ck_assert_close(v[8], v[7] + 0.5 * v[9], 1e-6, 1e-5);
    ck_assert_msg(v[6] >= 0.9, "validation accuracy %.4f", v[6]);
    char *tl = strstr(out_buf, "Test - loss: ");
    ck_assert_ptr_nonnull(tl);
    double test_loss, test_acc;
    ck_assert_int_eq(sscanf(tl, "Test - loss: %lf - class_accuracy: %lf", &test_loss, &test_acc),
                     2);
    ck_assert_msg(test_acc >= 0.9, "test accuracy %.4f", test_acc);

    /* evaluate from the checkpoint reports the same numbers */
    st = run("evaluate run/last.safetensors --json");
    ck_assert_msg(st == 0, "evaluate failed: %s", err_buf);
    double el, ea;
    ck_assert_int_eq(sscanf(out_buf, "{\"loss\": %lf, \"class_accuracy\": %lf", &el, &ea), 2);
    ck_assert_close(el, test_loss, 5e-5, 0);
    ck_assert_ptr_nonnull(strstr(out_buf, "\"recon_mae\": "));
    ck_assert_ptr_nonnull(strstr(out_buf, "\"recon_loss\": "));

    /* predict: one named input each, one file per output */
    st = run("predict run/best.safetensors --input image=test_x.npy --input pixels=test_x.npy "
             "--output class=c.npy --output recon=r.npy");
    ck_assert_msg(st == 0, "predict failed: %s", err_buf);
    kc_array a = {0};
    kc_error e = {0};
    ck_assert_int_eq(kc_array_load(path_in("c.npy"), NULL, &a, &e), 0);
    ck_assert_int_eq(a.shape.d[0], 100);
    ck_assert_int_eq(a.shape.d[1], 4);
    const float *p = a.data;
    ck_assert_close(p[0] + p[1] + p[2] + p[3], 1.0, 1e-5, 0);
    kc_array_free(&a);
    ck_assert_int_eq(kc_array_load(path_in("r.npy"), NULL, &a, &e), 0);
    ck_assert_int_eq(a.shape.d[1], 64);
    kc_array_free(&a);
    /* both outputs side by side in one CSV: 4 + 64 columns */
    ck_assert_int_eq(
        run("predict run/best.safetensors --input image=test_x.npy --input pixels=test_x.npy"), 0);
    int commas = 0;
    for (char *c = out_buf; *c && *c != '\n'; c++)
        commas += *c == ',';
    ck_assert_int_eq(commas, 67);
    /* a missing input is named */
    ck_assert_int_eq(run("predict run/best.safetensors --input image=test_x.npy"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "2 inputs"));
    /* the summary shows both inputs and the merge */
    ck_assert_int_eq(run("summary run/last.safetensors"), 0);
    ck_assert_ptr_nonnull(strstr(
        out_buf, "│ merged              │ (None, 80)        │          0 │ flat[0][0],       │"));
}
END_TEST

/* Arrays named per input and output in x:/y: mappings; rescale touches only x. */
START_TEST(named_arrays_feed_inputs_and_targets) {
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "%sdata:\n"
             "  train: {x: {image: train_f.npy, pixels: train_f.npy}, y: {class: train_y.npy, "
             "recon: train_f.npy}}\n"
             "  validation: {x: {image: test_f.npy, pixels: test_f.npy}, y: {class: test_y.npy, "
             "recon: test_f.npy}}\n"
             "  reshape: {image: [8, 8, 1]}\n"
             "fit: {epochs: 3, batch_size: 20, seed: 2}\n",
             two_io_model);
    write_file("named.yaml", cfg);
    int st = run("train named.yaml --output named --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    char hist[8192];
    slurp(path_in("named/history.csv"), hist, sizeof hist);
    ck_assert_ptr_nonnull(strstr(hist, "val_class_accuracy"));
    /* a reconstruction of [0, 1] pixels: its error stays well below the pixels' spread */
    char *last = hist;
    for (char *p = hist; *p; p++)
        if (*p == '\n' && p[1]) last = p + 1;
    double v[11];
    ck_assert_int_eq(sscanf(last, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1],
                            &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10]),
                     11);
    ck_assert_msg(v[10] < 0.2, "val_recon_mae %.4f", v[10]);
    ck_assert_msg(v[6] >= 0.85, "val_class_accuracy %.4f", v[6]);

    /* a target array the sources do not hold is named with what they have */
    char *bad = strdup(cfg);
    char *r = strstr(bad, "recon: train_f.npy");
    memcpy(r, "recox", 5);
    write_file("bad.yaml", bad);
    free(bad);
    ck_assert_int_eq(run("train bad.yaml"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "bad.yaml:"));
    ck_assert_ptr_nonnull(
        strstr(err_buf, "model output 'recon' takes array 'recon', but data.train"));
    ck_assert_ptr_nonnull(strstr(err_buf, "(it has: image, pixels, class, recox)"));
}
END_TEST

/* A shared encoder trains from the command line; its checkpoint holds its
 * weights once, under Keras's names, and evaluates to what training printed. */
START_TEST(shared_layer_trains_and_checkpoints) {
    write_file("siam.yaml", "model:\n"
                            "  name: siam\n"
                            "  layers:\n"
                            "    - Input: {shape: [64], name: left}\n"
                            "    - Input: {shape: [64], name: right}\n"
                            "    - Dense: {units: 8, activation: relu, name: enc, inputs: left}\n"
                            "    - {layer: enc, inputs: right}\n"
                            "    - Concatenate: {name: both, inputs: [enc, 'enc[1]']}\n"
                            "    - Dense: {units: 4, activation: softmax, name: class}\n"
                            "compile:\n"
                            "  optimizer: {Adam: {learning_rate: 0.01}}\n"
                            "  loss: sparse_categorical_crossentropy\n"
                            "  metrics: [accuracy]\n"
                            "data:\n"
                            "  train: {x: train_f.npy, y: train_y.npy}\n"
                            "  test: {x: test_f.npy, y: test_y.npy}\n"
                            "  inputs: {left: x, right: x}\n"
                            "fit: {epochs: 3, batch_size: 16, seed: 4}\n");
    int st = run("train siam.yaml --output siam --threads 2");
    ck_assert_msg(st == 0, "train failed (%d): %s", st, err_buf);
    char *tl = strstr(out_buf, "Test - loss: ");
    ck_assert_ptr_nonnull(tl);
    double loss, acc;
    ck_assert_int_eq(sscanf(tl, "Test - loss: %lf - accuracy: %lf", &loss, &acc), 2);
    ck_assert_msg(acc >= 0.9, "test accuracy %.4f", acc);
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in("siam/last.safetensors"), &f, &e) == 0, "%s", e.msg);
    int weights = 0;
    for (int i = 0; i < kc_st_count(f); i++)
        if (strncmp(kc_st_at(f, i)->name, "optimizer/", 10) &&
            strncmp(kc_st_at(f, i)->name, "state/", 6))
            weights++;
    ck_assert_int_eq(weights, 4); /* enc/kernel, enc/bias, class/kernel, class/bias */
    const kc_st_tensor *k = kc_st_find(f, "enc/kernel");
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(k->shape.d[0], 64);
    ck_assert_int_eq(k->shape.d[1], 8);
    kc_st_close(f);
    ck_assert_int_eq(run("evaluate siam/last.safetensors --json"), 0);
    double el;
    ck_assert_int_eq(sscanf(out_buf, "{\"loss\": %lf", &el), 1);
    ck_assert_close(el, loss, 5e-5, 0);
}
END_TEST

/* --------------------------------------------------------------- plot --- */

static const char *plot_cfg = "model:\n"
                              "  name: tiny\n"
                              "  layers:\n"
                              "    - Input: {shape: [4], name: a}\n"
                              "    - Dense: {units: 3, name: left, inputs: a}\n"
                              "    - Dense: {units: 3, name: right, inputs: a}\n"
                              "    - Add: {name: sum, inputs: [left, right]}\n";

static int dot_available(void) {
    return system("command -v dot >/dev/null 2>&1") == 0;
}

START_TEST(plot_writes_dot_and_images) {
    write_file("tiny.yaml", plot_cfg);
    ck_assert_int_eq(run("plot tiny.yaml -o tiny.dot"), 0);
    char dot[1 << 15];
    slurp(path_in("tiny.dot"), dot, sizeof dot);
    ck_assert_ptr_nonnull(strstr(dot, "digraph \"tiny\" {"));
    ck_assert_ptr_nonnull(strstr(dot, "<b>sum</b> (Add)"));
    ck_assert_ptr_nonnull(strstr(dot, "Input shape: <b>[(None, 3), (None, 3)]</b>"));
    ck_assert_ptr_nonnull(strstr(dot, "<b>a</b> (InputLayer)"));
    ck_assert_ptr_nonnull(strstr(dot, "\"input_0\" -> \"layer_0\""));
    ck_assert_ptr_nonnull(strstr(dot, "\"layer_1\" -> \"layer_2\""));
    int edges = 0;
    for (char *p = dot; (p = strstr(p, " -> ")); p++)
        edges++;
    ck_assert_int_eq(edges, 4);
    /* a Sequential stack is a chain without an Input box */
    write_file("seq.yaml", "model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\n"
                           "    - Dense: {units: 1}\n");
    ck_assert_int_eq(run("plot seq.yaml -o seq.dot --rankdir LR"), 0);
    slurp(path_in("seq.dot"), dot, sizeof dot);
    ck_assert_ptr_null(strstr(dot, "InputLayer"));
    ck_assert_ptr_nonnull(strstr(dot, "rankdir=\"LR\""));
    ck_assert_ptr_nonnull(strstr(dot, "\"layer_0\" -> \"layer_1\""));
    if (dot_available()) {
        ck_assert_int_eq(run("plot tiny.yaml -o tiny.png"), 0);
        unsigned char png[8];
        FILE *f = fopen(path_in("tiny.png"), "rb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fread(png, 1, 8, f), 8);
        fclose(f);
        ck_assert_int_eq(memcmp(png, "\x89PNG\r\n\x1a\n", 8), 0);
        ck_assert_int_eq(run("plot tiny.yaml -o tiny.svg"), 0);
        char svg[1 << 16];
        slurp(path_in("tiny.svg"), svg, sizeof svg);
        ck_assert_ptr_nonnull(strstr(svg, "<svg"));
        ck_assert_ptr_nonnull(strstr(svg, "sum"));
    } else {
        fprintf(stderr, "skipped the .png/.svg part: Graphviz's dot is not installed\n");
    }
    /* without dot: the DOT text beside the image, a hint, success */
    ck_assert_int_eq(run_env("PATH=/nonexistent", "plot tiny.yaml -o sub.png"), 0);
    ck_assert_ptr_nonnull(strstr(err_buf, "sub.dot"));
    ck_assert_ptr_nonnull(strstr(err_buf, "dot -Tpng sub.dot -o sub.png"));
    struct stat sb;
    ck_assert_int_eq(stat(path_in("sub.dot"), &sb), 0);
    ck_assert_int_ne(stat(path_in("sub.png"), &sb), 0);
    /* usage errors */
    ck_assert_int_eq(run("plot tiny.yaml -o tiny.gif"), 2);
    ck_assert_int_eq(run("plot tiny.yaml"), 2);
}
END_TEST

/* ------------------------------------------------------------- errors --- */

START_TEST(graph_errors_exit_2_with_location) {
    write_file("cyc.yaml", "model:\n  layers:\n    - Input: {shape: [4]}\n"
                           "    - Dense: {units: 2, name: p, inputs: q}\n    - Dense: {units: 2, "
                           "name: q, inputs: p}\n");
    ck_assert_int_eq(run("summary cyc.yaml"), 2);
    ck_assert_ptr_nonnull(
        strstr(err_buf, "cyc.yaml:4:42: 'q' is declared below this entry (line 5)"));
    ck_assert_int_eq(run("plot cyc.yaml -o c.dot"), 2);
    write_file("shape.yaml", "model:\n  layers:\n    - Input: {shape: [4], name: a}\n    - Input: "
                             "{shape: [6], name: b}\n"
                             "    - Subtract: {inputs: [a, b]}\n");
    ck_assert_int_eq(run("train shape.yaml"), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "shape.yaml:5:7:"));
    ck_assert_ptr_nonnull(strstr(err_buf, "(None, 4), (None, 6)"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("graph_cli");
    TCase *t = tcase_create("graph_cli");
    tcase_set_timeout(t, 300);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, summary_connected_to_matches_keras);
    tcase_add_test(t, summary_of_keras_written_graphs);
    tcase_add_test(t, two_inputs_two_outputs_end_to_end);
    tcase_add_test(t, named_arrays_feed_inputs_and_targets);
    tcase_add_test(t, shared_layer_trains_and_checkpoints);
    tcase_add_test(t, plot_writes_dot_and_images);
    tcase_add_test(t, graph_errors_exit_2_with_location);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}
