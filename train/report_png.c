/* Charts as PNG files: the chart geometry of report_chart.c drawn into an RGB raster with
 * anti-aliased lines and a 5x7 pixel font, written by data/'s PNG writer (libpng). */
#include "train/vn_report_chart.h"

#include "data/vn_image.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 5x7 glyphs (descenders in an eighth row), one byte per row, bit 4 = leftmost column; drawn
 * for this project. */
static const char glyph_chars[] =
    " 0123456789.-+%()/:_,abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ=[]?!<>*#'&;";
static const uint8_t glyphs[][8] = {
    {0, 0, 0, 0, 0, 0, 0},
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},
    {0, 0, 0, 0, 0, 0x0C, 0x0C},                {0, 0, 0, 0x0E, 0, 0, 0},
    {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0},       {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03},
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},
    {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}, {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0},
    {0, 0, 0, 0, 0, 0, 0x1F},                   {0, 0, 0, 0, 0x0C, 0x04, 0x08},
    /* a-z */
    {0, 0, 0x0E, 0x01, 0x0F, 0x11, 0x0F}, {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E},
    {0, 0, 0x0E, 0x10, 0x10, 0x11, 0x0E}, {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F},
    {0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E}, {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08},
    {0, 0, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}, {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11},
    {0x04, 0, 0x0C, 0x04, 0x04, 0x04, 0x0E}, {0x02, 0, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0C},
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}, {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},
    {0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11}, {0, 0, 0x16, 0x19, 0x11, 0x11, 0x11},
    {0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E}, {0, 0, 0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10},
    {0, 0, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x01}, {0, 0, 0x16, 0x19, 0x10, 0x10, 0x10},
    {0, 0, 0x0E, 0x10, 0x0E, 0x01, 0x1E}, {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06},
    {0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D}, {0, 0, 0x11, 0x11, 0x11, 0x0A, 0x04},
    {0, 0, 0x11, 0x11, 0x15, 0x15, 0x0A}, {0, 0, 0x11, 0x0A, 0x04, 0x0A, 0x11},
    {0, 0, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E}, {0, 0, 0x1F, 0x02, 0x04, 0x08, 0x1F},
    /* A-Z */
    {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}, {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E},
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}, {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C},
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}, {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10},
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}, {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F},
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}, {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10},
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}, {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11},
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}, {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04},
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}, {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11},
    {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F},
    /* = [ ] ? ! < > * # ' & ; */
    {0, 0, 0x1F, 0, 0x1F, 0, 0},                {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E},
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}, {0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04},
    {0x04, 0x04, 0x04, 0x04, 0x04, 0, 0x04},    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02},
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}, {0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0},
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}, {0x04, 0x04, 0x08, 0, 0, 0, 0},
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D}, {0, 0x0C, 0x0C, 0, 0x0C, 0x04, 0x08},
};
_Static_assert(sizeof glyphs / sizeof *glyphs == sizeof glyph_chars - 1, "one glyph per character");

typedef struct canvas {
    int w, h;
    uint8_t *rgb;
    float *cover; /* per-pixel coverage of the shape being drawn */
} canvas;

static void blend(canvas *c, int x, int y, uint32_t color, float a)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h || a <= 0) return;
    if (a > 1) a = 1;
    uint8_t *p = c->rgb + ((size_t)y * c->w + x) * 3;
    uint8_t src[3] = {(uint8_t)(color >> 16), (uint8_t)(color >> 8), (uint8_t)color};
    for (int k = 0; k < 3; k++) p[k] = (uint8_t)lrintf(p[k] + (src[k] - p[k]) * a);
}

static void fill_rect(canvas *c, int x, int y, int w, int h, uint32_t color)
{
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++) blend(c, i, j, color, 1);
}

static int text_width(const char *s, int scale) { return (int)strlen(s) * 6 * scale; }

/* align: 0 left, 1 centre, 2 right of x; y is the top of the glyphs. */
static void draw_text(canvas *c, const char *s, int x, int y, int scale, int align, uint32_t color)
{
    x -= align == 1 ? text_width(s, scale) / 2 : align == 2 ? text_width(s, scale) : 0;
    for (; *s; s++, x += 6 * scale) {
        const char *g = strchr(glyph_chars, *s);
        if (!g) g = strchr(glyph_chars, '?'); /* a character the font lacks */
        const uint8_t *rows = glyphs[g - glyph_chars];
        for (int r = 0; r < 8; r++)
            for (int b = 0; b < 5; b++)
                if (rows[r] & (0x10 >> b)) fill_rect(c, x + b * scale, y + r * scale, scale, scale, color);
    }
}

