/* Layers: modules with named parameters and buffers, and the list that names them all.
 *
 * A layer is a plain struct owning model-lifetime tensors plus a forward function that
 * appends ops to a context's tape. Every layer registers its tensors into a vn_state_list
 * under the PyTorch state_dict names ("stem1.0.weight", "stages.2.act.bn.running_var"),
 * so optimizers, checkpoints and weight files all see one ordered list of (name, tensor). */
#ifndef VN_LAYERS_H
#define VN_LAYERS_H

#include "autograd/vn_ops.h"
#include "io/vn_safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the named state list -------------------------------------------------------------- */

typedef enum vn_state_kind {
    VN_STATE_PARAM,  /* trainable float tensor */
    VN_STATE_BUFFER, /* float buffer (BN running statistics) */
    VN_STATE_COUNT   /* int64 scalar buffer (BN num_batches_tracked, shape []) */
} vn_state_kind;

typedef struct vn_state_item {
    char *name;          /* owned */
    vn_state_kind kind;
    vn_tensor *tensor;   /* PARAM and BUFFER; OHWI conv weights carry VN_TENSOR_OHWI */
    int64_t *count;      /* COUNT */
} vn_state_item;

typedef struct vn_state_list {
    vn_state_item *items;
    int n, cap;
} vn_state_list;

void vn_state_list_init(vn_state_list *l);
void vn_state_list_free(vn_state_list *l); /* frees names only; tensors belong to layers */
int vn_state_add(vn_state_list *l, const char *prefix, const char *name, vn_state_kind kind,
                 vn_tensor *t, int64_t *count);
const vn_state_item *vn_state_find(const vn_state_list *l, const char *name);
/* Number of float elements of the entries of one kind. */
int64_t vn_state_numel(const vn_state_list *l, vn_state_kind kind);
/* Drops the gradient buffers of every parameter (vn_tensor_drop_grad): for a model that is
 * only ever run forward and blended into, as an EMA copy. */
void vn_state_drop_grads(const vn_state_list *l);

/* Adds every entry to a safetensors writer under `prefix` + name: float tensors as F32 in
 * file layout (OHWI conv weights converted to OIHW), counts as I64 with shape []. */
int vn_state_to_writer(const vn_state_list *l, const char *prefix, vn_st_writer *w, vn_error *err);
/* Loads every entry from a safetensors file (names with `prefix`). strict: a tensor in the
 * file that the list does not have is an error too. Checks dtype and shape of each entry
 * and names the first mismatch; nothing is modified unless everything matches. */
int vn_state_from_file(const vn_state_list *l, const char *prefix, const vn_st_file *f,
                       bool strict, vn_error *err);
/* The checks of vn_state_from_file alone (nothing is modified); after it succeeds,
 * vn_state_from_file with the same arguments cannot fail. */
int vn_state_check_file(const vn_state_list *l, const char *prefix, const vn_st_file *f,
                        bool strict, vn_error *err);
/* Copies values (not gradients) between two lists with the same names and shapes. */
int vn_state_copy(const vn_state_list *dst, const vn_state_list *src, vn_error *err);
/* Moves every float tensor of the list (parameters with their gradients, buffers) to device
 * d (layers/state_device.c); counts stay in host memory. On failure the message names the
 * tensor; tensors moved before it stay moved. */
int vn_state_to_device(const vn_state_list *l, vn_device d, vn_error *err);

/* ---- Conv2d ------------------------------------------------------------------------------ */

typedef struct vn_conv2d_layer {
    vn_tensor *weight; /* [out, kh, kw, in/groups], VN_TENSOR_OHWI */
    vn_tensor *bias;   /* [out] or NULL */
    int in_ch, out_ch, kh, kw;
    vn_conv_params p;
} vn_conv2d_layer;

int vn_conv2d_layer_init(vn_conv2d_layer *c, int in_ch, int out_ch, int kh, int kw,
                         vn_conv_params p, bool bias);
void vn_conv2d_layer_free(vn_conv2d_layer *c);
int vn_conv2d_layer_register(vn_conv2d_layer *c, vn_state_list *l, const char *prefix);
vn_tensor *vn_conv2d_layer_forward(vn_ctx *ctx, const vn_conv2d_layer *c, vn_tensor *x);
/* Fills an OHWI weight with trunc_normal(0, std) truncated at +-2 (absolute, as timm),
 * drawing in PyTorch's OIHW order so a given stream means the same weights in both. */
void vn_trunc_normal_ohwi(vn_tensor *w, vn_rng *rng, double std);
/* timm trunc_normal_(std) truncated at +-2 (absolute) for the weight, zero bias. */
void vn_conv2d_layer_reset(vn_conv2d_layer *c, vn_rng *rng, double std);

/* ---- BatchNorm2d ---------------------------------------------------------------------- */

typedef struct vn_bn_layer {
    vn_tensor *weight, *bias, *running_mean, *running_var; /* [C] */
    int64_t num_batches_tracked;
    int channels;
    float eps, momentum;
} vn_bn_layer;

int vn_bn_layer_init(vn_bn_layer *bn, int channels, float eps);
void vn_bn_layer_free(vn_bn_layer *bn);
int vn_bn_layer_register(vn_bn_layer *bn, vn_state_list *l, const char *prefix);
vn_tensor *vn_bn_layer_forward(vn_ctx *ctx, vn_bn_layer *bn, vn_tensor *x, bool training);
/* The layer followed by leaky_relu(slope), as one op (vn_batch_norm2d_leaky). */
vn_tensor *vn_bn_layer_forward_leaky(vn_ctx *ctx, vn_bn_layer *bn, vn_tensor *x, bool training,
                                     float slope);
/* Folds eval-mode BN into the preceding conv's weight and bias (bias may be absent: the
 * result is written to out_bias, [out]). w is OHWI [out, ...]; scales each output row. */
void vn_bn_fold(const vn_bn_layer *bn, float *w, int64_t w_per_out, const float *bias_in,
                float *bias_out);

/* ---- the series-informed activation ------------------------------------------------------ */

/* The eps of every BatchNorm in VanillaNet (the official nn.BatchNorm2d(dim, eps=1e-6)). */
#define VN_VANILLANET_BN_EPS 1e-6f

/* relu -> depthwise (2n+1)x(2n+1) conv, padding n, no bias -> BatchNorm2d(VN_VANILLANET_BN_EPS).
 * Deploy: relu -> depthwise conv with bias (BN folded in). */
typedef struct vn_series_act {
    vn_tensor *weight; /* [C, k, k, 1] OHWI */
    vn_tensor *bias;   /* deploy only */
    vn_bn_layer bn;    /* train only */
    int dim, act_num;
    bool deploy;
} vn_series_act;

int vn_series_act_init(vn_series_act *a, int dim, int act_num, bool deploy);
void vn_series_act_free(vn_series_act *a);
int vn_series_act_register(vn_series_act *a, vn_state_list *l, const char *prefix);
vn_tensor *vn_series_act_forward(vn_ctx *ctx, vn_series_act *a, vn_tensor *x, bool training);
/* Folds the BN into the depthwise conv (train -> deploy), in place. */
int vn_series_act_to_deploy(vn_series_act *a);
/* Writes the deploy form of a training activation into dst (a deploy activation of the same
 * dim and act_num); src is not modified and nothing is allocated. */
void vn_series_act_fold(vn_series_act *dst, const vn_series_act *src);

#ifdef __cplusplus
}
#endif
#endif
