"""Tokenising documents and packing them into fixed-length training windows.

Pure core: `tokenize_texts` (a batch of texts -> token arrays + per-row errors) and `WindowPacker`
(a stream of token arrays -> windows of ``block_size + 1`` tokens). The Spark adapters
(`make_tokenize_udf`; `tokenize_and_pack`, which the job runs through ``mapInArrow`` to tokenise, pack
and count in one pass, the counts leaving as one `stats_batch` row per split after the partition's
windows) are thin: the tokenizer is loaded once per Python worker and cached by path and file identity.

pandas is imported only by the functions that use it: the packing path (Arrow in, Arrow out) never
needs it, and importing it cost ~0.6 CPU-s in every Python worker Spark starts.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

_TOKENIZERS: dict[tuple, object] = {}
_EMPTY = np.empty(0, dtype=np.int32)


def load_tokenizer_cached(path: str):
    """The tokenizer at ``path``, loaded once per process (keyed by path, size and mtime)."""
    from model.tokenizer import load_tokenizer

    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    tok = _TOKENIZERS.get(key)
    if tok is None:
        tok = _TOKENIZERS[key] = load_tokenizer(path)
    return tok


def encode_rows(tok, values: list, add_eos: bool = True) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Encode a list of texts: int32 token arrays (None where a row fails) and per-row errors.

    Null and empty texts get ``null_text`` / ``empty_text``; a text the tokenizer refuses gets its
    message (the batch is redone row by row to find it). One ``encode_batch`` call per list otherwise.
    """
    ids, errors = _encode_lists(tok, values, add_eos)
    return [None if a is None else np.asarray(a, dtype=np.int32) for a in ids], errors


def _encode_lists(tok, values: list, add_eos: bool) -> tuple[list[list[int] | None], list[str | None]]:
    """`encode_rows` with the ids left as the tokenizer's Python lists (None where a row fails)."""
    ok = [isinstance(t, str) and t != "" for t in values]
    good = [t for t, k in zip(values, ok) if k]
    failures: dict[int, str] = {}
    try:
        encoded: list = tok.encode_batch(good, add_eos=add_eos)
    except ValueError:  # one bad text fails the whole batch: redo row by row to find it
        encoded = []
        for i, t in enumerate(good):
            try:
                encoded.append(tok.encode(t, add_eos=add_eos))
            except ValueError as exc:
                encoded.append(None)
                failures[i] = str(exc)[:200]
    if all(ok) and not failures:  # the usual batch: every row encoded
        return encoded, [None] * len(values)
    tokens: list[list[int] | None] = []
    errors: list[str | None] = []
    j = 0
    for t, k in zip(values, ok):
        if not k:
            tokens.append(None)
            errors.append("empty_text" if isinstance(t, str) else "null_text")
            continue
        tokens.append(encoded[j])
        errors.append(failures.get(j))
        j += 1
    return tokens, errors


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
    import pandas as pd

    tokens, errors = encode_rows(tok, list(texts), add_eos)
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
        >>> p.add([np.arange(3), np.arange(3, 10)]).tolist()
        [[0, 1, 2, 3], [4, 5, 6, 7]]
        >>> p.finish().tolist()
        [8, 9]
    """

    def __init__(self, window: int) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2 tokens, got {window}")
        self.window = window
        self._carry = _EMPTY

    def add(self, arrays: list[np.ndarray]) -> np.ndarray:
        """Append ``arrays`` (in order); return the windows they complete as an (n, window) int32 array."""
        stream = np.concatenate([self._carry, *arrays]).astype(np.int32, copy=False)
        n_full = len(stream) // self.window
        cut = n_full * self.window
        self._carry = stream[cut:].copy()
        return stream[:cut].reshape(n_full, self.window)

    def finish(self) -> np.ndarray:
        """The tail: tokens that did not fill a window. Resets the packer."""
        tail, self._carry = self._carry, _EMPTY
        return tail


def distinct_chars(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas body: the distinct characters (code points) of the ``text`` column, per batch."""
    import pandas as pd

    for batch in batches:
        chars = set()
        for text in batch["text"].dropna():
            chars.update(text)
        yield pd.DataFrame({"c": sorted(chars)})


