/* Export: the merge of a training checkpoint's model into the deploy network, checked on a
 * random batch against the training form, written as safetensors (with the model metadata)
 * or ONNX. The `vanilla export` command is a wrapper around vn_export_model. */
#include "train/train_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The check batch: EXPORT_CHECK_BATCH standard-normal images from a generator seeded with
 * EXPORT_CHECK_SEED, so that the printed difference is reproducible. */
#define EXPORT_CHECK_SEED 2023
#define EXPORT_CHECK_BATCH 8
#define EXPORT_DEFAULT_SIZE 224 /* without stored preprocessing */

/* Eval-mode logits of m on x, copied into *out (n values). On the context's device: m moves
 * there for the forward and back to the host after it (the merge and the writers read it
 * there). */
/* VN_OK when every value is finite; else the error `msg` (one %g: the first bad value). */
static int check_finite(const float *v, int64_t n, const char *msg, vn_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return vn_error_set(err, VN_ERR_NUMERIC, msg, (double)v[i]);
    return VN_OK;
}

static int logits_of(vn_ctx *ctx, vn_vanillanet *m, vn_tensor *x, float **out, int64_t *n,
                     vn_error *err)
{
    vn_device d = vn_ctx_device(ctx);
    int rc = d == VN_DEVICE_CPU ? VN_OK : vn_state_to_device(&m->state, d, err);
    vn_tensor *xd = rc == VN_OK ? vn_ctx_upload(ctx, x) : NULL;
    vn_tensor *y = xd ? vn_vanillanet_forward(ctx, m, xd) : NULL;
    if (rc == VN_OK && !y) rc = vn_error_set(err, vn_ctx_status(ctx), "%s", vn_ctx_error(ctx));
    if (rc == VN_OK) {
        *n = y->numel;
        *out = malloc((size_t)y->numel * sizeof **out);
        if (!*out) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    if (rc == VN_OK && vn_tensor_read(y, *out) != VN_OK)
        rc = vn_error_set(err, VN_ERR_IO, "reading the logits back from %s failed",
                          vn_device_name(d));
    vn_ctx_reset(ctx);
    if (d != VN_DEVICE_CPU) {
        vn_error e2 = {0};
        int back = vn_state_to_device(&m->state, VN_DEVICE_CPU, &e2);
        if (rc == VN_OK && back != VN_OK) rc = vn_error_set(err, back, "%s", e2.msg);
    }
    return rc;
}

/* Runs the training form on the check batch, merges m in place, runs the deploy form and
 * records the largest difference. */
static int merge_and_check(vn_vanillanet *m, const vn_ckpt_info *info, bool force,
                           vn_device device, vn_export_result *res, vn_error *err)
{
    res->act_learn = m->act_learn; /* before the merge sets it to 1 */
    res->check_size = info && info->has_data ? info->input_size : EXPORT_DEFAULT_SIZE;
    res->params_train = vn_vanillanet_count_params(&m->cfg, false);
    int size = res->check_size;
    vn_tensor *x = vn_tensor_new4(EXPORT_CHECK_BATCH, size, size, m->cfg.in_chans, false);
    vn_ctx *ctx = vn_ctx_create_on(device);
    float *ref = NULL, *got = NULL;
    int64_t n = 0, n2 = 0;
    int rc = x && ctx ? VN_OK : vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    if (rc == VN_OK) {
        vn_rng rng;
        vn_rng_seed(&rng, EXPORT_CHECK_SEED, 0, 0);
        for (int64_t i = 0; i < x->numel; i++) x->data[i] = (float)vn_rng_normal(&rng);
        vn_ctx_set_grad(ctx, false);
        vn_vanillanet_set_training(m, false);
        rc = logits_of(ctx, m, x, &ref, &n, err);
    }
    /* NaN compares as no difference: a network with non-finite weights would pass the check */
    if (rc == VN_OK)
        rc = check_finite(ref, n, "the network's logits on the check batch are not finite (%g): "
                          "its weights hold NaN or infinity; nothing exported", err);
    if (rc == VN_OK) rc = vn_vanillanet_switch_to_deploy(m, force, err);
    if (rc == VN_OK) rc = logits_of(ctx, m, x, &got, &n2, err);
    if (rc == VN_OK)
        rc = check_finite(got, n, "the merged network's logits on the check batch are not finite "
                          "(%g); nothing exported", err);
    for (int64_t i = 0; rc == VN_OK && i < n; i++) {
        res->max_diff = fmax(res->max_diff, fabs((double)got[i] - ref[i]));
        res->max_ref = fmax(res->max_ref, fabs((double)ref[i]));
    }
    if (rc == VN_OK) {
        res->merged = true;
        res->params_deploy = vn_state_numel(&m->state, VN_STATE_PARAM);
    }
    free(ref);
    free(got);
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
    return rc;
}

/* The deploy weights with the model metadata: preprocessing from the stored config, else
 * from the stored vanilla.data. */
static int write_deploy(const vn_vanillanet *m, const vn_ckpt_info *info, const char *path,
                        vn_error *err)
{
    vn_st_writer *w = vn_st_writer_new();
    if (!w) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = vn_state_to_writer(&m->state, "", w, err);
    vn_config *cfg = info->config_yaml ? malloc(sizeof *cfg) : NULL;
    bool have_cfg = cfg && vn_config_from_text(cfg, info->config_yaml, strlen(info->config_yaml),
                                               path, NULL) == VN_OK;
    if (rc == VN_OK)
        rc = vn__write_model_meta(w, m, have_cfg ? cfg : NULL, info,
                                  (const char *const *)info->class_names, info->n_classes, err);
    if (rc == VN_OK) rc = vn_st_write(w, path, VN_ST_CRC32, err);
    free(cfg);
    vn_st_writer_free(w);
    return rc;
}

int vn_export_model(vn_vanillanet *m, const vn_ckpt_info *info, const char *path,
                    const vn_export_options *opt, vn_export_result *res, vn_error *err)
{
    memset(res, 0, sizeof *res);
    const char *src = opt->source ? opt->source : "the model";
    if (m->deploy && opt->onnx) return vn_export_onnx(m, info, opt->onnx_input_size, path, err);
    if (m->deploy)
        return vn_error_set(err, VN_ERR_INVALID, "%s is already in deploy form (--format onnx "
                            "converts it)", src);
    if (m->act_learn < 1.0f && !opt->force)
        return vn_error_set(err, VN_ERR_INVALID, "%s has act_learn %.4g < 1: deep training has not "
                            "finished, so the leaky ReLU between conv1 and conv2 is not the identity "
                            "and the merge would change the network's outputs. Train to the end of "
                            "deep_training.decay_epochs, or pass --force to export an approximate "
                            "network.", src, (double)m->act_learn);
    int rc = merge_and_check(m, info, opt->force, opt->device, res, err);
    if (rc != VN_OK) return rc;
    if (opt->onnx) return vn_export_onnx(m, info, opt->onnx_input_size, path, err);
    return write_deploy(m, info, path, err);
}
