/* Detection data in Ultralytics' YOLO layout (issue 17): a dataset YAML like coco128.yaml
 * (path, train, val, names), images under images/<split>, one labels/<split>/<stem>.txt per
 * image with lines `class cx cy w h` (normalised to [0, 1]), and the per-sample pipeline:
 * letterbox to a square imgsz with grey 114, then (training) horizontal flip and HSV jitter
 * drawn from a per-sample RNG (seed, epoch, index), so a batch does not depend on the number
 * of workers or on where a run resumed. */
#ifndef VN_DETECT_DATA_H
#define VN_DETECT_DATA_H

#include "base/vn_base.h"
#include "base/vn_rng.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VN_DET_MAX_CLASSES 1000

/* A dataset YAML. Relative paths are resolved against the YAML's folder (path) and path
 * (train, val). names: a list, or a mapping of 0..nc-1 to names. */
typedef struct vn_det_data_cfg {
    char *root;           /* path, absolute or relative to the working folder */
    char *train, *val;    /* image folders or .txt lists of images; several, one per line, when
                             the YAML gives a list (Ultralytics' forms) */
    int nc;
    char **names;         /* nc names */
} vn_det_data_cfg;

int vn_det_data_cfg_load(const char *yaml_path, vn_det_data_cfg *cfg, vn_error *err);
/* Whether every entry of a split (cfg.train, cfg.val) exists. */
bool vn_det_split_exists(const char *split);
void vn_det_data_cfg_free(vn_det_data_cfg *cfg);

/* One labelled box, normalised centre and size. */
typedef struct vn_det_box {
    int32_t cls;
    float cx, cy, w, h;
} vn_det_box;

typedef struct vn_det_dataset vn_det_dataset;

/* Lists the images under images_dir (.png, .jpg, .jpeg, any case; folders in sorted order,
 * recursively) and reads each label file: the image path with its last "images" folder
 * replaced by "labels" and the extension by .txt. A missing or empty label file is an image
 * without boxes. A bad line (not 5 fields, a number that does not parse, a class outside
 * 0..nc-1, a coordinate outside [0, 1]) skips its image and is
 * reported as "file:line: problem"; more skipped images than max_bad_fraction of the set is
 * an error that names the first ones. Duplicate lines are kept (Ultralytics drops them). */
int vn_det_dataset_scan(const char *images_dir, int nc, double max_bad_fraction,
                        vn_det_dataset **out, vn_error *err);
void vn_det_dataset_free(vn_det_dataset *ds);
int64_t vn_det_dataset_size(const vn_det_dataset *ds);
const char *vn_det_dataset_image(const vn_det_dataset *ds, int64_t i);
/* Boxes of image i (*n of them; NULL when *n is 0). */
const vn_det_box *vn_det_dataset_boxes(const vn_det_dataset *ds, int64_t i, int *n);
int64_t vn_det_dataset_skipped_count(const vn_det_dataset *ds);
/* "file:line: problem" of skipped image k. */
const char *vn_det_dataset_skipped(const vn_det_dataset *ds, int64_t k);

/* Training augmentation (Ultralytics' defaults: fliplr 0.5, hsv_h 0.015, hsv_s 0.7,
 * hsv_v 0.4, mosaic 1.0, scale 0.5, translate 0.1); all 0 for evaluation. */
typedef struct vn_det_augment {
    float fliplr, hsv_h, hsv_s, hsv_v;
    float mosaic;          /* probability of a 4-image mosaic (0 during close_mosaic epochs) */
    float scale, translate; /* random affine: zoom 1 +- scale, shift +- translate of imgsz */
} vn_det_augment;

void vn_det_augment_default(vn_det_augment *a);

/* A loaded sample: imgsz x imgsz x 3 bytes (RGB, HWC) and its boxes in pixels of that
 * canvas (x1, y1, x2, y2). */
