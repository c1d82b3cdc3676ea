/* Detector evaluation over a YOLO-format set, the seed's metrics table, and detection on one
 * image file (see train/vn_detect.h). */
#include "train/vn_detect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/vn_image.h"
#include "data/vn_transform.h"

/* The letterboxed pixels of a batch as the detector's input: [n, s, s, 3] in [0, 1]. */
static vn_tensor *batch_input(vn_ctx *ctx, const vn_det_sample *s, int n, int imgsz)
{
    vn_tensor *x = vn_ctx_tensor4(ctx, n, imgsz, imgsz, 3);
    if (!x) return NULL;
    int64_t per = (int64_t)imgsz * imgsz * 3;
    for (int b = 0; b < n; b++)
        for (int64_t k = 0; k < per; k++) x->data[b * per + k] = s[b].pix[k] * (1.0f / 255.0f);
    return x;
}

/* Detections of image img of the outputs y (boxes in input pixels). */
static int detect_outputs(vn_tensor *const *y, const vn_yolo_config *c, int64_t img,
                          const vn_nms_params *np, float *boxes, float *scores, vn_detection **det,
                          int *n_det, vn_error *err)
{
    int64_t A = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) A += y[l]->shape[1] * y[l]->shape[2];
    vn_yolo_decode(y, c->nc, c->reg_max, img, boxes, scores);
    return vn_nms(boxes, scores, A, c->nc, np, det, n_det, err);
}

void vn_det_clip_boxes(vn_detection *d, int n, const float rect[4])
{
    for (int i = 0; i < n; i++) {
        float *v[4] = {&d[i].x1, &d[i].y1, &d[i].x2, &d[i].y2};
        for (int q = 0; q < 4; q++) {
            float lo = rect[q % 2], hi = rect[2 + q % 2];
            *v[q] = *v[q] < lo ? lo : *v[q] > hi ? hi : *v[q];
        }
    }
}

static int64_t anchors_of(int imgsz)
{
    int64_t a = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) a += (int64_t)(imgsz >> (3 + l)) * (imgsz >> (3 + l));
    return a;
}

/* One batch [first, first + n) of ds: loaded, run, matched into st. */
static int eval_batch(vn_ctx *ctx, vn_yolo *m, const vn_det_dataset *ds, int64_t first, int n,
                      int imgsz, const vn_nms_params *np, vn_det_sample *s, float *boxes,
                      float *scores, vn_det_stats *st, int64_t *skipped, vn_error *err)
{
    const vn_yolo_config *c = vn_yolo_get_config(m);
    int rc = VN_OK, kept = 0;
    /* An image that cannot be read is reported and left out of the metrics (not replaced). */
    for (int b = 0; b < n && rc == VN_OK; b++) {
        vn_error e = {0};
        rc = vn_det_load_sample(ds, first + b, imgsz, NULL, 0, 0, &s[kept], &e);
        if (rc == VN_OK) kept++;
        else if (rc != VN_ERR_NOMEM) {
            vn_log(VN_LOG_WARN, "%s (skipped; not counted)", e.msg);
            (*skipped)++;
            rc = VN_OK;
        } else {
            vn_error_set(err, rc, "%s", e.msg);
        }
    }
    if (rc != VN_OK) return rc;
    n = kept;
    if (n == 0) return VN_OK;
    vn_ctx_reset(ctx);
    vn_tensor *x = batch_input(ctx, s, n, imgsz), *y[VN_YOLO_LEVELS];
    if (!x || vn_yolo_forward(ctx, m, x, y) != VN_OK)
        return vn_error_set(err, vn_ctx_status(ctx), "detector forward: %s", vn_ctx_error(ctx));
    for (int b = 0; b < n && rc == VN_OK; b++) {
        vn_detection *det = NULL;
        int nd = 0;
        rc = detect_outputs(y, c, b, np, boxes, scores, &det, &nd, err);
        /* Ultralytics scores boxes clipped to the original image (scale_boxes, clip_boxes):
         * here, to the picture's place on the letterbox */
        if (rc == VN_OK) vn_det_clip_boxes(det, nd, s[b].image_xyxy);
        vn_yolo_gt *lab = malloc(((size_t)s[b].n_boxes + 1) * sizeof *lab);
        if (rc == VN_OK && !lab) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        for (int k = 0; rc == VN_OK && k < s[b].n_boxes; k++) {
            const float *q = s[b].xyxy + 4 * k;
            lab[k] = (vn_yolo_gt){0, s[b].cls[k], q[0], q[1], q[2], q[3]};
        }
        if (rc == VN_OK) rc = vn_det_stats_add(st, det, nd, lab, s[b].n_boxes, err);
        free(lab);
        free(det);
    }
    vn_ctx_reset(ctx);
    return rc;
}

