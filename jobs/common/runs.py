"""The ``runs`` table: one row per job run, success or failure, for lineage and accounting.

Columns: run_id, job, args (JSON), status (``succeeded``/``failed``), counts (map of label -> rows,
using datatrove-style labels ``read``, ``written``, ``quarantined``, ``quarantined_<reason>``...),
input_versions / output_versions (map of table path -> Delta version), started_at, ended_at,
error (message when failed), extra (JSON, job-specific metadata).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

log = logging.getLogger(__name__)

RUNS_SCHEMA = (
    "run_id string, job string, args string, status string, counts map<string,bigint>, "
    "input_versions map<string,bigint>, output_versions map<string,bigint>, "
    "started_at timestamp, ended_at timestamp, error string, extra string"
)


def new_run_id() -> str:
    """A unique, sortable run id: UTC timestamp + random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


@dataclass
class RunRecord:
    """What a job run did, filled in as it goes and appended to the runs table at the end."""

    job: str
    args: dict
    run_id: str = field(default_factory=new_run_id)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    counts: dict[str, int] = field(default_factory=dict)
    input_versions: dict[str, int] = field(default_factory=dict)
    output_versions: dict[str, int] = field(default_factory=dict)
    status: str = "running"
    error: str | None = None
    extra: dict = field(default_factory=dict)
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def elapsed_s(self) -> float:
        return time.monotonic() - self._t0


def append_run(spark, runs_path: str, record: RunRecord) -> None:
    """Append ``record`` to the Delta runs table at ``runs_path`` (created if missing).

    Failures to write the run record are logged and re-raised: a run that cannot be recorded is
    not a successful run.
    """
    row = (
        record.run_id,
        record.job,
        json.dumps(record.args, sort_keys=True, default=str),
        record.status,
        {k: int(v) for k, v in record.counts.items()},
        {k: int(v) for k, v in record.input_versions.items() if v is not None},
        {k: int(v) for k, v in record.output_versions.items() if v is not None},
        record.started_at.replace(tzinfo=None),
        datetime.now(timezone.utc).replace(tzinfo=None),
        record.error,
        json.dumps(record.extra, sort_keys=True, default=str),
    )
    df = spark.createDataFrame([row], schema=RUNS_SCHEMA)  # a DDL string: parsed by the session, either kind
    from jobs.common.delta_io import delta_writer

    delta_writer(df).mode("append").save(runs_path)
    log.info("run %s (%s) recorded in %s: %s", record.run_id, record.job, runs_path, record.status)


def read_runs(spark, runs_path: str, job: str | None = None):
    """The runs table as a DataFrame, optionally only one job's runs, newest first."""
    from pyspark.sql import functions as F

    df = spark.read.format("delta").load(runs_path)
    if job is not None:
        df = df.filter(F.col("job") == job)
    return df.orderBy(F.col("started_at").desc())
