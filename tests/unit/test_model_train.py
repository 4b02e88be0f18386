"""The trainer (model/train.py): outputs, learning, exact resume, DDP on gloo."""

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from model.checkpoint import list_checkpoints, load_checkpoint
from model.config import GPTConfig, TrainConfig
from model.data import ParquetWindowSource, WindowLoader
from model.gpt import GPT
from model.precision import resolve_precision
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
    assert resumed["resumed_from"].endswith("ckpt_00000007.pt") and resumed["start_step"] == 7  # the "crash" step
    assert straight["resumed_from"] is None and straight["start_step"] == 0
    # the samples log is cut back to the checkpoint and continued: the same windows, step for step
    assert _samples(tmp_path / "b") == _samples(tmp_path / "a")
    assert sorted(_samples(tmp_path / "a")) == list(range(1, 13))


def _samples(out_dir, rank=0) -> dict[int, list[list[int]]]:
    """step -> [[epoch, sample id], ...] from a run's samples log."""
    lines = (Path(out_dir) / "samples" / f"rank-{rank}.jsonl").read_text().splitlines()
    steps = [json.loads(line) for line in lines]
    assert len({r["step"] for r in steps}) == len(steps), "a step is logged twice"
    return {r["step"]: r["samples"] for r in steps}


def test_samples_log_names_every_training_window_once_per_epoch(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    # sample id = row number in the files' stored order (file 0's rows, then file 1's)
    splits = [s for p in paths for s in pq.read_table(p, columns=["split"])["split"].to_pylist()]
    train_ids = [i for i, s in enumerate(splits) if s == "train"]
    steps = -(-len(train_ids) // 8) + 2  # a little more than one epoch of batch 8
    train(
        model_cfg,
        _cfg(max_steps=steps, lr_decay_steps=steps),
        ParquetWindowSource(paths, "train"),
        None,
        tmp_path / "run",
        progress=False,
    )
    log = _samples(tmp_path / "run")
    assert sorted(log) == list(range(1, steps + 1)) and all(len(v) == 8 for v in log.values())
    flat = [tuple(s) for step in sorted(log) for s in log[step]]
    epoch0 = [i for e, i in flat if e == 0]
    assert sorted(epoch0) == train_ids  # every train window exactly once, no val window
    assert epoch0 != train_ids  # shuffled, not stored order
    assert {e for e, _ in flat} == {0, 1}


def test_resume_truncates_metrics_written_after_the_checkpoint(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    tr = ParquetWindowSource(paths, "train")
    out = tmp_path / "run"
    train(model_cfg, _cfg(max_steps=6, ckpt_every=4), tr, None, out, progress=False)
    (out / "checkpoints" / "ckpt_00000006.pt").unlink()  # pretend the run died after step 6's metrics line
    train(model_cfg, _cfg(max_steps=8, ckpt_every=4), tr, None, out, progress=False)
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == list(range(1, 9))
    assert sorted(_samples(out)) == list(range(1, 9))  # steps 5-6 of the dead run were cut, not repeated


def test_refuses_to_overwrite_without_resume(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    tr = ParquetWindowSource(paths, "train")
    train(model_cfg, _cfg(max_steps=2), tr, None, tmp_path, progress=False)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(model_cfg, _cfg(max_steps=2), tr, None, tmp_path, resume=False, progress=False)
    with pytest.raises(ValueError, match="trained with model config"):
        train(GPTConfig(**{**model_cfg.to_dict(), "n_embd": 64}), _cfg(max_steps=4), tr, None, tmp_path, progress=False)


def test_bad_token_ids_raise(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    small = GPTConfig(**{**model_cfg.to_dict(), "vocab_size": 10})
    with pytest.raises(ValueError, match="outside \\[0, vocab_size=10\\)"):
        train(small, _cfg(max_steps=2), ParquetWindowSource(paths, "train"), None, tmp_path, progress=False)


@pytest.mark.parametrize(
    "precision, native, expected",
    [("fp32", True, "fp32"), ("bf16", False, "bf16"), ("auto", True, "bf16"), ("auto", False, "fp32")],
)
def test_resolve_precision_on_cpu(monkeypatch, precision, native, expected):
    monkeypatch.setattr("model.precision.cpu_has_native_bf16", lambda: native)
    assert resolve_precision(precision, torch.device("cpu")) == expected


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp16")


def test_fp32_is_the_plain_float32_loop(corpus, tmp_path):
    """precision="fp32" computes exactly what a bare float32 loop over the same batches computes."""
    tok, paths, model_cfg = corpus
    tr = ParquetWindowSource(paths, "train")
    cfg = _cfg(max_steps=8, precision="fp32")  # dropout 0.1: the RNG stream must match too
    result = train(model_cfg, cfg, tr, None, tmp_path / "run", progress=False)
    assert result["precision"] == "fp32"

    torch.manual_seed(cfg.seed)
    model = GPT(model_cfg)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), "cpu")
    torch.manual_seed(cfg.seed)  # the trainer reseeds after building (seed + rank, rank 0)
    it = iter(WindowLoader(tr, cfg.batch_size, T, seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer))
    losses = {}
    for step in range(cfg.max_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = next(it)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses[step + 1] = loss.item()
    assert _train_losses(tmp_path / "run") == losses  # bit for bit
    trained = load_checkpoint(result["checkpoint"])["model"]
    assert all(torch.equal(trained[k], v) for k, v in model.state_dict().items())


class _CountingWrapper(torch.nn.Module):
    """Stands in for ``torch.compile``'s result: runs the model unchanged and counts its calls."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def test_compile_on_cpu_trains_through_the_compiled_model(corpus, tmp_path, monkeypatch):
    """TrainConfig.compile=True on CPU trains every micro-batch through torch.compile's module."""
    _tok, paths, model_cfg = corpus
    tr = ParquetWindowSource(paths, "train")
    wrappers = []

    def fake_compile(module, *args, **kwargs):
        wrappers.append(_CountingWrapper(module))
        return wrappers[-1]

    monkeypatch.setattr(torch, "compile", fake_compile)
    train(model_cfg, _cfg(max_steps=5, grad_accum=2, compile=True), tr, None, tmp_path / "c", progress=False)
    assert len(wrappers) == 1 and wrappers[0].calls == 5 * 2
    train(model_cfg, _cfg(max_steps=5, grad_accum=2), tr, None, tmp_path / "e", progress=False)
    assert len(wrappers) == 1  # compile=False (the default) never compiles
    assert _train_losses(tmp_path / "c") == _train_losses(tmp_path / "e")  # the wrapper changes nothing


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")),
    reason="torch.compile on CPU (inductor) needs a C++ compiler on PATH",
)
def test_compile_on_cpu_matches_eager_and_resumes_exactly(corpus, tmp_path):
    """Really compiled (inductor, C++): the same losses as eager up to rounding, and exact resume."""
    _tok, paths, model_cfg = corpus
    cfg0 = dataclasses.replace(model_cfg, dropout=0.0)  # compiled dropout draws other masks than eager
    tr = ParquetWindowSource(paths, "train")
    train(cfg0, _cfg(max_steps=8, precision="fp32"), tr, None, tmp_path / "e", progress=False)
    compiled = train(cfg0, _cfg(max_steps=8, precision="fp32", compile=True), tr, None, tmp_path / "c", progress=False)
    le, lc = _train_losses(tmp_path / "e"), _train_losses(tmp_path / "c")
    assert sorted(lc) == list(range(1, 9))
    assert all(lc[s] == pytest.approx(le[s], rel=1e-4) for s in le)
    assert compiled["train_loss"] < lc[1]  # it learns
    train(cfg0, _cfg(max_steps=4, precision="fp32", compile=True), tr, None, tmp_path / "r", progress=False)
    train(cfg0, _cfg(max_steps=8, precision="fp32", compile=True), tr, None, tmp_path / "r", progress=False)
    assert _train_losses(tmp_path / "r") == lc  # stop at 4, resume: bit for bit the straight compiled run


def test_bf16_learns_and_resumes_exactly(corpus, tmp_path):
    tok, paths, model_cfg = corpus
    tr, va = ParquetWindowSource(paths, "train"), ParquetWindowSource(paths, "val", bytes_per_token=1.0)
    cfg = _cfg(precision="bf16")
    straight = train(model_cfg, cfg, tr, va, tmp_path / "a", progress=False)
    train(model_cfg, _cfg(precision="bf16", max_steps=7), tr, va, tmp_path / "b", progress=False)  # "crash" at 7
    resumed = train(model_cfg, cfg, tr, va, tmp_path / "b", progress=False)
    assert straight["precision"] == resumed["precision"] == "bf16"
    records = read_metrics(tmp_path / "a" / "metrics.jsonl")
    assert {r["precision"] for r in records if r["kind"] == "train"} == {"bf16"}
    vals = [r["loss"] for r in records if r["kind"] == "val"]
    assert vals[-1] < vals[0] - 0.3, vals  # it learns
    assert _train_losses(tmp_path / "a") == _train_losses(tmp_path / "b")  # exact resume under autocast
    assert resumed["val_loss"] == straight["val_loss"]
    sa, sb = load_checkpoint(straight["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    assert sa["precision"] == "bf16"
    assert all(sa["model"][k].dtype == torch.float32 for k in sa["model"])  # master weights stay float32
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    fp32 = train(model_cfg, _cfg(precision="fp32"), tr, va, tmp_path / "c", progress=False)
    assert fp32["val_loss"] != straight["val_loss"]  # autocast really ran
    assert fp32["val_loss"] == pytest.approx(straight["val_loss"], abs=0.05)


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
    ranks = [_samples(run / "straight", r) for r in range(2)]
    assert sorted(ranks[0]) == sorted(ranks[1]) == list(range(1, 7))
    for step in range(1, 7):  # each step, 4 windows per rank and none shared
        a, b = ({tuple(s) for s in ranks[r][step]} for r in range(2))
        assert len(a) == len(b) == 4 and not a & b, step
    assert [_samples(run / "resumed", r) for r in range(2)] == ranks
