"""The one CLI skeleton every job uses: parse -> config -> session -> run -> runs-table record -> exit code.

A job gives `job_parser` its flags (one per config field), a function from the parsed flags to its
frozen config (usually `build_config`: the ``--config`` JSON file first, then the flags given; unknown
keys are an error; table paths in the file are honoured, ``--lake`` fills the ones still missing)
and the body ``run(spark, cfg, record)``; `run_main` does the rest. Exit codes are the same in every
job: 0 success, 2 usage and configuration errors (unknown keys, values out of range, an unusable
input), reported before anything is written, 1 failures (recorded in the runs table as ``failed``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from jobs.common.lake import DEFAULT_LAKE, table_path, validate_table_path
from jobs.common.runs import RunRecord, append_run

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the job's arguments or input schema: reported before anything is written."""


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "py4j.clientserver", "py4j.java_gateway"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every flag's default: the argparse default, or for a flag left None (so that a
    ``--config`` file can set it) the config field's default; help that already names its default
    (``(default: LAKE/gold)``) and required flags are shown as written."""

    def __init__(self, prog: str, config_defaults: Mapping[str, Any] | None = None, **kwargs) -> None:
        super().__init__(prog, **kwargs)
        self._config_defaults = config_defaults or {}

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or action.required:
            return text
        if "default" in text.lower() or "(required)" in text:
            return text
        default = action.default
        if default is None:
            default = self._config_defaults.get(action.dest)
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default)) or "none"
        shown = "none" if default is None or default == "" else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def config_defaults(config_cls) -> dict[str, Any]:
    """Field name -> default of a dataclass config (fields without a default are left out)."""
    return {f.name: f.default for f in dataclasses.fields(config_cls) if f.default is not dataclasses.MISSING}


def job_parser(
    description: str, config_cls=None, *, lake: bool = True, config: bool = True, spark: bool = True
) -> argparse.ArgumentParser:
    """The parser every job starts from: its help shows defaults, and it has the common flags.

    Args:
        description: the job's one-line summary (``--help``'s first line).
        config_cls: the job's frozen dataclass config; its field defaults are shown for flags left None.
        lake: add ``--lake`` and ``--runs`` (jobs that read or write lake tables).
        config: add ``--config FILE`` (JSON object of ``config_cls`` fields).
        spark: add ``--remote URL`` (jobs that run on a Spark session).

    Returns:
        An ArgumentParser with, as asked, ``--config``, ``--lake``/``--runs`` and ``--remote``.
    """
    defaults = config_defaults(config_cls) if config_cls is not None else {}
    parser = argparse.ArgumentParser(
        description=description, formatter_class=functools.partial(HelpFormatter, config_defaults=defaults)
    )
    if config:
        parser.add_argument(
            "--config", help="JSON object of config fields (the flags' names with '_'); flags given override it"
        )
    if lake:
        add_lake_args(parser)
    if spark:
        parser.add_argument(
            "--remote",
            metavar="URL",
            help="Spark Connect server (sc://host:port, or local[N] for a local one); default: $SPARK_REMOTE "
            "if set, else a classic session",
        )
    return parser


def add_lake_args(parser: argparse.ArgumentParser) -> None:
    """``--lake DIR`` (default ./lake) and ``--runs TABLE`` (default DIR/runs)."""
    parser.add_argument("--lake", default=DEFAULT_LAKE, help="lake folder for default table paths")
    parser.add_argument("--runs", default=None, help="runs table (default: LAKE/runs)")


def resolve_table(value: str | None, lake: str, name: str, what: str) -> str:
    """An explicit table path, validated, or the lake's standard table ``name``."""
    return validate_table_path(value, what) if value else table_path(lake, name)