/* Coverage of a segment of half-width hw, kept as the maximum per pixel, so the joints of a
 * polyline are not drawn twice. */
static void cover_segment(canvas *c, double x0, double y0, double x1, double y1, double hw)
{
    int ax = (int)floor(fmin(x0, x1) - hw - 1), bx = (int)ceil(fmax(x0, x1) + hw + 1);
    int ay = (int)floor(fmin(y0, y1) - hw - 1), by = (int)ceil(fmax(y0, y1) + hw + 1);
    double dx = x1 - x0, dy = y1 - y0, l2 = dx * dx + dy * dy;
    for (int y = ay < 0 ? 0 : ay; y <= by && y < c->h; y++)
        for (int x = ax < 0 ? 0 : ax; x <= bx && x < c->w; x++) {
            double px = x + 0.5 - x0, py = y + 0.5 - y0;
            double t = l2 > 0 ? fmax(0, fmin(1, (px * dx + py * dy) / l2)) : 0;
            double ex = px - t * dx, ey = py - t * dy, d = sqrt(ex * ex + ey * ey);
            float a = (float)fmin(1, fmax(0, hw + 0.5 - d));
            float *cv = &c->cover[(size_t)y * c->w + x];
            if (a > *cv) *cv = a;
        }
}

static void cover_flush(canvas *c, uint32_t color, float opacity)
{
    size_t n = (size_t)c->w * c->h;
    for (size_t i = 0; i < n; i++)
        if (c->cover[i] > 0) {
            blend(c, (int)(i % (size_t)c->w), (int)(i / (size_t)c->w), color, c->cover[i] * opacity);
            c->cover[i] = 0;
        }
}

/* A segment, cut into dashes of `on` pixels every `period` pixels of the path when dashed. */
static void cover_piece(canvas *c, double x0, double y0, double x1, double y1, double hw,
                        double on, double period, double *walked)
{
    double len = hypot(x1 - x0, y1 - y0);
    if (period <= 0 || len == 0) {
        cover_segment(c, x0, y0, x1, y1, hw);
        return;
    }
    for (double s = 0; s < len;) {
        double phase = fmod(*walked + s, period), run = phase < on ? on - phase : period - phase;
        double e = fmin(len, s + run);
        if (phase < on)
            cover_segment(c, x0 + (x1 - x0) * s / len, y0 + (y1 - y0) * s / len,
                          x0 + (x1 - x0) * e / len, y0 + (y1 - y0) * e / len, hw);
        s = e;
    }
    *walked += len;
}

static void draw_line(canvas *c, const vn_chart_line *l, const vn_plot *p, double scale, int64_t *keep)
{
    int64_t m = vn_decimate_m4(l->x, l->y, l->n, p->x0, p->x1, (int)ceil(p->width), keep);
    double hw = (l->width > 0 ? l->width : 1.5) * scale / 2, walked = 0;
    for (int64_t k = 1; k < m; k++) {
        int64_t i = keep[k - 1], j = keep[k];
        bool gap = false;
        for (int64_t q = i + 1; q < j && !gap; q++) gap = !isfinite(l->y[q]);
        if (gap) continue;
        cover_piece(c, vn_plot_px(p, l->x[i]), vn_plot_py(p, l->y[i]), vn_plot_px(p, l->x[j]),
                    vn_plot_py(p, l->y[j]), hw, 5 * scale, l->dashed ? 8 * scale : 0, &walked);
    }
    if (m == 1) cover_segment(c, vn_plot_px(p, l->x[keep[0]]), vn_plot_py(p, l->y[keep[0]]),
                              vn_plot_px(p, l->x[keep[0]]), vn_plot_py(p, l->y[keep[0]]), hw);
    for (int64_t i = 0; l->dots && l->n <= 400 && i < l->n; i++)
        if (isfinite(l->y[i]))
            cover_segment(c, vn_plot_px(p, l->x[i]), vn_plot_py(p, l->y[i]), vn_plot_px(p, l->x[i]),
                          vn_plot_py(p, l->y[i]), 2.8 * scale);
    cover_flush(c, l->color, l->opacity > 0 ? l->opacity : 1);
}

