/* Transforms against PIL 9.4 / torchvision 0.14 / timm 0.6.12 fixtures
 * (tests/reference/gen_data.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/vn_transform.h"
#include "data_util.h"

/* Resampling matches Pillow's integer arithmetic; the measured difference is 0, and the
 * tolerance is 0 levels of 255 (see the closing note of issue 4). */
#define RESIZE_TOL 0

/* Safetensors data need not be aligned for its type: typed reads go through aligned copies,
 * freed by release_all at the end of each test. */
static void *pool[1024];
static int npool;

static void *data_of(const vn_st_entry *e)
{
    ck_assert(npool < 1024);
    void *p = malloc(e->nbytes ? e->nbytes : 1);
    ck_assert(p != NULL);
    memcpy(p, e->data, e->nbytes);
    pool[npool++] = p;
    return p;
}

static void release_all(void)
{
    while (npool) free(pool[--npool]);
}

static const vn_st_entry *get(const vn_st_file *f, const char *fmt, int k)
{
    char name[128];
    snprintf(name, sizeof name, fmt, k);
    const vn_st_entry *e = vn_st_find(f, name);
    ck_assert_msg(e != NULL, "fixture has no '%s'", name);
    return e;
}

START_TEST(resize_matches_pil)
{
    vn_st_file *f = vn_test_fixture("data/resize.safetensors");
    int cases = atoi(vn_st_meta(f, "cases"));
    ck_assert_int_ge(cases, 16);
    int worst = 0;
    vn_tf_scratch sc = {0};
    for (int k = 0; k < cases; k++) {
        const vn_st_entry *src = get(f, "case%d.src", k), *want = get(f, "case%d.out", k);
        const int32_t *p = data_of(get(f, "case%d.params", k));
        vn_box box = {p[0], p[1], p[2], p[3]};
        int ow = p[4], oh = p[5], ch = (int)src->shape[2];
        uint8_t *out = malloc((size_t)want->numel);
        vn_error err = {0};
        int rc = vn_resize(src->data, (int)src->shape[1], (int)src->shape[0], ch, &box, ow, oh,
                           NULL, (vn_interp)p[6], out, &sc, &err);
        ck_assert_msg(rc == VN_OK, "case %d: %s", k, err.msg);
        int m = 0, bad = 0;
        for (int64_t i = 0; i < want->numel; i++) {
            int d = abs((int)out[i] - (int)((const uint8_t *)want->data)[i]);
            if (d > RESIZE_TOL && bad++ < 5)
                fprintf(stderr, "case %d (%s) [%lld]: got %d want %d\n", k,
                        p[6] ? "bicubic" : "bilinear", (long long)i, out[i],
                        ((const uint8_t *)want->data)[i]);
            if (d > m) m = d;
        }
        if (m > worst) worst = m;
        ck_assert_msg(m <= RESIZE_TOL, "case %d: max diff %d levels", k, m);
        /* Every window of the result equals that region of the full result. */
        vn_box win = {oh / 3, ow / 4, oh - oh / 3, ow / 2 > 0 ? ow / 2 : 1};
        uint8_t *part = malloc((size_t)win.width * win.height * ch);
        ck_assert_int_eq(vn_resize(src->data, (int)src->shape[1], (int)src->shape[0], ch, &box,
                                   ow, oh, &win, (vn_interp)p[6], part, &sc, &err), VN_OK);
        for (int y = 0; y < win.height; y++)
            ck_assert_msg(!memcmp(part + (size_t)y * win.width * ch,
                                  out + ((size_t)(y + win.top) * ow + win.left) * ch,
                                  (size_t)win.width * ch),
                          "case %d: window row %d differs from the full resize", k, y);
        free(part);
        free(out);
    }
    printf("resize vs PIL: %d cases, max abs diff %d\n", cases, worst);
    vn_tf_scratch_free(&sc);
    release_all();
    vn_st_close(f);
}
END_TEST

