"""Parsing for ingestion (CLI: jobs/ingest.py): raw records into (id, text, other fields), a reason per failure.

The core is pure (`parse_json_line`, `parse_json_lines`); `make_parse_json_udf` adapts it to a
pandas UDF for jobs/ingest.py. A record is never dropped here: it either parses, or it comes back
with a ``reason`` that sends it to the quarantine table.

Reasons produced here: ``invalid_utf8``, ``invalid_json`` (includes truncated lines and JSON nested
too deeply for Python's parser), ``not_an_object``, ``missing_text``, ``text_not_string``,
``invalid_id``; for compressed line files (`iter_compressed_lines`) also ``too_large``, ``truncated``
and ``corrupt_stream`` (the unread tail of a broken stream).

`make_read_lines_fn` and `make_read_archives_fn` are the ``mapInPandas`` functions that read
compressed line files and web archives (``udfs/warc.py``) one file per task, streaming.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, NamedTuple

import pandas as pd

from udfs import columns as C

BOM = "\ufeff"


class ParsedRecord(NamedTuple):
    """One parsed input record.

    Attributes:
        given_id: the record's id as a string; None when the record has no id.
        text: the text field; None when the record failed.
        extra: the record's other fields as a JSON object string ("{}" when none).
        reason: None when the record parsed; else why it goes to quarantine.
        detail: a human-readable explanation of ``reason`` (parser message, offending type).
    """

    given_id: str | None
    text: str | None
    extra: str | None
    reason: str | None
    detail: str | None


def _fail(reason: str, detail: str) -> ParsedRecord:
    return ParsedRecord(None, None, None, reason, detail)


def _id_to_str(value: Any) -> str | None:
    """Ids may be strings or integers; floats, booleans, lists and objects are not ids."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(type(value).__name__)
    text = str(value)
    if not text.strip():
        raise TypeError("empty string")
    return text


def parse_json_line(raw: bytes | None, text_col: str = "text", id_col: str = "id") -> ParsedRecord:
    """Parse one JSONL line.

    Args:
        raw: the line's bytes without the newline; None is treated like an empty line.
        text_col: name of the field holding the document text.
        id_col: name of the field holding the record id (optional in the record).

    Returns:
        A ParsedRecord. A leading UTF-8 byte order mark is removed before parsing. Null or empty
        text parses fine here (``text`` None or ""); the ingest job checks text content for all
        formats in one place.

    Example:
        >>> parse_json_line(b'{"id": 7, "text": "hi", "lang": "en"}')
        ParsedRecord(given_id='7', text='hi', extra='{"lang": "en"}', reason=None, detail=None)
        >>> parse_json_line(b'{"id": 7, "text": ').reason
        'invalid_json'
    """
    try:
        line = (raw or b"").decode("utf-8")
    except UnicodeDecodeError as exc:
        return _fail("invalid_utf8", f"byte {exc.start}: {exc.reason}")
    line = line.lstrip(BOM)
    try:
        record = json.loads(line)
    except RecursionError:
        return _fail("invalid_json", "nested too deeply to parse")
    except ValueError as exc:  # JSONDecodeError; empty lines land here too
        return _fail("invalid_json", str(exc)[:200])
    if not isinstance(record, dict):
        return _fail("not_an_object", f"top-level JSON is {type(record).__name__}")
    if text_col not in record:
        return _fail("missing_text", f"no field {text_col!r}; fields: {sorted(record)[:10]}")
    text = record.pop(text_col)
    if text is not None and not isinstance(text, str):
        return _fail("text_not_string", f"{text_col!r} is {type(text).__name__}")
    given_id = None
    if record.get(id_col) is not None:
        try:
            given_id = _id_to_str(record.pop(id_col))
        except TypeError as exc:
            return _fail("invalid_id", f"{id_col!r} is {exc}")
    else:
        record.pop(id_col, None)
    try:
        extra = json.dumps(record, ensure_ascii=False, sort_keys=True)
    except (RecursionError, ValueError) as exc:
        return _fail("invalid_json", f"other fields cannot be re-encoded: {exc}"[:200])
    return ParsedRecord(given_id, text, extra, None, None)


def parse_json_lines(raw: pd.Series, text_col: str = "text", id_col: str = "id") -> pd.DataFrame:
    """Vectorised front of `parse_json_line` for one Arrow batch.

    Args:
        raw: line bytes (object dtype; None allowed), one element per input line.
        text_col: name of the text field.
        id_col: name of the id field.

    Returns:
        DataFrame with columns ``given_id, text, extra, reason, detail`` aligned with ``raw``.
    """
    rows = [parse_json_line(b, text_col, id_col) for b in raw]
    return pd.DataFrame(rows, columns=list(ParsedRecord._fields), index=raw.index)


