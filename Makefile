# imshop-push: every target sets itself up on first use (venv + pinned deps).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
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

.PHONY: help setup lint typecheck template-check unit integration test demo bench dlq redrive build clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): layers/imshop_push/requirements.txt requirements-dev.txt
	@py=$$($(find_python)); \
	if [ -z "$$py" ]; then \
	  echo "error: Python 3.13 not found (looked for python3.13 on PATH and a 3.13 under pyenv)." >&2; \
	  echo "       Install it (e.g. 'pyenv install 3.13') or put a python3.13 on PATH." >&2; exit 1; \
	fi; \
	echo "==> creating $(VENV) with $$py"; \
	"$$py" -m venv $(VENV) && \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt && \
	touch $(STAMP)

setup: $(STAMP) ## create the venv and install pinned dependencies

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy (strict)
	$(BIN)/mypy

template-check: $(STAMP) ## cfn-lint and sam validate --lint
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region $(AWS_DEFAULT_REGION)

unit: $(STAMP) ## unit tests only
	$(BIN)/pytest tests/unit

integration: $(STAMP) ## integration tests only (moto server + IMSHOP sandbox on loopback)
	$(BIN)/pytest tests/integration

test: lint typecheck template-check $(STAMP) ## the whole suite: lint, types, template, unit + integration tests
	$(BIN)/pytest

demo: $(STAMP) ## run the dispatcher locally against the sandbox and a local AWS emulator
	$(BIN)/python -m imshop_push_local.demo

bench: $(STAMP) ## the benchmark (figures vs baselines; bench/, one module per figure)
	$(BIN)/python -m bench

dlq: $(STAMP) ## list dead-lettered messages with reasons (DLQ_URL=..., does not delete)
	$(BIN)/python -m imshop_push_local.dlq list $(if $(DLQ_URL),--dlq-url $(DLQ_URL))

redrive: $(STAMP) ## move dead-lettered messages back to the source queue (DLQ_ARN=... [QUEUE_ARN=...])
	$(BIN)/python -m imshop_push_local.dlq redrive --dlq-arn "$(DLQ_ARN)" $(if $(QUEUE_ARN),--destination-arn $(QUEUE_ARN))

build: $(STAMP) ## sam build (no Docker needed)
	$(BIN)/sam build --template template.yaml

clean: ## remove the venv, caches and build output
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
