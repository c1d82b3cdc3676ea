/* One detection sample: decode, letterbox, HSV jitter and horizontal flip, with the boxes
 * carried along (see data/vn_detect_data.h). */
#include "data/vn_detect_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/vn_image.h"
#include "data/vn_transform.h"

void vn_det_augment_default(vn_det_augment *a) { *a = (vn_det_augment){0.5f, 0.015f, 0.7f, 0.4f}; }

void vn_det_sample_free(vn_det_sample *s)
{
    free(s->pix);
    free(s->cls);
    free(s->xyxy);
    memset(s, 0, sizeof *s);
}

static int sample_reserve(vn_det_sample *s, int imgsz, int n_boxes)
{
    if (s->imgsz != imgsz || !s->pix) {
        free(s->pix);
        s->pix = malloc((size_t)imgsz * (size_t)imgsz * 3);
        s->imgsz = imgsz;
        if (!s->pix) return VN_ERR_NOMEM;
    }
    if (n_boxes > s->cap_boxes) {
        int32_t *c = realloc(s->cls, (size_t)n_boxes * sizeof *c);
        if (c) s->cls = c;
        float *b = realloc(s->xyxy, (size_t)n_boxes * 4 * sizeof *b);
        if (b) s->xyxy = b;
        if (!c || !b) return VN_ERR_NOMEM;
        s->cap_boxes = n_boxes;
    }
    s->n_boxes = n_boxes;
    return VN_OK;
}

/* OpenCV's 8-bit RGB <-> HSV (H in [0, 180), S and V in [0, 255]). */
static void rgb_to_hsv(const uint8_t *p, int *h, int *s, int *v)
{
    int r = p[0], g = p[1], b = p[2];
    int mx = r > g ? (r > b ? r : b) : (g > b ? g : b), mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
    int d = mx - mn;
    *v = mx;
    *s = mx ? (int)lround(255.0 * d / mx) : 0;
    double hh = 0;
    if (d) {
        if (mx == r) hh = 60.0 * (g - b) / d;
        else if (mx == g) hh = 120.0 + 60.0 * (b - r) / d;
        else hh = 240.0 + 60.0 * (r - g) / d;
        if (hh < 0) hh += 360.0;
    }
    *h = (int)lround(hh / 2.0) % 180;
}

static void hsv_to_rgb(int h, int s, int v, uint8_t *p)
{
    double hh = h * 2.0 / 60.0, sv = s / 255.0, c = v * sv;
    double x = c * (1 - fabs(fmod(hh, 2.0) - 1)), m = v - c, rgb[3];
    int sector = (int)hh % 6;
    static const int perm[6][3] = {{0, 1, 2}, {1, 0, 2}, {2, 0, 1}, {2, 1, 0}, {1, 2, 0}, {0, 2, 1}};
    double val[3] = {c, x, 0};
    for (int k = 0; k < 3; k++) rgb[k] = val[perm[sector][k]] + m;
    for (int k = 0; k < 3; k++) {
        long q = lround(rgb[k]);
        p[k] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
    }
}

static void hsv_jitter(uint8_t *pix, int64_t n, const vn_det_augment *a, vn_rng *rng)
{
    double r[3];
    double gains[3] = {a->hsv_h, a->hsv_s, a->hsv_v};
    for (int k = 0; k < 3; k++) r[k] = (2.0 * vn_rng_uniform_double(rng) - 1.0) * gains[k] + 1.0;
    uint8_t lut[3][256];
    for (int x = 0; x < 256; x++) {
        lut[0][x] = (uint8_t)(((int)(x * r[0]) % 180 + 180) % 180);
        for (int k = 1; k < 3; k++) {
            double y = x * r[k];
            lut[k][x] = (uint8_t)(y < 0 ? 0 : y > 255 ? 255 : y);
        }
    }
    for (int64_t i = 0; i < n; i++) {
        int h, s, v;
        rgb_to_hsv(pix + 3 * i, &h, &s, &v);
        hsv_to_rgb(lut[0][h], lut[1][s], lut[2][v], pix + 3 * i);
    }
}

