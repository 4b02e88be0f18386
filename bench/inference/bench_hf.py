"""Hugging Face folders through our scoring UDF (native path and transformers backend) vs the bare loop
and ``predict_batch_udf`` with ``transformers``: the three ratios of issue 14's benchmark.

    python bench/inference/bench_hf.py --data ../shared/data --out /tmp/bench_hf --n-texts 600 \\
        --repeats 3 --models gpt2,llama --pbu-batch-sizes 4,8,16,32 [--raw PATH]

Models: a random-weight GPT-2 and a random-weight Llama of the same size (``--layers`` x ``--width``,
default 6 x 384, 64-wide heads; the Llama has GQA with a third as many key/value heads when the head
count divides by 3, an MLP of 8/3 x width rounded up to 64), block ``--block`` (1024), built here with
``transformers`` (``from_config``, ``save_pretrained(safe_serialization=True)``) and one byte-level BPE
``tokenizer.json`` trained on the bench texts (``model.tokenizer.train_bpe``, ``--vocab`` 8192) saved
into both folders; BOS = EOS = ``<|endoftext|>``. Nothing is downloaded. The texts are the inference
bench set (``bench_scoring.load_texts``: C4, CommonCrawl 2019, US presidential speeches, Gutenberg
paragraphs) cut to at most ``block - 1`` tokens (``cut_to_block``), so every row scores one window per
text and computes the same numbers: each text's summed log-prob after one prefix id (BOS, else EOS).

Rows, per model, every one in fp32 with one torch thread per process:

    a.   bare PyTorch in this process: ``udfs.tasks.score_texts`` on the natively loaded model
         (``model.loading.load_model``), default options (length bucketing, token budget by device), 1 core
    a2.  the same loop in 2 processes at once, every other text each (both cores busy, as under local[2])
    b.   native: our UDF, ``udfs.inference.make_score_udf(folder)`` with default options, on local[2]
         (``spark.task.cpus`` = 1); the folder loads natively (model/hf_load.py)
    b_tf. the transformers backend through our UDF: the same ``make_score_udf(folder)``, run inside a
         pandas UDF that, for the duration of each task, empties ``model.hf_load.NATIVE_MODEL_TYPES``
         (``model.loading`` reads it at call time), so the folder routes to the transformers adapter
         (model/hf_transformers.py) exactly as a non-native model_type does; each worker reports the
         class it loaded and the run is refused unless it is ``TransformersCausalLM``. A bench-only
         switch: the library has no option to force it.
    c_B. what a user writes today: ``pyspark.ml.functions.predict_batch_udf`` (DoubleType) whose
         ``make_predict_fn`` loads ``transformers.AutoModelForCausalLM`` (fp32, eval, 1 thread) and the
         ``tokenizers`` Tokenizer of the same tokenizer.json once per worker; ``predict`` encodes its
         ``B`` rows, puts the prefix id before each, right-pads to the batch's longest, runs
         ``model(input_ids, attention_mask)`` under ``no_grad``, takes a full ``log_softmax`` over the
         logits, gathers the next-token log-probs and sums them per row; table order; ``B`` swept over
         ``--pbu-batch-sizes`` and the best taken: every size runs in round 1, and the fastest of round 1
         runs again in every later round, so the best baseline's median is over as many runs as ours
         (``--full-sweep`` times every size in every round).

Timing: every Spark row runs in a fresh SparkContext (new Python workers, so each row's model load time
and peak RSS are its own), on a 4-file Parquet copy of the texts; it is warmed up on 64 rows in two
concurrent tasks (both workers started, model loaded), then timed: ``select(id, score).collect()``
(the scores come back to the driver, where they are checked). The bare loop is warmed up on 50 texts
(each a2 process too, before a barrier). ``--repeats`` rounds (default 3), each running every row of
every model once, interleaved; the median wall time is reported. Texts per core-second = texts / (median
wall x cores used): 1 for a, 2 for a2 and the Spark rows.

Per worker, for every row: model load seconds (our UDF's load marker, which times
``model.loading.load_model``; for c, ``import transformers`` + ``from_pretrained`` + the tokenizer) and
peak RSS (``VmHWM`` in ``/proc/<pid>/status`` of each Python worker after the timed run; for a2,
``getrusage`` in each process). Outputs must agree: every row's ``sum_logprob`` is compared with row a's
(relative difference at most ``1e-3``); a row that does not agree makes the run exit 1 (its raw JSON is
still written), since its ratio would not be like for like.

Headlines per model: b / best c (goal >= 2.0), b_tf / best c (goal >= 1.5), b / a2 per core (goal >= 0.9:
both cores busy on both sides, as like for like as the bare loop gets; b / a, one process alone on the
machine, printed beside it). Row a runs in round 1 only (its scores are the reference every row is checked
against) unless ``--every-round-single-core``. Raw numbers (every run) go to ``--raw`` (default
``bench/inference/raw/hf-<UTC>.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scoring import LOADAVG, cut_to_block, load_texts, timed
from benchlib import default_raw_path, median, pin_threads, write_raw

log = logging.getLogger("bench.inference.hf")
MODELS = ("gpt2", "llama")
AGREE_RTOL = 1e-3  # most relative difference of a row's sum_logprob from the bare loop's
WARM_ROWS = 64


def model_dims(width: int) -> dict:
    """Heads, key/value heads and MLP width of the bench models for a hidden size ``width`` (multiple of 64)."""
    n_head = width // 64
    n_kv = n_head // 3 if n_head % 3 == 0 else n_head  # GQA where it divides: 6 heads -> 2 kv heads
    mlp = -(-8 * width // 3 // 64) * 64  # Llama's 8/3 x width, rounded up to 64: 384 -> 1024
    return {"n_head": n_head, "n_kv_head": n_kv, "mlp": mlp}


def build_folders(
    out: Path, texts: list[str], models: list[str], layers: int, width: int, block: int, vocab: int
) -> dict[str, Path]:
    """Random-weight Hugging Face folders (safetensors + one BPE tokenizer.json); reused when present."""
    import torch
    import transformers

    from model.tokenizer import load_tokenizer, train_bpe

    tag = f"{layers}x{width}-b{block}-v{vocab}-n{len(texts)}"
    tok_path = out / f"tokenizer-{tag}.json"
    if not tok_path.is_file():
        train_bpe(texts, vocab_size=vocab).save(tok_path)
    tok = load_tokenizer(tok_path)
    d = model_dims(width)
    special = {"bos_token_id": tok.eos_id, "eos_token_id": tok.eos_id}
    configs = {
        "gpt2": lambda: transformers.GPT2Config(
            vocab_size=tok.vocab_size, n_positions=block, n_embd=width, n_layer=layers, n_head=d["n_head"], **special
        ),
        "llama": lambda: transformers.LlamaConfig(
            vocab_size=tok.vocab_size,
            hidden_size=width,
            intermediate_size=d["mlp"],
            num_hidden_layers=layers,
            num_attention_heads=d["n_head"],
            num_key_value_heads=d["n_kv_head"],
            max_position_embeddings=block,
            pad_token_id=tok.pad_id,
            initializer_range=0.05,
            **special,
        ),
    }
    paths = {}
    for name in models:
        path = out / f"{name}-{tag}"
        if not (path / "model.safetensors").is_file():
            torch.manual_seed(0)
            transformers.AutoModelForCausalLM.from_config(configs[name]()).eval().save_pretrained(
                path, safe_serialization=True
            )
            tok.save(path / "tokenizer.json")
        paths[name] = path
    return paths


# ---- bare loop (a, a2) --------------------------------------------------------------------------------


def _bare_worker(folder: str, texts: list[str], barrier, out) -> None:
    """One process of a2: load natively, warm up, wait for the others, score its share."""
    import resource

    import torch

    from model.loading import load_model
    from udfs.tasks import score_texts

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    art = load_model(folder)
    load_s = time.perf_counter() - t0
    series = pd.Series(texts, dtype=object)
    score_texts(art.model, art.tokenizer, series[:50])
    barrier.wait()
    t0 = time.perf_counter()
    res = score_texts(art.model, art.tokenizer, series)
    sec = time.perf_counter() - t0
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out.put((os.getpid(), sec, load_s, rss_kib / 1024, res["sum_logprob"].astype(float).tolist()))


def bare_parallel(folder: Path, texts: list[str], procs: int = 2) -> dict:
    """a2: the bare loop in ``procs`` processes at once, every ``procs``-th text each.

    Returns:
        ``{"wall_s", "load_s", "peak_rss_mib", "sum_logprob"}`` (wall until the last process finished;
        per-process load and peak RSS; the scores in text order).
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(procs + 1), ctx.Queue()
    shares = [list(range(i, len(texts), procs)) for i in range(procs)]
    ps = [
        ctx.Process(target=_bare_worker, args=(str(folder), [texts[j] for j in share], barrier, out))
        for share in shares
    ]
    for p in ps:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    got = [out.get() for _ in ps]
    wall = time.perf_counter() - t0
    for p in ps:
        p.join()
    scores = np.full(len(texts), np.nan)
    by_pid = {g[0]: g for g in got}
    for p, share in zip(ps, shares):
        scores[share] = by_pid[p.pid][4]
    return {"wall_s": wall, "load_s": [g[2] for g in got], "peak_rss_mib": [g[3] for g in got], "sum_logprob": scores}


