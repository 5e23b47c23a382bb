#!/usr/bin/env bash
# Start a throw-away single-node SLURM cluster (munged + slurmctld + slurmd) on
# this machine, without systemd. Must run as root. Used by tests/test_slurm.py.
#
#   tests/slurm/start_cluster.sh [STATE_DIR]
#
# STATE_DIR (default: a fresh mktemp dir) receives everything: slurm.conf,
# gres.conf, the munge socket, daemon logs, spool/state directories, and
#   STATE_DIR/pids  one "name pid" line per daemon started here
#   STATE_DIR/env   `export SLURM_CONF=...` for clients (sbatch, squeue, ...)
# and links /etc/slurm/slurm.conf -> STATE_DIR/slurm.conf (removed by stop_cluster.sh).
# The last line printed on stdout is STATE_DIR. Stop with stop_cluster.sh STATE_DIR.
#
# Env: PARTITION (default "main", must match slurm_partition in
# profiles/slurm/config.yaml), START_TIMEOUT (seconds to wait for an idle node, default 60),
# MIN_JOB_AGE (seconds finished jobs stay visible to squeue/scontrol, default 300).
set -euo pipefail

PARTITION="${PARTITION:-main}"
START_TIMEOUT="${START_TIMEOUT:-60}"
MIN_JOB_AGE="${MIN_JOB_AGE:-300}"

if [[ $EUID -ne 0 ]]; then
    echo "start_cluster.sh: must run as root" >&2; exit 2
fi
for b in munged slurmctld slurmd sinfo scontrol; do
    command -v "$b" >/dev/null || { echo "start_cluster.sh: $b not installed (apt-get install slurm-wlm munge)" >&2; exit 2; }
done

STATE="${1:-$(mktemp -d /tmp/slurm-test.XXXXXX)}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
# munged runs as the munge user: it must be able to traverse to its socket dir.
chmod 755 "$STATE"
# A drained/down node survives restarts through StateSaveLocation: always start clean.
rm -rf "$STATE/ctld" "$STATE/spool" "$STATE/munge" "$STATE/log"
mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/munge" "$STATE/log"
: > "$STATE/pids"

NODE="$(hostname -s)"
# Jobs are short and mostly Python start-up: offer 2 slots per core (slurmd accepts the
# overstated count thanks to SlurmdParameters=config_overrides). NODE_CPUS overrides.
CPUS="${NODE_CPUS:-$(( 2 * $(nproc) ))}"
MEM_MB=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 8 / 10 ))
# Declare one fake GPU so `--gpus=1` jobs (rule train) can be scheduled; the job
# then simply sees no CUDA device and trains on CPU.
cat > "$STATE/gres.conf" <<CONF
NodeName=$NODE Name=gpu File=/dev/null
CONF
cat > "$STATE/slurm.conf" <<CONF
ClusterName=testcluster
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/slurmd.%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
# squeue-based status checks need finished jobs to stay visible for
# >= 3 x slurm-init-seconds-before-status-checks.
MinJobAge=$MIN_JOB_AGE
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
echo "export SLURM_CONF=$STATE/slurm.conf" > "$STATE/env"
export SLURM_CONF="$STATE/slurm.conf"
# Inside a job, snakemake-executor-plugin-slurm-jobstep drops every SLURM_*
# variable (SLURM_CONF included) before its `srun`, so the config must also be
# reachable at the compiled-in default path. Link it there, but never replace
# a real cluster's configuration.
SYS_CONF=/etc/slurm/slurm.conf
if [[ -e "$SYS_CONF" && ! -L "$SYS_CONF" ]]; then
    echo "start_cluster.sh: $SYS_CONF exists (a real SLURM setup?); refusing to touch it" >&2; exit 2
fi
mkdir -p /etc/slurm
ln -sfn "$STATE/slurm.conf" "$SYS_CONF"
echo "$SYS_CONF" > "$STATE/syslink"

# munge key: reuse the packaged one, create it if missing.
if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown -R munge:munge /etc/munge "$STATE/munge"
chmod 700 /etc/munge
chmod 755 "$STATE/munge"   # munged requires a socket dir others may traverse
chmod 400 /etc/munge/munge.key

start() {  # start NAME CMD... : run in the foreground mode in the background, record PID
    local name=$1; shift
    setsid "$@" >"$STATE/log/$name.out" 2>&1 < /dev/null &
    echo "$name $!" >> "$STATE/pids"
}

t0=$(date +%s.%N)
start munged setpriv --reuid=munge --regid=munge --init-groups \
    munged -F --socket="$STATE/munge/munge.socket" --key-file=/etc/munge/munge.key \
    --log-file="$STATE/munge/munged.log" --pid-file="$STATE/munge/munged.pid" \
    --seed-file="$STATE/munge/munged.seed"
for _ in $(seq 50); do [[ -S "$STATE/munge/munge.socket" ]] && break; sleep 0.1; done
[[ -S "$STATE/munge/munge.socket" ]] || { echo "munged did not start:" >&2; cat "$STATE/log/munged.out" "$STATE/munge/munged.log" >&2 || true; exit 1; }

start slurmctld slurmctld -D -i -f "$SLURM_CONF"
start slurmd slurmd -D -f "$SLURM_CONF"

deadline=$(( $(date +%s) + START_TIMEOUT ))
state=""
while (( $(date +%s) < deadline )); do
    state="$(sinfo -h -n "$NODE" -o '%t' 2>/dev/null | head -1 || true)"
    [[ "$state" == "idle" ]] && break
    # a node coming back "down"/"drain" from an earlier run: resume it
    if [[ "$state" == down* || "$state" == drain* ]]; then
        scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
    fi
    sleep 0.5
done
if [[ "$state" != "idle" ]]; then
    echo "start_cluster.sh: node $NODE not idle after ${START_TIMEOUT}s (state: '${state}')" >&2
    for f in "$STATE"/log/*; do echo "== $f" >&2; tail -20 "$f" >&2; done
    exit 1
fi
t1=$(date +%s.%N)
printf 'SLURM cluster up in %.1fs: node %s idle, partition %s, state dir %s\n' \
    "$(echo "$t1 - $t0" | bc 2>/dev/null || python3 -c "print($t1-$t0)")" "$NODE" "$PARTITION" "$STATE" >&2
echo "$STATE"
