#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "core/safetensors.h"
#include "tests/testutil.h"

static char *tmpdir;

static void setup(void) {
    tmpdir = kc_test_tmpdir();
}

static void teardown(void) {
    kc_test_rmdir(tmpdir);
    free(tmpdir);
}

static const char *tmp_path(const char *name) {
    static char buf[4][4200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Names in dir other than `except` (NULL-terminated), so tests can tell
 * that no temporary file was left behind. */
static int stray_entries(const char *dir, const char *const *except) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int stray = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
        int known = 0;
        for (int i = 0; except && except[i]; i++)
            known |= !strcmp(ent->d_name, except[i]);
        if (!known) {
            fprintf(stderr, "stray entry: %s/%s\n", dir, ent->d_name);
            stray++;
        }
    }
    closedir(d);
    return stray;
}

/* ---------------------------------------------------------------- round trip */

START_TEST(test_round_trip_all_dtypes) {
    float f32[6] = {0.5f, -1.25f, 3.0f, 1e-8f, -0.0f, 65504.0f};
    double f64[3] = {1.0 / 3.0, -2.5e300, 5e-324};
    int64_t i64[4] = {INT64_MIN, INT64_MAX, 9007199254740993, -1};
    int32_t i32[2] = {INT32_MIN, INT32_MAX};
    uint8_t u8[5] = {0, 1, 127, 128, 255};
    int8_t i8[3] = {-128, 0, 127};
    int16_t i16[2] = {-32768, 32767};
    uint16_t u16[2] = {0, 65535};
    uint32_t u32[2] = {0, 4294967295u};
    uint64_t u64[1] = {UINT64_MAX};
    uint16_t f16[2] = {0x3C00, 0xC000};  /* 1.0, -2.0 in half precision */
    uint16_t bf16[2] = {0x3F80, 0x4049}; /* 1.0, 3.140625 in bfloat16 */
    uint8_t bools[3] = {1, 0, 1};
    float scalar = 7.25f;
    kc_st_tensor t[] = {
        {"dense/kernel", KC_ST_F32, kc_shape2(2, 3), f32},
        {"f64", KC_ST_F64, kc_shape1(3), f64},
        {"i64", KC_ST_I64, kc_shape2(2, 2), i64},
        {"i32", KC_ST_I32, kc_shape3(1, 2, 1), i32},
        {"u8", KC_ST_U8, kc_shape1(5), u8},
        {"i8", KC_ST_I8, kc_shape1(3), i8},
        {"i16", KC_ST_I16, kc_shape1(2), i16},
        {"u16", KC_ST_U16, kc_shape1(2), u16},
        {"u32", KC_ST_U32, kc_shape1(2), u32},
        {"u64", KC_ST_U64, kc_shape1(1), u64},
        {"f16", KC_ST_F16, kc_shape1(2), f16},
        {"bf16", KC_ST_BF16, kc_shape1(2), bf16},
        {"bool", KC_ST_BOOL, kc_shape1(3), bools},
        {"scalar", KC_ST_F32, kc_shape_make(0, NULL), &scalar},
        {"empty", KC_ST_F64, kc_shape2(0, 4), NULL},
        {"caf\xC3\xA9 \"quoted\"\n", KC_ST_F32, kc_shape1(1), &scalar},
    };
    int n = (int)(sizeof t / sizeof t[0]);
    const char *meta[] = {
        "format", "kerasc",
        "note",   "quote \" backslash \\ newline \n tab \t caf\xC3\xA9 \xF0\x9F\x98\x80",
        "empty",  "",
        NULL};
    kc_error e = {0};
    const char *path = tmp_path("all.safetensors");
    ck_assert_msg(kc_st_write(path, t, n, meta, &e) == KC_OK, "%s", e.msg);

    kc_st_file *f = NULL;
    ck_assert_msg(kc_st_open(path, &f, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(kc_st_count(f), n);
    for (int i = 0; i < n; i++) {
        const kc_st_tensor *r = kc_st_at(f, i);
        ck_assert_str_eq(r->name, t[i].name);
        ck_assert_int_eq(r->dtype, t[i].dtype);
        ck_assert(kc_shape_equal(&r->shape, &t[i].shape));
        size_t bytes = kc_st_nbytes(&t[i]);
        ck_assert_uint_eq(kc_st_nbytes(r), bytes);
        if (bytes) ck_assert(memcmp(r->data, t[i].data, bytes) == 0);
        ck_assert_uint_eq((uintptr_t)r->data % kc_st_dtype_size(r->dtype), 0);
        ck_assert_ptr_eq(kc_st_find(f, t[i].name), r);
    }
    ck_assert_ptr_null(kc_st_at(f, n));
    ck_assert_ptr_null(kc_st_at(f, -1));
    ck_assert_ptr_null(kc_st_find(f, "missing"));
    ck_assert_ptr_null(kc_st_find(f, "__metadata__"));
    ck_assert_int_eq(((const int64_t *)kc_st_find(f, "i64")->data)[2], 9007199254740993);
    ck_assert_int_eq(kc_st_find(f, "scalar")->shape.rank, 0);
    ck_assert(((const float *)kc_st_find(f, "scalar")->data)[0] == 7.25f);

    ck_assert_int_eq(kc_st_meta_count(f), 3);
    ck_assert_str_eq(kc_st_meta(f, "format"), "kerasc");
    ck_assert_str_eq(kc_st_meta(f, "note"), meta[3]);
    ck_assert_str_eq(kc_st_meta(f, "empty"), "");
    ck_assert_ptr_null(kc_st_meta(f, "absent"));
    const char *value = NULL;
    ck_assert_str_eq(kc_st_meta_at(f, 1, &value), "note");
    ck_assert_str_eq(value, meta[3]);
    ck_assert_ptr_null(kc_st_meta_at(f, 3, &value));
    kc_st_close(f);

    /* No metadata and no tensors at all is a valid file too. */
    path = tmp_path("empty.safetensors");
    ck_assert_int_eq(kc_st_write(path, NULL, 0, NULL, &e), KC_OK);
    size_t len;
    unsigned char *bytes = read_all(path, &len);
    ck_assert_uint_eq(len, 16);
    ck_assert(memcmp(bytes, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    free(bytes);
    ck_assert_int_eq(kc_st_open(path, &f, &e), KC_OK);
    ck_assert_int_eq(kc_st_count(f), 0);
    ck_assert_int_eq(kc_st_meta_count(f), 0);
    kc_st_close(f);
}
END_TEST

/* The exact bytes the format prescribes for one 2x2 F32 tensor with metadata,
 * spelled out by hand. */
START_TEST(test_byte_level_format) {
    static const char header[] =
        "{\"__metadata__\":{\"k\":\"v\",\"note\":\"a\\\"b\\n\"},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    ck_assert_uint_eq(sizeof header - 1, 98); /* so 6 spaces of padding make 104 = 13 * 8 */
    unsigned char want[128];
    const unsigned char len_le[8] = {104, 0, 0, 0, 0, 0, 0, 0};
    const unsigned char data_le[16] = {0x00, 0x00, 0x80, 0x3F,  /* 1.0f */
                                       0x00, 0x00, 0x00, 0x40,  /* 2.0f */
                                       0x00, 0x00, 0x40, 0x40,  /* 3.0f */
                                       0x00, 0x00, 0x80, 0x40}; /* 4.0f */
    memcpy(want, len_le, 8);
    memcpy(want + 8, header, 98);
    memset(want + 8 + 98, ' ', 6);
    memcpy(want + 112, data_le, 16);

    float w[4] = {1, 2, 3, 4};
    kc_st_tensor t = {"w", KC_ST_F32, kc_shape2(2, 2), w};
    const char *meta[] = {"k", "v", "note", "a\"b\n", NULL};
    kc_error e = {0};
    const char *path = tmp_path("w.safetensors");
    ck_assert_msg(kc_st_write(path, &t, 1, meta, &e) == KC_OK, "%s", e.msg);
    size_t len;
    unsigned char *got = read_all(path, &len);
    ck_assert_uint_eq(len, sizeof want);
    for (size_t i = 0; i < len; i++)
        ck_assert_msg(got[i] == want[i], "byte %zu: got 0x%02x, expected 0x%02x", i, got[i],
                      want[i]);
    free(got);
    /* The hand-built bytes read back as the tensor and metadata. */
    const char *path2 = tmp_path("hand.safetensors");
    write_all(path2, want, sizeof want);
    kc_st_file *f;
    ck_assert_msg(kc_st_open(path2, &f, &e) == KC_OK, "%s", e.msg);
    const kc_st_tensor *r = kc_st_find(f, "w");
    ck_assert_ptr_nonnull(r);
    ck_assert(kc_shape_equal(&r->shape, &t.shape));
    ck_assert(((const float *)r->data)[3] == 4.0f);
    ck_assert_str_eq(kc_st_meta(f, "note"), "a\"b\n");
    kc_st_close(f);
}
END_TEST

/* The committed fixture: under $KERASC_SRC when the Makefile runs the suite,
 * else beside this source file (paths relative to where it was built). */
static const char *fixture_path(void) {
    static char buf[4200];
    const char *root = getenv("KERASC_SRC");
    if (root && *root) {
        snprintf(buf, sizeof buf, "%s/tests/fixtures/safetensors/fixture.safetensors", root);
        return buf;
    }
    const char *src = __FILE__;
    const char *slash = strrchr(src, '/');
    int dir = slash ? (int)(slash - src) : 1;
    snprintf(buf, sizeof buf, "%.*s/fixtures/safetensors/fixture.safetensors", dir,
             slash ? src : ".");
    return buf;
}

/* Written by the Python safetensors package (fixtures/safetensors/make_fixture.py). */
START_TEST(test_python_fixture) {
    kc_st_file *f = NULL;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(fixture_path(), &f, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(kc_st_count(f), 8);
    /* The package orders tensors by alignment, then name. */
    static const char *order[] = {"i64",   "f64",    "dense/bias", "dense/kernel",
                                  "empty", "scalar", "i32",        "u8"};
    for (int i = 0; i < 8; i++)
        ck_assert_str_eq(kc_st_at(f, i)->name, order[i]);

    const kc_st_tensor *t = kc_st_find(f, "dense/kernel");
    ck_assert_int_eq(t->dtype, KC_ST_F32);
    ck_assert(kc_shape_equal(&t->shape, &(kc_shape){2, {2, 3}}));
    const float *k = t->data;
    const float kw[6] = {0.5f, -1.25f, 3.0f, 1e-8f, -0.0f, 65504.0f};
    for (int i = 0; i < 6; i++)
        ck_assert(k[i] == kw[i]);
    ck_assert(signbit(k[4]));

    t = kc_st_find(f, "dense/bias");
    ck_assert(kc_shape_equal(&t->shape, &(kc_shape){1, {3}}));
    const float *bias = t->data;
    ck_assert(bias[0] == 0.1f && bias[1] == 0.2f && bias[2] == 0.3f);

    t = kc_st_find(f, "f64");
    ck_assert_int_eq(t->dtype, KC_ST_F64);
    ck_assert(kc_shape_equal(&t->shape, &(kc_shape){2, {2, 2}}));
    const double *d = t->data;
    ck_assert(d[0] == 1.0 / 3.0 && d[1] == -2.5 && d[2] == 1e300 && d[3] == 5e-324);

    t = kc_st_find(f, "i64");
    ck_assert_int_eq(t->dtype, KC_ST_I64);
    const int64_t *l = t->data;
    ck_assert(l[0] == INT64_MIN && l[1] == 9007199254740993 && l[2] == 42);

    t = kc_st_find(f, "i32");
    ck_assert_int_eq(t->dtype, KC_ST_I32);
    ck_assert(kc_shape_equal(&t->shape, &(kc_shape){3, {2, 2, 1}}));
    const int32_t *m = t->data;
    ck_assert(m[0] == INT32_MIN && m[1] == 7 && m[2] == 0 && m[3] == INT32_MAX);

    t = kc_st_find(f, "u8");
    ck_assert_int_eq(t->dtype, KC_ST_U8);
    const uint8_t *u = t->data;
    ck_assert(u[0] == 0 && u[1] == 1 && u[2] == 127 && u[3] == 128 && u[4] == 255);

    t = kc_st_find(f, "scalar");
    ck_assert_int_eq(t->shape.rank, 0);
    ck_assert(*(const float *)t->data == 2.5f);

    t = kc_st_find(f, "empty");
    ck_assert(kc_shape_equal(&t->shape, &(kc_shape){2, {0, 4}}));
    ck_assert_uint_eq(kc_st_nbytes(t), 0);

    ck_assert_int_eq(kc_st_meta_count(f), 2);
    ck_assert_str_eq(kc_st_meta(f, "format"), "kerasc-fixture");
    ck_assert_str_eq(kc_st_meta(f, "note"), "quote \" backslash \\ newline \n tab \t caf\xC3\xA9 "
                                            "\xF0\x9F\x98\x80");
    kc_st_close(f);
}
END_TEST

/* A U8 tensor of 3 bytes ahead of an F32 one puts the floats at offset 3;
 * the reader still hands them out aligned. */
START_TEST(test_misaligned_offsets) {
    uint8_t u8[3] = {9, 8, 7};
    float f32[2] = {1.5f, -2.0f};
    kc_st_tensor t[] = {{"b", KC_ST_U8, kc_shape1(3), u8}, {"a", KC_ST_F32, kc_shape1(2), f32}};
    kc_error e = {0};
    const char *path = tmp_path("odd.safetensors");
    ck_assert_int_eq(kc_st_write(path, t, 2, NULL, &e), KC_OK);
    size_t len;
    unsigned char *bytes = read_all(path, &len);
    ck_assert(strstr((const char *)bytes + 8, "\"data_offsets\":[3,11]") != NULL);
    free(bytes);
    kc_st_file *f;
    ck_assert_msg(kc_st_open(path, &f, &e) == KC_OK, "%s", e.msg);
    const kc_st_tensor *a = kc_st_find(f, "a");
    ck_assert_uint_eq((uintptr_t)a->data % 4, 0);
    ck_assert(((const float *)a->data)[0] == 1.5f && ((const float *)a->data)[1] == -2.0f);
    ck_assert(((const uint8_t *)kc_st_find(f, "b")->data)[2] == 7);
    kc_st_close(f);
}
END_TEST

/* --------------------------------------------------------- malformed files */

/* A file from a header text and a data section of data_len bytes. */
static const char *raw_file(const char *header, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *buf = calloc(1, 8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + hl + i] = (unsigned char)i;
    const char *path = tmp_path("raw.safetensors");
    write_all(path, buf, 8 + hl + data_len);
    free(buf);
    return path;
}

static void expect_open_error(const char *path, const char *needle) {
    kc_st_file *f = (kc_st_file *)&f;
    kc_error e = {0};
    int rc = kc_st_open(path, &f, &e);
    ck_assert_msg(rc == KC_ERUNTIME, "%s opened but should fail with \"%s\"", path, needle);
    ck_assert_ptr_null(f);
    ck_assert_msg(strncmp(e.msg, path, strlen(path)) == 0, "message does not name the file: %s",
                  e.msg);
    ck_assert_msg(strstr(e.msg, needle) != NULL, "got \"%s\", expected \"%s\"", e.msg, needle);
}

#define T1(dtype, shape, offs)                                                                     \
    "{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static const struct {
    const char *header;
    size_t data_len;
    const char *needle;
} bad_headers[] = {
    {"[]", 0, "the header is not a JSON object"},
    {"", 0, "the header is not a JSON object"},
    {"   ", 0, "the header is not a JSON object"},
    {"{\"a\": 1", 0, "the header is not valid JSON: 1:8: unexpected end of input"},
    {"{\"a\":" T1("F32", "[1]", "[0,4]") "} x", 4, "not valid JSON: 1:56: unexpected character"},
    {"{\"w\":" T1("F17", "[1]", "[0,4]") "}", 4, "tensor 'w': unknown dtype 'F17'"},
    {"{\"w\":" T1("f32", "[1]", "[0,4]") "}", 4, "unknown dtype 'f32'"},
    {"{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype a number"},
    {"{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w' has no \"dtype\""},
    {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w' has no \"shape\""},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w' has no \"data_offsets\""},
    {"{\"w\":3}", 0, "tensor 'w' is a number, expected an object"},
    {"{\"w\":" T1("F32", "[2,2]", "[0,12]") "}", 12,
     "tensor 'w': F32 (2, 2) needs 16 bytes but data_offsets span 12"},
    {"{\"w\":" T1("F64", "[1]", "[0,4]") "}", 4, "F64 (1,) needs 8 bytes"},
    {"{\"w\":" T1("F32", "[-1]", "[0,4]") "}", 4, "shape entry 0 is not a non-negative integer"},
    {"{\"w\":" T1("F32", "[1.0]", "[0,4]") "}", 4, "shape entry 0 is not a non-negative integer"},
    {"{\"w\":" T1("F32", "[1,\"2\"]", "[0,8]") "}", 8, "shape entry 1 is not"},
    {"{\"w\":" T1("F32", "1", "[0,4]") "}", 4, "\"shape\" is a number, expected an array"},
    {"{\"w\":" T1("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "rank 9 is over the limit of 8"},
    {"{\"w\":" T1("F32", "[4294967296,4294967296]", "[0,4]") "}", 4,
     "is larger than the 4-byte data section"},
    /* a zero dim does not hide a product no size can hold */
    {"{\"w\":" T1("F32", "[4611686018427387904,4611686018427387904,0]", "[0,0]") "}", 0,
     "is larger than the 0-byte data section"},
    {"{\"w\":" T1("F32", "[99999999999999999999]", "[0,4]") "}", 4, "shape entry 0 is not"},
    {"{\"w\":" T1("F32", "[1]", "[0,8]") "}", 4, "data_offsets [0, 8] run past the 4-byte data"},
    {"{\"w\":" T1("F32", "[1]", "[4,0]") "}", 4, "data_offsets [4, 0] end before they begin"},
    {"{\"w\":" T1("F32", "[1]", "[0]") "}", 4, "\"data_offsets\" must be [begin, end]"},
    {"{\"w\":" T1("F32", "[1]", "[0,4,8]") "}", 8, "\"data_offsets\" must be [begin, end]"},
    {"{\"w\":" T1("F32", "[1]", "[0,-4]") "}", 4, "\"data_offsets\" must be [begin, end]"},
    {"{\"w\":" T1("F32", "[1]", "{}") "}", 4, "\"data_offsets\" must be [begin, end]"},
    {"{\"a\":" T1("F32", "[1]", "[0,4]") ",\"b\":" T1("F32", "[1]", "[2,6]") "}", 8,
     "tensor 'b' (bytes 2..6) overlaps the tensor before it"},
    {"{\"a\":" T1("F32", "[1]", "[0,4]") ",\"b\":" T1("F32", "[1]", "[8,12]") "}", 12,
     "bytes 4..8 of the data section belong to no tensor (hole before tensor 'b')"},
    {"{\"a\":" T1("F32", "[1]", "[4,8]") "}", 8, "bytes 0..4 of the data section"},
    {"{\"a\":" T1("F32", "[1]", "[0,4]") "}", 8, "the last 4 bytes of the data section"},
    {"{}", 3, "the last 3 bytes of the data section"},
    {"{\"a\":" T1("F32", "[1]", "[0,4]") ",\"a\":" T1("F32", "[1]", "[4,8]") "}", 8,
     "duplicate tensor name 'a'"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "metadata 'k' is a number, expected a string"},
    {"{\"__metadata__\":{\"k\":null}}", 0, "metadata 'k' is null, expected a string"},
    {"{\"__metadata__\":[]}", 0, "__metadata__ is an array, expected an object"},
    {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate metadata key 'k'"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice"},
    {"{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, "metadata 'k' contains a NUL character"},
    {"{\"a\\u0000b\":" T1("U8", "[1]", "[0,1]") "}", 1, "a tensor name contains a NUL"},
    {"{\"w\":" T1("F32", "[1]", "[0,4]") "}\n\x01", 4, "not valid JSON: 2:1: unexpected byte 0x01"},
};

START_TEST(test_malformed_headers) {
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++)
        expect_open_error(raw_file(bad_headers[i].header, bad_headers[i].data_len),
                          bad_headers[i].needle);
}
END_TEST

START_TEST(test_unusual_but_valid_headers) {
    /* Null metadata, unknown keys in an entry, leading and trailing
     * whitespace, an empty tensor of a huge nominal shape. */
    const char *path = raw_file(" {\"__metadata__\":null,\"w\":{\"dtype\":\"U8\",\"shape\":[2],"
                                "\"data_offsets\":[0,2],\"extra\":[1,{}]},"
                                "\"z\":" T1("F64", "[0,99999999999999]", "[2,2]") "}\n  ",
                                2);
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_msg(kc_st_open(path, &f, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_eq(kc_st_count(f), 2);
    ck_assert_int_eq(kc_st_meta_count(f), 0);
    const uint8_t *w = kc_st_find(f, "w")->data;
    ck_assert(w[0] == 0 && w[1] == 1);
    ck_assert_int_eq(kc_st_find(f, "z")->shape.d[1], 99999999999999);
    kc_st_close(f);
}
END_TEST

START_TEST(test_bad_paths_and_lengths) {
    expect_open_error(tmp_path("does-not-exist"), "cannot open");
    expect_open_error(tmpdir, "not a regular file");
    write_all(tmp_path("short"), "\x02\0\0\0\0", 5);
    expect_open_error(tmp_path("short"), "too short to be a safetensors file (5 bytes)");
    write_all(tmp_path("zero"), "", 0);
    expect_open_error(tmp_path("zero"), "too short to be a safetensors file (0 bytes)");
    /* Header lengths past the end of the file, and absurd ones. */
    unsigned char buf[16] = {0, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    buf[0] = 9;
    write_all(tmp_path("len9"), buf, 16);
    expect_open_error(tmp_path("len9"), "header length 9 runs past the end of the 16-byte file");
    memset(buf, 0xFF, 8);
    write_all(tmp_path("huge"), buf, 16);
    expect_open_error(tmp_path("huge"), "header length 18446744073709551615 is implausible");
    memset(buf, 0, 8);
    buf[4] = 1; /* 2^32 */
    write_all(tmp_path("big"), buf, 16);
    expect_open_error(tmp_path("big"), "header length 4294967296 is implausible");
    memset(buf, 0, 8);
    write_all(tmp_path("len0"), buf, 16);
    expect_open_error(tmp_path("len0"), "the header is not a JSON object");
}
END_TEST

/* A small valid file with every dtype family, metadata and an empty tensor. */
static unsigned char *small_valid_file(size_t *len) {
    float f[4] = {1, 2, 3, 4};
    int64_t l[2] = {-5, 6};
    uint8_t u[3] = {7, 8, 9};
    kc_st_tensor t[] = {{"f", KC_ST_F32, kc_shape2(2, 2), f},
                        {"l", KC_ST_I64, kc_shape1(2), l},
                        {"e", KC_ST_F32, kc_shape2(0, 3), NULL},
                        {"u", KC_ST_U8, kc_shape1(3), u}};
    const char *meta[] = {"k", "v\"\n", NULL};
    kc_error e = {0};
    const char *path = tmp_path("small.safetensors");
    ck_assert_int_eq(kc_st_write(path, t, 4, meta, &e), KC_OK);
    return read_all(path, len);
}

/* Opens a candidate file; a success must hand out data that can be read in full. */
static int open_and_touch(const char *path) {
    kc_st_file *f = NULL;
    kc_error e = {0};
    if (kc_st_open(path, &f, &e) != KC_OK) {
        ck_assert_ptr_null(f);
        ck_assert(strncmp(e.msg, path, strlen(path)) == 0);
        return 0;
    }
    unsigned sum = 0;
    for (int i = 0; i < kc_st_count(f); i++) {
        const kc_st_tensor *t = kc_st_at(f, i);
        size_t n = kc_st_nbytes(t);
        for (size_t k = 0; k < n; k++)
            sum += ((const unsigned char *)t->data)[k];
        ck_assert_ptr_eq(kc_st_find(f, t->name), t);
    }
    for (int i = 0; i < kc_st_meta_count(f); i++) {
        const char *v;
        const char *k = kc_st_meta_at(f, i, &v);
        sum += (unsigned)strlen(k) + (unsigned)strlen(v);
    }
    kc_st_close(f);
    return sum != 0xFFFFFFFFu; /* keeps the reads */
}

START_TEST(test_truncated_at_every_length) {
    size_t len;
    unsigned char *full = small_valid_file(&len);
    const char *path = tmp_path("cut.safetensors");
    for (size_t n = 0; n < len; n++) {
        write_all(path, full, n);
        ck_assert_msg(!open_and_touch(path), "a %zu-byte prefix of %zu opened", n, len);
    }
    write_all(path, full, len);
    ck_assert(open_and_touch(path));
    free(full);
}
END_TEST

START_TEST(test_flipped_bytes) {
    size_t len;
    unsigned char *full = small_valid_file(&len);
    unsigned char *buf = malloc(len);
    const char *path = tmp_path("flip.safetensors");
    const unsigned char masks[] = {0x01, 0x80, 0xFF, 0x20};
    int opened = 0, refused = 0;
    size_t step = kc_test_quick() ? 2 : 1;
    for (size_t i = 0; i < len; i += step)
        for (size_t m = 0; m < sizeof masks; m++) {
            memcpy(buf, full, len);
            buf[i] ^= masks[m];
            write_all(path, buf, len);
            if (open_and_touch(path))
                opened++;
            else
                refused++;
        }
    /* Flips in the data section leave a valid file; most header flips do not. */
    ck_assert_int_gt(opened, 0);
    ck_assert_int_gt(refused, 0);
    /* Every length byte set to garbage. */
    for (int i = 0; i < 8; i++) {
        memcpy(buf, full, len);
        buf[i] = 0xA5;
        write_all(path, buf, len);
        ck_assert(!open_and_touch(path));
    }
    free(buf);
    free(full);
}
END_TEST

/* ------------------------------------------------------- write validation */

START_TEST(test_write_rejects_bad_input) {
    float x[4] = {0};
    kc_shape bad_rank = {9, {1, 1, 1, 1, 1, 1, 1, 1}};
    const struct {
        kc_st_tensor t[2];
        int n;
        const char *needle;
    } cases[] = {
        {{{"a", KC_ST_F32, {1, {1}}, x}, {"a", KC_ST_F32, {1, {1}}, x}},
         2,
         "duplicate tensor name 'a'"},
        {{{"__metadata__", KC_ST_F32, {1, {1}}, x}}, 1, "\"__metadata__\" is reserved"},
        {{{"a", KC_ST_F32, {1, {-2}}, x}}, 1, "negative dimension -2"},
        {{{"a", KC_ST_F32, {1, {4}}, NULL}}, 1, "tensor 'a' has no data"},
        {{{"a", (kc_st_dtype)99, {1, {1}}, x}}, 1, "invalid dtype 99"},
        {{{NULL, KC_ST_F32, {1, {1}}, x}}, 1, "tensor 0 has no name"},
        {{{"bad\xFFname", KC_ST_F32, {1, {1}}, x}}, 1, "name is not valid UTF-8"},
        {{{"a", KC_ST_F32, {2, {INT64_MAX, INT64_MAX}}, x}}, 1, "tensor 'a' is too large"},
    };
    const char *path = tmp_path("never.safetensors");
    kc_error e;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&e, 0, sizeof e);
        ck_assert_int_eq(kc_st_write(path, cases[i].t, cases[i].n, NULL, &e), KC_ERUNTIME);
        ck_assert_msg(strstr(e.msg, cases[i].needle) != NULL, "got \"%s\", expected \"%s\"", e.msg,
                      cases[i].needle);
        ck_assert(strncmp(e.msg, path, strlen(path)) == 0);
    }
    kc_st_tensor ok = {"a", KC_ST_F32, kc_shape1(1), x};
    kc_st_tensor rank9 = {"a", KC_ST_F32, bad_rank, x};
    ck_assert_int_eq(kc_st_write(path, &rank9, 1, NULL, &e), KC_ERUNTIME);
    ck_assert(strstr(e.msg, "rank 9 is outside 0..8") != NULL);
    const char *dup_meta[] = {"k", "1", "j", "2", "k", "3", NULL};
    ck_assert_int_eq(kc_st_write(path, &ok, 1, dup_meta, &e), KC_ERUNTIME);
    ck_assert(strstr(e.msg, "duplicate metadata key 'k'") != NULL);
    const char *odd_meta[] = {"k", NULL, NULL};
    ck_assert_int_eq(kc_st_write(path, &ok, 1, odd_meta, &e), KC_ERUNTIME);
    ck_assert(strstr(e.msg, "metadata key 'k' has no value") != NULL);
    const char *bad_meta[] = {"k", "\xC0\x80", NULL};
    ck_assert_int_eq(kc_st_write(path, &ok, 1, bad_meta, &e), KC_ERUNTIME);
    ck_assert(strstr(e.msg, "metadata 'k' is not valid UTF-8") != NULL);
    ck_assert_int_eq(kc_st_write(path, NULL, 2, NULL, &e), KC_ERUNTIME);
    ck_assert_int_eq(kc_st_write(path, &ok, -1, NULL, &e), KC_ERUNTIME);
    ck_assert_int_eq(kc_st_write("", &ok, 1, NULL, &e), KC_ERUNTIME);
    /* Nothing reached the disk. */
    ck_assert_int_eq(stray_entries(tmpdir, NULL), 0);
}
END_TEST

/* -------------------------------------------------------------- atomicity */

static float big[65536];

/* An existing file with known contents; returns its bytes. */
static unsigned char *make_old(const char *path, size_t *len) {
    float v[3] = {10, 20, 30};
    kc_st_tensor t = {"old", KC_ST_F32, kc_shape1(3), v};
    const char *meta[] = {"version", "1", NULL};
    kc_error e = {0};
    ck_assert_int_eq(kc_st_write(path, &t, 1, meta, &e), KC_OK);
    return read_all(path, len);
}

static void assert_unchanged(const char *path, const unsigned char *old, size_t old_len) {
    size_t len;
    unsigned char *now = read_all(path, &len);
    ck_assert_uint_eq(len, old_len);
    ck_assert(memcmp(now, old, len) == 0);
    free(now);
}

START_TEST(test_overwrite_replaces) {
    const char *path = tmp_path("ckpt.safetensors");
    size_t old_len;
    unsigned char *old = make_old(path, &old_len);
    float v[2] = {1, 2};
    kc_st_tensor t = {"new", KC_ST_F32, kc_shape1(2), v};
    kc_error e = {0};
    ck_assert_int_eq(kc_st_write(path, &t, 1, NULL, &e), KC_OK);
    kc_st_file *f;
    ck_assert_int_eq(kc_st_open(path, &f, &e), KC_OK);
    ck_assert_ptr_nonnull(kc_st_find(f, "new"));
    ck_assert_ptr_null(kc_st_find(f, "old"));
    kc_st_close(f);
    const char *keep[] = {"ckpt.safetensors", NULL};
    ck_assert_int_eq(stray_entries(tmpdir, keep), 0);
    free(old);
}
END_TEST

/* The file-size limit makes the write fail part way through, as a full disk
 * would; the old file must survive byte for byte. */
START_TEST(test_failed_write_keeps_old_file) {
    const char *path = tmp_path("ckpt.safetensors");
    size_t old_len;
    unsigned char *old = make_old(path, &old_len);
    kc_st_tensor t = {"big", KC_ST_F32, kc_shape1(65536), big};
    kc_error e = {0};
    struct rlimit saved, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = saved;
    lim.rlim_cur = 65536;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    /* Nothing may be printed while the limit is low. */
    int set = setrlimit(RLIMIT_FSIZE, &lim);
    int rc = kc_st_write(path, &t, 1, NULL, &e);
    int restored = setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);
    ck_assert_int_eq(set, 0);
    ck_assert_int_eq(restored, 0);
    ck_assert_int_eq(rc, KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "File too large") != NULL, "%s", e.msg);
    assert_unchanged(path, old, old_len);
    const char *keep[] = {"ckpt.safetensors", NULL};
    ck_assert_int_eq(stray_entries(tmpdir, keep), 0);
    free(old);
}
END_TEST

/* A directory in the way of the rename: the write completes into the
 * temporary file, the rename fails, and the temporary file goes away. */
START_TEST(test_rename_over_directory_fails_cleanly) {
    const char *path = tmp_path("adir");
    ck_assert_int_eq(mkdir(path, 0755), 0);
    write_all(tmp_path("adir/inside"), "x", 1);
    float v[1] = {1};
    kc_st_tensor t = {"w", KC_ST_F32, kc_shape1(1), v};
    kc_error e = {0};
    ck_assert_int_eq(kc_st_write(path, &t, 1, NULL, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "rename") != NULL, "%s", e.msg);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    const char *keep[] = {"adir", NULL};
    ck_assert_int_eq(stray_entries(tmpdir, keep), 0);
    const char *inside[] = {"inside", NULL};
    ck_assert_int_eq(stray_entries(path, inside), 0);
}
END_TEST

START_TEST(test_missing_parent_dir) {
    const char *path = tmp_path("no/such/dir/ckpt.safetensors");
    float v[1] = {1};
    kc_st_tensor t = {"w", KC_ST_F32, kc_shape1(1), v};
    kc_error e = {0};
    ck_assert_int_eq(kc_st_write(path, &t, 1, NULL, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "cannot create") != NULL, "%s", e.msg);
    ck_assert_msg(strstr(e.msg, "No such file or directory") != NULL, "%s", e.msg);
    ck_assert_int_eq(stray_entries(tmpdir, NULL), 0);
}
END_TEST

/* The temporary name is taken by something that cannot be replaced (a
 * directory), so the temp file cannot be created; the old file stays. */
START_TEST(test_blocked_temp_keeps_old_file) {
    const char *path = tmp_path("ckpt.safetensors");
    size_t old_len;
    unsigned char *old = make_old(path, &old_len);
    char tmpname[128];
    snprintf(tmpname, sizeof tmpname, "ckpt.safetensors.tmp-%ld", (long)getpid());
    const char *blocker = tmp_path(tmpname);
    ck_assert_int_eq(mkdir(blocker, 0755), 0);
    float v[2] = {1, 2};
    kc_st_tensor t = {"new", KC_ST_F32, kc_shape1(2), v};
    kc_error e = {0};
    ck_assert_int_eq(kc_st_write(path, &t, 1, NULL, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "cannot create") != NULL, "%s", e.msg);
    assert_unchanged(path, old, old_len);
    ck_assert_int_eq(rmdir(blocker), 0);
    const char *keep[] = {"ckpt.safetensors", NULL};
    ck_assert_int_eq(stray_entries(tmpdir, keep), 0);
    /* A stale temp file from an earlier process with our pid is replaced. */
    write_all(blocker, "stale", 5);
    ck_assert_int_eq(kc_st_write(path, &t, 1, NULL, &e), KC_OK);
    ck_assert_int_eq(stray_entries(tmpdir, keep), 0);
    free(old);
}
END_TEST

/* Without root, a read-only directory refuses the temporary file too. */
START_TEST(test_read_only_dir) {
    if (geteuid() == 0) return; /* root writes anywhere; the cases above cover it */
    const char *dir = tmp_path("ro");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    const char *path = tmp_path("ro/ckpt.safetensors");
    size_t old_len;
    unsigned char *old = make_old(path, &old_len);
    ck_assert_int_eq(chmod(dir, 0555), 0);
    float v[2] = {1, 2};
    kc_st_tensor t = {"new", KC_ST_F32, kc_shape1(2), v};
    kc_error e = {0};
    int rc = kc_st_write(path, &t, 1, NULL, &e);
    chmod(dir, 0755);
    ck_assert_int_eq(rc, KC_ERUNTIME);
    assert_unchanged(path, old, old_len);
    const char *keep[] = {"ckpt.safetensors", NULL};
    ck_assert_int_eq(stray_entries(dir, keep), 0);
    free(old);
}
END_TEST

static Suite *safetensors_suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_round_trip_all_dtypes);
    tcase_add_test(tc, test_byte_level_format);
    tcase_add_test(tc, test_python_fixture);
    tcase_add_test(tc, test_misaligned_offsets);
    tcase_add_test(tc, test_malformed_headers);
    tcase_add_test(tc, test_unusual_but_valid_headers);
    tcase_add_test(tc, test_bad_paths_and_lengths);
    tcase_add_test(tc, test_truncated_at_every_length);
    tcase_add_test(tc, test_flipped_bytes);
    tcase_add_test(tc, test_write_rejects_bad_input);
    tcase_add_test(tc, test_overwrite_replaces);
    tcase_add_test(tc, test_failed_write_keeps_old_file);
    tcase_add_test(tc, test_rename_over_directory_fails_cleanly);
    tcase_add_test(tc, test_missing_parent_dir);
    tcase_add_test(tc, test_blocked_temp_keeps_old_file);
    tcase_add_test(tc, test_read_only_dir);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return kc_test_run(safetensors_suite());
}
