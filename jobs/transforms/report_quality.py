"""The run report's quality section: the classifier's ``quality_score`` distribution per source.

Read from ``silver`` and curate's rows of ``rejected`` (curate writes the score on both when it runs with
``--quality-model``): one row per source with the documents scored, how many an earlier stage had already
dropped (heuristics, URL filter, decontamination), how many the classifier dropped (``quality_low``), how
many survived both, and the score's quantiles over every scored document of the source. Lakes curated
without a classifier get one line saying so.
"""

from __future__ import annotations

import pandas as pd

QUANTILES = (0.1, 0.5, 0.9)


def quality_by_source(rows: pd.DataFrame, quality_low: str) -> pd.DataFrame:
    """Per-source counts and quantiles of ``quality_score``.

    Args:
        rows: ``source``, ``quality_score`` and ``drop_reason`` (None in silver) of every curated document.
        quality_low: the classifier's drop reason.

    Returns:
        One row per source (sorted): ``scored``, ``kept``, ``quality_low``, ``dropped_before`` and one
        ``q<percent>`` column per `QUANTILES` entry, over the documents with a score.
    """
    scored = rows[rows["quality_score"].notna()]
    out = []
    for source, g in scored.groupby("source", sort=True, dropna=False):
        reason = g["drop_reason"]
        row = {
            "source": source,
            "scored": len(g),
            "kept": int(reason.isna().sum()),
            "quality_low": int((reason == quality_low).sum()),
            "dropped_before": int((reason.notna() & (reason != quality_low)).sum()),
        }
        row.update({f"q{round(q * 100)}": float(g["quality_score"].quantile(q)) for q in QUANTILES})
        out.append(row)
    cols = ["source", "scored", "kept", "quality_low", "dropped_before"] + [f"q{round(q * 100)}" for q in QUANTILES]
    return pd.DataFrame(out, columns=cols)


def quality_markdown(table: pd.DataFrame) -> list[str]:
    """Markdown lines of the section from `quality_by_source`'s frame."""
    if table.empty:
        return ["curate ran without a quality classifier (`--quality-model`): no `quality_score` in this lake."]
    qs = [f"q{round(q * 100)}" for q in QUANTILES]
    head = "| source | scored | kept | quality_low | dropped before | " + " | ".join(f"score {q}" for q in qs) + " |"
    md = [
        "`quality_score` of every curated document (higher = closer to the classifier's reference text), per "
        "source: documents scored, kept by every stage, dropped by the classifier (`quality_low`), dropped "
        "earlier by another stage, and the score's 10th, 50th and 90th percentiles.",
        "",
        head,
        "|---" * (5 + len(qs)) + "|",
    ]
    for r in table.itertuples(index=False):
        cells = [str(r.source), str(r.scored), str(r.kept), str(r.quality_low), str(r.dropped_before)]
        md.append("| " + " | ".join(cells + [f"{getattr(r, q):.3f}" for q in qs]) + " |")
    return md


def quality_section(spark, silver: str, rejected: str) -> list[str]:
    """The section for a lake's ``silver`` and ``rejected`` tables, read with Spark."""
    from pyspark.sql import functions as F

    from jobs.common.delta_io import table_version
    from jobs.transforms.quality import QUALITY_LOW
    from udfs import columns as C

    frames = []
    for path in (silver, rejected):
        if table_version(spark, path) is None:
            continue
        df = spark.read.format("delta").load(path)
        if C.QUALITY_SCORE not in df.columns:
            continue
        if C.JOB in df.columns:  # rejected: only curate's rows (dedup's are silver documents, already counted)
            df = df.filter(F.col(C.JOB) == "curate")
        reason = F.col(C.DROP_REASON) if C.DROP_REASON in df.columns else F.lit(None).cast("string")
        frames.append(df.select(C.SOURCE, C.QUALITY_SCORE, reason.alias(C.DROP_REASON)).toPandas())
    rows = pd.concat(frames) if frames else pd.DataFrame(columns=[C.SOURCE, C.QUALITY_SCORE, C.DROP_REASON])
    return quality_markdown(quality_by_source(rows, QUALITY_LOW))
