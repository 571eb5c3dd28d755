#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (Debian's slurm-wlm + munge) for tests and demos.
#
#   sudo deploy/slurm/start.sh        # installs slurm-wlm and munge if missing, starts munged, slurmctld, slurmd
#   sudo deploy/slurm/stop.sh         # stops what this script started
#
# The configuration goes to /etc/slurm/slurm.conf, where sbatch/squeue (and so AiiDA's core.slurm scheduler) look
# without any SLURM_CONF in the environment of the daemon workers. State, spool, logs and pid files go to the state
# dir ($MLQM_SLURM_DIR, default /tmp/mlqm-slurm). Idempotent: when the node already answers and accounting works,
# nothing is touched.
#
# Accounting is on (slurmdbd + MariaDB, database slurm_acct_db): `sacct` then tells AiiDA how a job ended, so a
# cancelled, timed-out or node-failed job gets its own exit code instead of "results file not retrieved".
set -euo pipefail

STATE_DIR="${MLQM_SLURM_DIR:-/tmp/mlqm-slurm}"
CONF=/etc/slurm/slurm.conf
MARKER='# written by aiida-mlqm deploy/slurm/start.sh'
NODE="$(hostname -s)"
CPUS="$(nproc)"
WAIT_S="${MLQM_SLURM_WAIT:-60}"

log() { echo "[slurm] $*"; }
die() { echo "[slurm] ERROR: $*" >&2; exit 1; }

node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1; }

node_ready() {
    case "$(node_state)" in
        idle|mixed|allocated|completing) return 0 ;;
        *) return 1 ;;
    esac
}

pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

