"""Decontamination: find training documents that share a word n-gram with an evaluation set.

GPT-3 (arXiv 2005.14165, appendix C) and lm-eval's decontamination remove training documents that share a
13-gram with a benchmark. Here, as there, text is lower-cased and punctuation is deleted before splitting on
whitespace (``ngram_words``: "Don't!" -> "dont"; every character that is neither a letter, a digit nor
whitespace counts as punctuation, and so does "_"), so re-cased and re-punctuated copies of an evaluation item
match. Punctuation that *replaces* the space between two words ("word,word") joins them into one word on
that side only; such copies are not found.

Evaluation files are JSONL, one item per line (``eval_texts``): every string field of a line and every string
in a list field is evaluation text, and so are their joins: the line's string fields joined in line order,
and that join with each list element after it and before it (``query + " " + choice``,
``context_option + " " + continuation``), so that a copy of a question with its answer is found even when
neither part has n words. A text shorter than n words adds no n-gram of its own (as in GPT-3 at 13 words):
an item whose texts and joins are all shorter is not searched for, and ``NGramIndex.stats`` counts such
items per task.

Broadcast set, not a join. The index of the seven shared evaluation tasks (``../shared/data/eval_tasks``, 6,267
items, 1.7 MB of JSONL) holds 198,267 distinct 13-grams of 12,463 distinct words: 2.7 MB of arrays (hashes,
their task ids, the word values, the sorted word keys), 2.8 MB pickled, built in 1.2-1.6 CPU-s. Shipped once per
executor, it lets every document be checked where it lies, with no shuffle; a join would instead explode every
document into one row per word position (about 13x the corpus text in n-gram keys) and shuffle all of it to meet
an index that fits in memory thousands of times over. The index travels inside the pandas UDF's closure
(``make_curate_udf``): PySpark sends a pickled Python function larger than its broadcast threshold (1 MB by
default, ``PythonUtils.getBroadcastThreshold``) as a broadcast variable, so each executor fetches it once, and
the same closure works under Spark Connect. A join would pay off only for an index that does not fit in an
executor's memory (hundreds of millions of n-grams), far beyond any evaluation suite.

How a batch is scanned (``find_contamination``): with numba (a declared dependency), one compiled pass per
document (``udfs/curation/_decontam_kernels.py``) classes each code point of the lower-cased UTF-8 by a
table built from ``ngram_words``' own rules, hashes each word's kept bytes to find its value in the index's
sorted word keys, and looks every window of n known words up in the sorted n-gram hashes, stopping at the
first match; no Python object is made per word. Without numba (a warning says so once), the numpy path
computes the same (tests compare the two): each word gets a random 64-bit value from the index's word
table (0 for a word no evaluation text has, so an n-gram holding such a word cannot match and is skipped
without hashing); the n-gram hash is ``sum(v[k] * M**(n-1-k)) mod 2**64``, computed with numpy for all the
batch's candidate positions at once, and looked up in the sorted hash array with ``np.searchsorted``. Two
different n-grams share a hash with probability about 2**-64 per pair: with 10**5 index n-grams and
10**10 document n-grams, about 5e-5 false matches are expected in the whole corpus.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

import numpy as np

from udfs.curation._compiled import optional_module

__all__ = [
    "CONTAMINATED",
    "DecontaminationConfig",
    "NGramIndex",
    "eval_texts",
    "find_contamination",
    "index_from_jsonl",
    "ngram_words",
]

CONTAMINATED = "contaminated"  # drop reason: the document shares an n-gram with an evaluation set

_PUNCT = re.compile(r"[^\w\s]+|_+")
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd, so multiplying by it is a bijection mod 2**64
_SEED = 13  # the word table's random values; any seed works, the index carries its own table


@dataclass(frozen=True)
class DecontaminationConfig:
    """The decontamination stage of the curation chain.

    Attributes:
        paths: evaluation JSONL files (``jobs/curate.py --decontaminate``); empty switches the stage off. The
            task name of a file is its stem (``arc_easy.jsonl`` -> ``arc_easy``). The job reads them and
            builds the index on the driver; the pure core receives the ``NGramIndex``, not the paths.
        n_gram: words per n-gram.
        flag_only: True keeps contaminated documents and only fills ``contaminated_task`` /
            ``contaminated_ngram``; False (default) drops them with reason ``contaminated``.
    """

    paths: tuple[str, ...] = ()
    n_gram: int = 13  # why: GPT-3's and lm-eval's default; shorter n-grams flag common phrases in prose
    flag_only: bool = False

    def __post_init__(self) -> None:
        assert self.n_gram >= 1, f"decontaminate.n_gram must be >= 1, got {self.n_gram}"

    @property
    def enabled(self) -> bool:
        """True when evaluation files are given."""
        return bool(self.paths)


@dataclass(frozen=True, eq=False)
class NGramIndex:
    """The n-grams of a set of evaluation tasks, as sorted 64-bit hashes (build it with ``index_from_jsonl``).

    Attributes:
        n: words per n-gram.
        tasks: task names, in the order given; ``task_ids`` index into it.
        vocab: word -> id >= 1 for every word of every evaluation text (0 is "not in any evaluation text").
        word_values: (len(vocab) + 1,) uint64 random value per word id; ``word_values[0] == 0``.
        hashes: (m,) sorted, distinct uint64 n-gram hashes.
        task_ids: (m,) int32 task of each hash (the first task, in ``tasks`` order, that has the n-gram).
        stats: per task: ``items`` (lines), ``texts`` (evaluation texts), ``ngrams`` (distinct n-grams) and
            ``items_without_ngrams`` (lines whose texts are all shorter than n words: never found).
    """

    n: int
    tasks: tuple[str, ...]
    vocab: dict[str, int]
    word_values: np.ndarray
    hashes: np.ndarray
    task_ids: np.ndarray
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    word_keys: np.ndarray = field(init=False, repr=False)  # (v,) sorted xxh64 of each word's UTF-8 bytes
    key_values: np.ndarray = field(init=False, repr=False)  # (v,) the word's value, aligned with word_keys

    def __post_init__(self) -> None:
        import xxhash

        keys = np.fromiter(
            (xxhash.xxh64_intdigest(w.encode("utf-8", "surrogatepass")) for w in self.vocab),
            dtype=np.uint64,
            count=len(self.vocab),
        )
        values = self.word_values[np.fromiter(self.vocab.values(), dtype=np.int64, count=len(self.vocab))]
        order = np.argsort(keys, kind="stable")
        object.__setattr__(self, "word_keys", keys[order])
        object.__setattr__(self, "key_values", values[order])

    def __len__(self) -> int:
        return int(self.hashes.size)

    def nbytes(self) -> int:
        """Bytes of the hash and task arrays plus the word table's values (the dict's overhead aside)."""
        return int(self.hashes.nbytes + self.task_ids.nbytes + self.word_values.nbytes)


def ngram_words(text: str) -> list[str]:
    """Words of ``text`` as the n-grams see them: lower-cased, punctuation deleted, split on whitespace.

    Args:
        text: any text.

    Returns:
        The words, in order; [] for a text with no letters or digits.

    Example:
        >>> ngram_words("Don't PANIC -- it's (only) a test_case!")
        ['dont', 'panic', 'its', 'only', 'a', 'testcase']
    """
    return _PUNCT.sub("", text.lower()).split()


def eval_texts(item: Mapping[str, Any]) -> list[str]:
    """The evaluation texts of one JSONL item (see the module docstring for the joins).

    Args:
        item: one parsed line, e.g. ``{"query": ..., "choices": [...], "gold": 1}``. Strings and lists of
            strings count; numbers, booleans, nested objects and non-string list elements are ignored.

    Returns:
        Every string field, every string of a list field, the string fields joined in line order, and that
        join with each list string after it and before it; duplicates removed, first occurrence kept.

    Example:
        >>> eval_texts({"query": "Q?", "choices": ["a", "b"], "gold": 0})
        ['Q?', 'a', 'b', 'Q? a', 'a Q?', 'Q? b', 'b Q?']
    """
    strings = [v for v in item.values() if isinstance(v, str)]
    elements = [e for v in item.values() if isinstance(v, list) for e in v if isinstance(e, str)]
    texts = [*strings, *elements]
    joined = " ".join(strings)
    if len(strings) > 1:
        texts.append(joined)
    if strings:
        for e in elements:
            texts += [f"{joined} {e}", f"{e} {joined}"]
    return list(dict.fromkeys(texts))


def _ngram_hashes(ids: np.ndarray, starts: np.ndarray, n: int, word_values: np.ndarray) -> np.ndarray:
    """(len(starts),) uint64 hashes of the n-grams ``ids[s:s+n]`` for each start ``s`` (Horner's rule)."""
    h = word_values[ids[starts]]
    for k in range(1, n):
        h = h * _MULT + word_values[ids[starts + k]]  # uint64 arithmetic wraps mod 2**64
    return h


def _valid_starts(ids: np.ndarray, lens: np.ndarray, n: int) -> np.ndarray:
    """Start positions of the n-grams that lie inside one document and hold no unknown word (id 0).

    Args:
        ids: (N,) int32 word ids of all documents, concatenated.
        lens: (d,) words per document; ``lens.sum() == N``.
        n: words per n-gram.
    """
    total = int(ids.size)
    if total < n:
        return np.zeros(0, dtype=np.int64)
    unknown = np.concatenate(([0], np.cumsum(ids == 0)))  # (N + 1,) unknown words before each position
    ok = unknown[n:] == unknown[: total - n + 1]  # (N - n + 1,) window free of unknown words
    ends = np.repeat(np.cumsum(lens), lens)[: total - n + 1]  # (N - n + 1,) end of each position's document
    ok &= np.arange(total - n + 1) + n <= ends
    return np.flatnonzero(ok)


def index_from_jsonl(tasks: Mapping[str, Iterable[str]], n: int = 13) -> NGramIndex:
    """Builds the n-gram index of evaluation tasks from their JSONL lines.

    Args:
        tasks: task name -> the lines of its JSONL file (blank lines are skipped), e.g. ``{"arc_easy": fh}``.
        n: words per n-gram (``DecontaminationConfig.n_gram``).

    Returns:
        An ``NGramIndex``; an n-gram found in several tasks is attributed to the first of them.

    Raises:
        ValueError: a line is not a JSON object (the message names the task and line number), or no task is
            given.

    Example:
        >>> idx = index_from_jsonl({"t": ['{"query": "one two three four", "gold": 0}']}, n=3)
        >>> len(idx), idx.tasks
        (2, ('t',))
    """
    if not tasks:
        raise ValueError("no evaluation tasks given")
    vocab: dict[str, int] = {}
    per_task_ids: list[np.ndarray] = []  # one word-id array per task, all its texts concatenated
    per_task_lens: list[np.ndarray] = []
    stats: dict[str, dict[str, int]] = {}
    item_of_text: list[np.ndarray] = []
    for name, lines in tasks.items():
        ids, lens, items = [], [], []
        n_items = 0
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{name} line {lineno}: not JSON ({exc})") from exc
            if not isinstance(item, dict):
                raise ValueError(f"{name} line {lineno}: expected a JSON object, got {type(item).__name__}")
            for text in eval_texts(item):
                words = ngram_words(text)
                ids += [vocab.setdefault(w, len(vocab) + 1) for w in words]
                lens.append(len(words))
                items.append(n_items)
            n_items += 1
        per_task_ids.append(np.asarray(ids, dtype=np.int32))
        per_task_lens.append(np.asarray(lens, dtype=np.int64))
        item_of_text.append(np.asarray(items, dtype=np.int64))
        stats[name] = {"items": n_items, "texts": len(lens)}
    word_values = np.random.default_rng(_SEED).integers(1, 2**64 - 1, size=len(vocab) + 1, dtype=np.uint64)
    word_values[0] = 0
    all_hashes, all_tasks = [], []
    for t, (name, ids, lens, items) in enumerate(zip(tasks, per_task_ids, per_task_lens, item_of_text)):
        starts = _valid_starts(ids, lens, n)
        h = np.unique(_ngram_hashes(ids, starts, n, word_values))
        text_of_start = np.searchsorted(np.cumsum(lens), starts, side="right")
        found = np.unique(items[text_of_start]).size if starts.size else 0
        stats[name].update(ngrams=int(h.size), items_without_ngrams=stats[name]["items"] - int(found))
        all_hashes.append(h)
        all_tasks.append(np.full(h.size, t, dtype=np.int32))
    hashes = np.concatenate(all_hashes)
    task_ids = np.concatenate(all_tasks)
    hashes, first = np.unique(hashes, return_index=True)  # first occurrence = earliest task
    return NGramIndex(n, tuple(tasks), vocab, word_values, hashes, task_ids[first], stats)


def find_contamination(texts: Sequence[str | None], index: NGramIndex) -> tuple[list[str | None], list[str | None]]:
    """For each text, the first of its n-grams that an evaluation task has, and that task.

    Per call, all texts are scanned together: word ids by one dict lookup per word, then hashing and the
    sorted-array lookup vectorised over every candidate position of the batch (see the module docstring).

    Args:
        texts: (d,) documents; None counts as "".
        index: from ``index_from_jsonl``.

    Returns:
        ``(tasks, ngrams)``, two lists of length d: the task name and the matching n-gram (normalised words
        joined by one space, as ``ngram_words`` gives them) of the earliest match in each text, or None
        for a clean text.

    Example:
        >>> idx = index_from_jsonl({"t": ['{"query": "one two three four"}']}, n=3)
        >>> find_contamination(["Zero, ONE two three!", "one two"], idx)
        (['t', None], ['one two three', None])
    """
    kernels = _kernels()
    if kernels is not None and len(index) and len(texts):
        return _find_compiled(kernels, texts, index)
    return _find_reference(texts, index)


def _kernels():
    """The compiled scan (udfs/curation/_decontam_kernels.py), or None without numba (warned once)."""
    return optional_module("udfs.curation._decontam_kernels", "decontamination", "the numpy fallback, about 3x slower")


@functools.lru_cache(maxsize=1)
def _code_point_classes() -> np.ndarray:
    """(0x110000,) uint8: the compiled scan's class of every code point, by ``ngram_words``' own rules.

    ``_PUNCT`` deletes what is neither ``\\w`` (``str.isalnum``, or ``_``) nor ``\\s`` (``str.isspace``), and
    ``_``; ``str.split`` separates on ``str.isspace``. Built once per process (about 0.3 s).
    """
    from udfs.curation._decontam_kernels import DELETE, SPACE, WORD

    table = np.full(0x110000, DELETE, dtype=np.uint8)
    for cp in range(0x110000):
        c = chr(cp)
        if c.isspace():
            table[cp] = SPACE
        elif c.isalnum():
            table[cp] = WORD
    return table


def _find_compiled(kernels, texts: Sequence[str | None], index: NGramIndex):
    parts = [t.lower().encode("utf-8", "surrogatepass") if isinstance(t, str) else b"" for t in texts]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)), out=offsets[1:])
    buf = np.frombuffer(b"".join(parts) + b"\0" * 4, dtype=np.uint8)  # padded: a truncated sequence reads no further
    starts, positions = kernels.first_matches(
        buf, offsets, _code_point_classes(), index.word_keys, index.key_values, index.hashes, index.n, _MULT
    )
    tasks: list[str | None] = [None] * len(parts)
    grams: list[str | None] = [None] * len(parts)
    for d in np.flatnonzero(starts >= 0).tolist():  # hits are rare: their words are rebuilt the slow way
        s = int(starts[d])
        tasks[d] = index.tasks[int(index.task_ids[positions[d]])]
        grams[d] = " ".join(ngram_words(texts[d])[s : s + index.n])
    return tasks, grams


