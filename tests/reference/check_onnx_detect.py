#!/usr/bin/python3
"""ONNX export of the YOLO11-VanillaNet detector (issue 17), run by meson (suite detect):
  check_onnx_detect.py VANILLA DETECTTOOL

A tiny detector (VanillaNet dims [8, 16, 16, 16], width 0.25 so that C2PSA has two heads,
depth 1.0 so that every C3k2 and C2PSA has two blocks, reg_max 8, 3 classes, imgsz 64) with
random weights and BatchNorm statistics is written in training form by `detecttool mkdet`; then
`vanilla export DET.safetensors --format onnx` (backbone merged, every BatchNorm folded) and
  - onnx.checker.check_model(full_check=True) and strict shape inference; input `images`
    [batch, 3, 64, 64], output `output0` [batch, 4 + nc, 84] (8x8 + 4x4 + 2x2 anchors); no
    BatchNormalization node left; Ultralytics' metadata (names as a Python dict literal,
    stride, imgsz, batch, task) and vanilla.classes;
  - the graph evaluated by check_onnx.py's numpy interpreter (float64) on 3 random blocky images
    equals vanilla's own decoded Detect output (`detecttool decode`: vn_yolo_forward in eval
    mode, then vn_yolo_decode's x1, y1, x2, y2 turned into cx, cy, w, h here) within 1e-4
    relative (max |diff| / max |value|, boxes and scores apart), for the merged model and for
    the training form the file holds; again at --input-size 96 (189 anchors);
  - a merged weight file (`vanilla export DET -o MERGED`) exports to the same outputs;
  - an input size that is not a multiple of 32 (--input-size 80, or a file whose imgsz is 48)
    is refused with a message that says so; `vanilla export DET --help` names the ONNX form.
Exit 77 (skipped) without python3-onnx or numpy.
"""
import ast
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_onnx import run  # noqa: E402
from st_io import load, save  # noqa: E402

NC = 3
NAMES = {0: "c0", 1: "it's 1", 2: "c2"}
TOL = 1e-4


def anchors(size):
    return sum((size // s) ** 2 for s in (8, 16, 32))


def check_model(model, size):
    """Checker, strict shape inference, shapes, ops and metadata; a list of failures."""
    bad = []
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    if dims(inferred.graph.input[0]) != ["batch", 3, size, size] or inferred.graph.input[0].name != "images":
        bad.append(f"input {inferred.graph.input[0].name} {dims(inferred.graph.input[0])}")
    out = inferred.graph.output[0]
    if out.name != "output0" or dims(out) != ["batch", 4 + NC, anchors(size)]:
        bad.append(f"output {out.name} {dims(out)}")
    if model.opset_import[0].version != 13:
        bad.append(f"opset {model.opset_import[0].version}")
    ops = {n.op_type for n in model.graph.node}
    if "BatchNormalization" in ops:
        bad.append("a BatchNormalization node is left")
    meta = {p.key: p.value for p in model.metadata_props}
    want = {"stride": "32", "task": "detect", "batch": "1", "imgsz": f"[{size}, {size}]"}
    for k, v in want.items():
        if meta.get(k) != v:
            bad.append(f"metadata {k} = {meta.get(k)!r}, want {v!r}")
    if ast.literal_eval(meta.get("names", "{}")) != NAMES:
        bad.append(f"metadata names = {meta.get('names')!r}")
    if json.loads(meta.get("vanilla.classes", "[]")) != [NAMES[i] for i in range(NC)]:
        bad.append("metadata vanilla.classes")
    if json.loads(meta.get("vanilla.model", "{}")).get("deploy") is not True:
        bad.append("metadata vanilla.model is not the merged detector")
    print(f"{size}: {len(model.graph.node)} nodes, ops {' '.join(sorted(ops))}")
    return bad


def xyxy_to_xywh(b):
    return np.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2,
                     b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], axis=-1)


