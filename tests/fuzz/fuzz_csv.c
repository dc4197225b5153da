/* CSV files as kc_csv_load reads them: without a label, with the last
 * column as label (header auto-detected), and with a named label under a
 * header. Features and labels must hold the same rows, and the features
 * one column fewer with a label than without. */
#include "tests/fuzz/fuzz_array.h"

/* Returns the feature columns, or -1 when the file was refused. */
static int64_t load(const char *path, const char *label, int header) {
    kc_error e = {0};
    kc_array x, y;
    int rc = kc_csv_load(path, label, header, &x, label ? &y : NULL, &e);
    if (rc) {
        FUZZ_CHECK(e.msg[0] && !x.data && (!label || !y.data), "failed load left data");
        return -1;
    }
    FUZZ_CHECK(x.shape.rank == 2 && x.dtype == KC_DT_F32, "features rank %d", x.shape.rank);
    FUZZ_CHECK(x.shape.d[0] >= 1 && x.shape.d[1] >= 1, "empty features");
    int64_t cols = x.shape.d[1];
    if (label) {
        FUZZ_CHECK(y.shape.rank == 1 && y.shape.d[0] == x.shape.d[0], "labels do not match rows");
        fuzz_check_array(&y);
    }
    fuzz_check_array(&x);
    return cols;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[4200];
    fuzz_write("csv", "data.csv", data, size, path, sizeof path);
    int64_t plain = load(path, NULL, -1);
    int64_t labelled = load(path, "-1", -1);
    if (plain > 0 && labelled > 0)
        FUZZ_CHECK(labelled == plain - 1, "%lld columns with a label, %lld without",
                   (long long)labelled, (long long)plain);
    load(path, "label", 1);
    load(path, "0", 0);
    return 0;
}
