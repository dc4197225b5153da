/* The losses of models/losses.c on device ops. Each loss is a short
 * sequence of elementwise, broadcast and reduce ops over planned buffers;
 * the comments on the host versions (clipping, gradients at kinks) hold here
 * and are not repeated. */
#include "models/loss_device.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"

enum {
    DL_MSE,
    DL_MAE,
    DL_CATEGORICAL,
    DL_SPARSE,
    DL_BINARY,
    DL_KLD,
    DL_MAPE,
    DL_MSLE,
    DL_HUBER,
    DL_LOG_COSH,
    DL_HINGE,
    DL_SQUARED_HINGE,
    DL_CATEGORICAL_HINGE,
    DL_POISSON,
    DL_COSINE,
};

/* By class name, so that losses.c keeps its table private. work: the
 * max_rows x cols buffers the loss uses. */
static const struct {
    const char *class_name;
    int kind, work;
} kinds[] = {
    {"MeanSquaredError", DL_MSE, 1},
    {"MeanAbsoluteError", DL_MAE, 1},
    {"CategoricalCrossentropy", DL_CATEGORICAL, 5},
    {"SparseCategoricalCrossentropy", DL_SPARSE, 5},
    {"BinaryCrossentropy", DL_BINARY, 6},
    {"KLDivergence", DL_KLD, 4},
    {"MeanAbsolutePercentageError", DL_MAPE, 3},
    {"MeanSquaredLogarithmicError", DL_MSLE, 4},
    {"Huber", DL_HUBER, 4},
    {"LogCosh", DL_LOG_COSH, 6},
    {"Hinge", DL_HINGE, 5},
    {"SquaredHinge", DL_SQUARED_HINGE, 5},
    {"CategoricalHinge", DL_CATEGORICAL_HINGE, 4},
    {"Poisson", DL_POISSON, 2},
    {"CosineSimilarity", DL_COSINE, 2},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

#define EPS ((float)KC_LOSS_EPSILON)
#define ONE_MINUS_EPS ((float)(1.0 - KC_LOSS_EPSILON))
#define LOG_EPS ((float)-16.11809565095832)              /* ln 1e-7 */
#define LOG_ONE_MINUS_EPS ((float)-1.000000050000003e-7) /* ln(1 - 1e-7) */

/* One call's operands and constants. vs scales the reduced value into acc
 * (acc_alpha and the reduction's 1/rows), gs the gradient. */
typedef struct step {
    kc_device *d;
    const kc_loss_device *p;
    kc_buf P, T, G, acc;
    int N, C;
    size_t n;
    double vs, gs;
    int want_v, want_g;
    kc_buf rw; /* per-row weights (a mask's), or null */
} step;

/* ---- helpers ---- */

/* y = a op r with r holding one value per row of a (N x C). */
static void by_row(step *s, kc_binary_op op, kc_buf a, kc_buf r, kc_buf y) {
    kc_bcast g = kc_bcast_cols((size_t)s->N, (size_t)s->C);
    kc_binary(s->d, op, &g, a, r, y);
}

static void per_row(step *s, kc_reduce_op op, kc_buf x, kc_buf y) {
    kc_reduce_desc g = {s->N, s->C, 1};
    kc_reduce(s->d, op, &g, 1.0f, x, 0.0f, y);
}

static void elementwise(step *s, kc_binary_op op, kc_buf a, kc_buf b, kc_buf y) {
    kc_binary_n(s->d, op, a, b, y, s->n);
}

static void un(step *s, kc_unary_op op, float a, kc_buf x, kc_buf y) {
    kc_unary(s->d, op, a, x, y, s->n);
}

static void un_rows(step *s, kc_unary_op op, float a, kc_buf x, kc_buf y) {
    kc_unary(s->d, op, a, x, y, (size_t)s->N);
}

/* acc += factor vs R(x[0..len)): the batch's reduced loss, scaled. */
static void add_value(step *s, kc_reduce_op op, kc_buf x, size_t len, double factor) {
    if (kc_buf_ok(s->rw)) { /* each row's share times its weight, then the plain sum */
        kc_buf t = s->p->mt;
        kc_unary_op u = op == KC_RED_SUMSQ    ? KC_UN_SQUARE
                        : op == KC_RED_SUMABS ? KC_UN_ABS
                                              : KC_UN_MUL;
        kc_unary(s->d, u, 1.0f, x, t, len);
        kc_bcast rb = kc_bcast_cols((size_t)s->N, len == s->n ? (size_t)s->C : 1);
        kc_binary(s->d, KC_BIN_MUL, &rb, t, s->rw, t);
        x = t;
        op = KC_RED_SUM;
    }
    kc_reduce_desc g = {1, (int64_t)len, 1};
    kc_reduce(s->d, op, &g, (float)(factor * s->vs), x, 1.0f, s->acc);
}

/* G = factor gs x */
static void set_grad(step *s, kc_buf x, double factor) {
    un(s, KC_UN_MUL, (float)(factor * s->gs), x, s->G);
}

/* mask = lo <= x <= hi (tf.clip_by_value's gradient), with tmp as scratch */
static void inside(step *s, kc_buf x, float lo, float hi, kc_buf mask, kc_buf tmp) {
    un(s, KC_UN_GE, lo, x, mask);
    un(s, KC_UN_LE, hi, x, tmp);
    elementwise(s, KC_BIN_MUL, mask, tmp, mask);
}

/* y = ln clip(x, eps, 1 - eps), clipped in the log domain: 1 - eps rounds
 * to 1 - 1.19e-7 in float32, which would put ln of the upper bound 19% off
 * the host's ln(1 - 1e-7). */
static void clipped_log(step *s, kc_buf x, kc_buf y) {
    un(s, KC_UN_MAX, EPS, x, y);
    un(s, KC_UN_LOG, 0.0f, y, y);
    un(s, KC_UN_MIN, LOG_ONE_MINUS_EPS, y, y);
}

/* y = ln(1 - clip(x, eps, 1 - eps)) as ln1p(-min(x, 1)) clipped to the
 * logs of the bounds: 1 - x would round where ln1p does not. */
static void clipped_log1m(step *s, kc_buf x, kc_buf y) {
    un(s, KC_UN_MIN, 1.0f, x, y);
    un(s, KC_UN_NEG, 0.0f, y, y);
    un(s, KC_UN_LOG1P, 0.0f, y, y);
    kc_clip(s->d, y, y, LOG_EPS, LOG_ONE_MINUS_EPS, s->n);
}

/* The targets with label smoothing toward `uniform`, in w when smoothing is on. */
static kc_buf smoothed(step *s, double uniform, kc_buf w) {
    double ls = s->p->smoothing;
    if (ls == 0.0) return s->T;
    un(s, KC_UN_MUL, (float)(1.0 - ls), s->T, w);
    un(s, KC_UN_ADD, (float)(ls * uniform), w, w);
    return w;
}

/* One-hot rows of the class indices in T: label column == 0 .. C-1. */
static void one_hot(step *s, kc_buf y) {
    int64_t a[2] = {s->N, 1}, b[2] = {1, s->C};
    kc_bcast g;
    if (kc_bcast_make(&g, a, 2, b, 2, NULL)) {
        kc_device_fail(s->d, KC_ECONFIG, "sparse labels: no broadcast for %d x %d", s->N, s->C);
        return;
    }
    kc_binary(s->d, KC_BIN_EQ, &g, s->T, s->p->iota, y);
}

/* ---- the losses ---- */

static void mse(step *s) {
    kc_buf d = s->p->w[0];
    elementwise(s, KC_BIN_SUB, s->P, s->T, d);
    if (s->want_v) add_value(s, KC_RED_SUMSQ, d, s->n, 1.0 / s->C);
    if (s->want_g) set_grad(s, d, 2.0 / s->C);
}

static void mae(step *s) {
    kc_buf d = s->p->w[0];
    elementwise(s, KC_BIN_SUB, s->P, s->T, d);
    if (s->want_v) add_value(s, KC_RED_SUMABS, d, s->n, 1.0 / s->C);
    if (!s->want_g) return;
    un(s, KC_UN_SIGN, 0.0f, d, d);
    set_grad(s, d, 1.0 / s->C);
}

/* Softmax crossentropy on logits P against target rows t; tsum_one says
 * every row of t sums to 1 (one-hot), which saves the row sums. */
static void softmax_crossentropy(step *s, kc_buf t, int tsum_one) {
    const kc_loss_device *p = s->p;
    kc_buf zm = p->w[0], e = p->w[2], tmp = p->w[3];
    kc_buf max = p->r[0], se = p->r[1], lse = p->r[2], tsum = p->r[3], f = p->r[4];
    per_row(s, KC_RED_MAX, s->P, max);
    by_row(s, KC_BIN_SUB, s->P, max, zm);
    un(s, KC_UN_EXP, 0.0f, zm, e);
    per_row(s, KC_RED_SUM, e, se);
    if (s->want_v) {
        /* -sum t log_softmax(z), log_softmax = (z - max) - ln sum exp(z - max) */
        un_rows(s, KC_UN_LOG, 0.0f, se, lse);
        by_row(s, KC_BIN_SUB, zm, lse, zm);
        elementwise(s, KC_BIN_MUL, t, zm, tmp);
        add_value(s, KC_RED_SUM, tmp, s->n, -1.0);
    }
    if (!s->want_g) return;
    /* softmax(z) sum(t) - t */
    if (tsum_one) {
        un_rows(s, KC_UN_RECIP, 0.0f, se, f);
    } else {
        per_row(s, KC_RED_SUM, t, tsum);
        kc_binary_n(s->d, KC_BIN_DIV, tsum, se, f, (size_t)s->N);
    }
    by_row(s, KC_BIN_MUL, e, f, s->G);
    elementwise(s, KC_BIN_SUB, s->G, t, s->G);
    un(s, KC_UN_MUL, (float)s->gs, s->G, s->G);
}

/* Keras's p / sum(p), clipped; the gradient flows back through the sum. */
static void categorical_probs(step *s, kc_buf t) {
    const kc_loss_device *p = s->p;
    kc_buf q = p->w[0], qc = p->w[2], a = p->w[3], b = p->w[4];
    kc_buf sum = p->r[0], tin = p->r[1], f = p->r[2];
    per_row(s, KC_RED_SUM, s->P, sum);
    by_row(s, KC_BIN_DIV, s->P, sum, q);
    if (s->want_v) {
        clipped_log(s, q, a);
        elementwise(s, KC_BIN_MUL, t, a, a);
        add_value(s, KC_RED_SUM, a, s->n, -1.0);
    }
    if (!s->want_g) return;
    /* with a = inside t / q and tin = sum(inside t) (= -sum dL/dq q):
     * g = (dL/dq - sum dL/dq q) / sum = -(a - tin) / sum; q is raised to
     * eps where a is 0 so that 0 / 0 cannot arise */
    inside(s, q, EPS, ONE_MINUS_EPS, a, b);
    elementwise(s, KC_BIN_MUL, a, t, a);
    per_row(s, KC_RED_SUM, a, tin);
    un(s, KC_UN_MAX, EPS, q, qc);
    elementwise(s, KC_BIN_DIV, a, qc, a);
    by_row(s, KC_BIN_SUB, a, tin, a);
    un_rows(s, KC_UN_RECIP, 0.0f, sum, f);
    un_rows(s, KC_UN_MUL, (float)-s->gs, f, f);
    by_row(s, KC_BIN_MUL, a, f, s->G);
}

static void categorical(step *s) {
    kc_buf t = smoothed(s, 1.0 / s->C, s->p->w[1]);
    if (s->p->logits)
        softmax_crossentropy(s, t, 0);
    else
        categorical_probs(s, t);
}

/* TensorFlow's path: clip, then ln(sum q) - ln q_y. */
static void sparse_probs(step *s, kc_buf y) {
    const kc_loss_device *p = s->p;
    kc_buf q = p->w[0], a = p->w[2], m = p->w[3], tmp = p->w[4];
    kc_buf sum = p->r[0], lqy = p->r[1], v = p->r[2], rest = p->r[3];
    kc_clip(s->d, s->P, q, EPS, ONE_MINUS_EPS, s->n);
    per_row(s, KC_RED_SUM, q, sum);
    if (s->want_v) {
        un(s, KC_UN_LOG, 0.0f, q, a);
        elementwise(s, KC_BIN_MUL, y, a, a);
        per_row(s, KC_RED_SUM, a, lqy);
        un_rows(s, KC_UN_LOG, 0.0f, sum, v);
        kc_binary_n(s->d, KC_BIN_SUB, v, lqy, v, (size_t)s->N);
        add_value(s, KC_RED_SUM, v, (size_t)s->N, 1.0);
    }
    if (!s->want_g) return;
    /* inside ? 1 / sum - y / q : 0, as ((1 - y) - y rest / q) / sum with
     * rest = sum - q_y summed over the other classes: at the label 1 / sum
     * and 1 / q_y nearly cancel when the prediction is confident */
    un(s, KC_UN_RSUB, 1.0f, y, m);
    elementwise(s, KC_BIN_MUL, m, q, a);
    per_row(s, KC_RED_SUM, a, rest);
    elementwise(s, KC_BIN_DIV, y, q, a);
    by_row(s, KC_BIN_MUL, a, rest, a);
    elementwise(s, KC_BIN_SUB, m, a, a);
    by_row(s, KC_BIN_DIV, a, sum, a);
    inside(s, s->P, EPS, ONE_MINUS_EPS, m, tmp);
    elementwise(s, KC_BIN_MUL, a, m, a);
    set_grad(s, a, 1.0);
}

static void sparse(step *s) {
    kc_buf y = s->p->w[1];
    one_hot(s, y);
    if (s->p->logits)
        softmax_crossentropy(s, y, 1);
    else
        sparse_probs(s, y);
}

static void binary(step *s) {
    const kc_loss_device *p = s->p;
    kc_buf t = smoothed(s, 0.5, p->w[1]);
    kc_buf a = p->w[0], b = p->w[2], c = p->w[3], d = p->w[4], e = p->w[5];
    if (p->logits) {
        if (s->want_v) {
            /* max(x, 0) - x t + ln(1 + exp(-|x|)) */
            un(s, KC_UN_ABS, 0.0f, s->P, a);
            un(s, KC_UN_NEG, 0.0f, a, a);
            un(s, KC_UN_EXP, 0.0f, a, a);
            un(s, KC_UN_LOG1P, 0.0f, a, a);
            un(s, KC_UN_MAX, 0.0f, s->P, b);
            elementwise(s, KC_BIN_ADD, a, b, a);
            elementwise(s, KC_BIN_MUL, s->P, t, b);
            elementwise(s, KC_BIN_SUB, a, b, a);
            add_value(s, KC_RED_SUM, a, s->n, 1.0 / s->C);
        }
        if (s->want_g) {
            un(s, KC_UN_SIGMOID, 0.0f, s->P, s->G);
            elementwise(s, KC_BIN_SUB, s->G, t, s->G);
            un(s, KC_UN_MUL, (float)(s->gs / s->C), s->G, s->G);
        }
        return;
    }
    if (s->want_v) {
        /* -(t ln pc + (1 - t) ln(1 - pc)) */
        clipped_log(s, s->P, c);
        elementwise(s, KC_BIN_MUL, c, t, c);
        un(s, KC_UN_RSUB, 1.0f, t, d);
        clipped_log1m(s, s->P, e);
        elementwise(s, KC_BIN_MUL, d, e, d);
        elementwise(s, KC_BIN_ADD, c, d, c);
        add_value(s, KC_RED_SUM, c, s->n, -1.0 / s->C);
    }
    if (!s->want_g) return;
    /* inside ? (1 - t) / (1 - pc) - t / pc : 0; inside, 1 - x is exact
     * for x >= 0.5 and the clipped forms only keep 0 / 0 out */
    kc_buf pc = a, om = b;
    kc_clip(s->d, s->P, pc, EPS, ONE_MINUS_EPS, s->n);
    un(s, KC_UN_RSUB, 1.0f, s->P, om);
    kc_clip(s->d, om, om, EPS, ONE_MINUS_EPS, s->n);
    elementwise(s, KC_BIN_DIV, t, pc, c);
    un(s, KC_UN_RSUB, 1.0f, t, d);
    elementwise(s, KC_BIN_DIV, d, om, d);
    elementwise(s, KC_BIN_SUB, d, c, d);
    inside(s, s->P, EPS, ONE_MINUS_EPS, c, e);
    elementwise(s, KC_BIN_MUL, d, c, d);
    set_grad(s, d, 1.0 / s->C);
}

static void kld(step *s) {
    const kc_loss_device *p = s->p;
    kc_buf tc = p->w[0], pc = p->w[1], a = p->w[2], m = p->w[3];
    kc_clip(s->d, s->T, tc, EPS, 1.0f, s->n);
    kc_clip(s->d, s->P, pc, EPS, 1.0f, s->n);
    if (s->want_v) {
        /* ln tc - ln pc: tc / pc would round before the log */
        un(s, KC_UN_LOG, 0.0f, tc, a);
        un(s, KC_UN_LOG, 0.0f, pc, m);
        elementwise(s, KC_BIN_SUB, a, m, a);
        elementwise(s, KC_BIN_MUL, a, tc, a);
        add_value(s, KC_RED_SUM, a, s->n, 1.0);
    }
    if (!s->want_g) return;
    elementwise(s, KC_BIN_DIV, tc, pc, a);
    inside(s, s->P, EPS, 1.0f, m, pc);
    elementwise(s, KC_BIN_MUL, a, m, a);
    set_grad(s, a, -1.0);
}

static void mape(step *s) {
    const kc_loss_device *p = s->p;
    kc_buf d = p->w[0], den = p->w[1], a = p->w[2];
    elementwise(s, KC_BIN_SUB, s->T, s->P, d);
    un(s, KC_UN_ABS, 0.0f, s->T, den);
    un(s, KC_UN_MAX, EPS, den, den);
    if (s->want_v) {
        un(s, KC_UN_ABS, 0.0f, d, a);
        elementwise(s, KC_BIN_DIV, a, den, a);
        add_value(s, KC_RED_SUM, a, s->n, 100.0 / s->C);
    }
    if (!s->want_g) return;
    un(s, KC_UN_SIGN, 0.0f, d, a);
    elementwise(s, KC_BIN_DIV, a, den, a);
    set_grad(s, a, -100.0 / s->C);
}

static void msle(step *s) {
    const kc_loss_device *p = s->p;
    kc_buf pc = p->w[0], d = p->w[1], b = p->w[2], c = p->w[3];
    un(s, KC_UN_MAX, EPS, s->P, pc);
    un(s, KC_UN_LOG1P, 0.0f, pc, d);
    un(s, KC_UN_MAX, EPS, s->T, b);
    un(s, KC_UN_LOG1P, 0.0f, b, b);
    elementwise(s, KC_BIN_SUB, d, b, d);
    if (s->want_v) add_value(s, KC_RED_SUMSQ, d, s->n, 1.0 / s->C);
    if (!s->want_g) return;
    /* p >= eps ? 2 d / (pc + 1) : 0 */
    un(s, KC_UN_GE, EPS, s->P, b);
    un(s, KC_UN_ADD, 1.0f, pc, c);
    elementwise(s, KC_BIN_DIV, d, c, d);
    elementwise(s, KC_BIN_MUL, d, b, d);
    set_grad(s, d, 2.0 / s->C);
}

/* With q = clip(e, -delta, delta): 0.5 q^2 + delta (|e| - |q|) is both
 * branches of Huber's loss, and q is its gradient. */
static void huber(step *s) {
    const kc_loss_device *p = s->p;
    float delta = p->delta;
    kc_buf e = p->w[0], q = p->w[1], a = p->w[2], b = p->w[3];
    elementwise(s, KC_BIN_SUB, s->P, s->T, e);
    kc_clip(s->d, e, q, -delta, delta, s->n);
    if (s->want_v) {
        un(s, KC_UN_ABS, 0.0f, e, a);
        un(s, KC_UN_ABS, 0.0f, q, b);
        elementwise(s, KC_BIN_SUB, a, b, a);
        un(s, KC_UN_MUL, delta, a, a);
        un(s, KC_UN_SQUARE, 0.0f, q, b);
        un(s, KC_UN_MUL, 0.5f, b, b);
        elementwise(s, KC_BIN_ADD, a, b, a);
        add_value(s, KC_RED_SUM, a, s->n, 1.0 / s->C);
    }
    if (s->want_g) set_grad(s, q, 1.0 / s->C);
}

/* ln cosh x: Keras's |x| + ln(1 + exp(-2|x|)) - ln 2 loses every digit to
 * cancellation in float32 as x goes to 0, so below |x| = 1 it is
 * -0.5 ln(1 - tanh^2 x) instead. */
static void log_cosh(step *s) {
    const kc_loss_device *p = s->p;
    kc_buf x = p->w[0], ax = p->w[1], th = p->w[2], small = p->w[3], large = p->w[4],
           cond = p->w[5];
    elementwise(s, KC_BIN_SUB, s->P, s->T, x);
    un(s, KC_UN_TANH, 0.0f, x, th);
    if (s->want_v) {
        un(s, KC_UN_SQUARE, 0.0f, th, small);
        un(s, KC_UN_NEG, 0.0f, small, small);
        un(s, KC_UN_LOG1P, 0.0f, small, small);
        un(s, KC_UN_MUL, -0.5f, small, small);
        un(s, KC_UN_ABS, 0.0f, x, ax);
        un(s, KC_UN_MUL, -2.0f, ax, large);
        un(s, KC_UN_EXP, 0.0f, large, large);
        un(s, KC_UN_LOG1P, 0.0f, large, large);
        elementwise(s, KC_BIN_ADD, large, ax, large);
        un(s, KC_UN_ADD, (float)-M_LN2, large, large);
        un(s, KC_UN_LT, 1.0f, ax, cond);
        kc_select(s->d, cond, small, large, small, s->n);
        add_value(s, KC_RED_SUM, small, s->n, 1.0 / s->C);
    }
    if (s->want_g) set_grad(s, th, 1.0 / s->C);
}

static void hinge(step *s, int squared) {
    const kc_loss_device *p = s->p;
    kc_buf a = p->w[0], tt = p->w[1], m = p->w[2], h = p->w[3], g = p->w[4];
    kc_buf binary = p->s;
    /* Keras's {0, 1} -> {-1, 1} when every target of the call is 0 or 1:
     * b = min over targets of [t == 0 or t == 1], then t + b (t - 1) */
    un(s, KC_UN_EQ, 0.0f, s->T, a);
    un(s, KC_UN_EQ, 1.0f, s->T, tt);
    elementwise(s, KC_BIN_ADD, a, tt, a);
    kc_reduce_desc all = {1, (int64_t)s->n, 1};
    kc_reduce(s->d, KC_RED_MIN, &all, 1.0f, a, 0.0f, binary);
    un(s, KC_UN_ADD, -1.0f, s->T, tt);
    kc_bcast scalar = {.rank = 1, .dims = {(int64_t)s->n}, .sa = {1}, .sb = {0}};
    kc_binary(s->d, KC_BIN_MUL, &scalar, tt, binary, tt);
    elementwise(s, KC_BIN_ADD, tt, s->T, tt);
    /* m = 1 - tt p, h = max(m, 0) */
    elementwise(s, KC_BIN_MUL, tt, s->P, m);
    un(s, KC_UN_RSUB, 1.0f, m, m);
    un(s, KC_UN_MAX, 0.0f, m, h);
    if (s->want_v) add_value(s, squared ? KC_RED_SUMSQ : KC_RED_SUM, h, s->n, 1.0 / s->C);
    if (!s->want_g) return;
    un(s, KC_UN_GE, 0.0f, m, g);
    elementwise(s, KC_BIN_MUL, g, tt, g);
    if (squared) elementwise(s, KC_BIN_MUL, g, h, g);
    set_grad(s, g, (squared ? -2.0 : -1.0) / s->C);
}

static void categorical_hinge(step *s) {
    const kc_loss_device *p = s->p;
    kc_buf a = p->w[0], omt = p->w[1], q = p->w[2], ties = p->w[3];
    kc_buf pos = p->r[0], neg = p->r[1], v = p->r[2], h = p->r[3], nties = p->r[4], live = p->r[5];
    elementwise(s, KC_BIN_MUL, s->T, s->P, a);
    per_row(s, KC_RED_SUM, a, pos);
    un(s, KC_UN_RSUB, 1.0f, s->T, omt);
    elementwise(s, KC_BIN_MUL, omt, s->P, q);
    per_row(s, KC_RED_MAX, q, neg);
    kc_binary_n(s->d, KC_BIN_SUB, neg, pos, v, (size_t)s->N);
    un_rows(s, KC_UN_ADD, 1.0f, v, v);
    if (s->want_v) {
        un_rows(s, KC_UN_MAX, 0.0f, v, h);
        add_value(s, KC_RED_SUM, h, (size_t)s->N, 1.0);
    }
    if (!s->want_g) return;
    /* v >= 0 ? [q == max] (1 - t) / ties - t : 0 */
    by_row(s, KC_BIN_EQ, q, neg, ties);
    per_row(s, KC_RED_SUM, ties, nties);
    elementwise(s, KC_BIN_MUL, ties, omt, ties);
    by_row(s, KC_BIN_DIV, ties, nties, ties);
    elementwise(s, KC_BIN_SUB, ties, s->T, ties);
    un_rows(s, KC_UN_GE, 0.0f, v, live);
    un_rows(s, KC_UN_MUL, (float)s->gs, live, live);
    by_row(s, KC_BIN_MUL, ties, live, s->G);
}

static void poisson(step *s) {
    const kc_loss_device *p = s->p;
    kc_buf pe = p->w[0], a = p->w[1];
    un(s, KC_UN_ADD, EPS, s->P, pe);
    if (s->want_v) {
        un(s, KC_UN_LOG, 0.0f, pe, a);
        elementwise(s, KC_BIN_MUL, a, s->T, a);
        elementwise(s, KC_BIN_SUB, s->P, a, a);
        add_value(s, KC_RED_SUM, a, s->n, 1.0 / s->C);
    }
    if (!s->want_g) return;
    elementwise(s, KC_BIN_DIV, s->T, pe, a);
    un(s, KC_UN_RSUB, 1.0f, a, a);
    set_grad(s, a, 1.0 / s->C);
}

/* 1 / ||x|| per row, capped at 1 / eps; open = the cap did not apply. */
static void inverse_norm(step *s, kc_buf x, kc_buf inv, kc_buf open, kc_buf cap) {
    per_row(s, KC_RED_SUMSQ, x, inv);
    un_rows(s, KC_UN_SQRT, 0.0f, inv, inv);
    un_rows(s, KC_UN_RECIP, 0.0f, inv, inv);
    un_rows(s, KC_UN_LE, (float)(1.0 / KC_LOSS_EPSILON), inv, open);
    kc_select(s->d, open, inv, cap, inv, (size_t)s->N);
}

static void cosine(step *s) {
    const kc_loss_device *p = s->p;
    kc_buf a = p->w[0], b = p->w[1];
    kc_buf it = p->r[0], ip = p->r[1], dot = p->r[2], topen = p->r[3], popen = p->r[4],
           tmp = p->r[5];
    elementwise(s, KC_BIN_MUL, s->T, s->P, a);
    per_row(s, KC_RED_SUM, a, dot);
    kc_fill(s->d, tmp, (float)(1.0 / KC_LOSS_EPSILON), (size_t)s->N);
    inverse_norm(s, s->T, it, topen, tmp);
    inverse_norm(s, s->P, ip, popen, tmp);
    kc_buf k = topen; /* it ip */
    kc_binary_n(s->d, KC_BIN_MUL, it, ip, k, (size_t)s->N);
    if (s->want_v) {
        kc_binary_n(s->d, KC_BIN_MUL, k, dot, tmp, (size_t)s->N);
        add_value(s, KC_RED_SUM, tmp, (size_t)s->N, -1.0);
    }
    if (!s->want_g) return;
    /* -it ip (t - [not capped] dot ip^2 p) */
    kc_buf f = popen;
    kc_binary_n(s->d, KC_BIN_MUL, f, dot, f, (size_t)s->N);
    kc_binary_n(s->d, KC_BIN_MUL, f, ip, f, (size_t)s->N);
    kc_binary_n(s->d, KC_BIN_MUL, f, ip, f, (size_t)s->N);
    by_row(s, KC_BIN_MUL, s->P, f, b);
    elementwise(s, KC_BIN_SUB, s->T, b, b);
    un_rows(s, KC_UN_MUL, (float)-s->gs, k, k);
    by_row(s, KC_BIN_MUL, b, k, s->G);
}

/* ---- plan and run ---- */

void kc_loss_device_free(kc_loss_device *p) {
    if (!p->d) return;
    for (int i = 0; i < KC_LOSS_DEVICE_WORK; i++)
        kc_free(p->d, &p->w[i]);
    for (int i = 0; i < KC_LOSS_DEVICE_ROWS; i++)
        kc_free(p->d, &p->r[i]);
    kc_free(p->d, &p->iota);
    kc_free(p->d, &p->s);
    kc_free(p->d, &p->mw);
    kc_free(p->d, &p->mt);
    memset(p, 0, sizeof *p);
}

int kc_loss_device_plan(kc_loss_device *p, kc_device *d, const kc_loss *l, int max_rows, int cols,
                        int logits, kc_error *e) {
    memset(p, 0, sizeof *p);
    const char *name = kc_loss_class_name(l);
    size_t k = 0;
    while (k < NKINDS && strcmp(kinds[k].class_name, name))
        k++;
    if (k == NKINDS) return kc_fail(e, KC_ECONFIG, "loss %s has no device version", name);
    if (max_rows <= 0 || cols <= 0)
        return kc_fail(e, KC_ECONFIG, "loss %s: batches of %d x %d values", name, max_rows, cols);
    p->d = d;
    p->kind = kinds[k].kind;
    p->logits = kc_loss_has_logits_form(l) && (logits || l->from_logits);
    p->sum = l->reduction == KC_REDUCTION_SUM;
    p->smoothing = l->label_smoothing;
    p->delta = (float)l->delta;
    p->max_rows = max_rows;
    p->cols = cols;
    size_t n = (size_t)max_rows * (size_t)cols;
    for (int i = 0; i < kinds[k].work; i++)
        kc_alloc(d, n * sizeof(float), &p->w[i]);
    for (int i = 0; i < KC_LOSS_DEVICE_ROWS; i++)
        kc_alloc(d, (size_t)max_rows * sizeof(float), &p->r[i]);
    kc_alloc(d, 4 * sizeof(float), &p->s);
    if (p->kind == DL_SPARSE) {
        float *iota = malloc((size_t)cols * sizeof *iota);
        if (!iota) {
            kc_loss_device_free(p);
            return kc_fail(e, KC_ERUNTIME, "out of memory");
        }
        for (int j = 0; j < cols; j++)
            iota[j] = (float)j;
        kc_alloc(d, (size_t)cols * sizeof(float), &p->iota);
        kc_upload(d, p->iota, iota, (size_t)cols * sizeof(float));
        free(iota);
    }
    int rc = kc_device_error(d, e);
    if (rc) kc_loss_device_free(p);
    return rc;
}

int kc_loss_device_plan_mask(kc_loss_device *p, kc_error *e) {
    size_t n = (size_t)p->max_rows * (size_t)p->cols;
    kc_alloc(p->d, ((size_t)p->max_rows + 1) * sizeof(float), &p->mw);
    kc_alloc(p->d, n * sizeof(float), &p->mt);
    return kc_device_error(p->d, e);
}

/* Keras's apply_mask: weights mask * rows / valid for the mean reductions
 * (0 everywhere when no row is valid), the mask itself for "sum". */
static kc_buf mask_weights(kc_loss_device *p, kc_buf mask, int rows) {
    kc_device *d = p->d;
    kc_buf w = p->mw, valid = kc_buf_f(p->mw, (size_t)p->max_rows);
    if (p->sum) {
        kc_copy(d, w, mask, (size_t)rows * sizeof(float));
        return w;
    }
    kc_reduce_desc g = {1, rows, 1};
    kc_reduce(d, KC_RED_SUM, &g, 1.0f, mask, 0.0f, valid);
    kc_unary(d, KC_UN_MAX, 1e-30f, valid, valid, 1);
    kc_unary(d, KC_UN_MUL, (float)rows, mask, w, (size_t)rows);
    kc_bcast one = kc_bcast_cols(1, (size_t)rows);
    kc_binary(d, KC_BIN_DIV, &one, w, valid, w);
    return w;
}

static int run(kc_loss_device *p, kc_buf pred, kc_buf target, int rows, float grad_scale,
               kc_buf grad, kc_buf acc, float acc_alpha, kc_buf mask);

int kc_loss_device_run(kc_loss_device *p, kc_buf pred, kc_buf target, int rows, float grad_scale,
                       kc_buf grad, kc_buf acc, float acc_alpha) {
    return run(p, pred, target, rows, grad_scale, grad, acc, acc_alpha, KC_BUF_NULL);
}

int kc_loss_device_run_masked(kc_loss_device *p, kc_buf pred, kc_buf target, int rows,
                              float grad_scale, kc_buf grad, kc_buf acc, float acc_alpha,
                              kc_buf mask) {
    if (kc_buf_ok(mask) && !kc_buf_ok(p->mw))
        return kc_device_fail(p->d, KC_ECONFIG, "loss: a mask without kc_loss_device_plan_mask");
    return run(p, pred, target, rows, grad_scale, grad, acc, acc_alpha, mask);
}

static int run(kc_loss_device *p, kc_buf pred, kc_buf target, int rows, float grad_scale,
               kc_buf grad, kc_buf acc, float acc_alpha, kc_buf mask) {
    kc_device *d = p->d;
    if (d->err.code) return d->err.code;
    if (rows > p->max_rows)
        return kc_device_fail(d, KC_ECONFIG, "loss: a batch of %d rows, planned for %d", rows,
                              p->max_rows);
    if (rows <= 0 || (!kc_buf_ok(grad) && !kc_buf_ok(acc))) return KC_OK;
    double scale = p->sum ? 1.0 : 1.0 / rows;
    step s = {
        .d = d,
        .p = p,
        .P = pred,
        .T = target,
        .G = grad,
        .acc = acc,
        .N = rows,
        .C = p->cols,
        .n = (size_t)rows * (size_t)p->cols,
        .vs = (double)acc_alpha * scale,
        .gs = (double)grad_scale * scale,
        .want_v = kc_buf_ok(acc),
        .want_g = kc_buf_ok(grad),
        .rw = kc_buf_ok(mask) ? mask_weights(p, mask, rows) : KC_BUF_NULL,
    };
    switch (p->kind) {
    case DL_MSE:
        mse(&s);
        break;
    case DL_MAE:
        mae(&s);
        break;
    case DL_CATEGORICAL:
        categorical(&s);
        break;
    case DL_SPARSE:
        sparse(&s);
        break;
    case DL_BINARY:
        binary(&s);
        break;
    case DL_KLD:
        kld(&s);
        break;
    case DL_MAPE:
        mape(&s);
        break;
    case DL_MSLE:
        msle(&s);
        break;
    case DL_HUBER:
        huber(&s);
        break;
    case DL_LOG_COSH:
        log_cosh(&s);
        break;
    case DL_HINGE:
        hinge(&s, 0);
        break;
    case DL_SQUARED_HINGE:
        hinge(&s, 1);
        break;
    case DL_CATEGORICAL_HINGE:
        categorical_hinge(&s);
        break;
    case DL_POISSON:
        poisson(&s);
        break;
    case DL_COSINE:
        cosine(&s);
        break;
    }
    if (kc_buf_ok(s.rw) && s.want_g) by_row(&s, KC_BIN_MUL, grad, s.rw, grad);
    return kc_device_status(d);
}
