/* Keras Applications from the command line: `kerasc applications NAME`
 * writes configs/applications/NAME.yaml, and `kerasc summary` of what it
 * writes is Keras's model.summary() of keras.applications.X(weights=None,
 * ...) byte for byte, for the defaults and for variants (no top, pooling,
 * other sizes, classes, alpha). The cases are the lines of
 * tests/fixtures/keras/applications/summaries.txt; make_applications.py
 * there wrote Keras's text. Also: the architectures agree with the
 * to_json() fixtures kerasc converts, bad options are usage errors naming
 * the value, and a small one trains end to end. $KERASC names the binary. */
#include <ctype.h>
#include <zlib.h>

#include "clitest.h"
#include "models/applications/applications.h"
#include "models/config.h"
#include "models/keras_import.h"
#include "models/layer.h"
#include "models/model.h"

/* ---------------------------------------------------------------- files */

static const char *app_fixture(const char *name) {
    static char bufs[4][4200];
    static int next;
    char *buf = bufs[next++ % 4];
    const char *root = getenv("KERASC_SRC");
    snprintf(buf, 4200, "%s/tests/fixtures/keras/applications/%s", root && *root ? root : ".",
             name);
    return buf;
}

static const char *source_file(const char *rel) {
    static char buf[4200];
    const char *root = getenv("KERASC_SRC");
    snprintf(buf, sizeof buf, "%s/%s", root && *root ? root : ".", rel);
    return buf;
}

/* A whole file, gzipped or not (zlib reads both); malloc'd, its length in
 * *len when len is not NULL. */
static char *read_file_len(const char *path, size_t *len) {
    gzFile f = gzopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    kc_strbuf b = {0};
    char chunk[1 << 16];
    int n;
    while ((n = gzread(f, chunk, sizeof chunk)) > 0)
        kc_strbuf_append(&b, chunk, (size_t)n);
    gzclose(f);
    ck_assert_msg(n == 0 && !b.failed, "cannot read %s", path);
    if (len) *len = b.len;
    char *s = kc_strbuf_take(&b);
    return s ? s : strdup("");
}

static char *read_text(const char *path) {
    return read_file_len(path, NULL);
}

/* Equal texts, or the first line where they differ. */
static void assert_same_text(const char *got, const char *want, const char *what) {
    int line = 1;
    const char *g = got, *w = want;
    while (*g && *g == *w) {
        if (*g == '\n') {
            line++;
            got = g + 1;
            want = w + 1;
        }
        g++;
        w++;
    }
    ck_assert_msg(*g == *w, "%s: line %d differs:\n  kerasc: %.*s\n  Keras:  %.*s", what, line,
                  (int)strcspn(got, "\n"), got, (int)strcspn(want, "\n"), want);
}

/* ---------------------------------------------------------------- cases */

typedef struct summary_case {
    char stem[64], args[256];
} summary_case;

static summary_case cases[32];
static int ncases;

/* summaries.txt: "STEM: ARGS" lines; # comments. */
static void load_cases(void) {
    FILE *f = fopen(app_fixture("summaries.txt"), "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f) && ncases < 32) {
        line[strcspn(line, "\n")] = 0;
        char *colon = strchr(line, ':');
        if (line[0] == '#' || !colon) continue;
        *colon = 0;
        const char *args = colon + 1 + strspn(colon + 1, " ");
        snprintf(cases[ncases].stem, sizeof cases[0].stem, "%s", line);
        snprintf(cases[ncases].args, sizeof cases[0].args, "%s", args);
        ncases++;
    }
    fclose(f);
}

static void setup(void) {
    kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    unsetenv("COLUMNS"); /* Keras's fixtures are as on a pipe: 76 columns */
    dir = kc_test_tmpdir();
}

/* Texts a test compares, freed here even when an assertion stopped it. */
static char *held[2];

static char *hold(int slot, char *text) {
    free(held[slot]);
    return held[slot] = text;
}

static void teardown(void) {
    for (int i = 0; i < 2; i++)
        hold(i, NULL);
    kc_test_rmdir(dir);
    free(dir);
}

/* ------------------------------------------------------------ summaries */

/* The model kerasc writes prints Keras's summary: every row's name, class,
 * output shape, parameters and connections, and the totals. */
