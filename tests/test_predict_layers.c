/* kerasc predict --layer NAME and --logits through the binary: a hidden
 * layer's output, read back, equals what the checkpoint's weights give by
 * plain arithmetic (Dense, Conv2D, Flatten, Embedding + pooling); --logits
 * is the output before its softmax; several layers and several tensors are
 * written as several outputs are; raw text and image files take --layer too;
 * every backend agrees; wrong names are usage errors naming the closest.
 * $KERASC names the binary under test. */
#include <png.h>

#include "clitest.h"
#include "devices.h"

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    dir = kc_test_tmpdir();
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

/* ------------------------------------------------------------ helpers --- */

static kc_array load(const char *name) {
    kc_array a = {0};
    kc_error e = {0};
    ck_assert_msg(kc_array_load(path_in(name), NULL, &a, &e) == 0, "%s: %s", name, e.msg);
    return a;
}

/* A float32 weight of the checkpoint, copied out, with its shape. */
static float *weight(const char *ckpt, const char *name, kc_shape *shape) {
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path_in(ckpt), &f, &e) == 0, "%s", e.msg);
    const kc_st_tensor *t = kc_st_find(f, name);
    ck_assert_msg(t != NULL, "%s has no %s", ckpt, name);
    ck_assert_int_eq(t->dtype, KC_ST_F32);
    size_t n = kc_st_nbytes(t);
    float *v = malloc(n ? n : 1);
    memcpy(v, t->data, n);
    *shape = t->shape;
    kc_st_close(f);
    return v;
}

/* The CSV in out_buf as numbers: *rows lines of *cols values each. */
static float *csv_out(int *rows, int *cols) {
    size_t cap = 1 << 16, n = 0;
    float *v = malloc(cap * sizeof *v);
    *rows = *cols = 0;
    for (char *line = out_buf; *line;) {
        char *end = strchr(line, '\n');
        ck_assert_ptr_nonnull(end);
        int c = 0;
        for (char *p = line; p < end; c++) {
            char *q;
            ck_assert(n < cap);
            v[n++] = strtof(p, &q);
            ck_assert_msg(q != p && (q == end || *q == ','), "bad CSV: %.80s", line);
            p = q == end ? q : q + 1;
        }
        if (*rows) ck_assert_int_eq(c, *cols);
        *cols = c;
        (*rows)++;
        line = end + 1;
    }
    return v;
}

static void assert_same(const float *a, const float *b, size_t n, double tol, const char *what) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(a[i] - b[i]) <= tol + tol * fabs(b[i]), "%s[%zu]: %.9g vs %.9g", what, i,
                      a[i], b[i]);
}

/* log(softmax(logits)) = logits - c for one c per row. */
static void assert_log_softmax(const float *logits, const float *p, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double c0 = logits[r * cols] - log(p[r * cols]);
        for (int k = 1; k < cols; k++)
            ck_assert_close(logits[r * cols + k] - log(p[r * cols + k]), c0, 1e-4, 1e-4);
    }
}

/* Rows x (units) = act(x W + b) for a Dense layer: W (in, units). */
static void dense(const float *x, int rows, int in, const float *w, const float *b, int units,
                  int tanh_act, float *out) {
    for (int r = 0; r < rows; r++)
        for (int u = 0; u < units; u++) {
            double s = b[u];
            for (int i = 0; i < in; i++)
                s += (double)x[r * in + i] * w[i * units + u];
            out[r * units + u] = (float)(tanh_act ? tanh(s) : s);
        }
}

static void write_values(const char *name, kc_shape sh, uint64_t seed, float scale) {
    int64_t n = kc_shape_numel(&sh);
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = scale * (2 * kc_rng_uniform(seed, 1, (uint64_t)i) - 1);
    write_npy(name, v, sh);
    free(v);
}

/* Labels 0..classes-1 from the sign pattern of the first columns of x. */
static void write_labels(const char *xname, const char *yname, int classes) {
    kc_array x = load(xname);
    int64_t n = kc_array_rows(&x), d = kc_array_row_size(&x);
    float *y = malloc((size_t)n * sizeof *y);
    const float *xv = x.data;
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)(((xv[i * d] > 0) + 2 * (xv[i * d + 1] > 0)) % classes);
    write_npy(yname, y, kc_shape1(n));
    free(y);
    kc_array_free(&x);
}

