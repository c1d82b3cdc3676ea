/* The optimizer's private layout, shared by optim.c (setup, groups, state) and
 * optim_step.c (the update kernels). */
#ifndef VN_OPTIM_PRIVATE_H
#define VN_OPTIM_PRIVATE_H

#include "optim/vn_optim.h"

typedef struct vn__optim_param {
    vn_tensor *t;
    char *name;
    bool decay;
    int layer_id;
    double lr_scale;
    float *buf0; /* SGD momentum_buffer, or exp_avg */
    float *buf1; /* exp_avg_sq (AdamW, LAMB) */
} vn__optim_param;

struct vn_optim {
    vn_optim_config cfg;
    int n;
    vn__optim_param *p;
    float *moments; /* one block holding every buf0/buf1, 64-byte aligned per buffer */
    double lr;
    double weight_decay;
    int64_t step;
    double last_grad_norm;
    int n_state;
    char **state_names; /* [n_state]; entry 0 is "optim.step" */
    size_t n_moment_floats; /* floats in `moments` */
    /* Parameters on a device (optim/optim_cuda.c): the moments live there between steps in
     * dev_moments; `moments` is the copy the state functions show. dev_stale: `moments` may
     * have been written through them, so the next device step uploads it first. */
    float *dev_moments;
    bool dev_stale;
};

#ifdef VN_HAVE_CUDA
/* optim/optim_cuda.c: the step of parameters on a CUDA device (same updates as
 * optim_step.c, fused kernels), the download of the moments for the state functions, and
 * the release of the device copy. */
int vn__optim_step_cuda(vn_optim *opt, vn_error *err);
void vn__optim_moments_to_host(vn_optim *opt);
void vn__optim_free_cuda(vn_optim *opt);
/* EMA on a device: e = e * d + c * x. */
int vn__ema_blend_cuda(float *e, const float *x, int64_t n, float d, float c);
#endif

/* Number of moment buffers per parameter for this configuration (0, 1 or 2). */
int vn__optim_nbuf(const vn_optim_config *cfg);

#endif
