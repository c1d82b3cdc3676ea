/* Pillow 9.4's point, enhance, filter and affine operations on 8-bit HWC pixels, written
 * from the arithmetic of its ImageOps.py, ImageEnhance.py, Image.py and libImaging
 * (Blend.c, Filter.c, Geometry.c, Convert.c). See vn_augment.h for the contract. */
#include "data/vn_augment.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t pix_count(vn_pix im) { return (size_t)im.width * im.height; }

static uint8_t clip8i(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* Image.point with one 256-entry table per channel (Image.point repeats a single table). */
static void apply_luts(vn_pix im, uint8_t lut[3][256])
{
    const int c = im.channels;
    const size_t n = pix_count(im);
    uint8_t *p = im.data;
    if (c == 1) {
        for (size_t i = 0; i < n; i++) p[i] = lut[0][p[i]];
        return;
    }
    for (size_t i = 0; i < n; i++, p += 3) {
        p[0] = lut[0][p[0]];
        p[1] = lut[1][p[1]];
        p[2] = lut[2][p[2]];
    }
}

static void apply_lut(vn_pix im, const int table[256])
{
    uint8_t lut[3][256];
    for (int v = 0; v < 256; v++) lut[0][v] = lut[1][v] = lut[2][v] = clip8i(table[v]);
    apply_luts(im, lut);
}

static void histograms(vn_pix im, int64_t h[3][256])
{
    memset(h, 0, sizeof(int64_t) * 3 * 256);
    const int c = im.channels;
    const size_t n = pix_count(im);
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < c; k++) h[k][im.data[i * c + k]]++;
}

void vn_aug_autocontrast(vn_pix im)
{
    int64_t h[3][256];
    uint8_t lut[3][256];
    histograms(im, h);
    for (int k = 0; k < im.channels; k++) {
        int lo = 0, hi = 255;
        while (lo < 255 && !h[k][lo]) lo++;
        while (hi > 0 && !h[k][hi]) hi--;
        if (hi <= lo) {
            for (int v = 0; v < 256; v++) lut[k][v] = (uint8_t)v;
            continue;
        }
        double scale = 255.0 / (hi - lo);
        double offset = -lo * scale;
        for (int v = 0; v < 256; v++) {
            /* Python's int() truncates toward zero, as the C cast does. */
            int x = (int)(v * scale + offset);
            lut[k][v] = clip8i(x);
        }
    }
    apply_luts(im, lut);
}

void vn_aug_equalize(vn_pix im)
{
    int64_t h[3][256];
    uint8_t lut[3][256];
    histograms(im, h);
    for (int k = 0; k < im.channels; k++) {
        int nonzero = 0;
        int64_t total = 0, last = 0;
        for (int v = 0; v < 256; v++)
            if (h[k][v]) {
                nonzero++;
                total += h[k][v];
                last = h[k][v];
            }
        int64_t step = nonzero <= 1 ? 0 : (total - last) / 255;
        if (!step) {
            for (int v = 0; v < 256; v++) lut[k][v] = (uint8_t)v;
            continue;
        }
        int64_t n = step / 2;
        for (int v = 0; v < 256; v++) {
            int64_t q = n / step;
            lut[k][v] = (uint8_t)(q > 255 ? 255 : q);
            n += h[k][v];
        }
    }
    apply_luts(im, lut);
}

void vn_aug_invert(vn_pix im)
{
    int t[256];
    for (int v = 0; v < 256; v++) t[v] = 255 - v;
    apply_lut(im, t);
}

void vn_aug_posterize(vn_pix im, int bits)
{
    if (bits >= 8) return; /* timm returns the image unchanged */
    int mask = ~((1 << (8 - (bits < 0 ? 0 : bits))) - 1);
    int t[256];
    for (int v = 0; v < 256; v++) t[v] = v & mask;
    apply_lut(im, t);
}

void vn_aug_solarize(vn_pix im, int threshold)
{
    int t[256];
    for (int v = 0; v < 256; v++) t[v] = v < threshold ? v : 255 - v;
    apply_lut(im, t);
}

void vn_aug_solarize_add(vn_pix im, int add, int threshold)
{
    int t[256];
    for (int v = 0; v < 256; v++) t[v] = v < threshold ? (v + add < 255 ? v + add : 255) : v;
    apply_lut(im, t);
}

/* libImaging/Blend.c for one sample: in1 + alpha * (in2 - in1) in float32. */
static inline uint8_t blend1(int in1, int in2, float alpha, bool interpolate)
{
    if (interpolate) return (uint8_t)((float)in1 + alpha * (float)(in2 - in1));
    float t = (float)in1 + alpha * (float)(in2 - in1);
    if (t <= 0.0f) return 0;
    if (t >= 255.0f) return 255;
    return (uint8_t)t;
}

/* Image.blend(degenerate, image, factor) where degenerate[i] = deg(i); Pillow's shortcuts
 * return a copy of one side at alpha 0 and 1. */
