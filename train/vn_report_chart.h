/* Charts of run reports: line charts described once, drawn as inline SVG (the HTML page) or
 * into an RGB raster (PNG files). The geometry (data domain, ticks, pixel mapping,
 * decimation) is shared, so both drawings place every point alike.
 *
 * Decimation (vn_decimate_m4): a polyline of n points drawn over C pixel columns keeps, per
 * column, its first, last, lowest and highest point, at most 4 C points in x order. Drawn,
 * this covers the same pixels as the full polyline; the first and last points are always
 * kept, so a curve starts and ends at the first and last logged values. */
#ifndef VN_REPORT_CHART_H
#define VN_REPORT_CHART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A growing text buffer; on out-of-memory it stops growing and remembers it (check
 * failed once at the end). */
typedef struct vn_text {
    char *s;
    size_t len, cap;
    bool failed;
} vn_text;

void vn_text_printf(vn_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vn_text_put(vn_text *t, const char *s);
/* s with & < > " ' escaped for HTML/SVG text and attributes. */
void vn_text_escaped(vn_text *t, const char *s);
void vn_text_free(vn_text *t);

#define VN_CHART_MAX_LINES 24
#define VN_CHART_MAX_MARKS 8

typedef struct vn_chart_line {
    const double *x, *y;  /* n points; non-finite y leaves a gap */
    int64_t n;
    const char *label;    /* legend text; NULL: not in the legend */
    uint32_t color;       /* 0xRRGGBB */
    float width;          /* stroke width in pixels (0: 1.5) */
    float opacity;        /* 0: 1 */
    bool dashed;
    bool dots;            /* a marker at every point (evaluations), with its value as tooltip */
    const char *css;      /* class of the SVG path ("raw", "smooth", ...), NULL: none */
} vn_chart_line;

typedef struct vn_chart_mark {
    double x, y;
    const char *label;    /* "best 91.20%" */
    uint32_t color;
} vn_chart_mark;

typedef struct vn_chart {
    const char *title;    /* drawn in PNG; the page puts it in HTML */
    const char *x_label;  /* "step", "epoch" */
    const char *y_unit;   /* appended to y tick labels ("%"), NULL: none */
    bool y_zero;          /* include 0 in the y range */
    bool x_integer;       /* x ticks at whole numbers only (epochs) */
    bool has_x_hint;      /* the x range covers [x_min_hint, x_max_hint] too (aligned charts) */
    double x_min_hint, x_max_hint;
    double y_min_span;    /* the y range spans at least this much (0: no minimum) */
    vn_chart_line lines[VN_CHART_MAX_LINES];
    int n_lines;
    vn_chart_mark marks[VN_CHART_MAX_MARKS];
    int n_marks;
} vn_chart;

/* Data domain and pixel box of a chart drawn at w x h. */
typedef struct vn_plot {
    double x0, x1, y0, y1;            /* data at the box's left/right, bottom/top edges */
    double left, top, width, height;  /* the box in pixels (y grows downwards) */
    double y_step;                    /* y tick spacing */
    bool empty;                       /* no finite point at all */
} vn_plot;

/* Appends a line; returns it (NULL when the chart is full) for further settings. */
vn_chart_line *vn_chart_add(vn_chart *c, const double *x, const double *y, int64_t n,
                            const char *label, uint32_t color);
void vn_chart_mark_point(vn_chart *c, double x, double y, const char *label, uint32_t color);

/* The domain of every line's finite points (x exact, y widened to whole ticks) and the box
 * of a w x h drawing. scale multiplies margins and text (2 for PNG at double size). */
void vn_chart_layout(const vn_chart *c, int w, int h, double scale, vn_plot *p);
double vn_plot_px(const vn_plot *p, double x);
double vn_plot_py(const vn_plot *p, double y);
/* The value at pixel position px / py (inverse of the above). */
double vn_plot_x_at(const vn_plot *p, double px);
double vn_plot_y_at(const vn_plot *p, double py);

/* Ticks at 1, 2 or 5 x 10^k spacing covering [lo, hi] with about `target` of them; writes at
 * most max values into ticks and returns their count; *step receives the spacing. */
int vn_nice_ticks(double lo, double hi, int target, double *ticks, int max, double *step);
/* The y ticks of a laid-out plot: every y_step from y0 to y1. */
int vn_plot_y_ticks(const vn_plot *p, double *ticks, int max, double *step);
/* The x ticks of a chart (whole numbers when x_integer). */
int vn_chart_x_ticks(const vn_chart *c, const vn_plot *p, double *ticks, int max, double *step);
/* A compact tick label: "0.5", "1.2k", "40k", "3e-05". */
void vn_tick_label(double v, double step, char *buf, size_t len);

/* M4 decimation (see above) of points with finite y and x in [x0, x1] over `columns` pixel
 * columns: writes the kept indices, increasing, into keep (room for 4 * columns + 2) and
 * returns their count. */
int64_t vn_decimate_m4(const double *x, const double *y, int64_t n, double x0, double x1,
                       int columns, int64_t *keep);

/* Smoothed copy of y: a debiased exponential moving average over about `span` points (as
 * TensorBoard's smoothing) run forward and then backward, so it does not lag behind the
 * data; non-finite values are skipped (and stay NaN). out has n values and may be y. */
void vn_smooth_ema(const double *y, int64_t n, double span, double *out);

/* Appends <svg ...>...</svg> of the chart at w x h (viewBox units = pixels; it scales to its
 * container). The plot group carries data-x="x0 x1" data-y="y0 y1" data-box="left top width
 * height", so the coordinates can be read back. Returns VN_ERR_NOMEM when out of memory. */
int vn_chart_svg(const vn_chart *c, int w, int h, vn_text *out);

/* Horizontal bar chart (ablations): one bar per name, value labels at the bar ends. */
int vn_bars_svg(const char *const *names, const double *values, int n, const char *unit,
                int highlight, uint32_t color, int w, vn_text *out);

/* Draws the chart (title included) into an RGB raster of w x h and writes it as a PNG. */
int vn_chart_png(const vn_chart *c, int w, int h, const char *path, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif
