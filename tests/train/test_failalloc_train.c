/* Allocation-failure sweeps over the model and trainer layers (issue 18): for n = 1, 2, ...
 * the n-th allocation of the operation fails (tests/support/vn_failalloc.h). Every case must
 * return an error with a message (no crash, no leak under ASan) and leave its inputs as they
 * were: a model whose load failed keeps its weights, a checkpoint whose save failed keeps the
 * previous file's bytes and leaves no temporary file, a failed checkpoint load leaves model,
 * optimizer and trainer state untouched, a failed config parse leaves the config unchanged,
 * a failed training step leaves the parameters unchanged. No ck_* call runs while armed.
 * Loads spare jansson's parser (see vn_failalloc_spare_json). */
#include "vn_failalloc.h"
#include "vn_test.h"

#include "models/vn_vanillanet.h"
#include "optim/vn_optim.h"
#include "train/vn_config.h"
#include "train/vn_trainer.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One operation under test: returns its status; `intact` (run disarmed, after a failure)
 * says whether the inputs are as they were. */
typedef struct sweep_op {
    const char *what;
    int (*run)(void *arg, vn_error *err);
    bool (*intact)(void *arg);
    void *arg;
    /* When a library we call absorbs the failure (jansson's parser retries some allocations)
     * and the call succeeds: checks that the result is right and puts the inputs back. */
    bool (*absorbed)(void *arg);
} sweep_op;

static long sweep(const sweep_op *op)
{
    long n = 1;
    for (;; n++) {
        vn_error err = {0};
        vn_failalloc_arm(n, false);
        int rc = op->run(op->arg, &err);
        bool fired = vn_failalloc_disarm();
        if (!fired) {
            ck_assert_msg(rc == VN_OK, "%s: failed without an injected failure: %s", op->what,
                          err.msg);
            break;
        }
        if (rc == VN_OK && getenv("VN_SWEEP_TRACE")) { /* where the swallowed failure is */
            setenv("VN_FAILALLOC_TRACE", "1", 1);
            vn_failalloc_arm(n, false);
            op->run(op->arg, &err);
            vn_failalloc_disarm();
            unsetenv("VN_FAILALLOC_TRACE");
        }
        if (rc == VN_OK && op->absorbed && op->absorbed(op->arg)) continue;
        ck_assert_msg(rc != VN_OK, "%s: allocation %ld failed but the call succeeded", op->what, n);
        ck_assert_msg(err.msg[0] != '\0', "%s: allocation %ld: error %d without a message",
                      op->what, n, rc);
        ck_assert_msg(!op->intact || op->intact(op->arg), "%s: allocation %ld (%s) changed the "
                      "inputs", op->what, n, err.msg);
    }
    printf("%s: %ld allocation-failure cases\n", op->what, n - 1);
    ck_assert_int_gt(n, 1);
    return n - 1;
}

static void tiny_config(vn_vanillanet_config *c)
{
    memset(c, 0, sizeof *c);
    c->n_stages = 2;
    c->dims[0] = 8;
    c->dims[1] = 16;
    c->dims[2] = 16;
    c->strides[0] = 1;
    c->strides[1] = 2;
    c->act_num = 2;
    c->in_chans = 1;
    c->num_classes = 4;
}

static vn_vanillanet *tiny_model(uint64_t seed)
{
    vn_vanillanet_config c;
    tiny_config(&c);
    vn_vanillanet *m = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_vanillanet_create(&c, false, &m, &err) == VN_OK, "%s", err.msg);
    vn_vanillanet_init(m, seed);
    return m;
}

/* All state bytes of a model, concatenated (malloc'd). */
static uint8_t *snapshot(const vn_vanillanet *m, size_t *len)
{
    size_t n = 0;
    for (int i = 0; i < m->state.n; i++)
        n += m->state.items[i].tensor ? (size_t)m->state.items[i].tensor->numel * 4 : 8;
    uint8_t *s = malloc(n), *p = s;
    ck_assert_ptr_nonnull(s);
    for (int i = 0; i < m->state.n; i++) {
        const vn_state_item *e = &m->state.items[i];
        size_t b = e->tensor ? (size_t)e->tensor->numel * 4 : 8;
        memcpy(p, e->tensor ? (const void *)e->tensor->data : (const void *)e->count, b);
        p += b;
    }
    *len = n;
    return s;
}

