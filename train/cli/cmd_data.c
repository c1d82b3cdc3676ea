/* vanilla data import / check */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/vn_dataset.h"
#include "base/vn_fs.h"
#include "data/vn_detect_data.h"
#include "train/cli/vn_cli.h"

static const char data_help[] =
    "usage: vanilla data import --format fashion-mnist|mnist|fashion-mnist-detect [SRC_DIR] OUT_DIR\n"
    "                           [--threads N]\n"
    "       vanilla data check FOLDER [--threads N] [--list N]\n"
    "\n"
    "import: converts MNIST-style IDX files (gzip or plain) into ImageNet-format PNG folders\n"
    "        OUT_DIR/train/<class>/ and OUT_DIR/val/<class>/. SRC_DIR defaults to\n"
    "        /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).\n"
    "        A finished import is not redone. fashion-mnist-detect instead composes a YOLO\n"
    "        detection set (OUT_DIR/data.yaml, images/ and labels/ for train and val): 8000 +\n"
    "        1000 canvases of 128x128 with 1-4 items each on a textured background.\n"
    "check:  scans an image folder (or a split of one) and reports images per class,\n"
    "        unreadable files with the reason, and odd formats, without training. Exits 1\n"
    "        when a file is unreadable.\n";

/* import --format fashion-mnist-detect [SRC_DIR] OUT_DIR */
static int import_detect(int n_pos, const char *const *pos, int threads)
{
    const char *src = n_pos == 2 ? pos[0] : "/usr/share/datasets/fashion-mnist";
    const char *out = n_pos == 2 ? pos[1] : pos[0];
    if (!out) {
        fputs(data_help, stderr);
        return VN_EXIT_USAGE;
    }
    vn_fmd_config cfg;
    vn_fmd_config_default(&cfg);
    cfg.threads = threads;
    vn_error err = {0};
    int64_t boxes = 0;
    double t0 = vn_monotonic();
    if (vn_import_fashion_mnist_detect(src, out, &cfg, &boxes, &err) != VN_OK) {
        vn_cli_error("data", "%s", err.msg);
        return VN_EXIT_ERROR;
    }
    printf("wrote %lld training and %lld validation images (%lld boxes, %dx%d) from %s into %s "
           "in %.1f s; dataset YAML: %s/data.yaml\n", (long long)cfg.n_train,
           (long long)cfg.n_val, (long long)boxes, cfg.canvas, cfg.canvas, src, out,
           vn_monotonic() - t0, out);
    return 0;
}

int vn_cmd_data(int argc, char **argv)
{
    if (argc < 2 || vn_cli_is(argv[1], "-h", "--help")) {
        fputs(data_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? VN_EXIT_USAGE : VN_EXIT_OK;
    }
    const char *sub = argv[1], *format = "fashion-mnist";
    const char *pos[2] = {NULL, NULL};
    int n_pos = 0, threads = 2, list = 20;
    for (int i = 2; i < argc; i++) {
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(data_help, stdout);
            return 0;
        } else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) format = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--list") == 0 && i + 1 < argc) list = atoi(argv[++i]);
        else if (argv[i][0] == '-') {
            vn_cli_error("data", "unknown option %s (see vanilla data --help)", argv[i]);
            return VN_EXIT_USAGE;
        } else if (n_pos < 2) pos[n_pos++] = argv[i];
        else {
            vn_cli_error("data", "too many arguments");
            return VN_EXIT_USAGE;
        }
    }
    vn_error err = {0};
    if (strcmp(sub, "import") == 0 && strcmp(format, "fashion-mnist-detect") == 0)
        return import_detect(n_pos, pos, threads);
    if (strcmp(sub, "import") == 0) {
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
    if (strcmp(sub, "check") == 0) {
        if (!pos[0]) {
            fputs(data_help, stderr);
            return VN_EXIT_USAGE;
        }
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
    vn_cli_error("data", "unknown subcommand %s (import or check)", sub);
    return VN_EXIT_USAGE;
}