START_TEST(resize_rejects_bad_geometry)
{
    uint8_t src[12] = {0}, dst[64];
    vn_error err = {0};
    vn_box box = {0, 0, 3, 5}; /* taller than the 2-row source */
    ck_assert_int_eq(vn_resize(src, 2, 2, 3, &box, 4, 4, NULL, VN_INTERP_BILINEAR, dst, NULL, &err),
                     VN_ERR_INVALID);
    ck_assert_int_eq(vn_resize(src, 2, 2, 2, NULL, 4, 4, NULL, VN_INTERP_BILINEAR, dst, NULL, &err),
                     VN_ERR_INVALID);
    ck_assert_int_eq(vn_resize(src, 2, 2, 3, NULL, 0, 4, NULL, VN_INTERP_BILINEAR, dst, NULL, &err),
                     VN_ERR_INVALID);
}
END_TEST

static const float MEAN[3] = {0.485f, 0.456f, 0.406f}, STD[3] = {0.229f, 0.224f, 0.225f};

/* Full torchvision pipelines (PIL resize + crop + flip, ToTensor, Normalize) in float32. */
START_TEST(pipelines_match_torchvision)
{
    vn_st_file *f = vn_test_fixture("data/pipeline.safetensors");
    int evals = atoi(vn_st_meta(f, "evals")), trains = atoi(vn_st_meta(f, "trains"));
    vn_tf_scratch sc = {0};
    for (int k = 0; k < evals; k++) {
        const vn_st_entry *src = get(f, "eval%d.src", k), *want = get(f, "eval%d.out", k);
        const int32_t *p = data_of(get(f, "eval%d.params", k));
        double crop_pct = *(const double *)data_of(get(f, "eval%d.crop_pct", k));
        vn_image img = {(int)src->shape[1], (int)src->shape[0], (int)src->shape[2],
                        (uint8_t *)src->data, 0};
        vn_transform t;
        vn_error err = {0};
        ck_assert_int_eq(vn_transform_init(&t, p[0], img.channels, false, NULL, NULL,
                                           (vn_interp)p[1], crop_pct, 0, MEAN, STD, &err), VN_OK);
        float *out = malloc((size_t)want->numel * sizeof(float));
        ck_assert_msg(vn_transform_apply(&t, &img, NULL, out, &sc, NULL, NULL, &err) == VN_OK,
                      "%s", err.msg);
        char what[32];
        snprintf(what, sizeof what, "eval%d", k);
        ck_assert(vn_test_close(what, out, data_of(want), want->numel, 0, 0));
        free(out);
    }
    for (int k = 0; k < trains; k++) {
        const vn_st_entry *src = get(f, "train%d.src", k), *want = get(f, "train%d.out", k);
        const int32_t *p = data_of(get(f, "train%d.params", k));
        vn_box box = {p[0], p[1], p[2], p[3]};
        int size = p[4], ch = (int)src->shape[2];
        uint8_t *pix = malloc((size_t)size * size * ch);
        vn_error err = {0};
        ck_assert_int_eq(vn_resize(src->data, (int)src->shape[1], (int)src->shape[0], ch, &box,
                                   size, size, NULL, (vn_interp)p[5], pix, &sc, &err), VN_OK);
        vn_normalizer nz;
        vn_normalizer_init(&nz, ch, MEAN, STD);
        float *out = malloc((size_t)want->numel * sizeof(float));
        vn_normalize_u8(&nz, pix, size, size, p[6] != 0, out);
        char what[32];
        snprintf(what, sizeof what, "train%d", k);
        ck_assert(vn_test_close(what, out, data_of(want), want->numel, 0, 0));
        free(out);
        free(pix);
    }
    vn_tf_scratch_free(&sc);
    release_all();
    vn_st_close(f);
}
END_TEST

/* Draws replayed from the fixture, in the order torchvision consumed them. */
typedef struct replay {
    const double *u;
    int nu, iu;
    const int64_t *r;
    int ir;
} replay;

static double replay_uniform(void *user, double lo, double hi)
{
    replay *rp = user;
    ck_assert_msg(rp->iu < rp->nu, "more uniform draws than torchvision made");
    double v = rp->u[rp->iu++];
    ck_assert_msg(v >= lo - 1e-6 && v <= hi + 1e-6, "draw %g outside [%g, %g]", v, lo, hi);
    return v;
}

