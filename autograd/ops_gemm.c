/* AVX-512 products for the 1x1 and patchify convolutions; see ops_gemm.h for what and why.
 *
 * A tile is MR (up to 12) rows of C by 32 columns (two 16-float vectors; one when at most 16
 * columns remain), 24 accumulators in registers. For each inner index l the tile loads B's
 * row l (32 floats: packed, or straight from a row-major B) and broadcasts A(i, l) for each
 * row. The tasks are (block of rows, panel of 32 columns), split statically over the threads:
 * a thread's tasks are contiguous, so it reuses A's rows from its cache across panels. */
#include "autograd/ops_gemm.h"

#include "autograd/ops_impl.h"
#include "base/vn_parallel.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define VN_GEMM_HAVE 1
#else
#define VN_GEMM_HAVE 0
#endif

/* ---- the order OpenBLAS sums in (see ops_gemm.h) ----------------------------------------
 * OpenBLAS sees a row-major product transposed: its M is our n (columns of C), its N our m
 * (rows). What follows restates its level-3 drivers (driver/level3/level3.c and
 * level3_thread.c of 0.3.21, built generic in a DYNAMIC_ARCH library: SWITCH_RATIO 2, no
 * rounding of the parts) and the parameters of the kernels it runs. */

/* The orders: SkylakeX's kernel (one chain per element and block, GEMM_Q 448; any kernel set
 * but the next two is summed so, and differs from its own by rounding), Haswell's (also
 * Zen's: the same sgemm kernel and blocking, GEMM_Q 320, some elements in two chains), and
 * Cooperlake's (also SapphireRapids': SkylakeX's sgemm kernel with GEMM_Q 320). */
enum { FAM_SKX, FAM_HSW, FAM_CPL };

/* OpenBLAS's kernel set, read once: its order family, and whether it is one of its AVX-512
 * sets (SkylakeX, Cooperlake, SapphireRapids). */
enum { CORE_UNREAD = -1, CORE_OTHER, CORE_SKX, CORE_HSW, CORE_CPL };

static int blas_core_kind(void)
{
    static int state = CORE_UNREAD;
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (s == CORE_UNREAD) {
        const char *c = vn_blas_core();
        s = !c ? CORE_OTHER
            : !strcasecmp(c, "SkylakeX") ? CORE_SKX
            : !strcasecmp(c, "Haswell") || !strcasecmp(c, "Zen") ? CORE_HSW
            : !strcasecmp(c, "Cooperlake") || !strcasecmp(c, "SapphireRapids") ? CORE_CPL
            : CORE_OTHER;
        __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    }
    return s;
}

static int order_state = -1; /* vn__gemm_set_order: -1 follow OpenBLAS */

void vn__gemm_set_order(int family)
{
    __atomic_store_n(&order_state, family >= FAM_SKX && family <= FAM_CPL ? family : -1,
                     __ATOMIC_RELAXED);
}

int vn__gemm_order(void)
{
    int f = __atomic_load_n(&order_state, __ATOMIC_RELAXED);
    if (f >= 0) return f;
    int k = blas_core_kind();
    return k == CORE_HSW ? FAM_HSW : k == CORE_CPL ? FAM_CPL : FAM_SKX;
}

int64_t vn__gemm_kblock(int64_t q, int64_t um, bool threaded, int64_t rem)
{
    if (rem >= 2 * q) return q;
    if (rem > q) return threaded ? (rem + 1) / 2 : (rem / 2 + um - 1) / um * um;
    return rem;
}

/* The mode asked for (VN_GEMM or vn__gemm_set_mode): -1 not read yet, 0 blas, 1 where
 * faster, 2 every shape. A build without the kernels keeps it too: there only "blas" counts. */
static int gemm_state = -1;

static int gemm_mode(void)
{
    int s = __atomic_load_n(&gemm_state, __ATOMIC_RELAXED);
    if (s < 0) {
        const char *e = getenv("VN_GEMM");
        s = e && !strcmp(e, "blas") ? 0 : e && !strcmp(e, "all") ? 2 : 1;
        __atomic_store_n(&gemm_state, s, __ATOMIC_RELAXED);
    }
    return s;
}

bool vn__gemm_compiled(void) { return VN_GEMM_HAVE; }

