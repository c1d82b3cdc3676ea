/* Image transforms with torchvision / timm semantics on 8-bit HWC images:
 *  - PIL-compatible resampling (Image.resize with BILINEAR / BICUBIC: separable, the filter
 *    support widened by the downscale factor (antialiasing), coefficients normalised per
 *    output pixel, 22-bit fixed point with rounding and a uint8 intermediate, as Pillow's
 *    Resample.c);
 *  - RandomResizedCrop boxes exactly as torchvision 0.14's get_params for the same draws;
 *  - eval resize of the shorter side to floor(size / crop_pct) then center crop (timm);
 *  - horizontal flip, ToTensor (v / 255) and Normalize(mean, std) in float32 as torch;
 *  - mixup / cutmix per batch as timm 0.6's Mixup (mode "batch"), with soft targets. */
#ifndef VN_TRANSFORM_H
#define VN_TRANSFORM_H

#include "base/vn_base.h"
#include "base/vn_rng.h"
#include "data/vn_image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vn_interp {
    VN_INTERP_BILINEAR = 0,
    VN_INTERP_BICUBIC = 1
} vn_interp;

/* Geometry of the evaluation path (the official datasets.py build_transform). */
typedef enum vn_eval_resize {
    VN_EVAL_RESIZE_CROP = 0, /* shorter side to floor(size / crop_pct), center crop (timm) */
    VN_EVAL_RESIZE_NONE,     /* no resize: the image must be size x size (official, <= 32 px) */
    VN_EVAL_RESIZE_SQUARE    /* resize to size x size, no crop (official, >= 384 px) */
} vn_eval_resize;

/* "crop", "none", "square" (names in file metadata); parse returns -1 for anything else. */
const char *vn_eval_resize_name(vn_eval_resize r);
int vn_eval_resize_parse(const char *s);

/* A rectangle: top row, left column, height, width (torchvision's i, j, h, w). */
typedef struct vn_box {
    int top;
    int left;
    int height;
    int width;
} vn_box;

/* Growable scratch memory for one thread; zero-initialise, release with vn_tf_scratch_free. */
typedef struct vn_tf_scratch {
    uint8_t *buf; /* resampler coefficients and intermediate rows */
    size_t cap;
    uint8_t *pix; /* resized 8-bit pixels before normalisation */
    size_t pix_cap;
} vn_tf_scratch;
void vn_tf_scratch_free(vn_tf_scratch *s);

/* PIL's img.crop(src_box).resize((out_w, out_h), filter), computing only the window out_win
 * of the out_w x out_h result (NULL: all of it) into dst, which holds out_win->width *
 * out_win->height * channels bytes, rows packed. src is src_w x src_h x channels, packed.
 * Because every output pixel of Pillow's resampler depends only on its own coordinates,
 * the window equals the same region of the full result, byte for byte. scratch may be NULL. */
int vn_resize(const uint8_t *src, int src_w, int src_h, int channels, const vn_box *src_box,
              int out_w, int out_h, const vn_box *out_win, vn_interp interp, uint8_t *dst,
              vn_tf_scratch *scratch, vn_error *err);

/* Random draws for RandomResizedCrop, in the order torchvision consumes them: per attempt
 * uniform(scale_lo, scale_hi) for the area, then uniform(log r_lo, log r_hi) for the log of
 * the aspect ratio; after an accepted attempt randint(height - h + 1) for the top and
 * randint(width - w + 1) for the left, each uniform in [0, n). */
typedef struct vn_rrc_draws {
    double (*uniform)(void *user, double lo, double hi);
    int64_t (*randint)(void *user, int64_t n);
    void *user;
} vn_rrc_draws;

/* torchvision 0.14 RandomResizedCrop.get_params: 10 attempts, then the central fallback.
 * The log-ratio bounds and exp are float32, as torch computes them. */
vn_box vn_rrc_box(int width, int height, const float scale[2], const float ratio[2],
                  const vn_rrc_draws *draws);
/* The same with draws from our generator (uniform doubles, unbiased integers). */
vn_box vn_rrc_box_rng(int width, int height, const float scale[2], const float ratio[2],
                      vn_rng *rng);

/* Eval geometry (timm transforms_imagenet_eval): the shorter side is resized to
 * floor(size / crop_pct), the longer to int(short * long / short_in) (torchvision Resize
 * with an int), then a size x size center crop with torchvision's round-half-even offsets.
 * crop_pct must be in (0, 1]. */
void vn_eval_geometry(int width, int height, int size, double crop_pct, int *resized_w,
                      int *resized_h, vn_box *crop);

/* ToTensor + Normalize as one table per channel: ((float)v / 255 - mean) / std in float32. */
typedef struct vn_normalizer {
    int channels;
    float lut[3][256];
} vn_normalizer;
void vn_normalizer_init(vn_normalizer *n, int channels, const float mean[3], const float std[3]);
/* width x height x channels bytes to floats (HWC), mirrored left-right when flip. */
void vn_normalize_u8(const vn_normalizer *n, const uint8_t *src, int width, int height,
                     bool flip, float *dst);