def _find_reference(texts: Sequence[str | None], index: NGramIndex):
    """`find_contamination` with numpy only (the compiled scan's reference, and its fallback)."""
    n = index.n
    words = [ngram_words(t) if isinstance(t, str) else [] for t in texts]
    tasks: list[str | None] = [None] * len(words)
    grams: list[str | None] = [None] * len(words)
    if not words or not len(index):
        return tasks, grams
    lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    flat = list(chain.from_iterable(words))
    ids = np.fromiter(map(index.vocab.get, flat, repeat(0)), dtype=np.int32, count=len(flat))
    starts = _valid_starts(ids, lens, n)
    if not starts.size:
        return tasks, grams
    h = _ngram_hashes(ids, starts, n, index.word_values)
    pos = np.minimum(np.searchsorted(index.hashes, h), len(index) - 1)
    hit = index.hashes[pos] == h
    hit_starts, hit_pos = starts[hit], pos[hit]
    doc = np.searchsorted(np.cumsum(lens), hit_starts, side="right")  # starts ascend, so does doc
    docs, first = np.unique(doc, return_index=True)
    for d, j in zip(docs.tolist(), first.tolist()):
        s = int(hit_starts[j])
        tasks[d] = index.tasks[int(index.task_ids[hit_pos[j]])]
        grams[d] = " ".join(flat[s : s + n])
    return tasks, grams
