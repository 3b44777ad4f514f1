#!/usr/bin/env bash
# One prepared run for when the GPU machine is lent (../shared/device/README.md): builds
# robustlab against the machine's CUDA LibTorch, then, each step under what is left of one time budget
# and each going on when an earlier one failed: `robustlab bench --device cuda` and the Python
# reference on CUDA doing the same work (eager, same run), the CUDA-graph probe
# (experiments/bench/cuda_graph_probe, built beside the main build), the test areas that need no
# trained fixtures (GPU_CHECK_TESTS=0 skips them and the test build), the default experiment on CUDA
# and a report made from its results in a fresh process. Prints the tables last.
#
# Stage first, here: ../shared/device/stage.sh, then the three packages the GPU image may lack, kept out
# of .device/debs (build.sh unpacks those onto LD_LIBRARY_PATH, and a Debian zlib there would shadow
# the image's newer one under python3):
#   mkdir -p .device/extra && (cd .device/extra && apt-get download libpng-dev libpng16-16 zlib1g-dev)
# Then, through the device tool, with carry [".device"]:
#   bash experiments/bench/gpu_check.sh [budget-seconds, default 330]   # files land in $OUT when set
# Sizes follow the GPU reference points: PGD-20 on 10,000 test images in one batch, training and
# PGD-10 adversarial training at batch 128. At most 8 files land in $OUT (the device tool's limit).
set -uo pipefail
out=${OUT:-/tmp/robustlab-gpu-check}
mkdir -p "$out"
deadline=$(($(date +%s) + ${1:-330}))
left() { echo $((deadline - $(date +%s))); }
step() { echo "== $1 ($(left) s left)"; }

{
  lscpu | grep -E '^(Model name|CPU\(s\)):'
  lscpu | grep -o -w -E 'avx2|fma|avx512f|avx512_bf16|amx_bf16|amx_tile' | sort -u | tr '\n' ' '; echo
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  gcc --version | head -1
} > "$out/summary.txt" 2>&1
cat "$out/summary.txt"

