"""Fault injection for reliability tests: a UDF can kill its own Python worker, once.

Set ``LAKELM_FAULT_KILL_PARTITION=<n>`` in the environment of a job and the UDFs that call
`maybe_kill_worker` SIGKILL their own process on the first attempt of partition ``n``
(``TaskContext.attemptNumber() == 0``). Spark then retries the task (with
``spark.task.maxFailures`` > 1, e.g. ``--master local[2,3]``), so the job must still finish with
the same output. ``LAKELM_FAULT_MARKER_DIR`` (optional) receives one file per injected kill, so a
test can prove the fault really happened. Without the variable this is a no-op.

The HTTP service (``jobs/serve.py``) calls `maybe_fault_request` with each request body before
answering it, on its worker thread. ``LAKELM_FAULT_SERVE_RAISE=<marker>``: a body that contains
``<marker>`` raises ``RuntimeError`` (the server must answer 500 and keep serving).
``LAKELM_FAULT_SERVE_SLEEP=<marker>:<seconds>``: such a body first sleeps that long, holding its worker
(to fill the pool). Without the variables these are no-ops too.
"""

from __future__ import annotations

import os
import signal
import time

ENV_PARTITION = "LAKELM_FAULT_KILL_PARTITION"
ENV_MARKER_DIR = "LAKELM_FAULT_MARKER_DIR"
ENV_SERVE_RAISE = "LAKELM_FAULT_SERVE_RAISE"
ENV_SERVE_SLEEP = "LAKELM_FAULT_SERVE_SLEEP"


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


def maybe_fault_request(body: bytes) -> None:
    """Stall and/or fail one HTTP request on purpose if its body holds a marker the switches name.

    Args:
        body: the raw request body.

    Raises:
        RuntimeError: ``LAKELM_FAULT_SERVE_RAISE`` is set and ``body`` contains its value.
    """
    sleep = os.environ.get(ENV_SERVE_SLEEP)
    if sleep:
        marker, _, seconds = sleep.rpartition(":")
        if marker and marker.encode() in body:
            time.sleep(float(seconds))
    marker = os.environ.get(ENV_SERVE_RAISE)
    if marker and marker.encode() in body:
        raise RuntimeError(f"injected fault: the body contains {ENV_SERVE_RAISE}={marker!r}")
