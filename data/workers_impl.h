/* Private to data/: runs one job on a few threads, the calling thread among them. Used by
 * the dataset check and the IDX import, whose workers pull items from a shared counter. */
#ifndef VN_DATA_WORKERS_IMPL_H
#define VN_DATA_WORKERS_IMPL_H

#include <pthread.h>

#define VN__MAX_JOB_THREADS 64

/* Runs fn(arg) on `threads` threads (clamped to 1..VN__MAX_JOB_THREADS) and returns when all
 * have finished. A thread that cannot be started is not retried: the others, and the caller,
 * take its share. */
static inline void vn__run_job(void *(*fn)(void *), void *arg, int threads)
{
    if (threads <= 0) threads = 1;
    if (threads > VN__MAX_JOB_THREADS) threads = VN__MAX_JOB_THREADS;
    pthread_t tid[VN__MAX_JOB_THREADS];
    int started = 0;
    for (int t = 1; t < threads; t++)
        if (pthread_create(&tid[started], NULL, fn, arg) == 0) started++;
    fn(arg);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
}

#endif
