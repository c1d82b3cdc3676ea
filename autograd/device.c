/* Devices for the core: tensors and step memory on a device that is not the CPU. Its backend
 * is a module loaded by vn_device_check (backend.c); until that succeeded nothing can be
 * placed on the device, so the vn__dev_* functions below reach a device's table only once
 * it is loaded. */
#include "autograd/backend.h"
#include "autograd/ctx_impl.h"
#include "autograd/device_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vn_device_parse(const char *name, vn_device *out)
{
    if (name && strcmp(name, "cpu") == 0) *out = VN_DEVICE_CPU;
    else if (name && strcmp(name, "cuda") == 0) *out = VN_DEVICE_CUDA;
    else return VN_ERR_INVALID;
    return VN_OK;
}

int vn_device_check(vn_device d, char *msg, size_t n)
{
    if (msg && n) msg[0] = '\0';
    if (d == VN_DEVICE_CPU) return VN_OK;
    if (d != VN_DEVICE_CUDA) {
        if (msg && n) snprintf(msg, n, "unknown device %d", (int)d);
        return VN_ERR_INVALID;
    }
    int rc = vn__backend_load(d, msg, n);
    return rc == VN_OK ? vn__backend_must(d)->check(msg, n) : rc;
}

int vn_device_select(vn_device d, int index, int *chosen, char *msg, size_t n)
{
    if (msg && n) msg[0] = '\0';
    if (chosen) *chosen = 0;
    if (d == VN_DEVICE_CPU) return VN_OK;
    if (d != VN_DEVICE_CUDA || index < 0) {
        if (msg && n) snprintf(msg, n, "no device %d of kind %d", index, (int)d);
        return VN_ERR_INVALID;
    }
    int rc = vn__backend_load(d, msg, n), dummy;
    return rc == VN_OK ? vn__backend_must(d)->select(index, chosen ? chosen : &dummy, msg, n) : rc;
}

void *vn__dev_alloc(vn_device d, size_t bytes)
{
    return vn__backend_must(d)->alloc(bytes);
}

void vn__dev_free(vn_device d, void *p)
{
    if (d != VN_DEVICE_CPU) vn__backend_must(d)->free(p);
}

int vn__dev_zero(vn_device d, void *p, size_t bytes)
{
    if (d == VN_DEVICE_CPU) {
        memset(p, 0, bytes);
        return VN_OK;
    }
    return vn__backend_must(d)->zero(p, bytes);
}

int vn__dev_copy(vn_device dst_dev, void *dst, vn_device src_dev, const void *src, size_t bytes)
{
    if (dst_dev == VN_DEVICE_CPU && src_dev == VN_DEVICE_CPU) {
        memmove(dst, src, bytes);
        return VN_OK;
    }
    /* Unified addressing: one copy call serves every direction. */
    vn_device d = dst_dev != VN_DEVICE_CPU ? dst_dev : src_dev;
    return vn__backend_must(d)->copy(dst, src, bytes);
}

int vn__dev_add_from_host(vn_device d, float *dst, const float *src, int64_t n, bool assign)
{
    if (d == VN_DEVICE_CPU) {
        for (int64_t i = 0; i < n; i++) dst[i] = assign ? src[i] : dst[i] + src[i];
        return VN_OK;
    }
    return vn__backend_must(d)->add_from_host(dst, src, n, assign);
}

int vn_device_sync(vn_device d)
{
    if (d == VN_DEVICE_CPU) return VN_OK;
    const vn__backend *b = vn__backend_of(d);
    return b ? b->sync() : VN_ERR_UNSUPPORTED;
}

int vn_device_set_tf32(vn_device d, bool on)
{
    if (d == VN_DEVICE_CPU) return on ? VN_ERR_UNSUPPORTED : VN_OK;
    const vn__backend *b = vn__backend_of(d);
    return b ? b->set_tf32(on) : VN_ERR_UNSUPPORTED;
}

int vn_device_set_deterministic(vn_device d, bool on)
{
    if (d == VN_DEVICE_CPU) return VN_OK; /* the CPU kernels are deterministic */
    const vn__backend *b = vn__backend_of(d);
    return b ? b->set_deterministic(on) : VN_ERR_UNSUPPORTED;
}

