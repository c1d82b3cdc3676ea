/* VanillaNet: construction, state names, initialisation and forward. */
#include "models/vn_vanillanet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vn_conv_params stem_params(const vn_vanillanet_config *c)
{
    /* Official: stride 4, padding 0; with ada_pool stride 3, padding 1 (kernel 4). */
    return c->ada_pool_enabled ? VN_CONV(3, 1, 1) : VN_CONV(4, 0, 1);
}

int vn_vanilla_block_init(vn_vanilla_block *b, int dim, int dim_out, int stride, int ada_pool,
                          int act_num, vn_shortcut shortcut, bool deploy)
{
    memset(b, 0, sizeof *b);
    b->dim = dim;
    b->dim_out = dim_out;
    b->stride = stride;
    b->ada_pool = ada_pool;
    int rc;
    if (deploy) {
        rc = vn_conv2d_layer_init(&b->conv, b->dim, b->dim_out, 1, 1, VN_CONV(1, 0, 1), true);
    } else {
        rc = vn_conv2d_layer_init(&b->conv1, b->dim, b->dim, 1, 1, VN_CONV(1, 0, 1), true);
        if (rc == VN_OK) rc = vn_bn_layer_init(&b->bn1, b->dim, 1e-6f);
        if (rc == VN_OK)
            rc = vn_conv2d_layer_init(&b->conv2, b->dim, b->dim_out, 1, 1, VN_CONV(1, 0, 1), true);
        if (rc == VN_OK) rc = vn_bn_layer_init(&b->bn2, b->dim_out, 1e-6f);
    }
    if (rc == VN_OK && shortcut == VN_SHORTCUT_IDENTITY) {
        if (b->dim == b->dim_out && b->stride == 1) {
            b->shortcut_identity = true;
        } else {
            b->shortcut_conv = true;
            rc = vn_conv2d_layer_init(&b->shortcut, b->dim, b->dim_out, 1, 1, VN_CONV(1, 0, 1), true);
        }
    }
    if (rc == VN_OK) rc = vn_series_act_init(&b->act, b->dim_out, act_num, deploy);
    if (rc != VN_OK) vn_vanilla_block_free(b);
    return rc;
}

static int block_init(vn_vanilla_block *b, const vn_vanillanet_config *c, int i, bool deploy)
{
    return vn_vanilla_block_init(b, c->dims[i], c->dims[i + 1], c->strides[i],
                                 c->ada_pool_enabled ? c->ada_pool[i] : 0, c->act_num,
                                 c->shortcut, deploy);
}

void vn_vanilla_block_free(vn_vanilla_block *b)
{
    vn_conv2d_layer_free(&b->conv1);
    vn_conv2d_layer_free(&b->conv2);
    vn_conv2d_layer_free(&b->conv);
    vn_conv2d_layer_free(&b->shortcut);
    if (b->bn1.weight) vn_bn_layer_free(&b->bn1);
    if (b->bn2.weight) vn_bn_layer_free(&b->bn2);
    vn_series_act_free(&b->act);
}

int vn_vanilla_block_register(vn_vanilla_block *b, vn_state_list *l, const char *prefix,
                              bool deploy)
{
    char p[160];
    int rc;
    if (deploy) {
        snprintf(p, sizeof p, "%sconv.", prefix);
        rc = vn_conv2d_layer_register(&b->conv, l, p);
    } else {
        snprintf(p, sizeof p, "%sconv1.0.", prefix);
        rc = vn_conv2d_layer_register(&b->conv1, l, p);
        snprintf(p, sizeof p, "%sconv1.1.", prefix);
        if (rc == VN_OK) rc = vn_bn_layer_register(&b->bn1, l, p);
        snprintf(p, sizeof p, "%sconv2.0.", prefix);
        if (rc == VN_OK) rc = vn_conv2d_layer_register(&b->conv2, l, p);
        snprintf(p, sizeof p, "%sconv2.1.", prefix);
        if (rc == VN_OK) rc = vn_bn_layer_register(&b->bn2, l, p);
    }
    if (rc == VN_OK && b->shortcut_conv) {
        snprintf(p, sizeof p, "%sshortcut.", prefix);
        rc = vn_conv2d_layer_register(&b->shortcut, l, p);
    }
    snprintf(p, sizeof p, "%sact.", prefix);
    if (rc == VN_OK) rc = vn_series_act_register(&b->act, l, p);
    return rc;
}

