/* The stand-in device of test_train_device.sh (fake_backend.c built with FAKE_CPU_OPS, named
 * by VN_CUDA_PLUGIN) keeps its memory out of the host's reach, as a GPU's is: the device API
 * reaches it, an op runs on it, and a plain host read or write of a device pointer crashes.
 * So a host access left anywhere on the trainer's path fails that test instead of passing
 * unseen. Runs in every build. */
#include "vn_test.h"

#include <signal.h>

static vn_tensor *on_device(void)
{
    ck_assert_int_eq(vn_device_check(VN_DEVICE_CUDA, NULL, 0), VN_OK);
    vn_tensor *t = vn_tensor_new4(1, 1, 2, 4, true);
    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < 8; i++) t->data[i] = (float)i - 3.0f;
    ck_assert_int_eq(vn_tensor_to_device(t, VN_DEVICE_CUDA), VN_OK);
    return t;
}

START_TEST(device_api_and_ops_reach_it)
{
    vn_tensor *t = on_device();
    float back[8];
    ck_assert_int_eq(vn_tensor_read(t, back), VN_OK);
    for (int i = 0; i < 8; i++) ck_assert(back[i] == (float)i - 3.0f);
    vn_ctx *ctx = vn_ctx_create_on(VN_DEVICE_CUDA);
    vn_tensor *y = vn_relu(ctx, t);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->device, VN_DEVICE_CUDA);
    ck_assert_int_eq(vn_tensor_read(y, back), VN_OK);
    for (int i = 0; i < 8; i++) ck_assert(back[i] == (i < 3 ? 0.0f : (float)i - 3.0f));
    vn_ctx_destroy(ctx);
    vn_tensor_free(t);
}
END_TEST

START_TEST(host_read_crashes)
{
    vn_tensor *t = on_device();
    volatile float v = t->data[0];
    (void)v;
}
END_TEST

START_TEST(host_write_of_a_gradient_crashes)
{
    vn_tensor *t = on_device();
    t->grad[0] = 1.0f;
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fake-guard");
    TCase *tc = tcase_create("guard");
    tcase_add_test(tc, device_api_and_ops_reach_it);
    tcase_add_test_raise_signal(tc, host_read_crashes, SIGSEGV);
    tcase_add_test_raise_signal(tc, host_write_of_a_gradient_crashes, SIGSEGV);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
