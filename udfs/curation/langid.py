"""Offline language identification with the model that ships inside the ``langid`` package (langid.py 1.1.6).

Why langid.py: its naive-Bayes model over byte n-grams (97 languages, ISO 639-1 codes) is embedded in the
installed package (``langid/langid.py``, ~5 MB installed), so nothing is downloaded at run time; it depends
only on numpy and works with numpy 2. fastText's lid.176 (FineWeb's choice) must be downloaded, so it is
not an option here.

We use langid's model tables but score differently: langid walks a byte automaton per document, maps the
visited states to a 7,480-feature vector and multiplies it with the (features x 97) log-probability matrix
one document at a time. We fold the feature step into the model once per process (state -> summed log
probabilities, (~8.7k states x 97)), count visited states per document (still a Python loop over bytes), and
score a chunk of documents with one matrix product. Same languages and scores as ``langid.classify``
(checked on 387 UDHR texts and 697 Common Crawl pages), ~13x faster: ~1,600 vs ~125 documents per CPU-second
on those texts. Model load ~1 s once per process. Scores are the normalised posterior probability of the
top language, in [0, 1].
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "LangIdConfig",
    "identify_languages",
    "identify_languages_series",
    "keep_languages_from",
    "lang_drop_reason",
]


@dataclass(frozen=True)
class LangIdConfig:
    """Language identification and the language keep rule.

    Attributes:
        enabled: False skips identification (``lang`` is None, ``lang_score`` NaN, nothing dropped).
        keep_languages: ISO 639-1 codes to keep (e.g. ("en",)); empty keeps every language (datatrove's
            default, languages=None).
        min_score: drop documents whose top-language probability is below this (datatrove/FineWeb: 0.65).
        max_chars: classify only the first this many characters (speed on very long documents); None = all.
    """

    enabled: bool = True
    keep_languages: tuple[str, ...] = ()
    min_score: float | None = 0.65  # why: FineWeb's language_threshold
    max_chars: int | None = None


_SCORE_CHUNK = 256  # documents scored per matrix product: (256, ~8.7k states) float64 = 17 MB


@functools.lru_cache(maxsize=1)
def _model() -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """langid.py's model, loaded once per process (~1 s), in the form the batched scorer uses.

    Returns:
        (next_move, state_log_probs, class_log_prior, classes): ``next_move`` is the byte automaton's
        transition table as a list (state << 8 | byte -> state); ``state_log_probs`` (n_states, n_langs) is the
        sum of log P(feature | lang) over the features each automaton state emits, so that a document's log
        posterior is (state visit counts) @ state_log_probs + class_log_prior; ``classes`` (n_langs,) the codes.
    """
    from langid.langid import LanguageIdentifier, model

    ident = LanguageIdentifier.from_modelstring(model, norm_probs=False)
    next_move = list(ident.tk_nextmove)
    ptc = np.asarray(ident.nb_ptc, dtype=np.float64)  # (n_features, n_langs) log P(feature | lang)
    n_states = max(max(next_move), max(ident.tk_output)) + 1
    state_log_probs = np.zeros((n_states, ptc.shape[1]), dtype=np.float64)  # (n_states, n_langs)
    for state, features in ident.tk_output.items():
        state_log_probs[state] = ptc[list(features)].sum(axis=0)  # a feature listed twice counts twice
    prior = np.asarray(ident.nb_pc, dtype=np.float64)  # (n_langs,) log P(lang)
    return next_move, state_log_probs, prior, np.asarray(ident.nb_classes, dtype=object)


def _state_counts(text: str, next_move: list[int], n_states: int) -> np.ndarray:
    """How often the byte automaton enters each state while reading the UTF-8 text: (n_states,) int64."""
    state = 0
    visited = []
    visit = visited.append
    for byte in text.encode("utf-8"):
        state = next_move[(state << 8) + byte]
        visit(state)
    return np.bincount(np.asarray(visited, dtype=np.int64), minlength=n_states)


def identify_languages(texts: Iterable[str | None], max_chars: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Identifies the language of each text.

    Same decisions and scores as ``langid.classify`` with normalised probabilities (up to float rounding), but
    the scoring of the whole batch is one matrix product over automaton-state counts.

    Args:
        texts: documents; None (or NaN) and texts without any letter or digit get no language.
        max_chars: classify only this many leading characters; None classifies the whole text.

    Returns:
        (langs, scores): ``langs`` is an object array of ISO 639-1 codes (None where no language), ``scores``
        a float64 array of top-language probabilities in [0, 1] (0.0 where no language). Both shape (n,).

    Example:
        >>> langs, scores = identify_languages(["The cat sat on the mat and looked at the dog.", ""])
        >>> langs.tolist(), bool(scores[0] > 0.9), float(scores[1])
        (['en', None], True, 0.0)
    """
    texts = list(texts)
    n = len(texts)
    langs = np.full(n, None, dtype=object)
    scores = np.zeros(n, dtype=np.float64)
    todo = [i for i, t in enumerate(texts) if isinstance(t, str) and _has_alnum(t)]
    if not todo:
        return langs, scores
    next_move, state_log_probs, prior, classes = _model()
    n_states = state_log_probs.shape[0]
    log_post = np.empty((len(todo), len(prior)), dtype=np.float64)  # (m, L) unnormalised log posterior
    for c0 in range(0, len(todo), _SCORE_CHUNK):
        chunk = todo[c0 : c0 + _SCORE_CHUNK]
        counts = np.stack([_state_counts(_clip(texts[i], max_chars), next_move, n_states) for i in chunk])  # (c, S)
        log_post[c0 : c0 + len(chunk)] = counts.astype(np.float64) @ state_log_probs + prior
    log_post -= log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post)
    post /= post.sum(axis=1, keepdims=True)
    best = post.argmax(axis=1)
    langs[todo] = classes[best]
    scores[todo] = post[np.arange(len(todo)), best]
    return langs, scores


