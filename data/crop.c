/* The official trainer's geometry beside timm's (datasets.py build_transform): RandomCrop
 * with zero padding for training at input sizes <= 32, and the evaluation resize modes. */
#include "data/vn_transform.h"

#include <string.h>

#include "data/crop_impl.h"

const char *vn_eval_resize_name(vn_eval_resize r)
{
    switch (r) {
    case VN_EVAL_RESIZE_CROP: return "crop";
    case VN_EVAL_RESIZE_NONE: return "none";
    case VN_EVAL_RESIZE_SQUARE: return "square";
    }
    return "?";
}

int vn_eval_resize_parse(const char *s)
{
    if (!s) return -1;
    for (int r = VN_EVAL_RESIZE_CROP; r <= VN_EVAL_RESIZE_SQUARE; r++)
        if (strcmp(s, vn_eval_resize_name((vn_eval_resize)r)) == 0) return r;
    return -1;
}

bool vn_random_crop_box(int width, int height, int size, int pad, const vn_rrc_draws *draws,
                        vn_box *box)
{
    int64_t pw = (int64_t)width + 2 * (int64_t)pad, ph = (int64_t)height + 2 * (int64_t)pad;
    if (ph < size || pw < size) return false;
    int64_t top = 0, left = 0;
    if (!(pw == size && ph == size)) {
        top = draws->randint(draws->user, ph - size + 1);
        left = draws->randint(draws->user, pw - size + 1);
    }
    *box = (vn_box){(int)(top - pad), (int)(left - pad), size, size};
    return true;
}

void vn__crop_u8(const vn_image *img, const vn_box *box, uint8_t *dst)
{
    const int ch = img->channels;
    const size_t row_bytes = (size_t)box->width * (size_t)ch;
    for (int y = 0; y < box->height; y++) {
        uint8_t *o = dst + (size_t)y * row_bytes;
        int sy = box->top + y;
        if (sy < 0 || sy >= img->height) {
            memset(o, 0, row_bytes);
            continue;
        }
        /* Columns [x0, x1) of the window lie inside the image; the rest is the zero fill. */
        int x0 = box->left < 0 ? -box->left : 0;
        if (x0 > box->width) x0 = box->width;
        int x1 = img->width - box->left < box->width ? img->width - box->left : box->width;
        if (x1 < x0) x1 = x0;
        memset(o, 0, (size_t)x0 * ch);
        memcpy(o + (size_t)x0 * ch,
               img->data + ((size_t)sy * img->width + (size_t)(box->left + x0)) * ch,
               (size_t)(x1 - x0) * ch);
        memset(o + (size_t)x1 * ch, 0, (size_t)(box->width - x1) * ch);
    }
}
