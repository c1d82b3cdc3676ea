/* The device API where no CUDA device is usable (every CI machine): the reasons it gives,
 * and that nothing changes when a move is refused. Where a device is visible, the same calls
 * must succeed instead. Runs in every build. */
#include "vn_test.h"

#include "train/vn_config.h"
#include "train/vn_trainer.h"

#include <string.h>

START_TEST(parse_names)
{
    vn_device d;
    ck_assert_int_eq(vn_device_parse("cpu", &d), VN_OK);
    ck_assert_int_eq(d, VN_DEVICE_CPU);
    ck_assert_int_eq(vn_device_parse("cuda", &d), VN_OK);
    ck_assert_int_eq(d, VN_DEVICE_CUDA);
    ck_assert_int_ne(vn_device_parse("gpu", &d), VN_OK);
    ck_assert_int_ne(vn_device_parse(NULL, &d), VN_OK);
    ck_assert_int_eq(vn_device_check(VN_DEVICE_CPU, NULL, 0), VN_OK);
}
END_TEST

START_TEST(cuda_absent_or_present)
{
    char why[256];
    int rc = vn_device_check(VN_DEVICE_CUDA, why, sizeof why);
    vn_tensor *t = vn_tensor_new4(2, 3, 1, 1, true);
    for (int i = 0; i < 6; i++) t->data[i] = (float)i;
    vn_ctx *ctx = vn_ctx_create_on(VN_DEVICE_CUDA);
    if (rc != VN_OK) {
        printf("no CUDA here: %s\n", why);
        ck_assert_msg(strstr(why, "this build has no CUDA backend") ||
                          strstr(why, "no CUDA device visible"), "unclear reason: %s", why);
        ck_assert_ptr_null(ctx);
        ck_assert_int_ne(vn_tensor_to_device(t, VN_DEVICE_CUDA), VN_OK);
        ck_assert_int_eq(t->device, VN_DEVICE_CPU);
        ck_assert_float_eq(t->data[5], 5.0f);
        ck_assert_int_ne(vn_device_sync(VN_DEVICE_CUDA), VN_OK);
    } else {
        ck_assert_ptr_nonnull(ctx);
        ck_assert_int_eq(vn_tensor_to_device(t, VN_DEVICE_CUDA), VN_OK);
        float back[6];
        ck_assert_int_eq(vn_tensor_read(t, back), VN_OK);
        ck_assert_float_eq(back[5], 5.0f);
    }
    vn_ctx_destroy(ctx);
    vn_tensor_free(t);
    /* The CPU path of the same calls. */
    vn_tensor *c = vn_tensor_new4(1, 1, 1, 4, false);
    float h[4] = {1, 2, 3, 4}, o[4];
    ck_assert_int_eq(vn_tensor_write(c, h), VN_OK);
    ck_assert_int_eq(vn_tensor_read(c, o), VN_OK);
    ck_assert_mem_eq(o, h, sizeof h);
    ck_assert_int_eq(vn_tensor_to_device(c, VN_DEVICE_CPU), VN_OK);
    ck_assert_int_eq(vn_device_sync(VN_DEVICE_CPU), VN_OK);
    vn_tensor_free(c);
}
END_TEST

START_TEST(train_device_key)
{
    vn_config cfg;
    vn_error err = {0};
    vn_config_init(&cfg);
    ck_assert_int_eq(cfg.train.device, VN_CONFIG_DEVICE_CPU);
    vn_device d = VN_DEVICE_CUDA;
    ck_assert_int_eq(vn_train_device_open(&cfg, 1, 0, &d, NULL, &err), VN_OK);
    ck_assert_int_eq(d, VN_DEVICE_CPU);
    cfg.train.device = VN_CONFIG_DEVICE_CUDA;
    if (vn_device_check(VN_DEVICE_CUDA, NULL, 0) == VN_OK) {
        /* A usable device: the run goes there, data-parallel ones too, but not with sync BN. */
        ck_assert_int_eq(vn_train_device_open(&cfg, 1, 0, &d, NULL, &err), VN_OK);
        ck_assert_int_eq(d, VN_DEVICE_CUDA);
        int index = -1;
        ck_assert_int_eq(vn_train_device_open(&cfg, 2, 1, &d, &index, &err), VN_OK);
        ck_assert_int_ge(index, 0);
        cfg.model.sync_bn = true;
        ck_assert_int_ne(vn_train_device_open(&cfg, 2, 1, &d, &index, &err), VN_OK);
        ck_assert_msg(strstr(err.msg, "model.sync_bn"), "%s", err.msg);
        cfg.model.sync_bn = false;
    } else {
        ck_assert_int_ne(vn_train_device_open(&cfg, 1, 0, &d, NULL, &err), VN_OK);
        ck_assert_int_eq(d, VN_DEVICE_CPU);
    }
    printf("train.device cuda: %s\n", err.msg);
    ck_assert_msg(strstr(err.msg, "train.device: cuda: "), "%s", err.msg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("device-api");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, parse_names);
    tcase_add_test(tc, cuda_absent_or_present);
    tcase_add_test(tc, train_device_key);
    suite_add_tcase(s, tc);
    return vn_test_run(s, false);
}
