#!/usr/bin/env bash
# End-to-end checks of official weights through the vanilla command (issue 14): vanilla import
# of the .pth fixtures (good ones convert, bad ones exit 1 naming the file and the cause), a
# plain PyTorch state_dict opened with --config by info/predict/export, and a fine-tuning run
# whose model.init is that plain file (another class count: the classifier is re-initialised).
# Usage (from meson): test_weights_cli.sh VANILLA TESTTOOL FIXTURES
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
FX=$(readlink -f "$3")/weights
T=$(mktemp -d /tmp/vn_wcli_XXXXXX)
trap 'rm -rf "$T"' EXIT
source "$(dirname "$0")/../support/expect.sh"

expect "import --help" "$VANILLA" import --help >/dev/null
for f in sd_train sd_deploy ckpt module half views legacy; do
  "$VANILLA" import "$FX/$f.pth" -o "$T/$f.safetensors" >"$T/out" 2>&1
  expect "import $f.pth: exit 0" [ $? -eq 0 ]
done
"$VANILLA" import "$FX/module.pth" -o "$T/m.safetensors" >"$T/out" 2>&1
expect "module.pth: prefixes reported" contains "$T/out" "69 'module.' prefixes dropped"
declare -A cause=([evil]="'posix.system'" [truncated]="not a readable torch.save zip archive"
                  [nostorage]="storage record 'sd_train/data/3' is missing"
                  [badshape]="truncated or wrong-shaped")
for f in evil truncated nostorage badshape; do
  "$VANILLA" import "$FX/$f.pth" -o "$T/bad.safetensors" >"$T/out" 2>&1
  rc=$?
  expect "import $f.pth: exit 1" [ $rc -eq 1 ]
  expect "import $f.pth: names the file and the cause" contains "$T/out" "$f.pth: "
  expect "import $f.pth: cause" contains "$T/out" "${cause[$f]}"
  expect "import $f.pth: nothing written" [ ! -e "$T/bad.safetensors" ]
done
"$VANILLA" import "$FX/wrong_variant.pth" -o "$T/bad.safetensors" --config "$FX/config.yaml" >"$T/out" 2>&1
expect "wrong variant with --config: exit 1" [ $? -eq 1 ]
expect "wrong variant: shapes by key" contains "$T/out" "'stages.1.conv2.0.weight' is F32 [32, 16, 1, 1] in the file, F32 [24, 16, 1, 1] in the model"
"$VANILLA" import "$FX/ckpt.pth" --key model_ema -o "$T/ema.safetensors" --config "$FX/config.yaml" >"$T/out" 2>&1
expect "import --key model_ema --config: exit 0" [ $? -eq 0 ]
"$VANILLA" info "$T/ema.safetensors" >"$T/out" 2>&1
expect "imported with --config: info needs no config" contains "$T/out" "weights, 5 classes"

# A legacy (chained pickles) file cut short: the message counts bytes from the file's start.
head -c 400 "$FX/legacy.pth" >"$T/legacy_cut.pth"
"$VANILLA" import "$T/legacy_cut.pth" -o "$T/bad.safetensors" >"$T/out" 2>&1
expect "a legacy .pth cut at byte 400: exit 1" [ $? -eq 1 ]
expect "a legacy .pth cut at byte 400: the position in the file" contains "$T/out" "the pickle at byte 400 of the file: truncated"
# A damaged storage record (one byte of the data changed) fails its zip CRC-32.
python3 - "$FX/sd_train.pth" "$T/damaged.pth" <<'PY'
import struct, sys, zipfile
src, dst = sys.argv[1:]
b = bytearray(open(src, 'rb').read())
i = [x for x in zipfile.ZipFile(src).infolist() if x.filename.endswith('/data/0')][0]
n, e = struct.unpack('<HH', b[i.header_offset + 26:i.header_offset + 30])
b[i.header_offset + 30 + n + e + 5] ^= 0x40
open(dst, 'wb').write(b)
PY
"$VANILLA" import "$T/damaged.pth" -o "$T/bad.safetensors" >"$T/out" 2>&1
expect "import a .pth with a damaged record: exit 1" [ $? -eq 1 ]
expect "import a .pth with a damaged record: says so" contains "$T/out" "'sd_train/data/0' fails its CRC-32 check"
expect "import a .pth with a damaged record: nothing written" [ ! -e "$T/bad.safetensors" ]
"$VANILLA" import "$FX/sd_train.pth" -o "$T/sd_train.safetensors" >"$T/out" 2>&1
expect "import to the same path again: overwrites the earlier output" [ $? -eq 0 ]
cp "$FX/sd_train.pth" "$T/own.pth"
"$VANILLA" import "$T/own.pth" -o "$T/own.pth" >"$T/out" 2>&1
expect "import onto its own input: exit 1" [ $? -eq 1 ]
expect "import onto its own input: the input intact" cmp -s "$FX/sd_train.pth" "$T/own.pth"

