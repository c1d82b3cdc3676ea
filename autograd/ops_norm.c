/* BatchNorm2d on NHWC activations: forward and backward, training and eval.
 *
 * x is [N, H, W, C]; every per-channel statistic is a reduction over the R = N*H*W rows.
 * Reductions split the rows into fixed chunks of VN_REDUCE_CHUNK rows, accumulate each
 * chunk in double (vectorised along C), and add the chunk partials in chunk order, so the
 * result is the same bytes for any thread count. Forward reads x twice (statistics, then
 * normalise) and writes y once; backward reads g and x twice and writes dx once. Only the
 * per-channel mean and inverse standard deviation are saved: backward recomputes x_hat
 * from x, which stays alive as the op's input. */
#include "autograd/ops_impl.h"
#include "autograd/ops_state.h"

#include <math.h>
#include <string.h>

/* Channels handled per inner block: two double accumulators of this size stay in L1. */
#define BN_CBLOCK 256

typedef vn__bn_state bn_state;

static int64_t bn_nchunks(int64_t rows) { return vn_chunk_count(rows, VN_REDUCE_CHUNK); }

/* Sums over rows [r0, r1) of d = x - shift and d*d for the channels [c0, c0 + cn), added
 * into s and q. The shift (the first row) keeps sum(d*d) from cancelling when the mean is
 * large next to the spread. Four rows at a time are summed in float (8-wide vectors, a
 * 4-term sum, so little rounding) and that sum is added into double accumulators: as fast as
 * a plain float sum, about twice the speed of converting every element to double. */
static inline void bn_stats_block(const float *x, int64_t r0, int64_t r1, int64_t C, int64_t c0,
                                  int64_t cn, const float *k, double *s, double *q)
{
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const float *x0 = x + r * C + c0, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        for (int64_t c = 0; c < cn; c++) {
            float d0 = x0[c] - k[c], d1 = x1[c] - k[c], d2 = x2[c] - k[c], d3 = x3[c] - k[c];
            s[c] += (double)((d0 + d1) + (d2 + d3));
            q[c] += (double)((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3));
        }
    }
    for (; r < r1; r++) {
        const float *xr = x + r * C + c0;
        for (int64_t c = 0; c < cn; c++) {
            float d = xr[c] - k[c];
            s[c] += (double)d;
            q[c] += (double)(d * d);
        }
    }
}

/* Sums of g and g * (x - mean) (backward), as above, with m the mean of channel c0 on. */
static inline void bn_grad_block(const float *g, const float *x, int64_t r0, int64_t r1,
                                 int64_t C, int64_t c0, int64_t cn, const float *m, double *s,
                                 double *q)
{
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const float *x0 = x + r * C + c0, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        const float *g0 = g + r * C + c0, *g1 = g0 + C, *g2 = g1 + C, *g3 = g2 + C;
        for (int64_t c = 0; c < cn; c++) {
            float p0 = g0[c] * (x0[c] - m[c]), p1 = g1[c] * (x1[c] - m[c]);
            float p2 = g2[c] * (x2[c] - m[c]), p3 = g3[c] * (x3[c] - m[c]);
            s[c] += (double)((g0[c] + g1[c]) + (g2[c] + g3[c]));
            q[c] += (double)((p0 + p1) + (p2 + p3));
        }
    }
    for (; r < r1; r++) {
        const float *xr = x + r * C + c0, *gr = g + r * C + c0;
        for (int64_t c = 0; c < cn; c++) {
            s[c] += (double)gr[c];
            q[c] += (double)(gr[c] * (xr[c] - m[c]));
        }
    }
}

/* The gradient at the normalised value of an op with the activation (vn_batch_norm2d_leaky):
 * leaky_relu's backward, read from the output z (its sign is the input's for slope >= 0). */
static inline float act_grad(float dz, float z, float slope) { return z > 0.0f ? dz : dz * slope; }

