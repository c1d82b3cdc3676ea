/* The series-informed activation of VanillaNet: relu, a depthwise conv, BatchNorm. */
#include "layers/vn_layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vn_series_act_init(vn_series_act *a, int dim, int act_num, bool deploy)
{
    memset(a, 0, sizeof *a);
    int k = 2 * act_num + 1;
    a->weight = vn_tensor_new4(dim, k, k, 1, true);
    if (!a->weight) return VN_ERR_NOMEM;
    a->weight->flags |= VN_TENSOR_OHWI;
    a->dim = dim;
    a->act_num = act_num;
    a->deploy = deploy;
    if (deploy) {
        int64_t s[1] = {dim};
        a->bias = vn_tensor_new(1, s, true);
        if (!a->bias) goto fail;
    } else if (vn_bn_layer_init(&a->bn, dim, VN_VANILLANET_BN_EPS) != VN_OK) {
        goto fail;
    }
    return VN_OK;
fail:
    vn_series_act_free(a);
    return VN_ERR_NOMEM;
}

void vn_series_act_free(vn_series_act *a)
{
    vn_tensor_free(a->weight);
    vn_tensor_free(a->bias);
    if (a->bn.weight) vn_bn_layer_free(&a->bn);
    memset(a, 0, sizeof *a);
}

int vn_series_act_register(vn_series_act *a, vn_state_list *l, const char *prefix)
{
    int rc = vn_state_add(l, prefix, "weight", VN_STATE_PARAM, a->weight, NULL);
    if (rc != VN_OK) return rc;
    if (a->deploy) return vn_state_add(l, prefix, "bias", VN_STATE_PARAM, a->bias, NULL);
    char p[256];
    snprintf(p, sizeof p, "%sbn.", prefix);
    return vn_bn_layer_register(&a->bn, l, p);
}

vn_tensor *vn_series_act_forward(vn_ctx *ctx, vn_series_act *a, vn_tensor *x, bool training)
{
    vn_conv_params p = VN_CONV(1, a->act_num, a->dim);
    vn_tensor *y = vn_conv2d_relu(ctx, x, a->weight, a->deploy ? a->bias : NULL, p);
    if (a->deploy) return y;
    vn_tensor *out = vn_bn_layer_forward(ctx, &a->bn, y, training);
    vn_release(ctx, y);
    return out;
}

int vn_series_act_to_deploy(vn_series_act *a)
{
    if (a->deploy) return VN_OK;
    int64_t s[1] = {a->dim};
    vn_tensor *bias = vn_tensor_new(1, s, true);
    if (!bias) return VN_ERR_NOMEM;
    int64_t per = a->weight->numel / a->dim;
    vn_bn_fold(&a->bn, a->weight->data, per, NULL, bias->data);
    vn_bn_layer_free(&a->bn);
    a->bias = bias;
    a->deploy = true;
    return VN_OK;
}

void vn_series_act_fold(vn_series_act *dst, const vn_series_act *src)
{
    VN_ASSERT(dst->deploy && !src->deploy && dst->dim == src->dim && dst->act_num == src->act_num,
              "vn_series_act_fold: dst must be the deploy form of src (same dim and act_num)");
    vn_tensor_copy_data(dst->weight, src->weight);
    vn_bn_fold(&src->bn, dst->weight->data, dst->weight->numel / dst->dim, NULL, dst->bias->data);
}
