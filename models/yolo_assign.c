/* Ultralytics 8.3's TaskAlignedAssigner (utils/tal.py) and the wiring of the detection loss
 * (utils/loss.py v8DetectionLoss): targets from detached predictions, then vn_detect_loss.
 * Everything here is plain arithmetic on data (no tape); it runs in double so that the
 * top-k choices do not hinge on float rounding. */
#include "models/vn_yolo.h"
#include "models/yolo_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double vn__dfl_expect(const float *z, int r)
{
    double m = z[0], sum = 0, e = 0;
    for (int i = 1; i < r; i++) m = z[i] > m ? z[i] : m;
    for (int i = 0; i < r; i++) {
        double p = exp(z[i] - m);
        sum += p;
        e += p * i;
    }
    return e / sum;
}

#define TAL_EPS 1e-9
#define CIOU_EPS 1e-7
#define MAX_TOPK 64

void vn_yolo_loss_params_default(vn_yolo_loss_params *p)
{
    *p = (vn_yolo_loss_params){10, 0.5, 6.0, 7.5f, 0.5f, 1.5f};
}

void vn_yolo_assignment_free(vn_yolo_assignment *a)
{
    free(a->anchor);
    free(a->stride);
    free(a->fg);
    free(a->gt_index);
    free(a->box);
    free(a->score);
    memset(a, 0, sizeof *a);
}

/* bbox_iou(CIoU=True, eps 1e-7) of two xyxy boxes. */
static double ciou(const double *a, const double *b)
{
    const double eps = CIOU_EPS;
    double w1 = a[2] - a[0], h1 = a[3] - a[1] + eps, w2 = b[2] - b[0], h2 = b[3] - b[1] + eps;
    double iw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    double inter = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
    double iou = inter / (w1 * h1 + w2 * h2 - inter + eps);
    double cw = fmax(a[2], b[2]) - fmin(a[0], b[0]), ch = fmax(a[3], b[3]) - fmin(a[1], b[1]);
    double c2 = cw * cw + ch * ch + eps;
    double dx = b[0] + b[2] - a[0] - a[2], dy = b[1] + b[3] - a[1] - a[3];
    double rho2 = (dx * dx + dy * dy) / 4.0;
    double t = atan(w2 / h2) - atan(w1 / h1), v = 4.0 / (M_PI * M_PI) * t * t;
    double alpha = v / (v - iou + (1.0 + eps));
    return iou - (rho2 / c2 + v * alpha);
}

/* Sigmoid scores [A * nc] and decoded boxes [A * 4] (pixels) of image img. */
static void decode_image(vn_tensor *const *preds, const vn_yolo_assignment *as, int64_t img,
                         double *scores, double *boxes)
{
    const int r = as->reg_max, nc = as->nc, ch = 4 * r + nc;
    int64_t a = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        int64_t hw = preds[l]->shape[1] * preds[l]->shape[2];
        for (int64_t k = 0; k < hw; k++, a++) {
            const float *z = preds[l]->data + (img * hw + k) * ch;
            double d[4];
            for (int s = 0; s < 4; s++) d[s] = vn__dfl_expect(z + s * r, r);
            double st = as->stride[a], ax = as->anchor[2 * a], ay = as->anchor[2 * a + 1];
            double *b = boxes + a * 4;
            b[0] = (ax - d[0]) * st;
            b[1] = (ay - d[1]) * st;
            b[2] = (ax + d[2]) * st;
            b[3] = (ay + d[3]) * st;
            for (int c = 0; c < nc; c++) scores[a * nc + c] = 1.0 / (1.0 + exp(-(double)z[4 * r + c]));
        }
    }
}

