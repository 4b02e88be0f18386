"""Compiled (numba) scan for decontamination: words, word values and n-gram lookups in one pass per document.

It finds what ``udfs.curation.decontam``'s reference path finds (tests compare them on real text): the
document's UTF-8 bytes (of the lower-cased text) are decoded one code point at a time and classed by a
table built from the same rules as ``ngram_words`` (``str.isspace`` separates words, ``str.isalnum`` keeps a
character, everything else and ``_`` is deleted); each word is hashed (xxh64 of its kept bytes) and looked up
in the index's sorted word keys for its random value (0: no evaluation text has it); every window of ``n``
known words is hashed with the same Horner rule as the reference path and looked up in the sorted n-gram
hashes. The scan of a document stops at its first match. Importing this module needs numba; ``decontam.py``
falls back to the reference path without it.
"""

from __future__ import annotations

import numba
import numpy as np

from udfs.curation._minhash_kernels import xxh64

WORD, SPACE, DELETE = 1, 2, 0  # classes of the code-point table


@numba.njit(cache=True, nogil=True)
def _find(sorted_keys, key):
    """Index of ``key`` in the sorted array, or -1."""
    lo, hi = 0, sorted_keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < sorted_keys.shape[0] and sorted_keys[lo] == key else -1


@numba.njit(cache=True, nogil=True)
def first_matches(buf, offsets, classes, word_keys, key_values, hashes, n, mult):
    """For each document ``buf[offsets[d]:offsets[d + 1]]``: the word position of its first n-gram found in
    ``hashes`` and that hash's index, else (-1, -1).

    Args:
        buf: (N,) uint8, the lower-cased documents' UTF-8 bytes, concatenated.
        offsets: (d + 1,) int64 byte offsets.
        classes: (0x110000,) uint8, WORD / SPACE / DELETE per code point.
        word_keys: (v,) sorted uint64 xxh64 of each evaluation word's UTF-8 bytes.
        key_values: (v,) uint64 the word's value (never 0), aligned with ``word_keys``.
        hashes: (m,) sorted uint64 n-gram hashes of the index.
        n: words per n-gram.
        mult: the Horner multiplier (uint64).

    Returns:
        ``(starts, positions)``: two (d,) int64 arrays.
    """
    n_docs = offsets.shape[0] - 1
    starts = np.full(n_docs, -1, dtype=np.int64)
    positions = np.full(n_docs, -1, dtype=np.int64)
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    word = np.empty(longest + 4, dtype=np.uint8)  # the kept bytes of the current word
    ring = np.zeros(n, dtype=np.uint64)  # values of the last n words
    zero = np.uint64(0)
    for d in range(n_docs):
        i, hi = offsets[d], offsets[d + 1]
        m = 0  # bytes of the current word
        n_words = 0
        last_unknown = -1  # word position of the latest word no evaluation text has
        while i <= hi:
            cls = SPACE
            size = 1
            if i < hi:
                b = buf[i]
                if b < 0x80:
                    cp = np.int64(b)
                elif b < 0xE0:
                    cp = ((np.int64(b) & 0x1F) << 6) | (np.int64(buf[i + 1]) & 0x3F)
                    size = 2
                elif b < 0xF0:
                    cp = ((np.int64(b) & 0x0F) << 12) | ((np.int64(buf[i + 1]) & 0x3F) << 6)
                    cp |= np.int64(buf[i + 2]) & 0x3F
                    size = 3
                else:
                    cp = ((np.int64(b) & 0x07) << 18) | ((np.int64(buf[i + 1]) & 0x3F) << 12)
                    cp |= ((np.int64(buf[i + 2]) & 0x3F) << 6) | (np.int64(buf[i + 3]) & 0x3F)
                    size = 4
                cls = classes[cp]
            if cls == WORD:
                for k in range(size):
                    word[m + k] = buf[i + k]
                m += size
            elif cls == SPACE and m > 0:  # a word ends (the document's end counts as a space)
                j = _find(word_keys, xxh64(word, 0, m))
                value = key_values[j] if j >= 0 else zero
                ring[n_words % n] = value
                if value == zero:
                    last_unknown = n_words
                n_words += 1
                m = 0
                s = n_words - n  # the window ending at this word starts here
                if s >= 0 and last_unknown < s:
                    h = ring[s % n]
                    for k in range(1, n):
                        h = h * mult + ring[(s + k) % n]
                    p = _find(hashes, h)
                    if p >= 0:
                        starts[d] = s
                        positions[d] = p
                        break
            i += size
    return starts, positions
