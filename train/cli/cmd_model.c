/* vanilla eval / export / predict: commands that use a trained model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "train/cli/vn_cli.h"
#include "io/vn_onnx.h"
#include "io/vn_pth.h"
#include "train/vn_real_labels.h"
#include "train/vn_trainer.h"

/* --config FILE / --set k=v on the commands that take a model file: they describe a plain
 * state_dict (no vanilla metadata). Returns 1 when consumed, -1 on error. */
typedef struct model_cfg_args {
    const char *files[16], *sets[64];
    int n_files, n_sets;
} model_cfg_args;

static int take_model_cfg(model_cfg_args *a, int argc, char **argv, int *i, const char *cmd)
{
    bool is_cfg = strcmp(argv[*i], "--config") == 0, is_set = vn_cli_is(argv[*i], "--set", "-s");
    if (!is_cfg && !is_set) return 0;
    if (*i + 1 >= argc || (is_cfg && a->n_files == 16) || (is_set && a->n_sets == 64)) {
        vn_cli_error(cmd, "%s needs a value (at most 16 configs and 64 overrides)", argv[*i]);
        return -1;
    }
    if (is_cfg) a->files[a->n_files++] = argv[++*i];
    else a->sets[a->n_sets++] = argv[++*i];
    return 1;
}

/* --device NAME of cmd: 0 with the device when it is usable; a usage error for a name that is
 * no device, an error with vn_device_check's reason for one that cannot be used here. */
static int cli_device(const char *name, const char *cmd, vn_device *d)
{
    char why[200];
    if (vn_device_parse(name, d) != VN_OK) {
        vn_cli_error(cmd, "--device wants cpu or cuda, got '%s'", name);
        return VN_EXIT_USAGE;
    }
    if (vn_device_check(*d, why, sizeof why) != VN_OK) {
        vn_cli_error(cmd, "--device %s: %s", name, why);
        return VN_EXIT_ERROR;
    }
    return 0;
}

/* Opens a model file; a plain state_dict is read with the config of --config/--set
 * (defaults: vanillanet_5, ImageNet preprocessing, classes from the file). */
static int open_model_cli(const char *path, int ema, const model_cfg_args *a, vn_vanillanet **m,
                          vn_ckpt_info *info, const char *cmd)
{
    vn_config cfg;
    int ec = vn_cli_load_config(&cfg, a->files, a->n_files, a->sets, a->n_sets, cmd);
    if (ec) return ec;
    vn_error err = {0};
    if (vn_open_model_cfg(path, ema, &cfg, m, info, &err) != VN_OK) {
        vn_cli_model_error(cmd, path, err.msg);
        return VN_EXIT_ERROR;
    }
    if (info->plain)
        fprintf(stderr, "vanilla %s: %s has no vanilla metadata: read as a %s-form state_dict of the "
                "config's model (%d classes, input %d)\n", cmd, path, info->deploy ? "deploy" : "training",
                info->model.num_classes, info->input_size);
    return 0;
}

/* --set on a vanilla file (which stores its model and preprocessing): the keys of how to
 * evaluate it apply; any other key would be ignored, so it is refused, and so is --config
 * (whose keys cannot be told apart from its defaults). */
static const char *const eval_keys[] = {"data.eval_mode", "data.crop_pct", "data.eval_interpolation",
                                        "data.max_bad_fraction", "data.fail_fast", "data.workers",
                                        "data.eval_batch_size", NULL};
#define EVAL_KEYS_A "data.eval_mode, data.crop_pct, data.eval_interpolation,"
#define EVAL_KEYS_B "data.max_bad_fraction, data.fail_fast, data.workers, data.eval_batch_size"
#define EVAL_KEYS_TEXT EVAL_KEYS_A " " EVAL_KEYS_B

