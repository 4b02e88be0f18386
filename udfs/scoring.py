"""Batch inference with a model artifact: scoring (log-likelihood), embeddings and generation.

Pure core (no Spark, no paths): `score_texts`, `embed_texts`, `generate_texts` take a loaded model and
tokenizer and a ``pd.Series`` of texts and return one output row per input row, in input order, with
an ``error`` column (null = fine). Errors are of two kinds: the input's (``null_text``, ``empty_text``,
``encode_failed: ...``), which the same text always gets again, and the model's (``model_failed: ...``:
out of memory, a CUDA fault), which a later try may not; `is_retryable_error` tells them apart.
`plan_micro_batches` and `sliding_windows` are the two pieces of planning they share. The Spark wiring (`make_score_udf`, `make_embed_udf`, `make_generate_udf`) adapts
them to iterator pandas UDFs that return structs.

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

Model cache and Python workers
------------------------------
`load_model_cached` keeps loaded artifacts in a small per-process LRU keyed by (absolute path,
``artifact_hash``, device), so a Python worker loads a model once and reuses it for every later batch,
partition and query. That holds only while the worker lives:

* ``spark.python.worker.reuse=true`` (spark-defaults.conf) keeps workers between tasks; with false
  every task forks a fresh worker and loads the model again.
* Spark's ``PythonWorkerFactory`` kills workers that sat idle in its pool for one minute
  (``IDLE_WORKER_TIMEOUT_NS``, hard-coded to 1 minute in Spark 4.2, no configuration key), so a pause
  in a notebook or between streaming micro-batches costs a reload. ``spark.python.factory.
  idleWorkerMaxPoolSize`` can evict idle workers sooner; ``spark.python.worker.idleTimeoutSeconds``
  (+ ``killOnIdleTimeout``) is a different thing: it watches a worker that is silent *during* a task.
* Reloading is kept cheap: the artifact is verified (one sha256 pass over its files) and the weights
  are read through safetensors' memory map straight into the model, with no unpickling; a cache hit
  costs one read of the small manifest.json. Each load is counted in ``LOAD_COUNT``, logged, and,
  when a load-log folder is given (``load_log_dir``, else ``$LAKELM_LOAD_LOG_DIR`` as the *worker*
  sees it: set it before the session starts or with ``spark.executorEnv.LAKELM_LOAD_LOG_DIR``),
  written there as a marker file so tests can count loads across worker processes.
* One executor with N task slots holds N copies (one per worker); size ``spark.executor.memoryOverhead``
  and GPU slots to match.

The UDF closures capture only the path and small options; the cache is reached through module-level
functions, which cloudpickle pickles by reference, so every task in a worker sees the same cache (a
dict referenced directly from the closure would be pickled by value: a fresh empty cache per task).

Devices and threads: a task that was given a GPU (``TaskContext.resources()["gpu"]``) runs on it when
CUDA is available, otherwise on CPU; torch gets ``TaskContext.cpus()`` (``spark.task.cpus``) threads,
matching the ``OMP_NUM_THREADS`` Spark gives Python workers, so two task slots never oversubscribe the
cores.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from udfs import columns as C
from udfs.tokenize import tokenize_texts

if TYPE_CHECKING:
    import torch

    from model.artifact import Artifact
    from model.gpt import GPT
    from model.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

TASKS = ("score", "embed", "generate")
SCHEMAS = {
    "score": (
        f"{C.SUM_LOGPROB} double, {C.N_TOKENS} int, {C.MEAN_NLL} double, {C.PERPLEXITY} double, "
        f"{C.BITS_PER_BYTE} double, {C.N_WINDOWS} int, {C.ERROR} string"
    ),
    "embed": f"{C.EMBEDDING} array<float>, {C.N_TOKENS} int, {C.TRUNCATED} boolean, {C.ERROR} string",
    "generate": (
        f"{C.GENERATED} string, {C.N_NEW_TOKENS} int, {C.FINISH_REASON} string, {C.TRUNCATED} boolean, "
        f"{C.ERROR} string"
    ),
}

# rows x padded tokens per forward pass. None = by device: on CPU a micro-batch's activations should
# stay near cache size (2048 tokens x 256 dims x 4 B = 2 MB per tensor): scoring 1k-token texts with a
# 6-layer GPT took 24% less time at 2048 than at 32768 (bench/inference/RESULTS.md); a GPU wants big ones.
DEFAULT_TOKEN_BUDGET: int | None = None
CPU_TOKEN_BUDGET = 2048
GPU_TOKEN_BUDGET = 32768
DEFAULT_GENERATE_TOKEN_BUDGET = 8192  # rows x (prompt + new) tokens: decoding steps want many rows
PRECISIONS = ("fp32", "bf16", "auto")
DEFAULT_MAX_ROWS = 64  # rows per forward pass, whatever their length (bounds the per-row output buffers)
DEFAULT_SUB_BATCH_ROWS = 2048  # rows tokenised and sorted together; more rows = tighter length buckets
LOAD_LOG_ENV = "LAKELM_LOAD_LOG_DIR"
MODEL_FAILED = "model_failed"  # error prefix of a row the model failed on: the only retryable error
_CACHE_SIZE = 2  # models kept per worker: a notebook switching between two models does not thrash

_MODELS: OrderedDict[tuple[str, str, str], Artifact] = OrderedDict()
LOAD_COUNT = 0  # artifacts loaded by this process (a reused worker keeps counting)


# ----------------------------------------------------------------------------------------- planning


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


# ----------------------------------------------------------------------------------------- helpers


def _model_device(model: GPT) -> torch.device:
    return next(model.parameters()).device


def _token_budget(token_budget: int | None, device) -> int:
    """``token_budget``, or the device's default when None."""
    if token_budget is None:
        return GPU_TOKEN_BUDGET if device.type == "cuda" else CPU_TOKEN_BUDGET
    return token_budget


