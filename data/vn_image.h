/* Image files: format detection from magic bytes, decoding PNG (libpng) and JPEG (TurboJPEG)
 * to 8-bit gray or RGB with PIL's conversion rules, and small writers (PNG for the IDX
 * import, JPEG for tests and benchmarks).
 *
 * Conversions follow what torchvision's ImageFolder + PIL `convert("RGB")` / `convert("L")`
 * produce, so a model trained here sees the pixels it would see in PyTorch:
 *  - alpha channels and PNG tRNS transparency are dropped (not composited);
 *  - palette PNGs are expanded through their palette;
 *  - 16-bit PNG samples keep their high byte (PIL does this for 16-bit RGB; for 16-bit gray
 *    PIL clips the 16-bit value to 255, a quirk we do not copy);
 *  - RGB to gray uses PIL's L = (19595 R + 38470 G + 7471 B + 32768) >> 16;
 *  - CMYK/YCCK JPEGs are converted with PIL's formula R = (255-C)(255-K)/255 (rounded as
 *    PIL's MULDIV255), treating the samples as inverted when an Adobe APP14 marker with a
 *    non-zero version is present (Photoshop's convention, as PIL does);
 *  - JPEGs decode with libjpeg's defaults (accurate integer IDCT, fancy upsampling), as PIL.
 * A JPEG whose data ends early ("Premature end of JPEG file") is an error, as in PIL; other
 * libjpeg warnings (extraneous bytes and the like) are tolerated, as in PIL. */
#ifndef VN_IMAGE_H
#define VN_IMAGE_H

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vn_image_format {
    VN_IMAGE_UNKNOWN = 0,
    VN_IMAGE_PNG = 1,
    VN_IMAGE_JPEG = 2
} vn_image_format;

/* PIL refuses images above 2 * 89478485 pixels as decompression bombs; so do we by default. */
#define VN_IMAGE_DEFAULT_MAX_PIXELS ((int64_t)178956970)

/* A decoded 8-bit image, rows top to bottom, pixels interleaved (HWC). The buffer is reused
 * by later decodes into the same struct; vn_image_free releases it. */
typedef struct vn_image {
    int width;
    int height;
    int channels; /* 1 (gray) or 3 (RGB) */
    uint8_t *data;
    size_t capacity; /* bytes allocated at data */
} vn_image;

/* What the file holds, before conversion. */
typedef struct vn_image_info {
    vn_image_format format;
    int width;
    int height;
    int file_channels; /* 1 gray, 2 gray+alpha, 3 RGB / YCbCr, 4 RGBA or CMYK */
    int bit_depth;     /* bits per sample in the file: 1..16 (PNG), 8 (JPEG) */
    bool palette;      /* PNG with a palette */
    bool cmyk;         /* JPEG in CMYK or YCCK */
    bool interlaced;   /* interlaced PNG or progressive JPEG */
} vn_image_info;

/* Format from the first bytes (needs 8 for PNG, 3 for JPEG); VN_IMAGE_UNKNOWN otherwise. */
vn_image_format vn_image_detect(const void *buf, size_t len);
const char *vn_image_format_name(vn_image_format fmt);

/* Per-thread decoding state: a TurboJPEG handle and reusable buffers. Not thread-safe; make
 * one per thread. Functions below accept NULL and then use a temporary one. */
typedef struct vn_decoder vn_decoder;
int vn_decoder_create(vn_decoder **out, vn_error *err);
void vn_decoder_destroy(vn_decoder *dec);

/* Reads the header only: format, size, color type. Fails on unknown or corrupt headers. */
int vn_image_probe_memory(const void *buf, size_t len, vn_image_info *info, vn_error *err);

/* Decodes to `channels` (1 or 3) 8-bit channels. Dimensions are checked against max_pixels
 * (<= 0: VN_IMAGE_DEFAULT_MAX_PIXELS) before any pixel is decoded. info may be NULL.
 * Errors: VN_ERR_FORMAT (not an image, corrupt, truncated), VN_ERR_UNSUPPORTED (too large),
 * VN_ERR_NOMEM. The message says what is wrong; decode_file prefixes the path. */
int vn_image_decode_memory(vn_decoder *dec, const void *buf, size_t len, int channels,
                           int64_t max_pixels, vn_image *img, vn_image_info *info,
                           vn_error *err);
int vn_image_decode_file(vn_decoder *dec, const char *path, int channels, int64_t max_pixels,
                         vn_image *img, vn_image_info *info, vn_error *err);
void vn_image_free(vn_image *img);

/* PNG writer: 8-bit gray (1), gray+alpha (2), RGB (3) or RGBA (4); zlib level 0..9 (low
 * levels are much faster; 1 suits bulk imports). Written in place (not atomic). */
int vn_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                 int compression_level, vn_error *err);
/* JPEG writer through TurboJPEG: gray (1, grayscale JPEG), RGB (3, 4:2:0), or CMYK (4, a
 * YCCK JPEG with TurboJPEG's Adobe marker, samples stored as given); quality 1..100. */
int vn_jpeg_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                  int quality, vn_error *err);

/* PIL's RGB -> L conversion of n pixels (dst may equal src). */
void vn_rgb_to_gray(uint8_t *dst, const uint8_t *src, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
