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
