"""udfs/eval_tasks.py (task lines -> requests, quarantine reasons, metrics) and udfs/tasks.loglikelihood_pairs
(lm-eval-style continuation log-likelihood) against a direct torch computation on the tiny model. No JVM."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import DATA
from tests.tiny_model import BLOCK
from udfs import eval_tasks as E
from udfs import tasks

TASK_DIR = DATA / "eval_tasks"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"query": "Q", "choices": ["a", "b"], "gold": 1', "task_bad_json"),
        ('["query", "choices"]', "task_not_object"),
        ('{"question": "Q", "answer": "a"}', "task_unknown_layout"),
        ('{"query": "Q", "choices": "ab", "gold": 0}', "task_bad_type"),
        ('{"query": "Q", "choices": ["a", "b"]}', "task_bad_type"),  # gold missing
        ('{"query": "Q", "choices": ["a", "b"], "gold": true}', "task_bad_type"),
        ('{"query": "Q", "choices": ["a", "b"], "gold": "1"}', "task_bad_type"),
        ('{"query": "Q", "choices": [], "gold": 0}', "task_empty_choices"),
        ('{"query": "Q", "choices": ["a", ""], "gold": 0}', "task_empty_text"),
        ('{"query": "Q", "choices": ["a", "b"], "gold": 2}', "task_gold_out_of_range"),
        ('{"query": "Q", "choices": ["a", "b"], "gold": -1}', "task_gold_out_of_range"),
        ('{"context_options": ["A", "B"], "continuation": "c", "gold": 5}', "task_gold_out_of_range"),
        ('{"context_options": [], "continuation": "c", "gold": 0}', "task_empty_choices"),
        ('{"context_options": ["A", "B"], "continuation": 3, "gold": 0}', "task_bad_type"),
        ('{"context": "some text", "continuation": ""}', "task_empty_text"),
        ('{"context": null, "continuation": "word"}', "task_bad_type"),
    ],
)
def test_parse_task_line_quarantines_with_exact_reason(line, reason):
    item, got, detail = E.parse_task_line(line)
    assert item is None
    assert got == reason
    assert got in E.REASONS and detail


def test_multiple_choice_joins_query_and_choice_with_one_space():
    item, reason, _ = E.parse_task_line('{"query": "Question: x?\\n", "choices": ["yes", "no way"], "gold": 1}')
    assert reason is None and item.kind == E.MULTIPLE_CHOICE and item.gold == 1
    assert item.pairs == (("Question: x?\n", " yes"), ("Question: x?\n", " no way"))
    assert item.norm_chars == (3, 6)  # lm-eval's completion_len: the choice's characters, no delimiter


def test_schema_scores_the_shared_continuation_after_each_option():
    line = '{"context_options": ["The cat", "The dogs"], "continuation": "ran.", "gold": 0}'
    item, _, _ = E.parse_task_line(line)
    assert item.kind == E.SCHEMA
    assert item.pairs == (("The cat", " ran."), ("The dogs", " ran."))
    assert item.norm_chars == (7, 8)


@pytest.mark.parametrize(
    "context, continuation, scored",
    [
        ("I don't care about", "signs", " signs"),  # the file's layout: lm-eval scores " signs"
        ("I don't care about", " signs", " signs"),  # lm-eval's own layout: not doubled
        ("I don't care about ", "signs", "signs"),  # the context's space already separates them
    ],
)
def test_language_modelling_continuation_is_scored_after_one_space(context, continuation, scored):
    item, _, _ = E.parse_task_line(json.dumps({"context": context, "continuation": continuation}))
    assert item.kind == E.LANGUAGE_MODELING and item.gold is None
    assert item.pairs == ((context, scored),)


def test_build_requests_on_the_bundled_slices():
    kinds = {"piqa": E.MULTIPLE_CHOICE, "arc_easy": E.MULTIPLE_CHOICE, "winograd_wsc": E.SCHEMA}
    kinds["lambada_openai_small"] = E.LANGUAGE_MODELING
    for task, kind in kinds.items():
        lines = (TASK_DIR / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()
        docs = [json.loads(x) for x in lines]
        req, bad = E.build_requests(task, pd.Series(lines))
        assert bad.empty
        assert set(req["kind"]) == {kind} and set(req["task"]) == {task}
        n_choices = [len(d.get("choices", d.get("context_options", [None]))) for d in docs]
        assert len(req) == sum(n_choices)
        assert req.groupby("item_id")["choice_index"].apply(list).tolist() == [list(range(n)) for n in n_choices]
        assert req["continuation"].str.startswith(" ").all()
        if kind == E.MULTIPLE_CHOICE:
            first = req[req.item_id == 0]
            assert first["context"].tolist() == [docs[0]["query"]] * n_choices[0]
            assert first["continuation"].tolist() == [" " + c for c in docs[0]["choices"]]
            assert first["gold"].tolist() == [docs[0]["gold"]] * n_choices[0]


def test_build_requests_puts_every_line_in_exactly_one_place():
    lines = pd.Series(
        [
            '{"query": "Q", "choices": ["a", "b"], "gold": 0}',
            "not json",
            "",
            '{"query": "Q", "choices": ["a", "b"], "gold": 7}',
            '{"context": "c", "continuation": "w"}',
        ]
    )
    req, bad = E.build_requests("t", lines)
    assert sorted(req["item_id"].unique()) == [0, 4]
    assert bad[["item_id", "reason"]].values.tolist() == [[1, "task_bad_json"], [3, "task_gold_out_of_range"]]
    assert bad["raw"].tolist() == ["not json", lines[3]]  # the blank line 2 is not an item


# ----------------------------------------------------------------------------------------- metrics


def _scored(rows):
    """Requests with scores: rows of (item_id, kind, choice, gold, n_choices, norm_chars, loglik, greedy, error)."""
    cols = ["item_id", "kind", "choice_index", "gold", "n_choices", "norm_chars", "sum_logprob", "is_greedy", "error"]
    df = pd.DataFrame(rows, columns=cols)
    df.insert(0, "task", "t")
    df["token_logprobs"] = [[v] if v is not None else None for v in df["sum_logprob"]]
    df["n_tokens"] = [1 if v is not None else None for v in df["sum_logprob"]]
    return df


def test_item_and_task_metrics_follow_lm_eval_acc_and_acc_norm():
    mc = E.MULTIPLE_CHOICE
    scored = _scored(
        [
            # item 0: choice 1 wins on sum (-2 > -3), choice 0 on per-char (-3/10 > -2/2): acc right, acc_norm wrong
            (0, mc, 0, 1, 2, 10, -3.0, False, None),
            (0, mc, 1, 1, 2, 2, -2.0, False, None),
            # item 1: choice 0 wins both; gold 0
            (1, mc, 0, 0, 2, 5, -1.0, False, None),
            (1, mc, 1, 0, 2, 5, -4.0, False, None),
            # item 2: one request failed in the model: an error, left out of accuracy
            (2, mc, 0, 0, 2, 5, -1.0, False, None),
            (2, mc, 1, 0, 2, 5, None, None, "model_failed: RuntimeError: boom"),
        ]
    )
    items = E.item_metrics(scored.sample(frac=1.0, random_state=0))  # any row order
    assert items["item_id"].tolist() == [0, 1, 2]
    assert items["loglik"].tolist()[0] == [-3.0, -2.0]
    assert items["prediction"].tolist()[:2] == [1, 0]
    assert items["prediction_norm"].tolist()[:2] == [0, 0]
    assert items["correct"].tolist()[:2] == [True, True]
    assert items["correct_norm"].tolist()[:2] == [False, True]
    assert items["error"].tolist()[2] == "model_failed: RuntimeError: boom"
    assert pd.isna(items["correct"].iloc[2])
    t = E.task_metrics(items).iloc[0]
    assert (t.acc, t.acc_norm, t.n_items, t.n_errors) == (1.0, 0.5, 3, 1)
    assert t.random_baseline == 0.5 and t.acc_centered == 1.0


def test_language_modelling_accuracy_is_the_greedy_match_with_random_zero():
    lm = E.LANGUAGE_MODELING
    scored = _scored([(i, lm, 0, None, 1, 4, -1.0, g, None) for i, g in enumerate([True, False, False, True])])
    items = E.item_metrics(scored)
    assert items["correct"].tolist() == [True, False, False, True]
    assert items["prediction"].isna().all()
    t = E.task_metrics(items).iloc[0]
    assert (t.acc, t.random_baseline, t.acc_centered) == (0.5, 0.0, 0.5)


def test_centered_accuracy_and_core_mean():
    assert E.centered(0.25, 0.25) == 0.0 and E.centered(1.0, 0.25) == 1.0
    assert E.centered(0.625, 0.25) == pytest.approx(0.5)
    frame = pd.DataFrame({"acc_centered": [0.5, 0.1, float("nan")]})
    assert E.core_centered_mean(frame) == pytest.approx(0.3)


# ----------------------------------------------------------------------------------------- loglikelihood_pairs


def _direct(art, context: str, continuation: str):
    """Plain torch, one pair: lm-eval's split, prefix only for an empty context, left truncation."""
    tok, model = art.tokenizer, art.model
    if context == "":
        ctx, cont = [tok.prefix_id], tok.encode(continuation)
    else:
        stripped = context.rstrip()
        continuation = context[len(stripped) :] + continuation
        ctx = tok.encode(stripped)
        cont = tok.encode(stripped + continuation)[len(ctx) :]
    seq = (ctx + cont)[-(BLOCK + 1) :]
    with torch.no_grad():
        logits, _ = model(torch.tensor([seq[:-1]]))
    logp = torch.log_softmax(logits[0].double(), dim=-1)  # (T, V)
    first = len(seq) - 1 - len(cont)  # position predicting the first continuation token
    lp = [float(logp[first + i, t]) for i, t in enumerate(cont)]
    greedy = all(int(logp[first + i].argmax()) == t for i, t in enumerate(cont))
    return lp, greedy, len(ctx) + len(cont) > BLOCK + 1


