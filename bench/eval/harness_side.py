"""lm-eval-harness's ``hf`` model on our task files, timed in this process (run by ``bench_eval.py``).

    python bench/eval/harness_side.py --model HF_FOLDER --task-dir DIR --tasks a,b --batch-sizes 1,4,8 \\
        --threads 1 --out result.json

For each batch size: ``lm_eval.models.huggingface.HFLM(pretrained=HF_FOLDER, dtype=float32, device=cpu,
batch_size=B)`` is built once (model load outside the timer), warmed up by one ``simple_evaluate`` on the
first 8 items of every task, then timed: one ``simple_evaluate`` over every item of every task (the same task
definitions as the parity test, ``udfs.lm_eval_adapter.harness_task_config``; nothing downloaded). Time is the
CPU seconds of this process (``getrusage``: it starts no children) and wall seconds. Writes, per batch size,
the seconds, the number of items and the per-task accuracy (checked against ours by the caller).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="Hugging Face folder")
    p.add_argument("--task-dir", required=True)
    p.add_argument("--tasks", required=True, help="comma-separated task names (TASK_DIR/<name>.jsonl)")
    p.add_argument("--batch-sizes", default="1,4,8,16,32", help="timed one after the other, one run each")
    p.add_argument("--threads", type=int, default=1, help="torch threads in this process")
    p.add_argument("--out", required=True, help="JSON result file")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from benchlib import pin_threads

    pin_threads(args.threads)
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from udfs.lm_eval_adapter import harness_task_config

    tasks = args.tasks.split(",")
    configs = [harness_task_config(t, Path(args.task_dir) / f"{t}.jsonl") for t in tasks]
    manager = TaskManager(include_defaults=False)

    def evaluate(lm, limit=None):
        return lm_eval.simple_evaluate(
            model=lm, tasks=configs, num_fewshot=0, limit=limit, task_manager=manager, log_samples=True
        )

    runs = {}
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        lm = HFLM(pretrained=args.model, dtype="float32", device="cpu", batch_size=b)
        evaluate(lm, limit=8)  # warm-up: every task's dataset built once, the kernels touched
        c0, t0 = _cpu(), time.perf_counter()
        out = evaluate(lm)
        cpu, wall = _cpu() - c0, time.perf_counter() - t0
        items = {t: len(out["samples"][t]) for t in tasks}
        acc = {t: out["results"][t].get("acc,none") for t in tasks}
        runs[str(b)] = {"cpu_s": cpu, "wall_s": wall, "items": items, "acc": acc}
        print(f"harness batch {b}: {sum(items.values())} items, {cpu:.1f} CPU s, {wall:.1f} s wall", flush=True)
        del lm
    Path(args.out).write_text(
        json.dumps({"lm_eval": lm_eval.__version__, "threads": args.threads, "runs": runs}, indent=1),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
