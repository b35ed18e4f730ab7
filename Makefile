# The two commands of the README: `make demo` and `make test`. Both do their own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SRC := $(wildcard common exporter simulator alertmanager mixin demo tests bench)

.PHONY: demo test lint typecheck generated pytest system-packages venv generate bench clean

demo: system-packages venv
	$(BIN)/voicedrive-demo $(DEMO_ARGS)

test: system-packages venv lint typecheck generated pytest

system-packages:
	@scripts/ensure-system-packages.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)

typecheck: venv
	$(BIN)/mypy -p voicedrive_common -p voicedrive_exporter -p voicedrive_sim -p voicedrive_receiver -p voicedrive_mixin -p voicedrive_demo

# Rules, dashboards and the README alert table come from mixin/thresholds.yml; fail when stale.
generated: venv
	$(BIN)/voicedrive-mixin --check

generate: venv
	$(BIN)/voicedrive-mixin

pytest: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: venv
	@scripts/ensure-system-packages.sh prometheus-blackbox-exporter
	$(BIN)/python bench/exporter_bench.py
	$(BIN)/python bench/receiver_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
