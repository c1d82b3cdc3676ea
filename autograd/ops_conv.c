/* conv2d on NHWC activations with OHWI weights: forward and backward kernels.
 *
 * Four paths, chosen from the shapes alone (so forward and backward always agree):
 *  - 1x1, stride 1, pad 0, groups 1: the activation is already the [N*H*W, Cin] matrix,
 *    so the conv is one sgemm and its backward two;
 *  - patchify (kernel == stride, pad 0, groups 1): windows do not overlap, so a
 *    space-to-depth copy gives the patch matrix in (kh, kw, cin) order, which is the row
 *    order of an OHWI weight: one sgemm;
 *  - depthwise (groups == Cin == Cout): direct loops vectorised along C (contiguous in
 *    NHWC), in ops_conv_dw.c;
 *  - everything else: im2col per group + sgemm, in slabs of output rows so that the column
 *    matrix stays bounded.
 * Temporaries come from the context pool; nothing but the inputs themselves is needed by
 * backward, so nothing is saved: the im2col matrix is recomputed instead of kept. */
#include "autograd/ops_conv.h"
#include "autograd/ops_gemm.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

/* Column matrices above this size are processed in slabs of output rows. */
#define CONV_COL_BYTES_MAX ((size_t)64 << 20)

typedef vn__conv_kind conv_kind;
typedef vn__conv_state conv_state;

/* ---- shared helpers ------------------------------------------------------------------- */

/* Every row of y [rows, c] set to the bias, so sgemm can accumulate with beta = 1. OpenBLAS
 * clears C in a separate pass when beta = 0, so this costs no more than no bias at all. */
typedef struct {
    float *y;
    const float *b;
    int64_t c;
} bias_rows_job;

static void bias_rows(void *arg, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const bias_rows_job *J = arg;
    for (int64_t r = r0; r < r1; r++) memcpy(J->y + r * J->c, J->b, (size_t)J->c * sizeof(float));
}

static void fill_bias_rows(float *y, const float *b, int64_t rows, int64_t c)
{
    bias_rows_job J = {y, b, c};
    vn_par_for(rows, rows * c > VN_PAR_MIN_MACS, bias_rows, &J);
}

/* out[j] += sum over rows of a[r][j] (the bias gradient). Fixed chunks of rows are summed
 * separately, then the chunk sums added in chunk order: the result does not depend on the
 * number of threads. */
typedef struct {
    float *part;
    const float *a;
    int64_t rows, c;
} colsum_job;

static void colsum_chunks(void *arg, int64_t k0, int64_t k1, int tid)
{
    (void)tid;
    const colsum_job *J = arg;
    const int64_t c = J->c;
    for (int64_t ch = k0; ch < k1; ch++) {
        float *restrict p = J->part + ch * c;
        int64_t r0, r1;
        vn_chunk_range(ch, J->rows, VN_REDUCE_CHUNK, &r0, &r1);
        memset(p, 0, (size_t)c * sizeof(float));
        for (int64_t r = r0; r < r1; r++) {
            const float *restrict ar = J->a + r * c;
            for (int64_t j = 0; j < c; j++) p[j] += ar[j];
        }
    }
}

static int colsum_add(vn_ctx *ctx, float *restrict out, const float *restrict a, int64_t rows,
                      int64_t c)
{
    int64_t n_chunks = vn_chunk_count(rows, VN_REDUCE_CHUNK);
    float *part = vn__pool_alloc(ctx, (size_t)(n_chunks * c) * sizeof(float));
    if (!part) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "conv2d: out of memory for the bias gradient");
        return VN_ERR_NOMEM;
    }
    colsum_job J = {part, a, rows, c};
    vn_par_for(n_chunks, rows * c > VN_PAR_MIN_MACS, colsum_chunks, &J);
    const int64_t blk = 256;
#pragma omp parallel for schedule(static) if (n_chunks * c > VN_PAR_MIN_MACS)
    for (int64_t j0 = 0; j0 < c; j0 += blk) {
        int64_t nj = c - j0 < blk ? c - j0 : blk;
        float acc[256];
        for (int64_t j = 0; j < nj; j++) acc[j] = 0.0f;
        for (int64_t ch = 0; ch < n_chunks; ch++) {
            const float *restrict p = part + ch * c + j0;
            for (int64_t j = 0; j < nj; j++) acc[j] += p[j];
        }
        for (int64_t j = 0; j < nj; j++) out[j0 + j] += acc[j];
    }
    vn__pool_free(ctx, part);
    return VN_OK;
}

