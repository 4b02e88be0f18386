"""Planning the work of batch inference: length-bucketed micro-batches under a token budget, and the
sliding windows that score long documents.

Where the time goes, and what we do about it:

* **Padding.** Texts have log-normal lengths; padding every micro-batch to the longest text of an
  Arrow batch wastes most of the compute. Each sub-batch is tokenised, sorted by token length and cut
  into micro-batches whose ``rows * padded_length`` stays under ``token_budget``; every micro-batch is
  padded only to its own longest row, and results are written back by original position.
* **Memory.** With ``spark.sql.execution.arrow.pythonUDF.columnarInput.enabled`` (default true in
  Spark 4.2) a Parquet/Delta scan hands the UDF its own 4096-row batches and ignores
  ``spark.sql.execution.arrow.maxRecordsPerBatch``; so the UDF cuts every batch into sub-batches of at
  most ``sub_batch_rows`` rows, and the token budget bounds every forward pass.
* **Long inputs.** Scoring slides a window of ``max_len`` tokens (default ``block_size``) over the
  document with step ``stride``; every token is scored exactly once, with at least
  ``max_len - stride`` tokens of context (fewer only at the document start). Embedding keeps the first
  ``max_len`` tokens, generation the last ``block_size`` prompt tokens; both report ``truncated``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

# rows x padded tokens per forward pass. None = by device: on CPU a micro-batch's activations should
# stay near cache size (2048 tokens x 256 dims x 4 B = 2 MB per tensor): scoring 1k-token texts with a
# 6-layer GPT took 24% less time at 2048 than at 32768 (bench/inference/RESULTS.md); a GPU wants big ones.
DEFAULT_TOKEN_BUDGET: int | None = None
CPU_TOKEN_BUDGET = 2048
GPU_TOKEN_BUDGET = 32768
DEFAULT_GENERATE_TOKEN_BUDGET = 8192  # rows x (prompt + new) tokens: decoding steps want many rows
DEFAULT_MAX_ROWS = 64  # rows per forward pass, whatever their length (bounds the per-row output buffers)
DEFAULT_SUB_BATCH_ROWS = 2048  # rows tokenised and sorted together; more rows = tighter length buckets


def plan_micro_batches(lengths: Sequence[int], token_budget: int, max_rows: int | None = None) -> list[np.ndarray]:
    """Sort items by length and cut them into micro-batches that fit a token budget.

    Items are taken shortest first; a micro-batch is closed when one more item would make
    ``rows * longest_length`` exceed ``token_budget`` or ``rows`` exceed ``max_rows``. An item longer
    than the budget gets a micro-batch of its own.

    Args:
        lengths: token length of every item, in input order.
        token_budget: most ``rows x padded_length`` tokens per micro-batch (> 0).
        max_rows: most rows per micro-batch; None = no limit beyond the budget.

    Returns:
        Arrays of item positions (into ``lengths``), each sorted by length; together they hold every
        position exactly once. Callers write results back by position, which restores input order.

    Raises:
        ValueError: if ``token_budget`` or ``max_rows`` is not positive.

    Example:
        >>> [b.tolist() for b in plan_micro_batches([5, 1, 4, 2], token_budget=8)]
        [[1, 3], [2], [0]]
    """
    if token_budget <= 0:
        raise ValueError(f"token_budget must be > 0, got {token_budget}")
    if max_rows is not None and max_rows <= 0:
        raise ValueError(f"max_rows must be > 0 or None, got {max_rows}")
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lens, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    for i in range(len(order)):
        rows = i - start + 1  # rows if item i joins; sorted ascending, so it is the longest
        full = rows * int(lens[order[i]]) > token_budget or (max_rows is not None and rows > max_rows)
        if full and rows > 1:
            batches.append(order[start:i])
            start = i
    if start < len(order):
        batches.append(order[start:])
    return batches


def sliding_windows(n: int, max_len: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows that score every token of a sequence exactly once.

    Position 0 is context only (the EOS prepended to a document); positions ``1..n-1`` are scored.
    The first window scores everything it covers; each later window starts ``stride`` tokens after
    the previous one and scores only tokens not scored yet, so each token sees at least
    ``max_len - stride`` tokens of context (fewer only at the start). The last window is moved back
    to end exactly at ``n``, which gives its tokens more context at the same cost.

    Args:
        n: sequence length in tokens (EOS included), >= 2.
        max_len: window length in tokens (the model's block_size or less), >= 2.
        stride: tokens between window starts, in ``[1, max_len - 1]``.

    Returns:
        ``(begin, end, n_scored)`` per window: the window is ``seq[begin:end]`` and scores its last
        ``n_scored`` tokens.

    Example:
        >>> sliding_windows(10, max_len=6, stride=3)
        [(0, 6, 5), (3, 9, 3), (4, 10, 1)]
    """
    if max_len < 2 or not 1 <= stride <= max_len - 1:
        raise ValueError(f"need max_len >= 2 and 1 <= stride <= max_len - 1, got max_len={max_len}, stride={stride}")
    if n < 2:
        raise ValueError(f"a sequence needs >= 2 tokens (EOS + 1) to score, got {n}")
    out, begin, scored_to = [], 0, 1
    while scored_to < n:
        if begin + max_len > n:
            begin = max(0, n - max_len)
        end = min(begin + max_len, n)
        out.append((begin, end, end - scored_to))
        scored_to = end
        begin += stride
    return out


def token_budget_for(token_budget: int | None, device) -> int:
    """``token_budget``, or the device's default when None (`GPU_TOKEN_BUDGET` on CUDA, else `CPU_TOKEN_BUDGET`)."""
    if token_budget is None:
        return GPU_TOKEN_BUDGET if device.type == "cuda" else CPU_TOKEN_BUDGET
    return token_budget


def run_micro_batches(
    items: Sequence[np.ndarray],
    token_budget: int,
    max_rows: int | None,
    forward: Callable[[np.ndarray], None],
    on_error: Callable[[int, Exception], None],
) -> None:
    """Call ``forward(positions)`` per planned micro-batch; a failing micro-batch is retried one item
    at a time, so one bad item (or a batch too large for the device) never fails its neighbours."""
    for batch in plan_micro_batches([len(s) for s in items], token_budget, max_rows):
        try:
            forward(batch)
        except Exception as exc:  # noqa: BLE001 - isolate the item that fails, report it per row
            if len(batch) == 1:
                on_error(int(batch[0]), exc)
                continue
            log.warning("micro-batch of %d items failed (%s); retrying one item at a time", len(batch), exc)
            for pos in batch:
                try:
                    forward(np.array([pos]))
                except Exception as exc1:  # noqa: BLE001
                    on_error(int(pos), exc1)
