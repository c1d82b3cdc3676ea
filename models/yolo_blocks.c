/* YOLO11's blocks (Ultralytics 8.3: Conv, DWConv, Bottleneck, C3k, C3k2, SPPF, Attention,
 * PSABlock, C2PSA and one level of Detect) on NHWC activations. Module sizes and names
 * follow ultralytics/nn/modules/{conv,block,head}.py; NCHW's torch.cat / chunk / split over
 * dim 1 are the last dim here. Each forward releases its intermediates after their last
 * use (vn_release), so backward keeps only what the ops declared. */
#include "models/yolo_blocks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX_MAX 160

static const char *sub(char *buf, const char *prefix, const char *name)
{
    snprintf(buf, PREFIX_MAX, "%s%s.", prefix, name);
    return buf;
}

static const char *subi(char *buf, const char *prefix, const char *name, int i)
{
    snprintf(buf, PREFIX_MAX, "%s%s.%d.", prefix, name, i);
    return buf;
}

/* ---- Conv ------------------------------------------------------------------------------ */

int vn__yconv_init(vn__yconv *c, int c1, int c2, int k, int s, int g, bool act)
{
    memset(c, 0, sizeof *c);
    int rc = vn_conv2d_layer_init(&c->conv, c1, c2, k, k, VN_CONV(s, k / 2, g), false);
    if (rc == VN_OK) rc = vn_bn_layer_init(&c->bn, c2, VN_YOLO_BN_EPS);
    c->bn.momentum = VN_YOLO_BN_MOMENTUM;
    c->act = act;
    return rc;
}

void vn__yconv_free(vn__yconv *c)
{
    vn_conv2d_layer_free(&c->conv);
    vn_bn_layer_free(&c->bn);
}

int vn__yconv_register(vn__yconv *c, vn_state_list *l, const char *prefix)
{
    char p[PREFIX_MAX];
    int rc = vn_conv2d_layer_register(&c->conv, l, sub(p, prefix, "conv"));
    if (rc == VN_OK) rc = vn_bn_layer_register(&c->bn, l, sub(p, prefix, "bn"));
    return rc;
}

vn_tensor *vn__yconv_forward(vn_ctx *ctx, vn__yconv *c, vn_tensor *x, bool training)
{
    vn_tensor *y = vn_conv2d_layer_forward(ctx, &c->conv, x);
    vn_tensor *z = vn_bn_layer_forward(ctx, &c->bn, y, training);
    vn_release(ctx, y);
    if (!c->act) return z;
    vn_tensor *a = vn_silu(ctx, z);
    vn_release(ctx, z);
    return a;
}

void vn__yolo_conv_reset(vn_conv2d_layer *c, vn_rng *rng)
{
    vn_tensor *w = c->weight;
    float bound = 1.0f / sqrtf((float)(w->shape[1] * w->shape[2] * w->shape[3]));
    for (int64_t i = 0; i < w->numel; i++) w->data[i] = bound * (2.0f * vn_rng_uniform(rng) - 1.0f);
    if (c->bias)
        for (int64_t i = 0; i < c->bias->numel; i++)
            c->bias->data[i] = bound * (2.0f * vn_rng_uniform(rng) - 1.0f);
}

/* ---- Bottleneck and C3k ------------------------------------------------------------------ */

static int bottleneck_init(vn__ybottleneck *b, int c1, int c2, int k1, int k2, float e)
{
    memset(b, 0, sizeof *b);
    int c_ = (int)(c2 * e);
    int rc = vn__yconv_init(&b->cv1, c1, c_, k1, 1, 1, true);
    if (rc == VN_OK) rc = vn__yconv_init(&b->cv2, c_, c2, k2, 1, 1, true);
    b->add = c1 == c2; /* shortcut is always True in YOLO11's C3k2 and C3k */
    return rc;
}

static void bottleneck_free(vn__ybottleneck *b)
{
    vn__yconv_free(&b->cv1);
    vn__yconv_free(&b->cv2);
}

static int bottleneck_register(vn__ybottleneck *b, vn_state_list *l, const char *prefix)
{
    char p[PREFIX_MAX];
    int rc = vn__yconv_register(&b->cv1, l, sub(p, prefix, "cv1"));
    if (rc == VN_OK) rc = vn__yconv_register(&b->cv2, l, sub(p, prefix, "cv2"));
    return rc;
}

