/* Shape ops of the detector on NHWC tensors: channel concat and slice (the last dim, where
 * YOLO's torch.cat(dim=1) and chunk/split act on NCHW), nearest-neighbour upsampling by an
 * integer factor, and a permutation of up to four dims (the head reshuffles of attention).
 *
 * None of them reads data in backward: concat, slice and permute move gradient blocks,
 * upsample sums them. Their outputs are copies, so they can be dropped and rebuilt from
 * their inputs in backward when those are cheap to keep (see vn__cheap_to_save). The fronts
 * check shapes and make the node; the kernels are those of the rows CONCAT, SLICE,
 * UPSAMPLE_NEAREST and PERMUTE of VN_OP_LIST. */
#include "autograd/ops_impl.h"

#include <string.h>

#define SHAPE_PAR_MIN 65536

static vn_tensor *shape_fail(vn_ctx *ctx, int code, const char *op, const char *what,
                             const vn_tensor *t)
{
    char s[96];
    return vn_ctx_fail(ctx, code, "%s: %s (input %s)", op, what,
                       vn_shape_str(t->ndim, t->shape, s, sizeof s));
}

/* A recording node saves every input for recompute when each is cheap to keep, and then
 * enables it. */
static void save_inputs_for_recompute(vn_node *node)
{
    if (!node->recording) return;
    for (int i = 0; i < node->n_in; i++)
        if (!vn__cheap_to_save(node->in[i])) return;
    for (int i = 0; i < node->n_in; i++) vn__save(node, i);
    vn__set_recompute(node);
}

/* dst (+)= src for n floats. */
static void copy_or_add(float *restrict dst, const float *restrict src, int64_t n, bool add)
{
    if (add)
        for (int64_t i = 0; i < n; i++) dst[i] += src[i];
    else
        memcpy(dst, src, (size_t)n * sizeof(float));
}

/* ---- concat along the last dim --------------------------------------------------------- */

typedef struct concat_state {
    int64_t rows, cout;
} concat_state;

/* y[r, off_i + j] = in_i[r, j] for every row r. */
static void concat_kernel(float *restrict y, int n, const float *const *xs, const int64_t *cs,
                          int64_t rows, int64_t cout)
{
#pragma omp parallel for schedule(static) if (rows * cout > SHAPE_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = 0;
        for (int i = 0; i < n; i++) {
            memcpy(y + r * cout + off, xs[i] + r * cs[i], (size_t)cs[i] * sizeof(float));
            off += cs[i];
        }
    }
}

void vn__concat_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const concat_state *st = node->state;
    const float *dy = node->out->grad;
    int64_t off = 0;
    for (int i = 0; i < node->n_in; i++) {
        vn_tensor *x = node->in[i];
        int64_t c = x->shape[x->ndim - 1];
        if (vn_tensor_requires_grad(x)) {
            bool fresh;
            float *dx = vn__grad_uninit(ctx, x, &fresh);
            if (!dx) return;
#pragma omp parallel for schedule(static) if (st->rows * c > SHAPE_PAR_MIN)
            for (int64_t r = 0; r < st->rows; r++)
                copy_or_add(dx + r * c, dy + r * st->cout + off, c, !fresh);
        }
        off += c;
    }
}

/* Writes node->out from the inputs' data (through vn__data when recomputing). */
static void concat_run(vn_ctx *ctx, vn_node *node, bool recompute)
{
    const concat_state *st = node->state;
    const float *xs[VN_NODE_MAX_IN];
    int64_t cs[VN_NODE_MAX_IN];
    for (int i = 0; i < node->n_in; i++) {
        xs[i] = recompute ? vn__data(ctx, node->in[i]) : node->in[i]->data;
        if (!xs[i]) return;
        cs[i] = node->in[i]->shape[node->in[i]->ndim - 1];
    }
    concat_kernel(node->out->data, node->n_in, xs, cs, st->rows, st->cout);
}

void vn__concat_recompute_cpu(vn_ctx *ctx, vn_node *node) { concat_run(ctx, node, true); }

