"""Train a quality classifier on reference-quality (positive) and crawl (negative) tables.

    spark-submit --properties-file spark-defaults.conf jobs/train_quality.py \\
        --positive lake/silver --positive-where "source = 'gutenberg_novels'" \\
        --negative lake/silver --negative-where "source = 'web_commoncrawl_2019'" \\
        --output lake/_artifacts/quality-v1 [--test-fraction 0.2] [--seed 0] [--num-features 262144] \\
        [--word-ngrams 2] [--char-ngram 4] [--max-chars 4000] [--char-max-chars 1000] [--reg-param 0.001] \\
        [--max-iter 100] [--threshold 0.5] [--text-col text] [--config f.json] [--lake lake]

Hashed word and character n-grams + logistic regression with Spark ML (``jobs/transforms/quality.py``), the
classes balanced by weight, a held-out split by a hash of the text; ROC-AUC and precision/recall of
both splits, the input tables with their Delta versions, filters and row counts go into the
checksummed classifier artifact at ``--output`` (and the runs table). ``jobs/curate.py
--quality-model DIR`` applies it. Exit 2 for bad flags, missing tables or columns, or an existing
``--output``; 1 when training fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobs.common import cli
from jobs.transforms.quality import QualityTrainConfig, save_classifier, train_classifier


def build_parser():
    """The job's flags, one per ``QualityTrainConfig`` field."""
    p = cli.job_parser(__doc__.splitlines()[0], QualityTrainConfig)
    p.add_argument("--positive", nargs="+", metavar="TABLE", help="Delta tables of reference-quality text (required)")
    p.add_argument("--negative", nargs="+", metavar="TABLE", help="Delta tables of crawl text (required)")
    p.add_argument("--output", metavar="DIR", help="classifier artifact folder to create (required)")
    p.add_argument("--positive-where", metavar="SQL", help="filter on every positive table")
    p.add_argument("--negative-where", metavar="SQL", help="filter on every negative table")
    p.add_argument("--text-col", help="text column of the input tables")
    for flag, kind, what in (
        ("--test-fraction", float, "share of distinct texts held out for the metrics"),
        ("--seed", int, "seed of the held-out split"),
        ("--num-features", int, "hash buckets"),
        ("--word-ngrams", int, "word n-grams of length 1..N"),
        ("--char-ngram", int, "character n-gram length (0 = none)"),
        ("--max-chars", int, "characters of each document the word features read"),
        ("--char-max-chars", int, "characters of each document the character n-grams read"),
        ("--reg-param", float, "L2 regularisation"),
        ("--max-iter", int, "L-BFGS iterations"),
        ("--threshold", float, "score above which a document counts as positive in precision/recall"),
    ):
        p.add_argument(flag, type=kind, help=what)
    return p


def make_config(args) -> QualityTrainConfig:
    """Flags (over ``--config``) -> config; an existing ``--output`` is a usage error."""
    cfg = cli.build_config(args, QualityTrainConfig, required=("positive", "negative", "output"))
    if Path(cfg.output).exists():
        raise cli.UsageError(f"--output {cfg.output} exists; classifier artifacts are immutable, pick a new folder")
    return cfg


def run(spark, cfg: QualityTrainConfig, record) -> None:
    """Train, evaluate, save; the record gets the inputs' versions, row counts and held-out metrics."""
    model, facts = train_classifier(spark, cfg)
    digest = save_classifier(cfg.output, model, cfg, facts)
    for side in ("positive", "negative"):
        for entry in facts["lineage"][side]:
            record.input_versions[entry["table"]] = entry["version"]
        record.counts[f"{side}_rows"] = sum(e["rows"] for e in facts["lineage"][side])
    test = facts["metrics"]["test"]
    record.counts.update(test_positive=test["n_positive"], test_negative=test["n_negative"])
    record.extra.update(classifier_hash=digest, metrics=facts["metrics"], output=cfg.output)
    print(
        f"quality classifier {cfg.output} (hash {digest}): held-out ROC-AUC {test['roc_auc']:.4f}, "
        f"precision {test['precision']:.3f}, recall {test['recall']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    return cli.run_main("train_quality", argv, build_parser(), make_config, run)


if __name__ == "__main__":
    sys.exit(main())
