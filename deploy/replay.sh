#!/usr/bin/env bash
# Replays real spot price history through ingest -> RabbitMQ -> SEF -> PostgreSQL on a fresh
# private stack (the bench stack, ports 334xx) and prints the interpolation error of the gap
# fills against the prices that were cut out.
#
#   deploy/replay.sh [CSV] [DROP_SHARE] [REPLICA_SHARE]
#
# CSV defaults to spot_price_history_us-east-1_2024-01_hourly.csv in SPOTGUARD_DATA (../shared/data; read in
# place, never copied), or, where that file is missing (a clone elsewhere), two weeks of generated
# sample data in the same columns (`spotguard-sim sample-data`, .spotguard/sample-data); DROP_SHARE (default 0.10) of the points are cut in outages of 10
# minutes to 5 hours; REPLICA_SHARE (default 0.10) of the kept points are sent again as
# replica submissions. REPLAY_SEED picks the outages (default 1).
set -euo pipefail
# shellcheck source=deploy/bench-stack.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-stack.sh"
SHARED="${SPOTGUARD_DATA:-$ROOT/../shared/data}/spot_price_history_us-east-1_2024-01_hourly.csv"
CSV="${1:-$SHARED}"
DROP="${2:-0.10}"
REPLICAS="${3:-0.10}"
[ -f "$CSV" ] || [ "$CSV" = "$SHARED" ] || { echo "replay: no such file: $CSV" >&2; exit 2; }

bench_stack_up replay
if [ ! -f "$CSV" ]; then
    "$BIN/spotguard-sim" sample-data --out "$ROOT/.spotguard/sample-data" >/dev/null
    CSV="$ROOT/.spotguard/sample-data/spot_price_history_us-east-1_sample_hourly.csv"
    echo "[replay] no $SHARED: two weeks of generated sample data instead"
fi
start_service spotguard-ingest "$SPOTGUARD_INGEST_URL"
start_service spotguard-sef "$SPOTGUARD_SEF_URL"
TOKEN="$("$BIN/spotguard-ingest" create-client --name replay | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
AGENT="$(curl -fsS -X POST "$SPOTGUARD_INGEST_URL/api/agents/register" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"logical_agent_id": "replay-1", "pool_id": "t3.medium.us-east-1a"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["agent_id"])')"
TRUTH="$SPOTGUARD_STACK_DIR/replay-truth.json"

echo "[replay] sending $(basename "$CSV") through ingest (drop $DROP, replicas $REPLICAS)"
"$BIN/spotguard-bench" replay send --csv "$CSV" --drop "$DROP" --replicas "$REPLICAS" --seed "${REPLAY_SEED:-1}" \
    --token "$TOKEN" --agent "$AGENT" --truth "$TRUTH"
"$BIN/spotguard-bench" replay wait --truth "$TRUTH"
# the scan recomputes every gap with all peers' data present (fills made on arrival may
# have lacked a peer that came later)
SPOTGUARD_SEF_SCAN_WINDOW_HOURS=96 "$BIN/spotguard-sef" gap-scan >/dev/null
echo
"$BIN/spotguard-bench" replay score --truth "$TRUTH"
