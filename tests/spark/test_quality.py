"""jobs/train_quality.py and the model-based curate stages (--quality-model, --perplexity-model) on real text.

Positives are Pride and Prejudice chunks, negatives raw Common Crawl pages; the documents curated are
Emma chunks (another book, never trained on) and other crawl pages, so the classifier and the reference
model are judged on text they have not seen.
"""

import json

import pytest

from jobs import curate, train_quality
from jobs.transforms.quality import BUCKETS, QUALITY_LOW, apply_perplexity, verify_classifier
from tests.conftest import DATA, REPO

pytestmark = pytest.mark.spark

BOOKS = [json.loads(x) for x in (REPO / "jobs" / "sample_data" / "gutenberg_novels.jsonl").read_text().splitlines()]
PRIDE = [r["text"] for r in BOOKS if r["book_id"] == "pg1342"]  # 60 chunks of 20 paragraphs
EMMA = [r["text"] for r in BOOKS if r["book_id"] == "pg158"]
CRAWL = [json.loads(x)["text"] for x in (DATA / "cc2019_slice.jsonl").read_text().splitlines()]
CRAWL = [t for t in CRAWL if t.strip()]
SMALL = ["--num-features", "65536", "--max-iter", "50"]  # test-sized; the defaults are for real corpora


def _table(spark, path, rows):
    spark.createDataFrame(rows, "doc_id string, text string, source string").write.format("delta").save(str(path))
    return str(path)


def _train_reference_lm(out_dir, texts, steps=150):
    """A tiny byte-level GPT fitted to ``texts``: a stand-in for CCNet's Wikipedia model."""
    import torch

    from model.artifact import save_artifact
    from model.config import GPTConfig
    from model.gpt import GPT
    from model.tokenizer import train_bpe

    tok = train_bpe(texts, vocab_size=384)
    ids = torch.tensor([i for t in texts for i in tok.encode(t, add_eos=True)], dtype=torch.long)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=64, block_size=64)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - cfg.block_size - 1, (32,))
        x = torch.stack([ids[s : s + cfg.block_size] for s in starts])  # (B, T)
        y = torch.stack([ids[s + 1 : s + cfg.block_size + 1] for s in starts])  # (B, T)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    save_artifact(out_dir, model, tok, lineage={"model_name": "prose-ref"})
    return str(out_dir)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    pos = _table(spark, root / "books", [(f"pp-{i}", t, "books") for i, t in enumerate(PRIDE[:40])])
    neg = _table(spark, root / "crawl", [(f"cc-{i}", t, "crawl") for i, t in enumerate(CRAWL[:55])])
    clf = root / "classifier"
    argv = ["--positive", pos, "--negative", neg, "--output", str(clf), "--lake", str(root), *SMALL]
    assert train_quality.main([*argv, "--test-fraction", "0.25"]) == 0
    bronze = [(f"emma-{i}", t, "book") for i, t in enumerate(EMMA[:8])]
    bronze += [(f"web-{i}", t, "web") for i, t in enumerate(CRAWL[55:])]
    _table(spark, root / "bronze", bronze)
    (root / "cfg.json").write_text(json.dumps({"langid": {"min_score": None}}))
    ref = _train_reference_lm(root / "ref_lm", PRIDE[40:])
    return {"root": root, "classifier": str(clf), "pos": pos, "neg": neg, "bronze": bronze, "ref": ref}


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


def test_curate_scores_drops_quality_low_and_buckets_perplexity(spark, lake):
    root = lake["root"]
    argv = ["--lake", str(root), "--config", str(root / "cfg.json")]
    assert curate.main([*argv, "--quality-model", lake["classifier"], "--perplexity-model", lake["ref"]]) == 0
    silver = {r.doc_id: r for r in spark.read.format("delta").load(str(root / "silver")).collect()}
    rejected = {r.doc_id: r for r in spark.read.format("delta").load(str(root / "rejected")).collect()}
    assert len(silver) + len(rejected) == len(lake["bronze"])
    assert all(0.0 <= r.quality_score <= 1.0 for r in [*silver.values(), *rejected.values()])
    emma = [d for d, *_ in lake["bronze"] if d.startswith("emma")]
    # an unseen book is never dropped by the classifier (the heuristic chain drops 2 chunks: c4_too_few_sentences)
    assert not [d for d in emma if d in rejected and rejected[d].drop_reason == QUALITY_LOW]
    assert sum(d in silver for d in emma) >= len(emma) // 2
    low = [r for r in rejected.values() if r.drop_reason == QUALITY_LOW]
    assert low and all(r.doc_id.startswith("web") and r.quality_score < 0.5 for r in low)
    assert all(r.quality_score >= 0.5 for r in silver.values())
    assert all(r.perplexity > 1 and r.perplexity_bucket in BUCKETS for r in silver.values())
    assert all(r.perplexity is None and r.perplexity_bucket is None for r in rejected.values())
    run = spark.read.format("delta").load(str(root / "runs")).filter("job = 'curate'").orderBy("started_at").collect()
    extra = json.loads(run[-1].extra)
    assert extra["quality_model"]["cut"] == 0.5 and extra["perplexity_model"]["name"] == "prose-ref"
    assert run[-1].counts["dropped_quality_low"] == len(low)


