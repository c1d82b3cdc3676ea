#!/usr/bin/python3
"""The PyTorch side of bench/bench_train: the same VanillaNet (tests/reference/vanillanet_ref.py,
the official structure), batch, input size and step, timed the same way, printing the same
RESULT line. Run with Debian's /usr/bin/python3 (python3-torch 1.13).

  torch_baseline.py [--model NAME | --dims D0,D1,.. --strides S0,S1,..] [--in-chans C]
                    [--classes K] [--act-num A] [--drop-rate P] [--batch N] [--size S]
                    [--mode train|deploy] [--steps N] [--warmup W] [--threads T]
                    [--channels-last] [--seed S] [--device cpu|cuda] [--bf16] [--no-tf32]
                    [--ema DECAY]

train:  model.train(), change_act(0.5); per step forward, CrossEntropyLoss against random
        labels, backward, SGD(momentum 0.9) step, zero_grad; with --ema DECAY also the model
        EMA of the official trainer (timm.utils.ModelEma, or the same class here when timm is
        not installed: a deepcopy of the model whose state_dict follows the live one's) after
        every optimizer step, inside the timed optimizer phase.
deploy: change_act(1), switch_to_deploy(), eval(), torch.inference_mode(); one forward per step.
The input is NCHW unless --channels-last (then the model and input use channels_last).
--device cuda runs on the GPU (phases synchronised; TF32 on for matmuls and convs unless
--no-tf32); --bf16 wraps forward and loss in torch.autocast(bfloat16), FP32 master weights.
FLOPs are counted as bench_train counts them (multiply-adds of every conv, depthwise ones
included, x 2 x batch, x 3 for a training step), computed here from the model's own convs.
Peak RSS is the process's ru_maxrss: the interpreter and libtorch are part of it, as they
are part of what a PyTorch user runs.
"""
import argparse
import os
import resource
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from vanillanet_ref import VanillaNet  # noqa: E402

# Released variants, as models/variants.c (the official vanillanet.py); the ada_pool one is
# left out.
VARIANTS = {
    "vanillanet_5": ([512, 1024, 2048, 4096], [2, 2, 2]),
    "vanillanet_6": ([512, 1024, 2048, 4096, 4096], [2, 2, 2, 1]),
}
for _n in range(7, 14):
    VARIANTS[f"vanillanet_{_n}"] = ([512, 512, 1024] + [2048] * (_n - 6) + [4096, 4096],
                                    [1, 2, 2] + [1] * (_n - 7) + [2, 1])
VARIANTS["vanillanet_13_x1_5"] = ([d * 3 // 2 for d in VARIANTS["vanillanet_13"][0]],
                                  VARIANTS["vanillanet_13"][1])


def int_list(s):
    return [int(v) for v in s.split(",") if v]


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="vanillanet_5", choices=sorted(VARIANTS))
    p.add_argument("--dims", type=int_list)
    p.add_argument("--strides", type=int_list)
    p.add_argument("--in-chans", type=int)
    p.add_argument("--classes", type=int)
    p.add_argument("--act-num", type=int, default=3)
    p.add_argument("--drop-rate", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--mode", choices=["train", "deploy"], default="train")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--no-tf32", action="store_true")
    p.add_argument("--ema", type=float, default=0.0, help="model EMA decay (0: none)")
    a = p.parse_args()
    if (a.dims is None) != (a.strides is None):
        p.error("--dims and --strides go together")
    if a.dims is not None:
        if len(a.dims) != len(a.strides) + 1:
            p.error("--dims needs one entry more than --strides")
        a.name = "custom"
    else:
        a.dims, a.strides = VARIANTS[a.model]
        a.name = a.model
    a.in_chans = a.in_chans or 3
    a.classes = a.classes or 1000
    return a


class ModelEma:
    """timm 0.6.12's timm.utils.ModelEma, which the official main.py uses: a deepcopy of the
    model in eval mode, every state_dict entry blended after each step."""

    def __init__(self, model, decay):
        import copy
        self.ema = copy.deepcopy(model)
        self.ema.eval()
        self.decay = decay
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def update(self, model):
        with torch.no_grad():
            msd = model.state_dict()
            for k, ema_v in self.ema.state_dict().items():
                model_v = msd[k].detach()
                ema_v.copy_(ema_v * self.decay + (1. - self.decay) * model_v)


def make_ema(model, decay):
    try:
        from timm.utils import ModelEma as TimmModelEma
        return TimmModelEma(model, decay=decay), "timm.utils.ModelEma"
    except ImportError:
        return ModelEma(model, decay), "ModelEma (timm's, re-stated)"