void vn__gemm_set_mode(int mode)
{
    __atomic_store_n(&gemm_state, mode >= 0 && mode <= 2 ? mode : 0, __ATOMIC_RELAXED);
}

bool vn__gemm_blas_only(void) { return gemm_mode() == 0; }

/* Whether OpenBLAS runs AVX-512 kernels of its own. An OpenBLAS older than the CPU, or one
 * held to its AVX2 kernels by OPENBLAS_CORETYPE (as some machines are, where that build's
 * AVX-512 kernels misbehave), runs at half the rate of these kernels. */
static bool blas_has_avx512(void)
{
    int k = blas_core_kind();
    return k == CORE_SKX || k == CORE_CPL;
}

/* Where these kernels beat OpenBLAS (measured on 2-core AVX-512 machines, 2 threads). Against
 * OpenBLAS's AVX-512 kernels: short inner dimensions and narrow outputs; OpenBLAS's cache
 * blocking wins on the wide layers (K >= 256 with many columns, or a weight gradient wider
 * than 128 x 64). Against its AVX2 or generic kernels: every product (1.4-5x on the products
 * of the Fashion-MNIST model and vanillanet_5, `bench_ops gemm`). Where OpenBLAS runs its
 * SkylakeX kernels the bytes are the same either way, so this only picks the faster. */
bool vn__gemm_prefers(const vn__gemm_args *g)
{
    if (!blas_has_avx512()) return true;
    if (g->b_trans) return g->k <= 128;             /* forward: x w^T */
    if (g->a_row == 1) return g->m * g->n <= 8192;  /* weight gradient: dy^T x */
    return g->n <= 128 && g->k <= 512;              /* input gradient: dy w */
}

#if VN_GEMM_HAVE

#define MR 12
#define NR 32
/* Rows per task: a multiple of MR. */
#define MB (4 * MR)

/* What every tile of a product shares (B and the bias come per panel). */
typedef struct {
    int64_t k, a_row, a_col, ldc;
    vn__gemm_init init;
    int64_t l_begin, l_end; /* the inner indices of this pass: whole blocks, from 0 to k */
    const struct sum_order *ord;
} tile_env;

/* OpenBLAS's threads for a call from here: OpenMP's, 1 inside a parallel region (the
 * library's pool runs its pieces with OpenMP at 1 thread), at most its MAX_THREADS (64 in
 * Debian's build). */
static int blas_threads(void)
{
    if (omp_in_parallel()) return 1;
    int t = omp_get_max_threads();
    return t < 1 ? 1 : t > 64 ? 64 : t;
}

/* How the driver cuts the threads: nthreads_m parts of M (our n), nthreads_n of N (our m). */
static void thread_grid(int64_t m, int64_t n, int T, int *ntm, int *ntn)
{
    int a = 1, b = 1;
    if (T > 1) {
        if (n >= 4) {
            a = T;
            while (n < 2 * (int64_t)a) a /= 2;
        }
        if (m >= 2 * (int64_t)a) {
            int64_t w = (m + 2 * a - 1) / (2 * a);
            b = (int64_t)a * w > T ? T / a : (int)w;
        }
    }
    *ntm = a, *ntn = b;
}

/* How this product is summed: OpenBLAS's inner blocks, and with its Haswell kernel which
 * elements are two chains. */
enum { KIND_NONE, KIND_L, KIND_R, KIND_N4 };

/* Haswell's GEMM_P, and GEMM_R as Debian's build sizes it from its buffer. */
#define HSW_P 320
#define HSW_R 104512

typedef struct sum_order {
    int64_t q, um;
    bool threaded;
    int ntm;       /* parts of the columns; 0: every element one chain (no plan) */
    uint16_t *row; /* per row of C: its kind in the pieces of its own region (bits 0-1), in a
                    * whole buffer (bits 2-3), and its region's M part (from bit 4); in the
                    * same pool block as pan, after it */
    uint32_t *pan; /* per panel of NR columns, 3 + ntm masks: the columns a kernel sums as two
                    * chains in rows of kind L, R, N4; then per M part the columns of that
                    * part's first row chunk (where its own region is cut into pieces) */
} sum_order;

static int64_t kblock(const sum_order *o, int64_t rem)
{
    return vn__gemm_kblock(o->q, o->um, o->threaded, rem);
}

