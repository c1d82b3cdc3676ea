/* Detection evaluation (models/vn_detect_eval.h) against re-implementations of Ultralytics
 * 8.3's non_max_suppression (torchvision nms), match_predictions and ap_per_class
 * (tests/reference/gen_detect_eval.py): decoded boxes and scores, the NMS results in both
 * validation and predict settings, the true-positive matrix and per-class P, R, AP50,
 * AP50-95 and their means on recorded detections.
 * Tolerances: decode 1e-5 (boxes, relative to 1 pixel) and 1e-6 (scores); NMS results exact
 * in count, order and class, boxes and scores as decoded; metrics 1e-9. */
#include "vn_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/vn_detect_eval.h"

static const double *f64(const vn_st_file *f, const char *name, int64_t n)
{
    const vn_st_entry *e = vn_st_find(f, name);
    ck_assert_msg(e && e->dtype == VN_DTYPE_F64 && e->numel == n, "fixture entry %s", name);
    return e->data;
}

START_TEST(test_decode_and_nms)
{
    vn_st_file *f = vn_test_fixture("detect/eval.safetensors");
    const int nc = 4, reg_max = 8;
    vn_tensor *p[VN_YOLO_LEVELS];
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        char k[8];
        snprintf(k, sizeof k, "p%d", l);
        p[l] = vn_test_tensor(f, k, false);
    }
    const vn_st_entry *be = vn_st_find(f, "boxes");
    int64_t n = be->shape[0], A = be->shape[1];
    float *boxes = malloc((size_t)(A * 4) * sizeof *boxes), *scores = malloc((size_t)(A * nc) * sizeof *scores);
    for (int64_t img = 0; img < n; img++) {
        vn_yolo_decode(p, nc, reg_max, img, boxes, scores);
        ck_assert(vn_test_close("boxes", boxes, vn_test_f32(f, "boxes", -1) + img * A * 4, A * 4, 1e-4, 1e-6));
        ck_assert(vn_test_close("scores", scores, vn_test_f32(f, "scores", -1) + img * A * nc, A * nc, 1e-6, 1e-6));
        for (int mode = 0; mode < 2; mode++) {
            vn_nms_params np;
            vn_nms_params_val(&np);
            if (mode == 1) {
                np.conf = 0.25f;
                np.multi_label = false;
            }
            char key[16];
            snprintf(key, sizeof key, "%s%lld", mode ? "pred" : "val", (long long)img);
            const vn_st_entry *e = vn_st_find(f, key);
            ck_assert_ptr_nonnull(e);
            const float *want = e->data;
            /* Run NMS on the reference decode so that only NMS is compared here. */
            const float *rb = vn_test_f32(f, "boxes", -1) + img * A * 4;
            const float *rs = vn_test_f32(f, "scores", -1) + img * A * nc;
            vn_detection *det;
            int n_det;
            ck_assert_int_eq(vn_nms(rb, rs, A, nc, &np, &det, &n_det, NULL), VN_OK);
            ck_assert_msg(n_det == e->shape[0], "%s: %d kept, PyTorch %lld", key, n_det,
                          (long long)e->shape[0]);
            for (int d = 0; d < n_det; d++) {
                const float *w = want + 6 * d;
                ck_assert_msg(det[d].cls == (int)w[5] && det[d].conf == w[4] && det[d].x1 == w[0] &&
                              det[d].y1 == w[1] && det[d].x2 == w[2] && det[d].y2 == w[3],
                              "%s detection %d: (%g %g %g %g %g %d), want (%g %g %g %g %g %d)", key,
                              d, det[d].x1, det[d].y1, det[d].x2, det[d].y2, det[d].conf, det[d].cls,
                              w[0], w[1], w[2], w[3], w[4], (int)w[5]);
            }
            free(det);
        }
    }
    free(boxes);
    free(scores);
    for (int l = 0; l < VN_YOLO_LEVELS; l++) vn_tensor_free(p[l]);
    vn_st_close(f);
}
END_TEST

