/* Run reports under allocation failure: every injected failure while reading a run folder
 * and writing its page and a PNG chart ends in a clean error or a page written without the
 * failed part (no crash, no leak under ASan); after disarming, the same calls succeed. No
 * ck_* call runs while the hook is armed (Check's own allocations are counted too). */
#include "vn_failalloc.h"
#include "vn_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/vn_report_chart.h"
#include "train/vn_run_report.h"

static void make_run(const char *dir)
{
    char path[4200];
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    for (int s = 1; s <= 40; s++) {
        fprintf(f, "{\"kind\":\"step\",\"epoch\":%d,\"step\":%d,\"time\":%d,\"loss\":%g,\"lr\":0.001,"
                   "\"act_learn\":0.5,\"grad_norm\":1,\"img_per_s\":100,\"data_wait_s\":0.1,\"wd\":0.05}\n",
                (s - 1) / 20, s, 1000 + s, 2.0 / s);
        if (s % 20 == 0)
            fprintf(f, "{\"kind\":\"eval\",\"epoch\":%d,\"step\":%d,\"time\":%d,\"val_top1\":%d,\"val_top5\":99,"
                       "\"val_loss\":0.5,\"ema0_top1\":%d,\"ema0_loss\":0.4,\"peak_rss_mb\":50}\n"
                       "{\"kind\":\"epoch\",\"epoch\":%d,\"step\":%d,\"time\":%d,\"train_loss\":1,\"lr\":0.001,"
                       "\"epoch_seconds\":9,\"peak_rss_mb\":51}\n",
                    s / 20 - 1, s, 1000 + s, 60 + s, 61 + s, s / 20 - 1, s, 1000 + s);
    }
    fputs("{\"kind\":\"step\",\"ep", f); /* in progress */
    fclose(f);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    f = fopen(path, "wb");
    ck_assert(f != NULL);
    fputs("model: {name: custom, dims: [8, 16], strides: [2], in_chans: 1, num_classes: 4}\n"
          "data: {input_size: 16, grayscale: true, mean: [0.3], std: [0.3]}\nema: {decays: [0.9]}\n", f);
    fclose(f);
}

/* Reads the run and writes the page and one chart; returns VN_OK or the first error. */
static int report_once(const char *run_dir, const char *png, size_t *page_len, vn_error *err)
{
    vn_run_set set;
    vn_run_set_init(&set);
    *page_len = 0;
    int rc = vn_run_load_path(&set, run_dir, err);
    char *page = NULL;
    if (rc == VN_OK) rc = vn_run_report_html_string(&set, NULL, &page, page_len, err);
    free(page);
    if (rc == VN_OK) {
        vn_chart c;
        memset(&c, 0, sizeof c);
        const vn_run_series *loss = set.n_runs ? vn_run_find(&set.runs[0], VN_RUN_STEP, "loss") : NULL;
        if (loss) vn_chart_add(&c, loss->step, loss->value, loss->n, "loss", 0x2563eb);
        rc = vn_chart_png(&c, 300, 150, png, err);
    }
    vn_run_set_free(&set);
    return rc;
}

/* Every allocation of one report of the run make() writes under <tmp>/<name>, failed in
 * turn: each attempt fails cleanly with VN_ERR_NOMEM and a message, or succeeds with a page. */
static void sweep(void (*make)(const char *dir), const char *name, const char *label)
{
    char dir[4096], run_dir[4200], png[4200];
    vn_test_mkdtemp(dir, sizeof dir, "report_fa");
    snprintf(run_dir, sizeof run_dir, "%s/%s", dir, name);
    snprintf(png, sizeof png, "%s/c.png", dir);
    make(run_dir);
    size_t full_len = 0;
    vn_error err = {0};
    ck_assert_msg(report_once(run_dir, png, &full_len, &err) == VN_OK, "%s", err.msg);
    long n = 1, failed = 0;
    for (;; n++) {
        size_t len = 0;
        vn_error e = {0};
        vn_failalloc_arm(n, false);
        int rc = report_once(run_dir, png, &len, &e);
        bool fired = vn_failalloc_disarm();
        if (!fired) {
            ck_assert_int_eq(rc, VN_OK);
            break;
        }
        if (rc != VN_OK) {
            failed++;
            ck_assert_msg(rc == VN_ERR_NOMEM && e.msg[0], "allocation %ld: rc %d, \"%s\"", n, rc, e.msg);
        } else {
            ck_assert_msg(len > 0, "allocation %ld: success without a page", n);
        }
    }
    printf("%s: %ld allocations swept, %ld ended in an out-of-memory error\n", label, n - 1, failed);
    ck_assert_int_gt(n, 50);
    ck_assert_int_gt(failed, 0);
    vn_test_rmtree(dir);
}

START_TEST(test_sweep_report) { sweep(make_run, "run", "report"); }
END_TEST

/* A detector run (model.task: detect): losses, evaluations with per-class records, a config
 * whose detect.data gives the class count, so the detector is built for its size. */
static void make_det_run(const char *dir)
{
    char path[4200], data[4200];
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    for (int s = 1; s <= 20; s++) {
        fprintf(f, "{\"kind\":\"step\",\"epoch\":%d,\"step\":%d,\"time\":%d,\"loss\":%g,\"box_loss\":1,"
                   "\"cls_loss\":2,\"dfl_loss\":3,\"lr\":0.001}\n", (s - 1) / 10, s, 1000 + s, 2.0 / s);
        if (s % 10 == 0)
            fprintf(f, "{\"kind\":\"eval\",\"epoch\":%d,\"step\":%d,\"time\":%d,\"val_P\":0.5,\"val_R\":0.4,"
                       "\"val_mAP50\":0.3,\"val_mAP50-95\":0.%d}\n{\"kind\":\"eval\",\"epoch\":%d,\"step\":%d,"
                       "\"time\":%d,\"val_mAP50/a\":0.3,\"val_mAP50-95/a\":0.2}\n",
                    s / 10 - 1, s, 1000 + s, s / 10, s / 10 - 1, s, 1000 + s);
    }
    fclose(f);
    snprintf(data, sizeof data, "%s/data.yaml", dir);
    f = fopen(data, "wb");
    ck_assert(f != NULL);
    fputs("path: .\ntrain: t\nval: v\nnames: [a, b]\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    f = fopen(path, "wb");
    ck_assert(f != NULL);
    fprintf(f, "model: {task: detect, name: custom, dims: [8, 16, 16, 16], strides: [2, 2, 2], act_num: 1}\n"
               "detect: {data: %s, imgsz: 32, width_multiple: 0.125, depth_multiple: 0.34}\n", data);
    fclose(f);
}

/* The same sweep over a detector run's page (its cards, charts, per-class table and the
 * detector built for its size and layers). */
START_TEST(test_sweep_detector_report) { sweep(make_det_run, "det", "detector report"); }
END_TEST

int main(void)
{
    Suite *s = suite_create("report_failalloc");
    TCase *tc = tcase_create("sweep");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_sweep_report);
    tcase_add_test(tc, test_sweep_detector_report);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
