# vipflow's developer commands. `make install` once, then `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-integration lint format bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install vipflow with its development tools

run: $(STAMP)  ## the whole pipeline on this machine (embedded Redis if none), with a burst of notifications; starts clean
	$(BIN)/vipflow run $(ARGS)

test: $(STAMP)  ## every test: unit and integration (real Redis, real worker, real HTTP)
	$(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

lint: $(STAMP)  ## ruff and mypy --strict
	$(BIN)/ruff check rules worker producers tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix rules worker producers tests bench
	$(BIN)/ruff format rules worker producers tests bench

bench: $(STAMP)  ## benchmarks: print figures against the targets
	$(BIN)/python bench/run_all.py

soak: $(STAMP)  ## steady load with faults for SOAK_S seconds (default 1200): memory, latency, invariants over time
	SOAK_S=$${SOAK_S:-1200} $(BIN)/python bench/soak.py

clean:  ## remove .venv, caches and var/ (the state of `make run`: its logs, embedded Redis data and ledger)
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache var
