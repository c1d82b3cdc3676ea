/* conv2d, matmul and linear on CUDA. Row-major [M, K] matrices are cuBLAS's column-major
 * [K, M]: C = A B in row-major is C^T = B^T A^T in column-major, so the operands swap.
 * 1x1 convolutions (stride 1, pad 0, one group) are a linear layer over N*H*W rows; depthwise
 * ones of stride 1 and 3, 5, 7 or 9 taps go to dw_kernels.cu (VN_CUDA_DW_CUDNN=1: to cuDNN,
 * for comparison); patchify ones (kernel == stride) are a gather and a GEMM in FP32/TF32;
 * every other convolution goes to cuDNN with NHWC tensors and NHWC (= OHWI) filters. */
#include "autograd/cuda/cuda_impl.h"

#include <stdlib.h>

#define H() (vn__cuda_get(NULL, 0))
#define BCHECK(ctx, what, call)                                                     \
    do {                                                                            \
        cublasStatus_t s_ = (call);                                                 \
        if (s_ != CUBLAS_STATUS_SUCCESS) return vn__cublas_fail((ctx), (what), s_); \
    } while (0)

static const float one = 1.0f, zero = 0.0f;

/* ---- bf16 autocast (vn__cuda.bf16): the GEMMs of linear layers and 1x1 convolutions take
 * bf16 copies of their operands and accumulate in FP32 into FP32 outputs and gradients; the
 * parameters, their gradients and every other op stay FP32 (the master copy). ----------- */

/* A bf16 copy of n floats from the step pool; NULL with the context error set. */
static uint16_t *bf16_copy(vn_ctx *ctx, const float *src, int64_t n)
{
    uint16_t *d = vn__cuda_scratch(ctx, (size_t)n * sizeof(uint16_t), "bf16 copy");
    if (!d) return NULL;
    int e = vn__k_to_bf16(H()->stream, d, src, n);
    if (e) {
        vn__pool_free(ctx, d);
        vn__cuda_fail(ctx, "bf16 copy", e);
        return NULL;
    }
    return d;
}

/* C[m, n] (column-major, FP32) = alpha A B + beta C with bf16 operands. */
static cublasStatus_t gemm_bf16(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n,
                                int64_t k, const uint16_t *a, int64_t lda, const uint16_t *b,
                                int64_t ldb, const float *beta, float *c, int64_t ldc)
{
    return cublasGemmEx(H()->blas, ta, tb, (int)m, (int)n, (int)k, &one, a, CUDA_R_16BF, (int)lda,
                        b, CUDA_R_16BF, (int)ldb, beta, c, CUDA_R_32F, (int)ldc,
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

/* y = x W^T in bf16; the bf16 copy of x is kept for backward when the node records. */
static int linear_fwd_bf16(vn_ctx *ctx, vn_node *node, float *y, const float *x, const float *w,
                           int64_t rows, int64_t in, int64_t out)
{
    uint16_t *wb = bf16_copy(ctx, w, out * in);
    uint16_t *xb = wb ? bf16_copy(ctx, x, rows * in) : NULL;
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (xb) s = gemm_bf16(CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, wb, in, xb, in, &zero, y, out);
    vn__pool_free(ctx, wb);
    if (xb && node->recording && node->n_bufs == 0)
        vn__node_keep(node, xb);
    else
        vn__pool_free(ctx, xb);
    if (!xb) return vn_ctx_status(ctx);
    return s == CUBLAS_STATUS_SUCCESS ? VN_OK : vn__cublas_fail(ctx, "linear (bf16)", s);
}

/* dx (+)= dy W and dW += dy^T x in bf16 (x's copy from forward when kept). */
static cublasStatus_t linear_bwd_bf16(vn_ctx *ctx, vn_node *node, vn_tensor *xt, vn_tensor *wt,
                                      const float *x, const float *w, const float *dy,
                                      int64_t rows, int64_t in, int64_t out)
{
    uint16_t *dyb = bf16_copy(ctx, dy, rows * out), *wb = NULL, *xb = NULL;
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (dyb && vn_tensor_requires_grad(xt)) {
        bool fresh;
        float *dx = vn__grad_uninit(ctx, xt, &fresh);
        if (dx && (wb = bf16_copy(ctx, w, out * in)))
            s = gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_N, in, rows, out, wb, in, dyb, out,
                          fresh ? &zero : &one, dx, in);
    }
    bool kept = node->n_bufs > 0;
    if (dyb && s == CUBLAS_STATUS_SUCCESS && vn_ctx_status(ctx) == VN_OK &&
        vn_tensor_requires_grad(wt)) {
        float *dw = vn__grad(ctx, wt);
        xb = kept ? node->bufs[0] : dw ? bf16_copy(ctx, x, rows * in) : NULL;
        if (xb) s = gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_T, in, out, rows, xb, in, dyb, out, &one, dw, in);
    }
    vn__pool_free(ctx, dyb);
    vn__pool_free(ctx, wb);
    if (!kept) vn__pool_free(ctx, xb);
    return s;
}

