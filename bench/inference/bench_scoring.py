"""Batch-inference throughput: our length-bucketed scoring UDF vs bare PyTorch, predict_batch_udf and a
naive UDF, plus KV-cache vs recompute generation.

    python bench/inference/bench_scoring.py --data ../shared/data --n-texts 600 --out /tmp/bench_inf1k \
        --skip in_order,job,generate

Every variant scores the same texts with the same random GPT (block 1024, byte-level BPE, 6 x 256 dims)
and one torch thread per process:

    a. bare PyTorch in this process: ``udfs.scoring.score_texts`` with the UDF's own options (same length
       bucketing, same token-budgeted micro-batches), 1 thread; fp32, and bf16 autocast for reference
    a2. the same loop in 2 processes at once, every other text each (both cores busy, as under local[2])
    b. our iterator UDF (``make_score_udf``, default options: fp32, token budget by device) on local[2],
       one thread per Python worker; b_ours_bf16 = the same with ``precision="bf16"``
    b2. the whole ``jobs/score.py`` job on a Delta copy of the input (read, score, MERGE, runs table)
    c. ``pyspark.ml.functions.predict_batch_udf`` used the straightforward way: DoubleType() return,
       ``batch_size`` rows in table order, each padded to its longest row, scored the way a user writes
       it (logits for every position, ``log_softmax``, gather); c_..._library_head = the same but
       scored with ``model.scoring.token_logprobs`` (output layer on real positions only)
    d. a pandas UDF that loads the model on every Arrow batch and pads micro-batches in table order

Texts are real documents of widely varying length (C4, CommonCrawl 2019, US presidential speeches)
plus Gutenberg paragraphs, cut to at most ``block_size - 1`` tokens, so every variant does one window
per text and the work is identical: the differences are padding, micro-batching, caching and Spark overhead.
c. is predict_batch_udf's documented usage: ``make_predict_fn`` returns ``predict(np.ndarray of str)``
that tokenises its ``batch_size`` rows and pads them to the longest row of that batch (the usual
"dynamic padding" of a tokenizer call; padding to block_size would handicap it). Spark variants are warmed up on 64 rows
first (two concurrent tasks: both workers started, models cached); predict_batch_udf and ours both keep the model per worker.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("bench.inference")


def load_texts(data: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` real texts of widely varying length, shuffled: a quarter Gutenberg paragraphs (short), the
    rest a seeded sample of whole documents (C4, CommonCrawl 2019, US presidential speeches)."""
    def read(path: Path) -> list[str]:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line)["text"] for line in f]

    docs = (read(data / "web_c4_sample" / "c4_en_sample_1000.jsonl")
            + read(data / "web_commoncrawl_2019_sample" / "cc_main_2019_30_sample.jsonl")
            + read(data / "us_presidential_speeches" / "us_presidential_speeches.jsonl"))
    paras = read(data / "gutenberg_12_novels" / "gutenberg_12_novels_paragraphs.jsonl")
    rng = np.random.default_rng(seed)
    n_docs = min(len(docs), n - n // 4)
    picked = [docs[i] for i in rng.choice(len(docs), size=n_docs, replace=False)]
    picked += [paras[i] for i in rng.choice(len(paras), size=n - n_docs, replace=False)]
    texts = [t for t in picked if t.strip()]
    rng.shuffle(texts)
    return texts


def build_artifact(out: Path, texts: list[str], block: int, vocab: int) -> Path:
    """Random GPT (6 layers x 4 heads x 256 dims) + BPE trained on the bench texts, saved as an artifact."""
    import torch

    from model.artifact import save_artifact
    from model.config import GPTConfig
    from model.gpt import GPT
    from model.tokenizer import train_bpe

    path = out / "model"
    if path.exists():
        return path
    tok = train_bpe(texts, vocab_size=vocab)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=block, n_layer=6, n_head=4, n_embd=256)
    save_artifact(path, GPT(cfg), tok, lineage={"model_name": "bench-random"})
    return path


def cut_to_block(texts: list[str], tok, max_tokens: int) -> list[str]:
    """Each text cut to at most ``max_tokens`` tokens (re-encoded to check), so all variants do one window."""
    out = []
    for t in texts:
        ids = tok.encode(t)
        k = max_tokens
        while len(ids) > max_tokens and k > 0:
            t, k = tok.decode(ids[:k]).rstrip("\ufffd"), k - 8
            ids = tok.encode(t)
        if ids:
            out.append(t)
    return out


