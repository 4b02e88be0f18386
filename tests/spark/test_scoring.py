"""Batch inference on a local session: the scoring UDFs (equal to plain PyTorch, row order, model loaded
once per Python worker) and the jobs (jobs/score.py, --stream, jobs/nightly_score.py)."""

from __future__ import annotations

import json
import threading
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from jobs import nightly_score, score
from jobs.common.runs import read_runs
from jobs.transforms import scoring_table
from tests.tiny_model import mixed_texts, save_tiny_artifact
from udfs import columns as C
from udfs import faults, inference, tasks

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """(path, hash, loaded Artifact) of the tiny random model, saved once for this module."""
    import torch

    from model.artifact import load_artifact

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("models") / "tiny"
    digest = save_tiny_artifact(path)
    return str(path), digest, load_artifact(path)


def _texts_frame(texts=None, prefix="d"):
    texts = mixed_texts() if texts is None else texts
    return pd.DataFrame({"doc_id": [f"{prefix}{i:03d}" for i in range(len(texts))], "text": texts})


def _write_input(spark, path, pdf, mode="overwrite"):
    spark.createDataFrame(pdf, "doc_id string, text string").write.format("delta").mode(mode).save(str(path))


def _expected_scores(art, texts) -> pd.DataFrame:
    """Plain PyTorch, one text at a time (the core with a single text is unbatched and unpadded)."""
    rows = [
        tasks.score_texts(art.model, art.tokenizer, pd.Series([t], dtype=object), max_rows=1).iloc[0] for t in texts
    ]
    return pd.DataFrame(rows).reset_index(drop=True)


def _ints(values) -> list[int | None]:
    return [None if pd.isna(v) else int(v) for v in values]


