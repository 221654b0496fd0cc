#!/usr/bin/env bash
# Make PostgreSQL answer on 127.0.0.1:5432 with a database `test` that the current user
# (root in CI) can use over TCP without a password:
#     psql -h 127.0.0.1 -d test -c 'select 1'
# If the port already answers, only verify that (and repair role/db/pg_hba if it is a local
# Debian cluster). Otherwise install `postgresql`, configure trust for 127.0.0.1, start the
# cluster without systemd, create the role and the database.
#
# STATUSQ_PG_PORT / STATUSQ_PG_CLUSTER override port and cluster name (default 5432, main);
# they exist so the install-and-start path can be exercised beside a running server.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

PORT=${STATUSQ_PG_PORT:-5432}
CLUSTER=${STATUSQ_PG_CLUSTER:-main}
DB="test"
ROLE=$(id -un)
START_TIMEOUT=60

verify() {
    # -w: never prompt for a password (a prompt would hang `make test`).
    [[ $(PGCONNECT_TIMEOUT=5 psql -w -h 127.0.0.1 -p "$PORT" -d "$DB" -Atqc 'select 1' 2>&1) == 1 ]]
}

# The local Debian cluster "VERSION NAME" serving PORT, if any (pg_lsclusters: ver cluster port ...).
cluster_on_port() {
    command -v pg_lsclusters >/dev/null || return 1
    pg_lsclusters -h 2>/dev/null | awk -v p="$PORT" '$3 == p { print $1, $2; found = 1; exit } END { exit !found }'
}

# psql as the postgres superuser over the Unix socket (Debian's pg_hba: local postgres peer).
as_postgres() {
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres -Atc "$1"
}

trust_loopback() {
    local hba=$1 line="host    all             all             127.0.0.1/32            trust"
    if ! grep -qE '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        # First matching line wins in pg_hba.conf, so put ours before any scram/md5 rule.
        log "adding '127.0.0.1/32 trust' to $hba"
        { echo "# statusq test servers: no password over loopback"; echo "$line"; cat "$hba"; } >"$hba.statusq-new"
        chown --reference="$hba" "$hba.statusq-new"
        chmod --reference="$hba" "$hba.statusq-new"
        mv -f "$hba.statusq-new" "$hba"
        return 0
    fi
    return 1
}

create_role_and_db() {
    if [[ -z $(as_postgres "select 1 from pg_roles where rolname = '$ROLE'") ]]; then
        log "creating superuser role $ROLE"
        as_postgres "create role \"$ROLE\" login superuser"
    fi
    if [[ -z $(as_postgres "select 1 from pg_database where datname = '$DB'") ]]; then
        log "creating database $DB"
        as_postgres "create database \"$DB\" owner \"$ROLE\""
    fi
}

t0=$EPOCHREALTIME

if port_open 127.0.0.1 "$PORT"; then
    if verify; then
        log "postgres: 127.0.0.1:$PORT answers, db $DB usable by $ROLE"
        exit 0
    fi
    # Running but not usable as we need: repair only a cluster we can manage locally.
    read -r ver name < <(cluster_on_port) \
        || fail "127.0.0.1:$PORT answers but '$ROLE' cannot use db '$DB' ($(psql -w -h 127.0.0.1 -p "$PORT" -d "$DB" -c 'select 1' 2>&1 | head -1)), and no local Debian cluster uses that port to repair"
    log "postgres: repairing cluster $ver/$name"
    if trust_loopback "/etc/postgresql/$ver/$name/pg_hba.conf"; then
        pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload
    fi
    create_role_and_db
    verify || fail "postgres: still cannot run: psql -h 127.0.0.1 -p $PORT -d $DB -c 'select 1'"
    log "postgres: repaired ($(elapsed "$t0")s)"
    exit 0
fi

# Not running: install (the package creates the default cluster; policy-rc.d keeps it stopped).
if ! command -v pg_ctlcluster >/dev/null || [[ -z $(ls /usr/lib/postgresql 2>/dev/null) ]]; then
    apt_install postgresql
fi

# Which version (the brief's `ls /etc/postgresql`, made robust to several versions): the
# newest that already has our cluster, else the newest installed server.
ver=""
for v in $(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" 2>/dev/null | sort -V); do
    [[ -d /etc/postgresql/$v/$CLUSTER ]] && ver=$v
done
if [[ -z $ver ]]; then
    ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" 2>/dev/null | sort -V | tail -n 1 || true)
fi
[[ -n $ver ]] || fail "no PostgreSQL server version under /usr/lib/postgresql"
if [[ ! -d /etc/postgresql/$ver/$CLUSTER ]]; then
    log "creating cluster $ver/$CLUSTER on port $PORT"
    mkdir -p "$STATUSQ_SERVERS_DIR"
    pg_createcluster "$ver" "$CLUSTER" -p "$PORT" >"$STATUSQ_SERVERS_DIR/pg_createcluster.log" 2>&1 \
        || { cat "$STATUSQ_SERVERS_DIR/pg_createcluster.log" >&2; fail "pg_createcluster $ver $CLUSTER failed"; }
fi
conf=/etc/postgresql/$ver/$CLUSTER

# conf.d is included by Debian's postgresql.conf; later files win, "zz-" keeps ours last.
cat >"$conf/conf.d/zz-statusq.conf" <<CONF
# statusq test servers: loopback only, on the port the tests expect.
listen_addresses = '127.0.0.1'
port = $PORT
CONF
chown postgres:postgres "$conf/conf.d/zz-statusq.conf"
trust_loopback "$conf/pg_hba.conf" || true

log "postgres: starting cluster $ver/$CLUSTER"
# No systemd here: --skip-systemctl-redirect makes pg_ctlcluster start the postmaster itself.
pg_ctlcluster --skip-systemctl-redirect "$ver" "$CLUSTER" start >&2 \
    || fail "pg_ctlcluster start failed (see /var/log/postgresql/postgresql-$ver-$CLUSTER.log)"
wait_port 127.0.0.1 "$PORT" "$START_TIMEOUT" || fail "postgres: 127.0.0.1:$PORT not answering after ${START_TIMEOUT}s"
create_role_and_db
verify || fail "postgres: started, but psql -h 127.0.0.1 -p $PORT -d $DB -c 'select 1' fails"
log "postgres: 127.0.0.1:$PORT answers, db $DB ready ($(elapsed "$t0")s)"
