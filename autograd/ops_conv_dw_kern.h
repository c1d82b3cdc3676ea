/* The inner kernels of the depthwise conv (ops_conv_dw.c), written once for a vector type:
 * included there once for 8-float AVX2 vectors (names ending _8) and, where the compiler
 * targets AVX-512, once more for 16-float vectors (_16) that take a whole 16-channel block.
 * Each lane computes the same multiply-adds in the same order in both, so the two give the
 * same bytes; the wide one issues half the instructions.
 *
 * Before including, define DWK_V (the vector type), DWK_W (floats per vector), DWK_LD,
 * DWK_ST, DWK_FMA, DWK_ADD, DWK_ZERO (its unaligned load and store, fused multiply-add, add,
 * zero) and DWK_NAME(f) (the suffixed name); the end of the file undefines them. No include
 * guard: it is meant to be included more than once. */
/* T output pixels times NV vectors of channels: acc = init; for kernel rows [i0, i1) (input
 * rows hi0 + i, in the ring) and every kernel column: acc += x * w; then stored. xcol is the
 * packed column of the first pixel's window; y advances by ys per pixel, w by nb per tap.
 * Inlined with constant T and NV so the accumulators live in registers. */
static inline __attribute__((always_inline)) void
DWK_NAME(dw_tile)(float *y, int64_t ys, const float *xp, dw_ring rg, const float *wt, int64_t nb,
        dw_init init, int64_t kw, int64_t hi0, int64_t i0, int64_t i1, int64_t xcol, int64_t sw,
        const int T, const int NV)
{
    DWK_V acc[4][2];
    for (int t = 0; t < T; t++)
        for (int v = 0; v < NV; v++)
            acc[t][v] = init.accumulate ? DWK_LD(y + t * ys + DWK_W * v)
                        : init.bias     ? DWK_LD(init.bias + DWK_W * v)
                                        : DWK_ZERO();
    int64_t slot = i0 < i1 ? (hi0 + i0) % rg.slots : 0;
    for (int64_t i = i0; i < i1; i++, slot = slot + 1 == rg.slots ? 0 : slot + 1) {
        const float *xr = xp + slot * rg.prow + xcol * DW_BLOCK;
        const float *wr = wt + i * kw * nb;
        for (int64_t j = 0; j < kw; j++) {
            DWK_V wv[2];
            for (int v = 0; v < NV; v++) wv[v] = DWK_LD(wr + j * nb + DWK_W * v);
            for (int t = 0; t < T; t++) {
                const float *x = xr + (t * sw + j) * DW_BLOCK;
                for (int v = 0; v < NV; v++)
                    acc[t][v] = DWK_FMA(DWK_LD(x + DWK_W * v), wv[v], acc[t][v]);
            }
        }
    }
    for (int t = 0; t < T; t++)
        for (int v = 0; v < NV; v++) DWK_ST(y + t * ys + DWK_W * v, acc[t][v]);
}

/* Stride 1 with a small odd kernel width KW (VanillaNet's 7, and 3, 5): 8 output pixels of
 * one vector of channels, with a kernel row's KW weight vectors held in registers. Walking
 * the 8 + KW - 1 input pixels of the row once, each loaded vector feeds every output whose
 * window holds it: per kernel row 8*KW multiply-adds take 2*KW + 7 loads (the general tile
 * takes 1.25 loads per multiply-add). Fully unrolled for constant KW (8 accumulators, KW
 * weights and one input in the 16 registers). voff selects the vector within the block. */
static inline __attribute__((always_inline)) void
DWK_NAME(dw_slide)(float *y, int64_t ys, const float *xp, dw_ring rg, const float *wt, int64_t nb,
         int64_t voff, dw_init init, int64_t hi0, int64_t i0, int64_t i1, int64_t xcol,
         const int KW)
{
    DWK_V acc[DW_SLIDE_T];
    for (int t = 0; t < DW_SLIDE_T; t++)
        acc[t] = init.accumulate ? DWK_LD(y + t * ys + voff)
                 : init.bias     ? DWK_LD(init.bias + voff)
                                 : DWK_ZERO();
    int64_t slot = i0 < i1 ? (hi0 + i0) % rg.slots : 0;
    for (int64_t i = i0; i < i1; i++, slot = slot + 1 == rg.slots ? 0 : slot + 1) {
        const float *xr = xp + slot * rg.prow + xcol * DW_BLOCK + voff;
        const float *wr = wt + i * KW * nb + voff;
        DWK_V wv[9];
#pragma GCC unroll 9
        for (int j = 0; j < KW; j++) wv[j] = DWK_LD(wr + j * nb);
#pragma GCC unroll 16
        for (int q = 0; q < DW_SLIDE_T + KW - 1; q++) {
            DWK_V xv = DWK_LD(xr + q * DW_BLOCK);
#pragma GCC unroll 8
            for (int t = 0; t < DW_SLIDE_T; t++)
                if (q - t >= 0 && q - t < KW) acc[t] = DWK_FMA(xv, wv[q - t], acc[t]);
        }
    }
    for (int t = 0; t < DW_SLIDE_T; t++) DWK_ST(y + t * ys + voff, acc[t]);
}