def read_config_file(path: str) -> dict:
    """The JSON object in ``path``.

    Raises:
        UsageError: an unreadable file, bad JSON, or JSON that is not an object.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            values = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read --config {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise UsageError(f"--config {path} must hold a JSON object of config fields, not {type(values).__name__}")
    return values


def build_config(
    args: argparse.Namespace,
    config_cls,
    tables: Mapping[str, str | None] | None = None,
    required: tuple[str, ...] = (),
):
    """The job's config: the ``--config`` file's values, then every flag given (not None).

    Args:
        args: parsed flags; ``args.config`` (may be None) names the JSON file and ``args.lake`` the lake.
            Flags whose name is not a field (``lake``, ``runs``, ``remote``...) are not config.
        config_cls: the frozen dataclass; its ``__post_init__`` checks ranges with ValueError.
        tables: field -> standard lake table name for table paths: the path from a flag or the file is
            validated, a missing one becomes ``LAKE/<name>``; None: optional (validated when given).
        required: fields that must come from a flag or the file (named in the error as flags).

    Returns:
        ``config_cls(**values)``.

    Raises:
        UsageError: unknown keys in the file (typos fail loudly, as nanoGPT's configurator does), an
            unreadable file, a missing required value, a bad table path, or a value the config refuses
            (wrong type, out of range).
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    path = getattr(args, "config", None)
    values = read_config_file(path) if path else {}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UsageError(f"unknown keys in --config {path}: {unknown}; allowed: {sorted(names)}")
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    try:
        for name, lake_table in (tables or {}).items():
            if values.get(name) or lake_table:
                values[name] = resolve_table(values.get(name), args.lake, lake_table, _flag(name))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    missing = [_flag(name) for name in required if values.get(name) in (None, "")]
    if missing:
        raise UsageError(f"{', '.join(missing)} required (a flag, or a key of --config)")
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad configuration: {exc}") from exc


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def config_dict(cfg) -> dict:
    """A config as the runs table's ``args`` (dataclass fields, or a namespace's flags)."""
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(vars(cfg))


def read_input_table(spark, path: str, record: RunRecord, flag: str = "--input", columns=(), hint: str = ""):
    """The Delta table at ``path``, read at its current version, which goes to ``record.input_versions``.

    Args:
        path: the table; flag: the option that named it, for the error message.
        columns: columns the job needs; hint: appended to the message when one is missing.

    Raises:
        UsageError: when ``path`` is not a Delta table or lacks one of ``columns``.
    """
    from jobs.common.delta_io import table_version

    version = table_version(spark, path)
    if version is None:
        raise UsageError(f"{flag} {path} is not a Delta table")
    df = spark.read.format("delta").option("versionAsOf", version).load(path)
    missing = sorted(set(columns) - set(df.columns))
    if missing:
        raise UsageError(f"{flag} {path} lacks columns {missing} (it has {sorted(df.columns)}){hint}")
    record.input_versions[path] = version
    return df


def run_main(
    job: str,
    argv: list[str] | None,
    parser: argparse.ArgumentParser,
    make_config: Callable[[argparse.Namespace], Any],
    body: Callable[[Any, Any, RunRecord], None],
    record_args: Callable[[Any], dict] = config_dict,
) -> int:
    """The whole CLI of a Spark job: parse, configure, get the session, run and record.

    Args:
        job: the job's name in the runs table (``nightly_score``); the app name is ``lakelm-<job>``.
        argv: the command line (None: ``sys.argv[1:]``).
        parser: from `job_parser` (it has ``--remote`` and ``--lake``/``--runs``).
        make_config: parsed flags -> config; UsageError or ValueError there is a usage error.
        body: ``body(spark, cfg, record)``: the job; it fills the record's counts and versions.
        record_args: config -> the JSON-able ``args`` stored in the run record.

    Returns:
        The exit code: 2 for bad flags or configuration (nothing started, nothing recorded), else that of
        `run_job` (0 success, 2 a UsageError from the body, 1 a failure, recorded as ``failed``).
    """
    setup_logging()
    args = parser.parse_args(argv)  # argparse itself exits 2 on a bad flag
    try:
        cfg = make_config(args)
        runs = resolve_table(args.runs, args.lake, "runs", "--runs")
    except (UsageError, ValueError) as exc:
        log.error("%s: %s", job, exc)
        return EXIT_USAGE
    log.info("%s config: %s", job, json.dumps(record_args(cfg), sort_keys=True, default=str))
    from jobs.common.spark import get_spark

    try:
        spark = get_spark(f"lakelm-{job.replace('_', '-')}", remote=args.remote)
    except Exception:  # no session, nothing to record the run in
        log.exception("%s: cannot start a Spark session", job)
        return EXIT_FAILED
    return run_job(job, record_args(cfg), runs, lambda record: body(spark, cfg, record), spark)


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
