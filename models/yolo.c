/* YOLO11-VanillaNet: assembly of the backbone, SPPF, C2PSA, neck and Detect (see
 * models/vn_yolo.h for the layer list and names). */
#include "models/vn_yolo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/yolo_blocks.h"

struct vn_yolo {
    vn_yolo_config cfg;
    bool training;
    vn_vanillanet *backbone;
    int feat_index[VN_YOLO_LEVELS]; /* index into forward_features' list for P3, P4, P5 */
    int feat_ch[VN_YOLO_LEVELS];
    vn__ysppf sppf;                 /* 1 */
    vn__yc2psa c2psa;               /* 2 */
    vn__yc3k2 c5, c8, c11, c14;     /* 5, 8, 11, 14 */
    vn__yconv down9, down12;        /* 9, 12 */
    vn__ydetect_level det[VN_YOLO_LEVELS]; /* 15 */
    int out_ch[VN_YOLO_LEVELS];
    vn_state_list state;
};

void vn_yolo_config_default(vn_yolo_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    vn_vanillanet_variant("vanillanet_5", &cfg->backbone, NULL);
    cfg->backbone.num_classes = 1;
    cfg->nc = 80;
    cfg->depth_multiple = 0.5f;
    cfg->width_multiple = 0.25f;
    cfg->max_channels = 1024;
    cfg->reg_max = 16;
}

/* Ultralytics' make_divisible(min(c, max_channels) * width, 8). */
static int width_of(const vn_yolo_config *cfg, int c)
{
    double v = (double)(c < cfg->max_channels ? c : cfg->max_channels) * cfg->width_multiple;
    return (int)(ceil(v / 8.0) * 8.0);
}

/* parse_model: n = max(round(n * depth), 1) for n > 1 (Python rounds half to even). */
static int depth_of(const vn_yolo_config *cfg, int n)
{
    if (n <= 1) return n;
    int r = (int)nearbyint((double)n * cfg->depth_multiple);
    return r > 1 ? r : 1;
}

/* The last backbone feature at each stride 8, 16, 32 (feature 0 is the stem's, stride 4). */
static int find_levels(const vn_vanillanet_config *b, int *index, int *ch, vn_error *err)
{
    int stride = 4;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) index[l] = -1;
    for (int i = 0; i < b->n_stages; i++) {
        stride *= b->strides[i];
        for (int l = 0; l < VN_YOLO_LEVELS; l++)
            if (stride == 8 << l) {
                index[l] = i + 1;
                ch[l] = b->dims[i + 1];
            }
    }
    for (int l = 0; l < VN_YOLO_LEVELS; l++)
        if (index[l] < 0)
            return vn_error_set(err, VN_ERR_INVALID, "detector backbone: no stage at stride %d "
                                "(the stem has stride 4; the stage strides must reach 8, 16 "
                                "and 32)", 8 << l);
    return VN_OK;
}

int vn_yolo_config_check(const vn_yolo_config *cfg, vn_error *err)
{
    int rc = vn_vanillanet_config_check(&cfg->backbone, err);
    if (rc != VN_OK) { /* the prefix returns 0 when err is NULL: keep rc */
        vn_error_prefix(err, "detector backbone: ");
        return rc;
    }
    if (cfg->backbone.ada_pool_enabled)
        return vn_error_set(err, VN_ERR_INVALID, "detector backbone: ada_pool is not supported");
    if (cfg->nc < 1) return vn_error_set(err, VN_ERR_INVALID, "detector: nc must be >= 1");
    if (!(cfg->depth_multiple > 0.0f && cfg->depth_multiple <= 4.0f))
        return vn_error_set(err, VN_ERR_INVALID, "detector: depth_multiple must be in (0, 4]");
    if (!(cfg->width_multiple > 0.0f && cfg->width_multiple <= 4.0f))
        return vn_error_set(err, VN_ERR_INVALID, "detector: width_multiple must be in (0, 4]");
    if (cfg->max_channels < 8)
        return vn_error_set(err, VN_ERR_INVALID, "detector: max_channels must be >= 8");
    if (cfg->reg_max < 1 || cfg->reg_max > 64)
        return vn_error_set(err, VN_ERR_INVALID, "detector: reg_max must be in [1, 64]");
    /* C2PSA has c / 64 heads of c = width(1024) / 2 channels: Ultralytics needs c >= 64. */
    if (width_of(cfg, 1024) / 2 < 64)
        return vn_error_set(err, VN_ERR_INVALID, "detector: C2PSA gets %d channels (width "
                            "%g, max_channels %d); its attention needs at least 128 (one head "
                            "of 64)", width_of(cfg, 1024), (double)cfg->width_multiple,
                            cfg->max_channels);
    int index[VN_YOLO_LEVELS], ch[VN_YOLO_LEVELS];
    return find_levels(&cfg->backbone, index, ch, err);
}

