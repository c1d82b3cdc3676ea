#!/usr/bin/python3
"""ONNX export check (issue 14), run by meson (suite weights):
  check_onnx.py VANILLA [REPO_ROOT]

For the Fashion-MNIST model (examples/fashion_mnist.yaml: 1x28x28, a 7x7 map max-pooled in
floor mode) and vanillanet_5 at 224, each with random deploy weights written here as a plain
safetensors state_dict: `vanilla export --format onnx`, then
  - onnx.checker.check_model(full_check=True) and strict shape inference (Debian python3-onnx);
  - the graph evaluated by the small numpy interpreter below (float64; the ops of the
    classifier's graph and of the detector's, which check_onnx_detect.py uses) on PNG images
    preprocessed as vanilla does for an image of the input size with crop_pct 1
    ((pixel / 255 - mean) / std) equals the logits of `vanilla predict --save-logits`
    within 1e-5 relative (max |diff| / max |logit|).
A small ada_pool model checks AdaptiveMaxPool2d's mapping (at 23: 8x8 -> 4x4 -> 2x2) and
its refusal where the windows differ (at 26: a 9x9 map pooled to 4x4).
Exit 77 (skipped) without python3-onnx, PIL or numpy.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from PIL import Image
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_io import load, save  # noqa: E402


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def conv(x, w, b, a):
    s = a.get("strides", [1, 1])[0]
    p = a.get("pads", [0, 0, 0, 0])
    g = a.get("group", 1)
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    n, c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    ho, wo = (h - kh) // s + 1, (wd - kw) // s + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s]
            if g == 1:
                y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
            elif g == c and ci == 1 and o == c:
                y += patch * w[None, :, 0, i, j, None, None]
            else:
                raise ValueError(f"group {g} not handled")
    if b is not None:
        y += b[None, :, None, None]
    return y


def maxpool(x, a):
    k, s = a["kernel_shape"][0], a["strides"][0]
    p = a.get("pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])), constant_values=-np.inf)
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    y = np.full((n, c, ho, wo), -np.inf)
    for i in range(k):
        for j in range(k):
            y = np.maximum(y, x[:, :, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s])
    return y


def reshape(x, shape):
    """ONNX Reshape (allowzero 0): 0 copies the input's dim, -1 is inferred."""
    return x.reshape([x.shape[i] if int(v) == 0 else int(v) for i, v in enumerate(shape)])


def onnx_slice(x, starts, ends, axes):
    idx = [slice(None)] * x.ndim
    for s, e, ax in zip(starts, ends, axes):
        idx[int(ax)] = slice(int(s), int(e))
    return x[tuple(idx)]


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def resize_nearest(x, scales, a):
    """Resize, mode nearest, asymmetric coordinates, floor: out[i] = in[floor(i / scale)]."""
    assert a.get("mode") == b"nearest" and a.get("coordinate_transformation_mode") == b"asymmetric"
    assert a.get("nearest_mode") == b"floor"
    for ax, sc in enumerate(scales):
        n_out = int(np.floor(x.shape[ax] * sc))
        x = np.take(x, np.floor(np.arange(n_out) / sc).astype(np.int64), axis=ax)
    return x


BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "MatMul": np.matmul}


def run_node(op, ins, a):
    if op == "Conv":
        return conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a)
    if op == "Relu":
        return np.maximum(ins[0], 0)
    if op == "MaxPool":
        return maxpool(ins[0], a)
    if op == "GlobalAveragePool":
        return ins[0].mean(axis=(2, 3), keepdims=True)
    if op == "Flatten":
        return ins[0].reshape(ins[0].shape[0], -1)
    if op == "Reshape":
        return reshape(ins[0], ins[1])
    if op in BINARY:
        return BINARY[op](ins[0], ins[1])
    if op == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-ins[0]))
    if op == "Concat":
        return np.concatenate(ins, axis=a["axis"])
    if op == "Slice":
        return onnx_slice(ins[0], ins[1], ins[2], ins[3])
    if op == "Transpose":
        return ins[0].transpose(a["perm"])
    if op == "Softmax":
        return softmax(ins[0], a.get("axis", -1))
    if op == "Resize":
        return resize_nearest(ins[0], ins[2], a)
    raise ValueError(f"op {op} not in the interpreter")


