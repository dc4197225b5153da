/* The cells of the recurrent layers, one step forward and back on gate
 * planes (recurrent.h). Gate orders are Keras's: LSTM i, f, c, o; GRU z, r, h.
 *
 *   SimpleRNN  h = act(x W + b + h' R)
 *   LSTM       i, f, o = rec(.), g = act(.), c = f c' + i g, h = o act(c)
 *   GRU        z, r = rec(x W_zr + h' R_zr + b), and with reset_after
 *              hh = act(x W_h + b_h + r (h' R_h + b_rh)), without it
 *              hh = act(x W_h + b_h + (r h') R_h); h = z h' + (1 - z) hh */
#include "models/layers/recurrent.h"

static kc_buf weight(const kc_layer *l, int i) {
    return l->params[i].value;
}

static int act_fwd(kc_device *d, const kc_activation *a, kc_buf x, kc_buf y, int rows, int cols) {
    return kc_activation_forward(d, a, x, y, rows, cols);
}

static int act_bwd(kc_device *d, const kc_activation *a, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx,
                   int rows, int cols) {
    return kc_activation_backward(d, a, x, y, dy, dx, rows, cols);
}

/* y = a * b elementwise (the binary op, whose cpu kernel is vectorised) */
static int mul(kc_device *d, kc_buf a, kc_buf b, kc_buf y, size_t n) {
    return kc_binary_n(d, KC_BIN_MUL, a, b, y, n);
}

static size_t bu_of(const rnn_state *s, int batch) {
    return (size_t)batch * (size_t)s->units;
}

/* ---------------------------------------------------------- SimpleRNN --- */

static int simple_forward(kc_layer *l, kc_device *d, const rnn_bufs *b, int B, int st, kc_buf hp,
                          kc_buf cp, kc_buf hn, kc_buf cn) {
    const rnn_state *s = l->state;
    int u = s->units;
    kc_buf z = rnn_plane(b->z, s, B, st, 0), a = rnn_plane(b->a, s, B, st, 0);
    kc_rnn_rec_add_planes(l, d, b, B, hp, 0, 1, z);
    act_fwd(d, &s->act, z, a, B, u);
    return kc_copy(d, hn, a, bu_of(s, B) * 4);
}

static int simple_backward(kc_layer *l, kc_device *d, const rnn_bufs *b, int B, int st, kc_buf hp,
                           kc_buf cp, kc_buf ghn, kc_buf gcn, kc_buf ghp, kc_buf gcp) {
    const rnn_state *s = l->state;
    int u = s->units;
    kc_buf z = rnn_plane(b->z, s, B, st, 0), a = rnn_plane(b->a, s, B, st, 0);
    int64_t ldg;
    kc_buf dg = kc_rnn_dg(s, b, B, st, &ldg);
    act_bwd(d, &s->act, z, a, ghn, b->dpl, B, u);
    kc_rnn_copy2(d, KC_COPY_SET, b->dpl, u, dg, ldg, B, u);
    return kc_rnn_rec_backward(l, d, b, B, b->dpl, u, 0, 1, 0.0f, ghp);
}

const rnn_cell kc_rnn_simple_cell = {1, 1, simple_forward, simple_backward, 1};

/* --------------------------------------------------------------- LSTM --- */

static int lstm_forward(kc_layer *l, kc_device *d, const rnn_bufs *b, int B, int st, kc_buf hp,
                        kc_buf cp, kc_buf hn, kc_buf cn) {
    const rnn_state *s = l->state;
    int u = s->units;
    size_t bu = bu_of(s, B);
    kc_buf z0 = rnn_plane(b->z, s, B, st, 0), a0 = rnn_plane(b->a, s, B, st, 0);
    kc_buf ai = a0, af = kc_buf_f(a0, bu), ag = kc_buf_f(a0, 2 * bu), ao = kc_buf_f(a0, 3 * bu);
    kc_buf tc = rnn_slot(b->tc, s, B, st);
    kc_rnn_rec_add_planes(l, d, b, B, hp, 0, 4, z0);
    act_fwd(d, &s->rec_act, z0, a0, 2 * B, u); /* i, f */
    act_fwd(d, &s->act, kc_buf_f(z0, 2 * bu), ag, B, u);
    act_fwd(d, &s->rec_act, kc_buf_f(z0, 3 * bu), ao, B, u);
    mul(d, af, cp, cn, bu);
    mul(d, ai, ag, b->t1, bu);
    kc_binary_n(d, KC_BIN_ADD, cn, b->t1, cn, bu);
    act_fwd(d, &s->act, cn, tc, B, u);
    return mul(d, ao, tc, hn, bu);
}

