/* Figures derived from a run's records for the report page and the PNG charts (private to
 * train/report_*.c). */
#ifndef VN_REPORT_VIEW_H
#define VN_REPORT_VIEW_H

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

#endif
