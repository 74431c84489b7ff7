# Two commands for a newcomer: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-stamp
EDITABLE_STAMP := $(VENV)/.editable-stamp

.PHONY: all venv build c-lib c-test c-test-sanitize pytest typecheck lint format docs \
        test demo bench clean

all: build

$(DEPS_STAMP): requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(DEPS_STAMP)

c-lib:
	$(MAKE) -C csrc lib

$(EDITABLE_STAMP): $(DEPS_STAMP) pyproject.toml setup.py setup.cfg snakepit/_version.py
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

# Bytecode for the package, as pip writes it for an installed one: with
# PYTHONDONTWRITEBYTECODE set nothing else writes it, and every worker
# template would compile snakepit from source (~50 ms of its start).
build: venv c-lib $(EDITABLE_STAMP)
	$(PY) setup.py --quiet build_ext --inplace
	$(PY) -m compileall -q snakepit

c-test:
	$(MAKE) -C csrc test

c-test-sanitize:
	$(MAKE) -C csrc test-sanitize

pytest: build
	$(PY) -m pytest tests bench --benchmark-disable

typecheck: venv $(EDITABLE_STAMP)
	$(PY) -m mypy
	$(PY) -m mypy.stubtest --mypy-config-file pyproject.toml --allowlist snakepit/_core/stubtest-allowlist.txt snakepit._core._core
	$(PY) tests/typecheck/check_user_types.py

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

docs: build
	$(PY) -m sphinx -n -W --keep-going -q -b html docs docs/_build/html

test: build c-test c-test-sanitize lint typecheck pytest docs
	@echo "all gates passed"

demo: build
	$(VENV)/bin/snakepit demo
	$(PY) examples/ml_demo/run_demo.py

bench: build
	$(PY) -m pytest bench --benchmark-only --benchmark-columns=min,median,mean,rounds

clean:
	$(MAKE) -C csrc clean
	rm -rf build snakepit/_core/_core.c snakepit/include docs/_build
	find snakepit -name "*.so" -delete
