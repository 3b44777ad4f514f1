#!/usr/bin/env bash
# The Slurm backends against a real one-node Slurm (scripts/slurm-local.sh): the example sweep runs
# with the local backend and as a Slurm job array, and the two collected tables must hold the same
# numbers. Exit 77 (reported as skipped by CTest, never as passed) when Slurm cannot start here.
#   tests/slurm_sweep.sh BINARY SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
bash "$src/scripts/slurm-local.sh" start || exit $?
trap 'bash "$src/scripts/slurm-local.sh" stop' EXIT
work=$(mktemp -d)
cfg=$src/experiments/configs/sweep-example.toml
"$bin" sweep "$cfg" --dir "$work/local" --jobs 2 --threads 1 -q >/dev/null || { echo "local sweep failed"; exit 1; }
"$bin" sweep "$cfg" --dir "$work/slurm" --backend slurm --cpus 1 || { echo "submission failed"; exit 1; }
for _ in $(seq 1 600); do
  status=$("$bin" sweep status "$cfg" --dir "$work/slurm")
  echo "$status" | head -1 | grep -q "4 done" && break
  echo "$status" | head -1 | grep -q "failed" && { echo "$status"; cat "$work"/slurm/logs/slurm-*.log; exit 1; }
  sleep 1
done
echo "$status"
"$bin" sweep collect "$cfg" --dir "$work/slurm" || exit 1
for d in local slurm; do
  h5dump -d /table/values "$work/$d/sweep.h5" | sed 1,5d > "$work/$d.values"
done
if diff "$work/local.values" "$work/slurm.values"; then
  echo "slurm and local tables identical"
else
  echo "slurm and local tables differ"
  exit 1
fi

# One experiment's units as Slurm job arrays (robustlab run --backend slurm): pre-trainings, then
# arms, then the merge job; the results must hold the same numbers as the same run in-process.
"$bin" run "$cfg" -o "$work/run-local/x.h5" -q >/dev/null || { echo "in-process run failed"; exit 1; }
"$bin" run "$cfg" -o "$work/run-slurm/x.h5" --backend slurm --cpus 1 || { echo "run submission failed"; exit 1; }
for _ in $(seq 1 900); do
  [ -f "$work/run-slurm/x.h5" ] && [ -f "$work/run-slurm/x-report/report.html" ] && break
  if ls "$work"/run-slurm/x.units/logs/slurm-*.log >/dev/null 2>&1 && grep -l "error" "$work"/run-slurm/x.units/logs/slurm-*.log; then
    cat "$work"/run-slurm/x.units/logs/slurm-*.log; exit 1
  fi
  sleep 1
done
[ -f "$work/run-slurm/x.h5" ] || { echo "the merge job wrote no results"; cat "$work"/run-slurm/x.units/logs/slurm-*.log; exit 1; }
ls "$work"/run-slurm/x.units/logs/
/usr/bin/python3 "$src/tests/compare_results.py" "$work/run-local/x.h5" "$work/run-slurm/x.h5" || { echo "slurm and in-process runs differ"; exit 1; }
echo "run --backend slurm and in-process results identical"

# One training as a two-task Slurm step (srun -n 2, ranks from SLURM_PROCID and the step's node list):
# the same weights, bit for bit, as two ranks started by --nproc 2.
dp=(train --set train.epochs=2 --set train.per_class=100 --set 'train.augment="none"' --threads 1 -q)
"$bin" "${dp[@]}" --nproc 2 -o "$work/dp-nproc.h5" >/dev/null || { echo "--nproc 2 failed"; exit 1; }
srun -n 2 --cpus-per-task 1 "$bin" "${dp[@]}" -o "$work/dp-srun.h5" >/dev/null || { echo "srun -n 2 failed"; exit 1; }
/usr/bin/python3 "$src/tests/same_weights.py" "$work/dp-nproc.h5" "$work/dp-srun.h5" || { echo "srun -n 2 and --nproc 2 differ"; exit 1; }
echo "srun -n 2 and --nproc 2: the same weights bit for bit"

