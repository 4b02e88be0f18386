"""Configs: frozen dataclasses built from dicts (JSON), unknown keys rejected, round trip through dicts."""

from __future__ import annotations

import dataclasses
import json

import pytest

from model.config import config_from_dict, config_to_dict
from udfs.curation import (
    CurationConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    MinHashConfig,
)


def test_defaults_are_datatrove_defaults():
    cfg = CurationConfig()
    assert cfg.mode == "fast" and cfg.c4_lines_first
    assert cfg.gopher_quality.min_doc_words == 50 and cfg.gopher_quality.max_non_alpha_words_ratio == 0.8
    assert cfg.gopher_repetition.top_n_grams == ((2, 0.2), (3, 0.18), (4, 0.16))
    assert cfg.c4.min_num_sentences == 5 and cfg.c4.filter_no_terminal_punct
    assert cfg.fineweb.line_punct_thr == 0.12 and cfg.fineweb.new_line_ratio == 0.3
    assert cfg.langid.min_score == 0.65 and cfg.langid.keep_languages == ()
    assert (MinHashConfig().n_grams, MinHashConfig().bands, MinHashConfig().rows) == (5, 14, 8)


def test_nested_dict_and_lists_become_tuples():
    raw = json.loads(
        '{"mode": "parity", "c4": {"filter_no_terminal_punct": false}, "langid": {"keep_languages": ["en", "fr"]},'
        ' "gopher_repetition": {"top_n_grams": [[2, 0.25]]}}'
    )
    cfg = config_from_dict(CurationConfig, raw)
    assert cfg.mode == "parity" and not cfg.c4.filter_no_terminal_punct
    assert cfg.langid.keep_languages == ("en", "fr")
    assert cfg.gopher_repetition.top_n_grams == ((2, 0.25),)
    assert cfg.c4.min_num_sentences == 5  # absent keys keep their defaults
    hash(cfg)  # frozen and hashable: safe to capture in a UDF closure


def test_round_trip_through_json():
    cfg = config_from_dict(CurationConfig, {"fineweb": {"new_line_ratio": None}, "pii": {"phones": False}})
    again = config_from_dict(CurationConfig, json.loads(json.dumps(config_to_dict(cfg))))
    assert again == cfg


@pytest.mark.parametrize(
    "cls, raw, match",
    [
        (CurationConfig, {"modee": "fast"}, r"unknown CurationConfig keys \['modee'\]"),
        (CurationConfig, {"c4": {"min_sentences": 3}}, r"unknown C4Config keys \['min_sentences'\]"),
        (GopherQualityConfig, {"min_words": 10}, "allowed keys"),
        (CurationConfig, {"c4": 5}, "CurationConfig.c4 expects a dict or C4Config"),
    ],
)
def test_bad_keys_are_errors(cls, raw, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(cls, raw)


def test_configs_are_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GopherRepetitionConfig().dup_line_frac = 0.5  # type: ignore[misc]
    with pytest.raises(AssertionError, match="mode must be one of"):
        CurationConfig(mode="slow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a dataclass"):
        config_from_dict(dict, {})
