/* The CUDA column of the op table: every op of VN_OP_LIST on device tensors, with the same
 * fronts and typed state (autograd/ops_state.h) as the CPU kernels. Dense ops and 1x1
 * convolutions go through cuBLAS, other convolutions through cuDNN (NHWC activations, OHWI
 * = NHWC filters), everything else through the kernels of kernels.cu. Every call is ordered
 * on the backend's one stream. */
#include "autograd/cuda/cuda_impl.h"
#include "autograd/device_impl.h"

#include <string.h>

#define S() (vn__cuda_get(NULL, 0)->stream)
#define KCHECK(ctx, what, call)                                          \
    do {                                                                 \
        int e_ = (call);                                                 \
        if (e_ != 0) return vn__cuda_fail((ctx), (what), e_);            \
    } while (0)
#define KCHECK_V(ctx, what, call)                                        \
    do {                                                                 \
        int e_ = (call);                                                 \
        if (e_ != 0) {                                                   \
            vn__cuda_fail((ctx), (what), e_);                            \
            return;                                                      \
        }                                                                \
    } while (0)

/* Row partitions of per-channel reductions: a function of the row count only. */
static int reduce_parts(int64_t rows)
{
    int64_t p = rows / 2048;
    return (int)(p < 1 ? 1 : p > 256 ? 256 : p);
}

/* ---- leaky_relu / relu ----------------------------------------------------------------- */

int vn__leaky_relu_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__leaky_state *st = node->state;
    KCHECK(ctx, "leaky_relu", vn__k_leaky_fwd(S(), node->out->data, node->in[0]->data,
                                              node->out->numel, st->slope));
    return VN_OK;
}

void vn__leaky_relu_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__leaky_state *st = node->state;
    vn__ew_grad a;
    if (!vn__ew_grad_begin(ctx, node, st->slope >= 0.0f ? node->out : node->in[0], &a)) return;
    KCHECK_V(ctx, "leaky_relu backward", vn__k_leaky_bwd(S(), a.dx, a.dy, a.src, node->in[0]->numel,
                                                         st->slope, a.fresh));
}

void vn__leaky_relu_recompute_cuda(vn_ctx *ctx, vn_node *node)
{
    const float *xd = vn__data(ctx, node->in[0]);
    if (!xd) return;
    const vn__leaky_state *st = node->state;
    KCHECK_V(ctx, "leaky_relu recompute",
             vn__k_leaky_fwd(S(), node->out->data, xd, node->out->numel, st->slope));
}

/* ---- dropout: mask from a counter-based generator seeded by one draw of the ctx RNG ---- */

int vn__dropout_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    vn__dropout_state *st = node->state;
    const vn_tensor *x = node->in[0];
    uint8_t *keep = vn__cuda_scratch(ctx, (size_t)x->numel, "dropout");
    if (!keep) return VN_ERR_NOMEM;
    vn__node_keep(node, keep);
    st->keep = keep;
    uint64_t seed = vn_rng_u64(vn_ctx_rng(ctx));
    KCHECK(ctx, "dropout", vn__k_dropout_fwd(S(), node->out->data, keep, x->data, x->numel, st->p,
                                             st->scale, seed));
    return VN_OK;
}

void vn__dropout_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__dropout_state *st = node->state;
    vn_tensor *x = node->in[0];
    float *dx = vn__grad(ctx, x);
    if (!dx) return;
    KCHECK_V(ctx, "dropout backward", vn__k_dropout_apply(S(), dx, st->keep, node->out->grad,
                                                          x->numel, st->scale, true));
}

void vn__dropout_recompute_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__dropout_state *st = node->state;
    const float *xd = vn__data(ctx, node->in[0]);
    if (!xd) return;
    KCHECK_V(ctx, "dropout recompute", vn__k_dropout_apply(S(), node->out->data, st->keep, xd,
                                                           node->out->numel, st->scale, false));
}

/* ---- add, scale, reshape ------------------------------------------------------------- */

int vn__add_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    KCHECK(ctx, "add", vn__k_add2(S(), node->out->data, node->in[0]->data, node->in[1]->data,
                                  node->out->numel));
    return VN_OK;
}

static void accumulate(vn_ctx *ctx, vn_tensor *x, const float *dy, float a)
{
    bool assign;
    float *dx = vn__input_grad(ctx, x, &assign);
    if (!dx) return;
    KCHECK_V(ctx, "backward", vn__k_axpby(S(), dx, dy, x->numel, a, assign));
}

