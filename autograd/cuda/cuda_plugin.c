/* The entry of the CUDA backend module (libvanilla_cuda.so): its one table, the CUDA column of
 * the op table and the device, optimizer and EMA entries (autograd/backend.h). libvanilla
 * loads the module and calls VN__BACKEND_ENTRY the first time CUDA is asked for. */
#include "autograd/backend.h"
#include "autograd/cuda/cuda_impl.h"

/* The CUDA kernels of each op: the CPU ones' names with the _cuda suffix (cuda_ops.c,
 * cuda_dense.c). Declared weak: an op whose CUDA kernels are not written yet has an empty
 * cell (NULL), and using it on a CUDA tensor fails with "no kernel for device cuda" instead
 * of breaking the link. */
#define VN_X_DECLARE_CUDA(name, text, kernels, recompute)                                      \
    __attribute__((weak)) int vn__##kernels##_forward_cuda(vn_ctx *ctx, vn_node *node);        \
    __attribute__((weak)) void vn__##kernels##_backward_cuda(vn_ctx *ctx, vn_node *node);      \
    __attribute__((weak)) void vn__##kernels##_recompute_cuda(vn_ctx *ctx, vn_node *node);
VN_OP_LIST(VN_X_DECLARE_CUDA)
#undef VN_X_DECLARE_CUDA

#define VN_CUDA_RECOMPUTE_0(kernels) NULL
#define VN_CUDA_RECOMPUTE_1(kernels) vn__##kernels##_recompute_cuda
#define VN_X_CELL_CUDA(name, text, kernels, recompute)                                     \
    [VN_OP_##name] = {vn__##kernels##_forward_cuda, vn__##kernels##_backward_cuda,          \
                      VN_CUDA_RECOMPUTE_##recompute(kernels)},

static const vn__op_kernels cuda_ops[VN_OP_COUNT] = {VN_OP_LIST(VN_X_CELL_CUDA)};
#undef VN_X_CELL_CUDA

static const vn__backend cuda_backend = {
    .build = VN__BACKEND_BUILD_HERE,
    .device = VN_DEVICE_CUDA,
    .check = vn__cuda_check,
    .select = vn__cuda_select,
    .sync = vn__cuda_sync,
    .set_tf32 = vn__cuda_set_tf32,
    .set_deterministic = vn__cuda_set_deterministic,
    .set_bf16 = vn__cuda_set_bf16,
    .alloc = vn__cuda_alloc,
    .free = vn__cuda_free,
    .zero = vn__cuda_zero,
    .copy = vn__cuda_copy,
    .add_from_host = vn__cuda_add_from_host,
    .upload = vn__cuda_upload,
    .pool_alloc = vn__cuda_pool_alloc,
    .pool_free = vn__cuda_pool_free,
    .pool_reset = vn__cuda_pool_reset,
    .pool_destroy = vn__cuda_pool_destroy,
    .pool_trim = vn__cuda_pool_trim,
    .pool_stats = vn__cuda_pool_stats,
    .pool_clear_peak = vn__cuda_pool_clear_peak,
    .ops = cuda_ops,
    .optim_step = vn__optim_step_cuda,
    .optim_moments_to_host = vn__optim_moments_to_host,
    .optim_free = vn__optim_free_cuda,
    .ema_blend = vn__ema_blend_cuda,
    .device_uid = vn__cuda_device_uid,
    .comm_available = vn__cuda_comm_available,
    .comm_id_size = vn__cuda_comm_id_size,
    .comm_id = vn__cuda_comm_id,
    .comm_init = vn__cuda_comm_init,
    .comm_allreduce = vn__cuda_comm_allreduce,
    .comm_wait = vn__cuda_comm_wait,
    .comm_destroy = vn__cuda_comm_destroy,
};

/* The module's one public symbol (named by VN__BACKEND_ENTRY). */
const vn__backend *vn__backend_entry(void);

const vn__backend *vn__backend_entry(void)
{
    return &cuda_backend;
}
