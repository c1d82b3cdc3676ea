/* The execution context: bump arena, buffer pool, tape and backward. */
#include "autograd/ops_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- bump arena: tensor headers, tape nodes, op state ------------------------------ */

#define ARENA_CHUNK (256u * 1024u)

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    size_t used;
    _Alignas(64) unsigned char mem[];
} arena_chunk;

typedef struct arena {
    arena_chunk *head;    /* chunks in allocation order */
    arena_chunk *current; /* chunk being filled */
    size_t reserved;
} arena;

/* ---- buffer pool: step data and gradients, recycled by exact (rounded) size --------- */

typedef struct pool_block {
    struct pool_block *prev, *next; /* in-use list, or free list (next only) */
    size_t size;                    /* usable bytes, multiple of 64 */
    uint64_t magic;
    unsigned char pad[32];
} pool_block;
_Static_assert(sizeof(pool_block) == 64, "pool header must keep 64-byte alignment");

#define POOL_MAGIC_USED 0x5553454456424c4bull
#define POOL_MAGIC_FREE 0x4652454556424c4bull

typedef struct pool_bucket {
    size_t size;
    pool_block *free;
} pool_bucket;

typedef struct pool {
    pool_block in_use; /* sentinel of a circular list */
    pool_bucket *buckets;
    int n_buckets, cap_buckets;
    size_t in_use_bytes, peak_bytes, cached_bytes;
} pool;

struct vn_ctx {
    arena ar;
    pool pl;
    vn_node **tape;
    int n_tape, cap_tape;
    bool grad_enabled;
    int status;
    char error[VN_ERROR_MSG_MAX];
    vn_rng rng;
    uint64_t system_allocs;
};

static void *sys_alloc(vn_ctx *ctx, size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    ctx->system_allocs++;
    return p;
}

void *vn__arena_alloc(vn_ctx *ctx, size_t bytes)
{
    arena *a = &ctx->ar;
    bytes = (bytes + 63) & ~(size_t)63;
    for (;;) {
        arena_chunk *c = a->current;
        if (c && c->used + bytes <= c->size) {
            void *p = c->mem + c->used;
            c->used += bytes;
            return p;
        }
        if (c && c->next) { /* reuse chunks kept from earlier steps */
            a->current = c->next;
            a->current->used = 0;
            continue;
        }
        size_t size = bytes > ARENA_CHUNK ? bytes : ARENA_CHUNK;
        arena_chunk *n = sys_alloc(ctx, sizeof(arena_chunk) + size);
        if (!n) return NULL;
        n->next = NULL;
        n->size = size;
        n->used = 0;
        a->reserved += size;
        if (c) c->next = n;
        else a->head = n;
        a->current = n;
    }
}

static void arena_reset(arena *a)
{
    a->current = a->head;
    if (a->head) a->head->used = 0;
}

static void arena_free(arena *a)
{
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    memset(a, 0, sizeof *a);
}

static pool_bucket *pool_bucket_for(vn_ctx *ctx, size_t size, bool create)
{
    pool *p = &ctx->pl;
    for (int i = 0; i < p->n_buckets; i++)
        if (p->buckets[i].size == size) return &p->buckets[i];
    if (!create) return NULL;
    if (p->n_buckets == p->cap_buckets) {
        int cap = p->cap_buckets ? 2 * p->cap_buckets : 64;
        pool_bucket *nb = realloc(p->buckets, (size_t)cap * sizeof *nb);
        if (!nb) return NULL;
        ctx->system_allocs++;
        p->buckets = nb;
        p->cap_buckets = cap;
    }
    pool_bucket *b = &p->buckets[p->n_buckets++];
    b->size = size;
    b->free = NULL;
    return b;
}

static void in_use_link(pool *p, pool_block *b)
{
    b->prev = &p->in_use;
    b->next = p->in_use.next;
    p->in_use.next->prev = b;
    p->in_use.next = b;
    b->magic = POOL_MAGIC_USED;
    p->in_use_bytes += b->size;
    if (p->in_use_bytes > p->peak_bytes) p->peak_bytes = p->in_use_bytes;
}

static void in_use_unlink(pool *p, pool_block *b)
{
    b->prev->next = b->next;
    b->next->prev = b->prev;
    p->in_use_bytes -= b->size;
}

