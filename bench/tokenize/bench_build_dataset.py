"""Tokens per CPU-second: the build_dataset job (Spark, local[N]) vs HF tokenizers' encode_batch alone.

    python bench/tokenize/bench_build_dataset.py --cores 2 [--repeat K] \\
        ../shared/data/gutenberg_12_novels/gutenberg_12_novels_paragraphs.jsonl \\
        ../shared/data/web_c4_sample/c4_en_sample_1000.jsonl

Both sides use the same byte-level BPE (vocab 8192, trained once up front on the same text and
passed to the job with --tokenizer, so the job's time is tokenising + splitting + shuffling +
packing + the Delta write) and the same documents. The baseline is one process calling
``Tokenizer.encode_batch`` on all texts (chunks of 10,000, K times) with RAYON_NUM_THREADS=1 (one core); the job's per-core rate
is tokens / (wall seconds x cores), with the Spark session started and the gold table (the corpus K times, ids made unique) written before
timing. Load averages are printed with each number: the cores may be shared.
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
    p.add_argument("--driver-memory", default="4g", help="local[N] runs everything in the driver JVM")
    args = p.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", "1")

    texts = []
    for path in args.inputs:
        with open(path, encoding="utf-8") as fh:
            texts += [t for t in (json.loads(line)["text"] for line in fh) if t.strip()]

    from model.tokenizer import train_bpe

    tok = train_bpe(texts[:20000], 8192)
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = os.path.join(tmp, "tokenizer.json")
        tok.save(tok_path)

        # baseline: the same texts, --repeat times, encoded in chunks (all Encodings at once do not fit)
        load_base = os.getloadavg()
        t0 = time.process_time()
        n_tokens = 0
        for _ in range(args.repeat):
            for i in range(0, len(texts), 10000):
                encs = tok.backend.encode_batch(texts[i : i + 10000], add_special_tokens=False)
                n_tokens += sum(len(e.ids) + 1 for e in encs)  # + one EOS per doc, as the job
        base_cpu = time.process_time() - t0
        base_rate = n_tokens / base_cpu

        from pyspark.sql import functions as F

        from jobs import build_dataset
        from jobs.spark import get_spark

        spark = get_spark("bench-tokenize", master=f"local[{args.cores}]",
                          conf={"spark.driver.memory": args.driver_memory})
        spark.sparkContext.setLogLevel("ERROR")
        gold = os.path.join(tmp, "gold")
        src = None
        for path in args.inputs:
            df = spark.read.json(path).select(
                F.concat(F.lit(os.path.basename(path) + ":"), F.col("id")).alias("doc_id"), "text")
            src = df if src is None else src.unionByName(df)
        src = src.filter(F.trim("text") != "")
        copies = spark.range(args.repeat).withColumnRenamed("id", "k")
        (src.crossJoin(copies).select(F.concat("doc_id", F.lit("#"), F.col("k").cast("string")).alias("doc_id"), "text")
         .repartition(args.cores * 2).write.format("delta").save(gold))
        load_job = os.getloadavg()
        t0 = time.monotonic()
        assert build_dataset.main(["--input", gold, "--lake", tmp, "--tokenizer", tok_path,
                                   "--tokenizer-out", os.path.join(tmp, "out"), "--block-size", "256"]) == 0
        wall = time.monotonic() - t0
        load_end = os.getloadavg()
        with open(os.path.join(tmp, "out", "dataset.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
        job_tokens = sum(meta["tokens"].values())
        assert job_tokens == n_tokens, (job_tokens, n_tokens)
        job_rate = job_tokens / (wall * args.cores)
        spark.stop()
    print(f"{len(texts) * args.repeat} docs, {n_tokens} tokens (incl. one EOS per doc)")
    print(f"encode_batch alone, 1 thread: {base_cpu:.1f} CPU s = {base_rate:,.0f} tokens per CPU-second"
          f" (load average before: {load_base[0]:.2f})")
    print(f"build_dataset job, local[{args.cores}]: {wall:.1f} s wall = {job_rate:,.0f} tokens per core-second"
          f" (load average before/after: {load_job[0]:.2f}/{load_end[0]:.2f})")
    print(f"ratio job / encode_batch per core: {job_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
