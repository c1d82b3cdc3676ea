/* Data-parallel gradients and BatchNorm (see dist_impl.h): one flat buffer cut into buckets
 * that are reduced with non-blocking allreduce as backward makes them final, and the
 * BatchNorm hooks of the autograd context (sync BN, or recorded statistics replayed in the
 * global micro-batch order). MPI itself stays behind vn_dist. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/dist_impl.h"

typedef struct bucket {
    int first, count;    /* parameters order[first .. first + count) */
    int64_t offset, numel;
    int pending;         /* parameters not final yet */
    bool started;
    vn_dist_req *req;
} bucket;

typedef struct bn_entry {
    vn_tensor *rm, *rv;
    int64_t *nbt;
    double momentum;
    int64_t channels;
} bn_entry;

struct vn__dp {
    vn_dist *d;
    vn_ctx *ctx;
    vn_tensor **order;   /* parameters in bucket order (reverse of the given order) */
    bool *ready;
    int *bucket_of;
    int n;
    float *flat;
    bucket *b;
    int nb, next_start, early;
    bool armed, failed;
    char err[512];
    /* BatchNorm */
    bool sync;
    bn_entry *ent;
    int n_ent, cap_ent, cursor, micro;
    bool ent_fixed;
    double *rec, *recv;
    int64_t rec_n, rec_cap, stride;
    float *running; /* host copies of the running statistics for the replay */
    int64_t running_n; /* floats it holds (the stride it was made for) */
    /* NCCL (vn__dp_use_nccl): the gradients are summed in place on the device */
    bool nccl;
    vn_device dev;
    float **bufs;
    int64_t *counts;
    char path[400];
};

static void hook_fail(vn__dp *dp, const char *msg)
{
    if (!dp->failed) snprintf(dp->err, sizeof dp->err, "%s", msg);
    dp->failed = true;
}

const char *vn__dp_hook_error(const vn__dp *dp) { return dp ? dp->err : ""; }
int vn__dp_buckets(const vn__dp *dp) { return dp->nb; }

static int start_bucket(vn__dp *dp, bucket *bk, vn_error *err)
{
    if (dp->nccl) { /* in place on the device, queued after the kernels that made them */
        int k = 0;
        for (int i = bk->first; i < bk->first + bk->count; i++) {
            vn_tensor *p = dp->order[i];
            if (!p->grad && vn_tensor_zero_grad(p) != VN_OK)
                return vn_error_set(err, VN_ERR_NOMEM, "out of memory for a gradient");
            dp->bufs[k] = p->grad;
            dp->counts[k++] = p->numel;
        }
        bk->started = true;
        char msg[400];
        if (vn_device_comm_allreduce(dp->dev, dp->bufs, dp->counts, k, msg, sizeof msg) != VN_OK)
            return vn_error_set(err, VN_ERR_IO, "the gradient allreduce: %s", msg);
        return VN_OK;
    }
    float *dst = dp->flat + bk->offset;
    for (int i = bk->first; i < bk->first + bk->count; i++) {
        vn_tensor *p = dp->order[i];
        /* A gradient on a device comes through host memory (MPI reduces host buffers). */
        if (!p->grad) memset(dst, 0, (size_t)p->numel * sizeof(float));
        else if (vn_tensor_read_grad(p, dst) != VN_OK)
            return vn_error_set(err, VN_ERR_IO, "reading the gradient of a parameter of %lld "
                                "values from its device failed", (long long)p->numel);
        dst += p->numel;
    }
    bk->started = true;
    return vn_dist_iallreduce_f32(dp->d, dp->flat + bk->offset, bk->numel, &bk->req, err);
}

/* Starts, in bucket order, every bucket whose parameters are all final. */
static void start_ready(vn__dp *dp)
{
    while (dp->next_start < dp->nb && dp->b[dp->next_start].pending == 0 && !dp->failed) {
        vn_error e = {0};
        if (start_bucket(dp, &dp->b[dp->next_start], &e) != VN_OK) hook_fail(dp, e.msg);
        dp->next_start++;
        dp->early++;
    }
    for (int i = 0; i < dp->next_start; i++) vn_dist_test(dp->d, dp->b[i].req);
}

