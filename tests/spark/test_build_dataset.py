"""jobs/build_dataset.py: tokenise + pack a gold-like table, check accounting, splits, determinism."""

import json

import numpy as np
import pytest

from jobs import build_dataset
from tests.conftest import DATA

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def gold(spark, tmp_path_factory):
    """A small gold-like Delta table of real web text, each doc tagged with a unique marker."""
    root = tmp_path_factory.mktemp("ds")
    rows = []
    for line in (DATA / "cc2019_slice.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["text"].strip():
            rows.append((rec["id"], f"<<{rec['id']}>> " + rec["text"][:3000]))
    path = str(root / "gold")
    spark.createDataFrame(rows, "doc_id string, text string").write.format("delta").save(path)
    return root, path, dict(rows)


def _windows(spark, path):
    return spark.read.format("delta").load(path).orderBy("window_id").collect()


def test_build_dataset_bpe(spark, gold):
    root, path, docs = gold
    out, tok_dir = str(root / "tokens"), str(root / "tok")
    args = [
        "--input",
        path,
        "--output",
        out,
        "--tokenizer-out",
        tok_dir,
        "--vocab-size",
        "600",
        "--block-size",
        "32",
        "--val-fraction",
        "0.3",
        "--lake",
        str(root),
        "--export-bin",
        str(root / "bin"),
    ]
    assert build_dataset.main(args) == 0
    meta = json.loads((root / "tok" / "dataset.json").read_text())

    # the tokenizer is a plain HF tokenizer.json
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(root / "tok" / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    expected_tokens = sum(len(tok.encode(t, add_special_tokens=False).ids) + 1 for t in docs.values())
    assert sum(meta["tokens"].values()) == expected_tokens

    rows = _windows(spark, out)
    assert rows and all(len(r.tokens) == 33 for r in rows)
    for split in ("train", "val"):
        n = sum(1 for r in rows if r.split == split)
        assert n == meta["windows"][split] > 0
        assert n * 33 + meta["tail_tokens"][split] == meta["tokens"][split]

    # no document in both splits: decode each split's stream and look for every doc's marker
    found = {}
    for split in ("train", "val"):
        ids = [t for r in rows if r.split == split for t in r.tokens]
        text = tok.decode(ids, skip_special_tokens=False)
        for doc_id in docs:
            if f"<<{doc_id}>>" in text:
                found.setdefault(doc_id, set()).add(split)
    assert all(len(s) == 1 for s in found.values())
    assert len(found) >= 0.8 * len(docs)  # the rest were cut by a partition tail
    assert {"train", "val"} == set().union(*found.values())
    assert meta["split"]["forced_val"] == [] and meta["split"]["hash_val_docs"] == meta["docs"]["val"]
    # one <|endoftext|> per document; only those in a partition's dropped tail are missing
    n_eos = sum(r.tokens.count(eos) for r in rows)
    assert len(docs) - 2 * 8 <= n_eos <= len(docs)

    # nanoGPT-style export holds exactly the windows
    train_bin = np.fromfile(root / "bin" / "train.bin", dtype=np.uint16)
    assert len(train_bin) == meta["windows"]["train"] * 33

    # the windows are one commit, the metadata the next (lineage for the trainer): its userMetadata and
    # the table property hold the same JSON, pointing back at the data commit
    history = spark.sql(f"DESCRIBE HISTORY delta.`{out}`").orderBy("version", ascending=False).collect()
    commit, data = history[0], history[1]
    assert commit.version == meta["output_version"] and data.version == meta["data_version"] == commit.version - 1
    assert json.loads(commit.userMetadata)["tokenizer_sha256"] == meta["tokenizer_sha256"]
    assert int(data.operationMetrics["numOutputRows"]) == sum(meta["windows"].values())
    props = spark.sql(f"DESCRIBE DETAIL delta.`{out}`").first().properties
    assert json.loads(props["lakelm.dataset"]) == json.loads(commit.userMetadata)
    from jobs.transforms.train_steps import dataset_metadata

    assert dataset_metadata(spark, out, data.version) == dataset_metadata(spark, out, commit.version)


def test_same_seed_same_table_and_char_level(spark, gold):
    root, path, docs = gold
    contents = []
    for i in range(2):
        out = str(root / f"chars{i}")
        args = [
            "--input",
            path,
            "--output",
            out,
            "--tokenizer-out",
            str(root / f"ctok{i}"),
            "--char-level",
            "--block-size",
            "64",
            "--seed",
            "3",
            "--lake",
            str(root),
        ]
        assert build_dataset.main(args) == 0
        contents.append([(r.window_id, r.split, tuple(r.tokens)) for r in _windows(spark, out)])
    assert contents[0] == contents[1]
    from model.tokenizer import load_tokenizer

    tok = load_tokenizer(root / "ctok0" / "tokenizer.json")
    sample = next(iter(docs.values()))
    assert tok.decode(tok.encode(sample)) == sample


def _gold_table(spark, path, rows, schema="doc_id string, text string"):
    spark.createDataFrame(rows, schema).write.format("delta").save(str(path))
    return str(path)


def _buckets(spark, doc_ids, seed=0):
    """Each document's split rank, computed here from the documented rule (|xxhash64| mod 1e6)."""
    from pyspark.sql import functions as F

    df = spark.createDataFrame([(d,) for d in doc_ids], "doc_id string")
    rank = F.abs(F.xxhash64(F.lit(seed), F.lit("split"), F.col("doc_id"))) % 1_000_000
    return {r.doc_id: r.b for r in df.select("doc_id", rank.alias("b")).collect()}


def test_small_table_gets_a_val_split_at_the_default_fraction(spark, gold, tmp_path, caplog):
    """12 documents at val_fraction 0.01: the hash split gives val nothing, so the smallest-rank one moves."""
    from jobs.common.runs import read_runs

    _, _, docs = gold
    rows = sorted(docs.items())[:12]
    buckets = _buckets(spark, [d for d, _ in rows])
    assert min(buckets.values()) >= 10_000  # precondition: the plain hash split puts no document in val
    path = _gold_table(spark, tmp_path / "gold", rows)
    out = str(tmp_path / "tokens")
    caplog.set_level("INFO", logger="jobs.transforms.splits")
    args = [
        "--input",
        path,
        "--output",
        out,
        "--tokenizer-out",
        str(tmp_path / "tok"),
        "--char-level",
        "--block-size",
        "32",
        "--lake",
        str(tmp_path),
    ]  # default --val-fraction (0.01)
    assert build_dataset.main(args) == 0

    meta = json.loads((tmp_path / "tok" / "dataset.json").read_text())
    first = min(buckets, key=lambda d: (buckets[d], d))
    assert meta["split"]["forced_val"] == [first] and meta["split"]["hash_val_docs"] == 0
    assert meta["split"]["docs"] == {"train": 11, "val": 1} and meta["docs"] == {"train": 11, "val": 1}
    windows = _windows(spark, out)
    val = [r for r in windows if r.split == "val"]
    assert len(val) == meta["windows"]["val"] > 0
    from model.tokenizer import load_tokenizer

    tok = load_tokenizer(tmp_path / "tok" / "tokenizer.json")
    assert f"<<{first}>>" in tok.decode([t for r in val for t in r.tokens])
    assert "split: 12 documents -> train 11, val 1" in caplog.text
    run = read_runs(spark, str(tmp_path / "runs"), job="build_dataset").first()
    assert (run.counts["docs_train"], run.counts["docs_val"], run.counts["windows_val"]) == (11, 1, len(val))


def test_one_document_cannot_be_split(spark, gold, tmp_path, caplog):
    """One document: exit 2 with the reason and nothing written; --val-fraction 0 builds train only."""
    from delta.tables import DeltaTable

    _, _, docs = gold
    path = _gold_table(spark, tmp_path / "gold", sorted(docs.items())[:1])
    out = str(tmp_path / "tokens")
    args = [
        "--input",
        path,
        "--output",
        out,
        "--tokenizer-out",
        str(tmp_path / "tok"),
        "--char-level",
        "--block-size",
        "32",
        "--lake",
        str(tmp_path),
    ]
    assert build_dataset.main(args) == 2
    assert "has 1 document: it cannot be split into train and val; pass --val-fraction 0" in caplog.text
    assert not DeltaTable.isDeltaTable(spark, out) and not (tmp_path / "tok").exists()

    assert build_dataset.main(args + ["--val-fraction", "0"]) == 0
    meta = json.loads((tmp_path / "tok" / "dataset.json").read_text())
    assert meta["split"]["docs"] == {"train": 1, "val": 0} and meta["windows"]["val"] == 0
    assert {r.split for r in _windows(spark, out)} == {"train"}
    assert "val_fraction is 0: no val split" in caplog.text
    assert build_dataset.main(args + ["--val-fraction", "1"]) == 2


def test_stratified_split_cuts_val_within_each_stratum(spark):
    """Per (source, lang) stratum, the round(f * n) smallest-rank documents are val; tiny strata stay train."""
    from jobs.transforms.splits import plan_split, split_column

    sizes = {("web", "en"): 40, ("books", "en"): 20, ("web", "cs"): 3, ("web", None): 10}
    rows = [(f"{s}-{lang}-{i}", "some text", s, lang) for (s, lang), n in sizes.items() for i in range(n)]
    df = spark.createDataFrame(rows, "doc_id string, text string, source string, lang string")
    rule = plan_split(df, seed=7, val_fraction=0.1, stratify_by=("source", "lang"))
    buckets = _buckets(spark, [r[0] for r in rows], seed=7)
    got = {r.doc_id for r in df.filter(split_column(rule) == "val").collect()}
    expected = set()
    for (s, lang), n in sizes.items():
        ids = sorted((d for d, _, s2, l2 in rows if (s2, l2) == (s, lang)), key=lambda d: (buckets[d], d))
        expected |= set(ids[: {40: 4, 20: 2, 3: 0, 10: 1}[n]])
    assert got == expected and len(got) == 7
    assert rule["docs"] == {"train": 66, "val": 7} and not rule["forced_val"]
    assert {(s["values"]["source"], s["values"]["lang"]): s["val"] for s in rule["strata"]} == {
        ("web", "en"): 4,
        ("books", "en"): 2,
        ("web", "cs"): 0,
        ("web", None): 1,
    }


def test_tokenize_udf_encodes_each_row(spark, tmp_path):
    # make_tokenize_udf declares its pandas type hints itself (pandas is not a module global in udfs.tokenize)
    from model.tokenizer import char_level_tokenizer
    from udfs.tokenize import make_tokenize_udf

    tok = char_level_tokenizer("abc ")
    path = str(tmp_path / "tokenizer.json")
    tok.save(path)
    df = spark.createDataFrame([("ab c",), (None,), ("",), ("cab",)], "text string")
    got = df.select(make_tokenize_udf(path)("text").alias("t")).select("t.*").collect()
    assert [r.tokens for r in got] == [tok.encode("ab c", True), None, None, tok.encode("cab", True)]
    assert [r.n_tokens for r in got] == [5, 0, 0, 4]
    assert [r.error for r in got] == [None, "null_text", "empty_text", None]
