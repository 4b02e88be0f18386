"""The run report's evaluation section: task accuracy per model, with the training data each model came from.

One column per evaluated model (and few-shot setting), labelled with the model's name, its hash and the
gold/token table versions it was trained on, so two models trained on two versions of gold sit side by
side; one row per task (``acc``, and ``acc_norm`` where the task has choices), then the CORE-style mean of
the centred accuracies. For each model and task only the latest evaluation counts.
"""

from __future__ import annotations

import math

import pandas as pd


def _version(v) -> str:
    return "?" if v is None or (isinstance(v, float) and math.isnan(v)) or pd.isna(v) else str(int(v))


def _label(row) -> str:
    shots = int(row.get("num_fewshot", 0) or 0)
    data = f"gold v{_version(row.get('gold_version'))}, tokens v{_version(row.get('token_table_version'))}"
    return f"{row['model_name']} `{str(row['model_hash'])[:8]}` ({data}{f', {shots}-shot' if shots else ''})"


def _cell(acc, acc_norm, kind: str) -> str:
    if acc is None or (isinstance(acc, float) and math.isnan(acc)):
        return "n/a"
    if kind == "language_modeling" or acc_norm is None or (isinstance(acc_norm, float) and math.isnan(acc_norm)):
        return f"{acc:.3f}"
    return f"{acc:.3f} / {acc_norm:.3f}"


def evaluation_markdown(tasks: pd.DataFrame) -> list[str]:
    """Markdown lines of the evaluation section from rows of an evaluation ``tasks`` table.

    Args:
        tasks: rows of ``OUTPUT/tasks`` (``jobs/evaluate.py``): task, kind, acc, acc_norm, acc_centered,
            n_items, model_name, model_hash, gold_version, token_table_version, evaluated_at and, when
            present, num_fewshot.

    Returns:
        The section's lines (a table, or a sentence saying nothing was evaluated).
    """
    if tasks is None or tasks.empty:
        return ["No evaluation yet (`python -m jobs.evaluate`)."]
    df = tasks.copy()
    if "num_fewshot" not in df.columns:
        df["num_fewshot"] = 0
    df = df.sort_values("evaluated_at").groupby(["model_hash", "num_fewshot", "task"], as_index=False).last()
    columns: dict[tuple, str] = {}
    for _, r in df.sort_values(["evaluated_at"]).iterrows():
        columns.setdefault((r["model_hash"], int(r["num_fewshot"] or 0)), _label(r))
    keys = list(columns)
    task_names = sorted(df["task"].unique())
    md = [
        "Accuracy per task (`acc / acc_norm`; language modelling: greedy-continuation accuracy), latest "
        "evaluation per model; each column names the data the model was trained on.",
        "",
        "| task | " + " | ".join(columns[k] for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    by = {(r["model_hash"], int(r["num_fewshot"] or 0), r["task"]): r for _, r in df.iterrows()}
    for t in task_names:
        cells = []
        for k in keys:
            r = by.get((*k, t))
            cells.append("" if r is None else _cell(r["acc"], r["acc_norm"], r["kind"]))
        n = max(int(r["n_items"]) for key, r in by.items() if key[2] == t)
        md.append(f"| {t} ({n} items) | " + " | ".join(cells) + " |")
    means = []
    for k in keys:
        vals = [float(r["acc_centered"]) for key, r in by.items() if key[:2] == k and not pd.isna(r["acc_centered"])]
        means.append(f"{sum(vals) / len(vals):.3f}" if vals else "n/a")
    md.append("| **centred mean (CORE-style)** | " + " | ".join(means) + " |")
    return md


def evaluation_section(spark, evals: str) -> list[str]:
    """The section for the evaluation folder ``evals`` (its ``tasks`` table), read with Spark."""
    import os

    from jobs.common.delta_io import table_version

    path = os.path.join(evals, "tasks")
    if table_version(spark, path) is None:
        return evaluation_markdown(pd.DataFrame())
    return evaluation_markdown(spark.read.format("delta").load(path).toPandas())
