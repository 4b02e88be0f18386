"""The run report's content: each section (funnel, drop reasons, clusters, tokens, loss, scores, samples,
lineage) read from the lake's tables and runs table, written as Markdown + PNGs (jobs/report.py is the CLI)."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

from jobs.common import plots
from jobs.common.lake import table_path

log = logging.getLogger(__name__)


def _plot_bars(labels, values, title, path, horizontal=True):
    fig = plots.figure(8, max(3, 0.35 * len(labels) + 1))
    ax = fig.subplots()
    if horizontal:
        ax.barh(labels[::-1], values[::-1], color=plots.BLUE)
    else:
        ax.bar(labels, values, color=plots.BLUE)
    ax.set_title(title)
    plots.save(fig, path)


def _exists(spark, path):
    from jobs.common.delta_io import is_delta_table

    return is_delta_table(spark, path)


def _latest_run(spark, lake, job):
    from jobs.common.runs import read_runs

    runs = table_path(lake, "runs")
    if not _exists(spark, runs):
        return None
    return read_runs(spark, runs, job=job).filter("status = 'succeeded'").first()


VAL_DOCS_PER_SOURCE = 64  # documents per (source, split) the per-source loss evaluates (driver-side, bounded)
VAL_TOKENS_PER_SOURCE = 32_768  # tokens per (source, split) evaluated: seconds on a CPU for the demo's model


def _first_last_val(metrics_path: str | None):
    """(first, last) ``kind == "val"`` records of a training run's metrics.jsonl, or None."""
    if not metrics_path or not os.path.exists(metrics_path):
        return None
    with open(metrics_path, encoding="utf-8") as fh:
        vals = [r for r in map(json.loads, filter(str.strip, fh)) if r.get("kind") == "val"]
    return (vals[0], vals[-1]) if vals else None


