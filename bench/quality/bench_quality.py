"""Quality classifier: held-out metrics of the README recipe, agreement of two classifiers trained on disjoint
halves, ranking of independent corpora, and the classifier stage's speed in documents per CPU-second.

    .venv/bin/python bench/quality/bench_quality.py --data ../shared/data [--speed-docs 20000] [--repeats 3] \\
        [--raw PATH]

- ``recipe``: the README's default recipe through the jobs themselves, in one local[2] session: ingest the
  bundled ``gutenberg_novels`` (positives) and ``web_commoncrawl_2019`` (negatives), curate, then
  ``train_quality`` on silver by source; its held-out ROC-AUC and precision/recall (from the artifact).
- ``halves``: the same silver cut in two by a hash of the text (seed 7); one classifier trained on each half.
  ``cross_auc``: each one's ROC-AUC on the other half (text it never saw); ``spearman``: rank correlation of
  the two classifiers' scores on the independent corpora below (1 = the same ranking).
- ``independent``: corpora of ``--data`` the recipe never saw: positives are the presidential speeches, the
  ten other Gutenberg novels (20 paragraphs per document, the first 30 documents of each) and the zyte
  articles' gold main text; negatives are the same zyte pages' full visible text (menus, footers, cookie
  banners: the article is inside it, so these are hard negatives). ROC-AUC of the recipe classifier and the
  median ``quality_score`` per corpus (C4, already cleaned by its rules, is listed too, unlabelled).
- ``speed``: ``score_frame`` (the curate stage's code: the fitted weights in a pandas UDF) over
  ``--speed-docs`` documents (the independent corpora, C4 and the crawl sample, cycled; cached in memory
  first, so reading is not timed), median of ``--repeats``; CPU seconds of this process tree (driver, JVM,
  Python workers). Goal >= 5,000 docs/CPU-s. Beside it, interleaved round by round, the same artifact's
  Spark ML ``PipelineModel.transform`` (the JVM feature stages the stage used before; same scores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import REPO, default_raw_path, median, write_raw
from proc_cpu import tree_cpu_seconds

sys.path.insert(0, str(REPO))
OTHER_BOOKS_DOCS = 30  # documents of 20 paragraphs per other novel


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def independent_corpora(data: Path) -> dict[str, list[str]]:
    """Corpus name -> texts (see the module docstring)."""
    speeches = [r["text"] for r in _jsonl(data / "us_presidential_speeches" / "us_presidential_speeches.jsonl")]
    paragraphs: dict[str, list[str]] = {}
    for r in _jsonl(data / "gutenberg_12_novels" / "gutenberg_12_novels_paragraphs.jsonl"):
        if r["book_id"] not in ("pg1342", "pg158"):  # the two bundled novels
            paragraphs.setdefault(r["book_id"], []).append(r["text"])
    novels = [
        "\n\n".join(paras[i : i + 20]) for paras in paragraphs.values() for i in range(0, 20 * OTHER_BOOKS_DOCS, 20)
    ]
    zyte = _jsonl(data / "web_articles_zyte" / "zyte_article_pages_wetlike.jsonl")
    c4 = [r["text"] for r in _jsonl(data / "web_c4_sample" / "c4_en_sample_1000.jsonl")]
    return {
        "speeches": speeches,
        "other_novels": [t for t in novels if t.strip()],
        "zyte_gold_article": [r["gold_main_text"] for r in zyte if r["gold_main_text"].strip()],
        "zyte_full_page": [r["text"] for r in zyte if r["text"].strip()],
        "c4": c4,
    }


POSITIVE, NEGATIVE = ("speeches", "other_novels", "zyte_gold_article"), ("zyte_full_page",)


def _scores(spark, model, texts: list[str]) -> list[float]:
    from jobs.transforms.quality import score_frame
    from udfs import columns as C

    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "i long, text string")
    return [r[1] for r in score_frame(model, df).select("i", C.QUALITY_SCORE).orderBy("i").collect()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the shared public corpora")
    p.add_argument("--speed-docs", type=int, default=20_000, help="documents scored per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    p.add_argument("--raw", help="raw JSON path (default bench/quality/raw/bench_quality-<UTC>.json)")
    args = p.parse_args()
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from scipy.stats import spearmanr

    from jobs import curate, ingest, train_quality
    from jobs.common.spark import get_spark
    from jobs.transforms.quality import load_classifier, roc_auc

    spark = get_spark(
        "lakelm-bench-quality",
        master="local[2]",
        conf={"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false", "spark.driver.memory": "4g"},
    )
    lake = Path(tempfile.mkdtemp(prefix="bench_quality_"))
    t0 = time.monotonic()
    for name in ("gutenberg_novels", "web_commoncrawl_2019"):
        src = REPO / "jobs" / "sample_data" / f"{name}.jsonl"
        assert ingest.main(["--input", str(src), "--format", "jsonl", "--lake", str(lake), "--source", name]) == 0
    assert curate.main(["--lake", str(lake)]) == 0
    silver = str(lake / "silver")
    pos, neg = "source = 'gutenberg_novels'", "source = 'web_commoncrawl_2019'"
    recipe = ["--positive", silver, "--positive-where", pos, "--negative", silver, "--negative-where", neg]
    assert train_quality.main([*recipe, "--output", str(lake / "clf"), "--lake", str(lake)]) == 0
    half = "pmod(xxhash64(text, 7), 2) = {}"
    for h in (0, 1):
        argv = ["--positive", silver, "--positive-where", f"{pos} AND {half.format(h)}"]
        argv += ["--negative", silver, "--negative-where", f"{neg} AND {half.format(h)}"]
        assert train_quality.main([*argv, "--output", str(lake / f"clf_h{h}"), "--lake", str(lake)]) == 0
    build_s = time.monotonic() - t0
    model, meta, digest = load_classifier(str(lake / "clf"))
    halves = {h: load_classifier(str(lake / f"clf_h{h}"))[0] for h in (0, 1)}

    rows = (
        spark.read.format("delta")
        .load(silver)
        .filter(f"({pos}) OR ({neg})")
        .selectExpr("text", "source", "pmod(xxhash64(text, 7), 2) AS h")
        .collect()
    )
    cross = {}
    for h in (0, 1):
        other = [r for r in rows if r.h != h]
        scores = _scores(spark, halves[h], [r.text for r in other])
        cross[f"h{h}_on_h{1 - h}"] = roc_auc([r.source == "gutenberg_novels" for r in other], scores)

    corpora = independent_corpora(Path(args.data))
    scored = {name: _scores(spark, model, texts) for name, texts in corpora.items()}
    labels = [1] * sum(len(corpora[n]) for n in POSITIVE) + [0] * sum(len(corpora[n]) for n in NEGATIVE)
    ind_scores = [s for n in (*POSITIVE, *NEGATIVE) for s in scored[n]]
    texts = [t for n in (*POSITIVE, *NEGATIVE) for t in corpora[n]]
    rho = spearmanr(_scores(spark, halves[0], texts), _scores(spark, halves[1], texts)).statistic

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from jobs.transforms.quality import score_frame
    from udfs import columns as C

    pool = [t for ts in corpora.values() for t in ts]
    pool += [
        r["text"] for r in _jsonl(Path(args.data) / "web_commoncrawl_2019_sample" / "cc_main_2019_30_sample.jsonl")
    ]
    docs = [(i, pool[i % len(pool)]) for i in range(args.speed_docs)]
    df = spark.createDataFrame(docs, "i long, text string").repartition(2).persist(StorageLevel.MEMORY_ONLY)
    df.count()
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array

    pipeline = PipelineModel.load(str(lake / "clf" / "pipeline"))
    sides = {
        "ours": lambda: score_frame(model, df).agg(F.sum(C.QUALITY_SCORE)),
        "spark_ml_pipeline": lambda: pipeline.transform(df).agg(F.sum(vector_to_array("_q_prob")[1])),
    }
    runs = {name: [] for name in sides}
    for _ in range(args.repeats + 1):  # the first round warms both up (JVM, numba's cache) and is not counted
        for name, job in sides.items():  # interleaved, so a change in the machine's load hits both
            cpu0, w0 = tree_cpu_seconds(), time.monotonic()
            job().collect()
            runs[name].append({"cpu_s": tree_cpu_seconds() - cpu0, "wall_s": time.monotonic() - w0})
    runs = {name: r[1:] for name, r in runs.items()}
    cpu = {name: median([x["cpu_s"] for x in r]) for name, r in runs.items()}
    result = {
        "recipe": {"hash": digest, "lineage": meta["lineage"], "metrics": meta["metrics"], "build_wall_s": build_s},
        "halves": {"cross_auc": cross, "spearman_on_independent": float(rho)},
        "independent": {
            "roc_auc": roc_auc(labels, ind_scores),
            "docs": {n: len(v) for n, v in corpora.items()},
            "median_score": {n: median(v) for n, v in scored.items()},
        },
        "speed": {
            "docs": args.speed_docs,
            "mean_chars": sum(len(t) for _, t in docs) / len(docs),
            "runs": runs,
            "docs_per_cpu_s": {name: args.speed_docs / c for name, c in cpu.items()},
            "docs_per_wall_s": {name: args.speed_docs / median([x["wall_s"] for x in r]) for name, r in runs.items()},
            "ours_over_spark_ml_per_cpu_s": cpu["spark_ml_pipeline"] / cpu["ours"],
        },
    }
    print(json.dumps(result, indent=1, default=str))
    write_raw(args.raw or default_raw_path("quality", "bench_quality"), result)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
