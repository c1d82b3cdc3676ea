/* The deploy VanillaNet as an ONNX graph (io/vn_onnx.h): stem Conv 4x4 -> Relu -> depthwise
 * Conv (the series activation with its folded BN as bias); per stage Conv 1x1 -> MaxPool (or
 * AdaptiveMaxPool2d mapped to the MaxPool it equals at the export's input size) -> Relu ->
 * depthwise Conv; GlobalAveragePool -> Conv 1x1 -> Flatten. Dropout is the identity at
 * inference and is left out. Class names and preprocessing go in metadata_props. */
#include "train/vn_trainer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/vn_layout.h"
#include "io/vn_onnx.h"
#include "train/train_impl.h"

/* An OHWI conv layer as an ONNX Conv (OIHW weights). */
static int add_conv(vn_onnx *g, const char *name, const vn_tensor *w, const vn_tensor *b, int stride,
                    int pad, int groups, vn_error *err)
{
    int64_t o = w->shape[0], kh = w->shape[1], kw = w->shape[2], i = w->shape[3];
    float *oihw = malloc((size_t)w->numel * sizeof *oihw);
    if (!oihw) return vn_error_set(err, VN_ERR_NOMEM, "out of memory exporting '%s'", name);
    vn_ohwi_to_oihw(oihw, w->data, o, i, kh, kw);
    int rc = vn_onnx_conv(g, name, oihw, b ? b->data : NULL, (int)o, (int)i, (int)kh, (int)kw,
                          stride, pad, groups, err);
    free(oihw);
    return rc;
}

/* relu -> depthwise (2n+1)^2 conv with bias. */
static int add_act(vn_onnx *g, const char *prefix, const vn_series_act *a, vn_error *err)
{
    char name[128];
    snprintf(name, sizeof name, "%s.relu", prefix);
    int rc = vn_onnx_relu(g, name, err);
    snprintf(name, sizeof name, "%s", prefix);
    if (rc == VN_OK) rc = add_conv(g, name, a->weight, a->bias, 1, a->act_num, a->dim, err);
    return rc;
}

/* *fixed: the map no longer depends on the input size (an earlier AdaptiveMaxPool2d set it). */
static int add_pool(vn_onnx *g, int i, const vn_vanilla_block *b, int *h, int *w, bool *fixed,
                    vn_error *err)
{
    char name[64];
    snprintf(name, sizeof name, "stages.%d.pool", i);
    if (b->stride <= 1) return VN_OK;
    if (!b->ada_pool) {
        *h /= b->stride, *w /= b->stride;
        return vn_onnx_maxpool(g, name, b->stride, b->stride, err);
    }
    if ((*h != *w || *h % b->ada_pool != 0) && *fixed)
        return vn_error_set(err, VN_ERR_UNSUPPORTED, "stages.%d: AdaptiveMaxPool2d(%d) of a %dx%d map "
                            "has windows of different sizes, which no single ONNX MaxPool expresses, "
                            "and that map is %dx%d at every input size (an earlier stage's "
                            "AdaptiveMaxPool2d sets it): this model has no ONNX form here; use its "
                            "safetensors (vanilla predict, or PyTorch)", i, b->ada_pool, *h, *w, *h, *w);
    if (*h != *w || *h % b->ada_pool != 0)
        return vn_error_set(err, VN_ERR_UNSUPPORTED, "stages.%d: AdaptiveMaxPool2d(%d) of a %dx%d map "
                            "has windows of different sizes, which no single ONNX MaxPool expresses; "
                            "export at an input size where the map is a multiple of %d", i,
                            b->ada_pool, *h, *w, b->ada_pool);
    *fixed = true;
    int k = *h / b->ada_pool;
    *h = *w = b->ada_pool;
    return vn_onnx_maxpool(g, name, k, k, err);
}

