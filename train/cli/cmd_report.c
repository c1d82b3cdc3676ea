/* vanilla report: one self-contained HTML page (and optionally PNG charts) of runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/vn_fs.h"
#include "train/cli/vn_cli.h"
#include "train/vn_run_report.h"

static const char report_help[] =
    "usage: vanilla report RUN_DIR [RUN_DIR...] [-o REPORT.html] [--title TEXT] [--png]\n"
    "\n"
    "Writes one HTML file with no external resources (inline SVG and CSS, no scripts) that\n"
    "shows runs of `vanilla train`: training loss per step (raw and smoothed), learning rate,\n"
    "act_learn, weight decay and gradient norm per step; top-1/top-5/loss of the model and its\n"
    "EMA copies per evaluation with the best marked; throughput, data-wait share and peak\n"
    "memory per epoch; the effective config with the keys that differ from the defaults\n"
    "highlighted, the model's layers, parameters and MACs, and the checkpoints.\n"
    "\n"
    "A detector run (model.task: detect) shows instead what Ultralytics' results.png shows:\n"
    "best mAP50-95 and mAP50 (the evaluation with the best fitness 0.1 mAP50 + 0.9 mAP50-95),\n"
    "the last P, R, mAP50 and mAP50-95, box/cls/dfl losses per step, P/R/mAP per epoch, the\n"
    "per-class AP of the last evaluation and the detector's layers; runs of both kinds in one\n"
    "report are labelled by task.\n"
    "\n"
    "Several RUN_DIRs are overlaid with a legend and a comparison table. An ablation folder\n"
    "(`vanilla ablate`'s <output.dir>/<name>) gives its results table, a bar chart of the best\n"
    "top-1 per run and its runs overlaid. Runs still in progress are read up to their last\n"
    "complete record. What cannot be read is listed on the page, which is written anyway.\n"
    "\n"
    "  -o, --output FILE   the page (default report.html)\n"
    "  --title TEXT        the page's title\n"
    "  --png               also write the main charts as PNG files next to the page:\n"
    "                      <FILE without .html>-loss.png, -top1.png, -lr.png, -act_learn.png,\n"
    "                      -throughput.png; for detectors -box_loss, -cls_loss, -dfl_loss,\n"
    "                      -precision, -recall, -mAP50, -mAP50-95.png (those with data)\n"
    "\n"
    "exit status 0 when at least one run was read, 1 when none was (the page says why).\n";

/* Whether the page may be written: some run was read (an empty page would replace a good
 * one) and out is no file the report reads (a run's metrics, epochs or config). */
static bool page_may_be_written(const vn_run_set *set, const char *const *dirs, int n_dirs,
                                const char *out)
{
    if (set->n_runs == 0) {
        vn_cli_error("report", "no run could be read from the folders given; no page written");
        return false;
    }
    static const char *const inputs[] = {"metrics.jsonl", "epochs.csv", "config.yaml"};
    for (int i = 0; i < n_dirs; i++)
        for (int k = 0; k < 3; k++) {
            char in[4200];
            snprintf(in, sizeof in, "%s/%s", dirs[i], inputs[k]);
            if (vn_cli_same_file(out, in)) {
                vn_cli_error("report", "the output %s is %s, which the report reads: choose another "
                             "path for the page", out, in);
                return false;
            }
        }
    return true;
}

int vn_cmd_report(int argc, char **argv)
{
    const char *out = "report.html", *title = NULL;
    bool png = false;
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    int n_dirs = 0;
    if (!dirs) return VN_EXIT_ERROR;
    for (int i = 1; i < argc; i++) {
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(report_help, stdout);
            free(dirs);
            return VN_EXIT_OK;
        } else if (vn_cli_is(argv[i], "-o", "--output") && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--title") == 0 && i + 1 < argc) title = argv[++i];
        else if (strcmp(argv[i], "--png") == 0) png = true;
        else if (argv[i][0] == '-') {
            vn_cli_error("report", "unknown option %s (see vanilla report --help)", argv[i]);
            free(dirs);
            return VN_EXIT_USAGE;
        } else dirs[n_dirs++] = argv[i];
    }
    if (n_dirs == 0) {
        fputs(report_help, stderr);
        free(dirs);
        return VN_EXIT_USAGE;
    }
    vn_run_set set;
    vn_run_set_init(&set);
    vn_error err = {0};
    int ec = VN_EXIT_OK;
    for (int i = 0; i < n_dirs && !ec; i++)
        if (vn_run_load_path(&set, dirs[i], &err) == VN_ERR_NOMEM) {
            vn_cli_error("report", "%s", err.msg);
            ec = VN_EXIT_ERROR;
        }
    for (int i = 0; !ec && i < set.n_notes; i++) vn_cli_error("report", "%s", set.notes[i]);
    for (int r = 0; !ec && r < set.n_runs; r++)
        for (int i = 0; i < set.runs[r].n_notes; i++)
            fprintf(stderr, "vanilla report: note: %s: %s\n", set.runs[r].dir, set.runs[r].notes[i]);
    if (!ec && !page_may_be_written(&set, dirs, n_dirs, out)) ec = VN_EXIT_ERROR;
    vn_run_report_opts opts = {title};
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) *slash = 0; /* -o DIR/x.html: DIR is made */
    if (!ec && slash && slash != parent && vn_mkdirs(parent, &err) != VN_OK) {
        vn_cli_error("report", "%s", err.msg);
        ec = VN_EXIT_ERROR;
    }
    if (!ec && vn_run_report_html(&set, out, &opts, &err) != VN_OK) {
        vn_cli_error("report", "%s", err.msg);
        ec = VN_EXIT_ERROR;
    }
    if (!ec) {
        struct stat st;
        long long kb = stat(out, &st) == 0 ? (long long)(st.st_size + 1023) / 1024 : 0;
        printf("report: %s (%d run%s, %lld KiB)\n", out, set.n_runs, set.n_runs == 1 ? "" : "s", kb);
    }
    if (!ec && png) {
        char prefix[4096];
        size_t l = strlen(out);
        size_t stem = l > 5 && !strcmp(out + l - 5, ".html") ? l - 5 : l;
        snprintf(prefix, sizeof prefix, "%.*s-", (int)stem, out);
        if (vn_run_report_png(&set, prefix, stdout, &err) != VN_OK) {
            vn_cli_error("report", "%s", err.msg);
            ec = VN_EXIT_ERROR;
        }
    }
    if (!ec && set.n_runs == 0) ec = VN_EXIT_ERROR;
    vn_run_set_free(&set);
    free(dirs);
    return ec;
}
