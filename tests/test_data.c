/* Data loading and writing: IDX, NPY, NPZ, CSV, the Keras datasets, gather,
 * validation split, prediction output. Files are built here byte by byte
 * (zip archives with zlib); tests/fixtures/data holds a few files written by
 * numpy itself (see make_fixtures.py there). */
#include <sys/stat.h>
#include <zlib.h>

#include "models/data/data.h"
#include "tests/testutil.h"

#ifndef KC_FIXTURES
#define KC_FIXTURES "tests/fixtures/data"
#endif

static char *g_dir;

static void setup(void) {
    g_dir = kc_test_tmpdir();
    ck_assert_ptr_nonnull(g_dir);
}

static void teardown(void) {
    kc_test_rmdir(g_dir);
    free(g_dir);
}

/* ---- byte buffers ---- */

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u8(buf *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    put(b, &c, 1);
}
static void put_le16(buf *b, unsigned v) {
    put_u8(b, v & 0xff);
    put_u8(b, (v >> 8) & 0xff);
}
static void put_le32(buf *b, uint32_t v) {
    put_le16(b, v & 0xffff);
    put_le16(b, v >> 16);
}
static void put_be32(buf *b, uint32_t v) {
    for (int i = 3; i >= 0; i--)
        put_u8(b, (v >> (8 * i)) & 0xff);
}