int vn_device_set_bf16(vn_device d, bool on)
{
    if (d == VN_DEVICE_CPU) return on ? VN_ERR_UNSUPPORTED : VN_OK;
    const vn__backend *b = vn__backend_of(d);
    return b ? b->set_bf16(on) : VN_ERR_UNSUPPORTED;
}

/* ---- collectives among data-parallel ranks on a device -------------------------------- */

/* d's backend when it has collectives; NULL with why in msg. */
static const vn__backend *comm_backend(vn_device d, char *msg, size_t n)
{
    const vn__backend *b = d == VN_DEVICE_CPU ? NULL : vn__backend_of(d);
    if (b && b->comm_available) return b;
    if (msg && n)
        snprintf(msg, n, "%s", d == VN_DEVICE_CPU ? "the CPU has no device collectives"
                               : b ? "this device's backend has no collectives"
                                   : "the device's backend is not loaded");
    return NULL;
}

int vn_device_comm_available(vn_device d, char *msg, size_t n)
{
    const vn__backend *b = comm_backend(d, msg, n);
    return b ? b->comm_available(msg, n) : VN_ERR_UNSUPPORTED;
}

size_t vn_device_comm_id_size(vn_device d)
{
    const vn__backend *b = comm_backend(d, NULL, 0);
    return b ? b->comm_id_size() : 0;
}

int vn_device_comm_id(vn_device d, void *id, char *msg, size_t n)
{
    const vn__backend *b = comm_backend(d, msg, n);
    return b ? b->comm_id(id, msg, n) : VN_ERR_UNSUPPORTED;
}

int vn_device_comm_init(vn_device d, const void *id, int nranks, int rank, char *msg, size_t n)
{
    const vn__backend *b = comm_backend(d, msg, n);
    return b ? b->comm_init(id, nranks, rank, msg, n) : VN_ERR_UNSUPPORTED;
}

int vn_device_comm_allreduce(vn_device d, float *const *bufs, const int64_t *counts, int k,
                             char *msg, size_t n)
{
    const vn__backend *b = comm_backend(d, msg, n);
    return b ? b->comm_allreduce(bufs, counts, k, msg, n) : VN_ERR_UNSUPPORTED;
}

int vn_device_comm_wait(vn_device d, double timeout_s, char *msg, size_t n)
{
    const vn__backend *b = comm_backend(d, msg, n);
    return b ? b->comm_wait(timeout_s, msg, n) : VN_ERR_UNSUPPORTED;
}

void vn_device_comm_destroy(vn_device d)
{
    const vn__backend *b = comm_backend(d, NULL, 0);
    if (b) b->comm_destroy();
}

int vn_device_uid(vn_device d, char *buf, size_t n)
{
    if (n) buf[0] = '\0';
    const vn__backend *b = d == VN_DEVICE_CPU ? NULL : vn__backend_of(d);
    return b && b->device_uid ? b->device_uid(buf, n) : VN_ERR_UNSUPPORTED;
}

/* ---- model tensors on a device ------------------------------------------------------- */

static int move_buffer(float **buf, int64_t numel, vn_device from, vn_device to)
{
    if (!*buf) return VN_OK;
    size_t bytes = (size_t)numel * sizeof(float);
    float *n = to == VN_DEVICE_CPU ? NULL : vn__dev_alloc(to, bytes);
    if (to == VN_DEVICE_CPU && posix_memalign((void **)&n, 64, bytes ? (bytes + 63) & ~(size_t)63
                                                                      : 64) != 0)
        n = NULL;
    if (!n) return VN_ERR_NOMEM;
    int rc = vn__dev_copy(to, n, from, *buf, bytes);
    if (rc != VN_OK) {
        if (to == VN_DEVICE_CPU) free(n);
        else vn__dev_free(to, n);
        return rc;
    }
    if (from == VN_DEVICE_CPU) free(*buf);
    else vn__dev_free(from, *buf);
    *buf = n;
    return VN_OK;
}

