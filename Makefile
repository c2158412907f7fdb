# Webhook gateway -- developer and CI entry points.
#
#   make run     install the gateway into .venv and run it (embedded demo config)
#   make dev     the same as `webhook-gateway dev` (ARGS="--ngrok" for a public tunnel)
#   make test    install test deps (pip, and npm in tests/npm), start Redis + PostgreSQL, run pytest
#   make lint    ruff + mypy
#   make help    list every target
#
# Every pip install is pinned by constraints.txt. An install is recorded by a
# stamp file in .venv whose name carries a hash of pyproject.toml and
# constraints.txt, so re-running a target reinstalls only when those change.
# The providers' npm SDKs that tests use as oracles (tests/npm) are installed the
# same way: `npm ci` from package-lock.json, stamped in tests/npm/node_modules.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
CONSTRAINTS := constraints.txt
PIP         := $(BIN)/python -m pip
PIP_INSTALL := $(PIP) install --quiet --progress-bar off -c $(CONSTRAINTS)

# Extra arguments: make test PYTEST_ARGS="-k dedup -x"; make run ARGS="--config x.yaml"
PYTEST_ARGS ?=
ARGS        ?=

# Hash of everything that decides what is installed.
DEPS_HASH := $(shell cat pyproject.toml $(CONSTRAINTS) 2>/dev/null | sha256sum | cut -c1-16)
RUN_STAMP := $(VENV)/.installed-run-$(DEPS_HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(DEPS_HASH)

NPM_DIR   := tests/npm
NPM_HASH  := $(shell cat $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
NPM_STAMP := $(NPM_DIR)/node_modules/.installed-$(NPM_HASH)

.PHONY: help venv install install-dev npm-oracles run dev services test lint bench soak constraints clean distclean

help: ## Show this help
	@echo "Usage: make <target>"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

# --- virtualenv ---------------------------------------------------------------

venv: $(BIN)/python ## Create .venv if missing

# Debian's system python3 needs the python3-venv package for ensurepip; install
# it (as root) when venv creation fails, then retry once.
$(BIN)/python:
	@echo ">> creating $(VENV) with $(PYTHON)"
	@if ! $(PYTHON) -m venv $(VENV); then \
		rm -rf $(VENV); \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo ">> venv failed; installing python3-venv"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
			$(PYTHON) -m venv $(VENV); \
		else \
			echo "error: '$(PYTHON) -m venv' failed (on Debian: apt-get install python3-venv)" >&2; exit 1; \
		fi; \
	fi
	@$(PIP) install --quiet --progress-bar off --upgrade pip

# --- installs (stamped) -------------------------------------------------------

install: $(RUN_STAMP) ## Install the gateway (runtime deps) into .venv

install-dev: $(DEV_STAMP) ## Install the gateway with test + lint extras into .venv

$(RUN_STAMP): | $(BIN)/python
	@echo ">> pip install -e '.[dev]' (constraints: $(CONSTRAINTS))"
	@$(PIP_INSTALL) -e '.[dev]'
	@rm -f $(VENV)/.installed-run-*
	@touch $@

# The test/lint/dev extras include the runtime deps, so this satisfies RUN_STAMP too (the dev
# extra, pyngrok for `webhook-gateway dev --ngrok`, is in both installs). The otlp extra
# is there so the OTLP exporter path of gateway/tracing.py runs in tests (tests/test_tracing.py).
$(DEV_STAMP): | $(BIN)/python
	@echo ">> pip install -e '.[test,lint,otlp,dev]' (constraints: $(CONSTRAINTS))"
	@$(PIP_INSTALL) -e '.[test,lint,otlp,dev]'
	@rm -f $(VENV)/.installed-run-* $(VENV)/.installed-dev-*
	@touch $@ $(RUN_STAMP)

# The SDKs' engines ask for Node.js >= 20. Without node or npm: as root, Debian's
# nodejs and npm are installed; otherwise CI fails here, and a developer is warned
# (the npm oracle tests then fail, saying what is missing). `npm ci` empties
# node_modules first, so a new lock file leaves no stale stamp behind.
npm-oracles: $(NPM_STAMP) ## Install the providers' npm SDKs used as test oracles (tests/npm)

$(NPM_STAMP):
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo ">> node or npm missing; installing Debian's nodejs and npm"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
		elif [ "$${CI:-}" = true ]; then \
			echo "error: node and npm are needed for the npm SDK oracles in $(NPM_DIR) (on Debian: apt-get install nodejs npm)" >&2; exit 1; \
		else \
			echo "warning: node or npm missing: $(NPM_DIR) not installed, its oracle tests will fail (on Debian: apt-get install nodejs npm)" >&2; exit 0; \
		fi; \
	fi; \
	major=$$(node -p 'process.versions.node.split(".")[0]'); \
	if [ "$$major" -lt 20 ]; then echo "warning: node $$(node --version): the SDKs in $(NPM_DIR) ask for Node.js >= 20" >&2; fi; \
	echo ">> npm ci --prefix $(NPM_DIR) (node $$(node --version), npm $$(npm --version))"; \
	npm ci --no-audit --no-fund --prefix $(NPM_DIR); \
	touch $@

# --- run ----------------------------------------------------------------------

run: install ## Run the gateway (no ARGS = embedded demo config)
	$(BIN)/webhook-gateway run $(ARGS)

dev: install ## Run `webhook-gateway dev`: banner + a line per webhook (ARGS="--ngrok" for a tunnel)
	$(BIN)/webhook-gateway dev $(ARGS)

# --- tests and checks ---------------------------------------------------------

services: ## Ensure Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, db test) are up
	@bash scripts/services.sh

# pytest exit code 5 means "no tests collected": treat it as a failure, loudly.
test: install-dev npm-oracles services ## Install test deps, start services, run pytest
	@rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; \
	exit $$rc

# Both checkers always run, so one report shows every problem; either failing fails.
lint: install-dev ## ruff check + mypy (strict, on gateway/)
	@rc=0; \
	echo ">> ruff check ."; $(BIN)/ruff check . || rc=1; \
	echo ">> mypy gateway"; $(BIN)/mypy gateway || rc=1; \
	exit $$rc

# --- benchmark ----------------------------------------------------------------

bench: install-dev services ## Run the load benchmark (bench/run.sh)
	@if [ ! -f bench/run.sh ]; then echo "error: bench/run.sh not found" >&2; exit 1; fi
	PATH="$(CURDIR)/$(BIN):$$PATH" bash bench/run.sh $(ARGS)

# A soak: the gateway at ~80% of its measured peak for DURATION seconds (default 600), loopback only.
DURATION ?= 600
soak: install-dev services ## Soak at 80% of peak for DURATION s (default 600): RSS samples, errors, verdict
	PATH="$(CURDIR)/$(BIN):$$PATH" BENCH_SCRIPT=soak.py bash bench/run.sh --duration $(DURATION) $(ARGS)

# --- maintenance --------------------------------------------------------------

constraints: install-dev ## Regenerate constraints.txt from the current .venv
	@{ echo "# Pinned versions for every pip install in this project (pip install -c constraints.txt ...)."; \
	   echo "# Regenerate from a working venv with: make constraints"; \
	   $(PIP) freeze --exclude-editable | grep -viE '^(webhook[-_]gateway)([=@ ]|$$)|^-e |^#'; \
	 } > $(CONSTRAINTS).new
	@mv $(CONSTRAINTS).new $(CONSTRAINTS)
	@echo ">> wrote $(CONSTRAINTS) ($$(grep -vc '^#' $(CONSTRAINTS)) pins)"

clean: ## Remove caches and build output (keeps .venv)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean ## clean + remove .venv
	rm -rf $(VENV)
