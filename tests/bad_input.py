"""A JSONL corpus with every kind of bad record we guard against, and the reasons we expect.

Built in code (not a checked-in binary) so each case is readable next to its expected reason.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

MAX_DOC_BYTES = 256 * 1024  # tests pass this as --max-doc-bytes; above the 200 KB deep-nesting line

GOOD = [
    (b'{"id": "g1", "text": "A perfectly ordinary document.", "lang": "en"}', None),
    (b'\xef\xbb\xbf{"id": "g2", "text": "Starts with a UTF-8 byte order mark."}', None),
    (b'{"id": "g3", "text": "Control \\u0007 characters \\u0000 stay; curation cleans them."}', None),
    (b'{"id": 4, "text": "An integer id is fine."}', None),
    (b'{"text": "No id at all: the doc_id is a hash of source and text."}', None),
    (b'{"id": "dup", "text": "first text under a repeated id"}', None),
    (b'{"id": "same", "text": "an exact duplicate record"}', None),
]

BAD = [
    (b'{"id": "b1", "text": "a line cut in the mid', "invalid_json"),  # truncated line
    (b"this is not json at all", "invalid_json"),
    (b"", "invalid_json"),  # empty line
    (b'{"id": "b4", "text": null}', "null_text"),
    (b'{"id": "b5", "text": ""}', "empty_text"),
    (b'{"id": "b6", "text": "   \\n\\t  "}', "empty_text"),  # whitespace only
    (b'{"id": "b7", "text": "caf\xe9 au lait"}', "invalid_utf8"),  # latin-1 byte in UTF-8 stream
    (b"\x00\x01\x02\xff\xfe\x80binary garbage\x9c", "invalid_utf8"),
    (b'{"id": "b9", "text": 12345}', "text_not_string"),
    (b'{"id": "b10", "text": ["a", "list"]}', "text_not_string"),
    (b'{"id": "b11", "body": "no text field"}', "missing_text"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"id": {"nested": 1}, "text": "an object is not an id"}', "invalid_id"),
    (b'{"id": "b14", "text": "' + b"x" * (MAX_DOC_BYTES + 500) + b'"}', "too_large"),
    (b'{"id": "b15", "text": "ok", "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "invalid_json"),
    (b'{"id": "dup", "text": "second, different text under the same id"}', "duplicate_id"),
    (b'{"id": "same", "text": "an exact duplicate record"}', "duplicate_record"),
]


def write_bad_corpus(path: Path) -> Counter:
    """Write the corpus to ``path``; return expected counts (``None`` = written to bronze)."""
    lines = [line for line, _ in GOOD + BAD]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return Counter(reason for _, reason in GOOD + BAD)


HUGE_DOC_BYTES = 50 * 1024 * 1024  # a 50 MiB document: over ingest's default 16 MiB limit


def write_pipeline_corpus(path: Path, good_lines: list[bytes], n_copies: int = 10) -> Counter:
    """The bad-record corpus for a whole pipeline run with ingest's *default* size limit.

    Every GOOD and BAD record above except the small ``too_large`` one (under the default limit it
    is an ordinary document), plus a real 50 MiB document (``too_large``), the ``good_lines``
    (real documents curation can keep), and exact copies of the first ``n_copies`` of them under
    new ids (for dedup). Returns expected ingest outcomes (``None`` = written to bronze).
    """
    import json

    cases = [case for case in GOOD + BAD if not case[0].startswith(b'{"id": "b14"')]
    huge = b'{"id": "huge", "text": "' + b"lorem ipsum " * (HUGE_DOC_BYTES // 12) + b'"}'
    cases.append((huge, "too_large"))
    cases += [(line, None) for line in good_lines]
    for line in good_lines[:n_copies]:
        record = json.loads(line)
        record["id"] = f"{record['id']}-copy"
        cases.append((json.dumps(record).encode(), None))
    path.write_bytes(b"\n".join(line for line, _ in cases) + b"\n")
    return Counter(reason for _, reason in cases)
