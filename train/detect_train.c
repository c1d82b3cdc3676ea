/* The detection trainer (model.task: detect): the classifier's machinery (optimizer and
 * schedules from optim.*, deep training of the backbone, checkpoints in output.dir/checkpoints
 * written atomically and resumed bit-exactly mid-epoch, SIGTERM stops after a checkpoint,
 * metrics.jsonl / epochs.csv / TensorBoard) around YOLO11-VanillaNet, Ultralytics' loss and
 * its validation table.
 *
 * A batch is the next batch_size indices of the epoch's order (a permutation drawn from
 * (train.seed, epoch)); each sample is augmented from its own RNG (seed, epoch, index), so a
 * batch does not depend on the number of threads or on where the run resumed. The last
 * partial batch of an epoch is dropped.
 *
 * Gradient accumulation (optim.update_freq U): an optimizer step takes U consecutive batches
 * (micro-batches); the schedules count steps of U micro-batches (an epoch has images / (B U) of
 * them). During the lr warmup (detect.warmup_accumulate) the count rises from 1 to U as
 * Ultralytics' accumulate (vn_detect_accumulate), so the warmup takes more, smaller steps.
 * Each micro-batch backpropagates Ultralytics' loss of its B images unscaled: that loss is
 * loss.sum() x batch, i.e. the per-batch loss x the effective batch B U scaled by 1 / U as the
 * classifier scales, so the U gradients add up to those of one batch of B U (exactly when the
 * micro-batches have equal target-score sums and BatchNorm sees the same statistics).
 *
 * Model EMA (detect.ema_decay > 0) as Ultralytics' ModelEMA: a second detector whose
 * floating-point state (parameters, BatchNorm running statistics; not num_batches_tracked)
 * follows the live one after every optimizer step with the decay ramp
 * ema_decay (1 - exp(-updates / ema_tau)); it is what evaluation reports and selects best by,
 * it is saved in checkpoints under "ema." and eval / predict / export use it.
 *
 * Non-finite loss or gradients: train.nonfinite as the classifier (stop, or skip the step up to
 * train.max_skip in a row). Warmup as Ultralytics: during the lr warmup the biases' lr falls
 * from detect.warmup_bias_lr to the scheduled lr and SGD's momentum rises from
 * detect.warmup_momentum to optim.momentum (vn_detect_warmup). */
#include "train/vn_detect.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/vn_fs.h"
#include "optim/vn_ema.h"
#include "optim/vn_grad.h"
#include "optim/vn_schedule.h"
#include "train/train_impl.h"
#include "train/vn_metrics.h"

#define DETECT_RNG_STREAM 0xde7ec7 /* the epoch order's stream */

typedef struct drun {
    const vn_config *cfg;
    const vn_train_options *opt;
    FILE *out;
    char dir[1024];
    vn_det_data_cfg data;
    vn_det_dataset *train, *val;
    vn_yolo *model;
    vn_yolo *ema_model; /* NULL: no EMA */
    vn_ema *ema;
    vn_optim *optim;
    vn_tensor **params;
    int n_params;
    vn_schedule lr_sched, wd_sched;
    vn_ctx *ctx;
    vn_metrics *metrics;
    vn_detect_state st;
    int64_t *order;
    int64_t order_epoch;
    int64_t steps_per_ep;
    int imgsz, B;
    vn_det_sample *samples;
    vn_yolo_loss_params lp;
    double t0, ep_loss, ep_t0;
    int64_t ep_steps;
    bool at_limit;
    int lock_fd; /* the run folder's lock, -1 when not held */
    vn__run_made made; /* the folders this start made */
    char **bad;   /* the messages of the unreadable training images met so far, one per file */
    int64_t n_bad;
} drun;

static const char *const step_cols[] = {"loss", "box_loss", "cls_loss", "dfl_loss", "lr",
                                        "act_learn", "grad_norm", "img_per_s", "batches"};
static const char *const epoch_cols[] = {"train_loss", "val_P", "val_R", "val_mAP50",
                                         "val_mAP50-95", "lr", "act_learn", "epoch_seconds"};
#define N_STEP_COLS ((int)(sizeof step_cols / sizeof step_cols[0]))
#define N_EPOCH_COLS ((int)(sizeof epoch_cols / sizeof epoch_cols[0]))

/* ---- from the config ------------------------------------------------------------------------- */

int vn_detect_model_config(const vn_config *cfg, int nc, vn_yolo_config *out, vn_error *err)
{
    vn_yolo_config_default(out);
    int rc = vn_build_model_config(cfg, 1, &out->backbone, err);
    if (rc != VN_OK) return rc;
    out->backbone.num_classes = 1; /* the classifier is built but not used */
    out->nc = nc;
    out->width_multiple = (float)cfg->detect.width_multiple;
    out->depth_multiple = (float)cfg->detect.depth_multiple;
    out->max_channels = (int)cfg->detect.max_channels;
    out->c3k = cfg->detect.c3k;
    out->reg_max = (int)cfg->detect.reg_max;
    return vn_yolo_config_check(out, err);
}

void vn_detect_augment_of(const vn_config *cfg, int64_t epoch, vn_det_augment *a)
{
    const vn_config_detect *d = &cfg->detect;
    bool closed = epoch >= cfg->train.epochs - d->close_mosaic;
    *a = (vn_det_augment){(float)d->fliplr, (float)d->hsv_h, (float)d->hsv_s, (float)d->hsv_v,
                          closed ? 0.0f : (float)d->mosaic, (float)d->scale, (float)d->translate};
}

