#!/usr/bin/python3
"""Fixtures for detection evaluation (tests/detect/test_detect_eval.c), re-implementing
Ultralytics 8.3: utils/ops.py non_max_suppression (with torchvision.ops.nms), models/yolo/
detect/val.py match_predictions (numpy), utils/metrics.py ap_per_class, compute_ap (101-point
interpolation) and smooth.

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/gen_detect_eval.py
Writes fixtures/detect/eval.safetensors:
  nms: p{l} (Detect outputs, NHWC), boxes [N, A, 4] and scores [N, A, nc] (decoded: DFL
  expectation at cell centres times the stride, sigmoid), and the NMS results
  val{img} / pred{img} [k, 6] (x1, y1, x2, y2, conf, cls) for validation settings (conf 0.001,
  IoU 0.7, max 300, multi-label) and predict settings (conf 0.25, IoU 0.7, best class);
  metrics: det [n, 7] (image, x1, y1, x2, y2, conf, cls) and lab [m, 6] (image, cls, x1, y1,
  x2, y2) of a synthetic 24-image set, correct [n, 10] (match_predictions), and per class
  p, r, ap50, ap (AP50-95), present, plus summary [mp, mr, map50, map].
Confidence ties are broken by order (stable sorts); the data has none.
"""
import os

import numpy as np
import torch
import torchvision

from st_io import save

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "detect")



def aligned(tensors):
    """Entries by decreasing element size (stable), so every entry's data is aligned to its
    element size in the file (the C tests read them in place)."""
    size = lambda v: (v.dtype.itemsize if hasattr(v.dtype, "itemsize") else v.element_size())
    return dict(sorted(tensors.items(), key=lambda kv: -size(kv[1])))

def decode(ps, nc, reg_max):
    boxes, scores = [], []
    for l, p in enumerate(ps):
        n, h, w, ch = p.shape
        s = 8 << l
        d = p[..., :4 * reg_max].double().reshape(n, h, w, 4, reg_max).softmax(-1) @ \
            torch.arange(reg_max, dtype=torch.float64)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5,
                                torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij")
        b = torch.stack((xs - d[..., 0], ys - d[..., 1], xs + d[..., 2], ys + d[..., 3]), -1) * s
        boxes.append(b.reshape(n, -1, 4).float())
        scores.append(p[..., 4 * reg_max:].sigmoid().reshape(n, -1, nc))
    return torch.cat(boxes, 1), torch.cat(scores, 1)


def nms(boxes, scores, conf, iou, max_det, multi_label):
    """non_max_suppression for one image on xyxy boxes; rows x1, y1, x2, y2, conf, cls."""
    nc = scores.shape[1]
    keep = scores.amax(1) > conf
    b, s = boxes[keep], scores[keep]
    if multi_label and nc > 1:
        i, j = torch.where(s > conf)
        x = torch.cat((b[i], s[i, j, None], j[:, None].float()), 1)
    else:
        c, j = s.max(1, keepdim=True)
        x = torch.cat((b, c, j.float()), 1)[c.view(-1) > conf]
    if x.shape[0] > 30000:
        x = x[x[:, 4].argsort(descending=True, stable=True)[:30000]]
    offs = x[:, 5:6] * 7680
    k = torchvision.ops.nms(x[:, :4] + offs, x[:, 4], iou)[:max_det]
    return x[k]


def box_iou(a, b, eps=1e-7):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter + eps)


def match_predictions(pred_cls, true_cls, iou, iouv):
    correct = np.zeros((pred_cls.shape[0], iouv.shape[0]), dtype=bool)
    iou = iou * (true_cls[:, None] == pred_cls)
    for i, threshold in enumerate(iouv):
        matches = np.array(np.nonzero(iou >= threshold)).T
        if matches.shape[0]:
            if matches.shape[0] > 1:
                matches = matches[iou[matches[:, 0], matches[:, 1]].argsort()[::-1]]
                matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
                matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
            correct[matches[:, 1].astype(int), i] = True
    return correct


def compute_ap(recall, precision):
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return np.trapz(np.interp(x, mrec, mpre), x)


