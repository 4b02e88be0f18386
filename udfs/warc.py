"""Reading web archives (WARC, WARC.gz, WET, ARC) into documents, with a reason for every record not kept.

The core is pure: ``iter_archive_rows(stream, cfg)`` reads one archive from a binary stream and yields one
``ArchiveRow`` per record it found, in file order. Every record ends in exactly one bucket:

* a **document** (``skip`` and ``reason`` None): a response/resource record with an HTML or text payload (HTTP
  headers stripped, chunked and gzip transfer undone, charset from the HTTP header, else detected, HTML turned
  into text with the curation chain's extractor, ``udfs.curation.normalize.html_to_text``), or a WET
  ``conversion`` record (already text);
* **skipped** (``skip`` set, nothing wrong with the file): ``request``, ``metadata`` (warcinfo, metadata, ARC
  file header and other record types), ``non_html`` (images, PDFs, scripts...), ``http_status`` (not 2xx),
  ``empty`` (no payload, a revisit record, or no text after extraction);
* **quarantined** (``reason`` set, the bytes are damaged): ``truncated`` (the file ends inside a record),
  ``malformed_header`` (no version line, a header line without a colon, a bad Content-Length), ``bad_gzip``
  (a gzip member that does not inflate, or bytes between members that are not gzip), ``decode_error``
  (undecodable text or content encoding), ``too_large`` (a record over ``max_record_bytes``).

So ``records = documents + skipped + quarantined`` for every file. A damaged record never ends the file: for
``.gz`` files each gzip member is inflated on its own (the WARC standard's record-at-a-time compression, which
Common Crawl uses), and after a bad member the reader moves to the next gzip header; in uncompressed files it
moves to the next ``WARC/1.x`` version line (or the next ARC header line). Memory per file is bounded by one
record (``max_record_bytes``), never the whole file.

The record framing is ours rather than fastwarc's or warcio's because both stop (or skip without telling)
at the first damaged record, and the accounting above needs every byte range of the file named.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "ARCHIVE_FORMATS",
    "QUARANTINE_REASONS",
    "SKIP_REASONS",
    "ArchiveConfig",
    "ArchiveRow",
    "domain_of",
    "iter_archive_rows",
]

ARCHIVE_FORMATS = ("warc", "arc")
SKIP_REASONS = ("request", "metadata", "non_html", "http_status", "empty")
QUARANTINE_REASONS = ("truncated", "malformed_header", "bad_gzip", "decode_error", "too_large")

_GZIP_MAGIC = b"\x1f\x8b\x08"
_CHUNK = 1 << 16  # bytes read from the file at a time
_MAX_HEADER_BYTES = 64 << 10  # a WARC or HTTP header block longer than this is malformed
_HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml+xhtml")
_TEXT_TYPES = ("text/plain",)
_HTTP_TYPES = ("application/http",)
_CHARSET_RE = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]{1,40})""", re.IGNORECASE)


@dataclass(frozen=True)
class ArchiveConfig:
    """How ``iter_archive_rows`` reads an archive.

    Attributes:
        format: "warc" (WARC 1.0/1.1 and WET, plain or ``.gz``) or "arc" (ARC v1/v2, plain or ``.gz``).
        max_record_bytes: a record (its decompressed block) over this size is quarantined as ``too_large``
            without being held in memory; also bounds a gzip member.
        html_main_content: True keeps only the main content of HTML pages (drops menus, footers, cookie
            banners); False keeps all visible text, as Common Crawl's WET files do.
        max_decode_errors: fraction of characters that may be undecodable (replaced) before the record is
            quarantined as ``decode_error``.
        preview_bytes: how many leading bytes of a record travel on as its raw preview (quarantine shows 4 KiB).
    """

    format: str = "warc"
    max_record_bytes: int = 16 * 1024 * 1024  # why: the bronze table's --max-doc-bytes default
    html_main_content: bool = True
    max_decode_errors: float = 0.01  # why: a stray bad byte is noise, 1% replaced characters is the wrong codec
    preview_bytes: int = 16 * 1024  # why: >= 4096 characters of UTF-8 (4 bytes each at most)

    def __post_init__(self) -> None:
        assert self.format in ARCHIVE_FORMATS, f"format must be one of {ARCHIVE_FORMATS}, got {self.format!r}"
        assert self.max_record_bytes > 0, f"max_record_bytes must be > 0, got {self.max_record_bytes}"