/* The kind of column x (of OpenBLAS's N: a row of C) in a kernel call over w of them: blocks
 * of 12 (left and right halves), then one of 8, 4, 2, 1 as the rest allows. */
static int call_kind(int64_t w, int64_t x)
{
    int64_t n12 = w / 12 * 12;
    if (x < n12) return x % 12 < 6 ? KIND_L : KIND_R;
    x -= n12, w -= n12;
    if (w >= 8) {
        if (x < 8) return KIND_NONE;
        x -= 8, w -= 8;
    }
    return w >= 4 && x < 4 ? KIND_N4 : KIND_NONE;
}

/* ... in the calls over the pieces the driver cuts w columns into: 12 while at least 12
 * remain, 4 while more than 4, then the rest. */
static int piece_kind(int64_t w, int64_t x)
{
    int64_t n12 = w / 12 * 12;
    if (x < n12) return x % 12 < 6 ? KIND_L : KIND_R;
    x -= n12, w -= n12;
    for (; w > 4; x -= 4, w -= 4)
        if (x < 4) return KIND_N4;
    return w == 4 ? KIND_N4 : KIND_NONE;
}

static void plan_buffer(uint16_t *row, int64_t start, int64_t w, int part)
{
    for (int64_t x = 0; x < w; x++)
        row[start + x] = (uint16_t)(piece_kind(w, x) | call_kind(w, x) << 2 | part << 4);
}

/* A row chunk of mc columns of C (OpenBLAS's rows) from cs: in each 8-row panel of the
 * kernel's M, the two-chain ones. */
static void plan_chunk(sum_order *o, int64_t cs, int64_t mc, bool first, int part)
{
    const int stride = 3 + o->ntm;
    const int64_t p8 = mc / 8;
    for (int64_t r = 0; r < mc; r++) {
        int64_t j = cs + r, p = r / 8;
        uint32_t bit = 1u << (j % NR), *P = o->pan + (j / NR) * stride;
        if (first) P[3 + part] |= bit;
        if (p >= p8) continue;
        P[KIND_N4 - 1] |= bit;
        if (mc < 16) continue;
        if (p == 0 || (p8 % 2 == 0 && p == p8 - 1)) P[KIND_L - 1] |= bit;
        else if (p == p8 - 1) P[KIND_R - 1] |= bit;
    }
}

/* Fills o for an m x n product, the Haswell plan in one block of ctx's pool; false when there
 * is no room (or no ctx). */
static bool plan_order(sum_order *o, vn_ctx *ctx, int64_t m, int64_t n)
{
    int family = vn__gemm_order(), ntm, ntn;
    thread_grid(m, n, blas_threads(), &ntm, &ntn);
    const int nt = ntm * ntn;
    *o = (sum_order){.q = family == FAM_SKX ? 448 : 320, .um = family == FAM_HSW ? 8 : 16,
                     .threaded = nt > 1};
    if (family != FAM_HSW) return true;
    const int parts = o->threaded ? ntm : 1, stride = 3 + parts;
    const int64_t np = (n + NR - 1) / NR;
    const size_t pan_bytes = (size_t)(np * stride) * sizeof *o->pan;
    const size_t row_bytes = ((size_t)m * sizeof *o->row + 63) & ~(size_t)63;
    o->pan = ctx ? vn__pool_alloc(ctx, pan_bytes + row_bytes) : NULL;
    if (!o->pan) return false;
    memset(o->pan, 0, pan_bytes);
    o->row = (uint16_t *)((unsigned char *)o->pan + pan_bytes);
    o->ntm = parts;
    /* rows: the regions of N each N step is cut into (one per thread), each in two buffers;
     * single-threaded, steps of GEMM_R, each one buffer */
    const int64_t step = o->threaded ? HSW_R * nt : HSW_R;
    for (int64_t js = 0; js < m; js += step) {
        int64_t rem = m - js < step ? m - js : step, rs = js;
        if (!o->threaded) {
            plan_buffer(o->row, rs, rem, 0);
            continue;
        }
        for (int ri = 0; rem > 0; ri++) {
            int64_t w = (rem + nt - ri - 1) / (nt - ri);
            if (w < 2) w = 2;
            if (w > rem) w = rem;
            int64_t half = (w + 1) / 2;
            plan_buffer(o->row, rs, half, ri % ntm);
            if (w > half) plan_buffer(o->row, rs + half, w - half, ri % ntm);
            rs += w, rem -= w;
        }
    }
    /* columns: the M parts, each cut into row chunks of about GEMM_P */
    for (int64_t pm = 0, mf = 0, left = n; pm < parts; pm++) {
        int64_t w = (left + parts - pm - 1) / (parts - pm), mt = mf + w;
        for (int64_t is = mf; is < mt;) {
            int64_t len = mt - is, mc = len;
            if (len >= 2 * HSW_P) mc = HSW_P;
            else if (len > HSW_P)
                mc = is == mf || !o->threaded ? (len / 2 + 7) / 8 * 8 : ((len + 1) / 2 + 7) / 8 * 8;
            plan_chunk(o, is, mc, is == mf, (int)pm);
            is += mc;
        }
        mf = mt, left -= w;
    }
    return true;
}