def smooth(y, f=0.05):
    nf = round(len(y) * f * 2) // 2 + 1
    p = np.ones(nf // 2)
    yp = np.concatenate((p * y[0], y, p * y[-1]), 0)
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


def ap_per_class(tp, conf, pred_cls, target_cls, nc, eps=1e-16):
    i = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[i], conf[i], pred_cls[i]
    unique_classes, nt = np.unique(target_cls, return_counts=True)
    x = np.linspace(0, 1, 1000)
    ap = np.zeros((len(unique_classes), tp.shape[1]))
    p_curve, r_curve = np.zeros((len(unique_classes), 1000)), np.zeros((len(unique_classes), 1000))
    for ci, c in enumerate(unique_classes):
        i = pred_cls == c
        n_l, n_p = nt[ci], i.sum()
        if n_p == 0 or n_l == 0:
            continue
        fpc = (1 - tp[i]).cumsum(0)
        tpc = tp[i].cumsum(0)
        recall = tpc / (n_l + eps)
        r_curve[ci] = np.interp(-x, -conf[i], recall[:, 0], left=0)
        precision = tpc / (tpc + fpc)
        p_curve[ci] = np.interp(-x, -conf[i], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j] = compute_ap(recall[:, j], precision[:, j])
    f1 = 2 * p_curve * r_curve / (p_curve + r_curve + eps)
    k = smooth(f1.mean(0), 0.1).argmax()
    out = {n: np.zeros(nc) for n in ("p", "r", "ap50", "ap", "present")}
    for ci, c in enumerate(unique_classes.astype(int)):
        out["p"][c], out["r"][c] = p_curve[ci, k], r_curve[ci, k]
        out["ap50"][c], out["ap"][c] = ap[ci, 0], ap[ci].mean()
        out["present"][c] = 1
    summary = [p_curve[:, k].mean(), r_curve[:, k].mean(), ap[:, 0].mean(), ap.mean()]
    return out, np.array(summary)


def nms_part(t):
    torch.manual_seed(5)
    n, nc, reg_max, hw = 2, 4, 8, (64, 96)
    ps = []
    for l in range(3):
        s = 8 << l
        p = torch.randn(n, hw[0] // s, hw[1] // s, 4 * reg_max + nc)
        p[..., 4 * reg_max:] = p[..., 4 * reg_max:] * 2.0 - 1.5
        ps.append(p)
        t[f"p{l}"] = p
    boxes, scores = decode(ps, nc, reg_max)
    t["boxes"], t["scores"] = boxes, scores
    for img in range(n):
        t[f"val{img}"] = nms(boxes[img], scores[img], 0.001, 0.7, 300, True)
        t[f"pred{img}"] = nms(boxes[img], scores[img], 0.25, 0.7, 300, False)
        print(f"nms image {img}: {len(t[f'val{img}'])} kept (val), {len(t[f'pred{img}'])} (predict)")


def metrics_part(t):
    rng = np.random.default_rng(11)
    nc, n_img = 5, 24
    iouv = np.linspace(0.5, 0.95, 10)
    dets, labs, correct = [], [], []
    for img in range(n_img):
        m = rng.integers(0, 5)
        cls = rng.choice([0, 0, 1, 1, 2, 3], size=m)    # class 4: detections only
        xy = rng.uniform(0, 200, (m, 2))
        wh = rng.uniform(10, 80, (m, 2))
        lb = np.concatenate((xy, xy + wh), 1)
        d = []
        for g in range(m):
            if cls[g] == 3 or rng.uniform() < 0.15:     # class 3: never detected
                continue
            jit = rng.normal(0, 0.08, 4) * np.concatenate((wh[g], wh[g]))
            c = cls[g] if rng.uniform() > 0.1 else rng.integers(0, nc)
            d.append([*(lb[g] + jit), rng.uniform(0.3, 1.0), c])
        for _ in range(rng.integers(0, 4)):               # false positives
            xy0 = rng.uniform(0, 200, 2)
            d.append([*xy0, *(xy0 + rng.uniform(10, 60, 2)), rng.uniform(0.001, 0.6),
                      rng.choice([0, 1, 2, 4])])
        d = np.array(d, dtype=np.float64).reshape(-1, 6)
        d[:, :5] = d[:, :5].astype(np.float32)
        lb = lb.astype(np.float32).astype(np.float64)
        iou = box_iou(lb, d[:, :4]) if len(d) and m else np.zeros((m, len(d)))
        correct.append(match_predictions(d[:, 5], cls.astype(np.float64), iou, iouv) if m
                       else np.zeros((len(d), 10), dtype=bool))
        dets += [[img, *r] for r in d]
        labs += [[img, c, *b] for c, b in zip(cls, lb)]
    dets = np.array(dets)
    labs = np.array(labs)
    correct = np.concatenate(correct, 0)
    out, summary = ap_per_class(correct.astype(np.float64), dets[:, 5], dets[:, 6], labs[:, 1], nc)
    t["det"] = dets.astype(np.float32)
    t["lab"] = labs.astype(np.float32)
    t["correct"] = correct.astype(np.uint8)
    for k, v in out.items():
        t[k] = v
    t["summary"] = summary
    print(f"metrics: {len(dets)} detections, {len(labs)} labels; P {summary[0]:.4f} R "
          f"{summary[1]:.4f} mAP50 {summary[2]:.4f} mAP50-95 {summary[3]:.4f}")


def main():
    os.makedirs(OUT, exist_ok=True)
    t = {}
    nms_part(t)
    metrics_part(t)
    save(os.path.join(OUT, "eval.safetensors"), aligned({k: v.numpy() if hasattr(v, "numpy") else v for k, v in t.items()}),
         {"generator": "tests/reference/gen_detect_eval.py", "torch": torch.__version__,
          "numpy": np.__version__, "nc_nms": 4, "reg_max": 8, "nc_metrics": 5})


if __name__ == "__main__":
    main()
