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
    assert not bad, f"write Delta tables with jobs.common.delta_io.delta_writer: {bad}"


ENTRY_POINTS = sorted(p for p in (ROOT / "jobs").glob("*.py") if p.name != "__init__.py")


def _job_imports(path: Path) -> set[str]:
    """Every ``jobs.<name>`` module ``path`` imports (``from jobs import x`` counts as ``jobs.x``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("jobs."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "jobs":
                out.update(f"jobs.{a.name}" for a in node.names)
            elif node.module.startswith("jobs."):
                out.add(node.module)
    return out


def test_jobs_top_level_holds_only_entry_points():
    # `ls jobs/` lists what a user can run: each file there is a CLI with main() and a __main__ guard
    not_cli = [
        p.name
        for p in ENTRY_POINTS
        if "def main(" not in (src := p.read_text("utf-8")) or 'if __name__ == "__main__":' not in src
    ]
    assert not not_cli, f"library code belongs in jobs/common/ or jobs/transforms/: {not_cli}"


def test_library_modules_never_import_an_entry_point():
    entry = {f"jobs.{p.stem}" for p in ENTRY_POINTS}
    bad = {
        str(p.relative_to(ROOT)): sorted(_job_imports(p) & entry)
        for sub in ("common", "transforms")
        for p in sorted((ROOT / "jobs" / sub).rglob("*.py"))
        if _job_imports(p) & entry
    }
    assert not bad, f"jobs/common and jobs/transforms must not import a CLI module: {bad}"


@pytest.mark.parametrize("path", ENTRY_POINTS, ids=lambda p: p.name)
def test_entry_points_stay_short(path):
    # a job is a thin CLI over jobs/common and jobs/transforms: the stage logic lives there, where it is reused
    lines = len(path.read_text("utf-8").splitlines())
    assert lines <= 150, f"{path.name} has {lines} lines: move its stage logic to jobs/transforms/"
