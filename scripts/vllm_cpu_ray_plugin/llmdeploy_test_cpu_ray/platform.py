from vllm.platforms.cpu import CpuPlatform


class CpuRayPlatform(CpuPlatform):
    ray_device_key = "GPU"  # each Ray node is started with --num-gpus 1: one CPU worker each
