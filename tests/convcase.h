/* Convolution and pooling cases for the backend suites: Keras's output size
 * and "same" padding split (the extra goes bottom/right). */
#ifndef KC_CONVCASE_H
#define KC_CONVCASE_H

#include "core/backend.h"

static inline void keras_geometry(int in, int k_eff, int s, int same, int *out, int *pad) {
    if (same) {
        *out = (in + s - 1) / s;
        int total = (*out - 1) * s + k_eff - in;
        *pad = total > 0 ? total / 2 : 0;
    } else {
        *out = (in - k_eff) / s + 1;
        *pad = 0;
    }
}

typedef struct conv_case {
    int n, h, w, c, kh, kw, oc, sh, sw, dh, dw, same;
} conv_case;

static inline kc_conv2d_desc conv_desc(conv_case k) {
    kc_conv2d_desc d = {.n = k.n,
                        .h = k.h,
                        .w = k.w,
                        .c = k.c,
                        .kh = k.kh,
                        .kw = k.kw,
                        .oc = k.oc,
                        .sh = k.sh,
                        .sw = k.sw,
                        .dh = k.dh,
                        .dw = k.dw};
    keras_geometry(k.h, k.dh * (k.kh - 1) + 1, k.sh, k.same, &d.oh, &d.pad_t);
    keras_geometry(k.w, k.dw * (k.kw - 1) + 1, k.sw, k.same, &d.ow, &d.pad_l);
    return d;
}

#endif
