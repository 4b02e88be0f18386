"""Request handling of the ``/predict`` HTTP service: pure functions from (method, path, headers, body)
to (status, JSON document), over the same core functions as the Spark UDFs (``udfs.scoring``).

No sockets, no threads, no paths here: ``jobs/serve.py`` is the thin HTTP wiring around `handle`.

Requests::

    POST /predict   Content-Type: application/json
    {"texts": ["...", ...], "task": "score" | "embed" | "generate", "options": {...}}   # options optional
    GET  /health    -> {"status": "ok", "model_name": ..., "model_hash": ..., "tasks": [...], "limits": {...}}

Options per task (as the keyword options of `score_texts` / `embed_texts` / `generate_texts`):
``score``: ``max_len``, ``stride``; ``embed``: ``max_len``; ``generate``: ``max_new_tokens``,
``temperature``, ``top_k``, ``top_p``, ``seed``. Options may also be given at the top level of the body.

Status codes (the choice between 400 and 422): **400** when the body is not what the protocol
allows whatever the model: not JSON, not an object, ``texts`` missing or not a list of strings, an
option of the wrong JSON type, too many texts or a text too long (`ServiceLimits`). **422** when the
request is well formed but its values are not usable: an unknown task, an unknown option name, or an
option value out of range (``top_p`` = 2, ``max_len`` above the model's block size). **404** unknown
path, **405** wrong method (with ``Allow``), **413** body larger than ``max_body_bytes``, **415**
content type other than ``application/json``. Errors are ``{"error": {"status": N, "message": ...}}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from udfs import scoring as S

if TYPE_CHECKING:
    from model.artifact import Artifact

PREDICT_PATH = "/predict"
HEALTH_PATH = "/health"
ROUTES = {PREDICT_PATH: "POST", HEALTH_PATH: "GET"}

# option -> (JSON types accepted, check of the value, what the check means); bool is not an int here
_INT, _NUM = (int,), (int, float)
OPTION_SPECS: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "max_len": (_INT, lambda v: v >= 1, ">= 1 (and <= the model's block_size)"),
    "stride": (_INT, lambda v: v >= 1, ">= 1 (and < max_len)"),
    "max_new_tokens": (_INT, lambda v: v >= 0, ">= 0"),
    "temperature": (_NUM, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0 (0 = greedy)"),
    "top_k": (_INT, lambda v: v >= 1, ">= 1"),
    "top_p": (_NUM, lambda v: 0 < v <= 1, "in (0, 1]"),
    "seed": (_INT, lambda v: v >= 0, ">= 0"),
}
TASK_OPTIONS = {
    "score": ("max_len", "stride"),
    "embed": ("max_len",),
    "generate": ("max_new_tokens", "temperature", "top_k", "top_p", "seed"),
}
_BODY_KEYS = {"texts", "task", "options"}


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask for (``jobs/serve.py`` maps its flags onto these fields).

    The defaults keep one request to about a second of CPU for a small model, so one slow client
    cannot hold a worker thread for long.
    """

    max_body_bytes: int = 1 << 20  # 1 MiB: 64 texts x 8000 chars of JSON, with room to spare
    max_texts: int = 64  # = udfs.scoring.DEFAULT_MAX_ROWS: one request is at most one full micro-batch plan
    max_text_chars: int = 8000  # characters per text (Python str length)
    max_new_tokens: int = 256  # generate: upper bound of the max_new_tokens option
    default_max_new_tokens: int = 32  # generate: when the request does not say

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ServiceLimits.{name} must be a positive int, got {value!r}")
        if self.default_max_new_tokens > self.max_new_tokens:
            raise ValueError(f"default_max_new_tokens {self.default_max_new_tokens} > max_new_tokens "
                             f"{self.max_new_tokens}")


class ServiceError(Exception):
    """A request the service refuses, with the HTTP status to answer.

    Attributes:
        status: 400, 404, 405, 413, 415 or 422.
        message: what was wrong and what to send instead.
        headers: extra response headers (``Allow`` for 405).
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class PredictRequest:
    """A validated ``/predict`` request.

    Attributes:
        task: ``"score"``, ``"embed"`` or ``"generate"``.
        texts: the texts, in request order (strings, possibly empty).
        options: keyword options of the task's core function (only names of ``TASK_OPTIONS[task]``).
    """

    task: str
    texts: list[str]
    options: dict[str, Any] = field(default_factory=dict)


def check_route(method: str, path: str) -> str:
    """The route of ``path`` (query string ignored) if ``method`` is allowed on it.

    Args:
        method: the HTTP method, upper case (``"GET"``, ``"POST"``).
        path: the request target (``"/predict?x=1"`` routes as ``"/predict"``).

    Returns:
        ``PREDICT_PATH`` or ``HEALTH_PATH``.

    Raises:
        ServiceError: 404 for an unknown path, 405 (with ``Allow``) for a method the path does not take.

    Example:
        >>> check_route("GET", "/health")
        '/health'
    """
    route = path.split("?", 1)[0].rstrip("/") or "/"
    if route not in ROUTES:
        raise ServiceError(404, f"no such path {route!r}; use POST {PREDICT_PATH} or GET {HEALTH_PATH}")
    if method != ROUTES[route]:
        raise ServiceError(405, f"{route} takes {ROUTES[route]}, not {method}", {"Allow": ROUTES[route]})
    return route


def check_body_size(content_length: str | None, limits: ServiceLimits) -> int:
    """Bytes to read for a POST body, checked before reading it.

    Args:
        content_length: the ``Content-Length`` header, or None when absent.
        limits: the service limits (``max_body_bytes``).

    Returns:
        The body length in bytes.

    Raises:
        ServiceError: 400 for a missing or invalid length, 413 for a body over ``max_body_bytes``.
    """
    if content_length is None:
        raise ServiceError(400, "POST needs a Content-Length header (chunked bodies are not accepted)")
    try:
        n = int(content_length)
    except ValueError:
        raise ServiceError(400, f"invalid Content-Length {content_length!r}") from None
    if n < 0:
        raise ServiceError(400, f"invalid Content-Length {content_length!r}")
    if n > limits.max_body_bytes:
        raise ServiceError(413, f"body of {n} bytes is over the limit of {limits.max_body_bytes}; "
                                "send fewer or shorter texts per request")
    return n


def check_content_type(content_type: str | None) -> None:
    """Accept ``application/json`` (any parameters, e.g. ``; charset=utf-8``), refuse the rest.

    Raises:
        ServiceError: 415 for any other or a missing content type.
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        raise ServiceError(415, f"Content-Type must be application/json, got {content_type!r}")


def _check_option(name: str, value: Any, limits: ServiceLimits) -> Any:
    types, ok, meaning = OPTION_SPECS[name]
    if value is None and name in ("top_k", "top_p", "max_len", "stride"):
        return None  # the core's own default
    if isinstance(value, bool) or not isinstance(value, types):
        kind = "an integer" if types == _INT else "a number"
        raise ServiceError(400, f"option {name!r} must be {kind}, got {json.dumps(value)}")
    if not ok(value):
        raise ServiceError(422, f"option {name!r} must be {meaning}, got {value}")
    if name == "max_new_tokens" and value > limits.max_new_tokens:
        raise ServiceError(422, f"option 'max_new_tokens' must be <= {limits.max_new_tokens}, got {value}")
    return value