static void plan_free(vn_ctx *ctx, sum_order *o)
{
    if (o->pan) vn__pool_free(ctx, o->pan);
}

/* The columns of panel q that row i of C sums as two chains. */
static inline uint32_t two_chain_mask(const sum_order *o, int64_t i, int64_t q)
{
    unsigned u = o->row[i], own = u & 3, whole = (u >> 2) & 3;
    const uint32_t *P = o->pan + q * (3 + o->ntm);
    uint32_t first = P[3 + (u >> 4)];
    return (own ? first & P[own - 1] : 0) | (whole ? ~first & P[whole - 1] : 0);
}

/* Two-chain sums of a block of kb >= 8 inner indices for R rows of a tile (rows[]), V
 * vectors: even indices of the first multiple of 8 in one chain, odd in the other, the rest
 * onto the even chain, then even + odd. */
static inline __attribute__((always_inline)) void eo_rows(const int R, const int V,
                                                          const int *rows, int64_t a_row,
                                                          int64_t a_col, const float *al,
                                                          const float *bl, int64_t bstride,
                                                          int64_t kb, __mmask16 m0,
                                                          __mmask16 m1, int vo,
                                                          __m512 (*out)[2])
{
    /* V = 1: the vector vo alone */
    if (V == 1 && vo) bl += 16, m0 = m1;
    __m512 E[8][2], O[8][2];
    const float *ar[8];
    for (int r = 0; r < R; r++) {
        ar[r] = al + rows[r] * a_row;
        for (int v = 0; v < V; v++) E[r][v] = O[r][v] = _mm512_setzero_ps();
    }
    const int64_t k8 = kb / 8 * 8;
    int64_t l = 0;
    for (; l < k8; l += 2) {
        const float *b0 = bl + l * bstride, *b1 = b0 + bstride;
        __m512 x0 = _mm512_maskz_loadu_ps(m0, b0), y0 = _mm512_maskz_loadu_ps(m0, b1);
        __m512 x1 = V > 1 ? _mm512_maskz_loadu_ps(m1, b0 + 16) : x0;
        __m512 y1 = V > 1 ? _mm512_maskz_loadu_ps(m1, b1 + 16) : y0;
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 ae = _mm512_set1_ps(ar[r][l * a_col]);
            __m512 ao = _mm512_set1_ps(ar[r][(l + 1) * a_col]);
            E[r][0] = _mm512_fmadd_ps(ae, x0, E[r][0]);
            O[r][0] = _mm512_fmadd_ps(ao, y0, O[r][0]);
            if (V > 1) {
                E[r][1] = _mm512_fmadd_ps(ae, x1, E[r][1]);
                O[r][1] = _mm512_fmadd_ps(ao, y1, O[r][1]);
            }
        }
    }
    for (; l < kb; l++) {
        const float *b0 = bl + l * bstride;
        __m512 x0 = _mm512_maskz_loadu_ps(m0, b0);
        __m512 x1 = V > 1 ? _mm512_maskz_loadu_ps(m1, b0 + 16) : x0;
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 ae = _mm512_set1_ps(ar[r][l * a_col]);
            E[r][0] = _mm512_fmadd_ps(ae, x0, E[r][0]);
            if (V > 1) E[r][1] = _mm512_fmadd_ps(ae, x1, E[r][1]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) out[rows[r]][v + vo] = _mm512_add_ps(E[r][v], O[r][v]);
}

/* The two-chain sums of the tile's rows with a mask (fix[i] != 0), into out[i][v] for the
 * vectors v the masks reach: up to 8 rows a pass on one vector, 4 on two (16 accumulators). */