void vn__add_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    accumulate(ctx, node->in[0], node->out->grad, 1.0f);
    accumulate(ctx, node->in[1], node->out->grad, 1.0f);
}

int vn__scale_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__scale_state *st = node->state;
    KCHECK(ctx, "scale", vn__k_axpby(S(), node->out->data, node->in[0]->data, node->out->numel,
                                     st->s, true));
    return VN_OK;
}

void vn__scale_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    accumulate(ctx, node->in[0], node->out->grad, ((const vn__scale_state *)node->state)->s);
}

int vn__reshape_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    (void)node;
    return VN_OK;
}

void vn__reshape_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    accumulate(ctx, node->in[0], node->out->grad, 1.0f);
}

/* ---- batch_norm2d: bufs[0] = mean[C] then invstd[C] ------------------------------------ */

int vn__batch_norm2d_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    vn__bn_state *st = node->state;
    const int64_t R = st->rows, C = st->channels;
    const vn_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    float *stats = vn__cuda_scratch(ctx, (size_t)(2 * C) * sizeof(float), "batch_norm2d");
    if (!stats) return VN_ERR_NOMEM;
    vn__node_keep(node, stats);
    float *mean = stats, *invstd = stats + C;
    if (st->training) {
        /* Data-parallel hooks (vn_ctx.h): the batch statistics recorded for a replay in the
         * global order instead of the running update; sync BN has no device path yet. */
        const vn_bn_hooks *h = vn__ctx_bn_hooks(ctx);
        if (h && h->allgather && h->ranks > 1) {
            vn_ctx_fail(ctx, VN_ERR_UNSUPPORTED, "batch_norm2d: sync BN across ranks has no CUDA "
                        "path (model.sync_bn: false keeps the statistics per rank)");
            return VN_ERR_UNSUPPORTED;
        }
        bool record = h && h->record && st->running_mean;
        int parts = reduce_parts(R);
        size_t nrec = st->running_mean ? (size_t)(2 * C) : 0;
        double *part = vn__cuda_scratch(ctx, (size_t)(2 * parts * C + nrec) * sizeof(double),
                                        "batch_norm2d");
        if (!part) return VN_ERR_NOMEM;
        double *rec = nrec ? part + 2 * parts * C : NULL;
        int e = vn__k_bn_stats(S(), mean, invstd, rec, part, x->data, R, C, st->eps, parts);
        if (!e && rec && !record)
            e = vn__k_bn_running(S(), st->running_mean->data, st->running_var->data, rec, R, C,
                                 st->momentum);
        double *host = NULL;
        if (!e && record) { /* mean and biased variance, read back (step memory) for the hook */
            host = vn__arena_alloc(ctx, (size_t)(2 * C) * sizeof *host);
            if (!host || vn__cuda_copy(host, rec, (size_t)(2 * C) * sizeof *host) != VN_OK) {
                vn__pool_free(ctx, part);
                vn_ctx_fail(ctx, VN_ERR_IO, "batch_norm2d: reading the batch statistics back "
                            "for the data-parallel replay failed");
                return VN_ERR_IO;
            }
        }
        vn__pool_free(ctx, part);
        if (e) return vn__cuda_fail(ctx, "batch_norm2d", e);
        if (host) {
            for (int64_t c = 0; c < C; c++) host[C + c] = host[C + c] * (double)R / (double)(R - 1);
            h->record(h->user, st->running_mean, st->running_var, st->num_batches_tracked,
                      st->momentum, host, host + C, C);
        } else if (rec && st->num_batches_tracked) {
            (*st->num_batches_tracked)++;
        }
    } else {
        KCHECK(ctx, "batch_norm2d", vn__k_bn_eval_stats(S(), mean, invstd, st->running_mean->data,
                                                        st->running_var->data, C, st->eps));
    }
    KCHECK(ctx, "batch_norm2d", vn__k_bn_apply(S(), node->out->data, x->data, mean, invstd,
                                               w ? w->data : NULL, b ? b->data : NULL, R, C,
                                               st->act, st->act_slope));
    return VN_OK;
}

