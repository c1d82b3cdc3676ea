/* YOLO11's attention block (Attention, PSABlock, C2PSA) and one level of the Detect head,
 * on NHWC activations (Ultralytics 8.3, nn/modules/block.py and head.py).
 *
 * Attention in NHWC: qkv is [B, H, W, heads * (2 key_dim + head_dim)], channel
 * head * (2 key_dim + head_dim) + j, which is Ultralytics' view(B, heads, 2 key_dim +
 * head_dim, N). A permute to [B, heads, N, .] makes each head a batch entry of bmm; the
 * attention output and v go back to [B, H, W, heads * head_dim] by the inverse permute,
 * matching view(B, C, H, W) of NCHW (channel = head * head_dim + d). */
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

/* ---- PSABlock ------------------------------------------------------------------------- */

static int psa_init(vn__ypsa *b, int c, int heads)
{
    memset(b, 0, sizeof *b);
    b->c = c;
    b->heads = heads;
    b->head_dim = c / heads;
    b->key_dim = (int)(b->head_dim * 0.5f);
    int h = c + 2 * b->key_dim * heads;
    int rc = vn__yconv_init(&b->qkv, c, h, 1, 1, 1, false);
    if (rc == VN_OK) rc = vn__yconv_init(&b->proj, c, c, 1, 1, 1, false);
    if (rc == VN_OK) rc = vn__yconv_init(&b->pe, c, c, 3, 1, c, false);
    if (rc == VN_OK) rc = vn__yconv_init(&b->ffn0, c, 2 * c, 1, 1, 1, true);
    if (rc == VN_OK) rc = vn__yconv_init(&b->ffn1, 2 * c, c, 1, 1, 1, false);
    return rc;
}

static void psa_free(vn__ypsa *b)
{
    vn__yconv_free(&b->qkv);
    vn__yconv_free(&b->proj);
    vn__yconv_free(&b->pe);
    vn__yconv_free(&b->ffn0);
    vn__yconv_free(&b->ffn1);
}

static int psa_register(vn__ypsa *b, vn_state_list *l, const char *prefix)
{
    char p[PREFIX_MAX];
    int rc = vn__yconv_register(&b->qkv, l, sub(p, prefix, "attn.qkv"));
    if (rc == VN_OK) rc = vn__yconv_register(&b->proj, l, sub(p, prefix, "attn.proj"));
    if (rc == VN_OK) rc = vn__yconv_register(&b->pe, l, sub(p, prefix, "attn.pe"));
    if (rc == VN_OK) rc = vn__yconv_register(&b->ffn0, l, sub(p, prefix, "ffn.0"));
    if (rc == VN_OK) rc = vn__yconv_register(&b->ffn1, l, sub(p, prefix, "ffn.1"));
    return rc;
}

/* [B*heads, N, d] -> [B, H, W, heads*d]. */
static vn_tensor *heads_to_image(vn_ctx *ctx, vn_tensor *t, const int64_t *img, int heads)
{
    int64_t d = t ? t->shape[2] : 0;
    vn_tensor *r = vn_reshape(ctx, t, 4, (int64_t[]){img[0], heads, img[1] * img[2], d});
    vn_tensor *p = vn_permute(ctx, r, (int[]){0, 2, 1, 3});
    return vn_reshape(ctx, p, 4, (int64_t[]){img[0], img[1], img[2], heads * d});
}

