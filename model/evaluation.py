"""Held-out loss of a GPT per group of documents (e.g. per source), in the trainer's window layout.

Pure PyTorch: documents come in as token arrays, so any caller (the report, a notebook) can group them
as it likes. A group's documents are concatenated in the given order and cut into windows of
``block_size + 1`` tokens, as ``jobs/build_dataset.py`` packs them; unlike the packer, the last, shorter
window is scored too, so a small group loses no tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from model.gpt import GPT


def pack_windows(docs: Sequence[np.ndarray], window: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Concatenate token arrays and cut them into windows of ``window`` tokens (the last may be shorter).

    Args:
        docs: 1-D integer arrays, one per document, in order (each ending with EOS if the trainer's
            documents do).
        window: tokens per window (``block_size + 1``; a window of w tokens has w - 1 targets), >= 2.
        max_tokens: keep at most this many tokens of the stream (a bound on evaluation time); None = all.

    Returns:
        int64 arrays; every one but the last has ``window`` tokens. A last window of one token (no
        target) is left out.

    Example:
        >>> [w.tolist() for w in pack_windows([np.arange(3), np.arange(3, 8)], 3)]
        [[0, 1, 2], [3, 4, 5], [6, 7]]
    """
    if window < 2:
        raise ValueError(f"window must be >= 2 tokens, got {window}")
    arrays = [np.asarray(d, dtype=np.int64).reshape(-1) for d in docs]
    stream = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)
    if max_tokens is not None:
        stream = stream[:max_tokens]
    return [w for w in (stream[i : i + window] for i in range(0, len(stream), window)) if len(w) >= 2]


@torch.no_grad()
def loss_by_group(
    model: GPT,
    groups: Mapping[str, Sequence[np.ndarray]],
    *,
    batch_size: int = 16,
    max_tokens_per_group: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, dict[str, float]]:
    """Mean next-token loss (nats/token) of ``model`` on each group of documents.

    Per group: `pack_windows` with the model's ``block_size + 1``, then batches of ``batch_size``
    windows (inputs ``w[:-1]``, targets ``w[1:]``; the short last one right-padded with ignored targets)
    through the model's own loss. The loss is the mean over every target token, the same quantity as
    the trainer's validation loss.

    Args:
        model: a GPT (switched to eval mode for the call, then restored).
        groups: group name -> token arrays of its documents, in a fixed order.
        batch_size: windows per forward pass (>= 1).
        max_tokens_per_group: evaluate at most this many tokens of each group; None = all.
        device: where to run.

    Returns:
        group -> ``{"loss": nats per target token (NaN when the group has no target), "tokens": targets
        scored, "docs": documents given, "windows": windows scored}``.

    Example:
        >>> loss_by_group(model, {"web": [ids_a, ids_b], "books": [ids_c]})  # doctest: +SKIP
        {'books': {'loss': 6.1, 'tokens': 511.0, 'docs': 1.0, 'windows': 4.0}, 'web': {...}}
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    window = model.config.block_size + 1
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {}
    try:
        for name in sorted(groups):
            windows = pack_windows(groups[name], window, max_tokens_per_group)
            total, n_tok = 0.0, 0
            for s in range(0, len(windows), batch_size):
                batch = windows[s : s + batch_size]
                T = max(len(w) for w in batch) - 1
                x = torch.zeros((len(batch), T), dtype=torch.long)  # (B, T) inputs, right-padded
                y = torch.full((len(batch), T), -1, dtype=torch.long)  # (B, T) targets, -1 = padding
                for i, w in enumerate(batch):
                    x[i, : len(w) - 1] = torch.from_numpy(w[:-1])
                    y[i, : len(w) - 1] = torch.from_numpy(w[1:])
                n = int((y >= 0).sum())
                _, loss = model(x.to(device), y.to(device))  # mean over the n real targets
                total += float(loss) * n
                n_tok += n
            out[name] = {
                "loss": total / n_tok if n_tok else float("nan"),
                "tokens": float(n_tok),
                "docs": float(len(groups[name])),
                "windows": float(len(windows)),
            }
    finally:
        model.train(was_training)
    return out