/* The official state_dict order: stem1, stem2 (or stem), stages, cls1, cls2 (or cls). */
int vn__vanillanet_register(vn_vanillanet *m)
{
    vn_state_list_free(&m->state);
    vn_state_list_init(&m->state);
    vn_state_list *l = &m->state;
    int rc;
    char p[128];
    if (m->deploy) {
        rc = vn_conv2d_layer_register(&m->stem1, l, "stem.0.");
        if (rc == VN_OK) rc = vn_series_act_register(&m->stem_act, l, "stem.1.");
    } else {
        rc = vn_conv2d_layer_register(&m->stem1, l, "stem1.0.");
        if (rc == VN_OK) rc = vn_bn_layer_register(&m->stem1_bn, l, "stem1.1.");
        if (rc == VN_OK) rc = vn_conv2d_layer_register(&m->stem2, l, "stem2.0.");
        if (rc == VN_OK) rc = vn_bn_layer_register(&m->stem2_bn, l, "stem2.1.");
        if (rc == VN_OK) rc = vn_series_act_register(&m->stem_act, l, "stem2.2.");
    }
    for (int i = 0; rc == VN_OK && i < m->cfg.n_stages; i++) {
        snprintf(p, sizeof p, "stages.%d.", i);
        rc = vn_vanilla_block_register(&m->stages[i], l, p, m->deploy);
    }
    if (rc != VN_OK) return rc;
    if (m->deploy) return vn_conv2d_layer_register(&m->cls1, l, "cls.2.");
    rc = vn_conv2d_layer_register(&m->cls1, l, "cls1.2.");
    if (rc == VN_OK) rc = vn_bn_layer_register(&m->cls1_bn, l, "cls1.3.");
    if (rc == VN_OK) rc = vn_conv2d_layer_register(&m->cls2, l, "cls2.0.");
    return rc;
}

int vn_vanillanet_create(const vn_vanillanet_config *cfg, bool deploy, vn_vanillanet **out,
                         vn_error *err)
{
    *out = NULL;
    int rc = vn_vanillanet_config_check(cfg, err);
    if (rc != VN_OK) return rc;
    vn_vanillanet *m = calloc(1, sizeof *m);
    if (!m) return vn_error_set(err, VN_ERR_NOMEM, "out of memory for the model");
    m->cfg = *cfg;
    m->deploy = deploy;
    m->training = true;
    m->act_learn = 1.0f;
    const int d0 = cfg->dims[0], nc = cfg->num_classes, dl = cfg->dims[cfg->n_stages];
    rc = vn_conv2d_layer_init(&m->stem1, cfg->in_chans, d0, 4, 4, stem_params(cfg), true);
    if (rc == VN_OK && !deploy) {
        rc = vn_bn_layer_init(&m->stem1_bn, d0, 1e-6f);
        if (rc == VN_OK) rc = vn_conv2d_layer_init(&m->stem2, d0, d0, 1, 1, VN_CONV(1, 0, 1), true);
        if (rc == VN_OK) rc = vn_bn_layer_init(&m->stem2_bn, d0, 1e-6f);
    }
    if (rc == VN_OK) rc = vn_series_act_init(&m->stem_act, d0, cfg->act_num, deploy);
    if (rc == VN_OK) {
        m->stages = calloc((size_t)cfg->n_stages, sizeof *m->stages);
        if (!m->stages) rc = VN_ERR_NOMEM;
    }
    for (int i = 0; rc == VN_OK && i < cfg->n_stages; i++) rc = block_init(&m->stages[i], cfg, i, deploy);
    if (rc == VN_OK) rc = vn_conv2d_layer_init(&m->cls1, dl, nc, 1, 1, VN_CONV(1, 0, 1), true);
    if (rc == VN_OK && !deploy) {
        rc = vn_bn_layer_init(&m->cls1_bn, nc, 1e-6f);
        if (rc == VN_OK) rc = vn_conv2d_layer_init(&m->cls2, nc, nc, 1, 1, VN_CONV(1, 0, 1), true);
    }
    if (rc == VN_OK) rc = vn__vanillanet_register(m);
    if (rc != VN_OK) {
        vn_vanillanet_destroy(m);
        int64_t n = vn_vanillanet_count_params(cfg, deploy);
        return vn_error_set(err, rc, "out of memory building the model: %lld parameters "
                            "need %.1f MB", (long long)n, (double)n * sizeof(float) / 1e6);
    }
    *out = m;
    return VN_OK;
}

