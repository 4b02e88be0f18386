"""Incremental batch inference: score only the rows that are new or changed since the last run.

    spark-submit --properties-file spark-defaults.conf jobs/nightly_score.py \\
        --input lake/gold --model models/m1 --task score --output lake/scores \\
        [--text-col text] [--id-col doc_id] [--lake lake] [--config f.json] [scoring options as jobs/score.py]

The output table itself is the state: a row is scored when no output row of this model has the
same (doc_id, content_hash), or when that row is a model failure (``model_failed: ...``, retryable;
input errors such as ``empty_text`` are final). That covers new rows, changed texts, rows a failed
run never wrote and rows the model failed on, without trusting any bookmark. Changed texts and
retried rows replace their old output row (MERGE on (doc_id, model_hash), updating only when
content_hash differs or the old row failed in the model); scores of rows deleted from the input are
kept. Every run is recorded in the runs table with ``rows`` (input rows), ``unchanged`` (rows - scored;
duplicate ids count here), ``new``, ``changed``, ``retried``, ``scored``, ``errors`` (= ``input_errors``
+ ``model_errors``), ``inserted``, ``updated`` and ``merge_retries``. As in jobs/score.py, a run whose
model failures exceed ``--max-error-rate`` exits 1 after writing, and ``--expect-model-hash`` refuses
another artifact (exit 2).

Safe to rerun (a run with nothing to do commits nothing) and to run twice at once: both MERGEs read
the whole target, so Delta's optimistic concurrency makes the later one fail with a conflict; it is
retried once, reads the winner's rows and writes nothing twice. A second conflict fails the run with
exit code 1 and a ``failed`` run record.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict

from jobs import cli
from jobs.delta_io import merge_upsert_changed, retry_on_conflict, table_version
from jobs.score import (
    ScoreConfig,
    build_config,
    build_parser,
    check_error_rate,
    describe_model,
    ensure_output,
    find_todo,
    lineage_for,
    prepare,
    retryable,
    spread,
    tally,
    transform,
)
from jobs.spark import get_spark
from udfs import columns as C

log = logging.getLogger("jobs.nightly_score")


def run(spark, cfg: ScoreConfig, record) -> None:
    """The job body (``cli.run_job`` records it): find new/changed rows, score them, upsert, count."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    model = describe_model(cfg.model, cfg.expect_model_hash, cfg.task)
    version = table_version(spark, cfg.input)
    if version is None:
        raise cli.UsageError(f"--input {cfg.input} is not a Delta table")
    ensure_output(spark, cfg)
    record.input_versions[cfg.input] = version
    df = spark.read.format("delta").option("versionAsOf", version).load(cfg.input)
    todo = spread(spark, find_todo(spark, prepare(df, cfg), cfg, model[1], changed=True), cfg)
    lineage = lineage_for(cfg, model, version, record)
    scored = transform(todo, cfg, lineage, keep=("_status",)).persist(StorageLevel.MEMORY_AND_DISK)
    try:  # one pass scores everything and counts it; the MERGE then reads the cached rows
        stats = tally(scored)
        merged, retries = {"inserted": 0, "updated": 0}, 0
        if stats["scored"]:  # nothing to do: no MERGE, no commit
            source = scored.drop("_status")
            merged, retries = retry_on_conflict(
                lambda: merge_upsert_changed(
                    spark,
                    cfg.output,
                    source,
                    [C.DOC_ID, C.MODEL_HASH],
                    C.CONTENT_HASH,
                    replace_if=retryable(F.col(f"t.{C.ERROR}")),
                ),
                what="MERGE",
            )
    finally:
        scored.unpersist()
    n_rows = df.count()
    record.counts.update(
        rows=n_rows,
        unchanged=n_rows - stats["scored"],
        new=stats["new"],
        changed=stats["changed"],
        retried=stats["retried"],
        scored=stats["scored"],
        errors=stats["errors"],
        input_errors=stats["input_errors"],
        model_errors=stats["model_errors"],
        inserted=merged["inserted"],
        updated=merged["updated"],
        merge_retries=retries,
    )
    record.output_versions[cfg.output] = table_version(spark, cfg.output)
    record.extra.update(model_name=model[0], model_hash=model[1], task=cfg.task)
    log.info("nightly %s %s with %s: %s", cfg.task, cfg.input, model[0], record.counts)
    print(json.dumps({"run_id": record.run_id, **record.counts}, sort_keys=True))
    check_error_rate(record.counts, cfg.max_error_rate)


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    args = build_parser(__doc__.splitlines()[0], stream=False).parse_args(argv)
    try:
        cfg = build_config(args)
        runs = cli.resolve_table(args.runs, args.lake, "runs", "--runs")
    except (cli.UsageError, ValueError, OSError) as exc:
        log.error("%s", exc)
        return cli.EXIT_USAGE
    log.info("config: %s", asdict(cfg))
    spark = get_spark("lakelm-nightly-score")
    return cli.run_job("nightly_score", asdict(cfg), runs, lambda rec: run(spark, cfg, rec), spark)


if __name__ == "__main__":
    sys.exit(main())
