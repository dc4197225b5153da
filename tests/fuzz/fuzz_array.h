/* What every loaded array must satisfy, whatever file it came from: a shape
 * kc_shape_numel can count, a per-sample size that kc_array_row_size states
 * exactly, data that is really there, and rows that gather and split as the
 * session uses them. */
#ifndef KC_FUZZ_ARRAY_H
#define KC_FUZZ_ARRAY_H

#include "tests/fuzz/fuzz_util.h"

#include "models/data/data.h"

/* Gathers the first and last rows (as a batch does) and compares them with the data. */
static inline void fuzz_gather_rows(const kc_array *a, int64_t rows, int64_t row) {
    if (rows < 1 || row < 1 || row > (1 << 22)) return;
    float *out = malloc((size_t)row * 2 * sizeof *out);
    FUZZ_CHECK(out, "out of memory");
    const int64_t idx[2] = {0, rows - 1};
    kc_array_gather(a, idx, 2, 1.0f, 0.0f, out);
    for (int64_t j = 0; j < row; j++) {
        int64_t at = (rows - 1) * row + j;
        float want =
            a->dtype == KC_DT_U8 ? ((const uint8_t *)a->data)[at] : ((const float *)a->data)[at];
        FUZZ_CHECK(!memcmp(&out[row + j], &want, sizeof want) || (want != want),
                   "gathered value %lld differs", (long long)j);
    }
    kc_array_gather(a, idx, 2, 1.0f / 255.0f, -0.5f, out);
    free(out);
}

/* Moves the last row into a new array, as validation_split does. */
static inline void fuzz_split_tail(kc_array *a, int64_t rows, int64_t row) {
    if (rows < 1 || row > (1 << 22)) return;
    kc_array tail;
    kc_error e = {0};
    int rc = kc_array_split_tail(a, 1, &tail, &e);
    FUZZ_CHECK(rc == KC_OK, "split_tail: %s", e.msg);
    FUZZ_CHECK(kc_array_rows(a) == rows - 1 && kc_array_rows(&tail) == 1, "split rows");
    FUZZ_CHECK(kc_array_row_size(&tail) == row, "split row size");
    fuzz_touch(tail.data, (size_t)row * kc_dtype_size(tail.dtype));
    kc_array_free(&tail);
}

/* Checks a successfully loaded array, then frees it. */
static inline void fuzz_check_array(kc_array *a) {
    FUZZ_CHECK(a->data, "no data");
    FUZZ_CHECK(a->dtype == KC_DT_U8 || a->dtype == KC_DT_F32, "dtype %d", (int)a->dtype);
    FUZZ_CHECK(a->shape.rank >= 1 && a->shape.rank <= KC_MAX_RANK, "rank %d", a->shape.rank);
    char sh[256];
    kc_shape_str(&a->shape, 0, sh, sizeof sh);
    int64_t numel = kc_shape_numel(&a->shape);
    FUZZ_CHECK(numel >= 0, "shape %s has no element count", sh);
    int64_t rows = kc_array_rows(a), row = fuzz_dims_product(&a->shape, 1);
    FUZZ_CHECK(rows == a->shape.d[0], "rows %lld of %s", (long long)rows, sh);
    FUZZ_CHECK(row >= 0, "shape %s: the per-sample size does not fit in int64", sh);
    FUZZ_CHECK(kc_array_row_size(a) == row, "row size %lld of %s", (long long)kc_array_row_size(a),
               sh);
    fuzz_touch(a->data, (size_t)numel * kc_dtype_size(a->dtype));
    fuzz_gather_rows(a, rows, row);
    fuzz_split_tail(a, rows, row);
    kc_array_free(a);
}

/* Two loads of the same file must agree exactly. */
static inline void fuzz_same_array(const kc_array *a, const kc_array *b) {
    FUZZ_CHECK(a->dtype == b->dtype && kc_shape_equal(&a->shape, &b->shape), "loads differ");
    int64_t numel = kc_shape_numel(&a->shape);
    FUZZ_CHECK(numel >= 0, "no element count");
    FUZZ_CHECK(!memcmp(a->data, b->data, (size_t)numel * kc_dtype_size(a->dtype)),
               "loads differ in their data");
}

#endif
