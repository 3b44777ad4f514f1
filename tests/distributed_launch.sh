#!/usr/bin/env bash
# Launchers of data-parallel ranks end to end, on the real binary: --nproc 2 reruns bit for bit; two
# ranks started by hand with torchrun's variables (what torchrun, or any launcher, sets) give the same
# weights; torchrun itself where it runs; mismatched configs and a nested --nproc are refused; a killed
# or hung rank ends the job with one line and no results file.
#   tests/distributed_launch.sh BINARY SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
args=(train --set train.epochs=2 --set train.per_class=100 --set 'train.augment="none"' --threads 1 -q)
# Weights and curves equal bit for bit (the per-epoch timings aside).
same() { /usr/bin/python3 "$src/tests/same_weights.py" "$1" "$2" || fail "$1 and $2 differ"; }
port() { echo $((20000 + RANDOM % 20000)); }
byHand() {  # byHand OUT [extra args of rank 1]: two ranks with torchrun's variables
  local out=$1 p; p=$(port); shift
  RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$p "$bin" "${args[@]}" -o "$out" >/dev/null 2>"$out.err0" &
  local r0=$!
  RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$p "$bin" "${args[@]}" "$@" -o "$out" >/dev/null 2>"$out.err1"
  local s1=$?
  wait $r0
  local s0=$?
  return $((s0 > s1 ? s0 : s1))
}

"$bin" "${args[@]}" --nproc 2 -o "$work/a.h5" >/dev/null || fail "--nproc 2"
"$bin" "${args[@]}" --nproc 2 -o "$work/b.h5" >/dev/null || fail "--nproc 2, again"
same "$work/a.h5" "$work/b.h5"
echo "--nproc 2: a rerun is the same bit for bit"
# Polling a collective or sleeping on it at once is timing only: the same weights.
ROBUSTLAB_DIST_POLL_US=0 "$bin" "${args[@]}" --nproc 2 -o "$work/sleep.h5" >/dev/null || fail "--nproc 2, sleeping on collectives"
same "$work/a.h5" "$work/sleep.h5"
ROBUSTLAB_DIST_POLL_US=soon "$bin" "${args[@]}" --nproc 2 -o "$work/p.h5" >/dev/null 2>"$work/p.err" && fail "ROBUSTLAB_DIST_POLL_US=soon ran"
[ "$(grep -c . "$work/p.err")" = 1 ] && grep -q "ROBUSTLAB_DIST_POLL_US='soon'" "$work/p.err" || { cat "$work/p.err"; fail "a bad poll limit: expected one line naming it"; }
echo "--nproc 2 sleeping on every collective (ROBUSTLAB_DIST_POLL_US=0): the same weights as polling"
byHand "$work/c.h5" || { cat "$work"/c.h5.err*; fail "ranks started with torchrun's variables"; }
same "$work/a.h5" "$work/c.h5"
echo "ranks started with torchrun's variables: the same weights as --nproc 2"
# torchrun itself. A PyTorch built without libuv (Debian 13's) cannot make the TCPStore of torchrun's
# default rendezvous: torchrun then meets through a file (store_type=file), leaves the ranks' store to
# them (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1) and is given the local address (a host name the root
# cannot resolve would otherwise reach MASTER_ADDR). That way must work where the first fails for libuv.
torchrunRan=""
if command -v torchrun >/dev/null; then
  if ROBUSTLAB_DIST_TIMEOUT=60 timeout 300 torchrun --nproc_per_node 2 --no_python "$bin" "${args[@]}" -o "$work/d.h5" >"$work/torchrun.log" 2>&1; then
    torchrunRan="torchrun --nproc_per_node 2"
  elif grep -q "without libuv" "$work/torchrun.log"; then
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 ROBUSTLAB_DIST_TIMEOUT=60 timeout 300 torchrun --nproc_per_node 2 --rdzv-backend c10d \
      --rdzv-endpoint "$work/rdzv" --rdzv-conf store_type=file --local-addr 127.0.0.1 --no_python "$bin" "${args[@]}" -o "$work/d.h5" \
      >"$work/torchrun.log" 2>&1 || { grep -v '^ ' "$work/torchrun.log" | tail -5; fail "torchrun with a file rendezvous (this PyTorch has no libuv)"; }
    torchrunRan="torchrun --nproc_per_node 2 (a file rendezvous: this PyTorch has no libuv)"
  fi
fi
if [ -n "$torchrunRan" ]; then
  same "$work/a.h5" "$work/d.h5"
  echo "$torchrunRan: the same weights as --nproc 2"
else
  # Debian 12's torchrun (PyTorch 1.13 under Python 3.11) fails in its own argument handling before
  # starting anything; scripts/check-libtorch2.sh runs this script with Debian 13's.
  echo "torchrun: not runnable here ($(tail -1 "$work/torchrun.log" 2>/dev/null)), skipped"
