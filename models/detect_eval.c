/* Detection evaluation (see models/vn_detect_eval.h): decode, NMS, matching, ap_per_class.
 * Ties that Ultralytics leaves to an unstable sort (equal scores or confidences) are broken
 * by the earlier candidate here. */
#include "models/vn_detect_eval.h"
#include "models/yolo_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NMS_MAX_CANDIDATES 30000
#define IOU_EPS 1e-7f
#define AP_EPS 1e-16
#define CURVE_POINTS 1000

void vn_nms_params_val(vn_nms_params *p) { *p = (vn_nms_params){0.001f, 0.7, 300, true, false}; }

void vn_yolo_decode(vn_tensor *const *preds, int nc, int reg_max, int64_t img, float *boxes,
                    float *scores)
{
    const int r = reg_max, ch = 4 * r + nc;
    int64_t a = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        const int64_t h = preds[l]->shape[1], w = preds[l]->shape[2];
        const double s = 8 << l;
        for (int64_t k = 0; k < h * w; k++, a++) {
            const float *z = preds[l]->data + (img * h * w + k) * ch;
            double d[4];
            for (int side = 0; side < 4; side++) d[side] = vn__dfl_expect(z + side * r, r);
            double ax = (double)(k % w) + 0.5, ay = (double)(k / w) + 0.5;
            float *b = boxes + a * 4;
            b[0] = (float)((ax - d[0]) * s);
            b[1] = (float)((ay - d[1]) * s);
            b[2] = (float)((ax + d[2]) * s);
            b[3] = (float)((ay + d[3]) * s);
            for (int c = 0; c < nc; c++) scores[a * nc + c] = 1.0f / (1.0f + expf(-z[4 * r + c]));
        }
    }
}

/* ---- NMS ---------------------------------------------------------------------------------- */

/* Ultralytics' max_wh: non_max_suppression shifts each class's boxes by cls * 7680 */
#define NMS_CLASS_OFFSET 7680.0f

/* IoU of two x1, y1, x2, y2 boxes in float, operation for operation as torch computes it on
 * float32 tensors (so that a box exactly at a threshold falls on the same side): eps 0 and
 * the areas first for torchvision's nms, eps 1e-7 after the sum for Ultralytics' box_iou. */
static float iou4(const float *a, const float *b, float eps)
{
    float iw = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), ih = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    float inter = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
    float area_a = (a[2] - a[0]) * (a[3] - a[1]), area_b = (b[2] - b[0]) * (b[3] - b[1]);
    return inter / (area_a + area_b - inter + eps);
}

/* torchvision's nms IoU on Ultralytics' class-shifted boxes (x + cls * max_wh in float32). */
static float det_iou(const vn_detection *a, const vn_detection *b, bool agnostic)
{
    float oa = agnostic ? 0.0f : (float)a->cls * NMS_CLASS_OFFSET;
    float ob = agnostic ? 0.0f : (float)b->cls * NMS_CLASS_OFFSET;
    float pa[4] = {a->x1 + oa, a->y1 + oa, a->x2 + oa, a->y2 + oa};
    float pb[4] = {b->x1 + ob, b->y1 + ob, b->x2 + ob, b->y2 + ob};
    return iou4(pa, pb, 0.0f);
}

/* Candidates sorted by descending score, ties by position (a stable merge sort). */
static void sort_desc(vn_detection *d, vn_detection *tmp, int64_t n)
{
    if (n < 2) return;
    int64_t m = n / 2;
    sort_desc(d, tmp, m);
    sort_desc(d + m, tmp, n - m);
    int64_t i = 0, j = m, k = 0;
    while (i < m && j < n) tmp[k++] = d[j].conf > d[i].conf ? d[j++] : d[i++];
    while (i < m) tmp[k++] = d[i++];
    while (j < n) tmp[k++] = d[j++];
    memcpy(d, tmp, (size_t)n * sizeof *d);
}

