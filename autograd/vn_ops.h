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
    X(BCE_WITH_LOGITS, "bce_with_logits", bce_with_logits, 0)

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

#ifdef __cplusplus
}
#endif
#endif
