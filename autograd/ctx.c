/* The execution context: bump arena, buffer pool, tape and backward. */
#include "autograd/ops_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* ---- buffer pool: step data and gradients ---------------------------------------------
 *
 * Blocks are carved from large chunks of address space (mmap; pages cost memory only once
 * touched) by best fit: the smallest free block that holds the request, the lowest address
 * on ties, splitting off the rest. Freed blocks merge with free neighbours. Reusing small
 * holes before touching fresh pages keeps the resident memory close to the peak of bytes in
 * use, whatever the mix of sizes (a size-class cache would hold the peak of every size). */

typedef struct pool_chunk pool_chunk;

typedef struct pool_block {
    struct pool_block *phys_prev, *phys_next; /* address-order neighbours in the chunk */
    struct pool_block *free_prev, *free_next; /* free list links (free blocks only) */
    size_t size;                              /* usable bytes after the header, multiple of 64 */
    uint64_t magic;
    pool_chunk *chunk;
    uint64_t pad;
} pool_block;
_Static_assert(sizeof(pool_block) == 64, "pool header must keep 64-byte alignment");

struct pool_chunk {
    pool_chunk *next;
    size_t bytes;   /* mapped bytes, including this header */
    size_t touched; /* bytes from the chunk start handed out since the last trim (resident) */
    size_t touched_max; /* the same since the chunk was mapped (sanitizer shadow to clear) */
    _Alignas(64) unsigned char mem[];
};

#define POOL_MAGIC_USED 0x5553454456424c4bull
#define POOL_MAGIC_FREE 0x4652454556424c4bull
/* Address space reserved per chunk; only touched pages become resident. */
#define POOL_CHUNK_BYTES ((size_t)1 << 36)
/* A free remainder smaller than this stays with the allocated block. */
#define POOL_SPLIT_MIN 256

