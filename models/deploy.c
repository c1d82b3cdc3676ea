/* switch_to_deploy: fold BatchNorm into convs and merge consecutive linear convs.
 *
 * The merge reads the plan: every deploy spec with state is computed from the training specs
 * of the same unit (a chain of convs, each optionally followed by a BN, or a training
 * activation). The deploy model is built beside the training one and takes its place only
 * when every layer has been computed, so a failure leaves the training model untouched. */
#include "models/plan.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One conv with its BN (if any) folded in: weight [out, per] (OHWI rows) and bias [out]. */
typedef struct folded {
    float *w, *b;
    int64_t out, per;
} folded;

static void folded_free(folded *f)
{
    free(f->w);
    free(f->b);
    memset(f, 0, sizeof *f);
}

/* The conv of spec i of the training plan, with the BN right after it in its unit folded in. */
static int fold_conv(folded *f, vn_vanillanet *m, const vn__plan *tp, int i)
{
    const vn__layer_spec *s = &tp->layers[i], *next = i + 1 < tp->n ? &tp->layers[i + 1] : NULL;
    const vn_conv2d_layer *c = vn__spec_layer(m, NULL, s);
    const vn_bn_layer *bn = next && next->unit == s->unit && next->kind == VN__LAYER_BN
                                ? vn__spec_layer(m, NULL, next) : NULL;
    f->out = c->out_ch;
    f->per = c->weight->numel / c->out_ch;
    f->w = malloc((size_t)c->weight->numel * sizeof *f->w);
    f->b = malloc((size_t)f->out * sizeof *f->b);
    if (!f->w || !f->b) return VN_ERR_NOMEM;
    memcpy(f->w, c->weight->data, (size_t)c->weight->numel * sizeof *f->w);
    if (bn) vn_bn_fold(bn, f->w, f->per, c->bias ? c->bias->data : NULL, f->b);
    else if (c->bias) memcpy(f->b, c->bias->data, (size_t)f->out * sizeof *f->b);
    else memset(f->b, 0, (size_t)f->out * sizeof *f->b);
    return VN_OK;
}

/* A second 1x1 conv f2 ([o2, o1]) after f1 ([o1, per]): W = W2 @ W1, b = b2 + W2 @ b1. */
static void compose(vn_conv2d_layer *dst, const folded *f2, const folded *f1)
{
    const int64_t o2 = f2->out, o1 = f1->out, per = f1->per;
    VN_ASSERT(f2->per == o1 && dst->weight->numel == o2 * per, "merged convs do not chain");
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)o2, (int)per, (int)o1, 1.0f, f2->w,
                (int)o1, f1->w, (int)per, 0.0f, dst->weight->data, (int)per);
    for (int64_t i = 0; i < o2; i++) {
        double s = f2->b[i];
        for (int64_t j = 0; j < o1; j++) s += (double)f2->w[i * o1 + j] * f1->b[j];
        dst->bias->data[i] = (float)s;
    }
}

/* The convs of one unit (one or two, each with its BN) merged into dst. */
static int merge_convs(vn_conv2d_layer *dst, vn_vanillanet *m, const vn__plan *tp, int unit)
{
    int idx[2], k = 0;
    for (int i = 0; i < tp->n; i++) {
        if (tp->layers[i].unit != unit || tp->layers[i].kind != VN__LAYER_CONV) continue;
        VN_ASSERT(k < 2, "a merge unit has more than two convs: extend merge_convs in deploy.c");
        idx[k++] = i;
    }
    VN_ASSERT(k > 0, "deploy conv without training convs in its unit (see plan.c)");
    folded f1 = {0}, f2 = {0};
    int rc = fold_conv(&f1, m, tp, idx[0]);
    if (rc == VN_OK && k == 2) rc = fold_conv(&f2, m, tp, idx[1]);
    if (rc == VN_OK && k == 2) {
        compose(dst, &f2, &f1);
    } else if (rc == VN_OK) {
        memcpy(dst->weight->data, f1.w, (size_t)dst->weight->numel * sizeof *f1.w);
        memcpy(dst->bias->data, f1.b, (size_t)f1.out * sizeof *f1.b);
    }
    folded_free(&f1);
    folded_free(&f2);
    return rc;
}

