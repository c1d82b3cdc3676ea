/* RandAugment ops, policy and random erasing against Pillow 9.4 and a re-implementation of
 * timm 0.6.12's formulas (tests/reference/gen_augment.py). Every comparison is byte for
 * byte (tolerance 0): the ops repeat Pillow's arithmetic in the same precision and order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/vn_augment.h"
#include "data_util.h"
#include "train/vn_config.h"

static const vn_st_entry *get(const vn_st_file *f, const char *fmt, int k)
{
    char name[128];
    snprintf(name, sizeof name, fmt, k);
    const vn_st_entry *e = vn_st_find(f, name);
    ck_assert_msg(e != NULL, "fixture has no '%s'", name);
    return e;
}

/* Unaligned-safe scalar reads. */
static int32_t i32_at(const vn_st_entry *e, int i)
{
    int32_t v;
    memcpy(&v, (const char *)e->data + 4 * (size_t)i, 4);
    return v;
}

static double f64_at(const vn_st_entry *e, int i)
{
    double v;
    memcpy(&v, (const char *)e->data + 8 * (size_t)i, 8);
    return v;
}

static const float MEAN[3] = {0.485f, 0.456f, 0.406f};

/* Prints the first mismatches; returns the number of differing bytes. */
static int compare(const char *what, int k, const uint8_t *got, const uint8_t *want, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i] && bad++ < 4)
            fprintf(stderr, "%s case %d [%zu]: got %d want %d\n", what, k, i, got[i], want[i]);
    return bad;
}

START_TEST(ops_match_pillow)
{
    vn_st_file *f = vn_test_fixture("augment/ops.safetensors");
    int cases = atoi(vn_st_meta(f, "cases"));
    ck_assert_int_ge(cases, 300);
    int failed = 0, per_op[VN_RA_OP_COUNT] = {0};
    for (int k = 0; k < cases; k++) {
        const vn_st_entry *pe = get(f, "case%d.params", k);
        int op = i32_at(pe, 0), ii = i32_at(pe, 1), bicubic = i32_at(pe, 2), neg = i32_at(pe, 3);
        double mag = f64_at(get(f, "case%d.mag", k), 0), want_arg = f64_at(get(f, "case%d.arg", k), 0);
        const vn_st_entry *src = get(f, "img%d", ii), *want = get(f, "case%d.out", k);
        int h = (int)src->shape[0], w = (int)src->shape[1], c = (int)src->shape[2];
        vn_randaug ra;
        ck_assert_int_eq(vn_randaug_parse("rand-m9", 224, c, MEAN,
                                          bicubic ? VN_INTERP_BICUBIC : VN_INTERP_BILINEAR, &ra,
                                          NULL), VN_OK);
        ra.translate_const = atoi(vn_st_meta(f, "translate_const"));
        double arg = want_arg;
        if (mag >= 0) {
            arg = vn_ra_level_arg(&ra, (vn_ra_op)op, mag, neg != 0);
            ck_assert_msg(arg == want_arg, "case %d %s m%g: level arg %.17g, timm %.17g", k,
                          vn_ra_op_name(op), mag, arg, want_arg);
        }
        size_t n = (size_t)h * w * c;
        uint8_t *im = malloc(n), *tmp = malloc(n);
        memcpy(im, src->data, n);
        vn_ra_apply_op(&ra, (vn_ra_op)op, arg, (vn_pix){im, w, h, c}, tmp);
        int bad = compare(vn_ra_op_name(op), k, im, want->data, n);
        if (bad) {
            fprintf(stderr, "  %s arg %.17g on %dx%dx%d (%s): %d bytes differ\n",
                    vn_ra_op_name(op), arg, w, h, c, bicubic ? "bicubic" : "bilinear", bad);
            failed++;
        }
        per_op[op]++;
        free(im);
        free(tmp);
    }
    for (int op = 0; op < VN_RA_OP_COUNT; op++)
        ck_assert_msg(per_op[op] > 0, "no fixture case for %s", vn_ra_op_name(op));
    printf("RandAugment ops vs Pillow 9.4: %d cases, %d differ\n", cases, failed);
    ck_assert_int_eq(failed, 0);
    vn_st_close(f);
}
END_TEST

/* Draws fed from a fixture's list, in the order timm consumed them. */
typedef struct feed {
    const vn_st_entry *e;
    int next;
} feed;

