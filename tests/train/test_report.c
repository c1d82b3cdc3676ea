/* Run reports: metrics.jsonl parsing (partial and broken lines), M4 decimation, ticks, the
 * SVG coordinate mapping read back from a written page (the loss curve starts and ends at
 * the first and last logged losses), broken and missing folders, ablation folders, the size
 * of a 100,000-step report, PNG charts. */
#include "vn_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/vn_fs.h"
#include "data/vn_image.h"
#include "train/vn_metrics.h"
#include "train/vn_report_chart.h"
#include "train/vn_run_report.h"

/* ------------------------------------------------------------------------- helpers */

/* A run folder with `steps` step records whose loss is 2 / (1 + 0.01 step) (plus a wiggle),
 * an evaluation and an epoch record every `per_epoch` steps, and a minimal config. */
static void make_run(const char *dir, int64_t steps, int64_t per_epoch, bool config)
{
    mkdir(dir, 0777);
    FILE *f = fopen(vn_test_in_dir(dir, "metrics.jsonl"), "wb");
    ck_assert(f != NULL);
    for (int64_t s = 1; s <= steps; s++) {
        int64_t e = (s - 1) / per_epoch;
        double loss = 2.0 / (1.0 + 0.01 * (double)s) + 0.05 * sin((double)s);
        fprintf(f, "{\"kind\":\"step\",\"epoch\":%lld,\"step\":%lld,\"time\":%.3f,\"loss\":%.9g,"
                   "\"lr\":%.9g,\"act_learn\":%.6g,\"grad_norm\":1.5,\"img_per_s\":1000,"
                   "\"data_wait_s\":%.4f,\"wd\":0.05}\n",
                (long long)e, (long long)s, 1.7e9 + 0.1 * (double)s, loss, 0.001 * (1 - (double)s / (double)steps),
                fmin(1.0, (double)s / (double)steps * 2), 0.001 * (double)(s - e * per_epoch));
        if (s % per_epoch == 0) {
            fprintf(f, "{\"kind\":\"eval\",\"epoch\":%lld,\"step\":%lld,\"time\":%.3f,\"val_top1\":%.4f,"
                       "\"val_top5\":%.4f,\"val_loss\":%.4f,\"act_learn\":1,\"peak_rss_mb\":%d}\n",
                    (long long)e, (long long)s, 1.7e9 + 0.1 * (double)s, 50.0 + (double)e, 90.0 + 0.1 * (double)e,
                    1.0 / (double)(e + 1), 300 + (int)e);
            fprintf(f, "{\"kind\":\"epoch\",\"epoch\":%lld,\"step\":%lld,\"time\":%.3f,\"train_loss\":%.4f,"
                       "\"val_top1\":null,\"lr\":0.001,\"epoch_seconds\":12.5,\"peak_rss_mb\":%d}\n",
                    (long long)e, (long long)s, 1.7e9 + 0.1 * (double)s, loss, 310 + (int)e);
        }
    }
    fclose(f);
    if (config)
        vn_test_write_text(vn_test_in_dir(dir, "config.yaml"),
                   "model: {name: custom, dims: [8, 16, 16], strides: [1, 2], in_chans: 1, num_classes: 4}\n"
                   "data: {input_size: 16, grayscale: true, mean: [0.3], std: [0.3]}\n"
                   "optim: {lr: 0.001}\n");
}

static char *page_of(const vn_run_set *set, size_t *len)
{
    char *page = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_run_report_html_string(set, NULL, &page, len, &err) == VN_OK, "%s", err.msg);
    return page;
}

/* ------------------------------------------------------------------------- parsing */