static int apply_eval_overrides(const model_cfg_args *a, const vn_ckpt_info *info,
                                vn_loader_config *lc, const char *cmd)
{
    if (info->plain || (!a->n_files && !a->n_sets)) return 0;
    if (a->n_files) {
        vn_cli_error(cmd, "--config %s: this file was written by vanilla and holds its model and "
                     "preprocessing (--config and --set describe plain state_dicts); to change how "
                     "it is evaluated use --set with one of: " EVAL_KEYS_TEXT, a->files[0]);
        return VN_EXIT_USAGE;
    }
    for (int k = 0; k < a->n_sets; k++) {
        const char *eq = strchr(a->sets[k], '=');
        size_t n = eq ? (size_t)(eq - a->sets[k]) : strlen(a->sets[k]);
        bool ok = false;
        for (int j = 0; eval_keys[j] && !ok; j++)
            ok = strlen(eval_keys[j]) == n && strncmp(a->sets[k], eval_keys[j], n) == 0;
        if (!ok) {
            vn_cli_error(cmd, "--set %s: this file was written by vanilla and stores its model and "
                         "preprocessing, so this key cannot change; the keys of how to evaluate "
                         "it are " EVAL_KEYS_TEXT, a->sets[k]);
            return VN_EXIT_USAGE;
        }
    }
    vn_config c;
    int ec = vn_cli_load_config(&c, NULL, 0, a->sets, a->n_sets, cmd);
    if (ec) return ec;
    for (int k = 0; k < a->n_sets; k++) {
        const char *key = a->sets[k];
#define IS(name) (strncmp(key, name "=", sizeof name) == 0)
        if (IS("data.eval_mode")) {
            lc->eval_resize = VN_EVAL_RESIZE_CROP;
            if (c.data.eval_mode == VN_CONFIG_EVAL_OFFICIAL)
                lc->eval_resize = lc->input_size <= 32    ? VN_EVAL_RESIZE_NONE
                                  : lc->input_size >= 384 ? VN_EVAL_RESIZE_SQUARE
                                                          : VN_EVAL_RESIZE_CROP;
        } else if (IS("data.crop_pct")) lc->crop_pct = c.data.crop_pct;
        else if (IS("data.eval_interpolation"))
            lc->interpolation = c.data.eval_interpolation == VN_CONFIG_INTERP_BICUBIC
                                    ? VN_INTERP_BICUBIC : VN_INTERP_BILINEAR;
        else if (IS("data.max_bad_fraction")) lc->max_bad_fraction = c.data.max_bad_fraction;
        else if (IS("data.fail_fast")) lc->fail_fast = c.data.fail_fast;
        else if (IS("data.workers")) lc->workers = (int)c.data.workers;
        else if (IS("data.eval_batch_size") && c.data.eval_batch_size > 0)
            lc->batch_size = (int)c.data.eval_batch_size;
#undef IS
    }
    return 0;
}

/* Eval-transform settings of a model file: stored preprocessing, else the checkpoint's config. */
static int eval_loader_config(const vn_ckpt_info *info, const char *path, vn_loader_config *lc,
                              vn_config *cfg_out, bool *have_cfg, const char *cmd)
{
    *have_cfg = false;
    vn_loader_config_init(lc);
    if (info->config_yaml) {
        vn_error err = {0};
        if (vn_config_from_text(cfg_out, info->config_yaml, strlen(info->config_yaml), path, &err) == VN_OK) {
            vn_build_loader_config(cfg_out, false, lc);
            *have_cfg = true;
        }
    }
    if (info->has_data) {
        vn_loader_config_eval(lc);
        lc->empty_bad_slots = true;
        lc->input_size = info->input_size;
        lc->channels = info->channels;
        lc->interpolation = info->interpolation;
        lc->crop_pct = info->crop_pct;
        lc->eval_resize = (vn_eval_resize)info->eval_resize;
        memcpy(lc->mean, info->mean, sizeof lc->mean);
        memcpy(lc->std, info->std, sizeof lc->std);
        return 0;
    }
    if (*have_cfg) return 0;
    vn_cli_error(cmd, "%s does not say how its images were preprocessed (input size, mean, std); "
                 "it was not written by vanilla export or vanilla train", path);
    return VN_EXIT_ERROR;
}

/* --ema N or --key K (the official --model_key); *ema_used: -1 for the live model. A key
 * other than "model" picks a copy from a vanilla checkpoint; otherwise plain state_dicts are
 * read with the config of --config/--set. */
