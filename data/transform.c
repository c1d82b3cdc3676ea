/* Crop geometry (RandomResizedCrop, eval resize + center crop), normalisation, and the
 * per-sample transform built from them. */
#include "data/vn_transform.h"

#include "data/vn_augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/crop_impl.h"

/* Python's round() on a double: halves go to the even neighbour (rint in the default
 * rounding mode does the same). */
static int py_round(double x) { return (int)rint(x); }

vn_box vn_rrc_box(int width, int height, const float scale[2], const float ratio[2],
                  const vn_rrc_draws *d)
{
    double area = (double)height * width;
    /* torch.log(torch.tensor(ratio)) is float32. */
    double log_lo = (double)logf(ratio[0]), log_hi = (double)logf(ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * d->uniform(d->user, scale[0], scale[1]);
        /* torch.exp of a float32 tensor, then .item(). */
        double aspect = (double)expf((float)d->uniform(d->user, log_lo, log_hi));
        int w = py_round(sqrt(target_area * aspect));
        int h = py_round(sqrt(target_area / aspect));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            int i = (int)d->randint(d->user, (int64_t)height - h + 1);
            int j = (int)d->randint(d->user, (int64_t)width - w + 1);
            return (vn_box){i, j, h, w};
        }
    }
    /* Central crop with the ratio clamped to the allowed range. */
    double in_ratio = (double)width / (double)height;
    double rmin = fmin(ratio[0], ratio[1]), rmax = fmax(ratio[0], ratio[1]);
    int w, h;
    if (in_ratio < rmin) {
        w = width;
        h = py_round(w / rmin);
    } else if (in_ratio > rmax) {
        h = height;
        w = py_round(h * rmax);
    } else {
        w = width;
        h = height;
    }
    return (vn_box){(height - h) / 2, (width - w) / 2, h, w};
}

static double rng_uniform(void *user, double lo, double hi)
{
    return lo + (hi - lo) * vn_rng_uniform_double(user);
}

static int64_t rng_randint(void *user, int64_t n)
{
    return (int64_t)vn_rng_below(user, (uint64_t)n);
}

vn_box vn_rrc_box_rng(int width, int height, const float scale[2], const float ratio[2],
                      vn_rng *rng)
{
    vn_rrc_draws d = {rng_uniform, rng_randint, rng};
    return vn_rrc_box(width, height, scale, ratio, &d);
}

void vn_eval_geometry(int width, int height, int size, double crop_pct, int *resized_w,
                      int *resized_h, vn_box *crop)
{
    int scale_size = (int)floor(size / crop_pct);
    int short_side = width <= height ? width : height;
    int long_side = width <= height ? height : width;
    int new_short = scale_size;
    int new_long = (int)((double)scale_size * long_side / short_side);
    int rw = width <= height ? new_short : new_long;
    int rh = width <= height ? new_long : new_short;
    *resized_w = rw;
    *resized_h = rh;
    /* torchvision center_crop: int(round((H - h) / 2.0)) with Python's rounding. */
    crop->height = size < rh ? size : rh;
    crop->width = size < rw ? size : rw;
    crop->top = py_round((rh - size) / 2.0);
    crop->left = py_round((rw - size) / 2.0);
}

void vn_normalizer_init(vn_normalizer *n, int channels, const float mean[3], const float std[3])
{
    n->channels = channels;
    for (int c = 0; c < 3; c++) {
        int cc = c < channels ? c : 0;
        for (int v = 0; v < 256; v++) {
            /* Same float32 operations as to_tensor().div(255) then sub_(mean).div_(std). */
            float x = (float)v / 255.0f;
            n->lut[c][v] = (x - mean[cc]) / std[cc];
        }
    }
}