/* ---- create / destroy -------------------------------------------------------------------- */

static int build_neck(vn_yolo *m)
{
    const vn_yolo_config *c = &m->cfg;
    int c1024 = width_of(c, 1024), c512 = width_of(c, 512), c256 = width_of(c, 256);
    int n2 = depth_of(c, 2);
    const int *fc = m->feat_ch;
    int rc = vn__ysppf_init(&m->sppf, fc[2], c1024, 5);
    if (rc == VN_OK) rc = vn__yc2psa_init(&m->c2psa, c1024, n2, 0.5f);
    if (rc == VN_OK) rc = vn__yc3k2_init(&m->c5, c1024 + fc[1], c512, n2, c->c3k, 0.5f);
    if (rc == VN_OK) rc = vn__yc3k2_init(&m->c8, c512 + fc[0], c256, n2, c->c3k, 0.5f);
    if (rc == VN_OK) rc = vn__yconv_init(&m->down9, c256, c256, 3, 2, 1, true);
    if (rc == VN_OK) rc = vn__yc3k2_init(&m->c11, c256 + c512, c512, n2, c->c3k, 0.5f);
    if (rc == VN_OK) rc = vn__yconv_init(&m->down12, c512, c512, 3, 2, 1, true);
    if (rc == VN_OK) rc = vn__yc3k2_init(&m->c14, c512 + c1024, c1024, n2, true, 0.5f);
    m->out_ch[0] = c256;
    m->out_ch[1] = c512;
    m->out_ch[2] = c1024;
    /* Detect: c2 = max(16, ch[0] / 4, 4 reg_max), c3 = max(ch[0], min(nc, 100)). */
    int c2 = c256 / 4 > 16 ? c256 / 4 : 16;
    if (4 * c->reg_max > c2) c2 = 4 * c->reg_max;
    int c3 = c->nc < 100 ? c->nc : 100;
    if (c256 > c3) c3 = c256;
    for (int l = 0; l < VN_YOLO_LEVELS && rc == VN_OK; l++)
        rc = vn__ydetect_level_init(&m->det[l], m->out_ch[l], c2, c3, c->nc, c->reg_max);
    return rc;
}

static int register_all(vn_yolo *m)
{
    const vn_state_list *bl = &m->backbone->state;
    int rc = VN_OK;
    for (int i = 0; i < bl->n && rc == VN_OK; i++) {
        const vn_state_item *it = &bl->items[i];
        if (!strncmp(it->name, "cls", 3)) continue; /* the classifier is not part of it */
        rc = vn_state_add(&m->state, "model.0.", it->name, it->kind, it->tensor, it->count);
    }
    if (rc == VN_OK) rc = vn__ysppf_register(&m->sppf, &m->state, "model.1.");
    if (rc == VN_OK) rc = vn__yc2psa_register(&m->c2psa, &m->state, "model.2.");
    if (rc == VN_OK) rc = vn__yc3k2_register(&m->c5, &m->state, "model.5.");
    if (rc == VN_OK) rc = vn__yc3k2_register(&m->c8, &m->state, "model.8.");
    if (rc == VN_OK) rc = vn__yconv_register(&m->down9, &m->state, "model.9.");
    if (rc == VN_OK) rc = vn__yc3k2_register(&m->c11, &m->state, "model.11.");
    if (rc == VN_OK) rc = vn__yconv_register(&m->down12, &m->state, "model.12.");
    if (rc == VN_OK) rc = vn__yc3k2_register(&m->c14, &m->state, "model.14.");
    for (int l = 0; l < VN_YOLO_LEVELS && rc == VN_OK; l++)
        rc = vn__ydetect_level_register(&m->det[l], &m->state, "model.15.", l);
    return rc;
}

