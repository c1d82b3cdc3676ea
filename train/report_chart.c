/* Chart geometry shared by the SVG and PNG drawings, and the SVG drawing itself
 * (see vn_report_chart.h). */
#include "train/vn_report_chart.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------ text */

static bool text_reserve(vn_text *t, size_t more)
{
    if (t->failed) return false;
    if (t->len + more + 1 <= t->cap) return true;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + more + 1) cap *= 2;
    char *s = realloc(t->s, cap);
    if (!s) {
        t->failed = true;
        return false;
    }
    t->s = s;
    t->cap = cap;
    return true;
}

void vn_text_printf(vn_text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !text_reserve(t, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

void vn_text_put(vn_text *t, const char *s)
{
    size_t n = strlen(s);
    if (!text_reserve(t, n)) return;
    memcpy(t->s + t->len, s, n + 1);
    t->len += n;
}

/* Length of the well-formed UTF-8 sequence at s (1 to 4), 0 when it is not one (a stray
 * continuation byte, an overlong form, a surrogate, past U+10FFFF, cut short). */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))) return 0;
    if (n == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))) return 0;
    return n;
}

void vn_text_escaped(vn_text *t, const char *s)
{
    for (; s && *s; s++) {
        int n = utf8_len((const unsigned char *)s);
        if (n == 0) { /* not UTF-8 (a folder name in another encoding): U+FFFD, the page stays valid */
            vn_text_put(t, "\xef\xbf\xbd");
            continue;
        }
        if (n > 1) {
            if (text_reserve(t, (size_t)n)) {
                memcpy(t->s + t->len, s, (size_t)n);
                t->len += (size_t)n;
                t->s[t->len] = '\0';
            }
            s += n - 1;
            continue;
        }
        switch (*s) {
        case '&': vn_text_put(t, "&amp;"); break;
        case '<': vn_text_put(t, "&lt;"); break;
        case '>': vn_text_put(t, "&gt;"); break;
        case '"': vn_text_put(t, "&quot;"); break;
        case '\'': vn_text_put(t, "&#39;"); break;
        default:
            if (text_reserve(t, 1)) {
                t->s[t->len++] = *s;
                t->s[t->len] = '\0';
            }
        }
    }
}

