/* Pillow-compatible resampling of 8-bit images (Resample.c in Pillow 9.x: ImagingResample
 * with the BILINEAR and BICUBIC filters, 8 bits per channel). */
#include "data/vn_transform.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

static double bilinear_filter(double x)
{
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

static double bicubic_filter(double x)
{
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static inline uint8_t clip8(int32_t v)
{
    if (v >= (1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* Coefficients of output pixels [first, first + count) of a resize from in_size to out_size:
 * bounds[2i] = first input pixel, bounds[2i + 1] = number of taps, k[i * ksize + t] the
 * fixed-point weights. Mirrors precompute_coeffs + normalize_coeffs_8bpc. */
typedef struct coeffs {
    int ksize;
    int *bounds;
    int32_t *k;
} coeffs;

static int ksize_for(int in_size, int out_size, vn_interp interp)
{
    double support = interp == VN_INTERP_BICUBIC ? 2.0 : 1.0;
    double scale = (double)in_size / out_size;
    if (scale < 1.0) scale = 1.0;
    return (int)ceil(support * scale) * 2 + 1;
}

static void precompute(int in_size, int out_size, int first, int count, vn_interp interp,
                       coeffs *c, double *tmp)
{
    double (*filter)(double) = interp == VN_INTERP_BICUBIC ? bicubic_filter : bilinear_filter;
    double fsupport = interp == VN_INTERP_BICUBIC ? 2.0 : 1.0;
    /* Pillow computes the box width in float; for integer sizes below 2^24 this is exact. */
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = fsupport * filterscale;
    int ksize = c->ksize;
    for (int i = 0; i < count; i++) {
        int xx = first + i;
        double center = (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double w = filter((x + xmin - center + 0.5) * ss);
            tmp[x] = w;
            ww += w;
        }
        int32_t *k = c->k + (size_t)i * ksize;
        for (int x = 0; x < ksize; x++) {
            double w = x < xmax ? (ww != 0.0 ? tmp[x] / ww : tmp[x]) : 0.0;
            k[x] = w < 0 ? (int32_t)(-0.5 + w * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + w * (1 << PRECISION_BITS));
        }
        c->bounds[2 * i] = xmin;
        c->bounds[2 * i + 1] = xmax;
    }
}

/* One output row of the horizontal pass: `count` pixels from an input row. */
static void horiz_row(uint8_t *out, const uint8_t *in, int channels, int count, const coeffs *c)
{
    const int ksize = c->ksize;
    if (channels == 3) {
        for (int i = 0; i < count; i++) {
            const int32_t *k = c->k + (size_t)i * ksize;
            const uint8_t *p = in + (size_t)c->bounds[2 * i] * 3;
            int n = c->bounds[2 * i + 1];
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < n; x++) {
                s0 += p[3 * x] * k[x];
                s1 += p[3 * x + 1] * k[x];
                s2 += p[3 * x + 2] * k[x];
            }
            out[3 * i] = clip8(s0);
            out[3 * i + 1] = clip8(s1);
            out[3 * i + 2] = clip8(s2);
        }
    } else {
        for (int i = 0; i < count; i++) {
            const int32_t *k = c->k + (size_t)i * ksize;
            const uint8_t *p = in + c->bounds[2 * i];
            int n = c->bounds[2 * i + 1];
            int32_t s0 = 1 << (PRECISION_BITS - 1);
            for (int x = 0; x < n; x++) s0 += p[x] * k[x];
            out[i] = clip8(s0);
        }
    }
}

/* One output row of the vertical pass: row_bytes samples from n input rows. Rows are
 * accumulated whole into acc, so the inner loop runs along contiguous bytes and vectorises;
 * the sums are the same integers as Pillow's per-pixel loop (addition order does not matter
 * in exact integer arithmetic). */
static void vert_row(uint8_t *out, const uint8_t *in, size_t stride, size_t row_bytes,
                     const int32_t *k, int n, int32_t *restrict acc)
{
    for (size_t x = 0; x < row_bytes; x++) acc[x] = 1 << (PRECISION_BITS - 1);
    for (int y = 0; y < n; y++) {
        const uint8_t *restrict p = in + (size_t)y * stride;
        const int32_t ky = k[y];
        for (size_t x = 0; x < row_bytes; x++) acc[x] += p[x] * ky;
    }
    for (size_t x = 0; x < row_bytes; x++) out[x] = clip8(acc[x]);
}

void vn_tf_scratch_free(vn_tf_scratch *s)
{
    if (!s) return;
    free(s->buf);
    free(s->pix);
    memset(s, 0, sizeof *s);
}

static void *scratch_get(vn_tf_scratch *s, size_t bytes)
{
    if (s->cap < bytes) {
        size_t n = bytes + bytes / 4 + 256;
        void *p = realloc(s->buf, n);
        if (!p) return NULL;
        s->buf = p;
        s->cap = n;
    }
    return s->buf;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

int vn_resize(const uint8_t *src, int src_w, int src_h, int channels, const vn_box *src_box,
              int out_w, int out_h, const vn_box *out_win, vn_interp interp, uint8_t *dst,
              vn_tf_scratch *scratch, vn_error *err)
{
    vn_box sb = src_box ? *src_box : (vn_box){0, 0, src_h, src_w};
    vn_box ow = out_win ? *out_win : (vn_box){0, 0, out_h, out_w};
    if ((channels != 1 && channels != 3) || sb.top < 0 || sb.left < 0 || sb.height <= 0 ||
        sb.width <= 0 || sb.top + sb.height > src_h || sb.left + sb.width > src_w ||
        out_w <= 0 || out_h <= 0 || ow.top < 0 || ow.left < 0 || ow.height <= 0 ||
        ow.width <= 0 || ow.top + ow.height > out_h || ow.left + ow.width > out_w)
        return vn_error_set(err, VN_ERR_INVALID,
                            "resize: bad geometry (source %dx%dx%d, crop %d,%d %dx%d, output "
                            "%dx%d, window %d,%d %dx%d)",
                            src_w, src_h, channels, sb.left, sb.top, sb.width, sb.height, out_w,
                            out_h, ow.left, ow.top, ow.width, ow.height);
    vn_tf_scratch local = {0};
    if (!scratch) scratch = &local;

    bool need_h = out_w != sb.width, need_v = out_h != sb.height;
    int kh = ksize_for(sb.width, out_w, interp), kv = ksize_for(sb.height, out_h, interp);
    int kmax = kh > kv ? kh : kv;
    size_t src_stride = (size_t)src_w * channels;
    size_t row_bytes = (size_t)ow.width * channels;
    /* Rows of the crop the window's vertical taps read (all of them when no vertical pass). */
    size_t b_hb = align64(sizeof(int) * 2 * (size_t)ow.width);
    size_t b_hk = align64(sizeof(int32_t) * (size_t)kh * ow.width);
    size_t b_vb = align64(sizeof(int) * 2 * (size_t)ow.height);
    size_t b_vk = align64(sizeof(int32_t) * (size_t)kv * ow.height);
    size_t b_tmp = align64(sizeof(double) * (size_t)kmax);
    size_t b_acc = align64(sizeof(int32_t) * row_bytes);
    size_t head = b_hb + b_hk + b_vb + b_vk + b_tmp + b_acc;
    size_t mid_rows = need_v ? (size_t)sb.height : 0; /* upper bound; refined below */
    uint8_t *mem = scratch_get(scratch, head + mid_rows * row_bytes + 64);
    if (!mem) {
        vn_tf_scratch_free(&local);
        return vn_error_set(err, VN_ERR_NOMEM, "resize: out of memory");
    }
    coeffs ch = {kh, (int *)mem, (int32_t *)(mem + b_hb)};
    coeffs cv = {kv, (int *)(mem + b_hb + b_hk), (int32_t *)(mem + b_hb + b_hk + b_vb)};
    double *tmp = (double *)(mem + b_hb + b_hk + b_vb + b_vk);
    int32_t *acc = (int32_t *)(mem + b_hb + b_hk + b_vb + b_vk + b_tmp);
    uint8_t *mid = mem + head;

    if (need_h) precompute(sb.width, out_w, ow.left, ow.width, interp, &ch, tmp);
    int y_first = ow.top, y_last = ow.top + ow.height; /* crop rows feeding the window */
    if (need_v) {
        precompute(sb.height, out_h, ow.top, ow.height, interp, &cv, tmp);
        y_first = cv.bounds[0];
        y_last = cv.bounds[2 * (ow.height - 1)] + cv.bounds[2 * (ow.height - 1) + 1];
    }
    /* Horizontal pass (or plain column copy) of the needed rows. */
    uint8_t *hout = need_v ? mid : dst;
    for (int y = y_first; y < y_last; y++) {
        const uint8_t *in = src + (size_t)(sb.top + y) * src_stride + (size_t)sb.left * channels;
        uint8_t *o = hout + (size_t)(y - y_first) * row_bytes;
        if (need_h)
            horiz_row(o, in, channels, ow.width, &ch);
        else
            memcpy(o, in + (size_t)ow.left * channels, row_bytes);
    }
    if (need_v) {
        for (int i = 0; i < ow.height; i++) {
            const uint8_t *in = mid + (size_t)(cv.bounds[2 * i] - y_first) * row_bytes;
            vert_row(dst + (size_t)i * row_bytes, in, row_bytes, row_bytes,
                     cv.k + (size_t)i * kv, cv.bounds[2 * i + 1], acc);
        }
    }
    vn_tf_scratch_free(&local);
    return VN_OK;
}
