#!/usr/bin/env bash
# Benchmark figures on a fresh private stack (ports 334xx) with release builds:
#   1. ingest: pricing reports/s accepted with 202 (each broker-confirmed), N keep-alive clients (wrk)
#   2. the same broker's raw confirmed-publish rate (spotguard-bench publish)
#   3. the same database's raw COPY rate (spotguard-bench copy)
#   4. SEF: price points/s committed to clean data from a pre-filled queue, 1 and 2 workers, and
#      with 1 worker over 10 / 1,000 / 50,000 distinct pools (growth)
#   5. end to end (HTTP 202 -> clean row committed) points/s with 2 SEF workers at full load,
#      with 10-pool and with 50-pool reports, and the accept -> commit p99 at about half that load
#   6. failover (termination-imminent -> promoted answer) and command delivery (issued -> long-poll
#      answered) latency p50/p99, with pricing reports at about half load in the background
#      and, with real spotguard-agent processes on moto's EC2, IMDS notice -> failover committed
#      and -> Elastic IP on the new primary (100 notices; the agents log at info in logs/agents/)
#   7. the decision pass over 1,000 / 10,000 / 100,000 pools with a tenth as many auto-switch
#      agents (growth; BENCH_GROWTH_POOLS), each on a fresh database; failover p50/p99 in a fleet
#      of 100 / 1,000 / 5,000 agents with ready replicas (BENCH_GROWTH_FAILOVER_AGENTS); and the
#      dashboard's overview and agents page for a client of 10 / 1,000 / 10,000 agents (BENCH_GROWTH_AGENTS)
#   8. the fault suite (spotguard-bench chaos, as deploy/chaos.sh): lost/doubled rows under kill -9,
#      broker/database restarts, network faults and node losses of the HA engines, and 3 copies of
#      sef/replicas/decisions against 1
#   9. with BENCH_LONG=1, afterwards: `make soak` for 30 minutes (SOAK_MINUTES) on the demo stack
#      with its simulated fleet — memory, descriptors, queues, tables and p99 per minute, judged
# and each rate as a ratio of its raw ceiling. Figures vary ±30 % run to run: compare ratios.
set -euo pipefail
# shellcheck source=deploy/bench-stack.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-stack.sh"
DURATION="${BENCH_DURATION:-10}"
BENCH_STARTED=$SECONDS
# one line on stderr as each step starts, with the time so far: the figures come at the end
progress() { printf '[bench] %4ds  %s\n' "$((SECONDS - BENCH_STARTED))" "$*" >&2; }

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq --no-install-recommends wrk >/dev/null; else sudo -n apt-get install -y -qq --no-install-recommends wrk >/dev/null; fi
fi
progress "0. release build and a fresh private stack"
bench_stack_up bench
start_sef() {  # N workers on ports SPOTGUARD_SEF_PORT, +1, ...
    local i port
    for i in $(seq 1 "$1"); do
        port=$((SPOTGUARD_SEF_PORT + i - 1))
        start_service spotguard-sef "http://127.0.0.1:$port" SPOTGUARD_SEF_PORT=$port
    done
}
wait_points() {  # until the running SEF workers committed $1 points; prints the seconds since $2 (epoch seconds)
    while [ "$(sef_points)" -lt "$1" ]; do sleep 0.05; done
    python3 -c "import time; print(f'{time.time() - $2:.3f}')"
}
CREATED="$("$BIN/spotguard-ingest" create-client --name bench)"
TOKEN="$(echo "$CREATED" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
CLIENT="$(echo "$CREATED" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')"
start_service spotguard-ingest "$SPOTGUARD_INGEST_URL"
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
progress "1. ingest: pricing reports at 16 and 64 clients"
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
stop_services

progress "2-3. raw ceilings: the broker's confirmed publishes, the database's COPY"
PUB="$("$BIN/spotguard-bench" publish 30000 64 | sed -n 's/.*publish_confirmed_per_second=\([0-9]*\).*/\1/p')"
PUB1000="$("$BIN/spotguard-bench" publish 30000 1000 | sed -n 's/.*publish_confirmed_per_second=\([0-9]*\).*/\1/p')"
COPY="$("$BIN/spotguard-bench" copy 300000 | sed -n 's/.*copy_rows_per_second=\([0-9]*\).*/\1/p')"