def full_logits_logprobs(model, idx, mask):
    """Per-token log-probs the way a user writes them: logits for every position (padding too), log_softmax."""
    import torch

    with torch.no_grad():
        logits, _ = model(idx)  # (B, T, V)
        lp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, idx[:, 1:].unsqueeze(-1)).squeeze(-1)
    return lp.masked_fill(~mask[:, 1:], 0.0)  # (B, T-1)


def pad_score(model, tok, texts, batch_size: int, library_head: bool = False) -> np.ndarray:
    """Mean NLL per text, micro-batches of ``batch_size`` in the given order, padded to each batch's longest.

    ``library_head`` = score with ``model.scoring.token_logprobs`` (output layer on real positions
    only) instead of the full-logits ``log_softmax`` a user writes in a predict function."""
    import torch

    from model.scoring import summarize_logprobs, token_logprobs

    logprobs = token_logprobs if library_head else full_logits_logprobs
    out = []
    for i in range(0, len(texts), batch_size):
        seqs = [[tok.eos_id] + ids for ids in tok.encode_batch(list(texts[i : i + batch_size]))]
        T = max(len(s) for s in seqs)
        idx = torch.full((len(seqs), T), tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.bool)
        for r, s in enumerate(seqs):
            idx[r, : len(s)], mask[r, : len(s)] = torch.tensor(s), True
        s = summarize_logprobs(logprobs(model, idx, mask), mask[:, 1:])
        out.append(s["mean_nll"].numpy())
    return np.concatenate(out) if out else np.zeros(0)


LOADAVG: dict[str, float] = {}  # 1-minute load average after each timed run: > ~2.2 means someone else used the cores


def timed(fn, name: str = "") -> float:
    t0 = time.perf_counter()
    fn()
    sec = time.perf_counter() - t0
    if name:
        LOADAVG[name] = round(os.getloadavg()[0], 2)
    return sec


def bench_bare(model_path: Path, texts: list[str], opts: dict, batch_size: int, in_order: bool = False) -> dict:
    """a: ``score_texts`` in this process, 1 thread, with ``opts`` (the UDF's options) in fp32 and bf16."""
    import torch

    from model.artifact import load_artifact
    from udfs.scoring import score_texts

    torch.set_num_threads(1)
    art = load_artifact(model_path)
    series = pd.Series(texts)
    score_texts(art.model, art.tokenizer, series[:50], **opts)  # warm-up
    res = {}
    res["bucketed"] = timed(lambda: score_texts(art.model, art.tokenizer, series, **opts), "a_bucketed")
    res["bucketed_bf16"] = timed(lambda: score_texts(art.model, art.tokenizer, series, **opts, precision="bf16"),
                                 "a_bucketed_bf16")
    if in_order:
        res["in_order"] = timed(lambda: pad_score(art.model, art.tokenizer, texts, batch_size), "a_in_order")
    return res


def _bare_worker(model_path: str, texts: list[str], opts: dict, barrier, out) -> None:
    """One process of the concurrent bare loop: load, warm up, wait for the others, score its share."""
    import torch

    from model.artifact import load_artifact
    from udfs.scoring import score_texts

    torch.set_num_threads(1)
    art = load_artifact(Path(model_path))
    series = pd.Series(texts)
    score_texts(art.model, art.tokenizer, series[:50], **opts)
    barrier.wait()
    t0 = time.perf_counter()
    score_texts(art.model, art.tokenizer, series, **opts)
    out.put(time.perf_counter() - t0)


