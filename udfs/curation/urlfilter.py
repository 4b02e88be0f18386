"""URL filtering, the first curation stage: a domain/URL blocklist and FineWeb-style banned words in the URL.

FineWeb (datatrove's ``URLFilter``, arXiv 2406.17557) drops a page before looking at its text when its domain
or URL is on a blocklist, when a banned word is one of the URL's tokens, when two or more "soft" banned words
are, or when a banned sub-word occurs anywhere in the URL with punctuation removed. This module does the same
with lists the user supplies (``parse_blocklist`` reads a file of domains and ``re:`` regexes) and short
built-in word lists; the stage is off by default, since what to block is the user's policy.

Reasons: ``url_blocked`` (domain, URL or pattern on the blocklist), ``url_banned_word``,
``url_soft_banned_words``, ``url_banned_subword``. A null or empty URL is never dropped.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pandas as pd

__all__ = [
    "URL_BANNED_SUBWORD",
    "URL_BANNED_WORD",
    "URL_BLOCKED",
    "URL_SOFT_BANNED_WORDS",
    "UrlFilterConfig",
    "parse_blocklist",
    "url_drop_reason",
    "url_drop_reasons",
]

URL_BLOCKED = "url_blocked"
URL_BANNED_WORD = "url_banned_word"
URL_SOFT_BANNED_WORDS = "url_soft_banned_words"
URL_BANNED_SUBWORD = "url_banned_subword"

# Short starting lists (adult content, the category FineWeb's URL filter targets); pass your own for production.
DEFAULT_BANNED_WORDS = ("porn", "porno", "xxx", "hentai", "nsfw", "camgirl", "camgirls", "sexcam", "escorts")
DEFAULT_SOFT_WORDS = ("sex", "sexy", "nude", "nudes", "naked", "adult", "erotic", "fetish", "milf", "hardcore")
DEFAULT_BANNED_SUBWORDS = ("pornhub", "xvideos", "xhamster", "redtube", "youporn", "xnxx")

_TOKEN_RE = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class UrlFilterConfig:
    """The URL stage of the curation chain (applied by jobs/curate.py to the ``url`` column).

    Attributes:
        enabled: False (default) keeps every document whatever its URL.
        blocked_domains: domains to drop, lower case; a domain also blocks its subdomains ("example.com" blocks
            "news.example.com"); a leading "www." is ignored on both sides.
        blocked_urls: exact URLs to drop (compared without the scheme, "www." and a trailing "/").
        blocked_patterns: regular expressions searched in the whole URL (case-insensitive).
        banned_words: run the FineWeb-style word checks below.
        hard_words: a URL with one of these as a token (``[a-z0-9]+`` runs of the lower-cased URL) is dropped.
        soft_words: a URL with ``soft_word_threshold`` or more of these tokens is dropped.
        soft_word_threshold: see ``soft_words``.
        subwords: a URL whose lower-cased letters and digits contain one of these is dropped.
    """

    enabled: bool = False  # why: what to block is a policy choice, and text-only inputs have no URL
    blocked_domains: tuple[str, ...] = ()
    blocked_urls: tuple[str, ...] = ()
    blocked_patterns: tuple[str, ...] = ()
    banned_words: bool = False
    hard_words: tuple[str, ...] = DEFAULT_BANNED_WORDS
    soft_words: tuple[str, ...] = DEFAULT_SOFT_WORDS
    soft_word_threshold: int = 2  # why: one soft word ("adult education", "sex differences") is common and fine
    subwords: tuple[str, ...] = DEFAULT_BANNED_SUBWORDS

    def __post_init__(self) -> None:
        assert self.soft_word_threshold >= 1, f"soft_word_threshold must be >= 1, got {self.soft_word_threshold}"


def parse_blocklist(text: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Reads a blocklist file's content: one entry per line.

    A line is a domain (``example.com``), a URL (anything with ``/``: ``https://example.org/page``), or a
    regular expression after ``re:`` (``re:/casino[0-9]*/``). Blank lines and ``#`` comments are skipped.

    Args:
        text: the file's content.

    Returns:
        (domains, urls, patterns), each normalised as ``UrlFilterConfig`` expects.

    Raises:
        ValueError: a ``re:`` line is not a valid regular expression (the message names the line).

    Example:
        >>> parse_blocklist("# spam\\nWWW.Example.com\\nhttps://a.org/x/\\nre:casino[0-9]+")
        (('example.com',), ('a.org/x',), ('casino[0-9]+',))
    """
    domains, urls, patterns = [], [], []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("re:"):
            pattern = line[3:].strip()
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"blocklist line {lineno}: bad regular expression {pattern!r}: {exc}") from exc
            patterns.append(pattern)
        elif "/" in line:
            urls.append(_url_key(line))
        else:
            domains.append(_domain_key(line))
    return tuple(domains), tuple(urls), tuple(patterns)


