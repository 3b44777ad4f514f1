#!/usr/bin/env bash
# Runs a command inside the Debian trixie root that scripts/check-libtorch2.sh made (LibTorch 2.6,
# Python PyTorch 2.6), with /proc and /dev mounted for the command's lifetime; the working tree as
# check-libtorch2.sh last copied it is /src/robustlab there. For the benchmark's torch.compile peer:
#   python3 experiments/bench/compare.py --peer "compile=bash scripts/in-trixie.sh python3 /src/robustlab/experiments/bench/reference.py --compile"
set -euo pipefail
root=${ROBUSTLAB_TRIXIE_ROOT:-/var/cache/robustlab/trixie-root}
[ -f "$root/.robustlab-ready" ] || { echo "in-trixie: no root at $root (run scripts/check-libtorch2.sh first)" >&2; exit 1; }
mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
for m in proc dev; do
  if ! mountpoint -q "$root/$m"; then
    if [ $m = proc ]; then mount -t proc proc "$root/proc"; else mount --bind /dev "$root/dev"; fi
    mounted+=("$root/$m")
  fi
done
# The variables that choose kernels travel in; nothing else of the host's environment does.
pass=()
for v in OMP_NUM_THREADS ATEN_CPU_CAPABILITY ONEDNN_MAX_CPU_ISA ROBUSTLAB_KERNELS; do [ -n "${!v:-}" ] && pass+=("$v=${!v}"); done
chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "${pass[@]}" "$@"