START_TEST(test_metrics)
{
    vn_st_file *f = vn_test_fixture("detect/eval.safetensors");
    const int nc = 5;
    const vn_st_entry *de = vn_st_find(f, "det"), *le = vn_st_find(f, "lab");
    int64_t nd = de->shape[0], nl = le->shape[0];
    const float *dd = de->data, *ld = le->data;
    const uint8_t *want_correct = vn_st_find(f, "correct")->data;
    vn_det_stats st;
    ck_assert_int_eq(vn_det_stats_init(&st, nc), VN_OK);
    int64_t di = 0, li = 0;
    for (int img = 0; img < 24; img++) {
        vn_detection det[64];
        vn_yolo_gt lab[64];
        int n_det = 0, n_lab = 0;
        for (; di < nd && (int)dd[7 * di] == img; di++)
            det[n_det++] = (vn_detection){dd[7 * di + 1], dd[7 * di + 2], dd[7 * di + 3],
                                          dd[7 * di + 4], dd[7 * di + 5], (int32_t)dd[7 * di + 6]};
        for (; li < nl && (int)ld[6 * li] == img; li++)
            lab[n_lab++] = (vn_yolo_gt){img, (int32_t)ld[6 * li + 1], ld[6 * li + 2], ld[6 * li + 3],
                                        ld[6 * li + 4], ld[6 * li + 5]};
        int64_t before = st.n_det;
        ck_assert_int_eq(vn_det_stats_add(&st, det, n_det, lab, n_lab, NULL), VN_OK);
        for (int64_t k = 0; k < (int64_t)n_det * VN_DET_IOU_STEPS; k++)
            ck_assert_msg(st.correct[before * VN_DET_IOU_STEPS + k] ==
                          want_correct[before * VN_DET_IOU_STEPS + k],
                          "image %d detection %lld threshold %lld: correct %d, want %d", img,
                          (long long)(k / VN_DET_IOU_STEPS), (long long)(k % VN_DET_IOU_STEPS),
                          st.correct[before * VN_DET_IOU_STEPS + k],
                          want_correct[before * VN_DET_IOU_STEPS + k]);
    }
    ck_assert(di == nd && li == nl);
    vn_det_metrics m;
    ck_assert_int_eq(vn_det_metrics_compute(&st, &m, NULL), VN_OK);
    const double *p = f64(f, "p", nc), *r = f64(f, "r", nc), *ap50 = f64(f, "ap50", nc),
                 *ap = f64(f, "ap", nc), *present = f64(f, "present", nc), *sum = f64(f, "summary", 4);
    for (int c = 0; c < nc; c++) {
        fprintf(stderr, "class %d: labels %lld P %.6f (%.6f) R %.6f (%.6f) AP50 %.6f (%.6f) "
                "AP50-95 %.6f (%.6f)\n", c, (long long)m.n_labels[c], m.p[c], p[c], m.r[c], r[c],
                m.ap50[c], ap50[c], m.ap[c], ap[c]);
        ck_assert(m.present[c] == (present[c] != 0));
        ck_assert_double_eq_tol(m.p[c], p[c], 1e-9);
        ck_assert_double_eq_tol(m.r[c], r[c], 1e-9);
        ck_assert_double_eq_tol(m.ap50[c], ap50[c], 1e-9);
        ck_assert_double_eq_tol(m.ap[c], ap[c], 1e-9);
    }
    fprintf(stderr, "all: P %.6f R %.6f mAP50 %.6f mAP50-95 %.6f (numpy %.6f %.6f %.6f %.6f)\n",
            m.mp, m.mr, m.map50, m.map, sum[0], sum[1], sum[2], sum[3]);
    ck_assert_double_eq_tol(m.mp, sum[0], 1e-9);
    ck_assert_double_eq_tol(m.mr, sum[1], 1e-9);
    ck_assert_double_eq_tol(m.map50, sum[2], 1e-9);
    ck_assert_double_eq_tol(m.map, sum[3], 1e-9);
    vn_det_metrics_free(&m);
    vn_det_stats_free(&st);
    vn_st_close(f);
}
END_TEST

/* Hand-made cases: a perfect detector has P = R = 1 and AP 0.995 (Ultralytics' 101-point
 * interpolation ends at recall 1 with precision 0: the last of the 100 trapezoids counts half);
 * labels never detected lower the recall. */
