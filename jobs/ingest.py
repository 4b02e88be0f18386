"""Ingest raw corpora into the Delta bronze table; bad records go to quarantine with a reason.

    spark-submit --properties-file spark-defaults.conf jobs/ingest.py \\
        --input 'corpus/*.jsonl' --format jsonl --output lake/bronze [--quarantine lake/quarantine] \\
        [--text-col text] [--id-col id] [--source NAME] [--max-doc-bytes 16777216] [--lake lake]

Every record read ends in exactly one place: ``read = written + unchanged + quarantined``, where
``unchanged`` are records already in the table from an earlier run (a rerun writes nothing). The
counts per reason are printed and appended to the runs table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from datetime import datetime

from jobs import cli
from jobs.delta_io import ensure_table, merge_insert_new, table_version
from jobs.spark import get_spark
from udfs import columns as C

log = logging.getLogger("jobs.ingest")

FORMATS = ("jsonl", "parquet", "text", "csv")
BRONZE_SCHEMA = (
    f"{C.DOC_ID} string not null, {C.TEXT} string, {C.SOURCE} string, {C.SOURCE_FILE} string, "
    f"{C.CONTENT_HASH} string, {C.EXTRA} string, {C.INGESTED_AT} timestamp, {C.RUN_ID} string"
)
QUARANTINE_SCHEMA = (
    f"{C.SOURCE} string, {C.SOURCE_FILE} string, {C.REASON} string, {C.DETAIL} string, {C.RAW} string, "
    f"{C.RAW_BYTES} bigint, {C.RAW_HASH} string, {C.OCCURRENCE} int, {C.DOC_ID} string, {C.JOB} string, "
    f"{C.RUN_ID} string, {C.INGESTED_AT} timestamp"
)
QUARANTINE_KEYS = [C.SOURCE_FILE, C.RAW_HASH, C.REASON, C.OCCURRENCE, C.JOB]


@dataclass(frozen=True)
class IngestConfig:
    input: str
    format: str
    output: str
    quarantine: str
    text_col: str = "text"
    id_col: str = "id"
    source: str = ""  # "" = derived from the input path's file name
    max_doc_bytes: int = 16 * 1024 * 1024  # larger texts are quarantined as too_large


def default_source(input_path: str) -> str:
    """``data/web_c4/c4_sample.jsonl`` -> ``c4_sample``; globs use the folder name."""
    path = input_path.rstrip("/")
    name = os.path.basename(path)
    if any(ch in name for ch in "*?[") or not name:
        name = os.path.basename(os.path.dirname(path)) or "input"
    return name.split(".")[0] or "input"


def _raw_stats(df):
    """Add ``raw_hash`` (sha256) and ``raw_bytes`` of the whole raw record in ``raw_bin``."""
    from pyspark.sql import functions as F

    return df.withColumn(C.RAW_HASH, F.sha2(F.col("raw_bin"), 256)).withColumn(
        C.RAW_BYTES, F.octet_length("raw_bin").cast("bigint")
    )


def extract(spark, cfg: IngestConfig):
    """Read the input into rows of ``source_file, given_id, text, extra, reason, detail, raw_bin,
    raw_hash, raw_bytes``.

    A JSONL line longer than ``max_doc_bytes`` is quarantined as ``too_large`` without being parsed:
    only its hash, size and first bytes travel on, so a 50 MB line never reaches a Python worker or
    the cache (parsing it there ran a 1 GiB driver out of heap).

    Raises:
        cli.UsageError: when the input matches no files or lacks the text column.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.utils import AnalysisException

    from udfs.ingest import make_parse_json_udf

    try:
        if cfg.format in ("jsonl", "text"):
            reader = spark.read.option("wholetext", cfg.format == "text")
            lines = reader.text(cfg.input).select(
                F.col("_metadata.file_path").alias(C.SOURCE_FILE), F.col("value").cast("binary").alias("raw_bin")
            )
        elif cfg.format == "parquet":
            table = spark.read.parquet(cfg.input)
        else:
            table = (
                spark.read.option("header", True)
                .option("multiLine", True)
                .option("escape", '"')
                .option("mode", "PERMISSIVE")
                .csv(cfg.input)
            )
    except AnalysisException as exc:
        raise cli.UsageError(f"cannot read --input {cfg.input!r} as {cfg.format}: {exc}") from exc

    if cfg.format == "jsonl":
        big = F.col(C.RAW_BYTES) > cfg.max_doc_bytes
        # a decoded JSON string is never longer in UTF-8 than its escaped form: text <= line <= limit
        head = F.substring("raw_bin", 1, 4 * C.RAW_PREVIEW_CHARS)  # >= RAW_PREVIEW_CHARS whole characters
        lines = _raw_stats(lines).select(
            C.SOURCE_FILE,
            C.RAW_HASH,
            C.RAW_BYTES,
            big.alias("_big"),
            F.when(big, head).otherwise(F.col("raw_bin")).alias("raw_bin"),
        )
        parsed = make_parse_json_udf(cfg.text_col, cfg.id_col)(F.when(~F.col("_big"), F.col("raw_bin")))
        keep = [C.SOURCE_FILE, "raw_bin", C.RAW_HASH, C.RAW_BYTES]
        too_large = F.format_string("line is %d bytes, over --max-doc-bytes %d", C.RAW_BYTES, F.lit(cfg.max_doc_bytes))
        return lines.select(*keep, "_big", parsed.alias("p")).select(
            *keep,
            "p." + C.GIVEN_ID,
            "p." + C.TEXT,
            "p." + C.EXTRA,
            F.when(F.col("_big"), F.lit("too_large")).otherwise(F.col("p." + C.REASON)).alias(C.REASON),
            F.when(F.col("_big"), too_large).otherwise(F.col("p." + C.DETAIL)).alias(C.DETAIL),
        )
    if cfg.format == "text":  # one document per file; invalid UTF-8 is checked in the JVM
        as_str = F.col("raw_bin").cast("string")
        valid = F.expr("is_valid_utf8(CAST(raw_bin AS STRING))")
        return _raw_stats(lines).select(
            C.SOURCE_FILE,
            "raw_bin",
            C.RAW_HASH,
            C.RAW_BYTES,
            F.lit(None).cast("string").alias(C.GIVEN_ID),
            F.when(valid, as_str).alias(C.TEXT),
            F.lit("{}").alias(C.EXTRA),
            F.when(~valid, F.lit("invalid_utf8")).alias(C.REASON),
            F.when(~valid, F.lit("file is not valid UTF-8")).alias(C.DETAIL),
        )
    fields = dict(table.dtypes)
    if cfg.text_col not in fields:
        raise cli.UsageError(f"--text-col {cfg.text_col!r} not in the input columns {sorted(fields)}")
    if fields[cfg.text_col] != "string":
        raise cli.UsageError(f"--text-col {cfg.text_col!r} has type {fields[cfg.text_col]}, expected string")
    others = [c for c in table.columns if c not in (cfg.text_col, cfg.id_col)]
    given_id = F.col(cfg.id_col).cast("string") if cfg.id_col in fields else F.lit(None).cast("string")
    extra = F.to_json(F.struct(*[F.col(f"`{c}`") for c in others])) if others else F.lit("{}")
    row_json = F.to_json(F.struct(*[F.col(f"`{c}`") for c in table.columns]))
    return _raw_stats(
        table.select(
            F.col("_metadata.file_path").alias(C.SOURCE_FILE),
            F.encode(row_json, "UTF-8").alias("raw_bin"),
            given_id.alias(C.GIVEN_ID),
            F.col(f"`{cfg.text_col}`").alias(C.TEXT),
            extra.alias(C.EXTRA),
            F.lit(None).cast("string").alias(C.REASON),
            F.lit(None).cast("string").alias(C.DETAIL),
        )
    )


