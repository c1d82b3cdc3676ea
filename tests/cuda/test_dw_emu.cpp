// The depthwise kernels of autograd/cuda/dw_kernels.cuh (the CUDA backend's own; cuDNN does
// the other convolutions) compiled for the host: a loop over the blocks and threads of each
// launch stands in for the GPU, with the launch shapes of dw_kernels.cu (block size, row
// ranges of dw_parts / dw_filter_parts). Forward, input gradient (the forward of dy with the
// flipped kernel) and filter gradient (partials, then the ordered finish), for both row walks
// (branch-free groups of K, and the first version's branch per output), against a direct
// convolution in double: max|got - want| <= 1e-5 * max|want| (the sums are float). Shapes:
// K = 3, 5, 7, 9, padding below, at and above (K-1)/2, channels below, at and above a block
// of 128, rows shorter than K, multiples of K and not. Runs on every machine, no GPU needed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <vector>

struct emu_dim3 {
    unsigned x, y, z;
};
static emu_dim3 blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __launch_bounds__(...)
#include "autograd/cuda/dw_kernels.cuh"

// Runs body() once per (block y, block x, thread x) of a 2-D grid of 1-D blocks.
template <typename F> static void launch(unsigned gx, unsigned gy, unsigned threads, F body)
{
    blockDim = {threads, 1, 1};
    for (unsigned by = 0; by < gy; by++)
        for (unsigned bx = 0; bx < gx; bx++)
            for (unsigned t = 0; t < threads; t++) {
                blockIdx = {bx, by, 0};
                threadIdx = {t, 0, 0};
                body();
            }
}

static void transpose(std::vector<float> &wt, const std::vector<float> &w, int c, int kk,
                      bool flip)
{
    launch((unsigned)((c * kk + 255) / 256), 1, 256,
           [&] { dw_transpose(wt.data(), w.data(), c, kk, flip); });
}

template <int K, bool Hoist>
static void forward(float *y, const float *x, const float *wt, const float *b, dw_geom g,
                    bool acc)
{
    int parts = dw_parts(g.n * g.ho, g.c, 1 << 30);
    launch((unsigned)((g.c + DW_THREADS - 1) / DW_THREADS), (unsigned)parts, DW_THREADS,
           [&] { dw_forward<K, Hoist>(y, x, wt, b, g, parts, acc); });
}

template <int K, bool Hoist>
static void filter(float *dw, const float *dy, const float *x, dw_geom g)
{
    int parts = dw_filter_parts(g.n, g.ho, g.c, K);
    std::vector<float> part((size_t)parts * K * K * g.c);
    launch((unsigned)((g.c + DW_THREADS - 1) / DW_THREADS), (unsigned)parts, DW_THREADS,
           [&] { dw_filter_partials<K, Hoist>(part.data(), dy, x, g, parts); });
    launch((unsigned)((g.c * K * K + 255) / 256), 1, 256,
           [&] { dw_filter_finish(dw, part.data(), g.c, K * K, parts); });
}

static double rel_err(const std::vector<float> &got, const std::vector<double> &want)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < got.size(); i++) {
        d = std::max(d, std::fabs((double)got[i] - want[i]));
        m = std::max(m, std::fabs(want[i]));
    }
    return m > 0 ? d / m : d;
}

