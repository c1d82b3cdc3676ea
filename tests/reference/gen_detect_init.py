#!/usr/bin/python3
"""Fixtures for a detector's model.init from official VanillaNet weights
(tests/detect/test_detect_init.c): a small VanillaNet classifier with three stages (a backbone
that reaches stride 32, which a detector needs) saved as the official main.py checkpoint
{"model", "model_ema", "epoch"} by torch.save, and the same two state_dicts written
independently as plain safetensors (official names, OIHW), which the C test compares with what
it reads from the .pth.

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/gen_detect_init.py
"""
import os
from collections import OrderedDict

import torch

from st_io import save
from vanillanet_ref import VanillaNet, randomize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "detect")
CFG = dict(in_chans=3, num_classes=10, dims=(8, 16, 16, 16), strides=(2, 2, 2), act_num=1)


def sd_of(seed):
    m = VanillaNet(**CFG)
    randomize(m, seed)
    return OrderedDict((k, v.detach().clone()) for k, v in m.state_dict().items())


def main():
    torch.manual_seed(7)
    model, ema = sd_of(41), sd_of(42)
    torch.save({"model": model, "model_ema": ema, "epoch": 3},
               os.path.join(OUT, "init_ckpt.pth"))
    save(os.path.join(OUT, "init_model.safetensors"), model)
    save(os.path.join(OUT, "init_model_ema.safetensors"), ema)


if __name__ == "__main__":
    main()
