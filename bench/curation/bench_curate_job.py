"""The curate job (Spark, local[2]) vs datatrove 0.10.1 on the same JSONL, side by side in one run.

    python bench/curation/bench_curate_job.py --datatrove-path DIR \\
        ../shared/data/web_c4_sample/c4_en_sample_1000.jsonl \\
        ../shared/data/web_commoncrawl_2019_sample/cc_main_2019_30_sample.jsonl

``--datatrove-path`` is a folder where ``pip install --target DIR "datatrove[io,processing]" spacy``
put datatrove (kept out of the project's venv). Both sides run the same chain: Gopher repetition ->
Gopher quality -> C4 quality -> FineWeb quality with datatrove's defaults (language ID and PII off,
datatrove's stage order and no normalisation, so decisions are comparable).

Reported: docs per core-second for the Spark job (docs / (wall seconds x cores), so Spark's
start-up, scheduling and any other load on the machine count against us; the session is started
and each mode run once on 200 documents before timing, so JIT compilation and Python worker start-up
are not counted, as datatrove's tokenizer is warmed up too), docs per CPU-second of the job's whole process tree (driver, JVM, Python workers:
independent of other load), and for
datatrove (docs / process CPU seconds, one process); keep/drop agreement per document for our
``fast`` (default) and ``parity`` modes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from proc_cpu import tree_cpu_seconds  # noqa: E402

CHAIN = {"c4_lines_first": False, "normalize": {"enabled": False}, "langid": {"enabled": False},
         "pii": {"enabled": False}}


def datatrove_reasons(texts: dict[str, str], path: str) -> tuple[dict[str, str], float]:
    sys.path.insert(0, path)
    from datatrove.data import Document
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)

    prefix = {GopherRepetitionFilter: "gopher_rep_", GopherQualityFilter: "", C4QualityFilter: "c4_",
              FineWebQualityFilter: "fineweb_"}
    filters = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter()]
    out = {}
    t0 = time.process_time()
    for doc_id, text in texts.items():
        doc, reason = Document(text=text, id=doc_id), None
        for f in filters:
            r = f.filter(doc)
            if r is not True:
                reason = prefix[type(f)] + (r[1] if isinstance(r, tuple) else "dropped")
                break
        out[doc_id] = reason
    return out, time.process_time() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("inputs", nargs="+")
    p.add_argument("--datatrove-path", help="folder with datatrove installed (--target); omit to skip")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1,
                   help="copies of each corpus (ids made unique) in the Spark runs, to amortise job overhead")
    args = p.parse_args()

    from jobs import curate
    from jobs.spark import get_spark

    spark = get_spark("bench-curate", master=f"local[{args.cores}]", conf={"spark.sql.shuffle.partitions": "4"})
    spark.sparkContext.setLogLevel("ERROR")
    for path in args.inputs:
        rows = []
        for i, line in enumerate(open(path, encoding="utf-8")):
            rec = json.loads(line)
            if rec["text"].strip():
                rows.append((str(rec.get("id", i)), rec["text"]))
        texts = dict(rows)
        rows = [(f"{d}#{k}" if k else d, t) for k in range(args.repeat) for d, t in rows]
        name = os.path.basename(path)
        with tempfile.TemporaryDirectory() as tmp:
            bronze = os.path.join(tmp, "bronze")
            spark.createDataFrame(rows, "doc_id string, text string").repartition(args.cores * 2) \
                .write.format("delta").save(bronze)
            # Warm-up: one small run of each mode first (JVM JIT, Python workers, imports), as datatrove's
            # side warms its tokenizer; a long-running cluster is warm, and the benchmark measures throughput.
            warm = os.path.join(tmp, "warm_bronze")
            spark.createDataFrame(rows[:200], "doc_id string, text string").write.format("delta").save(warm)
            for mode in ("fast", "parity"):
                cfg = os.path.join(tmp, f"warm_{mode}.json")
                with open(cfg, "w") as fh:
                    json.dump({**CHAIN, "mode": mode}, fh)
                assert curate.main(["--input", warm, "--lake", os.path.join(tmp, f"warm_{mode}"), "--config", cfg]) == 0
            results = {}
            for mode in ("fast", "parity"):
                cfg = os.path.join(tmp, f"{mode}.json")
                with open(cfg, "w") as fh:
                    json.dump({**CHAIN, "mode": mode}, fh)
                lake = os.path.join(tmp, mode)
                t0, c0 = time.monotonic(), tree_cpu_seconds()
                assert curate.main(["--input", bronze, "--lake", lake, "--config", cfg]) == 0
                wall, cpu_s = time.monotonic() - t0, tree_cpu_seconds() - c0
                rej = {r.doc_id: r.drop_reason for r in spark.read.format("delta").load(os.path.join(lake, "rejected")).collect()}
                results[mode] = (wall, {d: rej.get(d) for d in texts}, cpu_s)
        n = len(rows)
        print(f"\n{name}: {len(texts)} non-empty docs x {args.repeat} = {n} in the Spark runs")
        for mode, (wall, _, cpu_s) in results.items():
            print(f"  curate job ({mode}): {wall:.1f} s wall on {args.cores} cores = "
                  f"{n / (wall * args.cores):.0f} docs per core-second; {cpu_s:.1f} CPU s (JVM + Python "
                  f"workers + driver) = {n / cpu_s:.0f} docs per CPU-second; load {os.getloadavg()[0]:.1f}")
        if args.datatrove_path:
            ref, cpu = datatrove_reasons(texts, args.datatrove_path)
            print(f"  datatrove 0.10.1: {cpu:.1f} CPU s = {len(texts) / cpu:.0f} docs per CPU-second")
            for mode, (wall, got, cpu_s) in results.items():
                keep = sum((got[d] is None) == (ref[d] is None) for d in texts) / len(texts)
                same = sum(got[d] == ref[d] for d in texts) / len(texts)
                speed = (n / (wall * args.cores)) / (len(texts) / cpu)
                speed_cpu = (n / cpu_s) / (len(texts) / cpu)
                print(f"  {mode}: keep/drop agreement {keep:.4f}, same reason {same:.4f}, speed {speed:.1f}x per "
                      f"core (wall), {speed_cpu:.1f}x per CPU-second")
    spark.stop()


if __name__ == "__main__":
    main()
