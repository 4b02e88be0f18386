"""The curation chain: normalise -> language ID -> C4 line cleaning -> Gopher repetition -> Gopher quality ->
C4 document rules -> FineWeb -> decontamination -> PII redaction, for one text (``curate_text``) or a batch
(``curate_batch``; decontamination, off by default, runs only there: it scans the batch's kept texts at once).

Every stage can be switched off in ``CurationConfig``. A document stops at the first rule that drops it (as in
a datatrove pipeline); the signals of the stages it did not reach are NaN. PII is redacted only in kept
documents (dropped ones keep their text as it was when dropped, for auditing, with zero PII counts).

Stage order. By default (``c4_lines_first=True``) C4's line cleaning rewrites the text before the Gopher
filters see it, and C4's document rules ("lorem ipsum", "{", < 5 sentences) are applied after Gopher quality.
datatrove's FineWeb pipeline instead runs Gopher on the uncleaned text and C4 (lines and document rules
together) afterwards: set ``c4_lines_first=False`` (and ``mode="parity"``) to reproduce its decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from udfs import columns as C
from udfs.curation.decontam import CONTAMINATED, DecontaminationConfig, NGramIndex, find_contamination
from udfs.curation.filters import (
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    c4_clean_with_words,
    fineweb_quality,
    gopher_quality,
    gopher_repetition,
)
from udfs.curation.langid import LangIdConfig, identify_languages, lang_drop_reason
from udfs.curation.normalize import NormalizeConfig, normalize_text
from udfs.curation.pii import PiiConfig, redact_pii
from udfs.curation.urlfilter import UrlFilterConfig
from udfs.curation.wordsplit import MODES, split_words

__all__ = [
    "CurationConfig",
    "CurationResult",
    "curate_batch",
    "curate_text",
    "output_schema",
    "signal_columns",
]

EMPTY_TEXT = "empty_text"  # drop reason: nothing left after normalisation
C4_EMPTY = "c4_empty"  # drop reason: C4 line cleaning removed every line (and no C4 doc rule fired)

_GOPHER_QUALITY_SIGNALS = (
    "n_words",
    "n_non_symbol_words",
    "mean_word_length",
    "hash_word_ratio",
    "ellipsis_word_ratio",
    "bullet_lines_ratio",
    "end_ellipsis_lines_ratio",
    "alpha_words_ratio",
    "n_stop_words",
)
_C4_SIGNALS = ("c4_lines", "c4_lines_kept", "c4_sentences")
_FINEWEB_SIGNALS = ("fw_line_punct_ratio", "fw_short_line_ratio", "fw_char_dup_ratio", "fw_newline_word_ratio")


@dataclass(frozen=True)
class CurationConfig:
    """Configuration of the whole curation chain.

    Attributes:
        mode: "fast" (regex word splitting, default) or "parity" (spaCy blank English, as datatrove; slower).
        c4_lines_first: True cleans lines with C4 before the Gopher filters (see the module docstring); False
            is datatrove's FineWeb order.
        normalize / langid / c4 / gopher_repetition / gopher_quality / fineweb / pii: each stage's config, each
            with an ``enabled`` switch.
        decontaminate: the evaluation files and n-gram size of the decontamination stage (on when ``paths`` is
            not empty; ``curate_batch`` then needs their ``NGramIndex``).
        url_filter: the URL blocklist / banned-word stage (off by default). It needs the URL, which the text chain
            never sees, so jobs/curate.py applies it to the ``url`` column; ``curate_batch`` ignores it.
    """

    mode: Literal["fast", "parity"] = "fast"
    c4_lines_first: bool = True
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    langid: LangIdConfig = field(default_factory=LangIdConfig)
    c4: C4Config = field(default_factory=C4Config)
    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    gopher_quality: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    fineweb: FineWebConfig = field(default_factory=FineWebConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    decontaminate: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    url_filter: UrlFilterConfig = field(default_factory=UrlFilterConfig)

    def __post_init__(self) -> None:
        assert self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}"


@dataclass(frozen=True)
class CurationResult:
    """What the chain decided for one document.

    Attributes:
        text_out: the curated text (normalised, C4-cleaned, PII-redacted) when kept; when dropped, the text as
            it was at the stage that dropped it.
        drop_reason: None when kept, else ``<rule>_<why>`` (e.g. ``gopher_short_doc``, ``lang_not_kept``).
        signals: ``signal_columns(cfg)`` -> float (NaN for stages not reached or switched off).
        lang: ISO 639-1 code, or None (no letters, or language ID switched off).
        lang_score: top-language probability in [0, 1]; NaN when language ID is off.
        pii: ``pii_email`` / ``pii_ip`` / ``pii_phone`` -> number of replacements (0 for dropped documents).
        html_extracted: whether the input was HTML and converted to text.
    """

    text_out: str
    drop_reason: str | None
    signals: dict[str, float]
    lang: str | None = None
    lang_score: float = math.nan
    pii: dict[str, int] = field(default_factory=dict)
    html_extracted: bool = False


def signal_columns(cfg: CurationConfig = CurationConfig()) -> list[str]:
    """Names of the float64 signal columns ``curate_batch`` returns for this config, in order.

    Args:
        cfg: the config (the repetition n-gram sizes decide some names).

    Returns:
        Column names; stable for a given config.
    """
    rep = ["rep_dup_para_frac", "rep_dup_para_char_frac", "rep_dup_line_frac", "rep_dup_line_char_frac"]
    rep += [f"rep_top_{n}_gram_char_frac" for n, _ in cfg.gopher_repetition.top_n_grams]
    rep += [f"rep_dup_{n}_gram_char_frac" for n, _ in cfg.gopher_repetition.dup_n_grams]
    return [*_C4_SIGNALS, *rep, *_GOPHER_QUALITY_SIGNALS, *_FINEWEB_SIGNALS]


def output_schema(cfg: CurationConfig = CurationConfig()) -> list[tuple[str, str]]:
    """The columns of ``curate_batch`` with their Spark SQL types, for the pandas UDF's return schema.

    Args:
        cfg: the config the UDF will use.

    Returns:
        [(name, spark type string)], in column order, e.g. ("text", "string"), ("lang_score", "double").
        With decontamination on, ``contaminated_task`` and ``contaminated_ngram`` (strings) come last.
    """
    head = [
        (C.TEXT, "string"),
        (C.DROP_REASON, "string"),
        (C.LANG, "string"),
        (C.LANG_SCORE, "double"),
        (C.PII_EMAIL, "int"),
        (C.PII_IP, "int"),
        (C.PII_PHONE, "int"),
        (C.HTML_EXTRACTED, "boolean"),
        (C.N_CHARS, "int"),
    ]
    tail = [(C.CONTAMINATED_TASK, "string"), (C.CONTAMINATED_NGRAM, "string")] if cfg.decontaminate.enabled else []
    return head + [(name, "double") for name in signal_columns(cfg)] + tail


def _finish(
    text: str,
    reason: str | None,
    signals: dict[str, float],
    lang: str | None,
    lang_score: float,
    html: bool,
    cfg: CurationConfig,
) -> CurationResult:
    pii = {C.PII_EMAIL: 0, C.PII_IP: 0, C.PII_PHONE: 0}
    if reason is None and cfg.pii.enabled:
        text, pii[C.PII_EMAIL], pii[C.PII_IP], pii[C.PII_PHONE] = redact_pii(text, cfg.pii)
    return CurationResult(text, reason, signals, lang, lang_score, pii, html)


def _curate_normalized(
    text: str, html: bool, lang: str | None, lang_score: float, cfg: CurationConfig
) -> CurationResult:
    """The chain after normalisation and language ID (which ``curate_batch`` runs batched)."""
    signals: dict[str, float] = {}

    def done(reason: str | None) -> CurationResult:
        return _finish(text, reason, signals, lang, lang_score, html, cfg)

    if not text:
        return done(EMPTY_TEXT)
    if cfg.langid.enabled:
        reason = lang_drop_reason(lang, lang_score, cfg.langid)
        if reason:
            return done(reason)
    c4_reason, words = None, None
    if cfg.c4.enabled and cfg.c4_lines_first:
        text, c4_reason, c4_signals, words = c4_clean_with_words(text, cfg.c4, cfg.mode)
        signals.update(c4_signals)
        if not text:
            return done(c4_reason or C4_EMPTY)
    if words is None:
        words = split_words(text, cfg.mode) if _needs_words(cfg) else []
    if cfg.gopher_repetition.enabled:
        reason, s = gopher_repetition(text, cfg.gopher_repetition, words)
        signals.update(s)
        if reason:
            return done(reason)
    if cfg.gopher_quality.enabled:
        reason, s = gopher_quality(text, cfg.gopher_quality, words)
        signals.update(s)
        if reason:
            return done(reason)
    if cfg.c4.enabled and not cfg.c4_lines_first:
        cleaned, c4_reason, c4_signals, c4_words = c4_clean_with_words(text, cfg.c4, cfg.mode)
        signals.update(c4_signals)
        if c4_reason:
            return done(c4_reason)
        if cleaned != text:  # datatrove rewrites the text only when the document is kept
            text = cleaned
            if not text:
                return done(C4_EMPTY)
            if cfg.fineweb.enabled:
                words = c4_words if c4_words is not None else split_words(text, cfg.mode)
    elif c4_reason:
        return done(c4_reason)
    if cfg.fineweb.enabled:
        reason, s = fineweb_quality(text, cfg.fineweb, words)
        signals.update(s)
        if reason:
            return done(reason)
    return done(None)


def _needs_words(cfg: CurationConfig) -> bool:
    return cfg.gopher_repetition.enabled or cfg.gopher_quality.enabled or cfg.fineweb.enabled


def curate_text(text: str | None, cfg: CurationConfig = CurationConfig()) -> CurationResult:
    """Runs the whole curation chain on one document.

    Args:
        text: the raw document (plain text or HTML); None counts as "".
        cfg: the chain's config.

    Returns:
        A ``CurationResult``; ``drop_reason`` is None when the document is kept.

    Raises:
        ValueError: ``cfg.decontaminate`` is on (that stage runs per batch: use ``curate_batch``).

    Example:
        >>> curate_text("This English sentence is much too short to keep.").drop_reason  # datatrove drops it so too
        'gopher_rep_top_2_gram'
    """
    if cfg.decontaminate.enabled:
        raise ValueError("decontamination runs per batch: use curate_batch(texts, cfg, index)")
    norm, html = normalize_text(text or "", cfg.normalize)
    lang, score = None, math.nan
    if cfg.langid.enabled:
        langs, scores = identify_languages([norm], cfg.langid.max_chars)
        lang, score = langs[0], float(scores[0])
    result = _curate_normalized(norm, html, lang, score, cfg)
    return _with_all_signals(result, cfg)


def _with_all_signals(result: CurationResult, cfg: CurationConfig) -> CurationResult:
    signals = {name: float(result.signals.get(name, math.nan)) for name in signal_columns(cfg)}
    return CurationResult(
        result.text_out, result.drop_reason, signals, result.lang, result.lang_score, result.pii, result.html_extracted
    )


def curate_batch(
    texts: pd.Series | Sequence[str | None],
    cfg: CurationConfig = CurationConfig(),
    index: NGramIndex | None = None,
) -> pd.DataFrame:
    """Runs the curation chain on a batch of documents: the function the Spark pandas UDF calls.

    Per batch: every text is normalised; language ID runs once on the whole batch (one matrix product); the
    filters then run per document; with decontamination on, the texts still kept are scanned together
    against ``index`` (``udfs.curation.decontam.find_contamination``); PII is redacted in kept documents.

    Args:
        texts: (n,) raw documents; None/NaN count as "".
        cfg: the chain's config.
        index: the evaluation n-grams (``udfs.curation.decontam.index_from_jsonl``); required when
            ``cfg.decontaminate`` is on, ignored otherwise.

    Returns:
        DataFrame with n rows (the index of ``texts`` when it is a Series) and the columns of
        ``output_schema(cfg)``: ``text`` (object str), ``drop_reason`` (object: None = kept), ``lang`` (object:
        str or None), ``lang_score`` (float64), ``pii_email``/``pii_ip``/``pii_phone`` (int32), ``html_extracted``
        (bool), ``n_chars`` (int32, length of ``text``), then ``signal_columns(cfg)`` (float64, NaN = not
        reached), then with decontamination on ``contaminated_task`` / ``contaminated_ngram`` (object: None
        = clean or not reached; drop reason ``contaminated`` unless ``cfg.decontaminate.flag_only``).

    Raises:
        ValueError: decontamination is on and ``index`` is None, or its n-gram size differs from the config's.

    Example:
        >>> df = curate_batch(pd.Series(["", "This English sentence is much too short to keep."]))
        >>> df["drop_reason"].tolist()
        ['empty_text', 'gopher_rep_top_2_gram']
    """
    decont = cfg.decontaminate
    if decont.enabled and (index is None or index.n != decont.n_gram):
        got = "None" if index is None else f"{index.n}-grams"
        raise ValueError(f"decontamination needs an NGramIndex of {decont.n_gram}-grams (index_from_jsonl), got {got}")
    chain_cfg = replace(cfg, pii=replace(cfg.pii, enabled=False)) if decont.enabled else cfg  # redact after it
    rows_index = texts.index if isinstance(texts, pd.Series) else None
    raw = [t if isinstance(t, str) else "" for t in (texts.tolist() if isinstance(texts, pd.Series) else texts)]
    normalized = [normalize_text(t, cfg.normalize) for t in raw]
    n = len(raw)
    if cfg.langid.enabled:
        langs, scores = identify_languages([t for t, _ in normalized], cfg.langid.max_chars)
    else:
        langs, scores = np.full(n, None, dtype=object), np.full(n, np.nan)
    sig_names = signal_columns(cfg)
    sig_index = {name: j for j, name in enumerate(sig_names)}
    sig = np.full((n, len(sig_names)), np.nan)
    out_text, reasons = [], []
    pii = np.zeros((n, 3), dtype=np.int32)
    for i, (text, html) in enumerate(normalized):
        res = _curate_normalized(text, html, langs[i], float(scores[i]), chain_cfg)
        out_text.append(res.text_out)
        reasons.append(res.drop_reason)
        pii[i] = (res.pii[C.PII_EMAIL], res.pii[C.PII_IP], res.pii[C.PII_PHONE])
        for name, value in res.signals.items():
            sig[i, sig_index[name]] = value
    if decont.enabled:
        hits = _decontaminate(out_text, reasons, pii, index, cfg)
    df = pd.DataFrame(
        {
            C.TEXT: pd.Series(out_text, dtype=object),
            C.DROP_REASON: pd.Series(reasons, dtype=object),
            C.LANG: pd.Series(langs, dtype=object),
            C.LANG_SCORE: scores.astype(np.float64),
            C.PII_EMAIL: pii[:, 0],
            C.PII_IP: pii[:, 1],
            C.PII_PHONE: pii[:, 2],
            C.HTML_EXTRACTED: np.fromiter((h for _, h in normalized), dtype=bool, count=n),
            C.N_CHARS: np.fromiter(map(len, out_text), dtype=np.int32, count=n),
        }
    )
    signals = pd.DataFrame(sig, columns=sig_names)
    df = pd.concat([df, signals], axis=1)
    if decont.enabled:
        df[C.CONTAMINATED_TASK] = pd.Series(hits[0], dtype=object)
        df[C.CONTAMINATED_NGRAM] = pd.Series(hits[1], dtype=object)
    if rows_index is not None:
        df.index = rows_index
    return df


def _decontaminate(
    out_text: list[str], reasons: list[str | None], pii: np.ndarray, index: NGramIndex, cfg: CurationConfig
) -> tuple[list[str | None], list[str | None]]:
    """Scans the kept texts (in place: drop reasons, then PII redaction of what stays kept); returns the columns."""
    n = len(out_text)
    kept = [i for i in range(n) if reasons[i] is None]
    found_tasks, found_grams = find_contamination([out_text[i] for i in kept], index)
    tasks: list[str | None] = [None] * n
    grams: list[str | None] = [None] * n
    for i, task, gram in zip(kept, found_tasks, found_grams):
        if task is not None:
            tasks[i], grams[i] = task, gram
            if not cfg.decontaminate.flag_only:
                reasons[i] = CONTAMINATED
    if cfg.pii.enabled:
        for i in kept:
            if reasons[i] is None:
                out_text[i], *counts = redact_pii(out_text[i], cfg.pii)
                pii[i] = counts
    return tasks, grams