void vn_normalize_u8(const vn_normalizer *n, const uint8_t *src, int width, int height,
                     bool flip, float *dst)
{
    const int ch = n->channels;
    for (int y = 0; y < height; y++) {
        const uint8_t *row = src + (size_t)y * width * ch;
        float *o = dst + (size_t)y * width * ch;
        if (ch == 3) {
            const float *l0 = n->lut[0], *l1 = n->lut[1], *l2 = n->lut[2];
            for (int x = 0; x < width; x++) {
                const uint8_t *p = row + (size_t)3 * (flip ? width - 1 - x : x);
                o[3 * x] = l0[p[0]];
                o[3 * x + 1] = l1[p[1]];
                o[3 * x + 2] = l2[p[2]];
            }
        } else {
            const float *l0 = n->lut[0];
            for (int x = 0; x < width; x++) o[x] = l0[row[flip ? width - 1 - x : x]];
        }
    }
}

int vn_transform_init(vn_transform *t, int size, int channels, bool random_resized_crop,
                      const float scale[2], const float ratio[2], vn_interp interp,
                      double crop_pct, float hflip, const float mean[3], const float std[3],
                      vn_error *err)
{
    memset(t, 0, sizeof *t);
    if (size <= 0 || size > 65535)
        return vn_error_set(err, VN_ERR_INVALID, "input size must be in 1..65535, got %d", size);
    if (channels != 1 && channels != 3)
        return vn_error_set(err, VN_ERR_INVALID, "channels must be 1 or 3, got %d", channels);
    if (interp != VN_INTERP_BILINEAR && interp != VN_INTERP_BICUBIC)
        return vn_error_set(err, VN_ERR_INVALID, "unknown interpolation %d", (int)interp);
    if (random_resized_crop) {
        if (!(scale[0] > 0 && scale[0] <= scale[1] && scale[1] <= 1))
            return vn_error_set(err, VN_ERR_INVALID,
                                "random-resized-crop scale must satisfy 0 < lo <= hi <= 1, got "
                                "(%g, %g)", scale[0], scale[1]);
        if (!(ratio[0] > 0 && ratio[0] <= ratio[1]))
            return vn_error_set(err, VN_ERR_INVALID,
                                "random-resized-crop ratio must satisfy 0 < lo <= hi, got "
                                "(%g, %g)", ratio[0], ratio[1]);
        t->scale[0] = scale[0];
        t->scale[1] = scale[1];
        t->ratio[0] = ratio[0];
        t->ratio[1] = ratio[1];
    } else if (!(crop_pct > 0 && crop_pct <= 1)) {
        return vn_error_set(err, VN_ERR_INVALID, "crop_pct must be in (0, 1], got %g", crop_pct);
    }
    if (!(hflip >= 0 && hflip <= 1))
        return vn_error_set(err, VN_ERR_INVALID, "hflip probability must be in [0, 1], got %g",
                            hflip);
    for (int c = 0; c < channels; c++)
        if (!(std[c] > 0) || !isfinite(mean[c]))
            return vn_error_set(err, VN_ERR_INVALID,
                                "normalisation of channel %d needs std > 0 and a finite mean "
                                "(mean %g, std %g)", c, mean[c], std[c]);
    t->size = size;
    t->channels = channels;
    t->random_resized_crop = random_resized_crop;
    t->interp = interp;
    t->crop_pct = crop_pct;
    t->hflip = hflip;
    vn_normalizer_init(&t->norm, channels, mean, std);
    return VN_OK;
}

static void flip_rows(vn_pix im)
{
    const int c = im.channels;
    for (int y = 0; y < im.height; y++) {
        uint8_t *row = im.data + (size_t)y * im.width * c;
        for (int a = 0, b = im.width - 1; a < b; a++, b--)
            for (int k = 0; k < c; k++) {
                uint8_t t = row[a * c + k];
                row[a * c + k] = row[b * c + k];
                row[b * c + k] = t;
            }
    }
}

