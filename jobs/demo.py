"""The main job end to end on the bundled sample corpus (``make demo``).

    python -m jobs.demo [--lake lake] [--input-dir DIR]

Runs every stage in one Spark session, each through its job's own ``main()`` (the same code
``spark-submit`` runs), prints a summary per stage and, at the end, where the tables are.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from jobs import build_dataset, cli, curate, dedup, ingest, report, score, stats, train
from jobs.lake import table_path
from jobs.spark import get_spark

log = logging.getLogger("jobs.demo")

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _stage(name: str, fn, *args) -> None:
    t0 = time.monotonic()
    print(f"\n=== {name} ===", flush=True)
    code = fn(*args)
    if code != 0:
        raise SystemExit(f"stage {name!r} failed with exit code {code}; see the log above")
    print(f"--- {name}: done in {time.monotonic() - t0:.1f} s", flush=True)


def summarize(spark, lake: str) -> None:
    """Print row counts of every table present and the bronze/quarantine breakdown."""
    from delta.tables import DeltaTable

    print("\n=== summary ===")
    for name in ("bronze", "quarantine", "silver", "rejected", "gold", "tokens", "scores", "stats", "runs"):
        path = table_path(lake, name)
        if DeltaTable.isDeltaTable(spark, path):
            df = spark.read.format("delta").load(path)
            version = DeltaTable.forPath(spark, path).history(1).first().version
            print(f"{name:<11} {df.count():>8} rows  (Delta version {version})  {path}")
    bronze = spark.read.format("delta").load(table_path(lake, "bronze"))
    print("\nbronze documents per source:")
    for row in bronze.groupBy("source").count().orderBy("source").collect():
        print(f"  {row.source:<28} {row['count']:>6}")
    quarantine = spark.read.format("delta").load(table_path(lake, "quarantine"))
    print("quarantined records per reason:")
    for row in quarantine.groupBy("job", "reason").count().orderBy("job", "reason").collect():
        print(f"  {row.job}/{row.reason:<22} {row['count']:>6}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run lakelm end to end on the bundled sample corpus.")
    parser.add_argument("--lake", default="lake", help="lake folder to create or update")
    parser.add_argument("--input-dir", default=str(SAMPLE_DIR), help="folder of *.jsonl corpora")
    args = parser.parse_args(argv)
    cli.setup_logging()
    spark = get_spark("lakelm-demo")
    lake = args.lake
    corpora = sorted(Path(args.input_dir).glob("*.jsonl"))
    if not corpora:
        log.error("no *.jsonl files in %s", args.input_dir)
        return cli.EXIT_USAGE
    for path in corpora:
        _stage(f"ingest {path.name}", ingest.main,
               ["--input", str(path), "--format", "jsonl", "--lake", lake, "--source", path.stem])
    _stage("curate", curate.main, ["--lake", lake, "--config", str(CONFIG_DIR / "demo_curation.json")])
    _stage("dedup", dedup.main, ["--lake", lake, "--clusters", str(Path(lake) / "clusters")])
    _stage("stats", stats.main, ["--lake", lake])
    tok_dir = str(Path(lake) / "_artifacts" / "tokenizer")
    _stage("build_dataset", build_dataset.main,
           ["--lake", lake, "--tokenizer-out", tok_dir, "--vocab-size", "4096", "--block-size", "128",
            "--val-fraction", "0.05"])
    artifact = Path(lake) / "_artifacts" / f"gpt-{time.strftime('%Y%m%dT%H%M%S')}"
    _stage("train", train.main, ["--lake", lake, "--out", str(artifact), "--config", str(CONFIG_DIR / "demo_train.json")])
    _stage("score", score.main, ["--lake", lake, "--input", str(Path(lake) / "gold"), "--model", str(artifact),
                                 "--task", "score"])
    summarize(spark, lake)
    report_path = report.build_report(spark, lake, str(Path(lake) / "_report"), str(artifact))
    print(f"\nlake:     {Path(lake).resolve()}  (read it with spark.read.format('delta').load(...))")
    print(f"artifact: {artifact.resolve()}")
    print(f"report:   {Path(report_path).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
