"""Our trainer vs nanoGPT's ``train.py`` on the CPU baby-GPT recipe, like for like, run alternately on one machine.

    python bench/train_speed/compare_nanogpt.py --nanogpt-dir ../nanoGPT --out /tmp/cmp \\
        [--speed-iters 300] [--speed-rounds 3] [--quality-iters 2000] [--precisions fp32,bf16] \\
        [--compile off,on] [--raw PATH]

``--nanogpt-dir`` is an unmodified checkout of karpathy/nanoGPT kept outside this repository (nothing
of it is copied here; it is only run). Its ``data/shakespeare_char`` is prepared with its own
``prepare.py`` after copying our local ``input.txt`` there, so nothing is downloaded.

Pairs, each nanoGPT run against ours in the same precision (``--precisions``):

- ``fp32`` (the headline): nanoGPT as it runs on CPU (its ``ctx`` is ``nullcontext()`` on CPU whatever
  ``--dtype`` says, so it trains in fp32) vs ours with ``--precision fp32``.
- ``bf16`` (a separate row): nanoGPT given bf16 autocast on CPU by ``nanogpt_cpu_bf16.py``, a config
  overlay its configurator exec()s in train.py's globals, which rebinds the name ``nullcontext`` there
  so ``ctx`` becomes ``torch.autocast("cpu", bfloat16)`` (plus ``--dtype=bfloat16``; the run is refused
  unless its log shows the overlay's marker line), vs ours with ``--precision bf16``. Both autocast
  the forward pass and evaluation only, with fp32 weights and optimizer state.

Compile (``--compile``, default ``off,on``): every setting listed runs on both sides, nanoGPT with
its own ``--compile=False|True`` and ours with ``TrainConfig.compile``, so each side is taken at its
best: the headline ratio is nanoGPT's fastest setting over ours' fastest (medians across rounds), and
the same-setting ratios are kept beside it. Both compile in their first iterations, which the timing
leaves out (nanoGPT: iterations < 10; ours: the first 10-step log interval). Quality runs use each
side's fastest setting from the speed rounds (off when there were none).

Threads: every run is a fresh process with ``OMP_NUM_THREADS=MKL_NUM_THREADS=--threads``; ours calls
``torch.set_num_threads(--threads)``, nanoGPT gets the same call from the ``nanogpt_threads.py`` overlay.

1. Speed: ``--speed-rounds`` rounds; each round runs, per precision and compile setting, nanoGPT then
   ours for ``--speed-iters`` iterations. Per run, both sides: mean ms per training iteration over iterations
   >= 10 that ran no evaluation (nanoGPT: its printed per-iteration times, leaving out iter % 250 == 0;
   ours: ``train_ms_per_step`` from ``bench.json``, 10-step log intervals, leaving out the first and any
   holding an evaluation). Across rounds: the **median** on both sides; ratio = nanoGPT / ours (> 1 =
   ours faster).
2. Quality, per precision, both runs to the end and both scored with one metric: mean loss on the
   **whole** validation split (every non-overlapping 65-char window, ``full_val.full_val_loss``, fp32,
   the same code for both models). (a) same steps: nanoGPT and ours ``--quality-iters`` steps each;
   (b) equal wall clock: ours again with ``max_steps = lr_decay_steps = N``, N chosen so its run fits
   nanoGPT's training-loop time (sum of its per-iteration times, evaluations and checkpoint saves
   included) at the speed of ours' same-steps run.

Writes ``OUT/compare.json`` as it goes (per-run logs and ``bench.json`` under OUT) and the raw
results to ``--raw`` (default ``bench/train_speed/raw/compare_nanogpt-<UTC>.json``).
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
sys.path.insert(0, str(HERE.parent))
from benchlib import default_raw_path, median, pin_threads, write_raw

DEFAULT_INPUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare" / "input.txt"
NANOGPT_ARGS = [
    "config/train_shakespeare_char.py", "--device=cpu", "--eval_iters=20", "--log_interval=1",
    "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--lr_decay_iters=2000",
    "--dropout=0.0",
]  # fmt: skip
THREADS_OVERLAY = HERE / "nanogpt_threads.py"
BF16_OVERLAY = HERE / "nanogpt_cpu_bf16.py"
BF16_MARKER = "lakelm-bench: nanoGPT ctx = torch.autocast('cpu', bfloat16)"  # printed by BF16_OVERLAY
ITER_RE = re.compile(r"^iter (\d+): loss ([\d.]+), time ([\d.]+)ms")
STEP_RE = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


def env_threads(threads: int) -> dict[str, str]:
    t = str(threads)
    return {**os.environ, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "LAKELM_BENCH_THREADS": t}


def prepare_nanogpt(nanogpt: Path, input_txt: Path, threads: int) -> None:
    """Run nanoGPT's own shakespeare_char/prepare.py on our local copy of input.txt (no download)."""
    d = nanogpt / "data" / "shakespeare_char"
    if (d / "train.bin").exists() and (d / "val.bin").exists() and (d / "meta.pkl").exists():
        return
    if not (d / "input.txt").exists():
        shutil.copyfile(input_txt, d / "input.txt")
    subprocess.run([sys.executable, "prepare.py"], cwd=d, env=env_threads(threads), check=True)


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages (recorded with every run)."""
    return [round(x, 2) for x in os.getloadavg()]


def run_nanogpt(
    nanogpt: Path, out: Path, iters: int, precision: str, threads: int, save: bool, compile_: bool = False
) -> dict:
    """One nanoGPT run in ``precision`` (fp32 | bf16), ``--compile=compile_``; returns its per-iteration times,
    evaluations and wall time."""
    cmd = [sys.executable, "train.py", *NANOGPT_ARGS, f"--compile={compile_}", str(THREADS_OVERLAY)]
    if precision == "bf16":
        cmd += [str(BF16_OVERLAY), "--dtype=bfloat16"]
    elif precision != "fp32":
        raise SystemExit(f"precision must be fp32 or bf16, got {precision}")
    cmd += [f"--max_iters={iters}", f"--out_dir={out}"]
    if save:
        cmd.append("--always_save_checkpoint=True")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, check=False, cwd=nanogpt, env=env_threads(threads), capture_output=True, text=True)
    wall = time.monotonic() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "stdout.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"nanoGPT failed ({proc.returncode}): {proc.stderr[-2000:]}")
    lines = proc.stdout.splitlines()
    if precision == "bf16" and BF16_MARKER not in lines:
        raise RuntimeError(
            f"nanoGPT bf16 run without the autocast marker: the overlay did not take; see {out}/stdout.log"
        )
    iters_ms = {int(m[1]): float(m[3]) for m in map(ITER_RE.match, lines) if m}
    evals = {int(m[1]): float(m[3]) for m in map(STEP_RE.match, lines) if m}
    clean = [t for i, t in iters_ms.items() if i >= 10 and i % 250 != 0]
    return {
        "precision": precision,
        "compile": compile_,
        "loadavg_after": loadavg(),
        "cmd": " ".join(cmd[1:]),
        "process_wall_s": wall,
        "loop_s_to_iter": sum(t for i, t in iters_ms.items() if i < iters) / 1000,  # iters 0..iters-1 incl. evals
        "train_ms_per_iter": statistics.fmean(clean),  # mean over iterations >= 10 without an evaluation
        "train_ms_median_iter": statistics.median(clean),
        "iters_timed": len(clean),
        "val_curve_logged": evals,  # nanoGPT's own 20-random-batch estimate, for the record only
    }


def run_ours(
    out: Path, input_txt: Path, steps: int, decay: int, precision: str, threads: int, compile_: bool = False
) -> dict:
    """One run of bench_shakespeare_char.py (``--compile`` when ``compile_``); returns its bench.json plus the
    process wall time."""
    cmd = [
        sys.executable, str(HERE / "bench_shakespeare_char.py"), "--input", str(input_txt), "--out", str(out),
        "--max-steps", str(steps), "--lr-decay-steps", str(decay), "--threads", str(threads), "--no-progress",
        "--precision", precision, *(["--compile"] if compile_ else []),
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, check=False, env=env_threads(threads), capture_output=True, text=True)
    wall = time.monotonic() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "stdout.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"our trainer failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads((out / "bench.json").read_text())
    if report["precision"] != precision:
        raise RuntimeError(f"our trainer ran in {report['precision']}, asked for {precision}")
    if report.get("compile", False) != compile_:
        raise RuntimeError(f"our trainer ran with compile={report.get('compile')}, asked for {compile_}")
    cmd_s = " ".join(Path(c).name if c == sys.executable else c for c in cmd)
    return {"loadavg_after": loadavg(), "cmd": cmd_s, "process_wall_s": wall, **report}


def nanogpt_full_val(ckpt: Path, input_txt: Path) -> tuple[float, int]:
    """Whole-val-split loss of a nanoGPT checkpoint, with the same code that scores ours."""
    sys.path.insert(0, str(HERE))
    from full_val import full_val_loss, load_nanogpt

    text = input_txt.read_text(encoding="utf-8")
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    return full_val_loss(load_nanogpt(ckpt), ids[int(0.9 * len(ids)) :])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nanogpt-dir", required=True, type=Path, help="a karpathy/nanoGPT checkout (outside the repo)")
    p.add_argument("--out", required=True, type=Path, help="new or empty folder for all runs")
    p.add_argument("--raw", help="raw JSON output (default bench/train_speed/raw/compare_nanogpt-<UTC>.json)")
    p.add_argument("--input", default=DEFAULT_INPUT, type=Path)
    p.add_argument("--speed-iters", type=int, default=300)
    p.add_argument("--speed-rounds", type=int, default=3, help="rounds per precision (median reported)")
    p.add_argument("--quality-iters", type=int, default=2000, help="0 skips the quality runs")
    p.add_argument("--precisions", default="fp32,bf16", help="pairs to run: fp32 (headline) and/or bf16")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run, both sides")
    p.add_argument("--compile", default="off,on", help="torch.compile settings swept on both sides: off and/or on")
    args = p.parse_args(argv)
    precisions = [x for x in args.precisions.split(",") if x]
    if set(precisions) - {"fp32", "bf16"} or not precisions:
        raise SystemExit(f"--precisions takes fp32 and/or bf16, got {args.precisions!r}")
    compile_names = [x for x in args.compile.split(",") if x]
    if set(compile_names) - {"off", "on"} or not compile_names or len(set(compile_names)) != len(compile_names):
        raise SystemExit(f"--compile takes off and/or on, got {args.compile!r}")
    compiles = [c == "on" for c in compile_names]
    if args.quality_iters % 250:
        raise SystemExit("--quality-iters must be a multiple of 250 (nanoGPT saves its checkpoint at an evaluation)")
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty")
    if not (args.nanogpt_dir / "train.py").exists():
        raise SystemExit(f"{args.nanogpt_dir} is not a nanoGPT checkout (no train.py); see bench/README.md")
    pin_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    nanogpt, out = args.nanogpt_dir.resolve(), args.out.resolve()
    prepare_nanogpt(nanogpt, args.input, args.threads)
    commit = (
        subprocess.run(
            ["git", "-C", str(nanogpt), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or None
    )
    res: dict = {
        "bench": "train_speed/compare_nanogpt",
        "nanogpt_commit": commit,
        "threads": args.threads,
        "speed_iters": args.speed_iters,
        "speed_rounds": args.speed_rounds,
        "quality_iters": args.quality_iters,
        "compile": compile_names,
        "speed": {},
        "quality": {},
        "summary": {},
    }
    for prec in precisions:
        res["speed"][prec] = {"nanogpt": [], "ours": []}

    def save() -> None:
        (out / "compare.json").write_text(json.dumps(res, indent=2, default=str) + "\n")

    n = args.speed_iters
    for r in range(args.speed_rounds):
        for prec in precisions:
            for comp in compiles:
                tag = f"{prec}{'_compile' if comp else ''}"
                ng = run_nanogpt(nanogpt, out / f"speed{r}_nanogpt_{tag}", n, prec, args.threads, False, comp)
                res["speed"][prec]["nanogpt"].append(ng)
                ours = run_ours(out / f"speed{r}_ours_{tag}", args.input, n, 2000, prec, args.threads, comp)
                res["speed"][prec]["ours"].append(ours)
                print(
                    f"round {r} {prec} compile={comp}: nanoGPT {ng['train_ms_per_iter']:.2f} ms/iter, "
                    f"ours {ours['train_ms_per_step']:.2f} ms/step",
                    flush=True,
                )
                save()
    best_compile = {}  # (precision, side) -> fastest compile setting, used by the quality runs
    for prec in precisions if args.speed_rounds else []:
        summ: dict = {"by_compile": {}}
        for side, key in (("nanogpt", "train_ms_per_iter"), ("ours", "train_ms_per_step")):
            per = {c: [x[key] for x in res["speed"][prec][side] if x["compile"] == c] for c in compiles}
            best = min(per, key=lambda c: median(per[c]))
            best_compile[prec, side] = best
            summ[f"{side}_best_compile"] = best
            summ[f"{side}_ms_runs"], summ[f"{side}_ms_median"] = per[best], median(per[best])
            for c in compiles:
                summ["by_compile"].setdefault(f"compile_{c}", {})[f"{side}_ms_median"] = median(per[c])
        for c in compiles:
            row = summ["by_compile"][f"compile_{c}"]
            row["speedup"] = row["nanogpt_ms_median"] / row["ours_ms_median"]  # same setting on both sides
        # > 1 = ours faster; each side at its fastest compile setting; fp32 is the headline
        summ["speedup"] = summ["nanogpt_ms_median"] / summ["ours_ms_median"]
        res["summary"][f"speed_{prec}"] = summ
    save()

    q = args.quality_iters
    for prec in precisions if q else []:
        ng_comp, ours_comp = best_compile.get((prec, "nanogpt"), False), best_compile.get((prec, "ours"), False)
        ng = run_nanogpt(nanogpt, out / f"quality_nanogpt_{prec}", q, prec, args.threads, True, ng_comp)
        ng["full_val_loss"], ng["full_val_tokens"] = nanogpt_full_val(
            out / f"quality_nanogpt_{prec}" / "ckpt.pt", args.input
        )
        ng["full_val_bpb"] = ng["full_val_loss"] / math.log(2)
        budget = ng["loop_s_to_iter"]
        res["quality"][f"nanogpt_{prec}"] = ng
        print(
            f"nanoGPT {prec} {q} iters: {budget:.1f} s training loop, whole-val loss {ng['full_val_loss']:.4f}",
            flush=True,
        )
        save()
        same = run_ours(out / f"quality_ours_{prec}_same_steps", args.input, q, q, prec, args.threads, ours_comp)
        res["quality"][f"ours_{prec}_same_steps"] = same
        save()
        n_steps = max(101, math.floor(q * budget / same["wall_s"]))
        wall_run = run_ours(
            out / f"quality_ours_{prec}_same_wall", args.input, n_steps, n_steps, prec, args.threads, ours_comp
        )
        res["quality"][f"ours_{prec}_same_wall"] = wall_run
        print(
            f"ours {prec}: {q} steps -> {same['full_val_loss']:.4f}; {n_steps} steps in {wall_run['wall_s']:.1f} s "
            f"-> {wall_run['full_val_loss']:.4f}",
            flush=True,
        )
        res["summary"][f"quality_{prec}"] = {
            "metric": "mean loss over the whole val split, nats/char (full_val.full_val_loss)",
            "nanogpt_steps": q,
            "nanogpt_loop_s": budget,
            "nanogpt_full_val_loss": ng["full_val_loss"],
            "ours_same_steps_full_val_loss": same["full_val_loss"],
            "ours_same_steps_wall_s": same["wall_s"],
            "ours_same_wall_steps": n_steps,
            "ours_same_wall_wall_s": wall_run["wall_s"],
            "ours_same_wall_full_val_loss": wall_run["full_val_loss"],
            "delta_same_steps": same["full_val_loss"] - ng["full_val_loss"],  # < 0 = ours lower
            "delta_same_wall": wall_run["full_val_loss"] - ng["full_val_loss"],
        }
        save()
    print(json.dumps(res["summary"], indent=2))
    write_raw(args.raw or default_raw_path("train_speed", "compare_nanogpt"), res)
    return res


if __name__ == "__main__":
    main()
