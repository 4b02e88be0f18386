"""The repository's shape, checked on the source: layering one way only, and one path for Delta writes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    """Top-level package of every module ``path`` imports, at any depth (function-level imports too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize(
    "package, forbidden",
    [("model", {"jobs", "udfs", "pyspark", "delta"}), ("udfs", {"jobs"})],
)
def test_layers_import_one_way_only(package, forbidden):
    bad = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & forbidden)
        for p in sorted((ROOT / package).rglob("*.py"))
        if _imports(p) & forbidden
    }
    assert not bad, f"{package}/ must not import {sorted(forbidden)}: {bad}"


def test_every_delta_write_of_the_jobs_goes_through_delta_writer():
    # a direct writer would let a Spark Connect client's collated string types into a Delta schema
    raw = re.compile(r"\.write\s*\.\s*format\(\s*[\"']delta[\"']|\.saveAsTable\(|\.writeTo\(")
    bad = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted((ROOT / "jobs").rglob("*.py"))
        if p.name != "delta_io.py"
        for n, line in enumerate(p.read_text("utf-8").splitlines(), 1)
        if raw.search(line)
    ]
    assert not bad, f"write Delta tables with jobs.delta_io.delta_writer: {bad}"