static void on_grad_ready(void *user, vn_tensor *param)
{
    vn__dp *dp = user;
    if (!dp->armed) return;
    for (int i = 0; i < dp->n; i++) {
        if (dp->order[i] != param) continue;
        if (!dp->ready[i]) {
            dp->ready[i] = true;
            dp->b[dp->bucket_of[i]].pending--;
            start_ready(dp);
        }
        return;
    }
}

/* ---- BatchNorm hooks ---- */

static int bn_allgather(void *user, const double *send, int64_t n, double *recv)
{
    vn__dp *dp = user;
    vn_error e = {0};
    int rc = vn_dist_allgather_f64(dp->d, send, n, recv, "sync BN statistics", &e);
    if (rc != VN_OK) hook_fail(dp, e.msg);
    return rc;
}

static int bn_allreduce(void *user, double *buf, int64_t n)
{
    vn__dp *dp = user;
    vn_error e = {0};
    int rc = vn_dist_allreduce_f64(dp->d, buf, n, "sync BN backward sums", &e);
    if (rc != VN_OK) hook_fail(dp, e.msg);
    return rc;
}

static bool rec_reserve(vn__dp *dp, int64_t more)
{
    if (dp->rec_n + more <= dp->rec_cap) return true;
    int64_t cap = dp->rec_cap ? dp->rec_cap : 1024;
    while (cap < dp->rec_n + more) cap *= 2;
    double *p = realloc(dp->rec, (size_t)cap * sizeof *p);
    if (!p) return false;
    dp->rec = p;
    dp->rec_cap = cap;
    return true;
}

static void bn_record(void *user, vn_tensor *rm, vn_tensor *rv, int64_t *nbt, double momentum,
                      const double *mean, const double *var, int64_t C)
{
    vn__dp *dp = user;
    if (dp->failed) return;
    if (!dp->ent_fixed && dp->cursor == dp->n_ent) {
        if (dp->n_ent == dp->cap_ent) {
            int cap = dp->cap_ent ? 2 * dp->cap_ent : 64;
            bn_entry *p = realloc(dp->ent, (size_t)cap * sizeof *p);
            if (!p) return hook_fail(dp, "out of memory for the BatchNorm statistics");
            dp->ent = p;
            dp->cap_ent = cap;
        }
        dp->ent[dp->n_ent++] = (bn_entry){rm, rv, nbt, momentum, C};
        dp->stride += 2 * C;
    }
    if (dp->cursor >= dp->n_ent || dp->ent[dp->cursor].rm != rm)
        return hook_fail(dp, "the BatchNorm layers ran in another order than in the first "
                         "micro-batch (data-parallel replay needs a fixed model)");
    if (!rec_reserve(dp, 2 * C)) return hook_fail(dp, "out of memory for the BatchNorm statistics");
    memcpy(dp->rec + dp->rec_n, mean, (size_t)C * sizeof(double));
    memcpy(dp->rec + dp->rec_n + C, var, (size_t)C * sizeof(double));
    dp->rec_n += 2 * C;
    dp->cursor++;
}

/* The running mean and variance of every recorded layer, between the tensors (on their
 * device) and host memory laid out as one record (mean then variance per layer). */
static int running_copy(vn__dp *dp, float *host, bool write, vn_error *err)
{
    for (int e = 0; e < dp->n_ent; e++) {
        const bn_entry *en = &dp->ent[e];
        float *m = host, *v = host + en->channels;
        int rc = write ? vn_tensor_write(en->rm, m) : vn_tensor_read(en->rm, m);
        if (rc == VN_OK) rc = write ? vn_tensor_write(en->rv, v) : vn_tensor_read(en->rv, v);
        if (rc != VN_OK)
            return vn_error_set(err, VN_ERR_IO, "%s the BatchNorm running statistics failed",
                                write ? "writing" : "reading");
        host += 2 * en->channels;
    }
    return VN_OK;
}