/* ------------------------------------------------------- dense stack --- */

static const char *mlp_yaml =
    "model:\n"
    "  name: mlp\n"
    "  layers:\n"
    "    - Input: {shape: [5]}\n"
    "    - Dense: {units: 4, activation: tanh, name: hidden}\n"
    "    - Dense: {units: 3, activation: softmax, name: out}\n"
    "compile: {optimizer: {adam: {learning_rate: 0.05}}, loss: sparse_categorical_crossentropy}\n"
    "data:\n"
    "  train: {x: x.npy, y: y.npy}\n"
    "  rescale: 0.5\n"
    "fit: {epochs: 2, batch_size: 8, seed: 3, verbose: 0}\n";

static void train_mlp(void) {
    write_values("x.npy", kc_shape2(30, 5), 21, 2.0f);
    write_labels("x.npy", "y.npy", 3);
    write_file("mlp.yaml", mlp_yaml);
    ck_assert_msg(run("train mlp.yaml --output run --threads 1") == 0, "%s", err_buf);
}

/* --layer on the hidden Dense is tanh(x W + b) of the rescaled x; --logits
 * is the last Dense before its softmax; batches of 7 cover 30 rows. */
START_TEST(dense_layer_and_logits_match_the_weights) {
    train_mlp();
    kc_shape s1, s2, s3, s4;
    float *w1 = weight("run/last.safetensors", "hidden/kernel", &s1);
    float *b1 = weight("run/last.safetensors", "hidden/bias", &s2);
    float *w2 = weight("run/last.safetensors", "out/kernel", &s3);
    float *b2 = weight("run/last.safetensors", "out/bias", &s4);
    ck_assert(s1.rank == 2 && s1.d[0] == 5 && s1.d[1] == 4 && s3.d[0] == 4 && s3.d[1] == 3);
    kc_array x = load("x.npy");
    float xs[150], h[120], lg[90];
    for (int i = 0; i < 150; i++)
        xs[i] = 0.5f * ((const float *)x.data)[i];
    dense(xs, 30, 5, w1, b1, 4, 1, h);
    dense(h, 30, 4, w2, b2, 3, 0, lg);

    const char *opts = "--batch-size 7 --threads 1";
    ck_assert_msg(run("predict run/last.safetensors --input x.npy --layer hidden --output h.npy %s",
                      opts) == 0,
                  "%s", err_buf);
    kc_array a = load("h.npy");
    ck_assert(a.shape.rank == 2 && a.shape.d[0] == 30 && a.shape.d[1] == 4);
    assert_same(a.data, h, 120, 1e-5, "hidden");
    kc_array_free(&a);
    /* an Input's values are what the model reads: rescaled */
    ck_assert_int_eq(
        run("predict run/last.safetensors --input x.npy --layer input_layer --output in.npy %s",
            opts),
        0);
    a = load("in.npy");
    assert_same(a.data, xs, 150, 0, "input_layer");
    kc_array_free(&a);
    /* the logits: h W2 + b2, and log(p) up to a constant per row */
    ck_assert_int_eq(
        run("predict run/last.safetensors --input x.npy --logits --output lg.npy %s", opts), 0);
    a = load("lg.npy");
    ck_assert(a.shape.rank == 2 && a.shape.d[1] == 3);
    assert_same(a.data, lg, 90, 1e-5, "logits");
    ck_assert_int_eq(run("predict run/last.safetensors --input x.npy --output p.npy %s", opts), 0);
    kc_array p = load("p.npy");
    assert_log_softmax(a.data, p.data, 30, 3);
    kc_array_free(&a);

    /* two layers side by side in one CSV, in the order given */
    ck_assert_int_eq(
        run("predict run/last.safetensors --input x.npy --layer hidden --layer out %s", opts), 0);
    int rows, cols;
    float *v = csv_out(&rows, &cols);
    ck_assert_int_eq(rows, 30);
    ck_assert_int_eq(cols, 7);
    for (int r = 0; r < 30; r++) {
        assert_same(v + r * 7, h + r * 4, 4, 1e-5, "csv hidden");
        assert_same(v + r * 7 + 4, (const float *)p.data + r * 3, 3, 1e-6, "csv out");
    }
    free(v);
    /* one file per layer, named as the layers */
    ck_assert_int_eq(run("predict run/last.safetensors --input x.npy --layer out --layer hidden "
                         "--output hidden=h2.npy --output out=o2.csv %s",
                         opts),
                     0);
    a = load("h2.npy");
    assert_same(a.data, h, 120, 1e-5, "hidden=h2.npy");
    kc_array_free(&a);
    kc_array o2 = {0};
    kc_error e = {0};
    ck_assert_int_eq(kc_csv_load(path_in("o2.csv"), NULL, -1, &o2, NULL, &e), 0);
    ck_assert_int_eq(kc_array_rows(&o2), 30);
    assert_same(o2.data, p.data, 90, 1e-6, "out=o2.csv");
    kc_array_free(&o2);

    /* every backend writes the same features */
    KC_FOR_EACH_DEVICE(d) {
        const char *name = d->be->name;
        int st = run("predict run/last.safetensors --input x.npy --layer hidden --output hb.npy "
                     "--backend %s --batch-size 7",
                     name);
        ck_assert_msg(st == 0, "%s: %s", name, err_buf);
        a = load("hb.npy");
        assert_same(a.data, h, 120, 1e-4, name);
        kc_array_free(&a);
        st = run("predict run/last.safetensors --input x.npy --logits --output lb.npy --backend %s",
                 name);
        ck_assert_msg(st == 0, "%s: %s", name, err_buf);
        a = load("lb.npy");
        assert_same(a.data, lg, 90, 1e-4, name);
        kc_array_free(&a);
    }
    kc_array_free(&p);
    kc_array_free(&x);
    free(w1), free(b1), free(w2), free(b2);
}
END_TEST

