# SpotGuard: the whole system on one machine. Scripts live in deploy/.
.PHONY: help up down test bench chaos soak replay backtest status build drill screenshots format agent-package

help:      ## this list (make with no target)
	@grep -E '^[a-z-]+: +##' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+): +## /  make \1\t/' | expand -t 24

up:        ## install what is missing, start PostgreSQL + RabbitMQ + every service + the simulated fleet (HA=1: three RabbitMQ nodes)
	SPOTGUARD_HA=$(HA) deploy/stack.sh up dev

down:      ## stop everything `make up` (or an interrupted `make test`) started
	deploy/stack.sh down dev
	deploy/stack.sh down test

test:      ## fresh private stack, build, the whole test suite
	deploy/test.sh

bench:     ## benchmark figures (release build, private stack); BENCH_LONG=1 adds a 30-minute soak
	deploy/bench.sh

chaos:     ## fault suite: kill -9 of every service, broker and database restarts, network faults, 3 copies (release build, private stack)
	deploy/chaos.sh

soak:      ## a steady load for an hour against the demo stack (SOAK_MINUTES=…): fails if memory, descriptors or p99 grow
	deploy/soak.sh

replay:    ## price history through ingest and the SEF (../shared/data's, else generated sample data); interpolation error per method
	deploy/replay.sh

backtest:  ## decision strategies replayed over price history: ../shared/data's, else generated sample data (no stack needed)
	deploy/backtest.sh

agent-package: ## the agent as a Debian package in .build/packages/ (release build, the Swift runtime linked in)
	deploy/stack.sh package-deps
	swift build -c release --product spotguard-agent --static-swift-stdlib
	deploy/agent-package.sh "$$(swift build -c release --show-bin-path)/spotguard-agent" .build/packages

drill:     ## failover drill on the running demo: make drill AGENT=sim-01-c5.large [KIND=rebalance|loss]
	. .spotguard/env && "$$(swift build --show-bin-path)/spotguard-sim" drill --agent "$(AGENT)" --kind "$(or $(KIND),termination)"

screenshots: ## every dashboard page of the running demo in headless Chromium: PNG + rendered DOM in .spotguard/screenshots/
	deploy/screenshots.sh

status:    ## what runs where in the `make up` stack
	deploy/stack.sh status dev

build:     ## debug build of every executable
	swift build

format:    ## lay out the Swift sources as .swift-format says (make test fails on any difference)
	swift format format --in-place --recursive --configuration .swift-format Services Shared Tools Tests Plugins Package.swift