typedef struct vn_det_sample {
    int imgsz;
    uint8_t *pix;
    int n_boxes, cap_boxes;
    int32_t *cls;
    float *xyxy;
    /* where the image lies on the canvas, x1 y1 x2 y2 in pixels: the letterbox's picture
     * without the grey bands (evaluation clips boxes to it, as Ultralytics clips them to the
     * original image); the whole canvas after mosaic or affine */
    float image_xyxy[4];
} vn_det_sample;

void vn_det_sample_free(vn_det_sample *s);

/* Image i: decoded (RGB), resized so that its longer side is imgsz (Ultralytics' load_image:
 * ceil(side * r); Pillow-style bilinear), centred on an imgsz x imgsz canvas of grey 114
 * (LetterBox: top = round(dh - 0.1), left = round(dw - 0.1)). With aug, drawing from a
 * vn_rng seeded by (seed, epoch, i), as Ultralytics' v8_transforms: with probability mosaic,
 * image i and three others drawn uniformly are tiled around a centre U(imgsz/2, 3 imgsz/2)
 * of a 2 imgsz canvas (_mosaic4) instead of the letterbox; then a random affine (zoom
 * U(1 - scale, 1 + scale) about the canvas centre, shift U(0.5 +- translate) * imgsz, output
 * imgsz, bilinear, grey 114 outside; boxes' corners mapped, clipped, and dropped unless wider
 * and taller than 2 px, keeping > 10% of their scaled area and aspect < 100:
 * box_candidates); then HSV jitter (gains r = 1 + U(-1, 1) * (h, s, v) on OpenCV's 8-bit
 * HSV: hue (x r_h) mod 180, saturation and value clipped at 255) and a horizontal flip with
 * probability fliplr. */
int vn_det_load_sample(const vn_det_dataset *ds, int64_t i, int imgsz, const vn_det_augment *aug,
                       uint64_t seed, int64_t epoch, vn_det_sample *out, vn_error *err);

/* ---- a detection set built from Fashion-MNIST (`vanilla data import --format
 *      fashion-mnist-detect`) ------------------------------------------------------------ */

typedef struct vn_fmd_config {
    int canvas;          /* square canvas side in pixels (96) */
    int64_t n_train;     /* canvases drawn from the training images (8000) */
    int64_t n_val;       /* canvases drawn from the test images (1000) */
    int min_items, max_items; /* items per canvas (1..4) */
    int min_size, max_size;   /* item side after scaling, pixels (28..48: never below 28x28) */
    uint64_t seed;       /* (0) */
    int threads;         /* (2) */
    double max_cover;    /* at most this fraction of an item's box under another item (0.1) */
} vn_fmd_config;

void vn_fmd_config_default(vn_fmd_config *c);

/* Reads <src_dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz and writes a YOLO dataset:
 * <out_dir>/images/{train,val}/<index>.png (RGB), labels/{train,val}/<index>.txt and
 * <out_dir>/data.yaml (names: Fashion-MNIST's ten classes). Each canvas has a smooth random
 * textured background and min..max items, each a random image of the split scaled to a
 * random side (bilinear), tinted, alpha-blended by its own intensity at a random place
 * where it covers at most max_cover of an earlier item's box and is covered by at most as
 * much of it (10 tries, else the item is left out); its box is the exact
 * extent of its pixels above 10. Canvas k of a split draws from a vn_rng seeded by (seed,
 * split, k): the output does not depend on the thread count. */
typedef struct vn_fmd_result {
    int64_t boxes;         /* boxes of both splits */
    bool reused;           /* out_dir already held this set: nothing written */
    int64_t stale_removed; /* numbered files of an earlier, larger set removed */
} vn_fmd_result;

/* data.yaml ends with a comment naming the options (canvas, counts, items, sizes, seed) and the
 * box count. When it already names the same options and the last canvas of each split is
 * there, nothing is written (res->reused). Otherwise the set is written, data.yaml last (an
 * interrupted import is redone), and numbered images and labels beyond the new counts (left
 * by an earlier, larger set) are removed. res may be NULL. */
int vn_import_fashion_mnist_detect(const char *src_dir, const char *out_dir,
                                   const vn_fmd_config *cfg, vn_fmd_result *res, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif
