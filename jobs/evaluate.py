"""Evaluate a model zero-shot on evaluation tasks, with the results beside the data lineage in the lake.

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

Not yet here (issue 17): few-shot prompts, bits per byte of a text table, the report section, the
lm-eval adapter and the parity tests against lm-eval-harness.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
from dataclasses import asdict, dataclass

import pandas as pd

from jobs import cli
from jobs.delta_io import ensure_table, merge_insert_new, table_version
from jobs.ingest import QUARANTINE_KEYS, QUARANTINE_SCHEMA
from jobs.spark import get_spark
from udfs import batching
from udfs import columns as C
from udfs import eval_tasks as E

log = logging.getLogger("jobs.evaluate")

ITEMS_SCHEMA = (
    "task string, item_id bigint, kind string, gold int, n_choices int, loglik array<double>, "
    "token_logprobs array<array<double>>, n_tokens array<int>, is_greedy array<boolean>, prediction int, "
    "prediction_norm int, correct boolean, correct_norm boolean, error string, "
    f"{C.MODEL_NAME} string, {C.MODEL_HASH} string, {C.RUN_ID} string"
)
TASKS_SCHEMA = (
    "task string, kind string, acc double, acc_norm double, random_baseline double, acc_centered double, "
    "n_items bigint, n_errors bigint, n_quarantined bigint, task_file string, "
    f"{C.MODEL_NAME} string, {C.MODEL_HASH} string, token_table string, token_table_version bigint, "
    f"gold_table string, gold_version bigint, {C.RUN_ID} string, evaluated_at timestamp"
)
SUMMARY_KEYS = ("acc", "acc_norm", "acc_centered", "n_items", "n_errors", "n_quarantined")
_TASK_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class EvaluateConfig:
    model: str
    tasks: tuple[str, ...]
    task_dir: str
    output: str
    quarantine: str
    limit: int | None = None  # first N lines of each task file; None = all
    partitions: int = 0  # 0 = spark.default.parallelism: requests are dealt round-robin over the task slots
    sub_batch_rows: int = batching.DEFAULT_SUB_BATCH_ROWS
    token_budget: int | None = None  # None = by device (udfs.batching)
    max_rows: int = batching.DEFAULT_MAX_ROWS
    precision: str = "fp32"  # the same numbers on every machine

    def task_file(self, name: str) -> str:
        return os.path.join(self.task_dir, f"{name}.jsonl")


def model_lineage(path: str) -> dict:
    """Token table (+ version) and gold table (+ version) a lakelm artifact was trained on; None where unknown."""
    from model.loading import is_artifact

    out = {"token_table": None, "token_table_version": None, "gold_table": None, "gold_version": None}
    if not is_artifact(path):
        return out
    with open(os.path.join(path, "metadata.json"), encoding="utf-8") as f:
        lineage = json.load(f).get("lineage") or {}
    dataset = lineage.get("dataset") if isinstance(lineage.get("dataset"), dict) else {}
    out.update(token_table=lineage.get("data"), token_table_version=lineage.get("data_version"))
    out.update(gold_table=dataset.get("input"), gold_version=dataset.get("input_version"))
    return out


def extract(spark, cfg: EvaluateConfig) -> dict[str, pd.Series]:
    """Each task file's lines, indexed by 0-based line number (first ``limit`` lines when set).

    Raises:
        cli.UsageError: a task file that cannot be read (missing, a folder of nothing).
    """
    from pyspark.sql.utils import AnalysisException

    out = {}
    for name in cfg.tasks:
        path = cfg.task_file(name)
        try:
            numbered = spark.read.text(path).rdd.zipWithIndex()  # file order: partitions follow file offsets
        except AnalysisException as exc:
            raise cli.UsageError(f"task {name!r}: cannot read {path}: {exc}") from exc
        if cfg.limit is not None:
            numbered = numbered.filter(lambda pair: pair[1] < cfg.limit)
        rows = numbered.map(lambda pair: (pair[1], pair[0][0])).collect()
        out[name] = pd.Series([v for _, v in rows], index=[i for i, _ in rows], dtype=object)
    return out


def score(spark, requests: pd.DataFrame, cfg: EvaluateConfig, model_hash: str) -> pd.DataFrame:
    """Requests -> requests with the UDF's columns (``udfs.tasks.LOGLIKELIHOOD_SCHEMA``), scored on the executors."""
    from pyspark.sql import functions as F

    from udfs.inference import make_loglikelihood_udf

    ddl = (
        "task string, item_id bigint, kind string, choice_index int, context string, continuation string, "
        "gold int, n_choices int, norm_chars int"
    )
    df = spark.createDataFrame(_records(requests, E.REQUEST_COLUMNS), ddl).repartition(
        cfg.partitions or spark.sparkContext.defaultParallelism
    )
    udf = make_loglikelihood_udf(
        cfg.model,
        sub_batch_rows=cfg.sub_batch_rows,
        expected_hash=model_hash,
        token_budget=cfg.token_budget,
        max_rows=cfg.max_rows,
        precision=cfg.precision,
    )
    cols = [c for c in E.REQUEST_COLUMNS if c not in ("context", "continuation")]
    out = df.select(*cols, udf(F.col("context"), F.col("continuation")).alias("r")).select(*cols, "r.*")
    return out.toPandas()


