"""Tokens per CPU-second: the build_dataset job (Spark, local[N]) vs HF tokenizers' encode_batch alone.

    python bench/tokenize/bench_build_dataset.py --cores 2 \\
        ../shared/data/gutenberg_12_novels/gutenberg_12_novels_paragraphs.jsonl \\
        ../shared/data/web_c4_sample/c4_en_sample_1000.jsonl

Both sides use the same byte-level BPE (vocab 8192, trained once up front on the same text and
passed to the job with --tokenizer, so the job's time is tokenising + splitting + shuffling +
packing + the Delta write) and the same documents. The baseline is one process calling
``Tokenizer.encode_batch`` on all texts with RAYON_NUM_THREADS=1 (one core); the job's per-core rate
is tokens / (wall seconds x cores), with the Spark session started before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("inputs", nargs="+")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="copies of the corpus (ids made unique)")
    args = p.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", "1")

    rows = []
    for path in args.inputs:
        for i, line in enumerate(open(path, encoding="utf-8")):
            rec = json.loads(line)
            if rec["text"].strip():
                rows.append((f"{os.path.basename(path)}:{rec.get('id', i)}", rec["text"]))
    rows = [(f"{d}#{k}", t) for k in range(args.repeat) for d, t in rows]
    texts = [t for _, t in rows]

    from model.tokenizer import train_bpe

    tok = train_bpe(texts[:20000], 8192)
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = os.path.join(tmp, "tokenizer.json")
        tok.save(tok_path)

        t0 = time.process_time()
        n_tokens = sum(len(e.ids) + 1 for e in tok.backend.encode_batch(texts, add_special_tokens=False))
        base_cpu = time.process_time() - t0
        base_rate = n_tokens / base_cpu

        from jobs import build_dataset
        from jobs.spark import get_spark

        spark = get_spark("bench-tokenize", master=f"local[{args.cores}]")
        spark.sparkContext.setLogLevel("ERROR")
        gold = os.path.join(tmp, "gold")
        spark.createDataFrame(rows, "doc_id string, text string").repartition(args.cores * 2) \
            .write.format("delta").save(gold)
        t0 = time.monotonic()
        assert build_dataset.main(["--input", gold, "--lake", tmp, "--tokenizer", tok_path,
                                   "--tokenizer-out", os.path.join(tmp, "out"), "--block-size", "256"]) == 0
        wall = time.monotonic() - t0
        meta = json.load(open(os.path.join(tmp, "out", "dataset.json")))
        job_tokens = sum(meta["tokens"].values())
        assert job_tokens == n_tokens, (job_tokens, n_tokens)
        job_rate = job_tokens / (wall * args.cores)
        spark.stop()
    print(f"{len(texts)} docs, {n_tokens} tokens (incl. one EOS per doc)")
    print(f"encode_batch alone, 1 thread: {base_cpu:.1f} CPU s = {base_rate:,.0f} tokens per CPU-second")
    print(f"build_dataset job, local[{args.cores}]: {wall:.1f} s wall = {job_rate:,.0f} tokens per core-second")
    print(f"ratio job / encode_batch per core: {job_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
