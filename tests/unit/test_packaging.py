"""The package a user installs: built from the tracked files, with no setuptools warning, data files included."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_builds_without_warnings_and_ships_the_sample_data(tmp_path):
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    tracked = subprocess.run(listing, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    src = tmp_path / "src"
    for name in tracked.splitlines():  # what a clone of this tree holds (tracked files, and new ones not ignored)
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), "."],
        cwd=src,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Warning" not in out.stderr and "warning:" not in out.stderr.lower(), out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("lakelm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "jobs/ingest.py",
        "jobs/common/cli.py",
        "jobs/transforms/bronze.py",
        "jobs/configs/demo_train.json",
        "jobs/sample_data/web_c4.jsonl",
        "jobs/sample_data/eval_tasks/piqa.jsonl",
        "udfs/curation/_minhash_kernels.py",
        "model/gpt.py",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
