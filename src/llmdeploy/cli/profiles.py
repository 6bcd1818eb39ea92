from __future__ import annotations

from llmdeploy.output import out
from llmdeploy.profile import shipped


def run() -> int:
    files = shipped.shipped()
    width = max((len(p.stem) for p in files), default=0)
    for path in files:
        out(f"{path.stem:<{width}}  {shipped.summary(path)}")
    out(
        f"\n(in {shipped.SHIPPED_DIR}; use a name or a path: llmdeploy plan {files[0].stem})"
        if files
        else "no shipped profiles found"
    )
    return 0
