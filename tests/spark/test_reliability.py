"""Faults injected for real: a Python worker SIGKILLed mid-job, training killed and resumed."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.conftest import DATA, REPO
from tests.process_tree import kill_busy_worker
from tests.spark.test_submit_and_cluster import BIN, _env, spark_submit

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _content_hash(spark, path, cols):
    rows = spark.read.format("delta").load(str(path)).select(*cols).orderBy(cols[0]).collect()
    return len(rows), hashlib.sha256(json.dumps([list(r) for r in rows], default=str).encode()).hexdigest()


def _run_and_kill_a_worker(
    cmd: list[str], tmp_path, name: str, env: dict | None = None, needs_library: str | None = None, timeout: int = 300
):
    """Run a job, SIGKILL one of its Python workers from outside while it runs a task (found by pid
    under the job's process tree), and wait for the job. Returns (exit code, stdout, stderr, killed pid)."""
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**_env(), **(env or {})}, stdout=fo, stderr=fe)
        try:
            killed = kill_busy_worker(proc, needs_library=needs_library)
            rc = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
    return rc, out.read_text(), err.read_text(), killed


def _lost_tasks(stderr: str) -> int:
    """Tasks Spark reports lost to a crashed Python worker (each one was retried or failed the job)."""
    return sum("Lost task" in line and "Python worker exited unexpectedly" in line for line in stderr.splitlines())


def test_curate_survives_a_killed_python_worker(spark, tmp_path):
    """On the default master (python -m jobs.curate, no --master): a Python worker killed from outside
    while it runs a task (found by pid under the job's process tree) is retried, and the job leaves the
    same tables as a clean run (in this process) — no duplicates, nothing lost."""
    from jobs import curate

    base = [(r["id"], r["text"]) for r in map(json.loads, (DATA / "cc2019_slice.jsonl").read_text().splitlines())]
    rows = [(f"{i}-{k}", t) for k in range(8) for i, t in base]  # long enough to catch a worker mid-task
    bronze = str(tmp_path / "bronze")
    spark.createDataFrame(rows, "doc_id string, text string").repartition(4).write.format("delta").save(bronze)

    def tables(lake):
        return (
            _content_hash(spark, lake / "silver", ["doc_id", "text"]),
            _content_hash(spark, lake / "rejected", ["doc_id", "drop_reason"]),
        )

    assert curate.main(["--input", bronze, "--lake", str(tmp_path / "clean")]) == 0
    clean = tables(tmp_path / "clean")

    lake = tmp_path / "outside"
    rc, _, err, killed = _run_and_kill_a_worker(
        [sys.executable, "-m", "jobs.curate", "--input", bronze, "--lake", str(lake)], tmp_path, "outside"
    )
    assert killed is not None, "no busy Python worker found under the job"
    assert rc == 0, err[-3000:]
    assert _lost_tasks(err) >= 1, err[-3000:]  # the kill hit a running task, which Spark retried
    assert tables(lake) == clean
    n_silver, n_rejected = clean[0][0], clean[1][0]
    assert n_silver + n_rejected == len(rows)  # no duplicates, nothing lost


SCORE_EXACT = [
    "doc_id",
    "content_hash",
    "n_tokens",
    "n_windows",
    "error",
    "task",
    "model_name",
    "model_hash",
    "input_table",
    "input_version",
]
SCORE_FLOATS = ["sum_logprob", "mean_nll", "perplexity", "bits_per_byte"]


def _score_rows(spark, path):
    """Output rows of a score run without the per-run columns (run_id, scored_at), sorted by doc_id."""
    return [r.asDict() for r in spark.read.format("delta").load(str(path)).orderBy("doc_id").collect()]


def _hash_rows(rows, cols):
    return hashlib.sha256(json.dumps([[r[c] for c in cols] for r in rows], default=str).encode()).hexdigest()


def _assert_same_scores(clean, other, n):
    assert len(other) == len(clean) == n
    assert len({r["doc_id"] for r in other}) == n  # no duplicate ids
    assert _hash_rows(other, SCORE_EXACT) == _hash_rows(clean, SCORE_EXACT)
    for col in SCORE_FLOATS:  # same rows, same batches: equal up to float summation order
        for a, b in zip(clean, other):
            assert a[col] == pytest.approx(b[col], rel=1e-6, abs=1e-6), (col, a["doc_id"])
    assert sum(r["error"] is None for r in other) == n


