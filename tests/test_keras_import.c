/* Keras model files (model.to_json() and .keras archives, Keras 3 and
 * Keras 2) read as kerasc models. The fixtures in tests/fixtures/keras were
 * written by Keras itself (make_fixtures.py there), each with the summary
 * Keras printed for it; kerasc must give the same layer names, output
 * shapes and parameter counts. Formats older than the fixtures (Keras 2
 * before 2.13, the list-form Sequential of Keras 2.2) are written inline
 * from the layout documented in KERAS.md §10.1. */
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include "core/json.h"
#include "core/rng.h"
#include "models/config.h"
#include "models/data/data.h"
#include "models/keras_import.h"
#include "models/yaml.h"
#include "testutil.h"

/* ---------------------------------------------------------------- files */

static const char *fixture(const char *name) {
    static char bufs[8][4200];
    static int next;
    char *buf = bufs[next++ % 8];
    const char *root = getenv("KERASC_SRC");
    if (root && *root) {
        snprintf(buf, 4200, "%s/tests/fixtures/keras/%s", root, name);
    } else {
        const char *src = __FILE__;
        const char *slash = strrchr(src, '/');
        snprintf(buf, 4200, "%.*s/fixtures/keras/%s", slash ? (int)(slash - src) : 1,
                 slash ? src : ".", name);
    }
    return buf;
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

static void spill(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static char *convert_ok(const char *path) {
    kc_error e = {0};
    char *text = NULL;
    ck_assert_msg(kc_keras_import(path, &text, &e) == KC_OK, "%s", e.msg);
    return text;
}

static char *convert_text_ok(const char *json) {
    kc_error e = {0};
    char *text = NULL;
    ck_assert_msg(kc_keras_import_text("inline.json", json, strlen(json), &text, &e) == KC_OK, "%s",
                  e.msg);
    return text;
}

static kc_error convert_text_err(const char *json) {
    kc_error e = {0};
    char *text = NULL;
    ck_assert_int_eq(kc_keras_import_text("inline.json", json, strlen(json), &text, &e),
                     KC_ECONFIG);
    ck_assert_ptr_null(text);
    return e;
}

#define ck_assert_has(hay, needle)                                                                 \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' not found in: %s", (needle), (hay))

/* ------------------------------------------------------------- summaries */

/* One summary row with its cells' whitespace removed, so rows wrapped at
 * different widths (Keras 3's rich table, Keras 2's fixed columns) compare. */
typedef struct row {
    char name[256], shape[256], params[32], conn[512];
} row;

typedef struct table {
    char title[128];
    row rows[64];
    int n, has_conn;
    char total[32], trainable[32], nontrainable[32];
} table;

static void squeeze_into(char *dst, size_t cap, const char *s, size_t len) {
    size_t at = strlen(dst);
    for (size_t i = 0; i < len && at + 1 < cap; i++)
        if (s[i] != ' ' && s[i] != '\n' && s[i] != '\r') dst[at++] = s[i];
    dst[at] = 0;
}

static void digits_of(char *dst, size_t cap, const char *s) {
    size_t at = 0;
    for (; *s && *s != '(' && at + 1 < cap; s++)
        if (*s >= '0' && *s <= '9') dst[at++] = *s;
    dst[at] = 0;
}

/* Keras 2 prints [(None, 784)] for an input, a list of quoted names for
 * "Connected to" and [] for none; Keras 3 (None, 784), bare names and -. */
static void normalize(row *r) {
    size_t n = strlen(r->shape);
    if (n > 4 && !strncmp(r->shape, "[(", 2) && !strcmp(r->shape + n - 2, ")]") &&
        !strchr(r->shape + 2, '(')) {
        memmove(r->shape, r->shape + 1, n - 2);
        r->shape[n - 2] = 0;
    }
    char *w = r->params;
    for (char *p = r->params; *p; p++)
        if (*p != ',') *w++ = *p;
    *w = 0;
    char c[512];
    size_t at = 0;
    for (const char *p = r->conn; *p; p++)
        if (*p != '\'') c[at++] = *p;
    c[at] = 0;
    if (at >= 2 && c[0] == '[' && c[at - 1] == ']') {
        c[at - 1] = 0;
        memmove(c, c + 1, at - 1);
    }
    if (!strcmp(c, "-")) c[0] = 0;
    snprintf(r->conn, sizeof r->conn, "%s", c);
}

static void parse_totals(table *t, const char *line) {
    while (*line == ' ')
        line++;
    if (!strncmp(line, "Total params:", 13)) digits_of(t->total, sizeof t->total, line + 13);
    if (!strncmp(line, "Trainable params:", 17))
        digits_of(t->trainable, sizeof t->trainable, line + 17);
    if (!strncmp(line, "Non-trainable params:", 21))
        digits_of(t->nontrainable, sizeof t->nontrainable, line + 21);
}

static const char BAR[] = "\xe2\x94\x82"; /* │ */

static void k3_cells(table *t, const char *line, int open) {
    row *r = &t->rows[t->n];
    char *fields[4] = {r->name, r->shape, r->params, r->conn};
    size_t caps[4] = {sizeof r->name, sizeof r->shape, sizeof r->params, sizeof r->conn};
    const char *p = line + 3;
    for (int col = 0; col < 4; col++) {
        const char *end = strstr(p, BAR);
        if (!end) break;
        if (open) squeeze_into(fields[col], caps[col], p, (size_t)(end - p));
        if (col == 3) t->has_conn = 1;
        p = end + 3;
    }
}

/* Keras 3's table: rows between rules, cells between │. */
static void parse_k3(table *t, char *text) {
    int in_row = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "Model: \"", 8)) {
            snprintf(t->title, sizeof t->title, "%.*s", (int)strcspn(line + 8, "\""), line + 8);
        } else if (!strncmp(line, BAR, 3)) {
            if (!in_row) memset(&t->rows[t->n], 0, sizeof(row));
            in_row = 1;
            k3_cells(t, line, 1);
        } else if (!strncmp(line, "\xe2\x94\x9c", 3) || !strncmp(line, "\xe2\x94\x94", 3)) {
            if (in_row) normalize(&t->rows[t->n++]);
            in_row = 0;
        } else {
            parse_totals(t, line);
        }
    }
}

/* Keras 2's table: fixed columns whose stops the header gives; rows end at
 * a blank line. */
static void parse_k2(table *t, char *text) {
    int stops[4] = {0}, ncol = 3, body = 0, in_row = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        size_t len = strlen(line);
        if (!strncmp(line, "Model: \"", 8)) {
            snprintf(t->title, sizeof t->title, "%.*s", (int)strcspn(line + 8, "\""), line + 8);
        } else if (strstr(line, "Layer (type)")) {
            stops[0] = (int)(strstr(line, "Output Shape") - line);
            stops[1] = (int)(strstr(line, "Param #") - line);
            const char *conn = strstr(line, "Connected to");
            stops[2] = conn ? (int)(conn - line) : (int)len;
            ncol = conn ? 4 : 3;
            t->has_conn = conn != NULL;
        } else if (line[0] == '=') {
            body = !body && !t->n;
        } else if (body) {
            if (strspn(line, " ") == len) {
                if (in_row) normalize(&t->rows[t->n++]);
                in_row = 0;
                continue;
            }
            row *r = &t->rows[t->n];
            if (!in_row) memset(r, 0, sizeof *r);
            in_row = 1;
            char *fields[4] = {r->name, r->shape, r->params, r->conn};
            size_t caps[4] = {sizeof r->name, sizeof r->shape, sizeof r->params, sizeof r->conn};
            int from = 0;
            for (int col = 0; col < ncol; col++) {
                int to = col < ncol - 1 ? stops[col] : (int)len;
                if (from < (int)len)
                    squeeze_into(fields[col], caps[col], line + from,
                                 (size_t)((to < (int)len ? to : (int)len) - from));
                from = to;
            }
        } else {
            parse_totals(t, line);
        }
    }
}

static void parse_summary(table *t, const char *text) {
    memset(t, 0, sizeof *t);
    char *copy = strdup(text);
    if (strstr(copy, "\xe2\x94\x8f")) /* ┏: Keras 3 */
        parse_k3(t, copy);
    else
        parse_k2(t, copy);
    free(copy);
}

/* Keras 3 cuts a reference too long for its column with an ellipsis; such
 * an entry matches the full one it begins. */
