#include <float.h>
#include <stdint.h>

#include "core/json.h"
#include "tests/testutil.h"

static kc_json *parse_ok(const char *text) {
    kc_error e = {0};
    kc_json *v = kc_json_parse(text, strlen(text), &e);
    ck_assert_msg(v != NULL, "parse of <%s> failed: %s", text, e.msg);
    return v;
}

/* Parses, expects failure, returns the message. */
static const char *parse_err(const char *text, size_t len, kc_error *e) {
    memset(e, 0, sizeof *e);
    kc_json *v = kc_json_parse(text, len, e);
    ck_assert_msg(v == NULL, "<%s> parsed but should not", text);
    ck_assert_int_eq(e->code, KC_ECONFIG);
    return e->msg;
}

static char *write_tree(const kc_json *v, int indent) {
    kc_strbuf b = {0};
    ck_assert_int_eq(kc_json_write(&b, v, indent), KC_OK);
    return kc_strbuf_take(&b);
}

START_TEST(test_parse_tree) {
    const char *text = "{\"zeta\": 1, \"alpha\": [true, false, null, \"s\"],\n"
                       " \"mid\": {\"x\": -2.5e1, \"y\": {}} , \"empty\": []}";
    kc_json *v = parse_ok(text);
    ck_assert_int_eq(kc_json_kind_of(v), KC_JSON_OBJECT);
    ck_assert_uint_eq(kc_json_len(v), 4);
    /* Keys stay in the order written, not sorted. */
    ck_assert_str_eq(kc_json_key_at(v, 0), "zeta");
    ck_assert_str_eq(kc_json_key_at(v, 1), "alpha");
    ck_assert_str_eq(kc_json_key_at(v, 2), "mid");
    ck_assert_str_eq(kc_json_key_at(v, 3), "empty");
    ck_assert_ptr_null(kc_json_key_at(v, 4));
    ck_assert(kc_json_num(kc_json_get(v, "zeta")) == 1.0);
    const kc_json *a = kc_json_get(v, "alpha");
    ck_assert_int_eq(kc_json_kind_of(a), KC_JSON_ARRAY);
    ck_assert_uint_eq(kc_json_len(a), 4);
    ck_assert_int_eq(kc_json_bool(kc_json_at(a, 0)), 1);
    ck_assert_int_eq(kc_json_kind_of(kc_json_at(a, 1)), KC_JSON_BOOL);
    ck_assert_int_eq(kc_json_bool(kc_json_at(a, 1)), 0);
    ck_assert_int_eq(kc_json_is_null(kc_json_at(a, 2)), 1);
    ck_assert_str_eq(kc_json_str(kc_json_at(a, 3)), "s");
    ck_assert_ptr_null(kc_json_at(a, 4));
    const kc_json *mid = kc_json_get(v, "mid");
    ck_assert(kc_json_num(kc_json_get(mid, "x")) == -25.0);
    ck_assert_str_eq(kc_json_num_text(kc_json_get(mid, "x")), "-2.5e1");
    ck_assert_int_eq(kc_json_kind_of(kc_json_get(mid, "y")), KC_JSON_OBJECT);
    ck_assert_uint_eq(kc_json_len(kc_json_get(mid, "y")), 0);
    /* kc_json_at on an object reaches the values in order. */
    ck_assert_ptr_eq(kc_json_at(v, 2), mid);
    /* Positions: "mid" value starts on line 2 at column 9. */
    ck_assert_int_eq(kc_json_line(mid), 2);
    ck_assert_int_eq(kc_json_col(mid), 9);
    ck_assert_int_eq(kc_json_line(v), 1);
    ck_assert_int_eq(kc_json_col(v), 1);
    /* Missing lookups chain to harmless answers. */
    ck_assert_ptr_null(kc_json_get(v, "nope"));
    ck_assert_int_eq(kc_json_kind_of(kc_json_get(kc_json_get(v, "nope"), "x")), KC_JSON_MISSING);
    ck_assert(isnan(kc_json_num(kc_json_get(v, "alpha"))));
    ck_assert_ptr_null(kc_json_str(kc_json_get(v, "zeta")));
    ck_assert_ptr_null(kc_json_get(a, "x"));
    ck_assert_str_eq(kc_json_kind_name(kc_json_kind_of(a)), "an array");
    kc_json_free(v);
}
END_TEST

