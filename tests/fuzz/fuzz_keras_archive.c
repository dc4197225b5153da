/* .keras archives: the zip reader finding config.json, then the conversion,
 * as `kerasc summary model.keras` and `kerasc convert` read them. An input
 * that is a zip is read as it is; any other input is also packed as the
 * config.json of a stored zip, so the fuzzer can reach the conversion
 * through the archive path without having to keep CRCs right. What
 * converts must come out as YAML with a model section, and load and run
 * (see fuzz_model.h). */
#include "tests/fuzz/fuzz_model.h"

#include <zlib.h>

#include "models/keras_import.h"

static void put16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v) {
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

/* A zip with one stored member, config.json; malloc'd, *len bytes. */
static uint8_t *stored_zip(const uint8_t *text, size_t n, size_t *len) {
    static const char name[] = "config.json";
    const size_t nl = sizeof name - 1, local = 30 + nl, central = 46 + nl;
    *len = local + n + central + 22;
    uint8_t *z = calloc(1, *len);
    FUZZ_CHECK(z, "out of memory");
    uint32_t crc = (uint32_t)crc32(crc32(0, Z_NULL, 0), text, (uInt)n);
    uint8_t *l = z, *c = z + local + n, *end = c + central;
    put32(l, 0x04034b50);
    put16(l + 4, 20);
    put16(l + 12, 0x21); /* 1980-01-01 */
    put32(l + 14, crc);
    put32(l + 18, (uint32_t)n);
    put32(l + 22, (uint32_t)n);
    put16(l + 26, (unsigned)nl);
    memcpy(l + 30, name, nl);
    memcpy(l + local, text, n);
    put32(c, 0x02014b50);
    put16(c + 4, 20);
    put16(c + 6, 20);
    put16(c + 14, 0x21);
    put32(c + 16, crc);
    put32(c + 20, (uint32_t)n);
    put32(c + 24, (uint32_t)n);
    put16(c + 28, (unsigned)nl);
    memcpy(c + 46, name, nl);
    put32(end, 0x06054b50);
    put16(end + 8, 1);
    put16(end + 10, 1);
    put32(end + 12, (uint32_t)central);
    put32(end + 16, (uint32_t)(local + n));
    return z;
}

static void load(const uint8_t *data, size_t size) {
    kc_error e = {0};
    char path[4200], *text = NULL;
    fuzz_write("keras_archive", "model.keras", data, size, path, sizeof path);
    if (kc_keras_model_file(path, &text, &e) == KC_OK) {
        kc_doc *d;
        FUZZ_CHECK(kc_doc_parse(&d, "converted.yaml", text, strlen(text), &e) == KC_OK,
                   "the converted model file is not valid YAML: %s\n%s", e.msg, text);
        FUZZ_CHECK(kc_map_get(d->root, "model"), "the converted file has no model section");
        kc_doc_free(d);
    }
    free(text);
    kc_config *cfg;
    if (kc_keras_config_load(path, &cfg, &e) == KC_OK) {
        fuzz_run_model(cfg);
        kc_config_free(cfg);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load(data, size);
    if (size >= 4 && !memcmp(data, "PK", 2)) return 0;
    size_t len;
    uint8_t *zip = stored_zip(data, size, &len);
    load(zip, len);
    free(zip);
    return 0;
}