static const char *path_in(const char *name) {
    static char p[4][4200];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_text(const char *path, const char *text) {
    write_file(path, text, strlen(text));
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, data, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

static buf read_all(const char *path) {
    buf b = {0};
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        put(&b, tmp, n);
    fclose(f);
    return b;
}

static void expect_error(int rc, const kc_error *e, int code, const char *needle) {
    ck_assert_int_eq(rc, code);
    ck_assert_int_eq(e->code, code);
    ck_assert_msg(strstr(e->msg, needle) != NULL, "message '%s' lacks '%s'", e->msg, needle);
}

/* ---- format builders ---- */

static buf idx_bytes(int type, int rank, const uint32_t *dims, const void *payload, size_t n) {
    buf b = {0};
    put_u8(&b, 0);
    put_u8(&b, 0);
    put_u8(&b, (unsigned)type);
    put_u8(&b, (unsigned)rank);
    for (int i = 0; i < rank; i++)
        put_be32(&b, dims[i]);
    put(&b, payload, n);
    return b;
}

/* A .npy with the given header dict, padded to 64 bytes like numpy. */
static buf npy_bytes(int major, const char *dict, const void *payload, size_t n) {
    buf b = {0};
    size_t pre = major == 1 ? 10 : 12;
    size_t len = strlen(dict) + 1;
    size_t total = (pre + len + 63) / 64 * 64;
    put(&b, "\x93NUMPY", 6);
    put_u8(&b, (unsigned)major);
    put_u8(&b, 0);
    if (major == 1)
        put_le16(&b, (unsigned)(total - pre));
    else
        put_le32(&b, (uint32_t)(total - pre));
    put(&b, dict, strlen(dict));
    while (b.n < total - 1)
        put_u8(&b, ' ');
    put_u8(&b, '\n');
    put(&b, payload, n);
    return b;
}

typedef struct zentry {
    const char *name;
    buf data;
} zentry;

static buf deflate_raw(const buf *in) {
    z_stream zs = {0};
    ck_assert_int_eq(deflateInit2(&zs, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    buf out = {0};
    out.cap = deflateBound(&zs, (uLong)in->n) + 16;
    out.p = malloc(out.cap);
    zs.next_in = in->p;
    zs.avail_in = (uInt)in->n;
    zs.next_out = out.p;
    zs.avail_out = (uInt)out.cap;
    ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    out.n = zs.total_out;
    deflateEnd(&zs);
    return out;
}

/* A zip holding the entries, each stored (method 0) or deflated (method 8). */
static buf zip_bytes(const zentry *ents, int n, int method) {
    buf z = {0}, cd = {0};
    for (int i = 0; i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0, ents[i].data.p, (uInt)ents[i].data.n);
        buf comp = method == 8 ? deflate_raw(&ents[i].data) : (buf){0};
        const buf *body = method == 8 ? &comp : &ents[i].data;
        uint32_t offset = (uint32_t)z.n;
        unsigned nlen = (unsigned)strlen(ents[i].name);
        put_le32(&z, 0x04034b50);
        put_le16(&z, 20);
        put_le16(&z, 0);
        put_le16(&z, (unsigned)method);
        put_le32(&z, 0); /* time, date */
        put_le32(&z, crc);
        put_le32(&z, (uint32_t)body->n);
        put_le32(&z, (uint32_t)ents[i].data.n);
        put_le16(&z, nlen);
        put_le16(&z, 0);
        put(&z, ents[i].name, nlen);
        put(&z, body->p, body->n);
        put_le32(&cd, 0x02014b50);
        put_le16(&cd, 20);
        put_le16(&cd, 20);
        put_le16(&cd, 0);
        put_le16(&cd, (unsigned)method);
        put_le32(&cd, 0);
        put_le32(&cd, crc);
        put_le32(&cd, (uint32_t)body->n);
        put_le32(&cd, (uint32_t)ents[i].data.n);
        put_le16(&cd, nlen);
        put_le16(&cd, 0);
        put_le16(&cd, 0);
        put_le16(&cd, 0);
        put_le16(&cd, 0);
        put_le32(&cd, 0);
        put_le32(&cd, offset);
        put(&cd, ents[i].name, nlen);
        free(comp.p);
    }
    uint32_t cd_off = (uint32_t)z.n;
    put(&z, cd.p, cd.n);
    put_le32(&z, 0x06054b50);
    put_le16(&z, 0);
    put_le16(&z, 0);
    put_le16(&z, (unsigned)n);
    put_le16(&z, (unsigned)n);
    put_le32(&z, (uint32_t)cd.n);
    put_le32(&z, cd_off);
    put_le16(&z, 0);
    free(cd.p);
    return z;
}

static void check_u8(const kc_array *a, const uint8_t *want, size_t n) {
    ck_assert_int_eq(a->dtype, KC_DT_U8);
    ck_assert_int_eq(kc_shape_numel(&a->shape), (int64_t)n);
    const uint8_t *d = a->data;
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(d[i] == want[i], "[%zu] %d != %d", i, d[i], want[i]);
}

static void check_f32(const kc_array *a, const float *want, size_t n) {
    ck_assert_int_eq(a->dtype, KC_DT_F32);
    ck_assert_int_eq(kc_shape_numel(&a->shape), (int64_t)n);
    const float *d = a->data;
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(d[i] == want[i], "[%zu] %.9g != %.9g", i, (double)d[i], (double)want[i]);
}

static void check_shape(const kc_array *a, int rank, int64_t d0, int64_t d1, int64_t d2) {
    ck_assert_int_eq(a->shape.rank, rank);
    int64_t d[3] = {d0, d1, d2};
    for (int i = 0; i < rank && i < 3; i++)
        ck_assert_int_eq(a->shape.d[i], d[i]);
}

/* Loading every strict prefix of a file must fail cleanly; so must loading it
 * with any single byte replaced, or else succeed. */
static void fuzz_file(const char *name, const buf *good, const char *key, int gz) {
    const char *p = path_in(name);
    for (size_t len = 0; len < good->n; len++) {
        kc_error e = {0};
        kc_array a;
        if (gz)
            write_gz(p, good->p, len);
        else
            write_file(p, good->p, len);
        int rc = kc_array_load(p, key, &a, &e);
        ck_assert_msg(rc != KC_OK, "%s cut to %zu bytes loaded", name, len);
        ck_assert_msg(strstr(e.msg, p) != NULL, "error '%s' does not name the file", e.msg);
        ck_assert_ptr_null(a.data);
    }
    unsigned char *copy = malloc(good->n);
    const unsigned char repl[3] = {0x00, 0xff, 0x7f};
    for (size_t i = 0; i < good->n; i++)
        for (int r = 0; r < 3; r++) {
            memcpy(copy, good->p, good->n);
            copy[i] = copy[i] == repl[r] ? (unsigned char)(repl[r] ^ 0x55) : repl[r];
            if (gz)
                write_gz(p, copy, good->n);
            else
                write_file(p, copy, good->n);
            kc_error e = {0};
            kc_array a;
            if (kc_array_load(p, key, &a, &e) == KC_OK) {
                ck_assert_ptr_nonnull(a.data);
                kc_array_free(&a);
            } else {
                ck_assert_msg(e.msg[0] != 0, "empty error message");
            }
        }
    free(copy);
}

/* ---- IDX ---- */

START_TEST(idx_raw_u8) {
    uint8_t px[12];
    for (int i = 0; i < 12; i++)
        px[i] = (uint8_t)(i * 21 + 3);
    buf b = idx_bytes(0x08, 3, (uint32_t[]){2, 3, 2}, px, 12);
    write_file(path_in("img"), b.p, b.n);
    kc_array a;
    kc_error e = {0};
    ck_assert_int_eq(kc_array_load(path_in("img"), NULL, &a, &e), KC_OK);
    check_shape(&a, 3, 2, 3, 2);
    check_u8(&a, px, 12);
    ck_assert_int_eq(kc_array_rows(&a), 2);
    ck_assert_int_eq(kc_array_row_size(&a), 6);
    kc_array_free(&a);
    ck_assert_ptr_null(a.data);
    kc_array_free(&a); /* twice is harmless */
    free(b.p);
}
END_TEST

START_TEST(idx_gzip_by_content) {
    uint8_t lab[5] = {9, 0, 0, 3, 255};
    buf b = idx_bytes(0x08, 1, (uint32_t[]){5}, lab, 5);
    /* gzip data under a plain name, and plain data under a .gz name */
    write_gz(path_in("labels"), b.p, b.n);
    write_file(path_in("plain.gz"), b.p, b.n);
    const char *names[2] = {"labels", "plain.gz"};
    for (int k = 0; k < 2; k++) {
        kc_array a;
        kc_error e = {0};
        ck_assert_int_eq(kc_idx_load(path_in(names[k]), &a, &e), KC_OK);
        check_shape(&a, 1, 5, 0, 0);
        check_u8(&a, lab, 5);
        ck_assert_int_eq(kc_array_row_size(&a), 1);
        kc_array_free(&a);
        ck_assert_int_eq(kc_array_load(path_in(names[k]), NULL, &a, &e), KC_OK);
        check_u8(&a, lab, 5);
        kc_array_free(&a);
    }
    free(b.p);
}
END_TEST

START_TEST(idx_other_types_to_f32) {
    struct {
        int type;
        unsigned char bytes[16];
        size_t n;
        float want[2];
    } cases[] = {
        {0x09, {0xfd, 0x7f}, 2, {-3, 127}},
        {0x0B, {0xff, 0xfe, 0x01, 0x2c}, 4, {-2, 300}},
        {0x0C, {0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x00, 0x00}, 8, {-1, 65536}},
        {0x0D, {0x3f, 0xc0, 0, 0, 0xc1, 0x20, 0, 0}, 8, {1.5f, -10}},
        {0x0E, {0x3f, 0xd0, 0, 0, 0, 0, 0, 0, 0xc0, 0x5e, 0xc0, 0, 0, 0, 0, 0}, 16, {0.25f, -123}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        buf b = idx_bytes(cases[k].type, 1, (uint32_t[]){2}, cases[k].bytes, cases[k].n);
        write_gz(path_in("t.gz"), b.p, b.n);
        kc_array a;
        kc_error e = {0};
        ck_assert_int_eq(kc_array_load(path_in("t.gz"), NULL, &a, &e), KC_OK);
        check_shape(&a, 1, 2, 0, 0);
        check_f32(&a, cases[k].want, 2);
        kc_array_free(&a);
        free(b.p);
    }
}
END_TEST

START_TEST(idx_errors) {
    uint8_t px[6] = {1, 2, 3, 4, 5, 6};
    kc_error e = {0};
    kc_array a;
    /* data shorter than the dims say */
    buf b = idx_bytes(0x08, 2, (uint32_t[]){2, 4}, px, 6);
    write_file(path_in("short"), b.p, b.n);
    expect_error(kc_array_load(path_in("short"), NULL, &a, &e), &e, KC_ERUNTIME, "truncated");
    ck_assert_ptr_nonnull(strstr(e.msg, path_in("short")));
    ck_assert_ptr_nonnull(strstr(e.msg, "(2, 4)"));
    ck_assert_ptr_null(a.data);
    free(b.p);
    /* the same, compressed */
    b = idx_bytes(0x08, 2, (uint32_t[]){2, 4}, px, 6);
    write_gz(path_in("short.gz"), b.p, b.n);
    expect_error(kc_array_load(path_in("short.gz"), NULL, &a, &e), &e, KC_ERUNTIME, "truncated");
    free(b.p);
    /* more data than the dims say */
    b = idx_bytes(0x08, 1, (uint32_t[]){4}, px, 6);
    write_file(path_in("long"), b.p, b.n);
    expect_error(kc_array_load(path_in("long"), NULL, &a, &e), &e, KC_ERUNTIME, "unexpected data");
    write_gz(path_in("long.gz"), b.p, b.n);
    expect_error(kc_array_load(path_in("long.gz"), NULL, &a, &e), &e, KC_ERUNTIME,
                 "unexpected data");
    free(b.p);
    /* dims that would need terabytes: refused before allocating */
    b = idx_bytes(0x08, 3, (uint32_t[]){0xffffffff, 0xffffffff, 0xffffffff}, px, 6);
    write_file(path_in("huge"), b.p, b.n);
    expect_error(kc_array_load(path_in("huge"), NULL, &a, &e), &e, KC_ERUNTIME, "truncated");
    write_gz(path_in("huge.gz"), b.p, b.n);
    expect_error(kc_array_load(path_in("huge.gz"), NULL, &a, &e), &e, KC_ERUNTIME, "larger than");
    free(b.p);
    /* bad type code and bad rank */
    b = idx_bytes(0x0A, 1, (uint32_t[]){6}, px, 6);
    write_file(path_in("type"), b.p, b.n);
    expect_error(kc_array_load(path_in("type"), NULL, &a, &e), &e, KC_ERUNTIME, "bad IDX magic");
    free(b.p);
    b = idx_bytes(0x08, 0, NULL, px, 6);
    write_file(path_in("rank0"), b.p, b.n);
    expect_error(kc_array_load(path_in("rank0"), NULL, &a, &e), &e, KC_ERUNTIME, "rank 0");
    free(b.p);
    /* gzip magic followed by garbage */
    write_file(path_in("garbage.gz"), "\x1f\x8b\x08\x00garbage-garbage-garbage", 27);
    ck_assert_int_eq(kc_array_load(path_in("garbage.gz"), NULL, &a, &e), KC_ERUNTIME);
    ck_assert_ptr_nonnull(strstr(e.msg, path_in("garbage.gz")));
    /* empty, missing, directory, unknown content */
    write_file(path_in("empty"), "", 0);
    expect_error(kc_array_load(path_in("empty"), NULL, &a, &e), &e, KC_ERUNTIME, "empty");
    expect_error(kc_array_load(path_in("nope"), NULL, &a, &e), &e, KC_ERUNTIME, "cannot open");
    expect_error(kc_array_load(g_dir, NULL, &a, &e), &e, KC_ERUNTIME, "directory");
    write_text(path_in("text.csv"), "a,b\n1,2\n");
    expect_error(kc_array_load(path_in("text.csv"), NULL, &a, &e), &e, KC_ERUNTIME,
                 "unrecognized format");
    /* a key makes sense only for npz */
    b = idx_bytes(0x08, 1, (uint32_t[]){6}, px, 6);
    write_file(path_in("ok"), b.p, b.n);
    expect_error(kc_array_load(path_in("ok"), "x_train", &a, &e), &e, KC_ECONFIG, "only to .npz");
    free(b.p);
}
END_TEST

START_TEST(idx_fuzz) {
    uint8_t px[8] = {10, 20, 30, 40, 50, 60, 70, 80};
    buf b = idx_bytes(0x08, 2, (uint32_t[]){2, 4}, px, 8);
    fuzz_file("fuzz.idx", &b, NULL, 0);
    fuzz_file("fuzz.idx.gz", &b, NULL, 1);
    free(b.p);
    float f[3] = {1, 2, 3};
    unsigned char be[12];
    for (int i = 0; i < 3; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        for (int k = 0; k < 4; k++)
            be[i * 4 + k] = (unsigned char)(u >> (8 * (3 - k)));
    }
    b = idx_bytes(0x0D, 1, (uint32_t[]){3}, be, 12);
    fuzz_file("fuzz_f.idx", &b, NULL, 0);
    free(b.p);
    /* a gzip file cut short must fail too (a cut member, not a short payload) */
    b = idx_bytes(0x08, 1, (uint32_t[]){64}, (uint8_t[64]){1, 2, 3}, 64);
    write_gz(path_in("whole.gz"), b.p, b.n);
    buf gz = read_all(path_in("whole.gz"));
    for (size_t len = 1; len < gz.n; len++) {
        write_file(path_in("cut.gz"), gz.p, len);
        kc_array a;
        kc_error e = {0};
        ck_assert_msg(kc_array_load(path_in("cut.gz"), NULL, &a, &e) != KC_OK, "cut at %zu", len);
        ck_assert_ptr_nonnull(strstr(e.msg, path_in("cut.gz")));
    }
    free(gz.p);
    free(b.p);
}
END_TEST

/* ---- NPY ---- */

static void load_npy_ok(const buf *b, kc_array *a) {
    write_file(path_in("a.npy"), b->p, b->n);
    kc_error e = {0};
    ck_assert_msg(kc_array_load(path_in("a.npy"), NULL, a, &e) == KC_OK, "%s", e.msg);
}

START_TEST(npy_u1_stays_bytes) {
    uint8_t v[6] = {0, 1, 127, 128, 254, 255};
    buf b = npy_bytes(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2), }", v, 6);
    kc_array a;
    load_npy_ok(&b, &a);
    check_shape(&a, 2, 3, 2, 0);
    check_u8(&a, v, 6);
    kc_array_free(&a);
    free(b.p);
}
END_TEST

START_TEST(npy_numeric_types) {
    float f4[4] = {1.5f, -0.0f, 3.4e38f, -1e-30f};
    double f8[3] = {0.1, -2.5, 1e300};
    int64_t i8[3] = {-5, 1LL << 40, 7};
    int32_t i4[2] = {-70000, 123456};
    int16_t i2[2] = {-32768, 32767};
    uint8_t b1[4] = {0, 1, 1, 0};
    struct {
        const char *dict;
        const void *data;
        size_t n;
        float want[4];
        size_t count;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
         f4,
         16,
         {1.5f, -0.0f, 3.4e38f, -1e-30f},
         4},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
         f8,
         24,
         {0.1f, -2.5f, INFINITY},
         3},
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
         i8,
         24,
         {-5, 1099511627776.0f, 7},
         3},
        {"{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", i4, 8, {-70000, 123456}, 2},
        {"{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }", i2, 4, {-32768, 32767}, 2},
        {"{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }", b1, 4, {0, 1, 1, 0}, 4},
        /* keys in another order, Python 2 long suffix, a 1-wide fortran array */
        {"{'shape': (2L, 1L), 'fortran_order': True, 'descr': '<i4'}", i4, 8, {-70000, 123456}, 2},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        buf b = npy_bytes(1, cases[k].dict, cases[k].data, cases[k].n);
        kc_array a;
        load_npy_ok(&b, &a);
        check_f32(&a, cases[k].want, cases[k].count);
        kc_array_free(&a);
        free(b.p);
    }
    /* f8 converts with rounding to nearest float */
    buf b = npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", f8, 24);
    kc_array a;
    load_npy_ok(&b, &a);
    ck_assert(((float *)a.data)[0] == (float)0.1);
    check_shape(&a, 1, 3, 0, 0);
    kc_array_free(&a);
    free(b.p);
}
END_TEST

START_TEST(npy_versions_and_gzip) {
    float v[3] = {1, 2, 3};
    for (int major = 1; major <= 3; major++) {
        buf b =
            npy_bytes(major, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }", v, 12);
        kc_array a;
        load_npy_ok(&b, &a);
        check_shape(&a, 2, 1, 3, 0);
        check_f32(&a, v, 3);
        kc_array_free(&a);
        write_gz(path_in("a.npy.gz"), b.p, b.n);
        kc_error e = {0};
        ck_assert_int_eq(kc_npy_load(path_in("a.npy.gz"), &a, &e), KC_OK);
        check_f32(&a, v, 3);
        kc_array_free(&a);
        free(b.p);
    }
}
END_TEST

START_TEST(npy_numpy_fixture_big_endian) {
    kc_array a;
    kc_error e = {0};
    ck_assert_msg(kc_array_load(KC_FIXTURES "/be_i2.npy", NULL, &a, &e) == KC_OK, "%s", e.msg);
    check_shape(&a, 2, 2, 2, 0);
    check_f32(&a, (float[]){-2, 300, 7, -32768}, 4);
    kc_array_free(&a);
}
END_TEST

START_TEST(npy_errors) {
    float v[8] = {0};
    struct {
        int major;
        const char *dict;
        size_t n;
        int code;
        const char *needle;
    } cases[] = {
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, KC_ERUNTIME,
         "fortran_order"},
        {1, "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", 24, KC_ERUNTIME,
         "dtype '<c8' is not supported"},
        {1, "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", 24, KC_ERUNTIME, "pickle"},
        {1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", 12, KC_ERUNTIME,
         "structured"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, KC_ERUNTIME,
         "truncated"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24 + 4, KC_ERUNTIME,
         "unexpected data"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4, KC_ERUNTIME, "scalar"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4,
         KC_ERUNTIME, "rank"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 24, KC_ERUNTIME,
         "malformed"},
        {1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3), }", 24, KC_ERUNTIME,
         "malformed"},
        {1, "{'descr': '<f4', 'shape': (2, 3), }", 24, KC_ERUNTIME, "required"},
        {1, "['descr', '<f4']", 24, KC_ERUNTIME, "malformed"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", 24,
         KC_ERUNTIME, "truncated"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        buf b = npy_bytes(cases[k].major, cases[k].dict, v, cases[k].n);
        write_file(path_in("bad.npy"), b.p, b.n);
        kc_array a;
        kc_error e = {0};
        int rc = kc_array_load(path_in("bad.npy"), NULL, &a, &e);
        ck_assert_msg(rc == cases[k].code && strstr(e.msg, cases[k].needle) &&
                          strstr(e.msg, path_in("bad.npy")),
                      "case %zu: rc %d, '%s'", k, rc, e.msg);
        ck_assert_ptr_null(a.data);
        free(b.p);
    }
    /* version 4, and a header length past the end */
    kc_array a;
    kc_error e = {0};
    write_file(path_in("v4.npy"), "\x93NUMPY\x04\x00\x10\x00\x00\x00{}", 14);
    expect_error(kc_array_load(path_in("v4.npy"), NULL, &a, &e), &e, KC_ERUNTIME, "version 4.0");
    write_file(path_in("hl.npy"), "\x93NUMPY\x01\x00\xff\xff{'descr'", 17);
    expect_error(kc_array_load(path_in("hl.npy"), NULL, &a, &e), &e, KC_ERUNTIME, "header length");
    expect_error(kc_npy_load(path_in("v4.npy"), &a, &e), &e, KC_ERUNTIME, "version");
    buf b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", v, 12);
    write_file(path_in("k.npy"), b.p, b.n);
    expect_error(kc_array_load(path_in("k.npy"), "x", &a, &e), &e, KC_ECONFIG, "single .npy");
    free(b.p);
}
END_TEST

