/* Private to the library and its backend plugins: a device backend that is not the CPU is a
 * shared module (libvanilla_cuda.so) that libvanilla loads the first time the device is asked
 * for (autograd/backend.c), so that a CPU run never maps the device's libraries. The module
 * exports one function, VN__BACKEND_ENTRY, returning one table: every entry point the core
 * (device.c, dispatch.c) and optim/ call for that device. The table's header says which
 * build made it; a module of another build is refused, never called. */
#ifndef VN_BACKEND_H
#define VN_BACKEND_H

#include "autograd/ctx_impl.h"
#include "autograd/ops_impl.h"
#include "base/vn_base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Raise it whenever vn__backend changes shape or meaning. */
#define VN__BACKEND_ABI 5u
/* The symbol a backend module exports: const vn__backend *VN__BACKEND_ENTRY(void). */
#define VN__BACKEND_ENTRY "vn__backend_entry"

struct vn_optim; /* optim/optim_impl.h: its step and moments on the device */

/* What identifies a build: a module is loaded only when every field equals libvanilla's. */
typedef struct vn__backend_build {
    uint32_t abi;          /* VN__BACKEND_ABI */
    uint32_t table_size;   /* sizeof(vn__backend) */
    uint32_t op_count;     /* VN_OP_COUNT */
    uint32_t tensor_size;  /* the structs both sides read by layout */
    uint32_t node_size;
    uint32_t ctx_size;
    const char *version;   /* the project version (meson passes VN_VERSION to both sides) */
} vn__backend_build;

typedef struct vn__backend {
    vn__backend_build build;
    vn_device device;
    /* VN_OK when the device is usable; otherwise why not (no driver, no device) in msg. */
    int (*check)(char *msg, size_t n);
    /* Which of the visible devices this process uses: index modulo their count (a rank's
     * local rank). Before the device's first use only (check starts it); VN_OK with the
     * device's number in *chosen, or a status and why in msg. */
    int (*select)(int index, int *chosen, char *msg, size_t n);
    int (*sync)(void);
    int (*set_tf32)(bool on);
    /* Deterministic algorithms only (cuDNN's ranking filtered), or the fastest. */
    int (*set_deterministic)(bool on);
    /* bf16 autocast of the matrix products of linear layers and 1x1 convolutions, or FP32. */
    int (*set_bf16)(bool on);
    /* Model-lifetime memory, zero-filled (NULL on failure), and copies. */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    int (*zero)(void *p, size_t bytes);
    int (*copy)(void *dst, const void *src, size_t bytes);
    int (*add_from_host)(float *dst, const float *src, int64_t n, bool assign);
    /* Host to device without waiting for the device's queued work (the host buffer may be
     * reused when it returns); later kernels on the device are ordered after it. */
    int (*upload)(void *dst, const void *src, size_t bytes);
    /* A context's step pool (the vn__dev_pool_* of device_impl.h). */
    void *(*pool_alloc)(vn_ctx *ctx, size_t bytes);
    void (*pool_free)(vn_ctx *ctx, void *p);
    void (*pool_reset)(vn_ctx *ctx);
    void (*pool_destroy)(vn_ctx *ctx);
    void (*pool_trim)(vn_ctx *ctx);
    void (*pool_stats)(const vn_ctx *ctx, size_t *in_use, size_t *peak);
    void (*pool_clear_peak)(vn_ctx *ctx);
    /* The device's column of the op table: [VN_OP_COUNT] cells, forward NULL where the op has
     * no kernel on the device. */
    const vn__op_kernels *ops;
    /* optim/: the step of parameters on the device, the moments' download for the state
     * functions, their release, and the EMA blend e = e * d + c * x. */
    int (*optim_step)(struct vn_optim *opt, vn_error *err);
    void (*optim_moments_to_host)(struct vn_optim *opt);
    void (*optim_free)(struct vn_optim *opt);
    int (*ema_blend)(float *e, const float *x, int64_t n, float d, float c);
    /* The identity of this process's device (a PCI bus id), so that ranks sharing one can
     * tell; NULL when the backend cannot say. */
    int (*device_uid)(char *buf, size_t n);
    /* Collectives among the ranks of a data-parallel run on device memory (the vn_device_comm_*
     * of vn_tensor.h; NCCL on CUDA), or all NULL. */
    int (*comm_available)(char *msg, size_t n);
    size_t (*comm_id_size)(void);
    int (*comm_id)(void *id, char *msg, size_t n);
    int (*comm_init)(const void *id, int nranks, int rank, char *msg, size_t n);
    int (*comm_allreduce)(float *const *bufs, const int64_t *counts, int k, char *msg, size_t n);
    int (*comm_wait)(double timeout_s, char *msg, size_t n);
    void (*comm_destroy)(void);
} vn__backend;

typedef const vn__backend *(*vn__backend_entry_fn)(void);

/* The CPU's column of the op table and the CPU optimizer step (autograd/dispatch.c,
 * optim/optim_step.c), for a stand-in module that runs the CPU kernels on host memory as if
 * it were a device's (tests/cuda/fake_backend.c, FAKE_CPU_OPS). */
const vn__op_kernels *vn__cpu_op_table(void);
int vn__optim_step_cpu(struct vn_optim *opt, vn_error *err);

#ifndef VN_VERSION
#error "VN_VERSION (the project version) is defined by meson.build for libvanilla and its backends"
#endif

/* The build header of this build: a module's table starts with it, the loader compares. */
#define VN__BACKEND_BUILD_HERE                                                             \
    {VN__BACKEND_ABI, (uint32_t)sizeof(vn__backend), (uint32_t)VN_OP_COUNT,                 \
     (uint32_t)sizeof(vn_tensor), (uint32_t)sizeof(vn_node), (uint32_t)sizeof(struct vn_ctx), \
     VN_VERSION}

/* The table of device d when its backend is loaded, else NULL; never loads. Every tensor or
 * context on d was made after vn_device_check(d) succeeded, so code that holds one may use
 * vn__backend_must(d). */
const vn__backend *vn__backend_of(vn_device d);
const vn__backend *vn__backend_must(vn_device d);
/* Loads the backend of d on first use (once per process; a failure is remembered). VN_OK,
 * or VN_ERR_UNSUPPORTED with what is missing in msg: the module paths tried, dlerror(), a
 * build mismatch. Does not check the device itself (the table's check does). */
int vn__backend_load(vn_device d, char *msg, size_t n);

#endif
