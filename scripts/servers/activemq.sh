#!/usr/bin/env bash
# Private ActiveMQ Classic brokers (Debian package `activemq`) for the test suite.
#
#   activemq.sh ensure                    = start main 61613 61616 (the tests' default broker)
#   activemq.sh start NAME STOMP_PORT OPENWIRE_PORT [KAHADB_DIR] [--no-wait] [--peer=OPENWIRE_PORT ...]
#   activemq.sh xml NAME STOMP_PORT OPENWIRE_PORT [KAHADB_DIR] [--peer=OPENWIRE_PORT ...]
#                                         print the activemq.xml `start` would run the broker with
#   activemq.sh stop NAME                 SIGTERM, up to 20 s, then SIGKILL
#   activemq.sh kill NAME                 SIGKILL at once (failover tests)
#   activemq.sh status NAME               exit 0 = serving STOMP, 1 = process alive but STOMP
#                                         closed (starting, or a standby waiting on the store
#                                         lock), 3 = not running
#
# `start`/`ensure` are idempotent: a broker of ours already serving is left alone, unless it runs
# with another activemq.xml than this script generates now (an older version of it, e.g. before
# priority dispatch): then it is stopped and started again with the current one.
#
# Each broker lives in /var/tmp/statusq-servers/activemq-NAME/ (conf, data, tmp, pid, log);
# the package's own instance (/etc/activemq, /var/lib/activemq) is never touched or started.
#
# Master/slave: give two brokers the same KAHADB_DIR. The second blocks on the store's file
# lock and opens no port, so waiting for its STOMP port would just time out (start fails after
# 60 s saying so). Start it with --no-wait: that returns as soon as the broker is either
# serving or has logged that it is a standby waiting for the lock (~1 s after launch), exit 0;
# a broker without a shared store cannot be a standby, so for it --no-wait changes nothing.
#
# Network of brokers: --peer=PORT (repeatable) makes the broker part of a network with the
# brokers whose OpenWire ports are given (127.0.0.1): it bridges to each of them, and its queue
# policy lets a message go back to the broker it came from when no consumer is left here. The
# <networkConnectors> block and the queue <policyEntry> are read from conf/activemq-network.xml,
# the config we ship, only the peers' addresses replaced: the suite runs what operators get. Give
# each broker of the network the others as peers (`start a 61721 61731 --peer=61732` and
# `start b 61722 61732 --peer=61731`); a broker starts whether or not its peers are up yet.
# When the master dies the standby takes the lock (polled every second, see
# lockAcquireSleepInterval) and opens its ports; `status` tells master (0) from standby (1).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"
NETWORK_CONF=${ACTIVEMQ_NETWORK_CONF:-$(cd "$HERE/../.." && pwd)/conf/activemq-network.xml}

ACTIVEMQ_HOME=/usr/share/activemq
PKG_CONF=/etc/activemq/instances-available/main
START_TIMEOUT=${ACTIVEMQ_START_TIMEOUT:-60}
# Broker limits (see broker_xml); the environment overrides them for a broker started with
# `start` or `ensure` (e.g. the suite's small broker that is filled on purpose).  ActiveMQ lowers the
# store and temp limits to the disk space free at start (it logs so).
ACTIVEMQ_HEAP=${ACTIVEMQ_HEAP:-512M}
ACTIVEMQ_MEMORY_LIMIT=${ACTIVEMQ_MEMORY_LIMIT:-160 mb}
ACTIVEMQ_STORE_LIMIT=${ACTIVEMQ_STORE_LIMIT:-4 gb}
ACTIVEMQ_TEMP_LIMIT=${ACTIVEMQ_TEMP_LIMIT:-1 gb}
ACTIVEMQ_JOURNAL_FILE=${ACTIVEMQ_JOURNAL_FILE:-32mb}
ACTIVEMQ_SEND_FAIL_MS=${ACTIVEMQ_SEND_FAIL_MS:-3000}
# How often KahaDB frees journal files whose messages are all gone (its default): until then a
# drained store still counts as full.
ACTIVEMQ_STORE_CLEANUP_MS=${ACTIVEMQ_STORE_CLEANUP_MS:-30000}
# The address the STOMP and OpenWire connectors listen on.  127.0.0.1 unless set: the network
# namespace tests (tests/netns.py) run this script inside a namespace with ACTIVEMQ_BIND=0.0.0.0,
# so hosts in other namespaces reach the broker while this script's checks still use 127.0.0.1.
ACTIVEMQ_BIND=${ACTIVEMQ_BIND:-127.0.0.1}
[[ $ACTIVEMQ_BIND =~ ^[0-9.]+$ ]] || fail "ACTIVEMQ_BIND must be an IPv4 address, not '$ACTIVEMQ_BIND'"
STOP_TIMEOUT=20