static int open_model(const char *path, int ema, const char *key, const model_cfg_args *a,
                      vn_vanillanet **m, vn_ckpt_info *info, int *ema_used, const char *cmd)
{
    if (ema >= 0 && key) {
        vn_cli_error(cmd, "give --ema or --key, not both");
        return VN_EXIT_USAGE;
    }
    *ema_used = ema;
    if (!key || strcmp(key, "model") == 0) return open_model_cli(path, ema, a, m, info, cmd);
    vn_error err = {0};
    if (vn_open_model_key(path, key, m, info, ema_used, &err) == VN_OK) return 0;
    vn_cli_model_error(cmd, path, err.msg);
    return VN_EXIT_ERROR;
}

/* The ImageNet-ReaL line of `vanilla eval --real-labels`. */
static int print_real(const char *json, vn_loader *ld, const float *logits, int nc)
{
    vn_error err = {0};
    vn_real_labels *rl = NULL;
    vn_real_result rr;
    int rc = vn_real_labels_load(json, &rl, &err);
    if (rc == VN_OK) rc = vn_real_accuracy(rl, vn_loader_dataset(ld), logits, nc, &rr, &err);
    vn_real_labels_free(rl);
    if (rc != VN_OK) {
        vn_cli_error("eval", "%s", err.msg);
        return VN_EXIT_ERROR;
    }
    printf("ImageNet-ReaL (%s): top-1 %.2f%%  top-5 %.2f%%  (%lld images with labels, %lld "
           "without, left out)\n", json, rr.top1, rr.top5, (long long)rr.counted,
           (long long)rr.skipped);
    return 0;
}

static int write_logits(const char *path, const float *logits, int64_t n, int nc, vn_error *err)
{
    vn_st_writer *w = vn_st_writer_new();
    int64_t shape[2] = {n, nc};
    int rc = w ? vn_st_add(w, "logits", VN_DTYPE_F32, 2, shape, logits, err) : VN_ERR_NOMEM;
    if (rc == VN_OK) rc = vn_st_write(w, path, VN_ST_CRC32, err);
    vn_st_writer_free(w);
    return rc;
}

/* --save-logits of cmd: the file written and named, or an error said (exit code). */
static int save_logits(const char *cmd, const char *path, const float *logits, int64_t n, int nc)
{
    vn_error err = {0};
    if (write_logits(path, logits, n, nc, &err) != VN_OK) {
        vn_cli_error(cmd, "%s", err.msg);
        return VN_EXIT_ERROR;
    }
    printf("logits: %s\n", path);
    return 0;
}

#define MODEL_CFG_HELP                                                                        \
    "\n"                                                                                      \
    "A plain state_dict (safetensors with the official names and no vanilla metadata, e.g.\n"   \
    "from `vanilla import` or PyTorch) is read with the model and preprocessing of --config\n"  \
    "FILE and --set section.key=value (default vanillanet_5 at 224 with ImageNet mean/std);\n"  \
    "the training or deploy form comes from its keys, the class count from its classifier\n"   \
    "unless model.num_classes is set, and classes are named by number. A file written by\n"   \
    "vanilla keeps its own model and preprocessing: there --set takes only the keys of how to\n" \
    "evaluate it: " EVAL_KEYS_A "\n" EVAL_KEYS_B ".\n"

static const char eval_help[] =
    "usage: vanilla eval MODEL.safetensors [--data FOLDER] [--ema N | --key K] [--batch-size N]\n"
    "                    [--workers N] [--save-logits FILE] [--real-labels real.json]\n"
    "                    [--config FILE] [--set k=v] [--device cpu|cuda]\n"
    "\n"
    "Top-1, top-5 and mean cross-entropy of a training checkpoint (its model, or EMA copy N)\n"
    "or a weight file (training or deploy form) on an image folder with one subfolder per\n"
    "class. FOLDER defaults to the checkpoint config's data.root/data.val_dir. Labels follow\n"
    "the class names stored with the model. --save-logits writes a safetensors file with a\n"
    "tensor"
    " `logits` [N, classes] in the folder's (sorted) order (NaN rows: unreadable images).\n"
    "--key takes model, model_ema (EMA copy 0, as the official --model_key) or model_ema.N;\n"
    "a|b: the first the file holds.\n"
    "--real-labels adds ImageNet-ReaL top-1/top-5 (timm's RealLabelsImagenet): real.json\n"
    "lists the correct classes of ILSVRC2012_val_NNNNNNNN.JPEG in order; images with an empty\n"
    "list are left out, a prediction is right when it is in the list.\n"
    "--device cuda evaluates on the GPU (a build with the CUDA backend and a visible device).\n"
    MODEL_CFG_HELP;

