# The two commands: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-pg test-pg-slow test-slow test-dist dist lint clean bench bench-quick bench-pg fuzz
.PHONY: fuzz-pg screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	mkdir -p var
	$(BIN)/acs serve $(if $(CONFIG),--config $(CONFIG),)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The suite again on the PostgreSQL engine: tests/conftest.py starts a throwaway server
# (Debian's postgresql package, tests/pgserver.py) and gives every test its own database.
test-pg: $(STAMP)
	ACS_TEST_ENGINE=postgresql $(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The slow end-to-end tests of nodes, leases and kill -9 on PostgreSQL. Not the soak: a
# thousand CPEs bootstrapping at once get 503s past its patience on the PostgreSQL engine
# as it is (about 100 sessions/s per process, README "Performance").
test-pg-slow: $(STAMP)
	ACS_TEST_ENGINE=postgresql $(BIN)/python -m pytest -q -m slow \
	    tests/test_e2e_leases.py tests/hostile/test_hostile_crash.py

# Issue 14: dist/acs, the single-file appliance (PyInstaller, pinned in
# packaging/requirements-dist.txt; needs gcc, zlib1g-dev and patch for its bootloader), then
# the test that builds it and runs it alone, also with a noexec TMPDIR (needs root).
dist:
	$(PYTHON) packaging/build.py

test-dist: $(STAMP)
	$(BIN)/python -m pytest -q -m dist tests/test_dist.py

# The dashboard's main pages as PNG files (docs/screenshots/, or $SCREENSHOTS), from a real
# appliance and a simulated fleet in headless Chromium (Debian's `chromium` must be installed).
screenshots: $(STAMP)
	ACS_BROWSER_REQUIRED=1 $(BIN)/python -m pytest -q -m screenshots tests/test_ui_screenshots.py

# Issue 5's benchmark: ACS, ceiling server and load generators as separate processes on
# 127.0.0.1; a table, then one JSON object on the last line. bench < 10 min, bench-quick about 1 min.
bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

# The same scenarios with the ACS on a throwaway PostgreSQL server (Debian's postgresql).
bench-pg: $(STAMP)
	$(BIN)/python -m bench --engine postgresql

# Issue 9: schemathesis against the live OpenAPI document of an ACS on 127.0.0.1, with an
# admin and a scoped operator token, under 5 minutes; exits non-zero on any failure.
fuzz: $(STAMP)
	$(BIN)/python -m fuzz

# The same with the ACS on a throwaway PostgreSQL server (Debian's postgresql).
fuzz-pg: $(STAMP)
	$(BIN)/python -m fuzz --engine postgresql

lint: $(STAMP)
	$(BIN)/ruff check acs api cpe_sim bench fuzz tests packaging
	$(BIN)/ruff format --check acs api cpe_sim bench fuzz tests packaging
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var build dist .pytest_cache .mypy_cache .ruff_cache