static __attribute__((noinline)) void two_chains(int mr, int nv, const uint32_t *fix,
                                                 const tile_env *e, const float *al,
                                                 const float *bl, int64_t bstride, int64_t kb,
                                                 __mmask16 m0, __mmask16 m1, __m512 (*out)[2])
{
    int rows[MR], cnt = 0;
    uint32_t any = 0;
    for (int i = 0; i < mr; i++)
        if (fix[i]) rows[cnt++] = i, any |= fix[i];
    /* both vectors, or the one the masks reach */
    const bool two = nv > 1 && (any >> 16) && (any & 0xffffu);
    const int vo = nv > 1 && !(any & 0xffffu), per = two ? 4 : 8;
    for (int s = 0; s < cnt; s += per) {
        const int c = cnt - s < per ? cnt - s : per, *rs = rows + s;
        const int64_t ar = e->a_row, ac = e->a_col;
#define EO_CASE(R, V)                                                                    \
    case R:                                                                              \
        eo_rows(R, V, rs, ar, ac, al, bl, bstride, kb, m0, m1, vo, out);                 \
        break;
        if (two) {
            switch (c) {
                EO_CASE(1, 2) EO_CASE(2, 2) EO_CASE(3, 2) EO_CASE(4, 2)
                default: break;
            }
        } else {
            switch (c) {
                EO_CASE(1, 1) EO_CASE(2, 1) EO_CASE(3, 1) EO_CASE(4, 1) EO_CASE(5, 1)
                EO_CASE(6, 1) EO_CASE(7, 1) EO_CASE(8, 1)
                default: break;
            }
        }
#undef EO_CASE
    }
}

/* One tile: rows [0, mr) of a (already offset to the tile), columns [j0, j0 + nc) with
 * nc <= NR; NV vectors (1 when nc <= 16). MR_ is a constant in each instance. */
static inline __attribute__((always_inline)) void tile(const int MR_, const int NV,
                                                       const tile_env *e, const float *a,
                                                       const float *bp, int64_t bstride,
                                                       float *c, int64_t nc, const float *bias,
                                                       const uint32_t *fix)
{
    __m512 acc[MR][2], sum[MR][2], two[MR][2];
    const __mmask16 m0 = nc >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1u);
    const __mmask16 m1 = nc >= 32 ? (__mmask16)0xffff
                         : nc > 16 ? (__mmask16)((1u << (nc - 16)) - 1u) : (__mmask16)0;
    const bool full = nc == NR || (NV == 1 && nc == 16);
    /* The starting value of C (after the first pass, what the passes before left in C). */
    for (int i = 0; i < MR_; i++)
        for (int v = 0; v < NV; v++) {
            __mmask16 mv = v ? m1 : m0;
            if (e->init == VN__GEMM_ACC || e->l_begin > 0)
                sum[i][v] = _mm512_maskz_loadu_ps(mv, c + i * e->ldc + 16 * v);
            else if (e->init == VN__GEMM_BIAS)
                sum[i][v] = _mm512_maskz_loadu_ps(mv, bias + 16 * v);
            else
                sum[i][v] = _mm512_setzero_ps();
        }
    const int64_t k = e->k;
    for (int64_t l0 = e->l_begin; l0 < e->l_end;) {
        int64_t kb = kblock(e->ord, k - l0);
        /* the two-chain sums first, while no accumulator is live across the call */
        const bool two_now = fix && kb >= 8;
        if (two_now)
            two_chains(MR_, NV, fix, e, a + l0 * e->a_col, bp + l0 * bstride, bstride, kb, m0,
                       m1, two);
        for (int i = 0; i < MR_; i++)
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
        const float *al = a + l0 * e->a_col;
        const float *bl = bp + l0 * bstride;
        if (full) {
            for (int64_t l = 0; l < kb; l++, al += e->a_col, bl += bstride) {
                __m512 b0 = _mm512_loadu_ps(bl), b1 = NV > 1 ? _mm512_loadu_ps(bl + 16) : b0;
#pragma GCC unroll 12
                for (int i = 0; i < MR_; i++) {
                    __m512 av = _mm512_set1_ps(al[i * e->a_row]);
                    acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
                    if (NV > 1) acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
                }
            }
        } else {
            for (int64_t l = 0; l < kb; l++, al += e->a_col, bl += bstride) {
                __m512 b0 = _mm512_maskz_loadu_ps(m0, bl);
                __m512 b1 = NV > 1 ? _mm512_maskz_loadu_ps(m1, bl + 16) : b0;
#pragma GCC unroll 12
                for (int i = 0; i < MR_; i++) {
                    __m512 av = _mm512_set1_ps(al[i * e->a_row]);
                    acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
                    if (NV > 1) acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
                }
            }
        }
        if (two_now) {
            /* the elements OpenBLAS's Haswell kernel sums as two chains */
            for (int i = 0; i < MR_; i++)
                for (int v = 0; v < NV; v++) {
                    __mmask16 mk = (__mmask16)(v ? fix[i] >> 16 : fix[i] & 0xffffu);
                    if (mk) acc[i][v] = _mm512_mask_mov_ps(acc[i][v], mk, two[i][v]);
                }
        }
        for (int i = 0; i < MR_; i++)
            for (int v = 0; v < NV; v++) sum[i][v] = _mm512_add_ps(sum[i][v], acc[i][v]);
        l0 += kb;
    }
    for (int i = 0; i < MR_; i++)
        for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_ps(c + i * e->ldc + 16 * v, v ? m1 : m0, sum[i][v]);
}

