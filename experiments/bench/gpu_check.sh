#!/usr/bin/env bash
# One prepared run for a session that is lent the GPU machine (../shared/device/README.md): builds
# robustlab against the machine's CUDA LibTorch, runs the test areas that need no trained fixtures,
# then `robustlab bench --device cuda` and the Python reference on CUDA doing the same work, and prints
# both tables last. Stage first, here: ../shared/device/stage.sh. Then, through the device tool, with
# carry [".device"]:
#   bash experiments/bench/gpu_check.sh            # tables also land in $OUT when it is set
# Sizes follow the GPU reference points: PGD-20 on 10,000 test images in one batch, training and
# PGD-10 adversarial training at batch 128. Written without a GPU to try it on: expect to fix things.
set -euo pipefail
out=${OUT:-/tmp/robustlab-gpu-check}
mkdir -p "$out"
bash .device/build.sh
# shellcheck disable=SC1091
source .device/env.sh
bin=build-gpu/robustlab
build-gpu/tests/robustlab_tests "[data],[config],[statistics]" 2>&1 | tail -3 | tee "$out/tests.txt"
common=(--train-images 60000 --adv-train-images 6000 --attack-images 10000 --precision fp32,bf16 --threads 1 --repeats 3)
"$bin" bench --device cuda --attack-batch 10000 "${common[@]}" -o "$out/bench-cuda.h5" | tee "$out/bench-cuda.txt"
python3 experiments/bench/reference.py --device cuda "${common[@]}" | tee "$out/reference-cuda.txt"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv | tee "$out/gpu.txt"
echo "== robustlab (CUDA) =="; cat "$out/bench-cuda.txt"
echo "== Python PyTorch (CUDA) =="; cat "$out/reference-cuda.txt"
