/* Figures derived from a run's records, and the charts built from them (see report_view.h). */
#include "train/report_view.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t palette[] = {0x2563eb, 0xea580c, 0x16a34a, 0xdb2777,
                                   0x7c3aed, 0x0891b2, 0xca8a04, 0x4b5563};

int64_t vn__epoch_index(double epoch)
{
    return isfinite(epoch) && epoch >= 0 && epoch < 1e7 ? (int64_t)epoch : -1;
}

uint32_t vn__run_color(int i) { return palette[i % (int)(sizeof palette / sizeof *palette)]; }

/* Largest epoch index in any record, -1 when there is none. */
static int64_t max_epoch(const vn_run *run)
{
    double m = -1;
    for (int k = 0; k < VN_RUN_KINDS; k++)
        for (int i = 0; i < run->n_series[k]; i++) {
            const vn_run_series *s = &run->series[k][i];
            for (int64_t j = 0; j < s->n; j++)
                if (isfinite(s->epoch[j]) && s->epoch[j] > m && s->epoch[j] < 1e7) m = s->epoch[j];
        }
    return (int64_t)m;
}

/* Throughput (harmonic mean of img_per_s: images over step time) and the share of step time
 * spent waiting for data, per epoch and overall. data_wait_s is cumulative within a session,
 * so the wait of a step is the increase since the previous step record of the same epoch. */
static void epoch_steps(vn__run_view *v, const vn_run_series *ips, const vn_run_series *wait)
{
    int64_t n = v->ep.n;
    double *inv = calloc((size_t)n * 4, sizeof *inv);
    if (!inv) return;
    double *cnt = inv + n, *dw = cnt + n, *dt = dw + n, all_inv = 0, all_cnt = 0, all_w = 0, all_t = 0;
    for (int64_t i = 0; ips && i < ips->n; i++) {
        int64_t e = vn__epoch_index(ips->epoch[i]);
        if (e < 0 || e >= n || !(ips->value[i] > 0)) continue;
        inv[e] += 1.0 / ips->value[i];
        cnt[e] += 1;
    }
    for (int64_t i = 1; wait && i < wait->n; i++) {
        int64_t e = vn__epoch_index(wait->epoch[i]);
        double w = wait->value[i] - wait->value[i - 1], t = wait->time[i] - wait->time[i - 1];
        if (e < 0 || e >= n || wait->epoch[i - 1] != wait->epoch[i] || !(w >= 0) || !(t > 0)) continue;
        dw[e] += w;
        dt[e] += t;
    }
    for (int64_t e = 0; e < n; e++) {
        v->ep.img_per_s[e] = cnt[e] > 0 ? cnt[e] / inv[e] : NAN;
        v->ep.wait_pct[e] = dt[e] > 0 ? fmin(100.0, 100.0 * dw[e] / dt[e]) : NAN;
        all_inv += inv[e], all_cnt += cnt[e], all_w += dw[e], all_t += dt[e];
    }
    v->img_per_s = all_cnt > 0 ? all_cnt / all_inv : NAN;
    v->wait_pct = all_t > 0 ? fmin(100.0, 100.0 * all_w / all_t) : NAN;
    free(inv);
}

static int epoch_view(vn__run_view *v)
{
    const vn_run *run = v->run;
    int64_t n = max_epoch(run) + 1;
    v->ep.n = n;
    v->peak_rss_mb = NAN;
    if (n <= 0) return VN_OK;
    double *a = malloc((size_t)n * 4 * sizeof *a);
    if (!a) return VN_ERR_NOMEM;
    v->ep.x = a, v->ep.img_per_s = a + n, v->ep.wait_pct = a + 2 * n, v->ep.rss_mb = a + 3 * n;
    for (int64_t e = 0; e < n; e++) v->ep.x[e] = (double)(e + 1), v->ep.rss_mb[e] = NAN;
    epoch_steps(v, vn_run_find(run, VN_RUN_STEP, "img_per_s"), vn_run_find(run, VN_RUN_STEP, "data_wait_s"));
    for (int k = VN_RUN_EPOCH; k <= VN_RUN_EVAL; k++) {
        const vn_run_series *s = vn_run_find(run, k, "peak_rss_mb");
        for (int64_t i = 0; s && i < s->n; i++) {
            int64_t e = vn__epoch_index(s->epoch[i]);
            if (e < 0 || e >= n || !isfinite(s->value[i])) continue;
            if (!(v->ep.rss_mb[e] >= s->value[i])) v->ep.rss_mb[e] = s->value[i];
            if (!(v->peak_rss_mb >= s->value[i])) v->peak_rss_mb = s->value[i];
        }
    }
    return VN_OK;
}

