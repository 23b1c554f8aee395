# imshop-push: every target sets itself up on first use (venv + the locked, hash-checked dependencies).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Hand-edited requirements (direct dependencies, pinned) and the lock files `make lock` resolves from them.
LAYER_REQUIREMENTS := layers/imshop_push/requirements.txt
LAYER_LOCK := layers/imshop_push/requirements.lock
DEV_REQUIREMENTS := requirements-dev.txt
DEV_LOCK := requirements-dev.lock
UV_VERSION := 0.13.9
export PYTHONPATH := $(CURDIR)/layers/imshop_push:$(CURDIR)/functions/send_notifications:$(CURDIR)/local
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= eu-central-1
# The venv's bin first: `sam build` looks for python3.13 on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

# A Python 3.13 from PATH, else from pyenv; empty when there is none.
define find_python
for c in python3.13 python3; do \
  p=$$(command -v $$c 2>/dev/null) && "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && { echo "$$p"; exit 0; }; \
done; \
if command -v pyenv >/dev/null 2>&1; then \
  v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$$' | sort -V | tail -n 1); \
  [ -n "$$v" ] && PYENV_VERSION=$$v pyenv which python3.13 2>/dev/null; \
fi
endef

define require_python
py=$$($(find_python)); \
if [ -z "$$py" ]; then \
  echo "error: Python 3.13 not found (looked for python3.13 on PATH and a 3.13 under pyenv)." >&2; \
  echo "       Install it (e.g. 'pyenv install 3.13') or put a python3.13 on PATH." >&2; exit 1; \
fi
endef

# Every pin of a requirements file must be in its lock, and the layer's lock in the dev lock (the tests run what
# ships): a requirements file edited without `make lock` stops here instead of installing what the lock says.
define check_locks
in_lock() { \
  for pin in $$(sed -E 's/#.*//; s/\[[^]]*\]//; s/[[:space:]]//g; /^-/d; /^$$/d' "$$1"); do \
    awk -v pin="$$pin" 'tolower($$1) == tolower(pin) { found = 1 } END { exit !found }' "$$2" || { \
      echo "error: $$pin ($$1) is not in $$2: run 'make lock'" >&2; return 1; }; \
  done; \
}; \
in_lock $(DEV_REQUIREMENTS) $(DEV_LOCK) && in_lock $(LAYER_REQUIREMENTS) $(LAYER_LOCK) && \
in_lock <(grep -E '^[a-z0-9]' $(LAYER_LOCK) | cut -d' ' -f1) $(DEV_LOCK)
endef

# pytest side by side in PYTEST_WORKERS processes (pytest-xdist): most integration tests wait on scaled windows
# rather than compute, so more processes than cores keep the CPU busy, and a free process takes the next test.
# Tests marked cpu_heavy (they load the CPU and assert timing under load) then run alone, in one process, as in a
# serial run: their verdicts never depend on what runs beside them. Both phases run; either failing fails.
# PYTEST_WORKERS=0: everything in one process.
PYTEST_WORKERS ?= 3
define run_pytest
$(if $(filter 0,$(PYTEST_WORKERS)),$(BIN)/pytest $(1),\
rc=0; \
$(BIN)/pytest -n $(PYTEST_WORKERS) --dist load --maxschedchunk 1 -m "not cpu_heavy" $(1) || { r=$$?; [ $$r -eq 5 ] || rc=$$r; }; \
$(BIN)/pytest -m cpu_heavy $(1) || { r=$$?; [ $$r -eq 5 ] || rc=$$r; }; \
exit $$rc)
endef

.PHONY: help setup lock lint typecheck template-check unit integration test pytest-suite demo bench invoke dlq redrive status build clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): $(DEV_LOCK) $(LAYER_LOCK) $(DEV_REQUIREMENTS) $(LAYER_REQUIREMENTS)
	@$(check_locks)
	@$(require_python); \
	echo "==> creating $(VENV) with $$py"; \
	"$$py" -m venv $(VENV) && \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(DEV_LOCK) && \
	{ out=$$($(BIN)/python -m pip check --disable-pip-version-check) || { echo "$$out" >&2; exit 1; }; } && \
	touch $(STAMP)

