/* Collectives among the ranks of a data-parallel run on device memory: NCCL, loaded with
 * dlopen the first time it is asked for (libnccl.so.2: the toolkit's, or the one PyTorch's
 * wheels bring), so the module loads and trains alone where NCCL is missing; the trainer then
 * reduces through host memory with MPI. One communicator per process, its operations on the
 * backend's stream (ordered after the kernels that made the gradients, before the optimizer's).
 * Waits poll the stream and NCCL's asynchronous error with a deadline, so a dead or hung peer
 * ends in an error (the communicator aborted) instead of a hang. */
#include "autograd/cuda/cuda_impl.h"
#include "base/vn_fs.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<nccl.h>)
#include <nccl.h>
#define VN_HAVE_NCCL_H 1
#endif
#endif

#ifdef VN_HAVE_NCCL_H

typedef struct nccl_api {
    void *lib;
    ncclResult_t (*get_unique_id)(ncclUniqueId *id);
    ncclResult_t (*comm_init_rank)(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
    ncclResult_t (*all_reduce)(const void *send, void *recv, size_t count, ncclDataType_t type,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
    ncclResult_t (*group_start)(void);
    ncclResult_t (*group_end)(void);
    ncclResult_t (*comm_destroy)(ncclComm_t comm);
    ncclResult_t (*comm_abort)(ncclComm_t comm);
    ncclResult_t (*get_async_error)(ncclComm_t comm, ncclResult_t *err);
    const char *(*error_string)(ncclResult_t r);
    ncclResult_t (*get_version)(int *version);
} nccl_api;

static nccl_api g_nccl;
static int g_loaded; /* 0 not tried, 1 loaded, -1 failed (g_why) */
static char g_why[384];
static ncclComm_t g_comm;

static int load(char *msg, size_t n)
{
    if (g_loaded == 0) {
        g_loaded = -1;
        void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *e = dlerror();
            snprintf(g_why, sizeof g_why, "NCCL is not installed (%s)",
                     e ? e : "libnccl.so.2 cannot be loaded");
        } else {
            nccl_api *a = &g_nccl;
            a->lib = h;
            *(void **)&a->get_unique_id = dlsym(h, "ncclGetUniqueId");
            *(void **)&a->comm_init_rank = dlsym(h, "ncclCommInitRank");
            *(void **)&a->all_reduce = dlsym(h, "ncclAllReduce");
            *(void **)&a->group_start = dlsym(h, "ncclGroupStart");
            *(void **)&a->group_end = dlsym(h, "ncclGroupEnd");
            *(void **)&a->comm_destroy = dlsym(h, "ncclCommDestroy");
            *(void **)&a->comm_abort = dlsym(h, "ncclCommAbort");
            *(void **)&a->get_async_error = dlsym(h, "ncclCommGetAsyncError");
            *(void **)&a->error_string = dlsym(h, "ncclGetErrorString");
            *(void **)&a->get_version = dlsym(h, "ncclGetVersion");
            if (!a->get_unique_id || !a->comm_init_rank || !a->all_reduce || !a->group_start ||
                !a->group_end || !a->comm_destroy || !a->comm_abort || !a->get_async_error ||
                !a->error_string || !a->get_version)
                snprintf(g_why, sizeof g_why, "libnccl.so.2 lacks a function this build calls");
            else
                g_loaded = 1;
        }
    }
    if (g_loaded < 0 && msg && n) snprintf(msg, n, "%s", g_why);
    return g_loaded > 0 ? VN_OK : VN_ERR_UNSUPPORTED;
}

static int nccl_fail(ncclResult_t r, const char *what, char *msg, size_t n)
{
    if (msg && n) snprintf(msg, n, "%s: %s (NCCL error %d)", what, g_nccl.error_string(r), (int)r);
    return VN_ERR_IO;
}

int vn__cuda_comm_available(char *msg, size_t n)
{
    if (!vn__cuda_get(msg, n)) return VN_ERR_UNSUPPORTED;
    int rc = load(msg, n);
    if (rc == VN_OK && msg && n) {
        int v = 0;
        g_nccl.get_version(&v);
        snprintf(msg, n, "NCCL %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    }
    return rc;
}

size_t vn__cuda_comm_id_size(void) { return sizeof(ncclUniqueId); }

int vn__cuda_comm_id(void *id, char *msg, size_t n)
{
    int rc = load(msg, n);
    if (rc != VN_OK) return rc;
    ncclUniqueId u;
    ncclResult_t r = g_nccl.get_unique_id(&u);
    if (r != ncclSuccess) return nccl_fail(r, "ncclGetUniqueId", msg, n);
    memcpy(id, &u, sizeof u);
    return VN_OK;
}

int vn__cuda_comm_init(const void *id, int nranks, int rank, char *msg, size_t n)
{
    vn__cuda *c = vn__cuda_get(msg, n);
    if (!c) return VN_ERR_UNSUPPORTED;
    int rc = load(msg, n);
    if (rc != VN_OK) return rc;
    if (g_comm) {
        if (msg && n) snprintf(msg, n, "this process already has an NCCL communicator");
        return VN_ERR_STATE;
    }
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclResult_t r = g_nccl.comm_init_rank(&g_comm, nranks, u, rank);
    if (r != ncclSuccess) {
        g_comm = NULL;
        return nccl_fail(r, "ncclCommInitRank", msg, n);
    }
    return VN_OK;
}

int vn__cuda_comm_allreduce(float *const *bufs, const int64_t *counts, int k, char *msg, size_t n)
{
    vn__cuda *c = vn__cuda_get(msg, n);
    if (!c) return VN_ERR_UNSUPPORTED;
    if (!g_comm) {
        if (msg && n) snprintf(msg, n, "no NCCL communicator (vn_device_comm_init first)");
        return VN_ERR_STATE;
    }
    ncclResult_t r = g_nccl.group_start();
    for (int i = 0; r == ncclSuccess && i < k; i++)
        if (counts[i] > 0)
            r = g_nccl.all_reduce(bufs[i], bufs[i], (size_t)counts[i], ncclFloat32, ncclSum,
                                  g_comm, c->stream);
    ncclResult_t r2 = g_nccl.group_end();
    if (r == ncclSuccess) r = r2;
    return r == ncclSuccess ? VN_OK : nccl_fail(r, "ncclAllReduce", msg, n);
}

int vn__cuda_comm_wait(double timeout_s, char *msg, size_t n)
{
    vn__cuda *c = vn__cuda_get(msg, n);
    if (!c) return VN_ERR_UNSUPPORTED;
    const double t0 = vn_monotonic();
    for (;;) {
        cudaError_t e = cudaStreamQuery(c->stream);
        if (e == cudaSuccess) return VN_OK;
        if (e != cudaErrorNotReady) {
            if (msg && n) snprintf(msg, n, "waiting for the device: %s", cudaGetErrorString(e));
            return VN_ERR_IO;
        }
        if (g_comm) {
            ncclResult_t a = ncclSuccess;
            g_nccl.get_async_error(g_comm, &a);
            if (a != ncclSuccess && a != ncclInProgress) {
                nccl_fail(a, "NCCL (a peer failed)", msg, n);
                g_nccl.comm_abort(g_comm);
                g_comm = NULL;
                return VN_ERR_IO;
            }
        }
        if (timeout_s > 0 && vn_monotonic() - t0 > timeout_s) {
            if (msg && n)
                snprintf(msg, n, "the device's work (an NCCL allreduce among it) did not finish "
                         "within %.0f s: a peer died or hangs", timeout_s);
            if (g_comm) g_nccl.comm_abort(g_comm);
            g_comm = NULL;
            return VN_ERR_IO;
        }
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

void vn__cuda_comm_destroy(void)
{
    if (!g_comm) return;
    vn__cuda *c = vn__cuda_get(NULL, 0);
    if (c) (void)cudaStreamSynchronize(c->stream);
    g_nccl.comm_destroy(g_comm);
    g_comm = NULL;
}

#else /* no nccl.h at build time */

int vn__cuda_comm_available(char *msg, size_t n)
{
    if (msg && n) snprintf(msg, n, "this build of the CUDA backend has no NCCL (nccl.h was not "
                           "found when it was compiled)");
    return VN_ERR_UNSUPPORTED;
}
size_t vn__cuda_comm_id_size(void) { return 0; }
int vn__cuda_comm_id(void *id, char *msg, size_t n)
{
    (void)id;
    return vn__cuda_comm_available(msg, n);
}
int vn__cuda_comm_init(const void *id, int nranks, int rank, char *msg, size_t n)
{
    (void)id, (void)nranks, (void)rank;
    return vn__cuda_comm_available(msg, n);
}
int vn__cuda_comm_allreduce(float *const *bufs, const int64_t *counts, int k, char *msg, size_t n)
{
    (void)bufs, (void)counts, (void)k;
    return vn__cuda_comm_available(msg, n);
}
int vn__cuda_comm_wait(double timeout_s, char *msg, size_t n)
{
    (void)timeout_s, (void)msg, (void)n;
    return vn__cuda_sync();
}
void vn__cuda_comm_destroy(void) {}

#endif

int vn__cuda_device_uid(char *buf, size_t n)
{
    if (!vn__cuda_get(NULL, 0)) return VN_ERR_UNSUPPORTED;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return VN_ERR_IO;
    char bus[64];
    if (cudaDeviceGetPCIBusId(bus, (int)sizeof bus, dev) != cudaSuccess) return VN_ERR_IO;
    snprintf(buf, n, "%s", bus);
    return VN_OK;
}
