"""Benchmark 2: fuzzy dedup vs human near-duplicate judgements (CopyCat dev pairs).

    python bench/dedup/bench_copycat.py [--data DIR] [--work DIR] [--no-job]

Gold (shared/data/near_duplicate_pairs/SOURCE.md): duplicate = human_label_numeric >= 2, not a
duplicate = 0.5, other labels (1, null) skipped.

Per setting (5-grams at 0.8, the default; 3-grams at 0.7) four predictions per pair:

- ``exact J (ceiling)``: exact Jaccard of the pair's shingle sets (udfs.curation.minhash.shingle_set:
  simplified text, the job's own shingles) >= threshold. Also with SOURCE.md's tokenisation (``\\w+`` on
  lowercased text) to check that table.
- ``LSH + verify (functions)``: what the job decides for an isolated pair, from the same functions:
  same normalised text (exact stage), or a shared LSH band (minhash_batch with the job's
  ``minhash_config``) and exact Jaccard >= threshold.
- ``LSH only (functions)``: shared band with the ``--no-verify`` bands.
- ``job``: the real job (``jobs.dedup.main``, i.e. ``python -m jobs.dedup``) on a Delta table of all 480
  documents (ids ``<pair id>/a``, ``<pair id>/b``); a pair is predicted duplicate when both documents get
  the same ``cluster_id`` (so transitive merges through other documents count, as in production).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

import common  # noqa: E402

SETTINGS = [(5, 0.8), (3, 0.7)]


def prf(pred, gold):
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1}


def word_ngrams(text: str, n: int) -> set:
    w = re.findall(r"\w+", text.lower())
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def function_predictions(rows, n: int, t: float) -> dict[str, list[bool]]:
    import numpy as np

    from jobs.transforms.gold import DedupConfig, minhash_config
    from udfs.curation.minhash import jaccard, minhash_batch, shingle_set

    def norm(s):
        return re.sub(r"\s+", " ", s).strip().lower()

    out = {
        "exact J (ceiling)": [],
        "exact J, \\w+ words (SOURCE.md)": [],
        "LSH + verify (functions)": [],
        "LSH only (functions)": [],
    }
    cfg_v = minhash_config(DedupConfig("i", "o", "r", threshold=t, ngram=n, verify=True))
    cfg_nv = minhash_config(DedupConfig("i", "o", "r", threshold=t, ngram=n, verify=False))
    texts = [r["text_a"] for r in rows] + [r["text_b"] for r in rows]
    mh = {c: minhash_batch(texts, c) for c in (cfg_v, cfg_nv)}
    k = len(rows)
    for i, r in enumerate(rows):
        j = jaccard(shingle_set(r["text_a"], n), shingle_set(r["text_b"], n))
        wa, wb = word_ngrams(r["text_a"], n), word_ngrams(r["text_b"], n)
        exact = norm(r["text_a"]) == norm(r["text_b"])

        def band_hit(df):
            if "empty" in (df.minhash_flag[i], df.minhash_flag[k + i]):
                return False
            return bool(np.any(df.minhash_bands[i] == df.minhash_bands[k + i]))

        out["exact J (ceiling)"].append(exact or j >= t)
        out["exact J, \\w+ words (SOURCE.md)"].append(len(wa & wb) / max(len(wa | wb), 1) >= t)
        out["LSH + verify (functions)"].append(exact or (band_hit(mh[cfg_v]) and j >= t))
        out["LSH only (functions)"].append(exact or band_hit(mh[cfg_nv]))
    return out, (cfg_v.bands, cfg_v.rows), (cfg_nv.bands, cfg_nv.rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=common.DATA)
    p.add_argument("--work", help="scratch folder (default: a temp dir, removed)")
    p.add_argument("--no-job", action="store_true", help="functions only, no Spark")
    p.add_argument("--json")
    args = p.parse_args()
    print(common.machine())
    allrows = common.read_jsonl(args.data / "near_duplicate_pairs" / "copycat_pairs_dev.jsonl")
    idx = [
        i
        for i, r in enumerate(allrows)
        if r["human_label_numeric"] is not None and (r["human_label_numeric"] >= 2 or r["human_label_numeric"] == 0.5)
    ]
    rows = [allrows[i] for i in idx]
    gold = [r["human_label_numeric"] >= 2 for r in rows]
    print(f"{len(rows)} labelled pairs: {sum(gold)} duplicates, {len(gold) - sum(gold)} not")
    results = {}
    work = spark = None
    if not args.no_job:
        work = Path(args.work or tempfile.mkdtemp(prefix="dedup_copycat_"))
        spark = common.get_session()
        docs = [(f"{r['id']}/a", r["text_a"]) for r in allrows] + [(f"{r['id']}/b", r["text_b"]) for r in allrows]
        common.write_docs(spark, str(work / "silver"), docs)
    for n, t in SETTINGS:
        preds, bv, bnv = function_predictions(rows, n, t)
        if spark is not None:
            for tag, extra in (("job", []), ("job --no-verify", ["--no-verify"])):
                lake = work / f"lake_{n}_{t}_{len(extra)}"
                argv = [
                    "--input",
                    str(work / "silver"),
                    "--lake",
                    str(lake),
                    "--clusters",
                    str(lake / "clusters"),
                    "--ngram",
                    str(n),
                    "--threshold",
                    str(t),
                    *extra,
                ]
                rc, wall = common.run_dedup(argv)
                assert rc == 0, f"dedup failed: {argv}"
                cl = common.clusters(spark, str(lake / "clusters"))
                preds[tag] = [cl[f"{r['id']}/a"] == cl[f"{r['id']}/b"] for r in rows]
                print(
                    f"  ran: python -m jobs.dedup --input SILVER --lake LAKE --clusters LAKE/clusters "
                    f"--ngram {n} --threshold {t} {' '.join(extra)}  ({wall:.0f}s)"
                )
        print(f"\n== word {n}-grams, threshold {t} (LSH {bv[0]}x{bv[1]} with verify, {bnv[0]}x{bnv[1]} without)")
        res = {}
        for name, pred in preds.items():
            m = prf(pred, gold)
            res[name] = m
            print(
                f"  {name:34s} P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}  "
                f"(tp {m['tp']} fp {m['fp']} fn {m['fn']})"
            )
        results[f"{n}-gram@{t}"] = {"bands_verify": bv, "bands_no_verify": bnv, "metrics": res}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if work is not None and not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