void *vn__pool_alloc(vn_ctx *ctx, size_t bytes)
{
    pool *p = &ctx->pl;
    size_t size = (bytes + 63) & ~(size_t)63;
    if (size == 0) size = 64;
    pool_bucket *bk = pool_bucket_for(ctx, size, true);
    if (!bk) return NULL;
    pool_block *b = bk->free;
    if (b) {
        bk->free = b->next;
        p->cached_bytes -= size;
    } else {
        b = sys_alloc(ctx, sizeof(pool_block) + size);
        if (!b) return NULL;
        b->size = size;
    }
    in_use_link(p, b);
    return b + 1;
}

static void pool_release_block(vn_ctx *ctx, pool_block *b)
{
    pool *p = &ctx->pl;
    pool_bucket *bk = pool_bucket_for(ctx, b->size, false);
    VN_ASSERT(bk, "pool block of unknown size %zu", b->size);
    b->magic = POOL_MAGIC_FREE;
    b->next = bk->free;
    bk->free = b;
    p->cached_bytes += b->size;
}

void vn__pool_free(vn_ctx *ctx, void *ptr)
{
    if (!ptr) return;
    pool_block *b = (pool_block *)ptr - 1;
    VN_ASSERT(b->magic == POOL_MAGIC_USED, "vn__pool_free of a buffer that is not in use "
              "(double free, or not from this context's pool)");
    in_use_unlink(&ctx->pl, b);
    pool_release_block(ctx, b);
}

static void pool_release_all(vn_ctx *ctx)
{
    pool *p = &ctx->pl;
    pool_block *b = p->in_use.next;
    while (b != &p->in_use) {
        pool_block *n = b->next;
        p->in_use_bytes -= b->size;
        pool_release_block(ctx, b);
        b = n;
    }
    p->in_use.next = p->in_use.prev = &p->in_use;
}

void vn_ctx_trim(vn_ctx *ctx)
{
    pool *p = &ctx->pl;
    for (int i = 0; i < p->n_buckets; i++) {
        pool_block *b = p->buckets[i].free;
        while (b) {
            pool_block *n = b->next;
            p->cached_bytes -= b->size;
            free(b);
            b = n;
        }
        p->buckets[i].free = NULL;
    }
}

/* ---- context ------------------------------------------------------------------------ */

vn_ctx *vn_ctx_create(void)
{
    vn_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->pl.in_use.next = ctx->pl.in_use.prev = &ctx->pl.in_use;
    ctx->grad_enabled = true;
    vn_rng_seed(&ctx->rng, 0, 0, 0);
    return ctx;
}

void vn_ctx_destroy(vn_ctx *ctx)
{
    if (!ctx) return;
    pool_release_all(ctx);
    vn_ctx_trim(ctx);
    free(ctx->pl.buckets);
    arena_free(&ctx->ar);
    free(ctx->tape);
    free(ctx);
}

void vn_ctx_reset(vn_ctx *ctx)
{
    ctx->n_tape = 0;
    pool_release_all(ctx);
    arena_reset(&ctx->ar);
    ctx->status = VN_OK;
    ctx->error[0] = '\0';
}

bool vn_ctx_set_grad(vn_ctx *ctx, bool enabled)
{
    bool old = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return old;
}

bool vn_ctx_grad_enabled(const vn_ctx *ctx) { return ctx->grad_enabled; }

vn_rng *vn_ctx_rng(vn_ctx *ctx) { return &ctx->rng; }

int vn_ctx_status(const vn_ctx *ctx) { return ctx->status; }

const char *vn_ctx_error(const vn_ctx *ctx) { return ctx->status ? ctx->error : ""; }

