/* Pooling on NHWC activations: max (kernel = stride = k), adaptive max, adaptive average
 * and global average, forward and backward.
 *
 * Every kernel walks one image and one block of channels at a time, vectorised along C.
 * Work is split over (image, channel block) pairs, so the gradient of one input element is
 * only ever touched by one thread, in a fixed order, even where adaptive windows overlap.
 * Max pools save the argmax of every output element (one byte each for windows of up to 256
 * positions) for backward, so their input need not stay in memory; when it was released, a
 * dropped output is recomputed from the (recomputed) input. */
#include "autograd/ops_impl.h"
#include "autograd/ops_state.h"

#include <string.h>

#define POOL_CBLOCK 256

typedef vn__pool_state pool_state;

/* PyTorch's adaptive window: [floor(i*in/out), ceil((i+1)*in/out)). */
static inline int64_t ada_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
static inline int64_t ada_end(int64_t i, int64_t in, int64_t out)
{
    return ((i + 1) * in + out - 1) / out;
}

static inline void window(const pool_state *s, int64_t i, int64_t j, int64_t *h0, int64_t *h1,
                          int64_t *w0, int64_t *w1)
{
    if (s->k > 0) {
        *h0 = i * s->k;
        *h1 = *h0 + s->k;
        *w0 = j * s->k;
        *w1 = *w0 + s->k;
    } else {
        *h0 = ada_start(i, s->h, s->oh);
        *h1 = ada_end(i, s->h, s->oh);
        *w0 = ada_start(j, s->w, s->ow);
        *w1 = ada_end(j, s->w, s->ow);
    }
}

/* Max of one window for channels [c0, c0 + cn) of an image, and (when idx is not NULL)
 * the winning position in row-major window order. Like PyTorch's CPU kernel, a later
 * element wins when it is greater or NaN, so ties go to the first maximum and NaN
 * propagates. Forward passes idx = NULL: the positions are only needed in backward. */
static void window_max(const float *img, const pool_state *s, int64_t h0, int64_t h1,
                       int64_t w0, int64_t w1, int64_t c0, int64_t cn, float *m, int32_t *idx)
{
    const int64_t W = s->w, C = s->c;
    const float *first = img + (h0 * W + w0) * C + c0;
    for (int64_t c = 0; c < cn; c++) m[c] = first[c];
    if (idx)
        for (int64_t c = 0; c < cn; c++) idx[c] = 0;
    int32_t p = 0;
    for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++, p++) {
            if (p == 0) continue;
            const float *xr = img + (h * W + w) * C + c0;
            if (idx) {
                for (int64_t c = 0; c < cn; c++) {
                    float v = xr[c];
                    bool take = v > m[c] || v != v;
                    m[c] = take ? v : m[c];
                    idx[c] = take ? p : idx[c];
                }
            } else {
                for (int64_t c = 0; c < cn; c++) {
                    float v = xr[c];
                    m[c] = (v > m[c] || v != v) ? v : m[c];
                }
            }
        }
}

/* Stores one window's argmax positions for channels [c0, c0 + cn). */
static void store_idx(void *dst, int idx_bytes, const int32_t *idx, int64_t cn)
{
    if (idx_bytes == 1)
        for (int64_t c = 0; c < cn; c++) ((uint8_t *)dst)[c] = (uint8_t)idx[c];
    else
        memcpy(dst, idx, (size_t)cn * sizeof(int32_t));
}

/* The tensors of one pooling kernel, handed to its tile function: forward reads x and writes
 * y (and the argmax into idx when not NULL); backward reads dy (and idx) and writes dx,
 * assigning instead of accumulating when `assign`. */
typedef struct pool_io {
    const pool_state *s;
    const float *x, *dy;
    float *y, *dx;
    void *idx;
    bool assign;
} pool_io;

/* Runs one of the tile functions below over every (image, channel block) of the input. */
static void pool_run(const pool_io *io, vn__tile_fn fn)
{
    const pool_state *s = io->s;
    vn__for_each_tile(s->n, s->c, POOL_CBLOCK, s->n * s->h * s->w * s->c >= VN_PAR_MIN, fn, io);
}