/* eval's loader: the model file's preprocessing over --data (or the stored config's
 * validation folder), with the model's class order. */
static int open_eval_data(const char *model_path, const vn_ckpt_info *info, const vn_vanillanet *m,
                          const model_cfg_args *ca, const char **data, char *split,
                          size_t split_len, int batch, int workers, vn_loader **ld)
{
    vn_loader_config lc;
    vn_config cfg;
    bool have_cfg;
    int ec = eval_loader_config(info, model_path, &lc, &cfg, &have_cfg, "eval");
    if (!ec) ec = apply_eval_overrides(ca, info, &lc, "eval");
    if (!ec && !*data) {
        if (!have_cfg || !cfg.data.root[0]) {
            vn_cli_error("eval", "no --data folder given and %s has no data.root", model_path);
            ec = VN_EXIT_USAGE;
        } else if (!cfg.data.val_dir[0]) {
            vn_cli_error("eval", "no --data folder given and %s was trained without a validation "
                         "folder (data.val_dir \"\")", model_path);
            ec = VN_EXIT_USAGE;
        } else {
            *data = vn_split_path(&cfg, false, split, split_len);
        }
    }
    if (!ec) {
        lc.root = *data;
        /* A plain state_dict has numbers for names: the sorted folders give the order, as
         * torchvision's ImageFolder does for the official evaluation. */
        lc.class_names = info->plain ? NULL : (const char *const *)info->class_names;
        lc.n_class_names = info->plain ? 0 : info->n_classes;
        lc.num_classes = m->cfg.num_classes;
        if (batch > 0) lc.batch_size = batch;
        if (workers >= 0) lc.workers = workers;
        lc.seed = 0;
        vn_error err = {0};
        if (vn_loader_open(&lc, ld, &err) != VN_OK) {
            vn_cli_error("eval", "%s", err.msg);
            ec = VN_EXIT_ERROR;
        }
    }
    if (!ec && vn_loader_num_classes(*ld) != m->cfg.num_classes) {
        vn_cli_error("eval", "%s has %d classes, the model %d", *data, vn_loader_num_classes(*ld),
                     m->cfg.num_classes);
        ec = VN_EXIT_ERROR;
    }
    return ec;
}

