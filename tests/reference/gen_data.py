#!/usr/bin/python3
"""Reference fixtures for the data layer (issue 4), from PIL 9.4 and torchvision 0.14.

Run with Debian's interpreter (it has torch, torchvision and PIL):
    /usr/bin/python3 tests/reference/gen_data.py
Writes tests/reference/fixtures/data/:
  resize.safetensors   PIL Image.crop(box).resize(size, BILINEAR|BICUBIC) of synthetic images
  pipeline.safetensors torchvision eval (Resize(int) + CenterCrop) and resized_crop + hflip
                       pipelines, through ToTensor + Normalize, as float32 NHWC
  rrc.safetensors      RandomResizedCrop.get_params boxes with the random draws it consumed
  decode.safetensors   PIL's convert("RGB") / convert("L") of the image files below
  *.jpg, *.png         small images written by PIL (RGB, gray, CMYK, progressive JPEG;
                       palette with transparency, gray+alpha, RGBA PNG)
  mix.safetensors      timm 0.6.12 Mixup (mode "batch") for given lam / box draws
All image arrays are HWC (NHWC for batches), the framework's layout.
"""
import math
import os

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

from st_io import save

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "data")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def synth(w, h, c, seed):
    """Smooth gradients, sharp edges and noise: stresses both filters (ringing, clipping)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for k in range(c):
        v = 127 + 100 * np.sin(x / (3.0 + k) + y / (5.0 + 2 * k))
        v += np.where(((x // 7 + y // 5 + k) % 2) == 0, 60, -60)
        v += rng.normal(0, 25, size=(h, w))
        chans.append(v)
    a = np.clip(np.stack(chans, axis=-1), 0, 255).astype(np.uint8)
    return a if c > 1 else a[:, :, 0]


def pil(a):
    return Image.fromarray(a, "RGB" if a.ndim == 3 else "L")


def hwc(a):
    return a if a.ndim == 3 else a[:, :, None]


def gen_resize():
    # (src w, h, channels, crop (top, left, h, w) or None, out w, h)
    cases = [
        (67, 51, 3, None, 20, 16),      # downscale both ways
        (13, 11, 3, None, 40, 29),      # upscale
        (60, 44, 3, (5, 10, 30, 40), 27, 35),   # crop, then down x / up y
        (50, 40, 1, None, 17, 23),      # gray
        (200, 10, 3, None, 7, 3),       # strong downscale (wide support)
        (40, 30, 3, (3, 4, 25, 33), 33, 12),    # width unchanged: vertical pass only
        (24, 20, 3, (0, 0, 20, 24), 24, 20),    # identity
        (9, 300, 1, None, 5, 31),       # tall, gray
    ]
    t = {}
    k = 0
    for interp, mode in ((0, Image.BILINEAR), (1, Image.BICUBIC)):
        for sw, sh, c, box, ow, oh in cases:
            src = synth(sw, sh, c, seed=100 + k)
            im = pil(src)
            if box is not None:
                top, left, bh, bw = box
                im = im.crop((left, top, left + bw, top + bh))
            else:
                box = (0, 0, sh, sw)
            out = np.asarray(im.resize((ow, oh), mode))
            t[f"case{k}.src"] = hwc(src)
            t[f"case{k}.out"] = hwc(out)
            t[f"case{k}.params"] = np.array([box[0], box[1], box[2], box[3], ow, oh, interp],
                                            dtype=np.int32)
            k += 1
    save(os.path.join(OUT, "resize.safetensors"), t, {"cases": str(k)})


def to_nhwc(x):
    return x.permute(1, 2, 0).contiguous().numpy()


def gen_pipeline():
    t = {}
    norm = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    # Eval: Resize(floor(size / crop_pct)) + CenterCrop(size), timm's eval transform.
    evals = [(41, 31, 3, 20, 0.875, 0), (31, 41, 3, 20, 0.875, 1), (90, 60, 3, 16, 0.9, 1),
             (28, 28, 1, 28, 1.0, 0), (33, 70, 1, 20, 0.95, 1)]
    for k, (w, h, c, size, crop_pct, interp) in enumerate(evals):
        src = synth(w, h, c, seed=200 + k)
        mode = T.InterpolationMode.BICUBIC if interp else T.InterpolationMode.BILINEAR
        tf = T.Compose([T.Resize(int(math.floor(size / crop_pct)), interpolation=mode),
                        T.CenterCrop(size)])
        if c == 3:
            out = norm(tf(pil(src)))
        else:
            # Gray images use the first channel's statistics.
            out = T.Normalize(MEAN[:1], STD[:1])(T.ToTensor()(tf(pil(src))))
        t[f"eval{k}.src"] = hwc(src)
        t[f"eval{k}.out"] = to_nhwc(out).astype(np.float32)
        t[f"eval{k}.params"] = np.array([size, interp], dtype=np.int32)
        t[f"eval{k}.crop_pct"] = np.array([crop_pct], dtype=np.float64)
    # Train: resized_crop(box) + hflip, then ToTensor + Normalize.
    trains = [(60, 50, 3, (10, 5, 30, 46), 20, 1, True), (60, 50, 3, (0, 0, 50, 60), 16, 0, False),
              (30, 20, 3, (2, 3, 15, 12), 24, 1, True)]
    for k, (w, h, c, box, size, interp, flip) in enumerate(trains):
        src = synth(w, h, c, seed=300 + k)
        mode = T.InterpolationMode.BICUBIC if interp else T.InterpolationMode.BILINEAR
        im = F.resized_crop(pil(src), box[0], box[1], box[2], box[3], [size, size], mode)
        if flip:
            im = F.hflip(im)
        t[f"train{k}.src"] = hwc(src)
        t[f"train{k}.out"] = to_nhwc(norm(im)).astype(np.float32)
        t[f"train{k}.params"] = np.array([box[0], box[1], box[2], box[3], size, interp,
                                          int(flip)], dtype=np.int32)
    save(os.path.join(OUT, "pipeline.safetensors"), t,
         {"evals": str(len(evals)), "trains": str(len(trains))})


def recorded_get_params(width, height, scale, ratio):
    """torchvision 0.14 get_params, logging every draw it consumes."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    uniforms, randints = [], []
    for _ in range(10):
        u_area = torch.empty(1).uniform_(scale[0], scale[1]).item()
        u_lr = torch.empty(1).uniform_(log_ratio[0], log_ratio[1])
        uniforms += [u_area, u_lr.item()]
        target_area = area * u_area
        aspect_ratio = torch.exp(u_lr).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,)).item()
            j = torch.randint(0, width - w + 1, size=(1,)).item()
            randints += [i, j]
            return uniforms, randints
    return uniforms, randints