def test_score_survives_a_killed_python_worker(spark, tmp_path):
    """spark-submit jobs/score.py with no --master and no properties file (Spark's own default,
    local[*], which lakelm gives task retries): a worker killed from outside while scoring leaves the
    same scores as a clean run (in this process). The control: the same outside kill with an explicit
    --master local[2] (one attempt per task, kept as given) fails the job."""
    from jobs import score
    from tests.tiny_model import corpus_text, save_tiny_artifact

    text = corpus_text()
    # enough rows that scoring takes a few seconds: the outside kill must find a worker mid-task
    docs = [(f"s{i:04d}", text[(i * 23) % 3900 : (i * 23) % 3900 + 5 + (i * 17) % 90]) for i in range(1200)]
    gold = str(tmp_path / "gold")
    spark.createDataFrame(docs, "doc_id string, text string").repartition(4).write.format("delta").save(gold)
    model = tmp_path / "model"
    save_tiny_artifact(model, seed=3)
    job_args = ["--input", gold, "--model", str(model), "--token-budget", "32", "--max-rows", "1"]
    bare_submit = [str(BIN / "spark-submit"), "--driver-memory", "1g", str(REPO / "jobs/score.py")]
    one_thread = {"OMP_NUM_THREADS": "1"}
    assert score.main(["--lake", str(tmp_path / "clean"), *job_args]) == 0
    clean = _score_rows(spark, tmp_path / "clean" / "scores")

    lake = tmp_path / "outside"
    rc, _, err, pid = _run_and_kill_a_worker(
        [*bare_submit, "--lake", str(lake), *job_args], tmp_path, "outside", env=one_thread, needs_library="libtorch"
    )
    assert pid is not None, "no scoring Python worker found under the job"
    assert rc == 0, err[-3000:]
    assert _lost_tasks(err) >= 1, err[-3000:]  # the kill hit a running task, which Spark retried
    _assert_same_scores(clean, _score_rows(spark, lake / "scores"), len(docs))

    explicit = [
        str(BIN / "spark-submit"),
        "--master",
        "local[2]",
        "--driver-memory",
        "1g",
        str(REPO / "jobs/score.py"),
        "--lake",
        str(tmp_path / "explicit"),
        *job_args,
    ]
    rc, _, err, pid = _run_and_kill_a_worker(explicit, tmp_path, "explicit", env=one_thread, needs_library="libtorch")
    assert pid is not None and _lost_tasks(err) >= 1, err[-3000:]
    assert rc != 0  # an explicit master is used as given: no retries, so the lost task fails the job


def test_build_dataset_survives_a_killed_python_worker_without_double_counting(spark, tmp_path):
    """A worker killed after its first windows were sent (python -m, default master): the retried
    task rewrites them, and the accumulated counts (docs, tokens, tails) match the clean run and the
    rows committed."""
    from jobs import build_dataset

    docs = [
        (r["id"], r["text"])
        for r in map(json.loads, (DATA / "cc2019_slice.jsonl").read_text().splitlines())
        if r["text"].strip()
    ]
    gold = str(tmp_path / "gold")
    spark.createDataFrame(docs, "doc_id string, text string").repartition(3).write.format("delta").save(gold)
    markers = tmp_path / "markers"

    def args(lake):
        tok = str(lake / "tok")
        return ["--input", gold, "--lake", str(lake), "--tokenizer-out", tok, "--char-level", "--block-size", "64"]

    def outputs(lake):
        meta = json.loads((lake / "tok" / "dataset.json").read_text())
        return (
            _content_hash(spark, lake / "tokens", ["window_id", "split", "tokens"]),
            {k: meta[k] for k in ("docs", "docs_failed", "tokens", "windows", "tail_tokens")},
        )

    assert build_dataset.main(args(tmp_path / "clean")) == 0  # the clean run, in this process
    faulty = {"LAKELM_FAULT_KILL_PARTITION": "1", "LAKELM_FAULT_MARKER_DIR": str(markers)}
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.build_dataset", *args(tmp_path / "faulty")],
        cwd=REPO,
        env={**_env(), **faulty},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {name: outputs(tmp_path / name) for name in ("clean", "faulty")}
    killed = sorted(p.name for p in markers.iterdir())
    assert killed and all(k.startswith("build_dataset-") for k in killed), killed  # the worker really was killed
    assert results["faulty"] == results["clean"]
    (n_windows, _), meta = results["clean"]
    assert n_windows == sum(meta["windows"].values()) > 0
    assert sum(meta["docs"].values()) + meta["docs_failed"] == len(docs)
    for split in meta["tokens"]:
        assert meta["windows"][split] * 65 + meta["tail_tokens"][split] == meta["tokens"][split]


