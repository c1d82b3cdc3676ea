/* float32 tensors up to 4-D. Activations are NHWC: shape = {N, H, W, C}.
 * Two lifetimes:
 *  - model lifetime: vn_tensor_new / vn_tensor_free (parameters, buffers, user inputs);
 *    a tensor created with requires_grad owns a zeroed gradient buffer of the same size;
 *  - step lifetime: tensors made by ops inside a vn_ctx (see vn_ctx.h), released in one
 *    call by vn_ctx_reset after each step. */
#ifndef VN_TENSOR_H
#define VN_TENSOR_H

#include "base/vn_base.h"
#include "io/vn_layout.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VN_MAX_DIMS 4

enum {
    VN_TENSOR_REQUIRES_GRAD = 1u << 0,
    VN_TENSOR_PARAM = 1u << 1,      /* a trainable parameter (leaf) */
    VN_TENSOR_STEP = 1u << 2,       /* data and grad live in a context's step pool */
    VN_TENSOR_VIEW = 1u << 3,       /* data belongs to another tensor */
    VN_TENSOR_OHWI = 1u << 4,       /* conv weight kept as [O, KH, KW, I/g]; files use OIHW */
    VN_TENSOR_NO_DECAY = 1u << 5,   /* exempt from weight decay (1-D params, biases) */
    VN_TENSOR_RELEASED = 1u << 6,   /* step tensor given to vn_release: no further reads */
    VN_TENSOR_DROPPED = 1u << 7,    /* data freed; backward recomputes it when needed */
    VN_TENSOR_HAS_VIEW = 1u << 8    /* another tensor shares this data (never released) */
};

struct vn_node;

/* Where a tensor's data lives; the op table dispatches on it (autograd/dispatch.c). */
typedef enum vn_device {
    VN_DEVICE_CPU = 0,
    VN_DEVICE_CUDA,
    VN_DEVICE_COUNT
} vn_device;

/* "cpu", "cuda". */
const char *vn_device_name(vn_device d);

typedef struct vn_tensor {
    int ndim;
    int64_t shape[VN_MAX_DIMS];
    int64_t numel;
    float *data;
    float *grad; /* NULL until a gradient exists */
    uint32_t flags;
    const char *name;       /* optional, not owned */
    struct vn_node *node;   /* the tape entry that produced it (NULL for leaves) */
    int32_t saved_refs;     /* tape entries that still need this data in backward */
    vn_device device;       /* VN_DEVICE_CPU for every tensor made today */
    const void *owner;      /* a step tensor's context (ops refuse another context's); NULL for
                               model-lifetime tensors */
} vn_tensor;

/* Model-lifetime tensor, data zero-filled; returns NULL on allocation failure, for a rank
 * outside 0..VN_MAX_DIMS and for a negative dimension. */
vn_tensor *vn_tensor_new(int ndim, const int64_t *shape, bool requires_grad);
vn_tensor *vn_tensor_new4(int64_t d0, int64_t d1, int64_t d2, int64_t d3, bool requires_grad);
void vn_tensor_free(vn_tensor *t);

static inline bool vn_tensor_requires_grad(const vn_tensor *t)
{
    return t && (t->flags & VN_TENSOR_REQUIRES_GRAD);
}
/* Sets the gradient of a model-lifetime tensor to zero (allocating it if needed). */
int vn_tensor_zero_grad(vn_tensor *t);
/* Frees t's gradient buffer and marks it as not requiring grad (a copy that is never
 * differentiated, as an EMA of the weights: its buffer would only hold memory). */
void vn_tensor_drop_grad(vn_tensor *t);
bool vn_tensor_same_shape(const vn_tensor *a, const vn_tensor *b);
void vn_tensor_fill(vn_tensor *t, float v);
void vn_tensor_copy_data(vn_tensor *dst, const vn_tensor *src);

/* ---- devices (autograd/device.c) ---- */

/* "cpu" or "cuda" -> the device; VN_ERR_INVALID for anything else. */
int vn_device_parse(const char *name, vn_device *out);
/* VN_OK when tensors can be placed on d; otherwise a status and, in msg, why ("this build has
 * no CUDA backend ...", "no CUDA device visible ..."). msg may be NULL. */