START_TEST(jsonl_records_partial_and_bad_lines)
{
    vn_run run;
    memset(&run, 0, sizeof run);
    const char *text =
        "{\"kind\":\"step\",\"epoch\":0,\"step\":1,\"time\":10.5,\"loss\":2.5,\"lr\":null}\n"
        "\n"
        "{\"kind\":\"step\",\"epoch\":0,\"step\":2,\"time\":11,\"loss\":2.25,\"lr\":0.001}\n"
        "this is not json\n"
        "{\"kind\":\"eval\",\"epoch\":0,\"step\":2,\"time\":12,\"val_top1\":61.5}\n"
        "{\"kind\":\"step\",\"epoch\":0,\"step\":3,\"ti";
    vn_error err = {0};
    ck_assert_int_eq(vn_run_parse_jsonl(&run, text, strlen(text), &err), VN_OK);
    ck_assert_int_eq(run.records, 3);
    ck_assert_int_eq(run.bad_lines, 1);
    ck_assert(run.partial_last_line);
    const vn_run_series *loss = vn_run_find(&run, VN_RUN_STEP, "loss");
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(loss->n, 2);
    ck_assert(loss->value[0] == 2.5 && loss->value[1] == 2.25);
    ck_assert(loss->step[1] == 2 && loss->time[0] == 10.5);
    const vn_run_series *lr = vn_run_find(&run, VN_RUN_STEP, "lr");
    ck_assert(isnan(lr->value[0]) && lr->value[1] == 0.001);
    const vn_run_series *top1 = vn_run_find(&run, VN_RUN_EVAL, "val_top1");
    ck_assert(top1 && top1->n == 1 && top1->value[0] == 61.5);
    ck_assert_ptr_null(vn_run_find(&run, VN_RUN_EPOCH, "val_top1"));
    vn_run_free(&run);
}
END_TEST

/* ---------------------------------------------------------------------- decimation */

/* Text on the page is escaped and valid UTF-8 whatever the bytes of a folder name. */
START_TEST(escaped_text_is_valid_utf8)
{
    static const struct { const char *in, *out; } cases[] = {
        {"a<b>&\"'", "a&lt;b&gt;&amp;&quot;&#39;"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"bad\xffname", "bad\xef\xbf\xbdname"},           /* a byte that is never UTF-8 */
        {"\xc3", "\xef\xbf\xbd"},                          /* cut short */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},            /* overlong '/' */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
        {"\x80<", "\xef\xbf\xbd&lt;"},                     /* a stray continuation byte */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vn_text t = {0};
        vn_text_escaped(&t, cases[i].in);
        ck_assert_msg(t.s && strcmp(t.s, cases[i].out) == 0, "case %zu: got '%s'", i, t.s ? t.s : "(null)");
        vn_text_free(&t);
    }
}
END_TEST

START_TEST(m4_keeps_ends_extremes_and_bounds)
{
    const int64_t n = 100000;
    const int columns = 500;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    int64_t *keep = malloc((4 * columns + 2) * sizeof *keep);
    int64_t lo = 0, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = (double)i;
        y[i] = sin(0.001 * (double)i) + 0.3 * sin(1.7 * (double)i);
        if (i == 77777) y[i] = 5; /* a spike must survive */
        if (y[i] < y[lo]) lo = i;
        if (y[i] > y[hi]) hi = i;
    }
    int64_t m = vn_decimate_m4(x, y, n, 0, (double)(n - 1), columns, keep);
    ck_assert_int_le(m, 4 * columns);
    ck_assert_int_ge(m, columns);
    ck_assert_int_eq(keep[0], 0);
    ck_assert_int_eq(keep[m - 1], n - 1);
    bool has_lo = false, has_hi = false;
    for (int64_t k = 0; k < m; k++) {
        if (k) ck_assert_int_gt(keep[k], keep[k - 1]);
        has_lo = has_lo || keep[k] == lo;
        has_hi = has_hi || keep[k] == hi;
    }
    ck_assert(has_lo && has_hi && hi == 77777);
    /* Every column's min and max is kept: the kept points' range per column equals the data's. */
    for (int c = 0; c < columns; c += 37) {
        double dmin = INFINITY, dmax = -INFINITY, kmin = INFINITY, kmax = -INFINITY;
        for (int64_t i = 0; i < n; i++)
            if ((long)floor(x[i] / (double)(n - 1) * columns) == c) dmin = fmin(dmin, y[i]), dmax = fmax(dmax, y[i]);
        for (int64_t k = 0; k < m; k++)
            if ((long)floor(x[keep[k]] / (double)(n - 1) * columns) == c)
                kmin = fmin(kmin, y[keep[k]]), kmax = fmax(kmax, y[keep[k]]);
        ck_assert(dmin == kmin && dmax == kmax);
    }
    /* Non-finite values are skipped; fewer points than columns are all kept. */
    double xs[5] = {0, 1, 2, 3, 4}, ys[5] = {1, NAN, 3, INFINITY, 5};
    m = vn_decimate_m4(xs, ys, 5, 0, 4, 100, keep);
    ck_assert_int_eq(m, 3);
    ck_assert(keep[0] == 0 && keep[1] == 2 && keep[2] == 4);
    free(x);
    free(y);
    free(keep);
}
END_TEST

