# spanledger: the commands a new user types. Every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
NODE_DEPS := node_modules/.install-stamp

# spanledger runs on Node 24 LTS: when the node on PATH is older, every target runs on a
# project-local Node 24 fetched once from the npm registry (scripts/node.sh, .cache/node24).
NODE24_BIN := $(shell bash scripts/node.sh)
ifneq ($(.SHELLSTATUS),0)
$(error no Node 24 to run on (see the line above))
endif
ifneq ($(NODE24_BIN),)
export PATH := $(NODE24_BIN):$(PATH)
endif
export KAFKAJS_NO_PARTITIONER_WARNING := 1

.PHONY: help install build test test-unit test-integration kafka-up kafka-down kafka-cluster-up kafka-cluster-down s3-up s3-down demo up down bench profile clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(NODE_DEPS): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NODE_DEPS) ## install dependencies (npm ci) and build, on Node 24 (fetched into .cache/node24 when yours is older)
	npm run build

build: $(NODE_DEPS) ## compile TypeScript to dist/
	npm run build

test: install ## the whole suite: unit tests, then integration tests on a real Kafka broker (started if needed), one file at a time
	@mkdir -p .cache; rm -f .cache/vitest-unit.json .cache/vitest-integration.json
	npx vitest run --project unit --reporter=default --reporter=json --outputFile.json=.cache/vitest-unit.json; unit=$$?; \
	  npx vitest run --project integration --no-file-parallelism --reporter=default --reporter=json --outputFile.json=.cache/vitest-integration.json; integration=$$?; \
	  node scripts/test-summary.mjs .cache/vitest-unit.json .cache/vitest-integration.json; \
	  [ $$unit -eq 0 ] && [ $$integration -eq 0 ]

test-unit: install ## unit tests only (no broker)
	npx vitest run --project unit

test-integration: install ## integration tests only, one file at a time
	npx vitest run --project integration --no-file-parallelism

kafka-up: ## start a local single-node KRaft Kafka broker on 127.0.0.1:$${KAFKA_PORT:-9092} (no Docker)
	bash scripts/kafka.sh up

kafka-down: ## stop the local broker
	bash scripts/kafka.sh down

kafka-cluster-up: ## start a local 3-broker KRaft cluster on 127.0.0.1:19092,19094,19096 (RF 3, min ISR 2; no Docker)
	bash scripts/kafka.sh cluster up

kafka-cluster-down: ## stop the local 3-broker cluster
	bash scripts/kafka.sh cluster down

s3-up: ## start a local S3-compatible server (versitygw, built once with Go) on 127.0.0.1:$${S3_PORT:-7070}; `eval "$$(bash scripts/s3.sh env)"` points spanledger at it
	bash scripts/s3.sh up

s3-down: ## stop the local S3 server
	bash scripts/s3.sh down

demo: install kafka-up ## without Docker: local broker, workers (an archive worker too when versitygw can be built: scripts/s3.sh), a sample load, then a summary
	@if bash scripts/s3.sh up; then eval "$$(bash scripts/s3.sh env)"; node bin/spanledger.js demo; \
	  else echo "demo: no local S3 server (see the line above): the archive worker is not run"; node bin/spanledger.js demo; fi

up: ## with Docker: broker and workers via Docker Compose
	docker compose up --build -d
	@echo "spanledger is up: 'docker compose logs -f span-worker' to follow, 'make down' to stop"

down: ## stop the Docker Compose stack
	docker compose down

bench: install ## throughput and latency against the targets, side by side with a baseline (BENCH_ARGS=--sustained, --quick, ...)
	node bench/run.mjs $(BENCH_ARGS)

profile: install ## CPU flame graph of a worker draining a backlog: make profile WORKER=spans|signals|rules [COUNT=N] [TENANTS=N] [PROFILE_OUT=dir]
	@case "$(WORKER)" in spans|signals|rules) ;; *) echo "usage: make profile WORKER=spans|signals|rules [COUNT=N] [PROFILE_OUT=dir]"; exit 2;; esac
	node bench/profile.mjs --worker $(WORKER) $(if $(COUNT),--count $(COUNT)) $(if $(TENANTS),--tenants $(TENANTS)) $(if $(PROFILE_OUT),--out $(PROFILE_OUT))

clean: ## remove build output and local data (not the broker jar cache)
	rm -rf dist data
