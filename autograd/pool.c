/* Step memory of a context: the bump arena (tensor headers, tape nodes, op state) and the
 * best-fit buffer pool (tensor data, gradients, saved buffers). */
#include "autograd/ctx_impl.h"
#include "autograd/device_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- bump arena: tensor headers, tape nodes, op state ------------------------------ */

#define ARENA_CHUNK (256u * 1024u)

struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    size_t used;
    _Alignas(64) unsigned char mem[];
};

/* ---- buffer pool: step data and gradients ---------------------------------------------
 *
 * Blocks are carved from large chunks of address space (mmap; pages cost memory only once
 * touched) by best fit: the smallest free block that holds the request, the lowest address
 * on ties, splitting off the rest. Freed blocks merge with free neighbours. Reusing small
 * holes before touching fresh pages keeps the resident memory close to the peak of bytes in
 * use, whatever the mix of sizes (a size-class cache would hold the peak of every size). */

struct pool_block {
    struct pool_block *phys_prev, *phys_next; /* address-order neighbours in the chunk */
    struct pool_block *free_prev, *free_next; /* free list links (free blocks only) */
    size_t size;                              /* usable bytes after the header, multiple of 64 */
    uint64_t magic;
    pool_chunk *chunk;
    uint64_t pad;
};
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
    if (ctx->device != VN_DEVICE_CPU) return vn__dev_pool_alloc(ctx, bytes);
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
    if (ctx->device != VN_DEVICE_CPU) {
        vn__dev_pool_free(ctx, ptr);
        return;
    }
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
    if (ctx->device != VN_DEVICE_CPU) vn__dev_pool_trim(ctx);
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

void vn__mem_reset(vn_ctx *ctx)
{
    if (ctx->device != VN_DEVICE_CPU) vn__dev_pool_reset(ctx);
    pool_release_all(ctx);
    arena_reset(&ctx->ar);
}

void vn__mem_destroy(vn_ctx *ctx)
{
    if (ctx->device != VN_DEVICE_CPU) vn__dev_pool_destroy(ctx);
    pool_chunk *c = ctx->pl.chunks;
    while (c) {
        pool_chunk *n = c->next;
        POOL_UNPOISON(c, c->touched_max);
        munmap(c, c->bytes);
        c = n;
    }
    arena_free(&ctx->ar);
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
    if (ctx->device != VN_DEVICE_CPU) vn__dev_pool_stats(ctx, &out->pool_in_use, &out->pool_peak);
}

void vn_ctx_clear_peak(vn_ctx *ctx)
{
    if (ctx->device != VN_DEVICE_CPU) vn__dev_pool_clear_peak(ctx);
    ctx->pl.peak_bytes = ctx->pl.in_use_bytes;
}