#define TILE_CASE(R)                                                                     \
    case R:                                                                              \
        if (nc > 16) tile(R, 2, e, a, bp, bstride, c, nc, bias, fix);                    \
        else tile(R, 1, e, a, bp, bstride, c, nc, bias, fix);                            \
        break;

static void tile_any(int mr, const tile_env *e, const float *a, const float *bp,
                     int64_t bstride, float *c, int64_t nc, const float *bias,
                     const uint32_t *fix)
{
    switch (mr) {
        TILE_CASE(12) TILE_CASE(11) TILE_CASE(10) TILE_CASE(9) TILE_CASE(8) TILE_CASE(7)
        TILE_CASE(6) TILE_CASE(5) TILE_CASE(4) TILE_CASE(3) TILE_CASE(2) TILE_CASE(1)
        default: break;
    }
}

/* B into panels of NR columns, [panel][l][NR], zero past n: B (l, j) = b[j * ldb + l] when
 * trans (the weights of a forward), else b[l * ldb + j] (one run of NR floats per row). */
typedef struct {
    float *p;
    const float *b;
    int64_t ldb, k, n;
    bool trans;
} pack_job;

static void pack_range(void *arg, int64_t q0, int64_t q1, int tid)
{
    (void)tid;
    const pack_job *J = arg;
    const int64_t k = J->k, n = J->n;
    for (int64_t q = q0; q < q1; q++) {
        float *restrict pq = J->p + q * k * NR;
        const int64_t j0 = q * NR, nc = n - j0 < NR ? n - j0 : NR;
        if (!J->trans) {
            for (int64_t l = 0; l < k; l++) {
                memcpy(pq + l * NR, J->b + l * J->ldb + j0, (size_t)nc * sizeof(float));
                if (nc < NR) memset(pq + l * NR + nc, 0, (size_t)(NR - nc) * sizeof(float));
            }
            continue;
        }
        for (int64_t jj = 0; jj < NR; jj++) {
            if (jj < nc) {
                const float *restrict bj = J->b + (j0 + jj) * J->ldb;
                for (int64_t l = 0; l < k; l++) pq[l * NR + jj] = bj[l];
            } else {
                for (int64_t l = 0; l < k; l++) pq[l * NR + jj] = 0.0f;
            }
        }
    }
}

static void pack(float *p, const vn__gemm_args *g)
{
    pack_job J = {p, g->b, g->ldb, g->k, g->n, g->b_trans};
    vn_par_for((g->n + NR - 1) / NR, g->n * g->k > VN_PAR_MIN, pack_range, &J);
}

/* Whether the product runs block by block of the inner dimension: a weight gradient over
 * many rows, whose tiles would otherwise each stream their whole A and B from memory. */
static bool by_block(const vn__gemm_args *g, const sum_order *o)
{
    return g->a_row == 1 && g->k > 2 * o->q;
}

/* Whether a row-major B is packed too: its rows far apart (each row of a panel its own
 * page) over a long inner dimension, where reading the panels in place stalls on the TLB
 * (the input gradients of vanillanet_5's wide layers: 1.1-1.6x faster packed). */