/* y = max over each window; when io->idx is not NULL, also the argmax of every output
 * element (idx_bytes each, same layout as y) for backward. */
static void max_forward_tile(const void *arg, int64_t t)
{
    const pool_io *io = arg;
    const pool_state *s = io->s;
    const vn__tile b = vn__tile_at(t, s->c, POOL_CBLOCK);
    const int64_t img_in = s->h * s->w * s->c, img_out = s->oh * s->ow * s->c;
    int32_t idx[POOL_CBLOCK];
    for (int64_t i = 0; i < s->oh; i++)
        for (int64_t j = 0; j < s->ow; j++) {
            int64_t h0, h1, w0, w1;
            window(s, i, j, &h0, &h1, &w0, &w1);
            int64_t o = b.n * img_out + (i * s->ow + j) * s->c + b.c0;
            window_max(io->x + b.n * img_in, s, h0, h1, w0, w1, b.c0, b.cn, io->y + o,
                       io->idx ? idx : NULL);
            if (io->idx) store_idx((char *)io->idx + o * s->idx_bytes, s->idx_bytes, idx, b.cn);
        }
}

static void max_forward(const pool_state *s, const float *x, float *y, void *saved)
{
    pool_io io = {.s = s, .x = x, .y = y, .idx = saved};
    pool_run(&io, max_forward_tile);
}

/* acc[c] += sum of `count` consecutive rows (stride C) for channels [0, cn) from `rows`.
 * Four rows are summed in float, then added in double: a plain float sum's speed with
 * double accumulation over large windows (global pooling of a 56x56 map). */
static void add_rows(double *acc, const float *rows, int64_t count, int64_t C, int64_t cn)
{
    int64_t r = 0;
    for (; r + 4 <= count; r += 4) {
        const float *x0 = rows + r * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        for (int64_t c = 0; c < cn; c++) acc[c] += (double)((x0[c] + x1[c]) + (x2[c] + x3[c]));
    }
    for (; r < count; r++) {
        const float *xr = rows + r * C;
        for (int64_t c = 0; c < cn; c++) acc[c] += (double)xr[c];
    }
}

static void avg_forward_tile(const void *arg, int64_t t)
{
    const pool_io *io = arg;
    const pool_state *s = io->s;
    const vn__tile b = vn__tile_at(t, s->c, POOL_CBLOCK);
    const int64_t W = s->w, C = s->c, cn = b.cn;
    const float *img = io->x + b.n * s->h * W * C + b.c0;
    double acc[POOL_CBLOCK];
    for (int64_t i = 0; i < s->oh; i++)
        for (int64_t j = 0; j < s->ow; j++) {
            int64_t h0, h1, w0, w1;
            window(s, i, j, &h0, &h1, &w0, &w1);
            for (int64_t c = 0; c < cn; c++) acc[c] = 0.0;
            if (w0 == 0 && w1 == W) /* whole rows: one contiguous run */
                add_rows(acc, img + h0 * W * C, (h1 - h0) * W, C, cn);
            else
                for (int64_t h = h0; h < h1; h++)
                    add_rows(acc, img + (h * W + w0) * C, w1 - w0, C, cn);
            double inv = 1.0 / (double)((h1 - h0) * (w1 - w0));
            float *yr = io->y + b.n * s->oh * s->ow * C + (i * s->ow + j) * C + b.c0;
            for (int64_t c = 0; c < cn; c++) yr[c] = (float)(acc[c] * inv);
        }
}

static void avg_forward(const pool_state *s, const float *x, float *y)
{
    pool_io io = {.s = s, .x = x, .y = y};
    pool_run(&io, avg_forward_tile);
}

/* Zeroes the input rows and columns that no fixed-kernel window covers (floor mode). */
static void zero_uncovered(const pool_state *s, float *dx_img, int64_t c0, int64_t cn)
{
    const int64_t hc = s->oh * s->k, wc = s->ow * s->k;
    for (int64_t h = 0; h < s->h; h++)
        for (int64_t w = (h < hc ? wc : 0); w < s->w; w++)
            memset(dx_img + (h * s->w + w) * s->c + c0, 0, (size_t)cn * sizeof(float));
}

