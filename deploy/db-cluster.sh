# shellcheck shell=bash
# The stack's database as a primary and a streaming standby on loopback, promoted by Patroni
# with etcd as its store (both from Debian). Sourced by deploy/stack.sh, which defines DIR, BASE,
# STACK, PG_BIN, log, die, apt_ensure and find_pg_bin.
#
# Ports: etcd BASE+34 (clients) and BASE+35 (peers); PostgreSQL node N (1, 2) at BASE+35+N,
# its Patroni REST API at BASE+37+N. Data under .spotguard/<stack>/pgha/. One etcd member:
# enough to show promotion here; production runs three (docs/operations/ha.md).

ETCD_PORT=$((BASE + 34))
ETCD_PEER_PORT=$((BASE + 35))

db_node_port() { echo $((BASE + 35 + $1)); }
db_node_api() { echo $((BASE + 37 + $1)); }

# whether this stack's database is the Patroni pair (make up HA=1, or db-cluster)
db_ha() { [ -f "$DIR/db-ha" ]; }

# the libpq URL of the stack's database: both nodes when it is the pair (libpq keeps the one
# that takes writes)
db_url() {
    if db_ha; then
        echo "postgresql://spotguard@127.0.0.1:$(db_node_port 1),127.0.0.1:$(db_node_port 2)/spotguard"
    else
        echo "postgresql://spotguard@127.0.0.1:$PG_PORT/spotguard"
    fi
}

db_cluster_deps() {
    # python3-etcd is one of four alternatives patroni depends on; apt would pick another
    apt_ensure patroni etcd-server python3-etcd python3-dnspython
}

etcd_start() {
    local pidf="$DIR/pgha/etcd.pid"
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then return 0; fi
    mkdir -p "$DIR/pgha/etcd" "$DIR/logs"
    # Our ports lie in the kernel's ephemeral range: a client connection of the moment may hold
    # the one etcd wants (seen once under the fault suite). It is tried again then.
    local attempt i pid
    for attempt in 1 2 3; do
        setsid etcd --name "spotguard-$STACK" --data-dir "$DIR/pgha/etcd" \
            --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
            --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
            --initial-cluster "spotguard-$STACK=http://127.0.0.1:$ETCD_PEER_PORT" \
            --enable-v2=false --log-level warn >>"$DIR/logs/etcd.log" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$pidf"
        for i in $(seq 1 60); do
            curl -fsS "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"true"' && { log "etcd started on 127.0.0.1:$ETCD_PORT"; return 0; }
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -TERM "$pid" 2>/dev/null || true
        log "etcd did not start (attempt $attempt): $(tail -n 1 "$DIR/logs/etcd.log")"
        sleep 1
    done
    rm -f "$pidf"
    die "etcd did not start (see $DIR/logs/etcd.log)"
}

# Patroni's configuration for node N: synchronous replication (a commit returns once the standby
# has it, and only a synchronous standby may be promoted, so a promotion loses no committed
# row); the leader key lives 10 s, checked every second.
db_node_config() {
    local n="$1" node="$DIR/pgha/$1"
    cat >"$node/patroni.yml" <<EOF
scope: spotguard-$STACK
namespace: /spotguard/
name: pg-$n
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:$(db_node_api "$n")
  connect_address: 127.0.0.1:$(db_node_api "$n")
etcd3:
  host: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 200
        shared_buffers: 128MB
        synchronous_commit: 'on'
        wal_log_hints: 'on'
        wal_keep_size: 256MB
        log_min_messages: warning
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - auth: trust
postgresql:
  listen: 127.0.0.1:$(db_node_port "$n")
  connect_address: 127.0.0.1:$(db_node_port "$n")
  data_dir: $node/data
  bin_dir: $PG_BIN
  pgpass: $node/pgpass
  # a new standby's base backup asks for an immediate checkpoint, not one spread over minutes
  basebackup:
    - checkpoint: fast
  authentication:
    superuser: {username: spotguard}
    replication: {username: spotguard}
    rewind: {username: spotguard}
  parameters:
    unix_socket_directories: '$node/run'
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
EOF
}

# the Patroni process of node N (not the runuser that started it)
db_node_pid() { { pgrep -f "python[0-9.]* [^ ]*patroni $DIR/pgha/$1/patroni.yml" || true; } | head -n 1; }