def conv_macs(model, x):
    """Multiply-adds of every Conv2d for one image, from hooks on a forward pass."""
    total = [0]

    def hook(m, inp, out):
        _, c, h, w = out.shape
        kh, kw = m.kernel_size
        total[0] += h * w * c * (m.in_channels // m.groups) * kh * kw

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    # The activation's depthwise conv is F.conv2d on its own weight, not an nn.Conv2d.
    from vanillanet_ref import activation

    def act_hook(m, inp, out):
        _, c, h, w = out.shape
        k = m.weight.shape[-1]
        total[0] += h * w * c * k * k

    hs += [m.register_forward_hook(act_hook) for m in model.modules() if isinstance(m, activation)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(x[:1])
    model.train(was)
    for h in hs:
        h.remove()
    return total[0]


def main():
    a = parse()
    threads = a.threads if a.threads > 0 else os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(a.seed)
    model = VanillaNet(in_chans=a.in_chans, num_classes=a.classes, dims=a.dims,
                       drop_rate=a.drop_rate, act_num=a.act_num, strides=a.strides)
    x = torch.randn(a.batch, a.in_chans, a.size, a.size)
    labels = torch.randint(0, a.classes, (a.batch,))
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    if a.mode == "deploy":
        model.change_act(1.0)
        model.switch_to_deploy()
        model.eval()
    else:
        model.train()
        model.change_act(0.5)
    dev = torch.device(a.device)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not a.no_tf32
        torch.backends.cudnn.allow_tf32 = not a.no_tf32
        torch.backends.cudnn.benchmark = True
    model = model.to(device=dev, memory_format=fmt)
    x = x.to(dev).contiguous(memory_format=fmt)
    labels = labels.to(dev)
    macs = conv_macs(model, x)
    nparams = sum(p.numel() for p in model.parameters())
    flops_step = 2.0 * macs * a.batch * (1 if a.mode == "deploy" else 3)
    layout = "channels_last" if a.channels_last else "NCHW"
    print(f"torch_baseline: torch {torch.__version__}, {a.name} (dims {a.dims}, strides {a.strides}, "
          f"act_num {a.act_num}, in_chans {a.in_chans}, {a.classes} classes), {a.mode} mode,\n"
          f"  batch {a.batch}, input {a.size}x{a.size}, {threads} threads, {layout}, "
          f"{nparams / 1e6:.2f}M params, {macs / 1e9:.3f} GMACs/image")
    sys.stdout.flush()

    opt = ema = None
    if a.mode == "train":
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        crit = nn.CrossEntropyLoss()
        if a.ema > 0:
            ema, ema_kind = make_ema(model, a.ema)
            print(f"  model EMA: decay {a.ema:g}, {ema_kind}, updated after every step")

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    def step():
        t0 = time.perf_counter()
        if a.mode == "deploy":
            with torch.inference_mode(), torch.autocast(a.device, torch.bfloat16, enabled=a.bf16):
                model(x)
            sync()
            return time.perf_counter() - t0, 0.0, 0.0
        with torch.autocast(a.device, torch.bfloat16, enabled=a.bf16):
            loss = crit(model(x), labels)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        if ema is not None:
            ema.update(model)
        sync()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    times, phases = [], []
    cpu_total = wall_total = 0.0
    for s in range(-a.warmup, a.steps):
        w0, c0 = time.perf_counter(), time.process_time()
        ph = step()
        w, c = time.perf_counter() - w0, time.process_time() - c0
        if s < 0:
            print(f"  warm-up {s + a.warmup}: {w * 1e3:.1f} ms")
        else:
            times.append(w)
            phases.append(ph)
            cpu_total += c
            wall_total += w
            print(f"  step {s}: {w * 1e3:.1f} ms (cpu {100 * c / (w * threads):.0f}% of {threads} threads)")
        sys.stdout.flush()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def median(v):
        v = sorted(v)
        n = len(v)
        return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])

    med, tmin = median(times), min(times)
    mf, mb, mo = (median([p[i] for p in phases]) for i in range(3))
    img_s, gflops = a.batch / med, flops_step / med * 1e-9
    cpu_util = cpu_total / (wall_total * threads)
    print(f"step time: median {med * 1e3:.1f} ms, min {tmin * 1e3:.1f} ms over {a.steps} steps "
          f"(after {a.warmup} warm-up)")
    if a.mode == "train":
        print(f"  phases (medians): forward+loss {mf * 1e3:.1f} ms, backward {mb * 1e3:.1f} ms, "
              f"optimizer {mo * 1e3:.1f} ms")
    print(f"throughput: {img_s:.2f} images/s ({1e3 * med / a.batch:.2f} ms/image), {gflops:.1f} GFLOPS achieved")
    print(f"memory: peak RSS {rss:.1f} MB")
    print(f"cpu: {100 * cpu_util:.0f}% of {threads} threads busy during the timed steps")
    who = "torch_cl" if a.channels_last else "torch"
    print(f"RESULT {who} mode={a.mode} model={a.name} dims={','.join(map(str, a.dims))} "
          f"strides={','.join(map(str, a.strides))} batch={a.batch} size={a.size} threads={threads} "
          f"step_ms={med * 1e3:.3f} min_ms={tmin * 1e3:.3f} img_s={img_s:.4f} gflops={gflops:.3f} "
          f"rss_mb={rss:.1f} fwd_ms={mf * 1e3:.3f} bwd_ms={mb * 1e3:.3f} opt_ms={mo * 1e3:.3f} "
          f"cpu={cpu_util:.2f}" + (f" device={a.device}" + (" bf16=1" if a.bf16 else "")
                                   + (" tf32=0" if a.no_tf32 else "") if a.device != "cpu" else "")
          + (f" ema={a.ema:g}" if ema is not None else ""))


if __name__ == "__main__":
    main()
