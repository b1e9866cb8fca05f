# scrubber — the two commands: `make lab` (live scrubbing in a namespace lab) and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Tests and the lab run optimised code with debug assertions and overflow checks on.
PROFILE ?= ci
BIN := target/$(PROFILE)

.PHONY: all deps build test lab bench bench-lab bench-rfc2544 bench-queues bench-scaling fuzz soak fmt lint clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --workspace --all-targets --profile $(PROFILE)

## make test: the whole suite — unit, property and fixture tests, then the root/namespace
## integration tests one at a time.
test: build
	$(CARGO) fmt --all -- --check
	# The fuzz targets live outside the workspace; keep them compiling (stable, no sanitizer).
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins --quiet
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

## make fuzz: every cargo-fuzz target for FUZZ_SECONDS each (stable toolchain: RUSTC_BOOTSTRAP=1
## lets cargo-fuzz pass its -Z sanitizer flags), seeded from the project's fixtures.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= parse pipeline quic amp syn config control
fuzz: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	$(CARGO) run --release -p benches --bin fuzz-seeds -- fuzz/corpus
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  echo "== fuzzing $$t for $(FUZZ_SECONDS)s"; \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 | tail -15 || exit 1; \
	done

## make bench-lab: worker CPU per packet of a minimal AF_XDP forwarder, bypass and full checks,
## and nftables in the netdev ingress hook, at one fixed rate (root; not part of make test).
bench-lab: build
	$(BIN)/scrubber lab bench $(BENCH_ARGS)

## make soak: the mixed lab scenario for SOAK_SECONDS (default 600) watched from outside: memory
## flat after warm-up, no counter going backwards, no error in the log (root; not in make test).
## make bench-rfc2544: throughput (RFC 2544 style search, loss tolerance 0.1 %) with full checks
## for frame sizes 64..1518 (root; not part of make test).
bench-rfc2544: build
	$(BIN)/scrubber lab bench --throughput $(BENCH_ARGS)

## make bench-queues: the throughput search through 1, 2, 4 and 8 queues, one always and more
## as the machine has two cores for each (a worker and a generator; QUEUES= overrides): clean 64-byte UDP, then
## the highest rate of each flood in FLOODS= absorbed (root; not part of make test).
QUEUES ?= 1 $(shell n=$$(nproc); for q in 2 4 8; do [ $$((2 * q)) -le $$n ] && echo $$q; done)
FLOODS ?= syn-flood udp-amp
bench-queues: build
	@for q in $(QUEUES); do \
	  $(BIN)/scrubber lab bench --throughput --queues $$q --sizes 64 --trial-seconds 1 $(BENCH_ARGS) || exit 1; \
	  for p in $(FLOODS); do \
	    $(BIN)/scrubber lab bench --throughput --queues $$q --profile $$p --trial-seconds 1 $(BENCH_ARGS) || exit 1; \
	  done; \
	done

## make bench-scaling: pipeline throughput against the number of pinned workers sharing one
## process's cross-worker tables, in memory (no root, no NIC; SCALING_ARGS= e.g. --cores 0,2,4).
bench-scaling: deps
	$(CARGO) run --release -p benches --bin worker-scaling -- $(SCALING_ARGS)

SOAK_SECONDS ?= 600
soak: build
	python3 scripts/soak.py --seconds $(SOAK_SECONDS) --bin $(BIN)/scrubber --ctl $(BIN)/scrubctl

bench: deps
	$(CARGO) bench -p benches

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
