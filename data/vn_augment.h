/* The augmentations of the official recipe (timm 0.6.12's transforms_imagenet_train):
 * RandAugment, color jitter and random erasing.
 *
 * Image operations (8-bit HWC, 1 or 3 channels) equal Pillow 9.4 (Debian's python3-pil)
 * byte for byte on the same input and argument, because they repeat its arithmetic:
 *  - LUT ops as ImageOps: autocontrast (per channel min/max, lut = int(i * scale + offset)
 *    in double), equalize (ImageOps.equalize's step = (total - last bin) // 255), invert,
 *    posterize (i & ~(2^(8-bits) - 1)), solarize (i >= threshold -> 255 - i), timm's
 *    solarize_add (i < threshold -> min(255, i + add)); lut values clipped to 0..255 as
 *    Image.point does;
 *  - ImageEnhance: Image.blend(degenerate, image, factor) in float32 as libImaging/Blend.c
 *    (truncation for factors in [0, 1], clipping otherwise); Color's degenerate is
 *    convert("L") = (19595 R + 38470 G + 7471 B + 0x8000) >> 16, Contrast's the rounded mean
 *    of that gray image, Brightness's black, Sharpness's the SMOOTH 3x3 filter (kernel
 *    {1,1,1,1,5,1,1,1,1} / 13 in float32, +0.5, borders copied: libImaging/Filter.c);
 *  - Image.transform(AFFINE, BICUBIC or BILINEAR, fillcolor): the inverse map
 *    x' = a0 (x + .5) + a1 (y + .5) + a2 in double, then libImaging/Geometry.c's bicubic
 *    (a = -0.5 spline written as p1 + d (p2 + d (p3 + d p4)), edge rows and columns
 *    replicated, out-of-image source points keep the fill colour); Image.rotate builds the
 *    matrix from cos / sin rounded to 15 decimals, as Pillow does.
 * The floating point is evaluated in the same order and precision as Pillow's C code; the
 * library is built without FP contraction (C11 mode), so no FMA changes a rounding. No
 * bound is needed: the tests compare byte for byte.
 *
 * Policies (draws from the loader's per-sample generator, so batches do not depend on
 * worker counts or resume):
 *  - RandAugment with timm's config strings "rand-m9-mstd0.5-inc1" (sections m, n, mstd,
 *    mmax, inc, w), ops chosen uniformly with replacement (weighted without replacement
 *    with w0), each applied with probability 0.5, magnitude gauss(m, mstd) (uniform(0, m)
 *    when mstd > 100) clipped to [0, mmax], level functions and sign flips as timm's
 *    LEVEL_TO_ARG; fill = round(255 * mean) per channel.
 *  - Color jitter as torchvision 0.14 ColorJitter(b, c, s) on PIL images: a random order of
 *    brightness, contrast, saturation (hue off, as timm's scalar color_jitter), each factor
 *    uniform in [max(0, 1 - v), 1 + v] in float32.
 *  - Random erasing (timm RandomErasing) on the normalised float image. */
#ifndef VN_AUGMENT_H
#define VN_AUGMENT_H

#include "base/vn_base.h"
#include "base/vn_rng.h"
#include "data/vn_image.h"
#include "data/vn_transform.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Pillow operations ---------------------------------------------------------------- */

/* A view of packed 8-bit HWC pixels. */
typedef struct vn_pix {
    uint8_t *data;
    int width, height, channels;
} vn_pix;

void vn_aug_autocontrast(vn_pix im);
void vn_aug_equalize(vn_pix im);
void vn_aug_invert(vn_pix im);
void vn_aug_posterize(vn_pix im, int bits);              /* bits 0..8 */
void vn_aug_solarize(vn_pix im, int threshold);          /* 0..256 */
void vn_aug_solarize_add(vn_pix im, int add, int threshold);
/* ImageEnhance.<kind>(im).enhance(factor), in place. Sharpness needs a scratch copy of the
 * image: tmp holds width * height * channels bytes. */
void vn_aug_color(vn_pix im, double factor);
void vn_aug_contrast(vn_pix im, double factor);
void vn_aug_brightness(vn_pix im, double factor);
void vn_aug_sharpness(vn_pix im, double factor, uint8_t *tmp);
/* im.transform(im.size, AFFINE, a, resample, fillcolor=fill) from src into dst (same size,
 * not overlapping). interp: bicubic or bilinear. fill has one value per channel. */
