/* The library's own parallel loops (vn_par_for, base/vn_parallel.h): a small pool of worker
 * threads that take pieces of a loop as they come.
 *
 * Why not OpenMP for these: a training step runs about a hundred short parallel loops. With
 * libgomp's passive waiting (which a shared machine needs, see vn_runtime_setup) every loop
 * wakes a sleeping thread, about 40-60 us on the 2-core VM, and with a static schedule the
 * caller then waits for that thread: 13% of the Fashion-MNIST model's step. With libgomp's
 * spinning the wake is free, but a spinning thread holds its core against a neighbour.
 *
 * Here a worker that just finished waits by yielding (sched_yield in a loop) for a short while,
 * then sleeps on a futex: alone, the next loop finds it awake; beside a busy process, the
 * yield hands the core over at once. And pieces are claimed, not assigned: the caller starts
 * on the pieces itself, and waits only for pieces a worker has actually taken. A worker that
 * is asleep or descheduled costs nothing; it finds the loop finished when it wakes.
 *
 * The claim word holds the loop's generation (high 32 bits) and the next piece (low 32): a
 * worker claims with a compare-and-swap that checks both, so a late worker can never take a
 * piece of a later loop with an earlier loop's function. The loops' descriptions live in a
 * ring of slots indexed by the generation; a worker reads its slot only after seeing the
 * generation, and runs anything only after its claim succeeded, which proves the slot is its
 * loop's. */
#define _GNU_SOURCE
#include "base/vn_base.h"
#include "base/vn_parallel.h"

#include <linux/futex.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Workers at most (threads - 1); more cores than this share them. */
#define POOL_MAX_WORKERS 255
/* Slots in the ring of loop descriptions. */
#define POOL_SLOTS 64
/* Pieces per thread a loop is cut into: enough to even out a slow or late thread. */
#define POOL_PIECES_PER_THREAD 4
/* How long an idle worker yields before it sleeps (ns). A training step's loops follow each
 * other within microseconds; a pause longer than this (data loading, checkpoints) puts the
 * workers to sleep. */
#define POOL_YIELD_NS 200000

typedef struct {
    _Atomic(vn_par_fn) fn;
    _Atomic(void *) arg;
    _Atomic int64_t n, pieces;
} pool_slot;

