/* Private to the CUDA backend (autograd/cuda/): the process-wide stream and library handles,
 * error helpers, and the launchers of kernels.cu (plain C signatures, callable from C11). */
#ifndef VN_CUDA_IMPL_H
#define VN_CUDA_IMPL_H

#include "autograd/cuda/cuda_stream.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef __CUDACC__
#include "autograd/ops_impl.h"
#include "autograd/ops_state.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

/* The backend's process-wide state: one device (the current one), one stream on which every
 * kernel, library call and copy is ordered, and the cuBLAS and cuDNN handles bound to it.
 * Created on first use; NULL (with the reason in msg) when no device is usable. */
typedef struct vn__cuda {
    cudaStream_t stream;
    cublasHandle_t blas;
    cudnnHandle_t dnn;
    bool tf32;          /* TF32 tensor cores for FP32 GEMMs and convolutions */
    bool deterministic; /* deterministic cuDNN algorithms only */
    bool bf16;          /* bf16 autocast of the linear and 1x1 conv GEMMs (cuda_dense.c) */
} vn__cuda;

vn__cuda *vn__cuda_get(char *msg, size_t n);

/* cuda_device.c: the device entries of the backend table (cuda_plugin.c). */
int vn__cuda_check(char *msg, size_t n);
int vn__cuda_select(int index, int *chosen, char *msg, size_t n);
int vn__cuda_sync(void);
int vn__cuda_set_tf32(bool on);
int vn__cuda_set_bf16(bool on);
int vn__cuda_set_deterministic(bool on);
void *vn__cuda_alloc(size_t bytes);
void vn__cuda_free(void *p);
int vn__cuda_zero(void *p, size_t bytes);
int vn__cuda_copy(void *dst, const void *src, size_t bytes);
int vn__cuda_add_from_host(float *dst, const float *src, int64_t n, bool assign);
/* Host to device without waiting for the device (pinned staging; the host buffer may be
 * reused at once). */
int vn__cuda_upload(void *dst, const void *src, size_t bytes);
void *vn__cuda_pool_alloc(vn_ctx *ctx, size_t bytes);
void vn__cuda_pool_free(vn_ctx *ctx, void *p);
void vn__cuda_pool_reset(vn_ctx *ctx);
void vn__cuda_pool_destroy(vn_ctx *ctx);
void vn__cuda_pool_trim(vn_ctx *ctx);
void vn__cuda_pool_stats(const vn_ctx *ctx, size_t *in_use, size_t *peak);
void vn__cuda_pool_clear_peak(vn_ctx *ctx);

/* cuda_comm.c: collectives among data-parallel ranks (NCCL, loaded on first use) and the
 * device's identity (its PCI bus id). */
int vn__cuda_comm_available(char *msg, size_t n);
size_t vn__cuda_comm_id_size(void);
int vn__cuda_comm_id(void *id, char *msg, size_t n);
int vn__cuda_comm_init(const void *id, int nranks, int rank, char *msg, size_t n);
int vn__cuda_comm_allreduce(float *const *bufs, const int64_t *counts, int k, char *msg, size_t n);
int vn__cuda_comm_wait(double timeout_s, char *msg, size_t n);
void vn__cuda_comm_destroy(void);
int vn__cuda_device_uid(char *buf, size_t n);

/* optim/optim_cuda.c: the optimizer and EMA entries of the backend table. */
struct vn_optim;
int vn__optim_step_cuda(struct vn_optim *opt, vn_error *err);
void vn__optim_moments_to_host(struct vn_optim *opt);
void vn__optim_free_cuda(struct vn_optim *opt);
int vn__ema_blend_cuda(float *e, const float *x, int64_t n, float d, float c);

/* Sets the context error from a CUDA / cuBLAS / cuDNN status; returns the vn status. */
int vn__cuda_fail(vn_ctx *ctx, const char *what, int cuda_err);
int vn__cublas_fail(vn_ctx *ctx, const char *what, int blas_status);
int vn__cudnn_fail(vn_ctx *ctx, const char *what, int dnn_status);
/* A device scratch buffer from the context's step pool; NULL with the context error set. */
void *vn__cuda_scratch(vn_ctx *ctx, size_t bytes, const char *what);
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* cuda_device.c: whether the switch `name` is set to 1 in the environment, read once into
 * *cache (start it at -1); for the backend's comparison switches (VN_CUDA_SCALAR, ...). */
bool vn__cuda_env_on(const char *name, int *cache);

/* kernels.cu: each launcher enqueues on `stream` and returns cudaGetLastError(). */

int vn__k_leaky_fwd(vn__stream s, float *y, const float *x, int64_t n, float slope);
int vn__k_leaky_bwd(vn__stream s, float *dx, const float *dy, const float *sign, int64_t n,
                    float slope, bool assign);
int vn__k_axpby(vn__stream s, float *y, const float *x, int64_t n, float a, bool assign);
int vn__k_add2(vn__stream s, float *y, const float *a, const float *b, int64_t n);
int vn__k_dropout_fwd(vn__stream s, float *y, uint8_t *keep, const float *x, int64_t n, float p,
                      float scale, uint64_t seed);
int vn__k_dropout_apply(vn__stream s, float *y, const uint8_t *keep, const float *x, int64_t n,
                        float scale, bool accumulate);
/* rec (may be NULL): the batch's mean then biased variance, [2 * c] doubles, for
 * vn__k_bn_running. */
int vn__k_bn_stats(vn__stream s, float *mean, float *invstd, double *rec, double *part,
                   const float *x, int64_t rows, int64_t c, float eps, int parts);
