// The index-arithmetic kernels of the CUDA backend (autograd/cuda/kernels_index.cuh:
// patchify, BatchNorm apply and input gradient, bias add, max and average pools) compiled
// for the host: loops over the blocks and threads of each launch stand in for the GPU, and
// every result is compared with a direct loop. Grid-stride kernels run on a deliberately small
// grid (3 blocks of 64 threads) so that each thread takes several turns of its loop; the
// per-channel kernels on the grid ch_rows_grid picks, including the row ranges it widens
// past 65535 blocks. Max pools: values and argmax exact, NaN propagation and first-index
// ties; the others within 1e-6 of their largest value (1e-5 for BatchNorm's input gradient,
// whose reference sums in double). Runs on every machine, no GPU needed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <math.h>
#include <vector>

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
static dim3 blockIdx, threadIdx, blockDim, gridDim;
struct float4 {
    float x, y, z, w;
};
#define __global__
#define __device__
#define __host__
using std::min;
#include "autograd/cuda/kernels_index.cuh"

static int failures;

static void expect(bool ok, const char *what, double err)
{
    std::printf("%s %-44s %.3g\n", ok ? "ok  " : "FAIL", what, err);
    if (!ok) failures++;
}

// A grid-stride kernel on 3 blocks of 64 threads.
template <typename F> static void launch_1d(F body)
{
    gridDim = dim3(3);
    blockDim = dim3(64);
    for (unsigned b = 0; b < gridDim.x; b++)
        for (unsigned t = 0; t < blockDim.x; t++) {
            blockIdx = dim3(b, 0);
            threadIdx = dim3(t, 0);
            body();
        }
}

// A per-channel kernel on ch_rows_grid's grid of (32, 8) blocks (four: ch_rows_grid4's, for
// the four-channels-a-thread kernels).
template <typename F> static void launch_ch(int64_t rows, int64_t c, F body, bool four = false)
{
    int64_t per;
    gridDim = four ? ch_rows_grid4(rows, c, &per) : ch_rows_grid(rows, c, &per);
    blockDim = dim3(32, 8);
    for (unsigned by = 0; by < gridDim.y; by++)
        for (unsigned bx = 0; bx < gridDim.x; bx++)
            for (unsigned ty = 0; ty < 8; ty++)
                for (unsigned tx = 0; tx < 32; tx++) {
                    blockIdx = dim3(bx, by);
                    threadIdx = dim3(tx, ty);
                    body(per);
                }
}

static std::vector<float> random_vec(size_t n, unsigned seed)
{
    std::vector<float> v(n);
    for (float &x : v) {
        seed = seed * 1664525u + 1013904223u;
        x = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    return v;
}

template <typename A, typename B> static double rel(const A &got, const B &want)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < got.size(); i++) {
        d = std::max(d, std::fabs((double)got[i] - (double)want[i]));
        m = std::max(m, std::fabs((double)want[i]));
    }
    return m > 0 ? d / m : d;
}

static void patch_case(int64_t n, int64_t h, int64_t w, int64_t c, int64_t k)
{
    int64_t oh = h / k, ow = w / k, kk = k * k * c;
    std::vector<float> x = random_vec((size_t)(n * h * w * c), 1), p((size_t)(n * oh * ow * kk));
    std::vector<float> dp = random_vec(p.size(), 2), dx(x.size(), 9.0f), want_p(p.size());
    std::vector<float> want_dx(x.size(), 0.0f);
    for (int64_t b = 0; b < n; b++)
        for (int64_t o = 0; o < oh; o++)
            for (int64_t q = 0; q < ow; q++)
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++)
                        for (int64_t ci = 0; ci < c; ci++) {
                            size_t pi = (size_t)(((b * oh + o) * ow + q) * kk + (i * k + j) * c + ci);
                            size_t xi = (size_t)(((b * h + o * k + i) * w + q * k + j) * c + ci);
                            want_p[pi] = x[xi];
                            want_dx[xi] = dp[pi];
                        }
    launch_1d([&] { patch_gather(p.data(), x.data(), n, h, w, c, oh, ow, k); });
    expect(p == want_p, "patch_gather (rows past the last patch too)", rel(p, want_p));
    launch_1d([&] { patch_scatter(dx.data(), dp.data(), n, h, w, c, oh, ow, k, true); });
    expect(dx == want_dx, "patch_scatter, assign (0 outside the patches)", rel(dx, want_dx));
    launch_1d([&] { patch_scatter(dx.data(), dp.data(), n, h, w, c, oh, ow, k, false); });
    for (float &v : want_dx) v *= 2.0f;
    expect(rel(dx, want_dx) <= 1e-6, "patch_scatter, accumulate", rel(dx, want_dx));
}