int vn__onnx_vanillanet_features(vn_onnx *g, const vn_vanillanet *m, int size, const char **feats,
                                 vn_error *err)
{
    const vn_conv_params sp = m->stem1.p;
    int rc = add_conv(g, "stem.0", m->stem1.weight, m->stem1.bias, sp.stride_h, sp.pad_h, 1, err);
    int h = (size + 2 * sp.pad_h - m->stem1.kh) / sp.stride_h + 1, w = h;
    if (rc == VN_OK) rc = add_act(g, "stem.1", &m->stem_act, err);
    if (rc == VN_OK && feats) feats[0] = vn_onnx_last(g);
    char name[64];
    bool fixed = false;
    for (int i = 0; rc == VN_OK && i < m->cfg.n_stages; i++) {
        const vn_vanilla_block *b = &m->stages[i];
        snprintf(name, sizeof name, "stages.%d.conv", i);
        rc = add_conv(g, name, b->conv.weight, b->conv.bias, 1, 0, 1, err);
        if (rc == VN_OK) rc = add_pool(g, i, b, &h, &w, &fixed, err);
        snprintf(name, sizeof name, "stages.%d.act", i);
        if (rc == VN_OK) rc = add_act(g, name, &b->act, err);
        if (rc == VN_OK && (h < 1 || w < 1))
            rc = vn_error_set(err, VN_ERR_SHAPE, "input %d is too small: stage %d's map is empty", size, i);
        if (rc == VN_OK && feats) feats[i + 1] = vn_onnx_last(g);
    }
    return rc;
}

static int add_network(vn_onnx *g, const vn_vanillanet *m, int size, vn_error *err)
{
    int rc = vn__onnx_vanillanet_features(g, m, size, NULL, err);
    if (rc == VN_OK) rc = vn_onnx_global_avgpool(g, "cls.0", err);
    if (rc == VN_OK) rc = add_conv(g, "cls.2", m->cls1.weight, m->cls1.bias, 1, 0, 1, err);
    if (rc == VN_OK) rc = vn_onnx_flatten(g, "flatten", err);
    return rc;
}

/* The geometry at the exported input size: the stored one at the stored size; at another
 * size, data.eval_mode official's rule again (none up to 32, a square warp from 384, else
 * crop) when the stored geometry came from it (none or square, or a stored config saying so),
 * else the stored one (resize-crop at every size). */
static vn_eval_resize resize_at(const vn_ckpt_info *info, int size)
{
    vn_eval_resize r = (vn_eval_resize)info->eval_resize;
    if (size == info->input_size) return r;
    bool official = r != VN_EVAL_RESIZE_CROP;
    if (!official && info->config_yaml) {
        vn_config *c = malloc(sizeof *c);
        official = c && vn_config_from_text(c, info->config_yaml, strlen(info->config_yaml),
                                            "the stored config", NULL) == VN_OK &&
                   c->data.eval_mode == VN_CONFIG_EVAL_OFFICIAL;
        free(c);
    }
    return official ? vn_official_eval_resize(size) : r;
}

/* The preprocessing as JSON (*out), or an error naming what could not be written (a NaN mean,
 * say: JSON has no NaN) instead of a partial object. */
