/* The detection loss of Ultralytics 8.3 (utils/loss.py v8DetectionLoss, BboxLoss, DFLoss and
 * metrics.bbox_iou with CIoU) as one op over the Detect outputs, given targets already
 * assigned (models/yolo_assign.c runs the TaskAlignedAssigner on detached predictions).
 *
 * Per image n and anchor a (levels concatenated, each row-major over its grid):
 *   cls = sum BCE(logit, target_score) / S
 *   box = sum_fg (1 - CIoU(pred_box, target_box)) * w / S
 *   dfl = sum_fg mean_side [CE(z, tl) (tl + 1 - t) + CE(z, tl + 1) (t - tl)] * w / S
 * with S = max(sum of target scores, 1), w = the anchor's summed target score, pred_box the
 * anchor point -/+ the expected distances under softmax over reg_max bins (sides l, t, r, b),
 * t the target distance clamped to [0, reg_max - 1.01]. The op returns
 * (gain_box box + gain_cls cls + gain_dfl dfl) * N, as Ultralytics' criterion does.
 * CIoU's alpha is a constant for the gradient (computed under no_grad there).
 *
 * The front vn_detect_loss checks the shapes and makes the node (row DETECT_LOSS of
 * VN_OP_LIST). Its forward kernel reads the caller's targets, computes the loss and, when
 * recording, d(loss)/d(pred) into one kept pool buffer holding every level (in double per
 * anchor, stored as float); backward scales it by the incoming gradient. */
#include "autograd/ops_impl.h"

#include <math.h>
#include <string.h>

#define DL_MAX_LEVELS 5
#define DL_MAX_BINS 64
#define CIOU_EPS 1e-7

typedef struct detect_loss_state {
    int n_levels;
    const vn_detect_targets *targets; /* the caller's, read in forward only */
    double *parts;                    /* the caller's, written in forward, or NULL */
    float *grad[DL_MAX_LEVELS];       /* parts of one kept pool buffer, shaped like the inputs */
} detect_loss_state;

/* CIoU of box b (x1, y1, x2, y2) against target g and its gradient with respect to b,
 * alpha held constant (Ultralytics' bbox_iou with xywh=False, CIoU=True, eps 1e-7). */
static double ciou_grad(const double *b, const double *g, double *d)
{
    const double eps = CIOU_EPS, k = 4.0 / (M_PI * M_PI);
    double w1 = b[2] - b[0], h1 = b[3] - b[1] + eps, w2 = g[2] - g[0], h2 = g[3] - g[1] + eps;
    double iw = fmin(b[2], g[2]) - fmax(b[0], g[0]), ih = fmin(b[3], g[3]) - fmax(b[1], g[1]);
    double iwc = iw > 0 ? iw : 0, ihc = ih > 0 ? ih : 0, inter = iwc * ihc;
    double uni = w1 * h1 + w2 * h2 - inter + eps, iou = inter / uni;
    double cw = fmax(b[2], g[2]) - fmin(b[0], g[0]), ch = fmax(b[3], g[3]) - fmin(b[1], g[1]);
    double c2 = cw * cw + ch * ch + eps;
    double dx = g[0] + g[2] - b[0] - b[2], dy = g[1] + g[3] - b[1] - b[3];
    double rho2 = (dx * dx + dy * dy) / 4.0;
    double t = atan(w2 / h2) - atan(w1 / h1), v = k * t * t;
    double alpha = v / (v - iou + (1.0 + eps));
    /* Partial derivatives for x1, y1, x2, y2. */
    double d_iw[4] = {-(double)(b[0] > g[0]), 0, (double)(b[2] < g[2]), 0};
    double d_ih[4] = {0, -(double)(b[1] > g[1]), 0, (double)(b[3] < g[3])};
    double d_w1[4] = {-1, 0, 1, 0}, d_h1[4] = {0, -1, 0, 1};
    double d_cw[4] = {-(double)(b[0] < g[0]), 0, (double)(b[2] > g[2]), 0};
    double d_ch[4] = {0, -(double)(b[1] < g[1]), 0, (double)(b[3] > g[3])};
    double r2 = w1 * w1 + h1 * h1;
    for (int i = 0; i < 4; i++) {
        double dinter = (iw > 0 ? d_iw[i] * ihc : 0) + (ih > 0 ? d_ih[i] * iwc : 0);
        double duni = d_w1[i] * h1 + w1 * d_h1[i] - dinter;
        double diou = (dinter * uni - inter * duni) / (uni * uni);
        double drho2 = (i % 2 == 0 ? -dx : -dy) / 2.0;
        double dc2 = 2.0 * cw * d_cw[i] + 2.0 * ch * d_ch[i];
        double dterm = (drho2 * c2 - rho2 * dc2) / (c2 * c2);
        double datan = (h1 * d_w1[i] - w1 * d_h1[i]) / r2; /* d atan(w1 / h1) */
        double dv = k * 2.0 * t * (-datan);
        d[i] = diou - dterm - alpha * dv;
    }
    return iou - (rho2 / c2 + v * alpha);
}

