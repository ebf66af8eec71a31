# Wiresens developer entry points. `make node` runs a node on the embedded defaults;
# `make test` installs what the tests need, starts the services and runs the suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: venv node test lint typecheck layers pytest bench clean

$(STAMP): pyproject.toml setup.py wiresens/_depthparse.c wiresens/backtest/_simcore.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

node: $(STAMP)
	$(VENV)/bin/wiresens node up

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy -p wiresens

layers: $(STAMP)
	$(VENV)/bin/lint-imports

pytest: $(STAMP)
	bash scripts/test-services.sh $(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck layers pytest

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
