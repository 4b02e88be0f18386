"""The GPT model, generation and scoring functions (model/gpt.py) on a tiny CPU config."""

import math

import pytest
import torch

from model.config import GPTConfig
from model.decoding import sample_next_token
from model.gpt import GPT
from model.scoring import mean_pooled_embeddings, summarize_logprobs, token_logprobs

VOCAB = 67
CFG = GPTConfig(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _model(seed: int = 0, cfg: GPTConfig = CFG) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg).eval()


def test_forward_shapes():
    m = _model()
    idx = torch.randint(0, VOCAB, (3, 16))
    logits, loss = m(idx)
    assert logits.shape == (3, 16, VOCAB) and loss is None
    logits, loss = m(idx[:, :5], idx[:, 1:6])
    assert logits.shape == (3, 5, VOCAB) and loss.shape == ()
    assert m.hidden_states(idx).shape == (3, 16, 32)


def test_too_long_input_raises():
    with pytest.raises(ValueError, match="exceeds block_size=16"):
        _model()(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_initial_loss_near_uniform(seed):
    m = _model(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randint(0, VOCAB, (8, 16), generator=g), torch.randint(0, VOCAB, (8, 16), generator=g)
    _, loss = m(x, y)
    assert abs(loss.item() - math.log(VOCAB)) < 0.3


def test_weights_tied_and_residual_init_scaled():
    m = _model()
    assert m.lm_head.weight is m.transformer.wte.weight
    std = m.transformer.h[0].attn.c_proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(2 * CFG.n_layer), rel=0.2)


def test_overfits_one_batch():
    m = _model().train()
    opt = m.configure_optimizers(0.0, 3e-3, (0.9, 0.99), "cpu")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, VOCAB, (4, 16), generator=g), torch.randint(0, VOCAB, (4, 16), generator=g)
    first = None
    for _ in range(60):
        _, loss = m(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first, (first, loss.item())


def test_optimizer_groups_skip_decay_on_1d():
    m = _model()
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in m.parameters())  # tied matrix counted once


@pytest.mark.parametrize("prompt_len, new", [(1, 10), (5, 11), (4, 30)])  # (4, 30) runs past block_size
def test_kv_cache_greedy_equals_recompute(prompt_len, new):
    m = _model(3)
    prompt = torch.randint(0, VOCAB, (3, prompt_len), generator=torch.Generator().manual_seed(1))
    cached = m.generate(prompt, new, temperature=0.0, use_cache=True)
    full = m.generate(prompt, new, temperature=0.0, use_cache=False)
    assert cached.shape == (3, prompt_len + new)
    assert torch.equal(cached, full)