static void channel_case(int64_t rows, int64_t c, const char *label)
{
    std::vector<float> x = random_vec((size_t)(rows * c), 3), dy = random_vec(x.size(), 4);
    std::vector<float> m = random_vec((size_t)c, 5), is = random_vec((size_t)c, 6);
    std::vector<float> w = random_vec((size_t)c, 7), b = random_vec((size_t)c, 8);
    std::vector<float> s0 = random_vec((size_t)c, 9), s1 = random_vec((size_t)c, 10);
    for (float &v : is) v = 0.5f + std::fabs(v);
    std::vector<float> y(x.size()), dx(x.size(), 0.25f), yb(x.size(), 1.0f);
    std::vector<double> want_y(x.size()), want_dx(x.size()), want_yb(x.size());
    for (int64_t r = 0; r < rows; r++)
        for (int64_t ch = 0; ch < c; ch++) {
            size_t i = (size_t)(r * c + ch);
            double xh = ((double)x[i] - m[ch]) * is[ch];
            want_y[i] = xh * w[ch] + b[ch];
            want_dx[i] = 0.25 + (double)w[ch] * is[ch] *
                                    (dy[i] - (double)s0[ch] / rows - xh * s1[ch] / rows);
            want_yb[i] = 1.0 + b[ch];
        }
    launch_ch(rows, c, [&](int64_t per) {
        bn_apply(y.data(), x.data(), m.data(), is.data(), w.data(), b.data(), rows, c, per, false,
                 0.0f);
    });
    char what[96];
    std::snprintf(what, sizeof what, "bn_apply %s", label);
    expect(rel(y, want_y) <= 1e-6, what, rel(y, want_y));
    launch_ch(rows, c, [&](int64_t per) {
        bn_bwd_dx(dx.data(), dy.data(), x.data(), m.data(), is.data(), w.data(), s0.data(),
                  s1.data(), rows, c, true, false, per, nullptr, 0.0f);
    });
    std::snprintf(what, sizeof what, "bn_bwd_dx (training, accumulate) %s", label);
    expect(rel(dx, want_dx) <= 1e-5, what, rel(dx, want_dx));
    // With the activation (vn_batch_norm2d_leaky): leaky_relu(0.3) of the output, and dy taken
    // back through it from the output's sign; slope 0 (ReLU) too.
    for (float slope : {0.3f, 0.0f}) {
        std::vector<float> z(x.size()), dxa(x.size(), 0.25f);
        std::vector<double> want_z(x.size()), want_dxa(x.size());
        int neg = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t ch = 0; ch < c; ch++) {
                size_t i = (size_t)(r * c + ch);
                want_z[i] = want_y[i] > 0.0 ? want_y[i] : want_y[i] * slope;
                neg += want_y[i] <= 0.0;
            }
        launch_ch(rows, c, [&](int64_t per) {
            bn_apply(z.data(), x.data(), m.data(), is.data(), w.data(), b.data(), rows, c, per,
                     true, slope);
        });
        std::snprintf(what, sizeof what, "bn_apply + leaky_relu(%g) %s (%d of %zu negative)",
                      (double)slope, label, neg, x.size());
        expect(neg > 0 && (size_t)neg < x.size() && rel(z, want_z) <= 1e-6, what, rel(z, want_z));
        for (int64_t r = 0; r < rows; r++)
            for (int64_t ch = 0; ch < c; ch++) {
                size_t i = (size_t)(r * c + ch);
                double xh = ((double)x[i] - m[ch]) * is[ch];
                double g = z[i] > 0.0f ? (double)dy[i] : (double)dy[i] * slope;
                want_dxa[i] = 0.25 + (double)w[ch] * is[ch] *
                                         (g - (double)s0[ch] / rows - xh * s1[ch] / rows);
            }
        launch_ch(rows, c, [&](int64_t per) {
            bn_bwd_dx(dxa.data(), dy.data(), x.data(), m.data(), is.data(), w.data(), s0.data(),
                      s1.data(), rows, c, true, false, per, z.data(), slope);
        });
        std::snprintf(what, sizeof what, "bn_bwd_dx through leaky_relu(%g) %s", (double)slope,
                      label);
        expect(rel(dxa, want_dxa) <= 1e-5, what, rel(dxa, want_dxa));
    }
    launch_ch(rows, c, [&](int64_t per) { bias_add(yb.data(), b.data(), rows, c, per); });
    std::snprintf(what, sizeof what, "bias_add %s", label);
    expect(rel(yb, want_yb) <= 1e-6, what, rel(yb, want_yb));
}

