"""The curation chain: stage order, switches, and curate_batch's columns, dtypes and row mapping."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from udfs.curation import (
    C4Config,
    CurationConfig,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    LangIdConfig,
    NormalizeConfig,
    PiiConfig,
    curate_batch,
    curate_text,
    output_schema,
    signal_columns,
)

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
FRENCH = (
    "Le conseil municipal s'est réuni mardi pour examiner le budget de la nouvelle bibliothèque publique.\n"
    "Plusieurs membres ont estimé que les salles de lecture devaient rester ouvertes plus tard le soir.\n"
    "D'autres se sont inquiétés du coût du chauffage d'un si grand bâtiment pendant les mois d'hiver.\n"
    "Après une longue discussion, ils ont accepté de publier un projet avant la fin du mois de mars.\n"
    "Les écoles du quartier ont déjà proposé de partager leurs ordinateurs avec les jeunes visiteurs.\n"
    "Le maire s'est dite satisfaite des progrès et a remercié tout le monde pour sa patience."
)
ALL_OFF = CurationConfig(
    normalize=NormalizeConfig(enabled=False),
    langid=LangIdConfig(enabled=False),
    c4=C4Config(enabled=False),
    gopher_repetition=GopherRepetitionConfig(enabled=False),
    gopher_quality=GopherQualityConfig(enabled=False),
    fineweb=FineWebConfig(enabled=False),
    pii=PiiConfig(enabled=False),
)

CHAIN_CASES = [
    pytest.param(BASE, CurationConfig(), None, id="clean_prose_kept"),
    pytest.param("", CurationConfig(), "empty_text", id="empty"),
    pytest.param(" \n\t\x00 \n", CurationConfig(), "empty_text", id="whitespace_and_controls"),
    pytest.param(FRENCH, CurationConfig(langid=LangIdConfig(keep_languages=("en",))), "lang_not_kept", id="french"),
    pytest.param(BASE, CurationConfig(langid=LangIdConfig(min_score=1.5)), "lang_low_score", id="low_score"),
    pytest.param(
        "no terminal punctuation\nanywhere in this text",
        CurationConfig(c4=C4Config(min_num_sentences=None)),
        "c4_empty",
        id="c4_removes_all_lines",
    ),
    pytest.param(
        "\n".join(BASE_LINES[:4]),
        CurationConfig(
            gopher_repetition=GopherRepetitionConfig(enabled=False), gopher_quality=GopherQualityConfig(enabled=False)
        ),
        "c4_too_few_sentences",
        id="c4_doc_rule_after_gopher",
    ),
    pytest.param(
        BASE + "\nThe function returns {x} when the input is valid.", CurationConfig(), "c4_curly_bracket", id="curly"
    ),
    pytest.param(
        BASE + "\n" + BASE_LINES[2],
        CurationConfig(c4=C4Config(enabled=False)),
        "fineweb_char_dup_ratio",
        id="fineweb_after_gopher",
    ),
    pytest.param("The cat sat.", ALL_OFF, None, id="everything_switched_off"),
]


@pytest.mark.parametrize("text, cfg, reason", CHAIN_CASES)
def test_curate_text_reasons(text, cfg, reason):
    assert curate_text(text, cfg).drop_reason == reason


def test_kept_text_is_normalised_cleaned_and_redacted():
    raw = "  " + BASE.replace("\n", "  \r\n") + "\nMenu\nWrite to jane.doe@example.com or call 555-123-4567 today."
    res = curate_text(raw)
    assert res.drop_reason is None
    assert res.text_out == BASE + "\nWrite to <EMAIL> or call <PHONE> today."
    assert res.pii == {"pii_email": 1, "pii_ip": 0, "pii_phone": 1}
    assert res.lang == "en" and res.lang_score > 0.9
    assert res.signals["c4_lines"] == 10 and res.signals["c4_lines_kept"] == 9
    assert set(res.signals) == set(signal_columns(CurationConfig()))


def test_dropped_documents_keep_pii_and_report_nan_for_stages_not_reached():
    res = curate_text("Please send your questions about the report to jane.doe@example.com today.")
    assert res.drop_reason == "gopher_rep_top_3_gram"  # short texts fail here first, as in datatrove
    assert "jane.doe@example.com" in res.text_out and res.pii["pii_email"] == 0
    assert not math.isnan(res.signals["rep_dup_line_frac"])
    assert math.isnan(res.signals["n_words"]) and math.isnan(res.signals["fw_line_punct_ratio"])


def test_stage_order_c4_lines_first_versus_datatrove_order():
    menu = BASE + "\n" + "\n".join(["Home"] * 5)  # 4 repeated lines out of 13: 0.31 > 0.3
    assert curate_text(menu).drop_reason is None  # C4 removes the menu lines before Gopher sees them
    datatrove_order = CurationConfig(c4_lines_first=False)
    assert curate_text(menu, datatrove_order).drop_reason == "gopher_rep_dup_line_frac"


def test_html_input_is_extracted():
    html = (
        "<html><head><title>t</title></head><body><article>"
        + "".join(f"<p>{line}</p>" for line in BASE_LINES)
        + "</article></body></html>"
    )
    res = curate_text(html)
    assert res.html_extracted
    assert res.drop_reason is None
    assert "<p>" not in res.text_out and BASE_LINES[0] in res.text_out


def test_curate_batch_columns_dtypes_and_rows():
    cfg = CurationConfig()
    texts = pd.Series([BASE, None, "", FRENCH, "Mail a@example.com. " + BASE], index=[10, 11, 12, 13, 14])
    df = curate_batch(texts, cfg)
    assert list(df.columns) == [name for name, _ in output_schema(cfg)]
    assert list(df.index) == [10, 11, 12, 13, 14]
    expected_dtypes = {
        "text": object,
        "drop_reason": object,
        "lang": object,
        "lang_score": np.float64,
        "pii_email": np.int32,
        "pii_ip": np.int32,
        "pii_phone": np.int32,
        "html_extracted": np.bool_,
        "n_chars": np.int32,
    }
    for col, dtype in expected_dtypes.items():
        assert df[col].dtype == dtype, col
    for col in signal_columns(cfg):
        assert df[col].dtype == np.float64, col
    assert df["drop_reason"].tolist()[:3] == [None, "empty_text", "empty_text"]
    assert df["lang"].tolist()[:4] == ["en", None, None, "fr"]
    assert df["n_chars"].tolist() == [len(t) for t in df["text"]]
    for i, text in enumerate(texts):  # the batch equals the per-document chain
        single = curate_text(text, cfg)
        row = df.iloc[i]
        assert (row["text"], row["drop_reason"], row["lang"]) == (single.text_out, single.drop_reason, single.lang)
        assert row[signal_columns(cfg)].astype(float).tolist() == pytest.approx(
            list(single.signals.values()), nan_ok=True
        )


def test_curate_batch_without_langid_and_empty_batch():
    cfg = replace(CurationConfig(), langid=LangIdConfig(enabled=False))
    df = curate_batch(pd.Series([BASE]), cfg)
    assert df["lang"].tolist() == [None] and math.isnan(df["lang_score"][0]) and df["drop_reason"][0] is None
    empty = curate_batch(pd.Series([], dtype=object), cfg)
    assert len(empty) == 0 and list(empty.columns) == [name for name, _ in output_schema(cfg)]


def test_output_schema_types():
    schema = dict(output_schema(CurationConfig()))
    assert schema["text"] == "string" and schema["pii_ip"] == "int" and schema["rep_top_2_gram_char_frac"] == "double"
    assert len(schema) == len(output_schema(CurationConfig()))  # names are unique
