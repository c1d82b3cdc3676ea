/* The named state list and its safetensors I/O. */
#include "layers/vn_layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vn_state_list_init(vn_state_list *l) { memset(l, 0, sizeof *l); }

void vn_state_list_free(vn_state_list *l)
{
    for (int i = 0; i < l->n; i++) free(l->items[i].name);
    free(l->items);
    memset(l, 0, sizeof *l);
}

int vn_state_add(vn_state_list *l, const char *prefix, const char *name, vn_state_kind kind,
                 vn_tensor *t, int64_t *count)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        vn_state_item *ni = realloc(l->items, (size_t)cap * sizeof *ni);
        if (!ni) return VN_ERR_NOMEM;
        l->items = ni;
        l->cap = cap;
    }
    size_t len = strlen(prefix) + strlen(name) + 1;
    char *full = malloc(len);
    if (!full) return VN_ERR_NOMEM;
    snprintf(full, len, "%s%s", prefix, name);
    vn_state_item *e = &l->items[l->n++];
    e->name = full;
    e->kind = kind;
    e->tensor = t;
    e->count = count;
    if (t) {
        t->name = full;
        if (kind == VN_STATE_PARAM) {
            t->flags |= VN_TENSOR_PARAM;
            if (t->ndim <= 1) t->flags |= VN_TENSOR_NO_DECAY;
        }
    }
    return VN_OK;
}

const vn_state_item *vn_state_find(const vn_state_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0) return &l->items[i];
    return NULL;
}

void vn_state_drop_grads(const vn_state_list *l)
{
    for (int i = 0; i < l->n; i++)
        if (l->items[i].kind == VN_STATE_PARAM && l->items[i].tensor)
            vn_tensor_drop_grad(l->items[i].tensor);
}

int64_t vn_state_numel(const vn_state_list *l, vn_state_kind kind)
{
    int64_t n = 0;
    for (int i = 0; i < l->n; i++)
        if (l->items[i].kind == kind) n += kind == VN_STATE_COUNT ? 1 : l->items[i].tensor->numel;
    return n;
}

/* File shape of a float tensor: OHWI [o, kh, kw, i] is stored as OIHW [o, i, kh, kw]. */
static void file_shape(const vn_tensor *t, int64_t *shape)
{
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
    if ((t->flags & VN_TENSOR_OHWI) && t->ndim == 4) {
        shape[1] = t->shape[3];
        shape[2] = t->shape[1];
        shape[3] = t->shape[2];
    }
}

/* A float tensor in file layout. A tensor on a device is read into host memory first (the
 * file is the same whichever device holds the model). */
static int tensor_to_writer(const vn_tensor *t, const char *name, vn_st_writer *w, vn_error *err)
{
    int64_t shape[VN_MAX_DIMS];
    file_shape(t, shape);
    bool ohwi = (t->flags & VN_TENSOR_OHWI) && t->ndim == 4, dev = t->device != VN_DEVICE_CPU;
    if (!ohwi && !dev) return vn_st_add(w, name, VN_DTYPE_F32, t->ndim, shape, t->data, err);
    size_t bytes = (size_t)t->numel * sizeof(float);
    float *host = dev ? malloc(bytes ? bytes : 1) : t->data;
    float *tmp = ohwi ? malloc(bytes ? bytes : 1) : host;
    int rc = !host || !tmp ? vn_error_set(err, VN_ERR_NOMEM, "out of memory writing %s", name)
                           : VN_OK;
    if (rc == VN_OK && dev && vn_tensor_read(t, host) != VN_OK)
        rc = vn_error_set(err, VN_ERR_IO, "reading %s back from %s failed", name,
                          vn_device_name(t->device));
    if (rc == VN_OK && ohwi)
        vn_ohwi_to_oihw(tmp, host, t->shape[0], t->shape[3], t->shape[1], t->shape[2]);
    if (rc == VN_OK) rc = vn_st_add(w, name, VN_DTYPE_F32, t->ndim, shape, tmp, err);
    if (ohwi) free(tmp);
    if (dev) free(host);
    return rc;
}

int vn_state_to_writer(const vn_state_list *l, const char *prefix, vn_st_writer *w, vn_error *err)
{
    char name[512];
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *e = &l->items[i];
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        int rc = e->kind == VN_STATE_COUNT
                     ? vn_st_add(w, name, VN_DTYPE_I64, 0, NULL, e->count, err)
                     : tensor_to_writer(e->tensor, name, w, err);
        if (rc != VN_OK) return rc;
    }
    return VN_OK;
}

int vn_state_check_file(const vn_state_list *l, const char *prefix, const vn_st_file *f,
                        bool strict, vn_error *err)
{
    char name[512], want[128], got[128];
    size_t plen = strlen(prefix);
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *e = &l->items[i];
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        const vn_st_entry *fe = vn_st_find(f, name);
        /* A missing num_batches_tracked keeps its value, as torch's load_state_dict does. */
        if (!fe && e->kind == VN_STATE_COUNT) continue;
        if (!fe)
            return vn_error_set(err, VN_ERR_NOT_FOUND, "%s: missing tensor '%s'", vn_st_path(f), name);
        if (e->kind == VN_STATE_COUNT) {
            if (fe->dtype != VN_DTYPE_I64 || fe->numel != 1)
                return vn_error_set(err, VN_ERR_FORMAT, "%s: '%s' should be an I64 scalar, found %s %s",
                                    vn_st_path(f), name, vn_dtype_name(fe->dtype),
                                    vn_shape_str(fe->ndim, fe->shape, got, sizeof got));
            continue;
        }
        int64_t shape[VN_MAX_DIMS];
        file_shape(e->tensor, shape);
        bool same = fe->ndim == e->tensor->ndim;
        for (int d = 0; same && d < fe->ndim; d++) same = fe->shape[d] == shape[d];
        /* F16, BF16 and F64 (a half-precision export, say) are read as float32. */
        if (!vn_dtype_is_float(fe->dtype) || !same)
            return vn_error_set(err, VN_ERR_SHAPE, "%s: '%s' has %s %s, the model expects F32 %s",
                                vn_st_path(f), name, vn_dtype_name(fe->dtype),
                                vn_shape_str(fe->ndim, fe->shape, got, sizeof got),
                                vn_shape_str(e->tensor->ndim, shape, want, sizeof want));
    }
    if (strict) {
        for (int i = 0; i < vn_st_count(f); i++) {
            const char *fname = vn_st_at(f, i)->name;
            if (strncmp(fname, prefix, plen) != 0) continue;
            if (!vn_state_find(l, fname + plen))
                return vn_error_set(err, VN_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of "
                                    "this model)", vn_st_path(f), fname);
        }
    }
    return VN_OK;
}