void vn_detect_nms_of(const vn_config *cfg, vn_nms_params *p)
{
    vn_nms_params_val(p);
    p->conf = (float)cfg->detect.conf;
    p->iou = cfg->detect.iou;
    p->max_det = (int)cfg->detect.max_det;
}

void vn_detect_warmup(const vn_config *cfg, vn_optim *o, const vn_schedule *lr_sched, int64_t step)
{
    int64_t w = vn_schedule_warmup_iters(lr_sched);
    double frac = w > 1 && step < w - 1 ? (double)(step < 0 ? 0 : step) / (double)(w - 1) : 1.0;
    double add = cfg->detect.warmup_bias_lr * (1.0 - frac);
    for (int i = 0; i < vn_optim_param_count(o); i++) {
        vn_optim_param_info pi;
        if (vn_optim_param_info_at(o, i, &pi) == VN_OK && strstr(pi.name, "bias"))
            (void)vn_optim_set_lr_add(o, i, add);
    }
    const double m = cfg->optim.momentum, m0 = cfg->detect.warmup_momentum;
    if (vn_optim_get_config(o)->kind == VN_OPTIM_SGD && m > 0)
        vn_optim_set_momentum(o, m0 + (m - m0) * frac);
}

int64_t vn_detect_accumulate(int64_t ni, int64_t nw, int64_t uf, bool ramp)
{
    if (!ramp || uf <= 1 || nw <= 0 || ni >= nw) return uf;
    const double slope = (double)(uf - 1) / (double)nw; /* numpy.interp's order of operations */
    double a = nearbyint(slope * (double)(ni < 0 ? 0 : ni) + 1.0);
    return a < 1 ? 1 : (int64_t)a;
}

/* ---- set-up and tear-down -------------------------------------------------------------------- */

static void drun_free(drun *r)
{
    vn__run_unlock(r->lock_fd);
    for (int64_t k = 0; k < r->n_bad; k++) free(r->bad[k]);
    free(r->bad);
    vn_det_dataset_free(r->train);
    vn_det_dataset_free(r->val);
    vn_det_data_cfg_free(&r->data);
    vn_optim_destroy(r->optim);
    free(r->params);
    vn_ema_destroy(r->ema);
    vn_yolo_destroy(r->ema_model);
    vn_yolo_destroy(r->model);
    vn_ctx_destroy(r->ctx);
    vn_metrics_close(r->metrics, NULL);
    for (int b = 0; r->samples && b < r->B; b++) vn_det_sample_free(&r->samples[b]);
    free(r->samples);
    free(r->order);
}

static int open_data(drun *r, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    if (!cfg->detect.data[0])
        return vn_error_set(err, VN_ERR_INVALID, "model.task is detect but detect.data (the dataset "
                            "YAML: path, train, val, names) is not set");
    int rc = vn_det_data_cfg_load(cfg->detect.data, &r->data, err);
    if (rc == VN_OK) rc = vn_det_dataset_scan(r->data.train, r->data.nc, cfg->data.max_bad_fraction,
                                              &r->train, err);
    if (rc != VN_OK) return rc;
    for (int64_t k = 0; k < vn_det_dataset_skipped_count(r->train); k++)
        vn_log(VN_LOG_WARN, "skipped %s", vn_det_dataset_skipped(r->train, k));
    if (cfg->train.eval_every > 0 && r->data.val && vn_det_split_exists(r->data.val)) {
        rc = vn_det_dataset_scan(r->data.val, r->data.nc, cfg->data.max_bad_fraction, &r->val, err);
        if (rc != VN_OK) return rc;
    } else if (cfg->train.eval_every > 0) {
        vn_log(VN_LOG_WARN, "no validation images (%s): training without evaluation",
               r->data.val ? r->data.val : "val not set");
    }
    int64_t per = (int64_t)r->B * cfg->optim.update_freq;
    r->steps_per_ep = vn_det_dataset_size(r->train) / per;
    if (r->steps_per_ep < 1)
        return vn_error_set(err, VN_ERR_INVALID, "%s has %lld images: fewer than one step of %lld "
                            "(train.batch_size %d x optim.update_freq %lld)", r->data.train,
                            (long long)vn_det_dataset_size(r->train), (long long)per, r->B,
                            (long long)cfg->optim.update_freq);
    r->samples = calloc((size_t)r->B, sizeof *r->samples);
    r->order = malloc((size_t)vn_det_dataset_size(r->train) * sizeof *r->order);
    r->order_epoch = -1;
    return r->samples && r->order ? VN_OK : vn_error_set(err, VN_ERR_NOMEM, "out of memory");
}

