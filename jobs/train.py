"""Train a GPT on a pinned version of the Delta token table and write a verified artifact.

    spark-submit --properties-file spark-defaults.conf jobs/train.py \\
        --data lake/tokens [--data-version N] --out artifacts/gpt-v1 [--config train.json] \\
        [--tokenizer lake_tokenizer/tokenizer.json] [--distributed N [--distributed-mode auto|driver|executors]] \\
        [--work-dir DIR]

The driver resolves the table's Parquet files at one Delta version (``--data-version``, default the
latest; recorded either way) and hands that explicit file list to the pure-PyTorch trainer
(``model/train.py``), which streams them with pyarrow. ``--distributed N`` runs N DDP processes
through ``pyspark.ml.torch.distributor.TorchDistributor`` (gloo on CPU, NCCL on GPU): on executors
when the master is a cluster, on the driver on a ``local`` master (``--distributed-mode``, see
``jobs/distributed.py``). Ranks on executors read the data files and write ``--work-dir`` at the
same paths as the driver, so on a cluster both must be on storage every node mounts.

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

from jobs import cli
from jobs.delta_io import table_version
from jobs.distributed import MODES, describe_process, driver_identity, resolve_mode, run_ranks
from jobs.spark import get_spark

log = logging.getLogger("jobs.train")


def dataset_metadata(spark, path: str, version: int) -> dict:
    """The build_dataset metadata of table version ``version``.

    build_dataset commits the windows (version v), then the metadata (version v + 1: the table
    property ``lakelm.dataset``, the same JSON as that commit's ``userMetadata``, with
    ``data_version = v``). Both versions hold the same files, so either may be pinned.
    """
    from delta.tables import DeltaTable

    v = int(version)
    rows = (
        DeltaTable.forPath(spark, path)
        .history()
        .filter(f"version IN ({v}, {v + 1})")
        .select("version", "userMetadata")
        .collect()
    )
    found = {r.version: json.loads(r.userMetadata) for r in rows if r.userMetadata}
    if v in found:
        return found[v]
    if found.get(v + 1, {}).get("data_version") == v:
        return found[v + 1]
    raise cli.UsageError(f"{path} version {version} has no dataset metadata: was it written by build_dataset?")


def resolve_files(spark, path: str, version: int) -> list[str]:
    """Local paths of the Parquet files in the table's snapshot at ``version``, sorted.

    The list comes from Delta's log (``inputFiles``), never from listing the folder, which can hold
    files that are no longer part of the table.
    """
    files = spark.read.format("delta").option("versionAsOf", version).load(path).inputFiles()
    return sorted(f[len("file:") :] if f.startswith("file:") else f for f in files)


def build_configs(config_file: str | None, meta: dict, vocab_size: int, overrides: dict):
    """(GPTConfig, TrainConfig) from the JSON file, the dataset metadata and CLI overrides."""
    from model.config import GPTConfig, TrainConfig

    raw = {}
    if config_file:
        try:
            raw = json.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise cli.UsageError(f"cannot read --config {config_file}: {exc}") from exc
    unknown = sorted(set(raw) - {"model", "train"})
    if unknown:
        raise cli.UsageError(f"--config keys must be 'model' and 'train', got {unknown}")
    model_d = {"block_size": meta["block_size"], **raw.get("model", {}), "vocab_size": vocab_size}
    train_d = {**raw.get("train", {}), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return GPTConfig.from_dict(model_d), TrainConfig.from_dict(train_d)
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from exc


def train_process(
    model_d: dict, train_d: dict, files: list[str], bytes_per_token, work_dir: str, tokenizer_path: str, driver: dict
):
    """Train in this process; under torchrun (TorchDistributor) join the process group first.

    Every rank writes ``work_dir/rank-<r>.done`` on success, its result plus ``rank`` and
    ``placement`` (``describe_process``: host, pid, executor id, whether it ran under the driver):
    TorchDistributor does not report a failing rank, so the driver checks these markers itself.
    """
    import torch.distributed as dist

    from model.config import GPTConfig, TrainConfig
    from model.data import ParquetWindowSource
    from model.tokenizer import load_tokenizer
    from model.train import train

    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed and not dist.is_initialized():
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        result = train(
            GPTConfig.from_dict(model_d),
            TrainConfig.from_dict(train_d),
            ParquetWindowSource(files, split="train", bytes_per_token=bytes_per_token),
            ParquetWindowSource(files, split="val", bytes_per_token=bytes_per_token),
            work_dir,
            resume=True,
            progress=True,
            tokenizer=load_tokenizer(tokenizer_path),
        )
        rank = dist.get_rank() if distributed else 0
        done = {**result, "rank": rank, "placement": describe_process(driver)}
        Path(work_dir, f"rank-{rank}.done").write_text(json.dumps(done, default=str))
        return result
    finally:
        if distributed:
            dist.destroy_process_group()


def run(spark, args, record) -> None:
    from model.artifact import save_artifact, verify_artifact
    from model.checkpoint import load_checkpoint
    from model.config import GPTConfig
    from model.gpt import GPT
    from model.tokenizer import load_tokenizer

    latest = table_version(spark, args.data)
    if latest is None:
        raise cli.UsageError(f"--data {args.data} is not a Delta table")
    version = latest if args.data_version is None else args.data_version
    if not 0 <= version <= latest:
        raise cli.UsageError(f"--data-version {version} does not exist (latest is {latest})")
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
    fn_args = (
        model_cfg.to_dict(),
        train_cfg.to_dict(),
        files,
        meta.get("bytes_per_token"),
        work_dir,
        tok_path,
        driver_identity(),
    )
    world = args.distributed if args.distributed and args.distributed > 1 else 1
    mode = resolve_mode(args.distributed_mode, spark.sparkContext.master) if world > 1 else "single"
    if world > 1:
        run_ranks(spark, world, mode, train_process, *fn_args)
        missing = [r for r in range(world) if not Path(work_dir, f"rank-{r}.done").exists()]
        if missing:
            raise RuntimeError(f"ranks {missing} did not finish (see the torchrun log above)")
    else:
        train_process(*fn_args)
    done = [json.loads(Path(work_dir, f"rank-{r}.done").read_text()) for r in range(world)]
    result = done[0]
    ranks = [{"rank": d["rank"], **d["placement"], "samples_log": d["samples_log"]} for d in done]
    for r in ranks:
        log.info(
            "rank %d ran on %s, pid %d, executor %s%s",
            r["rank"],
            r["hostname"],
            r["pid"],
            r["executor_id"],
            " (under the driver)" if r["under_driver"] else "",
        )

    model = GPT(GPTConfig.from_dict(model_cfg.to_dict()))
    model.load_state_dict(load_checkpoint(result["checkpoint"])["model"])
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
    metrics = {
        k: result.get(k) for k in ("step", "train_loss", "val_loss", "val_bpb", "tokens_seen", "n_params", "elapsed_s")
    }
    model_hash = save_artifact(args.out, model, tok, lineage=lineage, metrics=metrics)
    verify_artifact(args.out)
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


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    p = argparse.ArgumentParser(description="Train a GPT on the Delta token table; write an artifact.")
    p.add_argument("--data", help="token table (default: LAKE/tokens)")
    p.add_argument("--data-version", type=int, help="Delta version to train on (default: latest)")
    p.add_argument("--out", required=True, help="artifact folder to create")
    p.add_argument("--config", help='JSON: {"model": {...}, "train": {...}}')
    p.add_argument("--tokenizer", help="tokenizer.json (default: the one recorded by build_dataset)")
    p.add_argument("--distributed", type=int, default=0, help="DDP processes through TorchDistributor")
    p.add_argument(
        "--distributed-mode",
        choices=MODES,
        default="auto",
        help="where the DDP processes run: executors (default on a cluster master), driver (default on local[...])",
    )
    p.add_argument("--work-dir", help="checkpoints and metrics (default: OUT.work); reruns resume here")
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument("--threads", type=int, help="override train.threads (torch threads per process)")
    cli.add_lake_args(p)
    args = p.parse_args(argv)
    try:
        args.data = cli.resolve_table(args.data, args.lake, "tokens", "--data")
        runs = cli.resolve_table(args.runs, args.lake, "runs", "--runs")
    except ValueError as exc:
        log.error("%s", exc)
        return cli.EXIT_USAGE
    spark = get_spark("lakelm-train")
    job_args = {k: v for k, v in vars(args).items()}
    return cli.run_job("train", job_args, runs, lambda rec: run(spark, args, rec), spark)


if __name__ == "__main__":
    sys.exit(main())
