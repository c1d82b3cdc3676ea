/* Element-wise ops: activations, dropout, add, scale, reshape. */
#include "autograd/ops_impl.h"
#include "autograd/ops_state.h"

#include <string.h>

/* ---- leaky_relu / relu -------------------------------------------------------------- */

typedef vn__leaky_state leaky_state;

static void leaky_relu_forward(float *restrict y, const float *restrict x, int64_t n, float slope)
{
#pragma omp parallel for schedule(static) if (n >= VN_PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

/* PyTorch: grad * (x > 0 ? 1 : slope); relu is slope 0 (threshold_backward gives 0 at 0). */
static void leaky_relu_backward(float *dx, const float *dy,
                                const float *restrict x, int64_t n, float slope, bool fresh)
{
    if (fresh) {
#pragma omp parallel for schedule(static) if (n >= VN_PAR_MIN)
        for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * slope;
    } else {
#pragma omp parallel for schedule(static) if (n >= VN_PAR_MIN)
        for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : dy[i] * slope;
    }
}

/* With slope >= 0 the output has the input's sign (y > 0 exactly when x > 0), so backward
 * reads the output, which the next op usually keeps anyway; the input may be dropped. */
void vn__leaky_relu_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const leaky_state *st = node->state;
    vn__ew_grad a;
    if (vn__ew_grad_begin(ctx, node, st->slope >= 0.0f ? node->out : node->in[0], &a))
        leaky_relu_backward(a.dx, a.dy, a.src, node->in[0]->numel, st->slope, a.fresh);
}

int vn__leaky_relu_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    leaky_relu_forward(node->out->data, node->in[0]->data, node->out->numel,
                       ((const leaky_state *)node->state)->slope);
    return VN_OK;
}

void vn__leaky_relu_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const float *xd = vn__data(ctx, node->in[0]);
    if (xd) leaky_relu_forward(node->out->data, xd, node->out->numel,
                               ((const leaky_state *)node->state)->slope);
}

static vn_tensor *leaky_common(vn_ctx *ctx, vn_tensor *x, float slope, vn_op op)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    vn_tensor *y = vn_ctx_tensor(ctx, x->ndim, x->shape);
    vn_node *node = y ? vn__node_new(ctx, op, 1, &x, y, sizeof(leaky_state)) : NULL;
    if (!node) return NULL;
    ((leaky_state *)node->state)->slope = slope;
    if (node->recording) {
        if (slope < 0.0f) { /* backward reads the input */
            vn__save(node, 0);
        } else {            /* backward reads the output, recompute the input */
            vn__save(node, -1);
            if (vn__cheap_to_save(x)) vn__save(node, 0);
        }
        if (node->saved & 1u) vn__set_recompute(node);
    }
    return vn__run(ctx, node);
}

vn_tensor *vn_leaky_relu(vn_ctx *ctx, vn_tensor *x, float slope)
{
    return leaky_common(ctx, x, slope, VN_OP_LEAKY_RELU);
}

vn_tensor *vn_relu(vn_ctx *ctx, vn_tensor *x) { return leaky_common(ctx, x, 0.0f, VN_OP_RELU); }

/* ---- dropout ------------------------------------------------------------------------- */

typedef vn__dropout_state dropout_state;

void vn__dropout_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const dropout_state *st = node->state;
    vn_tensor *x = node->in[0];
    float *dx = vn__grad(ctx, x);
    if (!dx) return;
    const float *dy = node->out->grad;
    for (int64_t i = 0; i < x->numel; i++) dx[i] += st->keep[i] ? dy[i] * st->scale : 0.0f;
}

void vn__dropout_recompute_cpu(vn_ctx *ctx, vn_node *node)
{
    const dropout_state *st = node->state;
    const float *xd = vn__data(ctx, node->in[0]);
    if (!xd) return;
    float *y = node->out->data;
    for (int64_t i = 0; i < node->out->numel; i++) y[i] = st->keep[i] ? xd[i] * st->scale : 0.0f;
}

int vn__dropout_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    dropout_state *st = node->state;
    const vn_tensor *x = node->in[0];
    uint8_t *keep = vn__pool_alloc(ctx, (size_t)x->numel);
    if (!keep) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "dropout: out of memory");
        return VN_ERR_NOMEM;
    }
    vn__node_keep(node, keep);
    st->keep = keep;
    vn_rng *rng = vn_ctx_rng(ctx);
    float *y = node->out->data;
    /* Sequential draws: the mask depends only on the RNG state, never on threads. */
    for (int64_t i = 0; i < x->numel; i++) {
        keep[i] = vn_rng_uniform(rng) >= st->p;
        y[i] = keep[i] ? x->data[i] * st->scale : 0.0f;
    }
    return VN_OK;
}

vn_tensor *vn_dropout(vn_ctx *ctx, vn_tensor *x, float p, bool training)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    if (!(p >= 0.0f && p < 1.0f))
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "dropout: probability must be in [0, 1), got %g",
                           (double)p);
    if (!training || p == 0.0f) return vn_scale(ctx, x, 1.0f);
    vn_tensor *y = vn_ctx_tensor(ctx, x->ndim, x->shape);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_DROPOUT, 1, &x, y, sizeof(dropout_state)) : NULL;
    if (!node) return NULL;
    dropout_state *st = node->state;
    st->p = p;
    st->scale = 1.0f / (1.0f - p);
    if (node->recording && vn__cheap_to_save(x)) {
        vn__save(node, 0);
        vn__set_recompute(node);
    }
    return vn__run(ctx, node);
}

