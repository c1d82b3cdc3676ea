/* JPEG through TurboJPEG's tjDecompressHeader3 / tjDecompress2 API (libturbojpeg 2.1). */
#include "data/image_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>

static int get_handle(vn_decoder *dec, vn_error *err)
{
    if (dec->tj) return VN_OK;
    dec->tj = tjInitDecompress();
    if (!dec->tj)
        return vn_error_set(err, VN_ERR_NOMEM, "cannot create a JPEG decoder: %s",
                            tjGetErrorStr2(NULL));
    return VN_OK;
}

/* Walks the markers before the first scan: whether an Adobe APP14 marker with a non-zero
 * version is present (PIL then reads CMYK as inverted) and whether the frame is progressive. */
static void scan_markers(const uint8_t *b, size_t len, bool *adobe, bool *progressive)
{
    *adobe = false;
    *progressive = false;
    size_t pos = 2;
    while (pos + 4 <= len) {
        if (b[pos] != 0xFF) return;
        uint8_t m = b[pos + 1];
        if (m == 0xFF) { /* fill byte */
            pos++;
            continue;
        }
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) {
            pos += 2;
            continue;
        }
        if (m == 0xDA || m == 0xD9) return;
        size_t seg = ((size_t)b[pos + 2] << 8) | b[pos + 3];
        if (seg < 2) return;
        if (m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE) *progressive = true;
        if (m == 0xEE && seg >= 2 + 12 && pos + 2 + seg <= len &&
            memcmp(b + pos + 4, "Adobe", 5) == 0) {
            unsigned version = ((unsigned)b[pos + 9] << 8) | b[pos + 10];
            *adobe = version != 0;
        }
        pos += 2 + seg;
    }
}

static int header(vn_decoder *dec, const uint8_t *buf, size_t len, vn_image_info *info,
                  int *colorspace, vn_error *err)
{
    int rc = get_handle(dec, err);
    if (rc) return rc;
    int w = 0, h = 0, subsamp = 0, cs = 0;
    if (tjDecompressHeader3(dec->tj, buf, (unsigned long)len, &w, &h, &subsamp, &cs) != 0)
        return vn_error_set(err, VN_ERR_FORMAT, "corrupt JPEG header: %s",
                            tjGetErrorStr2(dec->tj));
    if (w <= 0 || h <= 0)
        return vn_error_set(err, VN_ERR_FORMAT,
                            "corrupt JPEG header: no frame size found (truncated file?)");
    bool adobe, progressive;
    scan_markers(buf, len, &adobe, &progressive);
    info->format = VN_IMAGE_JPEG;
    info->width = w;
    info->height = h;
    info->bit_depth = 8;
    info->cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    info->file_channels = cs == TJCS_GRAY ? 1 : info->cmyk ? 4 : 3;
    info->interlaced = progressive;
    info->palette = false;
    *colorspace = cs;
    return VN_OK;
}

int vn__jpeg_probe(vn_decoder *dec, const uint8_t *buf, size_t len, vn_image_info *info,
                   vn_error *err)
{
    int cs;
    return header(dec, buf, len, info, &cs, err);
}