// The windows of an output index: fixed (kernel = stride = k) or adaptive (k == 0).
static void win(int64_t i, int64_t in, int64_t out, int k, int64_t *lo, int64_t *hi)
{
    *lo = k > 0 ? i * k : (i * in) / out;
    *hi = k > 0 ? *lo + k : ((i + 1) * in + out - 1) / out;
}

template <typename I>
static void maxpool_case(int64_t n, int64_t h, int64_t w, int64_t c, int k, int64_t oh,
                         int64_t ow, const char *label)
{
    std::vector<float> x = random_vec((size_t)(n * h * w * c), 11);
    x[5 * c + 3] = NAN; // a NaN wins its window
    x[7] = x[7 + c];    // a tie: the first one is the argmax
    size_t no = (size_t)(n * oh * ow * c);
    std::vector<float> y(no), want_y(no), dy = random_vec(no, 12), dx(x.size(), 5.0f);
    std::vector<int32_t> arg(no), want_arg(no);
    std::vector<float> want_dx(x.size(), 0.0f);
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++)
                for (int64_t ch = 0; ch < c; ch++) {
                    int64_t h0, h1, w0, w1;
                    win(i, h, oh, k, &h0, &h1);
                    win(j, w, ow, k, &w0, &w1);
                    float best = -INFINITY;
                    int64_t where = (h0 * w + w0) * c + ch;
                    bool nan = false;
                    for (int64_t u = h0; u < h1 && !nan; u++)
                        for (int64_t v = w0; v < w1; v++) {
                            int64_t idx = (u * w + v) * c + ch;
                            float val = x[(size_t)(b * h * w * c + idx)];
                            if (val > best || std::isnan(val)) {
                                best = val;
                                where = idx;
                                if (std::isnan(val)) {
                                    nan = true;
                                    break;
                                }
                            }
                        }
                    size_t o = (size_t)(((b * oh + i) * ow + j) * c + ch);
                    want_y[o] = best;
                    want_arg[o] = (int32_t)where;
                    want_dx[(size_t)(b * h * w * c + where)] += dy[o];
                }
    if (k > 0)
        launch_1d([&] {
            maxpool_fwd_k<I>(y.data(), arg.data(), x.data(), (I)n, (I)h, (I)w, (I)c, (I)oh,
                             (I)ow, (I)k);
        });
    else
        launch_1d([&] { maxpool_fwd(y.data(), arg.data(), x.data(), n, h, w, c, oh, ow, k); });
    bool same = arg == want_arg;
    for (size_t o = 0; o < no; o++)
        same = same && (y[o] == want_y[o] || (std::isnan(y[o]) && std::isnan(want_y[o])));
    char what[96];
    std::snprintf(what, sizeof what, "max pool forward %s: values, argmax", label);
    expect(same, what, same ? 0.0 : 1.0);
    // Backward, assigning (with the uncovered inputs zeroed first, as the launcher does).
    if (k > 0) {
        if (oh * k != h || ow * k != w)
            launch_1d([&] { maxpool_uncovered(dx.data(), n, h, w, c, oh, ow, k); });
        launch_1d([&] {
            maxpool_bwd_k<I>(dx.data(), dy.data(), arg.data(), (I)n, (I)h, (I)w, (I)c, (I)oh,
                             (I)ow, (I)k, true);
        });
    } else {
        launch_1d([&] {
            maxpool_bwd(dx.data(), dy.data(), arg.data(), n, h, w, c, oh, ow, k, true);
        });
    }
    std::snprintf(what, sizeof what, "max pool backward %s, assign", label);
    expect(rel(dx, want_dx) <= 1e-6, what, rel(dx, want_dx));
}