START_TEST(test_duplicate_keys_last_wins) {
    kc_json *v = parse_ok("{\"a\": 1, \"b\": 2, \"a\": 3}");
    ck_assert_uint_eq(kc_json_len(v), 3);
    ck_assert(kc_json_num(kc_json_get(v, "a")) == 3.0);
    ck_assert(kc_json_num(kc_json_at(v, 0)) == 1.0);
    kc_json_free(v);
}
END_TEST

START_TEST(test_scalars_at_top_level) {
    kc_json *v = parse_ok("  \n 42 \t\r\n");
    ck_assert(kc_json_num(v) == 42.0);
    ck_assert_int_eq(kc_json_line(v), 2);
    ck_assert_int_eq(kc_json_col(v), 2);
    kc_json_free(v);
    v = parse_ok("\xEF\xBB\xBF\"bom\"");
    ck_assert_str_eq(kc_json_str(v), "bom");
    ck_assert_int_eq(kc_json_col(v), 1);
    kc_json_free(v);
    v = parse_ok("null");
    ck_assert_int_eq(kc_json_kind_of(v), KC_JSON_NULL);
    kc_json_free(v);
    /* Python's json.dumps writes these for non-finite floats. */
    v = parse_ok("[NaN, Infinity, -Infinity]");
    ck_assert(isnan(kc_json_num(kc_json_at(v, 0))));
    ck_assert(kc_json_num(kc_json_at(v, 1)) == INFINITY);
    ck_assert(kc_json_num(kc_json_at(v, 2)) == -INFINITY);
    kc_json_free(v);
}
END_TEST

START_TEST(test_numbers_exact) {
    kc_json *v = parse_ok("[9007199254740993, -9223372036854775808, 9223372036854775807,"
                          " 9223372036854775808, 1.0, 2e3, 1.5, -0, 0.000001, 1E+2,"
                          " 9007199254740993.0, 1e400, -1e-400]");
    int64_t x = 0;
    /* 2^53 + 1 has no exact double; the text keeps it. */
    ck_assert_int_eq(kc_json_int64(kc_json_at(v, 0), &x), KC_OK);
    ck_assert(x == INT64_C(9007199254740993));
    ck_assert(kc_json_num(kc_json_at(v, 0)) == 9007199254740992.0);
    ck_assert_int_eq(kc_json_int64(kc_json_at(v, 1), &x), KC_OK);
    ck_assert(x == INT64_MIN);
    ck_assert_int_eq(kc_json_int64(kc_json_at(v, 2), &x), KC_OK);
    ck_assert(x == INT64_MAX);
    ck_assert_int_eq(kc_json_int64(kc_json_at(v, 3), &x), KC_ECONFIG);
    ck_assert_int_eq(kc_json_int64(kc_json_at(v, 4), &x), KC_OK);
    ck_assert(x == 1);
    ck_assert_int_eq(kc_json_int64(kc_json_at(v, 5), &x), KC_OK);
    ck_assert(x == 2000);
    ck_assert_int_eq(kc_json_int64(kc_json_at(v, 6), &x), KC_ECONFIG);
    ck_assert_int_eq(kc_json_int64(kc_json_at(v, 7), &x), KC_OK);
    ck_assert(x == 0);
    ck_assert(signbit(kc_json_num(kc_json_at(v, 7))));
    ck_assert(kc_json_num(kc_json_at(v, 8)) == 1e-6);
    ck_assert(kc_json_num(kc_json_at(v, 9)) == 100.0);
    ck_assert_str_eq(kc_json_num_text(kc_json_at(v, 9)), "1E+2");
    /* A fractional form beyond 2^53 may have been rounded: refuse it. */
    ck_assert_int_eq(kc_json_int64(kc_json_at(v, 10), &x), KC_ECONFIG);
    ck_assert(kc_json_num(kc_json_at(v, 11)) == INFINITY);
    ck_assert(kc_json_num(kc_json_at(v, 12)) == 0.0);
    ck_assert_int_eq(kc_json_int64(kc_json_at(v, 11), &x), KC_ECONFIG);
    ck_assert_int_eq(kc_json_int64(kc_json_get(v, "x"), &x), KC_ECONFIG);
    kc_json_free(v);
}
END_TEST

