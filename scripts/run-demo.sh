#!/usr/bin/env bash
# `make run`: the daemon in the foreground on the shipped config, a demo producer beside it.
# Ctrl-C reaches both (same process group); the trap makes sure the producer never outlives us.
set -euo pipefail
cd "$(dirname "$0")/.."
config=conf/statusq.toml
.venv/bin/python scripts/demo_producer.py --config "$config" &
producer=$!
trap 'kill "$producer" 2>/dev/null || true; wait "$producer" 2>/dev/null || true' EXIT
echo "statusq demo: daemon on $config, producer pid $producer; Ctrl-C stops both" >&2
echo "  watch it: curl -s http://127.0.0.1:9464/metrics | grep statusq_items;" \
    ".venv/bin/statusq --config $config status; scripts/check_statusq" >&2
.venv/bin/statusq --config "$config" daemon "$@"
