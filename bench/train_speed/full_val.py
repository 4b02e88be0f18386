"""One validation number for both trainers: mean loss on every non-overlapping window of the val split.

nanoGPT's logged val loss is the mean of 20 random batches and ours is the first 20 batches, both
~15k characters of the 111,540 in the split and not the same ones. This module scores a model on all
of them (1,742 windows of 64 + 1 characters, 111,488 targets), with our ``GPT`` class for both: a
nanoGPT ``ckpt.pt`` has the same parameter names, so it loads into ``GPT`` unchanged.

    python bench/train_speed/full_val.py --nanogpt-ckpt OUT/ckpt.pt --ours-ckpt RUN/checkpoints/ckpt_00002000.pt \\
        --ours-config RUN/model_config.json [--input PATH/tinyshakespeare/input.txt]

Token ids agree: both use ``sorted(set(text))`` (our two special ids come after the 65 characters).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.checkpoint import load_checkpoint
from model.config import GPTConfig
from model.gpt import GPT

DEFAULT_INPUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare" / "input.txt"


@torch.no_grad()
def full_val_loss(model: GPT, val_ids: np.ndarray, block_size: int = 64, batch_size: int = 128) -> tuple[float, int]:
    """Mean cross-entropy (nats/token) over all non-overlapping ``block_size + 1`` windows of ``val_ids``.

    Returns ``(loss, number of target tokens)``. Runs in float32 whatever the model was trained with.
    """
    model.eval()
    n = (len(val_ids) - 1) // block_size
    ids = torch.from_numpy(np.asarray(val_ids[: n * block_size + 1], dtype=np.int64))
    idx = torch.arange(block_size + 1).unsqueeze(0) + block_size * torch.arange(n).unsqueeze(1)  # (n, T+1)
    w = ids[idx]
    loss_sum = 0.0
    for i in range(0, n, batch_size):
        x, y = w[i : i + batch_size, :-1], w[i : i + batch_size, 1:]
        logits = model.lm_head(model.hidden_states(x)).float()  # plain float32 path, no autocast patches
        loss_sum += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum"))
    return loss_sum / (n * block_size), n * block_size


def load_ours(ckpt: str | Path, model_config: str | Path) -> GPT:
    """Our trainer's checkpoint and its ``model_config.json`` -> GPT in eval mode."""
    model = GPT(GPTConfig.from_dict(json.loads(Path(model_config).read_text())))
    model.load_state_dict(load_checkpoint(ckpt)["model"])
    return model.eval()


def load_nanogpt(ckpt: str | Path) -> GPT:
    """A nanoGPT ``ckpt.pt`` (its ``model`` and ``model_args`` entries) -> our GPT in eval mode."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    a = state["model_args"]
    cfg = GPTConfig(
        vocab_size=a["vocab_size"], block_size=a["block_size"], n_layer=a["n_layer"], n_head=a["n_head"],
        n_embd=a["n_embd"], dropout=0.0, bias=a["bias"],
    )  # fmt: skip
    sd = {k.removeprefix("_orig_mod."): v for k, v in state["model"].items()}
    model = GPT(cfg)
    model.load_state_dict(sd)  # strict: fails loudly if the layouts ever diverge
    return model.eval()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default=str(DEFAULT_INPUT))
    p.add_argument("--nanogpt-ckpt", action="append", default=[])
    p.add_argument("--ours-ckpt", action="append", default=[])
    p.add_argument("--ours-config", action="append", default=[], help="model_config.json, one per --ours-ckpt")
    p.add_argument("--raw", help="also write the losses as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    text = Path(args.input).read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    val = ids[int(0.9 * len(ids)) :]
    out = {}
    models = [(f"nanogpt:{c}", load_nanogpt(c)) for c in args.nanogpt_ckpt]
    models += [(f"ours:{c}", load_ours(c, m)) for c, m in zip(args.ours_ckpt, args.ours_config, strict=True)]
    for name, model in models:
        loss, n = full_val_loss(model, val)
        out[name] = {"loss": loss, "bpb": loss / math.log(2), "tokens": n}
        print(f"{name}: val loss {loss:.4f} nats/char = {loss / math.log(2):.4f} bits/byte over {n} chars")
    if args.raw:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from benchlib import write_raw

        write_raw(args.raw, {"bench": "train_speed/full_val", "input": args.input, "models": out})
    return out


if __name__ == "__main__":
    main()
