"""Smoke results as a table for people, JSON for scripts, JUnit XML for CI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

from llmdeploy.smoke.checks import Check, Target

MARK = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}


def table(target: Target, checks: list[Check]) -> str:
    rows = [("check", "result", "time", "detail")]
    for c in checks:
        detail = c.detail + (f" — likely cause: {c.cause}" if c.cause else "")
        took = f"{c.seconds * 1000:.0f} ms" if c.status != "skip" else ""
        rows.append((c.id, MARK[c.status], took, detail))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"smoke: {target.model} at {target.base_url}/v1 ({target.engine})"]
    if "reasoning_field" in target.seen:
        pin = target.reasoning_field
        pinned = f" (reasoning.field pins {pin})" if pin else ""
        lines.append(f"reasoning field: {target.seen['reasoning_field']}{pinned}")
    for r in rows:
        lines.append(
            "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        )
    passed = sum(c.status == "pass" for c in checks)
    failed = sum(c.status == "fail" for c in checks)
    skipped = sum(c.status == "skip" for c in checks)
    lines.append(f"{passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(lines)


def to_json(target: Target, checks: list[Check]) -> str:
    return json.dumps(
        {
            "target": {"base_url": target.base_url, "model": target.model, "engine": target.engine},
            # the field the engine put the reasoning in, as seen (None: not checked)
            "reasoning_field": target.seen.get("reasoning_field"),
            "reasoning_field_pinned": target.reasoning_field,
            "passed": all(c.status != "fail" for c in checks),
            "checks": [asdict(c) for c in checks],
        },
        indent=2,
    )


def write_junit(path: Path, target: Target, checks: list[Check]) -> None:
    suite = ET.Element(
        "testsuite",
        name=f"llmdeploy smoke {target.model}",
        tests=str(len(checks)),
        failures=str(sum(c.status == "fail" for c in checks)),
        skipped=str(sum(c.status == "skip" for c in checks)),
        time=f"{sum(c.seconds for c in checks):.3f}",
    )
    if "reasoning_field" in target.seen:
        properties = ET.SubElement(suite, "properties")
        seen = target.seen["reasoning_field"]
        ET.SubElement(properties, "property", name="reasoning_field", value=seen)
        if target.reasoning_field:
            pinned = target.reasoning_field
            ET.SubElement(properties, "property", name="reasoning_field_pinned", value=pinned)
    for c in checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"smoke.{target.engine}",
            name=c.id,
            time=f"{c.seconds:.3f}",
        )
        if c.status == "fail":
            failure = ET.SubElement(case, "failure", message=c.detail)
            failure.text = c.detail + (f"\nlikely cause: {c.cause}" if c.cause else "")
        elif c.status == "skip":
            ET.SubElement(case, "skipped", message=c.detail)
        else:
            ET.SubElement(case, "system-out").text = c.detail
    root = ET.Element("testsuites")
    root.append(suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
