"""Write a run report (Markdown + PNGs) for a lake: funnel, drop reasons, duplicate clusters, tokens,
loss curve, scores, generated samples and lineage.

    python -m jobs.report --lake lake [--artifact DIR] [--out lake/_report]

Every number comes from the tables and the runs table; a stage that has not run yet is reported as
such instead of being left out.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jobs.common import cli
from jobs.common.lake import DEFAULT_LAKE
from jobs.common.spark import get_spark
from jobs.transforms.report_builder import build_report


def build_parser() -> argparse.ArgumentParser:
    """The job's flags (``--remote`` from `cli.job_parser`)."""
    p = cli.job_parser("Write a Markdown run report for a lake.", lake=False, config=False)
    p.add_argument("--lake", default=DEFAULT_LAKE, help="lake folder whose tables and runs table are reported")
    p.add_argument("--artifact", help="model artifact for samples (default: the latest trained)")
    p.add_argument("--out", help="report folder (default: LAKE/_report)")
    return p


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    args = build_parser().parse_args(argv)
    spark = get_spark("lakelm-report", remote=args.remote)
    path = build_report(spark, args.lake, args.out or os.path.join(args.lake, "_report"), args.artifact)
    print(f"report: {Path(path).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