int vn_detect_evaluate(vn_ctx *ctx, vn_yolo *m, const vn_det_dataset *ds, int imgsz, int batch,
                       const vn_nms_params *np, vn_det_metrics *out, vn_error *err)
{
    return vn_detect_evaluate_until(ctx, m, ds, imgsz, batch, np, 1.0, out, NULL, err);
}

int vn_detect_evaluate_until(vn_ctx *ctx, vn_yolo *m, const vn_det_dataset *ds, int imgsz,
                             int batch, const vn_nms_params *np, double max_bad,
                             vn_det_metrics *out, const volatile sig_atomic_t *stop,
                             vn_error *err)
{
    memset(out, 0, sizeof *out);
    const vn_yolo_config *c = vn_yolo_get_config(m);
    int64_t N = vn_det_dataset_size(ds), A = anchors_of(imgsz);
    if (batch < 1) batch = 1;
    vn_det_sample *s = calloc((size_t)batch, sizeof *s);
    float *boxes = malloc((size_t)A * 4 * sizeof *boxes);
    float *scores = malloc((size_t)A * (size_t)c->nc * sizeof *scores);
    vn_det_stats st;
    int64_t skipped = 0;
    int rc = vn_det_stats_init(&st, c->nc);
    if (!s || !boxes || !scores || rc != VN_OK) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    bool grad = vn_ctx_set_grad(ctx, false);
    vn_yolo_set_training(m, false);
    for (int64_t i = 0; rc == VN_OK && i < N; i += batch) {
        if (stop && *stop) {
            rc = vn_error_set(err, VN_ERR_INTERRUPTED, "evaluation interrupted by a signal");
            break;
        }
        int n = (int)(N - i < batch ? N - i : batch);
        rc = eval_batch(ctx, m, ds, i, n, imgsz, np, s, boxes, scores, &st, &skipped, err);
    }
    if (rc == VN_OK && N > 0 && skipped == N)
        rc = vn_error_set(err, VN_ERR_FORMAT, "none of the %lld images could be read (see the "
                          "warnings above)", (long long)N);
    /* Images the scan skipped (no usable label file) count as unreadable too. */
    const int64_t scan_skipped = vn_det_dataset_skipped_count(ds);
    const int64_t all = N + scan_skipped, bad = skipped + scan_skipped;
    if (rc == VN_OK && all > 0 && (double)bad > max_bad * (double)all)
        rc = vn_error_set(err, VN_ERR_FORMAT, "%lld of %lld images could not be used (%.2f%%), "
                          "more than data.max_bad_fraction %.2f%% (see the warnings above)",
                          (long long)bad, (long long)all, 100.0 * (double)bad / (double)all,
                          100.0 * max_bad);
    vn_yolo_set_training(m, true);
    vn_ctx_set_grad(ctx, grad);
    if (rc == VN_OK) rc = vn_det_metrics_compute(&st, out, err);
    for (int b = 0; s && b < batch; b++) vn_det_sample_free(&s[b]);
    free(s);
    free(boxes);
    free(scores);
    vn_det_stats_free(&st);
    return rc;
}