/* y[rows, out] = x[rows, in] W[out, in]^T (+ b). */
static int linear_fwd(vn_ctx *ctx, vn_node *node, float *y, const float *x, const float *w,
                      const float *b, int64_t rows, int64_t in, int64_t out)
{
    if (H()->bf16) {
        int rc = linear_fwd_bf16(ctx, node, y, x, w, rows, in, out);
        if (rc != VN_OK) return rc;
    } else {
        BCHECK(ctx, "linear", cublasSgemm(H()->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)out,
                                          (int)rows, (int)in, &one, w, (int)in, x, (int)in, &zero,
                                          y, (int)out));
    }
    if (b) {
        int e = vn__k_bias_add(H()->stream, y, b, rows, out);
        if (e) return vn__cuda_fail(ctx, "linear bias", e);
    }
    return VN_OK;
}

/* dx += dy W; dW += dy^T x; db += column sums of dy (each only when it requires grad). */
static void linear_bwd(vn_ctx *ctx, vn_node *node, vn_tensor *xt, vn_tensor *wt, vn_tensor *bt,
                       const float *dy, int64_t rows, int64_t in, int64_t out)
{
    const float *x = vn__data(ctx, xt), *w = vn__data(ctx, wt);
    if (!x || !w) return;
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (H()->bf16) {
        s = linear_bwd_bf16(ctx, node, xt, wt, x, w, dy, rows, in, out);
        if (vn_ctx_status(ctx) != VN_OK) return;
    } else {
        if (vn_tensor_requires_grad(xt)) {
            bool fresh;
            float *dx = vn__grad_uninit(ctx, xt, &fresh);
            if (!dx) return;
            s = cublasSgemm(H()->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)in, (int)rows, (int)out,
                            &one, w, (int)in, dy, (int)out, fresh ? &zero : &one, dx, (int)in);
        }
        if (s == CUBLAS_STATUS_SUCCESS && vn_tensor_requires_grad(wt)) {
            float *dw = vn__grad(ctx, wt);
            if (!dw) return;
            s = cublasSgemm(H()->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)in, (int)out, (int)rows,
                            &one, x, (int)in, dy, (int)out, &one, dw, (int)in);
        }
    }
    if (s != CUBLAS_STATUS_SUCCESS) {
        vn__cublas_fail(ctx, "linear backward", s);
        return;
    }
    if (bt && vn_tensor_requires_grad(bt)) {
        int parts = (int)(rows / 2048 < 1 ? 1 : rows / 2048 > 256 ? 256 : rows / 2048);
        float *db = vn__grad(ctx, bt);
        double *part = db ? vn__cuda_scratch(ctx, (size_t)(parts * out) * sizeof(double),
                                             "bias gradient") : NULL;
        if (!part) return;
        int e = vn__k_bias_grad(H()->stream, db, part, dy, rows, out, parts);
        vn__pool_free(ctx, part);
        if (e) vn__cuda_fail(ctx, "bias gradient", e);
    }
}

