"""The engine as it runs in a pod.

The launch comes from the same builder `plan` and `up` use (engines.registry), for the
profile as the pod sees it; only what cannot be the same on a cluster differs:

- the engine listens on 0.0.0.0: kubelet probes and the Service reach the pod's IP,
  never its loopback;
- `port: auto` becomes 8000: a pod has its own network namespace, nothing to search;
- hub weights are in the PersistentVolumeClaim at /models (the initContainer's
  `llmdeploy pull --cache-dir /models` puts them at the path `plan` would name there);
- `python -m …` engines run the image's `python3`, not this machine's interpreter;
- the API key is never read: the builder gets a placeholder, which becomes a
  `secretKeyRef` (an environment variable) or `$(VAR)` (an argv element Kubernetes
  expands from that variable, without a shell);
- CUDA_VISIBLE_DEVICES from `resources.gpus` is dropped: the device plugin gives the
  container its GPUs numbered from 0, so host ids like [2, 3] would hide them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmdeploy.engines import registry
from llmdeploy.engines.base import BuildContext
from llmdeploy.engines.planning import Plan
from llmdeploy.errors import InputError
from llmdeploy.hub import models
from llmdeploy.profile.model import Profile

MODELS_DIR = "/models"
POD_PYTHON = "python3"
LISTEN_HOST = "0.0.0.0"
AUTO_PORT = 8000
# Stands in for the key while the builder runs; a NUL cannot come from a profile.
_KEY = "\x00llmdeploy-api-key\x00"

EnvVar = dict[str, Any]


@dataclass(frozen=True)
class SecretRef:
    """Where the pod finds the API key: a Secret the user creates (render never writes it)."""

    name: str  # the Secret object
    key: str  # its key, and the variable it becomes: the profile's, QWEN_KEY for ${QWEN_KEY}


@dataclass(frozen=True)
class PodLaunch:
    """The engine container's command and environment, ready for a manifest."""

    argv: tuple[str, ...]  # escaped for Kubernetes' $(VAR) expansion
    env: tuple[EnvVar, ...]
    health_path: str
    port: int
    # The health path needs the key (llama.cpp's /v1/models): kubelet cannot send it.
    health_needs_key: bool


def pod_profile(profile: Profile) -> Profile:
    """The profile as the pod runs it (see the module docstring for each change)."""
    port = AUTO_PORT if profile.serving.port == "auto" else int(profile.serving.port)
    serving = profile.serving.model_copy(update={"host": LISTEN_HOST, "port": port})
    # A cache_dir names a directory of this machine, and would win over --cache-dir.
    model = profile.model.model_copy(update={"cache_dir": None})
    return profile.model_copy(update={"serving": serving, "model": model})


def pod_plan(profile: Profile) -> Plan:
    """What `plan` shows, as the pod runs it. Refuses models the cluster cannot fetch."""
    _require_hub_model(profile)
    if profile.nodes > 1:
        raise InputError(
            f"nodes: render k8s makes one engine pod; a deployment over {profile.nodes} "
            "nodes is not rendered yet",
            hint="run each node's part with `llmdeploy up PROFILE --node-rank K` "
            "(LeaderWorkerSet manifests are not generated yet)",
        )
    if profile.routed:
        # Rendering one engine would silently drop the replicas and the router.
        raise InputError(
            f"replicas: render k8s makes one engine pod; the {profile.replicas} replicas "
            "behind the router are not rendered yet",
            hint="render the profile without `replicas:`/`router:` and scale the "
            "Deployment (its Service spreads the requests)",
        )
    pod = pod_profile(profile)
    port = int(pod.serving.port)
    model_path = models.local_path(pod.model, Path(MODELS_DIR))
    ctx = BuildContext(
        model_path=str(model_path),
        port=port,
        python=POD_PYTHON,
        api_key=_KEY if profile.serving.api_key else None,
    )
    return Plan(pod, registry.build(pod, ctx), model_path, profile.serving.port == "auto")


def secret_ref(profile: Profile, object_name: str) -> SecretRef | None:
    ref = profile.serving.api_key
    return None if ref is None else SecretRef(f"{object_name}-api-key", ref[2:-1])


def pod_launch(plan: Plan, secret: SecretRef | None) -> PodLaunch:
    launch = plan.launch
    var = f"$({secret.key})" if secret else ""
    argv = tuple(escape(arg).replace(_KEY, var) for arg in launch.argv)
    env = _environment(plan.profile, launch.env, secret, argv)
    for item in (*argv, *(str(e) for e in env)):
        if _KEY in item:  # a builder used the key in a way not handled here: never ship it
            raise AssertionError("the API key placeholder reached a manifest")
    path = launch.health_path
    return PodLaunch(
        argv=argv,
        env=env,
        health_path=path,
        port=int(plan.profile.serving.port),
        health_needs_key=secret is not None and path.startswith("/v1/"),
    )


def escape(text: str) -> str:
    """Kubernetes expands $(VAR) in command, args and env values, and turns $$ into $;
    doubling every $ keeps the text exactly as the builder made it."""
    return text.replace("$", "$$")


def _environment(
    profile: Profile, env: Mapping[str, str], secret: SecretRef | None, argv: tuple[str, ...]
) -> tuple[EnvVar, ...]:
    entries: dict[str, EnvVar] = {}
    if secret is not None and any(f"$({secret.key})" in arg for arg in argv):
        # $(VAR) in argv resolves only against the container's own variables.
        entries[secret.key] = _from_secret(secret.key, secret)
    for name, value in env.items():
        if name == "CUDA_VISIBLE_DEVICES" and name not in profile.env:
            continue
        if value == _KEY and secret is not None:
            entries[name] = _from_secret(name, secret)
        elif _KEY in value and secret is not None:
            entries.setdefault(secret.key, _from_secret(secret.key, secret))
            entries[name] = {"name": name, "value": escape(value).replace(_KEY, f"$({secret.key})")}
        else:
            entries[name] = {"name": name, "value": escape(value)}
    # Launch.unset_env is not carried over: a pod's environment is the image's plus
    # these, never a caller's shell, so there is nothing stray to remove.
    return tuple(entries.values())


def _from_secret(name: str, secret: SecretRef) -> EnvVar:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}}


def _require_hub_model(profile: Profile) -> None:
    model = profile.model
    if model.source == "local":
        raise InputError(
            f"model.source local: {model.path} is a path on this machine, which the "
            "cluster's nodes cannot see",
            hint="render k8s pulls a hub model into a volume: use model.source "
            "modelscope or huggingface",
        )
    if model.source == "package":
        raise InputError(
            f"model.source package: the weights ship inside the Python package {model.id} "
            "on this machine, at a path no image shares",
            hint="render k8s pulls a hub model into a volume: use model.source "
            "modelscope or huggingface",
        )