# libpng and zlib: the image's own when it has their headers, else the staged Debian ones (headers from
# Debian, zlib linked against the image's libz.so.1, which is ABI-compatible and newer).
x=/tmp/xdeps
mkdir -p $x
for f in .device/extra/*.deb; do dpkg -x "$f" $x; done
extra=()
if [ ! -f /usr/include/zlib.h ]; then
  libz=$(ldconfig -p | awk '/libz\.so\.1 .*x86-64/ {print $NF; exit}')
  extra+=("-DZLIB_INCLUDE_DIR=$x/usr/include" "-DZLIB_LIBRARY=$libz")
  echo "zlib: Debian headers, image library $libz" >> "$out/summary.txt"
fi
rl_path=""
if [ ! -f /usr/include/png.h ]; then
  extra+=("-DPNG_PNG_INCLUDE_DIR=$x/usr/include" "-DPNG_LIBRARY=$x/usr/lib/x86_64-linux-gnu/libpng16.so")
  rl_path=$x/usr/lib/x86_64-linux-gnu
  echo "libpng: Debian's (staged)" >> "$out/summary.txt"
fi

tests=${GPU_CHECK_TESTS:-1}
torch_cmake=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
( cmake -S experiments/bench/cuda_graph_probe -B build-probe -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_cmake" \
    -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" > /tmp/probe-build.log 2>&1 && nice cmake --build build-probe >> /tmp/probe-build.log 2>&1 ) &
probe_build=$!

step build
t0=$(date +%s)
[ "$tests" = 1 ] || extra+=(-DBUILD_TESTING=OFF)
if bash .device/build.sh "${extra[@]}" > "$out/build.log" 2>&1; then
  echo "built in $(($(date +%s) - t0)) s" | tee -a "$out/summary.txt"
else
  echo "BUILD FAILED after $(($(date +%s) - t0)) s" | tee -a "$out/summary.txt"
  tail -40 .device/cmake.log 2>/dev/null >> "$out/build.log"
  timeout $(($(left) / 2)) cmake --build build-gpu -j"$(nproc)" -k 2>&1 | grep -E -A8 'error|Error' | head -200 >> "$out/build.log"
  grep -E 'error' "$out/build.log" | head -30
fi
# shellcheck disable=SC1091
[ -f .device/env.sh ] && source .device/env.sh
bin=build-gpu/robustlab
run_rl() { LD_LIBRARY_PATH=${rl_path:+$rl_path:}${LD_LIBRARY_PATH:-} timeout "$@"; }

common=(--train-images 60000 --adv-train-images 6000 --attack-images 10000 --precision fp32,bf16 --threads 1 --repeats 3)
if [ -x "$bin" ]; then
  step "robustlab bench --device cuda"
  run_rl $(($(left) < 120 ? $(left) : 120)) "$bin" bench --device cuda --attack-batch 10000 "${common[@]}" -o "$out/bench-cuda.h5" \
    > "$out/bench-cuda.txt" 2>&1 || echo "bench: exit $?" >> "$out/bench-cuda.txt"
fi
step "Python reference, CUDA eager"
timeout $(($(left) < 120 ? $(left) : 120)) env PYTHONUNBUFFERED=1 python3 experiments/bench/reference.py --device cuda "${common[@]}" \
  > "$out/reference-cuda.txt" 2>&1 || echo "reference: exit $?" >> "$out/reference-cuda.txt"
wait $probe_build && echo "probe built" >> "$out/summary.txt" || { echo "probe build failed:" >> "$out/probe.txt"; grep -E -A5 'error' /tmp/probe-build.log | head -60 >> "$out/probe.txt"; }
if [ -x build-probe/cuda_graph_probe ]; then
  step "CUDA-graph probe"
  timeout $(($(left) < 90 ? $(left) : 90)) build-probe/cuda_graph_probe >> "$out/probe.txt" 2>&1 || echo "probe: exit $?" >> "$out/probe.txt"
fi
if [ "$tests" = 1 ] && [ -x build-gpu/tests/robustlab_tests ]; then
  step "fixture-free tests"
  for tags in "[data],[config],[statistics]" "[kernels]"; do
    echo "-- $tags" >> "$out/tests.txt"
    run_rl $(($(left) < 90 ? $(left) : 90)) build-gpu/tests/robustlab_tests "$tags" 2>&1 | tail -15 >> "$out/tests.txt"
  done
fi
res=/tmp/robustlab-gpu-results  # the run's cache and report stay out of $OUT (8 files at most come back)
mkdir -p $res
# Data-parallel on the GPU (framework/distributed): two ranks sharing the one GPU through Gloo (auto's
# choice when a host has fewer GPUs than ranks), then the NCCL process group: robustlab rebuilt with
# -DROBUSTLAB_NCCL=ON against this CUDA LibTorch, a one-rank NCCL job (its group and first sum on the GPU,
# ROBUSTLAB_DIST_FORCE_GROUP=1 connects a world of one) and the refusal of two ranks on one GPU. Into tests.txt;
# GPU_CHECK_DP=0 skips it.
if [ -x "$bin" ] && [ "${GPU_CHECK_DP:-1}" = 1 ] && [ "$(left)" -gt 150 ]; then
  step "data-parallel on CUDA, NCCL build"
  upto() { echo $(($(left) < $1 ? $(left) : $1)); }  # a step's limit: at most $1 s, within the budget
  dp=(train --device cuda --set train.epochs=1 --set train.per_class=100 --set 'train.augment="none"' -q)
  {
    echo "-- 2 ranks on one GPU, auto (Gloo)"
    run_rl "$(upto 60)" "$bin" "${dp[@]}" --nproc 2 -o $res/dp-auto.h5; echo "exit $?"
    # torchrun itself (Debian's, built without libuv, cannot start; PyTorch's wheel has it).
    if command -v torchrun > /dev/null; then
      echo "-- torchrun --nproc_per_node 2 --no_python (the same job)"
      run_rl "$(upto 60)" torchrun --nproc_per_node 2 --no_python "$bin" "${dp[@]}" -o $res/dp-torchrun.h5 > $res/torchrun.log 2>&1
      echo "exit $?"; tail -3 $res/torchrun.log
      python3 tests/same_weights.py $res/dp-auto.h5 $res/dp-torchrun.h5 2>&1 | tail -1 && echo "(compared with --nproc 2's weights)"
    fi
    echo "-- NCCL build (-DROBUSTLAB_NCCL=ON)"
    nccl_inc=$(python3 -c 'import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], "include"))' 2>/dev/null || true)
    if timeout "$(upto 60)" cmake -DROBUSTLAB_NCCL=ON ${nccl_inc:+-DNCCL_INCLUDE_DIR="$nccl_inc"} build-gpu > /tmp/nccl-build.log 2>&1 &&
       timeout "$(upto 120)" cmake --build build-gpu --target robustlab -j"$(nproc)" >> /tmp/nccl-build.log 2>&1; then
      echo "built"
      ROBUSTLAB_DIST_BACKEND=nccl ROBUSTLAB_DIST_FORCE_GROUP=1 run_rl "$(upto 60)" "$bin" "${dp[@]}" -o $res/dp-nccl1.h5; echo "one rank, NCCL: exit $?"
      ROBUSTLAB_DIST_BACKEND=nccl run_rl "$(upto 30)" "$bin" "${dp[@]}" --nproc 2 -o $res/dp-nccl2.h5; echo "two ranks on one GPU, NCCL: exit $? (1 expected: refused)"
    else
      echo "NCCL build failed:"; grep -E -A6 'error|Error' /tmp/nccl-build.log | head -60
    fi
  } >> "$out/tests.txt" 2>&1
fi
if [ -x "$bin" ] && [ "$(left)" -gt 30 ]; then
  step "default experiment on CUDA"
  ( time run_rl $(($(left) - 10)) "$bin" run --device cuda -o $res/default-cuda.h5 ) > "$out/default-cuda.log" 2>&1 \
    || echo "run: exit $? (124: out of time)" >> "$out/default-cuda.log"
fi
if [ -x "$bin" ] && [ -f $res/default-cuda.h5 ] && [ "$(left)" -gt 5 ]; then
  step "report from the results, fresh process"
  run_rl $(($(left) - 2)) "$bin" report $res/default-cuda.h5 -o $res/fresh-report > "$out/report.log" 2>&1 || echo "report: exit $?" >> "$out/report.log"
fi
# The report crashed with SIGSEGV on the first two runs here (2026-12-04; gnuplot is not on the image).
# Does any C++ exception crash there? A missing config file is one error line and exit 1 elsewhere.
if [ -x "$bin" ]; then
  run_rl 20 "$bin" run -c /nonexistent.toml >> "$out/report.log" 2>&1; echo "missing config: exit $? (1 expected)" >> "$out/report.log"
  # The stack of a crashing report, from cuda-gdb (it debugs programs with no GPU code too).
  if grep -q "fatal signal" "$out/report.log" && command -v cuda-gdb > /dev/null && [ "$(left)" -gt 20 ]; then
    LD_LIBRARY_PATH=${rl_path:+$rl_path:}${LD_LIBRARY_PATH:-} timeout $(($(left) - 5)) cuda-gdb -batch -ex run -ex bt -ex 'info sharedlibrary' \
      --args "$bin" report $res/default-cuda.h5 -o $res/gdb-report 2>&1 | grep -v '^\[New Thread\|^\[Thread' | tail -60 >> "$out/report.log"
  fi
fi
echo "== summary"; cat "$out/summary.txt"
echo "== tests"; cat "$out/tests.txt" 2>/dev/null
echo "== default experiment (tail)"; grep -v '^\[\|100%' "$out/default-cuda.log" 2>/dev/null | tail -40
echo "== report, fresh process"; cat "$out/report.log" 2>/dev/null
echo "== CUDA-graph probe"; cat "$out/probe.txt" 2>/dev/null
echo "== robustlab (CUDA)"; cat "$out/bench-cuda.txt" 2>/dev/null
echo "== Python PyTorch (CUDA)"; cat "$out/reference-cuda.txt"
