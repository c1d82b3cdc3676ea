/* The training loop. */
#include "train/vn_trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "optim/vn_grad.h"
#include "optim/vn_schedule.h"
#include "train/vn_metrics.h"
#include "train/vn_progress.h"
#include "base/vn_fs.h"

/* Everything a run holds; torn down by run_free in any state. */
typedef struct run {
    const vn_config *cfg;
    const vn_train_options *opt;
    FILE *out;
    char dir[1024];
    vn_loader *train, *val;
    vn_vanillanet *model;
    vn_vanillanet **emas;
    vn_ema **ema_upd;
    int n_emas;
    vn_optim *optim;
    vn_tensor **params;
    int n_params;
    vn_schedule lr_sched, wd_sched;
    vn_ctx *ctx;
    vn_metrics *metrics;
    vn_progress *progress;
    vn_train_state st;
    int64_t niter_per_ep;     /* optimizer steps per epoch */
    int64_t micro_per_ep;     /* micro-batches used per epoch */
    float *targets;           /* BCE targets built from labels */
    const char *const *classes;
    int n_classes;
    bool resumed;
    unsigned best_mask;       /* bit 0: live model, bit 1 + e: EMA e improved its best */
} run;

static void run_free(run *r)
{
    vn_loader_close(r->train);
    vn_loader_close(r->val);
    for (int i = 0; i < r->n_emas; i++) {
        if (r->ema_upd) vn_ema_destroy(r->ema_upd[i]);
        if (r->emas) vn_vanillanet_destroy(r->emas[i]);
    }
    free(r->emas);
    free(r->ema_upd);
    vn_optim_destroy(r->optim);
    free(r->params);
    vn_vanillanet_destroy(r->model);
    vn_ctx_destroy(r->ctx);
    vn_progress_destroy(r->progress);
    vn_metrics_close(r->metrics, NULL);
    free(r->targets);
}


/* model.init: the default key loads what fits (a plain state_dict, a checkpoint, or a file
 * with another classifier, which then starts fresh); another key (model_ema, ...) takes that
 * copy from a vanilla checkpoint that holds it. */
static int init_weights(vn_vanillanet *model, const vn_config *cfg, vn_error *err)
{
    if (strcmp(cfg->model.init_key, "model") == 0)
        return vn_model_init_from(model, cfg->model.init, err);
    vn_ckpt_info info;
    vn_vanillanet *src = NULL;
    int rc = vn_open_model_key(cfg->model.init, cfg->model.init_key, &src, &info, NULL, err);
    if (rc != VN_OK) return rc;
    rc = vn_state_copy(&model->state, &src->state, err);
    if (rc != VN_OK)
        vn_error_prefix(err, "model.init %s does not fit the configured model: ", cfg->model.init);
    vn_vanillanet_destroy(src);
    vn_ckpt_info_free(&info);
    return rc;
}

