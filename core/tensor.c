#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

kc_shape kc_shape_make(int rank, const int64_t *dims) {
    kc_shape s = {0};
    s.rank = rank;
    for (int i = 0; i < rank && i < KC_MAX_RANK; i++)
        s.d[i] = dims[i];
    return s;
}
kc_shape kc_shape1(int64_t a) {
    return kc_shape_make(1, (int64_t[]){a});
}
kc_shape kc_shape2(int64_t a, int64_t b) {
    return kc_shape_make(2, (int64_t[]){a, b});
}
kc_shape kc_shape3(int64_t a, int64_t b, int64_t c) {
    return kc_shape_make(3, (int64_t[]){a, b, c});
}
kc_shape kc_shape4(int64_t a, int64_t b, int64_t c, int64_t d) {
    return kc_shape_make(4, (int64_t[]){a, b, c, d});
}

/* The product of the non-zero dims in *nz and whether a dim is zero; 0 when
 * the shape is invalid or that product overflows int64. */
static int nonzero_product(const kc_shape *s, int64_t *nz, int *has_zero) {
    if (s->rank < 0 || s->rank > KC_MAX_RANK) return 0;
    int64_t n = 1;
    *has_zero = 0;
    for (int i = 0; i < s->rank; i++) {
        if (s->d[i] < 0) return 0;
        if (s->d[i] == 0) {
            *has_zero = 1;
            continue;
        }
        if (__builtin_mul_overflow(n, s->d[i], &n)) return 0;
    }
    *nz = n;
    return 1;
}

int64_t kc_shape_numel(const kc_shape *s) {
    int64_t nz;
    int zero;
    if (!nonzero_product(s, &nz, &zero)) return -1;
    return zero ? 0 : nz;
}

int kc_shape_bytes(const kc_shape *s, size_t elem_size, size_t *bytes) {
    int64_t nz, b;
    int zero;
    if (!nonzero_product(s, &nz, &zero) || __builtin_mul_overflow(nz, (int64_t)elem_size, &b))
        return 0;
    if ((uint64_t)b > SIZE_MAX) return 0;
    *bytes = zero ? 0 : (size_t)b;
    return 1;
}

int kc_shape_equal(const kc_shape *a, const kc_shape *b) {
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->d[i] != b->d[i]) return 0;
    return 1;
}

char *kc_shape_str(const kc_shape *s, int batch_none, char *buf, size_t n) {
    size_t used = 0;
    used += (size_t)snprintf(buf, n, "(%s", batch_none ? "None" : "");
    for (int i = 0; i < s->rank && used < n; i++) {
        int first = !batch_none && i == 0;
        used +=
            (size_t)snprintf(buf + used, n - used, "%s%lld", first ? "" : ", ", (long long)s->d[i]);
    }
    if (used < n) {
        /* Python prints a 1-tuple as "(5,)". */
        int one = !batch_none && s->rank == 1;
        snprintf(buf + used, n - used, "%s)", one ? "," : "");
    }
    return buf;
}
