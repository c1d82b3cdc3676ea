/* Detector runs in reports (model.task: detect): the best evaluation by Ultralytics' fitness
 * (0.1 mAP50 + 0.9 mAP50-95) and the last one read back from metrics.jsonl, the cards, the
 * per-class AP table and the charts of the page showing exactly those figures, a classifier and
 * a detector in one report each labelled and charted with its own kind, a detector ablation's
 * results.csv read back, the detector PNG charts, and a classifier page without any of it. */
#include "vn_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/vn_run_report.h"

static char *page_of(const vn_run_set *set)
{
    char *page = NULL;
    size_t len;
    vn_error err = {0};
    ck_assert_msg(vn_run_report_html_string(set, NULL, &page, &len, &err) == VN_OK, "%s", err.msg);
    return page;
}

/* Four evaluations (mAP50, mAP50-95): the third has the best fitness (0.4505) but not the best
 * mAP50-95 (the second's 0.40, fitness 0.40); the fourth is the last. */
static const double ev_map50[4] = {0.6, 0.4, 0.95, 0.7}, ev_map[4] = {0.2, 0.4, 0.395, 0.38};
static const double ev_p[4] = {0.5, 0.6, 0.7, 0.81}, ev_r[4] = {0.3, 0.4, 0.5, 0.64};

/* A detector run as the trainer writes it: 10 steps per epoch with the three loss terms, an
 * evaluation per epoch with its per-class records (classes "cat" and "dog<1>"), epoch records,
 * and a config of model.task detect whose detect.data lists the two classes. */
static void make_det_run(const char *dir)
{
    mkdir(dir, 0777);
    FILE *f = fopen(vn_test_in_dir(dir, "metrics.jsonl"), "wb");
    ck_assert(f != NULL);
    for (int e = 0; e < 4; e++) {
        for (int s = e * 10 + 1; s <= e * 10 + 10; s++)
            fprintf(f, "{\"kind\":\"step\",\"epoch\":%d,\"step\":%d,\"time\":%.3f,\"loss\":%.6f,\"box_loss\":%.6f,"
                       "\"cls_loss\":%.6f,\"dfl_loss\":%.6f,\"lr\":0.01,\"act_learn\":0,\"grad_norm\":3,"
                       "\"img_per_s\":100}\n",
                    e, s, 1.7e9 + s, 8.0 / s, 2.0 / s, 3.0 / s, 1.0 / s);
        fprintf(f, "{\"kind\":\"eval\",\"epoch\":%d,\"step\":%d,\"time\":%.3f,\"val_P\":%.17g,\"val_R\":%.17g,"
                   "\"val_mAP50\":%.17g,\"val_mAP50-95\":%.17g,\"peak_rss_mb\":50}\n",
                e, e * 10 + 10, 1.7e9 + e * 10 + 10, ev_p[e], ev_r[e], ev_map50[e], ev_map[e]);
        fprintf(f, "{\"kind\":\"eval\",\"epoch\":%d,\"step\":%d,\"time\":%.3f,\"val_mAP50/cat\":%.2f,"
                   "\"val_mAP50-95/cat\":%.2f}\n", e, e * 10 + 10, 1.7e9 + e * 10 + 10, 0.72 + e * 0.01, 0.38 + e * 0.01);
        fprintf(f, "{\"kind\":\"eval\",\"epoch\":%d,\"step\":%d,\"time\":%.3f,\"val_mAP50/dog<1>\":%.2f,"
                   "\"val_mAP50-95/dog<1>\":%.2f}\n", e, e * 10 + 10, 1.7e9 + e * 10 + 10, 0.62 + e * 0.01, 0.32 + e * 0.01);
        fprintf(f, "{\"kind\":\"epoch\",\"epoch\":%d,\"step\":%d,\"time\":%.3f,\"train_loss\":1.5,\"val_P\":%.17g,"
                   "\"val_R\":%.17g,\"val_mAP50\":%.17g,\"val_mAP50-95\":%.17g,\"lr\":0.01,\"act_learn\":0,"
                   "\"epoch_seconds\":10}\n", e, e * 10 + 10, 1.7e9 + e * 10 + 10, ev_p[e], ev_r[e], ev_map50[e], ev_map[e]);
    }
    fclose(f);
    char data[1400], yaml[3000];
    snprintf(data, sizeof data, "%s", vn_test_in_dir(dir, "data.yaml"));
    vn_test_write_text(data, "path: .\ntrain: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n");
    snprintf(yaml, sizeof yaml, "model: {task: detect, name: custom, dims: [8, 16, 16, 16], strides: [2, 2, 2], "
                                "act_num: 1}\ndetect: {data: %s, imgsz: 64}\n", data);
    vn_test_write_text(vn_test_in_dir(dir, "config.yaml"), yaml);
}

