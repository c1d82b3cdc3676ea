#!/usr/bin/python3
"""Loads weight files written by the C framework into the PyTorch VanillaNet with
load_state_dict(strict=True) and checks PyTorch's logits against the C logits.

Usage: check_roundtrip.py DIR   (DIR holds cases.json and the files it names)
Exit 0 on success, 1 on mismatch, 77 when PyTorch is not installed.
"""
import json
import os
import sys

try:
    import torch
except ImportError:
    print("SKIP: python3-torch is not installed")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_io import load  # noqa: E402
from vanillanet_ref import VanillaNet  # noqa: E402


def main(d):
    with open(os.path.join(d, "cases.json")) as f:
        cases = json.load(f)
    ok = True
    for c in cases:
        weights, _ = load(os.path.join(d, c["weights"]))
        io, _ = load(os.path.join(d, c["io"]))
        m = VanillaNet(in_chans=c["in_chans"], num_classes=c["num_classes"], dims=c["dims"],
                       strides=c["strides"], act_num=c["act_num"], ada_pool=c["ada_pool"],
                       deploy=c["deploy"])
        m.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
        m.change_act(c["act_learn"])
        m.eval()
        x = torch.from_numpy(io["x"]).permute(0, 3, 1, 2)
        with torch.no_grad():
            y = m(x).numpy()
        want = io["logits"]
        err = abs(y - want).max() / max(abs(want).max(), 1e-30)
        status = "ok" if err < 1e-4 else "MISMATCH"
        ok &= err < 1e-4
        print(f"{c['weights']}: strict load ok, logits rel err {err:.2e} {status}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
