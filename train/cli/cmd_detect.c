/* vanilla eval / predict / export on a detector file (model.task: detect): the commands hand
 * over here when their model argument is a detector checkpoint or weight file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "io/vn_onnx.h"
#include "train/cli/vn_cli.h"
#include "train/vn_detect.h"

bool vn_cli_is_detector(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (argv[i][0] != '-') return vn_detect_file_is(argv[i]);
    return false;
}

static const char det_eval_help[] =
    "usage: vanilla eval DETECTOR.safetensors [--data DATA.yaml] [--split val|train]\n"
    "                    [--imgsz N] [--batch-size N] [--conf C] [--iou T]\n"
    "                    [--set data.max_bad_fraction=F]\n"
    "\n"
    "Box precision, recall, mAP50 and mAP50-95 of a detector checkpoint or exported weights on\n"
    "a YOLO-format split (default: the val split of the checkpoint config's detect.data), as\n"
    "Ultralytics' validation: letterbox to imgsz, NMS conf 0.001 IoU 0.7 max 300, 101-point AP.\n"
    "A checkpoint holding EMA weights (detect.ema_decay > 0) is evaluated with them, as\n"
    "Ultralytics validates its EMA; predict and export use them too.\n"
    "Images that cannot be read (or whose label file is unusable) are named and left out;\n"
    "more of them than data.max_bad_fraction (the checkpoint config's, default 0.01) is an\n"
    "error.\n";

/* The detector's stored config (for detect.data), or the defaults. */
static void stored_config(const vn_detect_info *info, vn_config *cfg)
{
    vn_error e = {0};
    if (!info->config_yaml ||
        vn_config_from_text(cfg, info->config_yaml, strlen(info->config_yaml), "checkpoint", &e) != VN_OK)
        vn_config_init(cfg);
}

static int eval_run(const char *model_path, const char *data, const char *split, int imgsz,
                    int batch, double conf, double iou, double max_bad)
{
    vn_error err = {0};
    vn_detect_info info;
    vn_yolo *m = NULL;
    vn_config *cfg = malloc(sizeof *cfg);
    vn_det_data_cfg dc = {0};
    vn_det_dataset *ds = NULL;
    vn_ctx *ctx = vn_ctx_create();
    int rc = cfg && ctx ? vn_detect_open(model_path, &m, &info, &err) : vn_error_set(&err, VN_ERR_NOMEM, "out of memory");
    if (rc == VN_OK) {
        stored_config(&info, cfg);
        if (max_bad >= 0) cfg->data.max_bad_fraction = max_bad;
        if (!data) data = cfg->detect.data;
        rc = data[0] ? vn_det_data_cfg_load(data, &dc, &err)
                     : vn_error_set(&err, VN_ERR_INVALID, "no dataset: give --data DATA.yaml");
    }
    const char *dir = strcmp(split, "train") == 0 ? dc.train : dc.val;
    /* The scan's and the evaluation's unreadable images together are held to the stored
     * config's data.max_bad_fraction (by vn_detect_evaluate_until). */
    if (rc == VN_OK) rc = dir ? vn_det_dataset_scan(dir, info.nc, 1.0, &ds, &err)
                              : vn_error_set(&err, VN_ERR_INVALID, "%s has no %s split", data, split);
    for (int64_t k = 0; rc == VN_OK && k < vn_det_dataset_skipped_count(ds); k++)
        fprintf(stderr, "skipped %s\n", vn_det_dataset_skipped(ds, k));
    vn_det_metrics mt = {0};
    if (rc == VN_OK) {
        vn_nms_params np;
        vn_detect_nms_of(cfg, &np);
        if (conf >= 0) np.conf = (float)conf;
        if (iou >= 0) np.iou = iou;
        int sz = imgsz > 0 ? imgsz : info.imgsz;
        printf("%s: %s%s%s, %d classes, imgsz %d, %s (%lld images)\n", model_path,
               info.is_checkpoint ? "detector checkpoint" : "detector weights",
               info.deploy ? " (merged backbone)" : "", info.has_ema ? " (EMA weights)" : "", info.nc,
               sz, dir, (long long)vn_det_dataset_size(ds));
        rc = vn_detect_evaluate_until(ctx, m, ds, sz, batch > 0 ? batch : 16, &np,
                                      cfg->data.max_bad_fraction, &mt, NULL, &err);
    }
    if (rc == VN_OK) vn_det_metrics_print(stdout, &mt, (const char *const *)info.names);
    else vn_cli_error("eval", "%s", err.msg);
    vn_det_metrics_free(&mt);
    vn_det_dataset_free(ds);
    vn_det_data_cfg_free(&dc);
    if (m) vn_detect_info_free(&info);
    vn_yolo_destroy(m);
    vn_ctx_destroy(ctx);
    free(cfg);
    return rc == VN_OK ? VN_EXIT_OK : VN_EXIT_ERROR;
}

