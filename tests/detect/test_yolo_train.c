/* The detector's pieces composed: forward, assignment and loss, backward and plain SGD with
 * momentum on two synthetic 64x64 images (squares of two classes on a dark ground).
 * The assignment is made once, on the first step, and held: with a fresh model the
 * normalised target scores are tiny, so Ultralytics' loss starts low and grows as the model
 * learns and the targets sharpen; with the targets fixed the loss must fall, which checks
 * that the gradients of the whole network point downhill. Then the eval path (decode, NMS,
 * metrics) runs on the trained outputs; its figures are printed, not asserted.
 *
 * vn_detect_warmup: Ultralytics' warmup of the biases' lr and of SGD's momentum on a two-
 * parameter SGD, against the interpolation computed by hand. vn_detect_accumulate against
 * Ultralytics' max(1, int(numpy.interp(ni, [0, nw], [1, uf]).round())), values printed by
 * numpy 1.24 (round half to even: 1.5 -> 2, 2.5 -> 2). */
#include "vn_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/vn_detect_eval.h"
#include "optim/vn_optim.h"
#include "train/vn_detect.h"

#define STEPS 30

static void make_batch(vn_tensor *x, vn_yolo_gt *gts)
{
    const int64_t H = x->shape[1], W = x->shape[2];
    /* image 0: class 0 square at (8, 8)-(32, 32); class 1 at (36, 30)-(60, 58).
     * image 1: class 1 square at (4, 36)-(28, 60). */
    const float boxes[3][6] = {{0, 0, 8, 8, 32, 32}, {0, 1, 36, 30, 60, 58}, {1, 1, 4, 36, 28, 60}};
    vn_tensor_fill(x, -0.5f);
    for (int b = 0; b < 3; b++) {
        const float *q = boxes[b];
        gts[b] = (vn_yolo_gt){(int32_t)q[0], (int32_t)q[1], q[2], q[3], q[4], q[5]};
        for (int64_t y = (int64_t)q[3]; y < (int64_t)q[5]; y++)
            for (int64_t xx = (int64_t)q[2]; xx < (int64_t)q[4]; xx++) {
                float *px = x->data + (((int64_t)q[0] * H + y) * W + xx) * 3;
                px[0] = q[1] == 0 ? 1.0f : -0.2f;
                px[1] = 0.8f;
                px[2] = q[1] == 0 ? -0.2f : 1.0f;
            }
    }
}