START_TEST(test_string_escapes) {
    kc_json *v =
        parse_ok("[\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\ude00\","
                 " \"a\\u0000b\", \"caf\xC3\xA9 \xF0\x9F\x98\x80\", \"\"]");
    ck_assert_str_eq(kc_json_str(kc_json_at(v, 0)), "q\" b\\ s/ \b\f\n\r\t");
    ck_assert_str_eq(kc_json_str(kc_json_at(v, 1)), "\xC3\xA9\xE2\x82\xAC");
    ck_assert_str_eq(kc_json_str(kc_json_at(v, 2)), "\xF0\x9F\x98\x80");
    ck_assert_uint_eq(kc_json_len(kc_json_at(v, 3)), 3);
    ck_assert(memcmp(kc_json_str(kc_json_at(v, 3)), "a\0b", 4) == 0);
    ck_assert_str_eq(kc_json_str(kc_json_at(v, 4)), "caf\xC3\xA9 \xF0\x9F\x98\x80");
    ck_assert_str_eq(kc_json_str(kc_json_at(v, 5)), "");
    ck_assert_uint_eq(kc_json_len(kc_json_at(v, 5)), 0);
    kc_json_free(v);
    /* Keys are decoded too, and may hold NUL. */
    v = parse_ok("{\"k\\u00e9y\": 1, \"n\\u0000ul\": 2}");
    ck_assert(kc_json_num(kc_json_get(v, "k\xC3\xA9y")) == 1.0);
    ck_assert_uint_eq(kc_json_key_len(v, 1), 4);
    ck_assert(memcmp(kc_json_key_at(v, 1), "n\0ul", 5) == 0);
    kc_json_free(v);
}
END_TEST

static const struct {
    const char *text;
    const char *where; /* "line:col:" */
    const char *msg;   /* a substring of the message */
} bad_docs[] = {
    {"", "1:1:", "end of input"},
    {"   \n  ", "2:3:", "end of input"},
    {"{\"a\": 1,}", "1:9:", "trailing comma before '}'"},
    {"[1, 2,]", "1:7:", "trailing comma before ']'"},
    {"[1, 2\n, 3 x]", "2:5:", "expected ',' or ']'"},
    {"{\"a\" 1}", "1:6:", "':' after object key"},
    {"{\"a\": 1 \"b\": 2}", "1:9:", "expected ',' or '}'"},
    {"{1: 2}", "1:2:", "a string key"},
    {"\"\\q\"", "1:2:", "invalid escape"},
    {"\"\\u12G4\"", "1:2:", "four hex digits"},
    {"\"\\u12\"", "1:2:", "four hex digits"},
    {"\"\\ud800\"", "1:2:", "unpaired high surrogate \\uD800"},
    {"\"ab\\ud800\\u0041\"", "1:4:", "unpaired high surrogate"},
    {"\"\\udc00x\"", "1:2:", "unpaired low surrogate \\uDC00"},
    {"\"abc", "1:1:", "unterminated string"},
    {"[\"abc\\", "1:2:", "unterminated string"},
    {"\"a\tb\"", "1:3:", "control character U+0009"},
    {"\"a\nb\"", "1:3:", "control character U+000A"},
    {"01", "1:1:", "leading zeros"},
    {"-01", "1:1:", "leading zeros"},
    {"1.", "1:3:", "digit after '.'"},
    {"1.e5", "1:3:", "digit after '.'"},
    {"-", "1:2:", "digit after '-'"},
    {"-x", "1:2:", "digit after '-'"},
    {"1e", "1:3:", "exponent"},
    {"1e+", "1:4:", "exponent"},
    {".5", "1:1:", "character '.'"},
    {"+1", "1:1:", "character '+'"},
    {"[1] x", "1:5:", "after the JSON value"},
    {"{} {}", "1:4:", "after the JSON value"},
    {"tru", "1:1:", "expected a value"},
    {"nul", "1:1:", "expected a value"},
    {"True", "1:1:", "expected a value"},
    {"nan", "1:1:", "expected a value"},
    {"'single'", "1:1:", "character '''"},
    {"\"\xFF\"", "1:2:", "invalid UTF-8 byte 0xFF"},
    {"\"a\xC0\xAF\"", "1:3:", "invalid UTF-8"},        /* overlong '/' */
    {"\"\xED\xA0\x80\"", "1:2:", "invalid UTF-8"},     /* an encoded surrogate */
    {"\"\xF4\x90\x80\x80\"", "1:2:", "invalid UTF-8"}, /* beyond U+10FFFF */
    {"\"\xE2\x82\"", "1:2:", "invalid UTF-8"},         /* truncated sequence */
    {"\x01", "1:1:", "byte 0x01"},
    /* Columns count characters, not bytes: the 'x' is the 7th character. */
    {"[\"\xC3\xA9\", x]", "1:7:", "character 'x'"},
    /* CR LF, lone CR and LF each end a line. */
    {"[1,\r\n\r 2,\n x]", "4:2:", "character 'x'"},
};

