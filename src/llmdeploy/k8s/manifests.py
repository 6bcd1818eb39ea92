"""Profile -> Kubernetes objects (plain dicts, in apply order). Pure: no I/O.

Single node today: a ConfigMap (what `llmdeploy pull` needs of the profile), a
PersistentVolumeClaim (the model cache), a Deployment (initContainer `pull`, then the
engine) and a Service.

Where the rest goes (issue 13), once profiles have the settings:
- `replicas:` — `engine_deployment(..., replicas=N)` plus a router: its own Deployment
  and Service from a `router_objects()` next to `single_node()`, selecting the engines
  by the component label below (the engine Service keeps component=engine);
- `nodes:` — a LeaderWorkerSet in place of the Deployment: `pod_spec()` already builds
  one pod from a PodLaunch, so leader and worker templates are two calls with the
  per-rank launches. Custom kinds are validated against their CRD's schema (validate.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from llmdeploy import __version__
from llmdeploy.errors import InputError
from llmdeploy.k8s.pod import MODELS_DIR, PodLaunch, pod_launch, pod_plan, secret_ref
from llmdeploy.profile.model import Profile

Manifest = dict[str, Any]

PROFILE_DIR = "/etc/llmdeploy"
# Startup: vLLM production-stack's period; the failure count stretches the budget to the
# profile's readiness.timeout_s (large models load for many minutes).
STARTUP_PERIOD_S = 10
# Drain: after the pod leaves the Service's endpoints, requests still routed to it
# finish before the engine gets SIGTERM (KServe's preStop sleep).
PRESTOP_DRAIN_S = 10
STOP_GRACE_S = 15  # what `up`/`down --grace` give the engine between TERM and KILL
SHM_GI_PER_RANK = 2  # NCCL's buffers between tensor-parallel ranks live in /dev/shm

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_NAME_MAX = 55  # object names get suffixes (-api-key); Service names are at most 63


@dataclass(frozen=True)
class Settings:
    """What the cluster needs that a profile does not say."""

    image: str
    namespace: str | None = None
    storage: str = "200Gi"
    storage_class: str | None = None

    def check(self) -> None:
        if not self.image or any(c.isspace() for c in self.image):
            raise InputError(f"--image: not an image reference: {self.image!r}")
        if self.namespace is not None and not _DNS_LABEL.match(self.namespace):
            raise InputError(
                f"--namespace: {self.namespace!r} is not a Kubernetes name "
                "(lowercase letters, digits and -, at most 63)"
            )
        if not _QUANTITY.match(self.storage):
            raise InputError(f"--storage: not a size like 200Gi: {self.storage!r}")
        if self.storage_class is not None and not _DNS_SUBDOMAIN.match(self.storage_class):
            raise InputError(f"--storage-class: not a Kubernetes name: {self.storage_class!r}")


def default_image(engine: str) -> str:
    """A name that is obviously local (`localhost/`, never a public registry someone could
    claim), for an image the user builds: the engine plus `llmdeploy[hub]`."""
    return f"localhost/llmdeploy-{engine}:{__version__}"


def object_name(profile_name: str) -> str:
    """A profile name (letters, digits, . _ -) as a DNS-1035 label Services accept."""
    name = re.sub(r"[^a-z0-9]+", "-", profile_name.lower()).strip("-")
    if not name[:1].isalpha():
        name = f"llm-{name}"
    return name[:_NAME_MAX].rstrip("-")


def single_node(profile: Profile, settings: Settings) -> list[Manifest]:
    """ConfigMap, PersistentVolumeClaim, Deployment, Service — in the order to apply."""
    name = object_name(profile.name)
    launch = pod_launch(pod_plan(profile), secret_ref(profile, name))
    return [
        _with_namespace(m, settings.namespace)
        for m in (
            profile_config(profile, name),
            model_claim(name, settings),
            engine_deployment(profile, name, launch, settings),
            engine_service(name, launch.port),
        )
    ]


def selector(name: str, component: str) -> dict[str, str]:
    """What a Deployment and its Service match on: immutable once applied, so minimal."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def labels(name: str, component: str) -> dict[str, str]:
    return {**selector(name, component), "app.kubernetes.io/managed-by": "llmdeploy"}


def profile_config(profile: Profile, name: str) -> Manifest:
    """What the initContainer's `llmdeploy pull` reads: name, model, engine — values
    already resolved here, cache_dir left out (it names this machine's directory)."""
    import yaml  # PyYAML is a core dependency; only render turns profiles back into YAML

    data = profile.model_dump(mode="json", exclude_none=True, include={"name", "model", "engine"})
    data["model"].pop("cache_dir", None)
    text = f"# `llmdeploy pull` input for profile {profile.name} (llmdeploy render k8s)\n"
    text += yaml.safe_dump(data, sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-profile", "labels": labels(name, "model")},
        "data": {"profile.yaml": text},
    }


