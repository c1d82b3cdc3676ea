/* Mixup and cutmix per batch, following timm 0.6.12's Mixup (mode "batch", correct_lam). */
#include "data/vn_transform.h"

#include <math.h>
#include <string.h>

bool vn_mix_active(const vn_mix_config *c)
{
    return c && (c->mixup_alpha > 0 || c->cutmix_alpha > 0);
}

/* log of a Gamma(a, 1) variate. Marsaglia-Tsang for a >= 1; for a < 1 the boost
 * Gamma(a) = Gamma(a + 1) * U^(1/a), kept in log space because U^(1/a) underflows for the
 * small alphas mixup uses (0.1). */
static double log_gamma_variate(vn_rng *rng, double a)
{
    double boost = 0.0;
    if (a < 1.0) {
        double u = 1.0 - vn_rng_uniform_double(rng); /* (0, 1] */
        boost = log(u) / a;
        a += 1.0;
    }
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = vn_rng_normal(rng);
        double v = 1.0 + c * x;
        if (v <= 0.0) continue;
        v = v * v * v;
        double u = vn_rng_uniform_double(rng);
        if (u < 1.0 - 0.0331 * x * x * x * x ||
            (u > 0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v))))
            return log(d * v) + boost;
    }
}

double vn_mix_beta(vn_rng *rng, double a, double b)
{
    double lx = log_gamma_variate(rng, a), ly = log_gamma_variate(rng, b);
    /* x / (x + y) = 1 / (1 + exp(ly - lx)) */
    return 1.0 / (1.0 + exp(ly - lx));
}

static int clipi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void vn_mix_cutmix_box(int h, int w, double lam, int cy, int cx, vn_mix_params *p)
{
    /* timm rand_bbox with margin 0, then correct_lam. */
    double ratio = sqrt(1.0 - lam);
    int cut_h = (int)(h * ratio), cut_w = (int)(w * ratio);
    p->yl = clipi(cy - cut_h / 2, 0, h);
    p->yh = clipi(cy + cut_h / 2, 0, h);
    p->xl = clipi(cx - cut_w / 2, 0, w);
    p->xh = clipi(cx + cut_w / 2, 0, w);
    double area = (double)(p->yh - p->yl) * (p->xh - p->xl);
    p->lam = 1.0 - area / (double)((double)h * w);
    p->cutmix = true;
}

void vn_mix_draw(const vn_mix_config *c, vn_rng *rng, int h, int w, vn_mix_params *p)
{
    memset(p, 0, sizeof *p);
    p->lam = 1.0;
    if (!vn_mix_active(c)) return;
    if (!(vn_rng_uniform_double(rng) < c->prob)) return;
    bool use_cutmix;
    double lam;
    if (c->mixup_alpha > 0 && c->cutmix_alpha > 0) {
        use_cutmix = vn_rng_uniform_double(rng) < c->switch_prob;
        lam = use_cutmix ? vn_mix_beta(rng, c->cutmix_alpha, c->cutmix_alpha)
                         : vn_mix_beta(rng, c->mixup_alpha, c->mixup_alpha);
    } else if (c->mixup_alpha > 0) {
        use_cutmix = false;
        lam = vn_mix_beta(rng, c->mixup_alpha, c->mixup_alpha);
    } else {
        use_cutmix = true;
        lam = vn_mix_beta(rng, c->cutmix_alpha, c->cutmix_alpha);
    }
    /* timm skips mixing entirely when lam is exactly 1. */
    if (lam == 1.0) return;
    if (use_cutmix) {
        int cy = (int)vn_rng_below(rng, (uint64_t)h);
        int cx = (int)vn_rng_below(rng, (uint64_t)w);
        vn_mix_cutmix_box(h, w, lam, cy, cx, p);
    } else {
        p->lam = lam;
        p->cutmix = false;
    }
}

void vn_mix_apply(const vn_mix_params *p, float *x, int n, int h, int w, int c)
{
    if (p->lam == 1.0 && !p->cutmix) return;
    VN_ASSERT(n % 2 == 0, "mixup/cutmix needs an even batch, got %d", n);
    size_t img = (size_t)h * w * c;
    if (p->cutmix) {
        /* x[:, :, yl:yh, xl:xh] = x.flip(0)[...]: pairs (i, n-1-i) swap the box. */
        size_t span = (size_t)(p->xh - p->xl) * c;
        for (int i = 0; i < n / 2; i++) {
            float *a = x + (size_t)i * img, *b = x + (size_t)(n - 1 - i) * img;
            for (int y = p->yl; y < p->yh; y++) {
                size_t off = ((size_t)y * w + p->xl) * c;
                for (size_t k = 0; k < span; k++) {
                    float t = a[off + k];
                    a[off + k] = b[off + k];
                    b[off + k] = t;
                }
            }
        }
        return;
    }
    /* x * lam + x.flip(0) * (1 - lam), each product rounded to float32 as torch does. */
    const float l = (float)p->lam, m = (float)(1.0 - p->lam);
    for (int i = 0; i < n / 2; i++) {
        float *a = x + (size_t)i * img, *b = x + (size_t)(n - 1 - i) * img;
        for (size_t k = 0; k < img; k++) {
            float va = a[k], vb = b[k];
            float pa = va * l, pb = vb * m, qa = vb * l, qb = va * m;
            a[k] = pa + pb;
            b[k] = qa + qb;
        }
    }
}
