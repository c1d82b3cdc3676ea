// The depthwise kernels of autograd/cuda/dw_kernels.cuh (the CUDA backend's own; cuDNN does
// the other convolutions) compiled for the host: one host thread per CUDA thread of a block,
// the blocks in turn, a barrier for __syncthreads and for the end of each block (the blocks
// share one copy of the __shared__ tile), with the launch shapes of dw_kernels.cu. Both
// families: the tiled kernels (the default: the tiles of dwt_tiles, 14 or 7 columns, the parts
// of dwt_filter_parts) and the row walks (VN_CUDA_DW_ROW=1: block size, row ranges of
// dw_parts / dw_filter_parts). Forward, input gradient (the forward of dy with the flipped
// kernel, accumulated, and through a ReLU mask), filter gradient (partials, then the ordered
// finish), against a direct convolution in double: max|got - want| <= 1e-5 * max|want| (the
// sums are float). The two families give the same bytes for the forward and the input
// gradient (the same order of sums). Shapes: K = 3, 5, 7, 9, padding below, at and above
// (K-1)/2, channels below, at and above a block, maps narrower than a tile, multiples of 7 and
// 14 and not. Runs on every machine, no GPU needed.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <thread>
#include <vector>

struct emu_dim3 {
    unsigned x, y, z;
};
static thread_local emu_dim3 blockIdx, threadIdx;
static emu_dim3 blockDim;

// A reusable barrier for the threads of one block (waiting threads yield the core: there are
// far more of them than cores).
static struct {
    std::atomic<unsigned> waiting{0}, gen{0};
    unsigned count = 0;
} bar;
static void emu_sync()
{
    unsigned g = bar.gen.load();
    if (bar.waiting.fetch_add(1) + 1 == bar.count) {
        bar.waiting.store(0);
        bar.gen.fetch_add(1);
    } else {
        while (bar.gen.load() == g) std::this_thread::yield();
    }
}

#define __global__
#define __device__
#define __launch_bounds__(...)
#define __shared__ static
#define __syncthreads() emu_sync()
#include "autograd/cuda/dw_kernels.cuh"

// Runs body() once per (block y, block x, thread x) of a 2-D grid of 1-D blocks. Kernels that
// meet at __syncthreads (sync) get `threads` host threads that walk the blocks together,
// meeting at a barrier after each; the others run in turn on this thread.
template <typename F>
static void launch(unsigned gx, unsigned gy, unsigned threads, F body, bool sync = false)
{
    blockDim = {threads, 1, 1};
    if (!sync) {
        for (unsigned by = 0; by < gy; by++)
            for (unsigned bx = 0; bx < gx; bx++)
                for (unsigned t = 0; t < threads; t++) {
                    blockIdx = {bx, by, 0};
                    threadIdx = {t, 0, 0};
                    body();
                }
        return;
    }
    bar.count = threads;
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; t++)
        ts.emplace_back([&, t] {
            threadIdx = {t, 0, 0};
            for (unsigned by = 0; by < gy; by++)
                for (unsigned bx = 0; bx < gx; bx++) {
                    blockIdx = {bx, by, 0};
                    body();
                    emu_sync();
                }
        });
    for (std::thread &t : ts) t.join();
}

static void transpose(std::vector<float> &wt, const std::vector<float> &w, int c, int kk,
                      bool flip)
{
    launch((unsigned)((c * kk + 255) / 256), 1, 256,
           [&] { dw_transpose(wt.data(), w.data(), c, kk, flip); });
}

// The launches of dw_kernels.cu; tiled: the default kernels, else the row walks.
template <int K>
static void forward(bool tiled, float *y, const float *x, const float *wt, const float *b,
                    const float *mask, dw_geom g, bool acc)
{
    if (!tiled) {
        int parts = dw_parts(g.n * g.ho, g.c, 1 << 30);
        launch((unsigned)((g.c + DW_THREADS - 1) / DW_THREADS), (unsigned)parts, DW_THREADS,
               [&] { dw_forward<K>(y, x, wt, b, mask, g, parts, acc); });
        return;
    }
    int tw = dwt_width(g.wo);
    unsigned tiles = (unsigned)dwt_tiles(g.n, g.ho, g.wo, tw), cb = (g.c + DWT_CH - 1) / DWT_CH;
    if (tw == 14)
        launch(tiles, cb, DWT_CH * DWT_TH, [&] { dwt_forward<K, 14>(y, x, wt, b, mask, g, acc); }, true);
    else
        launch(tiles, cb, DWT_CH * DWT_TH, [&] { dwt_forward<K, 7>(y, x, wt, b, mask, g, acc); }, true);
}