void vn__vanillanet_free_layers(vn_vanillanet *m)
{
    vn_conv2d_layer_free(&m->stem1);
    vn_conv2d_layer_free(&m->stem2);
    if (m->stem1_bn.weight) vn_bn_layer_free(&m->stem1_bn);
    if (m->stem2_bn.weight) vn_bn_layer_free(&m->stem2_bn);
    vn_series_act_free(&m->stem_act);
    if (m->stages)
        for (int i = 0; i < m->cfg.n_stages; i++) vn_vanilla_block_free(&m->stages[i]);
    vn_conv2d_layer_free(&m->cls1);
    vn_conv2d_layer_free(&m->cls2);
    if (m->cls1_bn.weight) vn_bn_layer_free(&m->cls1_bn);
}

void vn_vanillanet_destroy(vn_vanillanet *m)
{
    if (!m) return;
    vn__vanillanet_free_layers(m);
    free(m->stages);
    vn_state_list_free(&m->state);
    free(m);
}

void vn_vanillanet_init(vn_vanillanet *m, uint64_t seed)
{
    vn_rng rng;
    vn_rng_seed(&rng, seed, 0x1417, 0);
    /* Every 4-D weight is a conv (or the activation's depthwise) weight; biases are zero,
     * BN is identity with fresh running statistics. */
    for (int i = 0; i < m->state.n; i++) {
        vn_state_item *e = &m->state.items[i];
        size_t len = strlen(e->name);
        if (e->kind == VN_STATE_COUNT) {
            *e->count = 0;
        } else if (e->tensor->ndim == 4) {
            vn_trunc_normal_ohwi(e->tensor, &rng, 0.02);
        } else {
            /* 1-D: BN weight and running_var start at 1, everything else at 0. */
            bool one = len >= 7 && (strcmp(e->name + len - 7, ".weight") == 0 ||
                                    (len >= 12 && strcmp(e->name + len - 12, ".running_var") == 0));
            vn_tensor_fill(e->tensor, one ? 1.0f : 0.0f);
        }
    }
}

void vn_vanillanet_change_act(vn_vanillanet *m, float act_learn) { m->act_learn = act_learn; }

void vn_vanillanet_set_training(vn_vanillanet *m, bool training) { m->training = training; }

/* Returns out after releasing the intermediate it was computed from (see vn_release): a
 * forward keeps in memory only what backward needs. */
static vn_tensor *then(vn_ctx *ctx, vn_tensor *consumed, vn_tensor *out)
{
    vn_release(ctx, consumed);
    return out;
}

static vn_tensor *block_pool(vn_ctx *ctx, const vn_vanilla_block *b, vn_tensor *y)
{
    if (b->stride <= 1) return y;
    return then(ctx, y, b->ada_pool ? vn_adaptive_max_pool2d(ctx, y, b->ada_pool, b->ada_pool)
                                    : vn_max_pool2d(ctx, y, b->stride));
}

vn_tensor *vn_vanilla_block_forward(vn_ctx *ctx, vn_vanilla_block *b, vn_tensor *x,
                                    float act_learn, bool training)
{
    vn_tensor *y;
    if (b->conv.weight) {
        y = vn_conv2d_layer_forward(ctx, &b->conv, x);
    } else {
        y = vn_conv2d_layer_forward(ctx, &b->conv1, x);
        y = then(ctx, y, vn_bn_layer_forward(ctx, &b->bn1, y, training));
        y = then(ctx, y, vn_leaky_relu(ctx, y, act_learn));
        y = then(ctx, y, vn_conv2d_layer_forward(ctx, &b->conv2, y));
        y = then(ctx, y, vn_bn_layer_forward(ctx, &b->bn2, y, training));
    }
    y = block_pool(ctx, b, y);
    if (b->shortcut_identity) {
        y = then(ctx, y, vn_add(ctx, y, x));
    } else if (b->shortcut_conv) {
        vn_tensor *s = block_pool(ctx, b, vn_conv2d_layer_forward(ctx, &b->shortcut, x));
        y = then(ctx, y, vn_add(ctx, y, s));
        vn_release(ctx, s);
    }
    return then(ctx, y, vn_series_act_forward(ctx, &b->act, y, training));
}