int vn_cmd_detect_eval(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *split = "val";
    int imgsz = 0, batch = 0;
    double conf = -1, iou = -1, max_bad = -1;
    bool bad = false;
    for (int i = 1; i < argc; i++) {
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(det_eval_help, stdout);
            return VN_EXIT_OK;
        } else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) data = argv[++i];
        else if (strcmp(argv[i], "--split") == 0 && i + 1 < argc) split = argv[++i];
        else if (strcmp(argv[i], "--imgsz") == 0 && i + 1 < argc) imgsz = vn_cli_int("eval", "--imgsz", argv[++i], 0, 16384, &bad);
        else if (strcmp(argv[i], "--batch-size") == 0 && i + 1 < argc) batch = vn_cli_int("eval", "--batch-size", argv[++i], 1, 65536, &bad);
        else if (strcmp(argv[i], "--conf") == 0 && i + 1 < argc) conf = vn_cli_real("eval", "--conf", argv[++i], 0, 1, &bad);
        else if (strcmp(argv[i], "--iou") == 0 && i + 1 < argc) iou = vn_cli_real("eval", "--iou", argv[++i], 0, 1, &bad);
        else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            const char *kv = argv[++i], *key = "data.max_bad_fraction=";
            if (strncmp(kv, key, strlen(key)) != 0) {
                vn_cli_error("eval", "--set %s: a detector's eval takes only data.max_bad_fraction", kv);
                return VN_EXIT_USAGE;
            }
            max_bad = vn_cli_real("eval", "data.max_bad_fraction", kv + strlen(key), 0, 1, &bad);
        } else if (argv[i][0] == '-') {
            vn_cli_error("eval", "unknown option %s for a detector (see the usage below)\n%s", argv[i],
                         det_eval_help);
            return VN_EXIT_USAGE;
        } else model = argv[i];
    }
    if (bad) return VN_EXIT_USAGE;
    if (imgsz < 0 || imgsz % 32) {
        vn_cli_error("eval", "--imgsz %d: a positive multiple of 32", imgsz);
        return VN_EXIT_USAGE;
    }
    return eval_run(model, data, split, imgsz, batch, conf, iou, max_bad);
}

static const char det_predict_help[] =
    "usage: vanilla predict DETECTOR.safetensors IMAGE... [-o OUT.png] [--conf C] [--iou T]\n"
    "                       [--imgsz N]\n"
    "\n"
    "Detects objects in image files: one line per box (image, class, score, x1 y1 x2 y2 in the\n"
    "image's pixels), conf 0.25 and IoU 0.7 by default (Ultralytics' predict). -o draws the\n"
    "boxes with class names and scores on the image as a PNG: OUT.png for one image; with\n"
    "several, OUT-<k>.png, or, when OUT is a folder, OUT/<image name>.png (-<k> added for a\n"
    "name an earlier image took; k counts the images from 0). An image that cannot\n"
    "be read is reported and the others are still done (exit 1 at the end).\n";

static int predict_one(vn_ctx *ctx, vn_yolo *m, const vn_detect_info *info, const char *image,
                       int imgsz, const vn_nms_params *np, const char *out, vn_error *err)
{
    vn_detection *d = NULL;
    int n = 0;
    int rc = vn_detect_image(ctx, m, image, imgsz, np, &d, &n, err);
    if (rc != VN_OK) return rc;
    printf("%s: %d boxes%s\n", image, n, info->has_ema ? " (EMA weights)" : "");
    for (int i = 0; i < n; i++)
        printf("  %-16s %.3f  %.1f %.1f %.1f %.1f\n", d[i].cls < info->nc ? info->names[d[i].cls] : "?",
               d[i].conf, d[i].x1, d[i].y1, d[i].x2, d[i].y2);
    if (out) rc = vn_detect_draw_png(image, d, n, (const char *const *)info->names, info->nc, out, err);
    if (rc == VN_OK && out) printf("  drawn: %s\n", out);
    free(d);
    return rc;
}

/* -o: a .png name, a name without an extension, or a folder (*dir). False, said, otherwise. */
static bool drawing_target_ok(const char *out, bool *dir)
{
    size_t ol = strlen(out);
    struct stat st;
    if (!ol) {
        vn_cli_error("predict", "-o needs a file or folder name");
        return false;
    }
    *dir = (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) || out[ol - 1] == '/';
    if (!*dir && !(ol > 4 && strcasecmp(out + ol - 4, ".png") == 0) &&
        strrchr(out, '.') > strrchr(out, '/')) {
        vn_cli_error("predict", "-o %s: the drawing is written as PNG; give a .png name (or a "
                     "folder, for several images)", out);
        return false;
    }
    return true;
}

