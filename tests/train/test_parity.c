/* Parity with the official trainer (issue 21), against the official semantics: the loss
 * switch and the evaluation geometry against PyTorch 1.13 / torchvision 0.14 fixtures
 * (tests/reference/gen_parity.py), Nesterov SGD from the config against
 * torch.optim.SGD(nesterov=True) (tests/reference/gen_optim.py), when to evaluate and which
 * checkpoints are best as main.py, model keys, ImageNet-ReaL on a hand-written label file,
 * and the flag table against the config schema. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../optim/optim_case.h"
#include "base/vn_fs.h"
#include "synth.h"
#include "data/vn_testing.h"
#include "data/vn_transform.h"
#include "train/vn_official.h"
#include "train/vn_real_labels.h"
#include "train/vn_trainer.h"
#include "vn_test.h"

static void set(vn_config *cfg, const char *assignment)
{
    vn_error err = {0};
    ck_assert_msg(vn_config_set(cfg, assignment, &err) == VN_OK, "%s", err.msg);
}

/* An aligned copy of a fixture entry of the given dtype (freed by the caller). */
static void *entry_copy(const vn_st_file *f, const char *name, vn_dtype dtype, int64_t *numel)
{
    const vn_st_entry *e = vn_st_find(f, name);
    ck_assert_msg(e != NULL, "fixture has no '%s'", name);
    ck_assert_msg(e->dtype == dtype, "'%s' has dtype %s", name, vn_dtype_name(e->dtype));
    void *p = malloc(e->nbytes ? e->nbytes : 1);
    ck_assert_ptr_nonnull(p);
    memcpy(p, e->data, e->nbytes);
    if (numel) *numel = e->numel;
    return p;
}

/* ---- the loss switch (main.py lines 395-404) -------------------------------------------- */

/* Loss and logit gradient of vn_train_loss under cfg against the fixture's criterion. */
static void check_loss(const vn_config *cfg, bool mixing, const char *want)
{
    vn_st_file *f = vn_test_fixture("parity/loss.safetensors");
    int64_t nl, nsoft;
    float *logits0 = entry_copy(f, "logits", VN_DTYPE_F32, &nl);
    int32_t *labels = entry_copy(f, "labels", VN_DTYPE_I32, NULL);
    float *soft = entry_copy(f, "soft", VN_DTYPE_F32, &nsoft);
    const int n = 6, nc = 5;
    ck_assert_int_eq(nl, n * nc);
    ck_assert_str_eq(vn_train_loss_name(cfg, mixing), strstr(want, "bce") ? "bce"
                                                      : strstr(want, "soft") ? "soft-ce" : "ce");
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *logits = vn_tensor_new(2, (int64_t[]){n, nc}, true);
    memcpy(logits->data, logits0, sizeof(float) * n * nc);
    float buf[30];
    vn_tensor *loss = vn_train_loss(ctx, cfg, logits, labels, mixing ? soft : NULL, n, buf);
    ck_assert_msg(loss != NULL, "%s", vn_ctx_error(ctx));
    char name[64];
    snprintf(name, sizeof name, "%s.loss", want);
    double *ref = entry_copy(f, name, VN_DTYPE_F64, NULL);
    /* float32 against float64: a few ulps of float32. */
    ck_assert_msg(fabs(loss->data[0] - ref[0]) <= 1e-6 * fabs(ref[0]) + 1e-7, "%s: loss %.9g, "
                  "torch %.9g", want, (double)loss->data[0], ref[0]);
    ck_assert_int_eq(vn_backward(ctx, loss), VN_OK);
    snprintf(name, sizeof name, "%s.grad", want);
    ck_assert(vn_test_close(name, logits->grad, vn_test_f32(f, name, n * nc), n * nc, 1e-7, 1e-5));
    vn_ctx_destroy(ctx);
    vn_tensor_free(logits);
    free(logits0);
    free(labels);
    free(soft);
    free(ref);
    vn_st_close(f);
}

