#!/usr/bin/python3
"""Fixtures for batch_norm2d, the pools, matmul/linear and the losses (tests/ops).

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/gen_ops.py
Writes tests/reference/fixtures/ops/{bn,pool,dense,loss}.safetensors.

Activations are stored NHWC (the framework's layout). Inputs are float32; batch norm, the
dense ops and the losses are evaluated by PyTorch in float64 from those float32 inputs and
stored as float32, so a fixture is the exact answer rounded once and the C tolerances
measure the C code's own error. The pools run in float32 on channels_last tensors, the
layout whose CPU kernel the C code mirrors (first maximum wins ties, NaN propagates).
Each case has a random upstream gradient `<case>.gy` and the gradients it produces.
"""
import os

import torch
import torch.nn.functional as F

from st_io import save

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "ops")


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def nchw(t):
    return t.permute(0, 3, 1, 2)


def bn_cases():
    t = {}
    # (name, NHWC shape, affine, track running stats, training, eps, momentum, mean offset)
    cases = [
        ("train", (2, 5, 3, 6), True, True, True, 1e-5, 0.1, 0.0),
        ("train_vn", (3, 4, 4, 8), True, True, True, 1e-6, 0.1, 0.0),   # VanillaNet's eps
        ("train_noaffine", (2, 3, 5, 4), False, False, True, 1e-5, 0.1, 0.0),
        ("train_offset", (4, 6, 5, 3), True, True, True, 1e-5, 0.3, 50.0),  # large mean
        ("train_c1", (1, 7, 5, 1), True, True, True, 1e-5, 0.1, 0.0),    # batch 1, one channel
        ("eval", (2, 5, 3, 6), True, True, False, 1e-5, 0.1, 0.0),
        ("eval_noaffine", (1, 3, 3, 5), False, True, False, 1e-6, 0.1, 0.0),
    ]
    for name, shape, affine, track, training, eps, mom, off in cases:
        n, h, w, c = shape
        x = torch.randn(shape) * 1.7 + 0.3 + off
        gy = torch.randn(shape)
        bn = torch.nn.BatchNorm2d(c, eps=eps, momentum=mom, affine=affine,
                                  track_running_stats=track).double()
        if affine:
            with torch.no_grad():
                bn.weight.copy_(torch.rand(c) + 0.5)
                bn.bias.copy_(torch.randn(c) * 0.5)
            t[f"{name}.weight"] = bn.weight.detach().float()
            t[f"{name}.bias"] = bn.bias.detach().float()
        if track:
            rm0 = torch.randn(c).float()
            rv0 = (torch.rand(c) + 0.5).float()
            with torch.no_grad():
                bn.running_mean.copy_(rm0)
                bn.running_var.copy_(rv0)
                bn.num_batches_tracked.fill_(3)
            t[f"{name}.running_mean0"] = rm0
            t[f"{name}.running_var0"] = rv0
        bn.train(training)
        xi = nchw(x).double().requires_grad_(True)
        y = bn(xi)
        y.backward(nchw(gy).double())
        t[f"{name}.x"] = x
        t[f"{name}.gy"] = gy
        t[f"{name}.y"] = nhwc(y.detach()).float()
        t[f"{name}.dx"] = nhwc(xi.grad).float()
        if affine:
            t[f"{name}.dweight"] = bn.weight.grad.float()
            t[f"{name}.dbias"] = bn.bias.grad.float()
        if track:
            t[f"{name}.running_mean"] = bn.running_mean.float()
            t[f"{name}.running_var"] = bn.running_var.float()
            t[f"{name}.num_batches_tracked"] = bn.num_batches_tracked.reshape(1).clone()
    return t


def pool_cases():
    t = {}
    # (name, kind, NHWC shape, arg, tie data)
    cases = [
        ("max2", "max", (2, 7, 5, 3), 2, False),
        ("max3", "max", (1, 8, 7, 4), 3, False),
        ("max2_ties", "max", (2, 6, 6, 5), 2, True),
        ("max3_nan", "max", (1, 6, 6, 3), 3, False),
        ("amax_7to3", "amax", (2, 7, 7, 3), (3, 3), False),
        ("amax_5to5", "amax", (1, 5, 5, 2), (5, 5), False),
        ("amax_3to5", "amax", (1, 3, 4, 2), (5, 6), False),
        ("amax_10to4x2", "amax", (2, 10, 9, 3), (4, 2), False),
        ("amax_ties", "amax", (1, 7, 6, 4), (3, 4), True),
        ("aavg_7to3", "aavg", (2, 7, 7, 3), (3, 3), False),
        ("aavg_5to5", "aavg", (1, 5, 5, 2), (5, 5), False),
        ("aavg_3to5", "aavg", (1, 3, 4, 2), (5, 6), False),
        ("aavg_10to4x2", "aavg", (2, 10, 9, 3), (4, 2), False),
        ("gavg", "aavg", (3, 4, 5, 6), (1, 1), False),
    ]
    for name, kind, shape, arg, ties in cases:
        if ties:
            x = torch.randint(0, 3, shape).float()
        else:
            x = torch.randn(shape)
        if name.endswith("_nan"):
            x[0, 0, 1, 0] = float("nan")   # window (0, 0), channel 0: one NaN
            x[0, 1, 0, 1] = float("nan")   # window (0, 0), channel 1: two NaNs,
            x[0, 2, 2, 1] = float("nan")   # the later one takes the gradient
        gy_shape = None
        xi = nchw(x).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        if kind == "max":
            y = F.max_pool2d(xi, arg)
        elif kind == "amax":
            y = F.adaptive_max_pool2d(xi, arg)
        else:
            y = F.adaptive_avg_pool2d(xi, arg)
        gy_shape = nhwc(y.detach()).shape
        gy = torch.randn(gy_shape)
        y.backward(nchw(gy))
        t[f"{name}.x"] = x
        t[f"{name}.gy"] = gy
        t[f"{name}.y"] = nhwc(y.detach())
        t[f"{name}.dx"] = nhwc(xi.grad)
    return t


