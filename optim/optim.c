/* Optimizer setup: configuration, parameter groups, layer decay, named state.
 * The update kernels live in optim_step.c. */
#include "optim/vn_optim.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "optim/optim_impl.h"

const char *vn__enum_name(const vn__enum_names *e, int v)
{
    return v >= 0 && v < e->n ? e->names[v] : "?";
}

int vn__enum_parse(const vn__enum_names *e, const char *s, int *out, vn_error *err)
{
    for (int i = 0; s && i < e->n; i++)
        if (strcasecmp(s, e->names[i]) == 0) {
            *out = i;
            return VN_OK;
        }
    return vn_error_set(err, VN_ERR_INVALID, "unknown %s '%s' (expected %s)", e->what,
                        s ? s : "(null)", e->expected);
}

static const char *const kind_names[] = {"sgd", "adamw", "lamb"}; /* by vn_optim_kind */
static const vn__enum_names kinds = {kind_names, VN_OPTIM_LAMB + 1, "optimizer",
                                     "sgd, adamw or lamb"};

const char *vn_optim_kind_name(vn_optim_kind kind) { return vn__enum_name(&kinds, (int)kind); }

int vn_optim_kind_parse(const char *s, vn_optim_kind *out, vn_error *err)
{
    int v;
    int rc = vn__enum_parse(&kinds, s, &v, err);
    if (rc == VN_OK) *out = (vn_optim_kind)v;
    return rc;
}

void vn_optim_config_init(vn_optim_config *cfg, vn_optim_kind kind)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->lr = 4e-3;
    cfg->weight_decay = 0.05;
    cfg->momentum = 0.9;
    cfg->dampening = 0.0;
    cfg->nesterov = false;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->bias_correction = true;
    cfg->grad_averaging = true;
    cfg->max_grad_norm = 1.0;
    cfg->trust_clip = false;
    cfg->always_adapt = false;
    cfg->filter_no_decay = true;
    cfg->layer_decay = 1.0;
    cfg->layer_decay_num_layers = 4;
}

static bool finite_nonneg(double x) { return isfinite(x) && x >= 0.0; }

