/* The model report: shapes, parameters and multiply-adds per layer, from the plan alone. */
#include "models/plan.h"

#include <stdlib.h>
#include <string.h>

typedef struct builder {
    vn_report *r;
    int cap;
    int64_t h, w, c;
    int rc;
} builder;

static void row(builder *b, const char *name, const char *what, int64_t params, int64_t macs)
{
    if (b->rc) return;
    vn_report *r = b->r;
    if (r->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        vn_report_row *nr = realloc(r->rows, (size_t)b->cap * sizeof *nr);
        if (!nr) {
            b->rc = VN_ERR_NOMEM;
            return;
        }
        r->rows = nr;
    }
    vn_report_row *x = &r->rows[r->n++];
    snprintf(x->name, sizeof x->name, "%s", name);
    snprintf(x->what, sizeof x->what, "%s", what);
    x->out[0] = 1, x->out[1] = b->h, x->out[2] = b->w, x->out[3] = b->c;
    x->params = params;
    x->macs = macs;
    r->total_params += params;
    r->total_macs += macs;
}

static void conv(builder *b, const char *name, int64_t cout, int k, int stride, int pad, int groups,
                 bool bias)
{
    b->h = (b->h + 2 * pad - k) / stride + 1;
    b->w = (b->w + 2 * pad - k) / stride + 1;
    int64_t cin = b->c;
    b->c = cout;
    char what[48];
    snprintf(what, sizeof what, groups > 1 ? "dwconv %dx%d" : "conv %dx%d/%d", k, k, stride);
    int64_t per = cin / groups * k * k;
    row(b, name, what, cout * per + (bias ? cout : 0), b->h * b->w * cout * per);
}

static void bn(builder *b, const char *name) { row(b, name, "batchnorm", 2 * b->c, 0); }

static void act(builder *b, const char *name, int act_num, bool deploy)
{
    int k = 2 * act_num + 1;
    int64_t c = b->c;
    char what[48];
    snprintf(what, sizeof what, "relu+dwconv %dx%d%s", k, k, deploy ? "" : "+bn");
    row(b, name, what, c * k * k + (deploy ? c : 2 * c), b->h * b->w * c * k * k);
}

/* The block's pooling: by its stride, or adaptive to a fixed size. False when too small. */
static bool pool(builder *b, const char *name, const vn__layer_spec *s)
{
    char what[48];
    if (s->ada_pool) {
        b->h = b->w = s->ada_pool;
        snprintf(what, sizeof what, "adaptive maxpool %d", s->ada_pool);
    } else {
        b->h /= s->stride;
        b->w /= s->stride;
        snprintf(what, sizeof what, "maxpool %d", s->stride);
    }
    if (b->h < 1 || b->w < 1) return false;
    row(b, name, what, 0, 0);
    return true;
}

/* Identity, or a 1x1 conv at the block's input resolution (in) followed by its pooling. */
static void shortcut(builder *b, const char *name, const vn__layer_spec *s, const int64_t in[3])
{
    if (vn__spec_is_identity(s)) {
        row(b, name, "identity shortcut", 0, 0);
        return;
    }
    int64_t oh = b->h, ow = b->w;
    b->h = in[0], b->w = in[1], b->c = in[2];
    conv(b, name, s->out_ch, s->kernel, s->conv.stride_h, s->conv.pad_h, s->conv.groups, s->bias);
    b->h = oh, b->w = ow;
}

/* One row per spec; false when the input is too small for it. */
static bool layer(builder *b, const vn__layer_spec *s, const int64_t in[3])
{
    char name[48];
    if (s->stage >= 0) snprintf(name, sizeof name, "stages.%d.%s", s->stage, s->name);
    else snprintf(name, sizeof name, "%s", s->name);
    const vn_conv_params *p = &s->conv;
    switch (s->kind) {
    case VN__LAYER_CONV:
        if (b->h + 2 * p->pad_h < s->kernel || b->w + 2 * p->pad_w < s->kernel) return false;
        conv(b, name, s->out_ch, s->kernel, p->stride_h, p->pad_h, p->groups, s->bias);
        return true;
    case VN__LAYER_BN: bn(b, name); return true;
    case VN__LAYER_ACT: act(b, name, s->act_num, s->bias); return true;
    case VN__LAYER_POOL: return pool(b, name, s);
    case VN__LAYER_SHORTCUT: shortcut(b, name, s, in); return true;
    case VN__LAYER_AVGPOOL:
        b->h = b->w = 1;
        row(b, name, "global avgpool", 0, 0);
        return true;
    }
    return true;
}

int vn_vanillanet_report(const vn_vanillanet_config *cfg, bool deploy, int h, int w,
                         vn_report *out, vn_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = vn_vanillanet_config_check(cfg, err);
    if (rc != VN_OK) return rc;
    vn__plan p;
    vn__plan_build(&p, cfg, deploy);
    builder b = {out, 0, h, w, cfg->in_chans, 0};
    int64_t in[3] = {0}; /* the current block's input shape, for its shortcut */
    bool fits = true;
    for (int i = 0, stage = -1; fits && i < p.n; i++) {
        const vn__layer_spec *s = &p.layers[i];
        if (s->stage != stage) {
            stage = s->stage;
            in[0] = b.h, in[1] = b.w, in[2] = b.c;
        }
        fits = layer(&b, s, in);
    }
    if (!fits) {
        vn_report_free(out);
        return vn_error_set(err, VN_ERR_SHAPE, "input %dx%d is too small for this network", h, w);
    }
    if (b.rc) {
        vn_report_free(out);
        return vn_error_set(err, b.rc, "out of memory building the report");
    }
    return VN_OK;
}

void vn_report_free(vn_report *r)
{
    free(r->rows);
    memset(r, 0, sizeof *r);
}

static void human(char *buf, size_t len, int64_t v)
{
    if (v >= 1000000000) snprintf(buf, len, "%.2fG", (double)v / 1e9);
    else if (v >= 1000000) snprintf(buf, len, "%.2fM", (double)v / 1e6);
    else if (v >= 1000) snprintf(buf, len, "%.1fK", (double)v / 1e3);
    else snprintf(buf, len, "%lld", (long long)v);
}

void vn_report_print(const vn_report *r, FILE *fp)
{
    int w = 22; /* the name column fits the longest name */
    for (int i = 0; i < r->n; i++) {
        int len = (int)strlen(r->rows[i].name);
        if (len > w) w = len;
    }
    fprintf(fp, "%-*s %-22s %-20s %10s %10s\n", w, "layer", "type", "output (HxWxC)", "params", "MACs");
    char shape[48], p[24], m[24];
    for (int i = 0; i < r->n; i++) {
        const vn_report_row *x = &r->rows[i];
        snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)x->out[1], (long long)x->out[2],
                 (long long)x->out[3]);
        human(p, sizeof p, x->params);
        human(m, sizeof m, x->macs);
        fprintf(fp, "%-*s %-22s %-20s %10s %10s\n", w, x->name, x->what, shape, p, m);
    }
    human(p, sizeof p, r->total_params);
    human(m, sizeof m, r->total_macs);
    fprintf(fp, "%-*s %-22s %-20s %10s %10s\n", w, "total", "", "", p, m);
    fprintf(fp, "(%lld parameters, %lld multiply-adds per image)\n", (long long)r->total_params,
            (long long)r->total_macs);
}