void vn_det_metrics_print(FILE *f, const vn_det_metrics *m, const char *const *names)
{
    fprintf(f, "%22s %10s %10s %10s %10s %10s %10s\n", "Class", "Images", "Instances", "Box(P",
            "R", "mAP50", "mAP50-95)");
    /* Ultralytics 8.3's rows: "%22s" + "%11i" * 2 + "%11.3g" * 4, a class's images being those
     * with the class (nt_per_image) */
    fprintf(f, "%22s %10lld %10lld %10.3g %10.3g %10.3g %10.3g\n", "all", (long long)m->n_images,
            (long long)m->n_instances, m->mp, m->mr, m->map50, m->map);
    for (int c = 0; c < m->nc; c++)
        if (m->present[c])
            fprintf(f, "%22.22s %10lld %10lld %10.3g %10.3g %10.3g %10.3g\n", names ? names[c] : "?",
                    (long long)m->n_images_with[c], (long long)m->n_labels[c], m->p[c], m->r[c],
                    m->ap50[c], m->ap[c]);
}

/* ---- one image ---------------------------------------------------------------------------- */

/* The letterbox of Ultralytics' predictor (LetterBox(auto=False)) as the validation loader:
 * longer side to imgsz (ceil), bilinear, centred on grey 114. */
static int letterbox(const vn_image *img, int imgsz, uint8_t *out, double *r, int *left, int *top,
                     vn_error *err)
{
    *r = (double)imgsz / (img->width > img->height ? img->width : img->height);
    int w = (int)ceil(img->width * *r), h = (int)ceil(img->height * *r);
    w = w > imgsz ? imgsz : w < 1 ? 1 : w;
    h = h > imgsz ? imgsz : h < 1 ? 1 : h;
    uint8_t *tmp = malloc((size_t)w * h * 3);
    if (!tmp) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = w == img->width && h == img->height
                 ? (memcpy(tmp, img->data, (size_t)w * h * 3), VN_OK)
                 : vn_resize(img->data, img->width, img->height, 3, NULL, w, h, NULL,
                             VN_INTERP_BILINEAR, tmp, NULL, err);
    *top = (int)lround((imgsz - h) / 2.0 - 0.1);
    *left = (int)lround((imgsz - w) / 2.0 - 0.1);
    memset(out, 114, (size_t)imgsz * imgsz * 3);
    for (int y = 0; rc == VN_OK && y < h; y++)
        memcpy(out + ((size_t)(*top + y) * imgsz + *left) * 3, tmp + (size_t)y * w * 3, (size_t)w * 3);
    free(tmp);
    return rc;
}

/* Boxes from letterbox pixels back to the image's, clipped to it. */
static void unletterbox(vn_detection *d, int n, double r, int left, int top, int w, int h)
{
    for (int i = 0; i < n; i++) {
        float *v[4] = {&d[i].x1, &d[i].y1, &d[i].x2, &d[i].y2};
        for (int k = 0; k < 4; k++) {
            double q = ((double)*v[k] - (k % 2 ? top : left)) / r, hi = k % 2 ? h : w;
            *v[k] = (float)(q < 0 ? 0 : q > hi ? hi : q);
        }
    }
}

