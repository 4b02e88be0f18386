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
    return (_U(buf[i]) | (_U(buf[i + 1]) << _S8) | (_U(buf[i + 2]) << _S16) | (_U(buf[i + 3]) << _S24)
            | (_U(buf[i + 4]) << _S32) | (_U(buf[i + 5]) << _S40) | (_U(buf[i + 6]) << _S48)
            | (_U(buf[i + 7]) << _S56))


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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def shingle_counts(buf, doc_offsets, n_grams):
    """(shingles per document, words per document) of simplified texts concatenated in ``buf``.

    ``buf[doc_offsets[d]:doc_offsets[d + 1]]`` is document d's simplified text in UTF-8: words
    separated by single spaces, no leading or trailing space (what ``simplify_text`` returns).
    """
    n_docs = doc_offsets.shape[0] - 1
    n_sh = np.zeros(n_docs, np.int64)
    n_words = np.zeros(n_docs, np.int64)
    for d in range(n_docs):
        s, e = doc_offsets[d], doc_offsets[d + 1]
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
def shingle_hashes(buf, doc_offsets, n_grams, sh_offsets, out):
    """Fill ``out[sh_offsets[d]:sh_offsets[d + 1]]`` with document d's shingle hashes.

    A shingle is the byte slice from the start of word k to the end of word k + n_grams - 1 (the
    words joined by their single spaces); a document with fewer words has one shingle, its whole text.
    """
    n_docs = doc_offsets.shape[0] - 1
    starts = np.empty(n_grams, np.int64)  # ring buffer of the last n_grams word starts
    for d in range(n_docs):
        s, e = doc_offsets[d], doc_offsets[d + 1]
        k = sh_offsets[d]
        n = sh_offsets[d + 1] - k
        if n == 0:
            continue
        if n == 1 and e > s:  # fewer words than n_grams, or exactly n_grams: the whole text
            out[k] = xxh64(buf, s, e)
            continue
        word = 0
        starts[0] = s
        for i in range(s, e + 1):
            if i == e or buf[i] == _SPACE:  # word `word` ends at i
                if word >= n_grams - 1:
                    out[k] = xxh64(buf, starts[(word - n_grams + 1) % n_grams], i)
                    k += 1
                word += 1
                starts[word % n_grams] = i + 1


@numba.njit(cache=True, nogil=True)
def signatures_m61(x, offsets, a0, a1, b, out):
    """Per document d, ``out[d, j] = min over its shingles of (a_j * x + b_j) mod (2^61 - 1)``.

    ``x`` (S,) uint64 shingle hashes already reduced mod p; ``offsets`` (n_docs + 1,) int64;
    ``a0``/``a1`` the low/high 32 bits of a (num_perm,); ``b`` (num_perm,); ``out`` (n_docs,
    num_perm) uint64 pre-filled with the maximum (documents without shingles keep it). The
    arithmetic is ``minhash._permute_m61``'s, value for value (a*x from 32-bit halves, no wrap).
    """
    n_docs = offsets.shape[0] - 1
    P = a0.shape[0]
    for d in range(n_docs):
        row = out[d]
        for s in range(offsets[d], offsets[d + 1]):
            xv = x[s]
            x0 = xv & _MASK32
            x1 = xv >> _S32
            for j in range(P):
                acc = (a1[j] * x1) << _S3
                mid = a1[j] * x0 + a0[j] * x1
                acc += (mid >> _S29) + ((mid & _MASK29) << _S32)
                lo = a0[j] * x0
                lo = (lo & _M61) + (lo >> _S61)
                acc += lo + b[j]
                acc = (acc & _M61) + (acc >> _S61)
                acc = (acc & _M61) + (acc >> _S61)
                if acc < row[j]:
                    row[j] = acc