void vn_text_free(vn_text *t)
{
    free(t->s);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------------------- chart */

vn_chart_line *vn_chart_add(vn_chart *c, const double *x, const double *y, int64_t n,
                            const char *label, uint32_t color)
{
    if (c->n_lines >= VN_CHART_MAX_LINES || n <= 0) return NULL;
    vn_chart_line *l = &c->lines[c->n_lines++];
    memset(l, 0, sizeof *l);
    l->x = x;
    l->y = y;
    l->n = n;
    l->label = label;
    l->color = color;
    return l;
}

void vn_chart_mark_point(vn_chart *c, double x, double y, const char *label, uint32_t color)
{
    if (c->n_marks >= VN_CHART_MAX_MARKS || !isfinite(x) || !isfinite(y)) return;
    vn_chart_mark m = {x, y, label, color};
    c->marks[c->n_marks++] = m;
}

int vn_nice_ticks(double lo, double hi, int target, double *ticks, int max, double *step)
{
    if (!(hi > lo) || target < 1) {
        *step = 1;
        if (max > 0) ticks[0] = lo;
        return max > 0 ? 1 : 0;
    }
    double raw = (hi - lo) / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double s = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    *step = s;
    int n = 0;
    for (double k = ceil(lo / s - 1e-9); n < max && k * s <= hi + s * 1e-9; k++)
        ticks[n++] = fabs(k * s) < s * 1e-9 ? 0 : k * s;
    return n;
}

void vn_tick_label(double v, double step, char *buf, size_t len)
{
    double a = fabs(v);
    if (v == 0) {
        snprintf(buf, len, "0");
    } else if (step >= 1e6) { /* the spacing decides, so one axis never mixes 8000 and 10k */
        snprintf(buf, len, "%gM", v / 1e6);
    } else if (step >= 1e3) {
        snprintf(buf, len, "%gk", v / 1e3);
    } else if (a < 1e-3) {
        snprintf(buf, len, "%.2g", v);
    } else {
        /* As many decimals as the spacing needs. */
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        if (dec > 6) dec = 6;
        snprintf(buf, len, "%.*f", dec, v);
    }
}

static void data_range(const vn_chart *c, double *x0, double *x1, double *y0, double *y1)
{
    *x0 = *y0 = DBL_MAX;
    *x1 = *y1 = -DBL_MAX;
    for (int i = 0; i < c->n_lines; i++) {
        const vn_chart_line *l = &c->lines[i];
        for (int64_t k = 0; k < l->n; k++) {
            if (!isfinite(l->x[k]) || !isfinite(l->y[k])) continue;
            if (l->x[k] < *x0) *x0 = l->x[k];
            if (l->x[k] > *x1) *x1 = l->x[k];
            if (l->y[k] < *y0) *y0 = l->y[k];
            if (l->y[k] > *y1) *y1 = l->y[k];
        }
    }
    for (int i = 0; i < c->n_marks; i++) {
        if (c->marks[i].y < *y0) *y0 = c->marks[i].y;
        if (c->marks[i].y > *y1) *y1 = c->marks[i].y;
    }
    if (c->has_x_hint && *x0 <= *x1) {
        *x0 = fmin(*x0, c->x_min_hint);
        *x1 = fmax(*x1, c->x_max_hint);
    }
}

void vn_chart_layout(const vn_chart *c, int w, int h, double scale, vn_plot *p)
{
    memset(p, 0, sizeof *p);
    double x0, x1, y0, y1;
    data_range(c, &x0, &x1, &y0, &y1);
    p->empty = x0 > x1;
    if (p->empty) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (c->y_zero && y0 > 0) y0 = 0;
    if (c->y_zero && y1 < 0) y1 = 0;
    if (x1 <= x0) x0 -= 0.5, x1 += 0.5;
    if (c->y_min_span > 0 && y1 - y0 < c->y_min_span) {
        double grow = c->y_min_span - (y1 - y0);
        bool low_fixed = c->y_zero && y0 == 0;
        y0 -= low_fixed ? 0 : grow / 2;
        y1 += low_fixed ? grow : grow / 2;
    }
    if (y1 <= y0) {
        double d = fabs(y0) > 0 ? fabs(y0) * 0.05 : 0.5;
        y0 -= d, y1 += d;
    }
    double ticks[32], step;
    vn_nice_ticks(y0, y1, 4, ticks, 32, &step);
    p->y_step = step;
    p->y0 = floor(y0 / step + 1e-9) * step;
    p->y1 = ceil(y1 / step - 1e-9) * step;
    p->x0 = x0;
    p->x1 = x1;
    bool legend = false;
    for (int i = 0; i < c->n_lines; i++) legend = legend || c->lines[i].label;
    bool title = c->title && scale > 1.01;
    p->left = 52 * scale;
    p->top = (legend ? 26 : 12) * scale + (title ? 26 * scale : 0);
    p->width = w - p->left - 14 * scale;
    p->height = h - p->top - 38 * scale;
    if (p->width < 10) p->width = 10;
    if (p->height < 10) p->height = 10;
}

int vn_plot_y_ticks(const vn_plot *p, double *ticks, int max, double *step)
{
    /* The spacing the layout widened the range to, so both ends carry a tick. */
    *step = p->y_step;
    int n = 0;
    for (double k = round(p->y0 / p->y_step); n < max && k * p->y_step <= p->y1 + p->y_step * 1e-9; k++)
        ticks[n++] = fabs(k) < 1e-9 ? 0 : k * p->y_step;
    return n;
}

int vn_chart_x_ticks(const vn_chart *c, const vn_plot *p, double *ticks, int max, double *step)
{
    int n = vn_nice_ticks(p->x0, p->x1, 6, ticks, max, step);
    if (!c->x_integer || *step >= 1) return n;
    /* Whole numbers only: every integer inside the range. */
    *step = 1;
    n = 0;
    for (double v = ceil(p->x0); v <= p->x1 && n < max; v++) ticks[n++] = v;
    return n;
}

double vn_plot_px(const vn_plot *p, double x) { return p->left + (x - p->x0) / (p->x1 - p->x0) * p->width; }
double vn_plot_py(const vn_plot *p, double y) { return p->top + (p->y1 - y) / (p->y1 - p->y0) * p->height; }
double vn_plot_x_at(const vn_plot *p, double px) { return p->x0 + (px - p->left) / p->width * (p->x1 - p->x0); }
double vn_plot_y_at(const vn_plot *p, double py) { return p->y1 - (py - p->top) / p->height * (p->y1 - p->y0); }

/* ----------------------------------------------------------------------- decimation */

int64_t vn_decimate_m4(const double *x, const double *y, int64_t n, double x0, double x1,
                       int columns, int64_t *keep)
{
    if (columns < 1) columns = 1;
    int64_t m = 0;
    int64_t first = -1, last = -1, lo = -1, hi = -1;
    long col = -1;
    double span = x1 > x0 ? x1 - x0 : 1;
    for (int64_t i = 0; i <= n; i++) {
        long c = -2;
        if (i < n) {
            if (!isfinite(y[i]) || !isfinite(x[i]) || x[i] < x0 || x[i] > x1) continue;
            c = (long)floor((x[i] - x0) / span * columns);
            if (c >= columns) c = columns - 1;
        }
        if (c != col && first >= 0) {
            /* Flush the column: its four points in index (x) order, without repeats. */
            int64_t pts[4] = {first, lo, hi, last};
            for (int a = 1; a < 4; a++)
                for (int b = a; b > 0 && pts[b] < pts[b - 1]; b--) {
                    int64_t t = pts[b];
                    pts[b] = pts[b - 1];
                    pts[b - 1] = t;
                }
            for (int a = 0; a < 4; a++)
                if (m == 0 || keep[m - 1] != pts[a]) keep[m++] = pts[a];
            first = -1;
        }
        if (i == n) break;
        if (first < 0) {
            col = c;
            first = last = lo = hi = i;
        } else {
            last = i;
            if (y[i] < y[lo]) lo = i;
            if (y[i] > y[hi]) hi = i;
        }
    }
    return m;
}

/* One debiased EMA pass over y in the given direction (dir +1 or -1). */
static void ema_pass(const double *y, int64_t n, double beta, int dir, double *out)
{
    double acc = 0, weight = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t i = dir > 0 ? k : n - 1 - k;
        if (isfinite(y[i])) {
            acc = beta * acc + (1 - beta) * y[i];
            weight = beta * weight + (1 - beta);
        }
        out[i] = weight > 0 ? acc / weight : NAN;
    }
}

