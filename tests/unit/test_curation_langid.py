"""Language identification on real multilingual snippets (UDHR slice in tests/data/curation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from udfs.curation.langid import (
    LangIdConfig,
    identify_languages,
    identify_languages_series,
    keep_languages_from,
    lang_drop_reason,
)

UDHR = Path(__file__).resolve().parent.parent / "data" / "curation" / "udhr_12_languages.jsonl"
ISO_639_3_TO_1 = {
    "eng": "en",
    "fra": "fr",
    "deu": "de",
    "spa": "es",
    "ita": "it",
    "por": "pt",
    "rus": "ru",
    "arb": "ar",
    "cmn": "zh",
    "jpn": "ja",
    "hin": "hi",
    "ell": "el",
}


@pytest.fixture(scope="module")
def udhr() -> list[dict]:
    with open(UDHR, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_udhr_snippets_are_identified(udhr):
    langs, scores = identify_languages([r["text"] for r in udhr])
    assert langs.tolist() == [ISO_639_3_TO_1[r["lang"]] for r in udhr]
    assert scores.dtype == np.float64 and ((scores > 0.9) & (scores <= 1.0)).all()


def test_matches_langid_classify(udhr):
    langid = pytest.importorskip("langid.langid")
    ident = langid.LanguageIdentifier.from_modelstring(langid.model, norm_probs=True)
    texts = [r["text"] for r in udhr] + ["Ceci est une phrase.", "Short mixed text, un peu de français."]
    langs, scores = identify_languages(texts)
    for text, lang, score in zip(texts, langs, scores):
        ref_lang, ref_score = ident.classify(text)
        assert lang == ref_lang
        assert score == pytest.approx(ref_score, abs=1e-9)


def test_no_language_for_empty_or_symbol_only_texts():
    langs, scores = identify_languages(["", None, "  ... !!! ", "The weather is nice today."])
    assert langs.tolist()[:3] == [None, None, None] and scores.tolist()[:3] == [0.0, 0.0, 0.0]
    assert langs[3] == "en"


def test_batch_equals_single_and_max_chars(udhr):
    texts = [r["text"] for r in udhr]
    batch = identify_languages(texts)
    singles = [identify_languages([t]) for t in texts]
    assert batch[0].tolist() == [s[0][0] for s in singles]
    np.testing.assert_allclose(batch[1], [s[1][0] for s in singles])
    assert identify_languages(texts, max_chars=200)[0].tolist() == batch[0].tolist()


LANG_RULE_CASES = [
    pytest.param("en", 0.99, LangIdConfig(), None, id="keep_all_by_default"),
    pytest.param("fr", 0.99, LangIdConfig(keep_languages=("en",)), "lang_not_kept", id="not_in_keep_list"),
    pytest.param(None, 0.0, LangIdConfig(keep_languages=("en",)), "lang_not_kept", id="no_language"),
    pytest.param("en", 0.5, LangIdConfig(), "lang_low_score", id="below_fineweb_threshold"),
    pytest.param("en", 0.5, LangIdConfig(min_score=None), None, id="score_rule_off"),
    pytest.param("en", 0.65, LangIdConfig(keep_languages=("en", "fr")), None, id="at_threshold_kept"),
]


@pytest.mark.parametrize("lang, score, cfg, reason", LANG_RULE_CASES)
def test_lang_drop_reason(lang, score, cfg, reason):
    assert lang_drop_reason(lang, score, cfg) == reason


def test_identify_languages_series(udhr):
    texts = pd.Series([r["text"] for r in udhr[:3]], index=[7, 8, 9])
    df = identify_languages_series(texts, LangIdConfig(keep_languages=("fr", "de")))
    assert list(df.index) == [7, 8, 9]
    assert df["lang"].tolist() == ["en", "fr", "de"]
    assert df["drop_reason"].tolist() == ["lang_not_kept", None, None]


def test_keep_languages_from():
    assert keep_languages_from("en, fr,") == ("en", "fr")
    assert keep_languages_from(["de"]) == ("de",)
    assert keep_languages_from(None) == ()
