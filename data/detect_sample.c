/* One detection sample: decode, letterbox, HSV jitter and horizontal flip, with the boxes
 * carried along (see data/vn_detect_data.h). */
#include "data/vn_detect_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/vn_image.h"
#include "data/vn_transform.h"

void vn_det_augment_default(vn_det_augment *a)
{
    *a = (vn_det_augment){0.5f, 0.015f, 0.7f, 0.4f, 1.0f, 0.5f, 0.1f};
}

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
    float x1 = s->image_xyxy[0];
    s->image_xyxy[0] = (float)w - s->image_xyxy[2];
    s->image_xyxy[2] = (float)w - x1;
}

/* Image i decoded and resized so that its longer side is size: *pix (malloc'd) w x h x 3. */
static int load_resized(const vn_det_dataset *ds, int64_t i, int size, uint8_t **pix, int *w,
                        int *h, vn_error *err)
{
    *pix = NULL;
    vn_image img = {0};
    int rc = vn_image_decode_file(NULL, vn_det_dataset_image(ds, i), 3, 0, &img, NULL, err);
    if (rc == VN_OK) {
        double r = (double)size / (img.width > img.height ? img.width : img.height);
        int nw = (int)ceil(img.width * r), nh = (int)ceil(img.height * r);
        *w = nw > size ? size : nw < 1 ? 1 : nw;
        *h = nh > size ? size : nh < 1 ? 1 : nh;
        *pix = malloc((size_t)*w * (size_t)*h * 3);
        if (!*pix) rc = vn_error_set(err, VN_ERR_NOMEM, "detection sample: out of memory");
        else if (*w == img.width && *h == img.height)
            memcpy(*pix, img.data, (size_t)*w * *h * 3);
        else
            rc = vn_resize(img.data, img.width, img.height, 3, NULL, *w, *h, NULL,
                           VN_INTERP_BILINEAR, *pix, NULL, err);
    }
    vn_image_free(&img);
    if (rc != VN_OK) {
        free(*pix);
        *pix = NULL;
    }
    return rc;
}

/* Work canvas before the affine: pixels cw x cw and boxes (cls, x1, y1, x2, y2). */
typedef struct det_canvas {
    int cw;
    uint8_t *pix;
    int n, cap;
    int32_t *cls;
    float *xyxy;
    float image_xyxy[4]; /* the letterbox's picture (make_letterbox) */
} det_canvas;

static void canvas_free(det_canvas *c)
{
    free(c->pix);
    free(c->cls);
    free(c->xyxy);
}

static int canvas_add_boxes(det_canvas *c, const vn_det_box *b, int n, int w, int h, double dx,
                            double dy)
{
    if (c->n + n > c->cap) {
        int cap = (c->n + n) * 2;
        int32_t *k = realloc(c->cls, (size_t)cap * sizeof *k);
        if (k) c->cls = k;
        float *x = realloc(c->xyxy, (size_t)cap * 4 * sizeof *x);
        if (x) c->xyxy = x;
        if (!k || !x) return VN_ERR_NOMEM;
        c->cap = cap;
    }
    for (int i = 0; i < n; i++) {
        float *o = c->xyxy + 4 * (c->n + i);
        c->cls[c->n + i] = b[i].cls;
        o[0] = (float)(w * (b[i].cx - b[i].w / 2) + dx);
        o[1] = (float)(h * (b[i].cy - b[i].h / 2) + dy);
        o[2] = (float)(w * (b[i].cx + b[i].w / 2) + dx);
        o[3] = (float)(h * (b[i].cy + b[i].h / 2) + dy);
    }
    c->n += n;
    return VN_OK;
}

/* Copies src rows [y1b, y1b + rows) and columns [x1b, x1b + cols) to the canvas at (x1a, y1a). */
static void blit(det_canvas *c, const uint8_t *src, int w, int x1a, int y1a, int x1b, int y1b,
                 int cols, int rows)
{
    for (int y = 0; y < rows; y++)
        memcpy(c->pix + ((size_t)(y1a + y) * c->cw + x1a) * 3,
               src + ((size_t)(y1b + y) * w + x1b) * 3, (size_t)cols * 3);
}