def _autocast(precision: str, device) -> Callable:
    """A context-manager factory: bf16 autocast for ``"bf16"`` (and ``"auto"`` on bf16 hardware), else none."""
    import contextlib

    import torch

    from model.train import resolve_precision

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if resolve_precision(precision, device) == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _pad_right(seqs: Sequence[np.ndarray], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) int64 ids and bool mask, right-padded to the longest sequence."""
    import torch

    B, T = len(seqs), max(len(s) for s in seqs)
    idx = np.full((B, T), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((B, T), dtype=bool)  # (B, T)
    for r, s in enumerate(seqs):
        idx[r, : len(s)] = s
        mask[r, : len(s)] = True
    return torch.from_numpy(idx).to(device), torch.from_numpy(mask).to(device)


def _encode(tok: TextTokenizer, texts: pd.Series) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Token arrays (None on error) and per-row errors: ``null_text``, ``empty_text``, ``encode_failed: ...``."""
    enc = tokenize_texts(tok, texts, add_eos=False)
    tokens, errors = list(enc["tokens"]), list(enc["error"])
    for i, (ids, err) in enumerate(zip(tokens, errors)):
        if err is not None and err not in ("null_text", "empty_text"):
            errors[i], tokens[i] = f"encode_failed: {err}", None
        elif err is None and len(ids) == 0:
            errors[i], tokens[i] = "encode_failed: text produced no tokens", None
    return tokens, errors