/* bn_grad_block for an op with the activation: g there is act_grad(dz, z), the same floats as
 * the gradient leaky_relu's backward hands to a separate BatchNorm. */
static inline void bn_grad_block_act(const float *dz, const float *z, float slope,
                                     const float *x, int64_t r0, int64_t r1, int64_t C,
                                     int64_t c0, int64_t cn, const float *m, double *s, double *q)
{
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const float *x0 = x + r * C + c0, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        const float *d0 = dz + r * C + c0, *d1 = d0 + C, *d2 = d1 + C, *d3 = d2 + C;
        const float *z0 = z + r * C + c0, *z1 = z0 + C, *z2 = z1 + C, *z3 = z2 + C;
        for (int64_t c = 0; c < cn; c++) {
            float g0 = act_grad(d0[c], z0[c], slope), g1 = act_grad(d1[c], z1[c], slope);
            float g2 = act_grad(d2[c], z2[c], slope), g3 = act_grad(d3[c], z3[c], slope);
            float p0 = g0 * (x0[c] - m[c]), p1 = g1 * (x1[c] - m[c]);
            float p2 = g2 * (x2[c] - m[c]), p3 = g3 * (x3[c] - m[c]);
            s[c] += (double)((g0 + g1) + (g2 + g3));
            q[c] += (double)((p0 + p1) + (p2 + p3));
        }
    }
    for (; r < r1; r++) {
        const float *xr = x + r * C + c0, *dr = dz + r * C + c0, *zr = z + r * C + c0;
        for (int64_t c = 0; c < cn; c++) {
            float g = act_grad(dr[c], zr[c], slope);
            s[c] += (double)g;
            q[c] += (double)(g * (xr[c] - m[c]));
        }
    }
}

/* One chunk of rows [r0, r1): its partial sums ps and pq ([C] each) of the statistics (g is
 * NULL, ref the shift) or of the gradient (ref the mean; through the activation when z, the
 * output, is given), a block of channels at a time. */
static void bn_chunk(const float *g, const float *z, float slope, const float *x, int64_t r0,
                     int64_t r1, int64_t C, const float *ref, double *ps, double *pq)
{
    for (int64_t c0 = 0; c0 < C; c0 += BN_CBLOCK) {
        int64_t cn = C - c0 < BN_CBLOCK ? C - c0 : BN_CBLOCK;
        double s[BN_CBLOCK], q[BN_CBLOCK];
        for (int64_t c = 0; c < cn; c++) s[c] = q[c] = 0.0;
        if (g && z) bn_grad_block_act(g, z, slope, x, r0, r1, C, c0, cn, ref + c0, s, q);
        else if (g) bn_grad_block(g, x, r0, r1, C, c0, cn, ref + c0, s, q);
        else bn_stats_block(x, r0, r1, C, c0, cn, ref + c0, s, q);
        memcpy(ps + c0, s, (size_t)cn * sizeof(double));
        memcpy(pq + c0, q, (size_t)cn * sizeof(double));
    }
}

typedef struct {
    const float *g, *z, *x, *ref;
    float slope;
    int64_t R, C;
    double *pa, *pb;
} reduce_job;

static void bn_reduce_chunks(void *arg, int64_t k0, int64_t k1, int tid)
{
    (void)tid;
    const reduce_job *J = arg;
    for (int64_t k = k0; k < k1; k++) {
        int64_t r0, r1;
        vn_chunk_range(k, J->R, VN_REDUCE_CHUNK, &r0, &r1);
        bn_chunk(J->g, J->z, J->slope, J->x, r0, r1, J->C, J->ref, J->pa + k * J->C,
                 J->pb + k * J->C);
    }
}

/* Runs bn_chunk over all rows and adds the partials in chunk order into
 * sum_a and sum_b ([C] each). `part` is scratch of 2 * nchunks * C doubles. */