START_TEST(test_metrics_edges)
{
    vn_det_stats st;
    vn_det_stats_init(&st, 2);
    vn_yolo_gt lab[2] = {{0, 0, 10, 10, 50, 50}, {0, 1, 60, 60, 90, 80}};
    vn_detection det[2] = {{10, 10, 50, 50, 0.9f, 0}, {60, 60, 90, 80, 0.8f, 1}};
    ck_assert_int_eq(vn_det_stats_add(&st, det, 2, lab, 2, NULL), VN_OK);
    vn_det_metrics m;
    ck_assert_int_eq(vn_det_metrics_compute(&st, &m, NULL), VN_OK);
    ck_assert_double_eq_tol(m.map50, 0.995, 1e-12);
    ck_assert_double_eq_tol(m.map, 0.995, 1e-12);
    ck_assert_double_eq_tol(m.mp, 1.0, 1e-12);
    ck_assert_double_eq_tol(m.mr, 1.0, 1e-12);
    vn_det_metrics_free(&m);
    /* a second image with two labels of class 0: 2 images, class 0 in both (3 labels),
     * class 1 in 1 (Ultralytics' nt_per_image and nt_per_class) */
    vn_yolo_gt two[2] = {{0, 0, 0, 0, 5, 5}, {0, 0, 10, 10, 20, 20}};
    ck_assert_int_eq(vn_det_stats_add(&st, NULL, 0, two, 2, NULL), VN_OK);
    ck_assert_int_eq(vn_det_metrics_compute(&st, &m, NULL), VN_OK);
    ck_assert(m.n_images == 2 && m.n_images_with[0] == 2 && m.n_images_with[1] == 1 &&
              m.n_labels[0] == 3 && m.n_labels[1] == 1);
    vn_det_metrics_free(&m);
    vn_det_stats_free(&st);
    vn_det_stats_init(&st, 2);
    ck_assert_int_eq(vn_det_stats_add(&st, det, 2, lab, 2, NULL), VN_OK);
    ck_assert_int_eq(vn_det_stats_add(&st, NULL, 0, lab, 2, NULL), VN_OK);
    ck_assert_int_eq(vn_det_metrics_compute(&st, &m, NULL), VN_OK);
    ck_assert_double_eq_tol(m.mr, 0.5, 1e-12); /* half the labels were never detected */
    vn_det_metrics_free(&m);
    vn_det_stats_free(&st);

    /* IoU exactly on a threshold counts as reaching it, as with Ultralytics' float32 box_iou
     * and torch.linspace thresholds: a box shifted 5 px off a 20 px label (IoU 300 / 500 = 0.6)
     * matches at 0.50, 0.55 and 0.60 (mAP50-95 3 x 0.995 / 10), and IoU 600 / 1200 = 0.5
     * matches at 0.50. (In double with the 1e-7 eps, both fell just short.) */
    vn_det_stats_init(&st, 2);
    vn_yolo_gt l6 = {0, 0, 0, 0, 20, 20};
    vn_detection d6 = {5, 0, 25, 20, 0.9f, 0};
    ck_assert_int_eq(vn_det_stats_add(&st, &d6, 1, &l6, 1, NULL), VN_OK);
    ck_assert_int_eq(vn_det_metrics_compute(&st, &m, NULL), VN_OK);
    ck_assert_double_eq_tol(m.map, 0.2985, 1e-12);
    vn_det_metrics_free(&m);
    vn_det_stats_free(&st);
    vn_det_stats_init(&st, 2);
    vn_yolo_gt l5 = {0, 0, 0, 0, 30, 30};
    vn_detection d5 = {10, 0, 40, 30, 0.9f, 0};
    ck_assert_int_eq(vn_det_stats_add(&st, &d5, 1, &l5, 1, NULL), VN_OK);
    ck_assert_int_eq(vn_det_metrics_compute(&st, &m, NULL), VN_OK);
    ck_assert_double_eq_tol(m.map50, 0.995, 1e-12);
    vn_det_metrics_free(&m);
    vn_det_stats_free(&st);

    /* NMS at an IoU of exactly 0.7 in float32 (a 10 x 7 box inside a 10 x 10 one, class 1,
     * shifted by 7680 as Ultralytics does): torchvision compares 0.7f < 0.7, so both stay. */
    const float nb[8] = {0, 0, 10, 10, 0, 0, 10, 7}, ns[4] = {0.1f, 0.9f, 0.1f, 0.8f};
    vn_nms_params np;
    vn_nms_params_val(&np);
    vn_detection *kept = NULL;
    int n_kept = 0;
    ck_assert_int_eq(vn_nms(nb, ns, 2, 2, &np, &kept, &n_kept, NULL), VN_OK);
    ck_assert_int_eq(n_kept, 4); /* both boxes, in both classes (multi-label) */
    free(kept);
    np.iou = 0.69;
    ck_assert_int_eq(vn_nms(nb, ns, 2, 2, &np, &kept, &n_kept, NULL), VN_OK);
    ck_assert_int_eq(n_kept, 2); /* below it: the lower-scored box of each class goes */
    free(kept);

    vn_det_stats_init(&st, 2);
    vn_yolo_gt bad = {0, 5, 0, 0, 1, 1};
    vn_error err = {0};
    ck_assert_int_ne(vn_det_stats_add(&st, NULL, 0, &bad, 1, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "class 5"), "%s", err.msg);
    vn_det_stats_free(&st);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("detect_eval");
    TCase *tc = tcase_create("eval");
    tcase_add_test(tc, test_decode_and_nms);
    tcase_add_test(tc, test_metrics);
    tcase_add_test(tc, test_metrics_edges);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return vn_test_run(suite(), true); }
