#!/usr/bin/env bash
# Shared helpers for scripts/servers/*.sh. Source it; do not run it.
# Each server script makes one real server answer on 127.0.0.1 for the test suite,
# idempotently: a second run finds the port open and does nothing.
set -euo pipefail

# All private server state lives here (not under /var/lib), so the machine's own
# services are never reconfigured and a `rm -rf` resets everything.
STATUSQ_SERVERS_DIR="${STATUSQ_SERVERS_DIR:-/var/tmp/statusq-servers}"

fail() {
    echo "error: $*" >&2
    exit 1
}

log() {
    echo "[$(basename "$0")] $*" >&2
}

# port_open HOST PORT: true if something accepts TCP connections there.
# bash's /dev/tcp needs no extra tools; `timeout` stops a hang on a filtered port.
port_open() {
    local host=$1 port=$2
    timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

# wait_port HOST PORT SECONDS: poll until the port answers; nonzero on timeout.
wait_port() {
    local host=$1 port=$2 seconds=$3
    local deadline=$((SECONDS + seconds))
    while ! port_open "$host" "$port"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

# wait_port_closed HOST PORT SECONDS: the opposite, used after stopping a server.
wait_port_closed() {
    local host=$1 port=$2 seconds=$3
    local deadline=$((SECONDS + seconds))
    while port_open "$host" "$port"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

# proc_alive PID: true if the process exists and is not a zombie (a killed server that is
# not our child may linger as a zombie until init reaps it; kill -0 would still succeed).
# A multi-threaded VM (JVM, beam) whose main thread is already a zombie still holds its
# sockets and locks until its last thread has exited, so that still counts as alive.
proc_alive() {
    local pid=$1 stat tasks
    kill -0 "$pid" 2>/dev/null || return 1
    stat=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $stat != Z && $stat != X ]] && return 0
    tasks=("/proc/$pid/task"/*)
    ((${#tasks[@]} > 1))
}

# pid_alive PIDFILE [CMDLINE_SUBSTRING]: true if the file names a running process (whose
# command line contains the substring, if given: guards against a stale pid file whose
# number the kernel has since given to an unrelated process).
pid_alive() {
    local pidfile=$1 want=${2:-} pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && proc_alive "$pid" || return 1
    [[ -z $want || $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"$want"* ]]
}

# stop_pid PIDFILE SECONDS [CMDLINE_SUBSTRING]: SIGTERM, wait, then SIGKILL. Only ever the
# recorded pid.
stop_pid() {
    local pidfile=$1 seconds=$2 want=${3:-} pid deadline
    pid_alive "$pidfile" "$want" || { rm -f "$pidfile"; return 0; }
    pid=$(<"$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + seconds))
    while proc_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            log "pid $pid ignored SIGTERM for ${seconds}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while proc_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
            break
        fi
        sleep 0.2
    done
    rm -f "$pidfile"
}

_APT_UPDATED=0
_APT_LOG=$STATUSQ_SERVERS_DIR/apt.log   # apt's chatter goes here, shown only on failure

# True if the local package lists know every package named (else apt-get update is needed:
# a fresh image often ships with empty or stale lists).
_apt_known() {
    local pkg
    for pkg in "$@"; do
        # (no `| grep -q` here: with pipefail, grep quitting early makes the pipe "fail")
        [[ $(apt-cache policy "$pkg" 2>/dev/null) =~ Candidate:\ [^\(] ]] || return 1
    done
}

_apt_update_once() {
    if ((_APT_UPDATED == 0)); then
        log "apt-get update"
        _APT_UPDATED=1
        apt-get -o DPkg::Lock::Timeout=300 update -qq >>"$_APT_LOG" 2>&1 \
            || { log "apt-get update failed"; return 1; }
    fi
}

# apt_install PKG...: install what is missing, non-interactively, without letting the
# packages' maintainer scripts start their services (we start private instances ourselves;
# there is no systemd here, and a half-started default service would hold our ports).
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]] \
            || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || fail "need root to install: ${missing[*]}"

    # policy-rc.d exiting 101 = "do not start services". Keep an existing one as is;
    # otherwise install ours for the duration and remove it afterwards.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]] || ! grep -q 'exit 101' "$policy"; then
        if [[ -e $policy ]]; then cp -p "$policy" "$policy.statusq-saved"; fi
        printf '#!/bin/sh\n# statusq: no service starts during apt-get install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added_policy=1
    fi

    mkdir -p "$STATUSQ_SERVERS_DIR"
    local rc=0
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300
               -y -q --no-install-recommends install)
    # Update only if the lists do not know a package (fresh image: lists empty). A failed
    # update is not fatal by itself: the install below reports what is really missing.
    _apt_known "${missing[@]}" || _apt_update_once || true
    log "apt-get install ${missing[*]} (log: $_APT_LOG)"
    "${apt[@]}" "${missing[@]}" >>"$_APT_LOG" 2>&1 || rc=$?
    if ((rc != 0 && _APT_UPDATED == 0)); then
        # Stale lists give 404s for superseded versions: refresh once and retry.
        rc=0
        _apt_update_once || true
        "${apt[@]}" "${missing[@]}" >>"$_APT_LOG" 2>&1 || rc=$?
    fi
    ((rc == 0)) || tail -n 20 "$_APT_LOG" >&2

    if ((added_policy)); then
        if [[ -e $policy.statusq-saved ]]; then mv -f "$policy.statusq-saved" "$policy"
        else rm -f "$policy"; fi
    fi
    ((rc == 0)) || fail "apt-get install ${missing[*]} failed (exit $rc)"
}

# stomp_check HOST PORT [LOGIN PASSCODE VHOST]: send a STOMP 1.2 CONNECT and expect CONNECTED.
# Proves the broker speaks STOMP and accepts the login, not just that the port is open.
stomp_check() {
    local host=$1 port=$2 login=${3:-} pass=${4:-} vhost=${5:-/} reply=""
    (
        { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null \
            || { echo "STOMP: cannot connect to $host:$port" >&2; exit 1; }
        {
            printf 'CONNECT\naccept-version:1.2\nhost:%s\n' "$vhost"
            if [[ -n $login ]]; then printf 'login:%s\npasscode:%s\n' "$login" "$pass"; fi
            printf '\n\0'
        } >&3
        IFS= read -r -t 10 reply <&3 2>/dev/null || true
        reply=${reply%$'\r'}
        if [[ $reply != CONNECTED ]]; then
            echo "STOMP CONNECT to $host:$port answered '${reply:-nothing}'" >&2
            exit 1
        fi
        printf 'DISCONNECT\n\n\0' >&3 2>/dev/null || true
    )
}

# elapsed T0: seconds (one decimal) since T0, a saved $EPOCHREALTIME.
elapsed() {
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

# print_header: the calling script's leading comment block, as its usage text.
print_header() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0" >&2
}

# export_rabbit_env: everything a RabbitMQ node of ours and the CLI tools need to find it, from
# NODE, AMQP_PORT, DIST_PORT and DIR (all state under DIR; /etc/rabbitmq is never read).
# Exported so that rabbitmq-server and rabbitmqctl both see it.
export_rabbit_env() {
    export RABBITMQ_NODENAME=$NODE
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT=$AMQP_PORT
    export RABBITMQ_DIST_PORT=$DIST_PORT
    export RABBITMQ_CONFIG_FILE=$DIR/rabbitmq.conf
    export RABBITMQ_ADVANCED_CONFIG_FILE=$DIR/advanced.config   # absent: never /etc/rabbitmq's
    export RABBITMQ_CONF_ENV_FILE=$DIR/rabbitmq-env.conf       # ours, not /etc/rabbitmq's
    export RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/enabled_plugins
    export RABBITMQ_MNESIA_BASE=$DIR/mnesia
    export RABBITMQ_LOG_BASE=$DIR/log
    export RABBITMQ_PID_FILE=$DIR/pid
    # epmd (if this node has to start it) and Erlang distribution on loopback only.
    export ERL_EPMD_ADDRESS=127.0.0.1
    export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
    # Crash dumps of the VM or the CLI land in the node's directory, not in the caller's cwd.
    export ERL_CRASH_DUMP=$DIR/erl_crash.dump
}
