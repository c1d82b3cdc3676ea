#!/usr/bin/python3
"""Reference fixtures for the optim layer (issue 5): optimizers, schedules, clipping,
accumulation, layer decay and model EMA, written by PyTorch (Debian python3-torch 1.13).

Run with /usr/bin/python3 from the repository root:
    /usr/bin/python3 tests/reference/gen_optim.py
Writes tests/reference/fixtures/optim/*.safetensors.

What each file holds (names are the framework's; see tests/optim/test_optim.c):
  <case>.safetensors      one optimizer run of STEPS steps on a small VanillaNet-like parameter
                          set: "param.<p>" initial values, "grad.<s>" gradients of step s
                          (or "grad.<s>.<k>" micro-batch k of an accumulated step), both
                          flattened and concatenated in parameter order,
                          "lr"/"wd" (F64 [STEPS]) base lr and weight decay of each step (what the
                          schedule gave), "expect.<s>" parameters after step s,
                          "gnorm" (F64 [STEPS]) global gradient norm seen by each step,
                          "state.<name>" the optimizer state after the last step under the
                          framework's state names; metadata: the hyper-parameters.
  schedules.safetensors   "sched.<name>" F64 arrays of whole schedules, metadata "sched.<name>"
                          = "kind,base,final,epochs,niter,warmup_epochs,warmup_steps,
                          step_epochs,gamma".
  groups.safetensors      no-decay groups and layer-decay ids/scales from the official
                          optim_factory / main.py logic.
  clip.safetensors        torch.nn.utils.clip_grad_norm_ on random gradients.
  ema.safetensors         timm ModelEma updates with two decays, including BatchNorm buffers
                          and the int64 num_batches_tracked.

LAMB is timm 0.6.12's `Lamb.step`, reimplemented below line for line (timm is not installed
here): the global grad norm over all gradients, clip = norm / max_grad_norm where the norm
exceeds it, Adam moments with bias correction, wd * p added to the update, the trust ratio
|p| / |update| where weight decay != 0 (1 when a norm is zero), p -= lr * update.
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "optim")
STEPS = 5

# A small parameter set named and shaped like a VanillaNet state_dict (OIHW shapes; the
# optimizers are element-wise, so the C side's layout does not matter).
PARAMS = [
    ("stem1.0.weight", (8, 3, 2, 2)),
    ("stem1.0.bias", (8,)),
    ("stem1.1.weight", (8,)),
    ("stem1.1.bias", (8,)),
    ("stages.0.conv1.0.weight", (8, 8, 1, 1)),
    ("stages.0.conv1.0.bias", (8,)),
    ("stages.0.act.weight", (8, 1, 3, 3)),
    ("stages.1.conv2.0.weight", (16, 8, 1, 1)),
    ("stages.1.conv2.0.bias", (16,)),
    ("cls1.2.weight", (10, 16, 1, 1)),
    ("cls1.2.bias", (10,)),
    ("cls2.0.weight", (10, 10, 1, 1)),
    ("cls2.0.bias", (10,)),
]
NUM_LAYERS = 2  # stages 0 and 1


# ----------------------------------------------------------------------- official logic

def cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0,
                     start_warmup_value=0, warmup_steps=-1):
    """VanillaNet utils.cosine_scheduler, verbatim apart from the print."""
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_steps > 0:
        warmup_iters = warmup_steps
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = np.array(
        [final_value + 0.5 * (base_value - final_value) * (1 + math.cos(math.pi * i / (len(iters))))
         for i in iters])
    schedule = np.concatenate((warmup_schedule, schedule))
    assert len(schedule) == epochs * niter_per_ep
    return schedule


def get_num_layer_for_vanillanet(num_max_layer, var_name):
    if var_name.startswith("stem"):
        return 0
    elif var_name.startswith("stages"):
        stage_id = int(var_name.split('.')[1])
        return stage_id + 1
    elif var_name.startswith("cls"):
        return num_max_layer + 1
    else:
        raise ValueError('Unknown layer name: ' + var_name)


def layer_values(layer_decay, num_layers):
    return list(layer_decay ** (num_layers + 1 - i) for i in range(num_layers + 2))


def is_no_decay(name, shape):
    return len(shape) == 1 or name.endswith(".bias") or name.endswith(".alpha") \
        or name.endswith(".beta")


def get_parameter_groups(named, weight_decay, layer_decay=None, num_layers=None, filt=True):
    """optim_factory.get_parameter_groups (skip_list empty), groups in first-seen order."""
    groups = {}
    for name, p in named:
        if filt and is_no_decay(name, tuple(p.shape)):
            gname, wd = "no_decay", 0.0
        else:
            gname, wd = "decay", weight_decay
        if layer_decay is not None:
            lid = get_num_layer_for_vanillanet(num_layers, name)
            gname = "layer_%d_%s" % (lid, gname)
            scale = layer_values(layer_decay, num_layers)[lid]
        else:
            scale = 1.0
        if gname not in groups:
            groups[gname] = {"weight_decay": wd, "params": [], "lr_scale": scale}
        groups[gname]["params"].append(p)
    return list(groups.values())


class Lamb(torch.optim.Optimizer):
    """timm 0.6.12 timm/optim/lamb.py Lamb, same algorithm and operation order."""

    def __init__(self, params, lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-6,
                 weight_decay=0.01, grad_averaging=True, max_grad_norm=1.0, trust_clip=False,
                 always_adapt=False):
        defaults = dict(lr=lr, bias_correction=bias_correction, betas=betas, eps=eps,
                        weight_decay=weight_decay, grad_averaging=grad_averaging,
                        max_grad_norm=max_grad_norm, trust_clip=trust_clip,
                        always_adapt=always_adapt)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        device = self.param_groups[0]['params'][0].device
        one_tensor = torch.tensor(1.0, device=device)
        global_grad_norm = torch.zeros(1, device=device)
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                global_grad_norm.add_(p.grad.pow(2).sum())
        global_grad_norm = torch.sqrt(global_grad_norm)
        max_grad_norm = torch.tensor(self.defaults['max_grad_norm'], device=device)
        clip_global_grad_norm = torch.where(
            global_grad_norm > max_grad_norm, global_grad_norm / max_grad_norm, one_tensor)

        for group in self.param_groups:
            bias_correction = 1 if group['bias_correction'] else 0
            beta1, beta2 = group['betas']
            grad_averaging = 1 if group['grad_averaging'] else 0
            beta3 = 1 - beta1 if grad_averaging else 1.0
            if 'step' in group:
                group['step'] += 1
            else:
                group['step'] = 1
            if bias_correction:
                bias_correction1 = 1 - beta1 ** group['step']
                bias_correction2 = 1 - beta2 ** group['step']
            else:
                bias_correction1, bias_correction2 = 1.0, 1.0
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad.div_(clip_global_grad_norm)
                state = self.state[p]
                if len(state) == 0:
                    state['exp_avg'] = torch.zeros_like(p)
                    state['exp_avg_sq'] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']
                exp_avg.mul_(beta1).add_(grad, alpha=beta3)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(group['eps'])
                update = (exp_avg / bias_correction1).div_(denom)
                weight_decay = group['weight_decay']
                if weight_decay != 0:
                    update.add_(p, alpha=weight_decay)
                if weight_decay != 0 or group['always_adapt']:
                    w_norm = p.norm(2.0)
                    g_norm = update.norm(2.0)
                    trust_ratio = torch.where(
                        w_norm > 0, torch.where(g_norm > 0, w_norm / g_norm, one_tensor),
                        one_tensor)
                    if group['trust_clip']:
                        trust_ratio = torch.minimum(trust_ratio, one_tensor)
                    update.mul_(trust_ratio)
                p.add_(update, alpha=-group['lr'])
        return None


# ------------------------------------------------------------------------------- cases

def initial_params(gen, zero_weights=False):
    out = {}
    for name, shape in PARAMS:
        if name.endswith(".bias"):
            t = torch.zeros(shape) if name.startswith("stem") else 0.05 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)  # BN weights
        else:
            t = 0.1 * torch.randn(shape, generator=gen)
        if zero_weights and name in ("stages.0.conv1.0.weight", "cls2.0.weight"):
            t = torch.zeros(shape)
        out[name] = t.float().contiguous()
    return out


def make_grads(gen, scale, zero=()):
    """zero: names whose gradient is all zeros, or '*' for all."""
    g = {}
    for i, (name, shape) in enumerate(PARAMS):
        t = (scale * (0.5 + 0.25 * (i % 4))) * torch.randn(shape, generator=gen)
        if "*" in zero or name in zero:
            t = torch.zeros(shape)
        g[name] = t.float().contiguous()
    return g


def flat(d, names):
    return torch.cat([d[n].reshape(-1) for n in names]).float().contiguous()


def make_optimizer(kind, groups, cfg):
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"],
                               dampening=cfg["dampening"], nesterov=cfg["nesterov"],
                               weight_decay=0.0)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]),
                                 eps=cfg["eps"], weight_decay=0.0)
    if kind == "lamb":
        return Lamb(groups, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                    weight_decay=0.0, max_grad_norm=cfg["max_grad_norm"],
                    bias_correction=cfg["bias_correction"], always_adapt=cfg["always_adapt"],
                    trust_clip=cfg["trust_clip"])
    raise ValueError(kind)


DEFAULTS = dict(lr=4e-3, weight_decay=0.05, momentum=0.9, dampening=0.0, nesterov=False,
                beta1=0.9, beta2=0.999, eps=1e-8, bias_correction=True, max_grad_norm=1.0,
                always_adapt=False, trust_clip=False, filter=True, layer_decay=1.0,
                num_layers=NUM_LAYERS, update_freq=1, clip_grad=0.0, grad_scale=0.1,
                zero_grads="", zero_grad_step=-1, zero_weights=False, sched="", seed=1)


def state_names(kind, cfg, names):
    """The framework's state names in its order (see vn_optim.h)."""
    out = []
    for n in names:
        if kind == "sgd":
            if cfg["momentum"] != 0:
                out.append(("optim.momentum_buffer." + n, "momentum_buffer"))
        else:
            out.append(("optim.exp_avg." + n, "exp_avg"))
            out.append(("optim.exp_avg_sq." + n, "exp_avg_sq"))
    return out


