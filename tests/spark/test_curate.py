"""jobs/curate.py on real web text: in = kept + rejected, every rejection has a reason, config works."""

import json

import pytest

from jobs import curate
from tests.conftest import DATA, REPO

pytestmark = pytest.mark.spark

# real prose: the second 20-paragraph chunk of Pride and Prejudice bundled with the demo corpus
PROSE = json.loads((REPO / "jobs" / "sample_data" / "gutenberg_novels.jsonl").read_text().splitlines()[1])["text"]


@pytest.fixture(scope="module")
def bronze(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("curate")
    rows = [(r["id"], r["text"], "cc") for r in map(json.loads, (DATA / "cc2019_slice.jsonl").read_text().splitlines())]
    rows += [
        ("prose-1", PROSE, "book"),
        ("tiny-1", "Too short.", "book"),
        ("mail-1", PROSE + "\nWrite to jane.doe@example.org or call +1 415 555 0100.", "book"),
    ]
    spark.createDataFrame(rows, "doc_id string, text string, source string").write.format("delta").save(
        str(root / "bronze")
    )
    return root, rows


def test_curate_accounts_for_every_document(spark, bronze):
    root, rows = bronze
    cfg = root / "cfg.json"
    cfg.write_text(json.dumps({"langid": {"min_score": None}}))
    assert curate.main(["--lake", str(root), "--config", str(cfg)]) == 0
    silver = spark.read.format("delta").load(str(root / "silver"))
    rejected = spark.read.format("delta").load(str(root / "rejected")).filter("job = 'curate'")
    assert silver.count() + rejected.count() == len(rows)
    assert rejected.filter("drop_reason IS NULL").count() == 0
    kept = {r.doc_id: r for r in silver.collect()}
    assert "prose-1" in kept and kept["prose-1"].lang == "en"
    assert kept["mail-1"].pii_email == 1 and "jane.doe@example.org" not in kept["mail-1"].text
    reasons = {r.doc_id: r.drop_reason for r in rejected.collect()}
    assert reasons["tiny-1"] in ("c4_too_few_sentences", "gopher_short_doc")
    assert {"n_words", "mean_word_length", "lang_score", "source"} <= set(silver.columns)
    # rerun: silver is rebuilt identically and nothing is appended twice to rejected
    assert curate.main(["--lake", str(root), "--config", str(cfg)]) == 0
    assert spark.read.format("delta").load(str(root / "silver")).count() == len(kept)
    assert spark.read.format("delta").load(str(root / "rejected")).count() == len(reasons)


def test_unknown_config_key_is_a_usage_error(spark, bronze, tmp_path):
    root, _ = bronze
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"gopher_quality": {"min_doc_wordz": 3}}))
    assert curate.main(["--lake", str(tmp_path), "--input", str(root / "bronze"), "--config", str(bad)]) == 2
    assert not (tmp_path / "silver").exists()


def test_stats_job_funnel_matches_the_tables(spark, bronze, tmp_path):
    from jobs import stats

    root, rows = bronze
    lake = tmp_path / "lake"
    assert curate.main(["--input", str(root / "bronze"), "--lake", str(lake)]) == 0
    png = tmp_path / "funnel.png"
    assert stats.main(["--lake", str(lake), "--png", str(png)]) == 0
    table = spark.read.format("delta").load(str(lake / "stats")).orderBy("step").collect()
    curate_rows = [r for r in table if r.job == "curate"]
    assert curate_rows[0]["in"] == len(rows)
    assert curate_rows[-1].kept == spark.read.format("delta").load(str(lake / "silver")).count()
    rejected = {
        r.drop_reason: r["count"]
        for r in spark.read.format("delta").load(str(lake / "rejected")).groupBy("drop_reason").count().collect()
    }
    assert {k: v for r in curate_rows for k, v in r.reasons.items()} == rejected
    for r in table:
        assert r["in"] == r.kept + r.dropped
    assert png.read_bytes()[:4] == b"\x89PNG"