/* Softmax of z[0..r) into p and the expectation sum_i p_i i. */
static double dfl_expect(const float *z, int r, double *p)
{
    double m = z[0], s = 0, e = 0;
    for (int i = 1; i < r; i++) m = z[i] > m ? z[i] : m;
    for (int i = 0; i < r; i++) s += p[i] = exp(z[i] - m);
    for (int i = 0; i < r; i++) {
        p[i] /= s;
        e += p[i] * i;
    }
    return e;
}

/* Box and DFL terms of one foreground anchor; adds d(term)/dz * scale_* into g when g is not
 * NULL. z: the anchor's 4 * r distribution logits; anc: anchor point; tb: target box. */
static void fg_anchor(const float *z, int r, const double *anc, const float *tb, double w,
                      double scale_box, double scale_dfl, double *box, double *dfl, float *g)
{
    double p[4][DL_MAX_BINS], dist[4], b[4], tg[4] = {tb[0], tb[1], tb[2], tb[3]}, db[4];
    for (int s = 0; s < 4; s++) dist[s] = dfl_expect(z + s * r, r, p[s]);
    b[0] = anc[0] - dist[0];
    b[1] = anc[1] - dist[1];
    b[2] = anc[0] + dist[2];
    b[3] = anc[1] + dist[3];
    double ciou = ciou_grad(b, tg, db);
    *box += (1.0 - ciou) * w;
    /* bbox2dist: l, t, r, b distances of the target, clamped to [0, r - 1 - 0.01]. */
    double td[4] = {anc[0] - tg[0], anc[1] - tg[1], tg[2] - anc[0], tg[3] - anc[1]};
    double hi = r - 1 - 0.01, acc = 0;
    for (int s = 0; s < 4; s++) {
        double t = td[s] < 0 ? 0 : td[s] > hi ? hi : td[s];
        int tl = (int)t;
        double wl = tl + 1 - t, wr = 1 - wl;
        /* CE(z, i) = -log p_i */
        acc += -log(p[s][tl]) * wl - log(p[s][tl + 1]) * wr;
        if (g) {
            /* d(box)/dz_i = -w * dciou/d dist * p_i (i - dist); sides l, t enter negatively. */
            double dd = -w * db[s] * (s < 2 ? -1.0 : 1.0) * scale_box;
            for (int i = 0; i < r; i++) {
                double gi = dd * p[s][i] * (i - dist[s]);
                double onehot = (i == tl ? wl : 0) + (i == tl + 1 ? wr : 0);
                gi += w / 4.0 * scale_dfl * (p[s][i] - onehot);
                g[s * r + i] += (float)gi;
            }
        }
    }
    *dfl += acc / 4.0 * w;
}

/* log(1 + exp(x)) - x t and its derivative sigmoid(x) - t, stable for large |x|. */
static double bce_logit(double x, double t, double *dx)
{
    double e = exp(-fabs(x));
    *dx = (x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e)) - t;
    return (x > 0 ? x : 0) - x * t + log1p(e);
}

/* The three terms (before gains, already divided by S) and, when grads is not NULL, the
 * gradient of the op's output with respect to every input element. */
static void detect_loss_compute(vn_tensor *const *preds, int n_levels, const vn_detect_targets *t,
                                double terms[3], float *const *grads)
{
    const int r = t->reg_max, nc = t->nc;
    const int64_t n = preds[0]->shape[0], ch = 4 * r + nc;
    const double S = t->score_sum, bs = (double)n;
    const double sc_box = t->gain_box / S * bs, sc_cls = t->gain_cls / S * bs,
                 sc_dfl = t->gain_dfl / S * bs;
    double box = 0, cls = 0, dfl = 0;
    for (int64_t img = 0; img < n; img++) {
        int64_t a = 0;
        for (int l = 0; l < n_levels; l++) {
            const vn_tensor *p = preds[l];
            int64_t hw = p->shape[1] * p->shape[2];
            for (int64_t k = 0; k < hw; k++, a++) {
                int64_t ia = img * t->n_anchors + a;
                const float *z = p->data + (img * hw + k) * ch;
                float *g = grads ? grads[l] + (img * hw + k) * ch : NULL;
                const float *ts = t->score + ia * nc;
                double w = 0;
                for (int c = 0; c < nc; c++) {
                    double d;
                    cls += bce_logit(z[4 * r + c], ts[c], &d);
                    if (g) g[4 * r + c] = (float)(d * sc_cls);
                    w += ts[c];
                }
                if (!t->fg[ia]) continue;
                double anc[2] = {t->anchor[2 * a], t->anchor[2 * a + 1]};
                fg_anchor(z, r, anc, t->box + ia * 4, w, sc_box, sc_dfl, &box, &dfl, g);
            }
        }
    }
    terms[0] = box / S;
    terms[1] = cls / S;
    terms[2] = dfl / S;
}