int vn_yolo_create(const vn_yolo_config *cfg, vn_yolo **out, vn_error *err)
{
    *out = NULL;
    int rc = vn_yolo_config_check(cfg, err);
    if (rc != VN_OK) return rc;
    vn_yolo *m = calloc(1, sizeof *m);
    if (!m) return vn_error_set(err, VN_ERR_NOMEM, "detector: out of memory");
    m->cfg = *cfg;
    m->training = true;
    vn_state_list_init(&m->state);
    find_levels(&cfg->backbone, m->feat_index, m->feat_ch, NULL);
    rc = vn_vanillanet_create(&cfg->backbone, false, &m->backbone, err);
    if (rc != VN_OK) {
        vn_yolo_destroy(m);
        vn_error_prefix(err, "detector backbone: "); /* returns 0 when err is NULL: keep rc */
        return rc;
    }
    rc = build_neck(m);
    if (rc == VN_OK) rc = register_all(m);
    if (rc != VN_OK) {
        vn_yolo_destroy(m);
        return vn_error_set(err, rc, "detector: out of memory building the neck and head");
    }
    *out = m;
    return VN_OK;
}

void vn_yolo_destroy(vn_yolo *m)
{
    if (!m) return;
    vn_vanillanet_destroy(m->backbone);
    vn__ysppf_free(&m->sppf);
    vn__yc2psa_free(&m->c2psa);
    vn__yc3k2_free(&m->c5);
    vn__yc3k2_free(&m->c8);
    vn__yc3k2_free(&m->c11);
    vn__yc3k2_free(&m->c14);
    vn__yconv_free(&m->down9);
    vn__yconv_free(&m->down12);
    for (int l = 0; l < VN_YOLO_LEVELS; l++) vn__ydetect_level_free(&m->det[l]);
    vn_state_list_free(&m->state);
    free(m);
}

/* ---- init and settings -------------------------------------------------------------------- */

void vn_yolo_init(vn_yolo *m, uint64_t seed)
{
    vn_vanillanet_init(m->backbone, seed);
    vn_rng rng;
    vn_rng_seed(&rng, seed, 0x59010, 0);
    for (int i = 0; i < m->state.n; i++) {
        const vn_state_item *it = &m->state.items[i];
        if (!strncmp(it->name, "model.0.", 8)) continue;
        size_t len = strlen(it->name);
        bool conv_w = it->tensor && (it->tensor->flags & VN_TENSOR_OHWI);
        if (conv_w) {
            /* PyTorch's default: kaiming_uniform(a = sqrt(5)) = U(+-1/sqrt(fan_in)). */
            vn_conv2d_layer c = {.weight = it->tensor};
            vn__yolo_conv_reset(&c, &rng);
        } else if (it->kind == VN_STATE_PARAM && len > 5 && !strcmp(it->name + len - 5, ".bias") &&
                   strstr(it->name, ".bn.") == NULL) {
            /* Detect's final convs: bias_init below. */
        } else if (it->kind == VN_STATE_PARAM || it->kind == VN_STATE_BUFFER) {
            bool ones = (len > 7 && !strcmp(it->name + len - 7, ".weight")) ||
                        (len > 12 && !strcmp(it->name + len - 12, ".running_var"));
            vn_tensor_fill(it->tensor, ones ? 1.0f : 0.0f);
        } else if (it->count) {
            *it->count = 0;
        }
    }
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        double s = 8 << l, v = log(5.0 / m->cfg.nc / ((640.0 / s) * (640.0 / s)));
        vn_tensor_fill(m->det[l].box2.bias, 1.0f);
        vn_tensor_fill(m->det[l].cls2.bias, (float)v);
    }
}

