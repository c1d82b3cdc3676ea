/* The allocation-failure hook itself (no ck_* call may run while it is armed: Check is
 * linked statically and its own allocations are counted too), and sweeps over the core: every injected failure in a
 * safetensors round trip and in a small training graph gives a clean error (no crash, no
 * leak under ASan), and a retry after disarming succeeds. */
#include "vn_failalloc.h"
#include "vn_test.h"

#include <stdlib.h>
#include <string.h>

START_TEST(test_hook_counts_and_fails)
{
    vn_failalloc_arm(2, false);
    void *a = malloc(16);
    void *b = malloc(16);
    void *c = malloc(16);
    long counted = vn_failalloc_count();
    bool fired = vn_failalloc_disarm();
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(counted, 3);
    ck_assert(fired);
    free(a);
    free(c);
    vn_failalloc_arm(1, true);
    void *e = calloc(1, 8);
    char *s = strdup("x");
    fired = vn_failalloc_disarm();
    ck_assert_ptr_null(e);
    ck_assert_ptr_null(s);
    ck_assert(fired);
    void *d = malloc(8);
    ck_assert_ptr_nonnull(d);
    free(d);
}
END_TEST

static int st_round_trip(vn_error *err)
{
    float data[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    vn_st_writer *w = vn_st_writer_new();
    if (!w) return vn_error_set(err, VN_ERR_NOMEM, "writer");
    int rc = vn_st_add(w, "a.weight", VN_DTYPE_F32, 2, shape, data, err);
    if (rc == VN_OK) rc = vn_st_set_meta(w, "k", "v", err);
    void *buf = NULL;
    size_t len = 0;
    if (rc == VN_OK) rc = vn_st_serialize(w, VN_ST_CRC32, &buf, &len, err);
    vn_st_writer_free(w);
    if (rc != VN_OK) return rc;
    vn_st_file *f = NULL;
    rc = vn_st_open_memory(buf, len, "mem", &f, err);
    free(buf);
    if (rc != VN_OK) return rc;
    const vn_st_entry *e = vn_st_find(f, "a.weight");
    if (!e || memcmp(e->data, data, sizeof data) != 0) rc = vn_error_set(err, VN_ERR_FORMAT, "bad");
    vn_st_close(f);
    return rc;
}

START_TEST(test_sweep_safetensors)
{
    long n = 1;
    for (;; n++) {
        vn_error err = {0};
        vn_failalloc_arm(n, false);
        int rc = st_round_trip(&err);
        bool fired = vn_failalloc_disarm();
        if (!fired) {
            ck_assert_int_eq(rc, VN_OK);
            break;
        }
        ck_assert_msg(rc != VN_OK, "allocation %ld failed but the round trip reported success", n);
        ck_assert_msg(err.msg[0] != '\0', "allocation %ld: no message", n);
    }
    ck_assert_int_gt(n, 2);
}
END_TEST

static int small_step(void)
{
    vn_tensor *w = vn_tensor_new4(4, 1, 1, 3, true);
    vn_tensor *x = vn_tensor_new4(2, 5, 5, 3, false);
    vn_ctx *ctx = vn_ctx_create();
    int rc = VN_ERR_NOMEM;
    if (w && x && ctx) {
        vn_test_fill_uniform(w->data, w->numel, 1, -1, 1);
        vn_test_fill_uniform(x->data, x->numel, 2, -1, 1);
        int32_t labels[2] = {1, 3};
        vn_tensor *y = vn_conv2d(ctx, x, w, NULL, VN_CONV(1, 0, 1));
        y = vn_relu(ctx, y);
        y = vn_global_avg_pool(ctx, y);
        y = vn_flatten(ctx, y);
        vn_tensor *loss = vn_cross_entropy(ctx, y, labels, NULL, 0.1f);
        rc = loss ? vn_backward(ctx, loss) : vn_ctx_status(ctx);
        if (rc != VN_OK && vn_ctx_error(ctx)[0] == '\0') rc = 1; /* failed without a message */
    }
    vn_ctx_destroy(ctx);
    vn_tensor_free(w);
    vn_tensor_free(x);
    return rc;
}

START_TEST(test_sweep_training_graph)
{
    long n = 1;
    for (;; n++) {
        vn_failalloc_arm(n, false);
        int rc = small_step();
        bool fired = vn_failalloc_disarm();
        ck_assert_msg(rc != 1, "allocation %ld: failure without a message", n);
        if (!fired) {
            ck_assert_int_eq(rc, VN_OK);
            break;
        }
    }
    ck_assert_int_gt(n, 3);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("failalloc");
    TCase *tc = tcase_create("sweeps");
    tcase_add_test(tc, test_hook_counts_and_fails);
    tcase_add_test(tc, test_sweep_safetensors);
    tcase_add_test(tc, test_sweep_training_graph);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
