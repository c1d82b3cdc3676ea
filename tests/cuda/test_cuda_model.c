/* The CUDA backend on whole models and optimizers, against the CPU: optimizer steps (SGD with
 * Nesterov momentum, AdamW, LAMB with its global and trust-ratio norms) and EMA on the same
 * parameters and gradients; VanillaNet logits, loss and every parameter gradient; 50 training
 * steps from the same weights. Skips (77) without a CUDA device. Strict FP32 (set by
 * tests/cuda/meson.build). Bounds (max|got - want| / max|want|): optimizer steps 1e-5,
 * logits and loss 1e-4, gradients 1e-3 (bf16 autocast: see model_bf16), losses along 50
 * steps 1e-2 and final weights and buffers 2e-2 (differences in summation order grow through
 * training; measured on an H200: losses 2.6e-5, weights and buffers 1.04e-2, the running
 * variance of the classifier's BatchNorm, which normalises over the batch alone).
 * A tensor whose largest value is under 1% of the largest of all the tensors compared is
 * measured against that 1% instead of its own largest value: some gradients are zero by
 * construction, so both sides hold only rounding noise there (the bias of a BatchNorm whose
 * output reaches the loss only through a 1x1 conv and a training-mode BatchNorm, which
 * removes any per-channel shift), and their relative error is the ratio of two noises. */
#include "vn_test.h"

#include "models/vn_vanillanet.h"
#include "optim/vn_ema.h"
#include "optim/vn_optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *host_copy(const vn_tensor *t, bool grad)
{
    float *h = malloc((size_t)t->numel * sizeof(float));
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(grad ? vn_tensor_read_grad(t, h) : vn_tensor_read(t, h), VN_OK);
    return h;
}

static void expect_rel(const char *what, const float *got, const float *want, int64_t n,
                       double bound)
{
    double e = vn_test_rel_err(got, want, n);
    printf("  %-40s rel err %.3g (bound %g)\n", what, e, bound);
    ck_assert_msg(e <= bound, "%s: rel err %g > %g", what, e, bound);
}

/* The worst error over a model's tensors (parameters only, or every tensor but counters), of
 * the gradients or the data: max|got - want| / max(max|want|, 1% of the largest max|want|
 * of them all). *floored counts the tensors measured against that floor. */
static double state_err(const vn_state_list *want, const vn_state_list *got, bool grads,
                        const char **worst_name, int *floored)
{
    double top = 0.0;
    for (int i = 0; i < want->n; i++) {
        const vn_state_item *it = &want->items[i];
        if (grads ? it->kind != VN_STATE_PARAM : it->kind == VN_STATE_COUNT) continue;
        const float *w = grads ? it->tensor->grad : it->tensor->data;
        for (int64_t j = 0; j < it->tensor->numel; j++) top = fmax(top, fabs((double)w[j]));
    }
    double floor = 0.01 * top, worst = 0.0;
    *floored = 0;
    for (int i = 0; i < want->n; i++) {
        const vn_state_item *it = &want->items[i];
        if (grads ? it->kind != VN_STATE_PARAM : it->kind == VN_STATE_COUNT) continue;
        const float *w = grads ? it->tensor->grad : it->tensor->data;
        float *g = host_copy(got->items[i].tensor, grads);
        double diff = 0.0, scale = 0.0;
        for (int64_t j = 0; j < it->tensor->numel; j++) {
            diff = fmax(diff, fabs((double)g[j] - (double)w[j]));
            scale = fmax(scale, fabs((double)w[j]));
        }
        free(g);
        if (scale < floor) (*floored)++;
        double e = diff / fmax(fmax(scale, floor), 1e-30);
        if (e > worst) worst = e, *worst_name = it->name;
    }
    return worst;
}

/* ---- optimizers and EMA --------------------------------------------------------------- */

enum { N_PARAMS = 3 };

