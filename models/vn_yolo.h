/* YOLO11 with a VanillaNet backbone (issue 17): VanillaNet's features at strides 8, 16 and
 * 32 (P3, P4, P5) -> SPPF -> C2PSA on P5 -> the stock YOLO11 neck (C3k2 blocks, nearest 2x
 * upsampling, channel concat, 3x3 stride-2 convs) -> Detect on strides 8, 16, 32 (box
 * branch to 4 x reg_max distribution logits, class branch to nc logits).
 *
 * Modules, sizes, initialisation and state_dict names follow Ultralytics 8.3 (yolo11.yaml
 * with its backbone replaced): layer i of the model is "model.{i}.": 0 the VanillaNet
 * (official names without the classifier), 1 SPPF, 2 C2PSA, 3 Upsample, 4 Concat(P4),
 * 5 C3k2, 6 Upsample, 7 Concat(P3), 8 C3k2 (P3 out), 9 Conv s2, 10 Concat, 11 C3k2 (P4 out),
 * 12 Conv s2, 13 Concat, 14 C3k2 (P5 out), 15 Detect. Channels of the neck are Ultralytics'
 * make_divisible(min(c, max_channels) * width, 8) of yolo11.yaml's, repeats
 * max(round(n * depth), 1). */
#ifndef VN_YOLO_H
#define VN_YOLO_H

#include "models/vn_vanillanet.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VN_YOLO_LEVELS 3
/* Ultralytics' initialize_weights sets every BatchNorm2d of the neck and head to eps 1e-3. */
#define VN_YOLO_BN_EPS 1e-3f

typedef struct vn_yolo_config {
    vn_vanillanet_config backbone; /* num_classes is not used (no classifier) */
    int nc;                        /* classes */
    float depth_multiple;          /* yolo11n/s: 0.5; m: 0.5; l/x: 1.0 */
    float width_multiple;          /* n 0.25, s 0.5, m/l 1.0, x 1.5 */
    int max_channels;              /* n/s 1024, m/l/x 512 */
    bool c3k;                      /* Ultralytics' m/l/x scales: every C3k2 uses C3k blocks */
    int reg_max;                   /* DFL bins, 16 */
} vn_yolo_config;

/* Defaults: vanillanet_5 backbone, nc 80, yolo11n scaling (0.5, 0.25, 1024), reg_max 16. */
void vn_yolo_config_default(vn_yolo_config *cfg);
int vn_yolo_config_check(const vn_yolo_config *cfg, vn_error *err);

typedef struct vn_yolo vn_yolo;

int vn_yolo_create(const vn_yolo_config *cfg, vn_yolo **out, vn_error *err);
void vn_yolo_destroy(vn_yolo *m);
/* The backbone as vn_vanillanet_init (trunc-normal 0.02); the rest as PyTorch's Conv2d
 * default (uniform +-1/sqrt(fan_in)) and Detect's bias_init (box bias 1, class bias
 * log(5 / nc / (640 / stride)^2)); BN weight 1, bias 0. */
void vn_yolo_init(vn_yolo *m, uint64_t seed);
void vn_yolo_set_training(vn_yolo *m, bool training);
/* The backbone merged exactly as the classifier's (vn_vanillanet_switch_to_deploy: refused at
 * act_learn != 1 unless force); the state list then names the deploy tensors ("model.0.stem.0.",
 * "model.0.stages.{i}.conv.", ...). The neck and head are unchanged. */
int vn_yolo_switch_to_deploy(vn_yolo *m, bool force, vn_error *err);
bool vn_yolo_is_deploy(const vn_yolo *m);
/* act_learn of the VanillaNet backbone (deep training), as vn_vanillanet_change_act. */
void vn_yolo_change_act(vn_yolo *m, float act_learn);
const vn_yolo_config *vn_yolo_get_config(const vn_yolo *m);
/* Every parameter and buffer under its "model.{i}...." name. */
const vn_state_list *vn_yolo_state(const vn_yolo *m);
/* The VanillaNet backbone; feat_index[l] (may be NULL): which of its features
 * (vn_vanillanet_forward_features' list) feeds level l (P3, P4, P5). */