class ArchiveRow(NamedTuple):
    """One record of an archive and what became of it.

    Attributes:
        offset: byte offset of the record in the file (of its gzip member for ``.gz`` files).
        raw_head: the record's first ``preview_bytes`` bytes (decompressed when possible), for quarantine.
        raw_hash: sha256 (hex) of the record's bytes as read (the gzip member's bytes when it did not inflate).
        raw_bytes: length of those bytes.
        text: the document's text; None unless the record became a document.
        skip: None, or the skip reason (``SKIP_REASONS``).
        reason: None, or the quarantine reason (``QUARANTINE_REASONS``).
        detail: human-readable explanation of ``skip`` or ``reason`` (with the byte offset).
        url: WARC-Target-URI (ARC: the record's URL); None when absent.
        domain: host of ``url``, lower case, without port.
        record_id: WARC-Record-ID without angle brackets; None for ARC.
        date: WARC-Date as written (ISO 8601, UTC); ARC dates are converted to that form.
        http_status: HTTP status code; None for non-HTTP records (WET, resource).
        content_type: MIME type of the payload (HTTP Content-Type, else the record's), lower case, no parameters.
    """

    offset: int
    raw_head: bytes
    raw_hash: str
    raw_bytes: int
    text: str | None = None
    skip: str | None = None
    reason: str | None = None
    detail: str | None = None
    url: str | None = None
    domain: str | None = None
    record_id: str | None = None
    date: str | None = None
    http_status: int | None = None
    content_type: str | None = None


class _Segment(NamedTuple):
    """A gzip member: its decompressed content, or (when it failed) its raw bytes and why."""

    offset: int
    data: bytes
    raw_hash: str  # of the raw (compressed) bytes; "" for a good member (its records hash their own bytes)
    raw_bytes: int
    reason: str | None  # None = data is a readable block of records
    detail: str | None


class _Head(NamedTuple):
    """A parsed record header: WARC version line + fields, or an ARC header line."""

    version: str  # "WARC/1.0", "WARC/1.1" or "ARC"
    fields: dict[str, str]  # lower-case names; the first value wins
    body_at: int  # index of the block in the buffer the header was parsed from
    length: int  # block length in bytes (Content-Length, or the ARC length field)


class _Parsed(NamedTuple):
    head: _Head | None
    block: bytes
    reason: str | None
    detail: str | None
    consumed: int  # bytes of the buffer this record used, from its start


def domain_of(url: str | None) -> str | None:
    """The host of a URL, lower case, without port or credentials.

    Args:
        url: an absolute URL; None or one without a host gives None.

    Returns:
        e.g. "www.example.org" for "https://user@WWW.Example.org:8080/a?b".

    Example:
        >>> domain_of("https://user@WWW.Example.org:8080/a?b")
        'www.example.org'
    """
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:  # e.g. an invalid IPv6 literal
        return None
    return host or None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _row(offset: int, data: bytes, cfg: ArchiveConfig, **kw) -> ArchiveRow:
    return ArchiveRow(offset, data[: cfg.preview_bytes], _sha(data), len(data), **kw)


# ---------------------------------------------------------------------------------------------------------------
# Gzip members, each inflated on its own


