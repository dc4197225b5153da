/* Model files: YAML parsing, argument checking, model building, and every
 * class of config error with its file:line:column. */
#include "models/config.h"
#include "testutil.h"

static kc_config *parse_ok(const char *text) {
    kc_config *c = NULL;
    kc_error e = {0};
    int rc = kc_config_parse_text("m.yaml", "/tmp", text, strlen(text), &c, &e);
    ck_assert_msg(rc == 0, "unexpected error: %s", e.msg);
    return c;
}

/* Parses text expecting a config error whose message contains each of the
 * given fragments (NULL-terminated). */
static void parse_fails(const char *text, const char *const *frags) {
    kc_config *c = NULL;
    kc_error e = {0};
    int rc = kc_config_parse_text("m.yaml", "/tmp", text, strlen(text), &c, &e);
    ck_assert_msg(rc == KC_ECONFIG, "expected a config error for:\n%s\ngot rc %d", text, rc);
    ck_assert_ptr_null(c);
    for (int i = 0; frags[i]; i++)
        ck_assert_msg(strstr(e.msg, frags[i]), "message '%s' lacks '%s'", e.msg, frags[i]);
}
#define FAILS(text, ...) parse_fails(text, (const char *const[]){__VA_ARGS__, NULL})

static const char *seed_cnn = "model:\n"
                              "  layers:\n"
                              "    - Input: {shape: [28, 28, 1]}\n"
                              "    - Conv2D: {filters: 32, kernel_size: [3, 3], activation: relu}\n"
                              "    - MaxPooling2D: {pool_size: [2, 2]}\n"
                              "    - Conv2D: {filters: 64, kernel_size: 3, activation: relu}\n"
                              "    - MaxPooling2D\n"
                              "    - Flatten\n"
                              "    - Dense: {units: 64, activation: relu}\n"
                              "    - Dense: {units: 10, activation: softmax}\n";

START_TEST(seed_model_shapes_and_names) {
    kc_config *c = parse_ok(seed_cnn);
    kc_model *m = c->model;
    ck_assert_int_eq(m->nlayers, 7);
    const char *names[] = {"conv2d",  "max_pooling2d", "conv2d_1", "max_pooling2d_1",
                           "flatten", "dense",         "dense_1"};
    const int64_t params[] = {320, 0, 18496, 0, 0, 102464, 650};
    for (int i = 0; i < 7; i++) {
        ck_assert_str_eq(m->layers[i]->name, names[i]);
        ck_assert_int_eq(kc_layer_param_count(m->layers[i], 0), params[i]);
    }
    char buf[64];
    ck_assert_str_eq(kc_shape_str(&m->layers[3]->out_shape, 1, buf, sizeof buf),
                     "(None, 5, 5, 64)");
    ck_assert_str_eq(kc_shape_str(&m->layers[4]->out_shape, 1, buf, sizeof buf), "(None, 1600)");
    ck_assert_int_eq(kc_model_param_count(m, 0), 121930);
    ck_assert_str_eq(m->name, "sequential");
    ck_assert_str_eq(c->run_name, "m");
    ck_assert_int_eq(c->fit.batch_size, 32);
    ck_assert_int_eq(c->fit.epochs, 1);
    kc_config_free(c);
}
END_TEST

START_TEST(layer_entry_forms) {
    /* class_name with inline args, class_name + config, input_shape on the first layer, names */
    kc_config *c = parse_ok("model:\n"
                            "  name: tiny\n"
                            "  layers:\n"
                            "    - {class_name: Dense, units: 4, input_shape: [3], name: hidden}\n"
                            "    - class_name: Dense\n"
                            "      config: {units: 2}\n"
                            "    - Activation: {activation: tanh}\n");
    ck_assert_int_eq(c->model->nlayers, 3);
    ck_assert_str_eq(c->model->layers[0]->name, "hidden");
    ck_assert_str_eq(c->model->layers[1]->name, "dense");
    ck_assert_str_eq(c->model->layers[2]->name, "activation");
    ck_assert_int_eq(kc_model_param_count(c->model, 0), 3 * 4 + 4 + 4 * 2 + 2);
    ck_assert_str_eq(c->run_name, "tiny");
    kc_config_free(c);
}
END_TEST

START_TEST(sections_parse) {
    kc_config *c =
        parse_ok("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\n"
                 "compile:\n  optimizer: {class_name: SGD, learning_rate: 0.1}\n"
                 "  loss: mse\n  metrics: [mae]\n"
                 "data:\n  train: {x: a.npy, y: b.npy}\n  test: {csv: t.csv, label_column: label}\n"
                 "  rescale: 1/255\n"
                 "fit: {epochs: 3, batch_size: 8, shuffle: false, seed: 7, validation_split: 0.25, "
                 "verbose: 2}\n");
    ck_assert_str_eq(c->data.train.x_path, "/tmp/a.npy");
    ck_assert_str_eq(c->data.test.csv_path, "/tmp/t.csv");
    ck_assert_str_eq(c->data.test.label_column, "label");
    ck_assert_close(c->data.rescale, 1.0 / 255, 1e-15, 0);
    ck_assert_int_eq(c->fit.epochs, 3);
    ck_assert_int_eq(c->fit.batch_size, 8);
    ck_assert_int_eq(c->fit.shuffle, 0);
    ck_assert_int_eq(c->fit.seed, 7);
    ck_assert_int_eq(c->fit.verbose, 2);
    ck_assert_close(c->fit.validation_split, 0.25, 0, 0);
    kc_config_free(c);
}
END_TEST

