"""The /predict request handling (udfs/service.py): routing, size and type checks, body validation with
the exact status of each refusal, and results equal to the scoring core."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from udfs import scoring as S
from udfs import service as V

LIMITS = V.ServiceLimits(max_body_bytes=1000, max_texts=3, max_text_chars=20, max_new_tokens=16,
                         default_max_new_tokens=4)


def _body(**doc) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "method, path, status",
    [("GET", "/nope", 404), ("POST", "/", 404), ("GET", "/predict", 405), ("POST", "/health", 405),
     ("PUT", "/predict", 405)],
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
        (_body(texts=["a"], task="score", options={"temperature": 1.0}), 422, r"unknown score options \['temperature'\]"),
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
    frame = pd.DataFrame({"a": [1.5, np.nan], "n": pd.array([3, None], dtype="Int32"),
                          "e": pd.Series([np.array([1, 2], dtype=np.float32), None], dtype=object),
                          "b": pd.array([True, None], dtype="boolean")})
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
    want = S.score_texts(art.model, art.tokenizer, pd.Series(texts, dtype=object))
    got = pd.DataFrame(doc["results"])
    np.testing.assert_allclose(got.sum_logprob[:2].astype(float), want.sum_logprob[:2], atol=1e-5)
    assert got.error.tolist() == [None, None, "empty_text"]


def test_handle_model_refuses_option_value(art):
    status, doc, _ = _call(art, "POST", "/predict", _body(texts=["a"], task="score", max_len=10_000))
    assert status == 422 and "block_size" in doc["error"]["message"]
