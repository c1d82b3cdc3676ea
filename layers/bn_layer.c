#include "layers/vn_layers.h"

#include <math.h>
#include <string.h>

int vn_bn_layer_init(vn_bn_layer *bn, int channels, float eps)
{
    memset(bn, 0, sizeof *bn);
    int64_t s[1] = {channels};
    bn->weight = vn_tensor_new(1, s, true);
    bn->bias = vn_tensor_new(1, s, true);
    bn->running_mean = vn_tensor_new(1, s, false);
    bn->running_var = vn_tensor_new(1, s, false);
    if (!bn->weight || !bn->bias || !bn->running_mean || !bn->running_var) {
        vn_bn_layer_free(bn);
        return VN_ERR_NOMEM;
    }
    vn_tensor_fill(bn->weight, 1.0f);
    vn_tensor_fill(bn->running_var, 1.0f);
    bn->channels = channels;
    bn->eps = eps;
    bn->momentum = 0.1f;
    return VN_OK;
}

void vn_bn_layer_free(vn_bn_layer *bn)
{
    vn_tensor_free(bn->weight);
    vn_tensor_free(bn->bias);
    vn_tensor_free(bn->running_mean);
    vn_tensor_free(bn->running_var);
    memset(bn, 0, sizeof *bn);
}

int vn_bn_layer_register(vn_bn_layer *bn, vn_state_list *l, const char *prefix)
{
    int rc = vn_state_add(l, prefix, "weight", VN_STATE_PARAM, bn->weight, NULL);
    if (rc == VN_OK) rc = vn_state_add(l, prefix, "bias", VN_STATE_PARAM, bn->bias, NULL);
    if (rc == VN_OK) rc = vn_state_add(l, prefix, "running_mean", VN_STATE_BUFFER, bn->running_mean, NULL);
    if (rc == VN_OK) rc = vn_state_add(l, prefix, "running_var", VN_STATE_BUFFER, bn->running_var, NULL);
    if (rc == VN_OK)
        rc = vn_state_add(l, prefix, "num_batches_tracked", VN_STATE_COUNT, NULL, &bn->num_batches_tracked);
    return rc;
}

vn_tensor *vn_bn_layer_forward(vn_ctx *ctx, vn_bn_layer *bn, vn_tensor *x, bool training)
{
    return vn_batch_norm2d(ctx, x, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                           &bn->num_batches_tracked, training, bn->momentum, bn->eps);
}

vn_tensor *vn_bn_layer_forward_leaky(vn_ctx *ctx, vn_bn_layer *bn, vn_tensor *x, bool training,
                                     float slope)
{
    return vn_batch_norm2d_leaky(ctx, x, bn->weight, bn->bias, bn->running_mean,
                                 bn->running_var, &bn->num_batches_tracked, training,
                                 bn->momentum, bn->eps, slope);
}

void vn_bn_fold(const vn_bn_layer *bn, float *w, int64_t w_per_out, const float *bias_in,
                float *bias_out)
{
    for (int c = 0; c < bn->channels; c++) {
        double std = sqrt((double)bn->running_var->data[c] + (double)bn->eps);
        double t = (double)bn->weight->data[c] / std;
        for (int64_t k = 0; k < w_per_out; k++) w[c * w_per_out + k] = (float)(w[c * w_per_out + k] * t);
        double b = bias_in ? bias_in[c] : 0.0;
        bias_out[c] = (float)(bn->bias->data[c] + (b - bn->running_mean->data[c]) * t);
    }
}