START_TEST(test_overfit_two_images)
{
    vn_yolo_config cfg;
    vn_yolo_config_default(&cfg);
    vn_vanillanet_config *b = &cfg.backbone;
    b->n_stages = 3;
    int dims[4] = {16, 24, 32, 48};
    for (int i = 0; i < 4; i++) b->dims[i] = dims[i];
    for (int i = 0; i < 3; i++) b->strides[i] = 2;
    b->act_num = 1;
    cfg.nc = 2;
    cfg.width_multiple = 0.125f;
    vn_yolo *m;
    ck_assert_int_eq(vn_yolo_create(&cfg, &m, NULL), VN_OK);
    vn_yolo_init(m, 3);
    vn_yolo_change_act(m, 0.0f);
    const vn_state_list *l = vn_yolo_state(m);
    float **mom = calloc((size_t)l->n, sizeof *mom);
    vn_tensor *x = vn_tensor_new4(2, 64, 64, 3, false);
    vn_yolo_gt gts[3];
    make_batch(x, gts);
    vn_yolo_loss_params lp;
    vn_yolo_loss_params_default(&lp);
    vn_ctx *ctx = vn_ctx_create();
    double first = 0, last = 0, parts[3];
    vn_yolo_assignment as = {0};
    vn_detect_targets tg;
    for (int step = 0; step < STEPS; step++) {
        vn_ctx_reset(ctx);
        for (int i = 0; i < l->n; i++)
            if (l->items[i].kind == VN_STATE_PARAM) vn_tensor_zero_grad(l->items[i].tensor);
        vn_tensor *y[VN_YOLO_LEVELS];
        ck_assert_msg(vn_yolo_forward(ctx, m, x, y) == VN_OK, "%s", vn_ctx_error(ctx));
        if (step == 0) {
            ck_assert_int_eq(vn_yolo_assign(y, cfg.nc, cfg.reg_max, gts, 3, &lp, &as, NULL), VN_OK);
            tg = (vn_detect_targets){as.n_anchors, cfg.nc, cfg.reg_max, as.fg, as.box, as.score,
                                     as.anchor, as.score_sum, lp.box, lp.cls, lp.dfl};
        }
        vn_tensor *loss = vn_detect_loss(ctx, VN_YOLO_LEVELS, y, &tg, parts);
        ck_assert_msg(loss != NULL, "%s", vn_ctx_error(ctx));
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
        if (step % 10 == 0 || step == STEPS - 1)
            fprintf(stderr, "step %2d loss %.4f (box %.4f cls %.4f dfl %.4f)\n", step, last,
                    parts[0], parts[1], parts[2]);
        ck_assert_int_eq(vn_backward(ctx, loss), VN_OK);
        for (int i = 0; i < l->n; i++) { /* SGD, momentum 0.9, lr 0.01 */
            vn_tensor *t = l->items[i].tensor;
            if (l->items[i].kind != VN_STATE_PARAM || !t->grad) continue;
            if (!mom[i]) mom[i] = calloc((size_t)t->numel, sizeof(float));
            for (int64_t k = 0; k < t->numel; k++) {
                mom[i][k] = 0.9f * mom[i][k] + t->grad[k];
                t->data[k] -= 0.01f * mom[i][k];
            }
        }
    }
    ck_assert_msg(last < 0.7 * first, "loss %.4f -> %.4f (expected a fall of 30%% or more)", first, last);
    vn_yolo_assignment_free(&as);

    /* Training-mode outputs through decode, NMS and the metrics. */
    vn_ctx_reset(ctx);
    vn_ctx_set_grad(ctx, false);
    vn_tensor *y[VN_YOLO_LEVELS];
    ck_assert_int_eq(vn_yolo_forward(ctx, m, x, y), VN_OK);
    int64_t A = 8 * 8 + 4 * 4 + 2 * 2;
    float *boxes = malloc((size_t)A * 4 * sizeof(float)), *scores = malloc((size_t)A * 2 * sizeof(float));
    vn_det_stats st;
    vn_det_stats_init(&st, cfg.nc);
    vn_nms_params np;
    vn_nms_params_val(&np);
    for (int img = 0; img < 2; img++) {
        vn_yolo_decode(y, cfg.nc, cfg.reg_max, img, boxes, scores);
        vn_detection *det;
        int n_det;
        ck_assert_int_eq(vn_nms(boxes, scores, A, cfg.nc, &np, &det, &n_det, NULL), VN_OK);
        const vn_yolo_gt *lab = img == 0 ? gts : gts + 2;
        ck_assert_int_eq(vn_det_stats_add(&st, det, n_det, lab, img == 0 ? 2 : 1, NULL), VN_OK);
        free(det);
    }
    vn_det_metrics mt;
    ck_assert_int_eq(vn_det_metrics_compute(&st, &mt, NULL), VN_OK);
    fprintf(stderr, "overfit: P %.3f R %.3f mAP50 %.3f mAP50-95 %.3f\n", mt.mp, mt.mr, mt.map50, mt.map);
    vn_det_metrics_free(&mt);
    vn_det_stats_free(&st);
    free(boxes);
    free(scores);
    for (int i = 0; i < l->n; i++) free(mom[i]);
    free(mom);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_yolo_destroy(m);
}
END_TEST

/* Ultralytics: bias lr = interp(step, [0, W-1], [warmup_bias_lr, lr]); others from 0 (our
 * schedule's linspace warmup); SGD momentum = interp(step, [0, W-1], [warmup_momentum,
 * momentum]). W = 3, lr 0.01, warmup_bias_lr 0.1, momentum 0.8 -> 0.937, gradients 1: each
 * step's parameter change is -lr_i x buf, buf = m buf + 1 (buf = 1 at the first step). */
