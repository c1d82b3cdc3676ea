/* Max pooling with any kernel, stride and padding (PyTorch's MaxPool2d with dilation 1 and
 * floor mode) on NHWC activations; SPPF uses 5x5, stride 1, padding 2.
 *
 * Padding never wins: windows are clipped to the input, which equals padding with -inf.
 * Like PyTorch's CPU kernel, a later element wins when it is greater or NaN, so ties go to
 * the first maximum in row-major window order and NaN propagates. Forward keeps the argmax
 * of every output element (its position in the k x k window, one byte while k*k <= 256)
 * for backward, so the input need not stay in memory; the output is recomputed from the
 * input only when that input is cheap to keep. Work is split over (image, channel block),
 * so overlapping windows add into an input gradient from one thread, in a fixed order. */
#include "autograd/ops_impl.h"

#include <string.h>

#define MP_CBLOCK 256

typedef struct maxpool_state {
    int64_t n, h, w, c, oh, ow;
    int k, s, p;
    uint8_t *argmax; /* pool buffer: one byte per output element, or NULL without backward */
} maxpool_state;

/* One window: m[c] and (when arg is not NULL) its position in the window, for channels
 * [c0, c0 + cn) of image img. */
static void mp_window(const maxpool_state *st, const float *img, int64_t i, int64_t j,
                      int64_t c0, int64_t cn, float *restrict m, uint8_t *restrict arg)
{
    int64_t h0 = i * st->s - st->p, w0 = j * st->s - st->p;
    bool first = true;
    for (int a = 0; a < st->k; a++) {
        int64_t hh = h0 + a;
        if (hh < 0 || hh >= st->h) continue;
        for (int b = 0; b < st->k; b++) {
            int64_t ww = w0 + b;
            if (ww < 0 || ww >= st->w) continue;
            const float *xr = img + (hh * st->w + ww) * st->c + c0;
            uint8_t pos = (uint8_t)(a * st->k + b);
            if (first) {
                memcpy(m, xr, (size_t)cn * sizeof(float));
                if (arg) memset(arg, pos, (size_t)cn);
                first = false;
                continue;
            }
            for (int64_t c = 0; c < cn; c++) {
                bool take = xr[c] > m[c] || xr[c] != xr[c];
                m[c] = take ? xr[c] : m[c];
                if (arg) arg[c] = take ? pos : arg[c];
            }
        }
    }
}

/* The tensors of one kernel, handed to its tile function: forward reads x and writes y (and
 * the argmax when not NULL); backward (mp_scatter) reads dy and the argmax, adds into dx. */
typedef struct mp_io {
    const maxpool_state *st;
    const float *x, *dy;
    float *y, *dx;
    uint8_t *argmax;
} mp_io;

static void mp_forward_tile(const void *arg, int64_t t)
{
    const mp_io *io = arg;
    const maxpool_state *st = io->st;
    const vn__tile b = vn__tile_at(t, st->c, MP_CBLOCK);
    const int64_t img_out = st->oh * st->ow * st->c;
    const float *img = io->x + b.n * st->h * st->w * st->c;
    for (int64_t i = 0; i < st->oh; i++)
        for (int64_t j = 0; j < st->ow; j++) {
            int64_t o = b.n * img_out + (i * st->ow + j) * st->c + b.c0;
            mp_window(st, img, i, j, b.c0, b.cn, io->y + o, io->argmax ? io->argmax + o : NULL);
        }
}

static void mp_forward(const maxpool_state *st, const float *x, float *y, uint8_t *argmax)
{
    mp_io io = {.st = st, .x = x, .y = y, .argmax = argmax};
    vn__for_each_tile(st->n, st->c, MP_CBLOCK,
                      st->n * st->oh * st->ow * st->c * st->k * st->k >= VN_PAR_MIN,
                      mp_forward_tile, &io);
}

/* dx[argmax] += dy for one (image, channel block), outputs in order. */
static void mp_scatter_tile(const void *arg, int64_t t)
{
    const mp_io *io = arg;
    const maxpool_state *st = io->st;
    const vn__tile b = vn__tile_at(t, st->c, MP_CBLOCK);
    const int64_t img_out = st->oh * st->ow * st->c, c0 = b.c0;
    const uint8_t *argmax = io->argmax;
    const float *dy = io->dy;
    float *dimg = io->dx + b.n * st->h * st->w * st->c;
    for (int64_t i = 0; i < st->oh; i++)
        for (int64_t j = 0; j < st->ow; j++) {
            int64_t o = b.n * img_out + (i * st->ow + j) * st->c + c0;
            for (int64_t c = 0; c < b.cn; c++) {
                int pos = argmax[o + c];
                int64_t hh = i * st->s - st->p + pos / st->k;
                int64_t ww = j * st->s - st->p + pos % st->k;
                dimg[(hh * st->w + ww) * st->c + c0 + c] += dy[o + c];
            }
        }
}

static void mp_scatter(const maxpool_state *st, const float *dy, float *dx)
{
    mp_io io = {.st = st, .dy = dy, .dx = dx, .argmax = st->argmax};
    vn__for_each_tile(st->n, st->c, MP_CBLOCK, st->n * st->oh * st->ow * st->c >= VN_PAR_MIN,
                      mp_scatter_tile, &io);
}

void vn__max_pool2d_pad_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    float *dx = vn__grad(ctx, node->in[0]);
    if (dx) mp_scatter(node->state, node->out->grad, dx);
}

void vn__max_pool2d_pad_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const float *xd = vn__data(ctx, node->in[0]);
    if (xd) mp_forward(node->state, xd, node->out->data, NULL);
}

/* Keeps the argmax for backward when recording. */
int vn__max_pool2d_pad_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    maxpool_state *st = node->state;
    if (node->recording) {
        if (!(st->argmax = vn__pool_alloc(ctx, (size_t)node->out->numel))) {
            vn_ctx_fail(ctx, VN_ERR_NOMEM, "max_pool2d: out of memory for the argmax");
            return VN_ERR_NOMEM;
        }
        vn__node_keep(node, st->argmax);
    }
    mp_forward(st, node->in[0]->data, node->out->data, st->argmax);
    return VN_OK;
}

vn_tensor *vn_max_pool2d_ex(vn_ctx *ctx, vn_tensor *x, int k, int stride, int pad)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    char s[96];
    if (x->ndim != 4)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "max_pool2d: needs NHWC [N, H, W, C], got %s",
                           vn_shape_str(x->ndim, x->shape, s, sizeof s));
    if (k < 1 || k > 16 || stride < 1 || pad < 0 || 2 * pad > k)
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "max_pool2d: kernel %d, stride %d, padding %d: "
                           "needs 1 <= kernel <= 16, stride >= 1 and 0 <= padding <= kernel/2",
                           k, stride, pad);
    maxpool_state st = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], 0, 0, k, stride,
                        pad, NULL};
    st.oh = (st.h + 2 * pad - k) / stride + 1;
    st.ow = (st.w + 2 * pad - k) / stride + 1;
    if (st.h + 2 * pad < k || st.w + 2 * pad < k)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "max_pool2d: kernel %d is larger than the padded "
                           "input %s (padding %d)", k, vn_shape_str(x->ndim, x->shape, s,
                                                                    sizeof s), pad);
    vn_tensor *y = vn_ctx_tensor4(ctx, st.n, st.oh, st.ow, st.c);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_MAX_POOL2D_PAD, 1, &x, y, sizeof st) : NULL;
    if (!node) return NULL;
    *(maxpool_state *)node->state = st;
    if (node->recording && vn__cheap_to_save(x)) { /* backward reads the argmax only */
        vn__save(node, 0);
        vn__set_recompute(node);
    }
    return vn__run(ctx, node);
}
