#!/usr/bin/env bash
# Private SpotGuard stack: a PostgreSQL cluster and a RabbitMQ node on loopback, with their data
# under .spotguard/<stack>/, plus the SpotGuard services. No system service configuration is touched.
#
#   deploy/stack.sh deps                    install missing Debian packages (apt, root or sudo)
#   deploy/stack.sh package-deps            what `make agent-package` and its test need (apt)
#   deploy/stack.sh infra   [dev|test]      start PostgreSQL + RabbitMQ, write .spotguard/<stack>/env
#   deploy/stack.sh up                      deps, infra dev, build, migrate, start services
#   deploy/stack.sh down    [dev|test]      stop everything the stack started
#   deploy/stack.sh broker-stop|broker-start|broker-restart [dev|test]
#   deploy/stack.sh broker-pause|broker-resume [dev|test]   SIGSTOP/SIGCONT of the broker's VM
#   deploy/stack.sh broker-alarm-on|broker-alarm-off [dev|test]   raise/clear its memory alarm
#   deploy/stack.sh broker-memory [dev|test]   bytes in use, the memory limit, the alarms
#   deploy/stack.sh broker-cluster|broker-cluster-stop [dev|test]   three nodes in one cluster / back to one
#   deploy/stack.sh broker-node-kill|broker-node-stop|broker-node-start STACK N   one node (kill: SIGKILL)
#   deploy/stack.sh broker-leader STACK QUEUE   the node (1-3) leading a quorum queue
#   deploy/stack.sh broker-url STACK [N]   the services' AMQP URL with node N first
#   deploy/stack.sh db-stop|db-crash|db-start [dev|test]   (db-crash: immediate stop, no checkpoint)
#   deploy/stack.sh db-disk-full|db-disk-free [dev|test]   raw price partitions on a full filesystem / back
#   deploy/stack.sh db-cluster|db-cluster-stop|db-cluster-remove [dev|test]   Patroni pair (deploy/db-cluster.sh)
#   deploy/stack.sh db-node-kill|db-node-stop|db-node-start STACK N   one database node (kill: SIGKILL)
#   deploy/stack.sh db-leader|db-role STACK [N]   the node (1, 2) that is primary / node N's role
#   deploy/stack.sh db-promoted STACK N   once the other node is primary, node N started again
#   deploy/stack.sh status  [dev|test]
#   deploy/stack.sh queues  [dev|test]      queue depths on the private broker
#   PURGE_QUEUE=name deploy/stack.sh purge [dev|test|bench]   drop a queue's ready messages
#
# The dev stack uses ports 354xx, the test stack 364xx, the bench stack 334xx, so they can run
# side by side.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CMD="${1:-up}"
STACK="${2:-dev}"

case "$STACK" in
    dev) BASE=35400 ;;
    test) BASE=36400 ;;
    bench) BASE=33400 ;;
    *) echo "stack.sh: unknown stack '$STACK' (dev, test or bench)" >&2; exit 2 ;;
esac

DIR="$ROOT/.spotguard/$STACK"
PG_PORT=$((BASE + 32))
AMQP_PORT=$((BASE + 72))
DIST_PORT=$((BASE + 73))
EPMD_PORT=$((BASE + 69))
INGEST_PORT=$((BASE + 80))
SEF_PORT=$((BASE + 81))
REPLICAS_PORT=$((BASE + 84))  # +82, +83: further SEF copies (bench)
DECISIONS_PORT=$((BASE + 85))
SIM_PORT=$((BASE + 86))
CONSOLE_PORT=$((BASE + 87))
NOTIFIER_PORT=$((BASE + 88))
GATEWAY_PORT=$((BASE + 43))  # https: the one address of ingest and the console (Caddy)
PG_BIN=""
RABBIT_BIN=/usr/lib/rabbitmq/bin

# shellcheck source=deploy/db-cluster.sh
. "$ROOT/deploy/db-cluster.sh"