START_TEST(test_warmup_bias_lr_and_momentum)
{
    vn_config *cfg = malloc(sizeof *cfg);
    ck_assert_ptr_nonnull(cfg);
    vn_config_init(cfg);
    cfg->optim.momentum = 0.937;
    ck_assert(cfg->detect.warmup_bias_lr == 0.1 && cfg->detect.warmup_momentum == 0.8);
    int64_t sh[1] = {4};
    vn_tensor *p[2] = {vn_tensor_new(1, sh, true), vn_tensor_new(1, sh, true)};
    const char *names[2] = {"model.0.conv.weight", "model.0.bn.bias"};
    vn_optim_config oc;
    vn_optim_config_init(&oc, VN_OPTIM_SGD);
    oc.momentum = 0.937;
    oc.nesterov = false;
    oc.weight_decay = 0;
    vn_optim *o = NULL;
    vn_error err = {0};
    ck_assert_int_eq(vn_optim_create(&o, &oc, 2, p, names, &err), VN_OK);
    vn_schedule sc;
    vn_schedule_constant(&sc, 0.01, 1, 10, 0, 3);
    const double want_m[4] = {0.8, 0.8 + 0.137 * 0.5, 0.937, 0.937};
    const double want_add[4] = {0.1, 0.05, 0, 0};
    double buf = 0, w = 0, b = 0;
    for (int step = 0; step < 4; step++) {
        double lr = vn_schedule_value(&sc, step);
        vn_optim_set_lr(o, lr);
        vn_detect_warmup(cfg, o, &sc, step);
        ck_assert_double_eq_tol(vn_optim_get_config(o)->momentum, want_m[step], 1e-12);
        double lo, hi;
        vn_optim_lr_range(o, &lo, &hi);
        ck_assert_double_eq_tol(hi, lr + want_add[step], 1e-12);
        ck_assert_int_eq(vn_optim_zero_grad(o), VN_OK);
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < 4; i++) p[k]->grad[i] = 1.0f;
        ck_assert_int_eq(vn_optim_step(o, &err), VN_OK);
        buf = step == 0 ? 1.0 : want_m[step] * buf + 1.0;
        w -= lr * buf;
        b -= (lr + want_add[step]) * buf;
        ck_assert_double_eq_tol(p[0]->data[3], w, 1e-6);
        ck_assert_double_eq_tol(p[1]->data[3], b, 1e-6);
    }
    ck_assert(p[0]->data[0] != 0.0f && b < w); /* the bias moved further than the weight */
    /* AdamW: no momentum warmup (Ultralytics warms SGD's only); biases still warm. */
    vn_optim *a = NULL;
    vn_optim_config ac;
    vn_optim_config_init(&ac, VN_OPTIM_ADAMW);
    ck_assert_int_eq(vn_optim_create(&a, &ac, 2, p, names, &err), VN_OK);
    vn_optim_set_lr(a, 0);
    vn_detect_warmup(cfg, a, &sc, 0);
    ck_assert(vn_optim_get_config(a)->momentum == ac.momentum);
    double lo, hi;
    vn_optim_lr_range(a, &lo, &hi);
    ck_assert(lo == 0.0 && hi == 0.1);
    /* warmup_bias_lr 0: nothing added. */
    cfg->detect.warmup_bias_lr = 0;
    vn_detect_warmup(cfg, a, &sc, 0);
    vn_optim_lr_range(a, &lo, &hi);
    ck_assert(hi == 0.0);
    vn_optim_destroy(a);
    vn_optim_destroy(o);
    vn_tensor_free(p[0]);
    vn_tensor_free(p[1]);
    free(cfg);
}
END_TEST

/* Evaluation clips boxes to the picture on the letterbox, as Ultralytics clips them to the
 * original image: corners outside move to the edge, inside ones stay. */
START_TEST(test_clip_boxes)
{
    vn_detection d[2] = {{.x1 = -3.5f, .y1 = 10.0f, .x2 = 70.0f, .y2 = 20.0f},
                         {.x1 = 5.0f, .y1 = 12.0f, .x2 = 30.0f, .y2 = 60.0f}};
    const float pic[4] = {0, 16, 64, 48};
    vn_det_clip_boxes(d, 2, pic);
    ck_assert(d[0].x1 == 0.0f && d[0].y1 == 16.0f && d[0].x2 == 64.0f && d[0].y2 == 20.0f);
    ck_assert(d[1].x1 == 5.0f && d[1].y1 == 16.0f && d[1].x2 == 30.0f && d[1].y2 == 48.0f);
}
END_TEST

/* Ultralytics' accumulate(ni) during warmup, from numpy (see the file's comment). */
START_TEST(test_accumulate_ramp)
{
    static const int64_t a48[] = {1, 1, 2, 2, 2, 3, 3, 4, 4, 4};
    static const int64_t a310[] = {1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3};
    static const int64_t a46[] = {1, 2, 2, 2, 3, 4, 4, 4};
    for (int64_t i = 0; i < 10; i++) ck_assert_int_eq(vn_detect_accumulate(i, 8, 4, true), a48[i]);
    for (int64_t i = 0; i < 12; i++) ck_assert_int_eq(vn_detect_accumulate(i, 10, 3, true), a310[i]);
    for (int64_t i = 0; i < 8; i++) ck_assert_int_eq(vn_detect_accumulate(i, 6, 4, true), a46[i]);
    /* uf 8 over 100: numpy's value rises by one at ni 8, 22, 36, 51, 65, 79, 93. */
    static const int64_t up[] = {8, 22, 36, 51, 65, 79, 93};
    int64_t want = 1;
    for (int64_t i = 0; i < 110; i++) {
        for (int k = 0; k < 7; k++) want += i == up[k];
        ck_assert_int_eq(vn_detect_accumulate(i, 100, 8, true), want);
    }
    /* No ramp, no warmup, or update_freq 1: update_freq throughout. */
    for (int64_t i = 0; i < 12; i++) {
        ck_assert_int_eq(vn_detect_accumulate(i, 8, 4, false), 4);
        ck_assert_int_eq(vn_detect_accumulate(i, 0, 4, true), 4);
        ck_assert_int_eq(vn_detect_accumulate(i, 8, 1, true), 1);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("yolo_train");
    TCase *tc = tcase_create("train");
    tcase_add_test(tc, test_overfit_two_images);
    tcase_add_test(tc, test_warmup_bias_lr_and_momentum);
    tcase_add_test(tc, test_accumulate_ramp);
    tcase_add_test(tc, test_clip_boxes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return vn_test_run(suite(), true); }
