/* Official weights (issue 14): .pth import against PyTorch's tensors, refused files, plain
 * state_dicts opened with a config (logits equal PyTorch's), mismatch reports and the
 * fine-tuning load of model.init. Fixtures: tests/reference/gen_weights.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/vn_fs.h"
#include "io/vn_testing.h"
#include "train/vn_trainer.h"
#include "vn_test.h"

#define W(name) "weights/" name

/* Imports a .pth fixture into an in-memory safetensors file. */
static int import_mem(const char *fixture, const char *key, vn_st_file **out, vn_pth_stats *stats,
                      vn_error *err)
{
    vn_pth *p = NULL;
    *out = NULL;
    int rc = vn_pth_read(vn_test_fixture_path(fixture), &p, err);
    if (rc != VN_OK) return rc;
    vn_st_writer *w = vn_st_writer_new();
    rc = vn_pth_state_dict(p, key, w, stats, err);
    void *buf = NULL;
    size_t len = 0;
    if (rc == VN_OK) rc = vn_st_serialize(w, 0, &buf, &len, err);
    if (rc == VN_OK) rc = vn_st_open_memory(buf, len, fixture, out, err);
    free(buf);
    vn_st_writer_free(w);
    vn_pth_free(p);
    return rc;
}

/* Every tensor of ref is in got with the same dtype, shape and bytes (and nothing else). */
static void assert_same_tensors(const vn_st_file *got, const char *ref_fixture)
{
    vn_st_file *ref = vn_test_fixture(ref_fixture);
    ck_assert_int_eq(vn_st_count(got), vn_st_count(ref));
    for (int i = 0; i < vn_st_count(ref); i++) {
        const vn_st_entry *r = vn_st_at(ref, i), *g = vn_st_find(got, r->name);
        ck_assert_msg(g != NULL, "%s: '%s' missing after import", ref_fixture, r->name);
        ck_assert_msg(g->dtype == r->dtype && g->ndim == r->ndim && g->nbytes == r->nbytes,
                      "'%s': %s/%d dims imported, %s/%d in PyTorch", r->name, vn_dtype_name(g->dtype),
                      g->ndim, vn_dtype_name(r->dtype), r->ndim);
        for (int d = 0; d < r->ndim; d++) ck_assert_int_eq(g->shape[d], r->shape[d]);
        ck_assert_msg(memcmp(g->data, r->data, r->nbytes) == 0, "'%s': values differ from PyTorch's", r->name);
    }
    vn_st_close(ref);
}

START_TEST(test_pth_imports_equal_pytorch)
{
    static const struct { const char *pth, *key, *ref, *used; int converted, stripped, views; } cases[] = {
        {"sd_train.pth", NULL, "plain_train.safetensors", "", 0, 0, 0},
        {"sd_deploy.pth", NULL, "plain_deploy.safetensors", "", 0, 0, 0},
        {"ckpt.pth", NULL, "plain_train.safetensors", "model", 0, 0, 0},
        {"ckpt.pth", "model_ema", "plain_ema.safetensors", "model_ema", 0, 0, 0},
        {"module.pth", NULL, "plain_train.safetensors", "state_dict", 0, 69, 0},
        {"half.pth", "model", "half_ref.safetensors", "model", 59, 0, 0},
        {"views.pth", NULL, "plain_train.safetensors", "", 1, 0, 2},
        {"legacy.pth", NULL, "plain_train.safetensors", "", 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char fx[128], ref[128];
        snprintf(fx, sizeof fx, W("%s"), cases[i].pth);
        snprintf(ref, sizeof ref, W("%s"), cases[i].ref);
        vn_st_file *f = NULL;
        vn_pth_stats s;
        vn_error err = {0};
        ck_assert_msg(import_mem(fx, cases[i].key, &f, &s, &err) == VN_OK, "%s: %s", fx, err.msg);
        ck_assert_str_eq(s.key, cases[i].used);
        ck_assert_int_eq(s.n_converted, cases[i].converted);
        ck_assert_int_eq(s.n_stripped, cases[i].stripped);
        ck_assert_int_eq(s.n_views, cases[i].views);
        assert_same_tensors(f, ref);
        vn_st_close(f);
    }
}
END_TEST

START_TEST(test_pth_refusals_name_file_and_cause)
{
    static const struct { const char *pth, *cause; } cases[] = {
        {"evil.pth", "'posix.system'"},
        {"truncated.pth", "not a readable torch.save zip archive"},
        {"nostorage.pth", "storage record 'sd_train/data/3' is missing"},
        {"badshape.pth", "storage record 'data/0' holds 1528 bytes"},
        {"expected.safetensors", "not a torch.save file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char fx[128];
        snprintf(fx, sizeof fx, W("%s"), cases[i].pth);
        vn_pth *p = NULL;
        vn_error err = {0};
        ck_assert_int_ne(vn_pth_read(vn_test_fixture_path(fx), &p, &err), VN_OK);
        ck_assert_ptr_null(p);
        ck_assert_msg(strstr(err.msg, cases[i].pth) && strstr(err.msg, cases[i].cause),
                      "%s: message '%s' lacks the file or '%s'", fx, err.msg, cases[i].cause);
    }
    /* Keys: a missing one lists what the file holds; a non-tensor entry is named. */
    vn_st_file *f = NULL;
    vn_error err = {0};
    ck_assert_int_ne(import_mem(W("ckpt.pth"), "nope", &f, NULL, &err), VN_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "'model_ema'"));
    ck_assert_int_ne(import_mem(W("ckpt.pth"), "optimizer", &f, NULL, &err), VN_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "'state' in state_dict 'optimizer' is a dict"));
}
END_TEST