static int setup_model(drun *r, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    vn_yolo_config yc;
    int rc = vn_detect_model_config(cfg, r->data.nc, &yc, err);
    if (rc == VN_OK) rc = vn_yolo_create(&yc, &r->model, err);
    if (rc != VN_OK) return rc;
    vn_yolo_init(r->model, (uint64_t)cfg->train.seed);
    if (cfg->model.init[0]) { /* as the classifier: a resumed run then loads its checkpoint */
        vn_detect_init_result ir;
        rc = vn_detect_init_from(r->model, cfg->model.init, cfg->model.init_key, &ir, err);
        if (rc != VN_OK) return rc;
        fprintf(r->out, "%s\n", ir.line);
    }
    const vn_state_list *l = vn_yolo_state(r->model);
    r->params = calloc((size_t)l->n, sizeof *r->params);
    const char **names = calloc((size_t)l->n, sizeof *names);
    if (!r->params || !names) {
        free(names);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < l->n; i++)
        if (l->items[i].kind == VN_STATE_PARAM) {
            names[r->n_params] = l->items[i].name;
            r->params[r->n_params++] = l->items[i].tensor;
        }
    vn_optim_config oc;
    vn_build_optim_config(cfg, &oc);
    oc.layer_decay = 1.0; /* layer ids are the classifier's */
    rc = vn_optim_create(&r->optim, &oc, r->n_params, r->params, names, err);
    free(names);
    if (rc != VN_OK) return rc;
    const vn_config_optim *o = &cfg->optim;
    int64_t ws = o->warmup_steps > 0 ? o->warmup_steps : -1;
    vn_schedule_cosine(&r->lr_sched, o->lr, o->min_lr, cfg->train.epochs, r->steps_per_ep,
                       o->warmup_epochs, ws);
    if (o->schedule == VN_CONFIG_SCHEDULE_CONSTANT)
        vn_schedule_constant(&r->lr_sched, o->lr, cfg->train.epochs, r->steps_per_ep, o->warmup_epochs, ws);
    double wd_end = o->weight_decay_end >= 0 ? o->weight_decay_end : o->weight_decay;
    vn_schedule_cosine(&r->wd_sched, o->weight_decay, wd_end, cfg->train.epochs, r->steps_per_ep, 0, -1);
    rc = vn_schedule_check(&r->lr_sched, err);
    if (rc == VN_OK) rc = vn_schedule_check(&r->wd_sched, err);
    vn_yolo_loss_params_default(&r->lp);
    r->lp.topk = (int)cfg->detect.topk;
    r->lp.box = (float)cfg->detect.box;
    r->lp.cls = (float)cfg->detect.cls;
    r->lp.dfl = (float)cfg->detect.dfl;
    return rc;
}

/* Ultralytics' ModelEMA: a second detector following the live one's floating-point state. */
static int setup_ema(drun *r, vn_error *err)
{
    if (!(r->cfg->detect.ema_decay > 0)) return VN_OK;
    int rc = vn_yolo_create(vn_yolo_get_config(r->model), &r->ema_model, err);
    if (rc != VN_OK) return rc;
    vn_state_drop_grads(vn_yolo_state(r->ema_model)); /* never differentiated */
    rc = vn_ema_of_state(&r->ema, r->cfg->detect.ema_decay, vn_yolo_state(r->model),
                         vn_yolo_state(r->ema_model), false, NULL, err);
    vn_yolo_set_training(r->ema_model, false);
    return rc;
}

/* After an optimizer step: updates += 1, then the blend at the ramped decay. */
static void ema_update(drun *r)
{
    if (!r->ema) return;
    const vn_config_detect *d = &r->cfg->detect;
    r->st.ema_updates++;
    double decay = vn_ema_ramped_decay(d->ema_decay, (double)d->ema_tau, r->st.ema_updates);
    (void)vn_ema_set_decay(r->ema, decay, NULL);
    vn_ema_update(r->ema);
}

