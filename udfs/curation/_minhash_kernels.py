"""Compiled (numba) kernels for MinHash: shingle hashing (xxh64) and permute-and-min signatures.

They compute exactly what the numpy/xxhash reference path in ``udfs.curation.minhash`` computes
(the unit tests compare them bit for bit), about 20x faster for signatures: one pass over the
shingles with the minimum kept in a register-sized row, instead of ~15 numpy passes over a
(shingles x num_perm) buffer. Importing this module needs numba; ``minhash.py`` falls back to the
reference path when numba is missing. Compiled code is cached on disk (``cache=True``), so a
Python worker compiles once per machine, not once per task.

All integer constants are ``np.uint64`` so numba never promotes a uint64 expression to float64.
"""

from __future__ import annotations

import numba
import numpy as np

_U = np.uint64
_P1 = _U(0x9E3779B185EBCA87)  # xxh64's primes (xxHash specification, XXH64)
_P2 = _U(0xC2B2AE3D27D4EB4F)
_P3 = _U(0x165667B19E3779F9)
_P4 = _U(0x85EBCA77C2B2AE63)
_P5 = _U(0x27D4EB2F165667C5)
_M61 = _U((1 << 61) - 1)
_MASK32 = _U(0xFFFFFFFF)
_MASK29 = _U((1 << 29) - 1)
_S1, _S3, _S7, _S8, _S11, _S12, _S16, _S18 = _U(1), _U(3), _U(7), _U(8), _U(11), _U(12), _U(16), _U(18)
_S23, _S24, _S27, _S29, _S31, _S32, _S33 = _U(23), _U(24), _U(27), _U(29), _U(31), _U(32), _U(33)
_S40, _S48, _S56, _S61, _S64 = _U(40), _U(48), _U(56), _U(61), _U(64)
_SPACE = np.uint8(32)


@numba.njit(inline="always")
def _rotl(x, r):
    return (x << r) | (x >> (_S64 - r))


@numba.njit(inline="always")
def _read64(buf, i):
    return (
        _U(buf[i])
        | (_U(buf[i + 1]) << _S8)
        | (_U(buf[i + 2]) << _S16)
        | (_U(buf[i + 3]) << _S24)
        | (_U(buf[i + 4]) << _S32)
        | (_U(buf[i + 5]) << _S40)
        | (_U(buf[i + 6]) << _S48)
        | (_U(buf[i + 7]) << _S56)
    )


@numba.njit(inline="always")
def _read32(buf, i):
    return _U(buf[i]) | (_U(buf[i + 1]) << _S8) | (_U(buf[i + 2]) << _S16) | (_U(buf[i + 3]) << _S24)


@numba.njit(inline="always")
def _round(acc, lane):
    acc = acc + lane * _P2
    return _rotl(acc, _S31) * _P1


@numba.njit(inline="always")
def _merge(acc, v):
    return (acc ^ _round(_U(0), v)) * _P1 + _P4


