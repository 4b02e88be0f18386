"""The report's evaluation section: one column per model with the data it was trained on, latest run only."""

import pandas as pd

from jobs.transforms.report_eval import evaluation_markdown


def _row(model, h, gold, task, acc, acc_norm, centred, at, kind="multiple_choice", n=12):
    return {
        "task": task,
        "kind": kind,
        "acc": acc,
        "acc_norm": acc_norm,
        "acc_centered": centred,
        "n_items": n,
        "model_name": model,
        "model_hash": h,
        "gold_version": gold,
        "token_table_version": gold + 1,
        "evaluated_at": pd.Timestamp("2026-12-01") + pd.Timedelta(minutes=at),
    }


def test_two_models_on_two_gold_versions_are_two_columns_and_only_the_latest_run_counts():
    rows = [
        _row("m1", "aaaaaaaa11", 3, "piqa", 0.10, 0.20, -0.8, 0),  # superseded by the next m1 piqa run
        _row("m1", "aaaaaaaa11", 3, "piqa", 0.50, 0.75, 0.0, 5),
        _row("m1", "aaaaaaaa11", 3, "lambada", 0.25, 0.25, 0.25, 5, kind="language_modeling", n=8),
        _row("m2", "bbbbbbbb22", 4, "piqa", 0.75, 0.50, 0.5, 9),
    ]
    md = evaluation_markdown(pd.DataFrame(rows))
    header = next(line for line in md if line.startswith("| task |"))
    assert header == ("| task | m1 `aaaaaaaa` (gold v3, tokens v4) | m2 `bbbbbbbb` (gold v4, tokens v5) |")
    assert "| lambada (8 items) | 0.250 |  |" in md  # language modelling: one number; m2 did not run it
    assert "| piqa (12 items) | 0.500 / 0.750 | 0.750 / 0.500 |" in md
    assert md[-1] == "| **centred mean (CORE-style)** | 0.125 | 0.500 |"


def test_nothing_evaluated_says_so():
    assert evaluation_markdown(pd.DataFrame()) == ["No evaluation yet (`python -m jobs.evaluate`)."]
