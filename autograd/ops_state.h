/* Private to autograd/: each op's typed state (node->state), filled by the op's front and
 * read by its kernels on every device (the CPU kernels in ops_*.c, the CUDA kernels in
 * autograd/cuda/). One definition here, so that the backends cannot disagree. */
#ifndef VN_OPS_STATE_H
#define VN_OPS_STATE_H

#include "autograd/vn_tensor.h"

#include <stdbool.h>
#include <stdint.h>

/* Sizes of one conv2d call: input [n, h, w, cin], weight [cout, kh, kw, cin/groups],
 * output [n, ho, wo, cout]. */
typedef struct vn__conv_geom {
    int64_t n, h, w, cin, cout, kh, kw, ho, wo;
    int64_t sh, sw, ph, pw;
    int groups;
} vn__conv_geom;

/* conv2d's path, chosen from the shapes alone (ops_conv.c says which shapes take which). */
typedef enum vn__conv_kind {
    VN__CONV_KIND_1X1,
    VN__CONV_KIND_PATCH,
    VN__CONV_KIND_DEPTHWISE,
    VN__CONV_KIND_GENERAL
} vn__conv_kind;

typedef struct vn__conv_state {
    vn__conv_geom g;
    vn__conv_kind kind;
    bool relu_in; /* vn_conv2d_relu (depthwise only): the conv of relu(x) */
} vn__conv_state;

typedef struct vn__bn_state {
    int64_t rows, channels;
    bool training;
    float momentum, eps;
    vn_tensor *running_mean, *running_var; /* model buffers updated in training, or NULL */
    int64_t *num_batches_tracked;
    int64_t global_rows; /* sync BN: rows over all ranks (the backward sums over them too); 0: local */
    bool act;            /* vn_batch_norm2d_leaky: leaky_relu(act_slope >= 0) applied to the output */
    float act_slope;
} vn__bn_state;

typedef struct vn__leaky_state {
    float slope;
} vn__leaky_state;

typedef struct vn__dropout_state {
    float p, scale;
    uint8_t *keep; /* pool buffer (on the node's device), one byte per element */
} vn__dropout_state;

typedef struct vn__scale_state {
    float s;
} vn__scale_state;

typedef struct vn__pool_state {
    int64_t n, h, w, c;   /* input shape */
    int64_t oh, ow;       /* output spatial size */
    int k;                /* > 0: fixed kernel = stride k; 0: adaptive windows */
    int idx_bytes;        /* max pools: 1 (uint8) or 4 (int32) per saved argmax */
} vn__pool_state;

typedef struct vn__linear_state {
    int64_t rows, in, out;
} vn__linear_state;

typedef struct vn__ce_state {
    int64_t rows, classes;
    float smoothing;
    bool soft;
    const int32_t *labels; /* the caller's (host memory), read in forward only */
    const float *targets;  /* the caller's (host memory), read in forward only */
} vn__ce_state;

typedef struct vn__bce_state {
    const float *targets; /* the caller's (host memory), read in forward only */
} vn__bce_state;

#endif
