/* Helpers for the data-layer tests: temporary folders and synthetic image files. */
#ifndef VN_DATA_TEST_UTIL_H
#define VN_DATA_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "vn_test.h"

/* mkdir -p of a/b/c, failing the test on error. */
void dt_mkdirs(const char *path);
/* Writes bytes to path (fails the test on error). */
void dt_write_file(const char *path, const void *data, size_t len);
/* Whole file into a malloc'ed buffer; *len receives its size. */
uint8_t *dt_read_file(const char *path, size_t *len);
/* A w x h RGB (or gray, channels 1) PNG whose pixels encode `index`: pixel (y, x) channel c
 * = (index >> (8 * ((y * w + x) * channels + c) % 24)) ... see data_util.c. */
void dt_write_index_png(const char *path, int64_t index, int w, int h, int channels);
/* The index an image written by dt_write_index_png encodes, read back from the first three
 * bytes of its pixels. */
int64_t dt_index_of_pixels(const uint8_t *pix);
/* Writes a PNG with libpng directly: any color type / bit depth (rows of raw samples,
 * big-endian for 16 bits); palette (n_palette RGB triples) and tRNS optional. */
void dt_write_png_raw(const char *path, int w, int h, int color_type, int bit_depth,
                      const uint8_t *rows, const uint8_t *palette, int n_palette,
                      const uint8_t *trns, int n_trns, int interlace);
/* Counts vn_log warnings (installed by dt_capture_warnings). */
typedef struct dt_log {
    int warnings;
    char last[1024];
} dt_log;
void dt_capture_warnings(dt_log *log);

#endif
