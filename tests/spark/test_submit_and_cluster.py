"""The jobs as a user runs them: `spark-submit` subprocesses, locally and on a real standalone
cluster (a master and a worker started on 127.0.0.1 from the pyspark install)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BIN = Path(sys.executable).parent


def _env() -> dict:
    env = dict(os.environ)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env.pop("SPARK_HOME", None)  # let pyspark's scripts find their own install
    return env


def submit_cmd(master: str | None, script: str, *args: str, conf: dict | None = None) -> list[str]:
    """The spark-submit command line for ``script`` (1 GiB driver, the repository's defaults, ``--conf``s).

    ``master=None`` gives no ``--master``: the properties file's default, as the README runs it."""
    confs = [a for k, v in (conf or {}).items() for a in ("--conf", f"{k}={v}")]
    masters = ["--master", master] if master else []
    return [
        str(BIN / "spark-submit"),
        *masters,
        "--properties-file",
        str(REPO / "spark-defaults.conf"),
        "--driver-memory",
        "1g",
        *confs,
        str(REPO / script),
        *args,
    ]


def spark_submit(
    master: str | None, script: str, *args: str, timeout: int = 300, env: dict | None = None, conf: dict | None = None
) -> subprocess.CompletedProcess:
    cmd = submit_cmd(master, script, *args, conf=conf)
    return subprocess.run(cmd, cwd=REPO, env={**_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _count_rows(spark, path) -> int:
    return spark.read.format("delta").load(str(path)).count()


def test_spark_submit_ingest(spark, tmp_path):
    src = DATA / "cc2019_slice.jsonl"
    proc = spark_submit("local[2]", "jobs/ingest.py", "--input", str(src), "--format", "jsonl", "--lake", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"read": 80' in proc.stdout
    assert "[Stage " not in proc.stderr  # output to a pipe, not a terminal: no console progress bar redraws
    assert _count_rows(spark, tmp_path / "bronze") + _count_rows(spark, tmp_path / "quarantine") == 80

    bad = spark_submit(
        "local[1]",
        "jobs/ingest.py",
        "--input",
        str(src),
        "--format",
        "jsonl",
        "--text-col",
        "nope",
        "--lake",
        str(tmp_path / "other"),
    )
    # a usage error reaches the shell as exit code 2 and writes nothing (the message itself is
    # checked in-process in test_ingest.py: spark-submit may exit before copying the child's stderr)
    assert bad.returncode == 2
    assert not (tmp_path / "other").exists()


@pytest.fixture
def standalone_cluster(tmp_path, request):
    """A Spark standalone master + one worker (1 core, 1 GiB) on 127.0.0.1; stopped afterwards.

    More cores: ``@pytest.mark.parametrize("standalone_cluster", [2], indirect=True)``."""
    cores = str(getattr(request, "param", 1))
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    env = _env()
    env["SPARK_WORKER_DIR"] = str(tmp_path / "worker")
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    logs = tmp_path / "logs"
    logs.mkdir()
    spark_class = str(BIN / "spark-class")
    master = subprocess.Popen(
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(_free_port()),
        ],
        env=env,
        stdout=open(logs / "master.out", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = subprocess.Popen(
        [
            spark_class,
            "org.apache.spark.deploy.worker.Worker",
            "--host",
            "127.0.0.1",
            "--cores",
            cores,
            "--memory",
            "1g",
            "--webui-port",
            str(_free_port()),
            url,
        ],
        env=env,
        stdout=open(logs / "worker.out", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while "Successfully registered with master" not in (logs / "worker.out").read_text():
            if time.monotonic() > deadline or worker.poll() is not None or master.poll() is not None:
                pytest.fail(
                    "standalone cluster did not start:\n"
                    + (logs / "master.out").read_text()[-2000:]
                    + (logs / "worker.out").read_text()[-2000:]
                )
            time.sleep(0.5)
        yield url, logs
    finally:
        for proc in (worker, master):
            os.killpg(proc.pid, 15)
        for proc in (worker, master):
            proc.wait(timeout=30)


def test_ingest_on_standalone_cluster(spark, tmp_path, standalone_cluster):
    url, logs = standalone_cluster
    src = DATA / "cc2019_slice.jsonl"
    proc = spark_submit(
        url, "jobs/ingest.py", "--input", str(src), "--format", "jsonl", "--lake", str(tmp_path / "lake")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the work really ran on the worker: it launched an executor for this application
    assert "Asked to launch executor" in (logs / "worker.out").read_text()
    assert "for lakelm-ingest" in (logs / "worker.out").read_text()
    assert (tmp_path / "worker").is_dir() and any((tmp_path / "worker").iterdir())
    bronze = tmp_path / "lake" / "bronze"
    assert _count_rows(spark, bronze) + _count_rows(spark, tmp_path / "lake" / "quarantine") == 80


def _proc_info(pid: str) -> tuple[str, int, str] | None:
    """(cmdline, parent pid, cwd) of a live process, or None when it is gone or not ours to read."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return cmdline, ppid, os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError, IndexError):
        return None


def _executors_with_python(worker_dir: Path) -> list[int]:
    """Executor JVMs of *this* worker (their working folder is under ``worker_dir``) that have a Python
    worker child, i.e. that are running a Python UDF task right now."""
    procs = {pid: info for pid in os.listdir("/proc") if pid.isdigit() and (info := _proc_info(pid))}
    executors = {
        int(pid)
        for pid, (cmd, _, cwd) in procs.items()
        if "CoarseGrainedExecutorBackend" in cmd and cwd.startswith(str(worker_dir))
    }
    return sorted({ppid for cmd, ppid, _ in procs.values() if ppid in executors and "python" in cmd})


def _delta_hash(spark, path, cols) -> tuple[int, str]:
    rows = spark.read.format("delta").load(str(path)).select(*cols).orderBy(*cols).collect()
    return len(rows), hashlib.sha256(json.dumps([list(r) for r in rows], default=str).encode()).hexdigest()


def test_curate_survives_a_killed_executor_on_standalone_cluster(spark, tmp_path, standalone_cluster):
    """SIGKILL the worker's executor JVM while it runs the curation UDF: the worker launches a new
    executor, Spark reruns the lost tasks (and any lost shuffle output), and the output equals a clean run's."""
    from jobs import curate

    url, logs = standalone_cluster
    src = [json.loads(line) for line in (DATA / "cc2019_slice.jsonl").read_text().splitlines()]
    rows = [(f"{r['id']}-{k}", r["text"]) for k in range(5) for r in src]  # 400 docs: ~tens of seconds on 1 core
    bronze = str(tmp_path / "bronze")
    spark.createDataFrame(rows, "doc_id string, text string").repartition(4).write.format("delta").save(bronze)

    assert curate.main(["--input", bronze, "--lake", str(tmp_path / "clean")]) == 0  # the reference run

    lake = tmp_path / "faulty"
    cmd = submit_cmd(
        url,
        "jobs/curate.py",
        "--input",
        bronze,
        "--lake",
        str(lake),
        conf={"spark.task.maxFailures": "4", "spark.executor.memory": "768m"},
    )
    out_file = tmp_path / "submit.log"
    with open(out_file, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline, killed = time.monotonic() + 150, None
        while killed is None:
            assert proc.poll() is None, "job ended before its executor ran Python:\n" + out_file.read_text()[-3000:]
            assert time.monotonic() < deadline, "no executor ran Python in time:\n" + out_file.read_text()[-3000:]
            busy = _executors_with_python(tmp_path / "worker")
            if busy:
                time.sleep(0.5)  # let the UDF tasks get going
                if proc.poll() is None:
                    killed = busy[0]
                    os.kill(killed, signal.SIGKILL)  # the executor JVM, mid-stage
            time.sleep(0.1)
        code = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out_file.read_text()[-3000:]
    worker_log = (logs / "worker.out").read_text()
    launches = [line for line in worker_log.splitlines() if "Asked to launch executor" in line]
    assert len(launches) >= 2, worker_log[-3000:]  # the killed executor was replaced
    for table, cols in (("silver", ["doc_id", "text"]), ("rejected", ["doc_id", "drop_reason"])):
        assert _delta_hash(spark, lake / table, cols) == _delta_hash(spark, tmp_path / "clean" / table, cols), table
    n_silver = _count_rows(spark, lake / "silver")
    assert n_silver + _count_rows(spark, lake / "rejected") == len(rows)  # nothing lost, no duplicates
