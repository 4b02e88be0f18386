"""Train/val assignment of documents for ``jobs/build_dataset.py``: deterministic, by document hash.

The assignment is a *rule* (a small JSON-able dict, kept in the dataset metadata under ``split``), so
any later job can recompute which split a document of the input table went to (`split_column`), e.g.
the report's per-source validation loss.

- Rank: every document gets ``bucket = |xxhash64(seed, 'split', doc_id)| % 1_000_000``; ties are
  broken by ``doc_id``. The rank does not depend on the table's size, partitioning or cluster.
- Plain split (default): val iff ``bucket < val_fraction * 1e6``, so a large table's val share is
  ``val_fraction`` and adding documents never moves an existing one.
- Stratified split (``stratify_by``, e.g. ``("source", "lang")``): within each stratum of ``n``
  documents the ``round(val_fraction * n)`` documents of smallest rank go to val (`stratum_val_count`),
  so val has the strata in train's proportions; a stratum too small for one val document stays train.
  The per-stratum cut (largest ``(bucket, doc_id)`` in val) is part of the rule.
- Small tables: when the split above leaves val empty and there are at least two documents, the
  non-empty document of smallest rank moves to val; when it leaves train empty, the one of largest
  rank moves to train. Those documents are listed in the rule (``forced_val`` / ``forced_train``).
- ``val_fraction == 0`` means no val split, explicitly (a warning is logged). A table with fewer
  than two documents cannot be split: `plan_split` raises ``ValueError`` (build_dataset exits 2).
"""

from __future__ import annotations

import logging
import math

from udfs import columns as C

log = logging.getLogger("jobs.transforms.splits")

BUCKETS = 1_000_000  # hash buckets; val_fraction has 1e-6 resolution
_NULL = "\x00null"  # stratum value standing for SQL NULL
_SEP = "\x1f"  # joins a stratum's values into one map key (unit separator: not in real column values)


def stratum_val_count(n_docs: int, val_fraction: float) -> int:
    """Val documents of a stratum of ``n_docs``: ``val_fraction * n_docs`` rounded half up.

    Args:
        n_docs: documents in the stratum (>= 0).
        val_fraction: in [0, 1).

    Returns:
        An int in ``[0, n_docs]``; 0 when the stratum is too small for one val document.

    Example:
        >>> [stratum_val_count(n, 0.05) for n in (9, 10, 104, 277)]
        [0, 1, 5, 14]
    """
    return min(n_docs, math.floor(val_fraction * n_docs + 0.5))


