/* RandAugment (timm 0.6.12 timm/data/auto_augment.py: level functions lines 183-260,
 * AugmentOp.__call__ 343-358, RandAugment.__call__ 652-658, rand_augment_transform 668-723),
 * color jitter (torchvision 0.14 ColorJitter) and random erasing (timm/data/random_erasing.py
 * lines 45-86). */
#include "data/vn_augment.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[VN_RA_OP_COUNT] = {
#define VN_RA_NAME(e, s) s,
    VN_RA_OPS(VN_RA_NAME)
#undef VN_RA_NAME
};
_Static_assert(sizeof op_names / sizeof op_names[0] == VN_RA_OP_COUNT, "one name per op");

const char *vn_ra_op_name(vn_ra_op op)
{
    return op >= 0 && op < VN_RA_OP_COUNT ? op_names[op] : "?";
}

int vn_ra_op_from_name(const char *name, vn_error *err)
{
    for (int i = 0; i < VN_RA_OP_COUNT; i++)
        if (!strcmp(name, op_names[i])) return i;
    char known[600] = "";
    for (int i = 0; i < VN_RA_OP_COUNT; i++) {
        strncat(known, op_names[i], sizeof known - strlen(known) - 1);
        if (i + 1 < VN_RA_OP_COUNT) strncat(known, ", ", sizeof known - strlen(known) - 1);
    }
    vn_error_set(err, VN_ERR_INVALID, "unknown RandAugment op '%s' (known: %s)", name, known);
    return -1;
}

/* _RAND_TRANSFORMS (lines 568-585) and _RAND_INCREASING_TRANSFORMS (588-605). */
static const vn_ra_op classic_set[] = {
    VN_RA_AUTO_CONTRAST, VN_RA_EQUALIZE, VN_RA_INVERT, VN_RA_ROTATE, VN_RA_POSTERIZE,
    VN_RA_SOLARIZE, VN_RA_SOLARIZE_ADD, VN_RA_COLOR, VN_RA_CONTRAST, VN_RA_BRIGHTNESS,
    VN_RA_SHARPNESS, VN_RA_SHEAR_X, VN_RA_SHEAR_Y, VN_RA_TRANSLATE_X_REL, VN_RA_TRANSLATE_Y_REL};
static const vn_ra_op increasing_set[] = {
    VN_RA_AUTO_CONTRAST, VN_RA_EQUALIZE, VN_RA_INVERT, VN_RA_ROTATE,
    VN_RA_POSTERIZE_INCREASING, VN_RA_SOLARIZE_INCREASING, VN_RA_SOLARIZE_ADD,
    VN_RA_COLOR_INCREASING, VN_RA_CONTRAST_INCREASING, VN_RA_BRIGHTNESS_INCREASING,
    VN_RA_SHARPNESS_INCREASING, VN_RA_SHEAR_X, VN_RA_SHEAR_Y, VN_RA_TRANSLATE_X_REL,
    VN_RA_TRANSLATE_Y_REL};
/* _RAND_CHOICE_WEIGHTS_0 (lines 611-627), in the order of _RAND_TRANSFORMS; timm applies
 * them by position to either set. */
static const double choice_weights_0[15] = {0.025, 0.005, 0,   0.3, 0,   0.005, 0.005, 0.025,
                                            0.005, 0.005, 0.025, 0.2, 0.2, 0.1,   0.1};

#define AA_KEY "data.auto_augment"

