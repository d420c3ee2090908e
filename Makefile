# The newcomer contract: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The servers the tests start (Azurite for Azure Blob Storage) come from npm, into the project.
NODE_STAMP := node_modules/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP) $(NODE_STAMP)

# Reinstall only when the project's dependencies change: keeps `make test` idempotent and quick.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# npm ci installs exactly the committed lock (no resolution, no lock rewrite); rerun only when
# package.json or the lock change, so `make test` stays quick after the first install.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

demo: install
	$(BIN)/asyncdl demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check asyncdl tests benchmarks
	$(BIN)/ruff format --check asyncdl tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) node_modules demo-scores .pytest_cache .mypy_cache .ruff_cache
