/* Whole-model benchmark (issue 8): full VanillaNet training steps or deploy-mode inference on
 * random data, timed against the same program in PyTorch (bench/torch_baseline.py; both are
 * run by bench/compare.sh, which prints the ratios).
 *
 *   bench_train [--model NAME | --dims D0,D1,.. --strides S0,S1,..] [--in-chans C]
 *               [--classes K] [--act-num A] [--drop-rate P] [--batch N] [--size S]
 *               [--mode train|deploy] [--steps N] [--warmup W] [--threads T] [--seed S]
 *               [--ema DECAY] [--profile] [--sgemm-peak] [--sgemm-only]
 *
 * train:  the model in training mode (batch statistics), change_act(0.5); per step
 *         forward, cross-entropy against random labels, backward, SGD (momentum 0.9) step,
 *         zero_grad, context reset. The input and labels are made once, outside the timing.
 *         --ema DECAY adds the recipe's model EMA (the trainer's: a second model instance
 *         whose parameters and BatchNorm buffers follow the live ones, timm's ModelEma, the
 *         official default 0.9999) updated after every optimizer step, inside the timed
 *         optimizer phase; its memory is part of the peak RSS.
 * deploy: the training model built, change_act(1), switch_to_deploy, eval mode, grad off;
 *         per step one forward and a context reset.
 *
 * Reported: median and minimum step time over --steps timed steps after --warmup untimed
 * ones, images/s from the median, achieved GFLOPS, process peak RSS (getrusage ru_maxrss,
 * which covers everything the process ever touched: model, optimizer state, step memory,
 * BLAS buffers) and the context's step-pool high-water mark.
 *
 * FLOPs are counted from the model report (vn_vanillanet_report): multiply-adds of every
 * convolution (1x1 convs, the 4x4 stem, the depthwise 7x7 of the activations, the
 * classifier; BatchNorm, pooling and activations count nothing) x 2 FLOPs per multiply-add
 * x batch. A training step counts 3x the forward of the training form (the backward computes
 * both the input and the weight gradient of each conv, each as costly as its forward);
 * deploy counts the forward of the merged deploy form.
 *
 * --profile prints the op profile of the timed steps (autograd/vn_profile.h): each op's
 * forward, backward and recompute time, against the steps' wall time.
 *
 * --gemm-bound (training form; implies --sgemm-peak): the ceiling the model's own GEMM shapes
 * allow. For every convolution with groups 1 (1x1 and the patchify stem, as GEMMs) it times
 * OpenBLAS sgemm on the shapes of a training step: forward [B*Ho*Wo x Cin*k*k] x [.. x Cout],
 * the input gradient and the weight gradient (median of 5 after a warm-up), counts the
 * depthwise convolutions as if they ran at the 2048 sgemm's rate, and prints the utilisation a
 * step would reach if everything else (BatchNorm, activations, pools, the optimizer) took no
 * time: FLOPs of the step / that time / the 2048 sgemm's GFLOPS.
 *
 * --sgemm-peak also times a 2048x2048x2048 sgemm (OpenBLAS, same threads, median of 9 after
 * half a second of warm-up) after the model benchmark, so that utilisation = achieved / peak comes from
 * one run; its buffers are allocated after the peak RSS has been read. --sgemm-only skips
 * the model. On CPU it then times the same product through the library's own kernels
 * (gemm_gflops): where OpenBLAS runs AVX2 kernels on an AVX-512 CPU those are the faster, and
 * the utilisation is also given against the better of the two.
 *
 * --ab-kernels alternates the timed steps between this build's CPU kernels and the ones they
 * replaced (every product of the 1x1 and patchify convs in OpenBLAS, the depthwise conv's
 * 8-float kernels), same bytes either way, and prints the median step of each and their
 * ratio: an A/B that a machine drifting between faster and slower phases cannot skew, as it
 * skews two runs one after the other. Warm-up steps alternate too.
 *
 * The last lines are machine-readable, one per figure set, for compare.sh:
 *   RESULT ours mode=train model=vanillanet_5 batch=8 size=224 threads=2 step_ms=...
 *   RESULT ours sgemm n=2048 threads=2 gflops=... */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/vn_base.h"
#include "models/vn_vanillanet.h"
#include "autograd/vn_profile.h"
#include "autograd/vn_testing.h"
#include "optim/vn_ema.h"
#include "train/vn_trainer.h"
#include "optim/vn_optim.h"

