"""Resolve the Delta Lake jars once from Maven Central and put them on pyspark's classpath.

    python -m jobs.delta_jars            # resolve (network, first time only) and install
    python -m jobs.delta_jars --check    # exit 1 if the jars are not installed

Why this shape: ``spark.jars.packages`` would ask Ivy on every session start (network, seconds,
and a failure when offline). Instead Ivy runs once, into a cache folder outside the repository
(``$LAKELM_CACHE`` or ``~/.cache/lakelm``), and the resolved jars are copied into
``pyspark/jars``. Every entry point then sees Delta with no configuration and no network:
``python -m jobs.X``, ``spark-submit``, notebooks, and the standalone master/worker started from
the same pyspark install. Jars that pyspark already ships (scala-library, antlr...) are not
copied, so no class exists twice on the classpath.

On a real cluster use ``--packages io.delta:delta-spark_2.13:<DELTA_VERSION>`` instead (see
docs/CLUSTER.md); this module is for local installs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from jobs.common.delta_install import (
    DELTA_PACKAGE,
    DELTA_VERSION,
    FALLBACK_REPOSITORY,
    MARKER_JAR,
    cache_dir,
    install_jars,
    jars_installed,
    pyspark_jars_dir,
    report_tail,
    resolve_with_ivy,
)

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if missing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    jars_dir = pyspark_jars_dir()
    if jars_installed(jars_dir):
        log.info("Delta %s jars already on the classpath (%s)", DELTA_VERSION, jars_dir)
        return 0
    if args.check:
        log.error("Delta jars missing from %s: run `python -m jobs.delta_jars`", jars_dir)
        return 1

    ivy_dir = cache_dir() / "ivy"
    ivy_dir.mkdir(parents=True, exist_ok=True)
    report = ivy_dir / "resolve.log"
    report.unlink(missing_ok=True)
    try:
        try:
            resolved = resolve_with_ivy(ivy_dir)
        except Exception as exc:  # Ivy's default host unreachable: retry on Maven Central's other host
            log.warning("Ivy resolution failed (%s); retrying with %s", type(exc).__name__, FALLBACK_REPOSITORY)
            resolved = resolve_with_ivy(ivy_dir, FALLBACK_REPOSITORY)
    except Exception as exc:
        tail = report_tail(report)
        log.error("cannot resolve %s (%s); the end of Ivy's report (%s):\n%s", DELTA_PACKAGE, exc, report, tail)
        return 1
    if not any(p.name == MARKER_JAR for p in resolved):
        log.error("Ivy did not produce %s (got %s); its report: %s", MARKER_JAR, [p.name for p in resolved], report)
        return 1
    copied = install_jars(resolved, jars_dir)
    log.info("installed %d Delta %s jars into %s (Ivy's report: %s)", len(copied), DELTA_VERSION, jars_dir, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