static double feed_next(feed *fd)
{
    ck_assert_msg(fd->next < fd->e->numel, "the C code consumed more draws (%d) than timm",
                  fd->next + 1);
    return f64_at(fd->e, fd->next++);
}
static double feed_random(void *u) { return feed_next(u); }
static double feed_gauss(void *u, double mu, double sigma) { return mu + feed_next(u) * sigma; }
static int64_t feed_choice(void *u, int64_t n)
{
    double v = feed_next(u);
    ck_assert(v >= 0 && v < n);
    return (int64_t)v;
}
static int64_t feed_randint(void *u, int64_t lo, int64_t hi)
{
    double v = feed_next(u);
    ck_assert_msg(v >= lo && v <= hi, "fed randint %g outside [%lld, %lld]", v, (long long)lo,
                  (long long)hi);
    return (int64_t)v;
}

START_TEST(randaug_matches_timm_with_fed_draws)
{
    vn_st_file *f = vn_test_fixture("augment/randaug.safetensors");
    int cases = atoi(vn_st_meta(f, "cases"));
    int size = atoi(vn_st_meta(f, "input_size"));
    ck_assert_int_ge(cases, 100);
    int failed = 0;
    for (int k = 0; k < cases; k++) {
        const vn_st_entry *pe = get(f, "case%d.params", k);
        int ci = i32_at(pe, 0), ii = i32_at(pe, 1);
        char key[32];
        snprintf(key, sizeof key, "config%d", ci);
        const char *cfg = vn_st_meta(f, key);
        const vn_st_entry *src = get(f, "img%d", ii), *want = get(f, "case%d.out", k);
        int h = (int)src->shape[0], w = (int)src->shape[1], c = (int)src->shape[2];
        vn_randaug ra;
        vn_error err = {0};
        ck_assert_msg(vn_randaug_parse(cfg, size, c, MEAN, VN_INTERP_BICUBIC, &ra, &err) == VN_OK,
                      "%s: %s", cfg, err.msg);
        size_t n = (size_t)h * w * c;
        uint8_t *im = malloc(n), *tmp = malloc(n);
        memcpy(im, src->data, n);
        feed fd = {get(f, "case%d.draws", k), 0};
        vn_ra_draws d = {feed_random, feed_gauss, feed_choice, &fd};
        vn_randaug_apply_draws(&ra, (vn_pix){im, w, h, c}, tmp, &d);
        ck_assert_msg(fd.next == fd.e->numel, "case %d (%s): consumed %d of %lld draws", k, cfg,
                      fd.next, (long long)fd.e->numel);
        if (compare(cfg, k, im, want->data, n)) failed++;
        free(im);
        free(tmp);
    }
    printf("RandAugment policy vs timm formulas: %d cases, %d differ\n", cases, failed);
    ck_assert_int_eq(failed, 0);
    vn_st_close(f);
}
END_TEST

START_TEST(erasing_boxes_match_timm)
{
    vn_st_file *f = vn_test_fixture("augment/erasing.safetensors");
    int cases = atoi(vn_st_meta(f, "cases"));
    ck_assert_int_ge(cases, 300);
    int erased = 0;
    for (int k = 0; k < cases; k++) {
        const vn_st_entry *pe = get(f, "case%d.params", k), *be = get(f, "case%d.boxes", k);
        int h = i32_at(pe, 0), w = i32_at(pe, 1), count = i32_at(pe, 2), prob = i32_at(pe, 3);
        vn_erasing e;
        vn_erasing_init(&e, prob / 100.0, VN_ERASE_PIXEL, count);
        feed fd = {get(f, "case%d.draws", k), 0};
        vn_erase_draws d = {feed_random, feed_randint, &fd};
        vn_box boxes[8];
        int n = vn_erasing_boxes(&e, h, w, &d, boxes);
        ck_assert_msg(fd.next == fd.e->numel, "case %d: consumed %d of %lld draws", k, fd.next,
                      (long long)fd.e->numel);
        ck_assert_int_eq(n, (int)(be->numel / 4));
        for (int b = 0; b < n; b++) {
            int want[4] = {i32_at(be, 4 * b), i32_at(be, 4 * b + 1), i32_at(be, 4 * b + 2),
                           i32_at(be, 4 * b + 3)};
            ck_assert_msg(boxes[b].top == want[0] && boxes[b].left == want[1] &&
                              boxes[b].height == want[2] && boxes[b].width == want[3],
                          "case %d box %d (%dx%d): got %d,%d %dx%d want %d,%d %dx%d", k, b, h, w,
                          boxes[b].top, boxes[b].left, boxes[b].height, boxes[b].width, want[0],
                          want[1], want[2], want[3]);
        }
        erased += n > 0;
    }
    printf("random erasing boxes vs timm: %d cases (%d erased), all equal\n", cases, erased);
    ck_assert_int_gt(erased, cases / 4);
    vn_st_close(f);
}
END_TEST