const vn_vanillanet *vn_yolo_backbone(const vn_yolo *m, int feat_index[VN_YOLO_LEVELS]);
/* The attention of C2PSA's PSA blocks: heads, key and value dims per head. */
void vn_yolo_attention_dims(const vn_yolo *m, int *heads, int *key_dim, int *head_dim);
/* Output channels of the neck at P3, P4, P5 (the Detect inputs). */
void vn_yolo_level_channels(const vn_yolo *m, int ch[VN_YOLO_LEVELS]);

/* Per-layer output shapes (batch 1), parameters and multiply-adds at an imgsz x imgsz input
 * (a multiple of 32): the backbone's layers as vn_vanillanet_report (in the model's form,
 * training or merged) under "model.0.", then one row per Ultralytics layer (1 SPPF ... 14) and
 * one per Detect level. Convolutions count Ho*Wo*Cout*(Cin/groups)*KH*KW, C2PSA's attention
 * its two matrix products; the parameters add up to the model's trainable ones. Free with
 * vn_report_free. */
int vn_yolo_report(const vn_yolo *m, int imgsz, vn_report *out, vn_error *err);
/* x: [N, H, W, in_chans] with H, W multiples of 32 -> out[l]: [N, H / s_l, W / s_l,
 * 4 reg_max + nc] for strides s = 8, 16, 32 (box distribution logits first, then class
 * logits: Detect's training output). Returns the context status. */
int vn_yolo_forward(vn_ctx *ctx, vn_yolo *m, vn_tensor *x, vn_tensor **out);

/* ---- loss (Ultralytics 8.3 v8DetectionLoss with its TaskAlignedAssigner) ---------------- */

/* One ground-truth box of a batch: image index, class, corners in input pixels. */
typedef struct vn_yolo_gt {
    int32_t image, cls;
    float x1, y1, x2, y2;
} vn_yolo_gt;

typedef struct vn_yolo_loss_params {
    int topk;            /* 10 */
    double alpha, beta;  /* 0.5, 6.0 */
    float box, cls, dfl; /* gains 7.5, 0.5, 1.5 */
} vn_yolo_loss_params;

void vn_yolo_loss_params_default(vn_yolo_loss_params *p);

/* The assigner's result for a batch: per image and anchor (levels concatenated, row-major),
 * the foreground flag, the assigned gt (index into the batch's gt list, -1 for background),
 * the target box in grid units and the target scores; the targets of vn_detect_loss. */
typedef struct vn_yolo_assignment {
    int64_t n_images, n_anchors;
    int nc, reg_max;
    float *anchor;     /* [A * 2] cell centres in grid units */
    float *stride;     /* [A] */
    uint8_t *fg;       /* [N * A] */
    int32_t *gt_index; /* [N * A] */
    float *box;        /* [N * A * 4] */
    float *score;      /* [N * A * nc] */
    double score_sum;  /* max(sum of target scores, 1) */
} vn_yolo_assignment;

/* TaskAlignedAssigner(topk, alpha, beta) on the (detached) Detect outputs preds[l] of strides
 * 8 << l: scores sigmoid(class logits), boxes decoded from the DFL expectation, both in
 * pixels; a candidate's anchor centre lies inside the gt, its metric is score^alpha *
 * max(CIoU, 0)^beta; the topk metrics per gt (ties: lower anchor index first), an anchor
 * claimed by several gts goes to the one of highest CIoU; target scores are one-hot times
 * the alignment normalised per gt to its best CIoU. Computed in double. Fills *out (free
 * with vn_yolo_assignment_free). Errors: a gt with a bad image index or class. */
int vn_yolo_assign(vn_tensor *const *preds, int nc, int reg_max, const vn_yolo_gt *gts,
                   int64_t n_gt, const vn_yolo_loss_params *p, vn_yolo_assignment *out,
                   vn_error *err);
void vn_yolo_assignment_free(vn_yolo_assignment *a);

/* Assignment and loss in one call: the [1] loss tensor (Ultralytics' loss.sum() * batch),
 * parts = gained box, cls, dfl terms; NULL on error (context error set). */
vn_tensor *vn_yolo_loss(vn_ctx *ctx, vn_tensor *const *preds, int nc, int reg_max,
                        const vn_yolo_gt *gts, int64_t n_gt, const vn_yolo_loss_params *p,
                        double parts[3]);

#ifdef __cplusplus
}
#endif
#endif