static int64_t replay_randint(void *user, int64_t n)
{
    replay *rp = user;
    ck_assert_msg(rp->ir < 2 && rp->r[rp->ir] >= 0, "more integer draws than torchvision made");
    int64_t v = rp->r[rp->ir++];
    ck_assert_msg(v < n, "draw %lld not below %lld", (long long)v, (long long)n);
    return v;
}

START_TEST(rrc_boxes_match_torchvision)
{
    vn_st_file *f = vn_test_fixture("data/rrc.safetensors");
    const vn_st_entry *cases = vn_st_find(f, "cases"), *uni = vn_st_find(f, "uniforms"),
                      *ints = vn_st_find(f, "randints"), *set = vn_st_find(f, "settings");
    ck_assert(cases && uni && ints && set);
    int n = (int)cases->shape[0], fallbacks = 0;
    for (int k = 0; k < n; k++) {
        const int32_t *c = (const int32_t *)data_of(cases) + 7 * k;
        const float *s = (const float *)data_of(set) + 4 * c[6];
        const int64_t *r = (const int64_t *)data_of(ints) + 2 * k;
        replay rp = {(const double *)data_of(uni) + 20 * k, 20, 0, r, 0};
        /* Attempts that were made: all 10 pairs when no integers were drawn. */
        if (r[0] < 0) {
            fallbacks++;
        } else {
            /* The accepted attempt is the last non-zero area draw. */
            int last = 0;
            for (int a = 0; a < 10; a++)
                if (rp.u[2 * a] != 0.0) last = a;
            rp.nu = 2 * (last + 1);
        }
        vn_rrc_draws d = {replay_uniform, replay_randint, &rp};
        float scale[2] = {s[0], s[1]}, ratio[2] = {s[2], s[3]};
        vn_box b = vn_rrc_box(c[0], c[1], scale, ratio, &d);
        ck_assert_msg(b.top == c[2] && b.left == c[3] && b.height == c[4] && b.width == c[5],
                      "case %d (%dx%d, setting %d): got (%d, %d, %d, %d), torchvision (%d, %d, "
                      "%d, %d)", k, c[0], c[1], c[6], b.top, b.left, b.height, b.width, c[2],
                      c[3], c[4], c[5]);
        ck_assert_int_eq(rp.iu, rp.nu);
        ck_assert_int_eq(rp.ir, r[0] < 0 ? 0 : 2);
        release_all();
    }
    ck_assert_int_gt(fallbacks, 10); /* the central fallback is exercised */
    vn_st_close(f);
}
END_TEST

/* Our own draws: boxes are always valid, and the area/ratio distribution is as asked. */
START_TEST(rrc_rng_boxes_valid)
{
    vn_rng rng;
    vn_rng_seed(&rng, 7, 0, 0);
    float scale[2] = {0.08f, 1.0f}, ratio[2] = {0.75f, 4.0f / 3.0f};
    double area_sum = 0;
    int n = 20000;
    for (int k = 0; k < n; k++) {
        int w = 50 + k % 400, h = 40 + (k * 7) % 500;
        vn_box b = vn_rrc_box_rng(w, h, scale, ratio, &rng);
        ck_assert(b.top >= 0 && b.left >= 0 && b.height > 0 && b.width > 0);
        ck_assert(b.top + b.height <= h && b.left + b.width <= w);
        area_sum += (double)b.height * b.width / ((double)w * h);
    }
    /* Rejected attempts favour small crops: torchvision's get_params gives a mean area
     * share of 0.3367 on these sizes (4000 draws, standard error about 0.004). */
    double mean = area_sum / n;
    ck_assert_msg(fabs(mean - 0.3367) < 0.012, "mean crop area %g", mean);
}
END_TEST

