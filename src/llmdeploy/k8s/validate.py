"""Strict, offline validation of rendered manifests against the Kubernetes schemas.

The schemas ship inside the `kubernetes-validate` package (pinned in pyproject.toml's
`k8s` extra), so nothing is fetched. "Strict": every object forbids fields its schema
does not name, so a misspelt `readinesProbe` fails here, without a cluster, instead of
being dropped by an API server whose field validation is off or only warns.

Custom kinds (a LeaderWorkerSet, once `nodes:` exists) have no schema there: they will
be checked against their CRD's own openAPIV3Schema, vendored with its version noted,
through jsonschema (which kubernetes-validate already brings).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from llmdeploy.errors import InputError

# The oldest Kubernetes the manifests are for: preStop `sleep` (the drain) is on by
# default from 1.30. Stable API fields are never removed, so what passes 1.30 passes later
# minors; the suite also checks NEWEST_CHECKED, the newest kubernetes-validate 1.37.0 ships.
K8S_VERSION = "1.30"
NEWEST_CHECKED = "1.37"

_UNEXPECTED = re.compile(r"\((.+?) (?:was|were) unexpected\)")
_MESSAGE_MAX = 200


class ManifestError(InputError):
    """A rendered object the Kubernetes schema refuses, named by kind, name and field."""

    def __init__(self, kind: str, name: str, path: str, reason: str, version: str):
        self.kind = kind
        self.name = name
        self.path = path
        self.reason = reason
        where = f"{kind} {name}" + (f" {path}" if path else "")
        super().__init__(f"{where}: {reason} (Kubernetes {version} schema, strict)")


def check(manifests: Sequence[dict[str, Any]], version: str = K8S_VERSION) -> None:
    """Raise ManifestError for the first object that fails; return if all pass."""
    try:
        import kubernetes_validate  # ≈0.2 s of jsonschema: only `render` pays for it
    except ImportError:
        raise InputError(
            "render k8s validates with kubernetes-validate, which is not installed",
            hint="pip install 'llmdeploy[k8s]'",
        ) from None
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise problem(manifest, exc.path, exc.message, exc.validator, version) from None
        except kubernetes_validate.SchemaNotFoundError:
            raise problem(
                manifest,
                (),
                f"no schema for apiVersion {manifest.get('apiVersion')}",
                "kind",
                version,
            ) from None


def problem(
    manifest: dict[str, Any], path: Iterable[Any], message: str, validator: Any, version: str
) -> ManifestError:
    """One line: `Deployment x spec.template.spec.containers[0].bogus: unknown field`."""
    parts = list(path)
    reason = " ".join(str(message).split())  # one line, whatever the schema says
    found = _UNEXPECTED.search(reason) if validator == "additionalProperties" else None
    if found:
        names = [n.strip().strip("'") for n in found.group(1).split(",")]
        parts.append(names[0])
        reason = "unknown field" + (f" (also: {', '.join(names[1:])})" if names[1:] else "")
    if len(reason) > _MESSAGE_MAX:
        reason = reason[:_MESSAGE_MAX] + "…"
    meta = manifest.get("metadata") or {}
    name = meta.get("name", "?") if isinstance(meta, dict) else "?"
    return ManifestError(str(manifest.get("kind", "?")), str(name), dotted(parts), reason, version)


def dotted(parts: Iterable[Any]) -> str:
    """['spec', 'ports', 0, 'port'] -> 'spec.ports[0].port'."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