int vn_optim_config_check(const vn_optim_config *c, vn_error *err)
{
    if (!c) return vn_error_set(err, VN_ERR_INVALID, "optimizer config is NULL");
    if (c->kind != VN_OPTIM_SGD && c->kind != VN_OPTIM_ADAMW && c->kind != VN_OPTIM_LAMB)
        return vn_error_set(err, VN_ERR_INVALID, "optimizer: unknown kind %d", (int)c->kind);
    if (!finite_nonneg(c->lr))
        return vn_error_set(err, VN_ERR_INVALID, "optimizer: lr must be >= 0 (got %g)", c->lr);
    if (!finite_nonneg(c->weight_decay))
        return vn_error_set(err, VN_ERR_INVALID, "optimizer: weight_decay must be >= 0 (got %g)",
                            c->weight_decay);
    if (c->kind == VN_OPTIM_SGD) {
        if (!finite_nonneg(c->momentum))
            return vn_error_set(err, VN_ERR_INVALID, "sgd: momentum must be >= 0 (got %g)",
                                c->momentum);
        if (!isfinite(c->dampening))
            return vn_error_set(err, VN_ERR_INVALID, "sgd: dampening must be finite");
        if (c->nesterov && (c->momentum <= 0.0 || c->dampening != 0.0))
            return vn_error_set(err, VN_ERR_INVALID,
                                "sgd: nesterov needs momentum > 0 and dampening 0 "
                                "(got momentum %g, dampening %g)", c->momentum, c->dampening);
    } else {
        if (!(c->beta1 >= 0.0 && c->beta1 < 1.0))
            return vn_error_set(err, VN_ERR_INVALID, "%s: beta1 must be in [0, 1) (got %g)",
                                vn_optim_kind_name(c->kind), c->beta1);
        if (!(c->beta2 >= 0.0 && c->beta2 < 1.0))
            return vn_error_set(err, VN_ERR_INVALID, "%s: beta2 must be in [0, 1) (got %g)",
                                vn_optim_kind_name(c->kind), c->beta2);
        if (!finite_nonneg(c->eps))
            return vn_error_set(err, VN_ERR_INVALID, "%s: eps must be >= 0 (got %g)",
                                vn_optim_kind_name(c->kind), c->eps);
        if (c->kind == VN_OPTIM_LAMB && isnan(c->max_grad_norm))
            return vn_error_set(err, VN_ERR_INVALID, "lamb: max_grad_norm is NaN");
    }
    if (!(isfinite(c->layer_decay) && c->layer_decay > 0.0))
        return vn_error_set(err, VN_ERR_INVALID, "optimizer: layer_decay must be > 0 (got %g)",
                            c->layer_decay);
    if (c->layer_decay != 1.0 && c->layer_decay_num_layers < 0)
        return vn_error_set(err, VN_ERR_INVALID,
                            "optimizer: layer_decay_num_layers must be >= 0 (got %d)",
                            c->layer_decay_num_layers);
    return VN_OK;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

bool vn_param_is_no_decay(const char *name, const vn_tensor *t)
{
    if (t && (t->ndim <= 1 || (t->flags & VN_TENSOR_NO_DECAY))) return true;
    if (name && (ends_with(name, ".bias") || ends_with(name, ".alpha") ||
                 ends_with(name, ".beta")))
        return true;
    return false;
}

int vn_layer_id_vanillanet(const char *name, int num_layers, int *layer_id, vn_error *err)
{
    if (!name) return vn_error_set(err, VN_ERR_INVALID, "layer decay: parameter without name");
    if (strncmp(name, "stem", 4) == 0) {
        *layer_id = 0;
        return VN_OK;
    }
    if (strncmp(name, "stages", 6) == 0) {
        /* The official code takes name.split('.')[1] as the stage index. */
        const char *p = name + 6;
        if (*p != '.' || !isdigit((unsigned char)p[1]))
            return vn_error_set(err, VN_ERR_INVALID,
                                "layer decay: '%s' has no stage index after 'stages.'", name);
        errno = 0;
        char *end = NULL;
        long stage = strtol(p + 1, &end, 10);
        /* The official value table has num_layers + 2 entries, so stage ids up to
         * num_layers are accepted (the last one shares the classifier's scale). */
        if (errno || (*end != '.' && *end != '\0') || stage > (long)num_layers)
            return vn_error_set(err, VN_ERR_INVALID,
                                "layer decay: stage of '%s' is beyond layer_decay_num_layers "
                                "%d (stage indices up to %d)", name, num_layers, num_layers);
        *layer_id = (int)stage + 1;
        return VN_OK;
    }
    if (strncmp(name, "cls", 3) == 0) {
        *layer_id = num_layers + 1;
        return VN_OK;
    }
    return vn_error_set(err, VN_ERR_INVALID,
                        "layer decay: unknown layer name '%s' (expected stem*, stages.<i>.*, cls*)",
                        name);
}

double vn_layer_decay_scale(double layer_decay, int num_layers, int layer_id)
{
    return pow(layer_decay, (double)(num_layers + 1 - layer_id));
}

int vn__optim_nbuf(const vn_optim_config *cfg)
{
    switch (cfg->kind) {
    case VN_OPTIM_SGD: return cfg->momentum != 0.0 ? 1 : 0;
    case VN_OPTIM_ADAMW:
    case VN_OPTIM_LAMB: return 2;
    }
    return 0;
}

static size_t round_floats(int64_t n) { return ((size_t)n + 15) & ~(size_t)15; }

void vn_optim_destroy(vn_optim *opt)
{
    if (!opt) return;
    if (opt->p)
        for (int i = 0; i < opt->n; i++) free(opt->p[i].name);
    free(opt->p);
    if (opt->state_names)
        for (int i = 0; i < opt->n_state; i++) free(opt->state_names[i]);
    free(opt->state_names);
    free(opt->moments);
    /* Only the CUDA step makes device copies (the moments, the partial sums). */
    if (opt->dev_moments || opt->dev_parts || opt->host_parts)
        vn__backend_must(VN_DEVICE_CUDA)->optim_free(opt);
    free(opt);
}

static int build_state_names(vn_optim *opt, int nbuf)
{
    static const char *const sgd_names[] = {"optim.momentum_buffer."};
    static const char *const adam_names[] = {"optim.exp_avg.", "optim.exp_avg_sq."};
    const char *const *prefixes = opt->cfg.kind == VN_OPTIM_SGD ? sgd_names : adam_names;
    opt->n_state = 1 + nbuf * opt->n;
    opt->state_names = calloc((size_t)opt->n_state, sizeof(char *));
    if (!opt->state_names) return VN_ERR_NOMEM;
    opt->state_names[0] = vn__concat("optim.step", NULL, NULL);
    if (!opt->state_names[0]) return VN_ERR_NOMEM;
    int k = 1;
    for (int i = 0; i < opt->n; i++) {
        for (int b = 0; b < nbuf; b++) {
            opt->state_names[k] = vn__concat(prefixes[b], opt->p[i].name, NULL);
            if (!opt->state_names[k]) return VN_ERR_NOMEM;
            k++;
        }
    }
    return VN_OK;
}

/* Checks parameter i against the ones before it and records it with its decay and lr scale. */
static int optim_add_param(vn_optim *opt, const vn_optim_config *cfg, int i, vn_tensor *t,
                           const char *name, vn_error *err)
{
    if (!t || !t->data)
        return vn_error_set(err, VN_ERR_INVALID, "optimizer: parameter %d ('%s') is missing", i,
                            name ? name : "?");
    if (!name || !*name)
        return vn_error_set(err, VN_ERR_INVALID,
                            "optimizer: parameter %d has no name (names key the state)", i);
    for (int j = 0; j < i; j++) {
        if (strcmp(opt->p[j].name, name) == 0)
            return vn_error_set(err, VN_ERR_INVALID,
                                "optimizer: parameter name '%s' appears twice", name);
        if (opt->p[j].t == t)
            return vn_error_set(err, VN_ERR_INVALID, "optimizer: '%s' and '%s' are the same tensor",
                                opt->p[j].name, name);
    }
    vn__optim_param *p = &opt->p[i];
    p->t = t;
    p->name = vn__concat(name, NULL, NULL);
    if (!p->name) return vn_error_set(err, VN_ERR_NOMEM, "optimizer: out of memory");
    p->decay = !(cfg->filter_no_decay && vn_param_is_no_decay(name, t));
    p->layer_id = -1;
    p->lr_scale = 1.0;
    if (cfg->layer_decay != 1.0) {
        int rc = vn_layer_id_vanillanet(name, cfg->layer_decay_num_layers, &p->layer_id, err);
        if (rc) return rc;
        p->lr_scale =
            vn_layer_decay_scale(cfg->layer_decay, cfg->layer_decay_num_layers, p->layer_id);
    }
    return VN_OK;
}

/* One aligned block for all moment buffers, laid out parameter by parameter like the
 * parameters themselves. */
static int optim_alloc_moments(vn_optim *opt, int nbuf, size_t total_floats, vn_error *err)
{
    if (nbuf <= 0 || total_floats == 0) return VN_OK;
    size_t bytes = total_floats * (size_t)nbuf * sizeof(float);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, bytes) != 0) mem = NULL;
    if (!mem)
        return vn_error_set(err, VN_ERR_NOMEM,
                            "optimizer: cannot allocate %zu bytes of moment buffers", bytes);
    memset(mem, 0, bytes);
    opt->moments = mem;
    opt->n_moment_floats = total_floats * (size_t)nbuf;
    float *cur = opt->moments;
    /* Buffers laid out parameter by parameter, like the parameters themselves. */
    for (int i = 0; i < opt->n; i++) {
        opt->p[i].buf0 = cur;
        cur += round_floats(opt->p[i].t->numel);
        if (nbuf > 1) {
            opt->p[i].buf1 = cur;
            cur += round_floats(opt->p[i].t->numel);
        }
    }
    return VN_OK;
}