START_TEST(eval_geometry_as_torchvision)
{
    int rw, rh;
    vn_box c;
    vn_eval_geometry(500, 375, 224, 0.875, &rw, &rh, &c);
    ck_assert_int_eq(rh, 256);
    ck_assert_int_eq(rw, 341); /* int(256 * 500 / 375) = int(341.33) */
    ck_assert_int_eq(c.top, 16);
    ck_assert_int_eq(c.left, 58); /* round(58.5) = 58 (half to even) */
    vn_eval_geometry(375, 500, 224, 0.875, &rw, &rh, &c);
    ck_assert_int_eq(rw, 256);
    ck_assert_int_eq(rh, 341);
    ck_assert_int_eq(c.top, 58);
    vn_eval_geometry(28, 28, 28, 1.0, &rw, &rh, &c);
    ck_assert(rw == 28 && rh == 28 && c.top == 0 && c.left == 0);
    vn_eval_geometry(100, 51, 20, 0.8, &rw, &rh, &c); /* 25 short, int(25*100/51) = 49 */
    ck_assert_int_eq(rw, 49);
    ck_assert_int_eq(rh, 25);
    ck_assert_int_eq(c.left, 14); /* round(14.5) = 14 */
    ck_assert_int_eq(c.top, 2);   /* round(2.5) = 2 */
}
END_TEST

START_TEST(mix_matches_timm)
{
    vn_st_file *f = vn_test_fixture("data/mix.safetensors");
    int cases = atoi(vn_st_meta(f, "cases"));
    const vn_st_entry *lab = vn_st_find(f, "labels");
    ck_assert(lab && lab->dtype == VN_DTYPE_I32);
    vn_mix_config mc = {.mixup_alpha = 1, .cutmix_alpha = 1, .switch_prob = 0.5f, .prob = 1,
                        .label_smoothing = 0.1f, .num_classes = atoi(vn_st_meta(f, "num_classes"))};
    for (int k = 0; k < cases; k++) {
        const vn_st_entry *x = get(f, "mix%d.x", k), *want = get(f, "mix%d.out", k),
                          *tw = get(f, "mix%d.targets", k);
        const double *dr = data_of(get(f, "mix%d.draws", k));
        const int32_t *p = data_of(get(f, "mix%d.params", k));
        int n = (int)x->shape[0], h = (int)x->shape[1], w = (int)x->shape[2], c = (int)x->shape[3];
        vn_mix_params mp = {.lam = dr[0], .cutmix = false};
        if (p[0]) {
            vn_mix_cutmix_box(h, w, dr[0], p[1], p[2], &mp);
            ck_assert_msg(mp.yl == p[3] && mp.yh == p[4] && mp.xl == p[5] && mp.xh == p[6],
                          "case %d: box (%d, %d, %d, %d), timm (%d, %d, %d, %d)", k, mp.yl, mp.yh,
                          mp.xl, mp.xh, p[3], p[4], p[5], p[6]);
            ck_assert_msg(mp.lam == dr[1], "case %d: corrected lam %.17g, timm %.17g", k, mp.lam,
                          dr[1]);
        }
        float *buf = malloc((size_t)x->numel * sizeof(float));
        memcpy(buf, x->data, (size_t)x->numel * sizeof(float));
        vn_mix_apply(&mp, buf, n, h, w, c);
        char what[32];
        snprintf(what, sizeof what, "mix%d images", k);
        ck_assert(vn_test_close(what, buf, data_of(want), want->numel, 0, 0));
        float *tg = malloc((size_t)tw->numel * sizeof(float));
        vn_mix_targets(&mc, mp.lam, data_of(lab), n, tg);
        snprintf(what, sizeof what, "mix%d targets", k);
        ck_assert(vn_test_close(what, tg, data_of(tw), tw->numel, 0, 0));
        free(tg);
        free(buf);
    }
    release_all();
    vn_st_close(f);
}
END_TEST

/* Beta(a, a) by our sampler: mean 1/2, variance 1 / (4 (2a + 1)), for mixup's small alphas
 * (0.1: mostly near 0 or 1) and cutmix's 1.0 (uniform). */
START_TEST(beta_sampler_moments)
{
    const double alphas[3] = {0.1, 0.4, 1.0};
    for (int k = 0; k < 3; k++) {
        vn_rng rng;
        vn_rng_seed(&rng, 11, (uint64_t)k, 0);
        double a = alphas[k], s = 0, s2 = 0;
        int n = 40000;
        for (int i = 0; i < n; i++) {
            double v = vn_mix_beta(&rng, a, a);
            ck_assert(v >= 0 && v <= 1);
            s += v;
            s2 += v * v;
        }
        double mean = s / n, var = s2 / n - mean * mean, want = 1.0 / (4 * (2 * a + 1));
        ck_assert_msg(fabs(mean - 0.5) < 0.01, "alpha %g: mean %g", a, mean);
        ck_assert_msg(fabs(var - want) < 0.01, "alpha %g: variance %g, want %g", a, var, want);
    }
}
END_TEST

