/* Loading a device backend module on first use (see backend.h). The CUDA backend is
 * libvanilla_cuda.so, looked for in this order: $VN_CUDA_PLUGIN when set (that path only),
 * then beside the libvanilla that is running (dladdr), then the install libdir. Only this
 * file calls dlopen; a CPU run never reaches it, so no CUDA library is ever mapped there.
 *
 * The loaded tables are process-wide, like the device and its driver: loaded once under a
 * lock, read without one afterwards (an atomic pointer per device). A failed load is
 * remembered with its reason and not retried. */
#define _GNU_SOURCE /* dladdr */
#include "autograd/backend.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef VN_CUDA_PLUGIN_BUILT
#error "meson.build defines VN_CUDA_PLUGIN_BUILT (0 or 1) and VN_LIBDIR for this file"
#endif

#define PLUGIN_FILE "libvanilla_cuda.so"
#define PLUGIN_ENV "VN_CUDA_PLUGIN"
#define WHY_MAX 512

typedef struct backend_slot {
    _Atomic(const vn__backend *) table;
    bool tried;
    char why[WHY_MAX]; /* the reason of a failed load */
} backend_slot;

static backend_slot g_slots[VN_DEVICE_COUNT];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

const vn__backend *vn__backend_of(vn_device d)
{
    if ((unsigned)d >= VN_DEVICE_COUNT) return NULL;
    return atomic_load_explicit(&g_slots[d].table, memory_order_acquire);
}

const vn__backend *vn__backend_must(vn_device d)
{
    const vn__backend *b = vn__backend_of(d);
    VN_ASSERT(b, "device %s used before vn_device_check loaded its backend", vn_device_name(d));
    return b;
}

/* NULL when the module's build header equals ours; else what differs. */
static const char *build_mismatch(const vn__backend *b, vn_device d)
{
    const vn__backend_build here = VN__BACKEND_BUILD_HERE;
    if (!b) return "its entry returned no table";
    if (b->build.abi != here.abi) return "another backend ABI";
    if (b->build.table_size != here.table_size) return "another table size";
    if (b->build.op_count != here.op_count) return "another op list";
    if (b->build.tensor_size != here.tensor_size || b->build.node_size != here.node_size ||
        b->build.ctx_size != here.ctx_size)
        return "other tensor, node or context layouts";
    if (!b->build.version || strcmp(b->build.version, here.version) != 0)
        return "another version";
    if (b->device != d || !b->check || !b->ops) return "a table for another device";
    return NULL;
}

/* Loads one candidate path. 1: loaded; 0: no file there (noted in tried); -1: the file is
 * there but cannot serve (why says so). */
static int try_path(const char *path, vn_device d, const vn__backend **out, char *why, size_t n,
                    char *tried, size_t tn)
{
    if (access(path, F_OK) != 0) {
        size_t len = strlen(tried);
        snprintf(tried + len, tn - len, "%s%s", len ? ", " : "", path);
        return 0;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, n, "the CUDA backend %s cannot be loaded: %s", path,
                 e ? e : "dlopen failed");
        return -1;
    }
    vn__backend_entry_fn entry = (vn__backend_entry_fn)dlsym(h, VN__BACKEND_ENTRY);
    const char *bad = entry ? build_mismatch(entry(), d) : NULL;
    if (!entry)
        snprintf(why, n, "the CUDA backend %s is not a backend module of vanilla (no "
                 VN__BACKEND_ENTRY " in it)", path);
    else if (bad)
        snprintf(why, n, "the CUDA backend %s is of another build of libvanilla (%s; this "
                 "one is version %s)", path, bad, VN_VERSION);
    if (!entry || bad) {
        dlclose(h);
        return -1;
    }
    *out = entry();
    /* The module stays loaded for the life of the process. */
    return 1;
}

/* The folder of the libvanilla that is running (or of the program linking it statically). */
static bool own_dir(char *dir, size_t n)
{
    Dl_info info;
    if (!dladdr((void *)&vn__backend_load, &info) || !info.dli_fname) return false;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash) return false;
    snprintf(dir, n, "%.*s", (int)(slash - info.dli_fname), info.dli_fname);
    return true;
}

static int load_cuda(const vn__backend **out, char *why, size_t n)
{
    char tried[WHY_MAX] = "", path[PATH_MAX], dir[PATH_MAX] = "";
    const char *env = getenv(PLUGIN_ENV);
    if (env && env[0]) {
        int r = try_path(env, VN_DEVICE_CUDA, out, why, n, tried, sizeof tried);
        if (r == 0)
            snprintf(why, n, "the CUDA backend %s (from " PLUGIN_ENV ") does not exist", env);
        return r == 1 ? VN_OK : VN_ERR_UNSUPPORTED;
    }
    if (!VN_CUDA_PLUGIN_BUILT) {
        snprintf(why, n, "this build has no CUDA backend (rebuild with -Dcuda=enabled on a machine "
                 "with nvcc, cuBLAS and cuDNN, or set " PLUGIN_ENV " to a " PLUGIN_FILE " of "
                 "this version)");
        return VN_ERR_UNSUPPORTED;
    }
    if (own_dir(dir, sizeof dir)) {
        snprintf(path, sizeof path, "%s/" PLUGIN_FILE, dir);
        int r = try_path(path, VN_DEVICE_CUDA, out, why, n, tried, sizeof tried);
        if (r != 0) return r == 1 ? VN_OK : VN_ERR_UNSUPPORTED;
    }
    if (strcmp(dir, VN_LIBDIR) != 0) {
        int r = try_path(VN_LIBDIR "/" PLUGIN_FILE, VN_DEVICE_CUDA, out, why, n, tried,
                         sizeof tried);
        if (r != 0) return r == 1 ? VN_OK : VN_ERR_UNSUPPORTED;
    }
    snprintf(why, n, "the CUDA backend is missing: no %s (set " PLUGIN_ENV " to the path of "
             PLUGIN_FILE ")", tried);
    return VN_ERR_UNSUPPORTED;
}

int vn__backend_load(vn_device d, char *msg, size_t n)
{
    if (msg && n) msg[0] = '\0';
    if ((unsigned)d >= VN_DEVICE_COUNT || d == VN_DEVICE_CPU) return VN_ERR_INVALID;
    if (vn__backend_of(d)) return VN_OK;
    pthread_mutex_lock(&g_lock);
    backend_slot *s = &g_slots[d];
    int rc = VN_OK;
    if (!atomic_load_explicit(&s->table, memory_order_relaxed)) {
        if (!s->tried) {
            const vn__backend *b = NULL;
            s->tried = true;
            if (load_cuda(&b, s->why, sizeof s->why) == VN_OK)
                atomic_store_explicit(&s->table, b, memory_order_release);
        }
        if (!atomic_load_explicit(&s->table, memory_order_relaxed)) rc = VN_ERR_UNSUPPORTED;
    }
    if (rc != VN_OK && msg && n) snprintf(msg, n, "%s", s->why);
    pthread_mutex_unlock(&g_lock);
    return rc;
}
