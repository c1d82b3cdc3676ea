/* The report page: one HTML file with inline CSS and SVG, no scripts (see vn_run_report.h). */
#include "train/vn_run_report.h"
#include "base/vn_fs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "train/report_view.h"

#define W_FULL 960
#define H_FULL 300
#define W_HALF 470
#define H_HALF 230

static const char page_css[] =
    ":root{--ink:#1f2937;--mute:#6b7280;--line:#e5e7eb;--bg:#f5f6f8;--card:#fff;--accent:#2563eb}"
    "*{box-sizing:border-box}"
    "body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 -apple-system,BlinkMacSystemFont,"
    "'Segoe UI',Roboto,'Helvetica Neue','DejaVu Sans',Arial,sans-serif}"
    "header{background:#111827;color:#f9fafb;padding:22px 0 20px}"
    ".wrap{max-width:1180px;margin:0 auto;padding:0 24px}"
    "header h1{margin:0;font-size:22px;font-weight:600;letter-spacing:-.01em}"
    "header .sub{color:#9ca3af;margin-top:4px;font-size:13px}"
    "header .sub code{color:#d1d5db}"
    "h2{font-size:17px;margin:30px 0 12px;font-weight:600}"
    "h3{font-size:13px;margin:0 0 6px;font-weight:600;color:#374151}"
    ".cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin-top:22px}"
    ".card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}"
    ".card .k{color:var(--mute);font-size:12px;text-transform:uppercase;letter-spacing:.04em}"
    ".card .v{font-size:22px;font-weight:600;margin-top:2px;font-variant-numeric:tabular-nums}"
    ".card .d{color:var(--mute);font-size:12px}"
    ".card.hi .v{color:var(--accent)}"
    ".grid{display:grid;grid-template-columns:1fr 1fr;gap:14px}"
    ".panel{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 14px 6px}"
    ".panel.full{grid-column:1/-1}"
    "svg.chart{width:100%;height:auto;display:block;font-family:inherit}"
    "svg .grid line{stroke:#eef0f3;stroke-width:1}svg .grid line.axis{stroke:#9ca3af}"
    "svg text{font-size:11px;fill:#6b7280}svg text.yt{text-anchor:end}svg text.xt{text-anchor:middle}"
    "svg text.xl{text-anchor:end;font-size:11px;fill:#9ca3af}svg text.lg{fill:#374151}"
    "svg text.mark{font-size:11.5px;font-weight:600;fill:#111827}svg text.none{text-anchor:middle;fill:#9ca3af}"
    "svg circle.best{fill:#fff;stroke-width:2.5}svg text.bv{fill:#374151}svg text.bv.top{font-weight:700}"
    "table{border-collapse:collapse;width:100%;background:var(--card);font-variant-numeric:tabular-nums}"
    ".tbl{border:1px solid var(--line);border-radius:10px;overflow:auto}"
    "th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}"
    "th{background:#f9fafb;color:#4b5563;font-weight:600;font-size:12px}"
    "td:first-child,th:first-child{text-align:left}td.l,th.l{text-align:left;white-space:normal}"
    "tr:last-child td{border-bottom:0}tr.best td{background:#eff6ff;font-weight:600}"
    "tr.changed td{background:#fffbeb}tr.changed td.val{color:#b45309;font-weight:600}"
    "td.help{color:var(--mute);text-align:left;white-space:normal;font-size:12.5px}"
    "details{background:var(--card);border:1px solid var(--line);border-radius:10px;margin:8px 0}"
    "details>summary{cursor:pointer;padding:9px 14px;font-weight:600;list-style-position:inside}"
    "details>summary .n{color:var(--mute);font-weight:400;margin-left:6px}"
    "details>.tbl{border:0;border-top:1px solid var(--line);border-radius:0 0 10px 10px}"
    ".notes{background:#fffbeb;border:1px solid #fcd34d;border-radius:10px;padding:10px 14px;margin-top:18px}"
    ".notes li{margin:2px 0}.notes b{color:#92400e}"
    ".legend{display:flex;flex-wrap:wrap;gap:8px 18px;margin:14px 0 0}"
    ".legend span{display:inline-flex;align-items:center;gap:7px}"
    ".legend i{width:18px;height:4px;border-radius:2px;display:inline-block}"
    ".sw{display:inline-block;width:10px;height:10px;border-radius:3px;margin-right:6px}"
    ".chips{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0 10px}"
    ".chip{background:#fef3c7;color:#92400e;border-radius:999px;padding:2px 10px;font-size:12.5px}"
    "code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono',monospace;font-size:12.5px}"
    "footer{color:var(--mute);font-size:12px;padding:26px 0 34px}"
    "@media(max-width:820px){.grid{grid-template-columns:1fr}.cards{grid-template-columns:1fr 1fr}}";

