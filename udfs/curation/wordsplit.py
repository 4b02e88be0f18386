"""Word and sentence splitting for the quality filters, in two modes.

- ``fast`` (default): one precompiled regular expression that approximates spaCy's blank English tokenizer
  (the one datatrove uses for English): a whitespace chunk is split off its leading/trailing punctuation,
  clitics ("'s", "'re", "'t") become their own tokens, hyphens between letters and commas between letters
  split, while numbers ("1,000", "3.14", "12:30"), URLs, e-mails, "U.S.", "e.g." and lower-case single letters
  with a period stay whole; runs of two or more marks inside a chunk (a="b">c) do not split. Punctuation
  tokens count as words, as in datatrove. Measured on the 1,697 C4 and Common Crawl sample documents, token
  counts differ from spaCy's by 0.4 % on average (spaCy splits "don't" into "do" + "n't", we into "don" +
  "'t": same count and total length), at ~7.5x the speed of spaCy's tokenizer.
- ``parity``: spaCy ``blank("en")`` plus its rule-based ``sentencizer``, exactly as datatrove's
  ``SpaCyTokenizer``; spaCy is imported lazily and built once per process.

Sentence counting (C4's "fewer than 5 sentences") follows spaCy's sentencizer rule in both modes: a new
sentence starts at the first non-punctuation token after a token that is one of
``_charsets.SENTENCIZER_PUNCT`` ("." "!" "?" and their equivalents in other scripts).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Literal

from udfs.curation._charsets import SENTENCIZER_PUNCT
from udfs.curation._unicode import char_class

Mode = Literal["fast", "parity"]
MODES = ("fast", "parity")


@functools.lru_cache(maxsize=1)
def _fast_token_re() -> re.Pattern:
    """The fast tokenizer's pattern, compiled on first use (its Unicode classes take ~0.2 s to build)."""
    m, letter, lower, upper = char_class("M"), char_class("L"), char_class("l"), char_class("u")
    w = rf"[\w{m}]"  # word characters, combining marks included (Devanagari, Burmese, ... vowel signs)
    not_w = rf"(?![\w{m}])"
    clitic = r"['’](?:[sS]|re|RE|ve|VE|ll|LL|[dD]|[mM]|[tT])" + not_w
    # spaCy tokenizer exceptions that keep their period (a subset of spacy.lang.en.tokenizer_exceptions).
    abbrev = (
        r"(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|Inc|Ltd|Co|co|Corp|Prof|Gen|Gov|Rep|Sen|Rev|Mt|Adm|Bros|Messrs"
        r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\."
    )
    # What may glue two word-character runs into one token (anything spaCy's English infix rules do not split).
    join = (
        rf"(?:(?!{clitic})['’]"  # O'Neill, rock'n'roll; not the clitics
        rf"|(?<![{lower}])\.(?!\.)|\.(?![{upper}.])"  # periods split only lower.Upper ("end.Start") and "..."
        rf"|(?<![{letter}]),|,(?![{letter}])"  # commas split only letter,letter
        rf"|[:<>=/](?![{letter}])"  # 12:30, 1/2; but a:b, a/b split
        r"|(?<!\d)-(?=\d)"  # COVID-19; but well-known and 2-3 split
        rf"|(?![-–—]+[\w{m}])(?:[^\s\w{m}.…]|\.(?!\.)){{2,}}"  # runs of 2+ marks never split: a="b">c, a->b
        rf"|[^\s\w{m}.,:<>=/'’\-…—–])"  # other single marks do not split: foo(bar, a;b, a@b
    )
    return re.compile(
        r"(?:https?://|www\.)\S+?(?=[.,;:!?)\]}'\"’”]*(?:\s|$))"  # URLs keep their inner punctuation
        rf"|(?:[{letter}]\.){{2,}}{not_w}"  # U.S. e.g. a.m.
        rf"|{abbrev}{not_w}"
        rf"|(?:[{lower}]|(?<!\w)[{upper}])\.(?![\w.])"  # "a." is an exception; "A." is not split by the suffix rule
        r"|(?:(?<!\S)(?:[-@~^|\\/]|\+(?=\d))+)?"  # non-prefix characters at the start of a chunk: -97.4, @user
        rf"{w}+(?:{join}{w}+)*"
        r"(?:[-=/@~^|\\+]+(?!\S))?"  # non-suffix characters at the end of a chunk: foo-, x==
        rf"|{clitic}|''|\.{{2,}}|[-~^|\\/@]+|\S"
    )


def split_words_fast(text: str) -> list[str]:
    """Splits text into word and punctuation tokens with the fast regex (no spaCy).

    Args:
        text: any string; whitespace (including newlines) only separates tokens.

    Returns:
        The tokens in order; punctuation marks are tokens of their own, as in spaCy.

    Example:
        >>> split_words_fast("It's well-known: 1,000 U.S. dollars.")
        ['It', "'s", 'well', '-', 'known', ':', '1,000', 'U.S.', 'dollars', '.']
    """
    return _fast_token_re().findall(text)


@functools.lru_cache(maxsize=1)
def _spacy_english():
    """spaCy's blank English pipeline with the rule-based sentencizer, built once per process."""
    try:
        import spacy
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("mode='parity' needs spaCy: pip install spacy (no model download is needed)") from e
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


def _spacy_doc(text: str, with_sentences: bool):
    nlp = _spacy_english()
    nlp.max_length = max(nlp.max_length, len(text) + 10)
    return nlp(text) if with_sentences else nlp.make_doc(text)


def split_words(text: str, mode: Mode = "fast") -> list[str]:
    """Splits text into words the way the Gopher and FineWeb filters count them.

    Args:
        text: the document text.
        mode: "fast" (regex approximation) or "parity" (spaCy blank English, as datatrove).

    Returns:
        Non-empty, stripped tokens; punctuation tokens included.

    Raises:
        ValueError: unknown mode.
        ImportError: mode "parity" without spaCy installed.
    """
    if mode == "fast":
        return _fast_token_re().findall(text)
    if mode == "parity":
        tokens = (t.text.strip() for t in _spacy_doc(text, with_sentences=False))
        return [t for t in tokens if t]
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _is_punct(token: str) -> bool:
    """spaCy's ``is_punct``: every character is in a Unicode punctuation category (P*)."""
    return all(unicodedata.category(ch)[0] == "P" for ch in token)


def count_sentences(text: str, mode: Mode = "fast") -> int:
    """Counts sentences with spaCy's sentencizer rule (at least 1 for any text, as datatrove's splitter).

    Args:
        text: usually one line of a document (C4 counts sentences per kept line).
        mode: "fast" (rule applied to the fast tokens) or "parity" (spaCy itself).

    Returns:
        The number of sentences, >= 1.

    Example:
        >>> count_sentences("Hello there. Mr. Smith said hi! Fine.")
        3
    """
    if mode == "parity":
        return max(1, sum(1 for _ in _spacy_doc(text, with_sentences=True).sents))
    if mode != "fast":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return count_sentences_in_tokens(_fast_token_re().findall(text))


def count_sentences_in_tokens(tokens: list[str]) -> int:
    """spaCy's sentencizer rule on already split tokens (see ``count_sentences``).

    Args:
        tokens: the fast tokens of one line (``split_words_fast``).

    Returns:
        The number of sentences, >= 1.
    """
    n = 1
    seen_period = False
    for tok in tokens:
        if tok in SENTENCIZER_PUNCT:
            seen_period = True
        elif seen_period and not _is_punct(tok):
            n += 1
            seen_period = False
    return n
