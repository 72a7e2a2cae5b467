# Channelkit: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PYTHON_BOOT ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install generate check-generated lint format typecheck check test run dev bench

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools
	# compat mode: a plain path entry, which mypy can follow (the default import hook it cannot)
	$(PY) -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP) ## create .venv with the project and its dev extras

generate: $(STAMP) ## regenerate generated/ from channels.yaml
	$(PY) -m runtime generate

.PHONY: docs
docs: $(STAMP) ## regenerate docs/channels-yaml.md from the schema
	$(PY) -m generator.reference_doc > docs/channels-yaml.md

check-generated: $(STAMP) ## fail if generated/ is not what channels.yaml generates
	$(PY) -m runtime generate --check

lint: $(STAMP) ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## ruff format and fix what can be fixed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

typecheck: $(STAMP) ## mypy --strict on generator, runtime, generated, handlers, tests, bench
	$(PY) -m mypy generator runtime generated notifications tests bench

check: lint typecheck check-generated ## everything CI checks besides the tests

test: $(STAMP) ## run the test suite (starts an embedded Redis when REDIS_URL is unset)
	$(PY) -m pytest

run: $(STAMP) ## generate, then serve the notification app (embedded Redis without REDIS_URL)
	$(PY) -m runtime generate
	$(PY) -m runtime serve

dev: $(STAMP) ## serve the notification app, regenerating and restarting on every change
	$(PY) -m runtime serve --reload

bench: $(STAMP) ## run every benchmark (~10 min; QUICK=1 for a short run), write docs/benchmarks.md
	$(PY) bench/run_all.py $(if $(QUICK),--quick,)

.PHONY: chaos
chaos: $(STAMP) ## long chaos run: 10,000 jobs, processes SIGKILLed, Redis restarted, a cluster primary killed
	CHAOS_JOBS=10000 CHAOS_SECONDS=60 CLUSTER_CHAOS_JOBS=10000 $(PY) -m pytest tests/chaos -s -v