/* ------------------------------------------------------------------------- formats */

static const char *fmt_count(int64_t v, char *buf, size_t len)
{
    if (v < 0) snprintf(buf, len, "n/a");
    else if (v >= 1000000000) snprintf(buf, len, "%.2fG", (double)v / 1e9);
    else if (v >= 1000000) snprintf(buf, len, "%.2fM", (double)v / 1e6);
    else if (v >= 10000) snprintf(buf, len, "%.1fk", (double)v / 1e3);
    else snprintf(buf, len, "%lld", (long long)v);
    return buf;
}

static const char *fmt_duration(double s, char *buf, size_t len)
{
    if (!isfinite(s)) snprintf(buf, len, "n/a");
    else if (s < 90) snprintf(buf, len, "%.0f s", s);
    else if (s < 5400) snprintf(buf, len, "%.0f min %02.0f s", floor(s / 60), fmod(s, 60));
    else snprintf(buf, len, "%.0f h %02.0f min", floor(s / 3600), fmod(floor(s / 60), 60));
    return buf;
}

static const char *fmt_num(double v, const char *f, char *buf, size_t len)
{
    if (!isfinite(v)) snprintf(buf, len, "&ndash;");
    else snprintf(buf, len, f, v);
    return buf;
}

static const char *fmt_bytes(int64_t b, char *buf, size_t len)
{
    if (b >= (1 << 30)) snprintf(buf, len, "%.2f GiB", (double)b / (1 << 30));
    else if (b >= (1 << 20)) snprintf(buf, len, "%.1f MiB", (double)b / (1 << 20));
    else snprintf(buf, len, "%.0f KiB", (double)b / 1024);
    return buf;
}

/* --------------------------------------------------------------------------- pieces */

static void card(vn_text *t, const char *key, const char *value, const char *detail, bool hi)
{
    vn_text_printf(t, "<div class=\"card%s\"><div class=\"k\">%s</div><div class=\"v\">%s</div>",
                   hi ? " hi" : "", key, value);
    if (detail && *detail) vn_text_printf(t, "<div class=\"d\">%s</div>", detail);
    vn_text_put(t, "</div>");
}

static void summary_cards(vn_text *t, const vn__run_view *v)
{
    if (v->run->detector) {
        vn__det_cards(t, v);
        return;
    }
    char a[96], b[160];
    vn_text_put(t, "<div class=\"cards\">");
    snprintf(b, sizeof b, "%s%s, epoch %.0f", isfinite(v->best_top1) ? "" : "no evaluation yet",
             v->best_source, v->best_epoch);
    card(t, "Best top-1", fmt_num(v->best_top1, "%.2f%%", a, sizeof a),
         isfinite(v->best_top1) ? b : "no evaluation yet", true);
    card(t, "Final top-1", fmt_num(v->final_top1, "%.2f%%", a, sizeof a), "last evaluation, model", false);
    card(t, "Train loss", fmt_num(v->final_loss, "%.4f", a, sizeof a), "smoothed, at the end", false);
    snprintf(b, sizeof b, "%lld epoch%s completed", (long long)v->epochs, v->epochs == 1 ? "" : "s");
    card(t, "Steps", fmt_count(v->steps, a, sizeof a), b, false);
    card(t, "Wall time", fmt_duration(v->wall_seconds, a, sizeof a), "first to last record", false);
    snprintf(b, sizeof b, "data wait %s of step time", fmt_num(v->wait_pct, "%.1f%%", a, sizeof a));
    card(t, "Images/s", fmt_num(v->img_per_s, "%.0f", a, sizeof a), isfinite(v->wait_pct) ? b : "", false);
    card(t, "Peak memory", fmt_num(v->peak_rss_mb, "%.0f MiB", a, sizeof a), "resident set, whole process",
         false);
    char p2[32], m1[32], m2[32];
    snprintf(b, sizeof b, "%s MACs at %dx%d; deploy form %s params, %s MACs",
             fmt_count(v->macs, m1, sizeof m1), v->input_size, v->input_size,
             fmt_count(v->deploy_params, p2, sizeof p2), fmt_count(v->deploy_macs, m2, sizeof m2));
    card(t, "Parameters", fmt_count(v->params, a, sizeof a), v->params >= 0 ? b : "model not known", false);
    vn_text_put(t, "</div>");
}