/* Indices of the topk largest metrics (ties: lower index first) marked in sel. */
static void topk_mark(const double *metric, int64_t n, int k, uint8_t *sel)
{
    int64_t best[MAX_TOPK];
    int m = 0;
    for (int64_t a = 0; a < n; a++) {
        int pos = m;
        while (pos > 0 && metric[best[pos - 1]] < metric[a]) pos--;
        if (pos >= k) continue;
        if (m < k) m++;
        for (int i = m - 1; i > pos; i--) best[i] = best[i - 1];
        best[pos] = a;
    }
    for (int64_t a = 0; a < n; a++) sel[a] = 0;
    for (int i = 0; i < m; i++) sel[best[i]] = 1;
}

/* Work arrays for one image with g gts over a anchors. */
typedef struct tal_work {
    double *scores, *boxes, *overlap, *metric, *gstat;
    uint8_t *pos, *in, *sel;
} tal_work;

/* mask_pos, overlaps and metrics of the gts gi[0..g) of one image. */
static void tal_candidates(const vn_yolo_assignment *as, const vn_yolo_gt *gts, const int64_t *gi,
                           int64_t g, const vn_yolo_loss_params *p, tal_work *w)
{
    const int64_t A = as->n_anchors;
    for (int64_t j = 0; j < g; j++) {
        const vn_yolo_gt *t = &gts[gi[j]];
        double gb[4] = {t->x1, t->y1, t->x2, t->y2};
        double *ov = w->overlap + j * A, *met = w->metric + j * A;
        for (int64_t a = 0; a < A; a++) {
            double ax = as->anchor[2 * a] * as->stride[a], ay = as->anchor[2 * a + 1] * as->stride[a];
            double dmin = fmin(fmin(ax - gb[0], ay - gb[1]), fmin(gb[2] - ax, gb[3] - ay));
            w->in[a] = dmin > TAL_EPS;
            ov[a] = met[a] = 0.0;
            if (!w->in[a]) continue;
            double c = ciou(gb, w->boxes + a * 4);
            ov[a] = c > 0 ? c : 0;
            met[a] = pow(w->scores[a * as->nc + t->cls], p->alpha) * pow(ov[a], p->beta);
        }
        topk_mark(met, A, p->topk, w->sel);
        for (int64_t a = 0; a < A; a++) w->pos[j * A + a] = w->sel[a] && w->in[a];
    }
}

/* select_highest_overlaps, get_targets and the alignment normalisation for one image. */
static void tal_targets(vn_yolo_assignment *as, const vn_yolo_gt *gts, const int64_t *gi,
                        int64_t g, int64_t img, tal_work *w)
{
    const int64_t A = as->n_anchors;
    double *pos_align = w->gstat, *pos_ov = w->gstat + g;
    for (int64_t a = 0; a < A; a++) {
        int cnt = 0;
        for (int64_t j = 0; j < g; j++) cnt += w->pos[j * A + a];
        if (cnt <= 1) continue;
        int64_t best = 0;
        for (int64_t j = 1; j < g; j++)
            if (w->overlap[j * A + a] > w->overlap[best * A + a]) best = j;
        for (int64_t j = 0; j < g; j++) w->pos[j * A + a] = j == best;
    }
    for (int64_t j = 0; j < g; j++) {
        pos_align[j] = pos_ov[j] = 0;
        for (int64_t a = 0; a < A; a++)
            if (w->pos[j * A + a]) {
                pos_align[j] = fmax(pos_align[j], w->metric[j * A + a]);
                pos_ov[j] = fmax(pos_ov[j], w->overlap[j * A + a]);
            }
    }
    for (int64_t a = 0; a < A; a++) {
        int64_t ia = img * A + a, jj = -1;
        double norm = 0;
        for (int64_t j = 0; j < g; j++) {
            if (!w->pos[j * A + a]) continue;
            if (jj < 0) jj = j;
            norm = fmax(norm, w->metric[j * A + a] * pos_ov[j] / (pos_align[j] + TAL_EPS));
        }
        as->fg[ia] = jj >= 0;
        as->gt_index[ia] = jj >= 0 ? (int32_t)gi[jj] : -1;
        const vn_yolo_gt *t = g ? &gts[gi[jj >= 0 ? jj : 0]] : NULL;
        float *b = as->box + ia * 4;
        float s = as->stride[a];
        b[0] = t ? t->x1 / s : 0;
        b[1] = t ? t->y1 / s : 0;
        b[2] = t ? t->x2 / s : 0;
        b[3] = t ? t->y2 / s : 0;
        float *sc = as->score + ia * as->nc;
        memset(sc, 0, (size_t)as->nc * sizeof(float));
        if (jj >= 0) sc[t->cls] = (float)norm;
    }
}

