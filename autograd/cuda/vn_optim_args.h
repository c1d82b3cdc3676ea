/* The float32 scalars of one optimizer update (SGD, AdamW, LAMB), as optim/optim_step.c
 * computes them (vn__*_args_of) for its CPU kernels and for the fused CUDA kernels of
 * optim_kernels.cu: one definition for both. Plain C, no CUDA headers. */
#ifndef VN_OPTIM_ARGS_H
#define VN_OPTIM_ARGS_H

#include <stdbool.h>

typedef struct vn__sgd_args {
    float wd, momentum, damp1, neg_lr;
    bool has_wd, has_momentum, nesterov, first;
} vn__sgd_args;

typedef struct vn__adamw_args {
    float decay_mul, beta1, c1, beta2, c2, bc2_sqrt, eps, neg_step;
} vn__adamw_args;

typedef struct vn__lamb_args {
    float clip, beta1, beta3, beta2, c2, bc1, bc2_sqrt, eps, wd, neg_lr;
    bool has_wd;
} vn__lamb_args;

#endif
