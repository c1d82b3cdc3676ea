/* vanilla data import / check / preview */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/vn_dataset.h"
#include "base/vn_fs.h"
#include "data/vn_detect_data.h"
#include "data/vn_loader.h"
#include "train/vn_trainer.h"
#include "train/cli/vn_cli.h"

static const char data_help[] =
    "usage: vanilla data import [--format fashion-mnist|mnist|fashion-mnist-detect] [SRC_DIR] OUT_DIR\n"
    "                           [--threads N]\n"
    "                           fashion-mnist-detect: [--train N] [--val N] [--canvas S]\n"
    "                           [--items MIN-MAX] [--sizes MIN-MAX] [--max-cover F] [--seed S]\n"
    "       vanilla data check FOLDER [--threads N] [--list N]\n"
    "       vanilla data preview CONFIG.yaml... [--set k=v]... [--n 16] [--seed S] -o GRID.png\n"
    "\n"
    "import: converts MNIST-style IDX files (gzip or plain) into ImageNet-format PNG folders\n"
    "        OUT_DIR/train/<class>/ and OUT_DIR/val/<class>/. SRC_DIR defaults to\n"
    "        /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist),\n"
    "        --format to fashion-mnist. A finished import is not redone; another format or\n"
    "        source into the same OUT_DIR is refused, and so is an OUT_DIR whose train/ or\n"
    "        val/ holds files of something else. fashion-mnist-detect instead composes a YOLO\n"
    "        detection set (OUT_DIR/data.yaml, images/ and labels/ for train and val): by\n"
    "        default 8000 + 1000 canvases of 96x96 (--train, --val, --canvas) with 1-4 items\n"
    "        each (--items) scaled to 28-48 pixels (--sizes) on a textured background, each\n"
    "        covering at most 0.1 of another's box and covered by at most as much (--max-cover),\n"
    "        from --seed 0. The same options into the same OUT_DIR are not redone; other options\n"
    "        rewrite it (files of a larger earlier set are removed).\n"
    "check:  scans an image folder (or a split of one) and reports images per class,\n"
    "        unreadable files with the reason, and odd formats, without training. Exits 1\n"
    "        when a file is unreadable.\n"
    "preview: writes a PNG grid of the first N training samples of epoch 0 as the config's\n"
    "        train pipeline makes them (crop, flip, RandAugment or color jitter, random\n"
    "        erasing), un-normalised; mixup and cutmix (per batch) are not shown. --seed\n"
    "        replaces train.seed.\n";

static int preview(const char *const *files, int n_files, const char **sets, int n_sets,
                   const char *seed, int n, const char *out_png)
{
    if (!n_files || !out_png) {
        fputs(data_help, stderr);
        return VN_EXIT_USAGE;
    }
    for (int k = 0; k < n_files; k++)
        if (vn_cli_same_file(out_png, files[k])) {
            vn_cli_error("data", "the output %s is the config %s: choose another path for the grid",
                         out_png, files[k]);
            return VN_EXIT_ERROR;
        }
    char seed_set[64];
    if (seed) {
        bool bad = false; /* the option as typed, not as the --set it becomes */
        vn_cli_int("data", "--seed", seed, 0, 2147483647, &bad);
        if (bad) return VN_EXIT_USAGE;
        snprintf(seed_set, sizeof seed_set, "train.seed=%s", seed);
        sets[n_sets++] = seed_set;
    }
    vn_config cfg;
    int ec = vn_cli_load_config(&cfg, files, n_files, sets, n_sets, "data");
    if (ec) return ec;
    if (cfg.model.task == VN_CONFIG_TASK_DETECT) {
        vn_cli_error("data", "preview shows a classifier's training pipeline; a detector's (mosaic, "
                     "affine, HSV, flip on its detect.data) has no preview yet");
        return VN_EXIT_USAGE;
    }
    if (!cfg.data.root[0]) {
        vn_cli_error("data", "preview needs data.root (in the config or with --set data.root=PATH)");
        return VN_EXIT_USAGE;
    }
    char root[2 * VN_CONFIG_STR_MAX + 2];
    vn_loader_config lc;
    vn_build_loader_config(&cfg, true, &lc);
    lc.root = vn_split_path(&cfg, true, root, sizeof root);
    vn_error err = {0};
    int shown = 0;
    if (vn_loader_preview(&lc, n, out_png, &shown, &err)) {
        vn_cli_error("data", "%s", err.msg);
        return VN_EXIT_ERROR;
    }
    printf("wrote %s: %d training samples of %s (%dx%d, auto_augment \"%s\", reprob %g, "
           "seed %lld)\n", out_png, shown, lc.root, lc.input_size, lc.input_size,
           cfg.data.auto_augment, cfg.data.reprob, (long long)cfg.train.seed);
    return 0;
}