static void set_act(drun *r, double act)
{
    r->st.act_learn = act;
    vn_yolo_change_act(r->model, (float)act);
    if (r->ema_model) vn_yolo_change_act(r->ema_model, (float)act);
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

static vn_detect_ckpt parts(drun *r)
{
    return (vn_detect_ckpt){r->model, r->optim, &r->st, r->cfg, (const char *const *)r->data.names,
                            r->data.nc, r->imgsz, r->ema_model, false};
}

static void add_elapsed(drun *r)
{
    double now = vn_monotonic();
    r->st.elapsed += now - r->t0;
    r->t0 = now;
}

static void prune(drun *r)
{
    int64_t keep = r->cfg->output.keep_last;
    char **names = NULL;
    int n = 0;
    vn_error e2 = {0};
    if (keep <= 0 || vn__ckpt_list(r->dir, &names, &n, &e2) != VN_OK) return;
    for (int i = 0; i < n - keep; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/checkpoints/%s", r->dir, names[i]);
        unlink(p);
    }
    vn__ckpt_list_free(names, n);
}

static int save(drun *r, bool best, vn_train_result *res, vn_error *err)
{
    add_elapsed(r);
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoints/ckpt-s%010lld.safetensors", r->dir, (long long)r->st.step);
    vn_detect_ckpt c = parts(r);
    /* With a new best, the checkpoint takes its name only after best.safetensors is written
     * (as the classifier's): a kill in between leaves the previous checkpoint the newest. */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int rc = vn_detect_ckpt_save(best ? tmp : path, &c, err);
    if (rc != VN_OK) return rc;
    if (best) {
        snprintf(res->best_ckpt, sizeof res->best_ckpt, "%s/checkpoints/best.safetensors", r->dir);
        rc = vn_detect_ckpt_save(res->best_ckpt, &c, err);
        int e = rc == VN_OK ? vn_fs_rename_durable(tmp, path) : 0;
        if (e) rc = vn_error_set(err, VN_ERR_IO, "%s: cannot rename the checkpoint into place: %s",
                                 path, strerror(e));
        if (rc != VN_OK) {
            unlink(tmp);
            return rc;
        }
    }
    snprintf(res->last_ckpt, sizeof res->last_ckpt, "%s", path);
    prune(r);
    return VN_OK;
}

static int resume(drun *r, vn_error *err)
{
    const char *want = r->opt->resume;
    char path[4096];
    if (!want) return vn__fresh_run_check(r->dir, err);
    int prc = vn__resume_path(want, r->dir, r->out, path, sizeof path, err);
    if (prc != VN_OK || !path[0]) return prc;
    vn_detect_info info;
    int rc = vn_detect_info_read(path, &info, err);
    bool had_ema = info.has_ema;
    if (rc == VN_OK && info.config_yaml) {
        vn_config *old = malloc(sizeof *old);
        rc = old ? vn_config_from_text(old, info.config_yaml, strlen(info.config_yaml), path, err)
                 : vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        if (rc == VN_OK && (rc = vn_config_resume_check(old, r->cfg, r->opt->force, err)) != VN_OK)
            vn_error_prefix(err, "%s was written under a different config (resume with --force "
                            "to continue anyway): ", path);
        free(old);
    }
    vn_detect_info_free(&info);
    vn_detect_ckpt c = parts(r);
    if (!had_ema) c.ema = NULL; /* written without an EMA: it starts from the loaded model */
    if (rc == VN_OK) rc = vn_detect_ckpt_load(path, &c, err);
    if (rc != VN_OK) return rc;
    if (r->ema && !had_ema) {
        vn_ema_copy_from_model(r->ema);
        r->st.ema_updates = 0;
        fprintf(r->out, "%s holds no EMA weights: the EMA starts from its model\n", path);
    }
    set_act(r, r->st.act_learn);
    *vn_ctx_rng(r->ctx) = r->st.rng;
    /* A finished run resumed with more epochs (--force): not finished any more. */
    if (r->st.finished && r->st.epoch < r->cfg->train.epochs) r->st.finished = false;
    fprintf(r->out, "resumed from %s: epoch %lld, position %lld, step %lld\n", path,
            (long long)r->st.epoch, (long long)r->st.position, (long long)r->st.step);
    return VN_OK;
}

/* ---- one step -------------------------------------------------------------------------------- */

static void epoch_order(drun *r, int64_t epoch)
{
    int64_t n = vn_det_dataset_size(r->train);
    if (r->order_epoch == epoch) return;
    for (int64_t i = 0; i < n; i++) r->order[i] = i;
    if (r->cfg->train.shuffle) {
        vn_rng rng;
        vn_rng_seed(&rng, (uint64_t)r->cfg->train.seed, DETECT_RNG_STREAM, (uint64_t)epoch);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)vn_rng_below(&rng, (uint64_t)(i + 1)), t = r->order[i];
            r->order[i] = r->order[j];
            r->order[j] = t;
        }
    }
    r->order_epoch = epoch;
}

/* The batch at st.position: samples loaded in parallel (each from its own RNG); the first
 * failure in batch order is reported. */
