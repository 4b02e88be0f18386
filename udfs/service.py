"""Request handling of the ``/predict`` HTTP service: pure functions from (method, path, headers, body)
to (status, JSON document), over the same core functions as the Spark UDFs (``udfs.tasks``).

No sockets, no threads, no paths here: ``jobs/serve.py`` and ``jobs/common/httpd.py`` are the HTTP wiring
around `handle`.

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
content type other than ``application/json``; a body nested deeper than ``MAX_JSON_DEPTH`` is a 400.
Any other exception is a **500** whose message carries only an id; the traceback goes to the log under
that id. The server (``jobs/common/httpd.py``) adds **408** (headers or body too slow, see `ServerLimits`),
**431** (request head over ``MAX_HEAD_BYTES``), **503** with ``Retry-After`` (every worker busy and the
queue full, or too many open connections) and **505**. Errors are
``{"error": {"status": N, "message": ...}}``.

The HTTP/1.1 framing the server needs is here too, as pure functions on bytes: `parse_request_head`,
`framed_body_length`, `keep_alive` and `encode_response`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import re
import uuid
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from udfs import tasks

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
MAX_JSON_DEPTH = 16  # a valid body is 2 deep ({"texts": [...]}); json.loads recurses, ~1000 levels raise
MAX_HEAD_BYTES = 32 << 10  # request line + headers; longer heads are refused with 431
MAX_HEADERS = 100  # header lines per request (http.client's limit)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # strings may hold brackets; removed before counting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask for (``jobs/serve.py`` maps its flags onto these fields).

    The defaults keep one request to about a second of CPU for a small model, so one slow client
    cannot hold a worker thread for long.
    """

    max_body_bytes: int = 1 << 20  # 1 MiB: 64 texts x 8000 chars of JSON, with room to spare
    max_texts: int = 64  # = udfs.batching.DEFAULT_MAX_ROWS: one request is at most one full micro-batch plan
    max_text_chars: int = 8000  # characters per text (Python str length)
    max_new_tokens: int = 256  # generate: upper bound of the max_new_tokens option
    default_max_new_tokens: int = 32  # generate: when the request does not say

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ServiceLimits.{name} must be a positive int, got {value!r}")
        if self.default_max_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"default_max_new_tokens {self.default_max_new_tokens} > max_new_tokens {self.max_new_tokens}"
            )