def _run_micro_batches(
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


def _nullable_int(values: np.ndarray, ok: np.ndarray):
    """Int32 column with nulls where ``ok`` is False."""
    return pd.array([int(v) if k else None for v, k in zip(values, ok)], dtype="Int32")


def _model_error(exc: Exception) -> str:
    return f"{MODEL_FAILED}: {type(exc).__name__}: {exc}"[:300]


def is_retryable_error(error: str | None) -> bool:
    """True when a row's ``error`` is a model failure, which a later run should try again.

    Input errors (``null_text``, ``empty_text``, ``encode_failed: ...``) are deterministic: the row
    is done, with its reason. ``None`` (no error) is done too.

    Example:
        >>> is_retryable_error("model_failed: OutOfMemoryError: CUDA out of memory"), is_retryable_error("empty_text")
        (True, False)
    """
    return isinstance(error, str) and error.startswith(MODEL_FAILED + ":")


# ----------------------------------------------------------------------------------------- pure core


def score_texts(
    model: GPT,
    tok: TextTokenizer,
    texts: pd.Series,
    *,
    token_budget: int | None = DEFAULT_TOKEN_BUDGET,
    max_len: int | None = None,
    stride: int | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    precision: str = "fp32",
) -> pd.DataFrame:
    """Log-likelihood of each text under the model: sum, mean NLL, perplexity and bits per byte.

    Each text is scored as ``EOS + tokens`` (so its first token is scored too, given the document
    start); texts longer than ``max_len`` are scored with `sliding_windows`. Windows of all texts are
    length-bucketed into micro-batches (`plan_micro_batches`).

    Args:
        model: a GPT in eval mode, on any device.
        tok: its tokenizer.
        texts: one document per row; None/NaN and "" are reported in ``error``, not raised.
        token_budget: most ``rows x padded_tokens`` per forward pass; None = by device
            (`CPU_TOKEN_BUDGET`, `GPU_TOKEN_BUDGET`).
        max_len: window length in tokens, in ``[2, block_size]``; None = block_size.
        stride: tokens between window starts, in ``[1, max_len - 1]``; None = ``max_len // 2``.
        max_rows: most windows per forward pass; None = only the budget limits it.
        precision: ``"fp32"`` (default: the same numbers on every machine), ``"bf16"`` (bf16
            autocast; on CPUs with AVX512-BF16/AMX about 2x faster, scores differ in the 4th-5th
            digit) or ``"auto"`` (bf16 where the hardware has it, else fp32).

    Returns:
        DataFrame with ``texts``' index and columns ``sum_logprob`` (nats), ``n_tokens`` (scored
        tokens), ``mean_nll`` (nats/token), ``perplexity``, ``bits_per_byte`` (over the UTF-8 bytes of
        the text), ``n_windows`` and ``error``; outputs are null where ``error`` is set.

    Raises:
        ValueError: for ``max_len``/``stride`` outside the ranges above.

    Example:
        >>> score_texts(model, tok, pd.Series(["hello", None]))[["n_tokens", "error"]]  # doctest: +SKIP
           n_tokens      error
        0         5       None
        1      <NA>  null_text
    """
    from model.scoring import token_logprobs

    block = model.config.block_size
    max_len = block if max_len is None else max_len
    if not 2 <= max_len <= block:
        raise ValueError(f"max_len must be in [2, block_size={block}], got {max_len}")
    stride = max(1, max_len // 2) if stride is None else stride
    tokens, errors = _encode(tok, texts)
    n = len(tokens)
    items: list[np.ndarray] = []  # windows, any order
    owner: list[tuple[int, int]] = []  # (row, n_scored) per window
    n_windows = np.zeros(n, dtype=np.int64)
    for row, ids in enumerate(tokens):
        if ids is None:
            continue
        seq = np.concatenate([np.array([tok.eos_id], dtype=np.int64), ids.astype(np.int64)])
        for begin, end, k in sliding_windows(len(seq), max_len, stride):
            items.append(seq[begin:end])
            owner.append((row, k))
            n_windows[row] += 1
    sums = np.zeros(n, dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    device = _model_device(model)

    autocast = _autocast(precision, device)
    token_budget = _token_budget(token_budget, device)

    def forward(batch: np.ndarray) -> None:
        seqs = [items[j] for j in batch]
        idx, mask = _pad_right(seqs, tok.pad_id, device)
        with autocast():
            lp = token_logprobs(model, idx, mask)
        lp = lp.double().cpu().numpy()  # (B, T-1); lp[:, t] scores token t+1
        for r, j in enumerate(batch):
            row, k = owner[j]
            L = len(items[j])
            sums[row] += lp[r, L - 1 - k : L - 1].sum()
            counts[row] += k

    def on_error(j: int, exc: Exception) -> None:
        row = owner[j][0]
        if errors[row] is None:
            errors[row] = _model_error(exc)

    _run_micro_batches(items, token_budget, max_rows, forward, on_error)

    ok = np.array([e is None for e in errors], dtype=bool)
    n_bytes = np.array([len(t.encode("utf-8")) if k else 0 for t, k in zip(texts, ok)], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_nll = np.where(ok & (counts > 0), -sums / np.maximum(counts, 1), np.nan)
        bpb = np.where(ok & (n_bytes > 0), -sums / np.maximum(n_bytes, 1) / np.log(2), np.nan)
    return pd.DataFrame(
        {
            C.SUM_LOGPROB: np.where(ok, sums, np.nan),
            C.N_TOKENS: _nullable_int(counts, ok),
            C.MEAN_NLL: mean_nll,
            C.PERPLEXITY: np.exp(mean_nll),
            C.BITS_PER_BYTE: bpb,
            C.N_WINDOWS: _nullable_int(n_windows, ok),
            C.ERROR: pd.Series(errors, dtype=object).values,
        },
        index=texts.index,
    )


def embed_texts(
    model: GPT,
    tok: TextTokenizer,
    texts: pd.Series,
    *,
    token_budget: int | None = DEFAULT_TOKEN_BUDGET,
    max_len: int | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    precision: str = "fp32",
) -> pd.DataFrame:
    """Mean-pooled final hidden states of each text (``model.scoring.mean_pooled_embeddings``).

    Texts longer than ``max_len`` tokens keep their first ``max_len`` tokens (``truncated`` = True).

    Args:
        model: a GPT in eval mode, on any device.
        tok: its tokenizer.
        texts: one text per row; None/NaN and "" are reported in ``error``.
        token_budget: most ``rows x padded_tokens`` per forward pass; None = by device.
        max_len: most tokens embedded per text, in ``[1, block_size]``; None = block_size.
        max_rows: most rows per forward pass; None = only the budget limits it.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``, as in `score_texts`.

    Returns:
        DataFrame with ``texts``' index and columns ``embedding`` (float32 array of n_embd, not
        normalised), ``n_tokens`` (tokens embedded), ``truncated`` and ``error``.
    """
    from model.scoring import mean_pooled_embeddings

    block = model.config.block_size
    max_len = block if max_len is None else max_len
    if not 1 <= max_len <= block:
        raise ValueError(f"max_len must be in [1, block_size={block}], got {max_len}")
    tokens, errors = _encode(tok, texts)
    n = len(tokens)
    rows = [r for r in range(n) if tokens[r] is not None]
    items = [tokens[r][:max_len].astype(np.int64) for r in rows]
    out: list[np.ndarray | None] = [None] * n
    device = _model_device(model)

    autocast = _autocast(precision, device)
    token_budget = _token_budget(token_budget, device)

    def forward(batch: np.ndarray) -> None:
        idx, mask = _pad_right([items[j] for j in batch], tok.pad_id, device)
        with autocast():
            emb = mean_pooled_embeddings(model, idx, mask)
        emb = emb.float().cpu().numpy()  # (B, C)
        for r, j in enumerate(batch):
            out[rows[j]] = emb[r].astype(np.float32)

    def on_error(j: int, exc: Exception) -> None:
        errors[rows[j]] = _model_error(exc)

    _run_micro_batches(items, token_budget, max_rows, forward, on_error)
    ok = [e is None for e in errors]
    n_tok = [min(len(t), max_len) if k else None for t, k in zip(tokens, ok)]
    trunc = [len(t) > max_len if k else None for t, k in zip(tokens, ok)]
    return pd.DataFrame(
        {
            C.EMBEDDING: pd.Series([e if k else None for e, k in zip(out, ok)], dtype=object).values,
            C.N_TOKENS: pd.array(n_tok, dtype="Int32"),
            C.TRUNCATED: pd.array(trunc, dtype="boolean"),
            C.ERROR: pd.Series(errors, dtype=object).values,
        },
        index=texts.index,
    )


def decode_batch(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """``GPT.generate`` with one random generator per row (``per_row_seed``), so a row's sample does not
    depend on its batch.

    Same KV-cache and cropping behaviour as ``GPT.generate``; with a ``seed`` each row draws from its
    own generator seeded with it, so a row gives the same tokens as ``model.generate(row, seed=seed)``
    alone, whatever else is in the micro-batch (retries and new rows never change old outputs).

    Args:
        model: a GPT in eval mode.
        idx: (B, T) prompt ids, int64, T >= 1, all rows the same length (no padding).
        max_new_tokens: most tokens to add (>= 0).
        temperature: 0 = greedy; else softmax temperature.
        top_k: keep the k most likely tokens; None = all.
        top_p: nucleus mass in (0, 1]; None = all.
        seed: per-row generator seed; None = torch's global RNG.
        eos_id: a row stops after emitting it (later positions hold it); None = never stop early.

    Returns:
        (B, T + n) ids, prompt included, n <= max_new_tokens.
    """
    return model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                          eos_id=eos_id, per_row_seed=True)


def generate_texts(
    model: GPT,
    tok: TextTokenizer,
    prompts: pd.Series,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = 0,
    token_budget: int = DEFAULT_GENERATE_TOKEN_BUDGET,
    max_rows: int | None = DEFAULT_MAX_ROWS,
) -> pd.DataFrame:
    """Continue each prompt with the model (KV cache), stopping at EOS or ``max_new_tokens``.

    The model input is ``EOS + prompt tokens`` (a document start, as in training), cut to its last
    ``block_size`` tokens (``truncated`` = True). The model has no attention mask for left padding, so
    prompts are bucketed by exact token length: a micro-batch holds prompts of one length.

    Args:
        model: a GPT in eval mode, on any device.
        tok: its tokenizer.
        prompts: one prompt per row; None/NaN and "" are reported in ``error``.
        max_new_tokens: most tokens generated per row (>= 0).
        temperature: 0 = greedy; else softmax temperature.
        top_k: keep the k most likely tokens; None = all.
        top_p: nucleus mass in (0, 1]; None = all.
        seed: each row samples from its own generator seeded with this, so its output is
            reproducible and independent of batching; None = torch's global RNG (not reproducible).
        token_budget: most ``rows x (prompt + new) tokens`` per micro-batch.
        max_rows: most rows per micro-batch; None = only the budget limits it.

    Returns:
        DataFrame with ``prompts``' index and columns ``generated`` (text after the prompt, EOS not
        included), ``n_new_tokens``, ``finish_reason`` (``"eos"`` or ``"length"``), ``truncated`` and
        ``error``.
    """
    import torch

    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    block = model.config.block_size
    tokens, errors = _encode(tok, prompts)
    n = len(tokens)
    rows = [r for r in range(n) if tokens[r] is not None]
    full = [np.concatenate([np.array([tok.eos_id], dtype=np.int64), tokens[r].astype(np.int64)]) for r in rows]
    items = [s[-block:] for s in full]
    new_ids: list[list[int] | None] = [None] * n
    device = _model_device(model)

    # plan on (prompt + new) length, then split each planned batch into exact-length groups
    def forward(batch: np.ndarray) -> None:
        by_len: dict[int, list[int]] = {}
        for j in batch:
            by_len.setdefault(len(items[j]), []).append(int(j))
        for T, group in by_len.items():
            idx = torch.from_numpy(np.stack([items[j] for j in group])).to(device)  # (B, T)
            out = decode_batch(model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                               seed=seed, eos_id=tok.eos_id)[:, T:].cpu().tolist()  # (B, n)
            for j, ids in zip(group, out):
                new_ids[rows[j]] = ids

    def on_error(j: int, exc: Exception) -> None:
        errors[rows[j]] = _model_error(exc)

    padded = [np.empty(len(s) + max_new_tokens) for s in items]  # lengths only, for the planner
    _run_micro_batches(padded, token_budget, max_rows, forward, on_error)
    generated, n_new, reason, trunc = [None] * n, [None] * n, [None] * n, [None] * n
    for j, r in enumerate(rows):
        if errors[r] is not None or new_ids[r] is None:
            continue
        ids = new_ids[r]
        stop = ids.index(tok.eos_id) if tok.eos_id in ids else len(ids)
        generated[r] = tok.decode(ids[:stop])
        n_new[r] = stop
        reason[r] = "eos" if stop < len(ids) else "length"
        trunc[r] = len(full[j]) > block
    return pd.DataFrame(
        {
            C.GENERATED: pd.Series(generated, dtype=object).values,
            C.N_NEW_TOKENS: pd.array(n_new, dtype="Int32"),
            C.FINISH_REASON: pd.Series(reason, dtype=object).values,
            C.TRUNCATED: pd.array(trunc, dtype="boolean"),
            C.ERROR: pd.Series(errors, dtype=object).values,
        },
        index=prompts.index,
    )


CORES: dict[str, Callable[..., pd.DataFrame]] = {"score": score_texts, "embed": embed_texts, "generate": generate_texts}


# ----------------------------------------------------------------------------------------- model cache


def choose_device(gpu_addresses: Sequence[str] | None, cuda_available: bool) -> str:
    """``"cuda:<first address>"`` when the task was given a GPU and CUDA works, else ``"cpu"``.

    Example:
        >>> choose_device(["1"], True), choose_device(["1"], False), choose_device(None, True)
        ('cuda:1', 'cpu', 'cpu')
    """
    if gpu_addresses and cuda_available:
        return f"cuda:{gpu_addresses[0]}"
    return "cpu"


def task_device_and_threads() -> tuple[str, int | None]:
    """Device and torch thread count for the current Spark task (``("cpu", None)`` outside a task).

    Returns:
        ``(device, threads)``: the task's GPU when it has one and CUDA is available, else CPU; threads
        = ``TaskContext.cpus()`` (``spark.task.cpus``), or None outside Spark (leave torch's setting).
    """
    import torch
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:
        return "cpu", None
    gpu = (ctx.resources() or {}).get("gpu")
    device = choose_device(list(gpu.addresses) if gpu is not None else None, torch.cuda.is_available())
    return device, max(1, int(ctx.cpus() or 1))


def _write_load_marker(folder: str, record: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    name = f"load-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        json.dump(record, f)


def load_model_cached(
    path: str, device: str = "cpu", expected_hash: str | None = None, load_log_dir: str | None = None
) -> Artifact:
    """The artifact at ``path`` on ``device``, loaded once per process and kept in a small LRU.

    The key is (absolute path, ``artifact_hash``, device): the hash is the sha256 of manifest.json
    (cheap to read on every call), so a folder replaced by another model is reloaded, never served
    stale. ``load_artifact`` verifies every file against the manifest on load.

    Args:
        path: the artifact folder (visible to every executor).
        device: ``"cpu"`` or ``"cuda:N"``.
        expected_hash: the hash the driver saw when the job started; None = accept any.
        load_log_dir: folder for one marker file per load (tests count loads across workers);
            None = ``$LAKELM_LOAD_LOG_DIR`` if set, else no marker.

    Returns:
        The loaded ``Artifact`` (model in eval mode on ``device``).

    Raises:
        model.artifact.ArtifactIntegrityError: if the folder does not match its manifest, or its hash
            is not ``expected_hash`` (the artifact changed after the job started).
    """
    global LOAD_COUNT
    from model.artifact import ArtifactIntegrityError, artifact_hash, load_artifact

    digest = artifact_hash(path)
    if expected_hash is not None and digest != expected_hash:
        raise ArtifactIntegrityError(
            f"artifact {path} has hash {digest}, but the job started with {expected_hash}; "
            "artifacts are immutable: write a new folder and rerun the job with it"
        )
    key = (os.path.abspath(path), digest, str(device))
    art = _MODELS.get(key)
    if art is not None:
        _MODELS.move_to_end(key)
        return art
    t0 = time.monotonic()
    art = load_artifact(path, device)
    seconds = time.monotonic() - t0
    LOAD_COUNT += 1
    _MODELS[key] = art
    while len(_MODELS) > _CACHE_SIZE:
        _MODELS.popitem(last=False)
    log.info("pid %d loaded model %s (%s) on %s in %.2f s (load #%d)", os.getpid(), path, digest[:12], device,
             seconds, LOAD_COUNT)
    folder = load_log_dir or os.environ.get(LOAD_LOG_ENV)
    if folder:
        _write_load_marker(folder, {"pid": os.getpid(), "path": key[0], "hash": digest, "device": str(device),
                                    "seconds": seconds, "load_count": LOAD_COUNT})
    return art


def make_predict_fn(
    artifact_path: str,
    task: str,
    options: dict | None = None,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    model_fault: str | None = None,
) -> Callable[[pd.Series], pd.DataFrame]:
    """Load (or reuse) the model for this task's device and return ``predict(texts) -> DataFrame``.

    Called once per UDF invocation (per partition) on the executor: sets torch's threads to the task's
    CPUs, picks the device, takes the model from the per-process cache.

    Args:
        artifact_path: the artifact folder.
        task: ``"score"``, ``"embed"`` or ``"generate"``.
        options: keyword options of the task's core function (`score_texts`, ...); None = defaults.
        expected_hash: see `load_model_cached`.
        load_log_dir: see `load_model_cached`.
        model_fault: tests only: the model fails on inputs holding this text (``udfs.faults.failing_model``);
            None = no fault.

    Returns:
        A function from a Series of texts to the task's output DataFrame (same index).
    """
    import torch

    if task not in CORES:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    device, threads = task_device_and_threads()
    if threads is not None:
        torch.set_num_threads(threads)
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # tokenizers' pool, before its first use
    art = load_model_cached(artifact_path, device, expected_hash, load_log_dir)
    core, opts = CORES[task], dict(options or {})

    def predict(texts: pd.Series) -> pd.DataFrame:
        if model_fault:
            from udfs.faults import failing_model

            with failing_model(art.model, art.tokenizer, model_fault):
                return core(art.model, art.tokenizer, texts, **opts)
        return core(art.model, art.tokenizer, texts, **opts)

    return predict


# ----------------------------------------------------------------------------------------- Spark UDFs


def make_task_udf(
    task: str,
    artifact_path: str,
    *,
    sub_batch_rows: int = DEFAULT_SUB_BATCH_ROWS,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    **options,
):
    """The UDF of ``task`` (``"score"``, ``"embed"`` or ``"generate"``): `make_score_udf` and friends by name.

    Args:
        task: which core runs (`score_texts`, `embed_texts`, `generate_texts`).
        artifact_path: artifact folder readable by every executor.
        sub_batch_rows: rows processed together (> 0).
        expected_hash: refuse to run if the artifact's hash differs; None = accept any.
        load_log_dir: folder for per-load marker files; None = ``$LAKELM_LOAD_LOG_DIR``.
        **options: keyword options of the task's core function.

    Returns:
        An iterator pandas UDF of one string column returning ``SCHEMAS[task]``.

    Raises:
        ValueError: for an unknown task or a non-positive ``sub_batch_rows``.
        TypeError: for an option the task's core does not take.
    """
    from pyspark.sql.functions import pandas_udf

    if task not in CORES:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if sub_batch_rows <= 0:
        raise ValueError(f"sub_batch_rows must be > 0, got {sub_batch_rows}")
    _check_options(task, options)
    from udfs.faults import model_fault_marker

    model_fault = model_fault_marker()  # test-only switch, read here on the driver; the closure carries it

    @pandas_udf(SCHEMAS[task])
    def infer(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from udfs.faults import maybe_kill_worker

        predict = make_predict_fn(artifact_path, task, options, expected_hash, load_log_dir, model_fault)
        maybe_kill_worker(task)  # test-only fault switch (udfs/faults.py); a no-op otherwise
        for texts in batches:
            for start in range(0, len(texts), sub_batch_rows):
                yield predict(texts.iloc[start : start + sub_batch_rows]).reset_index(drop=True)

    return infer


def _check_options(task: str, options: dict) -> None:
    """Fail on the driver for option names the task's core does not take."""
    import inspect

    allowed = [p.name for p in inspect.signature(CORES[task]).parameters.values() if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"unknown {task} options {unknown}; allowed: {allowed}")


def make_score_udf(
    artifact_path: str,
    *,
    sub_batch_rows: int = DEFAULT_SUB_BATCH_ROWS,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    **options,
):
    """Iterator pandas UDF: text -> struct of log-likelihood scores (see `score_texts`).

    Per partition the model is taken from the worker's cache (loaded on first use); each Arrow batch
    is cut into sub-batches of at most ``sub_batch_rows`` rows, each tokenised, sorted by length and
    run in token-budgeted micro-batches. Rows map 1:1 and keep their order; bad rows get ``error``.

    Args:
        artifact_path: artifact folder readable by every executor.
        sub_batch_rows: rows processed together (bounds memory; Delta scans send 4096-row batches).
        expected_hash: refuse to run if the artifact's hash differs (pass ``artifact_hash`` from the driver).
        load_log_dir: folder for per-load marker files (tests); None = ``$LAKELM_LOAD_LOG_DIR``.
        **options: `score_texts` keyword options: ``token_budget``, ``max_len``, ``stride``, ``max_rows``.

    Returns:
        A UDF of one string column returning ``struct<sum_logprob double, n_tokens int, mean_nll double,
        perplexity double, bits_per_byte double, n_windows int, error string>``.

    Raises:
        TypeError: for an option `score_texts` does not take.

    Example:
        >>> df = spark.createDataFrame([("hello",), (None,)], "text string")         # doctest: +SKIP
        >>> df.select(make_score_udf("models/m1")("text").alias("s")).select("s.n_tokens", "s.error").show()
        +--------+---------+
        |n_tokens|    error|
        +--------+---------+
        |       5|     NULL|
        |    NULL|null_text|
        +--------+---------+
    """
    return make_task_udf("score", artifact_path, sub_batch_rows=sub_batch_rows, expected_hash=expected_hash,
                         load_log_dir=load_log_dir, **options)


def make_embed_udf(
    artifact_path: str,
    *,
    sub_batch_rows: int = DEFAULT_SUB_BATCH_ROWS,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    **options,
):
    """Iterator pandas UDF: text -> struct<embedding array<float>, n_tokens int, truncated boolean, error string>.

    Batching, caching and errors as in `make_score_udf`; the embedding is `embed_texts`' mean-pooled
    final hidden state (n_embd floats) of the first ``max_len`` tokens.

    Args:
        artifact_path: artifact folder readable by every executor.
        sub_batch_rows: rows processed together.
        expected_hash: refuse to run if the artifact's hash differs.
        load_log_dir: folder for per-load marker files; None = ``$LAKELM_LOAD_LOG_DIR``.
        **options: `embed_texts` keyword options: ``token_budget``, ``max_len``, ``max_rows``.

    Returns:
        The UDF (one string column in, the struct out).

    Example:
        >>> df.select(make_embed_udf("models/m1")("text").alias("e")).select("e.embedding")  # doctest: +SKIP
    """
    return make_task_udf("embed", artifact_path, sub_batch_rows=sub_batch_rows, expected_hash=expected_hash,
                         load_log_dir=load_log_dir, **options)


def make_generate_udf(
    artifact_path: str,
    *,
    sub_batch_rows: int = DEFAULT_SUB_BATCH_ROWS,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    **options,
):
    """Iterator pandas UDF: prompt -> struct<generated string, n_new_tokens int, finish_reason string,
    truncated boolean, error string>.

    Batching, caching and errors as in `make_score_udf`; decoding as in `generate_texts` (KV cache,
    stop at EOS, per-row seeded sampling so results do not depend on batching).

    Args:
        artifact_path: artifact folder readable by every executor.
        sub_batch_rows: rows processed together.
        expected_hash: refuse to run if the artifact's hash differs.
        load_log_dir: folder for per-load marker files; None = ``$LAKELM_LOAD_LOG_DIR``.
        **options: `generate_texts` keyword options: ``max_new_tokens``, ``temperature``, ``top_k``,
            ``top_p``, ``seed``, ``token_budget``, ``max_rows``.

    Returns:
        The UDF (one string column in, the struct out).

    Example:
        >>> df.select(make_generate_udf("models/m1", max_new_tokens=32, temperature=0)("prompt").alias("g"))
        ... # doctest: +SKIP
    """
    return make_task_udf("generate", artifact_path, sub_batch_rows=sub_batch_rows, expected_hash=expected_hash,
                         load_log_dir=load_log_dir, **options)
