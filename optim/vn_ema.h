/* Model EMA as timm's ModelEma (timm 0.6.12, used by the official VanillaNet trainer): after
 * each optimizer step, for every state_dict entry (parameters and BatchNorm running_mean /
 * running_var, and num_batches_tracked)
 *     ema = ema * decay + (1 - decay) * value
 * computed in float32 as torch does. Several decays (the official --model_ema_decay takes a
 * list) are several vn_ema objects, each bound to its own EMA model.
 *
 * A vn_ema does not own tensors: it updates a list of destination tensors (the EMA model's
 * parameters and float buffers) from a list of source tensors (the live model's), paired by
 * position. The EMA model is an ordinary model instance, so the trainer evaluates it directly;
 * keeping its act_learn equal to the live model's (the official engine copies it after every
 * update) is the trainer's job: call the model's change_act on the EMA model too.
 *
 * num_batches_tracked is an int64 buffer: torch computes the blend in float32 and copy_()
 * truncates it back to int64 (vn_ema_blend_i64), which is what vn_ema_add_counter entries do. */
#ifndef VN_EMA_H
#define VN_EMA_H

#include "autograd/vn_tensor.h"
#include "optim/vn_ckpt_entry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vn_ema vn_ema;

/* dst[i] follows src[i] (same shapes, checked; dst[i] != src[i]); names[i] name the pair in
 * the state (names may be NULL: dst[i]->name is used); prefix ("model_ema.") is prepended to
 * the state names (NULL: none). 0 < decay <= 1 (1 freezes the EMA). Like timm's deepcopy at
 * creation, dst starts as a copy of src. */
int vn_ema_create(vn_ema **out, double decay, int n, vn_tensor *const *dst,
                  vn_tensor *const *src, const char *const *names, const char *prefix,
                  vn_error *err);
void vn_ema_destroy(vn_ema *ema);

/* Adds an int64 scalar (num_batches_tracked) to follow; *dst is set to *src now. */
int vn_ema_add_counter(vn_ema *ema, const char *name, int64_t *dst, const int64_t *src,
                       vn_error *err);

/* ema = ema * decay + (1 - decay) * value for every pair. */
void vn_ema_update(vn_ema *ema);
/* dst = src for every pair (a fresh start). */
void vn_ema_copy_from_model(vn_ema *ema);
double vn_ema_decay(const vn_ema *ema);
/* Sets the decay of the next updates (0 <= decay <= 1, else VN_ERR_INVALID and unchanged):
 * for a decay that changes per update, as Ultralytics' ModelEMA (vn_ema_ramped_decay). */
int vn_ema_set_decay(vn_ema *ema, double decay, vn_error *err);
/* Ultralytics 8.3 ModelEMA: the decay of update number `updates` (1 for the first),
 * decay * (1 - exp(-updates / tau)); tau <= 0: decay (no ramp). */
double vn_ema_ramped_decay(double decay, double tau, int64_t updates);

/* torch: int64 ema_v.copy_(ema_v * decay + (1. - decay) * model_v) via float32. */
int64_t vn_ema_blend_i64(int64_t ema, int64_t value, double decay);

/* Named state: one entry per pair, "<prefix><name>", F32 with the tensor's shape and flags,
 * then one I64 scalar per counter. The data pointers are the EMA model's tensors. */
int vn_ema_state_count(const vn_ema *ema);
int vn_ema_state_at(const vn_ema *ema, int i, vn_ckpt_entry *out);
int vn_ema_state_find(const vn_ema *ema, const char *name, vn_ckpt_entry *out, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif
