/* Detection evaluation as Ultralytics 8.3 reports it (utils/ops.py non_max_suppression,
 * models/yolo/detect/val.py match_predictions, utils/metrics.py ap_per_class):
 * decoding of Detect outputs, class-wise NMS, matching at IoU 0.50:0.05:0.95, and per-class
 * precision, recall, AP50 and AP50-95 with 101-point interpolated AP. */
#ifndef VN_DETECT_EVAL_H
#define VN_DETECT_EVAL_H

#include "models/vn_yolo.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VN_DET_IOU_STEPS 10 /* IoU thresholds 0.50, 0.55, ..., 0.95 */

typedef struct vn_detection {
    float x1, y1, x2, y2, conf;
    int32_t cls;
} vn_detection;

/* Detect outputs preds[l] (strides 8 << l) of image img -> boxes [A * 4] (x1, y1, x2, y2 in
 * input pixels: anchor -/+ DFL expectation, times the stride) and scores [A * nc] (sigmoid).
 * Anchors as in vn_yolo_assign. */
void vn_yolo_decode(vn_tensor *const *preds, int nc, int reg_max, int64_t img, float *boxes,
                    float *scores);

typedef struct vn_nms_params {
    float conf;       /* 0.001 in validation (0.25 for predict) */
    double iou;       /* 0.7 (a double, as torchvision's nms compares its float IoU with it) */
    int max_det;      /* 300 */
    bool multi_label; /* validation: every class above conf is a candidate */
    bool agnostic;    /* one NMS over all classes */
} vn_nms_params;

void vn_nms_params_val(vn_nms_params *p);

/* non_max_suppression of one image: candidates (anchor, class) with score > conf (with
 * multi_label, else each anchor's best class), at most 30000 by score, greedy NMS per class
 * (IoU > iou suppresses; equal scores: the earlier candidate first), at most max_det kept, in
 * descending score. *out is malloc'd (free it); *n_out may be 0. */
int vn_nms(const float *boxes, const float *scores, int64_t n_anchors, int nc,
           const vn_nms_params *p, vn_detection **out, int *n_out, vn_error *err);

/* Matches one image's detections to its labels (match_predictions): correct[d * 10 + k] is 1
 * when detection d is a true positive at IoU threshold 0.5 + 0.05 k (greedy by IoU, each
 * label and detection used once, classes must agree). labels: class and box per row.
 * Returns VN_ERR_NOMEM when it cannot allocate its work arrays. */
int vn_det_match(const vn_detection *det, int n_det, const vn_yolo_gt *labels, int n_labels,
                  uint8_t *correct);

/* Statistics over a dataset, then ap_per_class. */
typedef struct vn_det_stats {
    int nc;
    int64_t n_det, cap_det;
    float *conf;
    int32_t *cls;
    uint8_t *correct;   /* n_det * 10 */
    int64_t *n_labels;  /* per class */
    int64_t *n_images_with; /* per class: images with at least one label of it */
    int64_t n_images;
} vn_det_stats;

typedef struct vn_det_metrics {
    int nc;
    int64_t *n_labels;     /* [nc] instances per class */
    int64_t *n_images_with; /* [nc] images with the class (Ultralytics' nt_per_image) */
    double *p, *r, *ap50, *ap; /* [nc]: at the best mean-F1 confidence; AP50, AP50-95 */
    bool *present;         /* [nc]: the class has labels (the classes ap_per_class reports) */
    double mp, mr, map50, map; /* means over the present classes */
    int n_present;
    int64_t n_images, n_instances;
} vn_det_metrics;

int vn_det_stats_init(vn_det_stats *s, int nc);
void vn_det_stats_free(vn_det_stats *s);
/* Adds one image: its detections and labels (matched with vn_det_match). */
int vn_det_stats_add(vn_det_stats *s, const vn_detection *det, int n_det, const vn_yolo_gt *labels,
                     int n_labels, vn_error *err);
/* ap_per_class: detections sorted by descending confidence (stable), per class cumulative TP
 * and FP, recall and precision curves sampled at 1000 confidences in [0, 1], the confidence
 * of the best F1 (mean over classes, smoothed by a box filter of 10%) gives P and R; AP at
 * each IoU threshold by 101-point interpolation of the precision envelope. */
int vn_det_metrics_compute(const vn_det_stats *s, vn_det_metrics *m, vn_error *err);
void vn_det_metrics_free(vn_det_metrics *m);

#ifdef __cplusplus
}
#endif
#endif
