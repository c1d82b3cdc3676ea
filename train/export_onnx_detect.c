/* The YOLO11-VanillaNet detector as one ONNX graph (io/vn_onnx.h), in the form of Ultralytics
 * 8.3's export (nn/modules/head.py Detect._inference and decode_bboxes, utils/tal.py
 * make_anchors and dist2bbox): the merged VanillaNet (train/export_onnx.c's nodes), SPPF,
 * C2PSA, the neck and Detect, every Ultralytics Conv as one ONNX Conv with its eval-mode
 * BatchNorm folded in, then SiLU as Sigmoid and Mul; Detect's levels flattened and
 * concatenated, DFL as Reshape, Transpose, Softmax and a 1x1 Conv with weights 0..reg_max-1,
 * dist2bbox against constant anchor centres and strides, sigmoid class scores.
 *
 * Weights are read from the model's state list by their Ultralytics names ("model.{i}...."), so
 * the graph follows the same names as a PyTorch export of the same model: a node's output is
 * named after its module ("model.9.conv", "model.9.act"). */
#include "train/vn_detect.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/vn_layout.h"
#include "io/vn_onnx.h"
#include "train/train_impl.h"

#define NAME_MAX_LEN 192

/* The graph being built; errors stick (rc), so a chain of emits needs one check at its end. */
typedef struct emitter {
    vn_onnx *g;
    const vn_state_list *st;
    vn_error *err;
    int rc;
} emitter;

static const vn_tensor *tensor_of(emitter *e, const char *prefix, const char *leaf)
{
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof name, "%s%s", prefix, leaf);
    const vn_state_item *it = vn_state_find(e->st, name);
    if (it && it->tensor) return it->tensor;
    if (e->rc == VN_OK) e->rc = vn_error_set(e->err, VN_ERR_INVALID, "detector: no tensor '%s'", name);
    return NULL;
}

static bool has_tensor(const emitter *e, const char *prefix, const char *leaf)
{
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof name, "%s%s", prefix, leaf);
    return vn_state_find(e->st, name) != NULL;
}

/* A node over named inputs; returns its output's name ("" after an error). */
static const char *op(emitter *e, const char *type, const char *name, int n_in, const char *const *in,
                      int n_attrs, const vn_onnx_attr *attrs)
{
    if (e->rc == VN_OK) e->rc = vn_onnx_node(e->g, type, name, n_in, in, n_attrs, attrs, e->err);
    return e->rc == VN_OK ? vn_onnx_last(e->g) : "";
}

static const char *op2(emitter *e, const char *type, const char *name, const char *a, const char *b)
{
    return op(e, type, name, 2, (const char *[]){a, b}, 0, NULL);
}

static const char *const_f32(emitter *e, const char *name, int ndim, const int64_t *dims,
                             const float *v)
{
    if (e->rc == VN_OK) e->rc = vn_onnx_const_f32(e->g, name, ndim, dims, v, e->err);
    return name;
}

static const char *const_i64(emitter *e, const char *name, int n, const int64_t *v)
{
    const int64_t dims[1] = {n};
    if (e->rc == VN_OK) e->rc = vn_onnx_const_i64(e->g, name, 1, dims, v, e->err);
    return name;
}

/* Channels [from, to) of x along axis, as Slice with constant bounds. */
static const char *slice(emitter *e, const char *name, const char *x, int axis, int64_t from, int64_t to)
{
    char s[NAME_MAX_LEN], t[NAME_MAX_LEN], a[NAME_MAX_LEN];
    snprintf(s, sizeof s, "%s.starts", name);
    snprintf(t, sizeof t, "%s.ends", name);
    snprintf(a, sizeof a, "%s.axes", name);
    const_i64(e, s, 1, &from);
    const_i64(e, t, 1, &to);
    const_i64(e, a, 1, (const int64_t[]){axis});
    return op(e, "Slice", name, 4, (const char *[]){x, s, t, a}, 0, NULL);
}

