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


ARC_ITEM = (  # arc_easy.jsonl line 1: the query and its gold choice, re-cased
    "QUESTION: which statement best explains why photosynthesis is the foundation of most food webs? "
    "Sunlight is the source of energy for nearly all ecosystems."
)


def test_decontaminate_drops_planted_items(spark, tmp_path):
    paras = PROSE.split("\n\n")
    planted = "\n\n".join([*paras[:5], ARC_ITEM, *paras[5:]])
    rows = [("prose-1", PROSE, "book"), ("planted-1", planted, "book")]
    bronze = str(tmp_path / "bronze")
    spark.createDataFrame(rows, "doc_id string, text string, source string").write.format("delta").save(bronze)
    evals = [str(DATA / "eval_tasks" / "copa.jsonl"), str(DATA / "eval_tasks" / "arc_easy.jsonl")]
    args = ["--input", bronze, "--decontaminate", *evals]
    assert curate.main([*args, "--lake", str(tmp_path / "drop")]) == 0
    rejected = spark.read.format("delta").load(str(tmp_path / "drop" / "rejected")).collect()
    assert [(r.doc_id, r.drop_reason, r.contaminated_task) for r in rejected] == [
        ("planted-1", "contaminated", "arc_easy")
    ]
    assert rejected[0].contaminated_ngram.startswith("question which statement best explains")
    silver = spark.read.format("delta").load(str(tmp_path / "drop" / "silver")).collect()
    assert [(r.doc_id, r.contaminated_task) for r in silver] == [("prose-1", None)]
    run = spark.read.format("delta").load(str(tmp_path / "drop" / "runs")).collect()[0]
    assert run.counts["dropped_contaminated"] == 1 and run.counts["flagged_contaminated"] == 0
    assert json.loads(run.extra)["decontamination_index"]["tasks"]["arc_easy"]["items"] == 12
    # --decontaminate-flag-only keeps and flags: tests/unit/test_curation_decontam.py (one job run here is enough)


@pytest.mark.parametrize(
    "extra, lines",
    [
        (["--decontaminate", "MISSING.jsonl"], None),
        (["--decontaminate", "EVAL"], ['{"query": "fine"}', "{broken"]),
        (["--decontaminate-flag-only"], None),
    ],
)
def test_decontaminate_usage_errors_exit_2(tmp_path, extra, lines):
    if lines is not None:
        (tmp_path / "task.jsonl").write_text("\n".join(lines))
    extra = [str(tmp_path / "task.jsonl") if x == "EVAL" else x for x in extra]
    assert curate.main(["--lake", str(tmp_path), *extra]) == 2
    assert not (tmp_path / "silver").exists()