typedef struct pool {
    pool_chunk *chunks;
    pool_block *free; /* unordered list of free blocks */
    size_t in_use_bytes, peak_bytes, free_bytes;
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

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POOL_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POOL_POISON(p, n) ((void)(p), (void)(n))
#define POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static void free_list_push(pool *p, pool_block *b)
{
    b->magic = POOL_MAGIC_FREE;
    b->free_prev = NULL;
    b->free_next = p->free;
    if (p->free) p->free->free_prev = b;
    p->free = b;
    p->free_bytes += b->size;
#if defined(__SANITIZE_ADDRESS__)
    /* Poison what was handed out before; never the untouched top (its shadow is huge). */
    unsigned char *lo = (unsigned char *)(b + 1), *top = (unsigned char *)b->chunk + b->chunk->touched;
    if (top > lo) POOL_POISON(lo, (size_t)(top - lo) < b->size ? (size_t)(top - lo) : b->size);
#endif
}

static void free_list_remove(pool *p, pool_block *b)
{
    if (b->free_prev) b->free_prev->free_next = b->free_next;
    else p->free = b->free_next;
    if (b->free_next) b->free_next->free_prev = b->free_prev;
    p->free_bytes -= b->size;
}

/* Maps a new chunk holding at least `need` bytes; returns its single (free) block. */
static pool_block *pool_add_chunk(vn_ctx *ctx, size_t need)
{
    size_t min = sizeof(pool_chunk) + sizeof(pool_block) + need;
    min = (min + 4095) & ~(size_t)4095;
    /* One large reservation keeps a single top-of-pool region: smaller reservations leave
     * tails that later requests cannot use. Halve it where address space is limited. */
    size_t bytes = POOL_CHUNK_BYTES > min ? POOL_CHUNK_BYTES : min;
    void *m = MAP_FAILED;
    for (;;) {
        m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
        if (m != MAP_FAILED || bytes == min) break;
        bytes = bytes / 2 > min ? bytes / 2 : min;
    }
    if (m == MAP_FAILED) return NULL;
    ctx->system_allocs++;
    pool_chunk *c = m;
    c->bytes = bytes;
    c->touched = c->touched_max = 0;
    c->next = ctx->pl.chunks;
    ctx->pl.chunks = c;
    pool_block *b = (pool_block *)c->mem;
    memset(b, 0, sizeof *b);
    b->size = bytes - sizeof(pool_chunk) - sizeof(pool_block);
    b->chunk = c;
    free_list_push(&ctx->pl, b);
    return b;
}

static pool_block *pool_best_fit(pool *p, size_t size)
{
    pool_block *best = NULL;
    for (pool_block *b = p->free; b; b = b->free_next)
        if (b->size >= size && (!best || b->size < best->size ||
                                (b->size == best->size && b < best)))
            best = b;
    return best;
}

void *vn__pool_alloc(vn_ctx *ctx, size_t bytes)
{
    pool *p = &ctx->pl;
    size_t size = (bytes + 63) & ~(size_t)63;
    if (size == 0) size = 64;
    pool_block *b = pool_best_fit(p, size);
    if (!b && !(b = pool_add_chunk(ctx, size))) return NULL;
    free_list_remove(p, b);
    POOL_UNPOISON(b, sizeof *b);
    size_t end = (size_t)((unsigned char *)(b + 1) + size - (unsigned char *)b->chunk);
    if (end > b->chunk->touched) b->chunk->touched = end;
    if (end > b->chunk->touched_max) b->chunk->touched_max = end;
    if (b->size - size >= sizeof(pool_block) + POOL_SPLIT_MIN) {
        pool_block *rest = (pool_block *)((unsigned char *)(b + 1) + size);
        POOL_UNPOISON(rest, sizeof *rest);
        rest->phys_prev = b;
        rest->phys_next = b->phys_next;
        if (b->phys_next) b->phys_next->phys_prev = rest;
        rest->size = b->size - size - sizeof(pool_block);
        rest->chunk = b->chunk;
        b->phys_next = rest;
        b->size = size;
        free_list_push(p, rest);
    }
    b->magic = POOL_MAGIC_USED;
    POOL_UNPOISON(b + 1, bytes ? bytes : 1);
    p->in_use_bytes += b->size;
    if (p->in_use_bytes > p->peak_bytes) p->peak_bytes = p->in_use_bytes;
    return b + 1;
}

/* Returns a used block to the free list, merging it with free neighbours; returns the free
 * block that now holds it. */
static pool_block *pool_release_block(pool *p, pool_block *b)
{
    p->in_use_bytes -= b->size;
    pool_block *n = b->phys_next;
    if (n && n->magic == POOL_MAGIC_FREE) {
        free_list_remove(p, n);
        POOL_UNPOISON(n, sizeof *n);
        b->size += sizeof(pool_block) + n->size;
        b->phys_next = n->phys_next;
        if (n->phys_next) n->phys_next->phys_prev = b;
        n->magic = 0;
    }
    pool_block *q = b->phys_prev;
    if (q && q->magic == POOL_MAGIC_FREE) {
        free_list_remove(p, q);
        q->size += sizeof(pool_block) + b->size;
        q->phys_next = b->phys_next;
        if (b->phys_next) b->phys_next->phys_prev = q;
        b->magic = 0;
        b = q;
    }
    free_list_push(p, b);
    return b;
}

void vn__pool_free(vn_ctx *ctx, void *ptr)
{
    if (!ptr) return;
    pool_block *b = (pool_block *)ptr - 1;
    VN_ASSERT(b->magic == POOL_MAGIC_USED, "vn__pool_free of a buffer that is not in use "
              "(double free, or not from this context's pool)");
    pool_release_block(&ctx->pl, b);
}

static void pool_release_all(vn_ctx *ctx)
{
    pool *p = &ctx->pl;
    for (pool_chunk *c = p->chunks; c; c = c->next) {
        for (pool_block *b = (pool_block *)c->mem; b; b = b->phys_next)
            if (b->magic == POOL_MAGIC_USED) b = pool_release_block(p, b);
    }
}

void vn_ctx_trim(vn_ctx *ctx)
{
    pool *p = &ctx->pl;
    pool_chunk **link = &p->chunks;
    while (*link) {
        pool_chunk *c = *link;
        pool_block *first = (pool_block *)c->mem;
        if (first->magic == POOL_MAGIC_FREE && !first->phys_next) {
            free_list_remove(p, first);
            *link = c->next;
            POOL_UNPOISON(c, c->touched_max);
            munmap(c, c->bytes);
            continue;
        }
        /* Give back the pages inside free blocks; they read as zero if touched again. */
        size_t touched = 0;
        for (pool_block *b = first; b; b = b->phys_next) {
            unsigned char *lo = (unsigned char *)(b + 1), *hi = lo + b->size;
            if (b->magic != POOL_MAGIC_FREE) {
                touched = (size_t)(hi - (unsigned char *)c);
                continue;
            }
            uintptr_t a0 = ((uintptr_t)lo + 4095) & ~(uintptr_t)4095;
            uintptr_t a1 = (uintptr_t)hi & ~(uintptr_t)4095;
            if (a1 > a0) madvise((void *)a0, a1 - a0, MADV_DONTNEED);
        }
        c->touched = touched;
        link = &c->next;
    }
}

/* ---- context ------------------------------------------------------------------------ */

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
    pool_chunk *c = ctx->pl.chunks;
    while (c) {
        pool_chunk *n = c->next;
        POOL_UNPOISON(c, c->touched_max);
        munmap(c, c->bytes);
        c = n;
    }
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
    size_t touched = 0;
    for (const pool_chunk *c = ctx->pl.chunks; c; c = c->next) touched += c->touched;
    out->pool_cached = touched > ctx->pl.in_use_bytes ? touched - ctx->pl.in_use_bytes : 0;
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
    for (int i = 0; i < n; i++) {
        if (!in[i]) {
            vn_ctx_fail(ctx, VN_ERR_INVALID, "an op was given a NULL input %d", i);
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

void vn__set_recompute(vn_node *node, vn__backward_fn fn) { node->recompute = fn; }

bool vn__cheap_to_save(const vn_tensor *t)
{
    return !(t->flags & VN_TENSOR_STEP) || (t->node && t->node->recompute);
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
    if (!t || !(t->flags & VN_TENSOR_STEP) ||
        (t->flags & (VN_TENSOR_VIEW | VN_TENSOR_HAS_VIEW | VN_TENSOR_RELEASED)))
        return;
    t->flags |= VN_TENSOR_RELEASED;
    if (!t->data) return;
    if (t->saved_refs == 0) {
        data_free(ctx, t);
    } else if (t->node && t->node->recompute) {
        data_free(ctx, t);
        t->flags |= VN_TENSOR_DROPPED;
    }
}

/* Recomputes a dropped tensor from its producer's saved inputs, recomputing those that were
 * dropped too. */
static bool rematerialize(vn_ctx *ctx, vn_tensor *t)
{
    vn_node *n = t->node;
    VN_ASSERT(n && n->recompute, "a dropped tensor without a recompute function");
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
            n->recompute(ctx, n);
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

float *vn__grad_steal(vn_node *node, vn_tensor *t)
{
    vn_tensor *o = node->out;
    if (t->grad || !o->grad || t == o || t->numel != o->numel ||
        !(t->flags & VN_TENSOR_STEP) || !(o->flags & VN_TENSOR_STEP))
        return NULL;
    t->grad = o->grad;
    o->grad = NULL;
    return t->grad;
}

float *vn__grad_uninit(vn_ctx *ctx, vn_tensor *t, bool *fresh)
{
    return grad_alloc(ctx, t, false, fresh);
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
