"""jobs/ingest.py --format warc and compressed JSONL on the local session: damaged files, full accounting, reruns."""

import gzip
import json
from collections import Counter

import pytest

from jobs import ingest
from jobs.common.runs import read_runs
from tests.conftest import DATA
from udfs.curation.normalize import html_to_text

pytestmark = pytest.mark.spark
warc_files = pytest.importorskip("tests.warc_files", reason="warcio writes the test archives")
pytest.importorskip("warcio")


def _read(spark, path):
    return spark.read.format("delta").load(str(path))


def _crawl_folder(folder, pages):
    """Three archives: a damaged .warc.gz, a plain .warc, a WET file; returns the expected document texts."""
    good = [warc_files.page_record(p) for p in pages]
    corrupt = bytearray(good[1])
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 32] = bytes(32)
    header_broken = gzip.compress(
        warc_files.page_record(pages[2], gz=False).replace(b"Content-Length: ", b"Content-Length ", 1), mtime=0
    )
    damaged = [warc_files.warcinfo_record(), good[0], bytes(corrupt), header_broken, good[3]]
    damaged += [b"not gzip\r\n" * 3, good[4], good[5][: len(good[5]) // 2]]
    (folder / "a.warc.gz").write_bytes(b"".join(damaged))

    plain = [warc_files.warcinfo_record(gz=False)]
    for p in pages[:3]:
        plain += [warc_files.request_record(p["url"], gz=False), warc_files.page_record(p, gz=False)]
    gone = warc_files.http_response(b"<html><body>gone</body></html>", status="404 Not Found")
    plain.append(warc_files.response_record("http://example.org/gone", gone, gz=False))
    (folder / "b.warc").write_bytes(b"".join(plain))

    wet = [warc_files.warcinfo_record()] + [warc_files.conversion_record(p["url"], p["wet_text"]) for p in pages]
    (folder / "c.warc.wet.gz").write_bytes(b"".join(wet))
    main = [html_to_text(p["html"], main_content=True) for p in pages]
    return [main[i] for i in (0, 3, 4)] + main[:3] + [p["wet_text"] for p in pages]


def test_ingest_warc_accounts_for_every_record_and_rerun_adds_nothing(spark, tmp_path):
    pages = warc_files.load_pages()
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    texts = _crawl_folder(crawl, pages)
    args = ["--lake", str(tmp_path / "lake"), "--input", str(crawl), "--format", "warc"]
    assert ingest.main(args) == 0

    bronze = _read(spark, tmp_path / "lake" / "bronze")
    rows = bronze.collect()
    assert Counter(r.text for r in rows) == Counter(texts)
    for r in rows:
        assert r.url and r.domain and r.warc_record_id and r.warc_date is not None
        assert r.doc_id == r.warc_record_id and r.content_type in ("text/html", "text/plain")
        assert r.http_status == (None if r.source_file.endswith(".wet.gz") else 200)
    quarantine = _read(spark, tmp_path / "lake" / "quarantine")
    got = Counter(r.reason for r in quarantine.collect())
    assert got == Counter({"bad_gzip": 2, "malformed_header": 1, "truncated": 1})
    assert all(r.source_file.endswith("a.warc.gz") and r.detail.startswith("byte ") for r in quarantine.collect())

    c = read_runs(spark, str(tmp_path / "lake" / "runs"), job="ingest").collect()[0].counts
    assert c["records"] == 8 + 8 + 7 == c["documents"] + c["skipped"] + c["quarantined"]
    assert (c["documents"], c["written"], c["quarantined"]) == (12, 12, 4)
    assert (c["skipped_metadata"], c["skipped_request"], c["skipped_http_status"]) == (3, 3, 1)
    assert c["read"] == c["written"] + c["unchanged"] + c["quarantined"]

    assert ingest.main(args) == 0  # a rerun writes nothing and still accounts for every record
    again = read_runs(spark, str(tmp_path / "lake" / "runs"), job="ingest").collect()[0].counts
    assert (again["records"], again["written"], again["unchanged"]) == (23, 0, 12)
    assert _read(spark, tmp_path / "lake" / "bronze").count() == 12
    assert _read(spark, tmp_path / "lake" / "quarantine").count() == 4

    # the URL stage of curate reads the archive's url column: a blocked domain loses its 4 documents
    from jobs import curate

    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# test list\nsciencealert.com\n")
    assert curate.main(["--lake", str(tmp_path / "lake"), "--url-blocklist", str(blocklist)]) == 0
    rejected = _read(spark, tmp_path / "lake" / "rejected").filter("drop_reason = 'url_blocked'").collect()
    assert sorted(r.domain for r in rejected) == ["www.sciencealert.com"] * 4
    silver = _read(spark, tmp_path / "lake" / "silver").collect()
    assert silver and not any(r.domain.endswith("sciencealert.com") for r in silver)


def test_ingest_compressed_jsonl_keeps_lines_before_a_broken_tail(spark, tmp_path):
    lines = (DATA / "cc2019_slice.jsonl").read_bytes().splitlines(keepends=True)
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[:40]), mtime=0))
    tail = gzip.compress(b"".join(lines[60:]), mtime=0)
    (src / "b.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[40:60]), mtime=0) + tail[: len(tail) // 2])
    lake = tmp_path / "lake"
    assert ingest.main(["--lake", str(lake), "--input", str(src / "*.jsonl.gz"), "--format", "jsonl"]) == 0

    bronze_ids = {r.doc_id for r in _read(spark, lake / "bronze").collect()}
    first_60 = [json.loads(x) for x in lines[:60]]
    assert {r["id"] for r in first_60 if r["text"].strip()} <= bronze_ids  # every line before the damage
    q = _read(spark, lake / "quarantine").collect()
    torn = [r for r in q if r.reason == "truncated"]
    assert len(torn) == 1 and torn[0].source_file.endswith("b.jsonl.gz") and "compressed byte" in torn[0].detail
    c = read_runs(spark, str(lake / "runs"), job="ingest").collect()[0].counts
    assert c["read"] == c["written"] + c["quarantined"] == len(bronze_ids) + len(q)
