/* Differentiable ops with PyTorch semantics on NHWC activations.
 *
 * Every op takes the context first and returns a new step tensor, or NULL on error (the
 * message is in vn_ctx_error). A NULL input makes an op return NULL at once, so chains of
 * ops need one check at the end. When grad mode is on and an input requires grad, the op
 * appends an entry to the tape; its backward accumulates (+=) into the inputs' gradients. */
#ifndef VN_OPS_H
#define VN_OPS_H

#include "autograd/vn_ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The op table. One row per op: its enum name, its text name, the name its kernels are
 * defined under, and whether it has a recompute kernel. Each row's kernels are
 * vn__<kernels>_forward_<device>, vn__<kernels>_backward_<device> and (when the last column
 * is 1) vn__<kernels>_recompute_<device>; autograd/dispatch.c builds from this list one
 * table with a column per device, and one dispatch function per direction.
 *
 * Adding an op: add a row here; write its public function (the "front": check the inputs,
 * make the output tensor, fill the op's typed state, say what backward saves) with
 * vn__node_new and vn__run from autograd/ops_impl.h; write its CPU kernels in the same file
 * (forward fills node->out from node->in and the state; backward accumulates into the
 * inputs' gradients; recompute rebuilds node->out bit for bit); add a finite-difference
 * check and a PyTorch fixture under tests/. A new backend adds a column: the same kernels
 * with its device suffix and its entry in dispatch.c, never a second path through the
 * fronts or the layers above. */
#define VN_OP_LIST(X)                                              \
    X(CONV2D, "conv2d", conv2d, 1)                                 \
    X(BATCH_NORM2D, "batch_norm2d", batch_norm2d, 1)               \
    X(LEAKY_RELU, "leaky_relu", leaky_relu, 1)                     \
    X(RELU, "relu", leaky_relu, 1)                                 \
    X(MAX_POOL2D, "max_pool2d", max_pool, 1)                       \
    X(ADAPTIVE_MAX_POOL2D, "adaptive_max_pool2d", max_pool, 1)     \
    X(ADAPTIVE_AVG_POOL2D, "adaptive_avg_pool2d", avg_pool, 0)     \
    X(DROPOUT, "dropout", dropout, 1)                              \
    X(RESHAPE, "reshape", reshape, 0)                              \
    X(ADD, "add", add, 0)                                          \
    X(SCALE, "scale", scale, 0)                                    \
    X(MATMUL, "matmul", matmul, 0)                                 \
    X(LINEAR, "linear", linear, 0)                                 \
    X(CROSS_ENTROPY, "cross_entropy", cross_entropy, 0)            \
    X(BCE_WITH_LOGITS, "bce_with_logits", bce_with_logits, 0)      \
    X(SILU, "silu", silu, 1)                                       \
    X(SIGMOID, "sigmoid", sigmoid, 1)                              \
    X(CONCAT, "concat", concat, 1)                                 \
    X(SLICE, "slice", slice, 1)                                    \
    X(UPSAMPLE_NEAREST, "upsample_nearest", upsample_nearest, 1)   \
    X(PERMUTE, "permute", permute, 1)                              \
    X(BMM, "bmm", bmm, 0)                                          \
    X(SOFTMAX, "softmax", softmax, 0)                              \
    X(MAX_POOL2D_PAD, "max_pool2d_pad", max_pool2d_pad, 1)         \
    X(DETECT_LOSS, "detect_loss", detect_loss, 0)

typedef enum vn_op {
#define VN_X_OP(name, text, kernels, recompute) VN_OP_##name,
    VN_OP_LIST(VN_X_OP)
#undef VN_X_OP
    VN_OP_COUNT
} vn_op;

const char *vn_op_name(vn_op op);

/* ---- convolution ------------------------------------------------------------------ */

typedef struct vn_conv_params {
    int stride_h, stride_w;
    int pad_h, pad_w;
    int groups;
} vn_conv_params;

#define VN_CONV(stride, pad, groups) \
    ((vn_conv_params){(stride), (stride), (pad), (pad), (groups)})

/* x: [N, H, W, Cin]; w: [Cout, KH, KW, Cin/groups] (OHWI); b: [Cout] or NULL.
 * Output [N, Ho, Wo, Cout] with Ho = (H + 2*pad_h - KH) / stride_h + 1 (dilation 1).
 * Fast paths: 1x1 stride 1 pad 0 (one sgemm), patchify (kernel == stride, pad 0),
 * depthwise (groups == Cin == Cout); im2col + sgemm otherwise. */
vn_tensor *vn_conv2d(vn_ctx *ctx, vn_tensor *x, vn_tensor *w, vn_tensor *b, vn_conv_params p);
/* vn_conv2d of vn_relu(x) as one op (VanillaNet's series activation): for a depthwise conv
 * the ReLU is applied where the kernels read x and its mask where they write the input's
 * gradient: the same values and gradients, byte for byte, with no ReLU tensor in between
 * and two passes over memory fewer. Any other conv gives the two ops. */
vn_tensor *vn_conv2d_relu(vn_ctx *ctx, vn_tensor *x, vn_tensor *w, vn_tensor *b,
                          vn_conv_params p);

/* ---- normalisation ------------------------------------------------------------------ */

/* BatchNorm2d over N, H, W per channel of x [N, H, W, C].
 * weight, bias: [C] or NULL (affine = False). running_mean, running_var: [C] or NULL.
 * Training: normalises with the batch mean and biased variance, and (when running stats
 * are given) updates running = (1 - momentum) * running + momentum * batch with the
 * unbiased variance, and increments *num_batches_tracked when not NULL.
 * Eval: normalises with the running statistics (required). */
vn_tensor *vn_batch_norm2d(vn_ctx *ctx, vn_tensor *x, vn_tensor *weight, vn_tensor *bias,
                           vn_tensor *running_mean, vn_tensor *running_var,
                           int64_t *num_batches_tracked, bool training, float momentum,
                           float eps);
/* vn_batch_norm2d then vn_leaky_relu(slope) as one op: the same values and gradients, byte
 * for byte, with one pass fewer over memory each way and no normalised tensor in between
 * (VanillaNet's BN + leaky ReLU in the stem, the blocks and the classifier). slope must be
 * >= 0 (backward reads the sign of the output); a negative slope gives the two ops. */
vn_tensor *vn_batch_norm2d_leaky(vn_ctx *ctx, vn_tensor *x, vn_tensor *weight, vn_tensor *bias,
                                 vn_tensor *running_mean, vn_tensor *running_var,
                                 int64_t *num_batches_tracked, bool training, float momentum,
                                 float eps, float slope);

/* ---- activations and element-wise ------------------------------------------------- */

/* y = x >= 0 ? x : slope * x. slope 0 is ReLU, slope 1 the identity. */
vn_tensor *vn_leaky_relu(vn_ctx *ctx, vn_tensor *x, float slope);
vn_tensor *vn_relu(vn_ctx *ctx, vn_tensor *x);
/* Inverted dropout: zeroes with probability p and scales the rest by 1 / (1 - p) in
 * training; the identity in eval or when p == 0. Draws from vn_ctx_rng. */
vn_tensor *vn_dropout(vn_ctx *ctx, vn_tensor *x, float p, bool training);
/* a + b, same shapes. */
vn_tensor *vn_add(vn_ctx *ctx, vn_tensor *a, vn_tensor *b);
/* s * x. */
vn_tensor *vn_scale(vn_ctx *ctx, vn_tensor *x, float s);
/* Same data, new shape of the same element count (a view in row-major order). */
vn_tensor *vn_reshape(vn_ctx *ctx, vn_tensor *x, int ndim, const int64_t *shape);
/* [N, ...] -> [N, rest]. */
vn_tensor *vn_flatten(vn_ctx *ctx, vn_tensor *x);

/* ---- pooling ---------------------------------------------------------------------- */

/* nn.MaxPool2d(k): kernel = stride = k, padding 0, floor mode. */
vn_tensor *vn_max_pool2d(vn_ctx *ctx, vn_tensor *x, int k);
/* Output [N, oh, ow, C]; window i spans [floor(i*in/out), ceil((i+1)*in/out)). */
vn_tensor *vn_adaptive_max_pool2d(vn_ctx *ctx, vn_tensor *x, int oh, int ow);
vn_tensor *vn_adaptive_avg_pool2d(vn_ctx *ctx, vn_tensor *x, int oh, int ow);
/* Adaptive average pooling to 1x1: [N, H, W, C] -> [N, 1, 1, C]. */
vn_tensor *vn_global_avg_pool(vn_ctx *ctx, vn_tensor *x);

/* ---- dense ------------------------------------------------------------------------ */

/* [M, K] x [K, N] -> [M, N]. */
vn_tensor *vn_matmul(vn_ctx *ctx, vn_tensor *a, vn_tensor *b);
/* x [..., in] (leading dims flattened), w [out, in], b [out] or NULL -> [..., out]. */
vn_tensor *vn_linear(vn_ctx *ctx, vn_tensor *x, vn_tensor *w, vn_tensor *b);

/* ---- losses (mean over the batch; a scalar tensor of shape [1]) -------------------- */

/* Cross-entropy over logits [N, C] (any shape whose last dim is C).
 * Exactly one of labels ([N] class indices) and targets ([N, C] soft, rows summing to 1).
 * With labels, smoothing s gives PyTorch's label_smoothing: (1 - s) * nll + s * mean(-logp).
 * With soft targets, loss = mean_n sum_c -t * logp (timm SoftTargetCrossEntropy); s unused. */
vn_tensor *vn_cross_entropy(vn_ctx *ctx, vn_tensor *logits, const int32_t *labels,
                            const float *targets, float smoothing);
/* Binary cross-entropy with logits against targets [N, C] in [0, 1], mean over all
 * N*C elements (BCEWithLogitsLoss, as timm's BinaryCrossEntropy after smoothing). */
vn_tensor *vn_bce_with_logits(vn_ctx *ctx, vn_tensor *logits, const float *targets);

/* ---- detector ops (YOLO11 neck and head; ops_act.c, ops_shape.c, ops_attn.c,
 *      ops_maxpool.c) ------------------------------------------------------------------ */

/* x * sigmoid(x) and 1 / (1 + exp(-x)), element-wise. */
vn_tensor *vn_silu(vn_ctx *ctx, vn_tensor *x);
vn_tensor *vn_sigmoid(vn_ctx *ctx, vn_tensor *x);
/* Concatenation of n tensors along the last dim (NHWC channels: torch.cat(dim=1) of NCHW);
 * every other dim must agree. */
vn_tensor *vn_concat(vn_ctx *ctx, int n, vn_tensor *const *xs);
/* Columns [start, start + len) of the last dim (a copy). */
vn_tensor *vn_slice_last(vn_ctx *ctx, vn_tensor *x, int64_t start, int64_t len);
/* Splits the last dim into n consecutive pieces of sizes[i] (summing to it): out[0..n-1]
 * (torch.split / chunk on NCHW channels). Returns the context status. */
int vn_split(vn_ctx *ctx, vn_tensor *x, int n, const int64_t *sizes, vn_tensor **out);
/* Nearest-neighbour upsampling of [N, H, W, C] by an integer factor (nn.Upsample(
 * scale_factor=s, mode="nearest")): [N, H*s, W*s, C]. */
vn_tensor *vn_upsample_nearest(vn_ctx *ctx, vn_tensor *x, int scale);
/* y = x.permute(perm) made contiguous; perm has x->ndim entries. */
vn_tensor *vn_permute(vn_ctx *ctx, vn_tensor *x, const int *perm);
/* Batched matmul: alpha * op(a[i]) op(b[i]) for each i, with op the transpose when asked:
 * a [B, M, K] ([B, K, M] with trans_a), b [B, K, N] ([B, N, K] with trans_b) -> [B, M, N]. */
vn_tensor *vn_bmm(vn_ctx *ctx, vn_tensor *a, vn_tensor *b, bool trans_a, bool trans_b,
                  float alpha);
/* Softmax over the last dim. */
vn_tensor *vn_softmax(vn_ctx *ctx, vn_tensor *x);
/* nn.MaxPool2d(k, stride, padding) (floor mode, dilation 1; 1 <= k <= 16, pad <= k/2). */
vn_tensor *vn_max_pool2d_ex(vn_ctx *ctx, vn_tensor *x, int k, int stride, int pad);

/* Targets of the detection loss for a batch of N images and A anchors per image (all levels,
 * each row-major over its grid), as the TaskAlignedAssigner gives them (models/vn_yolo.h). */
typedef struct vn_detect_targets {
    int64_t n_anchors;   /* A */
    int nc, reg_max;
    const uint8_t *fg;   /* [N * A] foreground anchors */
    const float *box;    /* [N * A * 4] target box x1, y1, x2, y2 in the anchor's grid units */
    const float *score;  /* [N * A * nc] target scores (one-hot x normalised alignment) */
    const float *anchor; /* [A * 2] anchor points (cell centres, grid units) */
    double score_sum;    /* max(sum of all target scores, 1) */
    float gain_box, gain_cls, gain_dfl;
} vn_detect_targets;

/* Ultralytics 8.3's v8DetectionLoss over Detect outputs preds[l] [N, H_l, W_l, 4 reg_max + nc]:
 * (gain_box * CIoU loss + gain_cls * BCE + gain_dfl * DFL) * N, a [1] tensor; parts (when not
 * NULL) gets the three gained terms (Ultralytics' loss items). The targets are read during
 * the call only. */
vn_tensor *vn_detect_loss(vn_ctx *ctx, int n_levels, vn_tensor *const *preds,
                          const vn_detect_targets *t, double parts[3]);

#ifdef __cplusplus
}
#endif
#endif
