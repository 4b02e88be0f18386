"""Normalisation: NFC, control characters, whitespace, HTML detection and extraction, optional ftfy."""

from __future__ import annotations

import pytest

from udfs.curation.normalize import (
    NormalizeConfig,
    html_to_text,
    looks_like_html,
    normalize_text,
)

NORMALIZE_CASES = [
    pytest.param("Cafe\u0301", "Caf\u00e9", id="nfc"),
    pytest.param("a\x00b\x07c\x1bd\x7fe\x9ff", "abcdef", id="control_chars"),
    pytest.param("tab\tstays\nnewline stays", "tab\tstays\nnewline stays", id="tab_and_newline_kept"),
    pytest.param("\ufeffzero\u200bwidth soft\u00adhyphen", "zerowidth softhyphen", id="invisible_chars"),
    pytest.param("emoji\u200d\U0001f468 keeps ZWJ", "emoji\u200d\U0001f468 keeps ZWJ", id="zwj_kept"),
    pytest.param("many    spaces\u00a0and\u3000nbsp", "many spaces and nbsp", id="space_runs"),
    pytest.param("  lead and trail  \n  second line \t", "lead and trail\nsecond line", id="trim_lines"),
    pytest.param("windows\r\nmac\rline\u2028sep", "windows\nmac\nline\nsep", id="newline_kinds"),
    pytest.param("a\n\n\n\n\n\nb\n\n\nc\n\nd", "a\n\n\nb\n\n\nc\n\nd", id="blank_lines_capped_at_two"),
    pytest.param("a\n   \n \t \n\n\nb", "a\n\n\nb", id="whitespace_only_lines_are_blank"),
    pytest.param("  \n\n  ", "", id="only_whitespace"),
]


@pytest.mark.parametrize("raw, expected", NORMALIZE_CASES)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == (expected, False)


def test_normalize_switches():
    raw = "Cafe\u0301  x\x07 \n\n\n\n\ny "
    assert normalize_text(raw, NormalizeConfig(enabled=False)) == (raw, False)
    assert normalize_text(raw, NormalizeConfig(nfc=False))[0] == "Cafe\u0301 x\n\n\ny"
    assert normalize_text(raw, NormalizeConfig(remove_control_chars=False))[0] == "Caf\u00e9 x\x07\n\n\ny"
    assert normalize_text(raw, NormalizeConfig(max_blank_lines=None))[0] == "Caf\u00e9 x\n\n\n\n\ny"
    assert normalize_text(raw, NormalizeConfig(max_blank_lines=0))[0] == "Caf\u00e9 x\ny"
    assert normalize_text("a   b", NormalizeConfig(collapse_spaces=False))[0] == "a   b"
    assert normalize_text(" a \n b ", NormalizeConfig(trim_lines=False))[0] == "a \n b"
    assert normalize_text(None) == ("", False)


PAGE = """<!DOCTYPE html><html><head><title>Library news</title><style>p {color: red}</style>
<script>var tracking = 1;</script></head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/about">About us</a></li>
<li><a href="/c">Contact</a></li></ul></nav>
<article><h1>The library budget</h1>
<p>The committee met on Tuesday to review the budget for the new public library.</p>
<p>Several members argued that the reading rooms should stay open later in the evening.</p>
<p>Others worried about the cost of heating such a large building during the winter months.</p>
</article><footer>Copyright 2019. All rights reserved.</footer></body></html>"""


def test_html_detection():
    assert looks_like_html(PAGE)
    assert looks_like_html("<p>one</p><p>two</p><div>three</div><br><span>four</span>")
    assert not looks_like_html("If x < y and y > z then x < z.")
    assert not looks_like_html("A <b>bold</b> claim in otherwise plain text.")
    assert not looks_like_html("plain text")


def test_html_is_converted_to_text():
    text, extracted = normalize_text(PAGE)
    assert extracted
    assert "The committee met on Tuesday to review the budget for the new public library." in text
    assert "<p>" not in text and "var tracking" not in text and "color: red" not in text
    assert "About us" not in text and "Copyright" not in text  # boilerplate (nav, footer) removed
    raw_text, extracted = normalize_text(PAGE, NormalizeConfig(html="never"))
    assert not extracted and "<p>" in raw_text


def test_html_always_and_full_page_text():
    text = html_to_text(PAGE, main_content=False)
    assert "Home" in text and "Copyright 2019" in text  # navigation and footer kept without main_content
    assert normalize_text("<b>bold</b> words", NormalizeConfig(html="always")) == ("bold words", True)


def test_unknown_extractor_is_an_error():
    with pytest.raises(ValueError, match="extractor must be"):
        html_to_text(PAGE, extractor="nope")


def test_fix_mojibake_with_ftfy():
    pytest.importorskip("ftfy")
    broken = "The caf\u00c3\u00a9 is open."  # "café" decoded as Latin-1
    assert normalize_text(broken, NormalizeConfig(fix_mojibake=True))[0] == "The caf\u00e9 is open."
    assert normalize_text(broken)[0] == broken  # off by default
