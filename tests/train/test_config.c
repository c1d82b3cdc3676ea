/* The trainer's configuration: defaults, YAML loading with exact values and positions, every
 * error class (message names file, line, column and key), --set, YAML round trip, hash,
 * diff, rules across keys, markdown, saving. */
#include "vn_test.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/vn_config.h"

/* ---- helpers -------------------------------------------------------------------------- */

static int load(vn_config *cfg, const char *yaml, vn_error *err)
{
    return vn_config_load_text(cfg, yaml, strlen(yaml), "cfg.yaml", err);
}

/* The text must fail to load, with every fragment in the message. */
#define EXPECT_LOAD_ERROR(yaml, ...)                                                        \
    do {                                                                                    \
        vn_config c_;                                                                       \
        vn_error e_ = {0};                                                                  \
        vn_config_init(&c_);                                                                \
        int rc_ = load(&c_, (yaml), &e_);                                                   \
        ck_assert_msg(rc_ != VN_OK, "loading should fail:\n%s", (yaml));                   \
        const char *frags_[] = {__VA_ARGS__, NULL};                                         \
        for (int i_ = 0; frags_[i_]; i_++)                                                  \
            ck_assert_msg(strstr(e_.msg, frags_[i_]), "message \"%s\" lacks \"%s\"",       \
                          e_.msg, frags_[i_]);                                              \
    } while (0)

#define EXPECT_SET_ERROR(assign, ...)                                                       \
    do {                                                                                    \
        vn_config c_, before_;                                                              \
        vn_error e_ = {0};                                                                  \
        vn_config_init(&c_);                                                                \
        before_ = c_;                                                                       \
        int rc_ = vn_config_set(&c_, (assign), &e_);                                        \
        ck_assert_msg(rc_ != VN_OK, "--set %s should fail", (assign));                     \
        ck_assert_msg(vn_config_equal(&c_, &before_), "a failed --set changed the config"); \
        const char *frags_[] = {__VA_ARGS__, NULL};                                         \
        for (int i_ = 0; frags_[i_]; i_++)                                                  \
            ck_assert_msg(strstr(e_.msg, frags_[i_]), "message \"%s\" lacks \"%s\"",       \
                          e_.msg, frags_[i_]);                                              \
    } while (0)

#define EXPECT_CHECK_ERROR(cfgp, ...)                                                       \
    do {                                                                                    \
        vn_error e_ = {0};                                                                  \
        ck_assert_int_ne(vn_config_check((cfgp), &e_), VN_OK);                              \
        const char *frags_[] = {__VA_ARGS__, NULL};                                         \
        for (int i_ = 0; frags_[i_]; i_++)                                                  \
            ck_assert_msg(strstr(e_.msg, frags_[i_]), "message \"%s\" lacks \"%s\"",       \
                          e_.msg, frags_[i_]);                                              \
    } while (0)

static void must(int rc, const vn_error *err)
{
    ck_assert_msg(rc == VN_OK, "unexpected error: %s", err->msg);
}

static char tmpdir[4096];

static void make_tmpdir(void) { vn_test_mkdtemp(tmpdir, sizeof tmpdir, "config"); }

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* ---- defaults and schema ---------------------------------------------------------------- */

START_TEST(test_defaults)
{
    vn_config cfg;
    vn_error err = {0};
    vn_config_init(&cfg);
    must(vn_config_check(&cfg, &err), &err);
    /* The official VanillaNet-5 recipe. */
    ck_assert_int_eq(cfg.model.name, VN_CONFIG_MODEL_VANILLANET_5);
    ck_assert_int_eq(cfg.model.dims.n, 0);
    ck_assert_int_eq(cfg.model.act_num, 3);
    ck_assert_int_eq(cfg.model.in_chans, 3);
    ck_assert(cfg.model.drop_rate == 0.05);
    ck_assert_str_eq(cfg.model.init, "");
    ck_assert_int_eq(cfg.data.input_size, 224);
    ck_assert_int_eq(cfg.data.mean.n, 3);
    ck_assert(cfg.data.mean.v[0] == 0.485 && cfg.data.mean.v[1] == 0.456 &&
              cfg.data.mean.v[2] == 0.406);
    ck_assert(cfg.data.std.v[0] == 0.229 && cfg.data.std.v[2] == 0.225);
    ck_assert(cfg.data.scale.v[0] == 0.08 && cfg.data.scale.v[1] == 1.0);
    ck_assert(cfg.data.ratio.v[0] == 0.75 && cfg.data.ratio.v[1] == 4.0 / 3.0);
    ck_assert_int_eq(cfg.data.interpolation, VN_CONFIG_INTERP_BICUBIC);
    ck_assert_int_eq(cfg.data.augment, VN_CONFIG_AUGMENT_RRC);
    ck_assert(cfg.data.crop_pct == 0.875 && cfg.data.mixup == 0.1 && cfg.data.cutmix == 1.0);
    ck_assert_str_eq(cfg.data.train_dir, "train");
    ck_assert_str_eq(cfg.data.val_dir, "val");
    ck_assert_int_eq(cfg.optim.name, VN_CONFIG_OPTIM_LAMB);
    ck_assert(cfg.optim.lr == 3.5e-3 && cfg.optim.weight_decay == 0.35);
    ck_assert(cfg.optim.weight_decay_end == -1 && cfg.optim.min_lr == 1e-6);
    ck_assert(cfg.optim.betas.n == 2 && cfg.optim.betas.v[1] == 0.999 && cfg.optim.eps == 1e-8);
    ck_assert_int_eq(cfg.optim.warmup_epochs, 5);
    ck_assert_int_eq(cfg.optim.warmup_steps, -1);
    ck_assert_int_eq(cfg.optim.update_freq * cfg.train.batch_size, 1024);
    ck_assert_int_eq(cfg.optim.schedule, VN_CONFIG_SCHEDULE_COSINE);
    ck_assert_int_eq(cfg.deep_training.decay_epochs, 100);
    ck_assert_int_eq(cfg.deep_training.schedule, VN_CONFIG_DECAY_LINEAR);
    ck_assert_int_eq(cfg.deep_training.update, VN_CONFIG_UPDATE_EPOCH);
    ck_assert(cfg.ema.decays.n == 1 && cfg.ema.decays.v[0] == 0.99996);
    ck_assert(cfg.loss.bce && cfg.loss.smoothing == 0.1);
    ck_assert_int_eq(cfg.train.epochs, 300);
    ck_assert(cfg.train.shuffle);
    ck_assert_str_eq(cfg.output.dir, "runs/vanilla");

    size_t n;
    const vn_config_key *s = vn_config_schema(&n);
    ck_assert_uint_ge(n, 60);
    char buf[64];
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(s[i].help && strlen(s[i].help) > 10, "%s: help", s[i].full);
        ck_assert_msg(strlen(s[i].help) < 110, "%s: keep the help to one line", s[i].full);
        ck_assert_int_eq(cfg.origin[i].source, VN_CONFIG_FROM_DEFAULT);
        ck_assert_str_eq(vn_config_origin_str(&cfg, i, buf, sizeof buf), "default");
        ck_assert_ptr_eq(vn_config_find(s[i].full, NULL), &s[i]);
        ck_assert_msg(!s[i].official || strncmp(s[i].official, "--", 2) == 0,
                      "%s: official flags are written --name", s[i].full);
    }
    ck_assert_ptr_null(vn_config_find("optim.learning_rate", NULL));
    /* The minimum key set of the issue. */
    const char *required[] = {
        "model.name", "model.dims", "model.strides", "model.act_num", "model.in_chans",
        "model.num_classes", "model.drop_rate", "model.ada_pool", "model.shortcut", "model.init",
        "data.root", "data.input_size", "data.mean", "data.std", "data.augment",
        "data.interpolation", "data.crop_pct", "data.hflip", "data.mixup", "data.cutmix",
        "data.smoothing", "data.workers", "data.grayscale", "optim.name", "optim.lr",
        "optim.weight_decay", "optim.weight_decay_end", "optim.momentum", "optim.betas",
        "optim.eps", "optim.clip_grad", "optim.update_freq", "optim.warmup_epochs",
        "optim.warmup_steps", "optim.min_lr", "optim.layer_decay", "optim.schedule",
        "deep_training.decay_epochs", "deep_training.schedule", "ema.decays", "loss.bce",
        "loss.smoothing", "train.epochs", "train.max_steps", "train.batch_size", "train.seed",
        "train.shuffle", "train.eval_every", "train.threads", "output.dir", "output.save_every",
        "output.keep_last", NULL};
    for (int i = 0; required[i]; i++)
        ck_assert_msg(vn_config_find(required[i], NULL), "missing key %s", required[i]);
}
END_TEST

