/* Indirect GEMM with AVX-512 and AVX2 kernels chosen at run time, so one
 * binary runs anywhere: on a CPU with neither, kc_cpu_igemm declines and the
 * callers take their portable paths (im2col + sgemm). See cpu.h. */
#include "core/cpu/cpu.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define KC_IG_MR_MAX 12
/* Steps of k each tile call sums in registers before adding them to C (see
 * cpu_igemm_kern.h). 128 makes a dense layer's 1600-long reduction carry
 * about half the error of OpenBLAS's and TensorFlow's; smaller blocks gain
 * little more and cost more calls. One value for every instruction set, so
 * they keep computing the same bits. */
#define KC_IG_KB 128
/* Steps of k every task runs before any task runs the next ones (see igemm
 * in cpu_igemm_kern.h): a multiple of KC_IG_KB, so the bits do not depend on
 * it. */
#ifndef KC_IG_KSPAN
#define KC_IG_KSPAN 256
#endif

static int isa_forced = -1; /* -1: not forced */

static int isa_detect(void) {
    static int level = -1;
    if (level >= 0) return level;
    const char *env = getenv("KERASC_CPU");
    int best = KC_CPU_PORTABLE;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = KC_CPU_AVX2;
    if (best == KC_CPU_AVX2 && __builtin_cpu_supports("avx512f")) best = KC_CPU_AVX512;
    level = best;
    /* KERASC_CPU=portable|avx2 lowers the level, never raises it */
    if (env && !strcmp(env, "portable")) level = KC_CPU_PORTABLE;
    if (env && !strcmp(env, "avx2") && best >= KC_CPU_AVX2) level = KC_CPU_AVX2;
    return level;
}

int kc_cpu_isa(void) {
    return isa_forced >= 0 ? isa_forced : isa_detect();
}

int kc_cpu_set_isa(int level) {
    int prev = kc_cpu_isa();
    if (level < 0) {
        isa_forced = -1;
    } else {
        int best = isa_detect();
        isa_forced = level < best ? level : best;
    }
    return prev;
}

/* ---------------------------------------------------------------- AVX-512 */

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")

#define ISA(name) avx512_##name
#define VEC __m512
#define VW 16
#define MASK __mmask16
#define V_ZERO() _mm512_setzero_ps()
#define V_BCAST(x) _mm512_set1_ps(x)
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_MLOAD(m, p) _mm512_maskz_loadu_ps((m), (p))
#define V_MSTORE(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_MUL(a, b) _mm512_mul_ps((a), (b))
#define V_ADD(a, b) _mm512_add_ps((a), (b))
#define V_MASK(n) ((__mmask16)((1u << (n)) - 1u))
static const int avx512_mr[4] = {12, 12, 8, 6};
#define KC_IG_MR(nv) avx512_mr[(nv)-1]
/* With 32 registers the unrolled loop keeps every accumulator in a
 * register, and runs the layers' shapes 4-9% faster: more than the block
 * transitions cost. */
#define KC_IG_UNROLL_K _Pragma("GCC unroll 4")

#include "core/cpu/cpu_igemm_kern.h"

#undef ISA
#undef VEC
#undef VW
#undef MASK
#undef V_ZERO
#undef V_BCAST
#undef V_LOAD
#undef V_MLOAD
#undef V_MSTORE
#undef V_FMA
#undef V_MUL
#undef V_ADD
#undef V_MASK
#undef KC_IG_MR
#undef KC_IG_UNROLL_K
#pragma GCC pop_options

/* ------------------------------------------------------------------- AVX2 */

#pragma GCC push_options
#pragma GCC target("avx2,fma")

static inline __m256i avx2_mask(int n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
}

#define ISA(name) avx2_##name
#define VEC __m256
#define VW 8
#define MASK __m256i
#define V_ZERO() _mm256_setzero_ps()
#define V_BCAST(x) _mm256_set1_ps(x)
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_MLOAD(m, p) _mm256_maskload_ps((p), (m))
#define V_MSTORE(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_MUL(a, b) _mm256_mul_ps((a), (b))
#define V_ADD(a, b) _mm256_add_ps((a), (b))
#define V_MASK(n) avx2_mask(n)
static const int avx2_mr[4] = {8, 6, 4, 3};
#define KC_IG_MR(nv) avx2_mr[(nv)-1]
/* 16 registers: an unrolled loop spills (and runs slower) */
#define KC_IG_UNROLL_K

