"""lakelm as an lm-eval-harness model: its three request types against the harness's own ``hf`` model on the
same weights (our tiny artifact exported to the Hugging Face layout), and the harness CLI run through
``python -m udfs.lm_eval_adapter`` on one of our task files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import DATA, REPO
from tests.tiny_model import corpus_text, save_tiny_artifact

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(our artifact, its Hugging Face export, the lakelm harness model, the harness's hf model)."""
    from lm_eval.models.huggingface import HFLM

    from jobs.export import main as export
    from udfs.lm_eval_adapter import register

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("harness")
    art = root / "tiny"
    save_tiny_artifact(art, seed=5)
    assert export(["--model", str(art), "--format", "hf", "--output", str(root / "hf")]) == 0
    ours = register()(path=str(art), token_budget=256)
    theirs = HFLM(pretrained=str(root / "hf"), dtype="float32", device="cpu", batch_size=4)
    return art, root / "hf", ours, theirs


def _requests(kind: str, args: list[tuple]):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def test_loglikelihood_and_rolling_equal_the_harness_hf_model(models):
    _, _, ours, theirs = models
    text = corpus_text()
    pairs = [(text[:40], text[40:47]), (text[100:103] + " ", text[103:130]), ("", text[:9])]
    pairs.append((text[:200], text[200:205]))  # cut from the left to the last block + 1 tokens
    got = ours.loglikelihood(_requests("loglikelihood", pairs))
    want = theirs.loglikelihood(_requests("loglikelihood", pairs))
    assert [g for _, g in got] == [g for _, g in want]
    assert [s for s, _ in got] == pytest.approx([s for s, _ in want], abs=1e-4)
    docs = [(text[:20],), (text[:95],), (text[300:700],)]  # one window, and several (block 32)
    got = ours.loglikelihood_rolling(_requests("loglikelihood_rolling", docs))
    want = theirs.loglikelihood_rolling(_requests("loglikelihood_rolling", docs))
    assert got == pytest.approx(want, abs=1e-4) and got[2] < got[1] < got[0] < 0


def test_generate_until_is_greedy_and_stops_at_the_stop_string(models):
    import pandas as pd

    from model.loading import load_model
    from udfs.tasks import generate_texts

    art, _, ours, _ = models
    loaded = load_model(art)
    prompt = corpus_text()[:15]
    full = generate_texts(loaded.model, loaded.tokenizer, pd.Series([prompt]), max_new_tokens=12, temperature=0.0)
    full = full["generated"].iloc[0]
    assert len(full) > 3
    stop = full[3:5]
    got = ours.generate_until(
        _requests("generate_until", [(prompt, {"until": [stop], "max_gen_toks": 12}), (prompt, {"max_gen_toks": 12})])
    )
    assert got == [full[: full.find(stop)], full]
    with pytest.raises(ValueError, match="greedily"):
        ours.generate_until(_requests("generate_until", [(prompt, {"do_sample": True, "temperature": 0.7})]))


def test_harness_cli_runs_our_task_file_on_our_artifact(tmp_path):
    from udfs.lm_eval_adapter import write_harness_tasks

    text = "".join(json.loads(line)["query"] for line in (DATA / "eval_tasks" / "copa.jsonl").read_text().splitlines())
    vocab = text + "".join(
        c for line in (DATA / "eval_tasks" / "copa.jsonl").read_text().splitlines() for c in json.loads(line)["choices"]
    )
    from model.artifact import save_artifact
    from model.config import GPTConfig
    from model.gpt import GPT
    from model.tokenizer import char_level_tokenizer

    tok = char_level_tokenizer(corpus_text() + vocab)  # every character of the task known
    torch.manual_seed(1)
    model = tmp_path / "copa_model"
    cfg = GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=128)  # fits every choice
    save_artifact(model, GPT(cfg), tok, lineage={"model_name": "tiny-copa"})
    write_harness_tasks({"copa_local": DATA / "eval_tasks" / "copa.jsonl"}, tmp_path / "tasks")
    proc = subprocess.run(
        [sys.executable, "-m", "udfs.lm_eval_adapter", "--model", "lakelm", "--model_args", f"path={model}"]
        + ["--tasks", "copa_local", "--include_path", str(tmp_path / "tasks"), "--output_path", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert 0.0 <= results["results"]["copa_local"]["acc,none"] <= 1.0
    assert results["n-samples"]["copa_local"]["effective"] == 12
