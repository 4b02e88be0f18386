"""What every job CLI shares: the ``--lake`` defaults, JSON config files, and the run wrapper that
records success or failure in the runs table and turns errors into a clear message + exit code."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable

from jobs.lake import DEFAULT_LAKE, table_path, validate_table_path
from jobs.runs import RunRecord, append_run

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the job's arguments or input schema: reported before anything is written."""


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "py4j.clientserver", "py4j.java_gateway"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_lake_args(parser: argparse.ArgumentParser) -> None:
    """``--lake DIR`` (default ./lake) and ``--runs TABLE`` (default DIR/runs)."""
    parser.add_argument("--lake", default=DEFAULT_LAKE, help="lake folder for default table paths")
    parser.add_argument("--runs", default=None, help="runs table (default: LAKE/runs)")


def resolve_table(value: str | None, lake: str, name: str, what: str) -> str:
    """An explicit table path, validated, or the lake's standard table ``name``."""
    return validate_table_path(value, what) if value else table_path(lake, name)


def load_config_file(path: str | None, config_cls, overrides: dict):
    """Build a frozen dataclass config: JSON file values, then non-None CLI overrides.

    Raises:
        UsageError: for keys the dataclass does not have (typos fail loudly, as nanoGPT's
            configurator does) or an unreadable file.
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    values: dict = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                values = json.load(fh)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read config {path}: {exc}") from exc
        unknown = sorted(set(values) - names)
        if unknown:
            raise UsageError(f"unknown keys in {path}: {unknown}; allowed: {sorted(names)}")
    values.update({k: v for k, v in overrides.items() if v is not None and k in names})
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad configuration: {exc}") from exc


def run_job(job: str, args: dict, runs_path: str, body: Callable[[RunRecord], None], spark) -> int:
    """Run ``body(record)``; append the run (succeeded or failed) to the runs table.

    Returns:
        The process exit code: 0 on success, 2 for a UsageError, 1 for any other failure.
    """
    record = RunRecord(job=job, args=args)
    code = EXIT_OK
    try:
        body(record)
        record.status = "succeeded"
    except UsageError as exc:
        log.error("%s: %s", job, exc)
        return EXIT_USAGE  # nothing was written; no run to record
    except Exception as exc:  # recorded, then reported through the exit code
        log.exception("%s failed", job)
        record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        code = EXIT_FAILED
    append_run(spark, runs_path, record)
    return code
