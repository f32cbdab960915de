# long-poll: `make` builds the static binary and runs server and client together.
# `make help` lists the targets.

SHELL := /bin/sh
VENV := .venv
# A Python without RUNPATH and with its shared library (staticx needs it): see build/find-python.sh.
PYTHON ?= $(shell build/find-python.sh 2>/dev/null)
PROFILE ?= small
BIN := dist/long-poll
STAMP := $(VENV)/.installed
SOURCES := $(wildcard longpoll/*.py) build/long-poll.spec build/entry.py build/freeze.sh

.DEFAULT_GOAL := run
.PHONY: help run venv binary test test-fast images sizes bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: $(BIN) ## Build the binary, then run server and client in one process (Ctrl-C stops)
	ENABLE_CLIENT=true ./$(BIN)

venv: $(STAMP) ## Create .venv with the project, its build tools and test tools

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { build/find-python.sh >/dev/null; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[build,test]'
	touch $@

binary: $(BIN) ## Build dist/long-poll (PROFILE=small|fast)

$(BIN): $(STAMP) $(SOURCES)
	PYTHON=$(VENV)/bin/python PROFILE=$(PROFILE) build/freeze.sh $@

test: $(STAMP) $(BIN) ## Run the whole test suite (builds the binary first for its end-to-end tests)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP) ## Run only the quick tests (no binary, no Docker)
	$(VENV)/bin/python -m pytest -m 'not binary and not docker'

clean: ## Remove build output, work files and the virtual environment
	rm -rf dist build/work $(VENV) .pytest_cache
