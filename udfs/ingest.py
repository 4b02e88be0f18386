"""Parsing raw input records into (id, text, other fields) with a reason for every failure.

The core is pure (`parse_json_line`, `parse_json_lines`); `make_parse_json_udf` adapts it to a
pandas UDF for jobs/ingest.py. A record is never dropped here: it either parses, or it comes back
with a ``reason`` that sends it to the quarantine table.

Reasons produced here: ``invalid_utf8``, ``invalid_json`` (includes truncated lines and JSON nested
too deeply for Python's parser), ``not_an_object``, ``missing_text``, ``text_not_string``,
``invalid_id``.
"""

from __future__ import annotations

import json
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