static bool same_as(const vn_vanillanet *m, const uint8_t *snap, size_t len)
{
    size_t n;
    uint8_t *now = snapshot(m, &n);
    bool same = n == len && memcmp(now, snap, n) == 0;
    free(now);
    return same;
}

/* ---- model creation --------------------------------------------------------------------- */

static int run_create(void *arg, vn_error *err)
{
    (void)arg;
    vn_vanillanet_config c;
    tiny_config(&c);
    vn_vanillanet *m = NULL;
    int rc = vn_vanillanet_create(&c, false, &m, err);
    if (rc == VN_OK) vn_vanillanet_destroy(m);
    else if (m) rc = vn_error_set(err, VN_ERR_STATE, "create failed but returned a model");
    return rc;
}

START_TEST(sweep_model_create)
{
    sweep(&(sweep_op){"model creation", run_create, NULL, NULL, NULL});
}
END_TEST

/* ---- weight load ------------------------------------------------------------------------ */

typedef struct load_case {
    char path[4200];
    vn_vanillanet *m, *src;
    uint8_t *snap;
    size_t len;
} load_case;

static bool load_absorbed(void *arg)
{
    load_case *c = arg;
    size_t n;
    uint8_t *want = snapshot(c->src, &n);
    bool right = same_as(c->m, want, n);
    free(want);
    vn_vanillanet_init(c->m, 2); /* back to the weights the next case starts from */
    return right && same_as(c->m, c->snap, c->len);
}

static int run_load(void *arg, vn_error *err)
{
    load_case *c = arg;
    return vn_vanillanet_load(c->m, c->path, err);
}

static bool load_intact(void *arg)
{
    load_case *c = arg;
    return same_as(c->m, c->snap, c->len);
}

static int run_open(void *arg, vn_error *err)
{
    load_case *c = arg;
    vn_vanillanet *m = NULL;
    int rc = vn_vanillanet_open(c->path, &m, err);
    if (rc == VN_OK) vn_vanillanet_destroy(m);
    return rc;
}

START_TEST(sweep_weight_load)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "failalloc");
    load_case c;
    snprintf(c.path, sizeof c.path, "%s/w.safetensors", dir);
    vn_vanillanet *src = tiny_model(1);
    vn_error err = {0};
    ck_assert_msg(vn_vanillanet_save(src, c.path, &err) == VN_OK, "%s", err.msg);
    c.m = tiny_model(2);
    c.src = src;
    c.snap = snapshot(c.m, &c.len);
    vn_failalloc_spare_json(true);
    sweep(&(sweep_op){"weight load", run_load, load_intact, &c, load_absorbed});
    /* The successful load brought the saved weights. */
    size_t n;
    uint8_t *want = snapshot(src, &n);
    ck_assert(same_as(c.m, want, n));
    free(want);
    sweep(&(sweep_op){"weight file open", run_open, NULL, &c, NULL});
    vn_failalloc_spare_json(false);
    free(c.snap);
    vn_vanillanet_destroy(c.m);
    vn_vanillanet_destroy(src);
    vn_test_rmtree(dir);
}
END_TEST

/* ---- checkpoints ------------------------------------------------------------------------ */

typedef struct ckpt_case {
    char dir[4096], path[4200];
    vn_vanillanet *m;
    vn_optim *opt;
    vn_train_state state;
    vn_config cfg;
    vn_ckpt_parts parts;
    uint8_t *snap, *opt_snap, *file;
    size_t len, opt_len, file_len;
} ckpt_case;

