#include "data_util.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/vn_fs.h"
#include "data/vn_image.h"

#include <unistd.h>

void dt_mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(tmp, 0777);
        *p = '/';
    }
    mkdir(tmp, 0777);
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0 && S_ISDIR(st.st_mode), "cannot create %s", path);
}

void dt_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert(fwrite(data, 1, len, f) == len);
    ck_assert(fclose(f) == 0);
}

uint8_t *dt_read_file(const char *path, size_t *len)
{
    uint8_t *d = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_read_file(path, &d, len, &err) == VN_OK, "%s", err.msg);
    return d;
}

/* Pixel bytes: the first three carry index (little-endian, 24 bits); the rest a pattern
 * that also depends on index, so that two different files never look alike. */
void dt_write_index_png(const char *path, int64_t index, int w, int h, int channels)
{
    size_t n = (size_t)w * h * channels;
    uint8_t *p = malloc(n);
    ck_assert(p != NULL);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 37 + (size_t)index * 11) & 0xFF);
    p[0] = (uint8_t)(index & 0xFF);
    p[1] = (uint8_t)((index >> 8) & 0xFF);
    p[2] = (uint8_t)((index >> 16) & 0xFF);
    vn_error err = {0};
    ck_assert_msg(vn_png_write(path, p, w, h, channels, 1, &err) == VN_OK, "%s", err.msg);
    free(p);
}

int64_t dt_index_of_pixels(const uint8_t *pix)
{
    return (int64_t)pix[0] | ((int64_t)pix[1] << 8) | ((int64_t)pix[2] << 16);
}

void dt_write_png_raw(const char *path, int w, int h, int color_type, int bit_depth,
                      const uint8_t *rows, const uint8_t *palette, int n_palette,
                      const uint8_t *trns, int n_trns, int interlace)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert(png && info);
    if (setjmp(png_jmpbuf(png))) ck_abort_msg("libpng failed writing %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bit_depth, color_type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette) {
        png_color pal[256];
        for (int i = 0; i < n_palette; i++) {
            pal[i].red = palette[3 * i];
            pal[i].green = palette[3 * i + 1];
            pal[i].blue = palette[3 * i + 2];
        }
        png_set_PLTE(png, info, pal, n_palette);
    }
    if (trns) png_set_tRNS(png, info, trns, n_trns, NULL);
    png_write_info(png, info);
    int ch = color_type == PNG_COLOR_TYPE_RGB ? 3 : color_type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
             : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t rowbytes = ((size_t)w * ch * bit_depth + 7) / 8;
    png_bytep *rp = malloc(sizeof(png_bytep) * (size_t)h);
    for (int y = 0; y < h; y++) rp[y] = (png_bytep)(rows + (size_t)y * rowbytes);
    png_write_image(png, rp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rp);
    fclose(f);
}

static void on_log(vn_log_level level, const char *msg, void *user)
{
    dt_log *l = user;
    if (level >= VN_LOG_WARN) {
        l->warnings++;
        snprintf(l->last, sizeof l->last, "%s", msg);
    }
}

void dt_capture_warnings(dt_log *log)
{
    memset(log, 0, sizeof *log);
    vn_log_set(on_log, log);
}