/* "MIN-MAX" (or one number for both) into lo, hi, each within [a, b]. */
static void parse_range(const char *opt, const char *s, int a, int b, int *lo, int *hi, bool *bad)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *dash = strchr(buf + (buf[0] == '-'), '-');
    if (dash) *dash = 0;
    *lo = vn_cli_int("data", opt, buf, a, b, bad);
    *hi = dash ? vn_cli_int("data", opt, dash + 1, a, b, bad) : *lo;
    if (!*bad && *hi < *lo) {
        vn_cli_error("data", "%s %s: the maximum is below the minimum", opt, s);
        *bad = true;
    }
}

/* The fashion-mnist-detect options at argv[i] (consumed: *i advanced); false: not one. */
static bool fmd_option(int argc, char **argv, int *i, vn_fmd_config *c, bool *bad)
{
    const char *o = argv[*i];
    if (*i + 1 >= argc) return false;
    const char *v = argv[*i + 1];
    if (strcmp(o, "--train") == 0) c->n_train = vn_cli_int("data", o, v, 0, 100000000, bad);
    else if (strcmp(o, "--val") == 0) c->n_val = vn_cli_int("data", o, v, 0, 100000000, bad);
    else if (strcmp(o, "--canvas") == 0) c->canvas = vn_cli_int("data", o, v, 32, 4096, bad);
    else if (strcmp(o, "--items") == 0) parse_range(o, v, 0, 16, &c->min_items, &c->max_items, bad);
    else if (strcmp(o, "--sizes") == 0) parse_range(o, v, 8, 256, &c->min_size, &c->max_size, bad);
    else if (strcmp(o, "--max-cover") == 0) c->max_cover = vn_cli_real("data", o, v, 0, 1, bad);
    else return false;
    ++*i;
    return true;
}

/* import --format fashion-mnist-detect [SRC_DIR] OUT_DIR */
static int import_detect(int n_pos, const char *const *pos, vn_fmd_config *cfg, const char *seed)
{
    const char *src = n_pos == 2 ? pos[0] : "/usr/share/datasets/fashion-mnist";
    const char *out = n_pos == 2 ? pos[1] : pos[0];
    if (!out) {
        fputs(data_help, stderr);
        return VN_EXIT_USAGE;
    }
    bool bad = false;
    if (seed) cfg->seed = (uint64_t)vn_cli_int("data", "--seed", seed, 0, 2147483647, &bad);
    if (bad) return VN_EXIT_USAGE;
    vn_error err = {0};
    vn_fmd_result res;
    double t0 = vn_monotonic();
    if (vn_import_fashion_mnist_detect(src, out, cfg, &res, &err) != VN_OK) {
        vn_cli_error("data", "%s", err.msg);
        return VN_EXIT_ERROR;
    }
    if (res.reused) {
        printf("%s already holds this set (%lld training and %lld validation images, %lld boxes, "
               "%dx%d): not redone; dataset YAML: %s/data.yaml\n", out, (long long)cfg->n_train,
               (long long)cfg->n_val, (long long)res.boxes, cfg->canvas, cfg->canvas, out);
        return 0;
    }
    printf("wrote %lld training and %lld validation images (%lld boxes, %dx%d) from %s into %s "
           "in %.1f s; dataset YAML: %s/data.yaml\n", (long long)cfg->n_train,
           (long long)cfg->n_val, (long long)res.boxes, cfg->canvas, cfg->canvas, src, out,
           vn_monotonic() - t0, out);
    if (res.stale_removed)
        printf("removed %lld files of an earlier, larger set\n", (long long)res.stale_removed);
    return 0;
}

/* import --format fashion-mnist|mnist [SRC_DIR] OUT_DIR */
static int import_mnist(const char *format, int n_pos, const char *const *pos, int threads)
{
    vn_error err = {0};
    vn_mnist_kind kind;
    if (strcmp(format, "fashion-mnist") == 0) kind = VN_MNIST_FASHION;
    else if (strcmp(format, "mnist") == 0) kind = VN_MNIST_DIGITS;
    else {
        vn_cli_error("data", "unknown --format %s (fashion-mnist, mnist or "
                     "fashion-mnist-detect)", format);
        return VN_EXIT_USAGE;
    }
    const char *src = n_pos == 2 ? pos[0] : "/usr/share/datasets/fashion-mnist";
    const char *out = n_pos == 2 ? pos[1] : pos[0];
    if (!out) {
        fputs(data_help, stderr);
        return VN_EXIT_USAGE;
    }
    vn_import_result res;
    if (vn_import_mnist(src, out, kind, threads, &res, &err) != VN_OK) {
        vn_cli_error("data", "%s", err.msg);
        return VN_EXIT_ERROR;
    }
    if (res.skipped)
        printf("%s: already imported (%s/.vn_import_done); nothing to do\n", out, out);
    else
        printf("imported %lld training and %lld validation images from %s into %s in %.1f s\n",
               (long long)res.n_train, (long long)res.n_val, src, out, res.seconds);
    return 0;
}