PARSED_SCHEMA = f"{C.GIVEN_ID} string, {C.TEXT} string, {C.EXTRA} string, {C.REASON} string, {C.DETAIL} string"


def make_parse_json_udf(text_col: str, id_col: str):
    """Pandas UDF: binary JSONL line -> struct<given_id, text, extra, reason, detail>.

    Per Arrow batch it calls `parse_json_lines` on the raw bytes; input rows map 1:1 to output
    structs, in order. Bytes (not strings) come in so that invalid UTF-8 is detected here instead
    of breaking the Arrow transfer.

    Example:
        >>> df = spark.read.text("in.jsonl").selectExpr("CAST(value AS BINARY) AS raw")  # doctest: +SKIP
        >>> df.select(make_parse_json_udf("text", "id")("raw").alias("p")).select("p.*")  # doctest: +SKIP
    """
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(PARSED_SCHEMA)
    def parse_json(raw: pd.Series) -> pd.DataFrame:
        return parse_json_lines(raw, text_col, id_col).reset_index(drop=True)

    return parse_json


# ---------------------------------------------------------------------------------------------------------------
# Compressed line files (.jsonl.gz, .jsonl.zst, .json.bz2) and web archives, read one file per task

COMPRESSED_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
_READ_CHUNK = 1 << 20  # compressed bytes fed to the decompressor at a time


class LineRow(NamedTuple):
    """One line of a compressed file, or the unreadable tail of one.

    Attributes:
        raw_bin: the line without its newline (``\\r\\n`` or ``\\n``); only the first ``preview_bytes`` when
            ``reason`` is set.
        raw_hash: sha256 (hex) of the whole line; None for ordinary lines (Spark hashes those itself).
        raw_bytes: length of the whole line; None for ordinary lines.
        reason: None for a line to parse; ``too_large`` (line over ``max_line_bytes``), ``truncated`` (the
            stream ends early) or ``corrupt_stream`` (the compressed data is invalid) for the unread tail.
        detail: where and why (byte offsets in the compressed file and in the decompressed text).
    """

    raw_bin: bytes
    raw_hash: str | None = None
    raw_bytes: int | None = None
    reason: str | None = None
    detail: str | None = None


def codec_of(path: str) -> str | None:
    """The compression codec a file name asks for: "gzip", "bz2", "zstd", or None for plain text.

    Example:
        >>> codec_of("s3://b/part-0001.jsonl.zst"), codec_of("a.jsonl")
        ('zstd', None)
    """
    name = path.rsplit("/", 1)[-1].lower()
    for suffix, codec in COMPRESSED_SUFFIXES.items():
        if name.endswith(suffix):
            return codec
    return None


def _decompressor(codec: str):
    """A fresh one-stream decompressor with ``decompress``, ``eof`` and ``unused_data``, and its error types."""
    if codec == "gzip":
        import zlib

        return zlib.decompressobj(31), (zlib.error,)
    if codec == "bz2":
        import bz2

        return bz2.BZ2Decompressor(), (OSError, EOFError, ValueError)
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj(), (zstandard.ZstdError,)
    raise ValueError(f"codec must be one of {sorted(set(COMPRESSED_SUFFIXES.values()))}, got {codec!r}")