int vn_optim_create(vn_optim **out, const vn_optim_config *cfg, int n_params,
                    vn_tensor *const *params, const char *const *names, vn_error *err)
{
    if (!out) return vn_error_set(err, VN_ERR_INVALID, "vn_optim_create: out is NULL");
    *out = NULL;
    int rc = vn_optim_config_check(cfg, err);
    if (rc) return rc;
    if (n_params < 0 || (n_params > 0 && !params))
        return vn_error_set(err, VN_ERR_INVALID, "optimizer: no parameter list");

    vn_optim *opt = calloc(1, sizeof *opt);
    if (!opt) return vn_error_set(err, VN_ERR_NOMEM, "optimizer: out of memory");
    opt->cfg = *cfg;
    opt->n = n_params;
    opt->lr = cfg->lr;
    opt->weight_decay = cfg->weight_decay;
    opt->p = calloc((size_t)(n_params ? n_params : 1), sizeof *opt->p);
    if (!opt->p) {
        vn_optim_destroy(opt);
        return vn_error_set(err, VN_ERR_NOMEM, "optimizer: out of memory");
    }

    size_t total_floats = 0;
    for (int i = 0; i < n_params; i++) {
        vn_tensor *t = params[i];
        const char *name = names ? names[i] : (t ? t->name : NULL);
        rc = optim_add_param(opt, cfg, i, t, name, err);
        if (rc) {
            vn_optim_destroy(opt);
            return rc;
        }
        total_floats += round_floats(t->numel);
    }

    int nbuf = vn__optim_nbuf(cfg);
    rc = optim_alloc_moments(opt, nbuf, total_floats, err);
    if (rc) {
        vn_optim_destroy(opt);
        return rc;
    }
    if (build_state_names(opt, nbuf) != VN_OK) {
        vn_optim_destroy(opt);
        return vn_error_set(err, VN_ERR_NOMEM, "optimizer: out of memory");
    }
    *out = opt;
    return VN_OK;
}