#define MAX_STEPS 1000

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU seconds of the whole process: cpu / (wall x threads) well below 1 means the cores
 * were shared with other programs during the run. */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (n >= 1); v is sorted in place. */
static double median_sorted(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

typedef struct options {
    vn_vanillanet_config cfg;
    char model_name[64]; /* variant name or "custom" */
    int batch, size, steps, warmup, threads;
    int keep_mb; /* train.keep_mb: recomputable outputs kept per step, MB */
    bool deploy;
    uint64_t seed;
    bool sgemm_peak, sgemm_only, profile, gemm_bound, bf16, ab;
    double ema; /* decay of the model EMA; 0: none */
    vn_device device;
} options;

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: bench_train [--model NAME | --dims D0,D1,.. --strides S0,S1,..]\n"
            "                   [--in-chans C] [--classes K] [--act-num A] [--drop-rate P]\n"
            "                   [--batch N] [--size S] [--mode train|deploy] [--steps N]\n"
            "                   [--warmup W] [--threads T] [--seed S] [--sgemm-peak]\n"
            "                   [--sgemm-only] [--device cpu|cuda] [--ema DECAY] [--profile]\n"
            "                   [--keep-mb MB] [--gemm-bound] [--bf16] [--ab-kernels]\n"
            "defaults: --model vanillanet_5 --batch 8 --size 224 --mode train --steps 5\n"
            "          --warmup 2 --threads 0 (all cores) --keep-mb 0 (as train.keep_mb: recompute\n"
            "          what backward can rebuild); --bf16: bf16 autocast of the GEMMs (cuda,\n"
            "          as train.precision: bf16)\n");
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_train: %s wants an integer in [%d, %d], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* "64,128,256" -> v[], *n; at most max entries. */
static int parse_list(const char *opt, const char *s, int *v, int max, int *n)
{
    char buf[256];
    if (strlen(s) >= sizeof buf) {
        fprintf(stderr, "bench_train: %s: list too long\n", opt);
        return -1;
    }
    strcpy(buf, s);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n >= max) {
            fprintf(stderr, "bench_train: %s: more than %d entries\n", opt, max);
            return -1;
        }
        if (parse_int(opt, tok, 1, 1 << 20, &v[*n]) != 0) return -1;
        (*n)++;
    }
    if (*n == 0) {
        fprintf(stderr, "bench_train: %s: empty list\n", opt);
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, options *o)
{
    vn_error err = {0};
    memset(o, 0, sizeof *o);
    o->batch = 8;
    o->size = 224;
    o->steps = 5;
    o->warmup = 2;
    o->seed = 1;
    const char *model = "vanillanet_5";
    int dims[VN_MAX_STAGES + 1], strides[VN_MAX_STAGES], nd = 0, ns = 0;
    int in_chans = -1, classes = -1, act_num = -1;
    double drop = 0.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--sgemm-peak")) {
            o->sgemm_peak = true;
            continue;
        }
        if (!strcmp(a, "--ab-kernels")) {
            o->ab = true;
            continue;
        }
        if (!strcmp(a, "--profile")) {
            o->profile = true;
            continue;
        }
        if (!strcmp(a, "--bf16")) {
            o->bf16 = true;
            continue;
        }
        if (!strcmp(a, "--gemm-bound")) {
            o->gemm_bound = o->sgemm_peak = true;
            continue;
        }
        if (!strcmp(a, "--sgemm-only")) {
            o->sgemm_peak = o->sgemm_only = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_train: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return -1;
        }
        const char *v = argv[++i];
        int rc = 0, tmp;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--dims")) rc = parse_list(a, v, dims, VN_MAX_STAGES + 1, &nd);
        else if (!strcmp(a, "--strides")) rc = parse_list(a, v, strides, VN_MAX_STAGES, &ns);
        else if (!strcmp(a, "--in-chans")) rc = parse_int(a, v, 1, 4096, &in_chans);
        else if (!strcmp(a, "--classes")) rc = parse_int(a, v, 1, 1 << 20, &classes);
        else if (!strcmp(a, "--act-num")) rc = parse_int(a, v, 0, 64, &act_num);
        else if (!strcmp(a, "--drop-rate")) {
            char *end;
            drop = strtod(v, &end);
            if (end == v || *end || !(drop >= 0 && drop < 1)) {
                fprintf(stderr, "bench_train: --drop-rate wants a number in [0, 1), got '%s'\n", v);
                rc = -1;
            }
        } else if (!strcmp(a, "--ema")) {
            char *end;
            o->ema = strtod(v, &end);
            if (end == v || *end || !(o->ema > 0 && o->ema <= 1)) {
                fprintf(stderr, "bench_train: --ema wants a decay in (0, 1], got '%s'\n", v);
                rc = -1;
            }
        } else if (!strcmp(a, "--batch")) rc = parse_int(a, v, 1, 1 << 16, &o->batch);
        else if (!strcmp(a, "--size")) rc = parse_int(a, v, 1, 1 << 14, &o->size);
        else if (!strcmp(a, "--steps")) rc = parse_int(a, v, 1, MAX_STEPS, &o->steps);
        else if (!strcmp(a, "--warmup")) rc = parse_int(a, v, 0, MAX_STEPS, &o->warmup);
        else if (!strcmp(a, "--threads")) rc = parse_int(a, v, 0, 1024, &o->threads);
        else if (!strcmp(a, "--keep-mb")) rc = parse_int(a, v, 0, 1 << 20, &o->keep_mb);
        else if (!strcmp(a, "--device")) {
            char why[200];
            if (vn_device_parse(v, &o->device) != VN_OK) {
                fprintf(stderr, "bench_train: --device wants cpu or cuda, got '%s'\n", v);
                rc = -1;
            } else if (vn_device_check(o->device, why, sizeof why) != VN_OK) {
                fprintf(stderr, "bench_train: --device %s: %s\n", v, why);
                rc = -1;
            }
        }
        else if (!strcmp(a, "--seed")) {
            rc = parse_int(a, v, 0, 1 << 30, &tmp);
            o->seed = (uint64_t)tmp;
        } else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "train")) o->deploy = false;
            else if (!strcmp(v, "deploy")) o->deploy = true;
            else {
                fprintf(stderr, "bench_train: --mode is train or deploy, got '%s'\n", v);
                rc = -1;
            }
        } else {
            fprintf(stderr, "bench_train: unknown option %s\n", a);
            usage(stderr);
            rc = -1;
        }
        if (rc != 0) return -1;
    }
    if (o->sgemm_only) return 0;

    if (nd || ns) {
        if (nd != ns + 1) {
            fprintf(stderr, "bench_train: --dims needs one entry more than --strides (%d dims, %d strides)\n",
                    nd, ns);
            return -1;
        }
        vn_vanillanet_config *c = &o->cfg;
        c->n_stages = ns;
        memcpy(c->dims, dims, (size_t)nd * sizeof *dims);
        memcpy(c->strides, strides, (size_t)ns * sizeof *strides);
        c->in_chans = 3;
        c->num_classes = 1000;
        c->act_num = 3;
        c->shortcut = VN_SHORTCUT_NONE;
        snprintf(o->model_name, sizeof o->model_name, "custom");
    } else {
        if (vn_vanillanet_variant(model, &o->cfg, &err) != VN_OK) {
            fprintf(stderr, "bench_train: --model: %s\n", err.msg);
            return -1;
        }
        snprintf(o->model_name, sizeof o->model_name, "%s", model);
    }
    if (in_chans > 0) o->cfg.in_chans = in_chans;
    if (classes > 0) o->cfg.num_classes = classes;
    if (act_num >= 0) o->cfg.act_num = act_num;
    o->cfg.drop_rate = (float)drop;
    if (vn_vanillanet_config_check(&o->cfg, &err) != VN_OK) {
        fprintf(stderr, "bench_train: model configuration: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* "64,128,256,512" for the RESULT line. */
static void join_ints(char *buf, size_t len, const int *v, int n)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < n && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%d", i ? "," : "", v[i]);
}

/* ---- sgemm ceiling ------------------------------------------------------------------------ */

/* The same product through the library's own AVX-512 kernels (autograd/ops_gemm.c), as a
 * 1x1 conv's forward runs it (x w^T); -1 where the build has none. Where OpenBLAS runs AVX2
 * kernels on an AVX-512 CPU these are the faster ones, and the model's products run on them,
 * so the honest ceiling is the better of the two. */
static double ours_peak_gflops(int n, int reps)
{
    if (!vn__gemm_compiled()) return -1;
    size_t sz = (size_t)n * (size_t)n;
    float *a = malloc(sz * sizeof *a), *b = malloc(sz * sizeof *b), *c = malloc(sz * sizeof *c);
    vn_ctx *ctx = vn_ctx_create();
    double g = -1;
    if (a && b && c && ctx) {
        for (size_t i = 0; i < sz; i++) a[i] = (float)(i % 97) * 0.01f - 0.5f, b[i] = a[(i * 7919) % sz];
        vn__gemm_args ga = {.m = n, .n = n, .k = n, .a = a, .a_row = n, .a_col = 1, .b = b,
                            .ldb = n, .b_trans = true, .c = c, .ldc = n, .init = VN__GEMM_ZERO};
        vn__gemm_set_mode(2);
        double t[16];
        if (reps > 16) reps = 16;
        bool ok = true;
        for (double w0 = now_s(); ok && now_s() - w0 < 0.5;) ok = vn__gemm(ctx, &ga);
        for (int r = 0; ok && r < reps; r++) {
            double t0 = now_s();
            ok = vn__gemm(ctx, &ga);
            t[r] = now_s() - t0;
        }
        vn__gemm_set_mode(1);
        if (ok) g = 2.0 * (double)n * (double)n * (double)n / median_sorted(t, reps) * 1e-9;
    }
    vn_ctx_destroy(ctx);
    free(a);
    free(b);
    free(c);
    return g;
}

static double sgemm_peak_gflops(int n, int reps)
{
    size_t sz = (size_t)n * (size_t)n;
    float *a = malloc(sz * sizeof *a), *b = malloc(sz * sizeof *b), *c = malloc(sz * sizeof *c);
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        fprintf(stderr, "bench_train: out of memory for the sgemm buffers\n");
        return -1;
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sz; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        a[i] = (float)(s >> 40) / (float)(1u << 24) - 0.5f;
        b[i] = a[(i * 7919) % sz];
    }
    double t[16];
    if (reps > 16) reps = 16;
    /* Warm-up of at least half a second: thread start-up, page faults of c, clock ramp. */
    for (double w0 = now_s(); now_s() - w0 < 0.5;)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t[r] = now_s() - t0;
    }
    double med = median_sorted(t, reps);
    free(a);
    free(b);
    free(c);
    return 2.0 * (double)n * (double)n * (double)n / med * 1e-9;
}

