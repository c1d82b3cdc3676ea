/* Decoding: PIL fixtures for JPEG (RGB, progressive, gray, CMYK) and PNG (palette + tRNS,
 * gray+alpha, RGBA); PNG variants written here with libpng (16-bit, 1-bit, palette,
 * interlaced); bad files of every kind, the size limit, format from magic bytes. */
#include <png.h>
#include <zlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/vn_image.h"
#include "data_util.h"

static int max_diff_u8(const uint8_t *a, const uint8_t *b, size_t n, size_t *at)
{
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) {
            m = d;
            *at = i;
        }
    }
    return m;
}

static const vn_st_entry *entry(const vn_st_file *f, const char *name)
{
    const vn_st_entry *e = vn_st_find(f, name);
    ck_assert_msg(e != NULL, "fixture has no '%s'", name);
    ck_assert_msg(e->dtype == VN_DTYPE_U8, "'%s' is not U8", name);
    return e;
}

/* Decodes fixture file `file` to RGB and gray and compares with PIL within tol levels. */
static void check_against_pil(const char *file, int tol)
{
    vn_st_file *f = vn_test_fixture("data/decode.safetensors");
    char key[128], path[4096];
    snprintf(path, sizeof path, "%s", vn_test_fixture_path(file));
    const char *pc[2] = {"rgb", "gray"};
    for (int k = 0; k < 2; k++) {
        int ch = k == 0 ? 3 : 1;
        snprintf(key, sizeof key, "%s.%s", file + 5, pc[k]); /* skip "data/" */
        for (char *p = key; *p && p < key + strlen(file + 5); p++)
            if (*p == '.') *p = '_';
        const vn_st_entry *e = entry(f, key);
        vn_image img = {0};
        vn_image_info info;
        vn_error err = {0};
        int rc = vn_image_decode_file(NULL, path, ch, 0, &img, &info, &err);
        ck_assert_msg(rc == VN_OK, "%s: %s", file, err.msg);
        ck_assert_int_eq(img.height, (int)e->shape[0]);
        ck_assert_int_eq(img.width, (int)e->shape[1]);
        ck_assert_int_eq(img.channels, ch);
        size_t at = 0;
        int d = max_diff_u8(img.data, e->data, (size_t)e->numel, &at);
        if (d > tol)
            fprintf(stderr, "%s (%s): max diff %d at %zu: got %d want %d\n", file, pc[k], d, at,
                    img.data[at], ((const uint8_t *)e->data)[at]);
        ck_assert_msg(d <= tol, "%s %s: differs from PIL by %d levels (tolerance %d)", file,
                      pc[k], d, tol);
        vn_image_free(&img);
    }
    vn_st_close(f);
}

/* Same libjpeg-turbo underneath PIL and us, same defaults: expect exact equality. */
START_TEST(jpeg_rgb_matches_pil) { check_against_pil("data/rgb.jpg", 0); }
END_TEST
START_TEST(jpeg_progressive_matches_pil) { check_against_pil("data/progressive.jpg", 0); }
END_TEST
START_TEST(jpeg_gray_matches_pil) { check_against_pil("data/gray.jpg", 0); }
END_TEST
START_TEST(jpeg_cmyk_matches_pil)
{
    check_against_pil("data/cmyk.jpg", 0);
    vn_image_info info;
    size_t len;
    uint8_t *d = dt_read_file(vn_test_fixture_path("data/cmyk.jpg"), &len);
    vn_error err = {0};
    ck_assert_int_eq(vn_image_probe_memory(d, len, &info, &err), VN_OK);
    ck_assert(info.cmyk);
    ck_assert_int_eq(info.file_channels, 4);
    free(d);
}
END_TEST
START_TEST(png_palette_trns_matches_pil) { check_against_pil("data/palette.png", 0); }
END_TEST
START_TEST(png_gray_alpha_matches_pil) { check_against_pil("data/la.png", 0); }
END_TEST
START_TEST(png_rgba_matches_pil) { check_against_pil("data/rgba.png", 0); }
END_TEST

