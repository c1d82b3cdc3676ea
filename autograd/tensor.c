#include "autograd/vn_tensor.h"
#include "autograd/device_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *alloc_aligned(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

vn_tensor *vn_tensor_new(int ndim, const int64_t *shape, bool requires_grad)
{
    int64_t numel;
    /* a bad rank, a negative dimension or more than memory holds */
    if (ndim < 0 || ndim > VN_MAX_DIMS || (ndim && !shape) ||
        !vn_shape_numel_checked(ndim, shape, &numel))
        return NULL;
    vn_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    size_t bytes = (size_t)t->numel * sizeof(float);
    t->data = alloc_aligned(bytes);
    if (!t->data) {
        free(t);
        return NULL;
    }
    memset(t->data, 0, bytes);
    if (requires_grad) {
        t->flags |= VN_TENSOR_REQUIRES_GRAD;
        t->grad = alloc_aligned(bytes);
        if (!t->grad) {
            free(t->data);
            free(t);
            return NULL;
        }
        memset(t->grad, 0, bytes);
    }
    return t;
}

vn_tensor *vn_tensor_new4(int64_t d0, int64_t d1, int64_t d2, int64_t d3, bool requires_grad)
{
    int64_t s[4] = {d0, d1, d2, d3};
    return vn_tensor_new(4, s, requires_grad);
}

void vn_tensor_free(vn_tensor *t)
{
    if (!t) return;
    VN_ASSERT(!(t->flags & VN_TENSOR_STEP), "step tensors are released by vn_ctx_reset, "
              "not vn_tensor_free");
    if (t->device != VN_DEVICE_CPU) {
        if (!(t->flags & VN_TENSOR_VIEW)) vn__dev_free(t->device, t->data);
        vn__dev_free(t->device, t->grad);
        free(t);
        return;
    }
    if (!(t->flags & VN_TENSOR_VIEW)) free(t->data);
    free(t->grad);
    free(t);
}

void vn_tensor_drop_grad(vn_tensor *t)
{
    VN_ASSERT(!(t->flags & VN_TENSOR_STEP), "drop_grad is for model-lifetime tensors");
    if (t->device != VN_DEVICE_CPU) vn__dev_free(t->device, t->grad);
    else free(t->grad);
    t->grad = NULL;
    t->flags &= ~VN_TENSOR_REQUIRES_GRAD;
}

int vn_tensor_zero_grad(vn_tensor *t)
{
    VN_ASSERT(!(t->flags & VN_TENSOR_STEP), "zero_grad is for model-lifetime tensors");
    size_t bytes = (size_t)t->numel * sizeof(float);
    if (t->device != VN_DEVICE_CPU) {
        if (!t->grad) t->grad = vn__dev_alloc(t->device, bytes);
        if (!t->grad) return VN_ERR_NOMEM;
        return vn__dev_zero(t->device, t->grad, bytes);
    }
    if (!t->grad) {
        t->grad = alloc_aligned(bytes);
        if (!t->grad) return VN_ERR_NOMEM;
    }
    memset(t->grad, 0, bytes);
    return VN_OK;
}

bool vn_tensor_same_shape(const vn_tensor *a, const vn_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

void vn_tensor_fill(vn_tensor *t, float v)
{
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = v;
}

void vn_tensor_copy_data(vn_tensor *dst, const vn_tensor *src)
{
    VN_ASSERT(dst->numel == src->numel, "copy between tensors of %lld and %lld elements",
              (long long)dst->numel, (long long)src->numel);
    size_t bytes = (size_t)src->numel * sizeof(float);
    if (dst->device != VN_DEVICE_CPU || src->device != VN_DEVICE_CPU) {
        int rc = vn__dev_copy(dst->device, dst->data, src->device, src->data, bytes);
        VN_ASSERT(rc == VN_OK, "copying %zu bytes from %s to %s failed", bytes,
                  vn_device_name(src->device), vn_device_name(dst->device));
        return;
    }
    memcpy(dst->data, src->data, bytes);
}
