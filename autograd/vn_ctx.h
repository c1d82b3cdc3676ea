/* The execution context: step memory, the tape, grad mode and a sticky error.
 *
 * Ops take a context and return a new step tensor, or NULL on error. Errors are sticky:
 * once an op fails, the context keeps the first message and later ops given a NULL input
 * return NULL too, so a forward pass can be written straight and checked once at the end
 * with vn_ctx_status / vn_ctx_error.
 *
 * A step tensor belongs to the context that made it: ops, vn_backward and vn_release given
 * another context's step tensor fail (VN_ERR_INVALID), and so does backward of a tape that an
 * earlier backward consumed (VN_ERR_STATE). Model-lifetime tensors (vn_tensor_new) are shared
 * freely. A NULL context makes ops return NULL and vn_ctx_status return VN_ERR_INVALID. A
 * step tensor must not be used after vn_ctx_reset (its memory is gone). Each context is used
 * by one thread at a time; several contexts may run on several threads.
 *
 * Memory: tensor headers, tape nodes and op state come from a bump arena; tensor data and
 * gradients come from a pool that recycles buffers by size. vn_ctx_reset releases both in
 * one call; after the first step of a fixed-shape training loop, a step makes no malloc. */
#ifndef VN_CTX_H
#define VN_CTX_H

#include "autograd/vn_tensor.h"
#include "base/vn_rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vn_ctx vn_ctx;
typedef struct vn_node vn_node;

typedef struct vn_mem_stats {
    size_t pool_in_use;    /* bytes of step buffers currently handed out */
    size_t pool_peak;      /* high-water mark of pool_in_use since creation or last clear */
    size_t pool_cached;    /* bytes touched but not in use (resident, free for reuse) */
    size_t arena_bytes;    /* bytes reserved by the bump arena */
    uint64_t system_allocs;/* malloc calls made by pool and arena since creation */
} vn_mem_stats;

vn_ctx *vn_ctx_create(void);
/* A context whose step tensors live on device d (for the CPU: as vn_ctx_create); NULL when d is
 * not usable (vn_device_check says why) or on allocation failure. Ops given tensors of
 * another device fail with an error naming both devices. */
vn_ctx *vn_ctx_create_on(vn_device d);
vn_device vn_ctx_device(const vn_ctx *ctx);
void vn_ctx_destroy(vn_ctx *ctx);

/* Releases every step tensor, the tape and op state. Model-lifetime tensors are untouched,
 * but their `node` link is cleared. Also clears a sticky error. */
void vn_ctx_reset(vn_ctx *ctx);
/* Returns cached pool memory to the system (after a shape change, for instance). */
void vn_ctx_trim(vn_ctx *ctx);

/* Grad mode: when off, ops record nothing (inference and evaluation). Returns old value. */
bool vn_ctx_set_grad(vn_ctx *ctx, bool enabled);
bool vn_ctx_grad_enabled(const vn_ctx *ctx);

/* The RNG used by stochastic ops (dropout). Owned by the context, saved by checkpoints. */
vn_rng *vn_ctx_rng(vn_ctx *ctx);

int vn_ctx_status(const vn_ctx *ctx);
const char *vn_ctx_error(const vn_ctx *ctx);
/* Records an error (first one wins) and returns NULL for convenience in ops. */
vn_tensor *vn_ctx_fail(vn_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void vn_ctx_mem_stats(const vn_ctx *ctx, vn_mem_stats *out);
void vn_ctx_clear_peak(vn_ctx *ctx);

/* t itself when it lives on the context's device; otherwise a step tensor there holding t's
 * values (a batch decoded in host memory, copied to the device: through pinned staging and
 * without waiting for the device's queued work, so t may be reused at once). NULL with the
 * context's error set when that fails. */
vn_tensor *vn_ctx_upload(vn_ctx *ctx, vn_tensor *t);

/* A step tensor with uninitialised data. */
vn_tensor *vn_ctx_tensor(vn_ctx *ctx, int ndim, const int64_t *shape);
vn_tensor *vn_ctx_tensor4(vn_ctx *ctx, int64_t d0, int64_t d1, int64_t d2, int64_t d3);

/* Declares that the caller will not read t again (its data, or as an op input). Its memory
 * goes back to the step pool at once when no tape entry needs it for backward; when one
 * does, it stays until that entry's backward has run -- or, when the op that made t can
 * recompute it cheaply from what it saved (BatchNorm, activations, dropout, max-pool), it is
 * freed now and recomputed during backward. Model forwards call this on every intermediate
 * to keep training memory down to what backward truly needs. NULL, model-lifetime tensors
 * and views are ignored. An op later given a released tensor fails with an error. */
void vn_release(vn_ctx *ctx, vn_tensor *t);
/* Up to `bytes` per step of those recomputable outputs are kept instead (the first released,
 * in tape order, that fit), trading memory for the recomputation: a small model keeps all of
 * them and skips its recomputation; 0 (the default) keeps none. The same bytes either way:
 * recomputation writes exactly what the forward wrote. */
void vn_ctx_set_keep(vn_ctx *ctx, size_t bytes);

/* Backward from a scalar (numel 1) tensor: seeds its gradient with 1 and walks the tape in
 * reverse, accumulating into every tensor that requires grad. Each entry's saved state and
 * each intermediate gradient is released as soon as it has been used. The tape is consumed:
 * call vn_ctx_reset before the next forward. */
int vn_backward(vn_ctx *ctx, vn_tensor *loss);
/* As vn_backward, but seeds with a given gradient of loss's shape (for tests). */
int vn_backward_with(vn_ctx *ctx, vn_tensor *out, const float *seed_grad);

/* ---- hooks for data-parallel training (train/vn_dist.h) -------------------------------- */

/* Called during backward once a parameter's gradient (VN_TENSOR_PARAM) is final for this
 * pass: right after the last tape entry that reads it (lowest on the tape) has run, so a
 * caller can start reducing it while backward goes on. NULL turns it off. */
typedef void (*vn_grad_ready_fn)(void *user, vn_tensor *param);
void vn_ctx_set_grad_ready(vn_ctx *ctx, vn_grad_ready_fn fn, void *user);

/* Training-mode BatchNorm across ranks (the context keeps a copy; NULL: none).
 *  - allgather (sync BN, with ranks > 1): the forward gathers each rank's row count, mean and
 *    sum of squared deviations (1 + 2C doubles) and combines them in rank order, so every rank
 *    normalises with the statistics of the whole batch; the backward sums the two per-channel
 *    reductions of dx with allreduce (the weight and bias gradients stay local: the gradient
 *    all-reduce adds them). Running statistics are then updated from the global statistics.
 *  - record (without sync): instead of updating the running statistics and
 *    num_batches_tracked, the forward hands the batch mean and unbiased variance (double) to
 *    record, which replays them in a chosen order later.
 * A hook that fails returns a status; the op then fails with its message. */
typedef struct vn_bn_hooks {
    int ranks;
    int (*allgather)(void *user, const double *send, int64_t n, double *recv);
    int (*allreduce)(void *user, double *buf, int64_t n);
    void (*record)(void *user, vn_tensor *running_mean, vn_tensor *running_var,
                   int64_t *num_batches_tracked, double momentum, const double *mean,
                   const double *var_unbiased, int64_t channels);
    void *user;
} vn_bn_hooks;
void vn_ctx_set_bn_hooks(vn_ctx *ctx, const vn_bn_hooks *hooks);

#ifdef __cplusplus
}
#endif
#endif
