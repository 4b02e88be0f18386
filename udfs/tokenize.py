"""Tokenising documents and packing them into fixed-length training windows.

Pure core: `tokenize_texts` (a batch of texts -> token arrays + per-row errors) and `WindowPacker`
(a stream of token arrays -> windows of ``block_size + 1`` tokens). The Spark adapters
(`make_tokenize_udf`; `tokenize_and_pack`, which the job runs through ``mapInArrow`` to tokenise, pack
and count in one pass) are thin: the tokenizer is loaded once per Python worker
and cached by path and file identity.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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


PACKED_SCHEMA = (
    "window_id bigint, split string, tokens array<int>, is_tail boolean, "
    "docs bigint, docs_failed bigint, n_tokens bigint, n_bytes bigint"
)
_PACKED_COLUMNS = ["window_id", "split", "tokens", "is_tail", "docs", "docs_failed", "n_tokens", "n_bytes"]


def _packed_batch(window_ids, splits, flat: np.ndarray, window: int):
    """Arrow batch of full windows cut from ``flat`` (len(window_ids) * window tokens), zero-copy."""
    import pyarrow as pa

    n = len(window_ids)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * window)
    tokens = pa.ListArray.from_arrays(offsets, pa.array(flat, type=pa.int32()))
    nulls = pa.nulls(n, pa.int64())
    return pa.RecordBatch.from_arrays(
        [pa.array(window_ids, pa.int64()), pa.array(splits, pa.string()), tokens,
         pa.array(np.zeros(n, dtype=bool)), nulls, nulls, nulls, nulls], names=_PACKED_COLUMNS)


def tokenize_and_pack(batches: Iterator, tok, window: int, partition_id: int) -> Iterator:
    """Tokenise one partition's documents (in their shuffled order) and pack them into windows per split.

    One pass does everything the job needs: encoding (one ``encode_batch`` per Arrow batch), packing,
    and the accounting, so the text is read and tokenised exactly once.

    Args:
        batches: ``pyarrow.RecordBatch`` es with ``split`` (str), ``text`` (str or null) and ``n_bytes``
            (UTF-8 bytes of the text), in the partition's order.
        tok: a ``model.tokenizer.TextTokenizer``; every document gets ``<|endoftext|>`` appended.
        window: tokens per window (``block_size + 1``).
        partition_id: this partition's index; window ids are ``partition_id << 32 | n``, so they are
            unique and deterministic without any coordination between partitions.

    Yields:
        ``pyarrow.RecordBatch`` es with the columns of ``PACKED_SCHEMA``: full windows (``is_tail``
        false, stats null), then one tail row per split seen, ``window_id = partition_id << 32 |
        0xFFFFFFFF``, holding the tail tokens (< one window) and the split's stats in this partition:
        ``docs`` (tokenised), ``docs_failed``, ``n_tokens`` (incl. EOS) and ``n_bytes`` (of tokenised docs).
    """
    import pyarrow as pa

    carry: dict[str, np.ndarray] = {}
    counters: dict[str, int] = {}
    stats: dict[str, list[int]] = {}  # split -> [docs, docs_failed, n_tokens, n_bytes]
    base = partition_id << 32
    for batch in batches:
        splits = batch.column("split").to_pylist()
        nbytes = batch.column("n_bytes").to_numpy(zero_copy_only=False)
        enc = tokenize_texts(tok, pd.Series(batch.column("text").to_pylist(), dtype=object))
        for split in dict.fromkeys(splits):
            rows = [i for i, s in enumerate(splits) if s == split]
            st = stats.setdefault(split, [0, 0, 0, 0])
            arrays = []
            for i in rows:
                a = enc["tokens"].iat[i]
                if a is None:
                    st[1] += 1
                else:
                    arrays.append(a)
                    st[0] += 1
                    st[2] += len(a)
                    st[3] += int(nbytes[i])
            stream = np.concatenate([carry.get(split, np.empty(0, np.int32)), *arrays])
            n_full = len(stream) // window
            carry[split] = stream[n_full * window:].copy()
            if n_full:
                n0 = counters.get(split, 0)
                counters[split] = n0 + n_full
                ids = base + (n0 + np.arange(n_full, dtype=np.int64)) * 2 + (split == "val")
                yield _packed_batch(ids, [split] * n_full, stream[: n_full * window], window)
    if stats:
        names = list(stats)
        tails = [carry.get(s, np.empty(0, np.int32)) for s in names]
        offsets = np.concatenate([[0], np.cumsum([len(t) for t in tails])]).astype(np.int32)
        flat = np.concatenate(tails) if tails else np.empty(0, np.int32)
        yield pa.RecordBatch.from_arrays(
            [pa.array([base | 0xFFFFFFFF] * len(names), pa.int64()), pa.array(names, pa.string()),
             pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.int32())),
             pa.array([True] * len(names))]
            + [pa.array([stats[s][k] for s in names], pa.int64()) for k in range(4)], names=_PACKED_COLUMNS)


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
