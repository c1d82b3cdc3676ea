/* Depthwise conv2d kernels (groups == Cin == Cout) on NHWC activations.
 *
 * NHWC keeps the channels of a pixel contiguous, so every tap is a multiply-add of two
 * vectors along C with a per-channel weight vector. The OHWI weight [C, KH, KW, 1] is
 * rearranged once per call into channel blocks (see dw_block_weights).
 *
 * With AVX2+FMA the work runs per (image, group of blocks of 16 channels); with enough
 * images a group spans every channel, so whole rows are read and written in order. Input
 * rows are packed, as the output rows first need them, into a ring of the last KH rows per
 * block, [KH][pw + W + pw][16], with zero columns for the padding. In NHWC the pixels of one
 * channel block sit a full pixel (often a power of two such as 2 KB) apart, so a window's
 * pixels would all fall into a couple of L1 sets; packed, the window is contiguous, and with
 * the zero columns every output pixel has the same taps. Register tiles (8 pixels x 8
 * channels with a kernel row's weights held in registers for stride 1 and kernel widths
 * 3, 5, 7; 4 pixels x 16 channels otherwise) accumulate all taps before one store. Where the
 * compiler targets AVX-512, a full block of 16 channels is one 16-float vector in these
 * kernels (ops_conv_dw_kern.h holds them once for both widths): the same multiply-adds per
 * channel in the same order, so the same bytes, in half the instructions. Channels past the
 * last full vector of 8, and builds without AVX2, take the plain loops, which compute the
 * same sums.
 *
 * Large outputs leave through a staged row with streaming stores.
 *
 * Backward: for stride 1 the input gradient is the forward conv of dy with the flipped
 * kernel and padding K-1-p, so it reuses the forward kernels, in the same pass as the
 * weight gradient (each dy row is packed once for both); other strides gather per input
 * row. The weight gradient is a reduction over N*Ho*Wo per channel, done in chunks of
 * whole images fixed by the shape (never by the thread count) and added in chunk order, so
 * its bytes do not depend on the number of threads. */
#include "autograd/ops_conv.h"

#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DW_SIMD 1
#define DW_VEC 8 /* floats per vector */
#else
#define DW_SIMD 0
#define DW_VEC 1
#endif

/* Channels per block of the vector kernels (two vectors). */
#define DW_BLOCK 16
/* Outputs from this size on are written with streaming stores. */
#define DW_STREAM_BYTES ((int64_t)16 << 20)
/* At most this many chunks of images for the weight gradient. */
#define DW_CHUNKS 16

/* Channels [0, vec_channels) take the vector kernels, the rest the plain loops. */
static int64_t vec_channels(int64_t c) { return DW_SIMD ? c - c % DW_VEC : 0; }

/* Width of the channel block that starts at c0: blocks of 16 (the last one may be 8) up to
 * cv, then one block with the remaining channels. */
static int64_t block_width(int64_t c0, int64_t cv, int64_t c)
{
    return c0 < cv ? (cv - c0 < DW_BLOCK ? cv - c0 : DW_BLOCK) : c - c0;
}

/* Weights (and weight-gradient partial sums) in channel blocks: the block at c0 of width nb
 * holds tap k of channel c0 + j at c0*kk + k*nb + j, so each tap's vector is contiguous and
 * a block's taps are adjacent in memory. flip rotates the kernel by 180 degrees. */
static void dw_block_weights(float *restrict wt, const float *restrict w, int64_t c, int64_t kk,
                             int64_t cv, bool flip)
{
    for (int64_t c0 = 0; c0 < c; c0 += block_width(c0, cv, c)) {
        int64_t nb = block_width(c0, cv, c);
        for (int64_t j = 0; j < nb; j++)
            for (int64_t k = 0; k < kk; k++)
                wt[c0 * kk + (flip ? kk - 1 - k : k) * nb + j] = w[(c0 + j) * kk + k];
    }
}

/* How an output starts: from the bias (or zero), or from what it already holds. */
typedef struct dw_init {
    const float *bias; /* NULL: zero */
    bool accumulate;   /* y += conv instead of y = conv (+ bias) */
} dw_init;

/* ---- plain loops (any channel count, any target) ------------------------------------------ */

/* The ReLU of a conv of relu(x) (vn_conv2d_relu), as vn_relu computes it: x > 0 ? x : x * 0
 * (so -0, NaN and -inf give what the separate op gives). */
static inline float dw_relu(float v) { return v > 0.0f ? v : v * 0.0f; }

/* One output row (n, ho), channels [c0, c1); wt is their weight block. */
static void dw_row_plain(float *restrict yrow, const float *restrict ximg,
                         const float *restrict wt, dw_init init, const vn__conv_geom *g,
                         int64_t ho, int64_t c0, int64_t c1, bool relu)
{
    int64_t c = g->cin, nc = c1 - c0;
    if (nc <= 0) return;
    if (!init.accumulate)
        for (int64_t wo = 0; wo < g->wo; wo++) {
            float *yo = yrow + wo * c + c0;
            for (int64_t k = 0; k < nc; k++) yo[k] = init.bias ? init.bias[c0 + k] : 0.0f;
        }
    for (int64_t i = 0; i < g->kh; i++) {
        int64_t hi = ho * g->sh - g->ph + i;
        if (hi < 0 || hi >= g->h) continue;
        const float *xrow = ximg + hi * g->w * c + c0;
        for (int64_t j = 0; j < g->kw; j++) {
            const float *restrict wk = wt + (i * g->kw + j) * nc;
            int64_t lo, end;
            vn__conv_tap_range(j, g->sw, g->pw, g->w, g->wo, &lo, &end);
            for (int64_t wo = lo; wo < end; wo++) {
                float *restrict yo = yrow + wo * c + c0;
                const float *restrict xi = xrow + (wo * g->sw - g->pw + j) * c;
                if (relu)
                    for (int64_t k = 0; k < nc; k++)
                        yo[k] = VN_CONV_FMA(dw_relu(xi[k]), wk[k], yo[k]);
                else
                    for (int64_t k = 0; k < nc; k++) yo[k] = VN_CONV_FMA(xi[k], wk[k], yo[k]);
            }
        }
    }
}

