/* Internal helper of the transforms (data/crop.c). */
#ifndef VN_CROP_IMPL_H
#define VN_CROP_IMPL_H

#include "data/vn_image.h"
#include "data/vn_transform.h"

/* Copies the window box of img (which may reach outside it: zeros there, as torchvision's
 * constant padding with fill 0) into dst, box->width * box->height * channels bytes. */
void vn__crop_u8(const vn_image *img, const vn_box *box, uint8_t *dst);

#endif
