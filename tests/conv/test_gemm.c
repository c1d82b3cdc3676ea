/* The AVX-512 products of the 1x1 and patchify convs (autograd/ops_gemm.c):
 *  - against OpenBLAS's sgemm on the same inputs, for the three products (forward x w^T with
 *    and without the bias rows, input gradient dy w fresh and accumulated, weight gradient
 *    dy^T x fresh and accumulated), over shapes with row, column and inner-dimension tails,
 *    inner dimensions cut into one, two and several blocks, and the shapes of the Fashion-MNIST
 *    model and vanillanet_5, on 1, 2 and 3 threads (OpenBLAS's and ours): the same bytes
 *    (memcmp) where OpenBLAS runs its SkylakeX kernel (which `vanilla` selects on AVX-512
 *    CPUs it does not know), its Cooperlake or SapphireRapids kernel, or its Haswell or Zen
 *    kernel (AVX2 CPUs, and AVX-512 ones pinned to it), within 2e-6 x k otherwise;
 *  - on any machine, the three orders (SkylakeX's, Haswell's, Cooperlake's) against an
 *    emulation of OpenBLAS's driver and kernels written here from their loops, byte for byte,
 *    and the emulation against OpenBLAS itself where it runs one of those kernels;
 *  - products of at most VN__GEMM_MIN_MACS multiply-adds are left to OpenBLAS;
 *  - the inner-dimension blocks OpenBLAS's drivers cut;
 *  - the conv ops (1x1 and patchify, forward and every gradient, a weight-gradient split in
 *    chunks of rows) give the same bytes with every product in OpenBLAS, in the default
 *    choice and with every product here;
 *  - a weight gradient whose chunk products are cut into column blocks equals the chunk
 *    products taken whole, added in chunk order.
 * Skips the kernel cases (with a message) in a build without AVX-512. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vn_test.h"
#include "autograd/vn_testing.h"

char *openblas_get_corename(void);

typedef struct gcase {
    int kind; /* 0 forward (b transposed), 1 input gradient, 2 weight gradient */
    int64_t m, n, k;
} gcase;

static const gcase cases[] = {
    /* tails of every kind: rows past a multiple of 12 and of 48, columns past 16 / 32, odd
     * inner dimensions cut into one, two and several blocks */
    {0, 1037, 33, 64}, {0, 997, 17, 77}, {0, 100, 60, 449}, {0, 61, 20, 900},
    {0, 59, 24, 890}, {0, 53, 40, 1000}, {0, 50, 31, 2048}, {0, 3001, 10, 40},
    {1, 1037, 33, 64}, {1, 4099, 7, 45}, {1, 333, 7, 450}, {1, 64, 20, 902},
    {1, 20, 64, 1537}, {1, 129, 129, 129},
    {2, 13, 17, 5000}, {2, 64, 16, 2048}, {2, 24, 40, 1097}, {2, 50, 33, 3000},
    {2, 100, 100, 128},
    /* the Fashion-MNIST model (batch 128, 28 px) and vanillanet_5 stems (batch 2) */
    {0, 6272, 64, 16}, {0, 6272, 128, 64}, {0, 1152, 512, 256},
    {1, 6272, 16, 64}, {1, 6272, 64, 128}, {1, 1152, 256, 512},
    {2, 64, 64, 2048}, {2, 128, 64, 2048}, {2, 256, 128, 1152}, {2, 512, 256, 128},
    {0, 6272, 512, 48}, {1, 6272, 48, 512},
    /* input gradients whose B is packed (rows 512 floats apart or more, k >= 512), and
     * weight gradients run block by block of the inner dimension (k > 896) */
    {1, 130, 520, 700}, {1, 61, 1024, 1000}, {2, 40, 530, 1800}, {2, 100, 64, 25088 / 8},
    /* weight gradients by block in one parallel loop (at most 65,536 outputs), the tiles cut
     * by row blocks or by column panels, and one with more outputs, a parallel loop per block */
    {2, 512, 48, 1500}, {2, 30, 300, 2000}, {2, 300, 260, 1000},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static bool skylakex(void)
{
    const char *c = openblas_get_corename();
    return c && !strcmp(c, "SkylakeX");
}

/* Whether OpenBLAS runs a kernel whose order the library follows. */
static bool order_known(void)
{
    const char *c = openblas_get_corename();
    return c && (!strcmp(c, "SkylakeX") || !strcmp(c, "Haswell") || !strcmp(c, "Zen") ||
                 !strcmp(c, "Cooperlake") || !strcmp(c, "SapphireRapids"));
}

/* C through OpenBLAS, as ops_conv.c called it before these kernels. */
static void blas_ref(const gcase *t, const float *a, const float *b, const float *bias,
                     int init, float *c)
{
    int m = (int)t->m, n = (int)t->n, k = (int)t->k;
    float beta = init == VN__GEMM_ZERO ? 0.0f : 1.0f;
    if (init == VN__GEMM_BIAS)
        for (int i = 0; i < m; i++) memcpy(c + (size_t)i * n, bias, (size_t)n * sizeof(float));
    if (t->kind == 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, beta, c, n);
    else if (t->kind == 1)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, beta, c,
                    n);
    else
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, 1.0f, a, m, b, n, beta, c, n);
}