static uint8_t gray_of(const uint8_t *p)
{
    return (uint8_t)(((uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[2] * 7471u +
                      0x8000u) >> 16);
}

void vn_aug_color(vn_pix im, double factor)
{
    float alpha = (float)factor;
    if (alpha == 1.0f || im.channels == 1) return; /* gray: convert("L") is the image */
    const size_t n = pix_count(im);
    bool interp = alpha >= 0 && alpha <= 1.0f;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = im.data + 3 * i;
        int g = gray_of(p);
        if (alpha == 0.0f) {
            p[0] = p[1] = p[2] = (uint8_t)g;
            continue;
        }
        for (int k = 0; k < 3; k++) p[k] = blend1(g, p[k], alpha, interp);
    }
}

static void blend_const(vn_pix im, int deg, float alpha)
{
    if (alpha == 1.0f) return;
    const size_t n = pix_count(im) * im.channels;
    if (alpha == 0.0f) {
        memset(im.data, deg, n);
        return;
    }
    bool interp = alpha >= 0 && alpha <= 1.0f;
    for (size_t i = 0; i < n; i++) im.data[i] = blend1(deg, im.data[i], alpha, interp);
}

void vn_aug_contrast(vn_pix im, double factor)
{
    /* int(ImageStat.Stat(im.convert("L")).mean[0] + 0.5): an exact integer sum over a
     * double division. */
    const size_t n = pix_count(im);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += im.channels == 3 ? gray_of(im.data + 3 * i) : im.data[i];
    int mean = n ? (int)((double)sum / (double)n + 0.5) : 0;
    blend_const(im, mean, (float)factor);
}

void vn_aug_brightness(vn_pix im, double factor) { blend_const(im, 0, (float)factor); }

/* libImaging/Filter.c ImagingFilter3x3 with ImageFilter.SMOOTH into out; images smaller
 * than the kernel are copied. */
static void smooth(vn_pix im, uint8_t *out)
{
    const int w = im.width, h = im.height, c = im.channels;
    const size_t row = (size_t)w * c;
    memcpy(out, im.data, row * h);
    if (w < 3 || h < 3) return;
    float k[9];
    const float kin[9] = {1, 1, 1, 1, 5, 1, 1, 1, 1};
    for (int i = 0; i < 9; i++) k[i] = kin[i] / 13.0f;
    const float offset = 0.0f + 0.5f;
    for (int y = 1; y < h - 1; y++) {
        const uint8_t *r1 = im.data + (size_t)(y + 1) * row, *r0 = im.data + (size_t)y * row,
                      *rm = im.data + (size_t)(y - 1) * row;
        uint8_t *o = out + (size_t)y * row;
        for (int x = 1; x < w - 1; x++)
            for (int b = 0; b < c; b++) {
                int i = x * c + b;
                float ss = offset;
                ss += (float)r1[i - c] * k[0] + (float)r1[i] * k[1] + (float)r1[i + c] * k[2];
                ss += (float)r0[i - c] * k[3] + (float)r0[i] * k[4] + (float)r0[i + c] * k[5];
                ss += (float)rm[i - c] * k[6] + (float)rm[i] * k[7] + (float)rm[i + c] * k[8];
                o[i] = ss <= 0.0f ? 0 : ss >= 255.0f ? 255 : (uint8_t)ss;
            }
    }
}

void vn_aug_sharpness(vn_pix im, double factor, uint8_t *tmp)
{
    float alpha = (float)factor;
    if (alpha == 1.0f) return;
    smooth(im, tmp);
    const size_t n = pix_count(im) * im.channels;
    if (alpha == 0.0f) {
        memcpy(im.data, tmp, n);
        return;
    }
    bool interp = alpha >= 0 && alpha <= 1.0f;
    for (size_t i = 0; i < n; i++) im.data[i] = blend1(tmp[i], im.data[i], alpha, interp);
}

/* ---- Geometry.c: generic transform with the bicubic / bilinear filters ---------------- */

static inline int floor_i(double v) { return v < 0.0 ? (int)floor(v) : (int)v; }
static inline int clampi(int v, int hi) { return v < 0 ? 0 : v < hi ? v : hi - 1; }

static inline double cubic(double v1, double v2, double v3, double v4, double d)
{
    double p1 = v2;
    double p2 = -v1 + v3;
    double p3 = 2 * (v1 - v2) + v3 - v4;
    double p4 = -v1 + v2 - v3 + v4;
    return p1 + d * (p2 + d * (p3 + d * p4));
}

/* The source pixel (x, y) at or left of/above the point (xin, yin) measured from pixel
 * centres, and the fractions dx, dy past it; false when the point is outside the image. */
static bool pixel_origin(vn_pix im, double xin, double yin, int *x, int *y, double *dx,
                         double *dy)
{
    if (xin < 0.0 || xin >= im.width || yin < 0.0 || yin >= im.height) return false;
    xin -= 0.5;
    yin -= 0.5;
    *x = floor_i(xin);
    *y = floor_i(yin);
    *dx = xin - *x;
    *dy = yin - *y;
    return true;
}

static inline uint8_t out8(double v) { return v <= 0.0 ? 0 : v >= 255.0 ? 255 : (uint8_t)v; }

