/* The depthwise conv's 16-float (AVX-512) kernels give the bytes of its 8-float ones: output,
 * input gradient (fresh and accumulated onto another reader's), weight and bias gradients,
 * plain and of relu(x) (vn_conv2d_relu), on 1 and 2 threads, for kernels 3, 5, 7 and 9,
 * strides 1 and 2, rows long enough for the sliding kernels and short ones (the 7x7, 3x3 and
 * 1x1 images of the Fashion-MNIST model), outputs large enough for the streaming stores, and
 * channel counts of whole 16-channel blocks, a block of 8 and a plain tail. In a build without AVX-512 both runs take the same kernels
 * and the test says so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vn_test.h"
#include "autograd/vn_testing.h"

typedef struct dcase {
    int64_t n, h, w, c;
    int k, stride;
    bool bias, relu;
} dcase;

static const dcase cases[] = {
    {2, 20, 20, 48, 7, 1, true, false}, /* sliding kernels (8 + 8 + 4 outputs), 3 blocks */
    {2, 13, 13, 24, 3, 1, false, true}, /* 16 + 8 channels, k 3 */
    {2, 11, 17, 40, 5, 1, true, true},  /* k 5, 16 + 16 + 8 */
    {3, 15, 15, 40, 3, 2, true, false}, /* stride 2: tiles, gathered dx, weight-gradient taps */
    {2, 12, 12, 32, 9, 1, false, false}, /* k 9: no sliding kernel */
    {8, 7, 7, 64, 7, 1, true, true},    /* the Fashion-MNIST model's 7x7, 3x3 and 1x1 */
    {8, 3, 3, 128, 7, 1, true, true},
    {8, 1, 1, 96, 7, 1, true, true},
    {2, 9, 9, 20, 7, 1, true, false},   /* 16 + a plain tail of 4 */
    {2, 64, 64, 520, 7, 1, true, false}, /* 17 MB out: staged rows and streaming stores */
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* Forward and backward of one conv (with a second reader of its input, so that dx also
 * accumulates), everything in one buffer. */
static float *run(const dcase *d, bool wide, int threads, int64_t *len)
{
    vn_testing_dw_wide(wide);
    vn_set_threads(threads);
    vn_tensor *x = vn_tensor_new4(d->n, d->h, d->w, d->c, true);
    vn_tensor *w = vn_tensor_new4(d->c, d->k, d->k, 1, true);
    vn_tensor *b = d->bias ? vn_tensor_new(1, &d->c, true) : NULL;
    vn_test_fill_uniform(x->data, x->numel, 61, -1.0f, 1.0f);
    for (int64_t i = 0; i < x->numel; i += 9) x->data[i] = 0.0f;
    for (int64_t i = 4; i < x->numel; i += 13) x->data[i] = -0.0f;
    vn_test_fill_uniform(w->data, w->numel, 62, -0.5f, 0.5f);
    if (b) vn_test_fill_uniform(b->data, d->c, 63, -0.2f, 0.2f);
    vn_ctx *ctx = vn_ctx_create();
    ck_assert_ptr_nonnull(ctx);
    vn_conv_params p = {d->stride, d->stride, d->k / 2, d->k / 2, (int)d->c};
    vn_tensor *xs = vn_scale(ctx, x, 1.0f);
    ck_assert_msg(xs != NULL, "%s", vn_ctx_error(ctx));
    vn_tensor *y = d->relu ? vn_conv2d_relu(ctx, xs, w, b, p) : vn_conv2d(ctx, xs, w, b, p);
    ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
    vn_tensor *ys = vn_global_avg_pool(ctx, y), *s = vn_global_avg_pool(ctx, xs);
    ck_assert_msg(ys && s, "%s", vn_ctx_error(ctx));
    vn_tensor *out = vn_add(ctx, ys, s);
    ck_assert_msg(out != NULL, "%s", vn_ctx_error(ctx));
    *len = y->numel + x->numel + w->numel + (b ? d->c : 0);
    float *r = malloc((size_t)*len * sizeof *r), *o = r;
    memcpy(o, y->data, (size_t)y->numel * sizeof(float)), o += y->numel;
    float *seed = malloc((size_t)out->numel * sizeof *seed);
    vn_test_fill_uniform(seed, out->numel, 64, -1.0f, 1.0f);
    ck_assert_int_eq(vn_backward_with(ctx, out, seed), VN_OK);
    memcpy(o, x->grad, (size_t)x->numel * sizeof(float)), o += x->numel;
    memcpy(o, w->grad, (size_t)w->numel * sizeof(float)), o += w->numel;
    if (b) memcpy(o, b->grad, (size_t)d->c * sizeof(float));
    free(seed);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x), vn_tensor_free(w), vn_tensor_free(b);
    vn_testing_dw_wide(true);
    vn_set_threads(0);
    return r;
}

START_TEST(wide_same_bytes)
{
    const dcase *d = &cases[_i / 2];
    int threads = 1 + _i % 2;
    int64_t l0, l1;
    float *narrow = run(d, false, threads, &l0);
    float *wide = run(d, true, threads, &l1);
    ck_assert_int_eq(l0, l1);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < l0; i++)
        if (memcmp(&narrow[i], &wide[i], sizeof(float))) bad += (first < 0 ? (first = i) : 0, 1);
    ck_assert_msg(bad == 0, "case %d (%lldx%lldx%lldx%lld, k %d, stride %d), %d threads: %lld "
                  "of %lld floats differ (first at %lld)", _i / 2, (long long)d->n,
                  (long long)d->h, (long long)d->w, (long long)d->c, d->k, d->stride, threads,
                  (long long)bad, (long long)l0, (long long)first);
    free(narrow), free(wide);
}
END_TEST

int main(int argc, char **argv)
{
    (void)argc;
    vn_runtime_setup(argv);
#if !defined(__AVX512F__)
    printf("test_dw_wide: this build has no 16-float kernels; both runs take the 8-float ones\n");
#endif
    Suite *s = suite_create("dw-wide");
    TCase *tc = tcase_create("dw-wide");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, wide_same_bytes, 0, N_CASES * 2);
    suite_add_tcase(s, tc);
    return vn_test_run(s, false);
}
