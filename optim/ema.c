/* Model EMA (see vn_ema.h). */
#include "optim/vn_ema.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim_impl.h"

typedef struct ema_pair {
    vn_tensor *dst;
    vn_tensor *src;
    char *name; /* prefix + name */
} ema_pair;

typedef struct ema_counter {
    int64_t *dst;
    const int64_t *src;
    char *name;
} ema_counter;

struct vn_ema {
    double decay;
    char *prefix;
    int n;
    ema_pair *pairs;
    int n_counters, cap_counters;
    ema_counter *counters;
};

void vn_ema_destroy(vn_ema *ema)
{
    if (!ema) return;
    for (int i = 0; i < ema->n; i++) free(ema->pairs[i].name);
    for (int i = 0; i < ema->n_counters; i++) free(ema->counters[i].name);
    free(ema->pairs);
    free(ema->counters);
    free(ema->prefix);
    free(ema);
}

int vn_ema_create(vn_ema **out, double decay, int n, vn_tensor *const *dst,
                  vn_tensor *const *src, const char *const *names, const char *prefix,
                  vn_error *err)
{
    if (!out) return vn_error_set(err, VN_ERR_INVALID, "vn_ema_create: out is NULL");
    *out = NULL;
    if (!(decay > 0.0 && decay <= 1.0))
        return vn_error_set(err, VN_ERR_INVALID, "model EMA: decay must be in (0, 1] (got %g)",
                            decay);
    if (n < 0 || (n > 0 && (!dst || !src)))
        return vn_error_set(err, VN_ERR_INVALID, "model EMA: missing tensor lists");
    vn_ema *e = calloc(1, sizeof *e);
    if (!e) return vn_error_set(err, VN_ERR_NOMEM, "model EMA: out of memory");
    e->decay = decay;
    e->prefix = vn__concat(prefix, NULL, NULL);
    e->pairs = calloc((size_t)(n ? n : 1), sizeof *e->pairs);
    if (!e->prefix || !e->pairs) {
        vn_ema_destroy(e);
        return vn_error_set(err, VN_ERR_NOMEM, "model EMA: out of memory");
    }
    for (int i = 0; i < n; i++) {
        const char *name = names ? names[i] : (dst[i] ? dst[i]->name : NULL);
        if (!name || !*name) {
            vn_ema_destroy(e);
            return vn_error_set(err, VN_ERR_INVALID, "model EMA: tensor %d has no name", i);
        }
        if (!dst[i] || !src[i] || !dst[i]->data || !src[i]->data) {
            vn_ema_destroy(e);
            return vn_error_set(err, VN_ERR_INVALID, "model EMA: tensor '%s' is missing", name);
        }
        if (dst[i] == src[i] || dst[i]->data == src[i]->data) {
            vn_ema_destroy(e);
            return vn_error_set(err, VN_ERR_INVALID,
                                "model EMA: '%s' is the same tensor in the EMA and the model "
                                "(the EMA needs its own copy of the model)", name);
        }
        if (!vn_tensor_same_shape(dst[i], src[i])) {
            char a[64], b[64];
            vn_shape_str(dst[i]->ndim, dst[i]->shape, a, sizeof a);
            vn_shape_str(src[i]->ndim, src[i]->shape, b, sizeof b);
            vn_ema_destroy(e);
            return vn_error_set(err, VN_ERR_SHAPE,
                                "model EMA: '%s' has shape %s in the EMA model but %s in the "
                                "model", name, a, b);
        }
        e->pairs[i].dst = dst[i];
        e->pairs[i].src = src[i];
        e->pairs[i].name = vn__concat(prefix, name, NULL);
        e->n = i + 1;
        if (!e->pairs[i].name) {
            vn_ema_destroy(e);
            return vn_error_set(err, VN_ERR_NOMEM, "model EMA: out of memory");
        }
    }
    vn_ema_copy_from_model(e);
    *out = e;
    return VN_OK;
}

int vn_ema_add_counter(vn_ema *ema, const char *name, int64_t *dst, const int64_t *src,
                       vn_error *err)
{
    if (!name || !*name || !dst || !src || dst == src)
        return vn_error_set(err, VN_ERR_INVALID, "model EMA: invalid counter '%s'",
                            name ? name : "(null)");
    if (ema->n_counters == ema->cap_counters) {
        int cap = ema->cap_counters ? 2 * ema->cap_counters : 16;
        ema_counter *c = realloc(ema->counters, (size_t)cap * sizeof *c);
        if (!c) return vn_error_set(err, VN_ERR_NOMEM, "model EMA: out of memory");
        ema->counters = c;
        ema->cap_counters = cap;
    }
    char *full = vn__concat(ema->prefix, name, NULL);
    if (!full) return vn_error_set(err, VN_ERR_NOMEM, "model EMA: out of memory");
    ema->counters[ema->n_counters++] = (ema_counter){.dst = dst, .src = src, .name = full};
    *dst = *src;
    return VN_OK;
}

