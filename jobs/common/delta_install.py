"""The Delta Lake jars on pyspark's classpath: which version, where Ivy caches them, resolving and installing them.

Used by ``python -m jobs.delta_jars`` (the CLI, run once by ``make``). Ivy runs inside a throwaway local session and
its resolution report goes to a file, not the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
from pathlib import Path

log = logging.getLogger("jobs.delta_jars")  # its lines are the delta_jars CLI's


# delta-spark 4.4.x is built for Spark 4.2 (its POM depends on spark-sql_2.13:4.2.0). 4.4.0 is
# the newest 4.4 release published on Maven Central when this was pinned; the pip package
# delta-spark is pinned to the same version in setup.py.
DELTA_VERSION = "4.4.0"
DELTA_PACKAGE = f"io.delta:delta-spark_2.13:{DELTA_VERSION}"
MARKER_JAR = f"io.delta_delta-spark_2.13-{DELTA_VERSION}.jar"  # Ivy's <group>_<artifact>-<version>
# Ivy's default host sometimes does not answer; Maven Central's second host does.
FALLBACK_REPOSITORY = "https://repo.maven.apache.org/maven2"

_VERSION_SUFFIX = re.compile(r"-\d[\w.\-]*\.jar$")


def cache_dir() -> Path:
    """Folder that holds the Ivy cache (survives re-clones and `make clean`)."""
    return Path(os.environ.get("LAKELM_CACHE", Path.home() / ".cache" / "lakelm"))


def pyspark_jars_dir() -> Path:
    """The ``jars/`` folder of the installed pyspark (Spark's classpath for local runs)."""
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def artifact_name(jar_name: str) -> str:
    """Artifact name without group or version, to compare Ivy's jars with pyspark's.

    Ivy names jars ``<group>_<artifact>-<version>.jar`` (``io.delta_delta-storage-4.4.0.jar``);
    pyspark ships ``<artifact>-<version>.jar``. Both map to ``delta-storage``.
    """
    name = jar_name.split("_", 1)[1] if "_" in jar_name and "." in jar_name.split("_", 1)[0] else jar_name
    return _VERSION_SUFFIX.sub("", name)


def jars_installed(jars_dir: Path | None = None) -> bool:
    """True when the Delta jar of ``DELTA_VERSION`` is on pyspark's classpath."""
    return ((jars_dir or pyspark_jars_dir()) / MARKER_JAR).exists()


@contextlib.contextmanager
def stderr_to(path: Path):
    """Send file descriptor 2 to ``path`` (appending) for the block: this process's and that of every child
    started inside it, such as the JVM whose Ivy prints a resolution report of hundreds of lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def report_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:]) if path.exists() else ""


def resolve_with_ivy(ivy_dir: Path, repositories: str | None = None) -> list[Path]:
    """Resolve ``DELTA_PACKAGE`` and its dependencies with Spark's own Ivy integration.

    Starts (and stops) a throwaway local SparkSession with ``spark.jars.packages``; Ivy writes the
    jars to ``ivy_dir/jars`` and its report to ``ivy_dir/resolve.log`` (not the terminal).

    Args:
        ivy_dir: Ivy home (cache) folder.
        repositories: extra Maven repositories, comma separated; None = Ivy's defaults.

    Returns:
        Paths of the resolved jar files.
    """
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[1]")
        .appName("lakelm-resolve-delta-jars")
        .config("spark.jars.packages", DELTA_PACKAGE)
        .config("spark.jars.ivy", str(ivy_dir))
        .config("spark.ui.enabled", "false")
    )
    if repositories:
        builder = builder.config("spark.jars.repositories", repositories)
    with stderr_to(ivy_dir / "resolve.log"):
        spark = builder.getOrCreate()
        spark.stop()
    return sorted((ivy_dir / "jars").glob("*.jar"))


def install_jars(resolved: list[Path], jars_dir: Path) -> list[str]:
    """Copy resolved jars into ``jars_dir``, skipping artifacts pyspark already ships.

    Returns:
        Names of the jars copied.
    """
    present = {artifact_name(p.name) for p in jars_dir.glob("*.jar")}
    copied = []
    for jar in resolved:
        if artifact_name(jar.name) in present:
            log.debug("skip %s: pyspark already ships %s", jar.name, artifact_name(jar.name))
            continue
        shutil.copy2(jar, jars_dir / jar.name)
        copied.append(jar.name)
    return copied
