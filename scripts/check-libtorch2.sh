#!/usr/bin/env bash
# Builds robustlab against LibTorch 2.x and runs the test areas that need no long training, without a
# GPU: Debian trixie's libtorch-dev (2.6) in a debootstrapped root kept in a cache folder and reused.
# Every TORCH_VERSION branch for 2.x is compiled for real there. Used by .ci/run after the main suite.
# --suite sid does the same against Debian unstable's newer LibTorch (2.14 on 2026-12-05), in a root
# of its own; by hand, not in CI (unstable moves).
#
#   bash scripts/check-libtorch2.sh [--areas "[data],[config],..."] [--sync-only] [--suite trixie|sid]
#
# --sync-only: make (or reuse) the root and copy the working tree to its /src/robustlab, then stop
# (scripts/check-nccl-build.sh builds from there).
#
# Environment: ROBUSTLAB_TRIXIE_ROOT (default /var/cache/robustlab/trixie-root; with --suite S,
# /var/cache/robustlab/S-root), ROBUSTLAB_TRIXIE_MIRROR (default: the host's Debian mirror). Exit codes: 0 built and passed, or the root could not be made
# (one line says why: no network, no debootstrap, no right to mount); 1 a build or test failure inside.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
# Areas whose tests train nothing longer than a few seconds ([torchscript]: the fixture CNN, ~20 s, and
# the tiny experiment), with every TORCH_VERSION branch and the TorchScript code compiled and run;
# [kernels] on the best kernel path of this CPU.
areas="[data],[config],[models],[kernels],[statistics],[torchscript],[distributed]"
syncOnly=0
suite=trixie
while [ $# -gt 0 ]; do
  case $1 in
    --areas) areas=$2; shift 2 ;;
    --sync-only) syncOnly=1; shift ;;
    --suite) suite=${2:-}; shift 2 || shift ;;
    *) echo "check-libtorch2: unknown option '$1': expected --areas LIST, --sync-only or --suite trixie|sid"; exit 2 ;;
  esac
done
case $suite in
  trixie) root=${ROBUSTLAB_TRIXIE_ROOT:-/var/cache/robustlab/trixie-root} ;;
  sid) root=/var/cache/robustlab/sid-root ;;
  *) echo "check-libtorch2: --suite '$suite': expected trixie or sid"; exit 2 ;;
esac
mirror=${ROBUSTLAB_TRIXIE_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
  grep -vE '^[[:space:]]*#' | grep -oE 'https?://[^ ]*/debian/?( |$)' | head -1 | tr -d ' ' || true)}