/* A classifier run: steps with "loss", two evaluations of top-1. */
static void make_cls_run(const char *dir)
{
    mkdir(dir, 0777);
    FILE *f = fopen(vn_test_in_dir(dir, "metrics.jsonl"), "wb");
    ck_assert(f != NULL);
    for (int s = 1; s <= 20; s++) {
        fprintf(f, "{\"kind\":\"step\",\"epoch\":%d,\"step\":%d,\"time\":%d,\"loss\":%.4f,\"lr\":0.01}\n",
                (s - 1) / 10, s, 1000 + s, 2.0 / s);
        if (s % 10 == 0)
            fprintf(f, "{\"kind\":\"eval\",\"epoch\":%d,\"step\":%d,\"time\":%d,\"val_top1\":%.2f}\n", s / 10 - 1, s,
                    1000 + s, 60.0 + s);
    }
    fclose(f);
    vn_test_write_text(vn_test_in_dir(dir, "config.yaml"),
               "model: {name: custom, dims: [8, 16, 16], strides: [1, 2], in_chans: 1, num_classes: 4}\n"
               "data: {input_size: 16, grayscale: true, mean: [0.3], std: [0.3]}\n");
}

START_TEST(summary_picks_the_best_fitness_and_the_last_evaluation)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "repdet");
    make_det_run(vn_test_in_dir(dir, "det"));
    vn_run run;
    vn_error err = {0};
    ck_assert_int_eq(vn_run_load(vn_test_in_dir(dir, "det"), &run, &err), VN_OK);
    ck_assert(run.detector);
    ck_assert(!run.has_model); /* no classifier model is made up for it */
    ck_assert_msg(run.has_det_model, "the detector from config.yaml and detect.data");
    ck_assert_int_eq(run.det_model.nc, 2);
    vn_run_det_summary d;
    vn_run_det_summarize(&run, &d);
    ck_assert_int_eq(d.evals, 4);
    ck_assert(d.best_map == ev_map[2] && d.best_map50 == ev_map50[2] && d.best_step == 30 && d.best_epoch == 2);
    ck_assert(d.best_fitness == 0.1 * ev_map50[2] + 0.9 * ev_map[2]);
    ck_assert(d.final_map == ev_map[3] && d.final_map50 == ev_map50[3] && d.final_p == ev_p[3] &&
              d.final_r == ev_r[3] && d.final_step == 40);
    /* The size as `vanilla info` counts it: training form above the merged one. */
    vn_run_det_size sz;
    ck_assert_int_eq(vn_run_det_size_of(&run.det_model, 64, &sz, &err), VN_OK);
    ck_assert(sz.params > 0 && sz.macs > 0 && sz.deploy_params > 0 && sz.deploy_params < sz.params &&
              sz.deploy_macs < sz.macs);
    vn_run_free(&run);
    /* No evaluation yet: no figures. */
    memset(&run, 0, sizeof run);
    const char *steps = "{\"kind\":\"step\",\"epoch\":0,\"step\":1,\"time\":1,\"loss\":3,\"box_loss\":1}\n";
    ck_assert_int_eq(vn_run_parse_jsonl(&run, steps, strlen(steps), &err), VN_OK);
    vn_run_det_summarize(&run, &d);
    ck_assert(d.evals == 0 && isnan(d.best_map) && isnan(d.final_map));
    vn_run_free(&run);
    vn_test_rmtree(dir);
}
END_TEST