def bench_bare_parallel(model_path: Path, texts: list[str], opts: dict, procs: int) -> float:
    """The bare loop in ``procs`` processes at once (1 thread each, every ``procs``-th text each): the
    machine's per-core limit when all its cores are busy, as they are under ``local[procs]``.
    Returns the wall seconds until the last process finished."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(procs + 1), ctx.Queue()
    ps = [ctx.Process(target=_bare_worker, args=(str(model_path), texts[i::procs], opts, barrier, out))
          for i in range(procs)]
    for p in ps:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    per_proc = [out.get() for _ in ps]
    wall = time.perf_counter() - t0
    for p in ps:
        p.join()
    LOADAVG[f"a_parallel_{procs}"] = round(os.getloadavg()[0], 2)
    log.info("bare loop in %d processes: %s s each, %.1f s wall", procs, [round(x, 1) for x in per_proc], wall)
    return wall


def bench_spark(spark, model_path: Path, parquet: str, n: int, opts: dict, batch_sizes: list[int]) -> dict:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import DoubleType

    from udfs.scoring import make_score_udf

    path = str(model_path)

    def predict_fn_factory(batch_size: int, library_head: bool):
        def make_predict_fn():
            import torch

            from model.artifact import load_artifact

            torch.set_num_threads(1)
            art = load_artifact(path)

            def predict(texts: np.ndarray) -> np.ndarray:
                return pad_score(art.model, art.tokenizer, list(texts), batch_size, library_head)

            return predict

        return make_predict_fn

    batch = batch_sizes[0]

    @pandas_udf("double")
    def naive(texts: pd.Series) -> pd.Series:
        import torch

        from model.artifact import load_artifact

        torch.set_num_threads(1)
        art = load_artifact(path)  # every Arrow batch
        return pd.Series(pad_score(art.model, art.tokenizer, list(texts), batch))

    udfs = {
        "ours": lambda c: make_score_udf(path, **opts)(c).mean_nll,
        "ours_bf16": lambda c: make_score_udf(path, **opts, precision="bf16")(c).mean_nll,
    }
    for b in batch_sizes:
        udfs[f"predict_batch_udf_{b}"] = (
            lambda c, b=b: predict_batch_udf(predict_fn_factory(b, False), return_type=DoubleType(), batch_size=b)(c))
    udfs[f"predict_batch_udf_{batch}_library_head"] = (
        lambda c: predict_batch_udf(predict_fn_factory(batch, True), return_type=DoubleType(), batch_size=batch)(c))
    udfs["naive_reload"] = lambda c: naive(c)
    df = spark.read.parquet(parquet)
    log.info("input: %d rows in %d partitions", n, df.rdd.getNumPartitions())
    # warm-up: two concurrent tasks, so both task slots have a started Python worker holding the model
    warm = df.limit(64).repartition(2).cache()
    warm.count()
    res = {}
    for name, make in udfs.items():
        col = make("text")  # one UDF object for warm-up and run (predict_batch_udf caches by its id)
        warm.select(col.alias("s")).write.format("noop").mode("overwrite").save()
        res[name] = timed(lambda c=col: df.select(c.alias("s")).write.format("noop").mode("overwrite").save(), name)
        log.info("%s: %.1f s", name, res[name])
    return res


def bench_job(spark, model_path: Path, texts: list[str], out: Path, opts: dict) -> dict:
    """``jobs/score.py`` end to end, twice into new output tables: ``cold`` (first Delta MERGE and
    Python workers of the session) and ``warm``."""
    from jobs import score

    gold = out / "lake" / "gold"
    spark.createDataFrame(pd.DataFrame({"doc_id": [f"t{i:06d}" for i in range(len(texts))], "text": texts})) \
        .repartition(4).write.format("delta").mode("overwrite").save(str(gold))
    res = {}
    for run in ("cold", "warm"):
        args = ["--lake", str(out / "lake"), "--input", str(gold), "--model", str(model_path),
                "--output", str(out / "lake" / f"scores_{time.time_ns()}")]
        for k, v in opts.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        codes: list[int] = []
        res[run] = timed(lambda a=args, c=codes: c.append(score.main(a)), f"score_job_{run}")
        assert codes == [0], codes
    return res


def bench_generation(model_path: Path, texts: list[str], new_tokens: int, batch: int) -> dict:
    """KV cache vs recompute: ``batch`` prompts of 64 tokens, ``new_tokens`` greedy tokens, 1 thread."""
    import torch

    from model.artifact import load_artifact

    torch.set_num_threads(1)
    art = load_artifact(model_path)
    ids = [x[:64] for x in art.tokenizer.encode_batch(texts[:500]) if len(x) >= 64][:batch]
    idx = torch.tensor(ids)  # (B, 64)
    res = {}
    outputs = []
    for use_cache in (True, False):
        t0 = time.perf_counter()
        outputs.append(art.model.generate(idx, new_tokens, temperature=0.0, use_cache=use_cache))
        sec = time.perf_counter() - t0
        res["kv_cache" if use_cache else "recompute"] = {"seconds": sec, "new_tokens_per_s": batch * new_tokens / sec}
    res["same_tokens"] = bool(torch.equal(*outputs))
    res["speedup"] = res["recompute"]["seconds"] / res["kv_cache"]["seconds"]
    return res


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the shared/data folder (web_c4_sample, gutenberg_12_novels)")
    p.add_argument("--out", required=True, help="work folder (model, parquet, results.json)")
    p.add_argument("--n-texts", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=32, help="rows per batch of the in-order bare loop")
    p.add_argument("--pbu-batch-sizes", default="32", help="predict_batch_udf batch sizes (comma list; the first is d's too)")
    p.add_argument("--token-budget", type=int, help="a/b micro-batch token budget (default: the UDF's, by device)")
    p.add_argument("--max-rows", type=int, help="a/b most rows per micro-batch (default: the UDF's)")
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--skip", default="", help="comma list of: bare,in_order,bare_parallel,spark,job,generate")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(1)
    raw = load_texts(Path(args.data), args.n_texts)
    model_path = build_artifact(out, raw, args.block, args.vocab)
    from model.artifact import load_artifact

    art = load_artifact(model_path)
    texts = cut_to_block(raw, art.tokenizer, args.block - 1)
    lens = np.array([len(x) for x in art.tokenizer.encode_batch(texts)])
    info = {"n_texts": len(texts), "n_params": art.model.num_params(non_embedding=False),
            "tokens": int(lens.sum()), "len_min_p10_p50_p90_max": np.percentile(lens, [0, 10, 50, 90, 100]).tolist(),
            "len_mean": float(lens.mean()), "at_cap": int((lens >= args.block - 1).sum()),
            "batch_size": args.batch_size, "block": args.block, "torch": torch.__version__, "cpus": os.cpu_count()}
    log.info("setup: %s", info)
    # a and b run the product's own micro-batching (token budget by device, max rows), unless overridden
    opts = {k: v for k, v in (("token_budget", args.token_budget), ("max_rows", args.max_rows)) if v is not None}
    pbu_sizes = [int(x) for x in args.pbu_batch_sizes.split(",")]
    info.update(score_options=opts, predict_batch_udf_batch_sizes=pbu_sizes)
    results: dict = {"setup": info}
    if "bare" not in skip:
        results["bare_1_thread_s"] = bench_bare(model_path, texts, opts, args.batch_size, "in_order" not in skip)
    if "bare_parallel" not in skip:
        results["bare_2_procs_s"] = bench_bare_parallel(model_path, texts, opts, 2)
    if not {"spark", "job"} <= skip:
        from jobs.spark import get_spark

        spark = get_spark("bench-inference", master="local[2]", conf={"spark.task.cpus": "1"})
        parquet = str(out / "texts.parquet")
        spark.createDataFrame(pd.DataFrame({"text": texts})).repartition(4).write.mode("overwrite").parquet(parquet)
        if "spark" not in skip:
            results["spark_local2_s"] = bench_spark(spark, model_path, parquet, len(texts), opts, pbu_sizes)
        if "job" not in skip:
            results["score_job_s"] = bench_job(spark, model_path, texts, out, opts)
    if "generate" not in skip:
        results["generation"] = bench_generation(model_path, raw, args.new_tokens, batch=8)

    n = len(texts)
    rates = {}
    for name, sec in results.get("bare_1_thread_s", {}).items():
        rates[f"a_bare_{name}"] = (n / sec, 1)
    if "bare_2_procs_s" in results:
        rates["a2_bare_2_processes"] = (n / results["bare_2_procs_s"], 2)
    for name, sec in results.get("spark_local2_s", {}).items():
        label = ("b_" + name if name.startswith("ours") else "c_" + name if name.startswith("predict") else "d_" + name)
        rates[label] = (n / sec, 2)
    for name, sec in results.get("score_job_s", {}).items():
        rates[f"b2_score_job_{name}"] = (n / sec, 2)
    results["texts_per_s"] = {k: round(r, 1) for k, (r, _) in rates.items()}
    results["texts_per_s_per_core"] = {k: round(r / c, 1) for k, (r, c) in rates.items()}
    results["load_1min_after"] = LOADAVG
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    json.dump(results, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