/* pp[k] += dy[n, ho, wo] * x[n, hi, wi] over one output row, channels [c0, c1); pp is their
 * block of partial sums. */
static void dw_grad_row_plain(float *pp, const float *dyrow, const float *ximg,
                              const vn__conv_geom *g, int64_t ho, int64_t c0, int64_t c1,
                              bool relu)
{
    int64_t c = g->cin, nc = c1 - c0;
    if (nc <= 0) return;
    for (int64_t i = 0; i < g->kh; i++) {
        int64_t hi = ho * g->sh - g->ph + i;
        if (hi < 0 || hi >= g->h) continue;
        const float *xrow = ximg + hi * g->w * c + c0;
        for (int64_t j = 0; j < g->kw; j++) {
            float *restrict pk = pp + (i * g->kw + j) * nc;
            int64_t lo, end;
            vn__conv_tap_range(j, g->sw, g->pw, g->w, g->wo, &lo, &end);
            for (int64_t wo = lo; wo < end; wo++) {
                const float *restrict d = dyrow + wo * c + c0;
                const float *restrict xi = xrow + (wo * g->sw - g->pw + j) * c;
                if (relu)
                    for (int64_t k = 0; k < nc; k++)
                        pk[k] = VN_CONV_FMA(d[k], dw_relu(xi[k]), pk[k]);
                else
                    for (int64_t k = 0; k < nc; k++) pk[k] = VN_CONV_FMA(d[k], xi[k], pk[k]);
            }
        }
    }
}

/* ---- vector kernels ------------------------------------------------------------------------ */

#if DW_SIMD
/* Packed rows are pw + w + pw pixels of DW_BLOCK floats; a ring holds the last kh input
 * rows of each of the blocks of a group. */
typedef struct dw_ring {
    float *p;
    int64_t prow;    /* floats per packed row */
    int64_t bstride; /* floats per block: kh rows */
    int64_t slots;   /* rows in the ring (kh) */
    int64_t blocks;  /* blocks in the ring */
} dw_ring;

static dw_ring dw_ring_at(float *p, const vn__conv_geom *g, int64_t blocks)
{
    int64_t prow = (g->w + 2 * g->pw) * DW_BLOCK;
    return (dw_ring){p, prow, g->kh * prow, g->kh, blocks};
}

static int64_t dw_ring_floats(const vn__conv_geom *g, int64_t blocks)
{
    return blocks * g->kh * (g->w + 2 * g->pw) * DW_BLOCK;
}

/* Zeroes the padding columns of every row of every block, once per call: packing never
 * writes them. */
static void dw_ring_zero(dw_ring r, int64_t w, int64_t pw)
{
    for (int64_t k = 0; k < r.blocks * r.slots; k++) {
        float *row = r.p + k * r.prow;
        memset(row, 0, (size_t)(pw * DW_BLOCK) * sizeof(float));
        memset(row + (pw + w) * DW_BLOCK, 0, (size_t)(pw * DW_BLOCK) * sizeof(float));
    }
}

/* Eight floats; with relu, x > 0 ? x : x * 0 of each (the input of vn_conv2d_relu), the
 * values vn_relu gives. */
static inline __m256 dw_load8(const float *p, bool relu)
{
    __m256 v = _mm256_loadu_ps(p);
    if (!relu) return v;
    const __m256 zero = _mm256_setzero_ps();
    return _mm256_blendv_ps(_mm256_mul_ps(v, zero), v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
}

/* Copies one row of w pixels (pixel stride c; gw channels, a multiple of 8) into the
 * blocks of dst (bstride floats apart), after pw padding pixels, through the ReLU when relu.
 * Each source pixel is read as one run of gw floats. */
static void dw_pack_row(float *restrict dst, int64_t bstride, int64_t pw,
                        const float *restrict src, int64_t w, int64_t c, int64_t gw, bool relu)
{
    for (int64_t px = 0; px < w; px++) {
        const float *s = src + px * c;
        float *d = dst + (pw + px) * DW_BLOCK;
        int64_t k = 0;
        for (; k + 16 <= gw; k += 16, d += bstride) {
            _mm256_storeu_ps(d, dw_load8(s + k, relu));
            _mm256_storeu_ps(d + 8, dw_load8(s + k + 8, relu));
        }
        if (k < gw) _mm256_storeu_ps(d, dw_load8(s + k, relu));
    }
}

#define DW_SLIDE_T 8

/* The tile, slide and weight-gradient kernels, for 8-float vectors and (AVX-512) 16-float
 * ones: see ops_conv_dw_kern.h. */
#define DWK_V __m256
#define DWK_W 8
#define DWK_LD _mm256_loadu_ps
#define DWK_ST _mm256_storeu_ps
#define DWK_FMA _mm256_fmadd_ps
#define DWK_ADD _mm256_add_ps
#define DWK_ZERO _mm256_setzero_ps
#define DWK_NAME(f) f##_8
#include "autograd/ops_conv_dw_kern.h"
#if defined(__AVX512F__)
#define DW_WIDE 1
/* The 16-float kernels on (tests switch them off to compare with the 8-float ones). */
static bool dw_wide_on = true;
#define DWK_V __m512
#define DWK_W 16
#define DWK_LD _mm512_loadu_ps
#define DWK_ST _mm512_storeu_ps
#define DWK_FMA _mm512_fmadd_ps
#define DWK_ADD _mm512_add_ps
#define DWK_ZERO _mm512_setzero_ps
#define DWK_NAME(f) f##_16
#include "autograd/ops_conv_dw_kern.h"
#else
#define DW_WIDE 0
#endif

/* Copies a staged row of a group (w pixels of gw floats) to y (pixel stride c, 32-byte
 * aligned) with streaming stores: whole lines in order, so the stores combine into full
 * lines and y is not first read into the cache. With the group spanning every channel the
 * row is one contiguous run. */
static void dw_stream_out(float *y, int64_t c, const float *stage, int64_t w, int64_t gw)
{
    for (int64_t px = 0; px < w; px++)
        for (int64_t k = 0; k < gw; k += 8)
            _mm256_stream_ps(y + px * c + k, _mm256_loadu_ps(stage + px * gw + k));
}

/* A full block of 16 channels is one 16-float vector with AVX-512, two 8-float ones
 * otherwise; a block of 8 is one 8-float vector. */
#if DW_WIDE
#define DW_SLIDE(KW)                                                                          \
    do {                                                                                      \
        if (nb == 16 && dw_wide_on)                                                           \
            dw_slide_16(yo, ys, xb, rg, wb, nb, 0, bi, hi0, i0, i1, wo, KW);                   \
        else                                                                                  \
            for (int64_t v = 0; v < nb; v += 8)                                               \
                dw_slide_8(yo, ys, xb, rg, wb, nb, v, bi, hi0, i0, i1, wo, KW);                \
    } while (0)
#define DW_TILE(T)                                                                            \
    do {                                                                                      \
        if (nb == 16 && dw_wide_on)                                                           \
            dw_tile_16(yo, ys, xb, rg, wb, nb, bi, g->kw, hi0, i0, i1, wo * g->sw, g->sw, T, 1); \
        else if (nb == 16)                                                                    \
            dw_tile_8(yo, ys, xb, rg, wb, nb, bi, g->kw, hi0, i0, i1, wo * g->sw, g->sw, T, 2); \
        else dw_tile_8(yo, ys, xb, rg, wb, nb, bi, g->kw, hi0, i0, i1, wo * g->sw, g->sw, T, 1); \
    } while (0)
#else
#define DW_SLIDE(KW)                                                                          \
    do {                                                                                      \
        for (int64_t v = 0; v < nb; v += 8)                                                   \
            dw_slide_8(yo, ys, xb, rg, wb, nb, v, bi, hi0, i0, i1, wo, KW);                    \
    } while (0)
#define DW_TILE(T)                                                                            \
    do {                                                                                      \
        if (nb == 16)                                                                         \
            dw_tile_8(yo, ys, xb, rg, wb, nb, bi, g->kw, hi0, i0, i1, wo * g->sw, g->sw, T, 2); \
        else dw_tile_8(yo, ys, xb, rg, wb, nb, bi, g->kw, hi0, i0, i1, wo * g->sw, g->sw, T, 1); \
    } while (0)
#endif

/* Output row ho reads input rows hi0 + i for i in [*i0, *i1). */
static void dw_row_span(const vn__conv_geom *g, int64_t ho, int64_t *hi0, int64_t *i0,
                        int64_t *i1)
{
    *hi0 = ho * g->sh - g->ph;
    *i0 = *hi0 < 0 ? -*hi0 : 0;
    *i1 = g->h - *hi0 < g->kh ? g->h - *hi0 : g->kh;
    if (*i1 < *i0) *i1 = *i0;
}

/* Packs rows [*next, upto) of an image (already offset to the group's first channel) into
 * the ring, skipping rows below `from`, which no output row needs any more. */
static void dw_ring_fill(dw_ring rg, int64_t *next, int64_t from, int64_t upto,
                         const float *img, int64_t w, int64_t pw, int64_t c, int64_t gw,
                         bool relu)
{
    if (*next < from) *next = from;
    for (; *next < upto; (*next)++)
        dw_pack_row(rg.p + (*next % rg.slots) * rg.prow, rg.bstride, pw, img + *next * w * c, w,
                    c, gw, relu);
}

/* Output row ho of one image for the channels [c0, c0 + gw) of a group (gw a multiple of 8),
 * from the input rows in the ring. With a stage ([wo][gw]), the row goes through it and out
 * with streaming stores. */
static void dw_conv_row(float *yimg, const float *wt, dw_init init, const vn__conv_geom *g,
                        dw_ring rg, float *stage, int64_t c0, int64_t gw, int64_t ho)
{
    int64_t c = g->cin, kk = g->kh * g->kw, hi0, i0, i1;
    dw_row_span(g, ho, &hi0, &i0, &i1);
    for (int64_t b0 = 0; b0 < gw; b0 += DW_BLOCK) {
        int64_t nb = gw - b0 < DW_BLOCK ? gw - b0 : DW_BLOCK;
        const float *xb = rg.p + (b0 / DW_BLOCK) * rg.bstride;
        const float *wb = wt + (c0 + b0) * kk;
        dw_init bi = {init.bias ? init.bias + c0 + b0 : NULL, init.accumulate};
        float *yrow = stage ? stage + b0 : yimg + ho * g->wo * c + c0 + b0;
        int64_t ys = stage ? gw : c;
        int64_t wo = 0;
        if (g->sw == 1 && (g->kw == 3 || g->kw == 5 || g->kw == 7))
            for (; wo + DW_SLIDE_T <= g->wo; wo += DW_SLIDE_T) {
                float *yo = yrow + wo * ys;
                switch (g->kw) {
                case 3: DW_SLIDE(3); break;
                case 5: DW_SLIDE(5); break;
                default: DW_SLIDE(7); break;
                }
            }
        for (; wo + 4 <= g->wo; wo += 4) {
            float *yo = yrow + wo * ys;
            DW_TILE(4);
        }
        for (; wo + 2 <= g->wo; wo += 2) {
            float *yo = yrow + wo * ys;
            DW_TILE(2);
        }
        for (; wo < g->wo; wo++) {
            float *yo = yrow + wo * ys;
            DW_TILE(1);
        }
    }
    if (stage) dw_stream_out(yimg + ho * g->wo * c + c0, c, stage, g->wo, gw);
}
#undef DW_TILE
#undef DW_SLIDE


#if DW_WIDE
#define DW_GRAD(TJ)                                                                         \
    do {                                                                                    \
        if (nb == 16 && dw_wide_on) dw_grad_taps_16(pk, nb, dyr, xr, g->wo, g->sw, j0, TJ, 1); \
        else if (nb == 16) dw_grad_taps_8(pk, nb, dyr, xr, g->wo, g->sw, j0, TJ, 2);         \
        else dw_grad_taps_8(pk, nb, dyr, xr, g->wo, g->sw, j0, TJ, 1);                       \
    } while (0)
#define DW_GRAD_SLIDE(KW)                                                                   \
    do {                                                                                    \
        if (nb == 16 && dw_wide_on) dw_grad_slide_16(pk, nb, dyr, xr, g->wo, 0, KW);         \
        else                                                                                \
            for (int64_t v = 0; v < nb; v += 8) dw_grad_slide_8(pk, nb, dyr, xr, g->wo, v, KW); \
    } while (0)
#else
#define DW_GRAD(TJ)                                                                         \
    do {                                                                                    \
        if (nb == 16) dw_grad_taps_8(pk, nb, dyr, xr, g->wo, g->sw, j0, TJ, 2);              \
        else dw_grad_taps_8(pk, nb, dyr, xr, g->wo, g->sw, j0, TJ, 1);                       \
    } while (0)
#define DW_GRAD_SLIDE(KW)                                                                   \
    do {                                                                                    \
        for (int64_t v = 0; v < nb; v += 8) dw_grad_slide_8(pk, nb, dyr, xr, g->wo, v, KW);  \
    } while (0)
#endif

/* pp += the taps of output row ho of one image for the channels [c0, c0 + gw) of a group;
 * pp is the partial sums of channel c0's block. The input rows are in the ring; dyp is the
 * dy row packed (block b at dyp + b * dstride, DW_BLOCK floats per pixel). */
static void dw_grad_row(float *pp, const float *dyp, int64_t dstride, const vn__conv_geom *g,
                        dw_ring rg, int64_t gw, int64_t ho)
{
    int64_t kk = g->kh * g->kw, hi0, i0, i1;
    dw_row_span(g, ho, &hi0, &i0, &i1);
    for (int64_t b0 = 0; b0 < gw; b0 += DW_BLOCK) {
        int64_t nb = gw - b0 < DW_BLOCK ? gw - b0 : DW_BLOCK;
        const float *dyr = dyp + (b0 / DW_BLOCK) * dstride;
        float *pb = pp + b0 * kk;
        int64_t slot = i0 < i1 ? (hi0 + i0) % rg.slots : 0;
        for (int64_t i = i0; i < i1; i++, slot = slot + 1 == rg.slots ? 0 : slot + 1) {
            const float *xr = rg.p + (b0 / DW_BLOCK) * rg.bstride + slot * rg.prow;
            if (g->sw == 1 && (g->kw == 3 || g->kw == 5 || g->kw == 7)) {
                float *pk = pb + i * g->kw * nb;
                if (g->kw == 3) DW_GRAD_SLIDE(3);
                else if (g->kw == 5) DW_GRAD_SLIDE(5);
                else DW_GRAD_SLIDE(7);
                continue;
            }
            for (int64_t j0 = 0; j0 < g->kw; j0 += 4) {
                float *pk = pb + (i * g->kw + j0) * nb;
                switch (g->kw - j0) {
                case 1: DW_GRAD(1); break;
                case 2: DW_GRAD(2); break;
                case 3: DW_GRAD(3); break;
                default: DW_GRAD(4); break;
                }
            }
        }
    }
}
#undef DW_GRAD
#undef DW_GRAD_SLIDE
#endif

void vn_testing_dw_wide(bool on)
{
#if DW_SIMD && DW_WIDE
    dw_wide_on = on;
#else
    (void)on;
#endif
}

/* ---- drivers ------------------------------------------------------------------------------- */

/* Work split shared by the drivers: chunks of whole images for the weight gradient (at most
 * DW_CHUNKS, fixed by the shape), and groups of channel blocks over the vector channels.
 * Tasks are (image or chunk, group); groups are as wide as leaves two tasks per thread, so
 * that with enough images a task spans every channel and reads and writes whole rows. The
 * grouping depends on the thread count, but no sum does: each channel's weight-gradient sum
 * runs over its chunk in the same order in any group. */
typedef struct dw_plan {
    int64_t c, cv, kk, total;    /* channels, vector channels, taps, kk * c */
    int64_t gsize, n_grp;        /* channels per group (a multiple of DW_BLOCK), groups */
    int64_t per_chunk, n_chunks; /* images per chunk, chunks */
} dw_plan;

static dw_plan dw_plan_of(const vn__conv_geom *g, int64_t units)
{
    dw_plan p;
    p.c = g->cin;
    p.cv = vec_channels(p.c);
    p.kk = g->kh * g->kw;
    p.total = p.kk * p.c;
    p.per_chunk = vn__ceil_div(g->n, DW_CHUNKS);
    p.n_chunks = vn__ceil_div(g->n, p.per_chunk);
    if (units == 0) units = p.n_chunks;
    int64_t want = vn__ceil_div(2 * (int64_t)vn_par_threads(), units);
    int64_t n_blk = vn__ceil_div(p.cv, DW_BLOCK);
    if (want > n_blk) want = n_blk;
    if (want < 1) want = 1;
    p.gsize = vn__ceil_div(n_blk, want) * DW_BLOCK;
    p.n_grp = p.cv ? vn__ceil_div(p.cv, p.gsize) : 0;
    return p;
}

#if DW_SIMD
/* Large outputs are written with streaming stores through a staged row: they would not stay
 * in the cache anyway, and this spares reading them in first. */
static bool dw_stream_ok(const float *y, dw_init init, const vn__conv_geom *g)
{
    return !init.accumulate && g->cin % 8 == 0 && ((uintptr_t)y & 31) == 0 &&
           g->n * g->ho * g->wo * g->cin * (int64_t)sizeof(float) >= DW_STREAM_BYTES;
}

/* Task k of a weight-gradient pass: images [n0, n1) of one chunk and the channel group
 * [c0, c0 + gw), whose partial sums pp (zeroed here) belong to that chunk. */
typedef struct dw_task {
    float *pp;
    int64_t c0, gw, n0, n1;
} dw_task;

static dw_task dw_task_at(float *part, const dw_plan *pl, int64_t n_img, int64_t k)
{
    dw_task tk;
    int64_t ch = k / pl->n_grp;
    tk.c0 = (k % pl->n_grp) * pl->gsize;
    tk.gw = pl->cv - tk.c0 < pl->gsize ? pl->cv - tk.c0 : pl->gsize;
    tk.pp = part + ch * pl->total + tk.c0 * pl->kk;
    memset(tk.pp, 0, (size_t)(pl->kk * tk.gw) * sizeof(float));
    tk.n0 = ch * pl->per_chunk;
    tk.n1 = (ch + 1) * pl->per_chunk < n_img ? (ch + 1) * pl->per_chunk : n_img;
    return tk;
}
#endif

/* The plain loops for channels [cv, c) of a conv, in parallel over output rows. */
static void dw_conv_tail(float *y, const float *x, const float *wt, dw_init init,
                         const vn__conv_geom *g, const dw_plan *pl, bool relu)
{
    if (pl->cv == pl->c) return;
    int64_t rows = g->n * g->ho;
#pragma omp parallel for schedule(static) if (rows * g->wo * pl->total > VN_PAR_MIN_MACS)
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = r / g->ho, ho = r % g->ho;
        dw_row_plain(y + r * g->wo * pl->c, x + n * g->h * g->w * pl->c, wt + pl->cv * pl->kk,
                     init, g, ho, pl->cv, pl->c, relu);
    }
}

