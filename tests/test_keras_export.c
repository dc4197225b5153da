/* kerasc models written as Keras 3 JSON (models/keras_export.h).
 *
 * Round trips: every model file in configs/ and every Keras-written fixture
 * in tests/fixtures/keras/ (the sequence models and the Applications too)
 * is exported, read back with the Keras importer and parsed again; the
 * layers, their names, classes, calls, shapes and parameter counts must be
 * the original's, and so must `kerasc summary`. For Keras's own JSON the
 * converted YAML of import(export(import(json))) must equal import(json)
 * byte for byte. Then the JSON itself: module and class names, the
 * serialized objects, a merge node's keras_history, a wrapper's layers, the
 * compile_config, and the errors for what Keras cannot express.
 * tests/fixtures/keras/check_export.py checks the same files against Keras
 * itself; this suite needs no Python. */
#include <glob.h>
#include <regex.h>
#include <sys/wait.h>
#include <zlib.h>

#include "core/json.h"
#include "models/config.h"
#include "models/keras_export.h"
#include "models/keras_import.h"
#include "models/model_internal.h"
#include "testutil.h"

/* ---------------------------------------------------------------- files */

static const char *src_path(const char *rel) {
    static char bufs[8][4200];
    static int next;
    char *buf = bufs[next++ % 8];
    const char *root = getenv("KERASC_SRC");
    if (root && *root) {
        snprintf(buf, 4200, "%s/%s", root, rel);
    } else {
        const char *src = __FILE__;
        const char *slash = strrchr(src, '/');
        snprintf(buf, 4200, "%.*s/../%s", slash ? (int)(slash - src) : 1, slash ? src : ".", rel);
    }
    return buf;
}

static char *fixture(const char *name) {
    static char buf[4200];
    snprintf(buf, sizeof buf, "tests/fixtures/keras/%s", name);
    return (char *)src_path(buf);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    kc_strbuf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        kc_strbuf_append(&b, chunk, got);
    fclose(f);
    if (len) *len = b.len;
    return kc_strbuf_take(&b);
}

static char *gunzip(const char *path) {
    gzFile gz = gzopen(path, "rb");
    ck_assert_msg(gz != NULL, "cannot open %s", path);
    kc_strbuf b = {0};
    char buf[1 << 16];
    int got;
    while ((got = gzread(gz, buf, sizeof buf)) > 0)
        kc_strbuf_append(&b, buf, (size_t)got);
    ck_assert_int_eq(got, 0);
    gzclose(gz);
    return kc_strbuf_take(&b);
}

static void spill(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

#define ck_assert_has(hay, needle)                                                                 \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' not found in: %s", (needle), (hay))

/* ---------------------------------------------------------------- helpers */

/* "line N: 'a' != 'b'" for the first line where two texts differ (failure
 * messages stay short however large the model). */
static const char *first_diff(const char *a, const char *b) {
    static char msg[1200];
    const char *la = a, *lb = b;
    int line = 1;
    for (; *a && *a == *b; a++, b++)
        if (*a == '\n') {
            line++;
            la = a + 1;
            lb = b + 1;
        }
    snprintf(msg, sizeof msg, "line %d: '%.*s' != '%.*s'", line, (int)strcspn(la, "\n"), la,
             (int)strcspn(lb, "\n"), lb);
    return msg;
}

static kc_config *parse_ok(const char *name, const char *yaml) {
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_config_parse_text(name, ".", yaml, strlen(yaml), &cfg, &e) == KC_OK,
                  "%s: %s\n%.2000s", name, e.msg, yaml);
    return cfg;
}

static char *export_ok(const kc_config *cfg, const kc_model *m) {
    kc_strbuf b = {0};
    kc_error e = {0};
    ck_assert_msg(kc_keras_export_json(cfg, m, &b, &e) == KC_OK, "%s", e.msg);
    return kc_strbuf_take(&b);
}

static kc_error export_err(const kc_config *cfg) {
    kc_strbuf b = {0};
    kc_error e = {0};
    ck_assert_int_eq(kc_keras_export_json(cfg, cfg->model, &b, &e), KC_ECONFIG);
    ck_assert_uint_eq(b.len, 0);
    kc_strbuf_free(&b);
    return e;
}

/* The converted `model:` section of Keras JSON text. */
static char *import_ok(const char *name, const char *json) {
    char *yaml = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_keras_import_text(name, json, strlen(json), &yaml, &e) == KC_OK, "%s: %s",
                  name, e.msg);
    return yaml;
}

/* The model as Keras's summary lists it: every operation in Keras's order
 * with its name, class, trainable flag, output shapes, parameters and the
 * tensors each call takes; then the inputs, outputs and totals. */