/* ---- the model ---------------------------------------------------------------------------- */

typedef struct bench {
    const options *o;
    vn_vanillanet *m;
    vn_ctx *ctx;
    vn_optim *opt;
    vn_vanillanet *ema_m; /* --ema: the EMA model and its updater */
    vn_ema *ema;
    vn_tensor *x;
    int32_t *labels;
    /* per-phase seconds of the current step (train: forward+loss, backward, optimizer) */
    double t_fwd, t_bwd, t_opt;
    /* step memory in use after forward + loss: what is kept for backward (largest step) */
    size_t saved_bytes;
} bench;

/* --ema: a second model whose float state follows the live model's (as train/trainer.c
 * builds its EMA copies), on the same device. */
static int bench_setup_ema(bench *b, vn_error *err)
{
    int rc = vn_vanillanet_create(&b->o->cfg, false, &b->ema_m, err);
    if (rc != VN_OK) return rc;
    vn_state_drop_grads(&b->ema_m->state); /* as the trainer: never differentiated */
    vn_vanillanet_set_training(b->ema_m, false);
    vn_vanillanet_change_act(b->ema_m, 0.5f);
    if (b->o->device != VN_DEVICE_CPU) {
        rc = vn_state_to_device(&b->ema_m->state, b->o->device, err);
        if (rc != VN_OK) return rc;
    }
    return vn_ema_of_state(&b->ema, b->o->ema, &b->m->state, &b->ema_m->state, true, NULL, err);
}