class _Window:
    """Bytes of a stream read ahead: ``buf[0]`` sits at file offset ``pos``; memory stays bounded by the caller."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.buf = b""
        self.pos = 0
        self.eof = False

    def fill(self, n: int) -> bool:
        """Read until ``buf`` holds ``n`` bytes or the stream ends; True when it holds them."""
        if len(self.buf) >= n:
            return True
        parts, have = [self.buf], len(self.buf)
        while have < n and not self.eof:
            chunk = self.stream.read(max(_CHUNK, n - have))
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.buf = b"".join(parts)
        return have >= n

    def take(self, n: int) -> bytes:
        data, self.buf = self.buf[:n], self.buf[n:]
        self.pos += len(data)
        return data

    def discard(self, n: int, hasher) -> int:
        """Read and drop ``n`` bytes (hashing them); returns how many there were."""
        done = 0
        while done < n:
            if not self.buf and not self.fill(1):
                break
            piece = self.take(min(n - done, len(self.buf)))
            hasher.update(piece)
            done += len(piece)
        return done

    def find(self, pattern, start: int, limit: int) -> int:
        """Index of the next match of ``pattern`` (bytes or compiled regex) at or after ``start``, reading ahead
        up to ``limit`` bytes of window; -1 when none."""
        while True:
            if isinstance(pattern, bytes):
                i = self.buf.find(pattern, start)
            else:
                m = pattern.search(self.buf, start)
                i = m.start() if m else -1
            if i >= 0 or self.eof or len(self.buf) >= limit:
                return i
            self.fill(len(self.buf) + _CHUNK)


def _gzip_segments(win: _Window, cfg: ArchiveConfig) -> Iterator[_Segment]:
    """Inflates one gzip member at a time. A member that does not inflate is a ``bad_gzip`` segment (reading resumes
    at the next gzip header after its start); bytes between members that are not gzip are one too; a member the
    file ends inside is ``truncated``; one that inflates past ``max_record_bytes`` is ``too_large``."""
    limit = cfg.max_record_bytes + _CHUNK
    while True:
        win.fill(len(_GZIP_MAGIC))
        if not win.buf:
            return
        start = win.pos
        if not win.buf.startswith(_GZIP_MAGIC):
            nxt = win.find(_GZIP_MAGIC, 0, limit)
            junk = win.take(nxt if nxt >= 0 else len(win.buf))
            if junk.strip(b"\r\n\x00"):  # padding between members is not a record
                yield _Segment(
                    start,
                    junk,
                    _sha(junk),
                    len(junk),
                    "bad_gzip",
                    f"byte {start}: {len(junk)} bytes that are not a gzip member",
                )
            continue
        inflater = zlib.decompressobj(31)
        out: list[bytes] = []
        out_len = used = 0  # inflated bytes; compressed bytes of this member consumed
        error, over, taken, raw_hasher = None, False, 0, hashlib.sha256()
        while not inflater.eof:
            if used >= len(win.buf) and not win.fill(used + 1):
                break
            piece = win.buf[used : used + _CHUNK]
            try:
                data = inflater.decompress(piece)
            except zlib.error as exc:
                error = str(exc)
                break
            used += len(piece) - len(inflater.unused_data)
            out_len += len(data)
            if out_len <= cfg.max_record_bytes:
                out.append(data)
            elif not over:  # over the limit: keep only the preview from here on
                over = True
                out = [(b"".join(out) + data)[: cfg.preview_bytes]]
            if over and used > 4 * _CHUNK:  # stream the rest of a huge member: hash and drop what was inflated
                raw_hasher.update(win.take(used))
                taken, used = taken + used, 0
        if error is not None:
            nxt = win.find(_GZIP_MAGIC, 1, limit)
            bad = win.take(nxt if nxt >= 0 else len(win.buf))
            raw_hasher.update(bad)
            yield _Segment(
                start,
                bad,
                raw_hasher.hexdigest(),
                taken + len(bad),
                "bad_gzip",
                f"byte {start}: gzip member does not inflate ({error})",
            )
            continue
        member = b"".join(out)
        if not inflater.eof:  # the file ended inside the member
            raw = win.take(len(win.buf))
            raw_hasher.update(raw)
            yield _Segment(
                start,
                member,
                raw_hasher.hexdigest(),
                taken + len(raw),
                "truncated",
                f"byte {start}: the file ends inside a gzip member ({taken + len(raw)} compressed bytes)",
            )
            return
        raw = win.take(used)
        raw_hasher.update(raw)
        if out_len > cfg.max_record_bytes:
            yield _Segment(
                start,
                member,
                raw_hasher.hexdigest(),
                taken + len(raw),
                "too_large",
                f"byte {start}: gzip member inflates to {out_len} bytes, over max_record_bytes {cfg.max_record_bytes}",
            )
        else:
            yield _Segment(start, member, "", len(raw), None, None)


# ---------------------------------------------------------------------------------------------------------------
# Record headers and framing


def _parse_header_lines(lines: list[bytes]) -> dict[str, str] | None:
    """Header lines (without the version/status line) -> {lower-case name: value}; None when a line has no colon."""
    fields: dict[str, str] = {}
    last = None
    for raw in lines:
        if not raw.strip():
            continue
        line = raw.decode("utf-8", "replace")
        if line[:1] in (" ", "\t") and last is not None:  # folded continuation line
            fields[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return None
        last = name.strip().lower()
        fields.setdefault(last, value.strip())
    return fields


def _split_header(data: bytes, start: int) -> tuple[list[bytes], int] | None:
    """Header lines from ``start`` up to the first blank line, and the index after it; None if there is none."""
    end = data.find(b"\r\n\r\n", start, start + _MAX_HEADER_BYTES)
    sep = 4
    alt = data.find(b"\n\n", start, end if end >= 0 else start + _MAX_HEADER_BYTES)
    if alt >= 0:
        end, sep = alt, 2
    if end < 0:
        return None
    return data[start:end].replace(b"\r\n", b"\n").split(b"\n"), end + sep


def _arc_fields(line: bytes) -> dict[str, str] | None:
    """An ARC header line -> url, ip, date, content-type, length; None when it is not one."""
    parts = line.decode("utf-8", "replace").split()
    if len(parts) < 5 or not parts[-1].isdigit():
        return None
    if len(parts) >= 10:  # ARC v2: URL IP date mime code checksum location offset filename length
        url, ip, date, mime = parts[0], parts[1], parts[2], parts[3]
    else:  # ARC v1: URL IP date mime length
        url, ip, date, mime = parts[0], parts[-4], parts[-3], parts[-2]
    if not (date.isdigit() and len(date) >= 8):
        return None
    return {"url": url, "ip": ip, "date": date, "content-type": mime, "length": parts[-1]}


def _parse_head(data: bytes, start: int, fmt: str, at_eof: bool) -> tuple[_Head | None, str | None, str | None]:
    """The record header at ``data[start:]`` -> (head, None, None) or (None, reason, detail).

    ``reason`` is ``truncated`` when the data ends inside the header (``at_eof``), else ``malformed_header``.
    """
    if fmt == "arc":
        eol = data.find(b"\n", start, start + _MAX_HEADER_BYTES)
        if eol < 0:
            return None, ("truncated" if at_eof else "malformed_header"), "no end of the ARC header line"
        fields = _arc_fields(data[start:eol].strip())
        if fields is None:
            return None, "malformed_header", f"not an ARC header line: {data[start:eol][:60]!r}"
        return _Head("ARC", fields, eol + 1, int(fields["length"])), None, None
    first = data[start : start + 16]
    if not first.startswith(b"WARC/"):
        if at_eof and len(first) < 5 and b"WARC/".startswith(first):
            return None, "truncated", "the file ends inside a WARC version line"
        return None, "malformed_header", f"no WARC version line (starts {first!r})"
    split = _split_header(data, start)
    if split is None:
        return None, ("truncated" if at_eof else "malformed_header"), "no end of the WARC header block"
    lines, body_at = split
    version = lines[0].decode("ascii", "replace").strip()
    if not version.startswith("WARC/"):
        return None, "malformed_header", f"no WARC version line (starts {lines[0][:40]!r})"
    fields = _parse_header_lines(lines[1:])
    if fields is None:
        return None, "malformed_header", "a WARC header line has no colon"
    length = fields.get("content-length", "")
    if not length.isdigit():
        return None, "malformed_header", f"Content-Length is {length!r}"
    return _Head(version, fields, body_at, int(length)), None, None


_WARC_START = re.compile(rb"^WARC/1\.[0-9]\r?$", re.MULTILINE)
_ARC_START = re.compile(rb"^\S{1,8192} \S{1,64} [0-9]{14} \S{1,200}(?: \S{1,8192}){0,6} [0-9]{1,12}\r?$", re.MULTILINE)


def _start_re(fmt: str) -> re.Pattern:
    return _ARC_START if fmt == "arc" else _WARC_START


def _frame_block(data: bytes, start: int, head: _Head, fmt: str) -> _Parsed:
    """The record's block after its header, checking that it ends where the next record (or the data) starts.

    A record whose block runs short or into another record's header is ``truncated``; when the next record's
    start line lies inside the claimed block, the record is cut there so that the next one survives.
    """
    end = head.body_at + head.length
    block = data[head.body_at : end]
    after = data[end : end + 8192].lstrip(b"\r\n")
    starts = _start_re(fmt)
    if len(block) == head.length and (not after or starts.match(after)):
        return _Parsed(head, block, None, None, end - start)
    nested = starts.search(data, head.body_at, head.body_at + len(block))
    if nested:
        cut = nested.start()
        detail = f"block ends after {cut - head.body_at} of its {head.length} bytes, where the next record starts"
        return _Parsed(head, data[head.body_at : cut], "truncated", detail, cut - start)
    if len(block) < head.length:
        detail = f"block is {len(block)} of its {head.length} bytes"
        return _Parsed(head, block, "truncated", detail, len(data) - start)
    return _Parsed(head, block, None, None, end - start)  # trailing bytes are judged as the next record


# ---------------------------------------------------------------------------------------------------------------
# Payloads: HTTP, content encoding, charset, HTML to text


def _mime(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _charset(content_type: str | None) -> str | None:
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return None


def _dechunk(body: bytes) -> bytes:
    """Undoes HTTP chunked transfer encoding; raises ValueError on a malformed chunk size."""
    out, i = [], 0
    while True:
        eol = body.find(b"\r\n", i)
        if eol < 0:
            raise ValueError("chunk size line without CRLF")
        size = int(body[i:eol].split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            return b"".join(out)
        out.append(body[eol + 2 : eol + 2 + size])
        i = eol + 2 + size + 2


def _split_http(block: bytes) -> tuple[int, dict[str, str], bytes] | None:
    """An HTTP response block -> (status, headers, body); None when the status line or headers are broken."""
    split = _split_header(block, 0)
    if split is None:
        return None
    lines, body = split
    status_line = lines[0].decode("latin-1").split()
    if len(status_line) < 2 or not status_line[0].upper().startswith("HTTP/") or not status_line[1].isdigit():
        return None
    headers = _parse_header_lines(lines[1:])
    if headers is None:
        return None
    return int(status_line[1]), headers, block[body:]


def _decode_body(body: bytes, headers: dict[str, str]) -> bytes:
    """Undoes chunked transfer and gzip/deflate content encoding (raises ValueError or zlib.error when broken)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        try:
            body = _dechunk(body)
        except ValueError:
            pass  # many crawlers store the body de-chunked but keep the header
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        body = zlib.decompress(body, 47)  # gzip or zlib header
    elif encoding == "deflate":
        try:
            body = zlib.decompress(body)
        except zlib.error:
            body = zlib.decompress(body, -15)  # raw deflate, as some servers send
    elif encoding not in ("", "identity", "none"):
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    return body