void vn__ema_name(const vn_run *run, int e, char *buf, size_t len)
{
    if (run->cfg && e < run->cfg->ema.decays.n) snprintf(buf, len, "EMA %g", run->cfg->ema.decays.v[e]);
    else snprintf(buf, len, "EMA %d", e);
}

static void summary_evals(vn__run_view *v)
{
    const vn_run *run = v->run;
    v->best_top1 = v->final_top1 = v->best_step = v->best_epoch = NAN;
    const vn_run_series *m = vn_run_find(run, VN_RUN_EVAL, "val_top1");
    if (m) v->final_top1 = m->value[m->n - 1];
    for (int e = -1; e < 16; e++) {
        char name[32];
        snprintf(name, sizeof name, "ema%d_top1", e);
        const vn_run_series *s = e < 0 ? m : vn_run_find(run, VN_RUN_EVAL, name);
        for (int64_t i = 0; s && i < s->n; i++) {
            if (!(s->value[i] > v->best_top1) && isfinite(v->best_top1)) continue;
            if (!isfinite(s->value[i])) continue;
            v->best_top1 = s->value[i];
            v->best_step = s->step[i];
            v->best_epoch = s->epoch[i];
            if (e < 0) snprintf(v->best_source, sizeof v->best_source, "model");
            else vn__ema_name(run, e, v->best_source, sizeof v->best_source);
        }
    }
}

static void summary_span(vn__run_view *v)
{
    const vn_run *run = v->run;
    double t0 = INFINITY, t1 = -INFINITY, s1 = 0;
    for (int k = 0; k < VN_RUN_KINDS; k++)
        for (int i = 0; i < run->n_series[k]; i++) {
            const vn_run_series *s = &run->series[k][i];
            if (s->n == 0) continue;
            t0 = fmin(t0, s->time[0]);
            t1 = fmax(t1, s->time[s->n - 1]);
            s1 = fmax(s1, s->step[s->n - 1]);
        }
    v->wall_seconds = t1 > t0 ? t1 - t0 : NAN;
    v->steps = s1 < 1e15 ? (int64_t)s1 : 0;
    const vn_run_series *ep = vn_run_find(run, VN_RUN_EPOCH, "train_loss");
    v->epochs = ep ? vn__epoch_index(ep->epoch[ep->n - 1]) + 1 : 0;
}

static void summary_model(vn__run_view *v)
{
    const vn_run *run = v->run;
    v->params = v->macs = v->deploy_params = v->deploy_macs = -1;
    v->input_size = run->cfg ? (int)run->cfg->data.input_size : 224;
    if (!run->has_model) return;
    vn_report r;
    if (vn_vanillanet_report(&run->model, false, v->input_size, v->input_size, &r, NULL) == VN_OK) {
        v->params = r.total_params;
        v->macs = r.total_macs;
        vn_report_free(&r);
    }
    if (run->model.shortcut == VN_SHORTCUT_NONE &&
        vn_vanillanet_report(&run->model, true, v->input_size, v->input_size, &r, NULL) == VN_OK) {
        v->deploy_params = r.total_params;
        v->deploy_macs = r.total_macs;
        vn_report_free(&r);
    }
}

int vn__run_view_init(vn__run_view *v, const vn_run *run, uint32_t color)
{
    memset(v, 0, sizeof *v);
    v->run = run;
    v->color = color;
    v->final_loss = NAN;
    const vn_run_series *loss = vn_run_find(run, VN_RUN_STEP, "loss");
    if (loss) {
        v->loss_smooth = malloc((size_t)loss->n * sizeof *v->loss_smooth);
        if (!v->loss_smooth) return VN_ERR_NOMEM;
        vn_smooth_ema(loss->value, loss->n, fmax(5.0, (double)loss->n / 40.0), v->loss_smooth);
        v->final_loss = v->loss_smooth[loss->n - 1];
    }
    int rc = epoch_view(v);
    if (rc != VN_OK) return rc;
    summary_evals(v);
    summary_span(v);
    summary_model(v);
    return v->run->detector ? vn__det_view_init(v) : VN_OK;
}