PAIRS = [
    ("Citizen:\nBefore we", " proceed"),
    ("Speak, ", "speak."),  # the trailing space moves to the continuation
    ("", "You are all resolved"),  # empty context: scored after the prefix (EOS)
    ("We are accounted poor citizens, the patricians good. What authority surfeits on", " us"),  # truncated
    ("A", " b"),
]


def test_loglikelihood_pairs_equals_direct_torch(tiny):
    ctxs, conts = pd.Series([p[0] for p in PAIRS]), pd.Series([p[1] for p in PAIRS])
    got = tasks.loglikelihood_pairs(tiny.model, tiny.tokenizer, ctxs, conts, token_budget=64, max_rows=2)
    assert got["error"].isna().all()
    for r, (ctx, cont) in enumerate(PAIRS):
        lp, greedy, truncated = _direct(tiny, ctx, cont)
        np.testing.assert_allclose(got[tasks.TOKEN_LOGPROBS].iloc[r], lp, atol=1e-5)
        assert got["sum_logprob"].iloc[r] == pytest.approx(sum(lp), abs=1e-4)
        assert got["n_tokens"].iloc[r] == len(lp)
        assert bool(got[tasks.IS_GREEDY].iloc[r]) == greedy
        assert bool(got["truncated"].iloc[r]) == truncated
    assert got["truncated"].tolist() == [False, False, False, True, False]


