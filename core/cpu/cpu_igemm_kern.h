/* The indirect-GEMM micro-kernels, written once over a vector abstraction
 * and included by cpu_igemm.c once per instruction set (no include guard on
 * purpose). The includer defines:
 *   ISA(name)   suffixes a name with the instruction set
 *   VEC, VW     the vector type and its float width
 *   MASK        the type selecting the live lanes of a partial vector
 *   V_ZERO(), V_BCAST(x), V_LOAD(p), V_MLOAD(m, p), V_FMA(a, b, c),
 *   V_MSTORE(p, m, v), V_MUL(a, b), V_ADD(a, b), V_MASK(n)
 *   KC_IG_MR(nv)     the row height of a full tile nv vectors wide
 *   KC_IG_UNROLL_K   an unroll pragma for the k loop, or nothing
 *
 * One tile call computes C[0..MR) x [0..NV*VW) =
 *   beta C + sum_k a[abase[k] + aoff[i]] * b[k*ldb + j]
 * with the accumulators in registers and k in increasing order; igemm below
 * calls it once per block of KC_IG_KB steps of k, so every element of C has
 * one fixed summation order. */

static inline __attribute__((always_inline)) void
ISA(tile)(const int MR, const int NV, const int STRIDED, int kc, const float *a, const int *aoff,
          const int *abase, long rs, long cs, const float *b, long ldb, float beta, float *c,
          long ldc, MASK last) {
    VEC acc[KC_IG_MR_MAX][4];
    const float *ap[KC_IG_MR_MAX];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        ap[i] = a + (STRIDED ? i * rs : aoff[i]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = V_ZERO();
    }
    KC_IG_UNROLL_K
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (long)k * ldb;
        long o = STRIDED ? k * cs : abase[k];
        VEC bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            bv[v] = v == NV - 1 ? V_MLOAD(last, bk + v * VW) : V_LOAD(bk + v * VW);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            VEC s = V_BCAST(ap[i][o]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[i][v] = V_FMA(s, bv[v], acc[i][v]);
        }
    }
    VEC vb = V_BCAST(beta);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        float *ci = c + (long)i * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            MASK m = v == NV - 1 ? last : V_MASK(VW);
            VEC r = acc[i][v];
            if (beta == 1.0f)
                r = V_ADD(r, V_MLOAD(m, ci + v * VW));
            else if (beta != 0.0f)
                r = V_ADD(r, V_MUL(vb, V_MLOAD(m, ci + v * VW)));
            V_MSTORE(ci + v * VW, m, r);
        }
    }
}

typedef void (*ISA(tile_fn))(int kc, const float *a, const int *aoff, const int *abase, long rs,
                             long cs, const float *b, long ldb, float beta, float *c, long ldc,
                             MASK last);

/* Each shape twice: offsets from the tables, or a plain strided matrix
 * (A(i, k) = a[i rs + k cs], the tables unused). */
#define KC_IG_TILE(NV, MR)                                                                         \
    static void ISA(tile_##NV##_##MR)(int kc, const float *a, const int *aoff, const int *abase,   \
                                      long rs, long cs, const float *b, long ldb, float beta,      \
                                      float *c, long ldc, MASK last) {                             \
        ISA(tile)(MR, NV, 0, kc, a, aoff, abase, rs, cs, b, ldb, beta, c, ldc, last);              \
    }                                                                                              \
    static void ISA(stile_##NV##_##MR)(int kc, const float *a, const int *aoff, const int *abase,  \
                                       long rs, long cs, const float *b, long ldb, float beta,     \
                                       float *c, long ldc, MASK last) {                            \
        ISA(tile)(MR, NV, 1, kc, a, aoff, abase, rs, cs, b, ldb, beta, c, ldc, last);              \
    }
#define KC_IG_TILES_6(NV)                                                                          \
    KC_IG_TILE(NV, 1)                                                                              \
    KC_IG_TILE(NV, 2) KC_IG_TILE(NV, 3) KC_IG_TILE(NV, 4) KC_IG_TILE(NV, 5) KC_IG_TILE(NV, 6)
#define KC_IG_TILES_8(NV) KC_IG_TILES_6(NV) KC_IG_TILE(NV, 7) KC_IG_TILE(NV, 8)
#define KC_IG_TILES_12(NV)                                                                         \
    KC_IG_TILES_8(NV) KC_IG_TILE(NV, 9) KC_IG_TILE(NV, 10) KC_IG_TILE(NV, 11) KC_IG_TILE(NV, 12)

KC_IG_TILES_12(1)
KC_IG_TILES_12(2)
KC_IG_TILES_8(3)
KC_IG_TILES_6(4)