static void notes_box(vn_text *t, const vn_run_set *s)
{
    int total = s->n_notes;
    for (int i = 0; i < s->n_runs; i++) total += s->runs[i].n_notes;
    if (!total) return;
    vn_text_put(t, "<div class=\"notes\"><b>Not everything could be read</b><ul>");
    for (int i = 0; i < s->n_notes; i++) {
        vn_text_put(t, "<li>");
        vn_text_escaped(t, s->notes[i]);
        vn_text_put(t, "</li>");
    }
    for (int r = 0; r < s->n_runs; r++)
        for (int i = 0; i < s->runs[r].n_notes; i++) {
            vn_text_put(t, "<li><code>");
            vn_text_escaped(t, s->runs[r].name);
            vn_text_put(t, "</code>: ");
            vn_text_escaped(t, s->runs[r].notes[i]);
            vn_text_put(t, "</li>");
        }
    vn_text_put(t, "</ul></div>");
}

static void panel(vn_text *t, vn_chart *c, const char *title, bool full, bool multi)
{
    if (c->n_lines == 0) return;
    for (int i = 0; multi && i < c->n_lines; i++) c->lines[i].label = NULL; /* the page's legend */
    vn_text_printf(t, "<div class=\"panel%s\"><h3>", full ? " full" : "");
    vn_text_escaped(t, title);
    vn_text_put(t, "</h3>");
    vn_chart_svg(c, full ? W_FULL : W_HALF, full ? H_FULL : H_HALF, t);
    vn_text_put(t, "</div>");
}

static void legend(vn_text *t, const vn__run_view *v, int n)
{
    vn_text_put(t, "<div class=\"legend\">");
    for (int r = 0; r < n; r++) {
        vn_text_printf(t, "<span><i style=\"background:#%06x\"></i>", v[r].color);
        vn_text_escaped(t, v[r].run->name);
        vn_text_put(t, "</span>");
    }
    vn_text_put(t, "<span style=\"color:#6b7280\">faint: every step &middot; solid: smoothed &middot; "
                   "dashed: EMA copies</span></div>");
}

static void loss_accuracy(vn_text *t, const vn__run_view *v, int n, bool multi, char labels[][96])
{
    vn_chart c;
    vn_text_put(t, "<h2>Loss and accuracy</h2><div class=\"grid\">");
    vn__chart_loss(&c, v, n, multi);
    panel(t, &c, "Training loss", true, multi);
    vn__chart_top1(&c, v, n, multi, labels);
    panel(t, &c, multi ? "Validation top-1" : "Validation top-1 / top-5", false, multi);
    if (c.n_lines == 0) vn_text_put(t, "<div class=\"panel\"><h3>Validation</h3><p>No evaluation yet.</p></div>");
    vn__chart_eval_loss(&c, v, n, multi, labels);
    panel(t, &c, "Validation loss", false, multi);
    vn_text_put(t, "</div>");
}

/* Classifier runs' loss and accuracy, detector runs' losses and metrics (a mixed set: each
 * kind's charts overlay its own runs), then what both have. */
static void charts(vn_text *t, const vn__run_view *v, int n, bool multi)
{
    char (*labels)[96] = calloc(VN_CHART_LABELS, sizeof *labels);
    vn__run_view *cls = malloc((size_t)n * sizeof *cls);
    if (!labels || !cls) {
        t->failed = true;
        free(labels);
        free(cls);
        return;
    }
    int n_cls = 0;
    for (int r = 0; r < n; r++)
        if (!v[r].run->detector) cls[n_cls++] = v[r];
    if (n_cls) loss_accuracy(t, n_cls == n ? v : cls, n_cls, multi, labels);
    if (n_cls < n) vn__det_charts(t, v, n, multi);
    vn_chart c;
    static const char *const step_series[][2] = {{"lr", "Learning rate"}, {"act_learn", "act_learn (deep training)"},
                                                 {"wd", "Weight decay"}, {"grad_norm", "Gradient norm"}};
    vn_text_put(t, "<h2>Schedules and gradients</h2><div class=\"grid\">");
    for (int i = 0; i < 4; i++) {
        vn__chart_step_series(&c, v, n, multi, step_series[i][0]);
        panel(t, &c, step_series[i][1], false, multi);
    }
    vn_text_put(t, "</div><h2>System</h2><div class=\"grid\">");
    for (int which = 0; which < 3; which++) {
        vn__chart_epoch(&c, v, n, multi, which);
        panel(t, &c, c.title, false, multi);
    }
    vn_text_put(t, "</div>");
    free(labels);
    free(cls);
}

/* ------------------------------------------------------------------------- tables */

