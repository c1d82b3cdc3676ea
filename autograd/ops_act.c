/* Smooth activations of the detector (Ultralytics' Conv = conv + BN + SiLU): SiLU and
 * sigmoid, element-wise on any shape.
 *
 * SiLU backward reads its input (d/dx x*s(x) = s(x) * (1 + x * (1 - s(x)))), so the output
 * can be dropped and recomputed from it; sigmoid backward reads only its output
 * (dy * y * (1 - y)), so its input may go. The fronts vn_silu and vn_sigmoid make the node;
 * the kernels are those of the rows SILU and SIGMOID of VN_OP_LIST. */
#include "autograd/ops_impl.h"

#include <math.h>

#define ACT_PAR_MIN 65536

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ---- SiLU ------------------------------------------------------------------------------- */

static void silu_kernel(float *restrict y, const float *restrict x, int64_t n)
{
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(x[i]);
}

/* dx (+)= dy * s * (1 + x * (1 - s)); dx may alias dy (in place over the output gradient). */
static void silu_grad_kernel(float *dx, const float *dy, const float *restrict x, int64_t n,
                             bool fresh)
{
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(x[i]);
        float g = dy[i] * (s * (1.0f + x[i] * (1.0f - s)));
        dx[i] = fresh ? g : dx[i] + g;
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
