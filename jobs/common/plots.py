"""The report's plotting style in one place: figures on matplotlib's Agg canvas, the colours, the resolution.

Figures use matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), so no global backend is switched and no
GUI is touched, on a driver, in a notebook or in a worker. The trainer's loss curve (``model/run_log.py``, which
cannot import ``jobs``) is drawn the same way.
"""

from __future__ import annotations

import os

BLUE = "#4C72B0"  # the main series (kept documents, counts)
ORANGE = "#DD8452"  # the complement (dropped documents)
DPI = 100


def figure(width: float, height: float):
    """A new figure of ``width`` x ``height`` inches on its own Agg canvas; draw with ``fig.subplots()``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: str | os.PathLike) -> None:
    """Lay out ``fig`` and write it to ``path`` as a PNG."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