def transform(parsed, cfg: IngestConfig, source: str, run_id: str, ingested_at: datetime):
    """Classify every parsed row: ``reason`` null = write to bronze, else quarantine.

    Adds ``doc_id`` (the given id, else ``h`` + 32 hex chars of sha256(source NUL text)),
    ``content_hash`` (sha256 of the text), text checks (``null_text``, ``empty_text``,
    ``too_large``) and duplicate ids within the input (``duplicate_record`` when the text is the
    same as the kept row's, ``duplicate_id`` when it differs; the kept row is the one with the
    smallest content hash, then file name, so the choice is deterministic).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    text = F.col(C.TEXT)
    checked = F.coalesce(
        F.col(C.REASON),
        F.when(text.isNull(), F.lit("null_text")),
        F.when(F.trim(F.regexp_replace(text, r"\s+", "")) == "", F.lit("empty_text")),
        F.when(F.octet_length(text) > cfg.max_doc_bytes, F.lit("too_large")),
    )
    hashed = F.sha2(F.concat_ws("\u0000", F.lit(source), text), 256)
    df = (
        parsed.withColumn(C.REASON, checked)
        .withColumn(
            C.DETAIL,
            F.when(
                (F.col(C.REASON) == "too_large") & text.isNotNull(),
                F.format_string("text is %d bytes", F.octet_length(text)),
            ).otherwise(F.col(C.DETAIL)),
        )
        .withColumn(C.CONTENT_HASH, F.when(F.col(C.REASON).isNull(), F.sha2(text, 256)))
        .withColumn(
            C.DOC_ID,
            F.when(
                F.col(C.REASON).isNull(),
                F.coalesce(F.col(C.GIVEN_ID), F.concat(F.lit("h"), F.substring(hashed, 1, 32))),
            ),
        )
    )
    by_id = Window.partitionBy(C.DOC_ID).orderBy(C.CONTENT_HASH, C.SOURCE_FILE, C.RAW_HASH)
    first_hash = F.first(C.CONTENT_HASH).over(by_id)
    dup = F.when(
        F.col(C.DOC_ID).isNotNull() & (F.row_number().over(by_id) > 1),
        F.when(F.col(C.CONTENT_HASH) == first_hash, F.lit("duplicate_record")).otherwise(F.lit("duplicate_id")),
    )
    return (
        df.withColumn(
            C.DETAIL,
            F.when(
                dup.isNotNull(), F.concat(F.lit("doc_id "), F.col(C.DOC_ID), F.lit(" seen earlier in the input"))
            ).otherwise(F.col(C.DETAIL)),
        )
        .withColumn(C.REASON, F.coalesce(F.col(C.REASON), dup))
        .withColumn(C.SOURCE, F.lit(source))
        .withColumn(C.RUN_ID, F.lit(run_id))
        .withColumn(C.INGESTED_AT, F.lit(ingested_at.replace(tzinfo=None)).cast("timestamp"))
    )


def split_existing(spark, classified, bronze_path: str):
    """Mark rows already in bronze: same id and hash -> ``unchanged``; same id, other text ->
    ``id_conflict_existing`` (quarantined, never overwriting what the table holds)."""
    from pyspark.sql import functions as F

    existing = (
        spark.read.format("delta")
        .load(bronze_path)
        .select(F.col(C.DOC_ID).alias("_eid"), F.col(C.CONTENT_HASH).alias("_ehash"))
    )
    joined = classified.join(existing, F.col(C.DOC_ID) == F.col("_eid"), "left")
    status = (
        F.when(F.col(C.REASON).isNotNull() | F.col("_eid").isNull(), F.col(C.REASON))
        .when(F.col("_ehash") == F.col(C.CONTENT_HASH), F.lit("unchanged"))
        .otherwise(F.lit("id_conflict_existing"))
    )
    detail = F.when(
        status == "id_conflict_existing",
        F.concat(F.lit("bronze already holds this doc_id with content_hash "), F.col("_ehash")),
    ).otherwise(F.col(C.DETAIL))
    return joined.withColumn(C.DETAIL, detail).withColumn(C.REASON, status).drop("_eid", "_ehash")


def load(spark, df, cfg: IngestConfig, record) -> None:
    """MERGE new documents into bronze and bad records into quarantine; fill ``record.counts``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    counts = {r[0]: r[1] for r in df.groupBy(C.REASON).count().collect()}
    good = df.filter(F.col(C.REASON).isNull()).select(
        C.DOC_ID, C.TEXT, C.SOURCE, C.SOURCE_FILE, C.CONTENT_HASH, C.EXTRA, C.INGESTED_AT, C.RUN_ID
    )
    written = merge_insert_new(spark, cfg.output, good, [C.DOC_ID, C.CONTENT_HASH])["inserted"]

    occurrence = F.row_number().over(Window.partitionBy(C.SOURCE_FILE, C.RAW_HASH, C.REASON).orderBy(C.DOC_ID))
    raw_text = F.substring(F.expr("make_valid_utf8(CAST(raw_bin AS STRING))"), 1, C.RAW_PREVIEW_CHARS)
    bad = df.filter(F.col(C.REASON).isNotNull() & (F.col(C.REASON) != "unchanged")).select(
        C.SOURCE,
        C.SOURCE_FILE,
        C.REASON,
        C.DETAIL,
        raw_text.alias(C.RAW),
        C.RAW_BYTES,
        C.RAW_HASH,
        occurrence.cast("int").alias(C.OCCURRENCE),
        C.DOC_ID,
        F.lit("ingest").alias(C.JOB),
        C.RUN_ID,
        C.INGESTED_AT,
    )
    merge_insert_new(spark, cfg.quarantine, bad, QUARANTINE_KEYS)

    quarantined = {k: v for k, v in counts.items() if k not in (None, "unchanged")}
    record.counts.update(
        read=sum(counts.values()),
        written=written,
        unchanged=counts.get("unchanged", 0),
        quarantined=sum(quarantined.values()),
        **{f"quarantined_{k}": v for k, v in sorted(quarantined.items())},
    )
    to_write = counts.get(None, 0)
    assert written == to_write, f"MERGE inserted {written} rows, expected {to_write}"


def run(spark, cfg: IngestConfig, record) -> None:
    from pyspark import StorageLevel

    source = cfg.source or default_source(cfg.input)
    parsed = extract(spark, cfg).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if cfg.format == "jsonl":  # a whole input without the text field is the user's mistake
            reasons = dict(parsed.groupBy(C.REASON).count().collect())
            if reasons and reasons.get("missing_text", 0) == sum(reasons.values()):
                raise cli.UsageError(f"no record has the field {cfg.text_col!r}: pass --text-col")
        ensure_table(spark, cfg.output, BRONZE_SCHEMA)
        ensure_table(spark, cfg.quarantine, QUARANTINE_SCHEMA)
        record.input_versions[cfg.output] = table_version(spark, cfg.output)
        classified = transform(parsed, cfg, source, record.run_id, record.started_at)
        classified = split_existing(spark, classified, cfg.output).persist(StorageLevel.MEMORY_AND_DISK)
        load(spark, classified, cfg, record)
        classified.unpersist()
    finally:
        parsed.unpersist()
    record.output_versions.update(
        {cfg.output: table_version(spark, cfg.output), cfg.quarantine: table_version(spark, cfg.quarantine)}
    )
    c = record.counts
    log.info(
        "ingest %s: read %d = written %d + unchanged %d + quarantined %d %s",
        cfg.input,
        c["read"],
        c["written"],
        c["unchanged"],
        c["quarantined"],
        {k: v for k, v in c.items() if k.startswith("quarantined_")},
    )
    print(json.dumps({"run_id": record.run_id, **c}, sort_keys=True))