START_TEST(test_loss_switch)
{
    vn_config cfg;
    vn_config_init(&cfg);
    set(&cfg, "loss.smoothing=0.1");
    /* loss.bce (the official --bce_loss): BCE with mixup/cutmix, smoothed CE without. */
    set(&cfg, "loss.bce=true");
    check_loss(&cfg, true, "mixed_bce");
    check_loss(&cfg, false, "hard_ce");
    /* Without --bce_loss: SoftTargetCrossEntropy with mixing, smoothed CE without. */
    set(&cfg, "loss.bce=false");
    check_loss(&cfg, true, "mixed_soft_ce");
    check_loss(&cfg, false, "hard_ce");
    /* loss.bce_always: timm BinaryCrossEntropy(smoothing) on hard labels too. */
    set(&cfg, "loss.bce_always=true");
    check_loss(&cfg, false, "hard_bce");
    check_loss(&cfg, true, "mixed_bce");
}
END_TEST

/* ---- the evaluation geometry (datasets.py build_transform) -------------------------- */

static vn_image fixture_image(const vn_st_file *f, const char *name)
{
    const vn_st_entry *e = vn_st_find(f, name);
    ck_assert_msg(e && e->dtype == VN_DTYPE_U8 && e->ndim == 3, "fixture '%s'", name);
    vn_image img = {(int)e->shape[1], (int)e->shape[0], (int)e->shape[2], NULL, 0};
    img.data = entry_copy(f, name, VN_DTYPE_U8, NULL);
    img.capacity = e->nbytes;
    return img;
}