/* The plain loops for channels [cv, c) of the weight gradient, per chunk of images. */
static void dw_grad_tail(float *part, const float *dy, const float *x, const vn__conv_geom *g,
                         const dw_plan *pl, bool relu)
{
    if (pl->cv == pl->c) return;
    int64_t c = pl->c, cv = pl->cv;
#pragma omp parallel for schedule(static) \
    if (g->n * g->ho * g->wo * pl->total > VN_PAR_MIN_MACS)
    for (int64_t ch = 0; ch < pl->n_chunks; ch++) {
        float *pp = part + ch * pl->total + cv * pl->kk;
        memset(pp, 0, (size_t)(pl->kk * (c - cv)) * sizeof(float));
        int64_t n1 = (ch + 1) * pl->per_chunk < g->n ? (ch + 1) * pl->per_chunk : g->n;
        for (int64_t n = ch * pl->per_chunk; n < n1; n++)
            for (int64_t ho = 0; ho < g->ho; ho++)
                dw_grad_row_plain(pp, dy + (n * g->ho + ho) * g->wo * c, x + n * g->h * g->w * c,
                                  g, ho, cv, c, relu);
    }
}

typedef struct {
    float *part;
    int64_t total, n_chunks;
} grad_sum_job;

/* part[0] += part[ch] for ch = 1, 2, ... in order, over the blocks [b0, b1) of 1024 floats. */
static void grad_sum_blocks(void *arg, int64_t b0, int64_t b1, int tid)
{
    (void)tid;
    const grad_sum_job *J = arg;
    const int64_t total = J->total;
    for (int64_t e0 = b0 * 1024; e0 < b1 * 1024 && e0 < total; e0 += 1024) {
        int64_t e1 = e0 + 1024 < total ? e0 + 1024 : total;
        for (int64_t ch = 1; ch < J->n_chunks; ch++) {
            const float *restrict src = J->part + ch * total;
            float *restrict dst = J->part;
            for (int64_t e = e0; e < e1; e++) dst[e] += src[e];
        }
    }
}