static int bench_setup(bench *b, vn_error *err)
{
    const options *o = b->o;
    int rc = vn_vanillanet_create(&o->cfg, false, &b->m, err);
    if (rc != VN_OK) return rc;
    vn_vanillanet_init(b->m, o->seed);
    if (o->deploy) {
        vn_vanillanet_change_act(b->m, 1.0f);
        rc = vn_vanillanet_switch_to_deploy(b->m, false, err);
        if (rc != VN_OK) return rc;
        vn_vanillanet_set_training(b->m, false);
    } else {
        vn_vanillanet_set_training(b->m, true);
        vn_vanillanet_change_act(b->m, 0.5f);
    }
    b->ctx = vn_ctx_create_on(o->device);
    if (b->ctx) vn_ctx_set_keep(b->ctx, (size_t)o->keep_mb * 1000000); /* train.keep_mb */
    if (!b->ctx) return vn_error_set(err, VN_ERR_NOMEM, "out of memory for the context");
    if (o->deploy) vn_ctx_set_grad(b->ctx, false);

    b->x = vn_tensor_new4(o->batch, o->size, o->size, o->cfg.in_chans, false);
    b->labels = malloc((size_t)o->batch * sizeof *b->labels);
    if (!b->x || !b->labels) return vn_error_set(err, VN_ERR_NOMEM, "out of memory for the input");
    vn_rng rng;
    vn_rng_seed(&rng, o->seed, 8, 0);
    for (int64_t i = 0; i < b->x->numel; i++) b->x->data[i] = (float)vn_rng_normal(&rng);
    for (int i = 0; i < o->batch; i++)
        b->labels[i] = (int32_t)vn_rng_below(&rng, (uint64_t)o->cfg.num_classes);
    if (o->device != VN_DEVICE_CPU) {
        rc = vn_state_to_device(&b->m->state, o->device, err);
        if (rc == VN_OK && vn_tensor_to_device(b->x, o->device) != VN_OK)
            rc = vn_error_set(err, VN_ERR_NOMEM, "the input to %s", vn_device_name(o->device));
        if (rc != VN_OK) return rc;
    }

    if (!o->deploy) {
        const vn_state_list *sl = &b->m->state;
        vn_tensor **params = calloc((size_t)sl->n, sizeof *params);
        if (!params) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        int np = 0;
        for (int i = 0; i < sl->n; i++)
            if (sl->items[i].kind == VN_STATE_PARAM) params[np++] = sl->items[i].tensor;
        vn_optim_config oc;
        vn_optim_config_init(&oc, VN_OPTIM_SGD);
        oc.lr = 1e-3; /* small: a few steps on random data must stay finite */
        oc.momentum = 0.9;
        oc.weight_decay = 0.0;
        rc = vn_optim_create(&b->opt, &oc, np, params, NULL, err);
        free(params);
        if (rc != VN_OK) return rc;
        rc = vn_optim_zero_grad(b->opt);
        if (rc != VN_OK) return vn_error_set(err, rc, "zero_grad: out of memory");
        if (o->ema > 0) return bench_setup_ema(b, err);
    }
    return VN_OK;
}

