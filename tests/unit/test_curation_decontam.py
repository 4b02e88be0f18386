"""Decontamination: n-gram words, the evaluation-file reader, the index, recall on planted items, the stage."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pandas as pd
import pytest

from tests.conftest import DATA, REPO
from udfs.curation import CurationConfig, PiiConfig, curate_batch, curate_text, output_schema
from udfs.curation.decontam import (
    CONTAMINATED,
    DecontaminationConfig,
    eval_texts,
    find_contamination,
    index_from_jsonl,
    ngram_words,
)

EVAL = DATA / "eval_tasks"
TASKS = sorted(p.stem for p in EVAL.glob("*.jsonl"))
ARC_Q = "Question: Which statement best explains why photosynthesis is the foundation of most food webs?"
ARC_A = "Sunlight is the source of energy for nearly all ecosystems."  # arc_easy.jsonl line 1, the gold choice
LINES = [
    "The committee met on Tuesday to review the budget for the new public library.",
    "Several members argued that the reading rooms should stay open later in the evening.",
    "Others worried about the cost of heating such a large building during the winter months.",
    "After a long discussion, they agreed to publish a draft plan before the end of March.",
    "Local schools have already offered to share their computers with younger visitors.",
    "A small group of volunteers will also help to organise weekend events for families.",
    "The mayor said she was pleased with the progress and thanked everyone for their patience.",
    "Residents can send written comments to jane.doe@example.org until the middle of next month.",
]


def _lines(task: str) -> list[str]:
    return (EVAL / f"{task}.jsonl").read_text(encoding="utf-8").split("\n")  # JSON strings may hold U+2028


def _records(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x.strip()]


@pytest.fixture(scope="module")
def index():
    return index_from_jsonl({t: _lines(t) for t in TASKS})


@pytest.mark.parametrize(
    "text, words",
    [
        ("Don't PANIC!", ["dont", "panic"]),
        ("  Hello,\tWORLD\n\nagain ", ["hello", "world", "again"]),
        ("snake_case and well-known", ["snakecase", "and", "wellknown"]),
        ("É-cole, CAFÉ!", ["école", "café"]),
        ("3.14 is -- roughly -- pi", ["314", "is", "roughly", "pi"]),
        ("... !!! ---", []),
    ],
)
def test_ngram_words_lowercase_and_drop_punctuation(text, words):
    assert ngram_words(text) == words


def test_eval_texts_every_string_list_element_and_joins():
    item = {"context_options": ["The trophy", "The suitcase"], "continuation": "was too big.", "gold": 0}
    assert eval_texts(item) == [
        "was too big.",
        "The trophy",
        "The suitcase",
        "was too big. The trophy",
        "The trophy was too big.",
        "was too big. The suitcase",
        "The suitcase was too big.",
    ]
    lambada = {"context": "He opened the", "continuation": "door", "id": 7, "ok": True, "meta": {"x": "y"}}
    assert eval_texts(lambada) == ["He opened the", "door", "He opened the door"]
    assert eval_texts({"choices": ["a", 3, "b"], "gold": 1}) == ["a", "b"]


def test_texts_shorter_than_n_add_no_ngram():
    twelve = " ".join(f"w{i}" for i in range(12))
    idx = index_from_jsonl({"short": [json.dumps({"query": twelve})], "long": [json.dumps({"query": twelve + " w12"})]})
    assert idx.stats["short"] == {"items": 1, "texts": 1, "ngrams": 0, "items_without_ngrams": 1}
    assert idx.stats["long"] == {"items": 1, "texts": 1, "ngrams": 1, "items_without_ngrams": 0}
    assert find_contamination([f"x {twelve} y", f"x {twelve} w12 y"], idx) == ([None, "long"], [None, twelve + " w12"])


def test_question_and_answer_found_through_the_join():
    q, a = "Which gas do green plants take in from the air?", "They take in carbon dioxide gas."  # 10 + 6 words
    idx = index_from_jsonl({"qa": [json.dumps({"query": q, "choices": ["Oxygen.", a], "gold": 1})]})
    tasks, grams = find_contamination([f"Notes. {q} {a} More notes.", f"{q} Oxygen.", f"{a} {q}"], idx)
    assert tasks == ["qa", None, "qa"]
    assert grams[0] == "which gas do green plants take in from the air they take in"


def test_first_match_and_first_task_are_reported():
    item = json.dumps({"query": "a b c d e f"})
    idx = index_from_jsonl({"one": [item], "two": [item, json.dumps({"query": "x y z"})]}, n=3)
    assert idx.tasks == ("one", "two") and len(idx) == 5  # a b c / b c d / c d e / d e f / x y z
    assert find_contamination(["x y z then c d e and a b c", "", None], idx) == (
        ["two", None, None],
        ["x y z", None, None],
    )
    assert find_contamination(["D, E. F!"], idx) == (["one"], ["d e f"])


@pytest.mark.parametrize(
    "lines, match",
    [
        (['{"query": "ok"}', "{not json"], "bad line 2: not JSON"),
        (['["a", "list"]'], "bad line 1: expected a JSON object, got list"),
    ],
)
def test_bad_eval_lines_name_the_task_and_line(lines, match):
    with pytest.raises(ValueError, match=match):
        index_from_jsonl({"bad": lines})


def _recase_repunctuate(text: str, rng: random.Random) -> str:
    """Random case per word, punctuation removed from or added around words, spaces turned into newlines."""
    out = []
    for word in text.split():
        if rng.random() < 0.5:
            word = "".join(ch for ch in word if ch.isalnum()) or word
        word = rng.choice([str.upper, str.lower, str.title, str.swapcase])(word)
        if rng.random() < 0.3:
            word += rng.choice([",", ".", ";", ":", "!", "?", "'", ")", " -"])
        if rng.random() < 0.1:
            word = rng.choice(["(", '"', "'"]) + word
        out.append(word)
    return "".join(w + rng.choice([" ", " ", " ", "\n", "  "]) for w in out).strip()


def test_planted_items_found_exact_and_recased_repunctuated(index):
    hosts = [x["text"] for x in _records(DATA / "cc2019_slice.jsonl")]
    hosts = [h for h in hosts if len(h.split()) > 100]
    rng = random.Random(0)
    planted, expected = [], []
    for task in TASKS:
        for line in filter(str.strip, _lines(task)):
            texts = [t for t in eval_texts(json.loads(line)) if len(ngram_words(t)) >= index.n]
            if not texts:
                continue  # every text of the item is shorter than 13 words: not searched for (documented)
            item = max(texts, key=len)
            for copy in (item, _recase_repunctuate(item, rng)):
                host = rng.choice(hosts)
                cut = host.find(" ", len(host) // 2)
                planted.append(f"{host[:cut]} {copy} {host[cut:]}")
                expected.append((task, " ".join(ngram_words(item))))
    n_items = sum(s["items"] - s["items_without_ngrams"] for s in index.stats.values())
    assert len(planted) == 2 * n_items and n_items >= 60, index.stats
    tasks, grams = find_contamination(planted, index)
    missed = [p for p, t in zip(planted, tasks) if t is None]
    assert not missed, f"{len(missed)} of {len(planted)} planted copies not found"
    for (task, item_words), got_task, gram in zip(expected, tasks, grams):
        assert got_task == task and gram in item_words


def test_clean_corpora_lose_nothing(index):
    texts = [x["text"] for x in _records(DATA / "cc2019_slice.jsonl")]
    texts += [x["text"] for x in _records(DATA / "udhr_multilingual_slice.jsonl")]
    texts += (DATA / "tinyshakespeare_head.txt").read_text().split("\n\n")
    for name in ("gutenberg_novels", "web_c4", "web_commoncrawl_2019"):
        path = REPO / "jobs" / "sample_data" / f"{name}.jsonl"
        texts += [x["text"] for x in _records(path)]
    assert len(texts) > 1000
    tasks, _ = find_contamination(texts, index)
    assert [t for t in tasks if t is not None] == []


def _stage_cfg(**kw) -> CurationConfig:
    return CurationConfig(decontaminate=DecontaminationConfig(paths=("arc_easy.jsonl",), **kw))


def _docs() -> list[str]:
    planted = "\n".join([*LINES[:4], f"{ARC_Q.upper()} -- {ARC_A}", *LINES[4:]])
    return [planted, "\n".join(LINES), "Too short."]


def test_curate_batch_drops_contaminated_documents():
    idx = index_from_jsonl({"arc_easy": _lines("arc_easy")})
    cfg = _stage_cfg()
    df = curate_batch(pd.Series(_docs()), cfg, idx)
    assert list(df.columns) == [name for name, _ in output_schema(cfg)]
    assert df["drop_reason"].tolist()[:2] == [CONTAMINATED, None]
    assert df["drop_reason"][2] not in (None, CONTAMINATED)
    assert df["contaminated_task"].tolist() == ["arc_easy", None, None]
    assert df["contaminated_ngram"][0].startswith("question which statement best explains")
    # PII: redacted in the kept document only, as for every other drop reason
    assert df["pii_email"].tolist() == [0, 1, 0] and "jane.doe@example.org" in df["text"][0]
    assert "jane.doe@example.org" not in df["text"][1]


def test_flag_only_keeps_and_flags():
    idx = index_from_jsonl({"arc_easy": _lines("arc_easy")})
    df = curate_batch(pd.Series(_docs()), _stage_cfg(flag_only=True), idx)
    assert df["drop_reason"].tolist()[:2] == [None, None]
    assert df["contaminated_task"].tolist() == ["arc_easy", None, None]
    assert df["pii_email"].tolist() == [1, 1, 0]


def test_stage_off_by_default_and_needs_its_index():
    assert "contaminated_task" not in dict(output_schema(CurationConfig()))
    with pytest.raises(ValueError, match="NGramIndex of 13-grams"):
        curate_batch(pd.Series(_docs()), _stage_cfg())
    with pytest.raises(ValueError, match="got 3-grams"):
        curate_batch(pd.Series(_docs()), _stage_cfg(), index_from_jsonl({"t": ['{"q": "a b c"}']}, n=3))
    with pytest.raises(ValueError, match="use curate_batch"):
        curate_text(_docs()[0], _stage_cfg())
    no_pii = replace(_stage_cfg(), pii=PiiConfig(enabled=False))
    df = curate_batch(pd.Series(_docs()), no_pii, index_from_jsonl({"arc_easy": _lines("arc_easy")}))
    assert df["pii_email"].tolist() == [0, 0, 0] and "jane.doe@example.org" in df["text"][1]


def test_code_point_classes_follow_ngram_words_rules():
    """The compiled scan's table, checked against the regex and split of ``ngram_words`` for every code point."""
    from udfs.curation._decontam_kernels import DELETE, SPACE, WORD
    from udfs.curation.decontam import _PUNCT, _code_point_classes

    table = _code_point_classes()
    for cp in range(0x110000):
        c = chr(cp)
        expected = DELETE if _PUNCT.fullmatch(c) else SPACE if not c.split() else WORD
        assert table[cp] == expected, hex(cp)