static char *fingerprint(const kc_model *m) {
    kc_strbuf b = {0};
    int ops[4096];
    ck_assert_int_le(m->ninputs + m->nlayers, 4096);
    int n = kc_model_keras_order(m, ops);
    char s[256], lb[200];
    for (int i = 0; i < n; i++) {
        if (ops[i] < 0) {
            const kc_model_input *in = &m->inputs[-1 - ops[i]];
            kc_strbuf_printf(&b, "Input %s %s\n", in->name,
                             kc_shape_str(&in->shape, 1, s, sizeof s));
            continue;
        }
        const kc_layer *l = m->layers[ops[i]];
        kc_strbuf_printf(&b, "%s (%s) trainable=%d params=%lld/%lld", l->name, l->cls->class_name,
                         l->trainable, (long long)kc_layer_param_count(l, 0),
                         (long long)kc_layer_param_count(l, 1));
        for (int t = 0; t < l->noutputs; t++)
            kc_strbuf_printf(&b, " %s", kc_shape_str(&l->out_shapes[t], 1, s, sizeof s));
        for (int k = 0; k < m->nnodes; k++) {
            if (m->nodes[k].layer != l) continue;
            kc_strbuf_puts(&b, " <-");
            for (int j = 0; j < m->nodes[k].nin; j++)
                kc_strbuf_printf(&b, " %s",
                                 kc_model_tensor_label(m, m->nodes[k].in[j], m->nodes[k].in_t[j],
                                                       lb, sizeof lb));
        }
        kc_strbuf_putc(&b, '\n');
    }
    for (int i = 0; i < m->ninputs; i++)
        kc_strbuf_printf(&b, "input %s\n", m->inputs[i].name);
    for (int i = 0; i < m->noutputs; i++)
        kc_strbuf_printf(&b, "output %s\n", m->outputs[i].name);
    kc_strbuf_printf(&b, "%s %s %lld %lld\n", m->functional ? "Functional" : "Sequential", m->name,
                     (long long)kc_model_param_count(m, 0), (long long)kc_model_param_count(m, 1));
    return kc_strbuf_take(&b);
}

/* Exports cfg's model, reads it back as Keras JSON and checks that the
 * model is the same; returns the converted YAML (the caller frees it). */
static char *round_trip(const kc_config *cfg, const char *what) {
    char *json = export_ok(cfg, cfg->model);
    char *yaml = import_ok("exported.json", json);
    kc_config *back = parse_ok("exported.json (converted)", yaml);
    char *want = fingerprint(cfg->model), *got = fingerprint(back->model);
    ck_assert_msg(!strcmp(want, got), "%s: the model read back differs at %s", what,
                  first_diff(want, got));
    free(want);
    free(got);
    kc_config_free(back);
    free(json);
    return yaml;
}

/* import(export(model of yaml)), which must be yaml itself for a section
 * the importer wrote. */
static char *yaml_round(const char *yaml, const char *what) {
    kc_config *cfg = parse_ok(what, yaml);
    char *again = round_trip(cfg, what);
    kc_config_free(cfg);
    return again;
}

/* ---------------------------------------------------------------- round trips */

static glob_t configs;

/* Every model in configs/: the same model back, and a second round trip
 * gives the first one's YAML (the arguments survive). */
START_TEST(test_configs_round_trip) {
    ck_assert_uint_gt(configs.gl_pathc, 0);
    for (size_t i = 0; i < configs.gl_pathc; i++) {
        const char *path = configs.gl_pathv[i];
        kc_config *cfg = NULL;
        kc_error e = {0};
        ck_assert_msg(kc_config_load(path, &cfg, &e) == KC_OK, "%s: %s", path, e.msg);
        char *once = round_trip(cfg, path);
        char *twice = yaml_round(once, path);
        ck_assert_msg(!strcmp(once, twice), "%s: a second round trip differs at %s", path,
                      first_diff(once, twice));
        free(once);
        free(twice);
        kc_config_free(cfg);
    }
}
END_TEST

/* `kerasc summary` of the exported JSON is the summary of the model file. */
START_TEST(test_configs_summary) {
    const char *kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    char *dir = kc_test_tmpdir();
    for (size_t i = 0; i < configs.gl_pathc; i++) {
        const char *path = configs.gl_pathv[i];
        kc_config *cfg = NULL;
        kc_error e = {0};
        ck_assert_msg(kc_config_load(path, &cfg, &e) == KC_OK, "%s: %s", path, e.msg);
        char *json = export_ok(cfg, cfg->model);
        char jpath[4300], cmd[9000], opath[4400];
        snprintf(jpath, sizeof jpath, "%s/model.json", dir);
        spill(jpath, json);
        char *sums[2];
        for (int k = 0; k < 2; k++) {
            snprintf(opath, sizeof opath, "%s/summary%d.txt", dir, k);
            snprintf(cmd, sizeof cmd, "'%s' summary '%s' >'%s' 2>&1", kerasc, k ? jpath : path,
                     opath);
            int st = system(cmd);
            sums[k] = slurp(opath, NULL);
            ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s", path, sums[k]);
        }
        ck_assert_msg(!strcmp(sums[0], sums[1]), "%s: the summaries differ at %s", path,
                      first_diff(sums[0], sums[1]));
        free(sums[0]);
        free(sums[1]);
        free(json);
        kc_config_free(cfg);
    }
    kc_test_rmdir(dir);
    free(dir);
}
END_TEST

static const char *const keras_fixtures[] = {
    "cnn_sequential_k3.json",
    "cnn_sequential_k2.json",
    "every_layer_k3.json",
    "small_cnn_k3.json",
    "small_cnn_k3.keras",
    "regularized_k3.json",
    "residual_k3.json",
    "residual_k2.json",
    "two_in_two_out_k3.json",
    "shared_k3.json",
    "shared_k2.json",
    "merges_k3.json",
    "grouped_conv_k3.json",
    "sequence/bidirectional.json",
    "sequence/conv1d_text.json",
    "sequence/gru_stack.json",
    "sequence/masked_functional.json",
    "sequence/masked_lstm.json",
    "sequence/seq2seq.json",
    "sequence/time_distributed.json",
};
#define NFIXTURES (int)(sizeof keras_fixtures / sizeof keras_fixtures[0])

