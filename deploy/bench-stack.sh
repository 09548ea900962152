# Sourced by deploy/bench.sh and deploy/replay.sh: a fresh bench stack (ports 334xx) with
# release builds, and helpers to run services on it. Sets ROOT, BIN and the stack's env.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SERVICE_PIDS=()
declare -A SERVICE_NAME  # pid -> executable
declare -A PEAK_RSS_KB   # executable -> the largest peak resident set (VmHWM) of any of its runs

# start_service EXECUTABLE URL [VAR=VALUE ...]: start `EXECUTABLE serve`, wait until URL is ready
start_service() {
    local exe="$1" url="$2"
    shift 2
    env "$@" "$BIN/$exe" serve >>"$SPOTGUARD_STACK_DIR/logs/$exe.log" 2>&1 &
    SERVICE_PIDS+=($!)
    SERVICE_NAME[$!]="$exe"
    for _ in $(seq 1 100); do curl -fsS "$url/health/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "$exe did not become ready" >&2
    return 1
}

stop_services() {
    local p kb name
    for p in "${SERVICE_PIDS[@]}"; do
        kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
        name="${SERVICE_NAME[$p]:-}"
        if [ -n "$kb" ] && [ -n "$name" ] && [ "$kb" -gt "${PEAK_RSS_KB[$name]:-0}" ]; then PEAK_RSS_KB[$name]="$kb"; fi
    done
    for p in "${SERVICE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${SERVICE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    SERVICE_PIDS=()
}

bench_stack_cleanup() {
    stop_services
    deploy/stack.sh down bench >/dev/null 2>&1 || true
}

# bench_stack_up LABEL: fresh stack, release build, env exported, database migrated
bench_stack_up() {
    deploy/stack.sh deps
    deploy/stack.sh down bench >/dev/null 2>&1 || true
    rm -rf .spotguard/bench
    trap bench_stack_cleanup EXIT
    deploy/stack.sh infra bench >/dev/null
    echo "[$1] swift build -c release"
    swift build -c release 2>&1 | { grep -v -E "CMakeLists.txt|unhandled; explicitly declare" || true; }
    BIN="$(swift build -c release --show-bin-path)"
    set -a
    # shellcheck disable=SC1091
    . .spotguard/bench/env
    set +a
    export SPOTGUARD_LOG_LEVEL=error
    mkdir -p "$SPOTGUARD_STACK_DIR/logs"
    "$BIN/spotguard-ingest" migrate
}

# sef_points: price points the running SEF workers committed (their spotguard_sef_points_total).
# Read from the workers, not by counting the raw table: a count(*) every 50 ms over millions of
# rows took a core from the very work it timed.
sef_points() {
    local port n sum=0
    for port in $(seq "$SPOTGUARD_SEF_PORT" $((SPOTGUARD_SEF_PORT + 3))); do
        n="$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '/^spotguard_sef_points_total / {s += $2} END {printf "%d", s}')" || n=0
        sum=$((sum + ${n:-0}))
    done
    echo "$sum"
}