START_TEST(page_shows_the_detector_figures)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "repdet");
    make_det_run(vn_test_in_dir(dir, "det"));
    vn_run_set set;
    vn_run_set_init(&set);
    vn_error err = {0};
    ck_assert_int_eq(vn_run_load_path(&set, vn_test_in_dir(dir, "det"), &err), VN_OK);
    char *page = page_of(&set);
    /* Cards: best by fitness (0.3950, not the higher 0.4000 of epoch 2), its mAP50, the last. */
    ck_assert_ptr_nonnull(strstr(page, "<div class=\"k\">Best mAP50-95</div><div class=\"v\">0.3950</div>"));
    ck_assert_ptr_nonnull(strstr(page, "(0.1 mAP50 + 0.9 mAP50-95) 0.4505, epoch 2"));
    ck_assert_ptr_nonnull(strstr(page, "<div class=\"k\">Best mAP50</div><div class=\"v\">0.9500</div>"));
    ck_assert_ptr_nonnull(strstr(page, "<div class=\"k\">Final mAP50-95</div><div class=\"v\">0.3800</div>"));
    ck_assert_ptr_nonnull(strstr(page, "<div class=\"k\">Final mAP50</div><div class=\"v\">0.7000</div>"));
    ck_assert_ptr_nonnull(strstr(page, "<div class=\"k\">Final precision</div><div class=\"v\">0.8100</div>"));
    ck_assert_ptr_nonnull(strstr(page, "<div class=\"k\">Final recall</div><div class=\"v\">0.6400</div>"));
    ck_assert_ptr_null(strstr(page, "<div class=\"k\">Best top-1"));
    ck_assert_ptr_null(strstr(page, "best top-1 so far"));
    ck_assert_ptr_null(strstr(page, "Parameters</div><div class=\"v\">n/a"));
    /* Per-class AP of the last evaluation, names escaped. */
    ck_assert_ptr_nonnull(strstr(page, "Per class, last evaluation (epoch 3)"));
    ck_assert_ptr_nonnull(strstr(page, "<tr><td>cat</td><td>0.7500</td><td>0.4100</td></tr>"));
    ck_assert_ptr_nonnull(strstr(page, "<tr><td>dog&lt;1&gt;</td><td>0.6500</td><td>0.3500</td></tr>"));
    /* The evaluations table marks the best-fitness row. */
    ck_assert_ptr_nonnull(strstr(page, "<tr class=\"best\"><td>2</td><td>30</td><td>0.7000</td><td>0.5000</td>"
                                       "<td>0.9500</td><td>0.3950</td><td>0.4505</td></tr>"));
    /* Charts: three loss terms (raw and smoothed), P, R, mAP50, mAP50-95 with the best marked. */
    for (const char *t = "Box loss (CIoU)\0Class loss (BCE)\0DFL loss\0Precision\0Recall\0mAP50\0mAP50-95\0"; *t;
         t += strlen(t) + 1) {
        char h[80];
        snprintf(h, sizeof h, "<h3>%s</h3>", t);
        ck_assert_msg(strstr(page, h), "no chart %s", t);
    }
    ck_assert_int_eq(vn_test_count(page, "<path class=\"det\""), 4);
    ck_assert_ptr_nonnull(strstr(page, "best 0.3950"));
    ck_assert_ptr_nonnull(strstr(page, "YOLO11-VanillaNet detector, backbone custom"));
    free(page);
    vn_run_set_free(&set);
    vn_test_rmtree(dir);
}
END_TEST

START_TEST(mixed_runs_are_labelled_and_charted_by_kind)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "repdet");
    make_cls_run(vn_test_in_dir(dir, "cls"));
    make_det_run(vn_test_in_dir(dir, "det"));
    vn_run_set set;
    vn_run_set_init(&set);
    vn_error err = {0};
    ck_assert_int_eq(vn_run_load_path(&set, vn_test_in_dir(dir, "cls"), &err), VN_OK);
    ck_assert_int_eq(vn_run_load_path(&set, vn_test_in_dir(dir, "det"), &err), VN_OK);
    ck_assert(!set.runs[0].detector && set.runs[1].detector);
    char *page = page_of(&set);
    ck_assert_ptr_nonnull(strstr(page, "<td class=\"l\">classify (top-1)</td><td>80.00%</td><td>80.00%</td>"));
    ck_assert_ptr_nonnull(strstr(page, "<td class=\"l\">detect (mAP50-95)</td><td>0.3950</td><td>0.3800</td>"
                                       "<td>0.9500</td>"));
    ck_assert_ptr_nonnull(strstr(page, "<h2>Loss and accuracy</h2>"));
    ck_assert_ptr_nonnull(strstr(page, "<h2>Detection: losses and metrics</h2>"));
    /* Top-1 only for the classifier, detection metrics only for the detector. */
    ck_assert_int_eq(vn_test_count(page, "<path class=\"top1\""), 1);
    ck_assert_int_eq(vn_test_count(page, "<path class=\"det\""), 4);
    free(page);
    /* PNG charts: the detector's files besides the classifier's. */
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s/r-", dir);
    ck_assert_int_eq(vn_run_report_png(&set, prefix, NULL, &err), VN_OK);
    struct stat st;
    for (const char *f = "top1\0box_loss\0cls_loss\0dfl_loss\0precision\0recall\0mAP50\0mAP50-95\0"; *f; f += strlen(f) + 1) {
        char p[4300];
        snprintf(p, sizeof p, "%s%s.png", prefix, f);
        ck_assert_msg(stat(p, &st) == 0 && st.st_size > 1000, "no %s", p);
    }
    vn_run_set_free(&set);
    /* A classifier alone: none of the detector's pieces, on the page or as files. */
    vn_run_set_init(&set);
    ck_assert_int_eq(vn_run_load_path(&set, vn_test_in_dir(dir, "cls"), &err), VN_OK);
    page = page_of(&set);
    ck_assert_ptr_null(strstr(page, "Detection: losses"));
    ck_assert_ptr_null(strstr(page, "<div class=\"k\">Best mAP"));
    ck_assert_ptr_null(strstr(page, "task</th>"));
    free(page);
    snprintf(prefix, sizeof prefix, "%s/c-", dir);
    ck_assert_int_eq(vn_run_report_png(&set, prefix, NULL, &err), VN_OK);
    char p[4300];
    snprintf(p, sizeof p, "%sbox_loss.png", prefix);
    ck_assert(stat(p, &st) != 0);
    vn_run_set_free(&set);
    vn_test_rmtree(dir);
}
END_TEST

