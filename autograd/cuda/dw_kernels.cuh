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
template <int K, typename F>
__device__ static inline void dw_row(float (&win)[K][K], const float *x, const dw_geom &g, int n,
                                     int o, int ch, F f)
{
#pragma unroll
    for (int j = 0; j + 1 < K; j++) dw_load_col<K>(win, j, x, g, n, o, j - g.pw, ch);
    int p0 = 0;
    for (; p0 + K <= g.wo; p0 += K) {
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

template <int K>
__global__ void __launch_bounds__(DW_THREADS)
    dw_forward(float *y, const float *x, const float *wt, const float *bias, const float *mask,
               dw_geom g, int parts, bool accumulate)
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
        dw_row<K>(win, x, g, r / g.ho, r % g.ho, ch, [&](int q, int p) {
            float acc = 0.0f;
#pragma unroll
            for (int i = 0; i < K; i++)
#pragma unroll
                for (int j = 0; j < K; j++) acc = fmaf(wr[i][j], win[i][(q + j) % K], acc);
            acc += b;
            long long at = (long long)p * g.c;
            if (mask && !(mask[(long long)r * g.wo * g.c + at + ch] > 0.0f)) acc = acc * 0.0f;
            float *dst = yrow + at;
            *dst = accumulate ? *dst + acc : acc;
        });
    }
}