int vn_nms(const float *boxes, const float *scores, int64_t n_anchors, int nc,
           const vn_nms_params *p, vn_detection **out, int *n_out, vn_error *err)
{
    *out = NULL;
    *n_out = 0;
    bool multi = p->multi_label && nc > 1;
    int64_t n = 0;
    for (int64_t a = 0; a < n_anchors; a++)
        for (int c = 0; c < nc; c++) n += scores[a * nc + c] > p->conf;
    if (!multi) n = n < n_anchors ? n : n_anchors;
    vn_detection *cand = malloc((size_t)(n ? n : 1) * sizeof *cand);
    vn_detection *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!cand || !tmp) {
        free(cand);
        free(tmp);
        return vn_error_set(err, VN_ERR_NOMEM, "nms: out of memory for %lld candidates",
                            (long long)n);
    }
    int64_t k = 0;
    for (int64_t a = 0; a < n_anchors; a++) {
        const float *s = scores + a * nc, *b = boxes + a * 4;
        if (multi) {
            for (int c = 0; c < nc; c++)
                if (s[c] > p->conf) cand[k++] = (vn_detection){b[0], b[1], b[2], b[3], s[c], c};
        } else {
            int best = 0;
            for (int c = 1; c < nc; c++) best = s[c] > s[best] ? c : best;
            if (s[best] > p->conf) cand[k++] = (vn_detection){b[0], b[1], b[2], b[3], s[best], best};
        }
    }
    sort_desc(cand, tmp, k);
    if (k > NMS_MAX_CANDIDATES) k = NMS_MAX_CANDIDATES;
    /* Greedy suppression in score order; tmp holds the kept ones. */
    int kept = 0;
    for (int64_t i = 0; i < k && kept < p->max_det; i++) {
        bool keep = true;
        for (int j = 0; j < kept && keep; j++)
            if ((p->agnostic || tmp[j].cls == cand[i].cls) &&
                (double)det_iou(&tmp[j], &cand[i], p->agnostic) > p->iou)
                keep = false;
        if (keep) tmp[kept++] = cand[i];
    }
    free(cand);
    *out = tmp;
    *n_out = kept;
    return VN_OK;
}

/* ---- matching ----------------------------------------------------------------------------- */

typedef struct det_match {
    int g, d;
    double iou;
} det_match;

/* Descending IoU; equal IoUs keep their (label-major) order. */
static void sort_matches(det_match *m, det_match *tmp, int n)
{
    if (n < 2) return;
    int h = n / 2, i = 0, j = h, k = 0;
    sort_matches(m, tmp, h);
    sort_matches(m + h, tmp, n - h);
    while (i < h && j < n) tmp[k++] = m[j].iou > m[i].iou ? m[j++] : m[i++];
    while (i < h) tmp[k++] = m[i++];
    while (j < n) tmp[k++] = m[j++];
    memcpy(m, tmp, (size_t)n * sizeof *m);
}

/* One threshold of match_predictions: the matches sorted by IoU, then for each detection
 * (ascending) its best match, then for each label the first of those in detection order. */
static void match_threshold(const det_match *sorted, int n, int n_det, int n_labels, int *best_g,
                            int *label_used, uint8_t *correct, int k)
{
    for (int d = 0; d < n_det; d++) best_g[d] = -1;
    for (int i = n - 1; i >= 0; i--) best_g[sorted[i].d] = sorted[i].g; /* first occurrence wins */
    for (int g = 0; g < n_labels; g++) label_used[g] = 0;
    for (int d = 0; d < n_det; d++) {
        int g = best_g[d];
        if (g < 0 || label_used[g]) continue;
        label_used[g] = 1;
        correct[d * VN_DET_IOU_STEPS + k] = 1;
    }
}