usage_hint() {
    cat <<EOF
[slurm] one-node cluster 'mlqm' ready: node $NODE ($CPUS CPUs), partition debug
[slurm]   sinfo; sbatch --wrap 'hostname'; squeue
[slurm]   AiiDA: mlqm setup --slurm   (computer localhost-slurm: core.slurm scheduler, core.local transport)
[slurm]   logs: $STATE_DIR/*.log; stop: deploy/slurm/stop.sh
EOF
}

accounting_ready() { sacct -n -X -S now-1minutes -o JobID >/dev/null 2>&1 && ! sacct -n 2>&1 | grep -q disabled; }

if command -v sinfo >/dev/null && node_ready && accounting_ready; then
    log "already running: node $NODE is $(node_state), accounting on"
    usage_hint
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "starting SLURM needs root (slurmd runs jobs as their users): sudo $0"

PACKAGES=()
command -v slurmctld >/dev/null && command -v slurmd >/dev/null || PACKAGES+=(slurm-wlm)
command -v munged >/dev/null || PACKAGES+=(munge)
command -v slurmdbd >/dev/null || PACKAGES+=(slurmdbd)
command -v mariadbd >/dev/null || command -v mysqld >/dev/null || PACKAGES+=(mariadb-server)
if [[ ${#PACKAGES[@]} -gt 0 ]]; then
    command -v apt-get >/dev/null || die "${PACKAGES[*]} missing and apt-get is not available"
    log "installing ${PACKAGES[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}" >/dev/null
fi

mkdir -p "$STATE_DIR/state" "$STATE_DIR/spool" /etc/slurm

# ------------------------------------------------------------------------------------------------------- munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged: running"
else
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null; then mungekey --create --keyfile /etc/munge/munge.key
        else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
    munge -n | unmunge >/dev/null || die "munged does not answer: see /var/log/munge/munged.log"
    touch "$STATE_DIR/munged-started"  # so that stop.sh stops munged only when this script started it
fi

# -------------------------------------------------------------------------------------------------- accounting
DBD_CONF=/etc/slurm/slurmdbd.conf
DB_PASSWORD_FILE="$STATE_DIR/slurmdbd-db-password"
mysql_root() { mysql --protocol=socket -uroot "$@"; }
if ! mysql_root -e 'SELECT 1' >/dev/null 2>&1; then
    log "starting MariaDB"
    install -d -o mysql -g mysql /run/mysqld
    (cd / && nohup mysqld_safe >/dev/null 2>&1 &)
    for _ in $(seq 1 120); do mysql_root -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done
    mysql_root -e 'SELECT 1' >/dev/null || die "MariaDB does not answer on its socket (see /var/log/mysql)"
fi
if [[ ! -s "$DB_PASSWORD_FILE" ]]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24 > "$DB_PASSWORD_FILE")
fi
DB_PASSWORD="$(cat "$DB_PASSWORD_FILE")"
mysql_root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
NEW_DBD_CONF="$(cat <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
PidFile=$STATE_DIR/slurmdbd.pid
LogFile=$STATE_DIR/slurmdbd.log
EOF
)"
if [[ ! -f "$DBD_CONF" ]] || [[ "$(cat "$DBD_CONF")" != "$NEW_DBD_CONF" ]]; then
    (umask 077 && printf '%s\n' "$NEW_DBD_CONF" > "$DBD_CONF")
    chmod 600 "$DBD_CONF"
    log "wrote $DBD_CONF (mode 600)"
    if pid_alive "$STATE_DIR/slurmdbd.pid"; then kill "$(cat "$STATE_DIR/slurmdbd.pid")"; sleep 1; fi
fi
if pid_alive "$STATE_DIR/slurmdbd.pid"; then
    log "slurmdbd: running (pid $(cat "$STATE_DIR/slurmdbd.pid"))"
else
    log "starting slurmdbd"
    slurmdbd
fi

# ------------------------------------------------------------------------------------------------------ config
if [[ -f "$CONF" ]] && ! grep -qF "$MARKER" "$CONF"; then
    # A slurm.conf we did not write belongs to a real installation: overwriting it could break a cluster.
    die "$CONF exists and was not written by this script; move it away (or stop here: this host already has SLURM)"
fi
NEW_CONF="$(cat <<EOF
$MARKER
# One-node cluster for aiida-mlqm tests. cgroup plugins are avoided: they need a cgroup tree that containers lack.
ClusterName=mlqm
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 5 min, so tests can check the state of a job AiiDA ran.
MinJobAge=300
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)"
if [[ ! -f "$CONF" ]] || [[ "$(cat "$CONF")" != "$NEW_CONF" ]]; then
    printf '%s\n' "$NEW_CONF" > "$CONF"
    log "wrote $CONF (state in $STATE_DIR)"
    # The accounting plugin is read at start only: restart the daemons (running jobs continue; state is saved).
    for daemon in slurmctld slurmd; do
        if pid_alive "$STATE_DIR/$daemon.pid"; then
            log "restarting $daemon for the new configuration"
            pid="$(cat "$STATE_DIR/$daemon.pid")"
            kill "$pid"
            for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        fi
    done
fi

# sacctmgr reads slurm.conf (AccountingStorageType): register the cluster once the configuration names slurmdbd.
for _ in $(seq 1 60); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -n show cluster >/dev/null 2>&1 || die "slurmdbd does not answer; see $STATE_DIR/slurmdbd.log"
if ! sacctmgr -n -P show cluster format=cluster | grep -qx mlqm; then
    sacctmgr -i add cluster mlqm >/dev/null
    log "registered cluster mlqm with slurmdbd"
fi

# ----------------------------------------------------------------------------------------------------- daemons
if pid_alive "$STATE_DIR/slurmctld.pid"; then
    log "slurmctld: running (pid $(cat "$STATE_DIR/slurmctld.pid"))"
else
    log "starting slurmctld"
    slurmctld
fi
if pid_alive "$STATE_DIR/slurmd.pid"; then
    log "slurmd: running (pid $(cat "$STATE_DIR/slurmd.pid"))"
else
    log "starting slurmd"
    slurmd
fi

resumed=0
for ((i = 0; i < WAIT_S * 2; i++)); do
    node_ready && break
    state="$(node_state)"
    # A node that was down when slurmctld last saw it (stale state from an earlier run) stays down until resumed.
    if [[ $resumed -eq 0 && ( "$state" == down* || "$state" == drain* ) ]]; then
        log "node $NODE is $state: resuming it"
        scontrol update nodename="$NODE" state=resume || true
        resumed=1
    fi
    sleep 0.5
done
node_ready || die "node $NODE is '$(node_state)' after ${WAIT_S}s; see $STATE_DIR/slurmctld.log and slurmd.log"
log "node $NODE is $(node_state)"
for ((i = 0; i < WAIT_S * 2; i++)); do accounting_ready && break; sleep 0.5; done
accounting_ready || die "sacct does not answer; see $STATE_DIR/slurmdbd.log and slurmctld.log"
log "accounting: on (sacct answers)"
usage_hint