/* 16-bit RGB and gray PNGs keep the high byte of each sample; interlaced or not. */
START_TEST(png_16bit)
{
    char dir[4096], path[4200];
    vn_test_mkdtemp(dir, sizeof dir, "data");
    const int w = 7, h = 5;
    for (int gray = 0; gray < 2; gray++) {
        for (int inter = 0; inter < 2; inter++) {
            int ch = gray ? 1 : 3;
            uint8_t raw[7 * 5 * 3 * 2];
            for (int i = 0; i < w * h * ch; i++) {
                raw[2 * i] = (uint8_t)(i * 7 + 3);       /* high byte */
                raw[2 * i + 1] = (uint8_t)(255 - i);     /* low byte: must not matter */
            }
            snprintf(path, sizeof path, "%s/s16_%d_%d.png", dir, gray, inter);
            dt_write_png_raw(path, w, h, gray ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, 16, raw,
                             NULL, 0, NULL, 0, inter);
            vn_image img = {0};
            vn_image_info info;
            vn_error err = {0};
            ck_assert_msg(vn_image_decode_file(NULL, path, ch, 0, &img, &info, &err) == VN_OK,
                          "%s", err.msg);
            ck_assert_int_eq(info.bit_depth, 16);
            ck_assert_int_eq(info.interlaced, inter);
            for (int i = 0; i < w * h * ch; i++)
                ck_assert_msg(img.data[i] == raw[2 * i], "sample %d: got %d want %d", i,
                              img.data[i], raw[2 * i]);
            /* Gray to RGB replicates; RGB to gray uses PIL's luma. */
            ck_assert_int_eq(vn_image_decode_file(NULL, path, 4 - ch, 0, &img, NULL, &err), VN_OK);
            for (int p = 0; p < w * h; p++) {
                if (gray) {
                    for (int c = 0; c < 3; c++) ck_assert_int_eq(img.data[3 * p + c], raw[2 * p]);
                } else {
                    uint32_t r = raw[6 * p], g = raw[6 * p + 2], b = raw[6 * p + 4];
                    ck_assert_int_eq(img.data[p],
                                     (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
                }
            }
            vn_image_free(&img);
        }
    }
    vn_test_rmtree(dir);
}
END_TEST

/* 4-bit palette PNG with transparency, and a 1-bit gray PNG. */
START_TEST(png_low_bit_depths)
{
    char dir[4096], path[4200];
    vn_test_mkdtemp(dir, sizeof dir, "data");
    const int w = 9, h = 3;
    uint8_t pal[16 * 3], trns[16];
    for (int i = 0; i < 16; i++) {
        pal[3 * i] = (uint8_t)(i * 16);
        pal[3 * i + 1] = (uint8_t)(255 - i * 9);
        pal[3 * i + 2] = (uint8_t)(i * i);
        trns[i] = (uint8_t)(i * 10);
    }
    uint8_t rows4[5 * 3]; /* 9 pixels at 4 bits: 5 bytes per row */
    int idx[27];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < 10; x += 2) {
            int a = (x + y * 3) % 16, b = (x + 1 + y * 3) % 16;
            rows4[y * 5 + x / 2] = (uint8_t)((a << 4) | b);
            if (x < w) idx[y * w + x] = a;
            if (x + 1 < w) idx[y * w + x + 1] = b;
        }
    snprintf(path, sizeof path, "%s/pal4.png", dir);
    dt_write_png_raw(path, w, h, PNG_COLOR_TYPE_PALETTE, 4, rows4, pal, 16, trns, 16, 0);
    vn_image img = {0};
    vn_image_info info;
    vn_error err = {0};
    ck_assert_msg(vn_image_decode_file(NULL, path, 3, 0, &img, &info, &err) == VN_OK, "%s",
                  err.msg);
    ck_assert(info.palette);
    for (int p = 0; p < w * h; p++)
        for (int c = 0; c < 3; c++) ck_assert_int_eq(img.data[3 * p + c], pal[3 * idx[p] + c]);

    uint8_t rows1[2 * 3] = {0xA5, 0x80, 0xFF, 0x00, 0x0F, 0x80};
    snprintf(path, sizeof path, "%s/gray1.png", dir);
    dt_write_png_raw(path, w, h, PNG_COLOR_TYPE_GRAY, 1, rows1, NULL, 0, NULL, 0, 0);
    ck_assert_msg(vn_image_decode_file(NULL, path, 1, 0, &img, &info, &err) == VN_OK, "%s",
                  err.msg);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int bit = (rows1[y * 2 + x / 8] >> (7 - x % 8)) & 1;
            ck_assert_int_eq(img.data[y * w + x], bit ? 255 : 0);
        }
    vn_image_free(&img);
    vn_test_rmtree(dir);
}
END_TEST

static int decode_bytes(const void *buf, size_t len, vn_error *err)
{
    vn_image img = {0};
    int rc = vn_image_decode_memory(NULL, buf, len, 3, 0, &img, NULL, err);
    vn_image_free(&img);
    return rc;
}