/* The transform of cfg's evaluation loader (from vn_build_loader_config) on a fixture image. */
static float *eval_through_config(const vn_config *cfg, const vn_image *img)
{
    vn_loader_config lc;
    vn_build_loader_config(cfg, false, &lc);
    vn_transform t;
    vn_error err = {0};
    ck_assert_msg(vn_transform_init(&t, lc.input_size, img->channels, false, lc.scale, lc.ratio,
                                    lc.interpolation, lc.crop_pct, 0.0f, lc.mean, lc.std, &err) == 0,
                  "%s", err.msg);
    t.eval_resize = lc.eval_resize;
    size_t n = (size_t)lc.input_size * lc.input_size * img->channels;
    float *out = malloc(n * sizeof *out);
    ck_assert_msg(vn_transform_apply(&t, img, NULL, out, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
    return out;
}

/* ToTensor + Normalize of a fixture's 8-bit image, as vn_normalizer (float32, as torch). */
static float *normalized(const vn_st_file *f, const char *name, int channels, const vn_config *cfg)
{
    vn_image img = fixture_image(f, name);
    ck_assert_int_eq(img.channels, channels);
    vn_loader_config lc;
    vn_build_loader_config(cfg, false, &lc);
    vn_normalizer norm;
    vn_normalizer_init(&norm, channels, lc.mean, lc.std);
    float *out = malloc((size_t)img.width * img.height * channels * sizeof *out);
    vn_normalize_u8(&norm, img.data, img.width, img.height, false, out);
    free(img.data);
    return out;
}

START_TEST(test_eval_geometry)
{
    vn_st_file *f = vn_test_fixture("parity/geometry.safetensors");
    vn_config cfg;
    vn_config_init(&cfg); /* data.eval_mode official, eval_interpolation bicubic, 0.875 */
    set(&cfg, "data.interpolation=bilinear"); /* the training filter must not leak in */
    /* 28 px: no resize at all. */
    set(&cfg, "data.input_size=28");
    vn_image img = fixture_image(f, "eval28.src");
    float *got = eval_through_config(&cfg, &img);
    ck_assert(vn_test_close("eval 28", got, vn_test_f32(f, "eval28.out", 28 * 28 * 3), 28 * 28 * 3, 0, 0));
    free(got);
    free(img.data);
    /* 224 px: Resize(256) bicubic + CenterCrop(224), gray with the first channel's stats. */
    set(&cfg, "data.input_size=224");
    set(&cfg, "data.mean=[0.485]");
    set(&cfg, "data.std=[0.229]");
    img = fixture_image(f, "eval224.src");
    got = eval_through_config(&cfg, &img);
    float *want = normalized(f, "eval224.out", 1, &cfg);
    ck_assert(vn_test_close("eval 224", got, want, 224 * 224, 0, 0));
    free(got);
    free(want);
    free(img.data);
    /* 384 px: a square resize, no crop. */
    set(&cfg, "data.input_size=384");
    img = fixture_image(f, "eval384.src");
    got = eval_through_config(&cfg, &img);
    want = normalized(f, "eval384.out", 1, &cfg);
    ck_assert(vn_test_close("eval 384", got, want, 384 * 384, 0, 0));
    free(got);
    free(want);
    /* resize-crop mode: the same 420x300 image is resized and cropped instead (differs). */
    set(&cfg, "data.eval_mode=resize-crop");
    got = eval_through_config(&cfg, &img);
    want = normalized(f, "eval384.out", 1, &cfg);
    ck_assert(vn_test_rel_err(got, want, 384 * 384) > 0.01);
    free(got);
    free(want);
    free(img.data);
    vn_st_close(f);
}
END_TEST

typedef struct recorded {
    int64_t draws[2];
    int next;
} recorded;

static int64_t replay_randint(void *user, int64_t n)
{
    recorded *r = user;
    ck_assert_int_lt(r->next, 2);
    int64_t v = r->draws[r->next++];
    ck_assert_int_lt(v, n);
    return v;
}

START_TEST(test_random_crop)
{
    vn_st_file *f = vn_test_fixture("parity/geometry.safetensors");
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "crop%d.ij", k);
        int32_t *ij = entry_copy(f, name, VN_DTYPE_I32, NULL);
        snprintf(name, sizeof name, "crop%d.src", k);
        vn_image img = fixture_image(f, name);
        snprintf(name, sizeof name, "crop%d.out", k);
        uint8_t *want = entry_copy(f, name, VN_DTYPE_U8, NULL);
        recorded r = {{ij[0], ij[1]}, 0};
        vn_rrc_draws d = {NULL, replay_randint, &r};
        vn_box box;
        ck_assert(vn_random_crop_box(img.width, img.height, ij[2], 4, &d, &box));
        ck_assert_int_eq(box.top, ij[0] - 4);
        ck_assert_int_eq(box.left, ij[1] - 4);
        size_t n = (size_t)ij[2] * ij[2] * img.channels;
        uint8_t *got = malloc(n);
        vn__crop_u8(&img, &box, got);
        ck_assert_msg(memcmp(got, want, n) == 0, "crop %d differs from torchvision's", k);
        /* Through the transform: the box it reports, cut the same way. */
        vn_transform t;
        float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
        vn_error err = {0};
        ck_assert_int_eq(vn_transform_init(&t, ij[2], img.channels, false, NULL, NULL,
                                           VN_INTERP_BICUBIC, 1.0, 0.0f, mean, std, &err), 0);
        t.crop_padding = 4;
        vn_rng rng;
        vn_rng_seed(&rng, 5, (uint64_t)k, 0);
        float *out = malloc(n * sizeof *out);
        vn_box used;
        ck_assert_int_eq(vn_transform_apply(&t, &img, &rng, out, NULL, &used, NULL, &err), 0);
        vn__crop_u8(&img, &used, got);
        for (size_t i = 0; i < n; i++) ck_assert_float_eq(out[i], got[i] / 255.0f);
        ck_assert(used.top >= -4 && used.left >= -4 && used.top + ij[2] <= img.height + 4 &&
                  used.left + ij[2] <= img.width + 4);
        free(out);
        free(got);
        free(want);
        free(img.data);
        free(ij);
    }
    /* torchvision raises when the padded image is smaller than the crop. */
    recorded r = {{0, 0}, 0};
    vn_rrc_draws d = {NULL, replay_randint, &r};
    vn_box box;
    ck_assert(!vn_random_crop_box(20, 40, 29, 4, &d, &box));
    vn_st_close(f);
}
END_TEST

