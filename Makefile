# The two set-up commands (README): `make run` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
VENDOR := api/static/vendor
LEAFLET := $(VENDOR)/leaflet/leaflet.js

# Python may write its bytecode caches (__pycache__/, ignored by git) even where the environment says not to: the
# suite starts several hundred Python processes (servers, workers, CLIs), each of which would otherwise compile
# Baton's 170-odd modules again, and each pytest process would re-rewrite every test module (13.8 s instead of
# 22.6 s to collect the suite, measured on the 2-core machine on 2026-12-03).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-fast system-packages lint bench soak clean vendor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python $(LEAFLET)
	$(BIN)/python -m pip install -q -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python $(LEAFLET)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@ $(STAMP_RUN)

# Leaflet (the map pages) from the npm package pinned in package-lock.json, copied into the static files the
# server sends: never from a CDN, and nothing fetched at run time. The install stamps above build it first.
NPM_MISSING := node and npm are missing: they install Leaflet for the map pages. Install them with:  sudo apt-get install -y nodejs npm

$(LEAFLET): package.json package-lock.json
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { echo "$(NPM_MISSING)" >&2; exit 1; }
	npm ci --no-audit --no-fund
	rm -rf $(VENDOR)/leaflet
	mkdir -p $(VENDOR)/leaflet
	cp -R node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css \
		node_modules/leaflet/dist/images node_modules/leaflet/LICENSE $(VENDOR)/leaflet/
	touch $@

vendor: $(LEAFLET)

run: $(STAMP_RUN)
	$(BIN)/baton demo

# PostgreSQL, Chromium, a CJK font, python3-venv, nodejs and npm from Debian: installed when this can (as root, or sudo without
# a password); otherwise it stops at once with the one command to run.
system-packages:
	.ci/system-packages

# Everything: lint, types and the whole suite, in TEST_PROCESSES parallel processes (pytest-xdist): most of a
# test's time is spent waiting on a server, a worker or a browser, so more processes than cores pay off.
TEST_PROCESSES ?= 4
test: system-packages $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -ra -n $(TEST_PROCESSES) --dist loadgroup --durations=30

# The fast tier alone: the tests that start no other process (no Prefect, workers, PostgreSQL or Chromium).
test-fast: $(STAMP_TEST)
	$(BIN)/python -m pytest -q -ra -n $(TEST_PROCESSES) --dist loadgroup -m "not slow"

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP_TEST)
	$(BIN)/python -m bench.counts --postgres
	$(BIN)/python -m bench.prefect_tasks
	$(BIN)/python -m bench

# The long soak (docs/reliability.md): `make test` runs the 40-second one; SOAK_SECONDS sets this one's length.
SOAK_SECONDS ?= 1800
soak: $(STAMP_TEST)
	BATON_SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m pytest -s -q -p no:cacheprovider tests/faults/test_soak.py

clean:
	rm -rf $(VENV) .baton build *.egg-info node_modules $(VENDOR)
