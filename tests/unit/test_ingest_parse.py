"""Pure parsing of JSONL lines: every failure has its exact reason (no JVM)."""

import json

import pandas as pd
import pytest

from tests.bad_input import BAD, GOOD
from udfs.ingest import parse_json_line, parse_json_lines


@pytest.mark.parametrize(
    "line, reason",
    [
        (b'{"id": "a", "text": "hello"}', None),
        (b'\xef\xbb\xbf{"id": "a", "text": "bom"}', None),
        (b'{"id": "a", "text": null}', None),  # null text parses; the job rejects it as null_text
        (b'{"id": "a", "text": "trunc', "invalid_json"),
        (b"", "invalid_json"),
        (b"\xff\xfe", "invalid_utf8"),
        (b'{"text": 3}', "text_not_string"),
        (b'{"text": {"a": 1}}', "text_not_string"),
        (b'{"body": "x"}', "missing_text"),
        (b'"just a string"', "not_an_object"),
        (b'{"id": 1.5, "text": "x"}', "invalid_id"),
        (b'{"id": true, "text": "x"}', "invalid_id"),
        (b'{"id": "  ", "text": "x"}', "invalid_id"),
        (b"[" * 50_000 + b"]" * 50_000, "invalid_json"),
    ],
)
def test_parse_reason(line, reason):
    assert parse_json_line(line).reason == reason


def test_parse_keeps_other_fields_and_id():
    rec = parse_json_line(b'{"id": 42, "text": "t", "url": "http://x", "meta": {"k": [1, 2]}}')
    assert rec.given_id == "42"
    assert rec.text == "t"
    assert json.loads(rec.extra) == {"url": "http://x", "meta": {"k": [1, 2]}}


def test_parse_custom_columns():
    rec = parse_json_line(b'{"doc": "d1", "content": "body", "text": "other"}', text_col="content", id_col="doc")
    assert (rec.given_id, rec.text, json.loads(rec.extra)) == ("d1", "body", {"text": "other"})


def test_parse_json_lines_aligned_with_input():
    lines = [line for line, _ in GOOD + BAD]
    out = parse_json_lines(pd.Series(lines, dtype=object))
    assert list(out.columns) == ["given_id", "text", "extra", "reason", "detail"]
    assert len(out) == len(lines)
    # every failed row carries a detail string explaining it
    failed = out[out.reason.notna()]
    assert failed.detail.notna().all()
    assert out.iloc[0].text == "A perfectly ordinary document."
