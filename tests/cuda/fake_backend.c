/* A stand-in backend module for the tests of the loader (test_backend.c): "device" memory is
 * host memory, the op column is empty, the optimizer step refuses. It lets every path of
 * libvanilla through a backend table (autograd/device.c, dispatch.c, optim/) run without a
 * GPU, under the sanitizers too. Built four times by tests/cuda/meson.build: as is, with
 * FAKE_ABI (another table version), with FAKE_NO_ENTRY (no entry symbol) and with
 * FAKE_CPU_OPS, for test_train_device.sh: the op column and the optimizer step are the
 * CPU's, so that a whole training run can be placed on the "device" and must give the CPU's
 * bytes. In that variant the "device" memory is also out of the host's reach, as on a GPU:
 * it lives in one mapping that is PROT_NONE except while one of this module's entries (a
 * kernel, a copy, the optimizer step, the EMA blend) runs, so a host read or write of a
 * device pointer anywhere else crashes the test; and fresh step memory is NaN, as
 * uninitialised device memory may hold anything. With FAKE_COMM too (built where MPI is),
 * VN_FAKE_COMM=1 gives the stand-in device collectives over MPI, so that the trainer's NCCL
 * path (train/dist_grads.c) runs without GPUs. */
#include "autograd/backend.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* VN_FAKE_DEVICES (default 1) stand-in devices to choose from; the choice is only reported. */
static int g_chosen;
static int select_device(int index, int *chosen, char *msg, size_t n)
{
    const char *env = getenv("VN_FAKE_DEVICES");
    int count = env && atoi(env) > 0 ? atoi(env) : 1;
    int rc = check(msg, n);
    if (rc == VN_OK) *chosen = g_chosen = index % count;
    return rc;
}

static int sync_device(void) { return check(NULL, 0); }
static int set_tf32(bool on) { return on ? VN_OK : VN_OK; }
static int set_deterministic(bool on) { return on ? VN_OK : VN_OK; }
static int set_bf16(bool on) { return on ? VN_ERR_UNSUPPORTED : VN_OK; }

#ifdef FAKE_CPU_OPS
/* The device memory: whole pages of one reserved mapping, handed out in order and reused by
 * blocks of the same length once freed (a training step asks for the same sizes every time),
 * so one mprotect over [base, base + used) opens or closes all of it. */
#define ARENA_BYTES ((size_t)64 << 30)
#define PAGE ((size_t)4096)
typedef struct arena_block {
    uint8_t *p;
    size_t len;
    bool free;
} arena_block;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *g_base;
static size_t g_used;
static int g_open; /* entries running (they may nest) */
static arena_block *g_blocks;
static size_t g_n, g_cap;

/* A free block of len bytes, or new pages at the end (NULL when none are left). */
static uint8_t *arena_take(size_t len)
{
    for (size_t i = 0; i < g_n; i++)
        if (g_blocks[i].free && g_blocks[i].len == len) {
            g_blocks[i].free = false;
            return g_blocks[i].p;
        }
    if (g_n == g_cap) {
        size_t cap = g_cap ? 2 * g_cap : 256;
        arena_block *b = realloc(g_blocks, cap * sizeof *b);
        if (!b) return NULL;
        g_blocks = b;
        g_cap = cap;
    }
    if (g_used + len > ARENA_BYTES) return NULL;
    uint8_t *p = g_base + g_used;
    g_used += len;
    g_blocks[g_n++] = (arena_block){p, len, false};
    return p;
}

static void dev_open(void)
{
    pthread_mutex_lock(&g_lock);
    if (g_open++ == 0 && g_used) mprotect(g_base, g_used, PROT_READ | PROT_WRITE);
    pthread_mutex_unlock(&g_lock);
}

static void dev_close(void)
{
    pthread_mutex_lock(&g_lock);
    if (--g_open == 0 && g_used) mprotect(g_base, g_used, PROT_NONE);
    pthread_mutex_unlock(&g_lock);
}