void vn_aug_affine(vn_pix src, vn_pix dst, const double a[6], vn_interp interp,
                   const uint8_t fill[3]);
/* im.rotate(degrees, resample, fillcolor=fill) about the centre, same size (angle 0 is a
 * copy as in Pillow). */
void vn_aug_rotate(vn_pix src, vn_pix dst, double degrees, vn_interp interp,
                   const uint8_t fill[3]);

/* ---- RandAugment ---------------------------------------------------------------------- */

/* timm's op names (NAME_TO_OP), in one list so enum, names and tables stay in step. */
#define VN_RA_OPS(X)                                                                     \
    X(AUTO_CONTRAST, "AutoContrast") X(EQUALIZE, "Equalize") X(INVERT, "Invert")          \
    X(ROTATE, "Rotate") X(POSTERIZE, "Posterize")                                        \
    X(POSTERIZE_INCREASING, "PosterizeIncreasing")                                       \
    X(POSTERIZE_ORIGINAL, "PosterizeOriginal") X(SOLARIZE, "Solarize")                   \
    X(SOLARIZE_INCREASING, "SolarizeIncreasing") X(SOLARIZE_ADD, "SolarizeAdd")          \
    X(COLOR, "Color") X(COLOR_INCREASING, "ColorIncreasing") X(CONTRAST, "Contrast")     \
    X(CONTRAST_INCREASING, "ContrastIncreasing") X(BRIGHTNESS, "Brightness")             \
    X(BRIGHTNESS_INCREASING, "BrightnessIncreasing") X(SHARPNESS, "Sharpness")           \
    X(SHARPNESS_INCREASING, "SharpnessIncreasing") X(SHEAR_X, "ShearX")                  \
    X(SHEAR_Y, "ShearY") X(TRANSLATE_X, "TranslateX") X(TRANSLATE_Y, "TranslateY")       \
    X(TRANSLATE_X_REL, "TranslateXRel") X(TRANSLATE_Y_REL, "TranslateYRel")

typedef enum vn_ra_op {
#define VN_RA_ENUM(e, s) VN_RA_##e,
    VN_RA_OPS(VN_RA_ENUM)
#undef VN_RA_ENUM
    VN_RA_OP_COUNT
} vn_ra_op;

/* The op of a timm name ("ShearX"); -1 (and err set, naming the known ops) when unknown. */
int vn_ra_op_from_name(const char *name, vn_error *err);
const char *vn_ra_op_name(vn_ra_op op);

#define VN_RA_MAX_OPS 16

typedef struct vn_randaug {
    int n_ops;
    vn_ra_op ops[VN_RA_MAX_OPS];
    double weights[VN_RA_MAX_OPS]; /* choice weights (w0), normalised */
    bool weighted;
    int num_layers;                /* n: ops per image (timm: 2) */
    int magnitude;                 /* m (timm: 10) */
    double mstd;                   /* 0: fixed magnitude, INFINITY: uniform(0, m) */
    double mmax;                   /* upper clip of the magnitude (timm: 10) */
    double prob;                   /* per-op probability (timm: 0.5) */
    int translate_const;           /* TranslateX/Y: int(0.45 * image size) */
    vn_interp interp;              /* affine resampling (the recipe's interpolation) */
    uint8_t fill[3];               /* round(255 * mean) per channel */
} vn_randaug;

/* Parses timm's rand_augment_transform config string ("rand-m9-mstd0.5-inc1"): sections
 * after "rand" split at '-', each a key (the letters before the first digit) and a value;
 * sections without a digit are ignored; inc<anything> selects the increasing set, as
 * timm's bool(val) does. input_size gives translate_const, mean the fill. Errors name
 * "data.auto_augment" and the offending section (unknown key, magnitude above mmax,
 * n outside 1..16, bad number, unsupported policy such as "augmix" or "v0"). */
int vn_randaug_parse(const char *config, int input_size, int channels, const float mean[3],
                     vn_interp interp, vn_randaug *ra, vn_error *err);

/* Random draws in the order timm consumes them: choice (numpy.random.choice, one index in
 * [0, n) per layer, all layers first), then per op random() for the probability test,
 * gauss(m, mstd) for the magnitude (random.uniform(0, m) = m * random() when mstd is
 * infinite), and random() for a sign flip where the level function has one. */
typedef struct vn_ra_draws {
    double (*random)(void *user);                 /* uniform in [0, 1) */
    double (*gauss)(void *user, double mu, double sigma);
    int64_t (*choice)(void *user, int64_t n);     /* uniform in [0, n) */
    void *user;
} vn_ra_draws;

