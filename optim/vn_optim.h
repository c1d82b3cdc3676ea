/* Optimizers that match PyTorch/timm step for step: SGD (torch.optim.SGD), AdamW
 * (torch.optim.AdamW) and LAMB (timm 0.6.12 `Lamb`, the optimizer of the official VanillaNet
 * recipe), with the official optim_factory's parameter groups: no weight decay for 1-D
 * parameters and biases, and optional layer-wise learning-rate decay.
 *
 * Typical use (one optimizer step per update_freq micro-batches):
 *
 *     vn_optim_config cfg;
 *     vn_optim_config_init(&cfg, VN_OPTIM_LAMB);
 *     cfg.weight_decay = 0.35;
 *     vn_optim *opt;
 *     vn_optim_create(&opt, &cfg, n, params, names, &err);
 *     for each iteration it:
 *         vn_optim_set_lr(opt, vn_schedule_value(&lr_sched, it));
 *         vn_optim_set_weight_decay(opt, vn_schedule_value(&wd_sched, it));
 *         update_freq x (forward, backward of loss / update_freq: grads accumulate with +=)
 *         if (vn_optim_step(opt, &err) != VN_OK) stop (non-finite gradients, nothing changed)
 *         vn_optim_zero_grad(opt);
 *         vn_ema_update(...) for each EMA
 *
 * The optimizer does not own the parameters; they must outlive it. Every parameter needs a
 * gradient buffer (t->grad) when vn_optim_step runs. */
#ifndef VN_OPTIM_H
#define VN_OPTIM_H

#include "autograd/vn_tensor.h"
#include "optim/vn_ckpt_entry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vn_optim_kind {
    VN_OPTIM_SGD = 0,
    VN_OPTIM_ADAMW = 1,
    VN_OPTIM_LAMB = 2
} vn_optim_kind;

/* "sgd", "adamw", "lamb". */
const char *vn_optim_kind_name(vn_optim_kind kind);
/* Parses those names (case-insensitive); err names the accepted values. */
int vn_optim_kind_parse(const char *s, vn_optim_kind *out, vn_error *err);

typedef struct vn_optim_config {
    vn_optim_kind kind;
    double lr;           /* base learning rate (a schedule usually overrides it per iteration) */
    double weight_decay; /* SGD: L2 added to the gradient; AdamW: decoupled; LAMB: added to
                            the update before the trust ratio */
    /* SGD */
    double momentum;
    double dampening;
    bool nesterov;       /* needs momentum > 0 and dampening 0, as torch */
    /* AdamW and LAMB */
    double beta1, beta2, eps;
    /* LAMB */
    bool bias_correction;
    bool grad_averaging; /* m = beta1 m + (1 - beta1) g; false: m = beta1 m + g */
    double max_grad_norm; /* LAMB's built-in global-norm clipping; <= 0 disables */
    bool trust_clip;     /* LAMBC: trust ratio clamped to at most 1 */
    bool always_adapt;   /* trust ratio also for parameters without weight decay */
    /* Parameter groups (official optim_factory.get_parameter_groups) */
    bool filter_no_decay; /* no weight decay for 1-D params, ".bias", VN_TENSOR_NO_DECAY */
    double layer_decay;   /* 1.0: off; else lr scale layer_decay^(num_layers + 1 - layer_id) */
    int layer_decay_num_layers;
} vn_optim_config;

/* Defaults of the official VanillaNet main.py: lr 4e-3, weight decay 0.05, momentum 0.9,
 * dampening 0, nesterov off (torch.optim.SGD's default; the official optim_factory's "sgd" is
 * Nesterov, which the trainer's optim.nesterov turns on), betas (0.9, 0.999), eps 1e-8 (--opt_eps, which the official
 * optim_factory always passes, also to LAMB), bias correction and grad averaging on,
 * max_grad_norm 1.0 (timm Lamb's default), filter_no_decay on, layer decay off (1.0) with
 * 4 layers. */
void vn_optim_config_init(vn_optim_config *cfg, vn_optim_kind kind);
/* Checks ranges (lr >= 0, 0 <= beta < 1, ...); err names the offending field. */
int vn_optim_config_check(const vn_optim_config *cfg, vn_error *err);

/* --- parameter groups ------------------------------------------------------------------ */

/* As the official get_parameter_groups: no decay when the parameter is 1-D (ndim <= 1), its
 * name ends in ".bias", ".alpha" or ".beta", or it carries VN_TENSOR_NO_DECAY. */
bool vn_param_is_no_decay(const char *name, const vn_tensor *t);

/* The official get_num_layer_for_vanillanet: names starting with "stem" -> 0,
 * "stages.<i>..." -> i + 1, "cls..." -> num_layers + 1; anything else is an error.
 * A stage index above num_layers is an error (the official code would fail indexing its
 * value table of num_layers + 2 scales). */
int vn_layer_id_vanillanet(const char *name, int num_layers, int *layer_id, vn_error *err);
/* layer_decay ^ (num_layers + 1 - layer_id), the official LayerDecayValueAssigner value. */
double vn_layer_decay_scale(double layer_decay, int num_layers, int layer_id);