START_TEST(npy_fuzz) {
    double v[2] = {1.25, -3};
    buf b = npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", v, 16);
    fuzz_file("fuzz.npy", &b, NULL, 0);
    free(b.p);
    uint8_t u[4] = {1, 2, 3, 4};
    b = npy_bytes(2, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }", u, 4);
    fuzz_file("fuzz2.npy", &b, NULL, 0);
    free(b.p);
}
END_TEST

/* ---- NPZ ---- */

static buf two_array_npz(int method) {
    uint8_t x[12];
    for (int i = 0; i < 12; i++)
        x[i] = (uint8_t)(200 + i);
    float y[3] = {0.5f, -1, 7};
    zentry ents[2] = {
        {"x_train.npy",
         npy_bytes(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2), }", x, 12)},
        {"y_train.npy",
         npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", y, 12)},
    };
    buf z = zip_bytes(ents, 2, method);
    free(ents[0].data.p);
    free(ents[1].data.p);
    return z;
}

START_TEST(npz_stored_and_deflated) {
    for (int m = 0; m < 2; m++) {
        buf z = two_array_npz(m ? 8 : 0);
        write_file(path_in("d.npz"), z.p, z.n);
        kc_array x, y;
        kc_error e = {0};
        ck_assert_msg(kc_array_load(path_in("d.npz"), "x_train", &x, &e) == KC_OK, "%s", e.msg);
        check_shape(&x, 3, 3, 2, 2);
        uint8_t want[12];
        for (int i = 0; i < 12; i++)
            want[i] = (uint8_t)(200 + i);
        check_u8(&x, want, 12);
        ck_assert_int_eq(kc_npz_load(path_in("d.npz"), "y_train.npy", &y, &e), KC_OK);
        check_shape(&y, 1, 3, 0, 0);
        check_f32(&y, (float[]){0.5f, -1, 7}, 3);
        kc_array_free(&x);
        kc_array_free(&y);
        /* choosing is required with two arrays; the message lists them */
        expect_error(kc_array_load(path_in("d.npz"), NULL, &x, &e), &e, KC_ECONFIG,
                     "x_train, y_train");
        expect_error(kc_array_load(path_in("d.npz"), "x_test", &x, &e), &e, KC_ECONFIG,
                     "no array 'x_test'");
        ck_assert_ptr_nonnull(strstr(e.msg, "x_train, y_train"));
        ck_assert_ptr_null(x.data);
        free(z.p);
    }
}
END_TEST

START_TEST(npz_numpy_fixtures) {
    kc_array a;
    kc_error e = {0};
    /* np.savez: one stored array, written with ZIP64 local headers */
    ck_assert_msg(kc_array_load(KC_FIXTURES "/stored.npz", NULL, &a, &e) == KC_OK, "%s", e.msg);
    check_shape(&a, 2, 2, 3, 0);
    check_u8(&a, (uint8_t[]){1, 2, 3, 250, 251, 255}, 6);
    kc_array_free(&a);
    ck_assert_int_eq(kc_array_load(KC_FIXTURES "/stored.npz", "a", &a, &e), KC_OK);
    kc_array_free(&a);
    /* np.savez_compressed */
    ck_assert_msg(kc_array_load(KC_FIXTURES "/deflated.npz", "x", &a, &e) == KC_OK, "%s", e.msg);
    check_shape(&a, 3, 2, 2, 2);
    check_u8(&a, (uint8_t[]){0, 1, 2, 3, 4, 5, 6, 7}, 8);
    kc_array_free(&a);
    ck_assert_int_eq(kc_array_load(KC_FIXTURES "/deflated.npz", "y", &a, &e), KC_OK);
    check_f32(&a, (float[]){-1.5f, 2.25f}, 2);
    kc_array_free(&a);
}
END_TEST

START_TEST(npz_errors) {
    kc_array a;
    kc_error e = {0};
    /* a flipped data byte in a stored entry: CRC mismatch */
    buf z = two_array_npz(0);
    size_t at = 30 + strlen("x_train.npy") + 128 + 5;
    z.p[at] ^= 0x01;
    write_file(path_in("crc.npz"), z.p, z.n);
    expect_error(kc_array_load(path_in("crc.npz"), "x_train", &a, &e), &e, KC_ERUNTIME, "CRC");
    ck_assert_ptr_nonnull(strstr(e.msg, "x_train.npy"));
    free(z.p);
    /* an unsupported method (bzip2 = 12) */
    z = two_array_npz(0);
    z.p[8] = 12;
    size_t cd = z.n - 22 - 2 * (46 + 11);
    z.p[cd + 10] = 12;
    write_file(path_in("bz.npz"), z.p, z.n);
    expect_error(kc_array_load(path_in("bz.npz"), "x_train", &a, &e), &e, KC_ERUNTIME,
                 "compression method 12");
    free(z.p);
    /* ZIP64 marker in the end record */
    z = two_array_npz(0);
    memset(z.p + z.n - 22 + 8, 0xff, 4);
    write_file(path_in("z64.npz"), z.p, z.n);
    expect_error(kc_array_load(path_in("z64.npz"), "x_train", &a, &e), &e, KC_ERUNTIME, "ZIP64");
    free(z.p);
    /* an archive without .npy entries */
    zentry ent = {"readme.txt", {(unsigned char *)"hello", 5, 5}};
    z = zip_bytes(&ent, 1, 0);
    write_file(path_in("none.npz"), z.p, z.n);
    expect_error(kc_array_load(path_in("none.npz"), NULL, &a, &e), &e, KC_ERUNTIME, "no .npy");
    free(z.p);
    /* an entry whose npy is broken reports the entry */
    ent = (zentry){"bad.npy", {(unsigned char *)"\x93NUMPY\x01\x00\x02\x00{}", 12, 12}};
    z = zip_bytes(&ent, 1, 8);
    write_file(path_in("badnpy.npz"), z.p, z.n);
    expect_error(kc_array_load(path_in("badnpy.npz"), NULL, &a, &e), &e, KC_ERUNTIME,
                 "entry bad.npy");
    free(z.p);
    /* a deflated entry that inflates to more than its directory entry declares */
    float v4[4] = {1, 2, 3, 4};
    buf npy = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", v4, 16);
    ent = (zentry){"x.npy", npy};
    z = zip_bytes(&ent, 1, 8);
    size_t usize_at = z.n - 22 - (46 + 5) + 24;
    for (uint32_t declared = 0; declared <= (uint32_t)npy.n; declared += (uint32_t)npy.n - 4) {
        z.p[usize_at] = (unsigned char)declared;
        z.p[usize_at + 1] = (unsigned char)(declared >> 8);
        write_file(path_in("long.npz"), z.p, z.n);
        ck_assert_int_eq(kc_array_load(path_in("long.npz"), "x", &a, &e), KC_ERUNTIME);
        ck_assert_ptr_null(a.data);
        char *bytes = NULL;
        size_t len = 0;
        expect_error(kc_zip_read_member(path_in("long.npz"), "x.npy", 1 << 20, &bytes, &len, &e),
                     &e, KC_ERUNTIME, "inflates to more than");
        ck_assert_ptr_null(bytes);
    }
    free(z.p);
    free(npy.p);
    /* a zip local header magic but no end record */
    write_file(path_in("truncated.npz"), "PK\x03\x04................................", 36);
    expect_error(kc_array_load(path_in("truncated.npz"), NULL, &a, &e), &e, KC_ERUNTIME,
                 "end-of-central-directory");
}
END_TEST

START_TEST(npz_fuzz) {
    buf z = two_array_npz(8);
    fuzz_file("fuzz8.npz", &z, "y_train", 0);
    free(z.p);
    z = two_array_npz(0);
    fuzz_file("fuzz0.npz", &z, "x_train", 0);
    free(z.p);
}
END_TEST

/* ---- CSV ---- */

START_TEST(csv_header_label_by_name) {
    write_text(path_in("d.csv"), "\xEF\xBB\xBF"
                                 "f1, \"label\" ,f2\r\n"
                                 "1.5,2,-3e2\r\n"
                                 "\r\n"
                                 "  4 , 0 , \"5\"\r\n");
    kc_array x, y;
    kc_error e = {0};
    ck_assert_msg(kc_csv_load(path_in("d.csv"), "label", -1, &x, &y, &e) == KC_OK, "%s", e.msg);
    check_shape(&x, 2, 2, 2, 0);
    check_f32(&x, (float[]){1.5f, -300, 4, 5}, 4);
    check_shape(&y, 1, 2, 0, 0);
    check_f32(&y, (float[]){2, 0}, 2);
    kc_array_free(&x);
    kc_array_free(&y);
    /* the same by index, positive and negative */
    ck_assert_int_eq(kc_csv_load(path_in("d.csv"), "1", 1, &x, &y, &e), KC_OK);
    check_f32(&y, (float[]){2, 0}, 2);
    kc_array_free(&x);
    kc_array_free(&y);
    ck_assert_int_eq(kc_csv_load(path_in("d.csv"), "-1", -1, &x, &y, &e), KC_OK);
    check_f32(&x, (float[]){1.5f, 2, 4, 0}, 4);
    check_f32(&y, (float[]){-300, 5}, 2);
    kc_array_free(&x);
    kc_array_free(&y);
}
END_TEST

START_TEST(csv_no_header) {
    write_text(path_in("n.csv"), "0.25,1,2\n3,4,5\n6,7,8");
    kc_array x, y;
    kc_error e = {0};
    /* auto: the first row is numbers, so it is data */
    ck_assert_int_eq(kc_csv_load(path_in("n.csv"), "0", -1, &x, &y, &e), KC_OK);
    check_shape(&x, 2, 3, 2, 0);
    check_f32(&x, (float[]){1, 2, 4, 5, 7, 8}, 6);
    check_f32(&y, (float[]){0.25f, 3, 6}, 3);
    kc_array_free(&x);
    kc_array_free(&y);
    /* forced header: the first row becomes names */
    ck_assert_int_eq(kc_csv_load(path_in("n.csv"), "-1", 1, &x, &y, &e), KC_OK);
    check_f32(&x, (float[]){3, 4, 6, 7}, 4);
    check_f32(&y, (float[]){5, 8}, 2);
    kc_array_free(&x);
    kc_array_free(&y);
    /* no label: everything is a feature, y stays empty */
    ck_assert_int_eq(kc_csv_load(path_in("n.csv"), NULL, 0, &x, NULL, &e), KC_OK);
    check_shape(&x, 2, 3, 3, 0);
    check_f32(&x, (float[]){0.25f, 1, 2, 3, 4, 5, 6, 7, 8}, 9);
    kc_array_free(&x);
    ck_assert_int_eq(kc_csv_load(path_in("n.csv"), NULL, 0, &x, &y, &e), KC_OK);
    ck_assert_ptr_null(y.data);
    kc_array_free(&x);
}
END_TEST

START_TEST(csv_many_rows) {
    int rows = kc_test_quick() ? 700 : 3000;
    FILE *f = fopen(path_in("big.csv"), "w");
    fprintf(f, "a,b,y\n");
    for (int i = 0; i < rows; i++)
        fprintf(f, "%d,%d.5,%d\n", i, -i, i % 3);
    fclose(f);
    kc_array x, y;
    kc_error e = {0};
    ck_assert_int_eq(kc_csv_load(path_in("big.csv"), "y", -1, &x, &y, &e), KC_OK);
    check_shape(&x, 2, rows, 2, 0);
    const float *xd = x.data, *yd = y.data;
    for (int i = 0; i < rows; i++) {
        ck_assert(xd[2 * i] == (float)i);
        ck_assert(xd[2 * i + 1] == -(float)i - (i ? 0.5f : -0.5f));
        ck_assert(yd[i] == (float)(i % 3));
    }
    kc_array_free(&x);
    kc_array_free(&y);
}
END_TEST

START_TEST(csv_errors) {
    struct {
        const char *text, *label;
        int header, code;
        const char *needle;
    } cases[] = {
        {"a,b,c\n1,2,3\n4,x5,6\n", "c", -1, KC_ERUNTIME, ":3: column 'b': 'x5' is not a number"},
        {"1,2,3\n4,5,oops\n", "0", -1, KC_ERUNTIME, ":2: column 2: 'oops'"},
        {"a,b,kind\n1,2,setosa\n", "kind", -1, KC_ERUNTIME, "labels must be"},
        {"a,b,c\n1,2,3\n4,5\n", "c", -1, KC_ERUNTIME, ":3: expected 3 fields, found 2"},
        {"a,b,c\n1,,3\n", "c", -1, KC_ERUNTIME, ":2: column 'b' is empty"},
        {"a,b,c\n1,2,3\n", "label", -1, KC_ECONFIG,
         "no column named 'label' (columns: 'a', 'b', 'c')"},
        {"1,2,3\n", "label", -1, KC_ECONFIG, "no header"},
        {"a,b,c\n1,2,3\n", "3", -1, KC_ECONFIG, "out of range"},
        {"a,b,c\n1,2,3\n", "-4", -1, KC_ECONFIG, "out of range"},
        {"", "0", -1, KC_ERUNTIME, "no rows"},
        {"a,b\n\n", "a", -1, KC_ERUNTIME, "no data rows"},
        {"y\n1\n", "y", -1, KC_ERUNTIME, "no feature columns"},
        {"a,\"b\n1,2\n", "a", -1, KC_ERUNTIME, ":1: unterminated"},
        {"a,\"b\"x,c\n", "a", -1, KC_ERUNTIME, "after a closing quote"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        write_text(path_in("bad.csv"), cases[k].text);
        kc_array x, y;
        kc_error e = {0};
        int rc = kc_csv_load(path_in("bad.csv"), cases[k].label, cases[k].header, &x, &y, &e);
        ck_assert_msg(rc == cases[k].code && strstr(e.msg, cases[k].needle) &&
                          strstr(e.msg, path_in("bad.csv")),
                      "case %zu: rc %d '%s'", k, rc, e.msg);
        ck_assert_ptr_null(x.data);
        ck_assert_ptr_null(y.data);
    }
    kc_array x, y;
    kc_error e = {0};
    expect_error(kc_csv_load(path_in("absent.csv"), NULL, -1, &x, &y, &e), &e, KC_ERUNTIME,
                 "cannot open");
}
END_TEST

/* ---- gather and split ---- */

START_TEST(gather_u8_and_f32) {
    uint8_t px[12];
    for (int i = 0; i < 12; i++)
        px[i] = (uint8_t)(i * 23);
    kc_array a;
    kc_error e = {0};
    ck_assert_int_eq(kc_array_alloc(&a, KC_DT_U8, &(kc_shape){2, {4, 3}}, &e), KC_OK);
    memcpy(a.data, px, 12);
    int64_t idx[3] = {3, 0, 3};
    float out[9];
    /* 1/255: exactly numpy's float32 x / 255 */
    kc_array_gather(&a, idx, 3, 1.0f / 255.0f, 0.0f, out);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            ck_assert(out[i * 3 + j] == (float)px[idx[i] * 3 + j] / 255.0f);
    /* a general scale and offset */
    kc_array_gather(&a, idx, 3, 0.3f, -1.0f, out);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            ck_assert(out[i * 3 + j] == (float)px[idx[i] * 3 + j] * 0.3f - 1.0f);
    ck_assert_close(out[1], 230 * 0.3 - 1, 1e-5, 0); /* row 3, column 1: 230 */
    kc_array_free(&a);

    ck_assert_int_eq(kc_array_alloc(&a, KC_DT_F32, &(kc_shape){2, {3, 2}}, &e), KC_OK);
    float *d = a.data;
    for (int i = 0; i < 6; i++)
        d[i] = (float)i - 2.5f;
    int64_t idx2[2] = {2, 1};
    float o2[4];
    kc_array_gather(&a, idx2, 2, 1.0f, 0.0f, o2);
    check_f32(&(kc_array){KC_DT_F32, {1, {4}}, o2}, (float[]){1.5f, 2.5f, -0.5f, 0.5f}, 4);
    kc_array_gather(&a, idx2, 2, 2.0f, 1.0f, o2);
    check_f32(&(kc_array){KC_DT_F32, {1, {4}}, o2}, (float[]){4, 6, 0, 2}, 4);
    kc_array_gather(&a, idx2, 2, 0.25f, 0.0f, o2);
    check_f32(&(kc_array){KC_DT_F32, {1, {4}}, o2}, (float[]){0.375f, 0.625f, -0.125f, 0.125f}, 4);
    kc_array_free(&a);
}
END_TEST

START_TEST(split_tail_rows) {
    kc_array a, t;
    kc_error e = {0};
    ck_assert_int_eq(kc_array_alloc(&a, KC_DT_U8, &(kc_shape){3, {10, 2, 1}}, &e), KC_OK);
    for (int i = 0; i < 20; i++)
        ((uint8_t *)a.data)[i] = (uint8_t)i;
    /* Keras validation_split=0.25 on 10 samples: the last 10 - floor(7.5) = 3 */
    ck_assert_int_eq(kc_array_split_tail(&a, 3, &t, &e), KC_OK);
    check_shape(&a, 3, 7, 2, 1);
    check_shape(&t, 3, 3, 2, 1);
    uint8_t head[14], tail[6];
    for (int i = 0; i < 14; i++)
        head[i] = (uint8_t)i;
    for (int i = 0; i < 6; i++)
        tail[i] = (uint8_t)(14 + i);
    check_u8(&a, head, 14);
    check_u8(&t, tail, 6);
    kc_array_free(&t);
    /* zero rows, then all rows */
    ck_assert_int_eq(kc_array_split_tail(&a, 0, &t, &e), KC_OK);
    ck_assert_int_eq(kc_array_rows(&t), 0);
    check_shape(&a, 3, 7, 2, 1);
    kc_array_free(&t);
    ck_assert_int_eq(kc_array_split_tail(&a, 7, &t, &e), KC_OK);
    ck_assert_int_eq(kc_array_rows(&a), 0);
    check_u8(&t, head, 14);
    kc_array_free(&t);
    expect_error(kc_array_split_tail(&a, 1, &t, &e), &e, KC_ERUNTIME, "cannot split");
    expect_error(kc_array_split_tail(&a, -1, &t, &e), &e, KC_ERUNTIME, "cannot split");
    kc_array_free(&a);
    /* float rows */
    ck_assert_int_eq(kc_array_alloc(&a, KC_DT_F32, &(kc_shape){1, {4}}, &e), KC_OK);
    for (int i = 0; i < 4; i++)
        ((float *)a.data)[i] = (float)i + 0.5f;
    ck_assert_int_eq(kc_array_split_tail(&a, 1, &t, &e), KC_OK);
    check_f32(&a, (float[]){0.5f, 1.5f, 2.5f}, 3);
    check_f32(&t, (float[]){3.5f}, 1);
    kc_array_free(&a);
    kc_array_free(&t);
}
END_TEST

/* ---- writing ---- */

static int count_entries(const char *dir) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

START_TEST(npy_write_round_trip) {
    float v[6] = {0.1f, -2, 3.5f, 1e-7f, -0.0f, 65504};
    kc_error e = {0};
    kc_shape s = kc_shape2(2, 3);
    ck_assert_int_eq(kc_npy_write(path_in("p.npy"), v, &s, &e), KC_OK);
    buf b = read_all(path_in("p.npy"));
    /* exactly what numpy writes for np.save(path, np.zeros((2, 3), '<f4')) */
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    ck_assert_uint_eq(b.n, 128 + 24);
    ck_assert_int_eq(memcmp(b.p, "\x93NUMPY\x01\x00\x76\x00", 10), 0);
    ck_assert_int_eq(memcmp(b.p + 10, dict, strlen(dict)), 0);
    for (size_t i = 10 + strlen(dict); i < 127; i++)
        ck_assert_int_eq(b.p[i], ' ');
    ck_assert_int_eq(b.p[127], '\n');
    ck_assert_int_eq(memcmp(b.p + 128, "\xcd\xcc\xcc\x3d", 4), 0); /* 0.1f little-endian */
    free(b.p);
    kc_array a;
    ck_assert_int_eq(kc_array_load(path_in("p.npy"), NULL, &a, &e), KC_OK);
    check_shape(&a, 2, 2, 3, 0);
    check_f32(&a, v, 6);
    kc_array_free(&a);
    /* rank 1 prints numpy's one-tuple; overwrite leaves no temporary behind */
    s = kc_shape1(6);
    ck_assert_int_eq(kc_npy_write(path_in("p.npy"), v, &s, &e), KC_OK);
    b = read_all(path_in("p.npy"));
    ck_assert_ptr_nonnull(memmem(b.p, b.n, "'shape': (6,), }", 16));
    free(b.p);
    ck_assert_int_eq(count_entries(g_dir), 1);
    expect_error(kc_npy_write(path_in("no/such/dir.npy"), v, &s, &e), &e, KC_ERUNTIME,
                 "no/such/dir.npy");
    ck_assert_int_eq(count_entries(g_dir), 1);
}
END_TEST

START_TEST(csv_write_round_trip) {
    float v[8] = {0.1f, 1.0f / 3.0f, -2, 1e-8f, 123456789.0f, NAN, -INFINITY, 0};
    const char *names[4] = {"a", "b,c", "say \"hi\"", "d"};
    kc_error e = {0};
    ck_assert_int_eq(kc_csv_write(path_in("o.csv"), v, 2, 4, names, &e), KC_OK);
    buf b = read_all(path_in("o.csv"));
    put_u8(&b, 0);
    ck_assert_str_eq((char *)b.p, "a,\"b,c\",\"say \"\"hi\"\"\",d\n"
                                  "0.1,0.33333334,-2,1e-08\n"
                                  "1.2345679e+08,nan,-inf,0\n");
    free(b.p);
    ck_assert_int_eq(kc_csv_write(path_in("o.csv"), v, 2, 4, NULL, &e), KC_OK);
    kc_array x;
    ck_assert_int_eq(kc_csv_load(path_in("o.csv"), NULL, 0, &x, NULL, &e), KC_OK);
    check_shape(&x, 2, 2, 4, 0);
    const float *d = x.data;
    for (int i = 0; i < 8; i++)
        ck_assert(i == 5 ? isnan(d[i]) : d[i] == v[i]);
    kc_array_free(&x);
    ck_assert_int_eq(count_entries(g_dir), 1);
    expect_error(kc_csv_write(path_in("none/o.csv"), v, 2, 4, NULL, &e), &e, KC_ERUNTIME,
                 "none/o.csv");
}
END_TEST

/* ---- datasets ---- */

typedef struct env_save {
    char *home, *kh;
} env_save;

static env_save env_push(const char *home, const char *kh) {
    env_save s = {getenv("HOME") ? strdup(getenv("HOME")) : NULL,
                  getenv("KERAS_HOME") ? strdup(getenv("KERAS_HOME")) : NULL};
    setenv("HOME", home, 1);
    if (kh)
        setenv("KERAS_HOME", kh, 1);
    else
        unsetenv("KERAS_HOME");
    return s;
}

static void env_pop(env_save s) {
    if (s.home)
        setenv("HOME", s.home, 1);
    else
        unsetenv("HOME");
    if (s.kh)
        setenv("KERAS_HOME", s.kh, 1);
    else
        unsetenv("KERAS_HOME");
    free(s.home);
    free(s.kh);
}

static void free4(kc_array *a) {
    for (int i = 0; i < 4; i++)
        kc_array_free(&a[i]);
}

/* Four small IDX gz files: n_train / n_test images of 2x3 pixels, labels i % 10. */
static void write_idx_set(const char *dir, int n_train, int n_test, int skip) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int k = 0; k < 4; k++) {
        if (k == skip) continue;
        int n = k < 2 ? n_train : n_test;
        uint8_t data[600];
        for (int i = 0; i < n * 6; i++)
            data[i] = (uint8_t)(i + 100 * k);
        for (int i = 0; i < n; i++)
            if (k % 2) data[i] = (uint8_t)((i + k) % 10);
        buf b = k % 2 ? idx_bytes(0x08, 1, (uint32_t[]){(uint32_t)n}, data, (size_t)n)
                      : idx_bytes(0x08, 3, (uint32_t[]){(uint32_t)n, 2, 3}, data, (size_t)n * 6);
        char p[4300];
        snprintf(p, sizeof p, "%s/%s", dir, names[k]);
        /* the test labels uncompressed, under the raw name */
        if (k == 3) {
            p[strlen(p) - 3] = 0;
            write_file(p, b.p, b.n);
        } else {
            write_gz(p, b.p, b.n);
        }
        free(b.p);
    }
}