# Imported with --config: the file describes itself but has no class names (a .pth has none),
# so eval takes the folder's sorted names, as PyTorch's ImageFolder: the same logits as
# PyTorch on a folder whose classes are named a..e.
"$VANILLA" import "$FX/sd_train.pth" -o "$T/described.safetensors" --config "$FX/config.yaml" >"$T/out" 2>&1
expect "import sd_train.pth --config: exit 0" [ $? -eq 0 ]
"$VANILLA" eval "$T/described.safetensors" --data "$FX/images" --save-logits "$T/described_logits.safetensors" >"$T/out" 2>&1
expect "eval of an imported file on named class folders: exit 0" [ $? -eq 0 ]
expect "eval of an imported file: logits equal PyTorch's (1e-5 abs)" "$TOOL" compare \
  "$T/described_logits.safetensors" "$FX/expected_eval.safetensors" logits 1e-5

# A plain state_dict: refused without a config that fits, read with one.
"$VANILLA" info "$FX/plain_train.safetensors" "$FX/config.yaml" >"$T/out" 2>&1
expect "info plain + config" contains "$T/out" "plain state_dict (model from the config), 5 classes"
"$VANILLA" info "$FX/plain_deploy.safetensors" --config "$FX/config.yaml" >"$T/out" 2>&1
expect "info plain --config FILE: exit 0" [ $? -eq 0 ]
"$VANILLA" info "$FX/plain_deploy.safetensors" >"$T/out" 2>&1
expect "info plain without a config that fits: exit 1" [ $? -eq 1 ]
expect "info plain without a config that fits: the mismatch by key" contains "$T/out" "does not fit the configured model"
"$VANILLA" export "$FX/plain_train.safetensors" -o "$T/dep.safetensors" >"$T/out" 2>&1
expect "export plain without a config: exit 1" [ $? -eq 1 ]
expect "export plain without a config: variant hint" contains "$T/out" "The file holds 2 stages of widths [8, 16, 24]"
"$VANILLA" export "$FX/plain_train.safetensors" -o "$T/dep.safetensors" --config "$FX/config.yaml" >"$T/out" 2>&1
expect "export plain with --config: exit 0" [ $? -eq 0 ]
"$VANILLA" export "$T/dep.safetensors" --format onnx -o "$T/m.onnx" >"$T/out" 2>&1
expect "export --format onnx of a deploy file: exit 0" [ $? -eq 0 ]
expect "onnx written" [ -s "$T/m.onnx" ]

# vanilla eval of the plain state_dict equals PyTorch's logits on the same images.
"$VANILLA" eval "$FX/plain_train.safetensors" --config "$FX/config.yaml" --data "$FX/images" \
  --save-logits "$T/eval_logits.safetensors" >"$T/out" 2>&1
expect "eval plain + config: exit 0" [ $? -eq 0 ]
expect "eval plain: logits equal PyTorch's (1e-5 abs)" "$TOOL" compare "$T/eval_logits.safetensors" \
  "$FX/expected_eval.safetensors" logits 1e-5