START_TEST(wrong_names_are_usage_errors) {
    train_mlp();
    const char *base = "predict run/last.safetensors --input x.npy";
    ck_assert_int_eq(run("%s --layer hiden", base), 2);
    ck_assert_msg(strstr(err_buf, "--layer hiden: the model has no layer 'hiden' (did you mean "
                                  "'hidden'?)"),
                  "%s", err_buf);
    ck_assert_msg(strstr(err_buf, "Try 'kerasc predict --help'."), "%s", err_buf);
    ck_assert_int_eq(out_buf[0], 0);
    ck_assert_int_eq(run("%s --layer zzzzzz", base), 2);
    ck_assert_msg(strstr(err_buf, "no layer 'zzzzzz' (its layers: input_layer, hidden, out)"), "%s",
                  err_buf);
    ck_assert_int_eq(run("%s --layer 'hidden[0][1]'", base), 2);
    ck_assert_msg(strstr(err_buf, "'hidden' returns one tensor, hidden[0][0]"), "%s", err_buf);
    ck_assert_int_eq(run("%s --layer 'hidden[1]'", base), 2);
    ck_assert_msg(strstr(err_buf, "layer 'hidden' is called once, hidden[0]"), "%s", err_buf);
    ck_assert_int_eq(run("%s --layer 'hidden[x'", base), 2);
    ck_assert_msg(strstr(err_buf, "not a layer reference"), "%s", err_buf);
    ck_assert_int_eq(run("%s --layer hidden --layer 'hidden[0]'", base), 2);
    ck_assert_msg(strstr(err_buf, "'hidden' is chosen twice"), "%s", err_buf);
    ck_assert_int_eq(run("%s --layer hidden --logits", base), 2);
    ck_assert_msg(strstr(err_buf, "--logits and --layer cannot be combined"), "%s", err_buf);
    ck_assert_int_eq(run("%s --layer ''", base), 2);
    /* --output names what --layer chose */
    ck_assert_int_eq(run("%s --layer hidden --output out=o.npy", base), 2);
    ck_assert_msg(strstr(err_buf, "--output out=...: --layer chose no 'out' (it chose: hidden)"),
                  "%s", err_buf);
    ck_assert_int_eq(run("%s --layer hidden --layer out --output both.npy", base), 2);
    ck_assert_msg(strstr(err_buf, "--layer chose 2 tensors: name each, e.g. --output hidden="),
                  "%s", err_buf);
    ck_assert_int_eq(run("%s --layer hidden --layer out --output h.npy --output out=o.npy", base),
                     2);
    ck_assert_msg(strstr(err_buf, "--output h.npy: --layer chose 2 tensors; name each file, e.g. "
                                  "--output hidden=FILE"),
                  "%s", err_buf);
    ck_assert(!file_exists("o.npy") && !file_exists("both.npy") && !file_exists("h.npy"));
    /* the explicit forms of a layer's only tensor are accepted */
    ck_assert_int_eq(run("%s --layer 'hidden[0][0]' --output h.npy", base), 0);
    ck_assert_int_eq(run("%s --layer 'hidden[0]'", base), 0);
}
END_TEST

