"""Serve a model artifact over HTTP: ``POST /predict`` (score, embed, generate) and ``GET /health``.

    python -m jobs.serve --model lake/_artifacts/gpt-... [--host 127.0.0.1] [--port 8000] [--threads 1] \\
        [--max-texts 64] [--max-text-chars 8000] [--max-body-bytes 1048576] [--max-new-tokens 256] \\
        [--workers 4] [--queue 8] [--max-connections 512] [--header-timeout 10] [--body-timeout 30] \\
        [--idle-timeout 15]

    curl -s localhost:8000/predict -H 'Content-Type: application/json' \\
        -d '{"texts": ["To be, or not to be"], "task": "score"}'

The artifact is loaded (and verified against its manifest) once at start; a bad artifact exits with
code 2 before the port opens. Requests are answered by ``udfs.service.handle`` with the same core
functions as the Spark UDFs. The server (``jobs/common/httpd.py``, standard library only) holds every
connection on one event loop with header, body and idle deadlines, runs ``/predict`` on ``--workers``
threads with ``--queue`` more waiting, and answers 503 with ``Retry-After`` beyond that; torch runs
``--threads`` intra-op threads, shared by the workers. On start one line
``serving on http://HOST:PORT`` goes to stdout (with ``--port 0`` the chosen port is in it).
"""

from __future__ import annotations

import argparse
import logging
import sys

from jobs.common import cli
from jobs.common.httpd import BoundedHTTPServer
from udfs import faults, service

log = logging.getLogger("jobs.serve")


def make_app(art, limits: service.ServiceLimits, server: service.ServerLimits):
    """The request function of `BoundedHTTPServer`: ``udfs.service.handle`` bound to one loaded artifact
    and the limits (the fault switches of ``udfs.faults`` run first)."""

    def app(method: str, target: str, headers: dict[str, str], body: bytes, load: dict[str, int]):
        faults.maybe_fault_request(body)
        return service.handle(art, method, target, headers, lambda n: body[:n], limits, server=server, load=load)

    return app


def build_parser() -> argparse.ArgumentParser:
    """Flags: the artifact, where to listen, torch threads, one flag per ``ServiceLimits`` and
    ``ServerLimits`` field."""
    d, sd = service.ServiceLimits(), service.ServerLimits()
    p = cli.job_parser(__doc__.splitlines()[0], lake=False, config=False, spark=False)
    p.add_argument("--model", required=True, help="a lakelm artifact folder or a local Hugging Face folder")
    p.add_argument(
        "--expect-model-hash",
        metavar="HASH",
        help="refuse to start (exit 2) unless the model's hash (an artifact: sha256 of manifest.json; "
        "a Hugging Face folder: model.hf_folder.folder_hash) is HASH (default: any intact model)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 = every interface)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 = any free port (printed at start)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--max-texts", type=int, default=d.max_texts, help="texts per /predict request at most")
    p.add_argument("--max-text-chars", type=int, default=d.max_text_chars, help="characters per text at most")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="request body size at most; more: 413")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="generate: max_new_tokens at most")
    p.add_argument(
        "--default-max-new-tokens",
        type=int,
        default=d.default_max_new_tokens,
        help="generate: max_new_tokens of a request that gives none",
    )
    p.add_argument("--workers", type=int, default=sd.workers, help="threads running /predict")
    p.add_argument("--queue", type=int, default=sd.queue, help="/predict requests waiting for a worker; more: 503")
    p.add_argument("--max-connections", type=int, default=sd.max_connections, help="open sockets; more: 503")
    p.add_argument("--header-timeout", type=float, default=sd.header_timeout_s, help="seconds to send the headers")
    p.add_argument(
        "--body-timeout", type=float, default=sd.body_timeout_s, help="seconds to send the body, and to read the answer"
    )
    p.add_argument(
        "--idle-timeout", type=float, default=sd.idle_timeout_s, help="seconds a connection may wait between requests"
    )
    p.add_argument("--retry-after", type=int, default=sd.retry_after_s, help="Retry-After seconds of a 503")
    return p


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    args = build_parser().parse_args(argv)
    import torch

    from model.artifact import ArtifactIntegrityError
    from model.loading import load_model

    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        limits = service.ServiceLimits(
            max_body_bytes=args.max_body_bytes,
            max_texts=args.max_texts,
            max_text_chars=args.max_text_chars,
            max_new_tokens=args.max_new_tokens,
            default_max_new_tokens=args.default_max_new_tokens,
        )
        server_limits = service.ServerLimits(
            workers=args.workers,
            queue=args.queue,
            max_connections=args.max_connections,
            header_timeout_s=args.header_timeout,
            body_timeout_s=args.body_timeout,
            idle_timeout_s=args.idle_timeout,
            retry_after_s=args.retry_after,
        )
        torch.set_num_threads(args.threads)
        art = load_model(args.model, expected_hash=args.expect_model_hash)
    except (ArtifactIntegrityError, OSError, ValueError) as exc:
        log.error("cannot serve: %s", exc)
        return cli.EXIT_USAGE
    server = BoundedHTTPServer(
        make_app(art, limits, server_limits), service.needs_model, server_limits, limits.max_body_bytes
    )
    log.info("model %s, limits %s, server %s", service.model_info(art), limits, server_limits)

    def ready(host: str, port: int) -> None:
        print(f"serving on http://{host}:{port}", flush=True)

    try:
        server.serve(args.host, args.port, ready)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return cli.EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
