/* Gradient tools: the global gradient norm, clipping as torch.nn.utils.clip_grad_norm_, and
 * the bookkeeping of gradient accumulation over update_freq micro-batches.
 *
 * Norms are accumulated in double over fixed chunks that depend only on the tensor sizes, so
 * the result is the same for any thread count (resume stays bit-exact). Tensors without a
 * gradient buffer (grad == NULL) are skipped, as torch skips parameters whose grad is None. */
#ifndef VN_GRAD_H
#define VN_GRAD_H

#include "autograd/vn_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* sqrt(sum over tensors of sum(grad^2)): the L2 norm of all gradients as one vector. */
double vn_grad_norm(vn_tensor *const *params, int n);

/* torch.nn.utils.clip_grad_norm_(params, max_norm): total = vn_grad_norm; when
 * max_norm / (total + 1e-6) < 1 every gradient is multiplied by that coefficient (float32,
 * as torch). Returns the total norm before clipping. A non-finite total leaves the gradients
 * untouched (torch would scale them by NaN or 0); the caller sees it in the return value. */
double vn_clip_grad_norm(vn_tensor *const *params, int n, double max_norm);

/* L2 norm of a float array, computed as above. */
double vn_norm_f32(const float *x, int64_t n);
/* sum(x^2) in double, deterministic chunked order (the building block of the norms). */
double vn_sumsq_f32(const float *x, int64_t n);

/* Gradient accumulation, as the official engine: micro-batch j (0-based, counted over the
 * whole run or epoch) backpropagates loss * vn_accum_loss_scale(update_freq), gradients add
 * up (backward accumulates with +=), and the optimizer steps after micro-batch j when
 * vn_accum_is_update(j, update_freq); the schedule iteration of micro-batch j is
 * vn_accum_iteration(j, update_freq). With update_freq 1 these reduce to plain steps. */
static inline float vn_accum_loss_scale(int update_freq)
{
    return update_freq > 1 ? 1.0f / (float)update_freq : 1.0f;
}
static inline bool vn_accum_is_update(int64_t micro_step, int update_freq)
{
    return update_freq <= 1 || (micro_step + 1) % update_freq == 0;
}
static inline int64_t vn_accum_iteration(int64_t micro_step, int update_freq)
{
    return update_freq <= 1 ? micro_step : micro_step / update_freq;
}

#ifdef __cplusplus
}
#endif
#endif