static vn_tensor *stem_forward(vn_ctx *ctx, vn_vanillanet *m, vn_tensor *x)
{
    if (x && (x->ndim != 4 || x->shape[3] != m->cfg.in_chans)) {
        char s[96];
        return vn_ctx_fail(ctx, VN_ERR_SHAPE, "model input %s should be [N, H, W, %d] (NHWC)",
                           vn_shape_str(x->ndim, x->shape, s, sizeof s), m->cfg.in_chans);
    }
    bool tr = m->training;
    vn_tensor *y = vn_conv2d_layer_forward(ctx, &m->stem1, x);
    if (!m->deploy) {
        y = then(ctx, y, vn_bn_layer_forward(ctx, &m->stem1_bn, y, tr));
        y = then(ctx, y, vn_leaky_relu(ctx, y, m->act_learn));
        y = then(ctx, y, vn_conv2d_layer_forward(ctx, &m->stem2, y));
        y = then(ctx, y, vn_bn_layer_forward(ctx, &m->stem2_bn, y, tr));
    }
    return then(ctx, y, vn_series_act_forward(ctx, &m->stem_act, y, tr));
}

vn_tensor *vn_vanillanet_forward(vn_ctx *ctx, vn_vanillanet *m, vn_tensor *x)
{
    vn_tensor *y = stem_forward(ctx, m, x);
    for (int i = 0; i < m->cfg.n_stages; i++)
        y = then(ctx, y, vn_vanilla_block_forward(ctx, &m->stages[i], y, m->act_learn, m->training));
    y = then(ctx, y, vn_global_avg_pool(ctx, y));
    y = then(ctx, y, vn_dropout(ctx, y, m->cfg.drop_rate, m->training));
    y = then(ctx, y, vn_conv2d_layer_forward(ctx, &m->cls1, y));
    if (!m->deploy) {
        y = then(ctx, y, vn_bn_layer_forward(ctx, &m->cls1_bn, y, m->training));
        y = then(ctx, y, vn_leaky_relu(ctx, y, m->act_learn));
        y = then(ctx, y, vn_conv2d_layer_forward(ctx, &m->cls2, y));
    }
    return vn_flatten(ctx, y);
}

int vn_vanillanet_forward_features(vn_ctx *ctx, vn_vanillanet *m, vn_tensor *x,
                                   vn_tensor **feats, int *channels)
{
    vn_tensor *y = stem_forward(ctx, m, x);
    feats[0] = y;
    channels[0] = m->cfg.dims[0];
    for (int i = 0; i < m->cfg.n_stages; i++) {
        y = vn_vanilla_block_forward(ctx, &m->stages[i], y, m->act_learn, m->training);
        feats[i + 1] = y;
        channels[i + 1] = m->cfg.dims[i + 1];
    }
    return y ? VN_OK : vn_ctx_status(ctx);
}

int64_t vn_vanillanet_count_params(const vn_vanillanet_config *c, bool deploy)
{
    int64_t k = 2 * c->act_num + 1, n = 0;
    int64_t d0 = c->dims[0], nc = c->num_classes, dl = c->dims[c->n_stages];
    int64_t bn = 2; /* trainable per channel: weight and bias */
    n += d0 * c->in_chans * 16 + d0;                            /* stem conv 4x4 */
    n += deploy ? d0 * k * k + d0 : d0 * k * k + bn * d0;       /* stem act */
    if (!deploy) n += bn * d0 + d0 * d0 + d0 + bn * d0;         /* stem1 BN, stem2 conv + BN */
    for (int i = 0; i < c->n_stages; i++) {
        int64_t a = c->dims[i], b = c->dims[i + 1];
        if (deploy) n += a * b + b;
        else n += a * a + a + bn * a + a * b + b + bn * b;
        if (c->shortcut == VN_SHORTCUT_IDENTITY && !(a == b && c->strides[i] == 1)) n += a * b + b;
        n += deploy ? b * k * k + b : b * k * k + bn * b;
    }
    n += dl * nc + nc;
    if (!deploy) n += bn * nc + nc * nc + nc;
    return n;
}