WINDOWS_SCHEMA = "window_id bigint, split string, tokens array<int>"
STAT_FIELDS = ("docs", "docs_failed", "tokens", "bytes", "tail_tokens")  # per split, in this order
# What the packing mapInArrow emits: windows (stats null), then per split one counts row (window_id and
# tokens null, stats = the STAT_FIELDS values). The job writes the windows and collects the counts rows.
PACKED_SCHEMA = WINDOWS_SCHEMA + ", stats array<bigint>"


def add_stats(a: dict[str, list[int]], b: dict[str, list[int]]) -> dict[str, list[int]]:
    """Merge per-split stats ``b`` into ``a`` (field-wise sums, fields as `STAT_FIELDS`); returns ``a``."""
    for split, values in b.items():
        mine = a.setdefault(split, [0] * len(STAT_FIELDS))
        for k, v in enumerate(values):
            mine[k] += int(v)
    return a


def _buffers_array(typ, n: int, *buffers):
    """A pyarrow array of ``n`` values of ``typ`` from its data buffers (no validity buffer: no nulls)."""
    import pyarrow as pa

    return pa.Array.from_buffers(typ, n, [None, *[pa.py_buffer(b) for b in buffers]])


def _strings(values: list[str]):
    """A pyarrow string array of ``values``, from buffers (``pa.array`` would import pandas)."""
    import pyarrow as pa

    data = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    return _buffers_array(pa.string(), len(data), offsets, b"".join(data))


def with_stats_column(batch):
    """A windows batch (`WINDOWS_SCHEMA`) with the null ``stats`` column of `PACKED_SCHEMA` added."""
    import pyarrow as pa

    nulls = pa.nulls(batch.num_rows, pa.list_(pa.int64()))
    return pa.RecordBatch.from_arrays([*batch.columns, nulls], names=[*batch.schema.names, "stats"])


def stats_batch(stats: dict[str, list[int]]):
    """The counts rows of `PACKED_SCHEMA`: one per split of ``stats``, its `STAT_FIELDS` values in ``stats``.

    Args:
        stats: per split, the counts `tokenize_and_pack` filled.

    Returns:
        A ``pyarrow.RecordBatch`` with null ``window_id`` and ``tokens``, ``split`` and ``stats``
        (int64 list of ``len(STAT_FIELDS)``), splits in sorted order.

    Example:
        >>> stats_batch({"val": [1, 0, 9, 9, 9]}).column("stats").to_pylist()
        [[1, 0, 9, 9, 9]]
    """
    import pyarrow as pa

    splits = sorted(stats)
    n, k = len(splits), len(STAT_FIELDS)
    values = np.array([int(v) for s in splits for v in stats[s]], dtype=np.int64)
    offsets = _buffers_array(pa.int32(), n + 1, np.arange(n + 1, dtype=np.int32) * k)
    counts = pa.ListArray.from_arrays(offsets, _buffers_array(pa.int64(), n * k, values))
    columns = [pa.nulls(n, pa.int64()), _strings(splits), pa.nulls(n, pa.list_(pa.int32())), counts]
    return pa.RecordBatch.from_arrays(columns, names=["window_id", "split", "tokens", "stats"])


def _windows_batch(window_ids: np.ndarray, split: str, flat: np.ndarray, window: int):
    """Arrow batch of full windows cut from ``flat`` (len(window_ids) * window tokens), zero-copy.

    Built from buffers: ``pa.array`` would make pyarrow import pandas in every worker.
    """
    import pyarrow as pa

    def buffers_array(typ, n, *buffers):
        return pa.Array.from_buffers(typ, n, [None, *[pa.py_buffer(b) for b in buffers]])

    n = len(window_ids)
    name = split.encode("utf-8")
    offsets = buffers_array(pa.int32(), n + 1, np.arange(n + 1, dtype=np.int32) * window)
    tokens = pa.ListArray.from_arrays(
        offsets, buffers_array(pa.int32(), len(flat), np.ascontiguousarray(flat, np.int32))
    )
    splits = buffers_array(pa.string(), n, np.arange(n + 1, dtype=np.int32) * len(name), name * n)
    ids = buffers_array(pa.int64(), n, np.ascontiguousarray(window_ids, np.int64))
    return pa.RecordBatch.from_arrays([ids, splits, tokens], names=["window_id", "split", "tokens"])