/* Keras's own JSON: exporting what it converts to and converting again
 * gives the same YAML, byte for byte. */
START_TEST(test_keras_fixtures_round_trip) {
    const char *name = keras_fixtures[_i];
    char *yaml = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_keras_import(fixture(name), &yaml, &e) == KC_OK, "%s: %s", name, e.msg);
    char *again = yaml_round(yaml, name);
    ck_assert_msg(!strcmp(yaml, again), "%s: the YAML after export differs at %s", name,
                  first_diff(yaml, again));
    free(again);
    free(yaml);
}
END_TEST

/* The Keras Applications, the largest graphs there are fixtures of. */
START_TEST(test_applications_round_trip) {
    static const char *const apps[] = {"vgg16",       "resnet50", "resnet50v2",
                                       "mobilenetv2", "xception", "densenet121"};
    for (size_t i = 0; i < sizeof apps / sizeof apps[0]; i++) {
        if (kc_test_quick() && i > 1) break; /* the sanitizer run takes two */
        char rel[200];
        snprintf(rel, sizeof rel, "applications/%s.json.gz", apps[i]);
        char *json = gunzip(fixture(rel));
        char *yaml = import_ok(apps[i], json);
        char *again = yaml_round(yaml, apps[i]);
        ck_assert_msg(!strcmp(yaml, again), "%s: the YAML after export differs at %s", apps[i],
                      first_diff(yaml, again));
        free(again);
        free(yaml);
        free(json);
    }
}
END_TEST

/* Every class kerasc registers, with its arguments: the model reads back
 * the same, twice over. */
START_TEST(test_every_layer_round_trip) {
    kc_config *cfg = NULL;
    kc_error e = {0};
    const char *path = fixture("export_every_layer.yaml");
    ck_assert_msg(kc_config_load(path, &cfg, &e) == KC_OK, "%s", e.msg);
    char *once = round_trip(cfg, path);
    char *twice = yaml_round(once, path);
    ck_assert_msg(!strcmp(once, twice), "a second round trip differs at %s",
                  first_diff(once, twice));
    /* every registered class is in the fixture, wrapped ones included */
    char *json = export_ok(cfg, cfg->model);
    for (int i = 0; kc_layer_classes[i]; i++) {
        char want[160];
        snprintf(want, sizeof want, "\"class_name\": \"%s\"", kc_layer_classes[i]->class_name);
        ck_assert_msg(strstr(json, want), "export_every_layer.yaml has no %s layer",
                      kc_layer_classes[i]->class_name);
    }
    free(json);
    free(once);
    free(twice);
    kc_config_free(cfg);
}
END_TEST

/* ---------------------------------------------------------------- the JSON */

static kc_json *parse_json(const char *text) {
    kc_error e = {0};
    kc_json *v = kc_json_parse(text, strlen(text), &e);
    ck_assert_msg(v != NULL, "%s\n%s", e.msg, text);
    return v;
}

/* A layer entry of the model's config by its name. */
static const kc_json *entry(const kc_json *root, const char *name) {
    const kc_json *layers = kc_json_get(kc_json_get(root, "config"), "layers");
    for (size_t i = 0; i < kc_json_len(layers); i++) {
        const kc_json *l = kc_json_at(layers, i);
        if (!strcmp(kc_json_str(kc_json_get(kc_json_get(l, "config"), "name")), name)) return l;
    }
    ck_abort_msg("no layer '%s' in the exported model", name);
    return NULL;
}

static const kc_json *cfg_of(const kc_json *root, const char *name) {
    return kc_json_get(entry(root, name), "config");
}

/* The value serialized compactly with Python's separators. */
static char *text_of(const kc_json *v) {
    kc_strbuf b = {0};
    kc_json_write(&b, v, 0);
    return kc_strbuf_take(&b);
}