static void optim_case(vn_optim_kind kind, const char *label)
{
    const int64_t sizes[N_PARAMS] = {1000, 77, 70000};
    vn_tensor *cpu[N_PARAMS], *gpu[N_PARAMS];
    const char *names[N_PARAMS] = {"a.weight", "a.bias", "b.weight"};
    for (int i = 0; i < N_PARAMS; i++) {
        cpu[i] = vn_tensor_new(1, &sizes[i], true);
        vn_test_fill_uniform(cpu[i]->data, sizes[i], 10 + i, -1.0f, 1.0f);
        gpu[i] = vn_tensor_new(1, &sizes[i], true);
        vn_tensor_copy_data(gpu[i], cpu[i]);
        ck_assert_int_eq(vn_tensor_to_device(gpu[i], VN_DEVICE_CUDA), VN_OK);
    }
    vn_optim_config oc;
    vn_optim_config_init(&oc, kind);
    oc.lr = 0.01;
    oc.weight_decay = 0.05;
    if (kind == VN_OPTIM_SGD) {
        oc.momentum = 0.9;
        oc.nesterov = true;
    }
    vn_optim *oa, *ob;
    vn_error err = {0};
    ck_assert_int_eq(vn_optim_create(&oa, &oc, N_PARAMS, cpu, names, &err), VN_OK);
    ck_assert_int_eq(vn_optim_create(&ob, &oc, N_PARAMS, gpu, names, &err), VN_OK);
    for (int step = 0; step < 5; step++) {
        for (int i = 0; i < N_PARAMS; i++) {
            ck_assert_int_eq(vn_tensor_zero_grad(cpu[i]), VN_OK);
            vn_test_fill_uniform(cpu[i]->grad, sizes[i], 100 * step + i, -2.0f, 2.0f);
            ck_assert_int_eq(vn_tensor_zero_grad(gpu[i]), VN_OK);
            float *g = host_copy(cpu[i], true);
            vn_tensor tmp = *gpu[i];
            tmp.data = gpu[i]->grad; /* write the gradient through a header over it */
            ck_assert_int_eq(vn_tensor_write(&tmp, g), VN_OK);
            free(g);
        }
        ck_assert_msg(vn_optim_step(oa, &err) == VN_OK, "%s", err.msg);
        ck_assert_msg(vn_optim_step(ob, &err) == VN_OK, "%s", err.msg);
    }
    char what[96];
    for (int i = 0; i < N_PARAMS; i++) {
        float *h = host_copy(gpu[i], false);
        snprintf(what, sizeof what, "%s: %s after 5 steps", label, names[i]);
        expect_rel(what, h, cpu[i]->data, sizes[i], 1e-5);
        free(h);
    }
    /* The moments as the state functions show them (what a checkpoint saves). */
    for (int k = 1; k < vn_optim_state_count(oa); k++) {
        vn_ckpt_entry ea, eb;
        ck_assert_int_eq(vn_optim_state_at(oa, k, &ea), VN_OK);
        ck_assert_int_eq(vn_optim_state_at(ob, k, &eb), VN_OK);
        snprintf(what, sizeof what, "%s: state %s", label, ea.name);
        expect_rel(what, eb.data, ea.data, ea.numel, 1e-5);
    }
    vn_optim_destroy(oa);
    vn_optim_destroy(ob);
    for (int i = 0; i < N_PARAMS; i++) {
        vn_tensor_free(cpu[i]);
        vn_tensor_free(gpu[i]);
    }
}

START_TEST(optim_sgd) { optim_case(VN_OPTIM_SGD, "sgd nesterov"); }
END_TEST
START_TEST(optim_adamw) { optim_case(VN_OPTIM_ADAMW, "adamw"); }
END_TEST
START_TEST(optim_lamb) { optim_case(VN_OPTIM_LAMB, "lamb"); }
END_TEST

