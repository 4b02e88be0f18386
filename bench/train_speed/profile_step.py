"""Where one training step of the CPU baby GPT goes: forward, backward, clipping, AdamW; and two CPU settings.

    OMP_NUM_THREADS=1 python bench/train_speed/profile_step.py [--steps 40] [--table] [--compile]

Builds the recipe's model (4 layers, 4 heads, 128 dims, block 64, batch 12, no biases, vocab 67) and
times the phases of the same step ``model.train`` takes (random ids; speed does not depend on them),
for: float32 with the for-loop AdamW the trainer used on CPU before, float32 with the fused AdamW it
uses now (``precision="fp32"``), and bf16 autocast + fused AdamW (``precision="auto"`` on native-bf16
CPUs). Variants run interleaved, ``--rounds`` times, one thread. ``--compile`` adds float32 with
``torch.compile`` of the model and fused AdamW (``TrainConfig.compile=True``; each build compiles anew,
a minute or more on a cold inductor cache, and its warm-up steps absorb that).
``--table`` adds a ``torch.profiler`` table of the float32 step (top ops by self time).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from model.config import GPTConfig
from model.gpt import GPT

VARIANTS = {  # name -> (bf16 autocast, fused AdamW, torch.compile)
    "fp32, for-loop AdamW (before)": (False, False, False),
    "fp32, fused AdamW (precision=fp32)": (False, True, False),
    "bf16 autocast, fused AdamW (auto here)": (True, True, False),
}
COMPILED = {"fp32, fused AdamW, torch.compile": (False, True, True)}


def build(fused: bool) -> tuple[GPT, torch.optim.Optimizer]:
    """The recipe's model and AdamW: fused as the trainer builds it on CPU now, or the earlier for-loop kernel."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=67, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu" if fused else "other")
    return model, opt


def time_steps(bf16: bool, fused: bool, compiled: bool, steps: int, warmup: int = 8) -> dict[str, float]:
    """Median ms per phase over ``steps`` steps after ``warmup`` (``compiled``: through ``torch.compile``)."""
    raw, opt = build(fused)
    model = torch.compile(raw) if compiled else raw
    x, y = torch.randint(0, 65, (12, 64)), torch.randint(0, 65, (12, 64))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "clip": [], "adamw": [], "step": []}
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with ctx():
            _, loss = model(x, y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(raw.parameters(), 1.0)
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if i >= warmup:
            for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                phases[k].append(1000 * v)
    return {k: statistics.median(v) for k, v in phases.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--table", action="store_true")
    p.add_argument("--compile", action="store_true", help="add the torch.compile variant")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    variants = {**VARIANTS, **(COMPILED if args.compile else {})}
    results: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, (bf16, fused, compiled) in variants.items():
            results[name].append(time_steps(bf16, fused, compiled, args.steps))
    base = statistics.fmean(r["step"] for r in results[next(iter(VARIANTS))])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print("median ms per phase (mean over rounds)")
    for name, rs in results.items():
        m = {k: statistics.fmean(r[k] for r in rs) for k in rs[0]}
        cells = "  ".join(f"{k} {v:6.2f}" for k, v in m.items())
        print(f"{name:32s} {cells}  speed-up {base / m['step']:.2f}x")
    if args.table:
        from torch.profiler import ProfilerActivity, profile

        model, opt = build(False)
        x, y = torch.randint(0, 65, (12, 64)), torch.randint(0, 65, (12, 64))

        def step() -> None:
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(8):
            step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
