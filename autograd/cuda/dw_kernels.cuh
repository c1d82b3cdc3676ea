// The depthwise kernels of dw_kernels.cu (see its header comment), apart so that a host
// emulation of the thread grid (tests/cuda/test_dw_emu.cpp) compiles the same code with
// g++ and checks it against a direct convolution on every CI machine, without a GPU. Plain
// C++ beside the CUDA qualifiers; the includer provides them (nvcc, or the test's shims).
#ifndef VN_DW_KERNELS_CUH
#define VN_DW_KERNELS_CUH

#define DW_THREADS 128

// Weights OHWI [C, K, K, 1] to [K*K, C] (flipped: tap t reads K*K-1-t), so that a warp's
// loads of one tap are contiguous.
__global__ void dw_transpose(float *wt, const float *w, int c, int kk, bool flip)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= c * kk) return;
    int ch = i / kk, t = i % kk;
    wt[(flip ? kk - 1 - t : t) * c + ch] = w[i];
}

struct dw_geom {
    int n, h, w, c, ho, wo, ph, pw;
    bool relu; // the conv of relu(x) (vn_conv2d_relu): x > 0 ? x : x * 0 where x is loaded
};

// The rows [r0, r1) of the n * ho output rows that block y of `parts` covers.
__device__ static inline void dw_rows(int rows, int parts, int *r0, int *r1)
{
    long long per = ((long long)rows + parts - 1) / parts;
    long long a = (long long)blockIdx.y * per, b = a + per;
    *r0 = (int)(a < rows ? a : rows);
    *r1 = (int)(b < rows ? b : rows);
}

// Loads input column iw of the K input rows under output row o into window slot `slot`.
template <int K>
__device__ static inline void dw_load_col(float (&win)[K][K], int slot, const float *x,
                                          const dw_geom &g, int n, int o, int iw, int ch)
{
#pragma unroll
    for (int i = 0; i < K; i++) {
        int ih = o + i - g.ph;
        bool in = (unsigned)ih < (unsigned)g.h && (unsigned)iw < (unsigned)g.w;
        float v = in ? x[(((long long)n * g.h + ih) * g.w + iw) * g.c + ch] : 0.0f;
        win[i][slot] = g.relu && !(v > 0.0f) ? v * 0.0f : v;
    }
}

// The window is circular: input column u of a row sits in slot (u + pw) % K, so output p reads
// window column j from slot (p + j) % K. The walk along a row goes K outputs at a time with q
// = p % K unrolled, so every slot index is a constant and nothing moves between registers;
// full groups of K outputs have no branch, so the compiler can issue the loads of later
// columns ahead of the arithmetic on earlier ones (VanillaNet's rows, 56, 28, 14 and 7 wide,
// are all full groups of 7). dw_row calls f(q, p) for each output p of the row after loading
// its last column.
// Hoist false: every output checks the row's end (one branch per output; fewer registers,
// the first version measured on an H200), kept for comparison (VN_CUDA_DW_BRANCHY=1).
template <int K, bool Hoist, typename F>
__device__ static inline void dw_row(float (&win)[K][K], const float *x, const dw_geom &g, int n,
                                     int o, int ch, F f)
{
#pragma unroll
    for (int j = 0; j + 1 < K; j++) dw_load_col<K>(win, j, x, g, n, o, j - g.pw, ch);
    int p0 = 0;
    for (; Hoist && p0 + K <= g.wo; p0 += K) {
#pragma unroll
        for (int q = 0; q < K; q++) {
            dw_load_col<K>(win, (q + K - 1) % K, x, g, n, o, p0 + q + K - 1 - g.pw, ch);
            f(q, p0 + q);
        }
    }
    for (; p0 < g.wo; p0 += K) {
#pragma unroll
        for (int q = 0; q < K; q++) {
            if (p0 + q >= g.wo) break;
            dw_load_col<K>(win, (q + K - 1) % K, x, g, n, o, p0 + q + K - 1 - g.pw, ch);
            f(q, p0 + q);
        }
    }
}