void vn__detect_loss_backward_cpu(vn_ctx *ctx, vn_node *node)
{
    const detect_loss_state *st = node->state;
    const float dy = node->out->grad[0];
    for (int l = 0; l < st->n_levels; l++) {
        vn_tensor *x = node->in[l];
        if (!vn_tensor_requires_grad(x)) continue;
        bool fresh;
        float *dx = vn__grad_uninit(ctx, x, &fresh);
        if (!dx) return;
        const float *g = st->grad[l];
        for (int64_t i = 0; i < x->numel; i++) dx[i] = fresh ? dy * g[i] : dx[i] + dy * g[i];
    }
}

static bool detect_loss_check(vn_ctx *ctx, int n_levels, vn_tensor *const *preds,
                              const vn_detect_targets *t)
{
    if (n_levels < 1 || n_levels > DL_MAX_LEVELS || t->reg_max < 2 || t->reg_max > DL_MAX_BINS ||
        t->nc < 1) {
        vn_ctx_fail(ctx, VN_ERR_INVALID, "detect_loss: %d levels (1..%d), reg_max %d (2..%d), "
                    "nc %d (>= 1)", n_levels, DL_MAX_LEVELS, t->reg_max, DL_MAX_BINS, t->nc);
        return false;
    }
    int64_t anchors = 0;
    for (int l = 0; l < n_levels; l++) {
        const vn_tensor *p = preds[l];
        if (p->ndim != 4 || p->shape[3] != 4 * t->reg_max + t->nc || p->shape[0] != preds[0]->shape[0]) {
            char s[96];
            vn_ctx_fail(ctx, VN_ERR_SHAPE, "detect_loss: level %d has shape %s, expected [N, H, "
                        "W, %d] (4 x reg_max %d + nc %d)", l, vn_shape_str(p->ndim, p->shape, s,
                                                                          sizeof s),
                        4 * t->reg_max + t->nc, t->reg_max, t->nc);
            return false;
        }
        anchors += p->shape[1] * p->shape[2];
    }
    if (anchors != t->n_anchors) {
        vn_ctx_fail(ctx, VN_ERR_SHAPE, "detect_loss: the levels have %lld anchors, the targets "
                    "%lld", (long long)anchors, (long long)t->n_anchors);
        return false;
    }
    return true;
}

/* When recording, keeps one zeroed buffer for the gradients of every level (st->grad). */
static int detect_loss_grad_bufs(vn_ctx *ctx, vn_node *node, detect_loss_state *st)
{
    int64_t total = 0;
    for (int l = 0; l < st->n_levels; l++) total += node->in[l]->numel;
    float *buf = vn__pool_alloc(ctx, (size_t)total * sizeof(float));
    if (!buf) {
        vn_ctx_fail(ctx, VN_ERR_NOMEM, "detect_loss: out of memory");
        return VN_ERR_NOMEM;
    }
    vn__node_keep(node, buf);
    memset(buf, 0, (size_t)total * sizeof(float));
    for (int l = 0; l < st->n_levels; l++) {
        st->grad[l] = buf;
        buf += node->in[l]->numel;
    }
    return VN_OK;
}

int vn__detect_loss_forward_cpu(vn_ctx *ctx, vn_node *node)
{
    detect_loss_state *st = node->state;
    const vn_detect_targets *t = st->targets;
    double *parts = st->parts;
    st->targets = NULL;
    st->parts = NULL;
    if (node->recording) {
        int rc = detect_loss_grad_bufs(ctx, node, st);
        if (rc != VN_OK) return rc;
    }
    double terms[3];
    detect_loss_compute(node->in, st->n_levels, t, terms, node->recording ? st->grad : NULL);
    double gains[3] = {t->gain_box, t->gain_cls, t->gain_dfl}, total = 0;
    for (int i = 0; i < 3; i++) {
        if (parts) parts[i] = terms[i] * gains[i];
        total += terms[i] * gains[i];
    }
    node->out->data[0] = (float)(total * (double)node->in[0]->shape[0]);
    return VN_OK;
}

vn_tensor *vn_detect_loss(vn_ctx *ctx, int n_levels, vn_tensor *const *preds,
                          const vn_detect_targets *t, double parts[3])
{
    if (!vn__ok(ctx, n_levels, preds) || !detect_loss_check(ctx, n_levels, preds, t)) return NULL;
    vn_tensor *y = vn_ctx_tensor(ctx, 1, (int64_t[]){1});
    vn_node *node = y ? vn__node_new(ctx, VN_OP_DETECT_LOSS, n_levels, preds, y,
                                     sizeof(detect_loss_state)) : NULL;
    if (!node) return NULL;
    detect_loss_state *st = node->state;
    st->n_levels = n_levels;
    st->targets = t;
    st->parts = parts;
    return vn__run(ctx, node);
}
