"""CLI of training (trainer: model/train.py): a GPT on a pinned Delta token table version, a verified artifact.

    spark-submit --properties-file spark-defaults.conf jobs/train.py \\
        --data lake/tokens [--data-version N] --out artifacts/gpt-v1 [--config train.json] \\
        [--tokenizer lake_tokenizer/tokenizer.json] [--distributed N [--distributed-mode auto|driver|executors]] \\
        [--work-dir DIR]

The driver resolves the table's Parquet files at one Delta version (``--data-version``, default the latest;
recorded either way) and hands that file list to the pure-PyTorch trainer (``model/train.py``), which streams
them with pyarrow. ``--distributed N`` runs N DDP processes through ``TorchDistributor`` (gloo on CPU, NCCL on
GPU): on executors when the master is a cluster, on the driver on a ``local`` master (``--distributed-mode``,
``jobs/common/distributed.py``); ranks on executors read the data and write ``--work-dir`` at the driver's
paths, so on a cluster both must be on storage every node mounts.

``--config`` is a JSON object ``{"model": {GPTConfig fields}, "train": {TrainConfig fields}}``;
``vocab_size`` comes from the tokenizer and ``block_size`` from the dataset unless given. Checkpoints
live in ``--work-dir`` (default ``OUT.work``); rerunning the same command resumes from the newest.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from jobs.common import cli
from jobs.common.distributed import MODES, driver_identity, resolve_mode, run_ranks
from jobs.transforms.train_steps import (
    build_configs,
    dataset_metadata,
    finished_ranks,
    pinned_version,
    resolve_files,
    train_process,
    write_artifact,
)

log = logging.getLogger("jobs.train")


def run(spark, args, record) -> None:
    from model.tokenizer import load_tokenizer

    version = pinned_version(spark, args.data, args.data_version)
    if os.path.exists(args.out):
        raise cli.UsageError(f"--out {args.out} exists; artifacts are immutable, choose a new folder")
    meta = dataset_metadata(spark, args.data, version)
    tok_path = args.tokenizer or meta.get("tokenizer_path")
    if not tok_path or not os.path.exists(tok_path):
        raise cli.UsageError(f"tokenizer not found ({tok_path!r}): pass --tokenizer")
    tok = load_tokenizer(tok_path)
    if tok.sha256 != meta["tokenizer_sha256"]:
        raise cli.UsageError(f"{tok_path} is not the tokenizer this table was built with (sha256 differs)")
    files = resolve_files(spark, args.data, version)
    overrides = {"max_steps": args.max_steps, "threads": args.threads}
    model_cfg, train_cfg = build_configs(args.config, meta, tok.vocab_size, overrides)
    work_dir = args.work_dir or args.out.rstrip("/") + ".work"
    os.makedirs(work_dir, exist_ok=True)
    for marker in Path(work_dir).glob("rank-*.done"):
        marker.unlink()
    record.input_versions[args.data] = version
    bpt = meta.get("bytes_per_token")
    fn_args = (model_cfg.to_dict(), train_cfg.to_dict(), files, bpt, work_dir, tok_path, driver_identity())
    world = args.distributed if args.distributed and args.distributed > 1 else 1
    from jobs.common.spark import session_master

    mode = resolve_mode(args.distributed_mode, session_master(spark)) if world > 1 else "single"
    if world > 1:
        run_ranks(spark, world, mode, train_process, *fn_args)
    else:
        train_process(*fn_args)
    result, ranks = finished_ranks(work_dir, world)
    lineage = {
        "data": args.data,
        "data_version": version,
        "data_files": len(files),
        "dataset": meta,
        "train_config": train_cfg.to_dict(),
        "run_id": record.run_id,
        "work_dir": work_dir,
        "distributed": world,
        "distributed_mode": mode,
        "ranks": ranks,
        "resumed_from": result.get("resumed_from"),
        "start_step": result.get("start_step"),
    }
    model_hash, metrics = write_artifact(args.out, model_cfg, tok, result, lineage)
    for name in ("metrics.jsonl", "loss_curve.png"):
        if Path(work_dir, name).exists():
            record.extra[name] = str(Path(work_dir, name))
    record.counts.update(steps=int(result["step"]), tokens_seen=int(result.get("tokens_seen") or 0))
    record.extra.update(
        artifact=args.out,
        model_hash=model_hash,
        metrics=metrics,
        distributed_mode=mode,
        ranks=ranks,
        resumed_from=result.get("resumed_from"),
        start_step=result.get("start_step"),
    )
    log.info("artifact %s (hash %s): %s", args.out, model_hash[:12], metrics)
    print(json.dumps({"run_id": record.run_id, "artifact": args.out, "model_hash": model_hash, **metrics}, default=str))


def build_parser() -> argparse.ArgumentParser:
    """Flags: the token table and version, the artifact folder, the nested --config and a few overrides."""
    p = cli.job_parser("Train a GPT on the Delta token table; write an artifact.", config=False)
    p.add_argument("--data", help="token table (default: LAKE/tokens)")
    p.add_argument("--data-version", type=int, help="Delta version to train on (default: latest)")
    p.add_argument("--out", required=True, help="artifact folder to create")
    p.add_argument("--config", help='JSON: {"model": {GPTConfig fields}, "train": {TrainConfig fields}}')
    p.add_argument("--tokenizer", help="tokenizer.json (default: the one recorded by build_dataset)")
    p.add_argument("--distributed", type=int, default=0, help="DDP processes through TorchDistributor; 0 = none")
    p.add_argument(
        "--distributed-mode",
        choices=MODES,
        default="auto",
        help="where the DDP processes run: executors (auto on a cluster master), driver (auto on local[...])",
    )
    p.add_argument("--work-dir", help="checkpoints and metrics (default: OUT.work); reruns resume here")
    p.add_argument("--max-steps", type=int, help="override train.max_steps (default: the config's)")
    p.add_argument(
        "--threads", type=int, help="override train.threads, torch threads per process (default: the config's)"
    )
    return p


def build_config(args: argparse.Namespace) -> argparse.Namespace:
    """The flags, checked, with the token table resolved (the nested --config is read by `build_configs`)."""
    args.data = cli.resolve_table(args.data, args.lake, "tokens", "--data")
    for flag, value, low in (("--distributed", args.distributed, 0), ("--data-version", args.data_version, 0)):
        if value is not None and value < low:
            raise cli.UsageError(f"{flag} must be >= {low}, got {value}")
    return args


def main(argv: list[str] | None = None) -> int:
    return cli.run_main("train", argv, build_parser(), build_config, run)


if __name__ == "__main__":
    sys.exit(main())