/* dw += the chunk partials, added in chunk order, unblocked into OHWI. */
static void dw_grad_reduce(float *dw, float *part, const dw_plan *pl)
{
    int64_t total = pl->total, n_chunks = pl->n_chunks;
    grad_sum_job J = {part, total, n_chunks};
    vn_par_for(vn_chunk_count(total, 1024), n_chunks * total > VN_PAR_MIN_MACS, grad_sum_blocks,
               &J);
    for (int64_t c0 = 0; c0 < pl->c; c0 += block_width(c0, pl->cv, pl->c)) {
        int64_t nb = block_width(c0, pl->cv, pl->c);
        for (int64_t j = 0; j < nb; j++)
            for (int64_t k = 0; k < pl->kk; k++)
                dw[(c0 + j) * pl->kk + k] += part[c0 * pl->kk + k * nb + j];
    }
}

#if DW_SIMD
/* The tasks of dw_conv: image t / n_grp, channel group t % n_grp, each thread with its own
 * ring (and staged row) in `pack`. */
typedef struct {
    float *y, *pack;
    const float *x, *wt;
    dw_init init;
    const vn__conv_geom *g;
    const dw_plan *pl;
    int64_t nblk, rslice, slice;
    bool stream, relu;
} dw_conv_job;

static void dw_conv_tasks(void *arg, int64_t t0, int64_t t1, int tid)
{
    const dw_conv_job *J = arg;
    const vn__conv_geom *g = J->g;
    const dw_plan *pl = J->pl;
    float *mine = J->pack + tid * J->slice;
    dw_ring rg = dw_ring_at(mine, g, J->nblk);
    dw_ring_zero(rg, g->w, g->pw);
    for (int64_t t = t0; t < t1; t++) {
        int64_t n = t / pl->n_grp, c0 = (t % pl->n_grp) * pl->gsize;
        int64_t gw = pl->cv - c0 < pl->gsize ? pl->cv - c0 : pl->gsize, next = 0;
        const float *ximg = J->x + n * g->h * g->w * pl->c + c0;
        for (int64_t ho = 0; ho < g->ho; ho++) {
            int64_t hi0, i0, i1;
            dw_row_span(g, ho, &hi0, &i0, &i1);
            dw_ring_fill(rg, &next, hi0 + i0, hi0 + i1, ximg, g->w, g->pw, pl->c, gw, J->relu);
            dw_conv_row(J->y + n * g->ho * g->wo * pl->c, J->wt, J->init, g, rg,
                        J->stream ? mine + J->rslice : NULL, c0, gw, ho);
        }
    }
    if (J->stream) _mm_sfence();
}
#endif