static float rnd(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

template <int K, bool Hoist> static int check(int n, int h, int w, int c, int p)
{
    const int ho = h + 2 * p - K + 1, wo = w + 2 * p - K + 1, kk = K * K;
    unsigned s = (unsigned)(n * 7919 + h * 131 + w * 17 + c * 3 + K + p);
    std::vector<float> x((size_t)n * h * w * c), wgt((size_t)c * kk), b(c),
        dy((size_t)n * ho * wo * c);
    for (float &v : x) v = rnd(&s);
    for (float &v : wgt) v = rnd(&s);
    for (float &v : b) v = rnd(&s);
    for (float &v : dy) v = rnd(&s);
    // The reference: y = conv + b; dx = 0.5 + conv^T dy; dw = 0.25 + sum dy x.
    std::vector<double> yr(dy.size()), dxr(x.size(), 0.5), dwr(wgt.size(), 0.25);
    for (int in = 0; in < n; in++)
        for (int o = 0; o < ho; o++)
            for (int q = 0; q < wo; q++)
                for (int ch = 0; ch < c; ch++) {
                    size_t yi = (((size_t)in * ho + o) * wo + q) * c + ch;
                    double acc = b[ch];
                    for (int i = 0; i < K; i++)
                        for (int j = 0; j < K; j++) {
                            int ih = o + i - p, iw = q + j - p;
                            if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                            size_t xi = (((size_t)in * h + ih) * w + iw) * c + ch;
                            double wv = wgt[(size_t)ch * kk + i * K + j];
                            acc += wv * x[xi];
                            dxr[xi] += wv * dy[yi];
                            dwr[(size_t)ch * kk + i * K + j] += (double)dy[yi] * x[xi];
                        }
                    yr[yi] = acc;
                }
    std::vector<float> wt(wgt.size()), y(dy.size()), dx(x.size(), 0.5f), dw(wgt.size(), 0.25f);
    transpose(wt, wgt, c, kk, false);
    forward<K, Hoist>(y.data(), x.data(), wt.data(), b.data(), {n, h, w, c, ho, wo, p, p, false},
                      false);
    transpose(wt, wgt, c, kk, true);
    forward<K, Hoist>(dx.data(), dy.data(), wt.data(), nullptr,
                      {n, ho, wo, c, h, w, K - 1 - p, K - 1 - p, false}, true);
    filter<K, Hoist>(dw.data(), dy.data(), x.data(), {n, h, w, c, ho, wo, p, p, false});
    double e[3] = {rel_err(y, yr), rel_err(dx, dxr), rel_err(dw, dwr)};
    bool ok = e[0] <= 1e-5 && e[1] <= 1e-5 && e[2] <= 1e-5;
    // With the ReLU where x is loaded (vn_conv2d_relu): the bytes of the kernels on relu(x)
    // made beforehand (x > 0 ? x : x * 0; some exact and negative zeros in x).
    std::vector<float> xz = x;
    for (size_t i = 0; i < xz.size(); i += 5) xz[i] = (i / 5) % 2 ? 0.0f : -0.0f;
    std::vector<float> xr(xz.size());
    for (size_t i = 0; i < xz.size(); i++) xr[i] = xz[i] > 0.0f ? xz[i] : xz[i] * 0.0f;
    std::vector<float> y1(y.size()), y2(y.size()), dw1(dw.size(), 0.25f), dw2(dw.size(), 0.25f);
    transpose(wt, wgt, c, kk, false);
    forward<K, Hoist>(y1.data(), xz.data(), wt.data(), b.data(), {n, h, w, c, ho, wo, p, p, true},
                      false);
    forward<K, Hoist>(y2.data(), xr.data(), wt.data(), b.data(), {n, h, w, c, ho, wo, p, p, false},
                      false);
    filter<K, Hoist>(dw1.data(), dy.data(), xz.data(), {n, h, w, c, ho, wo, p, p, true});
    filter<K, Hoist>(dw2.data(), dy.data(), xr.data(), {n, h, w, c, ho, wo, p, p, false});
    bool relu_ok = std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0 &&
                   std::memcmp(dw1.data(), dw2.data(), dw1.size() * sizeof(float)) == 0 &&
                   y1 != y; // the ReLU changed something
    ok = ok && relu_ok;
    std::printf("%s K %d %s n %d h %d w %d c %3d pad %d: forward %.2g, input grad %.2g, "
                "filter grad %.2g; with the ReLU on load: %s\n",
                ok ? "ok  " : "FAIL", K, Hoist ? "groups " : "branchy", n, h, w, c, p, e[0], e[1],
                e[2], relu_ok ? "the bytes of relu(x) first" : "DIFFERS");
    return ok ? 0 : 1;
}

template <bool Hoist> static int all_shapes()
{
    int bad = 0;
    bad += check<7, Hoist>(2, 9, 11, 16, 3);
    bad += check<7, Hoist>(2, 14, 14, 24, 3); // rows of 14: two full groups of 7
    bad += check<7, Hoist>(1, 7, 7, 33, 3);   // one full group
    bad += check<7, Hoist>(1, 4, 4, 3, 3);    // rows shorter than K
    bad += check<7, Hoist>(1, 2, 2, 130, 3);  // 2x2 maps, channels past one block
    bad += check<3, Hoist>(1, 5, 6, 130, 1);
    bad += check<3, Hoist>(1, 8, 8, 9, 2);    // padding above (K-1)/2
    bad += check<5, Hoist>(3, 7, 7, 5, 2);
    bad += check<5, Hoist>(1, 9, 8, 24, 1);   // padding below (K-1)/2
    bad += check<9, Hoist>(2, 12, 10, 200, 4);
    return bad;
}

int main()
{
    int bad = all_shapes<true>() + all_shapes<false>();
    std::printf("%d of 20 cases failed\n", bad);
    return bad ? 1 : 0;
}
