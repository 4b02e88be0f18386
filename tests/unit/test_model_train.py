"""The trainer (model/train.py): outputs, learning, exact resume, DDP on gloo."""

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from model.checkpoint import list_checkpoints, load_checkpoint
from model.config import GPTConfig, TrainConfig
from model.data import ParquetWindowSource
from model.run_log import read_metrics
from model.tokenizer import char_level_tokenizer
from model.train import lr_at, train

DATA = Path(__file__).resolve().parent.parent / "data"
T = 16


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Char-level windows of the tinyshakespeare slice in 2 Parquet files; every 8th window is 'val'."""
    text = (DATA / "tinyshakespeare_head.txt").read_text(encoding="utf-8")
    tok = char_level_tokenizer(text)
    ids = np.array(tok.encode(text), dtype=np.int32)
    n = (len(ids) - 1) // T
    rows = [(i, "val" if i % 8 == 0 else "train", ids[i * T : i * T + T + 1].tolist()) for i in range(n)]
    d = tmp_path_factory.mktemp("tokens")
    paths = []
    for f in range(2):
        part = rows[f::2]
        table = pa.table(
            {
                "window_id": pa.array([r[0] for r in part], pa.int64()),
                "split": [r[1] for r in part],
                "tokens": pa.array([r[2] for r in part], pa.list_(pa.int32())),
            }
        )
        pq.write_table(table, d / f"part-{f}.parquet", row_group_size=32)
        paths.append(str(d / f"part-{f}.parquet"))
    model_cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=2, n_head=2, n_embd=32, dropout=0.1)
    return tok, paths, model_cfg


def _cfg(**kw) -> TrainConfig:
    base = dict(
        batch_size=8,
        max_steps=12,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=3,
        lr_decay_steps=12,
        eval_every=6,
        eval_steps=3,
        ckpt_every=4,
        log_every=1,
        shuffle_buffer=40,
        threads=1,
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def _train_losses(out_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(Path(out_dir) / "metrics.jsonl") if r["kind"] == "train"}


def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    lrs = [lr_at(s, cfg) for s in range(130)]
    assert lrs[0] < lrs[5] < lrs[9] < 1.0
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.55)  # cosine midpoint
    assert all(a >= b for a, b in zip(lrs[10:110], lrs[11:111], strict=True))
    assert lrs[110] == lrs[129] == 0.1


def test_train_writes_outputs_and_learns(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    out = tmp_path / "run"
    result = train(
        model_cfg,
        _cfg(max_steps=40, lr_decay_steps=40, eval_every=20, ckpt_every=20),
        ParquetWindowSource(paths, "train"),
        ParquetWindowSource(paths, "val"),
        out,
        progress=False,
        tokenizer=tok,
    )
    assert {"metrics.jsonl", "loss_curve.png", "train_config.json", "model_config.json", "checkpoints"} <= {
        p.name for p in out.iterdir()
    }
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [20, 40]
    vals = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "val"]
    assert [r["step"] for r in vals] == [0, 20, 40]
    assert vals[0]["loss"] == pytest.approx(math.log(model_cfg.vocab_size), abs=0.3)
    assert vals[-1]["loss"] < vals[0]["loss"] - 0.5
    # char-level ASCII text: one byte per token, so bits per byte = nats per token / ln 2
    assert result["val_bpb"] == pytest.approx(result["val_loss"] / math.log(2), rel=1e-6)
    assert result["step"] == 40 and result["tokens_seen"] == 40 * 8 * T
    assert json.loads((out / "train_config.json").read_text())["max_steps"] == 40


def test_resume_is_exact(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    tr, va = ParquetWindowSource(paths, "train"), ParquetWindowSource(paths, "val", bytes_per_token=1.0)
    cfg = _cfg(grad_accum=2)  # dropout 0.1 in the model: RNG restore matters
    straight = train(model_cfg, cfg, tr, va, tmp_path / "a", progress=False)
    train(model_cfg, _cfg(grad_accum=2, max_steps=7), tr, va, tmp_path / "b", progress=False)  # "crash" at 7
    resumed = train(model_cfg, cfg, tr, va, tmp_path / "b", progress=False)
    la, lb = _train_losses(tmp_path / "a"), _train_losses(tmp_path / "b")
    assert sorted(la) == sorted(lb) == list(range(1, 13))
    assert la == lb  # exact: same batches, same dropout masks, same optimizer state
    assert resumed["val_loss"] == straight["val_loss"]
    sa, sb = load_checkpoint(straight["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])


def test_resume_truncates_metrics_written_after_the_checkpoint(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    tr = ParquetWindowSource(paths, "train")
    out = tmp_path / "run"
    train(model_cfg, _cfg(max_steps=6, ckpt_every=4), tr, None, out, progress=False)
    (out / "checkpoints" / "ckpt_00000006.pt").unlink()  # pretend the run died after step 6's metrics line
    train(model_cfg, _cfg(max_steps=8, ckpt_every=4), tr, None, out, progress=False)
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == list(range(1, 9))


def test_refuses_to_overwrite_without_resume(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    tr = ParquetWindowSource(paths, "train")
    train(model_cfg, _cfg(max_steps=2), tr, None, tmp_path, progress=False)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(model_cfg, _cfg(max_steps=2), tr, None, tmp_path, resume=False, progress=False)
    with pytest.raises(ValueError, match="trained with model config"):
        train(
            GPTConfig(**{**model_cfg.to_dict(), "n_embd": 64}), _cfg(max_steps=4), tr, None, tmp_path, progress=False
        )


def test_bad_token_ids_raise(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    small = GPTConfig(**{**model_cfg.to_dict(), "vocab_size": 10})
    with pytest.raises(ValueError, match="outside \\[0, vocab_size=10\\)"):
        train(small, _cfg(max_steps=2), ParquetWindowSource(paths, "train"), None, tmp_path, progress=False)


def _ddp_worker(rank, world, init_file, model_cfg, paths, out_dir, results):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        tr, va = ParquetWindowSource(paths, "train"), ParquetWindowSource(paths, "val", bytes_per_token=1.0)
        cfg = _cfg(max_steps=6, lr_decay_steps=6, batch_size=4, ckpt_every=3, eval_every=3)
        res = train(model_cfg, cfg, tr, va, f"{out_dir}/straight", progress=False)
        train(model_cfg, _cfg(**{**cfg.to_dict(), "max_steps": 4}), tr, va, f"{out_dir}/resumed", progress=False)
        train(model_cfg, cfg, tr, va, f"{out_dir}/resumed", progress=False)
        results.put((rank, res["val_loss"], res["train_loss"]))
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_two_ranks(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    ctx = torch.multiprocessing.get_context("spawn")
    results = ctx.Queue()
    torch.multiprocessing.spawn(
        _ddp_worker,
        args=(2, str(tmp_path / "init"), model_cfg, paths, str(tmp_path / "run"), results),
        nprocs=2,
        join=True,
    )
    got = sorted(results.get(timeout=10) for _ in range(2))
    assert got[0][1:] == got[1][1:]  # val and train loss are all-reduced: identical on both ranks
    run = tmp_path / "run"
    records = read_metrics(run / "straight" / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 7))  # rank 0 alone writes
    ckpt = load_checkpoint(run / "straight" / "checkpoints" / "ckpt_00000006.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["data"]) == 2 and len(ckpt["rng"]) == 2
    assert records[-1]["tokens"] == 6 * 4 * T * 2
    assert _train_losses(run / "straight") == _train_losses(run / "resumed")  # exact resume under DDP too