START_TEST(unknown_layer_suggests) {
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dens: {units: 2}\n",
          "m.yaml:4:7:", "unknown layer 'Dens'", "did you mean Dense?");
    FAILS("model:\n  layers:\n    - Input: {shape: [8, 8, 1]}\n    - Conv2d: {filters: 2, "
          "kernel_size: 3}\n",
          "m.yaml:4:7:", "did you mean Conv2D?");
}
END_TEST

START_TEST(unknown_argument_suggests) {
    FAILS("model:\n  layers:\n    - Input: {shape: [8, 8, 1]}\n    - Conv2D: {filter: 2, "
          "kernel_size: 3}\n",
          "m.yaml:4:16:", "'filter'", "did you mean 'filters'?");
    FAILS(
        "model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2, activaton: relu}\n",
        "m.yaml:4:25:", "did you mean 'activation'?");
}
END_TEST

START_TEST(wrong_types_and_ranges) {
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: many}\n",
          "m.yaml:4:22:", "units", "'many'");
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 0}\n",
          "m.yaml:4:22:", "units", ">= 1");
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dropout: {rate: 1.5}\n",
          "m.yaml:4:23:", "rate");
    FAILS(
        "model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2, activation: rleu}\n",
        "m.yaml:4:37:", "did you mean 'relu'?");
    FAILS(
        "model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2, use_bias: maybe}\n",
        "m.yaml:4:35:", "use_bias");
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\n"
          "fit: {epochs: 0}\n",
          "m.yaml:5:15:", "epochs", ">= 1");
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\n"
          "fit: {batch_size: 3000000000}\n",
          "m.yaml:5:19:", "batch_size", "<= 2147483647");
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\n"
          "fit: {validation_split: 1.0}\n",
          "m.yaml:5:25:", "validation_split");
}
END_TEST

START_TEST(shape_errors_name_both_layers) {
    /* Conv2D after Flatten: a rank-1 input */
    FAILS("model:\n  layers:\n    - Input: {shape: [8, 8, 1]}\n    - Flatten\n"
          "    - Conv2D: {filters: 2, kernel_size: 3}\n",
          "m.yaml:5:7:", "conv2d", "(None, 64)", "flatten");
    /* kernel larger than the image */
    FAILS("model:\n  layers:\n    - Input: {shape: [2, 2, 1]}\n    - Conv2D: {filters: 2, "
          "kernel_size: 3}\n",
          "m.yaml:4:7:", "conv2d");
    FAILS("model:\n  layers:\n    - Input: {shape: [6]}\n    - Reshape: {target_shape: [4, 2]}\n",
          "m.yaml:4:", "(4, 2)");
}
END_TEST

START_TEST(structure_errors) {
    FAILS("modle:\n  layers: []\n", "m.yaml:1:1:", "model");
    FAILS("model:\n  layers:\n    - Dense: {units: 2}\n", "m.yaml:", "input shape");
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\ncompile:\n  "
          "optimiser: adam\n",
          "m.yaml:6:3:", "did you mean 'optimizer'?");
    FAILS(
        "model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\nfit:\n  epoch: 3\n",
        "m.yaml:6:3:", "did you mean 'epochs'?");
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\ndata:\n  "
          "dataset: mnsit\n",
          "m.yaml:6:12:", "did you mean 'mnist'");
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2, name: a}\n"
          "    - Dense: {units: 2, name: a}\n",
          "m.yaml:5:", "already exists");
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\n      units: 3\n",
          "m.yaml:");
    FAILS("model:\n  layers: [\n", "m.yaml:", "YAML syntax error");
    FAILS("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\nmodel: {}\n",
          "m.yaml:5:1:", "duplicate key 'model'");
    FAILS("", "m.yaml:1:1:", "empty");
}
END_TEST

START_TEST(fractions_and_closest) {
    kc_config *c =
        parse_ok("model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 2}\n"
                 "data: {dataset: mnist, rescale: 2/8, offset: -0.5}\n");
    ck_assert_close(c->data.rescale, 0.25, 0, 0);
    ck_assert_close(c->data.offset, -0.5, 0, 0);
    kc_config_free(c);
    const char *cands[] = {"epochs", "batch_size", "seed", NULL};
    ck_assert_str_eq(kc_closest("batchsize", cands, 3), "batch_size");
    ck_assert_ptr_null(kc_closest("zzzzzzzz", cands, 3));
}
END_TEST

int main(void) {
    Suite *s = suite_create("config");
    TCase *t = tcase_create("config");
    tcase_add_test(t, seed_model_shapes_and_names);
    tcase_add_test(t, layer_entry_forms);
    tcase_add_test(t, sections_parse);
    tcase_add_test(t, unknown_layer_suggests);
    tcase_add_test(t, unknown_argument_suggests);
    tcase_add_test(t, wrong_types_and_ranges);
    tcase_add_test(t, shape_errors_name_both_layers);
    tcase_add_test(t, structure_errors);
    tcase_add_test(t, fractions_and_closest);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}
