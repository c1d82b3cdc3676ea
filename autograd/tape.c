/* The tape: recording op applications, saved tensors and their release, recompute of
 * dropped tensors, gradient buffers, and backward. */
#include "autograd/ctx_impl.h"
#include "autograd/device_impl.h"
#include "autograd/vn_testing.h"

#include <stdlib.h>
#include <string.h>

bool vn__ok(vn_ctx *ctx, int n, vn_tensor *const *in)
{
    if (!ctx) return false; /* no context to say it in: the op returns NULL */
    if (ctx->status != VN_OK) return false;
    for (int i = 0; i < n; i++) {
        if (!in[i]) {
            vn_ctx_fail(ctx, VN_ERR_INVALID, "an op was given a NULL input %d", i);
            return false;
        }
        if (in[i]->owner && in[i]->owner != ctx) {
            vn_ctx_fail(ctx, VN_ERR_INVALID, "an op was given input %d made in another context: a "
                        "step tensor belongs to the context that made it (its tape, its pool)", i);
            return false;
        }
        if (in[i]->flags & VN_TENSOR_RELEASED) {
            vn_ctx_fail(ctx, VN_ERR_STATE, "an op was given input %d after vn_release: a "
                        "released tensor cannot be used again", i);
            return false;
        }
    }
    return true;
}

bool vn__needs_grad(vn_ctx *ctx, int n_in, vn_tensor *const *in)
{
    if (!ctx->grad_enabled) return false;
    for (int i = 0; i < n_in; i++)
        if (in[i] && (in[i]->flags & VN_TENSOR_REQUIRES_GRAD)) return true;
    return false;
}

vn_node *vn__node_new(vn_ctx *ctx, vn_op op, int n_in, vn_tensor *const *in, vn_tensor *out,
                      size_t state_bytes)
{
    VN_ASSERT(n_in <= VN_NODE_MAX_IN, "op %s has %d inputs, more than VN_NODE_MAX_IN",
              vn_op_name(op), n_in);
    vn_node *node = vn__arena_alloc(ctx, sizeof *node + state_bytes);
    if (!node) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory recording %s", vn_op_name(op));
        return NULL;
    }
    memset(node, 0, sizeof *node + state_bytes);
    node->op = op;
    node->device = out ? out->device : VN_DEVICE_CPU;
    node->n_in = n_in;
    for (int i = 0; i < n_in; i++) {
        node->in[i] = in[i];
        if (in[i] && in[i]->device != node->device) {
            vn_ctx_fail(ctx, VN_ERR_INVALID, "%s: input %d is on %s, the output on %s",
                        vn_op_name(op), i, vn_device_name(in[i]->device),
                        vn_device_name(node->device));
            return NULL;
        }
    }
    node->out = out;
    node->state = state_bytes ? (void *)(node + 1) : NULL;
    node->recording = vn__needs_grad(ctx, n_in, in);
    return node;
}

static bool tape_push(vn_ctx *ctx, vn_node *node)
{
    if (ctx->n_tape == ctx->cap_tape) {
        int cap = ctx->cap_tape ? 2 * ctx->cap_tape : 256;
        vn_node **nt = realloc(ctx->tape, (size_t)cap * sizeof *nt);
        if (!nt) {
            vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory growing the tape");
            return false;
        }
        ctx->system_allocs++;
        ctx->tape = nt;
        ctx->cap_tape = cap;
    }
    ctx->tape[ctx->n_tape++] = node;
    node->out->node = node;
    node->out->flags |= VN_TENSOR_REQUIRES_GRAD;
    return true;
}

vn_tensor *vn__run(vn_ctx *ctx, vn_node *node)
{
    if (vn__dispatch_forward(ctx, node) != VN_OK) return NULL;
    if (!node->recording) {
        for (int i = 0; i < node->n_bufs; i++) vn__pool_free(ctx, node->bufs[i]);
        node->n_bufs = 0;
        return node->out;
    }
    return tape_push(ctx, node) ? node->out : NULL;
}

void vn__node_keep(vn_node *node, void *pool_buf)
{
    VN_ASSERT(node->n_bufs < VN_NODE_MAX_BUFS, "op %s keeps more than %d buffers",
              vn_op_name(node->op), VN_NODE_MAX_BUFS);
    node->bufs[node->n_bufs++] = pool_buf;
}

