"""Token-window readers (model/data.py): shapes, split filter, rank sharding and exact resume."""

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from model.data import ArrayWindowSource, ParquetWindowSource, WindowLoader, bin_windows

T = 8  # block_size; windows hold T + 1 tokens


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _write_parquet(tmp_path, n_files=3, rows_per_file=50, row_group_size=16):
    """Window i holds tokens [i, i+1, ..., i+T]; every 5th window is 'val'."""
    paths, wid = [], 0
    for f in range(n_files):
        ids = np.arange(wid, wid + rows_per_file)
        wid += rows_per_file
        table = pa.table(
            {
                "window_id": pa.array(ids, pa.int64()),
                "split": ["val" if i % 5 == 0 else "train" for i in ids],
                "tokens": pa.array([list(range(i, i + T + 1)) for i in ids], pa.list_(pa.int32())),
            }
        )
        path = tmp_path / f"part-{f:05d}.parquet"
        pq.write_table(table, path, row_group_size=row_group_size)
        paths.append(str(path))
    return paths


def _ids(batches):
    """Window ids (first token of each window) of a list of (x, y) batches."""
    return [int(v) for x, _ in batches for v in x[:, 0]]


def test_shapes_and_targets(tmp_path):
    loader = WindowLoader(ParquetWindowSource(_write_parquet(tmp_path)), batch_size=4, block_size=T, seed=1)
    x, y = next(iter(loader))
    assert x.shape == (4, T) and y.shape == (4, T) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_split_filter_and_full_coverage(tmp_path):
    paths = _write_parquet(tmp_path)
    val = list(WindowLoader(ParquetWindowSource(paths, split="val"), 7, T, shuffle=False, loop=False))
    assert _ids(val) == list(range(0, 150, 5))  # stored order, last batch partial
    assert len(val[-1][0]) == 30 % 7
    train = WindowLoader(ParquetWindowSource(paths, split="train"), 8, T, seed=3, loop=False, shuffle_buffer=20)
    ids = _ids(list(train))
    assert sorted(ids) == [i for i in range(150) if i % 5]  # each train window exactly once per epoch
    assert ids != sorted(ids)  # shuffled


def test_epochs_differ_and_seed_fixes_order(tmp_path):
    src = ParquetWindowSource(_write_parquet(tmp_path), split="train")
    a = _ids(itertools.islice(WindowLoader(src, 10, T, seed=5), 24))  # 240 windows = 2 epochs of 120
    b = _ids(itertools.islice(WindowLoader(src, 10, T, seed=5), 24))
    c = _ids(itertools.islice(WindowLoader(src, 10, T, seed=6), 24))
    assert a == b and a != c
    assert sorted(a[:120]) == sorted(a[120:]) and a[:120] != a[120:]


