/* The CUDA backend as a module loaded on demand (autograd/backend.c): a CPU training step maps
 * no CUDA library and no backend module; asking for cuda without a usable module fails with
 * a message naming what is missing (the path tried, dlerror(), another build); and, through
 * a stand-in module whose "device" memory is host memory (fake_backend.c), tensors, contexts,
 * the op table, the optimizer and the EMA reach the device through the module's table.
 * Each test runs in its own process (the loader's state is per process). Runs in every
 * build, without a GPU. */
#include "vn_test.h"

#include "autograd/vn_ops.h"
#include "optim/vn_ema.h"
#include "optim/vn_optim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The first line of /proc/self/maps naming any of names, or "" when none does. */
static const char *mapped(const char *const *names, int n)
{
    static char hit[512];
    hit[0] = '\0';
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    while (!hit[0] && fgets(line, sizeof line, f))
        for (int i = 0; i < n; i++)
            if (strstr(line, names[i])) {
                snprintf(hit, sizeof hit, "%s", line);
                break;
            }
    fclose(f);
    return hit;
}

static const char *const cuda_libs[] = {"libcudart", "libcublas", "libcudnn", "libcuda.so",
                                        "libvanilla_cuda"};

/* One SGD step of y = x w on the CPU, with backward. */
static void cpu_training_step(void)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *w = vn_tensor_new(2, (int64_t[]){4, 3}, true);
    for (int i = 0; i < 12; i++) w->data[i] = 0.1f * (float)i;
    vn_tensor *x = vn_ctx_tensor(ctx, 2, (int64_t[]){2, 4});
    for (int i = 0; i < 8; i++) x->data[i] = (float)i - 3.0f;
    vn_tensor *y = vn_relu(ctx, vn_matmul(ctx, x, w));
    ck_assert_msg(y, "%s", vn_ctx_error(ctx));
    float seed[6] = {1, -1, 0.5f, 2, 1, 1};
    ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
    vn_optim_config cfg;
    vn_optim_config_init(&cfg, VN_OPTIM_SGD);
    vn_optim *opt = NULL;
    vn_error err = {0};
    ck_assert_int_eq(vn_optim_create(&opt, &cfg, 1, &w, (const char *const[]){"w"}, &err), VN_OK);
    float before = w->data[11];
    ck_assert_int_eq(vn_optim_step(opt, &err), VN_OK);
    ck_assert_float_ne(w->data[11], before);
    vn_optim_destroy(opt);
    vn_ctx_destroy(ctx);
    vn_tensor_free(w);
}

START_TEST(cpu_step_maps_no_cuda)
{
    cpu_training_step();
    ck_assert_int_eq(vn_device_check(VN_DEVICE_CPU, NULL, 0), VN_OK);
    const char *hit = mapped(cuda_libs, 5);
    ck_assert_msg(!hit[0], "a CPU step mapped %s", hit);
    /* The check itself can fail: libvanilla (or the test's static copy) is mapped. */
    const char *self[] = {"libvanilla", "test_backend"};
    ck_assert_msg(mapped(self, 2)[0], "/proc/self/maps shows neither libvanilla nor the test");
}
END_TEST

/* vn_device_check(cuda) fails; its message contains each of want (NULL-terminated); nothing
 * is placed on the device. */
static void expect_refused(const char *const *want)
{
    char why[512];
    ck_assert_int_ne(vn_device_check(VN_DEVICE_CUDA, why, sizeof why), VN_OK);
    printf("refused: %s\n", why);
    for (int i = 0; want[i]; i++)
        ck_assert_msg(strstr(why, want[i]), "'%s' lacks '%s'", why, want[i]);
    ck_assert_ptr_null(vn_ctx_create_on(VN_DEVICE_CUDA));
    vn_tensor *t = vn_tensor_new4(1, 1, 1, 3, true);
    t->data[2] = 7.0f;
    ck_assert_int_ne(vn_tensor_to_device(t, VN_DEVICE_CUDA), VN_OK);
    ck_assert_int_eq(t->device, VN_DEVICE_CPU);
    ck_assert_float_eq(t->data[2], 7.0f);
    ck_assert_int_ne(vn_device_sync(VN_DEVICE_CUDA), VN_OK);
    vn_tensor_free(t);
}

START_TEST(env_path_missing)
{
    setenv("VN_CUDA_PLUGIN", "/nonexistent/dir/libvanilla_cuda.so", 1);
    expect_refused((const char *const[]){"/nonexistent/dir/libvanilla_cuda.so",
                                         "does not exist", NULL});
    /* The failure is remembered: a later good path is not tried in this process. */
    setenv("VN_CUDA_PLUGIN", getenv("FAKE_BACKEND"), 1);
    expect_refused((const char *const[]){"/nonexistent/dir/libvanilla_cuda.so", NULL});
}
END_TEST

START_TEST(not_a_module)
{
    char path[] = "/tmp/vn_not_a_module_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "plain text\n", 11), 11);
    close(fd);
    setenv("VN_CUDA_PLUGIN", path, 1);
    expect_refused((const char *const[]){path, "cannot be loaded", NULL});
    unlink(path);
}
END_TEST

START_TEST(no_entry_symbol)
{
    setenv("VN_CUDA_PLUGIN", getenv("FAKE_BACKEND_NO_ENTRY"), 1);
    expect_refused((const char *const[]){getenv("FAKE_BACKEND_NO_ENTRY"),
                                         "not a backend module", "no vn__backend_entry",
                                         NULL});
}
END_TEST