def gen_rrc():
    sizes = [(500, 375), (375, 500), (224, 224), (28, 28), (1000, 60), (60, 1000), (33, 17),
             (3, 2), (1, 1), (640, 480)]
    settings = [((0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0)), ((0.35, 1.0), (3.0 / 4.0, 4.0 / 3.0)),
                ((0.9, 1.0), (0.5, 2.0))]
    rows, uni, ints, conf = [], [], [], []
    for si, (scale, ratio) in enumerate(settings):
        for (w, h) in sizes:
            for seed in range(12):
                torch.manual_seed(1000 * si + seed)
                box = T.RandomResizedCrop.get_params(Image.new("L", (w, h)), scale, ratio)
                torch.manual_seed(1000 * si + seed)
                u, r = recorded_get_params(w, h, scale, ratio)
                u = u + [0.0] * (20 - len(u))
                r = r + [-1] * (2 - len(r))
                rows.append([w, h, box[0], box[1], box[2], box[3], si])
                uni.append(u)
                ints.append(r)
        conf.append([scale[0], scale[1], ratio[0], ratio[1]])
    save(os.path.join(OUT, "rrc.safetensors"), {
        "cases": np.array(rows, dtype=np.int32),          # w, h, top, left, height, width, setting
        "uniforms": np.array(uni, dtype=np.float64),      # per case: up to 10 x (area, log ratio)
        "randints": np.array(ints, dtype=np.int64),       # per case: top, left draws (-1: none)
        "settings": np.array(conf, dtype=np.float32),     # scale lo, hi, ratio lo, hi
    })


