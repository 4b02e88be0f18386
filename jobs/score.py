"""Batch inference over a Delta table: score, embed or generate for every row with a model artifact.

    spark-submit --properties-file spark-defaults.conf jobs/score.py \\
        --input lake/gold --model models/m1 --task score --output lake/scores \\
        [--text-col text] [--id-col doc_id] [--lake lake] [--stream --checkpoint DIR] [--config f.json] \\
        [--token-budget N] [--precision fp32|bf16|auto] [--max-rows 64] [--max-len N] [--stride N] \\
        [--max-new-tokens 64] [--pooling mean|cls] [--normalize] [--max-error-rate 0.01] [--expect-model-hash HASH] ...

Reads the input at its latest Delta version and writes one row per (doc_id, model_hash) with the
task's outputs (see ``udfs.tasks``), ``content_hash`` of the text and lineage (model_name,
model_hash, input_table, input_version, run_id, scored_at). Rows already scored by this model are
skipped and the write is a MERGE on (doc_id, model_hash), so a rerun writes nothing and commits
nothing. Changed texts are rescored by ``jobs/nightly_score.py``, not here.

Errors: a row whose input is bad (``null_text``, ``empty_text``, ``encode_failed: ...``) is done, with
its reason. A row the model failed on (``model_failed: ...``: out of memory, a CUDA fault) is written
too, but it is retryable: the next run (and nightly_score) scores it again and replaces it. When more
than ``--max-error-rate`` (default 0.01) of the rows sent to the model failed in it, the run still
writes what it scored, is recorded as ``failed`` with its counts (``input_errors``, ``model_errors``,
``retried``), and exits 1. ``--expect-model-hash HASH`` refuses (exit 2) an artifact with another hash
before anything is loaded or written: the manifest check alone proves integrity, not identity.

``--stream``: the input is read as a Delta stream (append-only tables) and every micro-batch is
scored and MERGEd by ``foreachBatch`` with ``trigger(availableNow=True)``: everything new since the
checkpoint is processed, then the job ends. The counts and run record are those of the whole run;
``input_version`` is the table version when the run started (what availableNow reads up to).
Changes other than appends make the Delta stream fail: score such tables with nightly_score. Rows an
earlier run failed on in the model are not in the stream again; a streaming run rescores them first
(from the input at that version), then processes the stream.
"""

from __future__ import annotations

import sys

from jobs.common import cli
from jobs.transforms import scoring_table as st
from udfs import columns as C

COUNTS = ("scored", "errors", "input_errors", "model_errors", "retried")  # always in the run record


def score_new(spark, rows, cfg: st.ScoreConfig, lineage: dict, counts: dict) -> None:
    """Score the rows this model has not scored yet, or failed on, and MERGE them; add to ``counts``."""
    todo = st.find_todo(spark, rows, cfg, lineage[C.MODEL_HASH])
    stats, merged, retries = st.score_and_merge(spark, todo, cfg, lineage)
    for key, n in (
        *((k, stats[k]) for k in COUNTS),
        ("written", merged["inserted"] + merged["updated"]),
        ("replaced", merged["updated"]),
        ("merge_retries", retries),
    ):
        counts[key] = counts.get(key, 0) + n


def run(spark, cfg: st.ScoreConfig, record) -> None:
    """The job body (``cli.run_job`` records it): check the model and tables, score, MERGE, count."""
    model, version, lineage = st.open_tables(spark, cfg, record)
    counts = record.counts
    if cfg.stream:  # rows earlier runs failed on are behind the checkpoint: rescore them from the table first
        from pyspark.sql import functions as F

        failed = (
            spark.read.format("delta")
            .load(cfg.output)
            .filter(F.col(C.MODEL_HASH) == model[1])
            .filter(st.retryable(F.col(C.ERROR)))
            .select(C.DOC_ID)
        )
        if not failed.isEmpty():  # else no full read of the input
            df = spark.read.format("delta").option("versionAsOf", version).load(cfg.input)
            score_new(spark, st.prepare(df, cfg).join(failed, C.DOC_ID, "left_semi"), cfg, lineage, counts)

        def each_batch(batch, epoch_id: int) -> None:
            counts["rows"] = counts.get("rows", 0) + batch.count()
            score_new(spark, st.prepare(batch, cfg), cfg, lineage, counts)

        source = spark.readStream.format("delta").load(cfg.input)
        query = (
            source.writeStream.foreachBatch(each_batch)
            .option("checkpointLocation", cfg.checkpoint)
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
    else:
        df = spark.read.format("delta").option("versionAsOf", version).load(cfg.input)
        counts["rows"] = df.count()
        score_new(spark, st.prepare(df, cfg), cfg, lineage, counts)
    for key in COUNTS:
        counts.setdefault(key, 0)
    st.finish(spark, cfg, model, record, "score")


def main(argv: list[str] | None = None) -> int:
    parser = st.build_parser(__doc__.splitlines()[0])
    return cli.run_main("score", argv, parser, st.build_config, run)


if __name__ == "__main__":
    sys.exit(main())