START_TEST(other_abi)
{
    setenv("VN_CUDA_PLUGIN", getenv("FAKE_BACKEND_ABI"), 1);
    expect_refused((const char *const[]){getenv("FAKE_BACKEND_ABI"), "another build",
                                         "another backend ABI", NULL});
}
END_TEST

START_TEST(module_refuses_device)
{
    setenv("VN_CUDA_PLUGIN", getenv("FAKE_BACKEND"), 1);
    setenv("VN_FAKE_BACKEND_REFUSE", "no CUDA device visible (fake)", 1);
    expect_refused((const char *const[]){"no CUDA device visible (fake)", NULL});
}
END_TEST

/* Without VN_CUDA_PLUGIN: the module beside libvanilla (a build with it) or a clear reason
 * (the paths tried, or a build without the backend); never a crash. */
START_TEST(default_lookup)
{
    unsetenv("VN_CUDA_PLUGIN");
    char why[512];
    int rc = vn_device_check(VN_DEVICE_CUDA, why, sizeof why);
    printf("default lookup: %s\n", rc == VN_OK ? "a usable CUDA device" : why);
    if (rc != VN_OK)
        ck_assert_msg(strstr(why, "no CUDA device visible") ||
                          strstr(why, "this build has no CUDA backend") ||
                          strstr(why, "the CUDA backend is missing: no "),
                      "unclear reason: %s", why);
    if (strcmp(getenv("CUDA_PLUGIN_BUILT"), "1") == 0)
        ck_assert_msg(!strstr(why, "backend is missing"),
                      "the module of this build was not found: %s", why);
}
END_TEST

START_TEST(fake_device_paths)
{
    setenv("VN_CUDA_PLUGIN", getenv("FAKE_BACKEND"), 1);
    char why[512];
    ck_assert_msg(vn_device_check(VN_DEVICE_CUDA, why, sizeof why) == VN_OK, "%s", why);
    ck_assert_int_eq(vn_device_sync(VN_DEVICE_CUDA), VN_OK);
    vn_tensor *w = vn_tensor_new4(1, 1, 2, 2, true), *e = vn_tensor_new4(1, 1, 2, 2, false);
    for (int i = 0; i < 4; i++) w->data[i] = (float)i + 1.0f;
    ck_assert_int_eq(vn_tensor_to_device(w, VN_DEVICE_CUDA), VN_OK);
    ck_assert_int_eq(vn_tensor_to_device(e, VN_DEVICE_CUDA), VN_OK);
    ck_assert_int_eq(w->device, VN_DEVICE_CUDA);
    float h[4], back[4];
    ck_assert_int_eq(vn_tensor_read(w, h), VN_OK);
    ck_assert_float_eq(h[3], 4.0f);
    ck_assert_int_eq(vn_tensor_zero_grad(w), VN_OK);
    /* A context on the device: step memory from the module's pool; an op without a kernel
     * in the module's column fails with the op and the device named. */
    vn_ctx *ctx = vn_ctx_create_on(VN_DEVICE_CUDA);
    ck_assert_ptr_nonnull(ctx);
    vn_tensor *x = vn_ctx_tensor4(ctx, 1, 1, 2, 2);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_null(vn_relu(ctx, x));
    ck_assert_msg(strstr(vn_ctx_error(ctx), "no kernel for device cuda"), "%s", vn_ctx_error(ctx));
    vn_ctx_destroy(ctx);
    /* The optimizer and the EMA of device tensors go through the table. */
    vn_optim_config cfg;
    vn_optim_config_init(&cfg, VN_OPTIM_SGD);
    vn_optim *opt = NULL;
    vn_error err = {0};
    ck_assert_int_eq(vn_optim_create(&opt, &cfg, 1, &w, (const char *const[]){"w"}, &err), VN_OK);
    ck_assert_int_eq(vn_optim_step(opt, &err), VN_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "fake backend"), "%s", err.msg);
    vn_optim_destroy(opt);
    vn_ema *ema = NULL;
    ck_assert_int_eq(vn_ema_create(&ema, 0.5, 1, &e, &w, (const char *const[]){"w"}, NULL,
                                   &err), VN_OK);
    float twice[4] = {2, 4, 6, 8};
    ck_assert_int_eq(vn_tensor_write(w, twice), VN_OK);
    vn_ema_update(ema); /* e = 0.5 e + 0.5 w = 1.5 x the original */
    ck_assert_int_eq(vn_tensor_read(e, back), VN_OK);
    for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(back[i], 1.5f * ((float)i + 1.0f), 1e-6f);
    vn_ema_destroy(ema);
    ck_assert_int_eq(vn_tensor_to_device(w, VN_DEVICE_CPU), VN_OK);
    ck_assert_float_eq(w->data[3], 8.0f);
    vn_tensor_free(w);
    vn_tensor_free(e);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backend-module");
    TCase *tc = tcase_create("loader");
    tcase_add_test(tc, cpu_step_maps_no_cuda);
    tcase_add_test(tc, env_path_missing);
    tcase_add_test(tc, not_a_module);
    tcase_add_test(tc, no_entry_symbol);
    tcase_add_test(tc, other_abi);
    tcase_add_test(tc, module_refuses_device);
    tcase_add_test(tc, default_lookup);
    tcase_add_test(tc, fake_device_paths);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
