#!/usr/bin/env bash
# Build the LIGHT SGLang virtualenv: enough of SGLang to run its own argument
# parser (`python -m sglang.launch_server --help`, scripts/check_sglang_args.py)
# on a CPU-only machine. It cannot serve a model (SGLang's kernels need CUDA).
#
#   scripts/sglang_env.sh VENV_DIR
#
# Idempotent: VENV_DIR/.ready holds the pins below and is written only after
# the checks at the end pass; a second run with the same pins returns at once.
# Env: PYTHON (default python3; must be CPython 3.11 here, because the CPU
# torch wheel this machine provides is cp311).
#
# Measured on the 2-core dev machine: ~85 s from scratch, ~2.5 GB
# (triton ~1.0 GB, torch ~0.75 GB, sglang ~0.22 GB).
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 64
fi
VENV_DIR=$1
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- pins -------------------------------------------------------------------
SGLANG_VERSION=0.5.23
# `+cpu` matches only the CPU wheel on local disk: a plain torch==2.13.0 from
# the registry would be the multi-GB CUDA build. Fail instead of pulling that.
TORCH_REQ="torch==2.13.0+cpu"
# transformers/tokenizers: the exact versions sglang 0.5.23 declares.
PINNED=(
    "transformers==5.19.0"
    "tokenizers==0.23.2"
    "triton==3.9.0"   # sglang.srt.utils.common imports triton unconditionally
)
# What `python -m sglang.launch_server --help` imports beyond torch/transformers.
SMALL_DEPS=(orjson psutil pybase64 requests pillow starlette msgspec pyzmq IPython aiohttp)
STAMP="sglang==${SGLANG_VERSION} ${TORCH_REQ} ${PINNED[*]} ${SMALL_DEPS[*]}"

mkdir -p "$VENV_DIR"
VENV_DIR=$(cd "$VENV_DIR" && pwd)
READY="$VENV_DIR/.ready"
LOG="$VENV_DIR/.build.log"
VPY="$VENV_DIR/bin/python"

# One build at a time per venv (two test runs may race to build it).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV_DIR/.lock"
    flock 9
fi

if [[ -f "$READY" && -x "$VPY" && "$(cat "$READY")" == "$STAMP" ]]; then
    echo "sglang env ready: $VENV_DIR (sglang $SGLANG_VERSION)"
    exit 0
fi
rm -f "$READY"

start=$SECONDS
step() { echo "[sglang_env +$((SECONDS - start))s] $*"; }
pip_q() {
    # pip is noisy (index warnings); keep its output in the log, show the tail on failure
    if ! "$VPY" -m pip "$@" >>"$LOG" 2>&1; then
        echo "pip $* failed; last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
}

: >"$LOG"
if [[ ! -x "$VPY" ]]; then
    step "creating venv with $PYTHON"
    "$PYTHON" -m venv "$VENV_DIR"
fi

step "installing $TORCH_REQ ${PINNED[*]} + small deps"
PIP_DISABLE_PIP_VERSION_CHECK=1 pip_q install --progress-bar off \
    "$TORCH_REQ" "${PINNED[@]}" "${SMALL_DEPS[@]}"

step "installing sglang==$SGLANG_VERSION --no-deps"
PIP_DISABLE_PIP_VERSION_CHECK=1 pip_q install --progress-bar off --no-deps \
    "sglang==$SGLANG_VERSION"

step "checking"
"$VPY" - "$SGLANG_VERSION" <<'EOF'
import sys
from importlib.metadata import version, distributions
import torch
want = sys.argv[1]
assert torch.__version__.endswith("+cpu"), f"torch is not the CPU build: {torch.__version__}"
assert version("sglang") == want, f"sglang {version('sglang')} != {want}"
cuda = sorted(d.metadata["Name"] for d in distributions()
              if (d.metadata["Name"] or "").lower().startswith("nvidia-"))
assert not cuda, f"CUDA packages crept in: {cuda}"
EOF

if ! "$VPY" -m sglang.launch_server --help >"$VENV_DIR/.help.txt" 2>>"$LOG"; then
    echo "python -m sglang.launch_server --help failed; last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
fi
grep -q -- "--reasoning-parser" "$VENV_DIR/.help.txt"

if [[ -f "$HERE/check_sglang_args.py" ]]; then
    "$VPY" "$HERE/check_sglang_args.py" --model-path /nonexistent --reasoning-parser qwen3
    rc=0
    "$VPY" "$HERE/check_sglang_args.py" --model-path /nonexistent --no-such-flag 2>/dev/null || rc=$?
    if [[ $rc -ne 2 ]]; then
        echo "check_sglang_args.py accepted an unknown flag (rc=$rc)" >&2
        exit 1
    fi
fi

printf '%s\n' "$STAMP" >"$READY"
step "ready: $VENV_DIR ($(du -sh "$VENV_DIR" | cut -f1))"
