/* nftw's FTW_DEPTH / FTW_PHYS */
#define _XOPEN_SOURCE 700
#include "vn_test.h"

#include <ftw.h>
#include <unistd.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/vn_rng.h"

const char *vn_test_fixture_path(const char *relpath)
{
    static char path[4096];
    const char *root = getenv("VN_FIXTURES");
    ck_assert_msg(root != NULL, "VN_FIXTURES is not set: run the tests through `meson test`");
    snprintf(path, sizeof path, "%s/%s", root, relpath);
    return path;
}

vn_st_file *vn_test_fixture(const char *relpath)
{
    vn_st_file *f = NULL;
    vn_error err = {0};
    int rc = vn_st_open(vn_test_fixture_path(relpath), &f, &err);
    ck_assert_msg(rc == VN_OK, "cannot open fixture %s: %s", relpath, err.msg);
    return f;
}

const float *vn_test_f32(const vn_st_file *f, const char *name, int64_t expect_numel)
{
    const vn_st_entry *e = vn_st_find(f, name);
    ck_assert_msg(e != NULL, "%s: fixture has no tensor '%s'", vn_st_path(f), name);
    ck_assert_msg(e->dtype == VN_DTYPE_F32, "%s: '%s' is %s, expected F32", vn_st_path(f), name,
                  vn_dtype_name(e->dtype));
    ck_assert_msg(expect_numel < 0 || e->numel == expect_numel,
                  "%s: '%s' has %lld elements, expected %lld", vn_st_path(f), name,
                  (long long)e->numel, (long long)expect_numel);
    return e->data;
}

vn_tensor *vn_test_tensor(const vn_st_file *f, const char *name, bool requires_grad)
{
    const vn_st_entry *e = vn_st_find(f, name);
    ck_assert_msg(e != NULL, "%s: fixture has no tensor '%s'", vn_st_path(f), name);
    ck_assert_msg(e->ndim <= VN_MAX_DIMS, "'%s' has %d dims", name, e->ndim);
    const float *src = vn_test_f32(f, name, -1);
    vn_tensor *t = vn_tensor_new(e->ndim, e->shape, requires_grad);
    ck_assert_ptr_nonnull(t);
    memcpy(t->data, src, (size_t)t->numel * sizeof(float));
    return t;
}

bool vn_test_close(const char *what, const float *got, const float *want, int64_t n,
                   double atol, double rtol)
{
    int64_t bad = 0;
    double max_abs = 0;
    int64_t max_at = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= max_abs)) { /* also catches NaN */
            max_abs = isnan(d) ? INFINITY : d;
            max_at = i;
        }
        if (!(d <= atol + rtol * fabs((double)want[i]))) {
            if (bad < 8)
                fprintf(stderr, "  %s[%lld]: got %.9g, want %.9g (diff %.3g)\n", what,
                        (long long)i, got[i], want[i], d);
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "%s: %lld of %lld elements differ (atol %g, rtol %g); max abs diff %.3g "
                "at %lld\n", what, (long long)bad, (long long)n, atol, rtol, max_abs,
                (long long)max_at);
    return bad == 0;
}

double vn_test_rel_err(const float *got, const float *want, int64_t n)
{
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (isnan(d)) return INFINITY;
        if (d > md) md = d;
        if (fabs(want[i]) > mr) mr = fabs(want[i]);
    }
    return mr > 0 ? md / mr : md;
}

float *vn_test_dup(const float *p, int64_t n)
{
    float *c = malloc((size_t)(n > 0 ? n : 1) * sizeof *c);
    ck_assert_ptr_nonnull(c);
    if (n > 0) memcpy(c, p, (size_t)n * sizeof *c);
    return c;
}

void vn_test_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    vn_rng rng;
    vn_rng_seed(&rng, seed, 0x7e57, 0);
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * vn_rng_uniform(&rng);
}

/* L = sum(out * r) in double, with the op run without recording. */
static int eval_loss(vn_ctx *ctx, vn_test_fwd_fn fwd, vn_tensor *const *in, void *user,
                     const float *r, int64_t rn, double *loss)
{
    vn_ctx_reset(ctx);
    bool old = vn_ctx_set_grad(ctx, false);
    vn_tensor *out = fwd(ctx, in, user);
    vn_ctx_set_grad(ctx, old);
    if (!out) return -1;
    if (out->numel != rn) return -1;
    double s = 0;
    for (int64_t i = 0; i < rn; i++) s += (double)out->data[i] * (double)r[i];
    *loss = s;
    return 0;
}

