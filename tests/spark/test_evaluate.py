"""jobs/evaluate.py on a local session: the bundled task slices (tests/data/eval_tasks) scored zero-shot by
the tiny model, malformed lines quarantined, items in = scored + quarantined, per-task accuracies equal to
those recomputed from the items table."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from jobs import evaluate
from jobs.common.runs import read_runs
from tests.conftest import DATA
from udfs import eval_tasks as E
from udfs import tasks

pytestmark = pytest.mark.spark

SLICES = DATA / "eval_tasks"
TASKS = ["piqa", "arc_easy", "copa", "winograd_wsc", "lambada_openai_small"]
BAD_PIQA = '{"query": "Question: x?\\n", "choices": ["a", "b"], "gold": 2}'
BAD_COPA = '{"query": "broken'


BLOCK = 256  # the slices' longest continuation is 249 characters; longer contexts are cut from the left


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """(path, loaded Artifact): a tiny random GPT (block 256) whose char vocabulary covers the slices."""
    import torch

    from model.artifact import load_artifact, save_artifact
    from model.config import GPTConfig
    from model.gpt import GPT
    from model.tokenizer import char_level_tokenizer

    torch.set_num_threads(1)
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(SLICES.glob("*.jsonl")))
    tok = char_level_tokenizer("".join(v for line in text.splitlines() for v in _strings(json.loads(line))))
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=BLOCK)
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_artifact(path, GPT(cfg), tok, lineage={"model_name": "tiny-eval", "data": "lake/tokens", "data_version": 3})
    return str(path), load_artifact(path)


def _strings(doc) -> list[str]:
    vals = [doc.get("query", ""), doc.get("context", ""), doc.get("continuation", "")]
    return vals + doc.get("choices", []) + doc.get("context_options", [])


def _task_dir(tmp_path):
    """A copy of the slices with one malformed line added to piqa (gold out of range) and one to copa (bad JSON)."""
    out = tmp_path / "eval_tasks"
    shutil.copytree(SLICES, out)
    for name, bad in (("piqa", BAD_PIQA), ("copa", BAD_COPA)):
        with open(out / f"{name}.jsonl", "a", encoding="utf-8") as f:
            f.write(bad + "\n")
    return out


def _args(tmp_path, model, task_dir, *extra):
    return [
        "--model",
        model,
        "--tasks",
        ",".join(TASKS),
        "--task-dir",
        str(task_dir),
        "--output",
        str(tmp_path / "evals"),
        "--lake",
        str(tmp_path),
        "--token-budget",
        "256",
        *extra,
    ]


def test_evaluate_job_accounts_for_every_item_and_its_metrics_match_the_items(spark, tmp_path, artifact, capsys):
    path, art = artifact
    task_dir = _task_dir(tmp_path)
    assert evaluate.main(_args(tmp_path, path, task_dir)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    lines = {t: (task_dir / f"{t}.jsonl").read_text(encoding="utf-8").splitlines() for t in TASKS}
    n_in = sum(len(v) for v in lines.values())
    run = read_runs(spark, str(tmp_path / "runs"), job="evaluate").first()
    assert run.status == "succeeded"
    assert run.counts["read"] == n_in == run.counts["scored"] + run.counts["quarantined"]
    assert run.counts["quarantined"] == 2
    assert run.counts["quarantined_task_gold_out_of_range"] == 1 and run.counts["quarantined_task_bad_json"] == 1

    quarantine = spark.read.format("delta").load(str(tmp_path / "quarantine")).toPandas()
    assert sorted(zip(quarantine.source, quarantine.reason, quarantine.raw)) == [
        ("copa", "task_bad_json", BAD_COPA),
        ("piqa", "task_gold_out_of_range", BAD_PIQA),
    ]
    assert set(quarantine.job) == {"evaluate"} and set(quarantine.run_id) == {run.run_id}

    items = spark.read.format("delta").load(str(tmp_path / "evals" / "items")).toPandas()
    assert len(items) == run.counts["scored"]
    assert items.groupby("task").size().to_dict() == {t: len(v) - (t in ("piqa", "copa")) for t, v in lines.items()}
    assert items.error.isna().all()  # every character is in the vocabulary, every continuation fits: nothing fails
    assert set(items.run_id) == {run.run_id} and items.model_hash.nunique() == 1

    # the item's per-choice log-likelihoods are the core's, on the driver
    first = items[(items.task == "piqa") & (items.item_id == 0)].iloc[0]
    req, _ = E.build_requests("piqa", pd.Series(lines["piqa"][:1]))
    want = tasks.loglikelihood_pairs(art.model, art.tokenizer, req.context, req.continuation)
    np.testing.assert_allclose(list(first.loglik), want.sum_logprob, atol=1e-4)
    assert [len(t) for t in first.token_logprobs] == want.n_tokens.tolist()
    assert first.prediction == int(np.argmax(first.loglik)) and first.correct == (first.prediction == first.gold)

    per_task = spark.read.format("delta").load(str(tmp_path / "evals" / "tasks")).toPandas().set_index("task")
    assert sorted(per_task.index) == sorted(TASKS)
    for task, g in items.groupby("task"):
        row = per_task.loc[task]
        assert 0.0 <= row.acc <= 1.0 and 0.0 <= row.acc_norm <= 1.0
        assert row.acc == pytest.approx(g.correct.astype(float).mean())
        assert row.acc_norm == pytest.approx(g.correct_norm.astype(float).mean())
        rnd = 0.0 if task == "lambada_openai_small" else float((1.0 / g.n_choices).mean())
        assert row.acc_centered == pytest.approx((row.acc - rnd) / (1 - rnd))
        assert (row.n_items, row.n_errors) == (len(g), 0)
        assert row.model_hash == first.model_hash and row.model_name == "tiny-eval"
        assert (row.token_table, row.token_table_version) == ("lake/tokens", 3) and pd.isna(row.gold_version)
    assert per_task.loc["piqa"].n_quarantined == 1 and per_task.loc["arc_easy"].n_quarantined == 0
    assert per_task.loc["lambada_openai_small"].random_baseline == 0.0
    assert summary["core_centered_mean"] == pytest.approx(per_task.acc_centered.mean())
    assert summary["read"] == n_in and summary["tasks"]["piqa"]["n_items"] == 12


def test_evaluate_limit_and_usage_errors(spark, tmp_path, artifact):
    path, _ = artifact
    args = _args(tmp_path, path, SLICES, "--limit", "3")
    args[args.index("--tasks") + 1] = "copa,lambada_openai_small"
    assert evaluate.main(args) == 0
    items = spark.read.format("delta").load(str(tmp_path / "evals" / "items")).toPandas()
    assert items.groupby("task").item_id.apply(sorted).to_dict() == {
        "copa": [0, 1, 2],
        "lambada_openai_small": [0, 1, 2],
    }

    missing = _args(tmp_path, path, SLICES)
    missing[missing.index("--tasks") + 1] = "piqa,no_such_task"
    assert evaluate.main(missing) == 2
    assert evaluate.main(_args(tmp_path, path, SLICES, "--limit", "0")) == 2
    assert evaluate.main(_args(tmp_path, str(tmp_path / "no_model"), SLICES)) == 2
    assert read_runs(spark, str(tmp_path / "runs"), job="evaluate").count() == 1  # usage errors record no run


ALL_TASKS = sorted(p.stem for p in SLICES.glob("*.jsonl"))


@pytest.mark.parametrize("num_fewshot", [0, 2])
def test_items_and_accuracy_equal_lm_eval_harness(spark, tmp_path, artifact, monkeypatch, num_fewshot):
    """The artifact exported to the Hugging Face layout, run by lm-eval-harness's ``hf`` model on the same
    task files (`harness_task_config`, nothing downloaded), and jobs/evaluate.py on the artifact itself: per
    item and choice the same log-likelihood within 1e-3, the same per-task accuracy, zero- and few-shot."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from jobs import export
    from udfs.lm_eval_adapter import harness_task_config

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, _ = artifact
    hf = tmp_path / "hf"
    assert export.main(["--model", path, "--format", "hf", "--output", str(hf)]) == 0
    args = _args(tmp_path, path, SLICES, "--num-fewshot", str(num_fewshot))
    args[args.index("--tasks") + 1] = ",".join(ALL_TASKS)
    assert evaluate.main(args) == 0
    items = spark.read.format("delta").load(str(tmp_path / "evals" / "items")).toPandas()
    ours = {(r.task, int(r.item_id)): list(r.loglik) for r in items.itertuples()}
    per_task = spark.read.format("delta").load(str(tmp_path / "evals" / "tasks")).toPandas().set_index("task")

    out = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={hf},dtype=float32",
        tasks=[harness_task_config(t, SLICES / f"{t}.jsonl") for t in ALL_TASKS],
        num_fewshot=num_fewshot,
        batch_size=4,
        device="cpu",
        log_samples=True,
        task_manager=TaskManager(include_defaults=False),
        fewshot_random_seed=1234,
    )
    for task in ALL_TASKS:
        samples = out["samples"][task]
        assert len(samples) == sum(1 for k in ours if k[0] == task) > 0
        for s in samples:
            theirs = [float(r[0]) for r in s["filtered_resps"]]
            np.testing.assert_allclose(ours[(task, int(s["doc_id"]))], theirs, atol=1e-3, rtol=0)
        assert per_task.loc[task].acc == pytest.approx(out["results"][task]["acc,none"], abs=1e-12), task
        if "acc_norm,none" in out["results"][task]:
            assert per_task.loc[task].acc_norm == pytest.approx(out["results"][task]["acc_norm,none"], abs=1e-12)