static struct {
    pthread_mutex_t grow; /* starting workers */
    atomic_flag busy;     /* one caller's loop at a time; others run theirs alone */
    _Atomic uint64_t word;
    _Atomic uint32_t gen; /* the futex the workers sleep on */
    _Atomic int64_t done; /* pieces finished of the current loop */
    _Atomic int sleepers;
    _Atomic int threads;  /* vn_set_threads's count; 0: not set, OpenMP's */
    _Atomic int active;   /* workers that may claim: threads - 1 */
    _Atomic int started;  /* workers running (grown under `grow`) */
    pool_slot slot[POOL_SLOTS];
} P = {.grow = PTHREAD_MUTEX_INITIALIZER, .busy = ATOMIC_FLAG_INIT};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *a, uint32_t v)
{
    syscall(SYS_futex, (uint32_t *)a, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *a)
{
    syscall(SYS_futex, (uint32_t *)a, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* Runs the pieces of loop g this thread can still claim. */
static void drain(uint32_t g, int tid)
{
    pool_slot *s = &P.slot[g % POOL_SLOTS];
    vn_par_fn fn = atomic_load_explicit(&s->fn, memory_order_relaxed);
    void *arg = atomic_load_explicit(&s->arg, memory_order_relaxed);
    int64_t n = atomic_load_explicit(&s->n, memory_order_relaxed);
    int64_t pieces = atomic_load_explicit(&s->pieces, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(&P.word, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(w >> 32) != g || (int64_t)(uint32_t)w >= pieces) return;
        if (!atomic_compare_exchange_weak_explicit(&P.word, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        int64_t k = (int64_t)(uint32_t)w;
        fn(arg, k * n / pieces, (k + 1) * n / pieces, tid);
        atomic_fetch_add_explicit(&P.done, 1, memory_order_release);
        w = atomic_load_explicit(&P.word, memory_order_acquire);
    }
}

static void *worker(void *p)
{
    const int idx = (int)(intptr_t)p;
    omp_set_num_threads(1); /* OpenMP and OpenBLAS inside a piece: one thread, this one */
    uint32_t seen = atomic_load(&P.gen);
    for (;;) {
        int64_t t0 = now_ns();
        uint32_t g;
        while ((g = atomic_load(&P.gen)) == seen) {
            if (now_ns() - t0 < POOL_YIELD_NS) {
                sched_yield();
                continue;
            }
            atomic_fetch_add(&P.sleepers, 1);
            if (atomic_load(&P.gen) == seen) futex_wait(&P.gen, seen);
            atomic_fetch_sub(&P.sleepers, 1);
            t0 = now_ns();
        }
        seen = g;
        if (idx < atomic_load_explicit(&P.active, memory_order_relaxed)) drain(g, idx + 1);
    }
    return NULL;
}

/* After fork() the child has none of the workers: it starts its own when it needs them. */
static void pool_after_fork(void)
{
    P.started = 0;
    atomic_flag_clear(&P.busy);
    pthread_mutex_init(&P.grow, NULL);
}

static int pool_threads(void)
{
    int t = atomic_load_explicit(&P.threads, memory_order_relaxed);
    if (t <= 0) t = omp_get_max_threads();
    if (t > POOL_MAX_WORKERS + 1) t = POOL_MAX_WORKERS + 1;
    return t < 1 ? 1 : t;
}

/* Starts workers up to threads - 1; returns how many run (fewer when threads cannot start). */
static int pool_grow(int want)
{
    int have = atomic_load_explicit(&P.started, memory_order_acquire);
    if (have >= want) return have;
    static bool atfork_set;
    pthread_mutex_lock(&P.grow);
    if (!atfork_set) {
        pthread_atfork(NULL, NULL, pool_after_fork);
        atfork_set = true;
    }
    while (P.started < want) {
        pthread_attr_t at;
        pthread_t th;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &at, worker, (void *)(intptr_t)P.started);
        pthread_attr_destroy(&at);
        if (rc != 0) break;
        P.started++;
    }
    have = P.started;
    pthread_mutex_unlock(&P.grow);
    return have;
}

void vn_par_set_threads(int n) { atomic_store(&P.threads, n > 0 ? n : 0); }

int vn_par_threads(void) { return pool_threads(); }

void vn_par_for(int64_t n, bool parallel, vn_par_fn fn, void *arg)
{
    if (n <= 0) return;
    int threads = parallel && n > 1 ? pool_threads() : 1;
    /* A loop inside a piece finds `busy` held by its own loop's caller, and runs alone. */
    if (threads <= 1 || omp_in_parallel() ||
        atomic_flag_test_and_set_explicit(&P.busy, memory_order_acquire)) {
        fn(arg, 0, n, 0);
        return;
    }
    int workers = pool_grow(threads - 1);
    if (workers > threads - 1) workers = threads - 1;
    if (workers < 1) {
        atomic_flag_clear_explicit(&P.busy, memory_order_release);
        fn(arg, 0, n, 0);
        return;
    }
    atomic_store_explicit(&P.active, workers, memory_order_relaxed);
    int64_t pieces = (int64_t)(workers + 1) * POOL_PIECES_PER_THREAD;
    if (pieces > n) pieces = n;
    uint32_t g = atomic_load_explicit(&P.gen, memory_order_relaxed) + 1;
    pool_slot *s = &P.slot[g % POOL_SLOTS];
    atomic_store_explicit(&s->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&s->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&s->n, n, memory_order_relaxed);
    atomic_store_explicit(&s->pieces, pieces, memory_order_relaxed);
    atomic_store_explicit(&P.done, 0, memory_order_relaxed);
    atomic_store_explicit(&P.word, (uint64_t)g << 32, memory_order_release);
    atomic_store(&P.gen, g); /* seq_cst: against a worker going to sleep (sleepers) */
    if (atomic_load(&P.sleepers) > 0) futex_wake_all(&P.gen);
    /* The caller's pieces too run OpenMP and OpenBLAS on one thread, as inside a region. */
    int omp_threads = omp_get_max_threads();
    omp_set_num_threads(1);
    drain(g, 0);
    omp_set_num_threads(omp_threads);
    for (int spins = 0; atomic_load_explicit(&P.done, memory_order_acquire) < pieces; spins++) {
        if (spins < 64) cpu_relax();
        else sched_yield();
    }
    atomic_flag_clear_explicit(&P.busy, memory_order_release);
}
