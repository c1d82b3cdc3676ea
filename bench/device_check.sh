#!/usr/bin/env bash
# One prepared run on the GPU machine (issue 16), at most about 8 minutes: a look at the
# machine, the CUDA test suites (every op, optimizers, vanillanet_5 against the CPU), then
# vanillanet_5 training at 224 with batch 128 on the GPU, ours (TF32 and strict FP32) beside
# PyTorch (TF32, strict FP32, bf16 autocast) with the ratios. Prints everything.
#
# The GPU machine may lack meson and our Debian libraries: bench/device_pack.sh builds
# here and packs the programs and their libraries into build-ship/carry/pkg.tar.xz, which
# the device tool brings along with carry ["build-ship/carry"]. cuBLAS and cuDNN come from
# that machine's PyTorch (its nvidia/* wheels). Without the pack, the script builds with
# meson where meson exists.
#
#   bench/device_check.sh [PART...]  (no part: suites train dp ours recipe profile torch data)
# The parts run in the order given (the most wanted first: a run cut at its time limit keeps
# what came before):
#     suites   the CUDA test suites (device API, every op, optimizers/EMA/vanillanet_5)
#     train    vanilla train / eval / predict / export with --device cuda against the cpu,
#              SIGTERM-and-resume byte identity in deterministic mode, cross-device resume,
#              trainer speed (bench/train_gpu_check.sh)
#     dp       data-parallel vanilla train, 2 ranks on the GPU through MPI (the Open MPI that
#              device_pack.sh packs), against 1 process and against the cpu
#              (bench/dp_gpu_check.sh)
#     ours     bench_train: TF32, bf16 GEMMs, strict FP32 (everything kept for backward),
#              TF32 with the CPU default's recomputation, and TF32 with the depthwise kernels'
#              row walks instead of the tiles (VN_CUDA_DW_ROW=1), TF32 and bf16 with the
#              one-channel-a-thread BatchNorm, bias and bf16 conversion kernels (VN_CUDA_SCALAR=1)
#     recipe   vanilla train with the official recipe (RandAugment, mixup/cutmix, random
#              erasing, LAMB, EMA) on 500x375 JPEGs made there: images/s and time waiting for
#              data, the input pipeline included
#     recipe_split  the recipe's vanilla train again with SGD and no EMA, then also with the
#              lightest data pipeline, then with --profile: where the trainer's step loses to
#              bench_train's
#     data     the input pipeline on this machine's cores (bench_data: the official recipe's
#              train transforms on 500x375 JPEGs, 1 and all-cores workers): can it feed the GPU?
#     profile  the op profile of our training step (each op timed between device syncs)
#     profile_row  the same with the depthwise row walks (VN_CUDA_DW_ROW=1)
#     ours_quick  the first two of ours
#     torch    PyTorch: TF32 NCHW and channels_last, bf16 autocast channels_last
#     torch_variants  torch, and bf16 autocast NCHW
# A summary of images/s, share of the device's peak and ratios ends the run.
set -uo pipefail
cd "$(dirname "$0")/.."
parts=("$@")
((${#parts[@]})) || parts=(suites train dp ours recipe profile torch data)
t_start=$(date +%s)
orig_ld=${LD_LIBRARY_PATH:-}
say() { printf '\n=== %s (t+%ds)\n' "$*" $(($(date +%s) - t_start)); }

say "the machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -5
nvidia-smi 2>&1 | head -12
ldconfig -p 2>/dev/null | grep -E 'libcudnn.so|libcublas.so|libcudart.so' | head -6
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' 2>&1
command -v nvcc meson ninja cmake 2>&1
ldd --version 2>&1 | head -1
nproc; free -g | head -2

# cuBLAS / cuDNN / CUDA runtime of the machine's PyTorch.
nv_dirs=$(python3 - <<'PY' 2>/dev/null
import glob, os, site
dirs = set()
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    for pat in ("nvidia/*/lib", "nvidia/*/*/lib", "torch/lib"):
        for d in glob.glob(os.path.join(sp, pat)):
            if glob.glob(os.path.join(d, "lib*.so*")):
                dirs.add(d)
print(":".join(sorted(dirs)))
PY
)
echo "library folders from PyTorch: ${nv_dirs:-none}"

pkg=""
if [[ -f build-ship/carry/pkg.tar.xz ]]; then
  rm -rf /tmp/vn_pkg && mkdir -p /tmp/vn_pkg && tar -C /tmp/vn_pkg -xJf build-ship/carry/pkg.tar.xz
  pkg=/tmp/vn_pkg/pkg
  echo "using the programs packed by bench/device_pack.sh"
elif command -v meson >/dev/null; then
  say "building here (no pack found)"
  meson setup build-dev --buildtype=release -Dcuda=enabled >/dev/null && \
    meson compile -C build-dev >/dev/null || { echo "device_check: build failed"; exit 1; }
  mkdir -p /tmp/vn_pkg/pkg/bin /tmp/vn_pkg/pkg/lib
  cp build-dev/tests/cuda/test_cuda build-dev/tests/cuda/test_cuda_model \
    build-dev/tests/cuda/test_device_api build-dev/bench/bench_train build-dev/bench/bench_data \
    build-dev/train/cli/vanilla build-dev/tests/train/testtool /tmp/vn_pkg/pkg/bin/
  # libvanilla loads the CUDA backend module from its own folder.
  cp build-dev/libvanilla.so build-dev/libvanilla_cuda.so /tmp/vn_pkg/pkg/lib/
  pkg=/tmp/vn_pkg/pkg
else
  echo "device_check: no pack (run bench/device_pack.sh and carry build-ship/carry) and no meson here"
  exit 1
fi
# Our programs with the machine's loader, or with the packed glibc's when the machine's is
# older than the Debian 12 one (2.36) they were built against. The packed libc must not be
# on the library path of the machine's own tools when theirs is newer.
loader=()
glibc=$(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')
if [[ -n "$glibc" ]] && printf '2.36\n%s\n' "$glibc" | sort -V -C; then
  rm -f "$pkg/lib/libc.so.6" "$pkg/lib/libm.so.6" "$pkg/lib/libdl.so.2" "$pkg/lib/libpthread.so.0" \
    "$pkg/lib/librt.so.1" "$pkg/lib/ld-linux-x86-64.so.2"
  echo "the machine's glibc $glibc serves"
fi
export LD_LIBRARY_PATH="$pkg/lib${nv_dirs:+:$nv_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ -f "$pkg/lib/ld-linux-x86-64.so.2" ]]; then
  loader=("$pkg/lib/ld-linux-x86-64.so.2" --library-path "$LD_LIBRARY_PATH")
  unset LD_LIBRARY_PATH
  echo "the machine's glibc ${glibc:-?} is older: running through the packed loader"
fi
echo "libraries test_cuda would load (libvanilla, then the CUDA backend module on demand):"
ldd "$pkg/bin/test_cuda" 2>&1 | grep -E "cuda|cublas|cudnn|not found|vanilla" | head -12
ldd "$pkg/lib/libvanilla_cuda.so" 2>&1 | grep -E "cuda|cublas|cudnn|not found|vanilla" | head -12

part_suites() {
  say "device API: the module loads and sees the GPU"
  VN_CUDA_STRICT_FP32=1 CK_VERBOSITY=verbose timeout 30 "${loader[@]}" "$pkg/bin/test_device_api"
  echo "test_device_api exit status $?"
  say "CUDA suite: every op against the CPU (strict FP32, rel 1e-4; bf16 GEMMs: stated bounds)"
  VN_CUDA_STRICT_FP32=1 CK_VERBOSITY=verbose timeout 120 "${loader[@]}" "$pkg/bin/test_cuda"
  echo "test_cuda exit status $?"
  say "CUDA suite again with TF32 (convolutions and matrix products within 5e-3)"
  CK_VERBOSITY=normal timeout 120 "${loader[@]}" "$pkg/bin/test_cuda" 2>&1 | grep -E "conv|matmul|linear|Checks|F:"
  echo "test_cuda (TF32) exit status ${PIPESTATUS[0]}"
  say "CUDA suite with the depthwise row walks (VN_CUDA_DW_ROW=1, strict FP32)"
  VN_CUDA_DW_ROW=1 VN_CUDA_STRICT_FP32=1 CK_VERBOSITY=normal timeout 120 "${loader[@]}" "$pkg/bin/test_cuda"
  echo "test_cuda (row walks) exit status $?"
  say "CUDA suite with the one-channel-a-thread kernels (VN_CUDA_SCALAR=1, strict FP32)"
  VN_CUDA_SCALAR=1 VN_CUDA_STRICT_FP32=1 CK_VERBOSITY=normal timeout 120 "${loader[@]}" "$pkg/bin/test_cuda"
  echo "test_cuda (scalar) exit status $?"
  say "CUDA model suite: optimizers, EMA, vanillanet_5 logits/loss/gradients, 50 steps"
  VN_CUDA_STRICT_FP32=1 CK_VERBOSITY=verbose timeout 120 "${loader[@]}" "$pkg/bin/test_cuda_model"
  echo "test_cuda_model exit status $?"
}

part_profile() {
  say "ours: op profile, vanillanet_5 train 224 batch 128, tf32, everything kept for backward${1:+, $1}"
  env ${1:-} timeout 120 "${loader[@]}" "$pkg/bin/bench_train" --device cuda --model vanillanet_5 \
    --batch 128 --size 224 --steps 3 --warmup 1 --keep-mb 100000 --profile 2>&1 | tail -45
}
part_profile_row() { part_profile VN_CUDA_DW_ROW=1; }

# H200 SXM dense peaks (NVIDIA datasheet; the sparse figures are twice these): FP32 67
# TFLOPS, TF32 tensor cores 494 TFLOPS, BF16 989 TFLOPS.
declare -A img=() gflops=()
peak_for() { case $1 in *bf16*) echo 989;; *fp32*) echo 67;; *) echo 494;; esac; }
common=(--model vanillanet_5 --batch 128 --size 224 --steps 10 --warmup 3)
bench_ours() { # label, then arguments of bench_train and VAR=value settings
  local label=$1; shift
  local envs=() args=()
  for a in "$@"; do [[ $a == VN_*=* ]] && envs+=("$a") || args+=("$a"); done
  say "ours: vanillanet_5 train 224 batch 128, $label"
  local out
  out=$(env "${envs[@]}" timeout 100 "${loader[@]}" "$pkg/bin/bench_train" --device cuda "${common[@]}" "${args[@]}" 2>&1)
  echo "$out" | tail -8
  img[ours_$label]=$(echo "$out" | sed -n 's/.*RESULT ours.* img_s=\([0-9.]*\).*/\1/p')
  gflops[ours_$label]=$(echo "$out" | sed -n 's/.*RESULT ours.* gflops=\([0-9.]*\).*/\1/p')
}
bench_torch() { # label, args...
  local label=$1; shift
  say "PyTorch: vanillanet_5 train 224 batch 128, $label"
  local out
  out=$(LD_LIBRARY_PATH="$orig_ld" timeout 80 python3 bench/torch_baseline.py --device cuda --threads 8 "${common[@]}" "$@" 2>&1)
  echo "$out" | tail -6
  img[torch_$label]=$(echo "$out" | sed -n 's/.*RESULT torch.* img_s=\([0-9.]*\).*/\1/p')
  gflops[torch_$label]=$(echo "$out" | sed -n 's/.*RESULT torch.* gflops=\([0-9.]*\).*/\1/p')
}

part_ours() {
  bench_ours tf32 --keep-mb 100000
  bench_ours bf16 --keep-mb 100000 --bf16
  bench_ours fp32 --keep-mb 100000 VN_CUDA_STRICT_FP32=1
  bench_ours tf32_recompute
  bench_ours tf32_dw_row --keep-mb 100000 VN_CUDA_DW_ROW=1
  bench_ours tf32_scalar --keep-mb 100000 VN_CUDA_SCALAR=1
  bench_ours bf16_scalar --keep-mb 100000 --bf16 VN_CUDA_SCALAR=1
}

part_ours_quick() {
  bench_ours tf32 --keep-mb 100000
  bench_ours bf16 --keep-mb 100000 --bf16
}

part_torch() {
  bench_torch tf32
  bench_torch tf32_channels_last --channels-last
  bench_torch bf16_channels_last --channels-last --bf16
}

summary() {
  ((${#img[@]})) || return 0
  say "summary: images/s, and the share of the H200's dense peak (TF32 494, BF16 989, FP32 67 TFLOPS)"
  local k
  for k in "${!img[@]}"; do
    python3 -c "import sys; i, g, p = sys.argv[1:]; print('  %-28s %9s img/s  %5.1f%% of peak' % ('$k', i or 'failed', float(g or 0) / 10 / float(p)))" \
      "${img[$k]}" "${gflops[$k]}" "$(peak_for "$k")"
  done | sort
  ratio() { # ours, torch
    local a=${img[$1]:-} b=${img[$2]:-}
    [[ -n "$a" && -n "$b" ]] && python3 -c "print('  ratio $1 / $2: %.3f' % ($a / $b))"
  }
  ratio ours_tf32 torch_tf32
  ratio ours_tf32 torch_tf32_channels_last
  ratio ours_bf16 torch_bf16_channels_last
  ratio ours_tf32 ours_tf32_dw_row
  ratio ours_tf32 ours_tf32_scalar
  ratio ours_bf16 ours_bf16_scalar
}

part_data() {
  say "input pipeline: bench_data with 1 and $(nproc) workers"
  timeout 90 "${loader[@]}" "$pkg/bin/bench_data" --seconds 2 --workers "1,$(nproc)" 2>&1
}

part_train() {
  say "vanilla train / eval / predict / export on the GPU (bench/train_gpu_check.sh)"
  timeout 120 bash bench/train_gpu_check.sh "$pkg/bin/vanilla" "$pkg/bin/testtool" /tmp/vn_train_gpu
  echo "train_gpu_check exit status $?"
}

# vanilla train with the official recipe on part recipe's JPEGs, 45 steps on the GPU.
recipe_args=(examples/imagenet/vanillanet_5.yaml --set data.root=/tmp/vn_jpg
  --set model.num_classes=10 --set data.workers=$(($(nproc) - 1)) --set train.device=cuda
  --set optim.update_freq=1 --set train.max_steps=45 --set train.eval_every=0
  --set output.save_every=0)

part_recipe() {
  local w=$(($(nproc) - 1))
  say "the official recipe on 500x375 JPEGs: vanilla train, vanillanet_5 at 224, batch 128, cuda, $w workers"
  LD_LIBRARY_PATH="$orig_ld" python3 - <<'PY'
# 10 classes x 192 train (+ 8 val) JPEGs of 500x375, quality 90: noise under a class tint.
import os, numpy as np
from multiprocessing import Pool
from PIL import Image
def make(args):
    split, c, i = args
    rng = np.random.default_rng(c * 1000 + i)
    a = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    a[..., c % 3] = (a[..., c % 3] // 2 + 25 * c).astype(np.uint8)
    d = f"/tmp/vn_jpg/{split}/c{c}"
    os.makedirs(d, exist_ok=True)
    Image.fromarray(a).save(f"{d}/{i:04d}.JPEG", quality=90)
jobs = [("train", c, i) for c in range(10) for i in range(192)] + \
       [("val", c, i) for c in range(10) for i in range(8)]
with Pool(os.cpu_count()) as p:
    p.map(make, jobs, chunksize=32)
print("made", len(jobs), "JPEGs in /tmp/vn_jpg")
PY
  timeout 100 "${loader[@]}" "$pkg/bin/vanilla" train "${recipe_args[@]}" --set train.log_every=5 \
    --set output.dir=/tmp/vn_recipe >/tmp/vn_recipe.log 2>&1
  echo "recipe run exit status $?"
  grep -E "device:|img/s|time:" /tmp/vn_recipe.log | tail -14
}

# The trainer's step against bench_train's: the recipe as is, with SGD and no EMA, with the
# data pipeline at its lightest (no RandAugment, mixup, cutmix or erasing), and once with
# --profile (op times between device syncs, and what the tape does not cover: optimizer, EMA,
# data, upload, bookkeeping). Needs part recipe's JPEGs (made here when missing).
part_recipe_split() {
  [[ -d /tmp/vn_jpg/train ]] || { part_recipe >/dev/null; }
  local label base=("${recipe_args[@]}" --set train.log_every=15)
  for label in recipe sgd_no_ema light_data; do
    local extra=()
    case $label in
      sgd_no_ema) extra=(--set optim.name=sgd --set 'ema.decays=[]') ;;
      light_data) extra=(--set optim.name=sgd --set 'ema.decays=[]' --set data.auto_augment=
        --set data.color_jitter=0 --set data.mixup=0 --set data.cutmix=0 --set data.reprob=0) ;;
    esac
    say "vanilla train on the GPU, split: $label"
    timeout 100 "${loader[@]}" "$pkg/bin/vanilla" train "${base[@]}" "${extra[@]}" \
      --set output.dir=/tmp/vn_split_$label >/tmp/vn_split_$label.log 2>&1
    echo "exit status $?"
    grep -E "img/s|time:" /tmp/vn_split_$label.log | tail -4
  done
  say "vanilla train on the GPU, the recipe with --profile"
  timeout 100 "${loader[@]}" "$pkg/bin/vanilla" train "${base[@]}" --set output.dir=/tmp/vn_split_prof \
    --profile >/tmp/vn_split_prof.log 2>&1
  echo "exit status $?"
  grep -E "img/s|time:|^ops:|^total|outside" /tmp/vn_split_prof.log | tail -8
}

part_dp() ( # a subshell: the Open MPI settings stay in it
  say "data-parallel: 2 ranks on the GPU through MPI (bench/dp_gpu_check.sh)"
  local o=$pkg/ompi mpirun
  if [[ -x $o/bin/orterun ]]; then
    # The packed Open MPI, relocated; Debian's /etc/openmpi settings as variables.
    export OPAL_PREFIX=$o PMIX_PREFIX=$o/pmix2 PATH="$o/bin:$PATH"
    export OMPI_MCA_btl_base_warn_component_unused=0 OMPI_MCA_mtl='^ofi' \
      OMPI_MCA_btl='^uct,openib,ofi' OMPI_MCA_pml='^ucx' OMPI_MCA_osc='^ucx,pt2pt' \
      OMPI_MCA_mca_base_component_show_load_errors=0
    mpirun=$o/bin/orterun
  elif command -v mpirun >/dev/null; then
    mpirun=$(command -v mpirun)
  else
    echo "no Open MPI packed or installed: skipped"
    return
  fi
  timeout 150 bash bench/dp_gpu_check.sh "$pkg/bin/vanilla" "$pkg/bin/testtool" "$mpirun" /tmp/vn_dp_gpu
  echo "dp_gpu_check exit status $?"
)

part_torch_variants() {
  part_torch
  bench_torch bf16 --bf16
}

for part in "${parts[@]}"; do
  case $part in
    suites|profile|profile_row|ours|ours_quick|torch|data|train|dp|recipe|recipe_split|torch_variants) "part_$part" ;;
    *) echo "device_check: no part '$part'" ;;
  esac
done
summary
echo "device_check: done in $(($(date +%s) - t_start)) s"
