"""The /predict HTTP service end to end: ``python -m jobs.serve`` as a subprocess on 127.0.0.1 (any free
port), called with urllib and raw sockets; results equal the scoring core, every refusal has its 4xx
status, and hostile clients (idle, slow, too many, a forced internal error) get bounded, documented
answers. No Spark session is needed."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO
from tests.tiny_model import save_tiny_artifact
from udfs import faults, tasks

pytestmark = pytest.mark.slow

RAISE = "__fault_raise__"  # a text that makes the server raise inside the request (udfs/faults.py)
SLEEP = "__fault_sleep__"  # a text that holds a worker for SLEEP_S
SLEEP_S = 1.5


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_tiny_artifact(path)
    return path


@contextlib.contextmanager
def _serving(model, log_path, *flags):
    """Base URL of ``python -m jobs.serve`` on ``model`` with ``flags``; its stderr goes to ``log_path``."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        faults.ENV_SERVE_RAISE: RAISE,
        faults.ENV_SERVE_SLEEP: f"{SLEEP}:{SLEEP_S}",
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.serve", "--model", str(model), "--port", "0", "--threads", "1", *flags],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving on http://"), f"server did not start: {line!r} {log_path.read_text()}"
        base = line.split()[-1]
        deadline = time.monotonic() + 30
        while True:
            try:
                _request(base, "GET", "/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "no /health answer within 30 s"
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.fixture(scope="module")
def server_log(tmp_path_factory):
    return tmp_path_factory.mktemp("serve") / "server.log"


@pytest.fixture(scope="module")
def server(model_path, server_log):
    """(base URL, loaded Artifact) of a running server on the tiny model, default server limits."""
    import torch

    from model.artifact import load_artifact

    torch.set_num_threads(1)
    with _serving(
        model_path, server_log, "--max-texts", "4", "--max-text-chars", "200", "--max-body-bytes", "4096"
    ) as base:
        yield base, load_artifact(model_path)


@pytest.fixture(scope="module")
def tight(model_path, tmp_path_factory):
    """Base URL of a server with one worker, a queue of one, 8 connections and short deadlines."""
    with _serving(
        model_path,
        tmp_path_factory.mktemp("tight") / "server.log",
        "--workers",
        "1",
        "--queue",
        "1",
        "--max-connections",
        "8",
        "--header-timeout",
        "1",
        "--body-timeout",
        "1",
        "--idle-timeout",
        "4",
        "--retry-after",
        "7",
    ) as base:
        yield base


def _request(base, method, path, body=None, ctype="application/json"):
    """(status, JSON document, headers) of one HTTP request."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if ctype is not None and data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def test_health(server):
    base, art = server
    status, doc, _ = _request(base, "GET", "/health")
    assert status == 200
    assert doc["model_name"] == "tiny-0" and doc["model_hash"] == art.hash and doc["limits"]["max_texts"] == 4


def test_score_equals_core(server):
    base, art = server
    texts = ["First Citizen:\nBefore we proceed", "You are all resolved", "caf\u00e9 \u2603"]
    status, doc, _ = _request(base, "POST", "/predict", {"texts": texts, "task": "score"})
    assert status == 200 and doc["model_hash"] == art.hash
    got = pd.DataFrame(doc["results"])
    want = tasks.score_texts(art.model, art.tokenizer, pd.Series(texts, dtype=object))
    np.testing.assert_allclose(got.sum_logprob[:2].astype(float), want.sum_logprob[:2], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got.perplexity[:2].astype(float), want.perplexity[:2], rtol=1e-5)
    assert got.n_tokens[:2].tolist() == [int(n) for n in want.n_tokens[:2]]
    assert got.error[2].startswith("encode_failed: ") and doc["results"][2]["sum_logprob"] is None


def test_embed_dims(server):
    base, art = server
    status, doc, _ = _request(base, "POST", "/predict", {"texts": ["To be", "or not"], "task": "embed"})
    assert status == 200
    assert [len(r["embedding"]) for r in doc["results"]] == [art.config.n_embd] * 2


def test_generate_returns_text(server):
    base, _ = server
    body = {"texts": ["First Citizen:"], "task": "generate", "options": {"max_new_tokens": 8, "temperature": 0}}
    status, doc, _ = _request(base, "POST", "/predict", body)
    assert status == 200
    (res,) = doc["results"]
    assert isinstance(res["generated"], str) and res["error"] is None and 0 <= res["n_new_tokens"] <= 8
    again = _request(base, "POST", "/predict", body)[1]["results"][0]
    assert again["generated"] == res["generated"]  # greedy is deterministic


@pytest.mark.parametrize(
    "method, path, body, ctype, status",
    [
        ("POST", "/predict", b"{oops", "application/json", 400),
        ("POST", "/predict", {"task": "score"}, "application/json", 400),
        ("POST", "/predict", {"texts": "abc"}, "application/json", 400),
        ("POST", "/predict", {"texts": ["a"] * 5}, "application/json", 400),
        ("POST", "/predict", {"texts": ["x" * 201]}, "application/json", 400),
        ("POST", "/predict", {"texts": ["a"], "task": "translate"}, "application/json", 422),
        ("POST", "/predict", {"texts": ["a"], "task": "generate", "top_p": 3}, "application/json", 422),
        ("POST", "/nope", {"texts": ["a"]}, "application/json", 404),
        ("GET", "/predict", None, None, 405),
        ("POST", "/predict", b"x" * 5000, "application/json", 413),
        ("POST", "/predict", {"texts": ["a"]}, "text/plain", 415),
    ],
)
def test_refusals(server, method, path, body, ctype, status):
    base, _ = server
    got, doc, headers = _request(base, method, path, body, ctype)
    assert got == status and doc["error"]["status"] == status and doc["error"]["message"]
    if status == 405:
        assert headers["Allow"] == "POST"
    assert _request(base, "GET", "/health")[0] == 200  # the server survives every refusal


# ------------------------------------------------------------------------------------------ hostile clients


def _connect(base) -> socket.socket:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _read_answer(sock) -> tuple[int, dict[str, str], dict]:
    """(status, lower-case headers, JSON body) of one answer read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(body)


def _is_open(sock) -> bool:
    """True while the server holds the connection: nothing to read yet, and no EOF."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(timeout)


def _timed(base, method, path, body=None):
    start = time.monotonic()
    status = _request(base, method, path, body)[0]
    return status, time.monotonic() - start


def test_idle_and_slow_clients_do_not_starve_requests(server):
    base, _ = server
    assert _request(base, "POST", "/predict", {"texts": ["warm up"]})[0] == 200
    idle = [_connect(base) for _ in range(200)]
    slow = [_connect(base) for _ in range(20)]
    try:
        for s in slow:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        for i in range(3):
            for s in slow:
                s.sendall(f"X-Slow-{i}: 1\r\n".encode())  # never the empty line that ends the headers
            for method, path, body in [("GET", "/health", None), ("POST", "/predict", {"texts": ["To be"]})]:
                status, seconds = _timed(base, method, path, body)
                assert status == 200 and seconds < 1.0, f"{method} {path}: {status} after {seconds:.2f} s"
        status, doc, _ = _request(base, "GET", "/health")
        assert doc["load"]["connections"] >= 221 and doc["load"]["busy"] == 0, doc["load"]
        assert all(_is_open(s) for s in idle + slow)
        idle[0].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # an idle connection is still served
        assert _read_answer(idle[0])[0] == 200
    finally:
        for s in idle + slow:
            s.close()


def test_health_reports_server_limits_and_keep_alive_works(server):
    base, _ = server
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    try:
        conn.request("GET", "/health")
        doc = json.loads(conn.getresponse().read())
        conn.request(
            "POST", "/predict", body=json.dumps({"texts": ["a"]}), headers={"Content-Type": "application/json"}
        )
        assert conn.getresponse().status == 200  # the second request reused the connection
    finally:
        conn.close()
    assert doc["server"] == {
        "workers": 4,
        "queue": 8,
        "max_connections": 512,
        "header_timeout_s": 10.0,
        "body_timeout_s": 30.0,
        "idle_timeout_s": 15.0,
        "retry_after_s": 1,
    }


def test_deeply_nested_body_is_400(server):
    base, _ = server
    body = b'{"texts": ' + b"[" * 2000 + b"]" * 2000 + b"}"  # json.loads alone raises RecursionError
    status, doc, _ = _request(base, "POST", "/predict", body)
    assert status == 400 and "nests arrays/objects 2001 deep, over the limit of 16" in doc["error"]["message"]
    assert _request(base, "GET", "/health")[0] == 200


def test_internal_error_is_500_json_logged_on_the_server(server, server_log):
    base, _ = server
    status, doc, _ = _request(base, "POST", "/predict", {"texts": ["ok", RAISE]})
    assert status == 500 and set(doc) == {"error"} and doc["error"]["status"] == 500
    message = doc["error"]["message"]
    error_id = message.split()[2].rstrip(";")
    assert message == f"internal error {error_id}; the server log has the details" and len(error_id) == 12
    log = server_log.read_text()
    assert f"internal error {error_id} in POST /predict\nTraceback" in log and "RuntimeError: injected fault" in log
    assert _request(base, "POST", "/predict", {"texts": ["ok"]})[0] == 200  # the server keeps serving


def test_full_pool_answers_503_with_retry_after(tight):
    def load():
        return _request(tight, "GET", "/health")[1]["load"]

    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(_request, tight, "POST", "/predict", {"texts": [SLEEP]}) for _ in range(2)]
        deadline = time.monotonic() + 10
        while load() != {"connections": 3, "busy": 1, "queued": 1}:  # 1 running + 1 queued + this /health
            assert time.monotonic() < deadline, load()
            time.sleep(0.05)
        status, doc, headers = _request(tight, "POST", "/predict", {"texts": ["a"]})
        assert status == 503 and headers["Retry-After"] == "7" and doc["error"]["status"] == 503
        assert "all 1 workers are busy and 1 requests are queued" in doc["error"]["message"]
        assert [f.result()[0] for f in held] == [200, 200]  # the queued one was served after the first
    assert _request(tight, "POST", "/predict", {"texts": ["a"]})[0] == 200


def _wait_for_answer_or_close(sock, trickle: bytes | None) -> tuple[int | None, float]:
    """(status or None for a silent close, seconds) until the server answers or closes; sends ``trickle``
    every 0.2 s meanwhile (a slow client)."""
    start, data = time.monotonic(), b""
    sock.settimeout(0.2)
    while time.monotonic() - start < 20:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if trickle is not None:
                with contextlib.suppress(OSError):
                    sock.sendall(trickle)
            continue
        if not chunk:
            break
        data += chunk
    seconds = time.monotonic() - start
    return (int(data.split()[1]) if data else None), seconds


def test_slow_and_idle_connections_time_out(tight):
    cases = {
        "slow headers": (b"GET /health HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n", 408, 1.0),
        "slow body": (b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"texts"', None, 408, 1.0),
        "idle": (b"", None, None, 4.0),
    }
    socks = {name: _connect(tight) for name in cases}
    try:
        with ThreadPoolExecutor(len(cases)) as pool:
            futures = {}
            for name, (first, trickle, _, _) in cases.items():
                socks[name].sendall(first)
                futures[name] = pool.submit(_wait_for_answer_or_close, socks[name], trickle)
            for name, (_, _, want, limit) in cases.items():
                status, seconds = futures[name].result()
                assert status == want and limit - 0.3 < seconds < limit + 3, f"{name}: {status} after {seconds:.2f} s"
    finally:
        for s in socks.values():
            s.close()


def test_keep_alive_connection_closes_after_idle_timeout(tight):
    sock = _connect(tight)
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(sock)[0] == 200
        status, seconds = _wait_for_answer_or_close(sock, None)
        assert status is None and 3.7 < seconds < 7, seconds
    finally:
        sock.close()


def test_connection_limit_answers_503(tight):
    deadline = time.monotonic() + 10
    while _request(tight, "GET", "/health")[1]["load"]["connections"] != 1:  # earlier tests' sockets are gone
        assert time.monotonic() < deadline
        time.sleep(0.05)
    idle = [_connect(tight) for _ in range(8)]
    try:
        status, doc, headers = _request(tight, "GET", "/health")  # the 9th connection
        assert status == 503 and headers["Retry-After"] == "7"
        assert doc["error"]["message"] == "8 connections are open, the limit; retry later"
        idle.pop().close()
        deadline = time.monotonic() + 5
        while _request(tight, "GET", "/health")[0] != 200:
            assert time.monotonic() < deadline, "a freed connection slot was not reused"
            time.sleep(0.05)
    finally:
        for s in idle:
            s.close()


def test_expect_model_hash_refuses_another_model_and_serves_the_right_one(tmp_path):
    path = tmp_path / "tiny"
    digest = save_tiny_artifact(path)
    cmd = [sys.executable, "-m", "jobs.serve", "--model", str(path), "--port", "0", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    wrong = "f" * 64
    refused = subprocess.run(
        [*cmd, "--expect-model-hash", wrong],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "serving on" not in refused.stdout
    assert f"has hash {digest}, but {wrong} was expected" in refused.stderr
    proc = subprocess.Popen(
        [*cmd, "--expect-model-hash", digest],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving on http://"), f"server did not start: {line!r}"
        deadline = time.monotonic() + 30
        while True:
            try:
                status, doc, _ = _request(line.split()[-1], "GET", "/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "no /health answer within 30 s"
                time.sleep(0.2)
        assert status == 200 and doc["model_hash"] == digest
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