static int same_connections(const char *got, const char *want) {
    static const char ELLIPSIS[] = "\xe2\x80\xa6";
    while (*got || *want) {
        size_t g = strcspn(got, ","), w = strcspn(want, ",");
        int cut = g >= 3 && !strncmp(got + g - 3, ELLIPSIS, 3);
        int wcut = w >= 3 && !strncmp(want + w - 3, ELLIPSIS, 3);
        if (cut && !wcut) {
            if (g - 3 > w || strncmp(got, want, g - 3)) return 0;
        } else if (wcut && !cut) {
            if (w - 3 > g || strncmp(got, want, w - 3)) return 0;
        } else if (g != w || strncmp(got, want, g)) {
            return 0;
        }
        got += g + (got[g] == ',');
        want += w + (want[w] == ',');
    }
    return 1;
}

static void assert_same_summary(const table *got, const table *want, const char *what) {
    ck_assert_msg(want->n > 0, "%s: the Keras summary has no rows", what);
    ck_assert_msg(!strcmp(got->title, want->title), "%s: model '%s', Keras '%s'", what, got->title,
                  want->title);
    ck_assert_msg(got->n == want->n, "%s: %d rows, Keras %d", what, got->n, want->n);
    for (int i = 0; i < want->n; i++) {
        const row *g = &got->rows[i], *w = &want->rows[i];
        ck_assert_msg(!strcmp(g->name, w->name), "%s row %d: '%s', Keras '%s'", what, i, g->name,
                      w->name);
        ck_assert_msg(!strcmp(g->shape, w->shape), "%s %s: shape %s, Keras %s", what, w->name,
                      g->shape, w->shape);
        ck_assert_msg(!strcmp(g->params, w->params), "%s %s: %s params, Keras %s", what, w->name,
                      g->params, w->params);
        if (want->has_conn)
            ck_assert_msg(same_connections(g->conn, w->conn),
                          "%s %s: connected to '%s', Keras '%s'", what, w->name, g->conn, w->conn);
    }
    ck_assert_msg(got->has_conn == want->has_conn, "%s: Connected to column %d, Keras %d", what,
                  got->has_conn, want->has_conn);
    ck_assert_msg(!strcmp(got->total, want->total), "%s: total %s, Keras %s", what, got->total,
                  want->total);
    ck_assert_str_eq(got->trainable, want->trainable);
    ck_assert_str_eq(got->nontrainable, want->nontrainable);
}

/* ------------------------------------------------------------- fixtures */

typedef struct fixture_case {
    const char *file, *summary;
    int sequential;
} fixture_case;

static const fixture_case cases[] = {
    {"cnn_sequential_k3.json", "cnn_sequential_k3.summary.txt", 1},
    {"every_layer_k3.json", "every_layer_k3.summary.txt", 1},
    {"small_cnn_k3.json", "small_cnn_k3.summary.txt", 1},
    {"small_cnn_k3.keras", "small_cnn_k3.keras.summary.txt", 1},
    {"regularized_k3.json", "regularized_k3.summary.txt", 1},
    {"residual_k3.json", "residual_k3.summary.txt", 0},
    {"two_in_two_out_k3.json", "two_in_two_out_k3.summary.txt", 0},
    {"shared_k3.json", "shared_k3.summary.txt", 0},
    {"merges_k3.json", "merges_k3.summary.txt", 0},
    {"cnn_sequential_k2.json", "cnn_sequential_k2.summary.txt", 1},
    {"residual_k2.json", "residual_k2.summary.txt", 0},
    {"shared_k2.json", "shared_k2.summary.txt", 0},
};
#define NCASES (int)(sizeof cases / sizeof cases[0])

/* Every fixture converts, and the text is a model file kerasc loads. */
START_TEST(test_fixture_converts) {
    const fixture_case *c = &cases[_i];
    char *text = convert_ok(fixture(c->file));
    kc_doc *doc = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_doc_parse(&doc, "converted", text, strlen(text), &e) == KC_OK, "%s", e.msg);
    kc_node *model = kc_map_get(doc->root, "model");
    ck_assert_ptr_nonnull(model);
    ck_assert_ptr_nonnull(kc_map_get(model, "layers"));
    ck_assert_int_eq(kc_map_get(model, "outputs") != NULL, !c->sequential);
    kc_doc_free(doc);
    kc_config *cfg = NULL;
    ck_assert_msg(kc_config_parse_text("converted", ".", text, strlen(text), &cfg, &e) == KC_OK,
                  "%s: %s\n%s", c->file, e.msg, text);
    kc_config_free(cfg);
    free(text);
}
END_TEST

/* The parsed Sequential models have Keras's layers, shapes and counts. */
START_TEST(test_sequential_model_matches_keras) {
    const fixture_case *c = &cases[_i];
    if (!c->sequential) return;
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_keras_config_load(fixture(c->file), &cfg, &e) == KC_OK, "%s", e.msg);
    table want, got;
    char *ktext = slurp(fixture(c->summary), NULL);
    parse_summary(&want, ktext);
    free(ktext);
    memset(&got, 0, sizeof got);
    const kc_model *m = cfg->model;
    snprintf(got.title, sizeof got.title, "%s", m->name);
    for (int i = 0; i < m->nlayers && i < 64; i++) {
        const kc_layer *l = m->layers[i];
        row *r = &got.rows[got.n++];
        char buf[256];
        snprintf(buf, sizeof buf, "%s (%s)", l->name, l->cls->class_name);
        squeeze_into(r->name, sizeof r->name, buf, strlen(buf));
        kc_shape_str(&l->out_shape, 1, buf, sizeof buf);
        squeeze_into(r->shape, sizeof r->shape, buf, strlen(buf));
        snprintf(r->params, sizeof r->params, "%lld", (long long)kc_layer_param_count(l, 0));
    }
    int64_t total = kc_model_param_count(m, 0), trainable = kc_model_param_count(m, 1);
    snprintf(got.total, sizeof got.total, "%lld", (long long)total);
    snprintf(got.trainable, sizeof got.trainable, "%lld", (long long)trainable);
    snprintf(got.nontrainable, sizeof got.nontrainable, "%lld", (long long)(total - trainable));
    assert_same_summary(&got, &want, c->file);
    kc_config_free(cfg);
}
END_TEST

/* `kerasc summary MODEL.json` prints what Keras printed: the same rows for
 * every fixture, and for the Keras 3 ones the same bytes. */
START_TEST(test_cli_summary_matches_keras) {
    const fixture_case *c = &cases[_i];
    const char *kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    unsetenv("COLUMNS");
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "'%s' summary '%s' 2>&1", kerasc, fixture(c->file));
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    kc_strbuf out = {0};
    char chunk[4096];
    size_t got_n;
    while ((got_n = fread(chunk, 1, sizeof chunk, p)) > 0)
        kc_strbuf_append(&out, chunk, got_n);
    int st = pclose(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s", c->file, kc_strbuf_str(&out));
    char *ktext = slurp(fixture(c->summary), NULL);
    table want, got;
    parse_summary(&want, ktext);
    parse_summary(&got, kc_strbuf_str(&out));
    assert_same_summary(&got, &want, c->file);
    if (strstr(c->file, "_k3")) ck_assert_str_eq(kc_strbuf_str(&out), ktext);
    free(ktext);
    kc_strbuf_free(&out);
}
END_TEST

/* ------------------------------------------------------- converted text */

START_TEST(test_seed_cnn_yaml) {
    static const char want[] =
        "model:\n"
        "  name: sequential\n"
        "  layers:\n"
        "    - Input: {name: input_layer, shape: [28, 28, 1]}\n"
        "    - Conv2D: {name: conv2d, filters: 32, kernel_size: [3, 3], activation: relu}\n"
        "    - MaxPooling2D: {name: max_pooling2d}\n"
        "    - Conv2D: {name: conv2d_1, filters: 64, kernel_size: [3, 3], activation: relu}\n"
        "    - MaxPooling2D: {name: max_pooling2d_1}\n"
        "    - Flatten: {name: flatten}\n"
        "    - Dense: {name: dense, units: 64, activation: relu}\n"
        "    - Dense: {name: dense_1, units: 10, activation: softmax}\n";
    char *k3 = convert_ok(fixture("cnn_sequential_k3.json"));
    ck_assert_str_eq(k3, want);
    /* tf.keras names the input after the first layer; nothing else differs */
    char *k2 = convert_ok(fixture("cnn_sequential_k2.json"));
    char *at = strstr(k2, "conv2d_input");
    ck_assert_ptr_nonnull(at);
    memmove(at, "input_layer", 11);
    memmove(at + 11, at + 12, strlen(at + 12) + 1);
    ck_assert_str_eq(k2, want);
    free(k3);
    free(k2);
}
END_TEST

/* The graph syntax of the model-file contract: inputs, outputs, shared
 * calls as {layer: X, inputs: ...} and name[node] references. Keras 2 and 3
 * describe this model alike. */
