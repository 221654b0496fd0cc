#!/usr/bin/env bash
# Creates .venv with statusq and its dev tools, installing Debian's Python first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."

python_ok() {
    command -v python3 >/dev/null &&
        python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

if ! python_ok; then
    echo "bootstrap: installing python3 and python3-venv from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv python3-dev gcc make >/dev/null
    python_ok || { echo "bootstrap: need Python >= 3.11 with venv" >&2; exit 1; }
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
touch .venv/.installed