void *vn__conv_scratch(vn_ctx *ctx, size_t bytes, const char *what)
{
    void *p = vn__pool_alloc(ctx, bytes);
    if (!p) vn_ctx_fail(ctx, VN_ERR_NOMEM, "conv2d: out of memory for the %s (%zu bytes)", what,
                        bytes);
    return p;
}

/* ---- the three products, through ops_gemm.c where it takes them, else OpenBLAS ----------- */

/* y [m, n] = (bias rows, or 0) + x [m, k] w^T, w [n, k]. */
static void sgemm_nt_bias(vn_ctx *ctx, int64_t m, int64_t n, int64_t k, const float *x,
                          const float *w, const float *b, float *y)
{
    vn__gemm_args g = {.m = m, .n = n, .k = k, .a = x, .a_row = k, .a_col = 1, .b = w, .ldb = k,
                       .b_trans = true, .c = y, .ldc = n,
                       .init = b ? VN__GEMM_BIAS : VN__GEMM_ZERO, .bias = b};
    if (vn__gemm(ctx, &g)) return;
    if (b) fill_bias_rows(y, b, m, n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k,
                w, (int)k, b ? 1.0f : 0.0f, y, (int)n);
}

/* dx [m, n] (+)= dy [m, k] w, w [k, n]. */
static void sgemm_nn(vn_ctx *ctx, int64_t m, int64_t n, int64_t k, const float *dy,
                     const float *w, bool fresh, float *dx)
{
    vn__gemm_args g = {.m = m, .n = n, .k = k, .a = dy, .a_row = k, .a_col = 1, .b = w, .ldb = n,
                       .c = dx, .ldc = n, .init = fresh ? VN__GEMM_ZERO : VN__GEMM_ACC};
    if (vn__gemm(ctx, &g)) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, dy,
                (int)k, w, (int)n, fresh ? 0.0f : 1.0f, dx, (int)n);
}

/* The product below as ops_gemm.c takes it. */
static vn__gemm_args tn_args(int64_t co, int64_t n, int64_t m, const float *dy, const float *x,
                             int64_t ld, bool fresh, float *dw)
{
    return (vn__gemm_args){.m = co, .n = n, .k = m, .a = dy, .a_row = 1, .a_col = co, .b = x,
                           .ldb = ld, .c = dw, .ldc = ld,
                           .init = fresh ? VN__GEMM_ZERO : VN__GEMM_ACC};
}

/* dw [co, n] (+)= dy^T x over m rows, dy [m, co], x [m, n] with rows ld apart (dw's too):
 * n columns of a wider x and dw. */
static void sgemm_tn(vn_ctx *ctx, int64_t co, int64_t n, int64_t m, const float *dy,
                     const float *x, int64_t ld, bool fresh, float *dw)
{
    vn__gemm_args g = tn_args(co, n, m, dy, x, ld, fresh, dw);
    if (vn__gemm(ctx, &g)) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)co, (int)n, (int)m, 1.0f, dy,
                (int)co, x, (int)ld, fresh ? 0.0f : 1.0f, dw, (int)ld);
}

/* ---- weight gradients: dw [co, k] (+)= dy^T x over m rows ------------------------------- */

/* Rows per chunk of a split weight-gradient product, and the most floats of partial sums
 * it may hold. */
#define DW_CHUNK_ROWS 2048
#define DW_SPLIT_MAX_FLOATS ((int64_t)4 << 20)
/* Tasks a split product aims at (chunks times column blocks), and the narrowest block. */
#define DW_TASKS 8
#define DW_MIN_COLS 64

/* Column blocks per chunk of a split product, from the shape alone: few chunks (4 for the
 * 6,272 rows of a Fashion-MNIST stage or vanillanet_5's stage 2, one of them short) leave
 * the threads unevenly loaded, so each chunk's product is cut into column blocks (16-column
 * multiples) until there are DW_TASKS tasks. Each element is still one product's over the
 * same rows: the same bytes with OpenBLAS's SkylakeX kernels and ours, as long as no piece
 * falls to OpenBLAS's small-matrix kernels (a chunk whose pieces would have at most
 * VN__GEMM_MIN_MACS multiply-adds keeps one block). */
static int64_t dw_col_blocks(int64_t co, int64_t k, int64_t rows, int64_t nch)
{
    int64_t nb = (DW_TASKS + nch - 1) / nch, most = k / DW_MIN_COLS;
    if (nb > most) nb = most;
    if (nb < 2) return 1;
    int64_t w = ((k + nb - 1) / nb + 15) / 16 * 16, last = k - (nb - 1) * w;
    if (last <= 0 || (double)co * (double)last * (double)rows <= VN__GEMM_MIN_MACS) return 1;
    return nb;
}