void vn__batch_norm2d_recompute_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__bn_state *st = node->state;
    const float *xd = vn__data(ctx, node->in[0]);
    if (!xd) return;
    const float *mean = node->bufs[0], *invstd = mean + st->channels;
    const vn_tensor *w = node->in[1], *b = node->in[2];
    KCHECK_V(ctx, "batch_norm2d recompute",
             vn__k_bn_apply(S(), node->out->data, xd, mean, invstd, w ? w->data : NULL,
                            b ? b->data : NULL, st->rows, st->channels, st->act, st->act_slope));
}

void vn__batch_norm2d_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__bn_state *st = node->state;
    const int64_t R = st->rows, C = st->channels;
    vn_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const float *xd = vn__data(ctx, x);
    if (!xd) return;
    const float *zd = st->act ? vn__data(ctx, node->out) : NULL; /* the activation's mask */
    if (st->act && !zd) return;
    const float *mean = node->bufs[0], *invstd = mean + C, *dy = node->out->grad;
    int parts = reduce_parts(R);
    float *sums = vn__cuda_scratch(ctx, (size_t)(2 * C) * sizeof(float), "batch_norm2d");
    double *part = sums ? vn__cuda_scratch(ctx, (size_t)(2 * parts * C) * sizeof(double),
                                           "batch_norm2d") : NULL;
    if (!part) {
        vn__pool_free(ctx, sums);
        return;
    }
    int e = vn__k_bn_grad_sums(S(), sums, sums + C, part, dy, xd, mean, invstd, R, C, parts, zd,
                               st->act_slope);
    vn__pool_free(ctx, part);
    if (!e && vn_tensor_requires_grad(x)) {
        bool assign;
        float *dx = vn__grad_uninit(ctx, x, &assign);
        if (dx) e = vn__k_bn_bwd_dx(S(), dx, dy, xd, mean, invstd, w ? w->data : NULL, sums,
                                    sums + C, R, C, st->training, assign, zd, st->act_slope);
    }
    if (!e && w && vn_tensor_requires_grad(w)) {
        float *dw = vn__grad(ctx, w);
        if (dw) e = vn__k_accumulate(S(), dw, sums + C, C);
    }
    if (!e && b && vn_tensor_requires_grad(b)) {
        float *db = vn__grad(ctx, b);
        if (db) e = vn__k_accumulate(S(), db, sums, C);
    }
    vn__pool_free(ctx, sums);
    if (e) vn__cuda_fail(ctx, "batch_norm2d backward", e);
}

/* ---- pools: bufs[0] = int32 argmax per output (max pools, when recording) -------------- */

int vn__max_pool_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__pool_state *s = node->state;
    int32_t *arg = NULL;
    if (node->recording) {
        arg = vn__cuda_scratch(ctx, (size_t)node->out->numel * sizeof(int32_t),
                               vn_op_name(node->op));
        if (!arg) return VN_ERR_NOMEM;
        vn__node_keep(node, arg);
    }
    KCHECK(ctx, vn_op_name(node->op),
           vn__k_maxpool_fwd(S(), node->out->data, arg, node->in[0]->data, s->n, s->h, s->w, s->c,
                             s->oh, s->ow, s->k));
    return VN_OK;
}

void vn__max_pool_recompute_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__pool_state *s = node->state;
    const float *xd = vn__data(ctx, node->in[0]);
    if (!xd) return;
    KCHECK_V(ctx, vn_op_name(node->op),
             vn__k_maxpool_fwd(S(), node->out->data, NULL, xd, s->n, s->h, s->w, s->c, s->oh,
                               s->ow, s->k));
}

void vn__max_pool_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__pool_state *s = node->state;
    bool fresh;
    float *dx = vn__grad_uninit(ctx, node->in[0], &fresh);
    if (!dx) return;
    KCHECK_V(ctx, vn_op_name(node->op),
             vn__k_maxpool_bwd(S(), dx, node->out->grad, node->bufs[0], s->n, s->h, s->w, s->c,
                               s->oh, s->ow, s->k, fresh));
}

int vn__avg_pool_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__pool_state *s = node->state;
    KCHECK(ctx, "adaptive_avg_pool2d",
           vn__k_avgpool_fwd(S(), node->out->data, node->in[0]->data, s->n, s->h, s->w, s->c,
                             s->oh, s->ow));
    return VN_OK;
}