void vn__save(vn_node *node, int i)
{
    VN_ASSERT(i >= -1 && i < node->n_in, "op %s saves input %d of %d", vn_op_name(node->op), i,
              node->n_in);
    unsigned bit = i < 0 ? VN_SAVE_OUT : 1u << i;
    vn_tensor *t = i < 0 ? node->out : node->in[i];
    if (!t || (node->saved & bit)) return;
    node->saved |= bit;
    if (t->flags & VN_TENSOR_STEP) t->saved_refs++; /* model tensors are never freed */
}

void vn__set_recompute(vn_node *node)
{
    VN_ASSERT(vn__has_recompute(node->op, node->device), "%s has no recompute kernel: set the "
              "last column of its VN_OP_LIST row to 1 and define it", vn_op_name(node->op));
    node->recomputable = true;
}

bool vn__cheap_to_save(const vn_tensor *t)
{
    return !(t->flags & VN_TENSOR_STEP) || (t->node && t->node->recomputable);
}

static void data_free(vn_ctx *ctx, vn_tensor *t)
{
    vn__pool_free(ctx, t->data);
    t->data = NULL;
}

/* A released tensor's data goes as soon as nothing needs it. */
static void maybe_free(vn_ctx *ctx, vn_tensor *t)
{
    if ((t->flags & VN_TENSOR_RELEASED) && t->saved_refs == 0 && t->data) data_free(ctx, t);
}

void vn_release(vn_ctx *ctx, vn_tensor *t)
{
    if (!ctx) return;
    if (t && t->owner && t->owner != ctx) {
        vn_ctx_fail(ctx, VN_ERR_INVALID, "vn_release of a tensor made in another context");
        return;
    }
    if (!t || !(t->flags & VN_TENSOR_STEP) ||
        (t->flags & (VN_TENSOR_VIEW | VN_TENSOR_HAS_VIEW | VN_TENSOR_RELEASED)))
        return;
    t->flags |= VN_TENSOR_RELEASED;
    if (!t->data) return;
    if (t->saved_refs == 0) {
        data_free(ctx, t);
    } else if (t->node && t->node->recomputable) {
        size_t bytes = (size_t)t->numel * sizeof(float);
        if (ctx->keep_used + bytes <= ctx->keep_budget) {
            ctx->keep_used += bytes; /* kept: freed after the backward that reads it */
            return;
        }
        data_free(ctx, t);
        t->flags |= VN_TENSOR_DROPPED;
    }
}

/* Recomputes a dropped tensor from its producer's saved inputs, recomputing those that were
 * dropped too. */
static bool rematerialize(vn_ctx *ctx, vn_tensor *t)
{
    vn_node *n = t->node;
    VN_ASSERT(n && n->recomputable, "a dropped tensor without a recompute kernel");
    bool temp[VN_NODE_MAX_IN] = {false};
    bool ok = true;
    for (int i = 0; i < n->n_in && ok; i++) {
        vn_tensor *in = n->in[i];
        if (!in || in->data || !(n->saved & (1u << i))) continue;
        if (!(in->flags & VN_TENSOR_DROPPED)) {
            vn_ctx_fail(ctx, VN_ERR_STATE, "%s: a saved input was freed before backward",
                        vn_op_name(n->op));
            ok = false;
        } else {
            ok = rematerialize(ctx, in);
            temp[i] = ok;
        }
    }
    if (ok) {
        t->data = vn__pool_alloc(ctx, (size_t)t->numel * sizeof(float));
        if (t->data) {
            t->flags &= ~(uint32_t)VN_TENSOR_DROPPED;
            vn__dispatch_recompute(ctx, n);
        } else {
            vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory recomputing the output of %s",
                        vn_op_name(n->op));
            ok = false;
        }
    }
    /* A recomputed input no larger than t stays for its other readers (a relu output both
     * rebuilds a depthwise output and is read by that conv's backward next); larger ones
     * (a BatchNorm output before a max-pool) are dropped again at once. */
    for (int i = 0; i < n->n_in; i++)
        if (temp[i] && n->in[i]->data && n->in[i]->numel > t->numel) {
            data_free(ctx, n->in[i]);
            n->in[i]->flags |= VN_TENSOR_DROPPED;
        }
    return ok && ctx->status == VN_OK;
}