START_TEST(test_error_positions) {
    for (size_t i = 0; i < sizeof bad_docs / sizeof bad_docs[0]; i++) {
        kc_error e;
        const char *msg = parse_err(bad_docs[i].text, strlen(bad_docs[i].text), &e);
        ck_assert_msg(strncmp(msg, bad_docs[i].where, strlen(bad_docs[i].where)) == 0,
                      "<%s>: got \"%s\", expected position %s", bad_docs[i].text, msg,
                      bad_docs[i].where);
        ck_assert_msg(strstr(msg, bad_docs[i].msg) != NULL, "<%s>: got \"%s\", expected \"%s\"",
                      bad_docs[i].text, msg, bad_docs[i].msg);
    }
    /* An embedded NUL byte is garbage, not an end of input. */
    kc_error e;
    const char *msg = parse_err("[1]\0", 4, &e);
    ck_assert_str_eq(msg, "1:4: unexpected byte 0x00 after the JSON value");
    /* A NULL text with zero length is an empty document. */
    ck_assert_ptr_null(kc_json_parse(NULL, 0, &e));
    ck_assert_str_eq(e.msg, "1:1: unexpected end of input, expected a value");
}
END_TEST

static char *nested(int depth) {
    char *s = malloc(2 * (size_t)depth + 1);
    for (int i = 0; i < depth; i++) {
        s[i] = '[';
        s[2 * depth - 1 - i] = ']';
    }
    s[2 * depth] = '\0';
    return s;
}

START_TEST(test_depth_limit) {
    char *ok = nested(KC_JSON_MAX_DEPTH);
    kc_json *v = parse_ok(ok);
    const kc_json *inner = v;
    for (int i = 1; i < KC_JSON_MAX_DEPTH; i++)
        inner = kc_json_at(inner, 0);
    ck_assert_int_eq(kc_json_kind_of(inner), KC_JSON_ARRAY);
    ck_assert_uint_eq(kc_json_len(inner), 0);
    kc_json_free(v);
    free(ok);

    kc_error e;
    char *deep = nested(KC_JSON_MAX_DEPTH + 1);
    const char *msg = parse_err(deep, strlen(deep), &e);
    ck_assert_str_eq(msg, "1:513: nesting deeper than 512 levels");
    free(deep);
    /* Far deeper input fails the same way instead of exhausting the stack. */
    deep = nested(200000);
    parse_err(deep, strlen(deep), &e);
    ck_assert(strstr(e.msg, "nesting deeper") != NULL);
    free(deep);
    deep = nested(200000);
    memset(deep, '{', 1);
    parse_err(deep, strlen(deep), &e);
    free(deep);
}
END_TEST

