"""Evaluate a model on evaluation tasks (zero- or few-shot), with the results beside the data lineage in the lake.

    spark-submit --properties-file spark-defaults.conf jobs/evaluate.py \\
        --model models/m1 --tasks piqa,arc_easy,winograd_wsc,lambada_openai_small \\
        --task-dir data/eval_tasks --output lake/evals [--lake lake] [--limit N] \\
        [--partitions N] [--token-budget N] [--max-rows 64] [--precision fp32|bf16|auto]

Each task is the JSONL file ``TASK_DIR/<name>.jsonl`` (layouts and scoring rules: ``udfs.eval_tasks``); a
line that cannot be scored is quarantined in ``LAKE/quarantine`` with its reason (job ``evaluate``), never
fatal. Every (context, continuation) request is scored by the log-likelihood UDF
(``udfs.inference.make_loglikelihood_udf``: the per-worker model cache, length-bucketed micro-batches,
per-row errors). Writes (appends, keyed by ``run_id``) two Delta tables: ``OUTPUT/items``, one row per item
(per-choice summed and per-token log-likelihoods, predictions, correctness) and ``OUTPUT/tasks``, one row
per task (acc, acc_norm, centred accuracy, items, errors, model name and hash, and for a lakelm artifact
the token table and gold table versions it was trained on). Accounting, in the runs table: ``read`` (items
in: non-blank lines) = ``scored`` + ``quarantined``. Prints a JSON summary with the CORE-style mean of the
centred accuracies. Exit 2: bad flags, a missing task file, a model that cannot be used; exit 1: a failure
(also when every item failed in the model).

``--num-fewshot K`` puts K solved examples before each item, drawn and written as lm-eval-harness does
(``udfs.eval_tasks.fewshot_examples``, seed ``--fewshot-seed``, default 1234; prompts equal the harness's,
tested); ``--limit`` then scores the first N lines and still draws examples from the whole file. ``--bpb-table``
adds bits per byte on a text table (``OUTPUT/bpb``). lm-eval-harness runs the task files via udfs/lm_eval_adapter.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import pandas as pd

from jobs.common import cli
from jobs.common.delta_io import ensure_table, merge_insert_new, table_version
from jobs.transforms.bronze import QUARANTINE_KEYS, QUARANTINE_SCHEMA
from jobs.transforms.eval_bpb import check_table, record_bits_per_byte
from jobs.transforms.eval_tables import (
    SUMMARY_KEYS,
    EvaluateConfig,
    count_run,
    extract,
    quarantine_rows,
    score,
    write_results,
)
from model.config import PRECISIONS
from udfs import eval_tasks as E

log = logging.getLogger("jobs.evaluate")


def run(spark, cfg: EvaluateConfig, model: tuple[str, str], record) -> None:
    model_name, model_hash = model
    if cfg.bpb_table:  # a bad --bpb-table is a usage error before anything is scored or written
        try:
            check_table(spark, cfg.bpb_table, cfg.bpb_column)
        except ValueError as exc:
            raise cli.UsageError(str(exc)) from exc
    lines = extract(spark, cfg)
    try:
        parts = [E.build_requests(name, ls, cfg.num_fewshot, cfg.fewshot_seed, cfg.limit) for name, ls in lines.items()]
    except ValueError as exc:  # more shots than a task has items
        raise cli.UsageError(f"--num-fewshot {cfg.num_fewshot}: {exc}") from exc
    requests = pd.concat([p[0] for p in parts], ignore_index=True)
    bad = pd.concat([p[1] for p in parts], ignore_index=True)
    if requests.empty and bad.empty:
        raise cli.UsageError(f"the task files of {list(cfg.tasks)} hold no items")
    ensure_table(spark, cfg.quarantine, QUARANTINE_SCHEMA)
    if len(bad):
        bad_df = spark.createDataFrame(quarantine_rows(bad, cfg, record), QUARANTINE_SCHEMA)
        merge_insert_new(spark, cfg.quarantine, bad_df, QUARANTINE_KEYS)
    items = E.item_metrics(score(spark, requests, cfg, model_hash)) if len(requests) else None
    if items is None:
        items = pd.DataFrame(columns=E.ITEM_COLUMNS)
    per_task = write_results(spark, cfg, items, bad, (model_name, model_hash), record)
    count_run(record, cfg, lines, items, bad, len(requests))
    for name in ("items", "tasks"):
        record.output_versions[os.path.join(cfg.output, name)] = table_version(spark, os.path.join(cfg.output, name))
    record.output_versions[cfg.quarantine] = table_version(spark, cfg.quarantine)
    bpb = None
    if cfg.bpb_table:
        bpb = record_bits_per_byte(spark, cfg, model_name, model_hash, record)
    summary = {
        "run_id": record.run_id,
        "num_fewshot": cfg.num_fewshot,
        **({"bpb": bpb} if bpb else {}),
        "model_name": model_name,
        "model_hash": model_hash,
        "core_centered_mean": E.core_centered_mean(per_task),
        "tasks": {r["task"]: {k: r[k] for k in SUMMARY_KEYS} for r in per_task.to_dict("records")},
        **record.counts,
    }
    record.extra.update(summary)
    print(json.dumps(summary, sort_keys=True, default=str))
    if len(items) and record.counts["errors"] == len(items):
        raise RuntimeError(f"every one of the {len(items)} items failed; first error: {items['error'].iloc[0]}")


def build_parser() -> argparse.ArgumentParser:
    """Flags map 1:1 onto ``EvaluateConfig`` fields (``--config`` supplies base values)."""
    p = cli.job_parser("Evaluate a model zero-shot on JSONL evaluation tasks.", EvaluateConfig)
    p.add_argument("--model", help="lakelm artifact or local Hugging Face folder (required)")
    p.add_argument("--tasks", help="comma-separated task names: TASK_DIR/<name>.jsonl each (required)")
    p.add_argument("--task-dir", help="folder (or URI) holding the task files (required)")
    p.add_argument("--output", help="evaluation folder: OUTPUT/items and OUTPUT/tasks (required)")
    p.add_argument("--quarantine", help="quarantine table (default: LAKE/quarantine)")
    p.add_argument("--limit", type=int, help="only the first N lines of each task file; none = all")
    p.add_argument("--partitions", type=int, help="tasks that score requests (0 = default parallelism)")
    p.add_argument("--sub-batch-rows", type=int, help="rows per model call inside a task's Arrow batch")
    p.add_argument("--token-budget", type=int, help="tokens per micro-batch; none = by device (udfs.batching)")
    p.add_argument("--max-rows", type=int, help="rows per micro-batch at most")
    p.add_argument("--precision", choices=PRECISIONS, help="arithmetic of the model")
    p.add_argument("--num-fewshot", type=int, help="solved examples before each item, drawn as lm-eval draws them")
    p.add_argument("--fewshot-seed", type=int, help="seed of the few-shot draw (lm-eval's fewshot_random_seed)")
    p.add_argument("--bpb-table", help="Delta text table: also measure the model's bits per byte on it (OUTPUT/bpb)")
    p.add_argument("--bpb-column", help="the bpb table's text column")
    p.add_argument("--bpb-limit", type=int, help="first N rows of the bpb table; none = all")
    return p


def build_config(args: argparse.Namespace) -> EvaluateConfig:
    """EvaluateConfig from the flags over ``--config``; every task file must exist (local task dirs).

    Raises:
        cli.UsageError: a missing flag, a bad value or a task file that is not there.
    """
    tables = {"output": None, "quarantine": "quarantine"}
    cfg = cli.build_config(args, EvaluateConfig, tables=tables, required=("model", "tasks", "task_dir", "output"))
    if "://" not in cfg.task_dir:
        missing = [t for t in cfg.tasks if not os.path.isfile(cfg.task_file(t))]
        if missing:
            raise cli.UsageError(f"no task file {cfg.task_dir}/<name>.jsonl for {missing}")
    return cfg


def _run(spark, cfg: EvaluateConfig, record) -> None:
    from jobs.transforms.scoring_table import describe_model

    run(spark, cfg, describe_model(cfg.model, task="score"), record)  # the whole folder checked on the driver


def main(argv: list[str] | None = None) -> int:
    return cli.run_main("evaluate", argv, build_parser(), build_config, _run)


if __name__ == "__main__":
    sys.exit(main())
