"""Faults injected for real: a Python worker SIGKILLed mid-job, training killed and resumed."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import DATA, REPO
from tests.spark.test_submit_and_cluster import _env, spark_submit

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _content_hash(spark, path, cols):
    rows = spark.read.format("delta").load(str(path)).select(*cols).orderBy(cols[0]).collect()
    return len(rows), hashlib.sha256(json.dumps([list(r) for r in rows], default=str).encode()).hexdigest()


def test_curate_survives_a_killed_python_worker(spark, tmp_path):
    rows = [(r["id"], r["text"]) for r in map(json.loads, (DATA / "cc2019_slice.jsonl").read_text().splitlines())]
    bronze = str(tmp_path / "bronze")
    spark.createDataFrame(rows, "doc_id string, text string").repartition(3).write.format("delta").save(bronze)
    markers = tmp_path / "markers"
    results = {}
    for name, env in (("clean", {}), ("faulty", {"LAKELM_FAULT_KILL_PARTITION": "1",
                                                 "LAKELM_FAULT_MARKER_DIR": str(markers)})):
        lake = tmp_path / name
        proc = spark_submit("local[2,3]", "jobs/curate.py", "--input", bronze, "--lake", str(lake), env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = (_content_hash(spark, lake / "silver", ["doc_id", "text"]),
                         _content_hash(spark, lake / "rejected", ["doc_id", "drop_reason"]))
    assert len(list(markers.iterdir())) >= 1  # the worker really was killed
    assert results["faulty"] == results["clean"]
    n_silver, n_rejected = results["clean"][0][0], results["clean"][1][0]
    assert n_silver + n_rejected == len(rows)  # no duplicates, nothing lost


SCORE_EXACT = ["doc_id", "content_hash", "n_tokens", "n_windows", "error", "task", "model_name", "model_hash",
               "input_table", "input_version"]
SCORE_FLOATS = ["sum_logprob", "mean_nll", "perplexity", "bits_per_byte"]


def _score_rows(spark, path):
    """Output rows of a score run without the per-run columns (run_id, scored_at), sorted by doc_id."""
    return [r.asDict() for r in spark.read.format("delta").load(str(path)).orderBy("doc_id").collect()]


def _hash_rows(rows, cols):
    return hashlib.sha256(json.dumps([[r[c] for c in cols] for r in rows], default=str).encode()).hexdigest()


def test_score_survives_a_killed_python_worker(spark, tmp_path):
    from tests.tiny_model import corpus_text, save_tiny_artifact

    text = corpus_text()
    docs = [(f"s{i:03d}", text[i * 23 : i * 23 + 5 + (i * 17) % 90]) for i in range(60)]
    gold = str(tmp_path / "gold")
    spark.createDataFrame(docs, "doc_id string, text string").repartition(3).write.format("delta").save(gold)
    model = tmp_path / "model"
    save_tiny_artifact(model, seed=3)
    markers = tmp_path / "markers"
    results = {}
    for name, env in (("clean", {}), ("faulty", {"LAKELM_FAULT_KILL_PARTITION": "1",
                                                 "LAKELM_FAULT_MARKER_DIR": str(markers)})):
        lake = tmp_path / name
        proc = spark_submit("local[2,3]", "jobs/score.py", "--lake", str(lake), "--input", gold, "--model",
                            str(model), "--token-budget", "64", "--max-rows", "4",
                            env={**env, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = _score_rows(spark, lake / "scores")
    killed = sorted(p.name for p in markers.iterdir())
    assert killed and all(k.startswith("score-") for k in killed), killed  # the worker really was killed
    clean, faulty = results["clean"], results["faulty"]
    assert len(faulty) == len(clean) == len(docs)
    assert len({r["doc_id"] for r in faulty}) == len(docs)  # no duplicate ids
    assert _hash_rows(faulty, SCORE_EXACT) == _hash_rows(clean, SCORE_EXACT)
    for col in SCORE_FLOATS:  # same rows, same batches: equal up to float summation order
        for a, b in zip(clean, faulty):
            assert a[col] == pytest.approx(b[col], rel=1e-6, abs=1e-6), (col, a["doc_id"])
    assert sum(r["error"] is None for r in faulty) == len(docs)


def test_training_killed_and_resumed_matches_uninterrupted(spark, tmp_path):
    from jobs import build_dataset
    from model.artifact import load_artifact

    docs = [(r["id"], r["text"]) for r in map(json.loads, (DATA / "cc2019_slice.jsonl").read_text().splitlines())
            if r["text"].strip()][:40]
    spark.createDataFrame(docs, "doc_id string, text string").write.format("delta").save(str(tmp_path / "gold"))
    assert build_dataset.main(["--lake", str(tmp_path), "--tokenizer-out", str(tmp_path / "tok"), "--vocab-size",
                               "400", "--block-size", "32", "--val-fraction", "0.2"]) == 0
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"n_layer": 2, "n_head": 2, "n_embd": 32},
                               "train": {"batch_size": 8, "max_steps": 200, "eval_every": 100, "eval_steps": 4,
                                         "ckpt_every": 20, "warmup_steps": 5, "threads": 1, "device": "cpu"}}))
    cmd = [sys.executable, "-m", "jobs.train", "--lake", str(tmp_path), "--config", str(cfg)]

    straight = subprocess.run([*cmd, "--out", str(tmp_path / "straight")], cwd=REPO, env=_env(),
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]

    work = tmp_path / "killed.work"
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not any((work / "checkpoints").glob("*.pt")) if (work / "checkpoints").exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None, "training ended before a checkpoint"
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its Spark JVM, mid-run
    proc.wait(timeout=60)
    assert not (tmp_path / "killed").exists()
    killed_at = sorted((work / "checkpoints").glob("*.pt"))[-1].name

    resumed = subprocess.run([*cmd, "--out", str(tmp_path / "killed")], cwd=REPO, env=_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_artifact(tmp_path / "straight").metadata["metrics"]
    b = load_artifact(tmp_path / "killed").metadata["metrics"]
    assert b["step"] == a["step"] == 200
    assert abs(b["val_loss"] - a["val_loss"]) <= 0.01 * a["val_loss"], (a, b, killed_at)
