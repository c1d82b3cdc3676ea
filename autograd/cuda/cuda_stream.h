/* The stream type of the kernel launchers (kernels.cu, optim_kernels.cu), declared without
 * the CUDA headers so that plain C11 code and nvcc read the same launcher prototypes. */
#ifndef VN_CUDA_STREAM_H
#define VN_CUDA_STREAM_H

typedef struct CUstream_st *vn__stream;

#endif
