"""Decontamination: index size, recall on planted items, false positives on the shared corpora, and speed
against datatrove's ``NGramsDecontFilter``, side by side in one invocation.

    python bench/curation/bench_decontam.py --datatrove-python ../datatrove_venv/bin/python \\
        --eval ../shared/data/eval_tasks/*.jsonl \\
        --input ../shared/data/web_c4_sample/c4_en_sample_1000.jsonl \\
        --input ../shared/data/web_commoncrawl_2019_sample/cc_main_2019_30_sample.jsonl \\
        --clean '../shared/data/*/*.jsonl' [--repeats 3] [--raw PATH]

- ``index``: ``index_from_jsonl`` on the ``--eval`` files: distinct 13-grams, bytes of the arrays, the
  pickled size (what the curate UDF's closure ships to the executors), items without any 13-gram, build CPU-s.
- ``recall``: every item with at least one 13-gram is planted twice (its longest evaluation text exactly, and
  re-cased/re-punctuated) in the middle of an ``--input`` document; ``found`` counts flagged copies (goal 100%),
  ``found_as_own_task`` those reported under the item's own task (not under an earlier task sharing the n-gram).
- ``clean``: every ``text``/``text_a``/``text_b`` string of the ``--clean`` JSONL files (eval files excluded),
  unmodified: the documents flagged (goal 0; any flagged one is listed with its n-gram).
- speed, per ``--input`` file, single thread, process CPU seconds, median of ``--repeats``:
  ``ours`` = ``find_contamination`` in batches of 10,000 (Spark's Arrow batch: the compiled scan);
  ``ours_numpy`` = its numpy path (the fallback without numba), checked to decide the same; ``hash_set`` = the plain
  single-process scan (a Python set of n-gram strings, every n-gram of every document joined and looked
  up, stopping at the first hit): the reference the decisions are checked against; ``datatrove`` =
  ``NGramsDecontFilter`` in a child process under datatrove's Python (``bench/datatrove_side.py decont``), its
  index built from the same JSONL by its own indexer code, with its default spaCy word tokenizer and again
  with a whitespace tokenizer. Documents are the ``--input`` texts with about 100 of the planted copies appended, so
  every side finds something.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pickle
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import add_datatrove_args, default_raw_path, median, pin_threads, run_datatrove, write_raw

BATCH = 10_000  # spark.sql.execution.arrow.maxRecordsPerBatch's default: what one curate_batch call sees
SPEED_PLANTED = 100  # planted copies added to the speed documents (every k-th of them), so each side finds some


def _texts(path: str, fields=("text",)) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                out += [rec[f] for f in fields if isinstance(rec.get(f), str) and rec[f].strip()]
    return out


def _recase_repunctuate(text: str, rng: random.Random) -> str:
    """Random case per word, punctuation removed from or added around words, some spaces made newlines."""
    out = []
    for word in text.split():
        if rng.random() < 0.5:
            word = "".join(ch for ch in word if ch.isalnum()) or word
        word = rng.choice([str.upper, str.lower, str.title, str.swapcase])(word)
        if rng.random() < 0.3:
            word += rng.choice([",", ".", ";", ":", "!", "?", "'", ")", " -"])
        if rng.random() < 0.1:
            word = rng.choice(["(", '"', "'"]) + word
        out.append(word)
    return "".join(w + rng.choice([" ", " ", " ", "\n", "  "]) for w in out).strip()


def _plant(evals: dict[str, list[str]], hosts: list[str], n: int, seed: int = 0):
    from udfs.curation.decontam import eval_texts, ngram_words

    rng, docs, expected = random.Random(seed), [], []
    for task, lines in evals.items():
        for line in filter(str.strip, lines):
            texts = [t for t in eval_texts(json.loads(line)) if len(ngram_words(t)) >= n]
            if not texts:
                continue
            item = max(texts, key=len)
            for kind, copy in (("exact", item), ("recased_repunctuated", _recase_repunctuate(item, rng))):
                host = rng.choice(hosts)
                cut = host.find(" ", len(host) // 2)
                cut = len(host) if cut < 0 else cut
                docs.append(f"{host[:cut]} {copy} {host[cut:]}")
                expected.append((task, kind))
    return docs, expected


def _hash_set_scan(texts: list[str], grams: dict[str, str], n: int) -> list[str | None]:
    """The plain scan: every n-gram string of every document looked up in a set, first hit wins."""
    from udfs.curation.decontam import ngram_words

    out = []
    for t in texts:
        w, task = ngram_words(t), None
        for i in range(len(w) - n + 1):
            task = grams.get(" ".join(w[i : i + n]))
            if task is not None:
                break
        out.append(task)
    return out


def _gram_strings(evals: dict[str, list[str]], n: int) -> dict[str, str]:
    from udfs.curation.decontam import eval_texts, ngram_words

    grams: dict[str, str] = {}
    for task, lines in evals.items():
        for line in filter(str.strip, lines):
            for text in eval_texts(json.loads(line)):
                w = ngram_words(text)
                for i in range(len(w) - n + 1):
                    grams.setdefault(" ".join(w[i : i + n]), task)
    return grams


def _cpu_runs(fn, repeats: int) -> tuple[list[float], object]:
    out, res = [], None
    for _ in range(repeats):
        t0 = time.process_time()
        res = fn()
        out.append(time.process_time() - t0)
    return out, res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval", nargs="+", required=True, help="evaluation JSONL files (task = file stem)")
    p.add_argument("--input", action="append", required=True, help="JSONL with 'text': speed docs and plant hosts")
    p.add_argument("--clean", action="append", default=[], help="JSONL files or globs that must lose nothing")
    p.add_argument("--repeats", type=int, default=3, help="runs per row, both sides (median reported)")
    p.add_argument("--no-datatrove", action="store_true", help="our rows only (no ratio)")
    p.add_argument("--raw", help="raw JSON output (default bench/curation/raw/decontam-<UTC>.json)")
    add_datatrove_args(p)
    args = p.parse_args(argv)
    pin_threads(1)
    from udfs.curation.decontam import _find_reference, find_contamination, index_from_jsonl

    evals = {Path(e).stem: Path(e).read_text(encoding="utf-8").split("\n") for e in args.eval}
    t0 = time.process_time()
    index = index_from_jsonl(evals)
    build_s = time.process_time() - t0
    n = index.n
    report: dict = {
        "bench": "curation/decontam",
        "repeats": args.repeats,
        "index": {
            "ngrams": len(index),
            "array_bytes": index.nbytes(),
            "vocab_words": len(index.vocab),
            "pickled_bytes": len(pickle.dumps(index)),
            "build_cpu_s": build_s,
            "eval_bytes": sum(os.path.getsize(e) for e in args.eval),
            "tasks": index.stats,
        },
    }
    print(f"index: {report['index']}")

    hosts = [t for path in args.input for t in _texts(path) if len(t.split()) > 100]
    planted, expected = _plant(evals, hosts, n)
    tasks, grams = find_contamination(planted, index)
    found = [got is not None for got in tasks]
    own_task = sum(got == task for got, (task, _) in zip(tasks, expected))
    recall = {
        kind: sum(f for f, (_, k) in zip(found, expected) if k == kind) for kind in ("exact", "recased_repunctuated")
    }
    report["recall"] = {
        "planted": len(planted),
        "found": sum(found),
        "found_as_own_task": own_task,  # the rest were reported under an earlier task holding the same n-gram
        "by_kind": recall,
        "items_without_ngrams": sum(s["items_without_ngrams"] for s in index.stats.values()),
        "missed": [d[:300] for d, f in zip(planted, found) if not f][:10],
    }
    print(f"recall: {sum(found)}/{len(planted)} planted copies found ({recall})")

    eval_files = {os.path.abspath(e) for e in args.eval}
    clean_files = [
        f for f in sorted({f for g in args.clean for f in glob.glob(g)}) if os.path.abspath(f) not in eval_files
    ]
    clean = {f: _texts(f, ("text", "text_a", "text_b")) for f in clean_files}
    report["clean"] = {}
    for f, texts in clean.items():
        got = find_contamination(texts, index)
        hits = [(t, g) for t, g in zip(*got) if t is not None]
        report["clean"][f] = {"docs": len(texts), "flagged": len(hits), "hits": hits[:20]}
        print(f"clean {f}: {len(texts)} docs, {len(hits)} flagged {hits[:3]}")

    gram_set = _gram_strings(evals, n)
    report["files"] = {}
    for path in args.input:
        texts = _texts(path) + planted[:: max(1, len(planted) // SPEED_PLANTED)]
        n_planted = len(texts) - len(_texts(path))
        ids = [str(i) for i in range(len(texts))]
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)

        def ours(texts=texts) -> list[str | None]:
            out: list[str | None] = []
            for i in range(0, len(texts), BATCH):
                out += find_contamination(texts[i : i + BATCH], index)[0]
            return out

        def ours_numpy(texts=texts) -> list[str | None]:  # the fallback without numba (the path before it)
            out: list[str | None] = []
            for i in range(0, len(texts), BATCH):
                out += _find_reference(texts[i : i + BATCH], index)[0]
            return out

        ours(texts[:8])
        ours_numpy(texts[:8])
        cpu_ours, got_ours = _cpu_runs(ours, args.repeats)
        cpu_numpy, got_numpy = _cpu_runs(ours_numpy, args.repeats)
        assert got_numpy == got_ours, "the compiled scan and the numpy path disagree"
        cpu_set, got_set = _cpu_runs(lambda texts=texts: _hash_set_scan(texts, gram_set, n), args.repeats)
        res: dict = {
            "docs": len(texts),
            "planted_docs": n_planted,
            "bytes": n_bytes,
            "ours": {"cpu_s_runs": cpu_ours, "docs_per_cpu_s": len(texts) / median(cpu_ours)},
            "ours_numpy": {"cpu_s_runs": cpu_numpy, "docs_per_cpu_s": len(texts) / median(cpu_numpy)},
            "hash_set": {"cpu_s_runs": cpu_set, "docs_per_cpu_s": len(texts) / median(cpu_set)},
            "ours_flagged": sum(t is not None for t in got_ours),
            "same_decision_as_hash_set": sum((a is None) == (b is None) for a, b in zip(got_ours, got_set))
            / len(texts),
        }
        res["speedup_vs_hash_set"] = res["ours"]["docs_per_cpu_s"] / res["hash_set"]["docs_per_cpu_s"]
        if not args.no_datatrove:
            for tok in ("spacy", "whitespace"):
                dt = run_datatrove(
                    args,
                    "decont",
                    ids,
                    texts,
                    args.repeats,
                    ["--word-tokenizer", tok, "--eval", *map(os.path.abspath, args.eval)],
                )
                flagged = [dt["contaminated"][i] for i in ids]
                res[f"datatrove_{tok}"] = {
                    "version": dt["datatrove_version"],
                    "cpu_s_runs": dt["cpu_s_runs"],
                    "docs_per_cpu_s": len(texts) / median(dt["cpu_s_runs"]),
                    "flagged": sum(t is not None for t in flagged),
                    "flagged_planted": sum(t is not None for t in flagged[-n_planted:]),
                    "index_ngrams": dt["index_ngrams"],
                }
                res[f"speedup_vs_datatrove_{tok}"] = (
                    res["ours"]["docs_per_cpu_s"] / res[f"datatrove_{tok}"]["docs_per_cpu_s"]
                )
        report["files"][path] = res
        print(f"\n{path}: {len(texts)} docs ({n_planted} planted), median of {args.repeats} runs, 1 thread")
        for name in ("ours", "hash_set", "datatrove_spacy", "datatrove_whitespace"):
            if name in res:
                print(f"  {name:22s} {res[name]['docs_per_cpu_s']:9,.0f} docs/CPU-s")
        print(
            "  speedups: "
            + ", ".join(f"{k[8:]} {v:.1f}x" for k, v in res.items() if k.startswith("speedup_"))
            + f"; ours flagged {res['ours_flagged']}, same decision as hash_set {res['same_decision_as_hash_set']:.4f}"
        )
    write_raw(args.raw or default_raw_path("curation", "decontam"), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
