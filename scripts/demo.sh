#!/usr/bin/env bash
# `make demo`: serve SmolLM2-135M-Instruct on llama.cpp (CPU, offline), ask it one
# question through the official OpenAI client, and take it down again.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "the exact engine command for the demo profile"
llmdeploy plan demo-cpu

say "llmdeploy up demo-cpu --detach   (returns once a real request has been answered)"
llmdeploy up demo-cpu --detach
trap 'say "llmdeploy down demo-cpu"; llmdeploy down demo-cpu' EXIT

say "llmdeploy status"
llmdeploy status

say "one chat request through the OpenAI client"
python scripts/demo_chat.py demo-cpu "In one sentence, what is a large language model?"

say "llmdeploy smoke demo-cpu   (the checks CI runs; exit 0 only if all pass)"
llmdeploy smoke demo-cpu
