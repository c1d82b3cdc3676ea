/* Detector runs (model.task: detect) in reports: what Ultralytics' results.png and results.csv
 * show -- the box, class and DFL losses per step, precision, recall, mAP50 and mAP50-95 per
 * evaluation, the best evaluation by Ultralytics' fitness (0.1 mAP50 + 0.9 mAP50-95, the one
 * the trainer keeps as best.safetensors) -- plus the per-class AP of the last evaluation, the
 * detector's layers and its size in the training and the merged (deploy) form. The page's
 * frame, cards and panels are report_html.c's; a classifier run in the same report keeps its
 * own sections, and tables that list both say which run is which. */
#include "train/report_view.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/vn_detect.h"

#define N_DET_LOSSES 3
#define N_DET_METRICS 4

static const char *const loss_names[N_DET_LOSSES] = {"box_loss", "cls_loss", "dfl_loss"};
static const char *const loss_titles[N_DET_LOSSES] = {"Box loss (CIoU)", "Class loss (BCE)", "DFL loss"};
static const char *const metric_names[N_DET_METRICS] = {"val_P", "val_R", "val_mAP50", "val_mAP50-95"};
static const char *const metric_titles[N_DET_METRICS] = {"Precision", "Recall", "mAP50", "mAP50-95"};
static const char *const png_names[N_DET_LOSSES + N_DET_METRICS] = {
    "box_loss", "cls_loss", "dfl_loss", "precision", "recall", "mAP50", "mAP50-95"};

/* ------------------------------------------------------------------- summary, size */

/* Value i of s when it belongs to the record at `step` (the four figures of an evaluation are
 * one record, so their series run in step), else NaN. */
static double value_at(const vn_run_series *s, int64_t i, double step)
{
    return s && i < s->n && s->step[i] == step ? s->value[i] : NAN;
}