int vn_tensor_to_device(vn_tensor *t, vn_device d)
{
    if (!t) return VN_ERR_INVALID;
    if (t->device == d) return VN_OK;
    if (t->flags & (VN_TENSOR_STEP | VN_TENSOR_VIEW)) return VN_ERR_INVALID;
    int rc = vn_device_check(d, NULL, 0);
    if (rc != VN_OK) return rc;
    rc = move_buffer(&t->data, t->numel, t->device, d);
    if (rc == VN_OK) rc = move_buffer(&t->grad, t->numel, t->device, d);
    if (rc != VN_OK) {
        /* data may have moved while grad did not: move it back so the tensor is whole. */
        if (t->data && t->grad) (void)move_buffer(&t->data, t->numel, d, t->device);
        return rc;
    }
    t->device = d;
    return VN_OK;
}

int vn_tensor_read(const vn_tensor *t, float *host)
{
    return vn__dev_copy(VN_DEVICE_CPU, host, t->device, t->data, (size_t)t->numel * sizeof(float));
}

int vn_tensor_write(vn_tensor *t, const float *host)
{
    return vn__dev_copy(t->device, t->data, VN_DEVICE_CPU, host, (size_t)t->numel * sizeof(float));
}

int vn_tensor_upload(vn_tensor *t, const float *host)
{
    size_t bytes = (size_t)t->numel * sizeof(float);
    if (t->device == VN_DEVICE_CPU) {
        memcpy(t->data, host, bytes);
        return VN_OK;
    }
    return vn__backend_must(t->device)->upload(t->data, host, bytes);
}

int vn_tensor_read_grad(const vn_tensor *t, float *host)
{
    if (!t->grad) return VN_ERR_STATE;
    return vn__dev_copy(VN_DEVICE_CPU, host, t->device, t->grad, (size_t)t->numel * sizeof(float));
}

int vn_tensor_write_grad(vn_tensor *t, const float *host)
{
    if (!t->grad) return VN_ERR_STATE;
    return vn__dev_copy(t->device, t->grad, VN_DEVICE_CPU, host, (size_t)t->numel * sizeof(float));
}

/* ---- contexts on a device ------------------------------------------------------------ */

vn_ctx *vn_ctx_create_on(vn_device d)
{
    if (vn_device_check(d, NULL, 0) != VN_OK) return NULL;
    vn_ctx *ctx = vn_ctx_create();
    if (ctx) ctx->device = d;
    return ctx;
}

vn_device vn_ctx_device(const vn_ctx *ctx) { return ctx->device; }

vn_tensor *vn_ctx_upload(vn_ctx *ctx, vn_tensor *t)
{
    if (!t || t->device == ctx->device) return t;
    vn_tensor *x = vn_ctx_tensor(ctx, t->ndim, t->shape);
    size_t bytes = (size_t)t->numel * sizeof(float);
    int rc = VN_OK;
    if (x && t->device == VN_DEVICE_CPU) /* pinned and not waiting for the device */
        rc = vn_tensor_upload(x, t->data);
    else if (x)
        rc = vn__dev_copy(x->device, x->data, t->device, t->data, bytes);
    if (x && rc != VN_OK)
        x = vn_ctx_fail(ctx, VN_ERR_IO, "copying a %s tensor to %s failed",
                        vn_device_name(t->device), vn_device_name(x->device));
    return x;
}

/* Only contexts made by vn_ctx_create_on(d), after its backend loaded, reach these. */
void *vn__dev_pool_alloc(vn_ctx *ctx, size_t bytes)
{
    return vn__backend_must(ctx->device)->pool_alloc(ctx, bytes);
}
void vn__dev_pool_free(vn_ctx *ctx, void *p) { vn__backend_must(ctx->device)->pool_free(ctx, p); }
void vn__dev_pool_reset(vn_ctx *ctx) { vn__backend_must(ctx->device)->pool_reset(ctx); }
void vn__dev_pool_destroy(vn_ctx *ctx) { vn__backend_must(ctx->device)->pool_destroy(ctx); }
void vn__dev_pool_trim(vn_ctx *ctx) { vn__backend_must(ctx->device)->pool_trim(ctx); }
void vn__dev_pool_stats(const vn_ctx *ctx, size_t *in_use, size_t *peak)
{
    vn__backend_must(ctx->device)->pool_stats(ctx, in_use, peak);
}
void vn__dev_pool_clear_peak(vn_ctx *ctx) { vn__backend_must(ctx->device)->pool_clear_peak(ctx); }