int vn_cmd_eval(int argc, char **argv)
{
    if (vn_cli_is_detector(argc, argv)) return vn_cmd_detect_eval(argc, argv);
    const char *model_path = NULL, *data = NULL, *logits_path = NULL, *key = NULL, *real = NULL;
    const char *device = "cpu";
    int ema = -1, batch = 0, workers = -1;
    bool bad = false;
    model_cfg_args ca = {0};
    for (int i = 1; i < argc; i++) {
        int t = take_model_cfg(&ca, argc, argv, &i, "eval");
        if (t < 0) return VN_EXIT_USAGE;
        if (t) continue;
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(eval_help, stdout);
            return 0;
        } else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) data = argv[++i];
        else if (strcmp(argv[i], "--ema") == 0 && i + 1 < argc) ema = vn_cli_int("eval", "--ema", argv[++i], 0, 1000, &bad);
        else if (strcmp(argv[i], "--batch-size") == 0 && i + 1 < argc) batch = vn_cli_int("eval", "--batch-size", argv[++i], 1, 65536, &bad);
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) workers = vn_cli_int("eval", "--workers", argv[++i], 0, 1024, &bad);
        else if (strcmp(argv[i], "--save-logits") == 0 && i + 1 < argc) logits_path = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) key = argv[++i];
        else if (strcmp(argv[i], "--real-labels") == 0 && i + 1 < argc) real = argv[++i];
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = argv[++i];
        else if (argv[i][0] == '-') {
            vn_cli_error("eval", "unknown option %s (see vanilla eval --help)", argv[i]);
            return VN_EXIT_USAGE;
        } else if (model_path) {
            vn_cli_error("eval", "one model file at a time: %s, then %s (the images come with "
                         "--data FOLDER)", model_path, argv[i]);
            return VN_EXIT_USAGE;
        } else model_path = argv[i];
    }
    if (bad) return VN_EXIT_USAGE;
    if (!model_path) {
        fputs(eval_help, stderr);
        return VN_EXIT_USAGE;
    }
    if (logits_path && !vn_cli_output_ok("eval", logits_path, model_path)) return VN_EXIT_ERROR;
    vn_error err = {0};
    vn_ckpt_info info;
    vn_vanillanet *m = NULL;
    vn_device dev;
    int dc = cli_device(device, "eval", &dev);
    if (dc) return dc;
    int oc = open_model(model_path, ema, key, &ca, &m, &info, &ema, "eval");
    if (oc) return oc;
    if (dev != VN_DEVICE_CPU && vn_state_to_device(&m->state, dev, &err) != VN_OK) {
        vn_cli_error("eval", "%s", err.msg);
        vn_vanillanet_destroy(m);
        return VN_EXIT_ERROR;
    }
    vn_loader *ld = NULL;
    vn_ctx *ctx = vn_ctx_create_on(dev);
    char split[2100]; /* holds data when it comes from the stored config */
    int ec = open_eval_data(model_path, &info, m, &ca, &data, split, sizeof split, batch, workers, &ld);
    vn_eval_result res;
    float *logits = NULL;
    if (!ec && vn_evaluate(ctx, m, ld, &res, logits_path || real ? &logits : NULL, &err) != VN_OK) {
        vn_cli_error("eval", "%s", err.msg);
        ec = VN_EXIT_ERROR;
    }
    if (!ec) {
        int64_t bad = vn_loader_bad_files(ld);
        printf("%s%s on %s: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%lld images", model_path,
               ema >= 0 ? " (EMA)" : "", data, res.top1, res.top5, res.loss, (long long)res.n);
        if (bad > 0) printf("; %lld unreadable, left out", (long long)bad);
        printf(")\n");
        if (real) ec = print_real(real, ld, logits, m->cfg.num_classes);
        /* One row per image of the folder, in its order; unreadable ones are NaN. */
        if (!ec && logits_path)
            ec = save_logits("eval", logits_path, logits, vn_loader_num_samples(ld), m->cfg.num_classes);
    }
    free(logits);
    vn_loader_close(ld);
    vn_ctx_destroy(ctx);
    vn_vanillanet_destroy(m);
    vn_ckpt_info_free(&info);
    return ec;
}

static const char export_help[] =
    "usage: vanilla export CKPT.safetensors -o DEPLOY.safetensors [--ema N | --key K] [--force]\n"
    "                      [--config FILE] [--set k=v] [--device cpu|cuda]\n"
    "       vanilla export MODEL.safetensors --format onnx -o MODEL.onnx [--input-size N] ...\n"
    "       vanilla export DETECTOR.safetensors [--format onnx] -o OUT [--input-size N] [--force]\n"
    "\n"
    "Merges a training checkpoint (its model, or EMA copy N) into the deploy network: every\n"
    "BatchNorm folded into its conv, conv1 and conv2 of each block, the stem and the\n"
    "classifier merged into single convs. Runs both graphs (eval mode) on a batch and prints\n"
    "the largest difference. The merge is exact only at act_learn 1 (deep training finished);\n"
    "--force merges anyway and says how far off it is. The file loads with\n"
    "load_state_dict(strict=True) into the official PyTorch VanillaNet(deploy=True).\n"
    "--device cuda runs that check on the GPU (the merge and the file are the same).\n"
    "\n"
    "--format onnx writes the deploy network (merged first when given the training form) as\n"
    "ONNX opset 13: Conv, Relu, MaxPool (AdaptiveMaxPool2d as the MaxPool it equals at the\n"
    "input size; refused where the windows differ), GlobalAveragePool and Flatten, input\n"
    "[batch, C, N, N] with a dynamic batch axis (N: --input-size, default the stored input\n"
    "size), output `logits` [batch, classes], class names and preprocessing in\n"
    "metadata_props (vanilla.classes, vanilla.preprocessing, vanilla.model).\n"
    "\n"
    "A detector file (model.task: detect) merges its backbone the same way; with --format onnx\n"
    "it becomes one graph in the form of Ultralytics' export (input `images`, output `output0`\n"
    "[batch, 4 + nc, anchors]: boxes cx, cy, w, h in pixels, then class scores). See\n"
    "vanilla export DETECTOR.safetensors --help.\n"
    MODEL_CFG_HELP;

