/* Dense ops through OpenBLAS: matmul [M, K] x [K, N] and linear x w^T + b.
 * Backward is two sgemms (plus a deterministic column sum for the bias); a fresh input
 * gradient is written by sgemm with beta 0 instead of being zeroed and accumulated. */
#include "autograd/ops_impl.h"
#include "autograd/ops_state.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* cblas takes int sizes. */
static bool blas_dims_ok(vn_ctx *ctx, const char *name, int64_t a, int64_t b, int64_t c)
{
    if (a > INT_MAX || b > INT_MAX || c > INT_MAX) {
        vn_ctx_fail(ctx, VN_ERR_UNSUPPORTED, "%s: sizes %lld x %lld x %lld exceed the BLAS int "
                    "range", name, (long long)a, (long long)b, (long long)c);
        return false;
    }
    return true;
}

/* t's gradient (+)= op(A) op(B), row-major as cblas_sgemm with C = the gradient (ldc): a
 * fresh buffer is written (beta 0), an existing one added to. Nothing when t needs no
 * gradient; false when the buffer cannot be had (the sticky error is set). */
static bool grad_gemm(vn_ctx *ctx, vn_tensor *t, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
                      int n, int k, const float *a, int lda, const float *b, int ldb, int ldc)
{
    if (!vn_tensor_requires_grad(t)) return true;
    bool fresh;
    float *d = vn__grad_uninit(ctx, t, &fresh);
    if (!d) return false;
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, fresh ? 0.0f : 1.0f, d,
                ldc);
    return true;
}

/* ---- matmul ------------------------------------------------------------------------- */

void vn__matmul_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    vn_tensor *a = node->in[0], *b = node->in[1];
    const int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
    const float *g = node->out->grad;
    const float *ad = vn__data(ctx, a), *bd = vn__data(ctx, b);
    if (!ad || !bd) return;
    /* dA = G B^T, dB = A^T G */
    if (grad_gemm(ctx, a, CblasNoTrans, CblasTrans, M, K, N, g, N, bd, N, K))
        grad_gemm(ctx, b, CblasTrans, CblasNoTrans, K, N, M, ad, K, g, N, N);
}

int vn__matmul_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    const vn_tensor *a = node->in[0], *b = node->in[1];
    const int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a->data, K, b->data, N,
                0.0f, node->out->data, N);
    return VN_OK;
}

vn_tensor *vn_matmul(vn_ctx *ctx, vn_tensor *a, vn_tensor *b)
{
    vn_tensor *in[2] = {a, b};
    if (!vn__ok(ctx, 2, in)) return NULL;
    char s1[96], s2[96];
    if (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[0])
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "matmul: needs [M, K] x [K, N], got %s x %s",
                           vn_shape_str(a->ndim, a->shape, s1, sizeof s1),
                           vn_shape_str(b->ndim, b->shape, s2, sizeof s2));
    const int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (M <= 0 || K <= 0 || N <= 0)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "matmul: empty operand (%s x %s)",
                           vn_shape_str(a->ndim, a->shape, s1, sizeof s1),
                           vn_shape_str(b->ndim, b->shape, s2, sizeof s2));
    if (!blas_dims_ok(ctx, "matmul", M, K, N)) return NULL;
    vn_tensor *y = vn_ctx_tensor(ctx, 2, (int64_t[]){M, N});
    vn_node *node = y ? vn__node_new(ctx, VN_OP_MATMUL, 2, in, y, 0) : NULL;
    if (!node) return NULL;
    if (node->recording) {
        vn__save(node, 0);
        vn__save(node, 1);
    }
    return vn__run(ctx, node);
}

/* ---- linear ------------------------------------------------------------------------- */

typedef vn__linear_state linear_state;

/* db[c] += sum over rows of g[r, c], in fixed chunks of rows added in order (so the bias
 * gradient does not depend on the thread count). part: nchunks * C doubles of scratch. */
