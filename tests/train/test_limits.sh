#!/usr/bin/env bash
# Resource limits (issue 18): under `ulimit -v` too small for the model, `vanilla train` fails
# with exit 1 and "out of memory" naming the size it needed, never a crash. (An image whose
# header claims 100000 x 100000 pixels is refused before allocation: tests/data/test_image.c,
# size_limit_before_decoding.)
# Usage (from meson): test_limits.sh VANILLA TESTTOOL
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
if ldd "$VANILLA" 2>/dev/null | grep -q libasan; then
  echo "SKIP: AddressSanitizer reserves terabytes of address space; ulimit -v cannot apply"
  exit 77
fi
T=$(mktemp -d /tmp/vn_limits_XXXXXX)
trap 'rm -rf "$T"' EXIT
"$TOOL" synth "$T/data" 4 2 || { echo "cannot make the synthetic data"; exit 1; }
cat >"$T/cfg.yaml" <<YAML
model: {name: vanillanet_5, num_classes: 4}
data: {root: $T/data, input_size: 224, augment: none, crop_pct: 1.0, mixup: 0, cutmix: 0}
optim: {warmup_epochs: 0, update_freq: 1}
deep_training: {decay_epochs: 1}
train: {epochs: 1, batch_size: 8, threads: 2}
output: {dir: $T/run}
YAML
fail=0
# 600 MB of address space: the libraries load, the 17 M-parameter training model does not fit.
(ulimit -v 600000; timeout 300 "$VANILLA" train "$T/cfg.yaml") >"$T/out" 2>&1
rc=$?
cat "$T/out" | tail -2
if ((rc != 1)); then echo "FAIL - exit $rc (expected 1: an error, not a signal)"; fail=1; fi
if ! grep -qE "out of memory.*[0-9.]+ MB" "$T/out"; then echo "FAIL - no 'out of memory ... MB'"; fail=1; fi
((fail == 0)) && echo "ok - ulimit -v 600000: exit 1 with the size"
exit $fail
