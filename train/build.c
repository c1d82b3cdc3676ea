/* Building the trainer's pieces from a configuration. */
#include "train/vn_trainer.h"
#include "data/vn_augment.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int vn_build_model_config(const vn_config *cfg, int n_classes, vn_vanillanet_config *out,
                          vn_error *err)
{
    const vn_config_model *mc = &cfg->model;
    memset(out, 0, sizeof *out);
    if (mc->name != VN_CONFIG_MODEL_CUSTOM) {
        const char *name = vn_config_enum_name("model.name", mc->name);
        int rc = vn_vanillanet_variant(name ? name : "?", out, err);
        if (rc != VN_OK) return rc;
    }
    const bool named = mc->name != VN_CONFIG_MODEL_CUSTOM;
    if (mc->dims.n || mc->strides.n) {
        /* For a released variant, the one not given is the variant's. */
        int nd = mc->dims.n ? mc->dims.n : named ? out->n_stages + 1 : 0;
        int ns = mc->strides.n ? mc->strides.n : named ? out->n_stages : 0;
        if (nd != ns + 1)
            return vn_error_set(err, VN_ERR_INVALID, "model.dims has %d entries%s and model.strides "
                                "%d%s: dims needs one more (the stem width first)", nd,
                                mc->dims.n ? "" : " (the variant's)", ns,
                                mc->strides.n ? "" : " (the variant's)");
        if (ns > VN_MAX_STAGES)
            return vn_error_set(err, VN_ERR_INVALID, "model.strides: at most %d stages", VN_MAX_STAGES);
        out->n_stages = ns;
        for (int i = 0; i < mc->dims.n; i++) out->dims[i] = (int)mc->dims.v[i];
        for (int i = 0; i < mc->strides.n; i++) out->strides[i] = (int)mc->strides.v[i];
        if (mc->strides.n) { /* the variant's adaptive pools go with its strides */
            out->ada_pool_enabled = false;
            memset(out->ada_pool, 0, sizeof out->ada_pool);
        }
    } else if (mc->name == VN_CONFIG_MODEL_CUSTOM) {
        return vn_error_set(err, VN_ERR_INVALID, "model.name is custom: set model.dims and "
                            "model.strides");
    }
    if (mc->ada_pool.n) {
        if (mc->ada_pool.n != out->n_stages)
            return vn_error_set(err, VN_ERR_INVALID, "model.ada_pool has %d entries for %d stages",
                                mc->ada_pool.n, out->n_stages);
        out->ada_pool_enabled = true;
        for (int i = 0; i < mc->ada_pool.n; i++) out->ada_pool[i] = (int)mc->ada_pool.v[i];
    }
    out->act_num = (int)mc->act_num;
    out->in_chans = (int)mc->in_chans;
    out->num_classes = mc->num_classes > 0 ? (int)mc->num_classes : n_classes;
    out->drop_rate = (float)mc->drop_rate;
    out->shortcut = mc->shortcut == VN_CONFIG_SHORTCUT_IDENTITY ? VN_SHORTCUT_IDENTITY : VN_SHORTCUT_NONE;
    return vn_vanillanet_config_check(out, err);
}

const char *vn_split_path(const vn_config *cfg, bool train, char *buf, size_t len)
{
    const char *sub = train ? cfg->data.train_dir : cfg->data.val_dir;
    if (sub[0] == '/') snprintf(buf, len, "%s", sub);
    else snprintf(buf, len, "%s/%s", cfg->data.root, sub);
    return buf;
}