/* dst (OHWI, o x h x w x i) from src (OIHW, elements of dtype dt) held at any alignment in a
 * file buffer; no temporary, so loading cannot fail half-way. */
static void ohwi_from_oihw_bytes(float *dst, const uint8_t *src, vn_dtype dt, int64_t o,
                                 int64_t i, int64_t h, int64_t w)
{
    const size_t es = vn_dtype_size(dt);
    for (int64_t a = 0; a < o; a++)
        for (int64_t b = 0; b < i; b++)
            for (int64_t y = 0; y < h; y++)
                for (int64_t x = 0; x < w; x++) {
                    const uint8_t *q = src + (size_t)(((a * i + b) * h + y) * w + x) * es;
                    float *d = &dst[((a * h + y) * w + x) * i + b];
                    if (dt == VN_DTYPE_F32) memcpy(d, q, sizeof(float));
                    else *d = vn_dtype_float_at(q, dt);
                }
}

/* Host memory for the largest float tensor of l that lives on a device (NULL without one; *rc
 * VN_ERR_NOMEM when it cannot be had). */
static float *device_staging(const vn_state_list *l, int *rc)
{
    int64_t most = 0;
    for (int i = 0; i < l->n; i++) {
        const vn_tensor *t = l->items[i].kind == VN_STATE_COUNT ? NULL : l->items[i].tensor;
        if (t && t->device != VN_DEVICE_CPU && t->numel > most) most = t->numel;
    }
    float *p = most ? malloc((size_t)most * sizeof(float)) : NULL;
    *rc = most && !p ? VN_ERR_NOMEM : VN_OK;
    return p;
}

/* Copies every checked tensor in: straight into host tensors, through host memory (staging,
 * see device_staging) into tensors on a device. */
static int state_copy_in(const vn_state_list *l, const char *prefix, const vn_st_file *f,
                         float *staging, vn_error *err)
{
    char name[512];
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *e = &l->items[i];
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        const vn_st_entry *fe = vn_st_find(f, name);
        vn_tensor *t = e->tensor;
        if (e->kind == VN_STATE_COUNT) {
            if (fe) memcpy(e->count, fe->data, sizeof(int64_t));
            continue;
        }
        float *host = t->device == VN_DEVICE_CPU ? t->data : staging;
        if ((t->flags & VN_TENSOR_OHWI) && t->ndim == 4)
            ohwi_from_oihw_bytes(host, fe->data, fe->dtype, t->shape[0], t->shape[3], t->shape[1],
                                 t->shape[2]);
        else if (fe->dtype == VN_DTYPE_F32)
            memcpy(host, fe->data, fe->nbytes);
        else
            for (int64_t k = 0; k < fe->numel; k++)
                host[k] = vn_dtype_float_at(fe->data + (size_t)k * vn_dtype_size(fe->dtype), fe->dtype);
        if (host == staging && vn_tensor_write(t, staging) != VN_OK)
            return vn_error_set(err, VN_ERR_IO, "%s: copying '%s' to %s failed", vn_st_path(f),
                                name, vn_device_name(t->device));
    }
    return VN_OK;
}

int vn_state_from_file(const vn_state_list *l, const char *prefix, const vn_st_file *f,
                       bool strict, vn_error *err)
{
    /* Check everything first, so a mismatch leaves the model untouched; copying cannot fail
     * (on a device: after the one host buffer, only a failing device copy). */
    int rc = vn_state_check_file(l, prefix, f, strict, err);
    if (rc != VN_OK) return rc;
    float *staging = device_staging(l, &rc);
    if (rc != VN_OK)
        return vn_error_set(err, rc, "%s: out of memory loading tensors to the device",
                            vn_st_path(f));
    rc = state_copy_in(l, prefix, f, staging, err);
    free(staging);
    return rc;
}

int vn_state_copy(const vn_state_list *dst, const vn_state_list *src, vn_error *err)
{
    if (dst->n != src->n)
        return vn_error_set(err, VN_ERR_SHAPE, "state lists differ: %d and %d entries", dst->n, src->n);
    for (int i = 0; i < dst->n; i++) {
        const vn_state_item *d = &dst->items[i], *s = &src->items[i];
        if (strcmp(d->name, s->name) != 0 || d->kind != s->kind ||
            (d->tensor && !vn_tensor_same_shape(d->tensor, s->tensor)))
            return vn_error_set(err, VN_ERR_SHAPE, "state lists differ at '%s' / '%s'", d->name, s->name);
    }
    for (int i = 0; i < dst->n; i++) {
        if (dst->items[i].kind == VN_STATE_COUNT) *dst->items[i].count = *src->items[i].count;
        else vn_tensor_copy_data(dst->items[i].tensor, src->items[i].tensor);
    }
    return VN_OK;
}
