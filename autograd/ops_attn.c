/* The attention ops of C2PSA: batched matmul with optional transposes and a scale, and
 * softmax over the last dim.
 *
 * bmm runs one sgemm per batch entry (the detector's attention has B * heads entries of a
 * few hundred rows), so the result depends only on OpenBLAS and the thread count. Softmax
 * keeps its output for backward (dx = y * (dy - sum(dy * y))), never its input. The fronts
 * vn_bmm and vn_softmax make the node; the kernels are those of the rows BMM and SOFTMAX of
 * VN_OP_LIST. */
#include "autograd/ops_impl.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#define ATTN_PAR_MIN 32768

/* ---- batched matmul ------------------------------------------------------------------- */

typedef struct bmm_state {
    int64_t batch, m, n, k;
    bool ta, tb;
    float alpha;
} bmm_state;

static CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

/* c[i] = alpha * op(a[i]) op(b[i]) + beta * c[i] for every batch entry. */
static void bmm_kernel(const bmm_state *st, const float *a, const float *b, float *c)
{
    const int M = (int)st->m, N = (int)st->n, K = (int)st->k;
    for (int64_t i = 0; i < st->batch; i++)
        cblas_sgemm(CblasRowMajor, tr(st->ta), tr(st->tb), M, N, K, st->alpha,
                    a + i * st->m * st->k, st->ta ? M : K, b + i * st->k * st->n,
                    st->tb ? K : N, 0.0f, c + i * st->m * st->n, N);
}

/* With C = alpha op(A) op(B) and G = dC:
 *   d op(A) = alpha G op(B)^T,  d op(B) = alpha op(A)^T G,
 * each written in the stored orientation of A and B. */
static void bmm_grad_a(const bmm_state *st, const float *g, const float *b, float *da, float beta)
{
    const int M = (int)st->m, N = (int)st->n, K = (int)st->k;
    for (int64_t i = 0; i < st->batch; i++) {
        const float *gi = g + i * st->m * st->n, *bi = b + i * st->k * st->n;
        float *dai = da + i * st->m * st->k;
        if (!st->ta) /* dA [M, K] = G op(B)^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tr(!st->tb), M, K, N, st->alpha, gi, N, bi,
                        st->tb ? K : N, beta, dai, K);
        else         /* dA [K, M] = op(B) G^T */
            cblas_sgemm(CblasRowMajor, tr(st->tb), CblasTrans, K, M, N, st->alpha, bi,
                        st->tb ? K : N, gi, N, beta, dai, M);
    }
}

static void bmm_grad_b(const bmm_state *st, const float *g, const float *a, float *db, float beta)
{
    const int M = (int)st->m, N = (int)st->n, K = (int)st->k;
    for (int64_t i = 0; i < st->batch; i++) {
        const float *gi = g + i * st->m * st->n, *ai = a + i * st->m * st->k;
        float *dbi = db + i * st->k * st->n;
        if (!st->tb) /* dB [K, N] = op(A)^T G */
            cblas_sgemm(CblasRowMajor, tr(!st->ta), CblasNoTrans, K, N, M, st->alpha, ai,
                        st->ta ? M : K, gi, N, beta, dbi, N);
        else         /* dB [N, K] = G^T op(A) */
            cblas_sgemm(CblasRowMajor, CblasTrans, tr(st->ta), N, K, M, st->alpha, gi, N, ai,
                        st->ta ? M : K, beta, dbi, K);
    }
}

void vn__bmm_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const bmm_state *st = node->state;
    vn_tensor *a = node->in[0], *b = node->in[1];
    const float *g = node->out->grad;
    bool fresh;
    if (vn_tensor_requires_grad(a)) {
        const float *bd = vn__data(ctx, b);
        float *da = bd ? vn__grad_uninit(ctx, a, &fresh) : NULL;
        if (!da) return;
        bmm_grad_a(st, g, bd, da, fresh ? 0.0f : 1.0f);
    }
    if (vn_tensor_requires_grad(b)) {
        const float *ad = vn__data(ctx, a);
        float *db = ad ? vn__grad_uninit(ctx, b, &fresh) : NULL;
        if (!db) return;
        bmm_grad_b(st, g, ad, db, fresh ? 0.0f : 1.0f);
    }
}

int vn__bmm_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    bmm_kernel(node->state, node->in[0]->data, node->in[1]->data, node->out->data);
    return VN_OK;
}

