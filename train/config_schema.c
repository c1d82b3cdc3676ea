/* The schema of the trainer's configuration: one row per key. Everything else (defaults,
 * parsing, validation, `vanilla config show`, the markdown reference, hashing, diffs) reads
 * this table, so a new key is a field in vn_config.h plus one row here.
 *
 * Defaults follow the official VanillaNet-5 ImageNet recipe (README of huawei-noah/VanillaNet):
 * 300 epochs, deep training over 100, LAMB lr 3.5e-3 with weight decay 0.35, 5 warmup epochs
 * then cosine to 1e-6 per iteration, drop 0.05, mixup 0.1 / cutmix 1.0, label smoothing 0.1
 * with BCE, EMA 0.99996, bicubic RandomResizedCrop 224, eval crop_pct 0.875. The official
 * effective batch of 1024 (8 GPUs x 128) is batch_size 128 x update_freq 8 here, and
 * RandAugment rand-m7-mstd0.5-inc1 with random erasing 0.25 (pixel mode) as in main.py. */
#include <math.h>
#include <stddef.h>

#include "train/config_impl.h"

/* The type of a row follows from the C type of its field, so the two cannot disagree. */
#define VN_CFG_TYPE_OF(field)                                                                   \
    _Generic((field), bool: VN_CONFIG_BOOL, int64_t: VN_CONFIG_INT, double: VN_CONFIG_FLOAT,   \
             char *: VN_CONFIG_STRING, int: VN_CONFIG_ENUM, vn_config_ints: VN_CONFIG_INT_LIST, \
             vn_config_floats: VN_CONFIG_FLOAT_LIST)

#define KEY(sec, key)                                                                 \
    .section = #sec, .name = #key, .full = #sec "." #key,                             \
    .type = VN_CFG_TYPE_OF(((vn_config *)0)->sec.key),                                \
    .offset = offsetof(vn_config, sec.key), .size = sizeof(((vn_config *)0)->sec.key)
#define RANGE(lo, hi) .has_range = true, .min = (lo), .max = (hi)
#define LEN(lo, hi) .min_len = (lo), .max_len = (hi)
#define INF HUGE_VAL

/* Choice spellings indexed by the header's enum values, so the two stay in step. */
static const char *const model_names[] = {
    [VN_CONFIG_MODEL_VANILLANET_5] = "vanillanet_5",
    [VN_CONFIG_MODEL_VANILLANET_6] = "vanillanet_6",
    [VN_CONFIG_MODEL_VANILLANET_7] = "vanillanet_7",
    [VN_CONFIG_MODEL_VANILLANET_8] = "vanillanet_8",
    [VN_CONFIG_MODEL_VANILLANET_9] = "vanillanet_9",
    [VN_CONFIG_MODEL_VANILLANET_10] = "vanillanet_10",
    [VN_CONFIG_MODEL_VANILLANET_11] = "vanillanet_11",
    [VN_CONFIG_MODEL_VANILLANET_12] = "vanillanet_12",
    [VN_CONFIG_MODEL_VANILLANET_13] = "vanillanet_13",
    [VN_CONFIG_MODEL_VANILLANET_13_X1_5] = "vanillanet_13_x1_5",
    [VN_CONFIG_MODEL_VANILLANET_13_X1_5_ADA_POOL] = "vanillanet_13_x1_5_ada_pool",
    [VN_CONFIG_MODEL_CUSTOM] = "custom",
    NULL};
static const char *const shortcut_names[] = {
    [VN_CONFIG_SHORTCUT_NONE] = "none", [VN_CONFIG_SHORTCUT_IDENTITY] = "identity", NULL};
static const char *const augment_names[] = {
    [VN_CONFIG_AUGMENT_NONE] = "none", [VN_CONFIG_AUGMENT_RRC] = "random-resized-crop",
    [VN_CONFIG_AUGMENT_RANDOM_CROP] = "random-crop", NULL};
static const char *const interp_names[] = {
    [VN_CONFIG_INTERP_BILINEAR] = "bilinear", [VN_CONFIG_INTERP_BICUBIC] = "bicubic", NULL};