START_TEST(detector_ablation_results_read_back)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "repdet");
    char abl[4200];
    snprintf(abl, sizeof abl, "%s/act", dir);
    mkdir(abl, 0777);
    make_det_run(vn_test_in_dir(abl, "act_num=1"));
    make_det_run(vn_test_in_dir(abl, "act_num=2"));
    vn_test_write_text(vn_test_in_dir(abl, "results.csv"), VN_RUN_DET_CSV_HEADER "\n"
                                           "act_num=1,0.395000,0.950000,0.380000,0.700000,1465014,16921152,2.1\n"
                                           "act_num=2,0.412500,0.901000,,,1465910,16975424,2.2\n");
    vn_run_set set;
    vn_run_set_init(&set);
    vn_error err = {0};
    ck_assert_int_eq(vn_run_load_path(&set, abl, &err), VN_OK);
    ck_assert_int_eq(set.n_ablations, 1);
    const vn_run_ablation *a = &set.ablations[0];
    ck_assert_int_eq(a->n_rows, 2);
    ck_assert(a->rows[0].detect && a->rows[0].best_map == 0.395 && a->rows[0].best_map50 == 0.95 &&
              a->rows[0].final_map == 0.38 && a->rows[0].final_map50 == 0.7);
    ck_assert(a->rows[0].params == 1465014 && a->rows[0].macs == 16921152 && a->rows[0].seconds == 2.1);
    ck_assert(a->rows[1].final_map < 0 && a->rows[1].best_map == 0.4125); /* empty: none */
    char *page = page_of(&set);
    ck_assert_ptr_nonnull(strstr(page, "Best mAP50-95 per run"));
    ck_assert_ptr_nonnull(strstr(page, "<tr class=\"best\"><td>act_num=2</td><td>0.4125</td><td>0.9010</td>"
                                       "<td>&ndash;</td><td>&ndash;</td>"));
    ck_assert_ptr_null(strstr(page, "best top-1"));
    free(page);
    vn_run_set_free(&set);
    /* result.json of a detector run round-trips; a classifier's has no detector keys. */
    vn_run_result r = {.best_top1 = -1, .final_top1 = -1, .seconds = 3, .params = 10, .macs = 20, .detect = true,
                       .best_map = 0.25, .best_map50 = 0.5, .final_map = 0.125, .final_map50 = 0.375};
    ck_assert_int_eq(vn_run_result_write(dir, &r, &err), VN_OK);
    vn_run_result back = {0};
    ck_assert(vn_run_result_read(dir, &back));
    ck_assert(back.detect && back.best_map == 0.25 && back.best_map50 == 0.5 && back.final_map == 0.125 &&
              back.final_map50 == 0.375 && back.macs == 20);
    r.detect = false;
    ck_assert_int_eq(vn_run_result_write(dir, &r, &err), VN_OK);
    memset(&back, 0, sizeof back);
    ck_assert(vn_run_result_read(dir, &back) && !back.detect);
    vn_test_rmtree(dir);
}
END_TEST

static Suite *report_detect_suite(void)
{
    Suite *s = suite_create("report_detect");
    TCase *tc = tcase_create("report_detect");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, summary_picks_the_best_fitness_and_the_last_evaluation);
    tcase_add_test(tc, page_shows_the_detector_figures);
    tcase_add_test(tc, mixed_runs_are_labelled_and_charted_by_kind);
    tcase_add_test(tc, detector_ablation_results_read_back);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return vn_test_run(report_detect_suite(), true); }
