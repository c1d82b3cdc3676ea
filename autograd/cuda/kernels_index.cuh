// The kernels of kernels.cu whose work is index arithmetic, without shared memory or
// barriers: patchify, the per-channel element-wise kernels of BatchNorm and bias, the pools.
// Apart so that a host emulation of the thread grid (tests/cuda/test_kernels_emu.cpp)
// compiles the same code with g++ and checks it against direct loops on every CI machine,
// without a GPU. The includer provides the CUDA qualifiers and built-ins (nvcc, or the
// test's shims), math.h and stdint.h.
#ifndef VN_KERNELS_INDEX_CUH
#define VN_KERNELS_INDEX_CUH

#define GRID_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)blockDim.x * gridDim.x)

// ---- patchify ---------------------------------------------------------------------------

// Patchify (kernel == stride, no padding): row (n, oh, ow) of p holds the k x k x c window of
// x under it, in the OHWI weight order (i, j, ci); patch_scatter is its transpose (windows
// are disjoint: one writer per input element; inputs under no window get 0 when assigning).
__global__ void patch_gather(float *p, const float *x, int64_t n, int64_t h, int64_t w,
                             int64_t c, int64_t oh, int64_t ow, int64_t k)
{
    const int64_t kc = k * c, row = k * kc;
    GRID_LOOP(e, n * oh * ow * row)
    {
        int64_t r = e / row, q = e % row;
        int64_t i = q / kc, jc = q % kc;
        int64_t b = r / (oh * ow), t = r % (oh * ow);
        int64_t y = t / ow * k + i, xw0 = t % ow * k;
        p[e] = x[((b * h + y) * w + xw0) * c + jc];
    }
}

__global__ void patch_scatter(float *dx, const float *dp, int64_t n, int64_t h, int64_t w,
                              int64_t c, int64_t oh, int64_t ow, int64_t k, bool assign)
{
    GRID_LOOP(e, n * h * w * c)
    {
        int64_t ch = e % c, t = e / c;
        int64_t xw = t % w, t2 = t / w;
        int64_t y = t2 % h, b = t2 / h;
        int64_t o = y / k, q = xw / k;
        float v = 0.0f;
        if (o < oh && q < ow)
            v = dp[((b * oh + o) * ow + q) * (k * k * c) + ((y % k) * k + xw % k) * c + ch];
        dx[e] = assign ? v : dx[e] + v;
    }
}

// ---- per-channel element-wise (BatchNorm, bias) ----------------------------------------

// Per-channel element-wise kernels over [rows, c] walk a 2-D grid: x picks 32 channels (a
// thread keeps its channel's factors in registers), y a range of CH_ROWS rows, so that no
// element needs a 64-bit division to find its channel.
#define CH_ROWS 64

static dim3 ch_rows_grid(int64_t rows, int64_t c, int64_t *per)
{
    int64_t p = CH_ROWS, yb = (rows + p - 1) / p;
    if (yb > 65535) {
        p = (rows + 65534) / 65535;
        yb = (rows + p - 1) / p;
    }
    *per = p;
    return dim3((unsigned)((c + 31) / 32), (unsigned)(yb > 0 ? yb : 1));
}

