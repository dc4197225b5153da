/* Keras model JSON (model.to_json(), Keras 2 and 3) converted to a kerasc
 * model section: whatever the converter accepts must come out as YAML that
 * parses and has a `model:` section, the same from text and from a file, and
 * the complete model file `kerasc convert` writes must parse too. What
 * converts is then loaded as `kerasc summary model.json` does and run (see
 * fuzz_model.h). */
#include "tests/fuzz/fuzz_model.h"

#include "models/keras_import.h"

/* Converter output is YAML with a model section. */
static void check_yaml(const char *text, const char *what) {
    kc_error e = {0};
    kc_doc *d;
    FUZZ_CHECK(kc_doc_parse(&d, "converted.yaml", text, strlen(text), &e) == KC_OK,
               "the %s is not valid YAML: %s\n%s", what, e.msg, text);
    FUZZ_CHECK(kc_map_get(d->root, "model"), "the %s has no model section", what);
    kc_doc_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kc_error e = {0};
    char *yaml = NULL, *file = NULL, path[4200];
    int rc = kc_keras_import_text("model.json", (const char *)data, size, &yaml, &e);
    /* a file name that is no valid UTF-8 and holds a line break: the
     * converted file's header comment names it */
    fuzz_write("keras_json", "model\x85\n\xff.json", data, size, path, sizeof path);
    int rc2 = kc_keras_model_file(path, &file, &e);
    /* a file that is a zip archive is read as a .keras archive instead */
    int zip = size >= 4 && !memcmp(data, "PK\3\4", 4);
    FUZZ_CHECK(zip || (rc == KC_OK) == (rc2 == KC_OK),
               "text and file conversions disagree (%d, %d): %s", rc, rc2, e.msg);
    if (rc == KC_OK) check_yaml(yaml, "converted model section");
    if (rc2 == KC_OK) check_yaml(file, "converted model file");
    free(yaml);
    free(file);
    kc_config *cfg;
    if (kc_keras_config_load(path, &cfg, &e) == KC_OK) {
        fuzz_run_model(cfg);
        kc_config_free(cfg);
    }
    return 0;
}