def check_split_request(n_docs: int, val_fraction: float) -> None:
    """Refuse a split that cannot be made, with what to do instead.

    Args:
        n_docs: documents in the input table.
        val_fraction: the requested val share, in [0, 1).

    Raises:
        ValueError: when ``val_fraction`` is outside [0, 1), the table is empty, or it has one document
            and ``val_fraction > 0`` (one document cannot be in both splits).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if n_docs == 0:
        raise ValueError("the input table has no documents")
    if n_docs == 1 and val_fraction > 0:
        raise ValueError(
            "the input table has 1 document: it cannot be split into train and val; "
            "pass --val-fraction 0 to build a train-only table (no validation loss)"
        )


def _bucket(seed: int):
    from pyspark.sql import functions as F

    return F.abs(F.xxhash64(F.lit(seed), F.lit("split"), F.col(C.DOC_ID))) % BUCKETS


def _stratum_key(columns):
    from pyspark.sql import functions as F

    return F.concat_ws(_SEP, *[F.coalesce(F.col(c).cast("string"), F.lit(_NULL)) for c in columns])


def _hash_split(bucket, rule: dict):
    """Boolean Column: val by the plain or stratified hash rule (before forced moves)."""
    from pyspark.sql import functions as F

    if not rule["stratify_by"]:
        return bucket < int(rule["val_fraction"] * BUCKETS)
    strata = rule["strata"]
    if not strata:
        return F.lit(False)
    key = _stratum_key(rule["stratify_by"])
    cut_bucket = F.create_map(*[x for s in strata for x in (F.lit(s["key"]), F.lit(s["cut_bucket"]))])
    cut_id = F.create_map(*[x for s in strata for x in (F.lit(s["key"]), F.lit(s["cut_doc_id"]))])
    b, d = F.try_element_at(cut_bucket, key), F.try_element_at(cut_id, key)  # null: no val in this stratum
    return F.coalesce((bucket < b) | ((bucket == b) & (F.col(C.DOC_ID) <= d)), F.lit(False))


def split_column(rule: dict):
    """The split of each document under ``rule``: a Column of ``'train'`` / ``'val'``.

    Args:
        rule: what `plan_split` returned (or the ``split`` entry of a dataset's metadata).

    Returns:
        A string Column over a DataFrame with ``doc_id`` and the ``stratify_by`` columns.
    """
    from pyspark.sql import functions as F

    if rule["val_fraction"] == 0:
        return F.lit("train")
    is_val = _hash_split(_bucket(rule["seed"]), rule)
    doc = F.col(C.DOC_ID)
    if rule["forced_val"]:
        is_val = is_val | doc.isin(rule["forced_val"])
    if rule["forced_train"]:
        is_val = is_val & ~doc.isin(rule["forced_train"])
    return F.when(is_val, "val").otherwise("train")


def _edge_doc(docs, rule: dict, split: str, smallest: bool) -> str:
    """doc_id of the smallest- (or largest-) rank document now in ``split``, non-empty text first."""
    from pyspark.sql import functions as F

    bucket = _bucket(rule["seed"])
    cands = docs.filter(split_column(rule) == split).select(
        C.DOC_ID, bucket.alias("b"), (F.coalesce(F.length(C.TEXT), F.lit(0)) == 0).alias("empty")
    )
    order = ["empty"] + ([F.col("b"), F.col(C.DOC_ID)] if smallest else [F.col("b").desc(), F.col(C.DOC_ID).desc()])
    return cands.orderBy(*order).first()[C.DOC_ID]


def plan_split(docs, seed: int, val_fraction: float, stratify_by: tuple[str, ...] = ()) -> dict:
    """Decide the train/val assignment of ``docs`` (reads ``doc_id`` and the strata columns only).

    One small aggregation (per stratum when stratified); tables whose hash split leaves a split
    empty (small ones) get one more query that also reads the text, to pick a non-empty document.

    Args:
        docs: DataFrame with ``doc_id`` (unique), ``text`` and the ``stratify_by`` columns.
        seed: hash seed (the same seed gives the same split).
        val_fraction: val share in [0, 1); 0 = no val split.
        stratify_by: column names whose value combinations are the strata; () = plain hash split.

    Returns:
        The rule: ``seed``, ``val_fraction``, ``stratify_by``, ``strata`` (per stratum: ``values``,
        ``key``, ``docs``, ``val``, ``cut_bucket``, ``cut_doc_id``), ``forced_val``, ``forced_train``,
        ``hash_val_docs`` (val documents before forced moves) and ``docs`` (documents per split).

    Raises:
        ValueError: as `check_split_request`, or a ``stratify_by`` column is missing.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    missing = [c for c in stratify_by if c not in docs.columns]
    if missing:
        raise ValueError(f"stratify_by columns {missing} are not in the input (it has {sorted(docs.columns)})")
    rule = {
        "seed": seed,
        "val_fraction": val_fraction,
        "stratify_by": list(stratify_by),
        "strata": [],
        "forced_val": [],
        "forced_train": [],
    }
    bucket = _bucket(seed)
    if stratify_by:
        by_stratum = Window.partitionBy(*stratify_by)
        ranked = (
            docs.select(*stratify_by, _stratum_key(stratify_by).alias("key"), C.DOC_ID, bucket.alias("b"))
            .withColumn("n", F.count(F.lit(1)).over(by_stratum))
            .withColumn("r", F.row_number().over(by_stratum.orderBy("b", C.DOC_ID)))
        )
        in_val = F.col("r") <= F.floor(F.col("n") * F.lit(val_fraction) + F.lit(0.5))
        rows = (
            ranked.groupBy(*stratify_by)
            .agg(
                F.first("key").alias("key"),
                F.first("n").alias("n"),
                F.sum(F.when(in_val, 1).otherwise(0)).alias("k"),
                F.max(F.when(in_val, F.struct("b", C.DOC_ID))).alias("cut"),
            )
            .collect()
        )
        for r in sorted(rows, key=lambda r: [str(r[c]) for c in stratify_by]):
            values = {c: None if r[c] is None else str(r[c]) for c in stratify_by}
            rule["strata"].append(
                {
                    "values": values,
                    "key": r["key"],
                    "docs": int(r["n"]),
                    "val": int(r["k"]),
                    "cut_bucket": int(r["cut"]["b"]) if r["cut"] else -1,
                    "cut_doc_id": r["cut"][C.DOC_ID] if r["cut"] else "",
                }
            )
        n_docs, n_val = sum(s["docs"] for s in rule["strata"]), sum(s["val"] for s in rule["strata"])
    else:
        row = docs.agg(
            F.count(F.lit(1)).alias("n"), F.sum(F.when(bucket < int(val_fraction * BUCKETS), 1).otherwise(0)).alias("k")
        ).first()
        n_docs, n_val = int(row["n"]), int(row["k"] or 0)
    check_split_request(n_docs, val_fraction)
    rule["hash_val_docs"] = n_val
    if val_fraction > 0 and n_val == 0:  # a small table: the hash split gave val nothing
        rule["forced_val"] = [_edge_doc(docs, rule, "train", smallest=True)]
        n_val = 1
    elif val_fraction > 0 and n_val == n_docs:  # every document landed in val
        rule["forced_train"] = [_edge_doc(docs, rule, "val", smallest=False)]
        n_val -= 1
    rule["docs"] = {"train": n_docs - n_val, "val": n_val}
    if val_fraction == 0:
        log.warning("val_fraction is 0: no val split; training will report no validation loss")
    log.info(
        "split: %d documents -> train %d, val %d (hash split gave val %d%s%s)",
        n_docs,
        n_docs - n_val,
        n_val,
        rule["hash_val_docs"],
        f"; moved to val {rule['forced_val']}" if rule["forced_val"] else "",
        f"; moved to train {rule['forced_train']}" if rule["forced_train"] else "",
    )
    for s in rule["strata"]:
        log.info("split stratum %s: %d documents, %d val", s["values"], s["docs"], s["val"])
    return rule