static int setup_model(run *r, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    vn_vanillanet_config mc;
    int rc = vn_build_model_config(cfg, r->n_classes, &mc, err);
    if (rc != VN_OK) return rc;
    if (mc.num_classes != r->n_classes)
        return vn_error_set(err, VN_ERR_INVALID, "model.num_classes is %d but %s has %d class "
                            "folders", mc.num_classes, cfg->data.root, r->n_classes);
    int want_ch = cfg->data.grayscale ? 1 : 3;
    if (mc.in_chans != want_ch)
        return vn_error_set(err, VN_ERR_INVALID, "model.in_chans is %d but data.grayscale gives "
                            "%d-channel images", mc.in_chans, want_ch);
    rc = vn_vanillanet_create(&mc, false, &r->model, err);
    if (rc != VN_OK) return rc;
    vn_vanillanet_init(r->model, (uint64_t)cfg->train.seed);
    if (cfg->model.init[0] && (rc = init_weights(r->model, cfg, err)) != VN_OK) return rc;
    /* Parameters in state_dict order. */
    r->params = calloc((size_t)r->model->state.n, sizeof *r->params);
    if (!r->params) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r->model->state.n; i++)
        if (r->model->state.items[i].kind == VN_STATE_PARAM)
            r->params[r->n_params++] = r->model->state.items[i].tensor;

    /* EMA copies: ordinary models following the live one. */
    r->n_emas = cfg->ema.decays.n;
    if (r->n_emas) {
        r->emas = calloc((size_t)r->n_emas, sizeof *r->emas);
        r->ema_upd = calloc((size_t)r->n_emas, sizeof *r->ema_upd);
        if (!r->emas || !r->ema_upd) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    const vn_state_list *sl = &r->model->state;
    for (int e = 0; e < r->n_emas; e++) {
        rc = vn_vanillanet_create(&mc, false, &r->emas[e], err);
        if (rc != VN_OK) return rc;
        const vn_state_list *dl = &r->emas[e]->state;
        int nf = 0;
        vn_tensor **dst = calloc((size_t)sl->n, sizeof *dst), **src = calloc((size_t)sl->n, sizeof *src);
        if (!dst || !src) {
            free(dst);
            free(src);
            return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        }
        for (int i = 0; i < sl->n; i++)
            if (sl->items[i].kind != VN_STATE_COUNT) {
                dst[nf] = dl->items[i].tensor;
                src[nf++] = sl->items[i].tensor;
            }
        char prefix[32];
        snprintf(prefix, sizeof prefix, "ema.%d.", e);
        rc = vn_ema_create(&r->ema_upd[e], cfg->ema.decays.v[e], nf, dst, src, NULL, prefix, err);
        free(dst);
        free(src);
        for (int i = 0; rc == VN_OK && i < sl->n; i++)
            if (sl->items[i].kind == VN_STATE_COUNT)
                rc = vn_ema_add_counter(r->ema_upd[e], sl->items[i].name, dl->items[i].count,
                                        sl->items[i].count, err);
        if (rc != VN_OK) return rc;
    }
    return VN_OK;
}

static int setup_optim(run *r, vn_error *err)
{
    const vn_config_optim *o = &r->cfg->optim;
    vn_optim_config oc;
    vn_build_optim_config(r->cfg, &oc);
    int rc = vn_optim_create(&r->optim, &oc, r->n_params, r->params, NULL, err);
    if (rc != VN_OK) return rc;
    int64_t epochs = r->cfg->train.epochs;
    int64_t ws = o->warmup_steps > 0 ? o->warmup_steps : -1;
    if (o->schedule == VN_CONFIG_SCHEDULE_COSINE)
        vn_schedule_cosine(&r->lr_sched, o->lr, o->min_lr, epochs, r->niter_per_ep, o->warmup_epochs, ws);
    else if (o->schedule == VN_CONFIG_SCHEDULE_STEP)
        vn_schedule_step(&r->lr_sched, o->lr, o->step_gamma, o->step_epochs, epochs, r->niter_per_ep,
                         o->warmup_epochs, ws);
    else
        vn_schedule_constant(&r->lr_sched, o->lr, epochs, r->niter_per_ep, o->warmup_epochs, ws);
    double wd_end = o->weight_decay_end >= 0 ? o->weight_decay_end : o->weight_decay;
    vn_schedule_cosine(&r->wd_sched, o->weight_decay, wd_end, epochs, r->niter_per_ep, 0, -1);
    rc = vn_schedule_check(&r->lr_sched, err);
    if (rc == VN_OK) rc = vn_schedule_check(&r->wd_sched, err);
    if (rc != VN_OK) vn_error_prefix(err, "optim schedule: ");
    return rc;
}

static void set_act(run *r, double act)
{
    r->st.act_learn = act;
    vn_vanillanet_change_act(r->model, (float)act);
    for (int e = 0; e < r->n_emas; e++) vn_vanillanet_change_act(r->emas[e], (float)act);
}

static vn_ckpt_parts parts(run *r)
{
    vn_ckpt_parts p = {r->model, r->optim, r->emas, r->n_emas, &r->st, r->cfg, r->classes,
                       r->n_classes};
    return p;
}

