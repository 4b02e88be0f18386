"""The pure cores of batch inference: score, embed and generate over a ``pd.Series`` of texts.

`score_texts`, `embed_texts` and `generate_texts` take a loaded model and its tokenizer and return one
output row per input row, in input order, with an ``error`` column (null = fine); no Spark, no paths.
The model is any object with the inference interface of ``model.gpt.GPT`` (``hidden_states``,
``lm_head``, ``generate``, ``config.block_size``). Errors are of two kinds: the input's (``null_text``,
``empty_text``, ``encode_failed: ...``), which the same text always gets again, and the model's
(``model_failed: ...``: out of memory, a CUDA fault), which a later try may not; `is_retryable_error`
tells them apart. Work is planned by ``udfs.batching``; the Spark UDFs are in ``udfs.inference``.

Which tokens ``sum_logprob`` covers, one rule for every model (lakelm GPT, GPT-2, Llama family): the
model reads ``prefix + tokens``, where the prefix is the tokenizer's ``prefix_id`` (BOS when the
checkpoint has one, else EOS, the document separator GPT-2 and our GPT are trained with), so every token
of the text is scored, the first one given a document start; the prefix itself is context, never
scored. A tokenizer with neither BOS nor EOS scores the text from its second token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from udfs import columns as C
from udfs.batching import (
    DEFAULT_GENERATE_TOKEN_BUDGET,
    DEFAULT_MAX_ROWS,
    DEFAULT_TOKEN_BUDGET,
    run_micro_batches,
    sliding_windows,
    token_budget_for,
)
from udfs.tokenize import tokenize_texts

if TYPE_CHECKING:
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
        f"{C.GENERATED} string, {C.N_NEW_TOKENS} int, {C.FINISH_REASON} string, {C.TRUNCATED} boolean, {C.ERROR} string"
    ),
}
MODEL_FAILED = "model_failed"  # error prefix of a row the model failed on: the only retryable error


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


def _prefix(tok) -> np.ndarray:
    """The context before every text: ``[tok.prefix_id]`` (BOS, else EOS), or nothing when it is None."""
    return np.array([] if tok.prefix_id is None else [tok.prefix_id], dtype=np.int64)


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

    Each text is scored as ``prefix + tokens`` (so its first token is scored too, given the document
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
    from model.precision import autocast_for
    from model.scoring import model_device, pad_right, token_logprobs

    block = model.config.block_size
    max_len = block if max_len is None else max_len
    if not 2 <= max_len <= block:
        raise ValueError(f"max_len must be in [2, block_size={block}], got {max_len}")
    stride = max(1, max_len // 2) if stride is None else stride
    tokens, errors = _encode(tok, texts)
    prefix = _prefix(tok)
    n = len(tokens)
    items: list[np.ndarray] = []  # windows, any order
    owner: list[tuple[int, int]] = []  # (row, n_scored) per window
    n_windows = np.zeros(n, dtype=np.int64)
    for row, ids in enumerate(tokens):
        if ids is None:
            continue
        seq = np.concatenate([prefix, ids.astype(np.int64)])
        if len(seq) < 2:  # no prefix token and a one-token text: nothing to score
            continue
        for begin, end, k in sliding_windows(len(seq), max_len, stride):
            items.append(seq[begin:end])
            owner.append((row, k))
            n_windows[row] += 1
    sums = np.zeros(n, dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    device = model_device(model)

    autocast = autocast_for(precision, device)
    token_budget = token_budget_for(token_budget, device)

    def forward(batch: np.ndarray) -> None:
        seqs = [items[j] for j in batch]
        idx, mask = pad_right(seqs, tok.pad_id, device)
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

    run_micro_batches(items, token_budget, max_rows, forward, on_error)

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


POOLINGS = ("mean", "cls")  # embed_texts pooling: mean over real tokens, or the [CLS] position (encoders)


def _is_encoder(model) -> bool:
    return getattr(model, "kind", "causal_lm") == "encoder"


def _check_pooling(model, pooling: str) -> None:
    """Refuse a pooling the model cannot do: unknown names, and ``cls`` on a causal LM."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if pooling == "cls" and not _is_encoder(model):
        raise ValueError(
            "pooling 'cls' needs a text encoder (BERT-style, with a [CLS] token); a causal language model "
            "has none: use pooling 'mean'"
        )


