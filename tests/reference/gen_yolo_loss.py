#!/usr/bin/python3
"""Fixtures for the detection loss (tests/detect/test_yolo_loss.c): a PyTorch re-implementation
of Ultralytics 8.3's formulas (utils/tal.py TaskAlignedAssigner with topk 10, alpha 0.5,
beta 6.0; utils/loss.py v8DetectionLoss, BboxLoss, DFLoss; utils/metrics.py bbox_iou with
CIoU, eps 1e-7; make_anchors at cell centres) on fixed predictions and boxes.

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/gen_yolo_loss.py
Writes fixtures/detect/loss_<case>.safetensors: p{l} (Detect outputs, NHWC, float32),
gt (rows image, class, x1, y1, x2, y2 in pixels), and in float64: fg and gt_index
([N, A]; gt_index -1 on background), target_scores [N, A, nc], target_boxes [N, A, 4] (grid
units, valid on foreground), parts (box, cls, dfl after gains), loss (their sum times N),
and dp{l}, the gradient of loss with respect to p{l}. The assigner's inputs are detached, as
in Ultralytics, and CIoU's alpha is computed without gradient. torch.topk's order among
equal metrics is unspecified; here (and in the C code) ties go to the lower anchor index.
"""
import math
import os

import numpy as np
import torch

from st_io import save

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "detect")
TOPK, ALPHA, BETA, EPS = 10, 0.5, 6.0, 1e-9
GAINS = (7.5, 0.5, 1.5)



def aligned(tensors):
    """Entries by decreasing element size (stable), so every entry's data is aligned to its
    element size in the file (the C tests read them in place)."""
    size = lambda v: (v.dtype.itemsize if hasattr(v.dtype, "itemsize") else v.element_size())
    return dict(sorted(tensors.items(), key=lambda kv: -size(kv[1])))

def anchors_of(shapes, strides):
    pts, st = [], []
    for (h, w), s in zip(shapes, strides):
        sy, sx = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5,
                                torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij")
        pts.append(torch.stack((sx, sy), -1).view(-1, 2))
        st.append(torch.full((h * w, 1), float(s), dtype=torch.float64))
    return torch.cat(pts), torch.cat(st)


