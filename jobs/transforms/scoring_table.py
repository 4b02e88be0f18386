"""The scores table that jobs/score.py and jobs/nightly_score.py both write, and what they share.

Their config (`ScoreConfig`, one flag each: `build_parser`, `build_config`), the output schema and
lineage columns, the model check on the driver (`describe_model`), which rows a model still has to
score (`find_todo`), scoring and the MERGE (`score_and_merge`), the counts (`tally`) and the
error-rate check (`check_error_rate`). The two jobs differ only in which rows they score and how a
scored row replaces an old one; those choices are arguments here.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import dataclass

from jobs.common import cli
from jobs.common.delta_io import ensure_table, merge_insert_new, merge_upsert_changed, retry_on_conflict, table_version
from model import config as model_config
from udfs import batching, inference, tasks
from udfs import columns as C

log = logging.getLogger(__name__)

LINEAGE = (
    f"{C.TASK} string, {C.MODEL_NAME} string, {C.MODEL_HASH} string, {C.INPUT_TABLE} string, "
    f"{C.INPUT_VERSION} bigint, {C.RUN_ID} string, {C.SCORED_AT} timestamp"
)


@dataclass(frozen=True)
class ScoreConfig:
    """What to score, with which model, where to write it, and the inference options (one flag each).

    The last group maps onto the keyword options of the core functions in ``udfs.tasks``; see
    `task_options`. ``jobs/nightly_score.py`` takes the same config (``stream`` stays False).
    """

    input: str
    model: str
    output: str
    task: str = "score"  # score | embed | generate
    text_col: str = C.TEXT
    id_col: str = C.DOC_ID
    stream: bool = False
    checkpoint: str | None = None  # required with stream
    partitions: int = 0  # tasks the model runs in; 0 = spark.default.parallelism (all task slots)
    sub_batch_rows: int = batching.DEFAULT_SUB_BATCH_ROWS
    token_budget: int | None = batching.DEFAULT_TOKEN_BUDGET  # None = by device (2048 on CPU, 32768 on GPU)
    max_rows: int = batching.DEFAULT_MAX_ROWS
    max_len: int | None = None  # None = the model's block_size
    stride: int | None = None  # score: None = max_len // 2
    max_new_tokens: int = 64  # generate
    temperature: float = 1.0  # generate; 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = 0  # generate: per-row seed, so outputs do not depend on batching
    precision: str = "fp32"  # score/embed: fp32 | bf16 | auto (bf16 where the hardware has it)
    pooling: str = "mean"  # embed: mean | cls (cls: text encoders only, the sentence-transformers [CLS] vector)
    normalize: bool = False  # embed: L2-normalise each embedding (dot product = cosine similarity)
    # model failures / rows sent to the model, over which the run fails (exit 1, after writing); one
    # OOM row in a hundred is noise, more is a broken model or device worth a page
    max_error_rate: float = 0.01
    expect_model_hash: str | None = None  # refuse an artifact with another hash; None = any intact one

    def __post_init__(self) -> None:
        if self.task not in tasks.TASKS:
            raise ValueError(f"--task must be one of {tasks.TASKS}, got {self.task!r}")
        if self.precision not in model_config.PRECISIONS:
            raise ValueError(f"--precision must be one of {model_config.PRECISIONS}, got {self.precision!r}")
        if self.pooling not in tasks.POOLINGS:
            raise ValueError(f"--pooling must be one of {tasks.POOLINGS}, got {self.pooling!r}")
        if self.stream and not self.checkpoint:
            raise ValueError("--stream needs --checkpoint DIR (where the stream records its progress)")
        if not 0.0 <= self.max_error_rate <= 1.0:  # also refuses NaN
            raise ValueError(f"--max-error-rate must be in [0, 1] (a fraction of rows), got {self.max_error_rate}")

    def task_options(self) -> dict:
        """Keyword options of the task's core function (``udfs.tasks.score_texts`` ...)."""
        common = {"max_rows": self.max_rows}
        if self.token_budget is not None:  # else each task's own default (by device for score/embed)
            common["token_budget"] = self.token_budget
        if self.task == "score":
            return {**common, "max_len": self.max_len, "stride": self.stride, "precision": self.precision}
        if self.task == "embed":
            return {
                **common,
                "max_len": self.max_len,
                "precision": self.precision,
                "pooling": self.pooling,
                "normalize": self.normalize,
            }
        return {
            **common,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "seed": self.seed,
        }


def output_schema(task: str) -> str:
    """DDL of the output table for ``task``."""
    return f"{C.DOC_ID} string, {C.CONTENT_HASH} string, {tasks.SCHEMAS[task]}, {LINEAGE}"


def describe_model(path: str, expected_hash: str | None = None, task: str | None = None) -> tuple[str, str]:
    """(model_name, model_hash) of a lakelm artifact or a local Hugging Face folder, checked whole on the
    driver before any row is scored (``model.loading.describe_model``).

    Raises:
        cli.UsageError: if the folder is neither kind, is damaged or cannot run (pickle-only weights, an
            unknown model_type, wrong shapes...), its hash is not ``expected_hash``, or it is a text
            encoder and ``task`` is not embed.
    """
    from model.artifact import ArtifactHashMismatch, ArtifactIntegrityError
    from model.loading import describe_model as check

    try:
        return check(path, expected_hash, task)
    except ArtifactHashMismatch as exc:
        raise cli.UsageError(f"--model {path!r} is not the model of --expect-model-hash: {exc}") from exc
    except (ArtifactIntegrityError, OSError, ValueError) as exc:  # HFFolderError, ModelFolderError: ValueError
        raise cli.UsageError(f"--model {path!r} cannot be used: {exc}") from exc


def prepare(df, cfg: ScoreConfig):
    """Input rows -> ``doc_id, text, content_hash``, one row per id (the smallest content hash wins,
    so the choice is deterministic)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    fields = dict(df.dtypes)
    for flag, col in (("--text-col", cfg.text_col), ("--id-col", cfg.id_col)):
        if col not in fields:
            raise cli.UsageError(f"{flag} {col!r} not in the input columns {sorted(fields)}")
    rows = df.select(F.col(f"`{cfg.id_col}`").cast("string").alias(C.DOC_ID), F.col(f"`{cfg.text_col}`").alias(C.TEXT))
    rows = rows.withColumn(C.CONTENT_HASH, F.sha2(F.col(C.TEXT), 256))
    first = F.row_number().over(Window.partitionBy(C.DOC_ID).orderBy(F.col(C.CONTENT_HASH).asc_nulls_last()))
    return rows.withColumn("_n", first).filter("_n = 1").drop("_n")


def spread(spark, rows, cfg: ScoreConfig):
    """Rows to score, dealt round-robin over ``cfg.partitions`` tasks. An explicit repartition(n) is
    never coalesced by AQE, which would otherwise fold a small (in bytes) but compute-heavy input
    into one task and leave the other cores idle."""
    from jobs.common.spark import default_parallelism

    return rows.repartition(cfg.partitions or default_parallelism(spark))


def transform(rows, cfg: ScoreConfig, lineage: dict, keep: tuple[str, ...] = ()):
    """``doc_id, text, content_hash`` rows -> output rows: the task's struct flattened, plus lineage
    (and the ``keep`` columns of ``rows``, first, for the caller's bookkeeping)."""
    from pyspark.sql import functions as F

    udf = inference.make_task_udf(
        cfg.task,
        cfg.model,
        sub_batch_rows=cfg.sub_batch_rows,
        expected_hash=lineage[C.MODEL_HASH],
        **cfg.task_options(),
    )
    ids = [*keep, C.DOC_ID, C.CONTENT_HASH]
    out = rows.select(*ids, udf(F.col(C.TEXT)).alias("_r")).select(*ids, "_r.*")
    for name, value in lineage.items():
        out = out.withColumn(name, F.lit(value))
    return out.withColumn(C.INPUT_VERSION, F.col(C.INPUT_VERSION).cast("bigint")).withColumn(
        C.SCORED_AT, F.col(C.SCORED_AT).cast("timestamp")
    )


def ensure_output(spark, cfg: ScoreConfig) -> None:
    """Create the output table, or check that an existing one has this task's columns."""
    schema = spark.createDataFrame([], output_schema(cfg.task)).schema  # the DDL parsed by the session, either kind
    retry_on_conflict(lambda: ensure_table(spark, cfg.output, schema), what="create output")
    have = spark.read.format("delta").load(cfg.output).schema.fieldNames()
    if have != schema.fieldNames():
        raise cli.UsageError(
            f"--output {cfg.output} has columns {have}, not those of task {cfg.task!r}; "
            "write each task to its own table"
        )


def lineage_for(cfg: ScoreConfig, model: tuple[str, str], version: int | None, record) -> dict:
    """Lineage columns of every output row of this run: task, model (name, hash), input table + version, run."""
    return {
        C.TASK: cfg.task,
        C.MODEL_NAME: model[0],
        C.MODEL_HASH: model[1],
        C.INPUT_TABLE: cfg.input,
        C.INPUT_VERSION: version,
        C.RUN_ID: record.run_id,
        C.SCORED_AT: record.started_at.replace(tzinfo=None),
    }


class ModelErrorRateExceeded(RuntimeError):
    """More rows failed in the model than ``--max-error-rate`` allows (the run fails after writing)."""


def retryable(error):
    """Spark column: True where ``error`` is a model failure (`udfs.tasks.is_retryable_error`), else False."""
    from pyspark.sql import functions as F

    return F.coalesce(error.startswith(tasks.MODEL_FAILED + ":"), F.lit(False))


def find_todo(spark, rows, cfg: ScoreConfig, model_hash: str, changed: bool = False):
    """Prepared rows this model still has to score, with ``_status``: ``new`` (no output row of this
    model), ``retried`` (its output row is a model failure) or, with ``changed``, ``changed`` (the
    output row is of another text)."""
    from pyspark.sql import functions as F

    done = spark.read.format("delta").load(cfg.output).filter(F.col(C.MODEL_HASH) == model_hash)
    done = done.select(
        F.col(C.DOC_ID).alias("_id"), F.col(C.CONTENT_HASH).alias("_hash"), retryable(F.col(C.ERROR)).alias("_failed")
    )
    joined = rows.join(done, F.col(C.DOC_ID) == F.col("_id"), "left")  # output has one row per (doc_id, model)
    status = F.when(F.col("_id").isNull(), "new")
    if changed:
        status = status.when(~F.col(C.CONTENT_HASH).eqNullSafe(F.col("_hash")), "changed")
    status = status.when(F.col("_failed"), "retried")
    return joined.withColumn("_status", status).filter(F.col("_status").isNotNull()).drop("_id", "_hash", "_failed")


def tally(scored) -> Counter:
    """Counts of scored rows (with ``_status``): ``scored``, one per status, ``errors`` = ``input_errors``
    (bad input: done) + ``model_errors`` (retryable)."""
    from pyspark.sql import functions as F

    kind = F.when(F.col(C.ERROR).isNull(), "ok").when(retryable(F.col(C.ERROR)), "model_errors")
    stats = Counter()
    for status, k, n in scored.groupBy("_status", kind.otherwise("input_errors")).count().collect():
        stats["scored"] += n
        stats[status] += n
        stats[k] += n
    stats["errors"] = stats["input_errors"] + stats["model_errors"]
    del stats["ok"]
    return stats


def check_error_rate(counts: dict, max_error_rate: float) -> None:
    """Fail the run when more than ``max_error_rate`` of the rows sent to the model failed in it.

    Rows with bad input never reach the model, so they count neither way.

    Raises:
        ModelErrorRateExceeded: with the counts and what happens next.
    """
    failed = counts.get("model_errors", 0)
    sent = counts.get("scored", 0) - counts.get("input_errors", 0)
    if sent and failed / sent > max_error_rate:
        raise ModelErrorRateExceeded(
            f"{failed} of {sent} rows failed in the model ({failed / sent:.1%} > --max-error-rate {max_error_rate}); "
            "what was scored is written, the failed rows are marked 'model_failed: ...' and the next run "
            "scores them again"
        )


def open_tables(spark, cfg: ScoreConfig, record) -> tuple[tuple[str, str], int, dict]:
    """Check the model and the tables before anything is scored; record the input version.

    Returns:
        ``((model_name, model_hash), input_version, lineage)``; lineage as `lineage_for`.

    Raises:
        cli.UsageError: the model cannot be used (see `describe_model`), the input is not a Delta table,
            or the output table holds another task's columns.
    """
    model = describe_model(cfg.model, cfg.expect_model_hash, cfg.task)
    version = table_version(spark, cfg.input)
    if version is None:
        raise cli.UsageError(f"--input {cfg.input} is not a Delta table")
    ensure_output(spark, cfg)
    record.input_versions[cfg.input] = version
    return model, version, lineage_for(cfg, model, version, record)


def score_and_merge(spark, todo, cfg: ScoreConfig, lineage: dict, upsert: bool = False) -> tuple[Counter, dict, int]:
    """Score ``todo`` (rows of `find_todo`) and MERGE them into the output on (doc_id, model_hash).

    One pass scores everything and counts it (the rows are cached); the MERGE then reads the cached rows.
    A new (doc_id, model) row is inserted; an existing one is replaced when it is a model failure, and
    with ``upsert`` (nightly_score) also when its content_hash differs. Nothing to score: no MERGE, no commit.

    Returns:
        ``(stats, merged, retries)``: `tally`'s counts, ``{"inserted": n, "updated": n}`` of the MERGE,
        and how many times a conflicting MERGE was retried.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    scored = transform(spread(spark, todo, cfg), cfg, lineage, keep=("_status",)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stats = tally(scored)
        merged, retries = {"inserted": 0, "updated": 0}, 0
        if stats["scored"]:
            source, keys = scored.drop("_status"), [C.DOC_ID, C.MODEL_HASH]
            replace_if = retryable(F.col(f"t.{C.ERROR}"))

            def merge() -> dict[str, int]:
                if upsert:
                    return merge_upsert_changed(spark, cfg.output, source, keys, C.CONTENT_HASH, replace_if=replace_if)
                return merge_insert_new(spark, cfg.output, source, keys, replace_if=replace_if)

            merged, retries = retry_on_conflict(merge, what="MERGE")
    finally:
        scored.unpersist()
    return stats, merged, retries


def finish(spark, cfg: ScoreConfig, model: tuple[str, str], record, job: str) -> None:
    """Record the output version and model, log and print the counts, then check the error rate.

    Raises:
        ModelErrorRateExceeded: after everything is written and recorded in ``record``.
    """
    record.output_versions[cfg.output] = table_version(spark, cfg.output)
    record.extra.update(model_name=model[0], model_hash=model[1], task=cfg.task)
    log.info("%s %s %s with %s: %s", job, cfg.task, cfg.input, model[0], record.counts)
    print(json.dumps({"run_id": record.run_id, **record.counts}, sort_keys=True))
    check_error_rate(record.counts, cfg.max_error_rate)


def build_parser(description: str, stream: bool = True) -> argparse.ArgumentParser:
    """Flags map 1:1 onto ``ScoreConfig`` fields (``--config`` supplies base values); ``stream``: the
    ``--stream``/``--checkpoint`` pair (jobs/score.py only)."""
    p = cli.job_parser(description, ScoreConfig)
    p.add_argument("--input", help="input Delta table (default: LAKE/gold)")
    p.add_argument(
        "--model",
        help="model: a lakelm artifact folder or a local Hugging Face folder (gpt2, llama, "
        "mistral, qwen2 natively; other causal LMs and text encoders with lakelm[hf]; safetensors "
        "weights) (required)",
    )
    p.add_argument("--output", help="output Delta table (default: LAKE/scores)")
    p.add_argument("--task", choices=tasks.TASKS, help="what to compute for each row (udfs.tasks)")
    p.add_argument("--precision", choices=model_config.PRECISIONS, help="score/embed arithmetic")
    p.add_argument(
        "--pooling",
        choices=tasks.POOLINGS,
        help="embed: mean of the final hidden states over the text, or cls: the [CLS] "
        "position of a text encoder (BERT-style models only)",
    )
    p.add_argument(
        "--normalize",
        action="store_true",
        default=None,
        help="embed: L2-normalise each embedding (unit length; dot product = cosine similarity)",
    )
    for flag, typ, text in (
        ("--text-col", str, "input column holding the text"),
        ("--id-col", str, "input column holding the document id (cast to string)"),
        ("--partitions", int, "tasks the model runs in; 0 = spark.default.parallelism (all task slots)"),
        ("--sub-batch-rows", int, "rows per model call inside a task's Arrow batch"),
        ("--token-budget", int, "tokens per micro-batch; default: by device (2048 on CPU, 32768 on GPU)"),
        ("--max-rows", int, "rows per micro-batch at most"),
        ("--max-len", int, "tokens per window; default: the model's block_size"),
        ("--stride", int, "score: tokens between sliding windows; default: max_len // 2"),
        ("--max-new-tokens", int, "generate: tokens to generate per row"),
        ("--temperature", float, "generate: sampling temperature; 0 = greedy"),
        ("--top-k", int, "generate: sample from the k most likely tokens; none = all"),
        ("--top-p", float, "generate: nucleus sampling mass; none = off"),
        ("--seed", int, "generate: per-row seed, so outputs do not depend on batching"),
    ):
        p.add_argument(flag, type=typ, help=text)
    p.add_argument(
        "--max-error-rate",
        type=float,
        help="fail (exit 1, after writing) when more than this fraction of rows fails in the model; "
        "those rows are retried by the next run",
    )
    p.add_argument(
        "--expect-model-hash",
        metavar="HASH",
        help="refuse (exit 2) unless the model's hash is HASH (an artifact: sha256 of its manifest.json; "
        "a Hugging Face folder: sha256 of its config, weights and tokenizer files)",
    )
    if stream:
        p.add_argument("--stream", action="store_true", default=None, help="read the input as a Delta stream")
        p.add_argument("--checkpoint", help="streaming checkpoint folder (with --stream)")
    return p


def build_config(args: argparse.Namespace) -> ScoreConfig:
    """ScoreConfig from the parsed flags over ``--config`` (`cli.build_config`).

    Raises:
        cli.UsageError: no model, an unknown key, a bad table path or a value ScoreConfig refuses.
    """
    return cli.build_config(args, ScoreConfig, tables={"input": "gold", "output": "scores"}, required=("model",))