START_TEST(ticks_and_labels)
{
    double t[32], step;
    int n = vn_nice_ticks(0, 1, 4, t, 32, &step);
    ck_assert(step == 0.2 || step == 0.25 || step == 0.5);
    ck_assert(t[0] == 0 && fabs(t[n - 1] - 1) < 1e-12);
    n = vn_nice_ticks(1, 98765, 6, t, 32, &step);
    ck_assert(step == 20000 && n == 4 && t[0] == 20000);
    char buf[32];
    vn_tick_label(40000, 20000, buf, sizeof buf);
    ck_assert_str_eq(buf, "40k");
    vn_tick_label(0.0025, 0.0005, buf, sizeof buf);
    ck_assert_str_eq(buf, "0.0025");
    vn_tick_label(1.5, 0.5, buf, sizeof buf);
    ck_assert_str_eq(buf, "1.5");
    double sm[4];
    double y[4] = {2, 2, 2, 2};
    vn_smooth_ema(y, 4, 10, sm);
    ck_assert(fabs(sm[0] - 2) < 1e-12 && fabs(sm[3] - 2) < 1e-12); /* debiased: no ramp from 0 */
    /* No lag: a ramp smoothed forward and backward stays centred (one forward pass would put
     * the middle about span = 10 behind). */
    double ramp[101], rs[101];
    for (int i = 0; i <= 100; i++) ramp[i] = i;
    vn_smooth_ema(ramp, 101, 10, rs);
    ck_assert_msg(fabs(rs[50] - 50) < 0.5, "middle of a ramp smoothed to %g", rs[50]);
}
END_TEST

/* ----------------------------------------------------------------- SVG mapping */

/* The first "M x y" and the last "x y" of the path with class cls after `from`, and the plot
 * group's attributes before it. */
static void read_path(const char *page, const char *cls, double xy[4], double dom[4], double box[4])
{
    char needle[64];
    snprintf(needle, sizeof needle, "<path class=\"%s\"", cls);
    const char *p = strstr(page, needle);
    ck_assert_msg(p != NULL, "no path of class %s", cls);
    const char *g = NULL;
    for (const char *q = page; (q = strstr(q, "<g class=\"plot\"")) && q < p; q++) g = q;
    ck_assert(g != NULL);
    ck_assert_int_eq(sscanf(strstr(g, "data-x=\"") + 8, "%lf %lf", &dom[0], &dom[1]), 2);
    ck_assert_int_eq(sscanf(strstr(g, "data-y=\"") + 8, "%lf %lf", &dom[2], &dom[3]), 2);
    ck_assert_int_eq(sscanf(strstr(g, "data-box=\"") + 10, "%lf %lf %lf %lf", &box[0], &box[1], &box[2], &box[3]), 4);
    const char *d = strstr(p, " d=\"M") + 5;
    ck_assert_int_eq(sscanf(d, "%lf %lf", &xy[0], &xy[1]), 2);
    const char *end = strchr(d, '"');
    const char *last = end;
    int spaces = 0;
    while (last > d && spaces < 2) {
        last--;
        if (*last == ' ') spaces++;
    }
    ck_assert_int_eq(sscanf(last + 1, "%lf %lf", &xy[2], &xy[3]), 2);
}