static const char *reshape(emitter *e, const char *name, const char *x, int n, const int64_t *shape)
{
    char s[NAME_MAX_LEN];
    snprintf(s, sizeof s, "%s.shape", name);
    const_i64(e, s, n, shape);
    return op2(e, "Reshape", name, x, s);
}

static const char *transpose(emitter *e, const char *name, const char *x, int n, const int64_t *perm)
{
    const vn_onnx_attr a = {.name = "perm", .type = VN_ONNX_ATTR_INTS, .ints = perm, .n = n};
    return op(e, "Transpose", name, 1, &x, 1, &a);
}

static const char *concat(emitter *e, const char *name, int n, const char *const *in, int axis)
{
    const vn_onnx_attr a = {.name = "axis", .type = VN_ONNX_ATTR_INT, .i = axis};
    return op(e, "Concat", name, n, in, 1, &a);
}

static const char *silu(emitter *e, const char *name, const char *x)
{
    char s[NAME_MAX_LEN];
    snprintf(s, sizeof s, "%s.sigmoid", name);
    const char *sig = op(e, "Sigmoid", s, 1, &x, 0, NULL);
    return op2(e, "Mul", name, x, sig);
}

/* An OHWI weight w (folded by bn when given) and its bias as an ONNX Conv over x. */
static const char *conv(emitter *e, const char *name, const char *x, const vn_tensor *w,
                        const vn_tensor *bias, const vn_bn_layer *bn, int stride, int groups)
{
    if (e->rc != VN_OK) return "";
    int64_t o = w->shape[0], kh = w->shape[1], kw = w->shape[2], i = w->shape[3];
    float *ohwi = malloc((size_t)w->numel * sizeof *ohwi), *oihw = malloc((size_t)w->numel * sizeof *oihw);
    float *b = calloc((size_t)o, sizeof *b);
    if (!ohwi || !oihw || !b) {
        e->rc = vn_error_set(e->err, VN_ERR_NOMEM, "out of memory exporting '%s'", name);
    } else {
        memcpy(ohwi, w->data, (size_t)w->numel * sizeof *ohwi);
        if (bias) memcpy(b, bias->data, (size_t)o * sizeof *b);
        if (bn) vn_bn_fold(bn, ohwi, w->numel / o, bias ? bias->data : NULL, b);
        vn_ohwi_to_oihw(oihw, ohwi, o, i, kh, kw);
        e->rc = vn_onnx_from(e->g, x, e->err);
        if (e->rc == VN_OK)
            e->rc = vn_onnx_conv(e->g, name, oihw, b, (int)o, (int)i, (int)kh, (int)kw, stride,
                                 (int)(kh / 2), groups, e->err);
    }
    free(ohwi);
    free(oihw);
    free(b);
    return e->rc == VN_OK ? vn_onnx_last(e->g) : "";
}

/* Ultralytics' Conv at prefix ("model.9."): conv (padding k / 2) + BatchNorm, folded, + SiLU
 * when act. groups 0: a depthwise conv (groups = output channels). */
static const char *yconv(emitter *e, const char *prefix, const char *x, int stride, int groups, bool act)
{
    const vn_tensor *w = tensor_of(e, prefix, "conv.weight");
    vn_bn_layer bn = {.weight = (vn_tensor *)tensor_of(e, prefix, "bn.weight"),
                      .bias = (vn_tensor *)tensor_of(e, prefix, "bn.bias"),
                      .running_mean = (vn_tensor *)tensor_of(e, prefix, "bn.running_mean"),
                      .running_var = (vn_tensor *)tensor_of(e, prefix, "bn.running_var"),
                      .eps = VN_YOLO_BN_EPS};
    if (e->rc != VN_OK) return "";
    bn.channels = (int)w->shape[0];
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof name, "%sconv", prefix);
    const char *y = conv(e, name, x, w, NULL, &bn, stride, groups ? groups : (int)w->shape[0]);
    if (!act) return y;
    snprintf(name, sizeof name, "%sact", prefix);
    return silu(e, name, y);
}