@pytest.mark.parametrize("stop_after", [1, 5, 11, 13, 20])  # 12 batches of 10 = one epoch of 120 windows
@pytest.mark.parametrize("shuffle_buffer", [1, 40, 1000])
def test_exact_resume(tmp_path, stop_after, shuffle_buffer):
    src = ParquetWindowSource(_write_parquet(tmp_path), split="train")
    kw = dict(batch_size=10, block_size=T, seed=9, shuffle_buffer=shuffle_buffer)
    straight = list(itertools.islice(WindowLoader(src, **kw), 30))
    first = WindowLoader(src, **kw)
    list(itertools.islice(first, stop_after))
    state = first.state_dict()
    resumed = WindowLoader(src, **kw)
    resumed.load_state_dict(state)
    rest = list(itertools.islice(resumed, 30 - stop_after))
    for (xa, ya), (xb, yb) in zip(straight[stop_after:], rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_state_is_plain_and_rejects_other_data(tmp_path):
    paths = _write_parquet(tmp_path)
    loader = WindowLoader(ParquetWindowSource(paths), 4, T, seed=1)
    next(iter(loader))
    state = loader.state_dict()
    assert all(isinstance(v, (int, str)) for v in state.values())
    other = WindowLoader(ParquetWindowSource(paths[:2]), 4, T, seed=1)
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="does not match"):
        WindowLoader(ParquetWindowSource(paths), 4, T, seed=2).load_state_dict(state)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_get_disjoint_shards(tmp_path, world):
    src = ParquetWindowSource(_write_parquet(tmp_path), split="train")
    shards = [_ids(WindowLoader(src, 4, T, seed=2, rank=r, world_size=world, loop=False)) for r in range(world)]
    assert sorted(sum(shards, [])) == [i for i in range(150) if i % 5]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_one_process_batches_across_epoch_ends(tmp_path, world):
    """W ranks with batch 4 read, step for step, the windows one process reads with batch 4 * W, also
    across the ends of epochs of 117 windows (not a multiple of W); batch_samples names each window."""
    src = ParquetWindowSource(_write_parquet(tmp_path, rows_per_file=49), split="train")  # 117 train windows
    one = WindowLoader(src, 4 * world, T, seed=7, shuffle_buffer=40)
    ranks = [WindowLoader(src, 4, T, seed=7, shuffle_buffer=40, rank=r, world_size=world) for r in range(world)]
    it_one, its = iter(one), [iter(loader) for loader in ranks]
    epoch0: list[list[int]] = [[] for _ in range(world)]
    for step in range(2 * 117 // (4 * world) + 2):  # into the third epoch
        x, _ = next(it_one)
        # sample id = row number in the files' order = window id here = the window's first token
        assert one.batch_samples[:, 1].tolist() == x[:, 0].tolist()
        split = []
        for r, (loader, it) in enumerate(zip(ranks, its, strict=True)):
            xr, _ = next(it)
            assert loader.batch_samples[:, 1].tolist() == xr[:, 0].tolist()
            split += [tuple(s) for s in loader.batch_samples.tolist()]
            epoch0[r] += [i for e, i in loader.batch_samples.tolist() if e == 0]
        assert sorted(split) == sorted(tuple(s) for s in one.batch_samples.tolist()), step
    assert sorted(sum(epoch0, [])) == [i for i in range(147) if i % 5]  # each train window once in epoch 0


def test_rank_resume(tmp_path):
    src = ParquetWindowSource(_write_parquet(tmp_path), split="train")
    straight = _ids(itertools.islice(WindowLoader(src, 6, T, seed=4, rank=1, world_size=2), 15))
    first = WindowLoader(src, 6, T, seed=4, rank=1, world_size=2)
    list(itertools.islice(first, 7))
    again = WindowLoader(src, 6, T, seed=4, rank=1, world_size=2)
    again.load_state_dict(first.state_dict())
    assert _ids(itertools.islice(again, 8)) == straight[42:]


def test_bad_inputs(tmp_path):
    paths = _write_parquet(tmp_path, n_files=1)
    with pytest.raises(ValueError, match="directory or glob"):
        ParquetWindowSource([str(tmp_path)])
    with pytest.raises(ValueError, match="directory or glob"):
        ParquetWindowSource([str(tmp_path / "*.parquet")])
    with pytest.raises(ValueError, match="block_size \\+ 1"):
        next(iter(WindowLoader(ParquetWindowSource(paths), 4, T + 1)))
    with pytest.raises(ValueError, match="no windows"):
        next(iter(WindowLoader(ParquetWindowSource(paths, split="test"), 4, T)))
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="lacks columns"):
        WindowLoader(ParquetWindowSource([str(tmp_path / "bad.parquet")]), 4, T)


def test_bin_windows_and_array_source(tmp_path):
    tokens = np.arange(1000, dtype=np.uint16)
    path = tmp_path / "train.bin"
    tokens.tofile(path)
    w = bin_windows(path, T)
    assert w.shape == ((1000 - 1) // T, T + 1)
    assert w[3].tolist() == list(range(3 * T, 4 * T + 1))
    src = ArrayWindowSource(w, rows_per_block=10)
    loader = WindowLoader(src, 5, T, seed=0)
    straight = list(itertools.islice(WindowLoader(src, 5, T, seed=0), 10))
    list(itertools.islice(loader, 4))
    again = WindowLoader(src, 5, T, seed=0)
    again.load_state_dict(loader.state_dict())
    assert all(torch.equal(a[0], b[0]) for a, b in zip(straight[4:], itertools.islice(again, 6), strict=True))
