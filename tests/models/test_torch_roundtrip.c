/* Weight files written by C load into PyTorch with load_state_dict(strict=True) and give
 * the same logits. Needs Debian's python3-torch; without it the test reports itself as
 * skipped (exit 77), never as passed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "models/vn_vanillanet.h"

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            fprintf(stderr, "FAIL: " __VA_ARGS__);         \
            fputc('\n', stderr);                           \
            return 1;                                      \
        }                                                  \
    } while (0)

typedef struct rt_case {
    const char *name;
    int n_stages, dims[6], strides[5], ada[5], act_num, in_chans, num_classes, size;
    bool ada_enabled, deploy;
    float act_learn;
} rt_case;

static int write_case(const char *dir, const rt_case *c, FILE *index, bool first)
{
    vn_vanillanet_config cfg = {0};
    cfg.n_stages = c->n_stages;
    memcpy(cfg.dims, c->dims, sizeof c->dims);
    memcpy(cfg.strides, c->strides, sizeof c->strides);
    memcpy(cfg.ada_pool, c->ada, sizeof c->ada);
    cfg.ada_pool_enabled = c->ada_enabled;
    cfg.act_num = c->act_num, cfg.in_chans = c->in_chans, cfg.num_classes = c->num_classes;
    vn_error err = {0};
    vn_vanillanet *m = NULL;
    CHECK(vn_vanillanet_create(&cfg, false, &m, &err) == VN_OK, "%s", err.msg);
    vn_vanillanet_init(m, 11);
    /* Non-trivial BN statistics so the check is not blind to them. */
    vn_rng rng;
    vn_rng_seed(&rng, 5, 0, 0);
    for (int i = 0; i < m->state.n; i++) {
        vn_state_item *e = &m->state.items[i];
        if (e->kind == VN_STATE_COUNT) *e->count = 9;
        else if (e->tensor->ndim == 1)
            for (int64_t k = 0; k < e->tensor->numel; k++)
                e->tensor->data[k] += (float)(0.3 * vn_rng_uniform(&rng));
        else
            for (int64_t k = 0; k < e->tensor->numel; k++) e->tensor->data[k] *= 10.0f;
    }
    vn_vanillanet_change_act(m, c->act_learn);
    if (c->deploy) CHECK(vn_vanillanet_switch_to_deploy(m, false, &err) == VN_OK, "%s", err.msg);
    vn_vanillanet_set_training(m, false);
    char path[512];
    snprintf(path, sizeof path, "%s/%s_w.safetensors", dir, c->name);
    CHECK(vn_vanillanet_save(m, path, &err) == VN_OK, "%s", err.msg);

    vn_tensor *x = vn_tensor_new4(2, c->size, c->size, c->in_chans, false);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = (float)vn_rng_normal(&rng);
    vn_ctx *ctx = vn_ctx_create();
    vn_ctx_set_grad(ctx, false);
    vn_tensor *y = vn_vanillanet_forward(ctx, m, x);
    CHECK(y != NULL, "%s", vn_ctx_error(ctx));
    vn_st_writer *w = vn_st_writer_new();
    int64_t xs[4] = {x->shape[0], x->shape[1], x->shape[2], x->shape[3]}, ys[2] = {y->shape[0], y->shape[1]};
    CHECK(vn_st_add(w, "x", VN_DTYPE_F32, 4, xs, x->data, &err) == VN_OK, "%s", err.msg);
    CHECK(vn_st_add(w, "logits", VN_DTYPE_F32, 2, ys, y->data, &err) == VN_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/%s_io.safetensors", dir, c->name);
    CHECK(vn_st_write(w, path, 0, &err) == VN_OK, "%s", err.msg);
    vn_st_writer_free(w);

    fprintf(index, "%s{\"weights\": \"%s_w.safetensors\", \"io\": \"%s_io.safetensors\", "
            "\"deploy\": %s, \"act_learn\": %g, \"in_chans\": %d, \"num_classes\": %d, "
            "\"act_num\": %d, \"dims\": [", first ? "" : ",", c->name, c->name,
            c->deploy ? "true" : "false", (double)c->act_learn, c->in_chans, c->num_classes, c->act_num);
    for (int i = 0; i <= c->n_stages; i++) fprintf(index, "%s%d", i ? ", " : "", c->dims[i]);
    fprintf(index, "], \"strides\": [");
    for (int i = 0; i < c->n_stages; i++) fprintf(index, "%s%d", i ? ", " : "", c->strides[i]);
    fprintf(index, "], \"ada_pool\": ");
    if (c->ada_enabled) {
        fprintf(index, "[");
        for (int i = 0; i < c->n_stages; i++) fprintf(index, "%s%d", i ? ", " : "", c->ada[i]);
        fprintf(index, "]}\n");
    } else {
        fprintf(index, "null}\n");
    }
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
    vn_vanillanet_destroy(m);
    return 0;
}

int main(void)
{
    const char *fixtures = getenv("VN_FIXTURES");
    CHECK(fixtures, "VN_FIXTURES is not set: run through meson test");
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        printf("SKIP: /usr/bin/python3 with python3-torch is not available; the PyTorch "
               "round trip was not checked\n");
        return 77;
    }
    char dir[] = "/tmp/vn_roundtrip_XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    const rt_case cases[] = {
        {"train_act05", 3, {8, 8, 16, 24}, {1, 2, 2}, {0}, 3, 3, 10, 32, false, false, 0.5f},
        {"deploy", 3, {8, 8, 16, 24}, {1, 2, 2}, {0}, 3, 3, 10, 32, false, true, 1.0f},
        {"train_ada", 3, {8, 8, 16, 24}, {1, 2, 2}, {0, 5, 3}, 2, 1, 6, 40, true, false, 0.2f},
        {"deploy_ada", 3, {8, 8, 16, 24}, {1, 2, 2}, {0, 5, 3}, 2, 1, 6, 40, true, true, 1.0f},
    };
    char path[512];
    snprintf(path, sizeof path, "%s/cases.json", dir);
    FILE *index = fopen(path, "w");
    CHECK(index, "cannot write %s", path);
    fprintf(index, "[\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (write_case(dir, &cases[i], index, i == 0)) return 1;
    fprintf(index, "]\n");
    fclose(index);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/../check_roundtrip.py %s", fixtures, dir);
    int rc = system(cmd);
    int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    printf(code == 0 ? "PASS: PyTorch loaded every C weight file strictly and matched the logits\n"
                     : "FAIL: PyTorch round trip (exit %d)\n", code);
    return code;
}