/* ---- matmul: [M, K] x [K, N] ------------------------------------------------------------ */

int vn__matmul_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn_tensor *a = node->in[0], *b = node->in[1];
    int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
    BCHECK(ctx, "matmul", cublasSgemm(H()->blas, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one,
                                      b->data, N, a->data, K, &zero, node->out->data, N));
    return VN_OK;
}

void vn__matmul_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    vn_tensor *a = node->in[0], *b = node->in[1];
    int M = (int)a->shape[0], K = (int)a->shape[1], N = (int)b->shape[1];
    const float *ad = vn__data(ctx, a), *bd = vn__data(ctx, b), *dc = node->out->grad;
    if (!ad || !bd) return;
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (vn_tensor_requires_grad(a)) {
        float *da = vn__grad(ctx, a);
        if (!da) return;
        s = cublasSgemm(H()->blas, CUBLAS_OP_T, CUBLAS_OP_N, K, M, N, &one, bd, N, dc, N, &one,
                        da, K);
    }
    if (s == CUBLAS_STATUS_SUCCESS && vn_tensor_requires_grad(b)) {
        float *db = vn__grad(ctx, b);
        if (!db) return;
        s = cublasSgemm(H()->blas, CUBLAS_OP_N, CUBLAS_OP_T, N, K, M, &one, dc, N, ad, K, &one,
                        db, N);
    }
    if (s != CUBLAS_STATUS_SUCCESS) vn__cublas_fail(ctx, "matmul backward", s);
}

/* ---- linear ------------------------------------------------------------------------------ */

int vn__linear_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__linear_state *st = node->state;
    const vn_tensor *b = node->in[2];
    return linear_fwd(ctx, node, node->out->data, node->in[0]->data, node->in[1]->data,
                      b ? b->data : NULL, st->rows, st->in, st->out);
}

void vn__linear_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__linear_state *st = node->state;
    linear_bwd(ctx, node, node->in[0], node->in[1], node->in[2], node->out->grad, st->rows, st->in,
               st->out);
}

/* ---- conv2d --------------------------------------------------------------------------- */

typedef struct conv_desc {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
} conv_desc;

static void desc_free(conv_desc *d)
{
    if (d->x) cudnnDestroyTensorDescriptor(d->x);
    if (d->y) cudnnDestroyTensorDescriptor(d->y);
    if (d->w) cudnnDestroyFilterDescriptor(d->w);
    if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
}

static cudnnStatus_t desc_make(conv_desc *d, const vn__conv_geom *g)
{
    cudnnStatus_t s;
    *d = (conv_desc){0};
    if ((s = cudnnCreateTensorDescriptor(&d->x)) || (s = cudnnCreateTensorDescriptor(&d->y)) ||
        (s = cudnnCreateFilterDescriptor(&d->w)) ||
        (s = cudnnCreateConvolutionDescriptor(&d->conv)))
        return s;
    if ((s = cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)g->n,
                                        (int)g->cin, (int)g->h, (int)g->w)) ||
        (s = cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)g->n,
                                        (int)g->cout, (int)g->ho, (int)g->wo)) ||
        (s = cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, (int)g->cout,
                                        (int)(g->cin / g->groups), (int)g->kh, (int)g->kw)) ||
        (s = cudnnSetConvolution2dDescriptor(d->conv, (int)g->ph, (int)g->pw, (int)g->sh,
                                             (int)g->sw, 1, 1, CUDNN_CROSS_CORRELATION,
                                             CUDNN_DATA_FLOAT)) ||
        (s = cudnnSetConvolutionGroupCount(d->conv, g->groups)))
        return s;
    return cudnnSetConvolutionMathType(d->conv, H()->tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH);
}