def _versions(spark, path) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{path}`").count()


def _job_args(tmp_path, model, *extra):
    return ["--lake", str(tmp_path), "--input", str(tmp_path / "gold"), "--model", model, *extra]


# ----------------------------------------------------------------------------------------- UDFs


def test_score_udf_equals_plain_pytorch_in_row_order(spark, artifact):
    path, digest, art = artifact
    pdf = _texts_frame()
    df = spark.createDataFrame(pdf, "doc_id string, text string")  # slices in order, one per task slot
    assert df.rdd.getNumPartitions() >= 2
    udf = inference.make_score_udf(path, expected_hash=digest, token_budget=64, max_rows=4)
    got = df.select("doc_id", "text", udf("text").alias("s")).select("doc_id", "text", "s.*").toPandas()
    assert got.doc_id.tolist() == pdf.doc_id.tolist()  # no shuffle: any reordering would be the UDF's
    want = _expected_scores(art, pdf.text)
    np.testing.assert_allclose(got.sum_logprob.astype(float), want.sum_logprob.astype(float), atol=1e-4)
    np.testing.assert_allclose(got.mean_nll.astype(float), want.mean_nll.astype(float), atol=1e-4)
    assert _ints(got.n_tokens) == _ints(want.n_tokens)
    errors = dict(zip(pdf.doc_id, got.error))
    assert errors["d006"] == "null_text" and errors["d016"] == "empty_text"
    assert errors["d009"].startswith("encode_failed: ")
    assert sum(e is None for e in errors.values()) == len(pdf) - 3
    assert got.loc[got.doc_id == "d002", "n_windows"].item() > 1  # 140 chars > block_size 32


def test_model_loads_at_most_once_per_python_worker(spark, tmp_path):
    path = tmp_path / "fresh"
    save_tiny_artifact(path, seed=11)  # a model no worker has cached yet
    logs = tmp_path / "loads"
    texts = (mixed_texts() * 8)[:120]
    df = spark.createDataFrame(_texts_frame(texts), "doc_id string, text string").repartition(6)
    udf = inference.make_score_udf(str(path), load_log_dir=str(logs), sub_batch_rows=3, token_budget=64)
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, "4")  # ~5 Arrow batches per partition, 6 partitions, 2 queries
    try:
        for _ in range(2):
            n = df.select(udf("text").alias("s")).filter("s.error IS NULL").count()
            assert n == sum(isinstance(t, str) and t != "" and "\u00e9" not in t for t in texts)
    finally:
        spark.conf.set(key, before)
    loads = Counter(json.loads(p.read_text())["pid"] for p in logs.iterdir())
    assert loads and max(loads.values()) == 1, loads  # ~60 batches: one load per worker
    assert sum(loads.values()) <= 4, loads  # 12 tasks ran in a few reused workers, not one load per task


# ----------------------------------------------------------------------------------------- jobs/score.py


def test_score_job_writes_lineage_and_a_rerun_is_a_no_op(spark, tmp_path, artifact):
    path, digest, art = artifact
    pdf = _texts_frame()
    _write_input(spark, tmp_path / "gold", pdf)
    assert score.main(_job_args(tmp_path, path, "--token-budget", "64", "--max-rows", "4")) == 0
    out_path = str(tmp_path / "scores")
    out = spark.read.format("delta").load(out_path).toPandas().set_index(C.DOC_ID).loc[pdf.doc_id]
    want = _expected_scores(art, pdf.text)
    np.testing.assert_allclose(out.sum_logprob.astype(float), want.sum_logprob.astype(float), atol=1e-4)
    assert out.model_hash.unique().tolist() == [digest] and out.model_name.unique().tolist() == ["tiny-0"]
    assert out.input_version.unique().tolist() == [0] and out.task.unique().tolist() == ["score"]
    assert out.input_table.unique().tolist() == [str(tmp_path / "gold")] and out.scored_at.notna().all()
    assert out.loc["d000", C.CONTENT_HASH] == __import__("hashlib").sha256(pdf.text[0].encode()).hexdigest()
    run = read_runs(spark, str(tmp_path / "runs"), job="score").first()
    assert run.status == "succeeded" and out.run_id.unique().tolist() == [run.run_id]
    assert run.counts["rows"] == len(pdf) and run.counts["scored"] == len(pdf) and run.counts["errors"] == 3

    before, snapshot = _versions(spark, out_path), spark.read.format("delta").load(out_path).toPandas()
    assert score.main(_job_args(tmp_path, path)) == 0
    assert _versions(spark, out_path) == before  # nothing scored, nothing committed
    again = spark.read.format("delta").load(out_path).toPandas()
    pd.testing.assert_frame_equal(
        again.sort_values(C.DOC_ID).reset_index(drop=True), snapshot.sort_values(C.DOC_ID).reset_index(drop=True)
    )
    rerun = read_runs(spark, str(tmp_path / "runs"), job="score").first()
    assert rerun.counts["scored"] == 0 and rerun.counts["written"] == 0


def test_embed_and_generate_tasks(spark, tmp_path, artifact):
    path, _, art = artifact
    pdf = _texts_frame(["First Citizen", None, "We are accounted poor citizens" * 3])
    _write_input(spark, tmp_path / "gold", pdf)
    assert score.main(_job_args(tmp_path, path, "--task", "embed", "--output", str(tmp_path / "emb"))) == 0
    emb = spark.read.format("delta").load(str(tmp_path / "emb")).orderBy(C.DOC_ID).toPandas()
    assert [e is None for e in emb.embedding] == [False, True, False]
    assert len(emb.embedding[0]) == 32 and emb.truncated.tolist() == [False, None, True]
    args = ["--task", "generate", "--output", str(tmp_path / "gen"), "--max-new-tokens", "6", "--temperature", "0"]
    assert score.main(_job_args(tmp_path, path, *args)) == 0
    gen = spark.read.format("delta").load(str(tmp_path / "gen")).orderBy(C.DOC_ID).toPandas()
    want = tasks.generate_texts(art.model, art.tokenizer, pdf.text, max_new_tokens=6, temperature=0.0)
    assert gen.generated.tolist() == want.generated.tolist() and gen.error.tolist()[1] == "null_text"
    # an output table holding another task's columns is refused before anything is written
    assert score.main(_job_args(tmp_path, path, "--task", "score", "--output", str(tmp_path / "emb"))) == 2


@pytest.mark.parametrize("bad", ["model", "text_col", "input"])
def test_score_job_usage_errors_exit_2(spark, tmp_path, artifact, bad):
    _write_input(spark, tmp_path / "gold", _texts_frame(["a"]))
    args = _job_args(tmp_path, str(tmp_path / "nope") if bad == "model" else artifact[0])
    if bad == "text_col":
        args += ["--text-col", "body"]
    if bad == "input":
        args[args.index("--input") + 1] = str(tmp_path / "missing")
    assert score.main(args) == 2


def test_stream_available_now_scores_only_new_rows(spark, tmp_path, artifact):
    path, _, art = artifact
    first, extra = _texts_frame()[:10], _texts_frame(mixed_texts()[10:], prefix="e")
    _write_input(spark, tmp_path / "gold", first)
    args = _job_args(tmp_path, path, "--stream", "--checkpoint", str(tmp_path / "ckpt"))
    assert score.main(args) == 0
    _write_input(spark, tmp_path / "gold", extra, mode="append")
    assert score.main(args) == 0
    runs = read_runs(spark, str(tmp_path / "runs"), job="score").collect()
    assert [r.counts["rows"] for r in runs] == [len(extra), len(first)]  # newest first: only new rows
    out = spark.read.format("delta").load(str(tmp_path / "scores")).toPandas()
    both = pd.concat([first, extra], ignore_index=True)
    assert sorted(out.doc_id) == sorted(both.doc_id)
    out = out.set_index(C.DOC_ID).loc[both.doc_id]
    want = _expected_scores(art, both.text)
    np.testing.assert_allclose(out.sum_logprob.astype(float), want.sum_logprob.astype(float), atol=1e-4)


# ----------------------------------------------------------------------------------------- nightly


def _append_and_change(spark, gold, n_new=3):
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    _write_input(
        spark,
        gold,
        _texts_frame(["Speak, speak.", "You are all resolved", "First, you know"][:n_new], prefix="n"),
        mode="append",
    )
    DeltaTable.forPath(spark, str(gold)).update(F.col("doc_id") == "d000", {"text": F.lit("Before we proceed")})


def test_nightly_scores_only_new_and_changed_rows_even_run_twice_at_once(spark, tmp_path, artifact, monkeypatch):
    path, _, art = artifact
    pdf = _texts_frame()
    _write_input(spark, tmp_path / "gold", pdf)
    assert nightly_score.main(_job_args(tmp_path, path)) == 0
    out_path = str(tmp_path / "scores")
    first = spark.read.format("delta").load(out_path).toPandas().set_index(C.DOC_ID)
    assert len(first) == len(pdf)
    _append_and_change(spark, tmp_path / "gold")  # 3 new rows, d000's text changed

    # two runs at once; both are held at their MERGE until both have scored, so the MERGEs really race
    barrier, lock, calls = threading.Barrier(2, timeout=120), threading.Lock(), []
    real = scoring_table.merge_upsert_changed

    def racing_merge(*args, **kwargs):
        with lock:
            calls.append(1)
            first_two = len(calls) <= 2
        if first_two:
            barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring_table, "merge_upsert_changed", racing_merge)
    codes: list[int] = []
    threads = [
        threading.Thread(target=lambda: codes.append(nightly_score.main(_job_args(tmp_path, path)))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert codes == [0, 0]
    runs = read_runs(spark, str(tmp_path / "runs"), job="nightly_score").collect()
    for r in runs[:2]:  # each run found exactly the new and changed rows
        assert (r.counts["rows"], r.counts["new"], r.counts["changed"], r.counts["scored"], r.counts["unchanged"]) == (
            len(pdf) + 3,
            3,
            1,
            4,
            len(pdf) - 1,
        )
    winner, loser = sorted(runs[:2], key=lambda r: -r.counts["inserted"])
    assert (winner.counts["inserted"], winner.counts["updated"]) == (3, 1)  # written once, by one run
    assert (loser.counts["inserted"], loser.counts["updated"]) == (0, 0)
    # normally the loser's MERGE conflicts and is retried once (it always did here); if it started
    # only after the winner's commit, it found everything written and needed no retry
    assert loser.counts["merge_retries"] == len(calls) - 2 <= 1 and winner.counts["merge_retries"] == 0

    out = spark.read.format("delta").load(out_path).toPandas().set_index(C.DOC_ID)
    assert out.index.is_unique and len(out) == len(pdf) + 3
    untouched = [d for d in pdf.doc_id if d != "d000"]
    assert (out.loc[untouched, C.RUN_ID] == runs[2].run_id).all()  # old rows were not rewritten
    assert out.loc["d000", C.RUN_ID] == winner.run_id and out.loc["d000", C.INPUT_VERSION] == 2
    want = _expected_scores(art, ["Before we proceed", "Speak, speak."]).sum_logprob.tolist()
    assert out.loc["d000", "sum_logprob"] == pytest.approx(want[0], abs=1e-4) != first.loc["d000", "sum_logprob"]
    assert out.loc["n000", "sum_logprob"] == pytest.approx(want[1], abs=1e-4)

    before = _versions(spark, out_path)
    assert nightly_score.main(_job_args(tmp_path, path)) == 0  # nothing new: no MERGE, no commit
    assert _versions(spark, out_path) == before
    assert read_runs(spark, str(tmp_path / "runs"), job="nightly_score").first().counts["scored"] == 0


# ----------------------------------------------------------------------------------------- model failures

MARKER = "jV"  # two characters of the tiny vocabulary that no other test text holds


def _faulty_frame():
    """8 good texts, 3 the injected model fault hits, an empty and a null text."""
    good = [t for t in mixed_texts() if t and "\u00e9" not in t][:8]
    hit = [f"First {MARKER} Citizen", f"Speak {MARKER}", f"{MARKER} all"]
    return _texts_frame([*good, *hit, "", None])


def _failed_ids(pdf):
    return set(pdf.doc_id[pdf.text.fillna("").str.contains(MARKER)])


def _output(spark, tmp_path):
    return spark.read.format("delta").load(str(tmp_path / "scores")).toPandas().set_index(C.DOC_ID)


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_model_failures_fail_the_run_and_the_next_run_rescores_only_them(spark, tmp_path, artifact, monkeypatch, mode):
    path, _, art = artifact
    pdf = _faulty_frame()
    hit = _failed_ids(pdf)
    _write_input(spark, tmp_path / "gold", pdf)
    stream = ["--stream", "--checkpoint", str(tmp_path / "ckpt")] if mode == "stream" else []
    args = _job_args(tmp_path, path, *stream)
    monkeypatch.setenv(faults.ENV_MODEL_FAULT, MARKER)
    assert score.main(args) == 1  # 3 of the 11 rows sent to the model failed: over the default 1%
    first = read_runs(spark, str(tmp_path / "runs"), job="score").first()
    assert first.status == "failed" and "3 of 11 rows failed in the model" in first.error
    assert {k: first.counts[k] for k in ("scored", "input_errors", "model_errors", "errors", "written")} == {
        "scored": len(pdf),
        "input_errors": 2,
        "model_errors": 3,
        "errors": 5,
        "written": len(pdf),
    }
    out = _output(spark, tmp_path)  # what was scored is written, failures included
    assert len(out) == len(pdf) and (out[C.RUN_ID] == first.run_id).all()
    assert {d for d, e in out[C.ERROR].items() if tasks.is_retryable_error(e)} == hit
    assert out.loc[sorted(hit), C.ERROR].str.startswith("model_failed: RuntimeError: injected model fault").all()
    final = {e for e in out[C.ERROR].dropna() if not tasks.is_retryable_error(e)}
    assert final == {"empty_text", "null_text"}  # bad input: done, with its reason

    monkeypatch.delenv(faults.ENV_MODEL_FAULT)
    assert score.main(args) == 0
    second = read_runs(spark, str(tmp_path / "runs"), job="score").first()
    assert second.status == "succeeded"
    assert {k: second.counts[k] for k in ("scored", "retried", "replaced", "written", "model_errors")} == {
        "scored": 3,
        "retried": 3,
        "replaced": 3,
        "written": 3,
        "model_errors": 0,
    }
    out = _output(spark, tmp_path)
    assert out.index.is_unique and len(out) == len(pdf)
    assert not any(tasks.is_retryable_error(e) for e in out[C.ERROR])
    assert set(out.index[out[C.RUN_ID] == second.run_id]) == hit  # only the failed rows were rescored
    assert (out.drop(index=sorted(hit))[C.RUN_ID] == first.run_id).all()  # the rest, empty text too, kept
    want = _expected_scores(art, pdf.set_index(C.DOC_ID).loc[sorted(hit), C.TEXT])
    np.testing.assert_allclose(out.loc[sorted(hit), "sum_logprob"].astype(float), want.sum_logprob, atol=1e-4)

    before = _versions(spark, str(tmp_path / "scores"))
    assert score.main(args) == 0 and _versions(spark, str(tmp_path / "scores")) == before  # nothing left to do


def test_nightly_retries_model_failures_under_the_rate_and_keeps_input_errors(spark, tmp_path, artifact, monkeypatch):
    path = artifact[0]
    pdf = _faulty_frame()
    hit = _failed_ids(pdf)
    _write_input(spark, tmp_path / "gold", pdf)
    monkeypatch.setenv(faults.ENV_MODEL_FAULT, MARKER)
    assert nightly_score.main(_job_args(tmp_path, path, "--max-error-rate", "0.5")) == 0  # 27% <= 50%
    first = read_runs(spark, str(tmp_path / "runs"), job="nightly_score").first()
    assert first.status == "succeeded" and (first.counts["model_errors"], first.counts["input_errors"]) == (3, 2)
    monkeypatch.delenv(faults.ENV_MODEL_FAULT)
    assert nightly_score.main(_job_args(tmp_path, path)) == 0
    second = read_runs(spark, str(tmp_path / "runs"), job="nightly_score").first()
    assert {k: second.counts[k] for k in ("new", "changed", "retried", "scored", "inserted", "updated")} == {
        "new": 0,
        "changed": 0,
        "retried": 3,
        "scored": 3,
        "inserted": 0,
        "updated": 3,
    }
    out = _output(spark, tmp_path)
    assert len(out) == len(pdf) and not any(tasks.is_retryable_error(e) for e in out[C.ERROR])
    assert set(out.index[out[C.RUN_ID] == second.run_id]) == hit
    assert (out.drop(index=sorted(hit))[C.RUN_ID] == first.run_id).all()
    assert nightly_score.main(_job_args(tmp_path, path)) == 0
    assert read_runs(spark, str(tmp_path / "runs"), job="nightly_score").first().counts["scored"] == 0


# ----------------------------------------------------------------------------------------- expected model hash


@pytest.mark.parametrize("job", [score, nightly_score])
def test_expect_model_hash_refuses_another_model_before_writing(spark, tmp_path, artifact, job, caplog):
    path, digest, _ = artifact
    _write_input(spark, tmp_path / "gold", _texts_frame(["First Citizen", "Speak, speak."]))
    wrong = "0" * 64
    assert job.main(_job_args(tmp_path, path, "--expect-model-hash", wrong)) == 2
    assert f"has hash {digest}, but {wrong} was expected" in caplog.text
    assert not (tmp_path / "scores").exists() and not (tmp_path / "runs").exists()  # nothing written
    if job is score:  # the right hash runs (the jobs share describe_model)
        assert job.main(_job_args(tmp_path, path, "--expect-model-hash", digest.upper())) == 0
        assert len(_output(spark, tmp_path)) == 2


@pytest.mark.gpu
def test_udf_scores_on_gpu_equal_cpu(artifact):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from model.artifact import load_artifact

    path, _, art = artifact
    gpu = load_artifact(path, device="cuda")
    texts = pd.Series(mixed_texts())
    cpu_out = tasks.score_texts(art.model, art.tokenizer, texts, token_budget=64)
    gpu_out = tasks.score_texts(gpu.model, gpu.tokenizer, texts, token_budget=64)
    np.testing.assert_allclose(gpu_out.sum_logprob.astype(float), cpu_out.sum_logprob.astype(float), atol=1e-3)
    assert gpu_out.error.tolist() == cpu_out.error.tolist()