/* What vn_export_model did, as the command prints it (the merge's figures also when the
 * writing failed). */
static void print_export(const char *in, int ema, const char *out, const vn_export_options *o,
                         const vn_export_result *res, bool written)
{
    if (res->merged) {
        printf("merged %s%s: %lld parameters (training form) -> %lld (deploy form)\n", in,
               ema >= 0 ? " (EMA)" : "", (long long)res->params_train, (long long)res->params_deploy);
        printf("largest |difference| of the logits on a random batch of 8 at %dx%d: %.3g "
               "(relative %.3g)%s\n", res->check_size, res->check_size, res->max_diff,
               res->max_ref > 0 ? res->max_diff / res->max_ref : 0.0,
               res->act_learn < 1 ? "  (act_learn < 1: the merge is inexact)" : "");
    }
    if (!written) return;
    if (o->onnx) printf("ONNX (opset %d, dynamic batch): %s\n", VN_ONNX_OPSET, out);
    else printf("deploy weights: %s\n", out);
}

int vn_cmd_export(int argc, char **argv)
{
    if (vn_cli_is_detector(argc, argv)) return vn_cmd_detect_export(argc, argv);
    const char *in = NULL, *out = NULL, *key = NULL, *format = "safetensors", *device = "cpu";
    int ema = -1, onnx_size = 0;
    bool force = false, bad = false, format_given = false;
    model_cfg_args ca = {0};
    for (int i = 1; i < argc; i++) {
        int t = take_model_cfg(&ca, argc, argv, &i, "export");
        if (t < 0) return VN_EXIT_USAGE;
        if (t) continue;
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(export_help, stdout);
            return 0;
        } else if (vn_cli_is(argv[i], "-o", "--output") && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--ema") == 0 && i + 1 < argc) ema = vn_cli_int("export", "--ema", argv[++i], 0, 1000, &bad);
        else if (strcmp(argv[i], "--force") == 0) force = true;
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) key = argv[++i];
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) format = argv[++i], format_given = true;
        else if (strcmp(argv[i], "--input-size") == 0 && i + 1 < argc) onnx_size = vn_cli_int("export", "--input-size", argv[++i], 1, 16384, &bad);
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = argv[++i];
        else if (argv[i][0] == '-') {
            vn_cli_error("export", "unknown option %s (see vanilla export --help)", argv[i]);
            return VN_EXIT_USAGE;
        } else if (in) {
            vn_cli_error("export", "one model file at a time: %s, then %s (see vanilla export "
                         "--help)", in, argv[i]);
            return VN_EXIT_USAGE;
        } else in = argv[i];
    }
    if (bad) return VN_EXIT_USAGE;
    if (!format_given && out) { /* -o x.onnx says the format */
        size_t n = strlen(out);
        if (n > 5 && strcmp(out + n - 5, ".onnx") == 0) format = "onnx";
    }
    bool onnx = strcmp(format, "onnx") == 0;
    if (!onnx && strcmp(format, "safetensors") != 0) {
        vn_cli_error("export", "--format %s: one of safetensors, onnx", format);
        return VN_EXIT_USAGE;
    }
    if (!in || !out) {
        fputs(export_help, stderr);
        return VN_EXIT_USAGE;
    }
    if (!vn_cli_output_ok("export", out, in)) return VN_EXIT_ERROR;
    vn_error err = {0};
    vn_ckpt_info info;
    vn_vanillanet *m = NULL;
    vn_device dev;
    int oc = cli_device(device, "export", &dev);
    if (oc) return oc;
    oc = open_model(in, ema, key, &ca, &m, &info, &ema, "export");
    if (oc) return oc;
    vn_export_options o = {in, force, onnx, onnx_size, dev};
    vn_export_result res;
    int rc = vn_export_model(m, &info, out, &o, &res, &err);
    print_export(in, ema, out, &o, &res, rc == VN_OK);
    if (rc != VN_OK) vn_cli_error("export", "%s", err.msg);
    vn_vanillanet_destroy(m);
    vn_ckpt_info_free(&info);
    return rc == VN_OK ? 0 : VN_EXIT_ERROR;
}