template <int K, bool Hoist>
__global__ void __launch_bounds__(DW_THREADS)
    dw_forward(float *y, const float *x, const float *wt, const float *bias, dw_geom g,
               int parts, bool accumulate)
{
    int ch = blockIdx.x * DW_THREADS + threadIdx.x;
    if (ch >= g.c) return;
    float wr[K][K];
#pragma unroll
    for (int i = 0; i < K; i++)
#pragma unroll
        for (int j = 0; j < K; j++) wr[i][j] = wt[(i * K + j) * g.c + ch];
    const float b = bias ? bias[ch] : 0.0f;
    int r0, r1;
    dw_rows(g.n * g.ho, parts, &r0, &r1);
    float win[K][K];
    for (int r = r0; r < r1; r++) {
        float *yrow = y + ((long long)r * g.wo) * g.c + ch;
        dw_row<K, Hoist>(win, x, g, r / g.ho, r % g.ho, ch, [&](int q, int p) {
            float acc = 0.0f;
#pragma unroll
            for (int i = 0; i < K; i++)
#pragma unroll
                for (int j = 0; j < K; j++) acc = fmaf(wr[i][j], win[i][(q + j) % K], acc);
            acc += b;
            float *dst = yrow + (long long)p * g.c;
            *dst = accumulate ? *dst + acc : acc;
        });
    }
}

template <int K, bool Hoist>
__global__ void __launch_bounds__(DW_THREADS)
    dw_filter_partials(float *part, const float *dy, const float *x, dw_geom g, int parts)
{
    int ch = blockIdx.x * DW_THREADS + threadIdx.x;
    if (ch >= g.c) return;
    float acc[K][K];
#pragma unroll
    for (int i = 0; i < K; i++)
#pragma unroll
        for (int j = 0; j < K; j++) acc[i][j] = 0.0f;
    int r0, r1;
    dw_rows(g.n * g.ho, parts, &r0, &r1);
    float win[K][K];
    for (int r = r0; r < r1; r++) {
        const float *grow = dy + ((long long)r * g.wo) * g.c + ch;
        dw_row<K, Hoist>(win, x, g, r / g.ho, r % g.ho, ch, [&](int q, int p) {
            float gv = grow[(long long)p * g.c];
#pragma unroll
            for (int i = 0; i < K; i++)
#pragma unroll
                for (int j = 0; j < K; j++) acc[i][j] = fmaf(gv, win[i][(q + j) % K], acc[i][j]);
        });
    }
    float *out = part + (long long)blockIdx.y * K * K * g.c + ch;
#pragma unroll
    for (int i = 0; i < K; i++)
#pragma unroll
        for (int j = 0; j < K; j++) out[(long long)(i * K + j) * g.c] = acc[i][j];
}

// dw[ch, t] += sum over the parts, in part order, in double.
__global__ void dw_filter_finish(float *dw, const float *part, int c, int kk, int parts)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= c * kk) return;
    int ch = i / kk, t = i % kk;
    double s = 0.0;
    for (int p = 0; p < parts; p++) s += part[((long long)p * kk + t) * c + ch];
    dw[i] += (float)s;
}

// How many row ranges: enough blocks to fill the device (about 4096), at most one per row,
// and (for the filter's partials) at most `cap` of them.
static int dw_parts(int rows, int c, int cap)
{
    int cblocks = (c + DW_THREADS - 1) / DW_THREADS;
    int p = (4096 + cblocks - 1) / cblocks;
    if (p > rows) p = rows;
    if (p > cap) p = cap;
    return p < 1 ? 1 : p;
}

// The row ranges of the filter gradient: its partials stay under 16 M floats (64 MB).
static int dw_filter_parts(int n, int ho, int c, int k)
{
    long long cap = (16LL << 20) / ((long long)k * k * c);
    return dw_parts(n * ho, c, (int)(cap < 1 ? 1 : cap > (1 << 30) ? (1 << 30) : cap));
}

#endif