usage() {
    print_header
    exit 2
}

base_of() {
    [[ $1 =~ ^[A-Za-z0-9_.-]+$ ]] || fail "bad broker name '$1'"
    echo "$STATUSQ_SERVERS_DIR/activemq-$1"
}

# What the broker's command line contains: tells our JVM from a recycled pid.
marker() {
    echo "-Dactivemq.base=$1 "
}

install_activemq() {
    # libxstream-java + libjettison-java: only Recommends of the package, but without them the
    # broker cannot hand a MapMessage (e.g. the statistics plugin's reply) to a STOMP client:
    # NoClassDefFoundError com/thoughtworks/xstream/... and the STOMP connection is dropped.
    local pkgs=(activemq libxstream-java libjettison-java)
    # The package depends on "default-jre-headless | java7-runtime-headless"; name the JRE only
    # when there is no java at all, so an already installed JDK is reused.
    command -v java >/dev/null || pkgs+=(default-jre-headless)
    apt_install "${pkgs[@]}"
    [[ -f $ACTIVEMQ_HOME/bin/activemq.jar ]] || fail "activemq installed but $ACTIVEMQ_HOME/bin/activemq.jar missing"
    command -v java >/dev/null || fail "no java after installing a JRE"
}

# network_block FIRST_LINE_RE LAST_LINE_RE: the lines of conf/activemq-network.xml from the
# first matching FIRST_LINE_RE to the next matching LAST_LINE_RE (an element and its children).
network_block() {
    [[ -f $NETWORK_CONF ]] || fail "$NETWORK_CONF missing (the network broker config)"
    local block
    block=$(sed -n "\#$1#,\#$2#p" "$NETWORK_CONF")
    [[ -n $block ]] || fail "no $1 ... $2 in $NETWORK_CONF"
    printf '%s\n' "$block"
}