int vn_det_match(const vn_detection *det, int n_det, const vn_yolo_gt *labels, int n_labels,
                 uint8_t *correct)
{
    if (!n_det) return VN_OK;
    memset(correct, 0, (size_t)n_det * VN_DET_IOU_STEPS);
    if (!n_labels) return VN_OK;
    int rc = VN_ERR_NOMEM;
    det_match *all = malloc((size_t)n_det * (size_t)n_labels * sizeof *all);
    det_match *sel = malloc((size_t)n_det * (size_t)n_labels * sizeof *sel);
    det_match *tmp = malloc((size_t)n_det * (size_t)n_labels * sizeof *tmp);
    int *best_g = malloc((size_t)n_det * sizeof *best_g), *used = malloc((size_t)n_labels * sizeof *used);
    if (!all || !sel || !tmp || !best_g || !used) goto done;
    /* The thresholds: torch.linspace(0.5, 0.95, 10) in float32 (start + step * k for the
     * first half, end - step * (9 - k) for the rest, as its kernel), compared in float32. */
    float thr[VN_DET_IOU_STEPS];
    const float t0 = 0.5f, t1 = 0.95f, step = (t1 - t0) / (float)(VN_DET_IOU_STEPS - 1);
    for (int k = 0; k < VN_DET_IOU_STEPS; k++)
        thr[k] = k < VN_DET_IOU_STEPS / 2 ? t0 + step * (float)k
                                          : t1 - step * (float)(VN_DET_IOU_STEPS - 1 - k);
    int n = 0;
    for (int g = 0; g < n_labels; g++) {
        const vn_yolo_gt *t = &labels[g];
        float gb[4] = {t->x1, t->y1, t->x2, t->y2};
        for (int d = 0; d < n_det; d++) {
            if (det[d].cls != t->cls) continue;
            float db[4] = {det[d].x1, det[d].y1, det[d].x2, det[d].y2};
            float iou = iou4(gb, db, IOU_EPS);
            if (iou >= thr[0]) all[n++] = (det_match){g, d, iou};
        }
    }
    for (int k = 0; k < VN_DET_IOU_STEPS; k++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (all[i].iou >= thr[k]) sel[m++] = all[i];
        sort_matches(sel, tmp, m);
        match_threshold(sel, m, n_det, n_labels, best_g, used, correct, k);
    }
    rc = VN_OK;
done:
    free(all);
    free(sel);
    free(tmp);
    free(best_g);
    free(used);
    return rc;
}

/* ---- statistics and ap_per_class ------------------------------------------------------------ */

int vn_det_stats_init(vn_det_stats *s, int nc)
{
    memset(s, 0, sizeof *s);
    s->nc = nc;
    s->n_labels = calloc((size_t)nc, sizeof *s->n_labels);
    s->n_images_with = calloc((size_t)nc, sizeof *s->n_images_with);
    return s->n_labels && s->n_images_with ? VN_OK : VN_ERR_NOMEM;
}

void vn_det_stats_free(vn_det_stats *s)
{
    free(s->conf);
    free(s->cls);
    free(s->correct);
    free(s->n_labels);
    free(s->n_images_with);
    memset(s, 0, sizeof *s);
}

int vn_det_stats_add(vn_det_stats *s, const vn_detection *det, int n_det, const vn_yolo_gt *labels,
                     int n_labels, vn_error *err)
{
    for (int g = 0; g < n_labels; g++)
        if (labels[g].cls < 0 || labels[g].cls >= s->nc)
            return vn_error_set(err, VN_ERR_INVALID, "detection metrics: label class %d, the "
                                "model has %d", labels[g].cls, s->nc);
    if (s->n_det + n_det > s->cap_det) {
        int64_t cap = s->cap_det ? 2 * s->cap_det : 1024;
        while (cap < s->n_det + n_det) cap *= 2;
        float *c = realloc(s->conf, (size_t)cap * sizeof *c);
        if (c) s->conf = c;
        int32_t *k = realloc(s->cls, (size_t)cap * sizeof *k);
        if (k) s->cls = k;
        uint8_t *t = realloc(s->correct, (size_t)cap * VN_DET_IOU_STEPS);
        if (t) s->correct = t;
        if (!c || !k || !t) return vn_error_set(err, VN_ERR_NOMEM, "detection metrics: out of memory");
        s->cap_det = cap;
    }
    if (vn_det_match(det, n_det, labels, n_labels, s->correct + s->n_det * VN_DET_IOU_STEPS) != VN_OK)
        return vn_error_set(err, VN_ERR_NOMEM, "detection metrics: out of memory matching");
    for (int d = 0; d < n_det; d++) {
        s->conf[s->n_det + d] = det[d].conf;
        s->cls[s->n_det + d] = det[d].cls;
    }
    s->n_det += n_det;
    for (int g = 0; g < n_labels; g++) {
        s->n_labels[labels[g].cls]++;
        bool first = true; /* the image counts once per class */
        for (int h = 0; h < g && first; h++) first = labels[h].cls != labels[g].cls;
        s->n_images_with[labels[g].cls] += first;
    }
    s->n_images++;
    return VN_OK;
}

/* np.interp(x, xp, fp, left, right = fp[n - 1]) for increasing xp: the last j with
 * xp[j] <= x, exact at sample points, linear in between. */