#define KC_IG_ROW6(P, NV)                                                                          \
    ISA(P##_##NV##_1), ISA(P##_##NV##_2), ISA(P##_##NV##_3), ISA(P##_##NV##_4), ISA(P##_##NV##_5), \
        ISA(P##_##NV##_6)
#define KC_IG_ROW8(P, NV) KC_IG_ROW6(P, NV), ISA(P##_##NV##_7), ISA(P##_##NV##_8)
#define KC_IG_ROW12(P, NV)                                                                         \
    KC_IG_ROW8(P, NV), ISA(P##_##NV##_9), ISA(P##_##NV##_10), ISA(P##_##NV##_11), ISA(P##_##NV##_12)

/* [strided][nv - 1][mr - 1]; the row height of a full tile is KC_IG_MR(nv). */
static const ISA(tile_fn) ISA(tiles)[2][4][KC_IG_MR_MAX] = {
    {{KC_IG_ROW12(tile, 1)}, {KC_IG_ROW12(tile, 2)}, {KC_IG_ROW8(tile, 3)}, {KC_IG_ROW6(tile, 4)}},
    {{KC_IG_ROW12(stile, 1)},
     {KC_IG_ROW12(stile, 2)},
     {KC_IG_ROW8(stile, 3)},
     {KC_IG_ROW6(stile, 4)}},
};

#undef KC_IG_TILE
#undef KC_IG_TILES_6
#undef KC_IG_TILES_8
#undef KC_IG_TILES_12
#undef KC_IG_ROW6
#undef KC_IG_ROW8
#undef KC_IG_ROW12

/* The shape of the task list: tasks are (column block, row tile) pairs, the
 * full-width blocks first, then the last (narrower) one. */
typedef struct ISA(plan) {
    int blocks, last_nv, full_mr, last_mr;
    long full_tiles, last_tiles;
} ISA(plan);

/* Task `task` over the steps [k0, k1) of k, in blocks of KC_IG_KB from k0:
 * the tile sums each block from zero and adds it to C (beta 1 after the
 * first block of all, k0 0), block after block. */
static void ISA(task)(const kc_cpu_igemm_args *g, const ISA(plan) * p, long task, int k0, int k1) {
    const int nr = 4 * VW;
    int blk, mr, nv;
    long tile;
    if (task < p->full_tiles * (p->blocks - 1)) {
        blk = (int)(task / p->full_tiles);
        tile = task % p->full_tiles;
        mr = p->full_mr;
        nv = 4;
    } else {
        blk = p->blocks - 1;
        tile = task - p->full_tiles * (p->blocks - 1);
        mr = p->last_mr;
        nv = p->last_nv;
    }
    int j0 = blk * nr, i0 = (int)(tile * mr);
    int rows = g->m - i0 < mr ? g->m - i0 : mr;
    int cols = g->n - j0 < nr ? g->n - j0 : nr;
    MASK last = V_MASK(cols - (nv - 1) * VW);
    int strided = g->aoff == NULL;
    ISA(tile_fn) fn = ISA(tiles)[strided][nv - 1][rows - 1];
    const float *a = strided ? g->a + (long)i0 * g->rs : g->a;
    const int *aoff = strided ? NULL : g->aoff + i0;
    float *c = g->c + (long)i0 * g->ldc + j0;
    do { /* once at least: with k 0 the tile still writes beta C */
        int kb = k1 - k0 < KC_IG_KB ? k1 - k0 : KC_IG_KB;
        fn(kb, strided ? a + k0 * g->cs : a, aoff, strided ? NULL : g->abase + k0, g->rs, g->cs,
           g->b + (long)k0 * g->ldb + j0, g->ldb, k0 ? 1.0f : g->beta, c, g->ldc, last);
        k0 += kb;
    } while (k0 < k1);
}

/* Threads take chunks of tasks as they come free, so a thread the OS delays
 * holds up only its chunk. Every task writes its own tile of C, so who runs
 * it does not change the bits.
 *
 * A task sums k in blocks of KC_IG_KB and adds each block to C in turn. One
 * running sum over a long reduction (a dense layer's 1600 inputs) carries
 * several times the rounding error of this two-level sum, since every late
 * term lands on a large partial sum. The registers have no room for a second
 * set of accumulators; C, which the task owns and keeps in L1, costs one
 * load-add-store per block. The blocks depend on k alone.
 *
 * A long reduction (a weight gradient over many rows) runs in spans of
 * KC_IG_KSPAN steps, a multiple of KC_IG_KB: every task over one span, then
 * every task over the next, so the panels of A and B a span reads stay in
 * cache while all the tiles that share them run. Each element of C still
 * adds the same blocks in the same order. */
static inline int ISA(span_end)(int k0, int k) {
    return k - k0 > KC_IG_KSPAN ? k0 + KC_IG_KSPAN : k;
}

static void ISA(igemm)(const kc_cpu_igemm_args *g, int nt) {
    const int nr = 4 * VW;
    ISA(plan) p;
    p.blocks = (g->n + nr - 1) / nr;
    p.last_nv = ((g->n - (p.blocks - 1) * nr) + VW - 1) / VW;
    p.full_mr = KC_IG_MR(4);
    p.last_mr = KC_IG_MR(p.last_nv);
    p.full_tiles = p.blocks > 1 ? (g->m + p.full_mr - 1) / p.full_mr : 0;
    p.last_tiles = (g->m + p.last_mr - 1) / p.last_mr;
    long tasks = p.full_tiles * (p.blocks - 1) + p.last_tiles;
    if (nt > tasks) nt = (int)tasks;
    long chunk = tasks / ((long)nt * 8);
    if (chunk < 1) chunk = 1;
    if (nt <= 1) { /* no OpenMP region: products this small pay for entering one */
        int k0 = 0;
        do {
            int k1 = ISA(span_end)(k0, g->k);
            for (long task = 0; task < tasks; task++)
                ISA(task)(g, &p, task, k0, k1);
            k0 = k1;
        } while (k0 < g->k);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int k0 = 0;
        do {
            int k1 = ISA(span_end)(k0, g->k);
#pragma omp for schedule(dynamic, chunk)
            for (long task = 0; task < tasks; task++)
                ISA(task)(g, &p, task, k0, k1);
            k0 = k1;
        } while (k0 < g->k);
    }
}