/* An image's file name without its folder and extension: its start, *len its length. */
static const char *image_stem(const char *path, int *len)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    const char *dot = strrchr(base, '.');
    *len = dot && dot > base ? (int)(dot - base) : (int)strlen(base);
    return base;
}

/* Where image k's drawing goes: OUT/<image name>.png in a folder (-<k> added when an earlier
 * image took the name), OUT-<k>.png for one of several, else OUT. */
static const char *drawing_path(const char *out, bool dir, const char *const *images, int n,
                                int k, char *buf, size_t len)
{
    int ol = (int)strlen(out), stem;
    const char *base = image_stem(images[k], &stem);
    if (dir) {
        int d = out[ol - 1] == '/' ? ol - 1 : ol, taken = 0;
        for (int j = 0; j < k && !taken; j++) {
            int sj;
            const char *bj = image_stem(images[j], &sj);
            taken = sj == stem && strncmp(bj, base, (size_t)stem) == 0;
        }
        if (taken) snprintf(buf, len, "%.*s/%.*s-%d.png", d, out, stem, base, k);
        else snprintf(buf, len, "%.*s/%.*s.png", d, out, stem, base);
        return buf;
    }
    if (n == 1) return out;
    int o = ol > 4 && strcasecmp(out + ol - 4, ".png") == 0 ? ol - 4 : ol;
    snprintf(buf, len, "%.*s-%d.png", o, out, k);
    return buf;
}

int vn_cmd_detect_predict(int argc, char **argv)
{
    const char *model = NULL, *out = NULL;
    const char **images = calloc((size_t)argc, sizeof *images);
    int n_images = 0, imgsz = 0;
    vn_nms_params np = {0.25f, 0.7, 300, false, false};
    bool bad = false;
    for (int i = 1; images && i < argc; i++) {
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(det_predict_help, stdout);
            free(images);
            return VN_EXIT_OK;
        } else if (vn_cli_is(argv[i], "-o", "--output") && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--conf") == 0 && i + 1 < argc) np.conf = (float)vn_cli_real("predict", "--conf", argv[++i], 0, 1, &bad);
        else if (strcmp(argv[i], "--iou") == 0 && i + 1 < argc) np.iou = vn_cli_real("predict", "--iou", argv[++i], 0, 1, &bad);
        else if (strcmp(argv[i], "--imgsz") == 0 && i + 1 < argc) imgsz = vn_cli_int("predict", "--imgsz", argv[++i], 0, 16384, &bad);
        else if (argv[i][0] == '-') {
            vn_cli_error("predict", "unknown option %s for a detector\n%s", argv[i], det_predict_help);
            free(images);
            return VN_EXIT_USAGE;
        } else if (!model) model = argv[i];
        else images[n_images++] = argv[i];
    }
    if (!bad && (imgsz < 0 || imgsz % 32)) {
        vn_cli_error("predict", "--imgsz %d: a positive multiple of 32 (the detector's largest "
                     "stride)", imgsz);
        bad = true;
    }
    bool out_dir = false;
    if (!bad && out && !drawing_target_ok(out, &out_dir)) bad = true;
    if (!images || bad || n_images == 0) {
        if (!bad) fputs(det_predict_help, stderr);
        free(images);
        return VN_EXIT_USAGE;
    }
    vn_error err = {0};
    vn_detect_info info;
    vn_yolo *m = NULL;
    vn_ctx *ctx = vn_ctx_create();
    int rc = ctx ? vn_detect_open(model, &m, &info, &err) : vn_error_set(&err, VN_ERR_NOMEM, "out of memory");
    int failed = 0;
    for (int k = 0; rc == VN_OK && k < n_images; k++) {
        char path[4096];
        const char *o = out ? drawing_path(out, out_dir, images, n_images, k, path, sizeof path) : NULL;
        rc = predict_one(ctx, m, &info, images[k], imgsz > 0 ? imgsz : info.imgsz, &np, o, &err);
        if (rc != VN_OK && rc != VN_ERR_NOMEM) { /* this image: reported, go on */
            vn_cli_error("predict", "%s", err.msg);
            failed++;
            rc = VN_OK;
        }
    }
    if (rc != VN_OK) vn_cli_error("predict", "%s", err.msg);
    if (rc == VN_OK && failed) rc = VN_ERR_FORMAT;
    if (m) vn_detect_info_free(&info);
    vn_yolo_destroy(m);
    vn_ctx_destroy(ctx);
    free(images);
    return rc == VN_OK ? VN_EXIT_OK : VN_EXIT_ERROR;
}

