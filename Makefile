# The two entry points a newcomer needs: `make demo` and `make test`.
# Both create .venv on first use with the machine's python3 (3.11 or newer).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow test-faults lint typecheck pytest lock bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "keyrotor needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[sandbox]'
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/keyrotor demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck -pyflakes= .github/workflows/*.yml
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# Three workers on two cores: most of a test's time is the embedded AWS or git answering.
pytest: $(VENV)/.installed-dev
	$(BIN)/pytest -n 3

test: lint typecheck pytest

# The whole demo, the small benchmark, the soaks and the longest scenarios: too slow for
# `make test`; CI runs them too.
test-slow: $(VENV)/.installed-dev
	$(BIN)/pytest -n 2 -m slow

# Every AWS call of a rotation step met by every fault, and every push crashed
# (tests/test_fault_matrix.py; `make test` runs a sample). About 8 minutes on 2 cores.
test-faults: $(VENV)/.installed-dev
	$(BIN)/pytest -n 2 -m faults

# requirements/action.lock: keyrotor's runtime dependencies and build requirements, pinned with
# the hashes of every file of each release, for the GitHub Action (pip install --require-hashes).
# Run after changing dependencies in pyproject.toml; it needs the package index (`make test` does
# not). Existing pins are kept; `make lock LOCK_ARGS=--upgrade` moves every pin to the latest.
LOCK_ARGS ?=
lock: $(VENV)/.installed-dev
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --build-deps-for wheel --allow-unsafe \
		--strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) \
		--output-file requirements/action.lock pyproject.toml

# Not part of `make test`: about half an hour on 2 cores. It rewrites the table in bench/README.md.
BENCH_SIZES ?= 1000,5000,10000
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench --sizes $(BENCH_SIZES) --readme bench/README.md

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
