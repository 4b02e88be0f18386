"""The jobs as a user runs them: `spark-submit` subprocesses, locally and on a real standalone
cluster (a master and a worker started on 127.0.0.1 from the pyspark install)."""

from __future__ import annotations

import os
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


def spark_submit(master: str, script: str, *args: str, timeout: int = 300, env: dict | None = None
                 ) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "spark-submit"), "--master", master, "--properties-file", str(REPO / "spark-defaults.conf"),
           "--driver-memory", "1g", str(REPO / script), *args]
    return subprocess.run(cmd, cwd=REPO, env={**_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


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
    assert _count_rows(spark, tmp_path / "bronze") + _count_rows(spark, tmp_path / "quarantine") == 80

    bad = spark_submit("local[1]", "jobs/ingest.py", "--input", str(src), "--format", "jsonl",
                       "--text-col", "nope", "--lake", str(tmp_path / "other"))
    # a usage error reaches the shell as exit code 2 and writes nothing (the message itself is
    # checked in-process in test_ingest.py: spark-submit may exit before copying the child's stderr)
    assert bad.returncode == 2
    assert not (tmp_path / "other").exists()


@pytest.fixture
def standalone_cluster(tmp_path):
    """A Spark standalone master + one worker (1 core, 1 GiB) on 127.0.0.1; stopped afterwards."""
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    env = _env()
    env["SPARK_WORKER_DIR"] = str(tmp_path / "worker")
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    logs = tmp_path / "logs"
    logs.mkdir()
    spark_class = str(BIN / "spark-class")
    master = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(_free_port())],
        env=env, stdout=open(logs / "master.out", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    worker = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
         "--memory", "1g", "--webui-port", str(_free_port()), url],
        env=env, stdout=open(logs / "worker.out", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Successfully registered with master" not in (logs / "worker.out").read_text():
            if time.monotonic() > deadline or worker.poll() is not None or master.poll() is not None:
                pytest.fail("standalone cluster did not start:\n" + (logs / "master.out").read_text()[-2000:]
                            + (logs / "worker.out").read_text()[-2000:])
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
    proc = spark_submit(url, "jobs/ingest.py", "--input", str(src), "--format", "jsonl", "--lake", str(tmp_path / "lake"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the work really ran on the worker: it launched an executor for this application
    assert "Asked to launch executor" in (logs / "worker.out").read_text()
    assert "for lakelm-ingest" in (logs / "worker.out").read_text()
    assert (tmp_path / "worker").is_dir() and any((tmp_path / "worker").iterdir())
    bronze = tmp_path / "lake" / "bronze"
    assert _count_rows(spark, bronze) + _count_rows(spark, tmp_path / "lake" / "quarantine") == 80
