"""The curate job (Spark, local[N]) vs datatrove on the same JSONL, side by side in one invocation.

    python bench/curation/bench_curate_job.py --datatrove-python ../datatrove_venv/bin/python --repeat 20 \\
        [--runs 3] [--raw PATH] \\
        ../shared/data/web_c4_sample/c4_en_sample_1000.jsonl \\
        ../shared/data/web_commoncrawl_2019_sample/cc_main_2019_30_sample.jsonl

Both sides run the same chain with datatrove's defaults and stage order: Gopher repetition -> Gopher
quality -> C4 quality -> FineWeb quality (``bench/benchlib.DATATROVE_CHAIN``: no normalisation,
language ID and PII off), so decisions are comparable. Empty texts are left out on both sides.

- Ours: ``jobs.curate.main`` on ``local[N]`` reading a Delta bronze table of the corpus ``--repeat``
  times (ids made unique) and writing silver + rejected (+ its runs-table row), in ``fast`` (default)
  and ``parity`` mode. Warm-up: each mode runs once on 200 documents first (JIT, Python workers).
  CPU = user + system seconds of the whole process tree (driver, JVM, Python workers) from /proc;
  docs / (wall s x cores) is shown too.
- datatrove: the same filters on the corpus once per run, in a child process under datatrove's own
  Python (``bench/datatrove_side.py filters``), started by this script after our runs, each filter
  warmed up on a few documents before its timer (its spaCy tokenizers are built lazily); process CPU
  seconds, one process.

Same repeats, same statistic: ``--runs`` timed runs of each mode and of datatrove, median of each.
Printed per corpus: docs/CPU-s of fast, parity and datatrove, the fast and parity speed-ups per
CPU-second beside each other, and per-document keep/drop and same-reason agreement of both modes
with datatrove. Raw numbers (every run) go to ``--raw`` (default ``bench/curation/raw/curate_job-<UTC>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import (
    DATATROVE_CHAIN,
    add_datatrove_args,
    default_raw_path,
    median,
    pin_threads,
    run_datatrove,
    write_raw,
)
from proc_cpu import tree_cpu_seconds

MODES = ("fast", "parity")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="copies of each corpus (ids made unique) in the Spark runs, to amortise job overhead",
    )
    p.add_argument("--runs", type=int, default=3, help="timed runs of each mode and of datatrove (median reported)")
    p.add_argument("--limit", type=int, help="first N non-empty documents of each input (smoke runs)")
    p.add_argument("--no-datatrove", action="store_true", help="our side only (no ratio)")
    p.add_argument("--raw", help="raw JSON output (default bench/curation/raw/curate_job-<UTC>.json)")
    add_datatrove_args(p)
    args = p.parse_args(argv)
    pin_threads(1)

    from jobs import curate
    from jobs.common.spark import get_spark

    spark = get_spark("bench-curate", master=f"local[{args.cores}]", conf={"spark.sql.shuffle.partitions": "4"})
    spark.sparkContext.setLogLevel("ERROR")
    report: dict = {
        "bench": "curation/curate_job",
        "cores": args.cores,
        "repeat": args.repeat,
        "runs": args.runs,
        "chain": DATATROVE_CHAIN,
        "corpora": {},
    }
    for path in args.inputs:
        docs = []
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                rec = json.loads(line)
                if rec["text"].strip():
                    docs.append((str(rec.get("id", i)), rec["text"]))
        docs = docs[: args.limit] if args.limit else docs
        ids = [d for d, _ in docs]
        rows = [(f"{d}#{k}" if k else d, t) for k in range(args.repeat) for d, t in docs]
        n = len(rows)
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        decisions: dict[str, dict] = {}
        with tempfile.TemporaryDirectory() as tmp:
            bronze = os.path.join(tmp, "bronze")
            spark.createDataFrame(rows, "doc_id string, text string").repartition(args.cores * 2).write.format(
                "delta"
            ).save(bronze)
            warm = os.path.join(tmp, "warm_bronze")
            spark.createDataFrame(rows[:200], "doc_id string, text string").write.format("delta").save(warm)
            cfgs = {}
            for mode in MODES:
                cfgs[mode] = os.path.join(tmp, f"{mode}.json")
                with open(cfgs[mode], "w", encoding="utf-8") as fh:
                    json.dump({**DATATROVE_CHAIN, "mode": mode}, fh)
                assert (
                    curate.main(["--input", warm, "--lake", os.path.join(tmp, f"warm_{mode}"), "--config", cfgs[mode]])
                    == 0
                )
            for r in range(args.runs):
                for mode in MODES:
                    lake = os.path.join(tmp, f"{mode}_{r}")
                    load0 = os.getloadavg()[0]
                    t0, c0 = time.monotonic(), tree_cpu_seconds()
                    assert curate.main(["--input", bronze, "--lake", lake, "--config", cfgs[mode]]) == 0
                    wall, cpu = time.monotonic() - t0, tree_cpu_seconds() - c0
                    runs[mode].append(
                        {"wall_s": wall, "cpu_s": cpu, "load_before": load0, "load_after": os.getloadavg()[0]}
                    )
                    print(f"{os.path.basename(path)} run {r} {mode}: {cpu:.1f} CPU s, {wall:.1f} s wall", flush=True)
                    if r == 0:
                        rej = {
                            row.doc_id: row.drop_reason
                            for row in spark.read.format("delta").load(os.path.join(lake, "rejected")).collect()
                        }
                        decisions[mode] = {d: rej.get(d) for d in ids}
        res: dict = {"docs_unique": len(docs), "docs_job": n}
        for mode in MODES:
            cpu, wall = median([x["cpu_s"] for x in runs[mode]]), median([x["wall_s"] for x in runs[mode]])
            res[mode] = {"runs": runs[mode], "docs_per_cpu_s": n / cpu, "docs_per_core_s_wall": n / (wall * args.cores)}
        if not args.no_datatrove:
            dt = run_datatrove(args, "filters", ids, [t for _, t in docs], args.runs)
            dt_rate = len(docs) / median(dt["cpu_s_runs"])
            res["datatrove"] = {
                "version": dt["datatrove_version"],
                "cpu_s_runs": dt["cpu_s_runs"],
                "docs_per_cpu_s": dt_rate,
                "warmup_docs": dt["warmup_docs"],
            }
            for mode in MODES:
                got = decisions[mode]
                res[mode]["speedup_per_cpu_s"] = res[mode]["docs_per_cpu_s"] / dt_rate
                res[mode]["speedup_per_core_s_wall"] = res[mode]["docs_per_core_s_wall"] / dt_rate
                res[mode]["keep_drop_agreement"] = sum(
                    (got[d] is None) == (dt["reasons"][d] is None) for d in ids
                ) / len(ids)
                res[mode]["same_reason"] = sum(got[d] == dt["reasons"][d] for d in ids) / len(ids)
        report["corpora"][path] = res
        name = os.path.basename(path)
        print(
            f"\n{name}: {len(docs)} non-empty docs x {args.repeat} = {n} in the Spark runs; median of {args.runs} runs"
        )
        for mode in MODES:
            m = res[mode]
            line = (
                f"  curate job {mode:6s}: {m['docs_per_cpu_s']:6.0f} docs/CPU-s, "
                f"{m['docs_per_core_s_wall']:6.0f} docs per core-second (wall)"
            )
            if "speedup_per_cpu_s" in m:
                line += (
                    f" | {m['speedup_per_cpu_s']:.1f}x datatrove per CPU-s ({m['speedup_per_core_s_wall']:.1f}x per "
                    f"core, wall) | keep/drop agreement {m['keep_drop_agreement']:.4f}, "
                    f"same reason {m['same_reason']:.4f}"
                )
            print(line)
        if "datatrove" in res:
            print(
                f"  datatrove {res['datatrove']['version']}: {res['datatrove']['docs_per_cpu_s']:.0f} docs/CPU-s "
                f"(warmed up on {res['datatrove']['warmup_docs']} docs, timed in this run)"
            )
    spark.stop()
    write_raw(args.raw or default_raw_path("curation", "curate_job"), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
