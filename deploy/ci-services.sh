#!/usr/bin/env bash
# Start every service the test suite needs, for .ci/run (works from a fresh clone, as root, with CI=true):
#   PostgreSQL + RabbitMQ (installed when missing, consumer_timeout disabled)  -> deploy/services.sh
#   the one-node SLURM cluster (slurm-wlm + munge, installed when missing)     -> deploy/slurm/start.sh
# Services that already run are left as they are. Exits non-zero, with the failing step named, when one cannot start:
# in CI a missing service must fail the run, not skip tests.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUDO=''
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO='sudo -n'
    else
        echo "[ci-services] not root and no password-less sudo: services that are not running cannot be started" >&2
    fi
fi

step() {  # step NAME COMMAND...: run a step; on failure say which one and stop
    local name="$1"; shift
    local start=$SECONDS
    if ! "$@"; then
        echo "[ci-services] FAILED: $name ($*)" >&2
        exit 1
    fi
    echo "[ci-services] $name: ok ($((SECONDS - start)) s)"
}

# Called through bash so that a clone without the executable bits (some archive tools drop them) still works.
step 'PostgreSQL + RabbitMQ' $SUDO bash "$HERE/services.sh"
step 'SLURM one-node cluster' $SUDO env MLQM_SLURM_DIR="${MLQM_SLURM_DIR:-/tmp/mlqm-slurm}" bash "$HERE/slurm/start.sh"

# Headless Chromium for the report's browser test (tests/provenance/test_report.py); Debian's package.
install_chromium() {
    if command -v chromium >/dev/null; then return 0; fi
    if [[ $(id -u) -ne 0 && -z "$SUDO" ]]; then echo "[ci-services] chromium missing and cannot install it" >&2; return 1; fi
    $SUDO apt-get install -y -q chromium >/dev/null || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
}
step 'Chromium (headless, report test)' install_chromium