START_TEST(ema)
{
    const int64_t n = 5000;
    vn_tensor *ma = vn_tensor_new(1, &n, false), *ea = vn_tensor_new(1, &n, false);
    vn_test_fill_uniform(ma->data, n, 3, -1.0f, 1.0f);
    vn_tensor *mb = vn_tensor_new(1, &n, false), *eb = vn_tensor_new(1, &n, false);
    vn_tensor_copy_data(mb, ma);
    ck_assert_int_eq(vn_tensor_to_device(mb, VN_DEVICE_CUDA), VN_OK);
    ck_assert_int_eq(vn_tensor_to_device(eb, VN_DEVICE_CUDA), VN_OK);
    vn_ema *a, *b;
    vn_error err = {0};
    const char *names[1] = {"w"};
    ck_assert_int_eq(vn_ema_create(&a, 0.99, 1, &ea, &ma, names, "ema.", &err), VN_OK);
    ck_assert_int_eq(vn_ema_create(&b, 0.99, 1, &eb, &mb, names, "ema.", &err), VN_OK);
    vn_ema_copy_from_model(a);
    vn_ema_copy_from_model(b);
    for (int s = 0; s < 3; s++) {
        vn_test_fill_uniform(ma->data, n, 50 + s, -1.0f, 1.0f);
        ck_assert_int_eq(vn_tensor_write(mb, ma->data), VN_OK);
        vn_ema_update(a);
        vn_ema_update(b);
    }
    float *h = host_copy(eb, false);
    expect_rel("ema after 3 updates", h, ea->data, n, 1e-6);
    free(h);
    vn_ema_destroy(a);
    vn_ema_destroy(b);
    vn_tensor_free(ma);
    vn_tensor_free(ea);
    vn_tensor_free(mb);
    vn_tensor_free(eb);
}
END_TEST

/* ---- VanillaNet ------------------------------------------------------------------------- */

#define BATCH 4
#define SIZE 32
#define CLASSES 10

typedef struct side {
    vn_vanillanet *m;
    vn_ctx *ctx;
    vn_tensor *x;
    vn_optim *opt;
} side;

static void side_make(side *s, vn_device dev, const float *x, bool with_optim)
{
    vn_vanillanet_config cfg;
    vn_error err = {0};
    ck_assert_int_eq(vn_vanillanet_variant("vanillanet_5", &cfg, &err), VN_OK);
    cfg.num_classes = CLASSES;
    ck_assert_msg(vn_vanillanet_create(&cfg, false, &s->m, &err) == VN_OK, "%s", err.msg);
    vn_vanillanet_init(s->m, 123);
    vn_vanillanet_set_training(s->m, true);
    vn_vanillanet_change_act(s->m, 0.5f);
    s->x = vn_tensor_new4(BATCH, SIZE, SIZE, 3, false);
    memcpy(s->x->data, x, (size_t)s->x->numel * sizeof(float));
    if (dev != VN_DEVICE_CPU) {
        ck_assert_msg(vn_state_to_device(&s->m->state, dev, &err) == VN_OK, "%s", err.msg);
        ck_assert_int_eq(vn_tensor_to_device(s->x, dev), VN_OK);
    }
    s->ctx = vn_ctx_create_on(dev);
    ck_assert_ptr_nonnull(s->ctx);
    s->opt = NULL;
    if (!with_optim) return;
    const vn_state_list *sl = &s->m->state;
    vn_tensor *params[512];
    const char *names[512];
    int np = 0;
    for (int i = 0; i < sl->n && np < 512; i++)
        if (sl->items[i].kind == VN_STATE_PARAM) {
            names[np] = sl->items[i].name;
            params[np++] = sl->items[i].tensor;
        }
    vn_optim_config oc;
    vn_optim_config_init(&oc, VN_OPTIM_SGD);
    oc.lr = 0.02;
    oc.momentum = 0.9;
    oc.weight_decay = 1e-4;
    ck_assert_msg(vn_optim_create(&s->opt, &oc, np, params, names, &err) == VN_OK, "%s",
                  err.msg);
    ck_assert_int_eq(vn_optim_zero_grad(s->opt), VN_OK);
}

static void side_free(side *s)
{
    vn_optim_destroy(s->opt);
    vn_ctx_destroy(s->ctx);
    vn_tensor_free(s->x);
    vn_vanillanet_destroy(s->m);
}