void vn__run_view_free(vn__run_view *v)
{
    free(v->loss_smooth);
    free(v->ep.x);
    vn__det_view_free(v);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------------- charts */

/* Charts against the step share one x range, from 0 to the last step of any run. */
static void step_axis(vn_chart *c, const vn__run_view *v, int n)
{
    c->x_label = "step";
    c->x_integer = true;
    c->has_x_hint = true;
    c->x_min_hint = 0;
    for (int r = 0; r < n; r++) c->x_max_hint = fmax(c->x_max_hint, (double)v[r].steps);
}

void vn__chart_loss(vn_chart *c, const vn__run_view *v, int n, bool multi)
{
    memset(c, 0, sizeof *c);
    step_axis(c, v, n);
    c->title = "Training loss";
    c->x_label = "step";
    for (int r = 0; r < n; r++) {
        const vn_run_series *s = vn_run_find(v[r].run, VN_RUN_STEP, "loss");
        if (!s) continue;
        vn_chart_line *l = vn_chart_add(c, s->step, s->value, s->n, multi ? NULL : "per step", v[r].color);
        if (l) l->width = 1, l->opacity = multi ? 0.18f : 0.3f, l->css = "raw";
        l = vn_chart_add(c, s->step, v[r].loss_smooth, s->n, multi ? v[r].run->name : "smoothed", v[r].color);
        if (l) l->width = 2, l->css = "smooth";
    }
}

void vn__chart_top1(vn_chart *c, const vn__run_view *v, int n, bool multi, char labels[][96])
{
    memset(c, 0, sizeof *c);
    step_axis(c, v, n);
    c->title = "Validation accuracy";
    c->y_unit = "%";
    int nl = 0;
    for (int r = 0; r < n; r++) {
        const vn_run *run = v[r].run;
        const vn_run_series *t1 = vn_run_find(run, VN_RUN_EVAL, "val_top1");
        const vn_run_series *t5 = vn_run_find(run, VN_RUN_EVAL, "val_top5");
        vn_chart_line *l;
        if (t1 && (l = vn_chart_add(c, t1->step, t1->value, t1->n, multi ? v[r].run->name : "top-1", v[r].color)))
            l->dots = true, l->width = 2, l->css = "top1";
        if (t5 && !multi && (l = vn_chart_add(c, t5->step, t5->value, t5->n, "top-5", v[r].color)))
            l->dashed = true, l->opacity = 0.6f, l->css = "top5";
        for (int e = 0; e < 8; e++) {
            char name[32];
            snprintf(name, sizeof name, "ema%d_top1", e);
            const vn_run_series *s = vn_run_find(run, VN_RUN_EVAL, name);
            if (!s || nl >= VN_CHART_MAX_LINES) continue;
            vn__ema_name(run, e, labels[nl], 96);
            strncat(labels[nl], " top-1", 95 - strlen(labels[nl]));
            uint32_t col = multi ? v[r].color : vn__run_color(e + 1);
            if ((l = vn_chart_add(c, s->step, s->value, s->n, multi ? NULL : labels[nl++], col)))
                l->dots = true, l->dashed = multi, l->width = 2, l->css = "ema";
        }
        if (isfinite(v[r].best_top1)) {
            snprintf(labels[VN_CHART_MAX_LINES + r % 8], 96, "best %.2f%%", v[r].best_top1);
            vn_chart_mark_point(c, v[r].best_step, v[r].best_top1,
                                multi ? NULL : labels[VN_CHART_MAX_LINES + r % 8], v[r].color);
        }
    }
}

void vn__chart_eval_loss(vn_chart *c, const vn__run_view *v, int n, bool multi, char labels[][96])
{
    memset(c, 0, sizeof *c);
    step_axis(c, v, n);
    c->title = "Validation loss";
    int nl = 0;
    for (int r = 0; r < n; r++) {
        const vn_run_series *s = vn_run_find(v[r].run, VN_RUN_EVAL, "val_loss");
        vn_chart_line *l;
        if (s && (l = vn_chart_add(c, s->step, s->value, s->n, multi ? v[r].run->name : "model", v[r].color)))
            l->dots = true, l->width = 2;
        for (int e = 0; e < 8; e++) {
            char name[32];
            snprintf(name, sizeof name, "ema%d_loss", e);
            s = vn_run_find(v[r].run, VN_RUN_EVAL, name);
            if (!s || nl >= VN_CHART_MAX_LINES) continue;
            vn__ema_name(v[r].run, e, labels[nl], 96);
            uint32_t col = multi ? v[r].color : vn__run_color(e + 1);
            if ((l = vn_chart_add(c, s->step, s->value, s->n, multi ? NULL : labels[nl++], col)))
                l->dots = true, l->dashed = multi, l->width = 2;
        }
    }
}

void vn__chart_step_series(vn_chart *c, const vn__run_view *v, int n, bool multi, const char *name)
{
    memset(c, 0, sizeof *c);
    step_axis(c, v, n);
    c->y_zero = strcmp(name, "grad_norm") != 0;
    for (int r = 0; r < n; r++) {
        const vn_run_series *s = vn_run_find(v[r].run, VN_RUN_STEP, name);
        vn_chart_line *l;
        if (s && (l = vn_chart_add(c, s->step, s->value, s->n, multi ? v[r].run->name : NULL, v[r].color)))
            l->width = !strcmp(name, "grad_norm") ? 1 : 2, l->css = name;
    }
}

void vn__chart_epoch(vn_chart *c, const vn__run_view *v, int n, bool multi, int which)
{
    static const char *const titles[] = {"Throughput (images/s)", "Data wait (% of step time)",
                                         "Peak memory (MiB)"};
    memset(c, 0, sizeof *c);
    c->title = titles[which];
    c->x_label = "epoch";
    c->x_integer = true;
    c->y_zero = true;
    c->y_unit = which == 1 ? "%" : NULL;
    c->y_min_span = which == 1 ? 1.0 : 0; /* a wait share of 0.01% is not drawn as a mountain */
    for (int r = 0; r < n; r++) {
        const vn__epoch_view *e = &v[r].ep;
        const double *y = which == 0 ? e->img_per_s : which == 1 ? e->wait_pct : e->rss_mb;
        bool any = false;
        for (int64_t i = 0; i < e->n; i++) any = any || isfinite(y[i]);
        vn_chart_line *l;
        if (any && (l = vn_chart_add(c, e->x, y, e->n, multi ? v[r].run->name : NULL, v[r].color)))
            l->dots = true, l->width = 2;
    }
}

/* ---------------------------------------------------------------------------- PNG */

int vn_run_report_png(const vn_run_set *s, const char *prefix, FILE *log, vn_error *err)
{
    int n = s->n_runs, rc = VN_OK;
    bool multi = n > 1;
    vn__run_view *v = calloc((size_t)(n ? n : 1), sizeof *v);
    if (!v) return vn_error_set(err, VN_ERR_NOMEM, "out of memory drawing charts");
    for (int i = 0; rc == VN_OK && i < n; i++) rc = vn__run_view_init(&v[i], &s->runs[i], vn__run_color(i));
    if (rc != VN_OK) rc = vn_error_set(err, rc, "out of memory drawing charts");
    char (*labels)[96] = calloc(VN_CHART_LABELS, sizeof *labels);
    if (!labels && rc == VN_OK) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory drawing charts");
    /* Classifiers and detectors together: loss.png overlays the classifiers' losses only. */
    int n_det = rc == VN_OK ? vn__det_count(v, n) : 0, n_cls = 0;
    vn__run_view *cls = n_det > 0 && n_det < n ? malloc((size_t)n * sizeof *cls) : NULL;
    if (n_det > 0 && n_det < n && !cls && rc == VN_OK) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory drawing charts");
    for (int r = 0; cls && r < n; r++)
        if (!v[r].run->detector) cls[n_cls++] = v[r];
    static const char *const names[] = {"loss", "top1", "lr", "act_learn", "throughput"};
    for (int k = 0; rc == VN_OK && k < 5; k++) {
        vn_chart c;
        if (k == 0) vn__chart_loss(&c, cls ? cls : v, cls ? n_cls : n, multi);
        else if (k == 1) vn__chart_top1(&c, v, n, multi, labels);
        else if (k == 4) vn__chart_epoch(&c, v, n, multi, 0);
        else vn__chart_step_series(&c, v, n, multi, names[k]);
        if (k == 2) c.title = "Learning rate";
        if (k == 3) c.title = "act_learn (deep training)";
        if (c.n_lines == 0) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s%s.png", prefix, names[k]);
        rc = vn_chart_png(&c, 1200, 600, path, err);
        if (rc == VN_OK && log) fprintf(log, "%s\n", path);
    }
    if (rc == VN_OK && n_det) rc = vn__det_png(v, n, multi, prefix, log, err);
    free(cls);
    for (int i = 0; i < n; i++) vn__run_view_free(&v[i]);
    free(v);
    free(labels);
    return rc;
}