void vn_smooth_ema(const double *y, int64_t n, double span, double *out)
{
    double beta = span > 1 ? 1.0 - 1.0 / span : 0.0;
    /* Forward, then backward over the result: the lag of the first pass is undone, so the
     * smoothed line runs through the middle of the raw one on steep stretches too. */
    ema_pass(y, n, beta, 1, out);
    ema_pass(out, n, beta, -1, out);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(y[i])) out[i] = NAN;
}

/* ------------------------------------------------------------------------------ SVG */

static void svg_color(vn_text *t, uint32_t c) { vn_text_printf(t, "#%06x", c & 0xffffffu); }

static void svg_axes(vn_text *t, const vn_chart *c, const vn_plot *p)
{
    double ticks[32], step;
    char lab[48];
    int n = vn_plot_y_ticks(p, ticks, 32, &step);
    vn_text_put(t, "<g class=\"grid\">");
    for (int i = 0; i < n; i++) {
        double y = vn_plot_py(p, ticks[i]);
        vn_tick_label(ticks[i], step, lab, sizeof lab);
        vn_text_printf(t, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", p->left,
                       p->left + p->width, y, y);
        vn_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" class=\"yt\">%s%s</text>", p->left - 6,
                       y + 3.5, lab, c->y_unit ? c->y_unit : "");
    }
    n = vn_chart_x_ticks(c, p, ticks, 32, &step);
    for (int i = 0; i < n; i++) {
        double x = vn_plot_px(p, ticks[i]);
        vn_tick_label(ticks[i], step, lab, sizeof lab);
        vn_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" class=\"xt\">%s</text>", x,
                       p->top + p->height + 15, lab);
    }
    vn_text_printf(t, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>",
                   p->left, p->left + p->width, p->top + p->height, p->top + p->height);
    vn_text_put(t, "</g>");
    if (c->x_label)
        vn_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" class=\"xl\">%s</text>",
                       p->left + p->width, p->top + p->height + 31, c->x_label);
}