def test_compiled_scan_equals_the_reference_path(index):
    """Same task and n-gram for every document, planted copies (exact and re-cased/re-punctuated) among
    real multilingual text, and documents with surrogates, underscores and no words."""
    from udfs.curation.decontam import _find_reference, _kernels

    assert _kernels() is not None  # numba is a declared dependency: the compiled path must be the one tested
    hosts = [x["text"] for x in _records(DATA / "cc2019_slice.jsonl")]
    hosts += [x["text"] for x in _records(DATA / "udhr_multilingual_slice.jsonl")]
    rng = random.Random(1)
    docs = list(hosts)
    for task in TASKS:
        for line in list(filter(str.strip, _lines(task)))[:15]:
            item = max(eval_texts(json.loads(line)), key=len)
            host = rng.choice(hosts)
            cut = rng.randrange(len(host) + 1)
            docs.append(f"{host[:cut]} {_recase_repunctuate(item, rng)} {host[cut:]}")
    docs += [None, "", "___ ___", "a_b", "x\ud800y " + ARC_A, f"{ARC_Q}\u00a0{ARC_A}", ARC_Q.replace(" ", "_")]
    got = find_contamination(docs, index)
    assert got == _find_reference(docs, index)
    assert sum(t is not None for t in got[0]) >= 60  # the planted copies are found
