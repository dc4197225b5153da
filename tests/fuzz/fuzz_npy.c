/* .npy files (versions 1-3, raw or gzip) as kc_npy_load reads them, and the
 * same bytes through kc_array_load's content sniffing, which must agree. */
#include "tests/fuzz/fuzz_array.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[4200];
    fuzz_write("npy", "data.npy", data, size, path, sizeof path);
    kc_error e = {0};
    kc_array a, b;
    int rc = kc_npy_load(path, &a, &e);
    FUZZ_CHECK(rc == KC_OK || (e.msg[0] && !a.data), "failed load left data (rc %d)", rc);
    int rc2 = kc_array_load(path, NULL, &b, &e);
    if (rc == KC_OK) {
        FUZZ_CHECK(rc2 == KC_OK, "kc_npy_load accepts what kc_array_load refuses: %s", e.msg);
        fuzz_same_array(&a, &b);
        fuzz_check_array(&a);
    }
    if (rc2 == KC_OK) fuzz_check_array(&b);
    return 0;
}