template <int K>
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
        dw_row<K>(win, x, g, r / g.ho, r % g.ho, ch, [&](int q, int p) {
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

// ---- The tiled kernels (the default; VN_CUDA_DW_ROW=1 picks the row walks above) ----------
// A block of DWT_CH x DWT_TH threads (32 channels, one warp per output row) covers an output
// tile of DWT_TH rows x TW columns of one image and 32 channels. It stages the input under the
// tile, halo included ((DWT_TH + K - 1) x (TW + K - 1) x 32 floats), in shared memory with
// coalesced loads, once; then each thread computes its row's TW outputs from K rows of that
// tile, holding one row of TW + K - 1 inputs in registers at a time: K*K*TW multiply-adds per
// K*(TW + K - 1) shared loads, and a few dozen registers (the row walks need about 180, which
// left 8 warps on an SM waiting on loads). Lanes are channels, so shared loads never conflict.
// TW is 14 on maps at least 14 wide and 7 below (VanillaNet's maps are 56, 28, 14 and 7).
#define DWT_CH 32
#define DWT_TH 7

// The tiles of a map: tile t is image t / (tr * tc), row tile (t / tc) % tr, column tile t % tc.
__device__ static inline void dwt_tile(const dw_geom &g, int tw, long long t, int *n, int *o0,
                                       int *p0)
{
    int tc = (g.wo + tw - 1) / tw, tr = (g.ho + DWT_TH - 1) / DWT_TH;
    *p0 = (int)(t % tc) * tw;
    t /= tc;
    *o0 = (int)(t % tr) * DWT_TH;
    *n = (int)(t / tr);
}

static long long dwt_tiles(int n, int ho, int wo, int tw)
{
    return (long long)n * ((ho + DWT_TH - 1) / DWT_TH) * ((wo + tw - 1) / tw);
}

static int dwt_width(int wo) { return wo >= 14 ? 14 : 7; }

// tile[i][j][lane] = x[n, o0 + i - ph, p0 + j - pw, c0 + lane], 0 outside the map, through the
// ReLU when g.relu (as dw_load_col). Each warp loads positions warp, warp + DWT_TH, ..., eight
// loads in flight before their stores.
template <int K, int TW>
__device__ static inline void dwt_load(float *tile, const float *x, const dw_geom &g, int n,
                                       int o0, int p0, int c0)
{
    constexpr int IW = TW + K - 1, POS = (DWT_TH + K - 1) * IW;
    constexpr int ITER = (POS + DWT_TH - 1) / DWT_TH, BATCH = 8;
    const int lane = threadIdx.x % DWT_CH, warp = threadIdx.x / DWT_CH, ch = c0 + lane;
    for (int b0 = 0; b0 < ITER; b0 += BATCH) {
        float v[BATCH];
#pragma unroll
        for (int k = 0; k < BATCH; k++) {
            int pos = warp + (b0 + k) * DWT_TH;
            int ih = o0 + pos / IW - g.ph, iw = p0 + pos % IW - g.pw;
            bool in = pos < POS && ch < g.c && (unsigned)ih < (unsigned)g.h &&
                      (unsigned)iw < (unsigned)g.w;
            v[k] = in ? x[(((long long)n * g.h + ih) * g.w + iw) * g.c + ch] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < BATCH; k++) {
            int pos = warp + (b0 + k) * DWT_TH;
            if (pos < POS) tile[pos * DWT_CH + lane] = g.relu && !(v[k] > 0.0f) ? v[k] * 0.0f : v[k];
        }
    }
}

// Grid (tiles, channel blocks). y = b + conv (accumulate: y +=). mask (the input gradient of
// vn_conv2d_relu): each result r becomes mask > 0 ? r : r * 0 before it is stored, as the
// ReLU's backward (leaky_bwd with slope 0) would make it. The sum of each output runs over
// kernel rows, then columns, as dw_forward's: the same bytes.
template <int K, int TW>
__global__ void __launch_bounds__(DWT_CH *DWT_TH)
    dwt_forward(float *y, const float *x, const float *wt, const float *bias, const float *mask,
                dw_geom g, bool accumulate)
{
    constexpr int IW = TW + K - 1;
    __shared__ float tile[(DWT_TH + K - 1) * IW * DWT_CH];
    const int lane = threadIdx.x % DWT_CH, r = threadIdx.x / DWT_CH;
    const int ch = blockIdx.y * DWT_CH + lane;
    int n, o0, p0;
    dwt_tile(g, TW, blockIdx.x, &n, &o0, &p0);
    dwt_load<K, TW>(tile, x, g, n, o0, p0, blockIdx.y * DWT_CH);
    __syncthreads();
    const int o = o0 + r;
    if (ch >= g.c || o >= g.ho) return;
    float acc[TW];
#pragma unroll
    for (int p = 0; p < TW; p++) acc[p] = 0.0f;
#pragma unroll
    for (int i = 0; i < K; i++) {
        float wr[K], xr[IW];
#pragma unroll
        for (int j = 0; j < K; j++) wr[j] = wt[(i * K + j) * g.c + ch];
#pragma unroll
        for (int u = 0; u < IW; u++) xr[u] = tile[((r + i) * IW + u) * DWT_CH + lane];
#pragma unroll
        for (int p = 0; p < TW; p++)
#pragma unroll
            for (int j = 0; j < K; j++) acc[p] = fmaf(wr[j], xr[p + j], acc[p]);
    }
    const float b = bias ? bias[ch] : 0.0f;
    const long long row = ((long long)n * g.ho + o) * g.wo;
#pragma unroll
    for (int p = 0; p < TW; p++) {
        if (p0 + p >= g.wo) break;
        long long idx = (row + p0 + p) * g.c + ch;
        float v = acc[p] + b;
        if (mask && !(mask[idx] > 0.0f)) v = v * 0.0f;
        y[idx] = accumulate ? y[idx] + v : v;
    }
}

// Grid (parts, channel blocks); tiles: dwt_tiles(.., TW). Block x sums dw over tiles x, x + parts, x + 2 parts, ... in
// that order, then over its DWT_TH rows in row order, into part[x][K*K][c]; dw_filter_finish
// adds the parts in order. A fixed order throughout: deterministic.
template <int K, int TW>
__global__ void __launch_bounds__(DWT_CH *DWT_TH)
    dwt_filter_partials(float *part, const float *dy, const float *x, dw_geom g, int parts,
                        long long tiles)
{
    constexpr int IW = TW + K - 1;
    __shared__ float tile[(DWT_TH + K - 1) * IW * DWT_CH];
    const int lane = threadIdx.x % DWT_CH, r = threadIdx.x / DWT_CH;
    const int ch = blockIdx.y * DWT_CH + lane;
    float acc[K][K];
#pragma unroll
    for (int i = 0; i < K; i++)
#pragma unroll
        for (int j = 0; j < K; j++) acc[i][j] = 0.0f;
    for (long long t = blockIdx.x; t < tiles; t += parts) {
        int n, o0, p0;
        dwt_tile(g, TW, t, &n, &o0, &p0);
        __syncthreads(); // the last tile's reads are done
        dwt_load<K, TW>(tile, x, g, n, o0, p0, blockIdx.y * DWT_CH);
        __syncthreads();
        const int o = o0 + r;
        if (ch >= g.c || o >= g.ho) continue;
        float gv[TW];
        const float *grow = dy + ((long long)n * g.ho + o) * g.wo * g.c + ch;
#pragma unroll
        for (int p = 0; p < TW; p++) gv[p] = p0 + p < g.wo ? grow[(long long)(p0 + p) * g.c] : 0.0f;
#pragma unroll
        for (int i = 0; i < K; i++) {
            float xr[IW];
#pragma unroll
            for (int u = 0; u < IW; u++) xr[u] = tile[((r + i) * IW + u) * DWT_CH + lane];
#pragma unroll
            for (int j = 0; j < K; j++)
#pragma unroll
                for (int p = 0; p < TW; p++) acc[i][j] = fmaf(gv[p], xr[p + j], acc[i][j]);
        }
    }
    // The rows of the block, one kernel row at a time through the (now free) tile.
    float *out = part + (long long)blockIdx.x * K * K * g.c;
#pragma unroll
    for (int i = 0; i < K; i++) {
        __syncthreads();
#pragma unroll
        for (int j = 0; j < K; j++) tile[(r * K + j) * DWT_CH + lane] = acc[i][j];
        __syncthreads();
        for (int j = r; j < K; j += DWT_TH) {
            float s = 0.0f;
            for (int rr = 0; rr < DWT_TH; rr++) s += tile[(rr * K + j) * DWT_CH + lane];
            if (ch < g.c) out[(long long)(i * K + j) * g.c + ch] = s;
        }
    }
}

// How many parts for the tiled filter gradient: about 2048 blocks in all, at most one per
// tile, the partials under 16 M floats (64 MB).
static int dwt_filter_parts(int n, int ho, int wo, int c, int k)
{
    long long tiles = dwt_tiles(n, ho, wo, dwt_width(wo));
    long long cblocks = (c + DWT_CH - 1) / DWT_CH;
    long long p = (2048 + cblocks - 1) / cblocks, cap = (16LL << 20) / ((long long)k * k * c);
    if (p > tiles) p = tiles;
    if (p > cap) p = cap;
    return p < 1 ? 1 : (int)p;
}

#endif
