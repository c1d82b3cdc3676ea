/* Layout conversion between files and memory: conv weights are OIHW in files (PyTorch's
 * order) and OHWI in memory (the order our NHWC kernels read). */
#ifndef VN_LAYOUT_H
#define VN_LAYOUT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void vn_oihw_to_ohwi(float *dst, const float *src, int64_t o, int64_t i, int64_t kh, int64_t kw);
void vn_ohwi_to_oihw(float *dst, const float *src, int64_t o, int64_t i, int64_t kh, int64_t kw);

#ifdef __cplusplus
}
#endif
#endif
