"""Pandas UDF adapter for MinHash signatures (CLI: jobs/dedup.py, pure core: udfs/curation/minhash.py)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

MINHASH_SCHEMA = "minhash_signature array<bigint>, minhash_bands array<bigint>, minhash_flag string"


def minhash_frame(texts: pd.Series, cfg) -> pd.DataFrame:
    """Signatures (as int64 bit patterns, Spark's LongType), band hashes and flags for a batch."""
    from udfs.curation.minhash import minhash_batch

    out = minhash_batch(texts, cfg)
    sigs = [np.asarray(s, dtype=np.uint64).view(np.int64) for s in out["minhash_signature"]]
    return pd.DataFrame(
        {
            "minhash_signature": sigs,
            "minhash_bands": list(out["minhash_bands"]),
            "minhash_flag": out["minhash_flag"].tolist(),
        }
    )


def make_minhash_udf(cfg):
    """Iterator pandas UDF: text -> struct<minhash_signature, minhash_bands, minhash_flag>.

    Per Arrow batch: simplify, shingle, hash and take the minimum under ``cfg.num_perm`` permutations
    with numpy (one vectorised pass per batch, see `udfs.curation.minhash.minhash_signatures`).
    Rows map 1:1 and keep their order; a null or empty text gets the all-max signature and flag
    ``empty`` (the job keeps such documents out of fuzzy matching).
    """
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(MINHASH_SCHEMA)
    def minhash(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for texts in batches:
            yield minhash_frame(texts.reset_index(drop=True), cfg)

    return minhash


def shingle_frame(texts: pd.Series, n_grams: int) -> pd.Series:
    """Sorted unique shingle hashes (int64 bit patterns) of each text, for exact Jaccard checks."""
    from udfs.curation.minhash import shingle_hashes

    return pd.Series(
        [
            np.unique(shingle_hashes(t, n_grams)).view(np.int64) if isinstance(t, str) else np.zeros(0, np.int64)
            for t in texts
        ]
    )


def make_shingles_udf(n_grams: int):
    """Iterator pandas UDF: text -> array<bigint> of its unique word n-gram hashes."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("array<bigint>")
    def shingles(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for texts in batches:
            yield shingle_frame(texts.reset_index(drop=True), n_grams)

    return shingles
