#!/usr/bin/env bash
# The fault suite on a fresh private stack (ports 334xx) with release builds: the same price
# load (CHAOS_SENDS sends, 10,000 by default, with resends and replica submissions) fault-free
# on one copy of each service, on three copies of sef/replicas/decisions, under kill -9 of each
# service and broker and database restarts, through network faults (latency, black hole,
# reset, mid-frame cut; CHAOS_WINDOW seconds), and with the broker as three nodes and the database
# as a Patroni pair losing a node each (`ha`), ingest flooded at twice its rate (`overload`);
# CHAOS_RUNS picks runs ("reference ha"; default all). Then a backlog of CHAOS_BACKLOG reports
# (1,000,000 by default) queued with no service running and drained.
# Prints one table; exits non-zero when a check fails.
set -euo pipefail
# shellcheck source=deploy/bench-stack.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-stack.sh"
bench_stack_up chaos
export SPOTGUARD_LOG_LEVEL=warning
"$BIN/spotguard-bench" chaos --stack bench --sends "${CHAOS_SENDS:-10000}" --window "${CHAOS_WINDOW:-10}" \
    ${CHAOS_RUNS:+--runs $CHAOS_RUNS} --json "$SPOTGUARD_STACK_DIR/chaos.json"
# L3: a backlog of CHAOS_BACKLOG reports (a million by default) queued with no service running, then drained
"$BIN/spotguard-bench" backlog "${CHAOS_BACKLOG:-1000000}" --stack bench --json "$SPOTGUARD_STACK_DIR/backlog.json"
echo "[chaos] figures in $SPOTGUARD_STACK_DIR/chaos.json and backlog.json, service logs in $SPOTGUARD_STACK_DIR/chaos/ and backlog/"