def _domain_key(domain: str) -> str:
    d = domain.strip().lower().rstrip(".")
    return d[4:] if d.startswith("www.") else d


def _url_key(url: str) -> str:
    u = url.strip().lower()
    u = re.sub(r"^[a-z][a-z0-9+.-]*://", "", u)
    u = u[4:] if u.startswith("www.") else u
    return u.rstrip("/")


class _Compiled:
    """The config's lists as sets and one combined regex, built once per process and config."""

    def __init__(self, cfg: UrlFilterConfig):
        self.domains = frozenset(_domain_key(d) for d in cfg.blocked_domains)
        self.urls = frozenset(_url_key(u) for u in cfg.blocked_urls)
        self.pattern = (
            re.compile("|".join(f"(?:{p})" for p in cfg.blocked_patterns), re.I) if cfg.blocked_patterns else None
        )
        self.hard = frozenset(cfg.hard_words)
        self.soft = frozenset(cfg.soft_words)
        self.subword = re.compile("|".join(map(re.escape, cfg.subwords))) if cfg.subwords else None


@functools.lru_cache(maxsize=8)
def _compiled(cfg: UrlFilterConfig) -> _Compiled:
    return _Compiled(cfg)


def url_drop_reason(url: str | None, cfg: UrlFilterConfig) -> str | None:
    """Why the document at ``url`` is dropped, or None to keep it.

    Args:
        url: the page's URL; None or "" is kept.
        cfg: the stage's config; ``enabled=False`` keeps everything.

    Returns:
        None, or one of ``url_blocked``, ``url_banned_word``, ``url_soft_banned_words``, ``url_banned_subword``
        (checked in that order).

    Example:
        >>> cfg = UrlFilterConfig(enabled=True, blocked_domains=("spam.example",), banned_words=True)
        >>> [url_drop_reason(u, cfg) for u in ["http://a.spam.example/x", "https://xxx-videos.net/", "https://a.org/"]]
        ['url_blocked', 'url_banned_word', None]
    """
    if not cfg.enabled or not url:
        return None
    c = _compiled(cfg)
    lowered = url.strip().lower()
    if c.domains:
        try:
            host = _domain_key(urlsplit(lowered).hostname or "")
        except ValueError:  # e.g. an invalid IPv6 literal
            host = ""
        parts = host.split(".")
        if any(".".join(parts[i:]) in c.domains for i in range(len(parts))):
            return URL_BLOCKED
    if c.urls and _url_key(lowered) in c.urls:
        return URL_BLOCKED
    if c.pattern is not None and c.pattern.search(url):
        return URL_BLOCKED
    if not cfg.banned_words:
        return None
    tokens = _TOKEN_RE.findall(lowered)
    if any(t in c.hard for t in tokens):
        return URL_BANNED_WORD
    if sum(t in c.soft for t in tokens) >= cfg.soft_word_threshold:
        return URL_SOFT_BANNED_WORDS
    if c.subword is not None and c.subword.search("".join(tokens)):
        return URL_BANNED_SUBWORD
    return None


def url_drop_reasons(urls: pd.Series, cfg: UrlFilterConfig) -> pd.Series:
    """``url_drop_reason`` over a batch: the function the Spark pandas UDF calls.

    Args:
        urls: (n,) URLs (object dtype; None/NaN allowed).
        cfg: the stage's config.

    Returns:
        (n,) object Series aligned with ``urls``: None (kept) or the drop reason.
    """
    return pd.Series(
        [url_drop_reason(u if isinstance(u, str) else None, cfg) for u in urls], index=urls.index, dtype=object
    )
