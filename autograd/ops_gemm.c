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

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define VN_GEMM_HAVE 1
#else
#define VN_GEMM_HAVE 0
#endif

/* OpenBLAS's SkylakeX sgemm: GEMM_Q 448, and its driver takes the larger half of the inner
 * dimension when between one and two blocks remain (measured: 449 gives 225 + 224). */
#define KQ 448

int64_t vn__gemm_kblock(int64_t rem)
{
    if (rem >= 2 * KQ) return KQ;
    if (rem > KQ) return (rem + 1) / 2;
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

/* Whether OpenBLAS runs AVX-512 kernels of its own (read once). An OpenBLAS older than the
 * CPU, or one held to its AVX2 kernels by OPENBLAS_CORETYPE (as some machines are, where that
 * build's AVX-512 kernels misbehave), runs at half the rate of these kernels. */
static bool blas_has_avx512(void)
{
    static int state = -1;
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (s < 0) {
        const char *core = vn_blas_core();
        s = core && (!strcasecmp(core, "SkylakeX") || !strcasecmp(core, "Cooperlake") ||
                     !strcasecmp(core, "SapphireRapids"));
        __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    }
    return s;
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
} tile_env;

/* One tile: rows [0, mr) of a (already offset to the tile), columns [j0, j0 + nc) with
 * nc <= NR; NV vectors (1 when nc <= 16). MR_ is a constant in each instance. */
static inline __attribute__((always_inline)) void tile(const int MR_, const int NV,
                                                       const tile_env *e, const float *a,
                                                       const float *bp, int64_t bstride,
                                                       float *c, int64_t nc, const float *bias)
{
    __m512 acc[MR][2], sum[MR][2];
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
        int64_t kb = vn__gemm_kblock(k - l0);
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
        if (nc > 16) tile(R, 2, e, a, bp, bstride, c, nc, bias);                         \
        else tile(R, 1, e, a, bp, bstride, c, nc, bias);                                 \
        break;

static void tile_any(int mr, const tile_env *e, const float *a, const float *bp,
                     int64_t bstride, float *c, int64_t nc, const float *bias)
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
static bool by_block(const vn__gemm_args *g)
{
    return g->a_row == 1 && g->k > 2 * KQ;
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
        tile_any(mr, e, g->a + r * g->a_row, bp, bstride, g->c + r * g->ldc + j0, nc, bias);
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
            e.l_end = l0 + vn__gemm_kblock(k - l0);
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
    float *packed = NULL;
    if (g->b_trans || pack_rows(g)) {
        if (!ctx) return false;
        int64_t np = (g->n + NR - 1) / NR;
        packed = vn__pool_alloc(ctx, (size_t)(np * NR * g->k) * sizeof(float));
        if (!packed) return false;
        pack(packed, g);
    }
    tile_env e = {.k = g->k, .a_row = g->a_row, .a_col = g->a_col, .ldc = g->ldc,
                  .init = g->init, .l_begin = 0, .l_end = g->k};
    const int64_t m = g->m, n = g->n, nrb = (m + MB - 1) / MB, np = (n + NR - 1) / NR;
    const int64_t tasks = nrb * np;
    /* Same cost measure as the library's other parallel loops: multiply-adds. */
    tiles_job J = {g, &e, packed, nrb, np};
    if (by_block(g) && m * n <= GROUPS_MAX_OUT) {
        int threads = vn_par_threads();
        int ng = (int)(tasks < threads ? tasks : threads); /* both >= 1 */
        if (ng > GROUPS_MAX) ng = GROUPS_MAX;
        groups_job G = {.J = &J};
        int64_t rows_worst = cut_groups(&J, false, ng, G.cut);
        groups_job P = {.J = &J, .by_panel = true};
        if (cut_groups(&J, true, ng, P.cut) < rows_worst) G = P;
        vn_par_for(ng, m * n * g->k > VN_PAR_MIN_MACS, gemm_groups, &G);
    } else if (by_block(g)) {
        /* One pass per block of the inner dimension, C holding the sum so far between
         * passes: the same additions in the same order, with each block's A and B read
         * from the caches by every tile instead of streamed whole per tile. */
        for (int64_t l0 = 0; l0 < g->k; l0 = e.l_end) {
            e.l_begin = l0;
            e.l_end = l0 + vn__gemm_kblock(g->k - l0);
            vn_par_for(tasks, m * n * (e.l_end - l0) > VN_PAR_MIN_MACS, gemm_tiles, &J);
        }
    } else {
        vn_par_for(tasks, m * n * g->k > VN_PAR_MIN_MACS, gemm_tiles, &J);
    }
    if (packed) vn__pool_free(ctx, packed);
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