static int lstm_backward(kc_layer *l, kc_device *d, const rnn_bufs *b, int B, int st, kc_buf hp,
                         kc_buf cp, kc_buf ghn, kc_buf gcn, kc_buf ghp, kc_buf gcp) {
    const rnn_state *s = l->state;
    int u = s->units;
    size_t bu = bu_of(s, B);
    kc_buf z0 = rnn_plane(b->z, s, B, st, 0), a0 = rnn_plane(b->a, s, B, st, 0);
    kc_buf ai = a0, af = kc_buf_f(a0, bu), ag = kc_buf_f(a0, 2 * bu), ao = kc_buf_f(a0, 3 * bu);
    kc_buf tc = rnn_slot(b->tc, s, B, st), cn = rnn_slot(b->cn, s, B, st);
    int64_t ldg;
    kc_buf dg = kc_rnn_dg(s, b, B, st, &ldg);
    /* o */
    mul(d, ghn, tc, b->t1, bu);
    act_bwd(d, &s->rec_act, kc_buf_f(z0, 3 * bu), ao, b->t1, kc_buf_f(b->dpl, 3 * bu), B, u);
    /* c: dcn = gcn + act'(c) (ghn o) */
    mul(d, ghn, ao, b->t2, bu);
    act_bwd(d, &s->act, cn, tc, b->t2, b->t3, B, u);
    kc_binary_n(d, KC_BIN_ADD, gcn, b->t3, b->t3, bu);
    /* i, f (contiguous in g), then g */
    mul(d, b->t3, ag, b->g, bu);
    mul(d, b->t3, cp, kc_buf_f(b->g, bu), bu);
    act_bwd(d, &s->rec_act, z0, a0, b->g, b->dpl, 2 * B, u);
    mul(d, b->t3, ai, b->t1, bu);
    act_bwd(d, &s->act, kc_buf_f(z0, 2 * bu), ag, b->t1, kc_buf_f(b->dpl, 2 * bu), B, u);
    mul(d, b->t3, af, gcp, bu);
    kc_rnn_planes_to_rows(d, s, B, b->dpl, dg, ldg, 4);
    return kc_rnn_rec_backward(l, d, b, B, dg, (int)ldg, 0, 4, 0.0f, ghp);
}

const rnn_cell kc_rnn_lstm_cell = {4, 2, lstm_forward, lstm_backward, 1};

/* ---------------------------------------------------------------- GRU --- */

static int gru_forward(kc_layer *l, kc_device *d, const rnn_bufs *b, int B, int st, kc_buf hp,
                       kc_buf cp, kc_buf hn, kc_buf cn) {
    const rnn_state *s = l->state;
    int u = s->units, ku = 3 * u;
    size_t bu = bu_of(s, B);
    kc_buf z0 = rnn_plane(b->z, s, B, st, 0), a0 = rnn_plane(b->a, s, B, st, 0);
    kc_buf az = a0, ar = kc_buf_f(a0, bu), ah = kc_buf_f(a0, 2 * bu), zh = kc_buf_f(z0, 2 * bu);
    kc_buf gh = rnn_slot(b->gh, s, B, st), r = weight(l, 1);
    if (s->reset_after) {
        kc_rnn_rec_forward(l, d, b, B, hp, 0, 3, b->g, ku);
        if (s->use_bias) kc_bias_add(d, b->g, kc_buf_f(weight(l, 2), (size_t)ku), B, ku);
        kc_rnn_rows_to_planes(d, KC_COPY_ADD, s, B, b->g, ku, z0, 2);
        kc_rnn_copy2(d, KC_COPY_SET, kc_buf_f(b->g, 2 * (size_t)u), ku, gh, u, B, u);
        act_fwd(d, &s->rec_act, z0, a0, 2 * B, u);
        mul(d, ar, gh, b->t1, bu);
        kc_binary_n(d, KC_BIN_ADD, zh, b->t1, zh, bu);
    } else {
        kc_rnn_rec_forward(l, d, b, B, hp, 0, 2, b->g, 2 * u);
        kc_rnn_rows_to_planes(d, KC_COPY_ADD, s, B, b->g, 2 * u, z0, 2);
        act_fwd(d, &s->rec_act, z0, a0, 2 * B, u);
        mul(d, ar, kc_rnn_rec_dropped(l, d, b, B, hp, 2, b->t2), gh, bu);
        kc_gemm(d, 0, 0, B, u, u, 1.0f, gh, u, kc_buf_f(r, 2 * (size_t)u), ku, 1.0f, zh, u);
    }
    act_fwd(d, &s->act, zh, ah, B, u);
    /* h = hh + z (h' - hh) */
    kc_binary_n(d, KC_BIN_SUB, hp, ah, b->t1, bu);
    mul(d, b->t1, az, b->t1, bu);
    return kc_binary_n(d, KC_BIN_ADD, ah, b->t1, hn, bu);
}

