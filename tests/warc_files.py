"""Web-archive fixtures: WARC, WET and ARC files written with warcio's writer from real pages.

The pages are ``tests/data/zyte_html_slice.jsonl.gz`` (6 article pages with their HTML and the visible
text resiliparse extracts from them). Each helper returns one record's bytes (one gzip member when
``gz``), so tests can concatenate, cut and corrupt records one at a time.
"""

from __future__ import annotations

import gzip
import io
import json

from tests.conftest import DATA


def load_pages() -> list[dict]:
    """The 6 pages: dicts with ``id``, ``url``, ``html`` (str) and ``wet_text`` (resiliparse, all visible text)."""
    with gzip.open(DATA / "zyte_html_slice.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _writer(gz: bool):
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    return buf, WARCWriter(buf, gzip=gz)


def http_response(
    body: bytes, content_type: str | None = "text/html; charset=utf-8", status: str = "200 OK", headers: tuple = ()
) -> bytes:
    """The bytes of an HTTP response: status line, headers, blank line, body."""
    lines = [f"HTTP/1.1 {status}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def response_record(url: str, http: bytes, gz: bool = True) -> bytes:
    """A WARC response record holding the HTTP response bytes ``http``."""
    buf, w = _writer(gz)
    w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(http), length=len(http)))
    return buf.getvalue()


def request_record(url: str, gz: bool = True) -> bytes:
    host = url.split("/")[2]
    http = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tests\r\n\r\n".encode()
    buf, w = _writer(gz)
    w.write_record(w.create_warc_record(url, "request", payload=io.BytesIO(http), length=len(http)))
    return buf.getvalue()


def warcinfo_record(gz: bool = True) -> bytes:
    buf, w = _writer(gz)
    w.write_record(w.create_warcinfo_record("tests.warc.gz", {"software": "lakelm tests", "format": "WARC 1.0"}))
    return buf.getvalue()


def metadata_record(url: str, gz: bool = True) -> bytes:
    body = b"fetchTimeMs: 120\r\n"
    buf, w = _writer(gz)
    rec = w.create_warc_record(
        url, "metadata", payload=io.BytesIO(body), length=len(body), warc_content_type="application/warc-fields"
    )
    w.write_record(rec)
    return buf.getvalue()


def revisit_record(url: str, gz: bool = True) -> bytes:
    buf, w = _writer(gz)
    w.write_record(w.create_revisit_record(url, "sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", url, "2019-07-15T12:00:00Z"))
    return buf.getvalue()


def conversion_record(url: str, text: str, gz: bool = True) -> bytes:
    """A WET record: the page's text as ``text/plain``."""
    body = text.encode("utf-8")
    buf, w = _writer(gz)
    rec = w.create_warc_record(
        url, "conversion", payload=io.BytesIO(body), length=len(body), warc_content_type="text/plain"
    )
    w.write_record(rec)
    return buf.getvalue()


def page_record(page: dict, gz: bool = True, charset: str = "utf-8") -> bytes:
    """A 200 response with the page's HTML encoded in ``charset`` (declared in the HTTP Content-Type)."""
    body = page["html"].encode(charset)
    return response_record(page["url"], http_response(body, f"text/html; charset={charset}"), gz)


def arc_file(pages: list[dict], gz: bool = False) -> bytes:
    """An ARC v1 file (Internet Archive's format before WARC): a filedesc header record, then one HTTP response
    record per page. warcio reads ARC but does not write it, so the bytes are laid out here."""
    version = b"1 0 lakelm-tests\nURL IP-address Archive-date Content-type Archive-length\n"
    records = [b"filedesc://tests.arc 0.0.0.0 20190715120000 text/plain %d\n%s\n" % (len(version), version)]
    for page in pages:
        http = http_response(page["html"].encode("utf-8"))
        head = f"{page['url']} 93.184.216.34 20190715120000 text/html {len(http)}\n".encode()
        records.append(head + http + b"\n")
    if gz:
        return b"".join(gzip.compress(r, mtime=0) for r in records)
    return b"".join(records)