progress "4. SEF drain: 1 and 2 workers, then 1,000 and 50,000 distinct pools"
# 4. SEF drain rate: a queue of REPORTS reports x POOLS pools, then N workers
POOLS=10
REPORTS="${BENCH_SEF_REPORTS:-8000}"
PURGE_QUEUE=spotguard.sef deploy/stack.sh purge bench  # the ingest runs above left their reports there
declare -A SEF
for n in 1 2; do
    before=$(sef_points)
    "$BIN/spotguard-bench" sef-fill "$CLIENT" "$AGENT" "$REPORTS" "$POOLS" >/dev/null
    t0=$(python3 -c 'import time; print(time.time())')
    start_sef "$n"
    secs=$(wait_points $((before + REPORTS * POOLS)) "$t0")
    SEF[$n]=$(python3 -c "print(round($REPORTS * $POOLS / $secs))")
    stop_services
done
# the same drain, 1 worker, as the reports spread over more distinct pools (10 is the run above)
declare -A SEF_DISTINCT
SEF_DISTINCT[10]=${SEF[1]}
for d in 1000 50000; do
    before=$(sef_points)
    "$BIN/spotguard-bench" sef-fill "$CLIENT" "$AGENT" "$REPORTS" "$POOLS" --distinct "$d" >/dev/null
    t0=$(python3 -c 'import time; print(time.time())')
    start_sef 1
    secs=$(wait_points $((before + REPORTS * POOLS)) "$t0")
    SEF_DISTINCT[$d]=$(python3 -c "print(round($REPORTS * $POOLS / $secs))")
    stop_services
done

progress "5. end to end: 10-pool and 50-pool reports, then half load"
# 5. end to end with 2 workers: full load, then about half of it
e2e_lua() {  # $1: delay between a connection's requests in ms, $2: pools per report
    cat >"$SPOTGUARD_STACK_DIR/e2e.lua" <<LUA
wrk.method = "POST"
wrk.path = "/api/agents/$AGENT/pricing-report"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.body = '$("$BIN/spotguard-bench" pools "${2:-$POOLS}")'
function delay() return $1 end
LUA
}
e2e_run() {  # $1 connections, $2 delay ms, $3 pools per report; prints "accepted_points seconds_until_committed"
    local before out total bad t0 secs pools="${3:-$POOLS}"
    before=$(sef_points)
    e2e_lua "$2" "$pools"
    t0=$(python3 -c 'import time; print(time.time())')
    out="$(wrk -t2 -c"$1" -d"${DURATION}s" -s "$SPOTGUARD_STACK_DIR/e2e.lua" "$SPOTGUARD_INGEST_URL")"
    total=$(echo "$out" | awk '/requests in/ {print $1}')
    bad=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    secs=$(wait_points $((before + (total - ${bad:-0}) * pools)) "$t0")
    echo "$(((total - ${bad:-0}) * pools)) $secs"
}
declare -A E2E_BY  # pools per report -> points/s
for p in "$POOLS" 50; do
    start_service spotguard-ingest "$SPOTGUARD_INGEST_URL"
    start_sef 2
    read -r E2E_POINTS E2E_SECS <<<"$(e2e_run 64 0 "$p")"
    E2E_BY[$p]=$(python3 -c "print(round($E2E_POINTS / $E2E_SECS))")
    stop_services
