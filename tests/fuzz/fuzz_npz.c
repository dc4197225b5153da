/* .npz archives (stored or deflated .npy members): the only array, the
 * member "x" by key (kc_npz_load and kc_array_load must agree), and the same
 * member read as raw bytes with kc_zip_read_member, which must load as the
 * same .npy. */
#include "tests/fuzz/fuzz_array.h"

/* The member's bytes, written out and loaded as a plain .npy, equal the array. */
static void same_as_member(const char *path, const kc_array *a) {
    kc_error e = {0};
    char *bytes;
    size_t len;
    int rc = kc_zip_read_member(path, "x.npy", (size_t)64 << 20, &bytes, &len, &e);
    FUZZ_CHECK(rc == KC_OK, "key x loads but member x.npy does not: %s", e.msg);
    char npy[4200];
    fuzz_write("npz", "member.npy", (const uint8_t *)bytes, len, npy, sizeof npy);
    free(bytes);
    kc_array m;
    rc = kc_npy_load(npy, &m, &e);
    FUZZ_CHECK(rc == KC_OK, "member x.npy does not load by itself: %s", e.msg);
    fuzz_same_array(a, &m);
    kc_array_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[4200];
    fuzz_write("npz", "data.npz", data, size, path, sizeof path);
    kc_error e = {0};
    kc_array a, b;
    if (kc_npz_load(path, NULL, &a, &e) == KC_OK) fuzz_check_array(&a);
    FUZZ_CHECK(!a.data, "failed load left data");
    int rc = kc_npz_load(path, "x", &a, &e);
    int rc2 = kc_array_load(path, "x", &b, &e);
    /* kc_array_load knows an archive by its first bytes; kc_npz_load reads from the end */
    int zip_magic = size >= 4 && (!memcmp(data, "PK\3\4", 4) || !memcmp(data, "PK\5\6", 4));
    if (rc == KC_OK && zip_magic) {
        FUZZ_CHECK(rc2 == KC_OK, "kc_npz_load accepts what kc_array_load refuses: %s", e.msg);
        fuzz_same_array(&a, &b);
    }
    if (rc == KC_OK) {
        same_as_member(path, &a);
        fuzz_check_array(&a);
    }
    if (rc2 == KC_OK) fuzz_check_array(&b);
    return 0;
}