def test_bits_per_byte_of_a_text_table_in_the_same_output(spark, tmp_path, artifact, capsys):
    """--bpb-table: the whole table's bits per byte (sum of nats / ln 2 / sum of UTF-8 bytes over the rows that
    scored), equal to the score core's own numbers; a null row is an error, left out of both sums."""
    import math

    path, art = artifact
    lines = (SLICES / "copa.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["query"] for line in lines] + [None]
    table = str(tmp_path / "texts")
    spark.createDataFrame([(t,) for t in texts], "body string").write.format("delta").save(table)
    args = _args(tmp_path, path, SLICES, "--bpb-table", table, "--bpb-column", "body")
    args[args.index("--tasks") + 1] = "copa"
    assert evaluate.main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = spark.read.format("delta").load(str(tmp_path / "evals" / "bpb")).first()
    want = tasks.score_texts(art.model, art.tokenizer, pd.Series(texts[:-1]))
    nats, n_bytes = -want.sum_logprob.sum(), sum(len(t.encode("utf-8")) for t in texts[:-1])
    assert (row.n_rows, row.n_scored, row.n_errors, row.n_bytes) == (len(texts), len(texts) - 1, 1, n_bytes)
    assert row.bits_per_byte == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-6)
    assert row.bpb_table_version == 0 and row.model_hash == summary["model_hash"]
    assert summary["bpb"]["bits_per_byte"] == pytest.approx(row.bits_per_byte)
    bad = _args(tmp_path, path, SLICES, "--bpb-table", table, "--bpb-column", "nope")
    bad[bad.index("--tasks") + 1] = "copa"
    assert evaluate.main(bad) == 2  # refused before anything is scored


