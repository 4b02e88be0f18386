"""Benchmark 3: MinHash signature speed, ours vs datatrove's MinhashDedupSignature, side by side in one run.

    python bench/dedup/bench_signature_speed.py --datatrove-python ../datatrove_venv/bin/python \\
        [--repeats 3] [--data DIR] [--raw PATH]

Ours: ``udfs.curation.minhash.minhash_batch`` (the job's UDF core: simplify, shingle, 112 hashes 64-bit,
band hashes) over batches of 2,048 documents (the job's Arrow batch size), default MinHashConfig
(5-grams, 14 x 8, 64-bit as the job uses; 32-bit precision also shown), in this process.

datatrove: ``MinhashDedupSignature`` with its default ``MinhashConfig`` (5-grams, 14 x 8, 64-bit
xxhash), in a child process under datatrove's own Python (``bench/datatrove_side.py minhash``; set-up
in bench/README.md), two rows:

- ``spacy``: its default English word tokenizer (spaCy), as datatrove ships;
- ``whitespace``: the step's word tokenizer swapped for ``str.split``, so datatrove does not pay spaCy
  (its ``simplify_text`` already leaves single-space-separated words; this is the closest to what ours does).

For each: (a) ``get_shingles`` + ``get_signature`` per document, the compute only; (b) the whole step
``run()`` (compute, write 14 bucket files, sort them) into a temp folder. Warm-up on one document first.

Same repeats, same statistic: every figure is the median of ``--repeats`` runs of process CPU
seconds (``time.process_time``), ours and datatrove's alike. Also checked: per document, whether
datatrove's set of shingle hashes equals ours. Raw numbers (every run) go to ``--raw`` (default
``bench/dedup/raw/signature_speed-<UTC>.json``).

Documents: C4 sample (1,000), CommonCrawl 2019 sample (697, empties included), Gutenberg paragraphs joined
into ~300-word documents (first 1,000).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import common

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import (
    add_datatrove_args,
    default_raw_path,
    median,
    pin_threads,
    run_datatrove,
    write_raw,
)

TOKENIZERS = ("spacy", "whitespace")


def corpora(data: Path, limit: int | None) -> dict[str, list[str]]:
    out = {
        "C4 1000": [r["text"] for r in common.read_jsonl(data / "web_c4_sample" / "c4_en_sample_1000.jsonl")],
        "CC 697": [
            r["text"] for r in common.read_jsonl(data / "web_commoncrawl_2019_sample" / "cc_main_2019_30_sample.jsonl")
        ],
        "Gutenberg 300w x1000": common.gutenberg_docs(data)[:1000],
    }
    return {k: v[:limit] for k, v in out.items()} if limit else out


def ours(texts: list[str], repeats: int, precision: int = 64) -> tuple[list[float], list[str]]:
    """CPU seconds of each run of ``minhash_batch`` over the texts, and a digest of each text's shingle set."""
    import numpy as np

    from udfs.curation.minhash import (
        MinHashConfig,
        minhash_batch,
        shingle_hashes,
        simplify_text,
    )

    cfg = MinHashConfig(precision=precision)
    minhash_batch(texts[:8], cfg)  # warm-up (compiled kernels)
    runs = []
    for _ in range(repeats):
        t0 = time.process_time()
        for i in range(0, len(texts), 2048):
            minhash_batch(texts[i : i + 2048], cfg)
        runs.append(time.process_time() - t0)
    digests = []
    for t in texts:  # datatrove skips documents with fewer than n words; ours hashes them whole ("short")
        short = len(simplify_text(t).split()) < cfg.n_grams
        h = np.zeros(0, np.uint64) if short else shingle_hashes(t, cfg.n_grams)
        digests.append(hashlib.sha1(np.unique(h).tobytes()).hexdigest())
    return runs, digests


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_datatrove_args(p)
    p.add_argument("--repeats", type=int, default=3, help="runs of every figure, both sides (median reported)")
    p.add_argument("--data", type=Path, default=common.DATA)
    p.add_argument("--limit", type=int, help="first N documents of each corpus (smoke runs)")
    p.add_argument(
        "--raw", "--json", dest="raw", help="raw JSON output (default bench/dedup/raw/signature_speed-<UTC>.json)"
    )
    args = p.parse_args(argv)
    pin_threads(1)
    print(common.machine())
    out: dict = {"bench": "dedup/signature_speed", "repeats": args.repeats, "corpora": {}}
    for name, texts in corpora(args.data, args.limit).items():
        n = len(texts)
        cpu, mine = ours(texts, args.repeats)
        cpu32, _ = ours(texts, args.repeats, precision=32)
        ours_s = median(cpu)
        row: dict = {
            "docs": n,
            "ours_cpu_s_runs": cpu,
            "ours_docs_per_cpu_s": n / ours_s,
            "ours_32bit_cpu_s_runs": cpu32,
            "ours_32bit_docs_per_cpu_s": n / median(cpu32),
        }
        for tk in TOKENIZERS:
            ids = [str(i) for i in range(n)]
            dt = run_datatrove(args, "minhash", ids, texts, args.repeats, ["--word-tokenizer", tk])
            comp, run = median(dt["compute_cpu_s_runs"]), median(dt["run_cpu_s_runs"])
            row[f"datatrove_{tk}"] = {
                "version": dt["datatrove_version"],
                "compute_cpu_s_runs": dt["compute_cpu_s_runs"],
                "run_cpu_s_runs": dt["run_cpu_s_runs"],
                "compute_docs_per_cpu_s": n / comp,
                "run_docs_per_cpu_s": n / run,
                "speedup_vs_compute": comp / ours_s,
                "speedup_vs_run": run / ours_s,
                "same_shingle_sets": sum(a == b for a, b in zip(mine, dt["digests"])),
            }
        out["corpora"][name] = row
        print(f"\n{name}: {n} docs, median of {args.repeats} runs each, process CPU seconds")
        print(
            f"  ours (64-bit): {row['ours_docs_per_cpu_s']:9,.0f} docs/CPU-s   "
            f"(32-bit: {row['ours_32bit_docs_per_cpu_s']:,.0f})"
        )
        for tk in TOKENIZERS:
            d = row[f"datatrove_{tk}"]
            print(
                f"  datatrove {d['version']}, {tk:10s} words: compute {d['compute_docs_per_cpu_s']:7,.0f}, run() "
                f"{d['run_docs_per_cpu_s']:7,.0f} docs/CPU-s -> ours {d['speedup_vs_compute']:.1f}x compute, "
                f"{d['speedup_vs_run']:.1f}x run(); same shingle sets {d['same_shingle_sets']}/{n}"
            )
    write_raw(args.raw or default_raw_path("dedup", "signature_speed"), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
