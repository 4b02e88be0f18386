"""MinHash signatures and LSH band hashes for fuzzy deduplication, vectorised over a batch of documents.

Pipeline per batch (datatrove's ``MinhashDedupSignature`` defaults: word 5-grams of simplified text, 64-bit
xxhash, 14 bands x 8 rows = 112 hashes):

1. ``simplify_text``: lowercase, digit runs (with one decimal part) -> "0", datatrove's punctuation set ->
   spaces, whitespace collapsed, accents stripped (NFD, combining marks removed).
2. ``shingle_hashes``: word n-grams joined by one space, hashed with xxh64 (seed 0) of the UTF-8 bytes: the
   same 64-bit shingle hashes as datatrove. A text with fewer than n words (but at least one) gets ONE shingle,
   the whole simplified text, so short documents still deduplicate against identical short documents
   (datatrove skips them instead); they are flagged "short". A text with no words has no shingles: its
   signature is all ``max`` values and it is flagged "empty" (exclude flagged-empty rows from LSH).
3. ``minhash_signatures``: all shingle hashes of the batch are concatenated; each of the ``num_perm``
   universal hash functions h(x) = (a*x + b) mod p is applied with exact modular arithmetic, then
   ``np.minimum.reduceat`` takes the per-document minimum. Two precisions:
   - 64: p = 2^61 - 1 (Mersenne), x reduced mod p, a*x computed exactly from 32-bit halves (no uint64
     overflow); values < 2^61, dtype uint64 (so they also fit Spark's signed LongType).
   - 32: p = 2^32 - 5, x reduced mod p; a*x + b < 2^64 fits uint64 exactly; dtype uint32.
   (datatrove computes ``(x*a + b) % p`` in uint64, which silently wraps; ours does not.)
   Parameters a in [1, p), b in [0, p) come from ``numpy.random.Generator(PCG64(seed))``: identical on every
   worker and in every process (no Python ``hash()``).
4. ``band_hashes``: the signature is cut into ``bands`` bands of ``rows`` values; each band is folded into
   one 64-bit value (multiply-xor mixing plus a splitmix64 finaliser, seeded by the band index), returned as
   int64 (the uint64 bit pattern) for Spark's LongType. Documents sharing any (band index, band hash) are LSH
   candidates.

``optimal_bands_rows`` picks (bands, rows) for a Jaccard threshold by minimising the weighted false-positive
and false-negative areas under the LSH S-curve, the method of datasketch's ``_optimal_param``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import xxhash

from udfs import columns as C
from udfs.curation._charsets import PUNCTUATION_CHARS
from udfs.curation._compiled import optional_module
from udfs.curation._unicode import char_class

__all__ = [
    "MinHashConfig",
    "band_hashes",
    "estimate_jaccard",
    "jaccard",
    "minhash_batch",
    "minhash_signatures",
    "optimal_bands_rows",
    "shingle_hashes",
    "shingle_set",
    "signature_max",
    "simplify_text",
]

MERSENNE_61 = (1 << 61) - 1
PRIME_32 = (1 << 32) - 5  # largest prime below 2^32


FLAG_SHORT = "short"
FLAG_EMPTY = "empty"


@dataclass(frozen=True)
class MinHashConfig:
    """MinHash and LSH settings (defaults: datatrove's ``MinhashConfig``).

    Attributes:
        n_grams: words per shingle.
        num_perm: hash functions per signature; must equal ``bands * rows``.
        bands: LSH bands (datatrove's num_buckets).
        rows: signature values per band (datatrove's hashes_per_bucket).
        precision: 64 (p = 2^61 - 1, uint64) or 32 (p = 2^32 - 5, uint32, faster, ~2x less memory).
        seed: seed of the permutation parameters; every worker must use the same one.
        chunk_elements: (shingles x num_perm) values permuted at once; 64K measured fastest here (2.6x
            faster than 4M, which spills out of cache).
    """

    n_grams: int = 5
    num_perm: int = 112
    bands: int = 14
    rows: int = 8  # why: (1/14)^(1/8) ~ 0.72 is the Jaccard at which a pair has a 50% chance to collide
    precision: Literal[32, 64] = 64
    seed: int = 1
    chunk_elements: int = 1 << 16  # why: two (rows, num_perm) uint64 buffers of 0.5 MB stay in L2 cache

    def __post_init__(self) -> None:
        assert self.bands * self.rows == self.num_perm, (
            f"bands * rows must equal num_perm, got {self.bands} * {self.rows} != {self.num_perm}"
        )
        assert self.precision in (32, 64), f"precision must be 32 or 64, got {self.precision}"
        assert self.n_grams >= 1, f"n_grams must be >= 1, got {self.n_grams}"


# --------------------------------------------------------------------------------------------------------------
# Text simplification and shingles
# --------------------------------------------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"\d+(?:[.,،٫⎖⎗⎘]\d+)?")  # str patterns: \d is any Unicode decimal digit (Nd)
_PUNCT = re.escape(PUNCTUATION_CHARS)
# Punctuation -> space, then whitespace runs -> one space, in one regex pass: every maximal run of
# whitespace/punctuation becomes " ". A lone " " (most separators) is left unmatched, so it costs
# no replacement: the pattern matches a run that starts with any other separator, or " " plus more.
_SEPARATORS_RE = re.compile(f"(?:[^\\S ]|[{_PUNCT}])[\\s{_PUNCT}]*| [\\s{_PUNCT}]+")


@functools.lru_cache(maxsize=1)
def _combining_marks_re() -> re.Pattern:
    return re.compile(f"[{char_class('n')}]+")  # non-spacing marks (Mn): the accents NFD splits off


def simplify_text(text: str) -> str:
    """Simplifies text for near-duplicate matching, as datatrove's ``simplify_text`` with default settings.

    Args:
        text: any string.

    Returns:
        Lowercased text with numbers as "0", punctuation as spaces, single spaces, no accents, stripped.

    Example:
        >>> simplify_text("Café  No. 42, opened 3.5 years ago!")
        'cafe no 0 opened 0 years ago'
    """
    text = _NUMBER_RE.sub("0", text.lower())
    text = _SEPARATORS_RE.sub(" ", text)
    if not text.isascii():
        text = _combining_marks_re().sub("", unicodedata.normalize("NFD", text))
    return text.strip()


def _shingles(text: str, n_grams: int) -> tuple[np.ndarray, int]:
    """(uint64 shingle hashes, number of words) of a text.

    The simplified text is encoded once; each shingle is a byte slice between word boundaries, which equals
    the UTF-8 of the words joined by single spaces (so the hashes match datatrove's), without building strings.
    """
    data = simplify_text(text).encode("utf-8")
    if not data:
        return np.zeros(0, dtype=np.uint64), 0
    spaces = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 32)  # single spaces between words
    n_words = len(spaces) + 1
    digest = xxhash.xxh64_intdigest
    if n_words < n_grams:
        return np.array([digest(data)], dtype=np.uint64), n_words  # one shingle: the whole text ("short")
    starts = [0, *(spaces + 1).tolist()][: n_words - n_grams + 1]
    ends = [*spaces.tolist(), len(data)][n_grams - 1 :]
    hashes = np.fromiter((digest(data[i:j]) for i, j in zip(starts, ends)), dtype=np.uint64, count=len(starts))
    return hashes, n_words


def shingle_hashes(text: str, n_grams: int = 5) -> np.ndarray:
    """The 64-bit hashes of a text's word n-gram shingles (after ``simplify_text``), duplicates kept.

    Args:
        text: the document.
        n_grams: words per shingle.

    Returns:
        uint64 array (n_shingles,): xxh64 (seed 0) of each shingle's UTF-8 bytes, the words joined by one space;
        a single hash of the whole simplified text when it has fewer than ``n_grams`` words; empty when it has
        no words.

    Example:
        >>> import xxhash
        >>> second = int(shingle_hashes("One, two; three four FIVE six!")[1])
        >>> second == xxhash.xxh64_intdigest(b"two three four five six")
        True
    """
    return _shingles(text, n_grams)[0]


def shingle_set(text: str, n_grams: int = 5) -> set[int]:
    """The set of shingle hashes of a text, for exact Jaccard (see ``jaccard``)."""
    return set(shingle_hashes(text, n_grams).tolist())


def jaccard(a_shingles: Iterable[int] | np.ndarray, b_shingles: Iterable[int] | np.ndarray) -> float:
    """Exact Jaccard similarity |A & B| / |A | B| of two shingle collections (duplicates ignored).

    Args:
        a_shingles: shingle hashes (or any hashable shingles) of document A.
        b_shingles: same for document B.

    Returns:
        A float in [0, 1]; 0.0 when both are empty (undefined; empty documents are never duplicates here).

    Example:
        >>> jaccard([1, 2, 3], [2, 3, 4])
        0.5
    """
    a = set(a_shingles.tolist() if isinstance(a_shingles, np.ndarray) else a_shingles)
    b = set(b_shingles.tolist() if isinstance(b_shingles, np.ndarray) else b_shingles)
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The MinHash estimate of Jaccard similarity: the share of equal signature positions.

    Args:
        sig_a: (num_perm,) signature of document A.
        sig_b: (num_perm,) signature of document B, same config.

    Returns:
        A float in [0, 1].
    """
    assert sig_a.shape == sig_b.shape, f"signature shapes differ: {sig_a.shape} vs {sig_b.shape}"
    return float(np.mean(sig_a == sig_b))


# --------------------------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------------------------


def _kernels():
    """The compiled kernels module (udfs/curation/_minhash_kernels.py), or None without numba (warned once)."""
    return optional_module("udfs.curation._minhash_kernels", "MinHash", "the numpy fallback, about 3x slower")


@functools.lru_cache(maxsize=16)
def _permutation_params(num_perm: int, precision: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of the universal hash functions, each (num_perm,) uint64; a in [1, p), b in [0, p)."""
    p = MERSENNE_61 if precision == 64 else PRIME_32
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(1, p, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, p, size=num_perm, dtype=np.uint64)
    return a, b


def signature_max(precision: int) -> int:
    """The value that fills the signature of an empty document (the dtype's maximum)."""
    return int(np.iinfo(np.uint64 if precision == 64 else np.uint32).max)


_M61 = np.uint64(MERSENNE_61)
_MASK32 = np.uint64(0xFFFFFFFF)
_MASK29 = np.uint64((1 << 29) - 1)
_U3, _U29, _U32, _U61 = np.uint64(3), np.uint64(29), np.uint64(32), np.uint64(61)


def _fold_m61(v: np.ndarray, tmp: np.ndarray) -> None:
    """In place: v <- (v & p) + (v >> 61), which keeps v's residue mod p = 2^61 - 1 (as 2^61 = 1 mod p)."""
    np.right_shift(v, _U61, out=tmp)
    np.bitwise_and(v, _M61, out=v)
    v += tmp


def _permute_m61(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a*x + b) mod (2^61 - 1) exactly, for x (S, 1) and a, b (1, P) all < 2^61: (S, P) uint64.

    With a = a1*2^32 + a0 and x = x1*2^32 + x0 (a1, x1 < 2^29):
    a*x = a1*x1*2^64 + (a1*x0 + a0*x1)*2^32 + a0*x0, and 2^64 = 8, 2^61 = 1 (mod p). Every partial sum stays
    below 2^64, so uint64 never wraps. Two final folds leave a value in [0, p]; p itself stands for residue 0
    (one input in 2^61 per hash function), which does not matter for minima. All steps are in place on two
    (S, P) buffers.
    """
    x0, x1 = x & _MASK32, x >> _U32  # (S, 1)
    a0, a1 = a & _MASK32, a >> _U32  # (1, P)
    acc = np.multiply(a1, x1)  # (S, P) < 2^58
    acc <<= _U3  # a1*x1*2^64 = a1*x1*8 (mod p), < 2^61
    mid = np.multiply(a1, x0)
    tmp = np.multiply(a0, x1)
    mid += tmp  # < 2^62
    np.right_shift(mid, _U29, out=tmp)
    acc += tmp  # mid*2^32 = (mid >> 29) + (mid & (2^29-1))*2^32 (mod p)
    mid &= _MASK29
    mid <<= _U32
    acc += mid  # < 2^61 + 2^33 + 2^61
    np.multiply(a0, x0, out=mid)  # < 2^64
    _fold_m61(mid, tmp)  # < 2^61 + 8
    acc += mid
    acc += b  # < 2^63 + 2^34: no wrap
    _fold_m61(acc, tmp)  # <= p + 7
    _fold_m61(acc, tmp)  # in [0, p]
    return acc


def _permute(x: np.ndarray, a: np.ndarray, b: np.ndarray, precision: int) -> np.ndarray:
    if precision == 64:
        return _permute_m61(x, a, b)
    return (a * x + b) % np.uint64(PRIME_32)  # a, x < 2^32 - 5, so a*x + b < 2^64: no wrap


def minhash_signatures(
    hashes: np.ndarray, offsets: np.ndarray, cfg: MinHashConfig = MinHashConfig(), use_kernels: bool = True
) -> np.ndarray:
    """MinHash signatures of many documents from their concatenated shingle hashes.

    Args:
        hashes: uint64 (S,) shingle hashes of all documents, document after document.
        offsets: int64 (n_docs + 1,) start of each document in ``hashes`` plus the total S; document i owns
            ``hashes[offsets[i]:offsets[i + 1]]``. Documents without shingles get ``signature_max``.
        cfg: num_perm, precision, seed, chunk size.
        use_kernels: use the compiled kernels when numba is installed; False forces the numpy
            reference path (same values; the tests compare the two).

    Returns:
        (n_docs, num_perm) uint64 (precision 64) or uint32 (precision 32).
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    n_docs = len(offsets) - 1
    a, b = _permutation_params(cfg.num_perm, cfg.precision, cfg.seed)
    p = np.uint64(MERSENNE_61 if cfg.precision == 64 else PRIME_32)
    out = np.full((n_docs, cfg.num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    x_all = np.asarray(hashes, dtype=np.uint64) % p  # (S,) reduce once: x < p
    kernels = _kernels() if use_kernels else None
    if kernels is not None and cfg.precision == 64:
        a0, a1 = (a & _MASK32).astype(np.uint32), (a >> _U32).astype(np.uint32)
        kernels.signatures_m61(x_all, offsets, a0, a1, b, out)
        return out
    if kernels is not None:
        kernels.signatures_p32(x_all.astype(np.uint32), offsets, a.astype(np.uint32), b, out)
        return out.astype(np.uint32)  # empty rows: uint64 max -> uint32 max
    a2, b2 = a[None, :], b[None, :]  # (1, P)
    counts = np.diff(offsets)
    nonempty = np.flatnonzero(counts > 0)
    max_rows = max(cfg.chunk_elements // cfg.num_perm, 1)
    i = 0
    while i < len(nonempty):
        d0 = nonempty[i]
        s0 = offsets[d0]
        # take whole documents while they fit; one oversized document is done in slices below
        j = int(np.searchsorted(offsets[nonempty + 1], s0 + max_rows, side="right"))
        j = max(j, i + 1)
        docs = nonempty[i:j]
        s1 = offsets[docs[-1] + 1]
        if s1 - s0 <= max_rows:
            ph = _permute(x_all[s0:s1, None], a2, b2, cfg.precision)  # (rows, P)
            out[docs] = np.minimum.reduceat(ph, offsets[docs] - s0, axis=0)
        else:  # a single document with more shingles than a chunk
            acc = out[d0]
            for c0 in range(s0, s1, max_rows):
                ph = _permute(x_all[c0 : min(c0 + max_rows, s1), None], a2, b2, cfg.precision)
                acc = np.minimum(acc, ph.min(axis=0))
            out[d0] = acc
        i = j
    if cfg.precision == 32:
        return out.astype(np.uint32)  # empty rows: uint64 max -> uint32 max after the cast below
    return out


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit hash per LSH band of each signature.

    Args:
        signatures: (n_docs, bands * rows) uint32 or uint64.
        bands: number of bands.
        rows: values per band.

    Returns:
        (n_docs, bands) int64: the uint64 band hash bit pattern viewed as signed (Spark LongType). Equal bands
        at the same band index give equal values; the band index is mixed in, so equal values in different
        bands do not collide.
    """
    n_docs, width = signatures.shape
    assert width == bands * rows, f"signature width {width} != bands * rows = {bands} * {rows}"
    sig = signatures.astype(np.uint64).reshape(n_docs, bands, rows)  # (n, B, R)
    band_idx = np.arange(bands, dtype=np.uint64)
    h = np.broadcast_to(_splitmix64(band_idx + np.uint64(0x9E3779B97F4A7C15)), (n_docs, bands)).copy()
    with np.errstate(over="ignore"):
        for r in range(rows):
            h = _splitmix64((h * np.uint64(0x100000001B3)) ^ sig[:, :, r])
    return h.view(np.int64)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective 64-bit mix (uint64 wrap-around is intended)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


@functools.lru_cache(maxsize=1)
def _simplify_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The code-point table that lets ``_minhash_kernels.simplify_utf8`` reproduce ``simplify_text``.

    For every code point below ``_TABLE_SIZE`` (the BMP and the next two planes: emoji, CJK extension B),
    its class and, for REPLACE, the UTF-8 bytes it becomes. Each class is what ``simplify_text`` does to
    that character wherever it stands, so a document made only of such characters needs no Python:

    - DIGIT: an ASCII digit (the number rule's ``\\d``; other decimal digits fall back);
    - MARK: a non-spacing mark (deleted, after separators are collapsed);
    - SEPARATOR: matched by the separator class (whitespace or datatrove punctuation) and not a digit;
    - KEEP / REPLACE: a word character; REPLACE when lowercasing, NFD and mark removal change it, and the
      result is non-empty, has no separator or digit and no combining character that would survive;
    - FALLBACK: everything else (upper-case sigma, whose lowercase depends on context; combining
      characters that are not non-spacing marks; non-ASCII digits; surrogates), simplified in Python.

    Built once per process (about 0.4 s) from ``unicodedata`` and the same regexes as ``simplify_text``.
    """
    from udfs.curation import _minhash_kernels as K

    sep_re = re.compile(f"[\\s{_PUNCT}]")
    marks_re = _combining_marks_re()
    cls = np.full(_TABLE_SIZE, K.FALLBACK, dtype=np.uint8)
    rep_start = np.zeros(_TABLE_SIZE, dtype=np.int64)
    rep_end = np.zeros(_TABLE_SIZE, dtype=np.int64)
    pool = bytearray()
    for cp in range(_TABLE_SIZE):
        if 0xD800 <= cp < 0xE000:
            continue  # surrogates: not encodable, left to the Python path
        c = chr(cp)
        if _NUMBER_RE.match(c):  # a decimal digit (Nd)
            cls[cp] = K.DIGIT if "0" <= c <= "9" else K.FALLBACK
            continue
        lower = c.lower()
        if len(lower) == 1 and sep_re.fullmatch(lower):
            cls[cp] = K.SEPARATOR if sep_re.fullmatch(c) else K.FALLBACK
            continue
        if cp == 0x03A3 or sep_re.search(lower) or _NUMBER_RE.search(lower) or sep_re.search(c):
            continue  # upper-case sigma: its lowercase depends on the context
        nfd = unicodedata.normalize("NFD", lower)
        word = marks_re.sub("", nfd)
        if not word:
            cls[cp] = K.MARK if marks_re.fullmatch(c) else K.FALLBACK
            continue
        if (
            unicodedata.combining(c)
            or any(unicodedata.combining(ch) for ch in word)
            or sep_re.search(word)
            or _NUMBER_RE.search(word)
        ):
            continue  # combining characters that survive NFD's reordering
        if word == c:
            cls[cp] = K.KEEP
        else:
            data = word.encode("utf-8")
            rep_start[cp], rep_end[cp] = len(pool), len(pool) + len(data)
            pool += data
            cls[cp] = K.REPLACE
    return cls, rep_start, rep_end, np.frombuffer(bytes(pool), dtype=np.uint8)


_TABLE_SIZE = 0x30000


def _simplified_buffer(values: list, kernels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, starts, ends): each document's ``simplify_text`` output in UTF-8 in one uint8 buffer.

    Table-driven documents are simplified by the compiled kernel straight from their UTF-8; any other
    document (a character of class FALLBACK) goes through ``simplify_text`` and is appended at the end.
    None and non-strings count as empty.
    """
    encoded = [t.encode("utf-8") if isinstance(t, str) else b"" for t in values]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    src = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    cls, rep_start, rep_end, pool = _simplify_table()
    out = np.empty(3 * len(src) + 1, dtype=np.uint8)
    starts = np.empty(len(encoded), dtype=np.int64)
    ends = np.empty(len(encoded), dtype=np.int64)
    fallback = np.zeros(len(encoded), dtype=np.uint8)
    used = kernels.simplify_utf8(src, offsets, cls, rep_start, rep_end, pool, out, starts, ends, fallback)
    slow = np.flatnonzero(fallback)
    if not len(slow):
        return out[:used], starts, ends
    tail = [simplify_text(values[i]).encode("utf-8") for i in slow.tolist()]
    tail_len = np.fromiter(map(len, tail), dtype=np.int64, count=len(tail))
    starts[slow] = used + np.concatenate([[0], np.cumsum(tail_len)[:-1]])
    ends[slow] = starts[slow] + tail_len
    return np.concatenate([out[:used], np.frombuffer(b"".join(tail), dtype=np.uint8)]), starts, ends


def minhash_batch(
    texts: pd.Series | Sequence[str | None], cfg: MinHashConfig = MinHashConfig(), use_kernels: bool = True
) -> pd.DataFrame:
    """Signatures, band hashes and flags for a batch of texts (what the Spark pandas UDF calls).

    Args:
        texts: (n,) documents; None counts as empty.
        cfg: the MinHash config.
        use_kernels: shingle, hash and permute with the compiled kernels when numba is installed; False forces
            the numpy + xxhash reference path (identical output).

    Returns:
        DataFrame with n rows (same index as ``texts`` when it is a Series) and columns:
        ``minhash_signature`` (object: (num_perm,) uint64/uint32 arrays), ``minhash_bands`` (object: (bands,)
        int64 arrays), ``minhash_n_shingles`` (int32), ``minhash_flag`` (object: None, "short" or "empty").

    Example:
        >>> df = minhash_batch(pd.Series(["a b c d e f", "a b c d e f", ""]))
        >>> bool((df.minhash_bands[0] == df.minhash_bands[1]).all()), df.minhash_flag.tolist()
        (True, [None, None, 'empty'])
    """
    index = texts.index if isinstance(texts, pd.Series) else None
    values = texts.tolist() if isinstance(texts, pd.Series) else list(texts)
    kernels = _kernels() if use_kernels else None
    if kernels is not None:  # simplify, shingle, hash and permute in compiled code
        buf, starts, ends = _simplified_buffer(values, kernels)
        counts, word_counts = kernels.shingle_counts(buf, starts, ends, cfg.n_grams)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        hashes = np.empty(int(offsets[-1]), dtype=np.uint64)
        kernels.shingle_hashes(buf, starts, ends, cfg.n_grams, offsets, hashes)
        n_words_all = word_counts.tolist()
    else:
        shingled = [_shingles(t, cfg.n_grams) if isinstance(t, str) else (np.zeros(0, np.uint64), 0) for t in values]
        counts = np.fromiter((len(h) for h, _ in shingled), dtype=np.int64, count=len(shingled))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        hashes = np.concatenate([h for h, _ in shingled]) if shingled else np.zeros(0, np.uint64)
        n_words_all = [n for _, n in shingled]
    sigs = minhash_signatures(hashes, offsets, cfg, use_kernels=use_kernels)
    bands = band_hashes(sigs, cfg.bands, cfg.rows)
    flags = [FLAG_EMPTY if n_words == 0 else FLAG_SHORT if n_words < cfg.n_grams else None for n_words in n_words_all]
    return pd.DataFrame(
        {
            C.MINHASH_SIGNATURE: list(sigs),
            C.MINHASH_BANDS: list(bands),
            C.MINHASH_N_SHINGLES: counts.astype(np.int32),
            C.MINHASH_FLAG: flags,
        },
        index=index,
    )


# --------------------------------------------------------------------------------------------------------------
# LSH parameters
# --------------------------------------------------------------------------------------------------------------


def _collision_probability(s: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """The LSH S-curve: probability that two documents of Jaccard s share at least one band."""
    return 1.0 - (1.0 - s**rows) ** bands


def optimal_bands_rows(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """Chooses (bands, rows) with bands * rows <= num_perm for a Jaccard threshold.

    For every (b, r) the false-positive area is the integral of the S-curve over [0, threshold] and the
    false-negative area the integral of 1 - S-curve over [threshold, 1] (Simpson's rule, 1,001 points); the
    pair with the smallest ``fp_weight * fp + fn_weight * fn`` wins (ties: the first in (b, r) order).
    This is the method of datasketch's ``_optimal_param``.

    Args:
        threshold: Jaccard similarity above which documents should collide, in (0, 1).
        num_perm: available hash values per signature.
        fp_weight: weight of false positives (pairs below the threshold that collide).
        fn_weight: weight of false negatives (pairs above the threshold that never collide).

    Returns:
        (bands, rows).

    Example:
        >>> optimal_bands_rows(0.8, 112)
        (9, 12)
    """
    assert 0.0 < threshold < 1.0, f"threshold must be in (0, 1), got {threshold}"
    assert num_perm >= 1, f"num_perm must be >= 1, got {num_perm}"
    grid = 1000  # even number of intervals for Simpson's rule
    s_lo = np.linspace(0.0, threshold, grid + 1)
    s_hi = np.linspace(threshold, 1.0, grid + 1)
    w = np.ones(grid + 1)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    best, best_err = (1, 1), np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = (w @ _collision_probability(s_lo, b, r)) * (threshold / grid) / 3.0
            fn = (w @ (1.0 - _collision_probability(s_hi, b, r))) * ((1.0 - threshold) / grid) / 3.0
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best