def iter_compressed_lines(
    stream, codec: str, max_line_bytes: int = 16 * 1024 * 1024, preview_bytes: int = 16 * 1024
) -> Iterator[LineRow]:
    """Decompresses a line file as a stream and yields its lines; a broken stream ends in one tail row.

    Concatenated streams (several gzip members, bz2 streams or zstd frames) are read as one file. When the
    compressed data turns out to be invalid or cut short, the lines before it are yielded as usual and one
    last row quarantines the rest of the file (its partial line as preview, the compressed byte offset and
    the number of unread compressed bytes in ``detail``); nothing raises.

    Args:
        stream: the compressed file, opened in binary mode.
        codec: "gzip", "bz2" or "zstd" (see ``codec_of``).
        max_line_bytes: a longer line becomes a ``too_large`` row (hash and size of the whole line, its first
            ``preview_bytes`` as preview) without being held in memory.
        preview_bytes: bytes kept of a quarantined line or tail.

    Returns:
        An iterator of ``LineRow`` in file order; memory stays bounded by one line plus one read chunk.

    Example:
        >>> import gzip, io
        >>> data = gzip.compress(b'{"text": "a"}\\n{"text": "b"}\\n')
        >>> [r.raw_bin for r in iter_compressed_lines(io.BytesIO(data), "gzip")]
        [b'{"text": "a"}', b'{"text": "b"}']
        >>> [r.reason for r in iter_compressed_lines(io.BytesIO(data[:-12]), "gzip")]
        [None, 'truncated']
    """
    import hashlib

    dec, errors = _decompressor(codec)
    fed = 0  # compressed bytes read so far
    out_pos = 0  # decompressed bytes seen so far
    lineno = 0
    pending = b""
    big = None  # (hasher, preview, size) while inside an over-long line

    def lines_of(data: bytes) -> Iterator[LineRow]:
        nonlocal pending, big, lineno
        start = 0
        while True:
            nl = data.find(b"\n", start)
            piece = data[start:] if nl < 0 else data[start:nl]
            if big is not None:
                big[0].update(piece)
                big[2] += len(piece)
            elif len(pending) + len(piece) > max_line_bytes:
                whole = pending + piece
                big = [hashlib.sha256(whole), whole[:preview_bytes], len(whole)]
                pending = b""
            else:
                pending += piece
            if nl < 0:
                return
            lineno += 1
            if big is not None:
                hasher, preview, size = big
                big = None
                detail = f"line {lineno} is {size} bytes, over --max-doc-bytes {max_line_bytes}"
                yield LineRow(preview, hasher.hexdigest(), size, "too_large", detail)
            else:
                line, pending = pending, b""
                yield LineRow(line[:-1] if line.endswith(b"\r") else line)
            start = nl + 1

    def tail(reason: str, why: str, at: int) -> LineRow:
        rest = 0
        while True:  # count, without keeping, what is left unread
            chunk = stream.read(_READ_CHUNK)
            if not chunk:
                break
            rest += len(chunk)
        partial = (big[1] if big is not None else pending)[:preview_bytes]
        unread = fed - at + rest
        what = f"the rest of the file ({unread} compressed bytes)" if unread else "its last, partial line"
        detail = (
            f"{codec} stream {why} at compressed byte {at} (after line {lineno}, decompressed byte {out_pos}); "
            f"{what} is not read"
        )
        return LineRow(partial, hashlib.sha256(partial).hexdigest(), len(partial), reason, detail)

    started = False  # whether the current stream has consumed any input
    while True:
        chunk = stream.read(_READ_CHUNK)
        if not chunk:
            break
        at = fed
        fed += len(chunk)
        data = chunk
        while data:
            try:
                out = dec.decompress(data)
            except errors as exc:
                yield tail("corrupt_stream", f"invalid ({exc})"[:200], at)
                return
            started = True
            out_pos += len(out)
            yield from lines_of(out)
            if dec.eof:
                data = dec.unused_data
                dec, errors = _decompressor(codec)
                started = False
                if data and not data.strip(b"\x00"):  # zero padding after the last stream
                    data = b""
            else:
                data = b""
    if started and not dec.eof:
        yield tail("truncated", "ends early", fed)
        return
    if big is not None or pending:
        yield from lines_of(b"\n")  # a last line without a newline


def open_input(path: str):
    """Opens a file Spark listed (``file:/...``, a local path, or a URI pyarrow understands) for binary reading.

    Args:
        path: the path as Spark's file listing gives it. ``s3a://`` is read as ``s3://``.

    Returns:
        A binary stream with ``read(n)``.
    """
    from urllib.parse import unquote, urlsplit

    if path.startswith("file:") or "://" not in path:
        local = unquote(urlsplit(path).path) if path.startswith("file:") else path
        return open(local, "rb", buffering=_READ_CHUNK)  # the caller closes it
    from pyarrow import fs

    uri = "s3://" + path[len("s3a://") :] if path.startswith("s3a://") else path
    filesystem, inner = fs.FileSystem.from_uri(uri)
    return filesystem.open_input_stream(inner)


LINE_ROW_SCHEMA = (
    f"{C.SOURCE_FILE} string, raw_bin binary, {C.RAW_HASH} string, {C.RAW_BYTES} bigint, "
    f"{C.REASON} string, {C.DETAIL} string"
)
ARCHIVE_ROW_SCHEMA = (
    f"{C.SOURCE_FILE} string, raw_bin binary, {C.RAW_HASH} string, {C.RAW_BYTES} bigint, {C.GIVEN_ID} string, "
    f"{C.TEXT} string, {C.EXTRA} string, {C.REASON} string, {C.DETAIL} string, {C.SKIP} string, {C.URL} string, "
    f"{C.DOMAIN} string, {C.WARC_RECORD_ID} string, {C.WARC_DATE} string, {C.HTTP_STATUS} int, "
    f"{C.CONTENT_TYPE} string"
)