static double interp(double x, const double *xp, const double *fp, int64_t n, double left)
{
    if (n == 0) return left;
    if (x < xp[0]) return left;
    if (x >= xp[n - 1]) return fp[n - 1];
    int64_t lo = 0, hi = n; /* first index with xp > x */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (x >= xp[mid]) lo = mid + 1;
        else hi = mid;
    }
    int64_t j = lo - 1;
    if (xp[j] == x) return fp[j];
    return (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]) * (x - xp[j]) + fp[j];
}

/* compute_ap: 101-point interpolated area under the precision envelope. */
static double compute_ap(const double *recall, const double *precision, int64_t n, double *mrec,
                         double *mpre)
{
    mrec[0] = 0.0;
    mpre[0] = 1.0;
    for (int64_t i = 0; i < n; i++) {
        mrec[i + 1] = recall[i];
        mpre[i + 1] = precision[i];
    }
    mrec[n + 1] = 1.0;
    mpre[n + 1] = 0.0;
    for (int64_t i = n; i >= 0; i--) mpre[i] = fmax(mpre[i], mpre[i + 1]);
    double ap = 0, prev_x = 0, prev_y = interp(0.0, mrec, mpre, n + 2, mpre[0]);
    for (int i = 1; i <= 100; i++) {
        double x = i == 100 ? 1.0 : i * 0.01, y = interp(x, mrec, mpre, n + 2, mpre[0]);
        ap += (x - prev_x) * (y + prev_y) / 2.0;
        prev_x = x;
        prev_y = y;
    }
    return ap;
}

void vn_det_metrics_free(vn_det_metrics *m)
{
    free(m->n_labels);
    free(m->n_images_with);
    free(m->p);
    free(m->r);
    free(m->ap50);
    free(m->ap);
    free(m->present);
    memset(m, 0, sizeof *m);
}

/* Stable order of the detections by descending confidence. */
static int64_t *conf_order(const vn_det_stats *s)
{
    int64_t n = s->n_det, *o = malloc((size_t)(n ? n : 1) * sizeof *o), *t = malloc((size_t)(n ? n : 1) * sizeof *t);
    if (!o || !t) {
        free(o);
        free(t);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) o[i] = i;
    for (int64_t w = 1; w < n; w *= 2) /* bottom-up merge sort */
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) t[k++] = s->conf[o[j]] > s->conf[o[i]] ? o[j++] : o[i++];
            while (i < mid) t[k++] = o[i++];
            while (j < hi) t[k++] = o[j++];
            memcpy(o + lo, t + lo, (size_t)(hi - lo) * sizeof *o);
        }
    free(t);
    return o;
}

/* One class: AP at every threshold and its P and R curves over CURVE_POINTS confidences.
 * idx: its detections in descending confidence. work: 2 (n + 2) + 2 n * 10 + n doubles. */
static void class_curves(const vn_det_stats *s, const int64_t *idx, int64_t n, int64_t n_l,
                         double *work, double *ap, double *p_curve, double *r_curve)
{
    double *negconf = work, *rec = negconf + n, *prec = rec + n * VN_DET_IOU_STEPS;
    double *mrec = prec + n * VN_DET_IOU_STEPS, *mpre = mrec + n + 2;
    for (int k = 0; k < VN_DET_IOU_STEPS; k++) {
        double tpc = 0, fpc = 0;
        for (int64_t i = 0; i < n; i++) {
            double tp = s->correct[idx[i] * VN_DET_IOU_STEPS + k];
            tpc += tp;
            fpc += 1.0 - tp;
            rec[k * n + i] = tpc / ((double)n_l + AP_EPS);
            prec[k * n + i] = tpc / (tpc + fpc);
        }
        ap[k] = compute_ap(rec + k * n, prec + k * n, n, mrec, mpre);
    }
    for (int64_t i = 0; i < n; i++) negconf[i] = -(double)s->conf[idx[i]];
    for (int i = 0; i < CURVE_POINTS; i++) {
        double x = i == CURVE_POINTS - 1 ? 1.0 : i * (1.0 / (CURVE_POINTS - 1));
        r_curve[i] = interp(-x, negconf, rec, n, 0.0);
        p_curve[i] = interp(-x, negconf, prec, n, 1.0);
    }
}