/* y = conv(x, wt) (+ init). */
static int dw_conv(vn_ctx *ctx, float *y, const float *x, const float *wt, dw_init init,
                   const vn__conv_geom *g, bool relu)
{
    dw_plan pl = dw_plan_of(g, g->n);
#if DW_SIMD
    if (pl.cv > 0) {
        int64_t nblk = pl.gsize / DW_BLOCK, rslice = dw_ring_floats(g, nblk);
        int64_t slice = rslice + g->wo * pl.gsize;
        int nt = vn_par_threads();
        float *pack = vn__conv_scratch(ctx, (size_t)(nt * slice) * sizeof(float),
                                       "depthwise packing buffers");
        if (!pack) return VN_ERR_NOMEM;
        dw_conv_job J = {y, pack, x, wt, init, g, &pl, nblk, rslice, slice,
                         dw_stream_ok(y, init, g), relu};
        vn_par_for(g->n * pl.n_grp, g->n * g->ho * g->wo * pl.total > VN_PAR_MIN_MACS,
                   dw_conv_tasks, &J);
        vn__pool_free(ctx, pack);
    }
#else
    (void)ctx;
#endif
    dw_conv_tail(y, x, wt, init, g, &pl, relu);
    return VN_OK;
}

int vn__dw_forward(vn_ctx *ctx, float *y, const float *x, const float *w, const float *b,
                   const vn__conv_geom *g, bool relu)
{
    int64_t c = g->cin, kk = g->kh * g->kw;
    float *wt = vn__conv_scratch(ctx, (size_t)(kk * c) * sizeof(float), "depthwise weights");
    if (!wt) return VN_ERR_NOMEM;
    dw_block_weights(wt, w, c, kk, vec_channels(c), false);
    int rc = dw_conv(ctx, y, x, wt, (dw_init){b, false}, g, relu);
    vn__pool_free(ctx, wt);
    return rc;
}

/* Any stride: dx[n, hi] gathers dy[n, ho] * w over the taps that reach it, in parallel over
 * input rows so that no two threads write the same row. wt is one block [kk][c]. */
static void dw_dx_gather(float *dx, bool fresh, const float *dy, const float *wt,
                         const vn__conv_geom *g)
{
    int64_t c = g->cin, rows = g->n * g->h;
#pragma omp parallel for schedule(static) \
    if (rows * g->w * c * g->kh * g->kw > VN_PAR_MIN_MACS)
    for (int64_t t = 0; t < rows; t++) {
        int64_t n = t / g->h, hi = t % g->h;
        float *dxrow = dx + t * g->w * c;
        if (fresh) memset(dxrow, 0, (size_t)(g->w * c) * sizeof(float));
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t num = hi + g->ph - i;
            if (num < 0 || num % g->sh) continue;
            int64_t ho = num / g->sh;
            if (ho >= g->ho) continue;
            const float *dyrow = dy + (n * g->ho + ho) * g->wo * c;
            for (int64_t j = 0; j < g->kw; j++) {
                const float *restrict wk = wt + (i * g->kw + j) * c;
                int64_t lo, end;
                vn__conv_tap_range(j, g->sw, g->pw, g->w, g->wo, &lo, &end);
                for (int64_t wo = lo; wo < end; wo++) {
                    float *restrict d = dxrow + (wo * g->sw - g->pw + j) * c;
                    const float *restrict s = dyrow + wo * c;
                    for (int64_t k = 0; k < c; k++) d[k] = VN_CONV_FMA(s[k], wk[k], d[k]);
                }
            }
        }
    }
}

#if DW_SIMD
/* The tasks of dw_grad_vec (dw_task_at), each thread with its own ring and packed dy row. */
typedef struct {
    float *part, *pack;
    const float *dy, *x;
    const vn__conv_geom *g;
    const dw_plan *pl;
    int64_t nblk, xslice, dstride, slice;
    bool relu;
} dw_grad_job;

