/* The batch loader: per-epoch permutation, worker threads filling fixed slots of a ring of
 * batches, in-order hand-out, bad-file replacement and accounting. See vn_loader.h. */
#include "data/vn_loader.h"

#include "data/vn_augment.h"

#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Stream tags, so the generators of different purposes never coincide. */
#define TAG_PERM 0x5045524D55544531ull /* permutation: stream_b of (seed, epoch, .) */
#define TAG_REPL 0x5245504C41434531ull /* stand-ins for bad files: seed ^ TAG_REPL */
#define TAG_MIX 0x4D49585550435554ull  /* mixup / cutmix: seed ^ TAG_MIX */

#define MAX_WORKERS 64
#define MSG_LEN (VN_ERROR_MSG_MAX + 128)

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD };

typedef struct bad_list {
    int64_t *idx;
    int n, cap;
} bad_list;

typedef struct slot {
    enum slot_state state;
    uint64_t gen;
    int64_t batch;      /* batch number within the current run */
    int64_t position;   /* first position in the epoch's order */
    int n;              /* samples in the batch */
    int done;           /* samples finished */
    vn_tensor *images;
    int32_t *labels;
    int64_t *indices;
    float *soft;
    bad_list *bad;      /* per sample: bad files met while filling it, in order */
    int fail_sample;    /* first sample whose failure stops the run, or -1 */
    char fail_msg[MSG_LEN];
    vn_mix_params mix;
} slot;

/* Per-thread decoding and transform state. */
typedef struct worker_ctx {
    vn_decoder *dec;
    vn_image img;
    vn_tf_scratch scratch;
} worker_ctx;

typedef struct worker_arg {
    vn_loader *ld;
    worker_ctx *w;
} worker_arg;

struct vn_loader {
    vn_loader_config cfg;
    char *root;
    vn_dataset *ds;
    vn_transform tf;
    vn_train_aug aug;
    vn_mix_config mixcfg;
    bool mixing;
    int B, S, C, K;
    int64_t n;

    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* workers: tasks or free slots appeared, or quit */
    pthread_cond_t cv_ready; /* consumer: a batch became ready; start_epoch: workers idle */
    uint64_t gen;
    int64_t epoch, start, end; /* positions [start, end) of the current run */
    int64_t *perm;
    int64_t run_batches, total_tasks, next_task, next_deliver;
    int active;
    bool quit;
    bool failed;
    int fail_code;
    char fail_msg[MSG_LEN];
    int depth;
    slot *slots;

    atomic_uchar *known_bad; /* per dataset index: 1 once known unreadable (a cache only) */
    char **reason;           /* per dataset index: why it is bad (set once, under bad_mu) */
    pthread_mutex_t bad_mu;
    uint8_t *reported;       /* consumer side: already counted and logged */
    int64_t n_reported;

    double wait_s;
    pthread_t threads[MAX_WORKERS];
    int n_threads;
    worker_ctx ctx[MAX_WORKERS + 1]; /* per worker; the last one for workers == 0 */
    worker_arg args[MAX_WORKERS];
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void vn_loader_config_init(vn_loader_config *c)
{
    memset(c, 0, sizeof *c);
    c->input_size = 224;
    c->channels = 3;
    c->augment = VN_AUGMENT_RRC;
    c->scale[0] = 0.08f;
    c->scale[1] = 1.0f;
    c->ratio[0] = 3.0f / 4.0f;
    c->ratio[1] = 4.0f / 3.0f;
    c->interpolation = VN_INTERP_BILINEAR;
    c->crop_pct = 0.875;
    c->hflip = 0.5f;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, std, sizeof std);
    c->remode = VN_ERASE_PIXEL;
    c->recount = 1;
    c->mixup_switch_prob = 0.5f;
    c->mixup_prob = 1.0f;
    c->label_smoothing = 0.1f;
    c->batch_size = 64;
    c->drop_last = true;
    c->shuffle = true;
    c->workers = 2;
    c->prefetch = 3;
    c->max_bad_fraction = 0.01;
}

