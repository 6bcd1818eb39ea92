"""The one-line diagnoses, on lines the engines really print."""

from __future__ import annotations

import pytest

from llmdeploy.run.diagnosis import diagnose

CASES = [
    (
        ["ERROR: [Errno 98] error while attempting to bind on address: address already in use"],
        "address in use",
    ),
    (
        ["vllm: error: unrecognized arguments: --enable-reasoning"],
        "unrecognized arguments --enable-reasoning",
    ),
    (["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"], "out of memory"),
    (["ValueError: No available memory for the cache blocks. Try increasing"], "out of memory"),
    (
        [
            "ValueError: The repository for x contains custom code which must be executed "
            "to correctly load the model. Please pass the argument `trust_remote_code=True`"
        ],
        "trust_remote_code",
    ),
    (
        ["ValueError: Model architectures ['FooForCausalLM'] are not supported for now."],
        "unsupported architecture",
    ),
    (
        ["launch_server.py: error: argument --reasoning-parser: invalid choice: 'qwen9'"],
        "invalid choice qwen9",
    ),
    (["ModuleNotFoundError: No module named 'sglang'"], "module sglang is not installed"),
    (["INFO: all good"], None),
    (  # vLLM's own settings line on every start is not a diagnosis
        [
            "(EngineCore pid=1) INFO Initializing a V1 LLM engine (v0.32.0) with config: "
            "model='/m', trust_remote_code=False, dtype=torch.bfloat16"
        ],
        None,
    ),
]


@pytest.mark.parametrize(("lines", "expected"), CASES)
def test_diagnose(lines: list[str], expected: str | None) -> None:
    found = diagnose(lines)
    if expected is None:
        assert found is None
    else:
        assert found is not None and expected in found, found