fi

# attack --nproc 2: each rank attacks half the examples; FGSM has no random numbers, so the gathered
# verdicts are one process's example for example.
for n in 1 2; do
  "$bin" attack --checkpoint "$work/a.h5" --attack fgsm,pgd --eps 0,0.1 --limit 200 --threads 1 -q --nproc $n -o "$work/att$n.h5" >/dev/null ||
    fail "attack --nproc $n"
done
/usr/bin/python3 - "$work/att1.h5" "$work/att2.h5" <<'PY' || fail "attack --nproc 2 and one process differ"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
for k in ["eval/model/attacks/fgsm/robust", "eval/model/attacks/fgsm/adv_pred", "eval/model/clean_pred", "test_indices"]:
    if not np.array_equal(np.asarray(a[k]), np.asarray(b[k])): sys.exit(f"{k} differs")
for k in ["eval/model/attacks/pgd/robust"]:  # random starts per rank: same shape, close accuracy
    x, y = np.asarray(a[k]), np.asarray(b[k])
    if x.shape != y.shape or abs(x.mean() - y.mean()) > 0.05: sys.exit(f"{k}: {x.mean()} vs {y.mean()}")
PY
echo "attack --nproc 2: FGSM's verdicts equal one process's example for example"

# run --nproc 2: every unit of a small experiment as two ranks; the units record it; a rerun reuses them.
"$bin" run "$src/tests/data_parallel_tiny.toml" -o "$work/run/dp.h5" --nproc 2 -q >/dev/null 2>"$work/run.err" || { cat "$work/run.err"; fail "run --nproc 2"; }
for f in "$work"/run/dp.units/*-seed0-*[0-9a-f].h5; do
  [ "$(h5dump -a /unit/ranks "$f" | sed -n 's/^ *(0): *//p')" = 2 ] || fail "$f does not record 2 ranks"