def test_bad_input_end_to_end_every_record_accounted_for(spark, tmp_path):
    """A corpus of every kind of bad record (tests/bad_input.py, with a real 50 MiB document) through
    ingest (spark-submit, 1 GiB driver, default limits) -> curate -> dedup -> score: every job exits 0
    and every input line ends in exactly one of quarantine / rejected (curate or dedup) / scores,
    everything but a kept-and-scored document with a non-null reason."""
    from jobs import curate, dedup, score
    from tests.bad_input import write_pipeline_corpus
    from tests.tiny_model import save_tiny_artifact

    good = [
        line.encode()
        for line in (DATA / "cc2019_slice.jsonl").read_text().splitlines()
        if json.loads(line)["text"].strip()
    ][:30]
    corpus, lake = tmp_path / "corpus.jsonl", tmp_path / "lake"
    expected = write_pipeline_corpus(corpus, good)
    n_lines = sum(expected.values())
    # 17 bad records of 11 reasons (invalid_json alone: truncated, not JSON, empty line, 100,000-deep
    # nesting), plus edge cases that must pass: BOM, control characters, integer id, no id
    assert sum(n for reason, n in expected.items() if reason) == 17 and len(set(expected) - {None}) == 11
    assert corpus.stat().st_size > 50 * 1024 * 1024

    proc = spark_submit(
        None, "jobs/ingest.py", "--input", str(corpus), "--format", "jsonl", "--lake", str(lake), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"')))
    assert counts["read"] == n_lines and counts["quarantined_too_large"] == 1
    assert curate.main(["--lake", str(lake)]) == 0
    assert dedup.main(["--lake", str(lake)]) == 0
    gold_texts = "".join(t for (t,) in spark.read.format("delta").load(str(lake / "gold")).select("text").collect())
    save_tiny_artifact(tmp_path / "model", vocab_text=gold_texts)  # a tokenizer that knows every gold character
    assert score.main(["--lake", str(lake), "--model", str(tmp_path / "model"), "--token-budget", "256"]) == 0

    def rows(table, *cols):
        return [tuple(r) for r in spark.read.format("delta").load(str(lake / table)).select(*cols).collect()]

    quarantine = rows("quarantine", "reason", "job")
    assert Counter(r for r, _ in quarantine) == Counter({k: v for k, v in expected.items() if k is not None})
    assert all(job == "ingest" for _, job in quarantine)
    bronze = [i for (i,) in rows("bronze", "doc_id")]
    assert len(bronze) == expected[None] and len(set(bronze)) == len(bronze)
    assert len(quarantine) + len(bronze) == n_lines  # every line: bronze or quarantine, never both

    rejected = rows("rejected", "doc_id", "job", "drop_reason")
    assert all(reason for _, _, reason in rejected)
    by_job = {job: [i for i, j, _ in rejected if j == job] for job in ("curate", "dedup")}
    assert len(rejected) == len(by_job["curate"]) + len(by_job["dedup"])
    silver = [i for (i,) in rows("silver", "doc_id")]
    assert sorted(silver + by_job["curate"]) == sorted(bronze)  # curate: in = kept + rejected, disjoint
    gold = [i for (i,) in rows("gold", "doc_id")]
    assert sorted(gold + by_job["dedup"]) == sorted(silver)  # dedup: in = kept + rejected, disjoint
    assert {r for _, j, r in rejected if j == "dedup"} == {"dedup_exact"} and gold  # the copies went

    scores = rows("scores", "doc_id", "error", "mean_nll")
    assert sorted(i for i, _, _ in scores) == sorted(gold)  # every gold document scored exactly once
    # every kept document (BOM, control characters, integer and missing ids included) gets a real score
    assert all(e is None and nll is not None and nll > 0 for _, e, nll in scores), scores
    # the whole funnel: each input line in exactly one bucket
    assert len(quarantine) + len(by_job["curate"]) + len(by_job["dedup"]) + len(scores) == n_lines


def test_score_refuses_a_tampered_artifact_and_writes_nothing(spark, tmp_path):
    from jobs import score
    from tests.tiny_model import save_tiny_artifact

    gold = str(tmp_path / "gold")
    spark.createDataFrame([("d1", "First Citizen")], "doc_id string, text string").write.format("delta").save(gold)
    model = tmp_path / "model"
    save_tiny_artifact(model)
    weights = model / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(blob))
    assert score.main(["--lake", str(tmp_path), "--input", gold, "--model", str(model)]) == 2
    assert not (tmp_path / "scores").exists() and not (tmp_path / "runs").exists()