static const char det_export_help[] =
    "usage: vanilla export DETECTOR.safetensors -o MERGED.safetensors [--force]\n"
    "       vanilla export DETECTOR.safetensors --format onnx -o DET.onnx [--input-size N] [--force]\n"
    "\n"
    "A detector checkpoint or weight file (its EMA weights when it holds them): merges the\n"
    "VanillaNet backbone as the classifier's export does (refused at act_learn != 1 unless\n"
    "--force), checks the merged Detect outputs against the training form's and writes the\n"
    "merged weights under Ultralytics' model.{i} names.\n"
    "\n"
    "--format onnx writes the merged detector, every BatchNorm folded into its conv, as one\n"
    "ONNX opset 13 graph in the form of Ultralytics' export: input `images` [batch, 3, N, N]\n"
    "(RGB in [0, 1], letterboxed; N: --input-size, a multiple of 32, default the file's imgsz),\n"
    "output `output0` [batch, 4 + nc, anchors]: boxes cx, cy, w, h in input pixels, then the\n"
    "class scores (sigmoid), anchors of strides 8, 16 and 32; no NMS. metadata_props hold\n"
    "Ultralytics' names, stride, imgsz, batch and task, and vanilla.classes / preprocessing / model.\n";

static int export_onnx(const char *in, const char *out, int size, bool force)
{
    vn_error err = {0};
    vn_detect_info info;
    vn_yolo *m = NULL;
    int rc = vn_detect_open(in, &m, &info, &err);
    bool merged = rc == VN_OK && !info.deploy;
    if (rc == VN_OK) rc = vn_detect_export_onnx(m, &info, size, force, out, &err);
    if (rc == VN_OK) {
        int n = size != 0 ? size : info.imgsz, a = 0;
        for (int l = 0; l < VN_YOLO_LEVELS; l++) a += (n >> (3 + l)) * (n >> (3 + l));
        printf("%s%s%s -> %s: ONNX (opset %d, dynamic batch): images [batch, 3, %d, %d] -> output0 "
               "[batch, %d, %d]\n", in, merged ? " (backbone merged)" : "",
               info.has_ema ? " (EMA weights)" : "", out, VN_ONNX_OPSET, n, n, 4 + info.nc, a);
    } else {
        vn_cli_error("export", "%s: %s", in, err.msg);
    }
    if (m) vn_detect_info_free(&info);
    vn_yolo_destroy(m);
    return rc == VN_OK ? VN_EXIT_OK : VN_EXIT_ERROR;
}

int vn_cmd_detect_export(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *format = "safetensors";
    bool force = false, bad = false, format_given = false;
    int size = 0;
    for (int i = 1; i < argc; i++) {
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(det_export_help, stdout);
            return VN_EXIT_OK;
        } else if (vn_cli_is(argv[i], "-o", "--output") && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--force") == 0) force = true;
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) format = argv[++i], format_given = true;
        else if (strcmp(argv[i], "--input-size") == 0 && i + 1 < argc) size = vn_cli_int("export", "--input-size", argv[++i], 1, 16384, &bad);
        else if (argv[i][0] == '-') {
            vn_cli_error("export", "unknown option %s for a detector\n%s", argv[i], det_export_help);
            return VN_EXIT_USAGE;
        } else if (in) {
            vn_cli_error("export", "one model file at a time: %s, then %s", in, argv[i]);
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
        vn_cli_error("export", "--format %s: safetensors or onnx", format);
        return VN_EXIT_USAGE;
    }
    if (!onnx && size) {
        vn_cli_error("export", "--input-size is the ONNX graph's (--format onnx)");
        return VN_EXIT_USAGE;
    }
    if (!in || !out) {
        fputs(det_export_help, stderr);
        return VN_EXIT_USAGE;
    }
    if (!vn_cli_output_ok("export", out, in)) {
        return VN_EXIT_ERROR;
    }
    if (onnx) return export_onnx(in, out, size, force);
    vn_error err = {0};
    vn_detect_info info;
    vn_yolo *m = NULL;
    int rc = vn_detect_open(in, &m, &info, &err);
    if (rc == VN_OK && info.deploy) rc = vn_error_set(&err, VN_ERR_INVALID, "%s is already merged", in);
    double diff = 0, ref = 0;
    int64_t p_train = rc == VN_OK ? vn_state_numel(vn_yolo_state(m), VN_STATE_PARAM) : 0;
    if (rc == VN_OK) rc = vn_detect_export(m, &info, out, force, &diff, &ref, &err);
    if (rc == VN_OK) {
        printf("%s (act_learn %.3f%s) -> %s: backbone merged; parameters %lld -> %lld\n", in,
               info.act_learn, info.has_ema ? ", EMA weights" : "", out, (long long)p_train,
               (long long)vn_state_numel(vn_yolo_state(m), VN_STATE_PARAM));
        printf("check: largest |merged - training| Detect output %.3g (largest output %.3g) on 2 "
               "random %dx%d images\n", diff, ref, info.imgsz, info.imgsz);
    } else {
        vn_cli_error("export", "%s", err.msg);
    }
    if (m) vn_detect_info_free(&info);
    vn_yolo_destroy(m);
    return rc == VN_OK ? VN_EXIT_OK : VN_EXIT_ERROR;
}

