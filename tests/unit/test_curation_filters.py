"""Quality filters: every rule fires on a text built to trip it and stays quiet on clean prose (exact reasons)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from udfs.curation.filters import (
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    c4_clean,
    c4_clean_with_words,
    fineweb_quality,
    gopher_quality,
    gopher_repetition,
)
from udfs.curation.wordsplit import count_sentences, split_words, split_words_fast

# Clean English prose: 8 distinct lines, ~110 words, every line ends with a period.
BASE_LINES = [
    "The committee met on Tuesday to review the budget for the new public library.",
    "Several members argued that the reading rooms should stay open later in the evening.",
    "Others worried about the cost of heating such a large building during the winter months.",
    "After a long discussion, they agreed to publish a draft plan before the end of March.",
    "Local schools have already offered to share their computers with younger visitors.",
    "A small group of volunteers will also help to organise weekend events for families.",
    "The mayor said she was pleased with the progress and thanked everyone for their patience.",
    "Residents can send written comments to the town hall until the middle of next month.",
]
BASE = "\n".join(BASE_LINES)


def _filler(n: int, prefix: str = "filler") -> list[str]:
    """n distinct words that repeat no n-gram (letters only, 8+ characters)."""
    return [f"{prefix}{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(n)]


# ----------------------------------------------------------------------------------------------------------------
# Gopher quality
# ----------------------------------------------------------------------------------------------------------------

NO_STOP_WORDS = (
    "Apples bananas cherries dates elderberries figs grapes honeydew kiwis lemons mangoes nectarines oranges "
    "papayas quinces raspberries strawberries tangerines watermelons apricots blueberries cranberries currants "
    "guavas lychees limes melons peaches pears plums pomegranates coconuts pineapples persimmons olives "
    "tomatoes cucumbers carrots onions garlic peppers lettuce spinach cabbage broccoli turnips radishes "
    "potatoes celery leeks parsley"
)  # 51 words, none of Gopher's stop words

GOPHER_QUALITY_CASES = [
    pytest.param(BASE, None, id="clean_prose_kept"),
    pytest.param("The cat sat on the mat with the dog.", "gopher_short_doc", id="short_doc"),
    pytest.param(" ".join(["to be or it is an ox"] * 12), "gopher_below_avg_threshold", id="short_words"),
    pytest.param(
        " ".join(["incomprehensibilities", "the", "counterrevolutionaries", "and"] * 20),
        "gopher_above_avg_threshold",
        id="long_words",
    ),
    pytest.param(BASE + "\n" + " ".join(["#tag"] * 30), "gopher_too_many_hashes", id="hashes"),
    pytest.param(BASE + "\n" + " ".join(["wait..."] * 30), "gopher_too_many_ellipsis", id="ellipsis"),
    pytest.param("\n".join("- " + line for line in BASE_LINES), "gopher_too_many_bullets", id="bullets"),
    pytest.param(
        "\n".join(line[:-1] + "..." if i < 3 else line for i, line in enumerate(BASE_LINES)),
        "gopher_too_many_end_ellipsis",
        id="end_ellipsis",
    ),
    pytest.param(
        BASE + "\n" + " ".join(str(1000 + 7 * i) for i in range(60)), "gopher_below_alpha_threshold", id="numbers"
    ),
    pytest.param(NO_STOP_WORDS, "gopher_enough_stop_words", id="no_stop_words"),
    pytest.param(NO_STOP_WORDS + " The With", "gopher_enough_stop_words", id="stop_words_are_case_sensitive"),
    pytest.param(NO_STOP_WORDS + " the with", None, id="two_stop_words_enough"),
]


@pytest.mark.parametrize("text, reason", GOPHER_QUALITY_CASES)
def test_gopher_quality_reasons(text, reason):
    got, signals = gopher_quality(text, GopherQualityConfig(), split_words(text))
    assert got == reason, signals


def test_gopher_quality_long_doc_and_switches():
    words = split_words(BASE)
    assert gopher_quality(BASE, GopherQualityConfig(max_doc_words=50), words)[0] == "gopher_long_doc"
    short = "The cat sat on the mat with the dog."
    cfg = GopherQualityConfig(min_doc_words=None)  # rule switched off: the next rule decides
    assert gopher_quality(short, cfg, split_words(short))[0] is None


def test_gopher_quality_signals_count_punctuation_tokens_as_words():
    text = "Hello, world. It is a test of the rules."
    _, s = gopher_quality(text, GopherQualityConfig(), split_words(text))
    assert s["n_words"] == 12  # 9 words + 3 punctuation tokens, as spaCy counts them
    assert s["n_non_symbol_words"] == 9
    assert s["alpha_words_ratio"] == pytest.approx(9 / 12)
    assert s["mean_word_length"] == pytest.approx(len("HelloworldItisatestoftherules") / 9)
    assert s["n_stop_words"] == 2  # "of", "the"


# ----------------------------------------------------------------------------------------------------------------
# Gopher repetition
# ----------------------------------------------------------------------------------------------------------------


def _segments(core: str, n_segments: int, filler_per_segment: int) -> str:
    """One line: n segments of distinct filler words followed by the same ``core`` phrase."""
    filler = _filler(n_segments * filler_per_segment)
    parts = []
    for i in range(n_segments):
        parts += filler[i * filler_per_segment : (i + 1) * filler_per_segment] + [core]
    return " ".join(parts)


LONG_LINE = " ".join(_filler(60, "longline"))
REPEATED_SENTENCE = " ".join(_filler(20, "repeated"))
GOPHER_REPETITION_CASES = [
    pytest.param(BASE, None, id="clean_prose_kept"),
    pytest.param(
        "\n\n".join([BASE_LINES[0], BASE_LINES[1], BASE_LINES[0], BASE_LINES[0]]),
        "gopher_rep_dup_para_frac",
        id="dup_paragraphs",
    ),
    pytest.param(
        "\n\n".join(BASE_LINES + [LONG_LINE, LONG_LINE]), "gopher_rep_dup_para_char_frac", id="dup_paragraph_chars"
    ),
    pytest.param(
        "\n".join([BASE_LINES[0], BASE_LINES[1], BASE_LINES[0], BASE_LINES[0], BASE_LINES[2]]),
        "gopher_rep_dup_line_frac",
        id="dup_lines",
    ),
    pytest.param("\n".join(BASE_LINES + [LONG_LINE, LONG_LINE]), "gopher_rep_dup_line_char_frac", id="dup_line_chars"),
    pytest.param(" ".join(["big dog"] * 40), "gopher_rep_top_2_gram", id="top_2_gram"),
    pytest.param(_segments("xxxxxxxxxx y zzzzzzzzzz", 10, 6), "gopher_rep_top_3_gram", id="top_3_gram"),
    pytest.param(_segments("aaaaaaaaaa b c dddddddddd", 10, 8), "gopher_rep_top_4_gram", id="top_4_gram"),
    pytest.param(
        " ".join(_filler(40, "lead") + REPEATED_SENTENCE.split() + _filler(10, "mid") + REPEATED_SENTENCE.split()),
        "gopher_rep_duplicated_5_n_grams",
        id="dup_5_grams",
    ),
]


@pytest.mark.parametrize("text, reason", GOPHER_REPETITION_CASES)
def test_gopher_repetition_reasons(text, reason):
    got, signals = gopher_repetition(text, GopherRepetitionConfig(), split_words(text))
    assert got == reason, signals


def test_gopher_repetition_switch_and_signal_names():
    text = " ".join(["big dog"] * 40)
    cfg = GopherRepetitionConfig(top_n_grams=(), dup_n_grams=((10, 0.10),))
    reason, signals = gopher_repetition(text, cfg, split_words(text))
    assert reason == "gopher_rep_duplicated_10_n_grams"
    assert set(signals) == {
        "rep_dup_para_frac",
        "rep_dup_para_char_frac",
        "rep_dup_line_frac",
        "rep_dup_line_char_frac",
        "rep_dup_10_gram_char_frac",
    }


def _reference_repetition(text: str, words: list[str], cfg: GopherRepetitionConfig) -> dict[str, float]:
    """A deliberately naive, string-based implementation of Gopher's repetition signals (datatrove's logic)."""
    import re

    def dups(items):
        seen, n, chars = set(), 0, 0
        for x in items:
            if x in seen:
                n, chars = n + 1, chars + len(x)
            else:
                seen.add(x)
        return n, chars

    out = {}
    paras = re.split(r"\n{2,}", text.strip())
    n, c = dups(paras)
    out["rep_dup_para_frac"], out["rep_dup_para_char_frac"] = n / len(paras), c / len(text)
    lines = re.split(r"\n+", text)
    n, c = dups(lines)
    out["rep_dup_line_frac"], out["rep_dup_line_char_frac"] = n / len(lines), c / len(text)
    for k, _ in cfg.top_n_grams:
        grams = [" ".join(words[i : i + k]) for i in range(len(words) - k + 1)]
        if grams:
            gram, count = Counter(grams).most_common(1)[0]
            out[f"rep_top_{k}_gram_char_frac"] = len(gram) * count / len(text)
        else:
            out[f"rep_top_{k}_gram_char_frac"] = 0.0
    for k, _ in cfg.dup_n_grams:
        seen, idx, rep = set(), 0, 0
        while idx < len(words) - k + 1:
            gram = tuple(words[idx : idx + k])
            if gram in seen:
                rep += sum(map(len, gram))
                idx += k
            else:
                seen.add(gram)
                idx += 1
        out[f"rep_dup_{k}_gram_char_frac"] = rep / len(text)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_gopher_repetition_signals_match_naive_reference(seed):
    import random

    rng = random.Random(seed)
    vocab = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "ran", "away", "quickly", ".", ",", "dog"]
    lines = []
    for _ in range(rng.randint(3, 30)):
        line = " ".join(rng.choice(vocab[: rng.randint(3, len(vocab))]) for _ in range(rng.randint(1, 25)))
        lines.append(line)
        if rng.random() < 0.3:
            lines.append(rng.choice(lines))  # repeated lines and paragraphs
        if rng.random() < 0.3:
            lines.append("")
    text = "\n".join(lines).strip() or "x"
    words = split_words(text)
    cfg = GopherRepetitionConfig()
    _, signals = gopher_repetition(text, cfg, words)
    expected = _reference_repetition(text, words, cfg)
    assert signals == pytest.approx(expected)


# ----------------------------------------------------------------------------------------------------------------
# C4
# ----------------------------------------------------------------------------------------------------------------


def test_c4_line_cleaning_rewrites_text():
    text = "\n".join(
        [
            "  The first good line ends with a period.  ",
            "Too short.",
            "This line has no terminal punctuation",
            "Please enable JavaScript to see this page correctly.",
            "This site uses cookies to improve your experience.",
            "Read our Privacy Policy before you continue reading.",
            "A citation mark[1] and an edit link[edit] are removed[citation needed].",
            "A line with a " + "x" * 1001 + " word is dropped.",
            "And a line that trails off...",
            '"A quoted line is fine," she said.',
            "Is a question a sentence?",
            "Yes! It is!",
        ]
    )
    cleaned, reason, signals = c4_clean(text, C4Config())
    assert cleaned == (
        "The first good line ends with a period.\n"
        "A citation mark and an edit link are removed.\n"
        '"A quoted line is fine," she said.\n'
        "Is a question a sentence?\n"
        "Yes! It is!"
    )
    assert reason is None
    assert signals == {"c4_lines": 12.0, "c4_lines_kept": 5.0, "c4_sentences": 6.0}


C4_DOC_CASES = [
    pytest.param(BASE, None, id="clean_prose_kept"),
    pytest.param(BASE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", "c4_lorem_ipsum", id="lorem"),
    pytest.param(BASE + "\nThe function returns {x} when the input is valid.", "c4_curly_bracket", id="curly"),
    # "{" on a line that an earlier line rule drops does not count (datatrove's order of checks)
    pytest.param(BASE + "\nfunction f() {", None, id="curly_on_dropped_line"),
    pytest.param("\n".join(BASE_LINES[:4]), "c4_too_few_sentences", id="four_sentences"),
    pytest.param(
        "One sentence here. Two sentences here. Three here.\nFour is here! Five is here?",
        None,
        id="five_sentences_on_two_lines",
    ),
]


@pytest.mark.parametrize("text, reason", C4_DOC_CASES)
def test_c4_document_reasons(text, reason):
    assert c4_clean(text, C4Config())[1] == reason


def test_c4_switches():
    no_punct = "\n".join(line.rstrip(".") for line in BASE_LINES)
    assert c4_clean(no_punct, C4Config())[0] == ""
    kept, reason, _ = c4_clean(no_punct, C4Config(filter_no_terminal_punct=False))
    assert kept == no_punct and reason is None
    js = BASE + "\nWe use javascript for the menu."
    assert c4_clean(js, C4Config(filter_javascript=False))[0] == js
    assert c4_clean(BASE + "\nLorem ipsum dolor sit amet.", C4Config(filter_lorem_ipsum=False))[1] is None
    assert c4_clean("\n".join(BASE_LINES[:2]), C4Config(min_num_sentences=None))[1] is None
    assert c4_clean("Two words.\n" + BASE, C4Config(min_words_per_line=None))[0].startswith("Two words.")
    cited = "Cited claim[1] here.\n" + BASE
    assert c4_clean(cited, C4Config(remove_citations=False))[0].startswith("Cited claim[1] here.")


def test_c4_words_collected_equal_words_of_cleaned_text():
    text = BASE + "\nShort.\nA citation[2] stays out of the words, see e.g. U.S. law.\n- no punct"
    cleaned, _, _, words = c4_clean_with_words(text, C4Config(), "fast")
    assert words == split_words_fast(cleaned)


def test_sentence_count_follows_spacy_sentencizer_rule():
    assert count_sentences("Mr. Smith went to Washington. He said hi!") == 2
    assert count_sentences("Wait... what?") == 1  # "..." is not a sentence-final token, "?" ends the line
    assert count_sentences('He said "Stop." Then he left.') == 2


# ----------------------------------------------------------------------------------------------------------------
# FineWeb
# ----------------------------------------------------------------------------------------------------------------

FINEWEB_CASES = [
    pytest.param(BASE, None, id="clean_prose_kept"),
    pytest.param("\n \n", "fineweb_empty", id="empty"),
    pytest.param("\n".join(line.rstrip(".") for line in BASE_LINES), "fineweb_line_punct_ratio", id="no_punct"),
    pytest.param(
        "\n".join([f"Buy item {w} now." for w in _filler(10)] + BASE_LINES[:2]),
        "fineweb_short_line_ratio",
        id="short_lines",
    ),
    pytest.param(BASE + "\n" + BASE_LINES[3], "fineweb_char_dup_ratio", id="duplicated_line"),
    pytest.param(
        "\n".join(f"Incomprehensibility{w} notwithstandingly." for w in _filler(12)),
        "fineweb_list_ratio",
        id="list_like",
    ),
]


@pytest.mark.parametrize("text, reason", FINEWEB_CASES)
def test_fineweb_reasons(text, reason):
    assert fineweb_quality(text, FineWebConfig(), split_words(text))[0] == reason


def test_fineweb_switches():
    no_punct = "\n".join(line.rstrip(".") for line in BASE_LINES)
    words = split_words(no_punct)
    assert fineweb_quality(no_punct, FineWebConfig(line_punct_thr=None), words)[0] is None
    assert fineweb_quality(no_punct, FineWebConfig(line_punct_exclude_zero=True), words)[0] is None
    dup = BASE + "\n" + BASE_LINES[3]
    assert fineweb_quality(dup, replace(FineWebConfig(), char_duplicates_ratio=None), split_words(dup))[0] is None
