# Wiresens developer entry points. `make node` runs a node on the embedded defaults;
# `make test` installs what the tests need, starts the services and runs the suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: venv node test lint typecheck layers pytest bench bench-peers clean

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

# The back-tester beside hftbacktest and NautilusTrader, in a venv of its own: they are
# no test dependencies (~1.5 GB), and Numba pins an older numpy than the project's venv.
PEERS_VENV := .venv-peers
bench-peers:
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip
	$(PEERS_VENV)/bin/pip install -q -e '.[peers]'
	$(PEERS_VENV)/bin/python -m benchmarks backtest_peers --runs 3 $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache .mypy_cache .ruff_cache