log() { printf '[stack:%s] %s\n' "$STACK" "$*"; }
die() { printf '[stack:%s] error: %s\n' "$STACK" "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# --- packages -------------------------------------------------------------------------------

# Installs the Debian packages named that are not installed yet.
apt_ensure() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

deps() {
    apt_ensure postgresql rabbitmq-server librabbitmq-dev libpq-dev pkg-config curl python3 docker-compose
    # Debian starts a system RabbitMQ/PostgreSQL where an init system runs; ours are private, so
    # leave those alone and use our own ports.
}

# What building and checking the agent package needs: the C libraries a release build links
# statically (Foundation's networking and XML parts need their -dev symlinks), and the tools the
# package test uses (systemd-analyze, adduser and deb-systemd-helper for the maintainer scripts).
package_deps() {
    apt_ensure libcurl4-openssl-dev libxml2-dev systemd adduser init-system-helpers
}

# Headless Chromium, for the dashboard checks of the tests. Prints its path.
browser_bin() {
    if ! command -v chromium >/dev/null; then
        log "installing chromium" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
    fi
    command -v chromium
}

# tinyproxy, a forward proxy for the test of the agent behind one. Prints its path.
proxy_bin() {
    if ! command -v tinyproxy >/dev/null; then
        log "installing tinyproxy" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tinyproxy-bin >/dev/null
    fi
    command -v tinyproxy
}

# moto_server (moto's EC2 endpoint for the tests): the one on PATH, else one installed from PyPI
# into a project-local virtual environment. Prints its path.
moto_bin() { venv_tool moto_server 'moto[server]'; }

# cfn-lint (checks the agent's CloudFormation template offline), found or installed the same way
cfn_lint_bin() { venv_tool cfn-lint cfn-lint; }

# A Python with the contracts' tools: pika (an AMQP client nobody here wrote, as an integrator
# would use), jsonschema and PyYAML (docs/asyncapi.yaml checks), kubernetes-validate (Kubernetes'
# own schemas, for deploy/kubernetes). Prints its path.
contract_python() {
    local modules='import pika, jsonschema, yaml, kubernetes_validate'
    if python3 -c "$modules" 2>/dev/null; then command -v python3; return; fi
    local venv="$ROOT/.spotguard/venv"
    "$venv/bin/python3" -c "$modules" 2>/dev/null || venv_install pika jsonschema pyyaml kubernetes-validate
    echo "$venv/bin/python3"
}

# venv_tool COMMAND PIP_PACKAGE: the command on PATH, else from the project's virtual environment
# (created, with the package installed from PyPI, when missing). Prints its path.
venv_tool() {
    if command -v "$1" >/dev/null && "$1" --help >/dev/null 2>&1; then command -v "$1"; return; fi
    local venv="$ROOT/.spotguard/venv"
    if [ ! -x "$venv/bin/$1" ]; then
        venv_install "$2"
    fi
    echo "$venv/bin/$1"
}

# venv_install PIP_ARGUMENTS…: pip install into the project's virtual environment, made when missing
venv_install() {
    local venv="$ROOT/.spotguard/venv"
    dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'install ok installed' ||
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "$@" >&2
}

# axe-core (Deque's WCAG rules, MPL-2.0), for the dashboard's accessibility check: the copy that
# PyPI's axe-playwright-python carries, installed without its browser driver. Prints the path of
# axe.min.js.
axe_js() {
    local venv="$ROOT/.spotguard/venv"
    local find='import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("axe_playwright_python").origin), "axe.min.js"))'
    "$venv/bin/python3" -c "$find" >/dev/null 2>&1 || venv_install --no-deps 'axe-playwright-python==0.1.8'
    "$venv/bin/python3" -c "$find"
}

find_pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && PG_BIN="$d"
    done
    [ -n "$PG_BIN" ] || die "PostgreSQL binaries not found (run: deploy/stack.sh deps)"
}

# --- PostgreSQL -----------------------------------------------------------------------------

pg_run() {
    # initdb and postgres refuse to run as root: use the postgres system user then.
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
    find_pg_bin
    local data="$DIR/pg/data" sock="$DIR/pg/run"
    mkdir -p "$DIR/pg" "$DIR/logs"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DIR/pg"; fi
    if [ ! -f "$data/PG_VERSION" ]; then
        log "initdb $data"
        pg_run mkdir -p "$sock"
        pg_run "$PG_BIN/initdb" -D "$data" -U spotguard --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
        cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sock'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
log_min_messages = warning
EOF
    fi
    pg_run mkdir -p "$sock"
    if pg_run "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
    else
        # A kill -9 leaves a stale lock file that blocks an immediate restart.
        rm -f "$data/postmaster.pid" "$sock/.s.PGSQL.$PG_PORT.lock"
        touch "$DIR/logs/postgresql.log"
        if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DIR/logs/postgresql.log"; fi
        pg_run "$PG_BIN/pg_ctl" -D "$data" -l "$DIR/logs/postgresql.log" -w -t 60 start >/dev/null
        log "PostgreSQL started on 127.0.0.1:$PG_PORT"
    fi
    local i
    for i in $(seq 1 60); do
        "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q && break
        sleep 0.5
    done
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U spotguard -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='spotguard'" | grep -q 1 ||
        "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U spotguard -d postgres -qc "CREATE DATABASE spotguard" >/dev/null
}

pg_stop() {
    find_pg_bin
    local data="$DIR/pg/data"
    [ -f "$data/PG_VERSION" ] || return 0
    if pg_run "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        pg_run "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null && log "PostgreSQL stopped"
    fi
}

# As a kill -9 of the server would: no checkpoint, crash recovery at the next start.
pg_crash() {
    find_pg_bin
    local data="$DIR/pg/data"
    pg_run "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null && log "PostgreSQL stopped (immediate)"
}

# The disk-full fault: the raw price trail's day partitions moved onto a small filesystem of
# their own, which is then filled to the last byte. Exit 3 when no filesystem can be mounted
# (not root, or no CAP_SYS_ADMIN), so a caller can tell "not possible here" from a failure.
TIGHT_SPACE=spotguard_tight

pg_sql() {
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U spotguard -d spotguard -v ON_ERROR_STOP=1 -qtAc "$1"
}

raw_partitions_in() {
    pg_sql "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
        WHERE i.inhparent = 'pricing_submissions_raw'::regclass AND coalesce(t.spcname, 'pg_default') = '$1'"
}