START_TEST(test_shared_layer_yaml) {
    static const char want[] =
        "model:\n"
        "  name: siamese\n"
        "  inputs: [left, right]\n"
        "  outputs: [dense]\n"
        "  layers:\n"
        "    - Input: {name: left, shape: [784]}\n"
        "    - Dense: {name: encoder, units: 64, activation: relu}\n"
        "    - Dense: {name: proj, units: 64, activation: tanh}\n"
        "    - {layer: proj, inputs: proj}\n"
        "    - Input: {name: right, shape: [784]}\n"
        "    - {layer: encoder, inputs: right}\n"
        "    - Subtract: {name: subtract, inputs: [\"proj[1]\", \"encoder[1]\"]}\n"
        "    - Dot: {name: dot, axes: 1, normalize: true, inputs: [encoder, \"encoder[1]\"]}\n"
        "    - Concatenate: {name: concatenate, inputs: [subtract, dot]}\n"
        "    - Dense: {name: dense, units: 1, activation: sigmoid}\n";
    char *k3 = convert_ok(fixture("shared_k3.json"));
    ck_assert_str_eq(k3, want);
    char *k2 = convert_ok(fixture("shared_k2.json"));
    ck_assert_str_eq(k2, want);
    free(k3);
    free(k2);
}
END_TEST

START_TEST(test_two_inputs_two_outputs_yaml) {
    char *t = convert_ok(fixture("two_in_two_out_k3.json"));
    ck_assert_has(t, "  inputs: [image, features]\n  outputs: [class, recon]\n");
    ck_assert_has(t,
                  "    - Input: {name: features, shape: [784]}\n"
                  "    - Flatten: {name: flatten, inputs: max_pooling2d}\n"
                  "    - Dense: {name: dense, units: 64, activation: relu, inputs: features}\n"
                  "    - Concatenate: {name: merged, inputs: [flatten, dense]}\n"
                  "    - Dense: {name: class, units: 10, activation: softmax}\n"
                  "    - Dense: {name: recon, units: 784, activation: sigmoid, inputs: merged}\n");
    free(t);
}
END_TEST

/* Non-default arguments survive, defaults are left out. */
START_TEST(test_arguments_kept) {
    char *t = convert_ok(fixture("every_layer_k3.json"));
    ck_assert_has(t,
                  "    - Conv2D: {name: conv2d, filters: 8, kernel_size: [5, 3], strides: [2, 2], "
                  "padding: same, use_bias: false, kernel_initializer: {class_name: HeNormal, "
                  "config: {seed: 1}}}\n");
    ck_assert_has(t, "    - MaxPooling2D: {name: max_pooling2d, pool_size: [3, 3], padding: same, "
                     "strides: [1, 1]}\n");
    ck_assert_has(t, "    - AveragePooling2D: {name: average_pooling2d, pool_size: [2, 2]}\n");
    ck_assert_has(t, "dilation_rate: [2, 2], activation: elu}\n");
    ck_assert_has(t, "    - Dropout: {name: dropout, rate: 0.3, seed: 7}\n");
    ck_assert_has(t, "    - Dense: {name: dense, units: 16, activation: gelu, kernel_initializer: "
                     "{class_name: RandomNormal, config: {mean: 0.0, stddev: 0.1}}, "
                     "bias_initializer: {class_name: Constant, config: {value: 0.1}}, "
                     "trainable: false}\n");
    ck_assert_ptr_null(strstr(t, "data_format"));
    ck_assert_ptr_null(strstr(t, "GlorotUniform"));
    free(t);
    /* and reach the layers */
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_keras_config_load(fixture("every_layer_k3.json"), &cfg, &e) == KC_OK, "%s",
                  e.msg);
    const kc_model *m = cfg->model;
    ck_assert_int_eq(m->nlayers, 10);
    ck_assert_str_eq(m->layers[8]->name, "dense");
    ck_assert_int_eq(m->layers[8]->trainable, 0);
    ck_assert_int_eq(m->layers[8]->params[0].init.kind, KC_INIT_RANDOM_NORMAL);
    ck_assert_close(m->layers[8]->params[0].init.b, 0.1, 0, 0);
    ck_assert_int_eq(m->layers[8]->params[1].init.kind, KC_INIT_CONSTANT);
    ck_assert_int_eq(m->layers[1]->params[0].init.kind, KC_INIT_HE_NORMAL);
    ck_assert_int_eq(m->layers[1]->params[0].init.has_seed, 1);
    ck_assert_int_eq(m->layers[1]->nparams, 1); /* use_bias false */
    kc_config_free(cfg);
}
END_TEST

START_TEST(test_regularizers_kept) {
    char *t = convert_ok(fixture("regularized_k3.json"));
    ck_assert_has(t, "kernel_regularizer: {class_name: L1L2, config: {l1: 0.001, l2: 0.01}}");
    ck_assert_has(
        t, "kernel_constraint: {class_name: MaxNorm, config: {max_value: 2.0, axis: [0, 1, 2]}}");
    ck_assert_has(t, "bias_constraint: NonNeg");
    free(t);
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_keras_config_load(fixture("regularized_k3.json"), &cfg, &e) == KC_OK, "%s",
                  e.msg);
    const kc_layer *dense = cfg->model->layers[2];
    ck_assert_close(dense->params[0].regularizer.l2, 0.01, 0, 0);
    ck_assert_int_eq(dense->params[1].constraint.kind, KC_CONSTRAINT_NON_NEG);
    kc_config_free(cfg);
}
END_TEST

/* ------------------------------------------------------- older formats */

/* Keras 2 up to 2.12: entries without module/registered_name/build_config,
 * the input shape on the first layer, dtype strings. */
START_TEST(test_keras2_legacy_sequential) {
    static const char json[] =
        "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"sequential\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 784], "
        "\"dtype\": \"float32\", \"sparse\": false, \"ragged\": false, \"name\": \"dense_input\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"trainable\": true, "
        "\"batch_input_shape\": [null, 784], \"dtype\": \"float32\", \"units\": 32, "
        "\"activation\": \"relu\", \"use_bias\": true, \"kernel_initializer\": {\"class_name\": "
        "\"GlorotUniform\", \"config\": {\"seed\": null}}, \"bias_initializer\": {\"class_name\": "
        "\"Zeros\", \"config\": {}}, \"kernel_regularizer\": null, \"bias_regularizer\": null, "
        "\"activity_regularizer\": null, \"kernel_constraint\": null, \"bias_constraint\": null}},"
        "{\"class_name\": \"Dropout\", \"config\": {\"name\": \"dropout\", \"trainable\": true, "
        "\"dtype\": \"float32\", \"rate\": 0.2, \"noise_shape\": null, \"seed\": null}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_1\", \"trainable\": true, "
        "\"dtype\": \"float32\", \"units\": 10, \"activation\": \"softmax\"}}]}, "
        "\"keras_version\": \"2.12.0\", \"backend\": \"tensorflow\"}";
    char *t = convert_text_ok(json);
    ck_assert_str_eq(t, "model:\n"
                        "  name: sequential\n"
                        "  layers:\n"
                        "    - Input: {name: dense_input, shape: [784]}\n"
                        "    - Dense: {name: dense, units: 32, activation: relu}\n"
                        "    - Dropout: {name: dropout, rate: 0.2}\n"
                        "    - Dense: {name: dense_1, units: 10, activation: softmax}\n");
    free(t);
}
END_TEST

/* Keras 2.2: the Sequential config is the bare layer list and the first
 * layer carries the input shape. */
START_TEST(test_keras22_list_sequential) {
    static const char json[] =
        "{\"class_name\": \"Sequential\", \"config\": ["
        "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d_1\", \"trainable\": true, "
        "\"batch_input_shape\": [null, 28, 28, 1], \"dtype\": \"float32\", \"filters\": 4, "
        "\"kernel_size\": [3, 3], \"strides\": [1, 1], \"padding\": \"valid\", "
        "\"data_format\": \"channels_last\", \"dilation_rate\": [1, 1], \"activation\": "
        "\"linear\", \"use_bias\": true}},"
        "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flatten_1\", \"trainable\": true, "
        "\"data_format\": \"channels_last\"}}], \"keras_version\": \"2.2.4\", \"backend\": "
        "\"tensorflow\"}";
    char *t = convert_text_ok(json);
    ck_assert_str_eq(t, "model:\n"
                        "  name: sequential\n"
                        "  layers:\n"
                        "    - Input: {shape: [28, 28, 1]}\n"
                        "    - Conv2D: {name: conv2d_1, filters: 4, kernel_size: [3, 3]}\n"
                        "    - Flatten: {name: flatten_1}\n");
    free(t);
}
END_TEST