def _to_text(body: bytes, declared: str | None, is_html: bool, cfg: ArchiveConfig) -> tuple[str | None, str | None]:
    """Bytes -> (text, None) or (None, why it is undecodable): the declared charset, else a <meta> one, else detected.

    The first candidate that decodes without errors wins; else the one with the fewest undecodable bytes, if
    they are at most ``max_decode_errors`` of the characters.
    """
    from resiliparse.parse.encoding import detect_encoding

    def candidates():
        if declared:
            yield declared
        if is_html:
            meta = _CHARSET_RE.search(body, 0, 4096)
            if meta:
                yield meta.group(1).decode("ascii")
        yield "utf-8"  # valid UTF-8 is almost never an accident
        # only reached when the above fail; the raw detector result (the HTML5 mapping turned cp949 into utf-8)
        yield detect_encoding(body, html5_compatible=False) or "utf-8"

    best, tried = None, []
    for name in candidates():
        name = name.lower()
        if name in tried:
            continue
        tried.append(name)
        try:
            codecs.lookup(name)
        except LookupError:
            continue
        try:
            return body.decode(name).lstrip("\ufeff"), None
        except UnicodeDecodeError:
            pass
        text = body.decode(name, "replace")
        bad = text.count("\ufffd")
        if best is None or bad < best[1]:
            best = (text, bad, name)
    if best is None:
        return None, f"no usable charset among {tried}"
    text, bad, name = best
    if bad > cfg.max_decode_errors * max(len(text), 1):
        return None, f"{bad} of {len(text)} characters undecodable as {name}"
    return text.lstrip("\ufeff"), None


