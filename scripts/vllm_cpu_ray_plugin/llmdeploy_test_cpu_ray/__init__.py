"""vLLM platform plugin for tests: the CPU platform, with Ray's device key "GPU"."""

import os


def register() -> str | None:
    if os.environ.get("LLMDEPLOY_TEST_CPU_RAY") != "1":
        return None
    return "llmdeploy_test_cpu_ray.platform.CpuRayPlatform"