/* --- the optimizer --------------------------------------------------------------------- */

typedef struct vn_optim vn_optim;

/* params[i] are the trainable tensors in a fixed order (the official state_dict order);
 * names[i] their names (names may be NULL: then params[i]->name is used). Names must be
 * unique and non-empty; they are copied. Moment buffers are allocated and zeroed here. */
int vn_optim_create(vn_optim **out, const vn_optim_config *cfg, int n_params,
                    vn_tensor *const *params, const char *const *names, vn_error *err);
void vn_optim_destroy(vn_optim *opt);

const vn_optim_config *vn_optim_get_config(const vn_optim *opt);

/* Base lr for the next steps; parameter i uses lr * lr_scale(i). VN_ERR_INVALID (and the lr
 * unchanged) for a negative or non-finite lr. */
int vn_optim_set_lr(vn_optim *opt, double lr);
double vn_optim_lr(const vn_optim *opt);
/* Parameter i uses lr * lr_scale(i) + add from now on (0: none, the default; Ultralytics'
 * warmup of the biases' lr). VN_ERR_INVALID for a bad index or a non-finite add. */
int vn_optim_set_lr_add(vn_optim *opt, int i, double add);
/* SGD with momentum > 0: the momentum of the next steps (> 0; Ultralytics' momentum warmup).
 * Ignored for other optimizers, for SGD created without momentum, and for values <= 0. */
void vn_optim_set_momentum(vn_optim *opt, double momentum);
/* Weight decay for the decay group (parameters in the no-decay group keep 0). The official
 * engine sets the scheduled value only on groups whose weight decay is > 0, so a run created
 * with weight_decay 0 there ignores its weight-decay schedule; here the decay group always
 * takes the value set (a trainer matching that quirk skips the call when the configured
 * weight decay is 0). VN_ERR_INVALID (and the value unchanged) when negative or non-finite. */
int vn_optim_set_weight_decay(vn_optim *opt, double weight_decay);
double vn_optim_weight_decay(const vn_optim *opt);
/* Smallest and largest per-parameter lr (what the official trainer logs as min_lr / lr). */
void vn_optim_lr_range(const vn_optim *opt, double *min_lr, double *max_lr);

/* One optimizer step from the gradients in params[i]->grad (not zeroed, not modified:
 * timm's Lamb divides p.grad in place by its clipping factor, here the division happens on the
 * fly, with the same result for the parameters and moments).
 * First computes the global gradient norm (double, fixed order); when it is not finite,
 * returns VN_ERR_NUMERIC and changes nothing (no parameter, moment or step count), so the
 * caller can stop or skip. A missing grad buffer is VN_ERR_STATE. */
int vn_optim_step(vn_optim *opt, vn_error *err);
/* Sets every parameter's gradient to zero (explicit, as backward accumulates), allocating
 * missing gradient buffers; VN_ERR_NOMEM if one cannot be allocated. */
int vn_optim_zero_grad(vn_optim *opt);
/* Steps taken (the step count used by bias correction). */
int64_t vn_optim_steps(const vn_optim *opt);
/* Global L2 norm of the gradients seen by the last vn_optim_step (before LAMB's clipping);
 * 0 before the first step. */
double vn_optim_last_grad_norm(const vn_optim *opt);

typedef struct vn_optim_param_info {
    const char *name;
    vn_tensor *tensor;
    bool decay;       /* in the decay group */
    int layer_id;     /* -1 when layer decay is off */
    double lr_scale;  /* 1.0 when layer decay is off */
} vn_optim_param_info;

int vn_optim_param_count(const vn_optim *opt);
/* Fills *info for parameter i (0 <= i < count); VN_ERR_INVALID otherwise. */
int vn_optim_param_info_at(const vn_optim *opt, int i, vn_optim_param_info *info);

/* --- named state (checkpoints) --------------------------------------------------------
 * Entries, in this order:
 *   "optim.step"                     I64 scalar, steps taken
 *   SGD with momentum > 0:  "optim.momentum_buffer.<param>"   F32, the parameter's shape
 *   AdamW and LAMB:         "optim.exp_avg.<param>", "optim.exp_avg_sq.<param>"
 * Moment buffers have the parameter's shape and layout (see vn_ckpt_entry.flags).
 * Restore by loading every entry (vn_ckpt_entry_load), then call vn_optim_state_loaded.
 * The base lr and weight decay are not state: the schedule sets them every iteration. */
int vn_optim_state_count(const vn_optim *opt);
int vn_optim_state_at(const vn_optim *opt, int i, vn_ckpt_entry *out);
/* VN_ERR_NOT_FOUND when no entry has that name. */
int vn_optim_state_find(const vn_optim *opt, const char *name, vn_ckpt_entry *out,
                        vn_error *err);
/* Checks restored state (step count >= 0, second moments >= 0, all finite); err names the
 * first bad entry. */
int vn_optim_state_loaded(vn_optim *opt, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif
