"""Clean and quality-filter the bronze table into silver; dropped documents go to rejected.

    spark-submit --properties-file spark-defaults.conf jobs/curate.py \\
        --input lake/bronze --output lake/silver --rejected lake/rejected [--config curation.json] \\
        [--mode fast|parity] [--lake lake]

The chain (udfs/curation/curate.py): Unicode/whitespace normalisation and HTML-to-text, language
ID, C4 line cleaning, Gopher repetition, Gopher quality, C4 document rules, FineWeb quality, PII
redaction; datatrove's default thresholds, each stage switchable and tunable in ``--config`` (a JSON
object of ``CurationConfig`` fields, nested per stage; unknown keys are an error). Every document
gets ``drop_reason`` (null = kept) and its quality signals as columns: ``in = kept + rejected``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from jobs import cli
from jobs.delta_io import append_new, table_version
from jobs.spark import get_spark
from udfs import columns as C

log = logging.getLogger("jobs.curate")


def load_curation_config(path: str | None, mode: str | None):
    """CurationConfig from a JSON file (nested dicts per stage) and the ``--mode`` flag."""
    from udfs.curation.curate import CurationConfig, config_from_dict

    data = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise cli.UsageError(f"cannot read --config {path}: {exc}") from exc
    if mode:
        data["mode"] = mode
    try:
        return config_from_dict(CurationConfig, data)
    except (ValueError, AssertionError) as exc:
        raise cli.UsageError(f"bad --config: {exc}") from exc


def transform(bronze, cfg, run_id: str):
    """bronze rows -> the same rows with curated ``text``, ``drop_reason``, signals and lineage."""
    from pyspark.sql import functions as F

    from udfs.curate import make_curate_udf

    others = [c for c in bronze.columns if c not in (C.TEXT, C.RUN_ID, C.INGESTED_AT)]
    curated = bronze.select(*others, make_curate_udf(cfg)(C.TEXT).alias("c"))
    fields = [f.name for f in curated.schema["c"].dataType.fields]
    return (
        curated.select(*others, *[F.col(f"c.{f}").alias(f) for f in fields])
        .withColumn(C.RUN_ID, F.lit(run_id))
        .withColumn("curated_at", F.current_timestamp())
    )


def run(spark, args, cfg, record) -> None:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    version = table_version(spark, args.input)
    if version is None:
        raise cli.UsageError(f"--input {args.input} is not a Delta table")
    bronze = spark.read.format("delta").option("versionAsOf", version).load(args.input)
    missing = {C.DOC_ID, C.TEXT} - set(bronze.columns)
    if missing:
        raise cli.UsageError(f"--input {args.input} lacks columns {sorted(missing)}")
    record.input_versions[args.input] = version
    out = transform(bronze, cfg, record.run_id).persist(StorageLevel.MEMORY_AND_DISK)
    counts = {r[0]: r[1] for r in out.groupBy(C.DROP_REASON).count().collect()}
    out.filter(F.col(C.DROP_REASON).isNull()).drop(C.DROP_REASON).write.format("delta").mode("overwrite").option(
        "overwriteSchema", "true"
    ).save(args.output)
    rejected = out.filter(F.col(C.DROP_REASON).isNotNull()).withColumn(C.JOB, F.lit("curate"))
    append_new(spark, args.rejected, rejected, [C.DOC_ID, C.JOB])
    out.unpersist()
    total = sum(counts.values())
    record.counts.update(
        total=total,
        kept=counts.get(None, 0),
        dropped=total - counts.get(None, 0),
        **{f"dropped_{k}": v for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])) if k},
    )
    record.output_versions.update(
        {args.output: table_version(spark, args.output), args.rejected: table_version(spark, args.rejected)}
    )
    log.info("curate %s: %s", args.input, record.counts)
    print(json.dumps({"run_id": record.run_id, **record.counts}, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    p = argparse.ArgumentParser(description="Clean and filter BRONZE into SILVER (+ REJECTED).")
    p.add_argument("--input", help="bronze table (default: LAKE/bronze)")
    p.add_argument("--output", help="silver table (default: LAKE/silver)")
    p.add_argument("--rejected", help="rejected table (default: LAKE/rejected)")
    p.add_argument("--config", help="JSON with CurationConfig fields (nested per stage)")
    p.add_argument("--mode", choices=("fast", "parity"), help="word splitting: fast regex or datatrove parity")
    cli.add_lake_args(p)
    args = p.parse_args(argv)
    try:
        args.input = cli.resolve_table(args.input, args.lake, "bronze", "--input")
        args.output = cli.resolve_table(args.output, args.lake, "silver", "--output")
        args.rejected = cli.resolve_table(args.rejected, args.lake, "rejected", "--rejected")
        runs = cli.resolve_table(args.runs, args.lake, "runs", "--runs")
        cfg = load_curation_config(args.config, args.mode)
    except (ValueError, cli.UsageError) as exc:
        log.error("%s", exc)
        return cli.EXIT_USAGE
    from udfs.curation._config import config_to_dict

    log.info("config: %s", json.dumps(config_to_dict(cfg), default=str))
    spark = get_spark("lakelm-curate")
    job_args = {**vars(args), "resolved_config": config_to_dict(cfg)}
    return cli.run_job("curate", job_args, runs, lambda rec: run(spark, args, cfg, rec), spark)


if __name__ == "__main__":
    sys.exit(main())
