"""udfs.curation.hashed_linear: the quality classifier's features and score without the JVM.

Equality with the Spark ML pipeline itself is tested in tests/spark/test_quality.py; these tests pin the
pieces that need no JVM: the features' boundaries (whitespace, n-grams, the character window) through
the score of single-bucket weight vectors, and the numba-free path.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import DATA, REPO
from udfs.curation.hashed_linear import HashedLinearModel, _murmur3, score_texts


def _bucket(term: str, n: int) -> int:
    b = np.frombuffer(term.encode(), dtype=np.uint8) if term else np.zeros(1, dtype=np.uint8)
    return _murmur3(b, 0, len(term.encode()), -1) % n


def _features(text: str, n: int = 1 << 20, **spec) -> set[int]:
    """The buckets the kernel sets for ``text``, read back one bucket at a time from the margin."""
    model = HashedLinearModel(np.zeros(n), 0.0, **spec)
    got = set()
    for term in _expected_terms(text, **spec):
        j = _bucket(term, n)
        w = np.zeros(n)
        w[j] = 1.0
        if score_texts(HashedLinearModel(w, 0.0, **spec), [text])[0] > 0.5:
            got.add(j)
    assert score_texts(model, [text])[0] == 0.5  # zero weights: sigmoid(0)
    return got


def _expected_terms(text, word_ngrams=2, char_ngram=4, max_chars=4000, char_max_chars=1000):
    """The pipeline's terms, written out the slow way (RegexTokenizer on Java's \\s, NGram, '#' + chars)."""
    import re

    t = text[:max_chars].lower()
    words = [w for w in re.split(r"[ \t\n\x0b\f\r]+", t) if w]
    terms = set(words)
    for g in range(2, word_ngrams + 1):
        terms |= {" ".join(words[i : i + g]) for i in range(len(words) - g + 1)}
    head = t[:char_max_chars]
    if char_ngram:
        terms |= {"#" + head[i : i + char_ngram] for i in range(len(head) - char_ngram + 1)}
    return terms


@pytest.mark.parametrize(
    "text,spec",
    [
        ("The  cat\tsat\u00a0on the\nmat", {}),
        ("ΣΟΦΟΣ İstanbul 😀 naïve", {"char_ngram": 3, "char_max_chars": 7}),
        ("one two three four five", {"word_ngrams": 3, "char_ngram": 0, "max_chars": 14}),
    ],
)
def test_every_expected_term_sets_its_bucket_and_nothing_else(text, spec):
    n = 1 << 20
    expected = {_bucket(t, n) for t in _expected_terms(text, **spec)}
    assert _features(text, n, **spec) == expected
    # the margin is the sum over distinct buckets / sqrt(count): with all weights 1 it is sqrt(count)
    ones = HashedLinearModel(np.ones(n), 0.0, **spec)
    margin = np.log(score_texts(ones, [text])[0] / (1 - score_texts(ones, [text])[0]))
    assert margin == pytest.approx(np.sqrt(len(expected)), rel=1e-9)


def test_empty_and_null_texts_score_the_intercept():
    model = HashedLinearModel(np.ones(64), -1.0)
    got = score_texts(model, ["", None, " \t"])  # too short for a 4-gram, no words
    assert got == pytest.approx([1 / (1 + np.e)] * 3)


def test_scores_without_numba_equal_the_compiled_ones():
    texts = [json.loads(x)["text"][:300] for x in (DATA / "udhr_multilingual_slice.jsonl").read_text().splitlines()][:6]
    rng = np.random.default_rng(0)
    w = rng.normal(size=4099)
    compiled = score_texts(HashedLinearModel(w, 0.3, char_max_chars=50), texts)
    code = (
        "import sys, json, numpy as np; sys.modules['numba'] = None\n"
        "from udfs.curation.hashed_linear import HashedLinearModel, score_texts\n"
        "w = np.random.default_rng(0).normal(size=4099)\n"
        "m = HashedLinearModel(w, 0.3, char_max_chars=50)\n"
        "print(json.dumps(list(score_texts(m, json.loads(sys.stdin.read())))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(texts), cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "numba kernels unavailable" in out.stderr  # the slow path says so
    assert json.loads(out.stdout) == pytest.approx(list(compiled), abs=1e-12)