mirror=${mirror:-http://deb.debian.org/debian}
start=$(date +%s)

skip() { echo "check-libtorch2: SKIPPED, the LibTorch 2.x root cannot be made here: $*"; exit 0; }
fail() { echo "check-libtorch2: FAILED: $*"; exit 1; }

# Build dependencies inside the root. Catch2 there is v3 (another API): the tests build against the
# host's header-only Catch2 v2, copied in.
# python3-torch (+ setuptools and the Python headers that inductor compiles against): PyTorch 2.6 for the
# benchmark's torch.compile peer (experiments/bench/compare.py, through scripts/in-trixie.sh).
deps=(build-essential cmake ccache pkg-config libtorch-dev libgloo-dev libhdf5-dev libboost-dev libboost-math-dev
      libcxxopts-dev libtomlplusplus-dev libpng-dev zlib1g-dev dataset-fashion-mnist libopenblas0-pthread
      python3-torch python3-numpy python3-h5py python3-setuptools python3-dev procps hdf5-tools)

mounted=()
cleanup() { for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
mountIn() {  # mountIn TYPE-OR-BIND SRC DEST
  mkdir -p "$3"
  if mountpoint -q "$3"; then return 0; fi
  if [ "$1" = bind ]; then mount --bind "$2" "$3"; else mount -t "$1" "$2" "$3"; fi || return 1
  mounted+=("$3")
}
inRoot() { chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

# Installs what of deps the root lacks.
installDeps() {
  local missing=()
  for p in "${deps[@]}"; do
    inRoot dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  # Unstable's index carries a Valid-Until date, which a mirror kept as of a day can pass.
  local aptOpts=()
  [ "$suite" = trixie ] || aptOpts=(-o Acquire::Check-Valid-Until=false)
  inRoot apt-get "${aptOpts[@]}" update -qq >"$root.apt.log" 2>&1 || { tail -5 "$root.apt.log"; skip "apt-get update failed inside the root"; }
  DEBIAN_FRONTEND=noninteractive inRoot apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$root.apt.log" 2>&1 ||
    { tail -5 "$root.apt.log"; skip "installing ${missing[*]} inside the root failed"; }
  inRoot apt-get clean
}

if [ ! -f "$root/.robustlab-ready" ]; then
  command -v debootstrap >/dev/null 2>&1 || skip "debootstrap is not installed (scripts/setup.sh installs it)"
  [ "$(id -u)" -eq 0 ] || skip "debootstrap and chroot need root"
  echo "check-libtorch2: making the $suite root in $root from $mirror (first run: several minutes)"
  # A half-made root of a killed run may still have /dev and /proc mounted: never delete through them.
  for m in "$root/dev" "$root/proc"; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  rm -rf --one-file-system "$root"
  mkdir -p "$(dirname "$root")"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
    { tail -5 "$root.debootstrap.log"; rm -rf --one-file-system "$root"; skip "debootstrap failed (log above; no network to the Debian mirror?)"; }
  mountIn proc proc "$root/proc" || skip "cannot mount /proc inside the root"
  mountIn bind /dev "$root/dev" || skip "cannot bind /dev inside the root"
  installDeps
  touch "$root/.robustlab-ready"
  echo "check-libtorch2: root ready after $(( $(date +%s) - start )) s"
else
  echo "check-libtorch2: reusing the $suite root in $root"
  mountIn proc proc "$root/proc" || skip "cannot mount /proc inside the root"
  mountIn bind /dev "$root/dev" || skip "cannot bind /dev inside the root"
  installDeps  # a root made by an earlier version of this script may lack newer dependencies
fi

[ -f /usr/include/catch2/catch.hpp ] || fail "the host's Catch2 v2 header is missing (scripts/setup.sh installs catch2)"
mkdir -p "$root/opt/catch2-v2/include"
cp -r /usr/include/catch2 "$root/opt/catch2-v2/include/"
# A config of its own for the header-only target (the host's also names a compiled Catch2WithMain).
mkdir -p "$root/opt/catch2-v2/lib/cmake/Catch2"
cat >"$root/opt/catch2-v2/lib/cmake/Catch2/Catch2Config.cmake" <<'EOF2'
add_library(Catch2::Catch2 INTERFACE IMPORTED)
set_target_properties(Catch2::Catch2 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES /opt/catch2-v2/include)
set(Catch2_FOUND TRUE)
EOF2

# The working tree as git sees it (tracked and untracked, not ignored), plus the MNIST cache; then an
# incremental build in the root's /src/build. The tree is staged, and only files whose bytes differ
# from the root's copy are copied over, with a fresh time stamp: the build then recompiles exactly
# what changed, whichever tree (a clone, another checkout) the root's build last saw. (Keeping the
# files' own times would let an edit older than the last build, in another tree, go unbuilt.)
src="$root/src/robustlab"
stage="$root/src/incoming"
# A root whose copy was made by an earlier version of this script (file times kept) may hold objects
# built from another tree's files: start its build afresh once (ccache keeps it quick).
if [ ! -f "$root/src/.synced-by-content" ]; then
  rm -rf "$src" "$root/src/build"
  mkdir -p "$root/src" && touch "$root/src/.synced-by-content"
fi
rm -rf "$stage" && mkdir -p "$stage" "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -C "$stage" -xf -
else
  tar --exclude=./build --exclude=./.git -cf - . | tar -C "$stage" -xf -
fi
[ -d data/cache ] && cp -r data/cache "$stage/data/"
(cd "$stage" && find . -type f -print0) | while IFS= read -r -d '' f; do
  if ! cmp -s "$stage/$f" "$src/$f"; then
    mkdir -p "$(dirname "$src/$f")"
    cp "$stage/$f" "$src/$f"
  fi
done
(cd "$src" && find . -type f -print0) | while IFS= read -r -d '' f; do
  [ -e "$stage/$f" ] || rm -f "$src/$f"
done
rm -rf "$stage"
[ "$syncOnly" = 1 ] && { echo "check-libtorch2: the working tree is in $src"; exit 0; }
torch=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")/\1/p' "$root"/usr/lib/*/cmake/Torch/TorchConfigVersion.cmake 2>/dev/null | head -1)
echo "check-libtorch2: LibTorch ${torch:-?} in the root; building (ccache in the root's /root/.ccache)"
inRoot sh -c "cmake -S /src/robustlab -B /src/build -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=/opt/catch2-v2 >/src/cmake.log 2>&1" ||
  { tail -20 "$root/src/cmake.log"; fail "CMake configure against LibTorch ${torch:-2.x} failed (log: $root/src/cmake.log)"; }
inRoot sh -c "cmake --build /src/build -j$(nproc) >/src/build.log 2>&1" ||
  { grep -E 'error|Error' "$root/src/build.log" | head -30; fail "the build against LibTorch ${torch:-2.x} failed (log: $root/src/build.log)"; }
echo "check-libtorch2: built in $(( $(date +%s) - start )) s so far; running $areas"
inRoot sh -c "cd /src/build && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 tests/robustlab_tests '$areas' --order decl" ||
  fail "tests against LibTorch ${torch:-2.x} failed"
# Data-parallel ranks through the real launchers, torchrun included (Debian 13's runs; Debian 12's does not).
inRoot sh -c "bash /src/robustlab/tests/distributed_launch.sh /src/build/robustlab /src/robustlab" ||
  fail "data-parallel launchers against LibTorch ${torch:-2.x} failed"
echo "check-libtorch2: passed against LibTorch ${torch:-2.x} in $(( $(date +%s) - start )) s"
