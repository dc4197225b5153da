/* Shapes and host arrays. Activations are channels-last (NHWC) like Keras. */
#ifndef KC_TENSOR_H
#define KC_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define KC_MAX_RANK 8

typedef struct kc_shape {
    int rank;
    int64_t d[KC_MAX_RANK];
} kc_shape;

kc_shape kc_shape_make(int rank, const int64_t *dims);
kc_shape kc_shape1(int64_t a);
kc_shape kc_shape2(int64_t a, int64_t b);
kc_shape kc_shape3(int64_t a, int64_t b, int64_t c);
kc_shape kc_shape4(int64_t a, int64_t b, int64_t c, int64_t d);
/* The number of elements: the product of the dims (1 for rank 0). -1 when
 * the rank is outside 0..KC_MAX_RANK, a dim is negative, or the product of
 * the non-zero dims overflows int64 -- a zero dim does not hide a product
 * that cannot be represented. */
int64_t kc_shape_numel(const kc_shape *s);
/* numel * elem_size in *bytes when the shape is valid (as for
 * kc_shape_numel) and the product of its non-zero dims times elem_size
 * stays within INT64_MAX and SIZE_MAX; else returns 0. */
int kc_shape_bytes(const kc_shape *s, size_t elem_size, size_t *bytes);
int kc_shape_equal(const kc_shape *a, const kc_shape *b);
/* "(26, 26, 32)"; with batch_none, "(None, 26, 26, 32)". Returns buf. */
char *kc_shape_str(const kc_shape *s, int batch_none, char *buf, size_t n);

#endif