static vn__gemm_args args_of(const gcase *t, const float *a, const float *b, const float *bias,
                             int init, float *c)
{
    vn__gemm_args g = {.m = t->m, .n = t->n, .k = t->k, .a = a, .b = b, .c = c, .ldc = t->n,
                       .init = (vn__gemm_init)init, .bias = bias};
    if (t->kind == 0) {
        g.a_row = t->k, g.a_col = 1, g.ldb = t->k, g.b_trans = true;
    } else if (t->kind == 1) {
        g.a_row = t->k, g.a_col = 1, g.ldb = t->n;
    } else {
        g.a_row = 1, g.a_col = t->m, g.ldb = t->n;
    }
    return g;
}

START_TEST(same_as_openblas)
{
    if (!vn__gemm_compiled()) return;
    const gcase *t = &cases[_i / 3];
    int init = _i % 3; /* zero, accumulate, bias rows (the forward only) */
    if (init == VN__GEMM_BIAS && t->kind != 0) return;
    int64_t na = t->m * t->k, nb = t->n * t->k, nc = t->m * t->n;
    float *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)nb * sizeof *b);
    float *bias = malloc((size_t)t->n * sizeof *bias), *c0 = malloc((size_t)nc * sizeof *c0);
    float *want = malloc((size_t)nc * sizeof *want), *got = malloc((size_t)nc * sizeof *got);
    vn_test_fill_uniform(a, na, 100 + (uint64_t)_i, -1.0f, 1.0f);
    vn_test_fill_uniform(b, nb, 200 + (uint64_t)_i, -1.0f, 1.0f);
    vn_test_fill_uniform(bias, t->n, 300, -0.5f, 0.5f);
    vn_test_fill_uniform(c0, nc, 400, -2.0f, 2.0f);
    for (int64_t i = 0; i < na; i += 13) a[i] = 0.0f; /* ReLU-like zeros in dy */
    vn_ctx *ctx = vn_ctx_create();
    ck_assert_ptr_nonnull(ctx);
    vn__gemm_set_mode(2);
    char what[128];
    snprintf(what, sizeof what, "kind %d, %lld x %lld x %lld, init %d", t->kind, (long long)t->m,
             (long long)t->n, (long long)t->k, init);
    for (int threads = 1; threads <= 3; threads++) {
        vn_set_threads(threads); /* OpenBLAS's order depends on its thread count */
        memcpy(want, c0, (size_t)nc * sizeof(float));
        blas_ref(t, a, b, bias, init, want);
        memcpy(got, c0, (size_t)nc * sizeof(float));
        vn__gemm_args g = args_of(t, a, b, bias, init, got);
        ck_assert_msg(vn__gemm(ctx, &g), "%s: the kernels refused the product", what);
        if (order_known()) {
            int64_t bad = 0, first = -1;
            for (int64_t i = 0; i < nc; i++)
                if (memcmp(&got[i], &want[i], sizeof(float))) bad += (first < 0 ? (first = i) : 0, 1);
            ck_assert_msg(bad == 0, "%s, %d threads: %lld of %lld elements differ from OpenBLAS "
                          "(first at %lld: %.9g against %.9g)", what, threads, (long long)bad,
                          (long long)nc, (long long)first, first >= 0 ? got[first] : 0.0,
                          first >= 0 ? want[first] : 0.0);
        } else {
            /* other kernels sum in another order: k products of magnitude <= 1 */
            ck_assert(vn_test_close(what, got, want, nc, 2e-6 * (double)t->k, 1e-5));
        }
    }
    vn__gemm_set_mode(1);
    vn_set_threads(0);
    vn_ctx_destroy(ctx);
    free(a), free(b), free(bias), free(c0), free(want), free(got);
}
END_TEST

/* ---- an emulation of OpenBLAS's sgemm, from its loops -----------------------------------
 * driver/level3/level3.c and level3_thread.c (0.3.21, compiled generic in Debian's
 * DYNAMIC_ARCH build: SWITCH_RATIO 2, parts not rounded), and the order its kernels sum in:
 * SkylakeX's (and Cooperlake's) one chain of fused multiply-adds per element and block;
 * Haswell's (Zen's) the same except in the 8x6 corner tiles of its 12-column blocks and in its
 * 8x4 blocks, which sum the even and odd indices of the first multiple of 8 in two chains (the
 * rest onto the even one) and add them. In OpenBLAS's terms (column-major): M is our n, N our m. */