static void flip_lr(vn_det_sample *s)
{
    int w = s->imgsz;
    for (int y = 0; y < w; y++) {
        uint8_t *row = s->pix + (size_t)y * w * 3;
        for (int x = 0; x < w / 2; x++)
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[3 * x + c];
                row[3 * x + c] = row[3 * (w - 1 - x) + c];
                row[3 * (w - 1 - x) + c] = t;
            }
    }
    for (int i = 0; i < s->n_boxes; i++) {
        float *b = s->xyxy + 4 * i, x1 = b[0];
        b[0] = (float)w - b[2];
        b[2] = (float)w - x1;
    }
}

/* Resized image centred on the grey canvas; boxes mapped to canvas pixels. */
static int letterbox(const vn_image *img, const vn_det_box *boxes, int n, vn_det_sample *s,
                     vn_error *err)
{
    const int size = s->imgsz;
    double r = (double)size / (img->width > img->height ? img->width : img->height);
    int w = (int)ceil(img->width * r), h = (int)ceil(img->height * r);
    w = w > size ? size : w < 1 ? 1 : w;
    h = h > size ? size : h < 1 ? 1 : h;
    uint8_t *tmp = malloc((size_t)w * (size_t)h * 3);
    if (!tmp) return vn_error_set(err, VN_ERR_NOMEM, "letterbox: out of memory");
    int rc = (w == img->width && h == img->height)
                 ? (memcpy(tmp, img->data, (size_t)w * h * 3), VN_OK)
                 : vn_resize(img->data, img->width, img->height, 3, NULL, w, h, NULL,
                             VN_INTERP_BILINEAR, tmp, NULL, err);
    if (rc == VN_OK) {
        double dw = (size - w) / 2.0, dh = (size - h) / 2.0;
        int top = (int)lround(dh - 0.1), left = (int)lround(dw - 0.1);
        memset(s->pix, 114, (size_t)size * size * 3);
        for (int y = 0; y < h; y++)
            memcpy(s->pix + ((size_t)(top + y) * size + left) * 3, tmp + (size_t)y * w * 3,
                   (size_t)w * 3);
        for (int i = 0; i < n; i++) {
            const vn_det_box *b = &boxes[i];
            float *o = s->xyxy + 4 * i;
            s->cls[i] = b->cls;
            o[0] = (float)(w * (b->cx - b->w / 2) + left);
            o[1] = (float)(h * (b->cy - b->h / 2) + top);
            o[2] = (float)(w * (b->cx + b->w / 2) + left);
            o[3] = (float)(h * (b->cy + b->h / 2) + top);
        }
    }
    free(tmp);
    return rc;
}

int vn_det_load_sample(const vn_det_dataset *ds, int64_t i, int imgsz, const vn_det_augment *aug,
                       uint64_t seed, int64_t epoch, vn_det_sample *out, vn_error *err)
{
    if (imgsz < 32 || imgsz > 8192)
        return vn_error_set(err, VN_ERR_INVALID, "imgsz %d (32..8192)", imgsz);
    int n;
    const vn_det_box *boxes = vn_det_dataset_boxes(ds, i, &n);
    if (sample_reserve(out, imgsz, n) != VN_OK)
        return vn_error_set(err, VN_ERR_NOMEM, "detection sample: out of memory");
    vn_image img = {0};
    int rc = vn_image_decode_file(NULL, vn_det_dataset_image(ds, i), 3, 0, &img, NULL, err);
    if (rc == VN_OK) rc = letterbox(&img, boxes, n, out, err);
    vn_image_free(&img);
    if (rc != VN_OK || !aug) return rc;
    vn_rng rng;
    vn_rng_seed(&rng, seed, (uint64_t)epoch, (uint64_t)i);
    if (aug->hsv_h > 0 || aug->hsv_s > 0 || aug->hsv_v > 0)
        hsv_jitter(out->pix, (int64_t)imgsz * imgsz, aug, &rng);
    if (aug->fliplr > 0 && vn_rng_uniform_double(&rng) < aug->fliplr) flip_lr(out);
    return VN_OK;
}