setup: $(STAMP) ## create the venv and install the locked dependencies (hash-checked)

# Maintainers only: uv lives in a throwaway venv, never in .venv, and `make` itself never needs it.
lock: ## re-resolve both lock files after editing a requirements file (LOCK_ARGS=--upgrade: newest allowed)
	@$(require_python); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	"$$py" -m venv "$$tmp" && \
	"$$tmp/bin/python" -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) && \
	"$$tmp/bin/uv" pip compile --quiet --generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS) \
	  --python-version 3.13 --python-platform aarch64-manylinux2014 \
	  -o $(LAYER_LOCK) $(LAYER_REQUIREMENTS) && \
	"$$tmp/bin/uv" pip compile --quiet --generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS) \
	  --python-version 3.13 --universal -c $(LAYER_LOCK) \
	  -o $(DEV_LOCK) $(DEV_REQUIREMENTS)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy (strict)
	$(BIN)/mypy

template-check: $(STAMP) ## cfn-lint and sam validate --lint
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region $(AWS_DEFAULT_REGION)

unit: $(STAMP) ## unit tests only
	$(call run_pytest,tests/unit)

integration: $(STAMP) ## integration tests only (moto server + IMSHOP sandbox on loopback)
	$(call run_pytest,tests/integration)

# The static checks run beside the tests, not before them: together they take little more than the tests alone.
# Each target's lines come whole (--output-sync=line); any failure fails `make test` once all have finished.
test: $(STAMP) ## the whole suite: lint, types, template, unit + integration tests
	@$(MAKE) --no-print-directory -j 4 --output-sync=line lint typecheck template-check pytest-suite

pytest-suite: $(STAMP)
	$(call run_pytest,)

demo: $(STAMP) ## run the dispatcher locally against the sandbox and a local AWS emulator
	$(BIN)/python -m imshop_push_local.demo

bench: $(STAMP) ## the benchmark (figures vs baselines; bench/, one module per figure)
	$(BIN)/python -m bench

invoke: $(STAMP) ## run the handler once on an event, no Docker (EVENT=events/order_status.json; no EVENT: list them)
	$(BIN)/python -m imshop_push_local.invoke $(EVENT) $(if $(ENV_VARS),--env-vars $(ENV_VARS))

dlq: $(STAMP) ## list dead-lettered messages with reasons (DLQ_URL=... or LANE=bulk, does not delete)
	$(BIN)/python -m imshop_push_local.dlq list $(if $(DLQ_URL),--dlq-url $(DLQ_URL)) $(if $(LANE),--lane $(LANE)) $(if $(FORCE),--force)

redrive: $(STAMP) ## move dead-lettered messages back to the source queue (DLQ_ARN=... or LANE=bulk [QUEUE_ARN=...])
	$(BIN)/python -m imshop_push_local.dlq redrive --dlq-arn "$(DLQ_ARN)" $(if $(QUEUE_ARN),--destination-arn $(QUEUE_ARN)) $(if $(LANE),--lane $(LANE))

# KEY and RECIPIENT reach the command through the environment (make exports command-line variables): a key
# with quotes or spaces is passed as it is.
status: $(STAMP) ## where is my push? KEY=<idempotencyKey> [RECIPIENT=<userId or installId>] [JSON=1] [STACK=name]
	@[ -n "$$KEY" ] || { echo "usage: make status KEY=<idempotencyKey> [RECIPIENT=...] [JSON=1]" >&2; exit 2; }
	@$(BIN)/python -m imshop_push_local.status --key "$$KEY" $${RECIPIENT:+--recipient "$$RECIPIENT"} $(if $(JSON),--json) $(if $(STACK),--stack-name "$(STACK)")

build: $(STAMP) ## sam build (no Docker needed)
	$(BIN)/sam build --template template.yaml

clean: ## remove the venv, caches and build output
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
