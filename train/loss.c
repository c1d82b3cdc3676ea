/* The training criterion, chosen as the official main.py chooses it (lines 395-404): BCE or
 * soft-target cross-entropy while mixup/cutmix produces soft targets, label-smoothing
 * cross-entropy on hard labels otherwise. */
#include "train/vn_trainer.h"

#include "data/vn_transform.h"

const char *vn_train_loss_name(const vn_config *cfg, bool mixing)
{
    if (mixing) return cfg->loss.bce || cfg->loss.bce_always ? "bce" : "soft-ce";
    return cfg->loss.bce_always ? "bce" : "ce";
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
    if (kind[0] == 'b') {
        /* timm BinaryCrossEntropy on hard labels: the smoothed one-hot (data/targets.c). */
        vn_targets_smoothed(cfg->loss.smoothing, labels, n, nc, targets_buf);
        return vn_bce_with_logits(ctx, logits, targets_buf);
    }
    return vn_cross_entropy(ctx, logits, labels, NULL, (float)cfg->loss.smoothing);
}