static int prune_checkpoints(run *r)
{
    int64_t keep = r->cfg->output.keep_last;
    if (keep <= 0) return 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/checkpoints", r->dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    char names[256][256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 256)
        if (strncmp(de->d_name, "ckpt-", 5) == 0 && strstr(de->d_name, ".safetensors") &&
            !strstr(de->d_name, ".tmp"))
            snprintf(names[n++], sizeof names[0], "%s", de->d_name);
    closedir(d);
    /* Zero-padded step numbers: name order is age order. */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char t[256];
                memcpy(t, names[i], 256);
                memcpy(names[i], names[j], 256);
                memcpy(names[j], t, 256);
            }
    for (int i = 0; i < n - keep; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p); /* best.safetensors is a separate link and keeps its data */
    }
    return 0;
}

static int save_checkpoint(run *r, bool is_best, vn_train_result *res, vn_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoints/ckpt-s%010lld.safetensors", r->dir, (long long)r->st.step);
    vn_ckpt_parts p = parts(r);
    int rc = vn_ckpt_save(path, &p, err);
    if (rc != VN_OK) return rc;
    snprintf(res->last_ckpt, sizeof res->last_ckpt, "%s", path);
    for (int src = -1; is_best && src < r->n_emas; src++) {
        if (!(r->best_mask & (1u << (src + 1)))) continue;
        char dir[4096], name[64];
        snprintf(dir, sizeof dir, "%s/checkpoints", r->dir);
        vn_best_name(src, name, sizeof name);
        rc = vn_best_link(path, dir, name, &p, err);
        if (rc != VN_OK) return rc;
        if (src < 0) snprintf(res->best_ckpt, sizeof res->best_ckpt, "%s/%s", dir, name);
    }
    r->best_mask = 0;
    prune_checkpoints(r);
    return VN_OK;
}

static vn_tensor *loss_of(run *r, vn_tensor *logits, const vn_batch *b)
{
    return vn_train_loss(r->ctx, r->cfg, logits, b->labels, b->soft_targets, b->size, r->targets);
}

static int evaluate_all(run *r, vn_train_result *res, bool *is_best, vn_error *err)
{
    *is_best = false;
    r->best_mask = 0;
    vn_eval_result ev;
    int rc = vn_evaluate(r->ctx, r->model, r->val, &ev, NULL, err);
    if (rc != VN_OK) return rc;
    if (vn_best_record(&r->st, -1, ev.top1, r->st.epoch)) r->best_mask |= 1u;
    res->last_eval = ev;
    res->evaluated = true;
    const char *names[4] = {"val_top1", "val_top5", "val_loss", "act_learn"};
    double vals[4] = {ev.top1, ev.top5, ev.loss, r->st.act_learn};
    vn_metrics_log(r->metrics, VN_METRICS_EVAL, r->st.epoch, r->st.step, names, vals, 4, NULL);
    vn_progress_message(r->progress, "eval epoch %lld: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%lld images)",
                        (long long)r->st.epoch, ev.top1, ev.top5, ev.loss, (long long)ev.n);
    double best = ev.top1;
    const char *src = "model";
    static const char *ema_src[] = {"ema0", "ema1", "ema2", "ema3", "ema4", "ema5", "ema6", "ema7"};
    for (int e = 0; e < r->n_emas && r->cfg->ema.eval; e++) {
        vn_eval_result ee;
        rc = vn_evaluate(r->ctx, r->emas[e], r->val, &ee, NULL, err);
        if (rc != VN_OK) return rc;
        char k1[32], k5[32], kl[32];
        snprintf(k1, sizeof k1, "ema%d_top1", e);
        snprintf(k5, sizeof k5, "ema%d_top5", e);
        snprintf(kl, sizeof kl, "ema%d_loss", e);
        const char *en[3] = {k1, k5, kl};
        double evals[3] = {ee.top1, ee.top5, ee.loss};
        vn_metrics_log(r->metrics, VN_METRICS_EVAL, r->st.epoch, r->st.step, en, evals, 3, NULL);
        vn_progress_message(r->progress, "eval epoch %lld: EMA %g top-1 %.2f%%  top-5 %.2f%%  loss %.4f",
                            (long long)r->st.epoch, r->cfg->ema.decays.v[e], ee.top1, ee.top5, ee.loss);
        if (e == 0) res->last_ema_top1 = ee.top1;
        if (vn_best_record(&r->st, e, ee.top1, r->st.epoch)) r->best_mask |= 1u << (e + 1);
        if (ee.top1 > best && e < 8) {
            best = ee.top1;
            src = ema_src[e];
        }
    }
    if (best > r->st.best_top1) {
        r->st.best_top1 = best;
        r->st.best_epoch = r->st.epoch;
        snprintf(r->st.best_source, sizeof r->st.best_source, "%s", src);
    }
    *is_best = r->best_mask != 0;
    return VN_OK;
}