static const char predict_help[] =
    "usage: vanilla predict MODEL.safetensors IMAGE... [--topk K] [--ema N | --key K]\n"
    "                       [--save-logits FILE] [--config FILE] [--set k=v] [--device cpu|cuda]\n"
    "\n"
    "Classifies image files (PNG or JPEG) with a checkpoint or weight file and prints the top K\n"
    "classes (default 5) with their probabilities. --save-logits writes a safetensors file with\n"
    "a tensor `logits` [N, classes] in the order of the arguments (only when every image could\n"
    "be read). --device cuda runs the model on the GPU (a build with the CUDA backend and a\n"
    "visible device); images are decoded on the CPU either way.\n"
    MODEL_CFG_HELP;

/* One image's top k classes with their softmax probabilities. */
static void print_topk(const char *image, const float *row, int nc, int topk, const vn_ckpt_info *info)
{
    double mx = row[0], se = 0;
    for (int c = 0; c < nc; c++) mx = fmax(mx, row[c]);
    for (int c = 0; c < nc; c++) se += exp(row[c] - mx);
    printf("%s:\n", image);
    bool *used = calloc((size_t)nc, sizeof *used);
    for (int k = 0; used && k < topk; k++) {
        int best = -1;
        for (int c = 0; c < nc; c++)
            if (!used[c] && (best < 0 || row[c] > row[best])) best = c;
        used[best] = true;
        const char *name = info->class_names && best < info->n_classes ? info->class_names[best] : NULL;
        char num[24]; /* a file without class names (an imported .pth): the class number */
        snprintf(num, sizeof num, "%d", best);
        const char *shown = name ? name : num;
        int cols = vn_utf8_columns(shown);
        printf("  %d. %s%*s %6.2f%%  (class %d, logit %.4f)\n", k + 1, shown, cols < 24 ? 24 - cols : 0,
               "", 100.0 * exp(row[best] - mx) / se, best, (double)row[best]);
    }
    free(used);
}

/* Classifies each image into its row of logits, printing its top k; counts the images that
 * could not be read. */
static int predict_images(vn_vanillanet *m, vn_device dev, const vn_loader_config *lc,
                          const char **images, int n_images, int topk, const vn_ckpt_info *info,
                          float *logits, int *failed)
{
    int nc = m->cfg.num_classes, s = lc->input_size, ch = lc->channels, ec = 0;
    vn_error err = {0};
    vn_tensor *x = vn_tensor_new4(1, s, s, ch, false);
    vn_ctx *ctx = vn_ctx_create_on(dev);
    if (!x || !ctx) {
        vn_cli_error("predict", "out of memory");
        vn_tensor_free(x);
        vn_ctx_destroy(ctx);
        return VN_EXIT_ERROR;
    }
    if (dev != VN_DEVICE_CPU && vn_state_to_device(&m->state, dev, &err) != VN_OK) {
        vn_cli_error("predict", "%s", err.msg);
        n_images = 0;
        ec = VN_EXIT_ERROR;
    }
    vn_ctx_set_grad(ctx, false);
    for (int i = 0; i < n_images; i++) {
        if (vn_load_eval_image(images[i], lc, x->data, &err) != VN_OK) {
            vn_cli_error("predict", "%s", err.msg);
            (*failed)++;
            continue;
        }
        vn_ctx_reset(ctx);
        vn_tensor *xd = vn_ctx_upload(ctx, x); /* the image to the model's device */
        vn_tensor *y = xd ? vn_vanillanet_forward(ctx, m, xd) : NULL;
        float *row = logits + (int64_t)i * nc;
        if (y && vn_tensor_read(y, row) != VN_OK)
            y = vn_ctx_fail(ctx, VN_ERR_IO, "reading the logits back from %s failed",
                            vn_device_name(dev));
        if (!y) {
            vn_cli_error("predict", "%s", vn_ctx_error(ctx));
            ec = VN_EXIT_ERROR;
            break;
        }
        print_topk(images[i], row, nc, topk, info);
    }
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
    return ec;
}

