/* Training targets: the smoothed one-hot rows of hard labels (BCE on plain batches) and their
 * lam-weighted pairs for mixup/cutmix batches, both from one definition of "smoothed". */
#include "data/vn_transform.h"

/* timm: off = smoothing / classes, on = 1 - smoothing + off (Python doubles stored in
 * float32 tensors). */
static void smoothed_values(double smoothing, int num_classes, float *on, float *off)
{
    *off = (float)(smoothing / num_classes);
    *on = (float)(1.0 - smoothing + smoothing / num_classes);
}

void vn_targets_smoothed(double smoothing, const int32_t *labels, int n, int num_classes,
                         float *targets)
{
    float on, off;
    smoothed_values(smoothing, num_classes, &on, &off);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < num_classes; c++)
            targets[(int64_t)i * num_classes + c] = c == labels[i] ? on : off;
}

void vn_mix_targets(const vn_mix_config *c, double lam, const int32_t *labels, int n,
                    float *targets)
{
    const int k = c->num_classes;
    float on, off;
    smoothed_values((double)c->label_smoothing, k, &on, &off);
    /* y = y1 * lam + y2 * (1 - lam) in float32, pairing i with n - 1 - i as x.flip(0). */
    const float l = (float)lam, m = (float)(1.0 - lam);
    for (int i = 0; i < n; i++) {
        int32_t a = labels[i], b = labels[n - 1 - i];
        float *t = targets + (size_t)i * k;
        for (int j = 0; j < k; j++) {
            float y1 = j == a ? on : off, y2 = j == b ? on : off;
            float p1 = y1 * l, p2 = y2 * m;
            t[j] = p1 + p2;
        }
    }
}