void vn_yolo_set_training(vn_yolo *m, bool training)
{
    m->training = training;
    vn_vanillanet_set_training(m->backbone, training);
}

int vn_yolo_switch_to_deploy(vn_yolo *m, bool force, vn_error *err)
{
    int rc = vn_vanillanet_switch_to_deploy(m->backbone, force, err);
    if (rc != VN_OK) { /* the prefix returns 0 when err is NULL: keep rc */
        vn_error_prefix(err, "detector backbone: ");
        return rc;
    }
    vn_state_list_free(&m->state);
    vn_state_list_init(&m->state);
    rc = register_all(m);
    return rc == VN_OK ? VN_OK : vn_error_set(err, rc, "detector: out of memory listing the merged state");
}

bool vn_yolo_is_deploy(const vn_yolo *m) { return m->backbone->deploy; }

void vn_yolo_change_act(vn_yolo *m, float act_learn) { vn_vanillanet_change_act(m->backbone, act_learn); }

const vn_yolo_config *vn_yolo_get_config(const vn_yolo *m) { return &m->cfg; }

const vn_state_list *vn_yolo_state(const vn_yolo *m) { return &m->state; }

const vn_vanillanet *vn_yolo_backbone(const vn_yolo *m, int feat_index[VN_YOLO_LEVELS])
{
    for (int l = 0; feat_index && l < VN_YOLO_LEVELS; l++) feat_index[l] = m->feat_index[l];
    return m->backbone;
}

void vn_yolo_attention_dims(const vn_yolo *m, int *heads, int *key_dim, int *head_dim)
{
    const vn__ypsa *a = m->c2psa.n > 0 ? &m->c2psa.m[0] : NULL;
    *heads = a ? a->heads : 0;
    *key_dim = a ? a->key_dim : 0;
    *head_dim = a ? a->head_dim : 0;
}

void vn_yolo_level_channels(const vn_yolo *m, int ch[VN_YOLO_LEVELS])
{
    for (int l = 0; l < VN_YOLO_LEVELS; l++) ch[l] = m->out_ch[l];
}

/* ---- forward ------------------------------------------------------------------------------ */

/* Upsample a by 2, concatenate skip, run the C3k2 block. */
static vn_tensor *up_cat(vn_ctx *ctx, vn__yc3k2 *blk, vn_tensor *a, vn_tensor *skip, bool tr)
{
    vn_tensor *u = vn_upsample_nearest(ctx, a, 2);
    vn_tensor *cat = vn_concat(ctx, 2, (vn_tensor *[]){u, skip});
    vn_release(ctx, u);
    vn_tensor *y = vn__yc3k2_forward(ctx, blk, cat, tr);
    vn_release(ctx, cat);
    return y;
}

/* Stride-2 conv of a, concatenate skip, run the C3k2 block. */
static vn_tensor *down_cat(vn_ctx *ctx, vn__yconv *down, vn__yc3k2 *blk, vn_tensor *a,
                           vn_tensor *skip, bool tr)
{
    vn_tensor *d = vn__yconv_forward(ctx, down, a, tr);
    vn_tensor *cat = vn_concat(ctx, 2, (vn_tensor *[]){d, skip});
    vn_release(ctx, d);
    vn_tensor *y = vn__yc3k2_forward(ctx, blk, cat, tr);
    vn_release(ctx, cat);
    return y;
}