static void draw_axes(canvas *c, const vn_chart *ch, const vn_plot *p, int s)
{
    double ticks[32], step;
    char lab[48], full[64];
    int n = vn_plot_y_ticks(p, ticks, 32, &step);
    for (int i = 0; i < n; i++) {
        int y = (int)lrint(vn_plot_py(p, ticks[i]));
        fill_rect(c, (int)p->left, y, (int)p->width, s, 0xeef0f3);
        vn_tick_label(ticks[i], step, lab, sizeof lab);
        snprintf(full, sizeof full, "%s%s", lab, ch->y_unit ? ch->y_unit : "");
        draw_text(c, full, (int)p->left - 6 * s, y - 3 * s, s, 2, 0x6b7280);
    }
    fill_rect(c, (int)p->left, (int)(p->top + p->height), (int)p->width, s, 0x9ca3af);
    n = vn_chart_x_ticks(ch, p, ticks, 32, &step);
    for (int i = 0; i < n; i++) {
        vn_tick_label(ticks[i], step, lab, sizeof lab);
        draw_text(c, lab, (int)vn_plot_px(p, ticks[i]), (int)(p->top + p->height) + 6 * s, s, 1, 0x6b7280);
    }
    if (ch->x_label)
        draw_text(c, ch->x_label, (int)(p->left + p->width), (int)(p->top + p->height) + 20 * s, s, 2, 0x9ca3af);
}

static void draw_chart(canvas *c, const vn_chart *ch, const vn_plot *p, int s, int64_t *keep)
{
    memset(c->rgb, 255, (size_t)c->w * c->h * 3);
    if (ch->title) draw_text(c, ch->title, (int)p->left, 8 * s, 2 * s, 0, 0x1f2937);
    double lx = p->left;
    for (int i = 0; i < ch->n_lines; i++) {
        const vn_chart_line *l = &ch->lines[i];
        if (!l->label) continue;
        int y = (int)(p->top - 16 * s);
        for (int j = 0; j < 2 * s; j++)
            for (int i = 0; i < 16 * s; i++)
                blend(c, (int)lx + i, y + 3 * s + j, l->color, l->opacity > 0 ? l->opacity : 1);
        draw_text(c, l->label, (int)lx + 20 * s, y, s, 0, 0x374151);
        lx += 20 * s + text_width(l->label, s) + 14 * s;
    }
    draw_axes(c, ch, p, s);
    for (int i = 0; i < ch->n_lines; i++) draw_line(c, &ch->lines[i], p, s, keep);
    for (int i = 0; i < ch->n_marks; i++) {
        const vn_chart_mark *m = &ch->marks[i];
        double x = vn_plot_px(p, m->x), y = vn_plot_py(p, m->y);
        cover_segment(c, x, y, x, y, 5.5 * s);
        cover_flush(c, m->color, 1);
        cover_segment(c, x, y, x, y, 3 * s);
        cover_flush(c, 0xffffff, 1);
        if (m->label) {
            bool right = x < p->left + p->width * 0.7;
            draw_text(c, m->label, (int)(right ? x + 9 * s : x - 9 * s), (int)(y < p->top + 20 * s ? y + 8 * s : y - 16 * s),
                      s, right ? 0 : 2, 0x111827);
        }
    }
}

int vn_chart_png(const vn_chart *ch, int w, int h, const char *path, vn_error *err)
{
    const int s = 2; /* drawn at twice the size of the page's charts */
    vn_plot p;
    vn_chart_layout(ch, w, h, s, &p);
    canvas c = {w, h, malloc((size_t)w * h * 3), calloc((size_t)w * h, sizeof(float))};
    int64_t *keep = malloc(((size_t)ceil(p.width) * 4 + 8) * sizeof *keep);
    int rc;
    if (!c.rgb || !c.cover || !keep) {
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory drawing %s", path);
    } else {
        draw_chart(&c, ch, &p, s, keep);
        rc = vn_png_write(path, c.rgb, w, h, 3, 6, err);
    }
    free(c.rgb);
    free(c.cover);
    free(keep);
    return rc;
}
