/* Figures derived from a run's records for the report page and the PNG charts (private to
 * train/report_*.c). */
#ifndef VN_REPORT_VIEW_H
#define VN_REPORT_VIEW_H

#include <stdio.h>

#include "train/vn_report_chart.h"
#include "train/vn_run_report.h"

/* Per-epoch figures, from the step records grouped by their epoch (x = epoch + 1). */
typedef struct vn__epoch_view {
    int64_t n;
    double *x, *img_per_s, *wait_pct, *rss_mb;
} vn__epoch_view;

typedef struct vn__run_view {
    const vn_run *run;
    uint32_t color;
    double *loss_smooth;            /* per step record of "loss" */
    vn__epoch_view ep;
    /* Summary, from all the data. */
    double best_top1, best_step, best_epoch, final_top1, final_loss;
    char best_source[32];           /* "model", "EMA 0.9999" */
    int64_t steps, epochs;
    double wall_seconds, img_per_s, wait_pct, peak_rss_mb;
    int64_t params, macs, deploy_params, deploy_macs; /* < 0: unknown */
    int input_size;
    /* Detector runs (run->detector; report_detect.c). */
    vn_run_det_summary det;
    double *det_smooth[3];          /* per step record of box_loss, cls_loss, dfl_loss */
    double *det_x[4];               /* epoch + 1 per record of val_P, val_R, val_mAP50, val_mAP50-95 */
    char det_best_label[48];
} vn__run_view;

int vn__run_view_init(vn__run_view *v, const vn_run *run, uint32_t color);
void vn__run_view_free(vn__run_view *v);

/* "EMA 0.9999" (the decay from the run's config), else "EMA <e>". */
void vn__ema_name(const vn_run *run, int e, char *buf, size_t len);

/* A record's epoch as an index; -1 when missing (NaN) or absurd. */
int64_t vn__epoch_index(double epoch);

/* Colour of run i in overlays. */
uint32_t vn__run_color(int i);

/* Rows of the label buffer the top-1 and evaluation-loss charts write into. */
#define VN_CHART_LABELS (VN_CHART_MAX_LINES + 8)

/* Chart builders shared by the page and the PNG files; lines point into the views. With
 * several runs (multi) the lines are labelled with the run names (the page leaves those out
 * of its charts: it has one legend for all). */
void vn__chart_loss(vn_chart *c, const vn__run_view *v, int n, bool multi);
void vn__chart_top1(vn_chart *c, const vn__run_view *v, int n, bool multi, char labels[][96]);
void vn__chart_step_series(vn_chart *c, const vn__run_view *v, int n, bool multi, const char *name);
void vn__chart_eval_loss(vn_chart *c, const vn__run_view *v, int n, bool multi, char labels[][96]);
/* which: 0 throughput, 1 data wait, 2 peak RSS. */
void vn__chart_epoch(vn_chart *c, const vn__run_view *v, int n, bool multi, int which);

/* ---- detector runs (report_detect.c) ---- */

/* The detector parts of a view: summary, sizes, smoothed losses, epoch axes. */
int vn__det_view_init(vn__run_view *v);
void vn__det_view_free(vn__run_view *v);
/* Runs of the views that are detectors. */
int vn__det_count(const vn__run_view *v, int n);
/* which: 0 box_loss, 1 cls_loss, 2 dfl_loss per step (raw and smoothed). */
void vn__chart_det_loss(vn_chart *c, const vn__run_view *v, int n, bool multi, int which);
/* which: 0 precision, 1 recall, 2 mAP50, 3 mAP50-95 per evaluation, against the epoch. */
void vn__chart_det_metric(vn_chart *c, const vn__run_view *v, int n, bool multi, int which);
/* The detector charts as PNG files <prefix>box_loss.png ... mAP50-95.png (those with data). */
int vn__det_png(const vn__run_view *v, int n, bool multi, const char *prefix, FILE *log, vn_error *err);

/* Page sections of detector runs (report_detect.c), drawn with report_html.c's pieces. */
void vn__det_cards(vn_text *t, const vn__run_view *v);
void vn__det_charts(vn_text *t, const vn__run_view *v, int n, bool multi);
void vn__det_tables(vn_text *t, const vn__run_view *v);
void vn__det_model_section(vn_text *t, const vn__run_view *v);
void vn__det_compare_table(vn_text *t, const vn__run_view *v, int n);
void vn__det_ablation_section(vn_text *t, const vn_run_ablation *a);
void vn__det_facts(vn_text *t, const vn_run *run);

/* report_html.c's pieces for report_detect.c. */
void vn__html_card(vn_text *t, const char *key, const char *value, const char *detail, bool hi);
void vn__html_panel(vn_text *t, vn_chart *c, const char *title, bool full, bool multi);
const char *vn__fmt_num(double v, const char *f, char *buf, size_t len);
const char *vn__fmt_count(int64_t v, char *buf, size_t len);
const char *vn__fmt_duration(double s, char *buf, size_t len);
/* The columns every run row of the comparison table ends with: train loss, steps, epochs, wall
 * time, images/s, peak memory, params, MACs and the config against run 0's; closes the row. */
void vn__html_run_tail(vn_text *t, const vn__run_view *v, int r);
/* The "Model" section: report r's layers at size x size in a collapsed table, its summary
 * "<what>N layers, P parameters, M MACs" and where the model came from (source). */
void vn__html_layer_table(vn_text *t, const vn_report *r, const char *what, int size,
                          const char *source);
/* The config of x against the reference's, as "a.b: 1 -> 2; ..." (escaped), or nothing. */
void vn__html_config_diff(vn_text *t, const vn_run *ref, const vn_run *x);

#endif