def _records(pdf: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """Plain Python rows (pandas NA -> None, numpy arrays -> lists) for createDataFrame with a DDL schema."""

    def py(v):
        if isinstance(v, list):
            return [py(x) for x in v]
        if isinstance(v, pd.Timestamp):
            return v.to_pydatetime()
        if hasattr(v, "tolist"):
            return v.tolist()
        return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v

    return [tuple(py(v) for v in row) for row in pdf[columns].itertuples(index=False)]


def quarantine_rows(bad: pd.DataFrame, cfg: EvaluateConfig, record) -> list[tuple]:
    """Quarantine-table rows (``jobs.ingest.QUARANTINE_SCHEMA``) for the bad task lines."""
    rows, seen = [], {}
    for r in bad.itertuples(index=False):
        raw = str(r.raw)
        digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
        key = (r.task, digest, r.reason)
        seen[key] = seen.get(key, 0) + 1  # n-th identical bad line in the file (keeps counts exact)
        rows.append(
            (r.task, cfg.task_file(r.task), r.reason, r.detail, raw[: C.RAW_PREVIEW_CHARS], len(raw.encode("utf-8")))
            + (digest, seen[key], f"{r.task}:{r.item_id}", "evaluate", record.run_id)
            + (record.started_at.replace(tzinfo=None),)
        )
    return rows


def run(spark, cfg: EvaluateConfig, model: tuple[str, str], record) -> None:
    model_name, model_hash = model
    lines = extract(spark, cfg)
    parts = [E.build_requests(name, ls) for name, ls in lines.items()]
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
    items[C.MODEL_NAME], items[C.MODEL_HASH], items[C.RUN_ID] = model_name, model_hash, record.run_id
    item_cols = [f.split(" ")[0] for f in ITEMS_SCHEMA.split(", ")]
    spark.createDataFrame(_records(items, item_cols), ITEMS_SCHEMA).write.format("delta").mode("append").save(
        os.path.join(cfg.output, "items")
    )
    per_task = E.task_metrics(items) if len(items) else pd.DataFrame(columns=E.TASK_COLUMNS)
    per_task["n_quarantined"] = [int((bad["task"] == t).sum()) if len(bad) else 0 for t in per_task["task"]]
    per_task["task_file"] = [cfg.task_file(t) for t in per_task["task"]]
    for k, v in {C.MODEL_NAME: model_name, C.MODEL_HASH: model_hash, **model_lineage(cfg.model)}.items():
        per_task[k] = v
    per_task[C.RUN_ID], per_task["evaluated_at"] = record.run_id, record.started_at.replace(tzinfo=None)
    task_cols = [f.split(" ")[0] for f in TASKS_SCHEMA.split(", ")]
    spark.createDataFrame(_records(per_task, task_cols), TASKS_SCHEMA).write.format("delta").mode("append").save(
        os.path.join(cfg.output, "tasks")
    )
    reasons = bad["reason"].value_counts().to_dict() if len(bad) else {}
    n_errors = int(items["error"].notna().sum())
    record.counts.update(
        read=sum(int(ls.astype(str).str.strip().ne("").sum()) for ls in lines.values()),
        scored=len(items),
        quarantined=len(bad),
        requests=len(requests),
        errors=n_errors,
        **{f"quarantined_{k}": int(v) for k, v in sorted(reasons.items())},
    )
    if record.counts["read"] != len(items) + len(bad):  # an item lost between parsing and scoring: a bug, fail loudly
        raise RuntimeError(f"items in != scored + quarantined: {record.counts}")
    for name in ("items", "tasks"):
        record.output_versions[os.path.join(cfg.output, name)] = table_version(spark, os.path.join(cfg.output, name))
    record.output_versions[cfg.quarantine] = table_version(spark, cfg.quarantine)
    summary = {
        "run_id": record.run_id,
        "model_name": model_name,
        "model_hash": model_hash,
        "core_centered_mean": E.core_centered_mean(per_task),
        "tasks": {r["task"]: {k: r[k] for k in SUMMARY_KEYS} for r in per_task.to_dict("records")},
        **record.counts,
    }
    record.extra.update(summary)
    print(json.dumps(summary, sort_keys=True, default=str))
    if len(items) and n_errors == len(items):
        raise RuntimeError(f"every one of the {n_errors} items failed; first error: {items['error'].iloc[0]}")


def parse_args(argv):
    p = argparse.ArgumentParser(description="Evaluate a model zero-shot on JSONL evaluation tasks.")
    p.add_argument("--model", required=True, help="lakelm artifact or local Hugging Face folder")
    p.add_argument("--tasks", required=True, help="comma-separated task names: TASK_DIR/<name>.jsonl each")
    p.add_argument("--task-dir", required=True, help="folder (or URI) holding the task files")
    p.add_argument("--output", required=True, help="evaluation folder: OUTPUT/items and OUTPUT/tasks")
    p.add_argument("--quarantine", help="quarantine table (default: LAKE/quarantine)")
    p.add_argument("--limit", type=int, default=None, help="only the first N lines of each task file")
    p.add_argument("--partitions", type=int, default=0, help="tasks that score requests (0 = default parallelism)")
    p.add_argument("--token-budget", type=int, default=None)
    p.add_argument("--max-rows", type=int, default=batching.DEFAULT_MAX_ROWS)
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32")
    cli.add_lake_args(p)
    return p.parse_args(argv)


def _config(args) -> EvaluateConfig:
    names = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if not names:
        raise ValueError("--tasks names no task")
    bad = [t for t in names if not _TASK_NAME.match(t)]
    if bad or len(set(names)) != len(names):
        raise ValueError(f"--tasks: task names are letters, digits, '_', '-', '.', each once; got {list(names)}")
    for flag, value in (("--limit", args.limit), ("--token-budget", args.token_budget), ("--max-rows", args.max_rows)):
        if value is not None and value <= 0:
            raise ValueError(f"{flag} must be > 0, got {value}")
    if args.partitions < 0:
        raise ValueError(f"--partitions must be >= 0, got {args.partitions}")
    task_dir = args.task_dir if "://" in args.task_dir else os.path.abspath(args.task_dir)
    if "://" not in task_dir:
        missing = [t for t in names if not os.path.isfile(os.path.join(task_dir, f"{t}.jsonl"))]
        if missing:
            raise ValueError(f"no task file {task_dir}/<name>.jsonl for {missing}")
    return EvaluateConfig(
        model=args.model,
        tasks=names,
        task_dir=task_dir,
        output=cli.validate_table_path(args.output, "--output"),
        quarantine=cli.resolve_table(args.quarantine, args.lake, "quarantine", "--quarantine"),
        limit=args.limit,
        partitions=args.partitions,
        token_budget=args.token_budget,
        max_rows=args.max_rows,
        precision=args.precision,
    )


def main(argv: list[str] | None = None) -> int:
    from jobs.scoring_table import describe_model

    cli.setup_logging()
    args = parse_args(argv)
    try:
        cfg = _config(args)
        runs = cli.resolve_table(args.runs, args.lake, "runs", "--runs")
        model = describe_model(cfg.model, task="score")  # the whole folder checked on the driver
    except (ValueError, cli.UsageError) as exc:
        log.error("%s", exc)
        return cli.EXIT_USAGE
    log.info("config: %s", asdict(cfg))
    spark = get_spark("lakelm-evaluate")
    return cli.run_job("evaluate", asdict(cfg), runs, lambda rec: run(spark, cfg, model, rec), spark)


if __name__ == "__main__":
    sys.exit(main())
