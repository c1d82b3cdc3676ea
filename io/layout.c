/* Conv weight layouts: OIHW in files (PyTorch), OHWI in memory (our kernels). */
#include "io/vn_layout.h"

void vn_oihw_to_ohwi(float *dst, const float *src, int64_t o, int64_t i, int64_t kh, int64_t kw)
{
    for (int64_t a = 0; a < o; a++)
        for (int64_t c = 0; c < i; c++)
            for (int64_t y = 0; y < kh; y++)
                for (int64_t x = 0; x < kw; x++)
                    dst[((a * kh + y) * kw + x) * i + c] = src[((a * i + c) * kh + y) * kw + x];
}

void vn_ohwi_to_oihw(float *dst, const float *src, int64_t o, int64_t i, int64_t kh, int64_t kw)
{
    for (int64_t a = 0; a < o; a++)
        for (int64_t c = 0; c < i; c++)
            for (int64_t y = 0; y < kh; y++)
                for (int64_t x = 0; x < kw; x++)
                    dst[((a * i + c) * kh + y) * kw + x] = src[((a * kh + y) * kw + x) * i + c];
}