/* The letterboxed image: canvas of imgsz. */
static int make_letterbox(const vn_det_dataset *ds, int64_t i, int size, det_canvas *c, vn_error *err)
{
    uint8_t *img;
    int w, h;
    int rc = load_resized(ds, i, size, &img, &w, &h, err);
    if (rc != VN_OK) return rc;
    int top = (int)lround((size - h) / 2.0 - 0.1), left = (int)lround((size - w) / 2.0 - 0.1);
    memset(c->pix, 114, (size_t)size * size * 3);
    blit(c, img, w, left, top, 0, 0, w, h);
    free(img);
    c->image_xyxy[0] = (float)left;
    c->image_xyxy[1] = (float)top;
    c->image_xyxy[2] = (float)(left + w);
    c->image_xyxy[3] = (float)(top + h);
    int n;
    const vn_det_box *b = vn_det_dataset_boxes(ds, i, &n);
    return canvas_add_boxes(c, b, n, w, h, left, top) == VN_OK
               ? VN_OK : vn_error_set(err, VN_ERR_NOMEM, "detection sample: out of memory");
}

/* Ultralytics' _mosaic4 on a canvas of 2 imgsz: image idx[k] goes to quadrant k around (xc, yc). */
static int make_mosaic(const vn_det_dataset *ds, const int64_t *idx, int s, int xc, int yc,
                       det_canvas *c, vn_error *err)
{
    memset(c->pix, 114, (size_t)c->cw * c->cw * 3);
    for (int k = 0; k < 4; k++) {
        uint8_t *img;
        int w, h;
        int rc = load_resized(ds, idx[k], s, &img, &w, &h, err);
        if (rc != VN_OK) return rc;
        int x1a, y1a, x2a, y2a, x1b, y1b;
        if (k == 0) {
            x1a = xc - w > 0 ? xc - w : 0, y1a = yc - h > 0 ? yc - h : 0, x2a = xc, y2a = yc;
            x1b = w - (x2a - x1a), y1b = h - (y2a - y1a);
        } else if (k == 1) {
            x1a = xc, y1a = yc - h > 0 ? yc - h : 0, x2a = xc + w < 2 * s ? xc + w : 2 * s, y2a = yc;
            x1b = 0, y1b = h - (y2a - y1a);
        } else if (k == 2) {
            x1a = xc - w > 0 ? xc - w : 0, y1a = yc, x2a = xc, y2a = yc + h < 2 * s ? yc + h : 2 * s;
            x1b = w - (x2a - x1a), y1b = 0;
        } else {
            x1a = xc, y1a = yc, x2a = xc + w < 2 * s ? xc + w : 2 * s;
            y2a = yc + h < 2 * s ? yc + h : 2 * s;
            x1b = 0, y1b = 0;
        }
        blit(c, img, w, x1a, y1a, x1b, y1b, x2a - x1a, y2a - y1a);
        free(img);
        int n;
        const vn_det_box *b = vn_det_dataset_boxes(ds, idx[k], &n);
        if (canvas_add_boxes(c, b, n, w, h, x1a - x1b, y1a - y1b) != VN_OK)
            return vn_error_set(err, VN_ERR_NOMEM, "detection sample: out of memory");
    }
    for (int i = 0; i < 4 * c->n; i++) /* clip to the mosaic */
        c->xyxy[i] = c->xyxy[i] < 0 ? 0 : c->xyxy[i] > 2 * s ? (float)(2 * s) : c->xyxy[i];
    return VN_OK;
}

/* Random affine (zoom sc about the canvas centre, then shift to (tx, ty)) into the sample;
 * boxes mapped, clipped and filtered (box_candidates). */
static void affine(const det_canvas *c, double sc, double tx, double ty, vn_det_sample *s)
{
    const int so = s->imgsz, cw = c->cw;
    const double cx = cw / 2.0, cy = cw / 2.0;
    for (int y = 0; y < so; y++) {
        double sy = (y - ty) / sc + cy;
        for (int x = 0; x < so; x++) {
            double sx = (x - tx) / sc + cx;
            uint8_t *o = s->pix + ((size_t)y * so + x) * 3;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            double fx = sx - x0, fy = sy - y0, acc[3] = {0, 0, 0};
            for (int k = 0; k < 4; k++) {
                int xx = x0 + (k & 1), yy = y0 + (k >> 1);
                double wgt = ((k & 1) ? fx : 1 - fx) * ((k >> 1) ? fy : 1 - fy);
                const uint8_t *p = (xx >= 0 && xx < cw && yy >= 0 && yy < cw)
                                       ? c->pix + ((size_t)yy * cw + xx) * 3 : NULL;
                for (int ch = 0; ch < 3; ch++) acc[ch] += wgt * (p ? p[ch] : 114);
            }
            for (int ch = 0; ch < 3; ch++) o[ch] = (uint8_t)lround(acc[ch]);
        }
    }
    int kept = 0;
    for (int i = 0; i < c->n; i++) {
        const float *b = c->xyxy + 4 * i;
        double w1 = (b[2] - b[0]) * sc, h1 = (b[3] - b[1]) * sc, o[4];
        for (int k = 0; k < 4; k++) {
            double v = sc * (b[k] - (k % 2 ? cy : cx)) + (k % 2 ? ty : tx);
            o[k] = v < 0 ? 0 : v > so ? so : v;
        }
        double w2 = o[2] - o[0], h2 = o[3] - o[1];
        double ar = fmax(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16));
        if (!(w2 > 2 && h2 > 2 && w2 * h2 / (w1 * h1 + 1e-16) > 0.1 && ar < 100)) continue;
        s->cls[kept] = c->cls[i];
        for (int k = 0; k < 4; k++) s->xyxy[4 * kept + k] = (float)o[k];
        kept++;
    }
    s->n_boxes = kept;
}