def loss_by_source(spark, art, max_docs: int = VAL_DOCS_PER_SOURCE, max_tokens: int = VAL_TOKENS_PER_SOURCE):
    """Loss of a trained artifact per source on the val (and, for comparison, train) documents it was built with.

    The documents are those of the dataset in the artifact's lineage: its input table at the recorded
    version, split again with the recorded rule (`jobs.transforms.splits.split_column`). Per (source, split), up
    to ``max_docs`` documents in the packer's order are tokenised on the driver and scored by
    `model.evaluation.loss_by_group` (at most ``max_tokens`` tokens each).

    Returns:
        ``[{"source", "split", "docs" (in the split), "docs_scored", "tokens", "loss"}]`` sorted by
        source then split, or None when the lineage has no split rule (a dataset built before it was
        recorded).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.transforms.splits import split_column
    from model.evaluation import loss_by_group
    from udfs import columns as C

    meta = art.metadata.get("lineage", {}).get("dataset", {})
    rule = meta.get("split")
    if not rule or "input" not in meta:
        return None
    gold = spark.read.format("delta").option("versionAsOf", meta["input_version"]).load(meta["input"])
    source = F.col(C.SOURCE) if C.SOURCE in gold.columns else F.lit("(all)")
    docs = gold.select(
        F.coalesce(source.cast("string"), F.lit("(none)")).alias("src"),
        C.DOC_ID,
        C.TEXT,
        split_column(rule).alias("split"),
        F.xxhash64(F.lit(rule["seed"]), F.lit("order"), C.DOC_ID).alias("order_key"),
    )
    totals = {(r.src, r.split): r["count"] for r in docs.groupBy("src", "split").count().collect()}
    ranked = docs.withColumn(
        "r", F.row_number().over(Window.partitionBy("src", "split").orderBy("order_key", C.DOC_ID))
    )
    groups: dict[str, list] = {}
    for r in (
        ranked.filter(F.col("r") <= max_docs).orderBy("src", "split", "r").select("src", "split", C.TEXT).collect()
    ):
        if r[C.TEXT]:
            groups.setdefault(f"{r.src}\x1f{r.split}", []).append(art.tokenizer.encode(r[C.TEXT], add_eos=True))
    losses = loss_by_group(art.model, groups, max_tokens_per_group=max_tokens)
    rows = []
    for (src, split), n in sorted(totals.items()):
        got = losses.get(f"{src}\x1f{split}", {"loss": float("nan"), "tokens": 0.0, "docs": 0.0})
        rows.append(
            {
                "source": src,
                "split": split,
                "docs": n,
                "docs_scored": int(got["docs"]),
                "tokens": int(got["tokens"]),
                "loss": got["loss"],
            }
        )
    return rows


def _nats(x: float) -> str:
    """A loss with 3 decimals; "-" when nothing was scored (NaN)."""
    return "-" if math.isnan(x) else f"{x:.3f}"


def _loss_by_source_md(rows) -> list[str]:
    """Markdown for `loss_by_source`: one row per source, val then train, plus the token-weighted val mean."""
    by = {(r["source"], r["split"]): r for r in rows}
    md = [
        "### Loss per source",
        "",
        (
            f"The trained model on each source's documents (nats/token; up to {VAL_DOCS_PER_SOURCE} documents and "
            f"{VAL_TOKENS_PER_SOURCE} tokens per source and split, packed like the training windows)."
        ),
        "",
        "| source | val docs | val tokens scored | val loss | train docs scored | train loss |",
        "|---|---|---|---|---|---|",
    ]
    for src in sorted({r["source"] for r in rows}):
        v = by.get((src, "val"), {"docs": 0, "tokens": 0, "loss": float("nan")})
        t = by.get((src, "train"), {"docs_scored": 0, "loss": float("nan")})
        md.append(
            f"| {src} | {v['docs']} | {v['tokens']} | {_nats(v['loss'])} | {t['docs_scored']} | {_nats(t['loss'])} |"
        )
    val = [r for r in rows if r["split"] == "val" and r["tokens"]]
    if val:
        mean = sum(r["loss"] * r["tokens"] for r in val) / sum(r["tokens"] for r in val)
        md += ["", f"All val documents scored: {mean:.3f} nats/token over {sum(r['tokens'] for r in val)} tokens."]
    return md


def build_report(spark, lake: str, out: str, artifact: str | None) -> str:
    """Write ``out/report.md`` and its PNGs; return the Markdown path."""
    from pyspark.sql import functions as F

    os.makedirs(out, exist_ok=True)
    md = ["# lakelm run report", ""]

    # --- funnel: documents surviving each stage
    stages = []
    for name in ("bronze", "silver", "gold"):
        path = table_path(lake, name)
        if _exists(spark, path):
            stages.append((name, spark.read.format("delta").load(path).count()))
    ingest_read = 0
    from jobs.common.runs import read_runs

    if _exists(spark, table_path(lake, "runs")):
        for r in read_runs(spark, table_path(lake, "runs"), job="ingest").filter("status = 'succeeded'").collect():
            ingest_read += r.counts.get("written", 0)
    md += ["## Curation funnel", "", "| stage | documents |", "|---|---|"]
    md += [f"| {n} | {c} |" for n, c in stages]
    if stages:
        _plot_bars(
            [n for n, _ in stages], [c for _, c in stages], "documents per stage", Path(out, "funnel.png"), False
        )
        md += ["", "![funnel](funnel.png)", ""]

    # --- per stage: in / kept / dropped from the jobs' recorded counts (jobs/stats.py)
    if _exists(spark, table_path(lake, "runs")):
        from jobs.transforms.funnel import collect_counts, funnel_rows, plot_funnel

        stage_rows = funnel_rows(*collect_counts(spark, table_path(lake, "runs")))
        if stage_rows:
            md += [
                "## Funnel per stage",
                "",
                "| job | stage | in | kept | dropped | top reasons |",
                "|---|---|---|---|---|---|",
            ]
            for r in stage_rows:
                top = ", ".join(f"{k} {v}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1])[:3])
                md.append(f"| {r['job']} | {r['stage']} | {r['in']} | {r['kept']} | {r['dropped']} | {top} |")
            plot_funnel(stage_rows, str(Path(out, "funnel_stages.png")))
            md += ["", "![funnel per stage](funnel_stages.png)", ""]

    # --- drop reasons (quarantine + rejected)
    reasons = []
    for name, col in (("quarantine", "reason"), ("rejected", "drop_reason")):
        path = table_path(lake, name)
        if _exists(spark, path):
            for r in spark.read.format("delta").load(path).groupBy(col).count().orderBy(F.desc("count")).collect():
                reasons.append((f"{name}:{r[0]}", r["count"]))
    md += ["## Drop reasons", "", "| table:reason | documents |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in reasons] or ["| (none) | 0 |"]
    if reasons:
        _plot_bars(
            [k for k, _ in reasons[:25]],
            [v for _, v in reasons[:25]],
            "dropped documents by reason",
            Path(out, "drop_reasons.png"),
        )
        md += ["", "![drop reasons](drop_reasons.png)", ""]

    # --- quality classifier scores (curate --quality-model)
    from jobs.transforms.report_quality import quality_section

    md += ["## Quality scores", ""]
    md += quality_section(spark, table_path(lake, "silver"), table_path(lake, "rejected")) + [""]

    # --- duplicate clusters
    clusters = os.path.join(lake, "clusters")
    md += ["## Duplicate clusters", ""]
    if _exists(spark, clusters):
        cdf = spark.read.format("delta").load(clusters)
        sizes = cdf.filter("cluster_size > 1").groupBy("cluster_id", "cluster_size").count()
        n_clusters = sizes.count()
        biggest = sizes.orderBy(F.desc("cluster_size")).limit(5).collect()
        md += [f"{n_clusters} clusters with more than one document. Largest:", "", "| cluster_id | size |", "|---|---|"]
        md += [f"| {r.cluster_id} | {r.cluster_size} |" for r in biggest]
        if biggest:
            members = cdf.filter(F.col("cluster_id") == biggest[0].cluster_id).select("doc_id", "drop_reason").collect()
            listed = ", ".join(f"{m.doc_id} ({m.drop_reason or 'kept'})" for m in members[:10])
            md += ["", f"Members of the largest cluster: {listed}"]
    else:
        md += ["dedup has not written a clusters table yet."]
    md += [""]

    # --- tokens
    md += ["## Training data", ""]
    run = _latest_run(spark, lake, "build_dataset")
    if run is not None:
        meta = json.loads(run.extra)
        md += ["| | train | val |", "|---|---|---|"]
        for key in ("docs", "tokens", "windows", "tail_tokens"):
            md.append(f"| {key} | {meta[key].get('train', 0)} | {meta[key].get('val', 0)} |")
        md += [
            "",
            (
                f"Tokenizer sha256 `{meta['tokenizer_sha256'][:16]}...`, vocab {meta['vocab_size']}, block "
                f"{meta['block_size']}, {meta['bytes_per_token']:.2f} bytes/token, "
                f"gold version {meta['input_version']}."
            ),
        ]
    else:
        md += ["build_dataset has not run yet."]
    md += [""]

    # --- training
    md += ["## Training", ""]
    run = _latest_run(spark, lake, "train")
    if run is not None:
        extra = json.loads(run.extra)
        metrics = extra.get("metrics", {})
        val_loss, val_bpb = metrics.get("val_loss"), metrics.get("val_bpb")
        md += [
            (
                f"Artifact `{extra.get('artifact')}` (hash `{extra.get('model_hash', '')[:16]}...`): "
                f"{metrics.get('step')} steps, {metrics.get('n_params')} parameters, train loss "
                f"{metrics.get('train_loss') or float('nan'):.3f}, val loss "
                + (
                    f"{val_loss:.3f} nats/token, {val_bpb:.3f} bits/byte."
                    if val_loss is not None
                    else "none (the dataset has no val split)."
                )
            )
        ]
        first_last = _first_last_val(extra.get("metrics.jsonl"))
        if first_last:
            first, last = first_last
            md += [
                "",
                (
                    f"Val loss {first['loss']:.3f} at step {first['step']} -> {last['loss']:.3f} at step "
                    f"{last['step']} (the trainer's evaluation: its first eval_steps batches of val windows)."
                ),
            ]
        curve = extra.get("loss_curve.png")
        if curve and os.path.exists(curve):
            shutil.copy(curve, Path(out, "loss_curve.png"))
            md += ["", "![loss curve](loss_curve.png)"]
        artifact = artifact or extra.get("artifact")
    else:
        md += ["train has not run yet."]
    art = None
    if artifact and os.path.exists(artifact):
        import torch

        from model.artifact import load_artifact

        torch.set_num_threads(1)
        art = load_artifact(artifact)
        rows = loss_by_source(spark, art)
        md += [""] + (
            _loss_by_source_md(rows)
            if rows
            else ["The model's dataset metadata has no split rule: no loss per source."]
        )
    md += [""]

    # --- scores
    md += ["## Scores", ""]
    scores = table_path(lake, "scores")
    if _exists(spark, scores):
        sdf = spark.read.format("delta").load(scores)
        if "perplexity" in sdf.columns:
            vals = [r.perplexity for r in sdf.filter("perplexity IS NOT NULL").select("perplexity").collect()]
            errors = sdf.filter("error IS NOT NULL").count() if "error" in sdf.columns else 0
            md += [f"{len(vals)} documents scored, {errors} with a per-row error."]
            if vals:
                import numpy as np

                fig = plots.figure(7, 3.5)
                ax = fig.subplots()
                ax.hist(np.log10(vals), bins=40, color=plots.BLUE)
                ax.set_xlabel("log10 perplexity")
                ax.set_title("scores")
                plots.save(fig, Path(out, "scores_hist.png"))
                md += [
                    "",
                    "![scores](scores_hist.png)",
                    "",
                    (f"Median perplexity {float(np.median(vals)):.1f}; lowest and highest:"),
                    "",
                ]
                ordered = sdf.filter("perplexity IS NOT NULL").orderBy("perplexity")
                for label, rows in (
                    ("lowest", ordered.limit(3).collect()),
                    ("highest", ordered.orderBy(F.desc("perplexity")).limit(3).collect()),
                ):
                    md += [f"- {label}: " + ", ".join(f"`{r.doc_id}` ({r.perplexity:.1f})" for r in rows)]
        md += [
            "",
            f"Lineage columns: {', '.join(c for c in sdf.columns if c in ('model_hash', 'input_version', 'run_id'))}.",
        ]
    else:
        md += ["score has not run yet."]
    md += [""]

    # --- evaluation (jobs/evaluate.py into LAKE/evals)
    from jobs.transforms.report_eval import evaluation_section

    md += ["## Evaluation", ""] + evaluation_section(spark, os.path.join(lake, "evals")) + [""]

    # --- samples
    md += ["## Generated samples", ""]
    if art is not None:
        import torch

        for prompt in ("The ", "It is a truth", "In the year"):
            idx = torch.tensor([art.tokenizer.encode(prompt)], dtype=torch.long)
            out_ids = art.model.generate(
                idx, max_new_tokens=40, temperature=0.8, top_k=50, seed=0, eos_id=art.tokenizer.eos_id
            )
            text = art.tokenizer.decode(out_ids[0].tolist(), skip_special=True)
            md += [f"- `{prompt}` → {json.dumps(text)}"]
        md += [
            "",
            "## Lineage",
            "",
            f"- artifact: `{artifact}` hash `{art.hash}`",
            f"- trained on `{art.metadata['lineage']['data']}` version {art.metadata['lineage']['data_version']}",
        ]
    else:
        md += ["no artifact yet."]
    md += [""]
    for name in ("bronze", "silver", "gold", "tokens", "scores"):
        path = table_path(lake, name)
        if _exists(spark, path):
            from jobs.common.delta_io import table_version

            md.append(f"- `{name}`: Delta version {table_version(spark, path)}")
    report = Path(out, "report.md")
    report.write_text("\n".join(md) + "\n", encoding="utf-8")
    return str(report)
