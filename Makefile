# fiscus — the commands a developer and CI use. `make help` lists them.

DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_URL ?= redis://127.0.0.1:6379
REDIS_CLUSTER_URL ?= redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
export DATABASE_URL REDIS_URL REDIS_CLUSTER_URL

CARGO ?= cargo
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: help run test contract bench services redis-cluster cluster lint fmt build helm-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: ## the whole cluster in one process on embedded defaults (SQLite + in-process cache)
	$(CARGO) run -p fiscus -- dev

test: services redis-cluster helm-check ## every test: Rust (nextest), the Python contract tests, the Helm chart
	$(CARGO) build --workspace --bins
	$(CARGO) run --quiet -p fiscus-e2e --bin sweep-schemas
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
endif
	@$(MAKE) --no-print-directory contract FISCUS_BIN_DIR=$(CURDIR)/target/debug

contract: services ## the contract as a Python client sees it through reflection alone, on both backends
ifndef FISCUS_BIN_DIR
	$(CARGO) build --workspace --bins
endif
	python=$$(deploy/local/venv.sh contract tests/contract/requirements.txt) && \
		PYTHONDONTWRITEBYTECODE=1 "$$python" -m pytest tests/contract $(PYTEST_ARGS)

bench: services ## `fiscus bench`, release build: SignReceipt (with and without metrics) beside the storage floor, SignReceipt for an e-barimt merchant (POSAPI up, down) and the outbox drain, SignReceipt for a fiskaltrust merchant (50 ms signing) and 10,000 late-signed receipts drained, cached GetAccessToken and CreateQr + GetPaymentStatus beside the gRPC floor, WatchPayment fan-out, CloseShift on a long shift
	$(CARGO) run --release -p fiscus -- bench

services: ## make sure Postgres and Redis answer (starts or installs them when it can)
	@deploy/local/ensure-services.sh

redis-cluster: ## make sure the three-master Redis Cluster of the tests answers (starts it when it can)
	@deploy/local/ensure-redis-cluster.sh

cluster: services build ## the four services as separate processes against Postgres + Redis
	deploy/local/cluster.sh

build:
	$(CARGO) build --workspace --bins

lint: ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

helm-check: ## lint and render the Helm chart, validate every object, unit-test the alerts (no cluster needed)
	@deploy/local/ensure-promtool.sh
	@python=$$(deploy/local/venv.sh helm-check helm/check/requirements.txt) && "$$python" helm/check/check.py