def _pooled_embeddings(model, idx, mask, pooling: str, normalize: bool):
    """(B, C) embeddings of right-padded ``idx``/``mask`` (B, T), L2-normalised when ``normalize``."""
    import torch.nn.functional as F

    from model.scoring import mean_pooled_embeddings

    if _is_encoder(model):
        emb = model.embed(idx, mask, pooling=pooling)  # (B, C)
    else:
        emb = mean_pooled_embeddings(model, idx, mask)  # (B, C)
    return F.normalize(emb.float(), p=2, dim=-1) if normalize else emb


def embed_texts(
    model: GPT,
    tok: TextTokenizer,
    texts: pd.Series,
    *,
    token_budget: int | None = DEFAULT_TOKEN_BUDGET,
    max_len: int | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    precision: str = "fp32",
    pooling: str = "mean",
    normalize: bool = False,
) -> pd.DataFrame:
    """Pooled final hidden states of each text: one vector per row.

    A causal LM (our GPT, native or transformers-backed Hugging Face models) averages its final hidden
    states over the text's tokens (``model.scoring.mean_pooled_embeddings``). A text encoder (BERT,
    RoBERTa... through transformers, ``model.kind == "encoder"``) adds its ``[CLS]``/``[SEP]`` specials
    and pools as sentence-transformers does: ``mean`` over the attention mask or the ``cls`` position.
    Texts longer than ``max_len`` tokens keep their first ``max_len`` tokens (``truncated`` = True).

    Args:
        model: a GPT in eval mode, on any device, or a ``model.hf_transformers.TransformersEncoder``.
        tok: its tokenizer.
        texts: one text per row; None/NaN and "" are reported in ``error``.
        token_budget: most ``rows x padded_tokens`` per forward pass; None = by device.
        max_len: most tokens embedded per text (specials not counted), in ``[1, block_size]``; None =
            block_size.
        max_rows: most rows per forward pass; None = only the budget limits it.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``, as in `score_texts`.
        pooling: ``"mean"`` (default) or ``"cls"`` (encoders only: a causal LM has no [CLS] token).
        normalize: L2-normalise each embedding (unit length, so dot product = cosine similarity).

    Returns:
        DataFrame with ``texts``' index and columns ``embedding`` (float32 array of the hidden size,
        unit length when ``normalize``), ``n_tokens`` (text tokens embedded), ``truncated`` and ``error``.

    Raises:
        ValueError: an unknown ``pooling``, ``"cls"`` on a causal LM, or ``max_len`` out of range.
    """
    from model.precision import autocast_for
    from model.scoring import model_device, pad_right

    _check_pooling(model, pooling)
    block = model.config.block_size
    max_len = block if max_len is None else max_len
    if not 1 <= max_len <= block:
        raise ValueError(f"max_len must be in [1, block_size={block}], got {max_len}")
    tokens, errors = _encode(tok, texts)
    n = len(tokens)
    rows = [r for r in range(n) if tokens[r] is not None]
    items = [tokens[r][:max_len].astype(np.int64) for r in rows]
    out: list[np.ndarray | None] = [None] * n
    device = model_device(model)

    autocast = autocast_for(precision, device)
    token_budget = token_budget_for(token_budget, device)

    def forward(batch: np.ndarray) -> None:
        idx, mask = pad_right([items[j] for j in batch], tok.pad_id, device)
        with autocast():
            emb = _pooled_embeddings(model, idx, mask, pooling, normalize)
        emb = emb.float().cpu().numpy()  # (B, C)
        for r, j in enumerate(batch):
            out[rows[j]] = emb[r].astype(np.float32)

    def on_error(j: int, exc: Exception) -> None:
        errors[rows[j]] = _model_error(exc)

    run_micro_batches(items, token_budget, max_rows, forward, on_error)
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

    The model input is ``prefix + prompt tokens`` (a document start, as in training), cut to its last
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

    from model.scoring import decode_batch, model_device

    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    block = model.config.block_size
    tokens, errors = _encode(tok, prompts)
    n = len(tokens)
    rows = [r for r in range(n) if tokens[r] is not None]
    prefix = _prefix(tok)
    full = [np.concatenate([prefix, tokens[r].astype(np.int64)]) for r in rows]
    items = [s[-block:] for s in full]
    new_ids: list[list[int] | None] = [None] * n
    device = model_device(model)

    # plan on (prompt + new) length, then split each planned batch into exact-length groups
    def forward(batch: np.ndarray) -> None:
        by_len: dict[int, list[int]] = {}
        for j in batch:
            by_len.setdefault(len(items[j]), []).append(int(j))
        for T, group in by_len.items():
            idx = torch.from_numpy(np.stack([items[j] for j in group])).to(device)  # (B, T)
            out = (
                decode_batch(
                    model,
                    idx,
                    max_new_tokens,
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                    seed=seed,
                    eos_id=tok.eos_id,
                )[:, T:]
                .cpu()
                .tolist()
            )  # (B, n)
            for j, ids in zip(group, out):
                new_ids[rows[j]] = ids

    def on_error(j: int, exc: Exception) -> None:
        errors[rows[j]] = _model_error(exc)

    padded = [np.empty(len(s) + max_new_tokens) for s in items]  # lengths only, for the planner
    run_micro_batches(padded, token_budget, max_rows, forward, on_error)
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


