"""udfs/tokenize.py: the packing core (pure: Arrow batches in, windows and counts out)."""

import numpy as np
import pyarrow as pa
import pytest

from model.tokenizer import char_level_tokenizer
from udfs.tokenize import (
    STAT_FIELDS,
    WindowPacker,
    add_stats,
    encode_rows,
    stats_batch,
    tokenize_and_pack,
    with_stats_column,
)

TOK = char_level_tokenizer("abcdefghij ")


def _batch(rows):
    texts = [t for _, t in rows]
    return pa.RecordBatch.from_pydict(
        {
            "split": [s for s, _ in rows],
            "text": texts,
            "n_bytes": [None if t is None else len(t.encode("utf-8")) for t in texts],
        }
    )


def test_window_packer_keeps_order_and_returns_the_tail():
    p = WindowPacker(4)
    assert p.add([np.array([1, 2], np.int32)]).shape == (0, 4)
    got = p.add([np.array([3, 4, 5], np.int32), np.array([6, 7, 8, 9, 10], np.int32)])
    assert got.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert p.finish().tolist() == [9, 10] and p.finish().tolist() == []
    with pytest.raises(ValueError):
        WindowPacker(1)


def test_pack_counts_every_token_and_splits_streams():
    rows = [
        ("train", "abc"),
        ("val", "hij"),
        ("train", None),
        ("train", "defg"),
        ("val", ""),
        ("train", "ab ab ab"),
        ("train", "\u00e9\u00e9"),
    ]  # a character the tokenizer refuses
    batches = [_batch(rows[:3]), _batch(rows[3:])]
    stats = {}
    out = list(tokenize_and_pack(iter(batches), TOK, window=5, partition_id=3, stats=stats))
    table = pa.Table.from_batches(out)
    windows = table.to_pydict()
    assert all(len(w) == 5 for w in windows["tokens"])
    ids = windows["window_id"]
    assert len(set(ids)) == len(ids) and all(i >> 32 == 3 for i in ids)
    assert all((i & 1) == (s == "val") for i, s in zip(ids, windows["split"]))
    # train stream: abc<eos> defg<eos> ab ab ab<eos> = 4 + 5 + 9 = 18 tokens -> 3 windows + tail 3
    eos = TOK.eos_id
    train = [t for w, s in zip(windows["tokens"], windows["split"]) if s == "train" for t in w]
    want = TOK.encode("abc", True) + TOK.encode("defg", True) + TOK.encode("ab ab ab", True)
    assert train == want[:15]
    got = {s: dict(zip(STAT_FIELDS, v)) for s, v in stats.items()}
    assert got["train"] == {"docs": 3, "docs_failed": 2, "tokens": 18, "bytes": 15, "tail_tokens": 3}
    assert got["val"] == {"docs": 1, "docs_failed": 1, "tokens": 4, "bytes": 3, "tail_tokens": 4}
    assert windows["split"].count("val") == 0 and train.count(eos) == 2


def test_counts_rows_follow_the_windows_in_one_schema():
    """What the job's mapInArrow emits: window batches with a null stats column, then one counts row
    per split, all of one Arrow schema (PACKED_SCHEMA), so Spark takes them as one output."""
    import pyarrow.compute as pc

    rows = [("train", "abc"), ("val", "hij"), ("train", None), ("train", "defg ab ab ab")]
    stats = {}
    out = [
        with_stats_column(b)
        for b in tokenize_and_pack(iter([_batch(rows)]), TOK, window=5, partition_id=0, stats=stats)
    ]
    table = pa.Table.from_batches([*out, stats_batch(stats)])  # raises if the schemas differ
    assert table.schema.names == ["window_id", "split", "tokens", "stats"]
    assert str(table.schema.field("stats").type) == "list<item: int64>"
    windows = table.filter(pc.is_null(table["stats"]))
    counts = table.filter(pc.is_valid(table["stats"]))
    assert windows.num_rows == sum(b.num_rows for b in out) > 0 and counts.num_rows == 2
    assert counts["window_id"].null_count == counts["tokens"].null_count == 2
    assert counts["split"].to_pylist() == ["train", "val"]
    assert counts["stats"].to_pylist() == [stats["train"], stats["val"]]
    for split, values in zip(counts["split"].to_pylist(), counts["stats"].to_pylist()):
        n_windows = windows.filter(pc.equal(windows["split"], split)).num_rows
        assert values[2] == n_windows * 5 + values[4]  # tokens = windows x window + tail
    assert stats_batch({}).num_rows == 0


def test_encode_rows_reports_bad_rows_without_failing_the_batch():
    tokens, errors = encode_rows(TOK, ["ab", None, "", "\u00e9", "j"], add_eos=False)
    assert [None if t is None else t.tolist() for t in tokens] == [TOK.encode("ab"), None, None, None, TOK.encode("j")]
    assert errors[:3] == [None, "null_text", "empty_text"] and errors[3] and errors[4] is None


def test_add_stats_sums_field_wise():
    a = {"train": [1, 0, 10, 12, 3]}
    add_stats(a, {"train": [2, 1, 5, 6, 1], "val": [1, 0, 4, 4, 4]})
    assert a == {"train": [3, 1, 15, 18, 4], "val": [1, 0, 4, 4, 4]}


def test_pack_of_clean_batches_matches_the_concatenated_stream():
    # every row encodes (the usual batch): windows are the per-split stream of encode(text) + EOS, cut in order
    texts = ["abc", "hij jj", "a", "defg hij", "b" * 40, "ccc", "j i h g"]
    splits = ["train", "train", "val", "train", "train", "val", "train"]
    rows = list(zip(splits, texts))
    stats = {}
    out = pa.Table.from_batches(
        list(tokenize_and_pack(iter([_batch(rows[:4]), _batch(rows[4:])]), TOK, window=6, partition_id=0, stats=stats))
    ).to_pydict()
    for split in ("train", "val"):
        stream = [t for s, x in rows if s == split for t in TOK.encode(x, add_eos=True)]
        got = [w for w, s in zip(out["tokens"], out["split"]) if s == split]
        assert got == [stream[i : i + 6] for i in range(0, len(stream) - 5, 6)]
        assert stats[split][2] == len(stream) and stats[split][4] == len(stream) % 6
        assert stats[split][0] == splits.count(split) and stats[split][1] == 0


def test_packing_path_does_not_import_pandas():
    # Spark starts fresh Python workers for the job, and mapInArrow hands them Arrow, not pandas:
    # importing pandas would cost each of them ~0.6 CPU-s. The batch arrives as an Arrow stream, as there.
    import subprocess
    import sys

    sink = pa.BufferOutputStream()
    batch = _batch([("train", "abcabc"), ("val", "ab"), ("train", None)])
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    code = (
        "import sys, pyarrow as pa\n"
        "from model.tokenizer import char_level_tokenizer\n"
        "from udfs.tokenize import stats_batch, tokenize_and_pack, with_stats_column\n"
        "batches = pa.ipc.open_stream(sys.stdin.buffer.read())\n"
        "out = list(tokenize_and_pack(iter(batches), char_level_tokenizer('abc'), 3, 0, {}))\n"
        "packed = [with_stats_column(out[0]), stats_batch({'train': [1, 0, 4, 4, 1]})]\n"
        "print(sum(o.num_rows for o in out), out[0].column('split').to_pylist(), 'pandas' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], input=sink.getvalue().to_pybytes(), capture_output=True, check=True
    )
    assert res.stdout.decode().split() == ["3", "['train',", "'train']", "False"]
