/* safetensors files as kc_st_open reads them: every tensor it hands out is
 * aligned for its dtype, holds the bytes its shape says and is found by its
 * name; and what it accepts, kc_st_write writes back as a file that reads
 * back the same. */
#include "tests/fuzz/fuzz_util.h"

#include "core/safetensors.h"
#include "tests/fuzz/fuzz_st_mutator.h"

static void check_file(const kc_st_file *f) {
    for (int i = 0; i < kc_st_count(f); i++) {
        const kc_st_tensor *t = kc_st_at(f, i);
        FUZZ_CHECK(t && t->name, "tensor %d", i);
        size_t es = kc_st_dtype_size(t->dtype);
        FUZZ_CHECK(es == 1 || es == 2 || es == 4 || es == 8, "dtype %d", (int)t->dtype);
        FUZZ_CHECK(kc_shape_numel(&t->shape) >= 0, "tensor '%s' has no element count", t->name);
        FUZZ_CHECK(t->data && (uintptr_t)t->data % es == 0, "tensor '%s' misaligned", t->name);
        fuzz_touch(t->data, kc_st_nbytes(t));
        FUZZ_CHECK(kc_st_find(f, t->name) == t, "tensor '%s' not found by name", t->name);
    }
    FUZZ_CHECK(kc_st_at(f, kc_st_count(f)) == NULL, "tensor past the end");
    for (int i = 0; i < kc_st_meta_count(f); i++) {
        const char *v = NULL, *k = kc_st_meta_at(f, i, &v);
        FUZZ_CHECK(k && v && kc_st_meta(f, k) == v, "metadata %d", i);
    }
}

static void same_file(const kc_st_file *a, const kc_st_file *b) {
    FUZZ_CHECK(kc_st_count(a) == kc_st_count(b), "tensor count changed");
    FUZZ_CHECK(kc_st_meta_count(a) == kc_st_meta_count(b), "metadata count changed");
    for (int i = 0; i < kc_st_count(a); i++) {
        const kc_st_tensor *t = kc_st_at(a, i), *u = kc_st_find(b, t->name);
        FUZZ_CHECK(u && u->dtype == t->dtype && kc_shape_equal(&u->shape, &t->shape),
                   "tensor '%s' changed", t->name);
        FUZZ_CHECK(!memcmp(u->data, t->data, kc_st_nbytes(t)), "data of '%s' changed", t->name);
    }
    for (int i = 0; i < kc_st_meta_count(a); i++) {
        const char *v, *k = kc_st_meta_at(a, i, &v), *w = kc_st_meta(b, k);
        FUZZ_CHECK(w && !strcmp(v, w), "metadata '%s' changed", k);
    }
}

/* Writes what was read and reads it back. */
static void round_trip(const kc_st_file *f) {
    int n = kc_st_count(f), nm = kc_st_meta_count(f);
    kc_st_tensor *t = calloc((size_t)n + 1, sizeof *t);
    const char **meta = calloc(2 * (size_t)nm + 1, sizeof *meta);
    FUZZ_CHECK(t && meta, "out of memory");
    for (int i = 0; i < n; i++)
        t[i] = *kc_st_at(f, i);
    for (int i = 0; i < nm; i++)
        meta[2 * i] = kc_st_meta_at(f, i, &meta[2 * i + 1]);
    char out[4200];
    fuzz_path("safetensors", "copy.safetensors", out, sizeof out);
    kc_error e = {0};
    FUZZ_CHECK(kc_st_write(out, t, n, meta, &e) == KC_OK, "writing back: %s", e.msg);
    kc_st_file *g;
    FUZZ_CHECK(kc_st_open(out, &g, &e) == KC_OK, "reading back: %s", e.msg);
    same_file(f, g);
    kc_st_close(g);
    free(t);
    free(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[4200];
    fuzz_write("safetensors", "data.safetensors", data, size, path, sizeof path);
    kc_error e = {0};
    kc_st_file *f;
    if (kc_st_open(path, &f, &e)) {
        FUZZ_CHECK(e.msg[0] && !f, "failed open");
        return 0;
    }
    check_file(f);
    round_trip(f);
    kc_st_close(f);
    return 0;
}