START_TEST(test_official_geometry_rules)
{
    vn_config cfg;
    vn_config_init(&cfg);
    vn_loader_config tr, ev;
    /* (size, mode) -> training crop and eval resize, as datasets.py. */
    struct { int size; const char *mode; vn_augment aug; vn_eval_resize er; } cases[] = {
        {28, "official", VN_AUGMENT_RANDOM_CROP, VN_EVAL_RESIZE_NONE},
        {32, "official", VN_AUGMENT_RANDOM_CROP, VN_EVAL_RESIZE_NONE},
        {33, "official", VN_AUGMENT_RRC, VN_EVAL_RESIZE_CROP},
        {224, "official", VN_AUGMENT_RRC, VN_EVAL_RESIZE_CROP},
        {383, "official", VN_AUGMENT_RRC, VN_EVAL_RESIZE_CROP},
        {384, "official", VN_AUGMENT_RRC, VN_EVAL_RESIZE_SQUARE},
        {28, "resize-crop", VN_AUGMENT_RRC, VN_EVAL_RESIZE_CROP},
        {384, "resize-crop", VN_AUGMENT_RRC, VN_EVAL_RESIZE_CROP},
    };
    char s[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(s, sizeof s, "data.input_size=%d", cases[i].size);
        set(&cfg, s);
        snprintf(s, sizeof s, "data.eval_mode=%s", cases[i].mode);
        set(&cfg, s);
        vn_build_loader_config(&cfg, true, &tr);
        vn_build_loader_config(&cfg, false, &ev);
        ck_assert_msg(tr.augment == cases[i].aug, "case %zu: augment %d", i, (int)tr.augment);
        ck_assert_int_eq(ev.eval_resize, cases[i].er);
        ck_assert_int_eq(ev.augment, VN_AUGMENT_NONE);
    }
    /* augment none stays none; the filters are the training and evaluation keys. */
    set(&cfg, "data.augment=none");
    set(&cfg, "data.input_size=28");
    set(&cfg, "data.eval_mode=official");
    set(&cfg, "data.interpolation=bilinear");
    vn_build_loader_config(&cfg, true, &tr);
    vn_build_loader_config(&cfg, false, &ev);
    ck_assert_int_eq(tr.augment, VN_AUGMENT_NONE);
    ck_assert_int_eq(tr.interpolation, VN_INTERP_BILINEAR);
    ck_assert_int_eq(ev.interpolation, VN_INTERP_BICUBIC);
}
END_TEST

/* ---- Nesterov SGD from the config ----------------------------------------------------- */

START_TEST(test_sgd_is_nesterov)
{
    optim_case c;
    case_load(&c, "optim/sgd_nesterov.safetensors"); /* torch.optim.SGD(nesterov=True) */
    ck_assert(c.cfg.nesterov);
    vn_config cfg;
    vn_config_init(&cfg);
    char s[96];
    set(&cfg, "optim.name=sgd");
    snprintf(s, sizeof s, "optim.lr=%.17g", c.cfg.lr);
    set(&cfg, s);
    snprintf(s, sizeof s, "optim.momentum=%.17g", c.cfg.momentum);
    set(&cfg, s);
    snprintf(s, sizeof s, "optim.weight_decay=%.17g", c.cfg.weight_decay);
    set(&cfg, s);
    vn_optim_config oc;
    vn_build_optim_config(&cfg, &oc);
    ck_assert(oc.kind == VN_OPTIM_SGD && oc.nesterov && oc.dampening == 0);
    vn_optim *opt;
    vn_error err = {0};
    ck_assert_msg(vn_optim_create(&opt, &oc, c.n, c.t, (const char *const *)c.names, &err) == 0,
                  "%s", err.msg);
    const double *lrs = fixture_f64(c.f, "lr", c.steps);
    for (int s_ = 0; s_ < c.steps; s_++) {
        vn_optim_set_lr(opt, lrs[s_]);
        case_set_grads(&c, opt, s_);
        ck_assert_int_eq(vn_optim_step(opt, &err), VN_OK);
        case_check_params(&c, s_, 1e-6, 1e-5);
    }
    vn_optim_destroy(opt);
    /* optim.nesterov: false is the factory's "momentum" (heavy ball): not the same. */
    set(&cfg, "optim.nesterov=false");
    vn_build_optim_config(&cfg, &oc);
    ck_assert(!oc.nesterov);
    /* Other optimizers never get the flag (torch would refuse it). */
    set(&cfg, "optim.nesterov=true");
    set(&cfg, "optim.name=lamb");
    vn_build_optim_config(&cfg, &oc);
    ck_assert(!oc.nesterov);
    case_free(&c);
}
END_TEST