const float *vn__data(vn_ctx *ctx, vn_tensor *t)
{
    if (t->data) return t->data;
    if (ctx->status != VN_OK) return NULL;
    if (!(t->flags & VN_TENSOR_DROPPED)) {
        vn_ctx_fail(ctx, VN_ERR_STATE, "backward needs a tensor whose memory was released "
                    "(an op did not declare what it saves)");
        return NULL;
    }
    return rematerialize(ctx, t) ? t->data : NULL;
}

static float *grad_alloc(vn_ctx *ctx, vn_tensor *t, bool zero, bool *fresh)
{
    *fresh = false;
    if (t->grad) return t->grad;
    size_t bytes = (size_t)t->numel * sizeof(float);
    if (t->flags & VN_TENSOR_STEP) {
        t->grad = vn__pool_alloc(ctx, bytes);
        if (!t->grad) {
            vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory for a gradient");
            return NULL;
        }
        *fresh = true;
        if (zero && vn__dev_zero(t->device, t->grad, bytes) != VN_OK) {
            vn_ctx_fail(ctx, VN_ERR_IO, "zeroing a gradient on %s failed", vn_device_name(t->device));
            return NULL;
        }
    } else if (vn_tensor_zero_grad(t) != VN_OK) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory for a gradient");
        return NULL;
    }
    return t->grad;
}

float *vn__grad(vn_ctx *ctx, vn_tensor *t)
{
    bool fresh;
    return grad_alloc(ctx, t, true, &fresh);
}

float *vn__grad_over_out(vn_ctx *ctx, vn_node *node, vn_tensor *t, bool *fresh)
{
    vn_tensor *o = node->out;
    if (t->grad || !o->grad || t == o || t->numel != o->numel ||
        !(t->flags & VN_TENSOR_STEP) || !(o->flags & VN_TENSOR_STEP))
        return vn__grad_uninit(ctx, t, fresh);
    t->grad = o->grad;
    o->grad = NULL;
    *fresh = true;
    return t->grad;
}

float *vn__grad_uninit(vn_ctx *ctx, vn_tensor *t, bool *fresh)
{
    return grad_alloc(ctx, t, false, fresh);
}

float *vn__input_grad(vn_ctx *ctx, vn_tensor *t, bool *fresh)
{
    return vn_tensor_requires_grad(t) ? vn__grad_uninit(ctx, t, fresh) : NULL;
}

bool vn__ew_grad_begin(vn_ctx *ctx, vn_node *node, vn_tensor *src, vn__ew_grad *a)
{
    if (!(a->src = vn__data(ctx, src))) return false;
    a->dy = node->out->grad;
    a->dx = vn__grad_over_out(ctx, node, node->in[0], &a->fresh);
    return a->dx != NULL;
}

static void node_release(vn_ctx *ctx, vn_node *node)
{
    for (int i = 0; i < node->n_bufs; i++) vn__pool_free(ctx, node->bufs[i]);
    node->n_bufs = 0;
    for (int i = 0; i < node->n_in; i++)
        if ((node->saved & (1u << i)) && (node->in[i]->flags & VN_TENSOR_STEP)) {
            node->in[i]->saved_refs--;
            maybe_free(ctx, node->in[i]);
        }
    if (node->saved & VN_SAVE_OUT) {
        node->out->saved_refs--;
        maybe_free(ctx, node->out);
    }
    node->saved = 0;
}

/* For the grad-ready hook: for each tape entry, the parameters it is the lowest reader of
 * (a chain through `next`, heads per entry), found with a pointer set in the arena. */
typedef struct ready_item {
    vn_tensor *param;
    int next;
} ready_item;

