# scrubber — the two commands: `make lab` (live scrubbing in a namespace lab) and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Tests and the lab run optimised code with debug assertions and overflow checks on.
PROFILE ?= ci
BIN := target/$(PROFILE)

.PHONY: all deps build test unit-test integration-test lab lab-sim bench bench-lab fuzz soak fmt lint clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --workspace --all-targets --profile $(PROFILE)

## make test: the whole suite — unit, property and fixture tests, then the root/namespace
## integration tests one at a time.
test: build
	$(CARGO) fmt --all -- --check
	$(CARGO) test --workspace --profile $(PROFILE) --exclude tests
	SCRUBBER_BIN=$(CURDIR)/$(BIN)/scrubber $(CARGO) test -p tests --profile $(PROFILE) -- --test-threads=1

## make lab: the mixed scenario end to end in the namespace lab (root): the daemon scrubbing a
## live attack at 70 % of the lab's measured ceiling while real clients use origin's services;
## a table each second, then the report. SCENARIO=, LAB_SECONDS= and LAB_ARGS= (e.g. --json) adjust it.
SCENARIO ?= mixed
LAB_SECONDS ?= 10
lab: build
	$(BIN)/scrubber lab run --scenario $(SCENARIO) --seconds $(LAB_SECONDS) $(LAB_ARGS)

## make lab-sim: the mixed scenario through the pipeline in memory (no root, no namespaces).
lab-sim: build
	$(BIN)/scrubber sim --config configs/lab.toml

## make bench-lab: worker CPU per packet of a minimal AF_XDP forwarder, bypass and full checks,
## and nftables in the netdev ingress hook, at one fixed rate (root; not part of make test).
bench-lab: build
	$(BIN)/scrubber lab bench $(BENCH_ARGS)

bench: deps
	$(CARGO) bench -p benches

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
