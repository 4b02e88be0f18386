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
    args = ["--input", path, "--output", out, "--tokenizer-out", tok_dir, "--vocab-size", "600",
            "--block-size", "32", "--val-fraction", "0.3", "--lake", str(root), "--export-bin", str(root / "bin")]
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
    from jobs.train import dataset_metadata

    assert dataset_metadata(spark, out, data.version) == dataset_metadata(spark, out, commit.version)


def test_same_seed_same_table_and_char_level(spark, gold):
    root, path, docs = gold
    contents = []
    for i in range(2):
        out = str(root / f"chars{i}")
        args = ["--input", path, "--output", out, "--tokenizer-out", str(root / f"ctok{i}"), "--char-level",
                "--block-size", "64", "--seed", "3", "--lake", str(root)]
        assert build_dataset.main(args) == 0
        contents.append([(r.window_id, r.split, tuple(r.tokens)) for r in _windows(spark, out)])
    assert contents[0] == contents[1]
    from model.tokenizer import load_tokenizer

    tok = load_tokenizer(root / "ctok0" / "tokenizer.json")
    sample = next(iter(docs.values()))
    assert tok.decode(tok.encode(sample)) == sample