/* The three passes of a convolution, each with its own ranking of cuDNN's algorithms. */
typedef enum conv_pass { PASS_FORWARD, PASS_BACKWARD_DATA, PASS_BACKWARD_FILTER } conv_pass;

enum { ALGO_RANKED = 8 }; /* how many of the ranked algorithms are considered */

/* One row of a ranking, whichever pass it is for: algo holds that pass's algorithm enum. */
typedef struct algo_row {
    int algo;
    cudnnStatus_t status;
    cudnnDeterminism_t determinism;
    size_t memory;
} algo_row;

/* The first algorithm of cuDNN's ranking for the pass that ran and, in deterministic mode,
 * is deterministic; CUDNN_STATUS_NOT_SUPPORTED when there is none. */
static cudnnStatus_t conv_algo(const conv_desc *d, conv_pass pass, algo_row *pick)
{
    cudnnConvolutionFwdAlgoPerf_t fw[ALGO_RANKED];
    cudnnConvolutionBwdDataAlgoPerf_t bd[ALGO_RANKED];
    cudnnConvolutionBwdFilterAlgoPerf_t bf[ALGO_RANKED];
    algo_row rank[ALGO_RANKED];
    int got = 0;
    cudnnStatus_t st;
    if (pass == PASS_FORWARD) {
        st = cudnnGetConvolutionForwardAlgorithm_v7(H()->dnn, d->x, d->w, d->conv, d->y,
                                                    ALGO_RANKED, &got, fw);
        for (int i = 0; i < got; i++)
            rank[i] = (algo_row){(int)fw[i].algo, fw[i].status, fw[i].determinism, fw[i].memory};
    } else if (pass == PASS_BACKWARD_DATA) {
        st = cudnnGetConvolutionBackwardDataAlgorithm_v7(H()->dnn, d->w, d->y, d->conv, d->x,
                                                         ALGO_RANKED, &got, bd);
        for (int i = 0; i < got; i++)
            rank[i] = (algo_row){(int)bd[i].algo, bd[i].status, bd[i].determinism, bd[i].memory};
    } else {
        st = cudnnGetConvolutionBackwardFilterAlgorithm_v7(H()->dnn, d->x, d->y, d->conv, d->w,
                                                           ALGO_RANKED, &got, bf);
        for (int i = 0; i < got; i++)
            rank[i] = (algo_row){(int)bf[i].algo, bf[i].status, bf[i].determinism, bf[i].memory};
    }
    if (st) return st;
    for (int i = 0; i < got; i++)
        if (rank[i].status == CUDNN_STATUS_SUCCESS &&
            (!H()->deterministic || rank[i].determinism == CUDNN_DETERMINISTIC)) {
            *pick = rank[i];
            return CUDNN_STATUS_SUCCESS;
        }
    return CUDNN_STATUS_NOT_SUPPORTED;
}

#define DNN_TRY(call) \
    do {              \
        st = (call);  \
        if (st) goto out; \
    } while (0)

/* vn_conv2d_relu on the device. The depthwise kernels of dw_kernels.cu apply the ReLU where
 * they read x; for cuDNN's paths relu(x) goes through a scratch (relu_copy). The input's
 * gradient is the gradient at relu(x), taken back through the ReLU's mask by relu_mask. */
static float *relu_copy(vn_ctx *ctx, const float *x, int64_t n)
{
    float *r = vn__cuda_scratch(ctx, (size_t)n * sizeof(float), "conv2d of relu(x)");
    if (!r) return NULL;
    int e = vn__k_leaky_fwd(H()->stream, r, x, n, 0.0f);
    if (e) {
        vn__pool_free(ctx, r);
        vn__cuda_fail(ctx, "conv2d of relu(x)", e);
        return NULL;
    }
    return r;
}

/* Where the input gradient of a conv of relu(x) is computed (assigned) before the mask: dx
 * itself when it is fresh, else a scratch. NULL with the error set. */
static float *relu_grad_target(vn_ctx *ctx, float *dx, bool dx_fresh, int64_t n)
{
    return dx_fresh ? dx : vn__cuda_scratch(ctx, (size_t)n * sizeof(float), "conv2d of relu(x)");
}