def run_case(name, kind, **over):
    cfg = dict(DEFAULTS)
    cfg.update(over)
    gen = torch.Generator().manual_seed(cfg["seed"])
    init = initial_params(gen, cfg["zero_weights"])
    names = [n for n, _ in PARAMS]
    params = {n: torch.nn.Parameter(init[n].clone()) for n in names}
    named = [(n, params[n]) for n in names]
    ld = cfg["layer_decay"] if cfg["layer_decay"] != 1.0 else None
    groups = get_parameter_groups(named, cfg["weight_decay"], ld, cfg["num_layers"],
                                  cfg["filter"])
    opt = make_optimizer(kind, groups, cfg)

    # Per-step base lr / wd: constant, or the official schedules over a short run.
    if cfg["sched"] == "cosine":
        # Warmup over the first 2 of the steps (official: warmup_epochs > 0 with warmup_steps).
        lrs = cosine_scheduler(cfg["lr"], 1e-6, 5, 1, warmup_epochs=1, warmup_steps=2)
        wds = cosine_scheduler(cfg["weight_decay"], 0.5 * cfg["weight_decay"], 5, 1)
    else:
        lrs = np.full(STEPS, cfg["lr"], dtype=np.float64)
        wds = np.full(STEPS, cfg["weight_decay"], dtype=np.float64)

    out = {}
    for n in names:
        out["param." + n] = init[n]
    gnorms = []
    K = cfg["update_freq"]
    zero = tuple(x for x in cfg["zero_grads"].split(",") if x)
    for s in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = float(lrs[s]) * g["lr_scale"]
            if g["weight_decay"] > 0:
                g["weight_decay"] = float(wds[s])
        opt.zero_grad(set_to_none=False)
        for n in names:
            params[n].grad = torch.zeros_like(params[n])
        step_zero = zero if s != cfg["zero_grad_step"] else ("*",)
        if K == 1:
            grads = make_grads(gen, cfg["grad_scale"], step_zero)
            out["grad.%d" % s] = flat(grads, names)
            for n in names:
                params[n].grad.add_(grads[n])
        else:
            # Micro-batch k contributes the gradient of loss_k / K, as the official engine's
            # `loss /= update_freq; loss.backward()`: backward yields g_k * (1/K) and
            # accumulates it into .grad with +=.
            for k in range(K):
                grads = make_grads(gen, cfg["grad_scale"], step_zero)
                gk = {n: (grads[n] * torch.tensor(1.0 / K, dtype=torch.float32)).contiguous()
                      for n in names}
                out["grad.%d.%d" % (s, k)] = flat(gk, names)
                for n in names:
                    params[n].grad.add_(gk[n])
        gnorms.append(float(np.sqrt(sum(float((params[n].grad.double() ** 2).sum())
                                            for n in names))))
        if cfg["clip_grad"] > 0:
            torch.nn.utils.clip_grad_norm_([params[n] for n in names], cfg["clip_grad"])
        opt.step()
        out["expect.%d" % s] = flat({n: params[n].detach() for n in names}, names)

    out["lr"] = np.asarray(lrs[:STEPS], dtype=np.float64)
    out["wd"] = np.asarray(wds[:STEPS], dtype=np.float64)
    out["gnorm"] = np.asarray(gnorms, dtype=np.float64)
    for sname, key in state_names(kind, cfg, names):
        pname = sname.split(".", 2)[2]
        st = opt.state[params[pname]]
        out["state." + sname] = st[key].detach().clone()
    out["state.optim.step"] = np.array(STEPS, dtype=np.int64)

    meta = {"kind": kind, "params": ",".join(names), "steps": STEPS}
    for k, v in cfg.items():
        if isinstance(v, bool):
            meta[k] = "1" if v else "0"
        elif isinstance(v, float):
            meta[k] = repr(v)
        else:
            meta[k] = str(v)
    st_io.save(os.path.join(OUT, name + ".safetensors"), out, meta)
    return out


