"""`llmdeploy render k8s`: the Typer declarations (registered in app.py) and the command.

Module-level imports stay light (typer, the shared options): app.py imports this file at
start-up, and the manifests' code and kubernetes-validate load only when `render` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmdeploy.cli.options import ProfileArg

if TYPE_CHECKING:  # loaded inside run(): `llmdeploy --help` does not pay for them
    from llmdeploy.k8s.manifests import Settings
    from llmdeploy.k8s.pod import SecretRef

render_app = typer.Typer(
    help="Render a profile for another platform: manifests to apply, validated offline.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@render_app.command("k8s")
def k8s(
    profile: ProfileArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Write one YAML file per object here (default: stdout)."
        ),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Namespace of every object (default: kubectl's).")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="Image with the engine and llmdeploy[hub] (default: a local placeholder)."
        ),
    ] = None,
    storage: Annotated[str, typer.Option(help="Size of the model cache volume.")] = "200Gi",
    storage_class: Annotated[
        str | None, typer.Option(help="StorageClass of that volume (default: the cluster's).")
    ] = None,
) -> None:
    """Kubernetes manifests for a profile: the engine as `plan` shows it, in a Deployment.

    Also a Service, a PersistentVolumeClaim for the model and an initContainer that pulls
    into it, probes budgeted from readiness.timeout_s, GPUs as nvidia.com/gpu limits.
    The API key is only ever a reference to a Secret you create. Every object is
    validated against the Kubernetes schemas (strict) before anything is written;
    a failure names the field, exit 2.
    """
    raise typer.Exit(
        run(
            profile,
            output=output,
            namespace=namespace,
            image=image,
            storage=storage,
            storage_class=storage_class,
        )
    )


def run(
    argument: str,
    *,
    output: Path | None,
    namespace: str | None,
    image: str | None,
    storage: str,
    storage_class: str | None,
) -> int:
    from llmdeploy.k8s import manifests, pod, validate, write
    from llmdeploy.output import out
    from llmdeploy.profile import load as profile_load
    from llmdeploy.profile import shipped

    profile = profile_load.load(shipped.resolve(argument))
    chosen = manifests.default_image(profile.engine.type) if image is None else image
    settings = manifests.Settings(chosen, namespace, storage, storage_class)
    settings.check()
    objects = manifests.single_node(profile, settings)
    header = (
        f"# llmdeploy render k8s {profile.name} — passes the Kubernetes "
        f"{validate.K8S_VERSION} schemas (strict)\n"
    )
    if output is None:
        validate.check(objects)
        out(write.to_yaml(objects, header).rstrip("\n"))
    else:
        for path in write.emit(objects, output, check=validate.check, header=header):
            out(f"wrote {path}")
    secret = pod.secret_ref(profile, manifests.object_name(profile.name))
    _notes(secret, settings, defaulted=image is None, output=output)
    return 0


def _notes(
    secret: SecretRef | None, settings: Settings, *, defaulted: bool, output: Path | None
) -> None:
    """What the user still has to do, on stderr (stdout may be piped into kubectl)."""
    from llmdeploy.output import err

    ns = f" -n {settings.namespace}" if settings.namespace else ""
    if defaulted:
        err(
            f"note: image {settings.image} is a placeholder: build one with the engine and "
            "llmdeploy[hub], or pass --image"
        )
    if secret is not None:
        # "$VAR": the user's shell fills it in; the key itself is never read here.
        err(
            f"note: create the API key's Secret first: kubectl{ns} create secret generic "
            f'{secret.name} --from-literal={secret.key}="${secret.key}"'
        )
    err(f"apply: kubectl{ns} apply -f {output if output is not None else '-'}")