static vn_optim *make_optim(vn_vanillanet *m)
{
    vn_tensor *params[64];
    const char *names[64];
    int n = 0;
    for (int i = 0; i < m->state.n; i++)
        if (m->state.items[i].kind == VN_STATE_PARAM) {
            ck_assert_int_lt(n, 64);
            params[n] = m->state.items[i].tensor;
            names[n++] = m->state.items[i].name;
        }
    vn_optim_config oc;
    vn_optim_config_init(&oc, VN_OPTIM_ADAMW);
    vn_optim *opt = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_optim_create(&opt, &oc, n, params, names, &err) == VN_OK, "%s", err.msg);
    return opt;
}

static uint8_t *optim_snapshot(vn_optim *opt, size_t *len)
{
    size_t n = 0;
    for (int i = 0; i < vn_optim_state_count(opt); i++) {
        vn_ckpt_entry e;
        vn_optim_state_at(opt, i, &e);
        n += vn_ckpt_entry_nbytes(&e);
    }
    uint8_t *s = malloc(n ? n : 1), *p = s;
    for (int i = 0; i < vn_optim_state_count(opt); i++) {
        vn_ckpt_entry e;
        vn_optim_state_at(opt, i, &e);
        memcpy(p, e.data, vn_ckpt_entry_nbytes(&e));
        p += vn_ckpt_entry_nbytes(&e);
    }
    *len = n;
    return s;
}

static void ckpt_setup(ckpt_case *c, uint64_t seed)
{
    vn_test_mkdtemp(c->dir, sizeof c->dir, "failalloc");
    snprintf(c->path, sizeof c->path, "%s/ckpt.safetensors", c->dir);
    c->m = tiny_model(seed);
    c->opt = make_optim(c->m);
    memset(&c->state, 0, sizeof c->state);
    c->state.epoch = (int64_t)seed;
    c->state.step = 10 * (int64_t)seed;
    c->state.best_top1 = -1;
    snprintf(c->state.best_source, sizeof c->state.best_source, "model");
    vn_config_init(&c->cfg);
    c->parts = (vn_ckpt_parts){.model = c->m, .optim = c->opt, .state = &c->state,
                               .cfg = &c->cfg};
    c->snap = c->opt_snap = c->file = NULL;
}