START_TEST(test_write_string_escaping) {
    kc_strbuf b = {0};
    kc_json_write_string(&b, "a\"b\\c/\n\t\r\b\f\x01\x1F\x7F caf\xC3\xA9 \xF0\x9F\x98\x80");
    ck_assert_str_eq(kc_strbuf_str(&b),
                     "\"a\\\"b\\\\c/\\n\\t\\r\\b\\f\\u0001\\u001f\x7F caf\xC3\xA9 "
                     "\xF0\x9F\x98\x80\"");
    kc_strbuf_free(&b);
    /* Invalid UTF-8 becomes U+FFFD so the output stays valid JSON. */
    kc_json_write_string(&b, "x\xFFy\xC3");
    ck_assert_str_eq(kc_strbuf_str(&b), "\"x\xEF\xBF\xBDy\xEF\xBF\xBD\"");
    kc_strbuf_free(&b);
    kc_json_write_stringn(&b, "a\0b", 3);
    ck_assert_str_eq(kc_strbuf_str(&b), "\"a\\u0000b\"");
    kc_strbuf_free(&b);
    kc_json_write_string(&b, "");
    ck_assert_str_eq(kc_strbuf_str(&b), "\"\"");
    kc_strbuf_free(&b);
}
END_TEST

START_TEST(test_string_round_trip) {
    /* Every byte value 1..127 plus multi-byte characters and NUL survive write + parse. */
    char s[200];
    size_t n = 0;
    for (int c = 0; c < 128; c++)
        s[n++] = (char)c;
    const char *extra = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xEF\xBF\xBF\xF4\x8F\xBF\xBF";
    memcpy(s + n, extra, strlen(extra));
    n += strlen(extra);
    kc_strbuf b = {0};
    kc_json_write_stringn(&b, s, n);
    kc_error e = {0};
    kc_json *v = kc_json_parse(b.s, b.len, &e);
    ck_assert_msg(v != NULL, "%s", e.msg);
    ck_assert_uint_eq(kc_json_len(v), n);
    ck_assert(memcmp(kc_json_str(v), s, n) == 0);
    kc_json_free(v);
    kc_strbuf_free(&b);
}
END_TEST

static const char *fmt_double(kc_strbuf *b, double x) {
    kc_strbuf_free(b);
    kc_json_write_double(b, x);
    return kc_strbuf_str(b);
}

static const char *fmt_float(kc_strbuf *b, float x) {
    kc_strbuf_free(b);
    kc_json_write_float(b, x);
    return kc_strbuf_str(b);
}

START_TEST(test_number_writing) {
    kc_strbuf b = {0};
    /* Expected strings are Python's repr() of the same values, but for the
     * subnormal, where 15 digits are more than the shortest. */
    ck_assert_str_eq(fmt_double(&b, 0.1), "0.1");
    ck_assert_str_eq(fmt_double(&b, 0.1 + 0.2), "0.30000000000000004");
    ck_assert_str_eq(fmt_double(&b, 1.0 / 3.0), "0.3333333333333333");
    ck_assert_str_eq(fmt_double(&b, 2.0 / 3.0), "0.6666666666666666");
    ck_assert_str_eq(fmt_double(&b, 1e-7), "1e-07");
    ck_assert_str_eq(fmt_double(&b, 1e22), "1e+22");
    ck_assert_str_eq(fmt_double(&b, 123456789012345680.0), "1.2345678901234568e+17");
    ck_assert_str_eq(fmt_double(&b, 3.0), "3");
    ck_assert_str_eq(fmt_double(&b, -0.0), "-0");
    ck_assert_str_eq(fmt_double(&b, DBL_MAX), "1.7976931348623157e+308");
    ck_assert_str_eq(fmt_double(&b, 5e-324), "4.94065645841247e-324");
    ck_assert_str_eq(fmt_double(&b, NAN), "NaN");
    ck_assert_str_eq(fmt_double(&b, INFINITY), "Infinity");
    ck_assert_str_eq(fmt_double(&b, -INFINITY), "-Infinity");
    ck_assert_str_eq(fmt_float(&b, 0.1f), "0.1");
    ck_assert_str_eq(fmt_float(&b, 1.0f / 3.0f), "0.33333334");
    ck_assert_str_eq(fmt_float(&b, 3.14159265358979f), "3.1415927");
    ck_assert_str_eq(fmt_float(&b, 1.1f), "1.1");
    ck_assert_str_eq(fmt_float(&b, 16777216.0f), "16777216");
    ck_assert_str_eq(fmt_float(&b, 0.001f), "0.001");
    ck_assert_str_eq(fmt_float(&b, FLT_MAX), "3.4028235e+38");
    ck_assert_str_eq(fmt_float(&b, -INFINITY), "-Infinity");
    kc_strbuf_free(&b);
    kc_json_write_int(&b, INT64_MIN);
    ck_assert_str_eq(kc_strbuf_str(&b), "-9223372036854775808");
    kc_strbuf_free(&b);
}
END_TEST

