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

import sys

from jobs.common import cli
from jobs.transforms import scoring_table as st


def run(spark, cfg: st.ScoreConfig, record) -> None:
    """The job body (``cli.run_job`` records it): find new/changed rows, score them, upsert, count."""
    model, version, lineage = st.open_tables(spark, cfg, record)
    df = spark.read.format("delta").option("versionAsOf", version).load(cfg.input)
    todo = st.find_todo(spark, st.prepare(df, cfg), cfg, model[1], changed=True)
    stats, merged, retries = st.score_and_merge(spark, todo, cfg, lineage, upsert=True)
    n_rows = df.count()
    record.counts.update(
        rows=n_rows,
        unchanged=n_rows - stats["scored"],
        **{k: stats[k] for k in ("new", "changed", "retried", "scored", "errors", "input_errors", "model_errors")},
        inserted=merged["inserted"],
        updated=merged["updated"],
        merge_retries=retries,
    )
    st.finish(spark, cfg, model, record, "nightly")


def main(argv: list[str] | None = None) -> int:
    parser = st.build_parser(__doc__.splitlines()[0], stream=False)
    return cli.run_main("nightly_score", argv, parser, st.build_config, run)


if __name__ == "__main__":
    sys.exit(main())
