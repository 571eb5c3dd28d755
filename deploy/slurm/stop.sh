#!/usr/bin/env bash
# Stop the one-node SLURM cluster that deploy/slurm/start.sh started (slurmd, slurmctld; munged only if it started it).
#
#   sudo deploy/slurm/stop.sh           # keeps the state dir (job ids continue on the next start)
#   sudo deploy/slurm/stop.sh --purge   # also removes the state dir and /etc/slurm/slurm.conf written by start.sh
set -euo pipefail

STATE_DIR="${MLQM_SLURM_DIR:-/tmp/mlqm-slurm}"
CONF=/etc/slurm/slurm.conf
MARKER='# written by aiida-mlqm deploy/slurm/start.sh'
PURGE=0
[[ "${1:-}" == --purge ]] && PURGE=1

log() { echo "[slurm] $*"; }

stop_pidfile() {  # stop_pidfile NAME PIDFILE
    local name="$1" pidfile="$2" pid
    if [[ ! -s "$pidfile" ]] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "$name: not running"
        return
    fi
    pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
        kill -9 "$pid" || true
    fi
    log "$name: stopped (pid $pid)"
}

stop_pidfile slurmd "$STATE_DIR/slurmd.pid"
stop_pidfile slurmctld "$STATE_DIR/slurmctld.pid"
stop_pidfile slurmdbd "$STATE_DIR/slurmdbd.pid"
if [[ -f "$STATE_DIR/munged-started" ]]; then
    stop_pidfile munged /run/munge/munged.pid
    rm -f "$STATE_DIR/munged-started"
fi
if [[ $PURGE -eq 1 ]]; then
    rm -rf "$STATE_DIR"
    if [[ -f "$CONF" ]] && grep -qF "$MARKER" "$CONF"; then rm -f "$CONF"; fi
    if [[ -f /etc/slurm/slurmdbd.conf ]] && grep -qF "$MARKER" /etc/slurm/slurmdbd.conf; then
        rm -f /etc/slurm/slurmdbd.conf
    fi
    log "removed $STATE_DIR and the generated $CONF"
fi
