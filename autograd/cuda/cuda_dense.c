/* conv2d, matmul and linear on CUDA. Row-major [M, K] matrices are cuBLAS's column-major
 * [K, M]: C = A B in row-major is C^T = B^T A^T in column-major, so the operands swap.
 * 1x1 convolutions (stride 1, pad 0, one group) are a linear layer over N*H*W rows; every
 * other convolution goes to cuDNN with NHWC tensors and NHWC (= OHWI) filters. */
#include "autograd/cuda/cuda_impl.h"

#define H() (vn__cuda_get(NULL, 0))
#define BCHECK(ctx, what, call)                                                     \
    do {                                                                            \
        cublasStatus_t s_ = (call);                                                 \
        if (s_ != CUBLAS_STATUS_SUCCESS) return vn__cublas_fail((ctx), (what), s_); \
    } while (0)

static const float one = 1.0f, zero = 0.0f;

/* y[rows, out] = x[rows, in] W[out, in]^T (+ b). */
static int linear_fwd(vn_ctx *ctx, float *y, const float *x, const float *w, const float *b,
                      int64_t rows, int64_t in, int64_t out)
{
    BCHECK(ctx, "linear", cublasSgemm(H()->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)rows,
                                      (int)in, &one, w, (int)in, x, (int)in, &zero, y, (int)out));
    if (b) {
        int e = vn__k_bias_add(H()->stream, y, b, rows, out);
        if (e) return vn__cuda_fail(ctx, "linear bias", e);
    }
    return VN_OK;
}

/* dx += dy W; dW += dy^T x; db += column sums of dy (each only when it requires grad). */
static void linear_bwd(vn_ctx *ctx, vn_tensor *xt, vn_tensor *wt, vn_tensor *bt, const float *dy,
                       int64_t rows, int64_t in, int64_t out)
{
    const float *x = vn__data(ctx, xt), *w = vn__data(ctx, wt);
    if (!x || !w) return;
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (vn_tensor_requires_grad(xt)) {
        bool fresh;
        float *dx = vn__grad_uninit(ctx, xt, &fresh);
        if (!dx) return;
        s = cublasSgemm(H()->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)in, (int)rows, (int)out, &one,
                        w, (int)in, dy, (int)out, fresh ? &zero : &one, dx, (int)in);
    }
    if (s == CUBLAS_STATUS_SUCCESS && vn_tensor_requires_grad(wt)) {
        float *dw = vn__grad(ctx, wt);
        if (!dw) return;
        s = cublasSgemm(H()->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)in, (int)out, (int)rows, &one,
                        x, (int)in, dy, (int)out, &one, dw, (int)in);
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
    return linear_fwd(ctx, node->out->data, node->in[0]->data, node->in[1]->data,
                      b ? b->data : NULL, st->rows, st->in, st->out);
}

void vn__linear_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__linear_state *st = node->state;
    linear_bwd(ctx, node->in[0], node->in[1], node->in[2], node->out->grad, st->rows, st->in,
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

static int conv_fwd_dnn(vn_ctx *ctx, vn_node *node, const vn__conv_geom *g)
{
    conv_desc d;
    void *ws = NULL;
    cudnnStatus_t st = desc_make(&d, g);
    if (st) goto out;
    algo_row a;
    DNN_TRY(conv_algo(&d, PASS_FORWARD, &a));
    if (a.memory && !(ws = vn__cuda_scratch(ctx, a.memory, "conv2d workspace"))) goto out;
    DNN_TRY(cudnnConvolutionForward(H()->dnn, &one, d.x, node->in[0]->data, d.w, node->in[1]->data,
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

int vn__conv2d_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__conv_state *s = node->state;
    const vn__conv_geom *g = &s->g;
    if (s->kind == VN__CONV_KIND_1X1) {
        const vn_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
        return linear_fwd(ctx, node->out->data, node->in[0]->data, node->in[1]->data,
                          b ? b->data : NULL, g->n * g->h * g->w, g->cin, g->cout);
    }
    return conv_fwd_dnn(ctx, node, g);
}

void vn__conv2d_recompute_cuda(vn_ctx *ctx, vn_node *node)
{
    if (!vn__data(ctx, node->in[0])) return;
    (void)vn__conv2d_forward_cuda(ctx, node);
}

static void conv_bwd_dnn(vn_ctx *ctx, vn_node *node, const vn__conv_geom *g)
{
    vn_tensor *x = node->in[0], *w = node->in[1];
    const float *xd = vn__data(ctx, x), *wd = vn__data(ctx, w), *dy = node->out->grad;
    if (!xd || !wd) return;
    conv_desc d;
    void *ws = NULL;
    algo_row a;
    cudnnStatus_t st = desc_make(&d, g);
    if (st) goto out;
    if (vn_tensor_requires_grad(x)) {
        bool fresh;
        float *dx = vn__grad_uninit(ctx, x, &fresh);
        if (!dx) goto out;
        DNN_TRY(conv_algo(&d, PASS_BACKWARD_DATA, &a));
        if (a.memory && !(ws = vn__cuda_scratch(ctx, a.memory, "conv2d workspace"))) goto out;
        DNN_TRY(cudnnConvolutionBackwardData(H()->dnn, &one, d.w, wd, d.y, dy, d.conv,
                                             (cudnnConvolutionBwdDataAlgo_t)a.algo, ws, a.memory,
                                             fresh ? &zero : &one, d.x, dx));
        vn__pool_free(ctx, ws);
        ws = NULL;
    }
    if (vn_tensor_requires_grad(w)) {
        float *dw = vn__grad(ctx, w);
        if (!dw) goto out;
        DNN_TRY(conv_algo(&d, PASS_BACKWARD_FILTER, &a));
        if (a.memory && !(ws = vn__cuda_scratch(ctx, a.memory, "conv2d workspace"))) goto out;
        DNN_TRY(cudnnConvolutionBackwardFilter(H()->dnn, &one, d.x, xd, d.y, dy, d.conv,
                                               (cudnnConvolutionBwdFilterAlgo_t)a.algo, ws,
                                               a.memory, &one, d.w, dw));
    }
out:
    vn__pool_free(ctx, ws);
    desc_free(&d);
    if (st) vn__cudnn_fail(ctx, "conv2d backward", st);
}

void vn__conv2d_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__conv_state *s = node->state;
    const vn__conv_geom *g = &s->g;
    vn_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
    if (s->kind == VN__CONV_KIND_1X1) {
        linear_bwd(ctx, node->in[0], node->in[1], b, node->out->grad, g->n * g->h * g->w, g->cin,
                   g->cout);
        return;
    }
    conv_bwd_dnn(ctx, node, g);
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