def parse_predict(body: bytes, limits: ServiceLimits) -> PredictRequest:
    """Validate a ``/predict`` body into a `PredictRequest`.

    Args:
        body: the raw request body (UTF-8 JSON).
        limits: texts per request, characters per text, ``max_new_tokens`` bound.

    Returns:
        The request; ``generate`` gets ``max_new_tokens = limits.default_max_new_tokens`` when absent.

    Raises:
        ServiceError: 400 for malformed JSON, missing or wrong-typed fields, too many or too long
            texts; 422 for an unknown task, unknown option names or out-of-range option values.

    Example:
        >>> parse_predict(b'{"texts": ["hi"], "task": "score"}', ServiceLimits())
        PredictRequest(task='score', texts=['hi'], options={})
    """
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ServiceError(400, f"body is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ServiceError(400, f"body must be a JSON object, got {type(doc).__name__}")
    if "texts" not in doc:
        raise ServiceError(400, 'body needs "texts": a list of strings')
    texts = doc["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ServiceError(400, '"texts" must be a list of strings')
    if not texts:
        raise ServiceError(400, '"texts" is empty; send at least one text')
    if len(texts) > limits.max_texts:
        raise ServiceError(400, f"{len(texts)} texts is over the limit of {limits.max_texts} per request; "
                                "split the request")
    for i, t in enumerate(texts):
        if len(t) > limits.max_text_chars:
            raise ServiceError(400, f"texts[{i}] has {len(t)} characters, over the limit of {limits.max_text_chars}")
    task = doc.get("task", "score")
    if not isinstance(task, str):
        raise ServiceError(400, f'"task" must be a string, got {json.dumps(task)}')
    if task not in S.TASKS:
        raise ServiceError(422, f"unknown task {task!r}; use one of {list(S.TASKS)}")
    raw = doc.get("options", {})
    if not isinstance(raw, dict):
        raise ServiceError(400, f'"options" must be a JSON object, got {type(raw).__name__}')
    top = {k: v for k, v in doc.items() if k not in _BODY_KEYS}
    both = sorted(set(top) & set(raw))
    if both:
        raise ServiceError(400, f"options {both} given both at the top level and in \"options\"")
    raw = {**top, **raw}
    unknown = sorted(set(raw) - set(TASK_OPTIONS[task]))
    if unknown:
        raise ServiceError(422, f"unknown {task} options {unknown}; allowed: {list(TASK_OPTIONS[task])}")
    options = {name: _check_option(name, value, limits) for name, value in raw.items()}
    if task == "generate":
        options.setdefault("max_new_tokens", limits.default_max_new_tokens)
    return PredictRequest(task=task, texts=list(texts), options=options)


def _json_value(value: Any) -> Any:
    """A DataFrame cell as plain JSON: NaN/NA -> None, numpy scalars and arrays -> Python values."""
    if isinstance(value, np.ndarray):
        return [float(x) for x in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    return value


def frame_to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One JSON-able dict per row of a core function's output (``score_texts`` ...), in row order.

    Args:
        frame: the core's output; NaN/NA cells become None, embeddings become lists of floats.

    Returns:
        ``[{column: value, ...}, ...]`` in ``frame``'s row order.
    """
    cols = list(frame.columns)
    return [{c: _json_value(v) for c, v in zip(cols, row)} for row in frame.itertuples(index=False, name=None)]


def predict(art: Artifact, req: PredictRequest) -> dict[str, Any]:
    """Run the request's task with the task's core function (the one the Spark UDFs run).

    Args:
        art: the loaded artifact (model + tokenizer).
        req: a validated request.

    Returns:
        ``{"task", "model_name", "model_hash", "results": [one dict per text, in order]}``; each result
        has the columns of ``udfs.scoring.SCHEMAS[task]`` (``error`` is set per text, never raised).

    Raises:
        ServiceError: 422 when the core refuses an option value for this model (``max_len`` above
            block_size, ``stride`` >= ``max_len``).
    """
    try:
        frame = S.CORES[req.task](art.model, art.tokenizer, pd.Series(req.texts, dtype=object), **req.options)
    except ValueError as exc:
        raise ServiceError(422, f"bad {req.task} options for this model: {exc}") from None
    return {"task": req.task, **model_info(art), "results": frame_to_records(frame)}


def model_info(art: Artifact) -> dict[str, str]:
    """``{"model_name", "model_hash"}`` of an artifact: lineage ``model_name`` (else the folder name) and
    its ``artifact_hash``."""
    import os

    lineage = (art.metadata or {}).get("lineage") or {}
    name = lineage.get("model_name") or os.path.basename(os.path.normpath(str(art.path)))
    return {"model_name": str(name), "model_hash": art.hash}


def error_document(exc: ServiceError) -> dict[str, Any]:
    """The JSON body of an error answer: ``{"error": {"status": N, "message": "..."}}``."""
    return {"error": {"status": exc.status, "message": exc.message}}


def handle(
    art: Artifact,
    method: str,
    path: str,
    headers: dict[str, str],
    read_body,
    limits: ServiceLimits,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Answer one request: route, check size and type, validate, predict.

    Args:
        art: the loaded artifact.
        method: HTTP method, upper case.
        path: the request target.
        headers: request headers with lower-case names (``content-type``, ``content-length``).
        read_body: ``read_body(n) -> bytes``, called once with the checked length for POST bodies
            (so a body over the limit is never read).
        limits: the service limits.

    Returns:
        ``(status, JSON document, extra response headers)``.
    """
    try:
        route = check_route(method, path)
        if route == HEALTH_PATH:
            return 200, {"status": "ok", **model_info(art), "tasks": list(S.TASKS), "limits": asdict(limits)}, {}
        n = check_body_size(headers.get("content-length"), limits)
        check_content_type(headers.get("content-type"))
        req = parse_predict(read_body(n), limits)
        return 200, predict(art, req), {}
    except ServiceError as exc:
        return exc.status, error_document(exc), exc.headers