int vn_yolo_forward(vn_ctx *ctx, vn_yolo *m, vn_tensor *x, vn_tensor **out)
{
    for (int l = 0; l < VN_YOLO_LEVELS; l++) out[l] = NULL;
    if (x && x->ndim == 4 && (x->shape[1] % 32 || x->shape[2] % 32)) {
        vn_ctx_fail(ctx, VN_ERR_SHAPE, "detector: input %lldx%lld is not a multiple of 32",
                    (long long)x->shape[1], (long long)x->shape[2]);
        return vn_ctx_status(ctx);
    }
    vn_tensor *feats[VN_MAX_STAGES + 1] = {NULL};
    int ch[VN_MAX_STAGES + 1];
    if (vn_vanillanet_forward_features(ctx, m->backbone, x, feats, ch) != VN_OK)
        return vn_ctx_status(ctx);
    vn_tensor *p[VN_YOLO_LEVELS];
    for (int l = 0; l < VN_YOLO_LEVELS; l++) p[l] = feats[m->feat_index[l]];
    for (int i = 0; i <= m->cfg.backbone.n_stages; i++)
        if (feats[i] != p[0] && feats[i] != p[1] && feats[i] != p[2]) vn_release(ctx, feats[i]);
    bool tr = m->training;
    vn_tensor *s = vn__ysppf_forward(ctx, &m->sppf, p[2], tr);
    vn_release(ctx, p[2]);
    vn_tensor *l2 = vn__yc2psa_forward(ctx, &m->c2psa, s, tr);
    vn_release(ctx, s);
    vn_tensor *l5 = up_cat(ctx, &m->c5, l2, p[1], tr);
    vn_release(ctx, p[1]);
    vn_tensor *l8 = up_cat(ctx, &m->c8, l5, p[0], tr);
    vn_release(ctx, p[0]);
    vn_tensor *l11 = down_cat(ctx, &m->down9, &m->c11, l8, l5, tr);
    vn_release(ctx, l5);
    vn_tensor *l14 = down_cat(ctx, &m->down12, &m->c14, l11, l2, tr);
    vn_release(ctx, l2);
    vn_tensor *lv[VN_YOLO_LEVELS] = {l8, l11, l14};
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        out[l] = vn__ydetect_level_forward(ctx, &m->det[l], lv[l], tr);
        vn_release(ctx, lv[l]);
    }
    return vn_ctx_status(ctx);
}

/* ---- report (`vanilla info`) -------------------------------------------------------------- */

/* Parameters and convolution multiply-adds of the state entries under prefix, every conv
 * producing an out_hw-pixel map (true of every layer of the neck: its stride-2 convs output at
 * the layer's resolution). */
static void prefix_cost(const vn_yolo *m, const char *prefix, int64_t out_hw, int64_t *params,
                        int64_t *macs)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < m->state.n; i++) {
        const vn_state_item *it = &m->state.items[i];
        if (it->kind != VN_STATE_PARAM || strncmp(it->name, prefix, n)) continue;
        *params += it->tensor->numel;
        if (it->tensor->ndim == 4) *macs += it->tensor->numel * out_hw;
    }
}

