/* VanillaNet: construction and state names (both read from the plan), initialisation and
 * forward. */
#include "models/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *vn__spec_layer(vn_vanillanet *m, vn_vanilla_block *b, const vn__layer_spec *s)
{
    if (s->stage >= 0 && !b) b = &m->stages[s->stage];
    switch (s->slot) {
    case VN__SLOT_STEM1: return &m->stem1;
    case VN__SLOT_STEM1_BN: return &m->stem1_bn;
    case VN__SLOT_STEM2: return &m->stem2;
    case VN__SLOT_STEM2_BN: return &m->stem2_bn;
    case VN__SLOT_STEM_ACT: return &m->stem_act;
    case VN__SLOT_CONV1: return &b->conv1;
    case VN__SLOT_BN1: return &b->bn1;
    case VN__SLOT_CONV2: return &b->conv2;
    case VN__SLOT_BN2: return &b->bn2;
    case VN__SLOT_CONV: return &b->conv;
    case VN__SLOT_SHORTCUT: return &b->shortcut;
    case VN__SLOT_ACT: return &b->act;
    case VN__SLOT_CLS1: return &m->cls1;
    case VN__SLOT_CLS1_BN: return &m->cls1_bn;
    case VN__SLOT_CLS2: return &m->cls2;
    case VN__SLOT_NONE: break;
    }
    return NULL;
}

int vn__spec_alloc(vn_vanillanet *m, vn_vanilla_block *b, const vn__layer_spec *s, bool deploy)
{
    void *layer = vn__spec_layer(m, b, s);
    if (s->kind == VN__LAYER_SHORTCUT) {
        if (!b) b = &m->stages[s->stage];
        b->shortcut_identity = vn__spec_is_identity(s);
        b->shortcut_conv = !b->shortcut_identity;
    }
    if (!vn__spec_has_state(s)) return VN_OK;
    switch (s->kind) {
    case VN__LAYER_SHORTCUT: /* a 1x1 conv */
    case VN__LAYER_CONV:
        return vn_conv2d_layer_init(layer, s->in_ch, s->out_ch, s->kernel, s->kernel, s->conv, s->bias);
    case VN__LAYER_BN: return vn_bn_layer_init(layer, s->out_ch, VN_VANILLANET_BN_EPS);
    case VN__LAYER_ACT: return vn_series_act_init(layer, s->out_ch, s->act_num, deploy);
    case VN__LAYER_POOL: case VN__LAYER_AVGPOOL: break;
    }
    return VN_OK;
}

int vn__spec_register(vn_vanillanet *m, vn_vanilla_block *b, const vn__layer_spec *s,
                      const char *prefix, vn_state_list *l)
{
    if (!vn__spec_has_state(s)) return VN_OK;
    char p[192];
    snprintf(p, sizeof p, "%s%s.", prefix, s->name);
    void *layer = vn__spec_layer(m, b, s);
    switch (s->kind) {
    case VN__LAYER_CONV: case VN__LAYER_SHORTCUT: return vn_conv2d_layer_register(layer, l, p);
    case VN__LAYER_BN: return vn_bn_layer_register(layer, l, p);
    case VN__LAYER_ACT: return vn_series_act_register(layer, l, p);
    case VN__LAYER_POOL: case VN__LAYER_AVGPOOL: break;
    }
    return VN_OK;
}

/* Allocates the layers of every spec of p, in the model m or the block b. */
static int alloc_layers(vn_vanillanet *m, vn_vanilla_block *b, const vn__plan *p)
{
    int rc = VN_OK;
    for (int i = 0; rc == VN_OK && i < p->n; i++) rc = vn__spec_alloc(m, b, &p->layers[i], p->deploy);
    return rc;
}

static void block_setup(vn_vanilla_block *b, int dim, int dim_out, int stride, int ada_pool)
{
    memset(b, 0, sizeof *b);
    b->dim = dim;
    b->dim_out = dim_out;
    b->stride = stride;
    b->ada_pool = ada_pool;
}