/* Damaged copies of a good file never crash the reader (every prefix, and byte flips). */
START_TEST(test_pth_damage_never_crashes)
{
    for (int file = 0; file < 2; file++) {
    uint8_t *buf = NULL;
    size_t len = 0;
    ck_assert_int_eq(vn_read_file(vn_test_fixture_path(file ? W("legacy.pth") : W("sd_deploy.pth")), &buf,
                                  &len, NULL), VN_OK);
    for (size_t cut = 0; cut < len; cut += 97) {
        vn_pth *p = NULL;
        if (vn_pth_read_memory(buf, cut, "cut", &p, NULL) == VN_OK) vn_pth_free(p);
    }
    vn_rng rng;
    vn_rng_seed(&rng, 1, 0, 0);
    for (int k = 0; k < 300; k++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, buf, len);
        for (int j = 0; j < 4; j++) copy[vn_rng_u64(&rng) % len] ^= (uint8_t)(1 + vn_rng_u64(&rng) % 255);
        vn_pth *p = NULL;
        if (vn_pth_read_memory(copy, len, "flip", &p, NULL) == VN_OK) {
            vn_st_writer *w = vn_st_writer_new();
            vn_pth_state_dict(p, NULL, w, NULL, NULL);
            vn_st_writer_free(w);
            vn_pth_free(p);
        }
        free(copy);
    }
    free(buf);
    }
}
END_TEST

static void load_config(vn_config *cfg)
{
    vn_error err = {0};
    vn_config_init(cfg);
    ck_assert_msg(vn_config_load_file(cfg, vn_test_fixture_path(W("config.yaml")), &err) == VN_OK, "%s", err.msg);
}

/* Opens a plain state_dict with the fixture config and compares its logits with PyTorch's. */
static void check_logits(const char *path_in, const char *want_name, bool want_deploy)
{
    char path[512]; /* vn_test_fixture_path's buffer is reused */
    snprintf(path, sizeof path, "%s", path_in);
    vn_config cfg;
    load_config(&cfg);
    vn_vanillanet *m = NULL;
    vn_ckpt_info info;
    vn_error err = {0};
    ck_assert_msg(vn_open_model_cfg(path, -1, &cfg, &m, &info, &err) == VN_OK, "%s", err.msg);
    ck_assert(info.plain || !want_deploy || info.deploy);
    ck_assert_int_eq(info.deploy, want_deploy);
    ck_assert_int_eq(m->cfg.num_classes, 5);
    ck_assert_int_eq(info.n_classes, 5);
    ck_assert_str_eq(info.class_names[4], "4");
    ck_assert_int_eq(info.input_size, 32);
    vn_st_file *ex = vn_test_fixture(W("expected.safetensors"));
    vn_tensor *x = vn_test_tensor(ex, "x", false);
    vn_ctx *ctx = vn_ctx_create();
    vn_ctx_set_grad(ctx, false);
    vn_tensor *y = vn_vanillanet_forward(ctx, m, x);
    ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
    const float *want = vn_test_f32(ex, want_name, y->numel);
    double rel = vn_test_rel_err(y->data, want, y->numel);
    ck_assert_msg(rel <= 1e-5, "%s: logits differ from PyTorch's by %g relative", path, rel);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_st_close(ex);
    vn_vanillanet_destroy(m);
    vn_ckpt_info_free(&info);
}