/* PIL's MULDIV255: a * b / 255 rounded, in integers. */
static inline int muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/* PIL's cmyk2rgb (Pillow 9.x), after undoing Adobe's inversion when present. */
static void cmyk_to_rgb(uint8_t *dst, const uint8_t *src, int64_t n, bool inverted)
{
    for (int64_t i = 0; i < n; i++) {
        int c = src[4 * i], m = src[4 * i + 1], y = src[4 * i + 2], k = src[4 * i + 3];
        if (inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        int nk = 255 - k;
        int r = nk - muldiv255(c, nk), g = nk - muldiv255(m, nk), b = nk - muldiv255(y, nk);
        dst[3 * i] = (uint8_t)(r < 0 ? 0 : r);
        dst[3 * i + 1] = (uint8_t)(g < 0 ? 0 : g);
        dst[3 * i + 2] = (uint8_t)(b < 0 ? 0 : b);
    }
}

/* tjDecompress2 returns -1 for warnings too (with the image complete). A premature end of
 * data is an error, as in PIL ("image file is truncated"); other warnings are not. */
static int check_result(vn_decoder *dec, int ret, vn_error *err)
{
    if (ret == 0) return VN_OK;
    const char *msg = tjGetErrorStr2(dec->tj);
    if (tjGetErrorCode(dec->tj) == TJERR_WARNING && !strstr(msg, "Premature end")) {
        vn_log(VN_LOG_DEBUG, "JPEG warning ignored: %s", msg);
        return VN_OK;
    }
    if (strstr(msg, "Premature end"))
        return vn_error_set(err, VN_ERR_FORMAT, "truncated JPEG: %s", msg);
    return vn_error_set(err, VN_ERR_FORMAT, "corrupt JPEG: %s", msg);
}

int vn__jpeg_decode(vn_decoder *dec, const uint8_t *buf, size_t len, int channels,
                    int64_t max_pixels, vn_image *img, vn_image_info *info, vn_error *err)
{
    int cs = 0;
    int rc = header(dec, buf, len, info, &cs, err);
    if (rc) return rc;
    rc = vn__check_dims(info->width, info->height, max_pixels, err);
    if (rc) return rc;
    int w = info->width, h = info->height;
    size_t npix = (size_t)w * (size_t)h;
    rc = vn__image_reserve(img, npix * 3, err);
    if (rc) return rc;
    if (info->cmyk) {
        rc = vn__grow(&dec->scratch, &dec->scratch_cap, npix * 4, err);
        if (rc) return rc;
        int ret = tjDecompress2(dec->tj, buf, (unsigned long)len, dec->scratch, w, 0, h,
                                TJPF_CMYK, 0);
        rc = check_result(dec, ret, err);
        if (rc) return rc;
        bool adobe, progressive;
        scan_markers(buf, len, &adobe, &progressive);
        cmyk_to_rgb(img->data, dec->scratch, (int64_t)npix, adobe);
        if (channels == 1) vn_rgb_to_gray(img->data, img->data, (int64_t)npix);
    } else {
        /* Gray JPEGs decode straight to gray; color ones to RGB, then PIL's luma if asked,
         * because libjpeg's gray output (the Y plane) differs from PIL's convert("L"). */
        int pf = (cs == TJCS_GRAY && channels == 1) ? TJPF_GRAY : TJPF_RGB;
        int ret = tjDecompress2(dec->tj, buf, (unsigned long)len, img->data, w, 0, h, pf, 0);
        rc = check_result(dec, ret, err);
        if (rc) return rc;
        if (pf == TJPF_RGB && channels == 1) vn_rgb_to_gray(img->data, img->data, (int64_t)npix);
    }
    img->width = w;
    img->height = h;
    img->channels = channels;
    return VN_OK;
}

int vn_jpeg_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                  int quality, vn_error *err)
{
    if ((channels != 1 && channels != 3 && channels != 4) || width <= 0 || height <= 0 ||
        quality < 1 || quality > 100)
        return vn_error_set(err, VN_ERR_INVALID,
                            "%s: cannot write a JPEG of %dx%d with %d channels at quality %d",
                            path, width, height, channels, quality);
    tjhandle tj = tjInitCompress();
    if (!tj) return vn_error_set(err, VN_ERR_NOMEM, "cannot create a JPEG encoder");
    int pf = channels == 1 ? TJPF_GRAY : channels == 3 ? TJPF_RGB : TJPF_CMYK;
    int samp = channels == 1 ? TJSAMP_GRAY : TJSAMP_420;
    unsigned char *out = NULL;
    unsigned long out_len = 0;
    int rc = VN_OK;
    if (tjCompress2(tj, pixels, width, 0, height, pf, &out, &out_len, samp, quality, 0) != 0) {
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: JPEG encoding failed: %s", path,
                          tjGetErrorStr2(tj));
    } else {
        FILE *f = fopen(path, "wb");
        if (!f) {
            rc = vn_error_set(err, VN_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        } else {
            size_t put = fwrite(out, 1, out_len, f);
            if (fclose(f) != 0 || put != out_len)
                rc = vn_error_set(err, VN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
    }
    tjFree(out);
    tjDestroy(tj);
    return rc;
}
