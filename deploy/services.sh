#!/usr/bin/env bash
# Install, configure and start PostgreSQL and RabbitMQ for aiida-mlqm on a Debian/Ubuntu host (no systemd needed),
# and graphviz for `verdi node graph generate`.
#
# Idempotent: a service that already answers is left running as it is; only RabbitMQ's consumer_timeout is switched
# off at run time (AiiDA needs tasks that last longer than 30 min to stay with their worker), which changes nothing
# else on the broker.
#
#   sudo deploy/services.sh                                   # install if missing, configure, start
#   sudo deploy/services.sh --create-db mlqm --db-user mlqm   # also create an AiiDA database and role
#   deploy/services.sh --check                                # only report, change nothing
#
# Then: mlqm setup --detect   (or --db-*/--broker-* options, see `mlqm setup --help`).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/services.sh [options]

  --no-install         do not apt-get install missing packages; fail instead
  --check              only report whether the services run and consumer_timeout is off; change nothing
  --create-db NAME     create the database NAME (UTF8, C.UTF-8, template0) if it does not exist
  --db-user USER       role that owns the database (default: the database name); created if missing
  --db-password-file F read the role's password from F; without it a random one is written to
                       ~/.mlqm/db-password (mode 600). Never printed.
  -h, --help           this help

Environment: MLQM_PG_PORT (default 5432), MLQM_RABBITMQ_CONFIG_DIR (default /etc/rabbitmq).
EOF
}

INSTALL=1
CHECK_ONLY=0
DB_NAME=''
DB_USER=''
DB_PASSWORD_FILE=''
PG_PORT="${MLQM_PG_PORT:-5432}"
RABBITMQ_CONFIG_DIR="${MLQM_RABBITMQ_CONFIG_DIR:-/etc/rabbitmq}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-install) INSTALL=0 ;;
        --check) CHECK_ONLY=1 ;;
        --create-db) DB_NAME="${2:?--create-db needs a database name}"; shift ;;
        --db-user) DB_USER="${2:?--db-user needs a role name}"; shift ;;
        --db-password-file) DB_PASSWORD_FILE="${2:?--db-password-file needs a path}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "services.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "[services] $*"; }
die() { echo "[services] ERROR: $*" >&2; exit 1; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "$1 needs root: run 'sudo $0 $*' (or as root in a container)"
}

