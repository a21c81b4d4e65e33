# The two set-up commands (README): `make demo` and `make test`, on Debian 12 as root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
PREFIX ?= /opt/cni
DESTDIR ?=

.PHONY: deps test test-unit test-root demo build install bench stress conformance conformance-reference clean

deps:
	@./build/setup-deps.sh
	@./build/src-bin.sh

test: deps
	$(PYTEST) -q

test-unit: deps
	$(PYTEST) -q -m unit

demo: deps
	$(PY) -m demo

clean:
	rm -rf dist build/work .pytest_cache