static void svg_legend(vn_text *t, const vn_chart *c, const vn_plot *p)
{
    double x = p->left;
    for (int i = 0; i < c->n_lines; i++) {
        const vn_chart_line *l = &c->lines[i];
        if (!l->label) continue;
        vn_text_printf(t, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"10\" y2=\"10\" stroke=\"", x, x + 16);
        svg_color(t, l->color);
        vn_text_printf(t, "\" stroke-width=\"2.5\"%s", l->dashed ? " stroke-dasharray=\"4 3\"" : "");
        if (l->opacity > 0 && l->opacity < 1) vn_text_printf(t, " stroke-opacity=\"%.2g\"", l->opacity);
        vn_text_put(t, "/>");
        vn_text_printf(t, "<text x=\"%.1f\" y=\"14\" class=\"lg\">", x + 20);
        vn_text_escaped(t, l->label);
        vn_text_put(t, "</text>");
        x += 20 + 6.3 * (double)strlen(l->label) + 14;
    }
}

static void svg_line(vn_text *t, const vn_chart_line *l, const vn_plot *p, int64_t *keep)
{
    int64_t m = vn_decimate_m4(l->x, l->y, l->n, p->x0, p->x1, (int)ceil(p->width), keep);
    if (m == 0) return;
    vn_text_put(t, "<path");
    if (l->css) vn_text_printf(t, " class=\"%s\"", l->css);
    vn_text_put(t, " fill=\"none\" stroke=\"");
    svg_color(t, l->color);
    vn_text_printf(t, "\" stroke-width=\"%.2g\"", l->width > 0 ? l->width : 1.5);
    if (l->opacity > 0 && l->opacity < 1) vn_text_printf(t, " stroke-opacity=\"%.2g\"", l->opacity);
    if (l->dashed) vn_text_put(t, " stroke-dasharray=\"5 3\"");
    vn_text_put(t, " stroke-linejoin=\"round\" d=\"");
    bool after_move = false;
    for (int64_t k = 0; k < m; k++) {
        int64_t i = keep[k];
        /* Non-finite values between two kept points leave a gap: a new subpath. */
        bool gap = false;
        for (int64_t j = k ? keep[k - 1] + 1 : i; j < i && !gap; j++) gap = !isfinite(l->y[j]);
        if (k == 0 || gap) {
            vn_text_put(t, k ? " M" : "M");
            after_move = true;
        } else {
            vn_text_put(t, after_move ? " L" : " ");
            after_move = false;
        }
        vn_text_printf(t, "%.1f %.1f", vn_plot_px(p, l->x[i]), vn_plot_py(p, l->y[i]));
    }
    vn_text_put(t, "\"/>");
    if (!l->dots || l->n > 400) return;
    vn_text_put(t, "<g fill=\"");
    svg_color(t, l->color);
    vn_text_put(t, "\">");
    for (int64_t i = 0; i < l->n; i++) {
        if (!isfinite(l->y[i])) continue;
        vn_text_printf(t, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.6\"><title>", vn_plot_px(p, l->x[i]),
                       vn_plot_py(p, l->y[i]));
        vn_text_escaped(t, l->label ? l->label : "");
        vn_text_printf(t, "%s%g: %.4g</title></circle>", l->label ? " at " : "", l->x[i], l->y[i]);
    }
    vn_text_put(t, "</g>");
}

