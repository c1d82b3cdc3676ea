/* For tests and benchmarks only: reaching one tape entry without running the whole backward,
 * and the AVX-512 products of the 1x1 convs (ops_gemm.h: test gemm, bench_ops gemm).
 * Programs outside the library use nothing else of autograd's internals. */
#ifndef VN_TESTING_H
#define VN_TESTING_H

#include "autograd/ops_gemm.h"
#include "autograd/vn_ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The gradient buffer of a step tensor, allocated (uninitialised) on first use: the caller
 * fills it before vn_testing_node_backward. NULL with the context error on failure. */
float *vn_testing_grad(vn_ctx *ctx, vn_tensor *t);
/* Runs only the backward kernel of the tape entry that produced out (dispatched on its op
 * and device), reading out's gradient; the entry stays on the tape. */
int vn_testing_node_backward(vn_ctx *ctx, vn_tensor *out);
/* The depthwise conv's 16-float (AVX-512) kernels on or off (the 8-float ones then take every
 * block); a no-op in builds without them. Same bytes either way (test dw-wide). */
void vn_testing_dw_wide(bool on);

#ifdef __cplusplus
}
#endif
#endif