/* dx (+)= t through the ReLU's mask (x > 0), as vn_relu's backward; t is freed when it is a
 * scratch. */
static int relu_mask(vn_ctx *ctx, float *dx, bool dx_fresh, float *t, const float *x, int64_t n)
{
    int e = vn__k_leaky_bwd(H()->stream, dx, t, x, n, 0.0f, dx_fresh);
    if (t != dx) vn__pool_free(ctx, t);
    return e;
}

/* xin: the input the convolution reads (relu(x) for vn_conv2d_relu). */
static int conv_fwd_dnn(vn_ctx *ctx, vn_node *node, const vn__conv_geom *g, const float *xin)
{
    conv_desc d;
    void *ws = NULL;
    cudnnStatus_t st = desc_make(&d, g);
    if (st) goto out;
    algo_row a;
    DNN_TRY(conv_algo(&d, PASS_FORWARD, &a));
    if (a.memory && !(ws = vn__cuda_scratch(ctx, a.memory, "conv2d workspace"))) goto out;
    DNN_TRY(cudnnConvolutionForward(H()->dnn, &one, d.x, xin, d.w, node->in[1]->data,
                                    d.conv, (cudnnConvolutionFwdAlgo_t)a.algo, ws, a.memory,
                                    &zero, d.y, node->out->data));
out:
    vn__pool_free(ctx, ws);
    desc_free(&d);
    if (st) return vn__cudnn_fail(ctx, "conv2d", st);
    if (vn_ctx_status(ctx) != VN_OK) return vn_ctx_status(ctx);
    const vn_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
    int e = b ? vn__k_bias_add(H()->stream, node->out->data, b->data, g->n * g->ho * g->wo, g->cout)
              : 0;
    return e ? vn__cuda_fail(ctx, "conv2d bias", e) : VN_OK;
}

/* ---- depthwise convolutions of dw_kernels.cu ------------------------------------------- */

static bool dw_ours(const vn__conv_state *s)
{
    const vn__conv_geom *g = &s->g;
    static int cudnn = -1;
    return !vn__cuda_env_on("VN_CUDA_DW_CUDNN", &cudnn) && s->kind == VN__CONV_KIND_DEPTHWISE && g->kh == g->kw && g->sh == g->sw &&
           g->ph == g->pw &&
           vn__k_dw_supported((int)g->kh, (int)g->sh, (int)g->ph, g->n * g->h * g->w * g->cin,
                              g->n * g->ho * g->wo * g->cout);
}

/* The weights in the kernels' [k*k, c] order (flipped for the input gradient); NULL with the
 * context error set. */
static float *dw_weights(vn_ctx *ctx, const float *w, const vn__conv_geom *g, bool flip)
{
    float *wt = vn__cuda_scratch(ctx, (size_t)(g->cin * g->kh * g->kw) * sizeof(float),
                                 "depthwise weights");
    if (!wt) return NULL;
    int e = vn__k_dw_weights(H()->stream, wt, w, (int)g->cin, (int)g->kh, flip);
    if (e) {
        vn__pool_free(ctx, wt);
        vn__cuda_fail(ctx, "depthwise weights", e);
        return NULL;
    }
    return wt;
}

static int dw_forward(vn_ctx *ctx, vn_node *node, const vn__conv_geom *g, bool relu)
{
    float *wt = dw_weights(ctx, node->in[1]->data, g, false);
    if (!wt) return vn_ctx_status(ctx);
    const vn_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
    int e = vn__k_dw_forward(H()->stream, node->out->data, node->in[0]->data, wt,
                             b ? b->data : NULL, NULL, (int)g->n, (int)g->h, (int)g->w, (int)g->cin,
                             (int)g->ho, (int)g->wo, (int)g->kh, (int)g->ph, (int)g->pw, false,
                             relu);
    vn__pool_free(ctx, wt);
    return e ? vn__cuda_fail(ctx, "depthwise conv2d", e) : VN_OK;
}

