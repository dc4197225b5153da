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
int64_t kc_shape_numel(const kc_shape *s);
int kc_shape_equal(const kc_shape *a, const kc_shape *b);
/* "(26, 26, 32)"; with batch_none, "(None, 26, 26, 32)". Returns buf. */
char *kc_shape_str(const kc_shape *s, int batch_none, char *buf, size_t n);

#endif
