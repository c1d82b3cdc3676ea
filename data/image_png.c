/* PNG through libpng: decoding from memory with PIL's conversions, and a fast writer. */
#include "data/image_impl.h"
#include "base/vn_fs.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <png.h>

/* State reachable from libpng's callbacks; lives outside the setjmp frame so nothing in it
 * needs to be volatile. */
typedef struct png_ctx {
    const uint8_t *buf;
    size_t len, pos;
    char msg[256];
    png_bytep *rows;
} png_ctx;

static void on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* libpng warns about benign things (bad ancillary chunks, sRGB profiles) */
}

static void read_mem(png_structp png, png_bytep out, size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) png_error(png, "unexpected end of file (truncated PNG)");
    memcpy(out, c->buf + c->pos, n);
    c->pos += n;
}

static void fill_info(png_structp png, png_infop pi, vn_image_info *info)
{
    int ct = png_get_color_type(png, pi);
    info->format = VN_IMAGE_PNG;
    info->width = (int)png_get_image_width(png, pi);
    info->height = (int)png_get_image_height(png, pi);
    info->bit_depth = png_get_bit_depth(png, pi);
    info->palette = ct == PNG_COLOR_TYPE_PALETTE;
    info->interlaced = png_get_interlace_type(png, pi) != PNG_INTERLACE_NONE;
    info->cmyk = false;
    switch (ct) {
    case PNG_COLOR_TYPE_GRAY: info->file_channels = 1; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: info->file_channels = 2; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: info->file_channels = 4; break;
    default: info->file_channels = 3; break; /* RGB, palette */
    }
}

/* ctx belongs to the caller so that what the longjmp path frees (ctx->rows) is not a local
 * of this frame changed after setjmp. */
static int png_run(png_ctx *ctx, int channels, int64_t max_pixels, vn_image *img,
                   vn_image_info *info, bool header_only, vn_error *err)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, on_error, on_warning);
    if (!png) return vn_error_set(err, VN_ERR_NOMEM, "out of memory creating a PNG reader");
    png_infop pi = png_create_info_struct(png);
    if (!pi) {
        png_destroy_read_struct(&png, NULL, NULL);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory creating a PNG reader");
    }
    /* Every path out after this point goes through `done`. */
    int rc = VN_OK;
    if (setjmp(png_jmpbuf(png))) {
        rc = vn_error_set(err, VN_ERR_FORMAT, "corrupt PNG: %s", ctx->msg);
        goto done;
    }
    png_set_read_fn(png, ctx, read_mem);
    png_read_info(png, pi);
    fill_info(png, pi, info);
    rc = vn__check_dims(info->width, info->height, max_pixels, err);
    if (rc || header_only) goto done;

    int ct = png_get_color_type(png, pi);
    bool gray_src = !(ct & PNG_COLOR_MASK_COLOR);
    if (info->bit_depth == 16) png_set_strip_16(png); /* high byte, as PIL for RGB;16B */
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && info->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    /* Alpha is dropped, including the alpha that palette expansion makes from tRNS. */
    if ((ct & PNG_COLOR_MASK_ALPHA) ||
        (ct == PNG_COLOR_TYPE_PALETTE && png_get_valid(png, pi, PNG_INFO_tRNS)))
        png_set_strip_alpha(png);
    if (gray_src && channels == 3) png_set_gray_to_rgb(png);
    /* tRNS is otherwise not expanded: PIL's convert("RGB") ignores transparency too. */
    png_set_interlace_handling(png);
    png_read_update_info(png, pi);

    int decoded_ch = (gray_src && channels == 1) ? 1 : 3;
    size_t row = (size_t)info->width * (size_t)decoded_ch;
    if (png_get_rowbytes(png, pi) != row) {
        snprintf(ctx->msg, sizeof ctx->msg, "unexpected row size %zu (expected %zu)",
                 (size_t)png_get_rowbytes(png, pi), row);
        rc = vn_error_set(err, VN_ERR_FORMAT, "unsupported PNG layout: %s", ctx->msg);
        goto done;
    }
    rc = vn__image_reserve(img, row * (size_t)info->height, err);
    if (rc) goto done;
    ctx->rows = malloc(sizeof(png_bytep) * (size_t)info->height);
    if (!ctx->rows) {
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int y = 0; y < info->height; y++) ctx->rows[y] = img->data + (size_t)y * row;
    png_read_image(png, ctx->rows);
    if (decoded_ch == 3 && channels == 1)
        vn_rgb_to_gray(img->data, img->data, (int64_t)info->width * info->height);
    img->width = info->width;
    img->height = info->height;
    img->channels = channels;