void vn__avg_pool_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__pool_state *s = node->state;
    float *dx = vn__grad(ctx, node->in[0]);
    if (!dx) return;
    KCHECK_V(ctx, "adaptive_avg_pool2d backward",
             vn__k_avgpool_bwd(S(), dx, node->out->grad, s->n, s->h, s->w, s->c, s->oh, s->ow));
}

/* ---- losses: bufs[0] = lse and row losses (double), bufs[1] = labels or targets ------- */

int vn__cross_entropy_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    vn__ce_state *st = node->state;
    const int64_t R = st->rows, C = st->classes;
    size_t tbytes = st->labels ? (size_t)R * sizeof(int32_t) : (size_t)(R * C) * sizeof(float);
    double *rowbuf = vn__cuda_scratch(ctx, (size_t)(2 * R) * sizeof(double), "cross_entropy");
    if (!rowbuf) return VN_ERR_NOMEM;
    vn__node_keep(node, rowbuf);
    void *t = vn__cuda_scratch(ctx, tbytes, "cross_entropy");
    if (!t) return VN_ERR_NOMEM;
    vn__node_keep(node, t);
    if (vn__dev_copy(VN_DEVICE_CUDA, t, VN_DEVICE_CPU,
                     st->labels ? (const void *)st->labels : (const void *)st->targets,
                     tbytes) != VN_OK)
        return vn__cuda_fail(ctx, "cross_entropy: copying the targets", (int)cudaGetLastError());
    const bool soft = st->labels == NULL;
    st->labels = NULL;
    st->targets = NULL;
    KCHECK(ctx, "cross_entropy",
           vn__k_ce_fwd(S(), node->out->data, rowbuf, node->in[0]->data, soft ? NULL : t,
                        soft ? t : NULL, R, C, st->smoothing));
    return VN_OK;
}

/* The start of a loss backward: the logits' data (*xd) and gradient buffer, written rather
 * than added when *assign; NULL when x needs no gradient or either is not available. */
static float *loss_grad(vn_ctx *ctx, vn_tensor *x, const float **xd, bool *assign)
{
    if (!vn_tensor_requires_grad(x)) return NULL;
    *xd = vn__data(ctx, x);
    return *xd ? vn__grad_uninit(ctx, x, assign) : NULL;
}

void vn__cross_entropy_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const vn__ce_state *st = node->state;
    const float *xd;
    bool assign;
    float *dx = loss_grad(ctx, node->in[0], &xd, &assign);
    if (!dx) return;
    KCHECK_V(ctx, "cross_entropy backward",
             vn__k_ce_bwd(S(), dx, node->out->grad, xd, node->bufs[0],
                          st->soft ? NULL : node->bufs[1], st->soft ? node->bufs[1] : NULL,
                          st->rows, st->classes, st->smoothing, assign));
}

#define BCE_PARTS 256

int vn__bce_with_logits_forward_cuda(vn_ctx *ctx, vn_node *node)
{
    vn__bce_state *st = node->state;
    const int64_t n = node->in[0]->numel;
    float *t = vn__cuda_scratch(ctx, (size_t)n * sizeof(float), "bce_with_logits");
    if (!t) return VN_ERR_NOMEM;
    vn__node_keep(node, t);
    double *part = vn__cuda_scratch(ctx, BCE_PARTS * sizeof(double), "bce_with_logits");
    if (!part) return VN_ERR_NOMEM;
    int rc = vn__dev_copy(VN_DEVICE_CUDA, t, VN_DEVICE_CPU, st->targets, (size_t)n * sizeof(float));
    st->targets = NULL;
    int e = rc == VN_OK ? vn__k_bce_fwd(S(), node->out->data, part, node->in[0]->data, t, n) : 0;
    vn__pool_free(ctx, part);
    if (rc != VN_OK) return vn__cuda_fail(ctx, "bce_with_logits: copying the targets", 1);
    if (e) return vn__cuda_fail(ctx, "bce_with_logits", e);
    return VN_OK;
}

void vn__bce_with_logits_backward_cuda(vn_ctx *ctx, vn_node *node)
{
    const float *xd;
    bool assign;
    float *dx = loss_grad(ctx, node->in[0], &xd, &assign);
    if (!dx) return;
    KCHECK_V(ctx, "bce_with_logits backward", vn__k_bce_bwd(S(), dx, node->out->grad, xd,
                                                            node->bufs[0], node->in[0]->numel,
                                                            assign));
}