def dense_cases():
    t = {}
    a = torch.randn(5, 7)
    b = torch.randn(7, 3)
    ad, bd = a.double().requires_grad_(True), b.double().requires_grad_(True)
    y = ad @ bd
    gy = torch.randn(5, 3)
    y.backward(gy.double())
    t.update({"matmul.a": a, "matmul.b": b, "matmul.gy": gy, "matmul.y": y.detach().float(),
              "matmul.da": ad.grad.float(), "matmul.db": bd.grad.float()})
    # (name, x shape, out features, bias)
    for name, xshape, out, bias in (("linear3d", (2, 3, 5), 4, True),
                                    ("linear_nobias", (6, 5), 3, False),
                                    ("linear4d", (2, 2, 3, 7), 5, True)):
        x = torch.randn(xshape)
        w = torch.randn(out, xshape[-1]) * 0.5
        xd, wd = x.double().requires_grad_(True), w.double().requires_grad_(True)
        bd = None
        if bias:
            b = torch.randn(out)
            bd = b.double().requires_grad_(True)
            t[f"{name}.b"] = b
        y = F.linear(xd, wd, bd)
        gy = torch.randn(y.shape)
        y.backward(gy.double())
        t.update({f"{name}.x": x, f"{name}.w": w, f"{name}.gy": gy,
                  f"{name}.y": y.detach().float(), f"{name}.dx": xd.grad.float(),
                  f"{name}.dw": wd.grad.float()})
        if bias:
            t[f"{name}.db"] = bd.grad.float()
    return t


def loss_cases():
    t = {}
    # Hard labels: (name, logits shape, smoothing)
    for name, shape, s in (("ce", (7, 10), 0.0), ("ce_smooth", (7, 10), 0.1),
                           ("ce_3d", (2, 3, 5), 0.2), ("ce_c1rows", (1, 4), 0.0)):
        x = torch.randn(shape) * 2.0
        c = shape[-1]
        labels = torch.randint(0, c, (x.numel() // c,), dtype=torch.int32)
        xd = x.double().requires_grad_(True)
        loss = F.cross_entropy(xd.reshape(-1, c), labels.long(), label_smoothing=s)
        gy = torch.rand(1) + 0.5
        loss.backward(gy.double()[0])
        t.update({f"{name}.x": x, f"{name}.labels": labels, f"{name}.gy": gy,
                  f"{name}.smoothing": torch.tensor([s], dtype=torch.float32),
                  f"{name}.loss": loss.detach().float().reshape(1), f"{name}.dx": xd.grad.float()})
    # Soft targets (timm SoftTargetCrossEntropy), e.g. after mixup.
    x = torch.randn(5, 8) * 2.0
    tgt = torch.softmax(torch.randn(5, 8) * 2.0, dim=-1).float()
    xd = x.double().requires_grad_(True)
    loss = torch.sum(-tgt.double() * F.log_softmax(xd, dim=-1), dim=-1).mean()
    gy = torch.rand(1) + 0.5
    loss.backward(gy.double()[0])
    t.update({"ce_soft.x": x, "ce_soft.targets": tgt, "ce_soft.gy": gy,
              "ce_soft.loss": loss.detach().float().reshape(1), "ce_soft.dx": xd.grad.float()})
    # BCE with logits against smoothed one-hot targets, with a few large logits.
    x = torch.randn(6, 9) * 3.0
    x[0, 0], x[1, 1], x[2, 2] = 40.0, -40.0, 95.0
    tgt = torch.full((6, 9), 0.1 / 9)
    tgt[torch.arange(6), torch.randint(0, 9, (6,))] = 1.0 - 0.1 + 0.1 / 9
    xd = x.double().requires_grad_(True)
    loss = F.binary_cross_entropy_with_logits(xd, tgt.double())
    gy = torch.rand(1) + 0.5
    loss.backward(gy.double()[0])
    t.update({"bce.x": x, "bce.targets": tgt, "bce.gy": gy,
              "bce.loss": loss.detach().float().reshape(1), "bce.dx": xd.grad.float()})
    return t


def main():
    os.makedirs(OUT, exist_ok=True)
    meta = {"torch": torch.__version__, "script": "tests/reference/gen_ops.py"}
    torch.manual_seed(20240601)
    save(os.path.join(OUT, "bn.safetensors"), bn_cases(), meta)
    torch.manual_seed(20240602)
    save(os.path.join(OUT, "pool.safetensors"), pool_cases(), meta)
    torch.manual_seed(20240603)
    save(os.path.join(OUT, "dense.safetensors"), dense_cases(), meta)
    torch.manual_seed(20240604)
    save(os.path.join(OUT, "loss.safetensors"), loss_cases(), meta)


if __name__ == "__main__":
    main()