@dataclass(frozen=True)
class ServerLimits:
    """How much the HTTP server takes on at once, and how long it waits (``jobs/serve.py`` flags).

    One event-loop thread holds every connection and reads every request head and body, so idle and
    slow clients cost a socket each, not a thread. Only a complete ``POST /predict`` goes to one of
    ``workers`` threads; ``queue`` more may wait for one, and beyond ``workers + queue`` the answer is
    503 with ``Retry-After``. ``GET /health`` and refusals are answered on the loop, so they stay fast
    while every worker is busy.
    """

    workers: int = 4  # threads running /predict (model work); they share torch's --threads
    queue: int = 8  # admitted /predict requests waiting for a worker: at ~1 s each, <= 2 s of waiting
    max_connections: int = 512  # open sockets, idle keep-alive ones included; below the usual 1024 fds
    header_timeout_s: float = 10.0  # from a request's first byte to the end of its headers (slow senders)
    body_timeout_s: float = 30.0  # to receive the whole body, and to send the answer: 1 MiB at 35 KB/s
    idle_timeout_s: float = 15.0  # a connection without a request for this long is closed (keep-alive)
    retry_after_s: int = 1  # Retry-After of a 503: a /predict takes about a second

    def __post_init__(self) -> None:
        for name in ("workers", "max_connections", "retry_after_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ServerLimits.{name} must be a positive int, got {value!r}")
        if not isinstance(self.queue, int) or isinstance(self.queue, bool) or self.queue < 0:
            raise ValueError(f"ServerLimits.queue must be an int >= 0, got {self.queue!r}")
        for name in ("header_timeout_s", "body_timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"ServerLimits.{name} must be a positive number of seconds, got {value!r}")


class ServiceError(Exception):
    """A request the service refuses, with the HTTP status to answer.

    Attributes:
        status: 400, 404, 405, 408, 413, 415, 422, 431, 503 or 505.
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


def needs_model(method: str, path: str) -> bool:
    """Whether a request runs the model (``POST /predict``) and so needs a worker thread; every other
    request (``/health``, 404, 405) is answered without one.

    Example:
        >>> needs_model("POST", "/predict?x=1"), needs_model("GET", "/health"), needs_model("GET", "/predict")
        (True, False, False)
    """
    try:
        return check_route(method, path) == PREDICT_PATH
    except ServiceError:
        return False


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
        raise ServiceError(
            413,
            f"body of {n} bytes is over the limit of {limits.max_body_bytes}; send fewer or shorter texts per request",
        )
    return n


def check_content_type(content_type: str | None) -> None:
    """Accept ``application/json`` (any parameters, e.g. ``; charset=utf-8``), refuse the rest.

    Raises:
        ServiceError: 415 for any other or a missing content type.
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        raise ServiceError(415, f"Content-Type must be application/json, got {content_type!r}")


def json_depth(body: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest, counted without parsing it.

    Brackets inside strings do not count. Counting first keeps a hostile body (``[[[[...``) away from
    the recursive parser.

    Args:
        body: the raw JSON bytes (need not be valid JSON).

    Returns:
        The largest number of open ``[``/``{`` at any point; 0 for a scalar.

    Example:
        >>> json_depth(b'{"texts": ["[[["]}')
        2
    """
    stripped = np.frombuffer(_JSON_STRING.sub(b'""', body), dtype=np.uint8)
    if not stripped.size:
        return 0
    step = np.isin(stripped, (0x5B, 0x7B)).astype(np.int64) - np.isin(stripped, (0x5D, 0x7D))  # [{ +1, ]} -1
    return max(0, int(np.cumsum(step).max()))


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
        ServiceError: 400 for malformed JSON, JSON nested deeper than ``MAX_JSON_DEPTH``, missing or
            wrong-typed fields, too many or too long texts; 422 for an unknown task, unknown option
            names or out-of-range option values.

    Example:
        >>> parse_predict(b'{"texts": ["hi"], "task": "score"}', ServiceLimits())
        PredictRequest(task='score', texts=['hi'], options={})
    """
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise ServiceError(
            400,
            f"body nests arrays/objects {depth} deep, over the limit of {MAX_JSON_DEPTH}; "
            'send {"texts": [...], "task": ..., "options": {...}}',
        )
    try:
        doc = json.loads(body.decode("utf-8"))
    except RecursionError:  # not reached after the depth check; kept so the parser can never crash a request
        raise ServiceError(400, "body nests arrays/objects too deeply") from None
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
        raise ServiceError(
            400, f"{len(texts)} texts is over the limit of {limits.max_texts} per request; split the request"
        )
    for i, t in enumerate(texts):
        if len(t) > limits.max_text_chars:
            raise ServiceError(400, f"texts[{i}] has {len(t)} characters, over the limit of {limits.max_text_chars}")
    task = doc.get("task", "score")
    if not isinstance(task, str):
        raise ServiceError(400, f'"task" must be a string, got {json.dumps(task)}')
    if task not in tasks.TASKS:
        raise ServiceError(422, f"unknown task {task!r}; use one of {list(tasks.TASKS)}")
    raw = doc.get("options", {})
    if not isinstance(raw, dict):
        raise ServiceError(400, f'"options" must be a JSON object, got {type(raw).__name__}')
    top = {k: v for k, v in doc.items() if k not in _BODY_KEYS}
    both = sorted(set(top) & set(raw))
    if both:
        raise ServiceError(400, f'options {both} given both at the top level and in "options"')
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
        has the columns of ``udfs.tasks.SCHEMAS[task]`` (``error`` is set per text, never raised).

    Raises:
        ServiceError: 422 when the core refuses an option value for this model (``max_len`` above
            block_size, ``stride`` >= ``max_len``).
    """
    try:
        frame = tasks.CORES[req.task](art.model, art.tokenizer, pd.Series(req.texts, dtype=object), **req.options)
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


def internal_error(where: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The 500 answer for the exception being handled: its traceback is logged under a fresh id, and
    the client gets only that id (no traceback, no exception text).

    Call it inside an ``except`` block.

    Args:
        where: what failed, for the log line (``"POST /predict"``).

    Returns:
        ``(500, {"error": {"status": 500, "message": "internal error <id>; ..."}}, {})``.
    """
    error_id = uuid.uuid4().hex[:12]
    log.exception("internal error %s in %s", error_id, where)
    return 500, error_document(ServiceError(500, f"internal error {error_id}; the server log has the details")), {}


def handle(
    art: Artifact,
    method: str,
    path: str,
    headers: dict[str, str],
    read_body,
    limits: ServiceLimits,
    server: ServerLimits | None = None,
    load: dict[str, int] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Answer one request: route, check size and type, validate, predict. Never raises.

    Args:
        art: the loaded artifact.
        method: HTTP method, upper case.
        path: the request target.
        headers: request headers with lower-case names (``content-type``, ``content-length``).
        read_body: ``read_body(n) -> bytes``, called once with the checked length for POST bodies
            (so a body over the limit is never read).
        limits: the service limits.
        server: the server's limits, reported by ``/health`` under ``"server"`` (None = not reported).
        load: the server's current counts (``connections``, ``busy``, ``queued``), reported by
            ``/health`` under ``"load"`` (None = not reported).

    Returns:
        ``(status, JSON document, extra response headers)``; an unexpected exception is a 500 from
        `internal_error`.
    """
    try:
        route = check_route(method, path)
        if route == HEALTH_PATH:
            doc = {"status": "ok", **model_info(art), "tasks": list(tasks.TASKS), "limits": asdict(limits)}
            if server is not None:
                doc["server"] = asdict(server)
            if load is not None:
                doc["load"] = dict(load)
            return 200, doc, {}
        if "transfer-encoding" in headers:
            raise ServiceError(400, "Transfer-Encoding is not accepted; send the body with a Content-Length")
        n = check_body_size(headers.get("content-length"), limits)
        check_content_type(headers.get("content-type"))
        req = parse_predict(read_body(n), limits)
        return 200, predict(art, req), {}
    except ServiceError as exc:
        return exc.status, error_document(exc), exc.headers
    except Exception:  # noqa: BLE001 - an unexpected failure is a 500 with an id, the traceback goes to the log
        return internal_error(f"{method} {path}")


# ------------------------------------------------------------------------------------- HTTP/1.1 framing


@dataclass(frozen=True)
class RequestHead:
    """The request line and headers of one HTTP request.

    Attributes:
        method: as sent (methods are case-sensitive: ``"post"`` is not ``"POST"``).
        target: the request target (``"/predict?x=1"``).
        version: ``"HTTP/1.1"`` or ``"HTTP/1.0"``.
        headers: lower-case names; a repeated header's values joined with ``", "``.
    """

    method: str
    target: str
    version: str
    headers: dict[str, str]


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parse_request_head(head: bytes) -> RequestHead:
    """Parse a request head: the bytes up to and including the empty line that ends the headers.

    Args:
        head: ``b"POST /predict HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"`` (leading empty lines are ignored),
            decoded as ISO-8859-1, as HTTP defines header bytes.

    Returns:
        The `RequestHead`.

    Raises:
        ServiceError: 400 for a malformed request line or header line, 431 for more than
            ``MAX_HEADERS`` headers or a head over ``MAX_HEAD_BYTES``, 505 for an HTTP version other
            than 1.0 and 1.1.

    Example:
        >>> parse_request_head(b"GET /health HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n").headers
        {'host': 'a'}
    """
    if len(head) > MAX_HEAD_BYTES:
        raise ServiceError(431, f"request line and headers are over {MAX_HEAD_BYTES} bytes")
    lines = head.decode("iso-8859-1").lstrip("\r\n").split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ServiceError(400, "empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise ServiceError(400, f"malformed request line {lines[0][:100]!r}; expected 'METHOD /path HTTP/1.1'")
    method, target, version = parts
    if not re.fullmatch(r"HTTP/\d\.\d", version):
        raise ServiceError(400, f"malformed HTTP version {version[:20]!r}")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise ServiceError(505, f"{version} is not supported; use HTTP/1.1")
    if len(lines) - 1 > MAX_HEADERS:
        raise ServiceError(431, f"{len(lines) - 1} header lines, over the limit of {MAX_HEADERS}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):  # also refuses obsolete line folding (a leading space)
            raise ServiceError(400, f"malformed header line {line[:100]!r}")
        name, value = name.lower(), value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return RequestHead(method=method, target=target, version=version, headers=headers)


def framed_body_length(headers: dict[str, str]) -> int | None:
    """How many body bytes follow the head on the connection, whatever the request is.

    Args:
        headers: lower-case request headers.

    Returns:
        ``Content-Length`` (0 when absent), or None when the body's end cannot be known
        (``Transfer-Encoding``, or a Content-Length that is not one non-negative integer): the server
        then answers and closes the connection.

    Example:
        >>> framed_body_length({"content-length": "12"}), framed_body_length({})
        (12, 0)
    """
    if "transfer-encoding" in headers:
        return None
    value = headers.get("content-length")
    if value is None:
        return 0
    return int(value) if value.isascii() and value.isdigit() else None


def keep_alive(head: RequestHead) -> bool:
    """Whether the client lets the connection stay open after the answer (HTTP/1.1 unless
    ``Connection: close``; HTTP/1.0 only with ``Connection: keep-alive``)."""
    tokens = {t.strip().lower() for t in head.headers.get("connection", "").split(",")}
    if head.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def encode_response(
    status: int, doc: dict[str, Any], extra: dict[str, str], *, close: bool, head_only: bool = False
) -> bytes:
    """The bytes of one JSON answer: status line, headers, body.

    Args:
        status: the HTTP status (200, 4xx, 5xx).
        doc: the JSON document of the body.
        extra: more headers (``Allow``, ``Retry-After``).
        close: send ``Connection: close`` (the server closes after writing).
        head_only: omit the body (a ``HEAD`` request); ``Content-Length`` still gives its size.

    Returns:
        The HTTP/1.1 response bytes.
    """
    payload = json.dumps(doc).encode("utf-8")
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Server: lakelm-serve/1",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1") + (b"" if head_only else payload)