@numba.njit(cache=True, nogil=True, inline="always")
def xxh64(buf, start, end):
    """xxh64 with seed 0 of ``buf[start:end]`` (uint8 array): equals ``xxhash.xxh64_intdigest``."""
    n = end - start
    i = start
    if n >= 32:
        v1 = _P1 + _P2
        v2 = _P2
        v3 = _U(0)
        v4 = _U(0) - _P1
        limit = end - 32
        while i <= limit:
            v1 = _round(v1, _read64(buf, i))
            v2 = _round(v2, _read64(buf, i + 8))
            v3 = _round(v3, _read64(buf, i + 16))
            v4 = _round(v4, _read64(buf, i + 24))
            i += 32
        h = _rotl(v1, _S1) + _rotl(v2, _S7) + _rotl(v3, _S12) + _rotl(v4, _S18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = _P5
    h = h + _U(n)
    while i + 8 <= end:
        h = h ^ _round(_U(0), _read64(buf, i))
        h = _rotl(h, _S27) * _P1 + _P4
        i += 8
    if i + 4 <= end:
        h = h ^ (_read32(buf, i) * _P1)
        h = _rotl(h, _S23) * _P2 + _P3
        i += 4
    while i < end:
        h = h ^ (_U(buf[i]) * _P5)
        h = _rotl(h, _S11) * _P1
        i += 1
    h = h ^ (h >> _S33)
    h = h * _P2
    h = h ^ (h >> _S29)
    h = h * _P3
    return h ^ (h >> _S32)


# classes of ``simplify_utf8``'s code-point table (built by ``minhash._simplify_table``)
KEEP, REPLACE, SEPARATOR, DIGIT, MARK, FALLBACK = 0, 1, 2, 3, 4, 5
_ZERO, _DOT, _COMMA = np.uint8(48), np.uint8(46), np.uint8(44)


@numba.njit(inline="always")
def _is_ascii_digit(b):
    return b >= 48 and b <= 57


@numba.njit(inline="always")
def _number_separator_len(buf, i, e):
    """UTF-8 length of the number rule's decimal separator at ``buf[i]`` (``.,،٫⎖⎗⎘``), else 0."""
    b = buf[i]
    if b == _DOT or b == _COMMA:
        return 1
    if i + 1 < e and ((b == 0xD8 and buf[i + 1] == 0x8C) or (b == 0xD9 and buf[i + 1] == 0xAB)):
        return 2  # U+060C ARABIC COMMA, U+066B ARABIC DECIMAL SEPARATOR
    if i + 2 < e and b == 0xE2 and buf[i + 1] == 0x8E and buf[i + 2] >= 0x96 and buf[i + 2] <= 0x98:
        return 3  # U+2396..U+2398 decimal separator keys
    return 0


@numba.njit(cache=True, nogil=True)
def simplify_utf8(buf, offsets, cls, rep_start, rep_end, rep_pool, out, out_starts, out_ends, fallback):
    """``simplify_text`` in one pass over UTF-8 bytes, for documents whose every character is table-driven.

    ``buf[offsets[d]:offsets[d + 1]]`` is document d's original text in UTF-8. ``cls[cp]`` classifies each
    code point (the table covers ``cls.shape[0]`` code points; any code point beyond it, or of class
    FALLBACK, stops the document and sets ``fallback[d] = 1``, so the caller simplifies it in Python):

    - KEEP: copied as is (already lowercase, unchanged by NFD, no combining mark);
    - REPLACE: written as ``rep_pool[rep_start[cp]:rep_end[cp]]`` (lowercased, NFD, marks removed);
    - SEPARATOR: whitespace or datatrove punctuation; every run becomes one space, none at the ends;
    - DIGIT: an ASCII digit run, with one optional decimal separator + digit-run part, becomes ``0``;
    - MARK: a non-spacing mark, which ``simplify_text`` deletes after collapsing separators (so it breaks
      a separator run, and trailing spaces left by it are stripped).

    Output of document d: ``out[out_starts[d]:out_ends[d]]`` (``out`` must hold 3 bytes per input byte:
    the longest replacement, a Hangul syllable's three jamo, is 9 bytes for 3). Returns bytes written.
    """
    n_docs = offsets.shape[0] - 1
    table = cls.shape[0]
    o = 0
    for d in range(n_docs):
        i, e = offsets[d], offsets[d + 1]
        out_starts[d] = o
        start, pending = o, False
        while i < e:
            b = buf[i]
            if b < 128:
                cp, n = np.int64(b), 1
            elif b < 0xE0:
                cp, n = ((np.int64(b) & 0x1F) << 6) | (np.int64(buf[i + 1]) & 0x3F), 2
            elif b < 0xF0:
                cp = ((np.int64(b) & 0x0F) << 12) | ((np.int64(buf[i + 1]) & 0x3F) << 6) | (np.int64(buf[i + 2]) & 0x3F)
                n = 3
            else:
                cp = (
                    ((np.int64(b) & 0x07) << 18)
                    | ((np.int64(buf[i + 1]) & 0x3F) << 12)
                    | ((np.int64(buf[i + 2]) & 0x3F) << 6)
                    | (np.int64(buf[i + 3]) & 0x3F)
                )
                n = 4
            k = cls[cp] if cp < table else FALLBACK
            if k == SEPARATOR:
                pending = o > start
                i += n
                continue
            if k == FALLBACK:
                fallback[d] = 1
                break
            if pending:
                out[o] = _SPACE
                o += 1
                pending = False
            if k == MARK:
                i += n
            elif k == KEEP:
                for j in range(n):
                    out[o + j] = buf[i + j]
                o += n
                i += n
            elif k == REPLACE:
                for j in range(rep_start[cp], rep_end[cp]):
                    out[o] = rep_pool[j]
                    o += 1
                i += n
            else:  # DIGIT: \d+ with one optional [.,]\d+ part -> "0"
                i += 1
                while i < e and _is_ascii_digit(buf[i]):
                    i += 1
                if i < e:
                    m = _number_separator_len(buf, i, e)
                    if m and i + m < e and _is_ascii_digit(buf[i + m]):
                        i += m + 1
                        while i < e and _is_ascii_digit(buf[i]):
                            i += 1
                out[o] = _ZERO
                o += 1
        while o > start and out[o - 1] == _SPACE:  # a space flushed before trailing marks
            o -= 1
        if fallback[d]:
            o = start
        out_ends[d] = o
    return o


@numba.njit(cache=True, nogil=True)
def shingle_counts(buf, starts, ends, n_grams):
    """(shingles per document, words per document) of simplified texts in ``buf``.

    ``buf[starts[d]:ends[d]]`` is document d's simplified text in UTF-8: words separated by single
    spaces, no leading or trailing space (what ``simplify_text`` returns).
    """
    n_docs = starts.shape[0]
    n_sh = np.zeros(n_docs, np.int64)
    n_words = np.zeros(n_docs, np.int64)
    for d in range(n_docs):
        s, e = starts[d], ends[d]
        if e == s:
            continue
        words = 1
        for i in range(s, e):
            if buf[i] == _SPACE:
                words += 1
        n_words[d] = words
        n_sh[d] = 1 if words < n_grams else words - n_grams + 1
    return n_sh, n_words


@numba.njit(cache=True, nogil=True)
def shingle_hashes(buf, doc_starts, doc_ends, n_grams, sh_offsets, out):
    """Fill ``out[sh_offsets[d]:sh_offsets[d + 1]]`` with document d's shingle hashes.

    A shingle is the byte slice from the start of word k to the end of word k + n_grams - 1 (the
    words joined by their single spaces); a document with fewer words has one shingle, its whole text.
    """
    n_docs = doc_starts.shape[0]
    starts = np.empty(n_grams, np.int64)  # ring buffer of the last n_grams word starts
    for d in range(n_docs):
        s, e = doc_starts[d], doc_ends[d]
        k = sh_offsets[d]
        n = sh_offsets[d + 1] - k
        if n == 0:
            continue
        if n == 1 and e > s:  # fewer words than n_grams, or exactly n_grams: the whole text
            out[k] = xxh64(buf, s, e)
            continue
        word = 0
        head = 0  # ring slot of the start of word `word`; slot head + 1 (mod n) holds word - n + 1
        starts[0] = s
        for i in range(s, e + 1):
            if i == e or buf[i] == _SPACE:  # word `word` ends at i
                head += 1
                if head == n_grams:
                    head = 0
                if word >= n_grams - 1:  # the oldest start in the ring begins this shingle
                    out[k] = xxh64(buf, starts[head], i)
                    k += 1
                word += 1
                starts[head] = i + 1


@numba.njit(inline="always")
def _perm_m61(x0, x1, a0, a1, b):
    """(a*x + b) mod (2^61 - 1) as int64, from the 32-bit halves of x and a (``minhash._permute_m61``)."""
    acc = (a1 * x1) << _S3
    mid = a1 * x0 + a0 * x1
    acc += (mid >> _S29) + ((mid & _MASK29) << _S32)
    lo = a0 * x0
    lo = (lo & _M61) + (lo >> _S61)
    acc += lo + b
    acc = (acc & _M61) + (acc >> _S61)
    acc = (acc & _M61) + (acc >> _S61)
    return np.int64(acc)


@numba.njit(cache=True, nogil=True)
def signatures_m61(x, offsets, a0, a1, b, out):
    """Per document d, ``out[d, j] = min over its shingles of (a_j * x + b_j) mod (2^61 - 1)``.

    ``x`` (S,) uint64 shingle hashes already reduced mod p; ``offsets`` (n_docs + 1,) int64;
    ``a0``/``a1`` the low/high 32 bits of a (num_perm,) as uint32; ``b`` (num_perm,) uint64; ``out``
    (n_docs, num_perm) uint64 pre-filled with the maximum (documents without shingles keep it). The
    arithmetic is ``minhash._permute_m61``'s, value for value (a*x from 32-bit halves, no wrap).

    The inner loop over the num_perm functions has no branch and multiplies zero-extended 32-bit
    halves, so LLVM vectorises it (32x32->64-bit lane multiplies); four shingles share each pass
    over (a, b) (measured about 1.4x faster than one). Every value is below 2^62, so the running
    minimum is kept as int64 (a signed compare, native in AVX2).
    """
    n_docs = offsets.shape[0] - 1
    P = a0.shape[0]
    row = np.empty(P, np.int64)
    for d in range(n_docs):
        s, s1 = offsets[d], offsets[d + 1]
        if s1 == s:
            continue
        row[:] = np.iinfo(np.int64).max
        while s + 3 < s1:
            xa, xb, xc, xd = x[s], x[s + 1], x[s + 2], x[s + 3]
            xa0, xa1, xb0, xb1 = xa & _MASK32, xa >> _S32, xb & _MASK32, xb >> _S32
            xc0, xc1, xd0, xd1 = xc & _MASK32, xc >> _S32, xd & _MASK32, xd >> _S32
            for j in range(P):
                lo, hi, bj = _U(a0[j]), _U(a1[j]), b[j]
                m1 = min(_perm_m61(xa0, xa1, lo, hi, bj), _perm_m61(xb0, xb1, lo, hi, bj))
                m2 = min(_perm_m61(xc0, xc1, lo, hi, bj), _perm_m61(xd0, xd1, lo, hi, bj))
                row[j] = min(row[j], min(m1, m2))
            s += 4
        while s < s1:
            xa0, xa1 = x[s] & _MASK32, x[s] >> _S32
            for j in range(P):
                row[j] = min(row[j], _perm_m61(xa0, xa1, _U(a0[j]), _U(a1[j]), b[j]))
            s += 1
        for j in range(P):
            out[d, j] = _U(row[j])


_P32 = _U((1 << 32) - 5)
_FIVE = _U(5)


@numba.njit(inline="always")
def _perm_p32(x, a, b):
    """(a*x + b) mod (2^32 - 5) as int64, for a, x < 2^32 - 5 and b < 2^32 - 5 (a*x + b < 2^64: no wrap).

    2^32 = 5 (mod p): v = hi*2^32 + lo folds to hi*5 + lo (< 6*2^32), again to < 2^32 + 30, then one
    conditional subtraction leaves [0, p). Equals numpy's ``(a * x + b) % p`` value for value.
    """
    v = a * x + b
    v = (v >> _S32) * _FIVE + (v & _MASK32)
    v = (v >> _S32) * _FIVE + (v & _MASK32)
    if v >= _P32:
        v -= _P32
    return np.int64(v)


@numba.njit(cache=True, nogil=True)
def signatures_p32(x, offsets, a, b, out):
    """``signatures_m61`` for the 32-bit family: ``out[d, j] = min over shingles of (a_j*x + b_j) mod (2^32 - 5)``.

    ``x`` (S,) shingle hashes already reduced mod p and ``a`` (num_perm,), both as uint32 (so the
    products are 32x32->64-bit lane multiplies); ``b`` (num_perm,) uint64 below p; ``out`` (n_docs,
    num_perm) uint64 pre-filled with the maximum. Four shingles per pass over (a, b).
    """
    n_docs = offsets.shape[0] - 1
    P = a.shape[0]
    row = np.empty(P, np.int64)
    for d in range(n_docs):
        s, s1 = offsets[d], offsets[d + 1]
        if s1 == s:
            continue
        row[:] = np.iinfo(np.int64).max
        while s + 3 < s1:
            xa, xb, xc, xd = _U(x[s]), _U(x[s + 1]), _U(x[s + 2]), _U(x[s + 3])
            for j in range(P):
                aj, bj = _U(a[j]), b[j]
                m1 = min(_perm_p32(xa, aj, bj), _perm_p32(xb, aj, bj))
                m2 = min(_perm_p32(xc, aj, bj), _perm_p32(xd, aj, bj))
                row[j] = min(row[j], min(m1, m2))
            s += 4
        while s < s1:
            xa = _U(x[s])
            for j in range(P):
                row[j] = min(row[j], _perm_p32(xa, _U(a[j]), b[j]))
            s += 1
        for j in range(P):
            out[d, j] = _U(row[j])
