#!/usr/bin/python3
"""Reference fixtures for RandAugment, color ops and random erasing (issue 13).

Run with Debian's interpreter (PIL 9.4):
    /usr/bin/python3 tests/reference/gen_augment.py
Writes tests/reference/fixtures/augment/:
  ops.safetensors       every RandAugment op of timm 0.6.12 at several magnitudes (and both
                        signs) on an RGB and a gray image, through Pillow 9.4
  randaug.safetensors   whole RandAugment calls for several config strings, with the random
                        draws they consumed (fed to the C code in the same order)
  erasing.safetensors   RandomErasing boxes for recorded draws, a few hundred cases

timm is not a dependency: its formulas are re-implemented below from timm 0.6.12
timm/data/auto_augment.py (the line numbers name the source) and call Pillow exactly as timm
does. Images are HWC uint8.
"""
import math
import os
import random
import re

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from st_io import save

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "augment")
BICUBIC, BILINEAR = Image.Resampling.BICUBIC, Image.Resampling.BILINEAR
MEAN = (0.485, 0.456, 0.406)
FILL_RGB = tuple(min(255, round(255 * x)) for x in MEAN)  # transforms_factory.py line 87
FILL_GRAY = (FILL_RGB[0],)

# The op list in the C enum's order (vn_augment.h VN_RA_OPS).
OPS = ["AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "PosterizeIncreasing",
       "PosterizeOriginal", "Solarize", "SolarizeIncreasing", "SolarizeAdd", "Color",
       "ColorIncreasing", "Contrast", "ContrastIncreasing", "Brightness",
       "BrightnessIncreasing", "Sharpness", "SharpnessIncreasing", "ShearX", "ShearY",
       "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel"]