/* dw [co, k] (+)= dy^T x, dy [m, co] and x [m, k] row-major. Narrow layers over many pixels
 * (the Fashion-MNIST model: co = k = 64 over m = 100,352 rows) make this one product with a
 * tiny output and a huge inner dimension, which OpenBLAS threads by syncing after every
 * block of the inner dimension: it ran at a fifth of the forward's speed, far worse when
 * another process shares the cores. Where the library's kernels are built (AVX-512) they
 * take it whole, whatever the default choice says: block by block of the inner dimension in
 * one parallel loop (ops_gemm.c), each element summed as OpenBLAS's kernels sum the one
 * product (SkylakeX, Cooperlake, Haswell, Zen), so the bytes of the builds before any split.
 * With VN_GEMM=blas, one OpenBLAS call, as before (its bytes, its speed). Elsewhere (a build
 * without those kernels) the rows are split into fixed chunks, each chunk's product
 * (single-threaded inside the parallel loop) goes to its own partial sum, and the partials
 * are added in chunk order: one parallel loop, and the same bytes for any thread count.
 * Wide layers, whose partial sums would be large, keep the one product either way. */
typedef struct {
    vn_ctx *ctx;
    int64_t co, k, m, nch, ncb, part;
    const float *dy, *x;
    float *sums, *dw;
    bool fresh;
} dw_split_job;

/* Tasks [t0, t1) of a split product: chunk t / ncb of the rows, column block t % ncb, each a
 * single-threaded product (the pool's threads run OpenBLAS on one thread). */
static void dw_split_tasks(void *arg, int64_t t0, int64_t t1, int tid)
{
    (void)tid;
    const dw_split_job *J = arg;
    const int64_t co = J->co, k = J->k, ncb = J->ncb;
    for (int64_t t = t0; t < t1; t++) {
        int64_t c = t / ncb, b = t % ncb, lo, hi;
        vn_chunk_range(c, J->m, DW_CHUNK_ROWS, &lo, &hi);
        /* The short last chunk may keep one block where full ones are cut. */
        int64_t nb = hi - lo == DW_CHUNK_ROWS ? ncb : dw_col_blocks(co, k, hi - lo, J->nch);
        if (b >= nb) continue;
        int64_t w = nb == 1 ? k : ((k + nb - 1) / nb + 15) / 16 * 16;
        int64_t j0 = b * w, nj = k - j0 < w ? k - j0 : w;
        sgemm_tn(J->ctx, co, nj, hi - lo, J->dy + lo * co, J->x + lo * k + j0, k, true,
                 J->sums + c * J->part + j0);
    }
}

/* dw (+)= the chunks' partial sums, added in chunk order, for the elements [i0, i1). */
static void dw_split_sum(void *arg, int64_t i0, int64_t i1, int tid)
{
    (void)tid;
    const dw_split_job *J = arg;
    for (int64_t i = i0; i < i1; i++) {
        float acc = J->fresh ? 0.0f : J->dw[i];
        for (int64_t c = 0; c < J->nch; c++) acc += J->sums[c * J->part + i];
        J->dw[i] = acc;
    }
}

static int gemm_dw(vn_ctx *ctx, int64_t co, int64_t k, int64_t m, const float *dy,
                   const float *x, bool fresh, float *dw)
{
    int64_t nch = vn_chunk_count(m, DW_CHUNK_ROWS), part = co * k;
    if (nch < 2 || nch * part > DW_SPLIT_MAX_FLOATS || vn__gemm_blas_only()) {
        sgemm_tn(ctx, co, k, m, dy, x, k, fresh, dw);
        return VN_OK;
    }
    vn__gemm_args g = tn_args(co, k, m, dy, x, k, fresh, dw);
    g.force = true;
    if (vn__gemm(ctx, &g)) return VN_OK;
    float *sums = vn__conv_scratch(ctx, (size_t)(nch * part) * sizeof(float),
                                   "weight-gradient partial sums");
    if (!sums) return VN_ERR_NOMEM;
    dw_split_job J = {ctx, co, k, m, nch, dw_col_blocks(co, k, DW_CHUNK_ROWS, nch), part,
                      dy, x, sums, dw, fresh};
    vn_par_for(nch * J.ncb, true, dw_split_tasks, &J);
    vn_par_for(part, nch * part > VN_PAR_MIN, dw_split_sum, &J);
    vn__pool_free(ctx, sums);
    return VN_OK;
}

/* ---- 1x1, stride 1, pad 0, groups 1 ---------------------------------------------------- */