static int open_data(run *r, vn_error *err)
{
    char path[4096];
    vn_loader_config lc;
    vn_build_loader_config(r->cfg, true, &lc);
    lc.root = vn_split_path(r->cfg, true, path, sizeof path);
    int rc = vn_loader_open(&lc, &r->train, err);
    if (rc != VN_OK) return rc;
    r->classes = vn_loader_class_names(r->train);
    r->n_classes = vn_loader_num_classes(r->train);
    vn_loader_config ec;
    vn_build_loader_config(r->cfg, false, &ec);
    char vpath[4096];
    ec.root = vn_split_path(r->cfg, false, vpath, sizeof vpath);
    ec.class_names = r->classes;
    ec.n_class_names = r->n_classes;
    ec.num_classes = r->n_classes;
    if (r->cfg->train.eval_every > 0 && access(vpath, F_OK) == 0) {
        rc = vn_loader_open(&ec, &r->val, err);
        if (rc != VN_OK) return rc;
    } else if (r->cfg->train.eval_every > 0) {
        vn_log(VN_LOG_WARN, "no validation folder %s: training without evaluation", vpath);
    }
    int64_t batches = vn_loader_batches_per_epoch(r->train);
    int64_t uf = r->cfg->optim.update_freq;
    r->niter_per_ep = batches / uf;
    r->micro_per_ep = r->niter_per_ep * uf;
    if (r->niter_per_ep < 1)
        return vn_error_set(err, VN_ERR_INVALID, "%s has %lld images: fewer than one optimizer step "
                            "(batch_size %lld x update_freq %lld) per epoch", path,
                            (long long)vn_loader_num_samples(r->train), (long long)r->cfg->train.batch_size,
                            (long long)uf);
    r->targets = malloc((size_t)r->cfg->train.batch_size * (size_t)r->n_classes * sizeof(float));
    if (!r->targets) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    return VN_OK;
}

static int resume(run *r, vn_error *err)
{
    const char *want = r->opt->resume;
    char path[4096];
    if (!want) return VN_OK;
    if (strcmp(want, "auto") == 0) {
        vn_error e2 = {0};
        int rc = vn_ckpt_find_latest(r->dir, path, sizeof path, &e2);
        if (rc == VN_ERR_NOT_FOUND) {
            fprintf(r->out, "resume: no checkpoint in %s yet, starting from scratch\n", r->dir);
            return VN_OK;
        }
        if (rc != VN_OK) return vn_error_set(err, rc, "%s", e2.msg);
    } else {
        snprintf(path, sizeof path, "%s", want);
    }
    vn_ckpt_info info;
    int rc = vn_ckpt_info_read(path, &info, err);
    if (rc != VN_OK) return rc;
    /* The stored config decides, key by key (a newer build's new keys at their defaults
     * do not block a resume). */
    if (info.config_yaml) {
        vn_config *old = malloc(sizeof *old);
        if (!old) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        else rc = vn_config_from_text(old, info.config_yaml, strlen(info.config_yaml), path, err);
        if (rc == VN_OK) {
            rc = vn_config_resume_check(old, r->cfg, r->opt->force, err);
            if (rc != VN_OK)
                vn_error_prefix(err, "%s was written under a different config (resume with --force "
                                "to continue anyway): ", path);
        }
        free(old);
        if (rc != VN_OK) {
            vn_ckpt_info_free(&info);
            return rc;
        }
    }
    vn_ckpt_info_free(&info);
    vn_ckpt_parts p = parts(r);
    rc = vn_ckpt_load(path, &p, err);
    if (rc != VN_OK) return rc;
    set_act(r, r->st.act_learn);
    *vn_ctx_rng(r->ctx) = r->st.rng;
    r->resumed = true;
    fprintf(r->out, "resumed from %s: epoch %lld, position %lld, step %lld\n", path,
            (long long)r->st.epoch, (long long)r->st.position, (long long)r->st.step);
    return VN_OK;
}

