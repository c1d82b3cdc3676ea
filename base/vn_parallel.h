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

#include <stdbool.h>
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

/* The library's own parallel loop (base/pool.c), for the short loops of a training step:
 * fn(arg, lo, hi, tid) is called on disjoint ranges [lo, hi) covering [0, n), on the calling
 * thread and the pool's workers, and vn_par_for returns when all are done. Pieces are taken
 * as threads come, so which thread runs which items depends on timing: an item's result must
 * not depend on the thread or on the range it came in (true of every loop above that is
 * chunked for determinism). tid is below vn_par_threads() and tells threads apart for
 * scratch buffers. Runs everything as fn(arg, 0, n, 0) on the calling thread when `parallel`
 * is false, n < 2, one thread is set, inside another vn_par_for or an OpenMP region, or while
 * another thread's loop runs. Inside fn, OpenMP regions and OpenBLAS (OpenMP build) run on
 * one thread, as inside an OpenMP region: the workers, and the caller while it runs pieces,
 * have an OpenMP thread count of 1. Idle workers yield their core for 0.2 ms, then sleep, so
 * a neighbour process keeps its share. */
typedef void (*vn_par_fn)(void *arg, int64_t lo, int64_t hi, int tid);
void vn_par_for(int64_t n, bool parallel, vn_par_fn fn, void *arg);
/* Threads vn_par_for uses (vn_set_threads's count, else OpenMP's). */
int vn_par_threads(void);
/* Called by vn_set_threads; 0 = follow OpenMP's count. */
void vn_par_set_threads(int n);

#endif