START_TEST(summary_matches_keras) {
    const summary_case *c = &cases[_i];
    ck_assert_msg(strncmp(c->args, "efficientnetb0", 14) || kc_layer_class_find("Normalization"),
                  "%s: EfficientNetB0 starts with a Normalization layer, which this kerasc "
                  "does not have",
                  c->stem);
    ck_assert_msg(run("applications %s -o case.yaml", c->args) == 0, "%s: %s", c->stem, err_buf);
    ck_assert_msg(run("summary case.yaml") == 0, "%s: %s", c->stem, err_buf);
    char name[128];
    snprintf(name, sizeof name, "%s.summary.txt.gz", c->stem);
    assert_same_text(out_buf, hold(0, read_text(app_fixture(name))), c->stem);
}
END_TEST

/* ------------------------------------------------------- shipped files */

/* configs/applications/NAME.yaml is what the verb writes for Keras's
 * defaults, to standard output and to a file; Keras's spelling of the name
 * in any case is the same architecture. */
START_TEST(defaults_are_the_shipped_files) {
    const kc_app_arch *a = kc_app_get((size_t)_i);
    char rel[128];
    snprintf(rel, sizeof rel, "configs/applications/%s.yaml", a->name);
    char *shipped = hold(0, read_text(source_file(rel)));
    ck_assert_int_eq(run("applications %s", a->name), 0);
    assert_same_text(out_buf, shipped, rel);
    char upper[32];
    size_t k = 0;
    for (; a->keras_name[k] && k + 1 < sizeof upper; k++)
        upper[k] = (char)(k % 2 ? a->keras_name[k] : toupper((unsigned char)a->keras_name[k]));
    upper[k] = 0;
    ck_assert_int_eq(run("applications %s -o written.yaml", upper), 0);
    ck_assert_str_eq(out_buf, "");
    assert_same_text(hold(1, read_text(path_in("written.yaml"))), shipped, upper);
}
END_TEST

/* The Keras JSON fixtures (96x96x3) convert to the same layers - names,
 * classes, output shapes and parameter counts, in order - as the verb
 * builds for --input-shape 96,96,3. */
START_TEST(same_layers_as_keras_json) {
    static const char *names[] = {"vgg16",       "resnet50", "resnet50v2",
                                  "mobilenetv2", "xception", "densenet121"};
    const kc_app_arch *a = kc_app_find(names[_i]);
    ck_assert_ptr_nonnull(a);
    kc_app_opts o;
    kc_app_opts_init(&o);
    o.has_input_shape = 1;
    o.input_shape[0] = o.input_shape[1] = 96;
    o.input_shape[2] = 3;
    kc_error e = {0};
    char *ours, *theirs, json[64];
    ck_assert_msg(kc_app_model_file(a, &o, &ours, &e) == KC_OK, "%s", e.msg);
    snprintf(json, sizeof json, "%s.json.gz", names[_i]);
    char *jtext = read_text(app_fixture(json));
    ck_assert_msg(kc_keras_import_text(json, jtext, strlen(jtext), &theirs, &e) == KC_OK, "%s",
                  e.msg);
    kc_config *mine = NULL, *keras = NULL;
    ck_assert_msg(kc_config_parse_text("ours", ".", ours, strlen(ours), &mine, &e) == KC_OK, "%s",
                  e.msg);
    ck_assert_msg(kc_config_parse_text("keras", ".", theirs, strlen(theirs), &keras, &e) == KC_OK,
                  "%s", e.msg);
    const kc_model *m = mine->model, *k = keras->model;
    ck_assert_str_eq(m->name, k->name);
    ck_assert_int_eq(m->nlayers, k->nlayers);
    for (int i = 0; i < m->nlayers; i++) {
        const kc_layer *p = m->layers[i], *q = k->layers[i];
        ck_assert_str_eq(p->name, q->name);
        ck_assert_str_eq(p->cls->class_name, q->cls->class_name);
        ck_assert_msg(kc_shape_equal(&p->out_shape, &q->out_shape), "%s: shape", p->name);
        ck_assert_int_eq(kc_layer_param_count(p, 0), kc_layer_param_count(q, 0));
        ck_assert_int_eq(kc_layer_param_count(p, 1), kc_layer_param_count(q, 1));
    }
    kc_config_free(mine);
    kc_config_free(keras);
    free(jtext);
    free(ours);
    free(theirs);
}
END_TEST

