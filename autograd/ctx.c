/* The execution context: grad mode, the sticky error, the RNG and step tensors. */
#include "autograd/ctx_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vn_ctx *vn_ctx_create(void)
{
    vn_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->grad_enabled = true;
    vn_rng_seed(&ctx->rng, 0, 0, 0);
    return ctx;
}

void vn_ctx_destroy(vn_ctx *ctx)
{
    if (!ctx) return;
    vn__mem_destroy(ctx);
    free(ctx->tape);
    free(ctx);
}

void vn_ctx_reset(vn_ctx *ctx)
{
    ctx->n_tape = 0;
    ctx->keep_used = 0;
    vn__mem_reset(ctx);
    ctx->status = VN_OK;
    ctx->error[0] = '\0';
}

void vn_ctx_set_keep(vn_ctx *ctx, size_t bytes) { ctx->keep_budget = bytes; }

bool vn_ctx_set_grad(vn_ctx *ctx, bool enabled)
{
    bool old = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return old;
}

bool vn_ctx_grad_enabled(const vn_ctx *ctx) { return ctx->grad_enabled; }

vn_rng *vn_ctx_rng(vn_ctx *ctx) { return &ctx->rng; }

int vn_ctx_status(const vn_ctx *ctx) { return ctx ? ctx->status : VN_ERR_INVALID; }

const char *vn_ctx_error(const vn_ctx *ctx)
{
    return !ctx ? "no context (NULL)" : ctx->status ? ctx->error : "";
}

vn_tensor *vn_ctx_fail(vn_ctx *ctx, int code, const char *fmt, ...)
{
    if (ctx && ctx->status == VN_OK) {
        ctx->status = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

vn_tensor *vn_ctx_tensor(vn_ctx *ctx, int ndim, const int64_t *shape)
{
    VN_ASSERT(ndim >= 0 && ndim <= VN_MAX_DIMS, "tensors have at most %d dims, got %d",
              VN_MAX_DIMS, ndim);
    if (!ctx) return NULL;
    int64_t n;
    if (!vn_shape_numel_checked(ndim, shape, &n)) {
        char buf[96];
        return vn_ctx_fail(ctx, VN_ERR_INVALID, "a tensor of shape %s: a negative dimension, or more "
                           "elements than memory can address", vn_shape_str(ndim, shape, buf, sizeof buf));
    }
    vn_tensor *t = vn__arena_alloc(ctx, sizeof *t);
    if (!t) return vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory for a tensor header");
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = vn_shape_numel(ndim, shape);
    t->flags = VN_TENSOR_STEP;
    t->device = ctx->device;
    t->owner = ctx;
    t->data = vn__pool_alloc(ctx, (size_t)t->numel * sizeof(float));
    if (!t->data) {
        char buf[96];
        return vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory for a tensor of shape %s",
                           vn_shape_str(ndim, shape, buf, sizeof buf));
    }
    return t;
}

vn_tensor *vn_ctx_tensor4(vn_ctx *ctx, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t s[4] = {d0, d1, d2, d3};
    return vn_ctx_tensor(ctx, 4, s);
}

void vn_ctx_set_grad_ready(vn_ctx *ctx, vn_grad_ready_fn fn, void *user)
{
    ctx->grad_ready = fn;
    ctx->grad_ready_user = user;
}

void vn_ctx_set_bn_hooks(vn_ctx *ctx, const vn_bn_hooks *hooks)
{
    ctx->has_bn_hooks = hooks != NULL;
    if (hooks) ctx->bn_hooks = *hooks;
}

const vn_bn_hooks *vn__ctx_bn_hooks(const vn_ctx *ctx)
{
    return ctx->has_bn_hooks ? &ctx->bn_hooks : NULL;
}
