/* Losses: cross-entropy (hard labels with optional label smoothing, or soft targets) and
 * binary cross-entropy with logits. Both return the mean as a tensor of shape [1].
 *
 * Per-row (or per-chunk) losses are computed in double in parallel and summed in a fixed
 * order, so the loss does not depend on the thread count. Labels and targets are copied
 * into step memory: the caller's buffers may be reused before backward runs. */
#include "autograd/ops_impl.h"
#include "autograd/ops_state.h"

#include <math.h>
#include <string.h>

/* Elements per chunk of the BCE sum: fixed, so the sum's order is too. */
#define BCE_CHUNK 4096

/* ---- cross-entropy ------------------------------------------------------------------ */

typedef vn__ce_state ce_state;

/* log(sum exp(x)) of one row, in double. */
static double row_lse(const float *x, int64_t C)
{
    float m = x[0];
    for (int64_t c = 1; c < C; c++) m = x[c] > m ? x[c] : m;
    double s = 0.0;
    for (int64_t c = 0; c < C; c++) s += exp((double)x[c] - (double)m);
    return (double)m + log(s);
}

/* bufs[0]: per-row logsumexp (double); bufs[1]: labels (int32) or targets (float). */
void vn__cross_entropy_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const ce_state *st = node->state;
    vn_tensor *x = node->in[0];
    bool fresh;
    float *dx = vn__input_grad(ctx, x, &fresh);
    if (!dx) return;
    const int64_t R = st->rows, C = st->classes;
    const double *lse = node->bufs[0];
    const int32_t *labels = node->bufs[1];
    const float *targets = node->bufs[1];
    const double scale = (double)node->out->grad[0] / (double)R;
    const double s = st->smoothing, off = s / (double)C;
    const float *xd = vn__data(ctx, x);
    if (!xd) return;
#pragma omp parallel for schedule(static) if (R * C >= VN_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = xd + r * C;
        float *dr = dx + r * C;
        if (st->soft) {
            /* d/dx_c sum_k -t_k logp_k = softmax_c * sum_k t_k - t_c */
            const float *tr = targets + r * C;
            double tsum = 0.0;
            for (int64_t c = 0; c < C; c++) tsum += tr[c];
            for (int64_t c = 0; c < C; c++) {
                double v = scale * (exp((double)xr[c] - lse[r]) * tsum - (double)tr[c]);
                dr[c] = fresh ? (float)v : dr[c] + (float)v;
            }
        } else {
            /* softmax_c - (1 - s) [c == y] - s / C */
            int32_t y = labels[r];
            for (int64_t c = 0; c < C; c++) {
                double v = exp((double)xr[c] - lse[r]) - off - (c == y ? 1.0 - s : 0.0);
                dr[c] = fresh ? (float)(scale * v) : dr[c] + (float)(scale * v);
            }
        }
    }
}

/* Keeps the per-row logsumexp and a copy of the labels or targets for backward. */
int vn__cross_entropy_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    ce_state *st = node->state;
    const int64_t R = st->rows, C = st->classes;
    const int32_t *labels = st->labels;
    const float *targets = st->targets;
    size_t tbytes = labels ? (size_t)R * sizeof(int32_t) : (size_t)(R * C) * sizeof(float);
    /* Per-row logsumexp (kept for backward), then per-row loss. */
    double *rowbuf = vn__pool_alloc(ctx, (size_t)(2 * R) * sizeof(double));
    void *tcopy = node->recording ? vn__pool_alloc(ctx, tbytes) : NULL;
    if (rowbuf) vn__node_keep(node, rowbuf);
    if (tcopy) vn__node_keep(node, tcopy);
    if (!rowbuf || (node->recording && !tcopy)) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "cross_entropy: out of memory");
        return VN_ERR_NOMEM;
    }
    if (tcopy) memcpy(tcopy, labels ? (const void *)labels : (const void *)targets, tbytes);
    st->labels = NULL;
    st->targets = NULL;
    double *lse = rowbuf, *row_loss = rowbuf + R;
    const float *xd = node->in[0]->data;
    const double s = st->smoothing;
#pragma omp parallel for schedule(static) if (R * C >= VN_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = xd + r * C;
        double l = row_lse(xr, C);
        lse[r] = l;
        if (targets) {
            const float *tr = targets + r * C;
            double acc = 0.0;
            for (int64_t c = 0; c < C; c++) acc += (double)tr[c] * (l - (double)xr[c]);
            row_loss[r] = acc;
        } else {
            double nll = l - (double)xr[labels[r]];
            double mean_x = 0.0;
            if (s != 0.0) {
                for (int64_t c = 0; c < C; c++) mean_x += xr[c];
                mean_x /= (double)C;
            }
            row_loss[r] = (1.0 - s) * nll + (s != 0.0 ? s * (l - mean_x) : 0.0);
        }
    }
    double total = 0.0;
    for (int64_t r = 0; r < R; r++) total += row_loss[r];
    node->out->data[0] = (float)(total / (double)R);
    return VN_OK;
}