def synth(w, h, c, seed, lo=0, hi=255):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for k in range(c):
        v = 127 + 90 * np.sin(x / (2.5 + k) + y / (4.0 + 2 * k))
        v += np.where(((x // 5 + y // 4 + k) % 2) == 0, 50, -50)
        v += rng.normal(0, 20, size=(h, w))
        chans.append(v)
    a = np.stack(chans, axis=-1)
    a = lo + (np.clip(a, 0, 255) / 255.0) * (hi - lo)
    a = a.astype(np.uint8)
    return a if c > 1 else a[:, :, 0]


def pil(a):
    return Image.fromarray(a, "RGB" if a.ndim == 3 else "L")


def hwc(im):
    a = np.asarray(im, dtype=np.uint8)
    return a if a.ndim == 3 else a[:, :, None]


# ---- timm 0.6.12 auto_augment.py, op wrappers (lines 61-175) ---------------------------

def op_apply(name, img, arg, fill, resample):
    kw = dict(fillcolor=fill, resample=resample)
    if name in ("ShearX",):       # line 61
        return img.transform(img.size, Image.AFFINE, (1, arg, 0, 0, 1, 0), **kw)
    if name in ("ShearY",):       # line 66
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, arg, 1, 0), **kw)
    if name == "TranslateXRel":   # line 71
        return img.transform(img.size, Image.AFFINE, (1, 0, arg * img.size[0], 0, 1, 0), **kw)
    if name == "TranslateYRel":   # line 77
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, arg * img.size[1]), **kw)
    if name == "TranslateX":      # line 83
        return img.transform(img.size, Image.AFFINE, (1, 0, arg, 0, 1, 0), **kw)
    if name == "TranslateY":      # line 88
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, arg), **kw)
    if name == "Rotate":          # line 93 (PIL >= 5.2)
        return img.rotate(arg, **kw)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name in ("Solarize", "SolarizeIncreasing"):
        return ImageOps.solarize(img, arg)
    if name == "SolarizeAdd":     # line 141
        lut = [min(255, i + arg) if i < 128 else i for i in range(256)]
        if img.mode == "RGB":
            lut = lut + lut + lut
        return img.point(lut)
    if name.startswith("Posterize"):  # line 156
        return img if arg >= 8 else ImageOps.posterize(img, arg)
    enh = {"Contrast": ImageEnhance.Contrast, "Color": ImageEnhance.Color,
           "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}
    return enh[name.replace("Increasing", "")](img).enhance(arg)


# ---- level functions (lines 178-260); the sign draw is a callable --------------------------

def level_arg(name, level, negate, translate_const):
    neg = (lambda v: -v if negate() else v)  # _randomly_negate, line 178
    if name == "Rotate":
        return neg((level / 10.) * 30.)
    if name == "Posterize":
        return int((level / 10.) * 4)
    if name == "PosterizeIncreasing":
        return 4 - int((level / 10.) * 4)
    if name == "PosterizeOriginal":
        return int((level / 10.) * 4) + 4
    if name == "Solarize":
        return int((level / 10.) * 256)
    if name == "SolarizeIncreasing":
        return 256 - int((level / 10.) * 256)
    if name == "SolarizeAdd":
        return int((level / 10.) * 110)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (level / 10.) * 1.8 + 0.1
    if name.endswith("Increasing") and name[:-10] in ("Color", "Contrast", "Brightness",
                                                       "Sharpness"):
        v = (level / 10.) * .9
        return max(0.1, 1.0 + neg(v))
    if name in ("ShearX", "ShearY"):
        return neg((level / 10.) * 0.3)
    if name in ("TranslateX", "TranslateY"):
        return neg((level / 10.) * float(translate_const))
    if name in ("TranslateXRel", "TranslateYRel"):
        return neg((level / 10.) * 0.45)
    return None


SIGNED = {"Rotate", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
          "SharpnessIncreasing", "ShearX", "ShearY", "TranslateX", "TranslateY",
          "TranslateXRel", "TranslateYRel"}


def gen_ops(images):
    tensors, meta, k = {}, {}, 0
    for ii, a in enumerate(images):
        tensors[f"img{ii}"] = hwc(pil(a))
    for ii, a in enumerate(images):
        img = pil(a)
        fill = FILL_RGB if img.mode == "RGB" else FILL_GRAY
        for name in OPS:
            for mag in (0, 3, 7, 10):
                for negate in ((False, True) if name in SIGNED else (False,)):
                    for resample in ((BICUBIC, BILINEAR) if name in ("Rotate", "ShearX")
                                     and mag == 7 else (BICUBIC,)):
                        arg = level_arg(name, mag, lambda: negate, 100)
                        out = op_apply(name, img, arg, fill, resample)
                        tensors[f"case{k}.out"] = hwc(out)
                        tensors[f"case{k}.arg"] = np.array([0.0 if arg is None else float(arg)], dtype=np.float64)
                        tensors[f"case{k}.params"] = np.array(
                            [OPS.index(name), ii, 1 if resample == BICUBIC else 0,
                             1 if negate else 0], dtype=np.int32)
                        tensors[f"case{k}.mag"] = np.array([float(mag)])
                        k += 1
    # Rotations at odd angles (not on the RandAugment grid) and a low-contrast image.
    for ii, a in enumerate(images):
        img = pil(a)
        fill = FILL_RGB if img.mode == "RGB" else FILL_GRAY
        for ang in (-29.3, -1e-3, 0.5, 13.7, 45.0, 90.0, 180.0, -90.0, 181.0, 360.0):
            out = img.rotate(ang, resample=BICUBIC, fillcolor=fill)
            tensors[f"case{k}.out"] = hwc(out)
            tensors[f"case{k}.arg"] = np.array([ang], dtype=np.float64)
            tensors[f"case{k}.params"] = np.array([OPS.index("Rotate"), ii, 1, 0], dtype=np.int32)
            tensors[f"case{k}.mag"] = np.array([-1.0])
            k += 1
    meta["cases"] = k
    meta["translate_const"] = 100
    save(os.path.join(OUT, "ops.safetensors"), tensors, meta)
    print(f"ops: {k} cases")


# ---- RandAugment with recorded draws (lines 320-358, 646-723) ------------------------------

class Recorder:
    """random.random / random.gauss / np.random.choice stand-ins that log their values."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.log = []

    def random(self):
        u = self.rng.random()
        self.log.append(u)
        return u

    def gauss(self, mu, sigma):
        z = self.rng.gauss(0.0, 1.0)
        self.log.append(z)
        return mu + z * sigma  # random.gauss returns mu + z * sigma

    def choice(self, n):
        i = self.rng.randrange(n)
        self.log.append(float(i))
        return i


def parse(config_str):
    """rand_augment_transform (lines 688-723) without the weighted choice."""
    magnitude, num_layers, inc, mstd, mmax = 10, 2, False, 0, None
    config = config_str.split('-')
    assert config[0] == 'rand'
    for c in config[1:]:
        cs = re.split(r'(\d.*)', c)
        if len(cs) < 2:
            continue
        key, val = cs[:2]
        if key == 'mstd':
            mstd = float(val)
            if mstd > 100:
                mstd = float('inf')
        elif key == 'mmax':
            mmax = int(val)
        elif key == 'inc':
            inc = bool(val)
        elif key == 'm':
            magnitude = int(val)
        elif key == 'n':
            num_layers = int(val)
        else:
            raise AssertionError('Unknown RandAugment config section')
    names = (["AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
              "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
              "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
              "TranslateXRel", "TranslateYRel"] if inc else
             ["AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
              "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX",
              "ShearY", "TranslateXRel", "TranslateYRel"])
    return names, magnitude, num_layers, mstd, mmax


def rand_augment(img, config_str, rec, fill, size):
    names, magnitude, num_layers, mstd, mmax = parse(config_str)
    translate_const = int(size * 0.45)
    picks = [names[rec.choice(len(names))] for _ in range(num_layers)]  # line 654
    for name in picks:
        if rec.random() > 0.5:                                           # line 344
            continue
        m = magnitude
        if mstd > 0:
            if mstd == float('inf'):
                m = 0 + (m - 0) * rec.random()                           # uniform(0, m)
            else:
                m = rec.gauss(m, mstd)                                   # line 352
        m = max(0., min(m, mmax or 10.))                                  # lines 355-356
        arg = level_arg(name, m, lambda: rec.random() > 0.5, translate_const)
        img = op_apply(name, img, arg, fill, BICUBIC)
    return img


def gen_randaug(images):
    configs = ["rand-m9-mstd0.5-inc1", "rand-m7-mstd0.5-inc1", "rand-m9-mstd0.5",
               "rand-m10-n3", "rand-m5-n4-inc1", "rand-m9-mstd101-inc1",
               "rand-m15-mmax20-mstd3-inc1", "rand-m9-n1-mstd0.5-inc0"]
    tensors, meta, k = {}, {}, 0
    for ii, a in enumerate(images):
        tensors[f"img{ii}"] = hwc(pil(a))
    for ci, cfg in enumerate(configs):
        meta[f"config{ci}"] = cfg
        for ii, a in enumerate(images):
            img = pil(a)
            fill = FILL_RGB if img.mode == "RGB" else FILL_GRAY
            for trial in range(6):
                rec = Recorder(1000 * ci + 10 * ii + trial)
                out = rand_augment(img, cfg, rec, fill, 224)
                tensors[f"case{k}.out"] = hwc(out)
                tensors[f"case{k}.draws"] = np.array(rec.log, dtype=np.float64)
                tensors[f"case{k}.params"] = np.array([ci, ii], dtype=np.int32)
                k += 1
    meta["cases"] = k
    meta["configs"] = len(configs)
    meta["input_size"] = 224
    save(os.path.join(OUT, "randaug.safetensors"), tensors, meta)
    print(f"randaug: {k} cases")


# ---- timm random_erasing.py RandomErasing._erase (lines 68-86), boxes only -----------------

def erase_boxes(rng, log, prob, count_max, img_h, img_w):
    def rnd():
        u = rng.random()
        log.append(u)
        return u

    def randint(lo, hi):
        v = rng.randint(lo, hi)
        log.append(float(v))
        return v

    min_area, max_area = 0.02, 1 / 3
    log_ar = (math.log(0.3), math.log(1 / 0.3))
    boxes = []
    if rnd() > prob:
        return boxes
    area = img_h * img_w
    count = 1 if count_max == 1 else randint(1, count_max)
    for _ in range(count):
        for _attempt in range(10):
            target_area = (min_area + (max_area - min_area) * rnd()) * area / count
            aspect_ratio = math.exp(log_ar[0] + (log_ar[1] - log_ar[0]) * rnd())
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < img_w and h < img_h:
                top = randint(0, img_h - h)
                left = randint(0, img_w - w)
                boxes.append((top, left, h, w))
                break
    return boxes


def gen_erasing():
    rng = random.Random(13)
    tensors, k = {}, 0
    sizes = [(224, 224), (28, 28), (56, 40), (7, 5), (3, 3), (2, 9), (1, 1), (300, 17)]
    for (h, w) in sizes:
        for prob in (0.25, 1.0):
            for count in (1, 3):
                for _ in range(20):
                    log = []
                    boxes = erase_boxes(rng, log, prob, count, h, w)
                    tensors[f"case{k}.draws"] = np.array(log, dtype=np.float64)
                    tensors[f"case{k}.params"] = np.array([h, w, count, int(prob * 100)],
                                                          dtype=np.int32)
                    tensors[f"case{k}.boxes"] = np.array(boxes, dtype=np.int32).reshape(-1, 4)
                    k += 1
    save(os.path.join(OUT, "erasing.safetensors"), tensors, {"cases": k})
    print(f"erasing: {k} cases")


def main():
    os.makedirs(OUT, exist_ok=True)
    images = [synth(23, 17, 3, 1), synth(19, 13, 1, 2), synth(16, 16, 3, 3, lo=70, hi=160)]
    gen_ops(images)
    gen_randaug(images)
    gen_erasing()


if __name__ == "__main__":
    main()