void vn_build_loader_config(const vn_config *cfg, bool train, vn_loader_config *lc)
{
    const vn_config_data *d = &cfg->data;
    vn_loader_config_init(lc);
    lc->input_size = (int)d->input_size;
    lc->channels = d->grayscale ? 1 : 3;
    static const vn_augment augments[] = {
        [VN_CONFIG_AUGMENT_NONE] = VN_AUGMENT_NONE, [VN_CONFIG_AUGMENT_RRC] = VN_AUGMENT_RRC,
        [VN_CONFIG_AUGMENT_RANDOM_CROP] = VN_AUGMENT_RANDOM_CROP};
    lc->augment = augments[d->augment];
    lc->scale[0] = (float)d->scale.v[0], lc->scale[1] = (float)d->scale.v[1];
    lc->ratio[0] = (float)d->ratio.v[0], lc->ratio[1] = (float)d->ratio.v[1];
    int interp = train ? d->interpolation : d->eval_interpolation;
    lc->interpolation = interp == VN_CONFIG_INTERP_BICUBIC ? VN_INTERP_BICUBIC : VN_INTERP_BILINEAR;
    lc->crop_pct = d->crop_pct;
    vn_official_geometry(cfg, lc);
    lc->hflip = (float)d->hflip;
    lc->auto_augment = d->auto_augment;
    lc->color_jitter = (float)d->color_jitter;
    lc->reprob = (float)d->reprob;
    lc->remode = d->remode == VN_CONFIG_REMODE_CONST  ? VN_ERASE_CONST
                 : d->remode == VN_CONFIG_REMODE_RAND ? VN_ERASE_RAND
                                                      : VN_ERASE_PIXEL;
    lc->recount = (int)d->recount;
    for (int c = 0; c < 3; c++) {
        lc->mean[c] = (float)d->mean.v[d->mean.n > c ? c : 0];
        lc->std[c] = (float)d->std.v[d->std.n > c ? c : 0];
    }
    lc->mixup_alpha = (float)d->mixup;
    lc->cutmix_alpha = (float)d->cutmix;
    lc->mixup_prob = (float)d->mixup_prob;
    lc->mixup_switch_prob = (float)d->mixup_switch_prob;
    lc->label_smoothing = (float)d->smoothing;
    lc->num_classes = (int)cfg->model.num_classes;
    lc->batch_size = (int)cfg->train.batch_size;
    lc->drop_last = true;
    lc->shuffle = cfg->train.shuffle;
    lc->seed = (uint64_t)cfg->train.seed;
    lc->workers = (int)d->workers;
    lc->prefetch = (int)d->prefetch;
    lc->fail_fast = d->fail_fast;
    lc->max_bad_fraction = d->max_bad_fraction;
    if (!train) {
        vn_loader_config_eval(lc);
        lc->empty_bad_slots = true; /* evaluation counts only the readable images */
        if (d->eval_batch_size > 0) lc->batch_size = (int)d->eval_batch_size;
    }
}

vn_eval_resize vn_official_eval_resize(int64_t input_size)
{
    /* datasets.py: resize_im = input_size > 32; "warping" at 384 and more. */
    return input_size <= 32 ? VN_EVAL_RESIZE_NONE
           : input_size >= 384 ? VN_EVAL_RESIZE_SQUARE : VN_EVAL_RESIZE_CROP;
}

void vn_official_geometry(const vn_config *cfg, vn_loader_config *lc)
{
    lc->eval_resize = VN_EVAL_RESIZE_CROP;
    if (cfg->data.eval_mode != VN_CONFIG_EVAL_OFFICIAL) return;
    lc->eval_resize = vn_official_eval_resize(cfg->data.input_size);
    if (lc->eval_resize == VN_EVAL_RESIZE_NONE && lc->augment == VN_AUGMENT_RRC)
        lc->augment = VN_AUGMENT_RANDOM_CROP;
}

void vn_build_optim_config(const vn_config *cfg, vn_optim_config *oc)
{
    const vn_config_optim *o = &cfg->optim;
    static const vn_optim_kind kinds[] = {VN_OPTIM_SGD, VN_OPTIM_ADAMW, VN_OPTIM_LAMB};
    vn_optim_config_init(oc, kinds[o->name]);
    oc->lr = o->lr;
    oc->weight_decay = o->weight_decay;
    oc->momentum = o->momentum;
    /* The official factory's "sgd" is Nesterov; torch refuses Nesterov without momentum. */
    oc->nesterov = o->name == VN_CONFIG_OPTIM_SGD && o->nesterov && o->momentum > 0;
    oc->beta1 = o->betas.v[0];
    oc->beta2 = o->betas.v[1];
    oc->eps = o->eps;
    oc->layer_decay = o->layer_decay;
    oc->layer_decay_num_layers = (int)o->layer_decay_num_layers;
}

double vn_act_learn_at(const vn_config *cfg, double epoch)
{
    double n = (double)cfg->deep_training.decay_epochs;
    if (n <= 0 || epoch >= n) return 1.0;
    if (epoch < 0) epoch = 0;
    if (cfg->deep_training.schedule == VN_CONFIG_DECAY_COSINE) return 0.5 * (1.0 - cos(M_PI * epoch / n));
    return epoch / n;
}

int vn_ema_of_state(vn_ema **out, double decay, const vn_state_list *live,
                    const vn_state_list *copy, bool counters, const char *prefix, vn_error *err)
{
    *out = NULL;
    vn_tensor **dst = calloc((size_t)live->n + 1, sizeof *dst), **src = calloc((size_t)live->n + 1, sizeof *src);
    int nf = 0, rc = dst && src ? VN_OK : vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    for (int i = 0; rc == VN_OK && i < live->n; i++)
        if (live->items[i].kind != VN_STATE_COUNT) {
            dst[nf] = copy->items[i].tensor;
            src[nf++] = live->items[i].tensor;
        }
    if (rc == VN_OK) rc = vn_ema_create(out, decay, nf, dst, src, NULL, prefix, err);
    free(dst);
    free(src);
    for (int i = 0; rc == VN_OK && counters && i < live->n; i++)
        if (live->items[i].kind == VN_STATE_COUNT)
            rc = vn_ema_add_counter(*out, live->items[i].name, copy->items[i].count,
                                    live->items[i].count, err);
    return rc;
}
