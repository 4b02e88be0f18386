"""Batch inference as Spark UDFs: ``make_score_udf``, ``make_embed_udf``, ``make_generate_udf``, and
``make_loglikelihood_udf`` (two columns: context, continuation) for evaluation tasks.

Each is an iterator pandas UDF of one string column returning a struct (``udfs.tasks.SCHEMAS``): per
partition it takes the model from the worker's cache (``udfs.model_cache``, loaded on first use, on the
task's device with the task's CPUs as torch threads), cuts every Arrow batch into sub-batches of at most
``sub_batch_rows`` rows and runs the task's pure core (``udfs.tasks``) on each; rows map 1:1 and keep
their order, and bad rows get ``error`` instead of failing the task.

The UDF closures capture only the path and small options; the cache is reached through module-level
functions, which cloudpickle pickles by reference, so every task in a worker sees the same cache (a
dict referenced directly from the closure would be pickled by value: a fresh empty cache per task).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pandas as pd

from udfs.batching import DEFAULT_MAX_ROWS, DEFAULT_SUB_BATCH_ROWS
from udfs.model_cache import load_model_cached, task_device_and_threads
from udfs.tasks import CORES, LOGLIKELIHOOD_SCHEMA, SCHEMAS, TASKS, loglikelihood_pairs


def make_predict_fn(
    artifact_path: str,
    task: str,
    options: dict | None = None,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    model_fault: str | None = None,
) -> Callable[[pd.Series], pd.DataFrame]:
    """Load (or reuse) the model for this task's device and return ``predict(texts) -> DataFrame``.

    Called once per UDF invocation (per partition) on the executor: sets torch's threads to the task's
    CPUs, picks the device, takes the model from the per-process cache.

    Args:
        artifact_path: the artifact folder.
        task: ``"score"``, ``"embed"`` or ``"generate"``.
        options: keyword options of the task's core function (`score_texts`, ...); None = defaults.
        expected_hash: see `load_model_cached`.
        load_log_dir: see `load_model_cached`.
        model_fault: tests only: the model fails on inputs holding this text (``udfs.faults.failing_model``);
            None = no fault.

    Returns:
        A function from a Series of texts to the task's output DataFrame (same index).
    """
    import torch

    if task not in CORES:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    device, threads = task_device_and_threads()
    if threads is not None:
        torch.set_num_threads(threads)
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # tokenizers' pool, before its first use
    art = load_model_cached(artifact_path, device, expected_hash, load_log_dir)
    core, opts = CORES[task], dict(options or {})

    def predict(texts: pd.Series) -> pd.DataFrame:
        if model_fault:
            from udfs.faults import failing_model

            with failing_model(art.model, art.tokenizer, model_fault):
                return core(art.model, art.tokenizer, texts, **opts)
        return core(art.model, art.tokenizer, texts, **opts)

    return predict


def make_task_udf(
    task: str,
    artifact_path: str,
    *,
    sub_batch_rows: int = DEFAULT_SUB_BATCH_ROWS,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    **options,
):
    """The UDF of ``task`` (``"score"``, ``"embed"`` or ``"generate"``): `make_score_udf` and friends by name.

    Args:
        task: which core runs (`score_texts`, `embed_texts`, `generate_texts`).
        artifact_path: artifact folder readable by every executor.
        sub_batch_rows: rows processed together (> 0).
        expected_hash: refuse to run if the artifact's hash differs; None = accept any.
        load_log_dir: folder for per-load marker files; None = ``$LAKELM_LOAD_LOG_DIR``.
        **options: keyword options of the task's core function.

    Returns:
        An iterator pandas UDF of one string column returning ``SCHEMAS[task]``.

    Raises:
        ValueError: for an unknown task or a non-positive ``sub_batch_rows``.
        TypeError: for an option the task's core does not take.
    """
    from pyspark.sql.functions import pandas_udf

    if task not in CORES:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if sub_batch_rows <= 0:
        raise ValueError(f"sub_batch_rows must be > 0, got {sub_batch_rows}")
    _check_options(task, options)
    from udfs.faults import model_fault_marker

    model_fault = model_fault_marker()  # test-only switch, read here on the driver; the closure carries it

    @pandas_udf(SCHEMAS[task])
    def infer(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        predict = make_predict_fn(artifact_path, task, options, expected_hash, load_log_dir, model_fault)
        for texts in batches:
            for start in range(0, len(texts), sub_batch_rows):
                yield predict(texts.iloc[start : start + sub_batch_rows]).reset_index(drop=True)

    return infer


def _check_options(task: str, options: dict) -> None:
    """Fail on the driver for option names the task's core does not take."""
    import inspect

    allowed = [p.name for p in inspect.signature(CORES[task]).parameters.values() if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"unknown {task} options {unknown}; allowed: {allowed}")