/* dx (+)= the input gradient; dw += the filter gradient (each when it requires grad). relu:
 * the conv of relu(x). */
static void dw_backward(vn_ctx *ctx, vn_node *node, const vn__conv_geom *g, bool relu)
{
    vn_tensor *x = node->in[0], *w = node->in[1];
    const float *xd = vn__data(ctx, x), *wd = vn__data(ctx, w), *dy = node->out->grad;
    if (!xd || !wd) return;
    const int n = (int)g->n, h = (int)g->h, wi = (int)g->w, c = (int)g->cin, ho = (int)g->ho,
              wo = (int)g->wo, k = (int)g->kh;
    int e = 0;
    if (vn_tensor_requires_grad(x)) {
        /* relu: through the ReLU's mask (x > 0) in the same pass, the bytes of a separate
         * vn__k_leaky_bwd. */
        bool fresh;
        float *dx = vn__grad_uninit(ctx, x, &fresh);
        float *wt = dx ? dw_weights(ctx, wd, g, true) : NULL;
        if (!wt) return;
        e = vn__k_dw_forward(H()->stream, dx, dy, wt, NULL, relu ? xd : NULL, n, ho, wo, c, h,
                             wi, k, k - 1 - (int)g->ph, k - 1 - (int)g->pw, !fresh, false);
        vn__pool_free(ctx, wt);
    }
    if (!e && vn_tensor_requires_grad(w)) {
        float *dw = vn__grad(ctx, w);
        int parts = vn__k_dw_filter_parts(n, ho, wo, c, k);
        float *part = dw ? vn__cuda_scratch(ctx, (size_t)parts * (size_t)(k * k * c) *
                                                     sizeof(float), "depthwise filter gradient")
                         : NULL;
        if (!part) return;
        e = vn__k_dw_filter(H()->stream, dw, part, dy, xd, n, h, wi, c, ho, wo, k, (int)g->ph,
                            (int)g->pw, parts, relu);
        vn__pool_free(ctx, part);
    }
    if (e) vn__cuda_fail(ctx, "depthwise conv2d backward", e);
}

/* ---- patchify convolutions (kernel == stride, square, no padding): a gather, then a GEMM
 * (the VanillaNet stem: 4x4 / 4 from 3 channels, which cuDNN ran 3x slower). The patches are
 * kept for the filter gradient when the node records. ---------------------------------- */

static bool patch_ours(const vn__conv_state *s)
{
    return s->kind == VN__CONV_KIND_PATCH && s->g.kh == s->g.kw;
}

static int patch_forward(vn_ctx *ctx, vn_node *node, const vn__conv_geom *g)
{
    const int64_t rows = g->n * g->ho * g->wo, kk = g->kh * g->kw * g->cin;
    float *p = vn__cuda_scratch(ctx, (size_t)(rows * kk) * sizeof(float), "conv2d patches");
    if (!p) return VN_ERR_NOMEM;
    int e = vn__k_patch_gather(H()->stream, p, node->in[0]->data, g->n, g->h, g->w, g->cin, g->ho,
                               g->wo, g->kh);
    if (e) {
        vn__pool_free(ctx, p);
        return vn__cuda_fail(ctx, "conv2d patches", e);
    }
    cublasStatus_t st = cublasSgemm(H()->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)g->cout, (int)rows,
                                    (int)kk, &one, node->in[1]->data, (int)kk, p, (int)kk, &zero,
                                    node->out->data, (int)g->cout);
    if (node->recording && node->n_bufs == 0)
        vn__node_keep(node, p);
    else
        vn__pool_free(ctx, p);
    if (st != CUBLAS_STATUS_SUCCESS) return vn__cublas_fail(ctx, "conv2d (patches)", st);
    const vn_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
    e = b ? vn__k_bias_add(H()->stream, node->out->data, b->data, rows, g->cout) : 0;
    return e ? vn__cuda_fail(ctx, "conv2d bias", e) : VN_OK;
}

/* dW += dy^T P; dx (+)= the scatter of dy W (each when it requires grad). */
static void patch_backward(vn_ctx *ctx, vn_node *node, const vn__conv_geom *g)
{
    vn_tensor *x = node->in[0], *w = node->in[1];
    const float *xd = vn__data(ctx, x), *wd = vn__data(ctx, w), *dy = node->out->grad;
    if (!xd || !wd) return;
    const int64_t rows = g->n * g->ho * g->wo, kk = g->kh * g->kw * g->cin;
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    float *p = NULL, *dp = NULL;
    int e = 0;
    if (vn_tensor_requires_grad(w)) {
        float *dw = vn__grad(ctx, w);
        if (!dw) return;
        p = node->n_bufs > 0 ? node->bufs[0]
                             : vn__cuda_scratch(ctx, (size_t)(rows * kk) * sizeof(float),
                                                "conv2d patches");
        if (!p) return;
        if (node->n_bufs == 0)
            e = vn__k_patch_gather(H()->stream, p, xd, g->n, g->h, g->w, g->cin, g->ho, g->wo,
                                   g->kh);
        if (!e)
            st = cublasSgemm(H()->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)kk, (int)g->cout,
                             (int)rows, &one, p, (int)kk, dy, (int)g->cout, &one, dw, (int)kk);
        if (node->n_bufs == 0) vn__pool_free(ctx, p);
    }
    if (!e && st == CUBLAS_STATUS_SUCCESS && vn_tensor_requires_grad(x)) {
        bool fresh;
        float *dx = vn__grad_uninit(ctx, x, &fresh);
        dp = dx ? vn__cuda_scratch(ctx, (size_t)(rows * kk) * sizeof(float), "conv2d patches")
                : NULL;
        if (!dp) return;
        st = cublasSgemm(H()->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)kk, (int)rows, (int)g->cout,
                         &one, wd, (int)kk, dy, (int)g->cout, &zero, dp, (int)kk);
        if (st == CUBLAS_STATUS_SUCCESS)
            e = vn__k_patch_scatter(H()->stream, dx, dp, g->n, g->h, g->w, g->cin, g->ho, g->wo,
                                    g->kh, fresh);
        vn__pool_free(ctx, dp);
    }
    if (st != CUBLAS_STATUS_SUCCESS) vn__cublas_fail(ctx, "conv2d backward (patches)", st);
    else if (e) vn__cuda_fail(ctx, "conv2d backward (patches)", e);
}

int vn__conv2d_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__conv_state *s = node->state;
    const vn__conv_geom *g = &s->g;
    if (s->kind == VN__CONV_KIND_1X1) {
        const vn_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
        return linear_fwd(ctx, node, node->out->data, node->in[0]->data, node->in[1]->data,
                          b ? b->data : NULL, g->n * g->h * g->w, g->cin, g->cout);
    }
    if (dw_ours(s)) return dw_forward(ctx, node, g, s->relu_in);
    if (patch_ours(s)) return patch_forward(ctx, node, g);
    if (!s->relu_in) return conv_fwd_dnn(ctx, node, g, node->in[0]->data);
    float *r = relu_copy(ctx, node->in[0]->data, node->in[0]->numel);
    if (!r) return vn_ctx_status(ctx);
    int rc = conv_fwd_dnn(ctx, node, g, r);
    vn__pool_free(ctx, r);
    return rc;
}

void vn__conv2d_recompute_cuda(vn_ctx *ctx, vn_node *node)
{
    if (!vn__data(ctx, node->in[0])) return;
    (void)vn__conv2d_forward_cuda(ctx, node);
}