static int assign_alloc(vn_yolo_assignment *as, vn_tensor *const *preds)
{
    int64_t A = 0, N = as->n_images;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) A += preds[l]->shape[1] * preds[l]->shape[2];
    as->n_anchors = A;
    as->anchor = malloc((size_t)A * 2 * sizeof(float));
    as->stride = malloc((size_t)A * sizeof(float));
    as->fg = malloc((size_t)(N * A));
    as->gt_index = malloc((size_t)(N * A) * sizeof(int32_t));
    as->box = malloc((size_t)(N * A) * 4 * sizeof(float));
    as->score = malloc((size_t)(N * A * as->nc) * sizeof(float));
    if (!as->anchor || !as->stride || !as->fg || !as->gt_index || !as->box || !as->score)
        return VN_ERR_NOMEM;
    int64_t a = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++)
        for (int64_t y = 0; y < preds[l]->shape[1]; y++)
            for (int64_t x = 0; x < preds[l]->shape[2]; x++, a++) {
                as->anchor[2 * a] = (float)x + 0.5f;
                as->anchor[2 * a + 1] = (float)y + 0.5f;
                as->stride[a] = (float)(8 << l);
            }
    return VN_OK;
}

static int check_gts(const vn_yolo_gt *gts, int64_t n_gt, int64_t n_images, int nc, vn_error *err)
{
    for (int64_t i = 0; i < n_gt; i++) {
        const vn_yolo_gt *t = &gts[i];
        if (t->image < 0 || t->image >= n_images)
            return vn_error_set(err, VN_ERR_INVALID, "detection loss: box %lld belongs to image "
                                "%d of a batch of %lld", (long long)i, t->image,
                                (long long)n_images);
        if (t->cls < 0 || t->cls >= nc)
            return vn_error_set(err, VN_ERR_INVALID, "detection loss: box %lld has class %d, "
                                "the model has %d", (long long)i, t->cls, nc);
        if (!(t->x2 >= t->x1 && t->y2 >= t->y1))
            return vn_error_set(err, VN_ERR_INVALID, "detection loss: box %lld is not x1 <= x2, "
                                "y1 <= y2", (long long)i);
    }
    return VN_OK;
}

static void work_free(tal_work *w)
{
    free(w->scores);
    free(w->boxes);
    free(w->overlap);
    free(w->metric);
    free(w->gstat);
    free(w->pos);
    free(w->in);
    free(w->sel);
}

static int check_preds(vn_tensor *const *preds, int nc, int reg_max, vn_error *err)
{
    if (nc < 1 || reg_max < 2 || reg_max > 64)
        return vn_error_set(err, VN_ERR_INVALID, "detection loss: nc %d (>= 1), reg_max %d "
                            "(2..64)", nc, reg_max);
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        const vn_tensor *t = preds[l];
        if (t->ndim != 4 || t->shape[3] != 4 * reg_max + nc || t->shape[0] != preds[0]->shape[0]) {
            char s[96];
            return vn_error_set(err, VN_ERR_SHAPE, "detection loss: level %d has shape %s, "
                                "expected [N, H, W, %d] (4 x reg_max %d + nc %d)", l,
                                vn_shape_str(t->ndim, t->shape, s, sizeof s), 4 * reg_max + nc,
                                reg_max, nc);
        }
    }
    return VN_OK;
}