template <int K>
static void filter(bool tiled, float *dw, const float *dy, const float *x, dw_geom g, int want)
{
    int parts;
    std::vector<float> part;
    if (!tiled) {
        parts = dw_filter_parts(g.n, g.ho, g.c, K);
        part.resize((size_t)parts * K * K * g.c);
        launch((unsigned)((g.c + DW_THREADS - 1) / DW_THREADS), (unsigned)parts, DW_THREADS,
               [&] { dw_filter_partials<K>(part.data(), dy, x, g, parts); });
    } else {
        parts = want ? want : dwt_filter_parts(g.n, g.ho, g.wo, g.c, K);
        part.resize((size_t)parts * K * K * g.c);
        int tw = dwt_width(g.wo);
        long long tiles = dwt_tiles(g.n, g.ho, g.wo, tw);
        unsigned cb = (g.c + DWT_CH - 1) / DWT_CH;
        if (tw == 14)
            launch((unsigned)parts, cb, DWT_CH * DWT_TH,
                   [&] { dwt_filter_partials<K, 14>(part.data(), dy, x, g, parts, tiles); }, true);
        else
            launch((unsigned)parts, cb, DWT_CH * DWT_TH,
                   [&] { dwt_filter_partials<K, 7>(part.data(), dy, x, g, parts, tiles); }, true);
    }
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

// The results of one family of kernels on one case.
struct results {
    std::vector<float> y, dx, dxm, dw, y_relu, dw_relu;
};

template <int K>
static results run(bool tiled, int n, int h, int w, int c, int p, int parts,
                   const std::vector<float> &x, const std::vector<float> &xz,
                   const std::vector<float> &wgt, const std::vector<float> &b,
                   const std::vector<float> &dy)
{
    const int ho = h + 2 * p - K + 1, wo = w + 2 * p - K + 1, kk = K * K;
    results r;
    r.y.resize(dy.size());
    r.dx.assign(x.size(), 0.5f);
    r.dxm.assign(x.size(), 0.5f);
    r.dw.assign(wgt.size(), 0.25f);
    r.y_relu.resize(dy.size());
    r.dw_relu.assign(wgt.size(), 0.25f);
    std::vector<float> wt(wgt.size());
    const dw_geom g = {n, h, w, c, ho, wo, p, p, false}, gr = {n, h, w, c, ho, wo, p, p, true},
                  gt = {n, ho, wo, c, h, w, K - 1 - p, K - 1 - p, false};
    transpose(wt, wgt, c, kk, false);
    forward<K>(tiled, r.y.data(), x.data(), wt.data(), b.data(), nullptr, g, false);
    forward<K>(tiled, r.y_relu.data(), xz.data(), wt.data(), b.data(), nullptr, gr, false);
    transpose(wt, wgt, c, kk, true);
    forward<K>(tiled, r.dx.data(), dy.data(), wt.data(), nullptr, nullptr, gt, true);
    forward<K>(tiled, r.dxm.data(), dy.data(), wt.data(), nullptr, xz.data(), gt, true);
    filter<K>(tiled, r.dw.data(), dy.data(), x.data(), g, parts);
    filter<K>(tiled, r.dw_relu.data(), dy.data(), xz.data(), gr, parts);
    return r;
}

static bool same(const std::vector<float> &a, const std::vector<float> &b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// parts: the filter gradient's partial sums of the tiled kernels (0: dwt_filter_parts's
// choice; fewer makes each block walk several tiles).
template <int K> static int check(int n, int h, int w, int c, int p, int parts = 0)
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
    // x with some exact and negative zeros, and relu(x) of it made beforehand (x > 0 ? x : x * 0).
    std::vector<float> xz = x;
    for (size_t i = 0; i < xz.size(); i += 5) xz[i] = (i / 5) % 2 ? 0.0f : -0.0f;
    std::vector<float> xr(xz.size());
    for (size_t i = 0; i < xz.size(); i++) xr[i] = xz[i] > 0.0f ? xz[i] : xz[i] * 0.0f;
    int bad = 0;
    results fam[2];
    for (int tiled = 1; tiled >= 0; tiled--) {
        results &r = fam[tiled];
        r = run<K>(tiled, n, h, w, c, p, parts, x, xz, wgt, b, dy);
        double e[3] = {rel_err(r.y, yr), rel_err(r.dx, dxr), rel_err(r.dw, dwr)};
        bool ok = e[0] <= 1e-5 && e[1] <= 1e-5 && e[2] <= 1e-5;
        // The ReLU where x is loaded (vn_conv2d_relu): the bytes of the kernels on relu(x).
        results q = run<K>(tiled, n, h, w, c, p, parts, xr, xr, wgt, b, dy);
        bool relu_ok = same(r.y_relu, q.y) && same(r.dw_relu, q.dw) && !same(r.y_relu, r.y);
        // The input gradient through the ReLU's mask: the bytes of 0.5 + (x > 0 ? t : t * 0)
        // with t the unmasked gradient (r.dx - 0.5 would round: computed afresh).
        std::vector<float> t(x.size(), 0.0f), wt(wgt.size()), want(x.size());
        transpose(wt, wgt, c, kk, true);
        forward<K>(tiled, t.data(), dy.data(), wt.data(), nullptr, nullptr,
                   {n, ho, wo, c, h, w, K - 1 - p, K - 1 - p, false}, false);
        for (size_t i = 0; i < t.size(); i++) want[i] = 0.5f + (xz[i] > 0.0f ? t[i] : t[i] * 0.0f);
        bool mask_ok = same(r.dxm, want);
        ok = ok && relu_ok && mask_ok;
        std::printf("%s K %d %s n %d h %2d w %2d c %3d pad %d: forward %.2g, input grad %.2g, "
                    "filter grad %.2g; ReLU on load: %s; input grad through the mask: %s\n",
                    ok ? "ok  " : "FAIL", K, tiled ? "tiles" : "rows ", n, h, w, c, p, e[0],
                    e[1], e[2], relu_ok ? "same bytes" : "DIFFERS",
                    mask_ok ? "same bytes" : "DIFFERS");
        bad += !ok;
    }
    // The same order of sums in both families: the same forward and input gradient bytes.
    bool cross = same(fam[0].y, fam[1].y) && same(fam[0].dx, fam[1].dx) &&
                 same(fam[0].dxm, fam[1].dxm) && same(fam[0].y_relu, fam[1].y_relu);
    if (!cross) std::printf("FAIL the tiles' forward or input gradient bytes differ from the rows'\n");
    return bad + !cross;
}

int main()
{
    int bad = 0, cases = 0;
    auto add = [&](int r) { bad += r; cases++; };
    add(check<7>(2, 9, 11, 16, 3));
    add(check<7>(2, 14, 14, 24, 3)); // one tile of 7 x 14, two row tiles
    add(check<7>(1, 7, 7, 33, 3));   // one tile of 7 x 7, a second block of channels
    add(check<7>(1, 4, 4, 3, 3));    // maps narrower than K
    add(check<7>(1, 2, 2, 130, 3));  // 2x2 maps, channels past one block of each family
    add(check<7>(2, 16, 30, 8, 3));  // rows of 30: tiles of 14, the last one partial
    add(check<7>(3, 10, 15, 40, 3, 2)); // 2 parts: each block walks several tiles
    add(check<3>(1, 5, 6, 130, 1));
    add(check<3>(1, 8, 8, 9, 2));    // padding above (K-1)/2
    add(check<5>(3, 7, 7, 5, 2));
    add(check<5>(1, 9, 8, 24, 1));   // padding below (K-1)/2
    add(check<5>(2, 15, 16, 33, 2, 3));
    add(check<9>(2, 12, 10, 200, 4));
    add(check<9>(1, 16, 18, 12, 4, 1)); // tiles of 14 with K = 9, one part for everything
    std::printf("%d failures in %d cases (each: both families)\n", bad, cases);
    return bad ? 1 : 0;
}