static int64_t out_channels(emitter *e, const char *prefix)
{
    const vn_tensor *w = tensor_of(e, prefix, "conv.weight");
    return w ? w->shape[0] : 0;
}

/* Bottleneck: cv1, cv2 (3x3), + x when its input and output channels agree. */
static const char *bottleneck(emitter *e, const char *prefix, const char *x)
{
    char p[NAME_MAX_LEN], name[NAME_MAX_LEN];
    snprintf(p, sizeof p, "%scv1.", prefix);
    const vn_tensor *w1 = tensor_of(e, p, "conv.weight");
    const char *h = yconv(e, p, x, 1, 1, true);
    snprintf(p, sizeof p, "%scv2.", prefix);
    const char *y = yconv(e, p, h, 1, 1, true);
    if (e->rc != VN_OK || w1->shape[3] != out_channels(e, p)) return y;
    snprintf(name, sizeof name, "%sadd", prefix);
    return op2(e, "Add", name, x, y);
}

/* C3k: cv3(cat(m(cv1(x)), cv2(x))). */
static const char *c3k(emitter *e, const char *prefix, const char *x)
{
    char p[NAME_MAX_LEN];
    snprintf(p, sizeof p, "%scv1.", prefix);
    const char *a = yconv(e, p, x, 1, 1, true);
    for (int i = 0; e->rc == VN_OK; i++) {
        snprintf(p, sizeof p, "%sm.%d.", prefix, i);
        if (!has_tensor(e, p, "cv1.conv.weight")) break;
        a = bottleneck(e, p, a);
    }
    snprintf(p, sizeof p, "%scv2.", prefix);
    const char *c = yconv(e, p, x, 1, 1, true);
    snprintf(p, sizeof p, "%scat", prefix);
    const char *cat = concat(e, p, 2, (const char *[]){a, c}, 1);
    snprintf(p, sizeof p, "%scv3.", prefix);
    return yconv(e, p, cat, 1, 1, true);
}

/* C3k2: cv1 -> two halves; each block (C3k or Bottleneck) on the last piece; cv2 over all. */
static const char *c3k2(emitter *e, const char *prefix, const char *x)
{
    enum { MAX_PIECES = 64 };
    char p[NAME_MAX_LEN];
    snprintf(p, sizeof p, "%scv1.", prefix);
    int64_t c = out_channels(e, p) / 2;
    const char *t = yconv(e, p, x, 1, 1, true), *y[MAX_PIECES];
    snprintf(p, sizeof p, "%ssplit0", prefix);
    y[0] = slice(e, p, t, 1, 0, c);
    snprintf(p, sizeof p, "%ssplit1", prefix);
    y[1] = slice(e, p, t, 1, c, 2 * c);
    int n = 2;
    for (int i = 0; e->rc == VN_OK; i++, n++) {
        snprintf(p, sizeof p, "%sm.%d.", prefix, i);
        bool is_c3k = has_tensor(e, p, "cv3.conv.weight");
        if (!is_c3k && !has_tensor(e, p, "cv1.conv.weight")) break;
        if (n == MAX_PIECES)
            e->rc = vn_error_set(e->err, VN_ERR_UNSUPPORTED, "%s: more than %d blocks", prefix, MAX_PIECES - 2);
        else
            y[n] = is_c3k ? c3k(e, p, y[n - 1]) : bottleneck(e, p, y[n - 1]);
    }
    snprintf(p, sizeof p, "%scat", prefix);
    const char *cat = concat(e, p, n, y, 1);
    snprintf(p, sizeof p, "%scv2.", prefix);
    return yconv(e, p, cat, 1, 1, true);
}