APT_UPDATED=0
apt_install() {
    [[ $INSTALL -eq 1 ]] || die "packages missing: $* (rerun without --no-install, or apt-get install -y $*)"
    need_root "installing $*"
    command -v apt-get >/dev/null || die "apt-get not found: install $* with your distribution's package manager"
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    # policy-rc.d / missing systemd may stop the package from starting the service: this script starts it itself.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds="$1" what="$2"; shift 2
    local i
    for ((i = 0; i < seconds * 2; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "$what did not come up within ${seconds}s"
}

# ---------------------------------------------------------------------------------------------------- PostgreSQL
pg_running() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
    if command -v pg_isready >/dev/null && pg_running; then
        log "PostgreSQL: running on 127.0.0.1:$PG_PORT (left as it is)"
        return
    fi
    [[ $CHECK_ONLY -eq 0 ]] || { log "PostgreSQL: NOT running on 127.0.0.1:$PG_PORT"; CHECK_FAILED=1; return; }
    if ! command -v pg_ctlcluster >/dev/null || [[ -z "$(pg_version)" ]]; then
        apt_install postgresql postgresql-contrib
    fi
    need_root "starting PostgreSQL"
    local version
    version="$(pg_version)"
    [[ -n "$version" ]] || die "no PostgreSQL version under /etc/postgresql after installing"
    if [[ ! -d "/etc/postgresql/$version/main" ]]; then
        log "creating cluster $version/main (locale C.UTF-8)"
        pg_createcluster --locale C.UTF-8 --port "$PG_PORT" "$version" main >/dev/null
    fi
    log "starting PostgreSQL $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for 60 "PostgreSQL on 127.0.0.1:$PG_PORT" pg_running
    log "PostgreSQL: running on 127.0.0.1:$PG_PORT"
}

# SQL as the postgres superuser over the local socket (peer authentication), which works on a fresh Debian install
# where TCP logins need a password.
psql_admin() {
    if [[ $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1; then
        runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qAt "$@"
    else
        psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"
    fi
}

ensure_database() {
    [[ -n "$DB_NAME" ]] || return 0
    [[ "$DB_NAME" =~ ^[a-z_][a-z0-9_]*$ ]] || die "database name '$DB_NAME': use lower-case letters, digits and _"
    DB_USER="${DB_USER:-$DB_NAME}"
    [[ "$DB_USER" =~ ^[a-z_][a-z0-9_]*$ ]] || die "role name '$DB_USER': use lower-case letters, digits and _"
    local password
    if [[ -n "$DB_PASSWORD_FILE" ]]; then
        [[ -r "$DB_PASSWORD_FILE" ]] || die "cannot read the password file $DB_PASSWORD_FILE"
        password="$(head -n 1 "$DB_PASSWORD_FILE")"
    else
        local store="${MLQM_HOME:-$HOME/.mlqm}/db-password"
        if [[ -s "$store" ]]; then
            password="$(head -n 1 "$store")"
        else
            mkdir -p "$(dirname "$store")"
            password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24)"
            (umask 077 && printf '%s\n' "$password" > "$store")
            log "new password for role $DB_USER written to $store (mode 600)"
        fi
    fi
    if [[ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" != 1 ]]; then
        log "creating role $DB_USER"
        # The password goes through a psql variable (:'pw' quotes it), never onto a command line.
        psql_admin -v pw="$password" <<< "CREATE ROLE \"$DB_USER\" LOGIN PASSWORD :'pw';"
    else
        log "role $DB_USER exists (password left unchanged)"
    fi
    if [[ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]]; then
        log "creating database $DB_NAME owned by $DB_USER"
        psql_admin -c "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_USER\" ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0"
    else
        log "database $DB_NAME exists"
    fi
    psql_admin -c "GRANT ALL PRIVILEGES ON DATABASE \"$DB_NAME\" TO \"$DB_USER\"" >/dev/null
    log "use: MLQM_DB_PASSWORD=\"\$(cat ${DB_PASSWORD_FILE:-${MLQM_HOME:-$HOME/.mlqm}/db-password})\" mlqm setup --db-name $DB_NAME --db-user $DB_USER"
}

# ------------------------------------------------------------------------------------------------------ RabbitMQ
rabbit_running() { rabbitmq-diagnostics -q check_running; }

consumer_timeout() { rabbitmqctl eval 'application:get_env(rabbit, consumer_timeout).' 2>/dev/null | tr -d '\r'; }

# get_env answers `undefined` when the key was never set and `{ok,undefined}` after set_env: both mean disabled.
timeout_disabled() { [[ "$1" == undefined || "$1" == '{ok,undefined}' ]]; }

write_advanced_config() {
    local target="$RABBITMQ_CONFIG_DIR/advanced.config"
    if [[ -f "$target" ]] && grep -q 'consumer_timeout' "$target"; then
        if grep -Eq 'consumer_timeout, *undefined' "$target"; then
            log "RabbitMQ: $target already disables consumer_timeout"
        else
            log "WARNING: $target sets consumer_timeout to something else; AiiDA needs {consumer_timeout, undefined}"
        fi
        return
    fi
    if [[ -f "$target" ]] && grep -q '[^[:space:]]' "$target"; then
        # An advanced.config with other settings is one Erlang term: merging it by hand is safer than editing it here.
        log "WARNING: $target has other settings; add {consumer_timeout, undefined} to its rabbit section"
        return
    fi
    need_root "writing $target"
    mkdir -p "$RABBITMQ_CONFIG_DIR"
    install -m 644 "$HERE/rabbitmq/advanced.config" "$target"
    log "RabbitMQ: wrote $target (consumer_timeout disabled from the next start on)"
}

ensure_rabbitmq() {
    if command -v rabbitmq-diagnostics >/dev/null && rabbit_running >/dev/null 2>&1; then
        log "RabbitMQ: running (left as it is)"
    elif [[ $CHECK_ONLY -eq 1 ]]; then
        log "RabbitMQ: NOT running"; CHECK_FAILED=1; return
    else
        command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
        need_root "starting RabbitMQ"
        write_advanced_config
        log "starting RabbitMQ"
        rabbitmq-server -detached
        wait_for 90 "RabbitMQ" rabbit_running
        log "RabbitMQ: running"
    fi
    if [[ $CHECK_ONLY -eq 1 ]]; then
        local value; value="$(consumer_timeout)"
        if timeout_disabled "$value"; then log "RabbitMQ: consumer_timeout disabled"
        else log "RabbitMQ: consumer_timeout is '${value:-unknown}' (run this script as root to disable it)"; CHECK_FAILED=1; fi
        return
    fi
    [[ $(id -u) -eq 0 ]] && write_advanced_config
    # At run time too: the file only counts from the next start, and a broker that already ran keeps its value.
    rabbitmqctl eval 'application:set_env(rabbit, consumer_timeout, undefined).' >/dev/null
    timeout_disabled "$(consumer_timeout)" || die "consumer_timeout is still set: $(consumer_timeout)"
    log "RabbitMQ: consumer_timeout disabled at run time"
}

# ------------------------------------------------------------------------------------------------------ graphviz
# `verdi node graph generate` draws provenance graphs with graphviz's `dot`; without it the command ends in a traceback.
ensure_graphviz() {
    if command -v dot >/dev/null; then
        log "graphviz: $(command -v dot)"
    elif [[ $CHECK_ONLY -eq 1 ]]; then
        log "graphviz: dot NOT found (verdi node graph generate needs it)"; CHECK_FAILED=1
    else
        apt_install graphviz
        command -v dot >/dev/null || die "graphviz installed but dot not on PATH"
        log "graphviz: installed $(command -v dot)"
    fi
}

CHECK_FAILED=0
ensure_postgres
ensure_rabbitmq
ensure_graphviz
if [[ $CHECK_ONLY -eq 1 ]]; then exit "$CHECK_FAILED"; fi
ensure_database
log "done. Next: mlqm setup --detect   (then: verdi daemon start 2; mlqm status)"