#include "core/cpu/cpu_igemm_kern.h"

#undef ISA
#undef VEC
#undef VW
#undef MASK
#undef V_ZERO
#undef V_BCAST
#undef V_LOAD
#undef V_MLOAD
#undef V_MSTORE
#undef V_FMA
#undef V_MUL
#undef V_ADD
#undef V_MASK
#undef KC_IG_MR
#undef KC_IG_UNROLL_K
/* p[q n + j] = alpha b[j ldb + q] for q < k, j < n, by 8 x 8 blocks
 * transposed in registers; the edges one element at a time. Products of
 * alpha and b are the same in either, so the copy has one value. */
static void avx2_pack_transposed(int k, int n, float alpha, const float *b, long ldb, float *p) {
    __m256 va = _mm256_set1_ps(alpha);
    int n8 = n & ~7, k8 = k & ~7;
    for (int j0 = 0; j0 < n8; j0 += 8)
        for (int q0 = 0; q0 < k8; q0 += 8) {
            const float *s = b + (long)j0 * ldb + q0;
            __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ldb);
            __m256 r2 = _mm256_loadu_ps(s + 2 * ldb), r3 = _mm256_loadu_ps(s + 3 * ldb);
            __m256 r4 = _mm256_loadu_ps(s + 4 * ldb), r5 = _mm256_loadu_ps(s + 5 * ldb);
            __m256 r6 = _mm256_loadu_ps(s + 6 * ldb), r7 = _mm256_loadu_ps(s + 7 * ldb);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
            float *d = p + (long)q0 * n + j0;
            _mm256_storeu_ps(d, _mm256_mul_ps(va, _mm256_permute2f128_ps(u0, u4, 0x20)));
            _mm256_storeu_ps(d + n, _mm256_mul_ps(va, _mm256_permute2f128_ps(u1, u5, 0x20)));
            _mm256_storeu_ps(d + 2 * n, _mm256_mul_ps(va, _mm256_permute2f128_ps(u2, u6, 0x20)));
            _mm256_storeu_ps(d + 3 * n, _mm256_mul_ps(va, _mm256_permute2f128_ps(u3, u7, 0x20)));
            _mm256_storeu_ps(d + 4 * n, _mm256_mul_ps(va, _mm256_permute2f128_ps(u0, u4, 0x31)));
            _mm256_storeu_ps(d + 5 * n, _mm256_mul_ps(va, _mm256_permute2f128_ps(u1, u5, 0x31)));
            _mm256_storeu_ps(d + 6 * n, _mm256_mul_ps(va, _mm256_permute2f128_ps(u2, u6, 0x31)));
            _mm256_storeu_ps(d + 7 * n, _mm256_mul_ps(va, _mm256_permute2f128_ps(u3, u7, 0x31)));
        }
    for (int j = 0; j < n; j++) /* the columns past n8, and the rows past k8 */
        for (int q = j < n8 ? k8 : 0; q < k; q++)
            p[(long)q * n + j] = alpha * b[(long)j * ldb + q];
}

#pragma GCC pop_options

/* ------------------------------------------------------------------ entry */

int kc_cpu_pack_transposed(int k, int n, float alpha, const float *b, long ldb, float *p) {
    if (kc_cpu_isa() == KC_CPU_PORTABLE) return 0;
    avx2_pack_transposed(k, n, alpha, b, ldb, p);
    return 1;
}

/* Below this many multiply-adds (about 0.1 ms of one core) one thread does
 * the whole product: waking a second thread gains less than it risks when
 * other programs hold the cores, as every region waits for its slowest
 * thread. */
#define IGEMM_PAR_MIN (4.0 * 1024 * 1024)

int kc_cpu_igemm(const kc_cpu_igemm_args *g) {
    int isa = kc_cpu_isa();
    if (isa == KC_CPU_PORTABLE) return 0;
    if (g->m <= 0 || g->n <= 0) return 1;
    int nt = g->threads > 0 ? g->threads : kc_cpu_threads();
    if ((double)g->m * g->n * (g->k > 0 ? g->k : 1) < IGEMM_PAR_MIN) nt = 1;
    if (isa == KC_CPU_AVX512)
        avx512_igemm(g, nt);
    else
        avx2_igemm(g, nt);
    return 1;
}
