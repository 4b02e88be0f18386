"""The trainer (its Spark CLI: jobs/train.py): configs and data sources in, checkpoints, metrics, loss curve out.

Runs alone (CPU or one GPU) or inside ``torch.distributed`` (DDP; gloo on CPU, nccl on GPUs): the
caller initialises the process group, every rank calls ``train`` with the same arguments, rank 0
writes. Resume is exact: model, optimizer, every RNG and each rank's data position are checkpointed,
so stopping at step N and resuming gives the same losses as never stopping.

Outputs under ``out_dir``: ``checkpoints/ckpt_XXXXXXXX.pt``, ``metrics.jsonl``, ``loss_curve.png``,
``train_config.json``, ``model_config.json`` and ``samples/rank-<r>.jsonl`` (one line per step:
``{"step": s, "samples": [[epoch, sample id], ...]}``, the windows rank r trained on; written at each
checkpoint, so it always matches the newest checkpoint, and cut back to it on resume).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from model.checkpoint import (
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
)
from model.config import GPTConfig, TrainConfig
from model.data import ArrayWindowSource, ParquetWindowSource, WindowLoader
from model.distributed import all_gather_objects, all_reduce_sum, dist_info, resolve_device
from model.gpt import GPT
from model.precision import resolve_precision
from model.run_log import append_metrics, plot_loss_curve, read_metrics, truncate_metrics
from model.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

Source = ParquetWindowSource | ArrayWindowSource


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, cosine decay, then flat min_lr.

    Args:
        step: index of the step about to be taken.
        cfg: supplies lr, min_lr, warmup_steps and decay_steps.

    Returns:
        The learning rate.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if step >= cfg.decay_steps:
        return cfg.min_lr
    frac = (step - cfg.warmup_steps) / max(1, cfg.decay_steps - cfg.warmup_steps)  # 0 -> 1
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * frac)) * (cfg.lr - cfg.min_lr)


@torch.no_grad()
def evaluate(
    model: GPT,
    loader: WindowLoader,
    max_batches: int,
    device: torch.device,
    autocast: Any,
    tokenizer: TextTokenizer | None = None,
) -> tuple[float, float, float]:
    """Summed validation loss over up to ``max_batches`` batches of ``loader`` (this rank's shard).

    Args:
        model: the unwrapped model (no DDP: evaluation needs no collectives).
        loader: a non-looping loader in stored order, so every evaluation sees the same windows.
        max_batches: most batches to read.
        device: where to run.
        autocast: context-manager factory, the training one (bf16 autocast, or a no-op for fp32).
        tokenizer: when given, also count the UTF-8 bytes of the target tokens (specials count 0).

    Returns:
        ``(sum of per-token losses in nats, number of target tokens, number of target bytes or 0)``.
    """
    was_training = model.training
    model.eval()
    loss_sum = n_tok = n_bytes = 0.0
    for i, (x, y) in enumerate(loader):
        if i >= max_batches:
            break
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        loss_sum += float(loss) * y.numel()
        n_tok += y.numel()
        if tokenizer is not None:
            n_bytes += sum(len(t.encode("utf-8")) for t in tokenizer.decode_batch(y.tolist(), skip_special=True))
    model.train(was_training)
    return loss_sum, n_tok, n_bytes


def _check_ids(x: torch.Tensor, y: torch.Tensor, vocab_size: int) -> None:
    hi = max(int(x.max()), int(y.max()))
    if hi >= vocab_size or min(int(x.min()), int(y.min())) < 0:
        raise ValueError(
            f"token id {hi} outside [0, vocab_size={vocab_size}); the data was tokenized with "
            "another tokenizer or GPTConfig.vocab_size is too small"
        )


def train(
    model_cfg: GPTConfig,
    train_cfg: TrainConfig,
    train_source: Source,
    val_source: Source | None,
    out_dir: str | os.PathLike,
    *,
    resume: bool = True,
    progress: bool = True,
    tokenizer: TextTokenizer | None = None,
) -> dict[str, Any]:
    """Train a GPT and return its final metrics.

    Args:
        model_cfg: model shape; ``vocab_size`` must exceed every token id in the data.
        train_cfg: optimisation, evaluation and checkpoint settings.
        train_source: training windows (``ParquetWindowSource(paths, split="train")``).
        val_source: validation windows; None skips evaluation.
        out_dir: run folder (shared by all ranks); created if missing.
        resume: continue from the newest checkpoint in ``out_dir/checkpoints`` if any. False with
            existing checkpoints raises, so a finished run is never overwritten by accident.
        progress: show a tqdm bar (rank 0 only, and only when stderr is a terminal).
        tokenizer: used to count bytes of validation targets for bits per byte when
            ``val_source.bytes_per_token`` is None (approximate for byte-level BPE: a window cut inside a
            UTF-8 character decodes to U+FFFD). Prefer ``bytes_per_token`` from the dataset metadata.

    Returns:
        Dict with ``step``, ``train_loss`` (nats/token, mean over the last log interval), ``val_loss``
        (nats/token), ``val_bpb`` (bits per UTF-8 byte, None if bytes are unknown), ``tokens_seen``,
        ``n_params`` (all, tied matrix once), ``elapsed_s`` (this call), ``precision`` (``"fp32"`` or ``"bf16"``,
        ``TrainConfig.precision`` resolved for the device), ``checkpoint`` (final checkpoint path),
        ``resumed_from`` (the checkpoint this call started from, None for a fresh run), ``start_step``
        (its step, 0 for a fresh run) and ``samples_log`` (this rank's ``samples/rank-<r>.jsonl``).
        Load the trained weights with ``load_checkpoint(result["checkpoint"])["model"]``.

    Raises:
        ValueError: on inconsistent configs, data that does not fit the model, or a checkpoint from a
            different model, world size or dataset.
    """
    torch.set_num_threads(train_cfg.threads)
    rank, world = dist_info()
    device = resolve_device(train_cfg.device, rank)
    precision = resolve_precision(train_cfg.precision, device)
    T = train_cfg.block_size or model_cfg.block_size
    if T > model_cfg.block_size:
        raise ValueError(f"TrainConfig.block_size={T} exceeds GPTConfig.block_size={model_cfg.block_size}")
    out = Path(out_dir)
    ckpt_dir, metrics_path = out / "checkpoints", out / "metrics.jsonl"
    master = rank == 0
    t_start = time.monotonic()

    torch.manual_seed(train_cfg.seed)  # identical init on every rank
    raw = GPT(model_cfg).to(device)
    optimizer = raw.configure_optimizers(
        train_cfg.weight_decay, train_cfg.lr, (train_cfg.beta1, train_cfg.beta2), device.type
    )
    loader = WindowLoader(
        train_source,
        train_cfg.batch_size,
        T,
        seed=train_cfg.seed,
        shuffle=True,
        shuffle_buffer=train_cfg.shuffle_buffer,
        rank=rank,
        world_size=world,
    )
    step, metrics = 0, {"train_loss": None, "val_loss": None, "val_bpb": None}
    ckpt = latest_checkpoint(ckpt_dir)
    if ckpt is not None and not resume:
        raise ValueError(f"{ckpt_dir} already holds checkpoints; pass resume=True or use a new out_dir")
    if ckpt is not None:
        state = load_checkpoint(ckpt, map_location=device)
        if state["model_config"] != model_cfg.to_dict():
            raise ValueError(f"{ckpt} was trained with model config {state['model_config']}, not {model_cfg.to_dict()}")
        if state["world_size"] != world:
            raise ValueError(f"{ckpt} was written by {state['world_size']} ranks; resume with the same world size")
        changed = {k for k, v in train_cfg.to_dict().items() if state["train_config"].get(k) != v} - {"max_steps"}
        if changed:
            log.warning(
                "resuming with changed train config keys %s: the run is no longer reproducible", sorted(changed)
            )
        if state.get("precision", precision) != precision:
            log.warning(
                "%s was trained in %s, resuming in %s: the run is no longer reproducible",
                ckpt,
                state.get("precision"),
                precision,
            )
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        loader.load_state_dict(state["data"][rank])
        restore_rng_state(state["rng"][rank])
        step, metrics = int(state["step"]), dict(state["metrics"])
        log.info("rank %d resumed from %s at step %d", rank, ckpt, step)
    else:
        torch.manual_seed(train_cfg.seed + rank)  # different dropout masks per rank
    start_step = step
    samples_path = out / "samples" / f"rank-{rank}.jsonl"
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    truncate_metrics(samples_path, step)  # lines written after the checkpoint this run starts from
    pending_samples: list[dict[str, Any]] = []  # this rank's lines since the last checkpoint

    if master:
        out.mkdir(parents=True, exist_ok=True)
        truncate_metrics(metrics_path, step)
        for name, cfg in (("train_config.json", train_cfg), ("model_config.json", model_cfg)):
            (out / name).write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
        log.info("train config %s", json.dumps(train_cfg.to_dict(), sort_keys=True))
        log.info(
            "model %s: %.2fM parameters, device %s, precision %s, world size %d",
            model_cfg,
            raw.num_params() / 1e6,
            device,
            precision,
            world,
        )

    model: torch.nn.Module = raw
    if train_cfg.compile:
        # Inductor fuses the element-wise ops around the matmuls (GELU, LayerNorm, residual adds) on GPUs
        # and, through generated C++, on CPUs (a C++ compiler must be on PATH there). Evaluation and
        # checkpoints use ``raw``, so only the training graph is compiled; compilation happens in step 1.
        model = torch.compile(model)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def autocast() -> Any:
        # bf16 autocast runs matmuls (and SDPA) in bf16 on fp32 master weights; GPT.forward takes the
        # loss on float32 logits, and gradients, clipping and AdamW stay float32.
        if precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    tokens_per_step = train_cfg.batch_size * T * train_cfg.grad_accum * world
    val_bytes_cache: dict[str, float] = {}

    def run_eval() -> None:
        if val_source is None:
            return
        vl = WindowLoader(val_source, train_cfg.batch_size, T, shuffle=False, rank=rank, world_size=world, loop=False)
        count_bytes = tokenizer if val_source.bytes_per_token is None and "n" not in val_bytes_cache else None
        loss_sum, n_tok, n_bytes = all_reduce_sum(
            list(evaluate(raw, vl, train_cfg.eval_steps, device, autocast, count_bytes)), device, world
        )
        if count_bytes is not None:
            val_bytes_cache["n"] = n_bytes
        metrics["val_loss"] = loss_sum / max(n_tok, 1.0)
        bpt = val_source.bytes_per_token or (val_bytes_cache.get("n", 0.0) / max(n_tok, 1.0))
        metrics["val_bpb"] = metrics["val_loss"] / bpt / math.log(2) if bpt else None
        if master:
            append_metrics(
                metrics_path,
                {
                    "kind": "val",
                    "step": step,
                    "loss": metrics["val_loss"],
                    "bpb": metrics["val_bpb"],
                    "tokens": step * tokens_per_step,
                },
            )
            log.info("step %d: val loss %.4f, val bpb %s", step, metrics["val_loss"], metrics["val_bpb"])

    def run_checkpoint() -> Path:
        path = checkpoint_path(ckpt_dir, step)
        with open(samples_path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(line, sort_keys=True) + "\n" for line in pending_samples)
        pending_samples.clear()
        rng, data = all_gather_objects(capture_rng_state(), world), all_gather_objects(loader.state_dict(), world)
        if master:
            save_checkpoint(
                {
                    "step": step,
                    "model": raw.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": rng,
                    "data": data,
                    "world_size": world,
                    "metrics": metrics,
                    "model_config": model_cfg.to_dict(),
                    "train_config": train_cfg.to_dict(),
                    "precision": precision,
                },
                path,
            )
            prune_checkpoints(ckpt_dir, train_cfg.keep_checkpoints)
            plot_loss_curve(read_metrics(metrics_path), out / "loss_curve.png", title=out.name)
        if world > 1:
            dist.barrier()  # no rank races ahead of a checkpoint that is still being written
        return path

    if step == 0 and ckpt is None:
        run_eval()
    last_ckpt = ckpt
    model.train()
    it = iter(loader)
    # a bar on a terminal only: in a log file or CI its redraws are noise (the eval lines are the progress)
    on_terminal = sys.stderr.isatty()
    bar = tqdm(
        total=train_cfg.max_steps, initial=step, disable=not (progress and master and on_terminal), dynamic_ncols=True
    )
    running, n_running, t_log = torch.zeros((), device=device), 0, time.monotonic()
    while step < train_cfg.max_steps:
        lr = lr_at(step, train_cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_samples: list[list[int]] = []
        for micro in range(train_cfg.grad_accum):
            x, y = next(it)
            step_samples.extend(loader.batch_samples.tolist())
            _check_ids(x, y, model_cfg.vocab_size)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sync = micro == train_cfg.grad_accum - 1 or world == 1
            with contextlib.nullcontext() if sync else model.no_sync(), autocast():
                _, loss = model(x, y)
                loss = loss / train_cfg.grad_accum
            loss.backward()
            running += loss.detach()
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(raw.parameters(), train_cfg.grad_clip) if train_cfg.grad_clip > 0 else None
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        pending_samples.append({"step": step, "samples": step_samples})
        n_running += 1
        bar.update(1)
        if step % train_cfg.log_every == 0 or step == train_cfg.max_steps:
            loss_sum, n = all_reduce_sum([float(running), float(n_running)], device, world)
            metrics["train_loss"] = loss_sum / max(n, 1.0)
            dt = time.monotonic() - t_log
            if master:
                append_metrics(
                    metrics_path,
                    {
                        "kind": "train",
                        "step": step,
                        "loss": metrics["train_loss"],
                        "lr": lr,
                        "grad_norm": float(grad_norm) if grad_norm is not None else None,
                        "tokens": step * tokens_per_step,
                        "tokens_per_s": n_running * tokens_per_step / max(dt, 1e-9),
                        "epoch": loader.epoch,
                        "precision": precision,
                    },
                )
                bar.set_postfix(loss=f"{metrics['train_loss']:.4f}", lr=f"{lr:.2e}")
            running.zero_()
            n_running, t_log = 0, time.monotonic()
        t_pause = time.monotonic()
        if step % train_cfg.eval_every == 0 or step == train_cfg.max_steps:
            run_eval()
        if step % train_cfg.ckpt_every == 0 or step == train_cfg.max_steps:
            last_ckpt = run_checkpoint()
        t_log += time.monotonic() - t_pause  # tokens_per_s counts training only, not evaluations or checkpoints
    bar.close()
    if last_ckpt is None or last_ckpt != checkpoint_path(ckpt_dir, step):
        last_ckpt = run_checkpoint()
    return {
        **metrics,
        "step": step,
        "tokens_seen": step * tokens_per_step,
        "n_params": raw.num_params(non_embedding=False),
        "elapsed_s": time.monotonic() - t_start,
        "precision": precision,
        "checkpoint": str(last_ckpt),
        "resumed_from": str(ckpt) if ckpt is not None else None,
        "start_step": start_step,
        "samples_log": str(samples_path),
    }
