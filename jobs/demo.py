"""The main job end to end on the bundled sample corpus (``make demo``).

    python -m jobs.demo [--lake lake] [--input-dir DIR] [--max-docs N] [--max-steps N]

Runs every stage (ingest, train_quality, curate, dedup, stats, build_dataset, train, score, then an
evaluation of the model on the bundled task slices in ``jobs/sample_data/eval_tasks`` into ``LAKE/evals``,
and the report) in one Spark session, each through its job's own ``main()`` (the same code
``spark-submit`` runs), prints a summary per stage and, at the end, where the tables are.

Curation runs the model-based and decontamination stages too: a quality classifier
(``jobs/train_quality.py``) is trained on bronze, the bundled novels (``QUALITY_POSITIVE``) against the
bundled crawl (``QUALITY_NEGATIVE``), and curate keeps the best ``QUALITY_KEEP`` of what the heuristics
kept (``quality_low`` for the rest); curate also drops documents sharing a 13-gram with the bundled
evaluation tasks (``contaminated``), the tasks the model is evaluated on at the end. Without both
sources in ``--input-dir`` the classifier stage is skipped (logged).
``--max-docs`` / ``--max-steps`` make a quick run (the first N records of each corpus, N training
steps) through the same stages.

The token table's val split is stratified by source and language (``--stratify-by source,lang``):
each (source, language) stratum gives 5% of its documents to val, so val has train's mix; a stratum
of fewer than 10 documents (the corpus's handful of pages in other languages) stays in train.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from jobs import build_dataset, curate, dedup, evaluate, ingest, score, stats, train, train_quality
from jobs.common import cli
from jobs.common.lake import DEFAULT_LAKE, table_path
from jobs.common.spark import get_spark
from jobs.transforms.demo_lake import lake_table, summarize, trimmed_corpora
from jobs.transforms.report_builder import build_report

log = logging.getLogger("jobs.demo")

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
EVAL_TASKS = SAMPLE_DIR / "eval_tasks"  # the bundled task slices the demo evaluates its model on
QUALITY_POSITIVE, QUALITY_NEGATIVE = "gutenberg_novels", "web_commoncrawl_2019"  # the classifier's sources
QUALITY_KEEP = 0.7  # curate keeps this share of what the heuristics kept, the best by quality_score


def _stage(name: str, fn, *args) -> None:
    t0 = time.monotonic()
    print(f"\n=== {name} ===", flush=True)
    code = fn(*args)
    if code != 0:
        raise SystemExit(f"stage {name!r} failed with exit code {code}; see the log above")
    print(f"--- {name}: done in {time.monotonic() - t0:.1f} s", flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The job's flags (``--remote`` from `cli.job_parser`)."""
    p = cli.job_parser("Run lakelm end to end on the bundled sample corpus.", lake=False, config=False)
    p.add_argument("--lake", default=DEFAULT_LAKE, help="lake folder to create or update")
    p.add_argument("--input-dir", default=str(SAMPLE_DIR), help="folder of *.jsonl corpora")
    p.add_argument("--max-docs", type=int, help="ingest only the first N records of each corpus (default: all)")
    p.add_argument("--max-steps", type=int, help="train for N steps (default: the config's)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging()
    lake = args.lake
    corpora = sorted(Path(args.input_dir).glob("*.jsonl"))
    if not corpora:
        log.error("no *.jsonl files in %s", args.input_dir)
        return cli.EXIT_USAGE
    for flag, value in (("--max-docs", args.max_docs), ("--max-steps", args.max_steps)):
        if value is not None and value < 1:
            log.error("%s must be >= 1, got %d", flag, value)
            return cli.EXIT_USAGE
    if args.max_docs:
        corpora = trimmed_corpora(corpora, args.max_docs, Path(lake) / "_input")
    spark = get_spark("lakelm-demo", remote=args.remote)  # every stage's get_spark returns this session
    for path in corpora:
        _stage(
            f"ingest {path.name}",
            ingest.main,
            ["--input", str(path), "--format", "jsonl", "--lake", lake, "--source", path.stem],
        )
    curate_args = ["--lake", lake, "--config", str(CONFIG_DIR / "demo_curation.json")]
    curate_args += ["--decontaminate", *sorted(str(p) for p in EVAL_TASKS.glob("*.jsonl"))]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    if {QUALITY_POSITIVE, QUALITY_NEGATIVE} <= {p.stem for p in corpora}:
        classifier = str(Path(lake) / "_artifacts" / f"quality-{stamp}")
        bronze = table_path(lake, "bronze")
        _stage(
            "train_quality",
            train_quality.main,
            ["--lake", lake, "--output", classifier]
            + ["--positive", bronze, "--positive-where", f"source = '{QUALITY_POSITIVE}'"]
            + ["--negative", bronze, "--negative-where", f"source = '{QUALITY_NEGATIVE}'"],
        )
        curate_args += ["--quality-model", classifier, "--quality-keep-fraction", str(QUALITY_KEEP)]
    else:
        log.info(
            "no %s and %s corpora in the input: curate runs without a quality classifier",
            QUALITY_POSITIVE,
            QUALITY_NEGATIVE,
        )
    _stage("curate", curate.main, curate_args)
    _stage("dedup", dedup.main, ["--lake", lake, "--clusters", lake_table(lake, "clusters")])
    _stage("stats", stats.main, ["--lake", lake])
    tok_dir = str(Path(lake) / "_artifacts" / "tokenizer")
    packing = "--vocab-size 4096 --block-size 128 --val-fraction 0.05 --stratify-by source,lang".split()
    _stage("build_dataset", build_dataset.main, ["--lake", lake, "--tokenizer-out", tok_dir, *packing])
    artifact = Path(lake) / "_artifacts" / f"gpt-{stamp}"
    steps = ["--max-steps", str(args.max_steps)] if args.max_steps else []
    _stage(
        "train",
        train.main,
        ["--lake", lake, "--out", str(artifact), "--config", str(CONFIG_DIR / "demo_train.json"), *steps],
    )
    _stage(
        "score",
        score.main,
        ["--lake", lake, "--input", str(Path(lake) / "gold"), "--model", str(artifact), "--task", "score"],
    )
    tasks = sorted(p.stem for p in EVAL_TASKS.glob("*.jsonl"))
    _stage(
        "evaluate",
        evaluate.main,
        ["--lake", lake, "--model", str(artifact), "--tasks", ",".join(tasks), "--task-dir", str(EVAL_TASKS)]
        + ["--output", str(Path(lake) / "evals")],
    )
    summarize(spark, lake)
    report_path = build_report(spark, lake, str(Path(lake) / "_report"), str(artifact))
    print(f"\nlake:     {Path(lake).resolve()}  (read it with spark.read.format('delta').load(...))")
    print(f"artifact: {artifact.resolve()}")
    print(f"report:   {Path(report_path).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