/* `vanilla info` on a detector: its layers, parameters and multiply-adds, and Ultralytics'
 * summary figure (GFLOPs = 2 x multiply-adds / 1e9). */
static int detect_info_print(vn_yolo *m, int size, const char *form)
{
    vn_report r;
    vn_error err = {0};
    if (vn_yolo_report(m, size, &r, &err) != VN_OK) {
        vn_cli_error("info", "%s", err.msg);
        return VN_EXIT_ERROR;
    }
    const vn_yolo_config *c = vn_yolo_get_config(m);
    printf("%s form, input %dx%dx%d:\n", form, size, size, c->backbone.in_chans);
    vn_report_print(&r, stdout);
    printf("YOLO11-VanillaNet summary (%s): %lld parameters, %.3g GFLOPs at %dx%d\n", form,
           (long long)r.total_params, 2.0 * (double)r.total_macs / 1e9, size, size);
    vn_report_free(&r);
    return VN_EXIT_OK;
}

int vn_cli_detect_info(const char *model_file, const vn_config *cfg, int size, bool deploy_only)
{
    vn_error err = {0};
    vn_yolo *m = NULL;
    int rc;
    if (model_file) {
        vn_detect_info info;
        rc = vn_detect_open(model_file, &m, &info, &err);
        if (rc != VN_OK) {
            vn_cli_error("info", "%s", err.msg);
            return VN_EXIT_ERROR;
        }
        if (!size) size = info.imgsz;
        printf("%s: detector %s%s, %d classes, imgsz %d", model_file,
               info.is_checkpoint ? "training checkpoint" : "weights",
               info.deploy ? " (backbone merged)" : "", info.nc, info.imgsz);
        if (info.is_checkpoint)
            printf(", epoch %lld, step %lld, act_learn %.3f%s", (long long)info.epoch,
                   (long long)info.step, info.act_learn, info.has_ema ? ", with EMA weights" : "");
        printf("\n");
        vn_detect_info_free(&info);
    } else {
        int nc = 80;
        vn_det_data_cfg dc;
        const char *data = cfg->detect.data;
        if (data && data[0] && vn_det_data_cfg_load(data, &dc, &err) == VN_OK) {
            nc = dc.nc;
            vn_det_data_cfg_free(&dc);
            printf("detector for %s: %d classes\n", data, nc);
        } else {
            printf("detector: %d classes (%s%s)\n", nc, data && data[0] ? "cannot read " : "no detect.data",
                   data && data[0] ? data : "");
        }
        vn_yolo_config yc;
        rc = vn_detect_model_config(cfg, nc, &yc, &err);
        if (rc == VN_OK) rc = vn_yolo_create(&yc, &m, &err);
        if (rc != VN_OK) {
            vn_cli_error("info", "%s", err.msg);
            return VN_EXIT_ERROR;
        }
        if (!size) size = (int)cfg->detect.imgsz;
    }
    rc = VN_EXIT_OK;
    if (!vn_yolo_is_deploy(m) && !deploy_only) {
        rc = detect_info_print(m, size, "training");
        if (rc == VN_EXIT_OK) printf("\n");
    }
    if (rc == VN_EXIT_OK && !vn_yolo_is_deploy(m) &&
        vn_yolo_get_config(m)->backbone.shortcut == VN_SHORTCUT_NONE) {
        if (vn_yolo_switch_to_deploy(m, true, &err) != VN_OK) {
            vn_cli_error("info", "%s", err.msg);
            rc = VN_EXIT_ERROR;
        }
    }
    if (rc == VN_EXIT_OK && vn_yolo_is_deploy(m)) rc = detect_info_print(m, size, "deploy");
    vn_yolo_destroy(m);
    return rc;
}
