/* Detection with the trainer's machinery (model.task: detect, issue 17): YOLO11-VanillaNet
 * built from a vn_config, trained on a YOLO-format set (detect.data), checkpointed and
 * resumed bit-exactly, evaluated as Ultralytics reports it (the Class / Images / Instances /
 * Box P / R / mAP50 / mAP50-95 table), used for prediction and merged for deploy.
 *
 * Files: train/detect_train.c (the loop), train/detect_ckpt.c (checkpoints and weight files),
 * train/detect_run.c (evaluation, prediction, the table), train/detect_draw.c (boxes on a PNG). */
#ifndef VN_DETECT_H
#define VN_DETECT_H

#include <stdio.h>

#include "data/vn_detect_data.h"
#include "models/vn_detect_eval.h"
#include "optim/vn_schedule.h"
#include "train/vn_trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The detector of cfg for nc classes: the backbone from model.name/dims/strides/act_num
 * (vn_build_model_config), the neck and head from detect.*. */
int vn_detect_model_config(const vn_config *cfg, int nc, vn_yolo_config *out, vn_error *err);
/* Training augmentation of cfg at epoch (mosaic off for the last detect.close_mosaic). */
void vn_detect_augment_of(const vn_config *cfg, int64_t epoch, vn_det_augment *a);
/* Evaluation NMS of cfg (detect.conf, iou, max_det; multi-label). */
void vn_detect_nms_of(const vn_config *cfg, vn_nms_params *p);

/* ---- files (train/detect_ckpt.c) ----------------------------------------------------------- */

/* What a detector file (checkpoint or exported weights) says about itself. */
typedef struct vn_detect_info {
    bool is_checkpoint;
    bool deploy;           /* the backbone is merged (exported weights) */
    vn_yolo_config model;
    int imgsz;
    int nc;
    char **names;          /* nc class names (malloc'd) */
    char *config_yaml;     /* checkpoint: the effective config (malloc'd) */
    int64_t epoch, step;
    double act_learn;
    bool has_ema;          /* checkpoint with the EMA weights ("ema." tensors) */
    int64_t ema_updates;
} vn_detect_info;

/* The detector a file's vanilla.detector metadata (JSON) describes; label names it in errors. */
int vn_detect_config_from_json(const char *json, const char *label, vn_yolo_config *c, bool *deploy,
                               vn_error *err);
/* True when path is a safetensors file written for a detector (metadata vanilla.task). */
bool vn_detect_file_is(const char *path);
int vn_detect_info_read(const char *path, vn_detect_info *info, vn_error *err);
void vn_detect_info_free(vn_detect_info *info);
/* Builds the detector a file describes (merged when the file is) and loads its weights: a
 * checkpoint's EMA weights when it holds them (info->has_ema), as Ultralytics uses its EMA. */
int vn_detect_open(const char *path, vn_yolo **m, vn_detect_info *info, vn_error *err);

/* model.init of a detector (train/detect_init.c). From a detector file (checkpoint or
 * training-form weights; key "model" or "model_ema" as vn_open_model_key): every tensor of m,
 * but Detect's class-branch tensors (model.15.cv3.*) that do not fit (another nc), which keep
 * m's initialisation and are named in a warning. From a VanillaNet classifier (vanilla
 * checkpoint or weights, an official-names safetensors state_dict, an official .pth): its
 * backbone tensors go into layer 0 ("model.0." + its names), its classifier (cls*) is dropped.
 * Any other mismatch, a merged (deploy-form) file, a missing or unreadable file: an error
 * naming the file (and every mismatched tensor with both shapes); m is then unchanged. */
typedef struct vn_detect_init_result {
    bool from_detector;  /* else a classifier's backbone */
    bool ema;            /* EMA weights of a checkpoint */
    int n_loaded;        /* tensors loaded into m */
    int n_kept;          /* detector: class-branch tensors that kept their initialisation */
    int n_dropped;       /* classifier: tensors of its head, not used */
    char line[512];      /* what was loaded, one line for the run's output */
} vn_detect_init_result;
int vn_detect_init_from(vn_yolo *m, const char *path, const char *key, vn_detect_init_result *res,
                        vn_error *err);

/* Where a detection run stands, saved in its checkpoints (vanilla.trainer). */
typedef struct vn_detect_state {
    int64_t epoch, position, step;
    double act_learn;
    vn_rng rng;
    double best_fitness;   /* 0.1 mAP50 + 0.9 mAP50-95 (Ultralytics' fitness); -1: none */
    int64_t best_epoch;
    double elapsed;
    bool finished;
    int64_t ema_updates;   /* EMA updates so far (the ramp's count) */
    int64_t skipped_in_row; /* train.nonfinite skip: consecutive skipped steps */
} vn_detect_state;

typedef struct vn_detect_ckpt {
    vn_yolo *model;
    vn_optim *optim;          /* NULL: weights only */
    vn_detect_state *state;   /* NULL: weights only */
    const vn_config *cfg;     /* may be NULL for weights */
    const char *const *names;
    int nc;
    int imgsz;
    vn_yolo *ema;             /* the EMA model ("ema." + its state names); NULL: none */
    bool use_ema;             /* load: model takes the file's "ema." weights */
} vn_detect_ckpt;

/* Writes the model's state_dict under Ultralytics' "model.{i}." names, the EMA model's under
 * "ema.model.{i}.", the optimizer ("optim."), and metadata (vanilla.task, vanilla.detector, classes, imgsz, state, config),
 * atomically. */
