"""Reference fixtures for vn_conv2d (tests/conv/test_conv.c).

Run with Debian's python3-torch:  /usr/bin/python3 tests/reference/gen_conv.py
Writes tests/reference/fixtures/conv/<case>.safetensors holding, in the framework's layouts:
  x [N, H, W, Cin] (NHWC), w [Cout, KH, KW, Cin/groups] (OHWI), b [Cout] (when the case has
  a bias), g [N, Ho, Wo, Cout] (a random upstream gradient, NHWC), and the results
  y = conv2d(x, w, b), dx, dw, db (the gradients of sum(y * g)).
Inputs are drawn in float32 with a fixed seed; the reference is computed by
torch.nn.functional.conv2d in float64 from those float32 values and stored as float32, so
the C test measures its own float32 error only. __metadata__ repeats the case's parameters
so the test can reject a stale fixture.
"""
import os

import torch
import torch.nn.functional as F

import st_io

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "conv")

# name, (N, H, W, Cin), Cout, (KH, KW), (stride_h, stride_w), (pad_h, pad_w), groups, bias
CASES = [
    ("pw1x1", (2, 5, 3, 6), 7, (1, 1), (1, 1), (0, 0), 1, True),
    ("pw1x1_one_channel", (1, 4, 4, 1), 5, (1, 1), (1, 1), (0, 0), 1, True),
    ("pw1x1_nobias", (3, 2, 3, 9), 4, (1, 1), (1, 1), (0, 0), 1, False),
    ("pw1x1_stride2", (2, 6, 5, 4), 3, (1, 1), (2, 2), (0, 0), 1, True),
    ("stem4", (2, 10, 9, 3), 8, (4, 4), (4, 4), (0, 0), 1, True),
    ("stem4_exact", (1, 8, 8, 3), 5, (4, 4), (4, 4), (0, 0), 1, False),
    ("stem3_pad1", (2, 11, 10, 3), 8, (3, 3), (3, 3), (1, 1), 1, True),
    ("dw7_7x7", (2, 7, 7, 12), 12, (7, 7), (1, 1), (3, 3), 12, False),
    ("dw7_1x1", (3, 1, 1, 16), 16, (7, 7), (1, 1), (3, 3), 16, False),
    ("dw7_2x2", (2, 2, 2, 9), 9, (7, 7), (1, 1), (3, 3), 9, True),
    ("dw7_bias", (1, 9, 6, 20), 20, (7, 7), (1, 1), (3, 3), 20, True),
    ("dw7_wide", (1, 8, 10, 37), 37, (7, 7), (1, 1), (3, 3), 37, True),
    ("dw3", (2, 6, 5, 10), 10, (3, 3), (1, 1), (1, 1), 10, False),
    ("dw5", (2, 6, 6, 8), 8, (5, 5), (1, 1), (2, 2), 8, False),
    ("dw9", (1, 9, 8, 5), 5, (9, 9), (1, 1), (4, 4), 5, False),
    ("dw4_even", (2, 6, 7, 8), 8, (4, 4), (1, 1), (1, 1), 8, True),
    ("dw3_stride2", (2, 8, 7, 6), 6, (3, 3), (2, 2), (1, 1), 6, True),
    ("dw_one_channel", (2, 5, 5, 1), 1, (3, 3), (1, 1), (1, 1), 1, True),
    ("gen3_stride2", (2, 7, 8, 5), 6, (3, 3), (2, 2), (1, 1), 1, True),
    ("gen3_nobias", (2, 6, 6, 4), 5, (3, 3), (1, 1), (0, 0), 1, False),
    ("grouped2", (2, 6, 6, 4), 6, (3, 3), (1, 1), (1, 1), 2, True),
    ("nonsquare3x1", (2, 5, 6, 3), 4, (3, 1), (1, 1), (1, 0), 1, True),
    ("batch1_odd", (1, 7, 5, 3), 2, (5, 3), (2, 1), (2, 1), 1, True),
    # YOLO11's convs (issue 17): 3x3 s1 p1 and 3x3 s2 p1 without bias (BN follows), on even
    # maps; the head's depthwise 3x3 and C2PSA's positional 3x3 depthwise with bias.
    ("yolo3_s1", (2, 8, 8, 6), 10, (3, 3), (1, 1), (1, 1), 1, False),
    ("yolo3_s2", (2, 8, 8, 6), 12, (3, 3), (2, 2), (1, 1), 1, False),
    ("yolo3_s2_odd", (1, 9, 7, 5), 4, (3, 3), (2, 2), (1, 1), 1, True),
    ("yolo_dw3", (2, 6, 6, 24), 24, (3, 3), (1, 1), (1, 1), 24, True),
]


def make(name, xs, cout, k, s, p, groups, bias, seed):
    torch.manual_seed(seed)
    n, h, w, cin = xs
    x = torch.randn(n, h, w, cin, dtype=torch.float32)
    wt = torch.randn(cout, k[0], k[1], cin // groups, dtype=torch.float32) * 0.3
    b = torch.randn(cout, dtype=torch.float32) if bias else None
    ho = (h + 2 * p[0] - k[0]) // s[0] + 1
    wo = (w + 2 * p[1] - k[1]) // s[1] + 1
    g = torch.randn(n, ho, wo, cout, dtype=torch.float32)

    x64 = x.double().permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    w64 = wt.double().permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    b64 = b.double().requires_grad_(True) if bias else None
    y64 = F.conv2d(x64, w64, b64, stride=s, padding=p, groups=groups)
    assert y64.shape == (n, cout, ho, wo), (name, y64.shape)
    (y64 * g.double().permute(0, 3, 1, 2)).sum().backward()

    nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous().float()
    tensors = {"x": x, "w": wt}
    if bias:
        tensors["b"] = b
    tensors["g"] = g
    tensors["y"] = nhwc(y64.detach())
    tensors["dx"] = nhwc(x64.grad)
    tensors["dw"] = nhwc(w64.grad)
    if bias:
        tensors["db"] = b64.grad.float()
    meta = {"stride_h": s[0], "stride_w": s[1], "pad_h": p[0], "pad_w": p[1],
            "groups": groups, "bias": int(bias), "generator": "tests/reference/gen_conv.py",
            "torch": torch.__version__}
    st_io.save(os.path.join(OUT, name + ".safetensors"), tensors, meta)


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, c in enumerate(CASES):
        make(*c, seed=1000 + i)
    print(f"wrote {len(CASES)} fixtures to {OUT}")


if __name__ == "__main__":
    main()
