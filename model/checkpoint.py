"""Training checkpoints: one place that saves and loads them (nanoGPT copies this code around).

A checkpoint is a dict of tensors and plain Python values (ints, floats, strings, lists, dicts,
None), so it loads with ``torch.load(weights_only=True)``: unpickling arbitrary objects is never
needed. RNG states are converted to tensors for the same reason.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

_CKPT_RE = re.compile(r"^ckpt_(\d{8})\.pt$")


def checkpoint_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    """``ckpt_dir/ckpt_00001234.pt`` for ``step`` 1234 (zero-padded so names sort by step)."""
    return Path(ckpt_dir) / f"ckpt_{step:08d}.pt"


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in ``ckpt_dir``, oldest first; [] if the folder is missing."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), d / name) for name in os.listdir(d) if (m := _CKPT_RE.match(name))]
    return sorted(found)


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """Path of the newest checkpoint in ``ckpt_dir``, or None."""
    found = list_checkpoints(ckpt_dir)
    return found[-1][1] if found else None


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` atomically: to a temporary file, then renamed, so a crash never leaves half a file.

    Args:
        state: tensors and plain Python values only (see module docstring).
        path: destination file; its folder is created.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    log.info("saved checkpoint %s", path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs while unpickling).

    Args:
        path: a file written by ``save_checkpoint``.
        map_location: device for the tensors.

    Returns:
        The state dict as saved.
    """
    return torch.load(path, map_location=map_location, weights_only=True)


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints; returns the deleted paths."""
    found = list_checkpoints(ckpt_dir)
    doomed = [p for _, p in found[:-keep]] if keep > 0 else [p for _, p in found]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA RNG states as tensors and plain values.

    Returns:
        A dict that ``restore_rng_state`` accepts and ``torch.load(weights_only=True)`` can read.
    """
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set every RNG back to a state from ``capture_rng_state``.

    Args:
        state: the captured dict; CUDA states are restored only when CUDA is available and the
            device count matches.
    """
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        else:
            log.warning(
                "checkpoint has %d CUDA RNG states but %d devices are visible; CUDA RNG not restored",
                len(cuda),
                torch.cuda.device_count(),
            )