def gen_decode():
    t = {}
    rgb = synth(48, 36, 3, seed=400)
    gray = synth(40, 30, 1, seed=401)
    files = {}
    pil(rgb).save(os.path.join(OUT, "rgb.jpg"), quality=90)
    files["rgb.jpg"] = Image.open(os.path.join(OUT, "rgb.jpg"))
    pil(rgb).save(os.path.join(OUT, "progressive.jpg"), quality=85, progressive=True)
    files["progressive.jpg"] = Image.open(os.path.join(OUT, "progressive.jpg"))
    pil(gray).save(os.path.join(OUT, "gray.jpg"), quality=90)
    files["gray.jpg"] = Image.open(os.path.join(OUT, "gray.jpg"))
    # PIL writes CMYK JPEGs with an Adobe marker and inverted samples (Photoshop's way).
    cmyk = np.concatenate([rgb, synth(48, 36, 1, seed=402)[:, :, None] // 2], axis=2)
    Image.fromarray(cmyk, "CMYK").save(os.path.join(OUT, "cmyk.jpg"), quality=92)
    files["cmyk.jpg"] = Image.open(os.path.join(OUT, "cmyk.jpg"))
    # Palette PNG with transparency (tRNS), gray+alpha, RGBA.
    pal = pil(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 3
    pal.save(os.path.join(OUT, "palette.png"), transparency=3)
    files["palette.png"] = Image.open(os.path.join(OUT, "palette.png"))
    la = Image.merge("LA", [pil(gray), pil(synth(40, 30, 1, seed=403))])
    la.save(os.path.join(OUT, "la.png"))
    files["la.png"] = Image.open(os.path.join(OUT, "la.png"))
    rgba = Image.merge("RGBA", list(pil(rgb).split()) + [pil(synth(48, 36, 1, seed=404))])
    rgba.save(os.path.join(OUT, "rgba.png"))
    files["rgba.png"] = Image.open(os.path.join(OUT, "rgba.png"))
    for name, im in files.items():
        key = name.replace(".", "_")
        t[f"{key}.rgb"] = np.asarray(im.convert("RGB"))
        t[f"{key}.gray"] = np.asarray(im.convert("L"))[:, :, None]
    save(os.path.join(OUT, "decode.safetensors"), t)


# timm 0.6.12 timm/data/mixup.py, with the random draws passed in.
def one_hot(x, num_classes, on_value=1., off_value=0.):
    x = x.long().view(-1, 1)
    return torch.full((x.size()[0], num_classes), off_value).scatter_(1, x, on_value)


def mixup_target(target, num_classes, lam=1., smoothing=0.0):
    off_value = smoothing / num_classes
    on_value = 1. - smoothing + off_value
    y1 = one_hot(target, num_classes, on_value=on_value, off_value=off_value)
    y2 = one_hot(target.flip(0), num_classes, on_value=on_value, off_value=off_value)
    return y1 * lam + y2 * (1. - lam)


def rand_bbox(img_shape, lam, cy, cx, margin=0.):
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    yl = np.clip(cy - cut_h // 2, 0, img_h)
    yh = np.clip(cy + cut_h // 2, 0, img_h)
    xl = np.clip(cx - cut_w // 2, 0, img_w)
    xh = np.clip(cx + cut_w // 2, 0, img_w)
    return yl, yh, xl, xh


def cutmix_bbox_and_lam(img_shape, lam, cy, cx, correct_lam=True):
    yl, yu, xl, xu = rand_bbox(img_shape, lam, cy, cx)
    if correct_lam:
        bbox_area = (yu - yl) * (xu - xl)
        lam = 1. - bbox_area / float(img_shape[-2] * img_shape[-1])
    return (yl, yu, xl, xu), lam


def mix_batch(x, lam, use_cutmix, cy=0, cx=0):
    if lam == 1.:
        return 1., None
    if use_cutmix:
        (yl, yh, xl, xh), lam = cutmix_bbox_and_lam(x.shape, lam, cy, cx)
        x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
        return lam, (yl, yh, xl, xh)
    x_flipped = x.flip(0).mul_(1. - lam)
    x.mul_(lam).add_(x_flipped)
    return lam, None


def gen_mix():
    t = {}
    g = torch.Generator().manual_seed(5)
    n, c, h, w, k = 6, 3, 7, 9, 5
    labels = torch.tensor([0, 3, 1, 4, 4, 2], dtype=torch.int32)
    cases = [(0.3, False, 0, 0), (0.9731, False, 0, 0), (0.6, True, 3, 4), (0.25, True, 0, 8),
             (0.05, True, 6, 1), (1.0, False, 0, 0)]
    for i, (lam, cut, cy, cx) in enumerate(cases):
        x = torch.randn(n, c, h, w, generator=g)
        t[f"mix{i}.x"] = x.permute(0, 2, 3, 1).contiguous().numpy()
        xm = x.clone()
        lam2, box = mix_batch(xm, lam, cut, cy, cx)
        tgt = mixup_target(labels, k, lam2, 0.1)
        t[f"mix{i}.out"] = xm.permute(0, 2, 3, 1).contiguous().numpy()
        t[f"mix{i}.targets"] = tgt.numpy().astype(np.float32)
        t[f"mix{i}.draws"] = np.array([lam, float(lam2)], dtype=np.float64)
        t[f"mix{i}.params"] = np.array([int(cut), cy, cx] + list(box or (0, 0, 0, 0)),
                                       dtype=np.int32)
    t["labels"] = labels.numpy()
    save(os.path.join(OUT, "mix.safetensors"), t,
         {"cases": str(len(cases)), "num_classes": str(k), "smoothing": "0.1"})


def main():
    os.makedirs(OUT, exist_ok=True)
    gen_resize()
    gen_pipeline()
    gen_rrc()
    gen_decode()
    gen_mix()


if __name__ == "__main__":
    main()