/* len bytes of device memory filled with zeros, or with NaN (step memory). */
static void *arena_alloc(size_t bytes, bool nan)
{
    size_t len = ((bytes ? bytes : 1) + PAGE - 1) & ~(PAGE - 1);
    void *p = NULL;
    pthread_mutex_lock(&g_lock);
    if (!g_base) {
        void *m = mmap(NULL, ARENA_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        g_base = m == MAP_FAILED ? NULL : m;
    }
    uint8_t *b = g_base ? arena_take(len) : NULL;
    if (b && mprotect(b, len, PROT_READ | PROT_WRITE) == 0) {
        p = b;
        float *f = p;
        for (size_t i = 0; i < len / sizeof(float); i++) f[i] = nan ? NAN : 0.0f;
        if (!g_open) mprotect(p, len, PROT_NONE);
    }
    pthread_mutex_unlock(&g_lock);
    return p;
}

static void arena_free(void *p)
{
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; p && i < g_n; i++)
        if (g_blocks[i].p == p) g_blocks[i].free = true;
    pthread_mutex_unlock(&g_lock);
}

static void *alloc(size_t bytes) { return arena_alloc(bytes, false); }
static void release(void *p) { arena_free(p); }
static void *fresh(size_t bytes) { return arena_alloc(bytes, true); }
#else
static void dev_open(void) {}
static void dev_close(void) {}
static void *alloc(size_t bytes) { return calloc(1, bytes ? bytes : 64); }
static void release(void *p) { free(p); }
static void *fresh(size_t bytes) { return calloc(1, bytes ? bytes : 1); }
#endif

static int zero(void *p, size_t bytes)
{
    dev_open();
    memset(p, 0, bytes);
    dev_close();
    return VN_OK;
}

static int copy(void *dst, const void *src, size_t bytes)
{
    dev_open();
    memmove(dst, src, bytes);
    dev_close();
    return VN_OK;
}

static int add_from_host(float *dst, const float *src, int64_t n, bool assign)
{
    dev_open();
    for (int64_t i = 0; i < n; i++) dst[i] = assign ? src[i] : dst[i] + src[i];
    dev_close();
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
            release(p);
            fp->live[i] = fp->live[--fp->n];
            return;
        }
}

static void pool_reset(vn_ctx *ctx)
{
    fake_pool *fp = ctx->dev;
    if (!fp) return;
    for (int i = 0; i < fp->n; i++) release(fp->live[i]);
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
    dev_open();
    int rc = vn__optim_step_cpu(opt, err);
    dev_close();
    return rc;
#else
    (void)opt;
    return vn_error_set(err, VN_ERR_UNSUPPORTED, "fake backend: no optimizer step");
#endif
}

static void optim_moments(struct vn_optim *opt) { (void)opt; }

static int ema_blend(float *e, const float *x, int64_t n, float d, float c)
{
    dev_open();
    for (int64_t i = 0; i < n; i++) e[i] = e[i] * d + c * x[i];
    dev_close();
    return VN_OK;
}

#ifdef FAKE_CPU_OPS
/* The CPU's kernels, each run with the device memory open. */
static int cpu_forward(vn_ctx *ctx, vn_node *node)
{
    dev_open();
    int rc = vn__cpu_op_table()[node->op].forward(ctx, node);
    dev_close();
    return rc;
}

static void cpu_backward(vn_ctx *ctx, vn_node *node)
{
    dev_open();
    vn__cpu_op_table()[node->op].backward(ctx, node);
    dev_close();
}

static void cpu_recompute(vn_ctx *ctx, vn_node *node)
{
    dev_open();
    vn__cpu_op_table()[node->op].recompute(ctx, node);
    dev_close();
}

static vn__op_kernels cpu_ops[VN_OP_COUNT];

#ifdef FAKE_COMM
#include <mpi.h>

/* The stand-in's collectives (VN_FAKE_COMM=1), as the CUDA module's NCCL ones behave: an id
 * made by rank 0 and passed to every rank, a communicator of all ranks, in-place sums of the
 * device buffers (MPI_Allreduce, blocking, so wait has nothing left to wait for). The
 * identity of a stand-in device is its number: ranks on the same one "share a GPU". */
static bool g_comm;

static int fake_uid(char *buf, size_t n)
{
    snprintf(buf, n, "stand-in device %d", g_chosen);
    return VN_OK;
}

static int comm_available(char *msg, size_t n)
{
    const char *e = getenv("VN_FAKE_COMM");
    if (!(e && e[0] == '1')) {
        if (msg && n) snprintf(msg, n, "the stand-in device has no collectives; VN_FAKE_COMM=1 "
                               "gives it some over MPI");
        return VN_ERR_UNSUPPORTED;
    }
    if (msg && n) snprintf(msg, n, "stand-in collectives over MPI");
    return VN_OK;
}

static size_t comm_id_size(void) { return 24; }