static const char *const eval_mode_names[] = {
    [VN_CONFIG_EVAL_OFFICIAL] = "official", [VN_CONFIG_EVAL_RESIZE_CROP] = "resize-crop", NULL};
static const char *const remode_names[] = {
    [VN_CONFIG_REMODE_CONST] = "const", [VN_CONFIG_REMODE_RAND] = "rand",
    [VN_CONFIG_REMODE_PIXEL] = "pixel", NULL};
static const char *const optim_names[] = {
    [VN_CONFIG_OPTIM_SGD] = "sgd", [VN_CONFIG_OPTIM_ADAMW] = "adamw",
    [VN_CONFIG_OPTIM_LAMB] = "lamb", NULL};
static const char *const schedule_names[] = {
    [VN_CONFIG_SCHEDULE_COSINE] = "cosine", [VN_CONFIG_SCHEDULE_STEP] = "step",
    [VN_CONFIG_SCHEDULE_CONSTANT] = "constant", NULL};
static const char *const decay_names[] = {
    [VN_CONFIG_DECAY_LINEAR] = "linear", [VN_CONFIG_DECAY_COSINE] = "cosine", NULL};
static const char *const update_names[] = {
    [VN_CONFIG_UPDATE_EPOCH] = "epoch", [VN_CONFIG_UPDATE_ITERATION] = "iteration", NULL};
static const char *const nonfinite_names[] = {
    [VN_CONFIG_NONFINITE_STOP] = "stop", [VN_CONFIG_NONFINITE_SKIP] = "skip", NULL};
static const char *const device_names[] = {
    [VN_CONFIG_DEVICE_CPU] = "cpu", [VN_CONFIG_DEVICE_CUDA] = "cuda", NULL};

static const char *const precision_names[] = {
    [VN_CONFIG_PRECISION_FP32] = "fp32", [VN_CONFIG_PRECISION_BF16] = "bf16", NULL};

static const char *const task_names[] = {
    [VN_CONFIG_TASK_CLASSIFY] = "classify", [VN_CONFIG_TASK_DETECT] = "detect", NULL};