static void conv1x1_forward(vn_ctx *ctx, float *y, const float *x, const float *w,
                            const float *b, const vn__conv_geom *g)
{
    sgemm_nt_bias(ctx, g->n * g->h * g->w, g->cout, g->cin, x, w, b, y);
}

/* dx (+)= dy * W; dw (+)= dy^T * x. beta 0 where the gradient buffer is fresh. */
static int conv1x1_backward(vn_ctx *ctx, float *dx, bool dx_fresh, float *dw, bool dw_fresh,
                            const float *dy, const float *x, const float *w,
                            const vn__conv_geom *g)
{
    int64_t m = g->n * g->h * g->w;
    if (dx) sgemm_nn(ctx, m, g->cin, g->cout, dy, w, dx_fresh, dx);
    return dw ? gemm_dw(ctx, g->cout, g->cin, m, dy, x, dw_fresh, dw) : VN_OK;
}

/* ---- patchify: kernel == stride, pad 0, groups 1 -------------------------------------- */

/* The patch matrix p [N*Ho*Wo, KH*KW*Cin] in (kh, kw, cin) order against the NHWC image x:
 * each kernel row of a window is one contiguous run of KW*Cin floats. gather copies x into
 * p (rows/columns past Ho*KH / Wo*KW are dropped); otherwise x += depth-to-space(p), and as
 * windows do not overlap, rows are independent. */
static void patch_move(float *p, float *x, const vn__conv_geom *g, bool gather)
{
    int64_t k = g->kh * g->kw * g->cin, run = g->kw * g->cin, rows = g->n * g->ho;
#pragma omp parallel for schedule(static) if (rows * g->wo * k > VN_PAR_MIN_MACS)
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = r / g->ho, ho = r % g->ho;
        for (int64_t wo = 0; wo < g->wo; wo++) {
            float *pw = p + (r * g->wo + wo) * k;
            for (int64_t i = 0; i < g->kh; i++) {
                float *restrict img =
                    x + ((n * g->h + ho * g->kh + i) * g->w + wo * g->kw) * g->cin;
                float *restrict pr = pw + i * run;
                if (gather)
                    memcpy(pr, img, (size_t)run * sizeof(float));
                else
                    for (int64_t j = 0; j < run; j++) img[j] += pr[j];
            }
        }
    }
}

static void patch_gather(float *p, const float *x, const vn__conv_geom *g)
{
    patch_move(p, (float *)x, g, true); /* x is only read when gathering */
}

static void patch_scatter_add(float *dx, const float *dp, const vn__conv_geom *g)
{
    patch_move((float *)dp, dx, g, false); /* dp is only read when scattering */
}

static int patch_forward(vn_ctx *ctx, float *y, const float *x, const float *w, const float *b,
                         const vn__conv_geom *g)
{
    int64_t m = g->n * g->ho * g->wo, k = g->kh * g->kw * g->cin;
    float *p = vn__conv_scratch(ctx, (size_t)(m * k) * sizeof(float), "patch matrix");
    if (!p) return VN_ERR_NOMEM;
    patch_gather(p, x, g);
    sgemm_nt_bias(ctx, m, g->cout, k, p, w, b, y);
    vn__pool_free(ctx, p);
    return VN_OK;
}

static int patch_backward(vn_ctx *ctx, float *dx, bool dx_fresh, float *dw, bool dw_fresh,
                          const float *dy, const float *x, const float *w, const vn__conv_geom *g)
{
    int64_t m = g->n * g->ho * g->wo, k = g->kh * g->kw * g->cin;
    float *p = vn__conv_scratch(ctx, (size_t)(m * k) * sizeof(float), "patch matrix");
    if (!p) return VN_ERR_NOMEM;
    if (dw) {
        patch_gather(p, x, g);
        int rc = gemm_dw(ctx, g->cout, k, m, dy, p, dw_fresh, dw);
        if (rc != VN_OK) {
            vn__pool_free(ctx, p);
            return rc;
        }
    }
    if (dx) {
        /* The same buffer now holds d(patches). */
        sgemm_nn(ctx, m, k, g->cout, dy, w, true, p);
        /* Remainder rows/columns (H not divisible by the stride) get gradient 0. */
        if (dx_fresh) memset(dx, 0, (size_t)(g->n * g->h * g->w * g->cin) * sizeof(float));
        patch_scatter_add(dx, p, g);
    }
    vn__pool_free(ctx, p);
    return VN_OK;
}

/* ---- general: im2col + sgemm per group ------------------------------------------------ */

/* col [(r - r0)*Wo + wo, (kh, kw, c)] for output rows r in [r0, r0 + nr) and the channels
 * of group grp; taps in the padding are zero. */