START_TEST(dataset_fashion_real) {
    const char *sys = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(sys, &st) != 0) {
        fprintf(stderr,
                "skipping dataset_fashion_real: %s is absent "
                "(apt-get install dataset-fashion-mnist)\n",
                sys);
        return;
    }
    kc_array a[4];
    kc_error e = {0};
    /* found by the search once nothing is cached under a fresh home */
    env_save s = env_push(path_in("home"), NULL);
    int rc = kc_dataset_load("fashion_mnist", NULL, &a[0], &a[1], &a[2], &a[3], &e);
    env_pop(s);
    ck_assert_msg(rc == KC_OK, "%s", e.msg);
    check_shape(&a[0], 3, 60000, 28, 28);
    check_shape(&a[1], 1, 60000, 0, 0);
    check_shape(&a[2], 3, 10000, 28, 28);
    check_shape(&a[3], 1, 10000, 0, 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(a[i].dtype, KC_DT_U8);
    const uint8_t *xtr = a[0].data, *ytr = a[1].data, *xte = a[2].data, *yte = a[3].data;
    /* first training sample is an ankle boot (9), the first test one too */
    ck_assert_int_eq(ytr[0], 9);
    ck_assert_int_eq(ytr[1], 0);
    ck_assert_int_eq(ytr[59999], 5);
    ck_assert_int_eq(yte[0], 9);
    ck_assert_int_eq(yte[1], 2);
    long sum0 = 0, sum_last = 0, sum_t0 = 0;
    for (int i = 0; i < 784; i++) {
        sum0 += xtr[i];
        sum_last += xtr[59999 * 784 + i];
        sum_t0 += xte[i];
    }
    ck_assert_int_eq(sum0, 76247);
    ck_assert_int_eq(sum_last, 16684);
    ck_assert_int_eq(sum_t0, 33456);
    int count[10] = {0};
    for (int i = 0; i < 60000; i++)
        count[ytr[i]]++;
    for (int c = 0; c < 10; c++)
        ck_assert_int_eq(count[c], 6000);
    free4(a);
    /* the same directory given explicitly */
    ck_assert_int_eq(kc_dataset_load("fashion-mnist", sys, &a[0], &a[1], &a[2], &a[3], &e), KC_OK);
    ck_assert_int_eq(((uint8_t *)a[1].data)[0], 9);
    ck_assert_int_eq(kc_array_rows(&a[2]), 10000);
    free4(a);
}
END_TEST