/* TJ consecutive taps of one kernel row times NV vectors of channels:
 * pk[jj] += sum over every output pixel wo of dy[wo] * x[wo*sw + j0 + jj] (packed columns,
 * zero in the padding). Each dy vector is loaded once for the TJ taps, and the sums stay in
 * registers until the end of the row. */
static inline __attribute__((always_inline)) void
DWK_NAME(dw_grad_taps)(float *pk, int64_t nb, const float *dyr, const float *xr, int64_t wo_n, int64_t sw,
             int64_t j0, const int TJ, const int NV)
{
    DWK_V acc[4][2];
    for (int jj = 0; jj < TJ; jj++)
        for (int v = 0; v < NV; v++) acc[jj][v] = DWK_ZERO();
    for (int64_t wo = 0; wo < wo_n; wo++) {
        DWK_V d[2];
        for (int v = 0; v < NV; v++) d[v] = DWK_LD(dyr + wo * DW_BLOCK + DWK_W * v);
        const float *x = xr + (wo * sw + j0) * DW_BLOCK;
        for (int jj = 0; jj < TJ; jj++)
            for (int v = 0; v < NV; v++)
                acc[jj][v] = DWK_FMA(DWK_LD(x + jj * DW_BLOCK + DWK_W * v), d[v],
                                             acc[jj][v]);
    }
    for (int jj = 0; jj < TJ; jj++)
        for (int v = 0; v < NV; v++) {
            float *p = pk + jj * nb + DWK_W * v;
            DWK_ST(p, DWK_ADD(DWK_LD(p), acc[jj][v]));
        }
}

/* Stride 1 with kernel width KW in {3, 5, 7}: all KW taps of one kernel row for one vector
 * of channels. The KW input pixels under the current output pixel stay in registers as a
 * window that moves one pixel per step, so each step loads one dy and one new x vector for
 * KW multiply-adds. The sums run over wo in the same order as in dw_grad_taps, so the
 * result is the same to the bit. voff selects the vector within the block. */
static inline __attribute__((always_inline)) void
DWK_NAME(dw_grad_slide)(float *pk, int64_t nb, const float *dyr, const float *xr, int64_t wo_n,
              int64_t voff, const int KW)
{
    DWK_V acc[7], xw[7];
    for (int k = 0; k < KW; k++) acc[k] = DWK_ZERO();
    /* xw[(s + k) % KW] holds x[wo + s + k] during step s of a round of KW pixels. */
    for (int k = 0; k < KW - 1; k++) xw[k] = DWK_LD(xr + k * DW_BLOCK + voff);
    int64_t wo = 0;
    for (; wo + KW <= wo_n; wo += KW) {
#pragma GCC unroll 7
        for (int st = 0; st < KW; st++) {
            xw[(st + KW - 1) % KW] = DWK_LD(xr + (wo + st + KW - 1) * DW_BLOCK + voff);
            DWK_V d = DWK_LD(dyr + (wo + st) * DW_BLOCK + voff);
#pragma GCC unroll 7
            for (int k = 0; k < KW; k++) acc[k] = DWK_FMA(xw[(st + k) % KW], d, acc[k]);
        }
    }
    for (; wo < wo_n; wo++) {
        DWK_V d = DWK_LD(dyr + wo * DW_BLOCK + voff);
#pragma GCC unroll 7
        for (int k = 0; k < KW; k++)
            acc[k] = DWK_FMA(DWK_LD(xr + (wo + k) * DW_BLOCK + voff), d, acc[k]);
    }
    for (int k = 0; k < KW; k++) {
        float *p = pk + k * nb + voff;
        DWK_ST(p, DWK_ADD(DWK_LD(p), acc[k]));
    }
}

#undef DWK_V
#undef DWK_W
#undef DWK_LD
#undef DWK_ST
#undef DWK_FMA
#undef DWK_ADD
#undef DWK_ZERO
#undef DWK_NAME
