"""Delta Lake I/O shared by the jobs: create-if-missing, insert-only MERGE, versions.

All table identities are passed to Delta's API as paths (``DeltaTable.forPath``), never spliced
into SQL strings.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def ensure_table(spark, path: str, schema, partition_by: list[str] | None = None, properties=None):
    """Create an empty Delta table at ``path`` with ``schema`` unless one exists there.

    Args:
        spark: the session.
        path: table location.
        schema: a ``StructType`` or DDL string for the new table.
        partition_by: partition columns, or None.
        properties: Delta table properties (dict of str), or None.

    Returns:
        The ``DeltaTable``.
    """
    from delta.tables import DeltaTable
    from pyspark.sql.types import _parse_datatype_string

    if isinstance(schema, str):
        schema = _parse_datatype_string(schema)
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    return builder.execute()


def _key_condition(keys: list[str]):
    """Null-safe equality of target ``t`` and source ``s`` on every key column, for MERGE."""
    from functools import reduce

    from pyspark.sql import functions as F

    return reduce(lambda a, b: a & b, [F.col(f"t.`{k}`").eqNullSafe(F.col(f"s.`{k}`")) for k in keys])


def merge_insert_new(spark, path: str, df, keys: list[str], replace_if=None) -> dict[str, int]:
    """Insert the rows of ``df`` whose ``keys`` are not yet in the table (and replace those ``replace_if``
    selects); change nothing else.

    Rerunning with the same ``df`` is a no-op, which makes the jobs idempotent. ``df`` must not hold
    two rows with the same keys (callers deduplicate first).

    Args:
        spark: the session.
        path: an existing Delta table (see `ensure_table`).
        df: rows to insert, with the table's columns.
        keys: columns that identify a row.
        replace_if: a condition on the target row ``t`` (and source row ``s``), e.g. "its last try
            failed": matching rows for which it holds are replaced by ``df``'s row. None = never.

    Returns:
        ``{"inserted": n, "updated": m}`` read from Delta's commit metrics.
    """
    from delta.tables import DeltaTable

    target = DeltaTable.forPath(spark, path)
    before = table_version(spark, path)
    cond = _key_condition(keys)
    merge = target.alias("t").merge(df.alias("s"), cond)
    if replace_if is not None:
        merge = merge.whenMatchedUpdateAll(condition=replace_if)
    merge.whenNotMatchedInsertAll().execute()
    if table_version(spark, path) == before:  # a MERGE that changes nothing commits nothing
        return {"inserted": 0, "updated": 0}
    metrics = last_operation_metrics(spark, path)
    return {
        "inserted": int(metrics.get("numTargetRowsInserted", 0)),
        "updated": int(metrics.get("numTargetRowsUpdated", 0)),
    }


def last_commit(spark, path: str) -> tuple[int, dict[str, str]]:
    """(version, operationMetrics) of the table's latest commit; metrics are strings, as Delta records them."""
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path).history(1).select("version", "operationMetrics").first()
    return int(row.version), dict(row.operationMetrics or {})


def last_operation_metrics(spark, path: str) -> dict[str, str]:
    """operationMetrics of the table's latest commit (strings, as Delta records them)."""
    return last_commit(spark, path)[1]


def table_version(spark, path: str) -> int | None:
    """Latest committed version of the Delta table at ``path``; None if there is no table."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])


def append_new(spark, path: str, df, keys: list[str]) -> int:
    """Append the rows of ``df`` whose ``keys`` are not in the table yet; new columns are added.

    For tables several jobs write with different extra columns (``rejected``): the schema grows
    (``mergeSchema``), the rows already there are left alone, so a rerun appends nothing.

    Returns:
        The number of rows appended.
    """
    from pyspark import StorageLevel

    if table_version(spark, path) is not None:
        existing = spark.read.format("delta").load(path).select(*keys).distinct()
        df = df.join(existing, keys, "left_anti")
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    n = df.count()
    if n:
        df.write.format("delta").mode("append").option("mergeSchema", "true").save(path)
    df.unpersist()
    return n


def merge_upsert_changed(spark, path: str, df, keys: list[str], version_col: str, replace_if=None) -> dict[str, int]:
    """Insert rows of ``df`` with new ``keys``; replace rows whose ``version_col`` differs; keep the rest.

    Used by incremental jobs whose rows are derived from an input row identified by ``keys`` and a
    content hash (``version_col``): a changed input replaces its old derived row, an unchanged one is
    left alone, so a rerun changes nothing and commits nothing. ``df`` must not hold two rows with the
    same keys.

    Args:
        spark: the session.
        path: an existing Delta table with ``df``'s columns.
        df: rows to upsert.
        keys: columns that identify a row.
        version_col: column whose change means the row must be replaced (null-safe comparison).
        replace_if: a further condition on target ``t`` / source ``s`` under which a matching row is
            replaced even when ``version_col`` is unchanged (a failed try); None = none.

    Returns:
        ``{"inserted": n, "updated": m}`` from Delta's commit metrics.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    target = DeltaTable.forPath(spark, path)
    before = table_version(spark, path)
    cond = _key_condition(keys)
    changed = ~F.col(f"t.`{version_col}`").eqNullSafe(F.col(f"s.`{version_col}`"))
    if replace_if is not None:
        changed = changed | replace_if
    (
        target.alias("t")
        .merge(df.alias("s"), cond)
        .whenMatchedUpdateAll(condition=changed)
        .whenNotMatchedInsertAll()
        .execute()
    )
    if table_version(spark, path) == before:
        return {"inserted": 0, "updated": 0}
    metrics = last_operation_metrics(spark, path)
    return {
        "inserted": int(metrics.get("numTargetRowsInserted", 0)),
        "updated": int(metrics.get("numTargetRowsUpdated", 0)),
    }


def is_write_conflict(exc: BaseException) -> bool:
    """True for Delta's optimistic-concurrency failures (another writer committed first)."""
    try:
        from delta import exceptions as dx

        kinds = (
            dx.DeltaConcurrentModificationException,
            dx.ConcurrentWriteException,
            dx.MetadataChangedException,
            dx.ProtocolChangedException,
            dx.ConcurrentAppendException,
            dx.ConcurrentDeleteReadException,
            dx.ConcurrentDeleteDeleteException,
            dx.ConcurrentTransactionException,
        )
    except ImportError:  # pragma: no cover - delta-spark is a dependency
        kinds = ()
    return isinstance(exc, kinds) or "DELTA_CONCURRENT" in str(exc)


def retry_on_conflict(fn, attempts: int = 2, what: str = "commit"):
    """Call ``fn()``; when another writer's commit makes it fail with a Delta conflict, call it again.

    Only safe for idempotent writes (insert-if-absent MERGEs, create-if-not-exists): the retry reads
    the winner's commit and skips what it already wrote.

    Args:
        fn: the write, with no arguments.
        attempts: total tries (>= 1); the last conflict is raised.
        what: how to name the write in the log.

    Returns:
        What ``fn`` returns, and the number of retries taken, as a tuple.
    """
    for attempt in range(attempts):
        try:
            return fn(), attempt
        except Exception as exc:
            if attempt == attempts - 1 or not is_write_conflict(exc):
                raise
            log.warning("%s conflicted with a concurrent writer (%s); retrying", what, type(exc).__name__)
    raise AssertionError("unreachable")  # pragma: no cover