static void max_backward_tile(const void *arg, int64_t t)
{
    const pool_io *io = arg;
    const pool_state *s = io->s;
    const vn__tile b = vn__tile_at(t, s->c, POOL_CBLOCK);
    const int64_t W = s->w, C = s->c, c0 = b.c0, cn = b.cn;
    const char *saved = io->idx;
    const bool assign = io->assign;
    int32_t idx[POOL_CBLOCK];
    float *dimg = io->dx + b.n * s->h * W * C;
    if (assign) zero_uncovered(s, dimg, c0, cn);
    for (int64_t i = 0; i < s->oh; i++)
        for (int64_t j = 0; j < s->ow; j++) {
            int64_t h0, h1, w0, w1;
            window(s, i, j, &h0, &h1, &w0, &w1);
            int64_t o = b.n * s->oh * s->ow * C + (i * s->ow + j) * C + c0;
            if (s->idx_bytes == 1)
                for (int64_t c = 0; c < cn; c++) idx[c] = ((const uint8_t *)saved)[o + c];
            else
                memcpy(idx, saved + o * 4, (size_t)cn * sizeof(int32_t));
            const float *gr = io->dy + o;
            int32_t p = 0;
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++, p++) {
                    float *dr = dimg + (h * W + w) * C + c0;
                    if (assign)
                        for (int64_t c = 0; c < cn; c++) dr[c] = idx[c] == p ? gr[c] : 0.0f;
                    else
                        for (int64_t c = 0; c < cn; c++) dr[c] += idx[c] == p ? gr[c] : 0.0f;
                }
        }
}

void vn__max_pool_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const pool_state *s = node->state;
    vn_tensor *x = node->in[0];
    bool fresh;
    float *dx = vn__input_grad(ctx, x, &fresh);
    if (!dx) return;
    /* Fixed-kernel windows are disjoint: a fresh gradient is written, not accumulated. */
    const bool assign = fresh && s->k > 0;
    if (fresh && !assign) memset(dx, 0, (size_t)x->numel * sizeof(float));
    pool_io io = {.s = s, .dy = node->out->grad, .dx = dx, .idx = node->bufs[0], .assign = assign};
    pool_run(&io, max_backward_tile);
}

static void avg_backward_tile(const void *arg, int64_t t)
{
    const pool_io *io = arg;
    const pool_state *s = io->s;
    const vn__tile b = vn__tile_at(t, s->c, POOL_CBLOCK);
    const int64_t W = s->w, C = s->c, cn = b.cn;
    float *dimg = io->dx + b.n * s->h * W * C + b.c0;
    float gs[POOL_CBLOCK];
    for (int64_t i = 0; i < s->oh; i++)
        for (int64_t j = 0; j < s->ow; j++) {
            int64_t h0, h1, w0, w1;
            window(s, i, j, &h0, &h1, &w0, &w1);
            const float area = (float)((h1 - h0) * (w1 - w0));
            const float *gr = io->dy + b.n * s->oh * s->ow * C + (i * s->ow + j) * C + b.c0;
            for (int64_t c = 0; c < cn; c++) gs[c] = gr[c] / area;
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++) {
                    float *dr = dimg + (h * W + w) * C;
                    for (int64_t c = 0; c < cn; c++) dr[c] += gs[c];
                }
        }
}

void vn__avg_pool_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    vn_tensor *x = node->in[0];
    bool fresh;
    float *dx = vn__input_grad(ctx, x, &fresh);
    if (!dx) return;
    if (fresh) memset(dx, 0, (size_t)x->numel * sizeof(float));
    pool_io io = {.s = node->state, .dy = node->out->grad, .dx = dx};
    pool_run(&io, avg_backward_tile);
}

void vn__max_pool_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const float *xd = vn__data(ctx, node->in[0]);
    if (xd) max_forward(node->state, xd, node->out->data, NULL);
}

