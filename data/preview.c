/* A PNG grid of augmented training samples (vanilla data preview). */
#include "data/vn_loader.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/vn_image.h"

/* Normalised float (HWC) back to 8 bits: round(255 * (x * std + mean)), clipped. */
static void tile_to_u8(const float *x, int s, int c, const float mean[3], const float std[3],
                       uint8_t *grid, int gw, int gx, int gy)
{
    for (int y = 0; y < s; y++)
        for (int xx = 0; xx < s; xx++)
            for (int k = 0; k < c; k++) {
                float v = x[((size_t)y * s + xx) * c + k] * std[k] + mean[k];
                long q = lrintf(v * 255.0f);
                grid[(((size_t)(gy + y)) * gw + gx + xx) * c + k] =
                    (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
            }
}

int vn_loader_preview(const vn_loader_config *cfg, int n, const char *png_path, int *shown,
                      vn_error *err)
{
    if (n < 1 || n > 1024)
        return vn_error_set(err, VN_ERR_INVALID, "preview: the number of samples must be in "
                            "1..1024, got %d", n);
    vn_loader_config c = *cfg;
    c.batch_size = n;
    c.drop_last = false;
    c.workers = 0;
    c.mixup_alpha = c.cutmix_alpha = 0; /* per-batch mixing is not a per-sample view */
    vn_loader *ld = NULL;
    int rc = vn_loader_open(&c, &ld, err);
    if (rc) return rc;
    vn_batch b = {0};
    rc = vn_loader_start_epoch(ld, 0, 0, err);
    if (!rc) rc = vn_loader_next(ld, &b, err);
    if (!rc && b.size == 0) rc = vn_error_set(err, VN_ERR_INVALID, "preview: %s has no images", c.root);
    if (rc) {
        vn_loader_close(ld);
        return rc;
    }
    const int s = c.input_size, ch = c.channels, gap = 2;
    int cols = (int)ceil(sqrt((double)b.size)), rows = (b.size + cols - 1) / cols;
    int gw = cols * s + (cols + 1) * gap, gh = rows * s + (rows + 1) * gap;
    uint8_t *grid = malloc((size_t)gw * gh * ch);
    if (!grid) rc = vn_error_set(err, VN_ERR_NOMEM, "preview: out of memory for a %dx%d grid", gw, gh);
    if (!rc) {
        memset(grid, 255, (size_t)gw * gh * ch);
        for (int i = 0; i < b.size; i++)
            tile_to_u8(b.images->data + (size_t)i * s * s * ch, s, ch, c.mean, c.std, grid, gw,
                       gap + (i % cols) * (s + gap), gap + (i / cols) * (s + gap));
        rc = vn_png_write(png_path, grid, gw, gh, ch, 6, err);
    }
    if (shown) *shown = b.size;
    free(grid);
    vn_loader_release(ld, &b);
    vn_loader_close(ld);
    return rc;
}
