"""jobs/ingest.py on a local session: real corpus slice, bad input, reruns, clear user errors."""

import json
from collections import Counter

import pytest

from jobs import ingest
from jobs.common.runs import read_runs
from tests.bad_input import MAX_DOC_BYTES, write_bad_corpus
from tests.conftest import DATA

pytestmark = pytest.mark.spark


def _lake_args(lake, *extra):
    return ["--lake", str(lake), *extra]


def _read(spark, path):
    return spark.read.format("delta").load(str(path))


def test_ingest_real_slice_accounts_for_every_line_and_rerun_adds_nothing(spark, tmp_path):
    src = DATA / "cc2019_slice.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines()
    records = [json.loads(x) for x in lines]
    n_empty = sum(1 for r in records if not r["text"].strip())

    assert ingest.main(_lake_args(tmp_path, "--input", str(src), "--format", "jsonl")) == 0
    bronze = _read(spark, tmp_path / "bronze")
    quarantine = _read(spark, tmp_path / "quarantine")
    assert bronze.count() + quarantine.count() == len(lines)
    assert quarantine.count() == n_empty
    assert {r.reason for r in quarantine.collect()} == {"empty_text"}
    # given ids are kept, other fields survive as JSON, hashes are the text's sha256
    row = bronze.filter("doc_id = 'cc2019-0000'").first()
    assert row.text == records[0]["text"]
    assert json.loads(row.extra)["url"] == records[0]["url"]
    import hashlib

    assert row.content_hash == hashlib.sha256(records[0]["text"].encode()).hexdigest()
    assert row.source == "cc2019_slice"
    # the table is plain Delta: delta-rs (no JVM) reads the same rows
    from deltalake import DeltaTable

    assert DeltaTable(str(tmp_path / "bronze")).to_pyarrow_table().num_rows == bronze.count()

    v_before = spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 'bronze'}`").count()
    assert ingest.main(_lake_args(tmp_path, "--input", str(src), "--format", "jsonl")) == 0
    assert _read(spark, tmp_path / "bronze").count() == bronze.count()
    assert _read(spark, tmp_path / "quarantine").count() == n_empty
    assert spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 'bronze'}`").count() == v_before  # no new commit

    runs = read_runs(spark, str(tmp_path / "runs"), job="ingest").collect()
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    latest = runs[0].counts
    assert latest["read"] == len(lines)
    assert latest["written"] == 0 and latest["unchanged"] == len(lines) - n_empty
    assert latest["read"] == latest["written"] + latest["unchanged"] + latest["quarantined"]


def test_ingest_bad_input_every_reason(spark, tmp_path):
    corpus = tmp_path / "bad.jsonl"
    expected = write_bad_corpus(corpus)
    args = _lake_args(tmp_path, "--input", str(corpus), "--format", "jsonl", "--max-doc-bytes", str(MAX_DOC_BYTES))
    assert ingest.main(args) == 0

    bronze = _read(spark, tmp_path / "bronze")
    quarantine = _read(spark, tmp_path / "quarantine")
    got = Counter({r.reason: r["count"] for r in quarantine.groupBy("reason").count().collect()})
    want = Counter({k: v for k, v in expected.items() if k is not None})
    assert got == want
    assert len(want) >= 10
    assert bronze.count() == expected[None]
    assert bronze.count() + quarantine.count() == sum(expected.values())
    # nothing in quarantine without a reason, a file, a raw hash; huge raw records are truncated
    q = quarantine.collect()
    assert all(r.reason and r.source_file and r.raw_hash for r in q)
    assert max(len(r.raw) for r in q) <= 4096
    assert {r.raw_bytes for r in q if r.reason == "too_large"} == {
        MAX_DOC_BYTES + 500 + len('{"id": "b14", "text": ""}')
    }
    # the BOM record and the control characters made it to bronze intact
    texts = {r.doc_id: r.text for r in bronze.collect()}
    assert texts["g2"] == "Starts with a UTF-8 byte order mark."
    assert "\u0007" in texts["g3"]
    assert texts["4"] == "An integer id is fine."
    assert sum(1 for d in texts if d.startswith("h")) == 1  # the id-less record got a hash id

    run = read_runs(spark, str(tmp_path / "runs"), job="ingest").first()
    assert run.counts["quarantined_invalid_utf8"] == 2
    assert run.counts["read"] == sum(expected.values())


def test_ingest_parquet_and_id_conflict_with_existing_table(spark, tmp_path):
    import pandas as pd

    pq = tmp_path / "in.parquet"
    pd.DataFrame({"id": ["a", "b"], "text": ["alpha text", "beta text"], "score": [1.0, 2.0]}).to_parquet(pq)
    assert ingest.main(_lake_args(tmp_path, "--input", str(pq), "--format", "parquet", "--source", "s")) == 0
    pd.DataFrame({"id": ["a", "c"], "text": ["CHANGED alpha", "gamma"], "score": [1.0, 3.0]}).to_parquet(pq)
    assert ingest.main(_lake_args(tmp_path, "--input", str(pq), "--format", "parquet", "--source", "s")) == 0
    bronze = {r.doc_id: r for r in _read(spark, tmp_path / "bronze").collect()}
    assert sorted(bronze) == ["a", "b", "c"]
    assert bronze["a"].text == "alpha text"  # never overwritten
    assert json.loads(bronze["c"].extra) == {"score": 3.0}
    q = _read(spark, tmp_path / "quarantine").collect()
    assert [(r.reason, r.doc_id) for r in q] == [("id_conflict_existing", "a")]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "parquet", "--text-col", "body"], "--text-col 'body' not in the input columns"),
        (["--format", "jsonl", "--text-col", "body"], "no record has the field 'body'"),
    ],
)
def test_user_errors_fail_fast_and_write_nothing(spark, tmp_path, caplog, args, message):
    import pandas as pd

    src = tmp_path / ("in.parquet" if "parquet" in args else "in.jsonl")
    if src.suffix == ".parquet":
        pd.DataFrame({"text": ["x"]}).to_parquet(src)
    else:
        src.write_text('{"text": "x"}\n')
    lake = tmp_path / "lake"
    assert ingest.main(["--lake", str(lake), "--input", str(src), *args]) == 2
    assert message in caplog.text
    assert not lake.exists()


def test_missing_input_and_bad_paths_are_usage_errors(spark, tmp_path, caplog):
    lake = tmp_path / "lake"
    assert ingest.main(["--lake", str(lake), "--input", str(tmp_path / "nope*.jsonl"), "--format", "jsonl"]) == 2
    assert "cannot read --input" in caplog.text
    assert ingest.main(["--lake", str(lake), "--input", "x", "--format", "jsonl", "--output", "t`; DROP"]) == 2
    assert not lake.exists()
    with pytest.raises(SystemExit):
        ingest.main(["--input", "x", "--format", "xml"])


def test_ingest_whole_commoncrawl_sample(spark, tmp_path, shared_data):
    """All 697 lines of the shared crawl sample are accounted for; a rerun adds nothing."""
    src = shared_data / "web_commoncrawl_2019_sample" / "cc_main_2019_30_sample.jsonl"
    for _ in range(2):
        assert ingest.main(_lake_args(tmp_path, "--input", str(src), "--format", "jsonl")) == 0
    runs = read_runs(spark, str(tmp_path / "runs"), job="ingest").collect()
    first, second = runs[1].counts, runs[0].counts
    assert first["read"] == second["read"] == 697
    assert first["written"] + first["quarantined"] == 697 and second["written"] == 0
    assert _read(spark, tmp_path / "bronze").count() == first["written"]
