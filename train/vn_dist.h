/* Data-parallel training across processes: the one module that knows about MPI.
 *
 * A vn_dist is the group of ranks of one training job. Built with MPI (meson finds
 * `dependency('mpi')`) and launched by mpirun, it holds MPI_COMM_WORLD; otherwise (no MPI in
 * the build, or a plain `vanilla train` not started by mpirun) it is rank 0 of 1 and every
 * collective below returns at once with its input unchanged. The trainer calls only these
 * functions and never tests for MPI itself.
 *
 * Collectives are started non-blocking and waited for with a watchdog: a wait that does not
 * finish within the timeout returns VN_ERR_IO with a message naming the rank and the
 * collective (a peer died or hangs); the caller then ends the job with vn_dist_abort, which
 * does not return when there is more than one rank.
 *
 * Every rank must call the collectives in the same order (MPI's rule for collectives on one
 * communicator); the trainer keeps that order fixed. Only the thread that created the
 * vn_dist calls into it (MPI_THREAD_FUNNELED). */
#ifndef VN_DIST_H
#define VN_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vn_dist vn_dist;
typedef struct vn_dist_req vn_dist_req;

/* True when this build can run data-parallel (it was compiled with MPI). */
bool vn_dist_compiled(void);
/* True when the environment says an MPI launcher (mpirun, srun with PMIx) started this
 * process: OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE is set. */
bool vn_dist_launched(void);

/* Joins the job: MPI_Init_thread when launched by mpirun and compiled with MPI, else a
 * group of one. timeout_s bounds every wait (<= 0: wait forever). A launch by mpirun in a
 * build without MPI is an error (each process would train alone, on the same data). */
int vn_dist_create(double timeout_s, vn_dist **out, vn_error *err);
/* Leaves the job (MPI_Finalize). NULL is ignored. */
void vn_dist_destroy(vn_dist *d);
/* Ends every rank of the job with exit code `code` (MPI_Abort); with one rank, returns. */
void vn_dist_abort(vn_dist *d, int code);

/* This rank (0-based), the number of ranks, the ranks on this machine and this rank's number
 * among them (NULL: 0, 1, 1, 0; the local rank picks a rank's GPU). */
int vn_dist_rank(const vn_dist *d);
int vn_dist_size(const vn_dist *d);
int vn_dist_local_size(const vn_dist *d);
int vn_dist_local_rank(const vn_dist *d);
void vn_dist_set_timeout(vn_dist *d, double timeout_s);
/* The timeout of the waits (<= 0: none; NULL: 0). */
double vn_dist_timeout(const vn_dist *d);

/* Starts a sum of n floats over all ranks, in place. *req is NULL when nothing is pending
 * (one rank, n == 0). */
int vn_dist_iallreduce_f32(vn_dist *d, float *buf, int64_t n, vn_dist_req **req, vn_error *err);
/* Lets pending collectives progress; true when req is complete (or NULL). Never blocks. */
bool vn_dist_test(vn_dist *d, vn_dist_req *req);
/* Waits for req (with the watchdog) and frees it. what names it in the timeout message. */
int vn_dist_wait(vn_dist *d, vn_dist_req *req, const char *what, vn_error *err);

/* Blocking (watchdog-bounded) sums of n doubles over all ranks, in place. */
int vn_dist_allreduce_f64(vn_dist *d, double *buf, int64_t n, const char *what, vn_error *err);
/* Gathers n doubles from every rank: recv[r * n + i] = send of rank r (recv holds size * n). */
int vn_dist_allgather_f64(vn_dist *d, const double *send, int64_t n, double *recv,
                          const char *what, vn_error *err);
/* The seconds spent blocked in vn_dist_wait and the blocking collectives so far. */
double vn_dist_wait_seconds(const vn_dist *d);

#ifdef __cplusplus
}
#endif
#endif