/* TF before 2.4 named the functional class "Model"; inbound nodes are lists
 * of [layer, node, tensor, kwargs]; Keras 3 may write outputs as a dict. */
START_TEST(test_functional_variants) {
    static const char k2[] =
        "{\"class_name\": \"Model\", \"config\": {\"name\": \"model\", \"layers\": ["
        "{\"name\": \"input_1\", \"class_name\": \"InputLayer\", \"config\": "
        "{\"batch_input_shape\": "
        "[null, 4], \"dtype\": \"float32\", \"sparse\": false, \"name\": \"input_1\"}, "
        "\"inbound_nodes\": []},"
        "{\"name\": \"a\", \"class_name\": \"Dense\", \"config\": {\"name\": \"a\", \"units\": 4}, "
        "\"inbound_nodes\": [[[\"input_1\", 0, 0, {}]]]},"
        "{\"name\": \"b\", \"class_name\": \"Dense\", \"config\": {\"name\": \"b\", \"units\": 4}, "
        "\"inbound_nodes\": [[[\"input_1\", 0, 0, {}]]]},"
        "{\"name\": \"m\", \"class_name\": \"Maximum\", \"config\": {\"name\": \"m\", "
        "\"trainable\": true, \"dtype\": \"float32\"}, \"inbound_nodes\": [[[\"a\", 0, 0, {}], "
        "[\"b\", 0, 0, {}]]]}], "
        "\"input_layers\": [[\"input_1\", 0, 0]], \"output_layers\": {\"out\": [\"m\", 0, 0], "
        "\"hidden\": [\"b\", 0, 0]}}, \"keras_version\": \"2.3.0\"}";
    char *t = convert_text_ok(k2);
    ck_assert_str_eq(t, "model:\n"
                        "  name: model\n"
                        "  outputs: [m, b]\n"
                        "  layers:\n"
                        "    - Input: {name: input_1, shape: [4]}\n"
                        "    - Dense: {name: a, units: 4}\n"
                        "    - Dense: {name: b, units: 4, inputs: input_1}\n"
                        "    - Maximum: {name: m, inputs: [a, b]}\n");
    free(t);
}
END_TEST

/* Names that YAML would read as something else are quoted. */
START_TEST(test_names_quoted) {
    static const char json[] =
        "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"yes\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 3], \"name\": "
        "\"in: put\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"10\", \"units\": 2}},"
        "{\"class_name\": \"Activation\", \"config\": {\"name\": \"null\", \"activation\": "
        "\"relu\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"q\\\"uote\", \"units\": 2}}]}}";
    char *t = convert_text_ok(json);
    ck_assert_str_eq(t, "model:\n"
                        "  name: \"yes\"\n"
                        "  layers:\n"
                        "    - Input: {name: \"in: put\", shape: [3]}\n"
                        "    - Dense: {name: \"10\", units: 2}\n"
                        "    - Activation: {name: \"null\", activation: relu}\n"
                        "    - Dense: {name: \"q\\\"uote\", units: 2}\n");
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_config_parse_text("q", ".", t, strlen(t), &cfg, &e) == KC_OK, "%s", e.msg);
    ck_assert_str_eq(cfg->model->name, "yes");
    ck_assert_str_eq(cfg->model->layers[0]->name, "10");
    ck_assert_str_eq(cfg->model->layers[1]->name, "null");
    ck_assert_str_eq(cfg->model->layers[2]->name, "q\"uote");
    kc_config_free(cfg);
    free(t);
}
END_TEST

/* ---------------------------------------------------------------- errors */

/* "file:1:COL: " where COL is where `needle` starts in the one-line JSON. */
static void expect_at(const char *msg, const char *path, const char *needle) {
    char *json = slurp(path, NULL);
    const char *at = strstr(json, needle);
    ck_assert_msg(at != NULL, "'%s' not in %s", needle, path);
    ck_assert_ptr_null(strchr(json, '\n')); /* Keras writes one line */
    char want[4400];
    snprintf(want, sizeof want, "%s:1:%d: ", path, (int)(at - json) + 1);
    free(json);
    ck_assert_msg(!strncmp(msg, want, strlen(want)), "expected '%s...', got '%s'", want, msg);
}

START_TEST(test_unsupported_layer_error) {
    const char *path = fixture("unsupported_layer_k3.json");
    kc_error e = {0};
    char *t = NULL;
    ck_assert_int_eq(kc_keras_import(path, &t, &e), KC_ECONFIG);
    expect_at(e.msg, path, "\"Conv3D\"");
    ck_assert_has(e.msg,
                  "layer 'conv3d' (Conv3D): kerasc does not support the layer class 'Conv3D'");
    ck_assert_has(e.msg, "Conv2D");
}
END_TEST

START_TEST(test_unsupported_settings_errors) {
    kc_error e = {0};
    char *t = NULL;
    const char *cf = fixture("channels_first_k3.json");
    ck_assert_int_eq(kc_keras_import(cf, &t, &e), KC_ECONFIG);
    expect_at(e.msg, cf, "\"channels_first\"");
    ck_assert_has(e.msg, "layer 'conv2d' (Conv2D): ");
    ck_assert_has(e.msg, "channels_first");
    /* grouped convolution converts, groups kept */
    const char *gc = fixture("grouped_conv_k3.json");
    ck_assert_int_eq(kc_keras_import(gc, &t, &e), KC_OK);
    ck_assert_has(t, "groups: 2");
    free(t);
}
END_TEST