int vn_det_load_sample(const vn_det_dataset *ds, int64_t i, int imgsz, const vn_det_augment *aug,
                       uint64_t seed, int64_t epoch, vn_det_sample *out, vn_error *err)
{
    if (imgsz < 32 || imgsz > 8192)
        return vn_error_set(err, VN_ERR_INVALID, "imgsz %d (32..8192)", imgsz);
    vn_rng rng;
    vn_rng_seed(&rng, seed, (uint64_t)epoch, (uint64_t)i);
    bool mosaic = aug && aug->mosaic > 0 && vn_rng_uniform_double(&rng) < aug->mosaic;
    bool warp = aug && (mosaic || aug->scale > 0 || aug->translate > 0);
    det_canvas c = {mosaic ? 2 * imgsz : imgsz, NULL, 0, 0, NULL, NULL, {0, 0, 0, 0}};
    c.pix = malloc((size_t)c.cw * c.cw * 3);
    int rc = c.pix ? VN_OK : vn_error_set(err, VN_ERR_NOMEM, "detection sample: out of memory");
    if (rc == VN_OK && mosaic) {
        int64_t idx[4] = {i, 0, 0, 0}, n = vn_det_dataset_size(ds);
        for (int k = 1; k < 4; k++) idx[k] = (int64_t)vn_rng_below(&rng, (uint64_t)n);
        int xc = (int)(imgsz / 2.0 + vn_rng_uniform_double(&rng) * imgsz);
        int yc = (int)(imgsz / 2.0 + vn_rng_uniform_double(&rng) * imgsz);
        rc = make_mosaic(ds, idx, imgsz, xc, yc, &c, err);
    } else if (rc == VN_OK) {
        rc = make_letterbox(ds, i, imgsz, &c, err);
    }
    if (rc == VN_OK && sample_reserve(out, imgsz, c.n) != VN_OK)
        rc = vn_error_set(err, VN_ERR_NOMEM, "detection sample: out of memory");
    if (rc == VN_OK && warp) {
        out->image_xyxy[0] = out->image_xyxy[1] = 0.0f;
        out->image_xyxy[2] = out->image_xyxy[3] = (float)imgsz;
        double sc = 1.0 + (2.0 * vn_rng_uniform_double(&rng) - 1.0) * aug->scale;
        double tx = (0.5 + (2.0 * vn_rng_uniform_double(&rng) - 1.0) * aug->translate) * imgsz;
        double ty = (0.5 + (2.0 * vn_rng_uniform_double(&rng) - 1.0) * aug->translate) * imgsz;
        affine(&c, sc, tx, ty, out);
    } else if (rc == VN_OK) {
        memcpy(out->image_xyxy, c.image_xyxy, sizeof c.image_xyxy);
        memcpy(out->pix, c.pix, (size_t)imgsz * imgsz * 3);
        if (c.n) {
            memcpy(out->cls, c.cls, (size_t)c.n * sizeof *c.cls);
            memcpy(out->xyxy, c.xyxy, (size_t)c.n * 4 * sizeof *c.xyxy);
        }
        out->n_boxes = c.n;
    }
    canvas_free(&c);
    if (rc != VN_OK || !aug) return rc;
    if (aug->hsv_h > 0 || aug->hsv_s > 0 || aug->hsv_v > 0)
        hsv_jitter(out->pix, (int64_t)imgsz * imgsz, aug, &rng);
    if (aug->fliplr > 0 && vn_rng_uniform_double(&rng) < aug->fliplr) flip_lr(out);
    return VN_OK;
}