static void avgpool_case(int64_t n, int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow)
{
    std::vector<float> x = random_vec((size_t)(n * h * w * c), 13);
    size_t no = (size_t)(n * oh * ow * c);
    std::vector<float> y(no), dy = random_vec(no, 14), dx(x.size(), 0.5f);
    std::vector<double> want_y(no), want_dx(x.size(), 0.5);
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++)
                for (int64_t ch = 0; ch < c; ch++) {
                    int64_t h0, h1, w0, w1;
                    win(i, h, oh, 0, &h0, &h1);
                    win(j, w, ow, 0, &w0, &w1);
                    size_t o = (size_t)(((b * oh + i) * ow + j) * c + ch);
                    double s = 0, cnt = (double)((h1 - h0) * (w1 - w0));
                    for (int64_t u = h0; u < h1; u++)
                        for (int64_t v = w0; v < w1; v++) {
                            size_t xi = (size_t)(((b * h + u) * w + v) * c + ch);
                            s += x[xi];
                            want_dx[xi] += dy[o] / cnt;
                        }
                    want_y[o] = s / cnt;
                }
    launch_1d([&] { avgpool_fwd(y.data(), x.data(), n, h, w, c, oh, ow); });
    expect(rel(y, want_y) <= 1e-6, "adaptive avg pool forward (overlapping windows)",
           rel(y, want_y));
    launch_1d([&] { avgpool_bwd(dx.data(), dy.data(), n, h, w, c, oh, ow); });
    expect(rel(dx, want_dx) <= 1e-6, "adaptive avg pool backward, accumulate", rel(dx, want_dx));
}