static void bn_reduce(const float *g, const float *z, float slope, const float *x, int64_t R,
                      int64_t C, const float *ref, double *part, double *sum_a, double *sum_b)
{
    int64_t nch = bn_nchunks(R);
    double *pa = part, *pb = part + nch * C;
    reduce_job J = {g, z, x, ref, slope, R, C, pa, pb};
    vn_par_for(nch, R * C >= VN_PAR_MIN, bn_reduce_chunks, &J);
    for (int64_t c = 0; c < C; c++) sum_a[c] = sum_b[c] = 0.0;
    for (int64_t k = 0; k < nch; k++) {
        const double *a = pa + k * C, *b = pb + k * C;
        for (int64_t c = 0; c < C; c++) {
            sum_a[c] += a[c];
            sum_b[c] += b[c];
        }
    }
}

typedef struct {
    float *y;
    const float *x, *mean, *alpha, *beta;
    int64_t C;
    float slope;
    bool act;
} apply_job;

static void bn_apply_rows(void *arg, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const apply_job *J = arg;
    const int64_t C = J->C;
    const float *mean = J->mean, *alpha = J->alpha, *beta = J->beta;
    if (J->act) {
        const float slope = J->slope;
        for (int64_t r = r0; r < r1; r++) {
            const float *xr = J->x + r * C;
            float *yr = J->y + r * C;
            for (int64_t c = 0; c < C; c++) {
                float v = (xr[c] - mean[c]) * alpha[c] + beta[c];
                yr[c] = v > 0.0f ? v : v * slope;
            }
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = J->x + r * C;
        float *yr = J->y + r * C;
        for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mean[c]) * alpha[c] + beta[c];
    }
}

/* y = (x - mean) * alpha + beta, per channel; with the activation (st->act) y is
 * leaky_relu(that, st->act_slope), the values the two separate ops give. */
static void bn_apply(float *y, const float *x, int64_t R, int64_t C, const float *mean,
                     const float *alpha, const float *beta, const bn_state *st)
{
    apply_job J = {y, x, mean, alpha, beta, C, st->act_slope, st->act};
    vn_par_for(R, R * C >= VN_PAR_MIN, bn_apply_rows, &J);
}

/* Sync BN backward: glob = [sum_g, sum_gx] added over every rank. */
static bool bn_sum_ranks(vn_ctx *ctx, const double *sum_g, const double *sum_gx, double *glob,
                         int64_t C)
{
    const vn_bn_hooks *h = vn__ctx_bn_hooks(ctx);
    memcpy(glob, sum_g, (size_t)C * sizeof(double));
    memcpy(glob + C, sum_gx, (size_t)C * sizeof(double));
    if (!h || !h->allreduce || h->allreduce(h->user, glob, 2 * C) != VN_OK) {
        vn_ctx_fail(ctx, VN_ERR_IO, "batch_norm2d backward: the sync BN sum over ranks failed");
        return false;
    }
    return true;
}

typedef struct {
    float *dx;
    const float *g, *z, *x, *mean, *ca, *cb, *cd;
    int64_t C;
    float slope;
    bool fresh;
} dx_job;