def test_only_the_continuation_tokens_are_scored(tiny):
    tok, model = tiny.tokenizer, tiny.model
    got = tasks.loglikelihood_pairs(model, tok, pd.Series(["First Citizen"]), pd.Series([":\nBefore"]))
    ids = tok.encode("First Citizen:\nBefore")
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:-1]]))
    every = torch.log_softmax(logits[0].double(), -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]  # (T-1,)
    k = len(":\nBefore")  # char-level: one token per character of the continuation
    assert got["n_tokens"].iloc[0] == k
    assert got["sum_logprob"].iloc[0] == pytest.approx(float(every[-k:].sum()), abs=1e-4)
    assert got["sum_logprob"].iloc[0] - float(every.sum()) > 1.0  # the context's tokens are not in the sum


def test_is_greedy_is_true_for_the_argmax_continuation(tiny):
    tok, model = tiny.tokenizer, tiny.model
    ctx = "First Citizen"
    with torch.no_grad():
        logits, _ = model(torch.tensor([tok.encode(ctx)]))
    order = logits[0, -1].argsort(descending=True).tolist()
    best, other = tok.decode([order[0]]), tok.decode([order[1]])
    got = tasks.loglikelihood_pairs(model, tok, pd.Series([ctx, ctx]), pd.Series([best, other]))
    assert got[tasks.IS_GREEDY].tolist() == [True, False]