/* ---- add / scale ----------------------------------------------------------------------- */

typedef struct {
    float *d;
    const float *g;
    float s;
    bool fresh;
} scale_job;

/* d[i] = s * g[i] (fresh) or d[i] += s * g[i] over [lo, hi). */
static void scale_range(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const scale_job *J = arg;
    float *restrict d = J->d;
    const float *restrict g = J->g;
    const float s = J->s;
    if (J->fresh)
        for (int64_t i = lo; i < hi; i++) d[i] = s * g[i];
    else
        for (int64_t i = lo; i < hi; i++) d[i] += s * g[i];
}

static void accumulate(vn_ctx *ctx, vn_tensor *t, const float *g, float s)
{
    bool fresh;
    float *d = vn__grad_uninit(ctx, t, &fresh);
    if (!d) return;
    scale_job J = {d, g, s, fresh};
    vn_par_for(t->numel, t->numel >= VN_PAR_MIN, scale_range, &J);
}

void vn__add_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    for (int i = 0; i < 2; i++)
        if (vn_tensor_requires_grad(node->in[i])) accumulate(ctx, node->in[i], node->out->grad, 1.0f);
}

int vn__add_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    int64_t n = node->out->numel;
    const float *restrict pa = node->in[0]->data, *restrict pb = node->in[1]->data;
    float *restrict py = node->out->data;
#pragma omp parallel for schedule(static) if (n >= VN_PAR_MIN)
    for (int64_t i = 0; i < n; i++) py[i] = pa[i] + pb[i];
    return VN_OK;
}

vn_tensor *vn_add(vn_ctx *ctx, vn_tensor *a, vn_tensor *b)
{
    vn_tensor *in[2] = {a, b};
    if (!vn__ok(ctx, 2, in)) return NULL;
    if (!vn_tensor_same_shape(a, b)) {
        char sa[96], sb[96];
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "add: shapes %s and %s differ",
                           vn_shape_str(a->ndim, a->shape, sa, sizeof sa),
                           vn_shape_str(b->ndim, b->shape, sb, sizeof sb));
    }
    vn_tensor *y = vn_ctx_tensor(ctx, a->ndim, a->shape);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_ADD, 2, in, y, 0) : NULL;
    return node ? vn__run(ctx, node) : NULL;
}

typedef vn__scale_state scale_state;

void vn__scale_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const scale_state *st = node->state;
    accumulate(ctx, node->in[0], node->out->grad, st->s);
}

int vn__scale_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    float s = ((const scale_state *)node->state)->s;
    int64_t n = node->out->numel;
    scale_job J = {node->out->data, node->in[0]->data, s, true};
    vn_par_for(n, n >= VN_PAR_MIN, scale_range, &J);
    return VN_OK;
}

vn_tensor *vn_scale(vn_ctx *ctx, vn_tensor *x, float s)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    vn_tensor *y = vn_ctx_tensor(ctx, x->ndim, x->shape);
    vn_node *node = y ? vn__node_new(ctx, VN_OP_SCALE, 1, &x, y, sizeof(scale_state)) : NULL;
    if (!node) return NULL;
    ((scale_state *)node->state)->s = s;
    return vn__run(ctx, node);
}

/* ---- reshape / flatten: views sharing the input's data ------------------------------ */

void vn__reshape_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    accumulate(ctx, node->in[0], node->out->grad, 1.0f);
}

/* The output is a view of the input's data: nothing to compute. */
int vn__reshape_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    (void)ctx;
    (void)node;
    return VN_OK;
}

vn_tensor *vn_reshape(vn_ctx *ctx, vn_tensor *x, int ndim, const int64_t *shape)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    if (ndim < 1 || ndim > VN_MAX_DIMS)
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "reshape: %d dims (1..%d allowed)", ndim, VN_MAX_DIMS);
    int64_t n;
    if (!vn_shape_numel_checked(ndim, shape, &n) || n != x->numel) {
        char sa[96], sb[96];
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "reshape: cannot view %s as %s",
                           vn_shape_str(x->ndim, x->shape, sa, sizeof sa),
                           vn_shape_str(ndim, shape, sb, sizeof sb));
    }
    vn_tensor *y = vn__arena_alloc(ctx, sizeof *y);
    if (!y) return vn_ctx_fail(ctx, VN_ERR_NOMEM, "reshape: out of memory");
    memset(y, 0, sizeof *y);
    y->ndim = ndim;
    for (int i = 0; i < ndim; i++) y->shape[i] = shape[i];
    y->numel = x->numel;
    y->data = x->data;
    y->flags = VN_TENSOR_STEP | VN_TENSOR_VIEW;
    y->device = x->device;
    y->owner = ctx;
    if (x->flags & VN_TENSOR_STEP) x->flags |= VN_TENSOR_HAS_VIEW; /* never released now */
    vn_node *node = vn__node_new(ctx, VN_OP_RESHAPE, 1, &x, y, 0);
    return node ? vn__run(ctx, node) : NULL;
}

vn_tensor *vn_flatten(vn_ctx *ctx, vn_tensor *x)
{
    if (!vn__ok(ctx, 1, &x)) return NULL;
    int64_t shape[2] = {x->ndim ? x->shape[0] : 1, 0};
    shape[1] = shape[0] ? x->numel / shape[0] : 0;
    return vn_reshape(ctx, x, 2, shape);
}
