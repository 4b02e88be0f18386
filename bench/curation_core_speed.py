"""Speed of the pure curation core (no Spark): docs per CPU-second of ``curate_batch`` and ``minhash_batch``.

Usage (from the repository root):
    python bench/curation_core_speed.py --input /path/to/c4_en_sample_1000.jsonl --input /path/to/cc.jsonl

Each input is a JSONL file with a "text" field. For every file it reports, single-threaded and in CPU seconds
(``time.process_time``), after one warm-up batch that loads the lazy state (langid model, Unicode classes):
- ``chain``: Gopher repetition + Gopher quality + C4 + FineWeb (language ID and PII off): the chain that
  ANCHORS.md times for datatrove (~84 docs per CPU-second on prose);
- ``full``: the default ``curate_batch`` (normalise, language ID, the chain, PII);
- ``minhash``: ``minhash_batch`` with the default 14 x 8 = 112 hashes (64-bit and 32-bit precision).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace

import pandas as pd

from udfs.curation import (
    CurationConfig,
    LangIdConfig,
    MinHashConfig,
    PiiConfig,
    curate_batch,
    minhash_batch,
)

log = logging.getLogger("curation_core_speed")


def _read_texts(path: str, limit: int | None) -> pd.Series:
    with open(path, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    return pd.Series(texts[:limit] if limit else texts)


def _rate(fn, texts: pd.Series, repeats: int) -> tuple[float, float]:
    """(docs per CPU-second, MB of text per CPU-second), best of ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn(texts)
        best = min(best, time.process_time() - t0)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return len(texts) / best, n_bytes / best / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", action="append", required=True, help="JSONL file with a 'text' field")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N documents of each file")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (best is reported)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    chain_cfg = CurationConfig(langid=LangIdConfig(enabled=False), pii=PiiConfig(enabled=False))
    full_cfg = CurationConfig()
    mh64, mh32 = MinHashConfig(), MinHashConfig(precision=32)
    runs = {
        "chain": lambda s: curate_batch(s, chain_cfg),
        "full": lambda s: curate_batch(s, full_cfg),
        "chain_datatrove_order": lambda s: curate_batch(s, replace(chain_cfg, c4_lines_first=False)),
        "minhash64": lambda s: minhash_batch(s, mh64),
        "minhash32": lambda s: minhash_batch(s, mh32),
    }
    for path in args.input:
        texts = _read_texts(path, args.limit)
        for fn in runs.values():  # warm-up: lazy model and regex state
            fn(texts[:8])
        for name, fn in runs.items():
            docs_s, mb_s = _rate(fn, texts, args.repeats)
            log.info("%-60s %-22s %8.0f docs/CPU-s %6.2f MB/CPU-s (%d docs)", path, name, docs_s, mb_s, len(texts))


if __name__ == "__main__":
    main()