static void conv_bwd_dnn(vn_ctx *ctx, vn_node *node, const vn__conv_geom *g, bool relu)
{
    vn_tensor *x = node->in[0], *w = node->in[1];
    const float *xd = vn__data(ctx, x), *wd = vn__data(ctx, w), *dy = node->out->grad;
    if (!xd || !wd) return;
    conv_desc d;
    void *ws = NULL;
    float *r = NULL; /* relu(x): what the filter gradient reads */
    algo_row a;
    cudnnStatus_t st = desc_make(&d, g);
    if (st) goto out;
    if (relu && vn_tensor_requires_grad(w) && !(r = relu_copy(ctx, xd, x->numel))) goto out;
    if (vn_tensor_requires_grad(x)) {
        bool fresh;
        float *dx = vn__grad_uninit(ctx, x, &fresh);
        float *t = dx && relu ? relu_grad_target(ctx, dx, fresh, x->numel) : dx;
        if (!t) goto out;
        st = conv_algo(&d, PASS_BACKWARD_DATA, &a);
        if (!st && a.memory && !(ws = vn__cuda_scratch(ctx, a.memory, "conv2d workspace"))) {
            if (t != dx) vn__pool_free(ctx, t);
            goto out;
        }
        if (!st)
            st = cudnnConvolutionBackwardData(H()->dnn, &one, d.w, wd, d.y, dy, d.conv,
                                              (cudnnConvolutionBwdDataAlgo_t)a.algo, ws, a.memory,
                                              fresh || relu ? &zero : &one, d.x, t);
        vn__pool_free(ctx, ws);
        ws = NULL;
        int e = !st && relu ? relu_mask(ctx, dx, fresh, t, xd, x->numel) : 0;
        if (st && t != dx) vn__pool_free(ctx, t);
        if (st) goto out;
        if (e) {
            vn__cuda_fail(ctx, "conv2d of relu(x) backward", e);
            goto out;
        }
    }
    if (vn_tensor_requires_grad(w)) {
        float *dw = vn__grad(ctx, w);
        if (!dw) goto out;
        DNN_TRY(conv_algo(&d, PASS_BACKWARD_FILTER, &a));
        if (a.memory && !(ws = vn__cuda_scratch(ctx, a.memory, "conv2d workspace"))) goto out;
        DNN_TRY(cudnnConvolutionBackwardFilter(H()->dnn, &one, d.x, r ? r : xd, d.y, dy, d.conv,
                                               (cudnnConvolutionBwdFilterAlgo_t)a.algo, ws,
                                               a.memory, &one, d.w, dw));
    }
out:
    vn__pool_free(ctx, ws);
    vn__pool_free(ctx, r);
    desc_free(&d);
    if (st) vn__cudnn_fail(ctx, "conv2d backward", st);
}

void vn__conv2d_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__conv_state *s = node->state;
    const vn__conv_geom *g = &s->g;
    vn_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
    if (s->kind == VN__CONV_KIND_1X1) {
        linear_bwd(ctx, node, node->in[0], node->in[1], b, node->out->grad, g->n * g->h * g->w, g->cin,
                   g->cout);
        return;
    }
    if (dw_ours(s))
        dw_backward(ctx, node, g, s->relu_in);
    else if (patch_ours(s))
        patch_backward(ctx, node, g);
    else
        conv_bwd_dnn(ctx, node, g, s->relu_in);
    if (vn_ctx_status(ctx) != VN_OK || !b || !vn_tensor_requires_grad(b)) return;
    int64_t rows = g->n * g->ho * g->wo;
    int parts = (int)(rows / 2048 < 1 ? 1 : rows / 2048 > 256 ? 256 : rows / 2048);
    float *db = vn__grad(ctx, b);
    double *part = db ? vn__cuda_scratch(ctx, (size_t)(parts * g->cout) * sizeof(double),
                                         "bias gradient") : NULL;
    if (!part) return;
    int e = vn__k_bias_grad(H()->stream, db, part, node->out->grad, rows, g->cout, parts);
    vn__pool_free(ctx, part);
    if (e) vn__cuda_fail(ctx, "conv2d bias gradient", e);
}
