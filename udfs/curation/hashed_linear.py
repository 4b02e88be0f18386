"""The quality classifier's scoring, outside the JVM: hashed n-grams -> L2 norm -> logistic regression.

``jobs/train_quality.py`` fits the classifier as a Spark ML pipeline (``jobs.transforms.quality.build_pipeline``):
lower-cased text cut to ``max_chars`` characters, split on runs of ``[ \\t\\n\\x0b\\f\\r]`` (Java's ``\\s``, as
``RegexTokenizer``), word n-grams of 1..``word_ngrams`` joined by one space (``NGram``), ``'#'`` + each
``char_ngram`` characters of the first ``char_max_chars`` (code points, as Spark's ``substr``), hashed into
``num_features`` buckets with binary counts (``HashingTF``: MurmurHash3 x86 32-bit, seed 42, of the UTF-8
bytes, non-negative modulo), the vector scaled to unit L2 norm (``Normalizer``), then
``sigmoid(intercept + w . x)`` (``LogisticRegressionModel``'s probability of class 1). The JVM pipeline costs
about 4 ms of CPU per document of a few thousand characters; this module computes the same number from
the fitted weights in one compiled pass over each document's UTF-8 bytes (tests compare the two on
multilingual text). Lower-casing is Python's ``str.lower``; Java's ``toLowerCase`` agrees with it except
for characters whose mapping changed between the two runtimes' Unicode versions.

Without numba the same kernel runs as plain Python (correct, about 250x slower: 36 vs 9,800 docs/CPU-s on
4,000-character documents) and a warning says so once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from udfs.curation._compiled import optional_module

SEED = 42  # HashingTF's MurmurHash3 seed (org.apache.spark.ml.feature.FeatureHasher / HashingTF)


def _numba_jit():
    """``numba.njit(cache=True, nogil=True)``, or None (warned once) when numba cannot be imported."""
    numba = optional_module(
        "numba", "quality classifier", "the same kernel as plain Python, about 250x slower (measured)"
    )
    return None if numba is None else numba.njit(cache=True, nogil=True)


def _kernel(fn):
    jit = _numba_jit()
    return jit(fn) if jit is not None else fn


@dataclass(frozen=True)
class HashedLinearModel:
    """A fitted hashed-n-gram logistic regression (the classifier artifact's weights and feature spec).

    Attributes:
        weights: (num_features,) float64 coefficients of the logistic regression.
        intercept: its intercept.
        word_ngrams: word n-grams of length 1..word_ngrams (>= 1).
        char_ngram: length of the character n-grams; 0 = none.
        max_chars: characters of each document the features read (cut before lower-casing).
        char_max_chars: characters of the lower-cased text the character n-grams read.
    """

    weights: np.ndarray
    intercept: float
    word_ngrams: int = 2
    char_ngram: int = 4
    max_chars: int = 4000
    char_max_chars: int = 1000

    def __post_init__(self) -> None:
        w = np.ascontiguousarray(self.weights, dtype=np.float64)
        if w.ndim != 1 or w.size < 1:
            raise ValueError(f"weights must be a non-empty vector, got shape {w.shape}")
        if self.word_ngrams < 1 or self.char_ngram < 0 or self.max_chars < 1 or self.char_max_chars < 1:
            raise ValueError(f"bad feature spec: {self.word_ngrams=}, {self.char_ngram=}, {self.max_chars=}")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "intercept", float(self.intercept))


def score_texts(model: HashedLinearModel, texts) -> np.ndarray:
    """Probability of the positive class for each text (None scores as the empty string).

    Args:
        model: the fitted weights and feature spec.
        texts: an iterable of ``str`` or None (a ``pd.Series`` of strings works).

    Returns:
        (n,) float64 in (0, 1), in the order of ``texts``.
    """
    parts = [(t or "")[: model.max_chars].lower().encode("utf-8") for t in texts]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    buf = np.frombuffer(b"".join(parts), dtype=np.uint8) if offsets[-1] else np.zeros(1, dtype=np.uint8)
    margins = _margins(buf, offsets, model.weights, model.word_ngrams, model.char_ngram, model.char_max_chars)
    return 1.0 / (1.0 + np.exp(-(margins + model.intercept)))


_U = np.uint64  # all kernel constants are uint64, so numba never promotes an expression to float64
_M32 = _U(0xFFFFFFFF)
_C1, _C2, _C3, _C4, _C5 = _U(0xCC9E2D51), _U(0x1B873593), _U(0xE6546B64), _U(0x85EBCA6B), _U(0xC2B2AE35)
_S8, _S13, _S15, _S16, _S17, _S19, _S24 = _U(8), _U(13), _U(15), _U(16), _U(17), _U(19), _U(24)
_SIGN = _U(1 << 31)


@_kernel
def _murmur3(buf, start, end, prefix):
    """MurmurHash3 x86 32-bit, seed 42, as a signed 32-bit value (Spark's int), of ``buf[start:end]``, or,
    with ``prefix`` in 0..255, of that byte followed by ``buf[start:end]`` (no copy for '#' + characters)."""
    h = _U(SEED)
    length = end - start
    k = _U(0)
    shift = _U(0)
    if prefix >= 0:  # the first block holds the prefix and up to three bytes of buf
        length += 1
        k = _U(prefix)
        shift = _S8
        while start < end and shift < _U(32):
            k |= _U(buf[start]) << shift
            shift += _S8
            start += 1
        if shift == _U(32):
            k = (k * _C1) & _M32
            k = ((k << _S15) | (k >> _S17)) & _M32
            h ^= (k * _C2) & _M32
            h = ((h << _S13) | (h >> _S19)) & _M32
            h = (h * _U(5) + _C3) & _M32
            k = _U(0)
            shift = _U(0)
    i = start
    while i + 4 <= end:
        k = _U(buf[i]) | (_U(buf[i + 1]) << _S8) | (_U(buf[i + 2]) << _S16) | (_U(buf[i + 3]) << _S24)
        k = (k * _C1) & _M32
        k = ((k << _S15) | (k >> _S17)) & _M32
        h ^= (k * _C2) & _M32
        h = ((h << _S13) | (h >> _S19)) & _M32
        h = (h * _U(5) + _C3) & _M32
        i += 4
        k = _U(0)
    while i < end:
        k |= _U(buf[i]) << shift
        shift += _S8
        i += 1
    k = (k * _C1) & _M32
    k = ((k << _S15) | (k >> _S17)) & _M32
    h ^= (k * _C2) & _M32
    h ^= _U(length)
    h ^= h >> _S16
    h = (h * _C4) & _M32
    h ^= h >> _S13
    h = (h * _C5) & _M32
    h ^= h >> _S16
    return np.int64(h) - (np.int64(1) << 32) if h >= _SIGN else np.int64(h)


@_kernel
def _bucket(buf, start, end, prefix, n, mask):
    """HashingTF's index of ``buf[start:end]``: the hash modulo ``n``, made non-negative (a mask when
    ``n`` is a power of two: two's complement makes ``h & (n - 1)`` the same number, without a division)."""
    h = _murmur3(buf, start, end, prefix)
    if mask >= 0:
        return h & mask
    j = h % n
    return j + n if j < 0 else j


@_kernel
def _margins(buf, offsets, weights, word_ngrams, char_ngram, char_max_chars):
    """``w . x`` of each document (``x``: the distinct buckets, scaled to unit L2 norm; 0 when none)."""
    n_docs = offsets.shape[0] - 1
    n = weights.shape[0]
    mask = n - 1 if n & (n - 1) == 0 else -1
    out = np.zeros(n_docs, dtype=np.float64)
    stamp = np.full(n, -1, dtype=np.int32)  # stamp[j] == d: document d has bucket j already
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    starts = np.empty(longest + 1, dtype=np.int64)
    ends = np.empty(longest + 1, dtype=np.int64)
    buckets = np.empty((word_ngrams + 1) * (longest + 1), dtype=np.int64)
    scratch = np.empty(longest + 8, dtype=np.uint8)  # a word n-gram's bytes
    for d in range(n_docs):
        lo, hi = offsets[d], offsets[d + 1]
        n_tok = 0  # words: maximal runs of non-whitespace bytes (UTF-8 never puts these bytes in a char)
        i = lo
        while i < hi:
            while i < hi and (buf[i] == 32 or 9 <= buf[i] <= 13):
                i += 1
            if i < hi:
                starts[n_tok] = i
                while i < hi and not (buf[i] == 32 or 9 <= buf[i] <= 13):
                    i += 1
                ends[n_tok] = i
                n_tok += 1
        nb = 0
        for t in range(n_tok):
            buckets[nb] = _bucket(buf, starts[t], ends[t], -1, n, mask)
            nb += 1
        for g in range(2, word_ngrams + 1):  # "w1 w2 ... wg", one space between
            for t in range(n_tok - g + 1):
                m = 0
                for u in range(t, t + g):
                    if u > t:
                        scratch[m] = 32
                        m += 1
                    for b in range(starts[u], ends[u]):
                        scratch[m] = buf[b]
                        m += 1
                buckets[nb] = _bucket(scratch, 0, m, -1, n, mask)
                nb += 1
        if char_ngram > 0:  # '#' + char_ngram code points, over the first char_max_chars code points
            n_cp = 0
            head_end = hi
            for b in range(lo, hi):
                if buf[b] & 0xC0 != 0x80:  # a code point starts here
                    if n_cp == char_max_chars:
                        head_end = b
                        break
                    starts[n_cp] = b
                    n_cp += 1
            starts[n_cp] = head_end
            for c in range(n_cp - char_ngram + 1):
                buckets[nb] = _bucket(buf, starts[c], starts[c + char_ngram], 35, n, mask)  # 35: '#'
                nb += 1
        total = 0.0
        count = 0
        for t in range(nb):  # branch-free: whether a bucket is new is a coin flip the CPU cannot predict
            j = buckets[t]
            new = stamp[j] != d
            stamp[j] = d
            total += weights[j] * new
            count += new
        if count > 0:
            out[d] = total / np.sqrt(count)
    return out