// The four-channels-a-thread kernels (bn_apply4, bn_bwd_dx4, bias_add4 on ch_rows_grid4) give
// the bytes of the one-channel kernels; the global average pool's backward those of the
// general one. (Built with -ffp-contract=off, as nvcc's --fmad=false.)
static bool same(const std::vector<float> &a, const std::vector<float> &b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

static void vec4_case(int64_t rows, int64_t c)
{
    std::vector<float> x = random_vec((size_t)(rows * c), 21), dy = random_vec(x.size(), 22);
    std::vector<float> m = random_vec((size_t)c, 23), is = random_vec((size_t)c, 24);
    std::vector<float> w = random_vec((size_t)c, 25), b = random_vec((size_t)c, 26);
    std::vector<float> s0 = random_vec((size_t)c, 27), s1 = random_vec((size_t)c, 28);
    for (float &v : is) v = 0.5f + std::fabs(v);
    for (size_t i = 0; i < x.size(); i += 7) x[i] = m[i % c]; // exact zeros after centring
    char what[96];
    for (int act = 0; act < 2; act++) {
        std::vector<float> y1(x.size()), y4(x.size());
        launch_ch(rows, c, [&](int64_t per) {
            bn_apply(y1.data(), x.data(), m.data(), is.data(), w.data(), b.data(), rows, c, per,
                     act, 0.1f);
        });
        launch_ch(rows, c, [&](int64_t per) {
            bn_apply4(y4.data(), x.data(), m.data(), is.data(), w.data(), b.data(), rows, c, per,
                      act, 0.1f);
        }, true);
        std::snprintf(what, sizeof what, "bn_apply4 = bn_apply%s (%lld x %lld)",
                      act ? " + leaky_relu" : "", (long long)rows, (long long)c);
        expect(same(y1, y4), what, 0.0);
        for (int mode = 0; mode < 4; mode++) { // training x assign, z or not
            bool training = mode & 1, assign = mode & 2;
            const float *z = act ? y1.data() : nullptr;
            std::vector<float> d1(x.size(), 0.25f), d4(x.size(), 0.25f);
            launch_ch(rows, c, [&](int64_t per) {
                bn_bwd_dx(d1.data(), dy.data(), x.data(), m.data(), is.data(), w.data(),
                          s0.data(), s1.data(), rows, c, training, assign, per, z, 0.1f);
            });
            launch_ch(rows, c, [&](int64_t per) {
                bn_bwd_dx4(d4.data(), dy.data(), x.data(), m.data(), is.data(), w.data(),
                           s0.data(), s1.data(), rows, c, training, assign, per, z, 0.1f);
            }, true);
            std::snprintf(what, sizeof what, "bn_bwd_dx4 = bn_bwd_dx (%s, %s%s)",
                          training ? "training" : "eval", assign ? "assign" : "accumulate",
                          act ? ", through leaky_relu" : "");
            expect(same(d1, d4), what, 0.0);
        }
    }
    std::vector<float> y1 = x, y4 = x;
    launch_ch(rows, c, [&](int64_t per) { bias_add(y1.data(), b.data(), rows, c, per); });
    launch_ch(rows, c, [&](int64_t per) { bias_add4(y4.data(), b.data(), rows, c, per); }, true);
    expect(same(y1, y4), "bias_add4 = bias_add", 0.0);
}

static void avgpool_global_case(int n, int h, int w, int c)
{
    std::vector<float> dy = random_vec((size_t)(n * c), 31);
    std::vector<float> d1 = random_vec((size_t)(n * h * w * c), 32), d2 = d1;
    launch_1d([&] { avgpool_bwd(d1.data(), dy.data(), n, h, w, c, 1, 1); });
    launch_1d([&] { avgpool_bwd_global<int>(d2.data(), dy.data(), n, h * w, c); });
    expect(same(d1, d2), "global avg pool backward = the general one", 0.0);
}

int main()
{
    patch_case(2, 18, 17, 3, 4);
    patch_case(1, 6, 8, 5, 2);
    channel_case(1000, 70, "(1000 x 70)");
    channel_case(4500000, 1, "(4.5M rows: ranges past 65535 blocks)");
    maxpool_case<int>(2, 8, 7, 19, 2, 4, 3, "k 2, 32-bit");
    maxpool_case<int64_t>(2, 8, 7, 19, 2, 4, 3, "k 2, 64-bit");
    maxpool_case<int>(2, 8, 7, 19, 3, 2, 2, "k 3, 32-bit");
    maxpool_case<int>(2, 8, 7, 19, 0, 3, 2, "adaptive 3x2");
    avgpool_case(2, 8, 7, 19, 3, 5);
    vec4_case(300, 136); // channel blocks of 128 and a partial one
    vec4_case(70, 8);
    avgpool_global_case(3, 7, 5, 12);
    std::printf("%d failed\n", failures);
    return failures ? 1 : 0;
}
