#!/usr/bin/python3
"""Fixtures for official weights (tests/io/test_pth.c, tests/train/test_weights.sh): a small
VanillaNet's state_dict as PyTorch writes it, in safetensors without metadata (plain) and as
torch.save .pth files in the shapes the official repository produces (a bare state_dict, the
main.py checkpoint {"model", "model_ema", "optimizer", "epoch", "scaler", "args"}, DataParallel
"module." prefixes, float16, non-contiguous and offset views, float64), plus files that must
be refused (a pickle naming os.system, a truncated zip, a missing storage record, a storage
too small for its tensor's shape), the legacy pre-1.6 format, and logits of a batch.

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/gen_weights.py
"""
import argparse
import io
import os
import zipfile
from collections import OrderedDict

import torch

from st_io import save
from vanillanet_ref import VanillaNet, randomize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "weights")
CFG = dict(in_chans=3, num_classes=5, dims=(8, 16, 24), strides=(2, 2), act_num=1)
CONFIG_YAML = """model: {name: custom, dims: [8, 16, 24], strides: [2, 2], act_num: 1, in_chans: 3}
data: {input_size: 32, crop_pct: 1.0, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
"""


def nhwc(t):
    return t.detach().permute(0, 2, 3, 1).contiguous()


def models():
    torch.manual_seed(3)
    train = VanillaNet(**CFG)
    randomize(train, 21)
    train.eval()
    ema = VanillaNet(**CFG)
    randomize(ema, 22)
    ema.eval()
    deploy = VanillaNet(**CFG)
    deploy.load_state_dict(train.state_dict())
    deploy.eval()
    deploy.switch_to_deploy()
    return train, ema, deploy


def sd_of(m):
    return OrderedDict((k, v.detach().clone()) for k, v in m.state_dict().items())


def write_pth(name, obj):
    torch.save(obj, os.path.join(OUT, name))


def zip_replace(src, dst, drop=None, replace=None):
    """Copies a torch.save zip, dropping the member ending in `drop` or replacing the
    contents of members ending in a key of `replace`."""
    with zipfile.ZipFile(os.path.join(OUT, src)) as zi, \
            zipfile.ZipFile(os.path.join(OUT, dst), "w", zipfile.ZIP_STORED) as zo:
        for info in zi.infolist():
            if drop and info.filename.endswith(drop):
                continue
            data = zi.read(info.filename)
            for suffix, new in (replace or {}).items():
                if info.filename.endswith(suffix):
                    data = new
            zo.writestr(info.filename, data)


def main():
    os.makedirs(OUT, exist_ok=True)
    train, ema, deploy = models()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = {"x": nhwc(x), "logits_train": train(x), "logits_ema": ema(x),
                    "logits_deploy": deploy(x)}
    # The float16 file's model: PyTorch's own float16 -> float32 conversion of the weights.
    half_model = VanillaNet(**CFG)
    half_model.load_state_dict(OrderedDict((k, v.half().float() if v.is_floating_point() else v)
                                           for k, v in train.state_dict().items()))
    half_model.eval()
    with torch.no_grad():
        expected["logits_half"] = half_model(x)
    save(os.path.join(OUT, "expected.safetensors"), expected)
    with open(os.path.join(OUT, "config.yaml"), "w") as f:
        f.write(CONFIG_YAML)

    sd, sd_ema, sd_dep = sd_of(train), sd_of(ema), sd_of(deploy)
    # Plain safetensors (what safetensors.torch.save_file writes: no vanilla metadata).
    save(os.path.join(OUT, "plain_train.safetensors"), sd)
    save(os.path.join(OUT, "plain_ema.safetensors"), sd_ema)
    save(os.path.join(OUT, "plain_deploy.safetensors"), sd_dep)

    write_pth("sd_train.pth", sd)
    write_pth("sd_deploy.pth", sd_dep)
    opt = torch.optim.AdamW(train.parameters(), lr=1e-3)
    train.train()
    train(x).sum().backward()
    opt.step()
    train.eval()
    args = argparse.Namespace(model="vanillanet_custom", lr=1e-3, epochs=300, model_ema=True)
    ckpt = {"model": sd, "model_ema": sd_ema, "optimizer": opt.state_dict(), "epoch": 7,
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
            "args": args, "max_accuracy": 12.5, "note": None}
    write_pth("ckpt.pth", ckpt)
    write_pth("module.pth", {"state_dict": OrderedDict(("module." + k, v) for k, v in sd.items())})
    half = OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in sd.items())
    write_pth("half.pth", {"model": half})
    save(os.path.join(OUT, "half_ref.safetensors"),
         OrderedDict((k, v.float() if v.is_floating_point() else v) for k, v in half.items()))
    # Views: a permuted (non-contiguous) weight, a slice at an offset of a larger storage,
    # a float64 tensor. Values equal sd's.
    views = OrderedDict(sd)
    w = sd["stem1.0.weight"]
    views["stem1.0.weight"] = w.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)
    b = sd["stem1.1.bias"]
    big = torch.cat([torch.full((5,), 7.0), b, torch.full((3,), 9.0)])
    views["stem1.1.bias"] = big[5:5 + b.numel()]
    views["stem2.1.weight"] = sd["stem2.1.weight"].double()
    assert not views["stem1.0.weight"].is_contiguous()
    write_pth("views.pth", views)

    # Refused files.
    evil = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    with zipfile.ZipFile(os.path.join(OUT, "evil.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", evil)
        z.writestr("evil/version", "3\n")
    with open(os.path.join(OUT, "sd_train.pth"), "rb") as f:
        raw = f.read()
    with open(os.path.join(OUT, "truncated.pth"), "wb") as f:
        f.write(raw[:len(raw) // 2])
    zip_replace("sd_train.pth", "nostorage.pth", drop="/data/3")
    # A storage record cut short: its tensor's shape and strides reach past the data.
    with zipfile.ZipFile(os.path.join(OUT, "sd_train.pth")) as z:
        name = [n for n in z.namelist() if n.endswith("/data/0")][0]
        short = z.read(name)[:-8]
    zip_replace("sd_train.pth", "badshape.pth", replace={"/data/0": short})
    # A state_dict of the wrong shapes for the config (another width).
    wrong = VanillaNet(in_chans=3, num_classes=5, dims=(8, 16, 32), strides=(2, 2), act_num=1)
    write_pth("wrong_variant.pth", wrong.state_dict())
    torch.save(sd, os.path.join(OUT, "legacy.pth"), _use_new_zipfile_serialization=False)
    eval_images(sd)


def eval_images(sd):
    """An image folder (5 classes named a..e, 2 RGB 32x32 PNGs each) and PyTorch's logits on
    it in sorted order, preprocessed as config.yaml says: input 32 with crop_pct 1 leaves the
    image as it is, then (x / 255 - 0.5) / 0.25."""
    from PIL import Image
    train = VanillaNet(**CFG)
    train.load_state_dict(sd)
    train.eval()
    g = torch.Generator().manual_seed(9)
    xs = []
    for c in "abcde":
        os.makedirs(os.path.join(OUT, "images", c), exist_ok=True)
        for i in range(2):
            px = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8)
            Image.fromarray(px.numpy()).save(os.path.join(OUT, "images", c, f"{i}.png"))
            xs.append((px.float() / 255 - 0.5) / 0.25)
    with torch.no_grad():
        logits = train(torch.stack(xs).permute(0, 3, 1, 2))
    save(os.path.join(OUT, "expected_eval.safetensors"), {"logits": logits})


if __name__ == "__main__":
    main()
