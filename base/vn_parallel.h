/* Parallel loops: one size rule for when a loop is worth threads, and one fixed chunking for
 * reductions whose result must not depend on the thread count.
 *
 * A loop over fewer than VN_PAR_MIN elements (memory-bound: elements read or written) runs on
 * one thread: starting a parallel region costs more than the work, and much more when
 * another process shares the cores. Compute-bound loops (convolutions) count multiply-adds,
 * VN_PAR_MACS_PER_ELEMENT of which cost about as much as touching one element.
 *
 * Reductions split their n items into chunks of a fixed size (the last may be shorter),
 * reduce each chunk on whatever thread takes it, and add the chunk results in chunk order:
 * the same bytes for 1, 2 or 64 threads, so resume and determinism never depend on timing. */
#ifndef VN_PARALLEL_H
#define VN_PARALLEL_H

#include <stdint.h>

#define VN_PAR_MIN 32768
#define VN_PAR_MACS_PER_ELEMENT 8
#define VN_PAR_MIN_MACS ((int64_t)VN_PAR_MIN * VN_PAR_MACS_PER_ELEMENT)

/* Rows per chunk of the row reductions (BatchNorm statistics, bias gradients). */
#define VN_REDUCE_CHUNK 256

/* Number of chunks of `chunk` items covering n items. */
static inline int64_t vn_chunk_count(int64_t n, int64_t chunk) { return (n + chunk - 1) / chunk; }
/* The items [*lo, *hi) of chunk k. */
static inline void vn_chunk_range(int64_t k, int64_t n, int64_t chunk, int64_t *lo, int64_t *hi)
{
    *lo = k * chunk;
    *hi = *lo + chunk < n ? *lo + chunk : n;
}

/* For one long array (norms, optimizer sweeps): chunks of at least min_len items (rounded up
 * to whole 16-float vectors), at most max_chunks of them; returns the count, *len the length
 * of all but the last. Below min_len items: one chunk. */
static inline int vn_chunk_split(int64_t n, int64_t min_len, int max_chunks, int64_t *len)
{
    if (n <= min_len) {
        *len = n;
        return 1;
    }
    int64_t c = vn_chunk_count(n, min_len);
    if (c > max_chunks) c = max_chunks;
    int64_t l = vn_chunk_count(n, c);
    l = (l + 15) & ~(int64_t)15;
    *len = l;
    return (int)vn_chunk_count(n, l);
}

#endif