db_disk_full() {
    find_pg_bin
    local dir="$DIR/pg/tight" p
    mkdir -p "$dir"
    if ! mountpoint -q "$dir"; then
        # room for the partitions' pages as they are, and 16 MB more to fill
        local megabytes err
        megabytes=$(pg_sql "SELECT coalesce(sum(pg_relation_size(inhrelid)), 0)::bigint / 1048576 + 16 FROM pg_inherits
            WHERE inhparent = 'pricing_submissions_raw'::regclass")
        if ! err=$(mount -t tmpfs -o "size=${megabytes}m,mode=0700" spotguard-tight "$dir" 2>&1); then
            # not allowed here (not root, or a container without CAP_SYS_ADMIN): exit 3; anything else is a failure
            case "$err" in
                *ermission* | *superuser* | *"not permitted"*) echo "cannot mount a filesystem at $dir: $err" >&2; exit 3 ;;
                *) die "mount of $dir failed: $err" ;;
            esac
        fi
    fi
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
    pg_run mkdir -p "$dir/space"
    pg_sql "SELECT 1 FROM pg_tablespace WHERE spcname = '$TIGHT_SPACE'" | grep -q 1 ||
        pg_sql "CREATE TABLESPACE $TIGHT_SPACE LOCATION '$dir/space'"
    for p in $(raw_partitions_in pg_default); do pg_sql "ALTER TABLE $p SET TABLESPACE $TIGHT_SPACE"; done
    # every free block taken: the next page a partition needs fails with "No space left on device"
    pg_run dd if=/dev/zero of="$dir/filler" bs=64k 2>/dev/null || true
    log "raw price partitions on a full filesystem ($(df --output=avail -k "$dir" | tail -1 | tr -d ' ') kB free)"
}

db_disk_free() {
    find_pg_bin
    local dir="$DIR/pg/tight" p
    rm -f "$dir/filler"
    if pg_sql "SELECT 1 FROM pg_tablespace WHERE spcname = '$TIGHT_SPACE'" | grep -q 1; then
        for p in $(raw_partitions_in "$TIGHT_SPACE"); do pg_sql "ALTER TABLE $p SET TABLESPACE pg_default"; done
        pg_sql "DROP TABLESPACE $TIGHT_SPACE"
    fi
    if mountpoint -q "$dir"; then umount "$dir"; fi
    log "raw price partitions back on the data directory's filesystem"
}

# --- RabbitMQ -------------------------------------------------------------------------------

# Node N (default 1) of the stack's broker. Nodes 2 and 3 run only in an HA stack (`make up
# HA=1`, or `broker-cluster` on request): one cluster, one Erlang cookie, one epmd; node N
# listens on AMQP_PORT + 2(N-1) and keeps its data under .spotguard/<stack>/rabbit[-N]/.
rabbit_env() {
    local n="${1:-1}" suffix=""
    [ "$n" = 1 ] || suffix="-$n"
    RDIR="$DIR/rabbit$suffix"
    NODE_AMQP_PORT=$((AMQP_PORT + 2 * (n - 1)))
    export HOME="$DIR/rabbit/home"                # the Erlang cookie lives here, shared by the nodes
    export RABBITMQ_NODENAME="spotguard-$STACK$suffix@localhost"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$NODE_AMQP_PORT"
    export RABBITMQ_DIST_PORT=$((DIST_PORT + 2 * (n - 1)))
    export ERL_EPMD_PORT="$EPMD_PORT"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_MNESIA_BASE="$RDIR/mnesia"
    export RABBITMQ_LOG_BASE="$DIR/logs"
    export RABBITMQ_CONFIG_FILE="$RDIR/rabbitmq"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$RDIR/enabled_plugins"
    export RABBITMQ_PID_FILE="$RDIR/rabbit.pid"
    export RABBITMQ_CONF_ENV_FILE="$RDIR/rabbitmq-env.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$RDIR/advanced.config"
}

rabbit_ctl() { "$RABBIT_BIN/rabbitmqctl" "$@"; }

rabbit_running() {
    rabbit_env "${1:-1}"
    [ -f "$RABBITMQ_PID_FILE" ] && kill -0 "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null
}

# whether this stack runs three broker nodes (make up HA=1, or broker-cluster)
ha() { [ -f "$DIR/ha" ]; }

rabbit_start() {
    local n="${1:-1}"
    rabbit_env "$n"
    mkdir -p "$DIR/rabbit/home" "$RDIR/mnesia" "$DIR/logs"
    cat >"$RDIR/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$NODE_AMQP_PORT
loopback_users = none
default_user = spotguard
default_pass = spotguard
default_vhost = /
disk_free_limit.absolute = 50MB
vm_memory_high_watermark.relative = 0.3
heartbeat = 30
log.console = false
log.file.level = warning
EOF
    echo '[].' >"$RDIR/enabled_plugins"
    : >"$RDIR/rabbitmq-env.conf"
    echo '[].' >"$RDIR/advanced.config"
    if rabbit_running "$n"; then
        log "RabbitMQ node $n already running on 127.0.0.1:$NODE_AMQP_PORT"
        [ "$n" = 1 ] && rabbit_integrator
        return 0
    fi
    rm -f "$RABBITMQ_PID_FILE"
    local console="$DIR/logs/rabbitmq-console$([ "$n" = 1 ] || echo "-$n").log"
    # the node detaches itself; its stdout goes to a log file
    ( setsid "$RABBIT_BIN/rabbitmq-server" >>"$console" 2>&1 & echo $! >"$RDIR/launcher.pid" )
    local i
    for i in $(seq 1 120); do
        if rabbit_ctl -q await_startup --timeout 2 >/dev/null 2>&1; then
            log "RabbitMQ node $n started on 127.0.0.1:$NODE_AMQP_PORT"
            if [ "$n" = 1 ]; then rabbit_integrator; else rabbit_join "$n"; fi
            return 0
        fi
        sleep 0.5
    done
    tail -n 30 "$console" >&2 || true
    die "RabbitMQ node $n did not start (see $DIR/logs)"
}

