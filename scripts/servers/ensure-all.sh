#!/usr/bin/env bash
# Make every real server the test suite uses answer on 127.0.0.1 (called by `make test`).
#
#   ensure-all.sh [postgres|activemq|rabbitmq|rabbitmq-quorum|prosody ...]     (default: all five)
#
# Prints one line per server:   ok   activemq 127.0.0.1:61613   or   FAIL activemq: reason
# If any failed: exit 1 when CI=true (a CI run must not silently skip tests); otherwise warn
# loudly that the tests needing it will be skipped, and exit 0 so local runs still go ahead.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

ALL=(postgres activemq rabbitmq rabbitmq-quorum prosody)
declare -A ADDR=(
    [postgres]=127.0.0.1:5432
    [activemq]=127.0.0.1:61613
    [rabbitmq]=127.0.0.1:61614
    [rabbitmq-quorum]=127.0.0.1:61671   # and 61672, 61673: the script waits for all three
    [prosody]=127.0.0.1:5222
)

run_one() {
    case $1 in
        postgres) "$HERE/postgres.sh" ;;
        *) "$HERE/$1.sh" ensure ;;
    esac
}

servers=("$@")
((${#servers[@]})) || servers=("${ALL[@]}")
for s in "${servers[@]}"; do
    [[ -n ${ADDR[$s]:-} ]] || fail "unknown server '$s' (known: ${ALL[*]})"
done

LOGDIR=$STATUSQ_SERVERS_DIR/ensure-logs
mkdir -p "$LOGDIR"

# One apt transaction (one `apt-get update` at most) for everything missing, instead of one
# per script; only for servers whose port is not answering already. If it fails, each
# script retries its own install below and reports the failure on its line.
pkgs=()
for s in "${servers[@]}"; do
    port_open "${ADDR[$s]%:*}" "${ADDR[$s]#*:}" && continue
    case $s in
        postgres) command -v pg_ctlcluster >/dev/null || pkgs+=(postgresql) ;;
        activemq) pkgs+=(activemq libxstream-java libjettison-java); command -v java >/dev/null || pkgs+=(default-jre-headless) ;;
        rabbitmq | rabbitmq-quorum) pkgs+=(rabbitmq-server) ;;
        prosody) pkgs+=(prosody) ;;
    esac
done
if ((${#pkgs[@]})); then
    (apt_install "${pkgs[@]}") >"$LOGDIR/apt.log" 2>&1 \
        || log "installing ${pkgs[*]} failed (see $LOGDIR/apt.log); trying server by server"
fi

# The tools the monitoring and web tests drive (snmpd, promtool, gmond, chromium...).
if ! "$HERE/tools.sh" >"$LOGDIR/tools.log" 2>&1 </dev/null; then
    tools_failed=1
    printf 'FAIL tools: %s (log: %s)\n' "$(grep '^error: ' "$LOGDIR/tools.log" | tail -n 1)" "$LOGDIR/tools.log"
else
    tools_failed=0
    printf 'ok   tools\n'
fi

# Start them in parallel (JVM and Erlang boots overlap); each writes its own log.
declare -A PID
for s in "${servers[@]}"; do
    run_one "$s" >"$LOGDIR/$s.log" 2>&1 </dev/null &
    PID[$s]=$!
done

failed=()
for s in "${servers[@]}"; do
    if wait "${PID[$s]}"; then
        printf 'ok   %s %s\n' "$s" "${ADDR[$s]}"
    else
        # The scripts end with "error: <reason>" (lib.sh fail); fall back to the last line.
        reason=$(grep '^error: ' "$LOGDIR/$s.log" | tail -n 1 | sed 's/^error: //')
        [[ -n $reason ]] || reason=$(grep -v '^[[:space:]]*$' "$LOGDIR/$s.log" | tail -n 1)
        printf 'FAIL %s: %s (log: %s)\n' "$s" "${reason:-no output}" "$LOGDIR/$s.log"
        failed+=("$s")
    fi
done

((tools_failed)) && failed+=(tools)
((${#failed[@]} == 0)) && exit 0

if [[ ${CI:-} == [Tt][Rr][Uu][Ee] ]]; then   # same test as tests/servers.py (case-insensitive)
    echo "error: test servers unavailable: ${failed[*]} (CI=true, so this is fatal)" >&2
    exit 1
fi
{
    echo
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!!  WARNING: test servers NOT available: ${failed[*]}"
    echo "!!  The tests that need them will be SKIPPED, not run. Logs: $LOGDIR/"
    echo "!!  (With CI=true this is an error.)"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo
} >&2
exit 0