done
E2E=${E2E_BY[$POOLS]}
start_service spotguard-ingest "$SPOTGUARD_INGEST_URL"
start_sef 2  # fresh histograms for the latency run
HALF_DELAY=$(python3 -c "print(max(1, round(16 * 1000 / ($E2E / $POOLS / 2)) - 4))")
read -r HALF_POINTS HALF_SECS <<<"$(e2e_run 16 "$HALF_DELAY")"
HALF=$(python3 -c "print(round($HALF_POINTS / $HALF_SECS))")
P99_COMMIT=$(for i in 0 1; do curl -fsS "http://127.0.0.1:$((SPOTGUARD_SEF_PORT + i))/metrics"; done | python3 -c '
import sys, collections
buckets = collections.Counter()
for line in sys.stdin:
    if line.startswith("spotguard_sef_accept_to_commit_seconds_bucket"):
        le = line.split("le=\"")[1].split("\"")[0]
        buckets[float("inf") if le == "+Inf" else float(le)] += float(line.split()[-1])
total = buckets[float("inf")]
bound = next(le for le in sorted(buckets) if buckets[le] >= 0.99 * total)
print(f"<= {bound * 1000:.0f} ms" if bound != float("inf") else "> largest bucket")
')
stop_services

progress "6. failover and command delivery under load, then real agents on moto (notices, recovery, state)"
# 6. failover and command delivery under background pricing load
start_service spotguard-ingest "$SPOTGUARD_INGEST_URL"
start_sef 2
start_service spotguard-replicas "$SPOTGUARD_REPLICAS_URL"
# the rest of the system runs too, so every service's memory is measured under this load (the
# notifier writes a notification per failover; the console and decision engine mostly wait)
start_service spotguard-decisions "$SPOTGUARD_DECISIONS_URL"
start_service spotguard-notifier "$SPOTGUARD_NOTIFIER_URL"
start_service spotguard-console "$SPOTGUARD_CONSOLE_URL"
e2e_lua "$HALF_DELAY"
wrk -t1 -c16 -d300s -s "$SPOTGUARD_STACK_DIR/e2e.lua" "$SPOTGUARD_INGEST_URL" >/dev/null 2>&1 &
LOAD_PID=$!
sleep 2  # the load is running
FAILOVER="$(SPOTGUARD_BENCH_TOKEN="$TOKEN" "$BIN/spotguard-bench" failover "${BENCH_FAILOVER_AGENTS:-200}")" || FAILOVER=failed
# real agents on moto's EC2: the Elastic IP is read back there
MOTO_PORT=33490
pkill -f "moto_server -H 127.0.0.1 -p $MOTO_PORT" 2>/dev/null || true
"$(deploy/stack.sh moto-bin)" -H 127.0.0.1 -p "$MOTO_PORT" >"$SPOTGUARD_STACK_DIR/logs/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1 && break; sleep 0.1; done
AGENTS="$(SPOTGUARD_BENCH_TOKEN="$TOKEN" SPOTGUARD_BENCH_EC2_URL="http://127.0.0.1:$MOTO_PORT/" \
    "$BIN/spotguard-bench" agent-failover "${BENCH_AGENT_FAILOVERS:-100}")" || AGENTS=failed
# a notice without a replica: the recovery instance launched, then served (moto boots at once)
RECOVERY="$(SPOTGUARD_BENCH_TOKEN="$TOKEN" SPOTGUARD_BENCH_EC2_URL="http://127.0.0.1:$MOTO_PORT/" \
    "$BIN/spotguard-bench" agent-recovery "${BENCH_AGENT_RECOVERIES:-20}")" || RECOVERY=failed
# a state of 10 and 500 MiB shipped to a replica, 1 % changing between versions
STATE="$(SPOTGUARD_BENCH_TOKEN="$TOKEN" SPOTGUARD_BENCH_EC2_URL="http://127.0.0.1:$MOTO_PORT/" \
    "$BIN/spotguard-bench" state-shipping ${BENCH_STATE_MIB:-10 500} --period "${BENCH_STATE_PERIOD:-10}" --rounds 3)" || STATE=failed
kill "$MOTO_PID" 2>/dev/null || true
kill "$LOAD_PID" 2>/dev/null || true
wait "$LOAD_PID" 2>/dev/null || true
# each service's resident set once idle: after the load, past one heap trim (every 30 s, ±10 %)
sleep "${BENCH_IDLE_WAIT:-40}"
declare -A IDLE_RSS_KB
for p in "${SERVICE_PIDS[@]}"; do
    IDLE_RSS_KB[${SERVICE_NAME[$p]}]="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)"