def _document(payload: bytes, mime: str | None, charset: str | None, cfg: ArchiveConfig):
    """Payload -> (text, skip, decode_error detail), exactly one of them set."""
    if not payload.strip():
        return None, "empty", None
    is_html = mime in _HTML_TYPES
    if not is_html and mime not in _TEXT_TYPES:
        return None, "non_html", None
    text, error = _to_text(payload, charset, is_html, cfg)
    if error:
        return None, None, error
    if is_html:
        from udfs.curation.normalize import html_to_text

        text = html_to_text(text, main_content=cfg.html_main_content)
    if not text.strip():
        return None, "empty", None
    return text, None, None


def _arc_date(value: str) -> str | None:
    """ARC dates are YYYYMMDDhhmmss (UTC) -> ISO 8601."""
    d = (value + "000000")[:14]
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}Z"


def _meta(head: _Head | None) -> dict:
    """url, domain, record_id and date of a record header."""
    if head is None:
        return {}
    if head.version == "ARC":
        url = head.fields["url"]
        return dict(url=url, domain=domain_of(url), date=_arc_date(head.fields["date"]))
    f = head.fields
    url = f.get("warc-target-uri", "").strip("<> ") or None
    rid = f.get("warc-record-id", "").strip("<> ") or None
    return dict(url=url, domain=domain_of(url), record_id=rid, date=f.get("warc-date") or None)


