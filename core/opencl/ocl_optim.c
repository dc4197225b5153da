/* The OpenCL backend's optimizer updates, clipping and weight decay: one
 * kernel per rule (ocl_src_optim.c), the optional state buffers passed with
 * a flag saying whether each is present. */
#include "core/opencl/ocl.h"

int kc_ocl_scale_div(kc_device *d, kc_buf x, kc_buf y, float a, float b, size_t n) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_scale_div);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    kc_ocl_f32(&c, a);
    kc_ocl_f32(&c, b);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

int kc_ocl_clip(kc_device *d, kc_buf x, kc_buf y, float lo, float hi, size_t n) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_clip);
    kc_ocl_buf(&c, x);
    kc_ocl_buf(&c, y);
    kc_ocl_f32(&c, lo);
    kc_ocl_f32(&c, hi);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

int kc_ocl_weight_decay(kc_device *d, kc_buf w, float wd, float lr, size_t n) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_weight_decay);
    kc_ocl_buf(&c, w);
    kc_ocl_f32(&c, wd);
    kc_ocl_f32(&c, lr);
    kc_ocl_u64(&c, n);
    return kc_ocl_run(&c, n);
}

int kc_ocl_sgd_update(kc_device *d, kc_buf w, kc_buf g, kc_buf v, size_t n, float lr,
                      float momentum, int nesterov) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_sgd);
    kc_ocl_buf(&c, w);
    kc_ocl_buf(&c, g);
    kc_ocl_buf(&c, v);
    kc_ocl_u64(&c, n);
    kc_ocl_f32(&c, lr);
    kc_ocl_f32(&c, momentum);
    kc_ocl_i32(&c, momentum != 0.0f && kc_buf_ok(v));
    kc_ocl_i32(&c, nesterov);
    return kc_ocl_run(&c, n);
}

int kc_ocl_rmsprop_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ms, kc_buf mg, kc_buf mom,
                          size_t n, float lr, float rho, float one_minus_rho, float momentum,
                          float eps, int centered) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_rmsprop);
    kc_ocl_buf(&c, w);
    kc_ocl_buf(&c, g);
    kc_ocl_buf(&c, ms);
    kc_ocl_buf(&c, mg);
    kc_ocl_buf(&c, mom);
    kc_ocl_u64(&c, n);
    kc_ocl_f32(&c, lr);
    kc_ocl_f32(&c, rho);
    kc_ocl_f32(&c, one_minus_rho);
    kc_ocl_f32(&c, momentum);
    kc_ocl_f32(&c, eps);
    kc_ocl_i32(&c, centered && kc_buf_ok(mg));
    kc_ocl_i32(&c, momentum > 0.0f && kc_buf_ok(mom));
    return kc_ocl_run(&c, n);
}

int kc_ocl_adam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, kc_buf vhat, size_t n,
                       float alpha, float one_minus_b1, float one_minus_b2, float eps,
                       int amsgrad) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_adam);
    kc_ocl_buf(&c, w);
    kc_ocl_buf(&c, g);
    kc_ocl_buf(&c, m);
    kc_ocl_buf(&c, v);
    kc_ocl_buf(&c, vhat);
    kc_ocl_u64(&c, n);
    kc_ocl_f32(&c, alpha);
    kc_ocl_f32(&c, one_minus_b1);
    kc_ocl_f32(&c, one_minus_b2);
    kc_ocl_f32(&c, eps);
    kc_ocl_i32(&c, amsgrad && kc_buf_ok(vhat));
    return kc_ocl_run(&c, n);
}

int kc_ocl_adagrad_update(kc_device *d, kc_buf w, kc_buf g, kc_buf acc, size_t n, float lr,
                          float eps) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_adagrad);
    kc_ocl_buf(&c, w);
    kc_ocl_buf(&c, g);
    kc_ocl_buf(&c, acc);
    kc_ocl_u64(&c, n);
    kc_ocl_f32(&c, lr);
    kc_ocl_f32(&c, eps);
    return kc_ocl_run(&c, n);
}

int kc_ocl_adadelta_update(kc_device *d, kc_buf w, kc_buf g, kc_buf ag, kc_buf ad, size_t n,
                           float lr, float rho, float one_minus_rho, float eps) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_adadelta);
    kc_ocl_buf(&c, w);
    kc_ocl_buf(&c, g);
    kc_ocl_buf(&c, ag);
    kc_ocl_buf(&c, ad);
    kc_ocl_u64(&c, n);
    kc_ocl_f32(&c, lr);
    kc_ocl_f32(&c, rho);
    kc_ocl_f32(&c, one_minus_rho);
    kc_ocl_f32(&c, eps);
    return kc_ocl_run(&c, n);
}

int kc_ocl_adamax_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf u, size_t n, float lr,
                         float one_minus_b1, float b2, float one_minus_b1_power, float eps) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_adamax);
    kc_ocl_buf(&c, w);
    kc_ocl_buf(&c, g);
    kc_ocl_buf(&c, m);
    kc_ocl_buf(&c, u);
    kc_ocl_u64(&c, n);
    kc_ocl_f32(&c, lr);
    kc_ocl_f32(&c, one_minus_b1);
    kc_ocl_f32(&c, b2);
    kc_ocl_f32(&c, one_minus_b1_power);
    kc_ocl_f32(&c, eps);
    return kc_ocl_run(&c, n);
}

int kc_ocl_nadam_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, kc_buf v, size_t n,
                        const kc_nadam_coef *k) {
    cl_float16 coef = {{k->lr, k->eps, k->one_minus_b1, k->one_minus_b2, k->u_next, k->one_minus_u,
                        k->one_minus_prod_next, k->one_minus_prod, k->one_minus_b2_power}};
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_nadam);
    kc_ocl_buf(&c, w);
    kc_ocl_buf(&c, g);
    kc_ocl_buf(&c, m);
    kc_ocl_buf(&c, v);
    kc_ocl_u64(&c, n);
    kc_ocl_raw(&c, sizeof coef, &coef);
    return kc_ocl_run(&c, n);
}

int kc_ocl_lion_update(kc_device *d, kc_buf w, kc_buf g, kc_buf m, size_t n, float lr, float b1,
                       float b2) {
    kc_ocl_call c = kc_ocl_begin(d, KC_OCL_K_lion);
    kc_ocl_buf(&c, w);
    kc_ocl_buf(&c, g);
    kc_ocl_buf(&c, m);
    kc_ocl_u64(&c, n);
    kc_ocl_f32(&c, lr);
    kc_ocl_f32(&c, b1);
    kc_ocl_f32(&c, b2);
    kc_ocl_f32(&c, 1.0f - b1);
    kc_ocl_f32(&c, 1.0f - b2);
    return kc_ocl_run(&c, n);
}
