"""Delta Lake I/O shared by the jobs: create-if-missing, insert-only MERGE, versions, history.

On a classic session every table identity is passed to Delta's API as a path (``DeltaTable.forPath``),
never spliced into SQL strings. On a Spark Connect session that Python API needs Delta Connect's
server plugin, which a server started from pyspark (``SPARK_REMOTE=local[N]``) does not have, so the
same operations go through Delta's SQL (``DESCRIBE HISTORY``, ``CREATE TABLE IF NOT EXISTS``,
``MERGE INTO``) on ``delta.`path``` with backticks doubled (`table_ref`); the jobs' paths have passed
`jobs.common.lake.validate_table_path` (no quotes, backticks, ``;`` or control characters) before they get here.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_FLAG = "_lakelm_update"  # source column of a Connect MERGE: the row's update condition, evaluated first


def _connect(spark) -> bool:
    from jobs.common.spark import is_connect

    return is_connect(spark)


def table_ref(path: str) -> str:
    """The SQL name of the Delta table at ``path``: ``delta.`path``` with backticks doubled."""
    return "delta.`" + str(path).replace("`", "``") + "`"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _sql_string(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ddl(schema) -> str:
    """Column list for CREATE TABLE from a ``StructType`` (a DDL string is returned as given)."""
    if isinstance(schema, str):
        return schema
    return ", ".join(
        f"{_quote(f.name)} {f.dataType.simpleString()}" + ("" if f.nullable else " NOT NULL") for f in schema.fields
    )


def plain_strings(df):
    """``df`` with every column that holds strings given its plain type by the server (Spark Connect only).

    A Spark Connect client (pyspark 4.2) sends every string type with its collation spelled out, and the
    server writes such a column into the Delta schema as ``string collate UTF8_BINARY``, which other
    engines (delta-rs) cannot read. ``CAST(c AS <type>)`` parsed on the server gives the plain type back,
    nested strings included. Every DataFrame the jobs write passes through here (`delta_writer`); on a
    classic session it is returned unchanged.
    """
    if not _connect(df.sparkSession):
        return df
    from pyspark.sql import functions as F

    cols = []
    for f in df.schema.fields:
        ddl = f.dataType.simpleString()
        col = F.expr(f"CAST({_quote(f.name)} AS {ddl})") if "string" in ddl else F.col(_quote(f.name))
        cols.append(col.alias(f.name))
    return df.select(*cols)


def delta_writer(df):
    """``df.write.format("delta")`` after `plain_strings`: the one way the jobs write a Delta table, so no
    Connect client's collated string type reaches a Delta schema (a unit test holds every job to it)."""
    return plain_strings(df).write.format("delta")


def history(spark, path: str, limit: int | None = None):
    """The commits of the Delta table at ``path``, newest first (``DESCRIBE HISTORY``'s columns).

    Args:
        spark: the session, classic or Spark Connect.
        path: an existing Delta table.
        limit: only the newest ``limit`` commits; None = all.

    Returns:
        A DataFrame with ``version``, ``operation``, ``operationMetrics``, ``userMetadata``, ...
    """
    if not _connect(spark):
        from delta.tables import DeltaTable

        table = DeltaTable.forPath(spark, path)
        return table.history(limit) if limit else table.history()
    return spark.sql(f"DESCRIBE HISTORY {table_ref(path)}" + (f" LIMIT {int(limit)}" if limit else ""))


def is_delta_table(spark, path: str) -> bool:
    """True when ``path`` holds a Delta table (False for a missing folder or plain files)."""
    if not _connect(spark):
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(spark, path)
    return table_version(spark, path) is not None