static bool pack_rows(const vn__gemm_args *g)
{
    return !g->b_trans && g->a_row != 1 && g->ldb >= 512 && g->k >= 512;
}

/* The tiles of the product: tile (rb, q) is MB rows (block rb) by NR columns (panel q). */
typedef struct {
    const vn__gemm_args *g;
    const tile_env *e;
    const float *packed;
    int64_t nrb, np;
} tiles_job;

/* Tile (rb, q) over the inner indices [e->l_begin, e->l_end). */
static void run_tile(const tiles_job *J, const tile_env *e, int64_t rb, int64_t q)
{
    const vn__gemm_args *g = J->g;
    const int64_t m = g->m, n = g->n;
    int64_t j0 = q * NR, nc = n - j0 < NR ? n - j0 : NR;
    /* B's panel: packed [l][NR] (a transposed B), or straight from a row-major B */
    const float *bp = J->packed ? J->packed + q * g->k * NR : g->b + j0;
    int64_t bstride = J->packed ? NR : g->ldb;
    const float *bias = g->bias ? g->bias + j0 : NULL;
    int64_t r1 = (rb + 1) * MB < m ? (rb + 1) * MB : m;
    for (int64_t r = rb * MB; r < r1; r += MR) {
        int mr = (int)(r1 - r < MR ? r1 - r : MR);
        uint32_t fm[MR], any = 0;
        if (e->ord->ntm)
            for (int i = 0; i < mr; i++) any |= fm[i] = two_chain_mask(e->ord, r + i, q);
        tile_any(mr, e, g->a + r * g->a_row, bp, bstride, g->c + r * g->ldc + j0, nc, bias,
                 any ? fm : NULL);
    }
}

/* The tiles [t0, t1), numbered row block by row block. */
static void gemm_tiles(void *arg, int64_t t0, int64_t t1, int tid)
{
    (void)tid;
    const tiles_job *J = arg;
    for (int64_t t = t0; t < t1; t++) run_tile(J, J->e, t / J->np, t % J->np);
}

/* A product run block by block of the inner dimension whose passes would be short (at most
 * this many outputs: under 30 M multiply-adds a pass; the Fashion-MNIST model's weight
 * gradients have 4,096 outputs over 100,352 rows, 224 passes of 1.8 M) runs in one parallel
 * loop instead: the tiles are cut into one group per thread, each group runs every block in
 * order over its tiles. Each element gets the same additions in the same order as by passes;
 * one region instead of hundreds of short ones, each of which waits for the slowest thread
 * (a thread that another process holds off its core stalls every pass). */
#define GROUPS_MAX_OUT 65536
#define GROUPS_MAX 64

typedef struct {
    const tiles_job *J;
    bool by_panel;               /* tiles numbered panel by panel, else row block by row block */
    int64_t cut[GROUPS_MAX + 1]; /* group i: tiles [cut[i], cut[i + 1]) in that numbering */
} groups_job;

static void tile_at(const tiles_job *J, bool by_panel, int64_t t, int64_t *rb, int64_t *q)
{
    if (by_panel) *q = t / J->nrb, *rb = t % J->nrb;
    else *rb = t / J->np, *q = t % J->np;
}

static int64_t tile_work(const tiles_job *J, bool by_panel, int64_t t)
{
    int64_t rb, q;
    tile_at(J, by_panel, t, &rb, &q);
    int64_t rows = J->g->m - rb * MB, cols = J->g->n - q * NR;
    return (rows < MB ? rows : MB) * (cols < NR ? cols : NR);
}

/* Cuts the tiles, in the numbering by_panel gives, into ng contiguous groups of about equal
 * work (outputs); returns the largest group's. */
static int64_t cut_groups(const tiles_job *J, bool by_panel, int ng, int64_t *cut)
{
    const int64_t tiles = J->nrb * J->np, total = J->g->m * J->g->n;
    int64_t t = 0, done = 0, worst = 0;
    cut[0] = 0;
    for (int i = 0; i < ng; i++) {
        int64_t target = total * (i + 1) / ng, start = done;
        while (t < tiles) {
            int64_t w = tile_work(J, by_panel, t);
            /* take the tile while it brings the sum nearer the target (the last group all) */
            if (i < ng - 1 && done + w - target > target - done) break;
            done += w, t++;
        }
        cut[i + 1] = t;
        if (done - start > worst) worst = done - start;
    }
    return worst;
}

