/* The trainer on a synthetic folder: the loss falls and accuracy rises; resume (also
 * mid-epoch) is bit-exact; a corrupt newest checkpoint falls back to the one before. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "synth.h"
#include "train/vn_trainer.h"
#include "vn_test.h"

static char root[4096];

static void make_data(void)
{
    if (root[0]) return;
    vn_test_mkdtemp(root, sizeof root, "trainer");
    ck_assert_int_eq(vn_synth_dataset(root, 24, 8, 1), 0);
}

static void base_config(vn_config *cfg, const char *out)
{
    vn_config_init(cfg);
    const char *sets[] = {
        "model.name=custom", "model.dims=[8,16,16]", "model.strides=[1,2]", "model.in_chans=1",
        "model.num_classes=4", "model.drop_rate=0.1", "data.input_size=16", "data.grayscale=true",
        "data.mean=[0.3]", "data.std=[0.3]", "data.augment=none", "data.crop_pct=1.0",
        "data.hflip=0.5", "data.mixup=0", "data.cutmix=0", "data.workers=2",
        "data.auto_augment=", "data.reprob=0", "data.color_jitter=0",
        "optim.name=adamw", "optim.lr=0.01", "optim.weight_decay=0.01", "optim.update_freq=1",
        "optim.warmup_epochs=1", "deep_training.decay_epochs=2", "deep_training.update=iteration",
        "ema.decays=[0.9]", "loss.bce=false", "loss.smoothing=0.1", "train.epochs=8",
        "train.batch_size=8", "train.threads=2", "train.log_every=1000", "output.keep_last=0",
        "output.save_every_steps=5", "output.tensorboard=false"};
    vn_error err = {0};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        ck_assert_msg(vn_config_set(cfg, sets[i], &err) == VN_OK, "%s", err.msg);
    char s[1200];
    snprintf(s, sizeof s, "data.root=%s", root);
    ck_assert_int_eq(vn_config_set(cfg, s, &err), VN_OK);
    snprintf(s, sizeof s, "output.dir=%s/%s", root, out);
    ck_assert_int_eq(vn_config_set(cfg, s, &err), VN_OK);
    ck_assert_msg(vn_config_check(cfg, &err) == VN_OK, "%s", err.msg);
}

static FILE *devnull(void) { return fopen("/dev/null", "w"); }

static int train(const vn_config *cfg, const char *resume, bool force, vn_train_result *res)
{
    FILE *out = devnull();
    vn_train_options opt = {resume, force, NULL, out, NULL};
    vn_error err = {0};
    int rc = vn_train(cfg, &opt, res, &err);
    fclose(out);
    ck_assert_msg(rc == VN_OK, "training failed: %s", err.msg);
    return rc;
}

START_TEST(test_loss_falls_and_accuracy_rises)
{
    make_data();
    vn_config cfg;
    base_config(&cfg, "falls");
    vn_train_result res;
    train(&cfg, NULL, false, &res);
    ck_assert(res.state.finished);
    ck_assert_int_eq(res.state.epoch, 8);
    ck_assert_int_eq(res.state.step, 8 * 12);
    ck_assert(res.evaluated);
    ck_assert_msg(res.last_eval.top1 >= 80.0, "top-1 %.2f%% on an easy 4-class task", res.last_eval.top1);
    ck_assert_double_eq_tol(res.state.act_learn, 1.0, 1e-12);
    /* epochs.csv: the mean training loss of the last epoch is well below the first. */
    char path[256];
    snprintf(path, sizeof path, "%s/falls/epochs.csv", root);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    double first = -1, last = -1;
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f)); /* header: epoch,step,time,train_loss,... */
    while (fgets(line, sizeof line, f)) {
        double e, s, t, loss;
        ck_assert_int_eq(sscanf(line, "%lf,%lf,%lf,%lf", &e, &s, &t, &loss), 4);
        if (first < 0) first = loss;
        last = loss;
    }
    fclose(f);
    ck_assert_msg(last < 0.7 * first, "train loss %g -> %g", first, last);
    /* The artefacts a user is told about exist. */
    const char *files[] = {"config.yaml", "metrics.jsonl", "checkpoints/best.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/falls/%s", root, files[i]);
        ck_assert_msg(access(path, R_OK) == 0, "missing %s", path);
    }
}
END_TEST