typedef struct {
    const vn__gemm_args *g;
    bool hsw;
    int64_t q, um, p, r; /* GEMM_Q, UNROLL_M, GEMM_P, GEMM_R */
    float *c;
} emu;

static float emu_b(const vn__gemm_args *g, int64_t l, int64_t j)
{
    return g->b_trans ? g->b[j * g->ldb + l] : g->b[l * g->ldb + j];
}

/* C(i, j) += its sum over [l0, l0 + kb), one chain or two. */
static void emu_add(emu *s, int64_t i, int64_t j, int64_t l0, int64_t kb, bool two)
{
    const vn__gemm_args *g = s->g;
    float e = 0.0f, o = 0.0f;
    int64_t k8 = two && kb >= 8 ? kb / 8 * 8 : 0;
    for (int64_t l = 0; l < kb; l++) {
        float av = g->a[i * g->a_row + (l0 + l) * g->a_col], bv = emu_b(g, l0 + l, j);
        if (l < k8 && l % 2) o = fmaf(av, bv, o);
        else e = fmaf(av, bv, e);
    }
    s->c[i * g->ldc + j] += k8 ? e + o : e;
}

/* One kernel call: OpenBLAS rows [cs, cs + mc) (our columns) by columns [xs, xs + w) (our
 * rows): blocks of 12, 8, 4, 2, 1 columns; in a 12-block with mc >= 16 the first 8-row panel's
 * left half and the last panel's left (an even number of panels) or right half (odd) are the
 * 8x6 corner tiles; a 4-block's whole 8-row panels are 8x4 tiles. */
static void emu_kernel(emu *s, int64_t cs, int64_t mc, int64_t xs, int64_t w, int64_t l0,
                       int64_t kb)
{
    const int64_t p8 = mc / 8;
    for (int64_t x = 0; x < w;) {
        int64_t left = w - x;
        int64_t nb = left >= 12 ? 12 : left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        for (int64_t c = 0; c < nb; c++)
            for (int64_t r = 0; r < mc; r++) {
                int64_t p = r / 8;
                bool two = false;
                if (s->hsw && p < p8) {
                    if (nb == 4) two = true;
                    else if (nb == 12 && mc >= 16)
                        two = c < 6 ? p == 0 || (p8 % 2 == 0 && p == p8 - 1)
                                    : p8 % 2 == 1 && p == p8 - 1;
                }
                emu_add(s, xs + x + c, cs + r, l0, kb, two);
            }
        x += nb;
    }
}

/* The calls over the pieces the driver copies B in: 12 columns while at least 12 remain, 4
 * while more than 4, then the rest. */
static void emu_pieces(emu *s, int64_t cs, int64_t mc, int64_t xs, int64_t w, int64_t l0,
                       int64_t kb)
{
    for (int64_t x = 0; x < w;) {
        int64_t jj = w - x >= 12 ? 12 : w - x > 4 ? 4 : w - x;
        emu_kernel(s, cs, mc, xs + x, jj, l0, kb);
        x += jj;
    }
}

static int64_t emu_first_chunk(const emu *s, int64_t len)
{
    if (len >= 2 * s->p) return s->p;
    return len > s->p ? (len / 2 + s->um - 1) / s->um * s->um : len;
}

/* C = init + A B as OpenBLAS computes it on `threads` threads, with its SkylakeX (family 0),
 * Haswell (1) or Cooperlake (2: SkylakeX's kernel, GEMM_P 640 and GEMM_Q 320) kernel. */
