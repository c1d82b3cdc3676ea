// CUDA kernels of the autograd ops (NHWC, float32). Reductions are deterministic: every sum
// runs in a fixed order that depends only on the shapes (per-block partials in double, then
// one ordered pass), never on atomics or scheduling. Launchers return cudaGetLastError().
#include "autograd/cuda/cuda_impl.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#define VN_THREADS 256

static inline unsigned grid_for(int64_t n)
{
    int64_t b = (n + VN_THREADS - 1) / VN_THREADS;
    if (b > 65535LL * 32) b = 65535LL * 32;
    return (unsigned)(b > 0 ? b : 1);
}

static int done(void) { return (int)cudaGetLastError(); }

// The four-channels-a-thread kernels (bn_apply4 and the like) serve rows of a multiple of 4
// floats at 16-byte aligned addresses; VN_CUDA_SCALAR=1 keeps the one-channel kernels (the same
// bytes; for comparison).
static bool scalar_kernels(void)
{
    static int scalar = -1;
    return vn__cuda_env_on("VN_CUDA_SCALAR", &scalar);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; } // NULL: yes

// Rows of c floats at a, b, d, e (NULL where unused) for the four-channel kernels.
static bool vec4_ok(int64_t c, const void *a, const void *b, const void *d, const void *e)
{
    return !scalar_kernels() && c % 4 == 0 && aligned16(a) && aligned16(b) && aligned16(d) &&
           aligned16(e);
}

#include "autograd/cuda/kernels_index.cuh"

// ---- element-wise ----------------------------------------------------------------------

