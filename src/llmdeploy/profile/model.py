"""The profile: one validated, immutable description of a deployment.

Loading (YAML, `${VAR}`, file:line errors) lives in `load.py`, the `model` section in
`source.py`; this module is the rest of the shape of a profile and the rules between its
fields.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from llmdeploy.engines import reasoning, tools
from llmdeploy.profile import distributed as node_rules
from llmdeploy.profile import replicas as replica_rules
from llmdeploy.profile.distributed import Distributed
from llmdeploy.profile.envref import WHOLE_REF
from llmdeploy.profile.replicas import Router
from llmdeploy.profile.source import ModelSpec
from llmdeploy.profile.strict import Strict, shown
from llmdeploy.versions import Version, parse_version

EngineType = Literal["vllm", "sglang", "llamacpp", "transformers", "command"]
ENGINE_TYPES: tuple[str, ...] = ("vllm", "sglang", "llamacpp", "transformers", "command")
# Placeholders a `command` engine's argv template may use.
COMMAND_PLACEHOLDERS = ("port", "host", "model_path", "served_model_name")
# Paths whose `${VAR}` stays a reference in the profile: secrets are resolved
# only when launching, so a profile object never carries one.
SECRET_PATHS = {("serving", "api_key")}

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# What huggingface_hub accepts as a repository id (transformers serve resolves names so).
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


class EngineSpec(Strict):
    type: EngineType = Field(description="vllm | sglang | llamacpp | transformers | command")
    version: str | None = Field(
        None, description="Engine version the flags are built for (default: a current release)"
    )
    executable: str | None = Field(
        None, description="Program to run instead of the default (`vllm`, the Python interpreter)"
    )
    command: list[str] | None = Field(
        None,
        description="type command only: argv template; placeholders "
        + ", ".join("{" + p + "}" for p in COMMAND_PLACEHOLDERS),
    )
    health_path: str | None = Field(None, description="Health endpoint (default per engine)")
    continuous_batching: bool | None = Field(
        None, description="type transformers only: continuous batching with paged attention"
    )
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="type transformers only: default chat-template kwargs for every request"
    )

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None:
            # parse_version's int() would hit Python's int-str conversion limit first.
            if len(value) > 64:
                raise ValueError(f"not a version number ({len(value)} characters)")
            parse_version(value)
        return value

    @field_validator("health_path")
    @classmethod
    def _health(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @model_validator(mode="after")
    def _command(self) -> EngineSpec:
        if self.type == "command":
            if not self.command:
                raise ValueError("type command needs `command`, an argv list")
            for arg in self.command:
                for _, field, _, _ in string.Formatter().parse(arg):
                    if field is not None and field not in COMMAND_PLACEHOLDERS:
                        known = ", ".join("{" + p + "}" for p in COMMAND_PLACEHOLDERS)
                        raise ValueError(f"unknown placeholder {{{field}}} (known: {known})")
        elif self.command is not None:
            raise ValueError(f"`command` is only for type command, not {self.type}")
        if self.type != "transformers":
            for key in ("continuous_batching", "chat_template_kwargs"):
                if key in self.model_fields_set:
                    raise ValueError(f"`{key}` is only for type transformers, not {self.type}")
        return self

    @property
    def parsed_version(self) -> Version | None:
        return parse_version(self.version) if self.version else None


class Serving(Strict):
    host: str = Field("127.0.0.1", description="Bind address (0.0.0.0 exposes the server)")
    port: int | Literal["auto"] = Field(8000, description="TCP port, or `auto` for a free one")
    served_model_name: str | None = Field(
        None, description="Name clients use (default: last part of the model id)"
    )
    api_key: str | None = Field(
        None, description="An environment reference like ${MY_KEY}; never the key itself"
    )

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ValueError(f"must be a port number 1-65535 or `auto`, got {shown(value)}")
        return value

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: str | None) -> str | None:
        if value is not None and not WHOLE_REF.match(value):
            raise ValueError(
                "give the key as an environment reference like ${MY_API_KEY}, never inline "
                "(profiles end up in repositories and logs)"
            )
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        # An IP address or a host name (RFC 1123); anything else fails only later, when
        # the engine binds it. Brackets are URL syntax: `::1`, not `[::1]`.
        if _HOSTNAME.match(value):
            return value
        import ipaddress  # only for IPv6 literals: keeps loading profiles fast

        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"not a host name or IP address: {shown(value)}") from None
        return value


class Resources(Strict):
    gpus: list[Annotated[int, Field(ge=0, le=1023)]] | int | None = Field(
        None, description="GPU ids [0, 1] or a count; sets CUDA_VISIBLE_DEVICES"
    )
    tensor_parallel_size: int = Field(1, ge=1, le=1024)
    pipeline_parallel_size: int = Field(1, ge=1, le=1024)
    memory_fraction: float | None = Field(
        None, gt=0, le=1, description="Share of each GPU's memory the engine may use, in (0, 1]"
    )
    max_model_len: int | None = Field(None, ge=16, le=100_000_000)
    dtype: Literal["auto", "float16", "bfloat16", "float32", "half"] | None = None
    quantization: str | None = None
    trust_remote_code: bool = False

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a list of GPU ids or a count")
        if isinstance(value, int) and not 1 <= value <= 1024:
            raise ValueError(f"a GPU count must be 1-1024, got {value}")
        if isinstance(value, list) and len(set(map(str, value))) != len(value):
            raise ValueError("GPU ids must not repeat")
        return value

    @property
    def gpu_ids(self) -> list[int] | None:
        if self.gpus is None:
            return None
        return list(range(self.gpus)) if isinstance(self.gpus, int) else list(self.gpus)


class Reasoning(Strict):
    parser: str | None = Field(None, description="Canonical name: " + ", ".join(reasoning.NAMES))
    thinking: bool = Field(True, description="Default thinking mode for requests")
    prompt_switches: bool = Field(False, description="The model honours /think and /no_think")
    field: Literal["reasoning", "reasoning_content"] | None = Field(
        None,
        description="The message field your clients read the reasoning from; smoke fails "
        "when the engine answers under the other name (vLLM renamed reasoning_content to "
        "reasoning). Default: either is accepted",
    )

    @model_validator(mode="after")
    def _field_needs_parser(self) -> Reasoning:
        if self.field is not None and self.parser is None:
            raise ValueError("field: needs reasoning.parser (without one there is no such field)")
        return self


class Tools(Strict):
    parser: str = Field(
        description="Tool-call parser, canonical name (hermes for Qwen2.5/Qwen3): "
        + ", ".join(tools.NAMES)
        + "; enables automatic tool choice (vLLM, SGLang)"
    )


class SamplingPreset(Strict):
    temperature: float = Field(ge=0, le=5)
    top_p: float = Field(gt=0, le=1)
    top_k: int = Field(ge=-1, le=100_000)
    min_p: float = Field(0.0, ge=0, le=1)


class Sampling(Strict):
    thinking: SamplingPreset = SamplingPreset(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0)
    non_thinking: SamplingPreset = SamplingPreset(temperature=0.7, top_p=0.8, top_k=20, min_p=0.0)


class Readiness(Strict):
    timeout_s: float = Field(
        1800, gt=0, le=172_800, description="Start budget; large models load for many minutes"
    )
    probe_request: bool = Field(True, description="Send one real 1-token request before ready")


class Restart(Strict):
    policy: Literal["never", "on-failure"] = "never"
    max_restarts: int = Field(
        5, ge=0, le=1000, description="Restarts allowed within window_s before giving up"
    )
    window_s: float = Field(
        600.0, gt=0, le=604_800, description="Restarts older than this no longer count"
    )
    backoff_s: float = Field(1.0, gt=0, le=3600)
    backoff_max_s: float = Field(60.0, gt=0, le=86_400)


class Profile(Strict):
    """A deployment: model, engine and settings."""

    name: str = Field(pattern=_NAME, description="Deployment name (letters, digits, . _ -)")
    description: str | None = None
    model: ModelSpec
    engine: EngineSpec
    serving: Serving = Serving()
    resources: Resources = Resources()
    reasoning: Reasoning = Reasoning()
    tools: Tools | None = Field(None, description="Tool calling: `{parser: hermes}`")
    sampling: Sampling = Sampling()
    extra_args: list[str] = Field(
        default_factory=list, description="Engine flags passed verbatim, after llmdeploy's"
    )
    env: dict[Annotated[str, Field(pattern=_ENV_NAME)], str] = Field(
        default_factory=dict, description="Extra environment for the engine (wins over ours)"
    )
    readiness: Readiness = Readiness()
    restart: Restart = Restart()
    replicas: int = Field(
        1, ge=1, le=replica_rules.MAX_REPLICAS, description="Engine processes behind one router"
    )
    router: Router | None = Field(
        None, description="The router in front of the replicas (default when replicas > 1)"
    )
    nodes: int = Field(
        1, ge=1, le=node_rules.MAX_NODES, description="Machines one engine spans (up --node-rank)"
    )
    distributed: Distributed | None = Field(
        None, description="How the nodes meet: backend native | ray, head address, ports"
    )

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env_values(cls, value: Any) -> Any:
        # YAML turns `1` and `true` into numbers/booleans; the environment wants text.
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v))
                if isinstance(v, int | float | bool)
                else v
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _cross_fields(self) -> Profile:
        res, engine = self.resources, self.engine.type
        ids = res.gpu_ids
        if ids is not None and self.nodes == 1 and res.tensor_parallel_size > len(ids):
            raise ValueError(
                f"resources.tensor_parallel_size: {res.tensor_parallel_size} does not fit "
                f"the {len(ids)} GPU(s) given in resources.gpus"
            )
        if ids is not None and self.nodes == 1 and res.pipeline_parallel_size > 1:
            width = res.tensor_parallel_size * res.pipeline_parallel_size
            if width > len(ids):
                raise ValueError(
                    f"resources.pipeline_parallel_size: tensor x pipeline = {width} GPUs does "
                    f"not fit the {len(ids)} given in resources.gpus"
                )
        if engine in ("llamacpp", "transformers") and res.pipeline_parallel_size != 1:
            raise ValueError(f"resources.pipeline_parallel_size: {engine} has no such setting")
        if engine == "llamacpp":
            if res.tensor_parallel_size != 1:
                raise ValueError(
                    "resources.tensor_parallel_size: llamacpp has no tensor parallelism"
                )
            if res.memory_fraction is not None:
                raise ValueError("resources.memory_fraction: llamacpp has no such setting")
        if engine == "transformers":
            _transformers_rules(self)
        elif self.reasoning.parser is not None:
            reasoning.check(self.reasoning.parser, engine, self.engine.parsed_version)
        if self.tools is not None:
            tools.check(self.tools.parser, engine, self.engine.parsed_version)
        if engine == "llamacpp" and not (self.model.path or "").endswith(".gguf"):
            raise ValueError("model.path: llamacpp serves one .gguf file; name it in model.path")
        replica_rules.check(self)
        node_rules.check(self)
        return self

    @property
    def distributed_settings(self) -> Distributed:
        return self.distributed or Distributed()

    @property
    def routed(self) -> bool:
        """Served through a router (SMG) in front of one or more replicas."""
        return self.router is not None or self.replicas > 1

    @property
    def router_settings(self) -> Router:
        return self.router or Router()

    @property
    def served_model_name(self) -> str:
        return self.serving.served_model_name or self.model.default_served_name


def _transformers_rules(profile: Profile) -> None:
    """What `transformers serve` (5.x) has no setting for is refused, not ignored."""
    res = profile.resources
    if res.tensor_parallel_size != 1:
        raise ValueError("resources.tensor_parallel_size: transformers serve has no such setting")
    for key in ("memory_fraction", "max_model_len"):
        if getattr(res, key) is not None:
            raise ValueError(f"resources.{key}: transformers serve has no such setting")
    if res.quantization not in (None, "bnb-4bit", "bnb-8bit"):
        raise ValueError(
            f"resources.quantization: transformers serve knows bnb-4bit and bnb-8bit, "
            f"not {shown(res.quantization)}"
        )
    if profile.serving.api_key is not None:
        raise ValueError("serving.api_key: transformers serve has no authentication")
    name = profile.served_model_name
    if not _HF_REPO.match(name) or "--" in name or ".." in name:
        raise ValueError(
            f"serving.served_model_name: transformers serve answers under a hub-style name "
            f"(letters, digits, . _ -, one optional owner/), got {shown(name)}"
        )
    if (profile.model.path or "").endswith(".gguf"):
        raise ValueError("model.path: llmdeploy serves a model directory on transformers, not GGUF")
    parser = profile.reasoning.parser
    if parser is not None and parser not in reasoning.NAMES:
        # It picks the reasoning format by model type; the name says what the model writes.
        reasoning.check(parser, "vllm", None)  # the one-line "unknown parser" error