def ciou(b1, b2, eps=1e-7):
    x1, y1, x2, y2 = b1.unbind(-1)
    X1, Y1, X2, Y2 = b2.unbind(-1)
    w1, h1 = x2 - x1, y2 - y1 + eps
    w2, h2 = X2 - X1, Y2 - Y1 + eps
    inter = (torch.minimum(x2, X2) - torch.maximum(x1, X1)).clamp(0) * \
            (torch.minimum(y2, Y2) - torch.maximum(y1, Y1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.maximum(x2, X2) - torch.minimum(x1, X1)
    ch = torch.maximum(y2, Y2) - torch.minimum(y1, Y1)
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((X1 + X2 - x1 - x2) ** 2 + (Y1 + Y2 - y1 - y2) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def decode(dist, anc, reg_max):
    b, a, _ = dist.shape
    d = dist.view(b, a, 4, reg_max).softmax(3) @ torch.arange(reg_max, dtype=dist.dtype)
    return torch.cat((anc - d[..., :2], anc + d[..., 2:]), -1)


def assign(scores, boxes, anc_px, gts, n_img, nc):
    """Per image: fg [A], gt index [A] (-1 bg), target scores [A, nc], target boxes [A, 4] px."""
    A = anc_px.shape[0]
    out = []
    for img in range(n_img):
        rows = [i for i, g in enumerate(gts) if int(g[0]) == img]
        G = len(rows)
        fg = torch.zeros(A, dtype=torch.bool)
        gidx = torch.full((A,), -1, dtype=torch.int64)
        tsc = torch.zeros(A, nc, dtype=torch.float64)
        tbox = torch.zeros(A, 4, dtype=torch.float64)
        if G == 0:
            out.append((fg, gidx, tsc, tbox))
            continue
        gb = torch.tensor([gts[i][2:] for i in rows], dtype=torch.float64)
        gl = torch.tensor([int(gts[i][1]) for i in rows])
        lt, rb = gb[:, None, :2], gb[:, None, 2:]
        inside = torch.cat((anc_px[None] - lt, rb - anc_px[None]), -1).amin(-1) > EPS  # G, A
        ov = torch.zeros(G, A, dtype=torch.float64)
        met = torch.zeros(G, A, dtype=torch.float64)
        for j in range(G):
            m = inside[j]
            ov[j, m] = ciou(gb[j].expand(int(m.sum()), 4), boxes[img][m]).clamp(0)
            met[j, m] = scores[img][m, gl[j]] ** ALPHA * ov[j, m] ** BETA
        pos = torch.zeros(G, A, dtype=torch.bool)
        for j in range(G):
            # torch.topk leaves the order of ties unspecified; ties go to the lower anchor
            # index here and in the C code (they occur among in-gt anchors of metric 0)
            idx = sorted(range(A), key=lambda k: (-float(met[j, k]), k))[:TOPK]
            pos[j, idx] = True
        pos &= inside
        multi = pos.sum(0) > 1
        best = ov.argmax(0)
        for a in torch.nonzero(multi).flatten().tolist():
            pos[:, a] = False
            pos[best[a], a] = True
        metp = met * pos
        pos_align = metp.amax(1, keepdim=True)
        pos_ov = (ov * pos).amax(1, keepdim=True)
        norm = (metp * pos_ov / (pos_align + EPS)).amax(0)
        for a in range(A):
            js = torch.nonzero(pos[:, a]).flatten()
            if len(js):
                j = int(js[0])
                fg[a] = True
                gidx[a] = rows[j]
                tsc[a, gl[j]] = norm[a]
                tbox[a] = gb[j]
        out.append((fg, gidx, tsc, tbox))
    return out


def detection_loss(ps, gts, n_img, nc, reg_max, strides=(8, 16, 32)):
    """Ultralytics' v8DetectionLoss on Detect outputs ps (per level [N, H, W, 4 reg_max + nc],
    any float dtype, with autograd): returns (loss, parts, assignment, fg, target_scores,
    target_boxes). Also the PyTorch side of bench/compare_detect.sh."""
    ch = 4 * reg_max + nc
    shapes = [(p.shape[1], p.shape[2]) for p in ps]
    flat = torch.cat([p.reshape(n_img, -1, ch) for p in ps], 1)
    dist, logits = flat[..., :4 * reg_max], flat[..., 4 * reg_max:]
    anc, st = anchors_of(shapes, strides)
    anc, st = anc.to(flat.dtype), st.to(flat.dtype)
    boxes = decode(dist, anc, reg_max)
    res = assign(logits.detach().sigmoid(), (boxes.detach() * st), anc * st, gts, n_img, nc)
    fg = torch.stack([r[0] for r in res])
    tsc = torch.stack([r[2] for r in res]).to(flat.dtype)
    tbox = torch.stack([r[3] for r in res]).to(flat.dtype) / st
    S = max(float(tsc.sum()), 1.0)
    cls = torch.nn.functional.binary_cross_entropy_with_logits(logits, tsc, reduction="none").sum() / S
    w = tsc.sum(-1)[fg].unsqueeze(-1)
    box = ((1.0 - ciou(boxes[fg], tbox[fg]).unsqueeze(-1)) * w).sum() / S
    t = torch.cat((anc - tbox[..., :2], tbox[..., 2:] - anc), -1).clamp(0, reg_max - 1 - 0.01)[fg]
    tl = t.long()
    wl = tl + 1 - t
    wr = 1 - wl
    z = dist[fg].view(-1, 4, reg_max)
    logp = z.log_softmax(-1)
    ce_l = -logp.gather(-1, tl.unsqueeze(-1)).squeeze(-1)
    ce_r = -logp.gather(-1, (tl + 1).unsqueeze(-1)).squeeze(-1)
    dfl = (((ce_l * wl + ce_r * wr).mean(-1, keepdim=True)) * w).sum() / S
    parts = torch.stack((box * GAINS[0], cls * GAINS[1], dfl * GAINS[2]))
    return parts.sum() * n_img, parts, res, fg, tsc, tbox


def loss_case(name, n_img, nc, reg_max, imgsz, gts, seed):
    torch.manual_seed(seed)
    strides = (8, 16, 32)
    shapes = [(imgsz[0] // s, imgsz[1] // s) for s in strides]
    ch = 4 * reg_max + nc
    ps = []
    for h, w in shapes:
        p = torch.randn(n_img, h, w, ch)
        p[..., :4 * reg_max] *= 1.5
        p[..., 4 * reg_max:] = p[..., 4 * reg_max:] * 1.5 - 1.0
        ps.append(p)
    pd = [p.double().requires_grad_(True) for p in ps]
    loss, parts, res, fg, tsc, tbox = detection_loss(pd, gts, n_img, nc, reg_max, strides)
    loss.backward()
    tensors = {f"p{l}": p for l, p in enumerate(ps)}
    tensors["gt"] = torch.tensor(gts, dtype=torch.float32).reshape(-1, 6)
    tensors["fg"] = fg.to(torch.uint8)
    tensors["gt_index"] = torch.stack([r[1] for r in res]).to(torch.int32)
    tensors["target_scores"] = tsc.float()
    tensors["target_boxes"] = tbox.float()
    tensors["parts"] = parts.detach().float()
    tensors["loss"] = loss.detach().float().reshape(1)
    for l, p in enumerate(pd):
        tensors[f"dp{l}"] = p.grad.float()
    meta = {"nc": nc, "reg_max": reg_max, "imgsz": f"{imgsz[0]},{imgsz[1]}",
            "n_fg": int(fg.sum()), "generator": "tests/reference/gen_yolo_loss.py",
            "torch": torch.__version__}
    save(os.path.join(OUT, f"loss_{name}.safetensors"),
         aligned({k: v.numpy() if hasattr(v, "numpy") else v for k, v in tensors.items()}), meta)
    print(f"{name}: {int(fg.sum())} foreground anchors, parts {parts.tolist()}, loss {float(loss)}")


def main():
    os.makedirs(OUT, exist_ok=True)
    gts = [
        [0, 0, 5, 6, 30, 40], [0, 2, 20, 10, 60, 50], [0, 1, 33, 35, 45, 47],
        [1, 1, 2, 2, 62, 62], [1, 0, 10, 40, 22, 60],
    ]
    loss_case("basic", 3, 3, 16, (64, 64), gts, 31)
    gts2 = [[0, 3, 0, 0, 95, 63], [0, 1, 40, 8, 90, 30], [1, 0, 5, 5, 20, 20],
            [1, 4, 60, 30, 95, 60], [1, 2, 70, 35, 90, 55]]
    loss_case("wide", 2, 5, 8, (64, 96), gts2, 47)


if __name__ == "__main__":
    main()