def run(model, x):
    """The graph in float64 (integer constants stay integers)."""
    env = {}
    for i in model.graph.initializer:
        v = numpy_helper.to_array(i)
        env[i.name] = v.astype(np.float64) if v.dtype.kind == "f" else v
    env[model.graph.input[0].name] = x
    for node in model.graph.node:
        ins = [env[n] if n else None for n in node.input]
        env[node.output[0]] = run_node(node.op_type, ins, attrs(node))
    return env[model.graph.output[0].name]


def deploy_weights(dims, strides, in_chans, classes, act_num, seed):
    rng = np.random.default_rng(seed)
    k = 2 * act_num + 1
    sd = {}

    def conv_w(name, o, i, kh, kw):
        sd[name + ".weight"] = (rng.standard_normal((o, i, kh, kw)) / np.sqrt(i * kh * kw)).astype(np.float32)
        sd[name + ".bias"] = (0.1 * rng.standard_normal(o)).astype(np.float32)

    conv_w("stem.0", dims[0], in_chans, 4, 4)
    conv_w("stem.1", dims[0], 1, k, k)
    for i in range(len(strides)):
        conv_w(f"stages.{i}.conv", dims[i + 1], dims[i], 1, 1)
        conv_w(f"stages.{i}.act", dims[i + 1], 1, k, k)
    conv_w("cls.2", classes, dims[-1], 1, 1)
    return sd


def check(vanilla, tmp, tag, sd, config_args, size, channels, mean, std, n_images=3):
    weights = os.path.join(tmp, tag + ".safetensors")
    save(weights, sd)
    model_path = os.path.join(tmp, tag + ".onnx")
    subprocess.run([vanilla, "export", weights, "--format", "onnx", "-o", model_path] + config_args,
                   check=True, stdout=subprocess.DEVNULL)
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    out_dims = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    classes = sd["cls.2.bias"].shape[0]
    assert out_dims == ["batch", classes], out_dims
    assert model.opset_import[0].version >= 13
    meta = {p.key: p.value for p in model.metadata_props}
    assert len(json.loads(meta["vanilla.classes"])) == classes
    pre = json.loads(meta["vanilla.preprocessing"])
    assert pre["input_size"] == size
    # the official eval geometry: the image as it is up to 32, a square warp from 384
    assert pre["resize"] == ("none" if size <= 32 else "square" if size >= 384 else "crop"), pre
    rng = np.random.default_rng(7)
    paths, xs = [], []
    for i in range(n_images):
        px = rng.integers(0, 256, (size, size, channels) if channels == 3 else (size, size), dtype=np.uint8)
        p = os.path.join(tmp, f"{tag}_{i}.png")
        Image.fromarray(px).save(p)
        paths.append(p)
        x = px.astype(np.float64).reshape(size, size, channels) / 255.0
        xs.append(((x - np.array(mean)) / np.array(std)).transpose(2, 0, 1))
    logits_path = os.path.join(tmp, tag + "_logits.safetensors")
    subprocess.run([vanilla, "predict", weights] + paths + ["--save-logits", logits_path] + config_args,
                   check=True, stdout=subprocess.DEVNULL)
    want = load(logits_path)[0]["logits"].astype(np.float64)
    got = run(model, np.stack(xs))
    rel = np.abs(got - want).max() / np.abs(want).max()
    print(f"{tag}: {len(model.graph.node)} nodes, opset {model.opset_import[0].version}, "
          f"numpy graph vs vanilla predict: max relative difference {rel:.3g}")
    if not rel <= 1e-5:
        print(f"FAIL: {tag}: relative difference {rel:.3g} > 1e-5")
        return False
    return True