def parse_args(argv):
    p = argparse.ArgumentParser(description="Ingest raw corpora into the Delta bronze table.")
    p.add_argument("--input", required=True, help="file, folder or glob")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--output", help="bronze table (default: LAKE/bronze)")
    p.add_argument("--quarantine", help="quarantine table (default: LAKE/quarantine)")
    p.add_argument("--text-col", default="text")
    p.add_argument("--id-col", default="id")
    p.add_argument("--source", default="", help="source name stored per row (default: input file name)")
    p.add_argument("--max-doc-bytes", type=int, default=IngestConfig.max_doc_bytes)
    cli.add_lake_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    args = parse_args(argv)
    try:
        cfg = IngestConfig(
            input=args.input,
            format=args.format,
            output=cli.resolve_table(args.output, args.lake, "bronze", "--output"),
            quarantine=cli.resolve_table(args.quarantine, args.lake, "quarantine", "--quarantine"),
            text_col=args.text_col,
            id_col=args.id_col,
            source=args.source,
            max_doc_bytes=args.max_doc_bytes,
        )
        runs = cli.resolve_table(args.runs, args.lake, "runs", "--runs")
    except ValueError as exc:
        log.error("%s", exc)
        return cli.EXIT_USAGE
    log.info("config: %s", asdict(cfg))
    spark = get_spark("lakelm-ingest")
    return cli.run_job("ingest", asdict(cfg), runs, lambda rec: run(spark, cfg, rec), spark)


if __name__ == "__main__":
    sys.exit(main())