START_TEST(test_plain_state_dicts_give_pytorch_logits)
{
    check_logits(vn_test_fixture_path(W("plain_train.safetensors")), "logits_train", false);
    check_logits(vn_test_fixture_path(W("plain_deploy.safetensors")), "logits_deploy", true);
    check_logits(vn_test_fixture_path(W("plain_ema.safetensors")), "logits_ema", false);
    /* Imported .pth files: the checkpoint's EMA, the float16 file (against PyTorch's model with
     * the same float16 weights), the DataParallel one. */
    char dir[256], path[512];
    vn_test_mkdtemp(dir, sizeof dir, "pth");
    snprintf(path, sizeof path, "%s/ema.safetensors", dir);
    vn_pth_import_result res;
    vn_error err = {0};
    ck_assert_msg(vn_import_pth(vn_test_fixture_path(W("ckpt.pth")), "model_ema", NULL, path, &res, &err) == VN_OK,
                  "%s", err.msg);
    check_logits(path, "logits_ema", false);
    snprintf(path, sizeof path, "%s/half.safetensors", dir);
    ck_assert_int_eq(vn_import_pth(vn_test_fixture_path(W("half.pth")), NULL, NULL, path, &res, &err), VN_OK);
    check_logits(path, "logits_half", false);
    snprintf(path, sizeof path, "%s/module.safetensors", dir);
    ck_assert_int_eq(vn_import_pth(vn_test_fixture_path(W("module.pth")), NULL, NULL, path, &res, &err), VN_OK);
    check_logits(path, "logits_train", false);
    /* With a config the file describes itself: opens without one. */
    vn_config cfg;
    load_config(&cfg);
    snprintf(path, sizeof path, "%s/deploy.safetensors", dir);
    ck_assert_int_eq(vn_import_pth(vn_test_fixture_path(W("sd_deploy.pth")), NULL, &cfg, path, &res, &err), VN_OK);
    ck_assert(res.checked && res.deploy && res.num_classes == 5);
    vn_vanillanet *m = NULL;
    vn_ckpt_info info;
    ck_assert_msg(vn_open_model(path, -1, &m, &info, &err) == VN_OK, "%s", err.msg);
    ck_assert(!info.plain && info.has_data && info.input_size == 32 && m->cfg.num_classes == 5);
    /* No class names stored (a .pth has none): eval takes a folder's sorted names. */
    ck_assert(info.n_classes == 0 && !info.class_names);
    vn_vanillanet_destroy(m);
    vn_ckpt_info_free(&info);
    vn_test_rmtree(dir);
}
END_TEST

START_TEST(test_mismatches_reported_by_key)
{
    vn_config cfg;
    load_config(&cfg);
    vn_vanillanet *m = NULL;
    vn_ckpt_info info;
    vn_error err = {0};
    char plain[512];
    snprintf(plain, sizeof plain, "%s", vn_test_fixture_path(W("plain_train.safetensors")));
    /* Without a config a plain file is refused with a hint. */
    ck_assert_int_ne(vn_open_model(plain, -1, &m, &info, &err), VN_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "--config"));
    /* Another width of the last stage: every wrong shape by key with both shapes. */
    ck_assert_int_eq(vn_config_set(&cfg, "model.dims=[8, 16, 32]", &err), VN_OK);
    ck_assert_int_ne(vn_open_model_cfg(plain, -1, &cfg, &m, &info, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "12 wrong shapes") &&
                  strstr(err.msg, "'stages.1.conv2.0.weight' is F32 [24, 16, 1, 1] in the file, F32 [32, 16, 1, 1] in the model") &&
                  strstr(err.msg, "widths [8, 16, 24]"), "%s", err.msg);
    /* A released variant: its name is suggested; missing and unexpected keys counted. */
    load_config(&cfg);
    ck_assert_int_eq(vn_config_set(&cfg, "model.strides=[2, 2, 2]", &err), VN_OK);
    ck_assert_int_eq(vn_config_set(&cfg, "model.dims=[8, 16, 24, 24]", &err), VN_OK);
    ck_assert_int_ne(vn_open_model_cfg(plain, -1, &cfg, &m, &info, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "missing: 'stages.2.conv1.0.weight'"), "%s", err.msg);
    /* Too few classes in the config. */
    load_config(&cfg);
    ck_assert_int_eq(vn_config_set(&cfg, "model.num_classes=3", &err), VN_OK);
    ck_assert_int_ne(vn_open_model_cfg(plain, -1, &cfg, &m, &info, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "8 wrong shapes ('cls1.2.weight' is F32 [5, 24, 1, 1] in the file, F32 [3, 24, 1, 1]"), "%s", err.msg);
    /* Not a VanillaNet at all. */
    load_config(&cfg);
    ck_assert_int_ne(vn_open_model_cfg(vn_test_fixture_path(W("expected.safetensors")), -1, &cfg, &m, &info, &err), VN_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a VanillaNet state_dict"));
}
END_TEST