#define ck_assert_json(v, want)                                                                    \
    do {                                                                                           \
        char *_t = text_of(v);                                                                     \
        ck_assert_msg(!strcmp(_t, (want)), "%s is %s, expected %s", #v, _t, (want));               \
        free(_t);                                                                                  \
    } while (0)

static const char *const stack_yaml = "model:\n"
                                      "  name: stack\n"
                                      "  layers:\n"
                                      "    - Input: {shape: [28, 28, 1]}\n"
                                      "    - Conv2D: {filters: 2, kernel_size: 3}\n"
                                      "    - Flatten\n"
                                      "    - Dense: {units: 3, activation: softmax}\n";

/* A plain stack is a Sequential with Keras 3's envelope, written on one
 * line as json.dumps writes it; no compile section, no compile_config. */
START_TEST(test_sequential_structure) {
    kc_config *cfg = parse_ok("stack.yaml", stack_yaml);
    char *json = export_ok(cfg, cfg->model);
    ck_assert_msg(!strncmp(json,
                           "{\"module\": \"keras\", \"class_name\": \"Sequential\", \"config\": "
                           "{\"name\": \"stack\", \"trainable\": true, \"dtype\": {\"module\": "
                           "\"keras\", \"class_name\": \"DTypePolicy\", \"config\": {\"name\": "
                           "\"float32\"}, \"registered_name\": null}, \"layers\": [",
                           205),
                  "%s", json);
    ck_assert_ptr_null(strchr(json, '\n'));
    kc_json *root = parse_json(json);
    ck_assert_ptr_null(kc_json_get(root, "compile_config"));
    ck_assert_json(kc_json_get(root, "build_config"), "{\"input_shape\": [null, 28, 28, 1]}");
    ck_assert_json(kc_json_get(kc_json_get(root, "config"), "build_input_shape"),
                   "[null, 28, 28, 1]");
    const kc_json *in = entry(root, "input_layer");
    ck_assert_json(in, "{\"module\": \"keras.layers\", \"class_name\": \"InputLayer\", \"config\": "
                       "{\"batch_shape\": [null, 28, 28, 1], \"dtype\": \"float32\", \"sparse\": "
                       "false, \"ragged\": false, \"name\": \"input_layer\", \"optional\": false}, "
                       "\"registered_name\": null}");
    const kc_json *conv = entry(root, "conv2d");
    ck_assert_str_eq(kc_json_str(kc_json_get(conv, "module")), "keras.layers");
    ck_assert_json(kc_json_get(kc_json_get(conv, "config"), "kernel_size"), "[3, 3]");
    ck_assert_ptr_null(kc_json_get(conv, "inbound_nodes")); /* a Sequential's layers have none */
    ck_assert_json(kc_json_get(conv, "build_config"), "{\"input_shape\": [null, 28, 28, 1]}");
    ck_assert_json(kc_json_get(entry(root, "dense"), "build_config"),
                   "{\"input_shape\": [null, 1352]}");
    ck_assert_str_eq(kc_json_str(kc_json_get(cfg_of(root, "dense"), "activation")), "softmax");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
}
END_TEST

/* The other ways a model file writes a layer: input_shape on the first
 * layer (its Input is Keras's input_layer), Keras's serialized entry, the
 * class_name inline, a Keras 2 class alias. */
START_TEST(test_entry_forms) {
    kc_config *cfg =
        parse_ok("forms.yaml", "model:\n  layers:\n"
                               "    - Dense: {units: 4, input_shape: [3], name: first}\n"
                               "    - {class_name: Dense, config: {units: 2, use_bias: false}}\n"
                               "    - {class_name: Activation, activation: tanh}\n"
                               "    - Reshape: {target_shape: [2, 1]}\n"
                               "    - Convolution1D: {filters: 1, kernel_size: 1}\n");
    char *json = export_ok(cfg, cfg->model);
    kc_json *root = parse_json(json);
    ck_assert_json(kc_json_get(cfg_of(root, "input_layer"), "batch_shape"), "[null, 3]");
    const kc_json *first = cfg_of(root, "first");
    ck_assert_ptr_null(kc_json_get(first, "input_shape"));
    ck_assert_json(kc_json_get(first, "units"), "4");
    ck_assert_json(kc_json_get(cfg_of(root, "dense"), "use_bias"), "false");
    ck_assert_json(kc_json_get(cfg_of(root, "activation"), "activation"), "\"tanh\"");
    ck_assert_ptr_null(kc_json_get(cfg_of(root, "activation"), "class_name"));
    ck_assert_str_eq(kc_json_str(kc_json_get(entry(root, "conv1d"), "class_name")), "Conv1D");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
}
END_TEST

static const char *const graph_yaml =
    "model:\n"
    "  name: probe\n"
    "  inputs: [a, b]\n"
    "  outputs: [out, seq]\n"
    "  layers:\n"
    "    - Input: {shape: [8], name: a}\n"
    "    - Dense: {units: 4, kernel_initializer: glorot_uniform, kernel_regularizer: l1_l2,\n"
    "              bias_initializer: {RandomNormal: {stddev: 0.1}}, name: enc}\n"
    "    - Input: {shape: [8], name: b}\n"
    "    - {layer: enc, inputs: b}\n"
    "    - Add: {inputs: [enc, 'enc[1]'], name: add}\n"
    "    - Dense: {units: 2, kernel_constraint: {MaxNorm: {max_value: 3}}, name: out}\n"
    "    - RepeatVector: {n: 3, inputs: add}\n"
    "    - Bidirectional: {layer: {LSTM: {units: 2, return_sequences: true}}, name: seq}\n"
    "compile:\n"
    "  optimizer: {Adam: {learning_rate: 0.0005, clipnorm: 1}}\n"
    "  loss: {out: mse, seq: {Huber: {delta: 2.0}}}\n"
    "  metrics: [mae]\n";

/* A graph is a Functional: Keras's module, input and output triples, each
 * call an inbound node of __keras_tensor__ arguments. */
START_TEST(test_functional_structure) {
    kc_config *cfg = parse_ok("graph.yaml", graph_yaml);
    char *json = export_ok(cfg, cfg->model);
    kc_json *root = parse_json(json);
    ck_assert_str_eq(kc_json_str(kc_json_get(root, "module")), "keras.src.models.functional");
    ck_assert_str_eq(kc_json_str(kc_json_get(root, "class_name")), "Functional");
    ck_assert_str_eq(kc_json_str(kc_json_get(root, "registered_name")), "Functional");
    const kc_json *c = kc_json_get(root, "config");
    ck_assert_json(kc_json_get(c, "input_layers"), "[[\"a\", 0, 0], [\"b\", 0, 0]]");
    ck_assert_json(kc_json_get(c, "output_layers"), "[[\"out\", 0, 0], [\"seq\", 0, 0]]");
    ck_assert_json(kc_json_get(entry(root, "b"), "inbound_nodes"), "[]");
    /* the shared layer: two calls, the second on b */
    const kc_json *enc = entry(root, "enc");
    ck_assert_str_eq(kc_json_str(kc_json_get(enc, "name")), "enc");
    const kc_json *calls = kc_json_get(enc, "inbound_nodes");
    ck_assert_uint_eq(kc_json_len(calls), 2);
    ck_assert_json(kc_json_at(calls, 1),
                   "{\"args\": [{\"class_name\": \"__keras_tensor__\", \"config\": {\"shape\": "
                   "[null, 8], \"dtype\": \"float32\", \"keras_history\": [\"b\", 0, 0]}}], "
                   "\"kwargs\": {}}");
    ck_assert_json(kc_json_get(kc_json_get(enc, "config"), "kernel_initializer"),
                   "{\"module\": \"keras.initializers\", \"class_name\": \"GlorotUniform\", "
                   "\"config\": {\"seed\": null}, \"registered_name\": null}");
    ck_assert_json(kc_json_get(kc_json_get(enc, "config"), "bias_initializer"),
                   "{\"module\": \"keras.initializers\", \"class_name\": \"RandomNormal\", "
                   "\"config\": {\"seed\": null, \"mean\": 0.0, \"stddev\": 0.1}, "
                   "\"registered_name\": null}");
    ck_assert_json(kc_json_get(kc_json_get(enc, "config"), "kernel_regularizer"),
                   "{\"module\": \"keras.regularizers\", \"class_name\": \"L1L2\", \"config\": "
                   "{\"l1\": 0.01, \"l2\": 0.01}, \"registered_name\": null}");
    ck_assert_json(kc_json_get(cfg_of(root, "out"), "kernel_constraint"),
                   "{\"module\": \"keras.constraints\", \"class_name\": \"MaxNorm\", \"config\": "
                   "{\"max_value\": 3, \"axis\": 0}, \"registered_name\": null}");
    /* a merge takes its tensors as one list argument */
    const kc_json *add = entry(root, "add");
    const kc_json *args = kc_json_get(kc_json_at(kc_json_get(add, "inbound_nodes"), 0), "args");
    ck_assert_uint_eq(kc_json_len(args), 1);
    ck_assert_uint_eq(kc_json_len(kc_json_at(args, 0)), 2);
    ck_assert_json(
        kc_json_get(kc_json_get(kc_json_at(kc_json_at(args, 0), 0), "config"), "keras_history"),
        "[\"enc\", 0, 0]");
    ck_assert_json(
        kc_json_get(kc_json_get(kc_json_at(kc_json_at(args, 0), 1), "config"), "keras_history"),
        "[\"enc\", 1, 0]");
    ck_assert_json(kc_json_get(add, "build_config"), "{\"input_shape\": [[null, 4], [null, 4]]}");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
}
END_TEST

/* Bidirectional holds its layer and the reversed copy under Keras's names;
 * TimeDistributed its layer. */
START_TEST(test_wrapper_structure) {
    kc_config *cfg = parse_ok("graph.yaml", graph_yaml);
    char *json = export_ok(cfg, cfg->model);
    kc_json *root = parse_json(json);
    const kc_json *seq = cfg_of(root, "seq");
    const kc_json *fwd = kc_json_get(seq, "layer"), *bwd = kc_json_get(seq, "backward_layer");
    ck_assert_str_eq(kc_json_str(kc_json_get(fwd, "module")), "keras.layers");
    ck_assert_str_eq(kc_json_str(kc_json_get(fwd, "class_name")), "LSTM");
    ck_assert_str_eq(kc_json_str(kc_json_get(kc_json_get(fwd, "config"), "name")), "forward_lstm");
    ck_assert_ptr_null(kc_json_get(kc_json_get(fwd, "config"), "go_backwards"));
    ck_assert_int_eq(kc_json_bool(kc_json_get(kc_json_get(fwd, "config"), "return_sequences")), 1);
    ck_assert_str_eq(kc_json_str(kc_json_get(bwd, "class_name")), "LSTM");
    ck_assert_str_eq(kc_json_str(kc_json_get(kc_json_get(bwd, "config"), "name")), "backward_lstm");
    ck_assert_int_eq(kc_json_bool(kc_json_get(kc_json_get(bwd, "config"), "go_backwards")), 1);
    ck_assert_ptr_null(kc_json_get(fwd, "build_config"));
    ck_assert_json(kc_json_get(entry(root, "seq"), "build_config"),
                   "{\"input_shape\": [null, 3, 4]}");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
    cfg = parse_ok("td.yaml", "model:\n  layers:\n    - Input: {shape: [5, 4]}\n"
                              "    - TimeDistributed: {layer: {Dense: {units: 3, name: proj}}}\n");
    json = export_ok(cfg, cfg->model);
    root = parse_json(json);
    const kc_json *inner = kc_json_get(cfg_of(root, "time_distributed"), "layer");
    ck_assert_str_eq(kc_json_str(kc_json_get(inner, "class_name")), "Dense");
    ck_assert_str_eq(kc_json_str(kc_json_get(kc_json_get(inner, "config"), "name")), "proj");
    ck_assert_json(kc_json_get(kc_json_get(inner, "config"), "units"), "3");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
}
END_TEST

/* compile_config as Keras 3 writes it: the optimizer with every argument,
 * one loss per output keyed by name, the metrics per output. */
START_TEST(test_compile_config) {
    kc_config *cfg = parse_ok("graph.yaml", graph_yaml);
    char *json = export_ok(cfg, cfg->model);
    kc_json *root = parse_json(json);
    const kc_json *cc = kc_json_get(root, "compile_config");
    ck_assert_json(kc_json_get(cc, "optimizer"),
                   "{\"module\": \"keras.optimizers\", \"class_name\": \"Adam\", \"config\": "
                   "{\"name\": \"adam\", \"learning_rate\": 0.0005, \"weight_decay\": null, "
                   "\"clipnorm\": 1, \"global_clipnorm\": null, \"clipvalue\": null, "
                   "\"use_ema\": false, \"ema_momentum\": 0.99, \"ema_overwrite_frequency\": "
                   "null, \"loss_scale_factor\": null, \"gradient_accumulation_steps\": null, "
                   "\"beta_1\": 0.9, \"beta_2\": 0.999, \"epsilon\": 1e-07, \"amsgrad\": false}, "
                   "\"registered_name\": null}");
    ck_assert_json(kc_json_get(cc, "loss"),
                   "{\"out\": \"mse\", \"seq\": {\"module\": \"keras.losses\", \"class_name\": "
                   "\"Huber\", \"config\": {\"delta\": 2.0}, \"registered_name\": null}}");
    ck_assert_json(kc_json_get(cc, "metrics"), "{\"out\": [\"mae\"], \"seq\": [\"mae\"]}");
    ck_assert_json(kc_json_get(cc, "loss_weights"), "null");
    ck_assert_json(kc_json_get(cc, "steps_per_execution"), "1");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
}
END_TEST

/* Keras's default optimizer, single-output forms and a schedule. */
START_TEST(test_compile_single_output) {
    kc_config *cfg =
        parse_ok("c.yaml", "model:\n  layers:\n    - Input: {shape: [4]}\n"
                           "    - Dense: {units: 2}\n"
                           "compile:\n  loss: kullback_leibler_divergence\n"
                           "  loss_weights: 0.5\n  metrics: [{Precision: {thresholds: 0.7}}]\n");
    char *json = export_ok(cfg, cfg->model);
    kc_json *root = parse_json(json);
    const kc_json *cc = kc_json_get(root, "compile_config");
    ck_assert_str_eq(kc_json_str(kc_json_get(kc_json_get(cc, "optimizer"), "class_name")),
                     "RMSprop");
    ck_assert_json(kc_json_get(cc, "loss"), "\"kl_divergence\"");
    ck_assert_json(kc_json_get(cc, "loss_weights"), "[0.5]");
    ck_assert_json(kc_json_get(cc, "metrics"),
                   "[{\"module\": \"keras.metrics\", \"class_name\": \"Precision\", \"config\": "
                   "{\"thresholds\": 0.7}, \"registered_name\": null}]");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
    cfg = parse_ok("s.yaml", "model:\n  layers:\n    - Input: {shape: [4]}\n"
                             "    - Dense: {units: 2}\ncompile:\n  optimizer:\n    SGD:\n"
                             "      learning_rate: {CosineDecay: {initial_learning_rate: 0.1, "
                             "decay_steps: 100}}\n  loss: mse\n");
    json = export_ok(cfg, cfg->model);
    root = parse_json(json);
    ck_assert_json(
        kc_json_get(
            kc_json_get(kc_json_get(kc_json_get(root, "compile_config"), "optimizer"), "config"),
            "learning_rate"),
        "{\"module\": \"keras.optimizers.schedules\", \"class_name\": \"CosineDecay\", "
        "\"config\": {\"initial_learning_rate\": 0.1, \"decay_steps\": 100, \"alpha\": "
        "0.0, \"name\": \"CosineDecay\", \"warmup_target\": null, \"warmup_steps\": "
        "0}, \"registered_name\": null}");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
}
END_TEST

/* Arguments in Keras 3's forms, from the forms kerasc also reads. */
START_TEST(test_argument_forms) {
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_config_load(fixture("export_every_layer.yaml"), &cfg, &e) == KC_OK, "%s",
                  e.msg);
    char *json = export_ok(cfg, cfg->model);
    kc_json *root = parse_json(json);
    /* tuples */
    ck_assert_json(kc_json_get(cfg_of(root, "grouped"), "kernel_size"), "[3, 3]");
    ck_assert_json(kc_json_get(cfg_of(root, "conv"), "strides"), "[1, 1]");
    ck_assert_json(kc_json_get(cfg_of(root, "conv1d"), "kernel_size"), "[3]");
    ck_assert_json(kc_json_get(cfg_of(root, "max_pooling1d"), "pool_size"), "[2]");
    ck_assert_json(kc_json_get(cfg_of(root, "zero_padding2d"), "padding"), "[[1, 0], [0, 1]]");
    ck_assert_json(kc_json_get(cfg_of(root, "zero_padding2d_1"), "padding"), "[[1, 1], [2, 2]]");
    ck_assert_json(kc_json_get(cfg_of(root, "cropping2d_1"), "cropping"), "[[1, 1], [1, 1]]");
    ck_assert_json(kc_json_get(cfg_of(root, "zero_padding1d"), "padding"), "[1, 2]");
    ck_assert_json(kc_json_get(cfg_of(root, "conv2d_transpose"), "output_padding"), "[1, 1]");
    /* values YAML writes that JSON does not */
    ck_assert_json(kc_json_get(cfg_of(root, "rescaling"), "scale"), "0.00392156862745098");
    ck_assert_json(kc_json_get(cfg_of(root, "conv2d_transpose"), "activation"), "\"silu\"");
    /* renamed, dropped and explicit arguments */
    ck_assert_json(kc_json_get(cfg_of(root, "leaky_re_lu"), "negative_slope"), "0.2");
    ck_assert_ptr_null(kc_json_get(cfg_of(root, "leaky_re_lu"), "alpha"));
    ck_assert_ptr_null(kc_json_get(cfg_of(root, "embedding"), "input_length"));
    ck_assert_ptr_null(kc_json_get(cfg_of(root, "enc"), "implementation"));
    ck_assert_json(kc_json_get(cfg_of(root, "token_rnn"), "merge_mode"), "\"ave\"");
    ck_assert_ptr_null(kc_json_get(cfg_of(root, "dropout"), "noise_shape"));
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
}
END_TEST