static int report_add(vn_report *r, const char *name, const char *what, int64_t h, int64_t c,
                      int64_t params, int64_t macs)
{
    vn_report_row *rows = realloc(r->rows, (size_t)(r->n + 1) * sizeof *rows);
    if (!rows) return VN_ERR_NOMEM;
    r->rows = rows;
    vn_report_row *x = &rows[r->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    snprintf(x->what, sizeof x->what, "%s", what);
    x->out[0] = 1, x->out[1] = h, x->out[2] = h, x->out[3] = c;
    x->params = params;
    x->macs = macs;
    r->total_params += params;
    r->total_macs += macs;
    return VN_OK;
}

int vn_yolo_report(const vn_yolo *m, int imgsz, vn_report *out, vn_error *err)
{
    memset(out, 0, sizeof *out);
    if (imgsz < 32 || imgsz % 32)
        return vn_error_set(err, VN_ERR_INVALID, "detector: input size %d is not a positive "
                            "multiple of 32", imgsz);
    const vn_yolo_config *c = &m->cfg;
    vn_report bb;
    int rc = vn_vanillanet_report(&c->backbone, m->backbone->deploy, imgsz, imgsz, &bb, err);
    if (rc != VN_OK) { /* the prefix returns 0 when err is NULL: keep rc */
        vn_error_prefix(err, "detector backbone: ");
        return rc;
    }
    char name[64], what[64];
    for (int i = 0; i < bb.n && rc == VN_OK; i++) {
        const vn_report_row *x = &bb.rows[i];
        if (!strncmp(x->name, "cls", 3) || !strcmp(x->what, "global avgpool")) continue;
        snprintf(name, sizeof name, "model.0.%s", x->name);
        rc = report_add(out, name, x->what, x->out[1], x->out[3], x->params, x->macs);
    }
    vn_report_free(&bb);
    int64_t h[4] = {0, imgsz / 8, imgsz / 16, imgsz / 32}; /* by level + 1 */
    const int *fc = m->feat_ch;
    int c1 = m->sppf.cv2.conv.out_ch, c5 = m->c5.cv2.conv.out_ch;
    /* layer, module, level + 1 of its output, output channels */
    struct { int i; const char *what; int lv; int ch; } L[] = {
        {1, "SPPF", 3, c1},
        {2, "C2PSA", 3, m->c2psa.cv2.conv.out_ch},
        {3, "Upsample 2x", 2, m->c2psa.cv2.conv.out_ch},
        {4, "Concat (P4)", 2, m->c2psa.cv2.conv.out_ch + fc[1]},
        {5, "C3k2", 2, c5},
        {6, "Upsample 2x", 1, c5},
        {7, "Concat (P3)", 1, c5 + fc[0]},
        {8, "C3k2 (P3 out)", 1, m->out_ch[0]},
        {9, "Conv 3x3/2", 2, m->down9.conv.out_ch},
        {10, "Concat (5)", 2, m->down9.conv.out_ch + c5},
        {11, "C3k2 (P4 out)", 2, m->out_ch[1]},
        {12, "Conv 3x3/2", 3, m->down12.conv.out_ch},
        {13, "Concat (2)", 3, m->down12.conv.out_ch + m->c2psa.cv2.conv.out_ch},
        {14, "C3k2 (P5 out)", 3, m->out_ch[2]},
    };
    for (size_t k = 0; k < sizeof L / sizeof L[0] && rc == VN_OK; k++) {
        int64_t params = 0, macs = 0, hw = h[L[k].lv] * h[L[k].lv];
        snprintf(name, sizeof name, "model.%d.", L[k].i);
        prefix_cost(m, name, hw, &params, &macs);
        if (L[k].i == 2) /* attention: q^T k and v attn^T over the P5 pixels */
            for (int b = 0; b < m->c2psa.n; b++) {
                const vn__ypsa *a = &m->c2psa.m[b];
                macs += (int64_t)a->heads * hw * hw * (a->key_dim + a->head_dim);
            }
        name[strlen(name) - 1] = '\0';
        rc = report_add(out, name, L[k].what, h[L[k].lv], L[k].ch, params, macs);
    }
    for (int l = 0; l < VN_YOLO_LEVELS && rc == VN_OK; l++) {
        int64_t params = 0, macs = 0;
        snprintf(name, sizeof name, "model.15.cv2.%d.", l);
        prefix_cost(m, name, h[l + 1] * h[l + 1], &params, &macs);
        snprintf(name, sizeof name, "model.15.cv3.%d.", l);
        prefix_cost(m, name, h[l + 1] * h[l + 1], &params, &macs);
        snprintf(name, sizeof name, "model.15 (P%d)", l + 3);
        snprintf(what, sizeof what, "Detect %d x %d + %d", 4, c->reg_max, c->nc);
        rc = report_add(out, name, what, h[l + 1], 4 * c->reg_max + c->nc, params, macs);
    }
    if (rc != VN_OK) {
        vn_report_free(out);
        return vn_error_set(err, rc, "out of memory building the report");
    }
    return VN_OK;
}