def test_keep_fraction_keeps_that_share_of_the_kept_rows(spark, lake):
    from jobs.transforms.quality import apply_quality, load_classifier

    model, _, _ = load_classifier(lake["classifier"])
    rows = [(f"emma-{i}", t, None) for i, t in enumerate(EMMA[8:14])]
    rows += [(f"web-{i}", t, None) for i, t in enumerate(CRAWL[55:69])]
    rows += [("gone-1", CRAWL[70], "gopher_short_doc")]  # already rejected: scored, not counted, reason kept
    df = spark.createDataFrame(rows, "doc_id string, text string, drop_reason string")
    out, cut, cached = apply_quality(df, model, keep_fraction=0.25)
    got = {r.doc_id: r for r in out.collect()}
    for frame in cached:
        frame.unpersist()
    kept = [r for r in got.values() if r.drop_reason is None]
    assert len(kept) in (5, 6)  # a quarter of 20, give or take the quantile's rank
    assert all(r.quality_score >= cut for r in kept)
    assert all(r.quality_score < cut for r in got.values() if r.drop_reason == QUALITY_LOW)
    assert got["gone-1"].drop_reason == "gopher_short_doc" and got["gone-1"].quality_score is not None
    assert sum(r.doc_id.startswith("emma") for r in kept) >= 5  # the top quarter is the book


def test_perplexity_ranks_clean_prose_into_head(spark, lake):
    # 20 unseen book chunks among 45 crawl pages, one language: head is the lowest 30%
    rows = [(f"emma-{i}", t, None, "en") for i, t in enumerate(EMMA[20:40])]
    rows += [(f"web-{i}", t, None, "en") for i, t in enumerate(CRAWL[:45])]
    rows += [(f"de-{i}", t, None, "de") for i, t in enumerate(EMMA[40:43])]  # its own percentiles
    df = spark.createDataFrame(rows, "doc_id string, text string, drop_reason string, lang string")
    out, cuts, cached = apply_perplexity(df, lake["ref"])
    got = {r.doc_id: r for r in out.collect()}
    for frame in cached:
        frame.unpersist()
    assert set(cuts) == {"en", "de"} and cuts["en"][0] <= cuts["en"][1]
    head = [d for d, r in got.items() if r.perplexity_bucket == "head" and not d.startswith("de")]
    prose_in_head = sum(d.startswith("emma") for d in head)
    assert prose_in_head >= 14, f"only {prose_in_head} of 20 prose chunks in head: {sorted(head)}"
    assert sum(r.perplexity_bucket == "head" for d, r in got.items() if d.startswith("de")) >= 1


def test_model_stage_usage_errors_exit_2(spark, lake, tmp_path):
    base = ["--lake", str(tmp_path), "--input", str(lake["root"] / "bronze")]
    assert curate.main([*base, "--quality-min-score", "0.5"]) == 2
    assert curate.main([*base, "--quality-model", str(tmp_path)]) == 2  # no manifest
    assert curate.main([*base, "--perplexity-model", str(tmp_path / "none")]) == 2
    with pytest.raises(SystemExit) as exc:
        curate.main([*base, "--quality-model", "m", "--quality-min-score", "0.1", "--quality-keep-fraction", "0.1"])
    assert exc.value.code == 2
    assert not (tmp_path / "silver").exists()
    out = ["--output", lake["classifier"], "--lake", str(tmp_path)]
    assert train_quality.main(["--positive", lake["pos"], "--negative", lake["neg"], *out]) == 2  # exists
    new = ["--output", str(tmp_path / "clf"), "--lake", str(tmp_path)]
    assert train_quality.main(["--positive", str(tmp_path / "none"), "--negative", lake["neg"], *new]) == 2
    assert (
        train_quality.main(["--positive", lake["pos"], "--negative", lake["neg"], "--positive-where", "nope = 1", *new])
        == 2
    )
    assert train_quality.main(["--negative", lake["neg"], *new]) == 2
    assert not (tmp_path / "clf").exists()


@pytest.mark.parametrize("num_features", [1000, 1 << 18])
def test_scores_equal_the_spark_ml_pipeline(spark, num_features):
    """The curate stage scores outside the JVM (udfs.curation.hashed_linear): equal to the fitted Spark ML
    pipeline's own transform on multilingual text, odd whitespace, emoji, empty and over-long texts,
    for a bucket count that is a power of two and one that is not (negative hashes, modulo)."""
    from pyspark.ml.functions import vector_to_array

    from jobs.transforms.quality import LABEL, WEIGHT, QualityTrainConfig, build_pipeline, linear_model, score_frame

    udhr = [json.loads(x)["text"] for x in (DATA / "udhr_multilingual_slice.jsonl").read_text().splitlines()]
    odd = ["", "a", "abcd", "  lead\tand\x0btrail \n\r", "İSTANBUL ΣΟΦΟΣ", "nbsp\u00a0em\u2003sep", "😀😀😀😀 ok"]
    texts = [*CRAWL[:40], *udhr, *PRIDE[:20], *odd, "word " * 2000]
    cfg = QualityTrainConfig(positive=("p",), negative=("n",), num_features=num_features, max_iter=10)
    rows = [(i, t, float(i % 2), 1.0) for i, t in enumerate(texts)]
    df = spark.createDataFrame(rows, f"i long, text string, {LABEL} double, {WEIGHT} double")
    fitted = build_pipeline(cfg).fit(df)
    ref = fitted.transform(df).select("i", vector_to_array("_q_prob")[1].alias("p")).orderBy("i").collect()
    ours = score_frame(linear_model(fitted, vars(cfg)), df).select("i", "quality_score").orderBy("i").collect()
    assert [r.i for r in ours] == list(range(len(texts)))
    assert len({r.p for r in ref}) > len(texts) // 2  # the weights are not all zero
    assert max(abs(a.p - b.quality_score) for a, b in zip(ref, ours)) < 1e-12