int vn_detect_image(vn_ctx *ctx, vn_yolo *m, const char *image, int imgsz, const vn_nms_params *np,
                    vn_detection **dets, int *n, vn_error *err)
{
    *dets = NULL;
    *n = 0;
    vn_image img = {0};
    int rc = vn_image_decode_file(NULL, image, 3, 0, &img, NULL, err);
    if (rc != VN_OK) return rc;
    vn_det_sample s = {0};
    s.pix = malloc((size_t)imgsz * imgsz * 3);
    int64_t A = anchors_of(imgsz);
    const vn_yolo_config *c = vn_yolo_get_config(m);
    float *boxes = malloc((size_t)A * 4 * sizeof *boxes);
    float *scores = malloc((size_t)A * (size_t)c->nc * sizeof *scores);
    double r = 1;
    int left = 0, top = 0;
    rc = s.pix && boxes && scores ? letterbox(&img, imgsz, s.pix, &r, &left, &top, err)
                                  : vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    bool grad = vn_ctx_set_grad(ctx, false);
    vn_yolo_set_training(m, false);
    vn_ctx_reset(ctx);
    vn_tensor *x = rc == VN_OK ? batch_input(ctx, &s, 1, imgsz) : NULL, *y[VN_YOLO_LEVELS];
    if (rc == VN_OK && (!x || vn_yolo_forward(ctx, m, x, y) != VN_OK))
        rc = vn_error_set(err, vn_ctx_status(ctx), "detector forward: %s", vn_ctx_error(ctx));
    if (rc == VN_OK) rc = detect_outputs(y, c, 0, np, boxes, scores, dets, n, err);
    if (rc == VN_OK) unletterbox(*dets, *n, r, left, top, img.width, img.height);
    vn_ctx_reset(ctx);
    vn_ctx_set_grad(ctx, grad);
    free(s.pix);
    free(boxes);
    free(scores);
    vn_image_free(&img);
    return rc;
}

/* ---- export --------------------------------------------------------------------------------- */

/* The Detect outputs of m on x, copied out (n floats at *out, malloc'd). */
static int outputs_of(vn_ctx *ctx, vn_yolo *m, vn_tensor *x, float **out, int64_t *n, vn_error *err)
{
    vn_ctx_reset(ctx);
    vn_tensor *y[VN_YOLO_LEVELS];
    if (vn_yolo_forward(ctx, m, x, y) != VN_OK)
        return vn_error_set(err, vn_ctx_status(ctx), "detector forward: %s", vn_ctx_error(ctx));
    *n = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) *n += y[l]->numel;
    *out = malloc((size_t)*n * sizeof **out);
    if (!*out) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int64_t k = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        memcpy(*out + k, y[l]->data, (size_t)y[l]->numel * sizeof **out);
        k += y[l]->numel;
    }
    vn_ctx_reset(ctx);
    return VN_OK;
}

int vn_detect_export(vn_yolo *m, const vn_detect_info *info, const char *path, bool force,
                     double *max_diff, double *max_ref, vn_error *err)
{
    *max_diff = *max_ref = 0;
    int sz = info->imgsz > 0 ? info->imgsz : 640;
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = vn_tensor_new4(2, sz, sz, 3, false);
    float *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    int rc = ctx && x ? VN_OK : vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    if (rc == VN_OK) {
        vn_rng rng;
        vn_rng_seed(&rng, 17, 0, 0);
        for (int64_t i = 0; i < x->numel; i++) x->data[i] = vn_rng_uniform(&rng);
        vn_ctx_set_grad(ctx, false);
        vn_yolo_set_training(m, false);
    }
    if (rc == VN_OK && !info->deploy) rc = outputs_of(ctx, m, x, &a, &na, err);
    if (rc == VN_OK && !info->deploy) rc = vn_yolo_switch_to_deploy(m, force, err);
    if (rc == VN_OK && !info->deploy) rc = outputs_of(ctx, m, x, &b, &nb, err);
    for (int64_t i = 0; rc == VN_OK && a && i < na && i < nb; i++) {
        double d = fabs((double)a[i] - b[i]), r = fabs((double)a[i]);
        if (d > *max_diff) *max_diff = d;
        if (r > *max_ref) *max_ref = r;
    }
    if (rc == VN_OK) {
        vn_detect_ckpt c = {m, NULL, NULL, NULL, (const char *const *)info->names, info->nc, info->imgsz,
                            NULL, false};
        rc = vn_detect_ckpt_save(path, &c, err);
    }
    free(a);
    free(b);
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
    return rc;
}