/* One "<key><number>" section; returns false (err set) on a bad one. */
static bool parse_section(const char *sec, vn_randaug *ra, bool *inc, int *widx, vn_error *err)
{
    size_t klen = strcspn(sec, "0123456789");
    if (!sec[klen]) return true; /* no digit: timm skips the section */
    char key[32];
    if (klen >= sizeof key) klen = sizeof key - 1;
    memcpy(key, sec, klen);
    key[klen] = '\0';
    const char *val = sec + klen;
    char *end;
    errno = 0;
    if (!strcmp(key, "mstd")) {
        double v = strtod(val, &end);
        if (*end || errno || !(v >= 0))
            return !vn_error_set(err, VN_ERR_INVALID, AA_KEY ": section '%s': mstd needs a "
                                 "number >= 0", sec);
        ra->mstd = v > 100 ? INFINITY : v;
        return true;
    }
    if (!strcmp(key, "inc")) {
        *inc = true; /* timm: bool(val) of a non-empty string */
        return true;
    }
    long v = strtol(val, &end, 10);
    if (*end || errno)
        return !vn_error_set(err, VN_ERR_INVALID, AA_KEY ": section '%s': '%s' is not an "
                             "integer", sec, val);
    if (!strcmp(key, "m")) ra->magnitude = (int)(v > 1000000 ? 1000000 : v);
    else if (!strcmp(key, "n")) ra->num_layers = (int)(v > 1000000 ? 1000000 : v);
    else if (!strcmp(key, "mmax")) ra->mmax = (double)(v > 1000000 ? 1000000 : v);
    else if (!strcmp(key, "w")) *widx = (int)(v > 1000000 ? 1000000 : v);
    else
        return !vn_error_set(err, VN_ERR_INVALID, AA_KEY ": unknown section '%s' in a RandAugment "
                             "string (known: m, n, mstd, mmax, inc, w; e.g. rand-m9-mstd0.5-inc1)",
                             sec);
    return true;
}

static int check_parsed(const char *config, vn_randaug *ra, int widx, vn_error *err)
{
    if (ra->mmax <= 0) ra->mmax = 10; /* timm: magnitude_max or _LEVEL_DENOM */
    if (ra->magnitude < 0 || ra->magnitude > ra->mmax)
        return vn_error_set(err, VN_ERR_INVALID, AA_KEY ": '%s': magnitude m%d is outside "
                            "0..%g (timm would clip it silently; raise mmax to allow more)",
                            config, ra->magnitude, ra->mmax);
    if (ra->num_layers < 1 || ra->num_layers > VN_RA_MAX_OPS)
        return vn_error_set(err, VN_ERR_INVALID, AA_KEY ": '%s': n%d ops per image is outside "
                            "1..%d", config, ra->num_layers, VN_RA_MAX_OPS);
    if (widx >= 0) {
        if (widx != 0)
            return vn_error_set(err, VN_ERR_INVALID, AA_KEY ": '%s': only weight set w0 exists",
                                config);
        if (ra->num_layers > ra->n_ops - 2) /* two of the 15 weights are 0 */
            return vn_error_set(err, VN_ERR_INVALID, AA_KEY ": '%s': w0 draws without "
                                "replacement from 13 ops with weight > 0; n%d is too many",
                                config, ra->num_layers);
        double s = 0;
        for (int i = 0; i < ra->n_ops; i++) s += choice_weights_0[i];
        for (int i = 0; i < ra->n_ops; i++) ra->weights[i] = choice_weights_0[i] / s;
        ra->weighted = true;
    }
    return VN_OK;
}

