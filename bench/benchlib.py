"""Shared by every benchmark: thread pinning, the statistic, and the raw JSON each run leaves behind.

The rule all ratios follow is at the top of ``bench/RESULTS.md``. The pieces of it that live in code:

* ``pin_threads(n)``: the thread count is set explicitly (OpenMP/MKL env vars for child processes and
  torch's intra-op pool in this one), so no side silently gets more cores than the other.
* ``median``: the one statistic (median of N repeats) used on both sides of every ratio.
* ``write_raw(path, payload)``: every run writes its raw numbers (each repeat, not only the summary) as
  a small JSON file beside the results, with the machine, load and versions, so a figure can be checked.

Scripts in sub-folders import this with ``sys.path.insert(0, <bench folder>)``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CPU_FLAGS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni"}  # what decides fp32/bf16 speed


def pin_threads(n: int = 1, rayon: bool = False) -> int:
    """Set the thread count explicitly: env vars (inherited by child processes and Spark workers) and torch.

    Args:
        n: threads per process (>= 1).
        rayon: also set ``RAYON_NUM_THREADS`` (HF ``tokenizers``' pool); must run before it is first used.

    Returns:
        torch's thread count after the call (``n``), or ``n`` when torch is not installed.
    """
    assert n >= 1, f"threads must be >= 1, got {n}"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    if rayon:
        os.environ["RAYON_NUM_THREADS"] = str(n)
    try:
        import torch
    except ImportError:
        return n
    torch.set_num_threads(n)
    return torch.get_num_threads()


def median(xs: list[float]) -> float:
    """Median of the repeats (the statistic used on both sides of every ratio)."""
    assert xs, "no measurements"
    return float(statistics.median(xs))


def default_raw_path(area: str, name: str) -> Path:
    """``bench/<area>/raw/<name>-<UTC timestamp>.json``: a new file per run, never overwritten."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return BENCH / area / "raw" / f"{name}-{stamp}.json"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict:
    """CPU model, core count, load averages, Python/torch versions and the thread env vars."""
    model, flags = None, []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        model = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), None)
        have = set(next((x.split(":", 1)[1].split() for x in lines if x.startswith("flags")), []))
        flags = sorted(have & CPU_FLAGS)
    except OSError:
        pass
    info = {
        "cpu": model,
        "cpu_flags": flags,  # bf16 rows mean something only with avx512_bf16 or amx_bf16 (else bf16 is emulated)
        "nproc": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")},
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


# The curation chain both sides run (CurationConfig as a dict): datatrove's stage order (Gopher on the
# uncleaned text, C4 lines and document rules together after it), no normalisation, no language ID, no PII.
DATATROVE_CHAIN = {
    "c4_lines_first": False,
    "normalize": {"enabled": False},
    "langid": {"enabled": False},
    "pii": {"enabled": False},
}


def add_datatrove_args(p) -> None:
    """``--datatrove-python`` (a venv's interpreter, preferred) and ``--datatrove-path`` (a ``pip --target`` folder)."""
    p.add_argument("--datatrove-python", help="python of the venv holding datatrove, e.g. ../datatrove_venv/bin/python")
    p.add_argument(
        "--datatrove-path", help="or: PYTHONPATH folder(s) with datatrove (pip --target), run with this python"
    )


def run_datatrove(args, what: str, ids: list[str], texts: list[str], repeats: int, extra: list[str] = ()) -> dict:
    """Run ``bench/datatrove_side.py WHAT`` in a child process on these documents; returns its JSON.

    Args:
        args: parsed arguments with ``datatrove_python`` / ``datatrove_path`` (see ``add_datatrove_args``).
        what: ``"filters"`` or ``"minhash"``.
        ids: document ids, one per text.
        texts: the documents.
        repeats: timed runs (each one's CPU seconds is returned).
        extra: more arguments for the child (``--word-tokenizer whitespace``...).

    Raises:
        SystemExit: when neither option is given or the child fails (its stderr tail is shown).
    """
    import tempfile

    # absolute (the child runs in the temp folder) but not resolved: a venv's python is often a symlink
    python = os.path.abspath(args.datatrove_python) if args.datatrove_python else sys.executable
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if args.datatrove_path:
        env["PYTHONPATH"] = os.path.abspath(args.datatrove_path)
    elif not args.datatrove_python:
        raise SystemExit("give --datatrove-python (see bench/README.md) or --datatrove-path")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as fh:
        json.dump({"ids": ids, "texts": texts}, fh)
    try:
        cmd = [python, str(BENCH / "datatrove_side.py"), what, fh.name, "--repeats", str(repeats), *extra]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir(), check=False)
    finally:
        os.unlink(fh.name)
    if res.returncode != 0:
        raise SystemExit(f"datatrove child failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def write_raw(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` plus provenance (command, UTC time, git commit, machine) as JSON to ``path``.

    Args:
        path: the JSON file to write; its folder is created.
        payload: the run's raw numbers (JSON-serialisable; other objects are written with ``str``).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "argv": sys.argv,
        "utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "machine": machine_info(),
        **payload,
    }
    text = json.dumps(doc, indent=1, default=str)
    # the raw files are committed: paths of this checkout become relative to the repository
    text = text.replace(str(REPO) + "/", "").replace(str(REPO.parent) + "/", "../")
    path.write_text(text + "\n", encoding="utf-8")
    print(f"raw output: {path}", flush=True)
    return path