def compare(tool, det, model, x, tmp, tag):
    """The graph's output against vanilla's decode (merged and training form); failures."""
    got = run(model, x)  # [N, 4 + nc, A]
    images = os.path.join(tmp, f"{tag}_images.safetensors")
    save(images, {"images": x.astype(np.float32)})
    bad = []
    for form in ("merge", "train"):
        out = os.path.join(tmp, f"{tag}_{form}.safetensors")
        subprocess.run([tool, "decode", det, images, out] + (["merge"] if form == "merge" else []), check=True)
        ref = load(out)[0]
        boxes = xyxy_to_xywh(ref["boxes"].astype(np.float64))  # [N, A, 4]
        scores = ref["scores"].astype(np.float64)              # [N, A, nc]
        gb, gs = got[:, :4, :].transpose(0, 2, 1), got[:, 4:, :].transpose(0, 2, 1)
        rb = np.abs(gb - boxes).max() / np.abs(boxes).max()
        rs = np.abs(gs - scores).max() / np.abs(scores).max()
        print(f"{tag} vs vanilla ({form} form): boxes max relative difference {rb:.3g} (largest "
              f"{np.abs(boxes).max():.4g} px), scores {rs:.3g} (range {scores.min():.4f}..{scores.max():.4f}, "
              f"std {scores.std():.3g})")
        if not (rb <= TOL and rs <= TOL):
            bad.append(f"{tag} ({form}): relative differences {rb:.3g}, {rs:.3g} > {TOL}")
        # The test means something only when the outputs depend on the image.
        if min(np.abs(boxes[0] - boxes[1]).max(), np.abs(scores[0] - scores[1]).max()) < 1e-3:
            bad.append(f"{tag}: degenerate outputs (the check would not see a wrong graph)")
    return bad


def refused(vanilla, args, text):
    r = subprocess.run([vanilla, "export"] + args, capture_output=True, text=True)
    ok = r.returncode == 1 and text in r.stderr
    print(f"export {' '.join(os.path.basename(a) for a in args)}: {'refused' if ok else 'NOT refused'}: "
          f"{r.stderr.strip()}")
    return [] if ok else [f"not refused: {args}"]


def main():
    vanilla, tool = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        det = os.path.join(tmp, "det.safetensors")
        subprocess.run([tool, "mkdet", det, str(NC), "64", "5"], check=True)
        rng = np.random.default_rng(11)
        for size, extra in ((64, []), (96, ["--input-size", "96"])):
            path = os.path.join(tmp, f"det{size}.onnx")
            r = subprocess.run([vanilla, "export", det, "--format", "onnx", "-o", path] + extra,
                               check=True, capture_output=True, text=True)
            print(r.stdout.strip())
            model = onnx.load(path)
            bad += check_model(model, size)
            n = 3 if size == 64 else 2
            # 8x8-pixel blocks plus noise: deep features that differ from image to image.
            x = rng.random((n, 3, size // 8, size // 8)).repeat(8, axis=2).repeat(8, axis=3)
            x = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
            bad += compare(tool, det, model, x, tmp, f"imgsz{size}")
        # A merged weight file (vanilla export -o) exports to the same graph.
        merged, mpath = os.path.join(tmp, "merged.safetensors"), os.path.join(tmp, "merged.onnx")
        subprocess.run([vanilla, "export", det, "-o", merged], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([vanilla, "export", merged, "--format", "onnx", "-o", mpath], check=True,
                       stdout=subprocess.DEVNULL)
        x = rng.random((1, 3, 8, 8)).repeat(8, axis=2).repeat(8, axis=3)
        a, b = run(onnx.load(os.path.join(tmp, "det64.onnx")), x), run(onnx.load(mpath), x)
        rel = np.abs(a - b).max() / np.abs(a).max()
        print(f"ONNX of the merged file vs of the training-form file: max relative difference {rel:.3g}")
        if not rel <= 1e-6:
            bad.append(f"the merged file's graph differs ({rel:.3g})")
        bad += refused(vanilla, [det, "--format", "onnx", "-o", os.path.join(tmp, "x.onnx"), "--input-size", "80"],
                       "input size 80 is not a positive multiple of 32")
        det48 = os.path.join(tmp, "det48.safetensors")
        subprocess.run([tool, "mkdet", det48, str(NC), "48", "5"], check=True)
        bad += refused(vanilla, [det48, "--format", "onnx", "-o", os.path.join(tmp, "y.onnx")],
                       "input size 48 is not a positive multiple of 32 (the detector's largest stride): "
                       "the file's imgsz")
        h = subprocess.run([vanilla, "export", det, "--help"], capture_output=True, text=True)
        if h.returncode != 0 or "--format onnx" not in h.stdout or "output0" not in h.stdout:
            bad.append("export --help on a detector does not describe the ONNX form")
    for b in bad:
        print(f"FAIL: {b}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
