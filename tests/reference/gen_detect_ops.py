#!/usr/bin/python3
"""Fixtures for the detector's ops (tests/detect/test_detect_ops.c): SiLU, sigmoid, concat and
split of the channel dim, nearest upsampling, permute, batched matmul, softmax and max-pool
with padding (SPPF's 5x5 stride 1 padding 2).

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/gen_detect_ops.py
Writes tests/reference/fixtures/detect/ops.safetensors: for each case `<case>.<name>`.

Activations are NHWC (the framework's layout); concat and split act on the last dim, which
is torch.cat(dim=1) / torch.split(dim=1) of the NCHW tensors Ultralytics uses. Inputs are
float32; results and gradients are computed by PyTorch in float64 from those inputs and
stored as float32 (max-pool in float32 on channels_last tensors: its result is exact). Each
case carries a random upstream gradient `gy` (or `gy0`, `gy1`, ... per output) and the
gradients of sum(y * gy).
"""
import os

import torch
import torch.nn.functional as F

from st_io import save

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "detect")


def f32(t):
    return t.detach().float().contiguous()


def leaf(t):
    return t.double().requires_grad_(True)


def unary(t, name, shape, fn, scale, offset=0.0):
    x = torch.randn(shape) * scale + offset
    gy = torch.randn(shape)
    xd = leaf(x)
    y = fn(xd)
    (y * gy.double()).sum().backward()
    t.update({f"{name}.x": x, f"{name}.gy": gy, f"{name}.y": f32(y), f"{name}.dx": f32(xd.grad)})


def concat_case(t, name, lead, widths):
    xs = [torch.randn(*lead, c) for c in widths]
    gy = torch.randn(*lead, sum(widths))
    xd = [leaf(x) for x in xs]
    y = torch.cat(xd, dim=-1)
    (y * gy.double()).sum().backward()
    for i, (x, d) in enumerate(zip(xs, xd)):
        t[f"{name}.x{i}"] = x
        t[f"{name}.dx{i}"] = f32(d.grad)
    t[f"{name}.gy"] = gy
    t[f"{name}.y"] = f32(y)


def split_case(t, name, shape, sizes):
    x = torch.randn(shape)
    xd = leaf(x)
    ys = torch.split(xd, sizes, dim=-1)
    loss = 0
    for i, y in enumerate(ys):
        gy = torch.randn(y.shape)
        t[f"{name}.gy{i}"] = gy
        t[f"{name}.y{i}"] = f32(y)
        loss = loss + (y * gy.double()).sum()
    loss.backward()
    t[f"{name}.x"] = x
    t[f"{name}.dx"] = f32(xd.grad)


def upsample_case(t, name, shape, s):
    x = torch.randn(shape)
    n, h, w, c = shape
    gy = torch.randn(n, h * s, w * s, c)
    xd = leaf(x)
    y = F.interpolate(xd.permute(0, 3, 1, 2), scale_factor=s, mode="nearest").permute(0, 2, 3, 1)
    (y * gy.double()).sum().backward()
    t.update({f"{name}.x": x, f"{name}.gy": gy, f"{name}.y": f32(y), f"{name}.dx": f32(xd.grad)})


def permute_case(t, name, shape, perm):
    x = torch.randn(shape)
    xd = leaf(x)
    y = xd.permute(*perm)
    gy = torch.randn(y.shape)
    (y * gy.double()).sum().backward()
    t.update({f"{name}.x": x, f"{name}.gy": gy, f"{name}.y": f32(y), f"{name}.dx": f32(xd.grad)})


def bmm_case(t, name, b, m, n, k, ta, tb, alpha):
    a = torch.randn(b, k, m) if ta else torch.randn(b, m, k)
    bb = torch.randn(b, n, k) if tb else torch.randn(b, k, n)
    gy = torch.randn(b, m, n)
    ad, bd = leaf(a), leaf(bb)
    y = alpha * torch.bmm(ad.transpose(1, 2) if ta else ad, bd.transpose(1, 2) if tb else bd)
    (y * gy.double()).sum().backward()
    t.update({f"{name}.a": a, f"{name}.b": bb, f"{name}.gy": gy, f"{name}.y": f32(y),
              f"{name}.da": f32(ad.grad), f"{name}.db": f32(bd.grad)})


def maxpool_case(t, name, shape, k, s, p):
    x = torch.randn(shape)
    xc = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = F.max_pool2d(xc, k, s, p)
    gy = torch.randn(y.permute(0, 2, 3, 1).shape)
    (y * gy.permute(0, 3, 1, 2)).sum().backward()
    t.update({f"{name}.x": x, f"{name}.gy": gy, f"{name}.y": f32(y.permute(0, 2, 3, 1)),
              f"{name}.dx": f32(xc.grad.permute(0, 2, 3, 1))})


def main():
    torch.manual_seed(17)
    t = {}
    unary(t, "silu", (2, 3, 4, 5), F.silu, 4.0)
    unary(t, "silu_wide", (1, 2, 2, 7), F.silu, 30.0)      # saturated tails
    unary(t, "sigmoid", (2, 3, 4, 5), torch.sigmoid, 4.0)
    unary(t, "sigmoid_wide", (3, 7), torch.sigmoid, 30.0)
    concat_case(t, "cat2", (2, 3, 4), (3, 5))
    concat_case(t, "cat4", (1, 5, 2), (4, 4, 4, 4))          # SPPF
    concat_case(t, "cat8", (2, 2, 3), (1, 2, 3, 4, 5, 6, 7, 8))  # more than a tape entry holds
    split_case(t, "split2", (2, 3, 4, 8), [4, 4])            # C3k2's chunk(2, 1)
    split_case(t, "split3", (2, 5, 10), [3, 3, 4])           # attention's q, k, v
    upsample_case(t, "up2", (2, 3, 4, 5), 2)
    upsample_case(t, "up3", (1, 2, 3, 2), 3)
    permute_case(t, "perm0213", (2, 3, 4, 5), (0, 2, 1, 3))
    permute_case(t, "perm3d", (3, 4, 5), (2, 0, 1))
    permute_case(t, "perm2d", (6, 7), (1, 0))
    for i, (ta, tb) in enumerate([(False, False), (True, False), (False, True), (True, True)]):
        bmm_case(t, f"bmm{i}", 3, 5, 4, 6, ta, tb, 0.37 if i % 2 else 1.0)
    unary(t, "softmax", (3, 4, 7), lambda v: torch.softmax(v, dim=-1), 3.0)
    unary(t, "softmax_big", (2, 50), lambda v: torch.softmax(v, dim=-1), 20.0, 100.0)
    maxpool_case(t, "mp5", (2, 6, 7, 5), 5, 1, 2)
    maxpool_case(t, "mp5_small", (1, 2, 3, 3), 5, 1, 2)
    maxpool_case(t, "mp3s2", (2, 7, 6, 4), 3, 2, 1)
    maxpool_case(t, "mp2", (1, 5, 5, 3), 2, 2, 0)
    os.makedirs(OUT, exist_ok=True)
    save(os.path.join(OUT, "ops.safetensors"), t,
         {"generator": "tests/reference/gen_detect_ops.py", "torch": torch.__version__})
    print(f"wrote {len(t)} tensors to {OUT}/ops.safetensors")


if __name__ == "__main__":
    main()
