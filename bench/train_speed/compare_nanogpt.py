"""Our trainer vs nanoGPT's ``train.py`` on the CPU baby-GPT recipe, run alternately on one machine.

    python bench/train_speed/compare_nanogpt.py --nanogpt-dir /tmp/nanogpt --out /tmp/cmp \\
        [--speed-iters 300] [--speed-rounds 2] [--quality-iters 2000] [--variants auto,fp32]

``--nanogpt-dir`` is an unmodified checkout of karpathy/nanoGPT kept outside this repository (nothing
of it is copied here; it is only run). Its ``data/shakespeare_char`` is prepared with its own
``prepare.py`` after copying our local ``input.txt`` there, so nothing is downloaded.

Every run is a fresh process with ``OMP_NUM_THREADS=1`` (ours also calls ``torch.set_num_threads(1)``).

1. Speed, ``--speed-rounds`` rounds of nanoGPT then ours once per ``--variants`` precision
   (``ours_auto``, ``ours_fp32``...), ``--speed-iters`` iterations each. nanoGPT: mean of its printed
   per-iteration times, leaving out iterations < 10 and those that ran an evaluation (iter % 250 == 0).
   Ours: ``train_ms_per_step`` from ``bench.json`` (log intervals without evaluation, first one left out).
2. Quality at equal wall clock: nanoGPT for ``--quality-iters`` iterations (checkpoint saved at the
   last evaluation); its training-loop time (sum of its per-iteration times, evaluations and checkpoint
   saves included) is the budget. Each variant of ours runs ``--quality-iters`` steps, then N steps with
   ``max_steps = lr_decay_steps = N`` where N fits the budget at the speed of that same-steps run.
   All final models are scored by ``full_val.py`` on the whole val split.

Writes ``OUT/compare.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare" / "input.txt"
NANOGPT_ARGS = [
    "config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
    "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--lr_decay_iters=2000",
    "--dropout=0.0",
]  # fmt: skip
TOKENS_PER_ITER = 12 * 64
ITER_RE = re.compile(r"^iter (\d+): loss ([\d.]+), time ([\d.]+)ms")
STEP_RE = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


def env1() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def prepare_nanogpt(nanogpt: Path, input_txt: Path) -> None:
    """Run nanoGPT's own shakespeare_char/prepare.py on our local copy of input.txt (no download)."""
    d = nanogpt / "data" / "shakespeare_char"
    if (d / "train.bin").exists() and (d / "val.bin").exists() and (d / "meta.pkl").exists():
        return
    if not (d / "input.txt").exists():
        shutil.copyfile(input_txt, d / "input.txt")
    subprocess.run([sys.executable, "prepare.py"], cwd=d, env=env1(), check=True)


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages (the machine is shared; recorded with every run)."""
    return [round(x, 2) for x in os.getloadavg()]


def run_nanogpt(nanogpt: Path, out: Path, iters: int, save: bool) -> dict:
    """One nanoGPT run; returns its per-iteration times, evaluations and wall time."""
    cmd = [sys.executable, "train.py", *NANOGPT_ARGS, f"--max_iters={iters}", f"--out_dir={out}"]
    if save:
        cmd.append("--always_save_checkpoint=True")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, check=False, cwd=nanogpt, env=env1(), capture_output=True, text=True)
    wall = time.monotonic() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "stdout.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"nanoGPT failed ({proc.returncode}): {proc.stderr[-2000:]}")
    iters_ms = {int(m[1]): float(m[3]) for m in map(ITER_RE.match, proc.stdout.splitlines()) if m}
    evals = {int(m[1]): float(m[3]) for m in map(STEP_RE.match, proc.stdout.splitlines()) if m}
    clean = [t for i, t in iters_ms.items() if i >= 10 and i % 250 != 0]
    return {
        "loadavg_after": loadavg(),
        "cmd": " ".join(cmd[1:]),
        "process_wall_s": wall,
        "loop_s_to_iter": sum(t for i, t in iters_ms.items() if i < iters) / 1000,  # iters 0..iters-1 incl. evals
        "train_ms_per_iter": statistics.fmean(clean),
        "train_ms_median": statistics.median(clean),
        "iters_timed": len(clean),
        "val_curve": evals,
        "val_loss_logged": evals.get(iters),
    }


def run_ours(out: Path, input_txt: Path, steps: int, decay: int, extra: list[str]) -> dict:
    """One run of bench_shakespeare_char.py; returns its bench.json plus the process wall time."""
    cmd = [
        sys.executable, str(HERE / "bench_shakespeare_char.py"), "--input", str(input_txt), "--out", str(out),
        "--max-steps", str(steps), "--lr-decay-steps", str(decay), "--threads", "1", "--no-progress", *extra,
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, check=False, env=env1(), capture_output=True, text=True)
    wall = time.monotonic() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "stdout.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"our trainer failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads((out / "bench.json").read_text())
    cmd_s = " ".join(Path(c).name if c == sys.executable else c for c in cmd)
    return {"loadavg_after": loadavg(), "cmd": cmd_s, "process_wall_s": wall, **report}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nanogpt-dir", required=True, type=Path, help="a karpathy/nanoGPT checkout (outside the repo)")
    p.add_argument("--out", required=True, type=Path, help="new or empty folder for all runs")
    p.add_argument("--input", default=DEFAULT_INPUT, type=Path)
    p.add_argument("--speed-iters", type=int, default=300)
    p.add_argument("--speed-rounds", type=int, default=2)
    p.add_argument("--quality-iters", type=int, default=2000, help="0 skips the quality runs")
    p.add_argument("--variants", default="auto,fp32", help="comma-separated TrainConfig.precision values of ours")
    args = p.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty")
    args.out.mkdir(parents=True, exist_ok=True)
    nanogpt, out = args.nanogpt_dir.resolve(), args.out.resolve()
    prepare_nanogpt(nanogpt, args.input)
    variants = {f"ours_{v}": ["--precision", v] for v in args.variants.split(",")}
    res: dict = {"speed": {"nanogpt": []} | {k: [] for k in variants}, "quality": {}}

    def save() -> None:
        (out / "compare.json").write_text(json.dumps(res, indent=2, default=str) + "\n")

    n = args.speed_iters
    for r in range(args.speed_rounds):
        res["speed"]["nanogpt"].append(run_nanogpt(nanogpt, out / f"speed{r}_nanogpt", n, save=False))
        print(f"round {r} nanogpt {res['speed']['nanogpt'][-1]['train_ms_per_iter']:.2f} ms/iter", flush=True)
        for name, extra in variants.items():
            res["speed"][name].append(run_ours(out / f"speed{r}_{name}", args.input, n, 2000, extra))
            print(f"round {r} {name} {res['speed'][name][-1]['train_ms_per_step']:.2f} ms/step", flush=True)
        save()
    ng_ms = [x["train_ms_per_iter"] for x in res["speed"]["nanogpt"]]
    for name in variants:
        ours_ms = [x["train_ms_per_step"] for x in res["speed"][name]]
        res["speed"][f"{name}_speedup"] = {
            "per_round": [a / b for a, b in zip(ng_ms, ours_ms)],  # nanoGPT ms / ours ms: > 1 = ours faster
            "of_means": statistics.fmean(ng_ms) / statistics.fmean(ours_ms),
        }
    save()

    q = args.quality_iters
    if q:
        ng = run_nanogpt(nanogpt, out / "quality_nanogpt", q, save=True)
        res["quality"]["nanogpt"] = ng
        budget = ng["loop_s_to_iter"]
        print(f"nanogpt {q} iters: {budget:.1f} s training loop", flush=True)
        for name, extra in variants.items():
            same = run_ours(out / f"quality_{name}_same_steps", args.input, q, q, extra)
            res["quality"][f"{name}_same_steps"] = same
            save()
            n_steps = max(101, math.floor(q * budget / same["wall_s"]))
            wall_run = run_ours(out / f"quality_{name}_same_wall", args.input, n_steps, n_steps, extra)
            res["quality"][f"{name}_same_wall"] = wall_run
            print(f"{name}: {n_steps} steps in {wall_run['wall_s']:.1f} s", flush=True)
            save()
        sys.path.insert(0, str(HERE))
        from full_val import full_val_loss, load_nanogpt

        text = args.input.read_text(encoding="utf-8")
        stoi = {c: i for i, c in enumerate(sorted(set(text)))}
        ids = np.array([stoi[c] for c in text], dtype=np.uint16)
        loss, ntok = full_val_loss(load_nanogpt(out / "quality_nanogpt" / "ckpt.pt"), ids[int(0.9 * len(ids)) :])
        ng["full_val_loss"], ng["full_val_bpb"], ng["full_val_tokens"] = loss, loss / math.log(2), ntok
        ng["budget_s"] = budget
        save()
    print(json.dumps(res, indent=2, default=str)[:4000])
    return res


if __name__ == "__main__":
    main()