void vn_loader_config_eval(vn_loader_config *c)
{
    c->augment = VN_AUGMENT_NONE;
    c->hflip = 0;
    c->auto_augment = NULL;
    c->color_jitter = 0;
    c->reprob = 0;
    c->mixup_alpha = 0;
    c->cutmix_alpha = 0;
    c->shuffle = false;
    c->drop_last = false;
}

static int worker_ctx_init(worker_ctx *w, vn_error *err)
{
    memset(w, 0, sizeof *w);
    return vn_decoder_create(&w->dec, err);
}

static void worker_ctx_free(worker_ctx *w)
{
    vn_decoder_destroy(w->dec);
    vn_image_free(&w->img);
    vn_tf_scratch_free(&w->scratch);
}

static int bad_push(bad_list *b, int64_t idx)
{
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 4;
        int64_t *p = realloc(b->idx, (size_t)cap * sizeof *p);
        if (!p) return VN_ERR_NOMEM;
        b->idx = p;
        b->cap = cap;
    }
    b->idx[b->n++] = idx;
    return VN_OK;
}

static void remember_bad(vn_loader *ld, int64_t idx, const char *why)
{
    pthread_mutex_lock(&ld->bad_mu);
    if (!ld->reason[idx]) ld->reason[idx] = strdup(why);
    pthread_mutex_unlock(&ld->bad_mu);
    atomic_store(&ld->known_bad[idx], 1);
}

static const char *bad_reason(vn_loader *ld, int64_t idx)
{
    pthread_mutex_lock(&ld->bad_mu);
    const char *r = ld->reason[idx];
    pthread_mutex_unlock(&ld->bad_mu);
    return r ? r : "unreadable (out of memory recording the reason)";
}

/* Records why sample j stops the run; the lowest sample wins, so the message does not depend
 * on which worker got there first. The slot's fail fields are shared by its samples. */
