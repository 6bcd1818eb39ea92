"""Showing commands to people: shell-ready, with secrets replaced by references."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from llmdeploy.engines.base import Launch


def _word(value: str, secrets: Mapping[str, str]) -> str:
    if value in secrets:
        return f'"{secrets[value]}"'  # "$MY_KEY": masked, yet still pasteable
    return shlex.quote(value)


def shell_line(launch: Launch) -> str:
    env = [f"{k}={_word(v, launch.secrets)}" for k, v in launch.env.items()]
    return " ".join([*env, *(_word(a, launch.secrets) for a in launch.argv)])


def masked_argv(launch: Launch) -> list[str]:
    return [launch.secrets.get(a, a) for a in launch.argv]


def masked_env(launch: Launch) -> dict[str, str]:
    return {k: launch.secrets.get(v, v) for k, v in launch.env.items()}


def mask_text(text: str, secrets: Mapping[str, str]) -> str:
    for secret, shown in secrets.items():
        text = text.replace(secret, shown)
    return text