void vn_ema_copy_from_model(vn_ema *ema)
{
    for (int i = 0; i < ema->n; i++) {
        vn_tensor *dst = ema->pairs[i].dst, *src = ema->pairs[i].src;
        if (dst->device == VN_DEVICE_CPU && src->device == VN_DEVICE_CPU) {
            vn_tensor_copy_data(dst, src);
            continue;
        }
        float *tmp = malloc((size_t)src->numel * sizeof(float));
        if (tmp && vn_tensor_read(src, tmp) == VN_OK) (void)vn_tensor_write(dst, tmp);
        free(tmp);
    }
    for (int i = 0; i < ema->n_counters; i++) *ema->counters[i].dst = *ema->counters[i].src;
}

double vn_ema_decay(const vn_ema *ema) { return ema->decay; }

int vn_ema_set_decay(vn_ema *ema, double decay, vn_error *err)
{
    if (!(decay >= 0.0 && decay <= 1.0))
        return vn_error_set(err, VN_ERR_INVALID, "model EMA: decay must be in [0, 1] (got %g)",
                            decay);
    ema->decay = decay;
    return VN_OK;
}

double vn_ema_ramped_decay(double decay, double tau, int64_t updates)
{
    if (!(tau > 0)) return decay;
    return decay * (1.0 - exp(-(double)updates / tau));
}

int64_t vn_ema_blend_i64(int64_t ema, int64_t value, double decay)
{
    /* int64 * python float promotes to float32 in torch; copy_ back truncates toward 0. */
    float blended = (float)ema * (float)decay + (float)(1.0 - decay) * (float)value;
    if (!(blended > -9.2e18f && blended < 9.2e18f)) return ema;
    return (int64_t)blended;
}

typedef struct blend_args {
    float *e;
    const float *x;
    float d, c;
} blend_args;

static void blend_range(void *arg, int64_t lo, int64_t hi)
{
    const blend_args *a = arg;
    float *restrict e = a->e;
    const float *restrict x = a->x;
    const float d = a->d, c = a->c;
    /* timm: ema_v * decay + (1. - decay) * model_v, three float32 roundings. */
    for (int64_t i = lo; i < hi; i++) e[i] = e[i] * d + c * x[i];
}

static void blend_f32(float *e, const float *x, int64_t n, float d, float c)
{
    blend_args a = {e, x, d, c};
    vn__for_chunks(n, blend_range, &a);
}

void vn_ema_update(vn_ema *ema)
{
    float d = (float)ema->decay, c = (float)(1.0 - ema->decay);
    for (int i = 0; i < ema->n; i++) {
        if (ema->pairs[i].dst->device != VN_DEVICE_CPU) {
            (void)vn__backend_must(ema->pairs[i].dst->device)->ema_blend(
                ema->pairs[i].dst->data, ema->pairs[i].src->data, ema->pairs[i].dst->numel, d, c);
            continue;
        }
        blend_f32(ema->pairs[i].dst->data, ema->pairs[i].src->data, ema->pairs[i].dst->numel, d,
                  c);
    }
    for (int i = 0; i < ema->n_counters; i++)
        *ema->counters[i].dst =
            vn_ema_blend_i64(*ema->counters[i].dst, *ema->counters[i].src, ema->decay);
}

int vn_ema_state_count(const vn_ema *ema) { return ema->n + ema->n_counters; }

int vn_ema_state_at(const vn_ema *ema, int i, vn_ckpt_entry *e)
{
    if (i < 0 || i >= ema->n + ema->n_counters) return VN_ERR_INVALID;
    memset(e, 0, sizeof *e);
    if (i < ema->n) {
        const ema_pair *p = &ema->pairs[i];
        e->name = p->name;
        e->dtype = VN_DTYPE_F32;
        e->ndim = p->dst->ndim;
        for (int d = 0; d < p->dst->ndim; d++) e->shape[d] = p->dst->shape[d];
        e->numel = p->dst->numel;
        e->data = p->dst->data;
        return VN_OK;
    }
    const ema_counter *c = &ema->counters[i - ema->n];
    e->name = c->name;
    e->dtype = VN_DTYPE_I64;
    e->ndim = 0;
    e->numel = 1;
    e->data = c->dst;
    return VN_OK;
}

int vn_ema_state_find(const vn_ema *ema, const char *name, vn_ckpt_entry *out, vn_error *err)
{
    int n = vn_ema_state_count(ema);
    for (int i = 0; name && i < n; i++) {
        vn_ema_state_at(ema, i, out);
        if (strcmp(out->name, name) == 0) return VN_OK;
    }
    return vn_error_set(err, VN_ERR_NOT_FOUND, "model EMA state has no entry '%s'",
                        name ? name : "(null)");
}