static vn_tensor *bottleneck_forward(vn_ctx *ctx, vn__ybottleneck *b, vn_tensor *x, bool training)
{
    vn_tensor *h = vn__yconv_forward(ctx, &b->cv1, x, training);
    vn_tensor *y = vn__yconv_forward(ctx, &b->cv2, h, training);
    vn_release(ctx, h);
    if (!b->add) return y;
    vn_tensor *s = vn_add(ctx, x, y);
    vn_release(ctx, y);
    return s;
}

static int c3k_init(vn__yc3k *b, int c1, int c2, int n, float e, int k)
{
    memset(b, 0, sizeof *b);
    int c_ = (int)(c2 * e);
    int rc = vn__yconv_init(&b->cv1, c1, c_, 1, 1, 1, true);
    if (rc == VN_OK) rc = vn__yconv_init(&b->cv2, c1, c_, 1, 1, 1, true);
    if (rc == VN_OK) rc = vn__yconv_init(&b->cv3, 2 * c_, c2, 1, 1, 1, true);
    if (rc == VN_OK && !(b->m = calloc((size_t)n, sizeof *b->m))) rc = VN_ERR_NOMEM;
    for (int i = 0; i < n && rc == VN_OK; i++) {
        rc = bottleneck_init(&b->m[i], c_, c_, k, k, 1.0f);
        b->n = i + 1;
    }
    return rc;
}

static void c3k_free(vn__yc3k *b)
{
    vn__yconv_free(&b->cv1);
    vn__yconv_free(&b->cv2);
    vn__yconv_free(&b->cv3);
    for (int i = 0; i < b->n; i++) bottleneck_free(&b->m[i]);
    free(b->m);
    memset(b, 0, sizeof *b);
}

static int c3k_register(vn__yc3k *b, vn_state_list *l, const char *prefix)
{
    char p[PREFIX_MAX];
    int rc = vn__yconv_register(&b->cv1, l, sub(p, prefix, "cv1"));
    if (rc == VN_OK) rc = vn__yconv_register(&b->cv2, l, sub(p, prefix, "cv2"));
    if (rc == VN_OK) rc = vn__yconv_register(&b->cv3, l, sub(p, prefix, "cv3"));
    for (int i = 0; i < b->n && rc == VN_OK; i++)
        rc = bottleneck_register(&b->m[i], l, subi(p, prefix, "m", i));
    return rc;
}

static vn_tensor *c3k_forward(vn_ctx *ctx, vn__yc3k *b, vn_tensor *x, bool training)
{
    vn_tensor *a = vn__yconv_forward(ctx, &b->cv1, x, training);
    for (int i = 0; i < b->n; i++) {
        vn_tensor *next = bottleneck_forward(ctx, &b->m[i], a, training);
        vn_release(ctx, a);
        a = next;
    }
    vn_tensor *c = vn__yconv_forward(ctx, &b->cv2, x, training);
    vn_tensor *cat = vn_concat(ctx, 2, (vn_tensor *[]){a, c});
    vn_release(ctx, a);
    vn_release(ctx, c);
    vn_tensor *y = vn__yconv_forward(ctx, &b->cv3, cat, training);
    vn_release(ctx, cat);
    return y;
}

/* ---- C3k2 ---------------------------------------------------------------------------- */

int vn__yc3k2_init(vn__yc3k2 *b, int c1, int c2, int n, bool c3k, float e)
{
    memset(b, 0, sizeof *b);
    b->c = (int)(c2 * e);
    b->c3k = c3k;
    int rc = vn__yconv_init(&b->cv1, c1, 2 * b->c, 1, 1, 1, true);
    if (rc == VN_OK) rc = vn__yconv_init(&b->cv2, (2 + n) * b->c, c2, 1, 1, 1, true);
    if (rc == VN_OK && c3k && !(b->k = calloc((size_t)n, sizeof *b->k))) rc = VN_ERR_NOMEM;
    if (rc == VN_OK && !c3k && !(b->b = calloc((size_t)n, sizeof *b->b))) rc = VN_ERR_NOMEM;
    for (int i = 0; i < n && rc == VN_OK; i++) {
        rc = c3k ? c3k_init(&b->k[i], b->c, b->c, 2, 0.5f, 3)
                 : bottleneck_init(&b->b[i], b->c, b->c, 3, 3, 0.5f);
        b->n = i + 1;
    }
    return rc;
}