/* One optimizer step over update_freq micro-batches. Returns VN_OK, an error, or
 * VN_ERR_NUMERIC when the step was skipped for a non-finite value (skip mode). */
static int train_step(run *r, double *loss_out, int *images, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    int64_t uf = cfg->optim.update_freq;
    double loss_sum = 0;
    bool bad = false;
    *images = 0;
    vn_optim_set_lr(r->optim, vn_schedule_value(&r->lr_sched, r->st.step));
    vn_optim_set_weight_decay(r->optim, vn_schedule_value(&r->wd_sched, r->st.step));
    for (int64_t k = 0; k < uf; k++) {
        vn_batch b;
        int rc = vn_loader_next(r->train, &b, err);
        if (rc != VN_OK) return rc;
        if (b.size == 0) return vn_error_set(err, VN_ERR_STATE, "the loader ended an epoch early");
        vn_ctx_reset(r->ctx);
        vn_tensor *logits = vn_vanillanet_forward(r->ctx, r->model, b.images);
        vn_tensor *loss = loss_of(r, logits, &b);
        if (loss && uf > 1) loss = vn_scale(r->ctx, loss, vn_accum_loss_scale((int)uf));
        if (!loss) {
            vn_loader_release(r->train, &b);
            return vn_error_set(err, vn_ctx_status(r->ctx), "forward: %s", vn_ctx_error(r->ctx));
        }
        double lv = loss->data[0] * (double)uf;
        if (!isfinite(lv)) bad = true;
        if (!bad && vn_backward(r->ctx, loss) != VN_OK) {
            vn_loader_release(r->train, &b);
            return vn_error_set(err, vn_ctx_status(r->ctx), "backward: %s", vn_ctx_error(r->ctx));
        }
        loss_sum += lv;
        *images += b.size;
        r->st.position = b.next_position;
        r->st.micro_step++;
        vn_loader_release(r->train, &b);
        vn_ctx_reset(r->ctx);
    }
    *loss_out = loss_sum / (double)uf;
    int rc = VN_OK;
    if (!bad) {
        double norm = 0;
        if (cfg->optim.clip_grad > 0) {
            norm = vn_clip_grad_norm(r->params, r->n_params, cfg->optim.clip_grad);
            if (!isfinite(norm)) bad = true;
        }
        if (!bad) {
            vn_error e2 = {0};
            rc = vn_optim_step(r->optim, &e2);
            if (rc == VN_ERR_NUMERIC) bad = true;
            else if (rc != VN_OK) return vn_error_set(err, rc, "%s", e2.msg);
        }
    }
    if (vn_optim_zero_grad(r->optim) != VN_OK)
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory for gradient buffers");
    if (bad) return VN_ERR_NUMERIC;
    for (int e = 0; e < r->n_emas; e++) vn_ema_update(r->ema_upd[e]);
    r->st.step++;
    return VN_OK;
}