/* The plan of one block on its own (names relative to the block). */
static void block_plan(vn__plan *p, const vn_vanilla_block *b, int act_num, vn_shortcut shortcut,
                       bool deploy)
{
    p->deploy = deploy;
    p->n = p->units = 0;
    vn__plan_block(p, 0, b->dim, b->dim_out, b->stride, b->ada_pool, act_num, shortcut);
}

int vn_vanilla_block_init(vn_vanilla_block *b, int dim, int dim_out, int stride, int ada_pool,
                          int act_num, vn_shortcut shortcut, bool deploy)
{
    block_setup(b, dim, dim_out, stride, ada_pool);
    vn__plan p;
    block_plan(&p, b, act_num, shortcut, deploy);
    int rc = alloc_layers(NULL, b, &p);
    if (rc != VN_OK) vn_vanilla_block_free(b);
    return rc;
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
    vn__plan p;
    block_plan(&p, b, b->act.act_num,
               b->shortcut_identity || b->shortcut_conv ? VN_SHORTCUT_IDENTITY : VN_SHORTCUT_NONE,
               deploy);
    int rc = VN_OK;
    for (int i = 0; rc == VN_OK && i < p.n; i++) rc = vn__spec_register(NULL, b, &p.layers[i], prefix, l);
    return rc;
}

/* The official state_dict order: stem1, stem2 (or stem), stages, cls1, cls2 (or cls). */
int vn__vanillanet_register(vn_vanillanet *m)
{
    vn_state_list_free(&m->state);
    vn_state_list_init(&m->state);
    vn__plan p;
    vn__plan_build(&p, &m->cfg, m->deploy);
    int rc = VN_OK;
    char prefix[32];
    for (int i = 0; rc == VN_OK && i < p.n; i++) {
        const vn__layer_spec *s = &p.layers[i];
        if (s->stage >= 0) snprintf(prefix, sizeof prefix, "stages.%d.", s->stage);
        else prefix[0] = '\0';
        rc = vn__spec_register(m, NULL, s, prefix, &m->state);
    }
    return rc;
}

int vn_vanillanet_create(const vn_vanillanet_config *cfg, bool deploy, vn_vanillanet **out,
                         vn_error *err)
{
    if (!out) return vn_error_set(err, VN_ERR_INVALID, "vn_vanillanet_create: NULL output");
    *out = NULL;
    if (!cfg) return vn_error_set(err, VN_ERR_INVALID, "vn_vanillanet_create: NULL config");
    int rc = vn_vanillanet_config_check(cfg, err);
    if (rc != VN_OK) return rc;
    vn_vanillanet *m = calloc(1, sizeof *m);
    if (!m) return vn_error_set(err, VN_ERR_NOMEM, "out of memory for the model");
    m->cfg = *cfg;
    m->deploy = deploy;
    m->training = true;
    m->act_learn = 1.0f;
    m->stages = calloc((size_t)cfg->n_stages, sizeof *m->stages);
    if (!m->stages) rc = VN_ERR_NOMEM;
    for (int i = 0; rc == VN_OK && i < cfg->n_stages; i++)
        block_setup(&m->stages[i], cfg->dims[i], cfg->dims[i + 1], cfg->strides[i],
                    cfg->ada_pool_enabled ? cfg->ada_pool[i] : 0);
    vn__plan p;
    vn__plan_build(&p, cfg, deploy);
    if (rc == VN_OK) rc = alloc_layers(m, NULL, &p);
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
        y = then(ctx, y, vn_bn_layer_forward_leaky(ctx, &b->bn1, y, training, act_learn));
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
        y = then(ctx, y, vn_bn_layer_forward_leaky(ctx, &m->stem1_bn, y, tr, m->act_learn));
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
        y = then(ctx, y, vn_bn_layer_forward_leaky(ctx, &m->cls1_bn, y, m->training, m->act_learn));
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
    vn__plan p;
    vn__plan_build(&p, c, deploy);
    int64_t n = 0;
    for (int i = 0; i < p.n; i++) n += vn__spec_params(&p.layers[i]);
    return n;
}
