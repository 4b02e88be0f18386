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

from jobs import cli
from jobs.delta_io import delta_writer

log = logging.getLogger("jobs.stats")

# (job, stage, reason prefixes) in pipeline order. A reason belongs to the first stage whose prefix
# it starts with; "gopher_rep_" must come before the Gopher quality stage's "gopher_".
STAGES = (
    ("ingest", "ingest", ("",)),
    ("curate", "normalize", ("empty_text", "html_")),
    ("curate", "langid", ("lang_",)),
    ("curate", "gopher_repetition", ("gopher_rep_",)),
    ("curate", "gopher_quality", ("gopher_",)),
    ("curate", "c4", ("c4_",)),
    ("curate", "fineweb", ("fineweb_",)),
    ("curate", "other", ("",)),
    ("dedup", "dedup_exact", ("dedup_exact",)),
    ("dedup", "dedup_fuzzy", ("dedup_fuzzy",)),
    ("dedup", "other", ("",)),
)

SCHEMA = (
    "step int, job string, stage string, run_id string, `in` bigint, kept bigint, dropped bigint, "
    "reasons map<string,bigint>"
)


def stage_of(job: str, reason: str) -> str:
    """The stage of ``job`` that produced drop ``reason`` (``"other"`` for an unknown family).

    Example:
        >>> stage_of("curate", "gopher_rep_top_2_gram"), stage_of("curate", "gopher_short_doc")
        ('gopher_repetition', 'gopher_quality')
    """
    for stage_job, stage, prefixes in STAGES:
        if stage_job == job and any(reason.startswith(p) for p in prefixes):
            return stage
    return "other"


def funnel_rows(job_counts: dict[str, dict[str, int]], run_ids: dict[str, str] | None = None) -> list[dict]:
    """Per-stage rows from each job's recorded counts.

    Args:
        job_counts: job name -> its counts map as the runs table holds it: ``ingest`` has ``read``,
            ``quarantined_<reason>``; ``curate`` and ``dedup`` have ``total`` and ``dropped_<reason>``.
            A missing job contributes no rows.
        run_ids: job name -> the run id(s) the counts came from (recorded in each row); None = "".

    Returns:
        One dict per stage that exists for the jobs given, in pipeline order, with ``step``, ``job``,
        ``stage``, ``run_id``, ``in``, ``kept``, ``dropped`` and ``reasons`` (reason -> documents).
        Within a job, ``in`` of a stage is ``kept`` of the one before; stages with no drops are kept so
        the funnel shows every step the documents went through.

    Example:
        >>> counts = {"total": 10, "dropped_gopher_short_doc": 3, "dropped_c4_too_few_sentences": 2}
        >>> rows = funnel_rows({"curate": counts})
        >>> [(r["stage"], r["in"], r["dropped"]) for r in rows if r["dropped"]]
        [('gopher_quality', 10, 3), ('c4', 7, 2)]
    """
    run_ids = run_ids or {}
    rows: list[dict] = []
    for job in dict.fromkeys(j for j, _, _ in STAGES):
        counts = job_counts.get(job)
        if counts is None:
            continue
        prefix = "quarantined_" if job == "ingest" else "dropped_"
        total = counts.get("read" if job == "ingest" else "total", 0)
        by_stage: dict[str, dict[str, int]] = {}
        for key, n in counts.items():
            if key.startswith(prefix) and n:
                reason = key[len(prefix) :]
                by_stage.setdefault(stage_of(job, reason), {})[reason] = n
        current = total
        for stage_job, stage, _ in STAGES:
            if stage_job != job or (stage == "other" and stage not in by_stage):
                continue
            reasons = by_stage.get(stage, {})
            dropped = sum(reasons.values())
            rows.append(
                {
                    "step": len(rows),
                    "job": job,
                    "stage": stage,
                    "run_id": run_ids.get(job, ""),
                    "in": current,
                    "kept": current - dropped,
                    "dropped": dropped,
                    "reasons": reasons,
                }
            )
            current -= dropped
    return rows


def plot_funnel(rows: list[dict], path: str) -> None:
    """Horizontal bars of the documents entering each stage, the dropped part shaded, to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['job']}:{r['stage']}" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [r["kept"] for r in rows], color="#4c72b0", label="kept")
    ax.barh(y, [r["dropped"] for r in rows], left=[r["kept"] for r in rows], color="#dd8452", label="dropped")
    for yi, r in zip(y, rows):
        ax.text(r["in"], yi, f" {r['in']:,} in / {r['dropped']:,} dropped", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_xlabel("documents")
    ax.set_xlim(0, max([r["in"] for r in rows] + [1]) * 1.45)
    ax.set_title("curation funnel per stage")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def collect_counts(spark, runs_path: str) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """Counts per job from the runs table: summed over succeeded ingest runs, latest succeeded curate/dedup."""
    from jobs.runs import read_runs

    job_counts: dict[str, dict[str, int]] = {}
    run_ids: dict[str, str] = {}
    succeeded = read_runs(spark, runs_path).filter("status = 'succeeded'")
    ingest_runs = succeeded.filter("job = 'ingest'").select("run_id", "counts").collect()
    if ingest_runs:
        total: dict[str, int] = {}
        for r in ingest_runs:
            for k, v in r.counts.items():
                total[k] = total.get(k, 0) + int(v)
        job_counts["ingest"] = total
        run_ids["ingest"] = ",".join(sorted(r.run_id for r in ingest_runs))
    for job in ("curate", "dedup"):
        latest = succeeded.filter(f"job = '{job}'").select("run_id", "counts").first()  # job: a constant above
        if latest is not None:
            job_counts[job] = {k: int(v) for k, v in latest.counts.items()}
            run_ids[job] = latest.run_id
    return job_counts, run_ids


def run(spark, runs_path: str, output: str, png: str | None, record) -> None:
    from jobs.delta_io import is_delta_table, table_version

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