/* smooth(mean F1, 0.1).argmax(): a box filter of 101 points with edge padding. */
static int best_f1_index(const double *f1)
{
    const int half = 50;
    int best = 0;
    long double best_v = -1;
    for (int i = 0; i < CURVE_POINTS; i++) {
        long double sum = 0;
        for (int t = -half; t <= half; t++) {
            int j = i + t < 0 ? 0 : i + t >= CURVE_POINTS ? CURVE_POINTS - 1 : i + t;
            sum += f1[j];
        }
        if (sum > best_v) {
            best_v = sum;
            best = i;
        }
    }
    return best;
}

int vn_det_metrics_compute(const vn_det_stats *s, vn_det_metrics *m, vn_error *err)
{
    memset(m, 0, sizeof *m);
    const int nc = s->nc;
    m->nc = nc;
    m->n_images = s->n_images;
    m->n_labels = calloc((size_t)nc, sizeof *m->n_labels);
    m->n_images_with = calloc((size_t)nc, sizeof *m->n_images_with);
    m->p = calloc((size_t)nc, sizeof *m->p);
    m->r = calloc((size_t)nc, sizeof *m->r);
    m->ap50 = calloc((size_t)nc, sizeof *m->ap50);
    m->ap = calloc((size_t)nc, sizeof *m->ap);
    m->present = calloc((size_t)nc, sizeof *m->present);
    int64_t *order = conf_order(s), *idx = malloc((size_t)(s->n_det + 1) * sizeof *idx);
    double *curves = calloc((size_t)nc * 2 * CURVE_POINTS, sizeof *curves);
    double *work = malloc((size_t)(s->n_det * (2 * VN_DET_IOU_STEPS + 3) + 4) * sizeof *work);
    double *f1 = calloc(CURVE_POINTS, sizeof *f1);
    int rc = VN_OK;
    if (!m->n_labels || !m->n_images_with || !m->p || !m->r || !m->ap50 || !m->ap || !m->present || !order || !idx ||
        !curves || !work || !f1)
        rc = vn_error_set(err, VN_ERR_NOMEM, "detection metrics: out of memory");
    for (int c = 0; rc == VN_OK && c < nc; c++) {
        m->n_labels[c] = s->n_labels[c];
        m->n_images_with[c] = s->n_images_with[c];
        m->n_instances += s->n_labels[c];
        if (!s->n_labels[c]) continue;
        m->present[c] = true;
        m->n_present++;
        int64_t n = 0;
        for (int64_t i = 0; i < s->n_det; i++)
            if (s->cls[order[i]] == c) idx[n++] = order[i];
        if (!n) continue; /* no detections: P, R and AP stay 0 */
        double ap[VN_DET_IOU_STEPS], *pc = curves + (size_t)c * 2 * CURVE_POINTS;
        class_curves(s, idx, n, s->n_labels[c], work, ap, pc, pc + CURVE_POINTS);
        m->ap50[c] = ap[0];
        for (int k = 0; k < VN_DET_IOU_STEPS; k++) m->ap[c] += ap[k] / VN_DET_IOU_STEPS;
    }
    if (rc == VN_OK && m->n_present) {
        for (int i = 0; i < CURVE_POINTS; i++) {
            for (int c = 0; c < nc; c++) {
                if (!m->present[c]) continue;
                double p = curves[(size_t)c * 2 * CURVE_POINTS + i];
                double r = curves[(size_t)c * 2 * CURVE_POINTS + CURVE_POINTS + i];
                f1[i] += 2 * p * r / (p + r + AP_EPS);
            }
            f1[i] /= m->n_present;
        }
        int best = best_f1_index(f1);
        for (int c = 0; c < nc; c++) {
            if (!m->present[c]) continue;
            m->p[c] = curves[(size_t)c * 2 * CURVE_POINTS + best];
            m->r[c] = curves[(size_t)c * 2 * CURVE_POINTS + CURVE_POINTS + best];
            m->mp += m->p[c] / m->n_present;
            m->mr += m->r[c] / m->n_present;
            m->map50 += m->ap50[c] / m->n_present;
            m->map += m->ap[c] / m->n_present;
        }
    }
    free(order);
    free(idx);
    free(curves);
    free(work);
    free(f1);
    if (rc != VN_OK) vn_det_metrics_free(m);
    return rc;
}
