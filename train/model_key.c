/* --model_key of the official trainer: which state dict of a checkpoint to take. Official
 * checkpoints hold "model" and "model_ema"; ours the live model and EMA copies 0..N-1. */
#include "train/train_impl.h"
#include "io/vn_pth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One alternative: -1 live model, >= 0 an EMA copy, -2 not held by the file, -3 unknown. */
static int pick_one(const char *key, size_t len, bool is_checkpoint, int n_emas)
{
    if (!is_checkpoint) n_emas = 0;
    if (len == 5 && strncmp(key, "model", 5) == 0) return -1;
    if (len == 9 && strncmp(key, "model_ema", 9) == 0) return n_emas > 0 ? 0 : -2;
    if (len > 10 && strncmp(key, "model_ema.", 10) == 0) {
        int idx = 0;
        for (size_t i = 10; i < len; i++) {
            if (key[i] < '0' || key[i] > '9' || idx > 1000) return -3;
            idx = idx * 10 + (key[i] - '0');
        }
        return idx < n_emas ? idx : -2;
    }
    return -3;
}

int vn__model_key_pick(const char *path, const char *key, bool is_checkpoint, int n_emas,
                       int *index, vn_error *err)
{
    if (!key || !key[0]) key = "model";
    int idx = -2;
    for (const char *k = key; idx == -2;) {
        const char *bar = strchr(k, '|');
        size_t len = bar ? (size_t)(bar - k) : strlen(k);
        idx = pick_one(k, len, is_checkpoint, n_emas);
        if (idx == -3)
            return vn_error_set(err, VN_ERR_INVALID, "model key '%.*s' (in '%s'): expected model, "
                                "model_ema or model_ema.N", (int)len, k, key);
        if (!bar) break;
        k = bar + 1;
    }
    if (idx == -2)
        return vn_error_set(err, VN_ERR_NOT_FOUND, "%s holds no '%s' (%s with %d EMA copies)", path,
                            key, is_checkpoint ? "a checkpoint" : "a weight file",
                            is_checkpoint ? n_emas : 0);
    *index = idx;
    return VN_OK;
}

int vn_open_model_key(const char *path, const char *key, vn_vanillanet **model,
                      vn_ckpt_info *info, int *ema_index, vn_error *err)
{
    *model = NULL;
    vn_ckpt_info probe;
    int rc = vn_ckpt_info_read(path, &probe, err);
    if (rc != VN_OK && vn_pth_looks_like(path))
        return vn_error_set(err, VN_ERR_FORMAT, "%s is a PyTorch file (torch.save): convert it first "
                            "with `vanilla import %s --key %s -o WEIGHTS.safetensors`", path, path, key);
    if (rc != VN_OK) return rc;
    int idx = -1;
    rc = vn__model_key_pick(path, key, probe.is_checkpoint, probe.n_emas, &idx, err);
    vn_ckpt_info_free(&probe);
    if (rc != VN_OK) return rc;
    if (ema_index) *ema_index = idx;
    return vn_open_model(path, idx, model, info, err);
}