def make_score_udf(
    artifact_path: str,
    *,
    sub_batch_rows: int = DEFAULT_SUB_BATCH_ROWS,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    **options,
):
    """Iterator pandas UDF: text -> struct of log-likelihood scores (see `score_texts`).

    Per partition the model is taken from the worker's cache (loaded on first use); each Arrow batch
    is cut into sub-batches of at most ``sub_batch_rows`` rows, each tokenised, sorted by length and
    run in token-budgeted micro-batches. Rows map 1:1 and keep their order; bad rows get ``error``.

    Args:
        artifact_path: artifact folder readable by every executor.
        sub_batch_rows: rows processed together (bounds memory; Delta scans send 4096-row batches).
        expected_hash: refuse to run if the artifact's hash differs (pass ``artifact_hash`` from the driver).
        load_log_dir: folder for per-load marker files (tests); None = ``$LAKELM_LOAD_LOG_DIR``.
        **options: `score_texts` keyword options: ``token_budget``, ``max_len``, ``stride``, ``max_rows``.

    Returns:
        A UDF of one string column returning ``struct<sum_logprob double, n_tokens int, mean_nll double,
        perplexity double, bits_per_byte double, n_windows int, error string>``.

    Raises:
        TypeError: for an option `score_texts` does not take.

    Example:
        >>> df = spark.createDataFrame([("hello",), (None,)], "text string")         # doctest: +SKIP
        >>> df.select(make_score_udf("models/m1")("text").alias("s")).select("s.n_tokens", "s.error").show()
        +--------+---------+
        |n_tokens|    error|
        +--------+---------+
        |       5|     NULL|
        |    NULL|null_text|
        +--------+---------+
    """
    return make_task_udf(
        "score",
        artifact_path,
        sub_batch_rows=sub_batch_rows,
        expected_hash=expected_hash,
        load_log_dir=load_log_dir,
        **options,
    )


def make_embed_udf(
    artifact_path: str,
    *,
    sub_batch_rows: int = DEFAULT_SUB_BATCH_ROWS,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    **options,
):
    """Iterator pandas UDF: text -> struct<embedding array<float>, n_tokens int, truncated boolean, error string>.

    Batching, caching and errors as in `make_score_udf`; the embedding is `embed_texts`' mean-pooled
    final hidden state (n_embd floats) of the first ``max_len`` tokens.

    Args:
        artifact_path: artifact folder readable by every executor.
        sub_batch_rows: rows processed together.
        expected_hash: refuse to run if the artifact's hash differs.
        load_log_dir: folder for per-load marker files; None = ``$LAKELM_LOAD_LOG_DIR``.
        **options: `embed_texts` keyword options: ``token_budget``, ``max_len``, ``max_rows``.

    Returns:
        The UDF (one string column in, the struct out).

    Example:
        >>> df.select(make_embed_udf("models/m1")("text").alias("e")).select("e.embedding")  # doctest: +SKIP
    """
    return make_task_udf(
        "embed",
        artifact_path,
        sub_batch_rows=sub_batch_rows,
        expected_hash=expected_hash,
        load_log_dir=load_log_dir,
        **options,
    )