static vn_tensor *attention_forward(vn_ctx *ctx, vn__ypsa *b, vn_tensor *x, bool training)
{
    if (!x) return NULL;
    const int64_t img[3] = {x->shape[0], x->shape[1], x->shape[2]}, n = img[1] * img[2];
    const int64_t per = 2 * b->key_dim + b->head_dim;
    vn_tensor *qkv = vn__yconv_forward(ctx, &b->qkv, x, training);
    vn_tensor *r = vn_reshape(ctx, qkv, 4, (int64_t[]){img[0], n, b->heads, per});
    vn_tensor *hp = vn_permute(ctx, r, (int[]){0, 2, 1, 3});
    vn_release(ctx, qkv);
    vn_tensor *flat = vn_reshape(ctx, hp, 3, (int64_t[]){img[0] * b->heads, n, per});
    vn_tensor *q[3];
    vn_split(ctx, flat, 3, (int64_t[]){b->key_dim, b->key_dim, b->head_dim}, q);
    vn_release(ctx, hp);
    vn_tensor *logits = vn_bmm(ctx, q[0], q[1], false, true, 1.0f / sqrtf((float)b->key_dim));
    vn_release(ctx, q[0]);
    vn_release(ctx, q[1]);
    vn_tensor *attn = vn_softmax(ctx, logits);
    vn_release(ctx, logits);
    vn_tensor *o = vn_bmm(ctx, attn, q[2], false, false, 1.0f);
    vn_release(ctx, attn);
    vn_tensor *oi = heads_to_image(ctx, o, img, b->heads);
    vn_tensor *vi = heads_to_image(ctx, q[2], img, b->heads);
    vn_release(ctx, o);
    vn_release(ctx, q[2]);
    vn_tensor *pe = vn__yconv_forward(ctx, &b->pe, vi, training);
    vn_release(ctx, vi);
    vn_tensor *s = vn_add(ctx, oi, pe);
    vn_release(ctx, oi);
    vn_release(ctx, pe);
    vn_tensor *y = vn__yconv_forward(ctx, &b->proj, s, training);
    vn_release(ctx, s);
    return y;
}

static vn_tensor *psa_forward(vn_ctx *ctx, vn__ypsa *b, vn_tensor *x, bool training)
{
    vn_tensor *a = attention_forward(ctx, b, x, training);
    vn_tensor *x1 = vn_add(ctx, x, a);
    vn_release(ctx, a);
    vn_tensor *f0 = vn__yconv_forward(ctx, &b->ffn0, x1, training);
    vn_tensor *f1 = vn__yconv_forward(ctx, &b->ffn1, f0, training);
    vn_release(ctx, f0);
    vn_tensor *y = vn_add(ctx, x1, f1);
    vn_release(ctx, x1);
    vn_release(ctx, f1);
    return y;
}

/* ---- C2PSA ---------------------------------------------------------------------------- */

int vn__yc2psa_init(vn__yc2psa *b, int c1, int n, float e)
{
    memset(b, 0, sizeof *b);
    b->c = (int)(c1 * e);
    int rc = vn__yconv_init(&b->cv1, c1, 2 * b->c, 1, 1, 1, true);
    if (rc == VN_OK) rc = vn__yconv_init(&b->cv2, 2 * b->c, c1, 1, 1, 1, true);
    if (rc == VN_OK && !(b->m = calloc((size_t)n, sizeof *b->m))) rc = VN_ERR_NOMEM;
    for (int i = 0; i < n && rc == VN_OK; i++) {
        rc = psa_init(&b->m[i], b->c, b->c / 64);
        b->n = i + 1;
    }
    return rc;
}

void vn__yc2psa_free(vn__yc2psa *b)
{
    vn__yconv_free(&b->cv1);
    vn__yconv_free(&b->cv2);
    for (int i = 0; i < b->n; i++) psa_free(&b->m[i]);
    free(b->m);
    memset(b, 0, sizeof *b);
}

int vn__yc2psa_register(vn__yc2psa *b, vn_state_list *l, const char *prefix)
{
    char p[PREFIX_MAX];
    int rc = vn__yconv_register(&b->cv1, l, sub(p, prefix, "cv1"));
    if (rc == VN_OK) rc = vn__yconv_register(&b->cv2, l, sub(p, prefix, "cv2"));
    for (int i = 0; i < b->n && rc == VN_OK; i++) {
        snprintf(p, sizeof p, "%sm.%d.", prefix, i);
        rc = psa_register(&b->m[i], l, p);
    }
    return rc;
}

vn_tensor *vn__yc2psa_forward(vn_ctx *ctx, vn__yc2psa *b, vn_tensor *x, bool training)
{
    vn_tensor *t = vn__yconv_forward(ctx, &b->cv1, x, training);
    vn_tensor *ab[2];
    vn_split(ctx, t, 2, (int64_t[]){b->c, b->c}, ab);
    vn_release(ctx, t);
    vn_tensor *m = ab[1];
    for (int i = 0; i < b->n; i++) {
        vn_tensor *next = psa_forward(ctx, &b->m[i], m, training);
        vn_release(ctx, m);
        m = next;
    }
    vn_tensor *cat = vn_concat(ctx, 2, (vn_tensor *[]){ab[0], m});
    vn_release(ctx, ab[0]);
    vn_release(ctx, m);
    vn_tensor *y = vn__yconv_forward(ctx, &b->cv2, cat, training);
    vn_release(ctx, cat);
    return y;
}