static void emu_gemm(const vn__gemm_args *g, int family, int threads, float *c)
{
    const bool hsw = family == 1;
    emu s = {g, hsw, family ? 320 : 448, hsw ? 8 : 16, family == 2 ? 640 : family ? 320 : 448,
             hsw ? 104512 : 1 << 30, c};
    const int64_t M = g->n, N = g->m, K = g->k;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < M; j++)
            c[i * g->ldc + j] = g->init == VN__GEMM_ZERO ? 0.0f
                                : g->init == VN__GEMM_BIAS ? g->bias[j] : c[i * g->ldc + j];
    /* gemm_thread: nthreads_m parts of M of at least SWITCH_RATIO, nthreads_n of N */
    int ntm = 1, ntn = 1;
    if (threads > 1) {
        if (M >= 4)
            for (ntm = threads; M < ntm * 2;) ntm /= 2;
        if (N >= 2 * ntm) {
            ntn = (int)((N + 2 * ntm - 1) / (2 * ntm));
            if (ntm * ntn > threads) ntn = threads / ntm;
        }
    }
    const int nt = ntm * ntn;
    if (nt <= 1) { /* level3.c */
        for (int64_t js = 0; js < N; js += s.r) {
            int64_t min_j = N - js < s.r ? N - js : s.r;
            for (int64_t ls = 0, min_l; ls < K; ls += min_l) {
                min_l = vn__gemm_kblock(s.q, s.um, false, K - ls);
                int64_t min_i = emu_first_chunk(&s, M);
                emu_pieces(&s, 0, min_i, js, min_j, ls, min_l);
                for (int64_t is = min_i; is < M; is += min_i) {
                    min_i = M - is;
                    if (min_i >= 2 * s.p) min_i = s.p;
                    else if (min_i > s.p) min_i = (min_i / 2 + s.um - 1) / s.um * s.um;
                    emu_kernel(&s, is, min_i, js, min_j, ls, min_l);
                }
            }
        }
        return;
    }
    int64_t range_m[65], range_n[65];
    range_m[0] = 0;
    for (int i = 0, left = (int)M; i < ntm; i++) {
        int64_t w = (left + ntm - i - 1) / (ntm - i);
        range_m[i + 1] = range_m[i] + w, left -= (int)w;
    }
    for (int64_t js = 0; js < N; js += s.r * nt) {
        int64_t n = N - js < s.r * nt ? N - js : s.r * nt;
        int parts = 0;
        range_n[0] = js;
        while (n > 0) {
            int64_t w = (n + nt - parts - 1) / (nt - parts);
            if (w < 2) w = 2;
            n -= w;
            if (n < 0) w += n;
            range_n[parts + 1] = range_n[parts] + w, parts++;
        }
        for (int i = parts; i < nt; i++) range_n[i + 1] = range_n[parts];
        /* inner_thread of each thread; each element is one thread's, so any order of the
         * threads gives the same bytes, as long as each takes the blocks in order */
        for (int pos = 0; pos < nt; pos++) {
            int pm = pos % ntm, pn = pos / ntm;
            int64_t m_from = range_m[pm], m_to = range_m[pm + 1];
            for (int64_t ls = 0, min_l; ls < K; ls += min_l) {
                min_l = vn__gemm_kblock(s.q, s.um, true, K - ls);
                int64_t min_i = emu_first_chunk(&s, m_to - m_from);
                for (int cur = pn * ntm; cur < (pn + 1) * ntm; cur++) {
                    int64_t n0 = range_n[cur], n1 = range_n[cur + 1];
                    int64_t div_n = (n1 - n0 + 1) / 2;
                    for (int64_t x = n0; x < n1; x += div_n) {
                        int64_t w = n1 - x < div_n ? n1 - x : div_n;
                        if (cur == pos) emu_pieces(&s, m_from, min_i, x, w, ls, min_l);
                        else emu_kernel(&s, m_from, min_i, x, w, ls, min_l);
                    }
                }
                for (int64_t is = m_from + min_i; is < m_to; is += min_i) {
                    min_i = m_to - is;
                    if (min_i >= 2 * s.p) min_i = s.p;
                    else if (min_i > s.p) min_i = ((min_i + 1) / 2 + s.um - 1) / s.um * s.um;
                    for (int cur = pn * ntm; cur < (pn + 1) * ntm; cur++) {
                        int64_t n0 = range_n[cur], n1 = range_n[cur + 1];
                        int64_t div_n = (n1 - n0 + 1) / 2;
                        for (int64_t x = n0; x < n1; x += div_n)
                            emu_kernel(&s, is, min_i, x, n1 - x < div_n ? n1 - x : div_n, ls,
                                       min_l);
                    }
                }
            }
        }
    }
}

static int64_t count_diff(const float *got, const float *want, int64_t n, int64_t *first)
{
    int64_t bad = 0;
    *first = -1;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float))) bad += (*first < 0 ? (*first = i) : 0, 1);
    return bad;
}

/* Shapes for the emulation (scalar, so smaller): columns that make one to several 8-row
 * panels of OpenBLAS's M (16, 24, 40: the corner tiles' cases), parts and row chunks of its
 * GEMM_P (330, 700), rows in its 12-, 8-, 4-column blocks and pieces, inner blocks under 8,
 * and more rows than its GEMM_R per thread. */
static const gcase emu_cases[] = {
    {0, 1037, 33, 64}, {0, 997, 17, 77}, {1, 333, 7, 450}, {2, 24, 40, 1097},
    {0, 2000, 16, 40}, {0, 1501, 24, 36}, {1, 1100, 40, 30}, {0, 301, 330, 20},
    {1, 150, 700, 12}, {2, 70, 650, 700}, {0, 20000, 13, 5}, {0, 215001, 6, 2},
    {2, 19, 56, 4000}, {1, 89, 200, 90},
};
#define N_EMU ((int)(sizeof emu_cases / sizeof emu_cases[0]))

/* The three orders (SkylakeX's, Haswell's, Cooperlake's) on any machine: the kernels against
 * the emulation, on 1, 2 and 3 threads (the emulation told the same count), byte for byte. */
