"""Train nanoGPT's CPU "baby GPT" on tinyshakespeare (char level) with ``model.train`` and report speed and loss.

    python bench/train_speed/bench_shakespeare_char.py --input PATH/tinyshakespeare/input.txt \\
        --out /tmp/bench_run [--max-steps 2000] [--threads 1]

Same recipe as nanoGPT's README CPU command (block 64, batch 12, 4 layers, 4 heads, 128 dims, dropout 0,
lr 1e-3 -> 1e-4 over 2000 steps, 100 warmup, eval 20 batches): nanoGPT reaches val loss ~1.88 after 2000
iterations at ~67 ms/iteration on one thread of this kind of machine. Differences: nanoGPT samples
windows at random offsets and evaluates on random val batches; we read non-overlapping windows in a
seeded order and evaluate on the first 20 val batches. Writes ``OUT/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from model.config import GPTConfig, TrainConfig
from model.data import ArrayWindowSource
from model.tokenizer import char_level_tokenizer
from model.train import train

log = logging.getLogger("bench.train_speed")


def windows(ids: np.ndarray, block_size: int) -> np.ndarray:
    """Non-overlapping (N, block_size + 1) windows over a token array (a strided view, no copy)."""
    n = (len(ids) - 1) // block_size
    s = ids.strides[0]
    return np.lib.stride_tricks.as_strided(ids, shape=(n, block_size + 1), strides=(block_size * s, s))


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns what it writes to ``OUT/bench.json``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="tinyshakespeare input.txt")
    p.add_argument("--out", required=True, help="run folder (must not hold checkpoints)")
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=250)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    torch.set_num_threads(args.threads)

    text = Path(args.input).read_text(encoding="utf-8")
    tok = char_level_tokenizer(text)
    ids = np.array(tok.encode(text), dtype=np.uint16)
    cut = int(0.9 * len(ids))  # nanoGPT's prepare.py split: first 90% train, last 10% val
    T = 64
    train_src = ArrayWindowSource(windows(ids[:cut], T), name="shakespeare_char_train", bytes_per_token=1.0)
    val_src = ArrayWindowSource(windows(ids[cut:], T), name="shakespeare_char_val", bytes_per_token=1.0)
    model_cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    train_cfg = TrainConfig(
        batch_size=12, max_steps=args.max_steps, lr=1e-3, min_lr=1e-4, warmup_steps=100,
        lr_decay_steps=2000, eval_every=args.eval_every, eval_steps=20, ckpt_every=args.max_steps,
        log_every=50, threads=args.threads, device="cpu",
    )  # fmt: skip
    t0 = time.monotonic()
    result = train(model_cfg, train_cfg, train_src, val_src, args.out, resume=False, progress=True)
    wall = time.monotonic() - t0
    records = [json.loads(line) for line in (Path(args.out) / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in records if r["kind"] == "train" and r["step"] > 50]
    report = {
        "steps": result["step"],
        "threads": args.threads,
        "wall_s": wall,
        "ms_per_step": 1000 * wall / max(result["step"], 1),
        "median_tokens_per_s": float(np.median(speeds)) if speeds else None,
        "val_loss": result["val_loss"],
        "val_bpb": result["val_bpb"],
        "val_curve": {r["step"]: r["loss"] for r in records if r["kind"] == "val"},
        "n_params": result["n_params"],
        "torch": torch.__version__,
    }
    (Path(args.out) / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("bench: %s", json.dumps(report))
    return report


if __name__ == "__main__":
    main()
