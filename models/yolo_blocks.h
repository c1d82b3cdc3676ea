/* Private: the building blocks of YOLO11 (Ultralytics 8.3's nn/modules conv.py, block.py and
 * head.py) on NHWC activations, each with init / register (under Ultralytics' state_dict
 * names) / forward / free. Used by models/yolo.c only. */
#ifndef VN_YOLO_BLOCKS_H
#define VN_YOLO_BLOCKS_H

#include "layers/vn_layers.h"
#include "models/vn_yolo.h" /* VN_YOLO_BN_EPS */

/* Ultralytics' initialize_weights sets every BatchNorm2d to momentum 0.03 (eps: vn_yolo.h). */
#define VN_YOLO_BN_MOMENTUM 0.03f

/* Conv: conv k x k (stride s, padding k/2, groups g, no bias) + BN + SiLU (act) or none. */
typedef struct vn__yconv {
    vn_conv2d_layer conv;
    vn_bn_layer bn;
    bool act;
} vn__yconv;

/* Bottleneck(c1, c2, shortcut, k=(k1, k2), e): cv1 k1 -> c_, cv2 k2 -> c2, + x when
 * shortcut and c1 == c2. */
typedef struct vn__ybottleneck {
    vn__yconv cv1, cv2;
    bool add;
} vn__ybottleneck;

/* C3k(c1, c2, n=2, shortcut, e=0.5, k=3): cv1, cv2 1x1 -> c_; m = n Bottlenecks(c_, c_, k,
 * e=1); cv3(cat(m(cv1(x)), cv2(x))). */
typedef struct vn__yc3k {
    vn__yconv cv1, cv2, cv3;
    int n;
    vn__ybottleneck *m;
} vn__yc3k;

/* C3k2(c1, c2, n, c3k, e=0.5, shortcut=True): c = c2 * e; cv1 1x1 -> 2c; chunk; n blocks
 * (C3k(c, c, 2) or Bottleneck(c, c) with e 0.5) each on the last piece; cv2 1x1 over the
 * (2 + n) * c concatenation. */
typedef struct vn__yc3k2 {
    vn__yconv cv1, cv2;
    int c, n;
    bool c3k;
    vn__ybottleneck *b; /* n, when !c3k */
    vn__yc3k *k;        /* n, when c3k */
} vn__yc3k2;

/* SPPF(c1, c2, k=5): cv1 1x1 -> c1/2; three chained max-pools k, stride 1, padding k/2;
 * cv2 1x1 over the concatenation of the four. */
typedef struct vn__ysppf {
    vn__yconv cv1, cv2;
    int k;
} vn__ysppf;

/* PSABlock(c, attn_ratio 0.5, heads = c / 64): x + Attention(x), then + ffn (1x1 c -> 2c
 * with SiLU, 1x1 2c -> c without). Attention: qkv 1x1 (no act) -> heads x (2 key_dim +
 * head_dim); softmax(q^T k * key_dim^-0.5); v attn^T + pe(v) (depthwise 3x3, no act);
 * proj 1x1 (no act). */
typedef struct vn__ypsa {
    vn__yconv qkv, proj, pe, ffn0, ffn1;
    int c, heads, key_dim, head_dim;
} vn__ypsa;

/* C2PSA(c1, c2 = c1, n, e=0.5): c = c1 * e; cv1 1x1 -> 2c; split; n PSABlocks on the
 * second half; cv2 1x1 over the concatenation. */
typedef struct vn__yc2psa {
    vn__yconv cv1, cv2;
    int c, n;
    vn__ypsa *m;
} vn__yc2psa;

/* One level of Detect: box branch cv2 (Conv 3x3 -> c2, Conv 3x3, conv 1x1 -> 4 reg_max with
 * bias) and class branch cv3 ((DWConv 3x3, Conv 1x1 -> c3), (DWConv 3x3, Conv 1x1), conv
 * 1x1 -> nc with bias). */
typedef struct vn__ydetect_level {
    vn__yconv box0, box1, cls0_dw, cls0_pw, cls1_dw, cls1_pw;
    vn_conv2d_layer box2, cls2;
} vn__ydetect_level;

int vn__yconv_init(vn__yconv *c, int c1, int c2, int k, int s, int g, bool act);
void vn__yconv_free(vn__yconv *c);
int vn__yconv_register(vn__yconv *c, vn_state_list *l, const char *prefix);
vn_tensor *vn__yconv_forward(vn_ctx *ctx, vn__yconv *c, vn_tensor *x, bool training);
/* PyTorch's default Conv2d init: weight and bias uniform in +-1/sqrt(fan_in). */
void vn__yolo_conv_reset(vn_conv2d_layer *c, vn_rng *rng);

int vn__yc3k2_init(vn__yc3k2 *b, int c1, int c2, int n, bool c3k, float e);
void vn__yc3k2_free(vn__yc3k2 *b);
int vn__yc3k2_register(vn__yc3k2 *b, vn_state_list *l, const char *prefix);
vn_tensor *vn__yc3k2_forward(vn_ctx *ctx, vn__yc3k2 *b, vn_tensor *x, bool training);

int vn__ysppf_init(vn__ysppf *b, int c1, int c2, int k);
void vn__ysppf_free(vn__ysppf *b);
int vn__ysppf_register(vn__ysppf *b, vn_state_list *l, const char *prefix);
vn_tensor *vn__ysppf_forward(vn_ctx *ctx, vn__ysppf *b, vn_tensor *x, bool training);

int vn__yc2psa_init(vn__yc2psa *b, int c1, int n, float e);
void vn__yc2psa_free(vn__yc2psa *b);
int vn__yc2psa_register(vn__yc2psa *b, vn_state_list *l, const char *prefix);
vn_tensor *vn__yc2psa_forward(vn_ctx *ctx, vn__yc2psa *b, vn_tensor *x, bool training);

int vn__ydetect_level_init(vn__ydetect_level *d, int ch, int c2, int c3, int nc, int reg_max);
void vn__ydetect_level_free(vn__ydetect_level *d);
/* Registers level i under prefix + "cv2.{i}.*" and prefix + "cv3.{i}.*". */
int vn__ydetect_level_register(vn__ydetect_level *d, vn_state_list *l, const char *prefix,
                               int i);
/* [N, H, W, 4 reg_max + nc]: box distribution logits, then class logits. */
vn_tensor *vn__ydetect_level_forward(vn_ctx *ctx, vn__ydetect_level *d, vn_tensor *x,
                                     bool training);

#endif
