/* Private to optim/: the optimizer's layout (optim.c sets it up, optim_step.c updates it)
 * and the helpers shared by the optim/ sources. */
#ifndef VN_OPTIM_IMPL_H
#define VN_OPTIM_IMPL_H

#include "autograd/backend.h"
#include "autograd/cuda/vn_optim_args.h"
#include "base/vn_base.h"
#include "base/vn_parallel.h"
#include "optim/vn_optim.h"

/* Work on a tensor of n elements is cut into chunks that depend only on n: at least
 * VN__CHUNK_MIN elements each (so small tensors stay on one thread) and at most
 * VN__MAX_CHUNKS of them. Reductions sum each chunk sequentially in double and then the
 * chunk sums in chunk order, so results do not depend on the thread count. */
#define VN__CHUNK_MIN ((int64_t)16384)
#define VN__MAX_CHUNKS 64

static inline void vn__chunking(int64_t n, int *nchunks, int64_t *chunk)
{
    *nchunks = vn_chunk_split(n, VN__CHUNK_MIN, VN__MAX_CHUNKS, chunk);
}

/* Runs fn(arg, lo, hi) over the chunks of n elements, in parallel when there is more than
 * one. For elementwise updates: each element is written by one call, so the thread count
 * cannot change a byte. */
typedef void (*vn__range_fn)(void *arg, int64_t lo, int64_t hi);
void vn__for_chunks(int64_t n, vn__range_fn fn, void *arg);

/* Sum of squares of x[0..n) in double, sequential within the call (one chunk). */
double vn__sumsq_seq(const float *x, int64_t n);

/* The names of an enum numbered 0..n-1, for its _name and _parse functions. */
typedef struct vn__enum_names {
    const char *const *names;
    int n;
    const char *what;     /* "optimizer": for "unknown optimizer 'x'" */
    const char *expected; /* "sgd, adamw or lamb" */
} vn__enum_names;

/* The name of v, or "?" when v is out of range. */
const char *vn__enum_name(const vn__enum_names *e, int v);
/* *out = the value named s, ignoring case; VN_ERR_INVALID (with the names expected) when s
 * is NULL or no name. */
int vn__enum_parse(const vn__enum_names *e, const char *s, int *out, vn_error *err);

/* malloc'd a + b; NULL on allocation failure. */
char *vn__concat(const char *a, const char *b, const char *c);

/* ---- the optimizer's layout -------------------------------------------------------- */

typedef struct vn__optim_param {
    vn_tensor *t;
    char *name;
    bool decay;
    int layer_id;
    double lr_scale;
    double lr_add; /* added to lr x lr_scale (vn_optim_set_lr_add); 0 unless a trainer sets it */
    float *buf0; /* SGD momentum_buffer, or exp_avg */
    float *buf1; /* exp_avg_sq (AdamW, LAMB) */
} vn__optim_param;

struct vn_optim {
    vn_optim_config cfg;
    int n;
    vn__optim_param *p;
    float *moments; /* one block holding every buf0/buf1, 64-byte aligned per buffer */
    double lr;
    double weight_decay;
    int64_t step;
    double last_grad_norm;
    int n_state;
    char **state_names; /* [n_state]; entry 0 is "optim.step" */
    size_t n_moment_floats; /* floats in `moments` */
    /* Parameters on a CUDA device (optim/optim_cuda.c in the backend module, reached through
     * its table, autograd/backend.h): the moments live there between steps in
     * dev_moments; `moments` is the copy the state functions show. dev_stale: `moments` may
     * have been written through them, so the next device step uploads it first. */
    float *dev_moments;
    bool dev_stale;
    /* The partial sums of a device step, 2 x VN__OPT_PARTS doubles per parameter (the
     * gradient norm's, then LAMB's weight and update norms), on the device and on the host:
     * every parameter's kernels are queued, then one copy and one wait serve them all. */
    double *dev_parts, *host_parts;
    int parts_for; /* the parameters those buffers have room for */
};

/* The lr of a parameter: base x lr_scale, plus lr_add when one is set (the sum is skipped
 * otherwise, so a run without lr_add keeps its bytes). */
static inline double vn__param_lr(const struct vn_optim *opt, const vn__optim_param *prm)
{
    double lr = opt->lr * prm->lr_scale;
    return prm->lr_add != 0.0 ? lr + prm->lr_add : lr;
}

/* The float32 scalars of one parameter's update at the optimizer's current step, computed
 * once for both the CPU kernels (optim_step.c) and the CUDA ones (optim_cuda.c). */
vn__sgd_args vn__sgd_args_of(const vn_optim *opt, const vn__optim_param *prm);
vn__adamw_args vn__adamw_args_of(const vn_optim *opt, const vn__optim_param *prm);
/* clip: the global gradient-norm clip factor (1 when not clipping). */
vn__lamb_args vn__lamb_args_of(const vn_optim *opt, const vn__optim_param *prm, float clip);
/* Whether LAMB scales this update by the trust ratio (weight decay on it, or always_adapt). */
bool vn__lamb_uses_trust(const vn_optim *opt, const vn__lamb_args *a);
/* timm's trust ratio |p| / |update| in float32 from the two sums of squares: 1 where either
 * norm is 0, at most 1 with trust_clip. */
float vn__lamb_trust(const vn_optim_config *cfg, double wsq, double usq);

/* Number of moment buffers per parameter for this configuration (0, 1 or 2). */
int vn__optim_nbuf(const vn_optim_config *cfg);

#endif
