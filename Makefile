# dlkit: `make demo` and `make test` install what they need first (into .venv, once).
# `make install` installs the exact versions CI passes with (requirements/lock.txt, as pip constraints);
# `make test-latest` tries the newest versions pyproject's ranges allow, in a separate venv (not in CI),
# and `make lock` writes the versions of a venv back to the lock once its suite passes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements/lock.txt
LATEST_VENV ?= .venv-latest
LOCK_FROM ?= $(VENV)
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-latest lock lint bench clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	bash examples/demo.sh

test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

# The newest releases the ranges allow (no lock): how the next break is found before users find it.
test-latest:
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[all,dev]'
	$(LATEST_VENV)/bin/python -m dlkit info
	$(LATEST_VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) -q

# Regenerate the lock from a venv whose suite passed: `make lock` (.venv) or `make lock LOCK_FROM=.venv-latest`.
lock:
	test -x $(LOCK_FROM)/bin/python || { echo "no venv at $(LOCK_FROM): run make install or make test-latest" >&2; exit 2; }
	{ echo "# Exact versions the test suite passes with: constraints for 'make install'. Regenerate with 'make lock'."; \
	  $(LOCK_FROM)/bin/python -m pip freeze --exclude-editable | grep -v -i '^dlkit'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/engine_overhead.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) runs .pytest_cache .ruff_cache