# An experiment whose pre-training unit runs as a two-task srun step (run --backend slurm
# --ntasks-per-unit 2): the job script asks for the tasks, the unit records its two ranks, the results
# are merged.
"$bin" run "$src/tests/data_parallel_tiny.toml" -o "$work/run-dp/dp.h5" --backend slurm --cpus 1 --ntasks-per-unit 2 -q || { echo "run --ntasks-per-unit 2 submission failed"; exit 1; }
grep -q "^#SBATCH --ntasks=2" "$work/run-dp/dp.units/pretrain.sbatch" && grep -q "exec srun --ntasks=2" "$work/run-dp/dp.units/pretrain.sbatch" ||
  { cat "$work/run-dp/dp.units/pretrain.sbatch"; echo "the pre-training job script does not run two tasks"; exit 1; }
for _ in $(seq 1 600); do
  [ -f "$work/run-dp/dp.h5" ] && break
  if ls "$work"/run-dp/dp.units/logs/slurm-*.log >/dev/null 2>&1 && grep -l "error" "$work"/run-dp/dp.units/logs/slurm-*.log; then
    cat "$work"/run-dp/dp.units/logs/slurm-*.log; exit 1
  fi
  sleep 1
done
[ -f "$work/run-dp/dp.h5" ] || { echo "the merge job wrote no results"; cat "$work"/run-dp/dp.units/logs/slurm-*.log; exit 1; }
ranks=$(h5dump -a /ranks "$work"/run-dp/cache/pretrain-clean-*.h5 | sed -n 's/^ *(0): *//p')
[ "$ranks" = 2 ] || { echo "the pre-training unit records ranks '$ranks', expected 2"; exit 1; }
echo "run --backend slurm --ntasks-per-unit 2: the pre-training ran as 2 ranks, results merged"

# A sweep whose points pre-train as two-task srun steps (sweep --backend slurm --ntasks-per-unit 2):
# each point's job reserves two tasks, its run starts the pre-training unit as a step of both.
sweep_dp=$src/tests/data_parallel_sweep.toml
"$bin" sweep "$sweep_dp" --dir "$work/sweep-dp" --backend slurm --cpus 1 --ntasks-per-unit 2 || { echo "sweep --ntasks-per-unit 2 submission failed"; exit 1; }
grep -q "^#SBATCH --ntasks=2" "$work/sweep-dp/sweep.sbatch" && grep -q "'--ntasks-per-unit' '2'" "$work/sweep-dp/sweep.sbatch" ||
  { cat "$work/sweep-dp/sweep.sbatch"; echo "the sweep's job script does not reserve two tasks per point"; exit 1; }
for _ in $(seq 1 600); do
  status=$("$bin" sweep status "$sweep_dp" --dir "$work/sweep-dp")
  echo "$status" | head -1 | grep -q "2 done" && break
  echo "$status" | head -1 | grep -q "failed" && { echo "$status"; cat "$work"/sweep-dp/logs/slurm-*.log; exit 1; }
  sleep 1
done
echo "$status" | head -1 | grep -q "2 done" || { echo "$status"; cat "$work"/sweep-dp/logs/slurm-*.log; exit 1; }
n=0
for f in $(find "$work/sweep-dp" -name 'pretrain-clean-*.h5' ! -name '*.lock'); do
  ranks=$(h5dump -a /ranks "$f" | sed -n 's/^ *(0): *//p')
  [ "$ranks" = 2 ] || { echo "$f records ranks '$ranks', expected 2"; exit 1; }
  n=$((n + 1))
done
[ "$n" = 2 ] || { echo "expected 2 pre-training units in the sweep, found $n"; exit 1; }
echo "sweep --backend slurm --ntasks-per-unit 2: both points pre-trained as 2 ranks"