def main():
    vanilla = os.path.abspath(sys.argv[1])
    root = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "..")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        fm = os.path.join(root, "examples", "fashion_mnist.yaml")
        sd = deploy_weights([64, 128, 256, 512], [1, 2, 2], 1, 10, 3, seed=1)
        ok &= check(vanilla, tmp, "fashion_mnist", sd, ["--config", fm], 28, 1, [0.2860], [0.3530])
        # Exported at another input size, the official geometry follows the size: 28 -> none,
        # 56 -> crop, 400 -> square.
        for other, want in ((56, "crop"), (400, "square")):
            path = os.path.join(tmp, f"fm{other}.onnx")
            subprocess.run([vanilla, "export", os.path.join(tmp, "fashion_mnist.safetensors"),
                            "--format", "onnx", "-o", path, "--input-size", str(other), "--config", fm],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            meta = {p.key: p.value for p in onnx.load(path).metadata_props}
            pre = json.loads(meta["vanilla.preprocessing"])
            good = pre["input_size"] == other and pre["resize"] == want
            print(f"fashion_mnist exported at {other}: resize {pre['resize']} ({'ok' if good else 'want ' + want})")
            ok &= good
        sd = deploy_weights([512, 1024, 2048, 4096], [2, 2, 2], 3, 1000, 3, seed=2)
        ok &= check(vanilla, tmp, "vanillanet_5", sd,
                    ["--set", "model.name=vanillanet_5", "--set", "data.crop_pct=1.0"], 224, 3,
                    [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], n_images=2)
        # AdaptiveMaxPool2d (ada_pool, stem stride 3 padding 1): exported as the MaxPool it
        # equals where the map is a multiple of the output size, refused where it is not.
        sd = deploy_weights([8, 16, 24], [2, 2], 3, 5, 1, seed=4)
        ada = ["--set", "model.name=custom", "--set", "model.dims=[8,16,24]", "--set",
               "model.strides=[2,2]", "--set", "model.ada_pool=[4,2]", "--set", "model.act_num=1",
               "--set", "data.crop_pct=1.0"]
        ok &= check(vanilla, tmp, "ada_pool", sd, ada + ["--set", "data.input_size=23"], 23, 3,
                    [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        r = subprocess.run([vanilla, "export", os.path.join(tmp, "ada_pool.safetensors"), "--format",
                            "onnx", "-o", os.path.join(tmp, "bad.onnx"), "--set", "data.input_size=26"] + ada,
                           capture_output=True, text=True)
        refused = r.returncode == 1 and "AdaptiveMaxPool2d(4) of a 9x9 map" in r.stderr
        print(f"ada_pool at 26 (9x9 map, 4 outputs): {'refused' if refused else 'NOT refused'}")
        ok &= refused
        # A later ada_pool stage whose map an earlier one fixed (at 23: 8x8 -> 4x4, and 4x4 at
        # every input size, into AdaptiveMaxPool2d(3)): refused as having no ONNX form, not
        # sent to another input size.
        sd = deploy_weights([8, 16, 16, 24], [2, 1, 2], 3, 5, 1, seed=5)
        fixed = ["--set", "model.name=custom", "--set", "model.dims=[8,16,16,24]", "--set",
                 "model.strides=[2,1,2]", "--set", "model.ada_pool=[4,0,3]", "--set", "model.act_num=1",
                 "--set", "data.crop_pct=1.0", "--set", "data.input_size=23"]
        save(os.path.join(tmp, "fixed.safetensors"), sd)
        r = subprocess.run([vanilla, "export", os.path.join(tmp, "fixed.safetensors"), "--format",
                            "onnx", "-o", os.path.join(tmp, "fixed.onnx")] + fixed,
                           capture_output=True, text=True)
        refused = r.returncode == 1 and "is 4x4 at every input size" in r.stderr and \
            "this model has no ONNX form" in r.stderr
        print(f"ada_pool after a fixed map: {'refused as impossible' if refused else 'NOT: ' + r.stderr}")
        ok &= refused
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
