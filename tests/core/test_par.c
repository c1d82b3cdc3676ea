/* vn_par_for (base/pool.c): every item exactly once, thread ids in range, nested and
 * concurrent callers, thread-count changes, fork, and the workers taking part. */
#include "base/vn_base.h"
#include "base/vn_parallel.h"
#include "vn_test.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    _Atomic int *hits;    /* [n]: times each item was run */
    _Atomic int bad_tid;  /* calls with a tid outside [0, threads) */
    _Atomic int bad_range;
    _Atomic int calls;
    _Atomic unsigned tids; /* bit per tid seen (tids < 32) */
    int64_t n;
    int threads;
    int nested; /* each call also runs a nested loop over this many items */
    int sleep_us;
} cover;

static void cover_fn(void *arg, int64_t lo, int64_t hi, int tid);

static void nested_fn(void *arg, int64_t lo, int64_t hi, int tid)
{
    _Atomic int *count = arg;
    /* Nested loops run whole on the calling thread. */
    if (lo != 0 || tid != 0) atomic_fetch_add(count, 1000000);
    atomic_fetch_add(count, (int)(hi - lo));
}

static void cover_fn(void *arg, int64_t lo, int64_t hi, int tid)
{
    cover *c = arg;
    atomic_fetch_add(&c->calls, 1);
    if (tid < 0 || tid >= c->threads) atomic_fetch_add(&c->bad_tid, 1);
    if (lo < 0 || hi > c->n || lo >= hi) atomic_fetch_add(&c->bad_range, 1);
    if (tid >= 0 && tid < 32) atomic_fetch_or(&c->tids, 1u << tid);
    for (int64_t i = lo; i < hi && i >= 0 && i < c->n; i++) atomic_fetch_add(&c->hits[i], 1);
    if (c->nested) {
        _Atomic int count = 0;
        vn_par_for(c->nested, true, nested_fn, &count);
        if (atomic_load(&count) != c->nested) atomic_fetch_add(&c->bad_range, 1);
    }
    if (c->sleep_us) {
        struct timespec ts = {0, (long)c->sleep_us * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Runs one loop over n items and checks that each ran once. */
static void check_cover(int64_t n, int threads, bool parallel, int nested)
{
    cover c = {.n = n, .threads = threads, .nested = nested};
    c.hits = calloc((size_t)(n > 0 ? n : 1), sizeof *c.hits);
    ck_assert_ptr_nonnull(c.hits);
    vn_par_for(n, parallel, cover_fn, &c);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(atomic_load(&c.hits[i]) == 1, "n %lld threads %d: item %lld ran %d times",
                      (long long)n, threads, (long long)i, atomic_load(&c.hits[i]));
    ck_assert_int_eq(atomic_load(&c.bad_tid), 0);
    ck_assert_int_eq(atomic_load(&c.bad_range), 0);
    if (n == 0) ck_assert_int_eq(atomic_load(&c.calls), 0);
    if (!parallel || threads == 1 || n == 1) {
        ck_assert_int_eq(atomic_load(&c.calls), n > 0 ? 1 : 0);
        ck_assert_uint_eq(atomic_load(&c.tids), n > 0 ? 1u : 0u);
    }
    free(c.hits);
}

START_TEST(test_par_covers_every_item_once)
{
    const int64_t sizes[] = {0, 1, 2, 3, 7, 8, 9, 64, 1000, 100003};
    const int threads[] = {1, 2, 3, 4, 7};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        vn_set_threads(threads[t]);
        ck_assert_int_eq(vn_par_threads(), threads[t]);
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            check_cover(sizes[i], threads[t], true, 0);
            check_cover(sizes[i], threads[t], false, 0);
        }
    }
    /* Fewer threads after more: no worker beyond the new count takes a piece. */
    vn_set_threads(2);
    for (int r = 0; r < 50; r++) check_cover(4096, 2, true, 0);
}
END_TEST

START_TEST(test_par_many_short_loops)
{
    /* Back-to-back loops with almost no work: a worker late for one loop must never run a
     * piece of the next with the old loop's function. */
    vn_set_threads(3);
    for (int r = 0; r < 20000; r++) check_cover(1 + r % 13, 3, true, 0);
}
END_TEST

START_TEST(test_par_nested_runs_alone)
{
    vn_set_threads(2);
    for (int r = 0; r < 200; r++) check_cover(64, 2, true, 37);
}
END_TEST

typedef struct {
    int rounds;
    _Atomic int failures;
} caller_arg;

static void *caller(void *p)
{
    caller_arg *a = p;
    for (int r = 0; r < a->rounds; r++) {
        int64_t n = 100 + r % 50;
        cover c = {.n = n, .threads = vn_par_threads()};
        c.hits = calloc((size_t)n, sizeof *c.hits);
        if (!c.hits) {
            atomic_fetch_add(&a->failures, 1);
            continue;
        }
        vn_par_for(n, true, cover_fn, &c);
        for (int64_t i = 0; i < n; i++)
            if (atomic_load(&c.hits[i]) != 1) atomic_fetch_add(&a->failures, 1);
        if (atomic_load(&c.bad_tid) || atomic_load(&c.bad_range)) atomic_fetch_add(&a->failures, 1);
        free(c.hits);
    }
    return NULL;
}

START_TEST(test_par_concurrent_callers)
{
    /* Threads that are not the pool's call at once: one gets the workers, the others run
     * their loops alone; all finish with every item once. */
    vn_set_threads(2);
    enum { CALLERS = 4 };
    pthread_t th[CALLERS];
    caller_arg a = {.rounds = 2000};
    for (int i = 0; i < CALLERS; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, caller, &a), 0);
    for (int i = 0; i < CALLERS; i++) pthread_join(th[i], NULL);
    int failures = atomic_load(&a.failures);
    ck_assert_msg(failures == 0, "%d loops of concurrent callers went wrong", failures);
}
END_TEST

