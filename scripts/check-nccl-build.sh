#!/usr/bin/env bash
# Compiles and links robustlab's NCCL path (cmake -DROBUSTLAB_NCCL=ON: c10d's ProcessGroupNCCL in
# framework/distributed/communicator.cpp) against Debian trixie's CUDA LibTorch 2.6, without a GPU.
#
# The packages are unpacked, not installed, under /opt/torch-cuda of the LibTorch 2.x root that
# scripts/check-libtorch2.sh makes: libtorch-cuda-dev and libtorch-cuda-2.6 (contrib), libnccl-dev
# (contrib, nccl.h), nvidia-cuda-dev and libcudart12 (non-free, CUDA 12.4's headers and runtime) and
# libcu++-dev (main, <nv/target>, which CUDA's headers include).
# The root's CPU LibTorch 2.6 has the same headers but for two generated CUDA ones, which
# NCCL_INCLUDE_DIR (/opt/torch-cuda/usr/include) supplies; robustlab is then linked with the CUDA
# build's libtorch_cuda.so and libc10_cuda.so, so every c10d and CUDA call of the NCCL path is
# resolved against the library that will run it. Nothing runs: those libraries need a GPU driver and
# cuDNN. About 1.5 GB of packages are downloaded once (checked against the mirror's SHA256 sums) into
# /var/cache/robustlab/cuda-debs. The last step of .ci/run (skipped with one line where the mirror
# cannot be reached); a GPU machine's check (experiments/bench/gpu_check.sh) builds the same option
# against its own LibTorch and runs it.
#
#   bash scripts/check-nccl-build.sh [--suite sid]
#
# --suite sid instead compiles communicator.cpp with the NCCL group against Debian unstable's newer
# LibTorch headers (2.14 on 2026-12-05) in the root `check-libtorch2.sh --suite sid` makes: CUDA's and
# NCCL's headers from the packages above, LibTorch's two generated CUDA headers from trixie's CUDA
# build; not linked (unstable has no CUDA LibTorch of its version). By hand, not in CI.
#
# Environment: ROBUSTLAB_TRIXIE_ROOT, ROBUSTLAB_TRIXIE_MIRROR (as check-libtorch2.sh), ROBUSTLAB_CUDA_DEBS
# (the download cache). Exit codes: 0 built and linked, or skipped (one line says why); 1 a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${ROBUSTLAB_TRIXIE_ROOT:-/var/cache/robustlab/trixie-root}
debs=${ROBUSTLAB_CUDA_DEBS:-/var/cache/robustlab/cuda-debs}
mirror=${ROBUSTLAB_TRIXIE_MIRROR:-http://deb.debian.org/debian}
start=$(date +%s)
suite=trixie
while [ $# -gt 0 ]; do
  case $1 in
    --suite) suite=${2:-}; shift 2 || shift ;;
    *) echo "check-nccl-build: unknown option '$1': expected --suite sid"; exit 2 ;;
  esac
done
case $suite in trixie|sid) ;; *) echo "check-nccl-build: --suite '$suite': expected trixie or sid"; exit 2 ;; esac
skip() { echo "check-nccl-build: SKIPPED: $*"; exit 0; }
fail() { echo "check-nccl-build: FAILED: $*"; exit 1; }
# A stalled download gives up (below 100 kB/s for a minute) instead of holding CI until its limit.
fetch() { curl -fsS --connect-timeout 30 --speed-limit 100000 --speed-time 60 -o "$1" "$2"; }

for tool in curl xz dpkg-deb nm readelf; do command -v $tool >/dev/null || skip "$tool is not installed (scripts/setup.sh installs it)"; done
bash scripts/check-libtorch2.sh --sync-only | sed 's/^/  /'
[ -f "$root/.robustlab-ready" ] && [ -d "$root/src/robustlab" ] || skip "no LibTorch 2.x root (check-libtorch2.sh said why above)"

# section:package pairs; each package's file name and SHA256 from the mirror's trixie index.
packages=(contrib:libtorch-cuda-dev contrib:libtorch-cuda-2.6 contrib:libnccl-dev non-free:nvidia-cuda-dev non-free:libcudart12 main:libcu++-dev)
mkdir -p "$debs"
for section in main contrib non-free; do
  fetch "$debs/Packages-$section.xz" "$mirror/dists/trixie/$section/binary-amd64/Packages.xz" ||
    skip "cannot read $mirror/dists/trixie/$section/binary-amd64/Packages.xz (no network to the Debian mirror?)"
