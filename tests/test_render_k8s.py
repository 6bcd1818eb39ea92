"""`llmdeploy render k8s`: goldens for every shipped profile, strict schema validation,
the argv `plan` shows, no secret in any output, and a validator that really refuses.

Regenerate goldens after an intended change: UPDATE_GOLDEN=1 pytest tests/test_render_k8s.py
"""

from __future__ import annotations

import copy
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import PROFILES, cli

from llmdeploy.engines.planning import make_plan
from llmdeploy.errors import InputError
from llmdeploy.k8s import manifests, pod, validate, write
from llmdeploy.k8s.manifests import PRESTOP_DRAIN_S, STOP_GRACE_S, Settings
from llmdeploy.profile import load as profile_load
from llmdeploy.profile.model import Profile

GOLDEN = Path(__file__).parent / "golden" / "k8s"
MODELS = Path(tempfile.mkdtemp(prefix="llmdeploy-k8s-"))  # tiny-qwen3's local path must exist
# Loading checks that the key's variable exists; render never reads its value.
ENV = {"LLMDEPLOY_TINY_QWEN3": str(MODELS), "K8S_TEST_KEY": ""}
SETTINGS = Settings(image=manifests.default_image("vllm"))
GPU_PROFILES = ["qwen3-8b", "hunyuan-a13b"]

# Engine features the shipped profiles do not show (each file says which).
EXTRA_DIR = GOLDEN / "profiles"
EXTRA = sorted(p.stem for p in EXTRA_DIR.glob("*.yaml"))


def _file(name: str) -> Path:
    return EXTRA_DIR / f"{name}.yaml" if name in EXTRA else PROFILES / f"{name}.yaml"


def _load(name: str) -> Profile:
    return profile_load.load(_file(name), environ=ENV)


SHIPPED = sorted(p.stem for p in PROFILES.glob("*.yaml"))
ALL = [*SHIPPED, *EXTRA]


def _render(name: str) -> list[dict[str, Any]]:
    return manifests.single_node(_load(name), SETTINGS)


def _renders(name: str) -> bool:
    """Hub models on one node: what `render k8s` makes manifests for."""
    profile = _load(name)
    return profile.model.source in ("modelscope", "huggingface") and profile.nodes == 1


RENDERED = [n for n in ALL if _renders(n)]


