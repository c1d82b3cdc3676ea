/* The trainer: the epoch loop of the official VanillaNet recipe (deep training, LAMB,
 * per-iteration schedules, EMA, mixup/cutmix, BCE), with bit-exact resume from checkpoints
 * written atomically, evaluation, and metrics. Also the pieces the other commands share:
 * building a model, loaders and an optimizer from a vn_config, checkpoints, evaluation. */
#ifndef VN_TRAINER_H
#define VN_TRAINER_H

#include <signal.h>
#include <stdio.h>

#include "data/vn_loader.h"
#include "io/vn_pth.h"
#include "models/vn_vanillanet.h"
#include "optim/vn_ema.h"
#include "optim/vn_optim.h"
#include "train/vn_config.h"
#include "train/vn_dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- building blocks from a config --------------------------------------------------- */

/* The model configuration of cfg.model (a named variant, optionally with dims/strides
 * overridden, or a custom network). num_classes 0 takes n_classes (from the data). */
int vn_build_model_config(const vn_config *cfg, int n_classes, vn_vanillanet_config *out,
                          vn_error *err);
/* Loader settings for the training split (augmenting) or evaluation (eval transform). */
void vn_build_loader_config(const vn_config *cfg, bool train, vn_loader_config *out);
/* The official datasets.py geometry when data.eval_mode is official (called by
 * vn_build_loader_config): at input_size <= 32 no evaluation resize and RandomCrop(pad 4)
 * instead of RandomResizedCrop; at >= 384 a square evaluation resize without crop. */
void vn_official_geometry(const vn_config *cfg, vn_loader_config *lc);
/* The evaluation geometry data.eval_mode official gives at input_size: the image as it is up
 * to 32, a square warp from 384, else resize + centre crop (datasets.py). */
vn_eval_resize vn_official_eval_resize(int64_t input_size);
/* Optimizer settings of cfg.optim (SGD: Nesterov unless optim.nesterov is false). */
void vn_build_optim_config(const vn_config *cfg, vn_optim_config *oc);
/* An EMA whose copy (a second instance of the same model) follows live: every float entry
 * of the state lists, paired by position, and with counters the int64 counters too
 * (num_batches_tracked, as timm; Ultralytics leaves them). prefix as vn_ema_create. */
int vn_ema_of_state(vn_ema **out, double decay, const vn_state_list *live,
                    const vn_state_list *copy, bool counters, const char *prefix, vn_error *err);
/* "<data.root>/<data.train_dir>" or val_dir into buf. */
const char *vn_split_path(const vn_config *cfg, bool train, char *buf, size_t len);
/* The act_learn of deep training at a (fractional) epoch: linear epoch / decay_epochs or
 * 0.5 * (1 - cos(pi * epoch / decay_epochs)), 1 from decay_epochs on (or when it is 0). */
double vn_act_learn_at(const vn_config *cfg, double epoch);

/* ---- checkpoints ------------------------------------------------------------------------ */

#define VN_TRAIN_MAX_EMAS VN_CONFIG_MAX_EMAS /* the longest ema.decays list */

/* Where a run stands; saved in every checkpoint's metadata. */
typedef struct vn_train_state {
    int64_t epoch;          /* epoch in progress (0-based) */
    int64_t position;       /* loader cursor in that epoch's order: next sample */
    int64_t step;           /* optimizer steps taken */
    int64_t micro_step;     /* micro-batches taken (update_freq per step) */
    double act_learn;
    vn_rng rng;             /* the context RNG (dropout) */
    double best_top1;       /* best evaluation top-1 so far (-1: none) */
    int64_t best_epoch;
    char best_source[32];   /* "model" or "ema0", ... */
    /* The official trainer's separate bests (checkpoint-best, checkpoint-best-ema): of the
     * live model and of each EMA copy; -1: not evaluated yet. */
    double best_model_top1;
    int64_t best_model_epoch;
    double best_ema_top1[VN_TRAIN_MAX_EMAS];
    int64_t best_ema_epoch[VN_TRAIN_MAX_EMAS];
    int64_t skipped_in_row; /* non-finite steps skipped consecutively */
    double elapsed;         /* seconds of training so far (all sessions) */
    bool finished;
    int ranks;              /* data-parallel ranks of the run that wrote it (1: one process;
                               stored only when more than 1) */
} vn_train_state;

