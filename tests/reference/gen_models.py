#!/usr/bin/python3
"""Fixtures for layers and models (tests/models): one VanillaNet block in training and eval
mode with all gradients, and small whole networks in train and deploy form.

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/gen_models.py
Block fixtures use the framework's layouts (NHWC activations, OHWI weights); model weight
files use the official state_dict names and OIHW layout, as a user's file would.
"""
import json
import os

import torch

from st_io import save
from vanillanet_ref import Block, VanillaNet, randomize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "models")


def nhwc(t):
    return t.detach().permute(0, 2, 3, 1).contiguous()


def ohwi(t):
    return t.detach().permute(0, 2, 3, 1).contiguous()


def block_fixture():
    torch.manual_seed(7)
    blk = Block(6, 10, act_num=3, stride=2)
    randomize(blk, 11)
    blk.act_learn = 0.3
    x0 = torch.randn(3, 6, 9, 9)
    g = torch.randn(3, 10, 4, 4)
    t = {"x": nhwc(x0), "g": nhwc(g)}
    for name, p in blk.state_dict().items():
        t["init." + name] = ohwi(p) if p.dim() == 4 else p.clone()
    for mode in ("train", "eval"):
        b = Block(6, 10, act_num=3, stride=2)
        b.load_state_dict(blk.state_dict())
        b.act_learn = 0.3
        b.train(mode == "train")
        x = x0.clone().requires_grad_(True)
        y = b(x)
        y.backward(g)
        t[f"{mode}.y"] = nhwc(y)
        t[f"{mode}.dx"] = nhwc(x.grad)
        for name, p in b.named_parameters():
            t[f"{mode}.d.{name}"] = ohwi(p.grad) if p.dim() == 4 else p.grad.clone()
        for name, v in b.state_dict().items():
            if "running" in name:
                t[f"{mode}.after.{name}"] = v.clone()
    save(os.path.join(OUT, "block.safetensors"), t)


CASES = [
    # name, dims, strides, ada_pool, act_num, input (N, C, H, W), num_classes
    ("small", [8, 16, 24], [2, 2], None, 3, (2, 3, 64, 64), 10),
    ("deep", [8, 8, 16, 16, 24], [1, 2, 1, 2], None, 2, (2, 1, 32, 32), 7),
    ("ada", [8, 8, 16, 24], [1, 2, 2], [0, 5, 3], 1, (2, 3, 40, 40), 5),
]


def model_fixtures():
    index = {}
    for name, dims, strides, ada, act_num, shape, nc in CASES:
        torch.manual_seed(3)
        m = VanillaNet(in_chans=shape[1], num_classes=nc, dims=dims, strides=strides,
                       act_num=act_num, ada_pool=ada)
        randomize(m, 5)
        x = torch.randn(*shape)
        save(os.path.join(OUT, f"{name}_train.safetensors"), m.state_dict())
        t = {"x": nhwc(x)}
        m.eval()
        with torch.no_grad():
            t["eval_logits"] = m(x)
        m.change_act(0.5)
        with torch.no_grad():
            t["eval_logits_act05"] = m(x)
        m.train()
        with torch.no_grad():
            t["train_logits_act05"] = m(x)
        # One training step's gradients (train mode, act_learn 0.5, label-smoothed CE).
        mg = VanillaNet(in_chans=shape[1], num_classes=nc, dims=dims, strides=strides,
                        act_num=act_num, ada_pool=ada)
        randomize(mg, 5)
        mg.change_act(0.5)
        mg.train()
        labels = torch.arange(shape[0]) % nc
        loss = torch.nn.functional.cross_entropy(mg(x), labels, label_smoothing=0.1)
        loss.backward()
        t["train_loss_act05"] = loss.detach().reshape(1)
        for pname, p in mg.named_parameters():
            t["grad." + pname] = p.grad.clone()
        # The same weights again (the train-mode pass above moved running stats), merged.
        m2 = VanillaNet(in_chans=shape[1], num_classes=nc, dims=dims, strides=strides,
                        act_num=act_num, ada_pool=ada)
        randomize(m2, 5)
        m2.eval()
        m2.switch_to_deploy()
        # A model built with deploy=True has the official deploy state_dict order; loading
        # strictly into it also checks the merged names.
        m3 = VanillaNet(in_chans=shape[1], num_classes=nc, dims=dims, strides=strides,
                        act_num=act_num, ada_pool=ada, deploy=True)
        m3.load_state_dict(m2.state_dict(), strict=True)
        save(os.path.join(OUT, f"{name}_deploy.safetensors"), m3.state_dict())
        with torch.no_grad():
            t["deploy_logits"] = m2(x)
        save(os.path.join(OUT, f"{name}_io.safetensors"), t)
        index[name] = {"dims": dims, "strides": strides, "ada_pool": ada, "act_num": act_num,
                       "input": list(shape), "num_classes": nc}
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(index, f, indent=1)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    block_fixture()
    model_fixtures()