int vn_train(const vn_config *cfg, const vn_train_options *opt, vn_train_result *res, vn_error *err)
{
    memset(res, 0, sizeof *res);
    run R = {0}, *r = &R;
    r->cfg = cfg;
    r->opt = opt;
    r->out = opt->out ? opt->out : stdout;
    snprintf(r->dir, sizeof r->dir, "%s", cfg->output.dir);
    double t0 = vn_monotonic(), session0 = t0;
    vn_set_threads((int)cfg->train.threads);
    if (cfg->train.device != VN_CONFIG_DEVICE_CPU) return vn_train_device_refuse(cfg, err);

    char ckdir[4096];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", r->dir);
    int rc = vn_mkdirs(ckdir, err);
    if (rc == VN_OK) rc = open_data(r, err);
    if (rc == VN_OK) rc = setup_model(r, err);
    if (rc == VN_OK) rc = setup_optim(r, err);
    if (rc == VN_OK && !(r->ctx = vn_ctx_create())) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    if (rc != VN_OK) goto done;
    res->params = vn_state_numel(&r->model->state, VN_STATE_PARAM);

    memset(&r->st, 0, sizeof r->st);
    r->st.best_top1 = -1;
    r->st.best_model_top1 = -1;
    for (int e = 0; e < VN_TRAIN_MAX_EMAS; e++) r->st.best_ema_top1[e] = -1;
    r->st.act_learn = vn_act_learn_at(cfg, 0);
    vn_rng_seed(&r->st.rng, (uint64_t)cfg->train.seed, 0xd509, 0);
    *vn_ctx_rng(r->ctx) = r->st.rng;
    set_act(r, r->st.act_learn);
    rc = resume(r, err);
    if (rc != VN_OK) goto done;
    char cpath[4096];
    snprintf(cpath, sizeof cpath, "%s/config.yaml", r->dir);
    rc = vn_config_save(cfg, cpath, err);
    static const char *const csv_cols[] = {"train_loss", "val_top1", "val_top5", "val_loss",
                                           "best_top1", "lr", "act_learn", "epoch_seconds"};
    vn_metrics_opts mo = {csv_cols, 8, !cfg->output.tensorboard, NULL, NULL};
    if (rc == VN_OK) rc = vn_metrics_open(r->dir, r->resumed ? r->st.step : -1, &mo, &r->metrics, err);
    vn_progress_opts po = {r->out, (int)cfg->train.log_every, VN_PROGRESS_AUTO, 0, NULL, NULL};
    if (rc == VN_OK) rc = vn_progress_create(&po, &r->progress, err);
    if (rc != VN_OK) goto done;

    const int64_t epochs = cfg->train.epochs, max_steps = cfg->train.max_steps;
    const int64_t B = cfg->train.batch_size;
    bool stop_run = r->st.finished;
    res->already_finished = r->st.finished;
    double wait0 = vn_loader_wait_seconds(r->train);
    while (!stop_run && r->st.epoch < epochs) {
        int64_t epoch = r->st.epoch;
        rc = vn_loader_start_epoch(r->train, epoch, r->st.position, err);
        if (rc != VN_OK) goto done;
        if (cfg->deep_training.update == VN_CONFIG_UPDATE_EPOCH) set_act(r, vn_act_learn_at(cfg, (double)epoch));
        vn_progress_begin_epoch(r->progress, epoch, epochs, r->niter_per_ep);
        double ep_loss = 0, ep_t0 = vn_monotonic();
        int64_t ep_steps = 0;
        while (r->st.position / B < r->micro_per_ep) {
            int64_t step_in_ep = r->st.position / B / cfg->optim.update_freq;
            if (cfg->deep_training.update == VN_CONFIG_UPDATE_ITERATION)
                set_act(r, vn_act_learn_at(cfg, (double)epoch + (double)step_in_ep / (double)r->niter_per_ep));
            double ts = vn_monotonic(), loss = 0;
            int images = 0;
            rc = train_step(r, &loss, &images, err);
            if (rc == VN_ERR_NUMERIC) {
                r->st.skipped_in_row++;
                if (cfg->train.nonfinite == VN_CONFIG_NONFINITE_STOP ||
                    r->st.skipped_in_row > cfg->train.max_skip) {
                    rc = vn_error_set(err, VN_ERR_NUMERIC, "non-finite loss or gradient at epoch %lld, "
                                      "step %lld (lr %.3g); stopped. The last good checkpoint is %s",
                                      (long long)epoch, (long long)r->st.step, vn_optim_lr(r->optim),
                                      res->last_ckpt[0] ? res->last_ckpt : "(none written yet)");
                    goto done;
                }
                vn_log(VN_LOG_WARN, "non-finite loss or gradient at step %lld: step skipped (%lld in a row)",
                       (long long)r->st.step, (long long)r->st.skipped_in_row);
                continue;
            }
            if (rc != VN_OK) goto done;
            r->st.skipped_in_row = 0;
            r->st.rng = *vn_ctx_rng(r->ctx);
            double dt = vn_monotonic() - ts;
            double min_lr, max_lr;
            vn_optim_lr_range(r->optim, &min_lr, &max_lr);
            double wait = vn_loader_wait_seconds(r->train) - wait0;
            const char *names[7] = {"loss", "lr", "act_learn", "grad_norm", "img_per_s", "data_wait_s", "wd"};
            double vals[7] = {loss, max_lr, r->st.act_learn, vn_optim_last_grad_norm(r->optim),
                              dt > 0 ? images / dt : 0, wait, vn_optim_weight_decay(r->optim)};
            vn_metrics_log(r->metrics, VN_METRICS_STEP, epoch, r->st.step, names, vals, 7, NULL);
            vn_progress_stats ps = {loss, max_lr, r->st.act_learn, images};
            vn_progress_step(r->progress, step_in_ep + 1, &ps);
            ep_loss += loss;
            ep_steps++;
            bool at_limit = max_steps > 0 && r->st.step >= max_steps;
            bool stop_signal = opt->stop && *opt->stop;
            bool periodic = cfg->output.save_every_steps > 0 && r->st.step % cfg->output.save_every_steps == 0;
            if (stop_signal || (periodic && !at_limit)) {
                r->st.elapsed += vn_monotonic() - t0;
                t0 = vn_monotonic();
                rc = save_checkpoint(r, false, res, err);
                if (rc != VN_OK) goto done;
            }
            if (stop_signal) {
                vn_progress_message(r->progress, "stopping on signal: checkpoint written");
                res->outcome = VN_TRAIN_INTERRUPTED;
                goto done;
            }
            if (at_limit) {
                stop_run = true;
                break;
            }
        }
        vn_progress_end_epoch(r->progress);
        if (stop_run) break;
        /* End of epoch: evaluate, checkpoint. */
        r->st.epoch++;
        r->st.position = 0;
        bool last = r->st.epoch == epochs, is_best = false;
        bool eval_now = r->val && vn_eval_due(cfg, r->st.epoch - 1, last);
        int64_t ep_done = r->st.epoch - 1;
        r->st.epoch = ep_done; /* evaluations are reported under the epoch they follow */
        if (eval_now) rc = evaluate_all(r, res, &is_best, err);
        r->st.epoch = ep_done + 1;
        if (rc != VN_OK) goto done;
        {
            double lo, hi;
            vn_optim_lr_range(r->optim, &lo, &hi);
            const char *en[8] = {"train_loss", "val_top1", "val_top5", "val_loss", "best_top1", "lr",
                                 "act_learn", "epoch_seconds"};
            double ev[8] = {ep_steps ? ep_loss / (double)ep_steps : NAN,
                            eval_now ? res->last_eval.top1 : NAN, eval_now ? res->last_eval.top5 : NAN,
                            eval_now ? res->last_eval.loss : NAN, r->st.best_top1, hi, r->st.act_learn,
                            vn_monotonic() - ep_t0};
            vn_metrics_log(r->metrics, VN_METRICS_EPOCH, ep_done, r->st.step, en, ev, 8, NULL);
            vn_metrics_flush(r->metrics, NULL);
        }
        r->st.elapsed += vn_monotonic() - t0;
        t0 = vn_monotonic();
        if (last) r->st.finished = true;
        bool save = last || is_best ||
                    (cfg->output.save_every > 0 && r->st.epoch % cfg->output.save_every == 0);
        if (save) rc = save_checkpoint(r, is_best, res, err);
        if (rc != VN_OK) goto done;
        if (opt->stop && *opt->stop) {
            res->outcome = VN_TRAIN_INTERRUPTED;
            goto done;
        }
    }
    if (stop_run) {
        /* train.max_steps reached: evaluate where it stopped and save; a later run with a
         * larger budget resumes from here (max_steps does not change the result). */
        bool is_best = false;
        if (r->val) rc = evaluate_all(r, res, &is_best, err);
        r->st.elapsed += vn_monotonic() - t0;
        t0 = vn_monotonic();
        if (rc == VN_OK) rc = save_checkpoint(r, is_best, res, err);
    }
done:
    r->st.elapsed += vn_monotonic() - t0;
    res->state = r->st;
    res->seconds = vn_monotonic() - session0;
    if (r->train) res->data_wait = vn_loader_wait_seconds(r->train);
    run_free(r);
    return rc;
}