/* Serialized objects, the wrappers' layers and an RNN's initial state. */
START_TEST(test_argument_objects) {
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_config_load(fixture("export_every_layer.yaml"), &cfg, &e) == KC_OK, "%s",
                  e.msg);
    char *json = export_ok(cfg, cfg->model);
    kc_json *root = parse_json(json);
    /* null is glorot_uniform for an initializer, as Keras's add_weight has it */
    ck_assert_str_eq(
        kc_json_str(kc_json_get(kc_json_get(cfg_of(root, "shared_dense"), "bias_initializer"),
                                "class_name")),
        "GlorotUniform");
    ck_assert_json(kc_json_get(cfg_of(root, "conv"), "activity_regularizer"),
                   "{\"module\": \"keras.regularizers\", \"class_name\": \"L1L2\", \"config\": "
                   "{\"l1\": 0.0, \"l2\": 0.0001}, \"registered_name\": null}");
    ck_assert_json(kc_json_get(cfg_of(root, "conv"), "kernel_constraint"),
                   "{\"module\": \"keras.constraints\", \"class_name\": \"MaxNorm\", \"config\": "
                   "{\"max_value\": 3, \"axis\": [0, 1, 2]}, \"registered_name\": null}");
    ck_assert_json(kc_json_get(cfg_of(root, "separable_conv2d"), "bias_constraint"),
                   "{\"module\": \"keras.constraints\", \"class_name\": \"UnitNorm\", \"config\": "
                   "{\"axis\": [0]}, \"registered_name\": null}");
    ck_assert_json(kc_json_get(cfg_of(root, "p_re_lu"), "alpha_initializer"),
                   "{\"module\": \"keras.initializers\", \"class_name\": \"Constant\", \"config\": "
                   "{\"value\": 0.25}, \"registered_name\": null}");
    /* SpatialDropout's constructor takes no trainable, and a dtype string */
    ck_assert_ptr_null(kc_json_get(cfg_of(root, "spatial_dropout1d"), "trainable"));
    ck_assert_json(kc_json_get(cfg_of(root, "spatial_dropout1d"), "dtype"), "\"float32\"");
    ck_assert_int_eq(kc_json_bool(kc_json_get(cfg_of(root, "scores"), "trainable")), 0);
    /* an RNN's initial state is a keyword argument */
    const kc_json *dec = entry(root, "dec");
    ck_assert_json(kc_json_get(kc_json_at(kc_json_get(dec, "inbound_nodes"), 0), "kwargs"),
                   "{\"initial_state\": [{\"class_name\": \"__keras_tensor__\", \"config\": "
                   "{\"shape\": [null, 8], \"dtype\": \"float32\", \"keras_history\": [\"enc\", "
                   "0, 1]}}]}");
    ck_assert_json(kc_json_get(dec, "build_config"),
                   "{\"shapes_dict\": {\"sequences_shape\": [null, 10, 8], "
                   "\"initial_state_shape\": [[null, 8]]}}");
    /* a given backward layer stays itself */
    const kc_json *bigru = cfg_of(root, "bigru");
    ck_assert_str_eq(
        kc_json_str(kc_json_get(kc_json_get(kc_json_get(bigru, "layer"), "config"), "name")),
        "forward_fwd");
    ck_assert_str_eq(kc_json_str(kc_json_get(
                         kc_json_get(kc_json_get(bigru, "backward_layer"), "config"), "name")),
                     "bwd");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
}
END_TEST

