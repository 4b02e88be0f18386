"""udfs/warc.py and the compressed line reader: real pages written with warcio, damaged on purpose.

Every record must come back as exactly one row (document, skipped with a reason, or quarantined with a
reason), and the good records around a damaged one must survive with their exact text.
"""

import bz2
import gzip
import io
from urllib.parse import urlsplit

import pytest

from tests.conftest import DATA
from udfs.curation.normalize import html_to_text
from udfs.ingest import codec_of, iter_compressed_lines
from udfs.warc import ArchiveConfig, domain_of, iter_archive_rows

warc_files = pytest.importorskip("tests.warc_files", reason="warcio writes the test archives")
pytest.importorskip("warcio")

PAGES = warc_files.load_pages()
ALL_TEXT = ArchiveConfig(html_main_content=False)  # all visible text, as WET files hold


def _rows(data: bytes, cfg: ArchiveConfig = ArchiveConfig()):
    return list(iter_archive_rows(io.BytesIO(data), cfg))


def _kind(row) -> str:
    kinds = [row.text is not None, row.skip is not None, row.reason is not None]
    assert sum(kinds) == 1, f"a row must be exactly one of document/skipped/quarantined: {row[:1] + row[4:9]}"
    return "doc" if row.text is not None else f"skip:{row.skip}" if row.skip else f"q:{row.reason}"


def _main_text(page) -> str:
    return html_to_text(page["html"], main_content=True)


def test_warc_gz_every_record_type_and_the_page_text():
    records = [warc_files.warcinfo_record()]
    for page in PAGES:
        records += [warc_files.request_record(page["url"]), warc_files.page_record(page)]
        records.append(warc_files.metadata_record(page["url"]))
    not_found = warc_files.http_response(b"<html><body>gone</body></html>", status="404 Not Found")
    png = warc_files.http_response(b"\x89PNG\r\n\x1a\n" + bytes(200), "image/png")
    records += [
        warc_files.response_record("http://example.org/gone", not_found),
        warc_files.response_record("http://example.org/logo.png", png),
        warc_files.revisit_record(PAGES[0]["url"]),
    ]
    rows = _rows(b"".join(records), ALL_TEXT)

    per_page = ["skip:request", "doc", "skip:metadata"]
    assert [_kind(r) for r in rows] == [
        "skip:metadata",
        *per_page * 6,
        "skip:http_status",
        "skip:non_html",
        "skip:empty",
    ]
    docs = [r for r in rows if r.text is not None]
    # HTTP headers stripped, UTF-8 decoded, then the extractor on exactly the page's HTML
    assert [d.text for d in docs] == [html_to_text(p["html"], main_content=False) for p in PAGES]
    for doc, page in zip(docs, PAGES):
        assert doc.url == page["url"] and doc.domain == urlsplit(page["url"]).hostname
        assert doc.http_status == 200 and doc.content_type == "text/html"
        assert doc.record_id.startswith("urn:uuid:") and doc.date.endswith("Z")
    assert len({d.record_id for d in docs}) == 6
    assert rows[-3].http_status == 404 and rows[-2].content_type == "image/png"


def test_default_extraction_keeps_the_main_content():
    rows = _rows(b"".join(warc_files.page_record(p) for p in PAGES))
    assert [r.text for r in rows] == [_main_text(p) for p in PAGES]
    all_text = [html_to_text(p["html"], main_content=False) for p in PAGES]
    assert sum(map(len, all_text)) > sum(len(r.text) for r in rows)  # boilerplate gone


@pytest.mark.parametrize("content_type", ["text/html; charset=euc-kr", "text/html"])
def test_charset_declared_or_detected(content_type):
    korean = next(p for p in PAGES if p["id"] == "zyte-011")
    body = korean["html"].encode("euc-kr", errors="xmlcharrefreplace")
    assert body != korean["html"].encode("utf-8")
    record = warc_files.response_record(korean["url"], warc_files.http_response(body, content_type))
    (row,) = _rows(record)
    (utf8,) = _rows(warc_files.page_record(korean))
    assert row.text == utf8.text
    assert sum("\uac00" <= ch <= "\ud7a3" for ch in row.text) > 200  # Hangul syllables, not mojibake