START_TEST(test_par_after_fork)
{
    vn_set_threads(2);
    check_cover(1000, 2, true, 0); /* the parent's workers are running now */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* The child has none of them: it starts its own. */
        cover c = {.n = 5000, .threads = 2};
        c.hits = calloc(5000, sizeof *c.hits);
        if (!c.hits) _exit(2);
        for (int r = 0; r < 100; r++) vn_par_for(5000, true, cover_fn, &c);
        for (int i = 0; i < 5000; i++)
            if (atomic_load(&c.hits[i]) != 100) _exit(1);
        _exit(atomic_load(&c.bad_tid) || atomic_load(&c.bad_range) ? 1 : 0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}
END_TEST

START_TEST(test_par_workers_take_part)
{
    /* Pieces that each take 2 ms: a worker wakes within that time on any machine that runs
     * the suite, so some loop of these sees a second thread. */
    vn_set_threads(2);
    bool shared = false;
    for (int r = 0; r < 50 && !shared; r++) {
        cover c = {.n = 8, .threads = 2, .sleep_us = 2000};
        c.hits = calloc(8, sizeof *c.hits);
        ck_assert_ptr_nonnull(c.hits);
        vn_par_for(8, true, cover_fn, &c);
        for (int i = 0; i < 8; i++) ck_assert_int_eq(atomic_load(&c.hits[i]), 1);
        shared = atomic_load(&c.tids) == 3u;
        free(c.hits);
    }
    ck_assert_msg(shared, "no loop of 50 ran on both threads");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("par");
    TCase *tc = tcase_create("par");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_par_covers_every_item_once);
    tcase_add_test(tc, test_par_many_short_loops);
    tcase_add_test(tc, test_par_nested_runs_alone);
    tcase_add_test(tc, test_par_concurrent_callers);
    tcase_add_test(tc, test_par_after_fork);
    tcase_add_test(tc, test_par_workers_take_part);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
