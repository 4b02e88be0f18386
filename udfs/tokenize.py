"""Tokenising documents and packing them into fixed-length training windows.

Pure core: `tokenize_texts` (a batch of texts -> token arrays + per-row errors) and `WindowPacker`
(a stream of token arrays -> windows of ``block_size + 1`` tokens). The Spark adapters
(`make_tokenize_udf`, `pack_partition`) are thin: the tokenizer is loaded once per Python worker
and cached by path and file identity.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pandas as pd

_TOKENIZERS: dict[tuple, object] = {}


def load_tokenizer_cached(path: str):
    """The tokenizer at ``path``, loaded once per process (keyed by path, size and mtime)."""
    from model.tokenizer import load_tokenizer

    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    tok = _TOKENIZERS.get(key)
    if tok is None:
        tok = _TOKENIZERS[key] = load_tokenizer(path)
    return tok


def tokenize_texts(tok, texts: pd.Series, add_eos: bool = True) -> pd.DataFrame:
    """Encode a batch of texts; a text that cannot be encoded gets an error, not an exception.

    Args:
        tok: a ``model.tokenizer.TextTokenizer``.
        texts: strings (None allowed), one per document.
        add_eos: append ``<|endoftext|>`` to every document (documents are concatenated later).

    Returns:
        DataFrame aligned with ``texts``: ``tokens`` (int32 numpy arrays, None on error),
        ``n_tokens`` (int, 0 on error), ``error`` (None when fine).
    """
    values = list(texts)
    ok = [isinstance(t, str) and t != "" for t in values]
    good = [t for t, k in zip(values, ok) if k]
    try:
        encoded = iter(tok.encode_batch(good, add_eos=add_eos))
        failures: dict[int, str] = {}
    except ValueError:  # one bad text fails the whole batch: redo row by row to find it
        encoded_list, failures = [], {}
        for i, t in enumerate(good):
            try:
                encoded_list.append(tok.encode(t, add_eos=add_eos))
            except ValueError as exc:
                encoded_list.append(None)
                failures[i] = str(exc)[:200]
        encoded = iter(encoded_list)
    tokens, errors, j = [], [], 0
    for t, k in zip(values, ok):
        if not k:
            tokens.append(None)
            errors.append("empty_text" if isinstance(t, str) else "null_text")
            continue
        ids = next(encoded)
        tokens.append(None if ids is None else np.asarray(ids, dtype=np.int32))
        errors.append(failures.get(j))
        j += 1
    n = [0 if a is None else len(a) for a in tokens]
    return pd.DataFrame({"tokens": tokens, "n_tokens": n, "error": errors}, index=texts.index)


class WindowPacker:
    """Concatenate token arrays into one stream and cut it into windows of ``window`` tokens.

    Windows do not overlap: the trainer uses ``w[:-1]`` as input and ``w[1:]`` as targets. What is
    left at the end (fewer than ``window`` tokens) is the tail: returned by `finish` and counted,
    never silently lost.

    Args:
        window: tokens per window (``block_size + 1``).

    Example:
        >>> p = WindowPacker(4)
        >>> [w.tolist() for w in p.add(np.arange(10))]
        [[0, 1, 2, 3], [4, 5, 6, 7]]
        >>> p.finish().tolist()
        [8, 9]
    """

    def __init__(self, window: int) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2 tokens, got {window}")
        self.window = window
        self._carry = np.empty(0, dtype=np.int32)

    def add(self, tokens: np.ndarray) -> list[np.ndarray]:
        """Append ``tokens``; return the windows completed by them, in stream order."""
        stream = np.concatenate([self._carry, np.asarray(tokens, dtype=np.int32)])
        n_full = len(stream) // self.window
        cut = n_full * self.window
        self._carry = stream[cut:].copy()
        return list(stream[:cut].reshape(n_full, self.window)) if n_full else []

    def finish(self) -> np.ndarray:
        """The tail: tokens that did not fill a window. Resets the packer."""
        tail, self._carry = self._carry, np.empty(0, dtype=np.int32)
        return tail


def distinct_chars(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas body: the distinct characters (code points) of the ``text`` column, per batch."""
    for batch in batches:
        chars = set()
        for text in batch["text"].dropna():
            chars.update(text)
        yield pd.DataFrame({"c": sorted(chars)})


PACKED_SCHEMA = "window_id bigint, split string, tokens array<int>, is_tail boolean"


def pack_partition(batches: Iterator[pd.DataFrame], window: int, partition_id: int) -> Iterator[pd.DataFrame]:
    """Pack one partition's documents (already in their shuffled order) into windows per split.

    Args:
        batches: DataFrames with ``split`` and ``tokens`` (arrays), in the partition's order.
        window: tokens per window.
        partition_id: this partition's index; window ids are ``partition_id << 32 | n``, so they are
            unique and deterministic without any coordination between partitions.

    Yields:
        DataFrames with ``window_id, split, tokens, is_tail``; one tail row per split (possibly
        empty) so the job can count the tokens that did not fill a window.
    """
    packers: dict[str, WindowPacker] = {}
    counters: dict[str, int] = {}
    base = partition_id << 32
    for batch in batches:
        out = []
        for split, tokens in zip(batch["split"], batch["tokens"]):
            packer = packers.setdefault(split, WindowPacker(window))
            for w in packer.add(tokens):
                n = counters.get(split, 0)
                counters[split] = n + 1
                out.append((base + n * 2 + (split == "val"), split, w, False))
        if out:
            yield pd.DataFrame(out, columns=["window_id", "split", "tokens", "is_tail"])
    tails = [(base | 0xFFFFFFFF, split, packer.finish(), True) for split, packer in packers.items()]
    if tails:
        yield pd.DataFrame(tails, columns=["window_id", "split", "tokens", "is_tail"])


def make_tokenize_udf(tokenizer_path: str, add_eos: bool = True):
    """Iterator pandas UDF: text -> struct<tokens array<int>, n_tokens int, error string>.

    The tokenizer loads once per Python worker (`load_tokenizer_cached`); each Arrow batch is
    encoded with one ``encode_batch`` call (Rust, parallel). Rows map 1:1 and keep their order.
    """
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("tokens array<int>, n_tokens int, error string")
    def tokenize(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        tok = load_tokenizer_cached(tokenizer_path)
        for texts in batches:
            yield tokenize_texts(tok, texts, add_eos=add_eos).reset_index(drop=True)

    return tokenize