def ensure_table(spark, path: str, schema, partition_by: list[str] | None = None, properties=None):
    """Create an empty Delta table at ``path`` with ``schema`` unless one exists there.

    Args:
        spark: the session.
        path: table location.
        schema: a ``StructType`` or DDL string for the new table.
        partition_by: partition columns, or None.
        properties: Delta table properties (dict of str), or None.

    Returns:
        The ``DeltaTable`` (None on a Spark Connect session, where the table is created with SQL).
    """
    if _connect(spark):
        partitions = f" PARTITIONED BY ({', '.join(map(_quote, partition_by))})" if partition_by else ""
        props = ", ".join(f"{_sql_string(k)} = {_sql_string(v)}" for k, v in (properties or {}).items())
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {table_ref(path)} ({_ddl(schema)}) USING delta{partitions}"
            + (f" TBLPROPERTIES ({props})" if props else "")
        )
        return None
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


def _merge_sql(spark, path: str, df, keys: list[str], update_if=None) -> None:
    """Spark Connect's MERGE: ``df`` into the table at ``path`` through ``MERGE INTO`` SQL.

    Rows whose ``keys`` are new are inserted; with ``update_if`` (a Column over target ``t`` and source
    ``s``), a matching row is replaced where it holds. A Column cannot be written as SQL, so it is
    evaluated first, by joining ``df`` to the table's current rows, into a flag column the MERGE reads.
    """
    import uuid

    from pyspark.sql import functions as F

    columns = list(df.columns)
    source = df
    if update_if is not None:
        target = spark.read.format("delta").load(path).alias("t")
        source = (
            df.alias("s")
            .join(target, _key_condition(keys), "left")
            .select(*[F.col(f"s.{_quote(c)}") for c in columns], F.coalesce(update_if, F.lit(False)).alias(_FLAG))
        )
    view = f"lakelm_merge_{uuid.uuid4().hex}"
    source.createOrReplaceTempView(view)
    on = " AND ".join(f"t.{_quote(k)} <=> s.{_quote(k)}" for k in keys)
    names = ", ".join(map(_quote, columns))
    values = ", ".join(f"s.{_quote(c)}" for c in columns)
    update = ""
    if update_if is not None:
        assignments = ", ".join(f"t.{_quote(c)} = s.{_quote(c)}" for c in columns)
        update = f" WHEN MATCHED AND s.{_FLAG} THEN UPDATE SET {assignments}"
    try:
        spark.sql(
            f"MERGE INTO {table_ref(path)} AS t USING {view} AS s ON {on}{update} "
            f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        )
    finally:
        spark.catalog.dropTempView(view)


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
    before = table_version(spark, path)
    if _connect(spark):
        _merge_sql(spark, path, df, keys, replace_if)
    else:
        from delta.tables import DeltaTable

        merge = DeltaTable.forPath(spark, path).alias("t").merge(df.alias("s"), _key_condition(keys))
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
    row = history(spark, path, 1).select("version", "operationMetrics").first()
    return int(row.version), dict(row.operationMetrics or {})


def last_operation_metrics(spark, path: str) -> dict[str, str]:
    """operationMetrics of the table's latest commit (strings, as Delta records them)."""
    return last_commit(spark, path)[1]


def table_version(spark, path: str) -> int | None:
    """Latest committed version of the Delta table at ``path``; None if there is no table."""
    if _connect(spark):
        from pyspark.errors import AnalysisException

        try:  # DESCRIBE HISTORY of a folder that holds no Delta table is an analysis error
            return int(history(spark, path, 1).select("version").first()[0])
        except AnalysisException:
            return None
    if not is_delta_table(spark, path):
        return None
    return int(history(spark, path, 1).select("version").first()[0])


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
        delta_writer(df).mode("append").option("mergeSchema", "true").save(path)
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
    from pyspark.sql import functions as F

    before = table_version(spark, path)
    changed = ~F.col(f"t.`{version_col}`").eqNullSafe(F.col(f"s.`{version_col}`"))
    if replace_if is not None:
        changed = changed | replace_if
    if _connect(spark):
        _merge_sql(spark, path, df, keys, changed)
    else:
        from delta.tables import DeltaTable

        (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(df.alias("s"), _key_condition(keys))
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