static int comm_id(void *id, char *msg, size_t n)
{
    (void)msg, (void)n;
    unsigned char *b = id;
    for (size_t i = 0; i < comm_id_size(); i++) b[i] = (unsigned char)(i * 37 + 11);
    b[0] = (unsigned char)(getpid() & 0xff);
    return VN_OK;
}

static int comm_init(const void *id, int nranks, int rank, char *msg, size_t n)
{
    int size = 0, me = -1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    unsigned long sum = 0, lo, hi;
    for (size_t i = 0; i < comm_id_size(); i++) sum = sum * 31 + ((const unsigned char *)id)[i];
    MPI_Allreduce(&sum, &lo, 1, MPI_UNSIGNED_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&sum, &hi, 1, MPI_UNSIGNED_LONG, MPI_MAX, MPI_COMM_WORLD);
    if (nranks != size || rank != me || lo != hi) {
        if (msg && n) snprintf(msg, n, "stand-in collectives: rank %d of %d asked for, MPI has %d "
                               "of %d, ids %s", rank, nranks, me, size, lo == hi ? "equal" : "differ");
        return VN_ERR_INVALID;
    }
    g_comm = true;
    return VN_OK;
}

static int comm_allreduce(float *const *bufs, const int64_t *counts, int k, char *msg, size_t n)
{
    if (!g_comm) {
        if (msg && n) snprintf(msg, n, "no stand-in communicator");
        return VN_ERR_STATE;
    }
    int rc = MPI_SUCCESS;
    dev_open();
    for (int i = 0; rc == MPI_SUCCESS && i < k; i++)
        rc = MPI_Allreduce(MPI_IN_PLACE, bufs[i], (int)counts[i], MPI_FLOAT, MPI_SUM,
                           MPI_COMM_WORLD);
    dev_close();
    if (rc != MPI_SUCCESS && msg && n) snprintf(msg, n, "MPI_Allreduce failed (%d)", rc);
    return rc == MPI_SUCCESS ? VN_OK : VN_ERR_IO;
}

static int comm_wait(double timeout_s, char *msg, size_t n)
{
    (void)timeout_s, (void)msg, (void)n;
    return VN_OK;
}

static void comm_destroy(void) { g_comm = false; }
#endif
#else
static const vn__op_kernels no_ops[VN_OP_COUNT];
#endif

static const vn__backend fake = {
    .build = VN__BACKEND_BUILD_HERE,
    .device = VN_DEVICE_CUDA,
    .check = check,
    .select = select_device,
    .sync = sync_device,
    .set_tf32 = set_tf32,
    .set_deterministic = set_deterministic,
    .set_bf16 = set_bf16,
    .alloc = alloc,
    .free = release,
    .zero = zero,
    .copy = copy,
    .upload = copy,
    .add_from_host = add_from_host,
    .pool_alloc = pool_alloc,
    .pool_free = pool_free,
    .pool_reset = pool_reset,
    .pool_destroy = pool_destroy,
    .pool_trim = pool_trim,
    .pool_stats = pool_stats,
    .pool_clear_peak = pool_clear_peak,
#ifdef FAKE_CPU_OPS
    .ops = cpu_ops,
#else
    .ops = no_ops,
#endif
    .optim_step = optim_step,
    .optim_moments_to_host = optim_moments,
    .optim_free = optim_moments,
    .ema_blend = ema_blend,
#if defined(FAKE_CPU_OPS) && defined(FAKE_COMM)
    .device_uid = fake_uid,
    .comm_available = comm_available,
    .comm_id_size = comm_id_size,
    .comm_id = comm_id,
    .comm_init = comm_init,
    .comm_allreduce = comm_allreduce,
    .comm_wait = comm_wait,
    .comm_destroy = comm_destroy,
#endif
};

const vn__backend *vn__backend_entry(void);

const vn__backend *vn__backend_entry(void)
{
#ifdef FAKE_CPU_OPS
    /* Where the CPU has a kernel, the wrapper that opens the device memory around it. */
    const vn__op_kernels *cpu = vn__cpu_op_table();
    for (int op = 0; op < VN_OP_COUNT; op++)
        cpu_ops[op] = (vn__op_kernels){cpu[op].forward ? cpu_forward : NULL,
                                       cpu[op].backward ? cpu_backward : NULL,
                                       cpu[op].recompute ? cpu_recompute : NULL};
    return &fake;
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