const vn_optim_config *vn_optim_get_config(const vn_optim *opt) { return &opt->cfg; }

int vn_optim_set_lr(vn_optim *opt, double lr)
{
    if (!isfinite(lr) || lr < 0.0) return VN_ERR_INVALID;
    opt->lr = lr;
    return VN_OK;
}

int vn_optim_set_lr_add(vn_optim *opt, int i, double add)
{
    if (i < 0 || i >= opt->n || !isfinite(add)) return VN_ERR_INVALID;
    opt->p[i].lr_add = add;
    return VN_OK;
}

void vn_optim_set_momentum(vn_optim *opt, double momentum)
{
    if (opt->cfg.kind == VN_OPTIM_SGD && opt->cfg.momentum > 0.0 && momentum > 0.0 &&
        isfinite(momentum) && !(opt->cfg.nesterov && momentum <= 0.0))
        opt->cfg.momentum = momentum;
}
double vn_optim_lr(const vn_optim *opt) { return opt->lr; }
int vn_optim_set_weight_decay(vn_optim *opt, double wd)
{
    if (!isfinite(wd) || wd < 0.0) return VN_ERR_INVALID;
    opt->weight_decay = wd;
    return VN_OK;
}
double vn_optim_weight_decay(const vn_optim *opt) { return opt->weight_decay; }

