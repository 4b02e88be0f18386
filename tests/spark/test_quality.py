"""jobs/train_quality.py on real text: Pride and Prejudice chunks (positives) against raw Common Crawl pages."""

import json

import pytest

from jobs import train_quality
from jobs.quality import verify_classifier
from tests.conftest import DATA, REPO

pytestmark = pytest.mark.spark

BOOKS = [json.loads(x) for x in (REPO / "jobs" / "sample_data" / "gutenberg_novels.jsonl").read_text().splitlines()]
PRIDE = [r["text"] for r in BOOKS if r["book_id"] == "pg1342"]  # 60 chunks of 20 paragraphs
CRAWL = [json.loads(x)["text"] for x in (DATA / "cc2019_slice.jsonl").read_text().splitlines()]
CRAWL = [t for t in CRAWL if t.strip()]
SMALL = ["--num-features", "65536", "--max-iter", "50"]  # test-sized; the defaults are for real corpora


def _table(spark, path, rows):
    spark.createDataFrame(rows, "doc_id string, text string, source string").write.format("delta").save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    pos = _table(spark, root / "books", [(f"pp-{i}", t, "books") for i, t in enumerate(PRIDE[:40])])
    neg = _table(spark, root / "crawl", [(f"cc-{i}", t, "crawl") for i, t in enumerate(CRAWL[:55])])
    clf = root / "classifier"
    argv = ["--positive", pos, "--negative", neg, "--output", str(clf), "--lake", str(root), *SMALL]
    assert train_quality.main([*argv, "--test-fraction", "0.25"]) == 0
    return {"root": root, "classifier": str(clf), "pos": pos, "neg": neg}


def test_train_quality_writes_a_checked_artifact_with_lineage_and_held_out_metrics(spark, lake):
    meta = json.loads(open(lake["classifier"] + "/metadata.json").read())
    assert (
        verify_classifier(lake["classifier"])
        == json.loads(
            spark.read.format("delta").load(str(lake["root"] / "runs")).filter("job = 'train_quality'").first().extra
        )["classifier_hash"]
    )
    assert [e["table"] for e in meta["lineage"]["positive"]] == [lake["pos"]]
    assert meta["lineage"]["positive"][0]["version"] == 0 and meta["lineage"]["negative"][0]["rows"] == 55
    test = meta["metrics"]["test"]
    # held out: texts the classifier never saw; books vs raw crawl must separate clearly
    assert test["n_positive"] >= 4 and test["n_negative"] >= 6
    assert (
        test["n_positive"] + test["n_negative"] + sum(meta["metrics"]["train"][k] for k in ("n_positive", "n_negative"))
        == 95
    )
    assert test["roc_auc"] >= 0.95 and test["recall"] >= 0.75
    assert meta["config"]["num_features"] == 65536 and meta["format"] == "lakelm-quality-classifier/1"