/* Batch-level draws: prob 0 never mixes; with both alphas the switch picks both modes. */
START_TEST(mix_draw_modes)
{
    vn_mix_config mc = {.mixup_alpha = 0.8f, .cutmix_alpha = 1.0f, .switch_prob = 0.5f,
                        .prob = 1.0f, .label_smoothing = 0.1f, .num_classes = 10};
    int cut = 0, mix = 0;
    for (int b = 0; b < 400; b++) {
        vn_rng rng;
        vn_rng_seed(&rng, 3, 1, (uint64_t)b);
        vn_mix_params p;
        vn_mix_draw(&mc, &rng, 16, 12, &p);
        ck_assert(p.lam >= 0 && p.lam <= 1);
        if (p.cutmix) {
            cut++;
            ck_assert(p.yl >= 0 && p.yh <= 16 && p.xl >= 0 && p.xh <= 12);
            double area = (double)(p.yh - p.yl) * (p.xh - p.xl) / (16.0 * 12.0);
            ck_assert(fabs(p.lam - (1 - area)) < 1e-12);
        } else if (p.lam < 1) {
            mix++;
        }
    }
    ck_assert_int_gt(cut, 150);
    ck_assert_int_gt(mix, 150);
    mc.prob = 0;
    vn_rng rng;
    vn_rng_seed(&rng, 3, 1, 0);
    vn_mix_params p;
    vn_mix_draw(&mc, &rng, 16, 12, &p);
    ck_assert(p.lam == 1.0 && !p.cutmix);
    /* Targets of an unmixed batch are the smoothed one-hots: 0.91 / 0.01. */
    int32_t labels[2] = {3, 7};
    float t[20];
    vn_mix_targets(&mc, 1.0, labels, 2, t);
    for (int j = 0; j < 10; j++) {
        ck_assert_float_eq_tol(t[j], j == 3 ? 0.91f : 0.01f, 1e-7f);
        ck_assert_float_eq_tol(t[10 + j], j == 7 ? 0.91f : 0.01f, 1e-7f);
    }
}
END_TEST

START_TEST(transform_validates)
{
    vn_transform t;
    vn_error err = {0};
    float sc[2] = {0.08f, 1}, ra[2] = {0.75f, 1.333f};
    ck_assert_int_eq(vn_transform_init(&t, 0, 3, true, sc, ra, VN_INTERP_BILINEAR, 0.875, 0.5f,
                                       MEAN, STD, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_transform_init(&t, 32, 2, true, sc, ra, VN_INTERP_BILINEAR, 0.875, 0.5f,
                                       MEAN, STD, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_transform_init(&t, 32, 3, false, sc, ra, VN_INTERP_BILINEAR, 1.5, 0.5f,
                                       MEAN, STD, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "crop_pct"), "%s", err.msg);
    float zero[3] = {0, 0, 0};
    ck_assert_int_eq(vn_transform_init(&t, 32, 3, false, sc, ra, VN_INTERP_BILINEAR, 0.875, 0.5f,
                                       MEAN, zero, &err), VN_ERR_INVALID);
    float bad_sc[2] = {0.5f, 0.2f};
    ck_assert_int_eq(vn_transform_init(&t, 32, 3, true, bad_sc, ra, VN_INTERP_BILINEAR, 0.875,
                                       0.5f, MEAN, STD, &err), VN_ERR_INVALID);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("data_transform");
    TCase *tc = tcase_create("transform");
    tcase_add_test(tc, resize_matches_pil);
    tcase_add_test(tc, resize_rejects_bad_geometry);
    tcase_add_test(tc, pipelines_match_torchvision);
    tcase_add_test(tc, rrc_boxes_match_torchvision);
    tcase_add_test(tc, rrc_rng_boxes_valid);
    tcase_add_test(tc, eval_geometry_as_torchvision);
    tcase_add_test(tc, mix_matches_timm);
    tcase_add_test(tc, beta_sampler_moments);
    tcase_add_test(tc, mix_draw_modes);
    tcase_add_test(tc, transform_validates);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