/* ---- Detect, one level ---------------------------------------------------------------- */

int vn__ydetect_level_init(vn__ydetect_level *d, int ch, int c2, int c3, int nc, int reg_max)
{
    memset(d, 0, sizeof *d);
    int rc = vn__yconv_init(&d->box0, ch, c2, 3, 1, 1, true);
    if (rc == VN_OK) rc = vn__yconv_init(&d->box1, c2, c2, 3, 1, 1, true);
    if (rc == VN_OK)
        rc = vn_conv2d_layer_init(&d->box2, c2, 4 * reg_max, 1, 1, VN_CONV(1, 0, 1), true);
    if (rc == VN_OK) rc = vn__yconv_init(&d->cls0_dw, ch, ch, 3, 1, ch, true);
    if (rc == VN_OK) rc = vn__yconv_init(&d->cls0_pw, ch, c3, 1, 1, 1, true);
    if (rc == VN_OK) rc = vn__yconv_init(&d->cls1_dw, c3, c3, 3, 1, c3, true);
    if (rc == VN_OK) rc = vn__yconv_init(&d->cls1_pw, c3, c3, 1, 1, 1, true);
    if (rc == VN_OK) rc = vn_conv2d_layer_init(&d->cls2, c3, nc, 1, 1, VN_CONV(1, 0, 1), true);
    return rc;
}

void vn__ydetect_level_free(vn__ydetect_level *d)
{
    vn__yconv_free(&d->box0);
    vn__yconv_free(&d->box1);
    vn_conv2d_layer_free(&d->box2);
    vn__yconv_free(&d->cls0_dw);
    vn__yconv_free(&d->cls0_pw);
    vn__yconv_free(&d->cls1_dw);
    vn__yconv_free(&d->cls1_pw);
    vn_conv2d_layer_free(&d->cls2);
}

int vn__ydetect_level_register(vn__ydetect_level *d, vn_state_list *l, const char *prefix, int i)
{
    char p[PREFIX_MAX];
#define P(fmt) (snprintf(p, sizeof p, "%s" fmt, prefix, i), p)
    int rc = vn__yconv_register(&d->box0, l, P("cv2.%d.0."));
    if (rc == VN_OK) rc = vn__yconv_register(&d->box1, l, P("cv2.%d.1."));
    if (rc == VN_OK) rc = vn_conv2d_layer_register(&d->box2, l, P("cv2.%d.2."));
    if (rc == VN_OK) rc = vn__yconv_register(&d->cls0_dw, l, P("cv3.%d.0.0."));
    if (rc == VN_OK) rc = vn__yconv_register(&d->cls0_pw, l, P("cv3.%d.0.1."));
    if (rc == VN_OK) rc = vn__yconv_register(&d->cls1_dw, l, P("cv3.%d.1.0."));
    if (rc == VN_OK) rc = vn__yconv_register(&d->cls1_pw, l, P("cv3.%d.1.1."));
    if (rc == VN_OK) rc = vn_conv2d_layer_register(&d->cls2, l, P("cv3.%d.2."));
#undef P
    return rc;
}

vn_tensor *vn__ydetect_level_forward(vn_ctx *ctx, vn__ydetect_level *d, vn_tensor *x,
                                     bool training)
{
    vn_tensor *b0 = vn__yconv_forward(ctx, &d->box0, x, training);
    vn_tensor *b1 = vn__yconv_forward(ctx, &d->box1, b0, training);
    vn_release(ctx, b0);
    vn_tensor *box = vn_conv2d_layer_forward(ctx, &d->box2, b1);
    vn_release(ctx, b1);
    vn__yconv *cls[4] = {&d->cls0_dw, &d->cls0_pw, &d->cls1_dw, &d->cls1_pw};
    vn_tensor *h = x;
    for (int i = 0; i < 4; i++) {
        vn_tensor *next = vn__yconv_forward(ctx, cls[i], h, training);
        if (h != x) vn_release(ctx, h);
        h = next;
    }
    vn_tensor *logits = vn_conv2d_layer_forward(ctx, &d->cls2, h);
    vn_release(ctx, h);
    vn_tensor *y = vn_concat(ctx, 2, (vn_tensor *[]){box, logits});
    vn_release(ctx, box);
    vn_release(ctx, logits);
    return y;
}