static void bench_free(bench *b)
{
    vn_optim_destroy(b->opt);
    vn_ema_destroy(b->ema);
    vn_vanillanet_destroy(b->ema_m);
    vn_ctx_destroy(b->ctx);
    vn_tensor_free(b->x);
    free(b->labels);
    vn_vanillanet_destroy(b->m);
}

static int bench_step(bench *b, vn_error *err)
{
    double t0 = now_s();
    vn_ctx_reset(b->ctx);
    vn_tensor *logits = vn_vanillanet_forward(b->ctx, b->m, b->x);
    if (!logits)
        return vn_error_set(err, vn_ctx_status(b->ctx), "forward: %s", vn_ctx_error(b->ctx));
    if (b->o->deploy) {
        vn_device_sync(b->o->device);
        vn_ctx_reset(b->ctx);
        b->t_fwd = now_s() - t0;
        b->t_bwd = b->t_opt = 0;
        return VN_OK;
    }
    vn_tensor *loss = vn_cross_entropy(b->ctx, logits, b->labels, NULL, 0.0f);
    if (!loss) return vn_error_set(err, vn_ctx_status(b->ctx), "loss: %s", vn_ctx_error(b->ctx));
    vn_device_sync(b->o->device); /* so that the phases are the device's too */
    double t1 = now_s();
    vn_mem_stats ms;
    vn_ctx_mem_stats(b->ctx, &ms);
    if (ms.pool_in_use > b->saved_bytes) b->saved_bytes = ms.pool_in_use;
    if (vn_backward(b->ctx, loss) != VN_OK)
        return vn_error_set(err, vn_ctx_status(b->ctx), "backward: %s", vn_ctx_error(b->ctx));
    vn_ctx_reset(b->ctx);
    vn_device_sync(b->o->device);
    double t2 = now_s();
    int rc = vn_optim_step(b->opt, err);
    if (rc != VN_OK) return rc;
    rc = vn_optim_zero_grad(b->opt);
    if (rc != VN_OK) return vn_error_set(err, rc, "zero_grad: out of memory");
    if (b->ema) vn_ema_update(b->ema);
    vn_device_sync(b->o->device);
    double t3 = now_s();
    b->t_fwd = t1 - t0;
    b->t_bwd = t2 - t1;
    b->t_opt = t3 - t2;
    return VN_OK;
}