# Weights holding a NaN are not exported (the merge check compared NaN as no difference).
python3 - "$FX/plain_train.safetensors" "$T/nan_train.safetensors" <<'PY'
import json, struct, sys
src, dst = sys.argv[1:]
b = bytearray(open(src, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
o = 8 + n + h['cls2.0.bias']['data_offsets'][0]
b[o:o + 4] = struct.pack('<f', float('nan'))
open(dst, 'wb').write(b)
PY
"$VANILLA" export "$T/nan_train.safetensors" -o "$T/nan_dep.safetensors" --config "$FX/config.yaml" >"$T/out" 2>&1
expect "export of NaN weights: exit 1" [ $? -eq 1 ]
expect "export of NaN weights: says so" contains "$T/out" "its weights hold NaN or infinity; nothing exported"
expect "export of NaN weights: nothing written" [ ! -e "$T/nan_dep.safetensors" ]

# A plain state_dict is evaluated with the whole preprocessing of --config / --set, the
# geometry of data.eval_mode included (at 400 the official mode warps to a square, no crop):
# the same logits as the file imported with the same options.
S400=(--set data.input_size=400 --set data.crop_pct=0.875)
"$VANILLA" import "$FX/sd_train.pth" -o "$T/i400.safetensors" --config "$FX/config.yaml" "${S400[@]}" >"$T/out" 2>&1
"$VANILLA" eval "$T/i400.safetensors" --data "$FX/images" --save-logits "$T/i400_logits.safetensors" >"$T/out" 2>&1
"$VANILLA" eval "$FX/plain_train.safetensors" --config "$FX/config.yaml" "${S400[@]}" --data "$FX/images" \
  --save-logits "$T/p400_logits.safetensors" >"$T/out" 2>&1
expect "plain at 400: exit 0" [ $? -eq 0 ]
expect "plain at 400: the imported file's logits (eval_mode honoured)" "$TOOL" compare \
  "$T/i400_logits.safetensors" "$T/p400_logits.safetensors" logits 0

# The same state_dict saved in F16, BF16 or F64 (save_file(model.half().state_dict()), ...)
# is read as float32: its logits are exactly those of an F32 file holding the same values
# (each rounded through the dtype here, in Python). Without num_batches_tracked it loads too,
# as torch's load_state_dict(strict=True) allows.
python3 - "$FX/plain_train.safetensors" "$T" <<'PY'
import json, struct, sys
src, out = sys.argv[1:]
b = open(src, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
head = json.loads(b[8:8 + n]); data = b[8 + n:]
def write(path, conv, drop=()):
    h, chunks, off = {}, [], 0
    for k, v in head.items():
        if k == '__metadata__' or k in drop: continue
        raw = data[v['data_offsets'][0]:v['data_offsets'][1]]
        dt = v['dtype']
        if dt == 'F32':
            vals = struct.unpack('<%df' % (len(raw) // 4), raw)
            dt, raw = conv(vals)
        h[k] = {'dtype': dt, 'shape': v['shape'], 'data_offsets': [off, off + len(raw)]}
        chunks.append(raw); off += len(raw)
    j = json.dumps(h).encode()
    open(path, 'wb').write(struct.pack('<Q', len(j)) + j + b''.join(chunks))
def f16(v): return 'F16', struct.pack('<%de' % len(v), *v)
def f16_as_f32(v): return 'F32', struct.pack('<%df' % len(v), *struct.unpack('<%de' % len(v), struct.pack('<%de' % len(v), *v)))
def bf16(v):  # truncation to the top 16 bits
    return 'BF16', b''.join(struct.pack('<f', x)[2:] for x in v)
def bf16_as_f32(v): return 'F32', b''.join(b'\0\0' + struct.pack('<f', x)[2:] for x in v)
def f64(v): return 'F64', struct.pack('<%dd' % len(v), *v)
def same(v): return 'F32', struct.pack('<%df' % len(v), *v)
write(out + '/w_f16.safetensors', f16); write(out + '/w_f16_ref.safetensors', f16_as_f32)
write(out + '/w_bf16.safetensors', bf16); write(out + '/w_bf16_ref.safetensors', bf16_as_f32)
write(out + '/w_f64.safetensors', f64); write(out + '/w_f64_ref.safetensors', same)
write(out + '/w_nonbt.safetensors', same, [k for k in head if k.endswith('num_batches_tracked')])
PY
expect "half, bfloat16 and double state_dicts written (Python)" [ -s "$T/w_nonbt.safetensors" ]
for w in f16 bf16 f64 nonbt; do
  ref=$([ $w = nonbt ] && echo "$FX/plain_train.safetensors" || echo "$T/w_${w}_ref.safetensors")
  "$VANILLA" eval "$T/w_$w.safetensors" --config "$FX/config.yaml" --data "$FX/images" \
    --save-logits "$T/l_$w.safetensors" >"$T/out" 2>&1
  expect "eval of a $w state_dict: exit 0" [ $? -eq 0 ]
  "$VANILLA" eval "$ref" --config "$FX/config.yaml" --data "$FX/images" \
    --save-logits "$T/l_${w}_ref.safetensors" >"$T/out" 2>&1
  expect "eval of a $w state_dict: the logits of the same values in F32 (exact)" \
    "$TOOL" compare "$T/l_$w.safetensors" "$T/l_${w}_ref.safetensors" logits 0
done

# Fine-tuning from the plain file: 4 synthetic classes instead of 5.
"$TOOL" synth "$T/data" 16 4 || { echo "cannot make the synthetic data"; exit 1; }
cat >"$T/ft.yaml" <<YAML
model: {name: custom, dims: [8, 16, 24], strides: [2, 2], act_num: 1, in_chans: 3, num_classes: 4,
        init: $FX/plain_train.safetensors}
data: {root: $T/data, input_size: 16, augment: none, crop_pct: 1.0, mixup: 0, cutmix: 0}
optim: {name: adamw, lr: 0.01, warmup_epochs: 0, layer_decay: 0.7}
deep_training: {decay_epochs: 0}
train: {epochs: 1, batch_size: 8, threads: 1, log_every: 1000}
output: {dir: $T/run, keep_last: 1, tensorboard: false}
YAML
"$VANILLA" train "$T/ft.yaml" >"$T/out" 2>&1
expect "fine-tune from a plain state_dict: exit 0" [ $? -eq 0 ]
expect "fine-tune: classifier keys named" contains "$T/out" "cls2.0.weight (F32 [5, 5, 1, 1] -> F32 [4, 4, 1, 1])"
sed -i 's/in_chans: 3/in_chans: 1/' "$T/ft.yaml"
"$VANILLA" train "$T/ft.yaml" --set data.grayscale=true --set "data.mean=[0.5]" --set "data.std=[0.5]" --set output.dir="$T/run2" >"$T/out" 2>&1
expect "fine-tune with another stem: exit 1" [ $? -eq 1 ]
expect "fine-tune with another stem: the stem by key" contains "$T/out" "'stem1.0.weight' is F32 [8, 3, 4, 4] in the file, F32 [8, 1, 4, 4] in the model"

# A .pth where safetensors is expected: pointed to vanilla import.
"$VANILLA" predict "$FX/sd_train.pth" "$FX/images/a/0.png" >"$T/out" 2>&1
expect "predict a .pth: exit 1" [ $? -eq 1 ]
expect "predict a .pth: hint" contains "$T/out" "is a PyTorch file (torch.save): convert it first with \`vanilla import"
"$VANILLA" info "$FX/sd_train.pth" >"$T/out" 2>&1
expect "info a .pth: exit 1" [ $? -eq 1 ]
expect "info a .pth: hint" contains "$T/out" "is a PyTorch file (torch.save): convert it first with \`vanilla import"
# An ONNX file where safetensors is expected: said so, not a YAML or header error alone.
printf '\010\007\022\007vanilla' >"$T/m.onnx"
for c in predict info; do
  if [ $c = predict ]; then "$VANILLA" predict "$T/m.onnx" "$FX/images/a/0.png" >"$T/out" 2>&1
  else "$VANILLA" info "$T/m.onnx" >"$T/out" 2>&1; fi
  expect "$c an .onnx: exit 1" [ $? -eq 1 ]
  expect "$c an .onnx: said to be an export" contains "$T/out" "an ONNX file is an export for other runtimes"
done
"$VANILLA" train "$T/ft.yaml" --set model.in_chans=3 --set model.init="$FX/ckpt.pth" --set output.dir="$T/run3" >"$T/out" 2>&1
expect "model.init a .pth: exit 1" [ $? -eq 1 ]
expect "model.init a .pth: hint" contains "$T/out" "model.init: $FX/ckpt.pth is a PyTorch file"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