START_TEST(test_enum_names)
{
    ck_assert_str_eq(vn_config_enum_name("optim.name", VN_CONFIG_OPTIM_SGD), "sgd");
    ck_assert_str_eq(vn_config_enum_name("optim.name", VN_CONFIG_OPTIM_ADAMW), "adamw");
    ck_assert_str_eq(vn_config_enum_name("optim.name", VN_CONFIG_OPTIM_LAMB), "lamb");
    ck_assert_ptr_null(vn_config_enum_name("optim.name", 3));
    ck_assert_ptr_null(vn_config_enum_name("optim.lr", 0));
    ck_assert_str_eq(vn_config_enum_name("model.name", VN_CONFIG_MODEL_VANILLANET_13_X1_5_ADA_POOL),
                     "vanillanet_13_x1_5_ada_pool");
    ck_assert_str_eq(vn_config_enum_name("model.name", VN_CONFIG_MODEL_CUSTOM), "custom");
    ck_assert_str_eq(vn_config_enum_name("model.name", VN_CONFIG_MODEL_VANILLANET_10),
                     "vanillanet_10");
    ck_assert_str_eq(vn_config_enum_name("data.augment", VN_CONFIG_AUGMENT_RRC),
                     "random-resized-crop");
    ck_assert_str_eq(vn_config_enum_name("data.interpolation", VN_CONFIG_INTERP_BILINEAR),
                     "bilinear");
    ck_assert_str_eq(vn_config_enum_name("optim.schedule", VN_CONFIG_SCHEDULE_CONSTANT),
                     "constant");
    ck_assert_str_eq(vn_config_enum_name("deep_training.schedule", VN_CONFIG_DECAY_COSINE),
                     "cosine");
    ck_assert_str_eq(vn_config_enum_name("deep_training.update", VN_CONFIG_UPDATE_ITERATION),
                     "iteration");
    ck_assert_str_eq(vn_config_enum_name("train.nonfinite", VN_CONFIG_NONFINITE_SKIP), "skip");
    ck_assert_str_eq(vn_config_enum_name("model.shortcut", VN_CONFIG_SHORTCUT_IDENTITY),
                     "identity");
}
END_TEST

/* ---- loading ---------------------------------------------------------------------------- */

static const char *full_example =
    "# a VanillaNet-5 run on a small dataset\n"
    "model:\n"
    "  name: custom\n"
    "  dims: [32, 64, 128, 256]\n"
    "  strides:\n"
    "    - 2\n"
    "    - 2\n"
    "    - 2\n"
    "  ada_pool: []\n"
    "  act_num: 2\n"
    "  in_chans: 1\n"
    "  num_classes: 10\n"
    "  drop_rate: 0.1\n"
    "  shortcut: identity\n"
    "  init: \"weights/start: #1.safetensors\"\n"
    "data:\n"
    "  root: /data/fashion-mnist\n"
    "  train_dir: tr\n"
    "  val_dir: ''\n"
    "  input_size: 32\n"
    "  mean: [0.286]\n"
    "  std: [0.353]\n"
    "  augment: none\n"
    "  scale: [0.5, 1]\n"
    "  ratio: [0.8, 1.25]\n"
    "  interpolation: bilinear\n"
    "  crop_pct: 1.0\n"
    "  hflip: 0\n"
    "  auto_augment: rand-m9-n3-mstd0.5\n"
    "  color_jitter: 0.3\n"
    "  reprob: 0.5\n"
    "  remode: rand\n"
    "  recount: 2\n"
    "  mixup: 0.0\n"
    "  cutmix: 0\n"
    "  mixup_prob: 0.5\n"
    "  mixup_switch_prob: 0.25\n"
    "  smoothing: 0.05\n"
    "  workers: 4\n"
    "  prefetch: 3\n"
    "  grayscale: yes\n"
    "  fail_fast: on\n"
    "  max_bad_fraction: 0.001\n"
    "  eval_batch_size: 256\n"
    "optim:\n"
    "  name: AdamW   # case does not matter\n"
    "  lr: 1e-3\n"
    "  weight_decay: 0.05\n"
    "  weight_decay_end: 0.1\n"
    "  momentum: 0.8\n"
    "  betas: [0.8, 0.99]\n"
    "  eps: 1.0e-6\n"
    "  clip_grad: 5\n"
    "  update_freq: 2\n"
    "  warmup_epochs: 1\n"
    "  warmup_steps: 100\n"
    "  min_lr: 0.00001\n"
    "  layer_decay: 0.8\n"
    "  layer_decay_num_layers: 5\n"
    "  schedule: step\n"
    "  step_epochs: 3\n"
    "  step_gamma: 0.5\n"
    "deep_training:\n"
    "  decay_epochs: 4\n"
    "  schedule: cosine\n"
    "  update: iteration\n"
    "ema:\n"
    "  decays: [0.999, 0.9999]\n"
    "  eval: false\n"
    "loss:\n"
    "  bce: no\n"
    "  smoothing: 0.2\n"
    "train:\n"
    "  epochs: 10\n"
    "  max_steps: 1e4\n"
    "  batch_size: 64\n"
    "  seed: 12345678901\n"
    "  shuffle: off\n"
    "  eval_every: 2\n"
    "  threads: 2\n"
    "  keep_mb: 32\n"
    "  log_every: 10\n"
    "  nonfinite: skip\n"
    "  max_skip: 3\n"
    "  device: cpu\n"
    "  tf32: false\n"
    "  deterministic: true\n"
    "  precision: bf16\n"
    "output:\n"
    "  dir: runs/fmnist\n"
    "  save_every: 5\n"
    "  save_every_steps: 500\n"
    "  keep_last: 0\n"
    "  tensorboard: False\n"
    "# keys added later, in the flat form\n"
    "model.init_key: model_ema|model\n"
    "data.eval_interpolation: bilinear\n"
    "data.eval_mode: resize-crop\n"
    "optim.nesterov: false\n"
    "loss.bce_always: true\n"
    "train.eval_from_epoch: 7\n"
    "model.sync_bn: true\n"
    "train.dist_bucket_mb: 4.5\n"
    "train.dist_timeout: 60\n"
    "model.task: classify\n"
    "detect.data: data.yaml\n"
    "detect.imgsz: 320\n"
    "detect.width_multiple: 0.5\n"
    "detect.depth_multiple: 0.34\n"
    "detect.max_channels: 512\n"
    "detect.c3k: true\n"
    "detect.reg_max: 8\n"
    "detect.close_mosaic: 3\n"
    "detect.mosaic: 0.5\n"
    "detect.scale: 0.3\n"
    "detect.translate: 0.05\n"
    "detect.fliplr: 0.4\n"
    "detect.hsv_h: 0.01\n"
    "detect.hsv_s: 0.5\n"
    "detect.hsv_v: 0.3\n"
    "detect.box: 7.0\n"
    "detect.cls: 0.6\n"
    "detect.dfl: 1.2\n"
    "detect.topk: 12\n"
    "detect.conf: 0.01\n"
    "detect.iou: 0.6\n"
    "detect.max_det: 100\n"
    "detect.ema_decay: 0.999\n"
    "detect.ema_tau: 500\n"
    "detect.warmup_bias_lr: 0.05\n"
    "detect.warmup_momentum: 0.7\n"
    "detect.warmup_accumulate: false\n";

static void check_full_example(const vn_config *c)
{
    ck_assert_str_eq(c->model.init_key, "model_ema|model");
    ck_assert(c->detect.ema_decay == 0.999 && c->detect.ema_tau == 500);
    ck_assert(c->detect.warmup_bias_lr == 0.05 && c->detect.warmup_momentum == 0.7);
    ck_assert(!c->detect.warmup_accumulate);
    ck_assert(c->model.sync_bn && c->train.dist_bucket_mb == 4.5 && c->train.dist_timeout == 60);
    ck_assert_int_eq(c->data.eval_interpolation, VN_CONFIG_INTERP_BILINEAR);
    ck_assert_int_eq(c->data.eval_mode, VN_CONFIG_EVAL_RESIZE_CROP);
    ck_assert(!c->optim.nesterov && c->loss.bce_always);
    ck_assert_int_eq(c->train.eval_from_epoch, 7);
    ck_assert_int_eq(c->model.name, VN_CONFIG_MODEL_CUSTOM);
    ck_assert_int_eq(c->model.dims.n, 4);
    ck_assert(c->model.dims.v[0] == 32 && c->model.dims.v[3] == 256);
    ck_assert_int_eq(c->model.strides.n, 3);
    ck_assert(c->model.strides.v[0] == 2 && c->model.strides.v[2] == 2);
    ck_assert_int_eq(c->model.ada_pool.n, 0);
    ck_assert_int_eq(c->model.act_num, 2);
    ck_assert_int_eq(c->model.in_chans, 1);
    ck_assert_int_eq(c->model.num_classes, 10);
    ck_assert(c->model.drop_rate == 0.1);
    ck_assert_int_eq(c->model.shortcut, VN_CONFIG_SHORTCUT_IDENTITY);
    ck_assert_str_eq(c->model.init, "weights/start: #1.safetensors");
    ck_assert_str_eq(c->data.root, "/data/fashion-mnist");
    ck_assert_str_eq(c->data.train_dir, "tr");
    ck_assert_str_eq(c->data.val_dir, "");
    ck_assert_int_eq(c->data.input_size, 32);
    ck_assert(c->data.mean.n == 1 && c->data.mean.v[0] == 0.286);
    ck_assert(c->data.std.n == 1 && c->data.std.v[0] == 0.353);
    ck_assert_int_eq(c->data.augment, VN_CONFIG_AUGMENT_NONE);
    ck_assert(c->data.scale.v[0] == 0.5 && c->data.scale.v[1] == 1.0);
    ck_assert(c->data.ratio.v[0] == 0.8 && c->data.ratio.v[1] == 1.25);
    ck_assert_int_eq(c->data.interpolation, VN_CONFIG_INTERP_BILINEAR);
    ck_assert(c->data.crop_pct == 1.0 && c->data.hflip == 0 && c->data.mixup == 0);
    ck_assert(c->data.cutmix == 0 && c->data.mixup_prob == 0.5);
    ck_assert(c->data.mixup_switch_prob == 0.25 && c->data.smoothing == 0.05);
    ck_assert_int_eq(c->data.workers, 4);
    ck_assert_int_eq(c->data.prefetch, 3);
    ck_assert(c->data.grayscale && c->data.fail_fast);
    ck_assert(c->data.max_bad_fraction == 0.001);
    ck_assert_int_eq(c->data.eval_batch_size, 256);
    ck_assert_int_eq(c->optim.name, VN_CONFIG_OPTIM_ADAMW);
    ck_assert(c->optim.lr == 1e-3 && c->optim.weight_decay == 0.05);
    ck_assert(c->optim.weight_decay_end == 0.1 && c->optim.momentum == 0.8);
    ck_assert(c->optim.betas.v[0] == 0.8 && c->optim.betas.v[1] == 0.99);
    ck_assert(c->optim.eps == 1e-6 && c->optim.clip_grad == 5);
    ck_assert_int_eq(c->optim.update_freq, 2);
    ck_assert_int_eq(c->optim.warmup_epochs, 1);
    ck_assert_int_eq(c->optim.warmup_steps, 100);
    ck_assert(c->optim.min_lr == 1e-5 && c->optim.layer_decay == 0.8);
    ck_assert_int_eq(c->optim.layer_decay_num_layers, 5);
    ck_assert_int_eq(c->optim.schedule, VN_CONFIG_SCHEDULE_STEP);
    ck_assert_int_eq(c->optim.step_epochs, 3);
    ck_assert(c->optim.step_gamma == 0.5);
    ck_assert_int_eq(c->deep_training.decay_epochs, 4);
    ck_assert_int_eq(c->deep_training.schedule, VN_CONFIG_DECAY_COSINE);
    ck_assert_int_eq(c->deep_training.update, VN_CONFIG_UPDATE_ITERATION);
    ck_assert(c->ema.decays.n == 2 && c->ema.decays.v[0] == 0.999 && c->ema.decays.v[1] == 0.9999);
    ck_assert(!c->ema.eval);
    ck_assert(!c->loss.bce && c->loss.smoothing == 0.2);
    ck_assert_int_eq(c->train.epochs, 10);
    ck_assert_int_eq(c->train.max_steps, 10000);
    ck_assert_int_eq(c->train.batch_size, 64);
    ck_assert_int_eq(c->train.seed, 12345678901LL);
    ck_assert(!c->train.shuffle);
    ck_assert_int_eq(c->train.eval_every, 2);
    ck_assert_int_eq(c->train.threads, 2);
    ck_assert_int_eq(c->train.log_every, 10);
    ck_assert(c->train.keep_mb == 32);
    ck_assert_int_eq(c->train.nonfinite, VN_CONFIG_NONFINITE_SKIP);
    ck_assert_int_eq(c->train.device, VN_CONFIG_DEVICE_CPU);
    ck_assert(!c->train.tf32 && c->train.deterministic &&
              c->train.precision == VN_CONFIG_PRECISION_BF16);
    ck_assert_int_eq(c->train.max_skip, 3);
    ck_assert_str_eq(c->data.auto_augment, "rand-m9-n3-mstd0.5");
    ck_assert(c->data.color_jitter == 0.3 && c->data.reprob == 0.5 && c->data.recount == 2);
    ck_assert_int_eq(c->data.remode, VN_CONFIG_REMODE_RAND);
    ck_assert_str_eq(c->output.dir, "runs/fmnist");
    ck_assert_int_eq(c->output.save_every, 5);
    ck_assert_int_eq(c->output.save_every_steps, 500);
    ck_assert_int_eq(c->output.keep_last, 0);
    ck_assert(!c->output.tensorboard);
}

START_TEST(test_full_file)
{
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/run.yaml", tmpdir);
    write_file(path, full_example);
    vn_config cfg;
    vn_error err = {0};
    vn_config_init(&cfg);
    must(vn_config_load_file(&cfg, path, &err), &err);
    must(vn_config_check(&cfg, &err), &err);
    check_full_example(&cfg);
    /* Every key of the schema is in the example, so none is left at its default. */
    size_t n, idx;
    vn_config_schema(&n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(cfg.origin[i].source == 0, "key %s not in the example",
                      vn_config_schema(NULL)[i].full);
    /* Positions are the value's: optim.lr is on line 42, column 7. */
    char buf[256], want[200];
    ck_assert_ptr_nonnull(vn_config_find("optim.lr", &idx));
    snprintf(want, sizeof want, "%s:47:7", path);
    ck_assert_str_eq(vn_config_origin_str(&cfg, idx, buf, sizeof buf), want);
    ck_assert_ptr_nonnull(vn_config_find("model.strides", &idx));
    snprintf(want, sizeof want, "%s:6:5", path);
    ck_assert_str_eq(vn_config_origin_str(&cfg, idx, buf, sizeof buf), want);
    unlink(path);
    vn_test_rmtree(tmpdir);
}
END_TEST

START_TEST(test_empty_and_partial)
{
    vn_config def, cfg;
    vn_error err = {0};
    vn_config_init(&def);
    const char *empties[] = {"", "# only a comment\n", "---\n", "~\n", "---\n...\n", "ema:\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        vn_config_init(&cfg);
        must(load(&cfg, empties[i], &err), &err);
        ck_assert_msg(vn_config_equal(&cfg, &def), "'%s' should leave the defaults", empties[i]);
    }
    /* Keys not in the file keep their values; dotted keys work at the top level. */
    vn_config_init(&cfg);
    must(load(&cfg, "optim:\n  lr: 0.002\ntrain.epochs: 7\n", &err), &err);
    ck_assert(cfg.optim.lr == 0.002);
    ck_assert_int_eq(cfg.train.epochs, 7);
    ck_assert(cfg.optim.weight_decay == 0.35);
    char *d = vn_config_diff_text(&def, &cfg, false);
    ck_assert_str_eq(d, "optim.lr: 0.0035 -> 0.002\ntrain.epochs: 300 -> 7\n");
    free(d);
    /* Layering a second file: its keys win, the first file's stay. */
    const char *second = "optim: {lr: 0.004, eps: 1e-7}\n";
    must(vn_config_load_text(&cfg, second, strlen(second), "second.yaml", &err), &err);
    ck_assert(cfg.optim.lr == 0.004 && cfg.optim.eps == 1e-7);
    ck_assert_int_eq(cfg.train.epochs, 7);
    size_t i_lr, i_ep;
    vn_config_find("optim.lr", &i_lr);
    vn_config_find("train.epochs", &i_ep);
    char buf[128];
    ck_assert_str_eq(vn_config_origin_str(&cfg, i_lr, buf, sizeof buf), "second.yaml:1:13");
    ck_assert_str_eq(vn_config_origin_str(&cfg, i_ep, buf, sizeof buf), "cfg.yaml:3:15");
    /* Null values: "" for strings, [] for lists. */
    vn_config_init(&cfg);
    must(load(&cfg, "model:\n  init: ~\n  dims:\nema:\n  decays: null\n", &err), &err);
    ck_assert_str_eq(cfg.model.init, "");
    ck_assert_int_eq(cfg.model.dims.n, 0);
    ck_assert_int_eq(cfg.ema.decays.n, 0);
    /* Quoted numbers are accepted; booleans in every YAML spelling. */
    must(load(&cfg, "optim: {lr: \"0.01\"}\ntrain: {shuffle: NO}\nloss: {bce: On}\n", &err), &err);
    ck_assert(cfg.optim.lr == 0.01 && !cfg.train.shuffle && cfg.loss.bce);
}
END_TEST

START_TEST(test_missing_file)
{
    vn_config cfg;
    vn_error err = {0};
    vn_config_init(&cfg);
    ck_assert_int_eq(vn_config_load_file(&cfg, "/nonexistent/dir/run.yaml", &err), VN_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/dir/run.yaml"));
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file"));
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------- */

START_TEST(test_error_unknown)
{
    EXPECT_LOAD_ERROR("optim:\n  lr: 0.1\n  lrr: 0.2\n",
                      "cfg.yaml:3:3: unknown key 'optim.lrr' (did you mean 'optim.lr'?)");
    /* The official trainer's flag names point to our keys. */
    EXPECT_LOAD_ERROR("optim:\n  learning_rate: 0.1\n",
                      "cfg.yaml:2:3: unknown key 'optim.learning_rate' (did you mean 'optim.lr'?)");
    EXPECT_LOAD_ERROR("model:\n  drop: 0.1\n", "unknown key 'model.drop'",
                      "did you mean 'model.drop_rate'?");
    EXPECT_LOAD_ERROR("data:\n  data_path: /x\n", "did you mean 'data.root'?");
    /* The right key in the wrong section. */
    EXPECT_LOAD_ERROR("train:\n  lr: 0.1\n", "cfg.yaml:2:3: unknown key 'train.lr'",
                      "did you mean 'optim.lr'?");
    /* Nothing close: no suggestion. */
    {
        vn_config c;
        vn_error e = {0};
        vn_config_init(&c);
        ck_assert_int_ne(load(&c, "optim:\n  zzzzzzzzzzzz: 1\n", &e), VN_OK);
        ck_assert_ptr_nonnull(strstr(e.msg, "unknown key 'optim.zzzzzzzzzzzz'"));
        ck_assert_ptr_null(strstr(e.msg, "did you mean"));
    }
    EXPECT_LOAD_ERROR("optm:\n  lr: 0.1\n",
                      "cfg.yaml:1:1: unknown section 'optm' (did you mean 'optim'?)");
    EXPECT_LOAD_ERROR("lr: 0.1\n", "cfg.yaml:1:1: unknown section 'lr'", "'optim.lr'");
    /* an official flag's name with a value: its key, not the section it resembles */
    EXPECT_LOAD_ERROR("aa: rand-m9\n", "cfg.yaml:1:1: unknown section 'aa'", "'data.auto_augment'");
    EXPECT_LOAD_ERROR("optim.learning_rate: 0.1\n", "cfg.yaml:1:1:", "'optim.learning_rate'",
                      "'optim.lr'");
}
END_TEST

START_TEST(test_error_types)
{
    EXPECT_LOAD_ERROR("optim:\n  lr: fast\n",
                      "cfg.yaml:2:7: optim.lr: expected a number, got \"fast\"");
    EXPECT_LOAD_ERROR("optim:\n  lr:\n", "cfg.yaml:2:", "optim.lr: expected a number, got nothing");
    EXPECT_LOAD_ERROR("optim:\n  lr: .inf\n", "optim.lr: expected a finite number");
    EXPECT_LOAD_ERROR("optim:\n  lr: nan\n", "optim.lr: expected a finite number");
    EXPECT_LOAD_ERROR("optim:\n  lr: 0x10\n", "optim.lr: expected a number, got \"0x10\"");
    EXPECT_LOAD_ERROR("train:\n  epochs: 1.5\n",
                      "cfg.yaml:2:11: train.epochs: expected an integer, got \"1.5\"");
    EXPECT_LOAD_ERROR("train:\n  seed: 99999999999999999999\n", "train.seed:", "too large");
    EXPECT_LOAD_ERROR("train:\n  shuffle: maybe\n",
                      "cfg.yaml:2:12: train.shuffle: expected true or false");
    EXPECT_LOAD_ERROR("output:\n  dir: \"\"\n", "cfg.yaml:2:8: output.dir: must not be empty");
    /* Scalars and lists in each other's place. */
    EXPECT_LOAD_ERROR("model:\n  dims: 64\n",
                      "cfg.yaml:2:9: model.dims: expected a list of integers", "\"64\"");
    EXPECT_LOAD_ERROR("optim:\n  lr: [0.1]\n", "cfg.yaml:2:7: optim.lr: expected", "got a list");
    EXPECT_LOAD_ERROR("optim:\n  lr: {a: 1}\n", "cfg.yaml:2:7: optim.lr:", "got a mapping");
    EXPECT_LOAD_ERROR("model:\n  dims: [[1, 2]]\n", "cfg.yaml:2:10: model.dims[0]:",
                      "got a list");
    EXPECT_LOAD_ERROR("optim: 0.1\n", "cfg.yaml:1:8: section 'optim' must be a mapping");
    EXPECT_LOAD_ERROR("- optim\n- lr\n", "cfg.yaml:1:1: expected a mapping of sections",
                      "got a list");
    EXPECT_LOAD_ERROR("just text\n", "cfg.yaml:1:1: expected a mapping of sections");
}
END_TEST

START_TEST(test_error_ranges)
{
    EXPECT_LOAD_ERROR("train:\n  epochs: 0\n",
                      "cfg.yaml:2:11: train.epochs: 0 is out of range [1, 100000]");
    EXPECT_LOAD_ERROR("data:\n  crop_pct: 0\n", "data.crop_pct: 0 is out of range (0, 1]");
    EXPECT_LOAD_ERROR("data:\n  hflip: 1.5\n", "data.hflip: 1.5 is out of range [0, 1]");
    EXPECT_LOAD_ERROR("optim:\n  lr: -1e-3\n", "optim.lr: -1e-3 is out of range [0, inf)");
    EXPECT_LOAD_ERROR("optim:\n  momentum: 1\n", "optim.momentum: 1 is out of range [0, 1)");
    EXPECT_LOAD_ERROR("model:\n  dims: [32, 0, 64]\n",
                      "cfg.yaml:2:14: model.dims[1]: 0 is out of range [1, 65536]");
    EXPECT_LOAD_ERROR("model:\n  dims: [32, x]\n",
                      "cfg.yaml:2:14: model.dims[1]: expected an integer, got \"x\"");
    EXPECT_LOAD_ERROR("optim:\n  betas: [0.9]\n",
                      "cfg.yaml:2:10: optim.betas: expected 2 numbers, got 1");
    EXPECT_LOAD_ERROR("data:\n  mean: [0.1, 0.2, 0.3, 0.4]\n",
                      "data.mean: expected 1 to 3 numbers, got 4");
    EXPECT_LOAD_ERROR("model:\n  dims: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18]\n",
                      "model.dims: expected 0 to 17 integers, got 18");
    EXPECT_LOAD_ERROR("optim:\n  name: adam\n",
                      "cfg.yaml:2:9: optim.name: \"adam\" is not one of: sgd, adamw, lamb "
                      "(did you mean 'adamw'?)");
    EXPECT_LOAD_ERROR("model:\n  name: resnet50\n", "model.name: \"resnet50\" is not one of:",
                      "vanillanet_5", "custom");
    EXPECT_LOAD_ERROR("data:\n  interpolation: 3\n", "data.interpolation: \"3\" is not one of: "
                                                    "bilinear, bicubic");
}
END_TEST

START_TEST(test_error_syntax_and_duplicates)
{
    EXPECT_LOAD_ERROR("optim:\n  lr: [1, 2\n", "cfg.yaml:", "invalid YAML");
    EXPECT_LOAD_ERROR("optim:\n  lr: 0.1\n bad: 1\n", "cfg.yaml:3:", "invalid YAML");
    EXPECT_LOAD_ERROR("optim:\n\tlr: 0.1\n", "cfg.yaml:2:", "invalid YAML");
    EXPECT_LOAD_ERROR("optim:\n  lr: 0.1\n  lr: 0.2\n",
                      "cfg.yaml:3:3: duplicate key 'optim.lr' (first set at line 2)");
    EXPECT_LOAD_ERROR("optim:\n  lr: 0.1\noptim.lr: 0.2\n",
                      "cfg.yaml:3:1: duplicate key 'optim.lr' (first set at line 2)");
    EXPECT_LOAD_ERROR("optim:\n  lr: 0.1\ntrain:\n  epochs: 3\noptim:\n  eps: 1e-9\n",
                      "cfg.yaml:5:1: duplicate section 'optim' (first at line 1)");
    EXPECT_LOAD_ERROR("optim:\n  lr: 0.1\n---\ntrain:\n  epochs: 2\n", "cfg.yaml:4:1:",
                      "second YAML document");
    /* Invalid UTF-8 is a reader error, located by byte. */
    EXPECT_LOAD_ERROR("data:\n  root: \xff\xfe\n", "cfg.yaml: invalid YAML", "byte");
    /* A failed load leaves the config as it was, even for keys before the error. */
    vn_config cfg, before;
    vn_error err = {0};
    vn_config_init(&cfg);
    before = cfg;
    ck_assert_int_ne(load(&cfg, "optim:\n  lr: 0.5\n  eps: bad\n", &err), VN_OK);
    ck_assert(vn_config_equal(&cfg, &before));
    ck_assert_int_eq(cfg.n_files, 0);
}
END_TEST

/* ---- --set ----------------------------------------------------------------------------- */

START_TEST(test_set)
{
    vn_config cfg;
    vn_error err = {0};
    vn_config_init(&cfg);
    must(vn_config_set(&cfg, "optim.lr=0.002", &err), &err);
    ck_assert(cfg.optim.lr == 0.002);
    must(vn_config_set(&cfg, "model.dims=[32,64, 128]", &err), &err);
    ck_assert(cfg.model.dims.n == 3 && cfg.model.dims.v[2] == 128);
    must(vn_config_set(&cfg, "model.strides=2,2", &err), &err);
    ck_assert(cfg.model.strides.n == 2 && cfg.model.strides.v[1] == 2);
    must(vn_config_set(&cfg, "ema.decays=[]", &err), &err);
    ck_assert_int_eq(cfg.ema.decays.n, 0);
    must(vn_config_set(&cfg, "ema.decays=0.99,0.999", &err), &err);
    ck_assert(cfg.ema.decays.n == 2 && cfg.ema.decays.v[1] == 0.999);
    must(vn_config_set(&cfg, "model.ada_pool=", &err), &err);
    ck_assert_int_eq(cfg.model.ada_pool.n, 0);
    must(vn_config_set(&cfg, "data.root=/mnt/data: with colon # and hash", &err), &err);
    ck_assert_str_eq(cfg.data.root, "/mnt/data: with colon # and hash");
    must(vn_config_set(&cfg, "model.init=", &err), &err);
    ck_assert_str_eq(cfg.model.init, "");
    must(vn_config_set(&cfg, "model.init=\"null\"", &err), &err);
    ck_assert_str_eq(cfg.model.init, "null");
    must(vn_config_set(&cfg, "train.shuffle=false", &err), &err);
    ck_assert(!cfg.train.shuffle);
    must(vn_config_set(&cfg, "optim.name=sgd", &err), &err);
    ck_assert_int_eq(cfg.optim.name, VN_CONFIG_OPTIM_SGD);
    must(vn_config_set(&cfg, " train.epochs = 12", &err), &err);
    ck_assert_int_eq(cfg.train.epochs, 12);
    size_t idx;
    vn_config_find("optim.lr", &idx);
    char buf[64];
    ck_assert_str_eq(vn_config_origin_str(&cfg, idx, buf, sizeof buf), "--set");
    /* --set after a file overrides it. */
    must(load(&cfg, "optim:\n  lr: 0.1\n", &err), &err);
    must(vn_config_set(&cfg, "optim.lr=0.3", &err), &err);
    ck_assert(cfg.optim.lr == 0.3);

    EXPECT_SET_ERROR("optim.lr=fast", "--set optim.lr=fast: optim.lr: expected a number, got \"fast\"");
    EXPECT_SET_ERROR("optim.lrr=0.1", "--set optim.lrr=0.1: unknown key 'optim.lrr'",
                     "did you mean 'optim.lr'?");
    EXPECT_SET_ERROR("lr=0.1", "unknown key 'lr'", "did you mean 'optim.lr'?");
    EXPECT_SET_ERROR("optim.lr", "--set optim.lr: expected section.key=value");
    EXPECT_SET_ERROR("model.dims=[32,x]", "--set model.dims=[32,x]: model.dims[1]: expected an integer");
    EXPECT_SET_ERROR("optim.betas=[0.9]", "optim.betas: expected 2 numbers, got 1");
    EXPECT_SET_ERROR("model.dims=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,"
                     "25,26,27,28,29,30,31,32,33,34", "model.dims: expected at most 17");
    EXPECT_SET_ERROR("train.epochs=0", "train.epochs: 0 is out of range [1, 100000]");
    EXPECT_SET_ERROR("optim.name=adam", "did you mean 'adamw'?");
    EXPECT_SET_ERROR("data.root=\xc3\x28", "data.root: is not valid UTF-8");
    EXPECT_SET_ERROR("output.dir=", "output.dir: must not be empty");
}
END_TEST

/* ---- output ----------------------------------------------------------------------------- */

static void set_all(vn_config *cfg)
{
    vn_error err = {0};
    vn_config_init(cfg);
    must(load(cfg, full_example, &err), &err);
    /* Strings that need escaping, and floats that need all 17 digits. */
    must(vn_config_set(cfg, "data.root=/data/\"quoted\" \\back\tslash/\xc3\xa9t\xc3\xa9", &err), &err);
    cfg->optim.lr = 0.1 + 0.2;
    cfg->optim.min_lr = 1e-300;
    cfg->data.mean.v[0] = 1.0 / 3.0;
    cfg->optim.weight_decay = 5e-324; /* the smallest subnormal */
}

START_TEST(test_round_trip)
{
    vn_config a, b;
    vn_error err = {0};
    set_all(&a);
    unsigned flag_sets[] = {0, VN_CONFIG_WRITE_HELP, VN_CONFIG_WRITE_HELP | VN_CONFIG_WRITE_ORIGIN};
    for (int t = 0; t < 3; t++) {
        char *text = vn_config_to_yaml(&a, flag_sets[t]);
        ck_assert_ptr_nonnull(text);
        vn_config_init(&b);
        int rc = vn_config_load_text(&b, text, strlen(text), "written.yaml", &err);
        ck_assert_msg(rc == VN_OK, "%s\n--- in ---\n%s", err.msg, text);
        char *d = vn_config_diff_text(&a, &b, false);
        ck_assert_msg(vn_config_equal(&a, &b), "round trip changed:\n%s", d);
        free(d);
        ck_assert_uint_eq(vn_config_hash(&a), vn_config_hash(&b));
        ck_assert(b.optim.lr == 0.1 + 0.2 && b.optim.weight_decay == 5e-324);
        ck_assert_str_eq(b.data.root, "/data/\"quoted\" \\back\tslash/\xc3\xa9t\xc3\xa9");
        if (flag_sets[t] & VN_CONFIG_WRITE_HELP)
            ck_assert_ptr_nonnull(strstr(text, "  # Peak learning rate"));
        else
            ck_assert_ptr_null(strstr(text, "# Peak"));
        if (flag_sets[t] & VN_CONFIG_WRITE_ORIGIN)
            ck_assert_ptr_nonnull(strstr(text, "  # from --set"));
        free(text);
    }
    /* Defaults print readably, as YAML 1.1 floats. */
    vn_config_init(&a);
    char *text = vn_config_to_yaml(&a, 0);
    ck_assert_ptr_nonnull(strstr(text, "\noptim:\n  name: lamb\n  lr: 0.0035\n"));
    ck_assert_ptr_nonnull(strstr(text, "  eps: 1.0e-08\n"));
    ck_assert_ptr_nonnull(strstr(text, "  mean: [0.485, 0.456, 0.406]\n"));
    ck_assert_ptr_nonnull(strstr(text, "  dims: []\n"));
    ck_assert_ptr_nonnull(strstr(text, "  dir: \"runs/vanilla\"\n"));
    ck_assert_ptr_nonnull(strstr(text, "  epochs: 300\n"));
    ck_assert_ptr_nonnull(strstr(text, "  cutmix: 1.0\n"));
    free(text);
    char v[64];
    ck_assert_int_eq(vn_config_get(&a, "optim.betas", v, sizeof v), 12);
    ck_assert_str_eq(v, "[0.9, 0.999]");
    ck_assert_int_eq(vn_config_get(&a, "nope.nope", v, sizeof v), -1);
}
END_TEST

START_TEST(test_save)
{
    make_tmpdir();
    char path[128], tmp[140];
    snprintf(path, sizeof path, "%s/config.yaml", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    vn_config a, b;
    vn_error err = {0};
    set_all(&a);
    must(vn_config_save(&a, path, &err), &err);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    vn_config_init(&b);
    must(vn_config_load_file(&b, path, &err), &err);
    ck_assert(vn_config_equal(&a, &b));
    /* from_text also runs the checks. */
    vn_config c;
    const char *t1 = "train: {epochs: 40}\n";
    const char *t2 = "optim: {warmup_epochs: 9}\ntrain: {epochs: 4}\n";
    must(vn_config_from_text(&c, t1, strlen(t1), "ckpt:config", &err), &err);
    ck_assert_int_eq(c.train.epochs, 40);
    ck_assert_int_ne(vn_config_from_text(&c, t2, strlen(t2), "ckpt:config", &err), VN_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "ckpt:config:1:"));
    /* An unwritable place is an error, not a crash. */
    snprintf(path, sizeof path, "%s/missing/config.yaml", tmpdir);
    ck_assert_int_eq(vn_config_save(&a, path, &err), VN_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "missing/config.yaml"));
    snprintf(path, sizeof path, "%s/config.yaml", tmpdir);
    unlink(path);
    vn_test_rmtree(tmpdir);
}
END_TEST

START_TEST(test_markdown)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(vn_config_schema_markdown(f), VN_OK);
    fclose(f);
    size_t n, lines = 0;
    vn_config_schema(&n);
    for (char *p = buf; *p; p++) lines += *p == '\n';
    ck_assert_uint_eq(lines, n + 2);
    ck_assert_ptr_nonnull(strstr(buf, "| Key | Type | Default | Allowed | Hashed | Official flag | Meaning |\n"));
    ck_assert_ptr_nonnull(strstr(buf, "| `optim.lr` | float | `0.0035` | number in [0, inf) | yes | `--lr` | Peak"));
    ck_assert_ptr_nonnull(strstr(buf, "| `optim.name` | enum | `lamb` | one of: sgd, adamw, lamb | yes | `--opt` |"));
    ck_assert_ptr_nonnull(strstr(buf, "| `output.dir` | string | `\"runs/vanilla\"` | non-empty string | no | `--output_dir` |"));
    ck_assert_ptr_nonnull(strstr(buf, "| `optim.betas` | float list | `[0.9, 0.999]` | 2 numbers in [0, 1) | yes | `--opt_betas` |"));
    free(buf);
}
END_TEST

/* ---- hash and diff ----------------------------------------------------------------------- */

START_TEST(test_hash)
{
    vn_config a, b;
    vn_error err = {0};
    vn_config_init(&a);
    uint64_t h0 = vn_config_hash(&a);
    ck_assert_uint_eq(vn_config_hash(&a), h0);
    /* The same settings at another address, and loaded in another key order. */
    vn_config *heap = malloc(sizeof *heap);
    *heap = a;
    ck_assert_uint_eq(vn_config_hash(heap), h0);
    free(heap);
    vn_config_init(&a);
    vn_config_init(&b);
    must(load(&a, "optim:\n  lr: 0.002\n  eps: 1e-7\ntrain:\n  epochs: 9\n", &err), &err);
    must(load(&b, "train: {epochs: 9}\noptim.eps: 0.0000001\noptim:\n  lr: 2.0e-3 # same\n", &err), &err);
    ck_assert_uint_eq(vn_config_hash(&a), vn_config_hash(&b));
    ck_assert_uint_ne(vn_config_hash(&a), h0);
    char hex[17];
    vn_config_hash_hex(&a, hex);
    ck_assert_uint_eq(strlen(hex), 16);
    ck_assert_uint_eq(strtoull(hex, NULL, 16), vn_config_hash(&a));
    /* Every hashed key changes it; unhashed keys do not. */
    const char *hashed[] = {"optim.lr=0.0036", "train.seed=1", "model.dims=[8,16]",
                            "data.grayscale=true", "ema.decays=[]", "loss.bce=false",
                            "optim.name=adamw", "data.mean=[0.5,0.5,0.5]", NULL};
    const char *free_keys[] = {"output.dir=elsewhere", "data.root=/other", "data.workers=7",
                               "train.threads=1", "train.log_every=1", "output.keep_last=9",
                               "train.max_steps=5", "model.init=w.safetensors",
                               "train.eval_every=0", "ema.eval=false", NULL};
    for (int i = 0; hashed[i]; i++) {
        vn_config_init(&b);
        must(vn_config_set(&b, hashed[i], &err), &err);
        ck_assert_msg(vn_config_hash(&b) != h0, "%s should change the hash", hashed[i]);
        ck_assert_int_eq(vn_config_diff(&a, &b, false, NULL) > 0, 1);
    }
    for (int i = 0; free_keys[i]; i++) {
        vn_config_init(&b);
        must(vn_config_set(&b, free_keys[i], &err), &err);
        ck_assert_msg(vn_config_hash(&b) == h0, "%s should not change the hash", free_keys[i]);
    }
    /* -0.0 and 0.0 are the same setting. */
    vn_config_init(&a);
    vn_config_init(&b);
    a.optim.clip_grad = -0.0;
    ck_assert_uint_eq(vn_config_hash(&a), vn_config_hash(&b));
}
END_TEST

START_TEST(test_diff)
{
    vn_config a, b;
    vn_error err = {0};
    vn_config_init(&a);
    vn_config_init(&b);
    ck_assert_int_eq(vn_config_diff(&a, &b, false, NULL), 0);
    char *d = vn_config_diff_text(&a, &b, false);
    ck_assert_str_eq(d, "");
    free(d);
    must(vn_config_set(&b, "optim.lr=0.002", &err), &err);
    must(vn_config_set(&b, "model.dims=[32, 64]", &err), &err);
    must(vn_config_set(&b, "output.dir=/tmp/x", &err), &err);
    must(vn_config_set(&b, "optim.name=sgd", &err), &err);
    ck_assert_int_eq(vn_config_diff(&a, &b, false, NULL), 4);
    d = vn_config_diff_text(&a, &b, false);
    ck_assert_str_eq(d, "model.dims: [] -> [32, 64]\n"
                        "optim.name: lamb -> sgd\n"
                        "optim.lr: 0.0035 -> 0.002\n"
                        "output.dir: \"runs/vanilla\" -> \"/tmp/x\"\n");
    free(d);
    d = vn_config_diff_text(&a, &b, true);
    ck_assert_str_eq(d, "model.dims: [] -> [32, 64]\n"
                        "optim.name: lamb -> sgd\n"
                        "optim.lr: 0.0035 -> 0.002\n");
    free(d);
}
END_TEST

START_TEST(test_resume_check)
{
    vn_config stored, cur;
    vn_error err = {0};
    vn_config_init(&stored);
    vn_config_init(&cur);
    /* Unhashed keys may change on resume. */
    must(vn_config_set(&cur, "output.dir=/elsewhere", &err), &err);
    must(vn_config_set(&cur, "train.max_steps=100", &err), &err);
    must(vn_config_resume_check(&stored, &cur, false, &err), &err);
    must(vn_config_set(&cur, "optim.lr=0.002", &err), &err);
    ck_assert_int_eq(vn_config_resume_check(&stored, &cur, false, &err), VN_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(err.msg, "in 1 setting that"));
    ck_assert_ptr_nonnull(strstr(err.msg, "  optim.lr: 0.0035 -> 0.002\n"));
    ck_assert_ptr_nonnull(strstr(err.msg, "--force"));
    ck_assert_ptr_null(strstr(err.msg, "output.dir"));
    vn_log_set_level(VN_LOG_QUIET);
    must(vn_config_resume_check(&stored, &cur, true, &err), &err);
    /* Many changes: the first 8 are listed, the rest counted. */
    const char *sets[] = {"train.seed=1", "train.epochs=5", "optim.eps=1e-9", "optim.name=sgd",
                          "loss.bce=false", "data.mixup=0.5", "data.cutmix=0.5",
                          "data.hflip=0.25", "model.act_num=1", "ema.decays=[]", NULL};
    for (int i = 0; sets[i]; i++) must(vn_config_set(&cur, sets[i], &err), &err);
    ck_assert_int_eq(vn_config_resume_check(&stored, &cur, false, &err), VN_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(err.msg, "in 11 settings"));
    ck_assert_ptr_nonnull(strstr(err.msg, "... and 3 more"));
}
END_TEST

/* ---- rules across keys ------------------------------------------------------------------ */

START_TEST(test_check)
{
    vn_config cfg;
    vn_error err = {0};
    vn_config_init(&cfg);
    must(load(&cfg, "model:\n  name: custom\n", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "cfg.yaml:2:9: model.name: custom needs model.dims and model.strides");

    vn_config_init(&cfg);
    must(load(&cfg, "model:\n  dims: [8, 16, 32]\n  strides: [2]\n", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "cfg.yaml:2:9: model.dims has 3 values but model.strides has 1");
    /* A named variant takes only strides (or only dims) as an override. */
    vn_config_init(&cfg);
    must(vn_config_set(&cfg, "model.dims=[128,256,512,1024]", &err), &err);
    must(vn_config_check(&cfg, &err), &err);

    vn_config_init(&cfg);
    must(load(&cfg, "model:\n  strides: [2, 2]\n  ada_pool: [0, 0, 0]\n", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "cfg.yaml:3:13: model.ada_pool has 3 values");

    /* Grayscale needs one input channel and one-value mean and std; the message points at
     * the key the user set. */
    vn_config_init(&cfg);
    must(load(&cfg, "data:\n  grayscale: true\n", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "cfg.yaml:2:14: model.in_chans is 3 but data.grayscale: true",
                       "set model.in_chans: 1");
    must(vn_config_set(&cfg, "model.in_chans=1", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "cfg.yaml:2:14: data.mean has 3 values for 1-channel images");
    must(vn_config_set(&cfg, "data.mean=[0.5]", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "data.std has 3 values");
    must(vn_config_set(&cfg, "data.std=[0.25]", &err), &err);
    must(vn_config_check(&cfg, &err), &err);

    vn_config_init(&cfg);
    must(vn_config_set(&cfg, "data.scale=[0.9,0.1]", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "--set: data.scale: the lower bound 0.9 exceeds the upper 0.1");
    vn_config_init(&cfg);
    must(vn_config_set(&cfg, "data.ratio=[2,1]", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "data.ratio: the lower bound 2");

    vn_config_init(&cfg);
    must(vn_config_set(&cfg, "train.batch_size=33", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "--set: train.batch_size 33 is odd");
    must(vn_config_set(&cfg, "data.mixup=0", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "is odd");
    must(vn_config_set(&cfg, "data.cutmix=0", &err), &err);
    must(vn_config_check(&cfg, &err), &err);

    vn_config_init(&cfg);
    must(vn_config_set(&cfg, "optim.weight_decay_end=-0.5", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "optim.weight_decay_end must be >= 0, or -1");

    vn_config_init(&cfg);
    must(load(&cfg, "train:\n  epochs: 3\n", &err), &err);
    EXPECT_CHECK_ERROR(&cfg, "cfg.yaml:2:11: optim.warmup_epochs (5) is longer than train.epochs (3)");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_enum_names);
    tcase_add_test(tc, test_full_file);
    tcase_add_test(tc, test_empty_and_partial);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_error_unknown);
    tcase_add_test(tc, test_error_types);
    tcase_add_test(tc, test_error_ranges);
    tcase_add_test(tc, test_error_syntax_and_duplicates);
    tcase_add_test(tc, test_set);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_save);
    tcase_add_test(tc, test_markdown);
    tcase_add_test(tc, test_hash);
    tcase_add_test(tc, test_diff);
    tcase_add_test(tc, test_resume_check);
    tcase_add_test(tc, test_check);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vn_test_run(config_suite(), true);
}
