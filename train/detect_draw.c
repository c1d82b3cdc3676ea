/* Boxes drawn on an image for `vanilla predict -o`: a 2-pixel rectangle per detection in a
 * colour of its class and a label "name 0.87" on a filled bar, in a built-in 5x7 font
 * (capitals, digits and a few signs; lower case is drawn as capitals). */
#include "train/vn_detect.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "data/vn_image.h"

/* 5x7 glyphs, one byte per row, bit 4 the leftmost column. */
static const struct {
    char c;
    uint8_t rows[7];
} font[] = {
    {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
    {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
    {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
    {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
    {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
    {'A', {14, 17, 17, 31, 17, 17, 17}}, {'B', {30, 17, 17, 30, 17, 17, 30}},
    {'C', {14, 17, 16, 16, 16, 17, 14}}, {'D', {28, 18, 17, 17, 17, 18, 28}},
    {'E', {31, 16, 16, 30, 16, 16, 31}}, {'F', {31, 16, 16, 30, 16, 16, 16}},
    {'G', {14, 17, 16, 23, 17, 17, 15}}, {'H', {17, 17, 17, 31, 17, 17, 17}},
    {'I', {14, 4, 4, 4, 4, 4, 14}},      {'J', {7, 2, 2, 2, 2, 18, 12}},
    {'K', {17, 18, 20, 24, 20, 18, 17}}, {'L', {16, 16, 16, 16, 16, 16, 31}},
    {'M', {17, 27, 21, 21, 17, 17, 17}}, {'N', {17, 17, 25, 21, 19, 17, 17}},
    {'O', {14, 17, 17, 17, 17, 17, 14}}, {'P', {30, 17, 17, 30, 16, 16, 16}},
    {'Q', {14, 17, 17, 17, 21, 18, 13}}, {'R', {30, 17, 17, 30, 20, 18, 17}},
    {'S', {15, 16, 16, 14, 1, 1, 30}},   {'T', {31, 4, 4, 4, 4, 4, 4}},
    {'U', {17, 17, 17, 17, 17, 17, 14}}, {'V', {17, 17, 17, 17, 17, 10, 4}},
    {'W', {17, 17, 17, 21, 21, 21, 10}}, {'X', {17, 17, 10, 4, 10, 17, 17}},
    {'Y', {17, 17, 10, 4, 4, 4, 4}},     {'Z', {31, 1, 2, 4, 8, 16, 31}},
    {'.', {0, 0, 0, 0, 0, 12, 12}},      {'-', {0, 0, 0, 31, 0, 0, 0}},
    {'_', {0, 0, 0, 0, 0, 0, 31}},       {'/', {0, 1, 2, 4, 8, 16, 0}},
    {'%', {24, 25, 2, 4, 8, 19, 3}},     {'?', {14, 17, 1, 2, 4, 0, 4}},
};

static const uint8_t *glyph(char c)
{
    c = (char)toupper((unsigned char)c);
    for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
        if (font[i].c == c) return font[i].rows;
    return NULL; /* a space, or a sign without a glyph */
}

typedef struct canvas {
    uint8_t *pix;
    int w, h;
} canvas;

static void put(canvas *c, int x, int y, const uint8_t *rgb)
{
    if (x >= 0 && y >= 0 && x < c->w && y < c->h) memcpy(c->pix + ((size_t)y * c->w + x) * 3, rgb, 3);
}

static void fill(canvas *c, int x0, int y0, int x1, int y1, const uint8_t *rgb)
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put(c, x, y, rgb);
}

static void rect(canvas *c, int x0, int y0, int x1, int y1, const uint8_t *rgb)
{
    fill(c, x0, y0, x1 + 1, y0 + 2, rgb);
    fill(c, x0, y1 - 1, x1 + 1, y1 + 1, rgb);
    fill(c, x0, y0, x0 + 2, y1 + 1, rgb);
    fill(c, x1 - 1, y0, x1 + 1, y1 + 1, rgb);
}

/* Text at (x, y) (its top left) with a 1-pixel margin on a bar of colour bg. */
static void text(canvas *c, int x, int y, const char *s, const uint8_t *bg)
{
    static const uint8_t white[3] = {255, 255, 255};
    int n = (int)strlen(s);
    fill(c, x, y, x + 6 * n + 1, y + 9, bg);
    for (int i = 0; i < n; i++) {
        const uint8_t *g = glyph(s[i]);
        for (int r = 0; g && r < 7; r++)
            for (int k = 0; k < 5; k++)
                if (g[r] & (16 >> k)) put(c, x + 1 + 6 * i + k, y + 1 + r, white);
    }
}

/* A distinct, saturated colour per class (golden-angle hues). */
static void class_colour(int cls, uint8_t *rgb)
{
    double h = (double)((cls * 137) % 360) / 60.0, f = h - (int)h;
    uint8_t hi = 230, lo = 40, up = (uint8_t)(lo + (hi - lo) * f), dn = (uint8_t)(hi - (hi - lo) * f);
    const uint8_t tab[6][3] = {{hi, up, lo}, {dn, hi, lo}, {lo, hi, up}, {lo, dn, hi}, {up, lo, hi}, {hi, lo, dn}};
    memcpy(rgb, tab[(int)h % 6], 3);
}

int vn_detect_draw_png(const char *image, const vn_detection *dets, int n,
                       const char *const *names, int nc, const char *out, vn_error *err)
{
    vn_image img = {0};
    int rc = vn_image_decode_file(NULL, image, 3, 0, &img, NULL, err);
    if (rc != VN_OK) return rc;
    canvas c = {img.data, img.width, img.height};
    for (int i = n - 1; i >= 0; i--) { /* the most confident drawn last, on top */
        const vn_detection *d = &dets[i];
        uint8_t col[3];
        class_colour(d->cls, col);
        rect(&c, (int)d->x1, (int)d->y1, (int)d->x2, (int)d->y2, col);
        char label[96];
        snprintf(label, sizeof label, "%s %.2f", names && d->cls >= 0 && d->cls < nc ? names[d->cls] : "?",
                 d->conf);
        int ty = (int)d->y1 - 9 >= 0 ? (int)d->y1 - 9 : (int)d->y1;
        text(&c, (int)d->x1, ty, label, col);
    }
    rc = vn_png_write(out, img.data, img.width, img.height, 3, 6, err);
    vn_image_free(&img);
    return rc;
}
