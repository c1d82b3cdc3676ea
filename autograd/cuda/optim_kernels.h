/* Launchers of the fused optimizer and EMA kernels (autograd/cuda/optim_kernels.cu), for
 * optim/optim_cuda.c. The argument structs are those of vn_optim_args.h. */
#ifndef VN_OPTIM_KERNELS_H
#define VN_OPTIM_KERNELS_H

#include "autograd/cuda/cuda_stream.h"
#include "autograd/cuda/vn_optim_args.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Blocks of the sums of squares: their partials are summed on the host in this order. */
#define VN__OPT_PARTS 128

int vn__ok_sumsq(vn__stream s, double *part, const float *x, int64_t n);
int vn__ok_sgd(vn__stream s, float *p, const float *g, float *buf, const vn__sgd_args *a,
               int64_t n);
int vn__ok_adamw(vn__stream s, float *p, const float *g, float *m, float *v,
                 const vn__adamw_args *a, int64_t n);
/* With wpart/upart (VN__OPT_PARTS doubles each): also the partial sums of p^2 and update^2. */
int vn__ok_lamb_moments(vn__stream s, const float *p, const float *g, float *m, float *v,
                        const vn__lamb_args *a, int64_t n, double *wpart, double *upart);
int vn__ok_lamb_apply(vn__stream s, float *p, const float *m, const float *v,
                      const vn__lamb_args *a, float trust, bool use_trust, int64_t n);
int vn__ok_ema(vn__stream s, float *e, const float *x, int64_t n, float d, float c);

#ifdef __cplusplus
}
#endif
#endif
