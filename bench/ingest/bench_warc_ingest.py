"""The WARC ingest job (Spark, local[N]) vs fastwarc + the same extractor in one process, on the same files.

    .venv/bin/python bench/ingest/bench_warc_ingest.py \\
        --pages ../shared/data/web_articles_zyte/zyte_article_pages_html.jsonl.gz \\
        --repeat 8 --files 4 --runs 3 [--cores 2] [--raw PATH]

The corpus: the 181 real article pages of ``web_articles_zyte`` repeated ``--repeat`` times, written with
warcio's writer as Common Crawl lays out a WARC: per page a request record and a 200 response record
(``text/html; charset=utf-8``), one gzip member per record, spread over ``--files`` ``.warc.gz`` files
(plus one warcinfo record each). Both sides read those files from disk and count records per CPU-second:

- Ours: ``jobs.ingest.main --format warc`` on ``local[N]`` into a fresh lake each run (listing, one task
  per file, framing, HTTP, charset, resiliparse main-content extraction, hashing, accounting, the Delta
  MERGE into bronze and quarantine, the runs-table row). CPU = user + system seconds of the whole process
  tree (driver, JVM, Python workers) from /proc. Warm-up: one run on one small file first.
- Baseline: fastwarc's ``ArchiveIterator`` (HTTP parsed by fastwarc), response records with status 200 and
  an HTML type, payload decoded with the HTTP charset (else resiliparse's detection) and the same
  ``html_to_text(main_content=True)``; one process, one thread, nothing written. CPU = process time.
  Warm-up: one pass over the small file.

Same repeats, same statistic: ``--runs`` timed runs of each side, median of each. Both sides must find the
same number of records and documents (checked). Raw numbers (every run, load averages) go to ``--raw``
(default ``bench/ingest/raw/warc_ingest-<UTC>.json``).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from benchlib import default_raw_path, median, pin_threads, write_raw
from proc_cpu import tree_cpu_seconds


def write_corpus(pages: list[dict], folder: str, repeat: int, files: int) -> tuple[list[str], int]:
    """``files`` .warc.gz files holding request + response records for every page, ``repeat`` times.

    Returns:
        (paths, number of records written).
    """
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"crawl-{i:03d}.warc.gz") for i in range(files)]
    handles = [open(p, "wb") for p in paths]  # closed below
    writers = [WARCWriter(h, gzip=True) for h in handles]
    for w, p in zip(writers, paths):
        w.write_record(w.create_warcinfo_record(os.path.basename(p), {"software": "lakelm bench"}))
    n = files
    for k in range(repeat):
        for i, page in enumerate(pages):
            w = writers[(k * len(pages) + i) % files]
            url = page["url"] + (f"#copy{k}" if k else "")
            host = url.split("/")[2]
            req = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            w.write_record(w.create_warc_record(url, "request", payload=io.BytesIO(req), length=len(req)))
            body = page["html"].encode("utf-8")
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))
            n += 2
    for h in handles:
        h.close()
    return paths, n


def fastwarc_baseline(paths: list[str]) -> tuple[int, int]:
    """fastwarc + the same extractor: (records seen, documents with text)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    from udfs.curation.normalize import html_to_text

    records = docs = 0
    for path in paths:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh, parse_http=True):
                records += 1
                if rec.record_type != WarcRecordType.response or rec.http_headers.status_code != 200:
                    continue
                if "html" not in (rec.http_content_type or ""):
                    continue
                body = rec.reader.read()
                text = html_to_text(bytes_to_str(body, rec.http_charset or detect_encoding(body)), main_content=True)
                docs += bool(text.strip())
    return records, docs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", required=True, help="zyte_article_pages_html.jsonl.gz (fields url, html)")
    p.add_argument("--repeat", type=int, default=8, help="copies of the 181 pages (URLs made unique)")
    p.add_argument("--files", type=int, default=4, help=".warc.gz files the records are spread over")
    p.add_argument("--runs", type=int, default=3, help="timed runs of each side (median reported)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--raw", help="raw JSON output (default bench/ingest/raw/warc_ingest-<UTC>.json)")
    args = p.parse_args(argv)
    pin_threads(1)

    from jobs import ingest
    from jobs.common.runs import read_runs
    from jobs.common.spark import get_spark

    with gzip.open(args.pages, "rt", encoding="utf-8") as fh:
        pages = [json.loads(line) for line in fh]
    spark = get_spark("bench-warc-ingest", master=f"local[{args.cores}]", conf={"spark.sql.shuffle.partitions": "4"})
    spark.sparkContext.setLogLevel("ERROR")
    report: dict = {"bench": "ingest/warc_ingest", "cores": args.cores, "repeat": args.repeat, "files": args.files}
    with tempfile.TemporaryDirectory() as tmp:
        paths, n_records = write_corpus(pages, os.path.join(tmp, "crawl"), args.repeat, args.files)
        warm, _ = write_corpus(pages[:20], os.path.join(tmp, "warm"), 1, 1)
        size = sum(os.path.getsize(x) for x in paths)
        print(f"{n_records} records in {len(paths)} files, {size / 1e6:.1f} MB compressed", flush=True)
        assert ingest.main(["--lake", os.path.join(tmp, "warm_lake"), "--input", warm[0], "--format", "warc"]) == 0
        fastwarc_baseline(warm)
        ours, base = [], []
        for r in range(args.runs):
            lake = os.path.join(tmp, f"lake_{r}")
            load0 = os.getloadavg()[0]
            t0, c0 = time.monotonic(), tree_cpu_seconds()
            assert ingest.main(["--lake", lake, "--input", os.path.join(tmp, "crawl"), "--format", "warc"]) == 0
            wall, cpu = time.monotonic() - t0, tree_cpu_seconds() - c0
            counts = read_runs(spark, os.path.join(lake, "runs"), job="ingest").collect()[0].counts
            ours.append(
                {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "load_before": load0,
                    "load_after": os.getloadavg()[0],
                    "counts": dict(counts),
                }
            )
            print(f"run {r} ours: {cpu:.1f} CPU s, {wall:.1f} s wall, {counts['documents']} documents", flush=True)

            load0 = os.getloadavg()[0]
            t0, c0 = time.monotonic(), time.process_time()
            records, docs = fastwarc_baseline(paths)
            wall, cpu = time.monotonic() - t0, time.process_time() - c0
            base.append(
                {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "load_before": load0,
                    "load_after": os.getloadavg()[0],
                    "records": records,
                    "documents": docs,
                }
            )
            print(f"run {r} fastwarc: {cpu:.1f} CPU s, {wall:.1f} s wall, {docs} documents", flush=True)
            assert records == counts["records"] == n_records, (records, counts["records"], n_records)
            assert docs == counts["documents"], (docs, counts["documents"])
    ours_rate = n_records / median([x["cpu_s"] for x in ours])
    base_rate = n_records / median([x["cpu_s"] for x in base])
    report.update(
        records=n_records,
        compressed_bytes=size,
        ours={"runs": ours, "records_per_cpu_s": ours_rate},
        fastwarc={"runs": base, "records_per_cpu_s": base_rate},
        ratio_per_cpu_s=ours_rate / base_rate,
    )
    print(
        f"\n{n_records} records, median of {args.runs}: ingest job {ours_rate:.0f} records/CPU-s, fastwarc + extractor "
        f"{base_rate:.0f} records/CPU-s: {ours_rate / base_rate:.2f}x (goal >= 0.8x)"
    )
    spark.stop()
    write_raw(args.raw or default_raw_path("ingest", "warc_ingest"), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
