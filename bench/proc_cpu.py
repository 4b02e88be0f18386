"""CPU accounting for benchmarks: the CPU seconds a process tree has burnt, read from /proc."""

from __future__ import annotations

import os


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds (user + system, incl. reaped children) of ``root`` and all its descendants.

    In local mode the JVM is a child of this process and the Python workers are children of the
    JVM, so this counts everything the Spark job burns, whatever else loads the machine.
    """
    root = root or os.getpid()
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = sum(int(x) for x in fields[11:15]) / tick
    total = 0.0
    for pid in cpu:
        p = pid
        while p and p != root:
            p = parent.get(p, 0)
        if p == root:
            total += cpu[pid]
    return total