/* ---------------------------------------------------- conv + flatten --- */

static const char *cnn_yaml =
    "model:\n"
    "  name: cnn\n"
    "  layers:\n"
    "    - Input: {shape: [8, 8, 1]}\n"
    "    - Conv2D: {filters: 2, kernel_size: 3, activation: relu, name: conv}\n"
    "    - Flatten: {name: flat}\n"
    "    - Dense: {units: 4, activation: softmax, name: out}\n"
    "compile: {optimizer: {adam: {learning_rate: 0.01}}, loss: sparse_categorical_crossentropy}\n"
    "data:\n"
    "  train: {x: bx.npy, y: by.npy}\n"
    "  rescale: 1/255\n"
    "fit: {epochs: 1, batch_size: 16, seed: 5, verbose: 0}\n";

/* Conv2D (valid, stride 1) then relu from the kernel (3, 3, 1, 2): its
 * --layer output and Flatten's are that, and --logits is Dense on it. */
START_TEST(conv_and_flatten_match_the_weights) {
    int n = 24;
    float *x = calloc((size_t)n * 64, sizeof *x), *y = calloc((size_t)n, sizeof *y);
    blob_pixels(x, y, n, 4);
    write_npy("bx.npy", x, kc_shape4(n, 8, 8, 1));
    write_npy("by.npy", y, kc_shape1(n));
    write_file("cnn.yaml", cnn_yaml);
    ck_assert_msg(run("train cnn.yaml --output run --threads 1") == 0, "%s", err_buf);
    kc_shape sk, sb, sw, sd;
    float *k = weight("run/last.safetensors", "conv/kernel", &sk);
    float *b = weight("run/last.safetensors", "conv/bias", &sb);
    float *w = weight("run/last.safetensors", "out/kernel", &sw);
    float *bd = weight("run/last.safetensors", "out/bias", &sd);
    ck_assert(sk.rank == 4 && sk.d[0] == 3 && sk.d[1] == 3 && sk.d[2] == 1 && sk.d[3] == 2);
    ck_assert(sw.d[0] == 72 && sw.d[1] == 4);
    float *c = malloc((size_t)n * 72 * sizeof *c), *lg = malloc((size_t)n * 4 * sizeof *lg);
    for (int s = 0; s < n; s++)
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++)
                for (int f = 0; f < 2; f++) {
                    double v = b[f];
                    for (int a = 0; a < 3; a++)
                        for (int q = 0; q < 3; q++)
                            v += x[s * 64 + (i + a) * 8 + j + q] / 255.0 * k[(a * 3 + q) * 2 + f];
                    c[((s * 6 + i) * 6 + j) * 2 + f] = (float)(v > 0 ? v : 0);
                }
    dense(c, n, 72, w, bd, 4, 0, lg);
    ck_assert_int_eq(run("predict run/last.safetensors --input bx.npy --layer conv "
                         "--layer flat --output flat=f.npy --batch-size 5 --output conv=c.npy"),
                     0);
    kc_array a = load("c.npy");
    ck_assert(a.shape.rank == 4 && a.shape.d[0] == n && a.shape.d[1] == 6 && a.shape.d[3] == 2);
    assert_same(a.data, c, (size_t)n * 72, 1e-5, "conv");
    kc_array_free(&a);
    a = load("f.npy");
    ck_assert(a.shape.rank == 2 && a.shape.d[1] == 72);
    assert_same(a.data, c, (size_t)n * 72, 1e-5, "flat");
    kc_array_free(&a);
    ck_assert_int_eq(run("predict run/last.safetensors --input bx.npy --logits --output lg.npy"),
                     0);
    a = load("lg.npy");
    assert_same(a.data, lg, (size_t)n * 4, 1e-4, "logits");
    ck_assert_int_eq(run("predict run/last.safetensors --input bx.npy --output p.npy"), 0);
    kc_array p = load("p.npy");
    assert_log_softmax(a.data, p.data, n, 4);
    kc_array_free(&a);
    kc_array_free(&p);
    free(x), free(y), free(k), free(b), free(w), free(bd), free(c), free(lg);
}
END_TEST

