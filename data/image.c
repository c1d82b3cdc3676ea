/* Image front end: format detection, file reading, the per-thread decoder, dispatch. */
#include "data/image_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <turbojpeg.h>

vn_image_format vn_image_detect(const void *buf, size_t len)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    const uint8_t *b = buf;
    if (len >= 8 && memcmp(b, png_sig, 8) == 0) return VN_IMAGE_PNG;
    /* SOI followed by the first marker's 0xFF. */
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return VN_IMAGE_JPEG;
    return VN_IMAGE_UNKNOWN;
}

const char *vn_image_format_name(vn_image_format fmt)
{
    switch (fmt) {
    case VN_IMAGE_PNG: return "PNG";
    case VN_IMAGE_JPEG: return "JPEG";
    default: return "unknown";
    }
}

int vn_decoder_create(vn_decoder **out, vn_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return vn_error_set(err, VN_ERR_NOMEM, "out of memory creating an image decoder");
    return VN_OK;
}

void vn_decoder_destroy(vn_decoder *dec)
{
    if (!dec) return;
    if (dec->tj) tjDestroy(dec->tj);
    free(dec->file);
    free(dec->scratch);
    free(dec);
}

int vn__grow(uint8_t **buf, size_t *cap, size_t bytes, vn_error *err)
{
    if (*cap >= bytes) return VN_OK;
    size_t n = bytes + bytes / 4 + 64;
    uint8_t *p = realloc(*buf, n);
    if (!p) return vn_error_set(err, VN_ERR_NOMEM, "out of memory (%zu bytes)", n);
    *buf = p;
    *cap = n;
    return VN_OK;
}

int vn__image_reserve(vn_image *img, size_t bytes, vn_error *err)
{
    return vn__grow(&img->data, &img->capacity, bytes, err);
}

void vn_image_free(vn_image *img)
{
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

int vn__check_dims(int64_t width, int64_t height, int64_t max_pixels, vn_error *err)
{
    if (max_pixels <= 0) max_pixels = VN_IMAGE_DEFAULT_MAX_PIXELS;
    if (width <= 0 || height <= 0)
        return vn_error_set(err, VN_ERR_FORMAT, "invalid image size %lldx%lld",
                            (long long)width, (long long)height);
    if (width > max_pixels / height)
        return vn_error_set(err, VN_ERR_UNSUPPORTED,
                            "image of %lldx%lld pixels is larger than the limit of %lld pixels "
                            "(max_image_pixels)",
                            (long long)width, (long long)height, (long long)max_pixels);
    return VN_OK;
}

void vn_rgb_to_gray(uint8_t *dst, const uint8_t *src, int64_t n)
{
    /* PIL's L24 with rounding; in place works because dst index <= 3 * index. */
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)src[3 * i] * 19595u + (uint32_t)src[3 * i + 1] * 38470u +
                     (uint32_t)src[3 * i + 2] * 7471u + 0x8000u;
        dst[i] = (uint8_t)(v >> 16);
    }
}

/* Reads into the decoder's reusable buffer, so the hot loop does not allocate. A file larger
 * than any image within the pixel limit could be (8 bytes a pixel: 16-bit RGBA, stored) is
 * refused before it is read. */
static int read_into(vn_decoder *dec, const char *path, int64_t max_pixels, size_t *len,
                     vn_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return vn_error_set(err, VN_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return vn_error_set(err, VN_ERR_IO, "not a regular file");
    }
    size_t n = (size_t)st.st_size;
    if (max_pixels <= 0) max_pixels = VN_IMAGE_DEFAULT_MAX_PIXELS;
    if ((uint64_t)n > (uint64_t)max_pixels * 8u + (1u << 20)) {
        fclose(f);
        return vn_error_set(err, VN_ERR_UNSUPPORTED,
                            "file of %zu bytes is too large for an image within the limit of "
                            "%lld pixels (max_image_pixels)", n, (long long)max_pixels);
    }
    int rc = vn__grow(&dec->file, &dec->file_cap, n + 1, err);
    if (rc) {
        fclose(f);
        return rc;
    }
    size_t got = n ? fread(dec->file, 1, n, f) : 0;
    int bad = got != n || ferror(f);
    fclose(f);
    if (bad) return vn_error_set(err, VN_ERR_IO, "read error after %zu of %zu bytes", got, n);
    *len = n;
    return VN_OK;
}

static int unknown_format(const uint8_t *b, size_t len, vn_error *err)
{
    if (len == 0) return vn_error_set(err, VN_ERR_FORMAT, "empty file");
    char hex[40] = "";
    size_t k = len < 8 ? len : 8, o = 0;
    for (size_t i = 0; i < k; i++) o += (size_t)snprintf(hex + o, sizeof hex - o, " %02x", b[i]);
    return vn_error_set(err, VN_ERR_FORMAT, "not a PNG or JPEG image (first bytes:%s)", hex);
}

int vn_image_probe_memory(const void *buf, size_t len, vn_image_info *info, vn_error *err)
{
    memset(info, 0, sizeof *info);
    switch (vn_image_detect(buf, len)) {
    case VN_IMAGE_PNG: return vn__png_probe(buf, len, info, err);
    case VN_IMAGE_JPEG: {
        vn_decoder *tmp = NULL;
        int rc = vn_decoder_create(&tmp, err);
        if (rc) return rc;
        rc = vn__jpeg_probe(tmp, buf, len, info, err);
        vn_decoder_destroy(tmp);
        return rc;
    }
    default: return unknown_format(buf, len, err);
    }
}

int vn_image_decode_memory(vn_decoder *dec, const void *buf, size_t len, int channels,
                           int64_t max_pixels, vn_image *img, vn_image_info *info,
                           vn_error *err)
{
    if (channels != 1 && channels != 3)
        return vn_error_set(err, VN_ERR_INVALID, "channels must be 1 or 3, got %d", channels);
    vn_image_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    vn_image_format fmt = vn_image_detect(buf, len);
    if (fmt == VN_IMAGE_PNG) return vn__png_decode(buf, len, channels, max_pixels, img, info, err);
    if (fmt != VN_IMAGE_JPEG) return unknown_format(buf, len, err);
    vn_decoder *tmp = NULL;
    if (!dec) {
        int rc = vn_decoder_create(&tmp, err);
        if (rc) return rc;
        dec = tmp;
    }
    int rc = vn__jpeg_decode(dec, buf, len, channels, max_pixels, img, info, err);
    vn_decoder_destroy(tmp);
    return rc;
}

int vn_image_decode_file(vn_decoder *dec, const char *path, int channels, int64_t max_pixels,
                         vn_image *img, vn_image_info *info, vn_error *err)
{
    vn_decoder *tmp = NULL;
    int rc = VN_OK;
    if (!dec) {
        rc = vn_decoder_create(&tmp, err);
        if (rc) return rc;
        dec = tmp;
    }
    size_t len = 0;
    rc = read_into(dec, path, max_pixels, &len, err);
    if (!rc) rc = vn_image_decode_memory(dec, dec->file, len, channels, max_pixels, img, info, err);
    if (rc) vn_error_prefix(err, "%s: ", path);
    vn_decoder_destroy(tmp);
    return rc;
}