/* Model, optimizer, EMA and BN buffers of a checkpoint, byte for byte. */
static void assert_same_weights(const char *a, const char *b)
{
    vn_st_file *fa = NULL, *fb = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_st_open(a, &fa, &err) == VN_OK, "%s", err.msg);
    ck_assert_msg(vn_st_open(b, &fb, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_st_count(fa), vn_st_count(fb));
    for (int i = 0; i < vn_st_count(fa); i++) {
        const vn_st_entry *ea = vn_st_at(fa, i), *eb = vn_st_find(fb, ea->name);
        ck_assert_msg(eb != NULL, "%s missing in %s", ea->name, b);
        ck_assert_uint_eq(ea->nbytes, eb->nbytes);
        ck_assert_msg(memcmp(ea->data, eb->data, ea->nbytes) == 0, "%s differs between %s and %s",
                      ea->name, a, b);
    }
    vn_st_close(fa);
    vn_st_close(fb);
}

START_TEST(test_resume_is_bit_exact_mid_epoch)
{
    make_data();
    vn_config straight, split;
    base_config(&straight, "straight");
    base_config(&split, "split");
    vn_error err = {0};
    /* 30 steps straight (2.5 epochs) vs 17 steps (mid-epoch 1), stop, resume, 13 more. */
    ck_assert_int_eq(vn_config_set(&straight, "train.max_steps=30", &err), VN_OK);
    ck_assert_int_eq(vn_config_set(&split, "train.max_steps=17", &err), VN_OK);
    vn_train_result a, b, c;
    train(&straight, NULL, false, &a);
    ck_assert_int_eq(a.state.step, 30);
    train(&split, NULL, false, &b);
    ck_assert_int_eq(b.state.step, 17);
    ck_assert_int_eq(b.state.epoch, 1);
    ck_assert_int_eq(b.state.position, 5 * 8);
    ck_assert_int_eq(vn_config_set(&split, "train.max_steps=30", &err), VN_OK);
    train(&split, "auto", false, &c);
    ck_assert_int_eq(c.state.step, 30);
    assert_same_weights(a.last_ckpt, c.last_ckpt);
}
END_TEST

START_TEST(test_corrupt_newest_checkpoint_falls_back)
{
    make_data();
    vn_config cfg;
    base_config(&cfg, "corrupt");
    vn_error err = {0};
    ck_assert_int_eq(vn_config_set(&cfg, "train.max_steps=12", &err), VN_OK);
    vn_train_result r;
    train(&cfg, NULL, false, &r);
    char dir[256], newest[4096], found[4096];
    snprintf(dir, sizeof dir, "%s/corrupt", root);
    ck_assert_int_eq(vn_ckpt_find_latest(dir, newest, sizeof newest, &err), VN_OK);
    ck_assert_ptr_nonnull(strstr(newest, "ckpt-s0000000012"));
    /* Flip a byte in the data: the CRC in the metadata catches it. */
    FILE *f = fopen(newest, "r+b");
    fseek(f, -100, SEEK_END);
    int ch = fgetc(f);
    fseek(f, -100, SEEK_END);
    fputc(ch ^ 0xff, f);
    fclose(f);
    ck_assert_int_eq(vn_ckpt_find_latest(dir, found, sizeof found, &err), VN_OK);
    ck_assert_msg(strstr(found, "ckpt-s0000000010") != NULL, "fell back to %s", found);
    /* Resuming takes the good one and goes on to the end. */
    ck_assert_int_eq(vn_config_set(&cfg, "train.max_steps=0", &err), VN_OK);
    train(&cfg, "auto", false, &r);
    ck_assert(r.state.finished);
    ck_assert_int_eq(r.state.step, 96);
    /* A truncated checkpoint is refused with its name. */
    ck_assert_int_eq(truncate(found, 1000), 0);
    vn_ckpt_info info;
    ck_assert_int_ne(vn_ckpt_info_read(found, &info, &err), VN_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, found));
}
END_TEST

/* The whole-file checksum, through the readers of checkpoints: every byte of a real
 * checkpoint's header (names, shapes, offsets, the stored config and preprocessing) and a
 * sample of its data bytes, each changed in turn, is refused naming the file. */