int vn__dp_replay_bn(vn__dp *dp, int micro_batches, vn_error *err)
{
    if (dp->sync) return VN_OK;
    if (dp->failed) return vn_error_set(err, VN_ERR_STATE, "%s", dp->err);
    int64_t n = (int64_t)micro_batches * dp->stride, K = vn_dist_size(dp->d);
    if (dp->rec_n != n)
        return vn_error_set(err, VN_ERR_STATE, "BatchNorm statistics of %lld values recorded, "
                            "%lld expected", (long long)dp->rec_n, (long long)n);
    double *recv = realloc(dp->recv, (size_t)(n * K + 1) * sizeof *recv);
    if (!recv) return vn_error_set(err, VN_ERR_NOMEM, "out of memory for the BatchNorm statistics");
    dp->recv = recv;
    int rc = vn_dist_allgather_f64(dp->d, dp->rec, n, recv, "BatchNorm statistics", err);
    if (rc != VN_OK) return rc;
    /* The same arithmetic as the op's own update (autograd/ops_norm.c), on host copies of
     * the running statistics (they may live on a device): read, replayed, written back. The
     * copies are laid out as the records: mean then variance per layer (dp->stride floats). */
    if (dp->running_n < dp->stride) {
        float *p = realloc(dp->running, (size_t)(dp->stride + 1) * sizeof *p);
        if (!p) return vn_error_set(err, VN_ERR_NOMEM, "out of memory for the BatchNorm statistics");
        dp->running = p;
        dp->running_n = dp->stride;
    }
    float *st = dp->running;
    rc = running_copy(dp, st, false, err);
    for (int64_t g = 0; rc == VN_OK && g < (int64_t)micro_batches * K; g++) {
        const double *s = recv + (g % K) * n + (g / K) * dp->stride;
        float *rm = st;
        for (int e = 0; e < dp->n_ent; e++) {
            const bn_entry *en = &dp->ent[e];
            float *rv = rm + en->channels;
            for (int64_t c = 0; c < en->channels; c++) {
                rm[c] = (float)((1.0 - en->momentum) * rm[c] + en->momentum * s[c]);
                rv[c] = (float)((1.0 - en->momentum) * rv[c] + en->momentum * s[en->channels + c]);
            }
            if (en->nbt) (*en->nbt)++;
            s += 2 * en->channels;
            rm += 2 * en->channels;
        }
    }
    if (rc == VN_OK) rc = running_copy(dp, st, true, err);
    return rc;
}

/* ---- the buffer ---- */

static int build_buckets(vn__dp *dp, double bucket_bytes)
{
    int64_t total = 0;
    for (int i = 0; i < dp->n; i++) total += dp->order[i]->numel;
    dp->flat = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    dp->b = calloc((size_t)(dp->n > 0 ? dp->n : 1), sizeof *dp->b);
    if (!dp->flat || !dp->b) return VN_ERR_NOMEM;
    int64_t off = 0;
    for (int i = 0; i < dp->n; i++) {
        bucket *bk = &dp->b[dp->nb];
        if (bk->count == 0) {
            bk->first = i;
            bk->offset = off;
        }
        bk->count++;
        bk->numel += dp->order[i]->numel;
        off += dp->order[i]->numel;
        dp->bucket_of[i] = dp->nb;
        if ((double)bk->numel * sizeof(float) >= bucket_bytes || i == dp->n - 1) dp->nb++;
    }
    return VN_OK;
}

int vn__dp_create(vn_dist *d, vn_ctx *ctx, vn_tensor **params, int n_params, double bucket_bytes,
                  bool sync_bn, vn__dp **out, vn_error *err)
{
    *out = NULL;
    vn__dp *dp = calloc(1, sizeof *dp);
    if (!dp) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    dp->d = d;
    dp->ctx = ctx;
    dp->n = n_params;
    dp->sync = sync_bn;
    dp->order = calloc((size_t)n_params + 1, sizeof *dp->order);
    dp->ready = calloc((size_t)n_params + 1, sizeof *dp->ready);
    dp->bucket_of = calloc((size_t)n_params + 1, sizeof *dp->bucket_of);
    if (!dp->order || !dp->ready || !dp->bucket_of) {
        vn__dp_destroy(dp);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n_params; i++) dp->order[i] = params[n_params - 1 - i];
    if (build_buckets(dp, bucket_bytes) != VN_OK) {
        vn__dp_destroy(dp);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory for the gradient buffer");
    }
    vn_ctx_set_grad_ready(ctx, on_grad_ready, dp);
    vn_bn_hooks h = {vn_dist_size(d), bn_allgather, bn_allreduce, bn_record, dp};
    if (sync_bn) h.record = NULL;
    else h.allgather = NULL, h.allreduce = NULL;
    vn_ctx_set_bn_hooks(ctx, &h);
    *out = dp;
    return VN_OK;
}