static const vn_config_key schema[] = {
    /* ---- model ---- */
    {KEY(model, task), .def = "classify", .choices = task_names, .aka = "yolo11-vanillanet detector",
     .help = "classify, or detect: YOLO11-VanillaNet (backbone from model.*, neck and head from detect.*)."},
    {KEY(model, name), .def = "vanillanet_5", .choices = model_names, .official = "--model", .aka = "arch",
     .help = "Released VanillaNet variant, or custom (then dims and strides are required)."},
    {KEY(model, dims), .def = "[]", RANGE(1, 65536), LEN(0, 17), .aka = "widths channels",
     .help = "Channels of the stem and each stage (len(strides) + 1); empty: the variant's."},
    {KEY(model, strides), .def = "[]", RANGE(1, 16), LEN(0, 16),
     .help = "Downsampling of each stage (1 or a max-pool stride); empty: the variant's."},
    {KEY(model, ada_pool), .def = "[]", RANGE(0, 4096), LEN(0, 16),
     .help = "AdaptiveMaxPool output size per stage, 0: plain pool; empty: the variant's "
             "(none for custom)."},
    {KEY(model, act_num), .def = "3", RANGE(0, 16), .official = "--act_num",
     .help = "Series of the activation: its depthwise kernel is 2 * act_num + 1."},
    {KEY(model, in_chans), .def = "3", RANGE(1, 3), .aka = "channels",
     .help = "Input channels: 3 for RGB, 1 with data.grayscale."},
    {KEY(model, num_classes), .def = "0", RANGE(0, 1000000), .official = "--nb_classes", .aka = "classes",
     .help = "Output classes; 0: the number of class folders in data.train_dir."},
    {KEY(model, drop_rate), .def = "0.05", RANGE(0, 1), .flags = VN_CONFIG_MAX_OPEN,
     .official = "--drop", .aka = "dropout",
     .help = "Dropout before the classifier's conv."},
    {KEY(model, shortcut), .def = "none", .choices = shortcut_names,
     .help = "Paper ablation: identity shortcut around each block (1x1 conv where shapes "
             "change)."},
    {KEY(model, sync_bn), .def = "false",
     .help = "Data-parallel: BatchNorm statistics over the batch of all ranks (SyncBatchNorm); "
             "false: per rank."},
    {KEY(model, init), .def = "\"\"", .flags = VN_CONFIG_NOT_HASHED,
     .official = "--finetune", .aka = "pretrained weights",
     .help = "Weights to start from (\"\": random; detect: a detector or classifier); other heads "
             "start fresh; not on resume."},
    {KEY(model, init_key), .def = "model", .flags = VN_CONFIG_NOT_HASHED | VN_CONFIG_NONEMPTY,
     .official = "--model_key",
     .help = "Which weights of a checkpoint model.init takes: model, model_ema (EMA 0), "
             "model_ema.N; a|b: first held."},

    /* ---- data ---- */
    {KEY(data, root), .def = "\"\"", .flags = VN_CONFIG_NOT_HASHED, .official = "--data_path", .aka = "path",
     .help = "Dataset folder holding train_dir and val_dir (required to train)."},
    {KEY(data, train_dir), .def = "train", .flags = VN_CONFIG_NOT_HASHED | VN_CONFIG_NONEMPTY,
     .help = "Training images under root, one folder per class."},
    {KEY(data, val_dir), .def = "val", .flags = VN_CONFIG_NOT_HASHED, .aka = "eval_data_path",
     .help = "Validation images under root, same class folders (\"\": no validation)."},
    {KEY(data, input_size), .def = "224", RANGE(4, 8192), .official = "--input_size", .aka = "image_size",
     .help = "Side of the square crops, in pixels."},
    {KEY(data, mean), .def = "[0.485, 0.456, 0.406]", LEN(1, 3),
     .help = "Per-channel mean subtracted after scaling pixels to [0, 1]; 1 value with "
             "grayscale."},
    {KEY(data, std), .def = "[0.229, 0.224, 0.225]", RANGE(0, INF), LEN(1, 3),
     .flags = VN_CONFIG_MIN_OPEN,
     .help = "Per-channel divisor applied after the mean; 1 value with grayscale."},
    {KEY(data, augment), .def = "random-resized-crop", .choices = augment_names,
     .help = "Training crop: RandomResizedCrop, random-crop (RandomCrop, 4 px zero padding) "
             "or none (eval geometry)."},
    {KEY(data, scale), .def = "[0.08, 1.0]", RANGE(0, 1), LEN(2, 2), .flags = VN_CONFIG_MIN_OPEN,
     .help = "RandomResizedCrop area range, as fractions of the image."},
    {KEY(data, ratio), .def = "[0.75, 1.3333333333333333]", RANGE(0, INF), LEN(2, 2),
     .flags = VN_CONFIG_MIN_OPEN,
     .help = "RandomResizedCrop aspect-ratio (width / height) range."},
    {KEY(data, interpolation), .def = "bicubic", .choices = interp_names,
     .official = "--train_interpolation", .aka = "interp",
     .help = "Resampling filter of the training resizes (Pillow's, antialiased)."},
    {KEY(data, eval_interpolation), .def = "bicubic", .choices = interp_names,
     .flags = VN_CONFIG_NOT_HASHED,
     .help = "Resampling filter of the evaluation resize (the official one is always bicubic)."},
    {KEY(data, eval_mode), .def = "official", .choices = eval_mode_names,
     .help = "official: datasets.py (<= 32 px: no eval resize, RandomCrop; >= 384: square); "
             "resize-crop: at all sizes."},
    {KEY(data, crop_pct), .def = "0.875", RANGE(0, 1), .flags = VN_CONFIG_MIN_OPEN,
     .official = "--crop_pct",
     .help = "Evaluation: shorter side resized to input_size / crop_pct, then center crop "
             "(see data.eval_mode)."},
    {KEY(data, hflip), .def = "0.5", RANGE(0, 1), .aka = "flip",
     .help = "Probability of a horizontal flip in training."},
    {KEY(data, auto_augment), .def = "rand-m7-mstd0.5-inc1", .official = "--aa",
     .aka = "aa randaugment rand_augment autoaugment",
     .help = "timm RandAugment string (rand-m<M>[-n<N>][-mstd<S>][-mmax<X>][-inc1][-w0]) "
             "after crop and flip; \"\": off."},
    {KEY(data, color_jitter), .def = "0.4", RANGE(0, 1000), .official = "--color_jitter",
     .aka = "jitter",
     .help = "ColorJitter brightness/contrast/saturation; used only when auto_augment is "
             "\"\" (as timm); 0: off."},
    {KEY(data, reprob), .def = "0.25", RANGE(0, 1), .official = "--reprob",
     .aka = "random_erasing erase_prob re_prob",
     .help = "Random erasing probability (after Normalize); 0: off."},
    {KEY(data, remode), .def = "pixel", .choices = remode_names, .official = "--remode",
     .aka = "re_mode",
     .help = "Random erasing fill: per-pixel N(0,1), one N(0,1) per channel (rand), or 0."},
    {KEY(data, recount), .def = "1", RANGE(1, 64), .official = "--recount", .aka = "re_count",
     .help = "Random erasing: up to this many boxes per image (uniform count)."},
    {KEY(data, mixup), .def = "0.1", RANGE(0, INF), .official = "--mixup", .aka = "mixup_alpha",
     .help = "Mixup Beta(alpha, alpha) parameter; 0: off."},
    {KEY(data, cutmix), .def = "1.0", RANGE(0, INF), .official = "--cutmix", .aka = "cutmix_alpha",
     .help = "CutMix Beta(alpha, alpha) parameter; 0: off."},
    {KEY(data, mixup_prob), .def = "1.0", RANGE(0, 1), .official = "--mixup_prob",
     .help = "Probability of mixing a batch when mixup or cutmix is on."},
    {KEY(data, mixup_switch_prob), .def = "0.5", RANGE(0, 1), .official = "--mixup_switch_prob",
     .help = "Probability of CutMix rather than mixup when both are on."},
    {KEY(data, smoothing), .def = "0.1", RANGE(0, 1), .flags = VN_CONFIG_MAX_OPEN,
     .official = "--smoothing",
     .help = "Label smoothing of the mixed soft targets (mixup or cutmix on); see "
             "loss.smoothing."},
    {KEY(data, workers), .def = "2", RANGE(0, 256), .flags = VN_CONFIG_NOT_HASHED,
     .official = "--num_workers",
     .help = "Image decoding threads, 0: on the training thread; batches do not depend on it."},
    {KEY(data, prefetch), .def = "2", RANGE(1, 64), .flags = VN_CONFIG_NOT_HASHED,
     .help = "Batches prepared ahead of the training step."},
    {KEY(data, grayscale), .def = "false", .aka = "gray",
     .help = "Decode images to one channel (then model.in_chans: 1 and 1-value mean/std)."},
    {KEY(data, fail_fast), .def = "false", .flags = VN_CONFIG_NOT_HASHED,
     .help = "Stop at the first unreadable image instead of skipping it."},
    {KEY(data, max_bad_fraction), .def = "0.01", RANGE(0, 1), .flags = VN_CONFIG_NOT_HASHED,
     .help = "Stop when more than this fraction of the images cannot be read."},
    {KEY(data, eval_batch_size), .def = "0", RANGE(0, 65536), .flags = VN_CONFIG_NOT_HASHED,
     .help = "Evaluation batch size; 0: train.batch_size."},

    /* ---- optim ---- */
    {KEY(optim, name), .def = "lamb", .choices = optim_names, .official = "--opt", .aka = "optimizer",
     .help = "Optimizer: SGD with momentum, AdamW, or LAMB (as timm 0.6.12, the official one)."},
    {KEY(optim, lr), .def = "3.5e-3", RANGE(0, INF), .official = "--lr", .aka = "learning_rate",
     .help = "Peak learning rate, reached at the end of warmup (for the effective batch)."},
    {KEY(optim, weight_decay), .def = "0.35", RANGE(0, INF), .official = "--weight_decay", .aka = "wd",
     .help = "Weight decay; not applied to biases and 1-D parameters."},
    {KEY(optim, weight_decay_end), .def = "-1", RANGE(-1, INF), .official = "--weight_decay_end",
     .help = "Final weight decay of a cosine schedule; -1: weight_decay throughout."},
    {KEY(optim, momentum), .def = "0.9", RANGE(0, 1), .flags = VN_CONFIG_MAX_OPEN,
     .official = "--momentum", .help = "SGD momentum."},
    {KEY(optim, nesterov), .def = "true",
     .help = "SGD: Nesterov momentum (the official --opt sgd); false: heavy-ball (--opt "
             "momentum)."},
    {KEY(optim, betas), .def = "[0.9, 0.999]", RANGE(0, 1), LEN(2, 2),
     .flags = VN_CONFIG_MAX_OPEN, .official = "--opt_betas",
     .help = "AdamW / LAMB decay rates of the first and second moments."},
    {KEY(optim, eps), .def = "1e-8", RANGE(0, 1), .flags = VN_CONFIG_MIN_OPEN, .official = "--opt_eps",
     .help = "AdamW / LAMB epsilon added to the denominator."},
    {KEY(optim, clip_grad), .def = "0", RANGE(0, INF), .official = "--clip_grad", .aka = "clip",
     .help = "Clip the global gradient norm to this; 0: off."},
    {KEY(optim, update_freq), .def = "8", RANGE(1, 4096),
     .official = "--update_freq", .aka = "accum_steps grad_accum",
     .help = "Batches accumulated per optimizer step (detectors too); effective batch = "
             "batch_size * update_freq."},
    {KEY(optim, warmup_epochs), .def = "5", RANGE(0, 100000), .official = "--warmup_epochs", .aka = "warmup",
     .help = "Linear warmup of the learning rate from 0, in epochs."},
    {KEY(optim, warmup_steps), .def = "-1", RANGE(-1, INF), .official = "--warmup_steps",
     .help = "Warmup in optimizer steps; > 0 overrides warmup_epochs."},
    {KEY(optim, min_lr), .def = "1e-6", RANGE(0, INF), .official = "--min_lr",
     .help = "Final learning rate of the cosine schedule."},
    {KEY(optim, layer_decay), .def = "1.0", RANGE(0, INF), .flags = VN_CONFIG_MIN_OPEN,
     .official = "--layer_decay",
     .help = "Learning-rate factor per layer from the head towards the stem; 1: off."},
    {KEY(optim, layer_decay_num_layers), .def = "4", RANGE(1, 64),
     .official = "--layer_decay_num_layers",
     .help = "Layers that layer_decay counts (official v6: 4, v7: 5)."},
    {KEY(optim, schedule), .def = "cosine", .choices = schedule_names,
     .aka = "sched lr_schedule scheduler",
     .help = "Learning-rate schedule after warmup, evaluated at every optimizer step."},
    {KEY(optim, step_epochs), .def = "30", RANGE(1, 100000), .aka = "decay_step",
     .help = "step schedule: epochs between decays."},
    {KEY(optim, step_gamma), .def = "0.1", RANGE(0, 1), .flags = VN_CONFIG_MIN_OPEN,
     .aka = "gamma decay_rate", .help = "step schedule: factor applied at each decay."},

    /* ---- deep_training ---- */
    {KEY(deep_training, decay_epochs), .def = "100", RANGE(0, 100000), .official = "--decay_epochs",
     .help = "Epochs over which act_learn rises from 0 to 1; 0: off (act_learn 1 from the "
             "start)."},
    {KEY(deep_training, schedule), .def = "linear", .choices = decay_names,
     .official = "--decay_linear",
     .help = "act_learn = e / decay_epochs (linear) or 0.5 * (1 - cos(pi * e / decay_epochs))."},
    {KEY(deep_training, update), .def = "epoch", .choices = update_names,
     .help = "Set act_learn at each epoch's start (official, e whole) or every iteration "
             "(e fractional)."},

    /* ---- ema ---- */
    {KEY(ema, decays), .def = "[0.99996]", RANGE(0, 1), LEN(0, VN_CONFIG_MAX_EMAS),
     .flags = VN_CONFIG_MIN_OPEN | VN_CONFIG_MAX_OPEN, .official = "--model_ema_decay", .aka = "model_ema",
     .help = "Classifier: decay of each weight EMA updated after every optimizer step; []: "
             "none."},
    {KEY(ema, eval), .def = "true", .flags = VN_CONFIG_NOT_HASHED, .official = "--model_ema_eval",
     .help = "Also evaluate each EMA of the weights."},

    /* ---- loss ---- */
    {KEY(loss, bce), .def = "true", .official = "--bce_loss",
     .help = "With mixup or cutmix on: BCE on the soft targets instead of soft-target "
             "cross-entropy (official)."},
    {KEY(loss, bce_always), .def = "false",
     .help = "BCE on hard targets too (mixup and cutmix off; smoothed by loss.smoothing) "
             "instead of smoothed CE."},
    {KEY(loss, smoothing), .def = "0.1", RANGE(0, 1), .flags = VN_CONFIG_MAX_OPEN,
     .official = "--smoothing", .aka = "label_smoothing",
     .help = "Label smoothing of hard targets (mixup and cutmix off); see data.smoothing."},

    /* ---- train ---- */
    {KEY(train, epochs), .def = "300", RANGE(1, 100000), .official = "--epochs", .aka = "num_epochs epoch",
     .help = "Training length in epochs; the schedules span it."},
    {KEY(train, max_steps), .def = "0", RANGE(0, INF), .flags = VN_CONFIG_NOT_HASHED,
     .aka = "early_stop steps",
     .help = "Stop after this many optimizer steps, schedules unchanged; 0: no limit."},
    {KEY(train, batch_size), .def = "128", RANGE(1, 65536), .official = "--batch_size", .aka = "batch",
     .help = "Images per forward and backward pass."},
    {KEY(train, seed), .def = "0", RANGE(0, INF), .official = "--seed",
     .help = "Seed of the initialisation, shuffling, augmentation and dropout."},
    {KEY(train, shuffle), .def = "true",
     .help = "Reshuffle the training set at every epoch."},
    {KEY(train, eval_every), .def = "1", RANGE(0, 100000), .flags = VN_CONFIG_NOT_HASHED,
     .official = "--test_freq", .aka = "eval_freq",
     .help = "Evaluate after epoch e > 0 (0-based) with e % eval_every == 0, and the last; 0: "
             "never (at all)."},
    {KEY(train, eval_from_epoch), .def = "0", RANGE(0, 100000), .flags = VN_CONFIG_NOT_HASHED,
     .official = "--test_epoch", .aka = "test_epoch",
     .help = "Also evaluate after every epoch from this one on (official --test_epoch T is T + "
             "1); 0: off."},
    {KEY(train, threads), .def = "0", RANGE(0, 1024), .flags = VN_CONFIG_NOT_HASHED,
     .aka = "num_threads", .help = "Compute threads; 0: all cores."},
    {KEY(train, keep_mb), .def = "0", RANGE(0, 1e6), .flags = VN_CONFIG_NOT_HASHED,
     .help = "MB per step of outputs kept instead of recomputed in backward (same bytes); "
             "on cuda 0 keeps all."},
    {KEY(train, log_every), .def = "50", RANGE(1, INF), .flags = VN_CONFIG_NOT_HASHED,
     .aka = "print_freq log_interval", .help = "Print a progress line every this many optimizer steps (metrics.jsonl and TensorBoard get every step)."},
    {KEY(train, nonfinite), .def = "stop", .choices = nonfinite_names,
     .flags = VN_CONFIG_NOT_HASHED,
     .help = "On a NaN/Inf loss or gradient: stop (exit 4, naming the last good checkpoint) or "
             "skip the step."},
    {KEY(train, max_skip), .def = "10", RANGE(1, 1000000), .flags = VN_CONFIG_NOT_HASHED,
     .help = "nonfinite skip: stop after this many consecutive skipped steps."},
    {KEY(train, dist_bucket_mb), .def = "25", RANGE(0, 1e6), .flags = VN_CONFIG_NOT_HASHED,
     .aka = "bucket_cap_mb",
     .help = "Data-parallel: gradients are reduced in buckets of about this many MB; 0: one "
             "per tensor."},
    {KEY(train, dist_timeout), .def = "300", RANGE(0, INF), .flags = VN_CONFIG_NOT_HASHED,
     .help = "Data-parallel: seconds a rank waits in a collective before the job stops with an "
             "error; 0: forever."},
    {KEY(train, device), .def = "cpu", .choices = device_names, .flags = VN_CONFIG_NOT_HASHED,
     .help = "Where the model trains: cpu, or cuda (a build with the CUDA backend and a "
             "visible GPU)."},
    {KEY(train, tf32), .def = "true", .flags = VN_CONFIG_NOT_HASHED,
     .help = "cuda: TF32 tensor cores for FP32 matrix products and convolutions; false: strict FP32."},
    {KEY(train, precision), .def = "fp32", .choices = precision_names, .flags = VN_CONFIG_NOT_HASHED,
     .help = "cuda: bf16 autocast of the linear and 1x1 conv products (FP32 master weights); fp32."},
    {KEY(train, deterministic), .def = "false", .flags = VN_CONFIG_NOT_HASHED,
     .help = "cuda: deterministic cuDNN algorithms only (a resume is bit-exact); false: the fastest."},

    /* ---- detect (model.task: detect; Ultralytics 8.3 defaults) ---- */
    {KEY(detect, data), .def = "\"\"", .flags = VN_CONFIG_NOT_HASHED,
     .help = "Dataset YAML (path, train, val, names) of a YOLO-format set, like coco128.yaml."},
    {KEY(detect, imgsz), .def = "640", RANGE(32, 8192), .aka = "img_size input_size",
     .help = "Square input side (a multiple of 32): letterbox and mosaic output."},
    {KEY(detect, width_multiple), .def = "0.25", RANGE(0, 4), .flags = VN_CONFIG_MIN_OPEN,
     .aka = "width", .help = "Neck and head channel multiplier (yolo11 n 0.25, s 0.5, m/l 1, x 1.5)."},
    {KEY(detect, depth_multiple), .def = "0.5", RANGE(0, 4), .flags = VN_CONFIG_MIN_OPEN,
     .aka = "depth", .help = "Repeats multiplier of the C3k2/C2PSA blocks (n/s/m 0.5, l/x 1)."},
    {KEY(detect, max_channels), .def = "1024", RANGE(8, 65536),
     .help = "Cap of the neck channels before width_multiple (n/s 1024, m/l/x 512)."},
    {KEY(detect, c3k), .def = "false",
     .help = "Every C3k2 uses C3k blocks (Ultralytics' m/l/x scales)."},
    {KEY(detect, reg_max), .def = "16", RANGE(2, 64),
     .help = "DFL bins per box side."},
    {KEY(detect, close_mosaic), .def = "10", RANGE(0, 100000),
     .help = "Turn mosaic off for the last this many epochs."},
    {KEY(detect, mosaic), .def = "1.0", RANGE(0, 1), .help = "Probability of a 4-image mosaic."},
    {KEY(detect, scale), .def = "0.5", RANGE(0, 0.99), .help = "Random affine zoom 1 +- scale."},
    {KEY(detect, translate), .def = "0.1", RANGE(0, 0.5),
     .help = "Random affine shift +- translate of imgsz."},
    {KEY(detect, fliplr), .def = "0.5", RANGE(0, 1), .help = "Horizontal flip probability."},
    {KEY(detect, hsv_h), .def = "0.015", RANGE(0, 1), .help = "Hue jitter gain."},
    {KEY(detect, hsv_s), .def = "0.7", RANGE(0, 1), .help = "Saturation jitter gain."},
    {KEY(detect, hsv_v), .def = "0.4", RANGE(0, 1), .help = "Value jitter gain."},
    {KEY(detect, box), .def = "7.5", RANGE(0, INF), .help = "Gain of the CIoU box loss."},
    {KEY(detect, cls), .def = "0.5", RANGE(0, INF), .help = "Gain of the BCE class loss."},
    {KEY(detect, dfl), .def = "1.5", RANGE(0, INF), .help = "Gain of the DFL loss."},
    {KEY(detect, topk), .def = "10", RANGE(1, 1000), .help = "TaskAlignedAssigner candidates per box."},
    {KEY(detect, conf), .def = "0.001", RANGE(0, 1), .flags = VN_CONFIG_NOT_HASHED,
     .help = "Evaluation NMS confidence threshold."},
    {KEY(detect, iou), .def = "0.7", RANGE(0, 1), .flags = VN_CONFIG_NOT_HASHED,
     .help = "Evaluation NMS IoU threshold."},
    {KEY(detect, max_det), .def = "300", RANGE(1, 100000), .flags = VN_CONFIG_NOT_HASHED,
     .help = "Evaluation detections kept per image."},
    {KEY(detect, ema_decay), .def = "0.9999", RANGE(0, 1), .flags = VN_CONFIG_MAX_OPEN,
     .help = "Model EMA as Ultralytics' ModelEMA (evaluated, exported, predicted with); 0: none. "
             "ema.* is the classifier's."},
    {KEY(detect, ema_tau), .def = "2000", RANGE(0, 1e9),
     .help = "EMA ramp: decay x (1 - exp(-updates / ema_tau)) at each optimizer step; 0: none."},
    {KEY(detect, warmup_bias_lr), .def = "0.1", RANGE(0, INF),
     .help = "Warmup: the biases' lr falls from this to the scheduled lr (others rise from 0)."},
    {KEY(detect, warmup_momentum), .def = "0.8", RANGE(0, 1), .flags = VN_CONFIG_MAX_OPEN,
     .help = "Warmup: SGD momentum rises from this to optim.momentum (as Ultralytics: SGD only)."},
    {KEY(detect, warmup_accumulate), .def = "true",
     .help = "Warmup: micro-batches per step rise from 1 to optim.update_freq (Ultralytics); false: fixed."},

    /* ---- output ---- */
    {KEY(output, dir), .def = "runs/vanilla", .flags = VN_CONFIG_NOT_HASHED | VN_CONFIG_NONEMPTY,
     .official = "--output_dir", .aka = "out",
     .help = "Run directory: effective config, checkpoints, logs."},
    {KEY(output, save_every), .def = "1", RANGE(0, 100000), .flags = VN_CONFIG_NOT_HASHED,
     .official = "--save_ckpt_freq", .help = "Checkpoint every this many epochs; 0: only at the end."},
    {KEY(output, save_every_steps), .def = "0", RANGE(0, INF), .flags = VN_CONFIG_NOT_HASHED,
     .help = "Also checkpoint every this many optimizer steps; 0: off."},
    {KEY(output, keep_last), .def = "3", RANGE(0, 1000000), .flags = VN_CONFIG_NOT_HASHED,
     .official = "--save_ckpt_num", .help = "Periodic checkpoints kept; 0: all."},
    {KEY(output, tensorboard), .def = "true", .flags = VN_CONFIG_NOT_HASHED,
     .official = "--log_dir",
     .help = "Write TensorBoard event files into the run directory."},
};

_Static_assert(sizeof schema / sizeof schema[0] <= VN_CONFIG_MAX_KEYS,
               "raise VN_CONFIG_MAX_KEYS in vn_config.h");

const vn_config_key *vn_config_schema(size_t *n)
{
    if (n) *n = sizeof schema / sizeof schema[0];
    return schema;
}