START_TEST(test_checkpoint_header_bytes_are_checked)
{
    make_data();
    vn_config cfg;
    base_config(&cfg, "checked");
    vn_error err = {0};
    ck_assert_int_eq(vn_config_set(&cfg, "train.max_steps=2", &err), VN_OK);
    vn_train_result r;
    train(&cfg, NULL, false, &r);
    FILE *f = fopen(r.last_ckpt, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    rewind(f);
    unsigned char *orig = malloc(len);
    ck_assert_uint_eq(fread(orig, 1, len, f), len);
    fclose(f);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | orig[i];
    ck_assert_uint_gt(hlen, 1000);
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/checked/changed.safetensors", root);
    char want[4300];
    snprintf(want, sizeof want, "%s: checksum mismatch", bad);
    size_t n_data = len - 8 - (size_t)hlen, tried = 0;
    for (size_t i = 0; i < len; i += i < 8 + hlen ? 1 : n_data / 97 + 1) {
        orig[i] ^= (unsigned char)(1u << (i % 8));
        f = fopen(bad, "wb");
        ck_assert_uint_eq(fwrite(orig, 1, len, f), len);
        fclose(f);
        orig[i] ^= (unsigned char)(1u << (i % 8));
        vn_ckpt_info info;
        vn_vanillanet *m = NULL;
        vn_error e1 = {0}, e2 = {0};
        ck_assert_msg(vn_ckpt_info_read(bad, &info, &e1) != VN_OK, "byte %zu accepted", i);
        ck_assert_msg(strstr(e1.msg, want) == e1.msg, "byte %zu: %s", i, e1.msg);
        /* The model reader (eval, predict, export, model.init) as well, on a sample. */
        if (i % 61 == 0 || i >= 8 + hlen) {
            ck_assert_int_ne(vn_open_model(bad, -1, &m, &info, &e2), VN_OK);
            ck_assert_msg(strstr(e2.msg, want) == e2.msg, "byte %zu: %s", i, e2.msg);
        }
        tried++;
    }
    ck_assert_uint_ge(tried, hlen + 8 + 90);
    /* Unchanged, it loads. */
    f = fopen(bad, "wb");
    ck_assert_uint_eq(fwrite(orig, 1, len, f), len);
    fclose(f);
    vn_ckpt_info info;
    ck_assert_msg(vn_ckpt_info_read(bad, &info, &err) == VN_OK, "%s", err.msg);
    vn_ckpt_info_free(&info);
    free(orig);
}
END_TEST

START_TEST(test_resume_refuses_changed_config)
{
    make_data();
    vn_config cfg;
    base_config(&cfg, "changed");
    vn_error err = {0};
    ck_assert_int_eq(vn_config_set(&cfg, "train.max_steps=3", &err), VN_OK);
    vn_train_result r;
    train(&cfg, NULL, false, &r);
    ck_assert_int_eq(vn_config_set(&cfg, "optim.lr=0.02", &err), VN_OK);
    FILE *out = devnull();
    vn_train_options opt = {"auto", false, NULL, out, NULL};
    int rc = vn_train(&cfg, &opt, &r, &err);
    fclose(out);
    ck_assert_int_eq(rc, VN_ERR_STATE);
    ck_assert_msg(strstr(err.msg, "optim.lr: 0.01 -> 0.02") != NULL, "%s", err.msg);
    ck_assert_ptr_nonnull(strstr(err.msg, "--force"));
    ck_assert_int_eq(vn_config_set(&cfg, "train.max_steps=0", &err), VN_OK);
    train(&cfg, "auto", true, &r);
    ck_assert(r.state.finished);
}
END_TEST

START_TEST(test_interrupt_flag_writes_checkpoint)
{
    make_data();
    vn_config cfg;
    base_config(&cfg, "interrupt");
    volatile sig_atomic_t stop = 1; /* as if SIGTERM arrived during the first step */
    FILE *out = devnull();
    vn_train_options opt = {NULL, false, &stop, out, NULL};
    vn_train_result r;
    vn_error err = {0};
    ck_assert_int_eq(vn_train(&cfg, &opt, &r, &err), VN_OK);
    fclose(out);
    ck_assert_int_eq(r.outcome, VN_TRAIN_INTERRUPTED);
    ck_assert_int_eq(r.state.step, 1);
    ck_assert_ptr_nonnull(strstr(r.last_ckpt, "ckpt-s0000000001"));
    ck_assert_int_eq(access(r.last_ckpt, R_OK), 0);
}
END_TEST

static Suite *trainer_suite(void)
{
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_create("trainer");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_loss_falls_and_accuracy_rises);
    tcase_add_test(tc, test_resume_is_bit_exact_mid_epoch);
    tcase_add_test(tc, test_corrupt_newest_checkpoint_falls_back);
    tcase_add_test(tc, test_checkpoint_header_bytes_are_checked);
    tcase_add_test(tc, test_resume_refuses_changed_config);
    tcase_add_test(tc, test_interrupt_flag_writes_checkpoint);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int rc = vn_test_run(trainer_suite(), false); /* tests share the synthetic folder */
    vn_test_rmtree(root);
    return rc;
}