void vn_optim_lr_range(const vn_optim *opt, double *min_lr, double *max_lr)
{
    double lo = opt->lr, hi = opt->lr;
    for (int i = 0; i < opt->n; i++) {
        double v = vn__param_lr(opt, &opt->p[i]);
        if (i == 0 || v < lo) lo = v;
        if (i == 0 || v > hi) hi = v;
    }
    if (min_lr) *min_lr = lo;
    if (max_lr) *max_lr = hi;
}

int64_t vn_optim_steps(const vn_optim *opt) { return opt->step; }
double vn_optim_last_grad_norm(const vn_optim *opt) { return opt->last_grad_norm; }
int vn_optim_param_count(const vn_optim *opt) { return opt->n; }

int vn_optim_param_info_at(const vn_optim *opt, int i, vn_optim_param_info *info)
{
    if (i < 0 || i >= opt->n) return VN_ERR_INVALID;
    const vn__optim_param *p = &opt->p[i];
    info->name = p->name;
    info->tensor = p->t;
    info->decay = p->decay;
    info->layer_id = p->layer_id;
    info->lr_scale = p->lr_scale;
    return VN_OK;
}

int vn_optim_state_count(const vn_optim *opt) { return opt->n_state; }

int vn_optim_state_at(const vn_optim *opt, int i, vn_ckpt_entry *e)
{
    if (i < 0 || i >= opt->n_state) return VN_ERR_INVALID;
    /* The moments of device parameters are shown (and may be written) in host memory. */
    if (opt->dev_moments)
        vn__backend_must(VN_DEVICE_CUDA)->optim_moments_to_host((vn_optim *)opt);
    memset(e, 0, sizeof *e);
    e->name = opt->state_names[i];
    if (i == 0) {
        e->dtype = VN_DTYPE_I64;
        e->ndim = 0;
        e->numel = 1;
        e->data = (void *)&opt->step;
        return VN_OK;
    }
    int nbuf = vn__optim_nbuf(&opt->cfg);
    int pi = (i - 1) / nbuf, b = (i - 1) % nbuf;
    const vn__optim_param *p = &opt->p[pi];
    e->dtype = VN_DTYPE_F32;
    e->ndim = p->t->ndim;
    for (int d = 0; d < p->t->ndim; d++) e->shape[d] = p->t->shape[d];
    e->numel = p->t->numel;
    e->data = b == 0 ? p->buf0 : p->buf1;
    return VN_OK;
}

int vn_optim_state_find(const vn_optim *opt, const char *name, vn_ckpt_entry *out,
                        vn_error *err)
{
    for (int i = 0; name && i < opt->n_state; i++)
        if (strcmp(opt->state_names[i], name) == 0) return vn_optim_state_at(opt, i, out);
    return vn_error_set(err, VN_ERR_NOT_FOUND, "optimizer state has no entry '%s'",
                        name ? name : "(null)");
}

int vn_optim_state_loaded(vn_optim *opt, vn_error *err)
{
    if (opt->step < 0)
        return vn_error_set(err, VN_ERR_FORMAT, "optimizer state 'optim.step' is negative (%lld)",
                            (long long)opt->step);
    for (int i = 1; i < opt->n_state; i++) {
        vn_ckpt_entry e;
        vn_optim_state_at(opt, i, &e);
        const float *x = e.data;
        bool second = opt->cfg.kind != VN_OPTIM_SGD && (i - 1) % 2 == 1;
        for (int64_t k = 0; k < e.numel; k++) {
            if (!isfinite(x[k]))
                return vn_error_set(err, VN_ERR_NUMERIC,
                                    "optimizer state '%s': non-finite value at element %lld",
                                    e.name, (long long)k);
            if (second && x[k] < 0.0f)
                return vn_error_set(err, VN_ERR_FORMAT,
                                    "optimizer state '%s': negative second moment at element %lld",
                                    e.name, (long long)k);
        }
    }
    return VN_OK;
}
