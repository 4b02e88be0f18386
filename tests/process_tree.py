"""Find and kill a job's Python workers from outside the job, as the kernel's OOM killer would.

Linux only (reads ``/proc``). A Spark Python worker is a process forked by ``pyspark.daemon``: its
command line is the daemon's (``python -m pyspark.daemon pyspark.worker``) and its parent is the
daemon. A worker that is running (state ``R``) or whose CPU time grows is inside a task (an idle
reused worker sleeps on its socket).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

DAEMON_MARK = "pyspark.daemon"


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, user + system CPU ticks, state letter) of ``pid``, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[1]), int(fields[11]) + int(fields[12]), fields[0]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` in the process tree (not ``root`` itself)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            parent[int(entry)] = st[0]
    out, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier}
        out.extend(sorted(frontier))
    return out


def python_workers(root: int) -> list[int]:
    """The Spark Python workers (forked by a ``pyspark.daemon``) under ``root``."""
    procs = descendants(root)
    daemons = {p for p in procs if DAEMON_MARK in _cmdline(p)}
    return [p for p in daemons if (st := _stat(p)) is not None and st[0] in daemons]


def _has_library(pid: int, name: str) -> bool:
    try:
        return name in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def kill_busy_worker(
    proc: subprocess.Popen, *, needs_library: str | None = None, timeout: float = 240.0, sample_s: float = 0.02
) -> int | None:
    """SIGKILL one Python worker of ``proc``'s job while it is running a task.

    Args:
        proc: the job (``python -m jobs.X`` or ``spark-submit``), still running.
        needs_library: kill only a worker that has loaded this shared library (e.g. ``libtorch``:
            the worker is inside the scoring UDF, past the model load).
        timeout: seconds to wait for such a worker.
        sample_s: seconds between the two samples (state, CPU time) that tell a busy worker from an
            idle one.

    Returns:
        The killed worker's pid, or None if the job ended (or the timeout passed) before one was found.
    """
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        workers = [w for w in python_workers(proc.pid) if needs_library is None or _has_library(w, needs_library)]
        before = {w: st for w in workers if (st := _stat(w)) is not None}
        time.sleep(sample_s)
        for pid, (_, ticks, state) in before.items():
            st = _stat(pid)
            if st is not None and (st[1] > ticks or "R" in (state, st[2])) and proc.poll() is None:
                os.kill(pid, signal.SIGKILL)
                return pid
    return None