int vn_cmd_data(int argc, char **argv)
{
    if (argc < 2 || vn_cli_is(argv[1], "-h", "--help")) {
        fputs(data_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? VN_EXIT_USAGE : VN_EXIT_OK;
    }
    const char *sub = argv[1], *format = "fashion-mnist", *out_png = NULL, *seed = NULL;
    const char *pos[VN_CONFIG_MAX_FILES] = {NULL};
    const char *sets[64];
    int n_pos = 0, n_sets = 0, threads = 2, list = 20, n_show = 16;
    bool bad = false, detect = false;
    for (int i = 2; i < argc - 1; i++)
        detect = detect || (strcmp(argv[i], "--format") == 0 && strcmp(argv[i + 1], "fashion-mnist-detect") == 0);
    vn_fmd_config fmd;
    vn_fmd_config_default(&fmd);
    int max_pos = strcmp(sub, "preview") == 0 ? VN_CONFIG_MAX_FILES : 2;
    for (int i = 2; i < argc; i++) {
        if (detect && strcmp(sub, "import") == 0 && fmd_option(argc, argv, &i, &fmd, &bad)) continue;
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(data_help, stdout);
            return 0;
        } else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) format = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = vn_cli_int("data", "--threads", argv[++i], 0, 1024, &bad);
        else if (strcmp(argv[i], "--list") == 0 && i + 1 < argc) list = vn_cli_int("data", "--list", argv[++i], 0, 1000000000, &bad);
        else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) n_show = vn_cli_int("data", "--n", argv[++i], 1, 1024, &bad);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) seed = argv[++i];
        else if (vn_cli_is(argv[i], "-o", "--output") && i + 1 < argc) out_png = argv[++i];
        else if (vn_cli_is(argv[i], "--set", "-s") && i + 1 < argc && n_sets < 63)
            sets[n_sets++] = argv[++i];
        else if (argv[i][0] == '-') {
            vn_cli_error("data", "unknown option %s (see vanilla data --help)", argv[i]);
            return VN_EXIT_USAGE;
        } else if (n_pos < max_pos) pos[n_pos++] = argv[i];
        else {
            vn_cli_error("data", "too many arguments");
            return VN_EXIT_USAGE;
        }
    }
    if (bad) return VN_EXIT_USAGE;
    vn_error err = {0};
    if (strcmp(sub, "import") == 0 && strcmp(format, "fashion-mnist-detect") == 0) {
        fmd.threads = threads;
        return import_detect(n_pos, pos, &fmd, seed);
    }
    if (strcmp(sub, "import") == 0) return import_mnist(format, n_pos, pos, threads);
    if (strcmp(sub, "check") == 0) {
        if (!pos[0]) {
            fputs(data_help, stderr);
            return VN_EXIT_USAGE;
        }
        /* A data set root (train/ and val/ holding the class folders) is not a split. */
        char tr[4096], va[4096];
        struct stat st;
        snprintf(tr, sizeof tr, "%s/train", pos[0]);
        snprintf(va, sizeof va, "%s/val", pos[0]);
        if (stat(tr, &st) == 0 && S_ISDIR(st.st_mode) && stat(va, &st) == 0 && S_ISDIR(st.st_mode))
            fprintf(stderr, "vanilla data: note: %s holds train/ and val/: they are checked here as "
                    "two classes; check each split with `vanilla data check %s` and `vanilla data "
                    "check %s`\n", pos[0], tr, va);
        vn_check_report rep;
        if (vn_dataset_check(pos[0], threads, 0, &rep, &err) != VN_OK) {
            vn_cli_error("data", "%s", err.msg);
            return VN_EXIT_ERROR;
        }
        vn_check_report_print(&rep, stdout, list);
        int ec = rep.n_bad ? VN_EXIT_ERROR : 0;
        vn_check_report_free(&rep);
        return ec;
    }
    if (strcmp(sub, "preview") == 0) return preview(pos, n_pos, sets, n_sets, seed, n_show, out_png);
    vn_cli_error("data", "unknown subcommand %s (import, check or preview)", sub);
    return VN_EXIT_USAGE;
}
