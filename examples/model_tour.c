/* A tour of the library API: build a VanillaNet, run training steps on random data with
 * plain SGD, anneal act_learn to 1, merge to the deploy form, check both give the same
 * outputs, and save the deploy weights (loadable by the official PyTorch model).
 *
 *   build/examples/model_tour [out.safetensors]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/vn_vanillanet.h"

int main(int argc, char **argv)
{
    const char *out = argc > 1 ? argv[1] : "model_tour_deploy.safetensors";
    vn_vanillanet_config cfg = {0};
    cfg.n_stages = 3;
    int dims[] = {32, 64, 96, 128}, strides[] = {1, 2, 2};
    for (int i = 0; i < 4; i++) cfg.dims[i] = dims[i];
    for (int i = 0; i < 3; i++) cfg.strides[i] = strides[i];
    cfg.act_num = 3, cfg.in_chans = 3, cfg.num_classes = 10;

    vn_error err = {0};
    vn_vanillanet *m = NULL;
    if (vn_vanillanet_create(&cfg, false, &m, &err) != VN_OK) {
        fprintf(stderr, "model_tour: %s\n", err.msg);
        return 1;
    }
    vn_vanillanet_init(m, 1);
    printf("model: %lld parameters (train form), %lld in deploy form\n",
           (long long)vn_state_numel(&m->state, VN_STATE_PARAM),
           (long long)vn_vanillanet_count_params(&cfg, true));

    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = vn_tensor_new4(8, 32, 32, 3, false);
    int32_t labels[8];
    vn_rng rng;
    vn_rng_seed(&rng, 7, 0, 0);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = (float)vn_rng_normal(&rng);
    for (int i = 0; i < 8; i++) labels[i] = i % 10;

    const int steps = 20;
    for (int step = 0; step < steps; step++) {
        vn_vanillanet_change_act(m, (float)step / (steps - 1)); /* deep training: 0 -> 1 */
        vn_tensor *loss = vn_cross_entropy(ctx, vn_vanillanet_forward(ctx, m, x), labels, NULL, 0.0f);
        if (!loss || vn_backward(ctx, loss) != VN_OK) {
            fprintf(stderr, "model_tour: %s\n", vn_ctx_error(ctx));
            return 1;
        }
        if (step % 5 == 0 || step == steps - 1)
            printf("step %2d  act_learn %.2f  loss %.4f\n", step, (double)m->act_learn,
                   (double)loss->data[0]);
        for (int i = 0; i < m->state.n; i++) { /* plain SGD, lr 0.05 */
            vn_state_item *e = &m->state.items[i];
            if (e->kind != VN_STATE_PARAM) continue;
            for (int64_t k = 0; k < e->tensor->numel; k++) {
                e->tensor->data[k] -= 0.05f * e->tensor->grad[k];
                e->tensor->grad[k] = 0.0f;
            }
        }
        vn_ctx_reset(ctx);
    }

    vn_vanillanet_set_training(m, false);
    vn_ctx_set_grad(ctx, false);
    vn_tensor *y = vn_vanillanet_forward(ctx, m, x);
    int64_t n = y->numel;
    float *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t i = 0; i < n; i++) ref[i] = y->data[i];
    vn_ctx_reset(ctx);
    if (vn_vanillanet_switch_to_deploy(m, false, &err) != VN_OK) {
        fprintf(stderr, "model_tour: %s\n", err.msg);
        return 1;
    }
    y = vn_vanillanet_forward(ctx, m, x);
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)y->data[i] - ref[i]));
        mr = fmax(mr, fabs((double)ref[i]));
    }
    printf("deploy vs train (eval mode): max |diff| %.3g, relative %.3g\n", md, md / mr);
    if (vn_vanillanet_save(m, out, &err) != VN_OK) {
        fprintf(stderr, "model_tour: %s\n", err.msg);
        return 1;
    }
    printf("deploy weights: %s (%lld parameters)\n", out,
           (long long)vn_state_numel(&m->state, VN_STATE_PARAM));
    free(ref);
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
    vn_vanillanet_destroy(m);
    return md / mr < 1e-4 ? 0 : 1;
}
