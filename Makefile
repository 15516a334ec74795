# make train / make test set everything up on a fresh machine: a .venv with the project (make train: the core
# dependencies alone, no GPU libraries beyond torch's own; make test/lint: the dev extras on top).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.installed-core
DEV := $(VENV)/.installed

.PHONY: install install-dev train test test-slow lint format clean

$(CORE): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e .
	touch $(CORE)

$(DEV): $(CORE)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(DEV)

install: $(CORE)

install-dev: $(DEV)

train: $(CORE)
	$(BIN)/python train.py $(ARGS)

# One pytest worker per core (pytest-xdist); idle workers take queued tests from busy ones.
PARALLEL := -n auto --dist worksteal

# The suite but the tests marked slow: the edit-test loop (its target: under five minutes on 2 cores;
# docs/performance.md, "The test suite", has the timings).
test: $(DEV)
	$(BIN)/python -m pytest $(PARALLEL) -m "not slow" $(PYTEST_ARGS)

# The tests marked slow (subprocesses: kill -9, SIGTERM, DDP, launchers, the benchmark; the long end-to-end runs:
# resuming, the study sweep, the smp peer, MLflow). CI runs both.
test-slow: $(DEV)
	$(BIN)/python -m pytest $(PARALLEL) -m slow $(PYTEST_ARGS)

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf logs .pytest_cache .ruff_cache
