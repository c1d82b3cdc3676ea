/* The VanillaNet plan (see plan.h): the one place that spells out the architecture. */
#include "models/plan.h"

#include <stdio.h>
#include <string.h>

/* Official: stride 4, padding 0; with ada_pool stride 3, padding 1 (kernel 4 in both). */
static vn_conv_params stem_conv(const vn_vanillanet_config *c)
{
    return c->ada_pool_enabled ? VN_CONV(3, 1, 1) : VN_CONV(4, 0, 1);
}

static vn__layer_spec *add(vn__plan *p, vn__layer_kind kind, vn__slot slot, int stage,
                           const char *name)
{
    VN_ASSERT(p->n < VN__PLAN_MAX, "the plan holds %d layers; raise VN__PLAN_MAX", VN__PLAN_MAX);
    vn__layer_spec *s = &p->layers[p->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->slot = slot;
    s->stage = stage;
    s->unit = p->units;
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

static void unit(vn__plan *p) { p->units++; }

static void conv(vn__plan *p, vn__slot slot, int stage, const char *name, int in_ch, int out_ch,
                 int kernel, vn_conv_params cp)
{
    vn__layer_spec *s = add(p, VN__LAYER_CONV, slot, stage, name);
    s->in_ch = in_ch;
    s->out_ch = out_ch;
    s->kernel = kernel;
    s->conv = cp;
    s->bias = true;
}

static void conv1x1(vn__plan *p, vn__slot slot, int stage, const char *name, int in_ch, int out_ch)
{
    conv(p, slot, stage, name, in_ch, out_ch, 1, VN_CONV(1, 0, 1));
}

static void bn(vn__plan *p, vn__slot slot, int stage, const char *name, int channels)
{
    vn__layer_spec *s = add(p, VN__LAYER_BN, slot, stage, name);
    s->in_ch = s->out_ch = channels;
}

static void act(vn__plan *p, vn__slot slot, int stage, const char *name, int dim, int act_num)
{
    unit(p);
    vn__layer_spec *s = add(p, VN__LAYER_ACT, slot, stage, name);
    s->in_ch = s->out_ch = dim;
    s->act_num = act_num;
    s->kernel = 2 * act_num + 1;
    s->bias = p->deploy; /* deploy: the BN is folded into a bias */
}

/* train: stem1 = conv 4x4 + BN, stem2 = conv 1x1 + BN + act; deploy: stem = conv + act. */
static void plan_stem(vn__plan *p, const vn_vanillanet_config *c)
{
    const int d0 = c->dims[0], k = VN_VANILLANET_STEM_KERNEL;
    unit(p);
    if (p->deploy) {
        conv(p, VN__SLOT_STEM1, -1, "stem.0", c->in_chans, d0, k, stem_conv(c));
        act(p, VN__SLOT_STEM_ACT, -1, "stem.1", d0, c->act_num);
        return;
    }
    conv(p, VN__SLOT_STEM1, -1, "stem1.0", c->in_chans, d0, k, stem_conv(c));
    bn(p, VN__SLOT_STEM1_BN, -1, "stem1.1", d0);
    conv1x1(p, VN__SLOT_STEM2, -1, "stem2.0", d0, d0);
    bn(p, VN__SLOT_STEM2_BN, -1, "stem2.1", d0);
    act(p, VN__SLOT_STEM_ACT, -1, "stem2.2", d0, c->act_num);
}

/* train: conv1 = 1x1 + BN, conv2 = 1x1 + BN; deploy: conv = 1x1. Then the pooling (stride >
 * 1), the shortcut (when configured) and the activation. */
void vn__plan_block(vn__plan *p, int stage, int dim, int dim_out, int stride, int ada_pool,
                    int act_num, vn_shortcut shortcut)
{
    unit(p);
    if (p->deploy) {
        conv1x1(p, VN__SLOT_CONV, stage, "conv", dim, dim_out);
    } else {
        conv1x1(p, VN__SLOT_CONV1, stage, "conv1.0", dim, dim);
        bn(p, VN__SLOT_BN1, stage, "conv1.1", dim);
        conv1x1(p, VN__SLOT_CONV2, stage, "conv2.0", dim, dim_out);
        bn(p, VN__SLOT_BN2, stage, "conv2.1", dim_out);
    }
    if (stride > 1) {
        vn__layer_spec *s = add(p, VN__LAYER_POOL, VN__SLOT_NONE, stage, "pool");
        s->stride = stride;
        s->ada_pool = ada_pool;
    }
    if (shortcut == VN_SHORTCUT_IDENTITY) {
        unit(p);
        vn__layer_spec *s = add(p, VN__LAYER_SHORTCUT, VN__SLOT_SHORTCUT, stage, "shortcut");
        s->in_ch = dim;
        s->out_ch = dim_out;
        s->kernel = 1; /* when not the identity */
        s->conv = VN_CONV(1, 0, 1);
        s->bias = true;
        s->stride = stride;
        s->ada_pool = ada_pool;
    }
    act(p, VN__SLOT_ACT, stage, "act", dim_out, act_num);
}

/* train: cls1 = avgpool, dropout, conv 1x1 + BN; cls2 = conv 1x1; deploy: cls = avgpool,
 * dropout, conv 1x1. Dropout has no state and keeps shapes: the forward adds it. */
static void plan_classifier(vn__plan *p, const vn_vanillanet_config *c)
{
    const int nc = c->num_classes, dl = c->dims[c->n_stages];
    unit(p);
    add(p, VN__LAYER_AVGPOOL, VN__SLOT_NONE, -1, p->deploy ? "cls.0" : "cls1.0");
    if (p->deploy) {
        conv1x1(p, VN__SLOT_CLS1, -1, "cls.2", dl, nc);
        return;
    }
    conv1x1(p, VN__SLOT_CLS1, -1, "cls1.2", dl, nc);
    bn(p, VN__SLOT_CLS1_BN, -1, "cls1.3", nc);
    conv1x1(p, VN__SLOT_CLS2, -1, "cls2.0", nc, nc);
}

void vn__plan_build(vn__plan *p, const vn_vanillanet_config *c, bool deploy)
{
    p->deploy = deploy;
    p->n = p->units = 0;
    plan_stem(p, c);
    for (int i = 0; i < c->n_stages; i++)
        vn__plan_block(p, i, c->dims[i], c->dims[i + 1], c->strides[i],
                       c->ada_pool_enabled ? c->ada_pool[i] : 0, c->act_num, c->shortcut);
    plan_classifier(p, c);
}

bool vn__spec_is_identity(const vn__layer_spec *s)
{
    return s->in_ch == s->out_ch && s->stride == 1;
}

/* Each switch over the kinds lists every kind (no default), so that -Wswitch names the places
 * a new kind must be handled. */
bool vn__spec_has_state(const vn__layer_spec *s)
{
    switch (s->kind) {
    case VN__LAYER_CONV: case VN__LAYER_BN: case VN__LAYER_ACT: return true;
    case VN__LAYER_SHORTCUT: return !vn__spec_is_identity(s);
    case VN__LAYER_POOL: case VN__LAYER_AVGPOOL: return false;
    }
    return false;
}

int64_t vn__spec_params(const vn__layer_spec *s)
{
    int64_t in = s->in_ch, out = s->out_ch, k2 = (int64_t)s->kernel * s->kernel;
    switch (s->kind) {
    case VN__LAYER_BN: return 2 * out; /* weight and bias; running statistics are buffers */
    case VN__LAYER_ACT: return out * k2 + (s->bias ? out : 2 * out);
    case VN__LAYER_SHORTCUT:
        if (vn__spec_is_identity(s)) return 0;
        return out * in * k2 + out; /* a 1x1 conv with bias */
    case VN__LAYER_CONV: return out * (in / s->conv.groups) * k2 + (s->bias ? out : 0);
    case VN__LAYER_POOL: case VN__LAYER_AVGPOOL: return 0;
    }
    return 0;
}
