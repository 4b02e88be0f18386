"""Pandas UDF adapter for the curation chain (CLI: jobs/curate.py, pure core: udfs/curation/curate.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd


def curate_schema(cfg) -> str:
    """DDL of the UDF's struct: the columns of ``curate_batch`` for this config."""
    from udfs.curation.curate import output_schema

    return ", ".join(f"{name} {dtype}" for name, dtype in output_schema(cfg))


def make_curate_udf(cfg, index=None):
    """Iterator pandas UDF: raw text -> struct of curated text, ``drop_reason``, language, PII counts
    and quality signals (see ``udfs.curation.curate.curate_batch``).

    Per Arrow batch the whole chain runs once (language ID as one matrix product per batch, the
    filters per document, decontamination as one scan of the batch's kept texts). Rows map 1:1 and
    keep their order; the closure captures ``cfg`` (a frozen dataclass) and, with decontamination on,
    the ``NGramIndex`` built on the driver (2.8 MB pickled for the shared evaluation tasks; PySpark
    broadcasts a closure over 1 MB), and the language model loads lazily once per Python worker.

    Example:
        >>> df.select(make_curate_udf(CurationConfig())("text").alias("c")).select("c.*")  # doctest: +SKIP
    """
    from pyspark.sql.functions import pandas_udf

    from udfs.curation.curate import curate_batch

    @pandas_udf(curate_schema(cfg))
    def curate(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for texts in batches:
            yield curate_batch(texts.reset_index(drop=True), cfg, index)

    return curate


def make_quality_score_udf(model):
    """Series pandas UDF: text -> the quality classifier's probability of the positive class (double).

    Per Arrow batch, one compiled pass over the batch's UTF-8 bytes (``udfs.curation.hashed_linear``):
    the Spark ML pipeline's features and logistic regression, without the JVM feature stages. Rows map
    1:1; a null text scores as the empty string. The closure captures ``model`` (``HashedLinearModel``:
    2 MB of weights at the default 262,144 buckets; PySpark broadcasts a closure over 1 MB).

    Example:
        >>> df.withColumn("quality_score", make_quality_score_udf(model)("text"))  # doctest: +SKIP
    """
    from pyspark.sql.functions import pandas_udf

    from udfs.curation.hashed_linear import score_texts

    @pandas_udf("double")
    def quality_score(texts: pd.Series) -> pd.Series:
        return pd.Series(score_texts(model, texts))

    return quality_score