void vn__dp_destroy(vn__dp *dp)
{
    if (!dp) return;
    if (dp->ctx) {
        vn_ctx_set_grad_ready(dp->ctx, NULL, NULL);
        vn_ctx_set_bn_hooks(dp->ctx, NULL);
    }
    free(dp->order);
    free(dp->ready);
    free(dp->bucket_of);
    free(dp->flat);
    free(dp->b);
    free(dp->ent);
    free(dp->rec);
    free(dp->recv);
    free(dp->running);
    if (dp->nccl) vn_device_comm_destroy(dp->dev);
    free(dp->bufs);
    free(dp->counts);
    free(dp);
}

const char *vn__dp_path(const vn__dp *dp) { return dp->path; }

/* A 53-bit hash of a device's identity: exact in a double, so ranks can compare theirs with
 * vn_dist_allgather_f64. */
static double uid_hash(const char *s)
{
    return (double)(vn_fnv1a(VN_FNV1A_BASIS, s, strlen(s)) & ((1ull << 53) - 1));
}

int vn__dp_use_nccl(vn__dp *dp, vn_error *err)
{
    vn_dist *d = dp->d;
    const int ranks = vn_dist_size(d), rank = vn_dist_rank(d);
    dp->dev = dp->n > 0 ? dp->order[0]->device : VN_DEVICE_CPU;
    snprintf(dp->path, sizeof dp->path, "through host memory with MPI");
    if (dp->dev == VN_DEVICE_CPU || ranks < 2) return VN_OK;
    /* Every rank takes the same path: each check is agreed on. */
    char why[320] = "";
    const char *env = getenv("VN_NCCL");
    double no = 0;
    if (env && env[0] == '0') {
        snprintf(why, sizeof why, "VN_NCCL=0");
        no = 1;
    } else if (vn_device_comm_available(dp->dev, why, sizeof why) != VN_OK) {
        no = 1;
    }
    double agreed = no;
    int rc = vn_dist_allreduce_f64(d, &agreed, 1, "the NCCL agreement", err);
    if (rc != VN_OK) return rc;
    if (agreed > 0) {
        snprintf(dp->path, sizeof dp->path, "through host memory with MPI (%.300s)",
                 no ? why : "NCCL is missing on another rank");
        return VN_OK;
    }
    char version[64];
    snprintf(version, sizeof version, "%s", why);
    /* NCCL needs a GPU per rank (ranks sharing one are refused). */
    char uid[128];
    double mine = vn_device_uid(dp->dev, uid, sizeof uid) == VN_OK ? uid_hash(uid) : -1 - rank;
    double *all = malloc((size_t)ranks * sizeof *all);
    if (!all) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    rc = vn_dist_allgather_f64(d, &mine, 1, all, "the GPUs of the ranks", err);
    int dup_a = -1, dup_b = -1;
    for (int i = 0; rc == VN_OK && i < ranks && dup_a < 0; i++)
        for (int j = i + 1; j < ranks; j++)
            if (all[i] == all[j]) {
                dup_a = i, dup_b = j;
                break;
            }
    free(all);
    if (rc != VN_OK) return rc;
    if (dup_a >= 0) {
        snprintf(dp->path, sizeof dp->path, "through host memory with MPI (ranks %d and %d share "
                 "a GPU; NCCL needs one GPU per rank)", dup_a, dup_b);
        return VN_OK;
    }
    /* Rank 0 makes the communicator's id; every rank receives it (as doubles, bit for bit). */
    size_t id_size = vn_device_comm_id_size(dp->dev);
    int words = (int)((id_size + 7) / 8) + 1; /* [0]: rank 0 made it */
    double *send = calloc((size_t)words, sizeof *send), *recv = calloc((size_t)words * ranks,
                                                                       sizeof *recv);
    if (!send || !recv) {
        free(send);
        free(recv);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    if (rank == 0) send[0] = vn_device_comm_id(dp->dev, send + 1, why, sizeof why) == VN_OK;
    rc = vn_dist_allgather_f64(d, send, words, recv, "the NCCL id", err);
    bool made = rc == VN_OK && recv[0] > 0;
    int init = VN_ERR_STATE;
    if (made) init = vn_device_comm_init(dp->dev, recv + 1, ranks, rank, why, sizeof why);
    free(send);
    free(recv);
    if (rc != VN_OK) return rc;
    double failed = made && init != VN_OK;
    rc = vn_dist_allreduce_f64(d, &failed, 1, "the NCCL start", err);
    if (rc != VN_OK) return rc;
    if (!made || failed > 0) {
        if (made && init == VN_OK) vn_device_comm_destroy(dp->dev);
        const char *reason = !made ? (rank == 0 ? why : "rank 0 could not make its id")
                             : init != VN_OK ? why : "it failed on another rank";
        snprintf(dp->path, sizeof dp->path, "through host memory with MPI (NCCL did not start: "
                 "%.300s)", reason);
        return VN_OK;
    }
    dp->bufs = calloc((size_t)dp->n + 1, sizeof *dp->bufs);
    dp->counts = calloc((size_t)dp->n + 1, sizeof *dp->counts);
    if (!dp->bufs || !dp->counts) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    dp->nccl = true;
    snprintf(dp->path, sizeof dp->path, "on the GPUs with %s", version);
    return VN_OK;
}

void vn__dp_begin_step(vn__dp *dp)
{
    for (int i = 0; i < dp->n; i++) dp->ready[i] = false;
    for (int i = 0; i < dp->nb; i++) {
        dp->b[i].pending = dp->b[i].count;
        dp->b[i].started = false;
        dp->b[i].req = NULL;
    }
    dp->next_start = dp->early = 0;
    dp->rec_n = 0;
    dp->micro = 0;
    dp->cursor = 0;
}

void vn__dp_arm(vn__dp *dp, bool on)
{
    /* A micro-batch begins: the first one fixes the list of BatchNorm layers. */
    if (dp->micro > 0 || dp->n_ent > 0) dp->ent_fixed = true;
    dp->micro++;
    dp->cursor = 0;
    dp->armed = on;
}

int vn__dp_finish_grads(vn__dp *dp, int *started_early, vn_error *err)
{
    dp->armed = false;
    *started_early = dp->early;
    int rc = dp->failed ? vn_error_set(err, VN_ERR_IO, "%s", dp->err) : VN_OK;
    for (; rc == VN_OK && dp->next_start < dp->nb; dp->next_start++)
        rc = start_bucket(dp, &dp->b[dp->next_start], err);
    if (dp->nccl) {
        char msg[400];
        if (rc == VN_OK &&
            vn_device_comm_wait(dp->dev, vn_dist_timeout(dp->d), msg, sizeof msg) != VN_OK)
            rc = vn_error_set(err, VN_ERR_IO, "rank %d: the gradient allreduce: %s",
                              vn_dist_rank(dp->d), msg);
        return rc;
    }
    for (int i = 0; rc == VN_OK && i < dp->nb; i++) {
        bucket *bk = &dp->b[i];
        rc = vn_dist_wait(dp->d, bk->req, "the gradient allreduce", err);
        bk->req = NULL;
        const float *src = dp->flat + bk->offset;
        for (int j = bk->first; rc == VN_OK && j < bk->first + bk->count; j++) {
            vn_tensor *p = dp->order[j];
            if (!p->grad && vn_tensor_zero_grad(p) != VN_OK)
                rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory for a gradient");
            else if (vn_tensor_write_grad(p, src) != VN_OK)
                rc = vn_error_set(err, VN_ERR_IO, "writing a reduced gradient of %lld values to "
                                  "its device failed", (long long)p->numel);
            src += p->numel;
        }
    }
    return rc;
}

int vn__dist_threads(const vn_config *cfg, const vn_dist *d)
{
    if (cfg->train.threads > 0) return (int)cfg->train.threads;
    int procs = omp_get_num_procs(), avail = vn_available_cores(), local = vn_dist_local_size(d);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (local <= 1) return avail;
    if (online > 0 && procs < online) return avail; /* bound by mpirun: its cores are ours */
    return avail / local > 0 ? avail / local : 1;
}

int vn__dist_agree(vn_dist *d, int rc, const char *what, vn_error *err)
{
    double failed = rc != VN_OK;
    vn_error e2 = {0};
    int arc = vn_dist_allreduce_f64(d, &failed, 1, what, &e2);
    if (rc != VN_OK) return rc;
    if (arc != VN_OK) return vn_error_set(err, arc, "%s", e2.msg);
    if (failed > 0)
        return vn_error_set(err, VN_ERR_STATE, "another rank failed while %s (its own message "
                            "names it)", what);
    return VN_OK;
}