/* The fixtures' model with 2 classes (cfg and mc receive its config), initialised from seed 3. */
static vn_vanillanet *two_class_model(vn_config *cfg, vn_vanillanet_config *mc, bool deploy)
{
    vn_error err = {0};
    load_config(cfg);
    ck_assert_int_eq(vn_config_set(cfg, "model.num_classes=2", &err), VN_OK);
    ck_assert_int_eq(vn_build_model_config(cfg, 2, mc, &err), VN_OK);
    vn_vanillanet *m = NULL;
    ck_assert_int_eq(vn_vanillanet_create(mc, deploy, &m, &err), VN_OK);
    vn_vanillanet_init(m, 3);
    return m;
}

START_TEST(test_finetune_loads_what_fits)
{
    vn_config cfg;
    vn_vanillanet_config mc;
    vn_error err = {0};
    vn_vanillanet *m = two_class_model(&cfg, &mc, false);
    char plain[512];
    snprintf(plain, sizeof plain, "%s", vn_test_fixture_path(W("plain_train.safetensors")));
    ck_assert_msg(vn_model_init_from(m, plain, &err) == VN_OK, "%s", err.msg);
    vn_st_file *f = vn_test_fixture(W("plain_train.safetensors"));
    int loaded = 0, fresh = 0;
    for (int i = 0; i < m->state.n; i++) {
        const vn_state_item *e = &m->state.items[i];
        if (e->kind == VN_STATE_COUNT) continue;
        const vn_st_entry *fe = vn_st_find(f, e->name);
        bool head = strncmp(e->name, "cls", 3) == 0;
        if (head && fe->numel != e->tensor->numel) {
            fresh++;
            continue;
        }
        ck_assert_int_eq(fe->numel, e->tensor->numel);
        if (e->tensor->ndim != 4) {
            ck_assert_msg(memcmp(fe->data, e->tensor->data, fe->nbytes) == 0, "'%s' not loaded", e->name);
            loaded++;
        }
    }
    ck_assert_int_gt(loaded, 20);
    ck_assert_int_eq(fresh, 8); /* cls1.2.{weight,bias}, cls1.3.{4 BN tensors}, cls2.0.{weight,bias} */
    vn_st_close(f);
    /* A deploy-form file cannot start a training-form model; another width is an error. */
    ck_assert_int_ne(vn_model_init_from(m, vn_test_fixture_path(W("plain_deploy.safetensors")), &err), VN_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "deploy form"));
    vn_vanillanet_destroy(m);
    ck_assert_int_eq(vn_config_set(&cfg, "model.dims=[8, 16, 32]", &err), VN_OK);
    ck_assert_int_eq(vn_build_model_config(&cfg, 2, &mc, &err), VN_OK);
    ck_assert_int_eq(vn_vanillanet_create(&mc, false, &m, &err), VN_OK);
    ck_assert_int_ne(vn_model_init_from(m, plain, &err), VN_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "wrong shapes"));
    vn_vanillanet_destroy(m);
}
END_TEST

/* ONNX metadata that JSON cannot hold is an error naming it, never a shortened list. */
START_TEST(test_onnx_metadata_refusals)
{
    vn_config cfg;
    vn_vanillanet_config mc;
    vn_error err = {0};
    vn_vanillanet *m = two_class_model(&cfg, &mc, true);
    char dir[256], path[300];
    vn_test_mkdtemp(dir, sizeof dir, "onnxmeta");
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    char n0[] = "shirt", n1[] = "caf\xe9"; /* Latin-1, not UTF-8 */
    char *names[2] = {n0, n1};
    vn_ckpt_info info = {0};
    info.class_names = names;
    info.n_classes = 2;
    ck_assert_int_eq(vn_export_onnx(m, &info, 32, path, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "class 1's name is not valid UTF-8"), "%s", err.msg);
    n1[3] = 'e';
    info.has_data = true;
    info.mean[0] = info.mean[1] = info.mean[2] = NAN;
    info.std[0] = info.std[1] = info.std[2] = 1;
    ck_assert_int_eq(vn_export_onnx(m, &info, 32, path, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "must be finite"), "%s", err.msg);
    info.mean[0] = info.mean[1] = info.mean[2] = 0.5f;
    ck_assert_msg(vn_export_onnx(m, &info, 32, path, &err) == VN_OK, "%s", err.msg);
    vn_vanillanet_destroy(m);
    vn_test_rmtree(dir);
}
END_TEST