/* ------------------------------------ several tensors, several outputs --- */

static const char *seq_yaml =
    "model:\n"
    "  name: seq\n"
    "  layers:\n"
    "    - Input: {shape: [4, 2], name: seq}\n"
    "    - LSTM: {units: 3, return_state: true, name: lstm}\n"
    "    - Dense: {units: 2, activation: softmax, name: a, inputs: 'lstm[0][2]'}\n"
    "    - Dense: {units: 1, name: b, inputs: lstm}\n"
    "  outputs: [a, b]\n"
    "compile:\n"
    "  optimizer: {adam: {learning_rate: 0.01}}\n"
    "  loss: {a: sparse_categorical_crossentropy, b: mse}\n"
    "data:\n"
    "  train: {x: {seq: sx.npy}, y: {a: ya.npy, b: yb.npy}}\n"
    "fit: {epochs: 1, batch_size: 8, seed: 2, verbose: 0}\n";

/* An LSTM with return_state writes its three tensors (output, h, c), or the
 * one a reference picks; --logits of two outputs: a's before its softmax,
 * b's (linear) as it is. */
START_TEST(lstm_states_and_two_outputs) {
    write_values("sx.npy", kc_shape3(20, 4, 2), 9, 1.0f);
    write_labels("sx.npy", "ya.npy", 2);
    write_values("yb.npy", kc_shape2(20, 1), 10, 1.0f);
    write_file("seq.yaml", seq_yaml);
    ck_assert_msg(run("train seq.yaml --output run --threads 1") == 0, "%s", err_buf);
    const char *base = "predict run/last.safetensors --input sx.npy --batch-size 6";
    ck_assert_msg(run("%s --layer lstm", base) == 0, "%s", err_buf);
    int rows, cols;
    float *st = csv_out(&rows, &cols);
    ck_assert_int_eq(rows, 20);
    ck_assert_int_eq(cols, 9);
    for (int r = 0; r < 20; r++) /* without return_sequences the output is h */
        assert_same(st + r * 9, st + r * 9 + 3, 3, 0, "lstm vs lstm[0][1]");
    ck_assert_msg(
        run("%s --layer lstm --output 'lstm[0][2]=c.npy' --output 'lstm[0][1]=h.npy'", base) == 0,
        "%s", err_buf);
    ck_assert_msg(run("%s --layer 'lstm[0][2]' --output c2.npy", base) == 0, "%s", err_buf);
    kc_array c2 = load("c2.npy");
    ck_assert(c2.shape.rank == 2 && c2.shape.d[1] == 3);
    for (int r = 0; r < 20; r++)
        assert_same((const float *)c2.data + r * 3, st + r * 9 + 6, 3, 0, "lstm[0][2] alone");
    kc_array_free(&c2);
    ck_assert_int_eq(run("%s --layer 'lstm[0][2]' --layer lstm", base), 2);
    ck_assert_msg(strstr(err_buf, "--layer lstm: 'lstm[0][2]' is chosen twice"), "%s", err_buf);
    kc_array c = load("c.npy"), h = load("h.npy");
    ck_assert(c.shape.rank == 2 && c.shape.d[0] == 20 && c.shape.d[1] == 3);
    for (int r = 0; r < 20; r++) {
        assert_same((const float *)c.data + r * 3, st + r * 9 + 6, 3, 1e-6, "lstm[0][2]");
        assert_same((const float *)h.data + r * 3, st + r * 9 + 3, 3, 1e-6, "lstm[0][1]");
    }
    ck_assert_int_eq(run("%s --layer 'lstm[0][3]'", base), 2);
    ck_assert_msg(strstr(err_buf, "'lstm' returns 3 tensors, lstm[0][0] .. lstm[0][2]"), "%s",
                  err_buf);

    /* --logits: a = c Wa + ba (2 columns), then b as predicted */
    kc_shape s1, s2;
    float *wa = weight("run/last.safetensors", "a/kernel", &s1);
    float *ba = weight("run/last.safetensors", "a/bias", &s2);
    ck_assert(s1.d[0] == 3 && s1.d[1] == 2);
    float la[40];
    dense(c.data, 20, 3, wa, ba, 2, 0, la);
    ck_assert_int_eq(run("%s --logits", base), 0);
    float *lg = csv_out(&rows, &cols);
    ck_assert_int_eq(cols, 3);
    ck_assert_int_eq(run("%s", base), 0);
    float *p = csv_out(&rows, &cols);
    ck_assert_int_eq(cols, 3);
    float pa[40], lga[40];
    for (int r = 0; r < 20; r++) {
        assert_same(lg + r * 3, la + r * 2, 2, 1e-5, "logits of a");
        ck_assert_float_eq(lg[r * 3 + 2], p[r * 3 + 2]); /* b is linear */
        memcpy(pa + r * 2, p + r * 3, 2 * sizeof *pa);
        memcpy(lga + r * 2, lg + r * 3, 2 * sizeof *lga);
    }
    assert_log_softmax(lga, pa, 20, 2);
    /* named as the outputs */
    ck_assert_msg(run("%s --logits --output b=lb.npy --output a=la.npy", base) == 0, "%s", err_buf);
    kc_array l = load("la.npy");
    assert_same(l.data, la, 40, 1e-5, "a=la.npy");
    kc_array_free(&l);
    ck_assert_int_eq(run("%s --logits --output lstm=l.npy", base), 2);
    ck_assert_msg(strstr(err_buf, "the model has no output 'lstm'"), "%s", err_buf);
    kc_array_free(&c);
    kc_array_free(&h);
    free(st), free(lg), free(p), free(wa), free(ba);
}
END_TEST

