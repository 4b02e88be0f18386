"""Speed of the pure curation core (no Spark) vs datatrove's filters, side by side in one invocation.

    python bench/curation_core_speed.py --datatrove-python ../datatrove_venv/bin/python \\
        --input ../shared/data/web_c4_sample/c4_en_sample_1000.jsonl \\
        --input ../shared/data/web_commoncrawl_2019_sample/cc_main_2019_30_sample.jsonl [--repeats 3] [--raw PATH]

Each input is a JSONL file with a "text" field (empty texts are left out on both sides). Single
thread, process CPU seconds (``time.process_time``), ``--repeats`` runs of every row, **median**
reported on both sides. Rows, per file:

- ``chain_fast`` / ``chain_parity``: ``curate_batch`` running Gopher repetition -> Gopher quality -> C4 ->
  FineWeb in datatrove's stage order (``bench/benchlib.DATATROVE_CHAIN``: C4 after Gopher, no
  normalisation, language ID and PII off), in ``fast`` (default) and ``parity`` (spaCy word splitting)
  mode. These are the like-for-like rows: ``speedup_fast`` and ``speedup_parity`` divide them by
- ``datatrove``: the same four filters with datatrove's defaults and order on the same documents, in a
  child process under datatrove's own Python (``bench/datatrove_side.py filters``), each filter warmed
  up on a few documents before its timer (they build spaCy lazily), timed in this invocation.
- Not like-for-like, for reference only: ``chain_fast_our_order`` (our default order: C4 line cleaning
  first), ``full`` (the default ``curate_batch``: normalisation, language ID, PII too) and
  ``minhash64`` / ``minhash32`` (``minhash_batch``; the side-by-side MinHash figure is
  ``bench/dedup/bench_signature_speed.py``).

Our rows are warmed up on 8 documents first (lazy langid model, spaCy in parity mode, Unicode
classes). Keep/drop agreement and same-reason rates with datatrove are reported for both modes. Raw
numbers (every repeat) go to ``--raw`` (default ``bench/curation/raw/core_speed-<UTC>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (
    DATATROVE_CHAIN,
    add_datatrove_args,
    default_raw_path,
    median,
    pin_threads,
    run_datatrove,
    write_raw,
)


def _read(path: str, limit: int | None) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if line.strip():
                rec = json.loads(line)
                if rec["text"].strip():
                    ids.append(str(rec.get("id", i)))
                    texts.append(rec["text"])
    return (ids[:limit], texts[:limit]) if limit else (ids, texts)


def _cpu_runs(fn, arg, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn(arg)
        out.append(time.process_time() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", action="append", required=True, help="JSONL file with a 'text' field")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N non-empty documents of each file")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row, both sides (median reported)")
    parser.add_argument("--no-datatrove", action="store_true", help="our rows only (no ratio)")
    parser.add_argument("--raw", help="raw JSON output (default bench/curation/raw/core_speed-<UTC>.json)")
    add_datatrove_args(parser)
    args = parser.parse_args(argv)
    pin_threads(1)

    import pandas as pd

    from model.config import config_from_dict
    from udfs.curation import CurationConfig, MinHashConfig, curate_batch, minhash_batch

    chain = {mode: config_from_dict(CurationConfig, {**DATATROVE_CHAIN, "mode": mode}) for mode in ("fast", "parity")}
    ours_order = config_from_dict(CurationConfig, {**DATATROVE_CHAIN, "c4_lines_first": True})
    full_cfg, mh64, mh32 = CurationConfig(), MinHashConfig(), MinHashConfig(precision=32)
    rows = {
        "chain_fast": lambda s: curate_batch(s, chain["fast"]),
        "chain_parity": lambda s: curate_batch(s, chain["parity"]),
        "chain_fast_our_order": lambda s: curate_batch(s, ours_order),
        "full": lambda s: curate_batch(s, full_cfg),
        "minhash64": lambda s: minhash_batch(s, mh64),
        "minhash32": lambda s: minhash_batch(s, mh32),
    }
    report: dict = {"bench": "curation/core_speed", "repeats": args.repeats, "chain": DATATROVE_CHAIN, "files": {}}
    for path in args.input:
        ids, texts = _read(path, args.limit)
        series = pd.Series(texts)
        n, n_bytes = len(texts), sum(len(t.encode("utf-8")) for t in texts)
        for fn in rows.values():  # warm-up: lazy model, spaCy and regex state
            fn(series[:8])
        res: dict = {"docs": n, "bytes": n_bytes, "rows": {}}
        for name, fn in rows.items():
            cpu = _cpu_runs(fn, series, args.repeats)
            res["rows"][name] = {
                "cpu_s_runs": cpu,
                "docs_per_cpu_s": n / median(cpu),
                "mb_per_cpu_s": n_bytes / median(cpu) / 1e6,
            }
        if not args.no_datatrove:
            dt = run_datatrove(args, "filters", ids, texts, args.repeats)
            res["datatrove"] = {
                "version": dt["datatrove_version"],
                "cpu_s_runs": dt["cpu_s_runs"],
                "docs_per_cpu_s": n / median(dt["cpu_s_runs"]),
                "warmup_docs": dt["warmup_docs"],
            }
            for mode in ("fast", "parity"):
                got = curate_batch(series, chain[mode])["drop_reason"].tolist()
                ref = [dt["reasons"][d] for d in ids]
                res[f"speedup_{mode}"] = (
                    res["rows"][f"chain_{mode}"]["docs_per_cpu_s"] / res["datatrove"]["docs_per_cpu_s"]
                )
                res[f"keep_drop_agreement_{mode}"] = sum((a is None) == (b is None) for a, b in zip(got, ref)) / n
                res[f"same_reason_{mode}"] = sum(a == b for a, b in zip(got, ref)) / n
        report["files"][path] = res
        print(f"\n{path}: {n} non-empty docs, median of {args.repeats} runs, 1 thread")
        for name, row in res["rows"].items():
            print(f"  {name:22s} {row['docs_per_cpu_s']:9,.0f} docs/CPU-s {row['mb_per_cpu_s']:6.2f} MB/CPU-s")
        if "datatrove" in res:
            print(
                f"  {'datatrove ' + res['datatrove']['version']:22s} "
                f"{res['datatrove']['docs_per_cpu_s']:9,.0f} docs/CPU-s"
            )
            for mode in ("fast", "parity"):
                print(
                    f"  {mode}: {res[f'speedup_{mode}']:.1f}x datatrove per CPU-second; keep/drop agreement "
                    f"{res[f'keep_drop_agreement_{mode}']:.4f}, same reason {res[f'same_reason_{mode}']:.4f}"
                )
    write_raw(args.raw or default_raw_path("curation", "core_speed"), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