/* Everything a checkpoint holds. Loading fills model (and emas) in place. */
typedef struct vn_ckpt_parts {
    vn_vanillanet *model;
    vn_optim *optim;         /* may be NULL (export/eval) */
    vn_vanillanet **emas;    /* EMA models, n_emas of them */
    int n_emas;
    vn_train_state *state;
    const vn_config *cfg;    /* saved as YAML + hash */
    const char *const *class_names;
    int n_classes;
} vn_ckpt_parts;

int vn_ckpt_save(const char *path, const vn_ckpt_parts *p, vn_error *err);
/* Restores into already-built parts (same architecture); checks names and shapes. */
int vn_ckpt_load(const char *path, const vn_ckpt_parts *p, vn_error *err);

/* Before training writes into a checkpoint folder: removes the temporary files
 * ("*.tmp.<pid>") that writers killed mid-write left behind (their process is gone), and
 * refuses a folder that cannot be written (read-only, no permission) with the reason. */
int vn_ckpt_dir_prepare(const char *dir, vn_error *err);

/* What a checkpoint or weight file says about itself, without building anything. */
typedef struct vn_ckpt_info {
    bool is_checkpoint;          /* trainer checkpoint (else a weight file) */
    vn_vanillanet_config model;
    bool deploy;
    int n_emas;
    char *config_yaml;           /* checkpoint: the effective config (malloc'd) */
    char config_hash[17];
    char **class_names;          /* malloc'd, may be NULL */
    int n_classes;
    vn_train_state state;
    bool has_data;               /* preprocessing stored (input_size, mean, std, ...) */
    int input_size, channels, interpolation; /* interpolation of the evaluation resize */
    int eval_resize;             /* vn_eval_resize */
    double crop_pct;
    float mean[3], std[3];
    bool plain;                  /* a state_dict without vanilla metadata, read with a config */
    char prefix[32];             /* plain: where its tensors are ("", "module.", ...) */
} vn_ckpt_info;

int vn_ckpt_info_read(const char *path, vn_ckpt_info *info, vn_error *err);
/* As vn_ckpt_info_read, and a plain state_dict (no vanilla metadata, e.g. written by
 * PyTorch's safetensors) is described by cfg: its model (num_classes 0: the file's), its
 * preprocessing, numbered class names; training or deploy form from the key set. cfg NULL
 * refuses plain files. */
int vn_ckpt_info_read_cfg(const char *path, const vn_config *cfg, vn_ckpt_info *info, vn_error *err);
void vn_ckpt_info_free(vn_ckpt_info *info);

/* The newest checkpoint of a run directory that opens and verifies; corrupt newer ones are
 * reported through vn_log and skipped. VN_ERR_NOT_FOUND when there is none. */
int vn_ckpt_find_latest(const char *run_dir, char *path, size_t len, vn_error *err);

/* Opens a model from a checkpoint (its live model, or EMA copy ema_index >= 0) or from a
 * weight file; class names and preprocessing come with it in *info (free it). */
int vn_open_model(const char *path, int ema_index, vn_vanillanet **model, vn_ckpt_info *info,
                  vn_error *err);
/* The same, reading plain state_dicts with cfg (see vn_ckpt_info_read_cfg); a mismatch is
 * reported by key with both shapes (wrong shapes, missing and unexpected tensors, and the
 * variant the file's widths match). */
int vn_open_model_cfg(const char *path, int ema_index, const vn_config *cfg, vn_vanillanet **model,
                      vn_ckpt_info *info, vn_error *err);

/* ---- plain state_dicts and fine-tuning (train/plain_weights.c) -------------------------- */

/* Finds the form (stem1.* training, stem.* deploy) and the key prefix ("", "module.", ...). */
int vn_plain_detect(const vn_st_file *f, char *prefix, size_t len, bool *deploy, vn_error *err);
/* Every mismatch between the model and the file's tensors under prefix, in one message (the
 * first few of each kind; all of them through vn_log when there are more). */
int vn_state_check_all(const vn_vanillanet *m, const vn_st_file *f, const char *prefix,
                       bool file_deploy, vn_error *err);
/* model.init: loads every tensor of a weight file, checkpoint (its model) or plain
 * state_dict into m; classifier tensors whose shapes differ (another num_classes) keep m's
 * initialisation and are named in a warning. Any other mismatch is an error. */