/* SPPF: cv1, three max-pools 5x5 stride 1 padding 2 (Ultralytics' k = 5), cv2 over the four. */
static const char *sppf(emitter *e, const char *prefix, const char *x)
{
    char p[NAME_MAX_LEN];
    snprintf(p, sizeof p, "%scv1.", prefix);
    const char *y[4];
    y[0] = yconv(e, p, x, 1, 1, true);
    const vn_onnx_attr pool[3] = {
        {.name = "kernel_shape", .type = VN_ONNX_ATTR_INTS, .ints = (const int64_t[]){5, 5}, .n = 2},
        {.name = "strides", .type = VN_ONNX_ATTR_INTS, .ints = (const int64_t[]){1, 1}, .n = 2},
        {.name = "pads", .type = VN_ONNX_ATTR_INTS, .ints = (const int64_t[]){2, 2, 2, 2}, .n = 4}};
    for (int i = 1; i < 4; i++) {
        snprintf(p, sizeof p, "%sm.%d", prefix, i - 1);
        y[i] = op(e, "MaxPool", p, 1, &y[i - 1], 3, pool);
    }
    snprintf(p, sizeof p, "%scat", prefix);
    const char *cat = concat(e, p, 4, y, 1);
    snprintf(p, sizeof p, "%scv2.", prefix);
    return yconv(e, p, cat, 1, 1, true);
}

typedef struct attn_dims {
    int64_t heads, key_dim, head_dim, h, w;
} attn_dims;

/* Attention over an h x w map: qkv viewed [B, heads, 2 key_dim + head_dim, N] and split; softmax
 * of q^T k times key_dim^-0.5 over the last axis; v attn^T back to [B, C, h, w] plus pe(v); proj. */
static const char *attention(emitter *e, const char *prefix, const char *x, const attn_dims *d)
{
    char p[NAME_MAX_LEN], q[NAME_MAX_LEN];
    const int64_t n = d->h * d->w, per = 2 * d->key_dim + d->head_dim, c = d->heads * d->head_dim;
    const int64_t swap[4] = {0, 1, 3, 2}, img[4] = {0, c, d->h, d->w};
#define P(s) (snprintf(p, sizeof p, "%s%s", prefix, s), p)
    const char *qkv = yconv(e, P("qkv."), x, 1, 1, false);
    const char *r = reshape(e, P("view"), qkv, 4, (const int64_t[]){0, d->heads, per, n});
    const char *qq = slice(e, P("q"), r, 2, 0, d->key_dim);
    const char *k = slice(e, P("k"), r, 2, d->key_dim, 2 * d->key_dim);
    const char *v = slice(e, P("v"), r, 2, 2 * d->key_dim, per);
    const char *qt = transpose(e, P("q_t"), qq, 4, swap);
    const char *logits = op2(e, "MatMul", P("qk"), qt, k);
    snprintf(q, sizeof q, "%sscale.value", prefix);
    float scale = 1.0f / sqrtf((float)d->key_dim);
    const_f32(e, q, 0, NULL, &scale);
    const char *scaled = op2(e, "Mul", P("scale"), logits, q);
    const vn_onnx_attr last_axis = {.name = "axis", .type = VN_ONNX_ATTR_INT, .i = -1};
    const char *attn = op(e, "Softmax", P("softmax"), 1, &scaled, 1, &last_axis);
    const char *at = transpose(e, P("attn_t"), attn, 4, swap);
    const char *o = op2(e, "MatMul", P("av"), v, at);
    const char *oi = reshape(e, P("av_image"), o, 4, img);
    const char *vi = reshape(e, P("v_image"), v, 4, img);
    const char *pe = yconv(e, P("pe."), vi, 1, 0, false);
    const char *s = op2(e, "Add", P("add"), oi, pe);
    const char *y = yconv(e, P("proj."), s, 1, 1, false);
#undef P
    return y;
}

/* C2PSA: cv1 -> two halves; PSA blocks (x + attn(x), then + ffn) on the second; cv2 over both. */
static const char *c2psa(emitter *e, const char *prefix, const char *x, const attn_dims *d)
{
    char p[NAME_MAX_LEN], q[NAME_MAX_LEN];
    snprintf(p, sizeof p, "%scv1.", prefix);
    int64_t c = out_channels(e, p) / 2;
    const char *t = yconv(e, p, x, 1, 1, true);
    snprintf(p, sizeof p, "%ssplit0", prefix);
    const char *a = slice(e, p, t, 1, 0, c);
    snprintf(p, sizeof p, "%ssplit1", prefix);
    const char *b = slice(e, p, t, 1, c, 2 * c);
    for (int i = 0; e->rc == VN_OK; i++) {
        snprintf(p, sizeof p, "%sm.%d.", prefix, i);
        if (!has_tensor(e, p, "attn.qkv.conv.weight")) break;
        snprintf(q, sizeof q, "%sattn.", p);
        const char *at = attention(e, q, b, d);
        snprintf(q, sizeof q, "%sadd0", p);
        const char *x1 = op2(e, "Add", q, b, at);
        snprintf(q, sizeof q, "%sffn.0.", p);
        const char *f0 = yconv(e, q, x1, 1, 1, true);
        snprintf(q, sizeof q, "%sffn.1.", p);
        const char *f1 = yconv(e, q, f0, 1, 1, false);
        snprintf(q, sizeof q, "%sadd1", p);
        b = op2(e, "Add", q, x1, f1);
    }
    snprintf(p, sizeof p, "%scat", prefix);
    const char *cat = concat(e, p, 2, (const char *[]){a, b}, 1);
    snprintf(p, sizeof p, "%scv2.", prefix);
    return yconv(e, p, cat, 1, 1, true);
}

/* Nearest 2x upsampling: Resize with scales [1, 1, 2, 2] (PyTorch's nn.Upsample(None, 2)). */
static const char *upsample(emitter *e, const char *name, const char *x)
{
    char s[NAME_MAX_LEN];
    snprintf(s, sizeof s, "%s.scales", name);
    const_f32(e, s, 1, (const int64_t[]){4}, (const float[]){1, 1, 2, 2});
    const vn_onnx_attr a[3] = {
        {.name = "mode", .type = VN_ONNX_ATTR_STRING, .s = "nearest"},
        {.name = "coordinate_transformation_mode", .type = VN_ONNX_ATTR_STRING, .s = "asymmetric"},
        {.name = "nearest_mode", .type = VN_ONNX_ATTR_STRING, .s = "floor"}};
    return op(e, "Resize", name, 3, (const char *[]){x, "", s}, 3, a);
}

/* The neck (layers 1 to 14) from the backbone's P3, P4, P5: out gets layers 8, 11, 14. */
static void neck(emitter *e, const char *const *p, const attn_dims *d, const char **out)
{
    const char *s = sppf(e, "model.1.", p[2]);
    const char *l2 = c2psa(e, "model.2.", s, d);
    const char *u = upsample(e, "model.3", l2);
    const char *l5 = c3k2(e, "model.5.", concat(e, "model.4", 2, (const char *[]){u, p[1]}, 1));
    u = upsample(e, "model.6", l5);
    out[0] = c3k2(e, "model.8.", concat(e, "model.7", 2, (const char *[]){u, p[0]}, 1));
    const char *dn = yconv(e, "model.9.", out[0], 2, 1, true);
    out[1] = c3k2(e, "model.11.", concat(e, "model.10", 2, (const char *[]){dn, l5}, 1));
    dn = yconv(e, "model.12.", out[1], 2, 1, true);
    out[2] = c3k2(e, "model.14.", concat(e, "model.13", 2, (const char *[]){dn, l2}, 1));
}

/* One Detect level: box branch cv2.l, class branch cv3.l, concatenated and flattened to
 * [B, 4 reg_max + nc, h w]. */