def test_kv_cache_logits_match_full_forward():
    from model.gpt import KVCache

    m = _model(4)
    idx = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(2))
    full, _ = m(idx)
    cache = KVCache(CFG, 2, "cpu", torch.float32)
    parts = [m(idx[:, :5], kv_cache=cache)[0], m(idx[:, 5:9], kv_cache=cache)[0]]  # multi-token chunk with a past
    parts += [m(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(9, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_generate_stops_at_eos():
    m = _model(5)
    prompt = torch.randint(0, VOCAB, (1, 3), generator=torch.Generator().manual_seed(0))
    free = m.generate(prompt, 8, temperature=0.0)
    eos = int(free[0, 5])  # the third greedy token: make it the EOS
    out = m.generate(prompt, 8, temperature=0.0, eos_id=eos)
    assert out.shape[1] <= 6 and int(out[0, -1]) == eos
    assert torch.equal(out[0], free[0, : out.shape[1]])


def test_generate_batch_rows_stop_independently():
    m = _model(6)
    prompt = torch.randint(0, VOCAB, (4, 3), generator=torch.Generator().manual_seed(0))
    free = m.generate(prompt, 6, temperature=0.0)
    eos = int(free[0, 4])
    out = m.generate(prompt, 6, temperature=0.0, eos_id=eos)
    for row in range(4):
        hits = (out[row, 3:] == eos).nonzero()
        if len(hits):  # everything after the first EOS is EOS
            assert bool((out[row, 3 + int(hits[0]) :] == eos).all())


@pytest.mark.parametrize("kw", [{"top_k": 5}, {"top_p": 0.8}, {"top_k": 10, "top_p": 0.9}, {}])
def test_sampling_with_seed_is_reproducible(kw):
    m = _model(7)
    prompt = torch.randint(0, VOCAB, (2, 4), generator=torch.Generator().manual_seed(0))
    a = m.generate(prompt, 12, temperature=0.9, seed=123, **kw)
    b = m.generate(prompt, 12, temperature=0.9, seed=123, **kw)
    c = m.generate(prompt, 12, temperature=0.9, seed=124, **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_top_k_and_top_p_restrict_support():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_next_token(logits, 1.0, top_k=2, generator=g).tolist()) <= {0, 1}
    p = torch.softmax(logits[0], 0)  # [0.64, 0.24, 0.09, ...]: top_p=0.7 keeps tokens 0 and 1
    assert p[0] < 0.7 < p[0] + p[1]
    assert set(sample_next_token(logits, 1.0, top_p=0.7, generator=g).tolist()) == {0, 1}
    assert sample_next_token(logits, 0.0).unique().tolist() == [0]


def test_token_logprobs_matches_loss_and_ignores_padding():
    m = _model(8)
    idx = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(0))
    lp = token_logprobs(m, idx)
    assert lp.shape == (2, 9) and bool((lp <= 0).all())
    _, loss = m(idx[:, :-1], idx[:, 1:])
    assert -lp.mean().item() == pytest.approx(loss.item(), rel=1e-5)
    # right padding does not change the scores of real tokens
    padded = torch.cat([idx[:1, :6], torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 4])
    lp_pad = token_logprobs(m, padded, mask)
    torch.testing.assert_close(lp_pad[:, :5], token_logprobs(m, idx[:1, :6]))
    assert bool((lp_pad[:, 5:] == 0).all())
    scores = summarize_logprobs(lp_pad, mask[:, 1:], n_bytes=torch.tensor([5]))
    assert scores["n_tokens"].item() == 5
    assert scores["mean_nll"].item() == pytest.approx(-lp_pad.sum().item() / 5, rel=1e-6)
    assert scores["perplexity"].item() == pytest.approx(math.exp(scores["mean_nll"].item()), rel=1e-6)
    assert scores["bits_per_byte"].item() == pytest.approx(-lp_pad.sum().item() / 5 / math.log(2), rel=1e-6)


def test_token_logprobs_chunks_equal_log_softmax_of_the_full_logits():
    m = _model(8)
    idx = torch.randint(0, VOCAB, (3, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3, [1] * 2 + [0] * 6])
    logits, _ = m(idx)
    want = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, idx[:, 1:, None]).squeeze(-1)
    want = want.masked_fill(~mask[:, 1:].bool(), 0.0)
    for chunk in (1, 3, 4096):  # chunk boundaries inside and across rows give the same numbers
        torch.testing.assert_close(token_logprobs(m, idx, mask, chunk_tokens=chunk), want)
    assert token_logprobs(m, idx[:, :1]).shape == (3, 0)
    with pytest.raises(ValueError, match="chunk_tokens"):
        token_logprobs(m, idx, mask, chunk_tokens=0)


def test_left_padding_is_refused():
    m = _model()
    with pytest.raises(ValueError, match="padding must be on the right"):
        token_logprobs(m, torch.zeros(1, 4, dtype=torch.long), torch.tensor([[0, 1, 1, 1]]))


def test_mean_pooled_embeddings_ignore_padding():
    m = _model(9)
    idx = torch.randint(0, VOCAB, (1, 7), generator=torch.Generator().manual_seed(0))
    padded = torch.cat([idx, torch.full((1, 5), 3)], dim=1)
    mask = torch.tensor([[1] * 7 + [0] * 5])
    e1 = mean_pooled_embeddings(m, idx)
    e2 = mean_pooled_embeddings(m, padded, mask)
    assert e1.shape == (1, 32)
    torch.testing.assert_close(e1, e2, atol=1e-5, rtol=1e-5)