START_TEST(parse_errors_name_the_key)
{
    static const char *bad[] = {"rand-m99", "rand-x5", "augmix-m5", "v0", "rand-m9-n0",
                                "rand-m9.5", "rand-m9-w1", "rand-m9-q3", "randm9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vn_randaug ra;
        vn_error err = {0};
        ck_assert_msg(vn_randaug_parse(bad[i], 224, 3, MEAN, VN_INTERP_BICUBIC, &ra, &err) ==
                          VN_ERR_INVALID, "'%s' was accepted", bad[i]);
        ck_assert_msg(strstr(err.msg, "data.auto_augment") != NULL, "%s: %s", bad[i], err.msg);
        printf("  %s -> %s\n", bad[i], err.msg);
    }
    vn_randaug ra;
    ck_assert_int_eq(vn_randaug_parse("rand-m9-mstd0.5-inc1", 224, 3, MEAN, VN_INTERP_BICUBIC,
                                      &ra, NULL), VN_OK);
    ck_assert_int_eq(ra.magnitude, 9);
    ck_assert(ra.mstd == 0.5);
    ck_assert_int_eq(ra.num_layers, 2);
    ck_assert_int_eq(ra.ops[4], VN_RA_POSTERIZE_INCREASING);
    ck_assert_int_eq(ra.fill[0], 124);
    ck_assert_int_eq(ra.fill[1], 116);
    ck_assert_int_eq(ra.fill[2], 104);
    ck_assert_int_eq(ra.translate_const, 100);
    ck_assert_int_eq(vn_randaug_parse("rand-m20-mmax20-mstd101-w0", 224, 3, MEAN,
                                      VN_INTERP_BICUBIC, &ra, NULL), VN_OK);
    ck_assert(isinf(ra.mstd) && ra.weighted && ra.mmax == 20);
    vn_error err = {0};
    ck_assert_int_eq(vn_ra_op_from_name("Shear", &err), -1);
    ck_assert(strstr(err.msg, "ShearX") != NULL);
    ck_assert_int_eq(vn_ra_op_from_name("TranslateYRel", NULL), VN_RA_TRANSLATE_Y_REL);
}
END_TEST

/* Same seed, same bytes; the per-op probability and the magnitude noise both show up over
 * many draws (about a quarter of calls apply no op at n = 2, p = 0.5). */
START_TEST(randaug_rng_is_deterministic)
{
    vn_randaug ra;
    ck_assert_int_eq(vn_randaug_parse("rand-m9-mstd0.5-inc1", 32, 3, MEAN, VN_INTERP_BICUBIC,
                                      &ra, NULL), VN_OK);
    uint8_t base[32 * 32 * 3], a[sizeof base], b[sizeof base], tmp[sizeof base];
    for (size_t i = 0; i < sizeof base; i++) base[i] = (uint8_t)(i * 37 % 251);
    int unchanged = 0;
    for (int s = 0; s < 400; s++) {
        vn_rng r1, r2;
        vn_rng_seed(&r1, 7, 1, (uint64_t)s);
        vn_rng_seed(&r2, 7, 1, (uint64_t)s);
        memcpy(a, base, sizeof base);
        memcpy(b, base, sizeof base);
        vn_randaug_apply(&ra, (vn_pix){a, 32, 32, 3}, tmp, &r1);
        vn_randaug_apply(&ra, (vn_pix){b, 32, 32, 3}, tmp, &r2);
        ck_assert(!memcmp(a, b, sizeof a));
        unchanged += !memcmp(a, base, sizeof a);
    }
    ck_assert_msg(unchanged > 60 && unchanged < 150, "%d of 400 unchanged (expect ~100)",
                  unchanged);
}
END_TEST