def test_damaged_warc_gz_quarantines_the_bad_members_and_keeps_the_rest():
    good = [warc_files.page_record(p) for p in PAGES]
    corrupt = bytearray(good[1])
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 32] = bytes(32)
    header_broken = gzip.compress(
        warc_files.page_record(PAGES[2], gz=False).replace(b"Content-Length: ", b"Content-Length ", 1), mtime=0
    )
    junk = b"these bytes are not gzip\r\n" * 4
    torn_tail = good[5][: len(good[5]) // 2]
    data = b"".join(
        [warc_files.warcinfo_record(), good[0], bytes(corrupt), header_broken, good[3], junk, good[4], torn_tail]
    )

    rows = _rows(data)
    kinds = [_kind(r) for r in rows]
    assert kinds == [
        "skip:metadata",
        "doc",
        "q:bad_gzip",
        "q:malformed_header",
        "doc",
        "q:bad_gzip",
        "doc",
        "q:truncated",
    ]
    assert [r.text for r in rows if r.text is not None] == [_main_text(PAGES[i]) for i in (0, 3, 4)]
    assert rows[7].url == PAGES[5]["url"]  # the torn record's header was still readable
    offsets = [r.offset for r in rows]
    assert offsets == sorted(offsets) and offsets[-1] == len(data) - len(torn_tail)
    assert all(r.detail.startswith(f"byte {r.offset}:") for r in rows if r.reason)
    assert rows[5].raw_bytes == len(junk)


def test_damaged_plain_warc_resynchronises_on_the_next_record():
    recs = [warc_files.page_record(p, gz=False) for p in PAGES]
    header_broken = recs[1].replace(b"Content-Length: ", b"Content-Length ", 1)
    torn = recs[3][:-304] + b"\r\n\r\n"  # the block lost 300 bytes: the next record starts inside it
    cut_file = recs[5][: len(recs[5]) - 5000]
    data = b"".join([warc_files.warcinfo_record(gz=False), recs[0], header_broken, recs[2], torn, recs[4], cut_file])

    rows = _rows(data)
    assert [_kind(r) for r in rows] == [
        "skip:metadata",
        "doc",
        "q:malformed_header",
        "doc",
        "q:truncated",
        "doc",
        "q:truncated",
    ]
    assert [r.text for r in rows if r.text is not None] == [_main_text(PAGES[i]) for i in (0, 2, 4)]
    assert rows[4].url == PAGES[3]["url"] and "next record starts" in rows[4].detail
    # every byte of the file is in some row, apart from the CRLF pairs that end records
    assert len(data) - 4 * len(rows) <= sum(r.raw_bytes for r in rows) <= len(data)


@pytest.mark.parametrize("gz", [True, False])
def test_too_large_records_are_quarantined_and_the_next_ones_kept(gz):
    limit = 24_000
    sizes = [len(warc_files.http_response(p["html"].encode())) for p in PAGES]
    big = [s > limit for s in sizes]
    assert any(big) and not all(big)
    rows = _rows(b"".join(warc_files.page_record(p, gz=gz) for p in PAGES), ArchiveConfig(max_record_bytes=limit))
    assert [_kind(r) for r in rows] == ["q:too_large" if b else "doc" for b in big]
    for row, size, b in zip(rows, sizes, big):
        if b:
            assert len(row.raw_head) <= ArchiveConfig.preview_bytes and row.raw_bytes >= (0 if gz else size)


def test_content_encoding_and_chunking_are_undone_or_quarantined():
    page = PAGES[3]
    body = gzip.compress(page["html"].encode(), mtime=0)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    headers = (("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked"))
    good = warc_files.response_record(page["url"], warc_files.http_response(chunked, headers=headers))
    bad_headers = (("Content-Encoding", "gzip"),)
    bad = warc_files.response_record(page["url"], warc_files.http_response(b"plain, not gzip", headers=bad_headers))
    rows = _rows(good + bad)
    assert [_kind(r) for r in rows] == ["doc", "q:decode_error"]
    assert rows[0].text == _main_text(page)


def test_wet_conversion_records_are_documents():
    data = warc_files.warcinfo_record() + b"".join(warc_files.conversion_record(p["url"], p["wet_text"]) for p in PAGES)
    rows = _rows(data)
    assert [_kind(r) for r in rows] == ["skip:metadata", *["doc"] * 6]
    assert [r.text for r in rows[1:]] == [p["wet_text"] for p in PAGES]
    assert {(r.content_type, r.http_status) for r in rows[1:]} == {("text/plain", None)}


@pytest.mark.parametrize("gz", [False, True])
def test_arc_files(gz):
    data = warc_files.arc_file(PAGES[:3], gz=gz)
    rows = _rows(data, ArchiveConfig(format="arc"))
    assert [_kind(r) for r in rows] == ["skip:metadata", "doc", "doc", "doc"]
    assert [r.text for r in rows[1:]] == [_main_text(p) for p in PAGES[:3]]
    assert [r.url for r in rows[1:]] == [p["url"] for p in PAGES[:3]]
    assert {r.date for r in rows[1:]} == {"2019-07-15T12:00:00Z"} and {r.record_id for r in rows} == {None}
    torn = _rows(data[:-2000], ArchiveConfig(format="arc"))
    assert [_kind(r) for r in torn] == ["skip:metadata", "doc", "doc", "q:truncated"]


def test_domain_of():
    assert domain_of("HTTPS://News.Example.co.uk:8443/a?b=c") == "news.example.co.uk"
    assert domain_of("not a url") is None and domain_of(None) is None


# ---------------------------------------------------------------------------------------------------------------
# compressed line files

LINES = (DATA / "cc2019_slice.jsonl").read_bytes().splitlines()
HALF = len(LINES) // 2


def _compressors():
    zstandard = pytest.importorskip("zstandard")
    return {
        "gzip": lambda b: gzip.compress(b, mtime=0),
        "bz2": bz2.compress,
        "zstd": zstandard.ZstdCompressor(write_checksum=True).compress,
    }


def _two_streams(codec: str) -> tuple[bytes, int]:
    """The slice as two concatenated streams (members/frames); returns the data and where stream 2 starts."""
    compress = _compressors()[codec]
    first = compress(b"\n".join(LINES[:HALF]) + b"\n")
    return first + compress(b"\n".join(LINES[HALF:]) + b"\n"), len(first)


@pytest.mark.parametrize("codec", ["gzip", "bz2", "zstd"])
def test_compressed_lines_whole_cut_and_corrupt(codec):
    data, second = _two_streams(codec)
    whole = list(iter_compressed_lines(io.BytesIO(data), codec))
    assert [r.raw_bin for r in whole] == LINES and {r.reason for r in whole} == {None}

    cut = list(iter_compressed_lines(io.BytesIO(data[: second + (len(data) - second) // 2]), codec))
    assert (
        cut[-1].reason == "truncated"
        and f"compressed byte {len(data[: second + (len(data) - second) // 2])}" in cut[-1].detail
    )
    assert [r.raw_bin for r in cut[:-1]] == LINES[: len(cut) - 1] and len(cut) - 1 >= HALF

    broken = bytearray(data)
    mid = second + (len(data) - second) // 2
    broken[mid : mid + 64] = bytes(range(64))
    rows = list(iter_compressed_lines(io.BytesIO(bytes(broken)), codec))
    assert rows[-1].reason in ("corrupt_stream", "truncated") and "is not read" in rows[-1].detail
    # everything before the damaged stream survives (bytes inflated just before the damage may not)
    assert len(rows) - 1 >= HALF and [r.raw_bin for r in rows[:HALF]] == LINES[:HALF]


def test_overlong_line_is_too_large_without_being_kept_whole():
    lines = [b'{"text": "short"}', b'{"text": "' + b"x" * 5000 + b'"}', b'{"text": "after"}']
    rows = list(
        iter_compressed_lines(
            io.BytesIO(gzip.compress(b"\n".join(lines))), "gzip", max_line_bytes=1000, preview_bytes=100
        )
    )
    assert [r.reason for r in rows] == [None, "too_large", None]
    assert rows[1].raw_bytes == len(lines[1]) and len(rows[1].raw_bin) == 100
    assert [rows[0].raw_bin, rows[2].raw_bin] == [lines[0], lines[2]]


def test_codec_of():
    assert [codec_of(p) for p in ["a.jsonl.gz", "b.json.bz2", "c.jsonl.zst", "d.jsonl", "e/*.gz"]] == [
        "gzip",
        "bz2",
        "zstd",
        None,
        "gzip",
    ]