static int *ready_lists(vn_ctx *ctx, ready_item **items_out)
{
    int total = 0;
    for (int i = 0; i < ctx->n_tape; i++) total += ctx->tape[i]->n_in;
    size_t cap = 16;
    while (cap < 2 * (size_t)total + 16) cap *= 2;
    int *head = vn__arena_alloc(ctx, (size_t)ctx->n_tape * sizeof *head);
    ready_item *items = vn__arena_alloc(ctx, ((size_t)total + 1) * sizeof *items);
    vn_tensor **set = vn__arena_alloc(ctx, cap * sizeof *set);
    if (!head || !items || !set) return NULL;
    memset(set, 0, cap * sizeof *set);
    int n = 0;
    for (int i = 0; i < ctx->n_tape; i++) {
        head[i] = -1;
        const vn_node *node = ctx->tape[i];
        for (int j = 0; j < node->n_in; j++) {
            vn_tensor *p = node->in[j];
            if (!p || !(p->flags & VN_TENSOR_PARAM) || !vn_tensor_requires_grad(p)) continue;
            size_t h = ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull & (cap - 1);
            while (set[h] && set[h] != p) h = (h + 1) & (cap - 1);
            if (set[h]) continue;
            set[h] = p;
            items[n] = (ready_item){p, head[i]};
            head[i] = n++;
        }
    }
    *items_out = items;
    return head;
}

int vn_backward_with(vn_ctx *ctx, vn_tensor *out, const float *seed_grad)
{
    if (!ctx) return VN_ERR_INVALID;
    if (ctx->status != VN_OK) return ctx->status;
    if (!out) {
        vn_ctx_fail(ctx, VN_ERR_INVALID, "backward of a NULL tensor");
        return ctx->status;
    }
    if (out->owner && out->owner != ctx) {
        vn_ctx_fail(ctx, VN_ERR_INVALID, "backward of a tensor made in another context");
        return ctx->status;
    }
    if (!out->node) {
        vn_ctx_fail(ctx, VN_ERR_STATE, "backward of a tensor that is not on the tape "
                    "(was grad mode off, or does no input require grad?)");
        return ctx->status;
    }
    bool on_tape = false;
    for (int i = ctx->n_tape - 1; i >= 0 && !on_tape; i--) on_tape = ctx->tape[i] == out->node;
    if (!on_tape) {
        vn_ctx_fail(ctx, VN_ERR_STATE, "backward of a tensor whose tape was already consumed by "
                    "an earlier backward: run a new forward");
        return ctx->status;
    }
    bool fresh;
    float *g = vn__grad_uninit(ctx, out, &fresh);
    if (!g) return ctx->status;
    if (vn__dev_add_from_host(out->device, g, seed_grad, out->numel, fresh) != VN_OK) {
        vn_ctx_fail(ctx, VN_ERR_IO, "seeding backward on %s failed", vn_device_name(out->device));
        return ctx->status;
    }

    ready_item *items = NULL;
    int *ready = ctx->grad_ready ? ready_lists(ctx, &items) : NULL;
    if (ctx->grad_ready && !ready) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "backward: out of memory for the gradient-ready lists");
        return ctx->status;
    }
    for (int i = ctx->n_tape - 1; i >= 0; i--) {
        vn_node *node = ctx->tape[i];
        vn_tensor *o = node->out;
        if (o->grad) vn__dispatch_backward(ctx, node);
        node_release(ctx, node);
        if (o->grad && (o->flags & VN_TENSOR_STEP)) {
            vn__pool_free(ctx, o->grad);
            o->grad = NULL;
        }
        if (ctx->status != VN_OK) break;
        for (int k = ready ? ready[i] : -1; k >= 0; k = items[k].next)
            ctx->grad_ready(ctx->grad_ready_user, items[k].param);
    }
    ctx->n_tape = 0;
    return ctx->status;
}

int vn_backward(vn_ctx *ctx, vn_tensor *loss)
{
    if (loss && loss->numel != 1) {
        vn_ctx_fail(ctx, VN_ERR_SHAPE, "backward needs a scalar loss, got %lld elements "
                    "(use vn_backward_with to seed a gradient)", (long long)loss->numel);
        return ctx->status;
    }
    const float one = 1.0f;
    return vn_backward_with(ctx, loss, &one);
}

float *vn_testing_grad(vn_ctx *ctx, vn_tensor *t)
{
    bool fresh;
    return vn__grad_uninit(ctx, t, &fresh);
}

int vn_testing_node_backward(vn_ctx *ctx, vn_tensor *out)
{
    if (!out || !out->node || !out->grad)
        return vn_ctx_fail(ctx, VN_ERR_STATE, "vn_testing_node_backward needs a recorded "
                           "output with a gradient"), vn_ctx_status(ctx);
    vn__dispatch_backward(ctx, out->node);
    return vn_ctx_status(ctx);
}