/* The argument timm's level function gives op at magnitude (already clipped); negate is
 * the sign draw's verdict (ignored for ops that have no sign). */
double vn_ra_level_arg(const vn_randaug *ra, vn_ra_op op, double magnitude, bool negate);
/* True when op's level function draws a sign. */
bool vn_ra_op_signed(vn_ra_op op);
/* Applies op with its argument to im in place; tmp holds width * height * channels bytes. */
void vn_ra_apply_op(const vn_randaug *ra, vn_ra_op op, double arg, vn_pix im, uint8_t *tmp);

/* One RandAugment call on im in place with the given draws; tmp as above. */
void vn_randaug_apply_draws(const vn_randaug *ra, vn_pix im, uint8_t *tmp,
                            const vn_ra_draws *d);
/* The same with draws from our generator. */
void vn_randaug_apply(const vn_randaug *ra, vn_pix im, uint8_t *tmp, vn_rng *rng);

/* ---- Color jitter --------------------------------------------------------------------- */

typedef struct vn_color_jitter {
    float brightness, contrast, saturation; /* 0: that part off */
} vn_color_jitter;
bool vn_color_jitter_active(const vn_color_jitter *cj);
void vn_color_jitter_apply(const vn_color_jitter *cj, vn_pix im, vn_rng *rng);

/* ---- Random erasing ------------------------------------------------------------------- */

typedef enum vn_erase_mode {
    VN_ERASE_CONST = 0, /* zeros (the normalised mean) */
    VN_ERASE_RAND = 1,  /* one N(0, 1) value per channel */
    VN_ERASE_PIXEL = 2  /* N(0, 1) per pixel and channel */
} vn_erase_mode;

typedef struct vn_erasing {
    double prob;        /* 0: off */
    vn_erase_mode mode;
    int min_count, max_count;
    double min_area, max_area;   /* fractions of the image (0.02, 1/3) */
    double log_aspect[2];        /* log(0.3), log(1/0.3) */
} vn_erasing;

/* timm's defaults with the given probability, mode and max_count (recount). */
void vn_erasing_init(vn_erasing *e, double prob, vn_erase_mode mode, int max_count);

/* Draws of RandomErasing._erase: random() for the probability test, randint(lo, hi)
 * (inclusive, Python's) for the count when min != max and for top / left, random() for
 * each uniform(a, b) = a + (b - a) * random(). */
typedef struct vn_erase_draws {
    double (*random)(void *user);
    int64_t (*randint)(void *user, int64_t lo, int64_t hi);
    void *user;
} vn_erase_draws;

/* The boxes (at most max_count) RandomErasing erases in an h x w image; returns how many. */
int vn_erasing_boxes(const vn_erasing *e, int height, int width, const vn_erase_draws *d,
                     vn_box *boxes);
/* Erases boxes drawn from rng in a normalised HWC float image; fill values from rng too. */
void vn_erasing_apply(const vn_erasing *e, float *img, int height, int width, int channels,
                      vn_rng *rng);

/* ---- The training pipeline's augmentations ------------------------------------------ */

/* What vn_transform_apply does after the crop and flip (timm transforms_imagenet_train):
 * RandAugment, or color jitter when RandAugment is off; then, after Normalize, random
 * erasing. */
typedef struct vn_train_aug {
    bool randaug_on;
    vn_randaug randaug;
    vn_color_jitter jitter;
    vn_erasing erasing;
} vn_train_aug;

typedef struct vn_train_aug_config {
    const char *auto_augment; /* timm RandAugment string; NULL or "": off */
    float color_jitter;       /* brightness = contrast = saturation; used only without RA */
    float reprob;             /* random erasing probability, 0: off */
    vn_erase_mode remode;
    int recount;              /* most boxes per image (1..64) */
} vn_train_aug_config;

/* Errors name the config keys (data.auto_augment, data.reprob, data.recount, ...). */
int vn_train_aug_init(vn_train_aug *a, const vn_train_aug_config *c, int input_size,
                      int channels, const float mean[3], vn_interp interp, vn_error *err);
bool vn_train_aug_active(const vn_train_aug *a);
/* The 8-bit part (RandAugment or color jitter) in place; tmp as for RandAugment. */
void vn_train_aug_pixels(const vn_train_aug *a, vn_pix im, uint8_t *tmp, vn_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
