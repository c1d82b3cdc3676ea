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
};

/* Number of moment buffers per parameter for this configuration (0, 1 or 2). */
int vn__optim_nbuf(const vn_optim_config *cfg);

#endif
