"""Items per CPU-second: ``jobs/evaluate.py`` on ``local[2]`` vs lm-eval-harness's ``hf`` model (issue 17).

    python bench/eval/bench_eval.py --data ../shared/data --out /tmp/bench_eval --limit 200 --repeats 3 \\
        --harness-batch-sizes 1,2,4,8,16,32 [--raw PATH]

The model: a random-weight lakelm GPT (``--layers`` x ``--width``, default 6 x 384, 64-wide heads, block
``--block`` 1024) with a byte-level BPE tokenizer (``--vocab`` 8192) trained on the task texts, saved as a
lakelm artifact and exported to the Hugging Face layout (``jobs/export.py --format hf``): the harness reads the
export, we read the artifact (the parity test shows the two give the same log-likelihoods). The tasks: the
first ``--limit`` lines of every file in ``DATA/eval_tasks`` (all seven by default), zero-shot, fp32.

Both sides are timed warm, over the same items, the same statistic (median of ``--repeats`` runs):

* ours: one ``local[2]`` SparkSession (spark-defaults.conf, one torch thread per task) in this process,
  warmed up by one ``jobs.evaluate.main`` on the first 8 lines of each task (workers started, model loaded in
  each), then ``jobs.evaluate.main`` over every item, default options (token budget by device, two tasks);
  CPU seconds of this process tree (driver, JVM, Python workers: ``proc_cpu.tree_cpu_seconds``) and wall.
  It writes the items, tasks, quarantine and runs Delta tables every run; the harness writes nothing.
* the harness (0.4.13 here): ``bench/eval/harness_side.py`` in a child process with one torch thread
  (``--harness-threads``): ``HFLM(pretrained=export, dtype=float32, batch_size=B)`` built outside the timer,
  warmed up on 8 items of each task, then one ``simple_evaluate`` over every item; ``B`` swept over
  ``--harness-batch-sizes``: every size in round 1, the fastest of round 1 again in each later round, so its
  median is over as many runs as ours. Its CPU seconds are the child's own (``getrusage``).

Headline: ours / best harness in items per CPU-second (goal >= 2); items per core-second of wall
(wall x 2 cores for ours, x threads for the harness) printed beside it. Per-task accuracy must be equal on
both sides (the run exits 1 otherwise: the ratio would not be like for like). Raw numbers of every run go to
``--raw`` (default ``bench/eval/raw/eval-<UTC>.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from benchlib import default_raw_path, machine_info, median, pin_threads, write_raw  # noqa: E402
from proc_cpu import tree_cpu_seconds  # noqa: E402

TASKS = "arc_challenge,arc_easy,copa,lambada_openai_small,openbook_qa,piqa,winograd_wsc"


def _strings(doc: dict) -> list[str]:
    vals = [doc.get(k) for k in ("query", "context", "continuation")]
    vals += list(doc.get("choices") or []) + list(doc.get("context_options") or [])
    return [v for v in vals if isinstance(v, str)]


def cut_tasks(src: Path, out: Path, tasks: list[str], limit: int) -> dict[str, int]:
    """The first ``limit`` non-blank lines of each task file into ``out``; returns lines per task."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for t in tasks:
        lines = [x for x in (src / f"{t}.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()][:limit]
        (out / f"{t}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[t] = len(lines)
    return counts


def build_model(out: Path, task_dir: Path, layers: int, width: int, block: int, vocab: int) -> tuple[Path, Path]:
    """(lakelm artifact, its Hugging Face export); reused when present."""
    import torch

    from jobs import export
    from model.artifact import save_artifact
    from model.config import GPTConfig
    from model.gpt import GPT
    from model.tokenizer import train_bpe

    tag = f"{layers}x{width}-b{block}-v{vocab}"
    art, hf = out / f"gpt-{tag}", out / f"gpt-{tag}-hf"
    if not (hf / "config.json").is_file():
        files = sorted(task_dir.glob("*.jsonl"))
        texts = [s for p in files for x in p.read_text("utf-8").splitlines() for s in _strings(json.loads(x))]
        tok = train_bpe(texts, vocab_size=vocab)
        torch.manual_seed(0)
        cfg = GPTConfig(vocab_size=tok.vocab_size, n_layer=layers, n_head=width // 64, n_embd=width, block_size=block)
        save_artifact(art, GPT(cfg).eval(), tok, lineage={"model_name": f"bench-eval-{tag}"})
        assert export.main(["--model", str(art), "--format", "hf", "--output", str(hf)]) == 0
    return art, hf


def ours(spark, art: Path, task_dir: Path, tasks: list[str], work: Path, limit: int | None) -> dict:
    """One ``jobs.evaluate.main`` run; CPU seconds of this process tree, wall, items and per-task acc."""
    from jobs import evaluate

    run_dir = work / f"run-{time.time_ns()}"
    argv = ["--model", str(art), "--tasks", ",".join(tasks), "--task-dir", str(task_dir)]
    argv += ["--output", str(run_dir / "evals"), "--lake", str(run_dir)]
    argv += ["--limit", str(limit)] if limit else []
    buf = io.StringIO()
    c0, t0 = tree_cpu_seconds(), time.perf_counter()
    with contextlib.redirect_stdout(buf):
        code = evaluate.main(argv)
    cpu, wall = tree_cpu_seconds() - c0, time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"jobs.evaluate exited {code}")
    summary = json.loads(buf.getvalue().strip().splitlines()[-1])
    acc = {t: summary["tasks"][t]["acc"] for t in tasks}
    return {"cpu_s": cpu, "wall_s": wall, "items": summary["scored"], "acc": acc, "requests": summary["requests"]}


def harness(hf: Path, task_dir: Path, tasks: list[str], sizes: list[int], threads: int, work: Path) -> dict:
    out = work / f"harness-{time.time_ns()}.json"
    cmd = [sys.executable, str(BENCH / "eval" / "harness_side.py"), "--model", str(hf), "--task-dir", str(task_dir)]
    cmd += ["--tasks", ",".join(tasks), "--batch-sizes", ",".join(map(str, sizes)), "--threads", str(threads)]
    cmd += ["--out", str(out)]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run(cmd, env=env, check=False, text=True, capture_output=True)
    print(res.stdout, end="", flush=True)
    if res.returncode != 0:
        raise SystemExit(f"harness child failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(out.read_text(encoding="utf-8"))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="folder holding eval_tasks/")
    p.add_argument("--out", default="/tmp/bench_eval", help="work folder (models, task slices, tables)")
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--limit", type=int, default=200, help="first N lines of each task file")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--harness-batch-sizes", default="1,2,4,8,16,32")
    p.add_argument("--harness-threads", type=int, default=1)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--raw", help="raw JSON path (default bench/eval/raw/eval-<UTC>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_threads(1)
    work, tasks = Path(args.out), args.tasks.split(",")
    task_dir = work / f"tasks-{args.limit}"
    lines = cut_tasks(Path(args.data) / "eval_tasks", task_dir, tasks, args.limit)
    art, hf = build_model(work, task_dir, args.layers, args.width, args.block, args.vocab)
    sizes = [int(x) for x in args.harness_batch_sizes.split(",")]

    from jobs.common.spark import get_spark

    spark = get_spark("bench-eval", master="local[2]")
    ours(spark, art, task_dir, tasks, work, limit=8)  # warm-up: both workers up, the model loaded in each
    runs: dict = {"ours": [], "harness": []}
    best = None
    for r in range(args.repeats):
        runs["ours"].append({**ours(spark, art, task_dir, tasks, work, None), "load": os.getloadavg()[0]})
        o = runs["ours"][-1]
        print(f"round {r + 1} ours: {o['items']} items, {o['cpu_s']:.1f} CPU s, {o['wall_s']:.1f} s wall", flush=True)
        h = harness(hf, task_dir, tasks, sizes if best is None else [best], args.harness_threads, work)
        runs["harness"].append(h)
        if best is None:
            best = min(h["runs"], key=lambda b: h["runs"][b]["cpu_s"])
            best = int(best)
    spark.stop()

    n = sum(lines.values())
    bad = []
    for h in runs["harness"]:
        for b, x in h["runs"].items():
            if sum(x["items"].values()) != n:
                bad.append(f"harness batch {b}: {x['items']} items, want {n}")
            for t in tasks:
                if x["acc"][t] is not None and abs(x["acc"][t] - runs["ours"][0]["acc"][t]) > 1e-12:
                    bad.append(f"{t}: harness acc {x['acc'][t]} != ours {runs['ours'][0]['acc'][t]} (batch {b})")
    our_cpu = median([x["cpu_s"] for x in runs["ours"]])
    our_wall = median([x["wall_s"] for x in runs["ours"]])
    sweep = {b: x["cpu_s"] for b, x in runs["harness"][0]["runs"].items()}
    best_runs = [h["runs"][str(best)] for h in runs["harness"]]
    h_cpu, h_wall = median([x["cpu_s"] for x in best_runs]), median([x["wall_s"] for x in best_runs])
    summary = {
        "items": n,
        "lines_per_task": lines,
        "requests": runs["ours"][0]["requests"],
        "ours_items_per_cpu_s": n / our_cpu,
        "ours_items_per_core_s_wall": n / (our_wall * 2),
        "harness_best_batch": best,
        "harness_sweep_cpu_s_round1": sweep,
        "harness_items_per_cpu_s": n / h_cpu,
        "harness_items_per_core_s_wall": n / (h_wall * args.harness_threads),
        "ratio_per_cpu_s": h_cpu / our_cpu,
        "ratio_per_core_s_wall": (h_wall * args.harness_threads) / (our_wall * 2),
        "goal": 2.0,
        "mismatches": bad,
    }
    raw = Path(args.raw) if args.raw else default_raw_path("eval", "eval")
    write_raw(raw, {"args": vars(args), "machine": machine_info(), "summary": summary, "runs": runs})
    print(json.dumps(summary, indent=1))
    print(
        f"ours {summary['ours_items_per_cpu_s']:.1f} items/CPU-s, harness (batch {best}) "
        f"{summary['harness_items_per_cpu_s']:.1f}: {summary['ratio_per_cpu_s']:.2f}x per CPU-s "
        f"({summary['ratio_per_core_s_wall']:.2f}x per core-s of wall); raw {raw}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
