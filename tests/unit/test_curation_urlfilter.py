"""udfs/curation/urlfilter.py: blocklist parsing and the exact drop reason for each kind of URL."""

import pandas as pd
import pytest

from model.config import config_from_dict
from udfs.curation.curate import CurationConfig
from udfs.curation.urlfilter import UrlFilterConfig, parse_blocklist, url_drop_reason, url_drop_reasons

BLOCKLIST = """
# a comment, then a domain, a URL and a pattern
casino.example
WWW.Spam.Example.org.
https://www.news.example.com/paid-post/
re:/(?:free|cheap)-?pills?/
"""
DOMAINS, URLS, PATTERNS = parse_blocklist(BLOCKLIST)
CFG = UrlFilterConfig(
    enabled=True, blocked_domains=DOMAINS, blocked_urls=URLS, blocked_patterns=PATTERNS, banned_words=True
)


def test_parse_blocklist_normalises_each_kind():
    assert DOMAINS == ("casino.example", "spam.example.org")
    assert URLS == ("news.example.com/paid-post",)
    assert PATTERNS == ("/(?:free|cheap)-?pills?/",)
    with pytest.raises(ValueError, match="blocklist line 2: bad regular expression"):
        parse_blocklist("ok.example\nre:(unclosed")


@pytest.mark.parametrize(
    "url, reason",
    [
        ("https://casino.example/", "url_blocked"),
        ("http://poker.casino.example:8080/a", "url_blocked"),  # subdomain of a blocked domain
        ("https://www.spam.example.org/x", "url_blocked"),
        ("http://news.example.com/paid-post", "url_blocked"),  # scheme, www. and trailing / ignored
        ("https://shop.example/buy/cheap-pills/", "url_blocked"),
        ("https://notcasino.example/", None),  # a suffix of the name is not a subdomain
        ("http://news.example.com/paid-post/2", None),
        ("https://example.net/xxx-clips", "url_banned_word"),
        ("https://example.net/adult-education", None),  # one soft word is fine
        ("https://example.net/sexy-nude-photos", "url_soft_banned_words"),
        ("https://www.mypornhubmirror.net/", "url_banned_subword"),
        ("https://en.wikipedia.org/wiki/Sussex", None),  # "sex" inside a word is not a token
        (None, None),
        ("", None),
    ],
)
def test_url_drop_reason(url, reason):
    assert url_drop_reason(url, CFG) == reason


def test_off_by_default_and_words_only_when_asked():
    assert CurationConfig().url_filter.enabled is False
    assert url_drop_reason("https://casino.example/xxx", UrlFilterConfig()) is None
    lists_only = UrlFilterConfig(enabled=True, blocked_domains=DOMAINS)
    assert url_drop_reason("https://example.net/xxx-clips", lists_only) is None


def test_batch_keeps_index_and_config_from_dict():
    urls = pd.Series(["https://casino.example/", None, "https://a.org/"], index=[7, 8, 9])
    got = url_drop_reasons(urls, CFG)
    assert got.index.tolist() == [7, 8, 9] and got.tolist() == ["url_blocked", None, None]
    cfg = config_from_dict(CurationConfig, {"url_filter": {"enabled": True, "blocked_domains": ["casino.example"]}})
    assert cfg.url_filter.blocked_domains == ("casino.example",)
    with pytest.raises(ValueError, match="allowed keys"):
        config_from_dict(CurationConfig, {"url_filter": {"domains": []}})