def gen_cases():
    # SGD: plain, momentum with L2 weight decay (decay group only; an all-zero gradient step
    # and a parameter that never gets a gradient), Nesterov, dampening.
    run_case("sgd_plain", "sgd", lr=0.1, momentum=0.0, weight_decay=0.0)
    run_case("sgd_momentum", "sgd", lr=0.05, momentum=0.9, weight_decay=1e-3,
             zero_grads="cls2.0.weight", zero_grad_step=3)
    run_case("sgd_nesterov", "sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-3)
    run_case("sgd_dampening", "sgd", lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.0)
    # AdamW: decoupled decay with groups (zero weights, zero gradients); without the no-decay
    # filter; lr 0.
    run_case("adamw", "adamw", lr=1e-2, weight_decay=0.05, zero_weights=True,
             zero_grads="stem1.0.bias", zero_grad_step=3)
    run_case("adamw_nofilter", "adamw", lr=5e-3, weight_decay=0.1, beta1=0.8, beta2=0.99,
             eps=1e-6, filter=False)
    run_case("adamw_lr0", "adamw", lr=0.0, weight_decay=0.05)
    # AdamW after torch's clip_grad_norm_ (the official AMP path clips then steps).
    run_case("adamw_clip", "adamw", lr=1e-2, weight_decay=0.05, clip_grad=0.3, grad_scale=0.2)
    # LAMB: the recipe (wd 0.35, gradients large enough for the built-in clipping),
    # no weight decay, clipping inactive, zero weights and zero gradients, lr 0, layer decay
    # with the official schedules, always_adapt + trust_clip, no bias correction.
    run_case("lamb_recipe", "lamb", lr=3.5e-3, weight_decay=0.35, grad_scale=0.5)
    run_case("lamb_wd0", "lamb", lr=1e-2, weight_decay=0.0, grad_scale=0.5)
    run_case("lamb_noclip", "lamb", lr=1e-2, weight_decay=0.05, grad_scale=0.02)
    run_case("lamb_zero", "lamb", lr=1e-2, weight_decay=0.1, grad_scale=0.3, zero_weights=True,
             zero_grads="stages.0.conv1.0.weight,stem1.0.bias", zero_grad_step=2)
    run_case("lamb_lr0", "lamb", lr=0.0, weight_decay=0.35, grad_scale=0.5)
    run_case("lamb_layer_decay", "lamb", lr=4.8e-3, weight_decay=0.32, layer_decay=0.8,
             sched="cosine", grad_scale=0.5)
    run_case("lamb_adapt", "lamb", lr=1e-2, weight_decay=0.05, always_adapt=True,
             trust_clip=True, bias_correction=False, beta1=0.8, eps=1e-6, grad_scale=0.5)
    run_case("sgd_layer_decay", "sgd", lr=0.05, momentum=0.9, weight_decay=1e-3,
             layer_decay=0.5, sched="cosine")
    # Gradient accumulation over 3 micro-batches.
    run_case("lamb_accum", "lamb", lr=3.5e-3, weight_decay=0.35, update_freq=3, grad_scale=0.5)
    run_case("adamw_accum", "adamw", lr=1e-2, weight_decay=0.05, update_freq=3)


def gen_schedules():
    scheds = {}
    meta = {}

    def add(name, kind, values, base, final, epochs, niter, we, ws, se=1, gamma=1.0):
        scheds["sched." + name] = np.asarray(values, dtype=np.float64)
        meta["sched." + name] = ",".join(
            [kind, repr(float(base)), repr(float(final)), str(epochs), str(niter), str(we),
             str(ws), str(se), repr(float(gamma))])

    # The recipe's shape on a short run: warmup 2 epochs then cosine to min_lr.
    add("cos_warm_epochs", "cosine", cosine_scheduler(3.5e-3, 1e-6, 10, 7, 2), 3.5e-3, 1e-6,
        10, 7, 2, -1)
    # warmup_steps overrides warmup_epochs.
    add("cos_warm_steps", "cosine", cosine_scheduler(4.8e-3, 1e-5, 6, 5, 1, warmup_steps=9),
        4.8e-3, 1e-5, 6, 5, 1, 9)
    # No warmup; the weight-decay schedule (cosine from start to end value).
    add("wd_cosine", "cosine", cosine_scheduler(0.05, 0.35, 8, 4), 0.05, 0.35, 8, 4, 0, -1)
    add("wd_const", "cosine", cosine_scheduler(0.35, 0.35, 3, 4), 0.35, 0.35, 3, 4, 0, -1)
    # One-iteration warmup (linspace of one point is its start).
    add("cos_warm_one", "cosine", cosine_scheduler(1e-3, 0.0, 3, 3, 1, warmup_steps=1),
        1e-3, 0.0, 3, 3, 1, 1)
    # Step: torch StepLR stepped once per epoch, expanded per iteration.
    epochs, niter, se, gamma, base = 9, 4, 3, 0.1, 0.1
    p = torch.nn.Parameter(torch.zeros(1))
    o = torch.optim.SGD([p], lr=base)
    sch = torch.optim.lr_scheduler.StepLR(o, step_size=se, gamma=gamma)
    vals = []
    for _ in range(epochs):
        vals += [o.param_groups[0]["lr"]] * niter
        o.step()
        sch.step()
    # StepLR multiplies lr by gamma repeatedly; the framework computes base * gamma^k, so
    # compare within rounding (the C test uses a relative tolerance for this one).
    add("step_torch", "step", vals, base, base, epochs, niter, 0, -1, se, gamma)
    # Step with warmup (timm StepLRScheduler semantics, epoch counted from the start).
    epochs, niter, se, gamma, base, we = 8, 5, 2, 0.5, 2e-3, 1
    w = np.linspace(0, base, we * niter)
    vals = [w[it] if it < we * niter else base * gamma ** (it // (se * niter))
            for it in range(epochs * niter)]
    add("step_warm", "step", vals, base, base, epochs, niter, we, -1, se, gamma)
    # Constant with warmup.
    epochs, niter, base, we = 4, 6, 1e-3, 1
    w = np.linspace(0, base, we * niter)
    vals = [w[it] if it < we * niter else base for it in range(epochs * niter)]
    add("const_warm", "constant", vals, base, base, epochs, niter, we, -1)
    st_io.save(os.path.join(OUT, "schedules.safetensors"), scheds, meta)


def gen_groups():
    out = {}
    names = [n for n, _ in PARAMS]
    out["decay"] = np.array([0 if is_no_decay(n, s) else 1 for n, s in PARAMS], dtype=np.int64)
    # Layer ids and scales for a vanillanet_6-like name list (4 stages), decay 0.8, and for
    # the small set (2 stages), decay 0.5.
    v6 = ["stem1.0.weight", "stem1.1.running_mean", "stem2.2.bn.weight", "stages.0.conv1.0.weight",
          "stages.1.act.weight", "stages.2.conv2.1.bias", "stages.3.act.bn.weight",
          "cls1.2.weight", "cls1.3.bias", "cls2.0.weight", "stem.0.weight", "cls.2.bias",
          "stages.10.conv.weight"]
    ids = [get_num_layer_for_vanillanet(4, n) for n in v6[:-1]] + [11]
    vals = layer_values(0.8, 4)
    out["v6.layer_id"] = np.array(ids, dtype=np.int64)
    out["v6.scale"] = np.array([vals[i] for i in ids[:-1]] + [0.0], dtype=np.float64)
    out["small.layer_id"] = np.array([get_num_layer_for_vanillanet(NUM_LAYERS, n)
                                      for n in names], dtype=np.int64)
    vals = layer_values(0.5, NUM_LAYERS)
    out["small.scale"] = np.array([vals[get_num_layer_for_vanillanet(NUM_LAYERS, n)]
                                   for n in names], dtype=np.float64)
    meta = {"params": ",".join(names), "v6": ",".join(v6),
            "v6_note": "the last name has stage 10 > num_layers 4: the official code fails"}
    st_io.save(os.path.join(OUT, "groups.safetensors"), out, meta)


def gen_clip():
    gen = torch.Generator().manual_seed(7)
    out = {}
    meta = {"params": ",".join(n for n, _ in PARAMS)}
    for ci, (scale, max_norm) in enumerate([(0.3, 1.0), (0.01, 1.0), (0.2, 0.5)]):
        ps = [torch.nn.Parameter(torch.zeros(s)) for _, s in PARAMS]
        for (n, s), p in zip(PARAMS, ps):
            p.grad = (scale * torch.randn(s, generator=gen)).float()
            out["case%d.grad.%s" % (ci, n)] = p.grad.clone()
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        for (n, s), p in zip(PARAMS, ps):
            out["case%d.clipped.%s" % (ci, n)] = p.grad.clone()
        out["case%d.total" % ci] = np.array([float(total)], dtype=np.float64)
        meta["case%d.max_norm" % ci] = repr(float(max_norm))
    meta["cases"] = "3"
    st_io.save(os.path.join(OUT, "clip.safetensors"), out, meta)


def gen_ema():
    """timm ModelEma.update on a tiny module with BatchNorm buffers, two decays."""
    gen = torch.Generator().manual_seed(11)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 4, 4)
            self.bn = torch.nn.BatchNorm2d(8, eps=1e-6)
            self.cls = torch.nn.Conv2d(8, 10, 1)

    model = Tiny()
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.dtype == torch.float32:
                v.copy_(torch.randn(v.shape, generator=gen))
        model.bn.running_var.abs_()
        model.bn.num_batches_tracked.fill_(1000)
    decays = [0.9, 0.99996]
    emas = [{k: v.clone() for k, v in model.state_dict().items()} for _ in decays]
    out = {}
    sd = model.state_dict()
    keys = list(sd.keys())
    for k in keys:
        out["model.0." + k] = sd[k].clone()
    for s in range(STEPS):
        # The "optimizer step": parameters and buffers move; the counter jumps.
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if v.dtype == torch.float32:
                    v.add_(0.5 * torch.randn(v.shape, generator=gen))
                else:
                    v.add_(37 + 2500 * s)
        sd = model.state_dict()
        for k in keys:
            out["model.%d.%s" % (s + 1, k)] = sd[k].clone()
        for di, d in enumerate(decays):
            for k, ema_v in emas[di].items():
                ema_v.copy_(ema_v * d + (1. - d) * sd[k])  # timm ModelEma.update
                out["ema%d.%d.%s" % (di, s + 1, k)] = ema_v.clone()
    meta = {"keys": ",".join(keys), "decays": ",".join(repr(d) for d in decays),
            "steps": str(STEPS)}
    st_io.save(os.path.join(OUT, "ema.safetensors"), out, meta)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    gen_cases()
    gen_schedules()
    gen_groups()
    gen_clip()
    gen_ema()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %d files, %d bytes, to %s" % (len(os.listdir(OUT)), total, OUT))


if __name__ == "__main__":
    main()
