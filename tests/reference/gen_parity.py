#!/usr/bin/python3
"""Reference fixtures for the parity with the official trainer (issue 21), from PyTorch 1.13
and torchvision 0.14 (Debian python3-torch, python3-torchvision).

Run with /usr/bin/python3 from the repository root:
    /usr/bin/python3 tests/reference/gen_parity.py
Writes tests/reference/fixtures/parity/:
  loss.safetensors   the official criterion choice (main.py lines 395-404) on one batch:
                     logits [N, C], labels [N], timm-style mixed soft targets [N, C]
                     (lam 0.7, partner N-1-i, smoothing 0.1); for each criterion the loss
                     ("<name>.loss", F64 [1]) and its gradient with respect to the logits
                     ("<name>.grad"): mixed_bce (timm BinaryCrossEntropy on soft targets:
                     BCEWithLogits), mixed_soft_ce (SoftTargetCrossEntropy), hard_ce
                     (LabelSmoothingCrossEntropy(0.1)), hard_bce (BinaryCrossEntropy(0.1) on
                     labels: one-hots with off = 0.1 / C, on = 1 - 0.1 + off). timm is not
                     installed here; the four criteria are written out below from timm
                     0.6.12 timm/loss/*.py.
  geometry.safetensors
                     datasets.py build_transform(is_train=False) at input sizes 28 (ToTensor +
                     Normalize only), 224 (Resize(int(224 / 0.875), BICUBIC) + CenterCrop(224))
                     and 384 (Resize((384, 384), BICUBIC)), and the training RandomCrop(size,
                     padding=4) of sizes <= 32: "<case>.src" U8 HWC source image,
                     "<case>.out" U8 HWC image before ToTensor (28: the float32 tensor after
                     Normalize, HWC), "crop<k>.ij" the (top, left) RandomCrop.get_params drew.
All image arrays are HWC, the framework's layout.
"""
import os

import numpy as np
import torch
import torch.nn.functional as Fn
import torchvision.transforms as T
from PIL import Image

from st_io import save

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "parity")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SMOOTHING = 0.1


def synth(w, h, c, seed):
    """Gradients, edges and noise (as gen_data.py)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for k in range(c):
        v = 127 + 100 * np.sin(x / (3.0 + k) + y / (5.0 + 2 * k))
        v += np.where(((x // 7 + y // 5 + k) % 2) == 0, 60, -60)
        v += rng.normal(0, 25, size=(h, w))
        chans.append(v)
    a = np.clip(np.stack(chans, axis=-1), 0, 255).astype(np.uint8)
    return a if c > 1 else a[:, :, 0]


def pil(a):
    return Image.fromarray(a, "RGB" if a.ndim == 3 else "L")


def hwc(a):
    a = np.asarray(a)
    return a if a.ndim == 3 else a[:, :, None]


# ---------------------------------------------------------------------- the loss switch

def mixed_targets(labels, nc, lam, smoothing):
    """timm 0.6.12 mixup_target: smoothed one-hots of y and its flip, mixed by lam."""
    off = smoothing / nc
    on = 1.0 - smoothing + off
    y1 = torch.full((labels.numel(), nc), off).scatter_(1, labels.view(-1, 1), on)
    y2 = torch.full((labels.numel(), nc), off).scatter_(1, labels.flip(0).view(-1, 1), on)
    return y1 * lam + y2 * (1.0 - lam)


def criteria(x, labels, soft, nc):
    logp = Fn.log_softmax(x, dim=-1)
    nll = -logp.gather(1, labels.view(-1, 1)).squeeze(1)
    off = SMOOTHING / nc
    hard = torch.full((labels.numel(), nc), off).scatter_(1, labels.view(-1, 1),
                                                          1.0 - SMOOTHING + off)
    return {
        "mixed_bce": Fn.binary_cross_entropy_with_logits(x, soft, reduction="mean"),
        "mixed_soft_ce": torch.sum(-soft * logp, dim=-1).mean(),
        "hard_ce": ((1.0 - SMOOTHING) * nll + SMOOTHING * (-logp.mean(dim=-1))).mean(),
        "hard_bce": Fn.binary_cross_entropy_with_logits(x, hard, reduction="mean"),
    }


def gen_loss():
    n, nc = 6, 5
    gen = torch.Generator().manual_seed(21)
    logits = (2.0 * torch.randn(n, nc, generator=gen)).float()
    labels = torch.tensor([0, 3, 4, 1, 1, 2], dtype=torch.int64)
    soft = mixed_targets(labels, nc, 0.7, SMOOTHING).float()
    t = {"logits": logits, "labels": labels.to(torch.int32), "soft": soft}
    for name in ("mixed_bce", "mixed_soft_ce", "hard_ce", "hard_bce"):
        x = logits.clone().double().requires_grad_(True)
        loss = criteria(x, labels, soft.double(), nc)[name]
        loss.backward()
        t[name + ".loss"] = loss.detach().reshape(1).double()
        t[name + ".grad"] = x.grad.float()
    save(os.path.join(OUT, "loss.safetensors"), t, {"smoothing": str(SMOOTHING)})


# -------------------------------------------------------------------- the eval geometry

def gen_geometry():
    t = {}
    # 28 px: no resize at all (resize_im is False), ToTensor + Normalize.
    src = synth(28, 28, 3, seed=2100)
    out = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])(pil(src))
    t["eval28.src"] = hwc(src)
    t["eval28.out"] = out.permute(1, 2, 0).contiguous().numpy().astype(np.float32)
    # 224 px: Resize(int(224 / 0.875)) bicubic + CenterCrop(224).
    src = synth(300, 230, 1, seed=2101)
    im = T.CenterCrop(224)(T.Resize(int(224 / 0.875), interpolation=T.InterpolationMode.BICUBIC)(pil(src)))
    t["eval224.src"] = hwc(src)
    t["eval224.out"] = hwc(np.asarray(im))
    # 384 px: a square resize without crop ("warping").
    src = synth(420, 300, 1, seed=2102)
    im = T.Resize((384, 384), interpolation=T.InterpolationMode.BICUBIC)(pil(src))
    t["eval384.src"] = hwc(src)
    t["eval384.out"] = hwc(np.asarray(im))
    # Training at <= 32 px: RandomCrop(size, padding=4) on (w, h) images.
    for k, (w, h, c, size) in enumerate([(28, 28, 3, 28), (30, 26, 1, 28), (32, 32, 3, 32)]):
        src = synth(w, h, c, seed=2110 + k)
        torch.manual_seed(7 + k)
        rc = T.RandomCrop(size, padding=4)
        padded = T.functional.pad(pil(src), 4, fill=0, padding_mode="constant")
        i, j, th, tw = rc.get_params(padded, (size, size))
        im = T.functional.crop(padded, i, j, th, tw)
        # The same through the transform itself, with the same generator state.
        torch.manual_seed(7 + k)
        assert np.array_equal(np.asarray(rc(pil(src))), np.asarray(im))
        t[f"crop{k}.src"] = hwc(src)
        t[f"crop{k}.out"] = hwc(np.asarray(im))
        t[f"crop{k}.ij"] = np.array([i, j, size], dtype=np.int32)
    save(os.path.join(OUT, "geometry.safetensors"), t, {"crops": "3"})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    gen_loss()
    gen_geometry()
    print("wrote", OUT)