int vn_detect_ckpt_save(const char *path, const vn_detect_ckpt *c, vn_error *err);
/* All or nothing: every tensor and the state checked before anything is written. */
int vn_detect_ckpt_load(const char *path, const vn_detect_ckpt *c, vn_error *err);

/* ---- evaluation and prediction (train/detect_run.c) ------------------------------------------ */

/* Every corner of the n boxes clamped into rect (x1 y1 x2 y2), as Ultralytics' clip_boxes. */
void vn_det_clip_boxes(vn_detection *d, int n, const float rect[4]);

/* Letterboxed batches of ds through the model in eval mode, class-wise NMS, boxes clipped to
 * the picture (vn_det_clip_boxes: Ultralytics clips them to the original image), matching and
 * ap_per_class into *out (free with vn_det_metrics_free). */
int vn_detect_evaluate(vn_ctx *ctx, vn_yolo *m, const vn_det_dataset *ds, int imgsz, int batch,
                       const vn_nms_params *np, vn_det_metrics *out, vn_error *err);
/* The same, giving up with VN_ERR_INTERRUPTED (nothing in *out) when *stop becomes non-zero
 * between two batches (NULL: never), and with VN_ERR_FORMAT when more than max_bad (a
 * fraction, data.max_bad_fraction) of the images, counting those the scan of ds skipped,
 * could not be read (vn_detect_evaluate: 1, only when none could). */
int vn_detect_evaluate_until(vn_ctx *ctx, vn_yolo *m, const vn_det_dataset *ds, int imgsz,
                             int batch, const vn_nms_params *np, double max_bad,
                             vn_det_metrics *out, const volatile sig_atomic_t *stop,
                             vn_error *err);
/* The seed's table: a header, the row "all", then one row per class with labels. */
void vn_det_metrics_print(FILE *f, const vn_det_metrics *m, const char *const *names);

/* One image file: letterboxed to imgsz, detected, boxes mapped back to the image's pixels;
 * *dets malloc'd (free it), in descending confidence. */
int vn_detect_image(vn_ctx *ctx, vn_yolo *m, const char *image, int imgsz, const vn_nms_params *np,
                    vn_detection **dets, int *n, vn_error *err);
/* The image with its boxes drawn, labelled "name 0.87" (a built-in 5x7 font), as PNG. */
int vn_detect_draw_png(const char *image, const vn_detection *dets, int n,
                       const char *const *names, int nc, const char *out, vn_error *err);

/* Merges the backbone of m (opened from a checkpoint, info its description) as the classifier's
 * (refused at act_learn != 1 unless force), runs both forms on a fixed random batch of 2
 * (eval mode) and records the largest difference of the Detect outputs, then writes the
 * merged weights (Ultralytics' model.{i} names, the backbone under its deploy names). */
int vn_detect_export(vn_yolo *m, const vn_detect_info *info, const char *path, bool force,
                     double *max_diff, double *max_ref, vn_error *err);

/* ---- ONNX (train/export_onnx_detect.c) ----------------------------------------------------- */

/* Writes the detector as one ONNX graph (opset 13) in the form of Ultralytics' export: input
 * `images` [batch, 3, N, N] (RGB in [0, 1], letterboxed; N = imgsz, or info->imgsz when 0,
 * a multiple of 32), output `output0` [batch, 4 + nc, anchors]: boxes cx, cy, w, h in input
 * pixels (the DFL expectation over reg_max bins as distances from the anchor cell centres,
 * times the stride), then the sigmoid class scores, anchors of strides 8, 16, 32 in turn, each
 * level's row-major. The backbone is merged first when m is in training form (refused at
 * act_learn != 1 unless force); every BatchNorm of the neck and head is folded into its conv.
 * metadata_props: vanilla.classes, vanilla.preprocessing, vanilla.model, and Ultralytics'
 * names, stride, imgsz, batch and task. */
int vn_detect_export_onnx(vn_yolo *m, const vn_detect_info *info, int imgsz, bool force,
                          const char *path, vn_error *err);

/* ---- training (train/detect_train.c) --------------------------------------------------------- */

/* Ultralytics' warmup for the optimizer step `step` (0-based) of a run whose lr follows
 * lr_sched: while the lr warms up (numpy.linspace over W = the schedule's warmup steps), every
 * parameter whose name contains "bias" gets lr = scheduled lr + detect.warmup_bias_lr (1 - f),
 * f = step / (W - 1), i.e. Ultralytics' interpolation from warmup_bias_lr to the lr, and SGD's
 * momentum is detect.warmup_momentum + (optim.momentum - warmup_momentum) f (Ultralytics warms
 * the momentum of SGD only); from step W - 1 on, f = 1: the plain lr and momentum. */
void vn_detect_warmup(const vn_config *cfg, vn_optim *o, const vn_schedule *lr_sched, int64_t step);

/* Ultralytics' accumulation ramp: how many micro-batches the optimizer step that has taken
 * micro-batch ni (0-based, counted over the run) needs, when the warmup lasts nw micro-batches
 * and steps take uf after it. While ni < nw: numpy's interp(ni, [0, nw], [1, uf]) rounded half
 * to even (numpy's round), at least 1; then uf. Without ramp (or nw 0): uf. */
int64_t vn_detect_accumulate(int64_t ni, int64_t nw, int64_t uf, bool ramp);

/* vn_train for model.task: detect (vn_train hands over to it). Fills res->state's epoch, step,
 * elapsed and finished, res->outcome, last_ckpt and seconds. */
int vn_detect_train(const vn_config *cfg, const vn_train_options *opt, vn_train_result *res,
                    vn_error *err);

#ifdef __cplusplus
}
#endif
#endif
