#!/usr/bin/env bash
# The whole test suite against a fresh private PostgreSQL and RabbitMQ (the "test" stack, ports
# 364xx), which it stops again at the end. Called by `make test` and by CI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

deploy/stack.sh deps
# each table written only by its owner (docs/architecture.md): a second's check before the build
python3 deploy/check-table-owners.py
# no source file of the product or its tools over 400 lines: a file that grows past it is split by feature
LONG="$(find Services Shared Tools Plugins -name '*.swift' -exec wc -l {} + | awk '$2 != "total" && $1 > 400')"
if [ -n "$LONG" ]; then echo "files over 400 lines:"; echo "$LONG"; exit 1; fi
# the bus contract: docs/asyncapi.yaml is valid AsyncAPI 3.0.0 and names every routing key
CONTRACT_PYTHON="$(deploy/stack.sh contract-python)"
"$CONTRACT_PYTHON" deploy/check-bus-contract.py document
# the Kubernetes manifests: valid objects for the API and the operators' CRDs, references resolved
"$CONTRACT_PYTHON" deploy/check-kubernetes.py
# one layout (.swift-format; `make format` applies it)
swift format lint --strict --recursive --configuration .swift-format Services Shared Tools Tests Plugins Package.swift
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

# moto's EC2 endpoint, a real third-party peer for SpotCloud's EC2 client
MOTO_PORT=36490
moto_bin="$(deploy/stack.sh moto-bin)"
pkill -f "moto_server -H 127.0.0.1 -p $MOTO_PORT" 2>/dev/null || true  # left by an interrupted run
"$moto_bin" -H 127.0.0.1 -p "$MOTO_PORT" >"$ROOT/.spotguard/test/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true; deploy/stack.sh down test' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1 && break; sleep 0.1; done
export SPOTGUARD_TEST_EC2_URL="http://127.0.0.1:$MOTO_PORT/"
# the Python that has moto has boto3: AWS's own SDK checks the simulator's EC2 endpoint
SPOTGUARD_TEST_PYTHON="$(dirname "$moto_bin")/python3"
[ -x "$SPOTGUARD_TEST_PYTHON" ] || SPOTGUARD_TEST_PYTHON=python3
export SPOTGUARD_TEST_PYTHON

# headless Chromium looks at the dashboard; openapi-spec-validator checks the OpenAPI documents
SPOTGUARD_TEST_CHROMIUM="$(deploy/stack.sh browser-bin)"
export SPOTGUARD_TEST_CHROMIUM
# axe-core checks the dashboard's pages against WCAG 2 A and AA in that Chromium
SPOTGUARD_TEST_AXE="$(deploy/stack.sh axe-js)"
export SPOTGUARD_TEST_AXE
# tinyproxy: the agent reaches ingest and EC2 through a forward proxy
SPOTGUARD_TEST_PROXY="$(deploy/stack.sh proxy-bin)"
export SPOTGUARD_TEST_PROXY
# cfn-lint checks the agent's CloudFormation template offline
SPOTGUARD_TEST_CFN_LINT="$(deploy/stack.sh cfn-lint-bin)"
export SPOTGUARD_TEST_CFN_LINT
python3 -c 'import openapi_spec_validator' 2>/dev/null || python3 -m pip install -q openapi-spec-validator
# schemathesis fuzzes the HTTP APIs from their OpenAPI documents; pinned, since the warnings it
# raises are part of the check (FuzzTests fails on any)
schemathesis --version 2>/dev/null | grep -q "version 4.32.5$" || python3 -m pip install -q "schemathesis==4.32.5"
SPOTGUARD_TEST_SCHEMATHESIS="$(command -v schemathesis || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/schemathesis")"
export SPOTGUARD_TEST_SCHEMATHESIS

# pika publishes and subscribes as an integrator would; every process the tests start records
# its bus traffic, checked against docs/asyncapi.yaml after the suite
export SPOTGUARD_TEST_CONTRACT_PYTHON="$CONTRACT_PYTHON"
export SPOTGUARD_TEST_BUS_TAP_DIR="$ROOT/.spotguard/test/bus-tap"

# Integration tests share one broker and restart it, so nothing runs in parallel. The output is
# also kept in a log; on failure, its failing tests and expectations are repeated at the very end,
# where a CI excerpt shows them.
LOG="$ROOT/.spotguard/test/swift-test.log"
summarise() {
    kill "$MOTO_PID" 2>/dev/null || true
    deploy/stack.sh down test
    if [ -f "$LOG" ] && grep -q '✘' "$LOG"; then
        echo "[test] what failed (whole output in $LOG):"
        # each failed expectation with its comment lines (↳), the first ones first: they are the cause
        awk '/✘/ && !/^✘ Test run with/ { print; keep = 1; next } keep && /^ *↳/ { print; next } { keep = 0 }' "$LOG" |
            cut -c1-600 | head -n 40
    fi
}
trap summarise EXIT
swift test --skip-build --no-parallel 2>&1 | tee "$LOG"
"$CONTRACT_PYTHON" deploy/check-bus-contract.py messages "$SPOTGUARD_TEST_BUS_TAP_DIR"
