"""The one SparkSession factory: every job, notebook and test gets its session here.

It reads the repository's ``spark-defaults.conf`` (the same file ``spark-submit --properties-file``
takes), so ``python -m jobs.X``, notebooks and ``spark-submit`` all run with one configuration.
Under ``spark-submit`` the session already exists with the submitted configuration; ``get_spark``
then returns it unchanged except for the app name.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "spark-defaults.conf"


def read_properties(path: str | os.PathLike) -> dict[str, str]:
    """Parse a Spark properties file (``key value`` or ``key=value`` lines, ``#`` comments).

    Args:
        path: the file to read.

    Returns:
        The properties in file order.

    Raises:
        ValueError: on a line with a key and no value, with its line number.
    """
    props: dict[str, str] = {}
    for lineno, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" in line.split(None, 1)[0]:
            key, _, value = line.partition("=")
        else:
            parts = line.split(None, 1)
            key, value = parts[0], parts[1] if len(parts) > 1 else ""
        key, value = key.strip(), value.strip()
        if not value:
            raise ValueError(f"{path}:{lineno}: property {key!r} has no value")
        props[key] = value
    return props


def _defaults_path() -> Path | None:
    """``$LAKELM_SPARK_CONF`` if set, else the repository's spark-defaults.conf when present."""
    env = os.environ.get("LAKELM_SPARK_CONF")
    if env:
        return Path(env)
    return DEFAULTS_FILE if DEFAULTS_FILE.exists() else None


def get_spark(app_name: str, master: str | None = None, conf: dict[str, str] | None = None):
    """Return the active SparkSession or build one configured from spark-defaults.conf.

    Args:
        app_name: the application name shown in logs and the Spark UI.
        master: Spark master URL; None keeps what spark-submit or ``$LAKELM_MASTER`` gave, else
            ``local[*]``.
        conf: extra properties that override the file (tests use this for small settings).

    Returns:
        A SparkSession with the Delta extension and catalog configured.

    Example:
        >>> spark = get_spark("explore")                                  # doctest: +SKIP
        >>> spark.read.format("delta").load("lake/bronze").count()       # doctest: +SKIP
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active

    # Executors must run the same interpreter as the driver (the project's venv), not the first
    # `python3` on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    from pyspark import SparkConf

    # Under spark-submit the JVM is already up and SparkConf() sees what was submitted
    # (--conf, --properties-file). Those win; the file only fills the keys still unset.
    submitted = SparkConf()
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder.appName(app_name)
    path = _defaults_path()
    if path is not None:
        for key, value in read_properties(path).items():
            if not (under_submit and submitted.contains(key)):
                builder = builder.config(key, value)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    master = master or os.environ.get("LAKELM_MASTER")
    if master:
        builder = builder.master(master)
    elif not under_submit:
        builder = builder.master("local[*]")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("LAKELM_SPARK_LOG_LEVEL", "WARN"))
    log.info("Spark %s session %r on %s", spark.version, app_name, spark.sparkContext.master)
    return spark
