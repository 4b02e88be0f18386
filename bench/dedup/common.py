"""Shared helpers for the dedup benchmarks: corpus paths, document building, word mutations, Spark runs.

The shared corpora live next to the repository: ``<repo>/../shared/data`` (override with ``--data``).
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GUTENBERG_PARAGRAPHS = "gutenberg_12_novels/gutenberg_12_novels_paragraphs.jsonl"


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def gutenberg_docs(data: Path, min_words: int = 300) -> list[str]:
    """Consecutive paragraphs of one book joined (blank line between) until a doc has >= min_words words."""
    docs, cur, n, book = [], [], 0, None
    for rec in read_jsonl(data / GUTENBERG_PARAGRAPHS):
        if rec["book_id"] != book and cur:
            if n >= min_words // 2:
                docs.append("\n\n".join(cur))
            cur, n = [], 0
        book = rec["book_id"]
        cur.append(rec["text"])
        n += len(rec["text"].split())
        if n >= min_words:
            docs.append("\n\n".join(cur))
            cur, n = [], 0
    return docs


def mutate(words: list[str], n_edits: int, seed: int, vocab: list[str]) -> list[str]:
    """Apply the first ``n_edits`` of a seeded random edit sequence: 60% substitute a word with a random
    corpus word, 20% delete a word, 20% insert a random corpus word. Same seed => prefix-consistent edits."""
    rng = random.Random(seed)
    out = list(words)
    for _ in range(n_edits):
        r = rng.random()
        pos = rng.randrange(max(len(out), 1))
        w = vocab[rng.randrange(len(vocab))]
        if r < 0.6 and out:
            out[pos] = w
        elif r < 0.8 and len(out) > 1:
            del out[pos]
        else:
            out.insert(pos, w)
    return out


def near_duplicate(text: str, target_j: float, seed: int, vocab: list[str], n_grams: int = 5):
    """A mutated copy of ``text`` whose exact word-n-gram Jaccard (udfs.curation.minhash.jaccard of
    shingle_set) is as close to ``target_j`` as the edit count allows (binary search on the number of
    edits, at least one). Returns (copy, measured Jaccard, edits)."""
    from udfs.curation.minhash import jaccard, shingle_set

    words = text.split(" ")  # keeps newlines inside tokens: mutations preserve paragraph breaks
    base = shingle_set(text, n_grams)
    lo, hi = 1, max(len(words), 2)
    best = None
    while lo <= hi:
        k = (lo + hi) // 2
        cand = " ".join(mutate(words, k, seed, vocab))
        j = jaccard(base, shingle_set(cand, n_grams))
        if best is None or abs(j - target_j) < abs(best[1] - target_j):
            best = (cand, j, k)
        if j > target_j:
            lo = k + 1
        else:
            hi = k - 1
    return best


def get_session(conf: dict[str, str] | None = None):
    """jobs.common.spark.get_spark with $LAKELM_MASTER (default local[2] here) and extra conf."""
    os.environ.setdefault("LAKELM_MASTER", "local[2]")
    from jobs.common.spark import get_spark

    return get_spark("lakelm-bench-dedup", conf=conf)


def write_docs(spark, path: str, docs: list[tuple[str, str]]) -> None:
    """A Delta table (doc_id string, text string), as silver would hold."""
    spark.createDataFrame(docs, "doc_id string, text string").write.format("delta").mode("overwrite").save(path)


def run_dedup(argv: list[str]) -> tuple[int, float]:
    """``python -m jobs.dedup ARGV`` in this process (same code, shared Spark session). Returns (rc, wall s)."""
    import time

    from jobs import dedup

    t0 = time.perf_counter()
    rc = dedup.main(argv)
    return rc, time.perf_counter() - t0


def clusters(spark, path: str) -> dict[str, str]:
    """doc_id -> cluster_id from the job's --clusters table."""
    return {r[0]: r[1] for r in spark.read.format("delta").load(path).select("doc_id", "cluster_id").collect()}


def machine() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc={os.cpu_count()}, CPU {model}, load average {os.getloadavg()[0]:.1f}"
