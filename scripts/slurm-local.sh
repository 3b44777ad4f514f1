#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing robustlab's Slurm backend against the real
# thing: Debian's slurm-wlm and munge, SlurmUser=root, this host as controller and only node.
#   scripts/slurm-local.sh start   # install if needed, configure, start munged, slurmctld, slurmd
#   scripts/slurm-local.sh stop    # cancel jobs, stop the daemons
# `start` exits 77 (the test suite's "skipped") when Slurm cannot be brought up here, saying why.
set -uo pipefail
action=${1:-start}
host=$(hostname -s)
conf=/etc/slurm/slurm.conf

skip() { echo "slurm-local: cannot start Slurm here: $*" >&2; exit 77; }

stop() {
  scancel --user=root >/dev/null 2>&1 || true
  pkill -x slurmd >/dev/null 2>&1 || true
  pkill -x slurmctld >/dev/null 2>&1 || true
  pkill -x munged >/dev/null 2>&1 || true
  sleep 1
}

if [ "$action" = stop ]; then stop; exit 0; fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" -eq 0 ] || skip "slurm-wlm and munge are not installed and we are not root"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 || skip "apt-get install slurm-wlm munge failed"
fi
[ "$(id -u)" -eq 0 ] || skip "the daemons must be started as root"
stop
mem=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
cpus=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge /etc/munge
cat > "$conf" <<CONF
ClusterName=robustlab-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
chmod 0700 /etc/munge
runuser -u munge -- munged >/dev/null 2>&1 || munged --force >/dev/null 2>&1 || skip "munged would not start"
slurmctld >/dev/null 2>&1 || skip "slurmctld would not start (see /var/log/slurm/slurmctld.log)"
slurmd >/dev/null 2>&1 || skip "slurmd would not start (see /var/log/slurm/slurmd.log)"
for _ in $(seq 1 60); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1)
  case "$state" in idle|mixed|allocated) echo "slurm-local: node $host $state"; exit 0 ;; esac
  sleep 0.5
done
skip "the node did not become idle (sinfo says '${state:-nothing}')"
