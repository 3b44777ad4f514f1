#!/usr/bin/env bash
# How evaluation time grows with the number of test images, the eps-grid size and PGD steps: times
# `robustlab attack` (PGD, early stop off so every example takes every step; sanity checks off) on
# a checkpoint and prints one line per setting.
#   experiments/bench/cost_growth.sh build/robustlab CHECKPOINT.h5
set -euo pipefail
bin=$1
ckpt=$2
out=$(mktemp -d)
run() {  # limit eps steps
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" attack -q --checkpoint "$ckpt" --attack pgd --limit "$1" --eps "$2" --steps "$3" --no-sanity --no-early-stop --threads 1 -o "$out/r.h5" >/dev/null
  t1=$(date +%s.%N)
  printf "%-10s %-28s %6s %10.2f\n" "$1" "$2" "$3" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')"
}
printf "%-10s %-28s %6s %10s\n" "images" "eps grid" "steps" "seconds"
for n in 500 1000 2000 4000; do run "$n" 0.1 20; done
for e in 0.1 0.05,0.1 0.05,0.1,0.15,0.2 0.025,0.05,0.075,0.1,0.125,0.15,0.175,0.2; do run 1000 "$e" 20; done
for s in 10 20 40 80; do run 1000 0.1 "$s"; done