int vn_model_init_from(vn_vanillanet *m, const char *path, vn_error *err);

/* ---- ONNX (train/export_onnx.c) -------------------------------------------------------- */

/* Writes a deploy-form model as ONNX (see io/vn_onnx.h) for an input_size x input_size input
 * (<= 0: info's stored input size, else 224); info (may be NULL) gives class names and
 * preprocessing for metadata_props. AdaptiveMaxPool2d is exported as the MaxPool it equals
 * at that size and refused where its windows differ. */
int vn_export_onnx(const vn_vanillanet *m, const vn_ckpt_info *info, int input_size, const char *path,
                   vn_error *err);

/* ---- export (train/export.c) ----------------------------------------------------------- */

typedef struct vn_export_options {
    const char *source;  /* names the model in messages (its file); NULL: "the model" */
    bool force;          /* merge even at act_learn < 1 (the result is then approximate) */
    bool onnx;           /* write ONNX (vn_export_onnx) instead of safetensors */
    int onnx_input_size; /* <= 0: info's stored input size, else 224 */
    vn_device device;    /* where the check runs both forms (the merge itself is on the host) */
} vn_export_options;

typedef struct vn_export_result {
    bool merged;           /* the training form was merged (and checked) */
    float act_learn;       /* the model's act_learn before the merge */
    int check_size;        /* side of the check batch's images */
    int64_t params_train;  /* parameters of the training form */
    int64_t params_deploy; /* parameters of the deploy form */
    double max_diff;       /* largest |deploy - training| over the check batch's logits */
    double max_ref;        /* largest |training logit| (max_diff / max_ref: relative) */
} vn_export_result;

/* Exports m (opened with vn_open_model*, info its description) to path. A training-form
 * model is merged into the deploy network in place (refused at act_learn < 1 without force),
 * both forms run on a fixed random batch of 8 and the largest logit difference is recorded,
 * then the deploy weights are written as safetensors with the model metadata (class names,
 * preprocessing) or as ONNX. A deploy-form model is written as ONNX only. */
int vn_export_model(vn_vanillanet *m, const vn_ckpt_info *info, const char *path,
                    const vn_export_options *opt, vn_export_result *res, vn_error *err);

/* ---- .pth import (train/import.c) ------------------------------------------------------ */

typedef struct vn_pth_import_result {
    vn_pth_stats stats;
    bool checked;      /* compared with the config's model (cfg given) */
    bool deploy;
    int num_classes;
} vn_pth_import_result;

/* Reads a torch.save file, takes its state_dict (key: see vn_pth_state_dict) and writes it
 * to out as safetensors (F32/I64, official names). With cfg, every tensor is first checked
 * against cfg's model (all mismatches reported by key) and the file gets vanilla's model
 * description, preprocessing and numbered class names, so it opens without a config. */
int vn_import_pth(const char *in, const char *key, const vn_config *cfg, const char *out,
                  vn_pth_import_result *res, vn_error *err);

/* Opens the weights that key names in path (vn_open_model): "model" (the live model, and
 * the only one of a weight file), "model_ema" (EMA copy 0, the official checkpoints' EMA)
 * or "model_ema.N"; "a|b|...": the first of them the file holds, as the official
 * --model_key. *ema_index (may be NULL) receives -1 for the live model. */
int vn_open_model_key(const char *path, const char *key, vn_vanillanet **model,
                      vn_ckpt_info *info, int *ema_index, vn_error *err);

/* ---- best checkpoints and when to evaluate (train/best.c) ----------------------------- */

/* Whether to evaluate after epoch `epoch` (0-based) as the official main.py: epoch > 0 and
 * (epoch % train.eval_every == 0 or epoch >= train.eval_from_epoch when that is > 0); and
 * always after the last epoch. Never when eval_every is 0. */
bool vn_eval_due(const vn_config *cfg, int64_t epoch, bool last);
/* Records top-1 of the live model (source -1) or EMA copy `source` at epoch; true when it
 * beats that source's best so far (the file vn_best_name names is then to be rewritten). */
bool vn_best_record(vn_train_state *st, int source, double top1, int64_t epoch);
/* "best.safetensors" (source -1) or "best-ema-<source>.safetensors". */
void vn_best_name(int source, char *buf, size_t len);
/* Makes <dir>/<name> the checkpoint ckpt (a hard link, renamed into place; a copy written
 * from p where links are not possible). */