# ---- Spark rows (b, b_tf, c) ----------------------------------------------------------------------------


def _write_marker(folder: str, kind: str, record: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"), "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), **record}, f)


def transformers_backend_udf(folder: str, stats_dir: str):
    """b_tf: ``make_score_udf(folder)`` with the folder routed to the transformers adapter in each task.

    The wrapper empties ``model.hf_load.NATIVE_MODEL_TYPES`` while our UDF's iterator runs (and restores
    it after), then records the class of the model the worker's cache holds for ``folder``.
    """
    from pyspark.sql.functions import pandas_udf

    from udfs.inference import make_score_udf
    from udfs.tasks import SCHEMAS

    inner = make_score_udf(folder, load_log_dir=stats_dir).func  # our UDF's iterator function

    @pandas_udf(SCHEMAS["score"])
    def score_via_transformers(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from model import hf_load
        from udfs.model_cache import load_model_cached

        native, hf_load.NATIVE_MODEL_TYPES = hf_load.NATIVE_MODEL_TYPES, ()
        try:
            yield from inner(batches)
            loaded = type(load_model_cached(folder).model).__name__  # a cache hit: the model the rows used
        finally:
            hf_load.NATIVE_MODEL_TYPES = native
        _write_marker(stats_dir, "class", {"model_class": loaded})

    return score_via_transformers


def pbu_predict_fn(folder: str, stats_dir: str):
    """c: ``make_predict_fn`` for ``predict_batch_udf``: transformers model + tokenizer, full log_softmax."""

    def make_predict_fn():
        import torch

        torch.set_num_threads(1)
        t0 = time.perf_counter()
        import transformers
        from tokenizers import Tokenizer

        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, local_files_only=True
        ).eval()
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        prefix = model.config.bos_token_id if model.config.bos_token_id is not None else model.config.eos_token_id
        pad = model.config.pad_token_id if model.config.pad_token_id is not None else prefix
        _write_marker(stats_dir, "load", {"seconds": time.perf_counter() - t0})

        def predict(texts: np.ndarray) -> np.ndarray:
            seqs = [[prefix] + e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]
            T = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), T), pad, dtype=torch.long)  # (B, T)
            attn = torch.zeros((len(seqs), T), dtype=torch.long)  # (B, T)
            for r, s in enumerate(seqs):
                ids[r, : len(s)], attn[r, : len(s)] = torch.tensor(s), 1
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=attn).logits  # (B, T, V)
                lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                return (lp * attn[:, 1:]).sum(dim=1).double().numpy()  # (B,) summed log-prob per row

        return predict

    return make_predict_fn


def spark_column(row: str, folder: str, stats_dir: str):
    """The score column of one Spark row (``b``, ``b_tf`` or ``c_<B>``) over the ``text`` column."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import DoubleType

    from udfs.inference import make_score_udf

    if row == "b":
        return make_score_udf(folder, load_log_dir=stats_dir)("text").sum_logprob
    if row == "b_tf":
        return transformers_backend_udf(folder, stats_dir)("text").sum_logprob
    batch = int(row.split("_")[1])
    return predict_batch_udf(pbu_predict_fn(folder, stats_dir), return_type=DoubleType(), batch_size=batch)("text")


def _worker_stats(stats_dir: Path) -> dict:
    """Per worker: load seconds (load markers) and peak RSS (VmHWM, MiB) of each live marker pid."""
    loads, classes = {}, {}
    for f in sorted(stats_dir.glob("*.json")):
        rec = json.loads(f.read_text(encoding="utf-8"))
        if f.name.startswith("load-"):
            loads.setdefault(rec["pid"], []).append(rec["seconds"])
        elif f.name.startswith("class-"):
            classes.setdefault(rec["pid"], set()).add(rec["model_class"])
    rss = {}
    for pid in loads:
        try:
            status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
            rss[pid] = int(next(x.split()[1] for x in status.splitlines() if x.startswith("VmHWM:"))) / 1024
        except (OSError, StopIteration):
            rss[pid] = None
    return {
        "workers": sorted(loads),
        "load_s": [s for pid in sorted(loads) for s in loads[pid]],
        "n_loads": sum(len(v) for v in loads.values()),
        "peak_rss_mib": [rss[pid] for pid in sorted(loads)],
        "model_classes": sorted({c for v in classes.values() for c in v}),
    }


def spark_run(parquet: str, model: str, row: str, folder: Path, work: Path, n: int) -> dict:
    """One timed run of one Spark row in a fresh SparkContext: warm-up, timed collect, worker stats."""
    from jobs.common.spark import get_spark

    spark = get_spark("bench-hf", master="local[2]", conf={"spark.task.cpus": "1"})
    try:
        stats = work / "stats" / f"{model}-{row}-{time.time_ns()}"
        stats.mkdir(parents=True)
        col = spark_column(row, str(folder), str(stats))
        df = spark.read.parquet(parquet)
        warm = df.limit(WARM_ROWS).repartition(2).cache()
        warm.select(col.alias("s")).write.format("noop").mode("overwrite").save()
        got: list = []
        name = f"{model}_{row}"
        sec = timed(lambda: got.extend(df.select("id", col.alias("s")).collect()), name)
        scores = np.full(n, np.nan)
        for r in got:
            scores[r["id"]] = np.nan if r["s"] is None else r["s"]
        out = {"wall_s": sec, "sum_logprob": scores, **_worker_stats(stats)}
    finally:
        spark.stop()
    log.info(
        "%s %s: %.1f s, load %s s, peak RSS %s MiB",
        model,
        row,
        sec,
        [round(x, 2) for x in out["load_s"]],
        [round(x) if x else x for x in out["peak_rss_mib"]],
    )
    return out


# ---- the run ----------------------------------------------------------------------------------------------


def max_rel_diff(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest ``|got - ref| / |ref|`` over the texts (inf when a score is missing)."""
    if np.isnan(got).any() or len(got) != len(ref):
        return math.inf
    return float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-9)))


def summarize(runs: dict, n: int, pbu_rows: list[str]) -> dict:
    """Median seconds -> texts per core-second per row, per-worker load/RSS, the headline ratios."""
    rows, head = {}, {}
    for name, rs in runs.items():
        model, row = name.split("_", 1)
        cores = 1 if row == "a" else 2
        sec = median([r["wall_s"] for r in rs])
        rows[name] = {
            "median_s": sec,
            "n_runs": len(rs),
            "cores": cores,
            "texts_per_s": n / sec,
            "texts_per_core_s": n / sec / cores,
            "load_s_per_worker": [x for r in rs for x in r.get("load_s", [])],
            "peak_rss_mib_per_worker": [x for r in rs for x in r.get("peak_rss_mib", [])],
            "max_rel_diff_vs_a": max(r["max_rel_diff_vs_a"] for r in rs),
        }
    for model in sorted({k.split("_", 1)[0] for k in rows}):
        pc = {k.split("_", 1)[1]: v["texts_per_core_s"] for k, v in rows.items() if k.startswith(model + "_")}
        h: dict = {}
        cands = {r: pc[r] for r in pbu_rows if r in pc}
        if cands:
            best = max(cands, key=cands.get)
            h["best_pbu"] = best
            for ours, key in (("b", "native_over_best_pbu"), ("b_tf", "transformers_over_best_pbu")):
                if ours in pc:
                    h[key] = pc[ours] / cands[best]  # goals: 2.0 and 1.5
        if "b" in pc and "a2" in pc:  # both cores busy on both sides, same repeats: the headline
            h["native_over_bare_per_core"] = pc["b"] / pc["a2"]  # goal >= 0.9
        if "b" in pc and "a" in pc:
            h["native_over_bare_1_process_per_core"] = pc["b"] / pc["a"]
        head[model] = h
    agree = all(v["max_rel_diff_vs_a"] <= AGREE_RTOL for v in rows.values())
    return {"rows": rows, "headline": head, "outputs_agree": agree}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="the shared/data folder (web_c4_sample, ...)")
    p.add_argument("--out", required=True, type=Path, help="work folder (model folders, Parquet copy, worker stats)")
    p.add_argument("--raw", help="raw JSON output (default bench/inference/raw/hf-<UTC>.json)")
    p.add_argument("--n-texts", type=int, default=600)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of every row (median reported)")
    p.add_argument("--models", default="gpt2,llama", help=f"comma list of: {','.join(MODELS)}")
    p.add_argument("--pbu-batch-sizes", default="4,8,16,32", help="predict_batch_udf batch sizes to sweep")
    p.add_argument(
        "--full-sweep",
        action="store_true",
        help="time every predict_batch_udf batch size in every round (default: every size in round 1, then "
        "only round 1's fastest, so the best baseline gets the same repeats as our rows)",
    )
    p.add_argument(
        "--every-round-single-core",
        action="store_true",
        help="time row a (1 process alone) in every round (default: round 1 only; the headline is against a2, "
        "the bare loop with both cores busy, timed every round)",
    )
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--width", type=int, default=384, help="hidden size, a multiple of 64 (64-wide heads)")
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary trained on the texts")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    if not args.models or set(args.models) - set(MODELS):
        p.error(f"--models takes a comma list of {','.join(MODELS)}, got {','.join(args.models) or 'nothing'}")
    try:
        args.pbu_batch_sizes = [int(x) for x in args.pbu_batch_sizes.split(",") if x]
    except ValueError:
        p.error(f"--pbu-batch-sizes takes a comma list of integers, got {args.pbu_batch_sizes}")
    if not args.pbu_batch_sizes or min(args.pbu_batch_sizes) < 1:
        p.error("--pbu-batch-sizes needs at least one size, each >= 1")
    for name, low in (("repeats", 1), ("n_texts", 2), ("layers", 1), ("block", 16), ("vocab", 300)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if args.width < 64 or args.width % 64:
        p.error(f"--width must be a positive multiple of 64, got {args.width}")
    if not (args.data / "web_c4_sample").is_dir():
        p.error(f"--data {args.data} has no web_c4_sample folder: give the shared/data folder")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pin_threads(1, rayon=True)  # env vars before the JVM starts: every worker and child inherits them
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: transformers never asks the hub
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no per-load progress bar in every worker's log
    import torch

    from model.loading import load_model
    from udfs.tasks import score_texts

    raw = load_texts(args.data, args.n_texts)
    folders = build_folders(args.out, raw, args.models, args.layers, args.width, args.block, args.vocab)
    arts, load_a = {}, {}
    for m in args.models:
        t0 = time.perf_counter()
        arts[m] = load_model(folders[m])
        load_a[m] = [time.perf_counter() - t0]
    texts = cut_to_block(raw, arts[args.models[0]].tokenizer, args.block - 1)  # one tokenizer for both
    n = len(texts)
    lens = np.array([len(x) for x in arts[args.models[0]].tokenizer.encode_batch(texts)])
    pbu_rows = [f"c_{b}" for b in args.pbu_batch_sizes]
    info = {
        "n_texts": n,
        "tokens": int(lens.sum()),
        "len_min_p10_p50_p90_max": np.percentile(lens, [0, 10, 50, 90, 100]).tolist(),
        "block": args.block,
        "layers": args.layers,
        "width": args.width,
        **model_dims(args.width),
        "vocab": args.vocab,
        "models": {
            m: {
                "folder": str(folders[m]),
                "hash": arts[m].hash,
                "n_params": sum(p.numel() for p in arts[m].model.parameters()),
            }
            for m in args.models
        },
        "repeats": args.repeats,
        "predict_batch_udf_batch_sizes": args.pbu_batch_sizes,
        "torch_threads": torch.get_num_threads(),
    }
    log.info("setup: %s", info)

    series = pd.Series(texts, dtype=object)
    for m in args.models:
        score_texts(arts[m].model, arts[m].tokenizer, series[:50])  # warm-up of a
    parquet = str(args.out / f"texts-{n}-{time.time_ns()}.parquet")
    from jobs.common.spark import get_spark

    spark = get_spark("bench-hf", master="local[2]", conf={"spark.task.cpus": "1"})
    spark.createDataFrame(pd.DataFrame({"id": np.arange(n), "text": texts})).repartition(4).write.parquet(parquet)
    spark.stop()

    runs: dict[str, list[dict]] = {}
    ref: dict[str, np.ndarray] = {}
    for r in range(args.repeats):
        for m in args.models:
            if r == 0 or args.every_round_single_core:
                got: list = []
                sec = timed(lambda a=arts[m], g=got: g.append(score_texts(a.model, a.tokenizer, series)), f"{m}_a")
                scores = got[0]["sum_logprob"].astype(float).to_numpy()
                ref.setdefault(m, scores)
                runs.setdefault(f"{m}_a", []).append(
                    {"wall_s": sec, "sum_logprob": scores, "load_s": load_a[m] if r == 0 else []}
                )
                log.info("round %d %s a: %.1f s", r, m, sec)
            a2 = bare_parallel(folders[m], texts)
            LOADAVG.setdefault(f"{m}_a2", []).append(round(os.getloadavg()[0], 2))
            runs.setdefault(f"{m}_a2", []).append(a2)
            log.info("round %d %s a2: %.1f s", r, m, a2["wall_s"])
            if r == 0 or args.full_sweep:
                sweep = pbu_rows
            else:  # the best batch size of round 0, timed with the same repeats as ours
                sweep = [min(pbu_rows, key=lambda x, m=m: runs[f"{m}_{x}"][0]["wall_s"])]
            for row in ["b", "b_tf", *sweep]:
                res = spark_run(parquet, m, row, folders[m], args.out, n)
                if row == "b_tf" and res["model_classes"] != ["TransformersCausalLM"]:
                    raise SystemExit(
                        f"the transformers-backend row loaded {res['model_classes']}, not the "
                        "transformers adapter: model.loading no longer reads NATIVE_MODEL_TYPES per call"
                    )
                runs.setdefault(f"{m}_{row}", []).append(res)
    for name, rs in runs.items():
        for res in rs:
            res["max_rel_diff_vs_a"] = max_rel_diff(res["sum_logprob"], ref[name.split("_", 1)[0]])
            res["sum_logprob"] = None  # not kept in the raw JSON (the check above is)
    summary = summarize(runs, n, pbu_rows)
    results = {"bench": "inference/hf", "setup": info, "runs": runs, "load_1min_after": LOADAVG, **summary}

    print(f"\n{n} texts, {info['tokens']} tokens; median of {args.repeats} runs per row; texts per core-second")
    for name, row in summary["rows"].items():
        rss = [round(x) for x in row["peak_rss_mib_per_worker"] if x is not None]
        load = [round(x, 2) for x in row["load_s_per_worker"]]
        print(
            f"  {name:12s} {row['median_s']:8.1f} s ({row['n_runs']} runs)  "
            f"{row['texts_per_core_s']:7.2f} /core-s ({row['cores']} cores)  "
            f"load {load} s  peak RSS {rss} MiB  max rel diff {row['max_rel_diff_vs_a']:.1e}"
        )
    for m, h in summary["headline"].items():
        if "native_over_best_pbu" in h:
            print(
                f"{m}: native UDF / best predict_batch_udf ({h['best_pbu']}): "
                f"{h['native_over_best_pbu']:.2f}x (goal >= 2.0)"
            )
        if "transformers_over_best_pbu" in h:
            print(
                f"{m}: transformers-backend UDF / best predict_batch_udf: {h['transformers_over_best_pbu']:.2f}x "
                "(goal >= 1.5)"
            )
        if "native_over_bare_per_core" in h:
            print(
                f"{m}: native UDF / bare loop in 2 processes, per core: {h['native_over_bare_per_core']:.2f}x "
                f"(goal >= 0.9; vs 1 process alone: {h.get('native_over_bare_1_process_per_core', float('nan')):.2f}x)"
            )
    write_raw(args.raw or default_raw_path("inference", "hf"), results)
    if not summary["outputs_agree"]:
        bad = {k: v["max_rel_diff_vs_a"] for k, v in summary["rows"].items() if v["max_rel_diff_vs_a"] > AGREE_RTOL}
        print(f"outputs differ from the bare loop by more than {AGREE_RTOL} (relative): {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