static const char *detect_level(emitter *e, int l, const char *x, int64_t no)
{
    char p[NAME_MAX_LEN];
#define P(fmt) (snprintf(p, sizeof p, "model.15." fmt, l), p)
    const char *b = yconv(e, P("cv2.%d.0."), x, 1, 1, true);
    b = yconv(e, P("cv2.%d.1."), b, 1, 1, true);
    P("cv2.%d.2.");
    const vn_tensor *bw = tensor_of(e, p, "weight"), *bb = tensor_of(e, p, "bias");
    b = e->rc == VN_OK ? conv(e, P("cv2.%d.2"), b, bw, bb, NULL, 1, 1) : "";
    const char *c = yconv(e, P("cv3.%d.0.0."), x, 1, 0, true);
    c = yconv(e, P("cv3.%d.0.1."), c, 1, 1, true);
    c = yconv(e, P("cv3.%d.1.0."), c, 1, 0, true);
    c = yconv(e, P("cv3.%d.1.1."), c, 1, 1, true);
    P("cv3.%d.2.");
    const vn_tensor *cw = tensor_of(e, p, "weight"), *cb = tensor_of(e, p, "bias");
    c = e->rc == VN_OK ? conv(e, P("cv3.%d.2"), c, cw, cb, NULL, 1, 1) : "";
    const char *cat = concat(e, P("level%d"), 2, (const char *[]){b, c}, 1);
    const char *y = reshape(e, P("level%d.flat"), cat, 3, (const int64_t[]){0, no, -1});
#undef P
    return y;
}

/* Anchor cell centres [1, 2, A] (x, y in grid units) and strides [1, A] of levels 8, 16, 32
 * at a size x size input, each level row-major (Ultralytics' make_anchors, offset 0.5). */
static int anchors_of(int size, float **xy, float **stride, int64_t *n)
{
    *n = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) *n += (int64_t)(size >> (3 + l)) * (size >> (3 + l));
    *xy = malloc((size_t)(2 * *n) * sizeof **xy);
    *stride = malloc((size_t)*n * sizeof **stride);
    if (!*xy || !*stride) return VN_ERR_NOMEM;
    int64_t a = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        int h = size >> (3 + l);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < h; x++, a++) {
                (*xy)[a] = (float)x + 0.5f;
                (*xy)[*n + a] = (float)y + 0.5f;
                (*stride)[a] = (float)(8 << l);
            }
    }
    return VN_OK;
}

/* DFL: the box logits [B, 4 reg_max, A] -> distances [B, 4, A], the expectation of the bin
 * index under the softmax over each side's reg_max bins (a 1x1 Conv with weights 0..r-1). */
static const char *dfl(emitter *e, const char *box, int r, int64_t n)
{
    const char *v = reshape(e, "model.15.dfl.view", box, 4, (const int64_t[]){0, 4, r, n});
    const char *t = transpose(e, "model.15.dfl.t", v, 4, (const int64_t[]){0, 2, 1, 3});
    const vn_onnx_attr bins = {.name = "axis", .type = VN_ONNX_ATTR_INT, .i = 1};
    const char *s = op(e, "Softmax", "model.15.dfl.softmax", 1, &t, 1, &bins);
    float *w = malloc((size_t)r * sizeof *w);
    if (!w && e->rc == VN_OK) e->rc = vn_error_set(e->err, VN_ERR_NOMEM, "out of memory");
    for (int i = 0; w && i < r; i++) w[i] = (float)i;
    if (e->rc == VN_OK) e->rc = vn_onnx_from(e->g, s, e->err);
    if (e->rc == VN_OK) e->rc = vn_onnx_conv(e->g, "model.15.dfl.conv", w, NULL, 1, r, 1, 1, 1, 0, 1, e->err);
    free(w);
    const char *c = e->rc == VN_OK ? vn_onnx_last(e->g) : "";
    return reshape(e, "model.15.dfl.dist", c, 3, (const int64_t[]){0, 4, n});
}

/* [B, 4 reg_max + nc, A] -> output0 [B, 4 + nc, A]: dist2bbox (xywh) times the strides, then
 * the sigmoid class scores. */
static void decode(emitter *e, const char *all, int nc, int r, int size)
{
    float *xy = NULL, *st = NULL;
    int64_t n = 0;
    if (anchors_of(size, &xy, &st, &n) != VN_OK && e->rc == VN_OK)
        e->rc = vn_error_set(e->err, VN_ERR_NOMEM, "out of memory");
    const char *anchors = const_f32(e, "model.15.anchors", 3, (const int64_t[]){1, 2, n}, xy);
    const char *strides = const_f32(e, "model.15.strides", 2, (const int64_t[]){1, n}, st);
    free(xy);
    free(st);
    const char *two = const_f32(e, "model.15.two", 0, NULL, (const float[]){2.0f});
    const char *box = slice(e, "model.15.box", all, 1, 0, 4 * r);
    const char *cls = slice(e, "model.15.cls", all, 1, 4 * r, 4 * r + nc);
    const char *dist = dfl(e, box, r, n);
    const char *lt = slice(e, "model.15.lt", dist, 1, 0, 2);
    const char *rb = slice(e, "model.15.rb", dist, 1, 2, 4);
    const char *x1y1 = op2(e, "Sub", "model.15.x1y1", anchors, lt);
    const char *x2y2 = op2(e, "Add", "model.15.x2y2", anchors, rb);
    const char *sum = op2(e, "Add", "model.15.sum", x1y1, x2y2);
    const char *cxy = op2(e, "Div", "model.15.cxy", sum, two);
    const char *wh = op2(e, "Sub", "model.15.wh", x2y2, x1y1);
    const char *xywh = concat(e, "model.15.xywh", 2, (const char *[]){cxy, wh}, 1);
    const char *dbox = op2(e, "Mul", "model.15.dbox", xywh, strides);
    const char *scores = op(e, "Sigmoid", "model.15.scores", 1, &cls, 0, NULL);
    concat(e, "output0", 2, (const char *[]){dbox, scores}, 1);
}

/* names as a Python dict literal ({0: 'person', 1: 'car'}), as Ultralytics' metadata holds them. */
static char *names_literal(const vn_detect_info *info)
{
    size_t cap = 16;
    for (int i = 0; i < info->nc; i++) cap += 16 + 2 * strlen(info->names[i]);
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    *p++ = '{';
    for (int i = 0; i < info->nc; i++) {
        p += snprintf(p, cap - (size_t)(p - s), "%s%d: '", i ? ", " : "", i);
        for (const char *c = info->names[i]; *c; c++) {
            if (*c == '\\' || *c == '\'' || *c == '\n') *p++ = '\\';
            *p++ = *c == '\n' ? 'n' : *c;
        }
        *p++ = '\'';
    }
    *p++ = '}';
    *p = '\0';
    return s;
}