/* predict's --save-logits path: neither the model nor one of the images it reads. */
static bool logits_output_ok(const char *out, const char *model, const char **images, int n)
{
    if (!vn_cli_output_ok("predict", out, model)) return false;
    for (int k = 0; k < n; k++)
        if (vn_cli_same_file(out, images[k])) {
            vn_cli_error("predict", "the output %s is the input image %s: writing it would destroy "
                         "the image; choose another output path", out, images[k]);
            return false;
        }
    return true;
}

int vn_cmd_predict(int argc, char **argv)
{
    if (vn_cli_is_detector(argc, argv)) return vn_cmd_detect_predict(argc, argv);
    const char *model_path = NULL, *logits_path = NULL, *key = NULL, *device = "cpu";
    const char **images = calloc((size_t)argc, sizeof *images);
    int n_images = 0, topk = 5, ema = -1;
    bool bad = false;
    model_cfg_args ca = {0};
    for (int i = 1; images && i < argc; i++) {
        int t = take_model_cfg(&ca, argc, argv, &i, "predict");
        if (t < 0) {
            free(images);
            return VN_EXIT_USAGE;
        }
        if (t) continue;
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(predict_help, stdout);
            free(images);
            return 0;
        } else if (strcmp(argv[i], "--topk") == 0 && i + 1 < argc) topk = vn_cli_int("predict", "--topk", argv[++i], 1, 1000000, &bad);
        else if (strcmp(argv[i], "--ema") == 0 && i + 1 < argc) ema = vn_cli_int("predict", "--ema", argv[++i], 0, 1000, &bad);
        else if (strcmp(argv[i], "--save-logits") == 0 && i + 1 < argc) logits_path = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) key = argv[++i];
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = argv[++i];
        else if (argv[i][0] == '-') {
            vn_cli_error("predict", "unknown option %s (see vanilla predict --help)", argv[i]);
            free(images);
            return VN_EXIT_USAGE;
        } else if (!model_path) model_path = argv[i];
        else images[n_images++] = argv[i];
    }
    if (!images || bad || !model_path || n_images == 0) {
        if (!bad) fputs(predict_help, stderr);
        free(images);
        return VN_EXIT_USAGE;
    }
    if (logits_path && !logits_output_ok(logits_path, model_path, images, n_images)) {
        free(images);
        return VN_EXIT_ERROR;
    }
    vn_ckpt_info info;
    vn_vanillanet *m = NULL;
    vn_device dev;
    int oc = cli_device(device, "predict", &dev);
    if (!oc) oc = open_model(model_path, ema, key, &ca, &m, &info, &ema, "predict");
    if (oc) {
        free(images);
        return oc;
    }
    vn_loader_config lc;
    vn_config cfg;
    bool have_cfg;
    int ec = eval_loader_config(&info, model_path, &lc, &cfg, &have_cfg, "predict");
    if (!ec) ec = apply_eval_overrides(&ca, &info, &lc, "predict");
    int nc = m->cfg.num_classes;
    if (topk < 1) topk = 1;
    if (topk > nc) topk = nc;
    float *logits = calloc((size_t)n_images * (size_t)nc, sizeof *logits);
    int failed = 0;
    if (!ec) ec = predict_images(m, dev, &lc, images, n_images, topk, &info, logits, &failed);
    if (!ec && failed) {
        vn_cli_error("predict", "%d of %d images could not be read or used%s", failed, n_images,
                     logits_path ? "; no logits file written" : "");
        ec = VN_EXIT_ERROR;
    }
    if (!ec && logits_path) ec = save_logits("predict", logits_path, logits, n_images, nc);
    free(logits);
    free(images);
    vn_vanillanet_destroy(m);
    vn_ckpt_info_free(&info);
    return ec;
}
