/* Storage faults injected into checkpoint writes (issue 18; tests/support/vn_failio.h): for
 * every open/write/flush/fsync/close/rename of a checkpoint save, with ENOSPC and with EIO,
 * once and from then on, the save reports an error naming the checkpoint and the cause, the
 * previous checkpoint stays byte for byte and loads, and no temporary file is left. The one
 * exception is the fsync of the folder after the rename: the new file is then complete and
 * the error says it may not survive a crash. No ck_* call runs while armed. */
#include "vn_failio.h"
#include "vn_test.h"

#include "models/vn_vanillanet.h"
#include "optim/vn_optim.h"
#include "train/vn_config.h"
#include "train/vn_trainer.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ckpt {
    vn_vanillanet *m;
    vn_optim *opt;
    vn_train_state state;
    vn_config cfg;
    vn_ckpt_parts parts;
} ckpt;

static void ckpt_make(ckpt *c, uint64_t seed)
{
    vn_vanillanet_config mc = {.n_stages = 2, .dims = {8, 16, 16}, .strides = {1, 2},
                               .act_num = 2, .in_chans = 1, .num_classes = 4};
    vn_error err = {0};
    ck_assert_msg(vn_vanillanet_create(&mc, false, &c->m, &err) == VN_OK, "%s", err.msg);
    vn_vanillanet_init(c->m, seed);
    vn_tensor *params[64];
    const char *names[64];
    int n = 0;
    for (int i = 0; i < c->m->state.n && n < 64; i++)
        if (c->m->state.items[i].kind == VN_STATE_PARAM) {
            params[n] = c->m->state.items[i].tensor;
            names[n++] = c->m->state.items[i].name;
        }
    vn_optim_config oc;
    vn_optim_config_init(&oc, VN_OPTIM_ADAMW);
    ck_assert_msg(vn_optim_create(&c->opt, &oc, n, params, names, &err) == VN_OK, "%s", err.msg);
    memset(&c->state, 0, sizeof c->state);
    c->state.step = (int64_t)seed;
    c->state.best_top1 = -1;
    vn_config_init(&c->cfg);
    c->parts = (vn_ckpt_parts){.model = c->m, .optim = c->opt, .state = &c->state, .cfg = &c->cfg};
}

static void ckpt_free(ckpt *c)
{
    vn_optim_destroy(c->opt);
    vn_vanillanet_destroy(c->m);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    *len = got;
    return b;
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        if (de->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

/* Loads path into a fresh set of parts; returns the step it holds (-1: does not load). */
static int64_t loaded_step(const char *path)
{
    ckpt c;
    ckpt_make(&c, 5);
    vn_error err = {0};
    int64_t step = vn_ckpt_load(path, &c.parts, &err) == VN_OK ? c.state.step : -1;
    ckpt_free(&c);
    return step;
}

/* One sweep: every I/O call of a save failing with `error`; returns the cases run. */
static long sweep(const char *dir, const char *path, int error, bool sticky)
{
    ckpt prev, next;
    ckpt_make(&prev, 1);
    ckpt_make(&next, 2);
    vn_error err = {0};
    long n = 1;
    for (;; n++) {
        ck_assert_msg(vn_ckpt_save(path, &prev.parts, &err) == VN_OK, "%s", err.msg);
        size_t len0 = 0, len1 = 0;
        uint8_t *before = read_all(path, &len0);
        vn_failio_arm(n, error, sticky);
        int rc = vn_ckpt_save(path, &next.parts, &err);
        bool fired = vn_failio_disarm();
        if (!fired) {
            ck_assert_msg(rc == VN_OK, "%s", err.msg);
            ck_assert_int_eq(loaded_step(path), 2);
            free(before);
            break;
        }
        const char *call = vn_failio_last();
        ck_assert_msg(rc != VN_OK, "%s %ld failed (%s) but the save succeeded", call, n,
                      strerror(error));
        ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, strerror(error)),
                      "%s %ld: the message should name %s and '%s': %s", call, n, path,
                      strerror(error), err.msg);
        ck_assert_msg(count_files(dir) == 1, "%s %ld: a temporary file was left", call, n);
        uint8_t *after = read_all(path, &len1);
        if (strstr(err.msg, "syncing its folder")) {
            ck_assert_int_eq(loaded_step(path), 2); /* renamed: the new file is complete */
        } else {
            ck_assert_msg(len0 == len1 && !memcmp(before, after, len0),
                          "%s %ld: the previous checkpoint changed", call, n);
            ck_assert_int_eq(loaded_step(path), 1);
        }
        free(before);
        free(after);
    }
    ckpt_free(&prev);
    ckpt_free(&next);
    printf("%s, %s: %ld storage-fault cases\n", strerror(error), sticky ? "from then on" : "once",
           n - 1);
    ck_assert_int_ge(n - 1, 5);
    return n - 1;
}

START_TEST(checkpoint_write_faults)
{
    char dir[4096], path[4200];
    vn_test_mkdtemp(dir, sizeof dir, "failio");
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    long total = 0;
    total += sweep(dir, path, ENOSPC, false);
    total += sweep(dir, path, EIO, false);
    total += sweep(dir, path, ENOSPC, true);
    total += sweep(dir, path, EIO, true);
    printf("checkpoint save: %ld storage-fault cases in all\n", total);
    vn_test_rmtree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("storage_faults");
    TCase *tc = tcase_create("faults");
    tcase_add_test(tc, checkpoint_write_faults);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
