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

#include "optim/vn_grad.h"
#include "optim/vn_schedule.h"
#include "train/vn_metrics.h"
#include "train/vn_progress.h"
#include "base/vn_fs.h"
#include "train/train_impl.h"
#include "train/dist_impl.h"
#include "train/vn_detect.h"

/* Everything a run holds; torn down by run_free in any state. */
typedef struct run {
    const vn_config *cfg;
    const vn_train_options *opt;
    FILE *out;
    char dir[1024];
    int lock_fd; /* the run folder's lock (rank 0), -1 when not held */
    vn__run_made made; /* the folders this start made (rank 0) */
    char resumed_from[4096]; /* the checkpoint resume loaded ("" when none) */
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
    vn_device device;         /* train.device: model, EMAs, optimizer and step memory */
    int device_index;         /* which of the machine's devices of that kind (local rank) */
    char rank_devices[256];   /* data-parallel on a device: "cuda:0 cuda:1 ..." by rank */
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
    double t0;                /* clock of the last addition to st.elapsed */
    double wait0;             /* the loader's data wait before the loop */
    bool at_limit;            /* train.max_steps reached */
    double ep_loss, ep_t0;    /* the current epoch's loss sum and start */
    int64_t ep_steps;
    /* Data-parallel (dp not NULL only with more than one rank): this rank and the ranks. */
    vn_dist *dist;
    vn__dp *dp;
    int rank, ranks;
    bool stop_agreed;         /* a stop every rank agreed on after the last step */
    FILE *null_out;           /* where ranks other than 0 print (nothing) */
    double comm_wait;         /* seconds the last step waited on the gradient allreduce */
    double dp_wait, dp_step_s; /* this session: allreduce waits and step times, summed */
    int64_t dp_steps;
    int early_buckets;        /* buckets the last step started during backward */
    /* Single-process runs on a device: the epoch's next micro-batch, fetched from the loader
     * and uploaded while the device runs the current one's backward (prefetch_next), so that
     * the host's copy of it overlaps the step. */
    vn_batch next;
    bool has_next;
    int next_rc;              /* the fetch failed: reported when the batch is needed */
    vn_error next_err;
    vn_tensor *xbuf[2];       /* model-lifetime device inputs, used in turn */
    int next_slot;            /* the one next was uploaded into, -1: not uploaded */
    int xcur;                 /* the one the current micro-batch reads, -1: none */
} run;

/* The metric columns, named once: per step, per evaluation, per epoch (the epoch row is also
 * the CSV file's header). */
static const char *const step_cols[] = {"loss", "lr", "act_learn", "grad_norm", "img_per_s",
                                        "data_wait_s", "wd"};
static const char *const eval_cols[] = {"val_top1", "val_top5", "val_loss", "act_learn"};
static const char *const epoch_cols[] = {"train_loss", "val_top1", "val_top5", "val_loss",
                                         "best_top1", "lr", "act_learn", "epoch_seconds"};
#define N_STEP_COLS ((int)(sizeof step_cols / sizeof step_cols[0]))
#define N_EVAL_COLS ((int)(sizeof eval_cols / sizeof eval_cols[0]))
#define N_EPOCH_COLS ((int)(sizeof epoch_cols / sizeof epoch_cols[0]))

/* The stream of the run's generator (seeded with train.seed): fixed, so that a seed gives the
 * same run on every build; changing it changes every run's bytes. */
#define TRAIN_RNG_STREAM 0xd509

static void run_free(run *r)
{
    vn__run_unlock(r->lock_fd);
    if (r->has_next) vn_loader_release(r->train, &r->next);
    vn_tensor_free(r->xbuf[0]);
    vn_tensor_free(r->xbuf[1]);
    vn__dp_destroy(r->dp);
    if (r->null_out) fclose(r->null_out);
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
    /* Each stage's max pool needs a map at least its stride wide: said by key here, not by
     * the pooling op at the first step. */
    if (!mc.ada_pool_enabled) {
        int64_t side = cfg->data.input_size / 4; /* after the 4x4 stride-4 stem */
        for (int i = 0; i < mc.n_stages; i++) {
            if (side < mc.strides[i] || side < 1)
                return vn_error_set(err, VN_ERR_INVALID, "model.strides[%d] is %d but stage %d "
                                    "gets a %lldx%lld map at data.input_size %lld (the stem "
                                    "divides by 4, each stage by its stride): use a larger input "
                                    "or smaller strides", i, mc.strides[i], i, (long long)side,
                                    (long long)side, (long long)cfg->data.input_size);
            side /= mc.strides[i];
        }
    }
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
        vn_state_drop_grads(&r->emas[e]->state); /* never differentiated */
        char prefix[32];
        snprintf(prefix, sizeof prefix, "ema.%d.", e);
        rc = vn_ema_of_state(&r->ema_upd[e], cfg->ema.decays.v[e], sl, &r->emas[e]->state, true,
                             prefix, err);
        if (rc != VN_OK) return rc;
    }
    return VN_OK;
}

/* train.device: the model and its EMA copies (parameters, gradients, BatchNorm buffers) move
 * to the device once they are initialised on the host; the optimizer's moments follow them on
 * its first step there. */