def make_generate_udf(
    artifact_path: str,
    *,
    sub_batch_rows: int = DEFAULT_SUB_BATCH_ROWS,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    **options,
):
    """Iterator pandas UDF: prompt -> struct<generated string, n_new_tokens int, finish_reason string,
    truncated boolean, error string>.

    Batching, caching and errors as in `make_score_udf`; decoding as in `generate_texts` (KV cache,
    stop at EOS, per-row seeded sampling so results do not depend on batching).

    Args:
        artifact_path: artifact folder readable by every executor.
        sub_batch_rows: rows processed together.
        expected_hash: refuse to run if the artifact's hash differs.
        load_log_dir: folder for per-load marker files; None = ``$LAKELM_LOAD_LOG_DIR``.
        **options: `generate_texts` keyword options: ``max_new_tokens``, ``temperature``, ``top_k``,
            ``top_p``, ``seed``, ``token_budget``, ``max_rows``.

    Returns:
        The UDF (one string column in, the struct out).

    Example:
        >>> df.select(make_generate_udf("models/m1", max_new_tokens=32, temperature=0)("prompt").alias("g"))
        ... # doctest: +SKIP
    """
    return make_task_udf(
        "generate",
        artifact_path,
        sub_batch_rows=sub_batch_rows,
        expected_hash=expected_hash,
        load_log_dir=load_log_dir,
        **options,
    )


def make_loglikelihood_udf(
    artifact_path: str,
    *,
    sub_batch_rows: int = DEFAULT_SUB_BATCH_ROWS,
    expected_hash: str | None = None,
    load_log_dir: str | None = None,
    token_budget: int | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    precision: str = "fp32",
):
    """Iterator pandas UDF: (context, continuation) -> struct of the continuation's log-likelihood.

    Per partition the model is taken from the worker's cache (``load_model_cached``, as in
    `make_score_udf`); each Arrow batch is cut into sub-batches of at most ``sub_batch_rows`` rows and
    scored by `loglikelihood_pairs` (lm-eval's split of the tokens, left truncation to block_size,
    length-bucketed micro-batches). Rows map 1:1 and keep their order; bad rows get ``error``.

    Args:
        artifact_path: a lakelm artifact or Hugging Face folder readable by every executor.
        sub_batch_rows: rows processed together (> 0).
        expected_hash: refuse to run if the model's hash differs (pass the hash the driver saw).
        load_log_dir: folder for per-load marker files (tests); None = ``$LAKELM_LOAD_LOG_DIR``.
        token_budget: most ``rows x padded_tokens`` per forward pass; None = by device.
        max_rows: most rows per forward pass; None = only the budget limits it.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``.

    Returns:
        A UDF of two string columns returning ``struct<sum_logprob double, token_logprobs array<double>,
        n_tokens int, is_greedy boolean, truncated boolean, error string>``.

    Raises:
        ValueError: for a non-positive ``sub_batch_rows``.

    Example:
        >>> df = spark.createDataFrame([("The cat", " sat")], "context string, continuation string")  # doctest: +SKIP
        >>> df.select(make_loglikelihood_udf("models/m1")("context", "continuation").alias("r")).select("r.*")
        +-----------+--------------+--------+---------+---------+-----+
        |sum_logprob|token_logprobs|n_tokens|is_greedy|truncated|error|
        +-----------+--------------+--------+---------+---------+-----+
        |      -3.21|       [-3.21]|       1|     true|    false| NULL|
        +-----------+--------------+--------+---------+---------+-----+
    """
    from pyspark.sql.functions import pandas_udf

    if sub_batch_rows <= 0:
        raise ValueError(f"sub_batch_rows must be > 0, got {sub_batch_rows}")
    opts = {"token_budget": token_budget, "max_rows": max_rows, "precision": precision}

    @pandas_udf(LOGLIKELIHOOD_SCHEMA)
    def loglikelihood(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        import torch

        device, threads = task_device_and_threads()
        if threads is not None:
            torch.set_num_threads(threads)
            os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
        art = load_model_cached(artifact_path, device, expected_hash, load_log_dir)
        for contexts, continuations in batches:
            for start in range(0, len(contexts), sub_batch_rows):
                ctx = contexts.iloc[start : start + sub_batch_rows].reset_index(drop=True)
                cont = continuations.iloc[start : start + sub_batch_rows].reset_index(drop=True)
                yield loglikelihood_pairs(art.model, art.tokenizer, ctx, cont, **opts).reset_index(drop=True)

    return loglikelihood