static void eval_table(vn_text *t, const vn__run_view *v)
{
    const vn_run *run = v->run;
    const vn_run_series *t1 = vn_run_find(run, VN_RUN_EVAL, "val_top1");
    if (!t1) return;
    const vn_run_series *t5 = vn_run_find(run, VN_RUN_EVAL, "val_top5"), *lo = vn_run_find(run, VN_RUN_EVAL, "val_loss");
    const vn_run_series *ema[8];
    int n_ema = 0, ema_index[8];
    for (int e = 0; e < 8; e++) {
        char name[32];
        snprintf(name, sizeof name, "ema%d_top1", e);
        if ((ema[n_ema] = vn_run_find(run, VN_RUN_EVAL, name))) ema_index[n_ema++] = e;
    }
    vn_text_put(t, "<h2>Evaluations</h2><div class=\"tbl\"><table><tr><th>epoch</th><th>step</th><th>top-1</th>"
                   "<th>top-5</th><th>loss</th>");
    for (int e = 0; e < n_ema; e++) {
        char name[48];
        vn__ema_name(run, ema_index[e], name, sizeof name);
        vn_text_printf(t, "<th>%s top-1</th>", name);
    }
    vn_text_put(t, "</tr>");
    char a[64];
    for (int64_t i = 0; i < t1->n; i++) {
        bool best = t1->step[i] == v->best_step;
        vn_text_printf(t, "<tr%s><td>%.0f</td><td>%.0f</td><td>%s</td>", best ? " class=\"best\"" : "",
                       t1->epoch[i], t1->step[i], fmt_num(t1->value[i], "%.2f%%", a, sizeof a));
        vn_text_printf(t, "<td>%s</td>", fmt_num(t5 && i < t5->n ? t5->value[i] : NAN, "%.2f%%", a, sizeof a));
        vn_text_printf(t, "<td>%s</td>", fmt_num(lo && i < lo->n ? lo->value[i] : NAN, "%.4f", a, sizeof a));
        for (int e = 0; e < n_ema; e++)
            vn_text_printf(t, "<td>%s</td>", fmt_num(i < ema[e]->n ? ema[e]->value[i] : NAN, "%.2f%%", a, sizeof a));
        vn_text_put(t, "</tr>");
    }
    vn_text_put(t, "</table></div>");
}

static void epoch_table(vn_text *t, const vn__run_view *v)
{
    const vn_run *run = v->run;
    const vn_run_series *tl = vn_run_find(run, VN_RUN_EPOCH, "train_loss");
    if (!tl) return;
    const vn_run_series *lr = vn_run_find(run, VN_RUN_EPOCH, "lr"), *al = vn_run_find(run, VN_RUN_EPOCH, "act_learn");
    const vn_run_series *sec = vn_run_find(run, VN_RUN_EPOCH, "epoch_seconds");
    vn_text_put(t, "<h2>Epochs</h2><div class=\"tbl\"><table><tr><th>epoch</th><th>step</th><th>train loss</th>"
                   "<th>lr</th><th>act_learn</th><th>time</th><th>images/s</th><th>data wait</th>"
                   "<th>peak memory</th></tr>");
    char a[64];
    for (int64_t i = 0; i < tl->n; i++) {
        int64_t e = vn__epoch_index(tl->epoch[i]);
        bool in = e >= 0 && e < v->ep.n;
        vn_text_printf(t, "<tr><td>%lld</td><td>%.0f</td><td>%s</td>", (long long)e, tl->step[i],
                       fmt_num(tl->value[i], "%.4f", a, sizeof a));
        vn_text_printf(t, "<td>%s</td>", fmt_num(lr && i < lr->n ? lr->value[i] : NAN, "%.3g", a, sizeof a));
        vn_text_printf(t, "<td>%s</td>", fmt_num(al && i < al->n ? al->value[i] : NAN, "%.3f", a, sizeof a));
        vn_text_printf(t, "<td>%s</td>", fmt_duration(sec && i < sec->n ? sec->value[i] : NAN, a, sizeof a));
        vn_text_printf(t, "<td>%s</td>", fmt_num(in ? v->ep.img_per_s[e] : NAN, "%.0f", a, sizeof a));
        vn_text_printf(t, "<td>%s</td>", fmt_num(in ? v->ep.wait_pct[e] : NAN, "%.1f%%", a, sizeof a));
        vn_text_printf(t, "<td>%s</td></tr>", fmt_num(in ? v->ep.rss_mb[e] : NAN, "%.0f MiB", a, sizeof a));
    }
    vn_text_put(t, "</table></div>");
}