def _classify(parsed: _Parsed, raw: bytes, offset: int, cfg: ArchiveConfig) -> ArchiveRow:
    """``_classify_record``, with any unexpected error in a payload turned into a ``decode_error`` row."""
    try:
        return _classify_record(parsed, raw, offset, cfg)
    except Exception as exc:  # one odd payload must never stop the file
        detail = f"byte {offset}: {type(exc).__name__}: {exc}"[:300]
        return _row(offset, raw, cfg, reason="decode_error", detail=detail, **_meta(parsed.head))


def _classify_record(parsed: _Parsed, raw: bytes, offset: int, cfg: ArchiveConfig) -> ArchiveRow:
    """A framed record (``raw`` are its bytes, at file ``offset``) -> its ArchiveRow."""
    head = parsed.head
    meta = _meta(head)
    if parsed.reason:
        return _row(offset, raw, cfg, reason=parsed.reason, detail=f"byte {offset}: {parsed.detail}", **meta)
    fields = head.fields
    if head.version == "ARC":
        if meta["url"].startswith("filedesc:"):
            return _row(offset, raw, cfg, skip="metadata", detail="ARC file header", **meta)
        kind, http = "response", parsed.block[:5].upper() == b"HTTP/"
    else:
        kind = fields.get("warc-type", "").lower()
        http = _mime(fields.get("content-type")) in _HTTP_TYPES
    if kind == "request":
        return _row(offset, raw, cfg, skip="request", **meta)
    if kind == "revisit":
        return _row(offset, raw, cfg, skip="empty", detail="revisit record (no payload)", **meta)
    if kind not in ("response", "resource", "conversion"):
        return _row(offset, raw, cfg, skip="metadata", detail=f"{kind or 'untyped'} record", **meta)
    payload, ctype = parsed.block, fields.get("content-type")
    if http:
        split = _split_http(parsed.block)
        if split is None:
            detail = f"byte {offset}: HTTP status line or headers broken"
            return _row(offset, raw, cfg, reason="malformed_header", detail=detail, **meta)
        status, headers, body = split
        ctype = headers.get("content-type")
        meta.update(http_status=status, content_type=_mime(ctype))
        if not 200 <= status < 300:
            return _row(offset, raw, cfg, skip="http_status", detail=f"HTTP {status}", **meta)
        try:
            payload = _decode_body(body, headers)
        except (ValueError, zlib.error) as exc:
            return _row(offset, raw, cfg, reason="decode_error", detail=f"byte {offset}: {exc}"[:300], **meta)
        if not ctype and payload[:1024].lstrip().lower().startswith((b"<!doctype html", b"<html")):
            ctype = "text/html"  # no type given: the page says what it is
    else:
        meta.update(content_type=_mime(ctype))
    text, skip, error = _document(payload, _mime(ctype), _charset(ctype), cfg)
    if error:
        return _row(offset, raw, cfg, reason="decode_error", detail=f"byte {offset}: {error}"[:300], **meta)
    if skip:
        return _row(offset, raw, cfg, skip=skip, **meta)
    return _row(offset, raw, cfg, text=text, **meta)


# ---------------------------------------------------------------------------------------------------------------
# Whole files


def _member_rows(seg: _Segment, cfg: ArchiveConfig) -> Iterator[ArchiveRow]:
    """All records of a good gzip member (usually exactly one)."""
    data, i = seg.data, 0
    while True:
        while i < len(data) and data[i] in b"\r\n":
            i += 1
        if i >= len(data):
            return
        head, reason, detail = _parse_head(data, i, cfg.format, at_eof=True)
        if head is None:
            parsed = _Parsed(None, b"", reason, detail, len(data) - i)
        elif head.length > cfg.max_record_bytes:
            parsed = _Parsed(head, b"", "too_large", f"block of {head.length} bytes", len(data) - i)
        else:
            parsed = _frame_block(data, i, head, cfg.format)
        yield _classify(parsed, data[i : i + parsed.consumed], seg.offset, cfg)
        i += parsed.consumed


def _damaged_member_row(seg: _Segment, cfg: ArchiveConfig) -> ArchiveRow:
    """One quarantine row for a gzip member that failed, with the record's url/id when its header is readable."""
    meta = {}
    if seg.reason != "bad_gzip":
        head, _, _ = _parse_head(seg.data, 0, cfg.format, at_eof=True)
        meta = _meta(head)
    return ArchiveRow(
        seg.offset,
        seg.data[: cfg.preview_bytes],
        seg.raw_hash,
        seg.raw_bytes,
        reason=seg.reason,
        detail=seg.detail,
        **meta,
    )


def _plain_rows(win: _Window, cfg: ArchiveConfig) -> Iterator[ArchiveRow]:
    """Records of an uncompressed archive; after a damaged one, reading resumes at the next record's start line."""
    starts = _start_re(cfg.format)
    while True:
        while win.fill(1) and win.buf[:1] in (b"\r", b"\n"):
            win.take(len(win.buf) - len(win.buf.lstrip(b"\r\n")))
        if not win.buf:
            return
        offset = win.pos
        win.fill(_MAX_HEADER_BYTES)
        head, reason, detail = _parse_head(win.buf, 0, cfg.format, at_eof=win.eof)
        if head is None:
            if reason == "truncated":
                yield _classify(_Parsed(None, b"", reason, detail, 0), win.take(len(win.buf)), offset, cfg)
                return
            nxt = win.find(starts, 1, cfg.max_record_bytes)
            raw = win.take(nxt if nxt > 0 else len(win.buf))
            yield _classify(_Parsed(None, b"", reason, detail, len(raw)), raw, offset, cfg)
            continue
        if head.length > cfg.max_record_bytes:
            preview = win.take(min(len(win.buf), head.body_at + cfg.preview_bytes))
            hasher = hashlib.sha256(preview)
            total = len(preview) + win.discard(head.body_at + head.length - len(preview), hasher)
            detail = f"block of {head.length} bytes, over max_record_bytes {cfg.max_record_bytes}"
            row = _classify(_Parsed(head, b"", "too_large", detail, 0), preview, offset, cfg)
            yield row._replace(raw_hash=hasher.hexdigest(), raw_bytes=total)
            continue
        win.fill(head.body_at + head.length + 8192)  # the block and the start of what follows it
        parsed = _frame_block(win.buf, 0, head, cfg.format)
        yield _classify(parsed, win.take(parsed.consumed), offset, cfg)


def iter_archive_rows(stream: BinaryIO, cfg: ArchiveConfig = ArchiveConfig()) -> Iterator[ArchiveRow]:
    """Reads one archive file, yielding one row per record in file order (see the module docstring).

    Args:
        stream: the file opened in binary mode (anything with ``read(n)``); gzip is detected from its first bytes,
            not its name.
        cfg: format and limits.

    Returns:
        An iterator of ``ArchiveRow``. Damaged input never raises: it becomes quarantine rows (an ``OSError`` of
        the stream itself is passed on).

    Example:
        >>> import io
        >>> page = b"HTTP/1.1 200 OK\\r\\nContent-Type: text/html\\r\\n\\r\\n<p>Hello there.</p>"
        >>> head = b"WARC/1.0\\r\\nWARC-Type: response\\r\\nWARC-Target-URI: http://example.org/\\r\\n"
        >>> head += b"Content-Type: application/http; msgtype=response\\r\\n"
        >>> rec = head + b"Content-Length: %d\\r\\n\\r\\n" % len(page)
        >>> [(r.text, r.domain, r.http_status) for r in iter_archive_rows(io.BytesIO(rec + page + b"\\r\\n\\r\\n"))]
        [('Hello there.', 'example.org', 200)]
    """
    win = _Window(stream)
    win.fill(2)
    if win.buf.startswith(_GZIP_MAGIC[:2]):
        for seg in _gzip_segments(win, cfg):
            if seg.reason is None:
                yield from _member_rows(seg, cfg)
            else:
                yield _damaged_member_row(seg, cfg)
        return
    yield from _plain_rows(win, cfg)
