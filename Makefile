# One entry point for a fresh machine: every target installs what it needs first.
# Two install sets, each with its own stamp: `make demo` installs what the demo runs
# ('.[torch,emulator]': torch trains, the emulator plays AWS), nothing of the dev tools;
# `make install` / `make test` / `make lint` / `make bench` the dev set ('.[dev]', which holds
# the demo's too). torch/torchvision come from the package index (see README, Install, for
# a CPU-only build).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
# The demo's install skips compiling every .py of torch and the toolkits (a fresh `make demo`:
# 258 -> 156 s); Python compiles what the demo imports instead. The dev set compiles: the
# suite starts hundreds of processes, and where PYTHONDONTWRITEBYTECODE is set none would
# keep a .pyc.
DEMO_PIP := $(PIP) --no-compile
DEV_STAMP := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: install test lint demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $(DEV_STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(DEMO_PIP) -e '.[torch,emulator]'
	touch $(DEMO_STAMP)

install: $(DEV_STAMP)

# The suite runs on TEST_WORKERS processes (pytest-xdist): on CI's 2 cores, 2 workers take
# 807 s against 1,232 s serially (many tests wait on child processes). Tests that share an
# expensive session fixture carry one xdist_group, so --dist loadgroup builds it once.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

lint: install
	$(BIN)/ruff check dogclf tests bench
	$(BIN)/ruff format --check dogclf tests bench
	$(BIN)/mypy

demo: $(DEMO_STAMP)
	$(BIN)/dogclf demo

bench: install
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
