/* A stand-in backend module for the tests of the loader (test_backend.c): "device" memory is
 * host memory, the op column is empty, the optimizer step refuses. It lets every path of
 * libvanilla through a backend table (autograd/device.c, dispatch.c, optim/) run without a
 * GPU, under the sanitizers too. Built four times by tests/cuda/meson.build: as is, with
 * FAKE_ABI (another table version), with FAKE_NO_ENTRY (no entry symbol) and with
 * FAKE_CPU_OPS: the op column and the optimizer step are the CPU's, so that a whole training
 * run can be placed on the "device" (test_train_device.sh) and must give the CPU's bytes.
 * That variant fills every fresh allocation with NaN: a buffer read before the kernels wrote
 * it, or a host write that went to another copy, shows up as a difference. */
#include "autograd/backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef FAKE_NO_ENTRY
int vn__fake_backend_without_entry(void);
int vn__fake_backend_without_entry(void) { return 0; }
#else

static int check(char *msg, size_t n)
{
    const char *refuse = getenv("VN_FAKE_BACKEND_REFUSE");
    if (refuse && refuse[0]) {
        if (msg && n) snprintf(msg, n, "%s", refuse);
        return VN_ERR_UNSUPPORTED;
    }
    return VN_OK;
}

static int sync_device(void) { return check(NULL, 0); }
static int set_tf32(bool on) { return on ? VN_OK : VN_OK; }
static int set_deterministic(bool on) { return on ? VN_OK : VN_OK; }
static void *alloc(size_t bytes) { return calloc(1, bytes ? bytes : 64); }

#ifdef FAKE_CPU_OPS
/* Step memory is uninitialised on a real device: NaN here, where the CPU pool would hand out
 * whatever it held, so a kernel that reads before writing cannot pass by luck. */
static void *fresh(size_t bytes)
{
    float *p = malloc(bytes ? bytes : 64);
    for (size_t i = 0; p && i < bytes / sizeof(float); i++) p[i] = NAN;
    return p;
}
#else
static void *fresh(size_t bytes) { return calloc(1, bytes ? bytes : 1); }
#endif
static void release(void *p) { free(p); }

static int zero(void *p, size_t bytes)
{
    memset(p, 0, bytes);
    return VN_OK;
}

static int copy(void *dst, const void *src, size_t bytes)
{
    memmove(dst, src, bytes);
    return VN_OK;
}

static int add_from_host(float *dst, const float *src, int64_t n, bool assign)
{
    for (int64_t i = 0; i < n; i++) dst[i] = assign ? src[i] : dst[i] + src[i];
    return VN_OK;
}

/* The step pool: one growing list of live blocks per context (ctx->dev). */
typedef struct fake_pool {
    void **live;
    int n, cap;
    size_t in_use, peak;
} fake_pool;

static void *pool_alloc(vn_ctx *ctx, size_t bytes)
{
    if (!ctx->dev) ctx->dev = calloc(1, sizeof(fake_pool));
    fake_pool *fp = ctx->dev;
    if (!fp) return NULL;
    if (fp->n == fp->cap) {
        int cap = fp->cap ? 2 * fp->cap : 64;
        void **live = realloc(fp->live, (size_t)cap * sizeof *live);
        if (!live) return NULL;
        fp->live = live;
        fp->cap = cap;
    }
    void *p = fresh(bytes);
    if (!p) return NULL;
    fp->live[fp->n++] = p;
    fp->in_use += bytes;
    if (fp->in_use > fp->peak) fp->peak = fp->in_use;
    return p;
}

static void pool_free(vn_ctx *ctx, void *p)
{
    fake_pool *fp = ctx->dev;
    for (int i = 0; fp && i < fp->n; i++)
        if (fp->live[i] == p) {
            free(p);
            fp->live[i] = fp->live[--fp->n];
            return;
        }
}

static void pool_reset(vn_ctx *ctx)
{
    fake_pool *fp = ctx->dev;
    if (!fp) return;
    for (int i = 0; i < fp->n; i++) free(fp->live[i]);
    fp->n = 0;
    fp->in_use = 0;
}

static void pool_destroy(vn_ctx *ctx)
{
    pool_reset(ctx);
    if (ctx->dev) free(((fake_pool *)ctx->dev)->live);
    free(ctx->dev);
    ctx->dev = NULL;
}

static void pool_trim(vn_ctx *ctx) { (void)ctx; }

static void pool_stats(const vn_ctx *ctx, size_t *in_use, size_t *peak)
{
    const fake_pool *fp = ctx->dev;
    *in_use = fp ? fp->in_use : 0;
    *peak = fp ? fp->peak : 0;
}

static void pool_clear_peak(vn_ctx *ctx)
{
    fake_pool *fp = ctx->dev;
    if (fp) fp->peak = fp->in_use;
}

static int optim_step(struct vn_optim *opt, vn_error *err)
{
#ifdef FAKE_CPU_OPS
    return vn__optim_step_cpu(opt, err);
#else
    (void)opt;
    return vn_error_set(err, VN_ERR_UNSUPPORTED, "fake backend: no optimizer step");
#endif
}

static void optim_moments(struct vn_optim *opt) { (void)opt; }

static int ema_blend(float *e, const float *x, int64_t n, float d, float c)
{
    for (int64_t i = 0; i < n; i++) e[i] = e[i] * d + c * x[i];
    return VN_OK;
}

#ifndef FAKE_CPU_OPS
static const vn__op_kernels no_ops[VN_OP_COUNT];
#endif

static const vn__backend fake = {
    .build = VN__BACKEND_BUILD_HERE,
    .device = VN_DEVICE_CUDA,
    .check = check,
    .sync = sync_device,
    .set_tf32 = set_tf32,
    .set_deterministic = set_deterministic,
    .alloc = alloc,
    .free = release,
    .zero = zero,
    .copy = copy,
    .add_from_host = add_from_host,
    .pool_alloc = pool_alloc,
    .pool_free = pool_free,
    .pool_reset = pool_reset,
    .pool_destroy = pool_destroy,
    .pool_trim = pool_trim,
    .pool_stats = pool_stats,
    .pool_clear_peak = pool_clear_peak,
#ifndef FAKE_CPU_OPS
    .ops = no_ops,
#endif
    .optim_step = optim_step,
    .optim_moments_to_host = optim_moments,
    .optim_free = optim_moments,
    .ema_blend = ema_blend,
};

const vn__backend *vn__backend_entry(void);

const vn__backend *vn__backend_entry(void)
{
#ifdef FAKE_CPU_OPS
    /* The CPU column is libvanilla's, known only at run time. */
    static vn__backend cpu_ops;
    cpu_ops = fake;
    cpu_ops.ops = vn__cpu_op_table();
    return &cpu_ops;
#elif defined(FAKE_ABI)
    static vn__backend other;
    other = fake;
    other.build.abi = FAKE_ABI;
    return &other;
#else
    return &fake;
#endif
}
#endif