START_TEST(dataset_from_user_dir_and_cache) {
    kc_array a[4];
    kc_error e = {0};
    write_idx_set(path_in("fm"), 5, 3, -1);
    ck_assert_msg(kc_dataset_load("fashion_mnist", path_in("fm"), &a[0], &a[1], &a[2], &a[3], &e) ==
                      KC_OK,
                  "%s", e.msg);
    check_shape(&a[0], 3, 5, 2, 3);
    check_shape(&a[2], 3, 3, 2, 3);
    check_u8(&a[1], (uint8_t[]){1, 2, 3, 4, 5}, 5);
    check_u8(&a[3], (uint8_t[]){3, 4, 5}, 3);
    ck_assert_int_eq(((uint8_t *)a[2].data)[17], 17 + 200);
    free4(a);
    /* Keras's cache under $HOME/.keras wins over the system copy */
    write_idx_set(path_in("home/.keras/datasets/fashion-mnist"), 4, 2, -1);
    env_save s = env_push(path_in("home"), NULL);
    int rc = kc_dataset_load("fashion_mnist", NULL, &a[0], &a[1], &a[2], &a[3], &e);
    env_pop(s);
    ck_assert_msg(rc == KC_OK, "%s", e.msg);
    ck_assert_int_eq(kc_array_rows(&a[0]), 4);
    free4(a);
    /* mnist.npz under $KERAS_HOME/datasets, before ~/.keras */
    uint8_t x[2 * 6], y[2] = {7, 1};
    for (int i = 0; i < 12; i++)
        x[i] = (uint8_t)(i * 10);
    const char *ximg = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 3), }";
    const char *ylab = "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }";
    zentry ents[4] = {{"x_train.npy", npy_bytes(1, ximg, x, 12)},
                      {"y_train.npy", npy_bytes(1, ylab, y, 2)},
                      {"x_test.npy", npy_bytes(1, ximg, x, 12)},
                      {"y_test.npy", npy_bytes(1, ylab, y, 2)}};
    buf z = zip_bytes(ents, 4, 8);
    for (int i = 0; i < 4; i++)
        free(ents[i].data.p);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path_in("kh/datasets"));
    ck_assert_int_eq(system(cmd), 0);
    write_file(path_in("kh/datasets/mnist.npz"), z.p, z.n);
    s = env_push(path_in("home"), path_in("kh"));
    rc = kc_dataset_load("mnist", NULL, &a[0], &a[1], &a[2], &a[3], &e);
    env_pop(s);
    ck_assert_msg(rc == KC_OK, "%s", e.msg);
    check_shape(&a[0], 3, 2, 2, 3);
    check_u8(&a[0], x, 12);
    check_u8(&a[1], y, 2);
    check_u8(&a[3], y, 2);
    free4(a);
    /* the npz given as the user's path */
    ck_assert_int_eq(
        kc_dataset_load("mnist", path_in("kh/datasets/mnist.npz"), &a[0], &a[1], &a[2], &a[3], &e),
        KC_OK);
    check_u8(&a[2], x, 12);
    free4(a);
    free(z.p);
}
END_TEST

