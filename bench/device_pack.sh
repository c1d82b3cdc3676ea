#!/usr/bin/env bash
# Builds here what bench/device_check.sh runs on the GPU machine (which may lack meson and
# our Debian libraries), and packs it into build-ship/carry/pkg.tar.xz: the CUDA test
# programs, bench_train, the vanilla command and testtool (its synthetic dataset), libvanilla.so with the CUDA backend module libvanilla_cuda.so beside
# it (where libvanilla looks for it), the CUDA runtime and every other shared library they
# load except the GPU driver, cuBLAS and cuDNN (those come from the GPU machine's PyTorch);
# glibc's loader too, for a machine whose glibc is older than Debian 12's. Prints the size.
# Pass the path to the device tool as: carry ["build-ship/carry"].
#
#   bench/device_pack.sh [--arch SM]     (default 90: H100/H200)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=90
[[ "${1:-}" == "--arch" ]] && arch=$2

dir=build-ship
if [[ ! -f $dir/build.ninja ]]; then
  # Not -march=native: the GPU machine's CPU may differ; x86-64-v3 is AVX2 + FMA, what the
  # CPU kernels are written for.
  meson setup $dir --buildtype=release -Dcuda=enabled -Dnative=false -Dgpu_arch="$arch" \
    -Dc_args=-march=x86-64-v3 >/dev/null
fi
meson compile -C $dir vanilla:shared_library vanilla_cuda:shared_module test_cuda \
  test_cuda_model test_device_api bench_train bench_data vanilla:executable testtool >/dev/null

stage=$dir/pkg
rm -rf "$stage" $dir/carry
mkdir -p "$stage/bin" "$stage/lib" $dir/carry
cp $dir/tests/cuda/test_cuda $dir/tests/cuda/test_cuda_model $dir/tests/cuda/test_device_api \
  $dir/bench/bench_train $dir/bench/bench_data $dir/train/cli/vanilla $dir/tests/train/testtool "$stage/bin/"
cp $dir/libvanilla.so $dir/libvanilla_cuda.so "$stage/lib/"
strip --strip-unneeded "$stage"/bin/* "$stage"/lib/libvanilla.so "$stage"/lib/libvanilla_cuda.so
# Every library the programs and the module load, but the ones the GPU machine must supply
# itself. (The CUDA runtime is the module's: libvanilla and the programs link no CUDA.)
skip='libcublas|libcublasLt|libcudnn|libcuda\.so|linux-vdso|libvanilla'
for f in "$stage"/bin/* "$stage/lib/libvanilla.so" "$stage/lib/libvanilla_cuda.so"; do
  ldd "$f" | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
done | sort -u | grep -Ev "$skip" | while read -r lib; do
  cp -L "$lib" "$stage/lib/"
done
# Open MPI (Debian's 4.1, the one libvanilla links) for the data-parallel part of
# device_check.sh: orterun and orted, the MCA components, PMIx's and their help texts, laid out
# as under /usr so that OPAL_PREFIX and PMIX_PREFIX relocate them, and their libraries.
ompi=/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3 pmix=/usr/lib/x86_64-linux-gnu/pmix2
if [[ -d $ompi && -d $pmix ]] && command -v orterun >/dev/null; then
  o=$stage/ompi
  mkdir -p "$o/bin" "$o/lib/x86_64-linux-gnu/openmpi/lib" "$o/share" "$o/pmix2/lib"
  cp -L "$(command -v orterun)" "$(command -v orted)" "$o/bin/"
  cp -a $ompi "$o/lib/x86_64-linux-gnu/openmpi/lib/"
  cp -a /usr/share/openmpi "$o/share/"
  cp -a $pmix/lib/pmix "$o/pmix2/lib/"
  cp -a $pmix/share "$o/pmix2/"
  for f in "$o"/bin/* "$o"/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/*.so "$o"/pmix2/lib/pmix/*.so; do
    ldd "$f" | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
  done | sort -u | grep -Ev "$skip" | while read -r lib; do
    [[ -f "$stage/lib/$(basename "$lib")" ]] || cp -L "$lib" "$stage/lib/"
  done
fi
tar -C $dir -cJf $dir/carry/pkg.tar.xz pkg
echo "device_pack: $(du -h $dir/carry/pkg.tar.xz | cut -f1) packed ($(du -sh "$stage" | cut -f1) unpacked)" \
     "in $dir/carry/pkg.tar.xz:"
ls "$stage/bin" "$stage/lib" | tr '\n' ' '
echo