int vn__k_bn_running(vn__stream s, float *rmean, float *rvar, const double *rec, int64_t rows,
                     int64_t c, float momentum);
int vn__k_bn_eval_stats(vn__stream s, float *mean, float *invstd, const float *rmean,
                        const float *rvar, int64_t c, float eps);
/* act / z: the leaky_relu(slope) of vn_batch_norm2d_leaky, applied to the output, and taken
 * back through (from the output z) in the backward sums and dx (z NULL: none). */
int vn__k_bn_apply(vn__stream s, float *y, const float *x, const float *mean, const float *invstd,
                   const float *w, const float *b, int64_t rows, int64_t c, bool act, float slope);
int vn__k_bn_grad_sums(vn__stream s, float *sum_dy, float *sum_dy_xhat, double *part,
                       const float *dy, const float *x, const float *mean, const float *invstd,
                       int64_t rows, int64_t c, int parts, const float *z, float slope);
int vn__k_bn_bwd_dx(vn__stream s, float *dx, const float *dy, const float *x, const float *mean,
                    const float *invstd, const float *w, const float *sum_dy,
                    const float *sum_dy_xhat, int64_t rows, int64_t c, bool training,
                    bool assign, const float *z, float slope);
int vn__k_accumulate(vn__stream s, float *dst, const float *src, int64_t n);
int vn__k_maxpool_fwd(vn__stream s, float *y, int32_t *arg, const float *x, int64_t n, int64_t h,
                      int64_t w, int64_t c, int64_t oh, int64_t ow, int k);
int vn__k_maxpool_bwd(vn__stream s, float *dx, const float *dy, const int32_t *arg, int64_t n,
                      int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow, int k, bool assign);
int vn__k_avgpool_fwd(vn__stream s, float *y, const float *x, int64_t n, int64_t h, int64_t w,
                      int64_t c, int64_t oh, int64_t ow);
int vn__k_avgpool_bwd(vn__stream s, float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                      int64_t c, int64_t oh, int64_t ow);
int vn__k_bias_grad(vn__stream s, float *db, double *part, const float *dy, int64_t rows,
                    int64_t c, int parts);
int vn__k_bias_add(vn__stream s, float *y, const float *b, int64_t rows, int64_t c);
int vn__k_ce_fwd(vn__stream s, float *loss, double *lse, const float *x, const int32_t *labels,
                 const float *targets, int64_t rows, int64_t c, float smoothing);
int vn__k_ce_bwd(vn__stream s, float *dx, const float *dloss, const float *x, const double *lse,
                 const int32_t *labels, const float *targets, int64_t rows, int64_t c,
                 float smoothing, bool assign);
int vn__k_bce_fwd(vn__stream s, float *loss, double *part, const float *x, const float *t,
                  int64_t n);
int vn__k_bce_bwd(vn__stream s, float *dx, const float *dloss, const float *x, const float *t,
                  int64_t n, bool assign);
int vn__k_seed_add(vn__stream s, float *dst, const float *src, int64_t n, bool assign);
/* Patchify for convolutions whose kernel is their stride (no padding, one group): p[n*oh*ow,
 * k*k*c] = the windows of x [n, h, w, c] in OHWI order; scatter: dx (+)= its transpose. */
int vn__k_patch_gather(vn__stream s, float *p, const float *x, int64_t n, int64_t h, int64_t w,
                       int64_t c, int64_t oh, int64_t ow, int64_t k);
int vn__k_patch_scatter(vn__stream s, float *dx, const float *dp, int64_t n, int64_t h,
                        int64_t w, int64_t c, int64_t oh, int64_t ow, int64_t k, bool assign);
/* dst[i] = src[i] rounded to bfloat16 (nearest even), as raw 16-bit patterns. */
int vn__k_to_bf16(vn__stream s, uint16_t *dst, const float *src, int64_t n);

/* dw_kernels.cu: depthwise convolution, NHWC, stride 1, K x K with K in {3, 5, 7, 9}. */
bool vn__k_dw_supported(int k, int stride, int pad, int64_t numel_in, int64_t numel_out);
/* OHWI weights [c, k, k, 1] to [k*k, c] (flip: the kernel turned by 180 degrees). */
int vn__k_dw_weights(vn__stream s, float *wt, const float *w, int c, int k, bool flip);
/* y (+)= conv(x, wt) (+ bias): input [n, h, w, c], output [n, ho, wo, c], padding ph, pw. */
/* relu: the conv of relu(x) (vn_conv2d_relu), the ReLU applied where x is loaded. mask (or
 * NULL): each result r is stored as mask > 0 ? r : r * 0 (the input gradient of a conv of
 * relu(mask), as vn__k_leaky_bwd with slope 0), before the accumulation. */
int vn__k_dw_forward(vn__stream s, float *y, const float *x, const float *wt, const float *bias,
                     const float *mask, int n, int h, int w, int c, int ho, int wo, int k, int ph,
                     int pw, bool accumulate, bool relu);
/* How many partial sums the filter gradient makes (part holds parts * k*k * c floats). */
int vn__k_dw_filter_parts(int n, int ho, int wo, int c, int k);
/* dw += the filter gradient (OHWI), from dy [n, ho, wo, c] and x [n, h, w, c]. */
int vn__k_dw_filter(vn__stream s, float *dw, float *part, const float *dy, const float *x, int n,
                    int h, int w, int c, int ho, int wo, int k, int ph, int pw, int parts,
                    bool relu);

#ifdef __cplusplus
}
#endif
#endif