static void im2col(float *restrict col, const float *restrict x, const vn__conv_geom *g, int grp,
                   int64_t r0, int64_t nr)
{
    int64_t cg = g->cin / g->groups, k = g->kh * g->kw * cg;
#pragma omp parallel for schedule(static) if (nr * g->wo * k > VN_PAR_MIN_MACS)
    for (int64_t r = r0; r < r0 + nr; r++) {
        int64_t n = r / g->ho, ho = r % g->ho;
        for (int64_t wo = 0; wo < g->wo; wo++) {
            float *dst = col + ((r - r0) * g->wo + wo) * k;
            for (int64_t i = 0; i < g->kh; i++) {
                int64_t hi = ho * g->sh - g->ph + i;
                for (int64_t j = 0; j < g->kw; j++) {
                    int64_t wi = wo * g->sw - g->pw + j;
                    float *d = dst + (i * g->kw + j) * cg;
                    if (hi < 0 || hi >= g->h || wi < 0 || wi >= g->w)
                        memset(d, 0, (size_t)cg * sizeof(float));
                    else
                        memcpy(d, x + ((n * g->h + hi) * g->w + wi) * g->cin + grp * cg,
                               (size_t)cg * sizeof(float));
                }
            }
        }
    }
}

/* dx += col2im(dcol) for the output rows [r0, r0 + nr). Gather form, parallel over the input
 * rows (n, hi): each thread writes only its own rows, so there are no races. */
static void col2im_add(float *restrict dx, const float *restrict dcol, const vn__conv_geom *g,
                       int grp, int64_t r0, int64_t nr)
{
    int64_t cg = g->cin / g->groups, k = g->kh * g->kw * cg;
    int64_t n0 = r0 / g->ho, n1 = (r0 + nr - 1) / g->ho;
    int64_t t0 = n0 * g->h, t1 = (n1 + 1) * g->h;
#pragma omp parallel for schedule(static) if (nr * g->wo * k > VN_PAR_MIN_MACS)
    for (int64_t t = t0; t < t1; t++) {
        int64_t n = t / g->h, hi = t % g->h;
        float *dxrow = dx + t * g->w * g->cin + grp * cg;
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t num = hi + g->ph - i;
            if (num < 0 || num % g->sh) continue;
            int64_t ho = num / g->sh;
            if (ho >= g->ho) continue;
            int64_t r = n * g->ho + ho;
            if (r < r0 || r >= r0 + nr) continue;
            const float *crow = dcol + (r - r0) * g->wo * k;
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t lo, hi_end;
                vn__conv_tap_range(j, g->sw, g->pw, g->w, g->wo, &lo, &hi_end);
                for (int64_t wo = lo; wo < hi_end; wo++) {
                    float *restrict d = dxrow + (wo * g->sw - g->pw + j) * g->cin;
                    const float *restrict s = crow + wo * k + (i * g->kw + j) * cg;
                    for (int64_t c = 0; c < cg; c++) d[c] += s[c];
                }
            }
        }
    }
}

/* Output rows per slab so that `bufs` column matrices stay under CONV_COL_BYTES_MAX. */
static int64_t general_slab_rows(const vn__conv_geom *g, int bufs)
{
    int64_t k = g->kh * g->kw * (g->cin / g->groups);
    int64_t row_bytes = g->wo * k * (int64_t)sizeof(float) * bufs;
    int64_t s = (int64_t)CONV_COL_BYTES_MAX / row_bytes;
    if (s < 1) s = 1;
    if (s > g->n * g->ho) s = g->n * g->ho;
    return s;
}

static int general_forward(vn_ctx *ctx, float *y, const float *x, const float *w, const float *b,
                           const vn__conv_geom *g)
{
    int64_t cg = g->cin / g->groups, og = g->cout / g->groups, k = g->kh * g->kw * cg;
    int64_t rows = g->n * g->ho, slab = general_slab_rows(g, 1);
    float *col = vn__conv_scratch(ctx, (size_t)(slab * g->wo * k) * sizeof(float), "im2col matrix");
    if (!col) return VN_ERR_NOMEM;
    if (b) fill_bias_rows(y, b, rows * g->wo, g->cout);
    for (int64_t r0 = 0; r0 < rows; r0 += slab) {
        int64_t nr = rows - r0 < slab ? rows - r0 : slab;
        for (int grp = 0; grp < g->groups; grp++) {
            im2col(col, x, g, grp, r0, nr);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(nr * g->wo), (int)og,
                        (int)k, 1.0f, col, (int)k, w + grp * og * k, (int)k, b ? 1.0f : 0.0f,
                        y + r0 * g->wo * g->cout + grp * og, (int)g->cout);
        }
    }
    vn__pool_free(ctx, col);
    return VN_OK;
}