static void column_sums(const float *g, int64_t R, int64_t C, double *part, float *db)
{
    int64_t nch = vn_chunk_count(R, VN_REDUCE_CHUNK);
#pragma omp parallel for schedule(static) if (R * C >= VN_PAR_MIN)
    for (int64_t k = 0; k < nch; k++) {
        double *p = part + k * C;
        int64_t r0, r1;
        vn_chunk_range(k, R, VN_REDUCE_CHUNK, &r0, &r1);
        for (int64_t c = 0; c < C; c++) p[c] = 0.0;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = 0; c < C; c++) p[c] += g[r * C + c];
    }
    for (int64_t k = 1; k < nch; k++)
        for (int64_t c = 0; c < C; c++) part[c] += part[k * C + c];
    for (int64_t c = 0; c < C; c++) db[c] += (float)part[c];
}

void vn__linear_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const linear_state *st = node->state;
    vn_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const int M = (int)st->rows, NI = (int)st->in, NO = (int)st->out;
    const float *g = node->out->grad;
    const float *xd = vn__data(ctx, x), *wd = vn__data(ctx, w);
    if (!xd || !wd) return;
    /* dX = G W, dW = G^T X */
    if (!grad_gemm(ctx, x, CblasNoTrans, CblasNoTrans, M, NI, NO, g, NO, wd, NI, NI) ||
        !grad_gemm(ctx, w, CblasTrans, CblasNoTrans, NO, NI, M, g, NO, xd, NI, NI))
        return;
    if (b && vn_tensor_requires_grad(b)) {
        float *db = vn__grad(ctx, b);
        if (!db) return;
        int64_t nch = vn_chunk_count(st->rows, VN_REDUCE_CHUNK);
        double *part = vn__pool_alloc(ctx, (size_t)(nch * st->out) * sizeof(double));
        if (!part) {
            vn_ctx_fail(ctx, VN_ERR_NOMEM, "linear backward: out of memory");
            return;
        }
        column_sums(g, st->rows, st->out, part, db);
        vn__pool_free(ctx, part);
    }
}

int vn__linear_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    const linear_state *st = node->state;
    const vn_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const int64_t M = st->rows, NI = st->in, NO = st->out;
    float *y = node->out->data;
    if (b) {
#pragma omp parallel for schedule(static) if (M * NO >= VN_PAR_MIN)
        for (int64_t r = 0; r < M; r++) memcpy(y + r * NO, b->data, (size_t)NO * sizeof(float));
    }
    /* Y = X W^T (+ the bias already in Y) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)NO, (int)NI, 1.0f, x->data,
                (int)NI, w->data, (int)NI, b ? 1.0f : 0.0f, y, (int)NO);
    return VN_OK;
}

vn_tensor *vn_linear(vn_ctx *ctx, vn_tensor *x, vn_tensor *w, vn_tensor *b)
{
    vn_tensor *in2[2] = {x, w};
    if (!vn__ok(ctx, 2, in2)) return NULL;
    char s1[96], s2[96];
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1])
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "linear: input %s does not match weight %s "
                           "(needs x [..., in] and w [out, in])",
                           vn_shape_str(x->ndim, x->shape, s1, sizeof s1),
                           vn_shape_str(w->ndim, w->shape, s2, sizeof s2));
    const int64_t NI = w->shape[1], NO = w->shape[0];
    if (x->numel <= 0 || NO <= 0 || NI <= 0)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "linear: empty input %s or weight %s",
                           vn_shape_str(x->ndim, x->shape, s1, sizeof s1),
                           vn_shape_str(w->ndim, w->shape, s2, sizeof s2));
    if (b && b->numel != NO)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "linear: bias has %lld elements but weight has "
                           "%lld outputs", (long long)b->numel, (long long)NO);
    const int64_t M = x->numel / NI;
    if (!blas_dims_ok(ctx, "linear", M, NI, NO)) return NULL;
    int64_t shape[VN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = NO;
    vn_tensor *in[3] = {x, w, b};
    vn_tensor *y = vn_ctx_tensor(ctx, x->ndim, shape);
    /* Inputs keep their positions (x, w, b); b may be NULL. */
    vn_node *node = y ? vn__node_new(ctx, VN_OP_LINEAR, 3, in, y, sizeof(linear_state)) : NULL;
    if (!node) return NULL;
    *(linear_state *)node->state = (linear_state){.rows = M, .in = NI, .out = NO};
    if (node->recording) {
        vn__save(node, 0);
        vn__save(node, 1);
    }
    return vn__run(ctx, node);
}
