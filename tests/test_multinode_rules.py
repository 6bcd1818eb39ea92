"""Multi-node profiles (`nodes: N`, `distributed:`) without starting an engine: every rule
is one line naming the file, line and field (exit 2, no traceback); `up --node-rank/--head`
mistakes are one line and start nothing; and every rank's engine command is accepted by
the engine's own parser (vLLM's CPU build, SGLang's light install) — with cases the
parsers must refuse, so the check is shown to be able to fail."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import PROFILES, ROOT, cli, engine_python
from test_profile_errors import assert_one_error

from llmdeploy.engines import planning
from llmdeploy.profile import load

# A valid two-node profile; MODEL is replaced by a directory that exists.
BASE = """\
name: mn
model: {source: local, path: MODEL}
engine: vllm
nodes: 2
resources: {tensor_parallel_size: 2}
distributed: {backend: native, head: 127.0.0.1, port: 29611}
"""
ONE_NODE = "name: one\nmodel: {source: local, path: MODEL}\nengine: vllm\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "m.gguf").touch()
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        text.replace("GGUF", str(tmp_path / "m.gguf")).replace("MODEL", str(tmp_path / "model"))
    )
    return path


def _engine(engine: str) -> str:
    return BASE.replace("engine: vllm\n", f"engine: {engine}\n").replace(
        "resources: {tensor_parallel_size: 2}\n", ""
    )


# (case id, profile text, line of the error, how the line goes on after FILE:LINE)
CASES: list[tuple[str, str, int, str]] = [
    (
        "llamacpp",
        "name: mn\nmodel: {source: local, path: GGUF}\nengine: llamacpp\nnodes: 2\n",
        4,
        "nodes: llamacpp has no multi-node mode (only vllm and sglang)",
    ),
    (
        "transformers",
        "name: mn\nmodel: {source: local, path: MODEL}\nengine: transformers\nnodes: 2\n",
        4,
        "nodes: transformers has no multi-node mode (only vllm and sglang)",
    ),
    (
        "command",
        _engine("{type: command, command: [srv, '{port}']}").replace(
            "distributed: {backend: native, head: 127.0.0.1, port: 29611}\n", ""
        ),
        4,
        "nodes: command has no multi-node mode (only vllm and sglang)",
    ),
    (
        "replicas",
        BASE + "replicas: 2\n",
        4,
        "nodes: replicas and a router across nodes are not supported yet",
    ),
    (
        "ray-with-sglang",
        BASE.replace("engine: vllm", "engine: sglang").replace("native", "ray"),
        6,
        "distributed.backend: ray is for vllm; sglang uses native",
    ),
    (
        "restart-on-failure",
        BASE + "restart: {policy: on-failure}\n",
        7,
        "restart.policy: a multi-node deployment is not restarted (a lost node ends it); use never",
    ),
    (
        "tp-does-not-divide",
        BASE.replace("tensor_parallel_size: 2", "tensor_parallel_size: 3"),
        5,
        "resources: tensor_parallel_size 3 x pipeline_parallel_size 1 = 3 does not divide "
        "over 2 nodes",
    ),
    (
        "tp-pp-vs-gpus-x-nodes",
        BASE.replace(
            "tensor_parallel_size: 2",
            "gpus: [0], tensor_parallel_size: 2, pipeline_parallel_size: 2",
        ),
        5,
        "resources: tensor_parallel_size 2 x pipeline_parallel_size 2 = 4 GPUs, but 2 nodes "
        "x 1 GPUs (resources.gpus) = 2",
    ),
    (
        "tp-pp-vs-gpus-x-nodes-too-few",
        BASE.replace("nodes: 2", "nodes: 4").replace(
            "tensor_parallel_size: 2", "gpus: [0, 1], tensor_parallel_size: 2"
        ),
        5,
        "resources: tensor_parallel_size 2 x pipeline_parallel_size 1 = 2 GPUs, but 4 nodes "
        "x 2 GPUs (resources.gpus) = 8",
    ),
    (
        "distributed-on-one-node",
        BASE.replace("nodes: 2", "nodes: 1").replace("tensor_parallel_size: 2", "gpus: 1"),
        6,
        "distributed: only for nodes > 1",
    ),
    (
        "bad-head",
        BASE.replace("head: 127.0.0.1", "head: 'bad host!'"),
        6,
        "distributed.head: not a host name or IP address: 'bad host!'",
    ),
    (
        "bracketed-head",
        BASE.replace("head: 127.0.0.1", "head: '[::1]'"),
        6,
        "distributed.head: not a host name or IP address: '[::1]'",
    ),
    ("too-many-nodes", BASE.replace("nodes: 2", "nodes: 65"), 4, "nodes: "),
    ("zero-nodes", BASE.replace("nodes: 2", "nodes: 0"), 4, "nodes: "),
    ("bad-port", BASE.replace("port: 29611", "port: 70000"), 6, "distributed.port: "),
    ("bad-backend", BASE.replace("native", "mpi"), 6, "distributed.backend: "),
    (
        "typo",
        BASE.replace("head:", "hed:"),
        6,
        "distributed.hed: unknown setting (did you mean head?)",
    ),
    (
        "bad-join-timeout",
        BASE.replace("port: 29611}", "port: 29611, join_timeout_s: 0}"),
        6,
        "distributed.join_timeout_s: ",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_multinode_rule_is_one_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, "p", text)
    result = cli("validate", str(path))
    assert_one_error(result, path, line)
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: {path}:{line} {message}"), first


def test_the_base_profile_and_its_variants_are_valid(tmp_path: Path) -> None:
    """The cases above fail for their one change, not for something in the base."""
    good = {
        "base": BASE,
        "sglang": BASE.replace("engine: vllm", "engine: sglang"),
        "ray": BASE.replace("native", "ray"),
        "pp": BASE.replace("tensor_parallel_size: 2", "pipeline_parallel_size: 2"),
        "gpus": BASE.replace("tensor_parallel_size: 2", "gpus: [0, 1], tensor_parallel_size: 4"),
        "ipv6": BASE.replace("head: 127.0.0.1", "head: '::1'"),
        "defaults": BASE.replace(
            "distributed: {backend: native, head: 127.0.0.1, port: 29611}\n", ""
        ),
    }
    paths = [_write(tmp_path, name, text) for name, text in good.items()]
    result = cli("validate", *map(str, paths))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok: ") == len(paths), result.stdout


# --- up --node-rank / --head --------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "args", "message"),
    [
        (BASE, ["--node-rank", "5"], "error: --node-rank: mn has nodes 0-1, not 5"),
        (BASE, ["--node-rank", "2"], "error: --node-rank: mn has nodes 0-1, not 2"),
        (
            ONE_NODE,
            ["--node-rank", "1"],
            "error: --node-rank/--head: profile one runs on one node (nodes: 1)",
        ),
        (
            ONE_NODE,
            ["--head", "10.0.0.1"],
            "error: --node-rank/--head: profile one runs on one node (nodes: 1)",
        ),
        (
            BASE,
            ["--node-rank", "1", "--head", "bad host!"],
            "error: --head: not a host name or IP address: 'bad host!'",
        ),
        (BASE, ["--head", "[::1]"], "error: --head: not a host name or IP address: '[::1]'"),
        (BASE, ["--node-rank", "-1"], "error: --node-rank: must be a whole number ≥ 0"),
    ],
    ids=["rank-5", "rank-2", "rank-on-one-node", "head-on-one-node", "bad-head", "brackets", "neg"],
)
def test_up_node_options_are_one_line_errors(
    isolated_env: dict[str, str], tmp_path: Path, profile: str, args: list[str], message: str
) -> None:
    path = _write(tmp_path, "p", profile)
    for detach in ([], ["--detach"]):
        result = cli("up", str(path), *args, *detach, env=isolated_env, timeout=30)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), result.stderr
        # nothing was started or registered
        deployments = Path(isolated_env["LLMDEPLOY_STATE_DIR"]) / "deployments"
        assert not deployments.exists() or not list(deployments.iterdir())


# --- every rank's command against the engines' own parsers ---------------------------------


def _check_many(kind: str, argvs: list[list[str]]) -> list[dict[str, object]]:
    """scripts/check_{vllm,sglang}_args.py --batch: one import of the engine for all."""
    python = engine_python(kind)
    script = ROOT / "scripts" / f"check_{kind}_args.py"
    result = subprocess.run(
        [str(python), str(script), "--batch"],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def _engine_args(argv: list[str]) -> list[str]:
    """What the checker takes: after `vllm`, or after `-m sglang.launch_server`."""
    if "sglang.launch_server" in argv:
        return argv[argv.index("sglang.launch_server") + 1 :]
    return argv[1:]


def _nodes_of_plan(path: Path, env: dict[str, str]) -> list[list[str]]:
    """Every rank's argv as `plan --json` shows it."""
    result = cli("plan", str(path), "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    nodes = shown["nodes"]
    assert [n["rank"] for n in nodes] == list(range(len(nodes)))
    assert nodes[0]["argv"] == shown["argv"]  # the top-level command is node 0's
    return [list(n["argv"]) for n in nodes]


def _nodes_in_process(path: Path, env: dict[str, str], head: str) -> list[list[str]]:
    """Every rank's argv from the planner itself, with `up --head ADDRESS`'s override."""
    profile = load.load(path)
    return [
        list(
            planning.make_plan(
                profile,
                environ=env,
                cache=Path(env["LLMDEPLOY_CACHE"]),
                port=8000,
                node_rank=k,
                head=head,
            ).launch.argv
        )
        for k in range(profile.nodes)
    ]


VLLM_VARIANTS = {
    "tp2": BASE,
    "tp4-pp2-gpus": BASE.replace(
        "tensor_parallel_size: 2",
        "gpus: [0, 1, 2, 3], tensor_parallel_size: 4, pipeline_parallel_size: 2",
    ),
    "pp2-4nodes": BASE.replace("nodes: 2", "nodes: 4").replace(
        "tensor_parallel_size: 2", "tensor_parallel_size: 2, pipeline_parallel_size: 2"
    ),
    "ipv6-extra-args": BASE.replace("head: 127.0.0.1", "head: '::1'")
    + "extra_args: [--enforce-eager]\n",
}
SGLANG_VARIANTS = {
    name: text.replace("engine: vllm", "engine: sglang").replace(
        "--enforce-eager", "--disable-cuda-graph"
    )
    for name, text in VLLM_VARIANTS.items()
}


def _shipped_multinode(engine: str) -> list[Path]:
    return sorted(
        p
        for p in PROFILES.glob("*.yaml")
        if "\nnodes: " in p.read_text() and f"type: {engine}" in p.read_text()
    )


@pytest.fixture
def plan_env(isolated_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**isolated_env, "LLMDEPLOY_TINY_QWEN3": str(tmp_path)}


def _all_ranks(
    variants: dict[str, str], engine: str, tmp_path: Path, env: dict[str, str]
) -> dict[str, list[list[str]]]:
    """case -> every rank's argv: each variant through `plan --json` and through the planner
    with a --head override, plus each shipped multi-node profile of the engine."""
    found: dict[str, list[list[str]]] = {}
    for name, text in variants.items():
        path = _write(tmp_path, name, text)
        found[name] = _nodes_of_plan(path, env)
        found[f"{name}-head-override"] = _nodes_in_process(path, env, "fd00::7")
    for path in _shipped_multinode(engine):
        found[path.stem] = _nodes_of_plan(path, env)
    return found


def _rank_flags(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.engine
def test_vllm_accepts_every_rank_of_every_multinode_plan(
    plan_env: dict[str, str], tmp_path: Path
) -> None:
    ranks = _all_ranks(VLLM_VARIANTS, "vllm", tmp_path, plan_env)
    assert "hunyuan-a13b-2node" in ranks  # the shipped example is covered
    argvs, labels = [], []
    for case, per_rank in ranks.items():
        for k, argv in enumerate(per_rank):
            assert _rank_flags(argv, "--node-rank") == str(k)
            assert _rank_flags(argv, "--nnodes") == str(len(per_rank))
            assert ("--headless" in argv) == (k > 0), (case, k, argv)
            if case.endswith("-head-override"):
                assert _rank_flags(argv, "--master-addr") == "fd00::7"
            argvs.append(_engine_args(argv))
            labels.append(f"{case} rank {k}")
    # must fail: SGLang's spelling of the rendezvous, and a rank that is no number
    wrong = [
        [*argvs[1], "--dist-init-addr", "127.0.0.1:29611"],
        [
            *argvs[0][: argvs[0].index("--node-rank") + 1],
            "one",
            *argvs[0][argvs[0].index("--node-rank") + 2 :],
        ],
    ]
    results = _check_many("vllm", argvs + wrong)
    verdicts = {label: r for label, r in zip(labels, results, strict=False)}
    assert {k: v["code"] for k, v in verdicts.items()} == dict.fromkeys(labels, 0), verdicts
    assert results[-2]["code"] == 2 and "--dist-init-addr" in str(results[-2]["error"])
    assert results[-1]["code"] == 2 and "--node-rank" in str(results[-1]["error"])


@pytest.mark.engine
def test_sglang_accepts_every_rank_of_every_multinode_plan(
    plan_env: dict[str, str], tmp_path: Path
) -> None:
    ranks = _all_ranks(SGLANG_VARIANTS, "sglang", tmp_path, plan_env)
    argvs, labels = [], []
    for case, per_rank in ranks.items():
        for k, argv in enumerate(per_rank):
            assert _rank_flags(argv, "--node-rank") == str(k)
            assert _rank_flags(argv, "--nnodes") == str(len(per_rank))
            assert "--headless" not in argv and "--master-addr" not in argv
            address = _rank_flags(argv, "--dist-init-addr")
            if case.endswith("-head-override"):
                assert address == "[fd00::7]:29611", address
            elif case.startswith("ipv6"):
                assert address == "[::1]:29611", address
            argvs.append(_engine_args(argv))
            labels.append(f"{case} rank {k}")
    # must fail: vLLM's spelling of the rendezvous and of a node without HTTP
    wrong = [[*argvs[1], "--master-addr", "127.0.0.1", "--master-port", "29611", "--headless"]]
    results = _check_many("sglang", argvs + wrong)
    verdicts = {label: r for label, r in zip(labels, results, strict=False)}
    assert {k: v["code"] for k, v in verdicts.items()} == dict.fromkeys(labels, 0), verdicts
    assert results[-1]["code"] == 2
    assert "unrecognized arguments: --master-addr" in str(results[-1]["error"])


def test_ray_backend_is_not_planned_as_the_native_mode(
    plan_env: dict[str, str], tmp_path: Path
) -> None:
    """backend: ray runs vLLM on a Ray cluster: node 0 the engine with the Ray executor,
    node 1 only a Ray node joining it — none of the native mode's node flags."""
    ray = _nodes_in_process(
        _write(tmp_path, "ray", BASE.replace("native", "ray")), plan_env, "127.0.0.1"
    )
    head, other = ray
    assert _rank_flags(head, "--distributed-executor-backend") == "ray", head
    assert not {"--nnodes", "--node-rank", "--master-addr", "--headless"} & set(head), head
    assert "start" in other and "--address" in other, other