START_TEST(bad_inputs_are_reported)
{
    size_t jlen, plen;
    uint8_t *jpg = dt_read_file(vn_test_fixture_path("data/rgb.jpg"), &jlen);
    uint8_t *png = dt_read_file(vn_test_fixture_path("data/rgba.png"), &plen);
    vn_error err = {0};

    /* Truncated JPEG: half the file. */
    ck_assert_int_eq(decode_bytes(jpg, jlen / 2, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "truncated JPEG"), "message: %s", err.msg);
    /* JPEG cut inside the header. */
    ck_assert_int_eq(decode_bytes(jpg, 40, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "JPEG"), "message: %s", err.msg);
    /* Truncated PNG. */
    ck_assert_int_eq(decode_bytes(png, plen / 2, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "PNG"), "message: %s", err.msg);
    /* Corrupt PNG data (a flipped byte inside IDAT breaks the CRC). */
    uint8_t *bad = malloc(plen);
    memcpy(bad, png, plen);
    bad[plen / 2] ^= 0x55;
    ck_assert_int_eq(decode_bytes(bad, plen, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "corrupt PNG"), "message: %s", err.msg);
    /* Text and empty files. */
    const char *text = "this is not an image\n";
    ck_assert_int_eq(decode_bytes(text, strlen(text), &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "not a PNG or JPEG"), "message: %s", err.msg);
    ck_assert_int_eq(decode_bytes(text, 0, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "empty"), "message: %s", err.msg);
    /* Missing file: the path is named. */
    vn_image img = {0};
    ck_assert_int_eq(vn_image_decode_file(NULL, "/nonexistent/x.png", 3, 0, &img, NULL, &err),
                     VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, "/nonexistent/x.png"), "message: %s", err.msg);
    free(bad);
    free(jpg);
    free(png);
}
END_TEST

/* A PNG header announcing 100000 x 100000 pixels: refused before any pixel is decoded (the
 * file has no pixel data at all, so reaching the decoder would report a truncated file). */
START_TEST(size_limit_before_decoding)
{
    char dir[4096], path[4200];
    vn_test_mkdtemp(dir, sizeof dir, "data");
    snprintf(path, sizeof path, "%s/huge.png", dir);
    uint8_t row[3] = {1, 2, 3};
    dt_write_png_raw(path, 1, 1, PNG_COLOR_TYPE_RGB, 8, row, NULL, 0, NULL, 0, 0);
    size_t len;
    uint8_t *d = dt_read_file(path, &len);
    /* Patch IHDR's width and height (bytes 16..23) and fix the chunk CRC. */
    for (int i = 0; i < 2; i++) {
        uint32_t v = 100000;
        d[16 + 4 * i] = (uint8_t)(v >> 24);
        d[17 + 4 * i] = (uint8_t)(v >> 16);
        d[18 + 4 * i] = (uint8_t)(v >> 8);
        d[19 + 4 * i] = (uint8_t)v;
    }
    uint32_t crc = (uint32_t)crc32(0, d + 12, 17);
    d[29] = (uint8_t)(crc >> 24);
    d[30] = (uint8_t)(crc >> 16);
    d[31] = (uint8_t)(crc >> 8);
    d[32] = (uint8_t)crc;
    vn_image img = {0};
    vn_error err = {0};
    ck_assert_int_eq(vn_image_decode_memory(NULL, d, len, 3, 0, &img, NULL, &err),
                     VN_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "100000x100000"), "message: %s", err.msg);
    ck_assert_ptr_null(img.data);
    /* A JPEG above a small limit too. */
    size_t jlen;
    uint8_t *jpg = dt_read_file(vn_test_fixture_path("data/rgb.jpg"), &jlen);
    ck_assert_int_eq(vn_image_decode_memory(NULL, jpg, jlen, 3, 100, &img, NULL, &err),
                     VN_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "48x36"), "message: %s", err.msg);
    ck_assert_int_eq(vn_image_decode_memory(NULL, jpg, jlen, 3, 48 * 36, &img, NULL, &err), VN_OK);
    /* A file far larger than any image within the limit is refused before it is read. */
    size_t big = (1u << 20) + 100 * 8 + 1;
    uint8_t *zeros = calloc(big, 1);
    snprintf(path, sizeof path, "%s/big.png", dir);
    dt_write_file(path, zeros, big);
    ck_assert_int_eq(vn_image_decode_file(NULL, path, 3, 100, &img, NULL, &err),
                     VN_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "too large") && strstr(err.msg, path), "message: %s", err.msg);
    ck_assert_int_eq(vn_image_decode_file(NULL, path, 3, 0, &img, NULL, &err), VN_ERR_FORMAT);
    free(zeros);
    vn_image_free(&img);
    free(jpg);
    free(d);
    vn_test_rmtree(dir);
}
END_TEST