START_TEST(test_malformed_json_error) {
    kc_error e =
        convert_text_err("{\n  \"class_name\": \"Sequential\",\n  \"config\": {\"layers\": [}\n}");
    ck_assert_msg(!strncmp(e.msg, "inline.json:3:25: ", 18), "%s", e.msg);
    e = convert_text_err("{\"class_name\": \"Sequential\", \"config\": {\"layers\": [");
    ck_assert_msg(!strncmp(e.msg, "inline.json:1:", 14), "%s", e.msg);
    /* from a file: the path leads */
    char *dir = kc_test_tmpdir(), path[4300];
    snprintf(path, sizeof path, "%s/bad.json", dir);
    spill(path, "{\"class_name\": \"Sequential\",\n \"config\": nul}", 44);
    char *t = NULL;
    ck_assert_int_eq(kc_keras_import(path, &t, &e), KC_ECONFIG);
    char want[4400];
    snprintf(want, sizeof want, "%s:2:12: ", path);
    ck_assert_msg(!strncmp(e.msg, want, strlen(want)), "%s", e.msg);
    kc_test_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_model_errors) {
    /* each refusal names where, and the layer when there is one */
    kc_error e = convert_text_err(
        "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": "
        "\"InputLayer\", "
        "\"config\": {\"batch_shape\": [32, 4], \"name\": \"x\"}}, {\"class_name\": \"Dense\", "
        "\"config\": {\"name\": \"d\", \"units\": 1}}]}}");
    ck_assert_has(e.msg, "inline.json:1:108: layer 'x' (InputLayer): a fixed batch size (32)");
    e = convert_text_err(
        "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": "
        "\"InputLayer\", \"config\": {\"batch_shape\": [null, null, 3], \"name\": "
        "\"x\"}}]}}");
    ck_assert_has(e.msg, "inline.json:1:114: layer 'x' (InputLayer): input dimension 1 is None");
    e = convert_text_err(
        "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": "
        "\"Dense\", \"config\": {\"name\": \"d\", \"units\": 1}}]}}");
    ck_assert_has(e.msg, "the model has no input shape");
    e = convert_text_err(
        "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": "
        "\"InputLayer\", "
        "\"config\": {\"batch_shape\": [null, 4], \"name\": \"x\"}}, {\"class_name\": \"Dense\", "
        "\"config\": {\"name\": \"d\", \"units\": 0}}]}}");
    ck_assert_has(e.msg, "inline.json:1:190: layer 'd' (Dense): ");
    ck_assert_has(e.msg, "units");
    e = convert_text_err(
        "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": "
        "\"InputLayer\", "
        "\"config\": {\"batch_shape\": [null, 4], \"name\": \"x\"}}, {\"class_name\": \"Dense\", "
        "\"config\": {\"name\": \"d\", \"units\": 2, \"lora_rank\": 4}}]}}");
    ck_assert_has(e.msg, "layer 'd' (Dense): ");
    ck_assert_has(e.msg, "lora_rank");
    e = convert_text_err("{\"class_name\": \"MyModel\", \"config\": {}}");
    ck_assert_has(e.msg, "inline.json:1:16: a model of class 'MyModel' cannot be read");

    static const char graph_head[] =
        "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
        "{\"name\": \"i\", \"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, "
        "4], "
        "\"name\": \"i\"}, \"inbound_nodes\": []},";
    char json[2000];
    snprintf(json, sizeof json,
             "%s{\"name\": \"s\", \"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", "
             "\"layers\": []}, \"inbound_nodes\": [[[\"i\", 0, 0, {}]]]}], \"input_layers\": "
             "[[\"i\", 0, 0]], \"output_layers\": [[\"s\", 0, 0]]}}",
             graph_head);
    e = convert_text_err(json);
    ck_assert_has(e.msg, "layer 's' (Sequential): a model nested inside a model is not supported");
    snprintf(json, sizeof json,
             "%s{\"name\": \"a\", \"class_name\": \"Subtract\", \"config\": {\"name\": \"a\"}, "
             "\"inbound_nodes\": [[[\"i\", 0, 0, {}]]]}], \"input_layers\": [[\"i\", 0, 0]], "
             "\"output_layers\": [[\"a\", 0, 0]]}}",
             graph_head);
    e = convert_text_err(json);
    ck_assert_has(e.msg, "layer 'a' (Subtract): is called with 1 input; it takes exactly 2");
    snprintf(
        json, sizeof json,
        "%s{\"name\": \"d\", \"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": "
        "4}, \"inbound_nodes\": [[[\"zz\", 0, 0, {}]]]}], \"input_layers\": [[\"i\", 0, 0]], "
        "\"output_layers\": [[\"d\", 0, 0]]}}",
        graph_head);
    e = convert_text_err(json);
    ck_assert_has(e.msg, "layer 'd' (Dense): refers to a layer 'zz' that the model does not have");
    snprintf(
        json, sizeof json,
        "%s{\"name\": \"d\", \"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": "
        "4}, \"inbound_nodes\": [[[\"d\", 1, 0, {}]], [[\"d\", 0, 0, {}]]]}], \"input_layers\": "
        "[[\"i\", 0, 0]], \"output_layers\": [[\"d\", 0, 0]]}}",
        graph_head);
    e = convert_text_err(json);
    ck_assert_has(e.msg, "layer 'd' (Dense): its inputs form a cycle");
    static const char dropout_k3[] =
        "%s{\"name\": \"d\", \"class_name\": \"Dropout\", \"config\": {\"name\": \"d\", \"rate\": "
        "0.5}, \"inbound_nodes\": [{\"args\": [{\"class_name\": \"__keras_tensor__\", "
        "\"config\": {\"shape\": [null, 4], \"dtype\": \"float32\", \"keras_history\": "
        "[\"i\", 0, 0]}}], \"kwargs\": {%s}}]}], \"input_layers\": "
        "[\"i\", 0, 0], \"output_layers\": [\"d\", 0, 0]}}";
    snprintf(json, sizeof json, dropout_k3, graph_head, "\"seed\": 3");
    e = convert_text_err(json);
    ck_assert_has(e.msg, "layer 'd' (Dropout): the call argument 'seed' is not supported");
    /* Keras 3's model call sets training itself: a recorded flag converts,
     * as does a null keyword */
    const char *kws[] = {"\"training\": true", "\"seed\": null"};
    for (int i = 0; i < 2; i++) {
        snprintf(json, sizeof json, dropout_k3, graph_head, kws[i]);
        char *t = convert_text_ok(json);
        ck_assert_has(t, "    - Dropout: {name: d, rate: 0.5}\n");
        free(t);
    }
    /* Keras 2 keeps a recorded training flag over the model's: refused */
    snprintf(json, sizeof json,
             "%s{\"name\": \"d\", \"class_name\": \"Dropout\", \"config\": {\"name\": \"d\", "
             "\"rate\": 0.5}, \"inbound_nodes\": [[[\"i\", 0, 0, {\"training\": true}]]]}], "
             "\"input_layers\": [[\"i\", 0, 0]], \"output_layers\": [[\"d\", 0, 0]]}}",
             graph_head);
    e = convert_text_err(json);
    ck_assert_has(e.msg, "layer 'd' (Dropout): the call argument 'training' is not supported");
}
END_TEST

/* A .keras archive that is damaged or holds no model is refused cleanly. */
START_TEST(test_keras_archive_errors) {
    size_t len;
    char *zip = slurp(fixture("small_cnn_k3.keras"), &len);
    char *dir = kc_test_tmpdir(), path[4300];
    snprintf(path, sizeof path, "%s/cut.keras", dir);
    spill(path, zip, len / 2);
    kc_error e = {0};
    char *t = NULL;
    ck_assert_int_eq(kc_keras_import(path, &t, &e), KC_ERUNTIME);
    ck_assert_has(e.msg, "cut.keras");
    /* one byte of config.json changed: the CRC catches it */
    char *name0 = memmem(zip, len, "config.json", 11);
    ck_assert_ptr_nonnull(name0);
    const unsigned char *lh = (const unsigned char *)name0 - 30;
    ck_assert_int_eq(memcmp(lh, "PK\3\4", 4), 0);
    char *data = name0 + 11 + (lh[28] | lh[29] << 8);
    data[40] ^= 0x01;
    snprintf(path, sizeof path, "%s/flipped.keras", dir);
    spill(path, zip, len);
    ck_assert_int_eq(kc_keras_import(path, &t, &e), KC_ERUNTIME);
    ck_assert_has(e.msg, "flipped.keras (member config.json): CRC mismatch");
    data[40] ^= 0x01;
    /* a member renamed away: no config.json */
    char *name = memmem(zip, len, "config.json", 11);
    ck_assert_ptr_nonnull(name);
    for (char *p = zip; (p = memmem(p, len - (size_t)(p - zip), "config.json", 11)); p++)
        p[0] = 'k';
    snprintf(path, sizeof path, "%s/renamed.keras", dir);
    spill(path, zip, len);
    ck_assert_int_eq(kc_keras_import(path, &t, &e), KC_ECONFIG);
    ck_assert_has(e.msg, "renamed.keras: not a .keras model archive: it has no config.json");
    kc_test_rmdir(dir);
    free(dir);
    free(zip);
}
END_TEST

/* ------------------------------------------------- YAML model: path hook */