START_TEST(dataset_not_found_and_damaged) {
    kc_array a[4];
    kc_error e = {0};
    /* mnist: every place is listed, with the download address */
    int system_copy = access("/tmp/.keras/datasets/mnist.npz", F_OK) == 0 ||
                      access("/usr/share/datasets/mnist", F_OK) == 0;
    env_save s = env_push(path_in("home"), path_in("kh"));
    int rc = kc_dataset_load("mnist", NULL, &a[0], &a[1], &a[2], &a[3], &e);
    env_pop(s);
    if (system_copy) {
        fprintf(stderr, "skipping the mnist not-found check: a system copy exists\n");
        if (rc == KC_OK) free4(a);
    } else {
        ck_assert_int_eq(rc, KC_ERUNTIME);
        const char *places[5] = {path_in("kh/datasets/mnist.npz"),
                                 path_in("home/.keras/datasets/mnist.npz"),
                                 "/tmp/.keras/datasets/mnist.npz", "/usr/share/datasets/mnist",
                                 "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
                                 "mnist.npz"};
        for (int i = 0; i < 5; i++)
            ck_assert_msg(strstr(e.msg, places[i]), "'%s' lacks %s", e.msg, places[i]);
        ck_assert_ptr_null(a[0].data);
    }
    /* the user's path wins: nothing else is searched */
    rc = kc_dataset_load("fashion_mnist", path_in("missing"), &a[0], &a[1], &a[2], &a[3], &e);
    expect_error(rc, &e, KC_ERUNTIME, path_in("missing"));
    ck_assert_ptr_nonnull(strstr(e.msg, "apt-get install dataset-fashion-mnist"));
    ck_assert_ptr_null(strstr(e.msg, "/usr/share/datasets/fashion-mnist:"));
    /* an incomplete directory says what is missing */
    write_idx_set(path_in("part"), 3, 2, 2);
    rc = kc_dataset_load("fashion_mnist", path_in("part"), &a[0], &a[1], &a[2], &a[3], &e);
    expect_error(rc, &e, KC_ERUNTIME, "no t10k-images-idx3-ubyte");
    /* a damaged file is reported, not skipped */
    write_idx_set(path_in("bad"), 3, 2, -1);
    write_file(path_in("bad/train-labels-idx1-ubyte.gz"), "\x1f\x8b\x08junk", 7);
    rc = kc_dataset_load("fashion_mnist", path_in("bad"), &a[0], &a[1], &a[2], &a[3], &e);
    expect_error(rc, &e, KC_ERUNTIME, "train-labels-idx1-ubyte.gz");
    for (int i = 0; i < 4; i++)
        ck_assert_ptr_null(a[i].data);
    /* train labels that do not match the images */
    write_idx_set(path_in("mismatch"), 3, 2, 1);
    buf b = idx_bytes(0x08, 1, (uint32_t[]){4}, (uint8_t[]){1, 2, 3, 4}, 4);
    write_file(path_in("mismatch/train-labels-idx1-ubyte"), b.p, b.n);
    free(b.p);
    rc = kc_dataset_load("fashion_mnist", path_in("mismatch"), &a[0], &a[1], &a[2], &a[3], &e);
    expect_error(rc, &e, KC_ERUNTIME, "training images (3, 2, 3)");
    /* labels outside 0..9 */
    write_idx_set(path_in("lab"), 3, 2, 1);
    b = idx_bytes(0x08, 1, (uint32_t[]){3}, (uint8_t[]){1, 12, 3}, 3);
    write_file(path_in("lab/train-labels-idx1-ubyte"), b.p, b.n);
    free(b.p);
    rc = kc_dataset_load("fashion_mnist", path_in("lab"), &a[0], &a[1], &a[2], &a[3], &e);
    expect_error(rc, &e, KC_ERUNTIME, "label 1 is 12");
    /* unknown names are a config error */
    rc = kc_dataset_load("svhn", NULL, &a[0], &a[1], &a[2], &a[3], &e);
    expect_error(rc, &e, KC_ECONFIG, "unknown dataset 'svhn'");
}
END_TEST

