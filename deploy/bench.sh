#!/usr/bin/env bash
# Benchmark figures on a fresh private stack (ports 334xx) with release builds:
#   1. ingest: pricing reports/s accepted with 202 (each broker-confirmed), N keep-alive clients (wrk)
#   2. the same broker's raw confirmed-publish rate (spotguard-bench publish)
#   3. the same database's raw COPY rate (spotguard-bench copy)
# and the ingest rate as a ratio of each. Figures vary ±30 % run to run: compare ratios.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${BENCH_DURATION:-10}"

deploy/stack.sh deps
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq --no-install-recommends wrk >/dev/null; else sudo -n apt-get install -y -qq --no-install-recommends wrk >/dev/null; fi
fi
deploy/stack.sh down bench >/dev/null 2>&1 || true
rm -rf .spotguard/bench
INGEST_PID=""
cleanup() {
    [ -n "$INGEST_PID" ] && kill -TERM "$INGEST_PID" 2>/dev/null && wait "$INGEST_PID" 2>/dev/null
    deploy/stack.sh down bench >/dev/null 2>&1 || true
}
trap cleanup EXIT
deploy/stack.sh infra bench >/dev/null

echo "[bench] swift build -c release"
swift build -c release 2>&1 | { grep -v -E "CMakeLists.txt|unhandled; explicitly declare" || true; }
BIN="$(swift build -c release --show-bin-path)"
set -a
# shellcheck disable=SC1091
. .spotguard/bench/env
set +a
export SPOTGUARD_LOG_LEVEL=error
"$BIN/spotguard-ingest" migrate
TOKEN="$("$BIN/spotguard-ingest" create-client --name bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
"$BIN/spotguard-ingest" serve >"$SPOTGUARD_STACK_DIR/logs/ingest-bench.log" 2>&1 &
INGEST_PID=$!
for _ in $(seq 1 100); do curl -fsS "$SPOTGUARD_INGEST_URL/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
AGENT="$(curl -fsS -X POST "$SPOTGUARD_INGEST_URL/api/agents/register" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"logical_agent_id": "bench-1", "pool_id": "t3.medium.us-east-1a"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["agent_id"])')"

LUA="$SPOTGUARD_STACK_DIR/report.lua"
cat >"$LUA" <<LUA
wrk.method = "POST"
wrk.path = "/api/agents/$AGENT/pricing-report"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.body = '{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.0312}, {"id": "t3.medium.us-east-1b", "price": 0.0298}, {"id": "t3.medium.us-east-1c", "price": 0.0324}], "on_demand_price": 0.0416}'
accepted = 0
response = function(status, headers, body) if status == 202 then accepted = accepted + 1 end end
LUA

declare -A RATE P50 P99 BAD
for c in 16 64; do
    out="$(wrk -t2 -c"$c" -d"${DURATION}s" --latency -s "$LUA" "$SPOTGUARD_INGEST_URL")"
    total=$(echo "$out" | awk '/requests in/ {print $1}')
    secs=$(echo "$out" | awk '/requests in/ {gsub("s,","",$4); print $4}')
    bad=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    bad=${bad:-0}
    RATE[$c]=$(python3 -c "print(round(($total - $bad) / $secs))")
    P50[$c]=$(echo "$out" | awk '/ 50%/ {print $2}')
    P99[$c]=$(echo "$out" | awk '/ 99%/ {print $2}')
    BAD[$c]=$bad
done
kill -TERM "$INGEST_PID"; wait "$INGEST_PID" 2>/dev/null || true; INGEST_PID=""

PUB="$("$BIN/spotguard-bench" publish 30000 64 | sed -n 's/.*publish_confirmed_per_second=\([0-9]*\).*/\1/p')"
PUB1000="$("$BIN/spotguard-bench" publish 30000 1000 | sed -n 's/.*publish_confirmed_per_second=\([0-9]*\).*/\1/p')"
COPY="$("$BIN/spotguard-bench" copy 300000 | sed -n 's/.*copy_rows_per_second=\([0-9]*\).*/\1/p')"

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo
echo "SpotGuard bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, release build, loopback)"
printf '%-58s %12s\n' "measure" "value"
for c in 16 64; do
    printf '%-58s %12s\n' "ingest pricing reports accepted (202), $c clients, /s" "${RATE[$c]}"
    printf '%-58s %12s\n' "  latency p50 / p99, $c clients" "${P50[$c]} / ${P99[$c]}"
    printf '%-58s %12s\n' "  non-202 answers, $c clients" "${BAD[$c]}"
done
printf '%-58s %12s\n' "raw confirmed publishes, 64 in flight, /s" "$PUB"
printf '%-58s %12s\n' "raw confirmed publishes, 1000 in flight, /s" "$PUB1000"
printf '%-58s %12s\n' "raw COPY rows into a price table, /s" "$COPY"
printf '%-58s %12s\n' "ratio ingest(64 clients) / raw publish (64 in flight)" "$(ratio "${RATE[64]}" "$PUB")"
printf '%-58s %12s\n' "ratio ingest(64 clients) price points (x3) / raw COPY" "$(ratio "$((RATE[64] * 3))" "$COPY")"
