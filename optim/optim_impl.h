/* Private helpers shared by the optim/ sources. */
#ifndef VN_OPTIM_IMPL_H
#define VN_OPTIM_IMPL_H

#include "base/vn_base.h"

/* Work on a tensor of n elements is cut into chunks that depend only on n: at least
 * VN__CHUNK_MIN elements each (so small tensors stay on one thread) and at most
 * VN__MAX_CHUNKS of them. Reductions sum each chunk sequentially in double and then the
 * chunk sums in chunk order, so results do not depend on the thread count. */
#define VN__CHUNK_MIN ((int64_t)16384)
#define VN__MAX_CHUNKS 64

static inline void vn__chunking(int64_t n, int *nchunks, int64_t *chunk)
{
    if (n <= VN__CHUNK_MIN) {
        *nchunks = 1;
        *chunk = n;
        return;
    }
    int64_t c = (n + VN__CHUNK_MIN - 1) / VN__CHUNK_MIN;
    if (c > VN__MAX_CHUNKS) c = VN__MAX_CHUNKS;
    int64_t len = (n + c - 1) / c;
    len = (len + 15) & ~(int64_t)15; /* whole vectors per chunk */
    *nchunks = (int)((n + len - 1) / len);
    *chunk = len;
}

/* Sum of squares of x[0..n) in double, sequential within the call (one chunk). */
double vn__sumsq_seq(const float *x, int64_t n);

/* malloc'd a + b; NULL on allocation failure. */
char *vn__concat(const char *a, const char *b, const char *c);

#endif