db_node_start() {
    local n="$1" node="$DIR/pgha/$1"
    if [ -n "$(db_node_pid "$n")" ]; then return 0; fi
    mkdir -p "$node/run" "$DIR/logs"
    db_node_config "$n"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$node"; fi
    # a kill -9 leaves a stale lock file that blocks an immediate restart
    rm -f "$node/run/.s.PGSQL.$(db_node_port "$n").lock"
    touch "$DIR/logs/patroni-$n.log"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DIR/logs/patroni-$n.log"; fi
    # Patroni and the server it starts run as the postgres user when we are root. A subshell,
    # not a function with redirections: bash would leave a copy of our stdout open in the
    # background process, and a caller reading it ($(deploy/stack.sh db-cluster)) would wait forever.
    (
        if [ "$(id -u)" -eq 0 ]; then exec setsid runuser -u postgres -- patroni "$node/patroni.yml"; fi
        exec setsid patroni "$node/patroni.yml"
    ) >>"$DIR/logs/patroni-$n.log" 2>&1 </dev/null &
    log "Patroni node $n started (PostgreSQL 127.0.0.1:$(db_node_port "$n"), API 127.0.0.1:$(db_node_api "$n"))"
}

# node N's role as its Patroni API tells it: primary, replica (streaming) or nothing
db_node_role() {
    local api
    api="http://127.0.0.1:$(db_node_api "$1")"
    if curl -fsS -o /dev/null "$api/primary" 2>/dev/null; then echo primary
    elif curl -fsS -o /dev/null "$api/replica" 2>/dev/null; then echo replica; fi
}

# the node (1, 2) leading the pair, waiting up to a minute for one
db_leader() {
    local i n
    for i in $(seq 1 240); do
        for n in 1 2; do [ "$(db_node_role "$n")" = primary ] && { echo "$n"; return 0; }; done
        sleep 0.25
    done
    die "no database node became primary"
}

# waits until node N streams from the primary as its synchronous standby
db_wait_standby() {
    local i
    for i in $(seq 1 480); do
        curl -fsS -o /dev/null "http://127.0.0.1:$(db_node_api "$1")/sync" 2>/dev/null && return 0
        sleep 0.25
    done
    tail -n 20 "$DIR/logs/patroni-$1.log" >&2 || true
    die "database node $1 did not become the synchronous standby"
}

# etcd, then both nodes; returns when there is a primary holding the spotguard database and a
# synchronous standby. Prints the URL.
db_cluster() {
    db_cluster_deps
    find_pg_bin
    touch "$DIR/db-ha"
    etcd_start
    db_node_start 1
    local leader
    leader="$(db_leader)"
    db_node_start 2
    local port
    port="$(db_node_port "$leader")"
    "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U spotguard -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='spotguard'" | grep -q 1 ||
        "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U spotguard -d postgres -qc "CREATE DATABASE spotguard" >/dev/null
    db_wait_standby "$((3 - leader))"
    log "database: node $leader primary, node $((3 - leader)) synchronous standby"
}

# SIGKILL to node N's Patroni and every process of its PostgreSQL at once: the machine is gone
db_node_kill() {
    local n="$1" patroni postmaster
    patroni="$(db_node_pid "$n")"
    postmaster="$(head -n 1 "$DIR/pgha/$n/data/postmaster.pid" 2>/dev/null || true)"
    [ -n "$patroni" ] || die "database node $n is not running"
    # shellcheck disable=SC2046
    kill -KILL "$patroni" ${postmaster:+"$postmaster"} $([ -n "$postmaster" ] && pgrep -P "$postmaster") 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$patroni" 2>/dev/null || { [ -n "$postmaster" ] && kill -0 "$postmaster" 2>/dev/null; } || { log "database node $n killed"; return 0; }
        sleep 0.1
    done
    die "database node $n survived SIGKILL"
}

db_node_stop() {
    local n="$1" pid i
    pid="$(db_node_pid "$n")"
    [ -n "$pid" ] || return 0
    # Patroni stops its server on SIGTERM
    kill -TERM "$pid"
    for i in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || { log "database node $n stopped"; return 0; }; sleep 0.25; done
    log "database node $n did not stop within 30 s of SIGTERM: killing it"
    db_node_kill "$n"
}

# both nodes and etcd stopped; the data stays, so `db-cluster` starts the same pair again
db_cluster_stop() {
    db_node_stop 2
    db_node_stop 1
    local pidf="$DIR/pgha/etcd.pid" pid i
    if [ -f "$pidf" ]; then
        pid="$(cat "$pidf")"
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        rm -f "$pidf"
    fi
}

# back to the single server: the pair stopped and its data removed
db_cluster_remove() {
    db_cluster_stop
    rm -rf "$DIR/pgha" "$DIR/db-ha"
}

# waits until a node other than N is the primary, then starts node N again (it rejoins as the
# standby, rewound if it had diverged)
db_promoted() {
    local i n
    for i in $(seq 1 240); do
        for n in 1 2; do
            [ "$n" != "$1" ] && [ "$(db_node_role "$n")" = primary ] && { log "database node $n promoted"; db_node_start "$1"; return 0; }
        done
        sleep 0.25
    done
    die "no standby was promoted within a minute"
}

