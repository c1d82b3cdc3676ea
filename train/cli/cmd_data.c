/* vanilla data import / check */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/vn_dataset.h"
#include "train/cli/vn_cli.h"

static const char data_help[] =
    "usage: vanilla data import --format fashion-mnist|mnist [SRC_DIR] OUT_DIR [--threads N]\n"
    "       vanilla data check FOLDER [--threads N] [--list N]\n"
    "\n"
    "import: converts MNIST-style IDX files (gzip or plain) into ImageNet-format PNG folders\n"
    "        OUT_DIR/train/<class>/ and OUT_DIR/val/<class>/. SRC_DIR defaults to\n"
    "        /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).\n"
    "        A finished import is not redone.\n"
    "check:  scans an image folder (or a split of one) and reports images per class,\n"
    "        unreadable files with the reason, and odd formats, without training. Exits 1\n"
    "        when a file is unreadable.\n";

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
    if (strcmp(sub, "import") == 0) {
        vn_mnist_kind kind;
        if (strcmp(format, "fashion-mnist") == 0) kind = VN_MNIST_FASHION;
        else if (strcmp(format, "mnist") == 0) kind = VN_MNIST_DIGITS;
        else {
            vn_cli_error("data", "unknown --format %s (fashion-mnist or mnist)", format);
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
