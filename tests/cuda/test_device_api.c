/* The device API where no CUDA device is usable (every CI machine): the reasons it gives,
 * and that nothing changes when a move is refused. Where a device is visible, the same calls
 * must succeed instead. Runs in every build. */
#include "vn_test.h"

#include "train/vn_config.h"
#include "train/vn_trainer.h"

#include <stdlib.h>
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

/* The device collectives (NCCL on CUDA): without a device they are refused with a reason;
 * with one and NCCL installed, a communicator of one rank starts, its allreduce leaves the
 * values as they are (the sum over one rank), and it stops; the device's identity is known. */
START_TEST(device_collectives)
{
    char why[400];
    if (vn_device_check(VN_DEVICE_CUDA, why, sizeof why) != VN_OK) {
        char cpu[128];
        ck_assert_int_ne(vn_device_comm_available(VN_DEVICE_CUDA, why, sizeof why), VN_OK);
        ck_assert_msg(why[0] != '\0', "no reason given");
        ck_assert_int_ne(vn_device_comm_available(VN_DEVICE_CPU, cpu, sizeof cpu), VN_OK);
        printf("device collectives: none here (%s; %s)\n", why, cpu);
        return;
    }
    char uid[128];
    if (vn_device_uid(VN_DEVICE_CUDA, uid, sizeof uid) == VN_OK) /* the stand-in cannot say */
        printf("this process's GPU: %s\n", uid);
    if (vn_device_comm_available(VN_DEVICE_CUDA, why, sizeof why) != VN_OK) {
        printf("device collectives: %s\n", why);
        ck_assert_msg(strstr(why, "NCCL") || strstr(why, "has no collectives"),
                      "unclear reason: %s", why);
        return;
    }
    printf("device collectives: %s\n", why);
    size_t idn = vn_device_comm_id_size(VN_DEVICE_CUDA);
    ck_assert_uint_gt(idn, 0);
    unsigned char id[512] = {0};
    ck_assert_uint_le(idn, sizeof id);
    ck_assert_msg(vn_device_comm_id(VN_DEVICE_CUDA, id, why, sizeof why) == VN_OK, "%s", why);
    ck_assert_msg(vn_device_comm_init(VN_DEVICE_CUDA, id, 1, 0, why, sizeof why) == VN_OK, "%s",
                  why);
    vn_tensor *a = vn_tensor_new4(3, 5, 7, 11, true), *b = vn_tensor_new4(1, 1, 1, 1000, true);
    for (int64_t i = 0; i < a->numel; i++) a->data[i] = (float)i * 0.25f - 100.0f;
    for (int64_t i = 0; i < b->numel; i++) b->data[i] = 1.0f / (float)(i + 1);
    ck_assert_int_eq(vn_tensor_to_device(a, VN_DEVICE_CUDA), VN_OK);
    ck_assert_int_eq(vn_tensor_to_device(b, VN_DEVICE_CUDA), VN_OK);
    float *bufs[2] = {a->data, b->data};
    int64_t counts[2] = {a->numel, b->numel};
    ck_assert_msg(vn_device_comm_allreduce(VN_DEVICE_CUDA, bufs, counts, 2, why, sizeof why) ==
                      VN_OK, "%s", why);
    ck_assert_msg(vn_device_comm_wait(VN_DEVICE_CUDA, 30, why, sizeof why) == VN_OK, "%s", why);
    float *ha = malloc((size_t)a->numel * sizeof *ha), *hb = malloc((size_t)b->numel * sizeof *hb);
    ck_assert_int_eq(vn_tensor_read(a, ha), VN_OK);
    ck_assert_int_eq(vn_tensor_read(b, hb), VN_OK);
    for (int64_t i = 0; i < a->numel; i++) ck_assert_float_eq(ha[i], (float)i * 0.25f - 100.0f);
    for (int64_t i = 0; i < b->numel; i++) ck_assert_float_eq(hb[i], 1.0f / (float)(i + 1));
    printf("device collectives: a communicator of 1 rank summed %lld + %lld floats in place\n",
           (long long)a->numel, (long long)b->numel);
    vn_device_comm_destroy(VN_DEVICE_CUDA);
    ck_assert_int_ne(vn_device_comm_allreduce(VN_DEVICE_CUDA, bufs, counts, 2, why, sizeof why),
                     VN_OK); /* no communicator any more */
    free(ha);
    free(hb);
    vn_tensor_free(a);
    vn_tensor_free(b);
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
    tcase_add_test(tc, device_collectives);
    tcase_add_test(tc, train_device_key);
    suite_add_tcase(s, tc);
    return vn_test_run(s, false);
}
