"""Tokens per CPU-second: the build_dataset job (Spark, local[N]) vs ``encode_batch_fast`` alone, at its best
chunk size.

    python bench/tokenize/bench_build_dataset.py --cores 2 --repeat K [--runs 3] [--raw PATH] \\
        ../shared/data/gutenberg_12_novels/gutenberg_12_novels_paragraphs.jsonl \\
        ../shared/data/web_c4_sample/c4_en_sample_1000.jsonl

Both sides use the same byte-level BPE (vocab 8192, trained once up front on the same text and
passed to the job with --tokenizer, so the job's time is tokenising + splitting + shuffling +
packing + the Delta write) and the same documents, the corpus K times.

Baseline: one process calling ``tokenizers.Tokenizer.encode_batch_fast(texts, add_special_tokens=False)``,
the call the job makes (``model.tokenizer.TextTokenizer.encode_batch``), on the corpus K times, one
thread (``RAYON_NUM_THREADS=1``), timed by its process CPU time, and reading every ``Encoding.ids`` as
the job does. Its rate depends on the chunk size (texts per call), so it is swept over ``--chunks``
(``whole`` = one call over the whole corpus, once per copy) and the best is the baseline. Warm-up:
one call on 2,000 texts, as the job gets one warm-up job on 2,000 documents.

Job: ``jobs.build_dataset.main`` on ``local[N]``; its CPU is user + system seconds of the whole
process tree (this driver, the JVM, the Python workers) read from /proc before and after, so other
load on the machine does not count; tokens / (wall seconds x cores) is printed too. The Spark session
is started and the gold table (the corpus K times, ids made unique) written before timing.

Same repeats, same statistic on both sides: every chunk size and the job each run ``--runs`` times,
interleaved round by round, and the median is taken. The headline is
``median job tokens/CPU-s / best median baseline tokens/CPU-s``. Each run's raw numbers go to
``--raw`` (default ``bench/tokenize/raw/build_dataset-<UTC>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import default_raw_path, median, pin_threads, write_raw
from proc_cpu import tree_cpu_seconds

DEFAULT_CHUNKS = "64,256,512,2048,10000,whole"


def parse_chunks(spec: str, n_texts: int) -> dict[str, int]:
    """``"64,512,whole"`` -> {"64": 64, "512": 512, "whole": n_texts}; sizes above the corpus are dropped."""
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        size = n_texts if item == "whole" else int(item)
        if size < 1:
            raise SystemExit(f"--chunks: sizes must be >= 1, got {item}")
        if item == "whole" or size < n_texts:
            out[item] = size
    return out


def encode_cpu(backend, texts: list[str], copies: int, chunk: int) -> tuple[float, int]:
    """(process CPU seconds, tokens incl. one EOS per doc) for ``encode_batch_fast`` over ``copies`` x texts."""
    fn = backend.encode_batch_fast
    t0, n = time.process_time(), 0
    for _ in range(copies):
        for i in range(0, len(texts), chunk):
            n += sum(len(e.ids) + 1 for e in fn(texts[i : i + chunk], add_special_tokens=False))
    return time.process_time() - t0, n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", help="JSONL files with a 'text' field")
    p.add_argument("--cores", type=int, default=2, help="local[N] for the job")
    p.add_argument("--repeat", type=int, default=1, help="copies of the corpus (ids made unique)")
    p.add_argument(
        "--runs",
        "--job-runs",
        type=int,
        default=3,
        dest="runs",
        help="timed runs of the job and of every baseline chunk size (median reported)",
    )
    p.add_argument("--chunks", default=DEFAULT_CHUNKS, help="baseline chunk sizes to sweep (texts per call; 'whole')")
    p.add_argument("--driver-memory", default="4g", help="local[N] runs everything in the driver JVM")
    p.add_argument("--raw", help="raw JSON output (default bench/tokenize/raw/build_dataset-<UTC>.json)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.repeat < 1:
        raise SystemExit("--runs and --repeat must be >= 1")
    pin_threads(1, rayon=True)  # before tokenizers starts its pool; Spark's Python workers inherit the env

    texts: list[str] = []
    for path in args.inputs:
        with open(path, encoding="utf-8") as fh:
            texts += [t for t in (json.loads(line)["text"] for line in fh) if t.strip()]
    chunks = parse_chunks(args.chunks, len(texts))

    from model.tokenizer import ENCODE_SLICE, train_bpe

    tok = train_bpe(texts[:20000], 8192)
    backend = tok.backend
    base_runs: dict[str, list[float]] = {name: [] for name in chunks}
    job_runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = os.path.join(tmp, "tokenizer.json")
        tok.save(tok_path)

        from pyspark.sql import functions as F

        from jobs import build_dataset
        from jobs.common.spark import get_spark

        spark = get_spark(
            "bench-tokenize", master=f"local[{args.cores}]", conf={"spark.driver.memory": args.driver_memory}
        )
        spark.sparkContext.setLogLevel("ERROR")
        gold, src = os.path.join(tmp, "gold"), None
        for path in args.inputs:
            df = spark.read.json(path).select(
                F.concat(F.lit(os.path.basename(path) + ":"), F.col("id")).alias("doc_id"), "text"
            )
            df = df.filter(F.trim("text") != "")
            src = df if src is None else src.unionByName(df)

        def job(inp: str, name: str) -> str:
            out = os.path.join(tmp, f"{name}_out")
            assert (
                build_dataset.main(
                    [
                        "--input",
                        inp,
                        "--lake",
                        tmp,
                        "--tokenizer",
                        tok_path,
                        "--output",
                        os.path.join(tmp, f"{name}_tokens"),
                        "--tokenizer-out",
                        out,
                        "--block-size",
                        "256",
                    ]
                )
                == 0
            )
            return out

        # warm-up, the same on both sides: 2,000 texts through the tokenizer, a 2,000-document job
        backend.encode_batch_fast(texts[:2000], add_special_tokens=False)
        warm = os.path.join(tmp, "warm")
        src.limit(2000).repartition(args.cores).write.format("delta").save(warm)
        job(warm, "warm")
        copies = spark.range(args.repeat).withColumnRenamed("id", "k")
        (
            src.crossJoin(copies)
            .select(F.concat("doc_id", F.lit("#"), F.col("k").cast("string")).alias("doc_id"), "text")
            .repartition(args.cores * 2)
            .write.format("delta")
            .save(gold)
        )

        n_tokens = None
        for r in range(args.runs):  # interleaved: one run of every chunk size, then one job run
            for name, size in chunks.items():
                cpu, n = encode_cpu(backend, texts, args.repeat, size)
                assert n_tokens in (None, n), (n_tokens, n)
                n_tokens = n
                base_runs[name].append(cpu)
                print(f"run {r} encode_batch_fast chunks of {name}: {cpu:.2f} CPU s", flush=True)
            load0 = os.getloadavg()[0]
            t0, c0 = time.monotonic(), tree_cpu_seconds()
            out = job(gold, f"run{r}")
            wall, cpu = time.monotonic() - t0, tree_cpu_seconds() - c0
            with open(os.path.join(out, "dataset.json"), encoding="utf-8") as fh:
                job_tokens = sum(json.load(fh)["tokens"].values())
            assert job_tokens == n_tokens, f"job wrote {job_tokens} tokens, the baseline counted {n_tokens}"
            job_runs.append({"wall_s": wall, "cpu_s": cpu, "load_before": load0, "load_after": os.getloadavg()[0]})
            print(f"run {r} build_dataset: {cpu:.1f} CPU s, {wall:.1f} s wall", flush=True)
        spark.stop()

    sweep = {
        name: {
            "texts_per_call": chunks[name],
            "cpu_s_runs": cpus,
            "cpu_s_median": median(cpus),
            "tokens_per_cpu_s": n_tokens / median(cpus),
        }
        for name, cpus in base_runs.items()
    }
    best = max(sweep, key=lambda name: sweep[name]["tokens_per_cpu_s"])
    base_rate = sweep[best]["tokens_per_cpu_s"]
    job_cpu, job_wall = median([r["cpu_s"] for r in job_runs]), median([r["wall_s"] for r in job_runs])
    job_rate = n_tokens / job_cpu
    summary = {
        "docs": len(texts) * args.repeat,
        "tokens": n_tokens,
        "baseline_best_chunk": best,
        "baseline_tokens_per_cpu_s": base_rate,
        "job_tokens_per_cpu_s": job_rate,
        "job_tokens_per_core_s_wall": n_tokens / (job_wall * args.cores),
        "ratio_per_cpu_s": job_rate / base_rate,  # the headline
        "ratio_per_core_s_wall": n_tokens / (job_wall * args.cores) / base_rate,
        "ratio_vs_job_slice": job_rate / sweep[str(ENCODE_SLICE)]["tokens_per_cpu_s"]
        if str(ENCODE_SLICE) in sweep
        else None,
    }
    print(f"\n{summary['docs']} docs, {n_tokens} tokens (incl. one EOS per doc), median of {args.runs} runs each")
    for name, row in sweep.items():
        mark = "  <- baseline (best)" if name == best else ""
        print(
            f"  encode_batch_fast, 1 thread, chunks of {name:>6}: {row['cpu_s_median']:7.2f} CPU s = "
            f"{row['tokens_per_cpu_s']:12,.0f} tokens/CPU-s{mark}"
        )
    print(
        f"  build_dataset job, local[{args.cores}]: {job_cpu:.1f} CPU s = {job_rate:,.0f} tokens/CPU-s; "
        f"{job_wall:.1f} s wall = {summary['job_tokens_per_core_s_wall']:,.0f} tokens per core-second"
    )
    print(
        f"ratio job / best encode_batch_fast per CPU-second: {summary['ratio_per_cpu_s']:.2f} "
        f"(per core-second of wall: {summary['ratio_per_core_s_wall']:.2f})"
    )
    write_raw(
        args.raw or default_raw_path("tokenize", "build_dataset"),
        {
            "bench": "tokenize/build_dataset",
            "inputs": args.inputs,
            "repeat": args.repeat,
            "runs": args.runs,
            "cores": args.cores,
            "job_encode_slice": ENCODE_SLICE,
            "baseline_sweep": sweep,
            "job_runs": job_runs,
            "summary": summary,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