int vn_yolo_assign(vn_tensor *const *preds, int nc, int reg_max, const vn_yolo_gt *gts,
                   int64_t n_gt, const vn_yolo_loss_params *p, vn_yolo_assignment *out,
                   vn_error *err)
{
    memset(out, 0, sizeof *out);
    int prc = check_preds(preds, nc, reg_max, err);
    if (prc != VN_OK) return prc;
    if (p->topk < 1 || p->topk > MAX_TOPK)
        return vn_error_set(err, VN_ERR_INVALID, "detection loss: topk %d (1..%d)", p->topk,
                            MAX_TOPK);
    out->n_images = preds[0]->shape[0];
    out->nc = nc;
    out->reg_max = reg_max;
    int rc = check_gts(gts, n_gt, out->n_images, nc, err);
    if (rc != VN_OK) return rc;
    int64_t *gi = malloc((size_t)(n_gt > 0 ? n_gt : 1) * sizeof *gi), gmax = 1;
    for (int64_t img = 0; img < out->n_images; img++) {
        int64_t g = 0;
        for (int64_t i = 0; i < n_gt; i++) g += gts[i].image == img;
        gmax = g > gmax ? g : gmax;
    }
    rc = gi ? assign_alloc(out, preds) : VN_ERR_NOMEM;
    const int64_t A = out->n_anchors;
    tal_work w = {0};
    if (rc == VN_OK) {
        w.scores = malloc((size_t)(A * nc) * sizeof(double));
        w.boxes = malloc((size_t)A * 4 * sizeof(double));
        w.overlap = malloc((size_t)(gmax * A) * sizeof(double));
        w.metric = malloc((size_t)(gmax * A) * sizeof(double));
        w.gstat = malloc((size_t)gmax * 2 * sizeof(double));
        w.pos = malloc((size_t)(gmax * A));
        w.in = malloc((size_t)A);
        w.sel = malloc((size_t)A);
        if (!w.scores || !w.boxes || !w.overlap || !w.metric || !w.gstat || !w.pos || !w.in || !w.sel)
            rc = VN_ERR_NOMEM;
    }
    double total = 0;
    for (int64_t img = 0; rc == VN_OK && img < out->n_images; img++) {
        int64_t g = 0;
        for (int64_t i = 0; i < n_gt; i++)
            if (gts[i].image == img) gi[g++] = i;
        decode_image(preds, out, img, w.scores, w.boxes);
        tal_candidates(out, gts, gi, g, p, &w);
        tal_targets(out, gts, gi, g, img, &w);
    }
    if (rc == VN_OK)
        for (int64_t i = 0; i < out->n_images * A * nc; i++) total += out->score[i];
    out->score_sum = total > 1.0 ? total : 1.0;
    work_free(&w);
    free(gi);
    if (rc != VN_OK) {
        vn_yolo_assignment_free(out);
        return vn_error_set(err, rc, "detection loss: out of memory for the assignment");
    }
    return VN_OK;
}

vn_tensor *vn_yolo_loss(vn_ctx *ctx, vn_tensor *const *preds, int nc, int reg_max,
                        const vn_yolo_gt *gts, int64_t n_gt, const vn_yolo_loss_params *p,
                        double parts[3])
{
    for (int l = 0; l < VN_YOLO_LEVELS; l++)
        if (!preds[l]) return NULL;
    vn_yolo_assignment as;
    vn_error err = {0};
    if (vn_yolo_assign(preds, nc, reg_max, gts, n_gt, p, &as, &err) != VN_OK)
        return vn_ctx_fail(ctx, err.code, "%s", err.msg);
    vn_detect_targets t = {as.n_anchors, nc, reg_max, as.fg, as.box, as.score, as.anchor,
                           as.score_sum, p->box, p->cls, p->dfl};
    vn_tensor *loss = vn_detect_loss(ctx, VN_YOLO_LEVELS, preds, &t, parts);
    vn_yolo_assignment_free(&as);
    return loss;
}
