/* Evaluation: top-1, top-5 and mean cross-entropy over a loader epoch, in eval mode. */
#include "train/vn_trainer.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int vn_evaluate(vn_ctx *ctx, vn_vanillanet *m, vn_loader *ld, vn_eval_result *res,
                float **logits_out, vn_error *err)
{
    return vn_evaluate_until(ctx, m, ld, res, logits_out, NULL, err);
}

int vn_evaluate_until(vn_ctx *ctx, vn_vanillanet *m, vn_loader *ld, vn_eval_result *res,
                      float **logits_out, const volatile sig_atomic_t *stop, vn_error *err)
{
    memset(res, 0, sizeof *res);
    bool was_training = m->training;
    vn_vanillanet_set_training(m, false);
    bool grad = vn_ctx_set_grad(ctx, false);
    int rc = vn_loader_start_epoch(ld, 0, 0, err);
    int nc = m->cfg.num_classes;
    int64_t total = vn_loader_num_samples(ld);
    float *all = NULL;
    if (rc == VN_OK && logits_out) {
        all = malloc((size_t)(total > 0 ? total : 1) * (size_t)nc * sizeof *all);
        if (!all) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory for logits");
        /* Rows of images that could not be read stay NaN. */
        for (int64_t i = 0; all && i < (total > 0 ? total : 1) * nc; i++) all[i] = NAN;
    }
    double loss_sum = 0;
    int64_t top1 = 0, top5 = 0, n = 0;
    while (rc == VN_OK) {
        if (stop && *stop) {
            rc = vn_error_set(err, VN_ERR_INTERRUPTED, "evaluation interrupted by a signal");
            break;
        }
        vn_batch b;
        rc = vn_loader_next(ld, &b, err);
        if (rc != VN_OK || b.size == 0) break;
        vn_ctx_reset(ctx);
        vn_tensor *x = vn_ctx_upload(ctx, b.images); /* the batch to the context's device */
        vn_tensor *y = x ? vn_vanillanet_forward(ctx, m, x) : NULL;
        float *yhost = y && y->device != VN_DEVICE_CPU ? malloc((size_t)y->numel * sizeof(float))
                                                       : NULL;
        if (yhost && vn_tensor_read(y, yhost) != VN_OK)
            y = vn_ctx_fail(ctx, VN_ERR_IO, "reading logits back from the device failed");
        if (y && y->device != VN_DEVICE_CPU && !yhost)
            y = vn_ctx_fail(ctx, VN_ERR_NOMEM, "out of memory for logits");
        const float *ydata = yhost ? yhost : y ? y->data : NULL;
        if (!y) {
            free(yhost);
            rc = vn_error_set(err, vn_ctx_status(ctx), "evaluation: %s", vn_ctx_error(ctx));
            vn_loader_release(ld, &b);
            break;
        }
        for (int i = 0; i < b.size; i++) {
            const float *row = ydata + (int64_t)i * nc;
            int label = b.labels[i];
            if (label < 0) continue; /* an unreadable image's empty slot: not counted */
            n++;
            /* Rank of the true class: how many classes come before it in a ranking by logit
             * with ties to the lower index (argmax's, predict's pick) and a NaN first (as
             * torch.topk): equal logits are not all right at once, and a NaN label logit is
             * wrong. */
            const float ly = row[label];
            int above = isnan(ly) ? INT_MAX : 0;
            double mx = row[0];
            for (int c = 0; c < nc; c++) {
                if (row[c] > mx) mx = row[c];
                if (!isnan(ly))
                    above += isnan(row[c]) || row[c] > ly || (row[c] == ly && c < label);
            }
            top1 += above == 0;
            top5 += above < 5;
            double se = 0;
            for (int c = 0; c < nc; c++) se += exp((double)row[c] - mx);
            loss_sum += mx + log(se) - row[label];
            if (all) memcpy(all + b.indices[i] * nc, row, (size_t)nc * sizeof *all);
        }
        free(yhost);
        vn_loader_release(ld, &b);
    }
    vn_ctx_reset(ctx);
    vn_ctx_set_grad(ctx, grad);
    vn_vanillanet_set_training(m, was_training);
    if (rc != VN_OK) {
        free(all);
        return rc;
    }
    res->n = n;
    res->top1 = n ? 100.0 * (double)top1 / (double)n : 0;
    res->top5 = n ? 100.0 * (double)top5 / (double)n : 0;
    res->loss = n ? loss_sum / (double)n : 0;
    if (logits_out) *logits_out = all;
    return VN_OK;
}
