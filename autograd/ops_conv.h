/* Private interface between the conv2d op (ops_conv.c) and its depthwise kernels
 * (ops_conv_dw.c). */
#ifndef VN_OPS_CONV_H
#define VN_OPS_CONV_H

#include "autograd/ops_impl.h"
#include "autograd/ops_state.h"

#include <math.h>

/* fmaf is one instruction (and vectorises) where the target has FMA; C11 mode keeps GCC
 * from contracting a * b + c on its own. */
#ifdef __FMA__
#define VN_CONV_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define VN_CONV_FMA(a, b, c) ((a) * (b) + (c))
#endif


static inline int64_t vn__ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Output positions o in [*lo, *hi) whose input position o*s - p + k lies in [0, in). */
static inline void vn__conv_tap_range(int64_t k, int64_t s, int64_t p, int64_t in, int64_t out,
                                      int64_t *lo, int64_t *hi)
{
    int64_t a = p - k, z = in - 1 + p - k;
    int64_t l = a <= 0 ? 0 : vn__ceil_div(a, s);
    int64_t h = z < 0 ? 0 : z / s + 1;
    *lo = l;
    *hi = h < out ? h : out;
}

/* A pool buffer; on failure sets the context error naming `what` and returns NULL. */
void *vn__conv_scratch(vn_ctx *ctx, size_t bytes, const char *what);

/* Depthwise (groups == cin == cout) kernels; w is OHWI [c, kh, kw, 1], b may be NULL.
 * Forward writes y. Backward: dx (when not NULL) is written when fresh, accumulated
 * otherwise; dw (when not NULL) accumulates. relu: the conv of relu(x) (vn_conv2d_relu),
 * with the ReLU applied where x is read and its mask to dx: the bytes of vn_relu then the
 * conv. */
int vn__dw_forward(vn_ctx *ctx, float *y, const float *x, const float *w, const float *b,
                   const vn__conv_geom *g, bool relu);
int vn__dw_backward(vn_ctx *ctx, float *dx, bool dx_fresh, float *dw, const float *dy,
                    const float *x, const float *w, const vn__conv_geom *g, bool relu);

#endif