done
# fetchDeb INDEX PACKAGE: the package's .deb in $debs (downloaded once, checked against the index's
# SHA256), its path in $deb.
fetchDeb() {
  local file sum
  read -r file sum < <(xz -dc "$1" | awk -v p="$2" '
    $0 == "Package: " p {f = 1} f && /^Filename:/ {file = $2} f && /^SHA256:/ {sum = $2} f && /^$/ {print file, sum; exit}')
  [ -n "${file:-}" ] || fail "package $2 is not in $(basename "$1") from $mirror"
  deb="$debs/$(basename "$file")"
  if ! echo "$sum  $deb" | sha256sum -c --quiet >/dev/null 2>&1; then
    echo "check-nccl-build: downloading $(basename "$file")"
    fetch "$deb" "$mirror/$file" || { rm -f "$deb"; skip "cannot download $mirror/$file"; }
    echo "$sum  $deb" | sha256sum -c --quiet || fail "$deb does not match the index's SHA256 ($sum)"
  fi
}
opt="$root/opt/torch-cuda"
stamp="$opt/.unpacked"
wanted=""
for entry in "${packages[@]}"; do
  fetchDeb "$debs/Packages-${entry%%:*}.xz" "${entry#*:}"
  wanted+="$(basename "$deb") "
done
# Unpacked once per set of packages; nvidia-cuda-dev only for its headers and libcudart.so link,
# libnccl-dev for nccl.h.
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  rm -rf "$opt" && mkdir -p "$opt"
  for deb in $wanted; do
    case $deb in
      nvidia-cuda-dev_*) dpkg-deb --fsys-tarfile "$debs/$deb" | tar -C "$opt" -x --wildcards './usr/include/*' './usr/lib/x86_64-linux-gnu/libcudart.so' ;;
      libnccl-dev_*) dpkg-deb --fsys-tarfile "$debs/$deb" | tar -C "$opt" -x --wildcards './usr/include/*' ;;
      *) dpkg-deb -x "$debs/$deb" "$opt" ;;
    esac
  done
  echo "$wanted" >"$stamp"
fi
inc=/opt/torch-cuda/usr/include
lib=/opt/torch-cuda/usr/lib/x86_64-linux-gnu
for f in "$root$inc/nccl.h" "$root$inc/cuda_runtime_api.h" "$root$inc/c10/cuda/impl/cuda_cmake_macros.h" "$root$lib/libtorch_cuda.so"; do
  [ -e "$f" ] || fail "$f is missing after unpacking (did a package move it?)"
done

