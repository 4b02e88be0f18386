"""The /predict HTTP service end to end: ``python -m jobs.serve`` as a subprocess on 127.0.0.1 (any free
port), called with urllib; results equal the scoring core, and every refusal has its 4xx status.
No Spark session is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO
from tests.tiny_model import save_tiny_artifact
from udfs import scoring as S

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, loaded Artifact) of a running server on the tiny model; stopped after the module."""
    import torch

    from model.artifact import load_artifact

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_tiny_artifact(path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.serve", "--model", str(path), "--port", "0", "--threads", "1",
         "--max-texts", "4", "--max-text-chars", "200", "--max-body-bytes", "4096"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving on http://"), f"server did not start: {line!r} {proc.stderr.read()}"
        base = line.split()[-1]
        deadline = time.monotonic() + 30
        while True:
            try:
                _request(base, "GET", "/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "no /health answer within 30 s"
                time.sleep(0.2)
        yield base, load_artifact(path)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


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
    want = S.score_texts(art.model, art.tokenizer, pd.Series(texts, dtype=object))
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
