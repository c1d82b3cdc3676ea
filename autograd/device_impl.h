/* Private to autograd/ and its backends: what the core (tensors, context, tape) asks of a
 * device that is not the CPU. autograd/device.c answers for every build, through the table
 * of the device's backend module (backend.h; the CUDA one is autograd/cuda/). */
#ifndef VN_DEVICE_IMPL_H
#define VN_DEVICE_IMPL_H

#include "autograd/vn_ctx.h"

#include <stddef.h>

/* Model-lifetime device memory (cudaMalloc), zero-filled; NULL on failure. */
void *vn__dev_alloc(vn_device d, size_t bytes);
void vn__dev_free(vn_device d, void *p);
/* Fills bytes with zeros / copies bytes between any two devices (host included). */
int vn__dev_zero(vn_device d, void *p, size_t bytes);
int vn__dev_copy(vn_device dst_dev, void *dst, vn_device src_dev, const void *src, size_t bytes);
/* dst[i] (+)= src[i] for a device buffer dst and host values src (the seed of backward). */
int vn__dev_add_from_host(vn_device d, float *dst, const float *src, int64_t n, bool assign);

/* The step pool of a context on a device (stream-ordered allocations, cached by the
 * driver's memory pool: after the first step of a fixed-shape loop nothing reaches
 * cudaMalloc). */
void *vn__dev_pool_alloc(vn_ctx *ctx, size_t bytes);
void vn__dev_pool_free(vn_ctx *ctx, void *p);
void vn__dev_pool_reset(vn_ctx *ctx);
void vn__dev_pool_destroy(vn_ctx *ctx);
void vn__dev_pool_trim(vn_ctx *ctx);
void vn__dev_pool_stats(const vn_ctx *ctx, size_t *in_use, size_t *peak);
void vn__dev_pool_clear_peak(vn_ctx *ctx);

#endif