/* splitmix64: a fixed stream of bit patterns for the round-trip sweep */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

START_TEST(test_number_round_trip_sweep) {
    int n = kc_test_quick() ? 20000 : 200000;
    uint64_t seed = 12345;
    kc_strbuf b = {0};
    for (int i = 0; i < n; i++) {
        uint64_t bits = mix(&seed);
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d)) continue;
        const char *s = fmt_double(&b, d);
        double back = strtod(s, NULL);
        ck_assert_msg(memcmp(&back, &d, sizeof d) == 0, "%s does not read back as %a", s, d);
        /* Never more than 17 significant digits. */
        ck_assert(strlen(s) <= 24);
        uint32_t fbits = (uint32_t)bits;
        float f;
        memcpy(&f, &fbits, sizeof f);
        if (!isfinite(f)) continue;
        s = fmt_float(&b, f);
        float fback = strtof(s, NULL);
        ck_assert_msg(memcmp(&fback, &f, sizeof f) == 0, "%s does not read back as %a", s,
                      (double)f);
        ck_assert(strlen(s) <= 15);
    }
    /* Through the parser as well. */
    double vals[] = {0.1, -1.5e-300, 6.02214076e23, 1.0 / 7.0, 4503599627370497.0};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        const char *s = fmt_double(&b, vals[i]);
        kc_json *v = parse_ok(s);
        ck_assert(kc_json_num(v) == vals[i]);
        kc_json_free(v);
    }
    kc_strbuf_free(&b);
}
END_TEST

static const char *doc_text =
    "{ \"class_name\" : \"Sequential\", \"config\": {\"name\": \"seq\\n\\\"1\\\"\", \"layers\": [\n"
    "  {\"units\": 64, \"rate\": 0.5, \"big\": 12345678901234567890, \"e\": 1E-3,"
    " \"use_bias\": true, \"x\": null, \"shape\": [null, 28, 28, 1], \"none\": [], \"o\": {}}]},"
    " \"v\": \"3.1\" }";

START_TEST(test_serialize_round_trip) {
    kc_json *v = parse_ok(doc_text);
    char *compact = write_tree(v, -1);
    ck_assert_str_eq(compact,
                     "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"seq\\n\\\"1\\\"\","
                     "\"layers\":[{\"units\":64,\"rate\":0.5,\"big\":12345678901234567890,"
                     "\"e\":1E-3,\"use_bias\":true,\"x\":null,\"shape\":[null,28,28,1],"
                     "\"none\":[],\"o\":{}}]},\"v\":\"3.1\"}");
    char *line = write_tree(v, 0);
    ck_assert_str_eq(line, "{\"class_name\": \"Sequential\", \"config\": {\"name\": "
                           "\"seq\\n\\\"1\\\"\", \"layers\": [{\"units\": 64, \"rate\": 0.5, "
                           "\"big\": 12345678901234567890, \"e\": 1E-3, \"use_bias\": true, "
                           "\"x\": null, \"shape\": [null, 28, 28, 1], \"none\": [], \"o\": {}}]}, "
                           "\"v\": \"3.1\"}");
    /* Re-parsing any form and writing it compactly gives the same text. */
    kc_json *v2 = parse_ok(line);
    char *again = write_tree(v2, -1);
    ck_assert_str_eq(again, compact);
    kc_json_free(v2);
    free(again);

    kc_json *small = parse_ok("{\"a\": [1, {\"b\": []}], \"c\": {}}");
    char *pretty = write_tree(small, 2);
    ck_assert_str_eq(pretty, "{\n"
                             "  \"a\": [\n"
                             "    1,\n"
                             "    {\n"
                             "      \"b\": []\n"
                             "    }\n"
                             "  ],\n"
                             "  \"c\": {}\n"
                             "}");
    kc_json *small2 = parse_ok(pretty);
    char *c1 = write_tree(small, -1), *c2 = write_tree(small2, -1);
    ck_assert_str_eq(c1, c2);
    ck_assert_str_eq(c1, "{\"a\":[1,{\"b\":[]}],\"c\":{}}");
    free(c1);
    free(c2);
    free(pretty);
    kc_json_free(small);
    kc_json_free(small2);
    free(compact);
    free(line);
    kc_json_free(v);
}
END_TEST

