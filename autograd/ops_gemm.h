/* The product of the 1x1 and patchify convolutions on AVX-512: C [m x n] = init + A B.
 *
 * Why our own: the convolutions of VanillaNet's small models have short inner dimensions
 * (16 to 256) and narrow outputs, where OpenBLAS spends much of its time packing A and
 * synchronising threads (stem patches at K = 16: 55 GFLOPS against 139 here; K = 64: 112
 * against 179). Here A is read in place, only B is packed when it is transposed (the
 * weights), and the bias goes into the accumulators' final add instead of a separate pass.
 *
 * Same bytes as OpenBLAS's sgemm on every product larger than VN__GEMM_MIN_MACS, where it
 * runs its SkylakeX kernel (the kernel `vanilla` selects on AVX-512 CPUs OpenBLAS does not
 * know), its Cooperlake or SapphireRapids kernel (the same sgemm kernel, other blocking), or
 * its Haswell or Zen kernel (AVX2 CPUs, and AVX-512 ones held to those by OPENBLAS_CORETYPE): each
 * element of C is summed as OpenBLAS would sum it in the same call on the same number of
 * threads. The inner dimension is cut into blocks where its level-3 driver cuts it (GEMM_Q
 * 448 or 320 while at least twice that remains, then the larger half on several threads or
 * the half rounded up to the kernel's unroll on one), each block's sum added to C in turn;
 * within a block an element is a chain of fused multiply-adds in order, except those the
 * Haswell kernel sums in two chains (the even and the odd indices of the first multiple of 8,
 * then even + odd): its 8x6 corner tiles and 8x4 tiles, which depend on how the driver cuts
 * the product over its threads (ops_gemm.c plans them per product). Under any other kernel
 * set the SkylakeX order is used. Test `gemm` compares with memcmp against OpenBLAS, and
 * against an emulation of its driver and kernels written from their loops (both orders, on
 * any machine), over many shapes and 1-3 threads. Every element is computed by one of our
 * threads, whole, so the bytes depend on OpenBLAS's thread count (OpenMP's), not on how the
 * library's pool splits the tiles. */
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
 * scratch for a transposed B and for the Haswell order's plan; without it, or when the pool
 * has no room, false (OpenBLAS then gives the same bytes). Runs on the
 * threads of vn_par_for (one when called inside a parallel loop or region). */
bool vn__gemm(vn_ctx *ctx, const vn__gemm_args *g);

/* The summation order the kernels follow: 0 OpenBLAS's SkylakeX kernel's, 1 its Haswell
 * kernel's (also Zen's), 2 its Cooperlake kernel's (also SapphireRapids': SkylakeX's kernel,
 * Haswell's blocking); vn__gemm_order says which applies, from the kernel OpenBLAS runs (any
 * other: 0), or the one vn__gemm_set_order fixed (for tests; -1 follows OpenBLAS again). */
int vn__gemm_order(void);
void vn__gemm_set_order(int family);

/* The inner-dimension block OpenBLAS's driver takes when `rem` remain, for GEMM_Q q, unroll
 * um (the single-thread driver rounds a half block to it) and the threaded driver or not
 * (exposed for the test). */
int64_t vn__gemm_kblock(int64_t q, int64_t um, bool threaded, int64_t rem);

#endif
