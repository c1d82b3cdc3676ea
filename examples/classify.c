/* Loads a deploy (or training) weight file written by `vanilla export` and classifies an
 * image file, printing the top-5 classes: the smallest complete use of a trained model.
 *
 *   build/examples/classify runs/fashion_mnist/deploy.safetensors image.png
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "train/vn_trainer.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: classify MODEL.safetensors IMAGE\n");
        return 2;
    }
    vn_error err = {0};
    vn_ckpt_info info;
    vn_vanillanet *m = NULL;
    if (vn_open_model(argv[1], -1, &m, &info, &err) != VN_OK) {
        fprintf(stderr, "classify: %s\n", err.msg);
        return 1;
    }
    if (!info.has_data) {
        fprintf(stderr, "classify: %s does not record its preprocessing (export it with vanilla export)\n", argv[1]);
        return 1;
    }
    /* The eval transform the model was trained with: resize, center crop, normalise. */
    vn_loader_config lc;
    vn_loader_config_init(&lc);
    vn_loader_config_eval(&lc);
    lc.input_size = info.input_size, lc.channels = info.channels, lc.crop_pct = info.crop_pct;
    lc.interpolation = info.interpolation;
    for (int c = 0; c < 3; c++) lc.mean[c] = info.mean[c], lc.std[c] = info.std[c];
    vn_tensor *x = vn_tensor_new4(1, lc.input_size, lc.input_size, lc.channels, false);
    if (vn_load_eval_image(argv[2], &lc, x->data, &err) != VN_OK) {
        fprintf(stderr, "classify: %s\n", err.msg);
        return 1;
    }
    vn_ctx *ctx = vn_ctx_create();
    vn_ctx_set_grad(ctx, false);
    vn_tensor *y = vn_vanillanet_forward(ctx, m, x);
    if (!y) {
        fprintf(stderr, "classify: %s\n", vn_ctx_error(ctx));
        return 1;
    }
    int nc = m->cfg.num_classes;
    double mx = y->data[0], se = 0;
    for (int c = 0; c < nc; c++) mx = fmax(mx, y->data[c]);
    for (int c = 0; c < nc; c++) se += exp(y->data[c] - mx);
    printf("%s (%s model, %d classes):\n", argv[2], m->deploy ? "deploy" : "training", nc);
    for (int k = 0, last = -1; k < 5 && k < nc; k++) {
        int best = -1; /* k-th largest: the largest below the previous pick */
        for (int c = 0; c < nc; c++) {
            bool below = last < 0 || y->data[c] < y->data[last] || (y->data[c] == y->data[last] && c > last);
            if (below && (best < 0 || y->data[c] > y->data[best])) best = c;
        }
        last = best;
        printf("  %d. %-20s %6.2f%%\n", k + 1, info.class_names ? info.class_names[best] : "?",
               100.0 * exp(y->data[best] - mx) / se);
    }
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
    vn_vanillanet_destroy(m);
    vn_ckpt_info_free(&info);
    return 0;
}