def model_claim(name: str, settings: Settings) -> Manifest:
    """The model cache: pods restart and reschedule without downloading again."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.storage}},
    }
    if settings.storage_class is not None:
        spec["storageClassName"] = settings.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"{name}-models", "labels": labels(name, "model")},
        "spec": spec,
    }


def engine_deployment(
    profile: Profile, name: str, launch: PodLaunch, settings: Settings, replicas: int = 1
) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": labels(name, "engine"),
            "annotations": {"llmdeploy/profile": profile.name},
        },
        "spec": {
            "replicas": replicas,
            # Recreate: the old pod holds the GPUs and the ReadWriteOnce volume, so a
            # rolling update's extra pod would wait for them forever.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(name, "engine")},
            "template": {
                "metadata": {"labels": labels(name, "engine")},
                "spec": pod_spec(profile, name, launch, settings.image),
            },
        },
    }


def pod_spec(profile: Profile, name: str, launch: PodLaunch, image: str) -> dict[str, Any]:
    shm = SHM_GI_PER_RANK * profile.resources.tensor_parallel_size
    return {
        # Service links put <SERVICE>_PORT=tcp://… into the environment; a Service named
        # `vllm` makes that VLLM_PORT, which vLLM reads as its own setting and fails.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": PRESTOP_DRAIN_S + STOP_GRACE_S,
        "initContainers": [pull_container(image)],
        "containers": [engine_container(profile, launch, image)],
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": f"{name}-models"}},
            {"name": "profile", "configMap": {"name": f"{name}-profile"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm}Gi"}},
        ],
    }


def pull_container(image: str) -> dict[str, Any]:
    """Downloads (verified, resumable) into the volume before the engine starts; on a
    volume that already holds the model it checks the manifest and fetches nothing."""
    return {
        "name": "pull",
        "image": image,
        "command": ["llmdeploy"],
        "args": ["pull", f"{PROFILE_DIR}/profile.yaml", "--cache-dir", MODELS_DIR],
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "profile", "mountPath": PROFILE_DIR, "readOnly": True},
        ],
    }


def engine_container(profile: Profile, launch: PodLaunch, image: str) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "engine",
        "image": image,
        "command": [launch.argv[0]],
        "args": list(launch.argv[1:]),
    }
    if launch.env:
        container["env"] = [dict(e) for e in launch.env]
    container["ports"] = [{"name": "http", "containerPort": launch.port, "protocol": "TCP"}]
    gpus = profile.resources.gpu_ids
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": len(gpus)}}
    container["volumeMounts"] = [
        {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    container.update(probes(launch, profile.readiness.timeout_s))
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRESTOP_DRAIN_S}}}
    return container


def probes(launch: PodLaunch, timeout_s: float) -> dict[str, Any]:
    """Startup gets the whole readiness budget; readiness and liveness start after it,
    so a model still loading is never killed (vLLM's log then says
    "KeyboardInterrupt: terminated")."""
    if launch.health_needs_key:
        # llama.cpp answers /v1/models only with the key, which a probe cannot carry;
        # it binds its port only once the model is loaded, so an open port means loaded.
        action: dict[str, Any] = {"tcpSocket": {"port": "http"}}
    else:
        action = {"httpGet": {"path": launch.health_path, "port": "http"}}
    failures = max(1, math.ceil(timeout_s / STARTUP_PERIOD_S))
    return {
        "startupProbe": {
            **action,
            "periodSeconds": STARTUP_PERIOD_S,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        },
        "readinessProbe": {
            **action,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        # Generous: a loaded engine answers slowly under load; a restart costs a reload.
        "livenessProbe": {
            **action,
            "periodSeconds": 20,
            "timeoutSeconds": 10,
            "failureThreshold": 6,
        },
    }


def engine_service(name: str, port: int) -> Manifest:
    """In-cluster address http://NAME:PORT/v1 (ClusterIP; expose it with an Ingress)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name, "engine")},
        "spec": {
            "type": "ClusterIP",
            "selector": selector(name, "engine"),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _with_namespace(manifest: Manifest, namespace: str | None) -> Manifest:
    if namespace is not None:
        # Right after the name, where people look for it.
        meta = manifest["metadata"]
        manifest["metadata"] = {"name": meta.pop("name"), "namespace": namespace, **meta}
    return manifest
