/* switch_to_deploy: fold BatchNorm into convs and merge consecutive linear convs. */
#include "models/vn_vanillanet.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int vn__vanillanet_register(vn_vanillanet *m);
void vn__vanillanet_free_layers(vn_vanillanet *m);

/* conv + BN -> weight and bias (w is [out, per] with per = kh*kw*in). */
static void fold(const vn_conv2d_layer *c, const vn_bn_layer *bn, float *w, float *b)
{
    int64_t per = c->weight->numel / c->out_ch;
    memcpy(w, c->weight->data, (size_t)c->weight->numel * sizeof *w);
    vn_bn_fold(bn, w, per, c->bias ? c->bias->data : NULL, b);
}

/* Second conv (1x1, [o2, o1] with bias b2) after a first conv ([o1, per], bias b1):
 * W = W2 @ W1, b = b2 + W2 @ b1, written into dst (a conv layer of shape [o2, ..., per]). */
static void merge(vn_conv2d_layer *dst, const float *w2, const float *b2, int64_t o2,
                  const float *w1, const float *b1, int64_t o1, int64_t per)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)o2, (int)per, (int)o1, 1.0f, w2,
                (int)o1, w1, (int)per, 0.0f, dst->weight->data, (int)per);
    for (int64_t i = 0; i < o2; i++) {
        double s = b2[i];
        for (int64_t j = 0; j < o1; j++) s += (double)w2[i * o1 + j] * b1[j];
        dst->bias->data[i] = (float)s;
    }
}

typedef struct scratch {
    float *w1, *b1, *w2, *b2;
} scratch;

static int scratch_alloc(scratch *s, int64_t w1, int64_t b1, int64_t w2, int64_t b2)
{
    s->w1 = malloc((size_t)w1 * sizeof(float));
    s->b1 = malloc((size_t)b1 * sizeof(float));
    s->w2 = malloc((size_t)w2 * sizeof(float));
    s->b2 = malloc((size_t)b2 * sizeof(float));
    return s->w1 && s->b1 && s->w2 && s->b2 ? VN_OK : VN_ERR_NOMEM;
}

static void scratch_free(scratch *s)
{
    free(s->w1);
    free(s->b1);
    free(s->w2);
    free(s->b2);
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

    const vn_vanillanet_config *c = &m->cfg;
    vn_vanillanet *d = NULL;
    int rc = vn_vanillanet_create(c, true, &d, err);
    if (rc != VN_OK) return rc;
    d->training = m->training;
    scratch s = {0};

    /* stem: stem2 . stem1 with both BNs folded */
    int64_t d0 = c->dims[0], per = 16 * (int64_t)c->in_chans;
    rc = scratch_alloc(&s, d0 * per, d0, d0 * d0, d0);
    if (rc == VN_OK) {
        fold(&m->stem1, &m->stem1_bn, s.w1, s.b1);
        fold(&m->stem2, &m->stem2_bn, s.w2, s.b2);
        merge(&d->stem1, s.w2, s.b2, d0, s.w1, s.b1, d0, per);
    }
    scratch_free(&s);
    if (rc == VN_OK) rc = vn_series_act_to_deploy(&m->stem_act);

    for (int i = 0; rc == VN_OK && i < c->n_stages; i++) {
        vn_vanilla_block *b = &m->stages[i];
        rc = scratch_alloc(&s, (int64_t)b->dim * b->dim, b->dim, (int64_t)b->dim_out * b->dim, b->dim_out);
        if (rc == VN_OK) {
            fold(&b->conv1, &b->bn1, s.w1, s.b1);
            fold(&b->conv2, &b->bn2, s.w2, s.b2);
            merge(&d->stages[i].conv, s.w2, s.b2, b->dim_out, s.w1, s.b1, b->dim, b->dim);
            rc = vn_series_act_to_deploy(&b->act);
        }
        scratch_free(&s);
    }

    /* classifier: cls2 . (cls1 conv with BN folded) */
    int64_t nc = c->num_classes, dl = c->dims[c->n_stages];
    if (rc == VN_OK) rc = scratch_alloc(&s, nc * dl, nc, 1, 1);
    if (rc == VN_OK) {
        fold(&m->cls1, &m->cls1_bn, s.w1, s.b1);
        merge(&d->cls1, m->cls2.weight->data, m->cls2.bias->data, nc, s.w1, s.b1, nc, dl);
    }
    scratch_free(&s);
    if (rc != VN_OK) {
        vn_vanillanet_destroy(d);
        return vn_error_set(err, rc, "out of memory merging the model");
    }

    /* Move the folded activations into the deploy model, then take its layers over. */
    vn_series_act_free(&d->stem_act);
    d->stem_act = m->stem_act;
    memset(&m->stem_act, 0, sizeof m->stem_act);
    for (int i = 0; i < c->n_stages; i++) {
        vn_series_act_free(&d->stages[i].act);
        d->stages[i].act = m->stages[i].act;
        memset(&m->stages[i].act, 0, sizeof m->stages[i].act);
    }
    vn__vanillanet_free_layers(m);
    free(m->stages);
    vn_state_list_free(&m->state);
    bool training = m->training;
    *m = *d;
    memset(&d->state, 0, sizeof d->state);
    free(d);
    m->training = training;
    m->act_learn = 1.0f;
    return vn__vanillanet_register(m);
}
