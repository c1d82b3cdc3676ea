/* Private interface between the image front end (image.c) and the codecs. */
#ifndef VN_IMAGE_IMPL_H
#define VN_IMAGE_IMPL_H

#include "data/vn_image.h"

struct vn_decoder {
    void *tj;          /* TurboJPEG decompressor, created on first JPEG */
    uint8_t *file;     /* file bytes, reused across decode_file calls */
    size_t file_cap;
    uint8_t *scratch;  /* CMYK pixels before conversion */
    size_t scratch_cap;
};

/* Makes img->data hold at least `bytes`; VN_ERR_NOMEM on failure. */
int vn__image_reserve(vn_image *img, size_t bytes, vn_error *err);
/* Grows a decoder-owned buffer. */
int vn__grow(uint8_t **buf, size_t *cap, size_t bytes, vn_error *err);
/* Checks width/height against the limit; message names the size. */
int vn__check_dims(int64_t width, int64_t height, int64_t max_pixels, vn_error *err);

int vn__png_probe(const uint8_t *buf, size_t len, vn_image_info *info, vn_error *err);
int vn__png_decode(const uint8_t *buf, size_t len, int channels, int64_t max_pixels,
                   vn_image *img, vn_image_info *info, vn_error *err);
int vn__jpeg_probe(vn_decoder *dec, const uint8_t *buf, size_t len, vn_image_info *info,
                   vn_error *err);
int vn__jpeg_decode(vn_decoder *dec, const uint8_t *buf, size_t len, int channels,
                    int64_t max_pixels, vn_image *img, vn_image_info *info, vn_error *err);

#endif