int vn_chart_svg(const vn_chart *c, int w, int h, vn_text *out)
{
    vn_plot p;
    vn_chart_layout(c, w, h, 1.0, &p);
    int64_t *keep = malloc(((size_t)ceil(p.width) * 4 + 8) * sizeof *keep);
    if (!keep) return VN_ERR_NOMEM;
    vn_text_printf(out, "<svg class=\"chart\" viewBox=\"0 0 %d %d\" xmlns=\"http://www.w3.org/2000/svg\" "
                   "role=\"img\">", w, h);
    svg_legend(out, c, &p);
    svg_axes(out, c, &p);
    vn_text_printf(out, "<g class=\"plot\" data-x=\"%.17g %.17g\" data-y=\"%.17g %.17g\" "
                   "data-box=\"%g %g %g %g\">", p.x0, p.x1, p.y0, p.y1, p.left, p.top, p.width,
                   p.height);
    if (p.empty)
        vn_text_printf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"none\">no data yet</text>",
                       p.left + p.width / 2, p.top + p.height / 2);
    for (int i = 0; i < c->n_lines; i++) svg_line(out, &c->lines[i], &p, keep);
    for (int i = 0; i < c->n_marks; i++) {
        const vn_chart_mark *m = &c->marks[i];
        double x = vn_plot_px(&p, m->x), y = vn_plot_py(&p, m->y);
        vn_text_printf(out, "<circle class=\"best\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\" stroke=\"", x, y);
        svg_color(out, m->color);
        vn_text_put(out, "\"/>");
        if (m->label) {
            bool right = x < p.left + p.width * 0.7;
            vn_text_printf(out, "<text class=\"mark\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">",
                           right ? x + 8 : x - 8, y < p.top + 14 ? y + 15 : y - 8, right ? "start" : "end");
            vn_text_escaped(out, m->label);
            vn_text_put(out, "</text>");
        }
    }
    vn_text_put(out, "</g></svg>");
    free(keep);
    return out->failed ? VN_ERR_NOMEM : VN_OK;
}

int vn_bars_svg(const char *const *names, const double *values, int n, const char *unit,
                int highlight, uint32_t color, int w, vn_text *out)
{
    double hi = 0;
    size_t longest = 4;
    for (int i = 0; i < n; i++) {
        if (isfinite(values[i]) && values[i] > hi) hi = values[i];
        if (strlen(names[i]) > longest) longest = strlen(names[i]);
    }
    double label_w = fmin(6.6 * (double)longest + 12, w * 0.4), bar_h = 22, gap = 8;
    double plot_w = w - label_w - 70;
    int h = (int)(n * (bar_h + gap) + 10);
    if (hi <= 0) hi = 1;
    vn_text_printf(out, "<svg class=\"chart bars\" viewBox=\"0 0 %d %d\" xmlns=\"http://www.w3.org/2000/svg\" "
                   "role=\"img\">", w, h);
    for (int i = 0; i < n; i++) {
        double y = 5 + i * (bar_h + gap), v = isfinite(values[i]) ? values[i] : 0;
        double bw = plot_w * v / hi;
        vn_text_printf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"yt\">", label_w - 8, y + bar_h / 2 + 4);
        vn_text_escaped(out, names[i]);
        vn_text_printf(out, "</text><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" rx=\"3\" fill=\"",
                       label_w, y, bw, bar_h);
        svg_color(out, color);
        vn_text_printf(out, "\" fill-opacity=\"%s\"/>", i == highlight ? "1" : "0.55");
        char num[32];
        if (isfinite(values[i])) snprintf(num, sizeof num, "%.2f%s", values[i], unit ? unit : "");
        else snprintf(num, sizeof num, "n/a");
        vn_text_printf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"bv%s\">%s</text>", label_w + bw + 6,
                       y + bar_h / 2 + 4, i == highlight ? " top" : "", num);
    }
    vn_text_put(out, "</svg>");
    return out->failed ? VN_ERR_NOMEM : VN_OK;
}