double vn_test_gradcheck(const char *what, vn_test_fwd_fn fwd, int n_in, vn_tensor *const *in,
                         void *user, double eps, double tol, int64_t max_checked)
{
    vn_ctx *ctx = vn_ctx_create();
    ck_assert_ptr_nonnull(ctx);
    /* Dropout-like ops draw from the context RNG: replay the same stream every time. */
    vn_rng rng0 = *vn_ctx_rng(ctx);

    for (int i = 0; i < n_in; i++)
        if (vn_tensor_requires_grad(in[i])) vn_tensor_zero_grad(in[i]);
    vn_tensor *out = fwd(ctx, in, user);
    if (!out) {
        fprintf(stderr, "%s: forward failed: %s\n", what, vn_ctx_error(ctx));
        vn_ctx_destroy(ctx);
        return -1;
    }
    int64_t rn = out->numel;
    float *r = malloc((size_t)rn * sizeof *r);
    vn_test_fill_uniform(r, rn, 0x9c0ffee, -1.0f, 1.0f);
    if (vn_backward_with(ctx, out, r) != VN_OK) {
        fprintf(stderr, "%s: backward failed: %s\n", what, vn_ctx_error(ctx));
        free(r);
        vn_ctx_destroy(ctx);
        return -1;
    }
    double worst = 0;
    int reported = 0;
    for (int i = 0; i < n_in; i++) {
        vn_tensor *t = in[i];
        if (!vn_tensor_requires_grad(t)) continue;
        float *analytic = malloc((size_t)t->numel * sizeof *analytic);
        memcpy(analytic, t->grad, (size_t)t->numel * sizeof *analytic);
        int64_t count = t->numel < max_checked ? t->numel : max_checked;
        vn_rng pick;
        vn_rng_seed(&pick, 0x5a3b1e, (uint64_t)i, 0);
        for (int64_t k = 0; k < count; k++) {
            int64_t j = t->numel <= max_checked ? k : (int64_t)vn_rng_below(&pick, (uint64_t)t->numel);
            float orig = t->data[j];
            double lp = 0, lm = 0;
            t->data[j] = (float)(orig + eps);
            double hp = (double)t->data[j] - orig;
            *vn_ctx_rng(ctx) = rng0;
            int rc1 = eval_loss(ctx, fwd, in, user, r, rn, &lp);
            t->data[j] = (float)(orig - eps);
            double hm = orig - (double)t->data[j];
            *vn_ctx_rng(ctx) = rng0;
            int rc2 = eval_loss(ctx, fwd, in, user, r, rn, &lm);
            t->data[j] = orig;
            if (rc1 || rc2) {
                fprintf(stderr, "%s: forward failed during the check\n", what);
                free(analytic);
                free(r);
                vn_ctx_destroy(ctx);
                return -1;
            }
            double numeric = (lp - lm) / (hp + hm);
            double diff = fabs(numeric - (double)analytic[j]);
            double scale = fabs(numeric) > 1.0 ? fabs(numeric) : 1.0;
            double e = diff / scale;
            if (isnan(e)) e = INFINITY;
            if (e > tol && reported < 8) {
                fprintf(stderr, "  %s: input %d element %lld: analytic %.7g, numeric %.7g\n", what,
                        i, (long long)j, analytic[j], numeric);
                reported++;
            }
            if (e > worst) worst = e;
        }
        free(analytic);
    }
    free(r);
    vn_ctx_destroy(ctx);
    return worst;
}

void vn_test_mkdtemp(char *buf, size_t len, const char *tag)
{
    const char *t = getenv("TMPDIR");
    if (!t || !t[0]) t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(buf, len, "%s/vn_%s_XXXXXX", t, tag);
    ck_assert_msg(mkdtemp(buf) != NULL, "mkdtemp %s failed", buf);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    remove(p);
    return 0;
}

void vn_test_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    fputs(text, f);
    fclose(f);
}

const char *vn_test_in_dir(const char *dir, const char *name)
{
    static char buf[4][1200];
    static int k;
    k = (k + 1) % 4;
    char copy[1200]; /* dir may be an earlier result */
    snprintf(copy, sizeof copy, "%s", dir);
    snprintf(buf[k], sizeof buf[k], "%s/%s", copy, name);
    return buf[k];
}

int vn_test_count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

void vn_test_rmtree(const char *path)
{
    if (path && path[0]) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int vn_test_run(Suite *s, bool fork)
{
    SRunner *sr = srunner_create(s);
    if (!fork) srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
