"""Benchmark 1: dedup quality against near-duplicate pairs of known exact Jaccard.

    python bench/dedup/bench_quality.py [--pairs 4000] [--seed 0] [--work DIR] [--data DIR]

Corpus: Gutenberg paragraphs (shared/data/gutenberg_12_novels) joined into ~300-word documents. For
``--pairs`` of them a near-duplicate copy is injected: words are substituted / deleted / inserted
(random corpus words) until the exact word-5-gram Jaccard of the pair (udfs.curation.minhash.jaccard of
shingle_set, i.e. on simplified text) is near a target drawn uniformly from [0.45, 1.0]; the measured
Jaccard is what pairs are bucketed by. The remaining documents are singletons.

The real job then runs on a Delta table of all documents, in this process (``jobs.dedup.main(argv)``,
the same as ``python -m jobs.dedup ARGV``) on local[2], once per configuration:

- default: threshold 0.8, 5-grams, LSH 14 x 8 chosen for verification, exact Jaccard verification;
- ``--no-verify``: LSH only (bands chosen for balanced errors: 9 x 12);
- datatrove-like: ``--bands 14 --rows 8 --no-verify`` (datatrove's 14 x 8, no verification).

A pair counts as merged when both documents get the same ``cluster_id``. Reported: recall over pairs with
J >= threshold + 0.05, false-merge rate over pairs with J <= threshold - 0.1, the merge rate per Jaccard
bucket, and merges between documents of different pairs (unrelated documents).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import common  # noqa: E402  (sets sys.path to the repository)

CONFIGS = {
    "default (verify, 14x8)": [],
    "--no-verify (9x12)": ["--no-verify"],
    "datatrove-like (14x8, no verify)": ["--bands", "14", "--rows", "8", "--no-verify"],
}


def build(data: Path, n_pairs: int, seed: int):
    rng = random.Random(seed)
    base = common.gutenberg_docs(data)
    rng.shuffle(base)
    vocab = [w for d in base[:2000] for w in d.split()]
    assert n_pairs <= len(base), f"only {len(base)} base documents"
    docs, pairs = [], []
    t0 = time.perf_counter()
    for i, text in enumerate(base):
        a = f"d{i:05d}a"
        docs.append((a, text))
        if i < n_pairs:
            target = rng.uniform(0.45, 1.0)
            copy, j, k = common.near_duplicate(text, target, seed * 100003 + i, vocab)
            b = f"d{i:05d}b"
            docs.append((b, copy))
            pairs.append({"a": a, "b": b, "target": target, "jaccard": j, "edits": k})
    print(
        f"built {len(docs)} docs ({len(pairs)} pairs, {len(base) - n_pairs} singletons) "
        f"in {time.perf_counter() - t0:.0f}s"
    )
    return docs, pairs


def evaluate(pairs, cl, threshold):
    merged = [cl[p["a"]] == cl[p["b"]] for p in pairs]
    hi = [m for p, m in zip(pairs, merged) if p["jaccard"] >= threshold + 0.05]
    lo = [m for p, m in zip(pairs, merged) if p["jaccard"] <= threshold - 0.1]
    edges = [round(0.45 + 0.05 * i, 2) for i in range(11)] + [1.0001]
    buckets = []
    for b0, b1 in zip(edges[:-1], edges[1:]):
        ms = [m for p, m in zip(pairs, merged) if b0 <= p["jaccard"] < b1]
        buckets.append(
            {"bucket": f"[{b0:.2f}, {min(b1, 1.0):.2f}{']' if b1 > 1 else ')'}", "pairs": len(ms), "merged": sum(ms)}
        )
    # documents merged with something other than their own pair partner
    groups: dict[str, set[str]] = {}
    for doc, c in cl.items():
        groups.setdefault(c, set()).add(doc[:6])
    foreign = sum(len(g) - 1 for g in groups.values() if len(g) > 1)
    return {
        "recall_hi": (sum(hi), len(hi)),
        "false_merge_lo": (sum(lo), len(lo)),
        "buckets": buckets,
        "unrelated_merges": foreign,
        "pairs": [[p["jaccard"], m] for p, m in zip(pairs, merged)],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=0.8)
    p.add_argument("--data", type=Path, default=common.DATA)
    p.add_argument("--work", help="scratch folder (default: a temp dir, removed)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    print(common.machine())
    docs, pairs = build(args.data, args.pairs, args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="dedup_quality_"))
    spark = common.get_session()
    common.write_docs(spark, str(work / "silver"), docs)
    results = {}
    for tag, (name, extra) in enumerate(CONFIGS.items()):
        argv = [
            "--input",
            str(work / "silver"),
            "--lake",
            str(work / f"lake{tag}"),
            "--clusters",
            str(work / f"lake{tag}" / "clusters"),
            "--threshold",
            str(args.threshold),
            *extra,
        ]
        rc, wall = common.run_dedup(argv)
        assert rc == 0, f"dedup failed for {name}: rc={rc}"
        res = evaluate(pairs, common.clusters(spark, str(work / f"lake{tag}" / "clusters")), args.threshold)
        res["wall_s"] = wall
        res["argv"] = " ".join(extra)
        results[name] = res
        r, f = res["recall_hi"], res["false_merge_lo"]
        print(
            f"\n== {name}: python -m jobs.dedup --input SILVER --lake LAKE --clusters LAKE/clusters "
            f"--threshold {args.threshold} {' '.join(extra)}  ({wall:.0f}s)"
        )
        print(
            f"recall J>={args.threshold + 0.05:.2f}: {r[0]}/{r[1]} = {r[0] / max(r[1], 1):.4f}; "
            f"false merges J<={args.threshold - 0.1:.2f}: {f[0]}/{f[1]} = {f[0] / max(f[1], 1):.4f}; "
            f"unrelated-doc merges: {res['unrelated_merges']}"
        )
        for b in res["buckets"]:
            print(f"  J {b['bucket']}: {b['merged']}/{b['pairs']} merged")
    if args.json:
        Path(args.json).write_text(json.dumps({"pairs": len(pairs), "docs": len(docs), "results": results}, indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