def test_batching_does_not_change_results(tiny):
    ctxs = pd.Series([p[0] for p in PAIRS] * 3)
    conts = pd.Series([p[1] for p in PAIRS] * 3)
    one = tasks.loglikelihood_pairs(tiny.model, tiny.tokenizer, ctxs, conts, max_rows=1)
    many = tasks.loglikelihood_pairs(tiny.model, tiny.tokenizer, ctxs, conts, token_budget=10_000, max_rows=None)
    np.testing.assert_allclose(one["sum_logprob"], many["sum_logprob"], atol=1e-5)
    assert one[tasks.IS_GREEDY].tolist() == many[tasks.IS_GREEDY].tolist()


def test_loglikelihood_pairs_reports_bad_rows_per_row(tiny):
    ctxs = pd.Series(["First", None, "First", "   ", "First", "First"], index=[10, 11, 12, 13, 14, 15])
    conts = pd.Series([" Citizen", " x", " caf\u00e9 \u2603", "word", "a" * (BLOCK + 1), "   "], index=ctxs.index)
    got = tasks.loglikelihood_pairs(tiny.model, tiny.tokenizer, ctxs, conts)
    assert got.index.tolist() == ctxs.index.tolist()
    errors = got["error"].tolist()
    assert errors[0] is None and errors[1] == "null_text"
    assert errors[2].startswith("encode_failed: ")
    assert errors[3] == "no_context"  # an all-whitespace context leaves no token before the continuation
    assert errors[4] == f"continuation_too_long: {BLOCK + 1} tokens > block_size {BLOCK}"
    assert errors[5] is None  # whitespace is a continuation like any other
    assert got["sum_logprob"].isna().tolist() == [False, True, True, True, True, False]


# ------------------------------------------------------------------------- shared contexts (packed rows)


def _native_models():
    from model.config import GPTConfig
    from model.gpt import GPT
    from model.hf_gpt2 import HFGPT2, HFGPT2Config
    from model.hf_llama import HFLlama, HFLlamaConfig

    torch.manual_seed(0)
    llama = HFLlamaConfig(
        "llama", vocab_size=50, block_size=BLOCK, n_layer=2, n_head=4, n_kv_head=2, n_embd=16, head_dim=4,
        intermediate_size=32,
    )  # fmt: skip
    return {
        "gpt": GPT(GPTConfig(vocab_size=50, n_layer=2, n_head=2, n_embd=32, block_size=BLOCK)).eval(),
        "gpt2": HFGPT2(HFGPT2Config(vocab_size=50, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, n_inner=64)),
        "llama": HFLlama(llama).eval(),
    }