/* Forward, loss, backward; returns the loss and (when logits is given) the logits. */
static float side_step(side *s, const int32_t *labels, float *logits)
{
    vn_ctx_reset(s->ctx);
    vn_tensor *y = vn_vanillanet_forward(s->ctx, s->m, s->x);
    vn_tensor *loss = vn_cross_entropy(s->ctx, y, labels, NULL, 0.1f);
    ck_assert_msg(loss, "forward: %s", vn_ctx_error(s->ctx));
    float l;
    ck_assert_int_eq(vn_tensor_read(loss, &l), VN_OK);
    if (logits) ck_assert_int_eq(vn_tensor_read(y, logits), VN_OK);
    ck_assert_msg(vn_backward(s->ctx, loss) == VN_OK, "backward: %s", vn_ctx_error(s->ctx));
    vn_ctx_reset(s->ctx);
    return l;
}

static void inputs(float **x, int32_t *labels)
{
    *x = malloc(sizeof(float) * BATCH * SIZE * SIZE * 3);
    vn_test_fill_uniform(*x, BATCH * SIZE * SIZE * 3, 77, -2.0f, 2.0f);
    for (int i = 0; i < BATCH; i++) labels[i] = (i * 7) % CLASSES;
}

/* One forward and backward of vanillanet_5 on both devices: the errors of the logits and
 * loss, the worst (floored) per-tensor gradient error and the relative L2 error of all the
 * gradients together (||got - want|| / ||want||). */
typedef struct model_errs {
    double logits, loss, grad_worst, grad_l2;
    char worst_name[96]; /* a copy: the models are gone when it is printed */
    int floored;
} model_errs;

static model_errs model_case(void)
{
    float *x;
    int32_t labels[BATCH];
    inputs(&x, labels);
    side a, b;
    side_make(&a, VN_DEVICE_CPU, x, false);
    side_make(&b, VN_DEVICE_CUDA, x, false);
    for (int i = 0; i < a.m->state.n; i++)
        if (a.m->state.items[i].kind == VN_STATE_PARAM) {
            ck_assert_int_eq(vn_tensor_zero_grad(a.m->state.items[i].tensor), VN_OK);
            ck_assert_int_eq(vn_tensor_zero_grad(b.m->state.items[i].tensor), VN_OK);
        }
    float la[BATCH * CLASSES], lb[BATCH * CLASSES];
    float loss_a = side_step(&a, labels, la), loss_b = side_step(&b, labels, lb);
    model_errs r = {0};
    r.logits = vn_test_rel_err(lb, la, BATCH * CLASSES);
    r.loss = vn_test_rel_err(&loss_b, &loss_a, 1);
    const char *worst_name = "";
    r.grad_worst = state_err(&a.m->state, &b.m->state, true, &worst_name, &r.floored);
    snprintf(r.worst_name, sizeof r.worst_name, "%s", worst_name);
    double d2 = 0.0, w2 = 0.0;
    for (int i = 0; i < a.m->state.n; i++) {
        const vn_state_item *it = &a.m->state.items[i];
        if (it->kind != VN_STATE_PARAM) continue;
        float *g = host_copy(b.m->state.items[i].tensor, true);
        for (int64_t j = 0; j < it->tensor->numel; j++) {
            double d = (double)g[j] - (double)it->tensor->grad[j];
            d2 += d * d;
            w2 += (double)it->tensor->grad[j] * (double)it->tensor->grad[j];
        }
        free(g);
    }
    r.grad_l2 = sqrt(d2 / fmax(w2, 1e-300));
    side_free(&a);
    side_free(&b);
    free(x);
    return r;
}

static void report(const char *label, const model_errs *r)
{
    printf("  vanillanet_5%s: logits rel err %.3g, loss %.3g, gradients: worst %.3g (%s; %d "
           "tensors under the 1%% floor), all together (L2) %.3g\n",
           label, r->logits, r->loss, r->grad_worst, r->worst_name, r->floored, r->grad_l2);
}