START_TEST(loss_path_maps_to_first_and_last_loss)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "report");
    char run_dir[4200];
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    make_run(run_dir, 1234, 100, true);
    vn_run_set set;
    vn_run_set_init(&set);
    vn_error err = {0};
    ck_assert_int_eq(vn_run_load_path(&set, run_dir, &err), VN_OK);
    ck_assert_int_eq(set.n_runs, 1);
    const vn_run_series *loss = vn_run_find(&set.runs[0], VN_RUN_STEP, "loss");
    size_t len;
    char *page = page_of(&set, &len);
    double xy[4], dom[4], box[4];
    read_path(page, "raw", xy, dom, box);
    /* Pixel -> data with the plot's own mapping; the path has 0.1 px resolution. */
    double tol_y = 0.051 * (dom[3] - dom[2]) / box[3], tol_x = 0.051 * (dom[1] - dom[0]) / box[2];
    double y_first = dom[3] - (xy[1] - box[1]) / box[3] * (dom[3] - dom[2]);
    double y_last = dom[3] - (xy[3] - box[1]) / box[3] * (dom[3] - dom[2]);
    double x_first = dom[0] + (xy[0] - box[0]) / box[2] * (dom[1] - dom[0]);
    double x_last = dom[0] + (xy[2] - box[0]) / box[2] * (dom[1] - dom[0]);
    ck_assert_msg(fabs(y_first - loss->value[0]) <= tol_y, "first loss %g drawn at %g (tol %g)",
                  loss->value[0], y_first, tol_y);
    ck_assert_msg(fabs(y_last - loss->value[loss->n - 1]) <= tol_y, "last loss %g drawn at %g",
                  loss->value[loss->n - 1], y_last);
    ck_assert(fabs(x_first - 1) <= tol_x && fabs(x_last - 1234) <= tol_x);
    /* The smoothed curve starts and ends inside the range of the losses. */
    read_path(page, "smooth", xy, dom, box);
    y_first = dom[3] - (xy[1] - box[1]) / box[3] * (dom[3] - dom[2]);
    y_last = dom[3] - (xy[3] - box[1]) / box[3] * (dom[3] - dom[2]);
    ck_assert(y_first <= 2.05 + tol_y && y_first >= 1.0 && y_last >= 0.15 - tol_y && y_last <= 0.3);
    /* Summary figures and the page's parts. */
    ck_assert_ptr_nonnull(strstr(page, "61.00%")); /* best top-1: 50 + epoch 11 */
    ck_assert_ptr_nonnull(strstr(page, "<h2>Configuration</h2>"));
    ck_assert_ptr_nonnull(strstr(page, "model.dims = [8, 16, 16]"));
    ck_assert_ptr_nonnull(strstr(page, "<h2>Model</h2>"));
    ck_assert_ptr_nonnull(strstr(page, "Peak memory (MiB)"));
    ck_assert_ptr_null(strstr(page, "<script"));
    ck_assert_ptr_null(strstr(page, "src=")); /* self-contained: nothing to fetch */
    ck_assert_ptr_null(strstr(page, "href="));
    /* Deterministic: the same folder gives the same bytes (no clock on the page). */
    size_t len2;
    char *again = page_of(&set, &len2);
    ck_assert(len2 == len && memcmp(page, again, len) == 0);
    free(again);
    free(page);
    vn_run_set_free(&set);
    vn_test_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ broken inputs */

START_TEST(broken_inputs_get_notes_and_a_page)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "report");
    vn_run_set set;
    vn_run_set_init(&set);
    vn_error err = {0};
    /* Missing folder, a folder that is no run, a file. */
    ck_assert_int_eq(vn_run_load_path(&set, vn_test_in_dir(dir, "nope"), &err), VN_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "no such folder"));
    mkdir(vn_test_in_dir(dir, "empty"), 0777);
    ck_assert_int_eq(vn_run_load_path(&set, vn_test_in_dir(dir, "empty"), &err), VN_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a run folder"));
    /* A run without metrics.jsonl (config and epochs.csv only), and one cut mid-record. */
    mkdir(vn_test_in_dir(dir, "nometrics"), 0777);
    vn_test_write_text(vn_test_in_dir(vn_test_in_dir(dir, "nometrics"), "config.yaml"), "optim: {lr: 0.5\n");
    vn_test_write_text(vn_test_in_dir(vn_test_in_dir(dir, "nometrics"), "epochs.csv"),
               "epoch,step,time,train_loss,val_top1\n0,10,100.5,1.5,40\n1,20,110,1.2,\n2,30,1");
    ck_assert_int_eq(vn_run_load_path(&set, vn_test_in_dir(dir, "nometrics"), &err), VN_OK);
    make_run(vn_test_in_dir(dir, "cut"), 50, 20, false);
    FILE *f = fopen(vn_test_in_dir(vn_test_in_dir(dir, "cut"), "metrics.jsonl"), "ab");
    fputs("{\"kind\":\"step\",\"step\":51,\"loss\":0.5,\"img_per_s\":9}\n", f); /* no epoch */
    fputs("garbage line\n{\"kind\":\"step\",\"epoch\":2,\"step\":52,\"lo", f);
    fclose(f);
    ck_assert_int_eq(vn_run_load_path(&set, vn_test_in_dir(dir, "cut"), &err), VN_OK);
    ck_assert_int_eq(set.n_runs, 2);
    ck_assert_int_eq(set.n_notes, 2);
    const vn_run *nm = &set.runs[0], *cut = &set.runs[1];
    ck_assert_ptr_null(nm->cfg);
    const vn_run_series *tl = vn_run_find(nm, VN_RUN_EPOCH, "train_loss");
    ck_assert(tl && tl->n == 2 && tl->value[1] == 1.2); /* the cut row is skipped */
    ck_assert_int_eq(nm->bad_lines, 1);
    ck_assert_int_eq(cut->bad_lines, 1);
    ck_assert(cut->partial_last_line);
    ck_assert_int_eq(vn_run_find(cut, VN_RUN_STEP, "loss")->n, 51);
    size_t len;
    char *page = page_of(&set, &len);
    ck_assert_ptr_nonnull(strstr(page, "Not everything could be read"));
    ck_assert_ptr_nonnull(strstr(page, "no such folder"));
    ck_assert_ptr_nonnull(strstr(page, "no metrics.jsonl"));
    ck_assert_ptr_nonnull(strstr(page, "config.yaml"));
    ck_assert_ptr_nonnull(strstr(page, "ends in the middle of a record"));
    ck_assert_ptr_nonnull(strstr(page, "1 unreadable lines skipped"));
    ck_assert_ptr_nonnull(strstr(page, "</html>"));
    free(page);
    /* Nothing readable at all: still a page that says so. */
    vn_run_set_free(&set);
    vn_run_set_init(&set);
    vn_run_load_path(&set, vn_test_in_dir(dir, "nope"), &err);
    ck_assert_int_eq(vn_run_report_html(&set, vn_test_in_dir(dir, "r.html"), NULL, &err), VN_OK);
    struct stat st;
    ck_assert_int_eq(stat(vn_test_in_dir(dir, "r.html"), &st), 0);
    vn_run_set_free(&set);
    vn_test_rmtree(dir);
}
END_TEST

START_TEST(ablation_folder_table_bars_and_overlay)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "report");
    char abl[4200];
    snprintf(abl, sizeof abl, "%s/act_num", dir);
    mkdir(abl, 0777);
    make_run(vn_test_in_dir(abl, "act_num=0"), 200, 100, true);
    make_run(vn_test_in_dir(abl, "act_num=3"), 200, 100, true);
    vn_test_write_text(vn_test_in_dir(vn_test_in_dir(abl, "act_num=3"), "config.yaml"),
               "model: {name: custom, dims: [8, 16, 16], strides: [1, 2], in_chans: 1, num_classes: 4,"
               " act_num: 1}\ndata: {input_size: 16, grayscale: true, mean: [0.3], std: [0.3]}\n");
    vn_test_write_text(vn_test_in_dir(abl, "results.csv"), "run,best_top1,final_top1,params,macs,seconds\n"
                                           "act_num=0,81.5000,80.0000,1000,20000,12.0\n"
                                           "act_num=3,84.2500,84.0000,1200,25000,13.0\n");
    vn_test_write_text(vn_test_in_dir(abl, "results.md"), "| run |\n");
    vn_run_set set;
    vn_run_set_init(&set);
    vn_error err = {0};
    ck_assert_int_eq(vn_run_load_path(&set, abl, &err), VN_OK);
    ck_assert_int_eq(set.n_ablations, 1);
    ck_assert_int_eq(set.ablations[0].n_rows, 2);
    ck_assert_int_eq(set.n_runs, 2);
    ck_assert_str_eq(set.runs[0].name, "act_num=0");
    size_t len;
    char *page = page_of(&set, &len);
    ck_assert_ptr_nonnull(strstr(page, "Best top-1 per run"));
    ck_assert_ptr_nonnull(strstr(page, "84.25%"));
    ck_assert_ptr_nonnull(strstr(page, "<h2>Runs</h2>"));
    ck_assert_ptr_nonnull(strstr(page, "model.act_num: 3 -&gt; 1")); /* config vs the first run */
    /* Two runs overlaid: two raw loss paths. */
    ck_assert_int_eq(vn_test_count(page, "<path class=\"raw\""), 2);
    free(page);
    vn_run_set_free(&set);
    vn_test_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------- big runs, PNG */

START_TEST(hundred_thousand_steps_stay_small)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "report");
    char run_dir[4200];
    snprintf(run_dir, sizeof run_dir, "%s/big", dir);
    make_run(run_dir, 100000, 1000, true);
    vn_run_set set;
    vn_run_set_init(&set);
    vn_error err = {0};
    double t0 = vn_monotonic();
    ck_assert_int_eq(vn_run_load_path(&set, run_dir, &err), VN_OK);
    size_t len;
    char *page = page_of(&set, &len);
    double secs = vn_monotonic() - t0;
    printf("100,000 steps: page of %zu bytes written in %.2f s (read + draw)\n", len, secs);
    ck_assert_msg(len < 2u * 1024 * 1024, "report of %zu bytes", len);
    ck_assert_int_eq(vn_run_find(&set.runs[0], VN_RUN_STEP, "loss")->n, 100000);
    ck_assert_ptr_nonnull(strstr(page, "100.0k")); /* steps, from every record */
    free(page);
    /* PNG charts of the same run. */
    char prefix[4300];
    snprintf(prefix, sizeof prefix, "%s/chart-", dir);
    ck_assert_int_eq(vn_run_report_png(&set, prefix, NULL, &err), VN_OK);
    static const char *const names[] = {"loss", "top1", "lr", "act_learn", "throughput"};
    for (int i = 0; i < 5; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s%s.png", prefix, names[i]);
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "%s missing", path);
        unsigned char sig[8] = {0};
        ck_assert_int_eq(fread(sig, 1, 8, f), 8);
        fclose(f);
        ck_assert(sig[0] == 0x89 && sig[1] == 'P' && sig[2] == 'N' && sig[3] == 'G');
    }
    vn_run_set_free(&set);
    vn_test_rmtree(dir);
}
END_TEST