/* dx and dw accumulate (+=) into zero-initialised or existing gradients. */
static int general_backward(vn_ctx *ctx, float *dx, float *dw, const float *dy, const float *x,
                            const float *w, const vn__conv_geom *g)
{
    int64_t cg = g->cin / g->groups, og = g->cout / g->groups, k = g->kh * g->kw * cg;
    int64_t rows = g->n * g->ho, slab = general_slab_rows(g, (dx ? 1 : 0) + (dw ? 1 : 0));
    size_t bytes = (size_t)(slab * g->wo * k) * sizeof(float);
    float *col = dw ? vn__conv_scratch(ctx, bytes, "im2col matrix") : NULL;
    float *dcol = dx ? vn__conv_scratch(ctx, bytes, "im2col gradient") : NULL;
    if ((dw && !col) || (dx && !dcol)) {
        vn__pool_free(ctx, col);
        vn__pool_free(ctx, dcol);
        return VN_ERR_NOMEM;
    }
    for (int64_t r0 = 0; r0 < rows; r0 += slab) {
        int64_t nr = rows - r0 < slab ? rows - r0 : slab;
        int m = (int)(nr * g->wo);
        for (int grp = 0; grp < g->groups; grp++) {
            const float *dyg = dy + r0 * g->wo * g->cout + grp * og;
            if (dw) {
                im2col(col, x, g, grp, r0, nr);
                if (g->groups == 1) { /* dy's rows are dense: the split product of 1x1 */
                    int rc = gemm_dw(ctx, og, k, m, dyg, col, false, dw);
                    if (rc != VN_OK) {
                        vn__pool_free(ctx, col);
                        vn__pool_free(ctx, dcol);
                        return rc;
                    }
                } else {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)og, (int)k, m, 1.0f,
                                dyg, (int)g->cout, col, (int)k, 1.0f, dw + grp * og * k, (int)k);
                }
            }
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, (int)k, (int)og, 1.0f,
                            dyg, (int)g->cout, w + grp * og * k, (int)k, 0.0f, dcol, (int)k);
                col2im_add(dx, dcol, g, grp, r0, nr);
            }
        }
    }
    vn__pool_free(ctx, col);
    vn__pool_free(ctx, dcol);
    return VN_OK;
}

/* ---- the op ------------------------------------------------------------------------------ */

/* Depthwise outputs are cheap to recompute (a few % of a VanillaNet step) next to what they
 * cost to keep (the input of the BatchNorm that follows): backward rebuilds them. */
void vn__conv2d_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const conv_state *st = node->state;
    vn_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
    const float *xd = vn__data(ctx, node->in[0]), *wd = vn__data(ctx, node->in[1]);
    if (!xd || !wd) return;
    if (vn__dw_forward(ctx, node->out->data, xd, wd, b ? b->data : NULL, &st->g,
                       st->relu_in) != VN_OK &&
        vn_ctx_status(ctx) == VN_OK)
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "conv2d: out of memory recomputing a depthwise output");
}

void vn__conv2d_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const conv_state *st = node->state;
    const vn__conv_geom *g = &st->g;
    vn_tensor *x = node->in[0], *w = node->in[1], *b = node->n_in > 2 ? node->in[2] : NULL;
    const float *dy = node->out->grad;
    bool need_dx = vn_tensor_requires_grad(x), need_dw = vn_tensor_requires_grad(w);
    bool dx_fresh = false, dw_fresh = false;
    float *dx = NULL, *dw = NULL;
    int rc = VN_OK;

    /* Fresh buffers may be written instead of accumulated only where the kernel writes
     * every element; the general and depthwise paths accumulate into zeroed buffers. */
    bool overwrite_ok = st->kind == VN__CONV_KIND_1X1 || st->kind == VN__CONV_KIND_PATCH ||
                        st->kind == VN__CONV_KIND_DEPTHWISE;
    if (need_dx) {
        dx = overwrite_ok ? vn__grad_uninit(ctx, x, &dx_fresh) : vn__grad(ctx, x);
        if (!dx) return;
    }
    if (need_dw) {
        dw = st->kind == VN__CONV_KIND_DEPTHWISE ? vn__grad(ctx, w)
             : overwrite_ok                  ? vn__grad_uninit(ctx, w, &dw_fresh)
                                             : vn__grad(ctx, w);
        if (!dw) return;
    }
    const float *xd = vn__data(ctx, x), *wd = vn__data(ctx, w);
    if (!xd || !wd) return;
    switch (st->kind) {
    case VN__CONV_KIND_1X1:
        rc = conv1x1_backward(ctx, dx, dx_fresh, dw, dw_fresh, dy, xd, wd, g);
        break;
    case VN__CONV_KIND_PATCH:
        if (dx || dw) rc = patch_backward(ctx, dx, dx_fresh, dw, dw_fresh, dy, xd, wd, g);
        break;
    case VN__CONV_KIND_DEPTHWISE:
        if (dx || dw) rc = vn__dw_backward(ctx, dx, dx_fresh, dw, dy, xd, wd, g, st->relu_in);
        break;
    case VN__CONV_KIND_GENERAL:
        if (dx || dw) rc = general_backward(ctx, dx, dw, dy, xd, wd, g);
        break;
    }
    if (rc != VN_OK || !vn_tensor_requires_grad(b)) return;
    float *db = vn__grad(ctx, b);
    if (!db) return;
    colsum_add(ctx, db, dy, g->n * g->ho * g->wo, g->cout);
}