/* Backward reads the argmax (when recording), not the input. */
int vn__max_pool_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    const pool_state *s = node->state;
    void *saved = NULL;
    if (node->recording) {
        saved = vn__pool_alloc(ctx, (size_t)node->out->numel * (size_t)s->idx_bytes);
        if (!saved) {
            vn_ctx_fail(ctx, VN_ERR_NOMEM, "%s: out of memory", vn_op_name(node->op));
            return VN_ERR_NOMEM;
        }
        vn__node_keep(node, saved);
    }
    max_forward(s, node->in[0]->data, node->out->data, saved);
    return VN_OK;
}

int vn__avg_pool_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    avg_forward(node->state, node->in[0]->data, node->out->data);
    return VN_OK;
}

/* Window positions are counted in row-major order; one byte holds them up to 256. */
static int argmax_bytes(const pool_state *s)
{
    int64_t area = 0;
    for (int64_t i = 0; i < s->oh; i++)
        for (int64_t j = 0; j < s->ow; j++) {
            int64_t h0, h1, w0, w1;
            window(s, i, j, &h0, &h1, &w0, &w1);
            if ((h1 - h0) * (w1 - w0) > area) area = (h1 - h0) * (w1 - w0);
        }
    return area <= 256 ? 1 : 4;
}

/* Shared front end: validates, makes the output and the node, runs it.
 * k > 0: fixed kernel = stride k; k == 0: adaptive windows to oh x ow. */
static vn_tensor *pool_op(vn_ctx *ctx, const char *name, vn_op op, vn_tensor *x, int k,
                          int64_t oh, int64_t ow, bool is_max)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    char sbuf[96];
    if (x->ndim != 4)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "%s: input must be 4-D [N, H, W, C], got %s", name,
                           vn_shape_str(x->ndim, x->shape, sbuf, sizeof sbuf));
    if (x->numel <= 0)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "%s: empty input %s", name,
                           vn_shape_str(x->ndim, x->shape, sbuf, sizeof sbuf));
    pool_state s = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], oh, ow, k, 0};
    if (k > 0) {
        s.oh = s.h / k;
        s.ow = s.w / k;
        if (s.oh == 0 || s.ow == 0)
            return vn_ctx_fail(ctx, VN_ERR_SHAPE, "%s: kernel %d is larger than the input's "
                               "spatial size %lldx%lld", name, k, (long long)s.h, (long long)s.w);
    } else if (oh <= 0 || ow <= 0) {
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "%s: output size must be positive, got %lldx%lld",
                           name, (long long)oh, (long long)ow);
    }
    vn_tensor *y = vn_ctx_tensor4(ctx, s.n, s.oh, s.ow, s.c);
    vn_node *node = y ? vn__node_new(ctx, op, 1, &x, y, sizeof(pool_state)) : NULL;
    if (!node) return NULL;
    if (is_max && node->recording) {
        s.idx_bytes = argmax_bytes(&s);
        if (vn__cheap_to_save(x)) { /* backward reads the argmax; recompute reads the input */
            vn__save(node, 0);
            vn__set_recompute(node);
        }
    }
    *(pool_state *)node->state = s;
    return vn__run(ctx, node);
}

vn_tensor *vn_max_pool2d(vn_ctx *ctx, vn_tensor *x, int k)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    if (k <= 0)
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "max_pool2d: kernel size must be > 0, got %d", k);
    return pool_op(ctx, "max_pool2d", VN_OP_MAX_POOL2D, x, k, 0, 0, true);
}

vn_tensor *vn_adaptive_max_pool2d(vn_ctx *ctx, vn_tensor *x, int oh, int ow)
{
    return pool_op(ctx, "adaptive_max_pool2d", VN_OP_ADAPTIVE_MAX_POOL2D, x, 0, oh, ow, true);
}

vn_tensor *vn_adaptive_avg_pool2d(vn_ctx *ctx, vn_tensor *x, int oh, int ow)
{
    return pool_op(ctx, "adaptive_avg_pool2d", VN_OP_ADAPTIVE_AVG_POOL2D, x, 0, oh, ow, false);
}

vn_tensor *vn_global_avg_pool(vn_ctx *ctx, vn_tensor *x)
{
    return pool_op(ctx, "global_avg_pool", VN_OP_ADAPTIVE_AVG_POOL2D, x, 0, 1, 1, false);
}
