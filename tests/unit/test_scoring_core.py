"""udfs/tasks.py, udfs/batching.py and udfs/model_cache.py (the pure core of batch inference): planning,
scores/embeddings/generations equal to plain PyTorch one text at a time, per-row errors, and the
per-process model cache. No JVM."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from model import scoring as model_scoring
from model.artifact import ArtifactIntegrityError
from model.scoring import mean_pooled_embeddings, summarize_logprobs, token_logprobs
from tests.tiny_model import BLOCK, mixed_texts, save_tiny_artifact
from udfs import batching, inference, model_cache, tasks


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------- planning


@pytest.mark.parametrize(
    "lengths, budget, max_rows, expected",
    [
        ([5, 1, 4, 2], 8, None, [[1, 3], [2], [0]]),
        ([3, 3, 3, 3], 12, None, [[0, 1, 2, 3]]),
        ([3, 3, 3, 3], 12, 3, [[0, 1, 2], [3]]),
        ([100, 1], 10, None, [[1], [0]]),  # an item over budget gets its own batch
        ([], 10, None, []),
    ],
)
def test_plan_micro_batches_exact(lengths, budget, max_rows, expected):
    assert [b.tolist() for b in batching.plan_micro_batches(lengths, budget, max_rows)] == expected


def test_plan_micro_batches_covers_everything_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(3, 1, size=500).astype(int) + 1
    batches = batching.plan_micro_batches(lengths, token_budget=512, max_rows=16)
    positions = np.concatenate(batches)
    assert sorted(positions.tolist()) == list(range(500))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or len(b) * lengths[b].max() <= 512
        assert lengths[b].tolist() == sorted(lengths[b].tolist())


@pytest.mark.parametrize("budget, max_rows", [(0, None), (8, 0)])
def test_plan_micro_batches_rejects_bad_limits(budget, max_rows):
    with pytest.raises(ValueError, match="must be > 0"):
        batching.plan_micro_batches([1, 2], budget, max_rows)


@pytest.mark.parametrize("max_len, stride", [(2, 1), (8, 1), (8, 4), (8, 7), (32, 16)])
def test_sliding_windows_score_every_token_once_with_context(max_len, stride):
    for n in range(2, 70):
        scored = []
        for begin, end, k in batching.sliding_windows(n, max_len, stride):
            assert 0 <= begin < end <= n and end - begin <= max_len and 1 <= k <= end - begin - (begin == 0)
            for p in range(end - k, end):
                scored.append(p)
                assert p - begin >= min(p, max_len - stride), (n, begin, end, p)
        assert scored == list(range(1, n)), n


@pytest.mark.parametrize("n, max_len, stride", [(1, 8, 4), (10, 1, 1), (10, 8, 8), (10, 8, 0)])
def test_sliding_windows_rejects_bad_arguments(n, max_len, stride):
    with pytest.raises(ValueError):
        batching.sliding_windows(n, max_len, stride)


# ----------------------------------------------------------------------------------------- references


def reference_score(model, tok, text: str, max_len: int, stride: int) -> tuple[float, int]:
    """Sum of log-probs and scored tokens for one text, one unpadded window at a time."""
    seq = torch.tensor([[tok.eos_id] + tok.encode(text)])  # (1, n)
    if seq.size(1) <= max_len:  # fits: exactly the model's own scoring
        s = summarize_logprobs(token_logprobs(model, seq))
        return float(s["sum_logprob"][0]), int(s["n_tokens"][0])
    total, count = 0.0, 0
    for begin, end, k in batching.sliding_windows(seq.size(1), max_len, stride):
        lp = token_logprobs(model, seq[:, begin:end])[0]  # (end - begin - 1,)
        total += float(lp[-k:].double().sum())
        count += k
    return total, count


def test_score_texts_equals_plain_pytorch_one_text_at_a_time(tiny):
    texts = pd.Series(mixed_texts(), index=np.arange(100, 100 + len(mixed_texts()))[::-1])
    out = tasks.score_texts(tiny.model, tiny.tokenizer, texts, token_budget=96, max_rows=5)
    assert list(out.index) == list(texts.index)  # original order and index kept
    for i, text in texts.items():
        row = out.loc[i]
        if not isinstance(text, str) or not text or "\u00e9" in text:
            assert row.error is not None and pd.isna(row.sum_logprob) and pd.isna(row.n_tokens)
            continue
        total, count = reference_score(tiny.model, tiny.tokenizer, text, BLOCK, BLOCK // 2)
        assert row.error is None
        assert row.n_tokens == count == len(text)
        assert row.sum_logprob == pytest.approx(total, abs=1e-4, rel=1e-5)
        assert row.mean_nll == pytest.approx(-total / count, rel=1e-5)
        assert row.perplexity == pytest.approx(np.exp(-total / count), rel=1e-5)
        assert row.bits_per_byte == pytest.approx(-total / len(text.encode()) / np.log(2), rel=1e-5)
        assert row.n_windows == len(batching.sliding_windows(len(text) + 1, BLOCK, BLOCK // 2))


def test_score_texts_window_options_and_budget_do_not_change_results(tiny):
    texts = pd.Series([t for t in mixed_texts() if t and "\u00e9" not in t])
    a = tasks.score_texts(tiny.model, tiny.tokenizer, texts, token_budget=10_000, max_rows=None, max_len=16, stride=5)
    b = tasks.score_texts(tiny.model, tiny.tokenizer, texts, token_budget=16, max_rows=1, max_len=16, stride=5)
    np.testing.assert_allclose(a.sum_logprob, b.sum_logprob, rtol=1e-5)
    for text, got in zip(texts, a.sum_logprob):
        assert got == pytest.approx(reference_score(tiny.model, tiny.tokenizer, text, 16, 5)[0], abs=1e-4)


def test_bf16_precision_is_close_to_fp32_and_the_default_budget_follows_the_device(tiny):
    texts = pd.Series([t for t in mixed_texts() if t and "\u00e9" not in t])
    fp32 = tasks.score_texts(tiny.model, tiny.tokenizer, texts)  # defaults: fp32, CPU token budget
    assert batching.token_budget_for(None, torch.device("cpu")) == batching.CPU_TOKEN_BUDGET
    assert batching.token_budget_for(None, torch.device("cuda")) == batching.GPU_TOKEN_BUDGET
    assert batching.token_budget_for(7, torch.device("cpu")) == 7
    pinned = tasks.score_texts(
        tiny.model, tiny.tokenizer, texts, token_budget=batching.CPU_TOKEN_BUDGET, precision="fp32"
    )
    pd.testing.assert_frame_equal(fp32, pinned)
    bf16 = tasks.score_texts(tiny.model, tiny.tokenizer, texts, precision="bf16")
    assert bf16.error.isna().all() and (bf16.n_tokens == fp32.n_tokens).all()
    np.testing.assert_allclose(bf16.mean_nll, fp32.mean_nll, rtol=2e-2)
    assert not np.allclose(bf16.sum_logprob, fp32.sum_logprob, rtol=1e-7, atol=0)  # bf16 really ran
    emb16 = tasks.embed_texts(tiny.model, tiny.tokenizer, texts, precision="bf16")
    emb32 = tasks.embed_texts(tiny.model, tiny.tokenizer, texts)
    np.testing.assert_allclose(np.stack(emb16.embedding), np.stack(emb32.embedding), atol=5e-2)
    with pytest.raises(ValueError, match="precision"):
        tasks.score_texts(tiny.model, tiny.tokenizer, texts, precision="fp16")


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, "null_text"),
        (float("nan"), "null_text"),
        ("", "empty_text"),
        ("caf\u00e9", "encode_failed: "),
        ("ok", None),
    ],
)
def test_errors_are_per_row(tiny, text, expected):
    texts = pd.Series(["First", text, "Citizen"], dtype=object)
    for fn in (tasks.score_texts, tasks.embed_texts, tasks.generate_texts):
        opts = {"max_new_tokens": 2} if fn is tasks.generate_texts else {}
        out = fn(tiny.model, tiny.tokenizer, texts, **opts)
        assert out.error.iloc[0] is None and out.error.iloc[2] is None
        if expected is None:
            assert out.error.iloc[1] is None
        else:
            assert out.error.iloc[1].startswith(expected) and out.iloc[1].drop("error").isna().all()


def test_score_texts_rejects_windows_longer_than_the_model(tiny):
    with pytest.raises(ValueError, match="max_len must be in"):
        tasks.score_texts(tiny.model, tiny.tokenizer, pd.Series(["a"]), max_len=BLOCK + 1)


def test_a_failing_micro_batch_is_retried_row_by_row(tiny, monkeypatch):
    import model.scoring

    real = model.scoring.token_logprobs
    poison = tiny.tokenizer.encode("Y")[0]

    def flaky(m, idx, mask=None):
        if bool((idx == poison).any()):
            raise RuntimeError("boom")
        return real(m, idx, mask)

    monkeypatch.setattr(model.scoring, "token_logprobs", flaky)
    texts = pd.Series(["First", "Yes", "Citizen", "all"])
    out = tasks.score_texts(tiny.model, tiny.tokenizer, texts, token_budget=10_000)
    assert out.error.tolist() == [None, "model_failed: RuntimeError: boom", None, None]
    assert out.n_tokens.tolist()[::2] == [5, 7]


@pytest.mark.parametrize(
    "error, retryable",
    [
        (None, False),
        ("null_text", False),
        ("empty_text", False),
        ("encode_failed: unknown character", False),
        ("model_failed: OutOfMemoryError: CUDA out of memory", True),
        ("model_failed", False),
    ],
)
def test_only_model_failures_are_retryable(error, retryable):
    assert tasks.is_retryable_error(error) is retryable


def test_injected_model_fault_fails_only_the_marked_rows_and_is_removed_after(tiny):
    from udfs.faults import failing_model

    texts = pd.Series(["First", "Yes jV no", "", "Citizen"], dtype=object)
    for fn in (tasks.score_texts, tasks.embed_texts, tasks.generate_texts):
        opts = {"max_new_tokens": 2} if fn is tasks.generate_texts else {}
        clean = fn(tiny.model, tiny.tokenizer, texts, **opts)
        with failing_model(tiny.model, tiny.tokenizer, "jV"):
            faulty = fn(tiny.model, tiny.tokenizer, texts, **opts)
        assert (
            faulty.error[1] == "model_failed: RuntimeError: injected model fault: the input holds "
            "LAKELM_FAULT_MODEL_TEXT='jV'"
        )
        assert [tasks.is_retryable_error(e) for e in faulty.error] == [False, True, False, False]
        assert faulty.error[2] == clean.error[2] == "empty_text"
        pd.testing.assert_frame_equal(faulty.drop(index=1), clean.drop(index=1))  # the neighbours are unharmed
        again = fn(tiny.model, tiny.tokenizer, texts, **opts)
        assert again.error[1] is None  # the hook is gone


def test_score_texts_of_an_empty_series(tiny):
    out = tasks.score_texts(tiny.model, tiny.tokenizer, pd.Series([], dtype=object))
    assert len(out) == 0 and list(out.columns) == [f.split()[0] for f in tasks.SCHEMAS["score"].split(", ")]


def test_embed_texts_equals_mean_pooled_embeddings_and_truncates_to_the_first_tokens(tiny):
    texts = pd.Series(mixed_texts())
    out = tasks.embed_texts(tiny.model, tiny.tokenizer, texts, token_budget=64, max_rows=3)
    for text, row in zip(texts, out.itertuples()):
        if row.error is not None:
            continue
        ids = torch.tensor([tiny.tokenizer.encode(text)[:BLOCK]])
        want = mean_pooled_embeddings(tiny.model, ids)[0].numpy()
        assert row.embedding.dtype == np.float32 and row.embedding.shape == (32,)
        np.testing.assert_allclose(row.embedding, want, atol=1e-5)
        assert row.truncated == (len(text) > BLOCK) and row.n_tokens == min(len(text), BLOCK)


# ----------------------------------------------------------------------------------------- generation


def test_generate_texts_equals_model_generate_one_prompt_at_a_time(tiny):
    tok = tiny.tokenizer
    prompts = pd.Series(["First", "Cit", "We are", "First", "You", "a" * 40, "Speak, speak."])
    for temperature, top_k, top_p in [(0.0, None, None), (1.0, None, None), (0.8, 5, 0.9)]:
        out = tasks.generate_texts(
            tiny.model,
            tok,
            prompts,
            max_new_tokens=12,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=7,
            token_budget=200,
            max_rows=3,
        )
        for prompt, row in zip(prompts, out.itertuples()):
            ids = torch.tensor([([tok.eos_id] + tok.encode(prompt))[-BLOCK:]])
            want = tiny.model.generate(
                ids, 12, temperature=temperature, top_k=top_k, top_p=top_p, seed=7, eos_id=tok.eos_id
            )[0, ids.size(1) :].tolist()
            stop = want.index(tok.eos_id) if tok.eos_id in want else len(want)
            assert row.generated == tok.decode(want[:stop]), (temperature, prompt)
            assert row.n_new_tokens == stop
            assert row.finish_reason == ("eos" if stop < len(want) else "length")
            assert row.truncated == (len(prompt) + 1 > BLOCK)


def test_generation_past_block_size_and_kv_cache_match_recompute(tiny):
    ids = torch.tensor([[tiny.tokenizer.eos_id] + tiny.tokenizer.encode("First Citizen")])
    got = model_scoring.decode_batch(tiny.model, ids, 40, temperature=0.0)
    want = tiny.model.generate(ids, 40, temperature=0.0, use_cache=False)
    assert got.tolist() == want.tolist() and got.size(1) == ids.size(1) + 40  # crosses block_size=32


def test_generation_stops_at_eos(tiny):
    m = copy.deepcopy(tiny.model)
    eos = tiny.tokenizer.eos_id
    with torch.no_grad():  # final hidden state = the EOS embedding: greedy decoding emits EOS at once
        m.transformer.ln_f.weight.zero_()
        m.transformer.ln_f.bias.copy_(m.lm_head.weight[eos] * 100)
    out = tasks.generate_texts(m, tiny.tokenizer, pd.Series(["First", "We"]), max_new_tokens=5, temperature=0.0)
    assert out.generated.tolist() == ["", ""] and out.finish_reason.tolist() == ["eos", "eos"]
    assert out.n_new_tokens.tolist() == [0, 0]


# ----------------------------------------------------------------------------------------- cache


def test_model_cache_loads_once_per_artifact_and_writes_a_marker(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ha, hb = save_tiny_artifact(a, seed=1), save_tiny_artifact(b, seed=2)
    logs = tmp_path / "loads"
    before = model_cache.LOAD_COUNT
    first = model_cache.load_model_cached(str(a), load_log_dir=str(logs))
    assert model_cache.load_model_cached(str(a), expected_hash=ha, load_log_dir=str(logs)) is first
    assert model_cache.LOAD_COUNT == before + 1
    assert model_cache.load_model_cached(str(b), load_log_dir=str(logs)).hash == hb
    assert model_cache.LOAD_COUNT == before + 2
    markers = [json.loads(p.read_text()) for p in sorted(logs.iterdir())]
    assert sorted(m["hash"] for m in markers) == sorted([ha, hb])
    with pytest.raises(ArtifactIntegrityError, match="job started with"):
        model_cache.load_model_cached(str(a), expected_hash=hb)


def test_load_marker_folder_from_the_environment(tmp_path, monkeypatch):
    save_tiny_artifact(tmp_path / "m", seed=4)
    monkeypatch.setenv(model_cache.LOAD_LOG_ENV, str(tmp_path / "env_loads"))
    model_cache.load_model_cached(str(tmp_path / "m"))
    (marker,) = (tmp_path / "env_loads").iterdir()
    assert json.loads(marker.read_text())["path"] == str(tmp_path / "m")


def test_make_predict_fn_outside_spark_uses_the_cache(tmp_path):
    path = tmp_path / "m"
    save_tiny_artifact(path, seed=3)
    predict = inference.make_predict_fn(str(path), "score", {"token_budget": 64})
    before = model_cache.LOAD_COUNT
    again = inference.make_predict_fn(str(path), "score", {"token_budget": 64})
    assert model_cache.LOAD_COUNT == before
    texts = pd.Series(["First", None])
    pd.testing.assert_frame_equal(predict(texts), again(texts))


@pytest.mark.parametrize(
    "addresses, cuda, expected",
    [
        (["0"], True, "cuda:0"),
        (["3", "4"], True, "cuda:3"),
        (["0"], False, "cpu"),
        ([], True, "cpu"),
        (None, False, "cpu"),
    ],
)
def test_choose_device(addresses, cuda, expected):
    assert model_cache.choose_device(addresses, cuda) == expected


def test_udf_factories_reject_unknown_options():
    with pytest.raises(TypeError, match=r"unknown score options \['temperature'\]"):
        inference.make_score_udf("unused", temperature=0.5)
    with pytest.raises(ValueError, match="task must be one of"):
        inference.make_task_udf("classify", "unused")


# ----------------------------------------------------------------------------------------- MERGE retry


def test_retry_on_conflict_retries_only_delta_conflicts():
    from delta.exceptions import ConcurrentAppendException

    from jobs.common.delta_io import retry_on_conflict

    def failing(errors):
        def write():
            if errors:
                raise errors.pop(0)
            return "ok"

        return write

    conflict = ConcurrentAppendException("Files were added to the root of the table by a concurrent update")
    assert retry_on_conflict(failing([conflict])) == ("ok", 1)
    with pytest.raises(ConcurrentAppendException):  # a second conflict is the run's failure
        retry_on_conflict(failing([conflict, conflict]))
    with pytest.raises(ValueError, match="not a conflict"):  # anything else is never retried
        retry_on_conflict(failing([ValueError("not a conflict"), conflict]))


def test_inference_never_imports_the_trainer(tmp_path):
    """Scoring a table (UDFs, cores, cache, artifact loading, the service) needs no training code: a fresh
    interpreter that imports every inference module and scores with a saved artifact has not imported
    ``model.train``, nor the plotting it brings (matplotlib)."""
    import subprocess
    import sys
    from pathlib import Path

    save_tiny_artifact(tmp_path / "m")
    code = (
        "import sys, pandas as pd\n"
        "import udfs.inference, udfs.tasks, udfs.model_cache, udfs.service, jobs.score, jobs.nightly_score\n"
        f"art = udfs.model_cache.load_model_cached({str(tmp_path / 'm')!r})\n"
        "out = udfs.tasks.score_texts(art.model, art.tokenizer, pd.Series(['First Citizen: we are accounted poor']))\n"
        "assert out['error'].isna().all(), out\n"
        "print(sorted(m for m in sys.modules if m in ('model.train', 'model.run_log') or m.startswith('matplotlib')))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout
