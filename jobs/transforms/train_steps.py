"""The steps of jobs/train.py: the pinned token table's dataset metadata and files, the model and train
configs, and the body every training process (each DDP rank) runs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from jobs.common import cli
from jobs.common.distributed import describe_process

log = logging.getLogger("jobs.train")


def pinned_version(spark, path: str, requested: int | None) -> int:
    """The token table version to train on: ``requested``, or the latest when None.

    Raises:
        cli.UsageError: ``path`` is not a Delta table, or has no such version.
    """
    from jobs.common.delta_io import table_version

    latest = table_version(spark, path)
    if latest is None:
        raise cli.UsageError(f"--data {path} is not a Delta table")
    version = latest if requested is None else requested
    if not 0 <= version <= latest:
        raise cli.UsageError(f"--data-version {version} does not exist (latest is {latest})")
    return version


def dataset_metadata(spark, path: str, version: int) -> dict:
    """The build_dataset metadata of table version ``version``.

    build_dataset commits the windows (version v), then the metadata (version v + 1: the table
    property ``lakelm.dataset``, the same JSON as that commit's ``userMetadata``, with
    ``data_version = v``). Both versions hold the same files, so either may be pinned.
    """
    from jobs.common.delta_io import history

    v = int(version)
    rows = history(spark, path).filter(f"version IN ({v}, {v + 1})").select("version", "userMetadata").collect()
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

    raw = cli.read_config_file(config_file) if config_file else {}
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


def finished_ranks(work_dir: str, world: int) -> tuple[dict, list[dict]]:
    """Rank 0's result and where every rank ran, from the ``rank-R.done`` markers in ``work_dir`` (logged).

    Raises:
        RuntimeError: a rank left no marker (it did not finish).
    """
    missing = [r for r in range(world) if not Path(work_dir, f"rank-{r}.done").exists()]
    if missing:
        raise RuntimeError(f"ranks {missing} did not finish (see the torchrun log above)")
    done = [json.loads(Path(work_dir, f"rank-{r}.done").read_text()) for r in range(world)]
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
    return done[0], ranks


def write_artifact(out: str, model_cfg, tok, result: dict, lineage: dict) -> tuple[str, dict]:
    """The trained weights (``result["checkpoint"]``) as a verified artifact at ``out``; returns (hash, metrics)."""
    from model.artifact import save_artifact, verify_artifact
    from model.checkpoint import load_checkpoint
    from model.config import GPTConfig
    from model.gpt import GPT

    model = GPT(GPTConfig.from_dict(model_cfg.to_dict()))
    model.load_state_dict(load_checkpoint(result["checkpoint"])["model"])
    metrics = {
        k: result.get(k) for k in ("step", "train_loss", "val_loss", "val_bpb", "tokens_seen", "n_params", "elapsed_s")
    }
    model_hash = save_artifact(out, model, tok, lineage=lineage, metrics=metrics)
    verify_artifact(out)
    return model_hash, metrics
