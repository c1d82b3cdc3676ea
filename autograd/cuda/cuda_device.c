/* The CUDA backend's device: the process-wide stream and handles, model-lifetime memory,
 * copies, and each context's step pool (stream-ordered allocations from a memory pool that
 * keeps what it has: after the first step of a fixed-shape loop, no cudaMalloc is made). */
#include "autograd/ctx_impl.h"
#include "autograd/device_impl.h"
#include "autograd/cuda/cuda_impl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vn__cuda g_cuda;
static int g_state; /* 0: not tried; 1: ready; -1: unusable (g_msg says why) */
static char g_msg[256];
static int g_dev;   /* the device number this process uses (vn__cuda_select) */

/* Without the driver library the runtime only says "driver version is insufficient": name
 * what is missing instead. */
static bool driver_missing(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (h) {
        dlclose(h);
        return false;
    }
    const char *e = dlerror();
    snprintf(g_msg, sizeof g_msg, "no CUDA device visible: the NVIDIA driver is missing (%s)",
             e ? e : "libcuda.so.1 cannot be loaded");
    return true;
}

static bool init_backend(void)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        if (e == cudaSuccess || !driver_missing())
            snprintf(g_msg, sizeof g_msg, "no CUDA device visible (%s)",
                     e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found 0");
        return false;
    }
    /* The runtime's current device is per host thread: only the thread that started the
     * backend (the trainer's) calls CUDA. */
    if (g_dev >= count) g_dev %= count;
    if ((e = cudaSetDevice(g_dev)) != cudaSuccess) {
        snprintf(g_msg, sizeof g_msg, "CUDA device %d: %s", g_dev, cudaGetErrorString(e));
        return false;
    }
    if ((e = cudaStreamCreateWithFlags(&g_cuda.stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(g_msg, sizeof g_msg, "CUDA stream: %s", cudaGetErrorString(e));
        return false;
    }
    if (cublasCreate(&g_cuda.blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(g_cuda.blas, g_cuda.stream) != CUBLAS_STATUS_SUCCESS) {
        snprintf(g_msg, sizeof g_msg, "cuBLAS could not start");
        return false;
    }
    if (cudnnCreate(&g_cuda.dnn) != CUDNN_STATUS_SUCCESS ||
        cudnnSetStream(g_cuda.dnn, g_cuda.stream) != CUDNN_STATUS_SUCCESS) {
        snprintf(g_msg, sizeof g_msg, "cuDNN could not start");
        return false;
    }
    /* The step pools keep their memory between steps. */
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, g_dev) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;
        (void)cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    const char *strict = getenv("VN_CUDA_STRICT_FP32");
    g_cuda.tf32 = !(strict && strcmp(strict, "1") == 0);
    const char *det = getenv("VN_CUDA_DETERMINISTIC");
    g_cuda.deterministic = det && strcmp(det, "1") == 0;
    const char *bf16 = getenv("VN_CUDA_BF16");
    g_cuda.bf16 = bf16 && strcmp(bf16, "1") == 0;
    (void)cublasSetMathMode(g_cuda.blas, g_cuda.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                     : CUBLAS_DEFAULT_MATH);
    return true;
}

vn__cuda *vn__cuda_get(char *msg, size_t n)
{
    if (g_state == 0) g_state = init_backend() ? 1 : -1;
    if (g_state < 0) {
        if (msg && n) snprintf(msg, n, "%s", g_msg);
        return NULL;
    }
    return &g_cuda;
}

int vn__cuda_select(int index, int *chosen, char *msg, size_t n)
{
    int count = 0;
    if (g_state < 0) {
        if (msg && n) snprintf(msg, n, "%s", g_msg);
        return VN_ERR_UNSUPPORTED;
    }
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        if (msg && n)
            snprintf(msg, n, "no CUDA device visible (%s)",
                     e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found 0");
        return VN_ERR_UNSUPPORTED;
    }
    int want = index % count;
    if (g_state == 1 && want != g_dev) {
        if (msg && n)
            snprintf(msg, n, "CUDA device %d was asked for, but this process already runs on "
                     "device %d", want, g_dev);
        return VN_ERR_STATE;
    }
    g_dev = want;
    *chosen = want;
    return VN_OK;
}

int vn__cuda_check(char *msg, size_t n)
{
    return vn__cuda_get(msg, n) ? VN_OK : VN_ERR_UNSUPPORTED;
}

int vn__cuda_set_tf32(bool on)
{
    vn__cuda *c = vn__cuda_get(NULL, 0);
    if (!c) return VN_ERR_UNSUPPORTED;
    c->tf32 = on;
    return cublasSetMathMode(c->blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH) ==
                   CUBLAS_STATUS_SUCCESS ? VN_OK : VN_ERR_IO;
}

int vn__cuda_set_deterministic(bool on)
{
    vn__cuda *c = vn__cuda_get(NULL, 0);
    if (!c) return VN_ERR_UNSUPPORTED;
    c->deterministic = on;
    return VN_OK;
}

int vn__cuda_set_bf16(bool on)
{
    vn__cuda *c = vn__cuda_get(NULL, 0);
    if (!c) return VN_ERR_UNSUPPORTED;
    c->bf16 = on;
    return VN_OK;
}

bool vn__cuda_env_on(const char *name, int *cache)
{
    if (*cache < 0) {
        const char *e = getenv(name);
        *cache = e && e[0] == '1';
    }
    return *cache == 1;
}

int vn__cuda_sync(void)
{
    vn__cuda *c = vn__cuda_get(NULL, 0);
    if (!c) return VN_ERR_UNSUPPORTED;
    return cudaStreamSynchronize(c->stream) == cudaSuccess ? VN_OK : VN_ERR_IO;
}

int vn__cuda_fail(vn_ctx *ctx, const char *what, int cuda_err)
{
    vn_ctx_fail(ctx, VN_ERR_IO, "%s: CUDA error %s", what,
                cudaGetErrorString((cudaError_t)cuda_err));
    return VN_ERR_IO;
}

int vn__cublas_fail(vn_ctx *ctx, const char *what, int blas_status)
{
    vn_ctx_fail(ctx, VN_ERR_IO, "%s: cuBLAS status %d", what, blas_status);
    return VN_ERR_IO;
}

int vn__cudnn_fail(vn_ctx *ctx, const char *what, int dnn_status)
{
    vn_ctx_fail(ctx, VN_ERR_IO, "%s: cuDNN %s", what,
                cudnnGetErrorString((cudnnStatus_t)dnn_status));
    return VN_ERR_IO;
}

void *vn__cuda_scratch(vn_ctx *ctx, size_t bytes, const char *what)
{
    void *p = vn__pool_alloc(ctx, bytes);
    if (!p) vn_ctx_fail(ctx, VN_ERR_NOMEM, "%s: out of device memory (%zu bytes)", what, bytes);
    return p;
}

/* ---- model-lifetime memory and copies ------------------------------------------------ */

void *vn__cuda_alloc(size_t bytes)
{
    void *p = NULL;
    if (!vn__cuda_get(NULL, 0)) return NULL;
    if (cudaMalloc(&p, bytes ? bytes : 64) != cudaSuccess) return NULL;
    /* On the backend's stream, which does not wait for the legacy one a plain cudaMemset
     * uses: a copy queued there next must not be overtaken by the zeros. */
    if (cudaMemsetAsync(p, 0, bytes, g_cuda.stream) != cudaSuccess ||
        cudaStreamSynchronize(g_cuda.stream) != cudaSuccess) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

void vn__cuda_free(void *p)
{
    if (!p) return;
    (void)cudaStreamSynchronize(g_cuda.stream);
    (void)cudaFree(p);
}

int vn__cuda_zero(void *p, size_t bytes)
{
    return cudaMemsetAsync(p, 0, bytes, g_cuda.stream) == cudaSuccess ? VN_OK : VN_ERR_IO;
}

int vn__cuda_copy(void *dst, const void *src, size_t bytes)
{
    if (cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, g_cuda.stream) != cudaSuccess)
        return VN_ERR_IO;
    return cudaStreamSynchronize(g_cuda.stream) == cudaSuccess ? VN_OK : VN_ERR_IO;
}

/* Host-to-device uploads through two pinned staging buffers: the host's bytes are copied into
 * a staging buffer (in parallel chunks), and the DMA from there is queued on the stream
 * without waiting for it, so the upload of the next batch overlaps the device's work on the
 * current step. A pageable cudaMemcpyAsync would first wait for everything queued on the
 * stream, then copy at pageable speed with the device idle. A buffer is reused only after
 * the DMA out of it has finished (its event). */
#define UPLOAD_SLOTS 2
#define UPLOAD_MIN ((size_t)1 << 20) /* smaller copies go the plain way */

typedef struct upload_slot {
    void *buf;
    size_t cap;
    cudaEvent_t done;
} upload_slot;

static upload_slot g_up[UPLOAD_SLOTS];
static int g_up_next;

static int slot_ready(upload_slot *u, size_t bytes)
{
    if (!u->done && cudaEventCreateWithFlags(&u->done, cudaEventDisableTiming) != cudaSuccess)
        return VN_ERR_IO;
    if (cudaEventSynchronize(u->done) != cudaSuccess) return VN_ERR_IO;
    if (u->cap >= bytes) return VN_OK;
    if (u->buf) (void)cudaFreeHost(u->buf);
    u->buf = NULL;
    u->cap = 0;
    if (cudaHostAlloc(&u->buf, bytes, cudaHostAllocDefault) != cudaSuccess) return VN_ERR_NOMEM;
    u->cap = bytes;
    return VN_OK;
}

int vn__cuda_upload(void *dst, const void *src, size_t bytes)
{
    if (!vn__cuda_get(NULL, 0)) return VN_ERR_UNSUPPORTED;
    if (bytes < UPLOAD_MIN) return vn__cuda_copy(dst, src, bytes);
    upload_slot *u = &g_up[g_up_next];
    if (slot_ready(u, bytes) != VN_OK) return vn__cuda_copy(dst, src, bytes);
    g_up_next = (g_up_next + 1) % UPLOAD_SLOTS;
    const size_t chunk = (size_t)1 << 22;
    const int64_t chunks = (int64_t)((bytes + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < chunks; i++) {
        size_t off = (size_t)i * chunk, len = bytes - off < chunk ? bytes - off : chunk;
        memcpy((char *)u->buf + off, (const char *)src + off, len);
    }
    if (cudaMemcpyAsync(dst, u->buf, bytes, cudaMemcpyHostToDevice, g_cuda.stream) !=
            cudaSuccess ||
        cudaEventRecord(u->done, g_cuda.stream) != cudaSuccess)
        return VN_ERR_IO;
    return VN_OK;
}

int vn__cuda_add_from_host(float *dst, const float *src, int64_t n, bool assign)
{
    if (assign) return vn__cuda_copy(dst, src, (size_t)n * sizeof(float));
    float *tmp = NULL;
    if (cudaMallocAsync((void **)&tmp, (size_t)n * sizeof(float), g_cuda.stream) != cudaSuccess)
        return VN_ERR_NOMEM;
    int rc = vn__cuda_copy(tmp, src, (size_t)n * sizeof(float));
    if (rc == VN_OK && vn__k_seed_add(g_cuda.stream, dst, tmp, n, false) != 0) rc = VN_ERR_IO;
    (void)cudaFreeAsync(tmp, g_cuda.stream);
    return rc;
}

/* ---- step pool: the live allocations of one context ----------------------------------- */

typedef struct dev_block {
    void *p;
    size_t bytes;
} dev_block;

typedef struct dev_pool {
    dev_block *live;
    size_t n, cap;
    size_t in_use, peak;
} dev_pool;

static dev_pool *pool_of(vn_ctx *ctx)
{
    if (!ctx->dev) ctx->dev = calloc(1, sizeof(dev_pool));
    return ctx->dev;
}

void *vn__cuda_pool_alloc(vn_ctx *ctx, size_t bytes)
{
    dev_pool *dp = pool_of(ctx);
    if (!dp || !vn__cuda_get(NULL, 0)) return NULL;
    if (dp->n == dp->cap) {
        size_t cap = dp->cap ? 2 * dp->cap : 256;
        dev_block *l = realloc(dp->live, cap * sizeof *l);
        if (!l) return NULL;
        dp->live = l;
        dp->cap = cap;
    }
    size_t size = (bytes + 255) & ~(size_t)255;
    void *p = NULL;
    if (cudaMallocAsync(&p, size ? size : 256, g_cuda.stream) != cudaSuccess) return NULL;
    dp->live[dp->n++] = (dev_block){p, size};
    dp->in_use += size;
    if (dp->in_use > dp->peak) dp->peak = dp->in_use;
    return p;
}

void vn__cuda_pool_free(vn_ctx *ctx, void *p)
{
    dev_pool *dp = ctx->dev;
    VN_ASSERT(dp, "vn__pool_free of a device buffer in a context without device memory");
    for (size_t i = dp->n; i-- > 0;)
        if (dp->live[i].p == p) {
            dp->in_use -= dp->live[i].bytes;
            dp->live[i] = dp->live[--dp->n];
            (void)cudaFreeAsync(p, g_cuda.stream);
            return;
        }
    VN_ASSERT(false, "vn__pool_free of a device buffer that is not in use");
}

void vn__cuda_pool_reset(vn_ctx *ctx)
{
    dev_pool *dp = ctx->dev;
    if (!dp) return;
    for (size_t i = 0; i < dp->n; i++) (void)cudaFreeAsync(dp->live[i].p, g_cuda.stream);
    dp->n = 0;
    dp->in_use = 0;
}

void vn__cuda_pool_destroy(vn_ctx *ctx)
{
    vn__cuda_pool_reset(ctx);
    dev_pool *dp = ctx->dev;
    if (dp) free(dp->live);
    free(dp);
    ctx->dev = NULL;
    if (g_state == 1) (void)cudaStreamSynchronize(g_cuda.stream);
}

void vn__cuda_pool_trim(vn_ctx *ctx)
{
    (void)ctx;
    cudaMemPool_t pool;
    if (g_state == 1 && cudaDeviceGetDefaultMemPool(&pool, g_dev) == cudaSuccess) {
        (void)cudaStreamSynchronize(g_cuda.stream);
        (void)cudaMemPoolTrimTo(pool, 0);
    }
}

void vn__cuda_pool_stats(const vn_ctx *ctx, size_t *in_use, size_t *peak)
{
    const dev_pool *dp = ctx->dev;
    *in_use = dp ? dp->in_use : 0;
    *peak = dp ? dp->peak : 0;
}

void vn__cuda_pool_clear_peak(vn_ctx *ctx)
{
    dev_pool *dp = ctx->dev;
    if (dp) dp->peak = dp->in_use;
}