START_TEST(same_as_emulation)
{
    if (!vn__gemm_compiled()) return;
    const gcase *t = &emu_cases[_i / 9];
    const int init = _i % 3, family = (_i / 3) % 3;
    if (init == VN__GEMM_BIAS && t->kind != 0) return;
    int64_t na = t->m * t->k, nb = t->n * t->k, nc = t->m * t->n;
    float *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)nb * sizeof *b);
    float *bias = malloc((size_t)t->n * sizeof *bias), *want = malloc((size_t)nc * sizeof *want);
    float *got = malloc((size_t)nc * sizeof *got), *c0 = malloc((size_t)nc * sizeof *c0);
    vn_test_fill_uniform(a, na, 500 + (uint64_t)_i, -1.0f, 1.0f);
    vn_test_fill_uniform(b, nb, 600 + (uint64_t)_i, -1.0f, 1.0f);
    vn_test_fill_uniform(bias, t->n, 700, -0.5f, 0.5f);
    vn_test_fill_uniform(c0, nc, 800, -2.0f, 2.0f);
    for (int64_t i = 0; i < na; i += 7) a[i] = -0.0f; /* signed zeros: 0 + -0 is +0 */
    vn_ctx *ctx = vn_ctx_create();
    ck_assert_ptr_nonnull(ctx);
    vn__gemm_set_mode(2);
    vn__gemm_set_order(family);
    for (int threads = 1; threads <= 3; threads++) {
        vn_set_threads(threads);
        memcpy(want, c0, (size_t)nc * sizeof(float));
        vn__gemm_args w = args_of(t, a, b, bias, init, want);
        emu_gemm(&w, family, threads, want);
        memcpy(got, c0, (size_t)nc * sizeof(float));
        vn__gemm_args g = args_of(t, a, b, bias, init, got);
        ck_assert(vn__gemm(ctx, &g));
        int64_t first, bad = count_diff(got, want, nc, &first);
        ck_assert_msg(bad == 0, "%s order, kind %d, %lld x %lld x %lld, init %d, %d threads: "
                      "%lld of %lld elements differ from the emulation (first at %lld: %.9g "
                      "against %.9g)",
                      family == 2 ? "Cooperlake" : family ? "Haswell" : "SkylakeX", t->kind,
                      (long long)t->m, (long long)t->n, (long long)t->k, init, threads,
                      (long long)bad, (long long)nc, (long long)first,
                      first >= 0 ? got[first] : 0.0, first >= 0 ? want[first] : 0.0);
    }
    vn__gemm_set_order(-1);
    vn__gemm_set_mode(1);
    vn_set_threads(0);
    vn_ctx_destroy(ctx);
    free(a), free(b), free(bias), free(c0), free(want), free(got);
}
END_TEST

/* The emulation is OpenBLAS, where it runs one of the two kernels: on 1, 2 and 3 threads. */
START_TEST(emulation_is_openblas)
{
    if (!order_known()) return;
    const gcase *t = &emu_cases[_i / 3];
    const int init = _i % 3;
    if (init == VN__GEMM_BIAS && t->kind != 0) return;
    int64_t na = t->m * t->k, nb = t->n * t->k, nc = t->m * t->n;
    float *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)nb * sizeof *b);
    float *bias = malloc((size_t)t->n * sizeof *bias), *want = malloc((size_t)nc * sizeof *want);
    float *got = malloc((size_t)nc * sizeof *got);
    vn_test_fill_uniform(a, na, 900 + (uint64_t)_i, -1.0f, 1.0f);
    vn_test_fill_uniform(b, nb, 1000 + (uint64_t)_i, -1.0f, 1.0f);
    vn_test_fill_uniform(bias, t->n, 1100, -0.5f, 0.5f);
    const int family = vn__gemm_order();
    for (int threads = 1; threads <= 3; threads++) {
        vn_set_threads(threads);
        vn_test_fill_uniform(want, nc, 1200, -2.0f, 2.0f);
        memcpy(got, want, (size_t)nc * sizeof(float));
        blas_ref(t, a, b, bias, init, want);
        vn__gemm_args g = args_of(t, a, b, bias, init, got);
        emu_gemm(&g, family, threads, got);
        int64_t first, bad = count_diff(got, want, nc, &first);
        ck_assert_msg(bad == 0, "OpenBLAS %s, kind %d, %lld x %lld x %lld, init %d, %d threads: "
                      "%lld of %lld elements of the emulation differ (first at %lld)",
                      openblas_get_corename(), t->kind, (long long)t->m, (long long)t->n,
                      (long long)t->k, init, threads, (long long)bad, (long long)nc,
                      (long long)first);
    }
    vn_set_threads(0);
    free(a), free(b), free(bias), free(want), free(got);
}
END_TEST

/* The default choice follows the kernels OpenBLAS runs: against its AVX-512 ones the wide
 * products stay there (its cache blocking wins), against its AVX2 or generic ones (an
 * older OpenBLAS, or OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU) every product comes here. */
