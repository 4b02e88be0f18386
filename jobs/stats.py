"""Per-stage statistics of the curation pipeline: a funnel table (Delta) and a funnel plot (PNG).

    spark-submit --properties-file spark-defaults.conf jobs/stats.py --lake lake \\
        [--output lake/stats] [--png lake/_report/funnel_stages.png]

Reads the ``runs`` table only (every job records its counts there), so it is cheap and never
rescans the data: all succeeded ``ingest`` runs (summed: each adds to bronze), then the latest
succeeded ``curate`` and ``dedup`` runs. Curation drops are grouped into stages by their reason's
rule family, in the order the chain applies them (a document stops at its first failing rule), so
for each stage ``in = kept + dropped`` and the next stage's ``in`` is this stage's ``kept``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from jobs.common import cli
from jobs.common.delta_io import delta_writer
from jobs.transforms.funnel import SCHEMA, collect_counts, funnel_rows, plot_funnel

log = logging.getLogger("jobs.stats")


def run(spark, runs_path: str, output: str, png: str | None, record) -> None:
    from jobs.common.delta_io import is_delta_table, table_version

    if not is_delta_table(spark, runs_path):
        raise cli.UsageError(f"--runs {runs_path} is not a Delta table: run the jobs first")
    job_counts, run_ids = collect_counts(spark, runs_path)
    rows = funnel_rows(job_counts, run_ids)
    if not rows:
        raise cli.UsageError(f"no succeeded ingest, curate or dedup run in {runs_path}")
    delta_writer(spark.createDataFrame(rows, SCHEMA)).mode("overwrite").option("overwriteSchema", "true").save(output)
    if png:
        import os

        os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
        plot_funnel(rows, png)
    record.counts.update(stages=len(rows))
    record.output_versions[output] = table_version(spark, output)
    for r in rows:
        log.info("%-7s %-18s in %8d kept %8d dropped %7d", r["job"], r["stage"], r["in"], r["kept"], r["dropped"])
    print(json.dumps({"run_id": record.run_id, "stages": len(rows), "output": output, "png": png}))


def build_parser() -> argparse.ArgumentParser:
    """Flags: the stats table and the plot; the runs table (``--runs``) is the input."""
    p = cli.job_parser("Per-stage funnel table and plot from the runs table.", config=False)
    p.add_argument("--output", help="stats table (default: LAKE/stats)")
    p.add_argument("--png", help="funnel plot to write (default: none)")
    return p


def build_config(args: argparse.Namespace) -> argparse.Namespace:
    """The flags with the stats and runs tables resolved against ``--lake``."""
    args.output = cli.resolve_table(args.output, args.lake, "stats", "--output")
    args.runs = cli.resolve_table(args.runs, args.lake, "runs", "--runs")
    return args


def main(argv: list[str] | None = None) -> int:
    def body(spark, args, record) -> None:
        run(spark, args.runs, args.output, args.png, record)

    return cli.run_main("stats", argv, build_parser(), build_config, body)


if __name__ == "__main__":
    sys.exit(main())
