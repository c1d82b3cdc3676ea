/* libFuzzer target: image decoding through the data layer's entry point (format detection,
 * header probe, dimension limit, PNG through libpng, JPEG through TurboJPEG, conversion to
 * gray or RGB). Built twice, as fuzz_png and fuzz_jpeg, with the seeds of each format. The
 * limit is small (4 Mpixel) so that huge headers are refused before allocation, as the loader
 * refuses anything above its max_pixels. */
#include "data/vn_image.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_PIXELS ((int64_t)1 << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static vn_decoder *dec;
    vn_error err = {0};
    if (!dec && vn_decoder_create(&dec, &err) != VN_OK) abort();
    int channels = size % 2 ? 1 : 3;
    vn_image img = {0};
    vn_image_info info;
    int rc = vn_image_decode_memory(dec, data, size, channels, FUZZ_MAX_PIXELS, &img, &info, &err);
    if (rc == VN_OK) {
        if (img.width <= 0 || img.height <= 0 || img.channels != channels ||
            (int64_t)img.width * img.height > FUZZ_MAX_PIXELS)
            abort();
        unsigned sum = 0;
        size_t n = (size_t)img.width * img.height * (size_t)channels;
        for (size_t i = 0; i < n; i += 61) sum += img.data[i];
        (void)sum;
    } else if (err.msg[0] == '\0') {
        abort();
    }
    vn_image_free(&img);
    return 0;
}