/* ---- when to evaluate, best checkpoints ----------------------------------------------- */

START_TEST(test_eval_due_is_official)
{
    vn_config cfg;
    vn_config_init(&cfg);
    /* The official defaults --test_freq 20 --test_epoch 260 over 300 epochs. */
    set(&cfg, "train.epochs=300");
    set(&cfg, "train.eval_every=20");
    set(&cfg, "train.eval_from_epoch=261");
    int n = 0;
    for (int64_t e = 0; e < 300; e++) {
        bool official = e > 0 && (e % 20 == 0 || e > 260); /* main.py line 469 */
        ck_assert_msg(vn_eval_due(&cfg, e, e == 299) == official, "epoch %lld", (long long)e);
        n += official;
    }
    ck_assert_int_eq(n, 13 + 39);
    /* eval_every 1: every epoch but the first (as the official); a 1-epoch run still ends
     * with an evaluation (here, not there). */
    set(&cfg, "train.eval_every=1");
    set(&cfg, "train.eval_from_epoch=0");
    ck_assert(!vn_eval_due(&cfg, 0, false));
    ck_assert(vn_eval_due(&cfg, 1, false));
    ck_assert(vn_eval_due(&cfg, 0, true));
    set(&cfg, "train.eval_every=0");
    ck_assert(!vn_eval_due(&cfg, 5, true));
}
END_TEST

START_TEST(test_best_per_source)
{
    vn_train_state st;
    memset(&st, 0, sizeof st);
    st.best_model_top1 = -1;
    for (int e = 0; e < VN_TRAIN_MAX_EMAS; e++) st.best_ema_top1[e] = -1;
    /* Official: max_accuracy for the model, max_accuracy_ema apart. */
    ck_assert(vn_best_record(&st, -1, 50.0, 1));
    ck_assert(vn_best_record(&st, 0, 40.0, 1));
    ck_assert(!vn_best_record(&st, -1, 45.0, 2)); /* the model got worse: best.* stays */
    ck_assert(vn_best_record(&st, 0, 45.0, 2));   /* the EMA improved: best-ema-0 moves */
    ck_assert(!vn_best_record(&st, 0, 45.0, 3));  /* ties do not move it (official: <) */
    ck_assert(vn_best_record(&st, 1, 10.0, 3));
    ck_assert_double_eq(st.best_model_top1, 50.0);
    ck_assert_int_eq(st.best_model_epoch, 1);
    ck_assert_double_eq(st.best_ema_top1[0], 45.0);
    ck_assert_int_eq(st.best_ema_epoch[0], 2);
    char name[64];
    vn_best_name(-1, name, sizeof name);
    ck_assert_str_eq(name, "best.safetensors");
    vn_best_name(2, name, sizeof name);
    ck_assert_str_eq(name, "best-ema-2.safetensors");
}
END_TEST

/* ---- ImageNet-ReaL ------------------------------------------------------------------------ */

static char tmp[512];