START_TEST(test_builder) {
    kc_json *o = kc_json_new_object();
    ck_assert_int_eq(kc_json_put(o, "loss", kc_json_new_num(0.1 + 0.2)), KC_OK);
    ck_assert_int_eq(kc_json_put(o, "steps", kc_json_new_int(INT64_C(-9007199254740993))), KC_OK);
    ck_assert_int_eq(kc_json_put(o, "name", kc_json_new_str("a \"b\"\n")), KC_OK);
    kc_json *arr = kc_json_new_array();
    ck_assert_int_eq(kc_json_push(arr, kc_json_new_bool(1)), KC_OK);
    ck_assert_int_eq(kc_json_push(arr, kc_json_new_null()), KC_OK);
    ck_assert_int_eq(kc_json_push(arr, kc_json_new_num(NAN)), KC_OK);
    ck_assert_int_eq(kc_json_push(arr, kc_json_new_strn("x\0y", 3)), KC_OK);
    ck_assert_int_eq(kc_json_put(o, "list", arr), KC_OK);
    ck_assert_int_eq(kc_json_put(o, "obj", kc_json_new_object()), KC_OK);
    /* Wrong container kinds are refused and the item is freed. */
    ck_assert_int_eq(kc_json_push(o, kc_json_new_int(1)), KC_ERUNTIME);
    ck_assert_int_eq(kc_json_put(arr, "k", kc_json_new_int(1)), KC_ERUNTIME);
    ck_assert_int_eq(kc_json_push(arr, NULL), KC_ERUNTIME);
    ck_assert_int_eq(kc_json_line(o), 0);
    int64_t x;
    ck_assert_int_eq(kc_json_int64(kc_json_get(o, "steps"), &x), KC_OK);
    ck_assert(x == INT64_C(-9007199254740993));
    char *s = write_tree(o, -1);
    ck_assert_str_eq(s, "{\"loss\":0.30000000000000004,\"steps\":-9007199254740993,"
                        "\"name\":\"a \\\"b\\\"\\n\",\"list\":[true,null,NaN,\"x\\u0000y\"],"
                        "\"obj\":{}}");
    kc_json *back = parse_ok(s);
    ck_assert(kc_json_num(kc_json_get(back, "loss")) == 0.1 + 0.2);
    ck_assert(isnan(kc_json_num(kc_json_at(kc_json_get(back, "list"), 2))));
    char *s2 = write_tree(back, -1);
    ck_assert_str_eq(s, s2);
    free(s);
    free(s2);
    kc_json_free(back);
    kc_json_free(o);
    kc_strbuf b = {0};
    kc_json_write(&b, NULL, -1);
    ck_assert_str_eq(kc_strbuf_str(&b), "null");
    kc_strbuf_free(&b);
}
END_TEST

START_TEST(test_strbuf) {
    kc_strbuf b = {0};
    ck_assert_str_eq(kc_strbuf_str(&b), "");
    for (int i = 0; i < 1000; i++)
        kc_strbuf_printf(&b, "%d,", i % 10);
    ck_assert_uint_eq(b.len, 2000);
    ck_assert(strncmp(b.s, "0,1,2,3,", 8) == 0);
    ck_assert_str_eq(b.s + 1996, "8,9,");
    kc_strbuf_free(&b);
    /* A formatted piece longer than the on-stack attempt. */
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    kc_strbuf_puts(&b, "<");
    kc_strbuf_printf(&b, "%s|%d", big, 42);
    kc_strbuf_putc(&b, '>');
    ck_assert_uint_eq(b.len, 1 + 999 + 3 + 1);
    ck_assert_str_eq(b.s + 1000, "|42>");
    ck_assert_uint_eq(strlen(b.s), b.len);
    char *taken = kc_strbuf_take(&b);
    ck_assert_ptr_null(b.s);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(strlen(taken), 1004);
    free(taken);
    taken = kc_strbuf_take(&b);
    ck_assert_str_eq(taken, "");
    free(taken);
}
END_TEST