/* Nulls that are not Keras's defaults are written out: Bidirectional's
 * merge_mode (both outputs; several outputs make the stack a Functional)
 * and a norm constraint's axis (the whole weight). */
START_TEST(test_nulls_kept) {
    kc_config *cfg = parse_ok("mm.yaml", "model:\n  layers:\n    - Input: {shape: [4, 3]}\n"
                                         "    - Bidirectional: {layer: {SimpleRNN: {units: 2, "
                                         "kernel_constraint: {MaxNorm: {axis: null}}}}, "
                                         "merge_mode: null}\n");
    char *json = export_ok(cfg, cfg->model);
    kc_json *root = parse_json(json);
    ck_assert_str_eq(kc_json_str(kc_json_get(root, "class_name")), "Functional");
    ck_assert_json(kc_json_get(cfg_of(root, "bidirectional"), "merge_mode"), "null");
    ck_assert_json(kc_json_get(kc_json_get(root, "config"), "output_layers"),
                   "[\"bidirectional\", 0, 0]");
    ck_assert_json(
        kc_json_get(
            kc_json_get(kc_json_get(kc_json_get(cfg_of(root, "bidirectional"), "layer"), "config"),
                        "kernel_constraint"),
            "config"),
        "{\"max_value\": 2.0, \"axis\": null}");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
}
END_TEST