int vn_transform_apply(const vn_transform *t, const vn_image *img, vn_rng *rng, float *out,
                       vn_tf_scratch *scratch, vn_box *box_out, bool *flipped, vn_error *err)
{
    if (img->channels != t->channels)
        return vn_error_set(err, VN_ERR_INVALID, "image has %d channels, transform expects %d",
                            img->channels, t->channels);
    const vn_train_aug *aug = t->aug && vn_train_aug_active(t->aug) ? t->aug : NULL;
    VN_ASSERT(rng || (!t->random_resized_crop && t->crop_padding <= 0 && t->hflip <= 0 && !aug),
              "vn_transform_apply needs a generator for random crops or flips");
    vn_tf_scratch local = {0};
    if (!scratch) scratch = &local;
    const int s = t->size;
    vn_box src_box, win = {0, 0, s, s};
    int out_w = s, out_h = s;
    bool copy = false; /* the window is copied, not resampled */
    int rc = VN_OK;
    if (t->random_resized_crop) {
        src_box = vn_rrc_box_rng(img->width, img->height, t->scale, t->ratio, rng);
    } else if (t->crop_padding > 0) {
        vn_rrc_draws d = {rng_uniform, rng_randint, rng};
        copy = true;
        if (!vn_random_crop_box(img->width, img->height, s, t->crop_padding, &d, &src_box))
            rc = vn_error_set(err, VN_ERR_INVALID, "transform: random crop of %d px does not fit "
                              "a %dx%d image padded by %d", s, img->width, img->height,
                              t->crop_padding);
    } else {
        src_box = (vn_box){0, 0, img->height, img->width};
        copy = t->eval_resize == VN_EVAL_RESIZE_NONE;
        if (copy && (img->width != s || img->height != s))
            rc = vn_error_set(err, VN_ERR_INVALID, "transform: image is %dx%d; the official "
                              "evaluation at input sizes <= 32 does not resize, so it must be "
                              "%dx%d (data.eval_mode: resize-crop resizes it)", img->width,
                              img->height, s, s);
        if (t->eval_resize == VN_EVAL_RESIZE_CROP)
            vn_eval_geometry(img->width, img->height, s, t->crop_pct, &out_w, &out_h, &win);
    }
    bool flip = false;
    if (t->hflip > 0) flip = vn_rng_uniform(rng) < t->hflip;
    size_t pix = (size_t)s * s * t->channels;
    size_t need = aug ? 2 * pix : pix; /* RandAugment's copy in the second half */
    if (!rc && scratch->pix_cap < need) {
        uint8_t *p = realloc(scratch->pix, need);
        if (!p) rc = vn_error_set(err, VN_ERR_NOMEM, "transform: out of memory");
        else {
            scratch->pix = p;
            scratch->pix_cap = need;
        }
    }
    if (!rc && (win.height != s || win.width != s))
        rc = vn_error_set(err, VN_ERR_INVALID,
                          "transform: eval resize gives %dx%d, smaller than the %d crop", out_w,
                          out_h, s);
    if (!rc && copy)
        vn__crop_u8(img, &src_box, scratch->pix);
    else if (!rc)
        rc = vn_resize(img->data, img->width, img->height, img->channels, &src_box, out_w, out_h,
                       &win, t->interp, scratch->pix, scratch, err);
    if (!rc && aug) {
        /* timm's order: flip, RandAugment (or color jitter) on 8-bit pixels, ToTensor +
         * Normalize, random erasing. */
        vn_pix im = {scratch->pix, s, s, t->channels};
        if (flip) flip_rows(im);
        vn_train_aug_pixels(aug, im, scratch->pix + pix, rng);
        vn_normalize_u8(&t->norm, scratch->pix, s, s, false, out);
        vn_erasing_apply(&aug->erasing, out, s, s, t->channels, rng);
    } else if (!rc) {
        vn_normalize_u8(&t->norm, scratch->pix, s, s, flip, out);
    }
    vn_tf_scratch_free(&local);
    if (box_out) *box_out = src_box;
    if (flipped) *flipped = flip;
    return rc;
}
