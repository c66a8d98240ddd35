# Two commands for a newcomer: `make demo` and `make test`. Both create the virtualenv and install.
# For developers: `make test-fast` (no browser, PostgreSQL, cluster or slow tests), `make lint`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_CONSTRAINTS ?= constraints/cpu-dev.txt
export QUANTA_CACHE_DIR ?= $(CURDIR)/.quanta_cache
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: demo test test-fast lint install sysdeps ui bench clean

$(VENV)/.installed: pyproject.toml $(PIP_CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(PIP_CONSTRAINTS) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Debian packages the end-to-end tests need: chromium, postgresql; Slurm, munge, MariaDB, Redis.
sysdeps:
	bash scripts/install-system-deps.sh
	bash scripts/install-cluster-deps.sh

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# Run the whole pipeline on the embedded demo suite (mini-Pile + locally trained GPT-NeoX).
demo: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m quanta_assets.instance_setup
	$(PY) -m quanta_assets.demo

# Every test, end-to-end ones included (what CI runs).
test: install sysdeps lint
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# The quick loop while developing: core and asset tests, no browser / PostgreSQL / cluster / slow.
test-fast: install
	$(PY) -m pytest -ra -m "not browser and not postgres and not cluster and not slow" tests/core tests/assets $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

# Open the Dagster UI on the same instance and cache as `make demo` (localhost:3000).
# instance_setup: the gpu pool's limit exists before the first run (docs/operations.md).
ui: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m quanta_assets.instance_setup
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; PYTHONPATH=tests $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