void vn__yc3k2_free(vn__yc3k2 *b)
{
    vn__yconv_free(&b->cv1);
    vn__yconv_free(&b->cv2);
    for (int i = 0; i < b->n; i++) {
        if (b->k) c3k_free(&b->k[i]);
        if (b->b) bottleneck_free(&b->b[i]);
    }
    free(b->k);
    free(b->b);
    memset(b, 0, sizeof *b);
}

int vn__yc3k2_register(vn__yc3k2 *b, vn_state_list *l, const char *prefix)
{
    char p[PREFIX_MAX];
    int rc = vn__yconv_register(&b->cv1, l, sub(p, prefix, "cv1"));
    if (rc == VN_OK) rc = vn__yconv_register(&b->cv2, l, sub(p, prefix, "cv2"));
    for (int i = 0; i < b->n && rc == VN_OK; i++) {
        subi(p, prefix, "m", i);
        rc = b->c3k ? c3k_register(&b->k[i], l, p) : bottleneck_register(&b->b[i], l, p);
    }
    return rc;
}

vn_tensor *vn__yc3k2_forward(vn_ctx *ctx, vn__yc3k2 *b, vn_tensor *x, bool training)
{
    enum { MAX_PIECES = 64 };
    if (b->n + 2 > MAX_PIECES)
        return vn_ctx_fail(ctx, VN_ERR_UNSUPPORTED, "C3k2: %d blocks (at most %d)", b->n,
                           MAX_PIECES - 2);
    vn_tensor *y[MAX_PIECES];
    vn_tensor *t = vn__yconv_forward(ctx, &b->cv1, x, training);
    vn_split(ctx, t, 2, (int64_t[]){b->c, b->c}, y);
    vn_release(ctx, t);
    for (int i = 0; i < b->n; i++)
        y[2 + i] = b->c3k ? c3k_forward(ctx, &b->k[i], y[1 + i], training)
                          : bottleneck_forward(ctx, &b->b[i], y[1 + i], training);
    vn_tensor *cat = vn_concat(ctx, 2 + b->n, y);
    for (int i = 0; i < 2 + b->n; i++) vn_release(ctx, y[i]);
    vn_tensor *out = vn__yconv_forward(ctx, &b->cv2, cat, training);
    vn_release(ctx, cat);
    return out;
}

/* ---- SPPF ---------------------------------------------------------------------------- */

int vn__ysppf_init(vn__ysppf *b, int c1, int c2, int k)
{
    memset(b, 0, sizeof *b);
    b->k = k;
    int rc = vn__yconv_init(&b->cv1, c1, c1 / 2, 1, 1, 1, true);
    if (rc == VN_OK) rc = vn__yconv_init(&b->cv2, c1 / 2 * 4, c2, 1, 1, 1, true);
    return rc;
}

void vn__ysppf_free(vn__ysppf *b)
{
    vn__yconv_free(&b->cv1);
    vn__yconv_free(&b->cv2);
}

int vn__ysppf_register(vn__ysppf *b, vn_state_list *l, const char *prefix)
{
    char p[PREFIX_MAX];
    int rc = vn__yconv_register(&b->cv1, l, sub(p, prefix, "cv1"));
    if (rc == VN_OK) rc = vn__yconv_register(&b->cv2, l, sub(p, prefix, "cv2"));
    return rc;
}

vn_tensor *vn__ysppf_forward(vn_ctx *ctx, vn__ysppf *b, vn_tensor *x, bool training)
{
    vn_tensor *y[4];
    y[0] = vn__yconv_forward(ctx, &b->cv1, x, training);
    for (int i = 1; i < 4; i++) y[i] = vn_max_pool2d_ex(ctx, y[i - 1], b->k, 1, b->k / 2);
    vn_tensor *cat = vn_concat(ctx, 4, y);
    for (int i = 0; i < 4; i++) vn_release(ctx, y[i]);
    vn_tensor *out = vn__yconv_forward(ctx, &b->cv2, cat, training);
    vn_release(ctx, cat);
    return out;
}
