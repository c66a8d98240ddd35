# Two commands for a newcomer: `make demo` and `make test`. Both create the virtualenv and install.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_CONSTRAINTS ?= constraints/cpu-dev.txt
export QUANTA_CACHE_DIR ?= $(CURDIR)/.quanta_cache
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: demo test install sysdeps ui bench clean

$(VENV)/.installed: pyproject.toml $(PIP_CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(PIP_CONSTRAINTS) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Debian packages the browser and PostgreSQL tests need (chromium, postgresql).
sysdeps:
	bash scripts/install-system-deps.sh

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# Run the whole pipeline on the embedded demo suite (mini-Pile + locally trained GPT-NeoX).
demo: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m quanta_assets.demo

test: install sysdeps
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# Open the Dagster UI on the same instance and cache as `make demo` (localhost:3000).
ui: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: install
	$(PY) benchmarks/bench_corpus.py
	$(PY) benchmarks/bench_losses.py
	$(PY) benchmarks/bench_similarity.py
	$(PY) benchmarks/bench_clustering.py
	$(PY) benchmarks/bench_report.py
	$(PY) benchmarks/bench_dynamics.py

clean:
	rm -rf $(VENV) .pytest_cache