START_TEST(erasing_fills_by_mode)
{
    enum { H = 20, W = 24, C = 3 };
    float img[H * W * C];
    for (int mode = 0; mode < 3; mode++) {
        vn_erasing e;
        vn_erasing_init(&e, 1.0, (vn_erase_mode)mode, 1);
        for (int i = 0; i < H * W * C; i++) img[i] = 100.0f;
        vn_rng rng;
        vn_rng_seed(&rng, 3, 0, (uint64_t)mode);
        vn_erasing_apply(&e, img, H, W, C, &rng);
        int erased = 0, distinct_per_pixel = 0;
        for (int i = 0; i < H * W; i++) {
            float *p = img + i * C;
            if (p[0] == 100.0f) continue;
            erased++;
            if (mode == VN_ERASE_CONST) ck_assert(p[0] == 0 && p[1] == 0 && p[2] == 0);
            ck_assert(fabsf(p[0]) < 8 && fabsf(p[1]) < 8 && fabsf(p[2]) < 8);
            distinct_per_pixel += p[0] != p[1];
        }
        ck_assert_msg(erased >= (int)(0.02 * H * W) - 4, "mode %d: %d pixels erased", mode, erased);
        if (mode == VN_ERASE_PIXEL) ck_assert_int_gt(distinct_per_pixel, erased / 2);
        if (mode != VN_ERASE_PIXEL) ck_assert_int_eq(distinct_per_pixel, mode == VN_ERASE_RAND ? erased : 0);
    }
}
END_TEST

START_TEST(color_jitter_changes_and_repeats)
{
    vn_color_jitter cj = {0.4f, 0.4f, 0.4f};
    uint8_t base[16 * 16 * 3], a[sizeof base], b[sizeof base];
    for (size_t i = 0; i < sizeof base; i++) base[i] = (uint8_t)(i * 29 % 253);
    int changed = 0;
    for (int s = 0; s < 50; s++) {
        vn_rng r1, r2;
        vn_rng_seed(&r1, 1, 2, (uint64_t)s);
        vn_rng_seed(&r2, 1, 2, (uint64_t)s);
        memcpy(a, base, sizeof a);
        memcpy(b, base, sizeof b);
        vn_color_jitter_apply(&cj, (vn_pix){a, 16, 16, 3}, &r1);
        vn_color_jitter_apply(&cj, (vn_pix){b, 16, 16, 3}, &r2);
        ck_assert(!memcmp(a, b, sizeof a));
        changed += memcmp(a, base, sizeof a) != 0;
    }
    ck_assert_int_eq(changed, 50);
    vn_color_jitter off = {0, 0, 0};
    ck_assert(!vn_color_jitter_active(&off));
}
END_TEST

/* vn_transform_apply with augmentations = timm's order spelled out by hand from the same
 * generator: RRC box, flip draw, resize, flip, RandAugment, ToTensor + Normalize, erasing. */