/* ------------------------------------------------------------- options */

/* Without a name: the list, Keras's names and sizes with it. */
START_TEST(lists_the_architectures) {
    ck_assert_int_eq(run("applications"), 0);
    for (size_t i = 0; i < kc_app_count(); i++) {
        ck_assert_ptr_nonnull(strstr(out_buf, kc_app_get(i)->name));
        ck_assert_ptr_nonnull(strstr(out_buf, kc_app_get(i)->keras_name));
    }
    ck_assert_ptr_nonnull(strstr(out_buf, "299x299x3"));
    ck_assert_int_eq(run("applications --help"), 0);
    ck_assert_ptr_nonnull(strstr(out_buf, "--input-shape"));
    ck_assert_int_eq(run("--help"), 0);
    ck_assert_ptr_nonnull(strstr(out_buf, "applications"));
}
END_TEST

typedef struct bad_case {
    const char *args, *message;
} bad_case;

static const bad_case bad[] = {
    {"resnet51", "unknown architecture 'resnet51'"},
    {"resnet50 --input-shape 31,64,3", "input shape (31, 64, 3): ResNet50's input size must be at "
                                       "least 32x32"},
    {"xception --input-shape 70,299,3", "Xception's input size must be at least 71x71"},
    {"resnet50 --input-shape 96,96", "got '96,96'"},
    {"resnet50 --input-shape None,None,3 --no-top", "'None,None,3'"},
    {"resnet50 --input-shape 96,96,0", "(96, 96, 0)"},
    {"vgg16 --input-shape 99999,32,3", "(99999, 32, 3)"},
    {"densenet121 --no-top", "give --input-shape"},
    {"resnet50 --classes 0", "got '0'"},
    {"resnet50 --classes ten", "got 'ten'"},
    {"resnet50 --pooling mean", "got 'mean'"},
    {"resnet50 --classifier-activation softmaxx", "unknown classifier activation 'softmaxx'"},
    {"vgg16 --alpha 0.5", "VGG16 takes no alpha"},
    {"mobilenetv2 --alpha -1", "alpha -1"},
    {"mobilenetv2 --alpha wide", "got 'wide'"},
    {"resnet50 --depth 3", "'--depth'"},
    {"resnet50 vgg16", "one architecture name"},
};
#define NBAD (int)(sizeof bad / sizeof bad[0])

START_TEST(bad_options_are_usage_errors) {
    const bad_case *c = &bad[_i];
    ck_assert_msg(run("applications %s -o bad.yaml", c->args) == 2, "%s: %s", c->args, err_buf);
    ck_assert_msg(strstr(err_buf, c->message), "%s: '%s' not in: %s", c->args, c->message, err_buf);
    ck_assert_msg(!file_exists("bad.yaml"), "%s wrote a file", c->args);
}
END_TEST

/* What Keras ignores is ignored, with a warning: pooling with the
 * classifier, classes without it; unusual channel counts are Keras's
 * warning. */
START_TEST(ignored_options_warn) {
    ck_assert_int_eq(run("applications resnet50"), 0);
    char *plain = strdup(out_buf);
    ck_assert_int_eq(run("applications resnet50 --pooling avg"), 0);
    ck_assert_ptr_nonnull(strstr(err_buf, "--pooling is ignored"));
    ck_assert_ptr_nonnull(strstr(out_buf, "pooling=\"avg\""));
    ck_assert_ptr_nonnull(strstr(out_buf, "    - GlobalAveragePooling2D: {name: avg_pool}\n"
                                          "    - Dense: {name: predictions, units: 1000"));
    ck_assert_int_eq(run("applications resnet50 --no-top --input-shape 64,64,2 --classes 3"), 0);
    ck_assert_ptr_nonnull(strstr(err_buf, "--classes and --classifier-activation are ignored"));
    ck_assert_ptr_nonnull(strstr(err_buf, "passed an input_shape with 2 input channels"));
    ck_assert_ptr_null(strstr(out_buf, "predictions"));
    ck_assert_ptr_nonnull(strstr(out_buf, "outputs: [conv5_block3_out]"));
    ck_assert_int_eq(run("applications resnet50 --include-top"), 0);
    ck_assert_str_eq(out_buf, plain);
    ck_assert_str_eq(err_buf, "");
    free(plain);
}
END_TEST