# node N (2, 3) joins node 1's cluster, once; a restarted member rejoins by itself
rabbit_join() {
    rabbit_env "$1"
    rabbit_ctl -q cluster_status 2>/dev/null | grep -q "spotguard-$STACK@localhost" && return 0
    rabbit_ctl -q stop_app >/dev/null 2>&1
    rabbit_ctl -q reset >/dev/null 2>&1
    rabbit_ctl -q join_cluster "spotguard-$STACK@localhost" >/dev/null 2>&1 || die "node $1 could not join the cluster"
    rabbit_ctl -q start_app >/dev/null 2>&1
    log "RabbitMQ node $1 joined the cluster"
}

# Three nodes, one cluster: nodes 2 and 3 started and joined, and every quorum queue given a
# member on each (queues declared later get all three at once).
rabbit_cluster() {
    touch "$DIR/ha"
    rabbit_start 1
    rabbit_start 2
    rabbit_start 3
    rabbit_env 1
    local n
    for n in 2 3; do
        "$RABBIT_BIN/rabbitmq-queues" -q grow "spotguard-$STACK-$n@localhost" all >/dev/null 2>&1 || true
    done
}

# Back to one node: the others' queue members removed, the nodes reset (they leave) and stopped.
rabbit_cluster_stop() {
    local n
    for n in 3 2; do
        rabbit_running "$n" || continue
        rabbit_env 1
        "$RABBIT_BIN/rabbitmq-queues" -q shrink "spotguard-$STACK-$n@localhost" >/dev/null 2>&1 || true
        rabbit_env "$n"
        rabbit_ctl -q stop_app >/dev/null 2>&1 || true
        rabbit_ctl -q reset >/dev/null 2>&1 || true
        rabbit_stop "$n"
        rabbit_env "$n"
        rm -rf "$RDIR"
    done
    rm -f "$DIR/ha"
}

# SIGKILL to node N's VM; returns once it is gone
rabbit_node_kill() {
    rabbit_running "$1" || die "node $1 is not running"
    local pid i
    pid="$(cat "$RABBITMQ_PID_FILE")"
    kill -KILL "$pid"
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || { log "RabbitMQ node $1 killed (pid $pid)"; return 0; }; sleep 0.1; done
    die "node $1 (pid $pid) survived SIGKILL"
}

# the node (1, 2, 3) that leads QUEUE
rabbit_leader() {
    local leader="" n
    for n in 1 2 3; do
        rabbit_running "$n" || continue
        leader="$(rabbit_ctl -q list_queues name leader --no-table-headers 2>/dev/null | awk -v q="$1" '$1 == q {print $2}')"
        [ -n "$leader" ] && break
    done
    case "$leader" in
        "spotguard-$STACK@localhost") echo 1 ;;
        "spotguard-$STACK-"*) leader="${leader#spotguard-"$STACK"-}"; echo "${leader%@localhost}" ;;
        *) die "no leader known for queue $1" ;;
    esac
}

# the AMQP URL of every node the stack runs, for USER:PASSWORD; node FIRST (default 1) first
amqp_url() {
    local first="${2:-1}" hosts n
    hosts="127.0.0.1:$((AMQP_PORT + 2 * (first - 1)))"
    if ha; then
        for n in 1 2 3; do [ "$n" = "$first" ] || hosts="$hosts,127.0.0.1:$((AMQP_PORT + 2 * (n - 1)))"; done
    fi
    echo "amqp://$1@$hosts/"
}

