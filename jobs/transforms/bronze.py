"""Bronze: raw files read into rows, each row classified (document or quarantine reason), merged into Delta.

The pieces of ``jobs/ingest.py``: ``extract`` reads any supported format into one row per raw record (its bytes,
hash, parsed text or the reason it could not be parsed), ``transform`` assigns ids and hashes and marks bad and
duplicate rows, ``split_existing`` marks rows bronze already holds, ``load`` MERGEs documents into bronze and
the rest into quarantine and counts them. Every row read ends in exactly one of those places.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from jobs.common import cli
from jobs.common.delta_io import delta_writer, merge_insert_new
from udfs import columns as C

FORMATS = ("jsonl", "parquet", "text", "csv", "warc", "arc")
ARCHIVE_FORMATS = ("warc", "arc")  # web archives: read by udfs/warc.py, one task per file
BRONZE_SCHEMA = (
    f"{C.DOC_ID} string not null, {C.TEXT} string, {C.SOURCE} string, {C.SOURCE_FILE} string, "
    f"{C.CONTENT_HASH} string, {C.EXTRA} string, {C.INGESTED_AT} timestamp, {C.RUN_ID} string"
)
# bronze columns web archives add (null for rows of other formats); added to an older table on first use
ARCHIVE_SCHEMA = (
    f"{C.URL} string, {C.DOMAIN} string, {C.WARC_RECORD_ID} string, {C.WARC_DATE} timestamp, "
    f"{C.HTTP_STATUS} int, {C.CONTENT_TYPE} string"
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


def _list_files(spark, pattern: str) -> list[str]:
    """The files ``--input`` names (a file, folder or glob), as Spark lists them; no file content is read."""
    from pyspark.sql.utils import AnalysisException

    try:
        rows = spark.read.format("binaryFile").load(pattern).select("path").collect()
    except AnalysisException as exc:
        raise cli.UsageError(f"cannot read --input {pattern!r}: {exc}") from exc
    if not rows:
        raise cli.UsageError(f"cannot read --input {pattern!r}: it matches no files")
    return sorted(r.path for r in rows)


def _per_file(spark, paths: list[str], fn, schema: str):
    """``fn`` (a mapInPandas function over file indexes) run as one task per file: no file in driver memory."""
    return spark.range(0, len(paths), 1, len(paths)).mapInPandas(fn, schema)


def _compressed_lines(spark, cfg: IngestConfig):
    """Lines of ``.gz``/``.bz2``/``.zst`` line files, decompressed as streams in Python so that a broken stream
    quarantines only its unread tail (Spark's codecs fail the task, or drop the whole file). Plain files the
    pattern also matches are read by Spark as usual."""
    from pyspark.sql import functions as F

    from udfs.ingest import LINE_ROW_SCHEMA, codec_of, make_read_lines_fn

    paths = _list_files(spark, cfg.input)
    packed = [p for p in paths if codec_of(p)]
    plain = [p for p in paths if not codec_of(p)]
    parts = []
    if packed:
        rows = _per_file(spark, packed, make_read_lines_fn(packed, cfg.max_doc_bytes), LINE_ROW_SCHEMA)
        parts.append(
            rows.select(
                C.SOURCE_FILE,
                "raw_bin",
                F.coalesce(C.RAW_HASH, F.sha2("raw_bin", 256)).alias(C.RAW_HASH),
                F.coalesce(C.RAW_BYTES, F.octet_length("raw_bin").cast("bigint")).alias(C.RAW_BYTES),
                F.col(C.REASON).alias("_pre_reason"),
                F.col(C.DETAIL).alias("_pre_detail"),
            )
        )
    if plain:
        null = F.lit(None).cast("string")
        text = spark.read.text(plain).select(
            F.col("_metadata.file_path").alias(C.SOURCE_FILE), F.col("value").cast("binary").alias("raw_bin")
        )
        parts.append(_raw_stats(text).select("*", null.alias("_pre_reason"), null.alias("_pre_detail")))
    return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])


def _extract_archives(spark, cfg: IngestConfig):
    """One row per record of the WARC/ARC files (``udfs/warc.py``), one task per file, with ``skip`` set for
    records that are not documents and ``reason`` for damaged ones."""
    from pyspark.sql import functions as F

    from udfs.ingest import ARCHIVE_ROW_SCHEMA, make_read_archives_fn
    from udfs.warc import ArchiveConfig

    paths = _list_files(spark, cfg.input)
    acfg = ArchiveConfig(format=cfg.format, max_record_bytes=cfg.max_doc_bytes)
    rows = _per_file(spark, paths, make_read_archives_fn(paths, acfg), ARCHIVE_ROW_SCHEMA)
    return rows.withColumn(C.WARC_DATE, F.expr(f"try_cast({C.WARC_DATE} AS TIMESTAMP)"))


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

    from udfs.ingest import codec_of, make_parse_json_udf

    if cfg.format in ARCHIVE_FORMATS:
        return _extract_archives(spark, cfg)
    try:
        if cfg.format == "jsonl" and codec_of(cfg.input):
            lines = _compressed_lines(spark, cfg)
        elif cfg.format in ("jsonl", "text"):
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
        if "_pre_reason" not in lines.columns:  # plain files: Spark hashes and measures each line
            null = F.lit(None).cast("string")
            lines = _raw_stats(lines).select("*", null.alias("_pre_reason"), null.alias("_pre_detail"))
        pre = F.col("_pre_reason")
        big = pre.isNull() & (F.col(C.RAW_BYTES) > cfg.max_doc_bytes)
        # a decoded JSON string is never longer in UTF-8 than its escaped form: text <= line <= limit
        head = F.substring("raw_bin", 1, 4 * C.RAW_PREVIEW_CHARS)  # >= RAW_PREVIEW_CHARS whole characters
        lines = lines.select(
            C.SOURCE_FILE,
            C.RAW_HASH,
            C.RAW_BYTES,
            big.alias("_big"),
            "_pre_reason",
            "_pre_detail",
            F.when(big, head).otherwise(F.col("raw_bin")).alias("raw_bin"),
        )
        parsed = make_parse_json_udf(cfg.text_col, cfg.id_col)(F.when(~F.col("_big") & pre.isNull(), F.col("raw_bin")))
        keep = [C.SOURCE_FILE, "raw_bin", C.RAW_HASH, C.RAW_BYTES]
        too_large = F.format_string("line is %d bytes, over --max-doc-bytes %d", C.RAW_BYTES, F.lit(cfg.max_doc_bytes))
        return lines.select(*keep, "_big", "_pre_reason", "_pre_detail", parsed.alias("p")).select(
            *keep,
            "p." + C.GIVEN_ID,
            "p." + C.TEXT,
            "p." + C.EXTRA,
            F.coalesce(pre, F.when(F.col("_big"), F.lit("too_large")), F.col("p." + C.REASON)).alias(C.REASON),
            F.coalesce(F.col("_pre_detail"), F.when(F.col("_big"), too_large), F.col("p." + C.DETAIL)).alias(C.DETAIL),
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
    # the table's columns, in its order: archive columns are null for other formats' rows
    target = spark.read.format("delta").load(cfg.output).schema
    good = df.filter(F.col(C.REASON).isNull()).select(
        *[F.col(f.name) if f.name in df.columns else F.lit(None).cast(f.dataType).alias(f.name) for f in target]
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


def add_columns(spark, path: str, ddl: str) -> None:
    """Add the columns of ``ddl`` that the Delta table at ``path`` lacks (a schema-only commit; rows keep null)."""
    from pyspark.sql.types import StructType, _parse_datatype_string

    table = spark.read.format("delta").load(path).schema
    missing = [f for f in _parse_datatype_string(ddl).fields if f.name not in table.fieldNames()]
    if missing:
        empty = spark.createDataFrame([], StructType(table.fields + missing))
        delta_writer(empty).mode("append").option("mergeSchema", "true").save(path)


def skipped_records(parsed) -> tuple[dict, object]:
    """Archive records that are not documents, counted per reason, and the rows that go on."""
    from pyspark.sql import functions as F

    skipped = {r[0]: r[1] for r in parsed.filter(F.col(C.SKIP).isNotNull()).groupBy(C.SKIP).count().collect()}
    return skipped, parsed.filter(F.col(C.SKIP).isNull()).drop(C.SKIP)