/* Median seconds of sgemm C[m x n] = A[m x k] B[k x n] (row-major, no transposes). */
static double sgemm_seconds(int m, int n, int k)
{
    float *a = calloc((size_t)m * k, sizeof *a), *b = calloc((size_t)k * n, sizeof *b);
    float *c = calloc((size_t)m * n, sizeof *c);
    double t[5] = {0};
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t)k * n; i++) b[i] = (float)(i % 5) * 0.1f;
        for (double w0 = now_s(); now_s() - w0 < 0.05;)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        for (int r = 0; r < 5; r++) {
            double t0 = now_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
            t[r] = now_s() - t0;
        }
    }
    free(a);
    free(b);
    free(c);
    return median_sorted(t, 5);
}

/* --gemm-bound: see the file's comment. */
static void gemm_bound(const options *o, double flops_step, double peak)
{
    vn_report rep = {0};
    vn_error err = {0};
    if (vn_vanillanet_report(&o->cfg, false, o->size, o->size, &rep, &err) != VN_OK) return;
    double t_gemm = 0, dw_flops = 0;
    printf("GEMM shapes of a training step (sgemm alone, %d threads):\n", vn_get_threads());
    printf("  %-18s %8s %6s %6s   %9s %9s %9s\n", "layer", "M", "N", "K", "fwd GF/s", "dx GF/s", "dw GF/s");
    for (int i = 0; i < rep.n; i++) {
        const vn_report_row *r = &rep.rows[i];
        int64_t hw = r->out[1] * r->out[2], co = r->out[3];
        if (strstr(r->what, "dwconv")) {
            dw_flops += 2.0 * 3.0 * (double)r->macs * o->batch;
            continue;
        }
        if (strncmp(r->what, "conv ", 5) != 0 || hw * co == 0) continue;
        int m = (int)(hw * o->batch), n = (int)co, k = (int)(r->macs / (hw * co));
        double f = 2.0 * m * (double)n * k, tf = sgemm_seconds(m, n, k), tx = sgemm_seconds(m, k, n),
               tw = sgemm_seconds(n, k, m);
        t_gemm += tf + tx + tw;
        printf("  %-18s %8d %6d %6d   %9.1f %9.1f %9.1f\n", r->name, m, n, k, f / tf * 1e-9,
               f / tx * 1e-9, f / tw * 1e-9);
    }
    vn_report_free(&rep);
    double t = t_gemm + dw_flops / (peak * 1e9);
    printf("GEMM-bound step: %.2f ms of sgemm + %.2f ms of depthwise at the 2048 rate = %.2f ms; "
           "utilisation ceiling %.1f%% of %.1f GFLOPS\n", t_gemm * 1e3, dw_flops / peak * 1e-6,
           t * 1e3, 100.0 * flops_step / t * 1e-9 / peak, peak);
    printf("RESULT ours gemm_bound step_ms=%.3f util_max=%.4f\n", t * 1e3, flops_step / t * 1e-9 / peak);
}