/* ---------------------------------------------------------------- refusals */

/* What Keras cannot express is an error naming the layer and the setting. */
START_TEST(test_inexpressible_settings) {
    kc_config *cfg = parse_ok("sd.yaml", "model:\n  layers:\n    - Input: {shape: [5, 3]}\n"
                                         "    - SpatialDropout1D: {rate: 0.1, "
                                         "activity_regularizer: l2}\n"
                                         "    - Flatten\n");
    kc_error e = export_err(cfg);
    ck_assert_has(e.msg, "sd.yaml:4:");
    ck_assert_has(e.msg, "layer 'spatial_dropout1d' (SpatialDropout1D): Keras's SpatialDropout1D "
                         "takes no activity_regularizer");
    kc_config_free(cfg);
    /* a stateful RNN needs a fixed batch size: fit's, or none is known */
    static const char *const stateful = "model:\n  layers:\n    - Input: {shape: [5, 3]}\n"
                                        "    - LSTM: {units: 2, stateful: true, name: rnn}\n"
                                        "fit: {batch_size: 16}\n";
    cfg = parse_ok("st.yaml", stateful);
    kc_strbuf b = {0};
    ck_assert_int_eq(kc_keras_export_json(NULL, cfg->model, &b, &e), KC_ECONFIG);
    ck_assert_has(e.msg, "st.yaml:4:");
    ck_assert_has(e.msg, "layer 'rnn' (LSTM): stateful: true needs a fixed batch size");
    char *json = export_ok(cfg, cfg->model);
    kc_json *root = parse_json(json);
    ck_assert_json(kc_json_get(cfg_of(root, "input_layer"), "batch_shape"), "[16, 5, 3]");
    ck_assert_json(kc_json_get(entry(root, "rnn"), "build_config"),
                   "{\"input_shape\": [16, 5, 3]}");
    kc_json_free(root);
    free(json);
    kc_config_free(cfg);
}
END_TEST