def test_task_files_are_read_in_one_pass_each_in_its_own_line_order(spark, tmp_path):
    """``extract``: one read for all the files; a task may also be a folder of part files (as Spark writes)."""
    from jobs.transforms.eval_tables import EvaluateConfig, extract

    d = tmp_path / "tasks"
    d.mkdir()
    (d / "a.jsonl").write_text("".join(f'{{"line": "a{i}"}}\n' for i in range(50)), encoding="utf-8")
    (d / "b.jsonl").mkdir()
    (d / "b.jsonl" / "part-00000").write_text('{"line": "b0"}\n{"line": "b1"}\n', encoding="utf-8")
    (d / "b.jsonl" / "part-00001").write_text('{"line": "b2"}\n', encoding="utf-8")
    (d / "c.jsonl").write_text("", encoding="utf-8")
    cfg = EvaluateConfig(
        model="m", tasks="a,b,c", task_dir=str(d), output=str(tmp_path / "o"), quarantine=str(tmp_path / "q")
    )
    got = extract(spark, cfg)
    assert [json.loads(v)["line"] for v in got["a"]] == [f"a{i}" for i in range(50)]
    assert [json.loads(v)["line"] for v in got["b"]] == ["b0", "b1", "b2"]
    assert got["c"].empty and got["a"].index.tolist() == list(range(50))
