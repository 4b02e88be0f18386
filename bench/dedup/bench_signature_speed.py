"""Benchmark 3: MinHash signature speed, ours vs datatrove's MinhashDedupSignature, side by side in one run.

    python bench/dedup/bench_signature_speed.py --datatrove-path DIR[:DIR2] [--repeats 3] [--data DIR]

Ours: ``udfs.curation.minhash.minhash_batch`` (the job's UDF core: simplify, shingle, 112 hashes 64-bit,
band hashes) over batches of 2,048 documents (the job's Arrow batch size), default MinHashConfig
(5-grams, 14 x 8, 64-bit as the job uses; 32-bit precision also shown), in this process; CPU seconds from ``time.process_time``, best of ``--repeats``.

datatrove 0.10.1: ``MinhashDedupSignature`` with its default ``MinhashConfig`` (5-grams, 14 x 8, 64-bit
xxhash, spaCy English word tokenizer), in a child process whose PYTHONPATH is ``--datatrove-path``
(datatrove installed with ``pip install --target DIR "datatrove[io,processing]"``; 0.10.1 calls
``xxhash.xxh64_intdigest(str)``, which xxhash >= 4 rejects, so a second target folder with
``xxhash<4`` goes first). Two figures: (a) ``get_shingles`` + ``get_signature`` per document, the compute
only; (b) the whole step ``run()`` (compute, write 14 bucket files, sort them) into a temp folder. The
tokenizer is warmed up on one document before timing. Also checked: per document, datatrove's set of
shingle hashes equals ours.

Documents: C4 sample (1,000), CommonCrawl 2019 sample (697, empties included), Gutenberg paragraphs joined
into ~300-word documents (first 1,000).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: E402

CHILD = r"""
import hashlib, json, sys, tempfile, time
import numpy as np
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
texts = json.load(open(sys.argv[1]))
step = MinhashDedupSignature(output_folder=tempfile.mkdtemp(), config=MinhashConfig())
step.get_signature(step.get_shingles("warm up the tokenizer with a few words of text here"))
t0 = time.process_time()
digests = []
for t in texts:
    sh = step.get_shingles(t)
    if sh.size:
        step.get_signature(sh)
    digests.append(hashlib.sha1(np.unique(sh.ravel()).tobytes()).hexdigest())
compute = time.process_time() - t0
step2 = MinhashDedupSignature(output_folder=tempfile.mkdtemp(), config=MinhashConfig())
step2.get_shingles("warm up")
t0 = time.process_time()
step2.run((Document(text=t, id=str(i)) for i, t in enumerate(texts)), rank=0, world_size=1)
full = time.process_time() - t0
print(json.dumps({"compute_cpu_s": compute, "run_cpu_s": full, "digests": digests}))
"""


def corpora(data: Path) -> dict[str, list[str]]:
    return {
        "C4 1000": [r["text"] for r in common.read_jsonl(data / "web_c4_sample" / "c4_en_sample_1000.jsonl")],
        "CC 697": [r["text"] for r in common.read_jsonl(
            data / "web_commoncrawl_2019_sample" / "cc_main_2019_30_sample.jsonl")],
        "Gutenberg 300w x1000": common.gutenberg_docs(data)[:1000],
    }


def ours(texts: list[str], repeats: int, precision: int = 64) -> tuple[float, list[str]]:
    import numpy as np

    from udfs.curation.minhash import MinHashConfig, minhash_batch, shingle_hashes

    cfg = MinHashConfig(precision=precision)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for i in range(0, len(texts), 2048):
            minhash_batch(texts[i:i + 2048], cfg)
        best = min(best, time.process_time() - t0)
    digests = []
    for t in texts:  # datatrove skips documents with fewer than n words; ours hashes them whole ("short")
        h = shingle_hashes(t, cfg.n_grams) if len(common_words(t)) >= cfg.n_grams else np.zeros(0, np.uint64)
        digests.append(hashlib.sha1(np.unique(h).tobytes()).hexdigest())
    return best, digests


def common_words(text: str) -> list[str]:
    from udfs.curation.minhash import simplify_text

    return simplify_text(text).split()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datatrove-path", required=True, help="PYTHONPATH for the datatrove child process")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", type=Path, default=common.DATA)
    p.add_argument("--json")
    args = p.parse_args()
    print(common.machine())
    out = {}
    print(f"{'corpus':24s} {'docs':>5s} {'ours docs/CPU-s':>16s} {'dt compute':>11s} {'dt run()':>9s} "
          f"{'x compute':>9s} {'x run()':>8s} {'same shingles':>13s}")
    for name, texts in corpora(args.data).items():
        cpu, mine = ours(texts, args.repeats)
        cpu32, _ = ours(texts, args.repeats, precision=32)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(texts, fh)
        env = {**os.environ, "PYTHONPATH": args.datatrove_path}
        res = subprocess.run([sys.executable, "-c", CHILD, fh.name], env=env, capture_output=True, text=True,
                             cwd=tempfile.gettempdir())
        os.unlink(fh.name)
        if res.returncode != 0:
            sys.exit(f"datatrove child failed:\n{res.stderr[-3000:]}")
        dt = json.loads(res.stdout.strip().splitlines()[-1])
        n = len(texts)
        same = sum(a == b for a, b in zip(mine, dt["digests"]))
        row = {"docs": n, "ours_docs_per_cpu_s": n / cpu, "dt_compute_docs_per_cpu_s": n / dt["compute_cpu_s"],
               "dt_run_docs_per_cpu_s": n / dt["run_cpu_s"], "speedup_vs_compute": dt["compute_cpu_s"] / cpu,
               "speedup_vs_run": dt["run_cpu_s"] / cpu, "same_shingle_sets": same,
               "ours_32bit_docs_per_cpu_s": n / cpu32, "speedup_32bit_vs_compute": dt["compute_cpu_s"] / cpu32}
        out[name] = row
        print(f"{name:24s} {n:5d} {row['ours_docs_per_cpu_s']:16,.0f} {row['dt_compute_docs_per_cpu_s']:11,.0f} "
              f"{row['dt_run_docs_per_cpu_s']:9,.0f} {row['speedup_vs_compute']:8.1f}x {row['speedup_vs_run']:7.1f}x "
              f"{same:6d}/{n}   (ours 32-bit: {n / cpu32:,.0f} docs/CPU-s, {dt['compute_cpu_s'] / cpu32:.1f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
