"""What a training run writes besides checkpoints: ``metrics.jsonl`` lines and the loss-curve PNG."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def append_metrics(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line to ``path`` (created if missing) and flush it to disk.

    Args:
        path: the ``metrics.jsonl`` file.
        record: JSON-able values; floats that are NaN/inf are written as null.
    """
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(clean, sort_keys=True) + "\n")
        f.flush()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file, in order; [] if it does not exist."""
    p = Path(path)
    if not p.exists():
        return []
    with open(p, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(path: str | os.PathLike, max_step: int) -> int:
    """Drop records with ``step > max_step`` (written after the checkpoint a resumed run starts from).

    Args:
        path: the ``metrics.jsonl`` file; a missing file is left missing.
        max_step: last step to keep (the resumed checkpoint's step).

    Returns:
        Number of records dropped.
    """
    records = read_metrics(path)
    kept = [r for r in records if r.get("step", 0) <= max_step]
    if len(kept) != len(records):
        tmp = Path(str(path) + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in kept)
        os.replace(tmp, path)
    return len(records) - len(kept)


def plot_loss_curve(records: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Save train and validation loss against step as a PNG.

    Uses matplotlib's object API with the Agg canvas, so no global backend or GUI is touched (the style of
    ``jobs/common/plots.py``, which draws the report's other figures; ``model`` cannot import ``jobs``).

    Args:
        records: ``metrics.jsonl`` records; ``kind`` "train"/"val" with ``loss`` in nats per token.
        path: PNG file to write.
        title: figure title (run name, say).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for kind, style in (("train", "-"), ("val", "o-")):
        pts = [(r["step"], r["loss"]) for r in records if r.get("kind") == kind and r.get("loss") is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=f"{kind} loss", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend()
    fig.savefig(path)
    log.info("wrote %s", path)
