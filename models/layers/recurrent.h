/* Shared machinery of the recurrent layers (SimpleRNN, LSTM, GRU): the
 * layer's arguments, the buffer and workspace layouts, and the table a cell
 * fills. Private to models/layers/recurrent.c and the rnn_*.c cells.
 *
 * Layouts (floats, B the call's batch, T steps, K gates, U units, F
 * features). Step s runs time t = s, or T - 1 - s with go_backwards.
 *   kept (l->buf):  STATE  nstates x B x U  (stateful: the carried state)
 *                   Z, A   T x K x B x U    (per step, one B x U plane per gate:
 *                                            pre-activations, activations)
 *                   H      (T + 1) x B x U  (carried h; slot 0 the initial state)
 *                   C      (T + 1) x B x U  (LSTM carried c)
 *                   CN, TC T x B x U        (LSTM new c and activation(c))
 *                   GH     T x B x U        (GRU: r-gated recurrent part)
 *                   M      T x B            (the mask, by step)
 *                   DM     n x B x F        (input dropout masks: one, or one per gate)
 *                   RM     n x B x U        (recurrent dropout masks, likewise)
 *   workspace:      P      B x T x K U      (x W + bias, then its gradient)
 *                   DG     T x B x K U      (gradient of h W_rec, by step; cells whose
 *                                            DG is dP have none: their step s
 *                                            writes the rows of dP at t(s))
 *                   HT     B x T x U        (those cells: H's steps by sample,
 *                                            for the recurrent kernel's gradient)
 *                   V      a few B x K U and B x U vectors
 *                   RT, WT K U x U, K U x F (backward: R and W transposed, so
 *                          that every product of the backward pass reads its
 *                          right-hand side untransposed) */
#ifndef KC_LAYERS_RECURRENT_H
#define KC_LAYERS_RECURRENT_H

#include "models/layers/common.h"

typedef struct rnn_state rnn_state;

/* Where one call's buffers are. */
typedef struct rnn_bufs {
    kc_buf state, z, a, h, c, cn, tc, gh, m, dm, rm; /* kept */
    kc_buf p, dg, g, hn, cnew, t1, t2, t3, om;       /* workspace, forward and backward */
    kc_buf gh_, gc, go, ghn, gcn, ghp, gcp, dpl;     /* workspace, backward */
    kc_buf xd, hm, ds; /* workspace: dropped-out input and h of every step, mask draws */
    kc_buf rt, wt;     /* workspace, backward: the recurrent kernel and kernel transposed */
    kc_buf ht;         /* workspace, backward (cells with dg_is_dp): H by sample, then step */
} rnn_bufs;

typedef struct rnn_cell {
    int gates;   /* K */
    int nstates; /* 1 (h) or 2 (h, c) */
    /* Step s: Z's planes of s hold x W + input bias; adds the recurrent part
     * of hp (B x U), writes Z, A (and the cell's own kept values) and the new
     * h into hn (and c into cn). */
    int (*step_forward)(kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, int s, kc_buf hp,
                        kc_buf cp, kc_buf hn, kc_buf cn);
    /* Given ghn (and gcn), the gradients of step s's new h (and c): writes
     * the gate gradients (planes of dpl: the input projection's; DG slot s:
     * the recurrent product's) and the gradients of hp and cp into ghp, gcp,
     * reading ghn and gcn only. */
    int (*step_backward)(kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, int s, kc_buf hp,
                         kc_buf cp, kc_buf ghn, kc_buf gcn, kc_buf ghp, kc_buf gcp);
    /* 1 when the recurrent product's gradient is the input projection's
     * (the planes of dpl as rows): DG is then dP itself (kc_rnn_dg) */
    int dg_is_dp;
} rnn_cell;

struct rnn_state {
    const rnn_cell *cell;
    int units, use_bias, ret_seq, ret_state, go_back, stateful, zero_output;
    int unit_forget, reset_after, has_rec_act;
    kc_activation act, rec_act;
    kc_initializer kinit, rinit, binit;
    kc_weight_opts kopt, ropt, bopt;
    double dropout, rec_dropout;
    int has_seed;
    long long seed;
    int64_t steps, features;
    int state_batch;    /* stateful: the batch of the first call (0 before) */
    int had_mask;       /* the last forward read a mask */
    int had_dropout;    /* the last forward dropped inputs (and h, with recurrent_dropout) */
    int implementation; /* Keras's: 1 gives each gate its own dropout masks */
};

/* Dropout masks: how many of each (0 without that dropout). */
int kc_rnn_input_masks(const rnn_state *s);
int kc_rnn_recurrent_masks(const rnn_state *s);
/* out (B x ng U, row stride ldo) = hp R[:, g0 U .. (g0 + ng) U], each gate's
 * h dropped out by its mask while training with recurrent_dropout. */
int kc_rnn_rec_forward(const kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, kc_buf hp,
                       int g0, int ng, kc_buf out, int ldo);
/* Adds hp R[:, g U .. (g + 1) U] to gate plane g - g0 of `planes` (B x U
 * each, one after another) for g in [g0, g0 + ng), each gate's h dropped out
 * by its mask while training with recurrent_dropout. */
int kc_rnn_rec_add_planes(const kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, kc_buf hp,
                          int g0, int ng, kc_buf planes);
/* ghp (beta 0: =, 1: +=) the gradient of hp through that product, from dg
 * (B x ng U, row stride ldg). */
int kc_rnn_rec_backward(const kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, kc_buf dg,
                        int ldg, int g0, int ng, float beta, kc_buf ghp);
/* hp dropped out by gate g's recurrent mask into out (hp itself when none). */
kc_buf kc_rnn_rec_dropped(const kc_layer *l, kc_device *d, const rnn_bufs *b, int batch, kc_buf hp,
                          int g, kc_buf out);

/* The three cells. */
extern const rnn_cell kc_rnn_simple_cell, kc_rnn_lstm_cell, kc_rnn_gru_cell;

/* ---- helpers for the cells ---- */

/* Gate plane g of step s in Z or A. */
static inline kc_buf rnn_plane(kc_buf base, const rnn_state *s, int batch, int step, int g) {
    size_t bu = (size_t)batch * (size_t)s->units;
    return kc_buf_f(base, ((size_t)step * (size_t)s->cell->gates + (size_t)g) * bu);
}
/* Slot of a T x B x U (or (T + 1) x B x U) array. */
static inline kc_buf rnn_slot(kc_buf base, const rnn_state *s, int batch, int slot) {
    return kc_buf_f(base, (size_t)slot * (size_t)batch * (size_t)s->units);
}
/* Step `step`'s gate gradients of the recurrent product (B rows of K U),
 * and their row stride: a DG slot, or the rows of dP at t(step). */
kc_buf kc_rnn_dg(const rnn_state *s, const rnn_bufs *b, int batch, int step, int64_t *ld);
/* A 2-d strided copy: rows x cols elements, row strides ss and ds. */
int kc_rnn_copy2(kc_device *d, kc_copy_mode mode, kc_buf src, int64_t ss, kc_buf dst, int64_t ds,
                 int64_t rows, int64_t cols);
/* Copies the K planes (K, B, U) of `pl` into the rows of dst (B x K U, row stride ld). */
int kc_rnn_planes_to_rows(kc_device *d, const rnn_state *s, int batch, kc_buf pl, kc_buf dst,
                          int64_t ld, int gates);
/* The inverse: B x K U rows (stride ld) into planes, set or added. */
int kc_rnn_rows_to_planes(kc_device *d, kc_copy_mode mode, const rnn_state *s, int batch,
                          kc_buf src, int64_t ld, kc_buf pl, int gates);

#endif
