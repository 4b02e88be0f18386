"""Token-window readers with exact resume.

A *window* is ``block_size + 1`` token ids; a batch is ``x = windows[:, :-1]``, ``y = windows[:, 1:]``.
Windows come from Parquet files (the data files of the Delta ``tokens`` table: columns ``window_id``
int64, ``split`` string, ``tokens`` list<int32>) or from an in-memory / memory-mapped array.

Order is a pure function of ``(seed, epoch)``, so no shuffle buffer has to be saved to resume:

1. Blocks are Parquet row groups (or fixed row ranges of an array). Each epoch permutes them with
   ``default_rng([seed, epoch])``.
2. Consecutive blocks of that order are grouped until a group holds ``shuffle_buffer`` rows; a group
   is read (filtered by split) and its windows permuted with ``default_rng([seed, epoch, group])``.
   Memory is bounded by one group: ``shuffle_buffer`` rows plus one block.
3. The stream of all epochs, one after another, is striped over ranks: rank r takes windows
   r, r + W, r + 2W, ... of it. Every epoch's windows are thus split disjointly over the ranks, and W
   ranks with batch B train on exactly the batches of one process with batch W * B, step for step,
   also across epoch ends of an odd number of windows.

The position ``(epoch, group, row, seen)`` after the last yielded batch is the whole resume state.

Every window has a *sample id*: its row number in the source in stored order (the concatenation of
the Parquet files' rows, val rows included, or the array's row index). ``WindowLoader.batch_samples``
names the ``(epoch, sample id)`` of each window of the last batch, so what each rank read can be
recorded and audited.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

log = logging.getLogger(__name__)

STATE_VERSION = 1


class _Blocks(Protocol):
    rows: list[int]  # rows per block before any split filter (used to size shuffle groups)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...  # (n, L) windows of block i, split-filtered,

    # and (n,) their row numbers inside the block (before filtering)

    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class ParquetWindowSource:
    """Windows stored in an explicit, ordered list of Parquet files.

    Args:
        paths: the data files, in a fixed order (for a Delta table: the files of one snapshot, e.g.
            sorted ``DataFrame.inputFiles()``). Directories and globs are refused: a directory can
            hold files the table no longer references. Deletion vectors are not applied, so the
            table should be written without them.
        split: keep rows whose split column equals this (``"train"``, ``"val"``); None keeps all.
        bytes_per_token: mean UTF-8 bytes per token of this data (from the dataset's metadata), used
            for bits per byte; None = unknown.
        tokens_column: list<int> column holding each window.
        split_column: string column with the split name.

    Example:
        >>> src = ParquetWindowSource(paths=["part-0.parquet", "part-1.parquet"], split="val")
    """

    paths: tuple[str, ...]
    split: str | None = "train"
    bytes_per_token: float | None = None
    tokens_column: str = "tokens"
    split_column: str = "split"

    def __post_init__(self) -> None:
        paths = (self.paths,) if isinstance(self.paths, (str, os.PathLike)) else self.paths
        object.__setattr__(self, "paths", tuple(str(p) for p in paths))
        if not self.paths:
            raise ValueError("ParquetWindowSource needs at least one Parquet file path")
        for p in self.paths:
            if any(ch in p for ch in "*?[") or os.path.isdir(p):
                raise ValueError(f"{p!r} is a directory or glob; pass the table's data files explicitly")

    def open(self) -> _ParquetBlocks:
        """Read the footers (row-group sizes) of all files; no data is read yet."""
        return _ParquetBlocks(self)


@dataclass(frozen=True, eq=False)
class ArrayWindowSource:
    """Windows held in a 2-D array (for example ``bin_windows`` over a nanoGPT ``.bin`` file).

    Args:
        windows: (N, L) integer array, L = block_size + 1; a memmap view is fine (read block by block).
        rows_per_block: rows read (and permuted) as one block.
        bytes_per_token: mean UTF-8 bytes per token, for bits per byte; None = unknown.
        name: label for logs and the resume fingerprint (say, the .bin file name).
    """

    windows: np.ndarray
    rows_per_block: int = 4096
    bytes_per_token: float | None = None
    name: str = field(default="array")

    def open(self) -> _ArrayBlocks:
        """Blocks over the array (no copy)."""
        return _ArrayBlocks(self)


class _ParquetBlocks:
    def __init__(self, src: ParquetWindowSource) -> None:
        self.src = src
        self.index: list[tuple[int, int]] = []  # (file index, row group)
        self.rows: list[int] = []
        for fi, path in enumerate(src.paths):
            pf = pq.ParquetFile(path)
            names = set(pf.schema_arrow.names)
            need = {src.tokens_column} | ({src.split_column} if src.split is not None else set())
            if not need <= names:
                raise ValueError(f"{path} lacks columns {sorted(need - names)}; it has {sorted(names)}")
            for rg in range(pf.metadata.num_row_groups):
                self.index.append((fi, rg))
                self.rows.append(pf.metadata.row_group(rg).num_rows)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        fi, rg = self.index[i]
        src = self.src
        cols = [src.tokens_column] + ([src.split_column] if src.split is not None else [])
        table = pq.ParquetFile(src.paths[fi]).read_row_group(rg, columns=cols)
        rows = np.arange(table.num_rows, dtype=np.int64)
        if src.split is not None:
            mask = pc.fill_null(pc.equal(table[src.split_column], src.split), False)
            table = table.filter(mask)
            rows = rows[mask.to_numpy(zero_copy_only=False)]
        return _lists_to_array(table[src.tokens_column], where=f"{src.paths[fi]} row group {rg}"), rows

    def fingerprint(self) -> str:
        src = self.src
        return json.dumps({"paths": list(src.paths), "split": src.split, "rows": self.rows, "col": src.tokens_column})


class _ArrayBlocks:
    def __init__(self, src: ArrayWindowSource) -> None:
        if src.windows.ndim != 2:
            raise ValueError(f"windows must be 2-D (N, block_size + 1), got shape {src.windows.shape}")
        self.src = src
        n, r = len(src.windows), src.rows_per_block
        self.rows = [min(r, n - s) for s in range(0, n, r)]

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        r = self.src.rows_per_block
        data = np.asarray(self.src.windows[i * r : (i + 1) * r])
        return data, np.arange(len(data), dtype=np.int64)

    def fingerprint(self) -> str:
        w = self.src.windows
        probe = hashlib.sha256(np.ascontiguousarray(w[:64]).tobytes() + np.ascontiguousarray(w[-64:]).tobytes())
        return json.dumps(
            {"name": self.src.name, "shape": list(w.shape), "dtype": str(w.dtype), "probe": probe.hexdigest()}
        )


def _lists_to_array(column: Any, where: str) -> np.ndarray:
    """A list<int> Arrow column of equal-length lists -> (n, L) numpy array."""
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if len(arr) == 0:
        return np.empty((0, 0), dtype=np.int64)
    if arr.null_count:
        raise ValueError(f"{where}: {arr.null_count} null token lists")
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    L = int(lengths[0])
    if (lengths != L).any():
        raise ValueError(f"{where}: windows have different lengths {sorted(set(lengths.tolist()))[:5]}")
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    return flat.reshape(-1, L)


def bin_windows(path: str | os.PathLike, block_size: int, dtype: np.dtype | type = np.uint16) -> np.ndarray:
    """Non-overlapping windows over a nanoGPT-style flat token file (``train.bin``), without copying.

    Window k holds tokens ``[k*T, k*T + T]`` (T + 1 ids), so every token after the first is a target
    exactly once per epoch.

    Args:
        path: binary file of token ids (nanoGPT writes uint16).
        block_size: T, the context length.
        dtype: id dtype in the file.

    Returns:
        Read-only (N, T + 1) array view of a memmap, N = (n_tokens - 1) // T.
    """
    data = np.memmap(path, dtype=dtype, mode="r")
    n = (len(data) - 1) // block_size
    if n <= 0:
        raise ValueError(f"{path} holds {len(data)} tokens, fewer than block_size + 1 = {block_size + 1}")
    item = data.itemsize
    return np.lib.stride_tricks.as_strided(
        data, shape=(n, block_size + 1), strides=(block_size * item, item), writeable=False
    )


class WindowLoader:
    """Deterministic, resumable batches of (x, y) from a window source.

    Args:
        source: a ``ParquetWindowSource`` or ``ArrayWindowSource``.
        batch_size: windows per batch (B).
        block_size: T; every window must hold T + 1 tokens.
        seed: fixes the order of every epoch.
        shuffle: False reads blocks and rows in stored order (for evaluation).
        shuffle_buffer: rows mixed together (see module docstring); bounds memory.
        rank: this process's rank in data-parallel training.
        world_size: number of ranks; each takes every world_size-th window.
        loop: True cycles through epochs forever (batches span epoch ends); False stops after one
            epoch, yielding a last partial batch.

    Attributes:
        batch_samples: (n, 2) int64 array, ``[epoch, sample id]`` of each window of the batch yielded
            last, in batch order (None before the first batch). Sample ids are row numbers in the
            source's stored order (see the module docstring), so ranks' sets can be compared.

    Example:
        >>> loader = WindowLoader(src, batch_size=12, block_size=256, seed=1)
        >>> it = iter(loader); x, y = next(it)          # (12, 256) int64 each
        >>> state = loader.state_dict()                 # position after that batch
        >>> loader2 = WindowLoader(src, 12, 256, seed=1); loader2.load_state_dict(state)
        >>> next(iter(loader2))                         # == next(it)
    """

    def __init__(
        self,
        source: ParquetWindowSource | ArrayWindowSource,
        batch_size: int,
        block_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 16384,
        rank: int = 0,
        world_size: int = 1,
        loop: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.source, self.B, self.L = source, batch_size, block_size + 1
        self.seed, self.shuffle, self.buffer = seed, shuffle, max(1, shuffle_buffer)
        self.rank, self.world, self.loop = rank, world_size, loop
        self._blocks: _Blocks = source.open()
        if sum(self._blocks.rows) == 0:
            raise ValueError(f"source {source!r} holds no rows")
        self._fingerprint = hashlib.sha256(
            json.dumps(
                {
                    "blocks": self._blocks.fingerprint(),
                    "seed": seed,
                    "shuffle": shuffle,
                    "buffer": self.buffer,
                    "rank": rank,
                    "world_size": world_size,
                }
            ).encode()
        ).hexdigest()
        self._cursor = {"epoch": 0, "group": 0, "row": 0, "seen": 0}
        self._groups_cache: tuple[int, list[list[int]]] | None = None
        self._data_cache: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None
        self._block_start = np.concatenate([[0], np.cumsum(self._blocks.rows)[:-1]]).astype(np.int64)
        self.batch_samples: np.ndarray | None = None

    @property
    def epoch(self) -> int:
        """Epoch of the next window."""
        return self._cursor["epoch"]

    def state_dict(self) -> dict[str, Any]:
        """Position after the last yielded batch: plain ints and strings (``torch.load(weights_only=True)`` safe)."""
        return {"version": STATE_VERSION, "fingerprint": self._fingerprint, **self._cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; the next batch is the one an uninterrupted run would yield.

        Raises:
            ValueError: if the state belongs to other data, seed, shuffle settings, rank or world size.
        """
        if state.get("version") != STATE_VERSION or state.get("fingerprint") != self._fingerprint:
            raise ValueError(
                "data-loader state does not match this source/seed/shuffle_buffer/rank/world_size; "
                "resume with the same data and settings, or start a new run"
            )
        self._cursor = {k: int(state[k]) for k in ("epoch", "group", "row", "seen")}

    def _groups(self, epoch: int) -> list[list[int]]:
        if self._groups_cache is None or self._groups_cache[0] != epoch:
            rows = self._blocks.rows
            order = (
                np.random.default_rng([self.seed, epoch]).permutation(len(rows)) if self.shuffle else range(len(rows))
            )
            groups: list[list[int]] = [[]]
            size = 0
            for b in order:
                if size >= self.buffer:
                    groups.append([])
                    size = 0
                groups[-1].append(int(b))
                size += rows[b]
            self._groups_cache = (epoch, groups)
        return self._groups_cache[1]

    def _group_data(self, epoch: int, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Windows (n, L) of group ``g`` in this epoch's order, and their sample ids (n,)."""
        if self._data_cache is None or self._data_cache[0] != (epoch, g):
            parts, ids = [], []
            for b in self._groups(epoch)[g]:
                windows, rows = self._blocks.read(b)
                if len(windows):
                    parts.append(windows)
                    ids.append(self._block_start[b] + rows)
            data = np.concatenate(parts) if parts else np.empty((0, self.L), dtype=np.int64)
            sample_ids = np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)
            if data.shape[1] != self.L:
                raise ValueError(
                    f"windows hold {data.shape[1]} tokens but block_size + 1 = {self.L}; rebuild the "
                    "dataset for this block_size or set TrainConfig.block_size to match"
                )
            if self.shuffle:
                perm = np.random.default_rng([self.seed, epoch, g]).permutation(len(data))
                data, sample_ids = data[perm], sample_ids[perm]
            self._data_cache = ((epoch, g), data, sample_ids)
        return self._data_cache[1], self._data_cache[2]

    def _to_batch(
        self, parts: Sequence[np.ndarray], samples: Sequence[np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.batch_samples = np.concatenate(samples)  # (B, 2): epoch, sample id
        w = torch.from_numpy(np.concatenate(parts).astype(np.int64))  # (B, T+1)
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()  # (B, T), (B, T)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cur = dict(self._cursor)
        parts: list[np.ndarray] = []
        samples: list[np.ndarray] = []
        need, found_this_epoch = self.B, cur["row"] > 0 or cur["group"] > 0
        while True:
            groups = self._groups(cur["epoch"])
            if cur["group"] >= len(groups):  # end of epoch
                if not found_this_epoch and not parts:
                    raise ValueError(
                        f"rank {self.rank} found no windows in a whole epoch of {self.source!r}; "
                        "check the split name and that there are >= world_size windows"
                    )
                # "seen" carries the stream position (mod W) into the next epoch, see the module docstring
                cur = {"epoch": cur["epoch"] + 1, "group": 0, "row": 0, "seen": cur["seen"] % self.world}
                if not self.loop:
                    self._cursor = cur
                    if parts:
                        yield self._to_batch(parts, samples)
                    return
                found_this_epoch = False
                continue
            data, sample_ids = self._group_data(cur["epoch"], cur["group"])
            first = cur["row"] + (self.rank - cur["seen"] - cur["row"]) % self.world  # next row of this rank
            take = np.arange(first, len(data), self.world)[:need]
            if len(take):
                parts.append(data[take])
                epochs = np.full(len(take), cur["epoch"], dtype=np.int64)
                samples.append(np.stack([epochs, sample_ids[take]], axis=1))  # (n, 2)
                need -= len(take)
                found_this_epoch = True
            if need == 0:
                cur["row"] = int(take[-1]) + 1
                self._cursor = dict(cur)
                yield self._to_batch(parts, samples)
                parts, samples, need = [], [], self.B
            else:
                cur = {**cur, "group": cur["group"] + 1, "row": 0, "seen": cur["seen"] + len(data)}