def _clip(text: str, max_chars: int | None) -> str:
    return text if max_chars is None else text[:max_chars]


def _has_alnum(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def lang_drop_reason(lang: str | None, score: float, cfg: LangIdConfig) -> str | None:
    """The language rule's decision for one document.

    Args:
        lang: the identified language (None when none was found).
        score: its probability in [0, 1].
        cfg: keep-list and minimum score.

    Returns:
        ``lang_not_kept`` when a keep-list is set and ``lang`` is not in it (None never is),
        ``lang_low_score`` when ``score < min_score``, else None.
    """
    if cfg.keep_languages and lang not in cfg.keep_languages:
        return "lang_not_kept"
    if cfg.min_score is not None and score < cfg.min_score:
        return "lang_low_score"
    return None


def identify_languages_series(texts: pd.Series, cfg: LangIdConfig = LangIdConfig()) -> pd.DataFrame:
    """Batched language ID plus the keep rule, for a pandas UDF.

    Args:
        texts: (n,) strings (None allowed).
        cfg: the language config.

    Returns:
        DataFrame (n rows, same index) with ``lang`` (object: str or None), ``lang_score`` (float64) and
        ``drop_reason`` (object: None or ``lang_not_kept`` / ``lang_low_score``).
    """
    langs, scores = identify_languages(texts.tolist(), cfg.max_chars)
    reasons = [lang_drop_reason(lg, sc, cfg) for lg, sc in zip(langs, scores)]
    return pd.DataFrame({"lang": langs, "lang_score": scores, "drop_reason": reasons}, index=texts.index)


def keep_languages_from(values: Sequence[str] | str | None) -> tuple[str, ...]:
    """Normalises a keep-list given as "en,fr", ["en", "fr"] or None into the config's tuple form."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [v for v in values.split(",")]
    return tuple(v.strip() for v in values if v.strip())
