# long-poll: `make` builds the static binary and runs server and client together.
# `make help` lists the targets.

SHELL := /bin/sh
VENV := .venv
# A Python without RUNPATH and with its shared library (staticx needs it): see build/find-python.sh.
PYTHON ?= $(shell build/find-python.sh 2>/dev/null)
PROFILE ?= small
BIN := dist/long-poll
STAMP := $(VENV)/.installed
SOURCES := $(wildcard longpoll/*.py) build/long-poll.spec build/entry.py build/freeze.sh build/staticx_onedir.py \
	build/xz_blocks.py build/bootloader.sh

.DEFAULT_GOAL := run
.PHONY: help run venv binary test test-fast images sizes bench lock clean binary-docker up down

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

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

# Which toolchain builds $(BIN): this machine's (a freezable Python, binutils, patchelf, musl-gcc),
# or else the Dockerfiles' builder stage (needs only Docker): see binary-docker.
HOST_TOOLS_OK := $(shell command -v ldd >/dev/null 2>&1 && command -v objcopy >/dev/null 2>&1 && command -v strip >/dev/null 2>&1 && command -v readelf >/dev/null 2>&1 && command -v patchelf >/dev/null 2>&1 && { [ "$(PROFILE)" != small ] || command -v musl-gcc >/dev/null 2>&1; } && echo yes)
ifeq ($(if $(PYTHON),$(HOST_TOOLS_OK)),yes)
$(BIN): $(STAMP) $(SOURCES)
	@echo "binary: building on this machine with $(PYTHON) (PROFILE=$(PROFILE))"
	PYTHON=$(VENV)/bin/python PROFILE=$(PROFILE) build/freeze.sh $@
else
$(BIN): $(SOURCES) pyproject.toml constraints.txt Dockerfile.multi.scratch
	@echo "binary: no freezable Python or no binutils/patchelf/musl-gcc here:"
	-@build/find-python.sh >/dev/null
	@echo "binary: building inside Docker's builder stage instead (make binary-docker)"
	$(MAKE) binary-docker
endif

test: $(STAMP) $(BIN) ## Run the whole test suite (builds the binary first for its end-to-end tests)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP) ## Run only the quick tests (no binary, no Docker)
	$(VENV)/bin/python -m pytest -m 'not binary and not docker'

bench: $(BIN) ## Measure size, start-up, footprint, held polls, throughput, events (BENCH_ARGS=--quick; BENCH_JSON=path)
	$(VENV)/bin/python scripts/bench.py $(BENCH_ARGS)

lock: ## Re-pin every dependency in constraints.txt to its newest release (then run make test)
	rm -rf build/work/lock-venv
	$(PYTHON) -m venv build/work/lock-venv
	build/work/lock-venv/bin/pip install --quiet '.[build,test]'
	{ sed -n '/^#/p' constraints.txt; build/work/lock-venv/bin/pip freeze --exclude-editable | grep -v '^long-poll'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf build/work/lock-venv

clean: ## Remove build output, work files and the virtual environment
	rm -rf dist build/work $(VENV) .pytest_cache

# --- Docker (see README, "Docker") ---------------------------------------------------------
DOCKER ?= docker
# The Dockerfiles `make images` and `make sizes` build (default: all six).
DOCKERFILES ?= $(sort $(wildcard Dockerfile.single.* Dockerfile.multi.*))
# `docker compose` (v2) when this docker has it, else docker-compose (v1).
COMPOSE ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 && echo "$(DOCKER) compose" || echo docker-compose)

binary-docker: ## Build dist/long-poll inside the Dockerfiles' builder stage (needs only Docker)
	PROFILE=$(PROFILE) DOCKER=$(DOCKER) scripts/docker-build.sh --binary $(BIN)

images: ## Build the images, tagged long-poll:<Dockerfile> (DOCKERFILES=... to choose)
	@failed=""; for f in $(DOCKERFILES); do \
	    DOCKER=$(DOCKER) scripts/docker-build.sh "$$f" "long-poll:$$f" || failed="$$failed $$f"; \
	done; \
	if [ -n "$$failed" ]; then echo "images: could not build:$$failed (no base image? scripts/make-stand-in-images.sh)" >&2; exit 1; fi

sizes: ## Build the images and print their sizes, start times and memory (dist/image-sizes.*)
	$(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3) scripts/image_sizes.py $(DOCKERFILES)

up: ## Start server and client with docker compose (DOCKERFILE=... to switch; Ctrl-C stops)
	$(COMPOSE) up --build

down: ## Stop and remove what `make up` started
	$(COMPOSE) down