static int add_meta(vn_onnx *g, const vn_yolo *m, const vn_detect_info *info, int size, vn_error *err)
{
    /* A json_* call that fails (-1, or NULL from a dump) fails the export: no metadata with an
     * entry missing. */
    json_t *cl = json_array(), *pre = json_object();
    int bad = !cl || !pre;
    for (int i = 0; i < info->nc; i++) bad |= json_array_append_new(cl, json_string(info->names[i]));
    bad |= json_object_set_new(pre, "input_size", json_integer(size));
    bad |= json_object_set_new(pre, "channels", json_integer(3));
    bad |= json_object_set_new(pre, "layout", json_string("NCHW, RGB scaled to [0, 1]"));
    bad |= json_object_set_new(pre, "resize", json_string("letterbox: scaled to fit, centred, padded with grey 114"));
    char *classes = bad ? NULL : json_dumps(cl, JSON_COMPACT);
    char *prep = bad ? NULL : json_dumps(pre, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(cl);
    json_decref(pre);
    char *model = vn__detector_json(m), *names = names_literal(info), imgsz[48];
    snprintf(imgsz, sizeof imgsz, "[%d, %d]", size, size);
    int rc = classes && prep && model && names ? VN_OK : vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    if (rc == VN_OK) rc = vn_onnx_meta(g, "vanilla.classes", classes, err);
    if (rc == VN_OK) rc = vn_onnx_meta(g, "vanilla.preprocessing", prep, err);
    if (rc == VN_OK) rc = vn_onnx_meta(g, "vanilla.model", model, err);
    if (rc == VN_OK) rc = vn_onnx_meta(g, "names", names, err);
    if (rc == VN_OK) rc = vn_onnx_meta(g, "stride", "32", err);
    if (rc == VN_OK) rc = vn_onnx_meta(g, "imgsz", imgsz, err);
    if (rc == VN_OK) rc = vn_onnx_meta(g, "batch", "1", err);
    if (rc == VN_OK) rc = vn_onnx_meta(g, "task", "detect", err);
    free(classes);
    free(prep);
    free(model);
    free(names);
    return rc;
}

static int build(vn_onnx *g, const vn_yolo *m, int size, vn_error *err)
{
    const vn_yolo_config *c = vn_yolo_get_config(m);
    int fi[VN_YOLO_LEVELS], heads, key_dim, head_dim;
    const vn_vanillanet *bb = vn_yolo_backbone(m, fi);
    vn_yolo_attention_dims(m, &heads, &key_dim, &head_dim);
    const attn_dims d = {heads, key_dim, head_dim, size / 32, size / 32};
    emitter e = {g, vn_yolo_state(m), err, VN_OK};
    const char *feats[VN_MAX_STAGES + 1], *p[VN_YOLO_LEVELS], *lv[VN_YOLO_LEVELS], *flat[VN_YOLO_LEVELS];
    e.rc = vn__onnx_vanillanet_features(g, bb, size, feats, err);
    for (int l = 0; e.rc == VN_OK && l < VN_YOLO_LEVELS; l++) p[l] = feats[fi[l]];
    if (e.rc == VN_OK) neck(&e, p, &d, lv);
    for (int l = 0; e.rc == VN_OK && l < VN_YOLO_LEVELS; l++)
        flat[l] = detect_level(&e, l, lv[l], 4 * c->reg_max + c->nc);
    if (e.rc == VN_OK) decode(&e, concat(&e, "model.15.cat", VN_YOLO_LEVELS, flat, 2), c->nc, c->reg_max, size);
    return e.rc;
}

int vn_detect_export_onnx(vn_yolo *m, const vn_detect_info *info, int imgsz, bool force,
                          const char *path, vn_error *err)
{
    int size = imgsz != 0 ? imgsz : info->imgsz;
    if (size < 32 || size % 32)
        return vn_error_set(err, VN_ERR_INVALID, "input size %d is not a positive multiple of 32 (the "
                            "detector's largest stride)%s", size,
                            imgsz != 0 ? "" : ": the file's imgsz; give --input-size N");
    int rc = vn_yolo_is_deploy(m) ? VN_OK : vn_yolo_switch_to_deploy(m, force, err);
    if (rc != VN_OK) return rc;
    const vn_yolo_config *c = vn_yolo_get_config(m);
    vn_onnx *g = vn_onnx_new("yolo11-vanillanet", "images", c->backbone.in_chans, size, size);
    if (!g) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int64_t n = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) n += (int64_t)(size >> (3 + l)) * (size >> (3 + l));
    rc = build(g, m, size, err);
    if (rc == VN_OK) rc = add_meta(g, m, info, size, err);
    if (rc == VN_OK) rc = vn_onnx_write_dims(g, path, "output0", 2, (const int64_t[]){4 + c->nc, n}, err);
    vn_onnx_free(g);
    if (rc != VN_OK) vn_error_prefix(err, "%s: ", path);
    return rc;
}