static void bn_dx_rows(void *arg, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const dx_job *J = arg;
    const int64_t C = J->C;
    const float *mean = J->mean, *ca = J->ca, *cb = J->cb, *cd = J->cd;
    const bool fresh = J->fresh;
    if (J->z) {
        const float slope = J->slope;
        for (int64_t r = r0; r < r1; r++) {
            const float *xr = J->x + r * C, *gr = J->g + r * C, *zr = J->z + r * C;
            float *dr = J->dx + r * C;
            for (int64_t c = 0; c < C; c++) {
                float v = ca[c] * act_grad(gr[c], zr[c], slope) + cb[c] * (xr[c] - mean[c]) +
                          cd[c];
                dr[c] = fresh ? v : dr[c] + v;
            }
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = J->x + r * C, *gr = J->g + r * C;
        float *dr = J->dx + r * C;
        if (fresh)
            for (int64_t c = 0; c < C; c++)
                dr[c] = ca[c] * gr[c] + cb[c] * (xr[c] - mean[c]) + cd[c];
        else
            for (int64_t c = 0; c < C; c++)
                dr[c] += ca[c] * gr[c] + cb[c] * (xr[c] - mean[c]) + cd[c];
    }
}

/* dx (+)= ca*g + cb*(x - mean) + cd per channel, g taken back through the activation when z
 * (the output) is given. dx may be g itself: each element is read before it is written. */
static void bn_dx(float *dx, bool fresh, const float *g, const float *z, float slope,
                  const float *x, int64_t R, int64_t C, const float *mean, const float *ca,
                  const float *cb, const float *cd)
{
    dx_job J = {dx, g, z, x, mean, ca, cb, cd, C, slope, fresh};
    vn_par_for(R, R * C >= VN_PAR_MIN, bn_dx_rows, &J);
}

void vn__batch_norm2d_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const bn_state *st = node->state;
    vn_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const int64_t R = st->rows, C = st->channels;
    const float *g = node->out->grad;
    const float *mean = node->bufs[0];
    const float *invstd = mean + C;
    const float *xd = vn__data(ctx, x);
    if (!xd) return;
    /* With the activation, g is the gradient at the output z: act_grad(g, z) is the one at the
     * normalised value, computed where it is read. */
    const float *zd = st->act ? vn__data(ctx, node->out) : NULL;
    if (st->act && !zd) return;
    const float slope = st->act_slope;

    bool need_x = vn_tensor_requires_grad(x);
    bool need_w = w && vn_tensor_requires_grad(w);
    bool need_b = b && vn_tensor_requires_grad(b);
    /* Eval-mode dx needs no statistics of g; training dx and both parameter grads do. */
    bool need_sums = need_w || need_b || (need_x && st->training);

    /* One pool buffer: chunk partials, then the [C] sums and the dx coefficients. */
    int64_t nch = need_sums ? bn_nchunks(R) : 0;
    size_t bytes = (size_t)(2 * nch * C + 4 * C) * sizeof(double) + (size_t)(3 * C) * sizeof(float);
    double *part = vn__pool_alloc(ctx, bytes);
    if (!part) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "batch_norm2d backward: out of memory for %zu bytes", bytes);
        return;
    }
    double *sum_g = part + 2 * nch * C, *sum_gx = sum_g + C, *glob = sum_gx + C;
    float *ca = (float *)(glob + 2 * C), *cb = ca + C, *cd = cb + C;

    if (need_sums) bn_reduce(g, zd, slope, xd, R, C, mean, part, sum_g, sum_gx);

    if (need_w) {
        float *dw = vn__grad(ctx, w);
        if (!dw) goto done;
        for (int64_t c = 0; c < C; c++) dw[c] += (float)(sum_gx[c] * (double)invstd[c]);
    }
    if (need_b) {
        float *db = vn__grad(ctx, b);
        if (!db) goto done;
        for (int64_t c = 0; c < C; c++) db[c] += (float)sum_g[c];
    }
    if (need_x) {
        /* dx = k*g + B*(x - mean) + D with k = weight * invstd; in training
         * B = -k * invstd^2 * sum(g*(x-mean)) / R and D = -k * sum(g) / R, in eval 0.
         * Sync BN: the sums and R over every rank. */
        double Rd = (double)R;
        if (st->training && st->global_rows > 0 && !bn_sum_ranks(ctx, sum_g, sum_gx, glob, C)) goto done;
        if (st->training && st->global_rows > 0) {
            sum_g = glob;
            sum_gx = glob + C;
            Rd = (double)st->global_rows;
        }
        for (int64_t c = 0; c < C; c++) {
            double k = (double)invstd[c] * (w ? (double)w->data[c] : 1.0);
            ca[c] = (float)k;
            if (st->training) {
                double is = invstd[c];
                cb[c] = (float)(-k * is * is * sum_gx[c] / Rd);
                cd[c] = (float)(-k * sum_g[c] / Rd);
            } else {
                cb[c] = 0.0f;
                cd[c] = 0.0f;
            }
        }
        bool fresh;
        float *dx = vn__grad_over_out(ctx, node, x, &fresh); /* in place over g: read before written */
        if (dx) bn_dx(dx, fresh, g, zd, slope, xd, R, C, mean, ca, cb, cd);
    }