START_TEST(test_parse_file) {
    char *dir = kc_test_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/model.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"a\": 1,\n \"b\": [1, 2],\n \"c\": }\n", f);
    fclose(f);
    kc_error e = {0};
    ck_assert_ptr_null(kc_json_parse_file(path, &e));
    char want[4300];
    snprintf(want, sizeof want, "%s:3:7: unexpected character '}', expected a value", path);
    ck_assert_str_eq(e.msg, want);
    ck_assert_int_eq(e.code, KC_ECONFIG);

    f = fopen(path, "w");
    fputs("{\"a\": [1.5, \"x\"]}\n", f);
    fclose(f);
    kc_json *v = kc_json_parse_file(path, &e);
    ck_assert_ptr_nonnull(v);
    ck_assert(kc_json_num(kc_json_at(kc_json_get(v, "a"), 0)) == 1.5);
    kc_json_free(v);

    snprintf(path, sizeof path, "%s/missing.json", dir);
    ck_assert_ptr_null(kc_json_parse_file(path, &e));
    ck_assert_int_eq(e.code, KC_ERUNTIME);
    ck_assert(strstr(e.msg, "missing.json: cannot open") != NULL);
    kc_test_rmdir(dir);
    free(dir);
}
END_TEST

/* Every prefix and every single-byte corruption of a document either parses
 * or fails with a located message; none may crash or leak. */
START_TEST(test_truncated_and_corrupted) {
    size_t n = strlen(doc_text);
    char *buf = malloc(n + 1);
    int parsed = 0;
    for (size_t len = 0; len < n; len++) {
        kc_error e = {0};
        kc_json *v = kc_json_parse(doc_text, len, &e);
        if (v)
            parsed++;
        else
            ck_assert_msg(e.code == KC_ECONFIG && strchr(e.msg, ':') != NULL, "%s", e.msg);
        kc_json_free(v);
    }
    ck_assert_int_eq(parsed, 0); /* an object is incomplete until its closing brace */
    const unsigned char flips[] = {0x00, 0x22, 0x5C, 0x7B, 0x5D, 0x80, 0xFF, 0x0A};
    size_t step = kc_test_quick() ? 3 : 1;
    for (size_t i = 0; i < n; i += step)
        for (size_t k = 0; k < sizeof flips; k++) {
            memcpy(buf, doc_text, n + 1);
            buf[i] = (char)flips[k];
            kc_error e = {0};
            kc_json *v = kc_json_parse(buf, n, &e);
            if (!v) ck_assert(e.code == KC_ECONFIG && e.msg[0] >= '1' && e.msg[0] <= '9');
            kc_json_free(v);
        }
    free(buf);
}
END_TEST

static Suite *json_suite(void) {
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_parse_tree);
    tcase_add_test(tc, test_duplicate_keys_last_wins);
    tcase_add_test(tc, test_scalars_at_top_level);
    tcase_add_test(tc, test_numbers_exact);
    tcase_add_test(tc, test_string_escapes);
    tcase_add_test(tc, test_error_positions);
    tcase_add_test(tc, test_depth_limit);
    tcase_add_test(tc, test_write_string_escaping);
    tcase_add_test(tc, test_string_round_trip);
    tcase_add_test(tc, test_number_writing);
    tcase_add_test(tc, test_number_round_trip_sweep);
    tcase_add_test(tc, test_serialize_round_trip);
    tcase_add_test(tc, test_builder);
    tcase_add_test(tc, test_strbuf);
    tcase_add_test(tc, test_parse_file);
    tcase_add_test(tc, test_truncated_and_corrupted);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return kc_test_run(json_suite());
}
