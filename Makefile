# The two set-up commands (README): `make demo` and `make test`, on Debian 12 as root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
PREFIX ?= /opt/cni
DESTDIR ?=
# make bench ITERATIONS=N (per measured command; default in bench/__main__.py), BENCH_ARGS=...
ITERATIONS ?=
BENCH_ARGS ?=

.PHONY: deps lint test test-unit test-root demo build install bench stress conformance conformance-reference clean

deps:
	@./build/setup-deps.sh
	@./build/src-bin.sh

# dist/cni-bin: one single-file binary, the plugin names linked to it (docs/build.md)
build: deps
	@./build/build.sh

# into $(DESTDIR)$(PREFIX)/bin by write-then-rename (docs/build.md, "Installing")
install: build
	@./build/install.sh "$(DESTDIR)$(PREFIX)/bin" $(if $(DESTDIR),,--warm)

# ours against the reference plugins, interleaved; report in bench/out (docs/performance.md)
bench: build
	$(PY) -m bench $(if $(ITERATIONS),--iterations $(ITERATIONS)) $(BENCH_ARGS)

# ruff (lint and format) and mypy on common/ and the plugins; settings in pyproject.toml
LINTED := common $(wildcard cni_*)
lint: deps
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

# every tier; the conformance and build tests run against the built binaries too
test: lint build
	$(PYTEST) -q

test-unit: deps
	$(PYTEST) -q -m unit

# the black-box suite alone: ours (source and built), or the reference plugins (docs/conformance.md)
conformance: build
	$(PY) -m conformance -q -rs

conformance-reference: deps
	$(PY) -m conformance --bin-dir /usr/lib/cni -q -rs

# the full stress and fault run against the built binaries (docs/reliability.md)
stress: build
	$(PY) -m stress --ops 10000 --report dist/stress-report.md
	$(PY) -m stress.killtop --kills 1000 --real-minute --report dist/killtop-report.json

demo: build
	$(PY) -m demo

clean:
	rm -rf dist build/work .pytest_cache
