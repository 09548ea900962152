#!/usr/bin/env bash
# The whole test suite against a fresh private PostgreSQL and RabbitMQ (the "test" stack, ports
# 364xx), which it stops again at the end. Called by `make test` and by CI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

deploy/stack.sh deps
deploy/stack.sh down test >/dev/null 2>&1 || true
rm -rf .spotguard/test
trap 'deploy/stack.sh down test' EXIT
deploy/stack.sh infra test

echo "[test] swift build --build-tests"
swift build --build-tests

set -a
# shellcheck disable=SC1091
. .spotguard/test/env
set +a
SPOTGUARD_BIN_DIR="$(swift build --show-bin-path)"
export SPOTGUARD_BIN_DIR
export SPOTGUARD_LOG_LEVEL=warning
"$SPOTGUARD_BIN_DIR/spotguard-ingest" migrate

# Integration tests share one broker and restart it, so nothing runs in parallel.
swift test --skip-build --no-parallel
