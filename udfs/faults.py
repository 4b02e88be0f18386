"""Fault injection for reliability tests: a UDF can kill its own Python worker, once.

Set ``LAKELM_FAULT_KILL_PARTITION=<n>`` in the environment of a job and the UDFs that call
`maybe_kill_worker` SIGKILL their own process on the first attempt of partition ``n``
(``TaskContext.attemptNumber() == 0``). Spark then retries the task (with
``spark.task.maxFailures`` > 1, e.g. ``--master local[2,3]``), so the job must still finish with
the same output. ``LAKELM_FAULT_MARKER_DIR`` (optional) receives one file per injected kill, so a
test can prove the fault really happened. Without the variable this is a no-op.
"""

from __future__ import annotations

import os
import signal

ENV_PARTITION = "LAKELM_FAULT_KILL_PARTITION"
ENV_MARKER_DIR = "LAKELM_FAULT_MARKER_DIR"


def maybe_kill_worker(stage: str) -> None:
    """SIGKILL this Python worker if the fault switch targets the current task's first attempt."""
    target = os.environ.get(ENV_PARTITION)
    if not target:
        return
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None or ctx.attemptNumber() != 0 or ctx.partitionId() != int(target):
        return
    marker_dir = os.environ.get(ENV_MARKER_DIR)
    if marker_dir:
        os.makedirs(marker_dir, exist_ok=True)
        path = os.path.join(marker_dir, f"{stage}-stage{ctx.stageId()}-part{ctx.partitionId()}-pid{os.getpid()}")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("killed\n")
    os.kill(os.getpid(), signal.SIGKILL)