/* vn_ctx_fail for the shape checks, which return bool. */
#define conv_fail(ctx, ...) (vn_ctx_fail((ctx), __VA_ARGS__), false)

/* Checks shapes and parameters; fills g. Returns false with the context error set. */
static bool conv_check(vn_ctx *ctx, const vn_tensor *x, const vn_tensor *w, const vn_tensor *b,
                       vn_conv_params p, vn__conv_geom *g)
{
    char xs[96], ws[96], bs[96];
    /* Shape strings are formatted only on the failing branch, not on every forward. */
#define XS vn_shape_str(x->ndim, x->shape, xs, sizeof xs)
#define WS vn_shape_str(w->ndim, w->shape, ws, sizeof ws)
    if (x->ndim != 4)
        return conv_fail(ctx, VN_ERR_SHAPE, "conv2d: input must be 4-D NHWC [N, H, W, C], "
                         "got %s", XS);
    if (w->ndim != 4)
        return conv_fail(ctx, VN_ERR_SHAPE, "conv2d: weight must be 4-D OHWI [Cout, KH, KW, "
                         "Cin/groups], got %s", WS);
    if (p.stride_h < 1 || p.stride_w < 1)
        return conv_fail(ctx, VN_ERR_INVALID, "conv2d: stride must be at least 1, got "
                         "(%d, %d)", p.stride_h, p.stride_w);
    if (p.pad_h < 0 || p.pad_w < 0)
        return conv_fail(ctx, VN_ERR_INVALID, "conv2d: padding must not be negative, got "
                         "(%d, %d)", p.pad_h, p.pad_w);
    if (p.groups < 1)
        return conv_fail(ctx, VN_ERR_INVALID, "conv2d: groups must be at least 1, got %d",
                         p.groups);
    for (int i = 0; i < 4; i++) {
        if (x->shape[i] < 1)
            return conv_fail(ctx, VN_ERR_SHAPE, "conv2d: input %s is empty", XS);
        if (w->shape[i] < 1)
            return conv_fail(ctx, VN_ERR_SHAPE, "conv2d: weight %s is empty", WS);
    }
    g->n = x->shape[0];
    g->h = x->shape[1];
    g->w = x->shape[2];
    g->cin = x->shape[3];
    g->cout = w->shape[0];
    g->kh = w->shape[1];
    g->kw = w->shape[2];
    g->sh = p.stride_h;
    g->sw = p.stride_w;
    g->ph = p.pad_h;
    g->pw = p.pad_w;
    g->groups = p.groups;
    if (g->cin % p.groups)
        return conv_fail(ctx, VN_ERR_SHAPE, "conv2d: groups %d does not divide the %lld input "
                         "channels of %s", p.groups, (long long)g->cin, XS);
    if (g->cout % p.groups)
        return conv_fail(ctx, VN_ERR_SHAPE, "conv2d: groups %d does not divide the %lld output "
                         "channels of weight %s", p.groups, (long long)g->cout, WS);
    if (w->shape[3] * p.groups != g->cin)
        return conv_fail(ctx, VN_ERR_SHAPE, "conv2d: input has %lld channels but weight %s "
                         "expects %lld per group with groups %d", (long long)g->cin, WS,
                         (long long)w->shape[3], p.groups);
    int64_t hp = g->h + 2 * (int64_t)g->ph, wp = g->w + 2 * (int64_t)g->pw;
    if (g->kh > hp || g->kw > wp)
        return conv_fail(ctx, VN_ERR_SHAPE, "conv2d: kernel %lldx%lld is larger than the "
                         "padded input %lldx%lld (input %s, padding (%d, %d))",
                         (long long)g->kh, (long long)g->kw, (long long)hp, (long long)wp, XS,
                         p.pad_h, p.pad_w);
    if (b && (b->ndim != 1 || b->shape[0] != g->cout))
        return conv_fail(ctx, VN_ERR_SHAPE, "conv2d: bias has shape %s, expected [%lld] for "
                         "weight %s", vn_shape_str(b->ndim, b->shape, bs, sizeof bs),
                         (long long)g->cout, WS);
    g->ho = (hp - g->kh) / g->sh + 1;
    g->wo = (wp - g->kw) / g->sw + 1;
    /* sgemm takes int sizes; a step this large would not fit in memory anyway. */
    if (g->n * g->ho * g->wo > INT32_MAX || g->n * g->h * g->w > INT32_MAX ||
        g->kh * g->kw * g->cin > INT32_MAX)
        return conv_fail(ctx, VN_ERR_UNSUPPORTED, "conv2d: input %s is too large for 32-bit "
                         "BLAS sizes", XS);
    return true;
#undef XS
#undef WS
}

