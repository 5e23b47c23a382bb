#!/usr/bin/env bash
# Stop a cluster started by start_cluster.sh: cancel leftover jobs, then stop
# exactly the daemons listed in STATE_DIR/pids (by PID, never by name).
#
#   tests/slurm/stop_cluster.sh STATE_DIR [--rm]
set -uo pipefail
STATE="${1:?usage: stop_cluster.sh STATE_DIR [--rm]}"
[[ -f "$STATE/pids" ]] || { echo "stop_cluster.sh: no $STATE/pids" >&2; exit 0; }
export SLURM_CONF="$STATE/slurm.conf"

# Leftover jobs (e.g. from a timed-out snakemake) would keep processes alive.
if command -v scancel >/dev/null; then
    timeout 10 scancel --full --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 20); do
        [[ -z "$(timeout 5 squeue -h -t R,PD,CG 2>/dev/null)" ]] && break
        sleep 0.5
    done
fi

# Stop in reverse start order: slurmd, slurmctld, munged.
tac "$STATE/pids" | while read -r name pid; do
    [[ -n "${pid:-}" ]] || continue
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "stop_cluster.sh: $name ($pid) ignored SIGTERM, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
done
: > "$STATE/pids"
# Remove the /etc/slurm/slurm.conf link start_cluster.sh made, if it is still ours.
if [[ -f "$STATE/syslink" ]]; then
    link="$(cat "$STATE/syslink")"
    if [[ -L "$link" && "$(readlink "$link")" == "$STATE/slurm.conf" ]]; then
        rm -f "$link"
    fi
fi
if [[ "${2:-}" == "--rm" ]]; then
    rm -rf "$STATE"
fi
exit 0
