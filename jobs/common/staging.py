"""Staging folders for intermediate results: written and read back as Parquet, deleted afterwards, no JVM call."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def parquet_stager(spark, folder: str):
    """``stage(df, name) -> df``: writes ``df`` as Parquet to ``folder/name`` and returns it read back.

    What a reliable checkpoint does (the plan is cut, the rows come from files that stream), through the
    public DataFrame API only, so it works on classic and Spark Connect sessions alike.
    """

    def stage(df, name: str):
        df.write.mode("overwrite").parquet(f"{folder}/{name}")
        return spark.read.parquet(f"{folder}/{name}")

    return stage


def delete_path(path: str) -> None:
    """Recursively delete the staging folder ``path`` from this process, with no JVM call.

    A local path (or ``file:``) is removed directly; a URI (``hdfs://``, ``s3://``, ``gs://``...)
    through pyarrow's file systems. A folder that cannot be deleted is logged with what to do, not
    raised: the job's tables are committed by then. With a remote Spark Connect server a local path
    names the server's disk, so point ``--checkpoint-dir`` at storage both can reach.
    """
    import os
    import shutil
    from urllib.parse import urlparse

    scheme = urlparse(path).scheme
    try:
        if scheme in ("", "file"):
            local = urlparse(path).path if scheme else path
            if os.path.exists(local):
                shutil.rmtree(local)
        else:
            from pyarrow import fs

            filesystem, inner = fs.FileSystem.from_uri(path)
            filesystem.delete_dir(inner)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the run's own outcome
        log.warning("could not delete the staging folder %s (%s): delete it by hand", path, exc)