START_TEST(test_model_path_in_yaml) {
    char yaml[5000];
    snprintf(yaml, sizeof yaml, "model: %s\ncompile: {loss: mse}\n", fixture("small_cnn_k3.keras"));
    kc_doc *doc = NULL;
    kc_error e = {0};
    ck_assert_int_eq(kc_doc_parse(&doc, "settings.yaml", yaml, strlen(yaml), &e), KC_OK);
    kc_doc *mdoc = NULL;
    kc_node *model = NULL;
    ck_assert_msg(kc_keras_model_node(kc_map_get(doc->root, "model"), "/nonexistent", &mdoc, &model,
                                      &e) == KC_OK,
                  "%s", e.msg);
    kc_model *m = NULL;
    ck_assert_msg(kc_model_parse(model, NULL, &m, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(m->nlayers, 5);
    ck_assert_int_eq(kc_model_param_count(m, 0), 235);
    kc_model_free(m);
    kc_doc_free(mdoc);
    kc_doc_free(doc);

    /* relative to the settings file's directory */
    ck_assert_int_eq(kc_doc_parse(&doc, "settings.yaml", "model: small_cnn_k3.json\n", 25, &e),
                     KC_OK);
    char base[4200];
    snprintf(base, sizeof base, "%s", fixture(""));
    ck_assert_msg(kc_keras_model_node(kc_map_get(doc->root, "model"), base, &mdoc, &model, &e) ==
                      KC_OK,
                  "%s", e.msg);
    ck_assert_has(mdoc->file, "small_cnn_k3.json (converted)");
    kc_doc_free(mdoc);
    kc_doc_free(doc);

    /* errors point at the YAML value */
    ck_assert_int_eq(kc_doc_parse(&doc, "settings.yaml", "model: model.h5\n", 16, &e), KC_OK);
    ck_assert_int_eq(kc_keras_model_node(kc_map_get(doc->root, "model"), ".", &mdoc, &model, &e),
                     KC_ECONFIG);
    ck_assert_has(e.msg, "settings.yaml:1:8: model: expected a mapping with `layers:`, or the path "
                         "of a Keras model file (.json or .keras), got 'model.h5'");
    kc_doc_free(doc);
    ck_assert_int_eq(kc_doc_parse(&doc, "settings.yaml", "model: missing.json\n", 20, &e), KC_OK);
    ck_assert_int_ne(
        kc_keras_model_node(kc_map_get(doc->root, "model"), "/nowhere", &mdoc, &model, &e), KC_OK);
    ck_assert_has(e.msg, "settings.yaml:1:8: cannot read the Keras model: /nowhere/missing.json");
    ck_assert_ptr_null(mdoc);
    kc_doc_free(doc);
}
END_TEST

/* ----------------------------------------------------------- kerasc CLI */

static int run_cli(const char *args, char *out, size_t cap, char *err, size_t ecap) {
    const char *kerasc = getenv("KERASC");
    ck_assert_msg(kerasc && *kerasc, "set KERASC to the kerasc binary");
    char *dir = kc_test_tmpdir();
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s/o' 2>'%s/e'", kerasc, args, dir, dir);
    int st = system(cmd);
    char p[4300];
    snprintf(p, sizeof p, "%s/o", dir);
    char *o = slurp(p, NULL);
    snprintf(p, sizeof p, "%s/e", dir);
    char *er = slurp(p, NULL);
    snprintf(out, cap, "%s", o);
    snprintf(err, ecap, "%s", er);
    free(o);
    free(er);
    kc_test_rmdir(dir);
    free(dir);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

START_TEST(test_cli_convert) {
    static char out[1 << 16], err[1 << 14];
    char *dir = kc_test_tmpdir(), args[9000], path[4300];
    snprintf(path, sizeof path, "%s/model.yaml", dir);
    snprintf(args, sizeof args, "convert '%s' -o '%s'", fixture("cnn_sequential_k3.json"), path);
    ck_assert_msg(run_cli(args, out, sizeof out, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(out, "");
    char *file = slurp(path, NULL);
    ck_assert_msg(!strncmp(file,
                           "# The Keras 3 Sequential model in cnn_sequential_k3.json, as a "
                           "kerasc model file.\n",
                           74),
                  "%s", file);
    char *section = convert_ok(fixture("cnn_sequential_k3.json"));
    ck_assert_has(file, section);
    ck_assert_has(file, "\n# compile:\n#   optimizer: adam\n");
    ck_assert_has(file, "#   reshape: [28, 28, 1]\n");
    /* the written file is a model file kerasc loads, and nothing else was left beside it */
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_config_load(path, &cfg, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(kc_model_param_count(cfg->model, 0), 121930);
    kc_config_free(cfg);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "test \"$(ls '%s' | wc -l)\" = 1", dir);
    ck_assert_int_eq(system(cmd), 0);

    /* - and no -o: standard output, the same text */
    snprintf(args, sizeof args, "convert '%s' -o -", fixture("cnn_sequential_k3.json"));
    ck_assert_int_eq(run_cli(args, out, sizeof out, err, sizeof err), 0);
    ck_assert_str_eq(out, file);
    snprintf(args, sizeof args, "convert '%s'", fixture("two_in_two_out_k3.json"));
    ck_assert_int_eq(run_cli(args, out, sizeof out, err, sizeof err), 0);
    ck_assert_has(out, "#   loss: {class: sparse_categorical_crossentropy, recon: "
                       "sparse_categorical_crossentropy}\n");
    ck_assert_has(out, "#   inputs: {image: x, features: x}\n#   targets: {class: y, recon: y}\n"
                       "#   reshape: {image: [28, 28, 1], features: [784]}\n");
    free(file);
    free(section);

    /* refusals: exit 2 with the JSON position, and no file written */
    snprintf(path, sizeof path, "%s/refused.yaml", dir);
    snprintf(args, sizeof args, "convert '%s' -o '%s'", fixture("unsupported_layer_k3.json"), path);
    ck_assert_int_eq(run_cli(args, out, sizeof out, err, sizeof err), 2);
    ck_assert_has(err, "kerasc convert: ");
    ck_assert_has(err, "unsupported_layer_k3.json:1:");
    ck_assert_has(err, "(Conv3D)");
    struct stat st;
    ck_assert_int_ne(stat(path, &st), 0);
    ck_assert_int_eq(run_cli("convert", out, sizeof out, err, sizeof err), 2);
    snprintf(args, sizeof args, "convert '%s' -o /nonexistent-dir/m.yaml",
             fixture("cnn_sequential_k3.json"));
    ck_assert_int_eq(run_cli(args, out, sizeof out, err, sizeof err), 1);
    ck_assert_has(err, "/nonexistent-dir/m.yaml");
    /* a kerasc model file written as JSON is still a kerasc model file */
    snprintf(path, sizeof path, "%s/plain.json", dir);
    static const char plain[] = "{\"model\": {\"name\": \"plain\", \"layers\": [{\"Input\": "
                                "{\"shape\": [3]}}, {\"Dense\": {\"units\": 2}}]}}";
    spill(path, plain, strlen(plain));
    snprintf(args, sizeof args, "summary '%s'", path);
    ck_assert_msg(run_cli(args, out, sizeof out, err, sizeof err) == 0, "%s", err);
    ck_assert_has(out, "Model: \"plain\"");
    ck_assert_has(out, " Total params: 8 (32.00 B)");
    /* summary of a refused model: a config error */
    snprintf(args, sizeof args, "summary '%s'", fixture("channels_first_k3.json"));
    ck_assert_int_eq(run_cli(args, out, sizeof out, err, sizeof err), 2);
    ck_assert_has(err, "channels_first_k3.json:1:");
    kc_test_rmdir(dir);
    free(dir);
}
END_TEST

/* A converted .keras model with compile, data and fit sections added trains
 * from the command line. */
START_TEST(test_cli_train_converted) {
    static char out[1 << 16], err[1 << 14];
    char *dir = kc_test_tmpdir(), path[4300], args[9000];
    enum { N = 48 };
    float *x = calloc(N * 64, sizeof *x), y[N];
    for (int i = 0; i < N; i++) {
        y[i] = (float)(i % 3);
        for (int k = 0; k < 64; k++)
            x[i * 64 + k] = kc_rng_uniform(7, 1, (uint64_t)(i * 64 + k));
        x[i * 64 + (i % 3) * 20] += 4.0f; /* a class-dependent bright pixel */
    }
    kc_error e = {0};
    kc_shape sx = kc_shape4(N, 8, 8, 1), sy = kc_shape1(N);
    snprintf(path, sizeof path, "%s/x.npy", dir);
    ck_assert_int_eq(kc_npy_write(path, x, &sx, &e), KC_OK);
    snprintf(path, sizeof path, "%s/y.npy", dir);
    ck_assert_int_eq(kc_npy_write(path, y, &sy, &e), KC_OK);
    free(x);
    char *model = convert_ok(fixture("small_cnn_k3.keras"));
    kc_strbuf b = {0};
    kc_strbuf_printf(&b,
                     "%scompile: {optimizer: adam, loss: sparse_categorical_crossentropy, "
                     "metrics: [accuracy]}\ndata: {train: {x: x.npy, y: y.npy}}\n"
                     "fit: {epochs: 2, batch_size: 16, seed: 3, verbose: 2}\n",
                     model);
    free(model);
    snprintf(path, sizeof path, "%s/small.yaml", dir);
    spill(path, kc_strbuf_str(&b), b.len);
    kc_strbuf_free(&b);
    snprintf(args, sizeof args, "train '%s' --output '%s/run'", path, dir);
    ck_assert_msg(run_cli(args, out, sizeof out, err, sizeof err) == 0, "%s%s", out, err);
    ck_assert_has(out, "Epoch 2/2");
    snprintf(path, sizeof path, "%s/run/last.safetensors", dir);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    kc_test_rmdir(dir);
    free(dir);
}
END_TEST

/* "25,636,712": Keras's thousands separators. */
static void with_commas(long long v, char *buf, size_t n) {
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", v), o = 0;
    for (int i = 0; i < len && (size_t)o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
}

/* Keras Applications as Keras 3 writes them (applications/, made by
 * make_applications.py): every one converts, and the summary counts Keras's
 * parameters, the non-trainable BatchNormalization statistics included. */
START_TEST(test_applications_import) {
    static char out[1 << 20], err[1 << 14];
    FILE *counts = fopen(fixture("applications/counts.txt"), "r");
    ck_assert_ptr_nonnull(counts);
    char *dir = kc_test_tmpdir(), name[64], json[4300], args[9000], want[64], line[128];
    long long total, frozen;
    int models = 0;
    while (fscanf(counts, "%63s %lld %lld", name, &total, &frozen) == 3) {
        snprintf(args, sizeof args, "applications/%s.json.gz", name);
        gzFile gz = gzopen(fixture(args), "rb");
        ck_assert_msg(gz != NULL, "%s", args);
        snprintf(json, sizeof json, "%s/%s.json", dir, name);
        FILE *f = fopen(json, "wb");
        ck_assert_ptr_nonnull(f);
        char buf[1 << 14];
        int got;
        while ((got = gzread(gz, buf, sizeof buf)) > 0)
            ck_assert_uint_eq(fwrite(buf, 1, (size_t)got, f), (size_t)got);
        ck_assert_int_eq(got, 0);
        gzclose(gz);
        ck_assert_int_eq(fclose(f), 0);
        snprintf(args, sizeof args, "summary '%s'", json);
        ck_assert_msg(run_cli(args, out, sizeof out, err, sizeof err) == 0, "%s: %s", name, err);
        with_commas(total, want, sizeof want);
        snprintf(line, sizeof line, "Total params: %s ", want);
        ck_assert_msg(strstr(out, line), "%s: no '%s' in the summary", name, line);
        with_commas(frozen, want, sizeof want);
        snprintf(line, sizeof line, "Non-trainable params: %s ", want);
        ck_assert_msg(strstr(out, line), "%s: no '%s' in the summary", name, line);
        models++;
    }
    fclose(counts);
    ck_assert_int_eq(models, 6);
    kc_test_rmdir(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------ sequence models */

/* The classes a sequence fixture needs, so its checks wait for them. */
static int classes_present(const char *model) {
    static const char *const need[][3] = {{"seq2seq", "LSTM", NULL},
                                          {"masked_functional", "LSTM", "GRU"},
                                          {"masked_lstm", "LSTM", NULL},
                                          {"gru_stack", "GRU", "SimpleRNN"},
                                          {"bidirectional", "Bidirectional", "LSTM"},
                                          {"time_distributed", "TimeDistributed", "GRU"}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (strcmp(need[i][0], model)) continue;
        for (int k = 1; k < 3; k++)
            if (need[i][k] && !kc_layer_class_find(need[i][k])) return 0;
    }
    return 1;
}

/* Sequence models as Keras 3 writes them (sequence/, made by
 * make_sequence.py) convert, load, and count Keras's parameters in
 * `kerasc summary`. */
START_TEST(test_sequence_models_import) {
    static char out[1 << 16], err[1 << 14];
    FILE *counts = fopen(fixture("sequence/counts.txt"), "r");
    ck_assert_ptr_nonnull(counts);
    char name[64], rel[128], args[9000], want[64], line[128];
    long long total, frozen;
    int models = 0, ran = 0;
    while (fscanf(counts, "%63s %lld %lld", name, &total, &frozen) == 3) {
        models++;
        if (!classes_present(name)) continue;
        snprintf(rel, sizeof rel, "sequence/%s.json", name);
        char *text = convert_ok(fixture(rel));
        kc_config *cfg = NULL;
        kc_error e = {0};
        ck_assert_msg(kc_config_parse_text("converted", ".", text, strlen(text), &cfg, &e) == 0,
                      "%s: %s\n%s", name, e.msg, text);
        ck_assert_int_eq(kc_model_param_count(cfg->model, 0), total);
        kc_config_free(cfg);
        free(text);
        snprintf(args, sizeof args, "summary '%s'", fixture(rel));
        ck_assert_msg(run_cli(args, out, sizeof out, err, sizeof err) == 0, "%s: %s", name, err);
        with_commas(total, want, sizeof want);
        snprintf(line, sizeof line, "Total params: %s ", want);
        ck_assert_msg(strstr(out, line), "%s: no '%s' in:\n%s", name, line, out);
        with_commas(frozen, want, sizeof want);
        snprintf(line, sizeof line, "Non-trainable params: %s ", want);
        ck_assert_msg(strstr(out, line), "%s: no '%s' in:\n%s", name, line, out);
        ran++;
    }
    fclose(counts);
    ck_assert_int_eq(models, 7);
    ck_assert_int_ge(ran, 4); /* a fixture waits only for a class kerasc lacks */
}
END_TEST

/* Keras's defaults of the sequence layers are left out, the decoder's
 * initial_state becomes inputs of its call and the encoder's states are
 * referenced as enc[0][1], enc[0][2]; the masks Keras 3 records as NotEqual
 * operations leave no trace. */
START_TEST(test_sequence_yaml_clean) {
    static const char *const expect[][2] = {
        {"seq2seq", "    - LSTM: {name: enc, return_state: true, units: 16, inputs: enc_in}\n"},
        {"seq2seq", "    - LSTM: {name: dec, return_sequences: true, units: 16, inputs: [dec_in, "
                    "\"enc[0][1]\", \"enc[0][2]\"]}\n"},
        {"conv1d_text", "    - Embedding: {name: embedding, input_dim: 100, output_dim: 16}\n"
                        "    - Conv1D: {name: conv1d, filters: 32, kernel_size: [5], activation: "
                        "relu}\n"
                        "    - MaxPooling1D: {name: max_pooling1d}\n"
                        "    - Conv1D: {name: conv1d_1, filters: 32, kernel_size: [3], padding: "
                        "same, activation: relu}\n"
                        "    - AveragePooling1D: {name: average_pooling1d, pool_size: [2]}\n"
                        "    - ZeroPadding1D: {name: zero_padding1d}\n"
                        "    - Cropping1D: {name: cropping1d}\n"
                        "    - UpSampling1D: {name: up_sampling1d}\n"
                        "    - GlobalMaxPooling1D: {name: global_max_pooling1d}\n"},
        {"gru_stack", "    - GRU: {name: gru, return_sequences: true, units: 10}\n"
                      "    - SimpleRNN: {name: rnn, units: 7}\n"},
        {"masked_lstm", "    - Embedding: {name: embedding, input_dim: 50, output_dim: 8, "
                        "mask_zero: true}\n    - LSTM: {name: lstm, units: 12}\n"},
        {"masked_functional", "    - Embedding: {name: emb, input_dim: 20, output_dim: 4, "
                              "mask_zero: true}\n"
                              "    - LSTM: {name: l1, return_sequences: true, units: 5}\n"
                              "    - Dense: {name: mid, units: 5}\n"
                              "    - GRU: {name: l2, units: 3}\n"},
        {"bidirectional", "    - Bidirectional: {name: bidirectional, layer: {class_name: LSTM, "
                          "config: {name: forward_lstm, units: 5}}}\n"},
        {"time_distributed", "    - TimeDistributed: {name: time_distributed, layer: {class_name: "
                             "Dense, config: {name: dense, units: 3, activation: relu}}}\n"},
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "sequence/%s.json", expect[i][0]);
        char *text = convert_ok(fixture(rel));
        ck_assert_has(text, expect[i][1]);
        ck_assert_msg(!strstr(text, "not_equal") && !strstr(text, "merge_mode") &&
                          !strstr(text, "data_format"),
                      "%s", text);
        free(text);
    }
    /* a backward layer that is not the forward one reversed is kept */
    if (!kc_layer_class_find("Bidirectional")) return;
    size_t len;
    char *json = slurp(fixture("sequence/bidirectional.json"), &len);
    char *second = strstr(strstr(json, "\"activation\": \"tanh\"") + 1, "\"activation\": \"tanh\"");
    ck_assert_ptr_nonnull(second);
    memcpy(second, "\"activation\": \"relu\"", 20);
    char *text = convert_text_ok(json);
    ck_assert_has(text, "backward_layer: {class_name: LSTM, config: {name: backward_lstm, "
                        "go_backwards: true, units: 5, activation: relu}}}\n");
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_config_parse_text("converted", ".", text, strlen(text), &cfg, &e) == 0,
                  "%s\n%s", e.msg, text);
    ck_assert_int_eq(kc_model_param_count(cfg->model, 0), 682);
    kc_config_free(cfg);
    free(text);
    free(json);
}
END_TEST

#define K3T(name, t)                                                                               \
    "{\"class_name\": \"__keras_tensor__\", \"config\": {\"keras_history\": [\"" name "\", 0, " #t \
    "]}}"

/* ids -> Embedding(mask_zero) -> `mid` -> LSTM given mask=ne, where ne is
 * NotEqual(ne_arg, zero). */
static void mask_graph(char *json, size_t n, const char *mid, const char *ne_arg,
                       const char *zero) {
    snprintf(
        json, n,
        "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
        "{\"name\": \"ids\", \"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": "
        "[null, 6], \"name\": \"ids\"}, \"inbound_nodes\": []}, "
        "{\"name\": \"emb\", \"class_name\": \"Embedding\", \"config\": {\"name\": \"emb\", "
        "\"input_dim\": 20, \"output_dim\": 4, \"mask_zero\": true}, \"inbound_nodes\": "
        "[{\"args\": [" K3T(
            "ids",
            0) "], \"kwargs\": {}}]}, "
               "{\"name\": \"ne\", \"class_name\": \"NotEqual\", \"config\": {\"name\": \"ne\"}, "
               "\"inbound_nodes\": [{\"args\": [{\"class_name\": \"__keras_tensor__\", \"config\": "
               "{\"keras_history\": [\"%s\", 0, 0]}}, %s], \"kwargs\": {}}]}, "
               "{\"name\": \"mid\", \"class_name\": %s, \"inbound_nodes\": [{\"args\": "
               "[" K3T("emb", 0) "], \"kwargs\": {}}]}, "
                                 "{\"name\": \"l\", \"class_name\": \"LSTM\", \"config\": "
                                 "{\"name\": \"l\", \"units\": "
                                 "3}, \"inbound_nodes\": [{\"args\": [" K3T(
                                     "mid", 0) "], \"kwargs\": {\"training\": "
                                               "false, \"mask\": " K3T(
                                                   "ne", 0) "}}]}], "
                                                            "\"input_layers\": [[\"ids\", 0, 0]], "
                                                            "\"output_layers\": [[\"l\", 0, 0]]}}",
        ne_arg, zero, mid);
}

/* A call's `mask` is accepted when it is the mask the graph carries to it
 * anyway, and refused otherwise, naming the call. */
START_TEST(test_call_masks) {
    if (!kc_layer_class_find("LSTM")) return;
    static const char dense[] = "\"Dense\", \"config\": {\"name\": \"mid\", \"units\": 5}",
                      conv[] = "\"Conv1D\", \"config\": {\"name\": \"mid\", \"filters\": 5, "
                               "\"kernel_size\": 1}";
    char json[4096];
    mask_graph(json, sizeof json, dense, "ids", "0");
    char *t = convert_text_ok(json);
    ck_assert_has(t, "    - Dense: {name: mid, units: 5}\n    - LSTM: {name: l, units: 3}\n");
    ck_assert_msg(!strstr(t, "name: ne"), "%s", t);
    free(t);
    mask_graph(json, sizeof json, conv, "ids", "0");
    kc_error e = convert_text_err(json);
    ck_assert_has(e.msg, "layer 'l' (LSTM): is given the mask 'ne' (ids != 0), but its input "
                         "'mid' carries no mask in kerasc");
    mask_graph(json, sizeof json, dense, "ids", "5");
    e = convert_text_err(json);
    ck_assert_has(e.msg, "layer 'l' (LSTM): is given the mask 'ne' (NotEqual), which kerasc "
                         "cannot compute");
    mask_graph(json, sizeof json, dense, "mid", "0");
    e = convert_text_err(json);
    ck_assert_has(e.msg, "is given the mask 'ne' (mid != 0), but its input 'mid' carries the mask "
                         "of 'ids' != 0");
    ck_assert_has(e.msg, "inline.json:1:");
    /* an operation's output as a layer's input is refused */
    char *at = strstr(json, "\"args\": [" K3T("mid", 0) "], \"kwargs\": {\"training\"");
    ck_assert_ptr_nonnull(at);
    memcpy(at + strlen("\"args\": [{\"class_name\": \"__keras_tensor__\", \"config\": "
                       "{\"keras_history\": [\""),
           "ne\", 0, 0]} ", 12);
    e = convert_text_err(json);
    ck_assert_has(e.msg, "layer 'l' (LSTM): takes the output of 'ne' (NotEqual), an operation "
                         "kerasc does not support");
}
END_TEST

/* Keras 2's call keywords: initial_state tensors become inputs of the
 * call; tensors other than 0 of a call are references such as enc[0][2],
 * as inputs and as model outputs. */
START_TEST(test_initial_state_keras2) {
    if (!kc_layer_class_find("LSTM")) return;
    static const char k2[] =
        "{\"class_name\": \"Functional\", \"config\": {\"name\": \"s2s\", \"layers\": ["
        "{\"name\": \"enc_in\", \"class_name\": \"InputLayer\", \"config\": "
        "{\"batch_input_shape\": [null, 10, 8], \"dtype\": \"float32\", \"name\": \"enc_in\"}, "
        "\"inbound_nodes\": []}, "
        "{\"name\": \"dec_in\", \"class_name\": \"InputLayer\", \"config\": "
        "{\"batch_input_shape\": [null, 12, 8], \"dtype\": \"float32\", \"name\": \"dec_in\"}, "
        "\"inbound_nodes\": []}, "
        "{\"name\": \"enc\", \"class_name\": \"LSTM\", \"config\": {\"name\": \"enc\", "
        "\"units\": 16, \"return_state\": true}, \"inbound_nodes\": [[[\"enc_in\", 0, 0, {}]]]}, "
        "{\"name\": \"dec\", \"class_name\": \"LSTM\", \"config\": {\"name\": \"dec\", "
        "\"units\": 16, \"return_sequences\": true}, \"inbound_nodes\": [[[\"dec_in\", 0, 0, "
        "{\"initial_state\": [[\"enc\", 0, 1], [\"enc\", 0, 2]]}]]]}, "
        "{\"name\": \"out\", \"class_name\": \"Dense\", \"config\": {\"name\": \"out\", "
        "\"units\": 8}, \"inbound_nodes\": [[[\"dec\", 0, 0, {}]]]}], "
        "\"input_layers\": [[\"enc_in\", 0, 0], [\"dec_in\", 0, 0]], "
        "\"output_layers\": [[\"out\", 0, 0], [\"enc\", 0, 2]]}, \"keras_version\": \"2.15.0\"}";
    char *t = convert_text_ok(k2);
    ck_assert_has(t, "  outputs: [out, \"enc[0][2]\"]\n");
    ck_assert_has(t, "    - LSTM: {name: dec, units: 16, return_sequences: true, inputs: [dec_in, "
                     "\"enc[0][1]\", \"enc[0][2]\"]}\n");
    kc_config *cfg = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_config_parse_text("converted", ".", t, strlen(t), &cfg, &e) == 0, "%s\n%s",
                  e.msg, t);
    ck_assert_int_eq(kc_model_param_count(cfg->model, 0), 3336); /* Keras's count */
    ck_assert_int_eq(cfg->model->noutputs, 2);
    ck_assert_str_eq(cfg->model->outputs[1].name, "enc"); /* named after its layer */
    ck_assert_int_eq(cfg->model->outputs[1].tensor, 2);
    kc_config_free(cfg);
    free(t);
    /* a tensor index no layer has */
    char bad[sizeof k2];
    memcpy(bad, k2, sizeof k2);
    memcpy(strstr(bad, "[\"enc\", 0, 2]]}"), "[\"enc\", 0, 9]", 13);
    e = convert_text_err(bad);
    ck_assert_has(e.msg, "layer 'dec' (LSTM): takes tensor 9 of layer 'enc'; kerasc layers "
                         "return at most 8");
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("keras_import");
    TCase *tc = tcase_create("fixtures");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_fixture_converts, 0, NCASES);
    tcase_add_loop_test(tc, test_sequential_model_matches_keras, 0, NCASES);
    tcase_add_loop_test(tc, test_cli_summary_matches_keras, 0, NCASES);
    tcase_add_test(tc, test_seed_cnn_yaml);
    tcase_add_test(tc, test_shared_layer_yaml);
    tcase_add_test(tc, test_two_inputs_two_outputs_yaml);
    tcase_add_test(tc, test_arguments_kept);
    tcase_add_test(tc, test_regularizers_kept);
    suite_add_tcase(s, tc);
    TCase *fm = tcase_create("formats");
    tcase_add_test(fm, test_keras2_legacy_sequential);
    tcase_add_test(fm, test_keras22_list_sequential);
    tcase_add_test(fm, test_functional_variants);
    tcase_add_test(fm, test_names_quoted);
    tcase_add_test(fm, test_sequence_yaml_clean);
    tcase_add_test(fm, test_call_masks);
    tcase_add_test(fm, test_initial_state_keras2);
    suite_add_tcase(s, fm);
    TCase *er = tcase_create("errors");
    tcase_add_test(er, test_unsupported_layer_error);
    tcase_add_test(er, test_unsupported_settings_errors);
    tcase_add_test(er, test_malformed_json_error);
    tcase_add_test(er, test_model_errors);
    tcase_add_test(er, test_keras_archive_errors);
    suite_add_tcase(s, er);
    TCase *cl = tcase_create("cli");
    tcase_set_timeout(cl, 120);
    tcase_add_test(cl, test_model_path_in_yaml);
    tcase_add_test(cl, test_cli_convert);
    tcase_add_test(cl, test_cli_train_converted);
    tcase_add_test(cl, test_applications_import);
    tcase_add_test(cl, test_sequence_models_import);
    suite_add_tcase(s, cl);
    return s;
}

int main(void) {
    return kc_test_run(suite());
}
