#!/usr/bin/python3
"""Fixtures for the element-wise ops of autograd/ops_elementwise.c (tests/core).

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/gen_core.py
Activations are stored NHWC (the framework's layout); the ops are layout-agnostic.
"""
import os

import torch
import torch.nn.functional as F

from st_io import save

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "core")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1234)
    x = torch.randn(2, 5, 3, 7)
    x[0, 0, 0, :3] = 0.0  # exact zeros: PyTorch's gradient convention at 0
    g = torch.randn(2, 5, 3, 7)
    t = {"x": x, "g": g}
    for name, slope in (("relu", 0.0), ("leaky03", 0.3), ("leaky1", 1.0)):
        xi = x.clone().requires_grad_(True)
        y = F.relu(xi) if name == "relu" else F.leaky_relu(xi, slope)
        y.backward(g)
        t[f"{name}.y"] = y.detach()
        t[f"{name}.dx"] = xi.grad
    a = torch.randn(3, 4, 5, requires_grad=True)
    b = torch.randn(3, 4, 5, requires_grad=True)
    ga = torch.randn(3, 4, 5)
    y = 2.5 * (a + b)
    y.backward(ga)
    t.update({"a": a.detach(), "b": b.detach(), "add.g": ga, "add.y": y.detach(),
              "add.da": a.grad, "add.db": b.grad})
    save(os.path.join(OUT, "elementwise.safetensors"), t, {"torch": torch.__version__})


if __name__ == "__main__":
    main()