/* A shared layer needs a call; a Softmax layer's logits are its input. */
START_TEST(shared_layer_calls_and_softmax_layer) {
    write_file("sh.yaml", "model:\n"
                          "  name: sh\n"
                          "  layers:\n"
                          "    - Input: {shape: [5], name: left}\n"
                          "    - Input: {shape: [5], name: right}\n"
                          "    - Dense: {units: 3, name: enc, inputs: left}\n"
                          "    - {layer: enc, inputs: right}\n"
                          "    - Add: {name: sum, inputs: [enc, 'enc[1]']}\n"
                          "    - Softmax: {name: probs}\n"
                          "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
                          "data:\n"
                          "  train: {x: {left: l.npy, right: r.npy}, y: y.npy}\n"
                          "fit: {epochs: 1, batch_size: 8, seed: 4, verbose: 0}\n");
    write_values("l.npy", kc_shape2(16, 5), 31, 1.0f);
    write_values("r.npy", kc_shape2(16, 5), 32, 1.0f);
    write_labels("l.npy", "y.npy", 3);
    ck_assert_msg(run("train sh.yaml --output run --threads 1") == 0, "%s", err_buf);
    const char *base = "predict run/last.safetensors --input left=l.npy --input right=r.npy";
    ck_assert_int_eq(run("%s --layer enc", base), 2);
    ck_assert_msg(strstr(err_buf, "layer 'enc' is called 2 times (a shared layer): name one call, "
                                  "enc[0] .. enc[1]"),
                  "%s", err_buf);
    ck_assert_int_eq(run("%s --layer 'enc[2]'", base), 2);
    ck_assert_msg(strstr(err_buf, "layer 'enc' is called 2 times, enc[0] .. enc[1]"), "%s",
                  err_buf);
    /* the calls in the order given, then the merge: enc[1] + enc[0] = sum */
    ck_assert_msg(run("%s --layer 'enc[1]' --layer 'enc[0]' --layer sum --layer right", base) == 0,
                  "%s", err_buf);
    int rows, cols;
    float *v = csv_out(&rows, &cols);
    ck_assert_int_eq(rows, 16);
    ck_assert_int_eq(cols, 14);
    kc_array r = load("r.npy");
    for (int i = 0; i < 16; i++) {
        for (int k = 0; k < 3; k++)
            ck_assert_close(v[i * 14 + 6 + k], v[i * 14 + k] + v[i * 14 + 3 + k], 1e-6, 1e-6);
        assert_same(v + i * 14 + 9, (const float *)r.data + i * 5, 5, 0, "right");
    }
    /* --logits of a Softmax layer: its input, the sum */
    ck_assert_int_eq(run("%s --logits --output lg.npy", base), 0);
    kc_array lg = load("lg.npy");
    for (int i = 0; i < 16; i++)
        assert_same((const float *)lg.data + i * 3, v + i * 14 + 6, 3, 0, "logits");
    ck_assert_int_eq(run("%s --output p.npy", base), 0);
    kc_array p = load("p.npy");
    assert_log_softmax(lg.data, p.data, 16, 3);
    /* one call written to a file named as the reference */
    ck_assert_msg(run("%s --layer 'enc[1]' --output 'enc[1]=e1.npy'", base) == 0, "%s", err_buf);
    kc_array e1 = load("e1.npy");
    for (int i = 0; i < 16; i++)
        assert_same((const float *)e1.data + i * 3, v + i * 14, 3, 0, "enc[1]");
    kc_array_free(&e1);
    kc_array_free(&p);
    kc_array_free(&lg);
    kc_array_free(&r);
    free(v);
}
END_TEST

