"""The curation funnel from the runs table: drop reasons grouped into pipeline stages, one row per stage, and its plot.

Every job records its counts in the runs table; ``collect_counts`` reads them (all succeeded ingest runs summed,
the latest succeeded curate and dedup runs), ``funnel_rows`` groups them into stages so that for each stage
``in = kept + dropped`` and the next stage's ``in`` is this stage's ``kept``. Used by ``jobs/stats.py`` and the
run report.
"""

from __future__ import annotations

from jobs.common import plots

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
    labels = [f"{r['job']}:{r['stage']}" for r in rows]
    fig = plots.figure(8, 0.45 * len(rows) + 1.2)
    ax = fig.subplots()
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [r["kept"] for r in rows], color=plots.BLUE, label="kept")
    ax.barh(y, [r["dropped"] for r in rows], left=[r["kept"] for r in rows], color=plots.ORANGE, label="dropped")
    for yi, r in zip(y, rows):
        ax.text(r["in"], yi, f" {r['in']:,} in / {r['dropped']:,} dropped", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_xlabel("documents")
    ax.set_xlim(0, max([r["in"] for r in rows] + [1]) * 1.45)
    ax.set_title("curation funnel per stage")
    ax.legend(loc="lower right")
    plots.save(fig, path)


def collect_counts(spark, runs_path: str) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """Counts per job from the runs table: summed over succeeded ingest runs, latest succeeded curate/dedup."""
    from jobs.common.runs import read_runs

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