done
/usr/bin/python3 - "$work"/run/dp.units/*-seed0-*[0-9a-f].h5 <<'PY' || fail "run --nproc 2: an arm's unit lacks its corruptions"
import sys, h5py
arms = [h5py.File(f, "r") for f in sys.argv[1:]]
arms = [f for f in arms if "unit/eval" in f]
assert len(arms) == 2, len(arms)
for f in arms:  # every severity of both corruptions, each a 5 x 100 per-example table
    for c in ("rotate", "fog"):
        assert f["unit/robustness/corruptions/" + c + "/correct"].shape == (5, 100), (f.filename, c)
PY
cp "$work/run/dp.h5" "$work/run-first.h5"
"$bin" run "$src/tests/data_parallel_tiny.toml" -o "$work/run/dp.h5" --nproc 2 >/dev/null 2>"$work/rerun.err" || fail "a rerun of run --nproc 2"
[ "$(grep -c ": cached" "$work/rerun.err")" = 3 ] || { cat "$work/rerun.err"; fail "a rerun of run --nproc 2 recomputed units"; }
/usr/bin/python3 "$src/tests/compare_results.py" "$work/run-first.h5" "$work/run/dp.h5" >/dev/null || fail "a rerun changed the results"
echo "run --nproc 2: units computed as 2 ranks (corruptions shared), a rerun reuses them"

byHand "$work/m.h5" --set train.lr=0.1 && fail "ranks with different configs were not refused"
grep -q "rank 1's config differs from rank 0's" "$work/m.h5.err0" || { cat "$work"/m.h5.err*; fail "the config mismatch was not named"; }
[ -e "$work/m.h5" ] && fail "a refused job wrote results"
echo "ranks with different configs: refused ($(head -1 "$work/m.h5.err0"))"
RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 "$bin" "${args[@]}" --nproc 2 2>"$work/nested.err" && fail "a nested --nproc ran"
grep -q "already rank 0 of 2" "$work/nested.err" || { cat "$work/nested.err"; fail "a nested --nproc was not named"; }

# run --backend local --ntasks-per-unit starts srun steps: refused outside a Slurm allocation, and
# beside --nproc (one line each, nothing written).
env -u SLURM_JOB_ID "$bin" run "$src/tests/data_parallel_tiny.toml" -o "$work/s.h5" --backend local --ntasks-per-unit 2 -q 2>"$work/s.err" &&
  fail "--ntasks-per-unit ran outside an allocation"
grep -q "needs a Slurm allocation" "$work/s.err" && [ "$(grep -c . "$work/s.err")" = 1 ] || { cat "$work/s.err"; fail "--ntasks-per-unit outside an allocation: expected one line"; }
SLURM_JOB_ID=1 "$bin" run "$src/tests/data_parallel_tiny.toml" -o "$work/s.h5" --backend local --ntasks-per-unit 2 --nproc 2 -q 2>"$work/s.err" &&
  fail "--ntasks-per-unit ran beside --nproc"
grep -q "give it or --nproc, not both" "$work/s.err" || { cat "$work/s.err"; fail "--ntasks-per-unit with --nproc: not named"; }
[ -e "$work/s.h5" ] && fail "a refused run wrote results"

# The backend: NCCL where this build or machine cannot have it is one line naming the variable; a
# process alone in a group of one (the backend check) computes one process's weights.
ROBUSTLAB_DIST_BACKEND=nccl "$bin" "${args[@]}" --nproc 2 -o "$work/n.h5" >/dev/null 2>"$work/n.err" && fail "ROBUSTLAB_DIST_BACKEND=nccl ran"
[ "$(grep -c . "$work/n.err")" = 1 ] && grep -q "ROBUSTLAB_DIST_BACKEND='nccl'" "$work/n.err" || { cat "$work/n.err"; fail "nccl: expected one line naming it"; }
[ -e "$work/n.h5" ] && fail "a refused backend wrote results"
echo "ROBUSTLAB_DIST_BACKEND=nccl here: $(cat "$work/n.err")"
"$bin" "${args[@]}" -o "$work/alone.h5" >/dev/null || fail "one process"
ROBUSTLAB_DIST_FORCE_GROUP=1 MASTER_PORT=$(port) "$bin" "${args[@]}" -o "$work/group1.h5" >/dev/null || fail "a group of one"
same "$work/alone.h5" "$work/group1.h5"
echo "a group of one: one process's weights"

# sync_batchnorm from the config: alone it changes nothing (bit for bit); on two ranks it changes what a
# model with BatchNorm computes (the whole batch's statistics).
bn=(--set 'model.layers=[{type = "conv", channels = 16, kernel = 4, stride = 2, padding = 1}, {type = "bn"}, {type = "relu"}, {type = "flatten"}, {type = "fc", units = 32}, {type = "bn"}, {type = "relu"}]')
"$bin" "${args[@]}" "${bn[@]}" -o "$work/bn1.h5" >/dev/null || fail "a BatchNorm model, one process"
"$bin" "${args[@]}" "${bn[@]}" --set train.sync_batchnorm=true -o "$work/bn1s.h5" >/dev/null || fail "sync_batchnorm, one process"
same "$work/bn1.h5" "$work/bn1s.h5"
"$bin" "${args[@]}" "${bn[@]}" --nproc 2 -o "$work/bn2.h5" >/dev/null || fail "a BatchNorm model, two ranks"
"$bin" "${args[@]}" "${bn[@]}" --set train.sync_batchnorm=true --nproc 2 -o "$work/bn2s.h5" >/dev/null || fail "sync_batchnorm, two ranks"
/usr/bin/python3 "$src/tests/same_weights.py" "$work/bn2.h5" "$work/bn2s.h5" >/dev/null 2>&1 && fail "sync_batchnorm changed nothing on two ranks"
echo "sync_batchnorm: one process unchanged bit for bit; two ranks compute otherwise"

# A rank killed mid-training, then a rank that hangs (stopped): the job ends, one line names the rank.
for how in KILL STOP; do
  start=$(date +%s)
  ROBUSTLAB_DIST_TIMEOUT=5 "$bin" train --set train.epochs=200 --set train.per_class=100 --threads 1 -q --nproc 2 -o "$work/k.h5" \
    >/dev/null 2>"$work/k.err" &
  launcher=$!
  rank1=""
  for _ in $(seq 1 200); do  # one listing per look: the second rank may start between two
    kids=$(pgrep -P $launcher | sort -n)
    [ "$(echo "$kids" | grep -c .)" = 2 ] && { rank1=$(echo "$kids" | tail -1); break; }
    sleep 0.05
  done
  [ -n "$rank1" ] || fail "$how: the launcher's two ranks were not found"
  sleep 2  # both ranks past their start, training
  kill -$how "$rank1"
  wait $launcher && fail "the job succeeded with a $how rank"
  seconds=$(( $(date +%s) - start ))
  [ "$(grep -c . "$work/k.err")" = 1 ] || { cat "$work/k.err"; fail "$how: expected one line"; }
  grep -q "rank 1 of 2\|rank 0 of 2" "$work/k.err" || { cat "$work/k.err"; fail "$how: the line names no rank"; }
  [ -e "$work/k.h5" ] && fail "$how: a results file was written"
  [ "$seconds" -lt 60 ] || fail "$how: the job took $seconds s to end"
  echo "$how rank 1: ended in $seconds s with: $(cat "$work/k.err")"
done
echo "launchers: all checks passed"