START_TEST(default_follows_openblas)
{
    if (!vn__gemm_compiled()) return;
    const char *core = openblas_get_corename();
    bool avx512 = core && (!strcmp(core, "SkylakeX") || !strcmp(core, "Cooperlake") ||
                           !strcmp(core, "SapphireRapids"));
    static const gcase wide[] = {{0, 25088, 512, 512}, {1, 6272, 1024, 2048},
                                 {2, 2048, 1024, 6272}};
    static const gcase narrow[] = {{0, 6272, 64, 16}, {1, 6272, 64, 64}};
    float dummy = 0.0f;
    for (int i = 0; i < 3; i++) {
        vn__gemm_args g = args_of(&wide[i], &dummy, &dummy, &dummy, VN__GEMM_ZERO, &dummy);
        ck_assert_msg(vn__gemm_prefers(&g) == !avx512, "OpenBLAS %s: wide product %d %s", core,
                      i, avx512 ? "taken from its AVX-512 kernels" : "left to its slower kernels");
    }
    for (int i = 0; i < 2; i++) {
        vn__gemm_args g = args_of(&narrow[i], &dummy, &dummy, &dummy, VN__GEMM_ZERO, &dummy);
        ck_assert_msg(vn__gemm_prefers(&g), "OpenBLAS %s: narrow product %d not taken", core, i);
    }
}
END_TEST

/* Small products stay with OpenBLAS (its small-matrix kernels sum in other orders). */
START_TEST(small_products_refused)
{
    static const gcase small[] = {{0, 128, 10, 512}, {1, 37, 33, 64}, {2, 24, 16, 2048},
                                  {0, 100, 100, 100}};
    float *buf = calloc(1 << 17, sizeof(float));
    vn_ctx *ctx = vn_ctx_create();
    vn__gemm_set_mode(2);
    for (int i = 0; i < 4; i++) {
        vn__gemm_args g = args_of(&small[i], buf, buf, buf, VN__GEMM_ZERO, buf);
        ck_assert_msg(!vn__gemm(ctx, &g), "small product %d taken", i);
    }
    vn__gemm_set_mode(1);
    vn_ctx_destroy(ctx);
    free(buf);
}
END_TEST

START_TEST(inner_blocks)
{
    /* SkylakeX (GEMM_Q 448, unroll 16): 448 while at least 896 remain; then the threaded
     * driver takes the larger half, the single-thread one the half rounded up to 16 */
    ck_assert_int_eq(vn__gemm_kblock(448, 16, true, 1), 1);
    ck_assert_int_eq(vn__gemm_kblock(448, 16, true, 448), 448);
    ck_assert_int_eq(vn__gemm_kblock(448, 16, true, 449), 225);
    ck_assert_int_eq(vn__gemm_kblock(448, 16, false, 449), 224);
    ck_assert_int_eq(vn__gemm_kblock(448, 16, true, 700), 350);
    ck_assert_int_eq(vn__gemm_kblock(448, 16, false, 700), 352);
    ck_assert_int_eq(vn__gemm_kblock(448, 16, true, 902), 448);
    ck_assert_int_eq(vn__gemm_kblock(448, 16, true, 895), 448);
    ck_assert_int_eq(vn__gemm_kblock(448, 16, true, 893), 447);
    ck_assert_int_eq(vn__gemm_kblock(448, 16, false, 893), 448);
    ck_assert_int_eq(vn__gemm_kblock(448, 16, true, 2048), 448);
    /* Haswell (GEMM_Q 320, unroll 8) */
    ck_assert_int_eq(vn__gemm_kblock(320, 8, true, 640), 320);
    ck_assert_int_eq(vn__gemm_kblock(320, 8, true, 639), 320);
    ck_assert_int_eq(vn__gemm_kblock(320, 8, false, 639), 320);
    ck_assert_int_eq(vn__gemm_kblock(320, 8, true, 333), 167);
    ck_assert_int_eq(vn__gemm_kblock(320, 8, false, 333), 168);
    ck_assert_int_eq(vn__gemm_kblock(320, 8, false, 322), 168);
    ck_assert_int_eq(vn__gemm_kblock(320, 8, true, 320), 320);
}
END_TEST

/* A 1x1 conv (cin -> cout over n x h x w) or a patchify conv, forward and backward, with
 * the products in the given mode; everything returned in one buffer. */