static int place_on_device(run *r, vn_error *err)
{
    if (r->device == VN_DEVICE_CPU) return VN_OK;
    int rc = vn_state_to_device(&r->model->state, r->device, err);
    for (int e = 0; rc == VN_OK && e < r->n_emas; e++)
        rc = vn_state_to_device(&r->emas[e]->state, r->device, err);
    if (rc != VN_OK) vn_error_prefix(err, "train.device: ");
    return rc;
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

/* Keeps the newest output.keep_last checkpoints (the listing resume reads, oldest first). */
static void prune_checkpoints(run *r)
{
    int64_t keep = r->cfg->output.keep_last;
    if (keep <= 0) return;
    char **names = NULL;
    int n = 0;
    vn_error e2 = {0};
    int rc = vn__ckpt_list(r->dir, &names, &n, &e2);
    if (rc == VN_ERR_NOMEM) vn_log(VN_LOG_WARN, "checkpoints not pruned: %s", e2.msg);
    for (int i = 0; i < n - keep; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/checkpoints/%s", r->dir, names[i]);
        unlink(p); /* best.safetensors is a separate link and keeps its data */
    }
    vn__ckpt_list_free(names, n);
}

static int save_checkpoint_rank0(run *r, bool is_best, vn_train_result *res, vn_error *err);

/* Rank 0 writes; every rank waits for it (a rank leaving early would make mpirun end the job
 * while rank 0 still writes) and learns whether it worked. */
static int save_checkpoint(run *r, bool is_best, vn_train_result *res, vn_error *err)
{
    if (!r->dp) return save_checkpoint_rank0(r, is_best, res, err);
    int rc = VN_OK;
    if (r->rank == 0) rc = save_checkpoint_rank0(r, is_best, res, err);
    else
        snprintf(res->last_ckpt, sizeof res->last_ckpt, "%s/checkpoints/ckpt-s%010lld.safetensors",
                 r->dir, (long long)r->st.step);
    double failed = rc != VN_OK;
    vn_error e2 = {0};
    /* Writing a large checkpoint may take longer than a step's collectives. */
    vn_dist_set_timeout(r->dist, 10 * r->cfg->train.dist_timeout);
    int arc = vn_dist_allreduce_f64(r->dist, &failed, 1, "the checkpoint agreement", &e2);
    vn_dist_set_timeout(r->dist, r->cfg->train.dist_timeout);
    if (rc != VN_OK) return rc;
    if (arc != VN_OK) return vn_error_set(err, arc, "%s", e2.msg);
    if (failed > 0) return vn_error_set(err, VN_ERR_IO, "rank 0 could not write the checkpoint of step %lld",
                                        (long long)r->st.step);
    return VN_OK;
}

static int save_checkpoint_rank0(run *r, bool is_best, vn_train_result *res, vn_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoints/ckpt-s%010lld.safetensors", r->dir, (long long)r->st.step);
    vn_ckpt_parts p = parts(r);
    /* A checkpoint that records new bests is written under a temporary name, the best files
     * are linked to it, and only then does it take its name: a kill in between leaves the
     * previous checkpoint the newest, whose resume redoes the epoch and the links (the best
     * files never lag behind the checkpoint that says they were updated). */
    const bool links = is_best && r->best_mask;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int rc = vn_ckpt_save(links ? tmp : path, &p, err);
    if (rc != VN_OK) return rc;
    for (int src = -1; links && src < r->n_emas; src++) {
        if (!(r->best_mask & (1u << (src + 1)))) continue;
        char dir[4096], name[64];
        snprintf(dir, sizeof dir, "%s/checkpoints", r->dir);
        vn_best_name(src, name, sizeof name);
        rc = vn_best_link(tmp, dir, name, &p, err);
        if (rc != VN_OK) {
            unlink(tmp);
            return rc;
        }
        if (src < 0) snprintf(res->best_ckpt, sizeof res->best_ckpt, "%s/%s", dir, name);
    }
    int e = links ? vn_fs_rename_durable(tmp, path) : 0;
    if (e) {
        unlink(tmp);
        return vn_error_set(err, VN_ERR_IO, "%s: cannot rename the checkpoint into place: %s", path,
                            strerror(e));
    }
    snprintf(res->last_ckpt, sizeof res->last_ckpt, "%s", path);
    r->best_mask = 0;
    prune_checkpoints(r);
    return VN_OK;
}

/* The loss value of a micro-batch, read back from the run's device (the one value of a step
 * that the host needs besides the checkpoints). NaN when it cannot be read. */
static double loss_value(vn_tensor *loss)
{
    float v = NAN;
    if (vn_tensor_read(loss, &v) != VN_OK) return NAN;
    return v;
}

static vn_tensor *loss_of(run *r, vn_tensor *logits, const vn_batch *b)
{
    return vn_train_loss(r->ctx, r->cfg, logits, b->labels, b->soft_targets, b->size, r->targets);
}

/* vn_evaluate on this rank's shard of the validation set; with several ranks the counts and
 * loss sums are added over all of them. */
static int eval_model(run *r, vn_vanillanet *m, vn_eval_result *ev, bool stoppable, vn_error *err)
{
    /* stoppable: one process gives up at a stop signal (end_epoch checkpoints, the evaluation
     * runs again on resume); ranks finish the pass, whose shards need not have equal batch
     * counts, and agree on the stop after it. */
    const volatile sig_atomic_t *stop = stoppable && !r->dp ? r->opt->stop : NULL;
    int rc = vn_evaluate_until(r->ctx, m, r->val, ev, NULL, stop, err);
    if (rc != VN_OK || !r->dp) return rc;
    double n = (double)ev->n;
    double v[4] = {round(ev->top1 * n / 100.0), round(ev->top5 * n / 100.0), ev->loss * n, n};
    rc = vn_dist_allreduce_f64(r->dist, v, 4, "the evaluation sums", err);
    if (rc != VN_OK) return rc;
    ev->n = (int64_t)v[3];
    ev->top1 = v[3] > 0 ? 100.0 * v[0] / v[3] : 0;
    ev->top5 = v[3] > 0 ? 100.0 * v[1] / v[3] : 0;
    ev->loss = v[3] > 0 ? v[2] / v[3] : 0;
    return VN_OK;
}

/* Logs EMA copy e's evaluation (emaE_top1, emaE_top5, emaE_loss). */
static void log_ema_eval(run *r, int e, const vn_eval_result *ee)
{
    char k1[32], k5[32], kl[32];
    snprintf(k1, sizeof k1, "ema%d_top1", e);
    snprintf(k5, sizeof k5, "ema%d_top5", e);
    snprintf(kl, sizeof kl, "ema%d_loss", e);
    const char *en[3] = {k1, k5, kl};
    double evals[3] = {ee->top1, ee->top5, ee->loss};
    vn_metrics_log(r->metrics, VN_METRICS_EVAL, r->st.epoch, r->st.step, en, evals, 3, NULL);
    vn_progress_message(r->progress, "eval epoch %lld: EMA %g top-1 %.2f%%  top-5 %.2f%%  loss %.4f",
                        (long long)r->st.epoch, r->cfg->ema.decays.v[e], ee->top1, ee->top5, ee->loss);
}

static int evaluate_all(run *r, vn_train_result *res, bool *is_best, bool stoppable, vn_error *err)
{
    *is_best = false;
    r->best_mask = 0;
    /* Every pass first, then the records: a pass given up at a signal leaves no trace (no
     * metrics row, no best), so that its repetition on resume writes each row once. */
    vn_eval_result ev, ee[VN_TRAIN_MAX_EMAS];
    int n_ema = r->cfg->ema.eval ? r->n_emas : 0;
    int rc = eval_model(r, r->model, &ev, stoppable, err);
    for (int e = 0; rc == VN_OK && e < n_ema; e++) rc = eval_model(r, r->emas[e], &ee[e], stoppable, err);
    if (rc != VN_OK) return rc;
    if (vn_best_record(&r->st, -1, ev.top1, r->st.epoch)) r->best_mask |= 1u;
    res->last_eval = ev;
    res->evaluated = true;
    double vals[N_EVAL_COLS] = {ev.top1, ev.top5, ev.loss, r->st.act_learn};
    vn_metrics_log(r->metrics, VN_METRICS_EVAL, r->st.epoch, r->st.step, eval_cols, vals,
                   N_EVAL_COLS, NULL);
    vn_progress_message(r->progress, "eval epoch %lld: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%lld images)",
                        (long long)r->st.epoch, ev.top1, ev.top5, ev.loss, (long long)ev.n);
    double best = ev.top1;
    int best_src = -1; /* -1: the live model, e: EMA copy e */
    for (int e = 0; e < n_ema; e++) {
        log_ema_eval(r, e, &ee[e]);
        if (e == 0) res->last_ema_top1 = ee[e].top1;
        if (vn_best_record(&r->st, e, ee[e].top1, r->st.epoch)) r->best_mask |= 1u << (e + 1);
        if (ee[e].top1 > best) {
            best = ee[e].top1;
            best_src = e;
        }
    }
    if (best > r->st.best_top1) {
        r->st.best_top1 = best;
        r->st.best_epoch = r->st.epoch;
        if (best_src < 0) snprintf(r->st.best_source, sizeof r->st.best_source, "model");
        else snprintf(r->st.best_source, sizeof r->st.best_source, "ema%d", best_src);
    }
    *is_best = r->best_mask != 0;
    return VN_OK;
}

static int open_data(run *r, vn_error *err)
{
    /* The classifier's BatchNorm sees one value per channel per image (after the pooling):
     * training statistics need two, as in PyTorch. Said here, by key, not at the first step. */
    if (r->cfg->train.batch_size < 2 && !(r->cfg->model.sync_bn && r->ranks > 1))
        return vn_error_set(err, VN_ERR_INVALID, "train.batch_size 1: BatchNorm in training needs "
                            "at least 2 images per batch (per rank, or model.sync_bn with several "
                            "ranks); use 2 or more, with optim.update_freq for a larger effective "
                            "batch");
    char path[4096];
    vn_loader_config lc;
    vn_build_loader_config(r->cfg, true, &lc);
    lc.root = vn_split_path(r->cfg, true, path, sizeof path);
    lc.shard_index = r->rank;
    lc.shard_count = r->ranks;
    /* A single-process run on a device holds one batch more: the one fetched ahead
     * (prefetch_next), so that the workers still run data.prefetch batches ahead. */
    if (r->device != VN_DEVICE_CPU && r->ranks == 1 && lc.prefetch < 64) lc.prefetch++;
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
    ec.shard_index = r->rank;
    ec.shard_count = r->ranks;
    /* data.val_dir "" says: no validation (not the root folder itself). */
    bool want_val = r->cfg->train.eval_every > 0 && r->cfg->data.val_dir[0];
    if (want_val && access(vpath, F_OK) == 0) {
        rc = vn_loader_open(&ec, &r->val, err);
        if (rc != VN_OK) return rc;
    } else if (want_val) {
        vn_log(VN_LOG_WARN, "no validation folder %s: training without evaluation", vpath);
    }
    int64_t batches = vn_loader_batches_per_epoch(r->train);
    int64_t uf = r->cfg->optim.update_freq * r->ranks; /* micro-batches per step, all ranks */
    r->niter_per_ep = batches / uf;
    r->micro_per_ep = r->niter_per_ep * uf;
    if (r->niter_per_ep < 1 && r->ranks > 1)
        return vn_error_set(err, VN_ERR_INVALID, "%s has %lld images: fewer than one optimizer step "
                            "(batch_size %lld x update_freq %lld x %d ranks) per epoch", path,
                            (long long)vn_loader_num_samples(r->train), (long long)r->cfg->train.batch_size,
                            (long long)r->cfg->optim.update_freq, r->ranks);
    if (r->niter_per_ep < 1)
        return vn_error_set(err, VN_ERR_INVALID, "%s has %lld images: fewer than one optimizer step "
                            "(batch_size %lld x update_freq %lld) per epoch", path,
                            (long long)vn_loader_num_samples(r->train), (long long)r->cfg->train.batch_size,
                            (long long)uf);
    r->targets = malloc((size_t)r->cfg->train.batch_size * (size_t)r->n_classes * sizeof(float));
    if (!r->targets) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    return VN_OK;
}

/* <output.dir>/dataset.txt: how many training images the run started with. Kept beside the
 * checkpoints (not in them, whose bytes stay as they are): a resume on a training folder that
 * has gained or lost images since would walk other epochs than the run did. */
static int64_t dataset_record(const run *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/dataset.txt", r->dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long n = -1;
    if (fscanf(f, "train_images %lld", &n) != 1) n = -1;
    fclose(f);
    return n;
}

static int dataset_record_write(const run *r, vn_error *err)
{
    char path[4096], text[96];
    snprintf(path, sizeof path, "%s/dataset.txt", r->dir);
    int n = snprintf(text, sizeof text, "train_images %lld\nclasses %d\n",
                     (long long)vn_loader_num_samples(r->train), r->n_classes);
    vn_fs_remove_stale_tmps(path); /* a run killed while writing it */
    int e = vn_fs_write_atomic(path, text, (size_t)n, false);
    return e ? vn_error_set(err, VN_ERR_IO, "cannot write %s: %s", path, strerror(e)) : VN_OK;
}

/* What a checkpoint refuses to be resumed by, other than its config: another rank count
 * (the steps per epoch, and so the schedule, would change), a training folder of another size
 * or other classes. --force lets the first two go. */
static int resume_refusals(run *r, const vn_ckpt_info *info, const char *path, vn_error *err)
{
    /* The rank count sets the steps per epoch (and so where the schedule is): another count
     * would continue under another schedule and effective batch. */
    int was = info->is_checkpoint && info->state.ranks > 1 ? info->state.ranks : 1;
    if (was != r->ranks && !r->opt->force) {
        long long bu = (long long)r->cfg->train.batch_size * r->cfg->optim.update_freq;
        char how[40] = " (without mpirun)";
        if (was > 1) snprintf(how, sizeof how, " (mpirun -np %d)", was);
        return vn_error_set(err, VN_ERR_STATE, "%s was written by a run of %d rank%s (effective batch "
                          "%lld) and this one has %d (%lld): the steps per epoch, and with them the "
                          "learning-rate schedule, would change; resume with %d rank%s%s, or pass "
                          "--force to continue with %d", path, was, was == 1 ? "" : "s", bu * was,
                          r->ranks, bu * r->ranks, was, was == 1 ? "" : "s", how, r->ranks);
    }
    /* The training folder's size when the run started (dataset.txt beside the checkpoints). */
    int64_t had = dataset_record(r), has = vn_loader_num_samples(r->train);
    if (had >= 0 && had != has && !r->opt->force)
        return vn_error_set(err, VN_ERR_STATE, "the training folder had %lld images when this run "
                          "started (%s/dataset.txt) and has %lld now: the epochs, and where the "
                          "resume continues, would not be the run's; restore the images, or pass "
                          "--force to continue on the new set", (long long)had, r->dir,
                          (long long)has);
    /* The training folder's classes are the checkpoint's, in order (else its classifier and
     * every label would mean other classes). */
    if (info->class_names) {
        int k = 0;
        while (k < info->n_classes && k < r->n_classes && strcmp(info->class_names[k], r->classes[k]) == 0)
            k++;
        if (k < info->n_classes && k < r->n_classes)
            return vn_error_set(err, VN_ERR_STATE, "%s was trained on %d classes and the training "
                                "folder now has %d: class %d is '%s' there and '%s' now (classes "
                                "added, removed or renamed since)", path, info->n_classes,
                                r->n_classes, k, info->class_names[k], r->classes[k]);
        if (k < info->n_classes || k < r->n_classes)
            return vn_error_set(err, VN_ERR_STATE, "%s was trained on %d classes and the training "
                                "folder now has %d (classes added or removed since; class %d is "
                                "'%s')", path, info->n_classes, r->n_classes, k,
                                k < info->n_classes ? info->class_names[k] : r->classes[k]);
    }
    return VN_OK;
}

static int resume(run *r, vn_error *err)
{
    const char *want = r->opt->resume;
    char path[4096];
    if (!want) return vn__fresh_run_check(r->dir, err);
    int prc = vn__resume_path(want, r->dir, r->out, path, sizeof path, err);
    if (prc != VN_OK || !path[0]) return prc;
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
    rc = resume_refusals(r, &info, path, err);
    if (rc != VN_OK) {
        vn_ckpt_info_free(&info);
        return rc;
    }
    vn_ckpt_info_free(&info);
    vn_ckpt_parts p = parts(r);
    rc = vn_ckpt_load(path, &p, err);
    if (rc != VN_OK) return rc;
    set_act(r, r->st.act_learn);
    *vn_ctx_rng(r->ctx) = r->st.rng;
    r->st.ranks = r->ranks; /* the checkpoints from here on are this run's */
    /* A finished run resumed with more epochs (train.epochs raised, --force): not finished;
     * the schedules follow the new config from the step it stopped at. */
    if (r->st.finished && r->st.epoch < r->cfg->train.epochs) r->st.finished = false;
    r->resumed = true;
    snprintf(r->resumed_from, sizeof r->resumed_from, "%s", path);
    fprintf(r->out, "resumed from %s: epoch %lld, position %lld, step %lld\n", path,
            (long long)r->st.epoch, (long long)r->st.position, (long long)r->st.step);
    return VN_OK;
}

static int apply_update(run *r, bool bad, vn_error *err);

/* Device runs: after batch b's backward is queued, fetches the epoch's next micro-batch and
 * uploads it into the device input the current one does not read; the device runs it after
 * the work queued before (backward), and the next train_step takes it instead of asking the
 * loader. The position of the run still advances as micro-batches are used, so a checkpoint
 * or a stop in between loses nothing (the loader starts again at the position on resume). A
 * failed fetch is kept and reported by the step that needs the batch, as without prefetch. */
static void prefetch_next(run *r, const vn_batch *b)
{
    const int64_t B = r->cfg->train.batch_size;
    /* (open_data gave the loader a buffer for it: the loader counts the held batches.) */
    if (r->device == VN_DEVICE_CPU || r->dp || r->has_next || r->next_rc != VN_OK ||
        b->next_position / B >= r->micro_per_ep)
        return;
    vn_batch nb;
    int rc = vn_loader_next(r->train, &nb, &r->next_err);
    if (rc == VN_OK && nb.size == 0)
        rc = vn_error_set(&r->next_err, VN_ERR_STATE, "the loader ended an epoch early");
    if (rc != VN_OK) {
        r->next_rc = rc;
        return;
    }
    const int slot = r->xcur == 0 ? 1 : 0;
    vn_tensor *x = r->xbuf[slot], *img = nb.images;
    if (!x || !vn_tensor_same_shape(x, img)) {
        vn_tensor_free(x);
        x = r->xbuf[slot] = vn_tensor_new(img->ndim, img->shape, false);
        if (x && vn_tensor_to_device(x, r->device) != VN_OK) {
            vn_tensor_free(x);
            x = r->xbuf[slot] = NULL;
        }
    }
    /* A failed upload is not fatal: the batch is then uploaded as without prefetch. */
    r->next_slot = x && vn_tensor_upload(x, img->data) == VN_OK ? slot : -1;
    r->next = nb;
    r->has_next = true;
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
    int src = vn__set_schedules(r->optim, &r->lr_sched, &r->wd_sched, r->st.step, err);
    if (src != VN_OK) return src;
    for (int64_t k = 0; k < uf; k++) {
        vn_batch b;
        vn_tensor *pre = NULL; /* the prefetched device input */
        if (r->has_next) {
            b = r->next;
            r->has_next = false;
            r->xcur = r->next_slot;
            if (r->xcur >= 0) pre = r->xbuf[r->xcur];
        } else if (r->next_rc != VN_OK) {
            int rc = r->next_rc;
            r->next_rc = VN_OK;
            *err = r->next_err;
            return rc;
        } else {
            int rc = vn_loader_next(r->train, &b, err);
            if (rc != VN_OK) return rc;
            if (b.size == 0) return vn_error_set(err, VN_ERR_STATE, "the loader ended an epoch early");
            r->xcur = -1;
        }
        vn_ctx_reset(r->ctx);
        vn_tensor *x = pre ? pre : vn_ctx_upload(r->ctx, b.images);
        vn_tensor *logits = x ? vn_vanillanet_forward(r->ctx, r->model, x) : NULL;
        vn_tensor *loss = loss_of(r, logits, &b);
        if (loss && uf > 1) loss = vn_scale(r->ctx, loss, vn_accum_loss_scale((int)uf));
        if (!loss) {
            vn_loader_release(r->train, &b);
            return vn_error_set(err, vn_ctx_status(r->ctx), "forward: %s", vn_ctx_error(r->ctx));
        }
        double lv = loss_value(loss) * (double)uf;
        if (!isfinite(lv)) bad = true;
        if (!bad && vn_backward(r->ctx, loss) != VN_OK) {
            vn_loader_release(r->train, &b);
            return vn_error_set(err, vn_ctx_status(r->ctx), "backward: %s", vn_ctx_error(r->ctx));
        }
        prefetch_next(r, &b);
        loss_sum += lv;
        *images += b.size;
        r->st.position = b.next_position;
        r->st.micro_step++;
        vn_loader_release(r->train, &b);
        vn_ctx_reset(r->ctx);
    }
    *loss_out = loss_sum / (double)uf;
    return apply_update(r, bad, err);
}

/* After the gradients of a step are in: clipping, the optimizer, zeroing, EMA. */
static int apply_update(run *r, bool bad, vn_error *err)
{
    const vn_config *cfg = r->cfg;
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

/* One micro-batch of a data-parallel step: forward, loss scaled by 1 / (update_freq x ranks),
 * backward (always, even for a non-finite loss: every rank must take part in the same
 * collectives). *lv receives the unscaled loss. */
static int dp_micro(run *r, int64_t k, double *lv, int *images, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    const int64_t G = cfg->optim.update_freq * r->ranks;
    vn_batch b;
    int rc = vn_loader_next(r->train, &b, err);
    if (rc != VN_OK) return rc;
    if (b.size == 0) return vn_error_set(err, VN_ERR_STATE, "the loader ended an epoch early");
    vn_ctx_reset(r->ctx);
    /* Dropout masks drawn per global micro-batch, whichever rank takes it. */
    vn_rng_seed(vn_ctx_rng(r->ctx), (uint64_t)cfg->train.seed, TRAIN_RNG_STREAM + 1,
                (uint64_t)(r->st.micro_step + k * r->ranks + r->rank));
    vn__dp_arm(r->dp, k == cfg->optim.update_freq - 1);
    vn_tensor *x = vn_ctx_upload(r->ctx, b.images);
    vn_tensor *logits = x ? vn_vanillanet_forward(r->ctx, r->model, x) : NULL;
    vn_tensor *loss = loss_of(r, logits, &b);
    if (loss) loss = vn_scale(r->ctx, loss, vn_accum_loss_scale((int)G));
    if (loss) {
        *lv = loss_value(loss) * (double)G;
        vn_backward(r->ctx, loss);
    }
    rc = vn_ctx_status(r->ctx);
    if (rc != VN_OK) {
        const char *hook = vn__dp_hook_error(r->dp);
        vn_error_set(err, rc, "%s", hook[0] ? hook : vn_ctx_error(r->ctx));
    }
    *images += b.size;
    vn_loader_release(r->train, &b);
    vn_ctx_reset(r->ctx);
    return rc;
}

/* A data-parallel optimizer step: this rank's micro-batches (global ones rank, rank + K, ...
 * of the step), the gradient buckets reduced (started during the last backward), the
 * BatchNorm running statistics replayed in global order, then one small allreduce that
 * agrees on the loss, the images, a non-finite value and a stop request; the update is then
 * the same on every rank. */
static int train_step_dp(run *r, double *loss_out, int *images, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    const int64_t uf = cfg->optim.update_freq, G = uf * r->ranks;
    double loss_sum = 0;
    bool bad = false;
    *images = 0;
    int src = vn__set_schedules(r->optim, &r->lr_sched, &r->wd_sched, r->st.step, err);
    if (src != VN_OK) return src;
    vn__dp_begin_step(r->dp);
    for (int64_t k = 0; k < uf; k++) {
        double lv = NAN;
        int rc = dp_micro(r, k, &lv, images, err);
        if (rc != VN_OK) return rc;
        if (!isfinite(lv)) bad = true;
        loss_sum += lv;
    }
    double w0 = vn_dist_wait_seconds(r->dist);
    int rc = vn__dp_finish_grads(r->dp, &r->early_buckets, err);
    r->comm_wait = vn_dist_wait_seconds(r->dist) - w0;
    if (rc == VN_OK) rc = vn__dp_replay_bn(r->dp, (int)uf, err);
    double v[4] = {bad ? 0 : loss_sum, (double)*images, bad, r->opt->stop && *r->opt->stop};
    if (rc == VN_OK) rc = vn_dist_allreduce_f64(r->dist, v, 4, "the step agreement", err);
    if (rc != VN_OK) return rc;
    bad = v[2] > 0;
    r->stop_agreed = v[3] > 0;
    *loss_out = bad ? NAN : v[0] / (double)G;
    *images = (int)v[1];
    r->st.position += G * cfg->train.batch_size;
    r->st.micro_step += G;
    return apply_update(r, bad, err);
}

/* The clock of the run, kept in st.elapsed across sessions. */
static void add_elapsed(run *r)
{
    double now = vn_monotonic();
    r->st.elapsed += now - r->t0;
    r->t0 = now;
}

static void init_state(run *r)
{
    memset(&r->st, 0, sizeof r->st);
    r->st.best_top1 = -1;
    r->st.best_model_top1 = -1;
    for (int e = 0; e < VN_TRAIN_MAX_EMAS; e++) r->st.best_ema_top1[e] = -1;
    r->st.act_learn = vn_act_learn_at(r->cfg, 0);
    r->st.ranks = r->ranks;
    vn_rng_seed(&r->st.rng, (uint64_t)r->cfg->train.seed, TRAIN_RNG_STREAM, 0);
    *vn_ctx_rng(r->ctx) = r->st.rng;
    set_act(r, r->st.act_learn);
}

/* Data-parallel: every rank must train the same config (a copy edited on one machine would
 * average the gradients of different runs). Compares the hash of the keys that change results;
 * --force on every rank lets it go with a warning (experiments), never different model sizes
 * (same_params). */
static int same_config(run *r, vn_error *err)
{
    uint64_t h = vn_config_hash(r->cfg);
    double mine[3] = {(double)(h >> 32), (double)(h & 0xffffffffu), r->opt->force ? 1.0 : 0.0};
    double *all = calloc((size_t)r->ranks * 3, sizeof *all);
    if (!all) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = vn_dist_allgather_f64(r->dist, mine, 3, all, "the config check", err);
    bool forced = true;
    for (int k = 0; k < r->ranks; k++) forced = forced && all[3 * k + 2] != 0;
    for (int k = 1; rc == VN_OK && k < r->ranks; k++) {
        if (all[3 * k] == all[0] && all[3 * k + 1] == all[1]) continue;
        char msg[400];
        snprintf(msg, sizeof msg, "rank %d runs another config than rank 0 (config hash "
                 "%08llx%08llx against %08llx%08llx)", k, (unsigned long long)all[3 * k],
                 (unsigned long long)all[3 * k + 1], (unsigned long long)all[0],
                 (unsigned long long)all[1]);
        if (forced) {
            if (r->rank == 0) vn_log(VN_LOG_WARN, "%s; going on (--force)", msg);
            continue;
        }
        rc = vn_error_set(err, VN_ERR_STATE, "%s: every rank must train the same config files and "
                          "--set options; compare `vanilla config show` on the machines (--force "
                          "on every rank goes on anyway)", msg);
    }
    free(all);
    return rc;
}

/* Data-parallel: the same parameters on every rank, or the gradient exchange would mix
 * buffers of different sizes. Called by every rank after the model is built. */
static int same_params(run *r, vn_error *err)
{
    double mine = 0, *all = calloc((size_t)r->ranks, sizeof *all);
    if (!all) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r->n_params; i++) mine += (double)r->params[i]->numel;
    mine = mine * 4096 + r->n_params; /* values and tensors, exact in a double here */
    int rc = vn_dist_allgather_f64(r->dist, &mine, 1, all, "the model check", err);
    for (int k = 1; rc == VN_OK && k < r->ranks; k++)
        if (all[k] != all[0])
            rc = vn_error_set(err, VN_ERR_STATE, "rank %d builds another model than rank 0 (%.0f "
                              "against %.0f parameters): every rank must train the same model",
                              k, floor(all[k] / 4096), floor(all[0] / 4096));
    free(all);
    return rc;
}

/* Every rank starts from the same step (they resumed from the same checkpoint: output.dir
 * must be the same folder for all of them, on a shared file system across machines). */
static int same_start(run *r, int rc, vn_error *err)
{
    rc = vn__dist_agree(r->dist, rc, "resuming", err);
    if (rc != VN_OK) return rc;
    double mine = (double)r->st.step, *all = calloc((size_t)r->ranks, sizeof *all);
    if (!all) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    rc = vn_dist_allgather_f64(r->dist, &mine, 1, all, "the resume check", err);
    for (int k = 0; rc == VN_OK && k < r->ranks; k++)
        if (all[k] != all[0])
            rc = vn_error_set(err, VN_ERR_STATE, "rank %d starts at step %.0f but rank 0 at step %.0f: "
                              "every rank must see the same output.dir (a shared folder across "
                              "machines)", k, all[k], all[0]);
    free(all);
    return rc;
}

/* Data-parallel on a device: the device of every rank, for the run's header (each rank takes
 * its local rank's device; the list shows a machine with fewer devices than ranks). */
static int gather_devices(run *r, vn_error *err)
{
    r->rank_devices[0] = '\0';
    if (r->device == VN_DEVICE_CPU) return VN_OK;
    double mine = r->device_index, *all = calloc((size_t)r->ranks, sizeof *all);
    if (!all) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = vn_dist_allgather_f64(r->dist, &mine, 1, all, "the devices of the ranks", err);
    size_t len = 0;
    for (int k = 0; rc == VN_OK && k < r->ranks && len + 24 < sizeof r->rank_devices; k++)
        len += (size_t)snprintf(r->rank_devices + len, sizeof r->rank_devices - len, "%s%s:%d",
                                k ? " " : "", vn_device_name(r->device), (int)all[k]);
    if (rc == VN_OK && len + 24 >= sizeof r->rank_devices)
        snprintf(r->rank_devices + len, sizeof r->rank_devices - len, " ...");
    free(all);
    return rc;
}

static void print_dp(run *r)
{
    const vn_config *cfg = r->cfg;
    long long B = (long long)cfg->train.batch_size, u = (long long)cfg->optim.update_freq;
    fprintf(r->out, "data-parallel: %d ranks (%d on this machine, %d threads each), effective batch "
            "%lld x %lld x %d = %lld, %d gradient buckets of about %g MB, BatchNorm %s\n", r->ranks,
            vn_dist_local_size(r->dist), vn_get_threads(), B, u, r->ranks, B * u * r->ranks, vn__dp_buckets(r->dp),
            cfg->train.dist_bucket_mb, cfg->model.sync_bn ? "synchronised (sync_bn)" : "per rank");
    if (r->rank_devices[0])
        fprintf(r->out, "data-parallel devices by rank: %s; gradients reduced %s\n",
                r->rank_devices, vn__dp_path(r->dp));
}

/* The run's shape, once at the start: what a user checks first (the official script prints
 * the same), and a warning when deep training cannot finish within the run. */
static void print_start(run *r, const vn_train_result *res)
{
    const vn_config *cfg = r->cfg;
    const int64_t B = cfg->train.batch_size, uf = cfg->optim.update_freq, E = cfg->train.epochs;
    char split[4096];
    fprintf(r->out, "data:  %lld training images in %d classes (%s)",
            (long long)vn_loader_num_samples(r->train), r->n_classes,
            vn_split_path(cfg, true, split, sizeof split));
    if (r->val) fprintf(r->out, ", %lld validation images", (long long)vn_loader_num_samples(r->val));
    fprintf(r->out, "\nsteps: %lld per epoch of %lld images (batch %lld x update_freq %lld",
            (long long)r->niter_per_ep, (long long)(B * uf * r->ranks), (long long)B, (long long)uf);
    if (r->ranks > 1) fprintf(r->out, " x %d ranks", r->ranks);
    bool mixing = cfg->data.mixup > 0 || cfg->data.cutmix > 0;
    fprintf(r->out, "), %lld epochs\nmodel: ", (long long)E);
    if (res->params >= 1000000) fprintf(r->out, "%.2fM parameters", (double)res->params / 1e6);
    else fprintf(r->out, "%lld parameters", (long long)res->params);
    fprintf(r->out, "; loss %s", vn_train_loss_name(cfg, mixing));
    if (mixing) fprintf(r->out, " (mixup %g, cutmix %g)", cfg->data.mixup, cfg->data.cutmix);
    if (cfg->loss.smoothing > 0) fprintf(r->out, ", smoothing %g", cfg->loss.smoothing);
    if (cfg->deep_training.decay_epochs > 0)
        fprintf(r->out, "; act_learn 0 -> 1 over %lld epochs", (long long)cfg->deep_training.decay_epochs);
    fprintf(r->out, "\n");
    /* act_learn at the last step of the run */
    double last = cfg->deep_training.update == VN_CONFIG_UPDATE_ITERATION && r->niter_per_ep > 0
                      ? (double)E - 1.0 / (double)r->niter_per_ep
                      : (double)(E - 1);
    double act_end = vn_act_learn_at(cfg, last);
    if (act_end < 1.0)
        vn_log(VN_LOG_WARN, "deep_training.decay_epochs %lld with train.epochs %lld: act_learn "
               "ends at %.3f < 1, so the trained network cannot be merged into the deploy form "
               "exactly (export refuses it without --force); lower decay_epochs below epochs or "
               "train longer", (long long)cfg->deep_training.decay_epochs, (long long)E, act_end);
}

/* What the run is about to do: its shape, the data-parallel setup, the device. */
static void print_setup(run *r, const vn_train_result *res)
{
    const vn_config *cfg = r->cfg;
    if (r->rank == 0 && !r->st.finished) print_start(r, res);
    if (r->dp) print_dp(r);
    if (r->device != VN_DEVICE_CPU)
        fprintf(r->out, "device: %s:%d (train.tf32 %s, train.deterministic %s)\n",
                vn_device_name(r->device), r->device_index, cfg->train.tf32 ? "true" : "false",
                cfg->train.deterministic ? "true" : "false");
}

/* config.yaml, the metrics files and the progress display of the run folder. */
static int open_outputs(run *r, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    if (r->rank > 0) { /* only rank 0 writes the run folder and prints */
        vn_progress_opts po = {r->out, (int)cfg->train.log_every, VN_PROGRESS_AUTO, 0, NULL, NULL};
        return vn_progress_create(&po, &r->progress, err);
    }
    char cpath[4096];
    snprintf(cpath, sizeof cpath, "%s/config.yaml", r->dir);
    int rc = vn_config_save(cfg, cpath, err);
    /* Written by a new run, or when missing or (after --force) different. */
    if (rc == VN_OK && (!r->resumed || dataset_record(r) != vn_loader_num_samples(r->train)))
        rc = dataset_record_write(r, err);
    /* process_stats: peak RSS with every epoch and evaluation, for `vanilla report`. */
    /* A resume drops the records of the epoch in progress that it logs again (its evaluation,
     * its row) and takes the epoch's running train loss back from the step records kept. */
    vn_metrics_opts mo = {epoch_cols, N_EPOCH_COLS, !cfg->output.tensorboard, NULL, NULL, true,
                          r->resumed, r->st.epoch};
    if (rc == VN_OK) rc = vn_metrics_open(r->dir, r->resumed ? r->st.step : -1, &mo, &r->metrics, err);
    if (rc == VN_OK && r->resumed) rc = vn_metrics_sum_steps(r->dir, r->st.epoch, "loss", &r->ep_loss, &r->ep_steps);
    vn_progress_opts po = {r->out, (int)cfg->train.log_every, VN_PROGRESS_AUTO, 0, NULL, NULL};
    if (rc == VN_OK) rc = vn_progress_create(&po, &r->progress, err);
    return rc;
}

/* A step skipped for a non-finite value: VN_OK to go on, or the error that stops the run. */
static int skipped_step(run *r, const vn_train_result *res, vn_error *err)
{
    return vn__nonfinite_skip(r->cfg, &r->st.skipped_in_row, r->st.epoch, r->st.step,
                              vn_optim_lr(r->optim), res->last_ckpt, err);
}

static void log_step(run *r, int64_t step_in_ep, double loss, int images, double dt)
{
    double min_lr, max_lr;
    vn_optim_lr_range(r->optim, &min_lr, &max_lr);
    double wait = vn_loader_wait_seconds(r->train) - r->wait0;
    double vals[N_STEP_COLS] = {loss, max_lr, r->st.act_learn, vn_optim_last_grad_norm(r->optim),
                                dt > 0 ? images / dt : 0, wait, vn_optim_weight_decay(r->optim)};
    vn_metrics_log(r->metrics, VN_METRICS_STEP, r->st.epoch, r->st.step, step_cols, vals,
                   N_STEP_COLS, NULL);
    vn_progress_stats ps = {loss, max_lr, r->st.act_learn, images};
    vn_progress_step(r->progress, step_in_ep + 1, &ps);
    r->ep_loss += vn_metrics_as_logged(loss); /* the logged value: a resume sums it again */
    r->ep_steps++;
}

/* After a step: the periodic or signalled checkpoint, the step limit. */
static int after_step(run *r, vn_train_result *res, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    r->at_limit = cfg->train.max_steps > 0 && r->st.step >= cfg->train.max_steps;
    bool stop_signal = r->dp ? r->stop_agreed : r->opt->stop && *r->opt->stop;
    bool periodic = cfg->output.save_every_steps > 0 && r->st.step % cfg->output.save_every_steps == 0;
    if (stop_signal || (periodic && !r->at_limit)) {
        add_elapsed(r);
        int rc = save_checkpoint(r, false, res, err);
        if (rc != VN_OK) return rc;
    }
    if (stop_signal) {
        vn_progress_message(r->progress, "stopping on signal: checkpoint written");
        res->outcome = VN_TRAIN_INTERRUPTED;
    }
    return VN_OK;
}

/* The steps of the current epoch from st.position on; stops early at the step limit or on a
 * signal (res->outcome). */
static int train_epoch(run *r, vn_train_result *res, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    const int64_t epoch = r->st.epoch, B = cfg->train.batch_size;
    while (r->st.position / B < r->micro_per_ep) {
        int64_t step_in_ep = r->st.position / B / (cfg->optim.update_freq * r->ranks);
        if (cfg->deep_training.update == VN_CONFIG_UPDATE_ITERATION)
            set_act(r, vn_act_learn_at(cfg, (double)epoch + (double)step_in_ep / (double)r->niter_per_ep));
        double ts = vn_monotonic(), loss = 0;
        int images = 0;
        int rc = r->dp ? train_step_dp(r, &loss, &images, err) : train_step(r, &loss, &images, err);
        if (rc == VN_ERR_NUMERIC) {
            rc = skipped_step(r, res, err);
            if (rc != VN_OK) return rc;
            continue;
        }
        if (rc != VN_OK) return rc;
        r->st.skipped_in_row = 0;
        r->st.rng = *vn_ctx_rng(r->ctx);
        log_step(r, step_in_ep, loss, images, vn_monotonic() - ts);
        r->dp_steps++;
        r->dp_wait += r->comm_wait;
        r->dp_step_s += vn_monotonic() - ts;
        rc = after_step(r, res, err);
        if (rc != VN_OK || res->outcome == VN_TRAIN_INTERRUPTED || r->at_limit) return rc;
    }
    return VN_OK;
}

/* A stop signal here; with several ranks, on any rank (all of them agree). */
static bool stop_requested(run *r, vn_error *err)
{
    double v = r->opt->stop && *r->opt->stop;
    if (r->dp && vn_dist_allreduce_f64(r->dist, &v, 1, "the stop agreement", err) != VN_OK) return false;
    return v > 0;
}

/* A stop signal during the end-of-epoch evaluation: the checkpoint keeps the state at the
 * end of the epoch's steps (epoch not advanced, cursor at its end), so that a resume runs no
 * step and evaluates again, writing what an uninterrupted run writes. */
static int stop_in_eval(run *r, vn_train_result *res, vn_error *err)
{
    add_elapsed(r);
    int rc = save_checkpoint(r, false, res, err);
    if (rc != VN_OK) return rc;
    vn_progress_message(r->progress, "stopping on signal during evaluation: checkpoint written "
                        "(the evaluation of epoch %lld runs again on resume)", (long long)r->st.epoch);
    res->outcome = VN_TRAIN_INTERRUPTED;
    return VN_OK;
}

/* An evaluation that failed (unreadable validation images, out of memory): the steps are
 * kept in a checkpoint (at the end of an epoch as stop_in_eval writes it, so that the resume,
 * once the cause is fixed, evaluates again instead of training the epoch again: the official
 * script saves before it evaluates). again: the epoch whose evaluation the resume runs again,
 * -1 for the one at train.max_steps. Not with several ranks, where the failure may be one
 * rank's. */
static int keep_steps_of_failed_eval(run *r, vn_train_result *res, int rc, int64_t again,
                                     vn_error *err)
{
    if (r->dp || r->rank > 0) return rc;
    vn_error e2 = {0};
    add_elapsed(r);
    if (save_checkpoint(r, false, res, &e2) != VN_OK) return rc;
    return vn__failed_eval_kept(rc, res->last_ckpt, again, err);
}

/* End of an epoch: evaluate (reported under the epoch it follows), log the epoch row,
 * checkpoint. */
static int end_epoch(run *r, vn_train_result *res, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    int64_t ep_done = r->st.epoch;
    bool last = ep_done + 1 == cfg->train.epochs, is_best = false;
    bool eval_now = r->val && vn_eval_due(cfg, ep_done, last);
    int rc = eval_now ? evaluate_all(r, res, &is_best, true, err) : VN_OK;
    if (rc == VN_ERR_INTERRUPTED) return stop_in_eval(r, res, err);
    if (rc != VN_OK) return keep_steps_of_failed_eval(r, res, rc, r->st.epoch, err);
    r->st.position = 0;
    r->st.epoch = ep_done + 1;
    double lo, hi;
    vn_optim_lr_range(r->optim, &lo, &hi);
    double ev[N_EPOCH_COLS] = {r->ep_steps ? r->ep_loss / (double)r->ep_steps : NAN,
                               eval_now ? res->last_eval.top1 : NAN, eval_now ? res->last_eval.top5 : NAN,
                               eval_now ? res->last_eval.loss : NAN, r->st.best_top1, hi, r->st.act_learn,
                               vn_monotonic() - r->ep_t0};
    vn_metrics_log(r->metrics, VN_METRICS_EPOCH, ep_done, r->st.step, epoch_cols, ev, N_EPOCH_COLS, NULL);
    vn_metrics_flush(r->metrics, NULL);
    add_elapsed(r);
    if (last) r->st.finished = true;
    /* A stop that arrived after the epoch's last step (during evaluation) also checkpoints. */
    vn_error e2 = {0};
    bool stop = stop_requested(r, &e2);
    if (e2.msg[0]) return vn_error_set(err, VN_ERR_IO, "%s", e2.msg);
    bool save = last || is_best || stop || (cfg->output.save_every > 0 && r->st.epoch % cfg->output.save_every == 0);
    if (save) rc = save_checkpoint(r, is_best, res, err);
    if (rc == VN_OK && stop) res->outcome = VN_TRAIN_INTERRUPTED;
    return rc;
}

/* The epochs from where the run stands; at train.max_steps, evaluates where it stopped and
 * saves (a later run with a larger budget resumes from there: max_steps does not change the
 * result). */
static int train_epochs(run *r, vn_train_result *res, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    const int64_t epochs = cfg->train.epochs;
    int rc = VN_OK;
    r->wait0 = vn_loader_wait_seconds(r->train);
    while (!r->st.finished && r->st.epoch < epochs) {
        int64_t epoch = r->st.epoch;
        rc = vn_loader_start_epoch(r->train, epoch, r->st.position, err);
        if (rc != VN_OK) return rc;
        if (cfg->deep_training.update == VN_CONFIG_UPDATE_EPOCH) set_act(r, vn_act_learn_at(cfg, (double)epoch));
        vn_progress_begin_epoch(r->progress, epoch, epochs, r->niter_per_ep);
        if (r->st.position == 0) { /* else a resumed epoch: its loss so far was recovered */
            r->ep_loss = 0;
            r->ep_steps = 0;
        }
        r->ep_t0 = vn_monotonic();
        rc = train_epoch(r, res, err);
        if (rc != VN_OK || res->outcome == VN_TRAIN_INTERRUPTED) return rc;
        vn_progress_end_epoch(r->progress);
        if (r->at_limit) break;
        rc = end_epoch(r, res, err);
        if (rc != VN_OK || res->outcome == VN_TRAIN_INTERRUPTED) return rc;
    }
    if (!r->at_limit) return VN_OK;
    bool is_best = false;
    /* Not stoppable: a resume at the limit would take a step more before evaluating. */
    if (r->val) rc = evaluate_all(r, res, &is_best, false, err);
    if (rc != VN_OK) return keep_steps_of_failed_eval(r, res, rc, -1, err);
    add_elapsed(r);
    return save_checkpoint(r, is_best, res, err);
}

/* The detector's trainer (train/detect_train.c): on the CPU, in one process. */
static int train_detector(const vn_config *cfg, const vn_train_options *opt, vn_train_result *res,
                          vn_error *err)
{
    memset(res, 0, sizeof *res);
    if (cfg->train.device != VN_CONFIG_DEVICE_CPU) {
        vn_device d;
        return vn_train_device_open(cfg, 1, 0, &d, NULL, err); /* why it cannot run there */
    }
    if (vn_dist_size(opt->dist) > 1)
        return vn_error_set(err, VN_ERR_INVALID, "the detector trains in one process, not "
                            "data-parallel (%d ranks here): run it without mpirun",
                            vn_dist_size(opt->dist));
    return vn_detect_train(cfg, opt, res, err);
}

/* Rank 0: the checkpoints folder made, the run folder locked, killed writers' files removed. */
static int prepare_folder(run *r, vn_error *err)
{
    vn__run_folder_note(r->dir, &r->made);
    char ckdir[4096];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", r->dir);
    int rc = vn_mkdirs(ckdir, err);
    if (rc == VN_OK) rc = vn__run_lock(r->dir, &r->lock_fd, err);
    if (rc == VN_OK) rc = vn_ckpt_dir_prepare(ckdir, err);
    return rc;
}

int vn_train(const vn_config *cfg, const vn_train_options *opt, vn_train_result *res, vn_error *err)
{
    if (cfg->model.task == VN_CONFIG_TASK_DETECT) return train_detector(cfg, opt, res, err);
    memset(res, 0, sizeof *res);
    run R = {0}, *r = &R;
    r->xcur = r->next_slot = -1;
    r->lock_fd = -1;
    r->cfg = cfg;
    r->opt = opt;
    r->out = opt->out ? opt->out : stdout;
    snprintf(r->dir, sizeof r->dir, "%s", cfg->output.dir);
    r->t0 = vn_monotonic();
    double session0 = r->t0;
    r->dist = opt->dist;
    r->rank = vn_dist_rank(opt->dist);
    r->ranks = vn_dist_size(opt->dist);
    if (r->rank > 0 && !(r->out = r->null_out = fopen("/dev/null", "w")))
        return vn_error_set(err, VN_ERR_IO, "cannot open /dev/null");
    vn_set_threads(vn__dist_threads(cfg, opt->dist));
    int rc = vn_train_device_open(cfg, r->ranks, vn_dist_local_rank(opt->dist), &r->device,
                                  &r->device_index, err);
    if (rc != VN_OK) {
        run_free(r);
        return rc;
    }

    rc = r->rank == 0 ? prepare_folder(r, err) : VN_OK;
    if (r->ranks > 1) rc = vn__dist_agree(opt->dist, rc, "preparing the run folder", err);
    if (rc == VN_OK && r->ranks > 1) rc = same_config(r, err);
    if (rc == VN_OK) rc = open_data(r, err);
    if (rc == VN_OK) rc = setup_model(r, err);
    if (rc == VN_OK) rc = setup_optim(r, err);
    if (rc == VN_OK) rc = place_on_device(r, err);
    if (rc == VN_OK && !(r->ctx = vn_ctx_create_on(r->device)))
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    /* On a device, 0 keeps everything: its memory is not the host's, and recomputing costs
     * the device time the keep saves. */
    if (rc == VN_OK)
        vn_ctx_set_keep(r->ctx, r->device != VN_DEVICE_CPU && cfg->train.keep_mb == 0
                                    ? SIZE_MAX
                                    : (size_t)(cfg->train.keep_mb * 1e6));
    if (r->ranks > 1) rc = vn__dist_agree(opt->dist, rc, "building the model", err);
    if (rc == VN_OK && r->ranks > 1) rc = same_params(r, err);
    if (rc == VN_OK && r->ranks > 1)
        rc = vn__dp_create(opt->dist, r->ctx, r->params, r->n_params, cfg->train.dist_bucket_mb * 1e6,
                           cfg->model.sync_bn, &r->dp, err);
    if (r->ranks > 1) rc = vn__dist_agree(opt->dist, rc, "setting up", err);
    if (rc == VN_OK && r->ranks > 1) rc = vn__dp_use_nccl(r->dp, err);
    if (rc == VN_OK && r->ranks > 1) rc = gather_devices(r, err);
    if (rc == VN_OK) {
        res->params = vn_state_numel(&r->model->state, VN_STATE_PARAM);
        init_state(r);
        rc = resume(r, err);
    }
    if (r->ranks > 1) rc = same_start(r, rc, err);
    if (rc == VN_OK) rc = open_outputs(r, err);
    if (rc == VN_OK) {
        res->already_finished = r->st.finished;
        if (r->st.finished) /* nothing written this session: the run's last checkpoint */
            snprintf(res->last_ckpt, sizeof res->last_ckpt, "%s", r->resumed_from);
        print_setup(r, res);
        rc = train_epochs(r, res, err);
        if (r->dp && r->dp_steps > 0)
            fprintf(r->out, "\ndata-parallel: %lld steps, %.3f s of %.3f s waiting on the gradient "
                    "allreduce after backward (%.1f%%); %d of %d buckets started during backward "
                    "in the last step\n", (long long)r->dp_steps, r->dp_wait, r->dp_step_s,
                    100.0 * r->dp_wait / r->dp_step_s, r->early_buckets, vn__dp_buckets(r->dp));
    } else if (r->rank == 0 && r->lock_fd >= 0) {
        /* A refused start (the epochs were never entered) undoes the folders it made, while
         * the lock is held: a start that lost the lock to another must not touch them. */
        vn__run_folder_undo(cfg->output.dir, &r->made);
    }
    add_elapsed(r);
    res->state = r->st;
    res->seconds = vn_monotonic() - session0;
    if (r->train) res->data_wait = vn_loader_wait_seconds(r->train);
    run_free(r);
    return rc;
}
