"""CLI of ingestion (parsing: udfs/ingest.py): raw corpora into the Delta bronze table, bad records to quarantine.

    spark-submit --properties-file spark-defaults.conf jobs/ingest.py \\
        --input 'corpus/*.jsonl' --format jsonl --output lake/bronze [--quarantine lake/quarantine] \\
        [--text-col text] [--id-col id] [--source NAME] [--max-doc-bytes 16777216] [--lake lake]

Every record read ends in exactly one place: ``read = written + unchanged + quarantined``, where
``unchanged`` are records already in the table from an earlier run (a rerun writes nothing). The
counts per reason are printed and appended to the runs table.

``--format warc`` (WARC, WARC.gz, WET) and ``--format arc`` read web archives one task per file
(``udfs/warc.py``): response records with HTML or text become documents with ``url, domain,
warc_record_id, warc_date, http_status, content_type`` columns, and the counts add
``records = documents + skipped + quarantined`` (``documents = written + unchanged``; skipped records,
such as requests or images, are counted per reason and stored nowhere else). ``--format jsonl`` with
an ``--input`` ending in ``.gz``, ``.bz2`` or ``.zst`` decompresses each file as a stream, so a broken
stream quarantines only its unread tail.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from jobs.common import cli
from jobs.common.delta_io import ensure_table, table_version
from jobs.transforms.bronze import (
    ARCHIVE_FORMATS,
    ARCHIVE_SCHEMA,
    BRONZE_SCHEMA,
    FORMATS,
    QUARANTINE_SCHEMA,
    IngestConfig,
    add_columns,
    default_source,
    extract,
    load,
    skipped_records,
    split_existing,
    transform,
)
from udfs import columns as C

log = logging.getLogger("jobs.ingest")


def run(spark, cfg: IngestConfig, record) -> None:
    from pyspark import StorageLevel

    source = cfg.source or default_source(cfg.input)
    parsed = extract(spark, cfg).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if cfg.format == "jsonl":  # a whole input without the text field is the user's mistake
            reasons = dict(parsed.groupBy(C.REASON).count().collect())
            if reasons and reasons.get("missing_text", 0) == sum(reasons.values()):
                raise cli.UsageError(f"no record has the field {cfg.text_col!r}: pass --text-col")
        archive = cfg.format in ARCHIVE_FORMATS
        skipped, docs = skipped_records(parsed) if archive else ({}, parsed)
        ensure_table(spark, cfg.output, f"{BRONZE_SCHEMA}, {ARCHIVE_SCHEMA}" if archive else BRONZE_SCHEMA)
        if archive:
            add_columns(spark, cfg.output, ARCHIVE_SCHEMA)
        ensure_table(spark, cfg.quarantine, QUARANTINE_SCHEMA)
        record.input_versions[cfg.output] = table_version(spark, cfg.output)
        classified = transform(docs, cfg, source, record.run_id, record.started_at)
        classified = split_existing(spark, classified, cfg.output).persist(StorageLevel.MEMORY_AND_DISK)
        load(spark, classified, cfg, record)
        classified.unpersist()
    finally:
        parsed.unpersist()
    if archive:  # records = documents + skipped + quarantined
        c = record.counts
        c.update(
            records=c["read"] + sum(skipped.values()),
            documents=c["written"] + c["unchanged"],
            skipped=sum(skipped.values()),
            **{f"skipped_{k}": v for k, v in sorted(skipped.items())},
        )
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


def build_parser() -> argparse.ArgumentParser:
    """Flags map 1:1 onto ``IngestConfig`` fields (``--config`` supplies base values)."""
    p = cli.job_parser("Ingest raw corpora into the Delta bronze table.", IngestConfig)
    p.add_argument("--input", help="file, folder or glob (required)")
    p.add_argument("--format", choices=FORMATS, help="how to read the input (required)")
    p.add_argument("--output", help="bronze table (default: LAKE/bronze)")
    p.add_argument("--quarantine", help="quarantine table (default: LAKE/quarantine)")
    p.add_argument("--text-col", help="field or column holding the text")
    p.add_argument("--id-col", help="field or column holding the record id")
    p.add_argument("--source", help="source name stored per row (default: input file name)")
    p.add_argument("--max-doc-bytes", type=int, help="larger texts are quarantined as too_large")
    return p


def build_config(args: argparse.Namespace) -> IngestConfig:
    """IngestConfig from the flags over ``--config``; table paths from either, else the lake's."""
    tables = {"output": "bronze", "quarantine": "quarantine"}
    cfg = cli.build_config(args, IngestConfig, tables=tables, required=("input", "format"))
    if cfg.format not in FORMATS:
        raise cli.UsageError(f"--format must be one of {FORMATS}, got {cfg.format!r}")
    if cfg.max_doc_bytes < 1:
        raise cli.UsageError(f"--max-doc-bytes must be >= 1, got {cfg.max_doc_bytes}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    return cli.run_main("ingest", argv, build_parser(), build_config, run)


if __name__ == "__main__":
    sys.exit(main())