static void set_fail(vn_loader *ld, slot *s, int j, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_fail(vn_loader *ld, slot *s, int j, const char *fmt, ...)
{
    pthread_mutex_lock(&ld->mu);
    if (s->fail_sample < 0 || j < s->fail_sample) {
        s->fail_sample = j;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->fail_msg, sizeof s->fail_msg, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&ld->mu);
}

/* Fills sample j of slot s from position pos: the first readable file at pos, pos+1, ...
 * Only this sample's fields of the slot are written, so workers need no lock here. */
static void fill_sample(vn_loader *ld, worker_ctx *w, slot *s, int j, int64_t pos,
                        int64_t epoch, const int64_t *perm)
{
    const int64_t n = ld->n;
    float *out = s->images->data + (size_t)j * ld->S * ld->S * ld->C;
    for (int64_t a = 0; a < n; a++) {
        if (a == 1 && ld->cfg.empty_bad_slots) {
            /* The file at this position is bad: the slot stays empty. */
            memset(out, 0, (size_t)ld->S * ld->S * ld->C * sizeof *out);
            s->labels[j] = -1;
            s->indices[j] = -1;
            return;
        }
        int64_t idx = perm[(pos + a) % n];
        if (atomic_load(&ld->known_bad[idx])) {
            /* Met before (this or an earlier epoch): same outcome as decoding it again. */
            if (bad_push(&s->bad[j], idx)) goto nomem;
            if (ld->cfg.fail_fast) {
                set_fail(ld, s, j, "bad image (fail_fast is set): %s", bad_reason(ld, idx));
                return;
            }
            continue;
        }
        char path[4096];
        vn_error e = {0};
        vn_rng rng;
        if (a == 0)
            vn_rng_seed(&rng, ld->cfg.seed, (uint64_t)epoch, (uint64_t)idx);
        else
            vn_rng_seed(&rng, ld->cfg.seed ^ TAG_REPL, (uint64_t)epoch, (uint64_t)pos);
        int rc = vn_dataset_path(ld->ds, idx, path, sizeof path)
                     ? VN_OK
                     : vn_error_set(&e, VN_ERR_INVALID, "path too long");
        if (!rc)
            rc = vn_image_decode_file(w->dec, path, ld->C, ld->cfg.max_image_pixels, &w->img,
                                      NULL, &e);
        bool decoded = rc == VN_OK;
        if (!rc) rc = vn_transform_apply(&ld->tf, &w->img, &rng, out, &w->scratch, NULL, NULL, &e);
        if (rc == VN_OK) {
            s->labels[j] = vn_dataset_label(ld->ds, idx);
            s->indices[j] = idx;
            return;
        }
        if (rc == VN_ERR_NOMEM) goto nomem;
        if (decoded) { /* read fine, but the transform cannot use it: name the file */
            char why[sizeof path + sizeof e.msg + 4];
            snprintf(why, sizeof why, "%s: %s", path, e.msg);
            snprintf(e.msg, sizeof e.msg, "%s", why);
        }
        remember_bad(ld, idx, e.msg);
        if (bad_push(&s->bad[j], idx)) goto nomem;
        if (ld->cfg.fail_fast) {
            set_fail(ld, s, j, "bad image (fail_fast is set): %s", e.msg);
            return;
        }
    }
    set_fail(ld, s, j, "%s: none of the %lld images could be read and transformed (see the "
             "warnings above)", ld->root, (long long)n);
    return;
nomem:
    set_fail(ld, s, j, "out of memory while loading a batch");
}

/* Mixing happens once all samples are in, by whoever finished the batch. */
static void finish_batch(vn_loader *ld, slot *s, int64_t epoch)
{
    s->mix = (vn_mix_params){.lam = 1.0};
    if (!ld->mixing || s->fail_sample >= 0) return;
    vn_rng rng;
    vn_rng_seed(&rng, ld->cfg.seed ^ TAG_MIX, (uint64_t)epoch, (uint64_t)s->position);
    vn_mix_draw(&ld->mixcfg, &rng, ld->S, ld->S, &s->mix);
    vn_mix_apply(&s->mix, s->images->data, s->n, ld->S, ld->S, ld->C);
    vn_mix_targets(&ld->mixcfg, s->mix.lam, s->labels, s->n, s->soft);
}

/* Shards of the run (data-parallel): every batch, or every shard_count-th from shard_index. */
static int64_t shard_count(const vn_loader *ld)
{
    return ld->cfg.shard_count > 1 ? ld->cfg.shard_count : 1;
}

/* First position of the run's batch k (k-th batch this loader hands out). */
static int64_t batch_position(const vn_loader *ld, int64_t k)
{
    int64_t K = shard_count(ld), r = K > 1 ? ld->cfg.shard_index : 0;
    return ld->start + (k * K + r) * ld->B;
}

/* Claims slot for batch k of the current run if it is free (caller holds mu). */
static bool claim_slot(vn_loader *ld, int64_t k)
{
    slot *s = &ld->slots[k % ld->depth];
    if (s->gen == ld->gen && s->batch == k && s->state == SLOT_FILLING) return true;
    if (s->state != SLOT_FREE) return false;
    s->state = SLOT_FILLING;
    s->gen = ld->gen;
    s->batch = k;
    s->position = batch_position(ld, k);
    int64_t left = ld->end - s->position;
    s->n = (int)(left < ld->B ? left : ld->B);
    s->done = 0;
    s->fail_sample = -1;
    s->fail_msg[0] = '\0';
    for (int j = 0; j < ld->B; j++) s->bad[j].n = 0;
    s->images->shape[0] = s->n;
    s->images->numel = (int64_t)s->n * ld->S * ld->S * ld->C;
    return true;
}

static void *worker_main(void *arg)
{
    vn_loader *ld = ((worker_arg *)arg)->ld;
    worker_ctx *w = ((worker_arg *)arg)->w;
    pthread_mutex_lock(&ld->mu);
    while (!ld->quit) {
        if (ld->next_task >= ld->total_tasks || !claim_slot(ld, ld->next_task / ld->B)) {
            pthread_cond_wait(&ld->cv_work, &ld->mu);
            continue;
        }
        int64_t t = ld->next_task++;
        slot *s = &ld->slots[(t / ld->B) % ld->depth];
        uint64_t gen = ld->gen;
        int64_t epoch = ld->epoch, pos = batch_position(ld, t / ld->B) + t % ld->B;
        const int64_t *perm = ld->perm;
        ld->active++;
        pthread_mutex_unlock(&ld->mu);

        fill_sample(ld, w, s, (int)(t % ld->B), pos, epoch, perm);

        pthread_mutex_lock(&ld->mu);
        /* start_epoch waits for active == 0 before touching slots, so s is still ours. */
        if (gen == ld->gen && ++s->done == s->n) {
            pthread_mutex_unlock(&ld->mu);
            finish_batch(ld, s, epoch);
            pthread_mutex_lock(&ld->mu);
            s->state = SLOT_READY;
            pthread_cond_broadcast(&ld->cv_ready);
        }
        ld->active--;
        if (ld->active == 0) pthread_cond_broadcast(&ld->cv_ready);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

static void loader_free(vn_loader *ld)
{
    if (ld->slots) {
        for (int i = 0; i < ld->depth; i++) {
            slot *s = &ld->slots[i];
            vn_tensor_free(s->images);
            free(s->labels);
            free(s->indices);
            free(s->soft);
            if (s->bad)
                for (int j = 0; j < ld->B; j++) free(s->bad[j].idx);
            free(s->bad);
        }
    }
    free(ld->slots);
    if (ld->reason)
        for (int64_t i = 0; i < ld->n; i++) free(ld->reason[i]);
    free(ld->reason);
    free(ld->known_bad);
    free(ld->reported);
    free(ld->perm);
    for (int i = 0; i <= MAX_WORKERS; i++) worker_ctx_free(&ld->ctx[i]);
    vn_dataset_free(ld->ds);
    free(ld->root);
    free(ld);
}

static int loader_check_config(const vn_loader_config *c, vn_error *err)
{
    if (!c->root) return vn_error_set(err, VN_ERR_INVALID, "data loader: no root folder given");
    if (c->batch_size <= 0 || c->batch_size > (1 << 20))
        return vn_error_set(err, VN_ERR_INVALID, "data loader: batch_size must be in 1..%d, got %d",
                            1 << 20, c->batch_size);
    if (c->shard_count > 1 && (c->shard_index < 0 || c->shard_index >= c->shard_count))
        return vn_error_set(err, VN_ERR_INVALID, "data loader: shard_index %d is not in 0..%d",
                            c->shard_index, c->shard_count - 1);
    if (c->workers < 0 || c->workers > MAX_WORKERS)
        return vn_error_set(err, VN_ERR_INVALID, "data loader: workers must be in 0..%d, got %d",
                            MAX_WORKERS, c->workers);
    if (c->prefetch < 1 || c->prefetch > 64)
        return vn_error_set(err, VN_ERR_INVALID, "data loader: prefetch must be in 1..64, got %d",
                            c->prefetch);
    if (!(c->max_bad_fraction >= 0 && c->max_bad_fraction <= 1))
        return vn_error_set(err, VN_ERR_INVALID,
                            "data loader: max_bad_fraction must be in [0, 1], got %g",
                            c->max_bad_fraction);
    if (c->augment != VN_AUGMENT_NONE && c->augment != VN_AUGMENT_RRC &&
        c->augment != VN_AUGMENT_RANDOM_CROP)
        return vn_error_set(err, VN_ERR_INVALID, "data loader: unknown augment mode %d",
                            (int)c->augment);
    return VN_OK;
}

/* The eval transform and the train-time augmentations; errors carry the loader's prefix. */
static int loader_init_transforms(vn_loader *ld, const vn_loader_config *c, vn_error *err)
{
    int rc = vn_transform_init(&ld->tf, c->input_size, c->channels,
                               c->augment == VN_AUGMENT_RRC, c->scale, c->ratio,
                               c->interpolation, c->crop_pct, c->hflip, c->mean, c->std, err);
    if (!rc) {
        vn_train_aug_config ac = {c->auto_augment, c->color_jitter, c->reprob,
                                  (vn_erase_mode)c->remode, c->recount};
        rc = vn_train_aug_init(&ld->aug, &ac, c->input_size, c->channels, c->mean,
                               c->interpolation, err);
        ld->cfg.auto_augment = NULL; /* parsed; the caller's string is not kept */
        if (!rc && vn_train_aug_active(&ld->aug)) ld->tf.aug = &ld->aug;
    }
    if (rc) {
        vn_error_prefix(err, "data loader: ");
        return rc;
    }
    ld->tf.eval_resize = c->eval_resize;
    ld->tf.crop_padding = c->augment == VN_AUGMENT_RANDOM_CROP ? 4 : 0;
    return VN_OK;
}

/* Scans the dataset, settles the class count and checks the mixup/cutmix settings. */
static int loader_scan(vn_loader *ld, const vn_loader_config *c, vn_error *err)
{
    int rc = vn_dataset_scan(c->root, c->class_names, c->n_class_names, &ld->ds, err);
    if (rc) return rc;
    ld->n = vn_dataset_size(ld->ds);
    ld->B = c->batch_size;
    ld->S = c->input_size;
    ld->C = c->channels;
    int found = vn_dataset_num_classes(ld->ds);
    ld->K = c->num_classes > 0 ? c->num_classes : found;
    if (ld->K < found)
        return vn_error_set(err, VN_ERR_INVALID,
                            "data loader: %s has %d classes but num_classes is %d", c->root,
                            found, c->num_classes);
    ld->mixcfg = (vn_mix_config){c->mixup_alpha, c->cutmix_alpha, c->mixup_switch_prob,
                                 c->mixup_prob, c->label_smoothing, ld->K};
    ld->mixing = vn_mix_active(&ld->mixcfg);
    if (ld->mixing && (ld->B % 2 != 0 || !c->drop_last))
        return vn_error_set(err, VN_ERR_INVALID,
                            "data loader: mixup/cutmix pairs sample i with sample B-1-i, so it "
                            "needs an even batch_size (got %d) and drop_last",
                            ld->B);
    if (ld->mixing && (c->mixup_alpha < 0 || c->cutmix_alpha < 0 || !(c->label_smoothing >= 0) ||
                       c->label_smoothing >= 1 || !(c->mixup_prob >= 0 && c->mixup_prob <= 1) ||
                       !(c->mixup_switch_prob >= 0 && c->mixup_switch_prob <= 1)))
        return vn_error_set(err, VN_ERR_INVALID,
                            "data loader: mixup settings out of range (alphas >= 0, probabilities "
                            "in [0, 1], label_smoothing in [0, 1))");
    return VN_OK;
}

/* The per-sample bookkeeping and the prefetch slots; false when out of memory. */
static bool loader_alloc_buffers(vn_loader *ld)
{
    ld->slots = calloc((size_t)ld->depth, sizeof *ld->slots);
    ld->known_bad = calloc((size_t)ld->n, sizeof *ld->known_bad);
    ld->reason = calloc((size_t)ld->n, sizeof *ld->reason);
    ld->reported = calloc((size_t)ld->n, 1);
    ld->perm = malloc((size_t)ld->n * sizeof *ld->perm);
    if (!ld->slots || !ld->known_bad || !ld->reason || !ld->reported || !ld->perm) return false;
    for (int i = 0; i < ld->depth; i++) {
        slot *s = &ld->slots[i];
        s->state = SLOT_FREE;
        s->batch = -1;
        s->images = vn_tensor_new4(ld->B, ld->S, ld->S, ld->C, false);
        s->labels = calloc((size_t)ld->B, sizeof *s->labels);
        s->indices = calloc((size_t)ld->B, sizeof *s->indices);
        s->bad = calloc((size_t)ld->B, sizeof *s->bad);
        if (ld->mixing) s->soft = calloc((size_t)ld->B * ld->K, sizeof *s->soft);
        if (!s->images || !s->labels || !s->indices || !s->bad || (ld->mixing && !s->soft))
            return false;
    }
    return true;
}

/* Initialises the locks and starts the workers; on failure the loader is closed. */
static int loader_start_threads(vn_loader *ld, int workers, vn_error *err)
{
    pthread_mutex_init(&ld->mu, NULL);
    pthread_mutex_init(&ld->bad_mu, NULL);
    pthread_cond_init(&ld->cv_work, NULL);
    pthread_cond_init(&ld->cv_ready, NULL);
    ld->failed = true; /* until start_epoch */
    ld->fail_code = VN_ERR_STATE;
    snprintf(ld->fail_msg, sizeof ld->fail_msg,
             "data loader: call vn_loader_start_epoch before vn_loader_next");
    for (int t = 0; t < workers; t++) {
        ld->args[t] = (worker_arg){ld, &ld->ctx[t]};
        if (pthread_create(&ld->threads[t], NULL, worker_main, &ld->args[t]) != 0) {
            vn_loader_close(ld);
            return vn_error_set(err, VN_ERR_NOMEM, "data loader: cannot start worker thread %d", t);
        }
        ld->n_threads++;
    }
    return VN_OK;
}

int vn_loader_open(const vn_loader_config *cfg, vn_loader **out, vn_error *err)
{
    *out = NULL;
    const vn_loader_config *c = cfg;
    int rc = loader_check_config(c, err);
    if (rc) return rc;
    vn_loader *ld = calloc(1, sizeof *ld);
    if (!ld) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    ld->cfg = *c;
    ld->depth = c->prefetch;
    if (!(ld->root = strdup(c->root))) {
        free(ld);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    ld->cfg.root = ld->root;
    ld->cfg.class_names = NULL; /* not kept: the dataset holds its own copy */
    rc = loader_init_transforms(ld, c, err);
    if (!rc) rc = loader_scan(ld, c, err);
    if (rc) goto fail_early;
    if (!loader_alloc_buffers(ld)) {
        rc = vn_error_set(err, VN_ERR_NOMEM,
                          "data loader: out of memory for %d batches of %d x %dx%dx%d", ld->depth,
                          ld->B, ld->S, ld->S, ld->C);
        goto fail_early;
    }
    /* Decoders are made here so that a failure is reported by open, not lost in a thread. */
    rc = worker_ctx_init(&ld->ctx[MAX_WORKERS], err);
    for (int t = 0; !rc && t < c->workers; t++) rc = worker_ctx_init(&ld->ctx[t], err);
    if (rc) goto fail_early;
    rc = loader_start_threads(ld, c->workers, err);
    if (rc) return rc;
    *out = ld;
    return VN_OK;
fail_early:
    loader_free(ld);
    return rc;
}

void vn_loader_close(vn_loader *ld)
{
    if (!ld) return;
    pthread_mutex_lock(&ld->mu);
    ld->quit = true;
    ld->gen++;
    pthread_cond_broadcast(&ld->cv_work);
    pthread_mutex_unlock(&ld->mu);
    for (int t = 0; t < ld->n_threads; t++) pthread_join(ld->threads[t], NULL);
    pthread_mutex_destroy(&ld->mu);
    pthread_mutex_destroy(&ld->bad_mu);
    pthread_cond_destroy(&ld->cv_work);
    pthread_cond_destroy(&ld->cv_ready);
    loader_free(ld);
}

int vn_loader_start_epoch(vn_loader *ld, int64_t epoch, int64_t position, vn_error *err)
{
    if (epoch < 0 || position < 0 || position > ld->n)
        return vn_error_set(err, VN_ERR_INVALID,
                            "data loader: cannot start epoch %lld at position %lld (the epoch has "
                            "%lld samples)",
                            (long long)epoch, (long long)position, (long long)ld->n);
    pthread_mutex_lock(&ld->mu);
    ld->gen++;
    ld->total_tasks = 0; /* no new work for the old epoch */
    while (ld->active > 0) pthread_cond_wait(&ld->cv_ready, &ld->mu);
    for (int i = 0; i < ld->depth; i++)
        if (ld->slots[i].state != SLOT_HELD) ld->slots[i].state = SLOT_FREE;
    /* No worker reads perm now: there are no tasks and none in flight. */
    for (int64_t i = 0; i < ld->n; i++) ld->perm[i] = i;
    if (ld->cfg.shuffle) {
        vn_rng rng;
        vn_rng_seed(&rng, ld->cfg.seed, (uint64_t)epoch, TAG_PERM);
        for (int64_t i = ld->n - 1; i > 0; i--) {
            int64_t j = (int64_t)vn_rng_below(&rng, (uint64_t)i + 1);
            int64_t t = ld->perm[i];
            ld->perm[i] = ld->perm[j];
            ld->perm[j] = t;
        }
    }
    ld->epoch = epoch;
    ld->start = position;
    int64_t left = ld->n - position;
    ld->end = ld->cfg.drop_last ? position + left / ld->B * ld->B : ld->n;
    int64_t all = (ld->end - ld->start + ld->B - 1) / ld->B, K = shard_count(ld);
    int64_t r = K > 1 ? ld->cfg.shard_index : 0;
    ld->run_batches = all > r ? (all - r + K - 1) / K : 0;
    /* Samples of this shard: full batches, and the run's last batch may be short. */
    int64_t samples = 0;
    if (ld->run_batches > 0) {
        int64_t last = batch_position(ld, ld->run_batches - 1), left = ld->end - last;
        samples = (ld->run_batches - 1) * ld->B + (left < ld->B ? left : ld->B);
    }
    ld->total_tasks = ld->n_threads > 0 ? samples : 0;
    ld->next_task = 0;
    ld->next_deliver = 0;
    ld->failed = false;
    pthread_cond_broadcast(&ld->cv_work);
    pthread_mutex_unlock(&ld->mu);
    return VN_OK;
}

static int fail(vn_loader *ld, int code, vn_error *err)
{
    return vn_error_set(err, code, "%s", ld->fail_msg);
}

/* Consumer-side accounting of the bad files a batch met, in batch order. Returns an error
 * when the run must stop. */
static int account_bad(vn_loader *ld, slot *s, vn_error *err)
{
    int64_t last = -1;
    for (int j = 0; j < s->n; j++) {
        for (int b = 0; b < s->bad[j].n; b++) {
            int64_t idx = s->bad[j].idx[b];
            last = idx;
            if (ld->reported[idx]) continue;
            ld->reported[idx] = 1;
            ld->n_reported++;
            if (!ld->cfg.fail_fast)
                vn_log(VN_LOG_WARN, "%s (skipped; %s)", bad_reason(ld, idx),
                       ld->cfg.empty_bad_slots ? "not counted"
                                               : "its slot takes the next image in order");
        }
    }
    if (s->fail_sample >= 0) {
        snprintf(ld->fail_msg, sizeof ld->fail_msg, "%s", s->fail_msg);
        ld->fail_code = VN_ERR_FORMAT;
        return fail(ld, ld->fail_code, err);
    }
    if (last >= 0 && (double)ld->n_reported > ld->cfg.max_bad_fraction * (double)ld->n) {
        snprintf(ld->fail_msg, sizeof ld->fail_msg,
                 "%s: %lld of %lld images could not be used (%.2f%%), more than max_bad_fraction "
                 "%.2f%%; last: %s",
                 ld->root, (long long)ld->n_reported, (long long)ld->n,
                 100.0 * (double)ld->n_reported / (double)ld->n,
                 100.0 * ld->cfg.max_bad_fraction, bad_reason(ld, last));
        ld->fail_code = VN_ERR_FORMAT;
        return fail(ld, ld->fail_code, err);
    }
    return VN_OK;
}

int vn_loader_next(vn_loader *ld, vn_batch *batch, vn_error *err)
{
    memset(batch, 0, sizeof *batch);
    batch->slot_ = -1;
    double t0 = now_s();
    pthread_mutex_lock(&ld->mu);
    if (ld->failed) {
        int code = ld->fail_code;
        pthread_mutex_unlock(&ld->mu);
        return fail(ld, code, err);
    }
    batch->epoch = ld->epoch;
    if (ld->next_deliver >= ld->run_batches) {
        batch->position = batch->next_position = ld->end;
        pthread_mutex_unlock(&ld->mu);
        return VN_OK;
    }
    int64_t k = ld->next_deliver;
    slot *s = &ld->slots[k % ld->depth];
    for (;;) {
        if (s->state == SLOT_HELD) {
            pthread_mutex_unlock(&ld->mu);
            return vn_error_set(err, VN_ERR_STATE,
                                "data loader: %d batches are held; release one before asking for "
                                "the next (prefetch = %d)",
                                ld->depth, ld->depth);
        }
        if (ld->n_threads == 0) {
            /* No workers: fill the batch here, in order. */
            claim_slot(ld, k);
            pthread_mutex_unlock(&ld->mu);
            for (int j = 0; j < s->n; j++)
                fill_sample(ld, &ld->ctx[MAX_WORKERS], s, j, s->position + j, ld->epoch, ld->perm);
            finish_batch(ld, s, ld->epoch);
            pthread_mutex_lock(&ld->mu);
            s->state = SLOT_READY;
        }
        if (s->state == SLOT_READY && s->gen == ld->gen && s->batch == k) break;
        pthread_cond_wait(&ld->cv_ready, &ld->mu);
    }
    s->state = SLOT_HELD;
    ld->next_deliver++;
    pthread_mutex_unlock(&ld->mu);

    batch->size = s->n;
    batch->images = s->images;
    batch->labels = s->labels;
    batch->soft_targets = ld->mixing ? s->soft : NULL;
    batch->indices = s->indices;
    batch->position = s->position;
    batch->next_position = s->position + s->n;
    batch->mix_lam = s->mix.lam;
    batch->mix_cutmix = s->mix.cutmix;
    batch->mix_box[0] = s->mix.yl;
    batch->mix_box[1] = s->mix.yh;
    batch->mix_box[2] = s->mix.xl;
    batch->mix_box[3] = s->mix.xh;
    batch->slot_ = (int)(s - ld->slots);
    int rc = account_bad(ld, s, err);
    ld->wait_s += now_s() - t0;
    if (rc) {
        vn_loader_release(ld, batch);
        pthread_mutex_lock(&ld->mu);
        ld->failed = true;
        pthread_mutex_unlock(&ld->mu);
        memset(batch, 0, sizeof *batch);
        batch->slot_ = -1;
        return rc;
    }
    return VN_OK;
}

void vn_loader_release(vn_loader *ld, vn_batch *batch)
{
    if (!batch || batch->slot_ < 0 || batch->slot_ >= ld->depth) return;
    pthread_mutex_lock(&ld->mu);
    slot *s = &ld->slots[batch->slot_];
    if (s->state == SLOT_HELD) s->state = SLOT_FREE;
    pthread_cond_broadcast(&ld->cv_work);
    pthread_mutex_unlock(&ld->mu);
    batch->slot_ = -1;
    batch->size = 0;
    batch->images = NULL;
}

int64_t vn_loader_num_samples(const vn_loader *ld) { return ld->n; }
int64_t vn_loader_batches_per_epoch(const vn_loader *ld)
{
    return ld->cfg.drop_last ? ld->n / ld->B : (ld->n + ld->B - 1) / ld->B;
}
int vn_loader_num_classes(const vn_loader *ld) { return vn_dataset_num_classes(ld->ds); }
const char *const *vn_loader_class_names(const vn_loader *ld)
{
    return vn_dataset_class_names(ld->ds);
}
const vn_dataset *vn_loader_dataset(const vn_loader *ld) { return ld->ds; }
double vn_loader_wait_seconds(const vn_loader *ld) { return ld->wait_s; }
int64_t vn_loader_bad_files(const vn_loader *ld) { return ld->n_reported; }

int vn_load_eval_image(const char *path, const vn_loader_config *cfg, float *out, vn_error *err)
{
    vn_transform tf;
    int rc = vn_transform_init(&tf, cfg->input_size, cfg->channels, false, cfg->scale,
                               cfg->ratio, cfg->interpolation, cfg->crop_pct, 0.0f, cfg->mean,
                               cfg->std, err);
    if (rc) return rc;
    tf.eval_resize = cfg->eval_resize;
    vn_image img = {0};
    rc = vn_image_decode_file(NULL, path, cfg->channels, cfg->max_image_pixels, &img, NULL, err);
    if (!rc) {
        rc = vn_transform_apply(&tf, &img, NULL, out, NULL, NULL, NULL, err);
        if (rc) vn_error_prefix(err, "%s: ", path);
    }
    vn_image_free(&img);
    return rc;
}