static int gru_backward(kc_layer *l, kc_device *d, const rnn_bufs *b, int B, int st, kc_buf hp,
                        kc_buf cp, kc_buf ghn, kc_buf gcn, kc_buf ghp, kc_buf gcp) {
    const rnn_state *s = l->state;
    int u = s->units, ku = 3 * u;
    size_t bu = bu_of(s, B);
    kc_buf z0 = rnn_plane(b->z, s, B, st, 0), a0 = rnn_plane(b->a, s, B, st, 0);
    kc_buf az = a0, ar = kc_buf_f(a0, bu), ah = kc_buf_f(a0, 2 * bu), zh = kc_buf_f(z0, 2 * bu);
    kc_buf gh = rnn_slot(b->gh, s, B, st), dg = kc_rnn_dg(s, b, B, st, NULL);
    kc_buf dzh = kc_buf_f(b->dpl, 2 * bu), dr = kc_buf_f(b->g, bu);
    kc_binary_n(d, KC_BIN_SUB, hp, ah, b->t1, bu);
    mul(d, ghn, b->t1, b->g, bu);                      /* dz */
    mul(d, ghn, az, b->t3, bu);                        /* the direct path to h' */
    kc_binary_n(d, KC_BIN_SUB, ghn, b->t3, b->t1, bu); /* dhh */
    act_bwd(d, &s->act, zh, ah, b->t1, dzh, B, u);
    if (s->reset_after) {
        mul(d, dzh, gh, dr, bu);
        mul(d, dzh, ar, b->t1, bu); /* gradient of h' R_h + b_rh */
        act_bwd(d, &s->rec_act, z0, a0, b->g, b->dpl, 2 * B, u);
        kc_rnn_planes_to_rows(d, s, B, b->dpl, dg, ku, 2);
        kc_rnn_copy2(d, KC_COPY_SET, b->t1, u, kc_buf_f(dg, 2 * (size_t)u), ku, B, u);
        kc_copy(d, ghp, b->t3, bu * 4);
        return kc_rnn_rec_backward(l, d, b, B, dg, ku, 0, 3, 1.0f, ghp);
    }
    /* the h gate multiplied R_h by r * h', h' dropped out by its own mask */
    kc_gemm(d, 0, 0, B, u, u, 1.0f, dzh, u, kc_buf_f(b->rt, 2 * (size_t)u * (size_t)u), u, 0.0f,
            b->t1, u);
    mul(d, b->t1, kc_rnn_rec_dropped(l, d, b, B, hp, 2, b->t2), dr, bu);
    mul(d, b->t1, ar, b->t2, bu);
    kc_buf hmask = kc_rnn_rec_dropped(l, d, b, B, b->t2, 2, b->t2); /* (dRH r) * mask */
    kc_binary_n(d, KC_BIN_ADD, b->t3, hmask, ghp, bu);
    act_bwd(d, &s->rec_act, z0, a0, b->g, b->dpl, 2 * B, u);
    kc_rnn_planes_to_rows(d, s, B, b->dpl, dg, ku, 3);
    return kc_rnn_rec_backward(l, d, b, B, dg, ku, 0, 2, 1.0f, ghp);
}

const rnn_cell kc_rnn_gru_cell = {3, 1, gru_forward, gru_backward, 0};