vn_tensor *vn_cross_entropy(vn_ctx *ctx, vn_tensor *logits, const int32_t *labels,
                            const float *targets, float smoothing)
{
    if (!vn__ok(ctx, 1, &logits)) return NULL;
    char sbuf[96];
    if (logits->ndim < 1 || logits->numel <= 0)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "cross_entropy: empty logits %s",
                           vn_shape_str(logits->ndim, logits->shape, sbuf, sizeof sbuf));
    if (!labels == !targets)
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "cross_entropy: give exactly one of labels and "
                           "soft targets (got %s)", labels ? "both" : "neither");
    if (!(smoothing >= 0.0f && smoothing <= 1.0f))
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "cross_entropy: label smoothing must be in "
                           "[0, 1], got %g", (double)smoothing);
    const int64_t C = logits->shape[logits->ndim - 1], R = logits->numel / C;
    if (labels)
        for (int64_t r = 0; r < R; r++)
            if (labels[r] < 0 || labels[r] >= C)
                return vn_ctx_fail(ctx, VN_ERR_INVALID, "cross_entropy: label %d at row %lld is "
                                   "out of range [0, %lld)", (int)labels[r], (long long)r,
                                   (long long)C);

    vn_tensor *out = vn_ctx_tensor(ctx, 1, (int64_t[]){1});
    vn_node *node = out ? vn__node_new(ctx, VN_OP_CROSS_ENTROPY, 1, &logits, out,
                                       sizeof(ce_state)) : NULL;
    if (!node) return NULL;
    ce_state *st = node->state;
    st->rows = R;
    st->classes = C;
    st->smoothing = smoothing;
    st->soft = targets != NULL;
    st->labels = labels;
    st->targets = targets;
    if (node->recording) vn__save(node, 0);
    return vn__run(ctx, node);
}

/* ---- binary cross-entropy with logits ------------------------------------------------ */

typedef vn__bce_state bce_state;

void vn__bce_with_logits_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    vn_tensor *x = node->in[0];
    bool fresh;
    float *dx = vn__input_grad(ctx, x, &fresh);
    if (!dx) return;
    const float *t = node->bufs[0], *xd = vn__data(ctx, x);
    if (!xd) return;
    const int64_t n = x->numel;
    const float scale = (float)((double)node->out->grad[0] / (double)n);
#pragma omp parallel for schedule(static) if (n >= VN_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        /* d/dx = sigmoid(x) - t, with sigmoid written to avoid overflow of exp. */
        float v = xd[i];
        float e = expf(-fabsf(v));
        float sig = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        float d = scale * (sig - t[i]);
        dx[i] = fresh ? d : dx[i] + d;
    }
}

/* Keeps a copy of the targets for backward. */
int vn__bce_with_logits_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    bce_state *st = node->state;
    const float *targets = st->targets;
    st->targets = NULL;
    const int64_t n = node->in[0]->numel;
    const int64_t nch = vn_chunk_count(n, BCE_CHUNK);
    double *part = vn__pool_alloc(ctx, (size_t)nch * sizeof(double));
    if (!part) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "bce_with_logits: out of memory");
        return VN_ERR_NOMEM;
    }
    const float *xd = node->in[0]->data;
#pragma omp parallel for schedule(static) if (n >= VN_PAR_MIN)
    for (int64_t k = 0; k < nch; k++) {
        int64_t i0, i1;
        vn_chunk_range(k, n, BCE_CHUNK, &i0, &i1);
        double acc = 0.0;
        for (int64_t i = i0; i < i1; i++) {
            double x = xd[i];
            acc += (x > 0.0 ? x : 0.0) - x * (double)targets[i] + log1p(exp(-fabs(x)));
        }
        part[k] = acc;
    }
    double total = 0.0;
    for (int64_t k = 0; k < nch; k++) total += part[k];
    vn__pool_free(ctx, part);
    node->out->data[0] = (float)(total / (double)n);
    if (!node->recording) return VN_OK;
    float *tcopy = vn__pool_alloc(ctx, (size_t)n * sizeof(float));
    if (!tcopy) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "bce_with_logits: out of memory");
        return VN_ERR_NOMEM;
    }
    memcpy(tcopy, targets, (size_t)n * sizeof(float));
    vn__node_keep(node, tcopy);
    return VN_OK;
}

vn_tensor *vn_bce_with_logits(vn_ctx *ctx, vn_tensor *logits, const float *targets)
{
    if (!vn__ok(ctx, 1, &logits)) return NULL;
    if (!targets)
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "bce_with_logits: targets are NULL");
    if (logits->numel <= 0)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "bce_with_logits: empty logits");
    vn_tensor *out = vn_ctx_tensor(ctx, 1, (int64_t[]){1});
    vn_node *node = out ? vn__node_new(ctx, VN_OP_BCE_WITH_LOGITS, 1, &logits, out,
                                       sizeof(bce_state)) : NULL;
    if (!node) return NULL;
    ((bce_state *)node->state)->targets = targets;
    if (node->recording) vn__save(node, 0);
    return vn__run(ctx, node);
}