class _Payload:
    """Unpickling this runs code: it creates the file named in ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoints_are_never_unpickled(tmp_path):
    import pickle

    import torch

    from model.checkpoint import load_checkpoint

    evidence = tmp_path / "code-ran"
    bad = tmp_path / "step_000100.pt"
    torch.save({"step": 100, "model": _Payload(str(evidence))}, bad)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(bad)
    assert not evidence.exists()
    # and nothing else in the package deserialises pickles: every call of torch's loader (found in the
    # syntax tree, so comments and docstrings do not count) passes weights_only=True
    import ast

    n_calls = 0
    for folder in ("jobs", "udfs", "model"):
        for path in (REPO / folder).rglob("*.py"):
            code = path.read_text(encoding="utf-8")
            assert "pickle.load" not in code and "import pickle" not in code, path
            for node in ast.walk(ast.parse(code)):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "torch"
                ):
                    n_calls += 1
                    flags = {k.arg: k.value for k in node.keywords}
                    assert (
                        isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True
                    ), (path, node.lineno)
    assert n_calls >= 1  # the checkpoint loader is found, so the scan really looks at calls


@pytest.mark.parametrize("job", ["ingest", "curate", "dedup", "score", "nightly_score"])
@pytest.mark.parametrize("bad", ["t`; DROP TABLE x", "a'b", "line\nbreak", 'q"uote'])
def test_every_job_refuses_bad_table_paths(tmp_path, caplog, job, bad):
    import importlib

    module = importlib.import_module(f"jobs.{job}")
    lake = tmp_path / "lake"
    extra = {
        "ingest": ["--input", "x.jsonl", "--format", "jsonl"],
        "score": ["--model", "m"],
        "nightly_score": ["--model", "m"],
    }.get(job, [])
    assert module.main(["--lake", str(lake), *extra, "--output", bad]) == 2
    assert "contains a quote, backtick, ';' or control character" in caplog.text  # refused as a path
    assert not lake.exists()


def test_training_killed_and_resumed_matches_uninterrupted(spark, tmp_path):
    """SIGKILL the training job after its first checkpoint; the same command again resumes from the
    killed run's newest checkpoint (log line and the artifact's lineage), trains on the same windows
    step for step (samples log), and its weights equal the uninterrupted run's bit for bit."""
    import torch
    from safetensors.torch import load_file

    from jobs import build_dataset
    from model.artifact import load_artifact
    from model.checkpoint import list_checkpoints

    docs = [
        (r["id"], r["text"])
        for r in map(json.loads, (DATA / "cc2019_slice.jsonl").read_text().splitlines())
        if r["text"].strip()
    ][:40]
    spark.createDataFrame(docs, "doc_id string, text string").write.format("delta").save(str(tmp_path / "gold"))
    assert (
        build_dataset.main(
            [
                "--lake",
                str(tmp_path),
                "--tokenizer-out",
                str(tmp_path / "tok"),
                "--vocab-size",
                "400",
                "--block-size",
                "32",
                "--val-fraction",
                "0.2",
            ]
        )
        == 0
    )
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps(
            {
                "model": {"n_layer": 2, "n_head": 2, "n_embd": 32},
                "train": {
                    "batch_size": 8,
                    "max_steps": 200,
                    "eval_every": 100,
                    "eval_steps": 4,
                    "ckpt_every": 20,
                    "warmup_steps": 5,
                    "threads": 1,
                    "device": "cpu",
                },
            }
        )
    )
    cmd = [sys.executable, "-m", "jobs.train", "--lake", str(tmp_path), "--config", str(cfg)]

    straight = subprocess.run(
        [*cmd, "--out", str(tmp_path / "straight")], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    work = tmp_path / "killed.work"
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "killed")],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not any((work / "checkpoints").glob("*.pt")) if (work / "checkpoints").exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None, "training ended before a checkpoint"
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its Spark JVM, mid-run
    proc.wait(timeout=60)
    assert not (tmp_path / "killed").exists()
    killed_step, killed_ckpt = list_checkpoints(work / "checkpoints")[-1]
    assert 0 < killed_step < 200, killed_step  # killed mid-run, after a checkpoint

    resumed = subprocess.run(
        [*cmd, "--out", str(tmp_path / "killed")], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # it started from the killed run's newest checkpoint, not from scratch
    assert f"rank 0 resumed from {killed_ckpt} at step {killed_step}" in resumed.stderr, resumed.stderr[-3000:]
    a, b = (load_artifact(tmp_path / name).metadata for name in ("straight", "killed"))
    assert (b["lineage"]["resumed_from"], b["lineage"]["start_step"]) == (str(killed_ckpt), killed_step)
    assert (a["lineage"]["resumed_from"], a["lineage"]["start_step"]) == (None, 0)
    assert b["metrics"]["step"] == a["metrics"]["step"] == 200
    # the same windows at every step: the killed run's log up to the checkpoint, then the rerun's
    samples = [
        (tmp_path / f"{name}.work" / "samples" / "rank-0.jsonl").read_text().splitlines()
        for name in ("straight", "killed")
    ]
    assert [json.loads(line)["step"] for line in samples[1]] == list(range(1, 201))
    assert samples[1] == samples[0]
    # bit for bit: every tensor of the two artifacts' weights
    wa, wb = (load_file(tmp_path / name / "model.safetensors") for name in ("straight", "killed"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert b["metrics"]["val_loss"] == a["metrics"]["val_loss"]