/* --classifier-activation none: logits, and the commented loss says so. */
START_TEST(logits_without_activation) {
    ck_assert_int_eq(run("applications vgg16 --classes 7 --classifier-activation none"), 0);
    ck_assert_ptr_nonnull(strstr(out_buf, "    - Dense: {name: predictions, units: 7}\n"));
    ck_assert_ptr_nonnull(strstr(out_buf, "classifier_activation=None)"));
    ck_assert_ptr_nonnull(strstr(out_buf, "from_logits: true"));
    ck_assert_ptr_nonnull(strstr(out_buf, "kerasc applications vgg16 --classes 7 "
                                          "--classifier-activation none`"));
}
END_TEST

/* ------------------------------------------------------------ training */

/* MobileNetV2 (alpha 0.35) at 32x32 on 16 random images of 4 classes:
 * trains two steps from the written file with the data lines filled in,
 * and the checkpoint holds its layers' weights under Keras's names. */
START_TEST(small_mobilenet_trains) {
    int n = 16;
    float *x = malloc((size_t)n * 32 * 32 * 3 * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    for (int i = 0; i < n * 32 * 32 * 3; i++)
        x[i] = 255.0f * kc_rng_uniform(7, 1, (uint64_t)i);
    for (int i = 0; i < n; i++)
        y[i] = (float)(i % 4);
    write_npy("x.npy", x, kc_shape4(n, 32, 32, 3));
    write_npy("y.npy", y, kc_shape1(n));
    free(x);
    free(y);
    ck_assert_msg(run("applications mobilenetv2 --alpha 0.35 --input-shape 32,32,3 --classes 4 "
                      "-o m.yaml") == 0,
                  "%s", err_buf);
    char *text = read_text(path_in("m.yaml"));
    ck_assert_ptr_nonnull(strstr(text, "name: mobilenetv2_0.35_32"));
    kc_strbuf cfg = {0};
    kc_strbuf_puts(&cfg, text);
    kc_strbuf_puts(&cfg, "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, "
                         "metrics: [accuracy]}\n"
                         "data: {train: {x: x.npy, y: y.npy}, rescale: 1/127.5, offset: -1}\n"
                         "fit: {epochs: 1, batch_size: 8}\n");
    write_file("train.yaml", kc_strbuf_str(&cfg));
    kc_strbuf_free(&cfg);
    free(text);
    ck_assert_msg(run("train train.yaml --output run --verbose 2 --threads 2") == 0, "%s\n%s",
                  out_buf, err_buf);
    ck_assert_ptr_nonnull(strstr(out_buf, "2/2"));
    char *history = read_text(path_in("run/history.csv"));
    double loss = NAN;
    const char *row = strchr(history, '\n');
    ck_assert_ptr_nonnull(row);
    ck_assert_int_eq(sscanf(row + 1, "0,%*[^,],%lf", &loss), 1);
    ck_assert_msg(isfinite(loss) && loss > 0, "loss %g", loss);
    free(history);
    size_t len;
    char *ckpt = read_file_len(path_in("run/last.safetensors"), &len);
    ck_assert_ptr_nonnull(memmem(ckpt, len, "\"block_16_project/kernel\"", 25));
    ck_assert_ptr_nonnull(memmem(ckpt, len, "\"block_1_depthwise_BN/moving_variance\"", 38));
    free(ckpt);
}
END_TEST

int main(void) {
    load_cases();
    if (ncases < 14) {
        fprintf(stderr, "%s: %d cases, expected at least 14\n", app_fixture("summaries.txt"),
                ncases);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("applications");
    TCase *t = tcase_create("applications");
    tcase_set_timeout(t, 300);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_loop_test(t, summary_matches_keras, 0, ncases);
    tcase_add_loop_test(t, defaults_are_the_shipped_files, 0, (int)kc_app_count());
    tcase_add_loop_test(t, same_layers_as_keras_json, 0, 6);
    tcase_add_test(t, lists_the_architectures);
    tcase_add_loop_test(t, bad_options_are_usage_errors, 0, NBAD);
    tcase_add_test(t, ignored_options_warn);
    tcase_add_test(t, logits_without_activation);
    tcase_add_test(t, small_mobilenet_trains);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}