START_TEST(test_real_labels)
{
    vn_test_mkdtemp(tmp, sizeof tmp, "parity");
    char path[1024];
    /* Six validation images in two class folders (file contents are never read here). */
    const char *files[] = {"a/ILSVRC2012_val_00000001.JPEG", "a/ILSVRC2012_val_00000004.JPEG",
                           "a/ILSVRC2012_val_00000006.JPEG", "b/ILSVRC2012_val_00000002.JPEG",
                           "b/ILSVRC2012_val_00000003.JPEG", "b/ILSVRC2012_val_00000005.JPEG"};
    snprintf(path, sizeof path, "%s/a", tmp);
    ck_assert_int_eq(vn_mkdirs(path, NULL), 0);
    snprintf(path, sizeof path, "%s/b", tmp);
    ck_assert_int_eq(vn_mkdirs(path, NULL), 0);
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        vn_test_write_text(path, "x");
    }
    /* Entry i: the correct classes of ILSVRC2012_val_<i + 1>. Image 3 has none (left out). */
    snprintf(path, sizeof path, "%s/real.json", tmp);
    vn_test_write_text(path, "[[0], [1, 2], [], [0, 3], [4], [2]]");
    vn_real_labels *rl = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_real_labels_load(path, &rl, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(vn_real_labels_count(rl), 6);
    snprintf(path, sizeof path, "%s", tmp);
    vn_dataset *ds = NULL;
    ck_assert_msg(vn_dataset_scan(path, NULL, 0, &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(vn_dataset_size(ds), 6);
    /* Logits in dataset order (a/1, a/4, a/6, b/2, b/3, b/5), 6 classes. Top-1 picks:
     * val1 -> 0 (in {0}: right), val4 -> 3 (in {0, 3}: right), val6 -> 5 (not in {2}; 2 is
     * second: top-5 right), val2 -> 2 (in {1, 2}: right), val3 -> skipped, val5 -> 1 (not in
     * {4}, and 4 is last of six: top-5 wrong). */
    float logits[6][6] = {
        {9, 1, 1, 1, 1, 1}, {1, 1, 1, 9, 1, 1}, {0, 1, 8, 0, 0, 9},
        {1, 5, 9, 1, 1, 1}, {9, 9, 9, 9, 9, 9}, {5, 9, 4, 3, 0, 2},
    };
    vn_real_result rr;
    ck_assert_msg(vn_real_accuracy(rl, ds, &logits[0][0], 6, &rr, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(rr.counted, 5);
    ck_assert_int_eq(rr.skipped, 1);
    ck_assert_double_eq_tol(rr.top1, 60.0, 1e-9);
    ck_assert_double_eq_tol(rr.top5, 80.0, 1e-9);
    /* A row of NaN (an unreadable image) is left out too. */
    logits[0][0] = NAN;
    ck_assert_int_eq(vn_real_accuracy(rl, ds, &logits[0][0], 6, &rr, &err), 0);
    ck_assert_int_eq(rr.counted, 4);
    ck_assert_double_eq_tol(rr.top1, 50.0, 1e-9);
    vn_dataset_free(ds);
    vn_real_labels_free(rl);
    /* A file the labels do not cover is named. */
    snprintf(path, sizeof path, "%s/b/ILSVRC2012_val_00000007.JPEG", tmp);
    vn_test_write_text(path, "x");
    snprintf(path, sizeof path, "%s/real.json", tmp);
    ck_assert_int_eq(vn_real_labels_load(path, &rl, &err), 0);
    ck_assert_int_eq(vn_dataset_scan(tmp, NULL, 0, &ds, &err), 0);
    float more[7][6] = {{0}};
    ck_assert_int_ne(vn_real_accuracy(rl, ds, &more[0][0], 6, &rr, &err), 0);
    ck_assert_msg(strstr(err.msg, "ILSVRC2012_val_00000007.JPEG") != NULL, "%s", err.msg);
    vn_dataset_free(ds);
    vn_real_labels_free(rl);
    /* A malformed file. */
    vn_test_write_text(path, "[[0], \"x\"]");
    ck_assert_int_ne(vn_real_labels_load(path, &rl, &err), 0);
    ck_assert_msg(strstr(err.msg, "entry 1") != NULL, "%s", err.msg);
    vn_test_rmtree(tmp);
}
END_TEST

/* ---- a short run: best and best-ema-N, model keys -------------------------------------- */

static void small_run(vn_config *cfg, const char *root, const char *out)
{
    vn_config_init(cfg);
    const char *sets[] = {
        "model.name=custom", "model.dims=[8,16]", "model.strides=[2]", "model.in_chans=1",
        "model.num_classes=4", "data.input_size=16", "data.grayscale=true", "data.mean=[0.3]",
        "data.std=[0.3]", "data.augment=none", "data.mixup=0", "data.cutmix=0",
        "data.workers=0", "optim.name=sgd", "optim.lr=0.05", "optim.update_freq=1",
        "optim.warmup_epochs=0", "deep_training.decay_epochs=0", "ema.decays=[0.5, 0.9]",
        "train.epochs=3", "train.batch_size=8", "train.threads=1", "train.eval_every=1",
        "output.tensorboard=false"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) set(cfg, sets[i]);
    char s[1200];
    snprintf(s, sizeof s, "data.root=%s", root);
    set(cfg, s);
    snprintf(s, sizeof s, "output.dir=%s/%s", root, out);
    set(cfg, s);
}

static int run_quiet(const vn_config *cfg, vn_train_result *res, vn_error *err)
{
    FILE *out = fopen("/dev/null", "w");
    vn_train_options opt = {NULL, false, NULL, out, NULL};
    int rc = vn_train(cfg, &opt, res, err);
    fclose(out);
    return rc;
}

START_TEST(test_best_files_and_keys)
{
    vn_test_mkdtemp(tmp, sizeof tmp, "parity_run");
    ck_assert_int_eq(vn_synth_dataset(tmp, 8, 4, 3), 0);
    vn_config cfg;
    small_run(&cfg, tmp, "run");
    vn_train_result res;
    vn_error err = {0};
    ck_assert_msg(run_quiet(&cfg, &res, &err) == VN_OK, "%s", err.msg);
    /* Evaluated after epochs 1 and 2 (not 0, as main.py): one best per source. */
    const vn_train_state *st = &res.state;
    ck_assert(st->best_model_top1 >= 0 && st->best_ema_top1[0] >= 0 && st->best_ema_top1[1] >= 0);
    ck_assert(st->best_model_epoch >= 1 && st->best_ema_epoch[0] >= 1);
    ck_assert_double_eq(st->best_top1, fmax(st->best_model_top1,
                                            fmax(st->best_ema_top1[0], st->best_ema_top1[1])));
    ck_assert_double_eq(st->best_ema_top1[2], -1);
    char path[1200];
    const char *names[] = {"best.safetensors", "best-ema-0.safetensors", "best-ema-1.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/run/checkpoints/%s", tmp, names[i]);
        vn_ckpt_info info;
        ck_assert_msg(vn_ckpt_info_read(path, &info, &err) == VN_OK, "%s", err.msg);
        /* The file is the checkpoint of the epoch where that source was best. */
        int64_t at = i == 0 ? st->best_model_epoch : st->best_ema_epoch[i - 1];
        ck_assert_int_eq(info.state.epoch, at + 1);
        /* ... and records that best in its trainer state (what a resume continues from). */
        ck_assert_double_eq(i == 0 ? info.state.best_model_top1 : info.state.best_ema_top1[i - 1],
                            i == 0 ? st->best_model_top1 : st->best_ema_top1[i - 1]);
        vn_ckpt_info_free(&info);
    }
    /* Keys: model, model_ema (EMA 0), model_ema.N, alternatives. */
    snprintf(path, sizeof path, "%s/run/checkpoints/best-ema-1.safetensors", tmp);
    struct { const char *key; int want; } keys[] = {
        {"model", -1}, {"model_ema", 0}, {"model_ema.1", 1}, {"model_ema.7|model_ema.1", 1},
        {"model_ema.9|model", -1}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        vn_vanillanet *m = NULL;
        vn_ckpt_info info;
        int idx = -5;
        ck_assert_msg(vn_open_model_key(path, keys[i].key, &m, &info, &idx, &err) == VN_OK, "%s: %s",
                      keys[i].key, err.msg);
        ck_assert_int_eq(idx, keys[i].want);
        vn_vanillanet_destroy(m);
        vn_ckpt_info_free(&info);
    }
    vn_vanillanet *m = NULL;
    vn_ckpt_info info;
    ck_assert_int_ne(vn_open_model_key(path, "model_ema.2", &m, &info, NULL, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "model_ema.2") != NULL, "%s", err.msg);
    ck_assert_int_ne(vn_open_model_key(path, "module", &m, &info, NULL, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "expected model") != NULL, "%s", err.msg);
    /* model.init_key reaches the trainer: a key the file lacks stops the run, naming it. */
    vn_config ft;
    small_run(&ft, tmp, "finetune");
    char s[1300];
    snprintf(s, sizeof s, "model.init=%s", path);
    set(&ft, s);
    set(&ft, "model.init_key=model_ema.5");
    ck_assert_int_ne(run_quiet(&ft, &res, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "model_ema.5") != NULL, "%s", err.msg);
    vn_test_rmtree(tmp);
}
END_TEST

/* ---- the flag table against the schema ------------------------------------------------ */

START_TEST(test_official_table_matches_schema)
{
    size_t n_flags, n_keys;
    const vn_official_flag *flags = vn_official_flags(&n_flags);
    const vn_config_key *keys = vn_config_schema(&n_keys);
    /* main.py's get_args_parser has 80 add_argument calls. */
    ck_assert_uint_eq(n_flags, 80);
    for (size_t i = 0; i < n_flags; i++) {
        const vn_official_flag *r = &flags[i];
        ck_assert_msg(strncmp(r->flag, "--", 2) == 0 && r->def, "row %zu", i);
        ck_assert_msg(vn_official_find(r->flag) == r, "%s listed twice", r->flag);
        if (r->status == VN_OFFICIAL_ABSENT)
            ck_assert_msg(!r->keys && !r->command && r->note, "%s: absent needs a why", r->flag);
        if (r->status == VN_OFFICIAL_DIFFERENT)
            ck_assert_msg(r->note, "%s: different needs a how", r->flag);
        if (r->status != VN_OFFICIAL_ABSENT)
            ck_assert_msg(r->keys || r->command || r->note, "%s: what stands for it?", r->flag);
        /* Every key named exists in the schema. */
        for (const char *k = r->keys; k && *k;) {
            const char *sp = strchr(k, ' ');
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)(sp ? sp - k : (long)strlen(k)), k);
            ck_assert_msg(vn_config_find(key, NULL) != NULL, "%s names unknown key %s", r->flag, key);
            if (!sp) break;
            k = sp + 1;
        }
    }
    /* Every key that names an official flag is in that flag's row. */
    for (size_t i = 0; i < n_keys; i++) {
        if (!keys[i].official) continue;
        const vn_official_flag *r = vn_official_find(keys[i].official);
        ck_assert_msg(r != NULL, "%s: flag %s missing from the table", keys[i].full, keys[i].official);
        ck_assert_msg(vn_official_has_key(r, keys[i].full), "%s: row %s does not list it",
                      keys[i].full, keys[i].official);
    }
    FILE *f = fopen("/dev/null", "w");
    ck_assert_int_eq(vn_official_markdown(f), VN_OK);
    fclose(f);
}
END_TEST

static Suite *parity_suite(void)
{
    Suite *s = suite_create("parity");
    TCase *tc = tcase_create("parity");
    tcase_add_test(tc, test_loss_switch);
    tcase_add_test(tc, test_eval_geometry);
    tcase_add_test(tc, test_random_crop);
    tcase_add_test(tc, test_official_geometry_rules);
    tcase_add_test(tc, test_sgd_is_nesterov);
    tcase_add_test(tc, test_eval_due_is_official);
    tcase_add_test(tc, test_best_per_source);
    tcase_add_test(tc, test_real_labels);
    tcase_add_test(tc, test_best_files_and_keys);
    tcase_add_test(tc, test_official_table_matches_schema);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vn_test_run(parity_suite(), true);
}