def _shared_context_pairs(rng) -> list:
    """Multiple-choice-like pairs: contexts with 1-6 continuations, one pack too long for one block, truncation."""
    pairs = []
    for n_choices, ctx_len in ((4, 9), (2, 3), (1, 7), (6, 12), (3, 1), (2, 25)):
        ctx = rng.integers(2, 50, ctx_len).tolist()
        for _ in range(n_choices):
            pairs.append((ctx, rng.integers(2, 50, int(rng.integers(1, 6))).tolist()))
    pairs.append((pairs[-1][0], rng.integers(2, 50, 10).tolist()))  # 25 + 10 > BLOCK + 1: truncated, scored alone
    order = rng.permutation(len(pairs))  # choices of one item need not be adjacent
    return [pairs[i] for i in order]


@pytest.mark.parametrize("name", ["gpt", "gpt2", "llama"])
def test_shared_context_packing_equals_one_row_at_a_time(name):
    model = _native_models()[name]
    pairs = _shared_context_pairs(np.random.default_rng(1))
    read = {"packed": 0, "plain": 0}
    plain_hidden, packed_hidden = model.hidden_states, model.packed_hidden_states

    def counting_plain(idx, *a, **k):
        read["plain"] += idx.numel()
        return plain_hidden(idx, *a, **k)

    def counting_packed(idx, pos, mask):
        read["packed"] += idx.numel()
        return packed_hidden(idx, pos, mask)

    model.hidden_states, model.packed_hidden_states = counting_plain, counting_packed
    alone = tasks.loglikelihood_token_pairs(model, 0, pairs, max_rows=1, share_context=False)
    unshared = dict(read)
    read.update(packed=0, plain=0)
    tasks.loglikelihood_token_pairs(model, 0, pairs, max_rows=1)  # one row per call: no padding in the count
    shared = dict(read)
    packed = tasks.loglikelihood_token_pairs(model, 0, pairs, token_budget=200, max_rows=None)
    assert packed["error"].isna().all() and alone["error"].isna().all()
    for a, b in zip(packed[tasks.TOKEN_LOGPROBS], alone[tasks.TOKEN_LOGPROBS]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert packed[tasks.IS_GREEDY].tolist() == alone[tasks.IS_GREEDY].tolist()
    assert packed["truncated"].tolist() == alone["truncated"].tolist() and packed["truncated"].sum() == 1
    assert packed["n_tokens"].tolist() == [len(k) for _, k in pairs]
    assert unshared["packed"] == 0 and shared["packed"] > 0  # packs were used, and they read fewer tokens
    assert shared["packed"] + shared["plain"] < 0.75 * unshared["plain"], (shared, unshared)


def test_packed_attention_mask_keeps_each_choice_to_the_context_and_itself():
    from model.scoring import packed_attention_mask

    seg = torch.tensor([[0, 0, 1, 1, 2, -1]])
    m = packed_attention_mask(seg)[0].int().tolist()
    assert m[3] == [1, 1, 1, 1, 0, 0]  # choice 1, second token: context + itself, causally
    assert m[4] == [1, 1, 0, 0, 1, 0]  # choice 2 never reads choice 1
    assert m[5] == [0, 0, 0, 0, 0, 1]  # padding reads only itself; no real token reads it
    assert [row[5] for row in m[:5]] == [0] * 5


def test_a_failing_pack_fails_only_its_own_rows(tiny, monkeypatch):
    ctx, other = tiny.tokenizer.encode("First Citizen"), tiny.tokenizer.encode("Before we")
    pairs = [(ctx, [3]), (ctx, [4, 5]), (other, [6])]
    model = tiny.model

    def broken(*a, **k):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "packed_hidden_states", broken, raising=False)
    got = tasks.loglikelihood_token_pairs(model, 0, pairs)
    assert got["error"].tolist()[:2] == ["model_failed: RuntimeError: out of memory"] * 2
    assert got["error"].iloc[2] is None and not np.isnan(got["sum_logprob"].iloc[2])