vn_tensor *vn_ctx_fail(vn_ctx *ctx, int code, const char *fmt, ...)
{
    if (ctx->status == VN_OK) {
        ctx->status = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

void vn_ctx_mem_stats(const vn_ctx *ctx, vn_mem_stats *out)
{
    out->pool_in_use = ctx->pl.in_use_bytes;
    out->pool_peak = ctx->pl.peak_bytes;
    out->pool_cached = ctx->pl.cached_bytes;
    out->arena_bytes = ctx->ar.reserved;
    out->system_allocs = ctx->system_allocs;
}

void vn_ctx_clear_peak(vn_ctx *ctx) { ctx->pl.peak_bytes = ctx->pl.in_use_bytes; }

vn_tensor *vn_ctx_tensor(vn_ctx *ctx, int ndim, const int64_t *shape)
{
    VN_ASSERT(ndim >= 0 && ndim <= VN_MAX_DIMS, "tensors have at most %d dims, got %d",
              VN_MAX_DIMS, ndim);
    vn_tensor *t = vn__arena_alloc(ctx, sizeof *t);
    if (!t) return vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory for a tensor header");
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = vn_shape_numel(ndim, shape);
    t->flags = VN_TENSOR_STEP;
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

/* ---- tape ----------------------------------------------------------------------------- */

bool vn__ok(vn_ctx *ctx, int n, vn_tensor *const *in)
{
    if (ctx->status != VN_OK) return false;
    for (int i = 0; i < n; i++)
        if (!in[i]) {
            vn_ctx_fail(ctx, VN_ERR_INVALID, "an op was given a NULL input %d", i);
            return false;
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

vn_node *vn__record(vn_ctx *ctx, vn_op op, vn_tensor *out, int n_in, vn_tensor *const *in,
                    vn__backward_fn backward, size_t state_bytes)
{
    VN_ASSERT(n_in <= VN_NODE_MAX_IN, "op %s has %d inputs, more than VN_NODE_MAX_IN",
              vn_op_name(op), n_in);
    if (ctx->n_tape == ctx->cap_tape) {
        int cap = ctx->cap_tape ? 2 * ctx->cap_tape : 256;
        vn_node **nt = realloc(ctx->tape, (size_t)cap * sizeof *nt);
        if (!nt) {
            vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory growing the tape");
            return NULL;
        }
        ctx->system_allocs++;
        ctx->tape = nt;
        ctx->cap_tape = cap;
    }
    vn_node *node = vn__arena_alloc(ctx, sizeof *node + state_bytes);
    if (!node) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory recording %s", vn_op_name(op));
        return NULL;
    }
    memset(node, 0, sizeof *node + state_bytes);
    node->op = op;
    node->n_in = n_in;
    for (int i = 0; i < n_in; i++) node->in[i] = in[i];
    node->out = out;
    node->backward = backward;
    node->state = state_bytes ? (void *)(node + 1) : NULL;
    out->node = node;
    out->flags |= VN_TENSOR_REQUIRES_GRAD;
    ctx->tape[ctx->n_tape++] = node;
    return node;
}

void vn__node_keep(vn_node *node, void *pool_buf)
{
    VN_ASSERT(node->n_bufs < VN_NODE_MAX_BUFS, "op %s keeps more than %d buffers",
              vn_op_name(node->op), VN_NODE_MAX_BUFS);
    node->bufs[node->n_bufs++] = pool_buf;
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
        if (zero) memset(t->grad, 0, bytes);
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

float *vn__grad_uninit(vn_ctx *ctx, vn_tensor *t, bool *fresh)
{
    return grad_alloc(ctx, t, false, fresh);
}

static void node_release(vn_ctx *ctx, vn_node *node)
{
    for (int i = 0; i < node->n_bufs; i++) vn__pool_free(ctx, node->bufs[i]);
    node->n_bufs = 0;
}

int vn_backward_with(vn_ctx *ctx, vn_tensor *out, const float *seed_grad)
{
    if (ctx->status != VN_OK) return ctx->status;
    if (!out) {
        vn_ctx_fail(ctx, VN_ERR_INVALID, "backward of a NULL tensor");
        return ctx->status;
    }
    if (!out->node) {
        vn_ctx_fail(ctx, VN_ERR_STATE, "backward of a tensor that is not on the tape "
                    "(was grad mode off, or does no input require grad?)");
        return ctx->status;
    }
    bool fresh;
    float *g = vn__grad_uninit(ctx, out, &fresh);
    if (!g) return ctx->status;
    for (int64_t i = 0; i < out->numel; i++) g[i] = fresh ? seed_grad[i] : g[i] + seed_grad[i];

    for (int i = ctx->n_tape - 1; i >= 0; i--) {
        vn_node *node = ctx->tape[i];
        vn_tensor *o = node->out;
        if (o->grad && node->backward) node->backward(ctx, node);
        node_release(ctx, node);
        if (o->grad && (o->flags & VN_TENSOR_STEP)) {
            vn__pool_free(ctx, o->grad);
            o->grad = NULL;
        }
        if (ctx->status != VN_OK) break;
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
