/* The product of the 1x1 and patchify convolutions on AVX-512: C [m x n] = init + A B.
 *
 * Why our own: the convolutions of VanillaNet's small models have short inner dimensions
 * (16 to 256) and narrow outputs, where OpenBLAS spends much of its time packing A and
 * synchronising threads (stem patches at K = 16: 55 GFLOPS against 139 here; K = 64: 112
 * against 179). Here A is read in place, only B is packed when it is transposed (the
 * weights), and the bias goes into the accumulators' final add instead of a separate pass.
 *
 * Same bytes as OpenBLAS's SkylakeX sgemm (the kernel `vanilla` selects on AVX-512 CPUs) on
 * every product larger than VN__GEMM_MIN_MACS: each element of C is a chain of fused
 * multiply-adds over the inner dimension in order, started from 0, in blocks of that
 * dimension as OpenBLAS's level-3 driver cuts it (448 while at least 896 remain, then the
 * larger half and the rest), each block's sum added to C in turn. Tests
 * `gemm` compares the two with memcmp over many shapes whenever OpenBLAS runs that kernel.
 * Every element is computed by one thread, whole, so the bytes do not depend on the number
 * of threads. */
#ifndef VN_OPS_GEMM_H
#define VN_OPS_GEMM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct vn_ctx vn_ctx;

/* Products of at most this many multiply-adds (m * n * k) always go to OpenBLAS: there its
 * small-matrix kernels take over (up to 100^3), and they sum in other orders. */
#define VN__GEMM_MIN_MACS ((double)(1 << 20))

typedef enum {
    VN__GEMM_ZERO, /* C = 0 + A B (what beta = 0 gives) */
    VN__GEMM_ACC,  /* C = C + A B (beta = 1) */
    VN__GEMM_BIAS, /* C[i][j] = bias[j] + A B (the bias rows, then beta = 1) */
} vn__gemm_init;

typedef struct {
    int64_t m, n, k;
    const float *a;
    int64_t a_row, a_col; /* A(i, l) = a[i * a_row + l * a_col] */
    const float *b;
    int64_t ldb;
    bool b_trans; /* B(l, j) = b[j * ldb + l] when set, else b[l * ldb + j] */
    float *c;
    int64_t ldc;
    vn__gemm_init init;
    const float *bias; /* [n], with VN__GEMM_BIAS */
    bool force; /* take it in the default mode too, where vn__gemm_prefers says OpenBLAS (a
                 * weight gradient that would otherwise be split into chunks: one product
                 * keeps OpenBLAS's SkylakeX bytes) */
} vn__gemm_args;

/* Whether this build has the kernels (AVX-512F at compile time). */
bool vn__gemm_compiled(void);

/* The choice, read once from VN_GEMM at the first product: VN_GEMM=blas sends every product
 * to OpenBLAS (0), VN_GEMM=all every product here (2, for tests), unset each to where it was
 * measured faster (1). Tests and benchmarks set it: 0, 1 or 2 (in a build without the
 * kernels every product goes to OpenBLAS whatever is asked; 0 still unsplits, see below). */
void vn__gemm_set_mode(int mode);

/* Whether VN_GEMM=blas was asked for (or mode 0 set), in any build: every product of the
 * convs is then one OpenBLAS call, the weight gradients over many rows included (no split
 * into row chunks), so the bytes are those of the builds before these kernels and that
 * split, on any machine (and the speed). */
bool vn__gemm_blas_only(void);

/* Whether the default mode sends this product here (measured faster than OpenBLAS). */
bool vn__gemm_prefers(const vn__gemm_args *g);

/* Computes the product when the kernels are available and the shape is one they take; returns
 * false (C untouched) otherwise, and the caller uses cblas_sgemm. ctx (may be NULL) lends the
 * scratch for a transposed B; without it, or when the pool has no room, false. Runs on the
 * threads of vn_par_for (one when called inside a parallel loop or region). */
bool vn__gemm(vn_ctx *ctx, const vn__gemm_args *g);

/* The inner-dimension block OpenBLAS's driver takes when `rem` remain (exposed for the test). */
int64_t vn__gemm_kblock(int64_t rem);

#endif
