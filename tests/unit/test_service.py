"""The /predict request handling (udfs/service.py): routing, size and type checks, body validation with
the exact status of each refusal, and results equal to the scoring core."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd
import pytest

from udfs import service as V
from udfs import tasks

LIMITS = V.ServiceLimits(
    max_body_bytes=1000, max_texts=3, max_text_chars=20, max_new_tokens=16, default_max_new_tokens=4
)


def _body(**doc) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/nope", 404),
        ("POST", "/", 404),
        ("GET", "/predict", 405),
        ("POST", "/health", 405),
        ("PUT", "/predict", 405),
    ],
)
def test_check_route_refuses(method, path, status):
    with pytest.raises(V.ServiceError) as err:
        V.check_route(method, path)
    assert err.value.status == status
    if status == 405:
        assert err.value.headers["Allow"] in ("GET", "POST")


def test_check_route_accepts_query_and_trailing_slash():
    assert V.check_route("POST", "/predict/?x=1") == "/predict"
    assert V.check_route("GET", "/health") == "/health"


@pytest.mark.parametrize("length, status", [(None, 400), ("abc", 400), ("-1", 400), ("1001", 413)])
def test_check_body_size_refuses(length, status):
    with pytest.raises(V.ServiceError) as err:
        V.check_body_size(length, LIMITS)
    assert err.value.status == status


def test_check_body_size_accepts_up_to_the_limit():
    assert V.check_body_size("1000", LIMITS) == 1000


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
def test_check_content_type_refuses(ctype):
    with pytest.raises(V.ServiceError, match="Content-Type must be application/json") as err:
        V.check_content_type(ctype)
    assert err.value.status == 415


def test_check_content_type_accepts_parameters():
    V.check_content_type("Application/JSON; charset=utf-8")


@pytest.mark.parametrize(
    "body, status, match",
    [
        (b"{not json", 400, "not valid UTF-8 JSON"),
        (b"\xff\xfe", 400, "not valid UTF-8 JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (_body(task="score"), 400, '"texts"'),
        (_body(texts="abc"), 400, "list of strings"),
        (_body(texts=["a", 3]), 400, "list of strings"),
        (_body(texts=[]), 400, "empty"),
        (_body(texts=["a"] * 4), 400, "4 texts is over the limit of 3"),
        (_body(texts=["a", "x" * 21]), 400, r"texts\[1\] has 21 characters"),
        (_body(texts=["a"], task=1), 400, '"task" must be a string'),
        (_body(texts=["a"], task="translate"), 422, "unknown task 'translate'"),
        (_body(texts=["a"], options=[1]), 400, '"options" must be a JSON object'),
        (
            _body(texts=["a"], task="score", options={"temperature": 1.0}),
            422,
            r"unknown score options \['temperature'\]",
        ),
        (_body(texts=["a"], task="generate", max_new_tokens="8"), 400, "must be an integer"),
        (_body(texts=["a"], task="generate", max_new_tokens=True), 400, "must be an integer"),
        (_body(texts=["a"], task="generate", max_new_tokens=17), 422, "<= 16"),
        (_body(texts=["a"], task="generate", max_new_tokens=-1), 422, ">= 0"),
        (_body(texts=["a"], task="generate", temperature=-0.5), 422, "temperature"),
        (_body(texts=["a"], task="generate", top_p=1.5), 422, r"in \(0, 1\]"),
        (_body(texts=["a"], task="generate", top_k=0), 422, ">= 1"),
        (_body(texts=["a"], task="generate", seed=1, options={"seed": 2}), 400, "both at the top level"),
        (_body(texts=["a"], task="embed", max_len=0), 422, "max_len"),
    ],
)
def test_parse_predict_refuses(body, status, match):
    with pytest.raises(V.ServiceError, match=match) as err:
        V.parse_predict(body, LIMITS)
    assert err.value.status == status


def test_parse_predict_defaults_and_options():
    assert V.parse_predict(_body(texts=["a", ""]), LIMITS) == V.PredictRequest("score", ["a", ""], {})
    req = V.parse_predict(_body(texts=["a"], task="generate", temperature=0, options={"seed": 3}), LIMITS)
    assert req == V.PredictRequest("generate", ["a"], {"temperature": 0, "seed": 3, "max_new_tokens": 4})
    assert V.parse_predict(_body(texts=["a"], task="generate", top_k=None), LIMITS).options["top_k"] is None


def test_service_limits_validate():
    with pytest.raises(ValueError, match="max_texts"):
        V.ServiceLimits(max_texts=0)
    with pytest.raises(ValueError, match="default_max_new_tokens"):
        V.ServiceLimits(max_new_tokens=4, default_max_new_tokens=8)


def test_frame_to_records_makes_plain_json():
    frame = pd.DataFrame(
        {
            "a": [1.5, np.nan],
            "n": pd.array([3, None], dtype="Int32"),
            "e": pd.Series([np.array([1, 2], dtype=np.float32), None], dtype=object),
            "b": pd.array([True, None], dtype="boolean"),
        }
    )
    recs = V.frame_to_records(frame)
    assert recs == [{"a": 1.5, "n": 3, "e": [1.0, 2.0], "b": True}, {"a": None, "n": None, "e": None, "b": None}]
    json.dumps(recs, allow_nan=False)


# ----------------------------------------------------------------------------------------- with a model


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    import torch

    from model.artifact import load_artifact
    from tests.tiny_model import save_tiny_artifact

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_tiny_artifact(path)
    return load_artifact(path)


def _call(art, method, path, body=b"", ctype="application/json"):
    headers = {"content-type": ctype, "content-length": str(len(body))}
    return V.handle(art, method, path, headers, lambda n: body[:n], LIMITS)


def test_handle_health_and_errors(art):
    status, doc, _ = _call(art, "GET", "/health")
    assert status == 200 and doc["model_name"] == "tiny-0" and doc["model_hash"] == art.hash
    status, doc, headers = _call(art, "GET", "/predict")
    assert status == 405 and headers == {"Allow": "POST"} and doc["error"]["status"] == 405
    assert _call(art, "POST", "/predict", _body(texts=["a"]), ctype="text/plain")[0] == 415
    assert _call(art, "POST", "/predict", b"x" * 1001)[0] == 413


def test_handle_score_equals_core(art):
    texts = ["First Citizen:", "Before we proceed", ""]
    status, doc, _ = _call(art, "POST", "/predict", _body(texts=texts, task="score"))
    assert status == 200 and doc["task"] == "score" and len(doc["results"]) == 3
    want = tasks.score_texts(art.model, art.tokenizer, pd.Series(texts, dtype=object))
    got = pd.DataFrame(doc["results"])
    np.testing.assert_allclose(got.sum_logprob[:2].astype(float), want.sum_logprob[:2], atol=1e-5)
    assert got.error.tolist() == [None, None, "empty_text"]


def test_handle_model_refuses_option_value(art):
    status, doc, _ = _call(art, "POST", "/predict", _body(texts=["a"], task="score", max_len=10_000))
    assert status == 422 and "block_size" in doc["error"]["message"]


# ------------------------------------------------------------------------- hostile bodies, internal errors


@pytest.mark.parametrize(
    "body, depth",
    [
        (b"1", 0),
        (b'"[[[["', 0),
        (b'{"texts": ["a"]}', 2),
        (b'{"texts": ["[\\"]]]"]}', 2),
        (b"[" * 100_000, 100_000),
        (b'{"a": {"b": [[{}]]}}', 5),
        (b"", 0),
    ],
)
def test_json_depth_ignores_brackets_in_strings(body, depth):
    assert V.json_depth(body) == depth


def test_parse_predict_refuses_deep_nesting_before_parsing():
    body = b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(RecursionError):
        json.loads(body)  # what the parser alone does with it
    with pytest.raises(V.ServiceError, match="nests arrays/objects 100001 deep, over the limit of 16") as err:
        V.parse_predict(body, V.ServiceLimits(max_body_bytes=1 << 20))
    assert err.value.status == 400
    deep_ok = _body(texts=["a"], task="generate", seed=[[[[[[[[[[[[[[1]]]]]]]]]]]]]])  # 15 deep: parsed, then typed
    with pytest.raises(V.ServiceError, match="'seed' must be an integer") as err:
        V.parse_predict(deep_ok, LIMITS)
    assert err.value.status == 400


def test_parse_predict_accepts_brackets_inside_texts():
    assert V.parse_predict(_body(texts=["[" * 19]), LIMITS).texts == ["[" * 19]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"workers": 0}, "workers"),
        ({"queue": -1}, "queue"),
        ({"max_connections": 0}, "max_connections"),
        ({"header_timeout_s": 0}, "header_timeout_s"),
        ({"idle_timeout_s": float("inf")}, "idle_timeout_s"),
        ({"body_timeout_s": "5"}, "body_timeout_s"),
        ({"retry_after_s": 1.5}, "retry_after_s"),
    ],
)
def test_server_limits_validate(kwargs, match):
    with pytest.raises(ValueError, match=match):
        V.ServerLimits(**kwargs)


def test_server_limits_accept_an_empty_queue():
    assert V.ServerLimits(queue=0).queue == 0


# ------------------------------------------------------------------------------------- HTTP/1.1 framing


def test_parse_request_head():
    head = V.parse_request_head(
        b"\r\nPOST /predict?x=1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a:  2 \r\nContent-Length: 12\r\n\r\n"
    )
    assert head == V.RequestHead(
        "POST", "/predict?x=1", "HTTP/1.1", {"host": "a", "x-a": "1, 2", "content-length": "12"}
    )


@pytest.mark.parametrize(
    "head, status, match",
    [
        (b"\r\n\r\n", 400, "empty request"),
        (b"GET /health\r\n\r\n", 400, "malformed request line"),
        (b"GET  /health HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"G(T /health HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"GET /health HTTP/x\r\n\r\n", 400, "malformed HTTP version"),
        (b"GET /health HTTP/2.0\r\n\r\n", 505, "HTTP/2.0 is not supported"),
        (b"GET /health HTTP/1.1\r\nno colon\r\n\r\n", 400, "malformed header line 'no colon'"),
        (b"GET /health HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", 400, "malformed header line"),
        (b"GET /health HTTP/1.1\r\n" + b"A: 1\r\n" * 101 + b"\r\n", 431, "101 header lines"),
        (b"GET /health HTTP/1.1\r\nA: " + b"x" * (32 << 10) + b"\r\n\r\n", 431, "over 32768 bytes"),
    ],
)
def test_parse_request_head_refuses(head, status, match):
    with pytest.raises(V.ServiceError, match=match) as err:
        V.parse_request_head(head)
    assert err.value.status == status


@pytest.mark.parametrize(
    "headers, n",
    [
        ({}, 0),
        ({"content-length": "0"}, 0),
        ({"content-length": "17"}, 17),
        ({"content-length": "-1"}, None),
        ({"content-length": "1, 1"}, None),
        ({"content-length": "x"}, None),
        ({"content-length": "\u0661"}, None),
        ({"transfer-encoding": "chunked", "content-length": "5"}, None),
    ],
)
def test_framed_body_length(headers, n):
    assert V.framed_body_length(headers) == n


@pytest.mark.parametrize(
    "version, connection, keep",
    [
        ("HTTP/1.1", None, True),
        ("HTTP/1.1", "close", False),
        ("HTTP/1.1", "Keep-Alive, Close", False),
        ("HTTP/1.0", None, False),
        ("HTTP/1.0", "keep-alive", True),
    ],
)
def test_keep_alive(version, connection, keep):
    headers = {} if connection is None else {"connection": connection}
    assert V.keep_alive(V.RequestHead("GET", "/health", version, headers)) is keep


def test_encode_response():
    raw = V.encode_response(503, {"error": {"status": 503, "message": "busy"}}, {"Retry-After": "1"}, close=True)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    assert headers["Retry-After"] == "1" and headers["Connection"] == "close"
    assert headers["Content-Type"] == "application/json" and int(headers["Content-Length"]) == len(body)
    assert json.loads(body) == {"error": {"status": 503, "message": "busy"}}
    raw = V.encode_response(200, {"a": 1}, {}, close=False, head_only=True)
    assert raw.endswith(b"Content-Length: 8\r\n\r\n") and b"Connection" not in raw


def test_needs_model():
    assert V.needs_model("POST", "/predict/?x=1")
    assert not any(V.needs_model(m, p) for m, p in [("GET", "/health"), ("GET", "/predict"), ("POST", "/nope")])


def test_fault_switches(monkeypatch):
    from udfs import faults

    faults.maybe_fault_request(b"__boom__")  # off: a no-op
    monkeypatch.setenv(faults.ENV_SERVE_RAISE, "__boom__")
    monkeypatch.setenv(faults.ENV_SERVE_SLEEP, "__slow__:0.2")
    faults.maybe_fault_request(b'{"texts": ["fine"]}')
    with pytest.raises(RuntimeError, match="injected fault"):
        faults.maybe_fault_request(b'{"texts": ["__boom__"]}')
    start = time.monotonic()
    faults.maybe_fault_request(b'{"texts": ["__slow__"]}')
    assert time.monotonic() - start >= 0.2


def test_handle_health_reports_server_limits_and_load(art):
    server = V.ServerLimits(workers=2)
    load = {"connections": 3, "busy": 1, "queued": 0}
    status, doc, _ = V.handle(art, "GET", "/health", {}, lambda n: b"", LIMITS, server=server, load=load)
    assert status == 200 and doc["server"]["workers"] == 2 and doc["server"]["idle_timeout_s"] == 15.0
    assert doc["load"] == load and doc["limits"]["max_texts"] == 3


def test_handle_refuses_transfer_encoding(art):
    headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
    status, doc, _ = V.handle(art, "POST", "/predict", headers, lambda n: b"", LIMITS)
    assert status == 400 and "Transfer-Encoding is not accepted" in doc["error"]["message"]


def test_handle_answers_an_unexpected_exception_with_500_and_logs_it(art, caplog):
    def read_body(n):
        raise KeyError("secret internal detail")

    with caplog.at_level(logging.ERROR, logger="udfs.service"):
        status, doc, extra = _call_with(art, read_body)
    assert status == 500 and extra == {} and set(doc) == {"error"} and doc["error"]["status"] == 500
    message = doc["error"]["message"]
    assert "secret" not in message and "KeyError" not in message and "Traceback" not in message
    error_id = message.split()[2].rstrip(";")
    (record,) = caplog.records
    assert record.getMessage() == f"internal error {error_id} in POST /predict"
    assert record.exc_info[0] is KeyError  # the traceback is in the server's log


def _call_with(art, read_body):
    headers = {"content-type": "application/json", "content-length": "2"}
    return V.handle(art, "POST", "/predict", headers, read_body, LIMITS)