START_TEST(model_forward_backward)
{
    model_errs r = model_case();
    report("", &r);
    ck_assert_msg(r.logits <= 1e-4 && r.loss <= 1e-4, "logits %g, loss %g > 1e-4", r.logits,
                  r.loss);
    ck_assert_msg(r.grad_worst <= 1e-3, "gradient of %s: rel err %g > 1e-3", r.worst_name,
                  r.grad_worst);
}
END_TEST

/* bf16 autocast of the 1x1 convolutions and the classifier (5 GEMMs deep) against the FP32
 * CPU: logits and loss within 1e-1, all the gradients together within 3e-1 (L2). Measured on
 * an H200: logits 3.8e-2, loss 1.4e-4, gradients 0.205 (L2). A single tensor's gradient is
 * not bounded: those of the weights in front of a training-mode BatchNorm are sums that
 * cancel to far below their terms, and a bf16 rounding of the terms (2^-9) is a large part of
 * what is left (0.5 of stages.1.conv2.0.weight's largest value there). A wrong product
 * (operands swapped, a lost accumulation) is off by far more than these bounds. */
START_TEST(model_bf16)
{
    ck_assert_int_eq(vn_device_set_bf16(VN_DEVICE_CUDA, true), VN_OK);
    model_errs r = model_case();
    ck_assert_int_eq(vn_device_set_bf16(VN_DEVICE_CUDA, false), VN_OK);
    report(" (bf16)", &r);
    ck_assert_msg(r.logits <= 1e-1 && r.loss <= 1e-1, "bf16: logits %g, loss %g > 1e-1",
                  r.logits, r.loss);
    ck_assert_msg(r.grad_l2 <= 3e-1, "bf16: gradients (L2) %g > 3e-1", r.grad_l2);
}
END_TEST

START_TEST(train_50_steps)
{
    float *x;
    int32_t labels[BATCH];
    inputs(&x, labels);
    side a, b;
    side_make(&a, VN_DEVICE_CPU, x, true);
    side_make(&b, VN_DEVICE_CUDA, x, true);
    float la[50], lb[50];
    vn_error err = {0};
    for (int s = 0; s < 50; s++) {
        la[s] = side_step(&a, labels, NULL);
        lb[s] = side_step(&b, labels, NULL);
        ck_assert_msg(vn_optim_step(a.opt, &err) == VN_OK, "%s", err.msg);
        ck_assert_msg(vn_optim_step(b.opt, &err) == VN_OK, "%s", err.msg);
        ck_assert_int_eq(vn_optim_zero_grad(a.opt), VN_OK);
        ck_assert_int_eq(vn_optim_zero_grad(b.opt), VN_OK);
    }
    printf("  losses: step 1 cpu %.5f cuda %.5f; step 50 cpu %.5f cuda %.5f\n", (double)la[0],
           (double)lb[0], (double)la[49], (double)lb[49]);
    expect_rel("50 steps: losses", lb, la, 50, 1e-2);
    const char *worst_name = "";
    int floored;
    double worst = state_err(&a.m->state, &b.m->state, false, &worst_name, &floored);
    printf("  50 steps: worst rel err of the weights and buffers %.3g (%s; %d under the floor)\n",
           worst, worst_name, floored);
    ck_assert_msg(worst <= 2e-2, "weights after 50 steps: rel err %g > 2e-2", worst);
    side_free(&a);
    side_free(&b);
    free(x);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("cuda-model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, optim_sgd);
    tcase_add_test(tc, optim_adamw);
    tcase_add_test(tc, optim_lamb);
    tcase_add_test(tc, ema);
    tcase_add_test(tc, model_forward_backward);
    tcase_add_test(tc, model_bf16);
    tcase_add_test(tc, train_50_steps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    char why[256];
    if (vn_device_check(VN_DEVICE_CUDA, why, sizeof why) != VN_OK) {
        printf("SKIP: the CUDA model suite needs a CUDA device: %s\n", why);
        return 77;
    }
    return vn_test_run(model_suite(), false);
}