def _kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def _engine(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec = _kind(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return dict(container)


# --- goldens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_golden(name: str) -> None:
    try:
        text = write.to_yaml(_render(name))
        path = GOLDEN / f"{name}.yaml"
    except InputError as exc:  # hub-less models are refused: the message is the golden
        text = f"{exc.message}\nhint: {exc.hint}\n".replace(str(MODELS), "<models>")
        path = GOLDEN / f"{name}.error.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden {path.name}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_every_golden_belongs_to_a_profile() -> None:
    goldens = [p for p in GOLDEN.iterdir() if p.is_file()]
    names = {p.name.removesuffix(".error.txt").removesuffix(".yaml") for p in goldens}
    assert names == set(ALL)


# --- what the issue promises -----------------------------------------------------------------


@pytest.mark.parametrize("version", [validate.K8S_VERSION, validate.NEWEST_CHECKED])
@pytest.mark.parametrize("name", RENDERED)
def test_every_object_passes_strict_validation(name: str, version: str) -> None:
    objects = _render(name)
    assert [o["kind"] for o in objects] == [
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
    ]
    for manifest in objects:
        # The package directly, not our wrapper: a wrapper that swallowed errors would pass.
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("name", RENDERED)
def test_startup_budget_gpus_and_grace(name: str) -> None:
    profile, objects = _load(name), _render(name)
    engine = _engine(objects)
    startup = engine["startupProbe"]
    budget = startup.get("initialDelaySeconds", 0) + (
        startup["periodSeconds"] * startup["failureThreshold"]
    )
    assert budget >= profile.readiness.timeout_s
    assert {"readinessProbe", "livenessProbe"} <= engine.keys()
    gpus = len(profile.resources.gpu_ids or [])
    limits = engine.get("resources", {}).get("limits", {})
    assert limits.get("nvidia.com/gpu", 0) == gpus
    pod_spec = _kind(objects, "Deployment")["spec"]["template"]["spec"]
    sleep = engine["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep == PRESTOP_DRAIN_S > 0
    assert pod_spec["terminationGracePeriodSeconds"] >= sleep + STOP_GRACE_S
    shm = next(v for v in pod_spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_gpu_profiles_keep_their_promises(name: str) -> None:
    """The issue's 'done when', named: budget ≥ timeout, GPU limits = profile GPUs."""
    profile, engine = _load(name), _engine(_render(name))
    startup = engine["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= profile.readiness.timeout_s
    assert startup["httpGet"]["path"] == "/health"  # the engine's own, never /v1/models
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == len(profile.resources.gpus or [])
    assert "CUDA_VISIBLE_DEVICES" not in {e["name"] for e in engine.get("env", [])}


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (third_party/forked/golang/expansion/expand.go)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            close = text.find(")", i + 2) if nxt == "(" else -1
            if nxt == "$":
                out.append("$")
                i += 2
            elif close != -1:
                name = text[i + 2 : close]
                out.append(env.get(name, f"$({name})"))
                i = close + 1
            else:
                out.append("$" + nxt)
                i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _pod_env(engine: dict[str, Any], secret_value: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in engine.get("env", []):
        if "valueFrom" in item:
            env[item["name"]] = secret_value
        else:
            env[item["name"]] = _expand(item["value"], env)
    return env


@pytest.mark.parametrize("name", RENDERED)
def test_the_container_runs_exactly_what_plan_builds(name: str) -> None:
    """command + args, after Kubernetes' expansion with the Secret's value, are the argv
    `plan` builds for the pod's profile (python3, /models, 0.0.0.0) — a list, no shell."""
    profile, engine = _load(name), _engine(_render(name))
    key = "sk-" + secrets.token_hex(8)
    shown = make_plan(
        pod.pod_profile(profile),
        environ={"K8S_TEST_KEY": key},
        cache=Path(pod.MODELS_DIR),
    ).launch
    env = _pod_env(engine, key)
    argv = [_expand(a, env) for a in [*engine["command"], *engine["args"]]]
    assert argv == [pod.POD_PYTHON if a == sys.executable else a for a in shown.argv]
    assert all(isinstance(a, str) for a in argv) and len(engine["command"]) == 1
    for var, value in shown.env.items():
        if var != "CUDA_VISIBLE_DEVICES" or var in profile.env:
            assert env[var] == value


def test_the_pod_profile_differs_only_where_a_pod_must() -> None:
    profile = _load("vllm-api-key")
    changed = pod.pod_profile(profile).model_dump()
    original = profile.model_dump()
    assert changed["serving"] == {**original["serving"], "host": "0.0.0.0", "port": 8000}
    assert changed["model"] == {**original["model"], "cache_dir": None}
    changed.pop("serving"), original.pop("serving"), changed.pop("model"), original.pop("model")
    assert changed == original


def test_the_init_container_pulls_into_the_engines_model_path() -> None:
    objects = _render("qwen3-8b")
    spec = _kind(objects, "Deployment")["spec"]["template"]["spec"]
    (pull,) = spec["initContainers"]
    assert pull["command"] == ["llmdeploy"] and pull["args"][0] == "pull"
    cache = pull["args"][pull["args"].index("--cache-dir") + 1]
    assert _engine(objects)["args"][1].startswith(cache + "/modelscope/Qwen/Qwen3-8B")
    config = yaml.safe_load(_kind(objects, "ConfigMap")["data"]["profile.yaml"])
    assert config["model"]["id"] == "Qwen/Qwen3-8B" and "cache_dir" not in config["model"]
    # What the initContainer reads must itself be a valid profile.
    profile_load.parse(yaml.safe_dump(config), file="cm", base_dir=MODELS, environ={})


def test_a_key_in_the_health_path_means_a_tcp_probe() -> None:
    engine = _engine(_render("llamacpp-hub-api-key"))
    assert engine["startupProbe"]["tcpSocket"] == {"port": "http"}
    assert "httpGet" not in engine["livenessProbe"]


def test_namespace_image_and_storage_reach_every_object() -> None:
    settings = Settings(
        image="reg.example/vllm-llmdeploy:1",
        namespace="llm",
        storage="40Gi",
        storage_class="fast-ssd",
    )
    objects = manifests.single_node(_load("qwen3-8b"), settings)
    assert {o["metadata"]["namespace"] for o in objects} == {"llm"}
    spec = _kind(objects, "Deployment")["spec"]["template"]["spec"]
    assert {c["image"] for c in [*spec["containers"], *spec["initContainers"]]} == {settings.image}
    claim = _kind(objects, "PersistentVolumeClaim")["spec"]
    assert claim["resources"]["requests"]["storage"] == "40Gi"
    assert claim["storageClassName"] == "fast-ssd"
    validate.check(objects)


@pytest.mark.parametrize(
    ("profile_name", "expected"),
    [
        ("qwen3-8b", "qwen3-8b"),
        ("Qwen3_8B.v2", "qwen3-8b-v2"),
        ("8b", "llm-8b"),
        ("a" * 54 + "-b" * 4, "a" * 54),
    ],
)
def test_object_names_are_dns_labels(profile_name: str, expected: str) -> None:
    assert manifests.object_name(profile_name) == expected


# --- the validator refuses, with the field path ------------------------------------------------


def _mutated(change: Any) -> list[dict[str, Any]]:
    objects = copy.deepcopy(_render("qwen3-8b"))
    change(objects)
    return objects


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        (
            lambda o: _engine_of(o).update(readinesProbe={"periodSeconds": 5}),
            "spec.template.spec.containers[0].readinesProbe",
            "unknown field",
        ),
        (
            lambda o: _engine_of(o)["ports"][0].update(containerPort="8000"),
            "spec.template.spec.containers[0].ports[0].containerPort",
            "is not of type 'integer'",
        ),
        (lambda o: _kind(o, "Service")["spec"].update(selectr={}), "spec.selectr", "unknown field"),
        (
            lambda o: _kind(o, "ConfigMap")["metadata"].update(lables={}),
            "metadata.lables",
            "unknown field",
        ),
    ],
)
def test_validator_refuses_with_the_field_path(change: Any, path: str, reason: str) -> None:
    with pytest.raises(validate.ManifestError) as caught:
        validate.check(_mutated(change))
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert caught.value.exit_code == 2 and "\n" not in caught.value.message
    assert path in caught.value.message


def _engine_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _kind(objects, "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def test_a_refused_render_writes_nothing(tmp_path: Path) -> None:
    bad = _mutated(lambda o: _engine_of(o).update(bogus=1))
    with pytest.raises(validate.ManifestError):
        write.emit(bad, tmp_path / "out", check=validate.check)
    assert not (tmp_path / "out").exists()


# --- through the real CLI --------------------------------------------------------------------


def _keyed_profile(tmp_path: Path, name: str) -> Path:
    """A copy of a shipped profile or extra whose serving.api_key is ${K8S_TEST_KEY}."""
    data = yaml.safe_load(_file(name).read_text())
    data.setdefault("serving", {})["api_key"] = "${K8S_TEST_KEY}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", [*GPU_PROFILES, "vllm-api-key", "llamacpp-hub-api-key"])
def test_no_secret_value_anywhere_in_the_output(tmp_path: Path, name: str) -> None:
    key = "sk-" + secrets.token_urlsafe(24)
    env = {**os.environ, "K8S_TEST_KEY": key}
    profile = _keyed_profile(tmp_path, name)
    printed = cli("render", "k8s", str(profile), env=env)
    wrote = cli("render", "k8s", str(profile), "-o", str(tmp_path / "out"), env=env)
    assert printed.returncode == 0 and wrote.returncode == 0, printed.stderr + wrote.stderr
    files = "".join(p.read_text() for p in (tmp_path / "out").iterdir())
    everything = printed.stdout + printed.stderr + wrote.stdout + wrote.stderr + files
    assert key not in everything
    assert "secretKeyRef" in printed.stdout and "secretKeyRef" in files
    assert '--from-literal=K8S_TEST_KEY="$K8S_TEST_KEY"' in printed.stderr


def test_render_never_reads_the_key(tmp_path: Path) -> None:
    """An empty key variable stops `plan` (it would launch with it), never `render`."""
    env = {**os.environ, "K8S_TEST_KEY": ""}
    profile = str(_keyed_profile(tmp_path, "sglang-api-key"))
    assert cli("plan", profile, env=env).returncode == 2
    result = cli("render", "k8s", profile, env=env)
    assert result.returncode == 0, result.stderr
    assert "- $(K8S_TEST_KEY)" in result.stdout  # SGLang takes it in argv: expanded by kubelet


def test_output_directory_holds_one_valid_file_per_object(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = cli("render", "k8s", "hunyuan-a13b", "-o", str(out), "--namespace", "llm")
    assert result.returncode == 0, result.stderr
    printed = cli("render", "k8s", "hunyuan-a13b", "--namespace", "llm")
    docs = [d for d in yaml.safe_load_all(printed.stdout) if d]
    files = sorted(out.iterdir())
    assert [f"wrote {p}" for p in sorted(files)] == sorted(result.stdout.splitlines())
    from_files = [yaml.safe_load(p.read_text()) for p in files]
    assert sorted(from_files, key=str) == sorted(docs, key=str) and len(docs) == 4
    validate.check(from_files)
    assert "kubectl -n llm apply -f" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["demo-cpu"], "model.source package: "),
        (["qwen3-8b", "--namespace", "Bad_NS"], "--namespace: 'Bad_NS' is not"),
        (["qwen3-8b", "--storage", "lots"], "--storage: not a size"),
        (["qwen3-8b", "--image", ""], "--image: not an image"),
    ],
)
def test_refusals_are_one_line_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    result = cli("render", "k8s", *args, "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "out").exists()


def test_only_render_imports_the_validator() -> None:
    """`--help`, `plan` and `validate` stay fast: no kubernetes-validate, no k8s code."""
    probe = (
        "import sys\n"
        "from llmdeploy.cli.app import app\n"
        "for args in (['--help'], ['plan', 'qwen3-8b'], ['validate', 'qwen3-8b']):\n"
        "    try: app(args, standalone_mode=False)\n"
        "    except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('kubernetes_validate', "
        "'jsonschema', 'llmdeploy.k8s'))))\n"
        "app(['render', 'k8s', 'qwen3-8b'], standalone_mode=False)\n"
        "print('kubernetes_validate' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "[]" in lines and lines[-1] == "True"  # the last proves the probe can see it


def test_replicas_are_refused_not_dropped(tmp_path: Path) -> None:
    """One engine pod for a profile of replicas would silently lose them and the router."""
    data = yaml.safe_load((PROFILES / "qwen3-8b.yaml").read_text())
    data["replicas"] = 2
    data["resources"]["gpus"] = [0, 1]
    profile = tmp_path / "pair.yaml"
    profile.write_text(yaml.safe_dump(data))
    result = cli("render", "k8s", str(profile), "-o", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "replicas: render k8s makes one engine pod" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_multi_node_profiles_are_refused_not_dropped(tmp_path: Path) -> None:
    result = cli("render", "k8s", "hunyuan-a13b-2node", "-o", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "nodes: render k8s makes one engine pod" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
