# The newcomer contract: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

# Reinstall only when the project's dependencies change: keeps `make test` idempotent and quick.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

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
	rm -rf $(VENV) demo-scores .pytest_cache .mypy_cache .ruff_cache