START_TEST(png_draws_where_the_layout_maps)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "report");
    double x[11], y[11];
    for (int i = 0; i <= 10; i++) x[i] = i, y[i] = i;
    vn_chart c;
    memset(&c, 0, sizeof c);
    c.title = "Line [a=b] & more";
    vn_chart_line *l = vn_chart_add(&c, x, y, 11, "y = x", 0xff0000);
    ck_assert_ptr_nonnull(l);
    l->width = 2;
    const char *path = vn_test_in_dir(dir, "line.png");
    vn_error err = {0};
    ck_assert_int_eq(vn_chart_png(&c, 600, 300, path, &err), VN_OK);
    vn_image img = {0};
    ck_assert_msg(vn_image_decode_file(NULL, path, 3, 0, &img, NULL, &err) == VN_OK, "%s", err.msg);
    ck_assert(img.width == 600 && img.height == 300);
    vn_plot p;
    vn_chart_layout(&c, 600, 300, 2, &p);
    for (int i = 1; i < 10; i++) { /* on the line: red */
        const uint8_t *px = img.data + ((size_t)lrint(vn_plot_py(&p, i - 0.5)) * 600 + (size_t)lrint(vn_plot_px(&p, i - 0.5))) * 3;
        ck_assert_msg(px[0] > 200 && px[1] < 110 && px[2] < 110, "(%d,%d,%d) at x=%g", px[0], px[1], px[2], i - 0.5);
    }
    /* Off the line, inside the plot: white. */
    const uint8_t *off = img.data + ((size_t)lrint(vn_plot_py(&p, 8.3)) * 600 + (size_t)lrint(vn_plot_px(&p, 2.1))) * 3;
    ck_assert(off[0] > 240 && off[1] > 240 && off[2] > 240);
    vn_image_free(&img);
    vn_test_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------- what the trainer writes */

START_TEST(metrics_process_stats_ride_with_epochs_and_evals)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "report");
    vn_error err = {0};
    for (int on = 0; on < 2; on++) {
        vn_metrics_opts o = {.no_tensorboard = true, .process_stats = on};
        vn_metrics *m = NULL;
        ck_assert_int_eq(vn_metrics_open(dir, -1, &o, &m, &err), VN_OK);
        const char *names[1] = {"loss"};
        double vals[1] = {1.5};
        ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_STEP, 0, 1, names, vals, 1, &err), VN_OK);
        ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EVAL, 0, 1, names, vals, 1, &err), VN_OK);
        const char *given[2] = {"train_loss", "peak_rss_mb"};
        double gv[2] = {1.25, 123};
        ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, 0, 1, given, gv, 2, &err), VN_OK);
        ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
        vn_run run;
        ck_assert_int_eq(vn_run_load(dir, &run, &err), VN_OK);
        const vn_run_series *ev = vn_run_find(&run, VN_RUN_EVAL, "peak_rss_mb");
        const vn_run_series *ep = vn_run_find(&run, VN_RUN_EPOCH, "peak_rss_mb");
        ck_assert_ptr_null(vn_run_find(&run, VN_RUN_STEP, "peak_rss_mb")); /* steps stay small */
        if (on) {
            /* This test process holds at least a megabyte; a name given by the caller wins. */
            ck_assert_msg(ev && ev->value[0] > 1 && ev->value[0] < 1e6, "peak_rss_mb %g", ev ? ev->value[0] : -1);
            ck_assert(ep && ep->n == 1 && ep->value[0] == 123);
        } else {
            ck_assert_ptr_null(ev);
            ck_assert(ep && ep->value[0] == 123);
        }
        vn_run_free(&run);
    }
    vn_test_rmtree(dir);
}
END_TEST

static Suite *report_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("report");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, jsonl_records_partial_and_bad_lines);
    tcase_add_test(tc, escaped_text_is_valid_utf8);
    tcase_add_test(tc, m4_keeps_ends_extremes_and_bounds);
    tcase_add_test(tc, ticks_and_labels);
    tcase_add_test(tc, loss_path_maps_to_first_and_last_loss);
    tcase_add_test(tc, broken_inputs_get_notes_and_a_page);
    tcase_add_test(tc, ablation_folder_table_bars_and_overlay);
    tcase_add_test(tc, hundred_thousand_steps_stay_small);
    tcase_add_test(tc, png_draws_where_the_layout_maps);
    tcase_add_test(tc, metrics_process_stats_ride_with_epochs_and_evals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return vn_test_run(report_suite(), true); }