/* The effective config by section (collapsed), keys that differ from the defaults marked. */
static void config_section(vn_text *t, const vn_config *cfg)
{
    vn_config *defaults = malloc(sizeof *defaults);
    if (!defaults) {
        t->failed = true;
        return;
    }
    vn_config_init(defaults);
    const vn_config *def = defaults;
    size_t n;
    const vn_config_key *keys = vn_config_schema(&n);
    char val[600], dval[600];
    vn_text_put(t, "<h2>Configuration</h2><div class=\"chips\">");
    int changed = 0;
    for (size_t i = 0; i < n; i++) {
        vn_config_get(cfg, keys[i].full, val, sizeof val);
        vn_config_get(def, keys[i].full, dval, sizeof dval);
        if (strcmp(val, dval)) {
            vn_text_put(t, "<span class=\"chip\">");
            vn_text_escaped(t, keys[i].full);
            vn_text_put(t, " = ");
            vn_text_escaped(t, val);
            vn_text_put(t, "</span>");
            changed++;
        }
    }
    vn_text_printf(t, "%s</div>", changed ? "" : "<span>every key at its default</span>");
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int diff = 0;
        for (; j < n && !strcmp(keys[j].section, keys[i].section); j++) {
            vn_config_get(cfg, keys[j].full, val, sizeof val);
            vn_config_get(def, keys[j].full, dval, sizeof dval);
            diff += strcmp(val, dval) != 0;
        }
        vn_text_printf(t, "<details><summary>%s<span class=\"n\">%zu keys, %d changed</span></summary>"
                       "<div class=\"tbl\"><table><tr><th>key</th><th>value</th><th>default</th>"
                       "<th class=\"l\">meaning</th></tr>", keys[i].section, j - i, diff);
        for (size_t k = i; k < j; k++) {
            vn_config_get(cfg, keys[k].full, val, sizeof val);
            vn_config_get(def, keys[k].full, dval, sizeof dval);
            bool ch = strcmp(val, dval) != 0;
            vn_text_printf(t, "<tr%s><td><code>%s</code></td><td class=\"val\">", ch ? " class=\"changed\"" : "",
                           keys[k].name);
            vn_text_escaped(t, val);
            vn_text_put(t, "</td><td>");
            vn_text_escaped(t, ch ? dval : "");
            vn_text_put(t, "</td><td class=\"help\">");
            vn_text_escaped(t, keys[k].help);
            vn_text_put(t, "</td></tr>");
        }
        vn_text_put(t, "</table></div></details>");
        i = j;
    }
    free(defaults);
}

void vn__html_layer_table(vn_text *t, const vn_report *r, const char *what, int size,
                          const char *source)
{
    char a[32], b[32];
    vn_text_printf(t, "<h2>Model</h2><details><summary>%s%d layers, %s parameters, %s MACs at %dx%d"
                   "<span class=\"n\">training form%s</span></summary><div class=\"tbl\"><table><tr>"
                   "<th>layer</th><th class=\"l\">op</th><th>output (H&times;W&times;C)</th><th>params</th>"
                   "<th>MACs</th></tr>", what, r->n, fmt_count(r->total_params, a, sizeof a),
                   fmt_count(r->total_macs, b, sizeof b), size, size, source);
    for (int i = 0; i < r->n; i++) {
        const vn_report_row *row = &r->rows[i];
        vn_text_put(t, "<tr><td><code>");
        vn_text_escaped(t, row->name);
        vn_text_put(t, "</code></td><td class=\"l\">");
        vn_text_escaped(t, row->what);
        vn_text_printf(t, "</td><td>%lld&times;%lld&times;%lld</td><td>%s</td><td>%s</td></tr>",
                       (long long)row->out[1], (long long)row->out[2], (long long)row->out[3],
                       fmt_count(row->params, a, sizeof a), fmt_count(row->macs, b, sizeof b));
    }
    vn_text_put(t, "</table></div></details>");
}

static void model_section(vn_text *t, const vn__run_view *v)
{
    const vn_run *run = v->run;
    vn_report r;
    if (!run->has_model ||
        vn_vanillanet_report(&run->model, false, v->input_size, v->input_size, &r, NULL) != VN_OK)
        return;
    vn__html_layer_table(t, &r, "", v->input_size,
                         run->model_from_ckpt ? ", as stored in the checkpoints" : ", from config.yaml");
    vn_report_free(&r);
}

static void checkpoint_section(vn_text *t, const vn_run *run)
{
    if (run->n_ckpts == 0) return;
    vn_text_printf(t, "<h2>Checkpoints</h2><div class=\"tbl\"><table><tr><th>file</th><th>step</th>"
                   "<th>epoch</th><th>%s</th><th>size</th><th class=\"l\">state</th></tr>",
                   run->detector ? "best fitness so far" : "best top-1 so far");
    char a[64], b[64];
    for (int i = 0; i < run->n_ckpts; i++) {
        const vn_run_ckpt *c = &run->ckpts[i];
        vn_text_put(t, "<tr><td><code>");
        vn_text_escaped(t, c->file);
        if (!c->readable) {
            vn_text_put(t, "</code></td><td colspan=\"5\" class=\"l\">unreadable</td></tr>");
            continue;
        }
        vn_text_printf(t, "</code></td><td>%lld</td><td>%lld</td><td>%s</td><td>%s</td><td class=\"l\">%s</td></tr>",
                       (long long)c->step, (long long)c->epoch,
                       c->detect ? fmt_num(c->best_fitness >= 0 ? c->best_fitness : NAN, "%.4f", a, sizeof a)
                                 : fmt_num(c->best_top1 >= 0 ? c->best_top1 : NAN, "%.2f%%", a, sizeof a),
                       fmt_bytes(c->bytes, b, sizeof b), c->finished ? "finished" : "resumable");
    }
    vn_text_put(t, "</table></div>");
}

static void run_details(vn_text *t, const vn__run_view *v)
{
    if (v->run->detector) vn__det_tables(t, v);
    else eval_table(t, v);
    epoch_table(t, v);
    if (v->run->cfg) config_section(t, v->run->cfg);
    if (v->run->detector) vn__det_model_section(t, v);
    else model_section(t, v);
    checkpoint_section(t, v->run);
}

/* ----------------------------------------------------------------- several runs */

void vn__html_run_tail(vn_text *t, const vn__run_view *v, int r)
{
    const vn__run_view *x = &v[r];
    char a[64], b[64];
    vn_text_printf(t, "<td>%s</td><td>%lld</td><td>%lld</td>", fmt_num(x->final_loss, "%.4f", a, sizeof a),
                   (long long)x->steps, (long long)x->epochs);
    vn_text_printf(t, "<td>%s</td>", fmt_duration(x->wall_seconds, a, sizeof a));
    vn_text_printf(t, "<td>%s</td>", fmt_num(x->img_per_s, "%.0f", a, sizeof a));
    vn_text_printf(t, "<td>%s</td>", fmt_num(x->peak_rss_mb, "%.0f MiB", a, sizeof a));
    vn_text_printf(t, "<td>%s</td><td>%s</td><td class=\"l\"><code>", fmt_count(x->params, a, sizeof a),
                   fmt_count(x->macs, b, sizeof b));
    if (r > 0) vn__html_config_diff(t, v[0].run, x->run);
    vn_text_put(t, r == 0 ? "(reference)</code></td></tr>" : "</code></td></tr>");
}

static void compare_table(vn_text *t, const vn__run_view *v, int n)
{
    if (vn__det_count(v, n)) {
        vn__det_compare_table(t, v, n);
        return;
    }
    double best = -1;
    for (int r = 0; r < n; r++)
        if (v[r].best_top1 > best) best = v[r].best_top1;
    vn_text_put(t, "<h2>Runs</h2><div class=\"tbl\"><table><tr><th>run</th><th>best top-1</th><th>final top-1</th>"
                   "<th>train loss</th><th>steps</th><th>epochs</th><th>wall time</th><th>images/s</th>"
                   "<th>peak memory</th><th>params</th><th>MACs</th><th class=\"l\">config vs. the first run</th></tr>");
    char a[64];
    for (int r = 0; r < n; r++) {
        const vn__run_view *x = &v[r];
        vn_text_printf(t, "<tr%s><td><span class=\"sw\" style=\"background:#%06x\"></span>",
                       isfinite(x->best_top1) && x->best_top1 == best ? " class=\"best\"" : "", x->color);
        vn_text_escaped(t, x->run->name);
        vn_text_printf(t, "</td><td>%s</td>", fmt_num(x->best_top1, "%.2f%%", a, sizeof a));
        vn_text_printf(t, "<td>%s</td>", fmt_num(x->final_top1, "%.2f%%", a, sizeof a));
        vn__html_run_tail(t, v, r);
    }
    vn_text_put(t, "</table></div>");
}

static void ablation_section(vn_text *t, const vn_run_ablation *a)
{
    vn_text_put(t, "<h2>Ablation <code>");
    vn_text_escaped(t, a->name);
    vn_text_put(t, "</code></h2>");
    bool det = false;
    for (int i = 0; i < a->n_rows; i++) det = det || a->rows[i].detect;
    if (a->n_rows <= 0) {
        vn_text_put(t, "<p>No finished run yet (no results.csv, no result.json).</p>");
        return;
    }
    if (det) {
        vn__det_ablation_section(t, a);
        return;
    }
    const char **names = malloc((size_t)a->n_rows * sizeof *names);
    double *vals = malloc((size_t)a->n_rows * sizeof *vals);
    int top = 0;
    for (int i = 0; names && vals && i < a->n_rows; i++) {
        names[i] = a->rows[i].name;
        vals[i] = a->rows[i].best_top1;
        if (vals[i] > vals[top]) top = i;
    }
    vn_text_put(t, "<div class=\"tbl\"><table><tr><th>run</th><th>best top-1</th><th>final top-1</th>"
                   "<th>params (deploy)</th><th>MACs (deploy)</th><th>time</th></tr>");
    char a1[64], a2[64];
    for (int i = 0; i < a->n_rows; i++) {
        const vn_run_result *r = &a->rows[i];
        vn_text_printf(t, "<tr%s><td>", i == top ? " class=\"best\"" : "");
        vn_text_escaped(t, r->name);
        vn_text_printf(t, "</td><td>%.2f%%</td><td>%s</td><td>%s</td>", r->best_top1,
                       fmt_num(r->final_top1 >= 0 ? r->final_top1 : NAN, "%.2f%%", a1, sizeof a1),
                       fmt_count(r->params, a2, sizeof a2));
        vn_text_printf(t, "<td>%s</td><td>%s</td></tr>", fmt_count(r->macs, a1, sizeof a1),
                       fmt_duration(r->seconds, a2, sizeof a2));
    }
    vn_text_put(t, "</table></div><div class=\"panel\" style=\"margin-top:14px\"><h3>Best top-1 per run</h3>");
    if (names && vals) vn_bars_svg(names, vals, a->n_rows, "%", top, 0x2563eb, W_FULL, t);
    vn_text_put(t, "</div>");
    free(names);
    free(vals);
}