static int load_batch(drun *r, vn_error *err)
{
    vn_det_augment aug;
    vn_detect_augment_of(r->cfg, r->st.epoch, &aug);
    vn_error *errs = calloc((size_t)r->B, sizeof *errs);
    int *codes = calloc((size_t)r->B, sizeof *codes);
    if (!errs || !codes) {
        free(errs);
        free(codes);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    vn_error *first = calloc((size_t)r->B, sizeof *first); /* why a slot's own image failed */
    if (!first) {
        free(errs);
        free(codes);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    const int64_t n = vn_det_dataset_size(r->train);
    const bool fail_fast = r->cfg->data.fail_fast;
    /* An image that cannot be read (or one of its mosaic partners): unless fail_fast, its slot
     * takes the next image of the epoch's order, drawn from another RNG stream so that it is
     * not a copy of that image's own sample; deterministic, so resume keeps its bytes. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(vn_get_threads())
    for (int b = 0; b < r->B; b++) {
        int64_t pos = r->st.position + b;
        codes[b] = vn_det_load_sample(r->train, r->order[pos], r->imgsz, &aug,
                                      (uint64_t)r->cfg->train.seed, r->st.epoch, &r->samples[b], &errs[b]);
        if (codes[b] == VN_OK || codes[b] == VN_ERR_NOMEM || fail_fast) continue;
        first[b] = errs[b];
        for (int64_t a = 1; a < n && codes[b] != VN_OK && codes[b] != VN_ERR_NOMEM; a++)
            codes[b] = vn_det_load_sample(r->train, r->order[(pos + a) % n], r->imgsz, &aug,
                                          (uint64_t)r->cfg->train.seed ^ 0x5ca1ab1eu, r->st.epoch,
                                          &r->samples[b], &errs[b]);
    }
    int rc = VN_OK;
    for (int b = 0; b < r->B && rc == VN_OK; b++) {
        if (codes[b] != VN_OK) {
            rc = vn_error_set(err, codes[b], "%s", errs[b].msg);
            break;
        }
        if (!first[b].msg[0]) continue;
        bool seen = false;
        for (int64_t k = 0; k < r->n_bad && !seen; k++) seen = strcmp(r->bad[k], first[b].msg) == 0;
        if (seen) continue;
        char **nb = realloc(r->bad, (size_t)(r->n_bad + 1) * sizeof *nb);
        if (!nb || !(nb[r->n_bad] = strdup(first[b].msg))) {
            if (nb) r->bad = nb;
            rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
            break;
        }
        r->bad = nb;
        r->n_bad++;
        vn_log(VN_LOG_WARN, "%s (skipped; its slot takes the next image in order)", first[b].msg);
        if ((double)r->n_bad > r->cfg->data.max_bad_fraction * (double)n)
            rc = vn_error_set(err, VN_ERR_FORMAT, "%lld of %lld training images could not be "
                              "used, more than data.max_bad_fraction %.2f%%; last: %s",
                              (long long)r->n_bad, (long long)n,
                              100.0 * r->cfg->data.max_bad_fraction, first[b].msg);
    }
    free(first);
    free(errs);
    free(codes);
    return rc;
}

static vn_tensor *batch_tensor(drun *r, vn_yolo_gt **gts, int64_t *n_gt)
{
    int n = 0;
    for (int b = 0; b < r->B; b++) n += r->samples[b].n_boxes;
    *gts = malloc(((size_t)n + 1) * sizeof **gts);
    vn_tensor *x = vn_ctx_tensor4(r->ctx, r->B, r->imgsz, r->imgsz, 3);
    if (!*gts || !x) return NULL;
    int64_t per = (int64_t)r->imgsz * r->imgsz * 3, k = 0;
    for (int b = 0; b < r->B; b++) {
        const vn_det_sample *s = &r->samples[b];
        for (int64_t i = 0; i < per; i++) x->data[b * per + i] = s->pix[i] * (1.0f / 255.0f);
        for (int j = 0; j < s->n_boxes; j++, k++) {
            const float *q = s->xyxy + 4 * j;
            (*gts)[k] = (vn_yolo_gt){b, s->cls[j], q[0], q[1], q[2], q[3]};
        }
    }
    *n_gt = k;
    return x;
}

/* One micro-batch: forward, loss, backward (not when the loss is non-finite: *bad). */
static int micro_step(drun *r, double *lv, double p[3], bool *bad, vn_error *err)
{
    int rc = load_batch(r, err);
    if (rc != VN_OK) return rc;
    vn_ctx_reset(r->ctx);
    vn_yolo_gt *gts = NULL;
    int64_t n_gt = 0;
    vn_tensor *x = batch_tensor(r, &gts, &n_gt), *y[VN_YOLO_LEVELS], *loss = NULL;
    if (x && vn_yolo_forward(r->ctx, r->model, x, y) == VN_OK)
        loss = vn_yolo_loss(r->ctx, y, r->data.nc, vn_yolo_get_config(r->model)->reg_max, gts, n_gt,
                            &r->lp, p);
    free(gts);
    if (!loss) return vn_error_set(err, vn_ctx_status(r->ctx) ? vn_ctx_status(r->ctx) : VN_ERR_NOMEM,
                                   "detector forward/loss: %s", vn_ctx_error(r->ctx));
    *lv = loss->data[0];
    if (!isfinite(*lv)) *bad = true;
    if (!*bad && vn_backward(r->ctx, loss) != VN_OK)
        return vn_error_set(err, vn_ctx_status(r->ctx), "backward: %s", vn_ctx_error(r->ctx));
    vn_ctx_reset(r->ctx);
    r->st.position += r->B;
    return VN_OK;
}

/* After the gradients of a step are in: clipping, the optimizer, zeroing, the EMA; *bad when
 * a loss or the gradient norm is not finite (nothing updated). */
static int apply_update(drun *r, bool *bad, vn_error *err)
{
    if (!*bad && r->cfg->optim.clip_grad > 0 &&
        !isfinite(vn_clip_grad_norm(r->params, r->n_params, r->cfg->optim.clip_grad)))
        *bad = true;
    if (!*bad) {
        vn_error e2 = {0};
        int rc = vn_optim_step(r->optim, &e2);
        if (rc == VN_ERR_NUMERIC) *bad = true;
        else if (rc != VN_OK) return vn_error_set(err, rc, "%s", e2.msg);
    }
    if (vn_optim_zero_grad(r->optim) != VN_OK)
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory for gradient buffers");
    if (*bad) return VN_OK;
    ema_update(r);
    r->st.step++;
    return VN_OK;
}

/* Micro-batches of an epoch (B images each; an optimizer step takes update_freq of them after
 * the warmup) and the run's index of the next one. */
static int64_t epoch_micro(const drun *r)
{
    return r->steps_per_ep * r->cfg->optim.update_freq;
}

static int64_t next_micro(const drun *r)
{
    return r->st.epoch * epoch_micro(r) + r->st.position / r->B;
}

/* One optimizer step: micro-batches until the step has vn_detect_accumulate of them (Ultralytics:
 * ni - last step's ni >= accumulate) or the epoch's micro-batches end (the step then takes what
 * is left: checkpoints never hold part of a step). The lr, wd and warmup are those of the
 * schedule position (last micro-batch) / update_freq: the step's index when every step takes
 * update_freq. *bad: skipped (non-finite). The logged loss is that of B x update_freq images
 * (the sum over the n micro-batches taken x update_freq / n), the parts their mean. */
static int train_step(drun *r, double *loss_out, double parts3[3], bool *bad, vn_error *err)
{
    const int64_t uf = r->cfg->optim.update_freq, end = epoch_micro(r), ni0 = next_micro(r);
    const int64_t nw = vn_schedule_warmup_iters(&r->lr_sched) * uf;
    double sum = 0;
    parts3[0] = parts3[1] = parts3[2] = 0;
    *bad = false;
    int64_t n = 0;
    do {
        double lv = 0, p[3] = {0, 0, 0};
        int rc = micro_step(r, &lv, p, bad, err);
        if (rc != VN_OK) return rc;
        sum += lv;
        for (int i = 0; i < 3; i++) parts3[i] += p[i];
        ++n;
    } while (n < vn_detect_accumulate(ni0 + n - 1, nw, uf, r->cfg->detect.warmup_accumulate) &&
             r->st.position / r->B < end);
    const int64_t pos = (ni0 + n - 1) / uf;
    int src = vn__set_schedules(r->optim, &r->lr_sched, &r->wd_sched, pos, err);
    if (src != VN_OK) return src;
    vn_detect_warmup(r->cfg, r->optim, &r->lr_sched, pos);
    *loss_out = sum * (double)uf / (double)n;
    for (int i = 0; i < 3; i++) parts3[i] /= (double)n;
    int rc = apply_update(r, bad, err);
    r->st.rng = *vn_ctx_rng(r->ctx);
    return rc;
}

/* A step skipped for a non-finite value (train.nonfinite skip): VN_OK to go on, or the error
 * that stops the run (stop mode, or more than train.max_skip in a row). */
static int skipped_step(drun *r, const vn_train_result *res, vn_error *err)
{
    return vn__nonfinite_skip(r->cfg, &r->st.skipped_in_row, r->st.epoch, r->st.step,
                              vn_optim_lr(r->optim), res->last_ckpt, err);
}

/* ---- epochs ---------------------------------------------------------------------------------- */

/* After a step that took micro-batches [m0, m1) of the epoch: its metrics row, and a line when
 * it crossed a multiple of train.log_every scheduled steps or ended the epoch. */
static void log_step(drun *r, int64_t m0, int64_t m1, double loss, const double p[3], double dt)
{
    const int64_t uf = r->cfg->optim.update_freq, every = uf * r->cfg->train.log_every;
    double lo, hi;
    vn_optim_lr_range(r->optim, &lo, &hi);
    double v[N_STEP_COLS] = {loss, p[0], p[1], p[2], hi, r->st.act_learn,
                             vn_optim_last_grad_norm(r->optim),
                             dt > 0 ? (double)r->B * (double)(m1 - m0) / dt : 0, (double)(m1 - m0)};
    vn_metrics_log(r->metrics, VN_METRICS_STEP, r->st.epoch, r->st.step, step_cols, v, N_STEP_COLS, NULL);
    r->ep_loss += vn_metrics_as_logged(loss); /* the logged value: a resume sums it again */
    r->ep_steps++;
    if (m1 / every != m0 / every || m1 == epoch_micro(r))
        fprintf(r->out, "epoch %lld/%lld step %lld/%lld  loss %.4f (box %.4f cls %.4f dfl %.4f)  "
                "lr %.3g  act_learn %.3f  %.1f img/s\n", (long long)r->st.epoch + 1,
                (long long)r->cfg->train.epochs, (long long)((m1 + uf - 1) / uf),
                (long long)r->steps_per_ep, loss, p[0], p[1], p[2], hi, r->st.act_learn, v[7]);
}

static int train_epoch(drun *r, vn_train_result *res, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    const int64_t uf = cfg->optim.update_freq;
    epoch_order(r, r->st.epoch);
    while (r->st.position / r->B < epoch_micro(r)) {
        const int64_t m0 = r->st.position / r->B;
        if (cfg->deep_training.update == VN_CONFIG_UPDATE_ITERATION)
            set_act(r, vn_act_learn_at(cfg, (double)r->st.epoch + (double)(m0 / uf) / (double)r->steps_per_ep));
        double t = vn_monotonic(), loss = 0, p[3] = {0, 0, 0};
        bool bad = false;
        int rc = train_step(r, &loss, p, &bad, err);
        if (rc == VN_OK && bad) {
            rc = skipped_step(r, res, err);
            if (rc != VN_OK) return rc;
            continue;
        }
        if (rc != VN_OK) return rc;
        r->st.skipped_in_row = 0;
        log_step(r, m0, r->st.position / r->B, loss, p, vn_monotonic() - t);
        r->at_limit = cfg->train.max_steps > 0 && r->st.step >= cfg->train.max_steps;
        bool stop = r->opt->stop && *r->opt->stop;
        bool periodic = cfg->output.save_every_steps > 0 && r->st.step % cfg->output.save_every_steps == 0;
        if (stop || (periodic && !r->at_limit)) {
            rc = save(r, false, res, err);
            if (rc != VN_OK) return rc;
        }
        if (stop) {
            fprintf(r->out, "stopping on signal: checkpoint written\n");
            res->outcome = VN_TRAIN_INTERRUPTED;
            return VN_OK;
        }
        if (r->at_limit) return VN_OK;
    }
    return VN_OK;
}

/* Metric names keep letters, digits and _ . - /; anything else becomes _. */
static void metric_name(char *buf, size_t len, const char *prefix, const char *name)
{
    snprintf(buf, len, "%s%s", prefix, name);
    for (char *p = buf + strlen(prefix); *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '-' || *p == '/'))
            *p = '_';
}

/* stoppable: a stop signal gives the pass up (VN_ERR_INTERRUPTED, nothing logged). */
static int evaluate(drun *r, vn_det_metrics *mt, bool *best, bool stoppable, vn_error *err)
{
    vn_nms_params np;
    vn_detect_nms_of(r->cfg, &np);
    int64_t bs = r->cfg->data.eval_batch_size > 0 ? r->cfg->data.eval_batch_size : r->B;
    vn_yolo *m = r->ema_model ? r->ema_model : r->model; /* Ultralytics validates the EMA */
    int rc = vn_detect_evaluate_until(r->ctx, m, r->val, r->imgsz, (int)bs, &np,
                                      r->cfg->data.max_bad_fraction, mt,
                                      stoppable ? r->opt->stop : NULL, err);
    if (rc != VN_OK) return rc;
    fprintf(r->out, "eval after epoch %lld%s:\n", (long long)r->st.epoch + 1,
            r->ema_model ? " (EMA weights)" : "");
    vn_det_metrics_print(r->out, mt, (const char *const *)r->data.names);
    const char *names[4] = {"val_P", "val_R", "val_mAP50", "val_mAP50-95"};
    double v[4] = {mt->mp, mt->mr, mt->map50, mt->map};
    vn_metrics_log(r->metrics, VN_METRICS_EVAL, r->st.epoch, r->st.step, names, v, 4, NULL);
    for (int c = 0; c < mt->nc; c++) {
        if (!mt->present[c]) continue;
        char a[160], b[160];
        metric_name(a, sizeof a, "val_mAP50/", r->data.names[c]);
        metric_name(b, sizeof b, "val_mAP50-95/", r->data.names[c]);
        const char *pn[2] = {a, b};
        double pv[2] = {mt->ap50[c], mt->ap[c]};
        vn_metrics_log(r->metrics, VN_METRICS_EVAL, r->st.epoch, r->st.step, pn, pv, 2, NULL);
    }
    double fitness = 0.1 * mt->map50 + 0.9 * mt->map;
    *best = fitness > r->st.best_fitness;
    if (*best) {
        r->st.best_fitness = fitness;
        r->st.best_epoch = r->st.epoch;
    }
    return VN_OK;
}

static int end_epoch(drun *r, vn_train_result *res, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    bool last = r->st.epoch + 1 == cfg->train.epochs || r->at_limit, best = false;
    bool ev = r->val && (r->at_limit || vn_eval_due(cfg, r->st.epoch, last));
    vn_det_metrics mt = {0};
    /* At the step limit the pass is not stoppable: a resume there would take a step more. */
    int rc = ev ? evaluate(r, &mt, &best, !r->at_limit, err) : VN_OK;
    if (rc == VN_ERR_INTERRUPTED) {
        /* The checkpoint keeps the end of the epoch's steps: a resume runs no step and
         * evaluates again. */
        rc = save(r, false, res, err);
        if (rc != VN_OK) return rc;
        fprintf(r->out, "stopping on signal during evaluation: checkpoint written (the "
                "evaluation of epoch %lld runs again on resume)\n", (long long)r->st.epoch);
        res->outcome = VN_TRAIN_INTERRUPTED;
        return VN_OK;
    }
    if (rc != VN_OK) { /* e.g. unreadable validation images: the epoch's steps are kept */
        vn_error e2 = {0};
        if (save(r, false, res, &e2) != VN_OK) return rc;
        return vn__failed_eval_kept(rc, res->last_ckpt, r->st.epoch, err);
    }
    double lo, hi;
    vn_optim_lr_range(r->optim, &lo, &hi);
    double v[N_EPOCH_COLS] = {r->ep_steps ? r->ep_loss / (double)r->ep_steps : NAN,
                              ev ? mt.mp : NAN, ev ? mt.mr : NAN, ev ? mt.map50 : NAN,
                              ev ? mt.map : NAN, hi, r->st.act_learn, vn_monotonic() - r->ep_t0};
    vn_metrics_log(r->metrics, VN_METRICS_EPOCH, r->st.epoch, r->st.step, epoch_cols, v, N_EPOCH_COLS, NULL);
    vn_metrics_flush(r->metrics, NULL);
    vn_det_metrics_free(&mt);
    if (!r->at_limit) {
        r->st.epoch++;
        r->st.position = 0;
    }
    if (last && !r->at_limit) r->st.finished = true;
    bool periodic = cfg->output.save_every > 0 && r->st.epoch % cfg->output.save_every == 0;
    return last || best || periodic ? save(r, best, res, err) : VN_OK;
}

static int train_epochs(drun *r, vn_train_result *res, vn_error *err)
{
    const vn_config *cfg = r->cfg;
    int rc = VN_OK;
    while (rc == VN_OK && !r->st.finished && r->st.epoch < cfg->train.epochs) {
        if (cfg->deep_training.update == VN_CONFIG_UPDATE_EPOCH)
            set_act(r, vn_act_learn_at(cfg, (double)r->st.epoch));
        if (r->st.position == 0) { /* else resumed mid-epoch: open_outputs summed the steps */
            r->ep_loss = 0;
            r->ep_steps = 0;
        }
        r->ep_t0 = vn_monotonic();
        rc = train_epoch(r, res, err);
        if (rc != VN_OK || res->outcome == VN_TRAIN_INTERRUPTED) return rc;
        rc = end_epoch(r, res, err);
        if (rc != VN_OK || res->outcome == VN_TRAIN_INTERRUPTED) return rc;
        if (r->at_limit) break;
        if (rc == VN_OK && r->opt->stop && *r->opt->stop) res->outcome = VN_TRAIN_INTERRUPTED;
        if (res->outcome == VN_TRAIN_INTERRUPTED) break;
    }
    return rc;
}

static int open_outputs(drun *r, vn_error *err)
{
    char cpath[4096];
    snprintf(cpath, sizeof cpath, "%s/config.yaml", r->dir);
    int rc = vn_config_save(r->cfg, cpath, err);
    vn_metrics_opts mo = {epoch_cols, N_EPOCH_COLS, !r->cfg->output.tensorboard, NULL, NULL, true,
                          r->opt->resume && r->st.step > 0, r->st.epoch};
    if (rc == VN_OK)
        rc = vn_metrics_open(r->dir, r->opt->resume && r->st.step > 0 ? r->st.step : -1, &mo,
                             &r->metrics, err);
    /* A resume in the middle of an epoch takes its running train loss back from the step
     * records kept (the epoch's row then has the straight run's mean). */
    if (rc == VN_OK && r->opt->resume && r->st.position > 0)
        rc = vn_metrics_sum_steps(r->dir, r->st.epoch, "loss", &r->ep_loss, &r->ep_steps);
    return rc;
}

static void init_state(drun *r)
{
    memset(&r->st, 0, sizeof r->st);
    r->st.best_fitness = -1;
    vn_rng_seed(&r->st.rng, (uint64_t)r->cfg->train.seed, DETECT_RNG_STREAM + 1, 0);
    *vn_ctx_rng(r->ctx) = r->st.rng;
    set_act(r, vn_act_learn_at(r->cfg, 0));
}

int vn_detect_train(const vn_config *cfg, const vn_train_options *opt, vn_train_result *res,
                    vn_error *err)
{
    memset(res, 0, sizeof *res);
    drun R = {0}, *r = &R;
    r->lock_fd = -1;
    r->cfg = cfg;
    r->opt = opt;
    r->out = opt->out ? opt->out : stdout;
    r->imgsz = (int)cfg->detect.imgsz;
    r->B = (int)cfg->train.batch_size;
    snprintf(r->dir, sizeof r->dir, "%s", cfg->output.dir);
    r->t0 = vn_monotonic();
    double session0 = r->t0;
    vn_set_threads((int)cfg->train.threads);
    char ckdir[4096];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", r->dir);
    int rc = r->imgsz % 32 ? vn_error_set(err, VN_ERR_INVALID, "detect.imgsz %d is not a multiple "
                                          "of 32", r->imgsz) : VN_OK;
    if (rc == VN_OK) vn__run_folder_note(r->dir, &r->made);
    if (rc == VN_OK) rc = vn_mkdirs(ckdir, err);
    if (rc == VN_OK) rc = vn__run_lock(r->dir, &r->lock_fd, err);
    if (rc == VN_OK) rc = vn_ckpt_dir_prepare(ckdir, err);
    if (rc == VN_OK) rc = open_data(r, err);
    if (rc == VN_OK) rc = setup_model(r, err);
    if (rc == VN_OK) rc = setup_ema(r, err);
    if (rc == VN_OK && !(r->ctx = vn_ctx_create())) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    if (rc == VN_OK) {
        vn_ctx_set_keep(r->ctx, (size_t)(cfg->train.keep_mb * 1e6));
        res->params = vn_state_numel(vn_yolo_state(r->model), VN_STATE_PARAM);
        init_state(r);
        rc = resume(r, err);
    }
    if (rc == VN_OK) rc = open_outputs(r, err);
    if (rc == VN_OK) {
        bool ramp = cfg->detect.warmup_accumulate && cfg->optim.update_freq > 1;
        fprintf(r->out, "detector: %lld parameters, %d classes, imgsz %d, %lld train images (%lld "
                "steps per epoch of batch %d x update_freq %lld%s), %lld val images\n",
                (long long)res->params, r->data.nc, r->imgsz,
                (long long)vn_det_dataset_size(r->train), (long long)r->steps_per_ep, r->B,
                (long long)cfg->optim.update_freq,
                ramp ? "; more while the warmup ramps the accumulation up from 1" : "",
                (long long)(r->val ? vn_det_dataset_size(r->val) : 0));
        res->already_finished = r->st.finished;
        rc = train_epochs(r, res, err);
    } else if (r->lock_fd >= 0) { /* a refused start undoes its folders, while the lock is held */
        vn__run_folder_undo(cfg->output.dir, &r->made);
    }
    add_elapsed(r);
    res->state.epoch = r->st.epoch;
    res->state.step = r->st.step;
    res->state.elapsed = r->st.elapsed;
    res->state.finished = r->st.finished;
    res->state.best_top1 = -1;
    res->state.best_model_top1 = -1;
    for (int e = 0; e < VN_TRAIN_MAX_EMAS; e++) res->state.best_ema_top1[e] = -1;
    res->seconds = vn_monotonic() - session0;
    drun_free(r);
    return rc;
}
