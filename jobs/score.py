"""Batch inference over a Delta table: score, embed or generate for every row with a model artifact.

    spark-submit --properties-file spark-defaults.conf jobs/score.py \\
        --input lake/gold --model models/m1 --task score --output lake/scores \\
        [--text-col text] [--id-col doc_id] [--lake lake] [--stream --checkpoint DIR] [--config f.json] \\
        [--token-budget N] [--precision fp32|bf16|auto] [--max-rows 64] [--max-len N] [--stride N] \\
        [--max-new-tokens 64] [--pooling mean|cls] [--normalize] [--max-error-rate 0.01] [--expect-model-hash HASH] ...

Reads the input at its latest Delta version and writes one row per (doc_id, model_hash) with the
task's outputs (see ``udfs.tasks``), ``content_hash`` of the text and lineage (model_name,
model_hash, input_table, input_version, run_id, scored_at). Rows already scored by this model are
skipped and the write is a MERGE on (doc_id, model_hash), so a rerun writes nothing and commits
nothing. Changed texts are rescored by ``jobs/nightly_score.py``, not here.

Errors: a row whose input is bad (``null_text``, ``empty_text``, ``encode_failed: ...``) is done, with
its reason. A row the model failed on (``model_failed: ...``: out of memory, a CUDA fault) is written
too, but it is retryable: the next run (and nightly_score) scores it again and replaces it. When more
than ``--max-error-rate`` (default 0.01) of the rows sent to the model failed in it, the run still
writes what it scored, is recorded as ``failed`` with its counts (``input_errors``, ``model_errors``,
``retried``), and exits 1. ``--expect-model-hash HASH`` refuses (exit 2) an artifact with another hash
before anything is loaded or written: the manifest check alone proves integrity, not identity.

``--stream``: the input is read as a Delta stream (append-only tables) and every micro-batch is
scored and MERGEd by ``foreachBatch`` with ``trigger(availableNow=True)``: everything new since the
checkpoint is processed, then the job ends. The counts and run record are those of the whole run;
``input_version`` is the table version when the run started (what availableNow reads up to).
Changes other than appends make the Delta stream fail: score such tables with nightly_score. Rows an
earlier run failed on in the model are not in the stream again; a streaming run rescores them first
(from the input at that version), then processes the stream.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from dataclasses import asdict, dataclass

from jobs import cli
from jobs.delta_io import (
    ensure_table,
    merge_insert_new,
    retry_on_conflict,
    table_version,
)
from jobs.spark import get_spark
from model import config as model_config
from udfs import batching, inference, tasks
from udfs import columns as C

log = logging.getLogger("jobs.score")

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
    return rows.repartition(cfg.partitions or spark.sparkContext.defaultParallelism)


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
    from pyspark.sql.types import _parse_datatype_string

    schema = _parse_datatype_string(output_schema(cfg.task))
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


def score_new(spark, rows, cfg: ScoreConfig, lineage: dict, counts: dict) -> None:
    """Score the rows this model has not scored yet, or failed on, and MERGE them; add to ``counts``."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    todo = spread(spark, find_todo(spark, rows, cfg, lineage[C.MODEL_HASH]), cfg)
    scored = transform(todo, cfg, lineage, keep=("_status",)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stats = tally(scored)
        merged, retries = {"inserted": 0, "updated": 0}, 0
        if stats["scored"]:  # nothing to do: no MERGE, no commit
            merged, retries = retry_on_conflict(
                lambda: merge_insert_new(
                    spark,
                    cfg.output,
                    scored.drop("_status"),
                    [C.DOC_ID, C.MODEL_HASH],
                    replace_if=retryable(F.col(f"t.{C.ERROR}")),
                ),
                what="MERGE",
            )
    finally:
        scored.unpersist()
    for key, n in (
        ("scored", stats["scored"]),
        ("errors", stats["errors"]),
        ("input_errors", stats["input_errors"]),
        ("model_errors", stats["model_errors"]),
        ("retried", stats["retried"]),
        ("written", merged["inserted"] + merged["updated"]),
        ("replaced", merged["updated"]),
        ("merge_retries", retries),
    ):
        counts[key] = counts.get(key, 0) + n


def run(spark, cfg: ScoreConfig, record) -> None:
    """The job body (``cli.run_job`` records it): check the model and tables, score, MERGE, count."""
    model = describe_model(cfg.model, cfg.expect_model_hash, cfg.task)
    version = table_version(spark, cfg.input)
    if version is None:
        raise cli.UsageError(f"--input {cfg.input} is not a Delta table")
    ensure_output(spark, cfg)
    record.input_versions[cfg.input] = version
    lineage = lineage_for(cfg, model, version, record)
    counts = record.counts
    if cfg.stream:  # rows earlier runs failed on are behind the checkpoint: rescore them from the table first
        from pyspark.sql import functions as F

        failed = (
            spark.read.format("delta")
            .load(cfg.output)
            .filter(F.col(C.MODEL_HASH) == model[1])
            .filter(retryable(F.col(C.ERROR)))
            .select(C.DOC_ID)
        )
        if not failed.isEmpty():  # else no full read of the input
            df = spark.read.format("delta").option("versionAsOf", version).load(cfg.input)
            score_new(spark, prepare(df, cfg).join(failed, C.DOC_ID, "left_semi"), cfg, lineage, counts)

        def each_batch(batch, epoch_id: int) -> None:
            counts["rows"] = counts.get("rows", 0) + batch.count()
            score_new(spark, prepare(batch, cfg), cfg, lineage, counts)

        source = spark.readStream.format("delta").load(cfg.input)
        query = (
            source.writeStream.foreachBatch(each_batch)
            .option("checkpointLocation", cfg.checkpoint)
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
    else:
        df = spark.read.format("delta").option("versionAsOf", version).load(cfg.input)
        counts["rows"] = df.count()
        score_new(spark, prepare(df, cfg), cfg, lineage, counts)
    for key in ("scored", "errors", "input_errors", "model_errors", "retried"):
        counts.setdefault(key, 0)
    record.output_versions[cfg.output] = table_version(spark, cfg.output)
    record.extra.update(model_name=model[0], model_hash=model[1], task=cfg.task)
    log.info("%s %s with %s: %s", cfg.task, cfg.input, model[0], counts)
    print(json.dumps({"run_id": record.run_id, **counts}, sort_keys=True))
    check_error_rate(counts, cfg.max_error_rate)


def build_parser(description: str, stream: bool = True) -> argparse.ArgumentParser:
    """Flags map 1:1 onto ``ScoreConfig`` fields (``--config`` supplies base values)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", help="JSON file of ScoreConfig fields; flags override it")
    p.add_argument("--input", help="input Delta table (default: LAKE/gold)")
    p.add_argument(
        "--model",
        help="model: a lakelm artifact folder or a local Hugging Face folder (gpt2, llama, "
        "mistral, qwen2 natively; other causal LMs and text encoders with lakelm[hf]; safetensors "
        "weights) (required)",
    )
    p.add_argument("--output", help="output Delta table (default: LAKE/scores)")
    p.add_argument("--task", choices=tasks.TASKS)
    p.add_argument("--precision", choices=model_config.PRECISIONS, help="score/embed arithmetic (default fp32)")
    p.add_argument(
        "--pooling",
        choices=tasks.POOLINGS,
        help="embed: mean of the final hidden states over the text (default), or cls: the [CLS] "
        "position of a text encoder (BERT-style models only)",
    )
    p.add_argument(
        "--normalize",
        action="store_true",
        default=None,
        help="embed: L2-normalise each embedding (unit length; dot product = cosine similarity)",
    )
    for flag, typ in (
        ("--text-col", str),
        ("--id-col", str),
        ("--partitions", int),
        ("--sub-batch-rows", int),
        ("--token-budget", int),
        ("--max-rows", int),
        ("--max-len", int),
        ("--stride", int),
        ("--max-new-tokens", int),
        ("--temperature", float),
        ("--top-k", int),
        ("--top-p", float),
        ("--seed", int),
    ):
        p.add_argument(flag, type=typ)
    p.add_argument(
        "--max-error-rate",
        type=float,
        help="fail (exit 1, after writing) when more than this fraction of rows fails in the model "
        "(default 0.01); those rows are retried by the next run",
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
    cli.add_lake_args(p)
    return p


def build_config(args) -> ScoreConfig:
    """ScoreConfig from parsed flags (+ ``--config``); raises cli.UsageError or ValueError."""
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "lake", "runs")}
    base = {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            base = json.load(f)
    for name, table in (("input", "gold"), ("output", "scores")):
        overrides[name] = cli.resolve_table(overrides.get(name) or base.get(name), args.lake, table, f"--{name}")
    if not (overrides.get("model") or base.get("model")):
        raise cli.UsageError("--model MODEL_FOLDER is required")
    return cli.load_config_file(args.config, ScoreConfig, overrides)


def main(argv: list[str] | None = None, job: str = "score") -> int:
    cli.setup_logging()
    args = build_parser(__doc__.splitlines()[0]).parse_args(argv)
    try:
        cfg = build_config(args)
        runs = cli.resolve_table(args.runs, args.lake, "runs", "--runs")
    except (cli.UsageError, ValueError, OSError) as exc:
        log.error("%s", exc)
        return cli.EXIT_USAGE
    log.info("config: %s", asdict(cfg))
    spark = get_spark(f"lakelm-{job}")
    return cli.run_job(job, asdict(cfg), runs, lambda rec: run(spark, cfg, rec), spark)


if __name__ == "__main__":
    sys.exit(main())