int vn_best_link(const char *ckpt, const char *dir, const char *name, const vn_ckpt_parts *p,
                 vn_error *err);

/* ---- the loss (train/loss.c) ---------------------------------------------------------- */

/* The official criterion (main.py): while mixup/cutmix is on (soft_targets not NULL), BCE
 * when loss.bce (or loss.bce_always) else soft-target cross-entropy; otherwise cross-entropy
 * with label smoothing loss.smoothing, or with loss.bce_always BCE on one-hots smoothed as
 * timm's BinaryCrossEntropy (built in targets_buf, n * classes floats). */
vn_tensor *vn_train_loss(vn_ctx *ctx, const vn_config *cfg, vn_tensor *logits,
                         const int32_t *labels, const float *soft_targets, int n,
                         float *targets_buf);
/* "bce", "soft-ce" or "ce" (with smoothing): what vn_train_loss computes. */
const char *vn_train_loss_name(const vn_config *cfg, bool mixing);

/* ---- evaluation ---------------------------------------------------------------------- */

typedef struct vn_eval_result {
    double top1, top5, loss; /* percentages and mean cross-entropy */
    int64_t n;
} vn_eval_result;

/* Eval-mode pass over a whole loader epoch (no grad). logits_out, when not NULL, receives
 * [dataset size, num_classes] in dataset order (malloc'd; NaN rows for unreadable images). */
int vn_evaluate(vn_ctx *ctx, vn_vanillanet *m, vn_loader *ld, vn_eval_result *res,
                float **logits_out, vn_error *err);
/* The same, giving up with VN_ERR_INTERRUPTED (nothing in *res) when *stop becomes non-zero
 * between two batches (a signal handler's flag; NULL: never). */
int vn_evaluate_until(vn_ctx *ctx, vn_vanillanet *m, vn_loader *ld, vn_eval_result *res,
                      float **logits_out, const volatile sig_atomic_t *stop, vn_error *err);

/* ---- training ----------------------------------------------------------------------- */

/* Exit-code-worthy outcomes of vn_train beyond VN_OK and errors. */
#define VN_TRAIN_INTERRUPTED 1 /* a signal stopped it after a checkpoint */

typedef struct vn_train_options {
    const char *resume;                 /* NULL, "auto" or a checkpoint path */
    bool force;                         /* resume even though the config changed */
    volatile sig_atomic_t *stop;        /* set by signal handlers; checked after each step */
    FILE *out;                          /* progress and messages (stdout) */
    /* Data-parallel group (train/vn_dist.h); NULL or one rank: a single process. With K ranks,
     * train.batch_size and optim.update_freq are per rank (effective batch batch_size x
     * update_freq x K), rank r takes the micro-batches r, r + K, ... of each step's global
     * order, and only rank 0 writes the run folder. */
    vn_dist *dist;
} vn_train_options;

typedef struct vn_train_result {
    int outcome;                        /* VN_OK or VN_TRAIN_INTERRUPTED */
    bool already_finished;              /* resumed a run that had finished: nothing done */
    vn_train_state state;
    vn_eval_result last_eval;           /* of the live model */
    double last_ema_top1;               /* of the first EMA copy, when evaluated */
    bool evaluated;
    char last_ckpt[4096];
    char best_ckpt[4096];
    double seconds;                     /* this session */
    double data_wait;                   /* seconds blocked on the loader, this session */
    int64_t params;
} vn_train_result;

/* The device of train.device (train/device.c), checked before vn_train touches anything, with
 * train.tf32 and train.deterministic applied to it. Without a usable device the error says
 * why ("train.device: cuda: this build has no CUDA backend ...", "... no CUDA device
 * visible ..."); the detector's trainer and sync BN across ranks are cpu-only. A rank takes
 * the device local_rank modulo the devices visible (one rank per GPU); *index (may be NULL)
 * gets its number. */
int vn_train_device_open(const vn_config *cfg, int ranks, int local_rank, vn_device *out,
                         int *index, vn_error *err);
int vn_train(const vn_config *cfg, const vn_train_options *opt, vn_train_result *res,
             vn_error *err);

#ifdef __cplusplus
}
#endif
#endif