/* --------------------------------------------------------------------------- page */

/* One line on what a run trains: model, data, schedule, optimizer. */
static void run_facts(vn_text *t, const vn_run *run)
{
    if (run->detector) {
        vn__det_facts(t, run);
        return;
    }
    const vn_config *c = run->cfg;
    char model[64], dims[256], opt[64], lr[64];
    if (!c || vn_config_get(c, "model.name", model, sizeof model) < 0 ||
        vn_config_get(c, "model.dims", dims, sizeof dims) < 0 || vn_config_get(c, "optim.name", opt, sizeof opt) < 0 ||
        vn_config_get(c, "optim.lr", lr, sizeof lr) < 0)
        return;
    vn_text_put(t, "<div class=\"sub\">");
    vn_text_escaped(t, model);
    if (!strcmp(model, "custom")) vn_text_put(t, " VanillaNet");
    if (c->model.dims.n) {
        vn_text_put(t, " ");
        vn_text_escaped(t, dims);
    }
    vn_text_printf(t, " &middot; act_num %lld &middot; data <code>", (long long)c->model.act_num);
    vn_text_escaped(t, c->data.root);
    vn_text_printf(t, "</code> at %lld px &middot; %lld epochs, batch %lld", (long long)c->data.input_size,
                   (long long)c->train.epochs, (long long)c->train.batch_size);
    if (c->optim.update_freq > 1)
        vn_text_printf(t, " &times; %lld accumulated", (long long)c->optim.update_freq);
    vn_text_put(t, " &middot; ");
    vn_text_escaped(t, opt);
    vn_text_printf(t, " lr %s &middot; deep training over %lld epochs</div>", lr,
                   (long long)c->deep_training.decay_epochs);
}