START_TEST(test_metadata) {
    kc_strbuf b = {0};
    kc_error e = {0};
    ck_assert_int_eq(kc_keras_export_metadata(&b, &e), KC_OK);
    kc_json *root = parse_json(kc_strbuf_str(&b));
    ck_assert_uint_eq(kc_json_len(root), 2);
    ck_assert_str_eq(kc_json_str(kc_json_get(root, "keras_version")), KC_KERAS_EXPORT_VERSION);
    ck_assert_str_eq(KC_KERAS_EXPORT_VERSION, "3.15.1");
    regex_t re;
    ck_assert_int_eq(regcomp(&re,
                             "^[0-9]{4}-[01][0-9]-[0-3][0-9]@[0-2][0-9]:[0-5][0-9]:[0-6][0-9]$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    const char *date = kc_json_str(kc_json_get(root, "date_saved"));
    ck_assert_msg(regexec(&re, date, 0, NULL, 0) == 0, "date_saved '%s'", date);
    regfree(&re);
    kc_json_free(root);
    kc_strbuf_free(&b);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("keras_export");
    TCase *rt = tcase_create("round_trips");
    tcase_set_timeout(rt, 120);
    tcase_add_test(rt, test_configs_round_trip);
    tcase_add_test(rt, test_configs_summary);
    tcase_add_loop_test(rt, test_keras_fixtures_round_trip, 0, NFIXTURES);
    tcase_add_test(rt, test_applications_round_trip);
    tcase_add_test(rt, test_every_layer_round_trip);
    suite_add_tcase(s, rt);
    TCase *js = tcase_create("json");
    tcase_add_test(js, test_sequential_structure);
    tcase_add_test(js, test_entry_forms);
    tcase_add_test(js, test_functional_structure);
    tcase_add_test(js, test_wrapper_structure);
    tcase_add_test(js, test_compile_config);
    tcase_add_test(js, test_compile_single_output);
    tcase_add_test(js, test_argument_forms);
    tcase_add_test(js, test_argument_objects);
    tcase_add_test(js, test_nulls_kept);
    tcase_add_test(js, test_inexpressible_settings);
    tcase_add_test(js, test_metadata);
    suite_add_tcase(s, js);
    return s;
}

int main(void) {
    if (glob(src_path("configs/*.yaml"), 0, NULL, &configs)) configs.gl_pathc = 0;
    int rc = kc_test_run(suite());
    globfree(&configs);
    return rc;
}
