#!/usr/bin/env bash
# make backtest: the decision strategies replayed over price history, no stack needed.
# SPOTGUARD_DATA names the market files (default ../shared/data, read in place); without a
# spot_price_*.csv there, two weeks of generated sample data in the same columns
# (`spotguard-sim sample-data`, .spotguard/sample-data). Arguments go to the backtest
# (`--workloads 50 --seeds 1` for a short run). Debug build: the one `make up` and `make test` use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
for product in spotguard-decisions spotguard-sim; do swift build --product "$product" >&2; done
BIN="$(swift build --show-bin-path)"
DATA="${SPOTGUARD_DATA:-$ROOT/../shared/data}"
if compgen -G "$DATA/spot_price_*.csv" >/dev/null; then
    exec "$BIN/spotguard-decisions" backtest --data "$DATA" "$@"
fi
SAMPLE="$ROOT/.spotguard/sample-data"
"$BIN/spotguard-sim" sample-data --out "$SAMPLE" >/dev/null
echo "[backtest] no price history in $DATA: two weeks of generated sample data ($SAMPLE)" >&2
exec "$BIN/spotguard-decisions" backtest --data "$SAMPLE" --advisor "$SAMPLE/spot-advisor-data_sample.json" "$@"