int vn__concat_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    concat_run(ctx, node, false);
    return VN_OK;
}

/* One concat node of at most VN_NODE_MAX_IN inputs, shapes already checked. */
static vn_tensor *concat_node(vn_ctx *ctx, int n, vn_tensor *const *xs)
{
    int64_t cout = 0;
    for (int i = 0; i < n; i++) cout += xs[i]->shape[xs[i]->ndim - 1];
    int64_t shape[VN_MAX_DIMS];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[xs[0]->ndim - 1] = cout;
    vn_tensor *y = vn_ctx_tensor(ctx, xs[0]->ndim, shape);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_CONCAT, n, xs, y, sizeof(concat_state)) : NULL;
    if (!node) return NULL;
    concat_state *st = node->state;
    st->rows = cout ? y->numel / cout : 0;
    st->cout = cout;
    save_inputs_for_recompute(node);
    return vn__run(ctx, node);
}

vn_tensor *vn_concat(vn_ctx *ctx, int n, vn_tensor *const *xs)
{
    if (n < 1) return vn_ctx_fail(ctx, VN_ERR_INVALID, "concat: needs at least one input");
    if (!vn__ok(ctx, n, xs)) return NULL;
    for (int i = 1; i < n; i++) {
        bool same = xs[i]->ndim == xs[0]->ndim;
        for (int d = 0; same && d < xs[0]->ndim - 1; d++) same = xs[i]->shape[d] == xs[0]->shape[d];
        if (!same) {
            char a[96], b[96];
            return vn_ctx_fail(ctx, VN_ERR_SHAPE, "concat: input %d has shape %s, which differs "
                               "from input 0 %s in a dim other than the last", i,
                               vn_shape_str(xs[i]->ndim, xs[i]->shape, a, sizeof a),
                               vn_shape_str(xs[0]->ndim, xs[0]->shape, b, sizeof b));
        }
    }
    /* More inputs than a tape entry holds: concatenate in groups, left to right. */
    vn_tensor *acc = concat_node(ctx, n < VN_NODE_MAX_IN ? n : VN_NODE_MAX_IN, xs);
    for (int i = VN_NODE_MAX_IN; i < n && acc; i += VN_NODE_MAX_IN - 1) {
        vn_tensor *group[VN_NODE_MAX_IN] = {acc};
        int m = n - i < VN_NODE_MAX_IN - 1 ? n - i : VN_NODE_MAX_IN - 1;
        for (int j = 0; j < m; j++) group[1 + j] = xs[i + j];
        acc = concat_node(ctx, 1 + m, group);
    }
    return acc;
}

/* ---- slice of the last dim -------------------------------------------------------------- */

typedef struct slice_state {
    int64_t rows, cin, start, len;
} slice_state;

static void slice_kernel(float *restrict y, const float *restrict x, const slice_state *st)
{
#pragma omp parallel for schedule(static) if (st->rows * st->len > SHAPE_PAR_MIN)
    for (int64_t r = 0; r < st->rows; r++)
        memcpy(y + r * st->len, x + r * st->cin + st->start, (size_t)st->len * sizeof(float));
}

/* The other columns of a fresh gradient are zero (another slice may fill them later). */
void vn__slice_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const slice_state *st = node->state;
    float *dx = vn__grad(ctx, node->in[0]);
    if (!dx) return;
    const float *dy = node->out->grad;
#pragma omp parallel for schedule(static) if (st->rows * st->len > SHAPE_PAR_MIN)
    for (int64_t r = 0; r < st->rows; r++)
        copy_or_add(dx + r * st->cin + st->start, dy + r * st->len, st->len, true);
}

void vn__slice_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const float *xd = vn__data(ctx, node->in[0]);
    if (xd) slice_kernel(node->out->data, xd, node->state);
}

int vn__slice_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    slice_kernel(node->out->data, node->in[0]->data, node->state);
    return VN_OK;
}

vn_tensor *vn_slice_last(vn_ctx *ctx, vn_tensor *x, int64_t start, int64_t len)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    int64_t cin = x->shape[x->ndim - 1];
    if (start < 0 || len < 1 || start + len > cin) {
        char s[96];
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "slice: columns [%lld, %lld) are not inside the "
                           "last dim of %s", (long long)start, (long long)(start + len),
                           vn_shape_str(x->ndim, x->shape, s, sizeof s));
    }
    int64_t shape[VN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = len;
    vn_tensor *y = vn_ctx_tensor(ctx, x->ndim, shape);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_SLICE, 1, &x, y, sizeof(slice_state)) : NULL;
    if (!node) return NULL;
    *(slice_state *)node->state = (slice_state){cin ? x->numel / cin : 0, cin, start, len};
    save_inputs_for_recompute(node);
    return vn__run(ctx, node);
}

int vn_split(vn_ctx *ctx, vn_tensor *x, int n, const int64_t *sizes, vn_tensor **out)
{
    int64_t start = 0;
    for (int i = 0; i < n; i++) out[i] = NULL;
    for (int i = 0; i < n; i++) {
        out[i] = vn_slice_last(ctx, x, start, sizes[i]);
        if (!out[i]) return vn_ctx_status(ctx);
        start += sizes[i];
    }
    if (x && start != x->shape[x->ndim - 1]) {
        char s[96];
        vn_ctx_fail(ctx, VN_ERR_SHAPE, "split: sizes add up to %lld, but the last dim of %s "
                    "is %lld", (long long)start, vn_shape_str(x->ndim, x->shape, s, sizeof s),
                    (long long)x->shape[x->ndim - 1]);
        return VN_ERR_SHAPE;
    }
    return VN_OK;
}

/* ---- nearest-neighbour upsampling ----------------------------------------------------- */

typedef struct upsample_state {
    int64_t n, h, w, c;
    int s;
} upsample_state;

static void upsample_kernel(float *restrict y, const float *restrict x, const upsample_state *st)
{
    const int64_t ow = st->w * st->s, c = st->c;
#pragma omp parallel for schedule(static) if (st->n * st->h * ow * c * st->s > SHAPE_PAR_MIN)
    for (int64_t t = 0; t < st->n * st->h; t++) {
        const float *xr = x + t * st->w * c;
        float *y0 = y + t * st->s * ow * c;
        for (int64_t j = 0; j < ow; j++) memcpy(y0 + j * c, xr + (j / st->s) * c, (size_t)c * 4);
        for (int a = 1; a < st->s; a++) memcpy(y0 + a * ow * c, y0, (size_t)(ow * c) * 4);
    }
}

/* dx[n, i, j] (+)= sum over the s x s block of dy. Sums run in a fixed order. */
void vn__upsample_nearest_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const upsample_state *st = node->state;
    bool fresh;
    float *dx = vn__grad_uninit(ctx, node->in[0], &fresh);
    if (!dx) return;
    const float *dy = node->out->grad;
    const int64_t ow = st->w * st->s, c = st->c;
#pragma omp parallel for schedule(static) if (st->n * st->h * ow * c * st->s > SHAPE_PAR_MIN)
    for (int64_t t = 0; t < st->n * st->h; t++)
        for (int64_t j = 0; j < st->w; j++) {
            float *restrict d = dx + (t * st->w + j) * c;
            if (fresh) memset(d, 0, (size_t)c * sizeof(float));
            for (int a = 0; a < st->s; a++)
                for (int b = 0; b < st->s; b++) {
                    const float *restrict g = dy + ((t * st->s + a) * ow + j * st->s + b) * c;
                    for (int64_t k = 0; k < c; k++) d[k] += g[k];
                }
        }
}

void vn__upsample_nearest_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const float *xd = vn__data(ctx, node->in[0]);
    if (xd) upsample_kernel(node->out->data, xd, node->state);
}

int vn__upsample_nearest_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    upsample_kernel(node->out->data, node->in[0]->data, node->state);
    return VN_OK;
}

vn_tensor *vn_upsample_nearest(vn_ctx *ctx, vn_tensor *x, int scale)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    if (x->ndim != 4)
        return shape_fail(ctx, VN_ERR_SHAPE, "upsample_nearest", "needs NHWC [N, H, W, C]", x);
    if (scale < 1)
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "upsample_nearest: scale must be at least 1, "
                           "got %d", scale);
    upsample_state st = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], scale};
    vn_tensor *y = vn_ctx_tensor4(ctx, st.n, st.h * scale, st.w * scale, st.c);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_UPSAMPLE_NEAREST, 1, &x, y, sizeof st) : NULL;
    if (!node) return NULL;
    *(upsample_state *)node->state = st;
    save_inputs_for_recompute(node);
    return vn__run(ctx, node);
}

/* ---- permute -------------------------------------------------------------------------- */

typedef struct permute_state {
    int64_t oshape[VN_MAX_DIMS];  /* output shape, padded with leading 1s to 4 dims */
    int64_t istride[VN_MAX_DIMS]; /* input stride of each output dim */
} permute_state;

/* Walks the output in order; dst[o] = src[i] (or, with inverse, dst[i] (+)= src[o]). */
static void permute_kernel(float *restrict dst, const float *restrict src,
                           const permute_state *st, bool inverse, bool add)
{
    const int64_t *S = st->oshape, *I = st->istride;
#pragma omp parallel for collapse(2) schedule(static) \
    if (S[0] * S[1] * S[2] * S[3] > SHAPE_PAR_MIN)
    for (int64_t a = 0; a < S[0]; a++)
        for (int64_t b = 0; b < S[1]; b++)
            for (int64_t c = 0; c < S[2]; c++) {
                int64_t o = ((a * S[1] + b) * S[2] + c) * S[3];
                int64_t i = a * I[0] + b * I[1] + c * I[2];
                for (int64_t d = 0; d < S[3]; d++, o++, i += I[3]) {
                    if (!inverse) dst[o] = src[i];
                    else if (add) dst[i] += src[o];
                    else dst[i] = src[o];
                }
            }
}

void vn__permute_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    bool fresh;
    float *dx = vn__grad_uninit(ctx, node->in[0], &fresh);
    if (dx) permute_kernel(dx, node->out->grad, node->state, true, !fresh);
}

void vn__permute_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const float *xd = vn__data(ctx, node->in[0]);
    if (xd) permute_kernel(node->out->data, xd, node->state, false, false);
}

int vn__permute_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    permute_kernel(node->out->data, node->in[0]->data, node->state, false, false);
    return VN_OK;
}

vn_tensor *vn_permute(vn_ctx *ctx, vn_tensor *x, const int *perm)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    int nd = x->ndim, seen = 0;
    for (int i = 0; i < nd; i++) {
        if (perm[i] < 0 || perm[i] >= nd || (seen & (1 << perm[i])))
            return shape_fail(ctx, VN_ERR_INVALID, "permute", "perm is not a permutation of "
                              "the dims", x);
        seen |= 1 << perm[i];
    }
    int64_t stride[VN_MAX_DIMS], shape[VN_MAX_DIMS];
    stride[nd - 1] = 1;
    for (int i = nd - 2; i >= 0; i--) stride[i] = stride[i + 1] * x->shape[i + 1];
    permute_state st;
    int pad = VN_MAX_DIMS - nd;
    for (int i = 0; i < VN_MAX_DIMS; i++) {
        st.oshape[i] = i < pad ? 1 : x->shape[perm[i - pad]];
        st.istride[i] = i < pad ? 0 : stride[perm[i - pad]];
    }
    for (int i = 0; i < nd; i++) shape[i] = x->shape[perm[i]];
    vn_tensor *y = vn_ctx_tensor(ctx, nd, shape);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_PERMUTE, 1, &x, y, sizeof st) : NULL;
    if (!node) return NULL;
    *(permute_state *)node->state = st;
    save_inputs_for_recompute(node);
    return vn__run(ctx, node);
}