done:
    vn__pool_free(ctx, part);
}

/* The output again from the saved input and per-channel coefficients (same bytes). */
void vn__batch_norm2d_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const bn_state *st = node->state;
    const float *mean = node->bufs[0], *alpha = mean + 2 * st->channels,
                *beta = mean + 3 * st->channels;
    const float *xd = vn__data(ctx, node->in[0]);
    if (xd) bn_apply(node->out->data, xd, st->rows, st->channels, mean, alpha, beta, st);
}

/* Sync BN forward: replaces the local shifted sums by the statistics of every rank's rows:
 * sum <- global mean, sumsq <- global biased variance, *rows <- global row count. Each rank
 * sends (rows, mean, M2) and all combine them in rank order (Chan et al.'s pairwise update),
 * so every rank computes the same bytes. */
static bool bn_sync_stats(vn_ctx *ctx, const vn_bn_hooks *h, int64_t R, int64_t C,
                          const float *shift, double *sum, double *sumsq, int64_t *rows)
{
    const int64_t n = 1 + 2 * C, K = h->ranks;
    double *buf = vn__pool_alloc(ctx, (size_t)(n * (K + 1)) * sizeof(double));
    if (!buf) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "batch_norm2d: out of memory for sync BN");
        return false;
    }
    double *send = buf, *recv = buf + n;
    send[0] = (double)R;
    for (int64_t c = 0; c < C; c++) {
        double d = sum[c] / (double)R;
        send[1 + c] = (double)shift[c] + d;
        double m2 = sumsq[c] - d * sum[c];
        send[1 + C + c] = m2 > 0.0 ? m2 : 0.0;
    }
    if (h->allgather(h->user, send, n, recv) != VN_OK) {
        vn__pool_free(ctx, buf);
        vn_ctx_fail(ctx, VN_ERR_IO, "batch_norm2d: the sync BN exchange between ranks failed");
        return false;
    }
    double na = recv[0];
    for (int64_t c = 0; c < C; c++) {
        sum[c] = recv[1 + c];
        sumsq[c] = recv[1 + C + c];
    }
    for (int64_t k = 1; k < K; k++) {
        const double *b = recv + k * n;
        double nb = b[0], nab = na + nb;
        for (int64_t c = 0; c < C; c++) {
            double delta = b[1 + c] - sum[c];
            sum[c] += delta * nb / nab;
            sumsq[c] += b[1 + C + c] + delta * delta * na * nb / nab;
        }
        na = nab;
    }
    for (int64_t c = 0; c < C; c++) sumsq[c] /= na;
    *rows = (int64_t)na;
    vn__pool_free(ctx, buf);
    return true;
}

/* Training: batch statistics (and the running statistics updated); eval: the running ones.
 * Keeps mean, invstd, alpha and beta per channel: backward and recompute read them. */