__global__ void leaky_fwd(float *y, const float *x, int64_t n, float slope)
{
    GRID_LOOP(i, n) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

__global__ void leaky_bwd(float *dx, const float *dy, const float *sign, int64_t n, float slope,
                          bool assign)
{
    GRID_LOOP(i, n)
    {
        float g = sign[i] > 0.0f ? dy[i] : dy[i] * slope;
        dx[i] = assign ? g : dx[i] + g;
    }
}

__global__ void axpby(float *y, const float *x, int64_t n, float a, bool assign)
{
    GRID_LOOP(i, n) y[i] = assign ? a * x[i] : y[i] + a * x[i];
}

__global__ void add2(float *y, const float *a, const float *b, int64_t n)
{
    GRID_LOOP(i, n) y[i] = a[i] + b[i];
}

// Counter-based generator (a 64-bit mix of seed and index, splitmix64's finaliser): the mask
// depends only on the seed drawn from the context's RNG and the element index.
__device__ static inline float uniform_at(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

__global__ void dropout_fwd(float *y, uint8_t *keep, const float *x, int64_t n, float p,
                            float scale, uint64_t seed)
{
    GRID_LOOP(i, n)
    {
        uint8_t k = uniform_at(seed, (uint64_t)i) >= p;
        keep[i] = k;
        y[i] = k ? x[i] * scale : 0.0f;
    }
}

__global__ void dropout_apply(float *y, const uint8_t *keep, const float *x, int64_t n,
                              float scale, bool accumulate)
{
    GRID_LOOP(i, n)
    {
        float v = keep[i] ? x[i] * scale : 0.0f;
        y[i] = accumulate ? y[i] + v : v;
    }
}

__global__ void seed_add(float *dst, const float *src, int64_t n, bool assign)
{
    GRID_LOOP(i, n) dst[i] = assign ? src[i] : dst[i] + src[i];
}

extern "C" {

int vn__k_leaky_fwd(vn__stream s, float *y, const float *x, int64_t n, float slope)
{
    leaky_fwd<<<grid_for(n), VN_THREADS, 0, s>>>(y, x, n, slope);
    return done();
}

int vn__k_leaky_bwd(vn__stream s, float *dx, const float *dy, const float *sign, int64_t n,
                    float slope, bool assign)
{
    leaky_bwd<<<grid_for(n), VN_THREADS, 0, s>>>(dx, dy, sign, n, slope, assign);
    return done();
}

int vn__k_axpby(vn__stream s, float *y, const float *x, int64_t n, float a, bool assign)
{
    axpby<<<grid_for(n), VN_THREADS, 0, s>>>(y, x, n, a, assign);
    return done();
}

int vn__k_accumulate(vn__stream s, float *dst, const float *src, int64_t n)
{
    return vn__k_axpby(s, dst, src, n, 1.0f, false);
}

int vn__k_add2(vn__stream s, float *y, const float *a, const float *b, int64_t n)
{
    add2<<<grid_for(n), VN_THREADS, 0, s>>>(y, a, b, n);
    return done();
}

int vn__k_dropout_fwd(vn__stream s, float *y, uint8_t *keep, const float *x, int64_t n, float p,
                      float scale, uint64_t seed)
{
    dropout_fwd<<<grid_for(n), VN_THREADS, 0, s>>>(y, keep, x, n, p, scale, seed);
    return done();
}

int vn__k_dropout_apply(vn__stream s, float *y, const uint8_t *keep, const float *x, int64_t n,
                        float scale, bool accumulate)
{
    dropout_apply<<<grid_for(n), VN_THREADS, 0, s>>>(y, keep, x, n, scale, accumulate);
    return done();
}

int vn__k_patch_gather(vn__stream s, float *p, const float *x, int64_t n, int64_t h, int64_t w,
                       int64_t c, int64_t oh, int64_t ow, int64_t k)
{
    patch_gather<<<grid_for(n * oh * ow * k * k * c), VN_THREADS, 0, s>>>(p, x, n, h, w, c, oh,
                                                                          ow, k);
    return done();
}

int vn__k_patch_scatter(vn__stream s, float *dx, const float *dp, int64_t n, int64_t h,
                        int64_t w, int64_t c, int64_t oh, int64_t ow, int64_t k, bool assign)
{
    patch_scatter<<<grid_for(n * h * w * c), VN_THREADS, 0, s>>>(dx, dp, n, h, w, c, oh, ow, k,
                                                                 assign);
    return done();
}

__global__ void to_bf16(__nv_bfloat16 *dst, const float *src, int64_t n)
{
    GRID_LOOP(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

struct __align__(8) bf16x4 {
    __nv_bfloat16 v[4];
};

// Four at a time (src 16-byte, dst 8-byte aligned); n4 groups of four.
__global__ void to_bf16_4(bf16x4 *dst, const float4 *src, int64_t n4)
{
    GRID_LOOP(i, n4)
    {
        float4 v = src[i];
        bf16x4 o;
        o.v[0] = __float2bfloat16_rn(v.x);
        o.v[1] = __float2bfloat16_rn(v.y);
        o.v[2] = __float2bfloat16_rn(v.z);
        o.v[3] = __float2bfloat16_rn(v.w);
        dst[i] = o;
    }
}

int vn__k_to_bf16(vn__stream s, uint16_t *dst, const float *src, int64_t n)
{
    int64_t n4 = !scalar_kernels() && aligned16(src) && ((uintptr_t)dst & 7) == 0 ? n / 4 : 0;
    if (n4)
        to_bf16_4<<<grid_for(n4), VN_THREADS, 0, s>>>((bf16x4 *)dst, (const float4 *)src, n4);
    if (n > 4 * n4)
        to_bf16<<<grid_for(n - 4 * n4), VN_THREADS, 0, s>>>((__nv_bfloat16 *)dst + 4 * n4,
                                                            src + 4 * n4, n - 4 * n4);
    return done();
}

int vn__k_seed_add(vn__stream s, float *dst, const float *src, int64_t n, bool assign)
{
    seed_add<<<grid_for(n), VN_THREADS, 0, s>>>(dst, src, n, assign);
    return done();
}

} // extern "C"

// ---- per-channel reductions over rows of [rows, c] (BatchNorm, bias gradients) --------
//
// Block (32, 8) covers 32 channels; gridDim.y splits the rows into `parts` contiguous
// ranges. Each block writes its partial sums (double) to part[(p * k + j) * c + ch] for k
// quantities; a second kernel sums the parts in order. The order is fixed by the shapes.

#define RED_X 32
#define RED_Y 8

template <int K, typename F>
__device__ void channel_partials(double *part, int64_t rows, int64_t c, int parts, F value)
{
    __shared__ double sh[K][RED_Y][RED_X];
    int64_t ch = (int64_t)blockIdx.x * RED_X + threadIdx.x;
    int64_t per = (rows + parts - 1) / parts;
    int64_t r0 = (int64_t)blockIdx.y * per, r1 = min(rows, r0 + per);
    double acc[K];
    for (int j = 0; j < K; j++) acc[j] = 0.0;
    if (ch < c)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += RED_Y) value(r, ch, acc);
    for (int j = 0; j < K; j++) sh[j][threadIdx.y][threadIdx.x] = acc[j];
    __syncthreads();
    if (threadIdx.y == 0 && ch < c)
        for (int j = 0; j < K; j++) {
            double t = 0.0;
            for (int yy = 0; yy < RED_Y; yy++) t += sh[j][yy][threadIdx.x];
            part[((int64_t)blockIdx.y * K + j) * c + ch] = t;
        }
}

// channel_partials four channels a thread (c % 4 == 0, aligned rows): the rows of each channel
// in the same order, so the same partial sums. value4(r, ch, acc) adds row r of channels ch ..
// ch + 3 to acc[j][q].
template <int K, typename F>
__device__ void channel_partials4(double *part, int64_t rows, int64_t c, int parts, F value4)
{
    __shared__ double sh[K][RED_Y][RED_X * 4];
    int64_t ch = ((int64_t)blockIdx.x * RED_X + threadIdx.x) * 4;
    int64_t per = (rows + parts - 1) / parts;
    int64_t r0 = (int64_t)blockIdx.y * per, r1 = min(rows, r0 + per);
    double acc[K][4];
    for (int j = 0; j < K; j++)
        for (int q = 0; q < 4; q++) acc[j][q] = 0.0;
    if (ch < c)
#pragma unroll 4
        for (int64_t r = r0 + threadIdx.y; r < r1; r += RED_Y) value4(r, ch, acc);
    for (int j = 0; j < K; j++)
        for (int q = 0; q < 4; q++) sh[j][threadIdx.y][threadIdx.x * 4 + q] = acc[j][q];
    __syncthreads();
    if (threadIdx.y == 0 && ch < c)
        for (int j = 0; j < K; j++)
            for (int q = 0; q < 4; q++) {
                double t = 0.0;
                for (int yy = 0; yy < RED_Y; yy++) t += sh[j][yy][threadIdx.x * 4 + q];
                part[((int64_t)blockIdx.y * K + j) * c + ch + q] = t;
            }
}

struct bn_sum_val4 {
    const float *x;
    int64_t c;
    __device__ void operator()(int64_t r, int64_t ch, double (*acc)[4]) const
    {
        float4 v4 = *(const float4 *)(x + r * c + ch);
        const float e[4] = {v4.x, v4.y, v4.z, v4.w};
#pragma unroll
        for (int q = 0; q < 4; q++) {
            double v = e[q];
            acc[0][q] += v;
            acc[1][q] += v * v;
        }
    }
};

__global__ void bn_partials4(double *part, const float *x, int64_t rows, int64_t c, int parts)
{
    channel_partials4<2>(part, rows, c, parts, bn_sum_val4{x, c});
}

struct bn_sum_val {
    const float *x;
    int64_t c;
    __device__ void operator()(int64_t r, int64_t ch, double *acc) const
    {
        double v = x[r * c + ch];
        acc[0] += v;
        acc[1] += v * v;
    }
};

__global__ void bn_partials(double *part, const float *x, int64_t rows, int64_t c, int parts)
{
    channel_partials<2>(part, rows, c, parts, bn_sum_val{x, c});
}

__global__ void bn_finish_stats(float *mean, float *invstd, double *rec, const double *part,
                                int64_t rows, int64_t c, float eps, int parts)
{
    int64_t ch = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double s = 0.0, ss = 0.0;
    for (int p = 0; p < parts; p++) {
        s += part[((int64_t)p * 2 + 0) * c + ch];
        ss += part[((int64_t)p * 2 + 1) * c + ch];
    }
    double m = s / (double)rows;
    double var = ss / (double)rows - m * m;
    if (var < 0.0) var = 0.0;
    mean[ch] = (float)m;
    invstd[ch] = (float)(1.0 / sqrt(var + (double)eps));
    if (rec) {
        rec[ch] = m;
        rec[c + ch] = var;
    }
}

// The running statistics from the batch's mean and biased variance in double (rec), as the
// CPU does: not from the float invstd, whose rounding 1 / invstd^2 - eps magnifies when the
// variance is far below eps.
__global__ void bn_running(float *rmean, float *rvar, const double *rec, int64_t rows, int64_t c,
                           float momentum)
{
    int64_t ch = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double unbiased = rec[c + ch] * (double)rows / (double)(rows - 1);
    rmean[ch] = (float)((1.0 - momentum) * rmean[ch] + (double)momentum * rec[ch]);
    rvar[ch] = (float)((1.0 - momentum) * rvar[ch] + (double)momentum * unbiased);
}

__global__ void bn_eval_stats(float *mean, float *invstd, const float *rmean, const float *rvar,
                              int64_t c, float eps)
{
    int64_t ch = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    mean[ch] = rmean[ch];
    invstd[ch] = (float)(1.0 / sqrt((double)rvar[ch] + (double)eps));
}

struct bn_grad_val {
    const float *dy, *x, *mean, *invstd;
    int64_t c;
    const float *z; // the output of an op with the activation, or NULL
    float slope;
    __device__ void operator()(int64_t r, int64_t ch, double *acc) const
    {
        int64_t i = r * c + ch;
        double g = z ? bn_act_grad(dy[i], z[i], slope) : dy[i];
        acc[0] += g;
        acc[1] += g * ((double)x[r * c + ch] - mean[ch]) * invstd[ch];
    }
};

__global__ void bn_grad_partials(double *part, const float *dy, const float *x,
                                 const float *mean, const float *invstd, int64_t rows, int64_t c,
                                 int parts, const float *z, float slope)
{
    channel_partials<2>(part, rows, c, parts, bn_grad_val{dy, x, mean, invstd, c, z, slope});
}

struct bn_grad_val4 {
    const float *dy, *x, *mean, *invstd;
    int64_t c;
    const float *z;
    float slope;
    __device__ void operator()(int64_t r, int64_t ch, double (*acc)[4]) const
    {
        const int64_t i = r * c + ch;
        float4 g4 = *(const float4 *)(dy + i), x4 = *(const float4 *)(x + i);
        float gs[4] = {g4.x, g4.y, g4.z, g4.w};
        const float xs[4] = {x4.x, x4.y, x4.z, x4.w};
        if (z) {
            float4 z4 = *(const float4 *)(z + i);
            const float zs[4] = {z4.x, z4.y, z4.z, z4.w};
#pragma unroll
            for (int q = 0; q < 4; q++) gs[q] = bn_act_grad(gs[q], zs[q], slope);
        }
#pragma unroll
        for (int q = 0; q < 4; q++) {
            double g = gs[q];
            acc[0][q] += g;
            acc[1][q] += g * ((double)xs[q] - mean[ch + q]) * invstd[ch + q];
        }
    }
};

__global__ void bn_grad_partials4(double *part, const float *dy, const float *x,
                                  const float *mean, const float *invstd, int64_t rows,
                                  int64_t c, int parts, const float *z, float slope)
{
    channel_partials4<2>(part, rows, c, parts, bn_grad_val4{dy, x, mean, invstd, c, z, slope});
}

struct bias_val4 {
    const float *dy;
    int64_t c;
    __device__ void operator()(int64_t r, int64_t ch, double (*acc)[4]) const
    {
        float4 g4 = *(const float4 *)(dy + r * c + ch);
        acc[0][0] += g4.x;
        acc[0][1] += g4.y;
        acc[0][2] += g4.z;
        acc[0][3] += g4.w;
    }
};

__global__ void bias_partials4(double *part, const float *dy, int64_t rows, int64_t c, int parts)
{
    channel_partials4<1>(part, rows, c, parts, bias_val4{dy, c});
}

__global__ void finish_sums2(float *s0, float *s1, const double *part, int64_t c, int parts)
{
    int64_t ch = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double a = 0.0, b = 0.0;
    for (int p = 0; p < parts; p++) {
        a += part[((int64_t)p * 2 + 0) * c + ch];
        b += part[((int64_t)p * 2 + 1) * c + ch];
    }
    s0[ch] = (float)a;
    s1[ch] = (float)b;
}

struct bias_val {
    const float *dy;
    int64_t c;
    __device__ void operator()(int64_t r, int64_t ch, double *acc) const
    {
        acc[0] += dy[r * c + ch];
    }
};

__global__ void bias_partials(double *part, const float *dy, int64_t rows, int64_t c, int parts)
{
    channel_partials<1>(part, rows, c, parts, bias_val{dy, c});
}

__global__ void bias_finish(float *db, const double *part, int64_t c, int parts)
{
    int64_t ch = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double a = 0.0;
    for (int p = 0; p < parts; p++) a += part[(int64_t)p * c + ch];
    db[ch] += (float)a;
}

static dim3 red_grid(int64_t c, int parts)
{
    return dim3((unsigned)((c + RED_X - 1) / RED_X), (unsigned)parts);
}

static unsigned ch_grid(int64_t c) { return (unsigned)((c + 127) / 128); }

extern "C" {

int vn__k_bn_stats(vn__stream s, float *mean, float *invstd, double *rec, double *part,
                   const float *x, int64_t rows, int64_t c, float eps, int parts)
{
    if (vec4_ok(c, x, NULL, NULL, NULL))
        bn_partials4<<<red_grid(c / 4, parts), dim3(RED_X, RED_Y), 0, s>>>(part, x, rows, c, parts);
    else
        bn_partials<<<red_grid(c, parts), dim3(RED_X, RED_Y), 0, s>>>(part, x, rows, c, parts);
    bn_finish_stats<<<ch_grid(c), 128, 0, s>>>(mean, invstd, rec, part, rows, c, eps, parts);
    return done();
}

int vn__k_bn_running(vn__stream s, float *rmean, float *rvar, const double *rec, int64_t rows,
                     int64_t c, float momentum)
{
    bn_running<<<ch_grid(c), 128, 0, s>>>(rmean, rvar, rec, rows, c, momentum);
    return done();
}

int vn__k_bn_eval_stats(vn__stream s, float *mean, float *invstd, const float *rmean,
                        const float *rvar, int64_t c, float eps)
{
    bn_eval_stats<<<ch_grid(c), 128, 0, s>>>(mean, invstd, rmean, rvar, c, eps);
    return done();
}

int vn__k_bn_apply(vn__stream s, float *y, const float *x, const float *mean, const float *invstd,
                   const float *w, const float *b, int64_t rows, int64_t c, bool act, float slope)
{
    int64_t per;
    dim3 grid = ch_rows_grid(rows, c, &per);
    if (vec4_ok(c, y, x, NULL, NULL)) {
        grid = ch_rows_grid4(rows, c, &per);
        bn_apply4<<<grid, dim3(32, 8), 0, s>>>(y, x, mean, invstd, w, b, rows, c, per, act, slope);
    } else {
        bn_apply<<<grid, dim3(32, 8), 0, s>>>(y, x, mean, invstd, w, b, rows, c, per, act, slope);
    }
    return done();
}

int vn__k_bn_grad_sums(vn__stream s, float *sum_dy, float *sum_dy_xhat, double *part,
                       const float *dy, const float *x, const float *mean, const float *invstd,
                       int64_t rows, int64_t c, int parts, const float *z, float slope)
{
    if (vec4_ok(c, dy, x, z, NULL))
        bn_grad_partials4<<<red_grid(c / 4, parts), dim3(RED_X, RED_Y), 0, s>>>(
            part, dy, x, mean, invstd, rows, c, parts, z, slope);
    else
        bn_grad_partials<<<red_grid(c, parts), dim3(RED_X, RED_Y), 0, s>>>(
            part, dy, x, mean, invstd, rows, c, parts, z, slope);
    finish_sums2<<<ch_grid(c), 128, 0, s>>>(sum_dy, sum_dy_xhat, part, c, parts);
    return done();
}

int vn__k_bn_bwd_dx(vn__stream s, float *dx, const float *dy, const float *x, const float *mean,
                    const float *invstd, const float *w, const float *sum_dy,
                    const float *sum_dy_xhat, int64_t rows, int64_t c, bool training,
                    bool assign, const float *z, float slope)
{
    int64_t per;
    dim3 grid = ch_rows_grid(rows, c, &per);
    if (vec4_ok(c, dx, dy, x, z)) {
        grid = ch_rows_grid4(rows, c, &per);
        bn_bwd_dx4<<<grid, dim3(32, 8), 0, s>>>(dx, dy, x, mean, invstd, w, sum_dy, sum_dy_xhat,
                                                rows, c, training, assign, per, z, slope);
        return done();
    }
    bn_bwd_dx<<<grid, dim3(32, 8), 0, s>>>(dx, dy, x, mean, invstd, w, sum_dy, sum_dy_xhat, rows,
                                           c, training, assign, per, z, slope);
    return done();
}

int vn__k_bias_grad(vn__stream s, float *db, double *part, const float *dy, int64_t rows,
                    int64_t c, int parts)
{
    if (vec4_ok(c, dy, NULL, NULL, NULL))
        bias_partials4<<<red_grid(c / 4, parts), dim3(RED_X, RED_Y), 0, s>>>(part, dy, rows, c,
                                                                            parts);
    else
        bias_partials<<<red_grid(c, parts), dim3(RED_X, RED_Y), 0, s>>>(part, dy, rows, c, parts);
    bias_finish<<<ch_grid(c), 128, 0, s>>>(db, part, c, parts);
    return done();
}

int vn__k_bias_add(vn__stream s, float *y, const float *b, int64_t rows, int64_t c)
{
    int64_t per;
    dim3 grid = ch_rows_grid(rows, c, &per);
    if (vec4_ok(c, y, NULL, NULL, NULL)) {
        grid = ch_rows_grid4(rows, c, &per);
        bias_add4<<<grid, dim3(32, 8), 0, s>>>(y, b, rows, c, per);
    } else {
        bias_add<<<grid, dim3(32, 8), 0, s>>>(y, b, rows, c, per);
    }
    return done();
}

} // extern "C"

extern "C" {

int vn__k_maxpool_fwd(vn__stream s, float *y, int32_t *arg, const float *x, int64_t n, int64_t h,
                      int64_t w, int64_t c, int64_t oh, int64_t ow, int k)
{
    int64_t outs = n * oh * ow * c;
    if (k > 0 && n * h * w * c < ((int64_t)1 << 31))
        maxpool_fwd_k<int><<<grid_for(outs), VN_THREADS, 0, s>>>(
            y, arg, x, (int)n, (int)h, (int)w, (int)c, (int)oh, (int)ow, k);
    else
        maxpool_fwd<<<grid_for(outs), VN_THREADS, 0, s>>>(y, arg, x, n, h, w, c, oh, ow, k);
    return done();
}

int vn__k_maxpool_bwd(vn__stream s, float *dx, const float *dy, const int32_t *arg, int64_t n,
                      int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow, int k, bool assign)
{
    int64_t total = n * h * w * c, outs = n * oh * ow * c;
    if (k == 0) {
        maxpool_bwd<<<grid_for(total), VN_THREADS, 0, s>>>(dx, dy, arg, n, h, w, c, oh, ow, k,
                                                           assign);
        return done();
    }
    if (assign && (oh * k != h || ow * k != w))
        maxpool_uncovered<<<grid_for(total), VN_THREADS, 0, s>>>(dx, n, h, w, c, oh, ow, k);
    if (total < ((int64_t)1 << 31))
        maxpool_bwd_k<int><<<grid_for(outs), VN_THREADS, 0, s>>>(
            dx, dy, arg, (int)n, (int)h, (int)w, (int)c, (int)oh, (int)ow, k, assign);
    else
        maxpool_bwd_k<int64_t><<<grid_for(outs), VN_THREADS, 0, s>>>(dx, dy, arg, n, h, w, c, oh,
                                                                     ow, (int64_t)k, assign);
    return done();
}

int vn__k_avgpool_fwd(vn__stream s, float *y, const float *x, int64_t n, int64_t h, int64_t w,
                      int64_t c, int64_t oh, int64_t ow)
{
    avgpool_fwd<<<grid_for(n * oh * ow * c), VN_THREADS, 0, s>>>(y, x, n, h, w, c, oh, ow);
    return done();
}

int vn__k_avgpool_bwd(vn__stream s, float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                      int64_t c, int64_t oh, int64_t ow)
{
    const int64_t total = n * h * w * c;
    if (oh == 1 && ow == 1 && total < ((int64_t)1 << 31))
        avgpool_bwd_global<int><<<grid_for(total), VN_THREADS, 0, s>>>(dx, dy, (int)n, (int)(h * w),
                                                                       (int)c);
    else if (oh == 1 && ow == 1)
        avgpool_bwd_global<int64_t><<<grid_for(total), VN_THREADS, 0, s>>>(dx, dy, n, h * w, c);
    else
        avgpool_bwd<<<grid_for(total), VN_THREADS, 0, s>>>(dx, dy, n, h, w, c, oh, ow);
    return done();
}

} // extern "C"

// ---- losses: one block per row for the row terms, then one ordered pass over rows -------

__device__ static double block_sum(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

__device__ static double block_max(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmax(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

// Per row r: lse[r], and row loss in rowloss (stored after the lse values).
__global__ void ce_rows(double *lse, double *rowloss, const float *x, const int32_t *labels,
                        const float *targets, int64_t c, float smoothing)
{
    __shared__ double sh[VN_THREADS];
    int64_t r = blockIdx.x;
    const float *xr = x + r * c;
    double m = -INFINITY;
    for (int64_t k = threadIdx.x; k < c; k += blockDim.x) m = fmax(m, (double)xr[k]);
    m = block_max(m, sh);
    double se = 0.0, sx = 0.0, st = 0.0;
    for (int64_t k = threadIdx.x; k < c; k += blockDim.x) {
        se += exp((double)xr[k] - m);
        sx += (double)xr[k];
        if (targets) st += (double)targets[r * c + k] * (double)xr[k];
    }
    se = block_sum(se, sh);
    sx = block_sum(sx, sh);
    double tsum = 0.0;
    if (targets) {
        st = block_sum(st, sh);
        double t = 0.0;
        for (int64_t k = threadIdx.x; k < c; k += blockDim.x) t += (double)targets[r * c + k];
        tsum = block_sum(t, sh);
    }
    if (threadIdx.x == 0) {
        double l = m + log(se);
        lse[r] = l;
        if (targets) {
            rowloss[r] = l * tsum - st;
        } else {
            double nll = l - (double)xr[labels[r]];
            double smooth = l - sx / (double)c;
            rowloss[r] = (1.0 - smoothing) * nll + smoothing * smooth;
        }
    }
}

__global__ void mean_rows(float *loss, const double *rowloss, int64_t rows)
{
    __shared__ double sh[VN_THREADS];
    double s = 0.0;
    // Fixed order: thread t sums rows t, t + 256, ...; then a fixed tree.
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) s += rowloss[r];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) loss[0] = (float)(s / (double)rows);
}

__global__ void ce_bwd(float *dx, const float *dloss, const float *x, const double *lse,
                       const int32_t *labels, const float *targets, int64_t rows, int64_t c,
                       float smoothing, bool assign)
{
    GRID_LOOP(i, rows * c)
    {
        int64_t r = i / c, k = i % c;
        double scale = (double)dloss[0] / (double)rows;
        double p = exp((double)x[i] - lse[r]);
        double v;
        if (targets) {
            double tsum = 0.0;
            for (int64_t q = 0; q < c; q++) tsum += targets[r * c + q];
            v = scale * (p * tsum - (double)targets[i]);
        } else {
            double s = smoothing;
            v = scale * (p - s / (double)c - (k == labels[r] ? 1.0 - s : 0.0));
        }
        dx[i] = assign ? (float)v : dx[i] + (float)v;
    }
}

// PyTorch's stable form: max(x, 0) - x t + log(1 + exp(-|x|)).
__global__ void bce_partials(double *part, const float *x, const float *t, int64_t n)
{
    __shared__ double sh[VN_THREADS];
    double s = 0.0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)blockDim.x * gridDim.x) {
        double xv = x[i];
        s += fmax(xv, 0.0) - xv * (double)t[i] + log1p(exp(-fabs(xv)));
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void bce_finish(float *loss, const double *part, int parts, int64_t n)
{
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double s = 0.0;
    for (int p = 0; p < parts; p++) s += part[p];
    loss[0] = (float)(s / (double)n);
}

__global__ void bce_bwd(float *dx, const float *dloss, const float *x, const float *t, int64_t n,
                        bool assign)
{
    GRID_LOOP(i, n)
    {
        float sig = 1.0f / (1.0f + expf(-x[i]));
        float v = dloss[0] / (float)n * (sig - t[i]);
        dx[i] = assign ? v : dx[i] + v;
    }
}

#define BCE_PARTS 256

extern "C" {

int vn__k_ce_fwd(vn__stream s, float *loss, double *lse, const float *x, const int32_t *labels,
                 const float *targets, int64_t rows, int64_t c, float smoothing)
{
    ce_rows<<<(unsigned)rows, VN_THREADS, 0, s>>>(lse, lse + rows, x, labels, targets, c,
                                                  smoothing);
    mean_rows<<<1, VN_THREADS, 0, s>>>(loss, lse + rows, rows);
    return done();
}

int vn__k_ce_bwd(vn__stream s, float *dx, const float *dloss, const float *x, const double *lse,
                 const int32_t *labels, const float *targets, int64_t rows, int64_t c,
                 float smoothing, bool assign)
{
    ce_bwd<<<grid_for(rows * c), VN_THREADS, 0, s>>>(dx, dloss, x, lse, labels, targets, rows, c,
                                                     smoothing, assign);
    return done();
}

int vn__k_bce_fwd(vn__stream s, float *loss, double *part, const float *x, const float *t,
                  int64_t n)
{
    bce_partials<<<BCE_PARTS, VN_THREADS, 0, s>>>(part, x, t, n);
    bce_finish<<<1, 32, 0, s>>>(loss, part, BCE_PARTS, n);
    return done();
}

int vn__k_bce_bwd(vn__stream s, float *dx, const float *dloss, const float *x, const float *t,
                  int64_t n, bool assign)
{
    bce_bwd<<<grid_for(n), VN_THREADS, 0, s>>>(dx, dloss, x, t, n, assign);
    return done();
}

} // extern "C"
