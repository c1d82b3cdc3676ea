/* A network that is not VanillaNet, trained with the library's pieces directly: the data
 * loader, the autograd ops, an optimizer with a cosine schedule. Two 3x3 conv layers with
 * BatchNorm and ReLU, max-pooling, global average pooling and a linear classifier.
 *
 *   build/examples/train_convnet datasets/fashion-mnist [epochs]
 */
#include <stdio.h>
#include <stdlib.h>

#include "data/vn_loader.h"
#include "layers/vn_layers.h"
#include "optim/vn_optim.h"
#include "optim/vn_schedule.h"

typedef struct convnet {
    vn_conv2d_layer c1, c2;
    vn_bn_layer b1, b2;
    vn_tensor *fc_w, *fc_b;
    vn_state_list state;
} convnet;

static vn_tensor *forward(vn_ctx *ctx, convnet *n, vn_tensor *x, bool training)
{
    vn_tensor *h = vn_relu(ctx, vn_bn_layer_forward(ctx, &n->b1, vn_conv2d_layer_forward(ctx, &n->c1, x), training));
    h = vn_max_pool2d(ctx, h, 2);                                       /* 28 -> 14 */
    h = vn_relu(ctx, vn_bn_layer_forward(ctx, &n->b2, vn_conv2d_layer_forward(ctx, &n->c2, h), training));
    h = vn_flatten(ctx, vn_global_avg_pool(ctx, vn_max_pool2d(ctx, h, 2))); /* 14 -> 7 -> 1 */
    return vn_linear(ctx, h, n->fc_w, n->fc_b);
}

static int run(const char *root, int epochs)
{
    char train_dir[1024], val_dir[1024];
    snprintf(train_dir, sizeof train_dir, "%s/train", root);
    snprintf(val_dir, sizeof val_dir, "%s/val", root);
    vn_error err = {0};
    vn_loader_config lc;
    vn_loader_config_init(&lc);
    lc.root = train_dir;
    lc.input_size = 28, lc.channels = 1, lc.augment = VN_AUGMENT_NONE, lc.crop_pct = 1.0;
    lc.mean[0] = 0.286f, lc.std[0] = 0.353f, lc.batch_size = 128, lc.seed = 1;
    vn_loader *train = NULL, *val = NULL;
    if (vn_loader_open(&lc, &train, &err) != VN_OK) goto fail;
    vn_loader_config_eval(&lc);
    lc.root = val_dir;
    if (vn_loader_open(&lc, &val, &err) != VN_OK) goto fail;
    int nc = vn_loader_num_classes(train);

    convnet n = {0};
    vn_rng rng;
    vn_rng_seed(&rng, 1, 0, 0);
    vn_conv2d_layer_init(&n.c1, 1, 32, 3, 3, VN_CONV(1, 1, 1), true);
    vn_conv2d_layer_init(&n.c2, 32, 64, 3, 3, VN_CONV(1, 1, 1), true);
    vn_conv2d_layer_reset(&n.c1, &rng, 0.3);
    vn_conv2d_layer_reset(&n.c2, &rng, 0.06);
    vn_bn_layer_init(&n.b1, 32, 1e-5f);
    vn_bn_layer_init(&n.b2, 64, 1e-5f);
    n.fc_w = vn_tensor_new(2, (int64_t[]){nc, 64}, true);
    n.fc_b = vn_tensor_new(1, (int64_t[]){nc}, true);
    for (int64_t i = 0; i < n.fc_w->numel; i++) n.fc_w->data[i] = (float)(0.1 * vn_rng_normal(&rng));
    vn_state_list_init(&n.state);
    vn_conv2d_layer_register(&n.c1, &n.state, "c1.");
    vn_bn_layer_register(&n.b1, &n.state, "b1.");
    vn_conv2d_layer_register(&n.c2, &n.state, "c2.");
    vn_bn_layer_register(&n.b2, &n.state, "b2.");
    vn_state_add(&n.state, "fc.", "weight", VN_STATE_PARAM, n.fc_w, NULL);
    vn_state_add(&n.state, "fc.", "bias", VN_STATE_PARAM, n.fc_b, NULL);

    vn_tensor *params[16];
    int np = 0;
    for (int i = 0; i < n.state.n; i++)
        if (n.state.items[i].kind == VN_STATE_PARAM) params[np++] = n.state.items[i].tensor;
    vn_optim_config oc;
    vn_optim_config_init(&oc, VN_OPTIM_ADAMW);
    oc.weight_decay = 0.01;
    vn_optim *opt = NULL;
    if (vn_optim_create(&opt, &oc, np, params, NULL, &err) != VN_OK) goto fail;
    vn_schedule lr;
    int64_t steps = vn_loader_batches_per_epoch(train);
    vn_schedule_cosine(&lr, 3e-3, 1e-5, epochs, steps, 0, steps / 2);

    vn_ctx *ctx = vn_ctx_create();
    int64_t it = 0;
    for (int e = 0; e < epochs; e++) {
        vn_loader_start_epoch(train, e, 0, &err);
        vn_batch b;
        double loss_sum = 0;
        int nb = 0;
        while (vn_loader_next(train, &b, &err) == VN_OK && b.size > 0) {
            if (vn_optim_set_lr(opt, vn_schedule_value(&lr, it++)) != VN_OK) {
                fprintf(stderr, "train_convnet: the schedule gave an lr the optimizer refuses\n");
                return 1;
            }
            vn_tensor *loss = vn_cross_entropy(ctx, forward(ctx, &n, b.images, true), b.labels, NULL, 0.0f);
            if (!loss || vn_backward(ctx, loss) != VN_OK) {
                fprintf(stderr, "train_convnet: %s\n", vn_ctx_error(ctx));
                return 1;
            }
            loss_sum += loss->data[0];
            nb++;
            if (vn_optim_step(opt, &err) != VN_OK) goto fail;
            vn_optim_zero_grad(opt);
            vn_ctx_reset(ctx);
            vn_loader_release(train, &b);
        }
        /* Evaluation: eval-mode BatchNorm, no tape. */
        vn_ctx_set_grad(ctx, false);
        vn_loader_start_epoch(val, 0, 0, &err);
        int64_t correct = 0, total = 0;
        while (vn_loader_next(val, &b, &err) == VN_OK && b.size > 0) {
            vn_tensor *y = forward(ctx, &n, b.images, false);
            for (int i = 0; i < b.size; i++) {
                int best = 0;
                for (int c = 1; c < nc; c++)
                    if (y->data[i * nc + c] > y->data[i * nc + best]) best = c;
                correct += best == b.labels[i];
            }
            total += b.size;
            vn_ctx_reset(ctx);
            vn_loader_release(val, &b);
        }
        vn_ctx_set_grad(ctx, true);
        printf("epoch %d: train loss %.4f, val top-1 %.2f%% (%lld images)\n", e, loss_sum / nb,
               100.0 * (double)correct / (double)total, (long long)total);
    }
    vn_ctx_destroy(ctx);
    vn_optim_destroy(opt);
    vn_loader_close(train);
    vn_loader_close(val);
    return 0;
fail:
    fprintf(stderr, "train_convnet: %s\n", err.msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: train_convnet DATA_ROOT [epochs]   (DATA_ROOT has train/ and val/)\n");
        return 2;
    }
    vn_set_threads(0);
    return run(argv[1], argc > 2 ? atoi(argv[2]) : 2);
}