int main(int argc, char **argv)
{
    vn_runtime_setup(argv); /* before any OpenMP or BLAS work; may exec again */
    options o;
    int prc = parse_args(argc, argv, &o);
    if (prc != 0) return prc > 0 ? 0 : 2; /* 1: --help was printed */
    vn_set_threads(o.threads);
    int threads = vn_get_threads();
    if (o.bf16 && vn_device_set_bf16(o.device, true) != VN_OK) {
        fprintf(stderr, "bench_train: --bf16 needs --device cuda\n");
        return 2;
    }

    if (o.sgemm_only) {
        double g = sgemm_peak_gflops(2048, 9), go = ours_peak_gflops(2048, 9);
        printf("sgemm 2048x2048x2048: %.1f GFLOPS (%d threads, median of 9)\n", g, threads);
        if (go > 0)
            printf("library GEMM 2048x2048x2048: %.1f GFLOPS (OpenBLAS runs its %s kernels)\n", go,
                   vn_blas_core());
        printf("RESULT ours sgemm n=2048 threads=%d gflops=%.2f", threads, g);
        if (go > 0) printf(" gemm_gflops=%.2f", go);
        printf("\n");
        return g > 0 ? 0 : 1;
    }

    vn_error err = {0};
    vn_report rep = {0};
    if (vn_vanillanet_report(&o.cfg, o.deploy, o.size, o.size, &rep, &err) != VN_OK) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    double macs = (double)rep.total_macs, nparams = (double)rep.total_params;
    vn_report_free(&rep);
    double flops_step = 2.0 * macs * o.batch * (o.deploy ? 1.0 : 3.0);

    char dims[160], strides[160];
    join_ints(dims, sizeof dims, o.cfg.dims, o.cfg.n_stages + 1);
    join_ints(strides, sizeof strides, o.cfg.strides, o.cfg.n_stages);
    printf("bench_train: %s (dims %s, strides %s, act_num %d, in_chans %d, %d classes), %s mode,\n"
           "  batch %d, input %dx%d, %d threads, %.4gM params, %.4g GMACs/image (%s form)\n",
           o.model_name, dims, strides, o.cfg.act_num, o.cfg.in_chans, o.cfg.num_classes,
           o.deploy ? "deploy" : "train", o.batch, o.size, o.size, threads, nparams * 1e-6,
           macs * 1e-9, o.deploy ? "deploy" : "training");
    printf("  FLOPs/step = 2 x MACs x batch%s = %.2f GFLOP\n", o.deploy ? "" : " x 3 (fwd + 2x bwd)",
           flops_step * 1e-9);
    if (o.ema > 0 && !o.deploy) printf("  model EMA: decay %g, updated after every step\n", o.ema);
    fflush(stdout);

    bench b = {.o = &o};
    int rc = bench_setup(&b, &err);
    if (rc != VN_OK) {
        fprintf(stderr, "bench_train: setup: %s\n", err.msg);
        bench_free(&b);
        return 1;
    }
    double setup_rss = peak_rss_mb();

    double t[MAX_STEPS], tf[MAX_STEPS], tb[MAX_STEPS], to[MAX_STEPS];
    double cpu_total = 0, wall_total = 0;
    for (int s = -o.warmup; s < o.steps; s++) {
        if (s == 0 && o.profile) vn_profile_enable(true);
        bool old_kernels = o.ab && ((s + o.warmup) % 2 == 1);
        if (o.ab) {
            vn__gemm_set_mode(old_kernels ? 0 : 1);
            vn_testing_dw_wide(!old_kernels);
        }
        double w0 = now_s(), c0 = cpu_s();
        rc = bench_step(&b, &err);
        double w = now_s() - w0, c = cpu_s() - c0;
        if (rc != VN_OK) {
            fprintf(stderr, "bench_train: step %d: %s\n", s + o.warmup, err.msg);
            bench_free(&b);
            return 1;
        }
        if (s < 0) {
            printf("  warm-up %d: %.1f ms\n", s + o.warmup, w * 1e3);
        } else {
            t[s] = w;
            tf[s] = b.t_fwd;
            tb[s] = b.t_bwd;
            to[s] = b.t_opt;
            cpu_total += c;
            wall_total += w;
            printf("  step %d: %.1f ms (cpu %.0f%% of %d threads)\n", s, w * 1e3,
                   100.0 * c / (w * threads), threads);
        }
        fflush(stdout);
    }
    double rss = peak_rss_mb();
    if (o.profile) {
        vn_profile_enable(false);
        printf("op profile of the %d timed steps:\n", o.steps);
        vn_profile_report(stdout, wall_total);
    }
    /* After the last step's reset nothing is in use: cached is what the pool keeps. */
    vn_mem_stats ms;
    vn_ctx_mem_stats(b.ctx, &ms);
    bench_free(&b);

    if (o.ab) {
        double tn[MAX_STEPS], told[MAX_STEPS];
        int nn = 0, no = 0;
        for (int s = 0; s < o.steps; s++) {
            if ((s + o.warmup) % 2 == 1) told[no++] = t[s];
            else tn[nn++] = t[s];
        }
        vn__gemm_set_mode(1);
        vn_testing_dw_wide(true);
        if (nn > 0 && no > 0) {
            double mn = median_sorted(tn, nn), mo2 = median_sorted(told, no);
            printf("A/B of the CPU kernels, alternating steps: this build's %.1f ms (median of %d), "
                   "the replaced ones %.1f ms (median of %d): %.3fx\n", mn * 1e3, nn, mo2 * 1e3, no,
                   mo2 / mn);
            printf("RESULT ours ab new_ms=%.3f old_ms=%.3f speedup=%.4f\n", mn * 1e3, mo2 * 1e3,
                   mo2 / mn);
        }
    }
    double tmin = t[0];
    for (int s = 1; s < o.steps; s++)
        if (t[s] < tmin) tmin = t[s];
    double med = median_sorted(t, o.steps);
    double mf = median_sorted(tf, o.steps), mb = median_sorted(tb, o.steps),
           mo = median_sorted(to, o.steps);
    double img_s = o.batch / med, gflops = flops_step / med * 1e-9;
    double cpu_util = cpu_total / (wall_total * threads);

    printf("step time: median %.1f ms, min %.1f ms over %d steps (after %d warm-up)\n", med * 1e3,
           tmin * 1e3, o.steps, o.warmup);
    if (!o.deploy)
        printf("  phases (medians): forward+loss %.1f ms, backward %.1f ms, optimizer %.1f ms\n",
               mf * 1e3, mb * 1e3, mo * 1e3);
    printf("throughput: %.2f images/s (%.2f ms/image), %.1f GFLOPS achieved\n", img_s,
           1e3 * med / o.batch, gflops);
    printf("memory: peak RSS %.1f MB (%.1f MB after setup), step pool peak in use %.1f MB,\n"
           "  pool held %.1f MB, arena %.1f MB, %llu system allocations\n",
           rss, setup_rss, ms.pool_peak / 1048576.0,
           (ms.pool_in_use + ms.pool_cached) / 1048576.0, ms.arena_bytes / 1048576.0,
           (unsigned long long)ms.system_allocs);
    if (!o.deploy)
        printf("  step memory in use after forward + loss (kept for backward): %.1f MB\n",
               b.saved_bytes / 1048576.0);
    printf("cpu: %.0f%% of %d threads busy during the timed steps\n", 100.0 * cpu_util, threads);

    double peak = -1, ours_peak = -1;
    if (o.sgemm_peak) {
        peak = sgemm_peak_gflops(2048, 9);
        printf("sgemm 2048x2048x2048: %.1f GFLOPS; utilisation %.1f%%\n", peak,
               100.0 * gflops / peak);
        if (o.device == VN_DEVICE_CPU) ours_peak = ours_peak_gflops(2048, 9);
        if (ours_peak > 0)
            printf("library GEMM 2048x2048x2048 (OpenBLAS %s kernels beside it): %.1f GFLOPS; "
                   "utilisation of the better of the two %.1f%%\n", vn_blas_core(), ours_peak,
                   100.0 * gflops / (ours_peak > peak ? ours_peak : peak));
        if (o.gemm_bound && !o.deploy && peak > 0) gemm_bound(&o, flops_step, peak);
    }
    printf("RESULT ours mode=%s model=%s dims=%s strides=%s batch=%d size=%d threads=%d "
           "step_ms=%.3f min_ms=%.3f img_s=%.4f gflops=%.3f rss_mb=%.1f pool_mb=%.1f saved_mb=%.1f "
           "fwd_ms=%.3f bwd_ms=%.3f opt_ms=%.3f cpu=%.2f",
           o.deploy ? "deploy" : "train", o.model_name, dims, strides, o.batch, o.size, threads,
           med * 1e3, tmin * 1e3, img_s, gflops, rss, ms.pool_peak / 1048576.0,
           b.saved_bytes / 1048576.0, mf * 1e3,
           mb * 1e3, mo * 1e3, cpu_util);
    if (peak > 0) printf(" sgemm_gflops=%.2f", peak);
    if (ours_peak > 0) printf(" gemm_gflops=%.2f", ours_peak);
    if (o.ema > 0 && !o.deploy) printf(" ema=%g", o.ema);
    if (o.device != VN_DEVICE_CPU) printf(" device=%s", vn_device_name(o.device));
    if (o.bf16) printf(" bf16=1");
    printf("\n");
    return 0;
}