/* bicubic_filter8 / bicubic_filter32RGB at source point (xin, yin); false outside. */
static bool bicubic_at(vn_pix im, double xin, double yin, uint8_t *out)
{
    int x, y;
    double dx, dy;
    if (!pixel_origin(im, xin, yin, &x, &y, &dx, &dy)) return false;
    x--;
    y--;
    const int c = im.channels, W = im.width, H = im.height;
    int xs[4];
    for (int i = 0; i < 4; i++) xs[i] = clampi(x + i, W) * c;
    for (int b = 0; b < c; b++) {
        double v[4];
        const uint8_t *in = im.data + (size_t)clampi(y, H) * W * c + b;
        v[0] = cubic(in[xs[0]], in[xs[1]], in[xs[2]], in[xs[3]], dx);
        for (int r = 1; r < 4; r++) {
            if (y + r >= 0 && y + r < H) {
                in = im.data + (size_t)(y + r) * W * c + b;
                v[r] = cubic(in[xs[0]], in[xs[1]], in[xs[2]], in[xs[3]], dx);
            } else {
                v[r] = v[r - 1];
            }
        }
        out[b] = out8(cubic(v[0], v[1], v[2], v[3], dy));
    }
    return true;
}

/* bilinear_filter8 / bilinear_filter32RGB (truncation, no clipping needed). */
static bool bilinear_at(vn_pix im, double xin, double yin, uint8_t *out)
{
    int x, y;
    double dx, dy;
    if (!pixel_origin(im, xin, yin, &x, &y, &dx, &dy)) return false;
    const int c = im.channels, W = im.width, H = im.height;
    int x0 = clampi(x, W) * c, x1 = clampi(x + 1, W) * c;
    for (int b = 0; b < c; b++) {
        const uint8_t *in = im.data + (size_t)clampi(y, H) * W * c + b;
        double v1 = in[x0] + (in[x1] - in[x0]) * dx, v2 = v1;
        if (y + 1 >= 0 && y + 1 < H) {
            in = im.data + (size_t)(y + 1) * W * c + b;
            v2 = in[x0] + (in[x1] - in[x0]) * dx;
        }
        out[b] = (uint8_t)(v1 + (v2 - v1) * dy);
    }
    return true;
}

void vn_aug_affine(vn_pix src, vn_pix dst, const double a[6], vn_interp interp,
                   const uint8_t fill[3])
{
    const int c = src.channels;
    for (int y = 0; y < dst.height; y++) {
        uint8_t *o = dst.data + (size_t)y * dst.width * c;
        double yin = y + 0.5;
        for (int x = 0; x < dst.width; x++, o += c) {
            double xin = x + 0.5;
            double xx = a[0] * xin + a[1] * yin + a[2];
            double yy = a[3] * xin + a[4] * yin + a[5];
            bool ok = interp == VN_INTERP_BICUBIC ? bicubic_at(src, xx, yy, o)
                                                  : bilinear_at(src, xx, yy, o);
            if (!ok) memcpy(o, fill, (size_t)c);
        }
    }
}

/* Python's round(x, 15): the decimal string correctly rounded to 15 places, read back
 * (glibc's printf and strtod are exact, as Python's dtoa). */
static double round15(double x)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.15f", x);
    return strtod(buf, NULL);
}

void vn_aug_rotate(vn_pix src, vn_pix dst, double degrees, vn_interp interp,
                   const uint8_t fill[3])
{
    /* angle % 360.0 with Python's sign rule. */
    double angle = fmod(degrees, 360.0);
    if (angle != 0 && (angle < 0) != (360.0 < 0)) angle += 360.0;
    const size_t bytes = (size_t)src.width * src.height * src.channels;
    if (angle == 0) {
        memcpy(dst.data, src.data, bytes);
        return;
    }
    /* Pillow's fast paths for 180 (and 90 / 270 on squares) never occur for |angle| <= 30
     * in RandAugment; they are exact transposes and are taken here as well. */
    const int w = src.width, h = src.height;
    if (angle == 180.0 || ((angle == 90.0 || angle == 270.0) && w == h)) {
        const int c = src.channels;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int sx, sy;
                if (angle == 180.0) sx = w - 1 - x, sy = h - 1 - y;
                else if (angle == 90.0) sx = w - 1 - y, sy = x;
                else sx = y, sy = h - 1 - x;
                memcpy(dst.data + ((size_t)y * w + x) * c, src.data + ((size_t)sy * w + sx) * c,
                       (size_t)c);
            }
        return;
    }
    double rad = -(angle * (M_PI / 180.0));
    double m[6] = {round15(cos(rad)), round15(sin(rad)), 0.0,
                   round15(-sin(rad)), round15(cos(rad)), 0.0};
    double cx = w / 2.0, cy = h / 2.0;
    double tx = -cx - 0.0, ty = -cy - 0.0;
    m[2] = m[0] * tx + m[1] * ty + m[2];
    m[5] = m[3] * tx + m[4] * ty + m[5];
    m[2] += cx;
    m[5] += cy;
    vn_aug_affine(src, dst, m, interp, fill);
}