static void page_head(vn_text *t, const vn_run_set *s, const char *title)
{
    vn_text_put(t, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>");
    vn_text_escaped(t, title);
    vn_text_printf(t, "</title><style>%s</style></head><body><header><div class=\"wrap\"><h1>", page_css);
    vn_text_escaped(t, title);
    vn_text_put(t, "</h1><div class=\"sub\">");
    for (int i = 0; i < s->n_runs && i < 6; i++) {
        vn_text_put(t, i ? " &middot; <code>" : "<code>");
        vn_text_escaped(t, s->runs[i].dir);
        vn_text_put(t, "</code>");
    }
    if (s->n_runs > 6) vn_text_printf(t, " and %d more", s->n_runs - 6);
    /* The newest record's time, not the clock: the same folders give the same page. */
    double last = 0;
    for (int r = 0; r < s->n_runs; r++)
        for (int k = 0; k < VN_RUN_KINDS; k++)
            for (int i = 0; i < s->runs[r].n_series[k]; i++) {
                const vn_run_series *x = &s->runs[r].series[k][i];
                if (x->n && isfinite(x->time[x->n - 1]) && x->time[x->n - 1] > last) last = x->time[x->n - 1];
            }
    char when[64] = "";
    time_t secs = (time_t)last;
    struct tm tm;
    if (last > 0 && gmtime_r(&secs, &tm))
        strftime(when, sizeof when, " &middot; last record %Y-%m-%d %H:%M UTC", &tm);
    vn_text_printf(t, "%s</div>", when);
    if (s->n_runs == 1) run_facts(t, &s->runs[0]);
    vn_text_put(t, "</div></header><main class=\"wrap\">");
}

static void page_body(vn_text *t, const vn_run_set *s, vn__run_view *v)
{
    int n = s->n_runs;
    bool multi = n > 1;
    notes_box(t, s);
    if (n == 0) {
        vn_text_put(t, "<h2>No run could be read</h2><p>Give run folders (the <code>output.dir</code> of "
                       "<code>vanilla train</code>) or ablation folders.</p>");
        return;
    }
    if (!multi) summary_cards(t, &v[0]);
    for (int i = 0; i < s->n_ablations; i++) ablation_section(t, &s->ablations[i]);
    if (multi) {
        compare_table(t, v, n);
        legend(t, v, n);
    }
    charts(t, v, n, multi);
    if (!multi) {
        run_details(t, &v[0]);
        return;
    }
    vn_text_put(t, "<h2>Each run</h2>");
    for (int r = 0; r < n; r++) {
        vn_text_printf(t, "<details><summary><span class=\"sw\" style=\"background:#%06x\"></span>", v[r].color);
        vn_text_escaped(t, s->runs[r].name);
        vn_text_put(t, s->runs[r].detector ? "<span class=\"n\">detector: per-class AP, evaluations, epochs, "
                                             "configuration, model, checkpoints</span>"
                                           : "<span class=\"n\">evaluations, epochs, configuration, model, "
                                             "checkpoints</span>");
        vn_text_put(t, "</summary><div style=\"padding:0 14px 14px\">");
        run_details(t, &v[r]);
        vn_text_put(t, "</div></details>");
    }
}

int vn_run_report_html_string(const vn_run_set *s, const vn_run_report_opts *o, char **out,
                              size_t *len, vn_error *err)
{
    *out = NULL;
    *len = 0;
    vn__run_view *v = calloc((size_t)(s->n_runs ? s->n_runs : 1), sizeof *v);
    if (!v) return vn_error_set(err, VN_ERR_NOMEM, "out of memory writing the report");
    int rc = VN_OK;
    for (int i = 0; rc == VN_OK && i < s->n_runs; i++) rc = vn__run_view_init(&v[i], &s->runs[i], vn__run_color(i));
    vn_text t = {0};
    if (rc == VN_OK) {
        char title[300];
        if (o && o->title) snprintf(title, sizeof title, "%s", o->title);
        else if (s->n_ablations == 1) snprintf(title, sizeof title, "Ablation %s", s->ablations[0].name);
        else if (s->n_runs == 1) snprintf(title, sizeof title, "Training run %s", s->runs[0].name);
        else snprintf(title, sizeof title, "Training report: %d runs", s->n_runs);
        page_head(&t, s, title);
        page_body(&t, s, v);
        vn_text_put(&t, "</main><footer class=\"wrap\">Written by <code>vanilla report</code>. Curves are "
                        "drawn from at most four points per pixel column (first, last, lowest, highest); "
                        "the figures and tables use every record.</footer></body></html>\n");
    }
    for (int i = 0; i < s->n_runs; i++) vn__run_view_free(&v[i]);
    free(v);
    if (rc == VN_OK && t.failed) rc = VN_ERR_NOMEM;
    if (rc != VN_OK) {
        vn_text_free(&t);
        return vn_error_set(err, rc, "out of memory writing the report");
    }
    *out = t.s;
    *len = t.len;
    return VN_OK;
}

int vn_run_report_html(const vn_run_set *s, const char *path, const vn_run_report_opts *o,
                       vn_error *err)
{
    char *page;
    size_t len;
    int rc = vn_run_report_html_string(s, o, &page, &len, err);
    if (rc != VN_OK) return rc;
    vn_fs_remove_stale_tmps(path);
    int e = vn_fs_write_atomic(path, page, len, false);
    free(page);
    return e ? vn_error_set(err, VN_ERR_IO, "cannot write %s: %s", path, strerror(e)) : VN_OK;
}

/* ------------------------------------------------------- pieces for report_detect.c */

void vn__html_card(vn_text *t, const char *key, const char *value, const char *detail, bool hi)
{
    card(t, key, value, detail, hi);
}

void vn__html_panel(vn_text *t, vn_chart *c, const char *title, bool full, bool multi)
{
    panel(t, c, title, full, multi);
}

const char *vn__fmt_num(double v, const char *f, char *buf, size_t len) { return fmt_num(v, f, buf, len); }
const char *vn__fmt_count(int64_t v, char *buf, size_t len) { return fmt_count(v, buf, len); }
const char *vn__fmt_duration(double s, char *buf, size_t len) { return fmt_duration(s, buf, len); }

void vn__html_config_diff(vn_text *t, const vn_run *ref, const vn_run *x)
{
    char *d = ref->cfg && x->cfg ? vn_config_diff_text(ref->cfg, x->cfg, true) : NULL;
    if (d) {
        for (char *p = d; *p; p++)
            if (*p == '\n' && p[1]) *p = ';';
        vn_text_escaped(t, d);
    }
    free(d);
}