def tokenize_and_pack(batches: Iterator, tok, window: int, partition_id: int, stats: dict[str, list[int]]) -> Iterator:
    """Tokenise one partition's documents (in their shuffled order) and pack them into windows per split.

    One pass does everything the job needs: encoding (one ``encode_batch`` per Arrow batch), packing,
    and the accounting, so the text is read and tokenised exactly once. The tokenizer's id lists of a
    batch and split go into one int32 buffer (one ``np.fromiter``), not one array per document.

    Args:
        batches: ``pyarrow.RecordBatch`` es with ``split`` (str), ``text`` (str or null) and ``n_bytes``
            (UTF-8 bytes of the text), in the partition's order.
        tok: a ``model.tokenizer.TextTokenizer``; every document gets ``<|endoftext|>`` appended.
        window: tokens per window (``block_size + 1``).
        partition_id: this partition's index; window ids are ``partition_id << 32 | n``, so they are
            unique and deterministic without any coordination between partitions.
        stats: filled per split seen, as `STAT_FIELDS`: documents tokenised, documents failed (null,
            empty or refused text), tokens (EOS included), UTF-8 bytes of the tokenised documents, and
            the tail: tokens left after the last full window, dropped and counted. Complete once the
            generator is exhausted; then ``tokens = windows * window + tail_tokens`` for every split.

    Yields:
        ``pyarrow.RecordBatch`` es of full windows: ``window_id``, ``split``, ``tokens`` (``window`` ids).
    """
    packers: dict[str, WindowPacker] = {}
    counters: dict[str, int] = {}
    base = partition_id << 32
    for batch in batches:
        splits = batch.column("split").to_pylist()
        nbytes = batch.column("n_bytes").to_pylist()
        tokens, _ = _encode_lists(tok, batch.column("text").to_pylist(), add_eos=True)
        for split in dict.fromkeys(splits):
            st = stats.setdefault(split, [0] * len(STAT_FIELDS))
            mine = [(a, nb) for a, s, nb in zip(tokens, splits, nbytes) if s == split]
            docs = [a for a, _ in mine if a is not None]  # the id lists of the documents that encoded
            n_tokens = sum(map(len, docs))
            st[0] += len(docs)
            st[1] += len(mine) - len(docs)
            st[2] += n_tokens
            st[3] += sum(nb or 0 for a, nb in mine if a is not None)
            flat = np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int32, count=n_tokens)
            full = packers.setdefault(split, WindowPacker(window)).add([flat])  # (n, window)
            if len(full):
                n0 = counters.get(split, 0)
                counters[split] = n0 + len(full)
                ids = base + (n0 + np.arange(len(full), dtype=np.int64)) * 2 + (split == "val")
                yield _windows_batch(ids, split, full.reshape(-1), window)
    for split, st in stats.items():
        st[4] += len(packers[split].finish()) if split in packers else 0


def make_tokenize_udf(tokenizer_path: str, add_eos: bool = True):
    """Iterator pandas UDF: text -> struct<tokens array<int>, n_tokens int, error string>.

    The tokenizer loads once per Python worker (`load_tokenizer_cached`); each Arrow batch is
    encoded with one ``encode_batch`` call (Rust, parallel). Rows map 1:1 and keep their order.
    """
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    def tokenize(batches):
        tok = load_tokenizer_cached(tokenizer_path)
        for texts in batches:
            yield tokenize_texts(tok, texts, add_eos=add_eos).reset_index(drop=True)

    # the hints pandas_udf reads, as objects: pandas is not a module global here (see the module doc)
    tokenize.__annotations__ = {"batches": Iterator[pd.Series], "return": Iterator[pd.DataFrame]}
    return pandas_udf("tokens array<int>, n_tokens int, error string")(tokenize)