static void dw_grad_tasks(void *arg, int64_t t0, int64_t t1, int tid)
{
    const dw_grad_job *J = arg;
    const vn__conv_geom *g = J->g;
    const int64_t c = J->pl->c;
    float *mine = J->pack + tid * J->slice, *dyp = mine + J->xslice;
    dw_ring rg = dw_ring_at(mine, g, J->nblk);
    dw_ring_zero(rg, g->w, g->pw);
    for (int64_t t = t0; t < t1; t++) {
        dw_task tk = dw_task_at(J->part, J->pl, g->n, t);
        int64_t c0 = tk.c0, gw = tk.gw;
        for (int64_t n = tk.n0; n < tk.n1; n++) {
            const float *ximg = J->x + n * g->h * g->w * c + c0;
            const float *dyimg = J->dy + n * g->ho * g->wo * c + c0;
            int64_t next = 0;
            for (int64_t ho = 0; ho < g->ho; ho++) {
                int64_t hi0, i0, i1;
                dw_row_span(g, ho, &hi0, &i0, &i1);
                dw_ring_fill(rg, &next, hi0 + i0, hi0 + i1, ximg, g->w, g->pw, c, gw, J->relu);
                dw_pack_row(dyp, J->dstride, 0, dyimg + ho * g->wo * c, g->wo, c, gw, false);
                dw_grad_row(tk.pp, dyp, J->dstride, g, rg, gw, ho);
            }
        }
    }
}
#endif

/* The weight gradient's vector channels into the chunk partials, when dx is not fused. */
static int dw_grad_vec(vn_ctx *ctx, float *part, const float *dy, const float *x,
                       const vn__conv_geom *g, const dw_plan *pl, bool relu)
{
#if DW_SIMD
    if (pl->cv == 0) return VN_OK;
    int64_t tasks = pl->n_chunks * pl->n_grp, nblk = pl->gsize / DW_BLOCK;
    int64_t xslice = dw_ring_floats(g, nblk), dstride = g->wo * DW_BLOCK;
    int64_t slice = xslice + nblk * dstride;
    int nt = vn_par_threads();
    float *pack = vn__conv_scratch(ctx, (size_t)(nt * slice) * sizeof(float),
                                   "depthwise packing buffers");
    if (!pack) return VN_ERR_NOMEM;
    dw_grad_job J = {part, pack, dy, x, g, pl, nblk, xslice, dstride, slice, relu};
    vn_par_for(tasks, g->n * g->ho * g->wo * pl->total > VN_PAR_MIN_MACS, dw_grad_tasks, &J);
    vn__pool_free(ctx, pack);
#else
    (void)ctx, (void)part, (void)dy, (void)x, (void)g, (void)pl, (void)relu;
#endif
    return VN_OK;
}

#if DW_SIMD
/* The tasks of dw_backward_fused (dw_task_at), each thread with its own two rings and staged
 * row. */
typedef struct {
    float *dx, *part, *pack;
    dw_init dx_init;
    const float *wtf, *dy, *x;
    const vn__conv_geom *g, *t;
    const dw_plan *pl;
    int64_t nblk, xslice, dslice, slice;
    bool stream, relu;
} dw_fused_job;

static void dw_fused_tasks(void *arg, int64_t k0, int64_t k1, int tid)
{
    const dw_fused_job *J = arg;
    const vn__conv_geom *g = J->g, *t = J->t;
    const int64_t c = J->pl->c;
    float *mine = J->pack + tid * J->slice;
    dw_ring xr = dw_ring_at(mine, g, J->nblk), dr = dw_ring_at(mine + J->xslice, t, J->nblk);
    float *stage = J->stream ? mine + J->xslice + J->dslice : NULL;
    dw_ring_zero(xr, g->w, g->pw);
    dw_ring_zero(dr, t->w, t->pw);
    for (int64_t k = k0; k < k1; k++) {
        dw_task tk = dw_task_at(J->part, J->pl, g->n, k);
        int64_t c0 = tk.c0, gw = tk.gw;
        for (int64_t n = tk.n0; n < tk.n1; n++) {
            const float *ximg = J->x + n * g->h * g->w * c + c0;
            const float *dyimg = J->dy + n * g->ho * g->wo * c + c0;
            int64_t next_x = 0, next_dy = 0;
            for (int64_t hi = 0; hi < t->ho; hi++) {
                int64_t h0, i0, i1;
                dw_row_span(t, hi, &h0, &i0, &i1);
                /* With pad <= kernel - 1, the dx rows need every dy row, in order. */
                for (; next_dy < h0 + i1; next_dy++) {
                    int64_t r = next_dy, s0, j0, j1;
                    dw_pack_row(dr.p + (r % dr.slots) * dr.prow, dr.bstride, t->pw,
                                dyimg + r * g->wo * c, g->wo, c, gw, false);
                    dw_row_span(g, r, &s0, &j0, &j1);
                    dw_ring_fill(xr, &next_x, s0 + j0, s0 + j1, ximg, g->w, g->pw, c, gw,
                                 J->relu);
                    dw_grad_row(tk.pp, dr.p + (r % dr.slots) * dr.prow + t->pw * DW_BLOCK,
                                dr.bstride, g, xr, gw, r);
                }
                dw_conv_row(J->dx + n * g->h * g->w * c, J->wtf, J->dx_init, t, dr, stage, c0,
                            gw, hi);
            }
        }
    }
    if (J->stream) _mm_sfence();
}

/* Stride 1, both gradients: dx = conv(dy, rot180(w)) over geometry t, and the weight
 * gradient, in one pass per (chunk of images, group of channels). Each dy row is packed
 * once, into the dx conv's ring (with its zero columns), and feeds the weight gradient's
 * row there too, so dy is read from memory once instead of twice. */
