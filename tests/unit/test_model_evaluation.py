"""model/evaluation.py: per-group held-out loss equals the trainer's loss on the same windows."""

import math

import numpy as np
import pytest
import torch

from model.config import GPTConfig
from model.evaluation import loss_by_group, pack_windows
from model.gpt import GPT

VOCAB = 67
CFG = GPTConfig(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _docs(rng, lengths):
    return [rng.integers(0, VOCAB, n) for n in lengths]


def test_pack_windows_keeps_every_token_once():
    docs = [np.arange(5), np.arange(5, 12), np.arange(12, 40)]
    windows = pack_windows(docs, 17)
    assert [len(w) for w in windows] == [17, 17, 6]
    assert np.concatenate(windows).tolist() == list(range(40))
    assert [len(w) for w in pack_windows(docs, 17, max_tokens=20)] == [17, 3]
    assert pack_windows([np.arange(18)], 17)[-1].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    assert pack_windows([], 17) == []
    with pytest.raises(ValueError, match="window must be >= 2"):
        pack_windows(docs, 1)


def test_loss_by_group_is_the_forward_loss_per_group():
    torch.manual_seed(0)
    model = GPT(CFG).train()
    rng = np.random.default_rng(1)
    groups = {"web": _docs(rng, [30, 11, 50]), "books": _docs(rng, [40])}
    got = loss_by_group(model, groups, batch_size=2)
    assert model.training  # restored
    model.eval()
    for name, docs in groups.items():
        total, n = 0.0, 0
        for w in pack_windows(docs, CFG.block_size + 1):  # one forward per window, the trainer's loss
            x, y = torch.from_numpy(w[:-1])[None], torch.from_numpy(w[1:])[None]
            with torch.no_grad():
                _, loss = model(x, y)
            total += float(loss) * y.numel()
            n += y.numel()
        assert got[name]["tokens"] == n == sum(len(d) for d in docs) - math.ceil(sum(len(d) for d in docs) / 17)
        assert got[name]["loss"] == pytest.approx(total / n, rel=1e-5)
        assert got[name]["docs"] == len(docs)
    assert got["web"]["loss"] != got["books"]["loss"]
    # near ln(vocab) for an untrained model
    assert abs(got["web"]["loss"] - math.log(VOCAB)) < 0.5


def test_cap_and_empty_group():
    torch.manual_seed(0)
    model = GPT(CFG)
    rng = np.random.default_rng(2)
    got = loss_by_group(model, {"big": _docs(rng, [200]), "none": []}, max_tokens_per_group=34)
    assert got["big"]["tokens"] == 32 and got["big"]["windows"] == 2
    assert math.isnan(got["none"]["loss"]) and got["none"]["tokens"] == 0
