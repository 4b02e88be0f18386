"""Spark side of DDP (torch side: model/distributed.py): ranks on the driver or executors via TorchDistributor.

``jobs/train.py --distributed N --distributed-mode MODE`` calls ``run_ranks``:

- ``driver``: ``TorchDistributor(local_mode=True)``; torchrun starts the N ranks on the driver's
  machine. The only choice on a ``local`` master, and useful on a cluster whose driver has the GPUs.
- ``executors``: ``TorchDistributor(local_mode=False)``; a barrier stage of N Spark tasks, each
  starting one rank (torchrun with one process per task; more where a task owns several GPUs), so the
  cluster needs N free task slots at once. CPU ranks need nothing else (``use_gpu=False``); GPU
  ranks need ``spark.task.resource.gpu.amount`` (TorchDistributor refuses to start without it).
- ``auto`` (default): ``executors`` when the master is a cluster, ``driver`` on ``local``/``local[...]``.

Every rank reports where it ran (``describe_process``), so a run can show it never touched the driver.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODES = ("auto", "driver", "executors")
_EXECUTOR_ID = re.compile(r"--executor-id\s+(\S+)")


def is_local_master(master: str) -> bool:
    """Whether ``master`` runs everything in the driver's JVM (Spark's ``Utils.isLocalMaster``).

    Args:
        master: the session's ``spark.master`` (``local[2]``, ``spark://host:7077``, ``yarn``, ...).

    Returns:
        True for ``local`` and ``local[...]``; False for every cluster master (``local-cluster[...]``
        included: it starts real executor processes).
    """
    return master == "local" or master.startswith("local[")


def resolve_mode(mode: str, master: str) -> str:
    """The placement a run uses: ``mode`` with ``"auto"`` decided by the master.

    Args:
        mode: ``"auto"``, ``"driver"`` or ``"executors"``.
        master: the session's ``spark.master``.

    Returns:
        ``"driver"`` or ``"executors"``.

    Raises:
        ValueError: for any other ``mode``.

    Example:
        >>> resolve_mode("auto", "spark://10.0.0.1:7077"), resolve_mode("auto", "local[*,4]")
        ('executors', 'driver')
    """
    if mode not in MODES:
        raise ValueError(f"distributed mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return "driver" if is_local_master(master) else "executors"
    return mode


def _ancestors(pid: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every ancestor of ``pid``, nearest first; [] where /proc is missing."""
    out: list[tuple[int, str]] = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the parenthesised name
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            break
        out.append((pid, cmd))
    return out


def describe_process(driver: dict[str, Any]) -> dict[str, Any]:
    """Where the calling process runs, relative to the job's driver.

    Args:
        driver: ``{"hostname": str, "pid": int}`` of the driver's Python process (``driver_identity``).

    Returns:
        ``hostname``, ``pid``; ``executor_id``: ``$SPARK_EXECUTOR_ID`` (set on Kubernetes) or the
        ``--executor-id`` of the nearest executor JVM (``...ExecutorBackend``) among this process's
        ancestors, None when there is none (ranks on the driver); ``under_driver``: whether the
        driver's process is an ancestor (same host, its pid among the ancestors).
    """
    pid, host = os.getpid(), socket.gethostname()
    ancestors = _ancestors(pid)
    executor_id = os.environ.get("SPARK_EXECUTOR_ID")
    if executor_id is None:
        for _, cmd in ancestors:
            found = _EXECUTOR_ID.search(cmd) if "ExecutorBackend" in cmd else None
            if found:
                executor_id = found.group(1)
                break
    under_driver = host == driver["hostname"] and any(p == driver["pid"] for p, _ in ancestors)
    return {"hostname": host, "pid": pid, "executor_id": executor_id, "under_driver": under_driver}


def driver_identity() -> dict[str, Any]:
    """``{"hostname", "pid"}`` of this (the driver's) process, for ``describe_process`` on the ranks."""
    return {"hostname": socket.gethostname(), "pid": os.getpid()}


def run_ranks(spark, n: int, mode: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in ``n`` DDP processes through TorchDistributor, placed by ``mode``.

    Each process gets torchrun's ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` environment and must join
    the process group itself. ``fn`` and ``args`` are pickled to the processes, and every path in
    ``args`` must be readable (and, for outputs, writable) at the same path on every node.

    Args:
        spark: the active session (its master decides ``auto``; the barrier stage runs on it).
        n: number of processes (ranks), > 1.
        mode: ``"auto"``, ``"driver"`` or ``"executors"`` (module docstring).
        fn: the training function.
        *args: its arguments.

    Returns:
        What ``fn`` returned on rank 0.
    """
    from pyspark.ml.torch.distributor import TorchDistributor

    from jobs.common.spark import session_master

    master = session_master(spark)  # from the configuration: a Spark Connect session has no SparkContext
    placement = resolve_mode(mode, master)
    if placement == "driver":
        import torch

        use_gpu = torch.cuda.is_available()
    else:
        use_gpu = float(spark.conf.get("spark.task.resource.gpu.amount", "0") or 0) > 0
    log.info("TorchDistributor: %d ranks on the %s, gpu=%s (master %s)", n, placement, use_gpu, master)
    distributor = TorchDistributor(num_processes=n, local_mode=placement == "driver", use_gpu=use_gpu)
    return distributor.run(fn, *args)
