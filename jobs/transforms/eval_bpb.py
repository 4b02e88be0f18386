"""Bits per byte of a model on a text table: the evaluation job's ``--bpb-table`` measure.

Every row of the table's text column (a pinned Delta version) is scored by the score UDF
(``udfs.inference.make_score_udf``: per-worker model cache, length-bucketed micro-batches, per-row
errors; long texts in sliding windows, each text's first token scored after the document-start prefix).
The measure is the whole table's, not a mean of rows: ``bits_per_byte`` = sum of the rows' negative
log-likelihoods (nats) / ln 2 / sum of their UTF-8 bytes, over the rows that scored; rows that did not
(null or empty text, a model failure) are counted in ``n_errors`` and left out of both sums. Tokenizers
differ, bytes do not: bits per byte compares models with different vocabularies.
"""

from __future__ import annotations

import math

BPB_SCHEMA = (
    "bpb_table string, bpb_table_version long, bpb_column string, n_rows long, n_scored long, n_errors long, "
    "n_bytes long, n_tokens long, nll_nats double, bits_per_byte double, nll_per_token double"
)


def check_table(spark, table: str, column: str) -> int:
    """The latest version of ``table``, after checking it is a Delta table with a column ``column``.

    Raises:
        ValueError: it is not, with the reason.
    """
    from jobs.common.delta_io import table_version

    version = table_version(spark, table)
    if version is None:
        raise ValueError(f"--bpb-table {table} is not a Delta table")
    columns = spark.read.format("delta").option("versionAsOf", version).load(table).columns
    if column not in columns:
        raise ValueError(f"--bpb-table {table} has no column {column!r} (columns: {columns})")
    return version


def bits_per_byte(
    spark, table: str, column: str, model: str, model_hash: str, *, limit: int | None = None, partitions: int = 0
) -> dict:
    """Score a text table and return its bits per byte (the fields of `BPB_SCHEMA`).

    Args:
        spark: the session.
        table: Delta table path; its latest version is read (and recorded).
        column: the text column.
        model: artifact or Hugging Face folder, readable by every executor.
        model_hash: the model's hash (the UDF refuses any other model).
        limit: score only the first N rows; None = all.
        partitions: tasks that score (0 = the session's default parallelism).

    Raises:
        ValueError: ``table`` is not a Delta table or has no column ``column``.
    """
    from pyspark.sql import functions as F

    from jobs.common.spark import default_parallelism
    from udfs.inference import make_score_udf

    version = check_table(spark, table, column)
    df = spark.read.format("delta").option("versionAsOf", version).load(table)
    rows = df.select(F.col(column).cast("string").alias("text"))
    if limit is not None:
        rows = rows.limit(limit)
    rows = rows.repartition(partitions or default_parallelism(spark))
    scored = rows.select(make_score_udf(model, expected_hash=model_hash)("text").alias("s"), "text")
    ok = F.col("s.error").isNull()
    agg = scored.agg(
        F.count("*").alias("n_rows"),
        F.sum(F.when(ok, 1).otherwise(0)).alias("n_scored"),
        F.sum(F.when(ok, -F.col("s.sum_logprob"))).alias("nll"),
        F.sum(F.when(ok, F.octet_length("text"))).alias("bytes"),
        F.sum(F.when(ok, F.col("s.n_tokens"))).alias("tokens"),
    ).first()
    n_bytes, n_tokens, nll = int(agg["bytes"] or 0), int(agg["tokens"] or 0), float(agg["nll"] or 0.0)
    return {
        "bpb_table": table,
        "bpb_table_version": version,
        "bpb_column": column,
        "n_rows": int(agg["n_rows"]),
        "n_scored": int(agg["n_scored"] or 0),
        "n_errors": int(agg["n_rows"]) - int(agg["n_scored"] or 0),
        "n_bytes": n_bytes,
        "n_tokens": n_tokens,
        "nll_nats": nll,
        "bits_per_byte": nll / math.log(2) / n_bytes if n_bytes else float("nan"),
        "nll_per_token": nll / n_tokens if n_tokens else float("nan"),
    }


def record_bits_per_byte(spark, cfg, model_name: str, model_hash: str, record) -> dict:
    """Bits per byte on ``cfg.bpb_table`` (an ``EvaluateConfig``), appended to ``OUTPUT/bpb`` (one row per run,
    with the model and run), recorded in the run's counts and versions; returns the summary's fields.

    Raises:
        cli.UsageError: the table is not a Delta table or lacks the column.
    """
    import os

    from jobs.common import cli
    from jobs.common.delta_io import delta_writer, table_version
    from udfs import columns as C

    try:
        bpb = bits_per_byte(
            spark, cfg.bpb_table, cfg.bpb_column, cfg.model, model_hash, limit=cfg.bpb_limit, partitions=cfg.partitions
        )
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from exc
    row = {**bpb, C.MODEL_NAME: model_name, C.MODEL_HASH: model_hash, C.RUN_ID: record.run_id}
    row["evaluated_at"] = record.started_at.replace(tzinfo=None)
    schema = f"{BPB_SCHEMA}, {C.MODEL_NAME} string, {C.MODEL_HASH} string, {C.RUN_ID} string, evaluated_at timestamp"
    cols = [f.split(" ")[0] for f in schema.split(", ")]
    path = os.path.join(cfg.output, "bpb")
    delta_writer(spark.createDataFrame([tuple(row[c] for c in cols)], schema)).mode("append").save(path)
    record.input_versions[cfg.bpb_table] = bpb["bpb_table_version"]
    record.output_versions[path] = table_version(spark, path)
    record.counts.update(bpb_rows=bpb["n_rows"], bpb_errors=bpb["n_errors"])
    return {k: bpb[k] for k in ("bpb_table", "bpb_table_version", "n_rows", "n_errors", "bits_per_byte")}
