"""The datatrove side of the curation and MinHash benchmarks, run as a child process under datatrove's Python.

    ../datatrove_venv/bin/python bench/datatrove_side.py filters DOCS.json --repeats 3 [--warmup 8]
    ../datatrove_venv/bin/python bench/datatrove_side.py minhash DOCS.json --repeats 3 [--word-tokenizer whitespace]
    ../datatrove_venv/bin/python bench/datatrove_side.py decont DOCS.json --eval A.jsonl B.jsonl [--word-tokenizer ...]

The benchmarks that print a ratio against datatrove (``curation_core_speed.py``,
``curation/bench_curate_job.py``, ``dedup/bench_signature_speed.py``) write their documents to
``DOCS.json`` (``{"ids": [...], "texts": [...]}``), start this script with the interpreter of the
venv that holds datatrove (see bench/README.md; it imports nothing of this project, so the two
dependency sets never mix) and read its last stdout line, one JSON object. Every timing is process
CPU seconds (``time.process_time``) of this one process, ``--repeats`` runs, each listed (the
caller takes the median, as it does for its own side).

``filters``: datatrove's FineWeb stage order, Gopher repetition -> Gopher quality -> C4 quality ->
FineWeb quality, with their defaults, on every document (a fresh ``Document`` per run: C4 rewrites
``doc.text``); a document stops at the first filter that drops it. Warm-up before the timer: every
filter runs on the first ``--warmup`` documents, each one on its own (not stopping at a drop), so each
filter's lazily built spaCy tokenizer exists before timing starts. Returns each document's drop reason
(``None`` = kept), prefixed as our reasons are.

``minhash``: ``MinhashDedupSignature`` with its default ``MinhashConfig`` (5-grams, 14 x 8, 64-bit).
``compute`` = ``get_shingles`` + ``get_signature`` per document; ``run`` = the whole step (compute,
write 14 bucket files, sort them) into a new temp folder per run. ``--word-tokenizer whitespace``
swaps the step's spaCy word tokenizer for ``str.split`` (datatrove's ``simplify_text`` already leaves
single-space-separated words), so datatrove does not pay spaCy. Warm-up: both on one document first.
Returns a sha1 of each document's sorted unique shingle hashes, to compare shingle sets with ours.

``decont``: ``NGramsDecontFilter`` (13-grams, ``find_query_ngrams=True``, default text normalisation) on every
document, its index built from the same evaluation JSONL files (``--eval``) by datatrove's own
``NGramsDecontIndexer.compute_hashes`` (query = ``query`` / ``context`` / the gold ``context_options``, label =
the gold choice / ``continuation``); the indexer's constructor demands lighteval, which reads tasks from the
Hub, so ``compute_hashes`` is called on a stand-in holding its tokenizer, config and hash function, and the
``.index.hashes`` files are written as its ``run`` writes them. Index building and loading are outside the
timer; the filter is warmed up on one document. Returns each document's ``contaminated_task`` (None = kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time


def _filters_main(ids: list[str], texts: list[str], repeats: int, warmup: int) -> dict:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    chain = [  # datatrove's FineWeb pipeline order; prefixes make the reasons ours (gopher_* already are)
        ("gopher_rep_", GopherRepetitionFilter()),
        ("", GopherQualityFilter()),
        ("c4_", C4QualityFilter()),
        ("fineweb_", FineWebQualityFilter()),
    ]
    for text in texts[:warmup]:
        for _, f in chain:
            f.filter(Document(text=text, id="warmup"))

    def one_pass() -> dict[str, str | None]:
        out = {}
        for doc_id, text in zip(ids, texts):
            doc, reason = Document(text=text, id=doc_id), None
            for prefix, f in chain:
                r = f.filter(doc)
                if r is not True:
                    reason = prefix + (r[1] if isinstance(r, tuple) else "dropped")
                    break
            out[doc_id] = reason
        return out

    cpu, reasons = [], None
    for _ in range(repeats):
        t0 = time.process_time()
        got = one_pass()
        cpu.append(time.process_time() - t0)
        reasons = reasons or got
    return {"cpu_s_runs": cpu, "reasons": reasons, "warmup_docs": min(warmup, len(texts))}


class _WhitespaceWords:
    """A word tokenizer that splits on whitespace (the interface datatrove's MinHash step calls)."""

    language = "en"

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def _minhash_main(texts: list[str], repeats: int, word_tokenizer: str) -> dict:
    import numpy as np
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    def make_step() -> MinhashDedupSignature:
        step = MinhashDedupSignature(output_folder=tempfile.mkdtemp(), config=MinhashConfig())
        if word_tokenizer == "whitespace":
            step.word_tokenizer = _WhitespaceWords()
        step.get_signature(step.get_shingles("warm up the word tokenizer with a few words of text here"))
        return step

    step = make_step()
    compute, digests = [], []
    for r in range(repeats):
        t0 = time.process_time()
        for t in texts:
            sh = step.get_shingles(t)
            if sh.size:
                step.get_signature(sh)
        compute.append(time.process_time() - t0)
    for t in texts:  # outside the timer
        digests.append(hashlib.sha1(np.unique(step.get_shingles(t).ravel()).tobytes()).hexdigest())
    run = []
    for _ in range(repeats):
        step2 = make_step()
        t0 = time.process_time()
        step2.run((Document(text=t, id=str(i)) for i, t in enumerate(texts)), rank=0, world_size=1)
        run.append(time.process_time() - t0)
    return {"compute_cpu_s_runs": compute, "run_cpu_s_runs": run, "digests": digests, "word_tokenizer": word_tokenizer}


def _query_label(item: dict) -> tuple[str | None, str | None]:
    """(query, gold label) of one llm-foundry task line; (None, None) for a schema it does not know."""
    gold = item.get("gold")
    if "choices" in item and isinstance(gold, int):
        return item.get("query"), item["choices"][gold]
    if "context_options" in item and isinstance(gold, int):
        return item["context_options"][gold], item.get("continuation")
    if "context" in item:
        return item["context"], item.get("continuation")
    return None, None


def _decont_main(ids: list[str], texts: list[str], repeats: int, evals: list[str], word_tokenizer: str) -> dict:
    from types import SimpleNamespace

    import numpy as np
    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter, NGramsDecontIndexer
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.typeshelper import Languages
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    config = NGramsDecontConfig(n_grams=13, find_query_ngrams=True)
    words = _WhitespaceWords() if word_tokenizer == "whitespace" else load_word_tokenizer(Languages.english)
    indexer = SimpleNamespace(tokenizer=words, config=config, hash_func=create_hash_func(config.hash_config))
    folder, sizes = tempfile.mkdtemp(), {}
    for path in evals:
        task, hashes = os.path.basename(path).rsplit(".", 1)[0], set()
        with open(path, encoding="utf-8") as fh:
            for line in filter(str.strip, fh):
                query, label = _query_label(json.loads(line))
                if label:
                    hashes.update(NGramsDecontIndexer.compute_hashes(indexer, label, query))
        np.array(sorted(hashes), dtype=config.hash_config.np_descr).tofile(os.path.join(folder, f"{task}.index.hashes"))
        sizes[task] = len(hashes)
    step = NGramsDecontFilter(index_folder=folder, config=config)
    step.tokenizer = words
    step.load_index_hashes()
    step.filter(Document(text="warm up the word tokenizer with a few words of text here", id="warmup"))
    cpu, found = [], None
    for _ in range(repeats):
        t0 = time.process_time()
        docs = [Document(text=t, id=i) for i, t in zip(ids, texts)]
        for d in docs:
            step.filter(d)
        cpu.append(time.process_time() - t0)
        found = found or {d.id: d.metadata.get("contaminated_task") for d in docs}
    return {"cpu_s_runs": cpu, "contaminated": found, "index_ngrams": sizes, "word_tokenizer": word_tokenizer}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["filters", "minhash", "decont"])
    p.add_argument("docs", help='JSON file {"ids": [...], "texts": [...]}')
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=8, help="filters: documents every filter sees before the timer")
    p.add_argument("--word-tokenizer", default="spacy", choices=["spacy", "whitespace"], help="minhash, decont")
    p.add_argument("--eval", nargs="+", default=[], help="decont: evaluation JSONL files (task = file stem)")
    args = p.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one thread, as our side
    from loguru import logger

    logger.remove()  # datatrove logs every step at INFO; keep stdout for the JSON line
    with open(args.docs, encoding="utf-8") as fh:
        docs = json.load(fh)
    import datatrove

    version = getattr(datatrove, "__version__", None)
    if version is None:
        from importlib.metadata import version as _v

        version = _v("datatrove")
    if args.what == "filters":
        out = _filters_main(docs["ids"], docs["texts"], args.repeats, args.warmup)
    elif args.what == "decont":
        out = _decont_main(docs["ids"], docs["texts"], args.repeats, args.eval, args.word_tokenizer)
    else:
        out = _minhash_main(docs["texts"], args.repeats, args.word_tokenizer)
    out["datatrove_version"] = version
    out["python"] = sys.version.split()[0]
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