TOKEN_LOGPROBS = "token_logprobs"  # loglikelihood_pairs: log-prob of each continuation token, nats
IS_GREEDY = "is_greedy"  # loglikelihood_pairs: every continuation token is the model's argmax
LOGLIKELIHOOD_SCHEMA = (
    f"{C.SUM_LOGPROB} double, {TOKEN_LOGPROBS} array<double>, {C.N_TOKENS} int, {IS_GREEDY} boolean, "
    f"{C.TRUNCATED} boolean, {C.ERROR} string"
)


def encode_pair(
    tok: TextTokenizer, context: str, continuation: str, encode_context: Callable[[str], list[int]] | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and of ``continuation`` after it, split as lm-eval-harness splits them.

    An empty context becomes ``[tok.prefix_id]`` (BOS, else EOS) and the continuation is encoded alone
    (lm-eval's ``loglikelihood``). Otherwise trailing whitespace of the context moves to the front of the
    continuation, ``context + continuation`` is encoded whole and split where the context's own tokens end
    (lm-eval's ``_encode_pair``), so the continuation's tokens are those the model would read in the joined
    text; no prefix token is added. A tokenizer that merges across the boundary can make the split differ
    from ``encode(continuation)``: this is deliberate, it is what the harness scores.

    Args:
        tok: the model's tokenizer (``encode(text)`` without special tokens, ``prefix_id``).
        context: text before the continuation; "" = start of document.
        continuation: text whose likelihood is measured.
        encode_context: ``tok.encode`` or a memo of it (the choices of an item share their context).

    Returns:
        ``(context_ids, continuation_ids)``.

    Raises:
        ValueError: the tokenizer cannot encode the text, or ``context`` is "" and the tokenizer has
            neither BOS nor EOS.

    Example:
        >>> encode_pair(tok, "The cat ", "sat")  # doctest: +SKIP
        ([464, 3797], [3332])                   # " sat": the space travels with the continuation
    """
    if context == "":
        if tok.prefix_id is None:
            raise ValueError("an empty context needs a BOS or EOS token to start from; this tokenizer has neither")
        return [int(tok.prefix_id)], list(tok.encode(continuation))
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = list(tok.encode(context + continuation))
    ctx = list(encode_context(context) if encode_context is not None else tok.encode(context))
    return ctx, whole[len(ctx) :]


def loglikelihood_pairs(
    model: GPT,
    tok: TextTokenizer,
    contexts: pd.Series,
    continuations: pd.Series,
    *,
    token_budget: int | None = DEFAULT_TOKEN_BUDGET,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    precision: str = "fp32",
) -> pd.DataFrame:
    """Log-likelihood of each continuation given its context, as lm-eval-harness's ``loglikelihood``.

    Per row: `encode_pair` splits the tokens; the sequence ``context + continuation`` keeps its last
    ``block_size + 1`` tokens (left truncation, ``truncated`` = True when anything was cut) and the model
    reads all but the last; the continuation's tokens are scored, each given everything before it, and
    ``is_greedy`` says whether each was the model's argmax (LAMBADA accuracy). Rows that share a context
    (the choices of one item) are read as one packed sequence, the context once (`loglikelihood_token_pairs`).
    Rows are length-bucketed into micro-batches (`plan_micro_batches`); a failing micro-batch is retried
    item by item.

    Args:
        model: a GPT in eval mode (or any model with its ``hidden_states``/``lm_head``), on any device.
        tok: its tokenizer.
        contexts: one context per row; "" = scored from the document start (``prefix_id``).
        continuations: one continuation per row, aligned with ``contexts``.
        token_budget: most ``rows x padded_tokens`` per forward pass; None = by device.
        max_rows: most rows per forward pass; None = only the budget limits it.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``, as in `score_texts`.

    Returns:
        DataFrame with ``contexts``' index and columns ``sum_logprob`` (nats, float64 sum),
        ``token_logprobs`` (float64 array, one per continuation token), ``n_tokens`` (continuation tokens),
        ``is_greedy``, ``truncated`` and ``error`` (null = fine; ``null_text``, ``encode_failed: ...``,
        ``empty_continuation``, ``no_context``, ``continuation_too_long: ...``, ``model_failed: ...``);
        outputs are null where ``error`` is set.

    Example:
        >>> loglikelihood_pairs(model, tok, pd.Series(["The cat"]), pd.Series([" sat"]))  # doctest: +SKIP
           sum_logprob  token_logprobs  n_tokens  is_greedy  truncated error
        0     -3.21     [-3.21]                1       True      False  None
    """
    if len(contexts) != len(continuations):
        raise ValueError(f"contexts ({len(contexts)} rows) and continuations ({len(continuations)}) must align")
    pairs: list[tuple[list[int], list[int]] | str] = []
    memo: dict[str, list[int]] = {}

    def encode_context(text: str) -> list[int]:
        if text not in memo:
            memo[text] = list(tok.encode(text))
        return memo[text]

    for ctx, cont in zip(contexts, continuations):
        if not isinstance(ctx, str) or not isinstance(cont, str):
            pairs.append("null_text")
            continue
        try:
            pairs.append(encode_pair(tok, ctx, cont, encode_context))
        except ValueError as exc:
            pairs.append(f"encode_failed: {exc}"[:300])
    out = loglikelihood_token_pairs(
        model, tok.pad_id, pairs, token_budget=token_budget, max_rows=max_rows, precision=precision
    )
    out.index = contexts.index
    return out


def _pack_shared_contexts(
    rows: list[tuple[int, np.ndarray, np.ndarray]], block: int, share: bool
) -> tuple[list[tuple[np.ndarray, list]], list[tuple[np.ndarray, np.ndarray, np.ndarray, list]]]:
    """Plan the model inputs of `loglikelihood_token_pairs`: one plain sequence per row, or packs of rows that share
    a context.

    A pack holds the context once, then each member's continuation minus its last token: ``c + k1[:-1] +
    k2[:-1] + ...`` with positions restarting after the context and an attention mask that lets each
    member read only the context and itself (``model.scoring.packed_attention_mask``). Member i's first token
    is predicted by the context's last position, the rest by its own segment. Rows that would be truncated,
    and contexts with one member, stay plain; a pack is cut so that it never exceeds ``block`` tokens.

    Args:
        rows: ``(row, context_ids, continuation_ids)`` of every scorable row.
        block: the model's block_size.
        share: False = every row plain (the model cannot read packed rows).

    Returns:
        ``(plain, packs)``. plain: ``(input_ids, owners)``; packs: ``(input_ids, positions, segments, owners)``;
        owners: ``[(row, positions_that_predict_its_tokens, continuation_ids), ...]``.
    """
    plain: list[tuple[np.ndarray, list]] = []
    packs: list[tuple[np.ndarray, np.ndarray, np.ndarray, list]] = []
    groups: dict[bytes, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for row, c_ids, k_ids in rows:
        if share and len(c_ids) + len(k_ids) <= block + 1:
            groups.setdefault(c_ids.tobytes(), []).append((row, c_ids, k_ids))
        else:
            seq = np.concatenate([c_ids, k_ids])[-(block + 1) :][:-1]
            plain.append((seq, [(row, np.arange(len(seq) - len(k_ids), len(seq)), k_ids)]))
    for members in groups.values():
        c_ids = members[0][1]
        Lc = len(c_ids)
        chunks: list[list[tuple[int, np.ndarray, np.ndarray]]] = [[]]
        used = Lc
        for m in members:
            if chunks[-1] and used + len(m[2]) - 1 > block:
                chunks.append([])
                used = Lc
            chunks[-1].append(m)
            used += len(m[2]) - 1
        for chunk in chunks:
            if len(chunk) == 1:
                row, _, k_ids = chunk[0]
                seq = np.concatenate([c_ids, k_ids])[:-1]
                plain.append((seq, [(row, np.arange(Lc - 1, len(seq)), k_ids)]))
                continue
            ids, pos, seg, owners, at = [c_ids], [np.arange(Lc)], [np.zeros(Lc, dtype=np.int64)], [], Lc
            for s, (row, _, k_ids) in enumerate(chunk, start=1):
                n = len(k_ids) - 1
                ids.append(k_ids[:-1])
                pos.append(np.arange(Lc, Lc + n))
                seg.append(np.full(n, s, dtype=np.int64))
                owners.append((row, np.concatenate([[Lc - 1], np.arange(at, at + n)]), k_ids))
                at += n
            packs.append((np.concatenate(ids), np.concatenate(pos), np.concatenate(seg), owners))
    return plain, packs


def loglikelihood_token_pairs(
    model: GPT,
    pad_id: int,
    pairs: list[tuple[list[int], list[int]] | str],
    *,
    token_budget: int | None = DEFAULT_TOKEN_BUDGET,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    precision: str = "fp32",
    share_context: bool = True,
) -> pd.DataFrame:
    """`loglikelihood_pairs` on token ids: the log-likelihood of each continuation's ids after its context's.

    Rows with the same context ids (the choices of a multiple-choice item) are scored in one packed
    sequence that reads the context once (`_pack_shared_contexts`), when the model has
    ``packed_hidden_states`` (our GPT, the native GPT-2 and Llama-family models); the numbers equal
    one-row-at-a-time scoring up to float rounding. Other rows are scored as they are.

    Args:
        model: as in `loglikelihood_pairs`.
        pad_id: the tokenizer's padding id (never scored).
        pairs: per row ``(context_ids, continuation_ids)``, or an error string that row reports as is.
        token_budget: as in `loglikelihood_pairs`.
        max_rows: as in `loglikelihood_pairs`.
        precision: as in `loglikelihood_pairs`.
        share_context: pack rows that share a context (False = every row alone, e.g. to compare).

    Returns:
        The `loglikelihood_pairs` columns, one row per pair (a RangeIndex).
    """
    import torch

    from model.precision import autocast_for
    from model.scoring import HEAD_CHUNK_TOKENS, model_device, packed_attention_mask

    block = model.config.block_size
    n = len(pairs)
    errors: list[str | None] = [None] * n
    rows: list[tuple[int, np.ndarray, np.ndarray]] = []
    trunc = [None] * n
    for row, pair in enumerate(pairs):
        if isinstance(pair, str):
            errors[row] = pair
            continue
        c_ids, k_ids = (np.asarray(list(x), dtype=np.int64) for x in pair)
        if not len(k_ids):
            errors[row] = "empty_continuation"
        elif not len(c_ids):
            errors[row] = "no_context"  # an all-whitespace context: nothing precedes the first token
        elif len(k_ids) > block:
            errors[row] = f"continuation_too_long: {len(k_ids)} tokens > block_size {block}"
        if errors[row] is not None:
            continue
        trunc[row] = len(c_ids) + len(k_ids) > block + 1
        rows.append((row, c_ids, k_ids))
    plain, packs = _pack_shared_contexts(rows, block, share_context and hasattr(model, "packed_hidden_states"))
    sums = [None] * n
    per_token: list[np.ndarray | None] = [None] * n
    greedy = [None] * n
    device = model_device(model)
    autocast = autocast_for(precision, device)
    token_budget = token_budget_for(token_budget, device)

    @torch.no_grad()
    def score(items: list, hidden) -> None:
        """Right-pad ``items`` into (B, T), run ``hidden(idx, pos, seg)`` and score every owner's tokens."""
        B, T = len(items), max(len(it[0]) for it in items)
        idx = np.full((B, T), pad_id, dtype=np.int64)  # (B, T)
        pos = np.zeros((B, T), dtype=np.int64)  # (B, T): position of each token in its own sequence
        seg = np.full((B, T), -1, dtype=np.int64)  # (B, T): -1 = padding
        flat, targets, owners = [], [], []
        for r, it in enumerate(items):
            L = len(it[0])
            idx[r, :L] = it[0]
            pos[r, :L] = it[1] if len(it) == 4 else np.arange(L)
            seg[r, :L] = it[2] if len(it) == 4 else 0
            for owner in it[-1]:
                flat.append(r * T + owner[1])
                targets.append(owner[2])
                owners.append(owner)
        tgt = torch.from_numpy(np.concatenate(targets)).to(device)  # (N,)
        take = torch.from_numpy(np.concatenate(flat)).to(device)  # (N,) flat (B*T) positions
        with autocast():
            h = hidden(*(torch.from_numpy(a).to(device) for a in (idx, pos, seg)))  # (B, T, C)
            h = h.reshape(B * T, -1)[take]  # (N, C)
            lp_parts, hit_parts = [], []
            for s in range(0, tgt.numel(), HEAD_CHUNK_TOKENS):
                logits = model.lm_head(h[s : s + HEAD_CHUNK_TOKENS]).float()  # (n, V)
                t = tgt[s : s + HEAD_CHUNK_TOKENS]
                lp_parts.append(logits.gather(-1, t.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1))
                hit_parts.append(logits.argmax(dim=-1) == t)
        lp = torch.cat(lp_parts).double().cpu().numpy()  # (N,)
        hit = torch.cat(hit_parts).cpu().numpy()  # (N,)
        start = 0
        for row, _, k_ids in owners:
            part = lp[start : start + len(k_ids)]
            per_token[row], sums[row] = part, float(part.sum())
            greedy[row] = bool(hit[start : start + len(k_ids)].all())
            start += len(k_ids)

    def hidden_plain(idx, pos, seg):  # right padding never reaches a real token under causal attention
        return model.hidden_states(idx)

    def hidden_packed(idx, pos, seg):
        return model.packed_hidden_states(idx, pos, packed_attention_mask(seg))

    for items, hidden in ((plain, hidden_plain), (packs, hidden_packed)):

        def forward(batch: np.ndarray, items=items, hidden=hidden) -> None:
            score([items[j] for j in batch], hidden)

        def on_error(j: int, exc: Exception, items=items) -> None:
            for owner in items[j][-1]:
                errors[owner[0]] = _model_error(exc)

        if items:
            run_micro_batches([it[0] for it in items], token_budget, max_rows, forward, on_error)
    ok = [e is None for e in errors]
    return pd.DataFrame(
        {
            C.SUM_LOGPROB: np.array([s if k else np.nan for s, k in zip(sums, ok)], dtype=np.float64),
            TOKEN_LOGPROBS: pd.Series([p if k else None for p, k in zip(per_token, ok)], dtype=object).values,
            C.N_TOKENS: pd.array([len(p) if k else None for p, k in zip(per_token, ok)], dtype="Int32"),
            IS_GREEDY: pd.array([g if k else None for g, k in zip(greedy, ok)], dtype="boolean"),
            C.TRUNCATED: pd.array([t if k else None for t, k in zip(trunc, ok)], dtype="boolean"),
            C.ERROR: pd.Series(errors, dtype=object).values,
        },
    )


CORES: dict[str, Callable[..., pd.DataFrame]] = {"score": score_texts, "embed": embed_texts, "generate": generate_texts}