/* ---------------------------------------------------------- raw text --- */

/* Raw text: the Input's values are the token ids, and the pooled embedding
 * of those ids is the mean of their rows of the embedding matrix. */
START_TEST(raw_text_takes_layers) {
    static const char *words[] = {"good", "great", "fine", "bad", "awful", "poor"};
    FILE *t = fopen(path_in("tr.txt"), "w"), *l = fopen(path_in("tr.lab"), "w");
    for (int i = 0; i < 40; i++) {
        int y = i % 2;
        fprintf(t, "the film was %s and %s\n", words[3 * y + i % 3], words[3 * y + (i / 3) % 3]);
        fprintf(l, "%d\n", y);
    }
    fclose(t);
    fclose(l);
    write_file("bag.yaml", "model:\n"
                           "  name: bag\n"
                           "  layers:\n"
                           "    - Input: {shape: [6]}\n"
                           "    - Embedding: {input_dim: 20, output_dim: 4}\n"
                           "    - GlobalAveragePooling1D\n"
                           "    - Dense: {units: 2, activation: softmax}\n"
                           "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
                           "data:\n"
                           "  train: {text: tr.txt, labels: tr.lab}\n"
                           "  text: {num_words: 20, padding: post}\n"
                           "fit: {epochs: 1, batch_size: 8, seed: 1, verbose: 0}\n");
    ck_assert_msg(run("train bag.yaml --output run --threads 1") == 0, "%s", err_buf);
    write_file("new.txt", "the film was great\nbad and poor and awful\n");
    ck_assert_msg(run("predict run/last.safetensors --input new.txt --layer input_layer "
                      "--layer global_average_pooling1d --output "
                      "global_average_pooling1d=g.npy --output input_layer=ids.npy") == 0,
                  "%s", err_buf);
    kc_array ids = load("ids.npy"), g = load("g.npy");
    ck_assert(ids.shape.d[0] == 2 && ids.shape.d[1] == 6 && g.shape.d[1] == 4);
    const float *id = ids.data;
    ck_assert(id[0] > 0 && id[4] == 0 && id[6] > 0); /* words, then post padding */
    kc_shape se;
    float *emb = weight("run/last.safetensors", "embedding/embeddings", &se);
    ck_assert(se.d[0] == 20 && se.d[1] == 4);
    float want[8] = {0};
    for (int r = 0; r < 2; r++)
        for (int s = 0; s < 6; s++)
            for (int k = 0; k < 4; k++)
                want[r * 4 + k] += emb[(int)id[r * 6 + s] * 4 + k] / 6.0f;
    assert_same(g.data, want, 8, 1e-5, "pooled embedding");
    /* the ids as an array give the same features */
    ck_assert_int_eq(run("predict run/last.safetensors --input ids.npy --layer "
                         "global_average_pooling1d --output g2.npy"),
                     0);
    kc_array g2 = load("g2.npy");
    assert_same(g2.data, g.data, 8, 0, "ids.npy");
    kc_array_free(&g2);
    kc_array_free(&g);
    kc_array_free(&ids);
    free(emb);
}
END_TEST

/* -------------------------------------------------------- image files --- */

static void write_gray_png(const char *name, const uint8_t *px) {
    FILE *f = fopen(path_in(name), "wb");
    ck_assert_ptr_nonnull(f);
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    ck_assert(p && info && !setjmp(png_jmpbuf(p)));
    png_init_io(p, f);
    png_set_IHDR(p, info, 8, 8, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int r = 0; r < 8; r++)
        png_write_row(p, px + r * 8);
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    fclose(f);
}

/* Image files with --layer write the features (CSV, one row per file)
 * instead of the top classes, equal to the same pixels given as an array. */
