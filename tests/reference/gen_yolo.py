#!/usr/bin/python3
"""Fixtures for the YOLO11-VanillaNet detector (tests/detect/test_yolo.c).

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/gen_yolo.py
Builds yolo_ref.YoloVanilla for each case, randomises every weight and BN statistic
(vanillanet_ref.randomize), rounds each float tensor to int8 multiples of a power of two
(exact in float32, one byte per weight in the file), and writes
fixtures/detect/yolo_<case>.safetensors holding, in the framework's layouts (NHWC, OHWI):
q.<name> (I8) and s.<name> (F32 scalar) with weight = q * s for every float state entry,
the input x, a random upstream gradient gy{l} per level, and, computed in float64 from those
values: the training outputs train.y{l}, the gradients d.<name> of sum_l(y_l * gy_l) for
every parameter (stored as F16 to keep the file small: the C test's tolerance allows for
that rounding) and the input (d.x, F32), the BN running statistics after that step
(after.<name>), and the eval-mode outputs eval.y{l}. __metadata__ holds the configuration.
"""
import json
import math
import os

import numpy as np

import torch

from st_io import save
from vanillanet_ref import randomize
from yolo_ref import YoloVanilla

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "detect")

CASES = {
    # small: yolo11n-like scaling on a 4-stage VanillaNet, act_learn 0.5 (deep training)
    "small": dict(dims=[16, 24, 32, 48], strides=[2, 2, 2], act_num=1, nc=3, depth=0.5,
                  width=0.125, max_ch=1024, c3k=False, reg_max=16, act_learn=0.5,
                  shape=(2, 64, 64, 3)),
    # c3k: yolo11m/l-like blocks (every C3k2 with C3k), depth 1 (two blocks), a stride-1
    # stage before P5, reg_max 8, an odd batch and a non-square input
    "c3k": dict(dims=[16, 16, 24, 32, 32], strides=[2, 2, 2, 1], act_num=2, nc=5, depth=1.0,
                width=0.125, max_ch=1024, c3k=True, reg_max=4, act_learn=1.0,
                shape=(3, 96, 64, 3)),
}



def aligned(tensors):
    """Entries by decreasing element size (stable), so every entry's data is aligned to its
    element size in the file (the C tests read them in place)."""
    size = lambda v: (v.dtype.itemsize if hasattr(v.dtype, "itemsize") else v.element_size())
    return dict(sorted(tensors.items(), key=lambda kv: -size(kv[1])))

def nhwc(t):
    return t.detach().permute(0, 2, 3, 1).contiguous().float()


def ohwi(t):
    return t.permute(0, 2, 3, 1) if t.dim() == 4 else t


def quantize(m, t):
    """Rounds every float state entry to q * 2^e with q in int8; records q and 2^e."""
    with torch.no_grad():
        for k, v in m.state_dict().items():
            if not v.dtype.is_floating_point:
                continue
            amax = float(v.abs().max())
            s = 2.0 ** math.ceil(math.log2(amax / 127.0)) if amax > 0 else 1.0
            q = torch.round(v / s).clamp(-127, 127)
            v.copy_(q * s)
            t["q." + k] = ohwi(q).contiguous().numpy().astype(np.int8)
            t["s." + k] = torch.tensor([s], dtype=torch.float32)


def make(name, c, seed):
    torch.manual_seed(seed)
    m = YoloVanilla(c["dims"], c["strides"], c["act_num"], c["nc"], c["depth"], c["width"],
                    c["max_ch"], c["c3k"], c["reg_max"])
    randomize(m, seed + 1)
    m.model[0].change_act(c["act_learn"])
    t = {}
    quantize(m, t)
    n, h, w, ci = c["shape"]
    x = torch.randn(n, h, w, ci)
    t["x"] = x
    m = m.double()
    m.train()
    xd = x.double().permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    ys = m(xd)
    loss = 0
    for l, y in enumerate(ys):
        g = torch.randn(y.permute(0, 2, 3, 1).shape)
        t[f"gy{l}"] = g
        t[f"train.y{l}"] = nhwc(y)
        loss = loss + (y * g.double().permute(0, 3, 1, 2)).sum()
    loss.backward()
    t["d.x"] = nhwc(xd.grad)
    for k, p in m.named_parameters():
        t["d." + k] = ohwi(p.grad).contiguous().numpy().astype(np.float16)
    for k, v in m.state_dict().items():
        if "running" in k:
            t["after." + k] = v.float()
    m.eval()
    with torch.no_grad():
        for l, y in enumerate(m(x.double().permute(0, 3, 1, 2))):
            t[f"eval.y{l}"] = nhwc(y)
    meta = {k: json.dumps(v) for k, v in c.items()}
    meta["generator"] = "tests/reference/gen_yolo.py"
    meta["torch"] = torch.__version__
    meta["n_params"] = str(sum(p.numel() for p in m.parameters()))
    save(os.path.join(OUT, f"yolo_{name}.safetensors"), aligned(t), meta)
    print(f"{name}: {meta['n_params']} parameters, outputs",
          [tuple(t[f'train.y{l}'].shape) for l in range(3)])


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, (name, c) in enumerate(CASES.items()):
        make(name, c, 1700 + 10 * i)


if __name__ == "__main__":
    main()
