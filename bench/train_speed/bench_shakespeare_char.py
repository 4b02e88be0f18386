"""Train nanoGPT's CPU "baby GPT" on tinyshakespeare (char level) with ``model.train`` and report speed and loss.

    OMP_NUM_THREADS=1 python bench/train_speed/bench_shakespeare_char.py --out /tmp/bench_run \\
        [--input PATH/tinyshakespeare/input.txt] [--max-steps 2000] [--threads 1]

Same recipe as nanoGPT's README CPU command (``config/train_shakespeare_char.py`` plus ``--block_size=64
--batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --dropout=0.0 --lr_decay_iters=2000``): lr 1e-3 -> 1e-4
cosine, 100 warmup steps, beta2 0.99, weight decay 0.1, clip 1.0, eval every 250 steps on 20 batches, and
no biases (nanoGPT's ``train.py`` default ``bias=False``). Differences: our vocabulary has 2 special ids
(67 rows, the data uses 65); nanoGPT samples windows at random offsets and evaluates on random batches,
we read non-overlapping windows in a seeded order and evaluate on the first 20 val batches.

Writes ``OUT/bench.json``: ``train_ms_per_step`` is the mean over log intervals that hold no evaluation
(and not the first one), the number to compare with nanoGPT's per-iteration times; ``full_val_loss`` is
the final model's loss on every non-overlapping window of the validation split (see ``full_val.py``).

``--precision`` is ``TrainConfig.precision`` ("auto" = bf16 autocast on CPUs with native bf16, else fp32);
the precision actually used is recorded in ``bench.json``. ``--compile`` sets ``TrainConfig.compile``
(``torch.compile`` of the training model; it compiles in step 1, inside the first log interval, which
``train_ms_per_step`` leaves out).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from full_val import full_val_loss, load_ours

log = logging.getLogger("bench.train_speed")

DEFAULT_INPUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare" / "input.txt"


def windows(ids: np.ndarray, block_size: int) -> np.ndarray:
    """Non-overlapping (N, block_size + 1) windows over a token array (a strided view, no copy)."""
    n = (len(ids) - 1) // block_size
    s = ids.strides[0]
    return np.lib.stride_tricks.as_strided(ids, shape=(n, block_size + 1), strides=(block_size * s, s))


def clean_ms_per_step(records: list[dict], eval_every: int, tokens_per_step: int) -> tuple[float | None, int]:
    """Mean ms per step over train log intervals that contain no evaluation, skipping the first interval.

    An evaluation run after step s (s % eval_every == 0) is timed inside the interval that ends at the
    next train record, so that interval is dropped. Returns ``(ms_per_step, steps_counted)``.
    """
    train_recs = [r for r in records if r["kind"] == "train"]
    total_s, steps, prev = 0.0, 0, 0
    for i, r in enumerate(train_recs):
        n = r["step"] - prev
        has_eval = any(s % eval_every == 0 for s in range(prev, r["step"]))  # evals after steps prev..step-1
        if i > 0 and not has_eval and n > 0:
            total_s += n * tokens_per_step / r["tokens_per_s"]
            steps += n
        prev = r["step"]
    return (1000 * total_s / steps if steps else None), steps


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns what it writes to ``OUT/bench.json``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default=str(DEFAULT_INPUT), help="tinyshakespeare input.txt")
    p.add_argument("--out", required=True, help="run folder (must not hold checkpoints)")
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--lr-decay-steps", type=int, default=2000, help="nanoGPT's --lr_decay_iters")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=1337, help="init and data order (nanoGPT's fixed seed is 1337)")
    p.add_argument("--bias", action="store_true", help="biases in Linear/LayerNorm (nanoGPT's default is none)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="TrainConfig.precision")
    p.add_argument("--compile", action="store_true", help="TrainConfig.compile: torch.compile the training model")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)

    text = Path(args.input).read_text(encoding="utf-8")
    tok = char_level_tokenizer(text)
    ids = np.array(tok.encode(text), dtype=np.uint16)
    cut = int(0.9 * len(ids))  # nanoGPT's prepare.py split: first 90% train, last 10% val
    T = 64
    train_src = ArrayWindowSource(windows(ids[:cut], T), name="shakespeare_char_train", bytes_per_token=1.0)
    val_src = ArrayWindowSource(windows(ids[cut:], T), name="shakespeare_char_val", bytes_per_token=1.0)
    model_cfg = GPTConfig(
        vocab_size=tok.vocab_size, block_size=T, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=args.bias
    )
    train_cfg = TrainConfig(
        batch_size=12, max_steps=args.max_steps, lr=1e-3, min_lr=1e-4, warmup_steps=100,
        lr_decay_steps=args.lr_decay_steps, eval_every=args.eval_every, eval_steps=20, ckpt_every=args.max_steps,
        log_every=args.log_every, threads=args.threads, device="cpu", seed=args.seed, precision=args.precision,
        compile=args.compile,
    )  # fmt: skip
    t0 = time.monotonic()
    result = train(model_cfg, train_cfg, train_src, val_src, args.out, resume=False, progress=not args.no_progress)
    wall = time.monotonic() - t0
    records = [json.loads(line) for line in (Path(args.out) / "metrics.jsonl").read_text().splitlines()]
    tokens_per_step = 12 * T
    ms, counted = clean_ms_per_step(records, args.eval_every, tokens_per_step)
    model = load_ours(result["checkpoint"], Path(args.out) / "model_config.json")
    full_loss, full_tokens = full_val_loss(model, ids[cut:], T)
    report = {
        "steps": result["step"],
        "lr_decay_steps": args.lr_decay_steps,
        "threads": args.threads,
        "bias": args.bias,
        "seed": args.seed,
        "precision_config": args.precision,
        "precision": result["precision"],  # what the trainer resolved "auto" to
        "compile": args.compile,
        "wall_s": wall,  # train() call: model build, evaluations, checkpoint and plot included
        "train_ms_per_step": ms,
        "train_steps_timed": counted,
        "train_tokens_per_s": 1000 * tokens_per_step / ms if ms else None,
        "val_loss": result["val_loss"],  # first 20 val batches, as logged by the trainer
        "val_bpb": result["val_bpb"],
        "full_val_loss": full_loss,  # every non-overlapping window of the val split, nats/char
        "full_val_bpb": full_loss / np.log(2),  # ASCII text: one byte per char
        "full_val_tokens": full_tokens,
        "val_curve": {r["step"]: r["loss"] for r in records if r["kind"] == "val"},
        "n_params": result["n_params"],
        "checkpoint": result["checkpoint"],
        "torch": torch.__version__,
    }
    (Path(args.out) / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("bench: %s", json.dumps(report))
    return report


if __name__ == "__main__":
    main()
