#include "layers/vn_layers.h"

#include <string.h>

int vn_conv2d_layer_init(vn_conv2d_layer *c, int in_ch, int out_ch, int kh, int kw,
                         vn_conv_params p, bool bias)
{
    memset(c, 0, sizeof *c);
    VN_ASSERT(p.groups > 0 && in_ch % p.groups == 0, "groups %d must divide %d input channels",
              p.groups, in_ch);
    c->weight = vn_tensor_new4(out_ch, kh, kw, in_ch / p.groups, true);
    if (!c->weight) return VN_ERR_NOMEM;
    c->weight->flags |= VN_TENSOR_OHWI;
    if (bias) {
        int64_t s[1] = {out_ch};
        c->bias = vn_tensor_new(1, s, true);
        if (!c->bias) {
            vn_tensor_free(c->weight);
            c->weight = NULL;
            return VN_ERR_NOMEM;
        }
    }
    c->in_ch = in_ch;
    c->out_ch = out_ch;
    c->kh = kh;
    c->kw = kw;
    c->p = p;
    return VN_OK;
}

void vn_conv2d_layer_free(vn_conv2d_layer *c)
{
    vn_tensor_free(c->weight);
    vn_tensor_free(c->bias);
    memset(c, 0, sizeof *c);
}

int vn_conv2d_layer_register(vn_conv2d_layer *c, vn_state_list *l, const char *prefix)
{
    int rc = vn_state_add(l, prefix, "weight", VN_STATE_PARAM, c->weight, NULL);
    if (rc == VN_OK && c->bias) rc = vn_state_add(l, prefix, "bias", VN_STATE_PARAM, c->bias, NULL);
    return rc;
}

vn_tensor *vn_conv2d_layer_forward(vn_ctx *ctx, const vn_conv2d_layer *c, vn_tensor *x)
{
    return vn_conv2d(ctx, x, c->weight, c->bias, c->p);
}

void vn_trunc_normal_ohwi(vn_tensor *w, vn_rng *rng, double std)
{
    int64_t o = w->shape[0], kh = w->shape[1], kw = w->shape[2], i = w->shape[3];
    for (int64_t a = 0; a < o; a++)
        for (int64_t ci = 0; ci < i; ci++)
            for (int64_t y = 0; y < kh; y++)
                for (int64_t x = 0; x < kw; x++)
                    w->data[((a * kh + y) * kw + x) * i + ci] =
                        (float)vn_rng_trunc_normal(rng, 0.0, std, -2.0, 2.0);
}

void vn_conv2d_layer_reset(vn_conv2d_layer *c, vn_rng *rng, double std)
{
    vn_trunc_normal_ohwi(c->weight, rng, std);
    if (c->bias) vn_tensor_fill(c->bias, 0.0f);
}