int vn_randaug_parse(const char *config, int input_size, int channels, const float mean[3],
                     vn_interp interp, vn_randaug *ra, vn_error *err)
{
    memset(ra, 0, sizeof *ra);
    ra->num_layers = 2;
    ra->magnitude = 10;
    ra->prob = 0.5;
    ra->interp = interp;
    ra->translate_const = (int)(input_size * 0.45);
    for (int c = 0; c < 3; c++) {
        long v = lround(255.0 * mean[c < channels ? c : 0]);
        ra->fill[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    if (strncmp(config, "rand", 4) != 0 || (config[4] && config[4] != '-'))
        return vn_error_set(err, VN_ERR_INVALID, AA_KEY ": '%s' is not a RandAugment string "
                            "(rand-m9-mstd0.5-inc1 and the like; AutoAugment and AugMix "
                            "policies are not supported)", config);
    bool inc = false;
    int widx = -1;
    char buf[256];
    if (strlen(config) >= sizeof buf)
        return vn_error_set(err, VN_ERR_INVALID, AA_KEY ": the string is too long");
    strcpy(buf, config);
    char *save = NULL;
    strtok_r(buf, "-", &save); /* "rand" */
    for (char *sec = strtok_r(NULL, "-", &save); sec; sec = strtok_r(NULL, "-", &save))
        if (!parse_section(sec, ra, &inc, &widx, err)) return err ? err->code : VN_ERR_INVALID;
    const vn_ra_op *set = inc ? increasing_set : classic_set;
    ra->n_ops = 15;
    memcpy(ra->ops, set, sizeof(vn_ra_op) * 15);
    return check_parsed(config, ra, widx, err);
}

bool vn_ra_op_signed(vn_ra_op op)
{
    switch (op) {
    case VN_RA_ROTATE: case VN_RA_COLOR_INCREASING: case VN_RA_CONTRAST_INCREASING:
    case VN_RA_BRIGHTNESS_INCREASING: case VN_RA_SHARPNESS_INCREASING: case VN_RA_SHEAR_X:
    case VN_RA_SHEAR_Y: case VN_RA_TRANSLATE_X: case VN_RA_TRANSLATE_Y:
    case VN_RA_TRANSLATE_X_REL: case VN_RA_TRANSLATE_Y_REL:
        return true;
    default:
        return false;
    }
}

/* LEVEL_TO_ARG (lines 263-289); the level is magnitude / _LEVEL_DENOM (10). */
double vn_ra_level_arg(const vn_randaug *ra, vn_ra_op op, double m, bool neg)
{
    double l = m / 10.0;
    switch (op) {
    case VN_RA_ROTATE: return neg ? -(l * 30.) : l * 30.;
    case VN_RA_POSTERIZE: return (int)(l * 4);
    case VN_RA_POSTERIZE_INCREASING: return 4 - (int)(l * 4);
    case VN_RA_POSTERIZE_ORIGINAL: return (int)(l * 4) + 4;
    case VN_RA_SOLARIZE: return (int)(l * 256);
    case VN_RA_SOLARIZE_INCREASING: return 256 - (int)(l * 256);
    case VN_RA_SOLARIZE_ADD: return (int)(l * 110);
    case VN_RA_COLOR: case VN_RA_CONTRAST: case VN_RA_BRIGHTNESS: case VN_RA_SHARPNESS:
        return l * 1.8 + 0.1;
    case VN_RA_COLOR_INCREASING: case VN_RA_CONTRAST_INCREASING:
    case VN_RA_BRIGHTNESS_INCREASING: case VN_RA_SHARPNESS_INCREASING: {
        double v = l * .9;
        v = 1.0 + (neg ? -v : v);
        return v > 0.1 ? v : 0.1;
    }
    case VN_RA_SHEAR_X: case VN_RA_SHEAR_Y: return neg ? -(l * 0.3) : l * 0.3;
    case VN_RA_TRANSLATE_X: case VN_RA_TRANSLATE_Y: {
        double v = l * (double)ra->translate_const;
        return neg ? -v : v;
    }
    case VN_RA_TRANSLATE_X_REL: case VN_RA_TRANSLATE_Y_REL: return neg ? -(l * 0.45) : l * 0.45;
    default: return 0;
    }
}

static void affine_inplace(const vn_randaug *ra, vn_pix im, uint8_t *tmp, const double a[6])
{
    size_t bytes = (size_t)im.width * im.height * im.channels;
    memcpy(tmp, im.data, bytes);
    vn_pix src = {tmp, im.width, im.height, im.channels};
    vn_aug_affine(src, im, a, ra->interp, ra->fill);
}

/* NAME_TO_OP (lines 292-317) with the op wrappers of lines 61-175. */
void vn_ra_apply_op(const vn_randaug *ra, vn_ra_op op, double arg, vn_pix im, uint8_t *tmp)
{
    switch (op) {
    case VN_RA_AUTO_CONTRAST: vn_aug_autocontrast(im); break;
    case VN_RA_EQUALIZE: vn_aug_equalize(im); break;
    case VN_RA_INVERT: vn_aug_invert(im); break;
    case VN_RA_ROTATE: {
        memcpy(tmp, im.data, (size_t)im.width * im.height * im.channels);
        vn_pix src = {tmp, im.width, im.height, im.channels};
        vn_aug_rotate(src, im, arg, ra->interp, ra->fill);
        break;
    }
    case VN_RA_POSTERIZE: case VN_RA_POSTERIZE_INCREASING: case VN_RA_POSTERIZE_ORIGINAL:
        vn_aug_posterize(im, (int)arg);
        break;
    case VN_RA_SOLARIZE: case VN_RA_SOLARIZE_INCREASING: vn_aug_solarize(im, (int)arg); break;
    case VN_RA_SOLARIZE_ADD: vn_aug_solarize_add(im, (int)arg, 128); break;
    case VN_RA_COLOR: case VN_RA_COLOR_INCREASING: vn_aug_color(im, arg); break;
    case VN_RA_CONTRAST: case VN_RA_CONTRAST_INCREASING: vn_aug_contrast(im, arg); break;
    case VN_RA_BRIGHTNESS: case VN_RA_BRIGHTNESS_INCREASING: vn_aug_brightness(im, arg); break;
    case VN_RA_SHARPNESS: case VN_RA_SHARPNESS_INCREASING: vn_aug_sharpness(im, arg, tmp); break;
    case VN_RA_SHEAR_X: affine_inplace(ra, im, tmp, (const double[6]){1, arg, 0, 0, 1, 0}); break;
    case VN_RA_SHEAR_Y: affine_inplace(ra, im, tmp, (const double[6]){1, 0, 0, arg, 1, 0}); break;
    case VN_RA_TRANSLATE_X: affine_inplace(ra, im, tmp, (const double[6]){1, 0, arg, 0, 1, 0}); break;
    case VN_RA_TRANSLATE_Y: affine_inplace(ra, im, tmp, (const double[6]){1, 0, 0, 0, 1, arg}); break;
    case VN_RA_TRANSLATE_X_REL:
        affine_inplace(ra, im, tmp, (const double[6]){1, 0, arg * im.width, 0, 1, 0});
        break;
    case VN_RA_TRANSLATE_Y_REL:
        affine_inplace(ra, im, tmp, (const double[6]){1, 0, 0, 0, 1, arg * im.height});
        break;
    default: break;
    }
}

/* np.random.choice(ops, n, replace=False, p=weights): sequential draws over the remaining
 * weights (same distribution as numpy, not its random stream). */
static void weighted_pick(const vn_randaug *ra, const vn_ra_draws *d, int *idx)
{
    bool used[VN_RA_MAX_OPS] = {false};
    for (int l = 0; l < ra->num_layers; l++) {
        double left = 0;
        for (int i = 0; i < ra->n_ops; i++) left += used[i] ? 0 : ra->weights[i];
        double u = d->random(d->user) * left;
        int pick = -1;
        for (int i = 0; i < ra->n_ops; i++) {
            if (used[i] || ra->weights[i] <= 0) continue;
            pick = i;
            if (u < ra->weights[i]) break;
            u -= ra->weights[i];
        }
        used[pick] = true;
        idx[l] = pick;
    }
}

void vn_randaug_apply_draws(const vn_randaug *ra, vn_pix im, uint8_t *tmp, const vn_ra_draws *d)
{
    int idx[VN_RA_MAX_OPS];
    if (ra->weighted) weighted_pick(ra, d, idx);
    else
        for (int l = 0; l < ra->num_layers; l++) idx[l] = (int)d->choice(d->user, ra->n_ops);
    for (int l = 0; l < ra->num_layers; l++) {
        vn_ra_op op = ra->ops[idx[l]];
        if (ra->prob < 1.0 && d->random(d->user) > ra->prob) continue;
        double m = ra->magnitude;
        if (ra->mstd > 0) {
            if (isinf(ra->mstd)) m = 0 + (m - 0) * d->random(d->user);
            else m = d->gauss(d->user, m, ra->mstd);
        }
        m = fmax(0., fmin(m, ra->mmax));
        bool neg = vn_ra_op_signed(op) && d->random(d->user) > 0.5;
        double arg = vn_ra_level_arg(ra, op, m, neg);
        vn_ra_apply_op(ra, op, arg, im, tmp);
    }
}

static double rng_random(void *u) { return vn_rng_uniform_double(u); }
static double rng_gauss(void *u, double mu, double sigma) { return mu + vn_rng_normal(u) * sigma; }
static int64_t rng_choice(void *u, int64_t n) { return (int64_t)vn_rng_below(u, (uint64_t)n); }
static int64_t rng_randint(void *u, int64_t lo, int64_t hi)
{
    return lo + (int64_t)vn_rng_below(u, (uint64_t)(hi - lo + 1));
}

void vn_randaug_apply(const vn_randaug *ra, vn_pix im, uint8_t *tmp, vn_rng *rng)
{
    vn_ra_draws d = {rng_random, rng_gauss, rng_choice, rng};
    vn_randaug_apply_draws(ra, im, tmp, &d);
}

/* ---- torchvision 0.14 ColorJitter on PIL images ---------------------------------------- */

bool vn_color_jitter_active(const vn_color_jitter *cj)
{
    return cj->brightness > 0 || cj->contrast > 0 || cj->saturation > 0;
}

void vn_color_jitter_apply(const vn_color_jitter *cj, vn_pix im, vn_rng *rng)
{
    /* fn_idx = torch.randperm(4) (index 3, hue, is off), then the factors in the order
     * brightness, contrast, saturation, each uniform_(max(0, 1 - v), 1 + v) in float32. */
    int order[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; i--) {
        int j = (int)vn_rng_below(rng, (uint64_t)i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    const float v[3] = {cj->brightness, cj->contrast, cj->saturation};
    float f[3] = {1, 1, 1};
    for (int k = 0; k < 3; k++)
        if (v[k] > 0) {
            float lo = 1.0f - v[k] > 0 ? 1.0f - v[k] : 0.0f, hi = 1.0f + v[k];
            f[k] = lo + (hi - lo) * vn_rng_uniform(rng);
        }
    for (int i = 0; i < 4; i++) {
        int k = order[i];
        if (k == 3 || v[k] <= 0) continue;
        if (k == 0) vn_aug_brightness(im, f[0]);
        else if (k == 1) vn_aug_contrast(im, f[1]);
        else vn_aug_color(im, f[2]);
    }
}

/* ---- timm RandomErasing ---------------------------------------------------------------- */

void vn_erasing_init(vn_erasing *e, double prob, vn_erase_mode mode, int max_count)
{
    e->prob = prob;
    e->mode = mode;
    e->min_count = 1;
    e->max_count = max_count > 1 ? max_count : 1;
    e->min_area = 0.02;
    e->max_area = 1.0 / 3.0;
    e->log_aspect[0] = log(0.3);
    e->log_aspect[1] = log(1.0 / 0.3);
}

int vn_erasing_boxes(const vn_erasing *e, int img_h, int img_w, const vn_erase_draws *d,
                     vn_box *boxes)
{
    if (d->random(d->user) > e->prob) return 0;
    double area = (double)img_h * img_w;
    int count = e->min_count == e->max_count
                    ? e->min_count
                    : (int)d->randint(d->user, e->min_count, e->max_count);
    int n = 0;
    for (int k = 0; k < count; k++)
        for (int attempt = 0; attempt < 10; attempt++) {
            double u = d->random(d->user);
            double target = (e->min_area + (e->max_area - e->min_area) * u) * area / count;
            u = d->random(d->user);
            double aspect = exp(e->log_aspect[0] + (e->log_aspect[1] - e->log_aspect[0]) * u);
            int h = (int)rint(sqrt(target * aspect));
            int w = (int)rint(sqrt(target / aspect));
            if (w < img_w && h < img_h) {
                int top = (int)d->randint(d->user, 0, img_h - h);
                int left = (int)d->randint(d->user, 0, img_w - w);
                boxes[n++] = (vn_box){top, left, h, w};
                break;
            }
        }
    return n;
}

void vn_erasing_apply(const vn_erasing *e, float *img, int height, int width, int channels,
                      vn_rng *rng)
{
    if (!(e->prob > 0)) return;
    VN_ASSERT(e->max_count <= 64, "random erasing: at most 64 boxes (vn_train_aug_init checks)");
    vn_box boxes[64];
    vn_erase_draws d = {rng_random, rng_randint, rng};
    int n = vn_erasing_boxes(e, height, width, &d, boxes);
    for (int b = 0; b < n; b++) {
        float color[3] = {0, 0, 0};
        if (e->mode == VN_ERASE_RAND)
            for (int c = 0; c < channels; c++) color[c] = (float)vn_rng_normal(rng);
        for (int y = boxes[b].top; y < boxes[b].top + boxes[b].height; y++) {
            float *row = img + ((size_t)y * width + boxes[b].left) * channels;
            size_t cnt = (size_t)boxes[b].width * channels;
            for (size_t i = 0; i < cnt; i++)
                row[i] = e->mode == VN_ERASE_PIXEL ? (float)vn_rng_normal(rng)
                                                   : color[i % channels];
        }
    }
}

/* ---- The pipeline's augmentations ------------------------------------------------------ */

int vn_train_aug_init(vn_train_aug *a, const vn_train_aug_config *c, int input_size,
                      int channels, const float mean[3], vn_interp interp, vn_error *err)
{
    memset(a, 0, sizeof *a);
    if (c->auto_augment && c->auto_augment[0]) {
        int rc = vn_randaug_parse(c->auto_augment, input_size, channels, mean, interp,
                                  &a->randaug, err);
        if (rc) return rc;
        a->randaug_on = true;
    }
    if (!(c->color_jitter >= 0 && c->color_jitter <= 1000))
        return vn_error_set(err, VN_ERR_INVALID, "data.color_jitter must be >= 0, got %g",
                            c->color_jitter);
    if (!a->randaug_on) /* timm: color jitter only when auto_augment is off */
        a->jitter = (vn_color_jitter){c->color_jitter, c->color_jitter, c->color_jitter};
    if (!(c->reprob >= 0 && c->reprob <= 1))
        return vn_error_set(err, VN_ERR_INVALID, "data.reprob must be in [0, 1], got %g",
                            c->reprob);
    if (c->remode != VN_ERASE_CONST && c->remode != VN_ERASE_RAND && c->remode != VN_ERASE_PIXEL)
        return vn_error_set(err, VN_ERR_INVALID, "data.remode: unknown mode %d (const, rand, "
                            "pixel)", (int)c->remode);
    if (c->recount < 1 || c->recount > 64)
        return vn_error_set(err, VN_ERR_INVALID, "data.recount must be in 1..64, got %d",
                            c->recount);
    vn_erasing_init(&a->erasing, c->reprob, c->remode, c->recount);
    return VN_OK;
}

bool vn_train_aug_active(const vn_train_aug *a)
{
    return a->randaug_on || vn_color_jitter_active(&a->jitter) || a->erasing.prob > 0;
}

void vn_train_aug_pixels(const vn_train_aug *a, vn_pix im, uint8_t *tmp, vn_rng *rng)
{
    if (a->randaug_on) vn_randaug_apply(&a->randaug, im, tmp, rng);
    else if (vn_color_jitter_active(&a->jitter)) vn_color_jitter_apply(&a->jitter, im, rng);
}