if [ "$suite" = sid ]; then
  sid=/var/cache/robustlab/sid-root
  bash scripts/check-libtorch2.sh --suite sid --sync-only | sed 's/^/  /'
  [ -f "$sid/.robustlab-ready" ] && [ -d "$sid/src/robustlab" ] || skip "no unstable root (check-libtorch2.sh said why above)"
  hdr=/opt/cuda-nccl/include
  rm -rf "$sid/opt/cuda-nccl" && mkdir -p "$sid$hdr"
  cp -a "$root$inc/." "$sid$hdr/"
  rm -rf "$sid$hdr"/{ATen,THC,c10,caffe2,kineto,torch}  # LibTorch's own headers: unstable's
  # Its LibTorch asks for NCCL >= 2.23 (trixie's is 2.22): unstable's nccl.h (contrib).
  fetch "$debs/Packages-sid-contrib.xz" "$mirror/dists/sid/contrib/binary-amd64/Packages.xz" ||
    skip "cannot read $mirror/dists/sid/contrib/binary-amd64/Packages.xz"
  fetchDeb "$debs/Packages-sid-contrib.xz" libnccl-dev
  rm -rf "$sid/opt/cuda-nccl/deb" && mkdir -p "$sid/opt/cuda-nccl/deb"
  dpkg-deb --fsys-tarfile "$deb" | tar -C "$sid/opt/cuda-nccl/deb" -x --wildcards './usr/include/*'
  cp "$sid/opt/cuda-nccl/deb/usr/include/"nccl*.h "$sid$hdr/"
  mkdir -p "$sid$hdr/ATen/cuda" "$sid$hdr/c10/cuda/impl"
  cp "$root$inc/ATen/cuda/CUDAConfig.h" "$sid$hdr/ATen/cuda/"
  cp "$root$inc/c10/cuda/impl/cuda_cmake_macros.h" "$sid$hdr/c10/cuda/impl/"
  inSid() { ROBUSTLAB_TRIXIE_ROOT=$sid bash scripts/in-trixie.sh "$@"; }
  echo "check-nccl-build: compiling communicator.cpp with -DROBUSTLAB_NCCL=ON against unstable's LibTorch headers"
  inSid sh -c "cmake -S /src/robustlab -B /src/build-nccl -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=/opt/catch2-v2 \
      -DROBUSTLAB_NCCL=ON -DNCCL_INCLUDE_DIR=$hdr >/src/cmake-nccl.log 2>&1" ||
    { tail -20 "$sid/src/cmake-nccl.log"; fail "CMake configure with -DROBUSTLAB_NCCL=ON in the unstable root failed"; }
  inSid sh -c "cmake --build /src/build-nccl --target robustlab_distributed -j$(nproc) >/src/build-nccl.log 2>&1" ||
    { grep -E -A4 'error|Error' "$sid/src/build-nccl.log" | head -40; fail "communicator.cpp with NCCL did not compile against unstable's LibTorch (log: $sid/src/build-nccl.log)"; }
  object=$(find "$sid/src/build-nccl/framework/distributed" -name 'communicator.cpp.o' | head -1)
  nm -C --undefined-only "$object" | grep -c 'c10d::ProcessGroupNCCL::ProcessGroupNCCL' >/dev/null ||
    fail "$object does not call c10d::ProcessGroupNCCL: was it compiled with ROBUSTLAB_WITH_NCCL?"
  version=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")/\1/p' "$sid"/usr/lib/*/cmake/Torch/TorchConfigVersion.cmake | head -1)
  echo "check-nccl-build: passed: communicator.cpp with ROBUSTLAB_NCCL compiled against LibTorch ${version:-?}'s headers in $(( $(date +%s) - start )) s"
  exit 0
fi

# The NCCL symbols come from the CUDA libraries; what those need in turn (cuBLAS, cuDNN, the driver)
# is not here and not looked for (ignore-in-shared-libs).
link="-L$lib -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -lcudart -Wl,--unresolved-symbols=ignore-in-shared-libs -Wl,-rpath-link,$lib"
echo "check-nccl-build: configuring /src/build-nccl with -DROBUSTLAB_NCCL=ON and building robustlab"
bash scripts/in-trixie.sh sh -c "cmake -S /src/robustlab -B /src/build-nccl -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=/opt/catch2-v2 \
    -DROBUSTLAB_NCCL=ON -DNCCL_INCLUDE_DIR=$inc '-DCMAKE_EXE_LINKER_FLAGS=$link' >/src/cmake-nccl.log 2>&1" ||
  { tail -20 "$root/src/cmake-nccl.log"; fail "CMake configure with -DROBUSTLAB_NCCL=ON failed (log: $root/src/cmake-nccl.log)"; }
bash scripts/in-trixie.sh sh -c "cmake --build /src/build-nccl --target robustlab -j$(nproc) >/src/build-nccl.log 2>&1" ||
  { grep -E -A4 'error|Error|undefined reference' "$root/src/build-nccl.log" | head -40; fail "the NCCL build failed (log: $root/src/build-nccl.log)"; }
# The binary must call the NCCL process group, found in libtorch_cuda.so at link time (the linker
# refuses a symbol of robustlab's own objects that no library defines). grep -c reads all its input:
# grep -q would end nm early, and pipefail would take nm's broken pipe for a failure.
bin="$root/src/build-nccl/robustlab"
nm -C --undefined-only "$bin" | grep -c 'c10d::ProcessGroupNCCL::ProcessGroupNCCL' >/dev/null ||
  fail "$bin does not call c10d::ProcessGroupNCCL: was communicator.cpp built with ROBUSTLAB_WITH_NCCL?"
readelf -d "$bin" | grep -c 'NEEDED.*libtorch_cuda.so' >/dev/null || fail "$bin is not linked with libtorch_cuda.so"
echo "check-nccl-build: passed: robustlab with ROBUSTLAB_NCCL compiled and linked against CUDA LibTorch 2.6 in $(( $(date +%s) - start )) s"