static int meta_json(const vn_ckpt_info *info, int size, int channels, char **out, vn_error *err)
{
    json_t *o = json_object(), *mean = json_array(), *std = json_array();
    bool ok = o && mean && std;
    for (int c = 0; ok && c < channels; c++) {
        ok = json_array_append_new(mean, json_real(info->mean[c])) == 0;
        ok = ok && json_array_append_new(std, json_real(info->std[c])) == 0;
    }
    ok = ok && json_object_set_new(o, "input_size", json_integer(size)) == 0;
    ok = ok && json_object_set_new(o, "channels", json_integer(channels)) == 0;
    ok = ok && json_object_set_new(o, "layout", json_string("NCHW, RGB (or gray) scaled to [0, 1], then "
                                                            "(x - mean) / std")) == 0;
    ok = ok && json_object_set_new(o, "interpolation", json_string(info->interpolation == VN_INTERP_BICUBIC
                                                                       ? "bicubic" : "bilinear")) == 0;
    ok = ok && json_object_set_new(o, "crop_pct", json_real(info->crop_pct)) == 0;
    /* the geometry (as the safetensors' vanilla.data): crop = shorter side to
     * input_size / crop_pct, then the centre crop; square = warped to input_size x
     * input_size; none = the image as it is (input_size x input_size already) */
    ok = ok && json_object_set_new(o, "resize", json_string(vn_eval_resize_name(
                                                    resize_at(info, size)))) == 0;
    ok = ok && json_object_set_new(o, "mean", json_incref(mean)) == 0;
    ok = ok && json_object_set_new(o, "std", json_incref(std)) == 0;
    *out = ok ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(mean);
    json_decref(std);
    json_decref(o);
    if (*out) return VN_OK;
    return vn_error_set(err, VN_ERR_INVALID, "the preprocessing metadata cannot be written as JSON "
                        "(mean, std and crop_pct must be finite numbers)");
}

/* The class names as a JSON array (*out); a name that is not UTF-8 is an error naming it. */
static int classes_json(const vn_vanillanet *m, const vn_ckpt_info *info, char **out, vn_error *err)
{
    json_t *cl = json_array();
    int rc = cl ? VN_OK : vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    for (int i = 0; rc == VN_OK && i < m->cfg.num_classes; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        const char *n = info && info->class_names && i < info->n_classes ? info->class_names[i] : num;
        if (json_array_append_new(cl, json_string(n)) != 0)
            rc = vn_error_set(err, VN_ERR_INVALID, "class %d's name is not valid UTF-8 (or out of "
                              "memory): ONNX metadata is UTF-8 JSON", i);
    }
    *out = rc == VN_OK ? json_dumps(cl, JSON_COMPACT) : NULL;
    json_decref(cl);
    return rc == VN_OK && !*out ? vn_error_set(err, VN_ERR_NOMEM, "out of memory") : rc;
}

static int add_meta(vn_onnx *g, const vn_vanillanet *m, const vn_ckpt_info *info, int size, vn_error *err)
{
    char *classes = NULL, *pre = NULL, *model = NULL;
    int rc = classes_json(m, info, &classes, err);
    if (rc == VN_OK && info && info->has_data) rc = meta_json(info, size, m->cfg.in_chans, &pre, err);
    if (rc == VN_OK && !(model = vn_vanillanet_config_json(&m->cfg, true)))
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    if (rc == VN_OK) rc = vn_onnx_meta(g, "vanilla.classes", classes, err);
    if (rc == VN_OK && pre) rc = vn_onnx_meta(g, "vanilla.preprocessing", pre, err);
    if (rc == VN_OK) rc = vn_onnx_meta(g, "vanilla.model", model, err);
    free(classes);
    free(pre);
    free(model);
    return rc;
}

int vn_export_onnx(const vn_vanillanet *m, const vn_ckpt_info *info, int input_size, const char *path,
                   vn_error *err)
{
    if (!m->deploy)
        return vn_error_set(err, VN_ERR_INVALID, "ONNX export takes the deploy network (merge first)");
    if (input_size <= 0) input_size = info && info->has_data ? info->input_size : 224;
    vn_onnx *g = vn_onnx_new("vanillanet", "input", m->cfg.in_chans, input_size, input_size);
    if (!g) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = add_network(g, m, input_size, err);
    if (rc == VN_OK) rc = add_meta(g, m, info, input_size, err);
    if (rc == VN_OK) rc = vn_onnx_write(g, path, "logits", m->cfg.num_classes, err);
    vn_onnx_free(g);
    if (rc != VN_OK) vn_error_prefix(err, "%s: ", path);
    return rc;
}
