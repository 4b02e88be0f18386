"""jobs/dedup.py: exact + fuzzy dedup, transitive clusters, a giant bucket, incremental runs."""

import random

import numpy as np
import pytest

from jobs import dedup
from udfs.curation.minhash import MinHashConfig, jaccard, minhash_batch, shingle_set

pytestmark = pytest.mark.spark

RNG = random.Random(0)
# letters only: MinHash's text simplification maps digits to 0, so "w12" and "w34" would be equal
VOCAB = sorted({"".join(RNG.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(5000)})


def _text(n=300):
    return " ".join(RNG.choice(VOCAB) for _ in range(n))


def _mutate(text, k, seed):
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), k):
        words[i] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7))
    return " ".join(words)


@pytest.fixture(scope="module")
def corpus():
    a = _text()
    b = _mutate(a, 6, 1)
    c = _mutate(b, 6, 2)  # a~b and b~c, a and c further apart: one cluster only through b
    hub = _text()
    giant = [_mutate(hub, 2, 100 + i) for i in range(40)]  # 40 near-copies share buckets
    docs = {
        "chain-a": a,
        "chain-b": b,
        "chain-c": c,
        "exact-1": "Hello   World. " + _text(80),
        **{f"giant-{i:02d}": t for i, t in enumerate(giant)},
        **{f"uniq-{i}": _text() for i in range(20)},
    }
    docs["exact-2"] = docs["exact-1"].upper().replace("HELLO   WORLD.", "hello world.")
    return docs


def _write(spark, path, docs):
    spark.createDataFrame(sorted(docs.items()), "doc_id string, text string").write.format("delta").mode(
        "overwrite"
    ).save(str(path))


def test_dedup_clusters_chain_and_giant_bucket(spark, tmp_path, corpus):
    a, c = (shingle_set(corpus[k]) for k in ("chain-a", "chain-c"))
    assert jaccard(a, c) < 0.8 < jaccard(shingle_set(corpus["chain-a"]), shingle_set(corpus["chain-b"]))
    _write(spark, tmp_path / "silver", corpus)
    args = ["--lake", str(tmp_path), "--clusters", str(tmp_path / "clusters"), "--threshold", "0.8"]
    assert dedup.main(args) == 0

    gold = {r.doc_id for r in spark.read.format("delta").load(str(tmp_path / "gold")).collect()}
    rejected = spark.read.format("delta").load(str(tmp_path / "rejected")).collect()
    assert len(gold) + len(rejected) == len(corpus)
    assert all(r.drop_reason in ("dedup_exact", "dedup_fuzzy") and r.duplicate_of for r in rejected)
    reasons = {r.doc_id: (r.drop_reason, r.duplicate_of) for r in rejected}
    assert reasons["exact-2"] == ("dedup_exact", "exact-1")
    assert reasons["chain-b"] == ("dedup_fuzzy", "chain-a")
    assert reasons["chain-c"] == ("dedup_fuzzy", "chain-a")  # transitively, through chain-b
    assert {d for d in gold if d.startswith("giant")} == {"giant-00"}
    assert all(f"uniq-{i}" in gold for i in range(20))

    clusters = {r.doc_id: r for r in spark.read.format("delta").load(str(tmp_path / "clusters")).collect()}
    assert len(clusters) == len(corpus)
    assert clusters["giant-17"].cluster_id == "giant-00" and clusters["giant-17"].cluster_size == 40
    assert clusters["uniq-3"].cluster_size == 1


def test_incremental_dedup_against_existing_gold(spark, tmp_path, corpus):
    first = {k: v for k, v in corpus.items() if k in ("chain-a", "uniq-1", "exact-1")}
    _write(spark, tmp_path / "silver", first)
    assert dedup.main(["--lake", str(tmp_path)]) == 0
    gold_v = spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 'gold'}`").count()

    new = {"chain-b": corpus["chain-b"], "exact-2": corpus["exact-2"], "uniq-2": corpus["uniq-2"], **first}
    _write(spark, tmp_path / "silver2", new)
    args = [
        "--lake",
        str(tmp_path),
        "--input",
        str(tmp_path / "silver2"),
        "--against",
        str(tmp_path / "gold"),
        "--output",
        str(tmp_path / "gold"),
    ]
    assert dedup.main(args) == 0
    gold = {r.doc_id for r in spark.read.format("delta").load(str(tmp_path / "gold")).collect()}
    assert gold == {"chain-a", "uniq-1", "exact-1", "uniq-2"}
    rejected = {
        r.doc_id: (r.drop_reason, r.duplicate_of)
        for r in spark.read.format("delta").load(str(tmp_path / "rejected")).collect()
    }
    assert rejected == {"chain-b": ("dedup_fuzzy", "chain-a"), "exact-2": ("dedup_exact", "exact-1")}
    assert spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 'gold'}`").count() == gold_v + 1  # one append


def test_pair_behind_a_failing_hub_is_still_found(spark, tmp_path):
    # B ~ C (J 0.90) share LSH buckets only together with A, the smallest id, which is at J ~0.6 to both:
    # A-B and A-C fail the exact check, so a member-to-hub star alone never compares B with C.
    rng = random.Random(1)
    b = " ".join(rng.choice(VOCAB) for _ in range(300))
    docs = {"tri-a": _mutate(b, 13, 2001), "tri-b": b, "tri-c": _mutate(b, 3, 1001)}
    sh = {k: shingle_set(v) for k, v in docs.items()}
    assert 0.6 <= jaccard(sh["tri-a"], sh["tri-b"]) < 0.7 and 0.6 <= jaccard(sh["tri-a"], sh["tri-c"]) < 0.7
    assert 0.9 <= jaccard(sh["tri-b"], sh["tri-c"]) < 0.91
    cfg = MinHashConfig(num_perm=8, bands=4, rows=2)
    a_bands, b_bands, c_bands = (np.asarray(x) for x in minhash_batch(list(docs.values()), cfg).minhash_bands)
    assert (b_bands == c_bands).sum() == 3 and ((b_bands == c_bands) <= (a_bands == b_bands)).all()

    _write(spark, tmp_path / "silver", docs)
    assert dedup.main(["--lake", str(tmp_path), "--threshold", "0.8", "--bands", "4", "--rows", "2"]) == 0
    gold = {r.doc_id for r in spark.read.format("delta").load(str(tmp_path / "gold")).collect()}
    assert gold == {"tri-a", "tri-b"}
    rejected = {
        r.doc_id: (r.drop_reason, r.duplicate_of)
        for r in spark.read.format("delta").load(str(tmp_path / "rejected")).collect()
    }
    assert rejected == {"tri-c": ("dedup_fuzzy", "tri-b")}


def test_recheck_window_below_one_is_a_usage_error(tmp_path, caplog):
    assert dedup.main(["--lake", str(tmp_path), "--recheck-window", "0"]) == 2
    assert "--recheck-window must be >= 1, got 0" in caplog.text
    assert not (tmp_path / "gold").exists()
