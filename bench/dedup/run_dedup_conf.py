"""Run the dedup job with extra Spark settings: ``python -m jobs.dedup`` plus ``--conf KEY=VALUE``.

    LAKELM_MASTER=local[2] python bench/dedup/run_dedup_conf.py --conf spark.driver.memory=1g -- \\
        --input SILVER --lake LAKE --clusters LAKE/clusters

Builds the session with ``jobs.common.spark.get_spark(conf={...})`` (spark-defaults.conf plus these keys, set
before the JVM starts, so ``spark.driver.memory`` takes effect), prints the JVM's max heap, then calls
``jobs.dedup.main`` with the arguments after ``--``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    ours, job_args = argv[:split], argv[split + 1 :]
    conf = {}
    it = iter(ours)
    for a in it:
        if a != "--conf":
            sys.exit(f"unknown argument {a!r} (use --conf KEY=VALUE ... -- JOB ARGS)")
        key, _, value = next(it).partition("=")
        conf[key] = value
    os.environ.setdefault("LAKELM_MASTER", "local[2]")
    from jobs import dedup
    from jobs.common.spark import get_spark

    spark = get_spark("lakelm-dedup", conf=conf)
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    print(f"master={spark.sparkContext.master} jvm_max_heap_mib={heap / 2**20:.0f} conf={conf}", flush=True)
    return dedup.main(job_args)


if __name__ == "__main__":
    sys.exit(main())