static float *conv_run(int mode, int64_t n, int64_t h, int64_t cin, int64_t cout, int k,
                       bool bias, int64_t *len)
{
    vn__gemm_set_mode(mode);
    vn_tensor *x = vn_tensor_new4(n, h, h, cin, true);
    vn_tensor *w = vn_tensor_new4(cout, k, k, cin, true);
    vn_tensor *b = bias ? vn_tensor_new(1, &cout, true) : NULL;
    vn_test_fill_uniform(x->data, x->numel, 51, -1.0f, 1.0f);
    vn_test_fill_uniform(w->data, w->numel, 52, -0.5f, 0.5f);
    if (b) vn_test_fill_uniform(b->data, cout, 53, -0.2f, 0.2f);
    vn_ctx *ctx = vn_ctx_create();
    ck_assert_ptr_nonnull(ctx);
    vn_tensor *xs = vn_scale(ctx, x, 1.0f);
    ck_assert_msg(xs != NULL, "%s", vn_ctx_error(ctx));
    /* A second reader of xs makes the input gradient accumulate onto another's. */
    vn_tensor *y = vn_conv2d(ctx, xs, w, b, (vn_conv_params){k, k, 0, 0, 1});
    ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
    vn_tensor *y2 = vn_conv2d(ctx, xs, w, NULL, (vn_conv_params){k, k, 0, 0, 1});
    ck_assert_msg(y2 != NULL, "%s", vn_ctx_error(ctx));
    vn_tensor *s = vn_add(ctx, y, y2);
    ck_assert_msg(s != NULL, "%s", vn_ctx_error(ctx));
    int64_t ny = y->numel;
    float *seed = malloc((size_t)ny * sizeof *seed);
    vn_test_fill_uniform(seed, ny, 54, -1.0f, 1.0f);
    *len = 2 * ny + x->numel + w->numel + (b ? cout : 0);
    float *out = malloc((size_t)*len * sizeof *out), *o = out;
    memcpy(o, y->data, (size_t)ny * sizeof(float)), o += ny;
    memcpy(o, y2->data, (size_t)ny * sizeof(float)), o += ny;
    ck_assert_int_eq(vn_backward_with(ctx, s, seed), VN_OK);
    memcpy(o, x->grad, (size_t)x->numel * sizeof(float)), o += x->numel;
    memcpy(o, w->grad, (size_t)w->numel * sizeof(float)), o += w->numel;
    if (b) memcpy(o, b->grad, (size_t)cout * sizeof(float));
    free(seed);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x), vn_tensor_free(w), vn_tensor_free(b);
    vn__gemm_set_mode(1);
    return out;
}

typedef struct ccase {
    int64_t n, h, cin, cout;
    int k;
    bool bias;
    bool split; /* a weight gradient the builds without the kernels split into row chunks */
} ccase;

static const ccase convs[] = {
    {8, 7, 64, 64, 1, true, false},   /* 392 rows: one product */
    {16, 28, 16, 24, 1, true, true},  /* 12,544 rows: a weight gradient over many rows */
    {4, 9, 40, 130, 1, false, false}, /* column tails, no bias */
    {16, 28, 1, 64, 4, true, false},  /* the Fashion-MNIST stem's patchify conv */
    {2, 16, 3, 40, 4, true, false},   /* a vanillanet stem's, small */
};
#define N_CONVS ((int)(sizeof convs / sizeof convs[0]))

START_TEST(convs_same_bytes)
{
    const ccase *c = &convs[_i];
    int64_t l0, l1, l2;
    float *blas = conv_run(0, c->n, c->h, c->cin, c->cout, c->k, c->bias, &l0);
    float *dflt = conv_run(1, c->n, c->h, c->cin, c->cout, c->k, c->bias, &l1);
    float *all = conv_run(2, c->n, c->h, c->cin, c->cout, c->k, c->bias, &l2);
    ck_assert_int_eq(l0, l1);
    ck_assert_int_eq(l0, l2);
    if (!vn__gemm_compiled()) {
        /* No kernels: the default and "all" are OpenBLAS's products, a long weight gradient
         * split into row chunks; VN_GEMM=blas takes that one whole, as builds before did. */
        ck_assert_msg(!memcmp(dflt, all, (size_t)l0 * sizeof(float)),
                      "conv %d: without the kernels, mode 2 differs from the default", _i);
        if (c->split) /* other summation order over 12,544 rows: weight-gradient tolerance */
            ck_assert(vn_test_close("default (split) against one product", dflt, blas, l0,
                                    1e-3, 1e-5));
        else
            ck_assert_msg(!memcmp(blas, dflt, (size_t)l0 * sizeof(float)),
                          "conv %d: the default products differ from OpenBLAS's", _i);
    } else if (order_known()) {
        ck_assert_msg(!memcmp(blas, dflt, (size_t)l0 * sizeof(float)),
                      "conv %d: the default products differ from OpenBLAS's", _i);
        ck_assert_msg(!memcmp(blas, all, (size_t)l0 * sizeof(float)),
                      "conv %d: the kernels' products differ from OpenBLAS's", _i);
    } else {
        ck_assert(vn_test_close("default against OpenBLAS", dflt, blas, l0, 1e-4, 1e-5));
        ck_assert(vn_test_close("kernels against OpenBLAS", all, blas, l0, 1e-4, 1e-5));
    }
    free(blas), free(dflt), free(all);
}
END_TEST