static void ckpt_teardown(ckpt_case *c)
{
    free(c->snap);
    free(c->opt_snap);
    free(c->file);
    vn_optim_destroy(c->opt);
    vn_vanillanet_destroy(c->m);
    vn_test_rmtree(c->dir);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    ck_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
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

static int run_save(void *arg, vn_error *err)
{
    ckpt_case *c = arg;
    return vn_ckpt_save(c->path, &c->parts, err);
}

static bool save_intact(void *arg)
{
    ckpt_case *c = arg;
    size_t n;
    uint8_t *now = read_all(c->path, &n);
    bool same = n == c->file_len && memcmp(now, c->file, n) == 0;
    free(now);
    return same && count_files(c->dir) == 1; /* no temporary left behind */
}

/* The save succeeded although a jansson allocation failed (its dumper absorbs some): the
 * file must hold the right model description; then the previous file is put back. */
static bool save_absorbed(void *arg)
{
    ckpt_case *c = arg;
    vn_st_file *f = NULL;
    vn_error err = {0};
    char *want = vn_vanillanet_config_json(&c->m->cfg, c->m->deploy);
    if (getenv("VN_SWEEP_TRACE") && vn_st_open(c->path, &f, &err) == VN_OK) { /* what differs */
        fprintf(stderr, "saved %s\nwant  %s\n", vn_st_meta(f, "vanilla.model"), want);
        vn_st_close(f);
        f = NULL;
    }
    bool right = vn_st_open(c->path, &f, &err) == VN_OK && want &&
                 strcmp(vn_st_meta(f, "vanilla.model"), want) == 0;
    vn_st_close(f);
    free(want);
    FILE *out = fopen(c->path, "wb");
    right = right && out && fwrite(c->file, 1, c->file_len, out) == c->file_len;
    if (out) fclose(out);
    return right;
}

START_TEST(sweep_checkpoint_save)
{
    ckpt_case c;
    ckpt_setup(&c, 1);
    vn_error err = {0};
    ck_assert_msg(vn_ckpt_save(c.path, &c.parts, &err) == VN_OK, "%s", err.msg);
    c.file = read_all(c.path, &c.file_len);
    vn_vanillanet_init(c.m, 7); /* the next save differs from the file on disk */
    c.state.step = 99;
    sweep(&(sweep_op){"checkpoint save", run_save, save_intact, &c, save_absorbed});
    ck_assert(!save_intact(&c)); /* the successful save replaced the file */
    ckpt_teardown(&c);
}
END_TEST

static int run_ckpt_load(void *arg, vn_error *err)
{
    ckpt_case *c = arg;
    return vn_ckpt_load(c->path, &c->parts, err);
}

static bool ckpt_load_intact(void *arg)
{
    ckpt_case *c = arg;
    size_t n;
    uint8_t *o = optim_snapshot(c->opt, &n);
    bool same = n == c->opt_len && memcmp(o, c->opt_snap, n) == 0;
    free(o);
    return same && same_as(c->m, c->snap, c->len) && c->state.step == 20 && c->state.epoch == 2;
}

/* A successful load brought the saved state (seed 1); back to seed 2's for the next case. */
static bool ckpt_load_absorbed(void *arg)
{
    ckpt_case *c = arg;
    bool right = c->state.step == 10 && c->state.epoch == 1;
    vn_vanillanet_init(c->m, 2);
    uint8_t *p = c->opt_snap;
    for (int i = 0; i < vn_optim_state_count(c->opt); i++) {
        vn_ckpt_entry e;
        vn_optim_state_at(c->opt, i, &e);
        memcpy(e.data, p, vn_ckpt_entry_nbytes(&e));
        p += vn_ckpt_entry_nbytes(&e);
    }
    c->state.step = 20;
    c->state.epoch = 2;
    return right && ckpt_load_intact(c);
}

START_TEST(sweep_checkpoint_load)
{
    ckpt_case saved, c;
    ckpt_setup(&saved, 1);
    vn_error err = {0};
    ck_assert_msg(vn_ckpt_save(saved.path, &saved.parts, &err) == VN_OK, "%s", err.msg);
    ckpt_setup(&c, 2);
    snprintf(c.path, sizeof c.path, "%s", saved.path);
    c.snap = snapshot(c.m, &c.len);
    c.opt_snap = optim_snapshot(c.opt, &c.opt_len);
    vn_failalloc_spare_json(true);
    sweep(&(sweep_op){"checkpoint load", run_ckpt_load, ckpt_load_intact, &c,
                      ckpt_load_absorbed});
    vn_failalloc_spare_json(false);
    ck_assert_int_eq(c.state.step, 10); /* the successful load brought the saved state */
    size_t n;
    uint8_t *want = snapshot(saved.m, &n);
    ck_assert(same_as(c.m, want, n));
    free(want);
    ckpt_teardown(&c);
    ckpt_teardown(&saved);
}
END_TEST

/* ---- config parsing --------------------------------------------------------------------- */

typedef struct config_case {
    vn_config cfg, before;
} config_case;

static const char config_yaml[] =
    "model:\n  name: custom\n  dims: [8, 16, 16]\n  strides: [1, 2]\n"
    "optim:\n  name: adamw\n  lr: 0.001\ntrain:\n  epochs: 30\n  batch_size: 8\n"
    "data:\n  mean: [0.5, 0.5, 0.5]\n";

static int run_config(void *arg, vn_error *err)
{
    config_case *c = arg;
    vn_config_init(&c->cfg);
    c->before = c->cfg;
    int rc = vn_config_load_text(&c->cfg, config_yaml, strlen(config_yaml), "cfg.yaml", err);
    if (rc != VN_OK) return rc;
    c->before = c->cfg;
    rc = vn_config_set(&c->cfg, "optim.lr=0.01", err);
    if (rc == VN_OK) c->before = c->cfg;
    if (rc == VN_OK) rc = vn_config_set(&c->cfg, "model.dims=16,32,32", err);
    if (rc == VN_OK) c->before = c->cfg;
    if (rc == VN_OK) rc = vn_config_check(&c->cfg, err);
    return rc;
}

static bool config_intact(void *arg)
{
    config_case *c = arg;
    return vn_config_equal(&c->cfg, &c->before);
}

START_TEST(sweep_config)
{
    static config_case c;
    sweep(&(sweep_op){"config parsing", run_config, config_intact, &c, NULL});
}
END_TEST

/* ---- one training step ------------------------------------------------------------------ */

typedef struct step_case {
    vn_vanillanet *m;
    vn_optim *opt;
    vn_ctx *ctx;
    vn_tensor *x;
    uint8_t *params; /* parameter bytes before the step */
    size_t len;
} step_case;

static uint8_t *param_snapshot(const vn_vanillanet *m, size_t *len)
{
    size_t n = 0;
    for (int i = 0; i < m->state.n; i++)
        if (m->state.items[i].kind == VN_STATE_PARAM) n += (size_t)m->state.items[i].tensor->numel * 4;
    uint8_t *s = malloc(n), *p = s;
    for (int i = 0; i < m->state.n; i++)
        if (m->state.items[i].kind == VN_STATE_PARAM) {
            memcpy(p, m->state.items[i].tensor->data, (size_t)m->state.items[i].tensor->numel * 4);
            p += (size_t)m->state.items[i].tensor->numel * 4;
        }
    *len = n;
    return s;
}

/* A fresh context per case, as the trainer's step pool would be after a failed step. */
static int run_step(void *arg, vn_error *err)
{
    step_case *c = arg;
    vn_ctx *ctx = vn_ctx_create();
    if (!ctx) return vn_error_set(err, VN_ERR_NOMEM, "out of memory creating a context");
    int32_t labels[4] = {0, 1, 2, 3};
    vn_tensor *loss = vn_cross_entropy(ctx, vn_vanillanet_forward(ctx, c->m, c->x), labels,
                                       NULL, 0.1f);
    int rc = loss ? vn_backward(ctx, loss) : vn_ctx_status(ctx);
    if (rc != VN_OK) rc = vn_error_set(err, rc, "%s", vn_ctx_error(ctx));
    if (rc == VN_OK) rc = vn_optim_step(c->opt, err);
    vn_ctx_destroy(ctx);
    if (vn_optim_zero_grad(c->opt) != VN_OK && rc == VN_OK)
        rc = vn_error_set(err, VN_ERR_NOMEM, "zero_grad failed");
    return rc;
}

static bool step_intact(void *arg)
{
    step_case *c = arg;
    size_t n;
    uint8_t *now = param_snapshot(c->m, &n);
    bool same = n == c->len && memcmp(now, c->params, n) == 0;
    free(now);
    return same && vn_optim_steps(c->opt) == 0;
}

START_TEST(sweep_training_step)
{
    step_case c;
    c.m = tiny_model(3);
    vn_vanillanet_set_training(c.m, true);
    c.opt = make_optim(c.m);
    ck_assert_int_eq(vn_optim_zero_grad(c.opt), VN_OK);
    c.x = vn_tensor_new4(4, 16, 16, 1, false);
    vn_test_fill_uniform(c.x->data, c.x->numel, 5, -1, 1);
    c.params = param_snapshot(c.m, &c.len);
    sweep(&(sweep_op){"training step", run_step, step_intact, &c, NULL});
    ck_assert_int_eq(vn_optim_steps(c.opt), 1);
    ck_assert(!step_intact(&c)); /* the successful step moved the parameters */
    free(c.params);
    vn_tensor_free(c.x);
    vn_optim_destroy(c.opt);
    vn_vanillanet_destroy(c.m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("failalloc_train");
    TCase *tc = tcase_create("sweeps");
    tcase_add_test(tc, sweep_model_create);
    tcase_add_test(tc, sweep_weight_load);
    tcase_add_test(tc, sweep_checkpoint_save);
    tcase_add_test(tc, sweep_checkpoint_load);
    tcase_add_test(tc, sweep_config);
    tcase_add_test(tc, sweep_training_step);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