int vn__batch_norm2d_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    const bn_state *st = node->state;
    const vn_tensor *x = node->in[0], *weight = node->in[1], *bias = node->in[2];
    vn_tensor *running_mean = st->running_mean, *running_var = st->running_var;
    const int64_t R = st->rows, C = st->channels;
    const bool training = st->training;
    const double momentum = st->momentum, eps = st->eps;
    int64_t *num_batches_tracked = st->num_batches_tracked;
    /* mean[C], invstd[C], alpha[C], beta[C]: the first two are kept for backward. */
    float *saved = vn__pool_alloc(ctx, (size_t)(4 * C) * sizeof(float));
    if (!saved) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "batch_norm2d: out of memory");
        return VN_ERR_NOMEM;
    }
    vn__node_keep(node, saved);
    float *mean = saved, *invstd = saved + C, *alpha = saved + 2 * C, *beta = saved + 3 * C;

    if (training) {
        const vn_bn_hooks *h = vn__ctx_bn_hooks(ctx);
        bool sync = h && h->allgather && h->ranks > 1, record = h && h->record && !sync;
        int64_t nch = bn_nchunks(R);
        double *part = vn__pool_alloc(ctx, (size_t)(2 * nch * C + 4 * C) * sizeof(double));
        if (!part) {
            vn_ctx_fail(ctx, VN_ERR_NOMEM, "batch_norm2d: out of memory");
            return VN_ERR_NOMEM;
        }
        double *sum = part + 2 * nch * C, *sumsq = sum + C, *rec_m = sumsq + C, *rec_v = rec_m + C;
        const float *shift = x->data; /* the first row */
        bn_reduce(NULL, NULL, 0.0f, x->data, R, C, shift, part, sum, sumsq);
        int64_t rows = R;
        if (sync && !bn_sync_stats(ctx, h, R, C, shift, sum, sumsq, &rows)) {
            vn__pool_free(ctx, part);
            return vn_ctx_status(ctx);
        }
        ((bn_state *)node->state)->global_rows = sync ? rows : 0;
        for (int64_t c = 0; c < C; c++) {
            double m, var;
            if (sync) { /* sum: the global mean, sumsq: the global (biased) variance */
                m = sum[c];
                var = sumsq[c];
            } else {
                double md = sum[c] / (double)R;
                var = sumsq[c] / (double)R - md * md;
                if (var < 0.0) var = 0.0;
                m = (double)shift[c] + md;
            }
            mean[c] = (float)m;
            invstd[c] = (float)(1.0 / sqrt(var + (double)eps));
            double unbiased = var * (double)rows / (double)(rows - 1);
            rec_m[c] = m;
            rec_v[c] = unbiased;
            if (running_mean && !record) {
                running_mean->data[c] = (float)((1.0 - momentum) * running_mean->data[c] +
                                                (double)momentum * m);
                running_var->data[c] = (float)((1.0 - momentum) * running_var->data[c] +
                                               (double)momentum * unbiased);
            }
        }
        if (running_mean && record)
            h->record(h->user, running_mean, running_var, num_batches_tracked, momentum, rec_m, rec_v, C);
        vn__pool_free(ctx, part);
        if (num_batches_tracked && !record) (*num_batches_tracked)++;
    } else {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = running_mean->data[c];
            invstd[c] = (float)(1.0 / sqrt((double)running_var->data[c] + (double)eps));
        }
    }
    for (int64_t c = 0; c < C; c++) {
        alpha[c] = weight ? weight->data[c] * invstd[c] : invstd[c];
        beta[c] = bias ? bias->data[c] : 0.0f;
    }
    bn_apply(node->out->data, x->data, R, C, mean, alpha, beta, st);
    return VN_OK;
}

static vn_tensor *bn_fail_size(vn_ctx *ctx, const char *what, const vn_tensor *t, int64_t C)
{
    return vn_ctx_fail(ctx, VN_ERR_SHAPE, "batch_norm2d: %s has %lld elements but input has "
                       "%lld channels", what, (long long)t->numel, (long long)C);
}

