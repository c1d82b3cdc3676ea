/* The training criterion, chosen as the official main.py chooses it (lines 395-404): BCE or
 * soft-target cross-entropy while mixup/cutmix produces soft targets, label-smoothing
 * cross-entropy on hard labels otherwise. */
#include "train/vn_trainer.h"

const char *vn_train_loss_name(const vn_config *cfg, bool mixing)
{
    if (mixing) return cfg->loss.bce || cfg->loss.bce_always ? "bce" : "soft-ce";
    return cfg->loss.bce_always ? "bce" : "ce";
}

/* timm BinaryCrossEntropy on hard labels: off = s / C, on = 1 - s + s / C. */
static const float *smoothed_one_hot(const vn_config *cfg, const int32_t *labels, int n, int nc,
                                     float *buf)
{
    double s = cfg->loss.smoothing;
    float off = (float)(s / nc), on = (float)(1.0 - s + s / nc);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < nc; c++) buf[(int64_t)i * nc + c] = c == labels[i] ? on : off;
    return buf;
}

vn_tensor *vn_train_loss(vn_ctx *ctx, const vn_config *cfg, vn_tensor *logits,
                         const int32_t *labels, const float *soft_targets, int n,
                         float *targets_buf)
{
    if (!logits) return NULL;
    const char *kind = vn_train_loss_name(cfg, soft_targets != NULL);
    int nc = (int)logits->shape[logits->ndim - 1];
    if (soft_targets)
        return kind[0] == 'b' ? vn_bce_with_logits(ctx, logits, soft_targets)
                              : vn_cross_entropy(ctx, logits, NULL, soft_targets, 0.0f);
    if (kind[0] == 'b')
        return vn_bce_with_logits(ctx, logits, smoothed_one_hot(cfg, labels, n, nc, targets_buf));
    return vn_cross_entropy(ctx, logits, labels, NULL, (float)cfg->loss.smoothing);
}