#define CH_ROWS_LOOP(r, rows, per)                                                   \
    for (int64_t r = (int64_t)blockIdx.y * (per) + threadIdx.y,                      \
                 r##_end = min((rows), (int64_t)(blockIdx.y + 1) * (per));           \
         r < r##_end; r += blockDim.y)

// One element of bn_apply: act: leaky_relu(slope >= 0) of the result (vn_batch_norm2d_leaky).
__host__ __device__ inline float bn_apply1(float x, float m, float is, float k, float o, bool act,
                                           float slope)
{
    float v = (x - m) * is;
    v = v * k + o;
    return act && !(v > 0.0f) ? v * slope : v;
}

__global__ void bn_apply(float *y, const float *x, const float *mean, const float *invstd,
                         const float *w, const float *b, int64_t rows, int64_t c, int64_t per,
                         bool act, float slope)
{
    int64_t ch = (int64_t)blockIdx.x * 32 + threadIdx.x;
    if (ch >= c) return;
    const float m = mean[ch], is = invstd[ch], k = w ? w[ch] : 1.0f, o = b ? b[ch] : 0.0f;
    CH_ROWS_LOOP(r, rows, per)
    {
        int64_t i = r * c + ch;
        y[i] = bn_apply1(x[i], m, is, k, o, act, slope);
    }
}

// The per-channel kernels four channels a thread (c % 4 == 0, 16-byte aligned rows): one
// 128-bit load or store where the scalar kernels make four, the same arithmetic on each
// element (the same bytes). Grid: ch_rows_grid4.
static dim3 ch_rows_grid4(int64_t rows, int64_t c, int64_t *per)
{
    dim3 g = ch_rows_grid(rows, c, per);
    g.x = (unsigned)((c / 4 + 31) / 32);
    return g;
}

__global__ void bn_apply4(float *y, const float *x, const float *mean, const float *invstd,
                          const float *w, const float *b, int64_t rows, int64_t c, int64_t per,
                          bool act, float slope)
{
    int64_t ch = ((int64_t)blockIdx.x * 32 + threadIdx.x) * 4;
    if (ch >= c) return;
    float m[4], is[4], k[4], o[4];
    for (int q = 0; q < 4; q++) {
        m[q] = mean[ch + q];
        is[q] = invstd[ch + q];
        k[q] = w ? w[ch + q] : 1.0f;
        o[q] = b ? b[ch + q] : 0.0f;
    }
    CH_ROWS_LOOP(r, rows, per)
    {
        float4 v = *(const float4 *)(x + r * c + ch), t;
        t.x = bn_apply1(v.x, m[0], is[0], k[0], o[0], act, slope);
        t.y = bn_apply1(v.y, m[1], is[1], k[1], o[1], act, slope);
        t.z = bn_apply1(v.z, m[2], is[2], k[2], o[2], act, slope);
        t.w = bn_apply1(v.w, m[3], is[3], k[3], o[3], act, slope);
        *(float4 *)(y + r * c + ch) = t;
    }
}

// The gradient at the normalised value of an op with the activation: leaky_relu's backward
// from the op's output z (its sign is the input's for slope >= 0).
__host__ __device__ inline float bn_act_grad(float dz, float z, float slope)
{
    return z > 0.0f ? dz : dz * slope;
}

// Training: dx = w * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)); eval: w * invstd * dy.
// z (the output) given: dy is the gradient at the activation's output, taken back through it.
// One element: g the gradient at the normalised value; the result before the accumulation.
__host__ __device__ inline float bn_dx1(float g, float x, float m, float is, float k, float mdy,
                                        float mdx, bool training)
{
    if (training) {
        float xhat = (x - m) * is;
        g = g - mdy - xhat * mdx;
    }
    return k * g;
}

__global__ void bn_bwd_dx(float *dx, const float *dy, const float *x, const float *mean,
                          const float *invstd, const float *w, const float *sum_dy,
                          const float *sum_dy_xhat, int64_t rows, int64_t c, bool training,
                          bool assign, int64_t per, const float *z, float slope)
{
    int64_t ch = (int64_t)blockIdx.x * 32 + threadIdx.x;
    if (ch >= c) return;
    const float m = mean[ch], is = invstd[ch], k = (w ? w[ch] : 1.0f) * is;
    const float mdy = training ? sum_dy[ch] / (float)rows : 0.0f;
    const float mdx = training ? sum_dy_xhat[ch] / (float)rows : 0.0f;
    CH_ROWS_LOOP(r, rows, per)
    {
        int64_t i = r * c + ch;
        float g = z ? bn_act_grad(dy[i], z[i], slope) : dy[i];
        float v = bn_dx1(g, x[i], m, is, k, mdy, mdx, training);
        dx[i] = assign ? v : dx[i] + v;
    }
}

// bn_bwd_dx four channels a thread (see bn_apply4).
__global__ void bn_bwd_dx4(float *dx, const float *dy, const float *x, const float *mean,
                           const float *invstd, const float *w, const float *sum_dy,
                           const float *sum_dy_xhat, int64_t rows, int64_t c, bool training,
                           bool assign, int64_t per, const float *z, float slope)
{
    int64_t ch = ((int64_t)blockIdx.x * 32 + threadIdx.x) * 4;
    if (ch >= c) return;
    float m[4], is[4], k[4], mdy[4], mdx[4];
    for (int q = 0; q < 4; q++) {
        m[q] = mean[ch + q];
        is[q] = invstd[ch + q];
        k[q] = (w ? w[ch + q] : 1.0f) * is[q];
        mdy[q] = training ? sum_dy[ch + q] / (float)rows : 0.0f;
        mdx[q] = training ? sum_dy_xhat[ch + q] / (float)rows : 0.0f;
    }
    CH_ROWS_LOOP(r, rows, per)
    {
        const int64_t i = r * c + ch;
        float4 g = *(const float4 *)(dy + i), xv = *(const float4 *)(x + i), t;
        if (z) {
            float4 zv = *(const float4 *)(z + i);
            g.x = bn_act_grad(g.x, zv.x, slope);
            g.y = bn_act_grad(g.y, zv.y, slope);
            g.z = bn_act_grad(g.z, zv.z, slope);
            g.w = bn_act_grad(g.w, zv.w, slope);
        }
        t.x = bn_dx1(g.x, xv.x, m[0], is[0], k[0], mdy[0], mdx[0], training);
        t.y = bn_dx1(g.y, xv.y, m[1], is[1], k[1], mdy[1], mdx[1], training);
        t.z = bn_dx1(g.z, xv.z, m[2], is[2], k[2], mdy[2], mdx[2], training);
        t.w = bn_dx1(g.w, xv.w, m[3], is[3], k[3], mdy[3], mdx[3], training);
        if (!assign) {
            float4 d = *(const float4 *)(dx + i);
            t.x = d.x + t.x;
            t.y = d.y + t.y;
            t.z = d.z + t.z;
            t.w = d.w + t.w;
        }
        *(float4 *)(dx + i) = t;
    }
}

__global__ void bias_add(float *y, const float *b, int64_t rows, int64_t c, int64_t per)
{
    int64_t ch = (int64_t)blockIdx.x * 32 + threadIdx.x;
    if (ch >= c) return;
    const float v = b[ch];
    CH_ROWS_LOOP(r, rows, per) y[r * c + ch] += v;
}

// bias_add four channels a thread (see bn_apply4).
__global__ void bias_add4(float *y, const float *b, int64_t rows, int64_t c, int64_t per)
{
    int64_t ch = ((int64_t)blockIdx.x * 32 + threadIdx.x) * 4;
    if (ch >= c) return;
    const float v0 = b[ch], v1 = b[ch + 1], v2 = b[ch + 2], v3 = b[ch + 3];
    CH_ROWS_LOOP(r, rows, per)
    {
        float4 *p = (float4 *)(y + r * c + ch), t = *p;
        t.x += v0;
        t.y += v1;
        t.z += v2;
        t.w += v3;
        *p = t;
    }
}

// ---- pools (NHWC). k > 0: kernel = stride = k; k == 0: adaptive windows ----------------

__device__ static inline void window(int64_t i, int64_t in, int64_t out, int k, int64_t *lo,
                                     int64_t *hi)
{
    if (k > 0) {
        *lo = i * k;
        *hi = *lo + k;
    } else {
        *lo = (i * in) / out;
        *hi = ((i + 1) * in + out - 1) / out;
    }
}

__global__ void maxpool_fwd(float *y, int32_t *arg, const float *x, int64_t n, int64_t h,
                            int64_t w, int64_t c, int64_t oh, int64_t ow, int k)
{
    GRID_LOOP(o, n * oh * ow * c)
    {
        int64_t ch = o % c, j = (o / c) % ow, i = (o / (c * ow)) % oh, b = o / (c * ow * oh);
        int64_t h0, h1, w0, w1;
        window(i, h, oh, k, &h0, &h1);
        window(j, w, ow, k, &w0, &w1);
        float best = -INFINITY;
        int32_t where = (int32_t)((h0 * w + w0) * c + ch);
        for (int64_t hh = h0; hh < h1; hh++)
            for (int64_t ww = w0; ww < w1; ww++) {
                int64_t idx = (hh * w + ww) * c + ch;
                float v = x[b * h * w * c + idx];
                if (v > best || isnan(v)) {
                    best = v;
                    where = (int32_t)idx;
                    if (isnan(v)) hh = h1, ww = w1;
                }
            }
        y[o] = best;
        if (arg) arg[o] = where;
    }
}

// Element o of an NHWC tensor [n, h, w, c]: its image b, row i, column j and channel ch.
template <typename I>
__device__ static inline void nhwc_at(I o, I h, I w, I c, I *b, I *i, I *j, I *ch)
{
    I t = o / c;
    *ch = o % c;
    *j = t % w;
    t /= w;
    *i = t % h;
    *b = t / h;
}

// The same for kernel == stride in index type I (int below 2^31 elements: no 64-bit
// division); the same scan order, ties to the first, a NaN wins and ends the scan.
template <typename I>
__global__ void maxpool_fwd_k(float *y, int32_t *arg, const float *x, I n, I h, I w, I c, I oh,
                              I ow, I k)
{
    const I total = n * oh * ow * c;
    for (I o = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; o < total;
         o += (I)blockDim.x * (I)gridDim.x) {
        I b, i, j, ch;
        nhwc_at(o, oh, ow, c, &b, &i, &j, &ch);
        const float *img = x + b * h * w * c;
        float best = -INFINITY;
        I where = ((i * k) * w + j * k) * c + ch;
        bool nan = false;
        for (I u = 0; u < k && !nan; u++)
            for (I v = 0; v < k; v++) {
                I idx = ((i * k + u) * w + (j * k + v)) * c + ch;
                float val = img[idx];
                if (val > best || isnan(val)) {
                    best = val;
                    where = idx;
                    if (isnan(val)) {
                        nan = true;
                        break;
                    }
                }
            }
        y[o] = best;
        if (arg) arg[o] = (int32_t)where;
    }
}

// One thread per input element: gathers from the outputs whose window holds it, in a fixed
// order (deterministic, no atomics).
__global__ void maxpool_bwd(float *dx, const float *dy, const int32_t *arg, int64_t n, int64_t h,
                            int64_t w, int64_t c, int64_t oh, int64_t ow, int k, bool assign)
{
    GRID_LOOP(e, n * h * w * c)
    {
        int64_t ch = e % c, xw = (e / c) % w, xh = (e / (c * w)) % h, b = e / (c * w * h);
        int64_t i0 = k > 0 ? xh / k : (xh * oh) / h, i1 = k > 0 ? min(oh, xh / k + 1) : oh;
        int64_t j0 = k > 0 ? xw / k : (xw * ow) / w, j1 = k > 0 ? min(ow, xw / k + 1) : ow;
        int64_t local = (xh * w + xw) * c + ch;
        float g = 0.0f;
        for (int64_t i = i0; i < i1; i++) {
            int64_t lo, hi;
            window(i, h, oh, k, &lo, &hi);
            if (xh < lo) break;
            if (xh >= hi) continue;
            for (int64_t j = j0; j < j1; j++) {
                int64_t wl, wh;
                window(j, w, ow, k, &wl, &wh);
                if (xw < wl) break;
                if (xw >= wh) continue;
                int64_t o = ((b * oh + i) * ow + j) * c + ch;
                if (arg[o] == local) g += dy[o];
            }
        }
        dx[e] = assign ? g : dx[e] + g;
    }
}

// The same for kernel == stride, from the outputs' side: the windows are disjoint, so one
// thread per output writes its whole k x k window (dy where the argmax is, else 0) and no two
// threads touch the same input. Index type I: int when the tensor has fewer than 2^31
// elements (64-bit division is slow). Inputs outside every window (h or w not a multiple of
// k) are left to vn__k_maxpool_bwd.
template <typename I>
__global__ void maxpool_bwd_k(float *dx, const float *dy, const int32_t *arg, I n, I h, I w, I c,
                              I oh, I ow, I k, bool assign)
{
    const I total = n * oh * ow * c;
    for (I o = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; o < total;
         o += (I)blockDim.x * (I)gridDim.x) {
        I b, i, j, ch;
        nhwc_at(o, oh, ow, c, &b, &i, &j, &ch);
        const int32_t where = arg[o];
        const float g = dy[o];
        float *img = dx + b * h * w * c;
        for (I u = 0; u < k; u++)
            for (I v = 0; v < k; v++) {
                I local = ((i * k + u) * w + (j * k + v)) * c + ch;
                float val = (int32_t)local == where ? g : 0.0f;
                img[local] = assign ? val : img[local] + val;
            }
    }
}

// The inputs that no window covers: rows >= oh * k or columns >= ow * k.
__global__ void maxpool_uncovered(float *dx, int64_t n, int64_t h, int64_t w, int64_t c,
                                  int64_t oh, int64_t ow, int k)
{
    GRID_LOOP(e, n * h * w * c)
    {
        int64_t xw = (e / c) % w, xh = (e / (c * w)) % h;
        if (xh >= oh * k || xw >= ow * k) dx[e] = 0.0f;
    }
}

__global__ void avgpool_fwd(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                            int64_t oh, int64_t ow)
{
    GRID_LOOP(o, n * oh * ow * c)
    {
        int64_t ch = o % c, j = (o / c) % ow, i = (o / (c * ow)) % oh, b = o / (c * ow * oh);
        int64_t h0, h1, w0, w1;
        window(i, h, oh, 0, &h0, &h1);
        window(j, w, ow, 0, &w0, &w1);
        double s = 0.0;
        for (int64_t hh = h0; hh < h1; hh++)
            for (int64_t ww = w0; ww < w1; ww++) s += x[((b * h + hh) * w + ww) * c + ch];
        y[o] = (float)(s / (double)((h1 - h0) * (w1 - w0)));
    }
}

__global__ void avgpool_bwd(float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                            int64_t c, int64_t oh, int64_t ow)
{
    GRID_LOOP(e, n * h * w * c)
    {
        int64_t ch = e % c, xw = (e / c) % w, xh = (e / (c * w)) % h, b = e / (c * w * h);
        float g = 0.0f;
        for (int64_t i = (xh * oh) / h; i < oh; i++) {
            int64_t lo, hi;
            window(i, h, oh, 0, &lo, &hi);
            if (xh < lo) break;
            if (xh >= hi) continue;
            for (int64_t j = (xw * ow) / w; j < ow; j++) {
                int64_t wl, wh;
                window(j, w, ow, 0, &wl, &wh);
                if (xw < wl) break;
                if (xw >= wh) continue;
                g += dy[((b * oh + i) * ow + j) * c + ch] / (float)((hi - lo) * (wh - wl));
            }
        }
        dx[e] += g;
    }
}

// avgpool_bwd for a global pool (oh = ow = 1: VanillaNet's head) in index type I (int below
// 2^31 elements): the same sum, without the windows' 64-bit arithmetic.
template <typename I>
__global__ void avgpool_bwd_global(float *dx, const float *dy, I n, I hw, I c)
{
    const I total = n * hw * c;
    for (I e = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; e < total;
         e += (I)blockDim.x * (I)gridDim.x) {
        float g = 0.0f;
        g += dy[e / (hw * c) * c + e % c] / (float)hw;
        dx[e] += g;
    }
}

#endif