/* Hand-made pickles through the unpickler alone: refusals name the global or opcode. */
static int unpickle(const char *bytes, size_t len, vn_error *err)
{
    vn__pk_arena *a = NULL;
    vn__pk_value *root = NULL;
    int rc = vn__pk_load((const uint8_t *)bytes, len, "t.pkl", NULL, NULL, &a, &root, err);
    vn__pk_arena_free(a);
    return rc;
}

START_TEST(test_unpickler_edges)
{
#define PK(lit) lit, sizeof lit - 1
    static const struct { const char *bytes; size_t len; const char *msg; } bad[] = {
        {PK("\x80\x02" "cos\nsystem\n" "N\x85R."), "'os.system'"},
        {PK("\x80\x04\x8c\x08" "builtins" "\x8c\x04" "eval" "\x93."), "'builtins.eval'"},
        {PK("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n" ")R."), "too few arguments"},
        {PK("\x80\x02h\x05."), "memo fetch of an unset index"},
        {PK("\x80\x02" "(I1\n."), "opcode 0x49"},
        {PK("\x80\x02X\xff\x00\x00\x00" "ab."), "longer than the data"},
        {PK("\x80\x02]K\x01K\x02s."), "SETITEM(S) without a dict"},
        {PK("\x80\x02" "N"), "no STOP"},
        {PK("\x80\x02" "NN."), "not one value"},
        {PK("\x80\x02" "(."), "not one value"},
        {PK("\x80\x02" "ctorch\nFloatStorage\n)R."), "not callable"},
        {PK("\x80\x02(X\x07\x00\x00\x00" "storage" "ctorch\nFloatStorage\n" "X\x01\x00\x00\x00" "0"
            "X\x03\x00\x00\x00" "cpu" "K\x04tQ."), "outside a .pth archive"},
        {PK("\x03"), "not a pickle of protocol 2 to 5"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        vn_error err = {0};
        ck_assert_msg(unpickle(bad[i].bytes, bad[i].len, &err) != VN_OK, "case %zu accepted", i);
        ck_assert_msg(strstr(err.msg, "t.pkl") && strstr(err.msg, bad[i].msg), "case %zu: '%s' lacks '%s'",
                      i, err.msg, bad[i].msg);
    }
    /* What state_dicts use: OrderedDict from pairs, nested dicts, Namespace with BUILD,
     * LONG1, BINFLOAT, tuples, memo. */
    static const char good[] =
        "\x80\x02}q\x00(X\x01\x00\x00\x00" "a" "ccollections\nOrderedDict\n" "]K\x01K\x02\x86" "a" "\x85R"
        "X\x01\x00\x00\x00" "b" "cargparse\nNamespace\n)\x81}X\x02\x00\x00\x00" "lr"
        "G?\x50\x62\x4d\xd2\xf1\xa9\xfc" "sb"
        "X\x01\x00\x00\x00" "c" "\x8a\x02\x00\x80" "X\x01\x00\x00\x00" "d" "h\x00" "u.";
    vn__pk_arena *a = NULL;
    vn__pk_value *root = NULL;
    vn_error err = {0};
    ck_assert_msg(vn__pk_load((const uint8_t *)good, sizeof good - 1, "good", NULL, NULL, &a, &root, &err) == VN_OK,
                  "%s", err.msg);
    ck_assert_int_eq(root->kind, VN__PK_DICT);
    vn__pk_value *od = vn__pk_dict_get(root, "a"), *ns = vn__pk_dict_get(root, "b"), *c = vn__pk_dict_get(root, "c");
    ck_assert(od && od->kind == VN__PK_DICT && od->n == 2 && od->items[1]->i == 2);
    ck_assert(ns && ns->kind == VN__PK_OBJECT && fabs(vn__pk_dict_get(ns, "lr")->f - 1e-3) < 1e-12);
    ck_assert(c && c->kind == VN__PK_INT && c->i == -32768);
    ck_assert(vn__pk_dict_get(root, "d") == root);
    vn__pk_arena_free(a);
}
END_TEST

static Suite *weights_suite(void)
{
    Suite *s = suite_create("weights");
    TCase *tc = tcase_create("weights");
    tcase_add_test(tc, test_pth_imports_equal_pytorch);
    tcase_add_test(tc, test_pth_refusals_name_file_and_cause);
    tcase_add_test(tc, test_pth_damage_never_crashes);
    tcase_add_test(tc, test_unpickler_edges);
    tcase_add_test(tc, test_plain_state_dicts_give_pytorch_logits);
    tcase_add_test(tc, test_mismatches_reported_by_key);
    tcase_add_test(tc, test_finetune_loads_what_fits);
    tcase_add_test(tc, test_onnx_metadata_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return vn_test_run(weights_suite(), true); }