# broker_xml NAME STOMP_PORT OPENWIRE_PORT KAHADB_DIR [PEERS]: the activemq.xml a broker runs
# with, on stdout; PEERS: the OpenWire ports of the brokers it forms a network with,
# comma-separated (none: a broker of its own, the XML exactly as before networks existed, so
# `ensure` never restarts a running broker over this). A running broker of ours whose
# conf/activemq.xml differs from this (an older version of this script started it) is restarted
# by `start`/`ensure`, so a change here reaches machines where the broker already runs.
broker_xml() {
    local name=$1 stomp=$2 openwire=$3 kahadb=$4 peers=${5:-}
    local store locker="" scheduler_dir=""
    local policy='                    <policyEntry queue=">" prioritizedMessages="true" useCache="false" expireMessagesPeriod="0" lazyDispatch="true"/>'
    local network=""
    if [[ -n $peers ]]; then
        # The shipped network config's queue policy (priorities as above, plus replay to the
        # origin) and connectors, the example peer replaced by ours.
        local uris="" port
        for port in ${peers//,/ }; do uris+="${uris:+,}tcp://127.0.0.1:$port"; done
        policy=$(network_block '^ *<policyEntry queue=">"' '^ *</policyEntry>$')
        network=$'\n\n'$(network_block '^ *<networkConnectors>$' '^ *</networkConnectors>$' \
            | sed -E "s#static:\([^)]*\)#static:($uris)#")
    fi
    if [[ -n $kahadb ]]; then
        store=$kahadb
        # Poll the shared lock every second (default 10 s) so a standby takes over quickly.
        locker='
                <locker><shared-file-locker lockAcquireSleepInterval="1000"/></locker>'
        # Keep scheduled (delayed) messages in the shared store too, so they survive failover.
        scheduler_dir=" schedulerDirectory=\"$kahadb/scheduler\""
    else
        store="\${activemq.base}/data/kahadb"
    fi

    # Generated from the package's activemq.xml; differences: brokerName, schedulerSupport,
    # priority dispatch on every queue (conf/activemq.xml ships the same policy), STOMP
    # connector, statistics plugin, kahaDB location; with peers, conf/activemq-network.xml's
    # network connectors and queue policy. Everything binds $ACTIVEMQ_BIND (127.0.0.1 unless set).
    cat <<EOF
<!-- Generated by scripts/servers/activemq.sh; rewritten on every start. -->
<beans
  xmlns="http://www.springframework.org/schema/beans"
  xmlns:amq="http://activemq.apache.org/schema/core"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">

    <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>

    <broker xmlns="http://activemq.apache.org/schema/core"
            useJmx="false"
            brokerName="$name"
            schedulerSupport="true"$scheduler_dir
            dataDirectory="\${activemq.base}/data">

        <!-- Priority dispatch: statusq items carry a JMS priority (0-9); without this policy
             ActiveMQ dispatches a queue in arrival order whatever the priority.  lazyDispatch:
             a queue pages in only what its consumers have room for, so a full broker's memory
             is not held by paged-in messages (conf/activemq.xml says why). -->
        <destinationPolicy>
            <policyMap>
                <policyEntries>
$policy
                </policyEntries>
            </policyMap>
        </destinationPolicy>$network

        <persistenceAdapter>
            <kahaDB directory="$store" journalMaxFileLength="$ACTIVEMQ_JOURNAL_FILE" cleanupInterval="$ACTIVEMQ_STORE_CLEANUP_MS">$locker
            </kahaDB>
        </persistenceAdapter>

        <!-- Limits that fit the heap (-Xmx$ACTIVEMQ_HEAP) and the disk, so a full broker pushes
             back instead of dying: without them ActiveMQ takes 70% of the heap for messages and
             leaves too little for the rest.  A SEND that finds a limit reached waits at most
             sendFailIfNoSpaceAfterTimeout ms, then fails with an ERROR that statusq reports as
             "broker is full" (below statusq's receipt_timeout, 10 s by default). -->
        <systemUsage>
            <systemUsage sendFailIfNoSpaceAfterTimeout="$ACTIVEMQ_SEND_FAIL_MS">
                <memoryUsage><memoryUsage limit="$ACTIVEMQ_MEMORY_LIMIT"/></memoryUsage>
                <storeUsage><storeUsage limit="$ACTIVEMQ_STORE_LIMIT"/></storeUsage>
                <tempUsage><tempUsage limit="$ACTIVEMQ_TEMP_LIMIT"/></tempUsage>
            </systemUsage>
        </systemUsage>

        <!-- ActiveMQ.Statistics.Broker / ActiveMQ.Statistics.Destination.* queries -->
        <plugins>
            <statisticsBrokerPlugin/>
        </plugins>

        <transportConnectors>
            <transportConnector name="openwire" uri="tcp://$ACTIVEMQ_BIND:$openwire"/>
            <transportConnector name="stomp" uri="stomp://$ACTIVEMQ_BIND:$stomp"/>
        </transportConnectors>

    </broker>

</beans>
EOF
}

# write_conf BASE NAME STOMP_PORT OPENWIRE_PORT KAHADB_DIR PEERS
write_conf() {
    local base=$1 name=$2 stomp=$3 openwire=$4 kahadb=$5 peers=$6
    mkdir -p "$base/conf" "$base/data" "$base/tmp"
    # Start from the package's instance config (it only has OpenWire on 127.0.0.1:61616,
    # useJmx=false and no Jetty/web console) and keep its log4j2 file for reference; the
    # Debian build logs through slf4j -> log4j 1.2, so a log4j.properties is what takes effect.
    if [[ -d $PKG_CONF ]]; then
        cp -f "$PKG_CONF"/* "$base/conf/"
    fi
    # BASE/lib/optional is on the broker's classpath; the Debian package does not link these
    # jars into /usr/share/activemq/lib, so link them here (see install_activemq).
    mkdir -p "$base/lib/optional"
    local jar
    for jar in xstream jettison; do
        if [[ -f /usr/share/java/$jar.jar ]]; then ln -sfn "/usr/share/java/$jar.jar" "$base/lib/optional/$jar.jar"; fi
    done
    cat >"$base/conf/log4j.properties" <<'EOF'
# log4j 1.2 (what the Debian build uses): INFO to stdout, which start redirects to BASE/log.
log4j.rootLogger=INFO, stdout
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.logger.org.apache.activemq.spring=WARN
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d{ISO8601} %-5p %m [%c{1}]%n
EOF

    broker_xml "$name" "$stomp" "$openwire" "$kahadb" "$peers" >"$base/conf/activemq.xml"
    printf 'STOMP_PORT=%s\nOPENWIRE_PORT=%s\nKAHADB_DIR=%q\nPEERS=%q\n' "$stomp" "$openwire" "$kahadb" "$peers" >"$base/instance.env"
}

# True once the broker logged that it waits for another broker's store lock.
is_standby() {
    local base=$1
    [[ -f $base/log ]] && grep -q -E 'is locked by another server|waiting a lock|slave mode' "$base/log"
}

# parse_start_args ARGS...: sets name stomp openwire kahadb peers no_wait (start's and xml's).
parse_start_args() {
    no_wait=0 peers=""
    local args=() a
    for a in "$@"; do
        case $a in
            --no-wait) no_wait=1 ;;
            --peer=*)
                [[ ${a#--peer=} =~ ^[0-9]+$ ]] || fail "--peer takes an OpenWire port: $a"
                peers+="${peers:+,}${a#--peer=}"
                ;;
            -*) fail "unknown option $a" ;;
            *) args+=("$a") ;;
        esac
    done
    ((${#args[@]} >= 3 && ${#args[@]} <= 4)) || usage
    name=${args[0]} stomp=${args[1]} openwire=${args[2]} kahadb=${args[3]:-}
    [[ $stomp =~ ^[0-9]+$ && $openwire =~ ^[0-9]+$ ]] || fail "ports must be numbers"
    # The JVM runs in BASE, so a relative store path would silently mean BASE/path.
    if [[ -n $kahadb ]]; then kahadb=$(realpath -m -- "$kahadb"); fi
    return 0
}

cmd_xml() {
    local name stomp openwire kahadb peers no_wait
    parse_start_args "$@"
    broker_xml "$name" "$stomp" "$openwire" "$kahadb" "$peers"
}

cmd_start() {
    local name stomp openwire kahadb peers no_wait
    parse_start_args "$@"
    local base t0=$EPOCHREALTIME
    base=$(base_of "$name")

    if port_open 127.0.0.1 "$stomp" && pid_alive "$base/pid" "$(marker "$base")" \
        && ! broker_xml "$name" "$stomp" "$openwire" "$kahadb" "$peers" | cmp -s - "$base/conf/activemq.xml"; then
        # Ours, but started with another config (an older version of this script): apply the
        # current one. Idempotent: once restarted with it, the next run finds nothing to do.
        log "activemq $name: running with an older $base/conf/activemq.xml; restarting it with the current one"
        cmd_stop "$name"
    fi

    if port_open 127.0.0.1 "$stomp"; then
        if ! pid_alive "$base/pid" "$(marker "$base")"; then
            log "127.0.0.1:$stomp already answers but broker '$name' is not ours (no live $base/pid); leaving it alone"
        fi
        stomp_check 127.0.0.1 "$stomp" || fail "127.0.0.1:$stomp answers but not as a STOMP broker"
        log "activemq $name: STOMP 127.0.0.1:$stomp already answers"
        return 0
    fi

    if pid_alive "$base/pid" "$(marker "$base")"; then
        # Already launched (starting up, or a standby): do not start a second JVM on the same base.
        log "activemq $name: pid $(<"$base/pid") already running; waiting for it"
    else
        install_activemq
        if port_open 127.0.0.1 "$openwire"; then
            fail "OpenWire port 127.0.0.1:$openwire is taken by another process"
        fi
        if [[ -n $kahadb ]]; then mkdir -p "$kahadb"; fi
        write_conf "$base" "$name" "$stomp" "$openwire" "$kahadb" "$peers"
        : >"$base/log"
        log "activemq $name: starting (STOMP 127.0.0.1:$stomp, OpenWire 127.0.0.1:$openwire${kahadb:+, store $kahadb}${peers:+, network with $peers})"
        # setsid: own session, so a Ctrl-C in the shell that ran `make test` does not kill it.
        # The broker runs as root like the rest of the test tooling; all its files are under base.
        (
            cd "$base"
            exec setsid java -Xms128M -Xmx"$ACTIVEMQ_HEAP" -Djava.awt.headless=true \
                -Djava.net.preferIPv4Stack=true \
                -Dlog4j.configuration="file:$base/conf/log4j.properties" \
                -Dactivemq.home="$ACTIVEMQ_HOME" -Dactivemq.base="$base" \
                -Dactivemq.conf="$base/conf" -Dactivemq.data="$base/data" \
                -Djava.io.tmpdir="$base/tmp" \
                -jar "$ACTIVEMQ_HOME/bin/activemq.jar" start "xbean:file:$base/conf/activemq.xml" \
                </dev/null >>"$base/log" 2>&1
        ) &
        echo $! >"$base/pid"
    fi

    local deadline=$((SECONDS + START_TIMEOUT))
    while ! port_open 127.0.0.1 "$stomp"; do
        if ! pid_alive "$base/pid"; then
            tail -n 20 "$base/log" >&2 || true
            rm -f "$base/pid"
            fail "activemq $name exited during start-up (log: $base/log)"
        fi
        if [[ -n $kahadb ]] && is_standby "$base"; then
            if ((no_wait)); then
                log "activemq $name: standby, waiting for the lock on $kahadb (pid $(<"$base/pid"))"
                return 0
            fi
        fi
        if ((SECONDS >= deadline)); then
            if [[ -n $kahadb ]] && is_standby "$base"; then
                fail "activemq $name: still a standby after ${START_TIMEOUT}s (another broker holds $kahadb); it keeps running as a standby (stop it with: $0 stop $name); use --no-wait to start a standby"
            fi
            tail -n 20 "$base/log" >&2 || true
            fail "activemq $name: STOMP 127.0.0.1:$stomp not answering after ${START_TIMEOUT}s (log: $base/log)"
        fi
        sleep 0.2
    done
    stomp_check 127.0.0.1 "$stomp" || fail "activemq $name: port $stomp open but STOMP CONNECT failed (log: $base/log)"
    log "activemq $name: STOMP 127.0.0.1:$stomp answers (pid $(<"$base/pid"), $(elapsed "$t0")s)"
}

load_instance() {
    local base=$1
    STOMP_PORT="" OPENWIRE_PORT="" KAHADB_DIR="" PEERS=""
    # shellcheck disable=SC1091  # written by write_conf
    if [[ -f $base/instance.env ]]; then source "$base/instance.env"; fi
}

cmd_stop() {
    (($# == 1)) || usage
    local base
    base=$(base_of "$1")
    load_instance "$base"
    if ! pid_alive "$base/pid" "$(marker "$base")"; then
        log "activemq $1: not running"
        rm -f "$base/pid"
        return 0
    fi
    # The JVM's shutdown hook stops the broker cleanly on SIGTERM.
    stop_pid "$base/pid" "$STOP_TIMEOUT" "$(marker "$base")"
    if [[ -n $STOMP_PORT ]] && ! wait_port_closed 127.0.0.1 "$STOMP_PORT" 5; then
        fail "activemq $1: stopped, but 127.0.0.1:$STOMP_PORT still answers"
    fi
    log "activemq $1: stopped"
}

cmd_kill() {
    (($# == 1)) || usage
    local base
    base=$(base_of "$1")
    load_instance "$base"
    if pid_alive "$base/pid" "$(marker "$base")"; then
        local pid
        pid=$(<"$base/pid")
        kill -KILL "$pid" 2>/dev/null || true
        # Not our child (started by an earlier invocation): poll until it is gone, and its
        # port with it (a dying JVM holds its sockets until its last thread has exited).
        while proc_alive "$pid"; do sleep 0.1; done
        if [[ -n $STOMP_PORT ]]; then wait_port_closed 127.0.0.1 "$STOMP_PORT" 10 || true; fi
        log "activemq $1: killed pid $pid"
    else
        log "activemq $1: not running"
    fi
    rm -f "$base/pid"
}

cmd_status() {
    (($# == 1)) || usage
    local base
    base=$(base_of "$1")
    load_instance "$base"
    if ! pid_alive "$base/pid" "$(marker "$base")"; then
        echo "activemq $1: stopped"
        return 3
    fi
    if [[ -n $STOMP_PORT ]] && port_open 127.0.0.1 "$STOMP_PORT"; then
        echo "activemq $1: running pid $(<"$base/pid") STOMP 127.0.0.1:$STOMP_PORT OpenWire 127.0.0.1:$OPENWIRE_PORT${KAHADB_DIR:+ store $KAHADB_DIR}${PEERS:+ network with $PEERS}"
        return 0
    fi
    if is_standby "$base"; then
        echo "activemq $1: standby pid $(<"$base/pid") (waiting for the lock on $KAHADB_DIR)"
    else
        echo "activemq $1: starting pid $(<"$base/pid")"
    fi
    return 1
}

cmd=${1:-}
shift || true
case $cmd in
    ensure) (($# == 0)) || usage; cmd_start main 61613 61616 ;;
    start) cmd_start "$@" ;;
    xml) cmd_xml "$@" ;;
    stop) cmd_stop "$@" ;;
    kill) cmd_kill "$@" ;;
    status) cmd_status "$@" ;;
    *) usage ;;
esac
