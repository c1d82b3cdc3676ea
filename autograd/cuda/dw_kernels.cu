// Depthwise convolution on NHWC float32 (groups == channels), stride 1, square kernels of
// 3, 5, 7 or 9 taps a side: VanillaNet's activation (7x7 by default, 2 * act_num + 1). cuDNN's
// grouped NHWC FP32 path took 73% of a vanillanet_5 training step on an H200; these kernels
// do the same work in a small fraction of that.
//
// The default kernels tile (dwt_* in dw_kernels.cuh): a block stages an input tile of 32
// channels with its halo in shared memory and each thread computes a row of outputs from it.
// The row walks before them (dw_*: one thread per channel walking output rows with a K x K
// window in registers) stay behind VN_CUDA_DW_ROW=1 for comparison: they need about 180
// registers a thread, which left few warps to hide the loads' latency.
//
//   forward          y[n,o,p,c]  = b[c] + sum_ij w[c,i,j] x[n, o+i-ph, p+j-pw, c]
//   backward data    dx = the forward of dy with the kernel flipped and padding K-1-p
//                    (vn_conv2d_relu: through the ReLU's mask in the same pass)
//   backward filter  dw[c,i,j] += sum_nop dy[n,o,p,c] x[n, o+i-ph, p+j-pw, c]: per-block
//                    partial sums (float), then one pass adding the blocks in order in double
//
// Every sum runs in an order fixed by the shapes: the results are deterministic.
#include "autograd/cuda/cuda_impl.h"

#include <cuda_runtime.h>

#include "autograd/cuda/dw_kernels.cuh"

// VN_CUDA_DW_ROW=1: the row walks (the kernels before the tiled ones), for comparison.
static bool dw_row_walk(void)
{
    static int v = -1;
    return vn__cuda_env_on("VN_CUDA_DW_ROW", &v);
}

template <int K>
static void launch_forward(vn__stream s, float *y, const float *x, const float *wt,
                           const float *bias, const float *mask, dw_geom g, bool accumulate)
{
    if (dw_row_walk()) {
        int rows = g.n * g.ho, parts = dw_parts(rows, g.c, 1 << 30);
        dim3 grid((unsigned)((g.c + DW_THREADS - 1) / DW_THREADS), (unsigned)parts);
        dw_forward<K><<<grid, DW_THREADS, 0, s>>>(y, x, wt, bias, mask, g, parts, accumulate);
        return;
    }
    int tw = dwt_width(g.wo);
    dim3 grid((unsigned)dwt_tiles(g.n, g.ho, g.wo, tw), (unsigned)((g.c + DWT_CH - 1) / DWT_CH));
    if (tw == 14)
        dwt_forward<K, 14><<<grid, DWT_CH * DWT_TH, 0, s>>>(y, x, wt, bias, mask, g, accumulate);
    else
        dwt_forward<K, 7><<<grid, DWT_CH * DWT_TH, 0, s>>>(y, x, wt, bias, mask, g, accumulate);
}

template <int K>
static void launch_partials(vn__stream s, float *part, const float *dy, const float *x,
                            dw_geom g, int parts)
{
    if (dw_row_walk()) {
        dim3 grid((unsigned)((g.c + DW_THREADS - 1) / DW_THREADS), (unsigned)parts);
        dw_filter_partials<K><<<grid, DW_THREADS, 0, s>>>(part, dy, x, g, parts);
        return;
    }
    dim3 grid((unsigned)parts, (unsigned)((g.c + DWT_CH - 1) / DWT_CH));
    int tw = dwt_width(g.wo);
    long long tiles = dwt_tiles(g.n, g.ho, g.wo, tw);
    if (tw == 14)
        dwt_filter_partials<K, 14><<<grid, DWT_CH * DWT_TH, 0, s>>>(part, dy, x, g, parts, tiles);
    else
        dwt_filter_partials<K, 7><<<grid, DWT_CH * DWT_TH, 0, s>>>(part, dy, x, g, parts, tiles);
}

static bool dw_k_ok(int k) { return k == 3 || k == 5 || k == 7 || k == 9; }

extern "C" {

bool vn__k_dw_supported(int k, int stride, int pad, int64_t numel_in, int64_t numel_out)
{
    const int64_t lim = (int64_t)1 << 31;
    return dw_k_ok(k) && stride == 1 && pad >= 0 && pad <= k - 1 && numel_in < lim &&
           numel_out < lim;
}

int vn__k_dw_weights(vn__stream s, float *wt, const float *w, int c, int k, bool flip)
{
    int n = c * k * k;
    dw_transpose<<<(n + 255) / 256, 256, 0, s>>>(wt, w, c, k * k, flip);
    return (int)cudaGetLastError();
}

int vn__k_dw_forward(vn__stream s, float *y, const float *x, const float *wt, const float *bias,
                     const float *mask, int n, int h, int w, int c, int ho, int wo, int k, int ph,
                     int pw, bool accumulate, bool relu)
{
    dw_geom g = {n, h, w, c, ho, wo, ph, pw, relu};
    switch (k) {
    case 3: launch_forward<3>(s, y, x, wt, bias, mask, g, accumulate); break;
    case 5: launch_forward<5>(s, y, x, wt, bias, mask, g, accumulate); break;
    case 7: launch_forward<7>(s, y, x, wt, bias, mask, g, accumulate); break;
    case 9: launch_forward<9>(s, y, x, wt, bias, mask, g, accumulate); break;
    default: return (int)cudaErrorInvalidValue;
    }
    return (int)cudaGetLastError();
}

int vn__k_dw_filter_parts(int n, int ho, int wo, int c, int k)
{
    return dw_row_walk() ? dw_filter_parts(n, ho, c, k) : dwt_filter_parts(n, ho, wo, c, k);
}

int vn__k_dw_filter(vn__stream s, float *dw, float *part, const float *dy, const float *x, int n,
                    int h, int w, int c, int ho, int wo, int k, int ph, int pw, int parts,
                    bool relu)
{
    dw_geom g = {n, h, w, c, ho, wo, ph, pw, relu};
    switch (k) {
    case 3: launch_partials<3>(s, part, dy, x, g, parts); break;
    case 5: launch_partials<5>(s, part, dy, x, g, parts); break;
    case 7: launch_partials<7>(s, part, dy, x, g, parts); break;
    case 9: launch_partials<9>(s, part, dy, x, g, parts); break;
    default: return (int)cudaErrorInvalidValue;
    }
    int e = (int)cudaGetLastError();
    if (e) return e;
    int cnt = c * k * k;
    dw_filter_finish<<<(cnt + 255) / 256, 256, 0, s>>>(dw, part, c, k * k, parts);
    return (int)cudaGetLastError();
}

} // extern "C"
