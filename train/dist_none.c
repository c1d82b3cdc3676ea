/* vn_dist in a build without MPI: always one rank; the collectives return their input. */
#include <stdlib.h>

#include "train/vn_dist.h"

struct vn_dist {
    double timeout_s;
};

bool vn_dist_compiled(void) { return false; }

int vn_dist_create(double timeout_s, vn_dist **out, vn_error *err)
{
    *out = NULL;
    if (vn_dist_launched())
        return vn_error_set(err, VN_ERR_UNSUPPORTED, "started by mpirun, but this build has no MPI "
                            "(install libopenmpi-dev and rebuild: meson finds it and builds the "
                            "data-parallel trainer)");
    vn_dist *d = calloc(1, sizeof *d);
    if (!d) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    d->timeout_s = timeout_s;
    *out = d;
    return VN_OK;
}

void vn_dist_destroy(vn_dist *d) { free(d); }
void vn_dist_abort(vn_dist *d, int code) { (void)d, (void)code; }
int vn_dist_rank(const vn_dist *d) { (void)d; return 0; }
int vn_dist_size(const vn_dist *d) { (void)d; return 1; }
int vn_dist_local_size(const vn_dist *d) { (void)d; return 1; }
int vn_dist_local_rank(const vn_dist *d) { (void)d; return 0; }
void vn_dist_set_timeout(vn_dist *d, double timeout_s) { if (d) d->timeout_s = timeout_s; }
double vn_dist_timeout(const vn_dist *d) { return d ? d->timeout_s : 0; }

int vn_dist_iallreduce_f32(vn_dist *d, float *buf, int64_t n, vn_dist_req **req, vn_error *err)
{
    (void)d, (void)buf, (void)n, (void)err;
    *req = NULL;
    return VN_OK;
}

bool vn_dist_test(vn_dist *d, vn_dist_req *req) { (void)d, (void)req; return true; }

int vn_dist_wait(vn_dist *d, vn_dist_req *req, const char *what, vn_error *err)
{
    (void)d, (void)req, (void)what, (void)err;
    return VN_OK;
}

int vn_dist_allreduce_f64(vn_dist *d, double *buf, int64_t n, const char *what, vn_error *err)
{
    (void)d, (void)buf, (void)n, (void)what, (void)err;
    return VN_OK;
}

int vn_dist_allgather_f64(vn_dist *d, const double *send, int64_t n, double *recv,
                          const char *what, vn_error *err)
{
    (void)d, (void)what, (void)err;
    for (int64_t i = 0; i < n; i++) recv[i] = send[i];
    return VN_OK;
}

double vn_dist_wait_seconds(const vn_dist *d) { (void)d; return 0; }