static const vn__layer_spec *find_in_unit(const vn__plan *p, int unit, vn__layer_kind kind)
{
    for (int i = 0; i < p->n; i++)
        if (p->layers[i].unit == unit && p->layers[i].kind == kind) return &p->layers[i];
    return NULL;
}

/* Computes every layer of the deploy model d from the training model m (m is only read). */
static int fill_deploy(vn_vanillanet *d, vn_vanillanet *m)
{
    vn__plan tp, dp;
    vn__plan_build(&tp, &m->cfg, false);
    vn__plan_build(&dp, &m->cfg, true);
    int rc = VN_OK;
    for (int i = 0; rc == VN_OK && i < dp.n; i++) {
        const vn__layer_spec *s = &dp.layers[i];
        const vn__layer_spec *src = find_in_unit(&tp, s->unit, s->kind);
        switch (s->kind) {
        case VN__LAYER_CONV:
            rc = merge_convs(vn__spec_layer(d, NULL, s), m, &tp, s->unit);
            break;
        case VN__LAYER_ACT:
            VN_ASSERT(src, "deploy activation %s has no training activation in its unit", s->name);
            vn_series_act_fold(vn__spec_layer(d, NULL, s), vn__spec_layer(m, NULL, src));
            break;
        case VN__LAYER_POOL: case VN__LAYER_AVGPOOL: /* no state */
            break;
        case VN__LAYER_BN: case VN__LAYER_SHORTCUT: /* never in a deploy plan that merges */
            VN_ASSERT(false, "no merge rule for deploy layer %s", s->name);
        }
    }
    return rc;
}

/* m takes over d's layers and state list; nothing here can fail. */
static void take_over(vn_vanillanet *m, vn_vanillanet *d)
{
    vn__vanillanet_free_layers(m);
    free(m->stages);
    vn_state_list_free(&m->state);
    const bool training = m->training;
    *m = *d;
    m->training = training;
    /* BN counters live inside the struct: those that pointed into *d now live in *m. */
    const uintptr_t lo = (uintptr_t)d, hi = lo + sizeof *d;
    for (int i = 0; i < m->state.n; i++) {
        vn_state_item *e = &m->state.items[i];
        uintptr_t at = (uintptr_t)e->count;
        if (e->kind == VN_STATE_COUNT && at >= lo && at < hi) e->count = (int64_t *)((char *)m + (at - lo));
    }
    free(d);
}

int vn_vanillanet_switch_to_deploy(vn_vanillanet *m, bool force, vn_error *err)
{
    if (m->deploy) return vn_error_set(err, VN_ERR_STATE, "the model is already in deploy form");
    if (m->cfg.shortcut != VN_SHORTCUT_NONE)
        return vn_error_set(err, VN_ERR_UNSUPPORTED, "deploy merging is not defined for models with "
                            "shortcuts (the shortcut ablation): the blocks are not a chain of convs");
    if (m->act_learn != 1.0f && !force)
        return vn_error_set(err, VN_ERR_STATE, "act_learn is %g, not 1: conv1 and conv2 are separated "
                            "by a leaky ReLU and cannot be merged exactly (finish deep training, or "
                            "force an inexact merge)", (double)m->act_learn);
    vn_vanillanet *d = NULL;
    int rc = vn_vanillanet_create(&m->cfg, true, &d, NULL);
    if (rc == VN_OK) rc = fill_deploy(d, m);
    if (rc != VN_OK) {
        vn_vanillanet_destroy(d);
        return vn_error_set(err, rc, "out of memory merging the model into deploy form (%lld "
                            "parameters); the training model is unchanged",
                            (long long)vn_vanillanet_count_params(&m->cfg, true));
    }
    take_over(m, d);
    return VN_OK;
}
