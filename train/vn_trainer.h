/* The trainer: the epoch loop of the official VanillaNet recipe (deep training, LAMB,
 * per-iteration schedules, EMA, mixup/cutmix, BCE), with bit-exact resume from checkpoints
 * written atomically, evaluation, and metrics. Also the pieces the other commands share:
 * building a model, loaders and an optimizer from a vn_config, checkpoints, evaluation. */
#ifndef VN_TRAINER_H
#define VN_TRAINER_H

#include <signal.h>
#include <stdio.h>

#include "data/vn_loader.h"
#include "models/vn_vanillanet.h"
#include "optim/vn_ema.h"
#include "optim/vn_optim.h"
#include "train/vn_config.h"

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
/* "<data.root>/<data.train_dir>" or val_dir into buf. */
const char *vn_split_path(const vn_config *cfg, bool train, char *buf, size_t len);
/* The act_learn of deep training at a (fractional) epoch: linear epoch / decay_epochs or
 * 0.5 * (1 - cos(pi * epoch / decay_epochs)), 1 from decay_epochs on (or when it is 0). */
double vn_act_learn_at(const vn_config *cfg, double epoch);

/* ---- checkpoints ------------------------------------------------------------------------ */

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
    int64_t skipped_in_row; /* non-finite steps skipped consecutively */
    double elapsed;         /* seconds of training so far (all sessions) */
    bool finished;
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
    int input_size, channels, interpolation;
    double crop_pct;
    float mean[3], std[3];
} vn_ckpt_info;

int vn_ckpt_info_read(const char *path, vn_ckpt_info *info, vn_error *err);
void vn_ckpt_info_free(vn_ckpt_info *info);

/* The newest checkpoint of a run directory that opens and verifies; corrupt newer ones are
 * reported through vn_log and skipped. VN_ERR_NOT_FOUND when there is none. */
int vn_ckpt_find_latest(const char *run_dir, char *path, size_t len, vn_error *err);

/* Opens a model from a checkpoint (its live model, or EMA copy ema_index >= 0) or from a
 * weight file; class names and preprocessing come with it in *info (free it). */
int vn_open_model(const char *path, int ema_index, vn_vanillanet **model, vn_ckpt_info *info,
                  vn_error *err);

/* ---- evaluation ---------------------------------------------------------------------- */

typedef struct vn_eval_result {
    double top1, top5, loss; /* percentages and mean cross-entropy */
    int64_t n;
} vn_eval_result;

/* Eval-mode pass over a whole loader epoch (no grad). logits_out, when not NULL, receives
 * [n, num_classes] in dataset order (malloc'd). */
int vn_evaluate(vn_ctx *ctx, vn_vanillanet *m, vn_loader *ld, vn_eval_result *res,
                float **logits_out, vn_error *err);

/* ---- training ----------------------------------------------------------------------- */

/* Exit-code-worthy outcomes of vn_train beyond VN_OK and errors. */
#define VN_TRAIN_INTERRUPTED 1 /* a signal stopped it after a checkpoint */

typedef struct vn_train_options {
    const char *resume;                 /* NULL, "auto" or a checkpoint path */
    bool force;                         /* resume even though the config changed */
    volatile sig_atomic_t *stop;        /* set by signal handlers; checked after each step */
    FILE *out;                          /* progress and messages (stdout) */
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

int vn_train(const vn_config *cfg, const vn_train_options *opt, vn_train_result *res,
             vn_error *err);

#ifdef __cplusplus
}
#endif
#endif
