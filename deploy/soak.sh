#!/usr/bin/env bash
# make soak: a steady load of pricing reports (SOAK_RATE per second, default 25, three pools
# each) for SOAK_MINUTES (default 60) against the demo stack `make up` runs — started here when
# it is not — with its simulated fleet beside it. Every SOAK_SAMPLE_SECONDS (default 60): each
# service's resident memory and descriptors, the database's connections and largest tables, the
# queues, the load's p99. Fails on growth (Tools/Support/Soak.swift, SoakJudge); the samples and
# an SVG chart go to .spotguard/dev/soak/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
deploy/stack.sh up dev
set -a
# shellcheck disable=SC1091
. .spotguard/dev/env
set +a
OUT=.spotguard/dev/soak
mkdir -p "$OUT"
"$(swift build --show-bin-path)/spotguard-bench" soak --stack dev --minutes "${SOAK_MINUTES:-60}" \
    --sample-seconds "${SOAK_SAMPLE_SECONDS:-60}" --rate "${SOAK_RATE:-25}" --json "$OUT/soak.json" --svg "$OUT/soak.svg"
echo "[soak] samples in $OUT/soak.json, chart in $OUT/soak.svg"