def _file_index_batches(batches, paths: list[str]):
    for batch in batches:
        for i in batch["id"].tolist():
            yield paths[int(i)]


def make_read_lines_fn(paths: list[str], max_line_bytes: int, batch_rows: int = 4096):
    """``mapInPandas`` function: file indexes (``spark.range``) -> the lines of those compressed files.

    One task gets one file index (``spark.range(n, numPartitions=n)``), opens ``paths[i]`` on the executor and
    streams it through `iter_compressed_lines`, yielding a DataFrame of ``LINE_ROW_SCHEMA`` every
    ``batch_rows`` lines: no file is ever held whole in memory, on the driver or the executor.

    Example:
        >>> fn = make_read_lines_fn(["file:/data/a.jsonl.gz"], 1 << 24)  # doctest: +SKIP
        >>> spark.range(0, 1, 1, 1).mapInPandas(fn, LINE_ROW_SCHEMA).show()  # doctest: +SKIP
    """

    def read(batches):
        cols = list(LineRow._fields)
        for path in _file_index_batches(batches, paths):
            rows = []
            with open_input(path) as fh:
                for row in iter_compressed_lines(fh, codec_of(path), max_line_bytes):
                    rows.append(row)
                    if len(rows) >= batch_rows:
                        yield _line_frame(rows, cols, path)
                        rows = []
            if rows:
                yield _line_frame(rows, cols, path)

    return read


def _line_frame(rows, cols, path) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=cols)
    df["raw_bytes"] = pd.array(df["raw_bytes"], dtype="Int64")
    df.insert(0, C.SOURCE_FILE, path)
    return df.rename(columns={"raw_hash": C.RAW_HASH, "raw_bytes": C.RAW_BYTES})


def make_read_archives_fn(paths: list[str], cfg, batch_rows: int = 512):
    """``mapInPandas`` function: file indexes (``spark.range``) -> one row per record of those web archives.

    One task gets one file index, opens ``paths[i]`` on the executor and streams it through
    ``udfs.warc.iter_archive_rows`` (``cfg`` is its ``ArchiveConfig``), yielding a DataFrame of
    ``ARCHIVE_ROW_SCHEMA`` every ``batch_rows`` records. ``given_id`` is the WARC-Record-ID (None for ARC,
    whose records have none), ``extra`` is "{}", and ``warc_date`` stays an ISO 8601 string for Spark to cast.

    Example:
        >>> fn = make_read_archives_fn(["file:/crawl/a.warc.gz"], ArchiveConfig())  # doctest: +SKIP
        >>> spark.range(0, 1, 1, 1).mapInPandas(fn, ARCHIVE_ROW_SCHEMA).show()  # doctest: +SKIP
    """
    from udfs.warc import iter_archive_rows

    def read(batches):
        for path in _file_index_batches(batches, paths):
            rows = []
            with open_input(path) as fh:
                for row in iter_archive_rows(fh, cfg):
                    rows.append(row)
                    if len(rows) >= batch_rows:
                        yield _archive_frame(rows, path)
                        rows = []
            if rows:
                yield _archive_frame(rows, path)

    return read


def _archive_frame(rows, path) -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.SOURCE_FILE: path,
            "raw_bin": [r.raw_head for r in rows],
            C.RAW_HASH: [r.raw_hash for r in rows],
            C.RAW_BYTES: pd.array([r.raw_bytes for r in rows], dtype="Int64"),
            C.GIVEN_ID: [r.record_id for r in rows],
            C.TEXT: [r.text for r in rows],
            C.EXTRA: "{}",
            C.REASON: [r.reason for r in rows],
            C.DETAIL: [r.detail for r in rows],
            C.SKIP: [r.skip for r in rows],
            C.URL: [r.url for r in rows],
            C.DOMAIN: [r.domain for r in rows],
            C.WARC_RECORD_ID: [r.record_id for r in rows],
            C.WARC_DATE: [r.date for r in rows],
            C.HTTP_STATUS: pd.array([r.http_status for r in rows], dtype="Int32"),
            C.CONTENT_TYPE: [r.content_type for r in rows],
        }
    )
