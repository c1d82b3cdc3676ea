/* Private to autograd/: the context's fields, shared by the step memory (pool.c), the
 * context itself (ctx.c) and the tape (tape.c). Ops use ops_impl.h instead. */
#ifndef VN_CTX_IMPL_H
#define VN_CTX_IMPL_H

#include "autograd/ops_impl.h"

/* Step memory (pool.c): a bump arena for tensor headers, tape nodes and op state, and a
 * best-fit pool of large blocks for tensor data and gradients. */
typedef struct arena_chunk arena_chunk;
typedef struct arena {
    arena_chunk *head;    /* chunks in allocation order */
    arena_chunk *current; /* chunk being filled */
    size_t reserved;
} arena;

typedef struct pool_chunk pool_chunk;
typedef struct pool_block pool_block;
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
    vn_device device; /* where step tensors live; not the CPU: the pool is the device's */
    void *dev;        /* the device backend's per-context state (its step pool) */
    vn_grad_ready_fn grad_ready; /* data-parallel hooks (vn_ctx.h) */
    void *grad_ready_user;
    vn_bn_hooks bn_hooks;
    bool has_bn_hooks;
    size_t keep_budget;  /* bytes of recomputable outputs a step may keep (vn_ctx_set_keep) */
    size_t keep_used;    /* of which this step has kept */
};

/* Hands every pool block back and rewinds the arena (the end of a step). */
void vn__mem_reset(vn_ctx *ctx);
/* Unmaps the pool and frees the arena (the end of the context). */
void vn__mem_destroy(vn_ctx *ctx);

#endif