done:
    free(ctx->rows);
    png_destroy_read_struct(&png, &pi, NULL);
    return rc;
}

int vn__png_probe(const uint8_t *buf, size_t len, vn_image_info *info, vn_error *err)
{
    png_ctx ctx = {.buf = buf, .len = len};
    return png_run(&ctx, 3, INT64_MAX, NULL, info, true, err);
}

int vn__png_decode(const uint8_t *buf, size_t len, int channels, int64_t max_pixels,
                   vn_image *img, vn_image_info *info, vn_error *err)
{
    png_ctx ctx = {.buf = buf, .len = len};
    return png_run(&ctx, channels, max_pixels, img, info, false, err);
}

typedef struct png_wctx {
    char msg[256];
} png_wctx;

static void on_write_error(png_structp png, png_const_charp msg)
{
    png_wctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* The setjmp frame is in its own function so the FILE* and row buffer passed in are not
 * locals modified after setjmp. */
static int write_png_rows(FILE *f, png_bytep *rows, int width, int height, int channels,
                          int level, png_wctx *ctx)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, on_write_error,
                                              on_warning);
    if (!png) return -1;
    png_infop pi = png_create_info_struct(png);
    if (!pi || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, pi ? &pi : NULL);
        if (!ctx->msg[0]) snprintf(ctx->msg, sizeof ctx->msg, "out of memory");
        return -1;
    }
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                 PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    png_init_io(png, f);
    png_set_IHDR(png, pi, (png_uint_32)width, (png_uint_32)height, 8, types[channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, level);
    /* At low levels filtering costs more time than it saves bytes. */
    if (level <= 1) png_set_filter(png, 0, PNG_FILTER_NONE);
    png_write_info(png, pi);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &pi);
    return 0;
}

int vn_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                 int compression_level, vn_error *err)
{
    if (channels < 1 || channels > 4 || width <= 0 || height <= 0 || compression_level < 0 ||
        compression_level > 9)
        return vn_error_set(err, VN_ERR_INVALID,
                            "%s: cannot write a PNG of %dx%d with %d channels at level %d", path,
                            width, height, channels, compression_level);
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)height);
    if (!rows) return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
    for (int y = 0; y < height; y++)
        rows[y] = (png_bytep)(pixels + (size_t)y * (size_t)width * (size_t)channels);
    /* Made in memory, then written to a temporary name and renamed over path: a full disk or
     * a kill leaves the earlier file (or none), never half a PNG. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        free(rows);
        return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
    }
    png_wctx ctx = {.msg = ""};
    int bad = write_png_rows(f, rows, width, height, channels, compression_level, &ctx);
    free(rows);
    if (fclose(f) != 0 && !bad) bad = 1;
    int e = bad ? 0 : vn_fs_write_atomic(path, buf, len, false);
    free(buf);
    if (bad) return vn_error_set(err, VN_ERR_IO, "%s: writing the PNG failed: %s", path,
                                 ctx.msg[0] ? ctx.msg : "out of memory");
    if (e) return vn_error_set(err, VN_ERR_IO, "%s: writing the PNG failed: %s", path, strerror(e));
    return VN_OK;
}
