"""The evaluation tables of jobs/evaluate.py (``OUTPUT/items``, ``OUTPUT/tasks``), its config, and the steps
it runs: read the task files, score the requests on the executors, build the quarantine rows."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass

import pandas as pd

from jobs.common import cli
from model.config import PRECISIONS
from udfs import batching
from udfs import columns as C
from udfs import eval_tasks as E

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
    f"gold_table string, gold_version bigint, {C.RUN_ID} string, evaluated_at timestamp, "
    "num_fewshot int, fewshot_seed bigint"
)
SUMMARY_KEYS = ("acc", "acc_norm", "acc_centered", "n_items", "n_errors", "n_quarantined")
_TASK_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class EvaluateConfig:
    """What to evaluate on which task files, where the results go, and the scoring options (one flag each).

    ``tasks`` may be given as a comma-separated string (the flag); it is kept as a tuple of names.
    """

    model: str
    tasks: tuple[str, ...]
    task_dir: str
    output: str
    quarantine: str
    limit: int | None = None  # first N lines of each task file; None = all
    partitions: int = 0  # 0 = spark.default.parallelism: items are hashed over the task slots, choices together
    sub_batch_rows: int = batching.DEFAULT_SUB_BATCH_ROWS
    token_budget: int | None = None  # None = by device (udfs.batching)
    max_rows: int = batching.DEFAULT_MAX_ROWS
    precision: str = "fp32"  # the same numbers on every machine
    num_fewshot: int = 0  # solved examples before each item (lm-eval's sampler, udfs.eval_tasks.fewshot_examples)
    fewshot_seed: int = E.DEFAULT_FEWSHOT_SEED  # lm-eval's default fewshot_random_seed
    bpb_table: str | None = None  # a Delta text table to measure bits per byte on (jobs/transforms/eval_bpb.py)
    bpb_column: str = "text"
    bpb_limit: int | None = None  # first N rows of the bpb table; None = all

    def __post_init__(self) -> None:
        names = self.tasks.split(",") if isinstance(self.tasks, str) else self.tasks  # a flag: comma-separated
        names = tuple(t.strip() for t in names if t.strip())
        if not names:
            raise ValueError("--tasks names no task")
        if any(not _TASK_NAME.match(t) for t in names) or len(set(names)) != len(names):
            raise ValueError(f"--tasks: task names are letters, digits, '_', '-', '.', each once; got {list(names)}")
        object.__setattr__(self, "tasks", names)
        for flag, value in (
            ("--limit", self.limit),
            ("--token-budget", self.token_budget),
            ("--max-rows", self.max_rows),
            ("--bpb-limit", self.bpb_limit),
        ):
            if value is not None and value <= 0:
                raise ValueError(f"{flag} must be > 0, got {value}")
        if self.partitions < 0:
            raise ValueError(f"--partitions must be >= 0, got {self.partitions}")
        if self.num_fewshot < 0:
            raise ValueError(f"--num-fewshot must be >= 0, got {self.num_fewshot}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if "://" not in self.task_dir:
            object.__setattr__(self, "task_dir", os.path.abspath(self.task_dir))

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
    """Each task file's lines, indexed by 0-based line number (all of them: ``limit`` applies when the
    requests are built, the few-shot pool being the whole file).

    All the files are read by one Spark job (DataFrame API only: Spark Connect has no RDDs). A line's
    place is its file (a part file when ``<name>.jsonl`` is a folder), its split's start offset in that file,
    then its order in the split; the task is the file's name (every task file is ``TASK_DIR/<name>.jsonl``,
    so names are unique).

    Raises:
        cli.UsageError: a task file that cannot be read (missing, a folder of nothing).
    """
    from urllib.parse import unquote

    from pyspark.sql import functions as F
    from pyspark.sql.utils import AnalysisException

    by_file = {f"{name}.jsonl": name for name in cfg.tasks}
    paths = [cfg.task_file(name) for name in cfg.tasks]
    try:  # Connect reports a bad path at the collect
        rows = (
            spark.read.text(paths)
            .select(
                "value",
                F.col("_metadata.file_path").alias("file"),
                F.col("_metadata.file_block_start").alias("start"),
                F.monotonically_increasing_id().alias("pos"),
            )
            .collect()
        )
    except AnalysisException as exc:
        raise cli.UsageError(f"tasks {list(cfg.tasks)}: cannot read {paths}: {exc}") from exc
    lines: dict[str, list] = {name: [] for name in cfg.tasks}
    for r in rows:  # the file itself, or a part file in a folder of that name
        parts = [by_file.get(c) for c in unquote(r.file).split("/")]
        name = next((n for n in reversed(parts) if n is not None), None)
        if name is None:  # not one of the files asked for: a bug in the path handling, never silently dropped
            raise RuntimeError(f"read a line of {r.file}, which is none of the task files {paths}")
        lines[name].append((r.file, r.start, r.pos, r.value))
    out = {}
    for name, got in lines.items():
        values = [t[3] for t in sorted(got, key=lambda t: t[:3])]
        out[name] = pd.Series(values, index=list(range(len(values))), dtype=object)
    return out


def score(spark, requests: pd.DataFrame, cfg: EvaluateConfig, model_hash: str) -> pd.DataFrame:
    """Requests -> requests with the UDF's columns (``udfs.tasks.LOGLIKELIHOOD_SCHEMA``), scored on the executors."""
    from pyspark.sql import functions as F

    from jobs.common.spark import default_parallelism
    from udfs.inference import make_loglikelihood_udf

    ddl = (
        "task string, item_id bigint, kind string, choice_index int, context string, continuation string, "
        "gold int, n_choices int, norm_chars int"
    )
    # an item's requests in one partition, side by side: the UDF then reads a shared context once
    df = (
        spark.createDataFrame(records(requests, E.REQUEST_COLUMNS), ddl)
        .repartition(cfg.partitions or default_parallelism(spark), "task", "item_id")
        .sortWithinPartitions("task", "item_id", "choice_index")
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


def records(pdf: pd.DataFrame, columns: list[str]) -> list[tuple]:
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
    """Quarantine-table rows (``jobs.transforms.bronze.QUARANTINE_SCHEMA``) for the bad task lines."""
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


def write_results(spark, cfg: EvaluateConfig, items: pd.DataFrame, bad: pd.DataFrame, model: tuple[str, str], record):
    """Append the run's items to ``OUTPUT/items`` and its per-task metrics to ``OUTPUT/tasks``; return the latter.

    Args:
        spark: the session.
        cfg: the job's config.
        items: ``udfs.eval_tasks.item_metrics`` rows (may be empty).
        bad: the quarantined task lines (``task`` column), counted per task.
        model: ``(model_name, model_hash)``.
        record: the run's record (``run_id``, ``started_at``).

    Returns:
        The per-task rows written (``udfs.eval_tasks.task_metrics`` plus the lineage columns).
    """
    from jobs.common.delta_io import delta_writer

    model_name, model_hash = model
    items[C.MODEL_NAME], items[C.MODEL_HASH], items[C.RUN_ID] = model_name, model_hash, record.run_id
    item_cols = [f.split(" ")[0] for f in ITEMS_SCHEMA.split(", ")]
    delta_writer(spark.createDataFrame(records(items, item_cols), ITEMS_SCHEMA)).mode("append").save(
        os.path.join(cfg.output, "items")
    )
    per_task = E.task_metrics(items) if len(items) else pd.DataFrame(columns=E.TASK_COLUMNS)
    per_task["n_quarantined"] = [int((bad["task"] == t).sum()) if len(bad) else 0 for t in per_task["task"]]
    per_task["task_file"] = [cfg.task_file(t) for t in per_task["task"]]
    for k, v in {C.MODEL_NAME: model_name, C.MODEL_HASH: model_hash, **model_lineage(cfg.model)}.items():
        per_task[k] = v
    per_task[C.RUN_ID], per_task["evaluated_at"] = record.run_id, record.started_at.replace(tzinfo=None)
    per_task["num_fewshot"], per_task["fewshot_seed"] = cfg.num_fewshot, cfg.fewshot_seed
    task_cols = [f.split(" ")[0] for f in TASKS_SCHEMA.split(", ")]
    tasks_df = spark.createDataFrame(records(per_task, task_cols), TASKS_SCHEMA)
    # mergeSchema: a tasks table written before the few-shot columns existed gains them (nulls in old rows)
    delta_writer(tasks_df).mode("append").option("mergeSchema", "true").save(os.path.join(cfg.output, "tasks"))
    return per_task


def count_run(record, cfg: EvaluateConfig, lines: dict[str, pd.Series], items, bad, n_requests: int) -> None:
    """The run's accounting into ``record.counts``: ``read`` (non-blank lines within ``limit``) = ``scored`` +
    ``quarantined`` (per reason too), ``requests`` and ``errors``.

    Raises:
        RuntimeError: an item lost between parsing and scoring (a bug: fail loudly, never silently).
    """
    reasons = bad["reason"].value_counts().to_dict() if len(bad) else {}
    record.counts.update(
        read=sum(int(ls.iloc[: cfg.limit].astype(str).str.strip().ne("").sum()) for ls in lines.values()),
        scored=len(items),
        quarantined=len(bad),
        requests=n_requests,
        errors=int(items["error"].notna().sum()),
        **{f"quarantined_{k}": int(v) for k, v in sorted(reasons.items())},
    )
    if record.counts["read"] != len(items) + len(bad):
        raise RuntimeError(f"items in != scored + quarantined: {record.counts}")
