"""Unicode category character classes for the standard ``re`` module (which has no ``\\p{...}``).

The classes are built on first use from ``unicodedata`` (~0.1 s once per process) and cached, so importing
this module does no work. They cover the Basic Multilingual Plane only (U+0000..U+FFFF): ``re`` compiles such
a class into a constant-time lookup table, while one range above U+FFFF makes it scan every range linearly.
With BMP classes ``re`` splits words 2.7x faster than the ``regex`` module's ``\\p{...}`` (3,900 vs 1,400
documents per CPU-second on C4 + Common Crawl). Letters above U+FFFF are still word characters through
``\\w``; only combining marks of a few historic scripts above U+FFFF are missed.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_BMP_END = 0x10000


@functools.lru_cache(maxsize=1)
def _categories() -> str:
    """One character per code point: the first letter of its category, or a code for the few we split."""
    codes = {"Ll": "l", "Lu": "u", "Mn": "n"}
    return "".join(codes.get(c, c[0]) for c in map(unicodedata.category, map(chr, range(_BMP_END))))


@functools.cache
def char_class(categories: str) -> str:
    """The body of a ``re`` character class (no brackets) matching the given Unicode categories in the BMP.

    Args:
        categories: any of "L" (all letters), "l" (lowercase letters, Ll), "u" (uppercase letters, Lu),
            "M" (all marks), "n" (non-spacing marks, Mn); e.g. "L" or "Mn".

    Returns:
        Escaped ranges like ``a-zµ...``, usable inside ``[...]`` and ``[^...]``.

    Example:
        >>> bool(re.fullmatch("[" + char_class("u") + "]+", "ÀBÇ"))
        True
    """
    wanted = set()
    for c in categories:
        wanted |= {"L": {"L", "l", "u"}, "M": {"M", "n"}}.get(c, {c})
    cats = _categories()
    parts, start = [], None
    for cp, c in enumerate(cats):
        if c in wanted:
            if start is None:
                start = cp
        elif start is not None:
            parts.append(_range(start, cp - 1))
            start = None
    if start is not None:
        parts.append(_range(start, len(cats) - 1))
    return "".join(parts)


def _range(a: int, b: int) -> str:
    if a == b:
        return re.escape(chr(a))
    return f"{re.escape(chr(a))}-{re.escape(chr(b))}"