done
stop_services
fig() { echo "$FAILOVER $AGENTS $RECOVERY $STATE $PASS" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

progress "7. growth: the decision pass at ${BENCH_GROWTH_POOLS:-1000 10000 100000} pools, failover in a fleet of ${BENCH_GROWTH_FAILOVER_AGENTS:-100 1000 5000}, the dashboard at ${BENCH_GROWTH_AGENTS:-10 1000 10000} agents"
# 7. the decision pass as the market grows, each size on a fresh database of its own (agents a
#    tenth of the pools); the 10,000-pool size is the headline figure
declare -A GROWTH_PASS
GROWTH_URL="${SPOTGUARD_DATABASE_URL%/*}/spotguard_growth"
for n in ${BENCH_GROWTH_POOLS:-1000 10000 100000}; do
    "$SPOTGUARD_PG_BIN/psql" "$SPOTGUARD_DATABASE_URL" -qc "DROP DATABASE IF EXISTS spotguard_growth" -c "CREATE DATABASE spotguard_growth"
    SPOTGUARD_DATABASE_URL="$GROWTH_URL" "$BIN/spotguard-ingest" migrate >/dev/null
    GROWTH_PASS[$n]="$(SPOTGUARD_DATABASE_URL="$GROWTH_URL" "$BIN/spotguard-bench" decisions-pass "$n" $((n / 10)))"
done
# the dashboard as the fleet grows: one client with N agents (a tenth with a ready replica), its
# overview and first agents page (50 agents a page) loaded 20 times each after a warm-up
page_ms() {  # BASE TOKEN: overview=p50/max agents=p50/max (ms)
    local jar csrf path
    jar="$(mktemp)"
    csrf="$(curl -fsS -c "$jar" -b "$jar" "$1/login" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -n 1)"
    curl -sS -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$csrf" --data-urlencode "token=$2" "$1/login"
    for path in overview agents; do
        curl -fsS -o /dev/null -b "$jar" "$1/$path"
        for _ in $(seq 1 20); do curl -fsS -o /dev/null -b "$jar" -w '%{time_total}\n' "$1/$path"; done |
            python3 -c "import sys; t = sorted(float(x) * 1000 for x in sys.stdin); print(f'$path={t[len(t) // 2]:.1f}/{t[-1]:.1f}')"
    done
    rm -f "$jar"
}
declare -A GROWTH_PAGES
for n in ${BENCH_GROWTH_AGENTS:-10 1000 10000}; do
    "$SPOTGUARD_PG_BIN/psql" "$SPOTGUARD_DATABASE_URL" -qc "DROP DATABASE IF EXISTS spotguard_growth" -c "CREATE DATABASE spotguard_growth"
    SPOTGUARD_DATABASE_URL="$GROWTH_URL" "$BIN/spotguard-ingest" migrate >/dev/null
    GROWN="$(SPOTGUARD_DATABASE_URL="$GROWTH_URL" "$BIN/spotguard-ingest" create-client --name growth)"
    GROWN_CLIENT="$(echo "$GROWN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')"
    "$SPOTGUARD_PG_BIN/psql" "$GROWTH_URL" -q \
        -c "INSERT INTO agents (client_id, logical_agent_id, status, current_mode) SELECT '$GROWN_CLIENT', 'agent-' || lpad(i::text, 6, '0'), 'online', 'spot' FROM generate_series(1, $n) i" \
        -c "INSERT INTO replica_instances (agent_id, replica_type, status) SELECT id, 'manual', 'ready' FROM agents WHERE right(logical_agent_id, 1) = '0'"
    start_service spotguard-console "$SPOTGUARD_CONSOLE_URL" SPOTGUARD_DATABASE_URL="$GROWTH_URL" SPOTGUARD_CONSOLE_SECURE_COOKIES=false
    GROWTH_PAGES[$n]="$(page_ms "$SPOTGUARD_CONSOLE_URL" "$(echo "$GROWN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')" | tr '\n' ' ')"
    stop_services
done
# failover as the fleet grows: one fresh database, ingest and the coordinator on it, the fleet
# grown to each size (agents with a ready replica, set up over HTTP as agents do) and 100
# failovers timed across it at each size (the earlier sizes' timed agents are failed over by then).
# Its own broker vhost: its events name agents of that database alone, and the fault suite's
# notifier, on the bench database, would dead-letter them (unknown agents)
declare -A GROWTH_FAILOVER
deploy/stack.sh broker-vhost-add bench growth
GROWTH_AMQP="${SPOTGUARD_AMQP_URL%/}/growth"
"$SPOTGUARD_PG_BIN/psql" "$SPOTGUARD_DATABASE_URL" -qc "DROP DATABASE IF EXISTS spotguard_growth" -c "CREATE DATABASE spotguard_growth"
SPOTGUARD_DATABASE_URL="$GROWTH_URL" "$BIN/spotguard-ingest" migrate >/dev/null
GROWN_TOKEN="$(SPOTGUARD_DATABASE_URL="$GROWTH_URL" "$BIN/spotguard-ingest" create-client --name growth | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
start_service spotguard-ingest "$SPOTGUARD_INGEST_URL" SPOTGUARD_DATABASE_URL="$GROWTH_URL" SPOTGUARD_AMQP_URL="$GROWTH_AMQP"
start_service spotguard-replicas "$SPOTGUARD_REPLICAS_URL" SPOTGUARD_DATABASE_URL="$GROWTH_URL" SPOTGUARD_AMQP_URL="$GROWTH_AMQP"
FLEET=0
for n in ${BENCH_GROWTH_FAILOVER_AGENTS:-100 1000 5000}; do
    GROWTH_FAILOVER[$n]="$(SPOTGUARD_DATABASE_URL="$GROWTH_URL" SPOTGUARD_BENCH_TOKEN="$GROWN_TOKEN" \
        "$BIN/spotguard-bench" failover $((n - FLEET)) --timed "$(( n - FLEET < 100 ? n - FLEET : 100 ))")" || GROWTH_FAILOVER[$n]=failed
    FLEET=$n
done
stop_services
deploy/stack.sh broker-vhost-remove bench growth
"$SPOTGUARD_PG_BIN/psql" "$SPOTGUARD_DATABASE_URL" -qc "DROP DATABASE IF EXISTS spotguard_growth"
PASS="${GROWTH_PASS[10000]:-}"

progress "8. the fault suite (its own lines follow in the table)"
# 8. the fault suite on the same stack (deploy/chaos.sh runs it alone): its table follows ours
CHAOS_STATUS=0
CHAOS="$("$BIN/spotguard-bench" chaos --stack bench --sends "${BENCH_CHAOS_SENDS:-10000}" --window "${BENCH_CHAOS_WINDOW:-10}" \
    --json "$SPOTGUARD_STACK_DIR/chaos.json" 2>"$SPOTGUARD_STACK_DIR/logs/chaos.log")" || CHAOS_STATUS=$?

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
progress "done: the figures"
# the table, also kept in docs/bench-results.md (the last run's figures, for the docs to cite)
{
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
printf '%-58s %12s\n' "SEF points committed from a full queue, 1 worker, /s" "${SEF[1]}"
printf '%-58s %12s\n' "SEF points committed from a full queue, 2 workers, /s" "${SEF[2]}"
printf '%-58s %12s\n' "end to end points (202 -> clean), 2 workers, 64 clients, /s" "$E2E"
printf '%-58s %12s\n' "  ratio end to end / raw COPY" "$(ratio "$E2E" "$COPY")"
printf '%-58s %12s\n' "end to end points, 50-pool reports, 2 workers, 64 clients, /s" "${E2E_BY[50]}"
printf '%-58s %12s\n' "  ratio end to end (50-pool reports) / raw COPY" "$(ratio "${E2E_BY[50]}" "$COPY")"
printf '%-58s %12s\n' "end to end at about half load, points/s" "$HALF"
printf '%-58s %12s\n' "  accept -> clean commit p99 (histogram bucket)" "$P99_COMMIT"
printf '%-58s %12s\n' "failover termination-imminent -> promoted, p50 / p99 ms" "$(fig failover_client_p50_ms) / $(fig failover_client_p99_ms)"
printf '%-58s %12s\n' "  same, max ms ($(fig failovers) failovers, 4 at a time)" "$(fig failover_client_max_ms)"
printf '%-58s %12s\n' "  server-side failover_time_ms p50 / p99" "$(fig failover_server_p50_ms) / $(fig failover_server_p99_ms)"
printf '%-58s %12s\n' "command issued -> long-poll answered, p50 / p99 ms" "$(fig command_delivery_p50_ms) / $(fig command_delivery_p99_ms)"
printf '%-58s %12s\n' "  same, max ms ($(fig commands) commands)" "$(fig command_delivery_max_ms)"
printf '%-58s %12s\n' "agent: IMDS notice -> failover committed, p50 / p99 ms" "$(fig agent_notice_p50_ms) / $(fig agent_notice_p99_ms)"
printf '%-58s %12s\n' "  same, max ms ($(fig agent_notice_count) notices, watch every 1 s)" "$(fig agent_notice_max_ms)"
printf '%-58s %12s\n' "agent: IMDS notice -> Elastic IP on the new primary, p50 / p99 ms" "$(fig agent_traffic_p50_ms) / $(fig agent_traffic_p99_ms)"
printf '%-58s %12s\n' "  same, max ms (read back from moto; target p99 < 1500)" "$(fig agent_traffic_max_ms)"
printf '%-58s %12s\n' "  phases p50/p99 ms (seen by the agent, committed, promote delivered, traffic moved)" "$(fig agent_phases_ms)"
printf '%-58s %12s\n' "  requests the bench asked again (5xx / no answer)" "$(fig agent_bench_retries)"
printf '%-58s %12s\n' "recovery, no replica: notice -> instance launched, p50 / p99 ms" "$(fig recovery_launched_p50_ms) / $(fig recovery_launched_p99_ms)"
printf '%-58s %12s\n' "  notice -> state version stored, p50 / p99 ms" "$(fig recovery_state_p50_ms) / $(fig recovery_state_p99_ms)"
printf '%-58s %12s\n' "  its agent up -> promoted, p50 / p99 ms (add AWS's boot)" "$(fig recovery_committed_p50_ms) / $(fig recovery_committed_p99_ms)"
printf '%-58s %12s\n' "  its agent up -> Elastic IP on it, p50 / p99 ms ($(fig recovery_count))" "$(fig recovery_moved_p50_ms) / $(fig recovery_moved_p99_ms)"
for mib in ${BENCH_STATE_MIB:-10 500}; do
    printf '%-58s %12s\n' "state $mib MiB: first version shipped / full restore, ms" "$(fig state_${mib}mib_first_ship_ms) / $(fig state_${mib}mib_restore_ms)"
    printf '%-58s %12s\n' "  1 % changed -> version stored, p50 / max ms (period $(fig state_period_s) s)" "$(fig state_${mib}mib_ship_p50_ms) / $(fig state_${mib}mib_ship_max_ms)"
    printf '%-58s %12s\n' "  the agent's own work per version, p50 / max ms" "$(fig state_${mib}mib_ship_work_p50_ms) / $(fig state_${mib}mib_ship_work_max_ms)"
    printf '%-58s %12s\n' "  version stored -> replica holds it, p50 / max ms" "$(fig state_${mib}mib_sync_lag_p50_ms) / $(fig state_${mib}mib_sync_lag_max_ms)"
    printf '%-58s %12s\n' "  agents' peak RSS, primary / replica, MiB" "$(fig state_${mib}mib_primary_rss_mib) / $(fig state_${mib}mib_replica_rss_mib)"
done
printf '%-58s %12s\n' "decision pass, $(fig pass_pools) pools / $(fig pass_agents) agents, first (with $(fig pass_switches) switches) s" "$(fig pass_first_seconds)"
printf '%-58s %12s\n' "  next pass (switches pending), s" "$(fig pass_next_seconds)"
printf '%-58s %12s\n' "  its phases, s" "$(fig pass_next_phases)"
echo "growth: cost as the work grows (per-unit figures should stay flat; a 10x step is linear at 10x time)"
for d in 10 1000 50000; do
    printf '%-58s %12s\n' "  SEF drain, 1 worker, $d distinct pools, points/s" "${SEF_DISTINCT[$d]}"
done
for n in $(printf '%s\n' "${!GROWTH_PASS[@]}" | sort -n); do
    g() { echo "${GROWTH_PASS[$n]}" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    printf '%-58s %12s\n' "  decision pass, $n pools / $((n / 10)) agents: first / next s" "$(g pass_first_seconds) / $(g pass_next_seconds)"
    printf '%-58s %12s\n' "    next pass per 1,000 pools, ms" "$(python3 -c "print(f'{$(g pass_next_seconds) * 1e6 / $n:.1f}')")"
done
for n in $(printf '%s\n' "${!GROWTH_FAILOVER[@]}" | sort -n); do
    f() { echo "${GROWTH_FAILOVER[$n]}" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    printf '%-58s %12s\n' "  failover, a fleet of $n with ready replicas: p50 / p99 ms" "$(f failover_client_p50_ms) / $(f failover_client_p99_ms)"
    printf '%-58s %12s\n' "    command -> long-poll p99 ms; failovers / commands timed" "$(f command_delivery_p99_ms); $(f failovers) / $(f commands)"
done
for n in $(printf '%s\n' "${!GROWTH_PAGES[@]}" | sort -n); do
    p() { echo "${GROWTH_PAGES[$n]}" | tr ' ' '\n' | sed -n "s/^$1=//p" | sed 's|/| / |'; }
    printf '%-58s %12s\n' "  dashboard, $n agents: overview p50 / max ms" "$(p overview)"
    printf '%-58s %12s\n' "    first agents page (50) p50 / max ms" "$(p agents)"
done
for exe in $(printf '%s\n' "${!PEAK_RSS_KB[@]}" | sort); do
    printf '%-58s %12s\n' "resident memory, peak / idle after the load, $exe, MiB" \
        "$(python3 -c "print(f'{${PEAK_RSS_KB[$exe]} / 1024:.1f} / ' + ('{:.1f}'.format(${IDLE_RSS_KB[$exe]:-0} / 1024) if ${IDLE_RSS_KB[$exe]:-0} else '-'))")"
done
echo "$CHAOS" | grep -v '^\[chaos\]'
} | tee "$SPOTGUARD_STACK_DIR/bench-results.txt"
{
    echo "# The last \`make bench\`"
    echo
    echo "Written by \`make bench\` ($(git rev-parse --short HEAD 2>/dev/null || echo "a tree outside git")$(git diff --quiet HEAD 2>/dev/null || echo ", with changes")); what each line measures and the runs before it: [benchmarks.md](benchmarks.md)."
    echo "The fault suite $([ "$CHAOS_STATUS" -eq 0 ] && echo passed || echo "**failed**: see its table")."
    echo
    echo '```'
    cat "$SPOTGUARD_STACK_DIR/bench-results.txt"
    echo '```'
} >"$ROOT/docs/bench-results.md"
[ "$FAILOVER" != failed ] || { echo "bench: the failover run failed (see above)" >&2; exit 1; }
[ "$AGENTS" != failed ] || { echo "bench: the agent failover run failed (see above)" >&2; exit 1; }
[ "$RECOVERY" != failed ] || { echo "bench: the agent recovery run failed (see above)" >&2; exit 1; }
[ "$STATE" != failed ] || { echo "bench: the state shipping run failed (see above)" >&2; exit 1; }
[ "$CHAOS_STATUS" -eq 0 ] || { echo "bench: the fault suite failed (see its table and $SPOTGUARD_STACK_DIR/logs/chaos.log)" >&2; exit 1; }
# the long mode: a 30-minute soak (fails on growth; its samples and chart in .spotguard/dev/soak/)
if [ "${BENCH_LONG:-}" = 1 ]; then SOAK_MINUTES="${SOAK_MINUTES:-30}" "$ROOT/deploy/soak.sh"; fi