struct vn_train_aug; /* data/vn_augment.h */

/* The per-sample transform the loader applies (and `predict` uses for one image). */
typedef struct vn_transform {
    int size;                 /* output is size x size */
    int channels;             /* 1 or 3 */
    bool random_resized_crop; /* train: RRC(scale, ratio); else eval resize + center crop */
    float scale[2];
    float ratio[2];
    vn_interp interp;
    double crop_pct;          /* eval path */
    float hflip;              /* probability of a horizontal flip */
    vn_normalizer norm;
    /* Left by vn_transform_init at VN_EVAL_RESIZE_CROP and 0; set them afterwards. */
    vn_eval_resize eval_resize; /* geometry when !random_resized_crop && crop_padding == 0 */
    int crop_padding;         /* > 0 (and !random_resized_crop): torchvision RandomCrop(size,
                                 padding) on the image zero-padded on every side */
    /* Training augmentations after crop and flip (RandAugment or color jitter, then random
     * erasing after Normalize); NULL: none. Not owned; vn_transform_init sets NULL. */
    const struct vn_train_aug *aug;
} vn_transform;

/* torchvision 0.14 RandomCrop(size, padding).get_params on a width x height image: the
 * window of the padded (width + 2 pad) x (height + 2 pad) image, top = randint(H - size + 1)
 * then left = randint(W - size + 1) (0, 0 when it fits exactly). Returns false when the
 * padded image is smaller than size (torchvision raises). Box coordinates are in the
 * unpadded image (top and left may be negative). */
bool vn_random_crop_box(int width, int height, int size, int pad, const vn_rrc_draws *draws,
                        vn_box *box);

/* Validates the fields and builds the normaliser from mean/std. */
int vn_transform_init(vn_transform *t, int size, int channels, bool random_resized_crop,
                      const float scale[2], const float ratio[2], vn_interp interp,
                      double crop_pct, float hflip, const float mean[3], const float std[3],
                      vn_error *err);
/* Writes size * size * channels floats (HWC). The draws come from rng, in this order: the
 * crop (when random_resized_crop or crop_padding > 0), then one uniform for the flip (when
 * hflip > 0), then those of aug (RandAugment or color jitter, then random erasing); rng may
 * be NULL when none is needed. The image's channel count must equal t->channels.
 * box_out (may be NULL) receives the source rectangle used. */
int vn_transform_apply(const vn_transform *t, const vn_image *img, vn_rng *rng, float *out,
                       vn_tf_scratch *scratch, vn_box *box_out, bool *flipped, vn_error *err);

/* Mixup / cutmix (timm 0.6.12 Mixup, mode "batch", correct_lam, no cutmix_minmax). Sample i
 * is mixed with sample n-1-i; n must be even. */
typedef struct vn_mix_config {
    float mixup_alpha;
    float cutmix_alpha;
    float switch_prob;     /* chance of cutmix when both alphas are > 0 (timm: 0.5) */
    float prob;            /* chance of mixing a batch at all (timm: 1.0) */
    float label_smoothing; /* applied to the mixed targets (timm: 0.1) */
    int num_classes;
} vn_mix_config;

typedef struct vn_mix_params {
    double lam;   /* weight of the sample itself; 1 = unmixed */
    bool cutmix;  /* else mixup (when lam < 1) */
    int yl, yh;   /* cutmix rows [yl, yh) and columns [xl, xh) taken from the partner */
    int xl, xh;
} vn_mix_params;

bool vn_mix_active(const vn_mix_config *c);
/* Beta(a, b) from our generator (Marsaglia-Tsang gammas, log-space for a, b < 1). */
double vn_mix_beta(vn_rng *rng, double a, double b);
/* Draws one batch's parameters: uniform < prob, [uniform < switch_prob], lam ~ Beta,
 * [cy = below(h), cx = below(w)] for cutmix, whose lam is then corrected to the box area. */
void vn_mix_draw(const vn_mix_config *c, vn_rng *rng, int h, int w, vn_mix_params *p);
/* timm's rand_bbox + correct_lam for explicit draws (tests feed timm's values here). */
void vn_mix_cutmix_box(int h, int w, double lam, int cy, int cx, vn_mix_params *p);
/* Mixes an NHWC float batch in place. */
void vn_mix_apply(const vn_mix_params *p, float *x, int n, int h, int w, int c);

/* Training targets, built in one place (data/targets.c) for plain and mixed batches. The
 * smoothed one-hot of timm: off = smoothing / classes, on = 1 - smoothing + off, computed in
 * double and stored in float32. */
void vn_targets_smoothed(double smoothing, const int32_t *labels, int n, int num_classes,
                         float *targets);
/* Soft targets [n, num_classes]: smoothed one-hots of labels[i] and labels[n-1-i], weighted
 * lam and 1 - lam, in float32 as timm's mixup_target. */
void vn_mix_targets(const vn_mix_config *c, double lam, const int32_t *labels, int n,
                    float *targets);

#ifdef __cplusplus
}
#endif
#endif
