"""The HTTP/1.1 server of ``jobs/serve.py``: bounded work, bounded waiting, standard library only.

Design (the numbers are `udfs.service.ServerLimits`):

- **One asyncio event loop holds every connection.** It reads each request head and body with
  deadlines, so an idle keep-alive connection or a client that sends half a request costs a socket
  and a few KiB, never a thread. At most ``max_connections`` sockets are open; one more is answered
  503 with ``Retry-After`` and closed. The listen backlog is ``BACKLOG``: the loop accepts at once, so
  the backlog only covers the moments it is busy.
- **Model work runs on ``workers`` threads.** A complete ``POST /predict`` is admitted when fewer than
  ``workers + queue`` requests are running or waiting; otherwise it is answered 503 with
  ``Retry-After`` at once (the queue is the ``queue`` admitted requests that wait for a thread).
  ``GET /health`` and refusals (404, 405, bad heads) are answered on the loop, so they stay fast while
  every worker is busy.
- **Deadlines.** ``idle_timeout_s``: a connection without a new request is closed (silently).
  ``header_timeout_s``: from a request's first byte to the end of its headers, else 408 and close.
  ``body_timeout_s``: to receive the body (else 408 and close), and to send the answer (else the
  connection is dropped).
- **Errors.** Every exception of the request function becomes a 500 JSON answer that carries only an
  id; the traceback is logged under that id (`udfs.service.internal_error`).

Keep-alive follows HTTP/1.1 (``Connection: close`` ends it). Bodies need a ``Content-Length``; a
request with ``Transfer-Encoding`` is answered and the connection closed. ``Expect: 100-continue`` is
answered before reading the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from udfs import service
from udfs.service import RequestHead, ServerLimits, ServiceError

log = logging.getLogger("jobs.serve")

BACKLOG = 64  # listen(2) backlog: connections the kernel holds before the loop accepts them
DRAIN_LIMIT = 64 << 20  # a refused body up to this size is read and dropped, so the client sees the answer
LINGER_S = 2.0  # after a closing answer, read (and drop) what the client still sends for this long

# app(method, target, headers, body, load) -> (status, JSON document, extra headers)
App = Callable[[str, str, dict, bytes, dict], tuple[int, dict, dict]]


def _refusal(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    return status, service.error_document(ServiceError(status, message)), dict(headers or {})


class BoundedHTTPServer:
    """Serve ``app`` over HTTP/1.1 within `ServerLimits` (see the module docstring for the design).

    Args:
        app: answers one request: ``app(method, target, headers, body, load)`` with lower-case header
            names, the whole body (b"" when it was not read) and `load`; returns ``(status, JSON
            document, extra response headers)``. It runs on a worker thread when
            ``needs_worker(method, target)``, else on the event loop (so it must be quick there).
        needs_worker: which requests do model work.
        limits: concurrency, queue and timeouts.
        max_body_bytes: bodies up to this size are read for ``app``; longer ones are not (``app``
            refuses them with 413) and are drained up to ``DRAIN_LIMIT``.
    """

    def __init__(
        self, app: App, needs_worker: Callable[[str, str], bool], limits: ServerLimits, max_body_bytes: int
    ) -> None:
        self.app, self.needs_worker, self.limits, self.max_body_bytes = app, needs_worker, limits, max_body_bytes
        self.connections = 0  # open sockets; touched by the loop thread only
        self.admitted = 0  # /predict requests running or queued; loop thread only
        self.pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="predict")

    def load(self) -> dict[str, int]:
        """``{"connections", "busy", "queued"}``: open sockets, running and waiting /predict requests."""
        busy = min(self.admitted, self.limits.workers)
        return {"connections": self.connections, "busy": busy, "queued": self.admitted - busy}

    def serve(self, host: str, port: int, on_ready: Callable[[str, int], None]) -> None:
        """Listen on ``host:port`` (0 = any free port), call ``on_ready(host, port)``, serve until
        KeyboardInterrupt."""
        try:
            asyncio.run(self._serve(host, port, on_ready))
        except KeyboardInterrupt:
            pass
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)

    async def _serve(self, host: str, port: int, on_ready: Callable[[str, int], None]) -> None:
        server = await asyncio.start_server(self._connection, host, port, limit=service.MAX_HEAD_BYTES, backlog=BACKLOG)
        on_ready(*server.sockets[0].getsockname()[:2])
        async with server:
            await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        linger = False
        try:
            if self.connections > self.limits.max_connections:
                msg = f"{self.limits.max_connections} connections are open, the limit; retry later"
                linger = await self._send(writer, *_refusal(503, msg, self._retry_after()), close=True)
                return
            keep = True
            while keep:
                keep, linger = await self._one_request(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except Exception:  # noqa: BLE001 - a fault of this wiring: still a 500 JSON answer, traceback logged
            answer = service.internal_error(f"connection from {writer.get_extra_info('peername')}")
            with contextlib.suppress(Exception):
                linger = await self._send(writer, *answer, close=True)
        finally:
            await self._close(reader, writer, linger)
            self.connections -= 1

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[bool, bool]:
        """Read, answer and log one request: ``(keep the connection, linger before closing)``."""
        lim = self.limits
        try:
            first = await asyncio.wait_for(reader.read(1), lim.idle_timeout_s)
        except TimeoutError:
            return False, False
        if not first:
            return False, False
        try:
            rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), lim.header_timeout_s)
            head = service.parse_request_head(first + rest)
        except TimeoutError:
            msg = f"request headers not complete within {lim.header_timeout_s:g} s"
            return False, await self._send(writer, *_refusal(408, msg), close=True)
        except asyncio.LimitOverrunError:
            msg = f"request line and headers are over {service.MAX_HEAD_BYTES} bytes"
            return False, await self._send(writer, *_refusal(431, msg), close=True)
        except ServiceError as exc:
            return False, await self._send(writer, exc.status, service.error_document(exc), exc.headers, close=True)
        close = not service.keep_alive(head)
        n = service.framed_body_length(head.headers)
        body = b""
        if n is None:
            close = True  # the body's end is unknown: answer, then close
        elif n <= self.max_body_bytes:
            if n and head.headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                body = await asyncio.wait_for(reader.readexactly(n), lim.body_timeout_s)
            except TimeoutError:
                msg = f"request body of {n} bytes not received within {lim.body_timeout_s:g} s"
                return False, await self._send(writer, *_refusal(408, msg), close=True)
        elif n > DRAIN_LIMIT or head.headers.get("expect", "").lower() == "100-continue":
            close = True
        elif not await self._drain(reader, n):
            return False, False
        status, doc, extra = await self._dispatch(head, body)
        if status == 503:
            close = True  # shed the connection too
        log.info(
            '%s "%s %s %s" %d',
            writer.get_extra_info("peername", ("?",))[0],
            head.method,
            head.target,
            head.version,
            status,
        )
        linger = await self._send(writer, status, doc, extra, close=close, head_only=head.method == "HEAD")
        return not close, linger

    async def _dispatch(self, head: RequestHead, body: bytes) -> tuple[int, dict, dict]:
        if not self.needs_worker(head.method, head.target):
            return self._call(head, body, self.load())
        lim = self.limits
        if self.admitted >= lim.workers + lim.queue:
            msg = (
                f"all {lim.workers} workers are busy and {lim.queue} requests are queued; "
                f"retry after {lim.retry_after_s} s"
            )
            return _refusal(503, msg, self._retry_after())
        self.admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, self._call, head, body, self.load())
        finally:
            self.admitted -= 1

    def _call(self, head: RequestHead, body: bytes, load: dict[str, int]) -> tuple[int, dict, dict]:
        try:
            return self.app(head.method, head.target, head.headers, body, load)
        except Exception:  # noqa: BLE001 - every failure of a request is a 500 answer, never a dropped connection
            return service.internal_error(f"{head.method} {head.target}")

    def _retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(self.limits.retry_after_s)}

    async def _drain(self, reader: asyncio.StreamReader, n: int) -> bool:
        """Read and drop ``n`` body bytes within the body timeout; False if they did not come."""
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                while n > 0:
                    chunk = await reader.read(min(n, 1 << 16))
                    if not chunk:
                        return False
                    n -= len(chunk)
        except TimeoutError:
            return False
        return True

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        doc: dict[str, Any],
        extra: dict[str, str],
        *,
        close: bool,
        head_only: bool = False,
    ) -> bool:
        """Write one answer within the body timeout; True when it was sent and the connection closes."""
        writer.write(service.encode_response(status, doc, extra, close=close, head_only=head_only))
        try:
            await asyncio.wait_for(writer.drain(), self.limits.body_timeout_s)
        except TimeoutError:
            writer.transport.abort()  # the client does not read its answer
            return False
        return close

    async def _close(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, linger: bool) -> None:
        """Close the connection. After a closing answer, first shut down our side and read what the client
        still sends (up to ``LINGER_S``): closing with unread input resets the connection, and the reset
        can destroy the answer before the client has read it."""
        if linger and not writer.is_closing() and writer.can_write_eof():
            try:
                writer.write_eof()
                async with asyncio.timeout(LINGER_S):
                    while await reader.read(1 << 16):
                        pass
            except (TimeoutError, ConnectionError, OSError):
                pass
        writer.close()