int vn_device_check(vn_device d, char *msg, size_t n);
/* Picks the device of this process among the visible ones of d's kind: index modulo their
 * count (one rank per GPU: the rank's local rank). Must come before the first
 * vn_device_check(d), which starts the device; *chosen (may be NULL) gets the device number.
 * VN_OK, or a status and why in msg (no backend, no device, called too late). */
int vn_device_select(vn_device d, int index, int *chosen, char *msg, size_t n);
/* Moves a model-lifetime tensor's data (and gradient, when it has one) to device d. On
 * failure the tensor is unchanged. Step tensors and views are refused (VN_ERR_INVALID). */
int vn_tensor_to_device(vn_tensor *t, vn_device d);
/* Copies numel floats of data (or of the gradient) to host memory / from host memory,
 * whatever the tensor's device. */
int vn_tensor_read(const vn_tensor *t, float *host);
int vn_tensor_write(vn_tensor *t, const float *host);
int vn_tensor_read_grad(const vn_tensor *t, float *host);
/* Copies numel floats from host memory into the data of a tensor on any device without
 * waiting for the work the device has queued (through pinned staging on CUDA: the host
 * buffer may be reused when it returns); the device's later work is ordered after it. */
int vn_tensor_upload(vn_tensor *t, const float *host);
int vn_tensor_write_grad(vn_tensor *t, const float *host);
/* Waits until everything queued on device d has run (timing, before reading results by
 * other means than vn_tensor_read). VN_OK at once for the CPU. */
int vn_device_sync(vn_device d);
/* FP32 matrix products and convolutions on d may use TF32 tensor cores (the default for
 * CUDA; the environment variable VN_CUDA_STRICT_FP32=1 turns it off at start) or not. */
int vn_device_set_tf32(vn_device d, bool on);
/* Only deterministic algorithms on d (cuDNN's deterministic convolution algorithms: a resume
 * on the same GPU is bit-exact) or the fastest (the default; VN_CUDA_DETERMINISTIC=1 turns it
 * on at start). VN_OK at once for the CPU, whose kernels are always deterministic. */
int vn_device_set_deterministic(vn_device d, bool on);
/* Collectives among the ranks of a data-parallel run on d's memory (NCCL on CUDA), for
 * train/dist_grads.c. available: VN_OK with the library's name and version in msg, or why
 * not (no backend collectives, NCCL not installed). id: rank 0 makes the communicator's id
 * (id_size bytes; 0 when there are none), every rank passes it to init with its rank;
 * allreduce: sums k buffers of counts[i] floats over all ranks in place, queued on the
 * device after the work before it; wait: waits for everything queued, with a deadline
 * (timeout_s <= 0: none) after which the communicator is aborted; destroy: frees it. uid:
 * the identity of this process's device (ranks that share one cannot use NCCL). Each
 * returns a status and, in msg (may be NULL), why. */
int vn_device_comm_available(vn_device d, char *msg, size_t n);
size_t vn_device_comm_id_size(vn_device d);
int vn_device_comm_id(vn_device d, void *id, char *msg, size_t n);
int vn_device_comm_init(vn_device d, const void *id, int nranks, int rank, char *msg, size_t n);
int vn_device_comm_allreduce(vn_device d, float *const *bufs, const int64_t *counts, int k,
                             char *msg, size_t n);
int vn_device_comm_wait(vn_device d, double timeout_s, char *msg, size_t n);
void vn_device_comm_destroy(vn_device d);
int vn_device_uid(vn_device d, char *buf, size_t n);
/* bf16 autocast on d: the matrix products of linear layers and 1x1 convolutions take bf16
 * copies of their operands and accumulate in FP32; parameters, gradients, optimizer state
 * and every other op stay FP32 (the master copy). Off by default; VN_ERR_UNSUPPORTED on the
 * CPU (which has no bf16 path) when asked for on. */
int vn_device_set_bf16(vn_device d, bool on);


#ifdef __cplusplus
}
#endif
#endif
