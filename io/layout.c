/* Conv weight layouts: OIHW in files (PyTorch), OHWI in memory (our kernels). */
#include "io/vn_layout.h"

#include <stdbool.h>

/* One walk over the weight for both directions: each element's offset in either layout. */
static void permute_weight(float *dst, const float *src, int64_t o, int64_t i, int64_t kh, int64_t kw,
                           bool to_ohwi)
{
    for (int64_t a = 0; a < o; a++)
        for (int64_t c = 0; c < i; c++)
            for (int64_t y = 0; y < kh; y++)
                for (int64_t x = 0; x < kw; x++) {
                    int64_t oihw = ((a * i + c) * kh + y) * kw + x;
                    int64_t ohwi = ((a * kh + y) * kw + x) * i + c;
                    if (to_ohwi)
                        dst[ohwi] = src[oihw];
                    else
                        dst[oihw] = src[ohwi];
                }
}

void vn_oihw_to_ohwi(float *dst, const float *src, int64_t o, int64_t i, int64_t kh, int64_t kw)
{
    permute_weight(dst, src, o, i, kh, kw, true);
}

void vn_ohwi_to_oihw(float *dst, const float *src, int64_t o, int64_t i, int64_t kh, int64_t kw)
{
    permute_weight(dst, src, o, i, kh, kw, false);
}