/* The format comes from the magic bytes: a PNG named .jpg decodes as PNG. */
START_TEST(format_from_magic)
{
    char dir[4096], path[4200];
    vn_test_mkdtemp(dir, sizeof dir, "data");
    size_t len;
    uint8_t *png = dt_read_file(vn_test_fixture_path("data/rgba.png"), &len);
    snprintf(path, sizeof path, "%s/really_png.jpg", dir);
    dt_write_file(path, png, len);
    vn_image img = {0};
    vn_image_info info;
    vn_error err = {0};
    ck_assert_int_eq(vn_image_decode_file(NULL, path, 3, 0, &img, &info, &err), VN_OK);
    ck_assert_int_eq(info.format, VN_IMAGE_PNG);
    ck_assert_int_eq(vn_image_detect(png, len), VN_IMAGE_PNG);
    ck_assert_int_eq(vn_image_detect(png, 4), VN_IMAGE_UNKNOWN);
    vn_image_free(&img);
    free(png);
    vn_test_rmtree(dir);
}
END_TEST

/* Writers round-trip: PNG exactly; our own CMYK JPEG (TurboJPEG's, not inverted) decodes
 * through the CMYK path with the non-inverted formula. */
START_TEST(writers_round_trip)
{
    char dir[4096], path[4200];
    vn_test_mkdtemp(dir, sizeof dir, "data");
    uint8_t px[6 * 4 * 4];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (uint8_t)(i * 13);
    vn_error err = {0};
    vn_image img = {0};
    for (int ch = 1; ch <= 4; ch++) {
        snprintf(path, sizeof path, "%s/w%d.png", dir, ch);
        ck_assert_int_eq(vn_png_write(path, px, 6, 4, ch, 6, &err), VN_OK);
        ck_assert_int_eq(vn_image_decode_file(NULL, path, ch == 1 || ch == 2 ? 1 : 3, 0, &img,
                                              NULL, &err), VN_OK);
        int oc = ch <= 2 ? 1 : 3;
        for (int p = 0; p < 24; p++)
            for (int c = 0; c < oc; c++) ck_assert_int_eq(img.data[p * oc + c], px[p * ch + c]);
    }
    /* Flat CMYK so JPEG loss is tiny: C=40 M=100 Y=200 K=30. */
    uint8_t cmyk[16 * 16 * 4];
    for (int p = 0; p < 256; p++) {
        cmyk[4 * p] = 40;
        cmyk[4 * p + 1] = 100;
        cmyk[4 * p + 2] = 200;
        cmyk[4 * p + 3] = 30;
    }
    snprintf(path, sizeof path, "%s/cmyk.jpg", dir);
    ck_assert_int_eq(vn_jpeg_write(path, cmyk, 16, 16, 4, 95, &err), VN_OK);
    vn_image_info info;
    ck_assert_int_eq(vn_image_decode_file(NULL, path, 3, 0, &img, &info, &err), VN_OK);
    ck_assert(info.cmyk);
    /* TurboJPEG writes an Adobe marker, so we (like PIL) read the samples as inverted:
     * C' = 215, M' = 155, Y' = 55, K' = 225 -> R = (255-215)(255-225)/255 = 4.7 ... */
    int want[3] = {(40 * 30 + 127) / 255, (100 * 30 + 127) / 255, (200 * 30 + 127) / 255};
    for (int c = 0; c < 3; c++)
        ck_assert_msg(abs(img.data[c] - want[c]) <= 2, "channel %d: got %d want %d", c,
                      img.data[c], want[c]);
    vn_image_free(&img);
    vn_test_rmtree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("data_image");
    TCase *tc = tcase_create("decode");
    tcase_add_test(tc, jpeg_rgb_matches_pil);
    tcase_add_test(tc, jpeg_progressive_matches_pil);
    tcase_add_test(tc, jpeg_gray_matches_pil);
    tcase_add_test(tc, jpeg_cmyk_matches_pil);
    tcase_add_test(tc, png_palette_trns_matches_pil);
    tcase_add_test(tc, png_gray_alpha_matches_pil);
    tcase_add_test(tc, png_rgba_matches_pil);
    tcase_add_test(tc, png_16bit);
    tcase_add_test(tc, png_low_bit_depths);
    tcase_add_test(tc, bad_inputs_are_reported);
    tcase_add_test(tc, size_limit_before_decoding);
    tcase_add_test(tc, format_from_magic);
    tcase_add_test(tc, writers_round_trip);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
