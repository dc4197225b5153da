/* The JSON parser (core/json.c) and its writer: any text either parses or
 * fails with a located message; what parses is written back in each layout
 * and must read back as the same tree, and the compact form must be a fixed
 * point. */
#include "tests/fuzz/fuzz_util.h"

#include <math.h>

#include "core/json.h"

/* Every accessor agrees with the kind, strings are valid UTF-8, positions are set. */
static void check_value(const kc_json *v) {
    kc_json_kind k = kc_json_kind_of(v);
    FUZZ_CHECK(k >= KC_JSON_NULL && k <= KC_JSON_OBJECT, "kind %d", (int)k);
    FUZZ_CHECK(kc_json_line(v) >= 1 && kc_json_col(v) >= 1, "position %d:%d", kc_json_line(v),
               kc_json_col(v));
    if (k == KC_JSON_STRING) {
        FUZZ_CHECK(kc_json_utf8_valid(kc_json_str(v), kc_json_len(v)), "string not UTF-8");
        FUZZ_CHECK(kc_json_str(v)[kc_json_len(v)] == 0, "string not terminated");
    }
    if (k == KC_JSON_NUMBER) {
        FUZZ_CHECK(kc_json_num_text(v) && *kc_json_num_text(v), "number without text");
        int64_t x;
        if (kc_json_int64(v, &x) == KC_OK && isfinite(kc_json_num(v)) &&
            fabs(kc_json_num(v)) < 9007199254740992.0)
            FUZZ_CHECK((double)x == kc_json_num(v), "int64 %lld vs %.17g", (long long)x,
                       kc_json_num(v));
    }
    for (size_t i = 0; i < kc_json_len(v) && (k == KC_JSON_ARRAY || k == KC_JSON_OBJECT); i++) {
        const kc_json *item = kc_json_at(v, i);
        FUZZ_CHECK(item != NULL, "item %zu missing", i);
        if (k == KC_JSON_OBJECT) {
            const char *key = kc_json_key_at(v, i);
            FUZZ_CHECK(key && key[kc_json_key_len(v, i)] == 0, "key %zu", i);
            FUZZ_CHECK(kc_json_utf8_valid(key, kc_json_key_len(v, i)), "key not UTF-8");
        }
        check_value(item);
    }
    FUZZ_CHECK(kc_json_at(v, kc_json_len(v)) == NULL, "item past the end");
}

/* Same kinds, strings, keys and number texts. */
static int same_tree(const kc_json *a, const kc_json *b) {
    kc_json_kind k = kc_json_kind_of(a);
    if (k != kc_json_kind_of(b) || kc_json_len(a) != kc_json_len(b)) return 0;
    switch (k) {
    case KC_JSON_BOOL:
        return kc_json_bool(a) == kc_json_bool(b);
    case KC_JSON_NUMBER:
        return !strcmp(kc_json_num_text(a), kc_json_num_text(b));
    case KC_JSON_STRING:
        return !memcmp(kc_json_str(a), kc_json_str(b), kc_json_len(a));
    case KC_JSON_ARRAY:
    case KC_JSON_OBJECT:
        for (size_t i = 0; i < kc_json_len(a); i++) {
            if (k == KC_JSON_OBJECT &&
                (kc_json_key_len(a, i) != kc_json_key_len(b, i) ||
                 memcmp(kc_json_key_at(a, i), kc_json_key_at(b, i), kc_json_key_len(a, i))))
                return 0;
            if (!same_tree(kc_json_at(a, i), kc_json_at(b, i))) return 0;
        }
        return 1;
    default:
        return 1;
    }
}

static void round_trip(const kc_json *v, int indent, const char *first_compact) {
    kc_strbuf b = {0};
    FUZZ_CHECK(kc_json_write(&b, v, indent) == KC_OK, "write failed");
    kc_error e = {0};
    kc_json *again = kc_json_parse(b.s, b.len, &e);
    FUZZ_CHECK(again, "written text does not parse: %s\n%s", e.msg, kc_strbuf_str(&b));
    FUZZ_CHECK(same_tree(v, again), "tree changed on the way through indent %d", indent);
    if (first_compact) {
        kc_strbuf c = {0};
        kc_json_write(&c, again, -1);
        FUZZ_CHECK(!strcmp(kc_strbuf_str(&c), first_compact), "compact form is not a fixed point");
        kc_strbuf_free(&c);
    }
    kc_json_free(again);
    kc_strbuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kc_error e = {0};
    kc_json *v = kc_json_parse((const char *)data, size, &e);
    if (!v) {
        FUZZ_CHECK(e.code == KC_ECONFIG || e.code == KC_ERUNTIME, "error code %d", e.code);
        FUZZ_CHECK(e.msg[0], "error without a message");
        return 0;
    }
    check_value(v);
    kc_strbuf compact = {0};
    kc_json_write(&compact, v, -1);
    round_trip(v, -1, kc_strbuf_str(&compact));
    round_trip(v, 0, NULL);
    round_trip(v, 2, NULL);
    kc_strbuf_free(&compact);
    kc_json_free(v);
    return 0;
}