static int dw_backward_fused(vn_ctx *ctx, float *dx, dw_init dx_init, const float *wtf,
                             float *part, const float *dy, const float *x,
                             const vn__conv_geom *g, const vn__conv_geom *t, const dw_plan *pl,
                             bool relu)
{
    int64_t tasks = pl->n_chunks * pl->n_grp, nblk = pl->gsize / DW_BLOCK;
    int64_t xslice = dw_ring_floats(g, nblk), dslice = dw_ring_floats(t, nblk);
    int64_t slice = xslice + dslice + t->wo * pl->gsize;
    int nt = vn_par_threads();
    float *pack = vn__conv_scratch(ctx, (size_t)(nt * slice) * sizeof(float),
                                   "depthwise packing buffers");
    if (!pack) return VN_ERR_NOMEM;
    dw_fused_job J = {dx, part, pack, dx_init, wtf, dy, x, g, t, pl, nblk, xslice, dslice, slice,
                      dw_stream_ok(dx, dx_init, t), relu};
    vn_par_for(tasks, g->n * g->ho * g->wo * pl->total > VN_PAR_MIN_MACS, dw_fused_tasks, &J);
    vn__pool_free(ctx, pack);
    return VN_OK;
}
#endif

/* dx (+)= the gradient at relu(x) taken back through the ReLU (vn_relu's backward: the mask
 * of x > 0, the same floats). t holds that gradient; it is dx itself when dx is fresh. */
typedef struct {
    float *dx;
    const float *t, *x;
    bool fresh;
} relu_mask_job;

static void relu_mask_range(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const relu_mask_job *J = arg;
    float *dx = J->dx;
    const float *t = J->t, *x = J->x;
    if (J->fresh)
        for (int64_t i = lo; i < hi; i++) dx[i] = x[i] > 0.0f ? dx[i] : dx[i] * 0.0f;
    else
        for (int64_t i = lo; i < hi; i++) dx[i] += x[i] > 0.0f ? t[i] : t[i] * 0.0f;
}

static void dw_relu_mask(float *dx, const float *t, const float *x, int64_t n, bool fresh)
{
    relu_mask_job J = {dx, t, x, fresh};
    vn_par_for(n, n >= VN_PAR_MIN, relu_mask_range, &J);
}

int vn__dw_backward(vn_ctx *ctx, float *dx, bool dx_fresh, float *dw, const float *dy,
                    const float *x, const float *w, const vn__conv_geom *g, bool relu)
{
    dw_plan pl = dw_plan_of(g, 0);
    /* For stride 1, dx = conv(dy, rot180(w)) with padding K-1-p: its output is H x W. */
    bool as_conv = g->sh == 1 && g->sw == 1 && g->ph <= g->kh - 1 && g->pw <= g->kw - 1;
    vn__conv_geom t = *g;
    t.h = g->ho;
    t.w = g->wo;
    t.ho = g->h;
    t.wo = g->w;
    t.ph = g->kh - 1 - g->ph;
    t.pw = g->kw - 1 - g->pw;
    /* With the ReLU the kernels write the gradient at relu(x), fresh: into dx when dx is
     * fresh (masked in place after), else into a scratch that is masked onto dx. */
    int64_t nx = g->n * g->h * g->w * g->cin;
    float *dxk = dx, *wt = NULL, *part = NULL;
    bool fresh = dx_fresh;
    if (dx && relu && !dx_fresh) {
        dxk = vn__conv_scratch(ctx, (size_t)nx * sizeof(float), "depthwise ReLU gradient");
        if (!dxk) return VN_ERR_NOMEM;
        fresh = true;
    }
    dw_init dx_init = {NULL, !fresh};
    int rc = VN_ERR_NOMEM;
    if (dx) {
        wt = vn__conv_scratch(ctx, (size_t)pl.total * sizeof(float), "depthwise weights");
        if (!wt) goto out;
        /* The gather form reads the weights as one block [kk][c]. */
        dw_block_weights(wt, w, pl.c, pl.kk, as_conv ? pl.cv : 0, as_conv);
    }
    if (dw) {
        part = vn__conv_scratch(ctx, (size_t)(pl.n_chunks * pl.total) * sizeof(float),
                                "depthwise weight-gradient partial sums");
        if (!part) goto out;
    }
    rc = VN_OK;
#if DW_SIMD
    if (dx && dw && as_conv && pl.cv > 0) {
        rc = dw_backward_fused(ctx, dxk, dx_init, wt, part, dy, x, g, &t, &pl, relu);
        if (rc != VN_OK) goto out;
        dw_conv_tail(dxk, dy, wt, dx_init, &t, &pl, false);
        dw_grad_tail(part, dy, x, g, &pl, relu);
        dw_grad_reduce(dw, part, &pl);
        goto mask;
    }
#endif
    if (dx && as_conv) rc = dw_conv(ctx, dxk, dy, wt, dx_init, &t, false);
    else if (dx) dw_dx_gather(dxk, fresh, dy, wt, g);
    if (rc == VN_OK && dw) {
        rc = dw_grad_vec(ctx, part, dy, x, g, &pl, relu);
        if (rc != VN_OK) goto out;
        dw_grad_tail(part, dy, x, g, &pl, relu);
        dw_grad_reduce(dw, part, &pl);
    }
#if DW_SIMD
mask:
#endif
    if (rc == VN_OK && dx && relu) dw_relu_mask(dx, dxk, x, nx, dx_fresh);
out:
    vn__pool_free(ctx, part);
    vn__pool_free(ctx, wt);
    if (dxk != dx) vn__pool_free(ctx, dxk);
    return rc;
}