vn_tensor *vn_bmm(vn_ctx *ctx, vn_tensor *a, vn_tensor *b, bool trans_a, bool trans_b,
                  float alpha)
{
    vn_tensor *in[2] = {a, b};
    if (!vn__ok(ctx, 2, in)) return NULL;
    char s1[96], s2[96];
    bool ok = a->ndim == 3 && b->ndim == 3 && a->shape[0] == b->shape[0];
    bmm_state st = {0};
    if (ok) {
        st = (bmm_state){a->shape[0], trans_a ? a->shape[2] : a->shape[1],
                         trans_b ? b->shape[1] : b->shape[2], trans_a ? a->shape[1] : a->shape[2],
                         trans_a, trans_b, alpha};
        ok = (trans_b ? b->shape[2] : b->shape[1]) == st.k && st.m > 0 && st.n > 0 && st.k > 0;
    }
    if (!ok)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "bmm: needs [B, M, K] x [B, K, N] (after the "
                           "transposes a%s b%s), got %s x %s", trans_a ? "^T" : "",
                           trans_b ? "^T" : "", vn_shape_str(a->ndim, a->shape, s1, sizeof s1),
                           vn_shape_str(b->ndim, b->shape, s2, sizeof s2));
    if (st.m > INT_MAX || st.n > INT_MAX || st.k > INT_MAX)
        return vn_ctx_fail(ctx, VN_ERR_UNSUPPORTED, "bmm: sizes exceed the BLAS int range");
    vn_tensor *y = vn_ctx_tensor(ctx, 3, (int64_t[]){st.batch, st.m, st.n});
    vn_node *node = y ? vn__node_new(ctx, VN_OP_BMM, 2, in, y, sizeof st) : NULL;
    if (!node) return NULL;
    *(bmm_state *)node->state = st;
    if (node->recording) { /* each gradient reads the other operand */
        if (vn_tensor_requires_grad(b)) vn__save(node, 0);
        if (vn_tensor_requires_grad(a)) vn__save(node, 1);
    }
    return vn__run(ctx, node);
}

/* ---- softmax over the last dim -------------------------------------------------------- */

typedef struct softmax_state {
    int64_t rows, c;
} softmax_state;

static void softmax_kernel(float *restrict y, const float *restrict x, int64_t rows, int64_t c)
{
#pragma omp parallel for schedule(static) if (rows * c > ATTN_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        float m = xr[0];
        for (int64_t j = 1; j < c; j++) m = xr[j] > m ? xr[j] : m;
        double sum = 0.0;
        for (int64_t j = 0; j < c; j++) {
            yr[j] = expf(xr[j] - m);
            sum += yr[j];
        }
        float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < c; j++) yr[j] *= inv;
    }
}

/* dx (+)= y * (dy - sum_j dy_j y_j); dx may alias dy (each row reads dy before writing). */
static void softmax_grad_kernel(float *dx, const float *dy, const float *restrict y,
                                int64_t rows, int64_t c, bool fresh)
{
#pragma omp parallel for schedule(static) if (rows * c > ATTN_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * c, *gr = dy + r * c;
        float *dr = dx + r * c;
        double dot = 0.0;
        for (int64_t j = 0; j < c; j++) dot += (double)gr[j] * yr[j];
        float d = (float)dot;
        for (int64_t j = 0; j < c; j++) {
            float v = yr[j] * (gr[j] - d);
            dr[j] = fresh ? v : dr[j] + v;
        }
    }
}

void vn__softmax_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const softmax_state *st = node->state;
    vn__ew_grad a;
    if (vn__ew_grad_begin(ctx, node, node->out, &a))
        softmax_grad_kernel(a.dx, a.dy, a.src, st->rows, st->c, a.fresh);
}

int vn__softmax_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    const softmax_state *st = node->state;
    softmax_kernel(node->out->data, node->in[0]->data, st->rows, st->c);
    return VN_OK;
}

vn_tensor *vn_softmax(vn_ctx *ctx, vn_tensor *x)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    int64_t c = x->shape[x->ndim - 1];
    if (c < 1) {
        char s[96];
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "softmax: empty last dim in %s",
                           vn_shape_str(x->ndim, x->shape, s, sizeof s));
    }
    vn_tensor *y = vn_ctx_tensor(ctx, x->ndim, x->shape);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_SOFTMAX, 1, &x, y, sizeof(softmax_state)) : NULL;
    if (!node) return NULL;
    *(softmax_state *)node->state = (softmax_state){x->numel / c, c};
    if (node->recording) vn__save(node, -1);
    return vn__run(ctx, node);
}