void vn_run_det_summarize(const vn_run *run, vn_run_det_summary *s)
{
    const vn_run_series *m[N_DET_METRICS];
    for (int k = 0; k < N_DET_METRICS; k++) m[k] = vn_run_find(run, VN_RUN_EVAL, metric_names[k]);
    *s = (vn_run_det_summary){0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    for (int64_t i = 0; m[3] && i < m[3]->n; i++) {
        double step = m[3]->step[i], v[N_DET_METRICS];
        for (int k = 0; k < N_DET_METRICS; k++) v[k] = value_at(m[k], i, step);
        if (!isfinite(v[2]) || !isfinite(v[3])) continue;
        s->evals++;
        s->final_p = v[0], s->final_r = v[1], s->final_map50 = v[2], s->final_map = v[3];
        s->final_step = step, s->final_epoch = m[3]->epoch[i];
        double fitness = 0.1 * v[2] + 0.9 * v[3]; /* as the trainer computes it */
        if (isfinite(s->best_fitness) && !(fitness > s->best_fitness)) continue;
        s->best_fitness = fitness;
        s->best_p = v[0], s->best_r = v[1], s->best_map50 = v[2], s->best_map = v[3];
        s->best_step = step, s->best_epoch = m[3]->epoch[i];
    }
}

int vn_run_det_size_of(const vn_yolo_config *mc, int imgsz, vn_run_det_size *out, vn_error *err)
{
    out->params = out->macs = out->deploy_params = out->deploy_macs = -1;
    vn_yolo *m = NULL;
    vn_report r;
    int rc = vn_yolo_create(mc, &m, err);
    if (rc == VN_OK && (rc = vn_yolo_report(m, imgsz, &r, err)) == VN_OK) {
        out->params = r.total_params;
        out->macs = r.total_macs;
        vn_report_free(&r);
    }
    if (rc == VN_OK && mc->backbone.shortcut == VN_SHORTCUT_NONE) {
        rc = vn_yolo_switch_to_deploy(m, true, err);
        if (rc == VN_OK && (rc = vn_yolo_report(m, imgsz, &r, err)) == VN_OK) {
            out->deploy_params = r.total_params;
            out->deploy_macs = r.total_macs;
            vn_report_free(&r);
        }
    }
    vn_yolo_destroy(m);
    return rc;
}

/* ----------------------------------------------------------------------------- view */

int vn__det_count(const vn__run_view *v, int n)
{
    int k = 0;
    for (int r = 0; r < n; r++) k += v[r].run->detector;
    return k;
}

int vn__det_view_init(vn__run_view *v)
{
    const vn_run *run = v->run;
    vn_run_det_summarize(run, &v->det);
    for (int k = 0; k < N_DET_LOSSES; k++) {
        const vn_run_series *s = vn_run_find(run, VN_RUN_STEP, loss_names[k]);
        if (!s) continue;
        if (!(v->det_smooth[k] = malloc((size_t)s->n * sizeof(double)))) return VN_ERR_NOMEM;
        vn_smooth_ema(s->value, s->n, fmax(5.0, (double)s->n / 40.0), v->det_smooth[k]);
    }
    for (int k = 0; k < N_DET_METRICS; k++) {
        const vn_run_series *s = vn_run_find(run, VN_RUN_EVAL, metric_names[k]);
        if (!s) continue;
        if (!(v->det_x[k] = malloc((size_t)s->n * sizeof(double)))) return VN_ERR_NOMEM;
        for (int64_t i = 0; i < s->n; i++)
            v->det_x[k][i] = vn__epoch_index(s->epoch[i]) >= 0 ? s->epoch[i] + 1 : (double)(i + 1);
    }
    if (isfinite(v->det.best_map)) snprintf(v->det_best_label, sizeof v->det_best_label, "best %.4f", v->det.best_map);
    v->input_size = run->det_imgsz > 0 ? run->det_imgsz : run->cfg ? (int)run->cfg->detect.imgsz : 640;
    v->params = v->macs = v->deploy_params = v->deploy_macs = -1;
    vn_run_det_size sz;
    vn_error e = {0};
    int rc = run->has_det_model ? vn_run_det_size_of(&run->det_model, v->input_size, &sz, &e) : VN_ERR_NOT_FOUND;
    if (rc == VN_ERR_NOMEM) return rc;
    if (rc == VN_OK) v->params = sz.params, v->macs = sz.macs, v->deploy_params = sz.deploy_params,
                     v->deploy_macs = sz.deploy_macs;
    return VN_OK;
}

void vn__det_view_free(vn__run_view *v)
{
    for (int k = 0; k < N_DET_LOSSES; k++) free(v->det_smooth[k]);
    for (int k = 0; k < N_DET_METRICS; k++) free(v->det_x[k]);
}

/* --------------------------------------------------------------------------- charts */

void vn__chart_det_loss(vn_chart *c, const vn__run_view *v, int n, bool multi, int which)
{
    memset(c, 0, sizeof *c);
    c->title = loss_titles[which];
    c->x_label = "step";
    c->x_integer = c->has_x_hint = true;
    for (int r = 0; r < n; r++) c->x_max_hint = fmax(c->x_max_hint, (double)v[r].steps);
    for (int r = 0; r < n; r++) {
        const vn_run_series *s = vn_run_find(v[r].run, VN_RUN_STEP, loss_names[which]);
        if (!s || !v[r].det_smooth[which]) continue;
        vn_chart_line *l = vn_chart_add(c, s->step, s->value, s->n, multi ? NULL : "per step", v[r].color);
        if (l) l->width = 1, l->opacity = multi ? 0.18f : 0.3f, l->css = "raw";
        l = vn_chart_add(c, s->step, v[r].det_smooth[which], s->n, multi ? v[r].run->name : "smoothed", v[r].color);
        if (l) l->width = 2, l->css = "smooth";
    }
}

void vn__chart_det_metric(vn_chart *c, const vn__run_view *v, int n, bool multi, int which)
{
    memset(c, 0, sizeof *c);
    c->title = metric_titles[which];
    c->x_label = "epoch";
    c->x_integer = c->y_zero = true;
    c->y_min_span = 0.05; /* an all-zero curve of a short run stays a flat line at 0 */
    for (int r = 0; r < n; r++) {
        const vn_run_series *s = vn_run_find(v[r].run, VN_RUN_EVAL, metric_names[which]);
        vn_chart_line *l;
        if (!s || !v[r].det_x[which]) continue;
        if ((l = vn_chart_add(c, v[r].det_x[which], s->value, s->n, multi ? v[r].run->name : metric_titles[which],
                              v[r].color)))
            l->dots = true, l->width = 2, l->css = "det";
        if (which == 3 && isfinite(v[r].det.best_map))
            vn_chart_mark_point(c, v[r].det.best_epoch + 1, v[r].det.best_map, multi ? NULL : v[r].det_best_label,
                                v[r].color);
    }
}

int vn__det_png(const vn__run_view *v, int n, bool multi, const char *prefix, FILE *log, vn_error *err)
{
    for (int k = 0; k < N_DET_LOSSES + N_DET_METRICS; k++) {
        vn_chart c;
        if (k < N_DET_LOSSES) vn__chart_det_loss(&c, v, n, multi, k);
        else vn__chart_det_metric(&c, v, n, multi, k - N_DET_LOSSES);
        if (c.n_lines == 0) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s%s.png", prefix, png_names[k]);
        int rc = vn_chart_png(&c, 1200, 600, path, err);
        if (rc != VN_OK) return rc;
        if (log) fprintf(log, "%s\n", path);
    }
    return VN_OK;
}

void vn__det_charts(vn_text *t, const vn__run_view *v, int n, bool multi)
{
    vn__run_view *det = malloc((size_t)n * sizeof *det); /* the detector runs only */
    if (!det) {
        t->failed = true;
        return;
    }
    int nd = 0;
    for (int r = 0; r < n; r++)
        if (v[r].run->detector) det[nd++] = v[r];
    vn_chart c;
    vn_text_put(t, "<h2>Detection: losses and metrics</h2><div class=\"grid\">");
    vn__chart_loss(&c, det, nd, multi);
    vn__html_panel(t, &c, "Training loss (box + cls + dfl gains applied, x batch)", false, multi);
    for (int k = 0; k < N_DET_LOSSES; k++) {
        vn__chart_det_loss(&c, det, nd, multi, k);
        vn__html_panel(t, &c, loss_titles[k], false, multi);
    }
    bool any = false;
    for (int k = 0; k < N_DET_METRICS; k++) {
        vn__chart_det_metric(&c, det, nd, multi, k);
        any = any || c.n_lines > 0;
        vn__html_panel(t, &c, metric_titles[k], false, multi);
    }
    if (!any) vn_text_put(t, "<div class=\"panel\"><h3>Validation</h3><p>No evaluation yet.</p></div>");
    vn_text_put(t, "</div>");
    free(det);
}

/* ---------------------------------------------------------------------------- cards */

void vn__det_cards(vn_text *t, const vn__run_view *v)
{
    const vn_run_det_summary *d = &v->det;
    const char *none = "no evaluation yet";
    char a[96], b[200], e[64];
    vn_text_put(t, "<div class=\"cards\">");
    snprintf(b, sizeof b, "best fitness (0.1 mAP50 + 0.9 mAP50-95) %.4f, epoch %.0f", d->best_fitness,
             d->best_epoch);
    vn__html_card(t, "Best mAP50-95", vn__fmt_num(d->best_map, "%.4f", a, sizeof a), d->evals ? b : none, true);
    vn__html_card(t, "Best mAP50", vn__fmt_num(d->best_map50, "%.4f", a, sizeof a),
                  d->evals ? "the same evaluation (best.safetensors)" : none, true);
    snprintf(e, sizeof e, "last evaluation, epoch %.0f", d->final_epoch);
    vn__html_card(t, "Final mAP50-95", vn__fmt_num(d->final_map, "%.4f", a, sizeof a), d->evals ? e : none, false);
    vn__html_card(t, "Final mAP50", vn__fmt_num(d->final_map50, "%.4f", a, sizeof a), d->evals ? e : none, false);
    vn__html_card(t, "Final precision", vn__fmt_num(d->final_p, "%.4f", a, sizeof a), d->evals ? e : none, false);
    vn__html_card(t, "Final recall", vn__fmt_num(d->final_r, "%.4f", a, sizeof a), d->evals ? e : none, false);
    char l[3][32];
    const vn_run_series *ls[3];
    for (int k = 0; k < N_DET_LOSSES; k++) {
        ls[k] = vn_run_find(v->run, VN_RUN_STEP, loss_names[k]);
        vn__fmt_num(ls[k] && v->det_smooth[k] ? v->det_smooth[k][ls[k]->n - 1] : NAN, "%.3f", l[k], sizeof l[k]);
    }
    snprintf(b, sizeof b, "%s / %s / %s", l[0], l[1], l[2]);
    vn__html_card(t, "Train losses", b, "box / cls / dfl, smoothed, at the end", false);
    snprintf(b, sizeof b, "%lld epoch%s completed", (long long)v->epochs, v->epochs == 1 ? "" : "s");
    vn__html_card(t, "Steps", vn__fmt_count(v->steps, a, sizeof a), b, false);
    vn__html_card(t, "Wall time", vn__fmt_duration(v->wall_seconds, a, sizeof a), "first to last record", false);
    vn__html_card(t, "Images/s", vn__fmt_num(v->img_per_s, "%.0f", a, sizeof a), "training", false);
    vn__html_card(t, "Peak memory", vn__fmt_num(v->peak_rss_mb, "%.0f MiB", a, sizeof a),
                  "resident set, whole process", false);
    char p2[32], m1[32], m2[32];
    snprintf(b, sizeof b, "%s MACs at %dx%d; deploy form (backbone merged) %s params, %s MACs",
             vn__fmt_count(v->macs, m1, sizeof m1), v->input_size, v->input_size,
             vn__fmt_count(v->deploy_params, p2, sizeof p2), vn__fmt_count(v->deploy_macs, m2, sizeof m2));
    vn__html_card(t, "Parameters", vn__fmt_count(v->params, a, sizeof a), v->params >= 0 ? b : "model not known",
                  false);
    vn_text_put(t, "</div>");
}

/* ---------------------------------------------------------------------------- tables */

static void eval_table(vn_text *t, const vn__run_view *v)
{
    const vn_run_series *m[N_DET_METRICS];
    for (int k = 0; k < N_DET_METRICS; k++) m[k] = vn_run_find(v->run, VN_RUN_EVAL, metric_names[k]);
    if (!m[3]) return;
    vn_text_put(t, "<h2>Evaluations</h2><div class=\"tbl\"><table><tr><th>epoch</th><th>step</th><th>precision</th>"
                   "<th>recall</th><th>mAP50</th><th>mAP50-95</th><th>fitness</th></tr>");
    char a[64];
    for (int64_t i = 0; i < m[3]->n; i++) {
        double step = m[3]->step[i], x[N_DET_METRICS];
        for (int k = 0; k < N_DET_METRICS; k++) x[k] = value_at(m[k], i, step);
        bool best = step == v->det.best_step && x[3] == v->det.best_map;
        vn_text_printf(t, "<tr%s><td>%.0f</td><td>%.0f</td>", best ? " class=\"best\"" : "", m[3]->epoch[i], step);
        for (int k = 0; k < N_DET_METRICS; k++) vn_text_printf(t, "<td>%s</td>", vn__fmt_num(x[k], "%.4f", a, sizeof a));
        vn_text_printf(t, "<td>%s</td></tr>", vn__fmt_num(0.1 * x[2] + 0.9 * x[3], "%.4f", a, sizeof a));
    }
    vn_text_put(t, "</table></div>");
}

/* The value of series `name` in the record at step (the last such), NaN when none. */
static double eval_at(const vn_run *run, const char *name, double step)
{
    const vn_run_series *s = vn_run_find(run, VN_RUN_EVAL, name);
    for (int64_t i = s ? s->n - 1 : -1; i >= 0; i--)
        if (s->step[i] == step) return s->value[i];
    return NAN;
}

/* Per-class AP of the last evaluation (records "val_mAP50/<class>", "val_mAP50-95/<class>"),
 * in the order the classes were logged. */
static void class_table(vn_text *t, const vn__run_view *v)
{
    const vn_run *run = v->run;
    const char *prefix = "val_mAP50/";
    size_t pl = strlen(prefix);
    int rows = 0;
    char a[64], b[64], other[96];
    for (int i = 0; v->det.evals && i < run->n_series[VN_RUN_EVAL]; i++) {
        const vn_run_series *s = &run->series[VN_RUN_EVAL][i];
        double ap50 = strncmp(s->name, prefix, pl) ? NAN : eval_at(run, s->name, v->det.final_step);
        if (isnan(ap50)) continue;
        if (rows++ == 0)
            vn_text_printf(t, "<h2>Per class, last evaluation (epoch %.0f)</h2><p>Classes with instances in "
                           "the validation set, as Ultralytics lists them.</p><div class=\"tbl\"><table><tr>"
                           "<th>class</th><th>mAP50</th><th>mAP50-95</th></tr>", v->det.final_epoch);
        snprintf(other, sizeof other, "val_mAP50-95/%s", s->name + pl);
        vn_text_put(t, "<tr><td>");
        vn_text_escaped(t, s->name + pl);
        vn_text_printf(t, "</td><td>%s</td><td>%s</td></tr>", vn__fmt_num(ap50, "%.4f", a, sizeof a),
                       vn__fmt_num(eval_at(run, other, v->det.final_step), "%.4f", b, sizeof b));
    }
    if (rows) vn_text_put(t, "</table></div>");
}

void vn__det_tables(vn_text *t, const vn__run_view *v)
{
    class_table(t, v);
    eval_table(t, v);
}

void vn__det_model_section(vn_text *t, const vn__run_view *v)
{
    const vn_run *run = v->run;
    vn_yolo *m = NULL;
    vn_report r;
    if (!run->has_det_model || vn_yolo_create(&run->det_model, &m, NULL) != VN_OK) return;
    if (vn_yolo_report(m, v->input_size, &r, NULL) != VN_OK) {
        vn_yolo_destroy(m);
        return;
    }
    vn__html_layer_table(t, &r, "YOLO11-VanillaNet, ", v->input_size,
                         run->model_from_ckpt ? ", as stored in the checkpoints"
                                              : ", from config.yaml and detect.data");
    vn_report_free(&r);
    vn_yolo_destroy(m);
}

/* ----------------------------------------------------------------- several runs */

/* Runs of both kinds in one table: a task column, and best / final as top-1 for classifiers
 * and mAP50-95 for detectors (the best of each kind highlighted). */
void vn__det_compare_table(vn_text *t, const vn__run_view *v, int n)
{
    double best_top1 = -1, best_map = -1;
    for (int r = 0; r < n; r++) {
        if (v[r].run->detector && v[r].det.best_map > best_map) best_map = v[r].det.best_map;
        if (!v[r].run->detector && v[r].best_top1 > best_top1) best_top1 = v[r].best_top1;
    }
    vn_text_put(t, "<h2>Runs</h2><div class=\"tbl\"><table><tr><th>run</th><th class=\"l\">task</th>"
                   "<th>best</th><th>final</th><th>best mAP50</th><th>train loss</th><th>steps</th><th>epochs</th>"
                   "<th>wall time</th><th>images/s</th><th>peak memory</th><th>params</th><th>MACs</th>"
                   "<th class=\"l\">config vs. the first run</th></tr>");
    char a[64], b[64], c[64];
    for (int r = 0; r < n; r++) {
        const vn__run_view *x = &v[r];
        bool det = x->run->detector;
        bool top = det ? isfinite(x->det.best_map) && x->det.best_map == best_map
                       : isfinite(x->best_top1) && x->best_top1 == best_top1;
        vn_text_printf(t, "<tr%s><td><span class=\"sw\" style=\"background:#%06x\"></span>",
                       top ? " class=\"best\"" : "", x->color);
        vn_text_escaped(t, x->run->name);
        if (det)
            vn_text_printf(t, "</td><td class=\"l\">detect (mAP50-95)</td><td>%s</td><td>%s</td><td>%s</td>",
                           vn__fmt_num(x->det.best_map, "%.4f", a, sizeof a),
                           vn__fmt_num(x->det.final_map, "%.4f", b, sizeof b),
                           vn__fmt_num(x->det.best_map50, "%.4f", c, sizeof c));
        else
            vn_text_printf(t, "</td><td class=\"l\">classify (top-1)</td><td>%s</td><td>%s</td><td>&ndash;</td>",
                           vn__fmt_num(x->best_top1, "%.2f%%", a, sizeof a),
                           vn__fmt_num(x->final_top1, "%.2f%%", b, sizeof b));
        vn__html_run_tail(t, v, r);
    }
    vn_text_put(t, "</table></div>");
}

void vn__det_ablation_section(vn_text *t, const vn_run_ablation *a)
{
    const char **names = malloc((size_t)a->n_rows * sizeof *names);
    double *vals = malloc((size_t)a->n_rows * sizeof *vals);
    int top = 0;
    for (int i = 0; names && vals && i < a->n_rows; i++) {
        names[i] = a->rows[i].name;
        vals[i] = a->rows[i].best_map >= 0 ? 100 * a->rows[i].best_map : NAN;
        if (vals[i] > vals[top] || !isfinite(vals[top])) top = i;
    }
    vn_text_put(t, "<div class=\"tbl\"><table><tr><th>run</th><th>best mAP50-95</th><th>best mAP50</th>"
                   "<th>final mAP50-95</th><th>final mAP50</th><th>params (deploy)</th><th>MACs (deploy)</th>"
                   "<th>time</th></tr>");
    char s[4][64], p[64], m[64], d[64];
    for (int i = 0; i < a->n_rows; i++) {
        const vn_run_result *r = &a->rows[i];
        const double x[4] = {r->best_map, r->best_map50, r->final_map, r->final_map50};
        for (int k = 0; k < 4; k++) vn__fmt_num(r->detect && x[k] >= 0 ? x[k] : NAN, "%.4f", s[k], sizeof s[k]);
        vn_text_printf(t, "<tr%s><td>", i == top ? " class=\"best\"" : "");
        vn_text_escaped(t, r->name);
        vn_text_printf(t, "</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>",
                       s[0], s[1], s[2], s[3], vn__fmt_count(r->params, p, sizeof p),
                       vn__fmt_count(r->macs, m, sizeof m), vn__fmt_duration(r->seconds, d, sizeof d));
    }
    vn_text_put(t, "</table></div><div class=\"panel\" style=\"margin-top:14px\"><h3>Best mAP50-95 per run "
                   "(&times; 100)</h3>");
    if (names && vals) vn_bars_svg(names, vals, a->n_rows, NULL, top, 0x2563eb, 960, t);
    vn_text_put(t, "</div>");
    free(names);
    free(vals);
}

/* ----------------------------------------------------------------------------- header */

void vn__det_facts(vn_text *t, const vn_run *run)
{
    const vn_config *c = run->cfg;
    char model[64], dims[256], opt[64], lr[64];
    if (!c || vn_config_get(c, "model.name", model, sizeof model) < 0 ||
        vn_config_get(c, "model.dims", dims, sizeof dims) < 0 || vn_config_get(c, "optim.name", opt, sizeof opt) < 0 ||
        vn_config_get(c, "optim.lr", lr, sizeof lr) < 0)
        return;
    vn_text_put(t, "<div class=\"sub\">YOLO11-VanillaNet detector, backbone ");
    vn_text_escaped(t, model);
    if (c->model.dims.n) {
        vn_text_put(t, " ");
        vn_text_escaped(t, dims);
    }
    vn_text_printf(t, " &middot; act_num %lld &middot; width &times;%g, depth &times;%g &middot; detect.data <code>",
                   (long long)c->model.act_num, c->detect.width_multiple, c->detect.depth_multiple);
    vn_text_escaped(t, c->detect.data);
    vn_text_printf(t, "</code> at imgsz %lld &middot; %lld epochs, batch %lld", (long long)c->detect.imgsz,
                   (long long)c->train.epochs, (long long)c->train.batch_size);
    if (c->optim.update_freq > 1)
        vn_text_printf(t, " &times; %lld accumulated", (long long)c->optim.update_freq);
    vn_text_put(t, " &middot; ");
    vn_text_escaped(t, opt);
    vn_text_printf(t, " lr %s &middot; deep training over %lld epochs</div>", lr,
                   (long long)c->deep_training.decay_epochs);
}
