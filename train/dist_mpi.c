/* vn_dist on MPI (Open MPI 4.1): MPI_COMM_WORLD when launched by mpirun, else one rank
 * without touching MPI at all (a plain `vanilla train` starts no MPI runtime).
 *
 * Waits poll MPI_Test (which is also what makes Open MPI's non-blocking collectives
 * progress) with sleeps growing from 20 us to 1 ms, so a rank waiting on a peer leaves the
 * cores to the peer's computation, and give up after the timeout. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/vn_fs.h"
#include "train/vn_dist.h"

struct vn_dist {
    bool mpi;          /* MPI_Init_thread was called by us */
    int rank, size, local_rank, local_size;
    double timeout_s;
    double wait_s;
};

struct vn_dist_req {
    MPI_Request r;
};

bool vn_dist_compiled(void) { return true; }

static int mpi_fail(vn_error *err, int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    return vn_error_set(err, VN_ERR_IO, "MPI: %s failed: %s", what, msg);
}

int vn_dist_create(double timeout_s, vn_dist **out, vn_error *err)
{
    *out = NULL;
    vn_dist *d = calloc(1, sizeof *d);
    if (!d) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    d->size = d->local_size = 1;
    d->timeout_s = timeout_s;
    if (vn_dist_launched()) {
        int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            free(d);
            return vn_error_set(err, VN_ERR_IO, "MPI_Init_thread failed (code %d)", rc);
        }
        d->mpi = true;
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->size);
        MPI_Comm local;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) ==
            MPI_SUCCESS) {
            MPI_Comm_size(local, &d->local_size);
            MPI_Comm_rank(local, &d->local_rank);
            MPI_Comm_free(&local);
        }
    }
    *out = d;
    return VN_OK;
}

void vn_dist_destroy(vn_dist *d)
{
    if (!d) return;
    if (d->mpi) MPI_Finalize();
    free(d);
}

void vn_dist_abort(vn_dist *d, int code)
{
    if (d && d->mpi && d->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

int vn_dist_rank(const vn_dist *d) { return d ? d->rank : 0; }
int vn_dist_size(const vn_dist *d) { return d ? d->size : 1; }
int vn_dist_local_size(const vn_dist *d) { return d ? d->local_size : 1; }
int vn_dist_local_rank(const vn_dist *d) { return d ? d->local_rank : 0; }
void vn_dist_set_timeout(vn_dist *d, double timeout_s) { if (d) d->timeout_s = timeout_s; }
double vn_dist_timeout(const vn_dist *d) { return d ? d->timeout_s : 0; }
double vn_dist_wait_seconds(const vn_dist *d) { return d ? d->wait_s : 0; }

static bool active(const vn_dist *d) { return d && d->mpi && d->size > 1; }

static int check_count(int64_t n, const char *what, vn_error *err)
{
    if (n < 0 || n > INT_MAX)
        return vn_error_set(err, VN_ERR_INVALID, "MPI: %s of %lld values is beyond one call",
                            what, (long long)n);
    return VN_OK;
}

int vn_dist_iallreduce_f32(vn_dist *d, float *buf, int64_t n, vn_dist_req **req, vn_error *err)
{
    *req = NULL;
    if (!active(d) || n == 0) return VN_OK;
    if (check_count(n, "allreduce", err)) return VN_ERR_INVALID;
    vn_dist_req *q = malloc(sizeof *q);
    if (!q) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &q->r);
    if (rc != MPI_SUCCESS) {
        free(q);
        return mpi_fail(err, rc, "MPI_Iallreduce");
    }
    *req = q;
    return VN_OK;
}

bool vn_dist_test(vn_dist *d, vn_dist_req *req)
{
    if (!req || !active(d)) return true;
    int done = 0;
    MPI_Test(&req->r, &done, MPI_STATUS_IGNORE);
    return done != 0;
}

int vn_dist_wait(vn_dist *d, vn_dist_req *req, const char *what, vn_error *err)
{
    if (!req) return VN_OK;
    double t0 = vn_monotonic(), nap = 20e-6;
    for (;;) {
        int done = 0, rc = MPI_Test(&req->r, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            free(req);
            d->wait_s += vn_monotonic() - t0;
            return mpi_fail(err, rc, what);
        }
        if (done) break;
        double waited = vn_monotonic() - t0;
        if (d->timeout_s > 0 && waited > d->timeout_s)
            /* The request stays with MPI (it cannot be freed while active): the caller ends the
             * job with vn_dist_abort. */
            return vn_error_set(err, VN_ERR_IO, "%s did not complete within %g s (train.dist_timeout): "
                                "another rank died or stopped answering", what, d->timeout_s);
        struct timespec ts = {0, (long)(nap * 1e9)};
        nanosleep(&ts, NULL);
        if (nap < 1e-3) nap *= 2;
    }
    free(req);
    d->wait_s += vn_monotonic() - t0;
    return VN_OK;
}

int vn_dist_allreduce_f64(vn_dist *d, double *buf, int64_t n, const char *what, vn_error *err)
{
    if (!active(d) || n == 0) return VN_OK;
    if (check_count(n, what, err)) return VN_ERR_INVALID;
    vn_dist_req *q = malloc(sizeof *q);
    if (!q) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &q->r);
    if (rc != MPI_SUCCESS) {
        free(q);
        return mpi_fail(err, rc, what);
    }
    return vn_dist_wait(d, q, what, err);
}

int vn_dist_allgather_f64(vn_dist *d, const double *send, int64_t n, double *recv,
                          const char *what, vn_error *err)
{
    if (!active(d)) {
        for (int64_t i = 0; i < n; i++) recv[i] = send[i];
        return VN_OK;
    }
    if (check_count(n * d->size, what, err)) return VN_ERR_INVALID;
    vn_dist_req *q = malloc(sizeof *q);
    if (!q) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = MPI_Iallgather(send, (int)n, MPI_DOUBLE, recv, (int)n, MPI_DOUBLE, MPI_COMM_WORLD, &q->r);
    if (rc != MPI_SUCCESS) {
        free(q);
        return mpi_fail(err, rc, what);
    }
    return vn_dist_wait(d, q, what, err);
}
