"""Two replicas of the tiny Qwen3 on real `transformers serve` behind the real router:
smoke passes through the router's URL, both replicas answered, `down` leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, cli
from helpers import pid_alive, record, wait_no_members
from test_transformers_engine import tf_env  # noqa: F401 — the fixture

pytestmark = pytest.mark.engine


def test_two_transformers_replicas_pass_smoke_through_the_router(
    tf_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    data = yaml.safe_load((PROFILES / "tiny-qwen3-transformers-cpu.yaml").read_text())
    data.update(name="tiny-pair", replicas=2)
    profile = tmp_path / "pair.yaml"
    profile.write_text(yaml.safe_dump(data))
    up = cli("up", str(profile), "--detach", env=tf_env, timeout=900)
    assert up.returncode == 0, up.stdout + up.stderr[-3000:]
    rec = record(tf_env, "tiny-pair") or {}
    members = {m["name"]: m["proc"]["pid"] for m in rec["members"]}  # type: ignore[union-attr]
    try:
        assert set(members) == {"r0", "r1", "router"}
        smoke = cli(
            "smoke", "tiny-pair", "--only", "models", "--only", "completion", "--only", "chat",
            env=tf_env, timeout=600,
        )  # fmt: skip
        print(smoke.stdout)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        logs = Path(tf_env["LLMDEPLOY_STATE_DIR"]) / "logs"
        for replica in ("r0", "r1"):  # the router spread smoke's requests over both
            text = (logs / f"tiny-pair@{replica}.log").read_text(errors="replace")
            assert "POST /v1/c" in text, replica
    finally:
        down = cli("down", "tiny-pair", env=tf_env, timeout=180)
    assert down.returncode == 0, down.stderr
    for name, pid in members.items():
        assert wait_no_members(pid, timeout=10) == [], name
        assert not pid_alive(pid), name
    assert record(tf_env, "tiny-pair") is None
