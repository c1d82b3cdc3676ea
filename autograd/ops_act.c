/* Smooth activations of the detector (Ultralytics' Conv = conv + BN + SiLU): SiLU and
 * sigmoid, element-wise on any shape.
 *
 * SiLU backward reads its input (d/dx x*s(x) = s(x) * (1 + x * (1 - s(x)))), so the output
 * can be dropped and recomputed from it; sigmoid backward reads only its output
 * (dy * y * (1 - y)), so its input may go. The fronts vn_silu and vn_sigmoid make the node;
 * the kernels are those of the rows SILU and SIGMOID of VN_OP_LIST. */
#include "autograd/ops_impl.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define ACT_PAR_MIN 65536

/* exp(x) for x in [-80, 80], to about 2 ulp: x = n ln2 + r (Cody-Waite, |r| <= ln2 / 2), a
 * degree-6 polynomial for exp(r), times 2^n built in the exponent bits. Written so that GCC
 * vectorises the loops that call it (libm's expf is a call per element), and so that no
 * input of that range makes a denormal anywhere: a denormal operand makes x86 take a
 * microcode assist on every vector lane, which measured 10x slower than the arithmetic. */
static inline float exp_bounded(float x)
{
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* n's clamp only matters for NaN (which the comparisons send to -127): the conversion to
     * int must see a finite value; p carries the NaN to the result. */
    float nc = n > -127.0f ? n : -127.0f;
    nc = nc < 127.0f ? nc : 127.0f;
    int32_t bits = ((int32_t)nc + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* 1 / (1 + exp(-x)) with x clamped to [-80, 80]: exact 1 above, at least 1.8e-35 below
 * (where it is below float's resolution of any sum it meets). */
static inline float sigmoidf(float x)
{
    x = x < -80.0f ? -80.0f : x;
    x = x > 80.0f ? 80.0f : x;
    return 1.0f / (1.0f + exp_bounded(-x));
}

/* ---- SiLU ------------------------------------------------------------------------------- */

static void silu_kernel(float *restrict y, const float *restrict x, int64_t n)
{
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(x[i]);
}

static inline float silu_grad(float x, float dy)
{
    float s = sigmoidf(x);
    return dy * (s * (1.0f + x * (1.0f - s)));
}

/* dx (+)= dy * s * (1 + x * (1 - s)); dx may alias dy (in place over the output gradient).
 * One loop per case with pointers that do not alias, so that each vectorises. */
static void silu_grad_kernel(float *dx, const float *dy, const float *restrict x, int64_t n,
                             bool fresh)
{
    if (dx == dy) {
        float *restrict d = dx;
        if (fresh) {
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
            for (int64_t i = 0; i < n; i++) d[i] = silu_grad(x[i], d[i]);
        } else { /* dx += g(dx): the gradient read is the one being accumulated into */
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
            for (int64_t i = 0; i < n; i++) d[i] += silu_grad(x[i], d[i]);
        }
        return;
    }
    float *restrict o = dx;
    const float *restrict g = dy;
    if (fresh) {
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
        for (int64_t i = 0; i < n; i++) o[i] = silu_grad(x[i], g[i]);
    } else {
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
        for (int64_t i = 0; i < n; i++) o[i] += silu_grad(x[i], g[i]);
    }
}

void vn__silu_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    vn__ew_grad a;
    if (vn__ew_grad_begin(ctx, node, node->in[0], &a))
        silu_grad_kernel(a.dx, a.dy, a.src, node->in[0]->numel, a.fresh);
}

void vn__silu_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const float *xd = vn__data(ctx, node->in[0]);
    if (xd) silu_kernel(node->out->data, xd, node->out->numel);
}

int vn__silu_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    silu_kernel(node->out->data, node->in[0]->data, node->out->numel);
    return VN_OK;
}

vn_tensor *vn_silu(vn_ctx *ctx, vn_tensor *x)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    vn_tensor *y = vn_ctx_tensor(ctx, x->ndim, x->shape);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_SILU, 1, &x, y, 0) : NULL;
    if (!node) return NULL;
    if (node->recording) {
        vn__save(node, 0);
        vn__set_recompute(node);
    }
    return vn__run(ctx, node);
}

/* ---- sigmoid ---------------------------------------------------------------------------- */

static void sigmoid_kernel(float *restrict y, const float *restrict x, int64_t n)
{
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = sigmoidf(x[i]);
}

/* dx (+)= dy * y * (1 - y); dx may alias dy. */
static void sigmoid_grad_kernel(float *dx, const float *dy, const float *restrict y, int64_t n,
                                bool fresh)
{
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float g = dy[i] * (y[i] * (1.0f - y[i]));
        dx[i] = fresh ? g : dx[i] + g;
    }
}

void vn__sigmoid_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    vn__ew_grad a;
    if (vn__ew_grad_begin(ctx, node, node->out, &a))
        sigmoid_grad_kernel(a.dx, a.dy, a.src, node->in[0]->numel, a.fresh);
}

void vn__sigmoid_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const float *xd = vn__data(ctx, node->in[0]);
    if (xd) sigmoid_kernel(node->out->data, xd, node->out->numel);
}

int vn__sigmoid_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    sigmoid_kernel(node->out->data, node->in[0]->data, node->out->numel);
    return VN_OK;
}

vn_tensor *vn_sigmoid(vn_ctx *ctx, vn_tensor *x)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    vn_tensor *y = vn_ctx_tensor(ctx, x->ndim, x->shape);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_SIGMOID, 1, &x, y, 0) : NULL;
    if (!node) return NULL;
    if (node->recording) {
        vn__save(node, -1);
        if (vn__cheap_to_save(x)) {
            vn__save(node, 0);
            vn__set_recompute(node);
        }
    }
    return vn__run(ctx, node);
}