static vn_tensor *bn_common(vn_ctx *ctx, vn_tensor *x, vn_tensor *weight, vn_tensor *bias,
                            vn_tensor *running_mean, vn_tensor *running_var,
                            int64_t *num_batches_tracked, bool training, float momentum,
                            float eps, bool act, float slope)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    char sbuf[96];
    if (x->ndim != 4)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "batch_norm2d: input must be 4-D [N, H, W, C], "
                           "got %s", vn_shape_str(x->ndim, x->shape, sbuf, sizeof sbuf));
    const int64_t C = x->shape[3];
    const int64_t R = x->shape[0] * x->shape[1] * x->shape[2];
    if (C <= 0 || R <= 0)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "batch_norm2d: empty input %s",
                           vn_shape_str(x->ndim, x->shape, sbuf, sizeof sbuf));
    if (weight && weight->numel != C) return bn_fail_size(ctx, "weight", weight, C);
    if (bias && bias->numel != C) return bn_fail_size(ctx, "bias", bias, C);
    if (running_mean && running_mean->numel != C)
        return bn_fail_size(ctx, "running_mean", running_mean, C);
    if (running_var && running_var->numel != C)
        return bn_fail_size(ctx, "running_var", running_var, C);
    if (!running_mean != !running_var)
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "batch_norm2d: running_mean and running_var "
                           "must both be given or both be NULL");
    if (!(eps >= 0.0f) || !isfinite(eps))
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "batch_norm2d: eps must be finite and >= 0, "
                           "got %g", (double)eps);
    if (training && running_mean && !(momentum >= 0.0f && momentum <= 1.0f))
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "batch_norm2d: momentum must be in [0, 1], "
                           "got %g", (double)momentum);
    if (!training && !running_mean)
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "batch_norm2d: eval mode needs running_mean "
                           "and running_var");
    if (training && R == 1)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "batch_norm2d: training needs more than one value "
                           "per channel, got input %s",
                           vn_shape_str(x->ndim, x->shape, sbuf, sizeof sbuf));

    vn_tensor *in[3] = {x, weight, bias};
    vn_tensor *y = vn_ctx_tensor(ctx, 4, x->shape);
    /* Inputs keep their positions (x, weight, bias); weight and bias may be NULL. */
    vn_node *node = y ? vn__node_new(ctx, VN_OP_BATCH_NORM2D, 3, in, y, sizeof(bn_state)) : NULL;
    if (!node) return NULL;
    *(bn_state *)node->state = (bn_state){
        .rows = R, .channels = C, .training = training, .momentum = momentum, .eps = eps,
        .running_mean = running_mean, .running_var = running_var,
        .num_batches_tracked = num_batches_tracked, .act = act, .act_slope = slope,
    };
    if (act) node->variant = "+leaky_relu";
    if (node->recording) {
        vn__save(node, 0);
        if (act) vn__save(node, -1); /* backward reads the output's sign */
        vn__set_recompute(node);
    }
    return vn__run(ctx, node);
}

vn_tensor *vn_batch_norm2d(vn_ctx *ctx, vn_tensor *x, vn_tensor *weight, vn_tensor *bias,
                           vn_tensor *running_mean, vn_tensor *running_var,
                           int64_t *num_batches_tracked, bool training, float momentum,
                           float eps)
{
    return bn_common(ctx, x, weight, bias, running_mean, running_var, num_batches_tracked,
                     training, momentum, eps, false, 0.0f);
}

vn_tensor *vn_batch_norm2d_leaky(vn_ctx *ctx, vn_tensor *x, vn_tensor *weight, vn_tensor *bias,
                                 vn_tensor *running_mean, vn_tensor *running_var,
                                 int64_t *num_batches_tracked, bool training, float momentum,
                                 float eps, float slope)
{
    if (!(slope >= 0.0f)) { /* NaN too: the two ops, whose fronts say what is wrong */
        vn_tensor *y = bn_common(ctx, x, weight, bias, running_mean, running_var,
                                 num_batches_tracked, training, momentum, eps, false, 0.0f);
        vn_tensor *z = y ? vn_leaky_relu(ctx, y, slope) : NULL;
        if (y) vn_release(ctx, y);
        return z;
    }
    return bn_common(ctx, x, weight, bias, running_mean, running_var, num_batches_tracked,
                     training, momentum, eps, true, slope);
}
