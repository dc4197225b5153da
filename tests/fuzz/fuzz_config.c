/* Model files: the YAML parser, the whole config (model, compile, data and
 * fit sections) as `kerasc summary` loads it, the summary's figures, and a
 * session planned on the cpu backend with one batch through the model (see
 * fuzz_model.h). Relative paths resolve in a private directory that holds
 * small x.npy, y.npy and model.json files, so `model: model.json` and data
 * paths lead somewhere. */
#include "tests/fuzz/fuzz_model.h"

#include "models/config.h"

static const char keras_model[] =
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"seq\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 4]}},"
    "{\"class_name\": \"Dense\", \"config\": {\"units\": 2, \"activation\": \"softmax\"}}]}}";

static const char *base_dir(void) {
    static int made;
    if (!made) {
        char path[4200];
        fuzz_write("config", "model.json", (const uint8_t *)keras_model, strlen(keras_model), path,
                   sizeof path);
        const float x[8] = {0, 1, 2, 3, 4, 5, 6, 7}, y[2] = {0, 1};
        kc_error e = {0};
        kc_shape sx = kc_shape2(2, 4), sy = kc_shape1(2);
        FUZZ_CHECK(!kc_npy_write(fuzz_path("config", "x.npy", path, sizeof path), x, &sx, &e) &&
                       !kc_npy_write(fuzz_path("config", "y.npy", path, sizeof path), y, &sy, &e),
                   "%s", e.msg);
        made = 1;
    }
    return fuzz_dir("config");
}

/* Every scalar through the conversions the config readers use: a number
 * is never NaN, and an integer reads as the same number. */
static void check_scalars(const kc_node *n) {
    kc_error e = {0};
    if (n->kind != KC_NODE_SCALAR) {
        size_t count = n->kind == KC_NODE_MAP ? 2 * n->n : n->n;
        for (size_t i = 0; i < count; i++)
            check_scalars(n->items[i]);
        return;
    }
    double x = 0;
    long long k = 0;
    int b;
    int is_float = kc_node_float(n, &x, &e) == KC_OK;
    FUZZ_CHECK(!is_float || x == x, "'%s' reads as NaN", n->str);
    if (kc_node_int(n, &k, &e) == KC_OK && k > -(1LL << 53) && k < (1LL << 53))
        FUZZ_CHECK(is_float && x == (double)k, "'%s' reads as %lld and %.17g", n->str, k, x);
    kc_node_bool(n, &b, &e);
    kc_node_is_null(n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kc_error e = {0};
    kc_doc *doc;
    if (kc_doc_parse(&doc, "fuzz.yaml", (const char *)data, size, &e) == KC_OK) {
        check_scalars(doc->root);
        kc_doc_free(doc);
    }
    kc_config *cfg;
    if (kc_config_parse_text("fuzz.yaml", base_dir(), (const char *)data, size, &cfg, &e)) {
        FUZZ_CHECK(e.msg[0] && (e.code == KC_ECONFIG || e.code == KC_ERUNTIME), "error %d", e.code);
        return 0;
    }
    fuzz_run_model(cfg);
    kc_config_free(cfg);
    return 0;
}
