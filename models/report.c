/* The model report: shapes, parameters and multiply-adds per layer, from the config alone. */
#include "models/vn_vanillanet.h"

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

int vn_vanillanet_report(const vn_vanillanet_config *cfg, bool deploy, int h, int w,
                         vn_report *out, vn_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = vn_vanillanet_config_check(cfg, err);
    if (rc != VN_OK) return rc;
    builder b = {out, 0, h, w, cfg->in_chans, 0};
    int stride = cfg->ada_pool_enabled ? 3 : 4, pad = cfg->ada_pool_enabled ? 1 : 0;
    char name[48], what[48];
    if ((int64_t)h + 2 * pad < 4 || (int64_t)w + 2 * pad < 4) goto small;
    if (deploy) {
        conv(&b, "stem.0", cfg->dims[0], 4, stride, pad, 1, true);
        act(&b, "stem.1", cfg->act_num, true);
    } else {
        conv(&b, "stem1.0", cfg->dims[0], 4, stride, pad, 1, true);
        bn(&b, "stem1.1");
        conv(&b, "stem2.0", cfg->dims[0], 1, 1, 0, 1, true);
        bn(&b, "stem2.1");
        act(&b, "stem2.2", cfg->act_num, false);
    }
    for (int i = 0; i < cfg->n_stages; i++) {
        int64_t in_c = b.c, in_h = b.h, in_w = b.w;
        int64_t d = cfg->dims[i], dout = cfg->dims[i + 1];
        if (deploy) {
            snprintf(name, sizeof name, "stages.%d.conv", i);
            conv(&b, name, dout, 1, 1, 0, 1, true);
        } else {
            snprintf(name, sizeof name, "stages.%d.conv1.0", i);
            conv(&b, name, d, 1, 1, 0, 1, true);
            snprintf(name, sizeof name, "stages.%d.conv1.1", i);
            bn(&b, name);
            snprintf(name, sizeof name, "stages.%d.conv2.0", i);
            conv(&b, name, dout, 1, 1, 0, 1, true);
            snprintf(name, sizeof name, "stages.%d.conv2.1", i);
            bn(&b, name);
        }
        int s = cfg->strides[i];
        if (s > 1) {
            int ap = cfg->ada_pool_enabled ? cfg->ada_pool[i] : 0;
            if (ap) {
                b.h = b.w = ap;
                snprintf(what, sizeof what, "adaptive maxpool %d", ap);
            } else {
                b.h /= s;
                b.w /= s;
                snprintf(what, sizeof what, "maxpool %d", s);
            }
            if (b.h < 1 || b.w < 1) goto small;
            snprintf(name, sizeof name, "stages.%d.pool", i);
            row(&b, name, what, 0, 0);
        }
        if (cfg->shortcut == VN_SHORTCUT_IDENTITY) {
            snprintf(name, sizeof name, "stages.%d.shortcut", i);
            if (in_c == dout && s == 1) {
                row(&b, name, "identity shortcut", 0, 0);
            } else { /* 1x1 conv at the input resolution, then the block's pooling */
                int64_t oh = b.h, ow = b.w;
                b.h = in_h, b.w = in_w, b.c = in_c;
                conv(&b, name, dout, 1, 1, 0, 1, true);
                b.h = oh, b.w = ow;
            }
        }
        snprintf(name, sizeof name, "stages.%d.act", i);
        act(&b, name, cfg->act_num, deploy);
    }
    b.h = b.w = 1;
    row(&b, deploy ? "cls.0" : "cls1.0", "global avgpool", 0, 0);
    conv(&b, deploy ? "cls.2" : "cls1.2", cfg->num_classes, 1, 1, 0, 1, true);
    if (!deploy) {
        bn(&b, "cls1.3");
        conv(&b, "cls2.0", cfg->num_classes, 1, 1, 0, 1, true);
    }
    if (b.rc) {
        vn_report_free(out);
        return vn_error_set(err, b.rc, "out of memory building the report");
    }
    return VN_OK;
small:
    vn_report_free(out);
    return vn_error_set(err, VN_ERR_SHAPE, "input %dx%d is too small for this network", h, w);
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
    fprintf(fp, "%-22s %-22s %-20s %10s %10s\n", "layer", "type", "output (HxWxC)", "params", "MACs");
    char shape[48], p[24], m[24];
    for (int i = 0; i < r->n; i++) {
        const vn_report_row *x = &r->rows[i];
        snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)x->out[1], (long long)x->out[2],
                 (long long)x->out[3]);
        human(p, sizeof p, x->params);
        human(m, sizeof m, x->macs);
        fprintf(fp, "%-22s %-22s %-20s %10s %10s\n", x->name, x->what, shape, p, m);
    }
    human(p, sizeof p, r->total_params);
    human(m, sizeof m, r->total_macs);
    fprintf(fp, "%-22s %-22s %-20s %10s %10s\n", "total", "", "", p, m);
    fprintf(fp, "(%lld parameters, %lld multiply-adds per image)\n", (long long)r->total_params,
            (long long)r->total_macs);
}