START_TEST(image_files_write_features) {
    int n = 16;
    float *x = calloc((size_t)n * 64, sizeof *x);
    for (int c = 0; c < 4; c++) {
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s/img/c%d'", dir, c);
        ck_assert_int_eq(system(cmd), 0);
    }
    /* sample i: a bright 3x3 blob in quadrant i % 4 on a dim background */
    uint8_t px[64];
    for (int i = 0; i < n; i++) {
        int q = i % 4, oy = (q / 2) * 4 + i / 4 % 2, ox = (q % 2) * 4 + i / 8;
        for (int k = 0; k < 64; k++) {
            int in = k / 8 >= oy && k / 8 < oy + 3 && k % 8 >= ox && k % 8 < ox + 3;
            px[k] = (uint8_t)(in ? 200 + 40 * kc_rng_uniform(8, 1, (uint64_t)(i * 64 + k))
                                 : 40 * kc_rng_uniform(8, 2, (uint64_t)(i * 64 + k)));
            x[i * 64 + k] = px[k];
        }
        char name[64];
        snprintf(name, sizeof name, "img/c%d/%02d.png", q, i);
        write_gray_png(name, px);
    }
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "%s", cnn_yaml);
    char *data = strstr(yaml, "data:\n");
    snprintf(data, sizeof yaml - (size_t)(data - yaml),
             "data:\n"
             "  train: {images: img, color_mode: grayscale, image_size: [8, 8]}\n"
             "  rescale: 1/255\n"
             "fit: {epochs: 1, batch_size: 8, seed: 5, verbose: 0}\n");
    write_file("img.yaml", yaml);
    ck_assert_msg(run("train img.yaml --output run --threads 1") == 0, "%s", err_buf);
    /* two files, in the order given: sample 3 (class 3), then sample 0 */
    int a = 0, b = 3;
    char fa[64], fb[64];
    snprintf(fa, sizeof fa, "img/c0/%02d.png", a);
    snprintf(fb, sizeof fb, "img/c3/%02d.png", b);
    ck_assert_msg(run("predict run/last.safetensors --input %s --input %s", fb, fa) == 0, "%s",
                  err_buf);
    ck_assert_msg(strstr(out_buf, ".png: c"), "%s", out_buf); /* without --layer: top classes */
    ck_assert_msg(run("predict run/last.safetensors --input %s --input %s --layer flat", fb, fa) ==
                      0,
                  "%s", err_buf);
    ck_assert_msg(!strstr(out_buf, ".png"), "%s", out_buf);
    int rows, cols;
    float *v = csv_out(&rows, &cols);
    ck_assert_int_eq(rows, 2);
    ck_assert_int_eq(cols, 72);
    float two[128];
    memcpy(two, x + b * 64, 64 * sizeof *two);
    memcpy(two + 64, x + a * 64, 64 * sizeof *two);
    write_npy("two.npy", two, kc_shape4(2, 8, 8, 1));
    ck_assert_msg(run("predict run/last.safetensors --input two.npy --layer flat") == 0, "%s",
                  err_buf);
    float *w = csv_out(&rows, &cols);
    ck_assert_int_eq(rows, 2);
    assert_same(v, w, 144, 1e-6, "image files vs array");
    /* --logits of image files: values, not classes */
    ck_assert_msg(run("predict run/last.safetensors --input %s --logits", fa) == 0, "%s", err_buf);
    ck_assert_msg(!strstr(out_buf, ".png"), "%s", out_buf);
    free(w);
    w = csv_out(&rows, &cols);
    ck_assert_int_eq(rows, 1);
    ck_assert_int_eq(cols, 4);
    free(v), free(w), free(x);
}
END_TEST

int main(void) {
    Suite *s = suite_create("predict_layers");
    TCase *t = tcase_create("predict_layers");
    tcase_set_timeout(t, 300);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, dense_layer_and_logits_match_the_weights);
    tcase_add_test(t, wrong_names_are_usage_errors);
    tcase_add_test(t, conv_and_flatten_match_the_weights);
    tcase_add_test(t, lstm_states_and_two_outputs);
    tcase_add_test(t, shared_layer_calls_and_softmax_layer);
    tcase_add_test(t, raw_text_takes_layers);
    tcase_add_test(t, image_files_write_features);
    suite_add_tcase(s, t);
    int rc = kc_test_run(s);
    kc_test_close_devices();
    return rc;
}