START_TEST(pipeline_order_is_timms)
{
    enum { W = 40, H = 30, S = 24 };
    vn_image img = {W, H, 3, NULL, 0};
    img.data = malloc((size_t)W * H * 3);
    for (int i = 0; i < W * H * 3; i++) img.data[i] = (uint8_t)((i * 7 + (i / (W * 3)) * 13) & 255);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    const float scale[2] = {0.08f, 1.0f}, ratio[2] = {0.75f, 4.0f / 3.0f};
    vn_transform t;
    ck_assert_int_eq(vn_transform_init(&t, S, 3, true, scale, ratio, VN_INTERP_BICUBIC, 0.875,
                                       0.5f, mean, std, NULL), VN_OK);
    vn_train_aug aug;
    vn_train_aug_config ac = {"rand-m9-mstd0.5-inc1", 0.4f, 0.8f, VN_ERASE_PIXEL, 1};
    ck_assert_int_eq(vn_train_aug_init(&aug, &ac, S, 3, mean, VN_INTERP_BICUBIC, NULL), VN_OK);
    ck_assert(aug.randaug_on && !vn_color_jitter_active(&aug.jitter)); /* jitter: only without RA */
    t.aug = &aug;
    float got[S * S * 3], want[S * S * 3];
    uint8_t pix[S * S * 3], tmp[S * S * 3];
    int flips = 0, differ = 0;
    for (int s = 0; s < 40; s++) {
        vn_rng r1, r2;
        vn_rng_seed(&r1, 5, 0, (uint64_t)s);
        vn_rng_seed(&r2, 5, 0, (uint64_t)s);
        bool flipped;
        ck_assert_int_eq(vn_transform_apply(&t, &img, &r1, got, NULL, NULL, &flipped, NULL), VN_OK);
        vn_box box = vn_rrc_box_rng(W, H, scale, ratio, &r2);
        bool flip = vn_rng_uniform(&r2) < 0.5f;
        ck_assert(flip == flipped);
        ck_assert_int_eq(vn_resize(img.data, W, H, 3, &box, S, S, NULL, VN_INTERP_BICUBIC, pix,
                                   NULL, NULL), VN_OK);
        if (flip)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S / 2; x++)
                    for (int c = 0; c < 3; c++) {
                        uint8_t *a = pix + (y * S + x) * 3 + c, *b = pix + (y * S + S - 1 - x) * 3 + c;
                        uint8_t v = *a;
                        *a = *b;
                        *b = v;
                    }
        vn_randaug_apply(&aug.randaug, (vn_pix){pix, S, S, 3}, tmp, &r2);
        vn_normalize_u8(&t.norm, pix, S, S, false, want);
        vn_erasing_apply(&aug.erasing, want, S, S, 3, &r2);
        ck_assert_msg(!memcmp(got, want, sizeof got), "sample %d differs from timm's order", s);
        flips += flip;
        /* Without augmentations the same draws give another result (they did something). */
        vn_transform plain = t;
        plain.aug = NULL;
        vn_rng_seed(&r1, 5, 0, (uint64_t)s);
        ck_assert_int_eq(vn_transform_apply(&plain, &img, &r1, want, NULL, NULL, NULL, NULL), VN_OK);
        differ += memcmp(got, want, sizeof got) != 0;
    }
    ck_assert(flips > 5 && flips < 35);
    ck_assert_int_gt(differ, 30);
    free(img.data);
}
END_TEST

/* Bad augmentation settings in a config: each error names its key. */
START_TEST(config_errors_name_the_key)
{
    static const char *bad[][2] = {
        {"data.reprob=2", "data.reprob"},
        {"data.remode=blur", "data.remode"},
        {"data.recount=0", "data.recount"},
        {"data.color_jitter=-1", "data.color_jitter"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vn_config cfg;
        vn_config_init(&cfg);
        vn_error err = {0};
        ck_assert_msg(vn_config_set(&cfg, bad[i][0], &err) != VN_OK, "%s accepted", bad[i][0]);
        ck_assert_msg(strstr(err.msg, bad[i][1]), "%s: %s", bad[i][0], err.msg);
        printf("  %s -> %s\n", bad[i][0], err.msg);
    }
    static const char *bad_aa[] = {"data.auto_augment=rand-m99", "data.auto_augment=rand-m9-x2",
                                   "data.auto_augment=augmix-m5"};
    for (size_t i = 0; i < sizeof bad_aa / sizeof bad_aa[0]; i++) {
        vn_config cfg;
        vn_config_init(&cfg);
        vn_error err = {0};
        ck_assert_int_eq(vn_config_set(&cfg, bad_aa[i], &err), VN_OK);
        ck_assert_msg(vn_config_check(&cfg, &err) != VN_OK, "%s accepted", bad_aa[i]);
        ck_assert_msg(strstr(err.msg, "data.auto_augment"), "%s: %s", bad_aa[i], err.msg);
        printf("  %s -> %s\n", bad_aa[i], err.msg);
    }
    vn_config cfg;
    vn_config_init(&cfg);
    ck_assert_str_eq(cfg.data.auto_augment, "rand-m7-mstd0.5-inc1"); /* the official recipe */
    ck_assert(cfg.data.reprob == 0.25 && cfg.data.recount == 1);
    ck_assert_int_eq(vn_config_check(&cfg, NULL), VN_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("augment");
    TCase *tc = tcase_create("augment");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, ops_match_pillow);
    tcase_add_test(tc, randaug_matches_timm_with_fed_draws);
    tcase_add_test(tc, erasing_boxes_match_timm);
    tcase_add_test(tc, parse_errors_name_the_key);
    tcase_add_test(tc, randaug_rng_is_deterministic);
    tcase_add_test(tc, erasing_fills_by_mode);
    tcase_add_test(tc, color_jitter_changes_and_repeats);
    tcase_add_test(tc, pipeline_order_is_timms);
    tcase_add_test(tc, config_errors_name_the_key);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