static void gemm_groups(void *arg, int64_t i0, int64_t i1, int tid)
{
    (void)tid;
    const groups_job *G = arg;
    const tiles_job *J = G->J;
    const int64_t k = J->g->k;
    for (int64_t i = i0; i < i1; i++) {
        tile_env e = *J->e;
        for (int64_t l0 = 0; l0 < k; l0 = e.l_end) {
            e.l_begin = l0;
            e.l_end = l0 + kblock(e.ord, k - l0);
            for (int64_t t = G->cut[i]; t < G->cut[i + 1]; t++) {
                int64_t rb, q;
                tile_at(J, G->by_panel, t, &rb, &q);
                run_tile(J, &e, rb, q);
            }
        }
    }
}

bool vn__gemm(vn_ctx *ctx, const vn__gemm_args *g)
{
    int mode = gemm_mode();
    if (!mode || g->m <= 0 || g->n <= 0 || g->k <= 0) return false;
    /* Below this size OpenBLAS runs its small-matrix kernels, which sum in other orders (and
     * such products are cheap either way). */
    if ((double)g->m * (double)g->n * (double)g->k <= VN__GEMM_MIN_MACS) return false;
    if (mode == 1 && !g->force && !vn__gemm_prefers(g)) return false;
    if (g->init == VN__GEMM_BIAS && !g->bias) return false;
    /* OpenBLAS would sum it in the same order (no room for the plan: OpenBLAS does, same
     * bytes) */
    sum_order ord;
    if (!plan_order(&ord, ctx, g->m, g->n)) return false;
    float *packed = NULL;
    if (g->b_trans || pack_rows(g)) {
        int64_t np = (g->n + NR - 1) / NR;
        if (ctx) packed = vn__pool_alloc(ctx, (size_t)(np * NR * g->k) * sizeof(float));
        if (!packed) {
            plan_free(ctx, &ord);
            return false;
        }
        pack(packed, g);
    }
    tile_env e = {.k = g->k, .a_row = g->a_row, .a_col = g->a_col, .ldc = g->ldc,
                  .init = g->init, .l_begin = 0, .l_end = g->k, .ord = &ord};
    const int64_t m = g->m, n = g->n, nrb = (m + MB - 1) / MB, np = (n + NR - 1) / NR;
    const int64_t tasks = nrb * np;
    /* Same cost measure as the library's other parallel loops: multiply-adds. */
    tiles_job J = {g, &e, packed, nrb, np};
    if (by_block(g, &ord) && m * n <= GROUPS_MAX_OUT) {
        int threads = vn_par_threads();
        int ng = (int)(tasks < threads ? tasks : threads); /* both >= 1 */
        if (ng > GROUPS_MAX) ng = GROUPS_MAX;
        groups_job G = {.J = &J};
        int64_t rows_worst = cut_groups(&J, false, ng, G.cut);
        groups_job P = {.J = &J, .by_panel = true};
        if (cut_groups(&J, true, ng, P.cut) < rows_worst) G = P;
        vn_par_for(ng, m * n * g->k > VN_PAR_MIN_MACS, gemm_groups, &G);
    } else if (by_block(g, &ord)) {
        /* One pass per block of the inner dimension, C holding the sum so far between
         * passes: the same additions in the same order, with each block's A and B read
         * from the caches by every tile instead of streamed whole per tile. */
        for (int64_t l0 = 0; l0 < g->k; l0 = e.l_end) {
            e.l_begin = l0;
            e.l_end = l0 + kblock(&ord, g->k - l0);
            vn_par_for(tasks, m * n * (e.l_end - l0) > VN_PAR_MIN_MACS, gemm_tiles, &J);
        }
    } else {
        vn_par_for(tasks, m * n * g->k > VN_PAR_MIN_MACS, gemm_tiles, &J);
    }
    if (packed) vn__pool_free(ctx, packed);
    plan_free(ctx, &ord);
    return true;
}

#else /* no AVX-512 at compile time: OpenBLAS does every product */

bool vn__gemm(vn_ctx *ctx, const vn__gemm_args *g)
{
    (void)ctx;
    (void)g;
    return false;
}

#endif