static Suite *data_suite(void) {
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("data");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, idx_raw_u8);
    tcase_add_test(tc, idx_gzip_by_content);
    tcase_add_test(tc, idx_other_types_to_f32);
    tcase_add_test(tc, idx_errors);
    tcase_add_test(tc, idx_fuzz);
    tcase_add_test(tc, npy_u1_stays_bytes);
    tcase_add_test(tc, npy_numeric_types);
    tcase_add_test(tc, npy_versions_and_gzip);
    tcase_add_test(tc, npy_numpy_fixture_big_endian);
    tcase_add_test(tc, npy_errors);
    tcase_add_test(tc, npy_fuzz);
    tcase_add_test(tc, npz_stored_and_deflated);
    tcase_add_test(tc, npz_numpy_fixtures);
    tcase_add_test(tc, npz_errors);
    tcase_add_test(tc, npz_fuzz);
    tcase_add_test(tc, csv_header_label_by_name);
    tcase_add_test(tc, csv_no_header);
    tcase_add_test(tc, csv_many_rows);
    tcase_add_test(tc, csv_errors);
    tcase_add_test(tc, gather_u8_and_f32);
    tcase_add_test(tc, split_tail_rows);
    tcase_add_test(tc, npy_write_round_trip);
    tcase_add_test(tc, csv_write_round_trip);
    tcase_add_test(tc, dataset_fashion_real);
    tcase_add_test(tc, dataset_from_user_dir_and_cache);
    tcase_add_test(tc, dataset_not_found_and_damaged);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return kc_test_run(data_suite());
}