/* The weight gradient of a 1x1 conv over 6,272 rows (128 to 160 channels). Where the
 * kernels are built it is one product (whatever vn__gemm_prefers says), summed in OpenBLAS's
 * order (the emulation's), so OpenBLAS's bytes; with VN_GEMM=blas one OpenBLAS call, its
 * bytes on any machine; in builds without the kernels four chunks of 2,048 rows (the last of
 * 128), whose products ops_conv.c cuts into column blocks, equal to the chunk products taken
 * whole added in chunk order. */
START_TEST(weight_gradient_blocks)
{
    const int64_t n = 32, h = 14, ci = 128, co = 128 + 16 * (_i / 2), rows = n * h * h;
    const int64_t chunk = 2048;
    const bool blas = _i % 2;
    vn_tensor *x = vn_tensor_new4(n, h, h, ci, false);
    vn_tensor *w = vn_tensor_new4(co, 1, 1, ci, true);
    vn_test_fill_uniform(x->data, x->numel, 71, -1.0f, 1.0f);
    vn_test_fill_uniform(w->data, w->numel, 72, -0.5f, 0.5f);
    vn_ctx *ctx = vn_ctx_create();
    ck_assert_ptr_nonnull(ctx);
    vn__gemm_set_mode(blas ? 0 : 1);
    vn_tensor *y = vn_conv2d(ctx, x, w, NULL, (vn_conv_params){1, 1, 0, 0, 1});
    ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
    float *seed = malloc((size_t)y->numel * sizeof *seed);
    vn_test_fill_uniform(seed, y->numel, 73, -1.0f, 1.0f);
    ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
    vn__gemm_set_mode(1);
    float *want = calloc((size_t)(co * ci), sizeof *want), *part = malloc((size_t)(co * ci) * sizeof *part);
    if (blas) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)co, (int)ci, (int)rows, 1.0f,
                    seed, (int)co, x->data, (int)ci, 0.0f, want, (int)ci);
        ck_assert_msg(!memcmp(want, w->grad, (size_t)(co * ci) * sizeof(float)),
                      "%lld outputs, VN_GEMM=blas: the weight gradient differs from OpenBLAS's "
                      "one product", (long long)co);
    } else if (vn__gemm_compiled()) {
        gcase t = {2, co, ci, rows};
        vn__gemm_args g = args_of(&t, seed, x->data, NULL, VN__GEMM_ZERO, want);
        emu_gemm(&g, vn__gemm_order(), vn_get_threads(), want);
        ck_assert_msg(!memcmp(want, w->grad, (size_t)(co * ci) * sizeof(float)),
                      "%lld outputs: the weight gradient differs from the one product in "
                      "OpenBLAS's order (emulated)", (long long)co);
        if (order_known()) { /* and that is OpenBLAS's own product, byte for byte */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)co, (int)ci, (int)rows,
                        1.0f, seed, (int)co, x->data, (int)ci, 0.0f, part, (int)ci);
            ck_assert(!memcmp(want, part, (size_t)(co * ci) * sizeof(float)));
        }
    } else {
        for (int64_t lo = 0; lo < rows; lo += chunk) {
            int64_t m = rows - lo < chunk ? rows - lo : chunk;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)co, (int)ci, (int)m, 1.0f,
                        seed + lo * co, (int)co, x->data + lo * ci, (int)ci, 0.0f, part, (int)ci);
            for (int64_t i = 0; i < co * ci; i++) want[i] += part[i];
        }
        if (skylakex()) /* one chain per element: the column blocks do not change it */
            ck_assert_msg(!memcmp(want, w->grad, (size_t)(co * ci) * sizeof(float)),
                          "%lld outputs: the weight gradient differs from the chunk products'",
                          (long long)co);
        else
            ck_assert(vn_test_close("weight gradient", w->grad, want, co * ci, 1e-3, 1e-5));
    }
    free(seed), free(want), free(part);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x), vn_tensor_free(w);
}
END_TEST

int main(int argc, char **argv)
{
    (void)argc;
    vn_runtime_setup(argv); /* the OpenBLAS kernels `vanilla` runs (may execute again) */
    if (!vn__gemm_compiled())
        printf("test_gemm: this build has no AVX-512 kernels; only the OpenBLAS path is tested\n");
    else if (!order_known())
        printf("test_gemm: OpenBLAS runs its %s kernel, none whose order the library follows: "
               "compared within 1e-5, not byte for byte\n", openblas_get_corename());
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, same_as_openblas, 0, N_CASES * 3);
    tcase_add_loop_test(tc, same_as_emulation, 0, N_EMU * 9);
    tcase_add_loop_test(tc, emulation_is_openblas, 0, N_EMU * 3);
    tcase_add_test(tc, inner_blocks);
    tcase_add_test(tc, default_follows_openblas);
    tcase_add_test(tc, small_products_refused);
    tcase_add_loop_test(tc, convs_same_bytes, 0, N_CONVS);
    tcase_add_loop_test(tc, weight_gradient_blocks, 0, 6);
    suite_add_tcase(s, tc);
    return vn_test_run(s, false);
}