# the broker user other systems publish and subscribe as (docs/integrating.md), with this
# stack's own password ($DIR/integrator-password; SPOTGUARD_INTEGRATOR_AMQP_URL in the env file)
rabbit_integrator() {
    local pw="$DIR/integrator-password"
    [ -s "$pw" ] || (umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$pw")
    "$ROOT/deploy/rabbitmq-integrator.sh" "$(cat "$pw")" "$RABBIT_BIN/rabbitmqctl" || die "could not set up the integrator broker user"
}

rabbit_stop() {
    local n="${1:-1}"
    rabbit_env "$n"
    [ -d "$RDIR" ] || return 0
    if rabbit_running "$n"; then
        rabbit_ctl -q stop >/dev/null 2>&1 || kill "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null || true
        local i
        for i in $(seq 1 60); do rabbit_running "$n" || break; sleep 0.5; done
        log "RabbitMQ node $n stopped"
    fi
    rm -f "$RABBITMQ_PID_FILE"
    # our private epmd, once the last node is gone
    [ "$n" != 1 ] || pkill -f "epmd.*-port $EPMD_PORT" 2>/dev/null || true
}

# every node of the stack's broker
rabbit_stop_all() {
    local n
    for n in 3 2 1; do rabbit_stop "$n"; done
}

# --- the gateway: TLS on one address -----------------------------------------------------------

# Caddy from Debian, unpacked under .spotguard/ rather than installed (the package would start
# a system-wide Caddy on port 80). Prints its path.
caddy_bin() {
    if command -v caddy >/dev/null; then command -v caddy; return; fi
    local dir="$ROOT/.spotguard/caddy-pkg"
    if [ ! -x "$dir/usr/bin/caddy" ]; then
        mkdir -p "$dir"
        (cd "$dir" && { apt-get download caddy >/dev/null 2>&1 || { as_root apt-get update -qq >/dev/null && apt-get download caddy >/dev/null 2>&1; }; }) ||
            die "could not download Caddy from Debian"
        dpkg-deb -x "$dir"/caddy_*.deb "$dir" && rm -f "$dir"/caddy_*.deb
    fi
    echo "$dir/usr/bin/caddy"
}

# deploy/Caddyfile in front of this stack's ingest copies (SPOTGUARD_GATEWAY_INGEST, default the
# stack's one: `to host:port …`) and console (SPOTGUARD_GATEWAY_CONSOLE), on
# https://127.0.0.1:$GATEWAY_PORT with certificates from its own CA under $DIR/caddy.
gateway_start() {
    local caddy pidf="$DIR/pids/caddy.pid"
    caddy="$(caddy_bin)"
    mkdir -p "$DIR/caddy" "$DIR/logs" "$DIR/pids"
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
        log "gateway already running (pid $(cat "$pidf"))"
        return 0
    fi
    SPOTGUARD_PROXY_SITE="https://127.0.0.1:$GATEWAY_PORT, https://localhost:$GATEWAY_PORT" SPOTGUARD_PROXY_DATA="$DIR/caddy" \
        SPOTGUARD_PROXY_INGEST="${SPOTGUARD_GATEWAY_INGEST:-to 127.0.0.1:$INGEST_PORT}" \
        SPOTGUARD_PROXY_CONSOLE="${SPOTGUARD_GATEWAY_CONSOLE:-127.0.0.1:$CONSOLE_PORT}" \
        XDG_CONFIG_HOME="$DIR/caddy/config" XDG_DATA_HOME="$DIR/caddy/data" \
        setsid "$caddy" run --config "$ROOT/deploy/Caddyfile" --adapter caddyfile >>"$DIR/logs/caddy.log" 2>&1 </dev/null &
    echo $! >"$pidf"
    local i
    for i in $(seq 1 60); do
        [ -s "$DIR/caddy/pki/authorities/local/root.crt" ] &&
            curl -fsS --cacert "$DIR/caddy/pki/authorities/local/root.crt" "https://127.0.0.1:$GATEWAY_PORT/health/live" >/dev/null 2>&1 &&
            { log "gateway https://127.0.0.1:$GATEWAY_PORT (pid $(cat "$pidf"), CA $DIR/caddy/pki/authorities/local/root.crt)"; return 0; }
        sleep 0.5
    done
    tail -n 20 "$DIR/logs/caddy.log" >&2 || true
    die "the gateway did not start"
}

gateway_stop() {
    local pidf="$DIR/pids/caddy.pid"
    [ -f "$pidf" ] || return 0
    kill -TERM "$(cat "$pidf")" 2>/dev/null || true
    rm -f "$pidf"
}

# --- env file -------------------------------------------------------------------------------

write_env() {
    find_pg_bin
    mkdir -p "$DIR"
    local token_file="$DIR/admin-token"
    [ -s "$token_file" ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token_file")
    cat >"$DIR/env" <<EOF
# SpotGuard $STACK stack: source this file from a shell.
export SPOTGUARD_DATABASE_URL='$(db_url)'
export SPOTGUARD_AMQP_URL='$(amqp_url spotguard:spotguard)'
export SPOTGUARD_INTEGRATOR_AMQP_URL='$(amqp_url "integrator:$(cat "$DIR/integrator-password" 2>/dev/null)")'
export SPOTGUARD_ADMIN_TOKEN='$(cat "$token_file")'
export SPOTGUARD_INGEST_PORT='$INGEST_PORT'
export SPOTGUARD_INGEST_URL='http://127.0.0.1:$INGEST_PORT'
export SPOTGUARD_SEF_PORT='$SEF_PORT'
export SPOTGUARD_SEF_URL='http://127.0.0.1:$SEF_PORT'
export SPOTGUARD_REPLICAS_PORT='$REPLICAS_PORT'
export SPOTGUARD_REPLICAS_URL='http://127.0.0.1:$REPLICAS_PORT'
export SPOTGUARD_DECISIONS_PORT='$DECISIONS_PORT'
export SPOTGUARD_DECISIONS_URL='http://127.0.0.1:$DECISIONS_PORT'
export SPOTGUARD_SIM_URL='http://127.0.0.1:$SIM_PORT'
export SPOTGUARD_CONSOLE_PORT='$CONSOLE_PORT'
export SPOTGUARD_CONSOLE_URL='http://127.0.0.1:$CONSOLE_PORT'
export SPOTGUARD_NOTIFIER_PORT='$NOTIFIER_PORT'
export SPOTGUARD_NOTIFIER_URL='http://127.0.0.1:$NOTIFIER_PORT'
export SPOTGUARD_STACK_DIR='$DIR'
export SPOTGUARD_GATEWAY_URL='https://127.0.0.1:$GATEWAY_PORT'
export SPOTGUARD_CA_BUNDLE='$DIR/caddy/pki/authorities/local/root.crt'
export SPOTGUARD_PG_BIN='$PG_BIN'
EOF
    # instance identity: the simulated instances' metadata services sign their identity
    # documents with this stack's own key, standing in for AWS's regional certificate, which
    # ingest trusts for enrollment (production: AWS's published certificates, docs/agent.md)
    identity_authority
    cat >>"$DIR/env" <<EOF
export SPOTGUARD_INGEST_IDENTITY_CERTIFICATES='$DIR/identity/cert.pem'
export SPOTGUARD_SIM_IDENTITY_KEY='$DIR/identity/key.pem'
export SPOTGUARD_SIM_IDENTITY_CERTIFICATE='$DIR/identity/cert.pem'
EOF
    # the Spot Advisor's interruption bands, where this machine has them (the decision engine's risk prior)
    local advisor
    advisor="$(cd "$ROOT/.." && pwd)/shared/data/spot-advisor-data_2025-06.json"
    [ -f "$advisor" ] && echo "export SPOTGUARD_DECISIONS_ADVISOR_FILE='$advisor'" >>"$DIR/env"
    # the admin token and connection settings are for this user only
    chmod 600 "$token_file" "$DIR/env"
    [ "$STACK" = dev ] && install -m 600 "$DIR/env" "$ROOT/.spotguard/env"
    return 0
}

# An RSA-2048 key and self-signed certificate under the stack directory, made once.
identity_authority() {
    [ -s "$DIR/identity/cert.pem" ] && return 0
    command -v openssl >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
    mkdir -p "$DIR/identity"
    (umask 077; openssl req -x509 -newkey rsa:2048 -nodes -keyout "$DIR/identity/key.pem" -out "$DIR/identity/cert.pem" -days 3650 \
        -subj "/CN=SpotGuard $STACK stack instance identity" >/dev/null 2>&1) || die "openssl could not make the identity key"
}

# The stack's ports lie in the kernel's ephemeral range (32768-60999): a client connection of
# the moment can hold one a server is about to listen on (seen under the tests: a broker node and
# etcd failing to bind). Where we may (root, /proc/sys writable), the stack's block of 100 is
# reserved so the kernel never hands those ports to client connections.
reserve_ports() {
    local f=/proc/sys/net/ipv4/ip_local_reserved_ports range="$BASE-$((BASE + 99))" current
    [ -w "$f" ] || return 0
    current="$(cat "$f")"
    case ",$current," in *",$range,"*) return 0 ;; esac
    if echo "${current:+$current,}$range" >"$f" 2>/dev/null; then log "ports $range reserved (not given to client connections)"; fi
    return 0
}

infra() {
    reserve_ports
    if [ "${SPOTGUARD_HA:-}" = 1 ] || db_ha; then db_cluster; else
        pg_start
        # a fault run stopped between db-disk-full and db-disk-free left the raw partitions there
        if pg_sql "SELECT 1 FROM pg_tablespace WHERE spcname = '$TIGHT_SPACE'" | grep -q 1; then db_disk_free; fi
    fi
    if [ "${SPOTGUARD_HA:-}" = 1 ] || ha; then rabbit_cluster; else rabbit_start; fi
    write_env
}

# --- services -------------------------------------------------------------------------------

SERVICES=(spotguard-ingest spotguard-sef spotguard-replicas spotguard-decisions spotguard-notifier spotguard-console)

bin_dir() { (cd "$ROOT" && swift build -c "${SPOTGUARD_BUILD_CONFIG:-debug}" --show-bin-path); }

build() {
    log "swift build (first build takes a few minutes)"
    (cd "$ROOT" && swift build -c "${SPOTGUARD_BUILD_CONFIG:-debug}")
}

services_start() {
    # shellcheck disable=SC1091
    . "$DIR/env"
    local bins svc
    bins="$(bin_dir)"
    "$bins/spotguard-ingest" migrate
    mkdir -p "$DIR/logs" "$DIR/pids"
    for svc in "${SERVICES[@]}"; do
        local pidf="$DIR/pids/$svc.pid"
        if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
            log "$svc already running (pid $(cat "$pidf"))"
            continue
        fi
        # the gateway connects from loopback: believe its X-Forwarded-For, so failed-login limits
        # count the real client's address
        SPOTGUARD_TRUSTED_PROXIES="${SPOTGUARD_TRUSTED_PROXIES:-127.0.0.1}" \
            setsid "$bins/$svc" serve >>"$DIR/logs/$svc.log" 2>&1 </dev/null &
        echo $! >"$pidf"
        log "$svc started (pid $!, log $DIR/logs/$svc.log)"
    done
    wait_ready spotguard-ingest "$SPOTGUARD_INGEST_URL"
    wait_ready spotguard-sef "$SPOTGUARD_SEF_URL"
    wait_ready spotguard-replicas "$SPOTGUARD_REPLICAS_URL"
    wait_ready spotguard-decisions "$SPOTGUARD_DECISIONS_URL"
    wait_ready spotguard-notifier "$SPOTGUARD_NOTIFIER_URL"
    wait_ready spotguard-console "$SPOTGUARD_CONSOLE_URL"
}

wait_ready() {
    local i
    for i in $(seq 1 60); do
        curl -fsS "$2/health/ready" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    tail -n 20 "$DIR/logs/$1.log" >&2 || true
    die "$1 did not become ready"
}

# The simulator: a local cloud with a default fleet (20 workloads on two instance types, half
# with manual replicas, half auto-switching), each instance a real spotguard-agent process.
sim_start() {
    # shellcheck disable=SC1091
    . "$DIR/env"
    local bins pidf="$DIR/pids/spotguard-sim.pid"
    bins="$(bin_dir)"
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
        log "spotguard-sim already running (pid $(cat "$pidf"))"
        return 0
    fi
    rm -f "$DIR/sim/address"
    # the demo starts with a week behind it (SPOTGUARD_SIM_HISTORY_DAYS=0: none)
    local history=0 simlog="$DIR/logs/spotguard-sim.log"
    [ "$STACK" = dev ] && history="${SPOTGUARD_SIM_HISTORY_DAYS:-7}"
    local from
    from=$(($(wc -l <"$simlog" 2>/dev/null || echo 0) + 1))
    setsid "$bins/spotguard-sim" run --port "$SIM_PORT" --dir "$DIR/sim" --history-days "$history" ${SPOTGUARD_SIM_ARGS:-} >>"$simlog" 2>&1 </dev/null &
    echo $! >"$pidf"
    local what="booting the fleet"
    [ "$history" = 0 ] || what="sending $history days of history, then booting the fleet"
    log "spotguard-sim started (pid $!, log $simlog); $what"
    local i shown=0 lines
    for i in $(seq 1 600); do
        # the run's own lines: history progress as it comes, then the fleet
        lines=$(tail -n +"$from" "$simlog" 2>/dev/null | grep -E '^spotguard-sim: (sending|history|fleet of)' || true)
        if [ -n "$lines" ] && [ "$(printf '%s\n' "$lines" | wc -l)" -gt "$shown" ]; then
            printf '%s\n' "$lines" | tail -n +"$((shown + 1))" | sed 's/^spotguard-sim: //' | while read -r line; do log "$line"; done
            shown=$(printf '%s\n' "$lines" | wc -l)
        fi
        if printf '%s' "$lines" | grep -q "fleet of"; then
            if [ "$history" != 0 ]; then
                history_savings "$(printf '%s' "$lines" | sed -nE 's/.*history of ([0-9]+) switches sent.*/\1/p')"
                # the demo's first failover comes within a minute or two, not whenever the market's draws bring one
                (first_failover </dev/null >>"$simlog" 2>&1 &)
                log "a termination notice goes to sim-02-m5.large once its replica is ready (its failover in $simlog)"
            fi
            return 0
        fi
        kill -0 "$(cat "$pidf")" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 20 "$simlog" >&2 || true
    die "spotguard-sim did not start its fleet"
}

# The simulated fleet's client id
sim_client() { sed -nE 's/.*"client_id" *: *"([0-9a-f-]+)".*/\1/p' "$DIR/sim/client.json"; }

# A termination notice to a manual-replica workload as soon as its standby replica is ready: a
# real failover through the product (the agent reads the notice, the replica is promoted, the
# Elastic IP moves), so a fresh dashboard shows one. Gives up after ten minutes, or at once
# when the simulator stops (make down).
first_failover() {
    local i bins client pidf="$DIR/pids/spotguard-sim.pid"
    bins="$(bin_dir)"
    client=$(sim_client)
    for i in $(seq 1 120); do
        [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null || return 0
        if [ "$(pg_sql "SELECT count(*) FROM replica_instances r JOIN agents a ON a.id = r.agent_id
                         WHERE a.client_id = '$client' AND a.logical_agent_id = 'sim-02-m5.large' AND r.is_active AND r.status = 'ready'")" -gt 0 ]; then
            "$bins/spotguard-sim" drill --agent sim-02-m5.large --kind termination
            return
        fi
        sleep 5
    done
}

# Once the decision engine has recorded the history's switches, the savings of its days are
# accounted at once (the service's own run comes every 15 minutes).
history_savings() {
    local sent="${1:-0}" i client
    client=$(sim_client)
    for i in $(seq 1 60); do
        [ "$(pg_sql "SELECT count(*) FROM switches WHERE client_id = '$client' AND initiated_at < now() - interval '1 hour'")" -ge "$sent" ] && break
        sleep 0.5
    done
    (cd "$ROOT" && "$(bin_dir)/spotguard-decisions" savings >/dev/null) || die "spotguard-decisions savings failed"
    log "savings of the history accounted: $(pg_sql "SELECT coalesce(to_char(sum(savings), 'FM999990.00'), '0') || ' USD saved (' || coalesce(round(100 * sum(savings) / nullif(sum(on_demand_cost), 0)), 0) || ' % of on-demand) over ' || count(*) || ' days' FROM savings_snapshots WHERE agent_id IS NULL AND client_id = '$client'")"
}

services_stop() {
    local f
    [ -d "$DIR/pids" ] || return 0
    for f in "$DIR"/pids/*.pid; do
        [ -f "$f" ] || continue
        local pid
        pid="$(cat "$f")"
        if kill -0 "$pid" 2>/dev/null; then
            # each service leads its own process group (setsid): the simulator's instances go with it
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            local i
            for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -KILL -- "-$pid" 2>/dev/null || true
            log "$(basename "$f" .pid) stopped"
        fi
        rm -f "$f"
    done
}

status() {
    find_pg_bin
    printf 'stack %s (%s)\n' "$STACK" "$DIR"
    if db_ha; then
        for n in 1 2; do
            printf '  postgresql   127.0.0.1:%s  %s (Patroni node %s of 2)\n' "$(db_node_port "$n")" "$(db_node_role "$n" || true)" "$n"
        done
    else
        if "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q; then s=up; else s=down; fi
        printf '  postgresql   127.0.0.1:%s  %s\n' "$PG_PORT" "$s"
    fi
    local n
    for n in 1 2 3; do
        [ "$n" = 1 ] || ha || continue
        if rabbit_running "$n"; then s=up; else s=down; fi
        printf '  rabbitmq     127.0.0.1:%s  %s%s\n' "$((AMQP_PORT + 2 * (n - 1)))" "$s" "$(ha && echo " (node $n of 3)")"
    done
    local svc
    for svc in "${SERVICES[@]}"; do
        local pidf="$DIR/pids/$svc.pid"
        if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then s="up (pid $(cat "$pidf"))"; else s=down; fi
        printf '  %-20s %s\n' "$svc" "$s"
    done
    local gw="$DIR/pids/caddy.pid"
    if [ -f "$gw" ] && kill -0 "$(cat "$gw")" 2>/dev/null; then
        printf '  gateway      https://127.0.0.1:%s/  (TLS; the dashboard, console API and agent API on one address; CA %s)\n' \
            "$GATEWAY_PORT" "$DIR/caddy/pki/authorities/local/root.crt"
    fi
    printf '  dashboard    http://127.0.0.1:%s/  (log in with a client token; console API and /openapi.yaml there too)\n' "$CONSOLE_PORT"
    printf '  ingest API   http://127.0.0.1:%s\n' "$INGEST_PORT"
    printf '  sef metrics  http://127.0.0.1:%s/metrics\n' "$SEF_PORT"
    printf '  replicas     http://127.0.0.1:%s/metrics\n' "$REPLICAS_PORT"
    printf '  decisions    http://127.0.0.1:%s/metrics\n' "$DECISIONS_PORT"
    printf '  notifier     http://127.0.0.1:%s/metrics\n' "$NOTIFIER_PORT"
    local simpid="$DIR/pids/spotguard-sim.pid"
    if [ -f "$simpid" ] && kill -0 "$(cat "$simpid")" 2>/dev/null; then
        printf '  simulator    http://127.0.0.1:%s/sim/status  (EC2 endpoint at /, fleet client in %s)\n' "$SIM_PORT" "$DIR/sim/client.json"
        printf '  drill        make drill AGENT=sim-02-m5.large   (even numbers keep a manual replica; KIND=rebalance too)\n'
    fi
    if [ "$STACK" = dev ]; then settings="$ROOT/.spotguard/env"; else settings="$DIR/env"; fi
    printf '  settings     %s (source it)\n' "$settings"
}

case "$CMD" in
    deps) deps ;;
    package-deps) package_deps ;;
    moto-bin) moto_bin ;;
    contract-python) contract_python ;;
    cfn-lint-bin) cfn_lint_bin ;;
    browser-bin) browser_bin ;;
    axe-js) axe_js ;;
    proxy-bin) proxy_bin ;;
    infra) deps; infra ;;
    up) deps; infra; build; services_start; gateway_start; sim_start; status ;;
    caddy-bin) caddy_bin ;;
    gateway-start) gateway_start ;;
    gateway-stop) gateway_stop ;;
    down) services_stop; rabbit_stop_all; pg_stop; db_cluster_stop ;;
    db-stop) pg_stop ;;
    db-crash) pg_crash ;;
    db-start) pg_start ;;
    db-disk-full) db_disk_full ;;
    db-disk-free) db_disk_free ;;
    # the database as a Patroni pair (the HA stack; the tests ask for it): prints its URL
    db-cluster) reserve_ports >&2; db_cluster >&2; write_env; db_url ;;
    db-cluster-stop) db_cluster_stop ;;
    db-cluster-remove) db_cluster_remove; write_env ;;
    db-node-kill) db_node_kill "${3:?node 1 or 2}" ;;
    db-node-stop) db_node_stop "${3:?node 1 or 2}" ;;
    db-node-start) find_pg_bin; db_node_start "${3:?node 1 or 2}" ;;
    db-leader) db_leader ;;
    db-promoted) find_pg_bin; db_promoted "${3:?node 1 or 2}" ;;
    db-role) db_node_role "${3:?node 1 or 2}" ;;
    broker-stop) rabbit_stop ;;
    broker-start) rabbit_start ;;
    broker-restart) rabbit_stop; rabbit_start ;;
    # three nodes in one cluster (the HA stack; the tests ask for it), and back to one
    broker-cluster) reserve_ports >&2; rabbit_cluster >&2; write_env; amqp_url spotguard:spotguard ;;
    broker-cluster-stop) rabbit_cluster_stop; write_env ;;
    broker-node-kill) rabbit_node_kill "${3:?node 1, 2 or 3}" ;;
    broker-node-stop) rabbit_stop "${3:?node 1, 2 or 3}" ;;
    broker-node-start) rabbit_start "${3:?node 1, 2 or 3}" ;;
    broker-leader) rabbit_leader "${3:?queue}" ;;
    broker-url) amqp_url spotguard:spotguard "${3:-1}" ;;
    broker-pause) rabbit_env; kill -STOP "$(cat "$RABBITMQ_PID_FILE")" ;;
    broker-resume) rabbit_env; kill -CONT "$(cat "$RABBITMQ_PID_FILE")" ;;
    # a watermark far below what the node uses raises the memory alarm: publishers are blocked
    broker-alarm-on) rabbit_env; rabbit_ctl -q set_vm_memory_high_watermark 0.0001 >/dev/null ;;
    broker-alarm-off) rabbit_env; rabbit_ctl -q set_vm_memory_high_watermark 0.3 >/dev/null ;;
    # bytes in use, the memory limit in bytes, the alarms ([] when none), on one line
    broker-memory) rabbit_env; rabbit_ctl -q eval \
        'io:format("~b ~b ~w~n", [erlang:memory(total), vm_memory_monitor:get_memory_limit(), rabbit_alarm:get_alarms()]).' | head -1 ;;
    status) status ;;
    queues) rabbit_env; rabbit_ctl -q list_queues name type messages_ready messages_unacknowledged consumers ;;
    purge) rabbit_env; rabbit_ctl -q purge_queue "${PURGE_QUEUE:?set PURGE_QUEUE}" ;;
    # a virtual host of its own for a run whose events must not reach this stack's queues
    broker-vhost-add) rabbit_env; rabbit_ctl -q add_vhost "${3:?vhost}" >/dev/null
        rabbit_ctl -q set_permissions -p "$3" spotguard '.*' '.*' '.*' >/dev/null ;;
    broker-vhost-remove) rabbit_env; rabbit_ctl -q delete_vhost "${3:?vhost}" >/dev/null ;;
    *) echo "usage: deploy/stack.sh deps|infra|up|down|db-stop|db-start|broker-stop|broker-start|broker-restart|status|queues|purge [dev|test|bench]" >&2; exit 2 ;;
esac