static conv_kind conv_pick(const vn__conv_geom *g)
{
    bool no_pad = g->ph == 0 && g->pw == 0;
    if (g->groups == 1 && g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && no_pad)
        return VN__CONV_KIND_1X1;
    if (g->groups == 1 && g->kh == g->sh && g->kw == g->sw && no_pad) return VN__CONV_KIND_PATCH;
    if (g->groups == g->cin && g->cin == g->cout) return VN__CONV_KIND_DEPTHWISE;
    return VN__CONV_KIND_GENERAL;
}

int vn__conv2d_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    const conv_state *st = node->state;
    const vn__conv_geom *g = &st->g;
    float *y = node->out->data;
    const float *x = node->in[0]->data, *w = node->in[1]->data;
    const float *b = node->n_in > 2 ? node->in[2]->data : NULL;
    switch (st->kind) {
    case VN__CONV_KIND_1X1: conv1x1_forward(ctx, y, x, w, b, g); return VN_OK;
    case VN__CONV_KIND_PATCH: return patch_forward(ctx, y, x, w, b, g);
    case VN__CONV_KIND_DEPTHWISE: return vn__dw_forward(ctx, y, x, w, b, g, st->relu_in);
    case VN__CONV_KIND_GENERAL: return general_forward(ctx, y, x, w, b, g);
    }
    return VN_ERR_INVALID;
}

static vn_tensor *conv_common(vn_ctx *ctx, vn_tensor *x, vn_tensor *w, vn_tensor *b,
                              vn_conv_params p, bool relu_in)
{
    vn_tensor *in[3] = {x, w, b};
    if (!vn__ok(ctx, 2, in)) return NULL;
    vn__conv_geom g;
    if (!conv_check(ctx, x, w, b, p, &g)) return NULL;
    if (relu_in && conv_pick(&g) != VN__CONV_KIND_DEPTHWISE) { /* the two ops */
        vn_tensor *r = vn_relu(ctx, x);
        vn_tensor *y = r ? conv_common(ctx, r, w, b, p, false) : NULL;
        if (r) vn_release(ctx, r);
        return y;
    }
    vn_tensor *y = vn_ctx_tensor4(ctx, g.n, g.ho, g.wo, g.cout);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_CONV2D, b ? 3 : 2, in, y, sizeof(conv_state))
                      : NULL;
    if (!node) return NULL;
    conv_state *st = node->state;
    st->g = g;
    st->kind = conv_pick(&g);
    st->relu_in = relu_in;
    static const char *const kind_names[] = {
        [VN__CONV_KIND_1X1] = "1x1", [VN__CONV_KIND_PATCH] = "patch",
        [VN__CONV_KIND_DEPTHWISE] = "depthwise", [VN__CONV_KIND_GENERAL] = "general"};
    node->variant = relu_in ? "relu+depthwise" : kind_names[st->kind];
    if (node->recording) {
        vn__save(node, 0);
        vn__save(node, 1);
        if (st->kind == VN__CONV_KIND_DEPTHWISE) vn__set_recompute(node);
    }
    return vn__run(ctx, node);
}

vn_tensor *vn_conv2d(vn_ctx *ctx, vn_tensor *x, vn_tensor *w, vn_tensor *b, vn_conv_params p)
{
    return conv_common(ctx, x, w, b, p, false);
}

vn_tensor *vn_conv2d_relu(vn_ctx *ctx, vn_tensor *x, vn_tensor *w, vn_tensor *b,
                          vn_conv_params p)
{
    return conv_common(ctx, x, w, b, p, true);
}
