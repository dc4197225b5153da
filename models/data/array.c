#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/data/data.h"

size_t kc_dtype_size(kc_dtype t) {
    return t == KC_DT_U8 ? 1 : 4;
}

int kc_array_alloc(kc_array *a, kc_dtype dtype, const kc_shape *shape, kc_error *e) {
    memset(a, 0, sizeof *a);
    if (shape->rank < 1 || shape->rank > KC_MAX_RANK)
        return kc_fail(e, KC_ERUNTIME, "array rank %d is outside 1..%d", shape->rank, KC_MAX_RANK);
    size_t bytes;
    if (!kc_shape_bytes(shape, kc_dtype_size(dtype), &bytes)) {
        char buf[256];
        return kc_fail(e, KC_ERUNTIME,
                       "array shape %s has a negative dimension or more elements than memory "
                       "can address",
                       kc_shape_str(shape, 0, buf, sizeof buf));
    }
    /* one byte at least, so an empty array still has non-NULL data */
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) return kc_fail(e, KC_ERUNTIME, "out of memory allocating %zu bytes", bytes);
    a->dtype = dtype;
    a->shape = *shape;
    a->data = p;
    return KC_OK;
}

void kc_array_free(kc_array *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

int64_t kc_array_rows(const kc_array *a) {
    return a->shape.rank >= 1 ? a->shape.d[0] : 0;
}

int64_t kc_array_row_size(const kc_array *a) {
    if (a->shape.rank < 1) return 1;
    if (a->shape.rank > KC_MAX_RANK) return -1;
    kc_shape row = {.rank = a->shape.rank - 1};
    for (int i = 1; i < a->shape.rank; i++)
        row.d[i - 1] = a->shape.d[i];
    return kc_shape_numel(&row);
}

/* k when scale is the float nearest 1/k for an integer k >= 2, else 0. */
static int reciprocal_of_int(float scale) {
    if (!(scale > 0.0f) || scale > 0.5f) return 0;
    double k = nearbyint(1.0 / (double)scale);
    if (k < 2.0 || k > 16777216.0) return 0;
    return (float)(1.0 / k) == scale ? (int)k : 0;
}

static void gather_u8(const kc_array *a, const int64_t *idx, int n, float scale, float offset,
                      float *out) {
    float lut[256];
    int k = reciprocal_of_int(scale);
    for (int v = 0; v < 256; v++)
        lut[v] = (k ? (float)v / (float)k : (float)v * scale) + offset;
    int64_t row = kc_array_row_size(a);
    const uint8_t *src = a->data;
    for (int i = 0; i < n; i++) {
        const uint8_t *s = src + idx[i] * row;
        float *o = out + (int64_t)i * row;
        for (int64_t j = 0; j < row; j++)
            o[j] = lut[s[j]];
    }
}

static void gather_f32(const kc_array *a, const int64_t *idx, int n, float scale, float offset,
                       float *out) {
    int64_t row = kc_array_row_size(a);
    const float *src = a->data;
    int identity = scale == 1.0f && offset == 0.0f;
    int k = reciprocal_of_int(scale);
    float fk = (float)k;
    for (int i = 0; i < n; i++) {
        const float *s = src + idx[i] * row;
        float *o = out + (int64_t)i * row;
        if (identity)
            memcpy(o, s, (size_t)row * sizeof *o);
        else if (k)
            for (int64_t j = 0; j < row; j++)
                o[j] = s[j] / fk + offset;
        else
            for (int64_t j = 0; j < row; j++)
                o[j] = s[j] * scale + offset;
    }
}

void kc_array_gather(const kc_array *a, const int64_t *idx, int n, float scale, float offset,
                     float *out) {
    if (a->dtype == KC_DT_U8)
        gather_u8(a, idx, n, scale, offset, out);
    else
        gather_f32(a, idx, n, scale, offset, out);
}

int kc_array_split_tail(kc_array *a, int64_t tail_rows, kc_array *tail, kc_error *e) {
    memset(tail, 0, sizeof *tail);
    int64_t rows = kc_array_rows(a);
    if (!a->data || tail_rows < 0 || tail_rows > rows)
        return kc_fail(e, KC_ERUNTIME, "cannot split %lld rows off an array of %lld rows",
                       (long long)tail_rows, (long long)rows);
    kc_shape ts = a->shape;
    ts.d[0] = tail_rows;
    int rc = kc_array_alloc(tail, a->dtype, &ts, e);
    if (rc) return rc;
    size_t row_bytes = (size_t)kc_array_row_size(a) * kc_dtype_size(a->dtype);
    size_t keep = (size_t)(rows - tail_rows) * row_bytes;
    memcpy(tail->data, (char *)a->data + keep, (size_t)tail_rows * row_bytes);
    a->shape.d[0] = rows - tail_rows;
    /* give the moved rows back; a failed shrink just keeps the larger block */
    void *p = realloc(a->data, keep ? keep : 1);
    if (p) a->data = p;
    return KC_OK;
}
