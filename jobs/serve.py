"""Serve a model artifact over HTTP: ``POST /predict`` (score, embed, generate) and ``GET /health``.

    python -m jobs.serve --model lake/_artifacts/gpt-... [--host 127.0.0.1] [--port 8000] [--threads 1] \\
        [--max-texts 64] [--max-text-chars 8000] [--max-body-bytes 1048576] [--max-new-tokens 256]

    curl -s localhost:8000/predict -H 'Content-Type: application/json' \\
        -d '{"texts": ["To be, or not to be"], "task": "score"}'

The artifact is loaded (and verified against its manifest) once at start; a bad artifact exits with
code 2 before the port opens. Requests are answered by ``udfs.service.handle`` with the same core
functions as the Spark UDFs. Standard library only (``http.server.ThreadingHTTPServer``); torch runs
``--threads`` intra-op threads, shared by all request threads. On start one line
``serving on http://HOST:PORT`` goes to stdout (with ``--port 0`` the chosen port is in it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jobs import cli
from udfs import service

log = logging.getLogger("jobs.serve")

_DRAIN_LIMIT = 64 << 20  # a refused body up to this size is read and dropped, so the client sees the answer


def make_handler(art, limits: service.ServiceLimits) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one loaded artifact and the limits."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "lakelm-serve/1"

        def _answer(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            read = {"n": 0}

            def read_body(n: int) -> bytes:
                read["n"] = n
                return self.rfile.read(n)

            status, doc, extra = service.handle(art, self.command, self.path, headers, read_body, limits)
            if self.command == "POST" and not read["n"]:
                self._drain(headers.get("content-length"))
            payload = json.dumps(doc).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def _drain(self, content_length: str | None) -> None:
            try:
                n = int(content_length or 0)
            except ValueError:
                n = -1
            if 0 <= n <= _DRAIN_LIMIT:
                while n > 0:
                    chunk = self.rfile.read(min(n, 1 << 16))
                    if not chunk:
                        break
                    n -= len(chunk)
            else:
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        def log_message(self, fmt: str, *args) -> None:
            log.info("%s %s", self.address_string(), fmt % args)

    return Handler


def build_parser() -> argparse.ArgumentParser:
    """Flags: the artifact, where to listen, torch threads, and one flag per ``ServiceLimits`` field."""
    d = service.ServiceLimits()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model artifact folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 = every interface)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 = any free port (printed at start)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--max-texts", type=int, default=d.max_texts)
    p.add_argument("--max-text-chars", type=int, default=d.max_text_chars)
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--default-max-new-tokens", type=int, default=d.default_max_new_tokens)
    return p


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    args = build_parser().parse_args(argv)
    import torch

    from model.artifact import ArtifactIntegrityError, load_artifact

    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        limits = service.ServiceLimits(
            max_body_bytes=args.max_body_bytes, max_texts=args.max_texts, max_text_chars=args.max_text_chars,
            max_new_tokens=args.max_new_tokens, default_max_new_tokens=args.default_max_new_tokens)
        torch.set_num_threads(args.threads)
        art = load_artifact(args.model)
    except (ArtifactIntegrityError, OSError, ValueError) as exc:
        log.error("cannot serve: %s", exc)
        return cli.EXIT_USAGE
    server = ThreadingHTTPServer((args.host, args.port), make_handler(art, limits))
    host, port = server.server_address[:2]
    log.info("model %s, limits %s", service.model_info(art), limits)
    print(f"serving on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
